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
//! A waiter, in [`Event::wait_until`]:
//! 1. checks its condition; if it holds, returns (no write to shared memory);
//! 2. spins for a bounded, adaptive time (below), only loading;
//! 3. registers: `fetch_add(1)` on the state, which gives its sequence `s`;
//! 4. a `SeqCst` fence;
//! 5. checks the condition: if it holds, unregisters and returns;
//! 6. loads the state: if its sequence is no longer `s`, a notify came (and
//!    forgot the registration): back to 3;
//! 7. `FUTEX_WAIT`s while the state equals what 6 loaded, for at most
//!    [`SLEEP_SLICE`] (or until the deadline), then goes back to 5.
//!
//! Unregistering takes one off the count only while the sequence is still
//! `s` (compare-and-swap): after a bump the registration is gone already.
//!
//! A notifier, in [`Event::notify_one`] / [`Event::notify_all`], after storing
//! whatever makes the condition true:
//! 1. a `SeqCst` fence;
//! 2. loads the state: if the count is zero, that is all (no write, no syscall);
//! 3. otherwise replaces it (compare-and-swap) with the next sequence and a
//!    count of zero, and `FUTEX_WAKE`s every sleeper. Since the count is
//!    gone, `notify_one` wakes them all too: the ones whose condition does
//!    not hold register and sleep again.
//!
//! # Why no wake-up is lost
//!
//! Steps 3–5 of the waiter and 1–2 of the notifier are Dekker's pattern: each
//! side writes, then reads what the other wrote. With a `SeqCst` fence
//! between the write and the read on both sides, the two fences are ordered
//! one way or the other, and C++20's fence rule gives either
//! - the waiter's fence first: the notifier's load sees the registration
//!   (or a later state), so it bumps the sequence and wakes; the waiter's
//!   step 6 then sees the bump, or its `FUTEX_WAIT` finds the state changed
//!   (the kernel compares it), or it is already queued and is woken; or
//! - the notifier's fence first: the waiter's step-5 check of the condition
//!   sees the condition store made before that fence, so it does not sleep.
//!
//! The sequence is bumped only when someone sleeps, so a busy event (its
//! waiters all spinning or running) costs a notifier one fence and one load
//! of a line it does not write.
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

/// The low half of the state: registered sleepers.
const COUNT_MASK: u32 = 0xffff;
/// One step of the sequence, in the high half of the state.
const SEQ_ONE: u32 = 1 << 16;

/// The sequence part of a state word.
#[inline]
fn seq_of(state: u32) -> u32 {
    state >> 16
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
        self.state.load(Ordering::Relaxed) & COUNT_MASK
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
        'register: loop {
            if cond() {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            // Step 3: register in the current sequence. Relaxed: the fence
            // below orders it. A full count (garbage) is not added to: the
            // next notify zeroes it, and the slice bounds the sleep anyway.
            // The sequence we registered in is the one the update saw.
            let (registered, mine) =
                match self
                    .state
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                        (w & COUNT_MASK != COUNT_MASK).then(|| w + 1)
                    }) {
                    Ok(before) => (true, seq_of(before)),
                    Err(before) => (false, seq_of(before)),
                };
            // Step 4, SYNC POINT (Dekker): pairs with the SeqCst fence in
            // `notify`. Either that notify sees our registration and bumps
            // the sequence, or the checks below see its condition store.
            fence(Ordering::SeqCst);
            loop {
                // Step 5. `cond` does its own loads, ordered by the fence.
                if cond() {
                    self.unregister(registered, mine);
                    return Ok(true);
                }
                // Step 6. Acquire: pairs with the Release bump in `notify`.
                let now = self.state.load(Ordering::Acquire);
                if seq_of(now) != mine {
                    continue 'register; // notified: our registration is gone
                }
                let timeout = match deadline {
                    None => None,
                    Some(deadline) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            self.unregister(registered, mine);
                            return Ok(cond());
                        }
                        Some(left)
                    }
                };
                // Step 7: sleeps only while the state is still `now`, and at
                // most one slice (not under loom: see the module doc).
                #[cfg(not(loom))]
                let timeout = Some(timeout.map_or(SLEEP_SLICE, |t| t.min(SLEEP_SLICE)));
                match futex::wait(&self.state, now, timeout)? {
                    Wake::Woken | Wake::Changed | Wake::Interrupted | Wake::TimedOut => {}
                }
            }
        }
    }

    /// Takes our registration back, if a notify has not already (the
    /// sequence is still `mine`).
    fn unregister(&self, registered: bool, mine: u32) {
        if !registered {
            return;
        }
        // Relaxed: a count; leaving publishes nothing. A notifier that reads
        // the old value makes one needless FUTEX_WAKE.
        let _ = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                (seq_of(w) == mine && w & COUNT_MASK != 0).then(|| w - 1)
            });
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
        // Step 1, SYNC POINT (Dekker): pairs with the SeqCst fence in
        // `sleep_until` between registering and re-checking. The caller's
        // condition store comes before this fence.
        fence(Ordering::SeqCst);
        // Step 2. Relaxed: ordered by the fence above.
        let w = self.state.load(Ordering::Relaxed);
        if w & COUNT_MASK != 0 {
            self.bump_and_wake(w);
        }
    }

    /// [`notify_all`](Event::notify_all), and also wakes the readiness
    /// descriptors armed in `fds`, the waiter table next to this event
    /// (see [`readiness`](crate::readiness)). The same one fence; while
    /// nobody sleeps, one more load of a line only arming writes.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn notify_all_and(&self, fds: &crate::readiness::FdWaiters) {
        // SYNC POINT (Dekker): as in `notify`, and with the fence in
        // `Readiness::arm` for the table.
        fence(Ordering::SeqCst);
        let w = self.state.load(Ordering::Relaxed);
        if w & COUNT_MASK != 0 {
            self.bump_and_wake(w);
        }
        fds.notify();
    }

    /// Step 3, only when someone sleeps (so a busy event writes nothing).
    #[cold]
    fn bump_and_wake(&self, mut w: u32) {
        loop {
            // Next sequence, count zero: every registration is woken and
            // forgotten. Release: pairs with the Acquire load in step 6 of
            // `sleep_until`. A waiter between its load and FUTEX_WAIT sees
            // the change in the kernel's comparison and does not sleep.
            let next = (w & !COUNT_MASK).wrapping_add(SEQ_ONE);
            match self
                .state
                .compare_exchange_weak(w, next, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) if now & COUNT_MASK == 0 => return, // someone else did
                Err(now) => w = now,
            }
        }
        // FUTEX_WAKE fails only for a bad address, which `&self.state` is
        // not; there is nothing a notifier could do about it anyway.
        let woken = futex::wake(&self.state, u32::MAX);
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
