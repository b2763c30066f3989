//! The one wait/wake protocol under [`Event`](super::Event) and the
//! crate's `Bell`: a 32-bit word in shared memory that is both the futex
//! word and the record of who may sleep, so a waiter killed in its sleep
//! leaves nothing behind that the next wake-up does not clear (issue 15,
//! defect 6).
//!
//! The word holds a *generation* and a *registration*; how they are packed
//! is a [`Scheme`]'s business (the event counts its sleepers, the bell
//! keeps one bit). The protocol is the same for both.
//!
//! A waiter, in [`sleep_until`], after its own check and spin:
//! 1. checks its condition; returns if it holds, or if the deadline passed;
//! 2. registers (a read-modify-write of the word, always a write of its own:
//!    see below), noting the generation `g` it registered in;
//! 3. a `SeqCst` fence;
//! 4. checks its condition: if it holds, unregisters (if the scheme can)
//!    and returns;
//! 5. loads the word: a generation other than `g` means a wake-up came
//!    (and cleared the registration): back to 1;
//! 6. `FUTEX_WAIT`s while the word equals what 5 loaded, for at most one
//!    slice (or until the deadline); then back to 4.
//!
//! A waker, in [`wake_sleepers`], after storing whatever makes the
//! condition true:
//! 1. a `SeqCst` fence;
//! 2. loads the word: if nobody is registered, returns (no write, no
//!    syscall: a busy channel never enters the kernel);
//! 3. otherwise replaces it by compare-and-swap with the next generation
//!    and no registration, and `FUTEX_WAKE`s every sleeper.
//!
//! # Why no wake-up is lost
//! Waiter steps 2–4 and waker steps 1–2 are Dekker's pattern. The fences
//! are ordered one way or the other: if the waiter's is first, the waker's
//! load sees the registration (or a later write of the word, which is
//! another registration, or another waker's bump that changed the word
//! under the sleeper), so it wakes, or the kernel's comparison in step 6
//! fails; if the waker's is first, the waiter's step-4 check sees the
//! condition. This is why registering always writes: a waiter that only
//! read another's registration would have no write of its own for the
//! fence rule to make visible. Loom checks it (`tests/loom_sync.rs`, the
//! bell's models, and the channel's wait path in `channel::ring`).
//!
//! # Untrusted words
//! Any process with the object open can write the word. A garbage
//! registration costs one useless `FUTEX_WAKE`; one cleared under a sleeper
//! makes wakers skip it, so no sleep lasts longer than the caller's slice
//! before the waiter looks at its condition again. The same bound covers
//! the generation wrapping.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::primitive::{fence, AtomicU32, Ordering};
use crate::sync::futex;

/// How a word packs its generation and registration.
pub(crate) trait Scheme {
    /// The word after one more waiter registers in `word`; `None` when it
    /// cannot add one (a garbage full count: the next wake-up clears it,
    /// and the slice bounds the sleep).
    fn register(word: u32) -> Option<u32>;
    /// The word after a registered waiter of generation `generation` left
    /// without sleeping, or `None` (nothing to take back).
    fn unregister(word: u32, generation: u32) -> Option<u32>;
    /// Whether anyone is registered.
    fn registered(word: u32) -> bool;
    /// The generation part.
    fn generation(word: u32) -> u32;
    /// The next generation, nobody registered.
    fn bumped(word: u32) -> u32;
}

/// [`Event`](super::Event)'s word: `generation << 16 | sleepers`. Waiters
/// that return without sleeping take themselves off the count, so the next
/// notify makes no syscall for them.
pub(crate) struct Counted;

const COUNT_MASK: u32 = 0xffff;
const GENERATION_ONE: u32 = 1 << 16;

impl Scheme for Counted {
    fn register(word: u32) -> Option<u32> {
        (word & COUNT_MASK != COUNT_MASK).then(|| word + 1)
    }
    fn unregister(word: u32, generation: u32) -> Option<u32> {
        (Self::generation(word) == generation && word & COUNT_MASK != 0).then(|| word - 1)
    }
    fn registered(word: u32) -> bool {
        word & COUNT_MASK != 0
    }
    fn generation(word: u32) -> u32 {
        word >> 16
    }
    fn bumped(word: u32) -> u32 {
        (word & !COUNT_MASK).wrapping_add(GENERATION_ONE)
    }
}

impl Counted {
    /// Registered sleepers in an event's word (a diagnostic).
    pub(crate) fn sleepers(word: u32) -> u32 {
        word & COUNT_MASK
    }
}

/// The bell's word: `generation << 1 | parked`. One bit, not a count: with
/// more readers than cores, woken readers wait a while for a CPU, and a
/// count of them would make every ring meanwhile a `FUTEX_WAKE` that wakes
/// nobody (measured with `examples/fanout`: 2.4 M broadcast messages a
/// second instead of 7.5 M). A waiter that finds its condition true
/// leaves the bit set: the next ring makes one needless `FUTEX_WAKE`.
pub(crate) struct Flagged;

const PARKED: u32 = 1;

impl Scheme for Flagged {
    fn register(word: u32) -> Option<u32> {
        Some(word | PARKED)
    }
    fn unregister(_: u32, _: u32) -> Option<u32> {
        None
    }
    fn registered(word: u32) -> bool {
        word & PARKED != 0
    }
    fn generation(word: u32) -> u32 {
        word >> 1
    }
    fn bumped(word: u32) -> u32 {
        (word | PARKED).wrapping_add(1)
    }
}

/// A whole wait: `cond` at once, then the bounded adaptive spin on the
/// budget `spin_us` (`sync::spin`), then [`sleep_until`].
#[inline]
pub(crate) fn wait_until<S: Scheme>(
    word: &AtomicU32,
    spin_us: &AtomicU32,
    mut cond: impl FnMut() -> bool,
    deadline: Option<Instant>,
    slice: Option<Duration>,
) -> Result<bool> {
    if cond() || spin(spin_us, &mut cond, deadline) {
        return Ok(true);
    }
    sleep_until::<S>(word, &mut cond, deadline, slice)
}

/// Spins for the learnt budget (or until `deadline`, if sooner); true if
/// `cond` became true meanwhile (`sync::spin`).
#[cfg(not(loom))]
#[inline]
fn spin(spin_us: &AtomicU32, cond: &mut impl FnMut() -> bool, deadline: Option<Instant>) -> bool {
    super::spin::adaptive_spin(spin_us, cond, deadline)
}

/// Under loom: one poll and no clock (time would make runs differ), so the
/// models always take the sleep path. And no spin hint: loom's `spin_loop`
/// is a `yield_now`, after which loom never lets the thread read again a
/// value it read before the yield if a newer one exists, nor run again
/// before another thread has taken a step. A waiter that polled, yielded,
/// then registered could then no longer miss a waker's store, and the
/// models did not notice a missing fence in the wake.
#[cfg(loom)]
fn spin(_: &AtomicU32, cond: &mut impl FnMut() -> bool, _: Option<Instant>) -> bool {
    cond()
}

/// The sleep phase of a wait (steps 1–6 of the module doc): until `cond`
/// holds (true) or `deadline` passes (false, after one more look). Each
/// `FUTEX_WAIT` lasts at most `slice` (`None`: no bound; loom models only,
/// so that a lost wake-up shows up as a deadlock).
///
/// # Errors
/// Only if `FUTEX_WAIT` fails for a reason other than a wake-up, a changed
/// word, a signal or a timeout.
#[cold]
pub(crate) fn sleep_until<S: Scheme>(
    word: &AtomicU32,
    cond: &mut impl FnMut() -> bool,
    deadline: Option<Instant>,
    slice: Option<Duration>,
) -> Result<bool> {
    'register: loop {
        // Step 1.
        if cond() {
            return Ok(true);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(cond());
        }
        // Step 2: always a write of our own (module doc). Relaxed: the
        // fence below orders it.
        let (registered, mine) =
            match word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, S::register) {
                Ok(before) => (true, S::generation(before)),
                Err(before) => (false, S::generation(before)),
            };
        // Step 3, SYNC POINT (Dekker): pairs with the SeqCst fence in
        // `wake_sleepers`. Either that waker sees our registration, or
        // our checks below see the condition it stored before.
        fence(Ordering::SeqCst);
        loop {
            // Step 4. `cond` does its own loads, ordered by the fence.
            if cond() {
                if registered {
                    unregister::<S>(word, mine);
                }
                return Ok(true);
            }
            // Step 5. Acquire: pairs with the Release bump in `wake_sleepers`.
            let now = word.load(Ordering::Acquire);
            if S::generation(now) != mine {
                continue 'register; // woken: our registration is gone
            }
            let mut timeout = slice;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    if registered {
                        unregister::<S>(word, mine);
                    }
                    return Ok(cond());
                }
                timeout = Some(timeout.map_or(left, |t| t.min(left)));
            }
            // Step 6: sleeps only while the word is still `now`. Every
            // outcome (woken, changed, interrupted, timed out) loops.
            futex::wait(word, now, timeout)?;
        }
    }
}

/// Takes a registration of generation `mine` back, if the scheme can and
/// no wake-up has already.
fn unregister<S: Scheme>(word: &AtomicU32, mine: u32) {
    // Relaxed: bookkeeping; leaving publishes nothing. A waker that reads
    // the old value makes one needless FUTEX_WAKE.
    let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
        S::unregister(w, mine)
    });
}

/// The wake phase (steps 1–3 of the module doc): wakes every sleeper if
/// anyone is registered; otherwise one fence and one load, no write and
/// no syscall. Returns whether it woke.
#[inline]
pub(crate) fn wake_sleepers<S: Scheme>(word: &AtomicU32) -> bool {
    // Step 1, SYNC POINT (Dekker): pairs with the SeqCst fence in
    // `sleep_until`, between registering and re-checking. The caller's
    // condition store comes before this fence.
    fence(Ordering::SeqCst);
    // Step 2. Relaxed: ordered by the fence above.
    let w = word.load(Ordering::Relaxed);
    S::registered(w) && bump_and_wake::<S>(word, w)
}

/// Step 3, only when someone is registered (so a busy word is not written).
#[cold]
fn bump_and_wake<S: Scheme>(word: &AtomicU32, mut w: u32) -> bool {
    loop {
        // Release: pairs with the Acquire load in step 5 of `sleep_until`.
        // A waiter between that load and FUTEX_WAIT sees the change in the
        // kernel's comparison and does not sleep.
        match word.compare_exchange_weak(w, S::bumped(w), Ordering::Release, Ordering::Relaxed) {
            Ok(_) => break,
            Err(now) if !S::registered(now) => return false, // another waker did
            Err(now) => w = now,
        }
    }
    // FUTEX_WAKE fails only for a bad address, which `word` is not; there is
    // nothing a waker could do about it anyway.
    let woken = futex::wake(word, u32::MAX);
    debug_assert!(woken.is_ok(), "FUTEX_WAKE failed: {woken:?}");
    true
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn both_schemes_clear_the_registration_with_a_new_generation() {
        for (register, bump) in [
            (
                Counted::register as fn(u32) -> Option<u32>,
                Counted::bumped as fn(u32) -> u32,
            ),
            (Flagged::register, Flagged::bumped),
        ] {
            let w = register(register(0).unwrap()).unwrap();
            let b = bump(w);
            assert_ne!(b, w);
            assert_eq!(register(b).map(|r| r != b), Some(true), "registers anew");
        }
        assert!(!Counted::registered(Counted::bumped(
            Counted::register(0).unwrap()
        )));
        assert!(!Flagged::registered(Flagged::bumped(
            Flagged::register(0).unwrap()
        )));
        assert_eq!(Counted::generation(Counted::bumped(3)), 1);
        assert_eq!(Flagged::generation(Flagged::bumped(1)), 1);
        assert_eq!(
            Counted::register(0xffff),
            None,
            "a full count is not added to"
        );
        assert_eq!(
            Counted::unregister(Counted::bumped(1), 0),
            None,
            "woken already"
        );
    }

    #[test]
    fn a_wake_with_nobody_registered_writes_nothing() {
        let word = AtomicU32::new(2 << 16); // a generation, nobody registered
        assert!(!wake_sleepers::<Flagged>(&word));
        assert!(!wake_sleepers::<Counted>(&word));
        assert_eq!(word.load(Ordering::Relaxed), 2 << 16);
    }
}
