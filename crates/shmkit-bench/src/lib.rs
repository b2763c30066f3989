//! shmkit-bench: latency and throughput of IPC transports, measured between
//! separate processes.
//!
//! # Module map
//! - [`transport`]: the [`Transport`] trait (one link between two processes,
//!   opened from file descriptors and names the harness hands over) and every
//!   transport measured: the floors written here (`raw-spin`, `raw-futex`,
//!   `memcpy`), the classic IPC (`pipe`, `unix-stream`, `unix-dgram`,
//!   `tcp`, `eventfd`, `posix-mq`), shmkit's channels (`shmkit`,
//!   `shmkit-block`, `shmkit-zc`; in `fanout`, `shmkit` is shmkit's
//!   broadcast), shmkit's board (`shmkit-board`, `fanout` only); with the
//!   cargo feature `peers`, the peer library `ipc-channel`.
//! - `scenario` (private): what each process does in each [`Scenario`].
//! - `process` (private): starting, pinning, synchronising and reaping the
//!   child processes; a child that does not finish in time is killed.
//! - [`report`]: [`Report`], rendered as a table, Markdown, JSON or an SVG
//!   chart.
//! - `runs` (private): several runs of the plan combined into one report
//!   (medians, spreads, medians of per-run ratios).
//!
//! # Process model
//! Every measurement runs between separate processes. [`run`] re-executes a
//! program named by [`ChildCommand`] (for the `shmkit` binary: `shmkit
//! bench-child SPEC`) once per process of the scenario; that program must
//! hand the arguments it receives to [`child_main`]. Each child is pinned to
//! its own core where the machine has two or more, opens its end of the
//! links, reports `ready`, waits for `go`, warms up, measures for a fixed
//! duration and reports one line of JSON. Children die with the harness
//! (`PR_SET_PDEATHSIG`), stop by themselves at a deadline, and are killed
//! when the harness gives up on them: no run leaves a process behind, and
//! named objects (`/dev/shm`, `/dev/mqueue`) are removed as soon as every
//! child has opened them.
//!
//! # Example
//! ```no_run
//! use shmkit_bench::{BenchOptions, ChildCommand, Scenario};
//!
//! // This program must route `bench-child SPEC` to `shmkit_bench::child_main`.
//! let mut opts = BenchOptions::new(ChildCommand::current_exe(&["bench-child"])?).quick();
//! opts.scenarios = vec![Scenario::Rtt];
//! opts.transports = vec!["raw-spin".into(), "pipe".into()];
//! let report = shmkit_bench::run(&opts)?;
//! print!("{}", report.render_table());
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! # Safety
//! Shared memory is touched only through atomics and
//! `ptr::copy_nonoverlapping` after an Acquire/Release handshake, never
//! through references; indices read back from it are checked in release
//! builds. Every `unsafe` block says why it is sound.
//!
//! # Adding a transport
//! Write one file in `src/transport/` with a type implementing
//! [`Transport`] (make the link in the parent, open an end in the child,
//! say which scenarios it supports) and add it to [`transport::all`]. See
//! the [`transport`] module documentation.

pub mod report;
pub mod transport;

mod plot;
mod process;
mod runs;
mod scenario;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

pub use report::{Machine, Report, Row};
pub use transport::{Conn, Transport};

/// What is measured. Every scenario runs between separate processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Round trip of one message (8 bytes by default) between two processes.
    Rtt,
    /// One-way stream of messages (64 bytes by default), batched where the
    /// transport can batch.
    Stream,
    /// One-way 1 MiB messages: the producer writes every byte, the consumer
    /// reads every byte.
    Bulk,
    /// A token passed around a ring of three processes pinned to two cores.
    Oversubscribed,
    /// One writer, N reader processes ([`BenchOptions::readers`]): every
    /// message (64 bytes by default) carries the time it was published;
    /// each reader records publish-to-receive latency and what it received
    /// (or, on lossy transports, missed).
    Fanout,
    /// `fanout` with the writer publishing at fixed rates
    /// ([`BenchOptions::rates`]) instead of flat out: the latency readers
    /// see at a given load, their CPU time, and what they lose.
    Paced,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Scenario; 6] = [
        Scenario::Rtt,
        Scenario::Stream,
        Scenario::Bulk,
        Scenario::Oversubscribed,
        Scenario::Fanout,
        Scenario::Paced,
    ];

    /// What runs when no scenario is named: every one but `paced` (rates
    /// times reader counts times transports: minutes; asked for by name).
    pub const DEFAULT: [Scenario; 5] = [
        Scenario::Rtt,
        Scenario::Stream,
        Scenario::Bulk,
        Scenario::Oversubscribed,
        Scenario::Fanout,
    ];

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Rtt => "rtt",
            Scenario::Stream => "stream",
            Scenario::Bulk => "bulk",
            Scenario::Oversubscribed => "oversubscribed",
            Scenario::Fanout => "fanout",
            Scenario::Paced => "paced",
        }
    }

    /// Whether the scenario is one writer to many readers (`fanout`,
    /// `paced`).
    pub fn is_fan(self) -> bool {
        matches!(self, Scenario::Fanout | Scenario::Paced)
    }

    /// The scenario transports see: `paced` links are `fanout` links (only
    /// the writer's pace differs).
    pub fn link_scenario(self) -> Scenario {
        match self {
            Scenario::Paced => Scenario::Fanout,
            s => s,
        }
    }

    /// Parses a name as [`Scenario::name`] writes it.
    pub fn from_name(name: &str) -> Result<Self> {
        match Self::ALL.iter().find(|s| s.name() == name) {
            Some(s) => Ok(*s),
            None => bail!(
                "unknown scenario {name:?}; known: {}",
                Self::ALL.map(Scenario::name).join(", ")
            ),
        }
    }

    /// How many processes the scenario runs (for a transport that is not
    /// [in one process](Transport::in_one_process)) with `readers` readers
    /// (which only `fanout` uses).
    pub fn processes(self, readers: usize) -> usize {
        match self {
            Scenario::Rtt | Scenario::Stream | Scenario::Bulk => 2,
            Scenario::Oversubscribed => 3,
            Scenario::Fanout | Scenario::Paced => 1 + readers,
        }
    }

    /// The smallest message of the scenario: [`MIN_MESSAGE`], or
    /// [`FANOUT_MIN_MESSAGE`] for `fanout` (a sequence number and a time).
    pub fn min_message(self) -> usize {
        match self {
            Scenario::Fanout | Scenario::Paced => FANOUT_MIN_MESSAGE,
            _ => MIN_MESSAGE,
        }
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The smallest message: every message carries an 8-byte header (a sequence
/// number, or a start or stop mark).
pub const MIN_MESSAGE: usize = 8;

/// The smallest `fanout` message: the 8-byte header and the 8-byte time
/// (`CLOCK_MONOTONIC`, nanoseconds) at which the writer published it.
pub const FANOUT_MIN_MESSAGE: usize = 16;

/// The most readers a `fanout` measurement may have.
pub const MAX_READERS: usize = 64;

/// Message sizes `stream` measures by default, one row per transport each
/// (`--size` gives others).
pub const STREAM_SIZES: [usize; 4] = [8, 64, 256, 1024];

/// Reader counts `fanout` runs by default.
pub const DEFAULT_READERS: [usize; 5] = [1, 2, 4, 8, 16];

/// Reader counts `fanout` runs with [`BenchOptions::quick`].
pub const QUICK_READERS: [usize; 3] = [1, 2, 4];

/// The program and leading arguments that start one benchmark process; the
/// child specification is appended as the last argument.
#[derive(Clone, Debug)]
pub struct ChildCommand {
    /// The executable, usually [`std::env::current_exe`].
    pub program: PathBuf,
    /// Arguments before the specification, such as `["bench-child"]`.
    pub args: Vec<String>,
}

impl ChildCommand {
    /// This executable with the given leading arguments.
    pub fn current_exe(args: &[&str]) -> Result<Self> {
        Ok(ChildCommand {
            program: std::env::current_exe()?,
            args: args.iter().map(|s| s.to_string()).collect(),
        })
    }
}

/// What to measure and for how long.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Scenarios to run; empty means all.
    pub scenarios: Vec<Scenario>,
    /// Transports to run, by name; empty means all.
    pub transports: Vec<String>,
    /// Message size for `rtt`, `stream`, `oversubscribed` and `fanout`;
    /// `None` means 8 bytes for round trips and 64 bytes for streams and
    /// fan-outs.
    pub size: Option<usize>,
    /// Message sizes for `rtt`, `stream`, `oversubscribed` and `fanout`,
    /// one measurement each, when there are several (a sweep); empty means
    /// [`size`](Self::size), or for `stream` without one [`STREAM_SIZES`].
    pub sizes: Vec<usize>,
    /// Message size for `bulk` (default 1 MiB).
    pub bulk_size: usize,
    /// Time each measurement runs before recording starts.
    pub warmup: Duration,
    /// Time each measurement records.
    pub duration: Duration,
    /// How to start a child process.
    pub child: ChildCommand,
    /// Show a progress bar on standard error (drawn only on a terminal).
    pub progress: bool,
    /// How many times to run the whole plan (at least 1). Runs are
    /// interleaved (run 1 of every row, then run 2, …) so that a slow drift
    /// of the machine's load spreads over every transport; the report holds
    /// medians.
    pub runs: usize,
    /// Reader counts for `fanout`, one measurement each (in this order);
    /// [`DEFAULT_READERS`], or [`QUICK_READERS`] after
    /// [`quick`](Self::quick).
    pub readers: Vec<usize>,
    /// Rates for `paced`, messages per second, one measurement each (per
    /// reader count): [`DEFAULT_RATES`], or [`QUICK_RATES`] after
    /// [`quick`](Self::quick).
    pub rates: Vec<u64>,
}

/// Rates `paced` runs by default, messages per second.
pub const DEFAULT_RATES: [u64; 3] = [10_000, 100_000, 1_000_000];
/// Rates `paced` runs with [`BenchOptions::quick`].
pub const QUICK_RATES: [u64; 2] = [10_000, 1_000_000];
/// The highest `paced` rate, messages per second.
pub const MAX_RATE: u64 = 100_000_000;

impl BenchOptions {
    /// Full-length defaults: 0.5 s of warm-up and 2 s of measurement each.
    pub fn new(child: ChildCommand) -> Self {
        BenchOptions {
            scenarios: Vec::new(),
            transports: Vec::new(),
            size: None,
            sizes: Vec::new(),
            bulk_size: 1 << 20,
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(2),
            child,
            progress: false,
            runs: 1,
            readers: DEFAULT_READERS.to_vec(),
            rates: DEFAULT_RATES.to_vec(),
        }
    }

    /// Short runs (0.1 s warm-up, 0.3 s measurement, `fanout` with 1, 2
    /// and 4 readers): the whole set in about a minute on two cores, with
    /// noisier figures.
    pub fn quick(mut self) -> Self {
        self.warmup = Duration::from_millis(100);
        self.duration = Duration::from_millis(300);
        self.readers = QUICK_READERS.to_vec();
        self.rates = QUICK_RATES.to_vec();
        self
    }

    /// The message size of one scenario under these options.
    pub fn msg_size(&self, scenario: Scenario) -> usize {
        match scenario {
            Scenario::Bulk => self.bulk_size,
            Scenario::Stream | Scenario::Fanout | Scenario::Paced => self.size.unwrap_or(64),
            Scenario::Rtt | Scenario::Oversubscribed => self.size.unwrap_or(8),
        }
    }

    /// Every message size one scenario runs under these options, in order.
    pub fn msg_sizes(&self, scenario: Scenario) -> Vec<usize> {
        match scenario {
            Scenario::Bulk => vec![self.bulk_size],
            _ if !self.sizes.is_empty() => self.sizes.clone(),
            Scenario::Stream if self.size.is_none() => STREAM_SIZES.to_vec(),
            _ => vec![self.msg_size(scenario)],
        }
    }
}

/// Runs every selected (scenario, transport) pair that the transport
/// supports (for `fanout`, once per reader count: readers first, then
/// transports), each between fresh processes, [`BenchOptions::runs`] times,
/// and collects the results: for several runs, the median of each figure,
/// the spread of the main one, and the median of the ratios taken in each
/// run.
///
/// A transport that fails (a kernel limit, a peer that does not answer) gets a
/// row with its error (or, when it failed in some runs only, the medians of
/// the others and a count of the failures); the run goes on. Fails only for
/// bad options: an unknown transport, a message smaller than the scenario's
/// [least](Scenario::min_message), no scenario left to run, zero runs, a
/// `fanout` with no reader count or one outside 1..=[`MAX_READERS`].
pub fn run(opts: &BenchOptions) -> Result<Report> {
    let scenarios = if opts.scenarios.is_empty() {
        Scenario::DEFAULT.to_vec()
    } else {
        opts.scenarios.clone()
    };
    let transports = transport::select(&opts.transports)?;
    for (s, size) in scenarios
        .iter()
        .flat_map(|&s| opts.msg_sizes(s).into_iter().map(move |n| (s, n)))
    {
        if size < s.min_message() {
            bail!(
                "{s}: a message of {size} bytes is too small; the least is {} ({})",
                s.min_message(),
                if s.is_fan() {
                    "a sequence number and a time"
                } else {
                    "a sequence number"
                }
            );
        }
    }
    if opts.runs == 0 {
        bail!("at least one run is needed");
    }
    let mut readers: Vec<usize> = Vec::new();
    if scenarios.iter().any(|s| s.is_fan()) {
        for &n in &opts.readers {
            if !(1..=MAX_READERS).contains(&n) {
                bail!("fanout: {n} readers; choose between 1 and {MAX_READERS}");
            }
            if !readers.contains(&n) {
                readers.push(n);
            }
        }
        if readers.is_empty() {
            bail!("fanout needs at least one reader count");
        }
    }
    if scenarios.contains(&Scenario::Paced) {
        if opts.rates.is_empty() {
            bail!("paced needs at least one rate");
        }
        if let Some(r) = opts.rates.iter().find(|&&r| r == 0 || r > MAX_RATE) {
            bail!("paced: a rate of {r} messages/s; choose between 1 and {MAX_RATE}");
        }
    }
    let mut plan = Vec::new();
    for &s in &scenarios {
        // One reader count (unused) outside fanout and paced; one rate
        // (none: flat out) outside paced.
        let counts: Vec<Option<usize>> = if s.is_fan() {
            readers.iter().map(|&n| Some(n)).collect()
        } else {
            vec![None]
        };
        let rates: Vec<Option<u64>> = if s == Scenario::Paced {
            opts.rates.iter().map(|&r| Some(r)).collect()
        } else {
            vec![None]
        };
        for size in opts.msg_sizes(s) {
            for &rate in &rates {
                for &n in &counts {
                    for t in &transports {
                        if t.supports(s.link_scenario()) {
                            plan.push((s, *t, n, rate, size));
                        }
                    }
                }
            }
        }
    }
    if plan.is_empty() {
        bail!("none of the selected transports supports the selected scenarios");
    }

    let progress = if opts.progress {
        let bar = indicatif::ProgressBar::new((plan.len() * opts.runs) as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed:>3} {wide_msg}")
                .expect("the template is valid"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };

    // Before the first child starts, so the load average is the machine's own.
    let mut machine = Machine::detect();
    let mut runs = Vec::with_capacity(opts.runs);
    for run in 0..opts.runs {
        let mut results = Vec::with_capacity(plan.len());
        for (index, &(scenario, t, readers, rate, msg_size)) in plan.iter().enumerate() {
            let mut what = match readers {
                Some(n) => format!("{scenario} over {}, {n} readers", t.name()),
                None => format!("{scenario} over {}, {msg_size} B", t.name()),
            };
            if let Some(r) = rate {
                what.push_str(&format!(", {} msgs/s", report::fmt_count(Some(r as f64))));
            }
            if opts.runs > 1 {
                progress.set_message(format!("run {}/{}: {what}", run + 1, opts.runs));
            } else {
                progress.set_message(what);
            }
            // Unique across runs: it names the links' objects.
            let measurement = run * plan.len() + index;
            let row = match process::measure(
                opts,
                t,
                scenario,
                msg_size,
                readers.unwrap_or(1),
                rate,
                measurement,
            ) {
                Ok(m) => Row::from_measurement(scenario, t.name(), msg_size, &m),
                Err(e) => {
                    let mut row =
                        Row::failed(scenario, t.name(), msg_size, readers, format!("{e:#}"));
                    row.rate = rate;
                    row
                }
            };
            results.push(row);
            progress.inc(1);
        }
        runs.push(results);
    }
    progress.finish_and_clear();
    machine.note_end();
    Ok(Report::new(machine, opts, &runs))
}

/// The entry point of a child process: `args` are the arguments after
/// [`ChildCommand::args`] (the specification). Returns the exit status.
///
/// The program named by [`BenchOptions::child`] must call this and exit with
/// its result; it talks to the harness over standard input and output.
pub fn child_main(args: &[String]) -> i32 {
    process::child_main(args)
}
