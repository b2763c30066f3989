//! `shmkit bench`: options in, report out; the harness is `shmkit-bench`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use shmkit_bench::{BenchOptions, ChildCommand, Scenario};

use crate::units;

/// Measure latency and throughput of IPC transports between processes.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Short runs (0.1 s warm-up, 0.3 s each; fanout with 1, 2 and 4 readers):
    /// everything in about a minute.
    #[arg(long)]
    quick: bool,
    /// Run only this scenario (rtt, stream, bulk, oversubscribed, fanout,
    /// paced); repeatable.
    #[arg(long = "scenario", value_name = "S")]
    scenarios: Vec<String>,
    /// Run only this transport (see --list); repeatable.
    #[arg(long = "transport", value_name = "T")]
    transports: Vec<String>,
    /// Message size for rtt, stream, oversubscribed and fanout, or a list
    /// of sizes (8,64,1K), one measurement each (default 8 bytes for round
    /// trips, 64 for fan-outs; streams sweep 8,64,256,1024).
    #[arg(long, value_delimiter = ',', value_parser = units::parse_size)]
    size: Vec<u64>,
    /// Reader counts for fanout, one measurement each: a list (1,2,4) or
    /// repeated [default: 1,2,4,8,16; 1,2,4 with --quick].
    #[arg(long = "readers", value_name = "N", value_delimiter = ',',
          value_parser = clap::value_parser!(u32).range(1..=shmkit_bench::MAX_READERS as i64))]
    readers: Vec<u32>,
    /// Rates for paced, messages per second, one measurement each per
    /// reader count: a list (10k,100k,1M; k and M are 1000 and a million)
    /// or repeated [default: 10k,100k,1M; 10k,1M with --quick].
    #[arg(long = "rate", value_name = "R", value_delimiter = ',', value_parser = parse_rate)]
    rates: Vec<u64>,
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
    /// Run the whole selection N times (run 1 of everything, then run 2, …)
    /// and report medians, the range of the main figure, and medians of the
    /// per-run ratios.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Write an SVG chart to FILE.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Write the report as Markdown tables to FILE (`-`: standard output,
    /// the table then goes to standard error).
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// List the transports and the scenarios each supports, then exit.
    #[arg(long)]
    list: bool,
}

/// A rate in messages per second: `250000`, `10k`, `1.5M`.
fn parse_rate(text: &str) -> Result<u64> {
    let (number, unit) = match text.strip_suffix(['k', 'K']) {
        Some(n) => (n, 1e3),
        None => match text.strip_suffix('M') {
            Some(n) => (n, 1e6),
            None => (text, 1.0),
        },
    };
    let value: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a rate (10k, 1M, 250000)"))?;
    let rate = value * unit;
    if !(1.0..=shmkit_bench::MAX_RATE as f64).contains(&rate) || rate.fract() != 0.0 {
        bail!(
            "a rate of {text} messages/s; choose a whole number from 1 to {}",
            shmkit_bench::MAX_RATE
        );
    }
    Ok(rate as u64)
}

pub fn run(out: &mut dyn Write, args: BenchArgs) -> Result<u8> {
    if args.list {
        for t in shmkit_bench::transport::all() {
            let scenarios: Vec<&str> = Scenario::ALL
                .into_iter()
                .filter(|&s| t.supports(s.link_scenario()))
                .map(Scenario::name)
                .collect();
            writeln!(
                out,
                "{:<12} {:<38} {}",
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
    let sizes: Vec<usize> = args
        .size
        .iter()
        .map(|&n| usize::try_from(n))
        .collect::<Result<_, _>>()?;
    match sizes.as_slice() {
        [] => {}
        [one] => opts.size = Some(*one),
        _ => opts.sizes = sizes,
    }
    opts.bulk_size = usize::try_from(args.bulk_size)?;
    if let Some(d) = args.duration {
        opts.duration = d;
    }
    if let Some(w) = args.warmup {
        opts.warmup = w;
    }
    if !args.readers.is_empty() {
        opts.readers = args.readers.iter().map(|&n| n as usize).collect();
    }
    if !args.rates.is_empty() {
        opts.rates = args.rates;
    }
    opts.progress = true;
    opts.runs = args.runs as usize;

    let is_stdout = |p: &Option<PathBuf>| p.as_deref().is_some_and(|p| p.as_os_str() == "-");
    let json_to_stdout = is_stdout(&args.json);
    let markdown_to_stdout = is_stdout(&args.markdown);
    if json_to_stdout && markdown_to_stdout {
        bail!("--json - and --markdown - cannot both go to standard output");
    }

    let report = shmkit_bench::run(&opts)?;
    let json = serde_json::to_string_pretty(&report.to_json())? + "\n";
    let markdown = report.render_markdown();
    if json_to_stdout || markdown_to_stdout {
        eprint!("{}", report.render_table());
    } else {
        write!(out, "{}", report.render_table())?;
    }
    for (path, text) in [(&args.json, &json), (&args.markdown, &markdown)] {
        match path {
            Some(p) if p.as_os_str() == "-" => out.write_all(text.as_bytes())?,
            Some(p) => {
                std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?
            }
            None => {}
        }
    }
    if let Some(path) = &args.plot {
        report.write_svg(path)?;
    }
    Ok(0)
}
