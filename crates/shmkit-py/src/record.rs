//! Fixed-shape numpy records: what a channel or board created with a
//! dtype carries. The dtype and shape themselves are stored beside the
//! object (see `shmkit/_record.py`); here they are only used.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::errors::invalid;

/// A record's numpy dtype, shape and size in bytes.
pub struct Record {
    pub dtype: Py<PyAny>,
    pub shape: Py<PyTuple>,
    pub size: usize,
}

impl Record {
    /// The bytes of `array` (C order), after checking its dtype and shape.
    pub fn to_bytes<'py>(
        &self,
        py: Python<'py>,
        object: &str,
        array: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let np = py.import("numpy")?;
        let a = np.getattr("asarray")?.call1((array,))?;
        let dtype = a.getattr("dtype")?;
        let shape = a.getattr("shape")?;
        if !dtype.eq(self.dtype.bind(py))? || !shape.eq(self.shape.bind(py))? {
            return Err(invalid(
                py,
                "send to",
                object,
                &format!(
                    "an array of dtype {} and shape {} is not a record of dtype {} and shape {}",
                    dtype.str()?,
                    shape.str()?,
                    self.dtype.bind(py).str()?,
                    self.shape.bind(py).str()?
                ),
            ));
        }
        Ok(a.call_method0("tobytes")?.cast_into::<PyBytes>()?)
    }

    /// A new, uninitialised array of the record's dtype and shape.
    pub fn empty<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("numpy")?
            .getattr("empty")?
            .call1((self.shape.bind(py), self.dtype.bind(py)))
    }

    /// A zero-copy array over the `u8` array `raw` (the record's bytes).
    pub fn view_of<'py>(
        &self,
        py: Python<'py>,
        raw: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        raw.call_method1("view", (self.dtype.bind(py),))?
            .call_method1("reshape", (self.shape.bind(py),))
    }

    /// Another handle on the same description.
    pub fn clone_ref(&self, py: Python<'_>) -> Record {
        Record {
            dtype: self.dtype.clone_ref(py),
            shape: self.shape.clone_ref(py),
            size: self.size,
        }
    }
}
