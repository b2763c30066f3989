//! [`Report`]: the machine, the settings and one [`Row`] per (scenario,
//! transport), rendered as a table for people, as JSON, or as an SVG chart.

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
    /// Version of shmkit-bench.
    pub shmkit_version: String,
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
            shmkit_version: env!("CARGO_PKG_VERSION").to_string(),
        }
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

/// One (scenario, transport) result. Fields that do not apply are `None`
/// (`null` in JSON); a failed transport has only `error`.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The scenario.
    pub scenario: Scenario,
    /// The transport's name.
    pub transport: String,
    /// Bytes per message.
    pub msg_size: usize,
    /// Fastest round trip (rtt) or lap (oversubscribed), nanoseconds.
    pub min_ns: Option<u64>,
    /// Median, nanoseconds.
    pub p50_ns: Option<u64>,
    /// 99th percentile, nanoseconds.
    pub p99_ns: Option<u64>,
    /// 99.9th percentile, nanoseconds.
    pub p999_ns: Option<u64>,
    /// Slowest, nanoseconds.
    pub max_ns: Option<u64>,
    /// Round trips, laps or messages per second.
    pub msgs_per_s: Option<f64>,
    /// Payload bytes per second (stream, bulk).
    pub bytes_per_s: Option<f64>,
    /// Why the transport failed, if it did.
    pub error: Option<String>,
}

impl Row {
    pub(crate) fn from_measurement(
        scenario: Scenario,
        transport: &str,
        msg_size: usize,
        m: &Measurement,
    ) -> Self {
        let msgs_per_s = if m.elapsed_ns == 0 {
            0.0
        } else {
            m.count as f64 * 1e9 / m.elapsed_ns as f64
        };
        let bytes_per_s = matches!(scenario, Scenario::Stream | Scenario::Bulk)
            .then_some(msgs_per_s * msg_size as f64);
        let lat = m.latency.as_ref();
        Row {
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
            error: None,
        }
    }

    pub(crate) fn failed(scenario: Scenario, transport: &str, msg_size: usize, e: String) -> Self {
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
            error: Some(e),
        }
    }

    /// The figure the ratio columns compare, and whether lower is better:
    /// p50 for `rtt`, laps/s for `oversubscribed`, messages/s for `stream`,
    /// bytes/s for `bulk`.
    fn key_figure(&self) -> Option<(f64, bool)> {
        match self.scenario {
            Scenario::Rtt => self.p50_ns.map(|v| (v as f64, true)),
            Scenario::Oversubscribed | Scenario::Stream => self.msgs_per_s.map(|v| (v, false)),
            Scenario::Bulk => self.bytes_per_s.map(|v| (v, false)),
        }
    }
}

/// The transport another is compared with as the floor of a scenario.
pub fn floor_of(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Bulk => "memcpy",
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
    /// One row per (scenario, transport) that ran, in run order.
    pub results: Vec<Row>,
}

impl Report {
    pub(crate) fn new(machine: Machine, opts: &BenchOptions, results: Vec<Row>) -> Self {
        Report {
            machine,
            settings: Settings {
                warmup_ms: opts.warmup.as_millis() as u64,
                duration_ms: opts.duration.as_millis() as u64,
            },
            results,
        }
    }

    /// The report as JSON: `{"machine": {…}, "settings": {…}, "results": [{…}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a report serialises")
    }

    /// The rows of one scenario.
    pub fn rows(&self, scenario: Scenario) -> impl Iterator<Item = &Row> {
        self.results.iter().filter(move |r| r.scenario == scenario)
    }

    /// How `row` compares with the transport `base` in the same scenario:
    /// performance relative to it, higher is better (for latency, base/row).
    pub fn ratio(&self, row: &Row, base: &str) -> Option<f64> {
        let base = self.rows(row.scenario).find(|r| r.transport == base)?;
        let (b, lower_better) = base.key_figure()?;
        let (v, _) = row.key_figure()?;
        if v <= 0.0 || b <= 0.0 {
            return None;
        }
        Some(if lower_better { b / v } else { v / b })
    }

    /// The report as text tables, one per scenario.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "{} · {} CPUs ({} allowed) · Linux {} · load {:.2} · warm-up {} ms, {} ms each",
            m.model,
            m.cpus,
            m.cpus_allowed,
            m.kernel,
            m.load_average[0],
            self.settings.warmup_ms,
            self.settings.duration_ms
        );
        for scenario in Scenario::ALL {
            let rows: Vec<&Row> = self.rows(scenario).collect();
            let Some(first) = rows.first() else {
                continue;
            };
            let floor = floor_of(scenario);
            let (title, headers): (String, &[&str]) = match scenario {
                Scenario::Rtt => (
                    format!("rtt: round trip, {}-byte message", first.msg_size),
                    &["min", "p50", "p99", "p99.9", "max", "trips/s"],
                ),
                Scenario::Stream => (
                    format!("stream: one-way {}-byte messages", first.msg_size),
                    &["msgs/s", "MB/s"],
                ),
                Scenario::Bulk => (
                    format!(
                        "bulk: one-way {} messages, every byte written and read",
                        shmkit::human_bytes(first.msg_size as u64)
                    ),
                    &["GB/s", "msgs/s"],
                ),
                Scenario::Oversubscribed => (
                    format!(
                        "oversubscribed: {}-byte token around 3 processes on 2 cores",
                        first.msg_size
                    ),
                    &["min", "p50", "p99", "p99.9", "laps/s"],
                ),
            };
            let mut table: Vec<Vec<String>> = Vec::new();
            let mut head = vec!["transport".to_string()];
            head.extend(headers.iter().map(|h| h.to_string()));
            head.push("vs pipe".into());
            head.push(format!("vs {floor}"));
            table.push(head);
            let mut errors = Vec::new();
            for r in &rows {
                if let Some(e) = &r.error {
                    errors.push(format!("  {:<12} error: {e}", r.transport));
                    continue;
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
                }
                cells.push(fmt_ratio(self.ratio(r, "pipe")));
                cells.push(fmt_ratio(self.ratio(r, floor)));
                table.push(cells);
            }
            let _ = writeln!(out, "\n{title}");
            write_aligned(&mut out, &table);
            for e in errors {
                let _ = writeln!(out, "{e}");
            }
        }
        let _ = writeln!(
            out,
            "\nvs pipe, vs floor: performance relative to that transport, higher is better \
             (rtt: by p50 latency; others: by throughput). MB and GB are 10^6 and 10^9 bytes."
        );
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
fn fmt_count(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v < 1e3 => format!("{v:.0}"),
        Some(v) if v < 1e6 => format!("{:.1}k", v / 1e3),
        Some(v) if v < 1e9 => format!("{:.2}M", v / 1e6),
        Some(v) => format!("{:.2}G", v / 1e9),
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

    fn report() -> Report {
        let m = |p50, count| Measurement {
            count,
            elapsed_ns: 1_000_000_000,
            latency: Some(Latency {
                min_ns: p50 / 2,
                p50_ns: p50,
                p99_ns: p50 * 2,
                p999_ns: p50 * 3,
                max_ns: p50 * 10,
            }),
        };
        Report {
            machine: Machine::detect(),
            settings: Settings {
                warmup_ms: 1,
                duration_ms: 2,
            },
            results: vec![
                Row::from_measurement(Scenario::Rtt, "raw-spin", 8, &m(200, 5_000_000)),
                Row::from_measurement(Scenario::Rtt, "pipe", 8, &m(20_000, 50_000)),
                Row::failed(Scenario::Bulk, "posix-mq", 1 << 20, "too big".into()),
            ],
        }
    }

    #[test]
    fn ratios_are_higher_is_better() {
        let r = report();
        let spin = &r.results[0];
        let pipe = &r.results[1];
        assert_eq!(r.ratio(spin, "pipe"), Some(100.0));
        assert_eq!(r.ratio(pipe, "raw-spin"), Some(0.01));
        assert_eq!(r.ratio(&r.results[2], "pipe"), None);
    }

    #[test]
    fn json_has_every_field_with_nulls() {
        let j = report().to_json();
        assert!(j["machine"]["cpus"].as_u64().unwrap() >= 1);
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
            "error",
        ] {
            assert!(rows.iter().all(|r| r.get(key).is_some()), "{key}");
        }
        assert_eq!(rows[0]["scenario"], "rtt");
        assert!(rows[0]["bytes_per_s"].is_null());
        assert_eq!(rows[2]["error"], "too big");
    }

    #[test]
    fn table_shows_ratios_and_errors() {
        let t = report().render_table();
        assert!(t.contains("100×"), "{t}");
        assert!(t.contains("0.010×"), "{t}");
        assert!(t.contains("posix-mq     error: too big"), "{t}");
        assert_eq!(fmt_ns(1_500), "1.5 µs");
        assert_eq!(fmt_ratio(Some(0.0032)), "0.0032×");
    }
}
