//! Broadcasts over named shared memory: [`Broadcast`], [`Publisher`],
//! [`Subscriber`].

use std::mem::{align_of, offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::gate::{self, GateWords, EVICTED};
use super::ring::{self, RingWords, Step};
use crate::bell::Bell;
use crate::endpoint_table::{self, EndpointWords, Membership};
use crate::error::{Error, ErrorKind, Result};
use crate::layout::{HeaderInfo, Kind, HEADER_SIZE};
use crate::posix::ShmName;
use crate::process::{self, ProcessId};
use crate::readiness::{Arm, FdWaiters, Readiness};
use crate::region::Region;
use crate::shared_object::{self, Claim};

pub use crate::board::WriterInfo;

/// How long a waiting subscriber sleeps before it checks that the writer
/// is still alive.
pub const LIVENESS_SLICE: Duration = Duration::from_millis(50);
/// Subscribers one broadcast can have at once.
pub const MAX_SUBSCRIBERS: usize = 128;
/// The largest capacity, in messages.
pub const MAX_CAPACITY: usize = 1 << 24;
/// The largest message, in bytes.
pub const MAX_MESSAGE: usize = 1 << 30;
/// A lossless writer that the gate holds back first waits this long
/// (spinning up to the bell's spin budget, then sleeping the rest) before
/// it checks whether the subscribers holding it back are alive; later it
/// checks after every [`GATE_LIVENESS_SLICE`] of waiting. So a subscriber
/// that is dead when it starts holding the writer back costs the writer
/// this window plus one liveness check, and one killed while the writer
/// sleeps at most one slice more.
pub const GATE_SPIN_WINDOW: Duration = Duration::from_micros(50);
/// How long a lossless writer held back by live subscribers sleeps between
/// two checks that they are still alive (each reads `/proc/PID/stat` of
/// those holding it back: a few µs per 10 ms).
pub const GATE_LIVENESS_SLICE: Duration = Duration::from_millis(10);

/// The broadcast's fixed part, right after the common header. Atomics only
/// (padding included), so a shared reference over memory other processes
/// write is sound.
#[repr(C)]
struct Control {
    /// Slots in the ring, a power of two (written once by the creator).
    capacity: AtomicU64,
    /// Largest message in bytes (written once).
    max_msg: AtomicU64,
    /// Bytes per slot (written once).
    slot_size: AtomicU64,
    /// Offset of slot 0 from the start of the object (written once).
    slots_offset: AtomicU64,
    /// How many times a writer claimed the broadcast: once it is non-zero,
    /// a subscriber with nothing to read and no live writer is told so.
    claims: AtomicU64,
    /// How many subscribers ever joined (statistic).
    joins: AtomicU64,
    /// `size_of::<T>()` for a typed broadcast, 0 for bytes (written once;
    /// 0 in broadcasts made before typed ones existed).
    type_size: AtomicU32,
    /// `align_of::<T>()` for a typed broadcast, 0 for bytes (written once).
    type_align: AtomicU32,
    /// `MODE_LOSSY`, `MODE_BLOCK` or `MODE_EVICT` (written once; 0 in
    /// broadcasts made before lossless ones existed).
    mode: AtomicU64,
    /// The writer's identity word (pid | start time), 0 when none.
    writer: AtomicU64,
    /// For `MODE_EVICT`: how long the writer waits for a subscriber a lap
    /// behind before it cuts it off, in nanoseconds (written once).
    evict_after_ns: AtomicU64,
    /// How many times the writer found the gate closed and waited
    /// (statistic, written by the writer).
    writer_waits: AtomicU64,
    /// Subscribers the writer evicted (statistic).
    evictions: AtomicU64,
    /// Dead subscribers the writer dropped from the gate (statistic).
    dropped_dead: AtomicU64,
    _pad1: [AtomicU64; 11],
    /// The next position the writer will write.
    head: AtomicU64,
    _pad2: [AtomicU64; 15],
    /// Bumped after every message (and when the writer leaves).
    bell: Bell,
    /// Lossless mode: rung by subscribers as they free slots (every
    /// `gate_step` messages, when they run dry, when they leave), waited
    /// on by a writer the gate holds back. It shares the bell's line: both
    /// words are only loaded on the busy path (written only to park).
    gate_bell: Bell,
    _pad3: [AtomicU32; 12],
    /// Readiness descriptors of subscribers (`crate::readiness`), at 448:
    /// the bell block's second line, padding (zero) in broadcasts made before.
    fd_waiters: FdWaiters,
}

/// `Control::mode`: the writer overwrites whoever lags.
const MODE_LOSSY: u64 = 0;
/// `Control::mode`: lossless, the writer waits for live laggards.
const MODE_BLOCK: u64 = 1;
/// `Control::mode`: lossless, laggards are evicted after a while.
const MODE_EVICT: u64 = 2;

/// One subscriber's entry in the table: written by that subscriber only
/// (and by whoever reaps it once it is dead), read by `stats`.
#[repr(C)]
struct Entry {
    /// The subscriber's occupant word (`crate::endpoint_table`: its
    /// identity word, role 0); 0 when free; a settling word while it leaves
    /// or a reaper frees it.
    identity: AtomicU64,
    /// The next position it will read.
    cursor: AtomicU64,
    /// Messages it missed in all.
    missed: AtomicU64,
    /// The position it joined at.
    joined_at: AtomicU64,
    /// Lossless mode: 0, `gate::GATING` or `gate::EVICTED` (the `gate`
    /// module).
    state: AtomicU64,
    _pad: [AtomicU64; 3],
}

const CONTROL_OFFSET: usize = HEADER_SIZE;
const ENTRIES_OFFSET: usize = CONTROL_OFFSET + size_of::<Control>();
const SLOTS_START: usize = ENTRIES_OFFSET + MAX_SUBSCRIBERS * size_of::<Entry>();
/// A slot: its sequence word, its length word, then the message's words.
const SLOT_HEADER: usize = 16;
/// A subscriber's role in its occupant word (`endpoint_table::with_role`):
/// 0, as in broadcasts made before the shared table.
const ROLE_SUBSCRIBER: u64 = 0;

const _: () = {
    assert!(align_of::<Control>() == 8 && align_of::<Entry>() == 8);
    assert!(CONTROL_OFFSET + offset_of!(Control, writer) == 128);
    // Head and bell each get a 128-byte block of their own (the
    // adjacent-line prefetcher pulls 64-byte lines in pairs).
    assert!(CONTROL_OFFSET + offset_of!(Control, head) == 256);
    assert!(CONTROL_OFFSET + offset_of!(Control, bell) == 384);
    assert!(CONTROL_OFFSET + offset_of!(Control, gate_bell) == 392);
    assert!(CONTROL_OFFSET + offset_of!(Control, fd_waiters) == 448);
    assert!(ENTRIES_OFFSET == 512);
    // One entry per cache line: subscribers never share a line.
    assert!(size_of::<Entry>() == 64);
    assert!(SLOTS_START == 8704 && SLOTS_START % 64 == 0);
};

/// What a broadcast is made of: fixed at creation, checked on every open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    capacity: u64,
    max_msg: u64,
    slot_size: u64,
    total: u64,
    /// `size_of::<T>()` of a typed broadcast (every message exactly
    /// `max_msg` bytes), 0 for bytes.
    type_size: u32,
    type_align: u32,
    /// `Some` for a lossless broadcast.
    policy: Option<SlowSubscriber>,
}

/// The header's mode words for `policy`.
fn mode_words(policy: Option<SlowSubscriber>) -> (u64, u64) {
    match policy {
        None => (MODE_LOSSY, 0),
        Some(SlowSubscriber::Block) => (MODE_BLOCK, 0),
        Some(SlowSubscriber::EvictAfter(d)) => (MODE_EVICT, d.as_nanos() as u64),
    }
}

/// The policy the header's mode words say, or why they make no sense.
fn policy_of(mode: u64, evict_ns: u64) -> std::result::Result<Option<SlowSubscriber>, String> {
    let policy = match mode {
        MODE_LOSSY => None,
        MODE_BLOCK => Some(SlowSubscriber::Block),
        MODE_EVICT => Some(SlowSubscriber::EvictAfter(Duration::from_nanos(evict_ns))),
        other => {
            return Err(format!(
                "its mode word {other} is not a mode this build knows"
            ))
        }
    };
    check_policy(policy)?;
    if mode_words(policy) != (mode, evict_ns) {
        return Err(format!(
            "its eviction time {evict_ns} ns does not go with mode {mode}"
        ));
    }
    Ok(policy)
}

fn check_policy(policy: Option<SlowSubscriber>) -> std::result::Result<(), String> {
    match policy {
        Some(SlowSubscriber::EvictAfter(d)) if d.is_zero() || d > MAX_EVICT_AFTER => Err(format!(
            "an eviction time of {d:?} is not from 1 ns to {MAX_EVICT_AFTER:?}"
        )),
        _ => Ok(()),
    }
}

/// The largest alignment a typed broadcast's type may have (values are
/// copied out, so it does not constrain the shared layout; the limit only
/// keeps the header's word meaningful).
const MAX_TYPE_ALIGN: usize = 4096;

impl Layout {
    fn typed(
        capacity: u64,
        max_msg: u64,
        type_size: u32,
        type_align: u32,
    ) -> std::result::Result<Self, String> {
        if type_size != 0
            && (u64::from(type_size) != max_msg
                || !type_align.is_power_of_two()
                || type_align as usize > MAX_TYPE_ALIGN)
        {
            return Err(format!(
                "message type of {type_size} bytes aligned to {type_align} does not fit (alignment up to {MAX_TYPE_ALIGN})"
            ));
        }
        if type_size == 0 && type_align != 0 {
            return Err(format!(
                "untyped broadcast with type alignment {type_align}"
            ));
        }
        // A broadcast has no flags.
        crate::shared_object::check_ring_parameters(
            0,
            0,
            capacity,
            MAX_CAPACITY,
            max_msg,
            MAX_MESSAGE,
        )?;
        let slot_size = (SLOT_HEADER as u64 + max_msg.next_multiple_of(8)).next_multiple_of(64);
        let total = crate::shared_object::ring_total(capacity, slot_size, SLOTS_START)?;
        Ok(Layout {
            capacity,
            max_msg,
            slot_size,
            total,
            type_size,
            type_align,
            policy: None,
        })
    }
}

/// What a lossless broadcast's writer does about a live subscriber a whole
/// ring (the capacity) behind it: chosen at creation
/// ([`BroadcastOptions::lossless`]), the same for every writer after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowSubscriber {
    /// Wait for it as long as it lives (a dead one is dropped from the gate
    /// as soon as the writer finds it holding it back).
    Block,
    /// Wait at most this long, then cut it off: its next receive fails
    /// with [`ErrorKind::Disconnected`] ("evicted …") and the writer no
    /// longer waits for it.
    EvictAfter(Duration),
}

/// The longest [`SlowSubscriber::EvictAfter`] (a day): the header keeps
/// nanoseconds in 64 bits, and longer is better said with `Block`.
pub const MAX_EVICT_AFTER: Duration = Duration::from_secs(86_400);

/// How to create a broadcast.
#[derive(Debug, Clone)]
pub struct BroadcastOptions {
    capacity: usize,
    max_msg: usize,
    mode: u32,
    lossless: Option<SlowSubscriber>,
}

impl Default for BroadcastOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl BroadcastOptions {
    /// 1024 messages of up to 1024 bytes, mode 0600.
    pub fn new() -> Self {
        BroadcastOptions {
            capacity: 1024,
            max_msg: 1024,
            mode: 0o600,
            lossless: None,
        }
    }

    /// Makes the broadcast lossless: the writer never overwrites a message
    /// that a live subscriber has not read, waiting (bounded spin, then a
    /// shared futex) while the slowest is a whole ring behind, and doing
    /// about a live laggard what `policy` says. Subscribers that die are
    /// dropped from the gate as soon as they hold the writer back. The
    /// default is lossy: the writer never waits.
    pub fn lossless(&mut self, policy: SlowSubscriber) -> &mut Self {
        self.lossless = Some(policy);
        self
    }

    /// How many messages the ring keeps for slow subscribers; rounded up
    /// to a power of two.
    pub fn capacity(&mut self, capacity: usize) -> &mut Self {
        self.capacity = capacity;
        self
    }

    /// The largest message in bytes.
    pub fn max_message(&mut self, bytes: usize) -> &mut Self {
        self.max_msg = bytes;
        self
    }

    /// Permission bits of the object (default 0600).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }
}

/// The mapped broadcast, shared by its handles.
struct Inner {
    /// The mapping `base` points into, kept alive (and unmapped on drop).
    _region: Region,
    name: ShmName,
    /// The name again, shared by the cheap errors of `try_recv`.
    object: Arc<str>,
    layout: Layout,
    info: HeaderInfo,
    /// `region`'s first byte, writable (checked at open).
    base: *mut u8,
}

// SAFETY: `base` points into `region`, which Inner owns and which is Send +
// Sync; every access through it is atomic.
unsafe impl Send for Inner {}
// SAFETY: as for Send.
unsafe impl Sync for Inner {}

impl Inner {
    fn control(&self) -> &Control {
        // SAFETY: open checked that the mapping holds SLOTS_START bytes, so
        // the control block lies inside it; offset 64 of a page-aligned
        // mapping is aligned for Control; Control is atomics only, for
        // which a shared reference over memory other processes write is
        // sound; the mapping lives as long as `self`.
        unsafe { &*self.base.add(CONTROL_OFFSET).cast::<Control>() }
    }

    fn entry(&self, i: usize) -> &Entry {
        // Checked in release builds: the layout depends on it.
        assert!(i < MAX_SUBSCRIBERS, "subscriber entry out of range");
        // SAFETY: entry i lies in ENTRIES_OFFSET..SLOTS_START, inside the
        // mapping (checked in open), 64-byte aligned; Entry is atomics only.
        unsafe {
            &*self
                .base
                .add(ENTRIES_OFFSET + i * size_of::<Entry>())
                .cast::<Entry>()
        }
    }

    fn slot(&self, index: usize) -> *mut u8 {
        // `index` comes from `position & (capacity - 1)`; checked again
        // because it is cheap and the layout depends on it.
        assert!(
            (index as u64) < self.layout.capacity,
            "slot index out of range"
        );
        // SAFETY: SLOTS_START + capacity * slot_size == total <= mapped
        // length (checked in open), so the slot lies inside the mapping.
        unsafe {
            self.base
                .add(SLOTS_START + index * self.layout.slot_size as usize)
        }
    }

    fn slot_word(&self, index: usize, word: usize) -> &AtomicU64 {
        debug_assert!(word < 2);
        // SAFETY: the slot's first two words (SLOT_HEADER = 16 bytes),
        // 8-aligned because slots start at 8704 and are multiples of 64.
        unsafe { &*self.slot(index).add(8 * word).cast::<AtomicU64>() }
    }

    fn err(&self, kind: ErrorKind, op: &'static str, detail: impl Into<String>) -> Error {
        Error::new(kind, op, self.name.as_str(), detail)
    }

    /// The error for a `head` that the slots contradict (`ring::checked_head`).
    #[cold]
    fn head_corrupt(&self, op: &'static str) -> Error {
        self.err(
            ErrorKind::Corrupt,
            op,
            format!(
                "its head position {} is not one the writer left (the slot before it says otherwise): the broadcast is corrupt",
                ring::head(self)
            ),
        )
    }

    /// Frees the entries of dead subscribers (`endpoint_table::reap`);
    /// returns how many.
    fn reap(&self) -> usize {
        let reaper = self.reaper();
        endpoint_table::reap(self, reaper, process::identity_alive, |i, _| {
            settle(self.entry(i))
        })
    }

    /// Frees entry `i` if its subscriber is dead (reads /proc); returns
    /// whether this call did.
    fn reap_entry(&self, i: usize) -> bool {
        endpoint_table::reap_entry(self, i, self.reaper(), process::identity_alive, |i, _| {
            settle(self.entry(i))
        })
    }

    /// The settling word with which this process reaps.
    fn reaper(&self) -> u64 {
        endpoint_table::settling(process::identity_word(ProcessId::current()))
    }

    fn is_lossless(&self) -> bool {
        self.layout.policy.is_some()
    }

    /// Subscribers ring the gate bell each time their cursor crosses a
    /// multiple of this (a power of two): a writer asleep at the gate is
    /// woken once per batch of freed slots, not once per message, and a
    /// subscriber pays the bell's fence once per batch.
    fn gate_step(&self) -> u64 {
        (self.layout.capacity / 8).max(1)
    }
}

/// Zeroes an entry we hold, leaving or reaping (the table's settling
/// step; the table frees the entry after it).
fn settle(e: &Entry) {
    // Release: out of the gate first (pairs with the writer's Acquire load
    // of the state), so the writer never waits for the zero cursor below.
    e.state.store(0, Ordering::Release);
    // Relaxed: statistics, ordered before the table's Release store of 0.
    e.cursor.store(0, Ordering::Relaxed);
    e.missed.store(0, Ordering::Relaxed);
    e.joined_at.store(0, Ordering::Relaxed);
}

impl EndpointWords for Inner {
    fn entries(&self) -> usize {
        MAX_SUBSCRIBERS
    }
    fn occupant(&self, entry: usize) -> &AtomicU64 {
        &self.entry(entry).identity
    }
}

impl GateWords for Inner {
    fn lap(&self) -> u64 {
        self.layout.capacity
    }
    fn entries(&self) -> usize {
        MAX_SUBSCRIBERS
    }
    fn state(&self, entry: usize) -> &AtomicU64 {
        &self.entry(entry).state
    }
    fn cursor(&self, entry: usize) -> &AtomicU64 {
        &self.entry(entry).cursor
    }
}

impl RingWords for Inner {
    fn capacity(&self) -> u64 {
        self.layout.capacity
    }
    fn max_len(&self) -> u64 {
        self.layout.max_msg
    }
    fn head(&self) -> &AtomicU64 {
        &self.control().head
    }
    fn slot_seq(&self, index: usize) -> &AtomicU64 {
        self.slot_word(index, 0)
    }
    fn slot_len(&self, index: usize) -> &AtomicU64 {
        self.slot_word(index, 1)
    }
    fn slot_data(&self, index: usize) -> &[AtomicU64] {
        let words = self.layout.max_msg.div_ceil(8) as usize;
        // SAFETY: the slot holds SLOT_HEADER + 8 * words bytes (slot_size is
        // rounded up from that), 8-aligned; AtomicU64 has the size and
        // alignment of u64 and may be shared across processes; the slice
        // lives no longer than `self`'s mapping.
        unsafe {
            std::slice::from_raw_parts(self.slot(index).add(SLOT_HEADER).cast::<AtomicU64>(), words)
        }
    }
}

/// A broadcast: a named shared memory object that one publisher writes and
/// any number of subscribers, in any processes, read. Cheap to clone; see
/// the [module documentation](super) for the guarantees.
#[derive(Clone)]
pub struct Broadcast {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Broadcast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcast")
            .field("name", &self.inner.name)
            .field("capacity", &self.inner.layout.capacity)
            .field("max_message", &self.inner.layout.max_msg)
            .finish()
    }
}

impl Broadcast {
    /// Creates the broadcast `name`; fails if it exists.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a capacity or message size out of
    /// range; anything [`OpenOptions::open`](crate::OpenOptions::open)
    /// reports (exists, no space…).
    pub fn create(name: &str, options: &BroadcastOptions) -> Result<Broadcast> {
        Self::create_with(name, options, 0, 0)
    }

    /// Creates a broadcast whose messages are values of a type of
    /// `type_size` bytes aligned to `type_align` (0, 0: bytes), recorded
    /// for `open_with` to check; `type_size` overrides the maximum message.
    pub(super) fn create_with(
        name: &str,
        options: &BroadcastOptions,
        type_size: u32,
        type_align: u32,
    ) -> Result<Broadcast> {
        let capacity =
            shared_object::ring_capacity(options.capacity, MAX_CAPACITY, "broadcast", name)?;
        let max_msg = if type_size != 0 {
            u64::from(type_size)
        } else {
            options.max_msg as u64
        };
        let mut layout = Layout::typed(capacity, max_msg, type_size, type_align)
            .and_then(|l| check_policy(options.lossless).map(|()| l))
            .map_err(|why| Error::new(ErrorKind::InvalidArgument, "create", name, why))?;
        layout.policy = options.lossless;
        let (mode, evict_ns) = mode_words(layout.policy);
        let (name, region, info) = shared_object::create(
            name,
            Kind::Broadcast,
            layout.total,
            options.mode,
            |region| {
                // Relaxed: published by the Release store of READY that
                // follows. Everything else starts at zero: head 0, every
                // slot never written, no writer, no subscriber, an idle bell.
                let at = |field: usize| region.atomic_u64(CONTROL_OFFSET + field);
                at(offset_of!(Control, capacity))?.store(layout.capacity, Ordering::Relaxed);
                at(offset_of!(Control, max_msg))?.store(layout.max_msg, Ordering::Relaxed);
                at(offset_of!(Control, slot_size))?.store(layout.slot_size, Ordering::Relaxed);
                at(offset_of!(Control, slots_offset))?.store(SLOTS_START as u64, Ordering::Relaxed);
                let at32 = |field: usize| region.atomic_u32(CONTROL_OFFSET + field);
                at32(offset_of!(Control, type_size))?.store(layout.type_size, Ordering::Relaxed);
                at32(offset_of!(Control, type_align))?.store(layout.type_align, Ordering::Relaxed);
                at(offset_of!(Control, mode))?.store(mode, Ordering::Relaxed);
                at(offset_of!(Control, evict_after_ns))?.store(evict_ns, Ordering::Relaxed);
                Ok(())
            },
        )?;
        Self::from_region(name, region, info, layout)
    }

    fn from_region(
        name: ShmName,
        region: Region,
        info: HeaderInfo,
        layout: Layout,
    ) -> Result<Broadcast> {
        let base = region.as_mut_ptr()?;
        Ok(Broadcast {
            inner: Arc::new(Inner {
                _region: region,
                object: name.as_str().into(),
                name,
                layout,
                info,
                base,
            }),
        })
    }

    /// Opens the existing broadcast `name`, checking its header and layout.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`]; [`ErrorKind::InvalidArgument`] when it is
    /// another kind of shmkit object; [`ErrorKind::Corrupt`] when it is not
    /// a broadcast this build can read; [`ErrorKind::Disconnected`] when its
    /// creator died half-way (a stale object); [`ErrorKind::TimedOut`] when
    /// a live creator is still initialising after two seconds.
    pub fn open(name: &str) -> Result<Broadcast> {
        Self::open_with(name, None)
    }

    /// Opens `name`; with `typed` = `Some((size, align))`, fails unless it
    /// was created for messages of that type layout.
    pub(super) fn open_with(name: &str, typed: Option<(u32, u32)>) -> Result<Broadcast> {
        let (name, region, info) = shared_object::open(name, Kind::Broadcast, false)?;
        let bad = |why: String| shared_object::corrupt(&name, "open", why);
        if region.len() < SLOTS_START {
            return Err(bad(format!(
                "{} bytes cannot hold a broadcast's header",
                region.len()
            )));
        }
        // Relaxed: ordered after the creator's stores by wait_ready's
        // Acquire load of READY. Untrusted: checked right below.
        let word = |field: usize| region.load_u64(CONTROL_OFFSET + field, Ordering::Relaxed);
        let capacity = word(offset_of!(Control, capacity))?;
        let max_msg = word(offset_of!(Control, max_msg))?;
        let slot_size = word(offset_of!(Control, slot_size))?;
        let slots = word(offset_of!(Control, slots_offset))?;
        let word32 = |field: usize| region.load_u32(CONTROL_OFFSET + field, Ordering::Relaxed);
        let type_size = word32(offset_of!(Control, type_size))?;
        let type_align = word32(offset_of!(Control, type_align))?;
        let mode = word(offset_of!(Control, mode))?;
        let evict_ns = word(offset_of!(Control, evict_after_ns))?;
        let mut layout = Layout::typed(capacity, max_msg, type_size, type_align).map_err(bad)?;
        layout.policy = policy_of(mode, evict_ns).map_err(bad)?;
        shared_object::check_geometry(
            &name,
            [slot_size, slots, info.total_size],
            [layout.slot_size, SLOTS_START as u64, layout.total],
        )?;
        shared_object::check_type(&name, (type_size, type_align), typed, "carries", "values")?;
        Self::from_region(name, region, info, layout)
    }

    /// Opens `name`, creating it with `options` if it does not exist.
    pub fn open_or_create(name: &str, options: &BroadcastOptions) -> Result<Broadcast> {
        crate::shared_object::open_or_create(|| Self::create(name, options), || Self::open(name))
    }

    /// Becomes the broadcast's writer.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] with "broadcast has a live writer pid
    /// N" while another live process (or another handle in this one)
    /// writes. A writer that died is taken over: see
    /// [`Publisher::took_over_from`].
    pub fn publisher(&self) -> Result<Publisher> {
        let inner = &*self.inner;
        let c = inner.control();
        let claim = shared_object::claim_writer(&c.writer, &c.claims, "broadcast", &inner.name)?;
        let Some(position) = ring::recover(inner) else {
            shared_object::release_writer(&c.writer, claim);
            return Err(inner.head_corrupt("write to"));
        };
        // Subscribers waiting for a writer look again.
        c.bell.ring_and(&c.fd_waiters);
        Ok(Publisher {
            inner: self.inner.clone(),
            claim,
            position,
            // Lossless: look at the gate before the first message.
            limit: if inner.is_lossless() { 0 } else { u64::MAX },
        })
    }

    /// Joins as a subscriber that receives the messages published from now
    /// on. Reaps the entries of dead subscribers first.
    ///
    /// # Errors
    /// [`ErrorKind::LimitExceeded`] when [`MAX_SUBSCRIBERS`] live
    /// subscribers are connected already.
    pub fn subscribe(&self) -> Result<Subscriber> {
        self.join(false)
    }

    /// Joins as a subscriber that receives, first, the messages still in
    /// the ring (up to its capacity), then everything published after. On
    /// a lossless broadcast the writer waits for it from the moment it
    /// joined; messages of that history the writer overwrote while it was
    /// joining are reported as one [`Received::Lagged`] first.
    pub fn subscribe_from_oldest(&self) -> Result<Subscriber> {
        self.join(true)
    }

    fn join(&self, oldest: bool) -> Result<Subscriber> {
        let inner = &*self.inner;
        let c = inner.control();
        inner.reap();
        let me = endpoint_table::with_role(
            process::identity_word(ProcessId::current()),
            ROLE_SUBSCRIBER,
        );
        // The dead were reaped just now: a full table is a live one (a
        // takeover only finds those that died since).
        let joined = endpoint_table::join(
            inner,
            me,
            |word| !process::identity_alive(word),
            |i, _| settle(inner.entry(i)),
        );
        let Some(i) = joined else {
            return Err(inner.err(
                ErrorKind::LimitExceeded,
                "subscribe to",
                format!("{MAX_SUBSCRIBERS} live subscribers are connected, the most a broadcast has room for"),
            ));
        };
        let e = inner.entry(i);
        let member = Membership::new(i, me);
        let Some(head) = ring::checked_head(inner) else {
            member.leave(inner, |i, _| settle(inner.entry(i)));
            return Err(inner.head_corrupt("subscribe to"));
        };
        let mut cursor = if oldest {
            head.saturating_sub(inner.layout.capacity)
        } else {
            head
        };
        if inner.is_lossless() {
            // Into the gate without a window (the `gate` module): a
            // late joiner starts at the head as it is once the writer
            // must see it; one from the oldest keeps what is left.
            cursor = gate::join(inner, i, cursor, || {
                if oldest {
                    cursor
                } else {
                    ring::head(inner)
                }
            });
        } else {
            // Relaxed: a statistic for `stats`.
            e.cursor.store(cursor, Ordering::Relaxed);
        }
        // Relaxed: statistics for `stats`; only we write them now.
        e.joined_at.store(cursor, Ordering::Relaxed);
        e.missed.store(0, Ordering::Relaxed);
        c.joins.fetch_add(1, Ordering::Relaxed);
        Ok(Subscriber {
            inner: self.inner.clone(),
            member,
            cursor,
            received: 0,
            missed: 0,
            writer_seen: Default::default(),
            evicted: false,
        })
    }

    /// Frees the table entries of subscribers that died without leaving;
    /// returns how many. Joining does this too.
    pub fn reap(&self) -> usize {
        self.inner.reap()
    }

    /// The broadcast's name.
    pub fn name(&self) -> &ShmName {
        &self.inner.name
    }

    /// How many messages the ring keeps.
    pub fn capacity(&self) -> usize {
        self.inner.layout.capacity as usize
    }

    /// The largest message in bytes.
    pub fn max_message(&self) -> usize {
        self.inner.layout.max_msg as usize
    }

    /// `Some` for a lossless broadcast: what its writer does about a live
    /// subscriber a whole ring behind.
    pub fn lossless(&self) -> Option<SlowSubscriber> {
        self.inner.layout.policy
    }

    /// How many messages were ever published: as many as a subscriber
    /// can read (a message whose writer was killed just after publishing
    /// it counts, though the writer never counted it in the header).
    pub fn published(&self) -> u64 {
        ring::published(&*self.inner)
    }

    /// A snapshot of the broadcast's state, for people and monitoring.
    /// Dead subscribers are listed (not alive) until reaped.
    pub fn stats(&self) -> BroadcastStats {
        let inner = &*self.inner;
        let c = inner.control();
        let published = ring::published(inner);
        let mut subscribers = Vec::new();
        for i in 0..MAX_SUBSCRIBERS {
            let e = inner.entry(i);
            // Acquire: pairs with the joiner's Release CAS.
            let word = e.identity.load(Ordering::Acquire);
            // Free, being settled, or what broadcasts made before the
            // shared table left while settling (`1 << 22`: nobody's pid).
            if word == 0 || endpoint_table::is_settling(word) || process::identity_pid(word) == 0 {
                continue;
            }
            // Relaxed: statistics, possibly a moment old.
            let cursor = e.cursor.load(Ordering::Relaxed);
            let missed = e.missed.load(Ordering::Relaxed);
            let joined_at = e.joined_at.load(Ordering::Relaxed);
            let state = e.state.load(Ordering::Relaxed);
            let gating = inner.is_lossless() && state == gate::GATING;
            let lag = published.saturating_sub(cursor);
            subscribers.push(SubscriberInfo {
                pid: process::identity_pid(word),
                alive: process::identity_alive(word),
                cursor,
                lag,
                missed,
                received: cursor.saturating_sub(joined_at).saturating_sub(missed),
                gating,
                holds_writer: gating && lag >= inner.layout.capacity,
                evicted: inner.is_lossless() && state == EVICTED,
            });
        }
        BroadcastStats {
            capacity: inner.layout.capacity,
            max_message: inner.layout.max_msg,
            published,
            writer: shared_object::writer_of(&c.writer)
                .map(|(pid, alive)| WriterInfo { pid, alive }),
            // Relaxed: statistics.
            writer_claims: c.claims.load(Ordering::Relaxed),
            joins: c.joins.load(Ordering::Relaxed),
            subscribers,
            type_size: inner.layout.type_size,
            type_align: inner.layout.type_align,
            creator: inner.info.creator,
            creator_alive: inner.info.creator.is_alive(),
            created: inner.info.created,
            size: inner.layout.total,
            lossless: inner.layout.policy,
            // Relaxed: statistics.
            writer_waits: c.writer_waits.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            dropped_dead: c.dropped_dead.load(Ordering::Relaxed),
        }
    }

    /// Removes the broadcast's name (see [`crate::posix::unlink`]);
    /// connected processes keep using the memory they have mapped.
    pub fn unlink(&self) -> Result<()> {
        crate::posix::unlink(self.inner.name.as_str())
    }
}

/// One subscriber in [`BroadcastStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberInfo {
    /// Its process.
    pub pid: u32,
    /// Whether that process (pid and start time) still runs.
    pub alive: bool,
    /// The next position it will read.
    pub cursor: u64,
    /// Messages published that it has not read yet (more than the capacity:
    /// it will miss some).
    pub lag: u64,
    /// Messages it missed so far (overwritten before it read them).
    pub missed: u64,
    /// Messages it received so far.
    pub received: u64,
    /// Lossless mode: whether the writer waits for it (it is in the gate,
    /// not evicted).
    pub gating: bool,
    /// Lossless mode: whether it holds the writer back now (in the gate
    /// and a whole ring behind).
    pub holds_writer: bool,
    /// Lossless mode: whether the writer cut it off.
    pub evicted: bool,
}

/// A snapshot of a broadcast, from [`Broadcast::stats`].
#[derive(Debug, Clone)]
pub struct BroadcastStats {
    /// Messages the ring keeps.
    pub capacity: u64,
    /// Largest message in bytes.
    pub max_message: u64,
    /// Messages ever published.
    pub published: u64,
    /// The writer, if one holds the role (a dead one until taken over).
    pub writer: Option<WriterInfo>,
    /// How many times a writer claimed the broadcast.
    pub writer_claims: u64,
    /// How many subscribers ever joined.
    pub joins: u64,
    /// Connected subscribers (dead ones until reaped).
    pub subscribers: Vec<SubscriberInfo>,
    /// `size_of::<T>()` of a [`TypedBroadcast`](super::TypedBroadcast)'s
    /// values (every message has exactly this length), 0 for bytes.
    pub type_size: u32,
    /// `align_of::<T>()` of those values, 0 for bytes.
    pub type_align: u32,
    /// The process that created the broadcast.
    pub creator: ProcessId,
    /// Whether it still runs.
    pub creator_alive: bool,
    /// When the broadcast was created.
    pub created: SystemTime,
    /// Bytes of shared memory the broadcast uses.
    pub size: u64,
    /// `Some` for a lossless broadcast: what its writer does about a live
    /// subscriber a whole ring behind.
    pub lossless: Option<SlowSubscriber>,
    /// Lossless mode: how many times the writer found the gate closed and
    /// waited.
    pub writer_waits: u64,
    /// Lossless mode: subscribers the writer evicted.
    pub evictions: u64,
    /// Lossless mode: dead subscribers the writer dropped from the gate.
    pub dropped_dead: u64,
}

/// The one writer of a broadcast. Dropping it gives the role back.
pub struct Publisher {
    inner: Arc<Inner>,
    claim: Claim,
    position: u64,
    /// Lossless mode: positions below this are free to write without
    /// looking at the subscribers (the `gate` module); `u64::MAX` when
    /// lossy.
    limit: u64,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("broadcast", &self.inner.name)
            .field("position", &self.position)
            .finish()
    }
}

impl Publisher {
    /// Publishes `msg`; returns its position. On a lossy broadcast it never
    /// waits: when the ring is full the oldest message is overwritten. On a
    /// lossless one it waits while a live subscriber is a whole ring
    /// behind (see [`SlowSubscriber`]).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a message over the maximum, or,
    /// on a typed broadcast, of another length than its type.
    pub fn send(&mut self, msg: &[u8]) -> Result<u64> {
        let inner = &*self.inner;
        self.claim.check_here("send to", &inner.name, "publisher")?;
        let len = msg.len() as u64;
        if len > inner.layout.max_msg
            || (inner.layout.type_size != 0 && len != inner.layout.max_msg)
        {
            if len <= inner.layout.max_msg {
                return Err(inner.err(
                    ErrorKind::InvalidArgument,
                    "send to",
                    format!(
                        "a message of {len} bytes on a broadcast of {}-byte values",
                        inner.layout.type_size
                    ),
                ));
            }
            return Err(inner.err(
                ErrorKind::InvalidArgument,
                "send to",
                format!(
                    "a message of {} bytes exceeds the broadcast's maximum of {}",
                    msg.len(),
                    inner.layout.max_msg
                ),
            ));
        }
        let position = self.position;
        if position >= self.limit {
            self.wait_for_room()?;
        }
        let inner = &*self.inner;
        self.position = ring::send(inner, position, msg);
        let c = inner.control();
        c.bell.ring_and(&c.fd_waiters);
        Ok(position)
    }

    /// Lossless mode, at the limit: computes a new one, and while the
    /// slowest gating subscriber is a whole ring behind, waits (spin, then
    /// the gate bell), drops the dead subscribers that hold it back and
    /// evicts live ones as the policy says.
    #[cold]
    fn wait_for_room(&mut self) -> Result<()> {
        let inner = &*self.inner;
        let c = inner.control();
        let position = self.position;
        let lap = inner.layout.capacity;
        let mut since: Option<Instant> = None;
        loop {
            let limit = gate::limit(inner, position);
            if position < limit {
                self.limit = limit;
                return Ok(());
            }
            let now = Instant::now();
            let (start, first) = match since {
                Some(start) => (start, false),
                None => {
                    // Relaxed: a statistic.
                    c.writer_waits.fetch_add(1, Ordering::Relaxed);
                    since = Some(now);
                    (now, true)
                }
            };
            let evict_at = match inner.layout.policy {
                Some(SlowSubscriber::EvictAfter(d)) => start.checked_add(d),
                _ => None,
            };
            let mut until = now
                + if first {
                    GATE_SPIN_WINDOW
                } else {
                    GATE_LIVENESS_SLICE
                };
            if let Some(at) = evict_at {
                until = until.min(at.max(now));
            }
            // Subscribers ring the gate bell after storing their cursor.
            let room = || gate::slowest(inner, position).saturating_add(lap) > position;
            if c.gate_bell.wait_until(room, Some(until))? {
                continue;
            }
            // Still no room: drop those holding the writer back that are
            // dead (their identity, pid and start time, is gone).
            let dropped = (0..MAX_SUBSCRIBERS)
                .filter(|&i| gate::blocks(inner, i, position) && inner.reap_entry(i))
                .count() as u64;
            // Relaxed: a statistic.
            c.dropped_dead.fetch_add(dropped, Ordering::Relaxed);
            if dropped == 0 && evict_at.is_some_and(|at| Instant::now() >= at) {
                let evicted = (0..MAX_SUBSCRIBERS)
                    .filter(|&i| gate::blocks(inner, i, position) && gate::evict(inner, i))
                    .count() as u64;
                // Relaxed: a statistic.
                c.evictions.fetch_add(evicted, Ordering::Relaxed);
                // An evicted subscriber waiting for news looks again.
                c.bell.ring();
                since = None;
            }
        }
    }

    /// Begins a message in place and stops there, as a writer killed
    /// mid-message would: for crash tests. The message is never published;
    /// subscribers wait at its position until a writer (this one, or one
    /// that takes over) writes it.
    #[doc(hidden)]
    pub fn begin_and_abandon(&mut self, partial: &[u8]) {
        let inner = &*self.inner;
        if !self.claim.home.is_here() {
            return;
        }
        let pending = ring::begin(inner, self.position);
        let n = partial.len().min(inner.layout.max_msg as usize);
        ring::store(inner, pending, &partial[..n]);
    }

    /// The position the next message will have.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The pid of the dead writer this one took over from, if it did.
    pub fn took_over_from(&self) -> Option<u32> {
        self.claim.took_over_from
    }

    /// The largest message in bytes.
    pub fn max_message(&self) -> usize {
        self.inner.layout.max_msg as usize
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if !self.claim.home.is_here() {
            return; // a forked child: the role is the parent's
        }
        let c = self.inner.control();
        shared_object::release_writer(&c.writer, self.claim);
        // Subscribers waiting for messages learn that the writer left.
        c.bell.ring_and(&c.fd_waiters);
    }
}

/// What a subscriber got: a message, or the news that it missed some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received<T> {
    /// The message at `position` (positions count from 0 at creation).
    Message {
        /// Its position.
        position: u64,
        /// The message (or, from [`Subscriber::recv_into`], its length).
        value: T,
    },
    /// The subscriber fell more than the capacity behind: `missed`
    /// messages were skipped, overwritten before it read them or dropped
    /// to catch up. It resumes half a ring behind the newest message
    /// (capacity / 2 messages before the head; the newest for a capacity
    /// of 1 or 2), so that the writer cannot overwrite it again at once.
    Lagged {
        /// How many messages it missed, exactly.
        missed: u64,
    },
}

/// A subscriber: reads every message published after it joined, in order,
/// at its own pace. Dropping it leaves the table.
pub struct Subscriber {
    inner: Arc<Inner>,
    /// Its entry in the table, and the process that joined (a forked
    /// child must neither use the entry nor leave it).
    member: Membership,
    cursor: u64,
    received: u64,
    missed: u64,
    /// Whether this subscriber has seen a writer, in its own memory: the
    /// header's claim counter can be zeroed by a peer, which must not make
    /// "the writer is gone" wait for a first writer for ever.
    writer_seen: std::sync::atomic::AtomicBool,
    /// Lossless mode: the writer cut this subscriber off.
    evicted: bool,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("broadcast", &self.inner.name)
            .field("entry", &self.member.entry)
            .field("cursor", &self.cursor)
            .finish()
    }
}

/// Readiness descriptors (see [`crate::readiness`]).
impl Subscriber {
    /// A descriptor that becomes readable when a message may be there (or
    /// the writer left), once armed with
    /// [`arm_readiness`](Subscriber::arm_readiness); for event loops
    /// (`poll`, `epoll`, tokio, asyncio). It keeps the broadcast mapped.
    ///
    /// # Errors
    /// [`ErrorKind::LimitExceeded`] when all
    /// [`MAX_FD_WAITERS`](crate::readiness::MAX_FD_WAITERS) slots are held
    /// by live waiters; the OS reason if no socket can be made.
    pub fn readiness(&self) -> Result<Readiness> {
        let table: *const FdWaiters = &self.inner.control().fd_waiters;
        let keep: Arc<dyn Send + Sync> = self.inner.clone();
        // SAFETY: the table lies in the mapping Inner owns; `keep` holds it.
        unsafe { Readiness::register(table, keep, &self.inner.object) }
    }

    /// Whether a writer came and none is alive now (reads `/proc`, so not
    /// for a hot path): what a caller waiting on a readiness descriptor
    /// asks after a sleep that ended by its timeout, since
    /// [`try_recv`](Subscriber::try_recv) does not tell. If yes, one more
    /// `try_recv` gets what it published last.
    pub fn writer_left(&self) -> bool {
        self.writer_gone()
    }

    /// Declares that the caller is about to sleep on `readiness`:
    /// [`Arm::Ready`] if a message is there already (call
    /// [`try_recv`](Subscriber::try_recv), do not sleep), else
    /// [`Arm::Sleep`]. Poll with a timeout of at most
    /// [`readiness::SLICE`](crate::readiness::SLICE), then `try_recv`
    /// again (and after a timeout, see [`writer_left`](Subscriber::writer_left)).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a descriptor made for another
    /// object.
    pub fn arm_readiness(&self, readiness: &Readiness) -> Result<Arm> {
        let inner = &*self.inner;
        readiness.check(&inner.control().fd_waiters, inner.name.as_str())?;
        let cursor = self.cursor;
        Ok(readiness.arm(|| ring::ready(inner, cursor)))
    }
}

impl Subscriber {
    /// Receives the next message (or a lag report), waiting while there is
    /// none.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] once everything is read, a writer has
    /// been connected at some time, and none is now (it left or was
    /// killed); until the first writer comes, a subscriber waits. It is not
    /// final: a later call waits again and gets what a new writer sends.
    /// [`ErrorKind::Corrupt`] if a slot holds garbage (that position is
    /// counted missed and skipped).
    pub fn recv(&mut self) -> Result<Received<Vec<u8>>> {
        let mut buf = Vec::new();
        self.recv_vec(&mut buf, true, None)
    }

    /// Receives, waiting at most `timeout` ([`ErrorKind::TimedOut`]).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Received<Vec<u8>>> {
        let mut buf = Vec::new();
        self.recv_vec(&mut buf, true, Instant::now().checked_add(timeout))
    }

    /// Receives what is there now: [`ErrorKind::WouldBlock`] if nothing.
    pub fn try_recv(&mut self) -> Result<Received<Vec<u8>>> {
        let mut buf = Vec::new();
        self.recv_vec(&mut buf, false, None)
    }

    /// Receives what is there now into `buf` (cleared first), reusing its
    /// allocation, as [`try_recv`](Self::try_recv) does: no allocation, no
    /// clock read, [`ErrorKind::WouldBlock`] if nothing.
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<Received<usize>> {
        self.next(buf, false, None)
    }

    /// Receives into `buf` (cleared first), reusing its allocation; the
    /// message's value is its length. `None` waits for ever.
    pub fn recv_into(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Received<usize>> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        self.next(buf, true, deadline)
    }

    fn recv_vec(
        &mut self,
        buf: &mut Vec<u8>,
        block: bool,
        deadline: Option<Instant>,
    ) -> Result<Received<Vec<u8>>> {
        Ok(match self.next(buf, block, deadline)? {
            Received::Message { position, .. } => Received::Message {
                position,
                value: std::mem::take(buf),
            },
            Received::Lagged { missed } => Received::Lagged { missed },
        })
    }

    pub(super) fn next(
        &mut self,
        buf: &mut Vec<u8>,
        block: bool,
        deadline: Option<Instant>,
    ) -> Result<Received<usize>> {
        if !self.member.is_here() {
            return Err(process::forked_error(
                "receive from",
                self.inner.name.as_str(),
                "subscriber",
            ));
        }
        let mut writer_gone = false;
        let lossless = self.inner.is_lossless();
        if lossless {
            self.check_evicted()?;
        }
        loop {
            let inner = &*self.inner;
            match ring::try_recv(inner, self.cursor, buf) {
                Step::Message { len } => {
                    let position = self.cursor;
                    self.cursor += 1;
                    self.received += 1;
                    if lossless {
                        // The slot is free for the writer now.
                        gate::advance(inner, self.member.entry, self.cursor);
                        if self.cursor & (inner.gate_step() - 1) == 0 {
                            inner.control().gate_bell.ring();
                        }
                    } else {
                        // Relaxed: a statistic for `stats`.
                        inner
                            .entry(self.member.entry)
                            .cursor
                            .store(self.cursor, Ordering::Relaxed);
                    }
                    return Ok(Received::Message {
                        position,
                        value: len,
                    });
                }
                Step::Lagged { .. } if lossless && self.evicted_word() => {
                    self.evicted = true;
                    return Err(self.evicted_error());
                }
                Step::Lagged { resume } => {
                    let missed = resume - self.cursor;
                    self.skip_to(resume);
                    return Ok(Received::Lagged { missed });
                }
                Step::Corrupt { index, seq, len } => {
                    let position = self.cursor;
                    let err = inner.err(
                        ErrorKind::Corrupt,
                        "receive from",
                        format!(
                            "slot {index} (position {position}) holds sequence {seq:#x} and length {len}, which the protocol never writes: skipped"
                        ),
                    );
                    self.skip_to(position.saturating_add(1));
                    return Err(err);
                }
                Step::Empty => {}
            }
            if !block {
                return Err(Error::cheap(
                    ErrorKind::WouldBlock,
                    "receive from",
                    &inner.object,
                    "no new message",
                ));
            }
            if writer_gone {
                // Looked once more after seeing the writer gone: nothing.
                return Err(inner.err(
                    ErrorKind::Disconnected,
                    "receive from",
                    "every message is read and the writer is gone",
                ));
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(inner.err(ErrorKind::TimedOut, "receive from", "timed out"));
            }
            let slice_end = now + LIVENESS_SLICE;
            let until = match deadline {
                Some(d) if d < slice_end => d,
                _ => slice_end,
            };
            let c = inner.control();
            if lossless {
                // Run dry: a writer asleep at the gate may go on.
                c.gate_bell.ring();
            }
            // Acquire: pairs with the claim's Release CAS and the release
            // store in `Publisher::drop`.
            let writer = c.writer.load(Ordering::Acquire);
            let cursor = self.cursor;
            // Relaxed loads in the condition: a hint to stop waiting;
            // `try_recv` and `writer_gone` load with Acquire before acting.
            let woke = c.bell.wait_until(
                || ring::ready(inner, cursor) || c.writer.load(Ordering::Relaxed) != writer,
                Some(until),
            )?;
            // Acquire: as above (the claim's CAS, the release on drop).
            if !woke || c.writer.load(Ordering::Acquire) != writer {
                // A slice without news, or the writer changed: is it gone?
                writer_gone = self.writer_gone();
            }
        }
    }

    /// Whether a writer came and none is alive now (reads /proc).
    fn writer_gone(&self) -> bool {
        let c = self.inner.control();
        // Acquire: pairs with the claim's Release CAS and the release in
        // `Publisher::drop`: that writer's last message is visible after.
        let word = c.writer.load(Ordering::Acquire);
        // Relaxed: a counter; only whether a writer ever came.
        if word != 0 || c.claims.load(Ordering::Relaxed) != 0 {
            self.writer_seen.store(true, Ordering::Relaxed);
        }
        self.writer_seen.load(Ordering::Relaxed) && !(word != 0 && process::identity_alive(word))
    }

    fn skip_to(&mut self, resume: u64) {
        self.missed += resume - self.cursor;
        self.cursor = resume;
        let e = self.inner.entry(self.member.entry);
        // Relaxed: a statistic for `stats`.
        e.missed.store(self.missed, Ordering::Relaxed);
        // Release: as `gate::advance` (lossless mode waits for it).
        e.cursor.store(self.cursor, Ordering::Release);
    }

    /// Whether the writer has cut this subscriber off (lossless mode).
    fn evicted_word(&self) -> bool {
        // Relaxed: our own entry's word; the writer's CAS is the only other
        // store, and acting on it late only delays the error.
        self.inner
            .entry(self.member.entry)
            .state
            .load(Ordering::Relaxed)
            == EVICTED
    }

    fn check_evicted(&mut self) -> Result<()> {
        if self.evicted || self.evicted_word() {
            self.evicted = true;
            return Err(self.evicted_error());
        }
        Ok(())
    }

    #[cold]
    fn evicted_error(&self) -> Error {
        let after = match self.inner.layout.policy {
            Some(SlowSubscriber::EvictAfter(d)) => format!("{d:?}"),
            _ => "its limit".into(),
        };
        self.inner.err(
            ErrorKind::Disconnected,
            "receive from",
            format!(
                "evicted by the writer: this subscriber was a whole ring ({} messages) behind for more than {after}; subscribe again to read on",
                self.inner.layout.capacity
            ),
        )
    }

    /// Whether the writer of a lossless broadcast cut this subscriber off
    /// for lagging (every receive then fails with
    /// [`ErrorKind::Disconnected`]).
    pub fn evicted(&self) -> bool {
        self.evicted
    }

    /// The next position this subscriber will read.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Messages received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Messages missed so far (reported as [`Received::Lagged`]).
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// The broadcast this subscriber reads.
    pub fn name(&self) -> &ShmName {
        &self.inner.name
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // Only if it is still ours and this is the process that joined (a
        // forked child's entry is the parent's): `Membership::leave`.
        let inner = &*self.inner;
        if self.member.leave(inner, |i, _| settle(inner.entry(i))) && inner.is_lossless() {
            // A writer waiting for us goes on at once.
            inner.control().gate_bell.ring();
        }
    }
}
