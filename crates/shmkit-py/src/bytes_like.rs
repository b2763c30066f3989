//! Reading Python bytes-like objects and writable buffers without the
//! buffer protocol in Rust (the stable ABI for 3.9 does not have it).

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

/// Immutable bytes for a bytes-like `data`: `bytes` itself without a
/// copy; anything else (bytearray, memoryview, array, numpy array) copied
/// through `bytes(memoryview(data))`, so that another thread cannot change
/// it while the GIL is released.
pub fn frozen<'py>(data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(b.clone());
    }
    if let Ok(b) = data.cast::<PyByteArray>() {
        return Ok(PyBytes::new(data.py(), &b.to_vec()));
    }
    let py = data.py();
    let view = py
        .import("builtins")?
        .getattr("memoryview")?
        .call1((data,))
        .map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "a bytes-like object is required, not '{}'",
                data.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
    Ok(view.call_method0("tobytes")?.cast_into::<PyBytes>()?)
}

/// A writable, C-contiguous buffer's address and length, through
/// `ctypes.c_char.from_buffer`; the returned object holds the export (the
/// buffer cannot be resized or freed) until it is dropped.
pub fn writable<'py>(buffer: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, usize, usize)> {
    let py = buffer.py();
    let view = py
        .import("builtins")?
        .getattr("memoryview")?
        .call1((buffer,))?;
    if view.getattr("readonly")?.extract::<bool>()? {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "the buffer is read-only: recv_into needs a writable one (bytearray, array, numpy array)",
        ));
    }
    if !view.getattr("c_contiguous")?.extract::<bool>()? {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "the buffer is not C-contiguous",
        ));
    }
    let len: usize = view.getattr("nbytes")?.extract()?;
    let ctypes = py.import("ctypes")?;
    let flat = view.call_method1("cast", ("B",))?;
    let array_type = ctypes.getattr("c_char")?.call_method1("__mul__", (len,))?;
    let exported = array_type.call_method1("from_buffer", (flat,))?;
    let address: usize = ctypes
        .getattr("addressof")?
        .call1((&exported,))?
        .extract()?;
    Ok((exported, address, len))
}
