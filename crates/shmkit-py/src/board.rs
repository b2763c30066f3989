//! `Board`: the latest value, one writer at a time, any number of readers.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use shmkit::board::{self, BoardOptions};

use crate::bytes_like;
use crate::errors::{invalid, OrPy};
use crate::wait::sliced;

/// A blackboard: one value, written by one process at a time and read by
/// any number (a double-buffered sequence lock: no read is ever torn).
#[pyclass(module = "shmkit._shmkit", name = "NativeBoard", frozen)]
pub struct NativeBoard {
    board: board::Board,
    /// This handle's writer role, claimed by the first `set`.
    writer: Mutex<Option<board::BoardWriter>>,
}

impl NativeBoard {
    fn new(board: board::Board) -> Self {
        NativeBoard {
            board,
            writer: Mutex::new(None),
        }
    }

    fn name_str(&self) -> &str {
        self.board.name().as_str()
    }
}

#[pymethods]
impl NativeBoard {
    /// Creates the board `name` for values of up to `size` bytes.
    #[staticmethod]
    #[pyo3(signature = (name, size = 4096, mode = 0o600))]
    fn create(py: Python<'_>, name: &str, size: usize, mode: u32) -> PyResult<Self> {
        let mut options = BoardOptions::new();
        options.max_size(size).mode(mode);
        let b = py
            .detach(|| board::Board::create(name, &options))
            .or_py(py)?;
        Ok(Self::new(b))
    }

    /// Opens the existing board `name` (read-only when this process may
    /// not write it).
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<Self> {
        let b = py.detach(|| board::Board::open(name)).or_py(py)?;
        Ok(Self::new(b))
    }

    /// Replaces the value; returns its version. The first call makes this
    /// handle the board's writer (`FileExistsError` while another live
    /// process writes; a dead writer is taken over).
    fn set(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<u64> {
        let data = bytes_like::frozen(value)?;
        let mut writer = self
            .writer
            .lock()
            .map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("board writer lock poisoned"))?;
        if writer.is_none() {
            *writer = Some(self.board.writer().or_py(py)?);
        }
        writer
            .as_mut()
            .expect("claimed above")
            .write(data.as_bytes())
            .or_py(py)
    }

    /// Makes this handle the writer now (see `set`); returns the pid of the
    /// dead writer it took over from, or None.
    fn claim_writer(&self, py: Python<'_>) -> PyResult<Option<u32>> {
        let mut writer = self.writer.lock().expect("board writer lock");
        if writer.is_none() {
            *writer = Some(self.board.writer().or_py(py)?);
        }
        Ok(writer.as_ref().and_then(|w| w.took_over_from()))
    }

    /// Gives the writer role back (idempotent).
    fn release_writer(&self) {
        *self.writer.lock().expect("board writer lock") = None;
    }

    /// The pid of the dead writer this handle's writer took over from.
    #[getter]
    fn took_over_from(&self) -> Option<u32> {
        self.writer
            .lock()
            .ok()
            .and_then(|w| w.as_ref().and_then(|w| w.took_over_from()))
    }

    /// The latest complete value (empty before the first write).
    fn get<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let (value, _) = self.board.read().or_py(py)?;
        Ok(PyBytes::new(py, &value))
    }

    /// The latest complete value and its version.
    fn get_with_version<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, u64)> {
        let (value, version) = self.board.read().or_py(py)?;
        Ok((PyBytes::new(py, &value), version))
    }

    /// Copies the value into a writable buffer of at least `max_size`
    /// bytes; returns (length, version).
    fn get_into(&self, py: Python<'_>, buffer: &Bound<'_, PyAny>) -> PyResult<(usize, u64)> {
        let (_export, address, len) = bytes_like::writable(buffer)?;
        let max = self.board.max_size();
        if len < max {
            return Err(invalid(
                py,
                "read",
                self.name_str(),
                &format!("the buffer holds {len} bytes, less than the board's largest value ({max} bytes)"),
            ));
        }
        let mut value = Vec::with_capacity(max);
        let version = self.board.read_into(&mut value).or_py(py)?;
        // SAFETY: `address` starts a writable, C-contiguous buffer of `len`
        // >= max_size >= value.len() bytes, exported (so neither freed nor
        // resized) until `_export` drops at the end of this function.
        unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), address as *mut u8, value.len()) };
        Ok((value.len(), version))
    }

    /// The latest complete version (0 before the first write).
    #[getter]
    fn version(&self) -> u64 {
        self.board.version()
    }

    /// Waits (GIL released) until the version differs from `since` (the
    /// current one if None), at most `timeout` seconds; returns (value,
    /// version). Versions in between may be skipped.
    #[pyo3(signature = (since = None, timeout = None))]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        since: Option<u64>,
        timeout: Option<f64>,
    ) -> PyResult<(Bound<'py, PyBytes>, u64)> {
        let limit = crate::errors::timeout(timeout)?;
        let since = since.unwrap_or_else(|| self.board.version());
        let board = &self.board;
        let (value, version) =
            sliced(py, limit, |slice| board.wait_for_change(since, Some(slice)))?;
        Ok((PyBytes::new(py, &value), version))
    }

    /// The largest value in bytes.
    #[getter]
    fn max_size(&self) -> usize {
        self.board.max_size()
    }

    /// The board's name, with its slash.
    #[getter]
    fn name(&self) -> &str {
        self.name_str()
    }

    /// A snapshot: version, writer, sizes.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.board.stats();
        let d = PyDict::new(py);
        d.set_item("version", s.version)?;
        d.set_item("write_in_progress", s.write_in_progress)?;
        d.set_item("writer_pid", s.writer.map(|w| w.pid))?;
        d.set_item("writer_alive", s.writer.map(|w| w.alive))?;
        d.set_item("max_size", s.max_size)?;
        d.set_item("creator_pid", s.creator.pid)?;
        d.set_item("size", s.size)?;
        Ok(d)
    }

    /// Removes the board's name; open handles keep working.
    fn unlink(&self, py: Python<'_>) -> PyResult<()> {
        self.board.unlink().or_py(py)
    }
}
