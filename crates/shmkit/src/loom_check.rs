//! How shmkit's loom models run (built with `--cfg loom` only; not API).
//! The models: `tests/loom_sync.rs` and the `loom_models` modules next to
//! each lock-free algorithm (`scripts/test` runs them all).
//!
//! # Every role in a spawned thread
//! A model runs each concurrent role (producer, consumer, waiter,
//! notifier, reader, writer) in a thread of its own, spawned with
//! `loom::thread::spawn`. The model's main thread only sets up, spawns,
//! joins, and checks what the roles returned; sequential work before the
//! first spawn or after the last join is fine.
//!
//! Why: loom 0.7 explores only one interleaving when a spawned thread
//! loads an atomic and later stores it while the main model thread
//! accesses the same atomic concurrently (tokio-rs/loom#392: the scheduler
//! marks the main thread's alternatives `Skip`, so no branch is ever
//! backtracked to). Such a model passes whatever the algorithm does. With
//! the main thread out of every race, loom explores as it should.
//!
//! # Loom still misses interleavings: check that a model can fail
//! Loom's search (DPOR) remembers only the *last* access to each atomic, so
//! it does not always find the interleavings that matter, and which ones it
//! finds depends on how the model is written:
//! - a thread's own earlier access hides another thread's from it: a
//!   consumer that loads a slot and then swaps it is never tried between
//!   the producer's commit and its next look at that slot, unless the
//!   producer yields there (`loom::thread::yield_now`, which makes the
//!   other roles take a step);
//! - after a `yield_now` (and `loom::hint::spin_loop` is one) a thread
//!   never again reads a value it read before the yield if a newer one
//!   exists, and other threads step first: a yield in the wrong place
//!   hides a lost wake-up (so `Event` and `Bell` do not spin under loom).
//!
//! So a model is only trusted once a deliberate bug in the algorithm (an
//! ordering weakened, a fence or a compare-and-swap dropped) has made it
//! fail, and where it matters a model asserts that the outcomes showing the
//! interesting interleavings were reached ([`check`] returns them).
//!
//! [`check`] also counts the iterations and fails a model that explored
//! only one.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Explores `model` exhaustively (`bound` = `None`) or with at most `bound`
/// preemptions per execution, fails unless it explored more than one
/// interleaving, and returns the distinct values `model` returned (its
/// outcomes, to assert that the interesting ones were reached). Prints the
/// number of iterations and the time (seen with `--nocapture`).
///
/// A bound is what keeps the whole loom run of `scripts/test` within a few
/// minutes on two cores; `LOOM_MAX_PREEMPTIONS=n` in the environment
/// replaces it for a deeper (or quicker) run. Exhaustive models stay
/// exhaustive.
pub fn check<T>(bound: Option<usize>, model: impl Fn() -> T + Sync + Send + 'static) -> BTreeSet<T>
where
    T: Ord + Send + 'static,
{
    // Plain std state: it outlives the iterations and loom does not track it.
    let seen = Arc::new(Mutex::new((0usize, BTreeSet::new())));
    let record = Arc::clone(&seen);
    // `new` reads the LOOM_* environment variables (checkpoints, logging).
    let mut builder = loom::model::Builder::new();
    let bound = match (bound, builder.preemption_bound) {
        (Some(_), Some(from_env)) => Some(from_env),
        _ => bound,
    };
    builder.preemption_bound = bound;
    let start = Instant::now();
    builder.check(move || {
        let outcome = model();
        let mut seen = record.lock().unwrap();
        seen.0 += 1;
        seen.1.insert(outcome);
    });
    let (iterations, outcomes) = std::mem::take(&mut *seen.lock().unwrap());
    let name = std::thread::current()
        .name()
        .unwrap_or("loom model")
        .to_owned();
    eprintln!(
        "{name}: {iterations} iterations (preemption bound {bound:?}) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(
        iterations > 1,
        "{name} explored a single interleaving: is a role running on the \
         model's main thread? (tokio-rs/loom#392, see shmkit::loom_check)"
    );
    outcomes
}
