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
//! [`check`] counts the iterations and fails a model that explored only
//! one, so that a model written the other way round cannot pass unnoticed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Explores `model` exhaustively (`bound` = `None`) or with at most `bound`
/// preemptions per execution, then fails unless it explored more than one
/// interleaving. Prints the count and the time (seen with `--nocapture`).
///
/// A bound is what keeps the whole loom run of `scripts/test` within a few
/// minutes on two cores; `LOOM_MAX_PREEMPTIONS=n` in the environment
/// replaces it for a deeper (or quicker) run. Exhaustive models stay
/// exhaustive.
pub fn check(bound: Option<usize>, model: impl Fn() + Sync + Send + 'static) {
    let iterations = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&iterations);
    // `new` reads the LOOM_* environment variables (checkpoints, logging).
    let mut builder = loom::model::Builder::new();
    let bound = match (bound, builder.preemption_bound) {
        (Some(_), Some(from_env)) => Some(from_env),
        _ => bound,
    };
    builder.preemption_bound = bound;
    let start = Instant::now();
    builder.check(move || {
        // Relaxed: loom runs the iterations one after the other.
        counter.fetch_add(1, Ordering::Relaxed);
        model();
    });
    let iterations = iterations.load(Ordering::Relaxed);
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
}
