//! One function per verb: call the library, format what it returns.

use std::io::{Read, Write};

use anyhow::{bail, Result};
use serde_json::{json, Value};
use shmkit::inventory::{self, FileType, PosixEntry, ProcessScan};
use shmkit::posix::{self, OpenOptions, PosixObject};
use shmkit::{Error, ErrorKind};

use crate::show;
use crate::sysv_cmds;
use crate::target::{Opened, Target, Window};

/// Bytes copied to standard output per step, so `cat` of a large object
/// never holds more than this in the heap.
const CHUNK: usize = 1 << 16;

pub fn create(name: &str, size: u64, mode: u32, exclusive: bool) -> Result<u8> {
    let mut opts = OpenOptions::new();
    opts.size(size).mode(mode);
    if exclusive {
        opts.create_new(true);
    } else {
        opts.create(true);
    }
    let obj = opts.open(name)?;
    let actual = obj.size()?;
    if actual != size {
        // It existed already: say so rather than silently resize it.
        bail!(Error::new(
            ErrorKind::AlreadyExists,
            "create",
            obj.name().as_str(),
            format!(
                "it exists with a size of {actual} bytes, not {size} (use `shmkit resize` to change it)"
            ),
        ));
    }
    Ok(0)
}

/// Refuses raw bytes into a shmkit channel, board or broadcast unless
/// `force`: they would overwrite its header and state for every process
/// that uses it. `op` names the verb in the error.
pub fn refuse_structured(obj: &Opened, op: &'static str, force: bool) -> Result<()> {
    if let (Opened::Posix(posix), false) = (obj, force) {
        if let Some(kind) = shmkit::layout::peek_kind_of(posix) {
            bail!(Error::new(
                ErrorKind::InvalidArgument,
                op,
                posix.name().as_str(),
                format!(
                    "it is a shmkit {}: raw bytes would overwrite its header and state (use `shmkit {}`, or --force)",
                    kind.as_str(),
                    match kind {
                        shmkit::layout::Kind::Channel => "produce",
                        shmkit::layout::Kind::Broadcast => "pub",
                        _ => "board set",
                    }
                ),
            ));
        }
    }
    Ok(())
}

pub fn write(target: &Target, offset: u64, text: Option<String>, force: bool) -> Result<u8> {
    let obj = Opened::open(target, true)?;
    refuse_structured(&obj, "write", force)?;
    let size = obj.size()?;
    let data = match text {
        Some(t) => t.into_bytes(),
        None => {
            // Read at most one byte more than fits, so an endless stdin
            // cannot exhaust memory and an oversized one is still detected.
            let room = size.saturating_sub(offset);
            let mut data = Vec::new();
            std::io::stdin()
                .lock()
                .take(room.saturating_add(1))
                .read_to_end(&mut data)?;
            if data.len() as u64 > room {
                bail!(Error::new(
                    ErrorKind::InvalidArgument,
                    "write",
                    obj.label(),
                    format!(
                        "standard input holds more than the {room} bytes that fit at offset {offset} ({} size {size})",
                        obj.noun()
                    ),
                ));
            }
            data
        }
    };
    // Everything is checked before the first byte is written: a write that
    // does not fit changes nothing.
    let window = obj.window("write", offset, Some(data.len() as u64), true)?;
    window.write_all(&data)?;
    Ok(0)
}

fn copy_out(
    window: &Window,
    mut sink: impl FnMut(usize, &[u8]) -> std::io::Result<()>,
) -> Result<()> {
    let mut buf = vec![0u8; CHUNK.min(window.len())];
    let mut pos = 0;
    while pos < window.len() {
        let n = CHUNK.min(window.len() - pos);
        window.read_at(pos, &mut buf[..n])?;
        sink(pos, &buf[..n])?;
        pos += n;
    }
    Ok(())
}

pub fn cat(out: &mut dyn Write, target: &Target, offset: u64, len: Option<u64>) -> Result<u8> {
    let window = Opened::open(target, false)?.window("read", offset, len, false)?;
    copy_out(&window, |_, bytes| out.write_all(bytes))?;
    Ok(0)
}

pub fn dump(out: &mut dyn Write, target: &Target, offset: u64, len: Option<u64>) -> Result<u8> {
    let window = Opened::open(target, false)?.window("read", offset, len, false)?;
    // CHUNK is a multiple of 16, so chunked lines equal one dump of the range.
    let mut hex = show::HexDump::default();
    copy_out(&window, |pos, chunk| {
        hex.feed(out, offset + pos as u64, chunk)
    })?;
    show::hex_end(out, offset + window.len() as u64)?;
    Ok(0)
}

/// The pids that map or hold `entry`, leaving out this very process (which
/// may have the object open to look at it).
pub fn users(scan: &ProcessScan, entry: &PosixEntry) -> (Vec<i32>, Vec<i32>) {
    let me = std::process::id() as i32;
    let strip = |v: Vec<i32>| v.into_iter().filter(|&p| p != me).collect::<Vec<_>>();
    (
        strip(scan.posix_mappers(entry.metadata.inode)),
        strip(scan.posix_holders(entry.metadata.inode)),
    )
}

/// NATTCH and MAPPED-BY for a listing: `?` appended when some processes
/// could not be inspected (their mappers may be missing).
///
/// Only for a caller who is not root: what root cannot inspect (a sandbox
/// may close pid 1's entries even to root) is said once, in the footnote and
/// in JSON's `mapped_by_complete`, not in every row.
pub fn mapper_cells(scan: &ProcessScan, pids: &[i32]) -> (String, String) {
    if scan.denied() == 0 || rustix::process::geteuid().is_root() {
        (pids.len().to_string(), show::pid_list(pids))
    } else if pids.is_empty() {
        ("?".to_string(), "?".to_string())
    } else {
        (
            format!("{}+?", pids.len()),
            format!("{},?", show::pid_list(pids)),
        )
    }
}

/// The footnote under a listing made without seeing every process.
pub fn denied_note(scan: &ProcessScan) -> Option<String> {
    let n = scan.denied();
    if n == 0 {
        return None;
    }
    let who = if n == 1 {
        "1 process".to_string()
    } else {
        format!("{n} processes")
    };
    let hint = if rustix::process::geteuid().is_root() {
        "their /proc entries are closed even to root"
    } else {
        "run as root to see every mapper"
    };
    Some(format!("? {who} could not be inspected: {hint}"))
}

pub fn posix_json(scan: &ProcessScan, e: &PosixEntry) -> Value {
    let md = &e.metadata;
    let (mapped_by, open_by) = users(scan, e);
    json!({
        "kind": "posix",
        "name": e.name.as_str(),
        "path": e.name.path(),
        "file_type": e.file_type.as_str(),
        "size": md.size,
        "allocated": md.allocated,
        "mode": show::perms_json(md.mode),
        "uid": md.uid,
        "user": show::user(md.uid),
        "gid": md.gid,
        "group": show::group(md.gid),
        "atime": show::rfc3339(md.atime),
        "mtime": show::rfc3339(md.mtime),
        "ctime": show::rfc3339(md.ctime),
        "mapped_by": mapped_by,
        "open_by": open_by,
        // false when some processes could not be inspected (not root):
        // `mapped_by` and `open_by` may then miss some.
        "mapped_by_complete": scan.denied() == 0,
    })
}

pub fn print_json(out: &mut dyn Write, value: &Value) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

pub fn stat(out: &mut dyn Write, name: &str, json: bool) -> Result<u8> {
    if let Some(seg) = Target::parse(name)?.segment()? {
        return sysv_cmds::stat(out, &seg, json);
    }
    let entry = inventory::posix_object(name)?;
    let scan = ProcessScan::new();
    // A board or broadcast adds its own state (version, writer, subscribers).
    let extra = crate::board::stat_extra(name);
    if json {
        let mut value = posix_json(&scan, &entry);
        if let (Some(extra), Some(obj)) = (extra, value.as_object_mut()) {
            obj.extend(extra.json);
        }
        print_json(out, &value)?;
        return Ok(0);
    }
    let md = &entry.metadata;
    let (mapped_by, open_by) = users(&scan, &entry);
    let mut lines = vec![
        ("name", entry.name.to_string()),
        ("kind", "posix".to_string()),
        ("path", entry.name.path()),
        ("type", entry.file_type.as_str().to_string()),
        (
            "size",
            format!("{} ({})", md.size, shmkit::human_bytes(md.size)),
        ),
        ("allocated", shmkit::human_bytes(md.allocated)),
        ("mode", show::perms_json(md.mode)),
        ("owner", format!("{} ({})", show::user(md.uid), md.uid)),
        ("group", format!("{} ({})", show::group(md.gid), md.gid)),
        ("accessed", show::rfc3339(md.atime)),
        ("modified", show::rfc3339(md.mtime)),
        ("changed", show::rfc3339(md.ctime)),
        ("mapped by", mapper_cells(&scan, &mapped_by).1),
        ("open by", mapper_cells(&scan, &open_by).1),
    ];
    if let Some(extra) = extra {
        lines.extend(extra.lines);
    }
    if entry.file_type != FileType::Regular {
        lines.push((
            "note",
            "not a regular file: not a shared memory object".into(),
        ));
    }
    show::key_values(out, &lines)?;
    if let Some(note) = denied_note(&scan) {
        writeln!(out, "{note}")?;
    }
    Ok(0)
}

pub fn resize(name: &str, size: u64, force: bool) -> Result<u8> {
    if let Some(seg) = Target::parse(name)?.segment()? {
        bail!(Error::new(
            ErrorKind::InvalidArgument,
            "resize",
            format!("id:{}", seg.id()),
            "the size of a System V segment is fixed when it is created",
        ));
    }
    let obj = PosixObject::open(name)?;
    let current = obj.size()?;
    if size < current && !force {
        // Shrinking drops pages that mappers may touch: each such access is
        // SIGBUS in that process. Refuse what would crash someone.
        if let Some(kind) = shmkit::layout::peek_kind_of(&obj) {
            bail!(Error::new(
                ErrorKind::InvalidArgument,
                "resize",
                obj.name().as_str(),
                format!(
                    "it is a shmkit {}: shrinking it from {current} to {size} bytes would make every process that uses it die of SIGBUS (--force to do it anyway)",
                    kind.as_str()
                ),
            ));
        }
        let inode = obj.metadata()?.inode;
        let scan = ProcessScan::new();
        let me = std::process::id() as i32;
        let mappers: Vec<i32> = scan
            .posix_mappers(inode)
            .into_iter()
            .filter(|&p| p != me)
            .collect();
        if !mappers.is_empty() {
            bail!(Error::new(
                ErrorKind::InvalidArgument,
                "resize",
                obj.name().as_str(),
                format!(
                    "processes {} map it: shrinking it from {current} to {size} bytes would make their accesses past the new end die of SIGBUS (--force to do it anyway)",
                    show::pid_list(&mappers)
                ),
            ));
        }
    }
    obj.resize(size)?;
    Ok(0)
}

pub fn rm(names: &[String]) -> Result<u8> {
    let mut status = 0;
    for name in names {
        let removed = Target::parse(name).and_then(|target| match target.segment()? {
            // IPC_RMID: gone at the last detach.
            Some(seg) => seg.remove(),
            None => posix::unlink(name),
        });
        if let Err(e) = removed {
            eprintln!("shmkit: {e}");
            status = 1;
        }
    }
    Ok(status)
}
