//! The bounded, adaptive spin that every shmkit waiter does before it
//! sleeps ([`Event`](super::Event) and the board/broadcast bell).
//!
//! The budget is a hint kept in shared memory beside the futex word, so all
//! waiters on one object learn together: a spin that saw the condition
//! doubles it (up to [`SPIN_MAX_US`]), one that ran out halves it (down to
//! [`SPIN_MIN_US`]), one the caller's deadline cut short teaches nothing.
//!
//! # The trap, and the probe that gets out of it
//! Halving alone can lock a round trip into sleeping on every message:
//! once both ends have cut their spins to the minimum, each one's wait
//! outlasts its spin because the *other* end is asleep and takes a wake-up
//! (25–50 µs here) to answer, so every spin fails, no budget ever grows
//! back, and the pair runs at wake-up speed for good. So a waiter whose
//! budget is at the floor spins the full [`SPIN_MAX_US`] once every
//! [`PROBE_EVERY`] waits: if the partner answers within that, the budget
//! jumps back to the maximum and the pair is fast again; if not, it drops
//! straight back to the floor. With more processes than cores, where
//! spinning only delays a partner waiting for this core, a probe costs at
//! most one spin of 40 µs per 32 waits.

#[cfg(not(loom))]
use std::cell::Cell;
#[cfg(not(loom))]
use std::time::{Duration, Instant};

#[cfg(not(loom))]
use crate::primitive::{spin_loop, AtomicU32, Ordering};

/// The longest a waiter spins before it sleeps, in µs.
pub(crate) const SPIN_MAX_US: u32 = 40;
/// The shortest spin budget the adaptation goes down to, in µs.
pub(crate) const SPIN_MIN_US: u32 = 2;
/// Polls of the condition between two reads of the clock while spinning.
pub(crate) const SPIN_BATCH: u32 = 32;
/// A waiter at the floor spins the maximum once per this many waits.
pub(crate) const PROBE_EVERY: u32 = 32;

#[cfg(not(loom))]
thread_local! {
    /// Waits this thread began at the floor budget: picks the probes.
    static FLOOR_WAITS: Cell<u32> = const { Cell::new(0) };
}

/// Spins until `cond` holds (true) or the learnt budget in `spin_us` (µs,
/// 0 = not learnt yet) or the `deadline` runs out (false), and updates the
/// budget.
#[cfg(not(loom))]
#[inline]
pub(crate) fn adaptive_spin(
    spin_us: &AtomicU32,
    cond: &mut impl FnMut() -> bool,
    deadline: Option<Instant>,
) -> bool {
    // Relaxed: the budget is a hint; a lost update between two waiters
    // only costs one less-than-ideal spin. Clamp garbage from shared memory.
    let learnt = spin_us.load(Ordering::Relaxed);
    let mut budget = if learnt == 0 || learnt > SPIN_MAX_US {
        SPIN_MAX_US
    } else {
        learnt.max(SPIN_MIN_US)
    };
    let mut probing = false;
    if budget == SPIN_MIN_US {
        let n = FLOOR_WAITS.with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n
        });
        if n % PROBE_EVERY == 0 {
            (budget, probing) = (SPIN_MAX_US, true);
        }
    }
    let start = Instant::now();
    let mut limit = Duration::from_micros(u64::from(budget));
    let mut cut_short = false;
    if let Some(deadline) = deadline {
        let left = deadline.saturating_duration_since(start);
        if left < limit {
            // A spin the caller's deadline cuts short says nothing about
            // the partner: it does not change the budget.
            (limit, cut_short) = (left, true);
        }
    }
    if limit.is_zero() {
        return false;
    }
    let succeeded = 'spin: loop {
        for _ in 0..SPIN_BATCH {
            spin_loop();
            if cond() {
                break 'spin true;
            }
        }
        if start.elapsed() >= limit {
            break false;
        }
    };
    let next = if succeeded {
        budget.saturating_mul(2).min(SPIN_MAX_US)
    } else if cut_short {
        return false;
    } else if probing {
        SPIN_MIN_US
    } else {
        (budget / 2).max(SPIN_MIN_US)
    };
    if next != learnt {
        // Relaxed: a hint; written only on change so a steady busy object
        // never dirties its cache line for it.
        spin_us.store(next, Ordering::Relaxed);
    }
    succeeded
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn success_grows_failure_shrinks_and_the_floor_probes() {
        let spin_us = AtomicU32::new(0);
        assert!(adaptive_spin(&spin_us, &mut || true, None));
        assert_eq!(spin_us.load(Ordering::Relaxed), SPIN_MAX_US);
        let mut spins = 0;
        while spin_us.load(Ordering::Relaxed) != SPIN_MIN_US {
            assert!(!adaptive_spin(&spin_us, &mut || false, None));
            spins += 1;
            assert!(spins < 10, "the budget never reached the floor");
        }
        // At the floor: within PROBE_EVERY waits one spins the maximum, and
        // a partner that answers during it restores the maximum at once.
        // The partner "answers" 10 µs after the wait began, so a test thread
        // preempted during a 4 µs floor spin (2 shared vCPUs) sees the answer
        // early and the round proves nothing: such a round is run again, up
        // to 5 times. A probe that never happens fails every round.
        let mut restored = false;
        'rounds: for _ in 0..5 {
            spin_us.store(SPIN_MIN_US, Ordering::Relaxed);
            for _ in 0..PROBE_EVERY {
                let start = Instant::now();
                let answered_late = adaptive_spin(
                    &spin_us,
                    &mut || start.elapsed() > Duration::from_micros(10),
                    None,
                );
                let now = spin_us.load(Ordering::Relaxed);
                if answered_late && now == SPIN_MAX_US {
                    restored = true;
                    break 'rounds;
                }
                if answered_late {
                    // Answered during a floor spin: preempted (see above).
                    continue 'rounds;
                }
                assert_eq!(now, SPIN_MIN_US);
            }
        }
        assert!(restored, "no probe in {PROBE_EVERY} waits at the floor");
        // A failed probe drops straight back to the floor.
        spin_us.store(SPIN_MIN_US, Ordering::Relaxed);
        for _ in 0..PROBE_EVERY {
            assert!(!adaptive_spin(&spin_us, &mut || false, None));
            assert_eq!(spin_us.load(Ordering::Relaxed), SPIN_MIN_US);
        }
        // A deadline that cuts the spin short teaches nothing.
        spin_us.store(8, Ordering::Relaxed);
        assert!(!adaptive_spin(
            &spin_us,
            &mut || false,
            Some(Instant::now())
        ));
        assert_eq!(spin_us.load(Ordering::Relaxed), 8);
    }
}
