//! Process-shared synchronisation: events, semaphores and a robust mutex
//! that live in shared memory and work between processes.
//!
//! | type | made of | wait | crash of a holder |
//! |------|---------|------|-------------------|
//! | [`Event`] | 3 atomics | spin, then shared futex | nothing is held |
//! | [`Semaphore`] | 4 atomics | spin, then shared futex | its units are lost |
//! | [`Mutex`] | glibc `pthread_mutex_t`, robust | glibc | next locker is told ([`MutexGuard::previous_owner_died`]) |
//! | [`PosixSemaphore`] | glibc `sem_t` (unnamed, `pshared`) | glibc | its units are lost |
//! | [`NamedSemaphore`] | `sem_open` | glibc | its units are lost |
//!
//! [`Event`] and [`Semaphore`] are shmkit's own: the busy path makes no
//! syscall, a waiter spins an adaptive, bounded time before it sleeps, and
//! sleeping uses *shared* futexes (see [`futex`]). The others wrap the C
//! library, for robustness (the mutex) or for C programs that share the same
//! `sem_t`.
//!
//! # Placing a primitive in shared memory
//!
//! Every type here is `#[repr(C)]` (or transparent over the C type) with a
//! fixed size and alignment, checked by `const` assertions, and none stores
//! a file descriptor or an address another process would have to follow,
//! so it can sit at any suitably aligned offset of a [`Region`], mapped at
//! different addresses in different processes. A process obtains a
//! reference to it with a constructor that checks bounds, alignment and
//! writability:
//!
//! - atomics-only types ([`Event`], [`Semaphore`]) are valid for every bit
//!   pattern, so `from_region(&region, offset)` is safe; zeroed memory (what
//!   a fresh object holds) is already an idle event or a semaphore at 0, and
//!   `init` sets other starting values before the region is published;
//! - C-library types ([`Mutex`], [`PosixSemaphore`]) need the C library's
//!   initialisation, exactly once, before anyone uses them, and must never be
//!   re-initialised while in use. Nothing in the bytes proves which state
//!   they are in, so their constructors are `unsafe`:
//!   `init_in(&region, offset, ..)` by the one process that sets the region
//!   up, `open_in(&region, offset)` by everyone else after the setup is
//!   published (for example by a ready word that the creator stores with
//!   Release after `init_in` and the others load with Acquire before
//!   `open_in`).
//!
//! The returned reference borrows the region, so the mapping outlives it.
//! Raw-pointer constructors (`from_ptr`, `init_at`) exist for memory that is
//! not a [`Region`].

pub mod event;
pub mod futex;
pub mod mutex;
pub mod posix_semaphore;
pub mod semaphore;
pub(crate) mod spin;
pub(crate) mod wait_word;

pub use event::Event;
pub use mutex::{Mutex, MutexGuard};
pub use posix_semaphore::{NamedSemaphore, PosixSemaphore};
pub use semaphore::Semaphore;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorKind, Result};
use crate::region::Region;

/// Checks that a `T` fits at `offset` in `region`, aligned for `T`, and that
/// the region is writable; returns the address.
pub(crate) fn place<T>(region: &Region, offset: usize, what: &str) -> Result<*mut u8> {
    let base = region.as_mut_ptr()?;
    region.check_range("place", offset, std::mem::size_of::<T>())?;
    let align = std::mem::align_of::<T>();
    if (base as usize).wrapping_add(offset) % align != 0 {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "place",
            region.object(),
            format!("a {what} needs {align}-byte alignment; offset {offset} is not aligned"),
        ));
    }
    // SAFETY: offset + size_of::<T>() <= region.len() (checked above), so
    // the result stays inside the mapping.
    Ok(unsafe { base.add(offset) })
}

/// The `CLOCK_REALTIME` time `timeout` from now, for the C library's
/// absolute-deadline calls (`sem_timedwait`, `pthread_mutex_timedlock`).
pub(crate) fn realtime_after(timeout: Duration) -> libc::timespec {
    // SystemTime::now is clock_gettime(CLOCK_REALTIME); a clock before 1970
    // counts as 1970, which only makes the deadline earlier.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let nanos = u64::from(now.subsec_nanos()) + u64::from(timeout.subsec_nanos());
    let secs = now
        .as_secs()
        .saturating_add(timeout.as_secs())
        .saturating_add(nanos / 1_000_000_000);
    libc::timespec {
        tv_sec: libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX),
        tv_nsec: (nanos % 1_000_000_000) as _,
    }
}

/// Runs a C library timed wait `call` (given an absolute `CLOCK_REALTIME`
/// deadline; returning 0 or an errno) until it succeeds, fails, or
/// `timeout` has passed on the *monotonic* clock.
///
/// The C calls measure their deadline on the wall clock, which can jump:
/// an early `ETIMEDOUT` (the wall clock jumped forward) is retried with a new
/// deadline for the time really left, and `EINTR` is retried too. A wall
/// clock jumping *back* still lengthens the wait, which only
/// `pthread_mutex_clocklock`/`sem_clockwait` (not bound by the `libc` crate)
/// could avoid. Returns `Ok(true)` on success, `Ok(false)` on timeout,
/// `Err(errno)` otherwise.
pub(crate) fn timed_wait(
    timeout: Duration,
    mut call: impl FnMut(&libc::timespec) -> i32,
) -> std::result::Result<bool, i32> {
    let start = Instant::now();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        match call(&realtime_after(left)) {
            0 => return Ok(true),
            libc::EINTR => continue,
            libc::ETIMEDOUT if left.is_zero() || start.elapsed() >= timeout => return Ok(false),
            libc::ETIMEDOUT => continue,
            errno => return Err(errno),
        }
    }
}
