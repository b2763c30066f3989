//! The atomics that shmkit's lock-free algorithms are written against.
//!
//! Normally these are std's. Built with `RUSTFLAGS="--cfg loom"` they are
//! [loom](https://docs.rs/loom)'s instead, so the same algorithm code (the
//! [`Event`](crate::sync::Event) wait/notify protocol, the
//! [`Semaphore`](crate::sync::Semaphore) count) is model-checked over every
//! interleaving and every weak-memory outcome loom knows of. See
//! `tests/loom_sync.rs` for the models and the command that runs them.
//!
//! Algorithm code imports atomics, fences and the spin hint (not under
//! loom) from here and never from `std::sync::atomic` directly. Code that
//! places these types in real shared memory (casting a mapping's bytes to
//! `&AtomicU32`) only exists without `cfg(loom)`: loom's atomics are
//! bookkeeping objects, not 4 bytes.

#[cfg(not(loom))]
pub use std::hint::spin_loop;
// AtomicU64 and AtomicUsize are for algorithms to come (the channels); an
// unused crate-private re-export would warn until then.
#[cfg(not(loom))]
#[allow(unused_imports)]
pub use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};

// No spin hint under loom: loom's is a `yield_now`, and a yield stops loom
// from exploring some interleavings around it (see `Event`'s loom `spin`);
// the spin phases that use the hint are not built under loom.
#[cfg(loom)]
#[allow(unused_imports)]
pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};
