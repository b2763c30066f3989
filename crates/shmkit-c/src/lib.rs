//! libshmkit: shmkit's objects, channels, boards, broadcasts, robust mutex,
//! semaphores and readiness descriptors for C (and C++, Go's cgo, Zig,
//! Julia, Lua ...), built as `libshmkit.so` and `libshmkit.a` with the
//! header `include/shmkit.h` (generated from this crate by cbindgen).
//!
//! # The boundary
//! - Handles are opaque: a C caller holds a pointer to a `Handle<T>` (a
//!   kind tag followed by the Rust value) that it cannot look into. Every
//!   entry point checks the pointer is not NULL and carries the tag of the
//!   kind it expects, so a sender passed where a receiver is expected, or a
//!   closed handle (its tag is cleared before it is freed), is an error.
//! - No Rust type crosses: only integers, `size_t`, byte pointers with
//!   lengths, `#[repr(C)]` structs of integers and opaque handles.
//! - No panic crosses: every entry point runs under `catch_unwind` and
//!   turns a panic into `-EIO`.
//! - Errors are 0 / negative errno codes; the message of the last failure
//!   of the calling thread is kept for `shmkit_last_error`.
//! - Borrowing: the zero-copy slots (`shmkit_reserve`, `shmkit_receive`)
//!   borrow their sender or receiver. The handle keeps the slot next to the
//!   boxed endpoint, and every call on that handle refuses (`-EBUSY`) until
//!   the slot is committed, aborted or released, so the borrow is never
//!   aliased.
//!
//! # Safety
//! C callers pass raw pointers; each entry point states in its doc what it
//! requires of them (valid for the lengths given, NUL-terminated names).
//! Within those rules nothing a caller passes can make the library behave
//! undefinedly, except using a handle after closing it.

#![allow(non_camel_case_types)]
// The C entry points dereference caller pointers by contract (documented
// per function); marking each `unsafe extern "C"` would change nothing for
// C callers.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use shmkit::{Error, ErrorKind};

mod boards;
mod channels;
mod objects;
mod sync;

pub use boards::*;
pub use channels::*;
pub use objects::*;
pub use sync::*;

thread_local! {
    /// The message of this thread's last failed call.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// The one-line message of the calling thread's last failed call, the
/// same text the `shmkit` CLI prints (for example "cannot open /jobs: No
/// such file or directory"); "" if no call of this thread has failed.
///
/// Ownership: the string belongs to the library; it stays valid until the
/// next failing shmkit call of the same thread. Thread-safety: each thread
/// has its own. Never fails, never returns NULL.
#[no_mangle]
pub extern "C" fn shmkit_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Remembers `message` as this thread's last error.
fn set_last_error(message: String) {
    // An interior NUL cannot come from our messages, but names could hold
    // one in theory: cut there rather than lose the message.
    let message = match CString::new(message) {
        Ok(m) => m,
        Err(e) => {
            let cut = e.nul_position();
            let mut bytes = e.into_vec();
            bytes.truncate(cut);
            CString::new(bytes).unwrap_or_default()
        }
    };
    LAST_ERROR.with(|e| *e.borrow_mut() = message);
}

/// The errno-style code for an error: its OS errno when it has one, else
/// one chosen for its kind.
fn code_of(e: &Error) -> c_int {
    let by_kind = match e.kind() {
        ErrorKind::NotFound => libc::ENOENT,
        ErrorKind::AlreadyExists => libc::EEXIST,
        ErrorKind::PermissionDenied => libc::EACCES,
        ErrorKind::NoSpace => libc::ENOSPC,
        ErrorKind::InvalidName => libc::EINVAL,
        ErrorKind::InvalidArgument => libc::EINVAL,
        ErrorKind::ReadOnly => libc::EROFS,
        ErrorKind::LimitExceeded => libc::E2BIG,
        ErrorKind::Corrupt => libc::EBADMSG,
        ErrorKind::Disconnected => libc::EPIPE,
        ErrorKind::TimedOut => libc::ETIMEDOUT,
        ErrorKind::WouldBlock => libc::EAGAIN,
        ErrorKind::NotAnObject => libc::ENOTSUP,
        _ => libc::EIO,
    };
    match e.kind() {
        // What the caller acts on is the kind; an errno underneath (if any)
        // says less.
        ErrorKind::Disconnected
        | ErrorKind::TimedOut
        | ErrorKind::WouldBlock
        | ErrorKind::Corrupt
        | ErrorKind::LimitExceeded => -by_kind,
        _ => -e.raw_os_error().filter(|&n| n > 0).unwrap_or(by_kind),
    }
}

/// A failure on the C side: an error and, when it differs from the
/// error's, the code to return.
struct Failure {
    error: Error,
    code: Option<c_int>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure { error, code: None }
    }
}

/// The result type of an entry point's body.
type Outcome<T = c_int> = std::result::Result<T, Failure>;

/// A failure with its own code (`-EMSGSIZE`, `-EBUSY`).
fn failure(
    code: c_int,
    kind: ErrorKind,
    op: &'static str,
    object: &str,
    detail: String,
) -> Failure {
    Failure {
        error: Error::new(kind, op, object, detail),
        code: Some(-code),
    }
}

/// An invalid argument (`-EINVAL`).
fn invalid(op: &'static str, object: &str, detail: impl Into<String>) -> Failure {
    Error::new(ErrorKind::InvalidArgument, op, object, detail).into()
}

/// Runs an entry point's body: catches panics, records failures, returns
/// the body's value or a negative code.
fn entry(op: &'static str, body: impl FnOnce() -> Outcome) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(f)) => {
            let code = f.code.unwrap_or_else(|| code_of(&f.error));
            set_last_error(f.error.to_string());
            code
        }
        Err(_) => {
            set_last_error(format!(
                "cannot {op}: internal error in libshmkit (a panic was caught)"
            ));
            -libc::EIO
        }
    }
}

/// How long a call may wait, from a C timeout in milliseconds.
#[derive(Debug, Clone, Copy)]
enum Wait {
    Forever,
    Try,
    For(Duration),
}

fn wait_of(op: &'static str, object: &str, timeout_ms: i64) -> Outcome<Wait> {
    match timeout_ms {
        -1 => Ok(Wait::Forever),
        0 => Ok(Wait::Try),
        ms if ms > 0 => Ok(Wait::For(Duration::from_millis(ms as u64))),
        ms => Err(invalid(
            op,
            object,
            format!("timeout {ms} ms: give -1 (for ever), 0 (try) or a positive number of ms"),
        )),
    }
}

impl Wait {
    /// As an optional timeout (`Try` is a zero timeout).
    fn timeout(self) -> Option<Duration> {
        match self {
            Wait::Forever => None,
            Wait::Try => Some(Duration::ZERO),
            Wait::For(d) => Some(d),
        }
    }
}

/// A name argument: not NULL, UTF-8.
fn name_arg<'a>(op: &'static str, name: *const c_char) -> Outcome<&'a str> {
    if name.is_null() {
        return Err(invalid(op, "(NULL name)", "the name is NULL"));
    }
    // SAFETY: the caller passes a NUL-terminated string (documented on
    // every function taking a name); it outlives this call.
    let bytes = unsafe { CStr::from_ptr(name) };
    bytes
        .to_str()
        .map_err(|_| invalid(op, &bytes.to_string_lossy(), "the name is not valid UTF-8"))
}

/// An output pointer argument: not NULL.
fn out_arg<'a, T>(op: &'static str, object: &str, what: &str, out: *mut T) -> Outcome<&'a mut T> {
    if out.is_null() {
        return Err(invalid(op, object, format!("the {what} pointer is NULL")));
    }
    if out as usize % std::mem::align_of::<T>() != 0 {
        return Err(invalid(
            op,
            object,
            format!("the {what} pointer is misaligned"),
        ));
    }
    // SAFETY: not NULL and aligned (checked); the caller passes a pointer
    // valid for writing one T (documented per function).
    Ok(unsafe { &mut *out })
}

/// A byte buffer argument the library reads: NULL only with length 0.
fn bytes_arg<'a>(op: &'static str, object: &str, data: *const u8, len: usize) -> Outcome<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(invalid(
            op,
            object,
            format!("the data pointer is NULL with length {len}"),
        ));
    }
    if len > isize::MAX as usize {
        return Err(invalid(op, object, format!("length {len} is too large")));
    }
    // SAFETY: not NULL, length bounded (checked); the caller passes `len`
    // readable bytes (documented per function) that no one writes during
    // the call.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// A byte buffer argument the library writes: NULL only with length 0.
fn buf_arg<'a>(op: &'static str, object: &str, buf: *mut u8, len: usize) -> Outcome<&'a mut [u8]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if buf.is_null() {
        return Err(invalid(
            op,
            object,
            format!("the buffer is NULL with size {len}"),
        ));
    }
    if len > isize::MAX as usize {
        return Err(invalid(op, object, format!("size {len} is too large")));
    }
    // SAFETY: not NULL, length bounded (checked); the caller passes `len`
    // writable bytes of its own (documented per function).
    Ok(unsafe { std::slice::from_raw_parts_mut(buf, len) })
}

/// What a handle holds: the Rust value of one kind, after a tag.
#[repr(C)]
struct Handle<T> {
    tag: u64,
    value: T,
}

/// A kind of handle: its tag and its name in messages.
trait Kind {
    /// Distinct per kind, never 0 (a closed handle's tag).
    const TAG: u64;
    const NAME: &'static str;
}

/// The tag of a kind: "shmk" then a small number.
const fn tag(n: u32) -> u64 {
    0x7368_6d6b_0000_0000 | n as u64
}

/// Makes a handle of `value` for C: the caller owns it until `close`.
fn new_handle<T: Kind, P>(value: T) -> *mut P {
    Box::into_raw(Box::new(Handle { tag: T::TAG, value })).cast()
}

/// The value behind a handle, checked for NULL, alignment and kind.
fn handle<'a, T: Kind, P>(op: &'static str, ptr: *mut P) -> Outcome<&'a mut T> {
    if ptr.is_null() {
        return Err(invalid(
            op,
            "(NULL handle)",
            format!("the {} handle is NULL", T::NAME),
        ));
    }
    if ptr as usize % std::mem::align_of::<u64>() != 0 {
        return Err(invalid(
            op,
            "(bad handle)",
            format!("this is not a {} handle", T::NAME),
        ));
    }
    // SAFETY: every shmkit handle starts with its u64 tag, and the caller
    // passes a pointer from this library that it has not closed
    // (documented in the header); aligned (checked).
    let tag = unsafe { std::ptr::read(ptr.cast::<u64>()) };
    if tag != T::TAG {
        return Err(invalid(
            op,
            "(bad handle)",
            format!(
                "this is not a {} handle (another kind of handle, or one already closed)",
                T::NAME
            ),
        ));
    }
    // SAFETY: the tag says this is a live Handle<T> made by `new_handle`;
    // the caller uses a handle from one thread at a time (documented), so
    // this is the only reference for the call.
    Ok(unsafe { &mut (*ptr.cast::<Handle<T>>()).value })
}

/// Closes a handle: NULL is accepted; a wrong kind is refused.
fn close_handle<T: Kind, P>(op: &'static str, ptr: *mut P) -> c_int {
    entry(op, || {
        if ptr.is_null() {
            return Ok(0);
        }
        handle::<T, P>(op, ptr)?;
        let ptr = ptr.cast::<Handle<T>>();
        // SAFETY: checked to be a live Handle<T> from `new_handle` (a Box);
        // the tag is cleared first so a later use of the stale pointer is
        // refused while the memory is not reused.
        unsafe {
            (*ptr).tag = 0;
            drop(Box::from_raw(ptr));
        }
        Ok(0)
    })
}

/// `-EMSGSIZE`: a message of `n` bytes for a buffer of `cap`, kept for
/// the next call.
fn too_small(op: &'static str, object: &str, n: usize, cap: usize) -> Failure {
    failure(
        libc::EMSGSIZE,
        ErrorKind::InvalidArgument,
        op,
        object,
        format!("the message has {n} bytes and the buffer {cap}: it is kept for the next call"),
    )
}

/// Copies `src` into `buf` when it fits and stores the length in `len`;
/// else `-EMSGSIZE` with the needed length stored in `len`.
fn copy_out(
    op: &'static str,
    object: &str,
    src: &[u8],
    buf: *mut u8,
    cap: usize,
    len: &mut usize,
) -> Outcome {
    if src.len() > cap {
        *len = src.len();
        return Err(too_small(op, object, src.len(), cap));
    }
    let dst = buf_arg(op, object, buf, src.len())?;
    dst.copy_from_slice(src);
    *len = src.len();
    Ok(0)
}

/// Stores a new handle in `*out` (checked) and returns 0.
fn give<T: Kind, P>(out: &mut *mut P, value: T) -> Outcome {
    *out = new_handle::<T, P>(value);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_errno_codes_and_messages() {
        let e = Error::os("open", "/jobs", libc::ENOENT);
        assert_eq!(code_of(&e), -libc::ENOENT);
        let e = Error::new(ErrorKind::Disconnected, "receive from", "/c", "gone");
        assert_eq!(code_of(&e), -libc::EPIPE);
        let rc = entry("open", || {
            Err(Error::os("open", "/jobs", libc::ENOENT).into())
        });
        assert_eq!(rc, -libc::ENOENT);
        // SAFETY: shmkit_last_error returns a valid C string.
        let msg = unsafe { CStr::from_ptr(shmkit_last_error()) };
        assert_eq!(
            msg.to_str().unwrap(),
            "cannot open /jobs: No such file or directory"
        );
    }

    #[test]
    fn a_panic_becomes_eio() {
        let rc = entry("explode", || panic!("boom"));
        assert_eq!(rc, -libc::EIO);
    }

    #[test]
    fn timeouts() {
        assert!(matches!(wait_of("x", "y", -1), Ok(Wait::Forever)));
        assert!(matches!(wait_of("x", "y", 0), Ok(Wait::Try)));
        assert!(matches!(wait_of("x", "y", 5), Ok(Wait::For(_))));
        assert!(wait_of("x", "y", -2).is_err());
    }
}
