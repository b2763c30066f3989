//! The C library's POSIX semaphores: unnamed [`PosixSemaphore`]s placed in
//! shared memory (`sem_init` with `pshared = 1`) and [`NamedSemaphore`]s
//! (`sem_open`).
//!
//! These interoperate with C programs: a `sem_t` initialised here can be
//! waited on and posted by C code mapping the same object, and the other way
//! round, and a named semaphore is the same `/dev/shm/sem.NAME` file glibc's
//! `sem_open` uses. For Rust-only peers, [`Semaphore`](super::Semaphore) is
//! faster (it spins before sleeping) and safe to construct.
//!
//! Every wait retries on `EINTR` (a signal handler ran), so callers see only
//! success, timeout or a real error.
//!
//! See [sem_overview(7)](https://man7.org/linux/man-pages/man7/sem_overview.7.html).

use std::cell::UnsafeCell;
use std::ffi::CString;
use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::posix::{ShmName, NAME_MAX, SHM_DIR};
use crate::region::Region;

fn last_errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The operations common to both kinds, on a raw `sem_t`.
///
/// Invariant (upheld by whoever builds one): `sem` points at an initialised
/// semaphore that stays valid while the `Raw` is used.
#[derive(Clone, Copy)]
struct Raw<'a> {
    sem: *mut libc::sem_t,
    object: &'a str,
}

impl Raw<'_> {
    fn err(&self, op: &'static str, errno: i32) -> Error {
        let e = Error::os(op, self.object, errno);
        if errno == libc::EOVERFLOW {
            e.with_kind(ErrorKind::LimitExceeded)
        } else {
            e
        }
    }

    fn wait(self) -> Result<()> {
        loop {
            // SAFETY: `sem` is initialised and valid (the type's invariant).
            if unsafe { libc::sem_wait(self.sem) } == 0 {
                return Ok(());
            }
            match last_errno() {
                libc::EINTR => continue,
                errno => return Err(self.err("wait on", errno)),
            }
        }
    }

    fn try_wait(self) -> Result<bool> {
        loop {
            // SAFETY: as in `wait`.
            if unsafe { libc::sem_trywait(self.sem) } == 0 {
                return Ok(true);
            }
            match last_errno() {
                libc::EAGAIN => return Ok(false),
                libc::EINTR => continue,
                errno => return Err(self.err("wait on", errno)),
            }
        }
    }

    fn wait_timeout(self, timeout: Duration) -> Result<bool> {
        super::timed_wait(timeout, |deadline| {
            // SAFETY: as in `wait`; `deadline` is a valid timespec.
            if unsafe { libc::sem_timedwait(self.sem, deadline) } == 0 {
                0
            } else {
                last_errno()
            }
        })
        .map_err(|errno| self.err("wait on", errno))
    }

    fn post(self) -> Result<()> {
        // SAFETY: as in `wait`.
        if unsafe { libc::sem_post(self.sem) } == 0 {
            Ok(())
        } else {
            Err(self.err("post", last_errno()))
        }
    }

    fn value(self) -> Result<u32> {
        let mut value: libc::c_int = 0;
        // SAFETY: as in `wait`; `value` is a valid out-pointer.
        if unsafe { libc::sem_getvalue(self.sem, &mut value) } == 0 {
            // glibc reports 0, never a negative count of waiters.
            Ok(value.max(0) as u32)
        } else {
            Err(self.err("read", last_errno()))
        }
    }
}

/// An unnamed POSIX semaphore (`sem_t`, process-shared) in shared memory.
///
/// `#[repr(transparent)]` over glibc's `sem_t` (32 bytes, 8-byte aligned on
/// x86-64). C code mapping the same bytes can use it with `sem_wait`,
/// `sem_post` and friends.
///
/// ```
/// use std::time::Duration;
/// use shmkit::{sync::PosixSemaphore, Region};
///
/// let region = Region::anonymous(4096)?;
/// // SAFETY: a new region: nobody uses these bytes yet.
/// let sem = unsafe { PosixSemaphore::init_in(&region, 0, 1)? };
/// assert!(sem.try_wait()?);
/// assert!(!sem.wait_timeout(Duration::from_millis(1))?);
/// sem.post()?;
/// assert_eq!(sem.value()?, 1);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[repr(transparent)]
pub struct PosixSemaphore {
    /// glibc synchronises all access (atomics and futexes inside `sem_*`).
    raw: UnsafeCell<libc::sem_t>,
}

#[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
const _: () = {
    assert!(std::mem::size_of::<PosixSemaphore>() == 32);
    assert!(std::mem::align_of::<PosixSemaphore>() == 8);
};

// SAFETY: a process-shared sem_t is made to be used by many threads and
// processes at once; every access goes through sem_*, which synchronise
// internally, and none is tied to a thread.
unsafe impl Sync for PosixSemaphore {}

impl fmt::Debug for PosixSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PosixSemaphore")
            .field("value", &self.value().ok())
            .finish()
    }
}

impl PosixSemaphore {
    /// The largest value a POSIX semaphore holds (`SEM_VALUE_MAX`).
    pub const MAX: u32 = i32::MAX as u32;

    fn raw(&self) -> Raw<'_> {
        Raw {
            sem: self.raw.get(),
            object: "semaphore",
        }
    }

    /// Initialises a process-shared semaphore with count `value` at `ptr`
    /// (`sem_init(ptr, 1, value)`) and returns it.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when `ptr` is misaligned or `value` is
    /// above [`PosixSemaphore::MAX`].
    ///
    /// # Safety
    /// `ptr` is valid for reads and writes of `size_of::<PosixSemaphore>()`
    /// bytes for all of `'a`, nobody uses a semaphore there now (`sem_init`
    /// on one in use is undefined behaviour), and other processes write the
    /// bytes only through `sem_*`.
    #[doc(alias = "sem_init")]
    pub unsafe fn init_at<'a>(ptr: *mut u8, value: u32) -> Result<&'a PosixSemaphore> {
        if ptr as usize % std::mem::align_of::<PosixSemaphore>() != 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "initialise",
                "semaphore",
                "the address is not 8-byte aligned",
            ));
        }
        if value > Self::MAX {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "initialise",
                "semaphore",
                format!("{value} is above SEM_VALUE_MAX ({})", Self::MAX),
            ));
        }
        // SAFETY: aligned (checked), valid and unused (the caller's promise).
        // pshared = 1: the semaphore may be used by other processes.
        if unsafe { libc::sem_init(ptr.cast(), 1, value) } != 0 {
            return Err(Error::os("initialise", "semaphore", last_errno()));
        }
        // SAFETY: just initialised; valid for 'a by the caller's promise.
        Ok(unsafe { PosixSemaphore::from_ptr(ptr) })
    }

    /// The semaphore at `ptr`, initialised earlier by [`PosixSemaphore::init_at`]
    /// or by C code with `sem_init(ptr, 1, value)`.
    ///
    /// # Safety
    /// `ptr` is 8-byte aligned, valid for reads and writes of
    /// `size_of::<PosixSemaphore>()` bytes for all of `'a`, holds a semaphore
    /// whose initialisation happens-before this call, and other processes
    /// write the bytes only through `sem_*`.
    pub unsafe fn from_ptr<'a>(ptr: *mut u8) -> &'a PosixSemaphore {
        debug_assert!(ptr as usize % std::mem::align_of::<PosixSemaphore>() == 0);
        // SAFETY: aligned, valid and initialised (the caller's promise); the
        // type is a transparent UnsafeCell, so glibc may write through a
        // shared reference.
        unsafe { &*ptr.cast::<PosixSemaphore>() }
    }

    /// Initialises the semaphore at `offset` in `region` (bounds, alignment
    /// and writability checked) with count `value`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when it does not fit, is misaligned or
    /// `value` is too large; [`ErrorKind::ReadOnly`] for a read-only region.
    ///
    /// # Safety
    /// Nobody uses a semaphore at that place now; other processes write the
    /// bytes only through `sem_*`.
    pub unsafe fn init_in(region: &Region, offset: usize, value: u32) -> Result<&PosixSemaphore> {
        let ptr = super::place::<PosixSemaphore>(region, offset, "semaphore")?;
        // SAFETY: bounds and alignment checked for the region's lifetime,
        // which bounds the result; the rest is the caller's promise.
        unsafe { PosixSemaphore::init_at(ptr, value) }
    }

    /// The semaphore at `offset` in `region`, initialised earlier (bounds,
    /// alignment and writability checked).
    ///
    /// # Errors
    /// As for [`PosixSemaphore::init_in`].
    ///
    /// # Safety
    /// Some process initialised it there and that happens-before this call;
    /// other processes write the bytes only through `sem_*`.
    pub unsafe fn open_in(region: &Region, offset: usize) -> Result<&PosixSemaphore> {
        let ptr = super::place::<PosixSemaphore>(region, offset, "semaphore")?;
        // SAFETY: bounds and alignment checked; initialisation is the
        // caller's promise.
        Ok(unsafe { PosixSemaphore::from_ptr(ptr) })
    }

    /// Waits until the count is above zero and decrements it (`sem_wait`,
    /// retried on `EINTR`).
    ///
    /// # Errors
    /// What `sem_wait` reports other than `EINTR` (`EINVAL` for a corrupt
    /// semaphore).
    #[doc(alias = "sem_wait")]
    pub fn wait(&self) -> Result<()> {
        self.raw().wait()
    }

    /// Decrements the count if it is above zero (`sem_trywait`); whether it did.
    ///
    /// # Errors
    /// As for [`PosixSemaphore::wait`].
    #[doc(alias = "sem_trywait")]
    pub fn try_wait(&self) -> Result<bool> {
        self.raw().try_wait()
    }

    /// Waits at most `timeout` to decrement the count (`sem_timedwait`);
    /// whether it did.
    ///
    /// glibc measures the deadline on `CLOCK_REALTIME`; a wall clock stepped
    /// forward is corrected for, one stepped back lengthens the wait.
    ///
    /// # Errors
    /// As for [`PosixSemaphore::wait`].
    #[doc(alias = "sem_timedwait")]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.raw().wait_timeout(timeout)
    }

    /// Increments the count, waking a waiter (`sem_post`).
    ///
    /// # Errors
    /// [`ErrorKind::LimitExceeded`] (`EOVERFLOW`) at [`PosixSemaphore::MAX`].
    #[doc(alias = "sem_post")]
    pub fn post(&self) -> Result<()> {
        self.raw().post()
    }

    /// The current count (`sem_getvalue`); stale as soon as it is read.
    ///
    /// # Errors
    /// What `sem_getvalue` reports.
    #[doc(alias = "sem_getvalue")]
    pub fn value(&self) -> Result<u32> {
        self.raw().value()
    }

    /// Destroys the semaphore (`sem_destroy`; glibc frees nothing).
    ///
    /// # Errors
    /// What `sem_destroy` reports.
    ///
    /// # Safety
    /// No thread or process waits on or uses the semaphore any more (until it
    /// is initialised again).
    #[doc(alias = "sem_destroy")]
    pub unsafe fn destroy(&self) -> Result<()> {
        // SAFETY: initialised and unused from now on (the caller's promise).
        if unsafe { libc::sem_destroy(self.raw.get()) } == 0 {
            Ok(())
        } else {
            Err(Error::os("destroy", "semaphore", last_errno()))
        }
    }
}

/// A named POSIX semaphore (`sem_open`), which glibc keeps as the file
/// `/dev/shm/sem.NAME`. Dropping it closes it (`sem_close`); the semaphore
/// stays until [`NamedSemaphore::unlink`]ed.
///
/// ```no_run
/// use shmkit::sync::NamedSemaphore;
///
/// let sem = NamedSemaphore::create("/jobs-ready", 0)?;
/// // ... another process: NamedSemaphore::open("/jobs-ready")?.post()?;
/// sem.wait()?;
/// NamedSemaphore::unlink("/jobs-ready")?;
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct NamedSemaphore {
    sem: NonNull<libc::sem_t>,
    name: ShmName,
}

// SAFETY: the sem_t mapping is owned by this handle until `sem_close` in
// Drop; sem_* are thread-safe and not tied to a thread.
unsafe impl Send for NamedSemaphore {}
// SAFETY: as for Send; all operations take `&self` and synchronise in glibc.
unsafe impl Sync for NamedSemaphore {}

impl fmt::Debug for NamedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedSemaphore")
            .field("name", &self.name.as_str())
            .field("value", &self.value().ok())
            .finish()
    }
}

/// glibc prefixes a semaphore's file name with `sem.`.
const SEM_PREFIX: &str = "sem.";

fn sem_name(name: &str) -> Result<ShmName> {
    let name = ShmName::new(name)?;
    let limit = NAME_MAX - SEM_PREFIX.len();
    if name.file_name().len() > limit {
        return Err(Error::new(
            ErrorKind::InvalidName,
            "use name",
            name.as_str(),
            format!("a semaphore name is at most {limit} bytes (glibc adds \"{SEM_PREFIX}\")"),
        ));
    }
    Ok(name)
}

impl NamedSemaphore {
    /// Creates the semaphore `name` (`/jobs` or `jobs`) with count `value`
    /// and mode 0600; fails if it exists (`sem_open` with `O_CREAT|O_EXCL`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`], [`ErrorKind::AlreadyExists`],
    /// [`ErrorKind::PermissionDenied`], [`ErrorKind::InvalidArgument`] for a
    /// `value` above [`PosixSemaphore::MAX`].
    #[doc(alias = "sem_open")]
    pub fn create(name: &str, value: u32) -> Result<Self> {
        Self::create_with_mode(name, value, 0o600)
    }

    /// [`NamedSemaphore::create`] with permission bits `mode`, applied
    /// exactly (not filtered by the umask), as [`crate::posix`] does.
    ///
    /// # Errors
    /// As for [`NamedSemaphore::create`].
    pub fn create_with_mode(name: &str, value: u32, mode: u32) -> Result<Self> {
        let name = sem_name(name)?;
        if mode > 0o777 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "create",
                name.as_str(),
                format!("mode {mode:o} has bits above 0o777"),
            ));
        }
        if value > PosixSemaphore::MAX {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "create",
                name.as_str(),
                format!("{value} is above SEM_VALUE_MAX ({})", PosixSemaphore::MAX),
            ));
        }
        let c_name = CString::new(name.as_str()).expect("ShmName has no NUL");
        // SAFETY: a valid C string; sem_open's variadic arguments for
        // O_CREAT are (mode_t, unsigned int), passed as such.
        let sem = unsafe {
            libc::sem_open(
                c_name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL,
                mode as libc::mode_t,
                value as libc::c_uint,
            )
        };
        let sem = Self::opened(sem, name, "create")?;
        // sem_open filters the mode through the umask; apply it exactly.
        let path = format!("{SHM_DIR}/{SEM_PREFIX}{}", sem.name.file_name());
        // Through a descriptor opened without following links (never a
        // chmod by path, which would follow one planted in /dev/shm).
        let chmod = rustix::fs::open(
            path.as_str(),
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::NONBLOCK
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .and_then(|fd| {
            let st = rustix::fs::fstat(&fd)?;
            if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile
            {
                return Err(rustix::io::Errno::LOOP);
            }
            rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(mode))
        });
        if let Err(e) = chmod {
            let _ = Self::unlink(sem.name.as_str());
            return Err(Error::from(("create", sem.name.as_str(), e)));
        }
        Ok(sem)
    }

    /// Opens the existing semaphore `name` (`sem_open` without `O_CREAT`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`], [`ErrorKind::NotFound`],
    /// [`ErrorKind::PermissionDenied`].
    #[doc(alias = "sem_open")]
    pub fn open(name: &str) -> Result<Self> {
        let name = sem_name(name)?;
        let c_name = CString::new(name.as_str()).expect("ShmName has no NUL");
        // SAFETY: a valid C string; without O_CREAT no variadic arguments.
        let sem = unsafe { libc::sem_open(c_name.as_ptr(), 0) };
        Self::opened(sem, name, "open")
    }

    fn opened(sem: *mut libc::sem_t, name: ShmName, op: &'static str) -> Result<Self> {
        if sem == libc::SEM_FAILED {
            return Err(Error::os(op, name.as_str(), last_errno()));
        }
        let sem = NonNull::new(sem).expect("sem_open returns SEM_FAILED, not NULL");
        Ok(NamedSemaphore { sem, name })
    }

    /// Removes the semaphore `name` (`sem_unlink`); processes that have it
    /// open keep using it until they close it.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`], [`ErrorKind::NotFound`],
    /// [`ErrorKind::PermissionDenied`].
    #[doc(alias = "sem_unlink")]
    pub fn unlink(name: &str) -> Result<()> {
        let name = sem_name(name)?;
        let c_name = CString::new(name.as_str()).expect("ShmName has no NUL");
        // SAFETY: a valid C string.
        if unsafe { libc::sem_unlink(c_name.as_ptr()) } == 0 {
            Ok(())
        } else {
            Err(Error::os("remove", name.as_str(), last_errno()))
        }
    }

    /// The semaphore's name, with its leading slash.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    fn raw(&self) -> Raw<'_> {
        Raw {
            sem: self.sem.as_ptr(),
            object: self.name.as_str(),
        }
    }

    /// Waits until the count is above zero and decrements it (`sem_wait`,
    /// retried on `EINTR`).
    ///
    /// # Errors
    /// What `sem_wait` reports other than `EINTR`.
    #[doc(alias = "sem_wait")]
    pub fn wait(&self) -> Result<()> {
        self.raw().wait()
    }

    /// Decrements the count if it is above zero (`sem_trywait`); whether it did.
    ///
    /// # Errors
    /// As for [`NamedSemaphore::wait`].
    #[doc(alias = "sem_trywait")]
    pub fn try_wait(&self) -> Result<bool> {
        self.raw().try_wait()
    }

    /// Waits at most `timeout` to decrement the count (`sem_timedwait`, on
    /// `CLOCK_REALTIME` as for [`PosixSemaphore::wait_timeout`]).
    ///
    /// # Errors
    /// As for [`NamedSemaphore::wait`].
    #[doc(alias = "sem_timedwait")]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.raw().wait_timeout(timeout)
    }

    /// Increments the count, waking a waiter (`sem_post`).
    ///
    /// # Errors
    /// [`ErrorKind::LimitExceeded`] (`EOVERFLOW`) at [`PosixSemaphore::MAX`].
    #[doc(alias = "sem_post")]
    pub fn post(&self) -> Result<()> {
        self.raw().post()
    }

    /// The current count (`sem_getvalue`).
    ///
    /// # Errors
    /// What `sem_getvalue` reports.
    #[doc(alias = "sem_getvalue")]
    pub fn value(&self) -> Result<u32> {
        self.raw().value()
    }
}

impl Drop for NamedSemaphore {
    fn drop(&mut self) {
        // SAFETY: `sem` came from a successful sem_open and is closed once,
        // here; no reference into it outlives `self`. sem_close fails only
        // for an invalid pointer, which it is not; nothing to do about it in
        // a destructor anyway.
        unsafe { libc::sem_close(self.sem.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_semaphore_counts_in_a_region() {
        let region = Region::anonymous(4096).unwrap();
        // SAFETY: a new region nobody else uses.
        let sem = unsafe { PosixSemaphore::init_in(&region, 8, 2).unwrap() };
        assert_eq!(sem.value().unwrap(), 2);
        assert!(sem.try_wait().unwrap());
        assert!(sem.wait_timeout(Duration::from_millis(10)).unwrap());
        assert!(!sem.try_wait().unwrap());
        assert!(!sem.wait_timeout(Duration::from_millis(10)).unwrap());
        sem.post().unwrap();
        sem.wait().unwrap();
        // SAFETY: as above; nothing uses it afterwards.
        unsafe {
            assert!(PosixSemaphore::init_in(&region, 4, 0).is_err());
            assert!(PosixSemaphore::init_in(&region, 0, u32::MAX).is_err());
            sem.destroy().unwrap();
        }
    }

    #[test]
    fn named_semaphore_names_are_checked() {
        for bad in ["", "/a/b", "a\0b"] {
            assert_eq!(
                NamedSemaphore::open(bad).unwrap_err().kind(),
                ErrorKind::InvalidName
            );
        }
        let long = "x".repeat(NAME_MAX - 3);
        assert_eq!(
            NamedSemaphore::create(&long, 0).unwrap_err().kind(),
            ErrorKind::InvalidName
        );
    }

    #[test]
    fn named_semaphore_is_created_opened_and_removed() {
        let name = format!("/shmkit-unit-sem-{}", std::process::id());
        let sem = NamedSemaphore::create_with_mode(&name, 1, 0o640).unwrap();
        let path = format!("/dev/shm/sem.{}", &name[1..]);
        let mode = std::fs::metadata(&path).map(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.permissions().mode() & 0o777
        });
        let other = NamedSemaphore::open(&name);
        let exists = NamedSemaphore::create(&name, 0).map(|_| ());
        NamedSemaphore::unlink(&name).unwrap();
        assert_eq!(mode.unwrap(), 0o640);
        let other = other.unwrap();
        assert_eq!(exists.unwrap_err().kind(), ErrorKind::AlreadyExists);
        assert!(other.try_wait().unwrap());
        assert!(!sem.try_wait().unwrap());
        other.post().unwrap();
        assert_eq!(sem.value().unwrap(), 1);
        assert_eq!(
            NamedSemaphore::open(&name).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert!(!std::path::Path::new(&path).exists());
    }
}
