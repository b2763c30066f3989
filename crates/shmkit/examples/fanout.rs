//! Fan-out: one writer, N reader processes, on a board or a broadcast.
//!
//! ```text
//! cargo run --release -p shmkit --example fanout -- [board|broadcast] [--readers 1,2,4,8,16,32] [--seconds 2]
//! ```
//!
//! For each N it runs two phases, each with N fresh reader processes (this
//! program re-executed):
//!
//! - **latency**: the writer publishes `[counter, CLOCK_MONOTONIC ns]` once
//!   a millisecond; each reader waits for it (`Board::wait_for_change`, or
//!   `Subscriber::recv`: spin briefly, then sleep on the shared futex) and
//!   records now − timestamp. Percentiles are over every reader's samples.
//! - **throughput**: the writer writes as fast as it can; readers read as
//!   fast as they can (`Board::read_into` in a loop, or `recv` of every
//!   message). Reported: reads (or messages received) per second, all
//!   readers together, the writer's writes per second, and for a broadcast
//!   the messages subscribers missed (overwritten before they got to them).
//!
//! Readers and the writer share the machine's cores: with more runnable
//! processes than cores the figures measure the scheduler as much as the
//! algorithm, which is the point of running it up to 32 readers.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmkit::board::{Board, BoardOptions};
use shmkit::broadcast::{Broadcast, BroadcastOptions, Received};

/// The counter value that tells readers to stop.
const STOP: u64 = u64::MAX;
const WAIT: Duration = Duration::from_secs(10);

fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn value(counter: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&counter.to_le_bytes());
    v[8..].copy_from_slice(&now_ns().to_le_bytes());
    v
}

fn parse(v: &[u8]) -> (u64, u64) {
    let word = |i: usize| u64::from_le_bytes(v[i..i + 8].try_into().expect("16-byte values"));
    (word(0), word(8))
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Latency,
    Throughput,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Latency => "latency",
            Phase::Throughput => "throughput",
        }
    }
}

/// A reader process: prints "ready", reads until the STOP value, prints
/// `result READS MISSED SECONDS LAT...` (latencies in ns).
fn reader(kind: &str, phase: &str, name: &str) -> shmkit::Result<()> {
    let mut reads = 0u64;
    let mut missed = 0u64;
    let mut lat = Vec::new();
    let mut buf = Vec::new();
    let start;
    match kind {
        "board" => {
            let board = Board::open(name)?;
            println!("ready");
            start = Instant::now();
            let mut version = board.version();
            loop {
                let counter;
                if phase == "latency" {
                    let (v, ver) = board.wait_for_change(version, Some(WAIT))?;
                    let (c, t) = parse(&v);
                    lat.push(now_ns().saturating_sub(t));
                    (counter, version) = (c, ver);
                } else {
                    version = board.read_into(&mut buf)?;
                    counter = if buf.len() == 16 { parse(&buf).0 } else { 0 };
                }
                reads += 1;
                if counter == STOP {
                    break;
                }
            }
            let _ = version;
        }
        _ => {
            let mut sub = Broadcast::open(name)?.subscribe()?;
            println!("ready");
            start = Instant::now();
            loop {
                match sub.recv_into(&mut buf, Some(WAIT))? {
                    Received::Message { .. } => {
                        let (c, t) = parse(&buf);
                        if phase == "latency" {
                            lat.push(now_ns().saturating_sub(t));
                        }
                        reads += 1;
                        if c == STOP {
                            break;
                        }
                    }
                    Received::Lagged { missed: n } => missed += n,
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let lat: Vec<String> = lat.iter().map(u64::to_string).collect();
    println!("result {reads} {missed} {secs} {}", lat.join(" "));
    Ok(())
}

/// The writer side of one phase: creates the object, starts `n` readers,
/// writes for `seconds`, and collects what the readers report.
fn run_phase(kind: &str, phase: Phase, n: usize, seconds: f64) -> shmkit::Result<Row> {
    let name = format!(
        "/shmkit-fanout-{}-{kind}-{n}-{}",
        std::process::id(),
        phase.as_str()
    );
    struct Unlink(String);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = shmkit::posix::unlink(&self.0);
        }
    }
    let _guard = Unlink(name.clone());
    enum Writer {
        Board(shmkit::board::BoardWriter),
        Broadcast(shmkit::broadcast::Publisher),
    }
    let (mut writer, _keep) = if kind == "board" {
        let b = Board::create(&name, BoardOptions::new().max_size(16))?;
        (Writer::Board(b.writer()?), None)
    } else {
        let mut o = BroadcastOptions::new();
        o.capacity(4096).max_message(16);
        let b = Broadcast::create(&name, &o)?;
        (Writer::Broadcast(b.publisher()?), Some(b))
    };
    let mut write = |counter: u64| -> shmkit::Result<()> {
        match &mut writer {
            Writer::Board(w) => w.write(&value(counter)).map(|_| ()),
            Writer::Broadcast(p) => p.send(&value(counter)).map(|_| ()),
        }
    };
    let mut children: Vec<(Child, BufReader<std::process::ChildStdout>)> = (0..n)
        .map(|_| {
            let mut child = Command::new(std::env::current_exe().expect("own path"))
                .env("FANOUT_ROLE", format!("{kind}:{}", phase.as_str()))
                .env("FANOUT_NAME", &name)
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a reader");
            let out = BufReader::new(child.stdout.take().expect("piped"));
            (child, out)
        })
        .collect();
    for (_, out) in &mut children {
        let mut line = String::new();
        out.read_line(&mut line).expect("reader output");
        assert_eq!(line.trim(), "ready", "a reader failed to start");
    }
    let start = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    let mut writes = 0u64;
    while start.elapsed() < limit {
        match phase {
            Phase::Latency => {
                write(writes)?;
                writes += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Phase::Throughput => {
                for _ in 0..256 {
                    write(writes)?;
                    writes += 1;
                }
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Board readers in the throughput phase might miss a single STOP
    // between two reads of theirs; it is the last value, so they do not.
    write(STOP)?;
    let mut row = Row {
        readers: n,
        reads: 0,
        missed: 0,
        reader_secs: 0.0,
        writes_per_sec: writes as f64 / elapsed,
        lat: Vec::new(),
    };
    for (mut child, mut out) in children {
        let mut text = String::new();
        out.read_to_string(&mut text).expect("reader output");
        let status = child.wait().expect("wait for a reader");
        assert!(status.success(), "a reader failed: {text}");
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("result "))
            .expect("a result line");
        let mut f = line.split_whitespace();
        row.reads += f.next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        row.missed += f.next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let secs: f64 = f.next().and_then(|s| s.parse().ok()).unwrap_or(1.0);
        row.reader_secs = row.reader_secs.max(secs);
        row.lat.extend(f.filter_map(|s| s.parse::<u64>().ok()));
    }
    Ok(row)
}

struct Row {
    readers: usize,
    reads: u64,
    missed: u64,
    reader_secs: f64,
    writes_per_sec: f64,
    lat: Vec<u64>,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() -> shmkit::Result<()> {
    if let Ok(role) = std::env::var("FANOUT_ROLE") {
        let (kind, phase) = role.split_once(':').expect("kind:phase");
        let name = std::env::var("FANOUT_NAME").expect("FANOUT_NAME");
        return reader(kind, phase, &name);
    }
    let mut kind = "board".to_string();
    let mut readers = vec![1, 2, 4, 8, 16, 32];
    let mut seconds = 2.0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "board" | "broadcast" => kind = a,
            "--readers" => {
                readers = args
                    .next()
                    .expect("--readers LIST")
                    .split(',')
                    .map(|s| s.parse().expect("a number of readers"))
                    .collect()
            }
            "--seconds" => seconds = args.next().expect("--seconds S").parse().expect("seconds"),
            other => panic!("unknown argument {other:?}"),
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{kind} fan-out, {cores} cores, {seconds} s per phase; latency: one write per ms, wait_for_change/recv; throughput: writer and readers flat out"
    );
    println!(
        "{:>7}  {:>9} {:>9} {:>9} {:>9}  {:>14} {:>12} {:>10}",
        "readers", "p50 µs", "p90 µs", "p99 µs", "max µs", "reads/s (all)", "writes/s", "missed"
    );
    for &n in &readers {
        let mut lat = run_phase(&kind, Phase::Latency, n, seconds)?;
        lat.lat.sort_unstable();
        let thr = run_phase(&kind, Phase::Throughput, n, seconds)?;
        println!(
            "{:>7}  {:>9.1} {:>9.1} {:>9.1} {:>9.1}  {:>14.0} {:>12.0} {:>10}",
            n,
            percentile(&lat.lat, 0.50),
            percentile(&lat.lat, 0.90),
            percentile(&lat.lat, 0.99),
            percentile(&lat.lat, 1.0),
            thr.reads as f64 / thr.reader_secs,
            thr.writes_per_sec,
            thr.missed,
        );
        debug_assert_eq!(lat.readers, n);
    }
    Ok(())
}
