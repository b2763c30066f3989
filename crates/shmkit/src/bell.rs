//! [`Bell`]: "something changed", rung by a writer and waited for by many
//! readers, with at most one `FUTEX_WAKE` per sleep instead of one per
//! change.
//!
//! # Why not [`Event`](crate::sync::Event)
//! An event counts its sleepers, and a sleeper leaves the count only when
//! it runs again. With more readers than cores, readers woken by one notify
//! wait a while for a CPU, still counted, so the writer's next notifies all
//! make a `FUTEX_WAKE` that wakes nobody: measured with `examples/fanout`
//! on two cores, a broadcast writer with two subscribers or more spent
//! most of its time in those syscalls (2.4 M messages a second delivered
//! instead of 7.5 M). A bell remembers only *whether* somebody may be
//! asleep, and the first ring after that clears it.
//!
//! # Protocol
//! One 32-bit word, the futex word: `generation << 1 | parked`, run by the
//! wait/wake protocol [`Event`](crate::sync::Event) uses too
//! (`sync::wait_word`, its `Flagged` scheme; the module doc there says why
//! no wake-up is lost). A waiter first checks its condition and spins for
//! a bounded, adaptive time, only loading (`sync::spin`, as an event
//! does), then registers by setting `parked` (always a write of its own),
//! fences, checks again and sleeps while the word is unchanged; a ring
//! fences and loads the word, and only when `parked` is set bumps the
//! generation (clearing it) and makes one `FUTEX_WAKE` for everyone. The
//! loom models below check it.

use std::time::Instant;

use crate::error::Result;
use crate::primitive::AtomicU32;
#[cfg(any(test, not(loom)))]
use crate::primitive::Ordering;
#[cfg(not(loom))]
use crate::sync::futex;
use crate::sync::wait_word::{self, Flagged};

/// The longest a waiter sleeps before it looks at its condition again,
/// even when it was asked to wait for ever. The futex word lives in memory
/// any peer can write: one hostile (or buggy) store that clears `parked`
/// while a waiter sleeps makes every later ring skip its `FUTEX_WAKE`, and
/// without a bound that waiter would never wake. With it, such a store
/// costs at most one slice of delay; an idle waiter pays one wake-up per
/// slice, which is nothing.
#[cfg(not(loom))]
const SLEEP_SLICE: std::time::Duration = std::time::Duration::from_millis(200);

/// The bound of one sleep: [`SLEEP_SLICE`]. Under loom none, so that a
/// lost wake-up shows up in the models as a deadlock.
fn slice() -> Option<std::time::Duration> {
    #[cfg(not(loom))]
    {
        Some(SLEEP_SLICE)
    }
    #[cfg(loom)]
    {
        None
    }
}

/// The longest sleep of a waiter that cannot register (read-only mapping).
#[cfg(not(loom))]
pub(crate) const UNREGISTERED_SLICE: std::time::Duration = std::time::Duration::from_millis(10);

/// A wake-up for many waiters in shared memory: 8 bytes, two atomics, all
/// zero when idle. See the module documentation.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Bell {
    /// The futex word: `generation << 1 | parked`.
    word: AtomicU32,
    /// The learnt spin budget in µs; 0 means "not learnt" (the maximum).
    spin_us: AtomicU32,
}

#[cfg(not(loom))]
const _: () = {
    assert!(std::mem::size_of::<Bell>() == 8);
    assert!(std::mem::align_of::<Bell>() == 4);
};

impl Bell {
    /// A new, idle bell in ordinary memory (tests).
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Bell {
            word: AtomicU32::new(0),
            spin_us: AtomicU32::new(0),
        }
    }

    /// Waits until `cond` returns true or `deadline` passes (`None`: for
    /// ever); returns whether it held. `cond` only loads, and is called
    /// once more after the deadline. A ringer must make the condition true
    /// *before* it rings.
    ///
    /// # Errors
    /// Only if `FUTEX_WAIT` fails for a reason other than a wake-up, a
    /// changed word, a signal or a timeout.
    pub(crate) fn wait_until(
        &self,
        cond: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        wait_word::wait_until::<Flagged>(&self.word, &self.spin_us, cond, deadline, slice())
    }

    /// Like [`wait_until`](Bell::wait_until) for a waiter that may not
    /// write the bell (it mapped the object read-only): it does not
    /// register, so no ring wakes it on purpose; it sleeps on the word in
    /// slices of at most [`UNREGISTERED_SLICE`] and looks again after each
    /// (a ring that finds another waiter registered wakes it sooner).
    #[cfg(not(loom))]
    pub(crate) fn wait_until_unregistered(
        &self,
        mut cond: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        loop {
            // Relaxed: the futex compare is all the word is used for here.
            let w = self.word.load(Ordering::Relaxed);
            if cond() {
                return Ok(true);
            }
            let mut slice = UNREGISTERED_SLICE;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(cond());
                }
                slice = slice.min(left);
            }
            futex::wait(&self.word, w, Some(slice))?;
        }
    }

    /// Wakes every sleeping waiter, if any may be asleep; makes no syscall
    /// otherwise, nor for a second ring before any waiter sleeps again.
    #[inline]
    pub(crate) fn ring(&self) {
        wait_word::wake_sleepers::<Flagged>(&self.word);
    }

    /// [`ring`](Bell::ring), and also wakes the readiness descriptors
    /// armed in `fds`, the waiter table next to this bell (see
    /// [`readiness`](crate::readiness)): the same one fence, and one more
    /// load while nobody sleeps.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn ring_and(&self, fds: &crate::readiness::FdWaiters) {
        self.ring();
        // The fence in `ring` came after the caller's condition store
        // (SYNC POINT with the fence in `Readiness::arm`).
        fds.notify();
    }

    /// Whether a waiter may be asleep (a diagnostic).
    #[cfg(test)]
    pub(crate) fn parked(&self) -> bool {
        use crate::sync::wait_word::Scheme;
        // Relaxed: a snapshot for tests.
        Flagged::registered(self.word.load(Ordering::Relaxed))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32 as StdAtomicU32;
    use std::sync::atomic::Ordering as StdOrdering;
    use std::time::Duration;

    #[test]
    fn times_out_and_returns_at_once_when_true() {
        let bell = Bell::new();
        assert!(bell.wait_until(|| true, None).unwrap());
        let start = Instant::now();
        let deadline = start + Duration::from_millis(30);
        assert!(!bell.wait_until(|| false, Some(deadline)).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(30));
        // It registered, so the next ring clears the flag (one syscall) and
        // the one after makes none.
        assert!(bell.parked());
        bell.ring();
        assert!(!bell.parked());
        bell.ring();
        assert_eq!(bell.word.load(StdOrdering::Relaxed), 2);
    }

    #[test]
    fn ring_wakes_sleeping_threads() {
        let bell = Bell::new();
        let flag = StdAtomicU32::new(0);
        std::thread::scope(|s| {
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        let deadline = Instant::now() + Duration::from_secs(10);
                        bell.wait_until(|| flag.load(StdOrdering::Acquire) == 1, Some(deadline))
                    })
                })
                .collect();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !bell.parked() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(20));
            flag.store(1, StdOrdering::Release);
            bell.ring();
            for w in waiters {
                assert!(w.join().unwrap().unwrap());
            }
        });
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p shmkit --release --lib bell`
    //!
    //! Waiters wait without a deadline and the futex model really blocks,
    //! so a lost wake-up shows up as a deadlock.
    //!
    //! Every role (ringer, waiter) runs in a spawned thread of its own; the
    //! main thread only sets up, spawns, joins and checks. A role on the
    //! main thread can make loom 0.7 explore a single interleaving
    //! (tokio-rs/loom#392, see `crate::loom_check`).
    use super::*;
    use crate::loom_check::check as model;
    use loom::sync::Arc;

    /// One ringer, one waiter: the waiter always wakes.
    #[test]
    fn a_ring_wakes_the_waiter() {
        model(None, || {
            let shared = Arc::new((Bell::new(), AtomicU32::new(0)));
            let ringer = {
                let shared = shared.clone();
                loom::thread::spawn(move || {
                    // Relaxed: the bell's fences must make it visible.
                    shared.1.store(1, Ordering::Relaxed);
                    shared.0.ring();
                })
            };
            let waiter = {
                let shared = shared.clone();
                loom::thread::spawn(move || {
                    let (bell, flag) = &*shared;
                    bell.wait_until(|| flag.load(Ordering::Relaxed) == 1, None)
                        .unwrap()
                })
            };
            ringer.join().unwrap();
            assert!(waiter.join().unwrap());
        });
    }

    /// Two waiters, two rings: nobody sleeps through a change, including
    /// a waiter that finds the bit already set by the other.
    #[test]
    fn two_waiters_two_rings() {
        model(Some(2), || {
            let shared = Arc::new((Bell::new(), AtomicU32::new(0)));
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let shared = shared.clone();
                    loom::thread::spawn(move || {
                        let (bell, count) = &*shared;
                        assert!(bell
                            .wait_until(|| count.load(Ordering::Relaxed) == 2, None)
                            .unwrap());
                    })
                })
                .collect();
            let ringer = loom::thread::spawn(move || {
                let (bell, count) = &*shared;
                for _ in 0..2 {
                    count.fetch_add(1, Ordering::Relaxed);
                    bell.ring();
                }
            });
            ringer.join().unwrap();
            for w in waiters {
                w.join().unwrap();
            }
        });
    }
}
