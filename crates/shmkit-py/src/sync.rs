//! Named robust mutexes and named semaphores.
//!
//! A named mutex is a small POSIX object: a ready word at offset 0 (the
//! magic below, stored with Release once the mutex is initialised) and
//! glibc's process-shared robust `pthread_mutex_t` at offset 64, as
//! `shmkit::sync::Mutex` makes it. Semaphores are the C library's named
//! ones (`sem_open`), interoperable with C.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use shmkit::posix::{OpenOptions, PosixObject};
use shmkit::sync::{Mutex as RawMutex, MutexGuard as RawGuard, NamedSemaphore};
use shmkit::{Error, ErrorKind, Region};

use crate::errors::OrPy;
use crate::wait::sliced;

/// "SHMKMUTX" as a little-endian u64: the object holds a ready mutex.
const MUTEX_MAGIC: u64 = u64::from_le_bytes(*b"SHMKMUTX");
const MUTEX_OFFSET: usize = 64;
const MUTEX_OBJECT_SIZE: u64 = 128;

/// A robust, process-shared mutex with a name.
#[pyclass(module = "shmkit._shmkit", frozen)]
pub struct Mutex {
    region: Arc<Region>,
    name: String,
    /// Guards entered with `with mutex:`, innermost last.
    entered: std::sync::Mutex<Vec<Py<MutexGuard>>>,
}

impl Mutex {
    fn raw(&self) -> &'static RawMutex {
        // SAFETY: the mutex at MUTEX_OFFSET was initialised before the
        // ready word was published (checked in `open`/made in `create`);
        // the region is mapped for as long as `self.region` and every
        // guard's clone of it live, and every guard holds one, so the
        // 'static reference is never used after the unmap.
        let m = unsafe { RawMutex::open_in(&self.region, MUTEX_OFFSET) }.expect("checked at open");
        // SAFETY: as above: the region outlives every use of the reference.
        unsafe { &*(m as *const RawMutex) }
    }

    fn guard(&self, raw: RawGuard<'static>) -> MutexGuard {
        MutexGuard {
            guard: Some(raw),
            _region: self.region.clone(),
        }
    }
}

/// A lock attempt crossing `Python::detach`.
struct SendGuard(RawGuard<'static>);
// SAFETY: `Python::detach` runs its closure on the calling thread, so the
// guard is made and used on the thread that holds the lock; it only
// crosses the closure boundary, never a thread.
unsafe impl Send for SendGuard {}

#[pymethods]
impl Mutex {
    /// Creates the named mutex (exclusively), exact `mode`.
    #[staticmethod]
    #[pyo3(signature = (name, mode = 0o600))]
    fn create(py: Python<'_>, name: &str, mode: u32) -> PyResult<Mutex> {
        let obj = OpenOptions::new()
            .create_new(true)
            .size(MUTEX_OBJECT_SIZE)
            .mode(mode)
            .open(name)
            .or_py(py)?;
        let made = (|| {
            let region = obj.map()?;
            // SAFETY: the object is new (exclusive create): nobody uses a
            // mutex there yet; the region is kept in an Arc by every user.
            unsafe { RawMutex::init_in(&region, MUTEX_OFFSET)? };
            // Release: pairs with the Acquire load in `open`.
            region.atomic_u64(0)?.store(MUTEX_MAGIC, Ordering::Release);
            Ok(region)
        })();
        match made {
            Ok(region) => Ok(Mutex {
                region: Arc::new(region),
                name: obj.name().as_str().to_string(),
                entered: Default::default(),
            }),
            Err(e) => {
                let _ = obj.unlink();
                Err(crate::errors::to_py(py, &e))
            }
        }
    }

    /// Opens an existing named mutex.
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<Mutex> {
        let opened = py.detach(|| -> shmkit::Result<(Region, String)> {
            let obj = PosixObject::open(name)?;
            let object = obj.name().as_str().to_string();
            let region = obj.map()?;
            if (region.len() as u64) < MUTEX_OBJECT_SIZE {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    "open",
                    &object,
                    format!("{} bytes cannot hold a shmkit mutex", region.len()),
                ));
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            // Acquire: pairs with the Release store in `create`.
            while region.load_u64(0, Ordering::Acquire)? != MUTEX_MAGIC {
                if Instant::now() >= deadline {
                    return Err(Error::new(
                        ErrorKind::Corrupt,
                        "open",
                        &object,
                        "it holds no shmkit mutex (or its creator never finished it)",
                    ));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok((region, object))
        });
        let (region, name) = opened.or_py(py)?;
        Ok(Mutex {
            region: Arc::new(region),
            name,
            entered: Default::default(),
        })
    }

    /// Locks, waiting (GIL released) at most `timeout` seconds
    /// (`TimeoutError`) or for ever; the guard says whether the previous
    /// owner died holding it.
    #[pyo3(signature = (timeout = None))]
    fn lock(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<MutexGuard> {
        let limit = crate::errors::timeout(timeout)?;
        let raw = self.raw();
        let name = self.name.clone();
        let got = sliced(py, limit, |slice| match raw.lock_timeout(slice) {
            Ok(Some(g)) => Ok(SendGuard(g)),
            Ok(None) => Err(Error::new(ErrorKind::TimedOut, "lock", &name, "timed out")),
            Err(e) => Err(e),
        })?;
        Ok(self.guard(got.0))
    }

    /// Locks if free now; None if another holds it.
    fn try_lock(&self, py: Python<'_>) -> PyResult<Option<MutexGuard>> {
        Ok(self.raw().try_lock().or_py(py)?.map(|g| self.guard(g)))
    }

    /// The name, with its slash.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Removes the name; open handles keep working.
    fn unlink(&self, py: Python<'_>) -> PyResult<()> {
        shmkit::posix::unlink(&self.name).or_py(py)
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<MutexGuard>> {
        let guard = Py::new(py, self.lock(py, None)?)?;
        self.entered
            .lock()
            .expect("entered list lock")
            .push(guard.clone_ref(py));
        Ok(guard)
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _t: Option<&Bound<'_, PyAny>>,
        _v: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let guard = self.entered.lock().expect("entered list lock").pop();
        if let Some(g) = guard {
            g.bind(py).borrow_mut().unlock();
        }
        Ok(())
    }
}

/// A held lock. Unlocks on `unlock()`, at the end of its `with` block, or
/// when freed; only the thread that locked may use it.
#[pyclass(module = "shmkit._shmkit", unsendable)]
pub struct MutexGuard {
    /// Dropped (unlocked) before `_region` (fields drop in order).
    guard: Option<RawGuard<'static>>,
    _region: Arc<Region>,
}

#[pymethods]
impl MutexGuard {
    /// Whether the previous owner died holding the lock: repair the state
    /// it protects, then call `mark_consistent()` (else the mutex becomes
    /// unusable when this guard unlocks).
    #[getter]
    fn previous_owner_died(&self) -> bool {
        self.guard.as_ref().is_some_and(|g| g.previous_owner_died())
    }

    /// Whether unlocking leaves the mutex usable.
    #[getter]
    fn consistent(&self) -> bool {
        self.guard.as_ref().is_none_or(|g| g.is_consistent())
    }

    /// Declares the protected state repaired after an owner died.
    fn mark_consistent(&mut self, py: Python<'_>) -> PyResult<()> {
        match self.guard.as_mut() {
            Some(g) => g.mark_consistent().or_py(py),
            None => Err(crate::errors::closed("the guard")),
        }
    }

    /// Whether the lock is still held through this guard.
    #[getter]
    fn locked(&self) -> bool {
        self.guard.is_some()
    }

    /// Unlocks (idempotent).
    fn unlock(&mut self) {
        self.guard = None;
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &mut self,
        _t: Option<&Bound<'_, PyAny>>,
        _v: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) {
        self.unlock();
    }
}

/// A named POSIX semaphore (`sem_open`), shared with C programs.
#[pyclass(module = "shmkit._shmkit", frozen)]
pub struct Semaphore {
    sem: NamedSemaphore,
}

#[pymethods]
impl Semaphore {
    /// Creates the semaphore `name` with `value`, exact `mode`.
    #[staticmethod]
    #[pyo3(signature = (name, value = 0, mode = 0o600))]
    fn create(py: Python<'_>, name: &str, value: u32, mode: u32) -> PyResult<Semaphore> {
        Ok(Semaphore {
            sem: NamedSemaphore::create_with_mode(name, value, mode).or_py(py)?,
        })
    }

    /// Opens an existing semaphore.
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<Semaphore> {
        Ok(Semaphore {
            sem: NamedSemaphore::open(name).or_py(py)?,
        })
    }

    /// Removes the semaphore `name`; open handles keep working.
    #[staticmethod]
    #[pyo3(name = "unlink")]
    fn unlink_name(py: Python<'_>, name: &str) -> PyResult<()> {
        NamedSemaphore::unlink(name).or_py(py)
    }

    /// Takes one unit, waiting (GIL released) at most `timeout` seconds;
    /// returns False on timeout.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let limit = crate::errors::timeout(timeout)?;
        let sem = &self.sem;
        let got = sliced(py, limit, |slice| match sem.wait_timeout(slice) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::new(
                ErrorKind::TimedOut,
                "wait on",
                sem.name(),
                "timed out",
            )),
            Err(e) => Err(e),
        });
        match got {
            Ok(()) => Ok(true),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyTimeoutError>(py) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Takes one unit if there is one now.
    fn try_wait(&self, py: Python<'_>) -> PyResult<bool> {
        self.sem.try_wait().or_py(py)
    }

    /// Gives one unit back.
    fn post(&self, py: Python<'_>) -> PyResult<()> {
        self.sem.post().or_py(py)
    }

    /// The current value.
    #[getter]
    fn value(&self, py: Python<'_>) -> PyResult<u32> {
        self.sem.value().or_py(py)
    }

    /// The name, with its slash.
    #[getter]
    fn name(&self) -> &str {
        self.sem.name()
    }

    fn __enter__(slf: Py<Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        slf.get().wait(py, None)?;
        Ok(slf)
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _t: Option<&Bound<'_, PyAny>>,
        _v: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.post(py)
    }
}
