//! `shmkit-bridge`: bridge a shmkit channel, broadcast or board over Zenoh.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use shmkit_zenoh::bridge::{self, ExportOptions, ImportOptions, Kind, Route, Stop};
use shmkit_zenoh::net::{self, NetArgs};
use shmkit_zenoh::stats::{Identity, Stats};

#[derive(Parser, Debug)]
#[command(name = "shmkit-bridge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read the local object NAME and publish its messages on KEYEXPR.
    Export {
        /// The local channel, broadcast or board (it must exist).
        name: String,
        /// The Zenoh key to publish on.
        #[arg(long, value_name = "KEYEXPR")]
        key: String,
        /// Drop samples when the network is congested instead of waiting
        /// (default: wait, so nothing is lost; broadcasts: drop unless
        /// --lossless).
        #[arg(long, conflicts_with = "lossless")]
        lossy: bool,
        /// Broadcasts: wait for the network instead of dropping.
        #[arg(long)]
        lossless: bool,
        /// Most messages packed into one Zenoh sample.
        #[arg(long, default_value = "256")]
        max_batch: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Subscribe to KEYEXPR and write what arrives into the local object
    /// NAME, creating it if absent.
    Import {
        /// The Zenoh key expression to subscribe to.
        key: String,
        /// The local channel, broadcast or board.
        #[arg(long, value_name = "NAME")]
        into: String,
        /// Messages a created channel or broadcast holds.
        #[arg(long, default_value = "1024")]
        capacity: usize,
        /// Largest message (board: value) of a created object, in bytes.
        #[arg(long, default_value = "1024")]
        max_msg: usize,
        /// Create the channel single-producer single-consumer.
        #[arg(long)]
        spsc: bool,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(clap::Args, Debug)]
struct Common {
    /// What NAME is.
    #[arg(long, value_enum, default_value = "channel")]
    kind: Kind,
    /// Stop after this many messages bridged.
    #[arg(long)]
    count: Option<u64>,
    /// Print the stats every SECS seconds (and always at the end).
    #[arg(long, value_name = "SECS")]
    stats_every: Option<f64>,
    /// Print the stats as one JSON object per report.
    #[arg(long)]
    json: bool,
    /// Keep the stats (JSON) on this local board while running, for
    /// `shmkit board get`; refreshed every second, removed at the end.
    #[arg(long, value_name = "BOARD")]
    stats_board: Option<String>,
    #[command(flatten)]
    net: NetArgs,
}

fn report(stats: &Stats, id: &Identity, json: bool) {
    let text = if json {
        format!("{}\n", stats.to_json(id))
    } else {
        stats.to_text(id)
    };
    // Stats go to stdout; a closed pipe is not worth failing for.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmkit-bridge: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// RUST_LOG=zenoh=debug (for instance) shows Zenoh's own logs, on stderr:
/// stdout carries `--json` statistics, which a log line would corrupt
/// (Zenoh's own initialiser writes to stdout).
fn init_log() {
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() else {
        return;
    };
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_thread_names(true)
        .with_target(true)
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
}

fn run(cli: Cli) -> Result<()> {
    init_log();
    let (role, common) = match &cli.command {
        Command::Export { common, .. } => ("export", common),
        Command::Import { common, .. } => ("import", common),
    };
    let (object, key) = match &cli.command {
        Command::Export { name, key, .. } => (name.clone(), key.clone()),
        Command::Import { key, into, .. } => (into.clone(), key.clone()),
    };
    let session = net::open(&common.net)?;
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(Stop::default());
    let id = Identity {
        role,
        kind: common.kind.name(),
        object: object.clone(),
        key: key.clone(),
        zid: session.zid().to_string(),
    };
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing the signal handlers")?;
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                stop.finish(Ok(()));
            }
        });
    }
    let route = Route {
        session: session.clone(),
        key,
        object,
        kind: common.kind,
        stats: stats.clone(),
        stop: stop.clone(),
        count: common.count,
    };
    let mut exporting = None;
    let mut importing = None;
    match &cli.command {
        Command::Export {
            lossy,
            lossless,
            max_batch,
            ..
        } => {
            let lossy = *lossy || (common.kind == Kind::Broadcast && !lossless);
            exporting = Some(bridge::export(
                route,
                ExportOptions {
                    lossy,
                    max_batch: *max_batch,
                },
            )?);
        }
        Command::Import {
            capacity,
            max_msg,
            spsc,
            ..
        } => {
            importing = Some(bridge::import(
                route,
                ImportOptions {
                    capacity: *capacity,
                    max_message: *max_msg,
                    spsc: *spsc,
                },
            )?);
        }
    }
    eprintln!(
        "shmkit-bridge: {role}ing {} {} {} {} as {}",
        id.kind,
        id.object,
        if role == "export" { "to" } else { "from" },
        id.key,
        id.zid
    );
    let mut stats_board = match &common.stats_board {
        Some(name) => {
            let mut o = shmkit::board::BoardOptions::new();
            o.max_size(16 * 1024);
            let board = shmkit::board::Board::open_or_create(name, &o)?;
            Some((board.writer()?, board))
        }
        None => None,
    };
    let every = common.stats_every.map(Duration::from_secs_f64);
    let tick = match (every, &stats_board) {
        (Some(e), Some(_)) => Some(e.min(Duration::from_secs(1))),
        (Some(e), None) => Some(e),
        (None, Some(_)) => Some(Duration::from_secs(1)),
        (None, None) => None,
    };
    let mut last_print = std::time::Instant::now();
    let outcome = loop {
        if let Some(outcome) = stop.wait(tick) {
            break outcome;
        }
        if let Some((writer, _)) = &mut stats_board {
            let _ = writer.write(stats.to_json(&id).to_string().as_bytes());
        }
        if every.is_some_and(|e| last_print.elapsed() >= e) {
            report(&stats, &id, common.json);
            last_print = std::time::Instant::now();
        }
    };
    if let Some(handle) = exporting {
        // It sees the stop flag within one STOP_CHECK.
        let _ = handle.join();
    }
    drop(importing);
    if let Some((writer, board)) = stats_board {
        drop(writer);
        let _ = board.unlink();
    }
    let _ = zenoh::Wait::wait(session.close());
    report(&stats, &id, common.json);
    outcome.map_err(anyhow::Error::msg)
}
