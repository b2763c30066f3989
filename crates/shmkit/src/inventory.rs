//! What is on the machine: every POSIX object in `/dev/shm`, and which
//! processes map it or hold it open.
//!
//! Processes come and go while we look, and other users' processes may deny
//! us their `/proc` entries: both are tolerated, so the answer is "every
//! mapper we were allowed to see". Run as root to see them all.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;

use crate::error::{Error, ErrorKind, Result};
use crate::posix::{time_of, Metadata, ShmName, SHM_DIR};

pub mod stale;
pub use stale::{
    remove_stale, segment_creator_alive, stale, stale_in, Removal, StaleKind, StaleObject,
    StaleOptions, StaleReport, StaleTarget,
};

/// The kind of a directory entry in `/dev/shm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// A regular file: a shared memory object.
    Regular,
    /// A directory: not an object (some programs make them in /dev/shm).
    Directory,
    /// A symbolic link: not an object.
    Symlink,
    /// Anything else (socket, FIFO, device): not an object.
    Other,
}

impl FileType {
    /// A lower-case word for output: `regular`, `directory`, `symlink`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::Regular => "regular",
            FileType::Directory => "directory",
            FileType::Symlink => "symlink",
            FileType::Other => "other",
        }
    }
}

/// One entry of `/dev/shm`.
#[derive(Debug, Clone)]
pub struct PosixEntry {
    /// The object's name, with its leading slash.
    pub name: ShmName,
    /// Regular file (a real object) or something else that lives there.
    pub file_type: FileType,
    /// Size, owner, mode and times (`lstat`, so a link is not followed).
    pub metadata: Metadata,
}

fn metadata_of(md: &fs::Metadata) -> Metadata {
    Metadata {
        size: md.size(),
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        inode: md.ino(),
        allocated: md.blocks().saturating_mul(512),
        atime: time_of(md.atime(), md.atime_nsec()),
        mtime: time_of(md.mtime(), md.mtime_nsec()),
        ctime: time_of(md.ctime(), md.ctime_nsec()),
    }
}

fn file_type_of(md: &fs::Metadata) -> FileType {
    let t = md.file_type();
    if t.is_file() {
        FileType::Regular
    } else if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else {
        FileType::Other
    }
}

/// Whether a `/dev/shm` file name belongs to a named POSIX semaphore
/// (glibc keeps `sem_open("/x")` as `/dev/shm/sem.x`).
pub fn is_semaphore_file(file_name: &str) -> bool {
    file_name.starts_with("sem.")
}

/// Every entry of `/dev/shm` except named semaphores, sorted by name.
///
/// Entries that vanish while we list them are skipped.
pub fn posix_objects() -> Result<Vec<PosixEntry>> {
    let dir = fs::read_dir(SHM_DIR).map_err(|e| io_error("list", SHM_DIR, &e))?;
    let mut out = Vec::new();
    for entry in dir {
        let Ok(entry) = entry else { continue };
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if is_semaphore_file(&file_name) {
            continue;
        }
        let Ok(md) = entry.path().symlink_metadata() else {
            continue; // removed while we looked
        };
        let Ok(name) = ShmName::new(&file_name) else {
            continue;
        };
        out.push(PosixEntry {
            name,
            file_type: file_type_of(&md),
            metadata: metadata_of(&md),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The `/dev/shm` entry for `name`, without opening it (so it works on
/// objects the caller may not read).
pub fn posix_object(name: &str) -> Result<PosixEntry> {
    let name = ShmName::new(name)?;
    let md = fs::symlink_metadata(name.path()).map_err(|e| io_error("stat", name.as_str(), &e))?;
    Ok(PosixEntry {
        file_type: file_type_of(&md),
        metadata: metadata_of(&md),
        name,
    })
}

pub(crate) fn io_error(op: &'static str, object: &str, e: &std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(errno) => Error::os(op, object, errno),
        None => Error::new(ErrorKind::Other, op, object, e.to_string()),
    }
}

/// Which processes map or hold open which shared memory, from one pass over
/// `/proc/*/maps` and `/proc/*/fd`.
#[derive(Debug, Default, Clone)]
pub struct ProcessScan {
    /// tmpfs inode of a `/dev/shm` file → pids that map it.
    posix_mappers: HashMap<u64, BTreeSet<i32>>,
    /// tmpfs inode of a `/dev/shm` file → pids with a descriptor open on it.
    posix_holders: HashMap<u64, BTreeSet<i32>>,
    /// System V shmid → pids that have it attached (`/SYSV…` lines, whose
    /// inode field is the shmid).
    sysv_attachers: HashMap<u64, BTreeSet<i32>>,
    /// tmpfs inode of a removed `/dev/shm` file that processes still map
    /// or hold open (`/dev/shm/NAME (deleted)`) → what we saw of it.
    deleted: BTreeMap<u64, DeletedObject>,
    /// Mappings of files under the extra directories of [`Self::with_dirs`]:
    /// inode → pids.
    dir_mappers: HashMap<u64, BTreeSet<i32>>,
    /// Those directories, each ending in `/`.
    dirs: Vec<String>,
    /// Processes whose entries we could not read (permission denied).
    denied: usize,
    /// Processes looked at.
    processes: usize,
}

/// A POSIX object removed from `/dev/shm` whose memory lives on because
/// processes still map it or hold it open (`ipcs` would say `dest`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeletedObject {
    /// The name it had, with its leading slash.
    pub name: String,
    /// Its tmpfs inode.
    pub inode: u64,
    /// Pids that map it.
    pub mapped_by: Vec<i32>,
    /// Pids that hold a descriptor open on it.
    pub open_by: Vec<i32>,
    /// The longest mapping of it seen (its size is at least this).
    pub mapped_bytes: u64,
}

/// The name in a `/proc` path of a removed `/dev/shm` file.
fn deleted_name(path: &str) -> Option<&str> {
    path.strip_prefix("/dev/shm")?.strip_suffix(" (deleted)")
}

impl ProcessScan {
    /// Scans every process we are allowed to inspect.
    pub fn new() -> Self {
        Self::with_dirs(&[])
    }

    /// [`ProcessScan::new`], also noting mappings of files under `dirs`
    /// (other tmpfs or hugetlbfs mounts; each given with a trailing `/`),
    /// for [`Self::path_mappers`].
    pub fn with_dirs(dirs: &[String]) -> Self {
        let mut scan = ProcessScan {
            dirs: dirs.to_vec(),
            ..Default::default()
        };
        let Ok(proc_dir) = fs::read_dir("/proc") else {
            return scan;
        };
        for entry in proc_dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            scan.processes += 1;
            // Descriptors before mappings: a process that opens, maps and
            // then closes while we look is seen holding the descriptor or
            // mapping it, never neither (gc relies on that).
            scan.scan_fds(pid);
            scan.scan_maps(pid);
        }
        scan
    }

    fn note_deleted(&mut self, name: &str, inode: u64, pid: i32, mapped: Option<u64>) {
        let entry = self.deleted.entry(inode).or_insert_with(|| DeletedObject {
            name: name.to_string(),
            inode,
            ..Default::default()
        });
        let list = match mapped {
            Some(bytes) => {
                entry.mapped_bytes = entry.mapped_bytes.max(bytes);
                &mut entry.mapped_by
            }
            None => &mut entry.open_by,
        };
        if !list.contains(&pid) {
            list.push(pid);
        }
    }

    fn scan_maps(&mut self, pid: i32) {
        let file = match fs::File::open(format!("/proc/{pid}/maps")) {
            Ok(f) => f,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    self.denied += 1;
                }
                return;
            }
        };
        for line in BufReader::new(file).lines() {
            // A process that exits mid-read ends the file early; that is fine.
            let Ok(line) = line else { break };
            // address perms offset dev inode path
            let mut fields = line.splitn(6, ' ');
            let (Some(range), Some(_), Some(_), Some(_), Some(inode), Some(path)) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                continue;
            };
            let path = path.trim_start();
            let Ok(inode) = inode.parse::<u64>() else {
                continue;
            };
            if path.starts_with("/dev/shm/") {
                self.posix_mappers.entry(inode).or_default().insert(pid);
                if let Some(name) = deleted_name(path) {
                    let bytes = range
                        .split_once('-')
                        .and_then(|(a, b)| {
                            Some(
                                u64::from_str_radix(b, 16)
                                    .ok()?
                                    .saturating_sub(u64::from_str_radix(a, 16).ok()?),
                            )
                        })
                        .unwrap_or(0);
                    self.note_deleted(name, inode, pid, Some(bytes));
                }
            } else if self.dirs.iter().any(|d| path.starts_with(d.as_str())) {
                self.dir_mappers.entry(inode).or_default().insert(pid);
            } else if path.starts_with("/SYSV") {
                self.sysv_attachers.entry(inode).or_default().insert(pid);
            }
        }
    }

    fn scan_fds(&mut self, pid: i32) {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            return;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            if !target.starts_with(SHM_DIR) {
                continue;
            }
            // Stat through the link: the inode identifies the object even if
            // it was unlinked and its name reused.
            if let Ok(md) = fs::metadata(fd.path()) {
                self.posix_holders.entry(md.ino()).or_default().insert(pid);
                if let Some(name) = target.to_str().and_then(deleted_name) {
                    self.note_deleted(name, md.ino(), pid, None);
                }
            }
        }
    }

    /// Pids that map the POSIX object with this inode.
    pub fn posix_mappers(&self, inode: u64) -> Vec<i32> {
        pids(self.posix_mappers.get(&inode))
    }

    /// Pids that hold a descriptor open on the POSIX object with this inode.
    pub fn posix_holders(&self, inode: u64) -> Vec<i32> {
        pids(self.posix_holders.get(&inode))
    }

    /// Pids that have the System V segment `shmid` attached.
    pub fn sysv_attachers(&self, shmid: i32) -> Vec<i32> {
        pids(self.sysv_attachers.get(&(shmid as u32 as u64)))
    }

    /// How many processes denied us their `/proc` entries.
    pub fn denied(&self) -> usize {
        self.denied
    }

    /// Pids that map the file `path` (under a directory given to
    /// [`Self::with_dirs`], or in `/dev/shm`) with this inode.
    pub fn path_mappers(&self, path: &str, inode: u64) -> Vec<i32> {
        if path.starts_with("/dev/shm/") {
            return self.posix_mappers(inode);
        }
        pids(self.dir_mappers.get(&inode))
    }

    /// How many processes were looked at.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// Removed POSIX objects that processes still map or hold open, by
    /// inode.
    pub fn deleted(&self) -> impl Iterator<Item = &DeletedObject> {
        self.deleted.values()
    }

    /// Whether any process we could see maps or holds open the POSIX
    /// object with this inode.
    pub fn posix_in_use(&self, inode: u64) -> bool {
        self.posix_mappers.contains_key(&inode) || self.posix_holders.contains_key(&inode)
    }
}

fn pids(set: Option<&BTreeSet<i32>>) -> Vec<i32> {
    set.map(|s| s.iter().copied().collect()).unwrap_or_default()
}

/// The login name of `uid`, if the user database knows it.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: passwd is plain old data; zeroed is a valid "empty" value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to live local storage of the stated size;
    // getpwuid_r writes strings only into `buf`.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string in `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// The login (primary) group of user `uid`, if the user database knows the
/// user: what `chown USER: FILE` gives the file.
pub fn login_group_of(uid: u32) -> Option<u32> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: as in `user_name`.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in `user_name`.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(pwd.pw_gid)
}

/// The name of group `gid`, if the group database knows it.
pub fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16384];
    // SAFETY: group is plain old data; zeroed is a valid "empty" value.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `user_name`, with getgrgid_r.
    let rc = unsafe {
        libc::getgrgid_r(
            gid,
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success gr_name points to a NUL-terminated string in `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(grp.gr_name) };
    Some(name.to_string_lossy().into_owned())
}

/// The uid of the user called `name`, or `name` itself if it is a number.
pub fn uid_of(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: as in `user_name`.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in `user_name`, with getpwnam_r and a NUL-terminated name.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(pwd.pw_uid)
}

/// The gid of the group called `name`, or `name` itself if it is a number.
pub fn gid_of(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 16384];
    // SAFETY: as in `group_name`.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `group_name`, with getgrnam_r and a NUL-terminated name.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_known_with_its_login_group() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(uid_of("root"), Some(0));
        assert_eq!(login_group_of(0), Some(0));
        assert_eq!(uid_of("4242"), Some(4242));
        assert_eq!(uid_of("no-such-user-shmkit"), None);
    }
}
