//! POSIX shared memory objects: `shm_open`, `ftruncate`/`fallocate`, `fstat`,
//! `mmap`, `shm_unlink`.
//!
//! On Linux an object is a file in the tmpfs mounted at `/dev/shm`: it outlives
//! the process that made it and vanishes at reboot. tmpfs allocates pages only
//! when they are first touched, so an object sized with `ftruncate` alone can
//! raise `SIGBUS` later, when a write finds the filesystem full. shmkit
//! reserves the space with `fallocate` whenever it creates or grows an object
//! (and before it maps one for writing), which turns a full `/dev/shm` into a
//! clean [`ErrorKind::NoSpace`] error up front; a half-made object is removed.
//!
//! See [shm_overview(7)](https://man7.org/linux/man-pages/man7/shm_overview.7.html).

use std::ffi::c_void;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::OFlags;
use rustix::fs::{FallocateFlags, Mode};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};

use crate::error::{Error, ErrorKind, Result};
use crate::region::Region;

/// Where Linux mounts the tmpfs that holds POSIX shared memory objects.
pub const SHM_DIR: &str = "/dev/shm";

/// The longest name `shm_open` accepts, in bytes, without the leading slash
/// (it becomes a file name in [`SHM_DIR`], and `NAME_MAX` is 255).
pub const NAME_MAX: usize = 255;

/// A validated POSIX shared memory object name, kept with its leading slash.
///
/// A name is one path component: an optional leading `/`, then 1 to 255 bytes
/// with no `/` and no NUL, and not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShmName(String);

impl ShmName {
    /// Validates `name` (`jobs` or `/jobs`).
    pub fn new(name: &str) -> Result<Self> {
        let bare = name.strip_prefix('/').unwrap_or(name);
        let why = if bare.is_empty() {
            Some("the name is empty".to_string())
        } else if bare.contains('/') {
            Some("a name is one component: no '/' after the leading one".to_string())
        } else if bare.contains('\0') {
            Some("the name contains a NUL byte".to_string())
        } else if bare.len() > NAME_MAX {
            Some(format!(
                "the name is {} bytes long; the limit is {NAME_MAX}",
                bare.len()
            ))
        } else if bare == "." || bare == ".." {
            Some("'.' and '..' are not object names".to_string())
        } else {
            None
        };
        match why {
            Some(why) => Err(Error::new(
                ErrorKind::InvalidName,
                "use name",
                format!("{name:?}"),
                why,
            )),
            None => Ok(ShmName(format!("/{bare}"))),
        }
    }

    /// The name with its leading slash, as `shm_open` takes it: `/jobs`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name without the slash: the file name under [`SHM_DIR`].
    pub fn file_name(&self) -> &str {
        &self.0[1..]
    }

    /// The path of the backing file: `/dev/shm/jobs`.
    pub fn path(&self) -> String {
        format!("{SHM_DIR}/{}", self.file_name())
    }
}

impl fmt::Display for ShmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How to open or create a POSIX object; mirrors `shm_open`'s flags.
///
/// ```no_run
/// use shmkit::posix::OpenOptions;
/// let obj = OpenOptions::new().create_new(true).size(4096).mode(0o600).open("/jobs")?;
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct OpenOptions {
    write: bool,
    create: bool,
    create_new: bool,
    truncate: bool,
    mode: u32,
    size: Option<u64>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenOptions {
    /// Read-write, open an existing object only, mode 0600 if created.
    pub fn new() -> Self {
        OpenOptions {
            write: true,
            create: false,
            create_new: false,
            truncate: false,
            mode: 0o600,
            size: None,
        }
    }

    /// Open for writing too (`O_RDWR`, the default) or only for reading (`O_RDONLY`).
    pub fn write(&mut self, write: bool) -> &mut Self {
        self.write = write;
        self
    }

    /// Create the object if it does not exist (`O_CREAT`).
    pub fn create(&mut self, create: bool) -> &mut Self {
        self.create = create;
        self
    }

    /// Create the object and fail if it exists (`O_CREAT|O_EXCL`).
    pub fn create_new(&mut self, create_new: bool) -> &mut Self {
        self.create_new = create_new;
        self
    }

    /// Empty an existing object on open (`O_TRUNC`); needs write access.
    pub fn truncate(&mut self, truncate: bool) -> &mut Self {
        self.truncate = truncate;
        self
    }

    /// Permission bits of a created object (default 0600). Applied exactly,
    /// not filtered by the umask, as System V's modes are.
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    /// Size given to an object this call creates (or truncates), with its
    /// space reserved. An existing object keeps its size.
    pub fn size(&mut self, size: u64) -> &mut Self {
        self.size = Some(size);
        self
    }

    /// Opens (or creates) the object called `name` (`jobs` or `/jobs`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] for a bad name; [`ErrorKind::NotFound`],
    /// [`ErrorKind::AlreadyExists`], [`ErrorKind::PermissionDenied`] from
    /// `shm_open`; [`ErrorKind::NoSpace`] when `/dev/shm` cannot hold `size`
    /// bytes, in which case an object this call created is removed again.
    #[doc(alias = "shm_open")]
    pub fn open(&self, name: &str) -> Result<PosixObject> {
        let name = ShmName::new(name)?;
        let op = if self.create || self.create_new {
            "create"
        } else {
            "open"
        };
        if self.mode > 0o7777 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                op,
                name.as_str(),
                format!("mode {:o} has bits above 0o7777", self.mode),
            ));
        }
        if !self.write && (self.truncate || self.size.is_some()) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                op,
                name.as_str(),
                "truncating or sizing needs write access",
            ));
        }
        let access = if self.write {
            OFlags::RDWR
        } else {
            OFlags::RDONLY
        };
        let (fd, created) = if self.create_new {
            (create_exclusive(&name, access, self.mode)?, true)
        } else if self.create {
            open_or_create(&name, access, self.mode)?
        } else {
            (open_existing(&name, access, op)?, false)
        };
        let obj = PosixObject {
            fd,
            name,
            writable: self.write,
        };
        let result = (|| {
            if created {
                // shm_open filters the mode through the umask; System V does
                // not, and a user who asks for 0666 means 0666.
                rustix::fs::fchmod(&obj.fd, Mode::from_raw_mode(self.mode))
                    .map_err(|e| obj.err(op, e))?;
            } else if self.truncate {
                rustix::fs::ftruncate(&obj.fd, 0).map_err(|e| obj.err(op, e))?;
            }
            if created || self.truncate {
                if let Some(size) = self.size {
                    obj.reserve(op, 0, size)?;
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(obj),
            Err(e) => {
                if created {
                    // Nothing half-made is left behind.
                    let _ = rustix::fs::unlink(obj.name.path());
                }
                Err(e)
            }
        }
    }
}

fn create_exclusive(name: &ShmName, access: OFlags, mode: u32) -> Result<OwnedFd> {
    open_entry(
        name,
        access | OFlags::CREATE | OFlags::EXCL,
        Mode::from_raw_mode(mode),
        "create",
    )
}

fn open_existing(name: &ShmName, access: OFlags, op: &'static str) -> Result<OwnedFd> {
    open_entry(name, access, Mode::empty(), op)
}

/// `shm_open` done by hand, so that nothing someone planted in the
/// world-writable `/dev/shm` can turn the call against its caller:
/// - `O_NOFOLLOW`: a symbolic link is refused, never followed (a link to
///   `/etc/shadow` must not let root's `cat`, `write` or `chmod` reach it;
///   glibc's `shm_open` refuses links too, and `fs.protected_symlinks` may be
///   off);
/// - `O_NONBLOCK`: opening a FIFO with no writer returns at once instead of
///   blocking for ever (and a device node is refused below before any I/O);
/// - `O_NOCTTY`, `O_CLOEXEC`: a terminal never becomes ours, the descriptor
///   never leaks into children;
/// - then `fstat` on the descriptor itself: anything but a regular file is
///   refused before a single byte is read, written, chmodded or truncated.
///
/// It also accepts every name [`ShmName`] does (up to 255 bytes after the
/// slash; rustix's `shm_open` counts the slash and stops at 254).
fn open_entry(name: &ShmName, flags: OFlags, mode: Mode, op: &'static str) -> Result<OwnedFd> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = match rustix::fs::open(name.path(), flags, mode) {
        Ok(fd) => fd,
        // ELOOP: the name is a symbolic link (O_NOFOLLOW).
        Err(Errno::LOOP) => return Err(not_an_object(name, op, "a symbolic link")),
        // ENXIO: a socket, or a FIFO opened for writing with no reader.
        Err(Errno::NXIO) => return Err(not_an_object(name, op, "a socket or FIFO")),
        Err(Errno::ISDIR) => return Err(not_an_object(name, op, "a directory")),
        Err(e) => return Err(Error::from((op, name.as_str(), e))),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::from((op, name.as_str(), e)))?;
    let what = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::RegularFile => {
            // O_NONBLOCK means nothing for a regular file; clear it anyway,
            // so a descriptor handed to other code behaves as shm_open's.
            if let Ok(fl) = rustix::fs::fcntl_getfl(&fd) {
                let _ = rustix::fs::fcntl_setfl(&fd, fl - OFlags::NONBLOCK);
            }
            return Ok(fd);
        }
        rustix::fs::FileType::Directory => "a directory",
        rustix::fs::FileType::Symlink => "a symbolic link",
        rustix::fs::FileType::Fifo => "a FIFO",
        rustix::fs::FileType::Socket => "a socket",
        rustix::fs::FileType::CharacterDevice => "a character device",
        rustix::fs::FileType::BlockDevice => "a block device",
        rustix::fs::FileType::Unknown => "not a regular file",
    };
    Err(not_an_object(name, op, what))
}

fn not_an_object(name: &ShmName, op: &'static str, what: &str) -> Error {
    Error::new(
        ErrorKind::NotAnObject,
        op,
        name.as_str(),
        format!(
            "{} is {what}, not a shared memory object (shmkit opens only regular files in {SHM_DIR} and never follows links)",
            name.path()
        ),
    )
}

/// `O_CREAT` without `O_EXCL`, but knowing whether this call created the
/// object: only then may a failure remove it.
fn open_or_create(name: &ShmName, access: OFlags, mode: u32) -> Result<(OwnedFd, bool)> {
    // Another process may create or remove the object between our two tries;
    // a few rounds settle any such race.
    for _ in 0..8 {
        match create_exclusive(name, access, mode) {
            Ok(fd) => return Ok((fd, true)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        match open_existing(name, access, "create") {
            Ok(fd) => return Ok((fd, false)),
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::new(
        ErrorKind::Other,
        "create",
        name.as_str(),
        "the object kept appearing and disappearing; another process is racing",
    ))
}

/// Size, owner, permissions and times of an object, from `fstat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// Inode number in the tmpfs: identifies the object in `/proc/*/maps`.
    pub inode: u64,
    /// Bytes actually allocated (`st_blocks * 512`): less than `size` when sparse.
    pub allocated: u64,
    /// Last access.
    pub atime: SystemTime,
    /// Last modification of the contents or size.
    pub mtime: SystemTime,
    /// Last change of the metadata.
    pub ctime: SystemTime,
}

impl Metadata {
    pub(crate) fn from_stat(st: &rustix::fs::Stat) -> Self {
        // The nanosecond fields are u64 with rustix's raw-syscall backend
        // and i64 with its libc one (which libshmkit selects): the casts
        // are needed for the first and no-ops for the second.
        #[allow(clippy::unnecessary_cast)]
        Metadata {
            size: st.st_size as u64,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            inode: st.st_ino,
            allocated: (st.st_blocks as u64).saturating_mul(512),
            atime: time_of(st.st_atime, st.st_atime_nsec as i64),
            mtime: time_of(st.st_mtime, st.st_mtime_nsec as i64),
            ctime: time_of(st.st_ctime, st.st_ctime_nsec as i64),
        }
    }
}

pub(crate) fn time_of(secs: i64, nsec: i64) -> SystemTime {
    let nsec = nsec.clamp(0, 999_999_999) as u32;
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::new(secs.unsigned_abs(), 0) + Duration::new(0, nsec)
    }
}

/// How to map an object: which range, for writing or not, shared or private.
#[derive(Debug, Clone, Copy)]
pub struct MapOptions {
    offset: u64,
    len: Option<usize>,
    write: bool,
    private: bool,
}

impl Default for MapOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl MapOptions {
    /// The whole object, read-only, shared.
    pub fn new() -> Self {
        MapOptions {
            offset: 0,
            len: None,
            write: false,
            private: false,
        }
    }

    /// Start at `offset` bytes into the object (any offset; shmkit aligns the
    /// underlying `mmap` to a page itself).
    pub fn offset(&mut self, offset: u64) -> &mut Self {
        self.offset = offset;
        self
    }

    /// Map `len` bytes (default: from the offset to the end of the object).
    pub fn len(&mut self, len: usize) -> &mut Self {
        self.len = Some(len);
        self
    }

    /// Allow writing through the mapping (`PROT_WRITE`).
    pub fn write(&mut self, write: bool) -> &mut Self {
        self.write = write;
        self
    }

    /// A private copy-on-write view (`MAP_PRIVATE`): writes stay in this
    /// process. Allowed for writing even on an object opened read-only.
    pub fn private(&mut self, private: bool) -> &mut Self {
        self.private = private;
        self
    }
}

/// An open POSIX shared memory object: a file descriptor and its name.
///
/// Dropping it closes the descriptor; the object itself stays until
/// [`unlink`]ed, and its memory until the last mapping is gone.
#[derive(Debug)]
pub struct PosixObject {
    fd: OwnedFd,
    name: ShmName,
    writable: bool,
}

impl PosixObject {
    /// Opens an existing object read-write (shorthand for [`OpenOptions`]).
    pub fn open(name: &str) -> Result<Self> {
        OpenOptions::new().open(name)
    }

    /// Opens an existing object read-only.
    pub fn open_read_only(name: &str) -> Result<Self> {
        OpenOptions::new().write(false).open(name)
    }

    /// Creates a new object of `size` bytes (mode 0600); fails if it exists.
    pub fn create(name: &str, size: u64) -> Result<Self> {
        OpenOptions::new().create_new(true).size(size).open(name)
    }

    /// The object's name, with its leading slash.
    pub fn name(&self) -> &ShmName {
        &self.name
    }

    /// A second handle on the same open object (`dup`), for code that must
    /// own one while this one lives on.
    pub fn try_clone(&self) -> Result<PosixObject> {
        Ok(PosixObject {
            fd: self
                .fd
                .try_clone()
                .map_err(|e| crate::inventory::io_error("open", self.name.as_str(), &e))?,
            name: self.name.clone(),
            writable: self.writable,
        })
    }

    /// Whether the object was opened for writing.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    fn err(&self, op: &'static str, e: Errno) -> Error {
        let err = Error::os(op, self.name.as_str(), e.raw_os_error());
        if e == Errno::NOSPC {
            err.with_detail(space_hint())
        } else {
            err
        }
    }

    fn check_writable(&self, op: &'static str) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::ReadOnly,
                op,
                self.name.as_str(),
                "the object was opened read-only",
            ))
        }
    }

    /// Size, mode, owner and times (`fstat`).
    #[doc(alias = "fstat")]
    pub fn metadata(&self) -> Result<Metadata> {
        let st = rustix::fs::fstat(&self.fd).map_err(|e| self.err("stat", e))?;
        Ok(Metadata::from_stat(&st))
    }

    /// The current size in bytes.
    pub fn size(&self) -> Result<u64> {
        Ok(self.metadata()?.size)
    }

    /// Allocates `offset..offset+len`, extending the size if it ends past it.
    fn reserve(&self, op: &'static str, offset: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        if offset
            .checked_add(len)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            let what = if offset == 0 {
                format!("a size of {len} bytes")
            } else {
                format!("{len} bytes at offset {offset}")
            };
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                op,
                self.name.as_str(),
                format!(
                    "{what} is larger than any file can be (the limit is {} bytes, 8 EiB - 1)",
                    i64::MAX
                ),
            ));
        }
        loop {
            match rustix::fs::fallocate(&self.fd, FallocateFlags::empty(), offset, len) {
                Ok(()) => return Ok(()),
                Err(Errno::INTR) => continue,
                // A filesystem without fallocate (not Linux's tmpfs): fall
                // back to ftruncate and lose only the early ENOSPC.
                Err(Errno::OPNOTSUPP) => {
                    let end = offset + len;
                    if end > self.size()? {
                        rustix::fs::ftruncate(&self.fd, end).map_err(|e| self.err(op, e))?;
                    }
                    return Ok(());
                }
                Err(e @ (Errno::NOSPC | Errno::FBIG)) => {
                    return Err(self.too_big(op, offset + len).unwrap_or_else(|| {
                        // How much was asked for, beside what is free: the
                        // caller can tell whether a smaller size would do.
                        Error::os(op, self.name.as_str(), e.raw_os_error()).with_detail(format!(
                            "{} ({len} bytes) needed; {}",
                            crate::human_bytes(len),
                            space_hint()
                        ))
                    }));
                }
                Err(e) => return Err(self.err(op, e)),
            }
        }
    }

    /// The error for a size that the filesystem could never hold, even
    /// empty: clearer than "no space, N free" for a mistyped size.
    fn too_big(&self, op: &'static str, end: u64) -> Option<Error> {
        let vfs = rustix::fs::fstatvfs(&self.fd).ok()?;
        let total = vfs.f_blocks.saturating_mul(vfs.f_frsize);
        (total > 0 && end > total).then(|| {
            Error::os(op, self.name.as_str(), libc::ENOSPC).with_detail(format!(
                "{}; {end} bytes ({}) is larger than the whole filesystem",
                space_hint(),
                crate::human_bytes(end)
            ))
        })
    }

    /// Changes the size: growing keeps the data and reserves the new space,
    /// shrinking drops the tail.
    ///
    /// Shrinking an object that other processes have mapped makes their
    /// accesses past the new end raise `SIGBUS`: only shrink what you own.
    #[doc(alias = "ftruncate")]
    pub fn resize(&self, size: u64) -> Result<()> {
        self.check_writable("resize")?;
        let current = self.size()?;
        if size > current {
            self.reserve("resize", current, size - current)
        } else if size < current {
            rustix::fs::ftruncate(&self.fd, size).map_err(|e| self.err("resize", e))
        } else {
            Ok(())
        }
    }

    /// Changes the permission bits (`fchmod`).
    #[doc(alias = "fchmod")]
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        if mode > 0o7777 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "chmod",
                self.name.as_str(),
                format!("mode {mode:o} has bits above 0o7777"),
            ));
        }
        rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(mode)).map_err(|e| self.err("chmod", e))
    }

    /// Changes the owner and/or group (`fchown`); `None` keeps the current one.
    #[doc(alias = "fchown")]
    pub fn set_owner(&self, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
        let uid = uid.map(rustix::fs::Uid::from_raw);
        let gid = gid.map(rustix::fs::Gid::from_raw);
        rustix::fs::fchown(&self.fd, uid, gid).map_err(|e| self.err("chown", e))
    }

    /// Copies `buf.len()` bytes from `offset` into `buf` with `pread`, not
    /// through a mapping.
    ///
    /// This is the way to read an object that another program made: one
    /// sized with a plain `ftruncate` is sparse, and reading a hole through
    /// a shared mapping allocates a page in the tmpfs, which raises `SIGBUS`
    /// when `/dev/shm` is full. `pread` of a hole reads zeros and allocates
    /// nothing.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if the range does not lie inside the
    /// object (also when it shrinks while being read); the OS's errors.
    #[doc(alias = "pread")]
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let size = self.size()?;
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > size) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "read",
                self.name.as_str(),
                format!(
                    "{} bytes at offset {offset} exceed the object's size of {size} bytes",
                    buf.len()
                ),
            ));
        }
        let mut done = 0;
        while done < buf.len() {
            match rustix::io::pread(&self.fd, &mut buf[done..], offset + done as u64) {
                Ok(0) => {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        "read",
                        self.name.as_str(),
                        format!(
                            "the object shrank to {} bytes while being read",
                            offset + done as u64
                        ),
                    ))
                }
                Ok(n) => done += n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(self.err("read", e)),
            }
        }
        Ok(())
    }

    /// Maps the whole object: read-write if it was opened so, shared.
    pub fn map(&self) -> Result<Region> {
        self.map_with(MapOptions::new().write(self.writable))
    }

    /// Maps the whole object read-only, shared.
    pub fn map_read_only(&self) -> Result<Region> {
        self.map_with(&MapOptions::new())
    }

    /// Maps a range of the object as `options` say (`mmap`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if the range does not lie inside the
    /// object (touching a page past its end would raise `SIGBUS`);
    /// [`ErrorKind::ReadOnly`] for a shared writable mapping of an object
    /// opened read-only; [`ErrorKind::NoSpace`] if a writable shared mapping
    /// of a sparse object cannot have its pages reserved.
    #[doc(alias = "mmap")]
    pub fn map_with(&self, options: &MapOptions) -> Result<Region> {
        let size = self.size()?;
        let offset = options.offset;
        let len = match options.len {
            Some(len) => len as u64,
            None => size.saturating_sub(offset),
        };
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "map",
                self.name.as_str(),
                format!("{len} bytes at offset {offset} exceed the object's size of {size} bytes"),
            ));
        }
        if options.write && !options.private {
            self.check_writable("map")?;
        }
        let label = self.name.as_str().to_string();
        if len == 0 {
            return Ok(Region::empty(options.write, label));
        }
        if options.write && !options.private {
            // Make sure every page is backed now, so a full /dev/shm is an
            // error here rather than SIGBUS at the first store. Objects that
            // shmkit created are already reserved; this covers ones other
            // programs sized with ftruncate alone.
            self.reserve_keep_size(offset, len)?;
        } else {
            self.check_holes_fit(len)?;
        }
        let page = rustix::param::page_size() as u64;
        let map_offset = offset - offset % page;
        let skip = (offset - map_offset) as usize;
        let map_len = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(skip))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    "map",
                    self.name.as_str(),
                    "the range does not fit in the address space",
                )
            })?;
        let mut prot = ProtFlags::READ;
        if options.write {
            prot |= ProtFlags::WRITE;
        }
        let flags = if options.private {
            MapFlags::PRIVATE
        } else {
            MapFlags::SHARED
        };
        // SAFETY: the kernel chooses the address (NULL hint), so the new
        // mapping overlaps no Rust object; the range lies inside the file
        // (checked above), so every mapped page is backed.
        let addr = unsafe {
            rustix::mm::mmap(ptr::null_mut(), map_len, prot, flags, &self.fd, map_offset)
        }
        .map_err(|e| self.err("map", e))?;
        let addr: NonNull<c_void> = NonNull::new(addr).expect("mmap never returns NULL on success");
        // SAFETY: `addr` is a live mapping of `map_len` bytes that only this
        // region will unmap; it is writable iff `options.write`; skip + len == map_len.
        Ok(unsafe { Region::from_mmap(addr, map_len, skip, len as usize, options.write, label) })
    }

    /// A mapping we cannot reserve (read-only, or private): reading a hole
    /// through it allocates a tmpfs page on first touch, and on a full
    /// `/dev/shm` that is `SIGBUS`, not an error. Refuse up front when the
    /// object's holes could not all be backed; [`PosixObject::read_at`]
    /// reads such an object safely.
    fn check_holes_fit(&self, len: u64) -> Result<()> {
        let md = self.metadata()?;
        let page = rustix::param::page_size() as u64;
        let holes = md
            .size
            .div_ceil(page)
            .saturating_mul(page)
            .saturating_sub(md.allocated)
            .min(len.div_ceil(page).saturating_mul(page));
        if holes == 0 {
            return Ok(());
        }
        let Ok(vfs) = rustix::fs::fstatvfs(&self.fd) else {
            return Ok(());
        };
        // A tmpfs mounted without a size limit reports 0 blocks.
        if vfs.f_blocks == 0 {
            return Ok(());
        }
        let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
        if holes <= free {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::NoSpace,
            "map",
            self.name.as_str(),
            format!(
                "the object is sparse ({} of its {} bytes allocated) and {SHM_DIR} has only {} free: \
                 touching its holes through a mapping would raise SIGBUS; read it with pread \
                 (PosixObject::read_at) instead",
                md.allocated,
                md.size,
                crate::human_bytes(free)
            ),
        ))
    }

    fn reserve_keep_size(&self, offset: u64, len: u64) -> Result<()> {
        // Every page already backed (all objects shmkit made): nothing to
        // reserve, and no fallocate, which would set mtime and ctime and
        // make merely opening an object look like a change.
        let md = self.metadata()?;
        let page = rustix::param::page_size() as u64;
        if md.allocated >= md.size.next_multiple_of(page) {
            return Ok(());
        }
        loop {
            match rustix::fs::fallocate(&self.fd, FallocateFlags::KEEP_SIZE, offset, len) {
                Ok(()) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(Errno::OPNOTSUPP) => return Ok(()),
                Err(e) => return Err(self.err("map", e)),
            }
        }
    }

    /// Removes this object's name (see [`unlink`]).
    pub fn unlink(&self) -> Result<()> {
        unlink(self.name.as_str())
    }
}

impl AsFd for PosixObject {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Removes the object `name` (`shm_unlink`). Processes that have it open or
/// mapped keep it until they let go; the name is free at once.
#[doc(alias = "shm_unlink")]
pub fn unlink(name: &str) -> Result<()> {
    let name = ShmName::new(name)?;
    // unlink(2) on the entry itself (what shm_unlink does): a symbolic link
    // is removed, never followed, so removal cannot reach outside /dev/shm.
    match rustix::fs::unlink(name.path()) {
        Ok(()) => Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) if is_directory(&name) => {
            Err(not_an_object(&name, "remove", "a directory"))
        }
        Err(e) => Err(Error::from(("remove", name.as_str(), e))),
    }
}

fn is_directory(name: &ShmName) -> bool {
    std::fs::symlink_metadata(name.path()).is_ok_and(|m| m.is_dir())
}

/// A sentence about the space in /dev/shm, for "no space" errors.
pub(crate) fn space_hint() -> String {
    match rustix::fs::statvfs(SHM_DIR) {
        Ok(vfs) => {
            let unit = vfs.f_frsize;
            format!(
                "{SHM_DIR} has {} free of {}; Docker's default /dev/shm is 64 MiB (--shm-size)",
                crate::human_bytes(vfs.f_bavail.saturating_mul(unit)),
                crate::human_bytes(vfs.f_blocks.saturating_mul(unit)),
            )
        }
        Err(_) => format!("{SHM_DIR} is full"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert_eq!(ShmName::new("jobs").unwrap().as_str(), "/jobs");
        assert_eq!(ShmName::new("/jobs").unwrap().file_name(), "jobs");
        for bad in ["", "/", "a/b", "/a/b", "//a", "a\0b", ".", "/.."] {
            let e = ShmName::new(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidName, "{bad:?}");
        }
        assert!(ShmName::new(&"x".repeat(255)).is_ok());
        let e = ShmName::new(&"x".repeat(256)).unwrap_err();
        assert!(
            e.to_string().contains("256 bytes long; the limit is 255"),
            "{e}"
        );
    }
}
