//! shmkit: shared-memory inter-process communication for Linux.
//!
//! # Module map
//! - [`posix`]: POSIX shared memory objects (`shm_open`, `fallocate`,
//!   `fstat`, `mmap`, `shm_unlink`), with names validated up front and space
//!   reserved so a full `/dev/shm` is an error, never `SIGBUS`.
//! - [`sysv`]: System V segments (`ftok`, `shmget`, `shmat`/`shmdt`,
//!   `shmctl`), every segment on the machine from `/proc/sysvipc/shm`, and the
//!   kernel's limits, with errors that name the limit that was hit.
//! - [`region`]: [`Region`], one mapping of shared memory whatever made it,
//!   with bounds-checked copy-in/copy-out access and atomics, never references.
//! - [`inventory`]: what is on the machine: objects in `/dev/shm` and the
//!   processes that map them.
//! - [`sync`]: process-shared synchronisation in shared memory: [`sync::Event`]
//!   and [`sync::Semaphore`] (spin, then shared futex; no syscall on the busy
//!   path), a robust [`sync::Mutex`] that reports a dead owner, and the C
//!   library's `sem_t` semaphores.
//! - [`channel`]: crash-tolerant producer/consumer channels between
//!   processes ([`channel::Channel`], its `Sender`s and `Receiver`s, typed
//!   and zero-copy forms, an optional single-producer single-consumer ring).
//! - [`board`]: a blackboard: one value, one writer at a time, any number
//!   of readers, each seeing the latest complete version (a double-buffered
//!   sequence lock: the writer never waits, no read is ever torn); a
//!   [`board::KeyedBoard`] holds a value per named key, each with its own
//!   writer, version and watchers, read one key or a consistent snapshot.
//! - [`broadcast`]: one writer, many subscribers, every subscriber sees
//!   every message or learns exactly how many it missed; the writer never
//!   waits for a slow subscriber, or, in lossless mode, waits for the
//!   slowest live one (dead ones dropped, laggards evicted if the creator
//!   says so); [`broadcast::TypedBroadcast`] carries plain-old-data values
//!   of one type.
//! - [`readiness`]: a file descriptor per receiving end that `poll`,
//!   `epoll`, tokio or asyncio can wait on, woken from another process.
//! - [`error`]: one [`Error`] carrying the operation, the object and the OS reason.
//!
//! # Layering
//! Channels, boards and broadcasts are thin layers over one core of
//! crate-private modules: `shared_object` (create, open, ready flag, stale
//! objects, the checks on open), `endpoint_table` (the table of connected
//! endpoints with one join/leave/reap protocol, by compare-and-swap, for
//! channel endpoints and broadcast subscribers), `sync::wait_word` (one
//! wait/wake protocol whose futex word is its registration record, under
//! [`sync::Event`] and the boards' and broadcasts' bell), `word_copy`
//! (bytes to and from atomic words), with [`process`] (identity words,
//! liveness, fork detection), [`layout`] (the common header) and
//! [`region`] below them.
//!
//! # Safety model
//! Memory that another process can write at any time is never exposed as
//! `&[u8]` or `&mut [u8]`: a Rust reference promises the bytes do not change
//! underneath it, and across processes nothing can keep that promise. Access
//! is by copying in and out, by atomics at checked offsets, or by raw
//! pointers in the caller's own `unsafe` code. Everything read back from
//! shared memory is treated as untrusted input and range-checked in release
//! builds. A read-only mapping cannot be written through the safe API.
//!
//! # Example
//! ```no_run
//! use shmkit::posix::{OpenOptions, PosixObject};
//!
//! // One process creates an object of 200 bytes and writes a greeting.
//! let obj = OpenOptions::new().create_new(true).size(200).open("/greeting")?;
//! obj.map()?.write_at(0, b"hello from the writer")?;
//!
//! // Another opens it read-only and copies the bytes out.
//! let reader = PosixObject::open_read_only("/greeting")?;
//! let text = reader.map()?.read_vec(0, 21)?;
//! assert_eq!(text, b"hello from the writer");
//! shmkit::posix::unlink("/greeting")?;
//! # Ok::<(), shmkit::Error>(())
//! ```

// Under loom only its models use it (boards and broadcasts are not built).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) mod bell;
pub mod board;
pub mod broadcast;
pub mod channel;
pub(crate) mod endpoint_table;
pub mod error;
pub mod inventory;
pub mod layout;
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_check;
pub mod posix;
pub(crate) mod primitive;
pub mod process;
#[cfg(not(loom))]
pub mod readiness;
pub mod region;
#[cfg(not(loom))]
mod shared_object;
pub mod sync;
pub mod sysv;
pub(crate) mod word_copy;

pub use error::{Error, ErrorKind, Result};
pub use posix::{MapOptions, OpenOptions, PosixObject, ShmName};
pub use region::Region;
pub use sysv::{Key, Segment, SegmentInfo};

/// Formats a byte count for people: `512 B`, `4.0 KiB`, `1.5 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
