//! `raw-spin` and `raw-futex` in `fanout`: one ring in shared memory that
//! one writer appends to and every reader follows with its own cursor.
//! Lossless: when the ring is full the writer waits for the slowest reader.
//!
//! Slots are those of a stream lane of [`super::ring`] (a sequence word,
//! the payload at +8, packed 8-byte aligned, about 256 KiB in all): slot
//! `p % capacity` holds position `p` once its `seq` equals `p + 1`. Readers
//! poll the slot itself; the writer reads the readers' heads only when its
//! cached lowest head says the ring is full.
//!
//! ```text
//! offset            field                   written by           read by
//! 0                 readers_waiting (u32)   sleeping readers     the writer, after each publish
//! 64                writer_waits_on (u32)   the writer: 0, k+1   reader k, after each release
//! 128 + 64 k        head of reader k (u32)  reader k             the writer, when the ring looks full
//! 128 + 64 N + i S  slot i: seq (u32), payload at +8
//! ```
//!
//! # Waiting
//! Both sides spin for a bounded, adaptive time ([`Spinner`]: up to 50 µs
//! for `raw-spin`, never for `raw-futex`), then sleep on a shared futex
//! with [`ring::sleep_futex_with`], so more processes than cores slow down
//! instead of collapsing:
//! - a reader sleeps on the sequence word of the slot it lacks, counted in
//!   `readers_waiting`. The only position a reader can lack is the next
//!   one the writer publishes (it has read everything before), so after
//!   each publish the writer, seeing the count non-zero, wakes every
//!   sleeper of that slot's word;
//! - the writer sleeps on the head of the reader furthest behind, with
//!   `writer_waits_on` = that reader's index + 1; that reader, after moving
//!   its head, wakes it.
//!
//! Each side stores its word, issues a SeqCst fence and then reads the
//! other's mark; the sleeper raises its mark, issues a SeqCst fence and
//! re-checks: one of them always sees the other (no lost wake-up).

use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::thread::futex;
use shmkit::posix::OpenOptions;
use shmkit::Region;

use super::ring::{self, Layout, Spinner, TakeSlots, LINE};
use super::{Conn, End, Handoff, Link, LinkSpec, Named};

const READERS_WAITING: usize = 0;
const WRITER_WAITS_ON: usize = LINE;
const HEADS: usize = 2 * LINE;

/// Where everything is in the ring of one link.
#[derive(Clone, Copy, Debug)]
struct FanLayout {
    slots: Layout,
    readers: usize,
}

impl FanLayout {
    fn new(spec: &LinkSpec) -> Self {
        FanLayout {
            slots: Layout::new(spec),
            readers: spec.readers,
        }
    }

    /// Offset of slot 0: after the control words and one line per head.
    fn slots_at(&self) -> usize {
        HEADS + self.readers * LINE
    }

    /// Bytes of the whole object.
    fn bytes(&self) -> usize {
        self.slots_at() + self.slots.capacity as usize * self.slots.stride
    }
}

/// Makes the link: one shared memory object named after the link's tag;
/// the writer gets its name, reader k its name and k.
pub(super) fn link(spec: &LinkSpec) -> Result<Link> {
    let name = format!("/{}", spec.tag);
    OpenOptions::new()
        .create_new(true)
        .size(FanLayout::new(spec).bytes() as u64)
        .mode(0o600)
        .open(&name)?;
    let mut link = Link::default();
    link.ends[0].args.push(name.clone());
    link.readers = (0..spec.readers)
        .map(|k| Handoff {
            fds: Vec::new(),
            args: vec![name.clone(), k.to_string()],
        })
        .collect();
    link.names.push(Named::Shm(name));
    Ok(link)
}

/// Opens the writer (end A) or a reader (end B) of the link, waiting with
/// a spin of at most `max_spin` before each sleep.
pub(super) fn open(
    spec: &LinkSpec,
    end: End,
    handoff: &Handoff,
    max_spin: Duration,
) -> Result<Box<dyn Conn>> {
    let ring = Fan::open(handoff.arg(0)?, spec)?;
    let deadline = spec.deadline(Instant::now());
    let spinner = Spinner::new(max_spin);
    Ok(match end {
        End::A => Box::new(FanWriter {
            ring,
            tail: 0,
            lowest_head: 0,
            spinner,
            deadline,
        }),
        End::B => {
            let index: usize = handoff.arg(1)?.parse().context("reader index")?;
            if index >= spec.readers {
                bail!("reader {index} of a ring made for {}", spec.readers);
            }
            Box::new(FanReader {
                ring,
                index,
                head: 0,
                spinner,
                deadline,
            })
        }
    })
}

/// The mapped ring: raw pointers only, never references to shared bytes
/// other than atomics.
struct Fan {
    base: *mut u8,
    layout: FanLayout,
    /// Keeps the mapping alive; declared last so nothing outlives it.
    _region: Region,
}

impl Fan {
    fn open(name: &str, spec: &LinkSpec) -> Result<Self> {
        let layout = FanLayout::new(spec);
        let (region, base) = ring::map_object(name, layout.bytes())?;
        Ok(Fan {
            base,
            layout,
            _region: region,
        })
    }

    /// The control word or head at `offset` (before the slots).
    #[inline]
    fn word(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset < self.layout.slots_at() && offset % 4 == 0);
        // SAFETY: `offset` is a 4-aligned offset before the slots (one of
        // the constants, or a head's line), inside the mapping (its size
        // was checked in `open`), whose base is 64-aligned; other processes
        // touch the word only atomically; the mapping lives as long as
        // `self`.
        unsafe { &*self.base.add(offset).cast::<AtomicU32>() }
    }

    /// The head of reader `k`: the next position it will read.
    #[inline]
    fn head(&self, k: usize) -> &AtomicU32 {
        assert!(k < self.layout.readers, "no reader {k}");
        self.word(HEADS + k * LINE)
    }

    /// The first byte of the slot of position `pos`.
    #[inline]
    fn slot(&self, pos: u32) -> *mut u8 {
        let offset = self.layout.slots_at() + self.layout.slots.slot_offset(pos);
        // SAFETY: the slot offset is below capacity * stride, so the slot
        // lies inside the mapping, whose size was checked.
        unsafe { self.base.add(offset) }
    }

    /// The sequence word of the slot of position `pos`.
    #[inline]
    fn seq(&self, pos: u32) -> &AtomicU32 {
        // SAFETY: a slot starts 8-aligned (the slots start on a line, the
        // stride is a multiple of 8) with its 4-byte sequence word, which
        // every process touches only atomically.
        unsafe { &*self.slot(pos).cast::<AtomicU32>() }
    }
}

/// The writer: appends one message at a time.
struct FanWriter {
    ring: Fan,
    /// Next position to publish.
    tail: u32,
    /// The lowest reader head read back last: slots before it are free.
    lowest_head: u32,
    spinner: Spinner,
    deadline: Instant,
}

impl FanWriter {
    /// The reader furthest behind and its head.
    fn slowest(&self) -> Result<(usize, u32)> {
        let cap = self.ring.layout.slots.capacity;
        let mut slowest = (0, self.tail);
        let mut most = 0;
        for k in 0..self.ring.layout.readers {
            // Acquire: SYNC POINT with the Release store of the head in
            // `FanReader::release`: reader k has copied out of every slot
            // before its head.
            let h = self.ring.head(k).load(Ordering::Acquire);
            let lag = self.tail.wrapping_sub(h);
            // A head from shared memory ahead of the tail is corruption,
            // caught in release builds too.
            if lag > cap {
                bail!(
                    "ring corrupt: reader {k}'s head {h} is ahead of tail {}",
                    self.tail
                );
            }
            if lag > most {
                most = lag;
                slowest = (k, h);
            }
        }
        Ok(slowest)
    }

    /// Waits until the slot of `tail` is free: every reader has read the
    /// message it held.
    fn reserve(&mut self) -> Result<()> {
        let cap = self.ring.layout.slots.capacity;
        let tail = self.tail;
        let has_room = |h: u32| tail.wrapping_sub(h) < cap;
        while !has_room(self.lowest_head) {
            let (k, h) = self.slowest()?;
            self.lowest_head = h;
            if has_room(h) {
                break;
            }
            let head = self.ring.head(k);
            // Acquire: as in `slowest`.
            if !self.spinner.spin(|| has_room(head.load(Ordering::Acquire))) {
                let waits_on = self.ring.word(WRITER_WAITS_ON);
                ring::sleep_futex_with(
                    head,
                    || waits_on.store(k as u32 + 1, Ordering::Relaxed),
                    || waits_on.store(0, Ordering::Relaxed),
                    has_room,
                    self.deadline,
                    "a reader stopped taking messages",
                )?;
            }
            // Other readers may be behind too: look again.
        }
        Ok(())
    }
}

impl Conn for FanWriter {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        if msg.len() != self.ring.layout.slots.msg_size {
            bail!(
                "a message of {} bytes on a ring made for {}",
                msg.len(),
                self.ring.layout.slots.msg_size
            );
        }
        self.reserve()?;
        let pos = self.tail;
        // SAFETY: the slot is free (`reserve` saw, with Acquire, every
        // reader's head past it, so no reader reads it until it is
        // published again) and holds msg_size = msg.len() payload bytes.
        unsafe { ring::copy_in(self.ring.slot(pos), msg) };
        // Release: SYNC POINT with the Acquire loads of `seq` in
        // `FanReader`: the payload is written before any reader copies it.
        self.ring
            .seq(pos)
            .store(pos.wrapping_add(1), Ordering::Release);
        self.tail = pos.wrapping_add(1);
        // SYNC POINT with the fence in `sleep_futex_with`: either a reader
        // about to sleep sees our `seq` store, or we see its count.
        fence(Ordering::SeqCst);
        if self.ring.word(READERS_WAITING).load(Ordering::Relaxed) != 0 {
            // Every sleeping reader lacks exactly this position.
            futex::wake(self.ring.seq(pos), futex::Flags::empty(), i32::MAX as u32)?;
        }
        Ok(())
    }

    fn recv(&mut self, _buf: &mut [u8]) -> Result<()> {
        bail!("a fan-out writer does not receive")
    }
}

/// Reader k: follows the writer with its own head.
struct FanReader {
    ring: Fan,
    index: usize,
    /// Next position to read (published to the writer by `release`).
    head: u32,
    spinner: Spinner,
    deadline: Instant,
}

impl TakeSlots for FanReader {
    /// Whether position `head` is published, without waiting.
    #[inline]
    fn is_ready(&self) -> bool {
        // Acquire: SYNC POINT with the Release store of `seq` in `send`.
        self.ring.seq(self.head).load(Ordering::Acquire) == self.head.wrapping_add(1)
    }

    /// Waits (spin, then sleep) until position `head` is published.
    fn wait_ready(&mut self) -> Result<()> {
        if self.is_ready() {
            return Ok(());
        }
        let want = self.head.wrapping_add(1);
        let seq = self.ring.seq(self.head);
        // Acquire: as in `is_ready`.
        if !self.spinner.spin(|| seq.load(Ordering::Acquire) == want) {
            let waiting = self.ring.word(READERS_WAITING);
            ring::sleep_futex_with(
                seq,
                || {
                    waiting.fetch_add(1, Ordering::Relaxed);
                },
                || {
                    waiting.fetch_sub(1, Ordering::Relaxed);
                },
                |v| v == want,
                self.deadline,
                "no message arrived",
            )?;
        }
        Ok(())
    }

    /// Copies the message at `head` out (it must be ready) and advances.
    #[inline]
    fn take(&mut self, buf: &mut [u8]) {
        assert_eq!(buf.len(), self.ring.layout.slots.msg_size);
        // SAFETY: the slot is published (its seq was loaded with Acquire)
        // and the writer does not reuse it until this reader's head passes
        // it; it holds msg_size = buf.len() payload bytes.
        unsafe { ring::copy_out(self.ring.slot(self.head), buf) };
        self.head = self.head.wrapping_add(1);
    }

    /// Hands the slots read so far back to the writer.
    fn release(&mut self) -> Result<()> {
        let head = self.ring.head(self.index);
        // Release: SYNC POINT with the Acquire loads of heads in the writer.
        head.store(self.head, Ordering::Release);
        // SYNC POINT with the fence in the writer's `sleep_futex_with`.
        fence(Ordering::SeqCst);
        if self.ring.word(WRITER_WAITS_ON).load(Ordering::Relaxed) == self.index as u32 + 1 {
            futex::wake(head, futex::Flags::empty(), 1)?;
        }
        Ok(())
    }
}

impl Conn for FanReader {
    fn send(&mut self, _msg: &[u8]) -> Result<()> {
        bail!("a fan-out reader does not send")
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        self.take_one(buf)
    }

    fn recv_batch(&mut self, buf: &mut [u8], msg_size: usize) -> Result<usize> {
        self.take_some(buf, msg_size)
    }
}
