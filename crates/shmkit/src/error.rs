//! One error type for the whole library.
//!
//! Every failure names what was being done (the operation), to what (the
//! object: a POSIX name such as `/jobs`, a System V `id:5` or `key:0x…`), and
//! why: the OS errno where there is one, otherwise a sentence. The message
//! reads like a shell tool's: `cannot open /jobs: No such file or directory`.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::sync::Arc;

/// What kind of failure an [`Error`] is, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object does not exist (`ENOENT`, `EIDRM`, `EINVAL` from `shmget`).
    NotFound,
    /// The object exists and exclusive creation was asked for (`EEXIST`).
    AlreadyExists,
    /// The caller lacks permission (`EACCES`, `EPERM`).
    PermissionDenied,
    /// The backing store is full (`ENOSPC`, `ENOMEM`): nothing was left behind.
    NoSpace,
    /// A POSIX object name that is not one path component of at most 255 bytes.
    InvalidName,
    /// An argument is out of range: a zero size, an offset past the end, a mode above 0o777.
    InvalidArgument,
    /// A write through a mapping or object opened read-only.
    ReadOnly,
    /// A kernel limit (`shmmax`, `shmall`, `shmmni`) was exceeded.
    LimitExceeded,
    /// Shared memory does not hold what its header promises (bad magic,
    /// version or layout, an index out of range): a clean error, never UB.
    Corrupt,
    /// A peer is gone or did not finish in time.
    Disconnected,
    /// A wait ran out of time.
    TimedOut,
    /// A non-blocking call found nothing to do: a full channel for
    /// `try_send`, an empty one for `try_recv`.
    WouldBlock,
    /// A `/dev/shm` entry that is not a shared memory object: a symbolic
    /// link, FIFO, socket, directory or device node. shmkit never follows
    /// or opens one (anyone can plant them in the world-writable `/dev/shm`).
    NotAnObject,
    /// Anything else the OS reported.
    Other,
}

/// A failed shared-memory operation: what was attempted, on which object, and why.
///
/// Its `Debug` reads like its `Display` (plus the kind), so `fn main() ->
/// Result<(), shmkit::Error>` prints `Error: cannot open /jobs: No such
/// file or directory (NotFound)` rather than a struct; `{:#?}` shows the
/// fields.
pub struct Error {
    kind: ErrorKind,
    op: &'static str,
    /// Shared, so an object's handles can make errors on a hot path (a
    /// `try_recv` that finds nothing) without allocating.
    object: Arc<str>,
    errno: Option<i32>,
    detail: Option<Cow<'static, str>>,
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error from an OS call that returned `errno`.
    pub fn os(op: &'static str, object: impl Into<String>, errno: i32) -> Self {
        Self {
            kind: kind_of_errno(errno),
            op,
            object: object.into().into(),
            errno: Some(errno),
            detail: None,
        }
    }

    /// An error detected by the library itself, explained by `detail`.
    pub fn new(
        kind: ErrorKind,
        op: &'static str,
        object: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            op,
            object: object.into().into(),
            errno: None,
            detail: Some(Cow::Owned(detail.into())),
        }
    }

    /// An error that allocates nothing: the object's name shared with its
    /// handle, a fixed explanation. For errors a caller may meet in a loop,
    /// such as [`ErrorKind::WouldBlock`] from a `try_` call.
    pub(crate) fn cheap(
        kind: ErrorKind,
        op: &'static str,
        object: &Arc<str>,
        detail: &'static str,
    ) -> Self {
        Self {
            kind,
            op,
            object: Arc::clone(object),
            errno: None,
            detail: Some(Cow::Borrowed(detail)),
        }
    }

    /// Adds a sentence after the OS reason (a hint such as which limit was hit).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(Cow::Owned(detail.into()));
        self
    }

    /// Overrides the kind derived from the errno.
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The operation that failed, such as `"open"` or `"map"`.
    pub fn operation(&self) -> &'static str {
        self.op
    }

    /// The object the operation was applied to, as a user would write it.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// The OS error number, where the OS reported one.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.errno
    }
}

impl From<(&'static str, &str, rustix::io::Errno)> for Error {
    fn from((op, object, errno): (&'static str, &str, rustix::io::Errno)) -> Self {
        Error::os(op, object, errno.raw_os_error())
    }
}

/// The C library's text for an errno, without std's " (os error N)" suffix.
pub(crate) fn errno_text(errno: i32) -> String {
    let full = io::Error::from_raw_os_error(errno).to_string();
    match full.rfind(" (os error ") {
        Some(cut) => full[..cut].to_string(),
        None => full,
    }
}

fn kind_of_errno(errno: i32) -> ErrorKind {
    match errno {
        libc::ENOENT | libc::EIDRM => ErrorKind::NotFound,
        libc::EEXIST => ErrorKind::AlreadyExists,
        libc::EACCES | libc::EPERM => ErrorKind::PermissionDenied,
        libc::ENOSPC | libc::ENOMEM | libc::EFBIG => ErrorKind::NoSpace,
        libc::ENAMETOOLONG => ErrorKind::InvalidName,
        libc::ELOOP | libc::ENXIO | libc::EISDIR => ErrorKind::NotAnObject,
        libc::EINVAL | libc::ERANGE | libc::EOVERFLOW => ErrorKind::InvalidArgument,
        libc::EROFS | libc::EBADF => ErrorKind::ReadOnly,
        libc::ETIMEDOUT => ErrorKind::TimedOut,
        libc::EAGAIN => ErrorKind::WouldBlock,
        _ => ErrorKind::Other,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {} {}: ", self.op, self.object)?;
        match (self.errno, &self.detail) {
            (Some(errno), Some(detail)) => write!(f, "{} ({detail})", errno_text(errno)),
            (Some(errno), None) => f.write_str(&errno_text(errno)),
            (None, Some(detail)) => f.write_str(detail),
            (None, None) => write!(f, "{:?}", self.kind),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return f
                .debug_struct("Error")
                .field("kind", &self.kind)
                .field("op", &self.op)
                .field("object", &self.object)
                .field("errno", &self.errno)
                .field("detail", &self.detail)
                .finish();
        }
        write!(f, "{self} ({:?})", self.kind)
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e.errno {
            Some(errno) => io::Error::new(io::Error::from_raw_os_error(errno).kind(), e),
            None => io::Error::other(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_operation_object_and_reason() {
        let e = Error::os("open", "/x", libc::ENOENT);
        assert_eq!(e.to_string(), "cannot open /x: No such file or directory");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = Error::os("create", "/big", libc::ENOSPC).with_detail("/dev/shm has 1 MiB free");
        assert_eq!(
            e.to_string(),
            "cannot create /big: No space left on device (/dev/shm has 1 MiB free)"
        );
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        // What `fn main() -> Result<..>` prints reads like the message.
        assert_eq!(
            format!("{e:?}"),
            "cannot create /big: No space left on device (/dev/shm has 1 MiB free) (NoSpace)"
        );
        assert!(format!("{e:#?}").contains("errno: Some("));
    }
}
