//! [`Event`]: "something changed", waited on across processes without a
//! syscall on the busy path.
//!
//! # Protocol
//!
//! An event is three 32-bit words in shared memory and no pointers:
//!
//! ```text
//! word      written by                 meaning
//! seq       notifiers (+1 per notify)  futex word: the change counter sleepers sleep on
//! sleepers  waiters (+1 / -1)          how many waiters are registered to sleep
//! spin_us   waiters (hint, Relaxed)    learnt spin budget in µs; 0 = not learnt yet
//! ```
//!
//! A waiter, in [`Event::wait_until`]:
//! 1. checks its condition; if it holds, returns (no write to shared memory);
//! 2. spins for a bounded, adaptive time (below), only loading;
//! 3. reads `seq` (Acquire), checks the condition again;
//! 4. increments `sleepers`, then a `SeqCst` fence;
//! 5. checks the condition and `seq` once more: if the condition holds it
//!    unregisters and returns; if `seq` moved it unregisters and goes back to
//!    3 without sleeping;
//! 6. `FUTEX_WAIT`s on `seq` with the value read in 3, unregisters, goes to 3.
//!
//! A notifier, in [`Event::notify_one`] / [`Event::notify_all`], after storing
//! whatever makes the condition true:
//! 1. a `SeqCst` fence;
//! 2. reads `sleepers`: if it is zero, that is all (no write, no syscall);
//! 3. otherwise increments `seq` (Release) and `FUTEX_WAKE`s on it.
//!
//! # Why no wake-up is lost
//!
//! Steps 4–5 of the waiter and 1–3 of the notifier are Dekker's pattern: each
//! side writes one word, then reads the other's. Without the fences both
//! could read the old value (store buffering: the waiter misses the change
//! and sleeps, the notifier misses the sleeper and skips the syscall). With a
//! `SeqCst` fence between the write and the read on both sides, the two fences
//! are ordered one way or the other, and C++20's fence rule gives either
//! - the waiter's fence first: the notifier's read of `sleepers` sees the
//!   registration, so it calls `FUTEX_WAKE`, which either finds the waiter
//!   queued or comes before the kernel's own comparison of `seq`, which then
//!   sees the bump and refuses to sleep; or
//! - the notifier's fence first: the waiter's step-5 check of the condition
//!   sees the condition store made before that fence, so it does not sleep.
//!
//! `seq` is bumped only when someone sleeps, so a busy event (its waiters
//! all spinning or running) costs a notifier one fence and one load of a
//! line it does not write.
//!
//! Loom checks this (`tests/loom_sync.rs`); loom models `SeqCst` *accesses*
//! only as AcqRel but models `SeqCst` *fences* fully, one more reason the
//! protocol uses fences rather than SeqCst loads and stores.
//!
//! The condition's own stores must come before the notify call. Any memory a
//! condition reads must be read atomically (or under a lock), as always
//! across processes.
//!
//! `seq` wraps after 2³² bumps; a waiter would sleep through a change only
//! if exactly a multiple of 2³² bumps happened between its steps 3 and 6.
//!
//! # Spinning
//!
//! On this kind of machine a cross-process hand-off by busy polling takes
//! ~0.1 µs and one through a sleep ~25–50 µs, so a waiter first spins up to
//! [`SPIN_MAX`] (40 µs), loading only (`spin_loop` hint; the clock is read
//! once per [`SPIN_BATCH`] polls). The budget adapts per event (glibc's
//! adaptive mutex keeps a similar estimate in the mutex itself): a spin that ended with the condition true doubles it (up to
//! the maximum), one that ran out halves it (down to [`SPIN_MIN`], 2 µs, so a
//! resumed fast partner is noticed and the budget grows back). With more
//! runnable processes than cores the partner is often not running, spins run
//! out, and waiters soon sleep almost at once instead of stealing its CPU.
//! The budget is a hint kept in the event itself, shared by every process
//! that waits on it; it is written only when it changes. A spin never
//! outlasts the caller's deadline, and one the deadline cuts short leaves the
//! budget alone.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::primitive::{fence, AtomicU32, Ordering};
use crate::sync::futex::{self, Wake};

/// The longest a waiter spins before it sleeps.
pub const SPIN_MAX: Duration = Duration::from_micros(SPIN_MAX_US as u64);
/// The shortest spin budget the adaptation goes down to (a waiter at it
/// still spins [`SPIN_MAX`] once every 32 waits: see `sync::spin`).
pub const SPIN_MIN: Duration = Duration::from_micros(SPIN_MIN_US as u64);
/// Polls of the condition between two reads of the clock while spinning.
pub const SPIN_BATCH: u32 = super::spin::SPIN_BATCH;

use super::spin::{SPIN_MAX_US, SPIN_MIN_US};

/// A process-shared "something changed" notification: waiters wait for a
/// condition of their own, notifiers wake them after making it true.
///
/// It lives in shared memory (`#[repr(C)]`, 12 bytes, 4-byte aligned, only
/// atomics); all-zero bytes are a valid, idle event, so a freshly created
/// object needs no initialisation. It holds no data: the condition is
/// whatever the caller reads, typically other atomics in the same region.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::{Duration, Instant};
/// use shmkit::sync::Event;
///
/// let event = Event::new();
/// let ready = AtomicU32::new(0);
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         ready.store(1, Ordering::Release);
///         event.notify_all();
///     });
///     let deadline = Instant::now() + Duration::from_secs(10);
///     let ok = event.wait_until(|| ready.load(Ordering::Acquire) == 1, Some(deadline))?;
///     assert!(ok);
///     Ok::<(), shmkit::Error>(())
/// })?;
/// # Ok::<(), shmkit::Error>(())
/// ```
///
/// See the [module documentation](self) for the protocol and why it loses
/// no wake-ups.
#[repr(C)]
#[derive(Debug)]
pub struct Event {
    /// The futex word: bumped by every notify.
    seq: AtomicU32,
    /// Waiters between registering (step 4) and unregistering.
    sleepers: AtomicU32,
    /// The learnt spin budget in µs; 0 means "not learnt" (use the maximum).
    spin_us: AtomicU32,
}

#[cfg(not(loom))]
const _: () = {
    assert!(std::mem::size_of::<Event>() == 12);
    assert!(std::mem::align_of::<Event>() == 4);
};

impl Default for Event {
    fn default() -> Self {
        Self::new()
    }
}

impl Event {
    /// A new, idle event in ordinary memory (threads of one process, tests).
    pub fn new() -> Self {
        Event {
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            spin_us: AtomicU32::new(0),
        }
    }

    /// The event at `offset` in `region`, checked to lie inside it, 4-byte
    /// aligned, and writable.
    ///
    /// No initialisation is needed: every bit pattern is an event (zero is an
    /// idle one, and a garbage sleeper count costs at most useless
    /// `FUTEX_WAKE` calls). Call [`Event::init`] to reset one that held
    /// something else.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) when
    /// it does not fit or is misaligned; [`ErrorKind::ReadOnly`](crate::ErrorKind::ReadOnly)
    /// for a read-only mapping (waiting writes to the event).
    #[cfg(not(loom))]
    pub fn from_region(region: &crate::Region, offset: usize) -> Result<&Event> {
        let ptr = super::place::<Event>(region, offset, "event")?;
        // SAFETY: `place` checked that 12 writable bytes at `ptr` lie inside
        // the mapping, aligned for Event; the mapping outlives the returned
        // reference because the reference borrows `region`.
        Ok(unsafe { Event::from_ptr(ptr) })
    }

    /// The event at `ptr`, in memory that other processes may share.
    ///
    /// # Safety
    /// `ptr` must be aligned to 4 bytes and valid for reads and writes of 12
    /// bytes for all of `'a` (a live, writable, shared or private mapping).
    /// Nothing else is required: the bytes are only ever accessed atomically,
    /// and every value is valid.
    #[cfg(not(loom))]
    pub unsafe fn from_ptr<'a>(ptr: *mut u8) -> &'a Event {
        debug_assert!(ptr as usize % std::mem::align_of::<Event>() == 0);
        // SAFETY: the caller guarantees alignment and validity for 'a. Event
        // is repr(C) atomics only, for which a shared reference over memory
        // that other processes write is sound (every access is atomic, and
        // atomics have interior mutability).
        unsafe { &*ptr.cast::<Event>() }
    }

    /// Resets the event to idle (all zero). Only for an event nobody waits
    /// on yet, such as one being set up before the region is published.
    pub fn init(&self) {
        // Relaxed: the region's creator publishes the whole layout later
        // (typically with a Release store of a "ready" word).
        self.seq.store(0, Ordering::Relaxed);
        self.sleepers.store(0, Ordering::Relaxed);
        self.spin_us.store(0, Ordering::Relaxed);
    }

    /// How many waiters are registered to sleep right now: a diagnostic (it
    /// may be stale at once), useful in tests and for observability.
    pub fn sleepers(&self) -> u32 {
        // Relaxed: a snapshot for people, no decision depends on it.
        self.sleepers.load(Ordering::Relaxed)
    }

    /// Waits until `cond` returns true or `deadline` passes; `None` waits
    /// for ever. Returns whether the condition held (`false`: timed out).
    ///
    /// `cond` is called many times while spinning: it should only load
    /// (touch no shared memory for writing), to be easy on the caches. It is
    /// called once more after the deadline, so a condition that became true
    /// just in time is not reported as a timeout.
    ///
    /// A notifier must make the condition true *before* it calls
    /// [`notify_one`](Event::notify_one) or [`notify_all`](Event::notify_all).
    ///
    /// # Errors
    /// Only if `FUTEX_WAIT` fails for a reason other than a wake-up, a
    /// changed word, a signal or a timeout, which a valid event rules out.
    #[doc(alias = "FUTEX_WAIT")]
    pub fn wait_until(
        &self,
        mut cond: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        if cond() || self.spin(&mut cond, deadline) {
            return Ok(true);
        }
        self.sleep_until(&mut cond, deadline)
    }

    /// Like [`wait_until`](Event::wait_until), but sleeps at once instead of
    /// spinning first: every wait that finds the condition false costs a
    /// `FUTEX_WAIT` and its wake-up. For callers that must not take CPU from
    /// others, and as the "blocking only" baseline in benchmarks.
    pub fn wait_until_blocking(
        &self,
        mut cond: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        if cond() {
            return Ok(true);
        }
        self.sleep_until(&mut cond, deadline)
    }

    /// [`wait_until`](Event::wait_until) with a timeout instead of a deadline.
    pub fn wait_timeout(&self, cond: impl FnMut() -> bool, timeout: Duration) -> Result<bool> {
        // A timeout too large to add to now is, for all purposes, for ever.
        self.wait_until(cond, Instant::now().checked_add(timeout))
    }

    /// Spins for the learnt budget (or until `deadline`, if sooner); true
    /// if `cond` became true meanwhile (see `sync::spin`).
    #[cfg(not(loom))]
    #[inline]
    fn spin(&self, cond: &mut impl FnMut() -> bool, deadline: Option<Instant>) -> bool {
        super::spin::adaptive_spin(&self.spin_us, cond, deadline)
    }

    /// Under loom: one poll and no clock (time would make runs differ), so
    /// the models always exercise the sleep path. And no spin hint: loom's
    /// `spin_loop` is a `yield_now`, after which loom never lets the thread
    /// read again a value it read before the yield if a newer one exists,
    /// nor run again before another thread has taken a step. A waiter that
    /// polled, yielded, then registered could then no longer miss a
    /// notifier's store, and the models did not notice a missing fence in
    /// `notify`.
    #[cfg(loom)]
    fn spin(&self, cond: &mut impl FnMut() -> bool, _deadline: Option<Instant>) -> bool {
        cond()
    }

    #[cold]
    fn sleep_until(
        &self,
        cond: &mut impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        loop {
            // Step 3. Acquire: pairs with the Release `seq` bump in `notify`;
            // having seen a bump, `cond` sees what was stored before it.
            let seen = self.seq.load(Ordering::Acquire);
            if cond() {
                return Ok(true);
            }
            let timeout = match deadline {
                None => None,
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(false);
                    }
                    Some(deadline - now)
                }
            };
            // Step 4: register. Relaxed: the fence below orders it.
            self.sleepers.fetch_add(1, Ordering::Relaxed);
            // SYNC POINT (Dekker): pairs with the SeqCst fence in `notify`.
            // Either that notify reads our registration and wakes us, or the
            // loads below see its `seq` bump and its condition store.
            fence(Ordering::SeqCst);
            // Step 5. Relaxed: ordered by the fence above; `cond` does its own.
            let ready = cond();
            let wake = if ready || self.seq.load(Ordering::Relaxed) != seen {
                None
            } else {
                // Step 6: sleeps only if `seq` still equals `seen`.
                Some(futex::wait(&self.seq, seen, timeout))
            };
            // Relaxed: a count; nothing is published by leaving. A notifier
            // that reads the old value makes one needless FUTEX_WAKE.
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
            if ready {
                return Ok(true);
            }
            match wake {
                None | Some(Ok(Wake::Woken | Wake::Changed | Wake::Interrupted)) => {}
                // Loop: the deadline check above decides, after one more
                // look at the condition.
                Some(Ok(Wake::TimedOut)) => {}
                Some(Err(e)) => return Err(e),
            }
        }
    }

    /// Wakes one sleeping waiter, if any (and every spinning one notices).
    ///
    /// For conditions any one waiter can consume, like a semaphore's count.
    /// Makes no syscall when nobody sleeps.
    #[inline]
    #[doc(alias = "FUTEX_WAKE")]
    pub fn notify_one(&self) {
        self.notify(1);
    }

    /// Wakes every sleeping waiter. Makes no syscall when nobody sleeps.
    #[inline]
    #[doc(alias = "FUTEX_WAKE")]
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }

    #[inline]
    fn notify(&self, count: u32) {
        // Step 1, SYNC POINT (Dekker): pairs with the SeqCst fence in
        // `sleep_until` between registering and re-checking. The caller's
        // condition store comes before this fence.
        fence(Ordering::SeqCst);
        // Step 2. Relaxed: ordered by the fence above.
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            self.bump_and_wake(count);
        }
    }

    /// Step 3, only when someone sleeps (so a busy event writes nothing).
    #[cold]
    fn bump_and_wake(&self, count: u32) {
        // Release: pairs with the Acquire `seq` load in `sleep_until`. A
        // waiter between reading `seq` and FUTEX_WAIT sees the bump in the
        // kernel's comparison and does not sleep; one already asleep is woken.
        self.seq.fetch_add(1, Ordering::Release);
        self.wake(count);
    }

    #[cold]
    fn wake(&self, count: u32) {
        // FUTEX_WAKE fails only for a bad address, which `&self.seq` is not;
        // there is nothing a notifier could do about it anyway.
        let woken = futex::wake(&self.seq, count);
        debug_assert!(woken.is_ok(), "FUTEX_WAKE failed: {woken:?}");
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32 as StdAtomicU32;
    use std::sync::atomic::Ordering as StdOrdering;

    #[test]
    fn zeroed_memory_is_an_idle_event() {
        let region = crate::Region::anonymous(4096).unwrap();
        let event = Event::from_region(&region, 64).unwrap();
        assert_eq!(event.sleepers(), 0);
        assert!(Event::from_region(&region, 2).is_err());
        assert!(Event::from_region(&region, 4090).is_err());
    }

    #[test]
    fn times_out_when_nobody_notifies() {
        let event = Event::new();
        let start = Instant::now();
        let ok = event
            .wait_timeout(|| false, Duration::from_millis(30))
            .unwrap();
        assert!(!ok);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(30), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert_eq!(event.sleepers(), 0);
    }

    #[test]
    fn a_condition_already_true_returns_at_once() {
        let event = Event::new();
        assert!(event.wait_until(|| true, None).unwrap());
        assert!(event
            .wait_until(|| true, Some(Instant::now() - Duration::from_secs(1)))
            .unwrap());
    }

    #[test]
    fn failed_spins_shrink_the_budget_and_successes_grow_it() {
        let event = Event::new();
        // A deadline that cuts the spin short teaches nothing.
        assert!(!event.wait_timeout(|| false, Duration::ZERO).unwrap());
        assert!(!event
            .wait_timeout(|| false, Duration::from_micros(5))
            .unwrap());
        assert_eq!(event.spin_us.load(StdOrdering::Relaxed), 0);
        // Spins that run out halve the budget down to the minimum.
        for _ in 0..8 {
            assert!(!event
                .wait_timeout(|| false, Duration::from_millis(1))
                .unwrap());
        }
        assert_eq!(event.spin_us.load(StdOrdering::Relaxed), SPIN_MIN_US);
        // A condition that turns true on the third poll: the spin succeeds.
        for _ in 0..8 {
            let mut polls = 0;
            assert!(event
                .wait_until(
                    || {
                        polls += 1;
                        polls >= 3
                    },
                    None
                )
                .unwrap());
        }
        assert_eq!(event.spin_us.load(StdOrdering::Relaxed), SPIN_MAX_US);
    }

    #[test]
    fn notify_wakes_a_sleeping_thread() {
        let event = Event::new();
        let flag = StdAtomicU32::new(0);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                event.wait_timeout(
                    || flag.load(StdOrdering::Acquire) == 1,
                    Duration::from_secs(10),
                )
            });
            // Wait (bounded) until the waiter is asleep, to test the futex path.
            let deadline = Instant::now() + Duration::from_secs(10);
            while event.sleepers() == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(event.sleepers(), 1);
            let start = Instant::now();
            flag.store(1, StdOrdering::Release);
            event.notify_one();
            assert!(waiter.join().unwrap().unwrap());
            assert!(start.elapsed() < Duration::from_secs(5));
        });
        assert_eq!(event.sleepers(), 0);
    }
}
