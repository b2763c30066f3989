//! A minimal single-producer, single-consumer ring in shared memory: the
//! harness's own floor, used by `raw-spin`, `raw-futex` and `eventfd`
//! (`fanout` uses the one-writer, many-reader variant in
//! [`super::fanout_ring`], which shares the slot layout and the waiting).
//!
//! Each slot carries its own sequence word next to the payload (the
//! per-slot sequence of Vyukov's bounded queue, reduced to one producer and
//! one consumer), so a message of up to 56 bytes moves in one cache line:
//! the consumer polls the very line the producer wrote. The producer learns
//! about free slots from `head` only when its cached copy says the ring is
//! full.
//!
//! # Lane layout
//! A link is one shared memory object holding two lanes: lane 0 carries
//! messages from end A to end B, lane 1 from B to A. One lane:
//!
//! ```text
//! offset        field              written by  read by
//! 0             consumer_waiting   consumer    producer, after each publish
//! 64            producer_waiting   producer    consumer, after each release
//! 128           head (u32)         consumer    producer, when the ring looks full
//! 192 + i*S     slot i: seq (u32)  producer    consumer
//!               slot i: payload at +8, msg_size bytes
//! ```
//!
//! `S`, the slot stride, is `8 + msg_size` rounded up to 64 bytes for round
//! trips (one message, one cache line) and to 8 bytes for streams. Positions
//! are `u32` counters that wrap; slot `p % capacity` is ready for position
//! `p` when its `seq` equals `p + 1`.
//!
//! # Waiting
//! A waiter first spins for a bounded, adaptive time (up to the transport's
//! maximum; halved after a spin that failed, doubled after one that worked,
//! so that with more processes than cores it soon stops stealing the peer's
//! CPU), then sleeps: on a shared futex (no `FUTEX_PRIVATE_FLAG`) for
//! `raw-spin` and `raw-futex`, in `read` of an eventfd for `eventfd`. A
//! sleeper raises its `*_waiting` flag, issues a SeqCst fence, and re-checks
//! before sleeping; the other side makes its store, issues a SeqCst fence and
//! reads the flag, so one of them always sees the other (no lost wake-up).
//! Every futex sleep has a timeout and the whole wait a deadline.

use std::hint;
use std::os::fd::OwnedFd;
use std::ptr;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::thread::futex;
use shmkit::posix::{OpenOptions, PosixObject};
use shmkit::Region;

use super::{End, LinkSpec};
use crate::Scenario;

/// A cache line on the machines we target.
pub(super) const LINE: usize = 64;
const CONSUMER_WAITING: usize = 0;
const PRODUCER_WAITING: usize = LINE;
const HEAD: usize = 2 * LINE;
const SLOTS: usize = 3 * LINE;
/// Where the payload starts inside a slot (after `seq` and padding).
pub(super) const PAYLOAD: usize = 8;
/// The longest single futex sleep: a lost wake-up (which the protocol rules
/// out) would cost at most this, and deadlines are checked this often.
const FUTEX_TIMEOUT: Duration = Duration::from_millis(20);
/// The least spin budget an adaptive spinner shrinks to.
const MIN_SPIN: Duration = Duration::from_micros(1);

/// Sizes of a lane for one message size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub(super) msg_size: usize,
    /// Slots, a power of two.
    pub(super) capacity: u32,
    /// Bytes from one slot to the next.
    pub(super) stride: usize,
}

impl Layout {
    /// Round trips keep one message in flight: 4 slots, each on its own
    /// cache lines, suffice. Streams pack slots 8-byte aligned (a 64-byte
    /// message then costs 72 bytes of cache traffic, not 128) in about
    /// 256 KiB (at least 4 slots, at most 512); so do fan-outs.
    pub(crate) fn new(spec: &LinkSpec) -> Self {
        let (stride, capacity) = match spec.scenario {
            Scenario::Rtt | Scenario::Oversubscribed => {
                ((PAYLOAD + spec.msg_size).next_multiple_of(LINE), 4)
            }
            Scenario::Stream | Scenario::Bulk | Scenario::Fanout | Scenario::Paced => {
                let stride = (PAYLOAD + spec.msg_size).next_multiple_of(8);
                let fit = ((256 << 10) / stride).clamp(4, 512);
                // Round down to a power of two.
                (stride, 1 << (usize::BITS - 1 - fit.leading_zeros()))
            }
        };
        Layout {
            msg_size: spec.msg_size,
            capacity: capacity as u32,
            stride,
        }
    }

    fn lane_bytes(&self) -> usize {
        // Whole lines, so that lane 1's control words start a line.
        (SLOTS + self.capacity as usize * self.stride).next_multiple_of(LINE)
    }

    /// Bytes of a whole link: two lanes.
    pub(crate) fn link_bytes(&self) -> usize {
        2 * self.lane_bytes()
    }

    /// Where the slot of position `pos` starts, counted from slot 0: below
    /// `capacity * stride` (the index is masked; the capacity is a power of
    /// two) and a multiple of 8.
    #[inline]
    pub(super) fn slot_offset(&self, pos: u32) -> usize {
        (pos & (self.capacity - 1)) as usize * self.stride
    }
}

/// Copies `msg` into the payload of the slot at `slot`.
///
/// # Safety
/// `slot` must point to a slot in a mapping whose payload holds at least
/// `msg.len()` bytes and that no other process reads or writes until it
/// is published.
#[inline]
pub(super) unsafe fn copy_in(slot: *mut u8, msg: &[u8]) {
    // SAFETY: the caller's contract; `msg` is private memory, so the two
    // do not overlap.
    unsafe { ptr::copy_nonoverlapping(msg.as_ptr(), slot.add(PAYLOAD), msg.len()) }
}

/// Fills `buf` from the payload of the slot at `slot`.
///
/// # Safety
/// `slot` must point to a published slot in a mapping whose payload holds
/// at least `buf.len()` bytes that no process writes until the caller
/// hands the slot back.
#[inline]
pub(super) unsafe fn copy_out(slot: *const u8, buf: &mut [u8]) {
    // SAFETY: the caller's contract; `buf` is private memory, so the two
    // do not overlap.
    unsafe { ptr::copy_nonoverlapping(slot.add(PAYLOAD), buf.as_mut_ptr(), buf.len()) }
}

/// Maps the shared memory object `name` and checks that it holds at least
/// `needed` bytes and starts on a cache line; returns the mapping (which
/// must outlive every use of the pointer) and its first byte.
pub(super) fn map_object(name: &str, needed: usize) -> Result<(Region, *mut u8)> {
    let region = PosixObject::open(name)?.map()?;
    if region.len() < needed {
        bail!(
            "{name}: {} bytes mapped, the ring needs {needed}",
            region.len()
        );
    }
    let base = region.as_mut_ptr()?;
    if base as usize % LINE != 0 {
        bail!("{name}: the mapping is not aligned to a cache line");
    }
    Ok((region, base))
}

/// Creates the shared memory object of one link, named after the link's tag.
pub(crate) fn create_object(spec: &LinkSpec) -> Result<String> {
    let name = format!("/{}", spec.tag);
    let layout = Layout::new(spec);
    OpenOptions::new()
        .create_new(true)
        .size(layout.link_bytes() as u64)
        .mode(0o600)
        .open(&name)?;
    Ok(name)
}

/// How a side of a lane waits and wakes its peer.
pub(crate) enum Notify {
    /// Spin for up to `max_spin` (zero: never), then sleep on a shared futex.
    Futex { spinner: Spinner },
    /// Sleep in `read` of eventfds: `data` counts published messages,
    /// `space` tells a waiting producer that slots were freed.
    EventFd { data: OwnedFd, space: OwnedFd },
}

impl Notify {
    /// Futex waiting after a spin of at most `max_spin`.
    pub(crate) fn futex(max_spin: Duration) -> Self {
        Notify::Futex {
            spinner: Spinner::new(max_spin),
        }
    }
}

/// A bounded, adaptive spin.
pub(crate) struct Spinner {
    max: Duration,
    budget: Duration,
    /// Spins begun at the floor: every 32nd spins the maximum (a probe).
    floor_spins: u32,
}

/// A spinner at the floor budget spins the maximum once per this many
/// spins: without it a round trip whose two ends both cut their spins to
/// the floor sleeps on every message for good (each end's wait then
/// includes the other's wake-up, so no spin ever succeeds again). shmkit's
/// waits do the same (`shmkit::sync::spin`), and a floor should not be
/// weaker than what it is compared with.
const PROBE_EVERY: u32 = 32;

impl Spinner {
    /// A spinner that polls for at most `max` (zero: never).
    pub(super) fn new(max: Duration) -> Self {
        Spinner {
            max,
            budget: max,
            floor_spins: 0,
        }
    }

    /// Polls `ready` until it holds (true) or the budget is spent (false).
    #[inline]
    pub(super) fn spin(&mut self, mut ready: impl FnMut() -> bool) -> bool {
        if self.max.is_zero() {
            return false;
        }
        let floor = MIN_SPIN.min(self.max);
        let mut budget = self.budget;
        let mut probing = false;
        if budget <= floor {
            self.floor_spins = self.floor_spins.wrapping_add(1);
            if self.floor_spins % PROBE_EVERY == 0 {
                (budget, probing) = (self.max, true);
            }
        }
        let start = Instant::now();
        loop {
            // Check the clock only every 64 polls: reading it costs more than a poll.
            for _ in 0..64 {
                hint::spin_loop();
                if ready() {
                    self.budget = (budget * 2).min(self.max);
                    return true;
                }
            }
            if start.elapsed() >= budget {
                self.budget = if probing {
                    floor
                } else {
                    (budget / 2).max(floor)
                };
                return false;
            }
        }
    }
}

/// One lane as seen from one process: raw pointers into the mapping that the
/// owning [`RingConn`] keeps alive.
struct Lane {
    base: *mut u8,
    layout: Layout,
}

impl Lane {
    /// The control word at `offset` (one of the constants above).
    #[inline]
    fn word(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset < SLOTS && offset % 4 == 0);
        // SAFETY: `offset` is one of the 4-aligned constants below SLOTS and
        // the lane (checked in `RingConn::new`) is at least SLOTS bytes at a
        // 64-aligned address; AtomicU32 may be shared with other processes
        // writing the same word; the mapping outlives `self` (RingConn owns
        // both and never hands a Lane out).
        unsafe { &*self.base.add(offset).cast::<AtomicU32>() }
    }

    /// The first byte of the slot of position `pos`.
    #[inline]
    fn slot(&self, pos: u32) -> *mut u8 {
        // SAFETY: the slot offset is below capacity * stride, so the slot
        // lies inside the lane, whose size was checked.
        unsafe { self.base.add(SLOTS + self.layout.slot_offset(pos)) }
    }

    /// The sequence word of the slot of position `pos`.
    #[inline]
    fn seq(&self, pos: u32) -> &AtomicU32 {
        // SAFETY: a slot starts 8-aligned inside the lane (see `slot`; the
        // stride is a multiple of 8) and begins with its 4-byte sequence
        // word; atomics only.
        unsafe { &*self.slot(pos).cast::<AtomicU32>() }
    }
}

/// Both lanes of a link as one end sees them.
pub(crate) struct RingConn {
    tx: Lane,
    rx: Lane,
    tx_notify: Notify,
    rx_notify: Notify,
    /// Next position to publish on `tx`.
    tail: u32,
    /// Last `head` of `tx` read back from shared memory.
    cached_head: u32,
    /// Next position to take from `rx`.
    head: u32,
    deadline: Instant,
    /// Keeps the mapping alive; declared last so the lanes go first.
    _region: Region,
}

impl RingConn {
    /// Maps the link's object and takes the lanes of `end` (A sends on lane 0).
    pub(crate) fn open(
        name: &str,
        spec: &LinkSpec,
        end: End,
        tx_notify: Notify,
        rx_notify: Notify,
        deadline: Instant,
    ) -> Result<Self> {
        let layout = Layout::new(spec);
        let (region, base) = map_object(name, layout.link_bytes())?;
        let lane = |index: usize| Lane {
            // SAFETY: index < 2 and the mapping holds two lanes (checked above).
            base: unsafe { base.add(index * layout.lane_bytes()) },
            layout,
        };
        let (tx, rx) = match end {
            End::A => (lane(0), lane(1)),
            End::B => (lane(1), lane(0)),
        };
        Ok(RingConn {
            tx,
            rx,
            tx_notify,
            rx_notify,
            tail: 0,
            cached_head: 0,
            head: 0,
            deadline,
            _region: region,
        })
    }

    /// Free slots on `tx`, waiting (spin, then sleep) until there is one.
    fn reserve(&mut self) -> Result<u32> {
        let cap = self.tx.layout.capacity;
        let free = |tail: u32, head: u32| cap.wrapping_sub(tail.wrapping_sub(head));
        if free(self.tail, self.cached_head) > 0 {
            return Ok(free(self.tail, self.cached_head));
        }
        let head = self.tx.word(HEAD);
        let tail = self.tail;
        // Acquire: SYNC POINT with the Release store of `head` in `release`,
        // after which the consumer no longer reads the freed slots.
        let mut h = head.load(Ordering::Acquire);
        let has_room = |h: u32| tail.wrapping_sub(h) < cap;
        if !has_room(h) {
            match &mut self.tx_notify {
                Notify::Futex { spinner } => {
                    if !spinner.spin(|| {
                        h = head.load(Ordering::Acquire);
                        has_room(h)
                    }) {
                        h = sleep_futex(
                            head,
                            self.tx.word(PRODUCER_WAITING),
                            has_room,
                            self.deadline,
                            "no slot was freed",
                        )?;
                    }
                }
                Notify::EventFd { space, .. } => {
                    let waiting = self.tx.word(PRODUCER_WAITING);
                    loop {
                        waiting.store(1, Ordering::Relaxed);
                        // SYNC POINT with the fence in `release`: either the
                        // consumer sees our flag, or we see its new head.
                        fence(Ordering::SeqCst);
                        h = head.load(Ordering::Acquire);
                        if has_room(h) {
                            break;
                        }
                        read_eventfd(space)?;
                    }
                    waiting.store(0, Ordering::Relaxed);
                }
            }
        }
        // `head` comes from shared memory: a consumer ahead of the producer
        // is corruption, caught here in release builds too.
        if tail.wrapping_sub(h) > cap {
            bail!("ring corrupt: head {h} is ahead of tail {tail}");
        }
        self.cached_head = h;
        Ok(free(tail, h))
    }

    /// Copies one message into the slot of position `pos` (not yet published).
    #[inline]
    fn write_payload(&mut self, pos: u32, msg: &[u8]) {
        debug_assert_eq!(msg.len(), self.tx.layout.msg_size);
        // SAFETY: the slot is free (reserve saw head past it, with Acquire,
        // so the consumer has finished copying out of it) and holds
        // msg_size payload bytes.
        unsafe { copy_in(self.tx.slot(pos), msg) };
    }

    /// Publishes position `pos`, whose payload is written.
    #[inline]
    fn publish(&mut self, pos: u32) {
        // Release: SYNC POINT with the Acquire load of `seq` in `wait_ready`:
        // the payload copy happens before the consumer's copy out.
        self.tx
            .seq(pos)
            .store(pos.wrapping_add(1), Ordering::Release);
    }

    /// Wakes the consumer after publishing `count` messages from `first`.
    fn notify_published(&mut self, first: u32, count: u32) -> Result<()> {
        match &self.tx_notify {
            Notify::Futex { .. } => {
                // SYNC POINT with the fence in `sleep_futex`: either the
                // sleeper sees our `seq` store, or we see its flag.
                fence(Ordering::SeqCst);
                if self.tx.word(CONSUMER_WAITING).load(Ordering::Relaxed) != 0 {
                    // The consumer sleeps on the first slot it lacks: `first`.
                    futex::wake(self.tx.seq(first), futex::Flags::empty(), 1)?;
                }
            }
            Notify::EventFd { data, .. } => write_eventfd(data, u64::from(count))?,
        }
        Ok(())
    }
}

/// A side that takes published slots in order (a ring's consumer, a
/// fan-out reader): `recv` and `recv_batch` built from four steps.
pub(super) trait TakeSlots {
    /// Waits (spin, then sleep) until the next position is published.
    fn wait_ready(&mut self) -> Result<()>;

    /// Whether the next position is published, without waiting.
    fn is_ready(&self) -> bool;

    /// Copies the message at the next position out (it must be ready) and
    /// advances.
    fn take(&mut self, buf: &mut [u8]);

    /// Hands the slots taken so far back to the writer.
    fn release(&mut self) -> Result<()>;

    /// [`Conn::recv`](super::Conn::recv): one message.
    fn take_one(&mut self, buf: &mut [u8]) -> Result<()> {
        self.wait_ready()?;
        self.take(buf);
        self.release()
    }

    /// [`Conn::recv_batch`](super::Conn::recv_batch): waits for one
    /// message, takes every one ready that fits, releases them at once.
    fn take_some(&mut self, buf: &mut [u8], msg_size: usize) -> Result<usize> {
        self.wait_ready()?;
        let mut count = 0;
        for m in buf.chunks_exact_mut(msg_size) {
            if count > 0 && !self.is_ready() {
                break;
            }
            self.take(m);
            count += 1;
        }
        self.release()?;
        Ok(count)
    }
}

impl TakeSlots for RingConn {
    /// Waits until position `head` of `rx` is published.
    fn wait_ready(&mut self) -> Result<()> {
        let pos = self.head;
        let want = pos.wrapping_add(1);
        let seq = self.rx.seq(pos);
        // Acquire: SYNC POINT with the Release store of `seq` in `publish`.
        if seq.load(Ordering::Acquire) == want {
            return Ok(());
        }
        match &mut self.rx_notify {
            Notify::Futex { spinner } => {
                if !spinner.spin(|| seq.load(Ordering::Acquire) == want) {
                    sleep_futex(
                        seq,
                        self.rx.word(CONSUMER_WAITING),
                        |v| v == want,
                        self.deadline,
                        "no message arrived",
                    )?;
                }
            }
            Notify::EventFd { data, .. } => {
                // The count only says "something was published"; the slot's
                // own sequence word says what.
                while seq.load(Ordering::Acquire) != want {
                    read_eventfd(data)?;
                }
            }
        }
        Ok(())
    }

    /// Whether position `head` of `rx` is published, without waiting.
    #[inline]
    fn is_ready(&self) -> bool {
        // Acquire: as in `wait_ready`.
        self.rx.seq(self.head).load(Ordering::Acquire) == self.head.wrapping_add(1)
    }

    /// Copies the message at `head` out (it must be ready) and advances.
    #[inline]
    fn take(&mut self, buf: &mut [u8]) {
        debug_assert_eq!(buf.len(), self.rx.layout.msg_size);
        // SAFETY: the slot is published (its seq was loaded with Acquire) and
        // the producer does not touch it again until `release` moves head
        // past it; it holds msg_size = buf.len() payload bytes.
        unsafe { copy_out(self.rx.slot(self.head), buf) };
        self.head = self.head.wrapping_add(1);
    }

    /// Hands the slots taken so far back to the producer.
    fn release(&mut self) -> Result<()> {
        // Release: SYNC POINT with the Acquire loads of `head` in `reserve`.
        self.rx.word(HEAD).store(self.head, Ordering::Release);
        // SYNC POINT with the fence before the producer re-checks `head`.
        fence(Ordering::SeqCst);
        if self.rx.word(PRODUCER_WAITING).load(Ordering::Relaxed) != 0 {
            match &self.rx_notify {
                Notify::Futex { .. } => {
                    futex::wake(self.rx.word(HEAD), futex::Flags::empty(), 1)?;
                }
                Notify::EventFd { space, .. } => write_eventfd(space, 1)?,
            }
        }
        Ok(())
    }
}

impl super::Conn for RingConn {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.reserve()?;
        let pos = self.tail;
        self.write_payload(pos, msg);
        self.publish(pos);
        self.tail = pos.wrapping_add(1);
        self.notify_published(pos, 1)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        self.take_one(buf)
    }

    /// Writes every payload of a run of free slots first, then publishes
    /// them: the consumer, polling the first slot, does not pull each line
    /// back and forth while the producer is still writing the run.
    fn send_batch(&mut self, msgs: &[u8], msg_size: usize) -> Result<()> {
        let mut rest = msgs.chunks_exact(msg_size).peekable();
        while rest.peek().is_some() {
            let free = self.reserve()?;
            let first = self.tail;
            let mut count = 0;
            for m in rest.by_ref().take(free as usize) {
                self.write_payload(first.wrapping_add(count), m);
                count += 1;
            }
            for i in 0..count {
                self.publish(first.wrapping_add(i));
            }
            self.tail = first.wrapping_add(count);
            // Wake the consumer before possibly waiting for space ourselves.
            self.notify_published(first, count)?;
        }
        Ok(())
    }

    fn recv_batch(&mut self, buf: &mut [u8], msg_size: usize) -> Result<usize> {
        self.take_some(buf, msg_size)
    }
}

/// Sleeps on the futex `word` until `ready(word)`; returns the ready value.
///
/// Raises the flag `waiting` (stores 1) first and re-checks after a SeqCst
/// fence, pairing with the fence the waker issues between its store to
/// `word` and its load of `waiting`; lowers it (stores 0) on the way out.
fn sleep_futex(
    word: &AtomicU32,
    waiting: &AtomicU32,
    ready: impl Fn(u32) -> bool,
    deadline: Instant,
    what: &str,
) -> Result<u32> {
    sleep_futex_with(
        word,
        || waiting.store(1, Ordering::Relaxed),
        || waiting.store(0, Ordering::Relaxed),
        ready,
        deadline,
        what,
    )
}

/// [`sleep_futex`] with the raising and lowering of the sleeper's mark
/// given: `raise` runs once before the first check (the SeqCst fence
/// follows it), `lower` once on every way out. Several sleepers can share
/// one word by counting (`fetch_add`, `fetch_sub`); one writer can say
/// whom it waits for by the value it stores.
pub(super) fn sleep_futex_with(
    word: &AtomicU32,
    raise: impl Fn(),
    lower: impl Fn(),
    ready: impl Fn(u32) -> bool,
    deadline: Instant,
    what: &str,
) -> Result<u32> {
    let timeout = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: FUTEX_TIMEOUT.as_nanos() as _,
    };
    // Nobody else lowers the mark: raising it once covers every sleep below.
    raise();
    loop {
        // SYNC POINT with the waker's fence between its store to `word`
        // and its load of the mark.
        fence(Ordering::SeqCst);
        // Acquire: pairs with the Release store that made `word` ready.
        let seen = word.load(Ordering::Acquire);
        if ready(seen) {
            lower();
            return Ok(seen);
        }
        // Shared (not private) futex: the waker is another process.
        match futex::wait(word, futex::Flags::empty(), seen, Some(&timeout)) {
            Ok(()) => {}
            Err(e)
                if e == rustix::io::Errno::AGAIN
                    || e == rustix::io::Errno::TIMEDOUT
                    || e == rustix::io::Errno::INTR => {}
            Err(e) => {
                lower();
                return Err(e).context("futex wait");
            }
        }
        if Instant::now() >= deadline {
            lower();
            bail!("{what} before the deadline: the peer stopped");
        }
    }
}

fn read_eventfd(fd: &OwnedFd) -> Result<u64> {
    let mut buf = [0u8; 8];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(8) => return Ok(u64::from_ne_bytes(buf)),
            Ok(n) => bail!("eventfd read returned {n} bytes"),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).context("eventfd read"),
        }
    }
}

fn write_eventfd(fd: &OwnedFd, value: u64) -> Result<()> {
    loop {
        match rustix::io::write(fd, &value.to_ne_bytes()) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).context("eventfd write"),
        }
    }
}
