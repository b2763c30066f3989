//! The framed byte ring: the fast path for a channel created with
//! [`ChannelOptions::stream`](super::ChannelOptions::stream), one producer
//! and one consumer streaming variable-length records.
//!
//! # Algorithm
//! The shape of Aeron's log buffer, reduced to one producer and one
//! consumer. Records lie end to end in a data area of `size` bytes (a
//! multiple of 8); each is an 8-byte header and its payload, padded to 8:
//!
//! ```text
//!  record     [ header: tag (u32) | length (u32) ][ payload, length bytes ][ pad to 8 ]
//!  padding    [ header: PAD       | bytes to end ][ ...unused up to the end of the area ]
//! ```
//!
//! A record never wraps: when one does not fit before the end of the area,
//! the producer first writes a *padding record* that covers the rest of the
//! area, and the record starts at offset 0. So every lap of the ring is
//! exactly `size` bytes, and position `p` (a byte count since creation)
//! lives at offset `p % size`.
//!
//! Two positions, each written by one side only:
//!
//! ```text
//! word    written by               read by
//! tail    producer, once a batch   consumer, only when its cached copy runs out
//! head    consumer, once a batch   producer, only when its cached copy says full
//! ```
//!
//! The producer writes any number of records (headers and payloads) past
//! `tail` and then publishes them all with one Release store of `tail`;
//! the consumer loads `tail` with Acquire and may then read every record
//! below it, and publishes its progress with one Release store of `head`.
//! Nothing else is shared: no per-record sequence word, no compare-and-
//! swap. An 8-byte message costs 16 bytes of ring, a 64-byte one 72.
//!
//! # Crashes
//! - A producer killed at any instruction published only whole records:
//!   whatever it wrote past `tail` is invisible, and a new producer
//!   ([`resume_send`]) starts at the stored `tail` and writes over it.
//! - A consumer publishes `head` after it is done with the records below
//!   it (a batch: at its end). One killed mid-batch leaves `head` where
//!   its last publish put it; a new consumer ([`resume_recv`]) starts there
//!   and receives those records again: at least once, never lost.
//!
//! # Untrusted memory
//! Both positions and every header are read from memory a peer may damage:
//! - a position is accepted only if it is 8-aligned, below
//!   [`MAX_POSITION`], and `head <= tail <= head + size`;
//! - a header is accepted only with a known tag and a length that keeps
//!   the record inside what `tail` published and inside the area (a
//!   padding record must reach exactly the end). A record's length is at
//!   most the channel's largest message.
//!
//! Anything else is [`StreamError::Corrupt`]; the consumer then gives up
//! the records published so far ([`skip_to_tail`]) and the ring goes on.

use crate::primitive::{AtomicU64, Ordering};

#[cfg(not(loom))]
pub(in crate::channel) use endpoints::copy_message;
#[cfg(not(loom))]
pub use endpoints::SendBatch;

#[cfg(not(loom))]
mod endpoints;
#[cfg(test)]
pub(crate) mod heap;
#[cfg(all(test, loom))]
mod loom_models;
#[cfg(all(test, not(loom)))]
mod tests;

/// Bytes of a record header.
pub(crate) const HEADER: u64 = 8;
/// Tag of a message record (bits 32–63 of its header).
const TAG_RECORD: u64 = 0x5245_4331; // "REC1"
/// Tag of a padding record.
const TAG_PAD: u64 = 0x5041_4431; // "PAD1"

/// Positions from here on are garbage: at 100 GB/s a ring takes 1.4 years
/// to get there, and below it no sum of a position and a size overflows.
pub(crate) const MAX_POSITION: u64 = 1 << 62;

/// The shared words of a byte ring: where they live is the implementor's
/// business (a channel's mapping, the heap in tests and models).
pub(crate) trait StreamWords {
    /// Bytes of the data area: a multiple of 8, at least 16.
    fn size(&self) -> u64;
    /// The producer's published position.
    fn tail(&self) -> &AtomicU64;
    /// The consumer's published position.
    fn head(&self) -> &AtomicU64;
    /// The header word at data offset `offset` (8-aligned, below `size`).
    fn header(&self, offset: u64) -> &AtomicU64;
}

/// Why a step did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamError {
    /// No room (producer) or nothing published (consumer).
    WouldBlock,
    /// A record this large never fits the ring.
    TooLarge,
    /// Positions or a header that no run of the protocol writes.
    Corrupt(Corruption),
}

/// What was found damaged, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Corruption {
    /// Positions out of order, misaligned or too far apart.
    Positions { tail: u64, head: u64 },
    /// A header with an unknown tag or a length that does not fit.
    Header { position: u64, word: u64 },
}

/// Bytes a record of `len` payload bytes takes: header and padded payload.
#[inline(always)]
pub(crate) fn record_bytes(len: u64) -> u64 {
    HEADER + len.next_multiple_of(8)
}

/// The producer's private state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendCursor {
    /// Where the next record goes (written, perhaps not yet published).
    pub tail: u64,
    /// `tail % size`, kept up to date without a division.
    offset: u64,
    /// The last `tail` stored in shared memory.
    published: u64,
    /// The consumer's position as last loaded: room is at least
    /// `size - (tail - head_seen)`.
    head_seen: u64,
}

/// The consumer's private state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecvCursor {
    /// The next record to read.
    pub head: u64,
    /// `head % size`.
    offset: u64,
    /// The last `head` stored in shared memory.
    published: u64,
    /// The producer's position as last loaded: records below it are
    /// readable.
    tail_seen: u64,
}

impl SendCursor {
    /// Whether records are written that `tail` does not publish yet.
    #[cfg_attr(loom, allow(dead_code))]
    #[inline]
    pub(crate) fn unpublished(&self) -> bool {
        self.tail != self.published
    }
}

impl RecvCursor {
    /// Whether records were consumed that `head` does not say yet.
    #[cfg_attr(loom, allow(dead_code))]
    #[inline]
    pub(crate) fn unpublished(&self) -> bool {
        self.head != self.published
    }
}

/// Whether `tail` and `head` are positions a run of the protocol leaves.
#[inline]
fn positions_ok(tail: u64, head: u64, size: u64) -> bool {
    tail < MAX_POSITION && head <= tail && tail - head <= size && (tail | head) % 8 == 0
}

fn corrupt_positions(tail: u64, head: u64) -> StreamError {
    StreamError::Corrupt(Corruption::Positions { tail, head })
}

/// Zeroes both positions (the data area needs nothing: headers are only
/// read below `tail`).
pub(crate) fn init(words: &impl StreamWords) {
    words.tail().store(0, Ordering::Relaxed);
    words.head().store(0, Ordering::Relaxed);
}

/// Loads both positions and checks them.
fn load_positions(words: &impl StreamWords) -> Result<(u64, u64), StreamError> {
    // Acquire: pairs with the Release stores of `publish_send` and
    // `publish_recv` (of this side's predecessor and of the peer).
    let tail = words.tail().load(Ordering::Acquire);
    let head = words.head().load(Ordering::Acquire);
    if positions_ok(tail, head, words.size()) {
        Ok((tail, head))
    } else {
        Err(corrupt_positions(tail, head))
    }
}

/// Where a producer starts: the stored `tail`. Whatever a predecessor
/// wrote past it was never published and is written over.
pub(crate) fn resume_send(words: &impl StreamWords) -> Result<SendCursor, StreamError> {
    let (tail, head) = load_positions(words)?;
    Ok(SendCursor {
        tail,
        offset: tail % words.size(),
        published: tail,
        head_seen: head,
    })
}

/// Where a consumer starts: the stored `head`. Records a predecessor read
/// but did not publish as read are received again.
pub(crate) fn resume_recv(words: &impl StreamWords) -> Result<RecvCursor, StreamError> {
    let (tail, head) = load_positions(words)?;
    Ok(RecvCursor {
        head,
        offset: head % words.size(),
        published: head,
        tail_seen: tail,
    })
}

/// Whether `need` bytes are free past the producer's `tail`, reloading
/// `head` only when the cached copy says they are not.
#[inline(always)]
fn has_room(
    words: &impl StreamWords,
    cur: &mut SendCursor,
    need: u64,
) -> Result<bool, StreamError> {
    let size = words.size();
    if size - (cur.tail - cur.head_seen) >= need {
        return Ok(true);
    }
    // Acquire: pairs with the consumer's Release store of `head` in
    // `publish_recv`, made after it finished reading the records below it:
    // we may write over them.
    let head = words.head().load(Ordering::Acquire);
    if !positions_ok(cur.tail, head, size) || head < cur.head_seen {
        return Err(corrupt_positions(cur.tail, head));
    }
    cur.head_seen = head;
    Ok(size - (cur.tail - head) >= need)
}

/// Room for one record of up to `len` payload bytes at the producer's
/// `tail`: returns the payload's data offset. Writes a padding record
/// first when the record does not fit before the end of the area (the
/// cursor moves past it; it is published with the record).
///
/// On `WouldBlock` the caller publishes what it wrote (the consumer cannot
/// free room it has not been shown) and waits for `head` to move.
#[inline(always)]
pub(crate) fn claim_send(
    words: &impl StreamWords,
    cur: &mut SendCursor,
    len: u64,
) -> Result<u64, StreamError> {
    let size = words.size();
    let need = record_bytes(len);
    if need > size {
        return Err(StreamError::TooLarge);
    }
    let to_end = size - cur.offset;
    if need > to_end {
        // The padding alone first: once it is published and read, the
        // whole area is free for the record even if the ring was empty.
        if !has_room(words, cur, to_end)? {
            return Err(StreamError::WouldBlock);
        }
        // Relaxed: published by the Release store of `tail`.
        words
            .header(cur.offset)
            .store((TAG_PAD << 32) | (to_end - HEADER), Ordering::Relaxed);
        cur.tail += to_end;
        cur.offset = 0;
    }
    if !has_room(words, cur, need)? {
        return Err(StreamError::WouldBlock);
    }
    Ok(cur.offset + HEADER)
}

/// Frames the record `claim_send` gave room for, with `len` payload bytes
/// (at most the `len` claimed), after its payload is written. Not yet
/// visible: [`publish_send`] shows every framed record at once.
#[inline(always)]
pub(crate) fn commit_send(words: &impl StreamWords, cur: &mut SendCursor, len: u64) {
    // Relaxed: published by the Release store of `tail`.
    words
        .header(cur.offset)
        .store((TAG_RECORD << 32) | len, Ordering::Relaxed);
    let bytes = record_bytes(len);
    cur.tail += bytes;
    cur.offset += bytes;
    if cur.offset == words.size() {
        cur.offset = 0;
    }
}

/// Publishes every framed record. The caller then notifies the consumer's
/// event (whose SeqCst fence completes the Dekker pair of the wait
/// protocol, see `sync::Event`).
#[inline(always)]
pub(crate) fn publish_send(words: &impl StreamWords, cur: &mut SendCursor) {
    // Release: SYNC POINT with the consumer's Acquire load of `tail` in
    // `claim_recv` (and `resume_recv`): the headers and payloads written
    // before are visible with it.
    words.tail().store(cur.tail, Ordering::Release);
    cur.published = cur.tail;
}

/// A record the consumer may read: its payload's data offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    pub offset: u64,
    pub len: u64,
}

/// The next record at the consumer's `head`, if published, stepping over
/// padding. `max_len` is the largest payload the channel admits.
///
/// The cursor does not move past the record: [`step_recv`] does, once the
/// caller is done with it.
#[inline(always)]
pub(crate) fn claim_recv(
    words: &impl StreamWords,
    cur: &mut RecvCursor,
    max_len: u64,
) -> Result<Record, StreamError> {
    let size = words.size();
    loop {
        if cur.tail_seen == cur.head {
            // Acquire: SYNC POINT with the Release store of `tail` in
            // `publish_send`: every record below it is written.
            let tail = words.tail().load(Ordering::Acquire);
            if !positions_ok(tail, cur.head, size) || tail < cur.tail_seen {
                return Err(corrupt_positions(tail, cur.head));
            }
            cur.tail_seen = tail;
            if tail == cur.head {
                return Err(StreamError::WouldBlock);
            }
        }
        let ready = cur.tail_seen - cur.head;
        // Relaxed: ordered after the producer's store by the Acquire load
        // of `tail` above (or an earlier one that covered this record).
        let word = words.header(cur.offset).load(Ordering::Relaxed);
        let (tag, len) = (word >> 32, word & 0xffff_ffff);
        let to_end = size - cur.offset;
        let bad = StreamError::Corrupt(Corruption::Header {
            position: cur.head,
            word,
        });
        match tag {
            TAG_RECORD => {
                let bytes = record_bytes(len);
                if len > max_len || bytes > ready || bytes > to_end {
                    return Err(bad);
                }
                return Ok(Record {
                    offset: cur.offset + HEADER,
                    len,
                });
            }
            TAG_PAD if len == to_end - HEADER && to_end <= ready => {
                cur.head += to_end;
                cur.offset = 0;
            }
            _ => return Err(bad),
        }
    }
}

/// Moves past the record `claim_recv` gave (of `len` payload bytes),
/// without telling the producer yet: [`publish_recv`] does, once a batch.
#[inline(always)]
pub(crate) fn step_recv(words: &impl StreamWords, cur: &mut RecvCursor, len: u64) {
    let bytes = record_bytes(len);
    cur.head += bytes;
    cur.offset += bytes;
    if cur.offset == words.size() {
        cur.offset = 0;
    }
}

/// Tells the producer every record below the cursor is read.
#[inline(always)]
pub(crate) fn publish_recv(words: &impl StreamWords, cur: &mut RecvCursor) {
    // Release: SYNC POINT with the producer's Acquire load of `head` in
    // `has_room`: our reads of the records below it are finished before it
    // writes over them.
    words.head().store(cur.head, Ordering::Release);
    cur.published = cur.head;
}

/// The consumer's way past a damaged header: every record published so
/// far is given up (their boundaries cannot be trusted), and the consumer
/// goes on at `tail`.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn skip_to_tail(
    words: &impl StreamWords,
    cur: &mut RecvCursor,
) -> Result<u64, StreamError> {
    // Acquire: as in `claim_recv`.
    let tail = words.tail().load(Ordering::Acquire);
    if !positions_ok(tail, cur.head, words.size()) {
        return Err(corrupt_positions(tail, cur.head));
    }
    let dropped = tail - cur.head;
    cur.head = tail;
    cur.offset = tail % words.size();
    cur.tail_seen = tail;
    publish_recv(words, cur);
    Ok(dropped)
}

/// Load-only: could the producer at `tail` write `need` bytes now (or
/// should it go and look: garbage counts as yes, the claim reports it)?
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn may_send(words: &impl StreamWords, tail: u64, need: u64) -> bool {
    let head = words.head().load(Ordering::Relaxed);
    !positions_ok(tail, head, words.size()) || words.size() - (tail - head) >= need
}

/// Load-only: could the consumer at `head` read now (or report garbage)?
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn may_recv(words: &impl StreamWords, head: u64) -> bool {
    words.tail().load(Ordering::Relaxed) != head
}

#[cfg(test)]
/// Bytes published and not yet read (approximate while both sides run).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn depth_bytes(words: &impl StreamWords) -> u64 {
    let tail = words.tail().load(Ordering::Relaxed);
    let head = words.head().load(Ordering::Relaxed);
    tail.saturating_sub(head).min(words.size())
}

/// Whether records are known published past the consumer's `head`
/// without loading `tail`: a batch ends where this says no, so it never
/// chases a producer that keeps up.
#[cfg_attr(loom, allow(dead_code))]
#[inline]
pub(crate) fn cached(cur: &RecvCursor) -> bool {
    cur.tail_seen != cur.head
}

/// Bytes known published past the consumer's `head` (from its cached
/// `tail`): what it may read without loading `tail`.
#[cfg_attr(loom, allow(dead_code))]
#[inline(always)]
pub(crate) fn published_ahead(cur: &RecvCursor) -> u64 {
    cur.tail_seen - cur.head
}
