//! The sending end: [`Sender`] and the in-place [`SendSlot`].

use std::ptr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::layout::*;
use super::ring::{self, Claim, RingError};
use super::spsc::{self, SendCursor, SpscError};
use super::stream;
use super::wait::{claim_loop, Blocking, WaitStrategy, Waiting};
use crate::error::{Error, ErrorKind, Result};
use crate::posix::ShmName;
use crate::process::{self, Home};

/// The sending end of a channel, connected as one endpoint.
///
/// Dropping it disconnects. Not `Clone`: each sender is one endpoint; make
/// another with [`Channel::sender`](super::Channel::sender).
pub struct Sender {
    pub(super) inner: Arc<Inner>,
    pub(super) entry: usize,
    /// The identity word this sender stored in its entry.
    pub(super) identity: u64,
    /// The process that made it (a forked child must not use it).
    pub(super) home: Home,
    pub(super) owner: u8,
    pub(super) count: u64,
    pub(super) wait: WaitStrategy,
    /// The producer's position in an SPSC channel; None in a shared one.
    pub(super) spsc: Option<SendCursor>,
    /// The producer's position in a stream channel (then `spsc` is None).
    pub(super) stream: Option<stream::SendCursor>,
    /// A shared-ring slot is claimed and not yet committed or handed back:
    /// found set at the next claim, the last `SendSlot` was forgotten.
    pub(super) open_claim: bool,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("channel", &self.inner.name)
            .field("endpoint", &self.entry)
            .finish()
    }
}

/// An SPSC ring's answer to one claim attempt (`found`, at position
/// `pos`), in the shape every attempt returns: None when the ring is full
/// (send) or empty (receive).
#[inline(always)]
pub(super) fn spsc_attempt(
    found: std::result::Result<usize, SpscError>,
    pos: u64,
) -> std::result::Result<Option<Claim>, SpscError> {
    match found {
        Ok(index) => Ok(Some(Claim { pos, index })),
        Err(SpscError::WouldBlock) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One claim attempt on the shared ring (`claim`: a send or a receive
/// claim) by endpoint `entry`: a claim still open from before means its
/// slot was forgotten (noted as a leak); a claim made stays open until
/// released.
#[inline(always)]
pub(super) fn shared_attempt(
    inner: &Inner,
    entry: usize,
    open_claim: &mut bool,
    claim: impl FnOnce() -> std::result::Result<Claim, RingError>,
) -> std::result::Result<Option<Claim>, SpscError> {
    if *open_claim {
        inner.note_leak(entry);
    }
    match claim() {
        Ok(claim) => {
            *open_claim = true;
            Ok(Some(claim))
        }
        Err(RingError::Corrupt { index, word }) => Err(SpscError::CorruptSlot { index, word }),
        Err(RingError::WouldBlock) => Ok(None),
    }
}

impl Blocking for Sender {
    fn inner(&self) -> &Inner {
        &self.inner
    }
    fn spins(&self) -> bool {
        self.wait == WaitStrategy::SpinThenSleep
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

    pub(super) fn send_until(
        &mut self,
        msg: &[u8],
        block: bool,
        deadline: Option<Instant>,
    ) -> Result<()> {
        if self.stream.is_some() {
            return self.stream_send(msg, block, deadline);
        }
        if !self.inner.layout.admits(msg.len()) {
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
    pub(super) fn commit(&mut self, claim: Claim, len: usize) -> Result<()> {
        if self.stream.is_some() {
            self.stream_commit(len as u64, true);
            return Ok(());
        }
        let published = self.commit_quiet(claim, len);
        self.inner.notify_data();
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
    pub(super) fn commit_quiet(&mut self, claim: Claim, len: usize) -> bool {
        let inner = &*self.inner;
        // Relaxed: ordered before the reader by commit_send's Release.
        inner
            .slot_len(claim.index)
            .store(len as u64, Ordering::Relaxed);
        match self.spsc.as_mut() {
            Some(cursor) => spsc::commit_send(inner, cursor),
            None => {
                self.open_claim = false;
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
    pub(super) fn taken_back(&self) -> Error {
        self.inner.err(
            ErrorKind::Disconnected,
            "send to",
            "the slot was taken back before the message was published (a peer took this sender for dead): not sent",
        )
    }

    #[cold]
    pub(super) fn forked(&self) -> Error {
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
        if self.stream.is_some() {
            return self.stream_send_batch(msgs);
        }
        let mut unannounced = false;
        // On the shared ring the batch claims runs (`ring::Run`): the next
        // message tries the slot after the last claim directly, and
        // `enqueue` moves once per run instead of once per message.
        let mut run = self
            .spsc
            .is_none()
            .then(|| ring::SendRun::new(&*self.inner));
        let result = (|| {
            for msg in msgs {
                if !self.inner.layout.admits(msg.len()) {
                    return Err(self.too_long(msg.len()));
                }
                let claim = match run
                    .as_mut()
                    .and_then(|r| r.extend(&*self.inner, self.owner))
                {
                    Some(claim) => {
                        self.open_claim = true;
                        claim
                    }
                    None => {
                        let claim = match self.claim_now(false) {
                            Ok(Some(claim)) => claim,
                            Err(e) => return Err(self.inner.spsc_corrupt("send to", e)),
                            Ok(None) => {
                                if unannounced {
                                    self.inner.notify_data();
                                    unannounced = false;
                                }
                                self.claim(true, None)?
                            }
                        };
                        if let Some(r) = run.as_mut() {
                            r.start_after(claim);
                        }
                        claim
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
        if let Some(r) = run.as_mut() {
            r.end(&*self.inner);
        }
        if unannounced {
            self.inner.notify_data();
        }
        result
    }

    /// The error for a message of `len` bytes the channel does not admit
    /// (see `Layout::admits`).
    pub(super) fn too_long(&self, len: usize) -> Error {
        let layout = &self.inner.layout;
        if layout.type_size != 0 {
            return self.inner.err(
                ErrorKind::InvalidArgument,
                "send to",
                format!(
                    "a message of {len} bytes into a channel of {}-byte typed values: every message must be exactly one value",
                    layout.type_size
                ),
            );
        }
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
    pub(super) fn claim_now(
        &mut self,
        check_dead: bool,
    ) -> std::result::Result<Option<Claim>, SpscError> {
        let inner = &*self.inner;
        if let Some(cursor) = self.spsc.as_mut() {
            let found = spsc::claim_send(inner, cursor);
            return spsc_attempt(found, cursor.tail);
        }
        shared_attempt(inner, self.entry, &mut self.open_claim, || {
            ring::claim_send(inner, self.owner, check_dead, &mut |o| inner.owner_dead(o))
        })
    }

    #[inline]
    pub(super) fn claim(&mut self, block: bool, deadline: Option<Instant>) -> Result<Claim> {
        if self.stream.is_some() {
            // Room for the largest message: `SendSlot` may be filled up to it.
            let at = self.stream_claim(self.inner.layout.max_msg, block, deadline)?;
            return Ok(Claim {
                pos: 0,
                index: at as usize,
            });
        }
        if !self.home.is_here() {
            return Err(self.forked());
        }
        claim_loop(
            self,
            Waiting::ForRoom,
            block,
            deadline,
            |tx, check_dead| {
                tx.claim_now(check_dead)
                    .map_err(|e| tx.inner.spsc_corrupt("send to", e))
            },
            |_| Ok(None),
            |tx| tx.spsc.map(|c| c.tail),
            |inner, tail| match tail {
                Some(tail) => spsc::may_send(inner, tail),
                None => inner.may_send(),
            },
        )
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

    /// The payload of a claimed slot (in a stream channel: of a claimed
    /// record, `index` its data offset).
    #[inline]
    fn payload(&self, claim: Claim) -> *mut u8 {
        if self.stream.is_some() {
            self.inner.stream_data(claim.index as u64)
        } else {
            self.inner.payload(claim.index)
        }
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
    pub(super) sender: &'a mut Sender,
    pub(super) claim: Option<Claim>,
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
                self.sender.payload(claim).add(offset),
                data.len(),
            )
        };
        Ok(())
    }

    /// The payload's first byte, [`capacity`](SendSlot::capacity) bytes long
    /// and 16-byte aligned (8 in a stream channel), for writing in place. No other process touches
    /// it until [`commit`](SendSlot::commit).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.sender
            .payload(self.claim.expect("a live slot has its claim"))
    }

    /// Publishes the first `len` bytes as one message.
    pub fn commit(mut self, len: usize) -> Result<()> {
        if len <= self.capacity() && !self.sender.inner.layout.admits(len) {
            return Err(self.sender.too_long(len));
        }
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
            // A stream's record is not framed: nothing to hand back.
            if self.sender.spsc.is_none()
                && self.sender.stream.is_none()
                && self.sender.home.is_here()
            {
                self.sender.open_claim = false;
                ring::abandon_send(&*self.sender.inner, claim, self.sender.owner);
                self.sender.inner.notify_data();
            }
        }
    }
}
