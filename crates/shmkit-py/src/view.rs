//! Zero-copy receive: a message read in place in its slot, as numpy.
//!
//! A `RecordView` holds one received slot of a channel. Its arrays are
//! made through a `Lease` (an object with `__array_interface__`), which
//! numpy keeps as the array's base: every array or sub-view over the slot
//! keeps its lease alive, the lease keeps the view alive, and the view keeps
//! the receiver and so the mapping alive. So no array ever points into
//! unmapped memory.
//!
//! The slot itself must go back to the ring at some point, and then its
//! bytes belong to the next message: `release()` (and leaving the `with`
//! block) refuses with `BufferError` while any array over the slot is still
//! alive, as the view holds a weak reference to every lease it handed out.
//! After a release, the view raises `ValueError` on every use. An array is
//! therefore never over a released slot. numpy does not hold a buffer export
//! (it releases the Py_buffer at once and keeps only a reference), which is
//! why the check counts leases, not exports.

use std::sync::Mutex;

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyWeakrefReference};
use shmkit::channel;
use shmkit::ErrorKind;

use crate::channel::Receiver;
use crate::errors::{timeout, to_py};
use crate::record::Record;

/// One held slot: the slot, and the receiver it borrows, taken out of the
/// `Receiver` object for as long as the slot is held.
struct Held {
    /// Borrows `*receiver`; dropped before it is given back.
    slot: Option<channel::RecvSlot<'static>>,
    /// From `Box::into_raw`; owned here until returned to the Receiver.
    receiver: *mut channel::Receiver,
}

// SAFETY: the slot and the receiver it borrows are Send (a Receiver is
// Send, and a RecvSlot is a &mut Receiver plus plain data); the raw
// pointer is only a Box whose ownership moves with `Held`. `Held` is only
// reached through the Mutex in RecordView, one thread at a time.
unsafe impl Send for Held {}

impl Held {
    /// Frees the slot and hands the receiver back as a Box.
    fn finish(mut self) -> Box<channel::Receiver> {
        drop(self.slot.take());
        let receiver = self.receiver;
        std::mem::forget(self);
        // SAFETY: `receiver` came from Box::into_raw in `receive`, the slot
        // that borrowed it was dropped just above, and `forget(self)` makes
        // this the only owner.
        unsafe { Box::from_raw(receiver) }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.slot.take());
        // SAFETY: as in `finish` (only reached when `finish` was not).
        drop(unsafe { Box::from_raw(self.receiver) });
    }
}

/// A received message read in place: `with rx.recv_view() as view:` then
/// `view.array` (numpy, no copy, read-only) or `view.tobytes()`.
#[pyclass(module = "shmkit._shmkit")]
pub struct RecordView {
    held: Mutex<Option<Held>>,
    owner: Py<Receiver>,
    record: Option<Record>,
    address: usize,
    len: usize,
    leases: Mutex<Vec<Py<PyWeakrefReference>>>,
}

impl RecordView {
    /// Receives the next message of `receiver` in place.
    pub fn receive(receiver: Bound<'_, Receiver>, secs: Option<f64>) -> PyResult<RecordView> {
        let py = receiver.py();
        let limit = timeout(secs)?;
        let mut rx_obj = receiver.borrow_mut();
        if rx_obj.lent {
            return Err(PyBufferError::new_err(
                "a view from recv_view() is still held: release it first",
            ));
        }
        let boxed = rx_obj
            .rx
            .take()
            .ok_or_else(|| crate::errors::closed("the receiver"))?;
        let raw = Box::into_raw(boxed);
        let record = rx_obj.record.as_ref().map(|r| r.clone_ref(py));
        rx_obj.lent = true;
        drop(rx_obj);
        let address = raw as usize;
        let got = crate::wait::sliced(py, limit, move |slice| {
            let raw = address as *mut channel::Receiver;
            // SAFETY: `raw` is the boxed receiver taken out above, which
            // nobody else can reach while `lent` is set; the borrow is made
            // 'static because the box outlives the slot (Held drops the slot
            // first, then the box).
            let rx: &'static mut channel::Receiver = unsafe { &mut *raw };
            rx.recv_slot_timeout(slice).map(SendSlot)
        });
        match got {
            Ok(SendSlot(slot)) => {
                let (address, len) = (slot.as_ptr() as usize, slot.len());
                Ok(RecordView {
                    held: Mutex::new(Some(Held {
                        slot: Some(slot),
                        receiver: raw,
                    })),
                    owner: receiver.clone().unbind(),
                    record,
                    address,
                    len,
                    leases: Mutex::new(Vec::new()),
                })
            }
            Err(e) => {
                // SAFETY: no slot borrows the box (the receive failed).
                let boxed = unsafe { Box::from_raw(raw) };
                let mut rx_obj = receiver.borrow_mut();
                rx_obj.rx = Some(boxed);
                rx_obj.lent = false;
                Err(e)
            }
        }
    }

    fn check_held(&self) -> PyResult<()> {
        match self.held.lock() {
            Ok(h) if h.is_some() => Ok(()),
            _ => Err(PyValueError::new_err(
                "the view was released: its slot belongs to the next message now",
            )),
        }
    }

    /// Gives the slot back to the ring and the receiver back to its owner.
    fn give_back(&self, py: Python<'_>) {
        let held = self.held.lock().ok().and_then(|mut h| h.take());
        if let Some(held) = held {
            let boxed = held.finish();
            match self.owner.bind(py).try_borrow_mut() {
                Ok(mut rx) => {
                    rx.rx = Some(boxed);
                    rx.lent = false;
                }
                // The Receiver is mid-call in another thread (which fails at
                // once, as `lent` is set): this endpoint disconnects.
                Err(_) => drop(boxed),
            }
        }
    }

    fn live_leases(&self, py: Python<'_>) -> usize {
        let mut leases = self.leases.lock().expect("lease list lock");
        leases.retain(|w| w.bind(py).upgrade().is_some());
        leases.len()
    }
}

/// A RecvSlot crossing `Python::detach` (the closure's result must be Send).
struct SendSlot(channel::RecvSlot<'static>);
// SAFETY: a RecvSlot is a &mut Receiver plus plain data, and Receiver is
// Send; it is only moved to the calling thread's GIL-holding code.
unsafe impl Send for SendSlot {}

#[pymethods]
impl RecordView {
    /// The message's length in bytes.
    fn __len__(&self) -> PyResult<usize> {
        self.check_held()?;
        Ok(self.len)
    }

    /// A copy of the message.
    fn tobytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let held = self.held.lock().expect("view lock");
        let Some(h) = held.as_ref() else {
            return Err(PyValueError::new_err("the view was released"));
        };
        let slot = h.slot.as_ref().expect("a held view has its slot");
        PyBytes::new_with(py, slot.len(), |buf| {
            slot.read_at(0, buf).map_err(|e| to_py(py, &e))
        })
    }

    /// A read-only numpy array over the slot, of the channel's record dtype
    /// and shape (or `uint8` bytes for a channel without a record). No copy.
    #[getter]
    fn array<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let view = slf.borrow();
        view.check_held()?;
        let lease = Bound::new(
            py,
            Lease {
                view: slf.clone().unbind(),
                address: view.address,
                len: view.len,
            },
        )?;
        let weak = PyWeakrefReference::new(&lease)?;
        view.leases
            .lock()
            .expect("lease list lock")
            .push(weak.unbind());
        let raw = py.import("numpy")?.getattr("asarray")?.call1((lease,))?;
        match &view.record {
            Some(r) if r.size == view.len => r.view_of(py, raw),
            Some(r) => Err(to_py(
                py,
                &shmkit::Error::new(
                    ErrorKind::Corrupt,
                    "view",
                    "channel",
                    format!(
                        "a message of {} bytes is not a record of {} bytes",
                        view.len, r.size
                    ),
                ),
            )),
            None => Ok(raw),
        }
    }

    /// Whether the slot was released.
    #[getter]
    fn released(&self) -> bool {
        self.check_held().is_err()
    }

    /// Gives the slot back (the next receive may reuse it). `BufferError`
    /// while an array over it is alive: `del` it, or `.copy()` what you
    /// keep. Idempotent.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        if self.check_held().is_err() {
            return Ok(());
        }
        let live = self.live_leases(py);
        if live > 0 {
            return Err(PyBufferError::new_err(format!(
                "cannot release the slot: {live} numpy array(s) over it still exist (delete them, or keep .copy()s)"
            )));
        }
        self.give_back(py);
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _t: Option<&Bound<'_, PyAny>>,
        _v: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.release(py)
    }
}

impl Drop for RecordView {
    fn drop(&mut self) {
        // No lease is alive (each one keeps this view alive), so the slot
        // can go back.
        Python::attach(|py| self.give_back(py));
    }
}

/// What numpy sees: the slot's bytes through `__array_interface__`.
#[pyclass(module = "shmkit._shmkit", weakref, frozen)]
pub struct Lease {
    view: Py<RecordView>,
    address: usize,
    len: usize,
}

#[pymethods]
impl Lease {
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.view.bind(py).borrow().check_held()?;
        let d = PyDict::new(py);
        d.set_item("version", 3)?;
        d.set_item("shape", (self.len,))?;
        d.set_item("typestr", "|u1")?;
        // Read-only: the slot is the sender's message, not the reader's.
        d.set_item("data", (self.address, true))?;
        Ok(d)
    }
}
