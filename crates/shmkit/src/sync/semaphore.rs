//! [`Semaphore`]: a lock-free counting semaphore in shared memory, waiting
//! with the [`Event`] protocol.
//!
//! The count is one atomic word changed only by compare-and-swap (so it never
//! goes below zero or wraps past `u32::MAX`); waiting spins and sleeps on the
//! embedded event. Posting when nobody sleeps is two atomic read-modify-writes
//! and a fence: no syscall.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::primitive::{AtomicU32, Ordering};
use crate::sync::Event;

/// A process-shared counting semaphore made only of atomics.
///
/// `#[repr(C)]`, 16 bytes, 4-byte aligned: a count and an [`Event`]. All-zero
/// bytes are a semaphore with count 0, so a fresh object needs no
/// initialisation; [`Semaphore::init`] sets another starting value.
///
/// Unlike a `sem_t`, it holds nothing but atomics, so any bit pattern is a
/// valid semaphore and a safe reference to one in shared memory is sound
/// whatever other processes write ([`Semaphore::from_region`] is safe).
///
/// ```
/// use std::time::Duration;
/// use shmkit::{sync::Semaphore, Region};
///
/// let region = Region::anonymous(4096)?; // shared with children forked later
/// let sem = Semaphore::from_region(&region, 0)?;
/// sem.init(1);
/// assert!(sem.try_wait());
/// assert!(!sem.wait_timeout(Duration::from_millis(1))?);
/// sem.post()?;
/// assert_eq!(sem.value(), 1);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct Semaphore {
    /// The count: decremented by CAS in `try_wait`, incremented in `post`.
    count: AtomicU32,
    /// Waiters sleep here when the count is zero.
    event: Event,
}

#[cfg(not(loom))]
const _: () = {
    assert!(std::mem::size_of::<Semaphore>() == 16);
    assert!(std::mem::align_of::<Semaphore>() == 4);
};

impl Semaphore {
    /// The largest count: a [`post`](Semaphore::post) beyond it fails.
    pub const MAX: u32 = u32::MAX;

    /// A semaphore in ordinary memory (threads of one process, tests).
    pub fn new(value: u32) -> Self {
        Semaphore {
            count: AtomicU32::new(value),
            event: Event::new(),
        }
    }

    /// The semaphore at `offset` in `region`, checked to lie inside it,
    /// 4-byte aligned and writable. Zeroed memory is a semaphore with count 0.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) when
    /// it does not fit or is misaligned; [`ErrorKind::ReadOnly`](crate::ErrorKind::ReadOnly)
    /// for a read-only mapping.
    #[cfg(not(loom))]
    pub fn from_region(region: &crate::Region, offset: usize) -> Result<&Semaphore> {
        let ptr = super::place::<Semaphore>(region, offset, "semaphore")?;
        // SAFETY: `place` checked bounds, alignment and writability; the
        // reference borrows `region`, which keeps the mapping alive.
        Ok(unsafe { Semaphore::from_ptr(ptr) })
    }

    /// The semaphore at `ptr`, in memory other processes may share.
    ///
    /// # Safety
    /// `ptr` must be 4-byte aligned and valid for reads and writes of 16
    /// bytes for all of `'a`. Any contents are allowed.
    #[cfg(not(loom))]
    pub unsafe fn from_ptr<'a>(ptr: *mut u8) -> &'a Semaphore {
        debug_assert!(ptr as usize % std::mem::align_of::<Semaphore>() == 0);
        // SAFETY: aligned and valid for 'a (the caller's promise); Semaphore
        // is repr(C) atomics only, accessed only atomically, valid for every
        // bit pattern, so a shared reference over shared memory is sound.
        unsafe { &*ptr.cast::<Semaphore>() }
    }

    /// Sets the count to `value` and resets the event: for a semaphore
    /// nobody uses yet (while setting up a region, before publishing it).
    pub fn init(&self, value: u32) {
        // Relaxed: the region's creator publishes the layout afterwards
        // (a Release store of its ready word pairs with the openers' Acquire).
        self.count.store(value, Ordering::Relaxed);
        self.event.init();
    }

    /// The current count; may be stale as soon as it is read.
    pub fn value(&self) -> u32 {
        // Relaxed: a snapshot; no data is handed over by reading it.
        self.count.load(Ordering::Relaxed)
    }

    /// How many waiters are registered to sleep (a diagnostic).
    pub fn sleepers(&self) -> u32 {
        self.event.sleepers()
    }

    /// Takes one unit if the count is above zero, without waiting.
    #[inline]
    pub fn try_wait(&self) -> bool {
        // Relaxed: only a first guess for the CAS below.
        let mut count = self.count.load(Ordering::Relaxed);
        while count > 0 {
            // Acquire on success: pairs with the Release CAS in `post`, so
            // what the poster wrote before posting is visible to us.
            match self.count.compare_exchange_weak(
                count,
                count - 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => count = now,
            }
        }
        false
    }

    /// Waits until a unit can be taken, then takes it.
    ///
    /// # Errors
    /// Only if the futex call fails unexpectedly (see [`Event::wait_until`]).
    #[doc(alias = "sem_wait")]
    pub fn wait(&self) -> Result<()> {
        self.wait_deadline(None).map(|_| ())
    }

    /// Waits at most `timeout` for a unit; returns whether it took one.
    #[doc(alias = "sem_timedwait")]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_deadline(Instant::now().checked_add(timeout))
    }

    /// Waits until `deadline` (`None`: for ever) for a unit; returns whether
    /// it took one.
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> Result<bool> {
        loop {
            if self.try_wait() {
                return Ok(true);
            }
            // Load-only while spinning; Relaxed because the CAS in
            // `try_wait` does the Acquire once a unit is seen.
            let available = || self.count.load(Ordering::Relaxed) > 0;
            if !self.event.wait_until(available, deadline)? {
                // Timed out; one last try, as `sem_timedwait` does.
                return Ok(self.try_wait());
            }
            // A unit was seen; another waiter may take it first: loop.
        }
    }

    /// Adds one unit and wakes one sleeping waiter, if any.
    ///
    /// # Errors
    /// [`ErrorKind::LimitExceeded`](crate::ErrorKind::LimitExceeded) when the
    /// count is already [`Semaphore::MAX`] (like `sem_post`'s `EOVERFLOW`);
    /// the count is unchanged.
    #[doc(alias = "sem_post")]
    pub fn post(&self) -> Result<()> {
        // Release on success: pairs with the Acquire CAS in `try_wait`.
        let posted = self
            .count
            .fetch_update(Ordering::Release, Ordering::Relaxed, |c| c.checked_add(1));
        if posted.is_err() {
            return Err(Error::os("post", "semaphore", libc::EOVERFLOW)
                .with_kind(crate::ErrorKind::LimitExceeded));
        }
        // The count is the condition; it was stored before this notify.
        self.event.notify_one();
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn counts_and_refuses_to_overflow() {
        let sem = Semaphore::new(2);
        assert!(sem.try_wait());
        assert!(sem.try_wait());
        assert!(!sem.try_wait());
        assert_eq!(sem.value(), 0);
        sem.init(Semaphore::MAX);
        let e = sem.post().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LimitExceeded);
        assert_eq!(sem.value(), Semaphore::MAX);
    }

    #[test]
    fn wait_timeout_times_out_and_then_succeeds() {
        let sem = Semaphore::new(0);
        let start = Instant::now();
        assert!(!sem.wait_timeout(Duration::from_millis(20)).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(20));
        sem.post().unwrap();
        assert!(sem.wait_timeout(Duration::from_millis(20)).unwrap());
        assert_eq!(sem.sleepers(), 0);
    }

    #[test]
    fn threads_hand_over_every_post() {
        const ROUNDS: u32 = 2000;
        let sem = Semaphore::new(0);
        let taken = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..ROUNDS / 2 {
                        assert!(sem.wait_timeout(Duration::from_secs(10)).unwrap());
                        taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
            for _ in 0..ROUNDS {
                sem.post().unwrap();
            }
        });
        assert_eq!(taken.into_inner(), ROUNDS);
        assert_eq!(sem.value(), 0);
    }
}
