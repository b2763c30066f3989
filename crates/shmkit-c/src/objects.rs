//! POSIX shared memory objects and their mappings.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use shmkit::{OpenOptions, PosixObject, Region};

use crate::{
    buf_arg, bytes_arg, close_handle, entry, give, handle, invalid, name_arg, out_arg, tag, Kind,
};

/// Create the object if it does not exist (`O_CREAT`).
pub const SHMKIT_CREATE: u32 = 1;
/// With `SHMKIT_CREATE`: fail with `-EEXIST` if it exists (`O_EXCL`).
pub const SHMKIT_EXCL: u32 = 2;
/// Open for reading and writing (`O_RDWR`); without it, read-only.
pub const SHMKIT_WRITE: u32 = 4;
/// Truncate to zero length, then to the size given (`O_TRUNC`).
pub const SHMKIT_TRUNC: u32 = 8;

/// An open POSIX shared memory object (`/dev/shm/NAME`).
pub struct shmkit_object {
    _opaque: [u8; 0],
}

/// A mapping of an object: a base address and a length.
pub struct shmkit_map {
    _opaque: [u8; 0],
}

impl Kind for PosixObject {
    const TAG: u64 = tag(1);
    const NAME: &'static str = "object";
}

/// A mapping, shared with the mutexes and semaphores placed in it.
pub(crate) struct Map(pub(crate) Arc<Region>);

impl Kind for Map {
    const TAG: u64 = tag(2);
    const NAME: &'static str = "map";
}

/// Opens (and with `SHMKIT_CREATE` creates) the POSIX shared memory object
/// `name` (`shm_open`, then `fallocate` to reserve `size` bytes when
/// creating, so a full /dev/shm is `-ENOSPC` here and never `SIGBUS`
/// later). `name` is one component with or without the leading slash
/// ("/jobs" or "jobs"), at most 255 bytes. `flags` is a combination of
/// `SHMKIT_CREATE`, `SHMKIT_EXCL`, `SHMKIT_WRITE`, `SHMKIT_TRUNC`; `mode` is
/// the permission mask for a new object (0600; ignored when opening);
/// `size` is the size of a new object (0: leave it).
///
/// Ownership: `*out` receives a handle the caller closes with
/// `shmkit_object_close`. Errors: -EINVAL (NULL, bad name or flags),
/// -ENOENT, -EEXIST, -EACCES, -ENOSPC, as `shm_open` and `fallocate` say.
#[no_mangle]
pub extern "C" fn shmkit_object_open(
    name: *const c_char,
    flags: u32,
    mode: u32,
    size: u64,
    out: *mut *mut shmkit_object,
) -> c_int {
    const OP: &str = "open";
    entry(OP, || {
        let name = name_arg(OP, name)?;
        let out = out_arg(OP, name, "output", out)?;
        let known = SHMKIT_CREATE | SHMKIT_EXCL | SHMKIT_WRITE | SHMKIT_TRUNC;
        if flags & !known != 0 {
            return Err(invalid(
                OP,
                name,
                format!("unknown flags {:#x}", flags & !known),
            ));
        }
        let mut options = OpenOptions::new();
        options
            .write(flags & SHMKIT_WRITE != 0)
            .create(flags & SHMKIT_CREATE != 0)
            .create_new(flags & SHMKIT_CREATE != 0 && flags & SHMKIT_EXCL != 0)
            .truncate(flags & SHMKIT_TRUNC != 0)
            .mode(mode);
        if size != 0 {
            options.size(size);
        }
        give(out, options.open(name)?)
    })
}

/// Closes an object handle (the object itself stays, see
/// `shmkit_object_unlink`). NULL is accepted. Mappings made from it stay
/// valid. Errors: -EINVAL for a handle of another kind.
#[no_mangle]
pub extern "C" fn shmkit_object_close(object: *mut shmkit_object) -> c_int {
    close_handle::<PosixObject, _>("close", object)
}

/// Stores the object's current size in bytes (`fstat`) in `*size`.
/// Errors: -EINVAL (NULL or wrong handle), the OS error of `fstat`.
#[no_mangle]
pub extern "C" fn shmkit_object_size(object: *mut shmkit_object, size: *mut u64) -> c_int {
    const OP: &str = "stat";
    entry(OP, || {
        let object = handle::<PosixObject, _>(OP, object)?;
        let size = out_arg(OP, object.name().as_str(), "size", size)?;
        *size = object.size()?;
        Ok(0)
    })
}

/// Removes the object's name (`shm_unlink`); the memory goes once every
/// process has unmapped it. Errors: -EINVAL, -ENOENT, -EACCES.
#[no_mangle]
pub extern "C" fn shmkit_object_unlink(object: *mut shmkit_object) -> c_int {
    const OP: &str = "unlink";
    entry(OP, || {
        handle::<PosixObject, _>(OP, object)?.unlink()?;
        Ok(0)
    })
}

/// Removes the shared memory object called `name` (`shm_unlink`), whatever
/// made it (a channel, a board, a broadcast, a plain object).
/// Errors: -EINVAL (NULL or bad name), -ENOENT, -EACCES.
#[no_mangle]
pub extern "C" fn shmkit_unlink(name: *const c_char) -> c_int {
    const OP: &str = "unlink";
    entry(OP, || {
        shmkit::posix::unlink(name_arg(OP, name)?)?;
        Ok(0)
    })
}

/// Maps the whole object (`mmap`, `MAP_SHARED`): read-write when
/// `writable` is non-zero (the object must be open with `SHMKIT_WRITE`),
/// else read-only. Ownership: `*out` receives a map the caller closes with
/// `shmkit_map_close`, which unmaps it. Errors: -EINVAL, -EACCES (a
/// read-only object mapped for writing), the OS error of `mmap`.
#[no_mangle]
pub extern "C" fn shmkit_object_map(
    object: *mut shmkit_object,
    writable: c_int,
    out: *mut *mut shmkit_map,
) -> c_int {
    const OP: &str = "map";
    entry(OP, || {
        let object = handle::<PosixObject, _>(OP, object)?;
        let out = out_arg(OP, object.name().as_str(), "output", out)?;
        let region = if writable != 0 {
            object.map()?
        } else {
            object.map_read_only()?
        };
        give(out, Map(Arc::new(region)))
    })
}

/// Unmaps a mapping (`munmap`) once the mutexes and semaphores opened in it
/// are closed too (they keep it mapped). NULL is accepted.
#[no_mangle]
pub extern "C" fn shmkit_map_close(map: *mut shmkit_map) -> c_int {
    close_handle::<Map, _>("unmap", map)
}

/// Stores the mapping's length in `*len`. Errors: -EINVAL.
#[no_mangle]
pub extern "C" fn shmkit_map_len(map: *mut shmkit_map, len: *mut usize) -> c_int {
    const OP: &str = "inspect";
    entry(OP, || {
        let map = handle::<Map, _>(OP, map)?;
        *out_arg(OP, map.0.object(), "length", len)? = map.0.len();
        Ok(0)
    })
}

/// Stores the mapping's base address in `*ptr`. The bytes may change at
/// any time (other processes write them): read and write them with
/// atomics or `volatile`, or copy with `shmkit_map_read`/`shmkit_map_write`.
/// Writing through it is allowed only for a writable map. Valid until
/// `shmkit_map_close`. Errors: -EINVAL.
#[no_mangle]
pub extern "C" fn shmkit_map_ptr(map: *mut shmkit_map, ptr: *mut *mut c_void) -> c_int {
    const OP: &str = "inspect";
    entry(OP, || {
        let map = handle::<Map, _>(OP, map)?;
        *out_arg(OP, map.0.object(), "address", ptr)? = map.0.as_ptr().cast_mut().cast();
        Ok(0)
    })
}

/// Copies `len` bytes at `offset` of the mapping into `buf` (word-sized
/// atomic loads: no torn words). Errors: -EINVAL (NULL, out of range).
#[no_mangle]
pub extern "C" fn shmkit_map_read(
    map: *mut shmkit_map,
    offset: usize,
    buf: *mut c_void,
    len: usize,
) -> c_int {
    const OP: &str = "read";
    entry(OP, || {
        let map = handle::<Map, _>(OP, map)?;
        let buf = buf_arg(OP, map.0.object(), buf.cast(), len)?;
        map.0.read_at(offset, buf)?;
        Ok(0)
    })
}

/// Copies `len` bytes from `data` to `offset` of the mapping.
/// Errors: -EINVAL (NULL, out of range), -EROFS (read-only map).
#[no_mangle]
pub extern "C" fn shmkit_map_write(
    map: *mut shmkit_map,
    offset: usize,
    data: *const c_void,
    len: usize,
) -> c_int {
    const OP: &str = "write";
    entry(OP, || {
        let map = handle::<Map, _>(OP, map)?;
        let data = bytes_arg(OP, map.0.object(), data.cast(), len)?;
        map.0.write_at(offset, data)?;
        Ok(0)
    })
}
