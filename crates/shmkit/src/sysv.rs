//! System V shared memory segments: `ftok`, `shmget`, `shmat`/`shmdt`,
//! `shmctl`.
//!
//! A segment is named by a [`Key`] (a 32-bit number, often derived from a file
//! with [`Key::ftok`]) and, once it exists, by the id the kernel gave it. It
//! has kernel persistence: it outlives every process that used it, until it is
//! removed ([`Segment::remove`]) or the machine reboots. Its size is fixed at
//! creation. Attaching it ([`Segment::attach`]) gives a [`Region`], which
//! detaches when dropped.
//!
//! # Lifecycle
//! 1. [`Segment::create`] or [`Segment::create_exclusive`] (`shmget` with
//!    `IPC_CREAT`), or [`Segment::open`] for an existing key, or
//!    [`Segment::from_id`] for an id another tool printed.
//! 2. [`Segment::attach`] / [`Segment::attach_read_only`] (`shmat`); drop the
//!    region to detach (`shmdt`).
//! 3. [`Segment::remove`] (`shmctl(IPC_RMID)`). The key is free at once and
//!    the memory is freed when the last attachment goes.
//!
//! Dropping a [`Segment`] does nothing: it is only an id.
//!
//! ```
//! use shmkit::sysv::{Key, Segment};
//!
//! let seg = Segment::create_exclusive(Key::PRIVATE, 4096, 0o600)?;
//! let region = seg.attach()?;
//! // Removed at once: nothing is left behind, yet the attachment still works.
//! seg.remove()?;
//! region.write_at(0, b"hello")?;
//! assert_eq!(region.read_vec(0, 5)?, b"hello");
//! assert!(seg.stat()?.marked_for_removal);
//! drop(region); // the last detach frees the memory
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # Seeing segments
//! [`segments`] lists every segment of this IPC namespace from
//! `/proc/sysvipc/shm`, which any user may read, unlike `IPC_STAT`, which
//! needs read permission on the segment. [`limits`] reads the kernel's limits
//! (`shmmax`, `shmall`, `shmmni`). Which processes have a segment attached is
//! in [`crate::inventory::ProcessScan::sysv_attachers`].
//!
//! Segments belong to an IPC namespace: a container usually sees only its own.
//!
//! See [sysvipc(7)](https://man7.org/linux/man-pages/man7/sysvipc.7.html),
//! [shmget(2)](https://man7.org/linux/man-pages/man2/shmget.2.html),
//! [shmop(2)](https://man7.org/linux/man-pages/man2/shmop.2.html),
//! [shmctl(2)](https://man7.org/linux/man-pages/man2/shmctl.2.html) and
//! [ftok(3)](https://man7.org/linux/man-pages/man3/ftok.3.html).

use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io;
use std::mem;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::{self, NonNull};
use std::str::FromStr;
use std::time::SystemTime;

use crate::error::{Error, ErrorKind, Result};
use crate::inventory::io_error;
use crate::posix::time_of;
use crate::region::Region;

/// Where the kernel lists every System V segment of the reader's IPC namespace.
pub const PROC_SHM: &str = "/proc/sysvipc/shm";
/// The largest segment size in bytes (`kernel.shmmax`).
pub const SHMMAX_PATH: &str = "/proc/sys/kernel/shmmax";
/// The most pages all segments together may use (`kernel.shmall`).
pub const SHMALL_PATH: &str = "/proc/sys/kernel/shmall";
/// The most segments that may exist at once (`kernel.shmmni`).
pub const SHMMNI_PATH: &str = "/proc/sys/kernel/shmmni";

/// `shm_perm.mode` status bit: the segment was removed and waits for its last
/// detach. Not in the libc crate; from `<linux/shm.h>`.
const SHM_DEST: u32 = 0o1000;
/// `shm_perm.mode` status bit: the segment is locked in memory (`SHM_LOCK`).
const SHM_LOCKED: u32 = 0o2000;
/// The permission bits of a segment's mode.
const PERM_BITS: u32 = 0o777;

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// The name of a System V segment: a 32-bit `key_t`.
///
/// Three sources, as in C:
/// - [`Key::ftok`]: derived from an existing file and a project byte;
/// - [`Key::new`] (or [`Key::parse`]): a number the programs agree on;
/// - [`Key::PRIVATE`] (`IPC_PRIVATE`, 0): no name; every `shmget` with it
///   makes a new segment, which others can only reach by its id.
///
/// Displayed the way `ipcs` prints keys: `0x0000abcd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(i32);

impl Key {
    /// `IPC_PRIVATE`: always a new segment, reachable only by its id. Removed
    /// segments also show this key (see [`Segment::remove`]).
    #[doc(alias = "IPC_PRIVATE")]
    pub const PRIVATE: Key = Key(libc::IPC_PRIVATE);

    /// The key with this raw `key_t` value.
    pub const fn new(raw: i32) -> Key {
        Key(raw)
    }

    /// The raw `key_t` value, as C code and `/proc/sysvipc/shm` see it
    /// (keys from `0x80000000` up are negative).
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// Whether this is [`Key::PRIVATE`].
    pub const fn is_private(self) -> bool {
        self.0 == libc::IPC_PRIVATE
    }

    /// Derives a key from an existing file and a project byte (`ftok`).
    ///
    /// Two programs that call `ftok` on the same file with the same
    /// `proj_id` get the same key, without agreeing on a number. glibc
    /// computes it from `stat(path)`:
    ///
    /// ```text
    /// key = (proj_id & 0xff) << 24 | (st_dev & 0xff) << 16 | (st_ino & 0xffff)
    /// ```
    ///
    /// which has real weaknesses:
    /// - only the low 16 bits of the inode and 8 of the device are used, so
    ///   two different files can give the same key (a collision: both programs
    ///   then silently share one segment), and files on different
    ///   filesystems can collide too;
    /// - the file must exist when the key is made, and must keep its inode:
    ///   deleting and recreating it, or an editor that saves by writing a new
    ///   file and renaming it over the old one, changes the key;
    /// - only the low 8 bits of `proj_id` count (hence `u8`); POSIX leaves a
    ///   `proj_id` of 0 unspecified, though glibc accepts it.
    ///
    /// Prefer a fixed key written in both programs, or a POSIX object with a
    /// real name, when you can.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] (naming the path) if the file does not exist,
    /// [`ErrorKind::PermissionDenied`] if a directory on the way cannot be
    /// searched, [`ErrorKind::InvalidArgument`] for a path with a NUL byte.
    ///
    /// See [ftok(3)](https://man7.org/linux/man-pages/man3/ftok.3.html).
    pub fn ftok(path: impl AsRef<Path>, proj_id: u8) -> Result<Key> {
        const OP: &str = "make a key from";
        let path = path.as_ref();
        let shown = path.display().to_string();
        let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                OP,
                shown.clone(),
                "the path contains a NUL byte",
            )
        })?;
        // SAFETY: `cpath` is a NUL-terminated string that outlives the call;
        // ftok only reads it (it calls stat).
        let key = unsafe { libc::ftok(cpath.as_ptr(), libc::c_int::from(proj_id)) };
        if key == -1 {
            let errno = last_errno();
            let err = Error::os(OP, shown, errno);
            return Err(if errno == libc::ENOENT {
                err.with_detail("ftok needs a file that exists and keeps its inode")
            } else {
                err
            });
        }
        Ok(Key(key))
    }

    /// Parses a key as people and tools write it: hexadecimal with `0x`
    /// (`0x1234`, as `ipcs` prints), or decimal (`4660`, or `-559038737` as
    /// `/proc/sysvipc/shm` prints keys from `0x80000000` up).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for anything else, or a number that
    /// does not fit in 32 bits.
    pub fn parse(text: &str) -> Result<Key> {
        let s = text.trim();
        let value = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            u32::from_str_radix(hex, 16).ok().map(|v| v as i32)
        } else if s.starts_with('-') {
            s.parse::<i32>().ok()
        } else {
            s.parse::<u32>().ok().map(|v| v as i32)
        };
        value.map(Key).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                "parse key",
                format!("{text:?}"),
                "a key is a 32-bit number: hexadecimal with 0x (0x1234) or decimal (4660)",
            )
        })
    }

    /// How errors name a segment known by this key: `key:0x0000abcd`.
    fn label(self) -> String {
        format!("key:{self}")
    }
}

impl fmt::Display for Key {
    /// `0x%08x` of the key's 32 bits, as `ipcs` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}", self.0 as u32)
    }
}

impl FromStr for Key {
    type Err = Error;

    /// See [`Key::parse`].
    fn from_str(s: &str) -> Result<Key> {
        Key::parse(s)
    }
}

impl From<i32> for Key {
    fn from(raw: i32) -> Key {
        Key(raw)
    }
}

// ---------------------------------------------------------------------------
// Segment information
// ---------------------------------------------------------------------------

/// What the kernel records about a segment: from `shmctl(IPC_STAT)`
/// ([`Segment::stat`]) or from `/proc/sysvipc/shm` ([`segments`]).
///
/// Process ids are as seen from the caller's pid namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The key; [`Key::PRIVATE`] for a private segment *and* for one that was
    /// removed but is still attached (then `marked_for_removal` is set).
    pub key: Key,
    /// The segment id (`shmid`).
    pub id: i32,
    /// Size in bytes, as asked for at creation (not rounded to pages).
    pub size: u64,
    /// Permission bits (`shm_perm.mode & 0o777`).
    pub mode: u32,
    /// Owner's user id (changeable with [`Segment::set_owner`]).
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// Creator's user id (never changes).
    pub cuid: u32,
    /// Creator's group id (never changes).
    pub cgid: u32,
    /// Pid of the creator.
    pub cpid: i32,
    /// Pid of the last process to attach or detach (0: none yet).
    pub lpid: i32,
    /// Number of current attachments.
    pub nattch: u64,
    /// Last attach; `None` if never attached.
    pub atime: Option<SystemTime>,
    /// Last detach; `None` if never detached.
    pub dtime: Option<SystemTime>,
    /// Last change: creation or `IPC_SET`.
    pub ctime: Option<SystemTime>,
    /// Removed (`IPC_RMID`) and waiting for its last detach (`SHM_DEST`).
    pub marked_for_removal: bool,
    /// Locked in memory with `SHM_LOCK` (`SHM_LOCKED`): never swapped.
    pub locked: bool,
    /// Bytes resident in memory; only `/proc/sysvipc/shm` tells (`None` from
    /// `IPC_STAT` and on kernels before 2.6.32).
    pub rss: Option<u64>,
    /// Bytes swapped out; only `/proc/sysvipc/shm` tells.
    pub swap: Option<u64>,
}

fn time_or_never(secs: i64) -> Option<SystemTime> {
    (secs != 0).then(|| time_of(secs, 0))
}

impl SegmentInfo {
    // time_t, size_t and shmatt_t differ in width between targets; the casts
    // are no-ops only on some of them.
    #[allow(clippy::unnecessary_cast)]
    fn from_shmid_ds(id: i32, ds: &libc::shmid_ds) -> Self {
        let mode = u32::from(ds.shm_perm.mode);
        SegmentInfo {
            key: Key(ds.shm_perm.__key),
            id,
            size: ds.shm_segsz as u64,
            mode: mode & PERM_BITS,
            uid: ds.shm_perm.uid,
            gid: ds.shm_perm.gid,
            cuid: ds.shm_perm.cuid,
            cgid: ds.shm_perm.cgid,
            cpid: ds.shm_cpid,
            lpid: ds.shm_lpid,
            nattch: ds.shm_nattch as u64,
            atime: time_or_never(ds.shm_atime as i64),
            dtime: time_or_never(ds.shm_dtime as i64),
            ctime: time_or_never(ds.shm_ctime as i64),
            marked_for_removal: mode & SHM_DEST != 0,
            locked: mode & SHM_LOCKED != 0,
            rss: None,
            swap: None,
        }
    }
}

/// `shmctl(id, IPC_STAT)`, or the errno.
fn ipc_stat(id: i32) -> std::result::Result<libc::shmid_ds, i32> {
    // SAFETY: shmid_ds is plain integers; all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { mem::zeroed() };
    // SAFETY: `ds` is a live, writable shmid_ds that IPC_STAT fills in.
    let rc = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) };
    if rc == -1 {
        Err(last_errno())
    } else {
        Ok(ds)
    }
}

// ---------------------------------------------------------------------------
// Segments
// ---------------------------------------------------------------------------

/// A System V shared memory segment, known by its id.
///
/// This is only a handle: copying or dropping it does nothing to the segment,
/// which lives until [`removed`](Segment::remove) (or reboot). Every method
/// acts on the id, so a segment removed by someone else gives
/// [`ErrorKind::NotFound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Segment {
    id: i32,
    key: Key,
}

impl Segment {
    /// Creates a segment of `size` bytes with permission bits `mode`, or
    /// opens the one that already has `key` (`shmget` with `IPC_CREAT`).
    ///
    /// An existing segment keeps its own mode and size, and must be at least
    /// `size` bytes. `mode` is applied exactly (no umask). The memory is
    /// zero-filled. With [`Key::PRIVATE`] a new segment is always made.
    ///
    /// # Errors
    /// - [`ErrorKind::InvalidArgument`]: `size` is 0, `mode` has bits above
    ///   `0o777`, or a segment with this key exists but is smaller than `size`
    ///   (the kernel says `EINVAL` for that too; the message tells which);
    /// - [`ErrorKind::LimitExceeded`]: `size` is over `shmmax`, or creating
    ///   it would pass `shmall` (total pages) or `shmmni` (number of
    ///   segments); the message names the limit, its value and its file;
    /// - [`ErrorKind::PermissionDenied`]: the existing segment's mode does not
    ///   grant `mode`'s access to us.
    ///
    /// See [shmget(2)](https://man7.org/linux/man-pages/man2/shmget.2.html).
    #[doc(alias = "shmget")]
    #[doc(alias = "IPC_CREAT")]
    pub fn create(key: Key, size: u64, mode: u32) -> Result<Segment> {
        create_with(key, size, mode, libc::IPC_CREAT)
    }

    /// Creates a segment of `size` bytes with permission bits `mode`, failing
    /// if one with `key` exists (`shmget` with `IPC_CREAT|IPC_EXCL`).
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] if `key` is taken; otherwise as
    /// [`Segment::create`].
    ///
    /// See [shmget(2)](https://man7.org/linux/man-pages/man2/shmget.2.html).
    #[doc(alias = "shmget")]
    #[doc(alias = "IPC_EXCL")]
    pub fn create_exclusive(key: Key, size: u64, mode: u32) -> Result<Segment> {
        create_with(key, size, mode, libc::IPC_CREAT | libc::IPC_EXCL)
    }

    /// Opens the existing segment with `key` (`shmget(key, 0, 0)`).
    ///
    /// Opening checks no permission; attaching does.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] if no segment has this key;
    /// [`ErrorKind::InvalidArgument`] for [`Key::PRIVATE`], which names no
    /// existing segment (use [`Segment::from_id`]).
    ///
    /// See [shmget(2)](https://man7.org/linux/man-pages/man2/shmget.2.html).
    #[doc(alias = "shmget")]
    pub fn open(key: Key) -> Result<Segment> {
        if key.is_private() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "open",
                key.label(),
                "IPC_PRIVATE names no existing segment; open a private segment by its id",
            ));
        }
        // SAFETY: shmget takes no pointers.
        let id = unsafe { libc::shmget(key.0, 0, 0) };
        if id == -1 {
            let errno = last_errno();
            let err = Error::os("open", key.label(), errno);
            return Err(if errno == libc::ENOENT {
                err.with_detail("no segment has this key")
            } else {
                err
            });
        }
        Ok(Segment { id, key })
    }

    /// The segment with id `id`, after checking that it exists
    /// (`shmctl(IPC_STAT)`).
    ///
    /// The key is read from the kernel, so it is [`Key::PRIVATE`] for a
    /// private or removed segment. If we may not read the segment, the check
    /// and the key come from `/proc/sysvipc/shm` instead.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] if no segment has this id.
    ///
    /// See [shmctl(2)](https://man7.org/linux/man-pages/man2/shmctl.2.html).
    #[doc(alias = "IPC_STAT")]
    pub fn from_id(id: i32) -> Result<Segment> {
        match ipc_stat(id) {
            Ok(ds) => Ok(Segment {
                id,
                key: Key(ds.shm_perm.__key),
            }),
            // EACCES: it exists, we only may not read it.
            Err(libc::EACCES) => match segments()?.into_iter().find(|s| s.id == id) {
                Some(info) => Ok(Segment { id, key: info.key }),
                None => Err(not_found_by_id(Error::os(
                    "open",
                    id_label(id),
                    libc::EINVAL,
                ))),
            },
            Err(errno) => Err(id_error("open", id, errno)),
        }
    }

    /// The segment id.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The key the segment was created or opened with ([`Segment::from_id`]:
    /// the key the kernel reported then). The kernel's current key, which
    /// turns to [`Key::PRIVATE`] on removal, is in [`Segment::stat`].
    pub fn key(&self) -> Key {
        self.key
    }

    fn label(&self) -> String {
        id_label(self.id)
    }

    /// Reads the kernel's record of the segment (`shmctl(IPC_STAT)`).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] if the segment is gone;
    /// [`ErrorKind::PermissionDenied`] without read permission on it
    /// ([`segments`] shows the same facts to anyone).
    ///
    /// See [shmctl(2)](https://man7.org/linux/man-pages/man2/shmctl.2.html).
    #[doc(alias = "shmctl")]
    #[doc(alias = "IPC_STAT")]
    pub fn stat(&self) -> Result<SegmentInfo> {
        let ds = ipc_stat(self.id).map_err(|errno| id_error("stat", self.id, errno))?;
        Ok(SegmentInfo::from_shmid_ds(self.id, &ds))
    }

    /// The size in bytes (from [`Segment::stat`]).
    pub fn size(&self) -> Result<u64> {
        Ok(self.stat()?.size)
    }

    /// Attaches the segment for reading and writing (`shmat`). The region is
    /// as long as the segment and detaches (`shmdt`) when dropped.
    ///
    /// Linux lets a segment be attached by id even after it was removed, as
    /// long as it is still attached somewhere.
    ///
    /// A child made by `fork` inherits every attachment (and counts in
    /// `nattch`) until it execs or exits; `posix_spawn`, which
    /// `std::process::Command` uses when it can, does not copy them.
    ///
    /// # Errors
    /// [`ErrorKind::PermissionDenied`] without both read and write permission
    /// (the message suggests [`Segment::attach_read_only`] when reading is
    /// allowed); [`ErrorKind::NotFound`] if the segment is gone;
    /// [`ErrorKind::NoSpace`] if the address space is full.
    ///
    /// See [shmop(2)](https://man7.org/linux/man-pages/man2/shmop.2.html).
    #[doc(alias = "shmat")]
    pub fn attach(&self) -> Result<Region> {
        self.attach_with(false)
    }

    /// Attaches the segment read-only (`shmat` with `SHM_RDONLY`): the
    /// region's writing methods return [`ErrorKind::ReadOnly`].
    ///
    /// # Errors
    /// As [`Segment::attach`], needing only read permission.
    ///
    /// See [shmop(2)](https://man7.org/linux/man-pages/man2/shmop.2.html).
    #[doc(alias = "shmat")]
    #[doc(alias = "SHM_RDONLY")]
    pub fn attach_read_only(&self) -> Result<Region> {
        self.attach_with(true)
    }

    fn attach_with(&self, read_only: bool) -> Result<Region> {
        let flags = if read_only { libc::SHM_RDONLY } else { 0 };
        // SAFETY: a NULL address lets the kernel choose a free range, so the
        // attachment cannot overlap any existing Rust object.
        let addr = unsafe { libc::shmat(self.id, ptr::null(), flags) };
        if addr as isize == -1 {
            return Err(self.attach_error(read_only, last_errno()));
        }
        let addr = NonNull::new(addr).expect("shmat with a NULL hint never returns NULL");
        // Read the size only now: while we are attached the segment cannot be
        // destroyed nor its id reused, so this is the size of what we hold.
        let size = match ipc_stat(self.id) {
            Ok(ds) => Ok(ds.shm_segsz as u64),
            // Mode changed to deny reading since we attached: /proc tells anyone.
            Err(libc::EACCES) => segments().and_then(|all| {
                all.into_iter()
                    .find(|s| s.id == self.id)
                    .map(|s| s.size)
                    .ok_or_else(|| id_error("attach", self.id, libc::EINVAL))
            }),
            Err(errno) => Err(id_error("attach", self.id, errno)),
        }
        .and_then(|size| {
            usize::try_from(size).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    "attach",
                    self.label(),
                    "the segment is larger than the address space",
                )
            })
        });
        let size = match size {
            Ok(size) => size,
            Err(e) => {
                // SAFETY: `addr` is the attachment made above, not yet owned
                // by any region, and nothing refers into it.
                let _ = unsafe { libc::shmdt(addr.as_ptr()) };
                return Err(e);
            }
        };
        // SAFETY: `addr` is a live attachment made above of a segment of
        // `size` bytes (the kernel maps whole pages covering it), readable,
        // and writable unless SHM_RDONLY was given; only this region will
        // shmdt it.
        Ok(unsafe { Region::from_shmat(addr, size, !read_only, self.label()) })
    }

    fn attach_error(&self, read_only: bool, errno: i32) -> Error {
        let err = id_error("attach", self.id, errno);
        if errno != libc::EACCES {
            return err;
        }
        let needs = if read_only {
            "attaching read-only needs read permission"
        } else {
            "attaching read-write needs read and write permission"
        };
        let info = segments()
            .ok()
            .and_then(|all| all.into_iter().find(|s| s.id == self.id));
        match info {
            Some(info) => {
                let readable = !read_only && readable_by_us(&info);
                err.with_detail(format!(
                    "{needs}; the segment has mode {:04o}, owner {}:{}{}",
                    info.mode,
                    info.uid,
                    info.gid,
                    if readable {
                        "; it may be attached read-only"
                    } else {
                        ""
                    }
                ))
            }
            None => err.with_detail(needs),
        }
    }

    /// Changes the permission bits (`shmctl(IPC_SET)`, after `IPC_STAT` to
    /// keep the owner as it is).
    ///
    /// Existing attachments keep the access they were made with.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for bits above `0o777`;
    /// [`ErrorKind::PermissionDenied`] unless we are the owner, the creator
    /// or privileged (`CAP_SYS_ADMIN`); [`ErrorKind::NotFound`] if gone.
    ///
    /// See [shmctl(2)](https://man7.org/linux/man-pages/man2/shmctl.2.html).
    #[doc(alias = "shmctl")]
    #[doc(alias = "IPC_SET")]
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        if mode & !PERM_BITS != 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "chmod",
                self.label(),
                format!("mode {mode:o} has bits above 0o777; only permission bits can be set"),
            ));
        }
        self.update("chmod", |ds| {
            // The kernel takes only the permission bits from IPC_SET and
            // keeps the status bits (SHM_DEST, SHM_LOCKED) itself.
            let old = u32::from(ds.shm_perm.mode);
            ds.shm_perm.mode = ((old & !PERM_BITS) | mode) as libc::c_ushort;
        })
    }

    /// Changes the owner and/or group (`shmctl(IPC_SET)`); `None` keeps the
    /// current one. The creator ids (`cuid`, `cgid`) never change, and the
    /// creator keeps the right to change the segment after giving it away.
    ///
    /// # Errors
    /// [`ErrorKind::PermissionDenied`] unless we are the owner, the creator
    /// or privileged; [`ErrorKind::InvalidArgument`] for an id that does not
    /// map into our user namespace (such as `u32::MAX`);
    /// [`ErrorKind::NotFound`] if gone.
    ///
    /// See [shmctl(2)](https://man7.org/linux/man-pages/man2/shmctl.2.html).
    #[doc(alias = "shmctl")]
    #[doc(alias = "IPC_SET")]
    pub fn set_owner(&self, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
        self.update("chown", |ds| {
            if let Some(uid) = uid {
                ds.shm_perm.uid = uid;
            }
            if let Some(gid) = gid {
                ds.shm_perm.gid = gid;
            }
        })
    }

    /// `IPC_STAT`, change, `IPC_SET`. Not atomic: a concurrent `IPC_SET` by
    /// another process between the two calls is overwritten.
    fn update(&self, op: &'static str, change: impl FnOnce(&mut libc::shmid_ds)) -> Result<()> {
        let mut ds = ipc_stat(self.id).map_err(|errno| id_error(op, self.id, errno))?;
        change(&mut ds);
        // SAFETY: `ds` is a live shmid_ds filled by IPC_STAT; IPC_SET only
        // reads its uid, gid and mode.
        let rc = unsafe { libc::shmctl(self.id, libc::IPC_SET, &mut ds) };
        if rc == -1 {
            let errno = last_errno();
            return Err(match errno {
                // IPC_SET says EINVAL both for a vanished id and for a uid or
                // gid that does not map into our user namespace.
                libc::EINVAL if ipc_stat(self.id).is_ok() => {
                    Error::os(op, self.label(), errno).with_detail(
                        "the user or group id is not valid in this user namespace",
                    )
                }
                libc::EPERM => Error::os(op, self.label(), errno).with_detail(
                    "only the segment's owner or creator, or a process with CAP_SYS_ADMIN, may change it",
                ),
                _ => id_error(op, self.id, errno),
            });
        }
        Ok(())
    }

    /// Removes the segment (`shmctl(IPC_RMID)`).
    ///
    /// What happens, in order:
    /// - the key is released at once: a new segment can be created with the
    ///   same key right away, and [`Segment::open`] of the key no longer finds
    ///   this one;
    /// - the memory lives on while anyone has it attached; attachments keep
    ///   working, and Linux even allows new attachments by id;
    /// - meanwhile the kernel shows the segment with key 0
    ///   ([`Key::PRIVATE`]) and the `SHM_DEST` flag
    ///   ([`SegmentInfo::marked_for_removal`]);
    /// - when the last attachment goes, the segment and its id are gone;
    ///   attachments that a `fork`ed child inherited count until it execs or
    ///   exits.
    ///
    /// # Errors
    /// [`ErrorKind::PermissionDenied`] unless we are the owner, the creator
    /// or privileged; [`ErrorKind::NotFound`] if it is already gone.
    ///
    /// See [shmctl(2)](https://man7.org/linux/man-pages/man2/shmctl.2.html).
    #[doc(alias = "shmctl")]
    #[doc(alias = "IPC_RMID")]
    pub fn remove(&self) -> Result<()> {
        // SAFETY: IPC_RMID reads no buffer; NULL is allowed.
        let rc = unsafe { libc::shmctl(self.id, libc::IPC_RMID, ptr::null_mut()) };
        if rc == -1 {
            let errno = last_errno();
            let err = id_error("remove", self.id, errno);
            return Err(if errno == libc::EPERM {
                err.with_detail(
                    "only the segment's owner or creator, or a process with CAP_SYS_ADMIN, may remove it",
                )
            } else {
                err
            });
        }
        Ok(())
    }
}

fn id_label(id: i32) -> String {
    format!("id:{id}")
}

fn not_found_by_id(err: Error) -> Error {
    err.with_kind(ErrorKind::NotFound)
        .with_detail("no segment has this id")
}

/// An error from `shmat`/`shmctl` on an id: `EINVAL` there means the id is
/// unknown, `EIDRM` that the segment was removed meanwhile.
fn id_error(op: &'static str, id: i32, errno: i32) -> Error {
    let err = Error::os(op, id_label(id), errno);
    match errno {
        libc::EINVAL => not_found_by_id(err),
        libc::EIDRM => err.with_detail("the segment was removed"),
        _ => err,
    }
}

/// Whether the permission bits let this process read the segment.
fn readable_by_us(info: &SegmentInfo) -> bool {
    // SAFETY: geteuid/getegid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        return true;
    }
    let bits = if uid == info.uid || uid == info.cuid {
        info.mode >> 6
    } else if gid == info.gid || gid == info.cgid {
        info.mode >> 3
    } else {
        info.mode
    };
    bits & 0o4 != 0
}

fn create_with(key: Key, size: u64, mode: u32, flags: libc::c_int) -> Result<Segment> {
    const OP: &str = "create";
    if size == 0 {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            OP,
            key.label(),
            "a segment needs a size of at least 1 byte (size 0 is only for opening an existing one)",
        ));
    }
    if mode & !PERM_BITS != 0 {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            OP,
            key.label(),
            format!("mode {mode:o} has bits above 0o777; only permission bits can be set"),
        ));
    }
    // Past usize the kernel could never accept it: report it as over shmmax.
    let Ok(len) = usize::try_from(size) else {
        return Err(size_error(key, size, libc::EINVAL));
    };
    // SAFETY: shmget takes no pointers.
    let id = unsafe { libc::shmget(key.0, len, flags | mode as libc::c_int) };
    if id == -1 {
        return Err(size_error(key, size, last_errno()));
    }
    Ok(Segment { id, key })
}

/// Explains a failed `shmget(IPC_CREAT)`.
fn size_error(key: Key, size: u64, errno: i32) -> Error {
    let err = Error::os("create", key.label(), errno);
    match errno {
        libc::EINVAL => {
            // Either an existing segment with this key is smaller than asked
            // for, or the size is over shmmax (or under SHMMIN, 1 byte).
            if !key.is_private() {
                if let Ok(existing) = Segment::open(key) {
                    if let Ok(info) = existing.stat() {
                        if info.size < size {
                            return err.with_detail(format!(
                                "a segment with this key already exists (id:{}) with {} bytes, \
                                 fewer than the {size} asked for; open it as it is or remove it first",
                                info.id, info.size
                            ));
                        }
                    }
                }
            }
            match limits() {
                Ok(lim) if size > lim.shmmax => err.with_kind(ErrorKind::LimitExceeded).with_detail(
                    format!(
                        "{size} bytes exceed shmmax, the largest segment allowed, which is {} bytes ({}), set in {SHMMAX_PATH}",
                        lim.shmmax,
                        crate::human_bytes(lim.shmmax)
                    ),
                ),
                // The kernel backs a segment with a file, whose size is a
                // signed 64-bit number: shmmax defaults to more than that.
                Ok(_) if size > i64::MAX as u64 => err.with_kind(ErrorKind::LimitExceeded).with_detail(
                    format!(
                        "{size} bytes are more than the kernel can back: a segment is at most \
                         {} bytes (2^63 - 1), whatever shmmax says",
                        i64::MAX
                    ),
                ),
                Ok(_) => err,
                Err(_) if size > usize::MAX as u64 => err
                    .with_kind(ErrorKind::LimitExceeded)
                    .with_detail(format!("{size} bytes do not fit in the address space")),
                Err(_) => err.with_detail(format!(
                    "the size may be over shmmax (see {SHMMAX_PATH})"
                )),
            }
        }
        libc::ENOSPC => {
            let detail = match (limits(), segments()) {
                (Ok(lim), Ok(all)) => explain_nospc(&lim, &all, size),
                _ => format!(
                    "all segment ids are in use (shmmni, {SHMMNI_PATH}) or the total size of \
                     all segments would pass shmall ({SHMALL_PATH}, in pages)"
                ),
            };
            err.with_kind(ErrorKind::LimitExceeded).with_detail(detail)
        }
        libc::EACCES => err.with_detail(
            "a segment with this key exists and its mode does not grant us the access asked for",
        ),
        libc::EEXIST => err.with_detail("a segment with this key already exists"),
        _ => err,
    }
}

/// Which limit `ENOSPC` from `shmget` hit: the number of segments
/// (`shmmni`) or the total pages (`shmall`).
fn explain_nospc(lim: &Limits, all: &[SegmentInfo], size: u64) -> String {
    let count = all.len() as u64;
    if count >= lim.shmmni {
        return format!(
            "all {} segment ids are in use: shmmni, set in {SHMMNI_PATH}, is {}; remove unused segments",
            count, lim.shmmni
        );
    }
    let pages = |bytes: u64| bytes.div_ceil(lim.page_size.max(1));
    let used: u64 = all.iter().map(|s| pages(s.size)).sum();
    format!(
        "segments already use {used} pages of {} bytes and {size} bytes need {} more, over shmall, \
         set in {SHMALL_PATH} (in pages), which is {} pages ({}); removed segments still count \
         until their last detach",
        lim.page_size,
        pages(size),
        lim.shmall,
        crate::human_bytes(lim.shmall_bytes()),
    )
}

// ---------------------------------------------------------------------------
// Listing every segment
// ---------------------------------------------------------------------------

/// Every segment of this IPC namespace, sorted by id, from
/// `/proc/sysvipc/shm` (which anyone may read: no `IPC_STAT` permission is
/// needed, so it also shows segments we cannot attach).
///
/// Lines the parser does not understand are skipped.
///
/// # Errors
/// Only if `/proc/sysvipc/shm` cannot be read (no `/proc`, or a kernel built
/// without System V IPC).
#[doc(alias = "ipcs")]
pub fn segments() -> Result<Vec<SegmentInfo>> {
    let text = fs::read_to_string(PROC_SHM).map_err(|e| io_error("list", PROC_SHM, &e))?;
    Ok(parse_proc_shm(&text))
}

/// Where each field is in a `/proc/sysvipc/shm` line.
struct Columns {
    key: usize,
    shmid: usize,
    perms: usize,
    size: usize,
    cpid: usize,
    lpid: usize,
    nattch: usize,
    uid: usize,
    gid: usize,
    cuid: usize,
    cgid: usize,
    atime: usize,
    dtime: usize,
    ctime: usize,
    rss: Option<usize>,
    swap: Option<usize>,
}

impl Columns {
    /// The kernel's order since 2.6.32 (`ipc/shm.c`, `sysvipc_shm_proc_show`).
    const DEFAULT: Columns = Columns {
        key: 0,
        shmid: 1,
        perms: 2,
        size: 3,
        cpid: 4,
        lpid: 5,
        nattch: 6,
        uid: 7,
        gid: 8,
        cuid: 9,
        cgid: 10,
        atime: 11,
        dtime: 12,
        ctime: 13,
        rss: Some(14),
        swap: Some(15),
    };

    /// Finds the columns by the header's names, falling back to the usual
    /// order if a needed name is missing.
    fn from_header(header: &str) -> Columns {
        let names: Vec<&str> = header.split_whitespace().collect();
        let at = |name: &str| names.iter().position(|n| *n == name);
        let found = (|| {
            Some(Columns {
                key: at("key")?,
                shmid: at("shmid")?,
                perms: at("perms")?,
                size: at("size")?,
                cpid: at("cpid")?,
                lpid: at("lpid")?,
                nattch: at("nattch")?,
                uid: at("uid")?,
                gid: at("gid")?,
                cuid: at("cuid")?,
                cgid: at("cgid")?,
                atime: at("atime")?,
                dtime: at("dtime")?,
                ctime: at("ctime")?,
                rss: at("rss"),
                swap: at("swap"),
            })
        })();
        found.unwrap_or(Columns::DEFAULT)
    }

    fn parse(&self, line: &str) -> Option<SegmentInfo> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let get = |i: usize| f.get(i).copied();
        let num = |i: usize| get(i)?.parse::<u64>().ok();
        let time = |i: usize| num(i).map(|t| time_or_never(t.min(i64::MAX as u64) as i64));
        // Keys print as signed decimal (%d); accept the unsigned spelling too.
        let key = get(self.key)?.parse::<i64>().ok()?;
        if key < i64::from(i32::MIN) || key > i64::from(u32::MAX) {
            return None;
        }
        let perms = u32::from_str_radix(get(self.perms)?, 8).ok()?;
        Some(SegmentInfo {
            key: Key(key as u32 as i32),
            id: get(self.shmid)?.parse().ok()?,
            size: num(self.size)?,
            mode: perms & PERM_BITS,
            uid: get(self.uid)?.parse().ok()?,
            gid: get(self.gid)?.parse().ok()?,
            cuid: get(self.cuid)?.parse().ok()?,
            cgid: get(self.cgid)?.parse().ok()?,
            cpid: get(self.cpid)?.parse().ok()?,
            lpid: get(self.lpid)?.parse().ok()?,
            nattch: num(self.nattch)?,
            atime: time(self.atime)?,
            dtime: time(self.dtime)?,
            ctime: time(self.ctime)?,
            marked_for_removal: perms & SHM_DEST != 0,
            locked: perms & SHM_LOCKED != 0,
            rss: self.rss.and_then(num),
            swap: self.swap.and_then(num),
        })
    }
}

/// Parses the text of `/proc/sysvipc/shm`: a header line naming the columns,
/// then one line per segment. The key is signed decimal (`%10d`), and a
/// ten-digit negative key is wider than its column, so fields are split on
/// whitespace, never by position. `perms` is octal and carries the status
/// bits `SHM_DEST` (0o1000) and `SHM_LOCKED` (0o2000) above the permission
/// bits. Times are seconds since the epoch, 0 meaning never.
fn parse_proc_shm(text: &str) -> Vec<SegmentInfo> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns = Columns::from_header(header);
    let mut out: Vec<SegmentInfo> = lines.filter_map(|l| columns.parse(l)).collect();
    out.sort_by_key(|s| s.id);
    out
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

/// The kernel's System V shared memory limits for this IPC namespace.
///
/// Root changes them with `sysctl kernel.shmmax=…` or by writing the files.
/// On 64-bit Linux `shmmax` and `shmall` default to nearly 2⁶⁴ (no practical
/// limit) and `shmmni` to 4096.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest segment, in bytes ([`SHMMAX_PATH`]).
    pub shmmax: u64,
    /// The most memory all segments together may use, in *pages*
    /// ([`SHMALL_PATH`]).
    pub shmall: u64,
    /// The most segments that may exist at once ([`SHMMNI_PATH`]).
    pub shmmni: u64,
    /// The page size in bytes, the unit of `shmall`.
    pub page_size: u64,
}

impl Limits {
    /// `shmall` in bytes (saturating: the default is near 2⁶⁴ pages).
    pub fn shmall_bytes(&self) -> u64 {
        self.shmall.saturating_mul(self.page_size)
    }
}

/// Reads the limits from `/proc/sys/kernel/shmmax`, `shmall` and `shmmni`.
///
/// # Errors
/// If a file cannot be read or holds no number.
pub fn limits() -> Result<Limits> {
    fn read(path: &str) -> Result<u64> {
        let text = fs::read_to_string(path).map_err(|e| io_error("read", path, &e))?;
        text.trim().parse().map_err(|_| {
            Error::new(
                ErrorKind::Other,
                "read",
                path,
                format!("expected a number, found {:?}", text.trim()),
            )
        })
    }
    Ok(Limits {
        shmmax: read(SHMMAX_PATH)?,
        shmall: read(SHMALL_PATH)?,
        shmmni: read(SHMMNI_PATH)?,
        page_size: rustix::param::page_size() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// Captured on Linux 6.18 (x86_64): a removed-but-attached private
    /// segment (perms 1640), a locked one (2600), a key above 0x7fffffff
    /// printed negative, plus lines a parser must survive.
    const SAMPLE: &str = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
-559038737          3   600                  4096  4295     0      0     0     0     0     0          0          0 1795378180                     0                     0
         0          0  1640                  8192  4098  4098      1     0     0     0     0 1795378172          0 1795378172                  4096                     0
      4660          1  2600                  4096  4098     0      0  1000  1000     0     0          0          0 1795378172                     0                     0
 890236477
garbage line here
";

    #[test]
    fn parses_proc_sysvipc_shm() {
        let all = parse_proc_shm(SAMPLE);
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(all.iter().map(|s| s.id).collect::<Vec<_>>(), [0, 1, 3]);

        let removed = &all[0];
        assert_eq!(removed.key, Key::PRIVATE);
        assert_eq!(removed.mode, 0o640);
        assert!(removed.marked_for_removal);
        assert!(!removed.locked);
        assert_eq!(removed.size, 8192);
        assert_eq!(
            (removed.cpid, removed.lpid, removed.nattch),
            (4098, 4098, 1)
        );
        assert_eq!(
            removed.atime,
            Some(UNIX_EPOCH + Duration::from_secs(1795378172))
        );
        assert_eq!(removed.dtime, None);
        assert_eq!(removed.rss, Some(4096));
        assert_eq!(removed.swap, Some(0));

        let locked = &all[1];
        assert_eq!(locked.key, Key::new(0x1234));
        assert_eq!(locked.mode, 0o600);
        assert!(locked.locked);
        assert!(!locked.marked_for_removal);
        assert_eq!((locked.uid, locked.gid, locked.cuid), (1000, 1000, 0));
        assert_eq!(locked.atime, None);

        let negative = &all[2];
        assert_eq!(negative.key, Key::new(0xdeadbeef_u32 as i32));
        assert_eq!(negative.key.to_string(), "0xdeadbeef");
    }

    #[test]
    fn parses_older_layout_by_header_names() {
        // Before 2.6.32 there were no rss/swap columns.
        let text = "       key      shmid perms       size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime\n\
                    \x20     4660          7   644       100    10    11      2     1     2     3     4          5          6          7\n";
        let all = parse_proc_shm(text);
        assert_eq!(all.len(), 1);
        let s = &all[0];
        assert_eq!((s.id, s.size, s.mode, s.nattch), (7, 100, 0o644, 2));
        assert_eq!((s.uid, s.gid, s.cuid, s.cgid), (1, 2, 3, 4));
        assert_eq!((s.rss, s.swap), (None, None));
        assert!(parse_proc_shm("").is_empty());
    }

    #[test]
    fn keys_display_and_parse() {
        assert_eq!(Key::new(0xabcd).to_string(), "0x0000abcd");
        assert_eq!(Key::PRIVATE.to_string(), "0x00000000");
        assert_eq!(Key::new(-1).to_string(), "0xffffffff");
        assert_eq!(Key::parse("0x1234").unwrap(), Key::new(4660));
        assert_eq!(Key::parse("4660").unwrap(), Key::new(4660));
        assert_eq!(Key::parse("0XDEADBEEF").unwrap().raw(), -559038737);
        assert_eq!("-559038737".parse::<Key>().unwrap().raw(), -559038737);
        assert_eq!(Key::parse("3735928559").unwrap().raw(), -559038737);
        for bad in [
            "",
            "0x",
            "0x100000000",
            "4294967296",
            "12ab",
            "-3000000000",
            "key",
        ] {
            let e = Key::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn ftok_names_a_missing_path() {
        let e = Key::ftok("/nonexistent/shmkit-ftok", 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("/nonexistent/shmkit-ftok"), "{e}");
    }

    #[test]
    fn nospc_names_the_limit() {
        let info = |id: i32, size: u64| {
            let mut s = parse_proc_shm(SAMPLE).remove(0);
            s.id = id;
            s.size = size;
            s
        };
        let lim = Limits {
            shmmax: u64::MAX,
            shmall: 10,
            shmmni: 2,
            page_size: 4096,
        };
        let msg = explain_nospc(&lim, &[info(1, 1), info(2, 1)], 1);
        assert!(msg.contains("shmmni") && msg.contains(SHMMNI_PATH), "{msg}");
        let msg = explain_nospc(&lim, &[info(1, 4096 * 8)], 4096 * 3);
        assert!(msg.contains("shmall") && msg.contains(SHMALL_PATH), "{msg}");
        assert!(msg.contains("8 pages") && msg.contains("3 more"), "{msg}");
    }
}
