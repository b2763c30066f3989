//! A channel's memory: the parameter and hot-word offsets after the common
//! header, the `Layout` fixed at creation, and `Inner`, the mapped channel
//! with its bounds-checked word, slot and event accessors.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::ring::{self, Phase, RingWords, State};
use super::spsc::SpscError;
use crate::error::{Error, ErrorKind};
use crate::posix::ShmName;
use crate::readiness::FdWaiters;
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

pub(super) const ENDPOINT_SIZE: usize = 64;
// The words of an endpoint entry (after its identity word, word 0).
const ENTRY_COUNT: usize = 1;
const ENTRY_CLAIM: usize = 2;
const ENTRY_LEAKED: usize = 3;
/// Where a slot's payload starts: after its state word and length.
pub(super) const SLOT_HEADER: usize = 16;
pub(super) const MAX_TYPE_ALIGN: usize = SLOT_HEADER;
/// Channels for messages of at least this many bytes start every payload
/// on a cache line of its own (a 64-byte slot header): filling and checking
/// a large message in place then never splits a vector access across two
/// lines. Smaller messages keep the 16-byte header, which saves a line.
pub(super) const LARGE_MESSAGE: u64 = 4096;
pub(super) const LARGE_SLOT_HEADER: usize = 64;

// Parameters, after the common header (all written once by the creator).
pub(super) const OFF_CAPACITY: usize = 64;
pub(super) const OFF_MAX_MSG: usize = 72;
pub(super) const OFF_SLOT_SIZE: usize = 80;
pub(super) const OFF_SLOTS: usize = 88;
pub(super) const OFF_TYPE_SIZE: usize = 96; // u32
pub(super) const OFF_TYPE_ALIGN: usize = 100; // u32
                                              // Shared counters, touched only on join/leave.
pub(super) const OFF_EPOCH: usize = 104; // u32: bumped on every join and leave
pub(super) const OFF_PRODUCERS_EVER: usize = 108; // u32
pub(super) const OFF_CONSUMERS_EVER: usize = 112; // u32
pub(super) const OFF_FLAGS: usize = 116; // u32, written once by the creator: FLAG_*
pub(super) const OFF_DEPARTED_SENT: usize = 120; // u64
pub(super) const OFF_DEPARTED_RECEIVED: usize = 128; // u64
                                                     // Hot words, each in its own 128-byte block (the adjacent-line prefetcher
                                                     // pulls lines in pairs, so 64 bytes apart is not apart enough).
pub(super) const OFF_ENQUEUE: usize = 256;
pub(super) const OFF_DEQUEUE: usize = 384;
pub(super) const OFF_DATA_EVENT: usize = 512;
pub(super) const OFF_SPACE_EVENT: usize = 640;
/// The data event's readiness waiter table (`crate::readiness`).
pub(super) const OFF_FD_WAITERS: usize = OFF_DATA_EVENT + 64;
const _: () = assert!(OFF_FD_WAITERS + std::mem::size_of::<FdWaiters>() <= OFF_SPACE_EVENT);
pub(super) const OFF_ENDPOINTS: usize = 768;
pub(super) const SLOTS_START: usize = OFF_ENDPOINTS + MAX_ENDPOINTS * ENDPOINT_SIZE;

/// The channel runs the single-producer / single-consumer ring (`spsc`).
pub(super) const FLAG_SPSC: u32 = 1;
/// The channel runs the framed byte ring (`stream`); always with
/// [`FLAG_SPSC`] (one sender, one receiver: the same admission).
pub(super) const FLAG_STREAM: u32 = 2;
/// Every flag this build knows; others make `open` refuse the channel.
pub(super) const KNOWN_FLAGS: u32 = FLAG_SPSC | FLAG_STREAM;

// Roles in an endpoint's occupant word (`endpoint_table::with_role`; its
// role 3 is a settler's).
pub(super) const ROLE_PRODUCER: u64 = 1;
pub(super) const ROLE_CONSUMER: u64 = 2;

/// What a channel is made of: fixed at creation, checked on every open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) capacity: u64,
    pub(super) max_msg: u64,
    /// The shortest message a sender may send: the type's size on a typed
    /// channel (every message is one value), else 0.
    pub(super) min_msg: u64,
    pub(super) slot_size: u64,
    /// Offset of the payload in a slot (SLOT_HEADER or LARGE_SLOT_HEADER).
    pub(super) payload_offset: u64,
    pub(super) type_size: u32,
    pub(super) type_align: u32,
    pub(super) flags: u32,
    pub(super) total: u64,
    /// Bytes of slots (`capacity × slot_size`): a stream's data area.
    pub(super) ring_bytes: u64,
}

impl Layout {
    pub(super) fn new(
        capacity: u64,
        max_msg: u64,
        type_size: u32,
        type_align: u32,
        flags: u32,
    ) -> std::result::Result<Self, String> {
        crate::shared_object::check_ring_parameters(
            flags,
            KNOWN_FLAGS,
            capacity,
            MAX_CAPACITY,
            max_msg,
            MAX_MESSAGE,
        )?;
        let stream = flags & FLAG_STREAM != 0;
        if stream && flags & FLAG_SPSC == 0 {
            return Err(format!(
                "flags {flags:#x} ask for a byte stream without one sender and one receiver"
            ));
        }
        if type_size != 0
            && (u64::from(type_size) != max_msg
                || type_align == 0
                || !type_align.is_power_of_two()
                || type_align as usize > MAX_TYPE_ALIGN
                || (stream && u64::from(type_align) > super::stream::HEADER))
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
        // The byte ring: `capacity` records of the largest message end to
        // end (smaller ones take less room); each record's payload follows
        // its 8-byte header.
        let large = max_msg >= LARGE_MESSAGE && !stream;
        let payload_offset = if stream {
            super::stream::HEADER as usize
        } else if large {
            LARGE_SLOT_HEADER
        } else {
            SLOT_HEADER
        } as u64;
        let stride = if flags & FLAG_SPSC != 0 && !large {
            16
        } else {
            64
        };
        let slot_size = if stream {
            super::stream::record_bytes(max_msg)
        } else {
            (payload_offset + max_msg).next_multiple_of(stride)
        };
        let total = crate::shared_object::ring_total(capacity, slot_size, SLOTS_START)?;
        Ok(Layout {
            capacity,
            max_msg,
            min_msg: u64::from(type_size),
            slot_size,
            payload_offset,
            type_size,
            type_align,
            flags,
            total,
            ring_bytes: capacity * slot_size,
        })
    }

    /// Whether a sender may send a message of `len` bytes: at most the
    /// largest message, and on a typed channel exactly the type's size
    /// (a receiver would find any other length corrupt). One comparison:
    /// a length below `min_msg` wraps past the range.
    #[inline(always)]
    pub(super) fn admits(&self, len: usize) -> bool {
        (len as u64).wrapping_sub(self.min_msg) <= self.max_msg - self.min_msg
    }

    /// One sender and one receiver at a time (the slot or the byte ring).
    pub(super) fn spsc(&self) -> bool {
        self.flags & FLAG_SPSC != 0
    }

    /// The framed byte ring ([`FLAG_STREAM`]).
    pub(super) fn stream(&self) -> bool {
        self.flags & FLAG_STREAM != 0
    }
}

// Slot owners are endpoint indexes + 1 and must fit the ring's owner field.
const _: () = assert!(MAX_ENDPOINTS <= ring::MAX_OWNERS);

/// The mapped channel, shared by its handles.
pub(super) struct Inner {
    pub(super) region: Region,
    pub(super) name: ShmName,
    /// The name again, shared by the cheap errors of `try_` calls.
    pub(super) object: Arc<str>,
    pub(super) layout: Layout,
    /// `region`'s first byte, writable (checked at open).
    pub(super) base: *mut u8,
    pub(super) info: crate::layout::HeaderInfo,
    /// Whether this process has seen a producer (resp. consumer) connected,
    /// in its own memory: the "someone came" counters in the header can be
    /// zeroed by a peer, which must not make "every sender is gone" wait
    /// for a first sender for ever.
    pub(super) seen: [std::sync::atomic::AtomicBool; 2],
    /// Liveness verdicts about the peers in the endpoint table, so blocked
    /// endpoints do not re-read their /proc entries every slice.
    pub(super) liveness: crate::process::Liveness,
}

// SAFETY: `base` points into `region`, which Inner owns and which is Send +
// Sync; every access through it is atomic or to a slot this endpoint has
// claimed through the ring protocol.
unsafe impl Send for Inner {}
// SAFETY: as for Send.
unsafe impl Sync for Inner {}

impl Inner {
    /// The mapped channel `name`, its region's first byte `base` writable.
    pub(super) fn new(
        name: ShmName,
        region: Region,
        base: *mut u8,
        layout: Layout,
        info: crate::layout::HeaderInfo,
    ) -> Inner {
        Inner {
            object: name.as_str().into(),
            name,
            layout,
            base,
            info,
            region,
            seen: Default::default(),
            liveness: Default::default(),
        }
    }

    /// The u64 atomic at a header offset.
    #[inline]
    pub(super) fn word64(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off % 8 == 0 && off + 8 <= SLOTS_START);
        // SAFETY: `off` is one of this module's constant offsets, 8-aligned
        // and inside the header area that open checked the mapping holds;
        // the mapping lives as long as `self`; only atomics access it.
        unsafe { &*self.base.add(off).cast::<AtomicU64>() }
    }

    #[inline]
    pub(super) fn word32(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off % 4 == 0 && off + 4 <= SLOTS_START);
        // SAFETY: as in `word64`, for a 4-aligned constant offset.
        unsafe { &*self.base.add(off).cast::<AtomicU32>() }
    }

    #[inline]
    pub(super) fn event(&self, off: usize) -> &Event {
        // SAFETY: the two event offsets are 4-aligned, inside the header
        // area, and the Event is atomics only (all-zero is a valid event).
        unsafe { Event::from_ptr(self.base.add(off)) }
    }

    #[inline]
    pub(super) fn data_event(&self) -> &Event {
        self.event(OFF_DATA_EVENT)
    }

    /// The readiness descriptors waiting for data (`crate::readiness`): a
    /// waiter table in the second cache line of the data event's block,
    /// padding (zero) in channels made before.
    #[inline]
    pub(super) fn fd_waiters(&self) -> &FdWaiters {
        // SAFETY: OFF_FD_WAITERS is 4-aligned, and its 64 bytes lie inside
        // the header area (below OFF_SPACE_EVENT) that open checked the
        // mapping holds; the table is atomics only.
        unsafe { FdWaiters::from_ptr(self.base.add(OFF_FD_WAITERS)) }
    }

    /// Wakes receivers: the futex sleepers on the data event and the armed
    /// readiness descriptors. No syscall while nobody sleeps.
    #[inline]
    pub(super) fn notify_data(&self) {
        self.data_event().notify_all_and(self.fd_waiters());
    }

    #[inline]
    pub(super) fn space_event(&self) -> &Event {
        self.event(OFF_SPACE_EVENT)
    }

    #[inline]
    pub(super) fn slot_ptr(&self, index: usize) -> *mut u8 {
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
    pub(super) fn slot_len(&self, index: usize) -> &AtomicU64 {
        // SAFETY: the slot's second 8 bytes, inside the slot (SLOT_HEADER =
        // 16), 8-aligned because slots are 64-aligned.
        unsafe { &*self.slot_ptr(index).add(8).cast::<AtomicU64>() }
    }

    #[inline]
    pub(super) fn payload(&self, index: usize) -> *mut u8 {
        // SAFETY: the payload follows the slot header and has max_msg bytes
        // inside the slot (slot_size >= payload_offset + max_msg, and
        // payload_offset is 16 or 64).
        unsafe {
            self.slot_ptr(index)
                .add(self.layout.payload_offset as usize)
        }
    }

    #[inline]
    pub(super) fn endpoint_identity(&self, i: usize) -> &AtomicU64 {
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
    pub(super) fn endpoint_count(&self, i: usize) -> &AtomicU64 {
        self.endpoint_word(i, ENTRY_COUNT)
    }

    /// The position + 1 of the last slot entry `i`'s endpoint claimed on
    /// the shared ring (0: none yet), so that taking over a dead endpoint
    /// looks at that one slot instead of the whole ring.
    #[inline]
    pub(super) fn endpoint_claim(&self, i: usize) -> &AtomicU64 {
        self.endpoint_word(i, ENTRY_CLAIM)
    }

    /// Non-zero once entry `i`'s endpoint may hold more than one claim (a
    /// slot was forgotten with `mem::forget`): taking it over, or its
    /// leaving, then scans the ring for its slots.
    #[inline]
    pub(super) fn endpoint_leaked(&self, i: usize) -> &AtomicU64 {
        self.endpoint_word(i, ENTRY_LEAKED)
    }

    /// Word `word` (below 8) of entry `i` of the endpoint table.
    #[inline]
    fn endpoint_word(&self, i: usize, word: usize) -> &AtomicU64 {
        assert!(i < MAX_ENDPOINTS && word < ENDPOINT_SIZE / 8);
        // SAFETY: a word of entry i of the endpoint table: 64-byte entries
        // from an aligned constant offset inside the header area, checked
        // above; 8-aligned; only atomics access it.
        unsafe {
            &*self
                .base
                .add(OFF_ENDPOINTS + i * ENDPOINT_SIZE + word * 8)
                .cast::<AtomicU64>()
        }
    }

    pub(super) fn epoch(&self) -> u32 {
        // Acquire: pairs with the Release bump in join/leave.
        self.word32(OFF_EPOCH).load(Ordering::Acquire)
    }

    pub(super) fn err(
        &self,
        kind: ErrorKind,
        op: &'static str,
        detail: impl Into<String>,
    ) -> Error {
        Error::new(kind, op, self.name.as_str(), detail)
    }

    /// The error for what the SPSC ring found (never `WouldBlock`).
    pub(super) fn spsc_corrupt(&self, op: &'static str, e: SpscError) -> Error {
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

    pub(super) fn corrupt(&self, op: &'static str, index: usize, word: u64) -> Error {
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
    pub(super) fn may_send(&self) -> bool {
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
    pub(super) fn may_recv(&self) -> bool {
        ring::may_recv(self)
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
    #[inline(always)]
    fn note_claim(&self, owner: u8, pos: u64) {
        // Owners are entry indexes + 1 (checked: an entry of this table).
        if let Some(i) = usize::from(owner).checked_sub(1) {
            // Relaxed: read by this endpoint and by whoever takes its entry
            // over once its process is dead, when every store it made is
            // visible; one store to the endpoint's own entry line per claim.
            self.endpoint_claim(i)
                .store(pos.wrapping_add(1), Ordering::Relaxed);
        }
    }
    #[inline]
    fn slot_state(&self, index: usize) -> &AtomicU64 {
        // SAFETY: the slot's first 8 bytes, 64-aligned (see slot_ptr).
        unsafe { &*self.slot_ptr(index).cast::<AtomicU64>() }
    }
}
