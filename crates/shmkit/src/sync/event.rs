//! [`Event`]: "something changed", waited on across processes without a
//! syscall on the busy path.
//!
//! # Protocol
//!
//! An event is three 32-bit words in shared memory and no pointers:
//!
//! ```text
//! word      written by                          meaning
//! state     waiters (+1 / -1), notifiers (bump)  the futex word: seq << 16 | sleepers
//! reserved  nobody                               0 (was a separate sleeper count)
//! spin_us   waiters (hint, Relaxed)              learnt spin budget in µs; 0 = not learnt yet
//! ```
//!
//! The state word is the futex word itself (as in the crate-private `Bell`):
//! its high 16 bits are a sequence, bumped by a notify that finds sleepers,
//! and its low 16 bits count the waiters registered *in that sequence*. A
//! notify that bumps the sequence also zeroes the count: every waiter
//! registered before is woken and forgotten. So a waiter killed while
//! registered (in `FUTEX_WAIT`) is forgotten at the next notify, instead of
//! keeping the count one high for ever (every later notify a syscall).
//!
//! Waiting and notifying are the protocol the crate's bell (broadcasts,
//! boards) uses too, `sync::wait_word` with its `Counted` scheme: a waiter
//! checks its condition, spins for a bounded, adaptive time (below), only
//! loading, then registers (`fetch_add(1)`, noting its sequence `s`),
//! fences (`SeqCst`), checks again, and `FUTEX_WAIT`s while the state is
//! unchanged, for at most [`SLEEP_SLICE`]; a waiter that finds its
//! condition true after registering takes itself off the count (only while
//! the sequence is still `s`). A notifier, after storing whatever makes the
//! condition true, fences and loads the state; only when the count is not
//! zero does it replace the state (compare-and-swap) with the next sequence
//! and a count of zero, and `FUTEX_WAKE` every sleeper. Since the count is
//! gone, `notify_one` wakes them all too: the ones whose condition does not
//! hold register and sleep again.
//!
//! # Why no wake-up is lost
//!
//! Registering and re-checking on one side, notifying's fence and load on
//! the other, are Dekker's pattern: with a `SeqCst` fence between the write
//! and the read on both sides, either the notifier sees the registration
//! and wakes (or changes the word the kernel compares), or the waiter's
//! check sees the condition. The sequence is bumped only when someone
//! sleeps, so a busy event (its waiters all spinning or running) costs a
//! notifier one fence and one load of a line it does not write.
//!
//! # Untrusted words
//! The state lives in memory any process with the object open can write. A
//! garbage count only costs a useless `FUTEX_WAKE` (and is then zeroed); a
//! count zeroed under a sleeper would make the notifier skip the wake-up,
//! so no sleep lasts longer than [`SLEEP_SLICE`] before the waiter looks at
//! its condition again: a hostile write delays a waiter, it cannot strand it.
//! The same bound covers the sequence wrapping (2¹⁶ bumps between a
//! waiter's steps 6 and 7).
//!
//! Loom checks this (`tests/loom_sync.rs`); loom models `SeqCst` *accesses*
//! only as AcqRel but models `SeqCst` *fences* fully, one more reason the
//! protocol uses fences rather than SeqCst loads and stores. (Under loom
//! sleeps are not sliced: the futex model's timed wait returns at once.)
//!
//! The condition's own stores must come before the notify call. Any memory a
//! condition reads must be read atomically (or under a lock), as always
//! across processes.
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

use super::wait_word::{self, Counted};
use crate::error::Result;
use crate::primitive::{AtomicU32, Ordering};

/// The longest a waiter spins before it sleeps.
pub const SPIN_MAX: Duration = Duration::from_micros(SPIN_MAX_US as u64);
/// The shortest spin budget the adaptation goes down to (a waiter at it
/// still spins [`SPIN_MAX`] once every 32 waits: see `sync::spin`).
pub const SPIN_MIN: Duration = Duration::from_micros(SPIN_MIN_US as u64);
/// Polls of the condition between two reads of the clock while spinning.
pub const SPIN_BATCH: u32 = super::spin::SPIN_BATCH;

use super::spin::{SPIN_MAX_US, SPIN_MIN_US};

/// Polls of the condition a blocked channel endpoint makes before it reads
/// the clock (well under a microsecond of spinning; `Event::wait_slice`).
#[cfg(not(loom))]
const QUICK_POLLS: u32 = 32;
/// Under loom one poll: spinning hides nothing the models need.
#[cfg(loom)]
const QUICK_POLLS: u32 = 1;

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
    /// The futex word: `seq << 16 | sleepers` (see the module doc).
    state: AtomicU32,
    /// Unused, zero: keeps the layout of 12 bytes.
    reserved: AtomicU32,
    /// The learnt spin budget in µs; 0 means "not learnt" (use the maximum).
    spin_us: AtomicU32,
}

/// The longest a waiter sleeps before it looks at its condition again,
/// whatever the deadline: bounds what a hostile write to the state (a
/// zeroed count) can cost a waiter. Not on the fast path: a notify that
/// finds sleepers wakes them at once.
pub const SLEEP_SLICE: Duration = Duration::from_millis(250);

#[cfg(not(loom))]
const _: () = {
    assert!(std::mem::size_of::<Event>() == 12);
    assert!(std::mem::align_of::<Event>() == 4);
};

/// The bound of one sleep: [`SLEEP_SLICE`], not under loom (see the
/// module doc).
fn slice() -> Option<Duration> {
    #[cfg(not(loom))]
    {
        Some(SLEEP_SLICE)
    }
    #[cfg(loom)]
    {
        None
    }
}

impl Default for Event {
    fn default() -> Self {
        Self::new()
    }
}

impl Event {
    /// A new, idle event in ordinary memory (threads of one process, tests).
    pub fn new() -> Self {
        Event {
            state: AtomicU32::new(0),
            reserved: AtomicU32::new(0),
            spin_us: AtomicU32::new(0),
        }
    }

    /// The event at `offset` in `region`, checked to lie inside it, 4-byte
    /// aligned, and writable.
    ///
    /// No initialisation is needed: every bit pattern is an event (zero is an
    /// idle one, and a garbage sleeper count costs at most one useless
    /// `FUTEX_WAKE`, see the module doc). Call [`Event::init`] to reset one that held
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
        self.state.store(0, Ordering::Relaxed);
        self.reserved.store(0, Ordering::Relaxed);
        self.spin_us.store(0, Ordering::Relaxed);
    }

    /// How many waiters are registered to sleep right now: a diagnostic (it
    /// may be stale at once), useful in tests and for observability. A
    /// waiter that died registered counts until the next notify.
    pub fn sleepers(&self) -> u32 {
        // Relaxed: a snapshot for people, no decision depends on it.
        Counted::sleepers(self.state.load(Ordering::Relaxed))
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
        cond: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        wait_word::wait_until::<Counted>(&self.state, &self.spin_us, cond, deadline, slice())
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

    /// One slice of a blocked channel endpoint's wait: a few quick polls
    /// of `ready` (a partner answering within a few hundred nanoseconds, a
    /// round trip's other half, is caught before the clock reads and the
    /// slice bookkeeping, which cost about as much as the wait), then a
    /// wait until `ready` holds or `epoch` changes (an endpoint joined or
    /// left), for at most `slice` or until `deadline`: spinning first
    /// ([`wait_until`](Event::wait_until)) or not
    /// ([`wait_until_blocking`](Event::wait_until_blocking)).
    ///
    /// Returns `Some(true)` if the condition held, `Some(false)` when the
    /// slice ended, `None` when the deadline had passed already.
    pub(crate) fn wait_slice(
        &self,
        deadline: Option<Instant>,
        slice: Duration,
        spin: bool,
        epoch: impl Fn() -> u32,
        ready: impl Fn() -> bool,
    ) -> Result<Option<bool>> {
        if spin {
            for _ in 0..QUICK_POLLS {
                #[cfg(not(loom))]
                crate::primitive::spin_loop();
                if ready() {
                    return Ok(Some(true));
                }
            }
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(None);
        }
        let slice_end = now + slice;
        let until = match deadline {
            Some(d) if d < slice_end => d,
            _ => slice_end,
        };
        let epoch_before = epoch();
        let cond = || ready() || epoch() != epoch_before;
        if spin {
            self.wait_until(cond, Some(until)).map(Some)
        } else {
            self.wait_until_blocking(cond, Some(until)).map(Some)
        }
    }

    /// [`wait_until`](Event::wait_until) with a timeout instead of a deadline.
    pub fn wait_timeout(&self, cond: impl FnMut() -> bool, timeout: Duration) -> Result<bool> {
        // A timeout too large to add to now is, for all purposes, for ever.
        self.wait_until(cond, Instant::now().checked_add(timeout))
    }

    fn sleep_until(
        &self,
        cond: &mut impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        wait_word::sleep_until::<Counted>(&self.state, cond, deadline, slice())
    }

    /// Wakes the sleeping waiters, if any (and every spinning one notices).
    ///
    /// For conditions any one waiter can consume, like a semaphore's count.
    /// Makes no syscall when nobody sleeps. When some sleep it wakes them
    /// all, as [`notify_all`](Event::notify_all): the event forgets its
    /// sleepers at each wake-up (module doc), so one left asleep would not
    /// be woken by the next notify.
    #[inline]
    #[doc(alias = "FUTEX_WAKE")]
    pub fn notify_one(&self) {
        self.notify();
    }

    /// Wakes every sleeping waiter. Makes no syscall when nobody sleeps.
    #[inline]
    #[doc(alias = "FUTEX_WAKE")]
    pub fn notify_all(&self) {
        self.notify();
    }

    #[inline]
    fn notify(&self) {
        wait_word::wake_sleepers::<Counted>(&self.state);
    }

    /// [`notify_all`](Event::notify_all), and also wakes the readiness
    /// descriptors armed in `fds`, the waiter table next to this event
    /// (see [`readiness`](crate::readiness)). The same one fence; while
    /// nobody sleeps, one more load of a line only arming writes.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn notify_all_and(&self, fds: &crate::readiness::FdWaiters) {
        // The fence in `wake_sleepers` came after the caller's condition
        // store (SYNC POINT with the fence in `Readiness::arm` too).
        self.notify();
        fds.notify();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::futex;
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

    /// Issue 15, defect 6: a waiter killed while asleep does not keep the
    /// event "occupied" for ever: the next notify forgets it, and the one
    /// after that makes no syscall.
    #[test]
    fn a_sleeper_killed_in_its_sleep_is_forgotten_at_the_next_notify() {
        let region = crate::Region::anonymous(4096).unwrap();
        let event = Event::from_region(&region, 0).unwrap();
        // SAFETY: the child only waits on the event (atomics and futex
        // calls, nothing that takes a lock another thread could hold) and
        // is killed by us; it never returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let _ = event.wait_until(|| false, None);
            // SAFETY: ends the child without running the parent's handlers.
            unsafe { libc::_exit(0) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while event.sleepers() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(event.sleepers(), 1);
        // SAFETY: our own child; kill and reap it.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        assert_eq!(event.sleepers(), 1, "killed while registered");
        event.notify_all();
        assert_eq!(event.sleepers(), 0, "the dead sleeper is forgotten");
        let state = event.state.load(StdOrdering::Relaxed);
        event.notify_one();
        assert_eq!(event.state.load(StdOrdering::Relaxed), state, "no bump");
    }

    /// Issue 15, defect 6: a hostile write that zeroes the sleeper count
    /// under a sleeper (the notifier then skips the wake-up) delays a
    /// waiter without a deadline by a sleep slice at most; it does not
    /// strand it.
    #[test]
    fn a_zeroed_count_delays_a_sleeper_but_does_not_strand_it() {
        let event = Event::new();
        let flag = StdAtomicU32::new(0);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let ok = event.wait_until(|| flag.load(StdOrdering::Acquire) == 1, None);
                let _ = done_tx.send(ok.unwrap());
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while event.sleepers() == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(event.sleepers(), 1);
            // The hostile write: the count (and all) zeroed.
            event.state.store(0, StdOrdering::Relaxed);
            flag.store(1, StdOrdering::Release);
            event.notify_one();
            let woke = done_rx.recv_timeout(Duration::from_secs(10));
            if woke.is_err() {
                // Unstick the waiter so the scope can end, then fail.
                let _ = futex::wake(&event.state, u32::MAX);
            }
            assert_eq!(woke, Ok(true), "the waiter was stranded");
        });
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
