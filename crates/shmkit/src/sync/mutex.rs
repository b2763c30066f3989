//! [`Mutex`]: a process-shared *robust* mutex, glibc's `pthread_mutex_t`
//! with `PTHREAD_PROCESS_SHARED` and `PTHREAD_MUTEX_ROBUST`.
//!
//! # Why glibc's and not a futex mutex of our own
//!
//! A lock held by a process that dies must not block everyone for ever. The
//! kernel helps with *robust futexes*: each thread registers one list of the
//! robust locks it holds, and when the thread dies the kernel marks each
//! listed lock "owner died" and wakes a waiter. There is one list per thread
//! and glibc owns it, so a home-made futex mutex cannot join it without
//! fighting glibc. glibc's robust mutex uses it: the next locker gets
//! `EOWNERDEAD`, owns the lock, repairs the protected state and calls
//! `pthread_mutex_consistent`.
//!
//! # Owner death
//!
//! [`Mutex::lock`] returns a [`MutexGuard`]; when the previous owner died
//! holding the lock, [`MutexGuard::previous_owner_died`] is true and the
//! state the mutex protects may be half-updated. The new owner repairs it
//! and calls [`MutexGuard::mark_consistent`]. If the guard is dropped without
//! that, the unlock marks the mutex *not recoverable* (POSIX semantics): every
//! later lock, in every process, fails with an error of kind
//! [`ErrorKind::Corrupt`] (`ENOTRECOVERABLE`), and
//! only re-initialising the mutex (when nobody uses it) brings it back. That
//! is the safe default: a lock whose data nobody vouched for stays shut.
//!
//! # Limits
//! - All processes must share one PID namespace: the lock word holds the
//!   owner's thread id, and the kernel's owner-death handling matches on it.
//! - The mutex is of type `PTHREAD_MUTEX_ERRORCHECK`: locking it again from
//!   the thread that holds it is an error (`EDEADLK`), not a deadlock.
//! - Unlike [`Semaphore`](super::Semaphore), the bytes are glibc's, not only
//!   atomics: while a thread holds the lock, glibc links the mutex into that
//!   thread's robust list through pointers stored *in the mutex*. A process
//!   that scribbles over a locked mutex can make its owner write through a
//!   bad pointer. Share a mutex only with cooperating processes; this is why
//!   its constructors are `unsafe`.
//! - Waiting is glibc's (a futex, no spinning): a contended lock costs a
//!   sleep and a wake-up. Hot paths should prefer lock-free structures.
//!
//! See [pthread_mutexattr_setrobust(3)](https://man7.org/linux/man-pages/man3/pthread_mutexattr_setrobust.3.html)
//! and [pthread_mutex_consistent(3)](https://man7.org/linux/man-pages/man3/pthread_mutex_consistent.3.html).

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::region::Region;

/// A process-shared robust mutex living in shared memory.
///
/// `#[repr(transparent)]` over glibc's `pthread_mutex_t` (40 bytes, 8-byte
/// aligned on x86-64). It guards no data itself: the protected state is
/// whatever the processes agree it covers, usually other bytes of the same
/// region. See the [module documentation](self) for owner death.
///
/// ```
/// use shmkit::{sync::Mutex, Region};
///
/// let region = Region::anonymous(4096)?;
/// // SAFETY: the region is new; nobody else uses these bytes yet, and the
/// // region outlives every guard (none is leaked).
/// let mutex = unsafe { Mutex::init_in(&region, 0)? };
/// {
///     let guard = mutex.lock()?;
///     assert!(!guard.previous_owner_died());
///     region.write_at(64, b"protected")?;
/// } // unlocked here
/// assert!(mutex.try_lock()?.is_some());
/// # Ok::<(), shmkit::Error>(())
/// ```
#[repr(transparent)]
pub struct Mutex {
    /// glibc synchronises all access to these bytes itself (atomics and the
    /// futex syscall inside `pthread_mutex_*`); Rust code never reads them.
    raw: UnsafeCell<libc::pthread_mutex_t>,
}

#[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
const _: () = {
    assert!(std::mem::size_of::<Mutex>() == 40);
    assert!(std::mem::align_of::<Mutex>() == 8);
};
#[cfg(all(target_arch = "aarch64", target_env = "gnu"))]
const _: () = {
    assert!(std::mem::size_of::<Mutex>() == 48);
    assert!(std::mem::align_of::<Mutex>() == 8);
};

// SAFETY: a process-shared pthread mutex is designed to be used from many
// threads and processes at once; every access goes through pthread_mutex_*,
// which synchronise internally. (It is Send already: no thread affinity is
// attached to the mutex, only to a held lock, which `MutexGuard` represents.)
unsafe impl Sync for Mutex {}

impl fmt::Debug for Mutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bytes are glibc's and change under us: show nothing of them.
        f.debug_struct("Mutex").finish_non_exhaustive()
    }
}

/// Destroys a mutex attribute object when dropped.
struct Attr(MaybeUninit<libc::pthread_mutexattr_t>);

impl Drop for Attr {
    fn drop(&mut self) {
        // SAFETY: only built after pthread_mutexattr_init succeeded.
        unsafe { libc::pthread_mutexattr_destroy(self.0.as_mut_ptr()) };
    }
}

fn check(op: &'static str, rc: libc::c_int) -> Result<()> {
    match rc {
        0 => Ok(()),
        errno => Err(Error::os(op, "mutex", errno)),
    }
}

impl Mutex {
    /// Initialises a process-shared, robust, error-checking mutex at `ptr`
    /// and returns it (`pthread_mutex_init`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when `ptr` is not aligned; whatever
    /// `pthread_mutexattr_*` or `pthread_mutex_init` report.
    ///
    /// # Safety
    /// - `ptr` is valid for reads and writes of `size_of::<Mutex>()` bytes
    ///   for all of `'a`;
    /// - no thread or process uses a mutex at `ptr` now (initialising a mutex
    ///   in use is undefined behaviour in C);
    /// - the memory stays mapped while any thread of this process holds the
    ///   lock, including a guard leaked with `mem::forget` (glibc keeps the
    ///   held mutex in the thread's robust list until it is unlocked or the
    ///   thread exits), and every process that writes these bytes does so only
    ///   through this type or glibc's `pthread_mutex_*`.
    #[doc(alias = "pthread_mutex_init")]
    pub unsafe fn init_at<'a>(ptr: *mut u8) -> Result<&'a Mutex> {
        if ptr as usize % std::mem::align_of::<Mutex>() != 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "initialise",
                "mutex",
                "the address is not 8-byte aligned",
            ));
        }
        let mut attr = MaybeUninit::uninit();
        // SAFETY: initialises the attribute object we own.
        check("initialise", unsafe {
            libc::pthread_mutexattr_init(attr.as_mut_ptr())
        })?;
        let mut attr = Attr(attr);
        let a = attr.0.as_mut_ptr();
        // SAFETY: `a` is an initialised attribute object (above).
        check("initialise", unsafe {
            libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED)
        })?;
        // SAFETY: as above.
        check("initialise", unsafe {
            libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST)
        })?;
        // SAFETY: as above.
        check("initialise", unsafe {
            libc::pthread_mutexattr_settype(a, libc::PTHREAD_MUTEX_ERRORCHECK)
        })?;
        // SAFETY: `ptr` is aligned (checked) and valid for the size of a
        // pthread_mutex_t, and nobody uses it (the caller's contract).
        check("initialise", unsafe {
            libc::pthread_mutex_init(ptr.cast(), a)
        })?;
        // SAFETY: just initialised; validity for 'a is the caller's promise.
        Ok(unsafe { Mutex::from_ptr(ptr) })
    }

    /// The mutex at `ptr`, which some process initialised with
    /// [`Mutex::init_at`] or [`Mutex::init_in`] (or C code with the same
    /// attributes).
    ///
    /// # Safety
    /// - `ptr` is 8-byte aligned, valid for reads and writes of
    ///   `size_of::<Mutex>()` bytes for all of `'a`, and holds an initialised
    ///   pthread mutex whose initialisation happens-before this call (for
    ///   example through a ready word in the region);
    /// - the memory stays mapped while any thread of this process holds the
    ///   lock, including through a leaked guard, and every process writes the
    ///   bytes only through `pthread_mutex_*` (see the module's Limits).
    pub unsafe fn from_ptr<'a>(ptr: *mut u8) -> &'a Mutex {
        debug_assert!(ptr as usize % std::mem::align_of::<Mutex>() == 0);
        // SAFETY: aligned, valid and initialised (the caller's contract).
        // Mutex is a transparent UnsafeCell: a shared reference to it allows
        // the writes glibc makes through `raw.get()`.
        unsafe { &*ptr.cast::<Mutex>() }
    }

    /// Initialises the mutex at `offset` in `region` (bounds, alignment and
    /// writability checked) and returns it.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when it does not fit or is misaligned,
    /// [`ErrorKind::ReadOnly`] for a read-only region, or what
    /// `pthread_mutex_init` reports.
    ///
    /// # Safety
    /// Nobody uses a mutex at that place now, and the region stays mapped
    /// while any thread of this process holds the lock (mind `mem::forget`
    /// on a guard); other processes touch the bytes only through
    /// `pthread_mutex_*`.
    pub unsafe fn init_in(region: &Region, offset: usize) -> Result<&Mutex> {
        let ptr = super::place::<Mutex>(region, offset, "mutex")?;
        // SAFETY: `place` checked bounds and alignment for the region's
        // lifetime, which bounds the returned reference; the rest is the
        // caller's promise, passed on.
        unsafe { Mutex::init_at(ptr) }
    }

    /// The mutex at `offset` in `region`, initialised earlier (bounds,
    /// alignment and writability checked).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] or [`ErrorKind::ReadOnly`], as for
    /// [`Mutex::init_in`].
    ///
    /// # Safety
    /// Some process initialised the mutex there ([`Mutex::init_in`]) and that
    /// happens-before this call; the region stays mapped while any thread of
    /// this process holds the lock; other processes touch the bytes only
    /// through `pthread_mutex_*`.
    pub unsafe fn open_in(region: &Region, offset: usize) -> Result<&Mutex> {
        let ptr = super::place::<Mutex>(region, offset, "mutex")?;
        // SAFETY: bounds and alignment checked; initialisation and the rest
        // are the caller's promise.
        Ok(unsafe { Mutex::from_ptr(ptr) })
    }

    /// Locks the mutex, waiting as long as it takes (`pthread_mutex_lock`).
    ///
    /// The guard says whether the previous owner died holding the lock; see
    /// [`MutexGuard::mark_consistent`].
    ///
    /// # Errors
    /// [`ErrorKind::Corrupt`] (`ENOTRECOVERABLE`) when an earlier owner died
    /// and its successor unlocked without marking the mutex consistent;
    /// `EDEADLK` (kind [`ErrorKind::Other`]) when this thread already holds it.
    #[doc(alias = "pthread_mutex_lock")]
    pub fn lock(&self) -> Result<MutexGuard<'_>> {
        // SAFETY: `raw` is an initialised process-shared mutex (the
        // constructors' contract); glibc synchronises the access.
        let rc = unsafe { libc::pthread_mutex_lock(self.raw.get()) };
        self.locked("lock", rc)
    }

    /// Locks the mutex if nobody holds it (`pthread_mutex_trylock`);
    /// `Ok(None)` if somebody does.
    ///
    /// # Errors
    /// As for [`Mutex::lock`].
    #[doc(alias = "pthread_mutex_trylock")]
    pub fn try_lock(&self) -> Result<Option<MutexGuard<'_>>> {
        // SAFETY: as in `lock`.
        let rc = unsafe { libc::pthread_mutex_trylock(self.raw.get()) };
        if rc == libc::EBUSY {
            return Ok(None);
        }
        self.locked("lock", rc).map(Some)
    }

    /// Locks the mutex, waiting at most `timeout`; `Ok(None)` on timeout
    /// (`pthread_mutex_timedlock`).
    ///
    /// glibc measures the deadline on `CLOCK_REALTIME`: a wall clock stepped
    /// forward is corrected for (the wait resumes for the time really left),
    /// one stepped back lengthens the wait by the step.
    ///
    /// # Errors
    /// As for [`Mutex::lock`].
    #[doc(alias = "pthread_mutex_timedlock")]
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Option<MutexGuard<'_>>> {
        let got = super::timed_wait(timeout, |deadline| {
            // SAFETY: as in `lock`; `deadline` is a valid timespec.
            unsafe { libc::pthread_mutex_timedlock(self.raw.get(), deadline) }
        });
        match got {
            Ok(true) => self.locked("lock", 0).map(Some),
            Ok(false) => Ok(None),
            Err(errno) => self.locked("lock", errno).map(Some),
        }
    }

    fn locked(&self, op: &'static str, rc: libc::c_int) -> Result<MutexGuard<'_>> {
        let guard = |owner_died| MutexGuard {
            mutex: self,
            owner_died,
            consistent: !owner_died,
            _not_send: PhantomData,
        };
        match rc {
            0 => Ok(guard(false)),
            // We hold the lock; the state it protects may be half-updated.
            libc::EOWNERDEAD => Ok(guard(true)),
            libc::ENOTRECOVERABLE => Err(Error::os(op, "mutex", rc)
                .with_kind(ErrorKind::Corrupt)
                .with_detail(
                    "an owner died holding it and the next owner unlocked it without \
                     marking it consistent; only re-initialising it helps",
                )),
            libc::EDEADLK => {
                Err(Error::os(op, "mutex", rc).with_detail("this thread already holds it"))
            }
            errno => Err(Error::os(op, "mutex", errno)),
        }
    }

    /// Destroys the mutex (`pthread_mutex_destroy`). glibc frees nothing for a
    /// process-shared mutex; this exists for symmetry with C code.
    ///
    /// # Errors
    /// `EBUSY` if it is locked.
    ///
    /// # Safety
    /// No thread or process uses the mutex any more (until it is initialised
    /// again).
    #[doc(alias = "pthread_mutex_destroy")]
    pub unsafe fn destroy(&self) -> Result<()> {
        // SAFETY: initialised, and unused from now on (the caller's promise).
        check("destroy", unsafe {
            libc::pthread_mutex_destroy(self.raw.get())
        })
    }
}

/// A held [`Mutex`]; dropping it unlocks (`pthread_mutex_unlock`).
///
/// Not `Send`: a pthread mutex must be unlocked by the thread that locked it.
///
/// ```compile_fail
/// fn unlock_elsewhere<T: Send>(_guard: T) {}
/// let region = shmkit::Region::anonymous(64).unwrap();
/// // SAFETY: a new region; no guard is leaked.
/// let mutex = unsafe { shmkit::sync::Mutex::init_in(&region, 0).unwrap() };
/// unlock_elsewhere(mutex.lock().unwrap()); // error: MutexGuard is not Send
/// ```
#[must_use = "the mutex is unlocked as soon as the guard is dropped"]
pub struct MutexGuard<'a> {
    mutex: &'a Mutex,
    owner_died: bool,
    consistent: bool,
    /// `*mut ()` makes the guard neither Send nor Sync.
    _not_send: PhantomData<*mut ()>,
}

impl fmt::Debug for MutexGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutexGuard")
            .field("previous_owner_died", &self.owner_died)
            .field("consistent", &self.consistent)
            .finish()
    }
}

impl MutexGuard<'_> {
    /// Whether the previous owner died holding the lock (`EOWNERDEAD`): the
    /// protected state may be half-updated and must be repaired, then
    /// [`mark_consistent`](MutexGuard::mark_consistent) called.
    pub fn previous_owner_died(&self) -> bool {
        self.owner_died
    }

    /// Whether the mutex will be usable after this guard unlocks it: true
    /// unless the previous owner died and
    /// [`mark_consistent`](MutexGuard::mark_consistent) was not called yet.
    pub fn is_consistent(&self) -> bool {
        self.consistent
    }

    /// Declares the protected state repaired after an owner's death
    /// (`pthread_mutex_consistent`), so unlocking leaves the mutex usable.
    /// Does nothing when the previous owner did not die.
    ///
    /// # Errors
    /// What `pthread_mutex_consistent` reports (nothing, for a guard).
    #[doc(alias = "pthread_mutex_consistent")]
    pub fn mark_consistent(&mut self) -> Result<()> {
        if self.consistent {
            return Ok(());
        }
        // SAFETY: this thread holds the lock, acquired with EOWNERDEAD, which
        // is exactly when pthread_mutex_consistent is allowed.
        check("mark consistent", unsafe {
            libc::pthread_mutex_consistent(self.mutex.raw.get())
        })?;
        self.consistent = true;
        Ok(())
    }
}

impl Drop for MutexGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this thread holds the lock (the guard is not Send and only
        // made after a successful lock). If the owner died and nobody marked
        // the mutex consistent, glibc's unlock makes it ENOTRECOVERABLE, as
        // documented. Unlock can only fail with EPERM for a non-owner, which
        // the guard rules out; a destructor has nowhere to report it anyway.
        let rc = unsafe { libc::pthread_mutex_unlock(self.mutex.raw.get()) };
        debug_assert_eq!(rc, 0, "pthread_mutex_unlock failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn locks_and_refuses_a_second_locker() {
        let region = Region::anonymous(4096).unwrap();
        // SAFETY: a fresh private region; no guard is leaked.
        let mutex = unsafe { Mutex::init_in(&region, 64).unwrap() };
        let guard = mutex.lock().unwrap();
        assert!(!guard.previous_owner_died());
        // Same thread again: error-checking, not a deadlock.
        let e = mutex.lock().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EDEADLK));
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(mutex.try_lock().unwrap().is_none());
                let start = Instant::now();
                assert!(mutex
                    .lock_timeout(Duration::from_millis(20))
                    .unwrap()
                    .is_none());
                assert!(start.elapsed() >= Duration::from_millis(20));
            });
        });
        drop(guard);
        assert!(mutex
            .lock_timeout(Duration::from_millis(20))
            .unwrap()
            .is_some());
    }

    #[test]
    fn mutexes_are_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Mutex>();
    }

    #[test]
    fn misplaced_mutexes_are_refused() {
        let region = Region::anonymous(4096).unwrap();
        // SAFETY: the calls fail before touching memory.
        unsafe {
            assert!(Mutex::init_in(&region, 4).is_err());
            assert!(Mutex::init_in(&region, 4096 - 8).is_err());
        }
    }

    #[test]
    fn a_thread_that_dies_holding_it_is_reported_and_can_be_repaired() {
        let region = Region::anonymous(4096).unwrap();
        // SAFETY: a fresh region that outlives the leaked guard's thread.
        let mutex = unsafe { Mutex::init_in(&region, 0).unwrap() };
        std::thread::scope(|s| {
            s.spawn(|| std::mem::forget(mutex.lock().unwrap()));
        });
        let mut guard = mutex.lock().unwrap();
        assert!(guard.previous_owner_died());
        assert!(!guard.is_consistent());
        guard.mark_consistent().unwrap();
        drop(guard);
        let guard = mutex.lock().unwrap();
        assert!(!guard.previous_owner_died());
    }

    #[test]
    fn not_marking_it_consistent_makes_it_unrecoverable() {
        let region = Region::anonymous(4096).unwrap();
        // SAFETY: as above.
        let mutex = unsafe { Mutex::init_in(&region, 0).unwrap() };
        std::thread::scope(|s| {
            s.spawn(|| std::mem::forget(mutex.lock().unwrap()));
        });
        let guard = mutex.lock().unwrap();
        assert!(guard.previous_owner_died());
        drop(guard);
        let e = mutex.lock().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert_eq!(e.raw_os_error(), Some(libc::ENOTRECOVERABLE));
        assert!(e.to_string().contains("consistent"), "{e}");
        assert!(mutex.try_lock().is_err());
        // Re-initialising (nobody uses it now) brings it back.
        // SAFETY: no thread holds or waits on it.
        let mutex = unsafe { Mutex::init_in(&region, 0).unwrap() };
        assert!(!mutex.lock().unwrap().previous_owner_died());
    }
}
