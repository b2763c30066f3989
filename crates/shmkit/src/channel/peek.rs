//! [`Channel::peek`]: a look at the queued messages that takes none.
//!
//! A peek joins no endpoint table and stores nothing: it loads the
//! positions and slot words the receivers load, on a private copy of a
//! receiver's cursor, copies each committed payload out word by word
//! (relaxed atomic loads, as [`Region::read_at`](crate::region::Region::read_at)
//! does), and then loads the slot's word (or the consumers' position)
//! again: a message taken and written over while it was being copied is
//! dropped from the look, not shown mixed. Every word is checked as a
//! receiver checks it; what the protocol never writes is
//! [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt), never trusted.
//!
//! Producers publish no fence for a reader that claims nothing, so on a
//! weakly ordered CPU a message overwritten during the copy could in
//! principle pass the second check: a peek is for people and tools, not a
//! way to receive.

use std::sync::atomic::{fence, Ordering};

use super::layout::*;
use super::object::Channel;
use super::ring::{Phase, RingWords, State};
use super::{spsc, stream};
use crate::error::{ErrorKind, Result};

/// A message [`Channel::peek`] saw in the channel, still queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeekedMessage {
    /// Its position: messages (bytes on a stream channel) sent before it.
    pub position: u64,
    /// Its bytes, as copied out.
    pub bytes: Vec<u8>,
}

const OP: &str = "peek into";

impl Channel {
    /// Up to `max` of the messages queued now, oldest first, without taking
    /// them: nothing in the channel changes (no endpoint joins, no word is
    /// stored), and the next receiver gets them as if nobody had looked.
    ///
    /// A message a receiver takes while the peek copies it is left out; one
    /// a receiver has taken but not yet released may still be shown. On
    /// the shared ring the look stops at the first position not yet
    /// committed, where a receiver would wait too.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupt`] when a position, slot word, length or record
    /// header is one the protocol never writes (nothing is shown then:
    /// what follows a damaged word cannot be trusted).
    pub fn peek(&self, max: usize) -> Result<Vec<PeekedMessage>> {
        let layout = self.inner.layout;
        if layout.stream() {
            self.peek_stream(max)
        } else if layout.spsc() {
            self.peek_spsc(max)
        } else {
            self.peek_shared(max)
        }
    }

    /// Copies the payload of slot `index` (`len` checked by the caller).
    fn peek_slot(&self, index: usize, len: u64) -> Result<Vec<u8>> {
        let layout = &self.inner.layout;
        let offset = SLOTS_START as u64 + index as u64 * layout.slot_size + layout.payload_offset;
        self.inner.region.read_vec(offset as usize, len as usize)
    }

    /// A slot's length word, checked against the channel's largest message.
    fn peek_len(&self, index: usize) -> Result<u64> {
        let inner = &*self.inner;
        // Relaxed: ordered after the producer's store by the Acquire load of
        // the slot's word before it. Untrusted: checked here.
        let len = inner.slot_len(index).load(Ordering::Relaxed);
        if len > inner.layout.max_msg {
            return Err(inner.err(
                ErrorKind::Corrupt,
                OP,
                format!(
                    "slot {index} says its message has {len} bytes, more than the channel's largest ({})",
                    inner.layout.max_msg
                ),
            ));
        }
        Ok(len)
    }

    /// The multi-producer ring: committed slots from the consumers'
    /// position on, in order.
    fn peek_shared(&self, max: usize) -> Result<Vec<PeekedMessage>> {
        let inner = &*self.inner;
        let cap = inner.layout.capacity;
        let mut out = Vec::new();
        // Acquire: pairs with the Release CASes that advance `dequeue`.
        let mut pos = inner.dequeue_pos().load(Ordering::Acquire);
        for _ in 0..cap {
            if out.len() >= max {
                break;
            }
            let index = (pos & (cap - 1)) as usize;
            // Acquire: pairs with the producer's Release store of FULL: the
            // payload and length are written before.
            let word = inner.slot_state(index).load(Ordering::Acquire);
            let state = State::decode(word);
            if state.pos == pos && state.phase == Phase::Full {
                let len = self.peek_len(index)?;
                let bytes = self.peek_slot(index, len)?;
                // Acquire: the copy above is done before the word is loaded
                // again; unchanged, no receiver freed the slot meanwhile.
                fence(Ordering::Acquire);
                if inner.slot_state(index).load(Ordering::Relaxed) == word {
                    out.push(PeekedMessage {
                        position: pos,
                        bytes,
                    });
                }
            } else if (state.pos == pos && state.phase == Phase::Reading)
                || (state.pos == pos.wrapping_add(cap) && state.phase == Phase::Empty)
            {
                // Taken by a receiver (the position counter lags): not queued.
            } else if state.pos == pos {
                // Free or being written: nothing committed from here on.
                break;
            } else if state.pos.wrapping_add(cap) == pos
                && matches!(state.phase, Phase::Full | Phase::Reading)
            {
                // The counter ran ahead of a slot a receiver still holds.
                break;
            } else if inner.dequeue_pos().load(Ordering::Acquire) > pos {
                // Acquire: as above. Receivers and producers lapped the
                // look: what it saw so far was queued then; stop there.
                break;
            } else {
                return Err(inner.corrupt(OP, index, word));
            }
            pos = pos.wrapping_add(1);
        }
        Ok(out)
    }

    /// The single-producer ring: published slots from the consumer's
    /// stored position on.
    fn peek_spsc(&self, max: usize) -> Result<Vec<PeekedMessage>> {
        let inner = &*self.inner;
        let mut cur = spsc::resume_recv(inner).map_err(|e| inner.spsc_corrupt(OP, e))?;
        let mut out = Vec::new();
        while out.len() < max {
            let index = match spsc::claim_recv(inner, &cur) {
                Ok(index) => index,
                Err(spsc::SpscError::WouldBlock) => break,
                // The consumer and producer moved past the look (the slot
                // holds a later lap): what it saw so far was queued then.
                Err(_) if spsc_overtaken(inner, cur.head) => break,
                Err(e) => return Err(inner.spsc_corrupt(OP, e)),
            };
            let len = match self.peek_len(index) {
                Err(_) if spsc_overtaken(inner, cur.head) => break,
                other => other?,
            };
            let bytes = self.peek_slot(index, len)?;
            // Acquire: the copy is done before the sequence is loaded again;
            // still `head + 1`, the producer has not written the slot anew.
            fence(Ordering::Acquire);
            let word = inner.slot_state(index).load(Ordering::Relaxed);
            if word != cur.head.wrapping_add(1) {
                // Taken and written over while copied: stop the look here.
                break;
            }
            out.push(PeekedMessage {
                position: cur.head,
                bytes,
            });
            spsc::step_recv(&mut cur);
        }
        Ok(out)
    }

    /// The byte ring: records from the consumer's stored position up to
    /// the producer's published one.
    fn peek_stream(&self, max: usize) -> Result<Vec<PeekedMessage>> {
        let inner = &*self.inner;
        let err = |e| inner.stream_error(OP, e);
        let mut cur = stream::resume_recv(inner).map_err(err)?;
        let mut out = Vec::new();
        while out.len() < max {
            let record = match stream::claim_recv(inner, &mut cur, inner.layout.max_msg) {
                Ok(record) => record,
                Err(stream::StreamError::WouldBlock) => break,
                // The consumer moved past the look and the producer wrote
                // over what it was reading: what it saw so far was queued.
                Err(_) if stream_head(inner) > cur.head => break,
                Err(e) => return Err(err(e)),
            };
            let start = cur.head;
            let bytes = inner
                .region
                .read_vec(SLOTS_START + record.offset as usize, record.len as usize)?;
            // Acquire: the copy is done before `head` is loaded. The
            // producer writes over a record only after the consumer's
            // `head` has passed its start: not passed, the copy is whole.
            fence(Ordering::Acquire);
            if stream_head(inner) > start {
                // Consumed (and perhaps written over) while copied: stop.
                break;
            }
            out.push(PeekedMessage {
                position: start,
                bytes,
            });
            stream::step_recv(inner, &mut cur, record.len);
        }
        Ok(out)
    }
}

/// Whether the SPSC consumer's stored position is past `head`, which a
/// look that started behind it then cannot trust.
fn spsc_overtaken(inner: &Inner, head: u64) -> bool {
    // Acquire: pairs with the consumer's Release store of `dequeue`.
    inner.dequeue_pos().load(Ordering::Acquire) > head
}

/// The stream consumer's published position.
fn stream_head(inner: &Inner) -> u64 {
    use stream::StreamWords;
    // Relaxed: ordered by the caller's fence.
    inner.head().load(Ordering::Relaxed)
}
