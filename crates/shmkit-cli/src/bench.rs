//! `shmkit bench`: options in, report out; the harness is `shmkit-bench`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use shmkit_bench::{BenchOptions, ChildCommand, Scenario};

use crate::units;

/// Measure latency and throughput of IPC transports between processes.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Short runs (0.1 s warm-up, 0.3 s each): everything in well under a minute.
    #[arg(long)]
    quick: bool,
    /// Run only this scenario (rtt, stream, bulk, oversubscribed); repeatable.
    #[arg(long = "scenario", value_name = "S")]
    scenarios: Vec<String>,
    /// Run only this transport (see --list); repeatable.
    #[arg(long = "transport", value_name = "T")]
    transports: Vec<String>,
    /// Message size for rtt, stream and oversubscribed (default 8 and 64 bytes).
    #[arg(long, value_parser = units::parse_size)]
    size: Option<u64>,
    /// Message size for bulk.
    #[arg(long, default_value = "1MiB", value_parser = units::parse_size)]
    bulk_size: u64,
    /// Recording time of each measurement [default: 2s; 300ms with --quick].
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Warm-up before each measurement [default: 500ms; 100ms with --quick].
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// Write the report as JSON to FILE (`-`: standard output, the table then
    /// goes to standard error).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write an SVG chart to FILE.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// List the transports and the scenarios each supports, then exit.
    #[arg(long)]
    list: bool,
}

pub fn run(out: &mut dyn Write, args: BenchArgs) -> Result<u8> {
    if args.list {
        for t in shmkit_bench::transport::all() {
            let scenarios: Vec<&str> = Scenario::ALL
                .into_iter()
                .filter(|&s| t.supports(s))
                .map(Scenario::name)
                .collect();
            writeln!(
                out,
                "{:<12} {:<36} {}",
                t.name(),
                scenarios.join(","),
                t.about()
            )?;
        }
        return Ok(0);
    }
    let mut opts = BenchOptions::new(ChildCommand::current_exe(&["bench-child"])?);
    if args.quick {
        opts = opts.quick();
    }
    opts.scenarios = args
        .scenarios
        .iter()
        .map(|s| Scenario::from_name(s))
        .collect::<Result<_>>()?;
    opts.transports = args.transports;
    opts.size = args.size.map(usize::try_from).transpose()?;
    opts.bulk_size = usize::try_from(args.bulk_size)?;
    if let Some(d) = args.duration {
        opts.duration = d;
    }
    if let Some(w) = args.warmup {
        opts.warmup = w;
    }
    opts.progress = true;

    let report = shmkit_bench::run(&opts)?;
    let json_to_stdout = args.json.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if json_to_stdout {
        eprint!("{}", report.render_table());
        serde_json::to_writer_pretty(&mut *out, &report.to_json())?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.render_table())?;
        if let Some(path) = &args.json {
            let text = serde_json::to_string_pretty(&report.to_json())?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    if let Some(path) = &args.plot {
        report.write_svg(path)?;
    }
    Ok(0)
}
