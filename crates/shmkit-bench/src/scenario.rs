//! What each process does in each scenario, in the child, over its [`Conn`]s.
//!
//! Every message starts with an 8-byte header: a sequence number, or
//! [`START`] (recording begins: sent after the warm-up) or [`STOP`] (the
//! last message). Receivers check the sequence, so a transport that loses,
//! duplicates or reorders messages fails instead of looking fast.
//!
//! | scenario | process 0 | process 1 | process 2 |
//! | --- | --- | --- | --- |
//! | `rtt` | sends, waits for the echo, records each round trip | echoes | |
//! | `stream`, `bulk` | produces | consumes and records | |
//! | `oversubscribed` | starts the token, records each lap | forwards | forwards |
//! | `fanout` | publishes stamped messages, counts them | reader 0: receives, records latency | reader 1, … |
//! | `paced` | as `fanout`, at a fixed rate | as `fanout`, and its CPU time | reader 1, … |
//! | one-process `bulk` | copies each message once, records | | |
//!
//! # Fan-out messages
//! A `fanout` message is the header (the sequence number, with
//! [`RECORDING`] set once the warm-up is over, or [`STOP`]), then the
//! `CLOCK_MONOTONIC` time in nanoseconds at which the writer published it:
//! every process runs on one machine, so a reader's clock agrees with the
//! writer's and `now - stamp` is the publish-to-receive latency. Readers
//! need no start mark (which a lossy transport could drop): they count the
//! messages that carry [`RECORDING`], from the first they see to [`STOP`].
//! Every process reports; [`fold_fanout`] makes one [`Measurement`] of them.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::transport::Conn;
use crate::Scenario;

/// Header of the message after the warm-up: recording starts.
const START: u64 = u64::MAX - 1;
/// Header of the last message.
const STOP: u64 = u64::MAX;
/// Set in the header of a `fanout` message published after the warm-up.
const RECORDING: u64 = 1 << 62;

/// What a reporting child measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Measurement {
    /// Messages (or round trips, or laps) recorded.
    pub count: u64,
    /// Time over which they were recorded.
    pub elapsed_ns: u64,
    /// Per-operation latency, for scenarios that time each operation.
    pub latency: Option<Latency>,
    /// A `fanout` reader's latency histogram, `(value, count)` per bucket,
    /// for the harness to merge with the other readers'.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub histogram: Vec<(u64, u64)>,
    /// `fanout`: the figures of the whole fan, once [`fold_fanout`] has
    /// combined every process's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout: Option<FanoutFigures>,
    /// A `fanout` or `paced` reader: the CPU time it used while recording
    /// (`CLOCK_PROCESS_CPUTIME_ID`), nanoseconds.
    #[serde(default)]
    pub cpu_ns: u64,
}

/// The figures of one `fanout` measurement, every process together.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FanoutFigures {
    /// Reader processes.
    pub readers: usize,
    /// Messages each reader received per second, the mean over readers.
    pub per_reader_msgs_per_s: f64,
    /// Messages per second all readers received together.
    pub total_msgs_per_s: f64,
    /// Messages per second of the reader that received the fewest.
    pub slowest_msgs_per_s: f64,
    /// Messages per second the writer published.
    pub published_per_s: f64,
    /// The fraction of the messages published while recording that readers
    /// did not receive (0 for a lossless transport).
    pub lost: f64,
    /// `paced`: the rate the writer was asked for, messages per second.
    #[serde(default)]
    pub rate: Option<u64>,
    /// The CPU readers used while recording, in cores (CPU time over
    /// recording time), the mean over readers: about 1 for a reader that
    /// spins all the time, near 0 for one that sleeps between messages.
    #[serde(default)]
    pub reader_cpu: f64,
}

/// Percentiles of a latency histogram (3 significant digits), nanoseconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Latency {
    /// Fastest.
    pub min_ns: u64,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Slowest.
    pub max_ns: u64,
}

/// Timing of one measurement.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub warmup: Duration,
    pub duration: Duration,
    /// `paced`: messages per second the writer publishes (`None`: flat out).
    pub rate: Option<u64>,
}

/// Which of the process's connections to send and receive on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ports {
    pub tx: usize,
    pub rx: usize,
}

/// The part a process plays.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Role {
    /// Sends each message and waits for it to come back (rtt, ring head).
    Pinger,
    /// Passes every message on (rtt echo, ring member).
    Forwarder,
    /// Streams messages out.
    Producer { bulk: bool },
    /// Takes messages in and records throughput.
    Consumer { bulk: bool },
    /// Copies messages into an in-process medium (bandwidth lines).
    Loopback,
    /// Publishes stamped messages to every reader (`fanout`).
    Writer,
    /// Receives a fan-out and records latency; counts gaps as lost when
    /// the transport is `lossy`, fails on them otherwise.
    Reader { lossy: bool },
}

impl Role {
    /// The role of process `index` in `scenario` over a transport that is
    /// `lossy` (see [`Transport::lossy`](crate::Transport::lossy)) or not.
    pub(crate) fn of(scenario: Scenario, index: usize, in_one_process: bool, lossy: bool) -> Role {
        let bulk = scenario == Scenario::Bulk;
        match (scenario, index) {
            _ if in_one_process => Role::Loopback,
            (Scenario::Rtt | Scenario::Oversubscribed, 0) => Role::Pinger,
            (Scenario::Rtt | Scenario::Oversubscribed, _) => Role::Forwarder,
            (Scenario::Stream | Scenario::Bulk, 0) => Role::Producer { bulk },
            (Scenario::Stream | Scenario::Bulk, _) => Role::Consumer { bulk },
            (Scenario::Fanout | Scenario::Paced, 0) => Role::Writer,
            (Scenario::Fanout | Scenario::Paced, _) => Role::Reader { lossy },
        }
    }
}

/// Messages per batch in `stream`: about 16 KiB, at most 256 messages.
fn stream_batch(msg_size: usize) -> usize {
    ((16 << 10) / msg_size).clamp(1, 256)
}

fn put_header(msg: &mut [u8], value: u64) {
    msg[..8].copy_from_slice(&value.to_le_bytes());
}

fn header(msg: &[u8]) -> u64 {
    u64::from_le_bytes(msg[..8].try_into().expect("messages hold 8 bytes"))
}

/// The byte a bulk message with this sequence number is filled with.
fn fill_byte(seq: u64) -> u8 {
    (seq % 251) as u8
}

/// Fills every byte of a bulk message.
fn fill_bulk(msg: &mut [u8], seq: u64) {
    msg.fill(fill_byte(seq));
    put_header(msg, seq);
}

/// [`fill_bulk`] in place, through a pointer (the zero-copy path).
///
/// # Safety
/// `msg` must point to `len >= 8` bytes writable by this process alone for
/// the duration of the call.
unsafe fn fill_bulk_raw(msg: *mut u8, len: usize, seq: u64) {
    // SAFETY: the caller's contract: `len` bytes, ours alone.
    unsafe {
        std::ptr::write_bytes(msg, fill_byte(seq), len);
        std::ptr::copy_nonoverlapping(seq.to_le_bytes().as_ptr(), msg, 8);
    }
}

/// [`header`] and [`check_bulk`] in place, through a pointer; returns the
/// header. Reads with unaligned word loads, never forming a slice.
///
/// # Safety
/// `msg` must point to `len >= 8` readable bytes that no process writes
/// during the call.
unsafe fn check_bulk_raw(
    msg: *const u8,
    len: usize,
    marker_only: impl Fn(u64) -> bool,
) -> Result<u64> {
    // SAFETY: the caller's contract: `len` readable bytes, stable.
    let seq = u64::from_le_bytes(unsafe { std::ptr::read_unaligned(msg.cast::<[u8; 8]>()) });
    if marker_only(seq) {
        return Ok(seq);
    }
    let byte = fill_byte(seq);
    let word = u64::from_ne_bytes([byte; 8]);
    let words = (len - 8) / 8;
    let mut bad = 0u64;
    for i in 0..words {
        // SAFETY: 8 + 8 * i + 8 <= len.
        bad |= unsafe { std::ptr::read_unaligned(msg.add(8 + 8 * i).cast::<u64>()) } ^ word;
    }
    for i in 8 + 8 * words..len {
        // SAFETY: i < len.
        bad |= u64::from(unsafe { msg.add(i).read() } ^ byte);
    }
    if bad != 0 {
        bail!("bulk message {seq} arrived with wrong contents");
    }
    Ok(seq)
}

/// Reads every byte of a bulk message, checking it.
fn check_bulk(msg: &[u8], seq: u64) -> Result<()> {
    let byte = fill_byte(seq);
    let word = u64::from_ne_bytes([byte; 8]);
    let body = &msg[8..];
    let words = body.chunks_exact(8);
    let tail_ok = words.remainder().iter().all(|&b| b == byte);
    // Fold rather than `all` so the loop reads every word without branching.
    let bad = words.fold(0u64, |acc, w| {
        acc | (u64::from_ne_bytes(w.try_into().expect("8 bytes")) ^ word)
    });
    if bad != 0 || !tail_ok {
        bail!("bulk message {seq} arrived with wrong contents");
    }
    Ok(())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Runs `role` for `timing` over `conns`; `Some` for the process that reports.
pub(crate) fn run(
    role: Role,
    conns: &mut [Box<dyn Conn>],
    ports: Ports,
    msg_size: usize,
    timing: Timing,
) -> Result<Option<Measurement>> {
    match role {
        Role::Pinger => ping(conns, ports, msg_size, timing).map(Some),
        Role::Forwarder => forward(conns, ports, msg_size).map(|()| None),
        Role::Producer { bulk } => produce(conns, ports, msg_size, timing, bulk).map(|()| None),
        Role::Consumer { bulk } => consume(conns, ports, msg_size, bulk).map(Some),
        Role::Loopback => loopback(conns, ports, msg_size, timing).map(Some),
        Role::Writer => fan_write(conns, ports, msg_size, timing).map(Some),
        Role::Reader { lossy } => fan_read(conns, ports, msg_size, lossy).map(Some),
    }
}

/// One message out on `tx` and back on `rx`, checked.
fn round_trip(
    conns: &mut [Box<dyn Conn>],
    ports: Ports,
    msg: &mut [u8],
    reply: &mut [u8],
    seq: u64,
) -> Result<()> {
    put_header(msg, seq);
    conns[ports.tx].send(msg)?;
    conns[ports.rx].recv(reply)?;
    let got = header(reply);
    if got != seq {
        bail!("message {seq} came back as {got}");
    }
    Ok(())
}

fn new_histogram() -> Result<Histogram<u64>> {
    // 1 ns to one hour at 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 3_600_000_000_000, 3)?)
}

/// The percentiles of `h`.
fn latency(h: &Histogram<u64>) -> Latency {
    Latency {
        min_ns: h.min(),
        p50_ns: h.value_at_quantile(0.50),
        p99_ns: h.value_at_quantile(0.99),
        p999_ns: h.value_at_quantile(0.999),
        max_ns: h.max(),
    }
}

fn ping(
    conns: &mut [Box<dyn Conn>],
    ports: Ports,
    msg_size: usize,
    timing: Timing,
) -> Result<Measurement> {
    let mut msg = vec![0x5a; msg_size];
    let mut reply = vec![0; msg_size];
    let mut seq = 0;
    let warm_end = Instant::now() + timing.warmup;
    while Instant::now() < warm_end {
        round_trip(conns, ports, &mut msg, &mut reply, seq)?;
        seq += 1;
    }
    let mut hist = new_histogram()?;
    let start = Instant::now();
    let end = start + timing.duration;
    let mut t0 = start;
    let mut count = 0;
    loop {
        round_trip(conns, ports, &mut msg, &mut reply, seq)?;
        seq += 1;
        let t1 = Instant::now();
        hist.saturating_record(nanos(t1 - t0).max(1));
        count += 1;
        t0 = t1;
        if t1 >= end {
            break;
        }
    }
    round_trip(conns, ports, &mut msg, &mut reply, STOP)?;
    Ok(Measurement {
        count,
        elapsed_ns: nanos(t0 - start),
        latency: Some(latency(&hist)),
        ..Measurement::default()
    })
}

fn forward(conns: &mut [Box<dyn Conn>], ports: Ports, msg_size: usize) -> Result<()> {
    let mut buf = vec![0; msg_size];
    loop {
        conns[ports.rx].recv(&mut buf)?;
        conns[ports.tx].send(&buf)?;
        if header(&buf) == STOP {
            return Ok(());
        }
    }
}

fn produce(
    conns: &mut [Box<dyn Conn>],
    ports: Ports,
    msg_size: usize,
    timing: Timing,
    bulk: bool,
) -> Result<()> {
    let batch = if bulk { 1 } else { stream_batch(msg_size) };
    let mut buf = vec![0x5a; batch * msg_size];
    let mut seq = 0;
    let mut send_batch = |conns: &mut [Box<dyn Conn>], seq: &mut u64| -> Result<()> {
        if bulk {
            let s = *seq;
            // SAFETY: send_in_place hands `fill` msg_size bytes that are ours
            // alone until it returns.
            let mut fill = |p: *mut u8| unsafe { fill_bulk_raw(p, msg_size, s) };
            if let Some(sent) = conns[ports.tx].send_in_place(msg_size, &mut fill) {
                *seq += 1;
                return sent;
            }
        }
        for m in buf.chunks_exact_mut(msg_size) {
            if bulk {
                fill_bulk(m, *seq);
            } else {
                put_header(m, *seq);
            }
            *seq += 1;
        }
        conns[ports.tx].send_batch(&buf, msg_size)
    };
    let mut mark = vec![0; msg_size];
    let warm_end = Instant::now() + timing.warmup;
    while Instant::now() < warm_end {
        send_batch(conns, &mut seq)?;
    }
    put_header(&mut mark, START);
    conns[ports.tx].send(&mark)?;
    let end = Instant::now() + timing.duration;
    while Instant::now() < end {
        send_batch(conns, &mut seq)?;
    }
    put_header(&mut mark, STOP);
    conns[ports.tx].send(&mark)
}

fn consume(
    conns: &mut [Box<dyn Conn>],
    ports: Ports,
    msg_size: usize,
    bulk: bool,
) -> Result<Measurement> {
    let batch = if bulk { 1 } else { stream_batch(msg_size) };
    let mut buf = vec![0; batch * msg_size];
    let mut expected = 0;
    let mut start = None;
    let mut count = 0;
    loop {
        if bulk {
            let mut got = 0;
            let mut read = |p: *const u8| -> Result<()> {
                // SAFETY: recv_in_place hands `read` msg_size bytes that no
                // process writes until it returns. Markers carry no pattern.
                got = unsafe {
                    check_bulk_raw(p, msg_size, |h| h == START || h == STOP || h != expected)
                }?;
                Ok(())
            };
            if let Some(received) = conns[ports.rx].recv_in_place(msg_size, &mut read) {
                received?;
                match got {
                    START => {
                        start = Some(Instant::now());
                        count = 0;
                    }
                    STOP => {
                        let Some(start) = start else {
                            bail!("the stream stopped before it started");
                        };
                        return Ok(Measurement {
                            count,
                            elapsed_ns: nanos(start.elapsed()),
                            latency: None,
                            ..Measurement::default()
                        });
                    }
                    seq if seq == expected => {
                        expected += 1;
                        count += 1;
                    }
                    seq => bail!("message {seq} arrived where {expected} was due"),
                }
                continue;
            }
        }
        let n = conns[ports.rx].recv_batch(&mut buf, msg_size)?;
        for m in buf[..n * msg_size].chunks_exact(msg_size) {
            match header(m) {
                START => {
                    start = Some(Instant::now());
                    count = 0;
                }
                STOP => {
                    let Some(start) = start else {
                        bail!("the stream stopped before it started");
                    };
                    return Ok(Measurement {
                        count,
                        elapsed_ns: nanos(start.elapsed()),
                        latency: None,
                        ..Measurement::default()
                    });
                }
                seq if seq == expected => {
                    if bulk {
                        check_bulk(m, seq)?;
                    }
                    expected += 1;
                    count += 1;
                }
                seq => bail!("message {seq} arrived where {expected} was due"),
            }
        }
    }
}

/// The bandwidth line: one core copies each message once into the
/// medium (a `send`); the last one is read back and checked at the end.
fn loopback(
    conns: &mut [Box<dyn Conn>],
    ports: Ports,
    msg_size: usize,
    timing: Timing,
) -> Result<Measurement> {
    let mut msg = vec![0; msg_size];
    fill_bulk(&mut msg, 0);
    let mut seq = 0;
    let warm_end = Instant::now() + timing.warmup;
    while Instant::now() < warm_end {
        put_header(&mut msg, seq);
        conns[ports.tx].send(&msg)?;
        seq += 1;
    }
    let start = Instant::now();
    let end = start + timing.duration;
    let mut count = 0;
    while Instant::now() < end {
        put_header(&mut msg, seq);
        conns[ports.tx].send(&msg)?;
        seq += 1;
        count += 1;
    }
    let elapsed = nanos(start.elapsed());
    let mut out = vec![0; msg_size];
    conns[ports.rx].recv(&mut out)?;
    if header(&out) != seq - 1 || out[8..] != msg[8..] {
        bail!("the last message copied was not the last one sent");
    }
    Ok(Measurement {
        count,
        elapsed_ns: elapsed,
        latency: None,
        ..Measurement::default()
    })
}

/// The `CLOCK_MONOTONIC` time in nanoseconds: one clock for every process
/// on the machine, so a stamp taken by one process can be compared with
/// the time another reads.
fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Writes a `fanout` message's header and time stamp.
fn put_stamped(msg: &mut [u8], header: u64, stamp_ns: u64) {
    put_header(msg, header);
    msg[8..16].copy_from_slice(&stamp_ns.to_le_bytes());
}

/// The time stamp of a `fanout` message.
fn stamp(msg: &[u8]) -> u64 {
    u64::from_le_bytes(
        msg[8..16]
            .try_into()
            .expect("fan-out messages hold 16 bytes"),
    )
}

/// The CPU time this process has used, nanoseconds.
fn process_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// A writer's pace: when the next message is due. Flat out, always now;
/// at a rate, on a fixed schedule from the start (a writer that fell
/// behind, held back by a lossless transport, sends at once until it is on
/// schedule again, so the rate is kept on average).
struct Pace {
    period_ns: Option<f64>,
    start_ns: u64,
    sent: u64,
}

/// A gap longer than this is slept through (less this margin, spun), so a
/// slow-paced writer leaves the CPU to its readers.
const PACE_SLEEP_NS: u64 = 60_000;

impl Pace {
    fn new(rate: Option<u64>, start_ns: u64) -> Self {
        Pace {
            period_ns: rate.map(|r| 1e9 / r as f64),
            start_ns,
            sent: 0,
        }
    }

    /// Waits until the next message is due; returns the time then.
    fn wait(&mut self) -> u64 {
        let Some(period) = self.period_ns else {
            return monotonic_ns();
        };
        let due = self.start_ns + (self.sent as f64 * period) as u64;
        self.sent += 1;
        let mut now = monotonic_ns();
        if due > now + PACE_SLEEP_NS {
            std::thread::sleep(Duration::from_nanos(due - now - PACE_SLEEP_NS / 2));
            now = monotonic_ns();
        }
        while now < due {
            std::hint::spin_loop();
            now = monotonic_ns();
        }
        now
    }
}

/// The `fanout` writer: one message at a time, each stamped just before it
/// is sent, as fast as the transport takes them (a lossless transport waits
/// for its slowest reader; a lossy one never waits), or in `paced` at the
/// rate asked for. Reports how many it published while recording.
fn fan_write(
    conns: &mut [Box<dyn Conn>],
    ports: Ports,
    msg_size: usize,
    timing: Timing,
) -> Result<Measurement> {
    let conn = &mut conns[ports.tx];
    let mut msg = vec![0x5a; msg_size];
    let mut seq = 0;
    let warm_end = monotonic_ns() + nanos(timing.warmup);
    let mut pace = Pace::new(timing.rate, monotonic_ns());
    let mut now = pace.wait();
    while now < warm_end {
        put_stamped(&mut msg, seq, now);
        conn.send(&msg)?;
        seq += 1;
        now = pace.wait();
    }
    let start = now;
    let end = start + nanos(timing.duration);
    // The schedule starts again with recording: a backlog left by a stall
    // in the warm-up is not sent in a burst that would inflate the rate.
    pace = Pace::new(timing.rate, start);
    pace.sent = 1;
    let mut count = 0;
    while now < end {
        put_stamped(&mut msg, seq | RECORDING, now);
        conn.send(&msg)?;
        seq += 1;
        count += 1;
        now = pace.wait();
    }
    // The last message: a lossy transport keeps it, being the latest.
    put_stamped(&mut msg, STOP, now);
    conn.send(&msg)?;
    Ok(Measurement {
        count,
        elapsed_ns: now - start,
        ..Measurement::default()
    })
}

/// The (value, count) pairs of every bucket of `h` that holds something.
fn buckets(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// A `fanout` reader: receives until [`STOP`], checks the order, and
/// records the latency of every message published while recording. A gap
/// in the sequence fails unless the transport is `lossy`.
fn fan_read(
    conns: &mut [Box<dyn Conn>],
    ports: Ports,
    msg_size: usize,
    lossy: bool,
) -> Result<Measurement> {
    let mut buf = vec![0; stream_batch(msg_size) * msg_size];
    let mut hist = new_histogram()?;
    let mut expected = 0;
    let mut count = 0;
    // When the first recorded message arrived, and the CPU time then.
    let mut first = None;
    let mut cpu_at_first = 0;
    loop {
        let n = conns[ports.rx].recv_batch(&mut buf, msg_size)?;
        let now = monotonic_ns();
        for m in buf[..n * msg_size].chunks_exact(msg_size) {
            let h = header(m);
            if h == STOP {
                return Ok(Measurement {
                    count,
                    elapsed_ns: first.map_or(0, |f| now - f),
                    latency: (count > 0).then(|| latency(&hist)),
                    histogram: buckets(&hist),
                    fanout: None,
                    cpu_ns: first.map_or(0, |_| process_cpu_ns() - cpu_at_first),
                });
            }
            let seq = h & !RECORDING;
            if seq < expected {
                bail!("message {seq} arrived after message {}", expected - 1);
            }
            if seq > expected && !lossy {
                bail!("message {seq} arrived where {expected} was due");
            }
            expected = seq + 1;
            if h & RECORDING != 0 {
                if first.is_none() {
                    first = Some(now);
                    cpu_at_first = process_cpu_ns();
                }
                count += 1;
                hist.saturating_record(now.saturating_sub(stamp(m)).max(1));
            }
        }
    }
}

/// Combines the reports of a `fanout` measurement with `readers` readers:
/// `(process index, its report)`, the writer's (process 0) and every
/// reader's. Reader rates are each reader's messages over its own recording
/// time; latency percentiles are over every reader's samples; `lost` is
/// the share of `readers × published` that no reader received.
pub(crate) fn fold_fanout(
    mut results: Vec<(usize, Measurement)>,
    readers: usize,
    paced_rate: Option<u64>,
) -> Result<Measurement> {
    results.sort_by_key(|(i, _)| *i);
    let (writer, reports) = match results.split_first() {
        Some(((0, w), rest)) => (w, rest),
        _ => bail!("the writer reported no result"),
    };
    if reports.len() != readers {
        bail!("{} of {readers} readers reported", reports.len());
    }
    let rate = |m: &Measurement| match m.elapsed_ns {
        0 => 0.0,
        ns => m.count as f64 * 1e9 / ns as f64,
    };
    let rates: Vec<f64> = reports.iter().map(|(_, m)| rate(m)).collect();
    let total: f64 = rates.iter().sum();
    let received: u64 = reports.iter().map(|(_, m)| m.count).sum();
    let due = writer.count * readers as u64;
    if received > due {
        bail!("readers received {received} messages of the {due} published to them");
    }
    let mut hist = new_histogram()?;
    for (_, m) in reports {
        for &(value, n) in &m.histogram {
            hist.saturating_record_n(value, n);
        }
    }
    let latency = (!hist.is_empty()).then(|| latency(&hist));
    let cpu: f64 = reports
        .iter()
        .map(|(_, m)| match m.elapsed_ns {
            0 => 0.0,
            ns => m.cpu_ns as f64 / ns as f64,
        })
        .sum();
    Ok(Measurement {
        count: received,
        elapsed_ns: writer.elapsed_ns,
        latency,
        histogram: Vec::new(),
        fanout: Some(FanoutFigures {
            readers,
            per_reader_msgs_per_s: total / readers as f64,
            total_msgs_per_s: total,
            slowest_msgs_per_s: rates.iter().copied().fold(f64::INFINITY, f64::min),
            published_per_s: rate(writer),
            lost: if due == 0 {
                0.0
            } else {
                1.0 - received as f64 / due as f64
            },
            rate: paced_rate,
            reader_cpu: cpu / readers as f64,
        }),
        cpu_ns: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_check_reads_every_byte() {
        let mut m = vec![0; 1003];
        fill_bulk(&mut m, 7);
        check_bulk(&m, 7).unwrap();
        m[500] ^= 1;
        assert!(check_bulk(&m, 7).is_err());
        fill_bulk(&mut m, 7);
        m[1002] ^= 1;
        assert!(check_bulk(&m, 7).is_err());
    }

    #[test]
    fn roles() {
        assert!(matches!(
            Role::of(Scenario::Rtt, 0, false, false),
            Role::Pinger
        ));
        assert!(matches!(
            Role::of(Scenario::Oversubscribed, 2, false, false),
            Role::Forwarder
        ));
        assert!(matches!(
            Role::of(Scenario::Bulk, 1, false, false),
            Role::Consumer { bulk: true }
        ));
        assert!(matches!(
            Role::of(Scenario::Bulk, 0, true, false),
            Role::Loopback
        ));
        assert!(matches!(
            Role::of(Scenario::Fanout, 0, false, true),
            Role::Writer
        ));
        assert!(matches!(
            Role::of(Scenario::Fanout, 3, false, true),
            Role::Reader { lossy: true }
        ));
    }

    /// A reader's report: `count` messages over a second, latencies `lat`.
    fn reader(count: u64, lat: &[u64]) -> Measurement {
        let mut h = new_histogram().unwrap();
        for &v in lat {
            h.record(v).unwrap();
        }
        Measurement {
            count,
            elapsed_ns: 1_000_000_000,
            latency: Some(latency(&h)),
            histogram: buckets(&h),
            fanout: None,
            cpu_ns: 0,
        }
    }

    #[test]
    fn fanout_reports_fold_into_rates_loss_and_merged_latency() {
        let writer = Measurement {
            count: 1000,
            elapsed_ns: 500_000_000,
            ..Measurement::default()
        };
        let results = vec![
            (2, reader(500, &[100, 200, 300])),
            (0, writer.clone()),
            (1, reader(1000, &[1000, 2000, 3000])),
        ];
        let m = fold_fanout(results, 2, None).unwrap();
        let f = m.fanout.unwrap();
        assert_eq!(f.readers, 2);
        assert_eq!(f.total_msgs_per_s, 1500.0);
        assert_eq!(f.per_reader_msgs_per_s, 750.0);
        assert_eq!(f.slowest_msgs_per_s, 500.0);
        assert_eq!(f.published_per_s, 2000.0);
        assert_eq!(f.lost, 0.25);
        let l = m.latency.unwrap();
        // To 3 significant digits, as each reader's own histogram.
        assert_eq!((l.min_ns, l.max_ns), (100, 3001));
        assert!(l.p50_ns >= 300 && l.p50_ns <= 1000, "{l:?}");

        let missing = vec![(0, writer.clone()), (1, reader(1, &[1]))];
        assert!(fold_fanout(missing, 2, None).is_err());
        let too_many = vec![(0, writer), (1, reader(1001, &[1]))];
        assert!(fold_fanout(too_many, 1, None).is_err());
        let no_writer = vec![(1, reader(1, &[1]))];
        assert!(fold_fanout(no_writer, 1, None).is_err());
    }

    #[test]
    fn fanout_messages_carry_sequence_and_stamp() {
        let mut m = vec![0; 16];
        put_stamped(&mut m, 7 | RECORDING, 123_456);
        assert_eq!(header(&m) & !RECORDING, 7);
        assert_eq!(stamp(&m), 123_456);
        let (a, b) = (monotonic_ns(), monotonic_ns());
        assert!(0 < a && a <= b);
    }
}
