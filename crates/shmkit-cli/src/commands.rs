//! One function per verb: call the library, format what it returns.

use std::io::{Read, Write};

use anyhow::{bail, Result};
use serde_json::{json, Value};
use shmkit::inventory::{self, FileType, PosixEntry, ProcessScan};
use shmkit::posix::{self, MapOptions, OpenOptions, PosixObject};
use shmkit::{Error, ErrorKind};

use crate::show;

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

/// Maps `len` bytes at `offset` (default: to the end), checking the range
/// against the object's size with an error that names both.
fn map_range(
    obj: &PosixObject,
    offset: u64,
    len: Option<u64>,
    write: bool,
) -> Result<shmkit::Region> {
    let size = obj.size()?;
    if offset > size {
        bail!(Error::new(
            ErrorKind::InvalidArgument,
            if write { "write" } else { "read" },
            obj.name().as_str(),
            format!("offset {offset} is past the end of the object ({size} bytes)"),
        ));
    }
    let len = len.unwrap_or(size - offset);
    let mut opts = MapOptions::new();
    opts.offset(offset).len(usize::try_from(len)?).write(write);
    obj.map_with(&opts)
        .map_err(|e| {
            if e.kind() == ErrorKind::InvalidArgument {
                Error::new(
                    ErrorKind::InvalidArgument,
                    if write { "write" } else { "read" },
                    obj.name().as_str(),
                    format!(
                        "{len} bytes at offset {offset} exceed the object's size of {size} bytes"
                    ),
                )
            } else {
                e
            }
        })
        .map_err(Into::into)
}

pub fn write(name: &str, offset: u64, text: Option<String>) -> Result<u8> {
    let obj = PosixObject::open(name)?;
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
                    obj.name().as_str(),
                    format!(
                        "standard input holds more than the {room} bytes that fit at offset {offset} (object size {size})"
                    ),
                ));
            }
            data
        }
    };
    // Everything is checked before the first byte is written: a write that
    // does not fit changes nothing.
    let region = map_range(&obj, offset, Some(data.len() as u64), true)?;
    region.write_at(0, &data)?;
    Ok(0)
}

fn copy_out(
    region: &shmkit::Region,
    mut sink: impl FnMut(usize, &[u8]) -> std::io::Result<()>,
) -> Result<()> {
    let mut buf = vec![0u8; CHUNK.min(region.len())];
    let mut pos = 0;
    while pos < region.len() {
        let n = CHUNK.min(region.len() - pos);
        region.read_at(pos, &mut buf[..n])?;
        sink(pos, &buf[..n])?;
        pos += n;
    }
    Ok(())
}

pub fn cat(out: &mut dyn Write, name: &str, offset: u64, len: Option<u64>) -> Result<u8> {
    let obj = PosixObject::open_read_only(name)?;
    let region = map_range(&obj, offset, len, false)?;
    copy_out(&region, |_, bytes| out.write_all(bytes))?;
    Ok(0)
}

pub fn dump(out: &mut dyn Write, name: &str, offset: u64, len: Option<u64>) -> Result<u8> {
    let obj = PosixObject::open_read_only(name)?;
    let region = map_range(&obj, offset, len, false)?;
    // CHUNK is a multiple of 16, so chunked lines equal one dump of the range.
    copy_out(&region, |pos, chunk| {
        show::hex_lines(out, offset + pos as u64, chunk)
    })?;
    show::hex_end(out, offset + region.len() as u64)?;
    Ok(0)
}

/// The pids that map or hold `entry`, leaving out this very process (which
/// may have the object open to look at it).
fn users(scan: &ProcessScan, entry: &PosixEntry) -> (Vec<i32>, Vec<i32>) {
    let me = std::process::id() as i32;
    let strip = |v: Vec<i32>| v.into_iter().filter(|&p| p != me).collect::<Vec<_>>();
    (
        strip(scan.posix_mappers(entry.metadata.inode)),
        strip(scan.posix_holders(entry.metadata.inode)),
    )
}

fn posix_json(scan: &ProcessScan, e: &PosixEntry) -> Value {
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
    })
}

fn print_json(out: &mut dyn Write, value: &Value) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

pub fn stat(out: &mut dyn Write, name: &str, json: bool) -> Result<u8> {
    let entry = inventory::posix_object(name)?;
    let scan = ProcessScan::new();
    if json {
        print_json(out, &posix_json(&scan, &entry))?;
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
        ("mapped by", show::pid_list(&mapped_by)),
        ("open by", show::pid_list(&open_by)),
    ];
    if entry.file_type != FileType::Regular {
        lines.push((
            "note",
            "not a regular file: not a shared memory object".into(),
        ));
    }
    for (key, value) in lines {
        writeln!(out, "{:<10} {value}", format!("{key}:"))?;
    }
    Ok(0)
}

pub fn ls(out: &mut dyn Write, json: bool) -> Result<u8> {
    let entries = inventory::posix_objects()?;
    let scan = ProcessScan::new();
    if json {
        let all: Vec<Value> = entries.iter().map(|e| posix_json(&scan, e)).collect();
        print_json(out, &Value::Array(all))?;
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let md = &e.metadata;
            let (mapped_by, _) = users(&scan, e);
            let status = match e.file_type {
                FileType::Regular => "-".to_string(),
                other => format!("not an object ({})", other.as_str()),
            };
            vec![
                "posix".to_string(),
                e.name.to_string(),
                show::user(md.uid),
                show::perms(md.mode),
                md.size.to_string(),
                show::pid_list(&mapped_by),
                show::rfc3339(md.mtime),
                status,
            ]
        })
        .collect();
    show::table(
        out,
        &[
            "KIND",
            "NAME",
            "OWNER",
            "PERMS",
            "BYTES",
            "MAPPED BY",
            "MODIFIED",
            "STATUS",
        ],
        &rows,
    )?;
    Ok(0)
}

pub fn resize(name: &str, size: u64) -> Result<u8> {
    PosixObject::open(name)?.resize(size)?;
    Ok(0)
}

pub fn rm(names: &[String]) -> Result<u8> {
    let mut status = 0;
    for name in names {
        if let Err(e) = posix::unlink(name) {
            eprintln!("shmkit: {e}");
            status = 1;
        }
    }
    Ok(status)
}
