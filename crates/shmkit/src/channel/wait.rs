//! How a blocked sender or receiver waits: bounded spin, then the shared
//! futex, in slices of [`LIVENESS_SLICE`] so it notices dead peers.

use std::time::Instant;

use super::layout::*;
use crate::error::{ErrorKind, Result};
use crate::sync::Event;

/// Polls of the condition a spinning endpoint makes before it reads the
/// clock (well under a microsecond of spinning).
pub(super) const QUICK_POLLS: u32 = 32;

/// Waits on `event` until `ready()` or the end of one liveness slice (or the
/// deadline). Returns Ok(true) if `ready` held, Ok(false) when the slice
/// ended, and a TimedOut error when the deadline passed.
pub(super) fn wait_slice(
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
