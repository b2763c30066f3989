//! Process-shared synchronisation: events and semaphores that live in
//! shared memory and work between processes.
//!
//! | type | made of | wait | crash of a holder |
//! |------|---------|------|-------------------|
//! | [`Event`] | 3 atomics | spin, then shared futex | nothing is held |
//! | [`Semaphore`] | 4 atomics | spin, then shared futex | its units are lost |
//!
//! [`Event`] and [`Semaphore`] are shmkit's own: the busy path makes no
//! syscall, a waiter spins an adaptive, bounded time before it sleeps, and
//! sleeping uses *shared* futexes (see [`futex`]).
//!
//! # Placing a primitive in shared memory
//!
//! Every type here is `#[repr(C)]` with a
//! fixed size and alignment, checked by `const` assertions, and none stores
//! a file descriptor or an address another process would have to follow,
//! so it can sit at any suitably aligned offset of a [`Region`], mapped at
//! different addresses in different processes. A process obtains a
//! reference to it with a constructor that checks bounds, alignment and
//! writability. These types are atomics only, valid for every bit pattern,
//! so `from_region(&region, offset)` is safe; zeroed memory (what a fresh
//! object holds) is already an idle event or a semaphore at 0, and `init`
//! sets other starting values before the region is published.
//!
//! The returned reference borrows the region, so the mapping outlives it.
//! Raw-pointer constructors (`from_ptr`) exist for memory that is
//! not a [`Region`].

pub mod event;
pub mod futex;
pub mod semaphore;

pub use event::Event;
pub use semaphore::Semaphore;

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
