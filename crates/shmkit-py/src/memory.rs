//! Named POSIX shared memory for `shmkit.SharedMemory`: the object (opened
//! with shmkit's checks, space reserved) and its mappings.
//!
//! A `Mapping` is unmapped only when the last Python object over it is
//! gone: `shmkit/_memory.py` builds `buf` as a memoryview of a ctypes array
//! that keeps the Mapping alive, and numpy arrays made from `buf` keep that
//! memoryview alive. Closing never unmaps under a live view.

use std::sync::Arc;

use pyo3::prelude::*;
use shmkit::posix::{OpenOptions, PosixObject};
use shmkit::Region;

use crate::errors::OrPy;

/// A named POSIX shared memory object.
#[pyclass(module = "shmkit._shmkit", frozen)]
pub struct ShmObject {
    object: PosixObject,
}

#[pymethods]
impl ShmObject {
    /// Opens `name`; with `create`, makes it (exclusively) with `size`
    /// bytes reserved and exactly `mode` (no umask).
    #[staticmethod]
    #[pyo3(signature = (name, create = false, size = 0, mode = 0o600, read_only = false))]
    fn open(
        py: Python<'_>,
        name: &str,
        create: bool,
        size: u64,
        mode: u32,
        read_only: bool,
    ) -> PyResult<Self> {
        let object = py
            .detach(|| {
                if create {
                    OpenOptions::new()
                        .create_new(true)
                        .size(size)
                        .mode(mode)
                        .open(name)
                } else if read_only {
                    PosixObject::open_read_only(name)
                } else {
                    PosixObject::open(name)
                }
            })
            .or_py(py)?;
        Ok(ShmObject { object })
    }

    /// The name, with its slash.
    #[getter]
    fn name(&self) -> &str {
        self.object.name().as_str()
    }

    /// The current size in bytes (`fstat`).
    fn size(&self, py: Python<'_>) -> PyResult<u64> {
        self.object.size().or_py(py)
    }

    /// The permission bits.
    fn mode(&self, py: Python<'_>) -> PyResult<u32> {
        Ok(self.object.metadata().or_py(py)?.mode & 0o7777)
    }

    /// Whether it was opened for writing.
    #[getter]
    fn writable(&self) -> bool {
        self.object.is_writable()
    }

    /// Grows (keeping the data, reserving the new space: `OSError(ENOSPC)`
    /// when /dev/shm is full) or shrinks the object.
    fn resize(&self, py: Python<'_>, size: u64) -> PyResult<()> {
        py.detach(|| self.object.resize(size)).or_py(py)
    }

    /// Maps the whole object (a writable mapping reserves its pages first).
    fn map(&self, py: Python<'_>) -> PyResult<Mapping> {
        let region = py
            .detach(|| {
                if self.object.is_writable() {
                    self.object.map()
                } else {
                    self.object.map_read_only()
                }
            })
            .or_py(py)?;
        Ok(Mapping {
            region: Arc::new(region),
        })
    }

    /// Removes the name (`shm_unlink`); mappings stay valid.
    fn unlink(&self, py: Python<'_>) -> PyResult<()> {
        self.object.unlink().or_py(py)
    }
}

/// One mapping, unmapped when this object is freed.
#[pyclass(module = "shmkit._shmkit", frozen)]
pub struct Mapping {
    region: Arc<Region>,
}

#[pymethods]
impl Mapping {
    /// The first byte's address.
    #[getter]
    fn address(&self) -> usize {
        self.region.as_ptr() as usize
    }

    /// Its length in bytes.
    #[getter]
    fn size(&self) -> usize {
        self.region.len()
    }

    /// Whether it may be written.
    #[getter]
    fn writable(&self) -> bool {
        self.region.is_writable()
    }
}
