//! Waiting with the GIL released, in slices, so that Ctrl-C still works.
//!
//! Every blocking call releases the GIL (`Python::detach`) while it waits,
//! so other Python threads run. A wait without a deadline would otherwise
//! never return to the interpreter to run signal handlers: waits are cut
//! into slices of [`SLICE`], and `KeyboardInterrupt` (or any exception a
//! signal handler raises) ends the wait between two slices.

use std::time::{Duration, Instant};

use pyo3::prelude::*;
use shmkit::ErrorKind;

use crate::errors::to_py;

/// How long one GIL-free wait lasts before signals are checked.
pub const SLICE: Duration = Duration::from_millis(100);

/// Calls `attempt(slice)` with the GIL released until it succeeds, fails
/// with something other than a timeout, or `timeout` (None: for ever) runs
/// out; between slices, runs the signal handlers.
pub fn sliced<T: Send>(
    py: Python<'_>,
    timeout: Option<Duration>,
    mut attempt: impl FnMut(Duration) -> shmkit::Result<T> + Send,
) -> PyResult<T> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
            None => SLICE,
        };
        let last = deadline.is_some_and(|d| d.saturating_duration_since(Instant::now()) <= SLICE);
        match py.detach(|| attempt(slice)) {
            Ok(v) => return Ok(v),
            Err(e) if e.kind() == ErrorKind::TimedOut && !last => py.check_signals()?,
            Err(e) => return Err(to_py(py, &e)),
        }
    }
}
