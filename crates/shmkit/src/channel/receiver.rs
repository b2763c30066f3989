//! The receiving end: [`Receiver`], batches, and the in-place [`RecvSlot`].

use std::ptr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::layout::*;
use super::ring::{self, Claim};
use super::sender::{shared_attempt, spsc_attempt};
use super::spsc::{self, RecvCursor, SpscError};
use super::stream;
use super::wait::{claim_loop, Blocking, WaitStrategy, Waiting};
use crate::error::{Error, ErrorKind, Result};
use crate::posix::ShmName;
use crate::process::{self, Home};

/// The receiving end of a channel, connected as one endpoint.
pub struct Receiver {
    pub(super) inner: Arc<Inner>,
    pub(super) entry: usize,
    /// The identity word this receiver stored in its entry.
    pub(super) identity: u64,
    /// The process that made it (a forked child must not use it).
    pub(super) home: Home,
    pub(super) owner: u8,
    pub(super) count: u64,
    pub(super) wait: WaitStrategy,
    /// The consumer's position in an SPSC channel; None in a shared one.
    pub(super) spsc: Option<RecvCursor>,
    /// The consumer's position in a stream channel (then `spsc` is None).
    pub(super) stream: Option<stream::RecvCursor>,
    /// The damaged slot (index, word) the last receive reported: found
    /// again unchanged, it is skipped (`corrupt_slot`).
    pub(super) last_corrupt: Option<(usize, u64)>,
    /// A shared-ring slot is claimed and not yet released: found set at
    /// the next claim, the last `RecvSlot` was forgotten.
    pub(super) open_claim: bool,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("channel", &self.inner.name)
            .field("endpoint", &self.entry)
            .finish()
    }
}

impl Blocking for Receiver {
    fn inner(&self) -> &Inner {
        &self.inner
    }
    fn spins(&self) -> bool {
        self.wait == WaitStrategy::SpinThenSleep
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

    pub(super) fn recv_into_until(
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
    /// On a stream channel ([`ChannelOptions::stream`](super::ChannelOptions::stream))
    /// "already there" is every record the producer had published when the
    /// first one was found (the batch does not chase a producer that keeps
    /// up), and the position is published once, when the batch ends: a
    /// receiver killed inside `read` leaves the whole batch to the next.
    ///
    /// Each slot is freed as soon as `read` returns for it, as a single
    /// receive frees it: a receiver killed inside a batch leaves only the
    /// message `read` was working on (SPSC: to the next receiver, which
    /// gets it again; the shared ring: lost), never the ones before it.
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
        if self.stream.is_some() {
            return self.stream_recv_batch(max, deadline, read);
        }
        let mut taken = 0;
        // On the shared ring the batch claims runs (`ring::Run`): the next
        // message is tried in the slot after the last claim directly, and
        // `dequeue` moves once per run instead of once per message.
        let mut run = self
            .spsc
            .is_none()
            .then(|| ring::RecvRun::new(&*self.inner));
        let result = (|| {
            let mut slot = self.claim_slot(true, deadline)?;
            slot.notify = false;
            if let Some(r) = run.as_mut() {
                r.start_after(slot.claim);
            }
            taken = 1;
            read(&slot)?;
            drop(slot);
            self.publish_consumed();
            while taken < max {
                let claim = match run
                    .as_mut()
                    .and_then(|r| r.extend(&*self.inner, self.owner))
                {
                    Some(claim) => {
                        self.open_claim = true;
                        claim
                    }
                    None => {
                        // claim_now, not claim_slot: an empty ring ends the
                        // batch without building a WouldBlock error.
                        let claim = match self.claim_now(false) {
                            Ok(Some(claim)) => claim,
                            Ok(None) => break,
                            Err(e) => return Err(self.corrupt_slot(e)),
                        };
                        if let Some(r) = run.as_mut() {
                            r.start_after(claim);
                        }
                        claim
                    }
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
                drop(slot);
                self.publish_consumed();
            }
            Ok(())
        })();
        if let Some(r) = run.as_mut() {
            r.end(&*self.inner);
        }
        // A batch that stopped on an error frees the slot it stopped at.
        self.publish_consumed();
        if taken > 0 {
            self.inner.space_event().notify_all();
        }
        result.map(|()| taken)
    }

    /// Receives up to `max` messages as [`recv_batch`](Receiver::recv_batch)
    /// does, copying each out into `out` (appended: clear it to reuse its
    /// buffers). Returns how many were received.
    ///
    /// On a stream channel this is the fastest way to drain records: no
    /// callback and no slot per record, only each header's checks and the
    /// copy (a receiver killed inside it leaves the whole batch to the next,
    /// as `recv_batch` does).
    ///
    /// # Errors
    /// As [`recv_batch`](Receiver::recv_batch).
    pub fn recv_batch_into(
        &mut self,
        out: &mut Messages,
        max: usize,
        deadline: Option<Instant>,
    ) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        if self.stream.is_some() {
            return self.stream_recv_into(out, max, deadline);
        }
        self.recv_batch(max, deadline, |slot| {
            let start = out.bytes.len();
            out.bytes.resize(start + slot.len(), 0);
            slot.read_at(0, &mut out.bytes[start..])?;
            out.ends.push(out.bytes.len());
            Ok(())
        })
    }

    /// Like [`recv_slot`](Receiver::recv_slot), waiting until `deadline` at
    /// most. Reads no clock when a message is there.
    pub fn recv_slot_deadline(&mut self, deadline: Instant) -> Result<RecvSlot<'_>> {
        self.claim_slot(true, Some(deadline))
    }

    /// One attempt at the next message: None when the ring is empty (the
    /// small error type as in `Sender::claim_now`).
    #[inline(always)]
    pub(super) fn claim_now(
        &mut self,
        check_dead: bool,
    ) -> std::result::Result<Option<Claim>, SpscError> {
        let inner = &*self.inner;
        if let Some(cursor) = self.spsc.as_ref() {
            return spsc_attempt(spsc::claim_recv(inner, cursor), cursor.head);
        }
        shared_attempt(inner, self.entry, &mut self.open_claim, || {
            ring::claim_recv(inner, self.owner, check_dead, &mut |o| inner.owner_dead(o))
        })
    }

    /// Frees a claimed slot once its message is copied out. With `publish`
    /// off (inside a batch) an SPSC consumer only moves its own cursor; the
    /// batch, or any later release, tells the producer.
    ///
    /// Does nothing in a forked child: the claim is the parent's. On the
    /// shared ring the release is a compare-and-swap from our claim's
    /// state, so a slot a peer took back meanwhile is left alone.
    #[inline(always)]
    pub(super) fn release(&mut self, claim: Claim, publish: bool) {
        if !self.home.is_here() {
            return;
        }
        let inner = &*self.inner;
        if let Some(cursor) = self.stream.as_mut() {
            // The cursor stepped past the record when it was claimed.
            if publish && cursor.unpublished() {
                stream::publish_recv(inner, cursor);
                self.publish_count();
            }
            return;
        }
        match self.spsc.as_mut() {
            Some(cursor) if !publish => spsc::step_recv(cursor),
            Some(cursor) => {
                spsc::release_recv(inner, cursor);
                self.publish_count();
            }
            None => {
                self.open_claim = false;
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
    pub(super) fn corrupt_slot(&mut self, e: SpscError) -> Error {
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

    /// Inside a batch: tells an SPSC producer that every slot up to the
    /// cursor is free (the shared ring's slots are freed one by one
    /// already). A plain store to the consumer's own position line, which
    /// the producer reads only when it thinks the ring is full: a consumer
    /// killed mid-batch then leaves only the message it was reading to be
    /// delivered again (issue 15, defect 5).
    #[inline(always)]
    fn publish_consumed(&self) {
        if let Some(cursor) = &self.spsc {
            spsc::publish_recv(&*self.inner, cursor);
            self.publish_count();
        }
    }

    /// Shows this receiver's count in its endpoint entry (SPSC: after the
    /// position is published, see `checked_len`).
    #[inline(always)]
    pub(super) fn publish_count(&self) {
        // Relaxed: a statistic; only this endpoint writes it.
        self.inner
            .endpoint_count(self.entry)
            .store(self.count, Ordering::Relaxed);
    }

    /// Turns a claimed slot into a [`RecvSlot`], checking the length the
    /// producer wrote.
    #[inline(always)]
    pub(super) fn take(&mut self, claim: Claim) -> Result<RecvSlot<'_>> {
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
    pub(super) fn checked_len(&mut self, claim: Claim) -> Result<usize> {
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
    pub(super) fn claim_slot(
        &mut self,
        block: bool,
        deadline: Option<Instant>,
    ) -> Result<RecvSlot<'_>> {
        if !self.home.is_here() {
            return Err(process::forked_error(
                "receive from",
                self.inner.name.as_str(),
                "receiver",
            ));
        }
        if self.stream.is_some() {
            let rec = self.stream_claim(block, deadline)?;
            return Ok(RecvSlot {
                receiver: self,
                claim: Claim {
                    pos: 0,
                    index: rec.offset as usize,
                },
                len: rec.len as usize,
                notify: true,
            });
        }
        let claim = claim_loop(
            self,
            Waiting::ForMessages,
            block,
            deadline,
            |rx, check_dead| rx.claim_now(check_dead).map_err(|e| rx.corrupt_slot(e)),
            |rx| {
                #[cfg(test)]
                tests::before_last_look();
                // What it claims is delivered: dropping the claim would lose
                // the message and, on the shared ring, leave its slot
                // READING under a live owner, wedging every sender a lap on.
                rx.claim_now(true).map_err(|e| rx.corrupt_slot(e))
            },
            |rx| rx.spsc.map(|c| c.head),
            |inner, head| match head {
                Some(head) => spsc::may_recv(inner, head),
                None => inner.may_recv(),
            },
        )?;
        self.take(claim)
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

/// Readiness descriptors (see [`crate::readiness`]).
impl Receiver {
    /// A descriptor that becomes readable when a message may be there, once
    /// armed with [`arm_readiness`](Receiver::arm_readiness); for event
    /// loops (`poll`, `epoll`, tokio, asyncio). It keeps the channel mapped.
    ///
    /// # Errors
    /// [`ErrorKind::LimitExceeded`] when all
    /// [`MAX_FD_WAITERS`](crate::readiness::MAX_FD_WAITERS) slots are held
    /// by live waiters; the OS reason if no socket can be made.
    pub fn readiness(&self) -> Result<crate::readiness::Readiness> {
        let table: *const crate::readiness::FdWaiters = self.inner.fd_waiters();
        let keep: Arc<dyn Send + Sync> = self.inner.clone();
        // SAFETY: the table lies in the mapping Inner owns; `keep` holds it.
        unsafe { crate::readiness::Readiness::register(table, keep, &self.inner.object) }
    }

    /// Whether every sender that connected is gone (killed ones too; reads
    /// `/proc`, so not for a hot path). [`try_recv`](Receiver::try_recv)
    /// never waits long enough to tell, so a caller waiting on a readiness
    /// descriptor asks this after a sleep that ended by its timeout; if it
    /// says yes, one more `try_recv` gets what they sent last, and
    /// [`ErrorKind::WouldBlock`] then means the channel is done.
    pub fn senders_gone(&self) -> bool {
        self.inner.all_gone(ROLE_PRODUCER)
    }

    /// Declares that the caller is about to sleep on `readiness`:
    /// [`Arm::Ready`](crate::readiness::Arm::Ready) if a message is there
    /// already (call [`try_recv`](Receiver::try_recv), do not sleep), else
    /// [`Arm::Sleep`](crate::readiness::Arm::Sleep). Poll with a timeout of
    /// at most [`readiness::SLICE`](crate::readiness::SLICE), then
    /// `try_recv` again (and after a timeout, see
    /// [`senders_gone`](Receiver::senders_gone)).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a descriptor made for another
    /// object.
    pub fn arm_readiness(
        &self,
        readiness: &crate::readiness::Readiness,
    ) -> Result<crate::readiness::Arm> {
        let inner = &*self.inner;
        readiness.check(inner.fd_waiters(), inner.name.as_str())?;
        if let Some(cursor) = self.stream.as_ref() {
            let head = cursor.head;
            return Ok(readiness.arm(|| stream::may_recv(inner, head)));
        }
        let head = self.spsc.map(|c| c.head);
        Ok(readiness.arm(|| match head {
            Some(head) => spsc::may_recv(inner, head),
            None => inner.may_recv(),
        }))
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

/// Messages copied out by [`Receiver::recv_batch_into`]: their bytes end to
/// end in one buffer, so a batch costs no allocation once the buffers have
/// grown.
#[derive(Debug, Clone, Default)]
pub struct Messages {
    pub(super) bytes: Vec<u8>,
    /// Where each message ends in `bytes`.
    pub(super) ends: Vec<usize>,
}

impl Messages {
    /// No messages.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many messages it holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Forgets the messages, keeping the buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// Message `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.bytes[start..end])
    }

    /// The messages in the order received.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// A received message still in its slot; the slot is freed on drop.
pub struct RecvSlot<'a> {
    pub(super) receiver: &'a mut Receiver,
    pub(super) claim: Claim,
    pub(super) len: usize,
    /// Publish the release (SPSC) and wake a blocked sender when released;
    /// off inside a batch, which does both once at its end.
    pub(super) notify: bool,
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

    #[inline(always)]
    pub(super) fn payload(&self) -> *const u8 {
        if self.receiver.stream.is_some() {
            // A stream's claim holds the record's data offset.
            self.receiver.inner.stream_data(self.claim.index as u64)
        } else {
            self.receiver.inner.payload(self.claim.index)
        }
    }

    /// The message's first byte, [`len`](RecvSlot::len) bytes long, 16-byte
    /// aligned (8 in a stream channel). Only a misbehaving process writes it while the slot is held;
    /// copy out or read with care rather than forming a reference.
    pub fn as_ptr(&self) -> *const u8 {
        self.payload()
    }

    /// Copies `buf.len()` bytes at `offset` out of the message.
    #[inline(always)]
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        if offset
            .checked_add(buf.len())
            .is_none_or(|end| end > self.len)
        {
            return Err(self.out_of_range(offset, buf.len()));
        }
        // SAFETY: the range is inside the held slot's message (checked).
        unsafe {
            super::stream::copy_message(self.payload().add(offset), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    /// The error for a read past the message (kept out of line: `read_at`
    /// is inlined into every batch callback).
    #[cold]
    #[inline(never)]
    fn out_of_range(&self, offset: usize, len: usize) -> Error {
        self.receiver.inner.err(
            ErrorKind::InvalidArgument,
            "read from",
            format!(
                "{len} bytes at offset {offset} exceed the message's {} bytes",
                self.len
            ),
        )
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
    #[inline(always)]
    fn drop(&mut self) {
        // A batch (notify off) frees its slots at once at its end.
        self.receiver.release(self.claim, self.notify);
        if self.notify {
            self.receiver.inner.space_event().notify_one();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::channel::{Channel, ChannelOptions};
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

    use crate::shared_object::TestName as Name;

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
