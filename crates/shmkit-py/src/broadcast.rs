//! `Broadcast`: one writer, every subscriber reads every message or learns
//! exactly how many it missed.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use shmkit::broadcast::{self, BroadcastOptions, Received};
use shmkit::ErrorKind;

use crate::bytes_like;
use crate::errors::{closed, exception, timeout, to_py, OrPy};
use crate::wait::sliced;

/// A broadcast ring: a writer that never waits, subscribers at their own pace.
#[pyclass(module = "shmkit._shmkit", name = "Broadcast", frozen)]
pub struct NativeBroadcast {
    broadcast: broadcast::Broadcast,
}

#[pymethods]
impl NativeBroadcast {
    /// Creates the broadcast `name`: a ring of `capacity` messages of up
    /// to `max_message` bytes.
    #[staticmethod]
    #[pyo3(signature = (name, capacity = 1024, max_message = 1024, mode = 0o600))]
    fn create(
        py: Python<'_>,
        name: &str,
        capacity: usize,
        max_message: usize,
        mode: u32,
    ) -> PyResult<Self> {
        let mut options = BroadcastOptions::new();
        options
            .capacity(capacity)
            .max_message(max_message)
            .mode(mode);
        let broadcast = py
            .detach(|| broadcast::Broadcast::create(name, &options))
            .or_py(py)?;
        Ok(NativeBroadcast { broadcast })
    }

    /// Opens the existing broadcast `name`.
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<Self> {
        let broadcast = py.detach(|| broadcast::Broadcast::open(name)).or_py(py)?;
        Ok(NativeBroadcast { broadcast })
    }

    /// Becomes the writer (`FileExistsError` while another live one writes;
    /// a dead one is taken over).
    fn publisher(&self, py: Python<'_>) -> PyResult<Publisher> {
        Ok(Publisher {
            publisher: Some(self.broadcast.publisher().or_py(py)?),
        })
    }

    /// Joins as a subscriber of what is published from now on (or, with
    /// `from_oldest`, of what the ring still holds first).
    #[pyo3(signature = (from_oldest = false))]
    fn subscribe(&self, py: Python<'_>, from_oldest: bool) -> PyResult<Subscriber> {
        let sub = if from_oldest {
            self.broadcast.subscribe_from_oldest()
        } else {
            self.broadcast.subscribe()
        };
        Ok(Subscriber {
            sub: Some(sub.or_py(py)?),
            name: self.broadcast.name().as_str().to_string(),
        })
    }

    /// The broadcast's name, with its slash.
    #[getter]
    fn name(&self) -> &str {
        self.broadcast.name().as_str()
    }

    /// Messages the ring keeps.
    #[getter]
    fn capacity(&self) -> usize {
        self.broadcast.capacity()
    }

    /// The largest message in bytes.
    #[getter]
    fn max_message(&self) -> usize {
        self.broadcast.max_message()
    }

    /// Messages ever published.
    #[getter]
    fn published(&self) -> u64 {
        self.broadcast.published()
    }

    /// A snapshot: published, writer, subscribers with their lag.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.broadcast.stats();
        let d = PyDict::new(py);
        d.set_item("capacity", s.capacity)?;
        d.set_item("max_message", s.max_message)?;
        d.set_item("published", s.published)?;
        d.set_item("writer_pid", s.writer.map(|w| w.pid))?;
        d.set_item("writer_alive", s.writer.map(|w| w.alive))?;
        let subs = PyList::empty(py);
        for sub in &s.subscribers {
            let e = PyDict::new(py);
            e.set_item("pid", sub.pid)?;
            e.set_item("alive", sub.alive)?;
            e.set_item("cursor", sub.cursor)?;
            e.set_item("lag", sub.lag)?;
            e.set_item("missed", sub.missed)?;
            e.set_item("received", sub.received)?;
            subs.append(e)?;
        }
        d.set_item("subscribers", subs)?;
        d.set_item("size", s.size)?;
        Ok(d)
    }

    /// Removes the broadcast's name; open handles keep working.
    fn unlink(&self, py: Python<'_>) -> PyResult<()> {
        self.broadcast.unlink().or_py(py)
    }
}

/// The one writer of a broadcast. `close()` gives the role back.
#[pyclass(module = "shmkit._shmkit")]
pub struct Publisher {
    publisher: Option<broadcast::Publisher>,
}

#[pymethods]
impl Publisher {
    /// Publishes a bytes-like message; returns its position. Never waits.
    fn send(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<u64> {
        let msg = bytes_like::frozen(data)?;
        let p = self
            .publisher
            .as_mut()
            .ok_or_else(|| closed("the publisher"))?;
        p.send(msg.as_bytes()).or_py(py)
    }

    /// The pid of the dead writer this one took over from, or None.
    #[getter]
    fn took_over_from(&self) -> Option<u32> {
        self.publisher.as_ref().and_then(|p| p.took_over_from())
    }

    /// Gives the writer role back (idempotent); subscribers then see
    /// `Disconnected` once they have read everything.
    fn close(&mut self) {
        self.publisher = None;
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
        self.close();
    }
}

/// A subscriber. `recv()` raises `Lagged` when it fell behind; iterating
/// yields each message as bytes, and a `Lagged` instance (not raised) in
/// its place where messages were missed, until the writer is gone.
#[pyclass(module = "shmkit._shmkit")]
pub struct Subscriber {
    sub: Option<broadcast::Subscriber>,
    name: String,
}

impl Subscriber {
    /// The next message, or a Lagged exception object (not raised).
    fn next_item<'py>(
        &mut self,
        py: Python<'py>,
        secs: Option<f64>,
        block: bool,
    ) -> PyResult<Option<Result<Bound<'py, PyBytes>, PyErr>>> {
        let limit = timeout(secs)?;
        let sub = self.sub.as_mut().ok_or_else(|| closed("the subscriber"))?;
        let got = match sub.try_recv() {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::WouldBlock && !block => return Ok(None),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                sliced(py, limit, |slice| sub.recv_timeout(slice))?
            }
            Err(e) => return Err(to_py(py, &e)),
        };
        Ok(Some(match got {
            Received::Message { value, .. } => Ok(PyBytes::new(py, &value)),
            Received::Lagged { missed } => {
                let e = exception(
                    py,
                    "Lagged",
                    None,
                    &format!(
                        "{}: missed {missed} messages (overwritten before they were read)",
                        self.name
                    ),
                    "Lagged",
                    "receive from",
                    &self.name,
                );
                e.value(py).setattr("missed", missed)?;
                Err(e)
            }
        }))
    }
}

#[pymethods]
impl Subscriber {
    /// The next message, waiting (GIL released) at most `timeout` seconds.
    /// `Lagged` (with `.missed`) when messages were missed: the next call
    /// goes on after the gap. `Disconnected` once the writer is gone and
    /// everything is read.
    #[pyo3(signature = (timeout = None))]
    fn recv<'py>(
        &mut self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        match self.next_item(py, timeout, true)? {
            Some(r) => r,
            None => unreachable!("a blocking receive returns an item"),
        }
    }

    /// A message if one is there now, else None (`Lagged` as `recv`).
    fn try_recv<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.next_item(py, None, false)?.transpose()
    }

    /// Messages missed so far.
    #[getter]
    fn missed(&self) -> u64 {
        self.sub.as_ref().map_or(0, |s| s.missed())
    }

    /// Messages received so far.
    #[getter]
    fn received(&self) -> u64 {
        self.sub.as_ref().map_or(0, |s| s.received())
    }

    /// The next position it will read.
    #[getter]
    fn cursor(&self) -> u64 {
        self.sub.as_ref().map_or(0, |s| s.cursor())
    }

    /// Leaves (idempotent).
    fn close(&mut self) {
        self.sub = None;
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.next_item(py, None, true) {
            Ok(Some(Ok(b))) => Ok(Some(b.into_any())),
            Ok(Some(Err(lagged))) => Ok(Some(lagged.into_value(py).into_bound(py).into_any())),
            Ok(None) => unreachable!("a blocking receive returns an item"),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyConnectionError>(py) => Ok(None),
            Err(e) => Err(e),
        }
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
        self.close();
    }
}
