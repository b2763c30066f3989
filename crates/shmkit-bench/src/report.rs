//! [`Report`]: the machine, the settings and one [`Row`] per (scenario,
//! transport, and in `fanout` reader count), rendered as a table for
//! people, as JSON, or as an SVG chart.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::scenario::Measurement;
use crate::{BenchOptions, Scenario};

/// The machine a report was made on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Logical CPUs online.
    pub cpus: usize,
    /// CPUs this process may run on (the benchmark pins to the first two).
    pub cpus_allowed: usize,
    /// CPU model from `/proc/cpuinfo`.
    pub model: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Operating system and architecture.
    pub os: String,
    /// Physical memory in bytes (`MemTotal`).
    pub memory_bytes: u64,
    /// The kernel's clock source (`tsc` makes timing cheap).
    pub clocksource: String,
    /// Whether the CPU reports running under a hypervisor.
    pub virtualized: bool,
    /// Load averages (1, 5, 15 minutes) when the run started: anything
    /// above zero on a small machine competes with the benchmark.
    pub load_average: [f64; 3],
    /// Load averages when the last measurement ended (`None` until then).
    pub load_average_end: Option<[f64; 3]>,
    /// Version of shmkit-bench.
    pub shmkit_version: String,
    /// The commit measured: `git rev-parse HEAD` where the run started,
    /// or "unknown" outside a git checkout.
    pub commit: String,
}

impl Machine {
    /// Reads what `/proc`, `/sys` and `uname` say about this machine.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_string();
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            })
            .unwrap_or(0);
        let uname = rustix::system::uname();
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpus_allowed: rustix::thread::sched_getaffinity(None).map_or(0, |s| s.count() as usize),
            model: field("model name").unwrap_or_else(|| "unknown".into()),
            kernel: uname.release().to_string_lossy().into_owned(),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            memory_bytes,
            clocksource: std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
            virtualized: field("flags").is_some_and(|f| f.split(' ').any(|x| x == "hypervisor")),
            load_average: load_average(),
            load_average_end: None,
            shmkit_version: env!("CARGO_PKG_VERSION").to_string(),
            commit: commit(),
        }
    }

    /// Notes the load averages now, as the run ends.
    pub(crate) fn note_end(&mut self) {
        self.load_average_end = Some(load_average());
    }
}

/// The commit checked out here (with `-dirty` when files differ from
/// it), or "unknown" without git or outside a checkout.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(hash) if !hash.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{hash}-dirty")
            } else {
                hash
            }
        }
        _ => "unknown".to_string(),
    }
}

fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text.split_whitespace().map(|f| f.parse().unwrap_or(0.0));
    [(); 3].map(|()| fields.next().unwrap_or(0.0))
}

/// How the measurements were taken.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Warm-up of each measurement, milliseconds.
    pub warmup_ms: u64,
    /// Recording time of each measurement, milliseconds.
    pub duration_ms: u64,
}

/// One (scenario, transport) result (in `fanout`, one per reader count too):
/// over several runs, the median of each figure across the runs that
/// succeeded. Fields that do not apply are
/// `None` (`null` in JSON); a transport that failed in every run has only
/// `error` (and the run counts).
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The scenario.
    pub scenario: Scenario,
    /// The transport's name.
    pub transport: String,
    /// Bytes per message.
    pub msg_size: usize,
    /// Fastest round trip (rtt), lap (oversubscribed) or publish-to-receive
    /// time (fanout, over every reader), nanoseconds.
    pub min_ns: Option<u64>,
    /// Median, nanoseconds.
    pub p50_ns: Option<u64>,
    /// 99th percentile, nanoseconds.
    pub p99_ns: Option<u64>,
    /// 99.9th percentile, nanoseconds.
    pub p999_ns: Option<u64>,
    /// Slowest, nanoseconds.
    pub max_ns: Option<u64>,
    /// Round trips, laps or messages per second; in `fanout`, messages each
    /// reader received per second (the mean over readers).
    pub msgs_per_s: Option<f64>,
    /// Payload bytes per second (stream, bulk; fanout: per reader).
    pub bytes_per_s: Option<f64>,
    /// `fanout`: reader processes (`null` in other scenarios).
    pub readers: Option<usize>,
    /// `fanout`: messages per second all readers received together.
    pub total_msgs_per_s: Option<f64>,
    /// `fanout`: messages per second of the reader that received the fewest.
    pub slowest_msgs_per_s: Option<f64>,
    /// `fanout`: messages per second the writer published.
    pub published_per_s: Option<f64>,
    /// `fanout`: the fraction of the messages published while recording
    /// that readers did not receive (overwritten, or skipped by a board's
    /// latest-value reads); 0 for lossless transports.
    pub lost: Option<f64>,
    /// `paced`: the rate the writer was asked for, messages per second
    /// (`null` elsewhere).
    pub rate: Option<u64>,
    /// `fanout`, `paced`: the CPU readers used while recording, in cores,
    /// the mean over readers (about 1: spinning throughout; near 0:
    /// asleep between messages).
    pub reader_cpu: Option<f64>,
    /// Why the transport failed: in every run, when there were several (see
    /// `failed_runs`).
    pub error: Option<String>,
    /// Runs that measured this row; the figures above are their medians.
    pub runs: usize,
    /// Runs that failed and are left out of the medians.
    pub failed_runs: usize,
    /// The error of the last failed run, when some runs failed but not all.
    pub last_failure: Option<String>,
    /// The field whose spread across runs `spread_min` and `spread_max`
    /// give: `p50_ns` for `rtt` and `oversubscribed`, `msgs_per_s` for
    /// `stream`, `bulk` and `fanout`.
    pub spread_of: &'static str,
    /// The lowest value of `spread_of` across the runs that succeeded.
    pub spread_min: Option<f64>,
    /// The highest value of `spread_of` across the runs that succeeded.
    pub spread_max: Option<f64>,
    /// Performance relative to `pipe` (in `fanout`, with as many readers),
    /// higher is better: the ratio taken in each run (see [`ratio`]), then
    /// the median across runs.
    pub vs_pipe: Option<f64>,
    /// Performance relative to the scenario's floor ([`floor_of`]), as
    /// `vs_pipe`.
    pub vs_floor: Option<f64>,
}

impl Row {
    pub(crate) fn from_measurement(
        scenario: Scenario,
        transport: &str,
        msg_size: usize,
        m: &Measurement,
    ) -> Self {
        let fan = m.fanout.as_ref();
        let msgs_per_s = if let Some(f) = fan {
            f.per_reader_msgs_per_s
        } else if m.elapsed_ns == 0 {
            0.0
        } else {
            m.count as f64 * 1e9 / m.elapsed_ns as f64
        };
        let bytes_per_s = matches!(
            scenario,
            Scenario::Stream | Scenario::Bulk | Scenario::Fanout | Scenario::Paced
        )
        .then_some(msgs_per_s * msg_size as f64);
        let lat = m.latency.as_ref();
        let mut row = Row {
            scenario,
            transport: transport.to_string(),
            msg_size,
            min_ns: lat.map(|l| l.min_ns),
            p50_ns: lat.map(|l| l.p50_ns),
            p99_ns: lat.map(|l| l.p99_ns),
            p999_ns: lat.map(|l| l.p999_ns),
            max_ns: lat.map(|l| l.max_ns),
            msgs_per_s: Some(msgs_per_s),
            bytes_per_s,
            readers: fan.map(|f| f.readers),
            total_msgs_per_s: fan.map(|f| f.total_msgs_per_s),
            slowest_msgs_per_s: fan.map(|f| f.slowest_msgs_per_s),
            published_per_s: fan.map(|f| f.published_per_s),
            lost: fan.map(|f| f.lost),
            rate: fan.and_then(|f| f.rate),
            reader_cpu: fan.map(|f| f.reader_cpu),
            error: None,
            runs: 1,
            failed_runs: 0,
            last_failure: None,
            spread_of: spread_of(scenario),
            spread_min: None,
            spread_max: None,
            vs_pipe: None,
            vs_floor: None,
        };
        row.spread_min = row.main_figure();
        row.spread_max = row.spread_min;
        row
    }

    pub(crate) fn failed(
        scenario: Scenario,
        transport: &str,
        msg_size: usize,
        readers: Option<usize>,
        e: String,
    ) -> Self {
        Row {
            scenario,
            transport: transport.to_string(),
            msg_size,
            min_ns: None,
            p50_ns: None,
            p99_ns: None,
            p999_ns: None,
            max_ns: None,
            msgs_per_s: None,
            bytes_per_s: None,
            readers,
            total_msgs_per_s: None,
            slowest_msgs_per_s: None,
            published_per_s: None,
            lost: None,
            rate: None,
            reader_cpu: None,
            error: Some(e),
            runs: 0,
            failed_runs: 1,
            last_failure: None,
            spread_of: spread_of(scenario),
            spread_min: None,
            spread_max: None,
            vs_pipe: None,
            vs_floor: None,
        }
    }

    /// The figure whose spread across runs is reported (see `spread_of`).
    pub(crate) fn main_figure(&self) -> Option<f64> {
        match self.scenario {
            Scenario::Rtt | Scenario::Oversubscribed => self.p50_ns.map(|v| v as f64),
            Scenario::Paced => self.p99_ns.map(|v| v as f64),
            Scenario::Stream | Scenario::Bulk | Scenario::Fanout => self.msgs_per_s,
        }
    }

    /// The figure the ratio columns compare, and whether lower is better:
    /// p50 for `rtt`, laps/s for `oversubscribed`, messages/s for `stream`,
    /// bytes/s for `bulk`, messages/s per reader for `fanout`, p99 for
    /// `paced`.
    fn key_figure(&self) -> Option<(f64, bool)> {
        match self.scenario {
            Scenario::Rtt => self.p50_ns.map(|v| (v as f64, true)),
            Scenario::Paced => self.p99_ns.map(|v| (v as f64, true)),
            Scenario::Oversubscribed | Scenario::Stream | Scenario::Fanout => {
                self.msgs_per_s.map(|v| (v, false))
            }
            Scenario::Bulk => self.bytes_per_s.map(|v| (v, false)),
        }
    }

    /// Whether `other` is this row's counterpart in another transport or
    /// run: the same scenario and message size and, in `fanout` and
    /// `paced`, as many readers (and in `paced` the same rate).
    pub fn same_measure(&self, other: &Row) -> bool {
        self.scenario == other.scenario
            && self.readers == other.readers
            && self.rate == other.rate
            && self.msg_size == other.msg_size
    }

    /// The transport's name, with the rate in `paced` (`shmkit, 10k/s`).
    pub fn label_rate(&self) -> String {
        match self.rate {
            Some(rate) => format!("{}, {}/s", self.transport, fmt_count(Some(rate as f64))),
            None => self.transport.clone(),
        }
    }

    /// The transport's name, with the reader count in `fanout`
    /// (`pipe, 4 readers`).
    pub fn label(&self) -> String {
        let mut label = match self.readers {
            Some(1) => format!("{}, 1 reader", self.transport),
            Some(n) => format!("{}, {n} readers", self.transport),
            None => self.transport.clone(),
        };
        if let Some(rate) = self.rate {
            let _ = write!(label, ", {}/s", fmt_count(Some(rate as f64)));
        }
        label
    }
}

/// The field [`Row::spread_of`] names in a scenario.
fn spread_of(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Rtt | Scenario::Oversubscribed => "p50_ns",
        Scenario::Paced => "p99_ns",
        Scenario::Stream | Scenario::Bulk | Scenario::Fanout => "msgs_per_s",
    }
}

/// How `row` compares with `base` (the same scenario and reader count,
/// usually the same run): performance relative to it, higher is better:
/// base/row for `rtt` (p50 latency), row/base for the others (throughput).
/// `None` when either has no figure.
pub fn ratio(row: &Row, base: &Row) -> Option<f64> {
    let (b, lower_better) = base.key_figure()?;
    let (v, _) = row.key_figure()?;
    if v <= 0.0 || b <= 0.0 {
        return None;
    }
    Some(if lower_better { b / v } else { v / b })
}

/// The transport another is compared with as the floor of a scenario:
/// `raw-stream` (records end to end, positions published once per batch)
/// for `stream`, `memcpy` for `bulk`, `raw-spin` (the per-slot ring) for
/// the others.
pub fn floor_of(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Bulk => "memcpy",
        Scenario::Stream => "raw-stream",
        _ => "raw-spin",
    }
}

/// Everything a run found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// How it ran.
    pub settings: Settings,
    /// How many times the whole plan ran; each row holds the medians of its
    /// runs that succeeded.
    pub runs: usize,
    /// One row per (scenario, transport) that ran, in run order.
    pub results: Vec<Row>,
}

/// One scenario's table before it is laid out as text or Markdown.
struct Table {
    title: String,
    /// Column names; the first is `transport`.
    head: Vec<String>,
    /// One line per transport that measured something: its name, then its
    /// cells.
    lines: Vec<Vec<String>>,
    /// (transport, what went wrong): errors, and runs that failed.
    notes: Vec<(String, String)>,
}

impl Report {
    /// Combines `runs[r][i]`, run `r` of plan entry `i`, into one report.
    pub(crate) fn new(machine: Machine, opts: &BenchOptions, runs: &[Vec<Row>]) -> Self {
        Report {
            machine,
            settings: Settings {
                warmup_ms: opts.warmup.as_millis() as u64,
                duration_ms: opts.duration.as_millis() as u64,
            },
            runs: runs.len(),
            results: crate::runs::combine(runs),
        }
    }

    /// The report as JSON: `{"machine": {…}, "settings": {…}, "runs": N,
    /// "results": [{…}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a report serialises")
    }

    /// The rows of one scenario.
    pub fn rows(&self, scenario: Scenario) -> impl Iterator<Item = &Row> {
        self.results.iter().filter(move |r| r.scenario == scenario)
    }

    /// How `row` compares with the transport `base` in the same scenario
    /// (and reader count), by the figures as they stand in this report
    /// (with several runs: a ratio of medians). The tables show
    /// [`Row::vs_pipe`] and [`Row::vs_floor`] instead: the median of the
    /// ratios taken in each run.
    pub fn ratio(&self, row: &Row, base: &str) -> Option<f64> {
        let base = self
            .results
            .iter()
            .find(|r| r.transport == base && r.same_measure(row))?;
        ratio(row, base)
    }

    /// The line above the tables: the machine, its load, the settings.
    fn machine_line(&self) -> String {
        let m = &self.machine;
        let mut line = format!(
            "{}{} · {} CPUs ({} allowed) · Linux {} · load {:.2}",
            m.model,
            if m.virtualized { " (virtualized)" } else { "" },
            m.cpus,
            m.cpus_allowed,
            m.kernel,
            m.load_average[0],
        );
        if let Some(end) = m.load_average_end {
            let _ = write!(line, " at the start, {:.2} at the end", end[0]);
        }
        let _ = write!(
            line,
            " · warm-up {} ms, {} ms each",
            self.settings.warmup_ms, self.settings.duration_ms
        );
        if self.runs > 1 {
            let _ = write!(line, " · medians of {} runs", self.runs);
        }
        line
    }

    /// Every table: one per scenario and message size (in the order run),
    /// then for a stream of several sizes the sweep.
    fn tables(&self) -> Vec<Table> {
        let mut tables = Vec::new();
        for scenario in Scenario::ALL {
            let sizes = self.sizes(scenario);
            tables.extend(sizes.iter().filter_map(|&n| self.table(scenario, n)));
            if scenario == Scenario::Stream && sizes.len() > 1 {
                tables.push(self.sweep_table(&sizes));
            }
        }
        tables
    }

    /// The message sizes one scenario ran, in the order run.
    pub fn sizes(&self, scenario: Scenario) -> Vec<usize> {
        let mut sizes = Vec::new();
        for r in self.rows(scenario) {
            if !sizes.contains(&r.msg_size) {
                sizes.push(r.msg_size);
            }
        }
        sizes
    }

    /// `stream` at every size side by side: messages/s and GB/s, and the
    /// ratio to the floor, per transport.
    fn sweep_table(&self, sizes: &[usize]) -> Table {
        let floor = floor_of(Scenario::Stream);
        let mut head = vec!["transport".to_string()];
        for n in sizes {
            head.push(format!("{n} B msgs/s"));
            head.push(format!("{n} B GB/s"));
            head.push(format!("{n} B vs {floor}"));
        }
        let mut lines: Vec<Vec<String>> = Vec::new();
        for r in self.rows(Scenario::Stream) {
            let i = match lines.iter().position(|l| l[0] == r.transport) {
                Some(i) => i,
                None => {
                    let mut line = vec!["-".to_string(); head.len()];
                    line[0] = r.transport.clone();
                    lines.push(line);
                    lines.len() - 1
                }
            };
            if r.error.is_some() {
                continue;
            }
            let col = 1 + 3 * sizes.iter().position(|&n| n == r.msg_size).unwrap_or(0);
            lines[i][col] = fmt_count(r.msgs_per_s);
            lines[i][col + 1] = r
                .bytes_per_s
                .map_or("-".into(), |b| format!("{:.2}", b / 1e9));
            lines[i][col + 2] = fmt_ratio(r.vs_floor);
        }
        Table {
            title: format!(
                "stream by message size ({} bytes)",
                sizes
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            head,
            lines,
            notes: Vec::new(),
        }
    }

    /// The table of one scenario at one message size, `None` when nothing
    /// ran there.
    fn table(&self, scenario: Scenario, msg_size: usize) -> Option<Table> {
        let rows: Vec<&Row> = self
            .rows(scenario)
            .filter(|r| r.msg_size == msg_size)
            .collect();
        let first = rows.first()?;
        let floor = floor_of(scenario);
        let (title, headers, range): (String, &[&str], &str) = match scenario {
            Scenario::Rtt => (
                format!("rtt: round trip, {}-byte message", first.msg_size),
                &["min", "p50", "p99", "p99.9", "max", "trips/s"],
                "p50 range",
            ),
            Scenario::Stream => (
                format!("stream: one-way {}-byte messages", first.msg_size),
                &["msgs/s", "MB/s"],
                "msgs/s range",
            ),
            Scenario::Bulk => (
                format!(
                    "bulk: one-way {} messages, every byte written and read",
                    shmkit::human_bytes(first.msg_size as u64)
                ),
                &["GB/s", "msgs/s"],
                "GB/s range",
            ),
            Scenario::Oversubscribed => (
                format!(
                    "oversubscribed: {}-byte token around 3 processes on 2 cores",
                    first.msg_size
                ),
                &["min", "p50", "p99", "p99.9", "laps/s"],
                "p50 range",
            ),
            Scenario::Fanout => (
                format!(
                    "fanout: one writer, {}-byte messages to N reader processes",
                    first.msg_size
                ),
                &[
                    "readers",
                    "min",
                    "p50",
                    "p99",
                    "p99.9",
                    "max",
                    "msgs/s each",
                    "msgs/s all",
                    "lost",
                ],
                "msgs/s each range",
            ),
            Scenario::Paced => (
                format!(
                    "paced: one writer at fixed rates, {}-byte messages to N reader processes",
                    first.msg_size
                ),
                &[
                    "readers",
                    "rate",
                    "p50",
                    "p99",
                    "p99.9",
                    "max",
                    "msgs/s each",
                    "lost",
                    "reader CPU",
                ],
                "p99 range",
            ),
        };
        let several = self.runs > 1;
        let mut head = vec!["transport".to_string()];
        head.extend(headers.iter().map(|h| h.to_string()));
        if several {
            head.push(range.into());
        }
        head.push("vs pipe".into());
        head.push(format!("vs {floor}"));
        let mut lines = Vec::new();
        let mut notes = Vec::new();
        for r in &rows {
            if let Some(e) = &r.error {
                let note = if several {
                    format!("error (every run): {e}")
                } else {
                    format!("error: {e}")
                };
                notes.push((r.label(), note));
                continue;
            }
            if r.failed_runs > 0 {
                notes.push((
                    r.label(),
                    format!(
                        "{} of {} runs failed (left out), the last with: {}",
                        r.failed_runs,
                        r.runs + r.failed_runs,
                        r.last_failure.as_deref().unwrap_or("?")
                    ),
                ));
            }
            let mut cells = vec![r.transport.clone()];
            let ns = |v: Option<u64>| v.map_or("-".into(), fmt_ns);
            match scenario {
                Scenario::Rtt | Scenario::Oversubscribed => {
                    cells.push(ns(r.min_ns));
                    cells.push(ns(r.p50_ns));
                    cells.push(ns(r.p99_ns));
                    cells.push(ns(r.p999_ns));
                    if scenario == Scenario::Rtt {
                        cells.push(ns(r.max_ns));
                    }
                    cells.push(fmt_count(r.msgs_per_s));
                }
                Scenario::Stream => {
                    cells.push(fmt_count(r.msgs_per_s));
                    cells.push(
                        r.bytes_per_s
                            .map_or("-".into(), |b| format!("{:.0}", b / 1e6)),
                    );
                }
                Scenario::Bulk => {
                    cells.push(
                        r.bytes_per_s
                            .map_or("-".into(), |b| format!("{:.2}", b / 1e9)),
                    );
                    cells.push(fmt_count(r.msgs_per_s));
                }
                Scenario::Fanout => {
                    cells.push(r.readers.map_or("-".into(), |n| n.to_string()));
                    for v in [r.min_ns, r.p50_ns, r.p99_ns, r.p999_ns, r.max_ns] {
                        cells.push(ns(v));
                    }
                    cells.push(fmt_count(r.msgs_per_s));
                    cells.push(fmt_count(r.total_msgs_per_s));
                    cells.push(fmt_lost(r.lost));
                }
                Scenario::Paced => {
                    cells.push(r.readers.map_or("-".into(), |n| n.to_string()));
                    cells.push(fmt_count(r.rate.map(|v| v as f64)));
                    for v in [r.p50_ns, r.p99_ns, r.p999_ns, r.max_ns] {
                        cells.push(ns(v));
                    }
                    cells.push(fmt_count(r.msgs_per_s));
                    cells.push(fmt_lost(r.lost));
                    cells.push(r.reader_cpu.map_or("-".into(), |c| format!("{c:.2}")));
                }
            }
            if several {
                let cell = match (r.spread_min, r.spread_max) {
                    (Some(lo), Some(hi)) => match scenario {
                        Scenario::Rtt | Scenario::Oversubscribed | Scenario::Paced => {
                            format!("{}–{}", fmt_ns(lo as u64), fmt_ns(hi as u64))
                        }
                        Scenario::Stream | Scenario::Fanout => {
                            format!("{}–{}", fmt_count(Some(lo)), fmt_count(Some(hi)))
                        }
                        Scenario::Bulk => {
                            let gb = |v: f64| v * r.msg_size as f64 / 1e9;
                            format!("{:.2}–{:.2}", gb(lo), gb(hi))
                        }
                    },
                    _ => "-".into(),
                };
                cells.push(cell);
            }
            cells.push(fmt_ratio(r.vs_pipe));
            cells.push(fmt_ratio(r.vs_floor));
            lines.push(cells);
        }
        Some(Table {
            title,
            head,
            lines,
            notes,
        })
    }

    /// What the columns mean, below the tables.
    fn footer(&self) -> String {
        let ratios = "vs pipe, vs floor: performance relative to that transport, higher is \
                      better (rtt: by p50 latency; others: by throughput; fanout: by msgs/s \
                      each, against the same number of readers)";
        let mut text = if self.runs > 1 {
            format!(
                "Every figure is the median of {n} runs (run 1 of every row, then run 2, …, \
                 each between fresh processes); range: the lowest and highest p50 (rtt, \
                 oversubscribed) or throughput (stream, bulk, fanout) of the {n} runs. \
                 {ratios}, taken within each run, then the median across runs: robust to \
                 load that drifts between runs. MB and GB are 10^6 and 10^9 bytes.",
                n = self.runs
            )
        } else {
            format!("{ratios}. MB and GB are 10^6 and 10^9 bytes.")
        };
        if self.rows(Scenario::Fanout).next().is_some() {
            text.push_str(
                " fanout: latency from the writer's time stamp to the reader's receipt, \
                 over every reader; msgs/s each: received per reader (the mean), all: every \
                 reader together; lost: the share of the messages published that readers \
                 did not receive (by design on lossy transports: a board keeps the latest \
                 value, a broadcast overwrites what a slow reader has not read).",
            );
        }
        if self.rows(Scenario::Paced).next().is_some() {
            text.push_str(
                " paced: as fanout, with the writer publishing on a fixed schedule at the \
                 rate given; ratios by p99 latency (lower is better); reader CPU: CPU time \
                 over recording time, the mean over readers, in cores (1: spinning \
                 throughout).",
            );
        }
        text
    }

    /// The report as text tables, one per scenario.
    pub fn render_table(&self) -> String {
        let mut out = self.machine_line();
        out.push('\n');
        for table in self.tables() {
            let _ = writeln!(out, "\n{}", table.title);
            let mut cells = vec![table.head];
            cells.extend(table.lines);
            write_aligned(&mut out, &cells);
            for (transport, note) in table.notes {
                let _ = writeln!(out, "  {transport:<12} {note}");
            }
        }
        let _ = writeln!(out, "\n{}", self.footer());
        out
    }

    /// The report as Markdown: the machine line, one table per scenario
    /// (numbers right-aligned) with its errors listed below it, and what
    /// the columns mean.
    pub fn render_markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let load = |l: [f64; 3]| format!("{:.2}, {:.2}, {:.2}", l[0], l[1], l[2]);
        let _ = write!(
            out,
            "{} · {} CPUs ({} allowed){} · Linux {} · {} memory · clock source {} · \
             load average {} (1, 5, 15 min) at the start",
            m.model,
            m.cpus,
            m.cpus_allowed,
            if m.virtualized { ", virtualized" } else { "" },
            m.kernel,
            shmkit::human_bytes(m.memory_bytes),
            if m.clocksource.is_empty() {
                "?"
            } else {
                &m.clocksource
            },
            load(m.load_average),
        );
        if let Some(end) = m.load_average_end {
            let _ = write!(out, ", {} at the end", load(end));
        }
        let _ = writeln!(
            out,
            " · warm-up {} ms, {} ms each · {} run{}\n",
            self.settings.warmup_ms,
            self.settings.duration_ms,
            self.runs,
            if self.runs == 1 { "" } else { "s (medians)" }
        );
        for table in self.tables() {
            let _ = writeln!(out, "**{}**\n", table.title);
            let row = |cells: &[String]| {
                let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
                format!("| {} |", cells.join(" | "))
            };
            let _ = writeln!(out, "{}", row(&table.head));
            let align: Vec<String> = (0..table.head.len())
                .map(|c| if c == 0 { ":--" } else { "--:" }.to_string())
                .collect();
            let _ = writeln!(out, "{}", row(&align));
            for mut line in table.lines {
                line[0] = format!("`{}`", line[0]);
                let _ = writeln!(out, "{}", row(&line));
            }
            if !table.notes.is_empty() {
                out.push('\n');
                for (transport, note) in table.notes {
                    let _ = writeln!(out, "- `{transport}`: {note}");
                }
            }
            out.push('\n');
        }
        let _ = writeln!(out, "{}", self.footer());
        out
    }

    /// Writes an SVG chart: latency percentiles and throughput bars.
    pub fn write_svg(&self, path: &Path) -> Result<()> {
        crate::plot::write_svg(self, path)
    }
}

fn write_aligned(out: &mut String, table: &[Vec<String>]) {
    let cols = table.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            table
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in table {
        let mut line = String::from("  ");
        for (c, cell) in row.iter().enumerate() {
            if c == 0 {
                let _ = write!(line, "{cell:<w$}", w = widths[c]);
            } else {
                let _ = write!(line, "  {cell:>w$}", w = widths[c]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// `850 ns`, `12.3 µs`, `4.56 ms`, `1.20 s`.
pub fn fmt_ns(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", v / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", v / 1e6)
    } else {
        format!("{:.2} s", v / 1e9)
    }
}

/// `950`, `12.3k`, `4.56M`.
pub(crate) fn fmt_count(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v < 1e3 => format!("{v:.0}"),
        Some(v) if v < 1e6 => format!("{:.1}k", v / 1e3),
        Some(v) if v < 1e9 => format!("{:.2}M", v / 1e6),
        Some(v) => format!("{:.2}G", v / 1e9),
    }
}

/// The share of messages lost: `0`, `<0.01%`, `0.15%`, `99.97%`.
fn fmt_lost(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v <= 0.0 => "0".into(),
        Some(v) if v < 1e-4 => "<0.01%".into(),
        Some(v) if v < 0.9999 => format!("{:.2}%", v * 100.0),
        Some(v) if v < 1.0 => ">99.99%".into(),
        Some(_) => "100%".into(),
    }
}

/// Two significant digits: `320×`, `3.2×`, `0.032×`.
fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        None => "-".into(),
        Some(r) if r >= 10.0 => format!("{r:.0}×"),
        Some(r) if r >= 1.0 => format!("{r:.1}×"),
        Some(r) => {
            let digits = (-r.log10().floor()) as usize + 1;
            format!("{r:.digits$}×")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Latency;

    fn rtt(transport: &str, p50: u64) -> Row {
        let m = Measurement {
            count: 1_000_000_000 / p50,
            elapsed_ns: 1_000_000_000,
            latency: Some(Latency {
                min_ns: p50 / 2,
                p50_ns: p50,
                p99_ns: p50 * 2,
                p999_ns: p50 * 3,
                max_ns: p50 * 10,
            }),
            ..Measurement::default()
        };
        Row::from_measurement(Scenario::Rtt, transport, 8, &m)
    }

    fn bulk_failed() -> Row {
        Row::failed(Scenario::Bulk, "posix-mq", 1 << 20, None, "too big".into())
    }

    /// A fan-out row: `each` messages/s per reader, a quarter of them lost.
    fn fanout(transport: &str, readers: usize, each: f64) -> Row {
        let m = Measurement {
            latency: Some(Latency {
                min_ns: 500,
                p50_ns: 1_000,
                p99_ns: 5_000,
                p999_ns: 9_000,
                max_ns: 20_000,
            }),
            fanout: Some(crate::scenario::FanoutFigures {
                readers,
                per_reader_msgs_per_s: each,
                total_msgs_per_s: each * readers as f64,
                slowest_msgs_per_s: each / 2.0,
                published_per_s: each * 4.0 / 3.0,
                lost: 0.25,
                rate: None,
                reader_cpu: 0.5,
            }),
            ..Measurement::default()
        };
        Row::from_measurement(Scenario::Fanout, transport, 64, &m)
    }

    /// Runs whose figures all scale by `slow[r]` (a machine that gets busier).
    fn report(slow: &[u64]) -> Report {
        let runs: Vec<Vec<Row>> = slow
            .iter()
            .map(|&k| {
                vec![
                    rtt("raw-spin", 200 * k),
                    rtt("pipe", 20_000 * k),
                    bulk_failed(),
                ]
            })
            .collect();
        let mut opts = BenchOptions::new(crate::ChildCommand {
            program: "unused".into(),
            args: Vec::new(),
        });
        opts.warmup = std::time::Duration::from_millis(1);
        opts.duration = std::time::Duration::from_millis(2);
        Report::new(Machine::detect(), &opts, &runs)
    }

    #[test]
    fn the_commit_is_recorded() {
        // This checkout's commit, or "unknown" where git cannot tell.
        let commit = Machine::detect().commit;
        assert!(
            commit == "unknown" || commit.trim_end_matches("-dirty").len() == 40,
            "{commit}"
        );
    }

    #[test]
    fn ratios_are_higher_is_better() {
        let r = report(&[1]);
        let spin = &r.results[0];
        let pipe = &r.results[1];
        assert_eq!(r.ratio(spin, "pipe"), Some(100.0));
        assert_eq!(r.ratio(pipe, "raw-spin"), Some(0.01));
        assert_eq!(r.ratio(&r.results[2], "pipe"), None);
        assert_eq!((spin.vs_pipe, spin.vs_floor), (Some(100.0), Some(1.0)));
        assert_eq!((pipe.vs_pipe, pipe.vs_floor), (Some(1.0), Some(0.01)));
    }

    #[test]
    fn json_has_every_field_with_nulls() {
        let j = report(&[1]).to_json();
        assert!(j["machine"]["cpus"].as_u64().unwrap() >= 1);
        assert_eq!(j["runs"], 1);
        let rows = j["results"].as_array().unwrap();
        for key in [
            "scenario",
            "transport",
            "msg_size",
            "min_ns",
            "p50_ns",
            "p99_ns",
            "p999_ns",
            "max_ns",
            "msgs_per_s",
            "bytes_per_s",
            "readers",
            "total_msgs_per_s",
            "slowest_msgs_per_s",
            "published_per_s",
            "lost",
            "error",
            "runs",
            "failed_runs",
            "last_failure",
            "spread_of",
            "spread_min",
            "spread_max",
            "vs_pipe",
            "vs_floor",
        ] {
            assert!(rows.iter().all(|r| r.get(key).is_some()), "{key}");
        }
        assert_eq!(rows[0]["scenario"], "rtt");
        assert!(rows[0]["bytes_per_s"].is_null());
        assert!(rows[0]["readers"].is_null() && rows[0]["lost"].is_null());
        assert_eq!(rows[0]["spread_of"], "p50_ns");
        assert_eq!(rows[0]["spread_min"], 200.0);
        assert_eq!(rows[2]["error"], "too big");
        assert_eq!(rows[2]["runs"], 0);
    }

    #[test]
    fn table_shows_ratios_and_errors() {
        let t = report(&[1]).render_table();
        assert!(t.contains("100×"), "{t}");
        assert!(t.contains("0.010×"), "{t}");
        assert!(t.contains("posix-mq     error: too big"), "{t}");
        assert!(!t.contains("range"), "one run has no range column: {t}");
        assert_eq!(fmt_ns(1_500), "1.5 µs");
        assert_eq!(fmt_ratio(Some(0.0032)), "0.0032×");
    }

    #[test]
    fn several_runs_show_medians_ranges_and_per_run_ratios() {
        let r = report(&[1, 3, 2]);
        assert_eq!(r.runs, 3);
        let spin = &r.results[0];
        assert_eq!(spin.p50_ns, Some(400));
        assert_eq!(
            (spin.spread_min, spin.spread_max),
            (Some(200.0), Some(600.0))
        );
        assert_eq!(spin.vs_pipe, Some(100.0));
        assert_eq!(r.results[2].failed_runs, 3);
        let t = r.render_table();
        assert!(t.contains("p50 range"), "{t}");
        assert!(t.contains("200 ns–600 ns"), "{t}");
        assert!(t.contains("medians of 3 runs"), "{t}");
        assert!(t.contains("error (every run): too big"), "{t}");
        assert!(t.contains("the median across runs"), "{t}");
    }

    #[test]
    fn markdown_has_one_table_per_scenario() {
        let md = report(&[1, 2]).render_markdown();
        assert!(md.contains("load average "), "{md}");
        assert!(md.contains("2 runs (medians)"), "{md}");
        assert!(md.contains("**rtt: round trip, 8-byte message**"), "{md}");
        assert!(
            md.contains("| transport | min | p50 | p99 | p99.9 | max | trips/s | p50 range | vs pipe | vs raw-spin |"),
            "{md}"
        );
        assert!(md.contains("| :-- | --: |"), "{md}");
        assert!(md.contains("| `raw-spin` | "), "{md}");
        assert!(
            md.contains("- `posix-mq`: error (every run): too big"),
            "{md}"
        );
        // Every table line has as many cells as its header.
        for block in md.split("\n\n").filter(|b| b.starts_with('|')) {
            let widths: Vec<usize> = block.lines().map(|l| l.matches(" | ").count()).collect();
            assert!(widths.windows(2).all(|w| w[0] == w[1]), "{block}");
        }
    }

    #[test]
    fn fanout_rows_compare_at_the_same_reader_count() {
        let runs = vec![vec![
            fanout("shmkit", 1, 2e6),
            fanout("pipe", 1, 1e6),
            fanout("shmkit", 4, 1e6),
            fanout("pipe", 4, 2.5e5),
            Row::failed(Scenario::Fanout, "raw-spin", 64, Some(4), "stuck".into()),
        ]];
        let mut opts = BenchOptions::new(crate::ChildCommand {
            program: "unused".into(),
            args: Vec::new(),
        });
        opts.duration = std::time::Duration::from_millis(2);
        let r = Report::new(Machine::detect(), &opts, &runs);
        assert_eq!(r.results[0].vs_pipe, Some(2.0));
        assert_eq!(r.results[2].vs_pipe, Some(4.0));
        assert_eq!(r.ratio(&r.results[2], "pipe"), Some(4.0));
        assert_eq!(r.results[2].bytes_per_s, Some(64e6));
        assert_eq!(r.results[2].total_msgs_per_s, Some(4e6));
        assert_eq!(r.results[4].readers, Some(4));
        let j = r.to_json();
        assert_eq!(j["results"][3]["readers"], 4);
        assert_eq!(j["results"][3]["lost"], 0.25);
        let t = r.render_table();
        assert!(t.contains("fanout: one writer, 64-byte messages"), "{t}");
        assert!(t.contains("msgs/s each"), "{t}");
        assert!(t.contains("25.00%"), "{t}");
        assert!(t.contains("raw-spin, 4 readers error: stuck"), "{t}");
        assert!(t.contains("lost: the share"), "{t}");
        let md = r.render_markdown();
        assert!(
            md.contains("| transport | readers | min | p50 | p99 | p99.9 | max | msgs/s each | msgs/s all | lost | vs pipe | vs raw-spin |"),
            "{md}"
        );
        assert!(md.contains("| `shmkit` | 4 | 500 ns | 1.0 µs |"), "{md}");
        assert_eq!(fmt_lost(Some(0.0)), "0");
        assert_eq!(fmt_lost(Some(0.99995)), ">99.99%");
        assert_eq!(fmt_lost(Some(0.00001)), "<0.01%");
    }
}
