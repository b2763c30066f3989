//! Channels over named shared memory: [`Channel`], [`Sender`], [`Receiver`],
//! their typed forms and zero-copy slots.

use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::ring::{self, Claim, Phase, RingError, RingWords, State};
use super::spsc::{self, RecvCursor, SendCursor, SpscError};
use crate::error::{Error, ErrorKind, Result};
use crate::layout::{self, Kind};
use crate::posix::{OpenOptions, PosixObject, ShmName};
use crate::process::{self, Home, ProcessId};
use crate::region::Region;
use crate::sync::Event;

/// How long a blocked endpoint sleeps before it looks for dead peers.
pub const LIVENESS_SLICE: Duration = Duration::from_millis(50);
/// Endpoints (senders and receivers together) one channel can have connected.
pub const MAX_ENDPOINTS: usize = 64;
/// The largest capacity, in messages.
pub const MAX_CAPACITY: usize = 1 << 24;
/// The largest message, in bytes.
pub const MAX_MESSAGE: usize = 1 << 30;
/// Polls of the condition a spinning endpoint makes before it reads the
/// clock (well under a microsecond of spinning).
const QUICK_POLLS: u32 = 32;

const ENDPOINT_SIZE: usize = 64;
/// Where a slot's payload starts: after its state word and length.
const SLOT_HEADER: usize = 16;
const MAX_TYPE_ALIGN: usize = SLOT_HEADER;
/// Channels for messages of at least this many bytes start every payload
/// on a cache line of its own (a 64-byte slot header): filling and checking
/// a large message in place then never splits a vector access across two
/// lines. Smaller messages keep the 16-byte header, which saves a line.
const LARGE_MESSAGE: u64 = 4096;
const LARGE_SLOT_HEADER: usize = 64;

// Parameters, after the common header (all written once by the creator).
const OFF_CAPACITY: usize = 64;
const OFF_MAX_MSG: usize = 72;
const OFF_SLOT_SIZE: usize = 80;
const OFF_SLOTS: usize = 88;
const OFF_TYPE_SIZE: usize = 96; // u32
const OFF_TYPE_ALIGN: usize = 100; // u32
                                   // Shared counters, touched only on join/leave.
const OFF_EPOCH: usize = 104; // u32: bumped on every join and leave
const OFF_PRODUCERS_EVER: usize = 108; // u32
const OFF_CONSUMERS_EVER: usize = 112; // u32
const OFF_FLAGS: usize = 116; // u32, written once by the creator: FLAG_*
const OFF_DEPARTED_SENT: usize = 120; // u64
const OFF_DEPARTED_RECEIVED: usize = 128; // u64
                                          // Hot words, each in its own 128-byte block (the adjacent-line prefetcher
                                          // pulls lines in pairs, so 64 bytes apart is not apart enough).
const OFF_ENQUEUE: usize = 256;
const OFF_DEQUEUE: usize = 384;
const OFF_DATA_EVENT: usize = 512;
const OFF_SPACE_EVENT: usize = 640;
const OFF_ENDPOINTS: usize = 768;
const SLOTS_START: usize = OFF_ENDPOINTS + MAX_ENDPOINTS * ENDPOINT_SIZE;

/// The channel runs the single-producer / single-consumer ring (`spsc`).
const FLAG_SPSC: u32 = 1;
/// Every flag this build knows; others make `open` refuse the channel.
const KNOWN_FLAGS: u32 = FLAG_SPSC;

// Roles in an endpoint's identity word (bits 22-23, see `identity_word`).
const ROLE_PRODUCER: u64 = 1;
const ROLE_CONSUMER: u64 = 2;
const ROLE_REAPING: u64 = 3;

/// What a channel is made of: fixed at creation, checked on every open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    capacity: u64,
    max_msg: u64,
    slot_size: u64,
    /// Offset of the payload in a slot (SLOT_HEADER or LARGE_SLOT_HEADER).
    payload_offset: u64,
    type_size: u32,
    type_align: u32,
    flags: u32,
    total: u64,
}

impl Layout {
    fn new(
        capacity: u64,
        max_msg: u64,
        type_size: u32,
        type_align: u32,
        flags: u32,
    ) -> std::result::Result<Self, String> {
        if flags & !KNOWN_FLAGS != 0 {
            return Err(format!(
                "flags {flags:#x} include ones this build does not know (a newer format?)"
            ));
        }
        if capacity == 0 || capacity > MAX_CAPACITY as u64 || !capacity.is_power_of_two() {
            return Err(format!(
                "capacity {capacity} is not a power of two from 1 to {MAX_CAPACITY}"
            ));
        }
        if max_msg == 0 || max_msg > MAX_MESSAGE as u64 {
            return Err(format!(
                "maximum message size {max_msg} is not from 1 to {MAX_MESSAGE} bytes"
            ));
        }
        if type_size != 0
            && (u64::from(type_size) != max_msg
                || type_align == 0
                || !type_align.is_power_of_two()
                || type_align as usize > MAX_TYPE_ALIGN)
        {
            return Err(format!(
                "message type of {type_size} bytes aligned to {type_align} does not fit (alignment up to {MAX_TYPE_ALIGN})"
            ));
        }
        // The multi-producer ring gives every slot its own cache lines: two
        // claimers never share one. The SPSC ring packs slots 16 bytes
        // apart (the payload's alignment): producer and consumer are far
        // apart but when the ring is nearly empty, and a 64-byte message
        // then costs 80 bytes of cache traffic, not 128.
        let large = max_msg >= LARGE_MESSAGE;
        let payload_offset = if large {
            LARGE_SLOT_HEADER
        } else {
            SLOT_HEADER
        } as u64;
        let stride = if flags & FLAG_SPSC != 0 && !large {
            16
        } else {
            64
        };
        let slot_size = (payload_offset + max_msg).next_multiple_of(stride);
        let total = capacity
            .checked_mul(slot_size)
            .and_then(|s| s.checked_add(SLOTS_START as u64))
            .filter(|&t| t <= isize::MAX as u64)
            .ok_or_else(|| format!("{capacity} slots of {slot_size} bytes do not fit in memory"))?;
        Ok(Layout {
            capacity,
            max_msg,
            slot_size,
            payload_offset,
            type_size,
            type_align,
            flags,
            total,
        })
    }

    fn spsc(&self) -> bool {
        self.flags & FLAG_SPSC != 0
    }
}

/// How to create a channel.
#[derive(Debug, Clone)]
pub struct ChannelOptions {
    capacity: usize,
    max_msg: usize,
    mode: u32,
    spsc: bool,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ChannelOptions {
    /// 1024 messages of up to 1024 bytes, mode 0600.
    pub fn new() -> Self {
        ChannelOptions {
            capacity: 1024,
            max_msg: 1024,
            mode: 0o600,
            spsc: false,
        }
    }

    /// How many messages the ring holds; rounded up to a power of two.
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

    /// One sender and one receiver at a time (default: any number).
    ///
    /// The channel then runs a single-producer / single-consumer ring: a
    /// message crosses in one cache-line transfer with no compare-and-swap,
    /// several times the streaming rate of the shared ring. A second live
    /// sender or receiver is refused ([`ErrorKind::LimitExceeded`]); a new
    /// one may take over from a dead one at any time. A receiver killed
    /// while holding a message leaves it to the next receiver (delivered at
    /// least once) instead of losing it.
    pub fn spsc(&mut self, on: bool) -> &mut Self {
        self.spsc = on;
        self
    }
}

// Slot owners are endpoint indexes + 1 and must fit the ring's owner field.
const _: () = assert!(MAX_ENDPOINTS <= ring::MAX_OWNERS);

/// The mapped channel, shared by its handles.
struct Inner {
    region: Region,
    name: ShmName,
    /// The name again, shared by the cheap errors of `try_` calls.
    object: Arc<str>,
    layout: Layout,
    /// `region`'s first byte, writable (checked at open).
    base: *mut u8,
    info: layout::HeaderInfo,
    /// Whether this process has seen a producer (resp. consumer) connected,
    /// in its own memory: the "someone came" counters in the header can be
    /// zeroed by a peer, which must not make "every sender is gone" wait
    /// for a first sender for ever.
    seen: [std::sync::atomic::AtomicBool; 2],
}

// SAFETY: `base` points into `region`, which Inner owns and which is Send +
// Sync; every access through it is atomic or to a slot this endpoint has
// claimed through the ring protocol.
unsafe impl Send for Inner {}
// SAFETY: as for Send.
unsafe impl Sync for Inner {}

impl Inner {
    /// The u64 atomic at a header offset.
    #[inline]
    fn word64(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off % 8 == 0 && off + 8 <= SLOTS_START);
        // SAFETY: `off` is one of this module's constant offsets, 8-aligned
        // and inside the header area that open checked the mapping holds;
        // the mapping lives as long as `self`; only atomics access it.
        unsafe { &*self.base.add(off).cast::<AtomicU64>() }
    }

    #[inline]
    fn word32(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off % 4 == 0 && off + 4 <= SLOTS_START);
        // SAFETY: as in `word64`, for a 4-aligned constant offset.
        unsafe { &*self.base.add(off).cast::<AtomicU32>() }
    }

    #[inline]
    fn event(&self, off: usize) -> &Event {
        // SAFETY: the two event offsets are 4-aligned, inside the header
        // area, and the Event is atomics only (all-zero is a valid event).
        unsafe { Event::from_ptr(self.base.add(off)) }
    }

    #[inline]
    fn data_event(&self) -> &Event {
        self.event(OFF_DATA_EVENT)
    }

    #[inline]
    fn space_event(&self) -> &Event {
        self.event(OFF_SPACE_EVENT)
    }

    #[inline]
    fn slot_ptr(&self, index: usize) -> *mut u8 {
        // `index` comes from `pos & (capacity - 1)` and is below capacity;
        // checked again here because it is cheap and the layout depends on it.
        assert!(
            (index as u64) < self.layout.capacity,
            "slot index out of range"
        );
        // SAFETY: SLOTS_START + capacity * slot_size <= total <= mapped length
        // (checked in `open`), so the slot lies in the mapping.
        unsafe {
            self.base
                .add(SLOTS_START + index * self.layout.slot_size as usize)
        }
    }

    #[inline]
    fn slot_len(&self, index: usize) -> &AtomicU64 {
        // SAFETY: the slot's second 8 bytes, inside the slot (SLOT_HEADER =
        // 16), 8-aligned because slots are 64-aligned.
        unsafe { &*self.slot_ptr(index).add(8).cast::<AtomicU64>() }
    }

    #[inline]
    fn payload(&self, index: usize) -> *mut u8 {
        // SAFETY: the payload follows the slot header and has max_msg bytes
        // inside the slot (slot_size >= payload_offset + max_msg, and
        // payload_offset is 16 or 64).
        unsafe {
            self.slot_ptr(index)
                .add(self.layout.payload_offset as usize)
        }
    }

    #[inline]
    fn endpoint_identity(&self, i: usize) -> &AtomicU64 {
        assert!(i < MAX_ENDPOINTS);
        // SAFETY: entry i of the endpoint table, 64-byte entries starting at
        // an aligned constant offset inside the header area.
        unsafe {
            &*self
                .base
                .add(OFF_ENDPOINTS + i * ENDPOINT_SIZE)
                .cast::<AtomicU64>()
        }
    }

    #[inline]
    fn endpoint_count(&self, i: usize) -> &AtomicU64 {
        assert!(i < MAX_ENDPOINTS);
        // SAFETY: as above, the entry's second word.
        unsafe {
            &*self
                .base
                .add(OFF_ENDPOINTS + i * ENDPOINT_SIZE + 8)
                .cast::<AtomicU64>()
        }
    }

    fn epoch(&self) -> u32 {
        // Acquire: pairs with the Release bump in join/leave.
        self.word32(OFF_EPOCH).load(Ordering::Acquire)
    }

    fn err(&self, kind: ErrorKind, op: &'static str, detail: impl Into<String>) -> Error {
        Error::new(kind, op, self.name.as_str(), detail)
    }

    /// The error for what the SPSC ring found (never `WouldBlock`).
    fn spsc_corrupt(&self, op: &'static str, e: SpscError) -> Error {
        match e {
            SpscError::CorruptSlot { index, word } => self.corrupt(op, index, word),
            SpscError::CorruptPositions { enqueue, dequeue } => self.err(
                ErrorKind::Corrupt,
                op,
                format!("its positions (written {enqueue}, read {dequeue}) are more than a ring apart: the channel is corrupt"),
            ),
            SpscError::WouldBlock => self.err(ErrorKind::WouldBlock, op, "not ready"),
        }
    }

    fn corrupt(&self, op: &'static str, index: usize, word: u64) -> Error {
        self.err(
            ErrorKind::Corrupt,
            op,
            format!("slot {index} holds state {word:#018x}, which the protocol never writes: the channel is corrupt"),
        )
    }

    /// Load-only peek: could a sender make progress now?
    ///
    /// Looks at the positions first and at the slot only when they say there
    /// may be room: a spinning sender then polls the consumers' position
    /// line, not the slot line a consumer is working in.
    fn may_send(&self) -> bool {
        let cap = self.layout.capacity;
        let pos = self.enqueue_pos().load(Ordering::Relaxed);
        let deq = self.dequeue_pos().load(Ordering::Relaxed);
        if pos.wrapping_sub(deq) >= cap && pos >= deq {
            return false;
        }
        let s = State::decode(
            self.slot_state((pos & (cap - 1)) as usize)
                .load(Ordering::Relaxed),
        );
        !(s.pos.wrapping_add(cap) == pos && s.phase != Phase::Empty)
    }

    /// Load-only peek: could a receiver make progress now?
    ///
    /// Polls the slot itself, unlike `may_send`: the receiver's wait is what
    /// a round trip's latency is made of, and the slot line is the first to
    /// change (polling the position first adds a line transfer, ~25% of a
    /// round trip measured here).
    fn may_recv(&self) -> bool {
        let cap = self.layout.capacity;
        let pos = self.dequeue_pos().load(Ordering::Relaxed);
        let s = State::decode(
            self.slot_state((pos & (cap - 1)) as usize)
                .load(Ordering::Relaxed),
        );
        let waiting_for_writer = s.pos == pos && matches!(s.phase, Phase::Empty | Phase::Writing);
        let waiting_for_reader = s.pos.wrapping_add(cap) == pos && s.phase == Phase::Reading;
        !(waiting_for_writer || waiting_for_reader)
    }

    /// Whether the endpoint that owns slots as `owner` is gone. Reads /proc:
    /// called only from slow paths.
    fn owner_dead(&self, owner: u8) -> bool {
        let i = usize::from(owner);
        if i == 0 || i > MAX_ENDPOINTS {
            return true; // nobody, or garbage: nobody will finish it
        }
        let word = self.endpoint_identity(i - 1).load(Ordering::Acquire);
        word == 0 || !identity_alive(word)
    }

    /// Joins the endpoint table with `role`, taking over a dead endpoint's
    /// entry (and recovering its slots) if no entry is free. Returns the
    /// entry and the identity word stored there.
    fn join(&self, role: u64) -> Result<(usize, u64)> {
        let mine = identity_word(ProcessId::current(), role);
        for pass in 0..2 {
            for i in 0..MAX_ENDPOINTS {
                let id = self.endpoint_identity(i);
                let word = id.load(Ordering::Acquire);
                let free = word == 0;
                if !(free || (pass == 1 && !identity_alive(word))) {
                    continue;
                }
                // AcqRel: Acquire pairs with the leaver's Release store of 0;
                // Release publishes our identity before any slot we claim.
                if id
                    .compare_exchange(word, mine, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                if !free {
                    self.retire(i, word);
                }
                self.endpoint_count(i).store(0, Ordering::Relaxed);
                let ever = if role == ROLE_PRODUCER {
                    OFF_PRODUCERS_EVER
                } else {
                    OFF_CONSUMERS_EVER
                };
                if self.layout.spsc() {
                    if let Some(other) = self.other_live(i, role) {
                        self.leave(i, mine, role);
                        let side = if role == ROLE_PRODUCER {
                            "sender"
                        } else {
                            "receiver"
                        };
                        return Err(self.err(
                            ErrorKind::LimitExceeded,
                            "connect to",
                            format!(
                                "it is a single-producer single-consumer channel and process {} is connected as its {side}",
                                process::identity_pid(other)
                            ),
                        ));
                    }
                }
                self.word32(ever).fetch_add(1, Ordering::Relaxed);
                self.announce();
                return Ok((i, mine));
            }
        }
        Err(self.err(
            ErrorKind::LimitExceeded,
            "connect to",
            format!(
                "{MAX_ENDPOINTS} live endpoints are connected, the most a channel has room for"
            ),
        ))
    }

    /// A live endpoint of `role` other than entry `mine`, reaping dead
    /// ones of that role on the way (their entries are then free).
    ///
    /// The caller claimed entry `mine` before: `spsc::rival`'s fence makes
    /// two concurrent joiners see each other's claims (Dekker).
    fn other_live(&self, mine: usize, role: u64) -> Option<u64> {
        self.reap();
        spsc::rival(
            MAX_ENDPOINTS,
            mine,
            // Acquire: pairs with the Release (AcqRel) claim in `join`.
            |j| self.endpoint_identity(j).load(Ordering::Acquire),
            |word| role_of(word) == role && identity_alive(word),
        )
    }

    /// Settles what the dead occupant `old` of entry `i` left: slots it was
    /// writing or reading, and its message count.
    fn retire(&self, i: usize, old: u64) {
        // The SPSC ring records no owners in its slots: a dead producer
        // published nothing half-way, a dead consumer's message stays.
        if !self.layout.spsc() {
            ring::recover_owner(self, (i + 1) as u8);
        }
        let count = self.endpoint_count(i).swap(0, Ordering::Relaxed);
        match role_of(old) {
            ROLE_PRODUCER => self
                .word64(OFF_DEPARTED_SENT)
                .fetch_add(count, Ordering::Relaxed),
            ROLE_CONSUMER => self
                .word64(OFF_DEPARTED_RECEIVED)
                .fetch_add(count, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// Leaves the table (a handle dropped): entry `i`, where the handle
    /// stored `word`. Only an entry that still holds `word` is cleared, by
    /// compare-and-swap: one a reaper took (judging us dead) is its own.
    fn leave(&self, i: usize, word: u64, role: u64) {
        let id = self.endpoint_identity(i);
        // Relaxed: our own join wrote it; the CAS below decides.
        if id.load(Ordering::Relaxed) != word {
            return;
        }
        // A reaper racing with us swaps the count too: it is added once.
        let count = self.endpoint_count(i).swap(0, Ordering::Relaxed);
        let departed = if role == ROLE_PRODUCER {
            OFF_DEPARTED_SENT
        } else {
            OFF_DEPARTED_RECEIVED
        };
        self.word64(departed).fetch_add(count, Ordering::Relaxed);
        // Release: pairs with the Acquire in `join`, so the next occupant
        // sees the count settled.
        if id
            .compare_exchange(word, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            self.announce();
        }
    }

    /// Tells every sleeper that the set of endpoints changed.
    fn announce(&self) {
        // Release: pairs with the Acquire in `epoch`.
        self.word32(OFF_EPOCH).fetch_add(1, Ordering::Release);
        self.data_event().notify_all();
        self.space_event().notify_all();
    }

    /// Takes over the entries of dead endpoints, recovering their slots.
    fn reap(&self) {
        let reaper = identity_word(ProcessId::current(), ROLE_REAPING);
        for i in 0..MAX_ENDPOINTS {
            let id = self.endpoint_identity(i);
            let word = id.load(Ordering::Acquire);
            if word == 0 || identity_alive(word) {
                continue;
            }
            if id
                .compare_exchange(word, reaper, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.retire(i, word);
                id.store(0, Ordering::Release);
                self.announce();
            }
        }
    }

    /// Whether endpoints of `role` have connected before and none is alive now.
    fn all_gone(&self, role: u64) -> bool {
        let ever = if role == ROLE_PRODUCER {
            OFF_PRODUCERS_EVER
        } else {
            OFF_CONSUMERS_EVER
        };
        let seen = &self.seen[usize::from(role == ROLE_PRODUCER)];
        // Relaxed: both are hints about the past; liveness is decided below.
        if self.word32(ever).load(Ordering::Relaxed) != 0 {
            seen.store(true, Ordering::Relaxed);
        }
        self.reap();
        let any_alive = (0..MAX_ENDPOINTS).any(|i| {
            let word = self.endpoint_identity(i).load(Ordering::Acquire);
            role_of(word) == role && identity_alive(word)
        });
        if any_alive {
            seen.store(true, Ordering::Relaxed);
            return false;
        }
        // Nobody alive: gone if anyone ever came (as far as this process
        // saw, or the header says); otherwise wait for the first.
        seen.load(Ordering::Relaxed)
    }
}

impl RingWords for Inner {
    #[inline]
    fn capacity(&self) -> u64 {
        self.layout.capacity
    }
    #[inline]
    fn enqueue_pos(&self) -> &AtomicU64 {
        self.word64(OFF_ENQUEUE)
    }
    #[inline]
    fn dequeue_pos(&self) -> &AtomicU64 {
        self.word64(OFF_DEQUEUE)
    }
    #[inline]
    fn slot_state(&self, index: usize) -> &AtomicU64 {
        // SAFETY: the slot's first 8 bytes, 64-aligned (see slot_ptr).
        unsafe { &*self.slot_ptr(index).cast::<AtomicU64>() }
    }
}

/// An endpoint's identity word: the process (see
/// [`process::identity_word`]) with its role in the two spare bits 22–23.
fn identity_word(p: ProcessId, role: u64) -> u64 {
    process::identity_word(p) | (role << 22)
}

fn role_of(word: u64) -> u64 {
    (word >> 22) & 0b11
}

/// Whether the process an identity word names is still running.
fn identity_alive(word: u64) -> bool {
    process::identity_alive(word)
}

/// A channel: a named shared memory object that senders and receivers in
/// any number of processes connect to. Cheap to clone.
#[derive(Clone)]
pub struct Channel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.inner.name)
            .field("capacity", &self.inner.layout.capacity)
            .field("max_message", &self.inner.layout.max_msg)
            .finish()
    }
}

impl Channel {
    /// Creates the channel `name` for byte messages; fails if it exists.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a capacity or message size out of
    /// range; anything [`OpenOptions::open`] reports (exists, no space…).
    pub fn create(name: &str, options: &ChannelOptions) -> Result<Channel> {
        Self::create_with(name, options, 0, 0)
    }

    fn create_with(
        name: &str,
        options: &ChannelOptions,
        type_size: u32,
        type_align: u32,
    ) -> Result<Channel> {
        let capacity =
            crate::shared_object::ring_capacity(options.capacity, MAX_CAPACITY, "channel", name)?;
        let flags = if options.spsc { FLAG_SPSC } else { 0 };
        let layout = Layout::new(
            capacity,
            options.max_msg as u64,
            type_size,
            type_align,
            flags,
        )
        .map_err(|why| Error::new(ErrorKind::InvalidArgument, "create", name, why))?;
        let obj = OpenOptions::new()
            .create_new(true)
            .size(layout.total)
            .mode(options.mode)
            .open(name)?;
        let made = (|| {
            let region = obj.map()?;
            layout::write_initialising(&region, Kind::Channel, layout.total)?;
            let base = region.as_mut_ptr()?;
            region
                .atomic_u64(OFF_CAPACITY)?
                .store(layout.capacity, Ordering::Relaxed);
            region
                .atomic_u64(OFF_MAX_MSG)?
                .store(layout.max_msg, Ordering::Relaxed);
            region
                .atomic_u64(OFF_SLOT_SIZE)?
                .store(layout.slot_size, Ordering::Relaxed);
            region
                .atomic_u64(OFF_SLOTS)?
                .store(SLOTS_START as u64, Ordering::Relaxed);
            region
                .atomic_u32(OFF_TYPE_SIZE)?
                .store(type_size, Ordering::Relaxed);
            region
                .atomic_u32(OFF_TYPE_ALIGN)?
                .store(type_align, Ordering::Relaxed);
            region
                .atomic_u32(OFF_FLAGS)?
                .store(layout.flags, Ordering::Relaxed);
            let info = layout::HeaderInfo {
                kind: Kind::Channel,
                total_size: layout.total,
                creator: ProcessId::current(),
                created: SystemTime::now(),
            };
            let inner = Inner {
                name: obj.name().clone(),
                object: obj.name().as_str().into(),
                layout,
                base,
                info,
                region,
                seen: Default::default(),
            };
            if layout.spsc() {
                spsc::init(&inner);
            } else {
                ring::init(&inner);
            }
            layout::publish_ready(&inner.region)?;
            Ok(inner)
        })();
        match made {
            Ok(inner) => Ok(Channel {
                inner: Arc::new(inner),
            }),
            Err(e) => {
                let _ = obj.unlink();
                Err(e)
            }
        }
    }

    /// Opens the existing channel `name`, checking its header and layout.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`]; [`ErrorKind::Corrupt`] when the object is
    /// not a channel this build can read; [`ErrorKind::Disconnected`] when
    /// its creator died half-way (a stale object); [`ErrorKind::TimedOut`]
    /// when a live creator is still initialising after two seconds.
    pub fn open(name: &str) -> Result<Channel> {
        Self::open_with(name, None)
    }

    fn open_with(name: &str, typed: Option<(u32, u32)>) -> Result<Channel> {
        let obj = PosixObject::open(name)?;
        let (region, info) = crate::shared_object::map_ready(&obj, Kind::Channel)?;
        let bad = |why: String| Error::new(ErrorKind::Corrupt, "open", obj.name().as_str(), why);
        if region.len() < SLOTS_START {
            return Err(bad(format!(
                "{} bytes cannot hold a channel's header",
                region.len()
            )));
        }
        let capacity = region.load_u64(OFF_CAPACITY, Ordering::Relaxed)?;
        let max_msg = region.load_u64(OFF_MAX_MSG, Ordering::Relaxed)?;
        let type_size = region.load_u32(OFF_TYPE_SIZE, Ordering::Relaxed)?;
        let type_align = region.load_u32(OFF_TYPE_ALIGN, Ordering::Relaxed)?;
        let flags = region.load_u32(OFF_FLAGS, Ordering::Relaxed)?;
        let layout = Layout::new(capacity, max_msg, type_size, type_align, flags).map_err(bad)?;
        let slot_size = region.load_u64(OFF_SLOT_SIZE, Ordering::Relaxed)?;
        let slots = region.load_u64(OFF_SLOTS, Ordering::Relaxed)?;
        if slot_size != layout.slot_size
            || slots != SLOTS_START as u64
            || info.total_size != layout.total
        {
            return Err(bad(format!(
                "its layout (slot size {slot_size}, slots at {slots}, {} bytes) does not match its parameters",
                info.total_size
            )));
        }
        if let Some((size, align)) = typed {
            if (type_size, type_align) != (size, align) {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "open",
                    obj.name().as_str(),
                    format!(
                        "it carries messages of {type_size} bytes aligned to {type_align}, not {size} aligned to {align}"
                    ),
                ));
            }
        }
        let base = region.as_mut_ptr()?;
        Ok(Channel {
            inner: Arc::new(Inner {
                name: obj.name().clone(),
                object: obj.name().as_str().into(),
                layout,
                base,
                info,
                region,
                seen: Default::default(),
            }),
        })
    }

    /// Opens `name`, creating it with `options` if it does not exist.
    pub fn open_or_create(name: &str, options: &ChannelOptions) -> Result<Channel> {
        match Self::create(name, options) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Self::open(name),
            other => other,
        }
    }

    /// Connects a sender (a producer endpoint).
    ///
    /// # Errors
    /// [`ErrorKind::LimitExceeded`] when [`MAX_ENDPOINTS`] live endpoints
    /// are connected already.
    pub fn sender(&self) -> Result<Sender> {
        let inner = &*self.inner;
        let (entry, identity) = inner.join(ROLE_PRODUCER)?;
        let spsc = if inner.layout.spsc() {
            // Joined as the only live sender: nobody else moves the tail.
            match spsc::resume_send(inner) {
                Ok(cursor) => Some(cursor),
                Err(e) => {
                    inner.leave(entry, identity, ROLE_PRODUCER);
                    return Err(inner.spsc_corrupt("connect to", e));
                }
            }
        } else {
            None
        };
        Ok(Sender {
            inner: self.inner.clone(),
            entry,
            identity,
            home: Home::here(),
            owner: (entry + 1) as u8,
            count: 0,
            wait: WaitStrategy::default(),
            spsc,
        })
    }

    /// Connects a receiver (a consumer endpoint).
    pub fn receiver(&self) -> Result<Receiver> {
        let inner = &*self.inner;
        let (entry, identity) = inner.join(ROLE_CONSUMER)?;
        let spsc = if inner.layout.spsc() {
            match spsc::resume_recv(inner) {
                Ok(cursor) => Some(cursor),
                Err(e) => {
                    inner.leave(entry, identity, ROLE_CONSUMER);
                    return Err(inner.spsc_corrupt("connect to", e));
                }
            }
        } else {
            None
        };
        Ok(Receiver {
            inner: self.inner.clone(),
            entry,
            identity,
            home: Home::here(),
            owner: (entry + 1) as u8,
            count: 0,
            wait: WaitStrategy::default(),
            spsc,
            last_corrupt: None,
        })
    }

    /// Whether the channel takes one sender and one receiver at a time
    /// (see [`ChannelOptions::spsc`]).
    pub fn is_spsc(&self) -> bool {
        self.inner.layout.spsc()
    }

    /// The channel's name.
    pub fn name(&self) -> &ShmName {
        &self.inner.name
    }

    /// How many messages the ring holds.
    pub fn capacity(&self) -> usize {
        self.inner.layout.capacity as usize
    }

    /// The largest message in bytes.
    pub fn max_message(&self) -> usize {
        self.inner.layout.max_msg as usize
    }

    /// A snapshot of the channel's state, for people and monitoring.
    pub fn stats(&self) -> ChannelStats {
        let inner = &*self.inner;
        let mut endpoints = Vec::new();
        let mut sent = inner.word64(OFF_DEPARTED_SENT).load(Ordering::Relaxed);
        let mut received = inner.word64(OFF_DEPARTED_RECEIVED).load(Ordering::Relaxed);
        for i in 0..MAX_ENDPOINTS {
            let word = inner.endpoint_identity(i).load(Ordering::Acquire);
            let role = match role_of(word) {
                _ if word == 0 => continue,
                ROLE_PRODUCER => Role::Sender,
                ROLE_CONSUMER => Role::Receiver,
                _ => continue,
            };
            let messages = inner.endpoint_count(i).load(Ordering::Relaxed);
            // Saturating: the counts are words anyone can write.
            match role {
                Role::Sender => sent = sent.saturating_add(messages),
                Role::Receiver => received = received.saturating_add(messages),
            }
            endpoints.push(EndpointInfo {
                pid: process::identity_pid(word),
                role,
                alive: identity_alive(word),
                messages,
            });
        }
        ChannelStats {
            capacity: inner.layout.capacity,
            max_message: inner.layout.max_msg,
            type_size: inner.layout.type_size,
            spsc: inner.layout.spsc(),
            depth: ring::depth(inner),
            sent,
            received,
            endpoints,
            creator: inner.info.creator,
            creator_alive: inner.info.creator.is_alive(),
            created: inner.info.created,
            size: inner.layout.total,
        }
    }

    /// Removes the channel's name (see [`crate::posix::unlink`]); connected
    /// endpoints keep working on the memory they have mapped.
    pub fn unlink(&self) -> Result<()> {
        crate::posix::unlink(self.inner.name.as_str())
    }
}

/// Which side of a channel an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends messages.
    Sender,
    /// Receives messages.
    Receiver,
}

/// One connected endpoint in [`ChannelStats`].
#[derive(Debug, Clone)]
pub struct EndpointInfo {
    /// Its process.
    pub pid: u32,
    /// Sender or receiver.
    pub role: Role,
    /// Whether its process (pid and start time) is still running.
    pub alive: bool,
    /// Messages it sent or received since it connected.
    pub messages: u64,
}

/// A snapshot of a channel, from [`Channel::stats`].
#[derive(Debug, Clone)]
pub struct ChannelStats {
    /// Messages the ring holds.
    pub capacity: u64,
    /// Largest message in bytes.
    pub max_message: u64,
    /// Size of the message type for typed channels, 0 for byte channels.
    pub type_size: u32,
    /// One sender and one receiver at a time ([`ChannelOptions::spsc`]).
    pub spsc: bool,
    /// Messages sent and not yet received (approximate while others run).
    pub depth: u64,
    /// Messages sent, by endpoints connected now and before.
    pub sent: u64,
    /// Messages received, by endpoints connected now and before.
    pub received: u64,
    /// Connected endpoints (dead ones until someone reaps them).
    pub endpoints: Vec<EndpointInfo>,
    /// The process that created the channel.
    pub creator: ProcessId,
    /// Whether it still runs.
    pub creator_alive: bool,
    /// When the channel was created.
    pub created: SystemTime,
    /// Bytes of shared memory the channel uses.
    pub size: u64,
}

/// Waits on `event` until `ready()` or the end of one liveness slice (or the
/// deadline). Returns Ok(true) if `ready` held, Ok(false) when the slice
/// ended, and a TimedOut error when the deadline passed.
fn wait_slice(
    inner: &Inner,
    event: &Event,
    op: &'static str,
    deadline: Option<Instant>,
    spin: bool,
    ready: impl Fn() -> bool,
) -> Result<bool> {
    if spin {
        // A partner that answers within a few hundred nanoseconds (a round
        // trip's other half) is caught here, before the clock reads and the
        // slice bookkeeping below, which cost about as much as the wait.
        for _ in 0..QUICK_POLLS {
            std::hint::spin_loop();
            if ready() {
                return Ok(true);
            }
        }
    }
    let now = Instant::now();
    if deadline.is_some_and(|d| now >= d) {
        return Err(inner.err(ErrorKind::TimedOut, op, "timed out"));
    }
    let slice_end = now + LIVENESS_SLICE;
    let until = match deadline {
        Some(d) if d < slice_end => d,
        _ => slice_end,
    };
    let epoch = inner.epoch();
    let cond = || ready() || inner.epoch() != epoch;
    if spin {
        event.wait_until(cond, Some(until))
    } else {
        event.wait_until_blocking(cond, Some(until))
    }
}

/// How a blocked sender or receiver waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitStrategy {
    /// Spin for a bounded, adaptive time, then sleep on a shared futex (the
    /// default): a partner that keeps up costs no syscall.
    #[default]
    SpinThenSleep,
    /// Sleep on the futex at once: no CPU spent spinning, a wake-up (tens of
    /// µs) for every wait.
    Sleep,
}

/// The sending end of a channel, connected as one endpoint.
///
/// Dropping it disconnects. Not `Clone`: each sender is one endpoint; make
/// another with [`Channel::sender`].
pub struct Sender {
    inner: Arc<Inner>,
    entry: usize,
    /// The identity word this sender stored in its entry.
    identity: u64,
    /// The process that made it (a forked child must not use it).
    home: Home,
    owner: u8,
    count: u64,
    wait: WaitStrategy,
    /// The producer's position in an SPSC channel; None in a shared one.
    spsc: Option<SendCursor>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("channel", &self.inner.name)
            .field("endpoint", &self.entry)
            .finish()
    }
}

impl Sender {
    /// Sends `msg`, waiting while the channel is full.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a message over the maximum;
    /// [`ErrorKind::Disconnected`] when the ring is full and every receiver
    /// that connected is gone; [`ErrorKind::Corrupt`] if the shared state
    /// is damaged.
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_until(msg, true, None)
    }

    /// Sends `msg` if there is room now: [`ErrorKind::WouldBlock`] if not.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_until(msg, false, None)
    }

    /// Sends `msg`, waiting at most `timeout` for room ([`ErrorKind::TimedOut`]).
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_until(msg, true, Instant::now().checked_add(timeout))
    }

    /// Sends `msg`, waiting until `deadline` at most ([`ErrorKind::TimedOut`]).
    /// Reads no clock when there is room.
    pub fn send_deadline(&mut self, msg: &[u8], deadline: Instant) -> Result<()> {
        self.send_until(msg, true, Some(deadline))
    }

    fn send_until(&mut self, msg: &[u8], block: bool, deadline: Option<Instant>) -> Result<()> {
        if msg.len() as u64 > self.inner.layout.max_msg {
            return Err(self.too_long(msg.len()));
        }
        let claim = self.claim(block, deadline)?;
        // SAFETY: we own the claimed slot (state WRITING, owner = us) until
        // commit; its payload holds max_msg >= msg.len() bytes (checked
        // above); `msg` is our own memory, so the ranges cannot overlap.
        unsafe {
            ptr::copy_nonoverlapping(msg.as_ptr(), self.inner.payload(claim.index), msg.len())
        };
        self.commit(claim, msg.len())
    }

    /// Claims a slot to write in place: fill it through [`SendSlot`], then
    /// [`commit`](SendSlot::commit). Dropping it uncommitted sends nothing.
    pub fn reserve(&mut self) -> Result<SendSlot<'_>> {
        let claim = self.claim(true, None)?;
        Ok(SendSlot {
            sender: self,
            claim: Some(claim),
        })
    }

    /// Like [`reserve`](Sender::reserve), waiting until `deadline` at most.
    pub fn reserve_deadline(&mut self, deadline: Instant) -> Result<SendSlot<'_>> {
        let claim = self.claim(true, Some(deadline))?;
        Ok(SendSlot {
            sender: self,
            claim: Some(claim),
        })
    }

    /// Like [`reserve`](Sender::reserve), but [`ErrorKind::WouldBlock`] if full.
    pub fn try_reserve(&mut self) -> Result<SendSlot<'_>> {
        let claim = self.claim(false, None)?;
        Ok(SendSlot {
            sender: self,
            claim: Some(claim),
        })
    }

    #[inline]
    fn commit(&mut self, claim: Claim, len: usize) -> Result<()> {
        let published = self.commit_quiet(claim, len);
        self.inner.data_event().notify_one();
        if published {
            Ok(())
        } else {
            Err(self.taken_back())
        }
    }

    /// Publishes a claimed slot without waking anyone: the caller notifies
    /// once for a whole batch. False if the slot was taken back before (a
    /// peer judged this endpoint dead): nothing was sent.
    #[inline(always)]
    fn commit_quiet(&mut self, claim: Claim, len: usize) -> bool {
        let inner = &*self.inner;
        // Relaxed: ordered before the reader by commit_send's Release.
        inner
            .slot_len(claim.index)
            .store(len as u64, Ordering::Relaxed);
        match self.spsc.as_mut() {
            Some(cursor) => spsc::commit_send(inner, cursor),
            None => {
                if !ring::commit_send(inner, claim, self.owner) {
                    return false;
                }
            }
        }
        self.count += 1;
        // Relaxed: a statistic; only this endpoint writes it.
        inner
            .endpoint_count(self.entry)
            .store(self.count, Ordering::Relaxed);
        true
    }

    #[cold]
    fn taken_back(&self) -> Error {
        self.inner.err(
            ErrorKind::Disconnected,
            "send to",
            "the slot was taken back before the message was published (a peer took this sender for dead): not sent",
        )
    }

    #[cold]
    fn forked(&self) -> Error {
        process::forked_error("send to", self.inner.name.as_str(), "sender")
    }

    /// Sends every message of `msgs` in order, waiting while the channel is
    /// full, and wakes receivers once per batch (and before each wait)
    /// instead of once per message: the cheaper way to stream.
    ///
    /// # Errors
    /// As [`send`](Sender::send); messages before the failing one were sent.
    pub fn send_batch<'m>(&mut self, msgs: impl IntoIterator<Item = &'m [u8]>) -> Result<()> {
        if !self.home.is_here() {
            return Err(self.forked());
        }
        let max = self.inner.layout.max_msg;
        let mut unannounced = false;
        let result = (|| {
            for msg in msgs {
                if msg.len() as u64 > max {
                    return Err(self.too_long(msg.len()));
                }
                let claim = match self.claim_now(false) {
                    Ok(Some(claim)) => claim,
                    Err(e) => return Err(self.inner.spsc_corrupt("send to", e)),
                    Ok(None) => {
                        if unannounced {
                            self.inner.data_event().notify_one();
                            unannounced = false;
                        }
                        self.claim(true, None)?
                    }
                };
                // SAFETY: as in `send_until`: the claimed slot is ours and
                // holds max_msg >= msg.len() bytes.
                unsafe {
                    ptr::copy_nonoverlapping(
                        msg.as_ptr(),
                        self.inner.payload(claim.index),
                        msg.len(),
                    )
                };
                let published = self.commit_quiet(claim, msg.len());
                unannounced = true;
                if !published {
                    return Err(self.taken_back());
                }
            }
            Ok(())
        })();
        if unannounced {
            self.inner.data_event().notify_all();
        }
        result
    }

    fn too_long(&self, len: usize) -> Error {
        self.inner.err(
            ErrorKind::InvalidArgument,
            "send to",
            format!(
                "a message of {len} bytes exceeds the channel's maximum of {}",
                self.inner.layout.max_msg
            ),
        )
    }

    /// One attempt at a free slot: None when the ring is full.
    ///
    /// The error is the small `SpscError` (turned into an [`Error`] by the
    /// caller, on its cold path): a `Result<Option<Claim>, Error>` here went
    /// through memory on every message, with a store-forwarding stall.
    #[inline(always)]
    fn claim_now(&mut self, check_dead: bool) -> std::result::Result<Option<Claim>, SpscError> {
        let inner = &*self.inner;
        if let Some(cursor) = self.spsc.as_mut() {
            return match spsc::claim_send(inner, cursor) {
                Ok(index) => Ok(Some(Claim {
                    pos: cursor.tail,
                    index,
                })),
                Err(SpscError::WouldBlock) => Ok(None),
                Err(e) => Err(e),
            };
        }
        match ring::claim_send(inner, self.owner, check_dead, &mut |o| inner.owner_dead(o)) {
            Ok(claim) => Ok(Some(claim)),
            Err(RingError::Corrupt { index, word }) => Err(SpscError::CorruptSlot { index, word }),
            Err(RingError::WouldBlock) => Ok(None),
        }
    }

    #[inline]
    fn claim(&mut self, block: bool, deadline: Option<Instant>) -> Result<Claim> {
        if !self.home.is_here() {
            return Err(self.forked());
        }
        let mut check_dead = false;
        loop {
            match self.claim_now(check_dead) {
                Ok(Some(claim)) => return Ok(claim),
                Ok(None) => {}
                Err(e) => return Err(self.inner.spsc_corrupt("send to", e)),
            }
            let inner = &*self.inner;
            if !block {
                return Err(Error::cheap(
                    ErrorKind::WouldBlock,
                    "send to",
                    &inner.object,
                    "the channel is full",
                ));
            }
            if check_dead && inner.all_gone(ROLE_CONSUMER) {
                return Err(inner.err(
                    ErrorKind::Disconnected,
                    "send to",
                    "the channel is full and every receiver is gone",
                ));
            }
            let spin = self.wait == WaitStrategy::SpinThenSleep;
            let tail = self.spsc.map(|c| c.tail);
            let progressed = wait_slice(
                inner,
                inner.space_event(),
                "send to",
                deadline,
                spin,
                || match tail {
                    Some(tail) => spsc::may_send(inner, tail),
                    None => inner.may_send(),
                },
            )?;
            // A slice without progress: next time, ask whether whoever
            // blocks us is dead.
            check_dead = !progressed;
        }
    }

    /// Chooses how this sender waits for room (default: spin, then sleep).
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.wait = wait;
    }

    /// The channel this sender belongs to.
    pub fn name(&self) -> &ShmName {
        &self.inner.name
    }

    /// The largest message in bytes.
    pub fn max_message(&self) -> usize {
        self.inner.layout.max_msg as usize
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // In a forked child the entry is the parent's: leave it alone.
        if self.home.is_here() {
            self.inner.leave(self.entry, self.identity, ROLE_PRODUCER);
        }
    }
}

/// A slot claimed by [`Sender::reserve`]: write the message in place, then commit.
pub struct SendSlot<'a> {
    sender: &'a mut Sender,
    claim: Option<Claim>,
}

impl std::fmt::Debug for SendSlot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendSlot")
            .field("channel", &self.sender.inner.name)
            .field("position", &self.claim.map(|c| c.pos))
            .finish()
    }
}

impl SendSlot<'_> {
    /// Bytes the slot can hold (the channel's maximum message).
    pub fn capacity(&self) -> usize {
        self.sender.inner.layout.max_msg as usize
    }

    /// Copies `data` into the slot at `offset`.
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        let claim = self.claim.expect("a live slot has its claim");
        if offset
            .checked_add(data.len())
            .is_none_or(|end| end > self.capacity())
        {
            return Err(self.sender.inner.err(
                ErrorKind::InvalidArgument,
                "write to",
                format!(
                    "{} bytes at offset {offset} exceed the slot's {} bytes",
                    data.len(),
                    self.capacity()
                ),
            ));
        }
        // SAFETY: the slot is ours until commit or drop; the range is inside
        // its payload (checked above); `data` is not shared memory.
        unsafe {
            ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.sender.inner.payload(claim.index).add(offset),
                data.len(),
            )
        };
        Ok(())
    }

    /// The payload's first byte, [`capacity`](SendSlot::capacity) bytes long
    /// and 16-byte aligned, for writing in place. No other process touches
    /// it until [`commit`](SendSlot::commit).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.sender
            .inner
            .payload(self.claim.expect("a live slot has its claim").index)
    }

    /// Publishes the first `len` bytes as one message.
    pub fn commit(mut self, len: usize) -> Result<()> {
        if len > self.capacity() {
            return Err(self.sender.inner.err(
                ErrorKind::InvalidArgument,
                "send to",
                format!(
                    "a message of {len} bytes exceeds the slot's {}",
                    self.capacity()
                ),
            ));
        }
        if !self.sender.home.is_here() {
            return Err(self.sender.forked());
        }
        let claim = self.claim.take().expect("a live slot has its claim");
        self.sender.commit(claim, len)
    }
}

impl Drop for SendSlot<'_> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            // An SPSC slot is simply not published; a shared ring's slot is
            // handed back so consumers skip its position (by its owner
            // only: in a forked child the claim is the parent's).
            if self.sender.spsc.is_none() && self.sender.home.is_here() {
                ring::abandon_send(&*self.sender.inner, claim, self.sender.owner);
                self.sender.inner.data_event().notify_all();
            }
        }
    }
}

/// The receiving end of a channel, connected as one endpoint.
pub struct Receiver {
    inner: Arc<Inner>,
    entry: usize,
    /// The identity word this receiver stored in its entry.
    identity: u64,
    /// The process that made it (a forked child must not use it).
    home: Home,
    owner: u8,
    count: u64,
    wait: WaitStrategy,
    /// The consumer's position in an SPSC channel; None in a shared one.
    spsc: Option<RecvCursor>,
    /// The damaged slot (index, word) the last receive reported: found
    /// again unchanged, it is skipped (`corrupt_slot`).
    last_corrupt: Option<(usize, u64)>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("channel", &self.inner.name)
            .field("endpoint", &self.entry)
            .finish()
    }
}

impl Receiver {
    /// Receives the next message, waiting while the channel is empty.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] once the channel is empty and every
    /// sender that connected is gone; [`ErrorKind::Corrupt`] if the shared
    /// state is damaged (the message is dropped, the channel goes on).
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.recv_into_until(&mut buf, true, None)?;
        Ok(buf)
    }

    /// Receives into `buf` (cleared first), reusing its allocation; returns the length.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.recv_into_until(buf, true, None)
    }

    /// Receives a message if one is there now: [`ErrorKind::WouldBlock`] if not.
    pub fn try_recv(&mut self) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.recv_into_until(&mut buf, false, None)?;
        Ok(buf)
    }

    /// Receives, waiting at most `timeout` ([`ErrorKind::TimedOut`]).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.recv_into_until(&mut buf, true, Instant::now().checked_add(timeout))?;
        Ok(buf)
    }

    fn recv_into_until(
        &mut self,
        buf: &mut Vec<u8>,
        block: bool,
        deadline: Option<Instant>,
    ) -> Result<usize> {
        let slot = self.claim_slot(block, deadline)?;
        let len = slot.len;
        buf.clear();
        buf.reserve(len);
        // SAFETY: the slot is ours (READING) until the RecvSlot drops; its
        // payload holds `len` <= max_msg bytes (checked in claim_slot); the
        // copy goes into spare capacity of our own vector, then the length
        // is set to what was written.
        unsafe {
            ptr::copy_nonoverlapping(slot.payload(), buf.as_mut_ptr(), len);
            buf.set_len(len);
        }
        Ok(len)
    }

    /// Receives the next message in place: read it through [`RecvSlot`];
    /// the slot is freed when that drops.
    pub fn recv_slot(&mut self) -> Result<RecvSlot<'_>> {
        self.claim_slot(true, None)
    }

    /// Like [`recv_slot`](Receiver::recv_slot), but [`ErrorKind::WouldBlock`] if empty.
    pub fn try_recv_slot(&mut self) -> Result<RecvSlot<'_>> {
        self.claim_slot(false, None)
    }

    /// Like [`recv_slot`](Receiver::recv_slot), waiting at most `timeout`.
    pub fn recv_slot_timeout(&mut self, timeout: Duration) -> Result<RecvSlot<'_>> {
        self.claim_slot(true, Instant::now().checked_add(timeout))
    }

    /// Receives up to `max` messages in place: waits (until `deadline`, or
    /// for ever with `None`) for the first, then takes those already there,
    /// calling `read` on each while it is still in its slot. Wakes senders
    /// once for the batch. Returns how many were received.
    ///
    /// # Errors
    /// As [`recv`](Receiver::recv) for the first message; an error from
    /// `read` stops the batch (that message counts as received).
    pub fn recv_batch(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
        mut read: impl FnMut(&RecvSlot<'_>) -> Result<()>,
    ) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let mut taken = 0;
        let result = (|| {
            let mut slot = self.claim_slot(true, deadline)?;
            slot.notify = false;
            taken = 1;
            read(&slot)?;
            drop(slot);
            while taken < max {
                // claim_now, not claim_slot: an empty ring ends the batch
                // without building a WouldBlock error.
                let claim = match self.claim_now(false) {
                    Ok(Some(claim)) => claim,
                    Ok(None) => break,
                    Err(e) => return Err(self.corrupt_slot(e)),
                };
                let len = self.checked_len(claim)?;
                let slot = RecvSlot {
                    receiver: &mut *self,
                    claim,
                    len,
                    notify: false,
                };
                taken += 1;
                read(&slot)?;
            }
            Ok(())
        })();
        if let Some(cursor) = &self.spsc {
            spsc::publish_recv(&*self.inner, cursor);
            self.publish_count();
        }
        if taken > 0 {
            self.inner.space_event().notify_all();
        }
        result.map(|()| taken)
    }

    /// Like [`recv_slot`](Receiver::recv_slot), waiting until `deadline` at
    /// most. Reads no clock when a message is there.
    pub fn recv_slot_deadline(&mut self, deadline: Instant) -> Result<RecvSlot<'_>> {
        self.claim_slot(true, Some(deadline))
    }

    /// One attempt at the next message: None when the ring is empty (the
    /// small error type as in `Sender::claim_now`).
    #[inline(always)]
    fn claim_now(&mut self, check_dead: bool) -> std::result::Result<Option<Claim>, SpscError> {
        let inner = &*self.inner;
        if let Some(cursor) = self.spsc.as_ref() {
            return match spsc::claim_recv(inner, cursor) {
                Ok(index) => Ok(Some(Claim {
                    pos: cursor.head,
                    index,
                })),
                Err(SpscError::WouldBlock) => Ok(None),
                Err(e) => Err(e),
            };
        }
        match ring::claim_recv(inner, self.owner, check_dead, &mut |o| inner.owner_dead(o)) {
            Ok(claim) => Ok(Some(claim)),
            Err(RingError::Corrupt { index, word }) => Err(SpscError::CorruptSlot { index, word }),
            Err(RingError::WouldBlock) => Ok(None),
        }
    }

    /// Frees a claimed slot once its message is copied out. With `publish`
    /// off (inside a batch) an SPSC consumer only moves its own cursor; the
    /// batch, or any later release, tells the producer.
    ///
    /// Does nothing in a forked child: the claim is the parent's. On the
    /// shared ring the release is a compare-and-swap from our claim's
    /// state, so a slot a peer took back meanwhile is left alone.
    #[inline(always)]
    fn release(&mut self, claim: Claim, publish: bool) {
        if !self.home.is_here() {
            return;
        }
        let inner = &*self.inner;
        match self.spsc.as_mut() {
            Some(cursor) if !publish => spsc::step_recv(cursor),
            Some(cursor) => {
                spsc::release_recv(inner, cursor);
                self.publish_count();
            }
            None => {
                let _ = ring::release_recv(inner, claim, self.owner);
            }
        }
    }

    /// The error for a damaged slot where the next message should be. The
    /// first time a slot is found so it is only reported (a writer of
    /// garbage may be repairing it); found again with the same word, its
    /// position is skipped, so one damaged word costs at most that message
    /// and the channel goes on.
    #[cold]
    fn corrupt_slot(&mut self, e: SpscError) -> Error {
        if let SpscError::CorruptSlot { index, word } = e {
            if self.last_corrupt == Some((index, word)) {
                self.last_corrupt = None;
                let inner = &*self.inner;
                match self.spsc.as_mut() {
                    Some(cursor) => {
                        spsc::skip_corrupt(inner, cursor, word);
                        self.publish_count();
                    }
                    None => {
                        ring::skip_corrupt(inner, index, word);
                    }
                }
                inner.space_event().notify_all();
            } else {
                self.last_corrupt = Some((index, word));
            }
        }
        self.inner.spsc_corrupt("receive from", e)
    }

    /// Shows this receiver's count in its endpoint entry (SPSC: after the
    /// position is published, see `checked_len`).
    #[inline(always)]
    fn publish_count(&self) {
        // Relaxed: a statistic; only this endpoint writes it.
        self.inner
            .endpoint_count(self.entry)
            .store(self.count, Ordering::Relaxed);
    }

    /// Turns a claimed slot into a [`RecvSlot`], checking the length the
    /// producer wrote.
    #[inline(always)]
    fn take(&mut self, claim: Claim) -> Result<RecvSlot<'_>> {
        let len = self.checked_len(claim)?;
        Ok(RecvSlot {
            receiver: self,
            claim,
            len,
            notify: true,
        })
    }

    /// The length of the message in a claimed slot, counted as received;
    /// a length over the maximum drops the message (an error). Returns a
    /// plain `usize` so a batch builds each `RecvSlot` in place (moving a
    /// returned `Result<RecvSlot>` cost a store-forwarding stall per message).
    #[inline(always)]
    fn checked_len(&mut self, claim: Claim) -> Result<usize> {
        let inner = &*self.inner;
        // Relaxed: ordered after the producer's store by the Acquire claim.
        // Untrusted: checked before use.
        let len = inner.slot_len(claim.index).load(Ordering::Relaxed);
        self.count += 1;
        // An SPSC message counts as received once the consumer's position
        // is published past it (`publish_count`): one redelivered after a
        // crash is not counted twice, so received never exceeds sent.
        if self.spsc.is_none() {
            inner
                .endpoint_count(self.entry)
                .store(self.count, Ordering::Relaxed);
        }
        if len > inner.layout.max_msg {
            let max = inner.layout.max_msg;
            self.release(claim, true);
            self.inner.space_event().notify_one();
            return Err(self.inner.err(
                ErrorKind::Corrupt,
                "receive from",
                format!("a message claims {len} bytes, over the maximum of {max}: dropped"),
            ));
        }
        Ok(len as usize)
    }

    #[inline]
    fn claim_slot(&mut self, block: bool, deadline: Option<Instant>) -> Result<RecvSlot<'_>> {
        if !self.home.is_here() {
            return Err(process::forked_error(
                "receive from",
                self.inner.name.as_str(),
                "receiver",
            ));
        }
        let mut check_dead = false;
        loop {
            match self.claim_now(check_dead) {
                Ok(Some(claim)) => return self.take(claim),
                Ok(None) => {}
                Err(e) => return Err(self.corrupt_slot(e)),
            }
            let inner = &*self.inner;
            if !block {
                return Err(Error::cheap(
                    ErrorKind::WouldBlock,
                    "receive from",
                    &inner.object,
                    "the channel is empty",
                ));
            }
            if check_dead && inner.all_gone(ROLE_PRODUCER) {
                // Everyone who could send is gone; one last look, since a
                // sender may have committed just before it left.
                #[cfg(test)]
                tests::before_last_look();
                // What it claims is delivered: dropping the claim would lose
                // the message and, on the shared ring, leave its slot
                // READING under a live owner, wedging every sender a lap on.
                return match self.claim_now(true) {
                    Ok(Some(claim)) => self.take(claim),
                    Ok(None) => Err(self.inner.err(
                        ErrorKind::Disconnected,
                        "receive from",
                        "the channel is empty and every sender is gone",
                    )),
                    Err(e) => Err(self.corrupt_slot(e)),
                };
            }
            let spin = self.wait == WaitStrategy::SpinThenSleep;
            let head = self.spsc.map(|c| c.head);
            let progressed = wait_slice(
                inner,
                inner.data_event(),
                "receive from",
                deadline,
                spin,
                || match head {
                    Some(head) => spsc::may_recv(inner, head),
                    None => inner.may_recv(),
                },
            )?;
            check_dead = !progressed;
        }
    }

    /// Chooses how this receiver waits for messages (default: spin, then sleep).
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.wait = wait;
    }

    /// The channel this receiver belongs to.
    pub fn name(&self) -> &ShmName {
        &self.inner.name
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // In a forked child the entry is the parent's: leave it alone.
        if self.home.is_here() {
            self.inner.leave(self.entry, self.identity, ROLE_CONSUMER);
        }
    }
}

/// A received message still in its slot; the slot is freed on drop.
pub struct RecvSlot<'a> {
    receiver: &'a mut Receiver,
    claim: Claim,
    len: usize,
    /// Publish the release (SPSC) and wake a blocked sender when released;
    /// off inside a batch, which does both once at its end.
    notify: bool,
}

impl std::fmt::Debug for RecvSlot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvSlot")
            .field("channel", &self.receiver.inner.name)
            .field("position", &self.claim.pos)
            .field("len", &self.len)
            .finish()
    }
}

impl RecvSlot<'_> {
    /// The message's length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn payload(&self) -> *const u8 {
        self.receiver.inner.payload(self.claim.index)
    }

    /// The message's first byte, [`len`](RecvSlot::len) bytes long, 16-byte
    /// aligned. Only a misbehaving process writes it while the slot is held;
    /// copy out or read with care rather than forming a reference.
    pub fn as_ptr(&self) -> *const u8 {
        self.payload()
    }

    /// Copies `buf.len()` bytes at `offset` out of the message.
    #[inline]
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        if offset
            .checked_add(buf.len())
            .is_none_or(|end| end > self.len)
        {
            return Err(self.receiver.inner.err(
                ErrorKind::InvalidArgument,
                "read from",
                format!(
                    "{} bytes at offset {offset} exceed the message's {} bytes",
                    buf.len(),
                    self.len
                ),
            ));
        }
        // SAFETY: the range is inside the held slot's message (checked).
        unsafe {
            ptr::copy_nonoverlapping(self.payload().add(offset), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    /// Copies the whole message out.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.len];
        self.read_at(0, &mut out)
            .expect("the whole message is in range");
        out
    }
}

impl Drop for RecvSlot<'_> {
    #[inline]
    fn drop(&mut self) {
        // A batch (notify off) frees its slots at once at its end.
        self.receiver.release(self.claim, self.notify);
        if self.notify {
            self.receiver.inner.space_event().notify_one();
        }
    }
}

/// A channel of plain-old-data values of type `T`.
///
/// The type's size and alignment are recorded at creation and checked on
/// open; [`bytemuck::Pod`] proves that any bytes are a valid `T`, which is
/// what a value from another process must be.
pub struct TypedChannel<T> {
    channel: Channel,
    _type: PhantomData<fn() -> T>,
}

impl<T: bytemuck::Pod> TypedChannel<T> {
    fn type_params() -> (u32, u32) {
        (
            std::mem::size_of::<T>() as u32,
            std::mem::align_of::<T>() as u32,
        )
    }

    /// Creates a channel for `capacity` values of `T`.
    pub fn create(name: &str, capacity: usize, mode: u32) -> Result<Self> {
        let mut opts = ChannelOptions::new();
        opts.capacity(capacity).mode(mode);
        Self::create_with_options(name, &opts)
    }

    /// Creates a channel of `T` with `options` (capacity, mode, SPSC); the
    /// maximum message is the size of `T` whatever `options` says.
    pub fn create_with_options(name: &str, options: &ChannelOptions) -> Result<Self> {
        let (size, align) = Self::type_params();
        if size == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "create",
                name,
                "zero-sized types carry nothing",
            ));
        }
        let mut opts = options.clone();
        opts.max_message(size as usize);
        Ok(TypedChannel {
            channel: Channel::create_with(name, &opts, size, align)?,
            _type: PhantomData,
        })
    }

    /// Opens a channel of `T`; fails if it was made for another type layout.
    pub fn open(name: &str) -> Result<Self> {
        Ok(TypedChannel {
            channel: Channel::open_with(name, Some(Self::type_params()))?,
            _type: PhantomData,
        })
    }

    /// Connects a sender.
    pub fn sender(&self) -> Result<TypedSender<T>> {
        Ok(TypedSender {
            sender: self.channel.sender()?,
            _type: PhantomData,
        })
    }

    /// Connects a receiver.
    pub fn receiver(&self) -> Result<TypedReceiver<T>> {
        Ok(TypedReceiver {
            receiver: self.channel.receiver()?,
            _type: PhantomData,
        })
    }

    /// The untyped channel underneath (for stats and unlink).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

impl<T> std::fmt::Debug for TypedChannel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TypedChannel").field(&self.channel).finish()
    }
}

/// Sends values of `T`.
pub struct TypedSender<T> {
    sender: Sender,
    _type: PhantomData<fn(T)>,
}

impl<T: bytemuck::Pod> TypedSender<T> {
    /// Sends `value`, waiting while full.
    pub fn send(&mut self, value: &T) -> Result<()> {
        self.sender.send(bytemuck::bytes_of(value))
    }

    /// Sends `value` if there is room now.
    pub fn try_send(&mut self, value: &T) -> Result<()> {
        self.sender.try_send(bytemuck::bytes_of(value))
    }

    /// Sends `value`, waiting at most `timeout`.
    pub fn send_timeout(&mut self, value: &T, timeout: Duration) -> Result<()> {
        self.sender.send_timeout(bytemuck::bytes_of(value), timeout)
    }
}

/// Receives values of `T`.
pub struct TypedReceiver<T> {
    receiver: Receiver,
    _type: PhantomData<fn() -> T>,
}

impl<T: bytemuck::Pod> TypedReceiver<T> {
    fn take(slot: RecvSlot<'_>) -> Result<T> {
        let mut value = T::zeroed();
        let bytes = bytemuck::bytes_of_mut(&mut value);
        if slot.len() != bytes.len() {
            return Err(slot.receiver.inner.err(
                ErrorKind::Corrupt,
                "receive from",
                format!(
                    "a message of {} bytes in a channel of {}-byte values",
                    slot.len(),
                    bytes.len()
                ),
            ));
        }
        slot.read_at(0, bytes)?;
        Ok(value)
    }

    /// Receives the next value, waiting while empty.
    pub fn recv(&mut self) -> Result<T> {
        Self::take(self.receiver.recv_slot()?)
    }

    /// Receives a value if one is there now.
    pub fn try_recv(&mut self) -> Result<T> {
        Self::take(self.receiver.try_recv_slot()?)
    }

    /// Receives, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
        Self::take(self.receiver.recv_slot_timeout(timeout)?)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        /// Run once between `all_gone` and the receiver's last look: widens
        /// that window so a test can put a message there.
        static LAST_LOOK_HOOK: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    }

    pub(super) fn before_last_look() {
        if let Some(hook) = LAST_LOOK_HOOK.with(|h| h.borrow_mut().take()) {
            hook();
        }
    }

    /// A unique name, unlinked on drop.
    struct Name(String);

    impl Name {
        fn new(tag: &str) -> Self {
            use std::sync::atomic::AtomicUsize;
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            Name(format!(
                "/shmkit-test-{}-{n}-unit-chan-{tag}",
                std::process::id()
            ))
        }
    }

    impl Drop for Name {
        fn drop(&mut self) {
            let _ = crate::posix::unlink(&self.0);
        }
    }

    fn options(capacity: usize, spsc: bool) -> ChannelOptions {
        let mut o = ChannelOptions::new();
        o.capacity(capacity).max_message(16).spsc(spsc);
        o
    }

    /// Issue 15, defect 1: a message claimed by the last look after every
    /// sender left is delivered, not dropped with its slot left claimed.
    #[test]
    fn the_last_look_delivers_what_it_claims() {
        for spsc in [false, true] {
            let name = Name::new("last-look");
            let ch = Channel::create(&name.0, &options(1, spsc)).unwrap();
            let mut rx = ch.receiver().unwrap();
            // A sender came and went: the receiver may report disconnection.
            drop(ch.sender().unwrap());
            let late = ch.clone();
            LAST_LOOK_HOOK.with(|h| {
                *h.borrow_mut() = Some(Box::new(move || {
                    let mut tx = late.sender().unwrap();
                    tx.send(b"late").unwrap();
                }))
            });
            let got = rx.recv_timeout(Duration::from_secs(10));
            LAST_LOOK_HOOK.with(|h| h.borrow_mut().take());
            assert_eq!(got.unwrap(), b"late", "spsc {spsc}");
            let stats = ch.stats();
            assert_eq!((stats.sent, stats.received), (1, 1), "spsc {spsc}");
            // The ring is not wedged: the one slot is free again.
            let mut tx = ch.sender().unwrap();
            tx.try_send(b"again").unwrap();
            assert_eq!(rx.try_recv().unwrap(), b"again", "spsc {spsc}");
        }
    }
}
