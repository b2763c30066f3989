//! shmkit's errors as Python exceptions.
//!
//! The classes live in `shmkit/_errors.py` (Python, so that they can inherit
//! from both `shmkit.Error` and the matching built-in: `FileNotFoundError`,
//! `ValueError`, `TimeoutError`...). Every one subclasses `OSError`; `errno`
//! is the OS's where it reported one, else the errno that names the kind.

use pyo3::prelude::*;
use pyo3::types::PyModule;
use shmkit::ErrorKind;

/// The class name in `shmkit._errors` and the errno that names the kind.
fn class_of(kind: ErrorKind) -> (&'static str, Option<i32>) {
    match kind {
        ErrorKind::NotFound => ("NotFound", Some(libc::ENOENT)),
        ErrorKind::AlreadyExists => ("AlreadyExists", Some(libc::EEXIST)),
        ErrorKind::PermissionDenied => ("PermissionDenied", Some(libc::EACCES)),
        ErrorKind::NoSpace => ("NoSpace", Some(libc::ENOSPC)),
        ErrorKind::InvalidName => ("InvalidName", Some(libc::EINVAL)),
        ErrorKind::InvalidArgument => ("InvalidArgument", Some(libc::EINVAL)),
        ErrorKind::ReadOnly => ("ReadOnly", Some(libc::EROFS)),
        ErrorKind::LimitExceeded => ("LimitExceeded", None),
        ErrorKind::Corrupt => ("Corrupt", None),
        ErrorKind::Disconnected => ("Disconnected", Some(libc::EPIPE)),
        ErrorKind::TimedOut => ("TimeoutError", Some(libc::ETIMEDOUT)),
        ErrorKind::WouldBlock => ("WouldBlock", Some(libc::EAGAIN)),
        ErrorKind::NotAnObject => ("NotAnObject", None),
        _ => ("Error", None),
    }
}

/// Builds an instance of the `shmkit._errors` class `class` with `errno`
/// (or none) and `message`, carrying `kind`, `operation` and `object`.
pub fn exception(
    py: Python<'_>,
    class: &str,
    errno: Option<i32>,
    message: &str,
    kind: &str,
    operation: &str,
    object: &str,
) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let cls = PyModule::import(py, "shmkit._errors")?.getattr(class)?;
        let exc = match errno {
            Some(n) => cls.call1((n, message))?,
            None => cls.call1((message,))?,
        };
        exc.setattr("kind", kind)?;
        exc.setattr("operation", operation)?;
        exc.setattr("object", object)?;
        Ok(PyErr::from_value(exc))
    })();
    made.unwrap_or_else(|e| e)
}

/// The Python exception for a library error.
pub fn to_py(py: Python<'_>, e: &shmkit::Error) -> PyErr {
    let (class, default_errno) = class_of(e.kind());
    let errno = e.raw_os_error().or(default_errno);
    exception(
        py,
        class,
        errno,
        &e.to_string(),
        &format!("{:?}", e.kind()),
        e.operation(),
        e.object(),
    )
}

/// `?` for library results inside Python-facing code.
pub trait OrPy<T> {
    /// The value, or the error as a Python exception.
    fn or_py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> OrPy<T> for shmkit::Result<T> {
    fn or_py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, &e))
    }
}

/// A `ValueError`/`shmkit.InvalidArgument` made here, about `object`.
pub fn invalid(py: Python<'_>, op: &str, object: &str, why: &str) -> PyErr {
    exception(
        py,
        "InvalidArgument",
        Some(libc::EINVAL),
        &format!("cannot {op} {object}: {why}"),
        "InvalidArgument",
        op,
        object,
    )
}

/// `ValueError` for an endpoint or handle used after `close()`.
pub fn closed(what: &str) -> PyErr {
    pyo3::exceptions::PyValueError::new_err(format!("{what} is closed"))
}

/// A timeout in seconds (None: wait for ever), checked.
pub fn timeout(secs: Option<f64>) -> PyResult<Option<std::time::Duration>> {
    match secs {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(
            std::time::Duration::try_from_secs_f64(s).unwrap_or(std::time::Duration::MAX),
        )),
        Some(s) => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "timeout must be a non-negative number of seconds or None, not {s}"
        ))),
    }
}
