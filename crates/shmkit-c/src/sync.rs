//! The robust process-shared mutex and shmkit's semaphore, placed at an
//! offset of a writable mapping.

use std::ffi::c_int;
use std::sync::Arc;

use shmkit::sync::{Mutex, MutexGuard, Semaphore};
use shmkit::{Error, ErrorKind, Region};

use crate::objects::{shmkit_map, Map};
use crate::{
    close_handle, entry, failure, give, handle, invalid, out_arg, tag, wait_of, Kind, Wait,
};

/// A robust, process-shared mutex in a mapping (glibc's
/// `pthread_mutex_t` with `PTHREAD_MUTEX_ROBUST`).
pub struct shmkit_mutex {
    _opaque: [u8; 0],
}

/// A process-shared counting semaphore in a mapping (shmkit's own: spin,
/// then shared futex; all-zero bytes are a semaphore at 0).
pub struct shmkit_semaphore {
    _opaque: [u8; 0],
}

/// A mutex, the lock this handle holds (if any), and the mapping.
pub(crate) struct MutexState {
    /// Borrows `*mutex`; declared first so it drops (unlocks) first.
    guard: Option<MutexGuard<'static>>,
    mutex: &'static Mutex,
    /// Keeps the mapping `mutex` lies in alive.
    _region: Arc<Region>,
    object: String,
}

impl Kind for MutexState {
    const TAG: u64 = tag(30);
    const NAME: &'static str = "mutex";
}

/// A semaphore and the mapping it lies in.
pub(crate) struct SemaphoreState {
    semaphore: &'static Semaphore,
    /// Keeps the mapping `semaphore` lies in alive.
    _region: Arc<Region>,
    object: String,
}

impl Kind for SemaphoreState {
    const TAG: u64 = tag(31);
    const NAME: &'static str = "semaphore";
}

/// Bytes a mutex takes in a mapping (`sizeof(pthread_mutex_t)`); its
/// offset must be a multiple of 8.
#[no_mangle]
pub extern "C" fn shmkit_mutex_size() -> usize {
    std::mem::size_of::<Mutex>()
}

/// Bytes a semaphore takes in a mapping; its offset must be a multiple of 4.
#[no_mangle]
pub extern "C" fn shmkit_semaphore_size() -> usize {
    std::mem::size_of::<Semaphore>()
}

fn mutex_handle(
    map: *mut shmkit_map,
    offset: usize,
    init: bool,
    out: *mut *mut shmkit_mutex,
) -> c_int {
    let op = if init {
        "initialise a mutex in"
    } else {
        "open a mutex in"
    };
    entry(op, || {
        let map = handle::<Map, _>(op, map)?;
        let region = Arc::clone(&map.0);
        let object = region.object().to_string();
        let out = out_arg(op, &object, "output", out)?;
        // SAFETY: the mapping stays alive as long as the handle (it holds
        // `region`), and the guard that borrows the mutex is dropped before
        // it. The other conditions (initialise once, before anyone uses
        // it; never while in use) are the caller's, as documented on
        // `shmkit_mutex_init` and `shmkit_mutex_open`.
        let mutex: &'static Mutex = unsafe {
            let mutex = if init {
                Mutex::init_in(&region, offset)?
            } else {
                Mutex::open_in(&region, offset)?
            };
            &*(mutex as *const Mutex)
        };
        give(
            out,
            MutexState {
                guard: None,
                mutex,
                _region: region,
                object,
            },
        )
    })
}

/// Initialises a robust process-shared mutex at `offset` of the writable
/// mapping `map` (`pthread_mutex_init`) and returns a handle to it.
/// Call it once, in the process that sets the object up, before any other
/// process opens the mutex; never on a mutex in use (undefined behaviour in
/// glibc). Ownership: close with `shmkit_mutex_close` (the mapping stays
/// mapped while the handle lives). Errors: -EINVAL (NULL, out of range,
/// misaligned), -EROFS (read-only map), the error of `pthread_mutex_init`.
#[no_mangle]
pub extern "C" fn shmkit_mutex_init(
    map: *mut shmkit_map,
    offset: usize,
    out: *mut *mut shmkit_mutex,
) -> c_int {
    mutex_handle(map, offset, true, out)
}

/// Opens the mutex another process initialised at `offset` of `map`
/// (after it published that, e.g. by a flag or a channel message).
/// Ownership and errors as `shmkit_mutex_init`.
#[no_mangle]
pub extern "C" fn shmkit_mutex_open(
    map: *mut shmkit_map,
    offset: usize,
    out: *mut *mut shmkit_mutex,
) -> c_int {
    mutex_handle(map, offset, false, out)
}

/// Locks the mutex, waiting as `timeout_ms` says. `*owner_died`
/// (NULL if not wanted) receives 1 when the previous owner died holding
/// it: the data it guards may be half-updated; repair it, then call
/// `shmkit_mutex_consistent` before `shmkit_mutex_unlock` (else the mutex
/// becomes unusable: -EBADMSG for everyone). Unlock from the same thread.
/// Errors: -EINVAL, -EAGAIN (timeout 0, held), -ETIMEDOUT, -EBUSY (this
/// handle holds it already), -EBADMSG (not recoverable).
#[no_mangle]
pub extern "C" fn shmkit_mutex_lock(
    mutex: *mut shmkit_mutex,
    timeout_ms: i64,
    owner_died: *mut c_int,
) -> c_int {
    const OP: &str = "lock";
    entry(OP, || {
        let state = handle::<MutexState, _>(OP, mutex)?;
        if state.guard.is_some() {
            return Err(failure(
                libc::EBUSY,
                ErrorKind::InvalidArgument,
                OP,
                &state.object,
                "this handle holds the mutex already".into(),
            ));
        }
        let wait = wait_of(OP, &state.object, timeout_ms)?;
        let guard = match wait {
            Wait::Forever => Some(state.mutex.lock()?),
            Wait::Try => state.mutex.try_lock()?,
            Wait::For(d) => state.mutex.lock_timeout(d)?,
        };
        let Some(guard) = guard else {
            let kind = if matches!(wait, Wait::Try) {
                ErrorKind::WouldBlock
            } else {
                ErrorKind::TimedOut
            };
            return Err(Error::new(
                kind,
                OP,
                &state.object,
                "another thread or process holds the mutex",
            )
            .into());
        };
        if !owner_died.is_null() {
            *out_arg(OP, &state.object, "owner_died", owner_died)? =
                c_int::from(guard.previous_owner_died());
        }
        state.guard = Some(guard);
        Ok(0)
    })
}

/// Marks the state guarded by a mutex whose previous owner died as
/// repaired (`pthread_mutex_consistent`). Errors: -EINVAL (not held).
#[no_mangle]
pub extern "C" fn shmkit_mutex_consistent(mutex: *mut shmkit_mutex) -> c_int {
    const OP: &str = "repair";
    entry(OP, || {
        let state = handle::<MutexState, _>(OP, mutex)?;
        let object = state.object.clone();
        let guard = state
            .guard
            .as_mut()
            .ok_or_else(|| invalid(OP, &object, "this handle does not hold the mutex"))?;
        guard.mark_consistent()?;
        Ok(0)
    })
}

/// Unlocks the mutex this handle holds. Errors: -EINVAL (not held).
#[no_mangle]
pub extern "C" fn shmkit_mutex_unlock(mutex: *mut shmkit_mutex) -> c_int {
    const OP: &str = "unlock";
    entry(OP, || {
        let state = handle::<MutexState, _>(OP, mutex)?;
        if state.guard.take().is_none() {
            return Err(invalid(
                OP,
                &state.object,
                "this handle does not hold the mutex",
            ));
        }
        Ok(0)
    })
}

/// Frees the handle (unlocking the mutex if it holds it; the mutex itself
/// stays in the object). NULL is accepted.
#[no_mangle]
pub extern "C" fn shmkit_mutex_close(mutex: *mut shmkit_mutex) -> c_int {
    close_handle::<MutexState, _>("close", mutex)
}

fn semaphore_handle(
    map: *mut shmkit_map,
    offset: usize,
    init: Option<u32>,
    out: *mut *mut shmkit_semaphore,
) -> c_int {
    const OP: &str = "open a semaphore in";
    entry(OP, || {
        let map = handle::<Map, _>(OP, map)?;
        let region = Arc::clone(&map.0);
        let object = region.object().to_string();
        let out = out_arg(OP, &object, "output", out)?;
        let semaphore = Semaphore::from_region(&region, offset)?;
        // SAFETY: the handle keeps the mapping alive (it holds `region`)
        // for as long as it holds the reference.
        let semaphore: &'static Semaphore = unsafe { &*(semaphore as *const Semaphore) };
        if let Some(value) = init {
            semaphore.init(value);
        }
        give(
            out,
            SemaphoreState {
                semaphore,
                _region: region,
                object,
            },
        )
    })
}

/// Sets the semaphore at `offset` of the writable mapping `map` to `value`
/// and returns a handle to it; do it once, before other processes use it
/// (all-zero bytes already are a semaphore at 0). Ownership: close with
/// `shmkit_semaphore_close`. Errors: -EINVAL (NULL, out of range,
/// misaligned), -EROFS (read-only map).
#[no_mangle]
pub extern "C" fn shmkit_semaphore_init(
    map: *mut shmkit_map,
    offset: usize,
    value: u32,
    out: *mut *mut shmkit_semaphore,
) -> c_int {
    semaphore_handle(map, offset, Some(value), out)
}

/// Opens the semaphore at `offset` of `map` without changing it.
/// Ownership and errors as `shmkit_semaphore_init`.
#[no_mangle]
pub extern "C" fn shmkit_semaphore_open(
    map: *mut shmkit_map,
    offset: usize,
    out: *mut *mut shmkit_semaphore,
) -> c_int {
    semaphore_handle(map, offset, None, out)
}

/// Takes one unit, waiting as `timeout_ms` says while there is none.
/// Errors: -EINVAL, -EAGAIN (timeout 0), -ETIMEDOUT.
#[no_mangle]
pub extern "C" fn shmkit_semaphore_wait(
    semaphore: *mut shmkit_semaphore,
    timeout_ms: i64,
) -> c_int {
    const OP: &str = "wait on";
    entry(OP, || {
        let state = handle::<SemaphoreState, _>(OP, semaphore)?;
        let got = match wait_of(OP, &state.object, timeout_ms)? {
            Wait::Forever => {
                state.semaphore.wait()?;
                true
            }
            Wait::Try => {
                if !state.semaphore.try_wait() {
                    return Err(Error::new(
                        ErrorKind::WouldBlock,
                        OP,
                        &state.object,
                        "the semaphore is at 0",
                    )
                    .into());
                }
                true
            }
            Wait::For(d) => state.semaphore.wait_timeout(d)?,
        };
        if !got {
            return Err(Error::new(
                ErrorKind::TimedOut,
                OP,
                &state.object,
                "the semaphore stayed at 0",
            )
            .into());
        }
        Ok(0)
    })
}

/// Adds one unit, waking a waiter if any sleeps. Errors: -EINVAL,
/// -E2BIG/-EOVERFLOW-like errors when the count would overflow.
#[no_mangle]
pub extern "C" fn shmkit_semaphore_post(semaphore: *mut shmkit_semaphore) -> c_int {
    const OP: &str = "post to";
    entry(OP, || {
        handle::<SemaphoreState, _>(OP, semaphore)?
            .semaphore
            .post()?;
        Ok(0)
    })
}

/// Stores the semaphore's current count in `*value` (stale at once while
/// others run). Errors: -EINVAL.
#[no_mangle]
pub extern "C" fn shmkit_semaphore_value(
    semaphore: *mut shmkit_semaphore,
    value: *mut u32,
) -> c_int {
    const OP: &str = "read";
    entry(OP, || {
        let state = handle::<SemaphoreState, _>(OP, semaphore)?;
        *out_arg(OP, &state.object, "value", value)? = state.semaphore.value();
        Ok(0)
    })
}

/// Frees the handle (the semaphore stays in the object). NULL is accepted.
#[no_mangle]
pub extern "C" fn shmkit_semaphore_close(semaphore: *mut shmkit_semaphore) -> c_int {
    close_handle::<SemaphoreState, _>("close", semaphore)
}
