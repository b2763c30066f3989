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
//! | one-process `bulk` | copies each message once, records | | |

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

/// What a reporting child measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measurement {
    /// Messages (or round trips, or laps) recorded.
    pub count: u64,
    /// Time over which they were recorded.
    pub elapsed_ns: u64,
    /// Per-operation latency, for scenarios that time each operation.
    pub latency: Option<Latency>,
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
}

impl Role {
    /// The role of process `index` in `scenario`.
    pub(crate) fn of(scenario: Scenario, index: usize, in_one_process: bool) -> Role {
        let bulk = scenario == Scenario::Bulk;
        match (scenario, index) {
            _ if in_one_process => Role::Loopback,
            (Scenario::Rtt | Scenario::Oversubscribed, 0) => Role::Pinger,
            (Scenario::Rtt | Scenario::Oversubscribed, _) => Role::Forwarder,
            (Scenario::Stream | Scenario::Bulk, 0) => Role::Producer { bulk },
            (Scenario::Stream | Scenario::Bulk, _) => Role::Consumer { bulk },
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
        assert!(matches!(Role::of(Scenario::Rtt, 0, false), Role::Pinger));
        assert!(matches!(
            Role::of(Scenario::Oversubscribed, 2, false),
            Role::Forwarder
        ));
        assert!(matches!(
            Role::of(Scenario::Bulk, 1, false),
            Role::Consumer { bulk: true }
        ));
        assert!(matches!(Role::of(Scenario::Bulk, 0, true), Role::Loopback));
    }
}
