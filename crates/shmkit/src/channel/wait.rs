//! How a blocked sender or receiver waits: bounded spin, then the shared
//! futex, in slices of [`LIVENESS_SLICE`] so it notices dead peers.

use std::time::Instant;

use super::layout::*;
use crate::error::{ErrorKind, Result};
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
