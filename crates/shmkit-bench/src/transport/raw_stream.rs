//! `raw-stream`: the floor for `stream`, written as a careful C programmer
//! writes a one-way ring: what shared memory can do for a stream of small
//! messages when nothing else is asked of it.
//!
//! Compared with the per-slot ring of [`super::ring`] (`raw-spin`), which
//! stores a sequence word next to every message and issues a SeqCst fence
//! and a waiter check per publish:
//! - **records end to end**: message `i` is the `msg_size` bytes at
//!   `(i mod capacity) * msg_size` of one data area, with nothing between
//!   them (no per-record sequence word, no padding to 8 bytes);
//! - **one position per side**, published once per batch with Release:
//!   the producer's `tail` (records written) after it copied a whole batch
//!   in, the consumer's `head` (records taken) after it copied a whole
//!   batch out;
//! - **the other side's position cached**: the producer reloads `head`
//!   only when its cached copy says the ring is full, the consumer reloads
//!   `tail` only when it has taken everything its cached copy promised;
//! - **the waiter check once per batch**: after publishing, one SeqCst
//!   fence and one load of the peer's waiting flag, and a `FUTEX_WAKE`
//!   only when the peer sleeps;
//! - **the same waiting as `raw-spin`**: a bounded adaptive spin (at most
//!   50 µs, [`super::ring::Spinner`]), then a sleep on a shared futex
//!   (the peer's position word), with a timeout and the link's deadline.
//!
//! It supports `stream` only: one way, from end A (the producer) to end B
//! (the consumer); the other direction of each [`Conn`] is an error.
//!
//! # Layout
//! ```text
//! offset    field               written by  read by
//! 0         tail (u32)          producer    consumer, when its copy runs out
//! 64        consumer_waiting    consumer    producer, once per batch
//! 128       head (u32)          consumer    producer, when its copy says full
//! 192       producer_waiting    producer    consumer, once per batch
//! 256       data: capacity * msg_size bytes, records end to end
//! ```
//! Each control word has a 64-byte line of its own. Positions are `u32`
//! record counters that wrap; `capacity` is a power of two, so record `i`
//! lives at `(i & (capacity - 1)) * msg_size`, and a batch that crosses
//! the end of the data area is copied in two pieces. `tail - head`
//! (wrapping) is at most `capacity`; a position read back that breaks this
//! is reported as corruption (in release builds too) before any byte is
//! copied.
//!
//! # Ordering
//! The producer copies a batch in, then stores `tail` with Release; the
//! consumer loads `tail` with Acquire before copying the records below it
//! out (SYNC POINT: `publish` / `reload_tail`). The consumer copies a
//! batch out, then stores `head` with Release; the producer loads `head`
//! with Acquire before writing over the records below it (SYNC POINT:
//! `release` / `reload_head`). A sleeper raises its flag, issues a SeqCst
//! fence and re-checks the position before `FUTEX_WAIT`; the other side
//! stores its position, issues a SeqCst fence and loads the flag: one of
//! them sees the other (no lost wake-up).

use std::ptr;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rustix::thread::futex;
use shmkit::posix::OpenOptions;
use shmkit::Region;

use super::ring::{map_object, sleep_futex_with, Spinner, LINE};
use super::{Conn, End, Handoff, Link, LinkSpec, Named, Transport};
use crate::Scenario;

/// How long a waiter polls before it sleeps (as `raw-spin`).
const MAX_SPIN: Duration = Duration::from_micros(50);
const TAIL: usize = 0;
const CONSUMER_WAITING: usize = LINE;
const HEAD: usize = 2 * LINE;
const PRODUCER_WAITING: usize = 3 * LINE;
const DATA: usize = 4 * LINE;
/// About this many bytes of data (as the other floors' stream rings).
const DATA_BYTES: usize = 256 << 10;

/// Records end to end in one SPSC ring, positions published once per batch.
pub struct RawStream;

/// Sizes of the ring for one message size.
#[derive(Clone, Copy, Debug)]
struct Layout {
    msg_size: usize,
    /// Records, a power of two.
    capacity: u32,
}

impl Layout {
    /// About 256 KiB of records (at least 4, a power of two).
    fn new(msg_size: usize) -> Self {
        let fit = (DATA_BYTES / msg_size.max(1)).clamp(4, 1 << 20);
        Layout {
            msg_size,
            capacity: 1 << (usize::BITS - 1 - fit.leading_zeros()),
        }
    }

    fn data_bytes(&self) -> usize {
        self.capacity as usize * self.msg_size
    }

    fn object_bytes(&self) -> usize {
        DATA + self.data_bytes()
    }

    /// Byte offset of record `pos` in the data area: below `data_bytes`.
    #[inline]
    fn offset(&self, pos: u32) -> usize {
        (pos & (self.capacity - 1)) as usize * self.msg_size
    }
}

impl Transport for RawStream {
    fn name(&self) -> &'static str {
        "raw-stream"
    }
    fn about(&self) -> &'static str {
        "floor for stream: records end to end in an SPSC ring, positions published once per batch (Release), peer's position cached, one waiter check per batch; spin up to 50 µs, then shared futex"
    }
    fn supports(&self, scenario: Scenario) -> bool {
        scenario == Scenario::Stream
    }
    fn link(&self, spec: &LinkSpec) -> Result<Link> {
        if spec.scenario != Scenario::Stream {
            bail!("raw-stream runs the stream scenario only");
        }
        let name = format!("/{}", spec.tag);
        OpenOptions::new()
            .create_new(true)
            .size(Layout::new(spec.msg_size).object_bytes() as u64)
            .mode(0o600)
            .open(&name)?;
        let mut link = Link::default();
        link.ends[0].args.push(name.clone());
        link.ends[1].args.push(name.clone());
        link.names.push(Named::Shm(name));
        Ok(link)
    }
    fn open(&self, spec: &LinkSpec, end: End, handoff: Handoff) -> Result<Box<dyn Conn>> {
        let layout = Layout::new(spec.msg_size);
        let (region, base) = map_object(handoff.arg(0)?, layout.object_bytes())?;
        Ok(Box::new(StreamConn {
            ring: Ring { base },
            layout,
            end,
            mine: 0,
            theirs: 0,
            spinner: Spinner::new(MAX_SPIN),
            deadline: spec.deadline(Instant::now()),
            _region: region,
        }))
    }
}

/// The shared ring as one process sees it: raw pointers into the mapping
/// that the owning [`StreamConn`] keeps alive.
struct Ring {
    /// The mapping's first byte (`open` checked that it holds the
    /// layout's `object_bytes()` from a 64-byte boundary).
    base: *mut u8,
}

/// One end of a `raw-stream` link: the producer (end A) or the consumer
/// (end B).
struct StreamConn {
    ring: Ring,
    layout: Layout,
    end: End,
    /// This side's position: the producer's `tail`, the consumer's `head`.
    mine: u32,
    /// The other side's position as last loaded from shared memory.
    theirs: u32,
    spinner: Spinner,
    deadline: Instant,
    /// Keeps the mapping alive; declared last.
    _region: Region,
}

impl Ring {
    /// The control word at `offset` (one of the constants above).
    #[inline]
    fn word(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset < DATA && offset % LINE == 0);
        // SAFETY: `offset` is one of the 64-aligned constants below DATA,
        // inside the mapping (checked in `open`), whose base is 64-aligned;
        // AtomicU32 may be shared with another process writing the same
        // word; the mapping outlives every use (the StreamConn that owns
        // this Ring owns the Region too, and never hands the Ring out).
        unsafe { &*self.base.add(offset).cast::<AtomicU32>() }
    }

    /// The first byte of the data area.
    #[inline]
    fn data(&self) -> *mut u8 {
        // SAFETY: DATA is inside the mapping (checked in `open`).
        unsafe { self.base.add(DATA) }
    }
}

impl StreamConn {
    /// Checks a position read back from shared memory against ours:
    /// `tail - head` (wrapping) may not exceed the capacity.
    #[inline]
    fn check(&self, tail: u32, head: u32) -> Result<u32> {
        let used = tail.wrapping_sub(head);
        if used > self.layout.capacity {
            bail!(
                "raw-stream ring corrupt: tail {tail} and head {head} are {used} records apart, more than the capacity {}",
                self.layout.capacity
            );
        }
        Ok(used)
    }

    /// Producer: free records, reloading `head` (and waiting) only when
    /// the cached copy says the ring is full.
    fn reserve(&mut self) -> Result<u32> {
        let cap = self.layout.capacity;
        let free = cap - self.check(self.mine, self.theirs)?;
        if free > 0 {
            return Ok(free);
        }
        let head = self.ring.word(HEAD);
        let tail = self.mine;
        let has_room = |h: u32| tail.wrapping_sub(h) < cap;
        // Acquire: SYNC POINT with the Release store of `head` in
        // `release`: the consumer has copied out every record below it.
        let mut h = head.load(Ordering::Acquire);
        if !has_room(h)
            && !self.spinner.spin(|| {
                h = head.load(Ordering::Acquire);
                has_room(h)
            })
        {
            let waiting = self.ring.word(PRODUCER_WAITING);
            h = sleep_futex_with(
                head,
                || waiting.store(1, Ordering::Relaxed),
                || waiting.store(0, Ordering::Relaxed),
                has_room,
                self.deadline,
                "no room was freed",
            )?;
        }
        let used = self.check(tail, h)?;
        self.theirs = h;
        Ok(cap - used)
    }

    /// Copies `msgs` (whole records, at most the free room) in at `tail`.
    #[inline]
    fn copy_in(&mut self, msgs: &[u8]) {
        let at = self.layout.offset(self.mine);
        let first = msgs.len().min(self.layout.data_bytes() - at);
        // SAFETY: `at + first <= data_bytes` and the rest (`msgs.len() -
        // first`, which wraps to offset 0) fits too since `msgs` holds at
        // most `capacity` records; those records are free (reserve saw
        // `head` past them with Acquire), so the consumer does not read
        // them until `publish`; `msgs` is private memory, no overlap.
        unsafe {
            ptr::copy_nonoverlapping(msgs.as_ptr(), self.ring.data().add(at), first);
            ptr::copy_nonoverlapping(
                msgs.as_ptr().add(first),
                self.ring.data(),
                msgs.len() - first,
            );
        }
    }

    /// Producer: publishes everything written (`tail` = `mine`) and wakes
    /// a sleeping consumer.
    fn publish(&mut self) -> Result<()> {
        let tail = self.ring.word(TAIL);
        // Release: SYNC POINT with the Acquire load of `tail` in
        // `reload_tail`: the records copied in happen before its copy out.
        tail.store(self.mine, Ordering::Release);
        // SYNC POINT with the fence in the consumer's `sleep_futex_with`:
        // either it sees our `tail`, or we see its flag.
        fence(Ordering::SeqCst);
        if self.ring.word(CONSUMER_WAITING).load(Ordering::Relaxed) != 0 {
            futex::wake(tail, futex::Flags::empty(), 1)?;
        }
        Ok(())
    }

    /// Consumer: records ready, reloading `tail` (and waiting) only when
    /// everything the cached copy promised is taken.
    fn reload_tail(&mut self) -> Result<u32> {
        let ready = self.check(self.theirs, self.mine)?;
        if ready > 0 {
            return Ok(ready);
        }
        let tail = self.ring.word(TAIL);
        let head = self.mine;
        let has_data = |t: u32| t != head;
        // Acquire: SYNC POINT with the Release store of `tail` in
        // `publish`: the records below it are written.
        let mut t = tail.load(Ordering::Acquire);
        if !has_data(t)
            && !self.spinner.spin(|| {
                t = tail.load(Ordering::Acquire);
                has_data(t)
            })
        {
            let waiting = self.ring.word(CONSUMER_WAITING);
            t = sleep_futex_with(
                tail,
                || waiting.store(1, Ordering::Relaxed),
                || waiting.store(0, Ordering::Relaxed),
                has_data,
                self.deadline,
                "no message arrived",
            )?;
        }
        let ready = self.check(t, head)?;
        self.theirs = t;
        Ok(ready)
    }

    /// Copies `out.len()` bytes (whole records, at most those ready) out
    /// from `head`.
    #[inline]
    fn copy_out(&mut self, out: &mut [u8]) {
        let at = self.layout.offset(self.mine);
        let first = out.len().min(self.layout.data_bytes() - at);
        // SAFETY: as in `copy_in`, the two pieces lie inside the data area;
        // the records are published (`tail` loaded with Acquire is past
        // them) and the producer does not write them again until `release`
        // moves `head` past them; `out` is private memory, no overlap.
        unsafe {
            ptr::copy_nonoverlapping(self.ring.data().add(at), out.as_mut_ptr(), first);
            ptr::copy_nonoverlapping(
                self.ring.data(),
                out.as_mut_ptr().add(first),
                out.len() - first,
            );
        }
    }

    /// Consumer: hands everything taken back (`head` = `mine`) and wakes a
    /// sleeping producer.
    fn release(&mut self) -> Result<()> {
        let head = self.ring.word(HEAD);
        // Release: SYNC POINT with the Acquire loads of `head` in `reserve`.
        head.store(self.mine, Ordering::Release);
        // SYNC POINT with the fence in the producer's `sleep_futex_with`.
        fence(Ordering::SeqCst);
        if self.ring.word(PRODUCER_WAITING).load(Ordering::Relaxed) != 0 {
            futex::wake(head, futex::Flags::empty(), 1)?;
        }
        Ok(())
    }

    fn must_be(&self, end: End, what: &str) -> Result<()> {
        if self.end != end {
            bail!(
                "raw-stream carries messages one way, from end A to end B: end {:?} cannot {what}",
                self.end
            );
        }
        Ok(())
    }
}

impl Conn for StreamConn {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_batch(msg, msg.len())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        let len = buf.len();
        self.recv_batch(buf, len).map(|_| ())
    }

    /// Copies as many records as there is room for, publishes them with
    /// one store, and so on until every record is in.
    fn send_batch(&mut self, msgs: &[u8], msg_size: usize) -> Result<()> {
        self.must_be(End::A, "send")?;
        if msg_size != self.layout.msg_size || msgs.len() % msg_size != 0 {
            bail!(
                "raw-stream: messages of {msg_size} bytes on a ring of {}-byte records",
                self.layout.msg_size
            );
        }
        let mut rest = msgs;
        while !rest.is_empty() {
            let free = self.reserve()? as usize;
            let n = free.min(rest.len() / msg_size);
            let (now, later) = rest.split_at(n * msg_size);
            self.copy_in(now);
            self.mine = self.mine.wrapping_add(n as u32);
            self.publish()?;
            rest = later;
        }
        Ok(())
    }

    /// Waits for at least one record, copies out every ready one that
    /// fits, hands them back with one store.
    fn recv_batch(&mut self, buf: &mut [u8], msg_size: usize) -> Result<usize> {
        self.must_be(End::B, "receive")?;
        if msg_size != self.layout.msg_size || buf.len() < msg_size {
            bail!("raw-stream: a buffer of {} bytes for {msg_size}-byte messages on a ring of {}-byte records", buf.len(), self.layout.msg_size);
        }
        let ready = self.reload_tail()? as usize;
        let n = ready.min(buf.len() / msg_size);
        self.copy_out(&mut buf[..n * msg_size]);
        self.mine = self.mine.wrapping_add(n as u32);
        self.release()?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link_spec(msg_size: usize, scenario: Scenario) -> LinkSpec {
        use std::sync::atomic::AtomicUsize;
        static N: AtomicUsize = AtomicUsize::new(0);
        LinkSpec {
            msg_size,
            scenario,
            tag: format!(
                "shmkit-bench-{}-unit-raw-stream-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
            deadline_ms: 20_000,
            readers: 1,
        }
    }

    /// Removes the link's objects, even when the test fails.
    struct Names(Vec<Named>);

    impl Drop for Names {
        fn drop(&mut self) {
            for n in &self.0 {
                n.remove();
            }
        }
    }

    fn handoff(link: &Link, end: End) -> Handoff {
        Handoff {
            fds: Vec::new(),
            args: link.ends[end.index()].args.clone(),
        }
    }

    /// A producer and a consumer thread move records of a size that does
    /// and one that does not divide a power of two, in batches of every
    /// size from one record to more than the ring holds, with receive
    /// buffers that do not match the send batches: every record arrives
    /// once, whole, in order, across many wraps of the ring.
    #[test]
    fn records_arrive_whole_and_in_order_across_wraps() {
        for msg_size in [64usize, 100, 8] {
            let spec = link_spec(msg_size, Scenario::Stream);
            let link = RawStream.link(&spec).unwrap();
            let _names = Names(link.names.clone());
            let capacity = Layout::new(msg_size).capacity as u64;
            let total = 3 * capacity + 12_345;
            let record = |i: u64, m: &mut [u8]| {
                m.fill((i % 251) as u8);
                m[..8].copy_from_slice(&i.to_le_bytes());
            };
            let consumer = {
                let (spec, handoff) = (spec.clone(), handoff(&link, End::B));
                std::thread::spawn(move || {
                    let mut conn = RawStream.open(&spec, End::B, handoff).unwrap();
                    let mut buf = vec![0u8; 13 * msg_size];
                    let mut want = vec![0u8; msg_size];
                    let mut next = 0u64;
                    while next < total {
                        let n = conn.recv_batch(&mut buf, msg_size).unwrap();
                        assert!((1..=13).contains(&n));
                        for m in buf[..n * msg_size].chunks_exact(msg_size) {
                            record(next, &mut want);
                            assert_eq!(m, &want[..], "record {next} of {msg_size} bytes");
                            next += 1;
                        }
                    }
                    // The wrong direction is refused.
                    assert!(conn.send(&want).is_err());
                    next
                })
            };
            let mut conn = RawStream
                .open(&spec, End::A, handoff(&link, End::A))
                .unwrap();
            let mut sent = 0u64;
            let mut batch = 1u64;
            let mut msgs = Vec::new();
            while sent < total {
                let n = batch.min(total - sent);
                msgs.resize(n as usize * msg_size, 0);
                for (k, m) in msgs.chunks_exact_mut(msg_size).enumerate() {
                    record(sent + k as u64, m);
                }
                if n == 1 {
                    conn.send(&msgs).unwrap();
                } else {
                    conn.send_batch(&msgs, msg_size).unwrap();
                }
                sent += n;
                // 1, 2, 4, … up to more than the ring holds, then again.
                batch = if batch > capacity { 1 } else { batch * 2 + 1 };
            }
            assert_eq!(consumer.join().unwrap(), total);
            let mut buf = vec![0u8; msg_size];
            assert!(conn.recv(&mut buf).is_err(), "the producer cannot receive");
        }
    }

    /// A position read back that puts the two sides more than the
    /// capacity apart is corruption, reported before any copy.
    #[test]
    fn a_corrupt_position_is_reported() {
        let spec = link_spec(64, Scenario::Stream);
        let link = RawStream.link(&spec).unwrap();
        let _names = Names(link.names.clone());
        let mut consumer = RawStream
            .open(&spec, End::B, handoff(&link, End::B))
            .unwrap();
        let (region, _) = map_object(&link.ends[0].args[0], DATA).unwrap();
        region
            .atomic_u32(TAIL)
            .unwrap()
            .store(1 << 30, Ordering::Release);
        let mut buf = vec![0u8; 64 * 4];
        let e = consumer.recv_batch(&mut buf, 64).unwrap_err();
        assert!(e.to_string().contains("ring corrupt"), "{e}");
        assert!(RawStream.link(&link_spec(64, Scenario::Rtt)).is_err());
    }

    #[test]
    fn the_ring_holds_about_256_kib_of_whole_records() {
        let l = Layout::new(64);
        assert_eq!((l.capacity, l.data_bytes()), (4096, 256 << 10));
        let l = Layout::new(100);
        assert_eq!(l.capacity, 2048);
        assert_eq!(l.offset(2048 + 3), 300);
        let l = Layout::new(1 << 20);
        assert_eq!(l.capacity, 4);
        assert_eq!(Layout::new(8).capacity, 32768);
    }
}
