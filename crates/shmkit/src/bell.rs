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
//! One 32-bit word, the futex word: `generation << 1 | parked`.
//!
//! A waiter, in [`Bell::wait_until`]:
//! 1. checks its condition; spins for a bounded, adaptive time, only
//!    loading (as [`Event`](crate::sync::Event) does);
//! 2. sets `parked` with a `fetch_or` (a read-modify-write even when the
//!    bit is already set: see below), getting the word `w` it set;
//! 3. a `SeqCst` fence;
//! 4. checks its condition again: if it holds, returns;
//! 5. `FUTEX_WAIT`s while the word equals `w`; then goes back to 2.
//!
//! A ringer, in [`Bell::ring`], after storing whatever makes the condition
//! true:
//! 1. a `SeqCst` fence;
//! 2. loads the word: if `parked` is clear, returns (no syscall);
//! 3. otherwise adds 1 by compare-and-swap, which clears `parked` and bumps
//!    the generation, and `FUTEX_WAKE`s every sleeper.
//!
//! # Why no wake-up is lost
//! Waiter steps 2–4 and ringer steps 1–2 are Dekker's pattern. The fences
//! are ordered one way or the other:
//! - the waiter's fence first: the ringer's load sees the waiter's own
//!   `fetch_or` or a later change of the word, which is either another
//!   waiter's `fetch_or` (`parked` set: the ringer rings) or another
//!   ringer's increment (which woke, or changed the word under, the
//!   sleeper). This is why every waiter writes the word in step 2: a
//!   waiter that merely *read* another's bit would have no write of its
//!   own for the fence rule to make visible.
//! - the ringer's fence first: the waiter's step-4 check sees the
//!   condition the ringer stored before it.
//!
//! Either way the waiter does not sleep through the change: it sleeps only
//! while the word equals `w`, and any ring after step 2 changes the word.
//!
//! A waiter that sets `parked` and then finds its condition true leaves the
//! bit set: the next ring makes one needless `FUTEX_WAKE`. The generation
//! wraps after 2³¹ rings that found a sleeper; a waiter would sleep through
//! a change only if exactly a multiple of that many happened between its
//! steps 2 and 5. The loom models below check the protocol.

use std::time::Instant;

use crate::error::Result;
use crate::primitive::{fence, AtomicU32, Ordering};
use crate::sync::futex;

const PARKED: u32 = 1;

/// The longest a waiter sleeps before it looks at its condition again,
/// even when it was asked to wait for ever. The futex word lives in memory
/// any peer can write: one hostile (or buggy) store that clears `parked`
/// while a waiter sleeps makes every later ring skip its `FUTEX_WAKE`, and
/// without a bound that waiter would never wake. With it, such a store
/// costs at most one slice of delay; an idle waiter pays one wake-up per
/// slice, which is nothing.
#[cfg(not(loom))]
const SLEEP_SLICE: std::time::Duration = std::time::Duration::from_millis(200);

/// Bounds one sleep by [`SLEEP_SLICE`]. Under loom an untimed wait stays
/// untimed, so that a lost wake-up shows up in the models as a deadlock.
#[inline]
fn sliced(timeout: Option<std::time::Duration>) -> Option<std::time::Duration> {
    #[cfg(not(loom))]
    {
        Some(timeout.map_or(SLEEP_SLICE, |t| t.min(SLEEP_SLICE)))
    }
    #[cfg(loom)]
    {
        timeout
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
        mut cond: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        if cond() || self.spin(&mut cond, deadline) {
            return Ok(true);
        }
        self.sleep_until(&mut cond, deadline)
    }

    #[cold]
    fn sleep_until(
        &self,
        cond: &mut impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        loop {
            if cond() {
                return Ok(true);
            }
            let timeout = match deadline {
                None => None,
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(cond());
                    }
                    Some(deadline - now)
                }
            };
            // Step 2: register, always with a write of our own (module
            // doc). Relaxed: the fence below orders it.
            let w = self.word.fetch_or(PARKED, Ordering::Relaxed) | PARKED;
            // Step 3, SYNC POINT (Dekker): pairs with the SeqCst fence in
            // `ring`. Either that ring's load sees our registration, or our
            // check below sees what the ringer stored before ringing.
            fence(Ordering::SeqCst);
            // Step 4. `cond` does its own loads, ordered by the fence.
            if cond() {
                return Ok(true);
            }
            // Step 5: sleeps only while the word is still `w`, and never
            // longer than a slice (see SLEEP_SLICE). Every outcome (woken,
            // changed, interrupted, timed out) loops: the deadline check
            // above decides.
            futex::wait(&self.word, w, sliced(timeout))?;
        }
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
        // Step 1, SYNC POINT (Dekker): pairs with the SeqCst fence in
        // `sleep_until`, between registering and re-checking.
        fence(Ordering::SeqCst);
        // Step 2. Relaxed: ordered by the fence above.
        let mut w = self.word.load(Ordering::Relaxed);
        while w & PARKED != 0 {
            // Step 3: clear `parked`, bump the generation. Relaxed: the
            // fence above ordered our condition store before it, and the
            // futex compare in the kernel is what sleepers rely on.
            match self.word.compare_exchange_weak(
                w,
                w.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.wake();
                    return;
                }
                Err(now) => w = now,
            }
        }
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

    #[cold]
    fn wake(&self) {
        // FUTEX_WAKE fails only for a bad address, which `&self.word` is
        // not; there is nothing a ringer could do about it anyway.
        let woken = futex::wake(&self.word, u32::MAX);
        debug_assert!(woken.is_ok(), "FUTEX_WAKE failed: {woken:?}");
    }

    /// Whether a waiter may be asleep (a diagnostic).
    #[cfg(test)]
    pub(crate) fn parked(&self) -> bool {
        // Relaxed: a snapshot for tests.
        self.word.load(Ordering::Relaxed) & PARKED != 0
    }

    /// Spins for the learnt budget (or until `deadline`, if sooner); true
    /// if `cond` became true meanwhile: `Event`'s spin (`sync::spin`).
    #[cfg(not(loom))]
    #[inline]
    fn spin(&self, cond: &mut impl FnMut() -> bool, deadline: Option<Instant>) -> bool {
        crate::sync::spin::adaptive_spin(&self.spin_us, cond, deadline)
    }

    /// Under loom: one poll, no clock and no spin hint, so the models take
    /// the sleep path (no hint: loom's `spin_loop` yields, which hides
    /// interleavings from the models; see `Event`'s).
    #[cfg(loom)]
    fn spin(&self, cond: &mut impl FnMut() -> bool, _deadline: Option<Instant>) -> bool {
        cond()
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
