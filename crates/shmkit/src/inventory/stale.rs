//! Stale shared memory: objects and segments that nobody uses and whose
//! makers are gone, found in one pass over `/dev/shm`, `/proc/sysvipc/shm`
//! and `/proc`, and removed only after a second look.
//!
//! # What counts as stale
//! - A POSIX object that no process maps or holds open, **and** either a
//!   shmkit object (channel, board, broadcast) whose creator is dead, or any
//!   object unchanged for longer than [`StaleOptions::older_than`]. Without
//!   `older_than` an object shmkit did not make is never stale: nothing
//!   foreign is touched by default. (An endpoint of a shmkit object maps
//!   it, so "nobody maps it" also says every recorded endpoint is gone.)
//! - A System V segment with no attachment (`nattch` 0) whose creator is
//!   dead, and, with `older_than`, unused for that long. A segment already
//!   removed (`dest`) is reported as such, never counted.
//!
//! # What is not judged
//! Processes whose `/proc` entries cannot be read (other users', when not
//! root) may map an object unseen. An object that such processes could
//! open (its mode lets group or others in, or another user owns it) is
//! reported as [`StaleKind::Unknown`] rather than stale; so is an object
//! whose header cannot be read. As root, processes closed even to root (a
//! sandbox's init) are only counted in [`StaleReport::denied_processes`].
//!
//! # Removal
//! [`remove_stale`] looks again right before removing: each POSIX
//! candidate is first renamed to a hidden name (so nobody can open it by
//! name any more), then one fresh scan of `/proc` tells whether a process
//! maps or holds it now; if one does, it gets its name back and is kept,
//! otherwise the hidden name is unlinked. A segment's `nattch` is read
//! again just before `IPC_RMID`.

use std::fs;
use std::time::{Duration, SystemTime};

use crate::error::{Error, ErrorKind, Result};
use crate::inventory::{posix_objects, FileType, PosixEntry, ProcessScan};
use crate::layout::{self, Kind};
use crate::posix::{PosixObject, ShmName, SHM_DIR};
use crate::process::ProcessId;
use crate::sysv::{self, Key, Segment, SegmentInfo};

/// What [`stale`] looks for.
#[derive(Debug, Clone)]
pub struct StaleOptions {
    older_than: Option<Duration>,
    posix: bool,
    sysv: bool,
}

impl Default for StaleOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl StaleOptions {
    /// POSIX objects and System V segments, no age rule.
    pub fn new() -> Self {
        StaleOptions {
            older_than: None,
            posix: true,
            sysv: true,
        }
    }

    /// Also count any unused object unchanged for longer than `age` (for a
    /// shmkit object or a segment: require that age besides a dead creator).
    pub fn older_than(&mut self, age: Option<Duration>) -> &mut Self {
        self.older_than = age;
        self
    }

    /// Whether to look at POSIX objects in `/dev/shm`.
    pub fn posix(&mut self, on: bool) -> &mut Self {
        self.posix = on;
        self
    }

    /// Whether to look at System V segments.
    pub fn sysv(&mut self, on: bool) -> &mut Self {
        self.sysv = on;
        self
    }
}

/// Which object a [`StaleObject`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleTarget {
    /// A POSIX object, by name and by tmpfs inode (a new object under the
    /// same name is a different object).
    Posix {
        /// Its name, with the leading slash.
        name: ShmName,
        /// Its inode when it was judged.
        inode: u64,
    },
    /// A System V segment.
    Sysv {
        /// Its id.
        id: i32,
        /// Its key.
        key: Key,
    },
}

impl StaleTarget {
    /// The object as a user would write it: `/name` or `id:SHMID`.
    pub fn label(&self) -> String {
        match self {
            StaleTarget::Posix { name, .. } => name.as_str().to_string(),
            StaleTarget::Sysv { id, .. } => format!("id:{id}"),
        }
    }
}

/// How sure [`stale`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleKind {
    /// Stale: [`remove_stale`] may remove it.
    Stale,
    /// A segment already removed and waiting for its last detach: shown,
    /// not counted.
    MarkedForRemoval,
    /// Could not be judged (its header is unreadable, or processes we could
    /// not inspect may use it): shown, not counted.
    Unknown,
}

impl StaleKind {
    /// A word for output: `stale`, `dest`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            StaleKind::Stale => "stale",
            StaleKind::MarkedForRemoval => "dest",
            StaleKind::Unknown => "unknown",
        }
    }
}

/// One object that [`stale`] reports.
#[derive(Debug, Clone)]
pub struct StaleObject {
    /// Which object.
    pub target: StaleTarget,
    /// Stale, or why it is only shown.
    pub kind: StaleKind,
    /// The shmkit object it holds, if its header says so.
    pub object: Option<Kind>,
    /// Size in bytes.
    pub size: u64,
    /// Owner's user id.
    pub uid: u32,
    /// Last change: a POSIX object's mtime; a segment's latest attach,
    /// detach or change time.
    pub changed: Option<SystemTime>,
    /// The creator's pid, where known.
    pub creator: Option<u32>,
    /// Why, in words: `no mapper, not open; creator 4123 is gone; ...`.
    pub reason: String,
}

/// What [`stale`] found.
#[derive(Debug, Clone, Default)]
pub struct StaleReport {
    /// Every object reported, stale or only shown ([`StaleObject::kind`]).
    pub objects: Vec<StaleObject>,
    /// Objects and segments looked at.
    pub examined: usize,
    /// Processes whose `/proc` entries could not be read.
    pub denied_processes: usize,
}

impl StaleReport {
    /// The objects that are stale (the ones [`remove_stale`] would remove).
    pub fn stale(&self) -> impl Iterator<Item = &StaleObject> {
        self.objects.iter().filter(|o| o.kind == StaleKind::Stale)
    }
}

/// What [`remove_stale`] did with one object.
#[derive(Debug)]
pub enum Removal {
    /// Removed.
    Removed,
    /// Left alone, and why (a process maps it now, it was replaced, ...).
    Kept(String),
    /// Removing failed (permission denied, ...).
    Failed(Error),
}

/// `3d 4h`, `2h 5m`, `41s`: an age for reasons.
fn age_text(age: Duration) -> String {
    let s = age.as_secs();
    let (d, h, m) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

fn age_of(t: Option<SystemTime>, now: SystemTime) -> Option<Duration> {
    t.map(|t| now.duration_since(t).unwrap_or(Duration::ZERO))
}

/// Finds the stale shared memory of this machine (see the
/// [module documentation](self) for the rules), in one pass over
/// `/dev/shm`, `/proc/sysvipc/shm` and `/proc`. It removes nothing.
///
/// # Errors
/// Only when `/dev/shm` cannot be listed; a kernel without System V IPC
/// has no segments to report.
pub fn stale(options: &StaleOptions) -> Result<StaleReport> {
    let entries = if options.posix {
        posix_objects()?
    } else {
        Vec::new()
    };
    let segments = if options.sysv {
        sysv::segments().unwrap_or_default()
    } else {
        Vec::new()
    };
    let scan = ProcessScan::new();
    Ok(stale_in(&entries, &segments, &scan, options))
}

/// [`stale`] over a listing and a process scan the caller made already (a
/// listing that shows staleness then costs no second pass over `/proc`).
/// `options`' `posix` and `sysv` are not consulted: the lists are judged
/// as given.
pub fn stale_in(
    entries: &[PosixEntry],
    segments: &[SegmentInfo],
    scan: &ProcessScan,
    options: &StaleOptions,
) -> StaleReport {
    let now = SystemTime::now();
    let me = rustix::process::geteuid();
    let mut report = StaleReport {
        denied_processes: scan.denied(),
        ..Default::default()
    };
    for e in entries {
        if e.file_type != FileType::Regular {
            continue;
        }
        report.examined += 1;
        let md = &e.metadata;
        if scan.posix_in_use(md.inode) {
            continue;
        }
        let mut found = StaleObject {
            target: StaleTarget::Posix {
                name: e.name.clone(),
                inode: md.inode,
            },
            kind: StaleKind::Stale,
            object: None,
            size: md.size,
            uid: md.uid,
            changed: Some(md.mtime),
            creator: None,
            reason: String::new(),
        };
        let age = age_of(Some(md.mtime), now).unwrap_or_default();
        let old_enough = options.older_than.map(|limit| age > limit);
        let mut why = vec!["no mapper, not open".to_string()];
        let hidden_users =
            scan.denied() > 0 && !me.is_root() && (md.mode & 0o066 != 0 || md.uid != me.as_raw());
        if hidden_users {
            found.kind = StaleKind::Unknown;
            why.push(format!(
                "{} processes could not be inspected and may use it (run as root)",
                scan.denied()
            ));
        }
        match PosixObject::open_read_only(e.name.as_str()) {
            Ok(obj) => {
                if let Some(header) = layout::peek_header_of(&obj) {
                    found.object = Some(header.kind);
                    found.creator = Some(header.creator.pid);
                    let creator_gone = header.creator.pid != 0 && !header.creator.is_alive();
                    let state = if header.ready { "" } else { ", never finished" };
                    why.push(format!(
                        "shmkit {}{state}; creator {} {}",
                        header.kind.as_str(),
                        header.creator.pid,
                        if creator_gone { "is gone" } else { "lives" }
                    ));
                    if !creator_gone && old_enough != Some(true) {
                        continue;
                    }
                } else if old_enough.is_none() {
                    // A foreign object: only ever stale by age.
                    continue;
                }
            }
            Err(err) if err.kind() == ErrorKind::PermissionDenied => {
                if old_enough.is_none() {
                    found.kind = StaleKind::Unknown;
                    why.push("cannot read its header: permission denied".into());
                }
            }
            Err(_) => continue, // removed while we looked
        }
        match options.older_than {
            Some(_) if old_enough == Some(false) => continue,
            Some(limit) => why.push(format!(
                "unchanged for {} (over {})",
                age_text(age),
                age_text(limit)
            )),
            None => why.push(format!("unchanged for {}", age_text(age))),
        }
        found.reason = why.join("; ");
        report.objects.push(found);
    }
    for s in segments {
        report.examined += 1;
        if let Some(found) = judge_segment(s, options, now) {
            report.objects.push(found);
        }
    }
    report
}

fn judge_segment(s: &SegmentInfo, options: &StaleOptions, now: SystemTime) -> Option<StaleObject> {
    let changed = [s.atime, s.dtime, s.ctime].into_iter().flatten().max();
    let mut found = StaleObject {
        target: StaleTarget::Sysv {
            id: s.id,
            key: s.key,
        },
        kind: StaleKind::Stale,
        object: None,
        size: s.size,
        uid: s.uid,
        changed,
        creator: u32::try_from(s.cpid).ok(),
        reason: String::new(),
    };
    if s.marked_for_removal {
        found.kind = StaleKind::MarkedForRemoval;
        found.reason = format!(
            "removed, waiting for {} attachment(s) to go (dest)",
            s.nattch
        );
        return Some(found);
    }
    if s.nattch != 0 || segment_creator_alive(s) {
        return None;
    }
    let age = age_of(changed, now).unwrap_or_default();
    let mut why = vec![format!("nattch 0; creator {} is gone", s.cpid)];
    match options.older_than {
        Some(limit) if age <= limit => return None,
        Some(limit) => why.push(format!(
            "unused for {} (over {})",
            age_text(age),
            age_text(limit)
        )),
        None => why.push(format!("unused for {}", age_text(age))),
    }
    found.reason = why.join("; ");
    Some(found)
}

/// When the process with this start time (clock ticks after boot) started.
fn started_at(ticks: u64) -> Option<SystemTime> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let boot: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    let since_boot = Duration::from_secs(ticks / hz) + Duration::from_secs(ticks % hz) / hz as u32;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(boot) + since_boot)
}

/// Whether the process that created segment `s` still runs.
///
/// The kernel keeps only the creator's pid, and pids are reused: a running
/// process with that pid is taken for the creator unless it started after
/// the segment's ctime (which is its creation, or a later chmod/chown), by
/// more than the two seconds that the boot time's and ctime's rounding can
/// account for. A zombie counts as gone; a pid we cannot see (0: outside
/// our pid namespace) as not running.
pub fn segment_creator_alive(s: &SegmentInfo) -> bool {
    let Ok(pid) = u32::try_from(s.cpid) else {
        return false;
    };
    if pid == 0 {
        return false;
    }
    let Some(start_time) = crate::process::start_time(pid) else {
        return false;
    };
    if !(ProcessId { pid, start_time }).is_alive() {
        return false;
    }
    match (started_at(start_time), s.ctime) {
        (Some(started), Some(ctime)) => started <= ctime + Duration::from_secs(2),
        _ => true,
    }
}

/// The hidden name a POSIX candidate has while [`remove_stale`] checks it.
fn hidden_name(i: usize) -> String {
    format!(".shmkit-gc-{}-{i}", std::process::id())
}

fn shm_path(file_name: &str) -> String {
    format!("{SHM_DIR}/{file_name}")
}

fn rename(from: &str, to: &str) -> rustix::io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )
}

/// Removes the objects of `candidates` whose kind is [`StaleKind::Stale`],
/// looking again right before (see the [module documentation](self)):
/// one that a process maps or holds open by then is kept. Returns one
/// [`Removal`] per candidate, in order (those not stale are `Kept`).
pub fn remove_stale(candidates: &[StaleObject]) -> Vec<Removal> {
    let mut out: Vec<Option<Removal>> = candidates.iter().map(|_| None).collect();
    // POSIX: hide every candidate first, then one scan for all of them.
    let mut hidden: Vec<(usize, &ShmName, u64, String)> = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        if c.kind != StaleKind::Stale {
            out[i] = Some(Removal::Kept(format!("not stale ({})", c.kind.as_str())));
            continue;
        }
        match &c.target {
            StaleTarget::Posix { name, inode } => {
                let path = name.path();
                match fs::symlink_metadata(&path) {
                    Ok(md) if std::os::unix::fs::MetadataExt::ino(&md) == *inode => {}
                    Ok(_) => {
                        out[i] = Some(Removal::Kept("replaced by a new object".into()));
                        continue;
                    }
                    Err(_) => {
                        out[i] = Some(Removal::Kept("already gone".into()));
                        continue;
                    }
                }
                let tmp = shm_path(&hidden_name(i));
                match rename(&path, &tmp) {
                    Ok(()) => hidden.push((i, name, *inode, tmp)),
                    Err(e) => {
                        let err = Error::os("remove", name.as_str(), e.raw_os_error());
                        out[i] = Some(Removal::Failed(if e == rustix::io::Errno::PERM {
                            err.with_detail("only its owner or root may remove it from /dev/shm")
                        } else {
                            err
                        }));
                    }
                }
            }
            StaleTarget::Sysv { id, .. } => out[i] = Some(remove_segment(*id)),
        }
    }
    if !hidden.is_empty() {
        let scan = ProcessScan::new();
        for (i, name, inode, tmp) in hidden {
            let users: Vec<i32> = scan
                .posix_mappers(inode)
                .into_iter()
                .chain(scan.posix_holders(inode))
                .collect();
            out[i] = Some(if users.is_empty() {
                match rustix::fs::unlink(tmp.as_str()) {
                    Ok(()) => Removal::Removed,
                    Err(e) => Removal::Failed(Error::os("remove", name.as_str(), e.raw_os_error())),
                }
            } else {
                let who = users
                    .iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                match rename(&tmp, &name.path()) {
                    Ok(()) => Removal::Kept(format!("in use again (pid {who})")),
                    Err(e) => Removal::Failed(Error::new(
                        ErrorKind::Other,
                        "restore",
                        name.as_str(),
                        format!(
                            "pid {who} uses it again, but its name could not be given back ({}): it is now {tmp}",
                            crate::error::errno_text(e.raw_os_error())
                        ),
                    )),
                }
            });
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Removal::Kept("not examined".into())))
        .collect()
}

fn remove_segment(id: i32) -> Removal {
    let seg = Segment::from_id(id);
    let seg = match seg {
        Ok(seg) => seg,
        Err(e) if e.kind() == ErrorKind::NotFound => return Removal::Kept("already gone".into()),
        Err(e) => return Removal::Failed(e),
    };
    match seg.stat() {
        Ok(info) if info.nattch > 0 => {
            return Removal::Kept(format!("attached again (nattch {})", info.nattch))
        }
        Ok(info) if segment_creator_alive(&info) => {
            return Removal::Kept("its creator runs".into())
        }
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Removal::Kept("already gone".into()),
        // IPC_STAT may be denied where IPC_RMID is not (root, the owner):
        // nattch from the scan was 0.
        Err(_) => {}
    }
    match seg.remove() {
        Ok(()) => Removal::Removed,
        Err(e) if e.kind() == ErrorKind::NotFound => Removal::Kept("already gone".into()),
        Err(e) => Removal::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_write_them() {
        assert_eq!(age_text(Duration::from_secs(41)), "41s");
        assert_eq!(age_text(Duration::from_secs(125)), "2m 5s");
        assert_eq!(age_text(Duration::from_secs(2 * 3600 + 300)), "2h 5m");
        assert_eq!(
            age_text(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d 4h"
        );
    }

    #[test]
    fn this_process_is_alive_as_a_creator_and_a_late_starter_is_not() {
        let me = std::process::id() as i32;
        let s = |ctime: SystemTime| SegmentInfo {
            key: Key::PRIVATE,
            id: 0,
            size: 1,
            mode: 0o600,
            uid: 0,
            gid: 0,
            cuid: 0,
            cgid: 0,
            cpid: me,
            lpid: 0,
            nattch: 0,
            atime: None,
            dtime: None,
            ctime: Some(ctime),
            marked_for_removal: false,
            locked: false,
            rss: None,
            swap: None,
        };
        assert!(segment_creator_alive(&s(SystemTime::now())));
        // A segment changed long before this process started was made by
        // an earlier holder of its pid.
        assert!(!segment_creator_alive(&s(
            std::time::UNIX_EPOCH + Duration::from_secs(1)
        )));
        let started = started_at(crate::process::start_time(me as u32).unwrap()).unwrap();
        let age = SystemTime::now().duration_since(started).unwrap();
        assert!(age < Duration::from_secs(600), "{age:?}");
    }
}
