//! A stream channel's endpoints: how [`Sender`] and [`Receiver`] run the
//! byte ring of the parent module over the channel's mapping, wait on its
//! events, and report what they find; and the zero-copy [`SendBatch`].
//!
//! The channel's ordinary calls come here when the channel was created
//! with [`ChannelOptions::stream`](crate::channel::ChannelOptions::stream);
//! each keeps the contract it has on the slot rings, with these costs:
//! a single `send` or `recv` publishes its position at once (one store and
//! the waker's check); `send_batch`, `reserve_batch` and `recv_batch`
//! publish once per batch, and wake the peer once per batch, only if it
//! sleeps.

use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::{Corruption, Record, StreamError, StreamWords};
use crate::channel::layout::*;
use crate::channel::receiver::{Messages, Receiver, RecvSlot};
use crate::channel::ring::Claim;
use crate::channel::sender::Sender;
use crate::channel::wait::{claim_loop, Waiting};
use crate::error::{Error, ErrorKind, Result};

/// Copies `len` bytes from `src` to `dst`, inline for messages of up to
/// 64 bytes (two overlapping fixed-size moves, as memcpy does inside): for
/// a stream of small records a call to memcpy costs as much as the copy.
///
/// # Safety
/// As [`ptr::copy_nonoverlapping`]: both ranges valid for `len` bytes and
/// not overlapping.
#[inline(always)]
pub(in crate::channel) unsafe fn copy_message(src: *const u8, dst: *mut u8, len: usize) {
    /// Copies N bytes at the start and N at the end (they may overlap).
    /// Constant-size copies, which the compiler turns into register moves
    /// (an `[u8; N]` value went through the stack on every record).
    #[inline(always)]
    unsafe fn ends<const N: usize>(src: *const u8, dst: *mut u8, len: usize) {
        // SAFETY: the caller's ranges hold `len >= N` bytes, so both
        // N-byte pieces lie inside them, and source and destination do not
        // overlap (the caller's contract); the two destination pieces may
        // overlap each other, each call's own ranges do not.
        unsafe {
            ptr::copy_nonoverlapping(src, dst, N);
            ptr::copy_nonoverlapping(src.add(len - N), dst.add(len - N), N);
        }
    }
    // SAFETY: each branch copies within the first `len` bytes (the
    // caller's contract). A tree of comparisons, not a chain (a `match`
    // on the ranges compiled to five in a row before the 64-byte case):
    // two or three for any length.
    unsafe {
        if len > 16 {
            if len > 64 {
                ptr::copy_nonoverlapping(src, dst, len)
            } else if len > 32 {
                ends::<32>(src, dst, len)
            } else {
                ends::<16>(src, dst, len)
            }
        } else if len >= 8 {
            ends::<8>(src, dst, len)
        } else if len >= 4 {
            ends::<4>(src, dst, len)
        } else {
            for i in 0..len {
                *dst.add(i) = *src.add(i);
            }
        }
    }
}

/// How far ahead of the record it reads a consumer asks for lines.
const PREFETCH_BYTES: u64 = 2048;

impl StreamWords for Inner {
    #[inline]
    fn size(&self) -> u64 {
        // Checked at create and open: capacity × slot size fits the mapping.
        self.layout.ring_bytes
    }
    #[inline]
    fn tail(&self) -> &AtomicU64 {
        self.word64(OFF_ENQUEUE)
    }
    #[inline]
    fn head(&self) -> &AtomicU64 {
        self.word64(OFF_DEQUEUE)
    }
    #[inline(always)]
    fn header(&self, offset: u64) -> &AtomicU64 {
        // SAFETY: `stream_data` checks the offset is inside the data area;
        // the ring hands out 8-aligned offsets only (record sizes are
        // multiples of 8) and the area starts 8-aligned; only atomics
        // access header words.
        unsafe { &*self.stream_data(offset).cast::<AtomicU64>() }
    }
}

/// The byte ring of one channel as values a batch keeps in registers: the
/// data area's address and size and the two positions' words. Through
/// `Inner` every record reloaded them from memory, since the payload
/// copies (plain byte stores) might alias them as far as the compiler
/// knows.
#[derive(Clone, Copy)]
pub(in crate::channel) struct RingView<'a> {
    /// The first byte of the data area.
    data: *mut u8,
    /// Bytes of the data area.
    size: u64,
    tail: &'a AtomicU64,
    head: &'a AtomicU64,
}

impl RingView<'_> {
    /// The byte at `offset` in the data area (as `Inner::stream_data`).
    #[inline(always)]
    fn data(&self, offset: u64) -> *mut u8 {
        assert!(offset < self.size, "stream offset out of range");
        // SAFETY: `data` + `size` lies in the mapping (`Inner::ring_view`),
        // and offset < size.
        unsafe { self.data.add(offset as usize) }
    }
}

impl StreamWords for RingView<'_> {
    #[inline(always)]
    fn size(&self) -> u64 {
        self.size
    }
    #[inline(always)]
    fn tail(&self) -> &AtomicU64 {
        self.tail
    }
    #[inline(always)]
    fn head(&self) -> &AtomicU64 {
        self.head
    }
    #[inline(always)]
    fn header(&self, offset: u64) -> &AtomicU64 {
        // SAFETY: as in `Inner`'s `header`: inside the data area (checked
        // by `data`), 8-aligned, only ever accessed as an atomic.
        unsafe { &*self.data(offset).cast::<AtomicU64>() }
    }
}

impl Inner {
    /// The ring as a [`RingView`], for the length of a batch.
    #[inline(always)]
    pub(in crate::channel) fn ring_view(&self) -> RingView<'_> {
        RingView {
            // Offset 0 of the data area: `stream_data` checks the mapping
            // holds SLOTS_START + size bytes.
            data: self.stream_data(0),
            size: self.size(),
            tail: self.word64(OFF_ENQUEUE),
            head: self.word64(OFF_DEQUEUE),
        }
    }

    /// The byte at `offset` in the data area.
    #[inline(always)]
    pub(in crate::channel) fn stream_data(&self, offset: u64) -> *mut u8 {
        // The ring computes offsets from checked positions and lengths; a
        // cheap check again, since the mapping's bounds depend on it.
        assert!(offset < self.size(), "stream offset out of range");
        // SAFETY: SLOTS_START + size <= total <= mapped length (checked in
        // `open`), so the byte lies in the mapping.
        unsafe { self.base.add(SLOTS_START + offset as usize) }
    }

    /// The error for what the byte ring found (never `WouldBlock`).
    #[cold]
    pub(in crate::channel) fn stream_error(&self, op: &'static str, e: StreamError) -> Error {
        match e {
            StreamError::WouldBlock => self.err(ErrorKind::WouldBlock, op, "not ready"),
            StreamError::TooLarge => self.err(
                ErrorKind::InvalidArgument,
                op,
                format!("the records asked for exceed the ring's {} bytes", self.size()),
            ),
            StreamError::Corrupt(Corruption::Positions { tail, head }) => self.err(
                ErrorKind::Corrupt,
                op,
                format!("its positions (written {tail}, read {head}) are not ones the byte ring can reach: the channel is corrupt"),
            ),
            StreamError::Corrupt(Corruption::Header { position, word }) => self.err(
                ErrorKind::Corrupt,
                op,
                format!("the record header at byte {position} is {word:#018x}, which the protocol never writes"),
            ),
        }
    }
}

impl Sender {
    /// Publishes what is framed and wakes the receiver if it sleeps.
    #[inline]
    fn stream_publish(&mut self) {
        let inner = &*self.inner;
        let cur = self.stream.as_mut().expect("a stream sender has a cursor");
        if cur.unpublished() {
            super::publish_send(inner, cur);
            // Relaxed: a statistic; only this endpoint writes it.
            inner
                .endpoint_count(self.entry)
                .store(self.count, Ordering::Relaxed);
            // Through the readiness table too: a receiver may sleep on a
            // descriptor (poll, tokio, asyncio, libshmkit) instead.
            inner.notify_data();
        }
    }

    /// Room for a record of up to `len` bytes: its payload's data offset.
    /// Publishes what is framed before it waits.
    #[inline]
    pub(in crate::channel) fn stream_claim(
        &mut self,
        len: u64,
        block: bool,
        deadline: Option<Instant>,
    ) -> Result<u64> {
        if !self.home.is_here() {
            return Err(self.forked());
        }
        let need = super::record_bytes(len);
        claim_loop(
            self,
            Waiting::ForRoom,
            block,
            deadline,
            |tx, _| {
                let inner = &*tx.inner;
                let cur = tx.stream.as_mut().expect("a stream sender has a cursor");
                match super::claim_send(inner, cur, len) {
                    Ok(at) => return Ok(Some(at)),
                    Err(StreamError::WouldBlock) => {}
                    Err(e) => return Err(inner.stream_error("send to", e)),
                }
                // The receiver frees room only in what it has been shown.
                tx.stream_publish();
                Ok(None)
            },
            |_| Ok(None),
            |tx| tx.stream.as_ref().expect("a stream sender").tail,
            |inner, tail| super::may_send(inner, tail, need),
        )
    }

    /// Frames the claimed record of `len` bytes; `publish` shows it (and
    /// every one before) to the receiver at once.
    #[inline(always)]
    pub(in crate::channel) fn stream_commit(&mut self, len: u64, publish: bool) {
        let inner = &*self.inner;
        let cur = self.stream.as_mut().expect("a stream sender has a cursor");
        super::commit_send(inner, cur, len);
        self.count += 1;
        if publish {
            self.stream_publish();
        }
    }

    /// `send`, `try_send` and the timed sends on a stream channel.
    pub(in crate::channel) fn stream_send(
        &mut self,
        msg: &[u8],
        block: bool,
        deadline: Option<Instant>,
    ) -> Result<()> {
        if !self.inner.layout.admits(msg.len()) {
            return Err(self.too_long(msg.len()));
        }
        let at = self.stream_claim(msg.len() as u64, block, deadline)?;
        // SAFETY: the claim gave `msg.len()` bytes of payload at `at`
        // inside the data area, not published yet, so the receiver does
        // not read them; `msg` is our own memory: no overlap.
        unsafe {
            copy_message(msg.as_ptr(), self.inner.stream_data(at), msg.len());
        }
        self.stream_commit(msg.len() as u64, true);
        Ok(())
    }

    /// `send_batch` on a stream channel: records framed as long as there
    /// is room, published once at the end (and before each wait).
    ///
    /// The cursor and the count are kept in locals for the batch (written
    /// back before a wait and at the end): through `self` they went to
    /// memory and back on every record, since the payload stores into the
    /// mapping might alias them as far as the compiler knows.
    pub(in crate::channel) fn stream_send_batch<'m>(
        &mut self,
        msgs: impl IntoIterator<Item = &'m [u8]>,
    ) -> Result<()> {
        let mut cur = *self.stream.as_ref().expect("a stream sender has a cursor");
        let mut framed = 0;
        let layout = self.inner.layout;
        // Our own handle on the mapping for the batch, so that the ring's
        // view does not borrow `self` (waiting for room needs it mutably).
        let inner = std::sync::Arc::clone(&self.inner);
        let ring = inner.ring_view();
        let result = (|| {
            for msg in msgs {
                let len = msg.len() as u64;
                if !layout.admits(msg.len()) {
                    return Err(self.too_long(msg.len()));
                }
                let at = match super::claim_send(&ring, &mut cur, len) {
                    Ok(at) => at,
                    Err(StreamError::WouldBlock) => {
                        self.count += std::mem::take(&mut framed);
                        self.stream = Some(cur);
                        let claimed = self.stream_claim(len, true, None);
                        cur = *self.stream.as_ref().expect("a stream sender has a cursor");
                        claimed?
                    }
                    Err(e) => return Err(self.inner.stream_error("send to", e)),
                };
                // SAFETY: as in `stream_send`.
                unsafe {
                    copy_message(msg.as_ptr(), ring.data(at), msg.len());
                }
                super::commit_send(&ring, &mut cur, len);
                framed += 1;
            }
            Ok(())
        })();
        self.count += framed;
        self.stream = Some(cur);
        if self.home.is_here() {
            self.stream_publish();
        }
        result
    }

    /// Claims room for `count` records of `len` bytes each, to fill in
    /// place and publish with one store ([`SendBatch::commit`]); waits
    /// while the ring is full. Only on a stream channel
    /// ([`ChannelOptions::stream`](crate::channel::ChannelOptions::stream)).
    ///
    /// The records lie end to end, one after the other in one piece of the
    /// ring (a batch that does not fit before the end of the ring starts
    /// at its beginning, after a padding record).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] on a channel that is not a stream,
    /// for `len` over the maximum message, or for a batch larger than the
    /// ring; otherwise as [`send`](Sender::send).
    pub fn reserve_batch(&mut self, count: usize, len: usize) -> Result<SendBatch<'_>> {
        self.reserve_batch_until(count, len, None)
    }

    /// Like [`reserve_batch`](Sender::reserve_batch), waiting until
    /// `deadline` at most ([`ErrorKind::TimedOut`]).
    pub fn reserve_batch_deadline(
        &mut self,
        count: usize,
        len: usize,
        deadline: Instant,
    ) -> Result<SendBatch<'_>> {
        self.reserve_batch_until(count, len, Some(deadline))
    }

    fn reserve_batch_until(
        &mut self,
        count: usize,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<SendBatch<'_>> {
        if self.stream.is_none() {
            return Err(self.inner.err(
                ErrorKind::InvalidArgument,
                "reserve in",
                "reserve_batch needs a stream channel (ChannelOptions::stream)",
            ));
        }
        // Over the largest message, or on a typed channel not exactly one
        // value: the receiver would find the records corrupt.
        if !self.inner.layout.admits(len) {
            return Err(self.too_long(len));
        }
        let record = super::record_bytes(len as u64);
        // The whole batch as one record's room: `claim_send` then pads
        // and waits for it as for one record.
        let room = (count as u64)
            .checked_mul(record)
            .filter(|&r| r <= self.inner.size())
            .ok_or_else(|| self.inner.stream_error("reserve in", StreamError::TooLarge))?;
        let start = match room {
            0 => 0,
            _ => self.stream_claim(room - super::HEADER, true, deadline)? - super::HEADER,
        };
        Ok(SendBatch {
            sender: self,
            start,
            count,
            len,
        })
    }
}

/// Room for a batch of records claimed by [`Sender::reserve_batch`]:
/// write each record in place, then [`commit`](SendBatch::commit) them
/// with one store. Dropping it uncommitted sends nothing.
pub struct SendBatch<'a> {
    sender: &'a mut Sender,
    /// Data offset of the first record's header.
    start: u64,
    count: usize,
    len: usize,
}

impl std::fmt::Debug for SendBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("channel", &self.sender.inner.name)
            .field("records", &self.count)
            .field("len", &self.len)
            .finish()
    }
}

impl SendBatch<'_> {
    /// Records in the batch.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Bytes of each record.
    pub fn record_len(&self) -> usize {
        self.len
    }

    /// The first byte of record `i` (below [`count`](Self::count)),
    /// [`record_len`](Self::record_len) bytes long and 8-byte aligned, for
    /// writing in place. No other process reads it until
    /// [`commit`](Self::commit).
    ///
    /// # Panics
    /// If `i` is not below [`count`](Self::count).
    pub fn as_mut_ptr(&mut self, i: usize) -> *mut u8 {
        assert!(i < self.count, "record {i} of a batch of {}", self.count);
        let offset = self.start + i as u64 * super::record_bytes(self.len as u64) + super::HEADER;
        self.sender.inner.stream_data(offset)
    }

    /// Copies `data` into record `i` at `offset`.
    pub fn write_at(&mut self, i: usize, offset: usize, data: &[u8]) -> Result<()> {
        if i >= self.count
            || offset
                .checked_add(data.len())
                .is_none_or(|end| end > self.len)
        {
            return Err(self.sender.inner.err(
                ErrorKind::InvalidArgument,
                "write to",
                format!(
                    "{} bytes at offset {offset} of record {i} exceed a batch of {} records of {} bytes",
                    data.len(),
                    self.count,
                    self.len
                ),
            ));
        }
        let at = self.as_mut_ptr(i);
        // SAFETY: the range is inside record i's payload (checked above),
        // which the batch owns until commit; `data` is not shared memory.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), at.add(offset), data.len()) };
        Ok(())
    }

    /// Publishes the first `n` records (at most [`count`](Self::count))
    /// with one store and wakes the receiver if it sleeps; the rest are
    /// not sent.
    pub fn commit(self, n: usize) -> Result<()> {
        if n > self.count {
            return Err(self.sender.inner.err(
                ErrorKind::InvalidArgument,
                "send to",
                format!("{n} records committed from a batch of {}", self.count),
            ));
        }
        if !self.sender.home.is_here() {
            return Err(self.sender.forked());
        }
        for _ in 0..n {
            self.sender.stream_commit(self.len as u64, false);
        }
        self.sender.stream_publish();
        Ok(())
    }
}

impl Receiver {
    /// The next record, stepped over in the private cursor (the position
    /// is published when its [`RecvSlot`] is released or the batch ends).
    /// Publishes what was read before it waits.
    #[inline]
    pub(in crate::channel) fn stream_claim(
        &mut self,
        block: bool,
        deadline: Option<Instant>,
    ) -> Result<Record> {
        if !self.home.is_here() {
            return Err(crate::process::forked_error(
                "receive from",
                self.inner.name.as_str(),
                "receiver",
            ));
        }
        claim_loop(
            self,
            Waiting::ForMessages,
            block,
            deadline,
            |rx, _| {
                let taken = rx.stream_take()?;
                if taken.is_none() {
                    // The sender waits for room only in what it has been shown.
                    rx.stream_publish();
                }
                Ok(taken)
            },
            // A sender may have published just before it left.
            |rx| rx.stream_take(),
            |rx| rx.stream.as_ref().expect("a stream receiver").head,
            super::may_recv,
        )
    }

    /// One attempt at the next record: None when none is published. A
    /// damaged header gives up every record published so far (their
    /// boundaries cannot be trusted) and is reported; the next call goes
    /// on after them.
    #[inline(always)]
    fn stream_take(&mut self) -> Result<Option<Record>> {
        let inner = &*self.inner;
        let cur = self
            .stream
            .as_mut()
            .expect("a stream receiver has a cursor");
        match super::claim_recv(inner, cur, inner.layout.max_msg) {
            Ok(rec) => {
                super::step_recv(inner, cur, rec.len);
                self.count += 1;
                Ok(Some(rec))
            }
            Err(StreamError::WouldBlock) => Ok(None),
            Err(e) => Err(self.stream_corrupt(e)),
        }
    }

    #[cold]
    fn stream_corrupt(&mut self, e: StreamError) -> Error {
        let inner = &*self.inner;
        if let StreamError::Corrupt(Corruption::Header { position, word }) = e {
            let cur = self
                .stream
                .as_mut()
                .expect("a stream receiver has a cursor");
            if let Ok(dropped) = super::skip_to_tail(inner, cur) {
                inner.space_event().notify_all();
                return inner.err(
                    ErrorKind::Corrupt,
                    "receive from",
                    format!("the record header at byte {position} is {word:#018x}, which the protocol never writes: the {dropped} bytes published with it are dropped"),
                );
            }
        }
        inner.stream_error("receive from", e)
    }

    /// Publishes the position (the records below it are read) and wakes
    /// the sender if it sleeps.
    #[inline]
    pub(in crate::channel) fn stream_publish(&mut self) {
        let inner = &*self.inner;
        let cur = self
            .stream
            .as_mut()
            .expect("a stream receiver has a cursor");
        if cur.unpublished() {
            super::publish_recv(inner, cur);
            self.publish_count();
            inner.space_event().notify_all();
        }
    }

    /// A batch's first record, waited for; on an error what was read
    /// before is published first.
    #[inline(always)]
    fn stream_first(&mut self, deadline: Option<Instant>) -> Result<Record> {
        self.stream_claim(true, deadline).inspect_err(|_| {
            if self.home.is_here() {
                self.stream_publish();
            }
        })
    }

    /// A batch's cursor and count back into `self`, which a damaged header
    /// (`stream_corrupt`) and the batch's end need.
    #[inline(always)]
    fn stream_sync(&mut self, cur: super::RecvCursor, taken: usize) {
        self.stream = Some(cur);
        self.count += taken as u64 - 1;
    }

    /// A batch's end: the cursor back (unless a damaged header took it
    /// already), and one publish of the position.
    #[inline(always)]
    fn stream_end(&mut self, cur: super::RecvCursor, taken: usize, synced: bool) {
        if !synced {
            self.stream_sync(cur, taken);
        }
        if self.home.is_here() {
            self.stream_publish();
        }
    }

    /// `recv_batch` on a stream channel: the first record waited for, then
    /// every one the last load of `tail` showed (up to `max`), then one
    /// publish of the position.
    ///
    /// After the first record the cursor and count live in locals (written
    /// back at the end), and each record's slot is built in place and
    /// forgotten: the per-record cost is the header check and the callback.
    /// Out of line, so that `read` is called from one place and the
    /// compiler inlines it into the loop (it did not with three callers).
    #[inline(never)]
    pub(in crate::channel) fn stream_recv_batch(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
        mut read: impl FnMut(&RecvSlot<'_>) -> Result<()>,
    ) -> Result<usize> {
        let first = self.stream_first(deadline)?;
        let max_len = self.inner.layout.max_msg;
        let mut cur = *self
            .stream
            .as_ref()
            .expect("a stream receiver has a cursor");
        // Our own handle on the mapping, so that the ring's view does not
        // borrow `self` (each slot borrows it mutably).
        let inner = std::sync::Arc::clone(&self.inner);
        let ring = inner.ring_view();
        prefetch_batch(&ring, &cur, first.offset);
        let mut rec = first;
        let mut next_prefetch = cur.head;
        let mut taken = 0;
        // Whether `self` has the cursor back (a damaged header needs it).
        let mut synced = false;
        let result = loop {
            let slot = RecvSlot {
                receiver: &mut *self,
                claim: Claim {
                    pos: 0,
                    index: rec.offset as usize,
                },
                len: rec.len as usize,
                notify: false,
            };
            taken += 1;
            let done = read(&slot);
            // Nothing to release: the cursor is past the record, and the
            // batch publishes at its end (forget skips the drop's checks,
            // which cost a call per record).
            std::mem::forget(slot);
            if let Err(e) = done {
                break Err(e);
            }
            if taken == max || !super::cached(&cur) {
                break Ok(());
            }
            match super::claim_recv(&ring, &mut cur, max_len) {
                Ok(next) => {
                    super::step_recv(&ring, &mut cur, next.len);
                    rec = next;
                }
                // Not reached (the cached tail shows records), but harmless.
                Err(StreamError::WouldBlock) => break Ok(()),
                Err(e) => {
                    self.stream_sync(cur, taken);
                    synced = true;
                    break Err(self.stream_corrupt(e));
                }
            }
            // One line asked for per line consumed (small records share
            // lines: one prefetch each was as many again for 8 bytes).
            if cur.head >= next_prefetch {
                next_prefetch = cur.head + 64;
                if super::published_ahead(&cur) > PREFETCH_BYTES {
                    prefetch_line(&ring, rec.offset, PREFETCH_BYTES);
                }
            }
        };
        self.stream_end(cur, taken, synced);
        result.map(|()| taken)
    }

    /// `recv_batch_into` on a stream channel: the batch of
    /// [`stream_recv_batch`](Self::stream_recv_batch), each record copied
    /// straight into `out` with no callback, no slot and no `Result` per
    /// record: what is left per record is the header's checks, the copy and
    /// the end's push.
    #[inline(never)]
    pub(in crate::channel) fn stream_recv_into(
        &mut self,
        out: &mut Messages,
        max: usize,
        deadline: Option<Instant>,
    ) -> Result<usize> {
        let first = self.stream_first(deadline)?;
        let max_len = self.inner.layout.max_msg;
        let mut cur = *self
            .stream
            .as_ref()
            .expect("a stream receiver has a cursor");
        let mut next_prefetch = cur.head;
        // Room for every record the cached tail shows, once: their payloads
        // are never more bytes than the ring they take, and each takes at
        // least a header's 8 bytes; the batch does not look past that tail
        // (`cached` ends it), so these bounds hold for the whole batch.
        let ahead = super::published_ahead(&cur) as usize;
        out.bytes.reserve(first.len as usize + ahead);
        out.ends
            .reserve(max.min(1 + ahead / super::HEADER as usize));
        // The buffers as locals for the batch (through `out` every record
        // stored and reloaded both lengths), written back at its end.
        let (bytes, bytes_room) = (out.bytes.as_mut_ptr(), out.bytes.capacity());
        let (ends, ends_room) = (out.ends.as_mut_ptr(), out.ends.capacity());
        let (mut bytes_len, mut ends_len) = (out.bytes.len(), out.ends.len());
        let ring = self.inner.ring_view();
        prefetch_batch(&ring, &cur, first.offset);
        let mut rec = first;
        let mut taken = 0;
        let mut synced = false;
        let result = loop {
            let len = rec.len as usize;
            // Holds by the reservations above; checked all the same, since
            // the writes below rely on it (a panic, never a write past).
            assert!(
                len <= bytes_room - bytes_len && ends_len < ends_room,
                "a batch outgrew its reservation"
            );
            if len > 0 {
                let src = ring.data(rec.offset);
                // `src` starts a payload of `len` bytes inside the data area
                // (`claim_recv` checked the record ends inside it, `data`
                // its start); the destination is spare capacity of
                // `out.bytes` (checked above), private memory.
                // SAFETY: both ranges valid for `len` bytes, no overlap.
                unsafe { copy_message(src, bytes.add(bytes_len), len) };
            }
            bytes_len += len;
            // SAFETY: `ends_len < ends_room` (checked above): spare capacity.
            unsafe { ends.add(ends_len).write(bytes_len) };
            ends_len += 1;
            taken += 1;
            if taken == max || !super::cached(&cur) {
                break Ok(());
            }
            match super::claim_recv(&ring, &mut cur, max_len) {
                Ok(next) => {
                    super::step_recv(&ring, &mut cur, next.len);
                    rec = next;
                }
                // Not reached (the cached tail shows records), but harmless.
                Err(StreamError::WouldBlock) => break Ok(()),
                Err(e) => {
                    self.stream_sync(cur, taken);
                    synced = true;
                    break Err(self.stream_corrupt(e));
                }
            }
            // As in `stream_recv_batch`: one line asked for per line
            // consumed (across processes the records come from the
            // producer's core; without this the copy waits for each line).
            if cur.head >= next_prefetch {
                next_prefetch = cur.head + 64;
                if super::published_ahead(&cur) > PREFETCH_BYTES {
                    prefetch_line(&ring, rec.offset, PREFETCH_BYTES);
                }
            }
        };
        // SAFETY: every byte and end below the new lengths was written
        // above, inside the capacities (checked).
        unsafe {
            out.bytes.set_len(bytes_len);
            out.ends.set_len(ends_len);
        }
        self.stream_end(cur, taken, synced);
        result.map(|()| taken)
    }
}

/// Asks the CPU for the first lines of the published records from
/// `offset` on, all at once: they come from the producer's core, and
/// fetched one after the other (each header's place depends on the one
/// before) each costs a full transfer.
#[inline(always)]
fn prefetch_batch(ring: &RingView<'_>, cur: &super::RecvCursor, offset: u64) {
    let published = super::published_ahead(cur).min(PREFETCH_BYTES);
    let mut at = 0;
    while at < published {
        prefetch_line(ring, offset, at);
        at += 64;
    }
}

/// Asks the CPU for the line `ahead` bytes past data offset `offset`,
/// through a batch's [`RingView`]: where the next headers are. Each
/// header's place depends on the length in the one before, so without this
/// the consumer waits for one cache line at a time from the producer's
/// core; a hint only, it never faults.
#[inline(always)]
fn prefetch_line(ring: &RingView<'_>, offset: u64, ahead: u64) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ring, offset, ahead);
    #[cfg(target_arch = "x86_64")]
    {
        let mut at = offset + ahead;
        if at >= ring.size {
            at -= ring.size;
        }
        if at < ring.size {
            let p = ring.data(at);
            // SAFETY: a prefetch reads nothing architecturally and cannot
            // fault; `p` lies inside the mapping anyway.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    p.cast::<i8>(),
                )
            };
        }
    }
}
