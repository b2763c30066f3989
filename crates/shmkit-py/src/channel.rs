//! `Channel`, `Sender`, `Receiver`: shmkit's channels for Python.

use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use shmkit::channel::{self, ChannelOptions};
use shmkit::ErrorKind;

use crate::bytes_like;
use crate::errors::{closed, invalid, timeout, to_py, OrPy};
use crate::record::Record;
use crate::view::RecordView;
use crate::wait::sliced;

/// A channel: a named shared memory object that senders and receivers in
/// any number of processes connect to.
#[pyclass(module = "shmkit._shmkit", name = "NativeChannel", frozen)]
pub struct NativeChannel {
    channel: channel::Channel,
}

#[pymethods]
impl NativeChannel {
    /// Creates the channel `name`; fails if it exists.
    #[staticmethod]
    #[pyo3(signature = (name, capacity = 1024, max_message = 1024, spsc = false, mode = 0o600))]
    fn create(
        py: Python<'_>,
        name: &str,
        capacity: usize,
        max_message: usize,
        spsc: bool,
        mode: u32,
    ) -> PyResult<Self> {
        let mut options = ChannelOptions::new();
        options
            .capacity(capacity)
            .max_message(max_message)
            .spsc(spsc)
            .mode(mode);
        let channel = py
            .detach(|| channel::Channel::create(name, &options))
            .or_py(py)?;
        Ok(NativeChannel { channel })
    }

    /// Opens the existing channel `name`, checking its header.
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<Self> {
        let channel = py.detach(|| channel::Channel::open(name)).or_py(py)?;
        Ok(NativeChannel { channel })
    }

    /// Connects a sender.
    fn sender(&self, py: Python<'_>) -> PyResult<Sender> {
        let tx = self.channel.sender().or_py(py)?;
        Ok(Sender {
            tx: Some(tx),
            record: None,
        })
    }

    /// Connects a receiver.
    fn receiver(&self, py: Python<'_>) -> PyResult<Receiver> {
        Receiver::connect(py, &self.channel)
    }

    /// The channel's name, with its slash.
    #[getter]
    fn name(&self) -> &str {
        self.channel.name().as_str()
    }

    /// Messages the ring holds.
    #[getter]
    fn capacity(&self) -> usize {
        self.channel.capacity()
    }

    /// The largest message in bytes.
    #[getter]
    fn max_message(&self) -> usize {
        self.channel.max_message()
    }

    /// Whether the channel takes one sender and one receiver at a time.
    #[getter]
    fn spsc(&self) -> bool {
        self.channel.is_spsc()
    }

    /// A snapshot: depth, counters, connected endpoints.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.channel.stats();
        let d = PyDict::new(py);
        d.set_item("capacity", s.capacity)?;
        d.set_item("max_message", s.max_message)?;
        d.set_item("spsc", s.spsc)?;
        d.set_item("depth", s.depth)?;
        d.set_item("sent", s.sent)?;
        d.set_item("received", s.received)?;
        let endpoints = PyList::empty(py);
        for e in &s.endpoints {
            let ep = PyDict::new(py);
            ep.set_item("pid", e.pid)?;
            ep.set_item(
                "role",
                match e.role {
                    channel::Role::Sender => "sender",
                    channel::Role::Receiver => "receiver",
                },
            )?;
            ep.set_item("alive", e.alive)?;
            ep.set_item("messages", e.messages)?;
            endpoints.append(ep)?;
        }
        d.set_item("endpoints", endpoints)?;
        d.set_item("creator_pid", s.creator.pid)?;
        d.set_item("creator_alive", s.creator_alive)?;
        d.set_item("size", s.size)?;
        Ok(d)
    }

    /// Removes the channel's name; connected endpoints keep working.
    fn unlink(&self, py: Python<'_>) -> PyResult<()> {
        self.channel.unlink().or_py(py)
    }

    fn __repr__(&self) -> String {
        format!(
            "NativeChannel({:?}, capacity={}, max_message={})",
            self.channel.name().as_str(),
            self.channel.capacity(),
            self.channel.max_message()
        )
    }
}

/// `"spin"` (spin briefly, then sleep: the default) or `"sleep"` (sleep on
/// the futex at once: no CPU spent spinning, a wake-up for every wait).
fn wait_strategy(mode: &str) -> PyResult<channel::WaitStrategy> {
    match mode {
        "spin" => Ok(channel::WaitStrategy::SpinThenSleep),
        "sleep" => Ok(channel::WaitStrategy::Sleep),
        other => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "wait must be \"spin\" or \"sleep\", not {other:?}"
        ))),
    }
}

/// The sending end of a channel: one endpoint. `close()` (or leaving a
/// `with` block) disconnects it; receivers learn when every sender is gone.
#[pyclass(module = "shmkit._shmkit")]
pub struct Sender {
    tx: Option<channel::Sender>,
    record: Option<Record>,
}

impl Sender {
    fn tx(&mut self) -> PyResult<&mut channel::Sender> {
        self.tx.as_mut().ok_or_else(|| closed("the sender"))
    }

    fn send_bytes(&mut self, py: Python<'_>, msg: &[u8], secs: Option<f64>) -> PyResult<()> {
        let limit = timeout(secs)?;
        let tx = self.tx()?;
        match tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::WouldBlock && limit != Some(Default::default()) => {
                sliced(py, limit, |slice| tx.send_timeout(msg, slice))
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                Err(to_py(py, &e.with_kind(ErrorKind::TimedOut)))
            }
            Err(e) => Err(to_py(py, &e)),
        }
    }
}

#[pymethods]
impl Sender {
    /// Sends a bytes-like message, waiting (GIL released) while the channel
    /// is full: at most `timeout` seconds (`TimeoutError`), or for ever.
    #[pyo3(signature = (data, timeout = None))]
    fn send(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let msg = bytes_like::frozen(data)?;
        self.send_bytes(py, msg.as_bytes(), timeout)
    }

    /// Sends if there is room now; returns whether it did.
    fn try_send(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        let msg = bytes_like::frozen(data)?;
        match self.tx()?.try_send(msg.as_bytes()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(to_py(py, &e)),
        }
    }

    /// Sends every message of an iterable in order, waking receivers once
    /// per batch: the cheap way to stream. Waits (GIL released) while full.
    fn send_many(&mut self, py: Python<'_>, messages: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut held = Vec::new();
        for item in messages.try_iter()? {
            held.push(bytes_like::frozen(&item?)?);
        }
        let slices: Vec<&[u8]> = held.iter().map(|b| b.as_bytes()).collect();
        let tx = self.tx()?;
        py.detach(|| tx.send_batch(slices.iter().copied()))
            .or_py(py)
    }

    /// Sends a numpy array of the channel's record dtype and shape.
    #[pyo3(signature = (array, timeout = None))]
    fn send_array(
        &mut self,
        py: Python<'_>,
        array: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let name = self.tx()?.name().as_str().to_string();
        let record = self.record.as_ref().ok_or_else(|| {
            invalid(
                py,
                "send to",
                &name,
                "it was created without a record dtype",
            )
        })?;
        let data = record.to_bytes(py, &name, array)?;
        self.send_bytes(py, data.as_bytes(), timeout)
    }

    /// The largest message in bytes.
    #[getter]
    fn max_message(&mut self) -> PyResult<usize> {
        Ok(self.tx()?.max_message())
    }

    /// How a full channel is waited for: `"spin"` (spin briefly, then sleep
    /// on a shared futex; the default) or `"sleep"` (sleep at once).
    fn set_wait(&mut self, mode: &str) -> PyResult<()> {
        let wait = wait_strategy(mode)?;
        self.tx()?.set_wait_strategy(wait);
        Ok(())
    }

    /// Disconnects (idempotent).
    fn close(&mut self) {
        self.tx = None;
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.tx.is_none()
    }

    #[pyo3(name = "_set_record")]
    fn set_record(&mut self, dtype: Py<PyAny>, shape: Py<PyTuple>, itemsize: usize) {
        self.record = Some(Record {
            dtype,
            shape,
            size: itemsize,
        });
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

/// The receiving end of a channel: one endpoint. Iterating yields messages
/// until every sender is gone and the channel is empty.
#[pyclass(module = "shmkit._shmkit", subclass)]
pub struct Receiver {
    /// Boxed so that a zero-copy view can borrow it at a stable address
    /// while it is lent out (see `RecordView`).
    pub(crate) rx: Option<Box<channel::Receiver>>,
    /// A `RecordView` holds `rx` now.
    pub(crate) lent: bool,
    pub(crate) record: Option<Record>,
    name: String,
    max_message: usize,
    /// The channel, for `_senders_gone` (its endpoint table).
    channel: channel::Channel,
    /// The descriptor asyncio watches (`recv_async`), made on first use.
    readiness: Option<shmkit::readiness::Readiness>,
}

impl Receiver {
    fn connect(py: Python<'_>, ch: &channel::Channel) -> PyResult<Receiver> {
        let rx = ch.receiver().or_py(py)?;
        Ok(Receiver {
            rx: Some(Box::new(rx)),
            lent: false,
            record: None,
            name: ch.name().as_str().to_string(),
            max_message: ch.max_message(),
            channel: ch.clone(),
            readiness: None,
        })
    }

    fn rx(&mut self) -> PyResult<&mut channel::Receiver> {
        if self.lent {
            return Err(pyo3::exceptions::PyBufferError::new_err(format!(
                "a zero-copy view of {} from recv_view() is still held: release it first",
                self.name
            )));
        }
        self.rx.as_deref_mut().ok_or_else(|| closed("the receiver"))
    }

    /// The next message as bytes; None when `disconnected_is_none` and
    /// every sender is gone.
    fn next_message<'py>(
        &mut self,
        py: Python<'py>,
        secs: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let limit = timeout(secs)?;
        let rx = self.rx()?;
        match rx.try_recv_slot() {
            Ok(slot) => {
                return PyBytes::new_with(py, slot.len(), |buf| {
                    slot.read_at(0, buf).map_err(|e| to_py(py, &e))
                })
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(to_py(py, &e)),
        }
        if limit == Some(Default::default()) {
            return Err(to_py(
                py,
                &shmkit::Error::new(ErrorKind::TimedOut, "receive from", &self.name, "timed out"),
            ));
        }
        let msg = sliced(py, limit, |slice| rx.recv_timeout(slice))?;
        Ok(PyBytes::new(py, &msg))
    }

    fn record(&self, py: Python<'_>) -> PyResult<&Record> {
        self.record.as_ref().ok_or_else(|| {
            invalid(
                py,
                "receive from",
                &self.name,
                "it was created without a record dtype",
            )
        })
    }
}

#[pymethods]
impl Receiver {
    /// Connects a receiver to `channel` (what `Channel.receiver()` does).
    #[new]
    fn new(py: Python<'_>, channel: &NativeChannel) -> PyResult<Receiver> {
        Receiver::connect(py, &channel.channel)
    }

    /// The readiness descriptor an event loop watches (made on first use;
    /// see `shmkit::readiness`).
    fn _readiness_fd(&mut self, py: Python<'_>) -> PyResult<i32> {
        use std::os::fd::AsRawFd;
        if self.readiness.is_none() {
            let r = self.rx()?.readiness().or_py(py)?;
            self.readiness = Some(r);
        }
        Ok(self.readiness.as_ref().expect("made above").as_raw_fd())
    }

    /// Arms the descriptor before sleeping on it: False if a message may be
    /// there already (receive again), True if the caller may sleep.
    fn _arm(&mut self, py: Python<'_>) -> PyResult<bool> {
        self._readiness_fd(py)?;
        let readiness = self.readiness.take().expect("made above");
        let armed = self
            .rx()
            .and_then(|rx| rx.arm_readiness(&readiness).or_py(py));
        self.readiness = Some(readiness);
        Ok(armed? == shmkit::readiness::Arm::Sleep)
    }

    /// Whether every sender that connected is gone (live ones are counted
    /// from the endpoint table, killed ones judged by pid and start time).
    /// What `recv_async` checks after each idle slice.
    fn _senders_gone(&self) -> bool {
        let stats = self.channel.stats();
        let mut senders = stats
            .endpoints
            .iter()
            .filter(|e| e.role == channel::Role::Sender);
        let someone_sent = stats.sent > 0
            || stats
                .endpoints
                .iter()
                .any(|e| e.role == channel::Role::Sender);
        someone_sent && senders.all(|e| !e.alive)
    }

    /// Receives the next message, waiting (GIL released) while the channel
    /// is empty: at most `timeout` seconds (`TimeoutError`), or for ever.
    /// `Disconnected` once it is empty and every sender is gone.
    #[pyo3(signature = (timeout = None))]
    fn recv<'py>(
        &mut self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.next_message(py, timeout)
    }

    /// A message if one is there now, else None. It does not wait, so it
    /// cannot tell an empty channel from one whose senders are all gone:
    /// `recv` (with a timeout) reports `Disconnected`.
    fn try_recv<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let rx = self.rx()?;
        match rx.try_recv_slot() {
            Ok(slot) => PyBytes::new_with(py, slot.len(), |buf| {
                slot.read_at(0, buf).map_err(|e| to_py(py, &e))
            })
            .map(Some),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(to_py(py, &e)),
        }
    }

    /// Receives into a writable buffer of at least `max_message` bytes;
    /// returns the message's length.
    #[pyo3(signature = (buffer, timeout = None))]
    fn recv_into(
        &mut self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let limit = crate::errors::timeout(timeout)?;
        let (_export, address, len) = bytes_like::writable(buffer)?;
        if len < self.max_message {
            return Err(invalid(
                py,
                "receive from",
                &self.name,
                &format!(
                    "the buffer holds {len} bytes, less than the channel's largest message ({} bytes)",
                    self.max_message
                ),
            ));
        }
        let rx = self.rx()?;
        let copy = |slot: channel::RecvSlot<'_>| {
            let n = slot.len();
            // SAFETY: `address` is the start of a writable, C-contiguous
            // buffer of `len` >= max_message >= n bytes, exported to
            // `_export` (it can be neither freed nor resized) until this
            // function returns; the slot's payload is `n` bytes and is ours
            // until the slot drops.
            unsafe { std::ptr::copy_nonoverlapping(slot.as_ptr(), address as *mut u8, n) };
            n
        };
        match rx.try_recv_slot() {
            Ok(slot) => return Ok(copy(slot)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(to_py(py, &e)),
        }
        let deadline = limit.and_then(|t| Instant::now().checked_add(t));
        loop {
            let got = py.detach(|| {
                let slice = match deadline {
                    Some(d) => d
                        .saturating_duration_since(Instant::now())
                        .min(crate::wait::SLICE),
                    None => crate::wait::SLICE,
                };
                rx.recv_slot_timeout(slice).map(copy)
            });
            match got {
                Ok(n) => return Ok(n),
                Err(e)
                    if e.kind() == ErrorKind::TimedOut
                        && deadline.is_none_or(|d| Instant::now() < d) =>
                {
                    py.check_signals()?
                }
                Err(e) => return Err(to_py(py, &e)),
            }
        }
    }

    /// Receives up to `max_messages` messages: waits (GIL released, at most
    /// `timeout`) for the first, then takes those already there.
    #[pyo3(signature = (max_messages = 64, timeout = None))]
    fn recv_many<'py>(
        &mut self,
        py: Python<'py>,
        max_messages: usize,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let limit = crate::errors::timeout(timeout)?;
        let rx = self.rx()?;
        let out = PyList::empty(py);
        // First with the GIL held and no wait: building the bytes objects
        // directly from the slots.
        let mut failed = None;
        let quick =
            rx.recv_batch(
                max_messages,
                Some(Instant::now()),
                |slot| match PyBytes::new_with(py, slot.len(), |buf| {
                    slot.read_at(0, buf).map_err(|e| to_py(py, &e))
                })
                .and_then(|b| out.append(b))
                {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        // A Python error (out of memory): keep it, and stop
                        // the batch with a placeholder the caller discards.
                        failed = Some(e);
                        Err(shmkit::Error::new(
                            ErrorKind::Other,
                            "receive",
                            "",
                            "python",
                        ))
                    }
                },
            );
        if let Some(e) = failed {
            return Err(e);
        }
        match quick {
            Ok(_) => return Ok(out),
            Err(e) if e.kind() == ErrorKind::TimedOut && limit != Some(Default::default()) => {}
            Err(e) => return Err(to_py(py, &e)),
        }
        let deadline = limit.and_then(|t| Instant::now().checked_add(t));
        let messages = loop {
            let got = py.detach(|| {
                let slice_end = Instant::now() + crate::wait::SLICE;
                let until = deadline.map_or(slice_end, |d| d.min(slice_end));
                let mut got = Vec::new();
                rx.recv_batch(max_messages, Some(until), |slot| {
                    got.push(slot.to_vec());
                    Ok(())
                })
                .map(|_| got)
            });
            match got {
                Ok(m) => break m,
                Err(e)
                    if e.kind() == ErrorKind::TimedOut
                        && deadline.is_none_or(|d| Instant::now() < d) =>
                {
                    py.check_signals()?
                }
                Err(e) => return Err(to_py(py, &e)),
            }
        };
        for m in messages {
            out.append(PyBytes::new(py, &m))?;
        }
        Ok(out)
    }

    /// Receives a record as a new numpy array (a copy that owns its data).
    #[pyo3(signature = (timeout = None))]
    fn recv_array<'py>(
        &mut self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let record = self.record(py)?;
        let size = record.size;
        let out = record.empty(py)?;
        let n = self.recv_into(py, &out, timeout)?;
        if n != size {
            return Err(to_py(
                py,
                &shmkit::Error::new(
                    ErrorKind::Corrupt,
                    "receive from",
                    &self.name,
                    format!("a message of {n} bytes is not a record of {size} bytes"),
                ),
            ));
        }
        Ok(out)
    }

    /// Receives the next message in place: a `RecordView` over its slot in
    /// shared memory (no copy), held until `release()` or the end of the
    /// `with` block. See `RecordView`.
    #[pyo3(signature = (timeout = None))]
    fn recv_view(slf: Bound<'_, Self>, timeout: Option<f64>) -> PyResult<RecordView> {
        RecordView::receive(slf, timeout)
    }

    /// How an empty channel is waited for: `"spin"` (spin briefly, then
    /// sleep on a shared futex; the default) or `"sleep"` (sleep at once).
    fn set_wait(&mut self, mode: &str) -> PyResult<()> {
        let wait = wait_strategy(mode)?;
        self.rx()?.set_wait_strategy(wait);
        Ok(())
    }

    /// Disconnects (idempotent). Refused while a view is held.
    fn close(&mut self) -> PyResult<()> {
        if self.lent {
            return Err(pyo3::exceptions::PyBufferError::new_err(format!(
                "a zero-copy view of {} is still held: release it before closing",
                self.name
            )));
        }
        self.readiness = None;
        self.rx = None;
        Ok(())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.rx.is_none() && !self.lent
    }

    /// The largest message in bytes.
    #[getter]
    fn max_message(&self) -> usize {
        self.max_message
    }

    #[pyo3(name = "_set_record")]
    fn set_record(&mut self, dtype: Py<PyAny>, shape: Py<PyTuple>, itemsize: usize) {
        self.record = Some(Record {
            dtype,
            shape,
            size: itemsize,
        });
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        match self.next_message(py, None) {
            Ok(b) => Ok(Some(b)),
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
    ) -> PyResult<()> {
        self.close()
    }
}
