//! How a blocked sender or receiver waits: bounded spin, then the shared
//! futex, in slices of [`LIVENESS_SLICE`] so it notices dead peers.

use std::time::Instant;

use super::layout::*;
use crate::error::{Error, ErrorKind, Result};
use crate::sync::Event;

/// Waits on `event` until `ready()` or the end of one liveness slice (or the
/// deadline): `Event::wait_slice`, quick polls, then the spin-then-futex
/// wait (the loom model `a_blocked_receiver_is_woken_by_a_send` in
/// `channel::ring` runs it). Returns Ok(true) if `ready` held, Ok(false)
/// when the slice ended, and a TimedOut error when the deadline passed.
pub(super) fn wait_slice(
    inner: &Inner,
    event: &Event,
    op: &'static str,
    deadline: Option<Instant>,
    spin: bool,
    ready: impl Fn() -> bool,
) -> Result<bool> {
    let epoch = || inner.epoch();
    match event.wait_slice(deadline, LIVENESS_SLICE, spin, epoch, ready)? {
        Some(held) => Ok(held),
        None => Err(inner.err(ErrorKind::TimedOut, op, "timed out")),
    }
}

/// Which way a blocked endpoint waits: what differs between a sender
/// waiting for room and a receiver waiting for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiting {
    /// A sender: the ring is full.
    ForRoom,
    /// A receiver: the ring is empty.
    ForMessages,
}

impl Waiting {
    fn op(self) -> &'static str {
        match self {
            Waiting::ForRoom => "send to",
            Waiting::ForMessages => "receive from",
        }
    }

    fn event(self, inner: &Inner) -> &Event {
        match self {
            Waiting::ForRoom => inner.space_event(),
            Waiting::ForMessages => inner.data_event(),
        }
    }

    /// The role whose departure ends the wait.
    fn peers(self) -> u64 {
        match self {
            Waiting::ForRoom => ROLE_CONSUMER,
            Waiting::ForMessages => ROLE_PRODUCER,
        }
    }

    fn not_ready(self) -> &'static str {
        match self {
            Waiting::ForRoom => "the channel is full",
            Waiting::ForMessages => "the channel is empty",
        }
    }

    fn peers_gone(self) -> &'static str {
        match self {
            Waiting::ForRoom => "the channel is full and every receiver is gone",
            Waiting::ForMessages => "the channel is empty and every sender is gone",
        }
    }
}

/// What the claim loop needs of an endpoint besides its own attempts.
pub(super) trait Blocking {
    fn inner(&self) -> &Inner;
    fn spins(&self) -> bool;
}

/// The loop of every blocking claim (slot rings and the byte ring, both
/// ways): `attempt(end, check_dead)` until it gives something; between
/// attempts `WouldBlock` if not `block`, `Disconnected` once a slice went
/// by without progress and every peer is gone (after one `last_look`: a
/// peer may have published just before it left), else one wait slice on
/// the way's event until `ready(inner, position)` (`position` taken from
/// the endpoint after the failed attempt). A slice without progress makes
/// the next attempt ask whether whoever blocks us is dead.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn claim_loop<E: Blocking, T, P: Copy>(
    end: &mut E,
    way: Waiting,
    block: bool,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(&mut E, bool) -> Result<Option<T>>,
    last_look: impl FnOnce(&mut E) -> Result<Option<T>>,
    position: impl Fn(&E) -> P,
    ready: impl Fn(&Inner, P) -> bool,
) -> Result<T> {
    let mut check_dead = false;
    loop {
        if let Some(got) = attempt(end, check_dead)? {
            return Ok(got);
        }
        let inner = end.inner();
        if !block {
            return Err(Error::cheap(
                ErrorKind::WouldBlock,
                way.op(),
                &inner.object,
                way.not_ready(),
            ));
        }
        if check_dead && inner.all_gone(way.peers()) {
            return match last_look(end)? {
                Some(got) => Ok(got),
                None => Err(end
                    .inner()
                    .err(ErrorKind::Disconnected, way.op(), way.peers_gone())),
            };
        }
        let at = position(end);
        let inner = end.inner();
        let progressed = wait_slice(
            inner,
            way.event(inner),
            way.op(),
            deadline,
            end.spins(),
            || ready(inner, at),
        )?;
        check_dead = !progressed;
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
