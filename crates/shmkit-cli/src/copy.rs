//! `shmkit cp SRC DST` and `shmkit create NAME --from FILE`: bytes between
//! a file (or standard input/output) and a shared memory object.
//!
//! Nothing is left half-written: every size is checked, and the source is
//! read whole (at most what the destination holds, plus one byte to tell
//! it is too long), before the first byte reaches the destination; an
//! object made for the copy is removed again if the copy fails, and a file
//! is written under a temporary name and renamed into place.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use shmkit::posix::{self, OpenOptions};
use shmkit::{Error, ErrorKind};

use crate::commands::refuse_structured;
use crate::target::{Opened, Target};

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
enum Side {
    /// A shared memory object or segment.
    Shm(String),
    /// A file path.
    File(PathBuf),
    /// `-`: standard input or output.
    Std,
}

/// Which side is which: `-` is standard input/output; `shm:NAME`, `id:…`,
/// `key:…` and a name with one leading slash and no other (`/jobs`) are
/// shared memory; any other path is a file (`./jobs`, `/tmp/jobs`, `jobs`).
fn side(text: &str) -> Side {
    if text == "-" {
        return Side::Std;
    }
    if let Some(name) = text.strip_prefix("shm:") {
        return Side::Shm(name.to_string());
    }
    if text.starts_with("id:") || text.starts_with("key:") {
        return Side::Shm(text.to_string());
    }
    match text.strip_prefix('/') {
        Some(rest) if !rest.is_empty() && !rest.contains('/') => Side::Shm(text.to_string()),
        _ => Side::File(PathBuf::from(text)),
    }
}

pub const HELP: &str = "\
SRC and DST: one is shared memory, the other a file or - (standard input or output):
  /name       a POSIX object (one leading slash, no other)
  shm:name    a POSIX object, whatever the name looks like
  id:SHMID    a System V segment by id; key:KEY by key
  ./name, dir/name, /tmp/name, -    a file, or standard input/output

Copying in writes the file's bytes from offset 0: the object must hold them
(`shmkit resize` first), bytes past them stay; an absent object is created
with the file's size. A shmkit channel, board or broadcast is refused unless
--force. Nothing is written until the whole file is read and fits.

Examples:
  shmkit cp model.bin /weights          create /weights from a file
  shmkit cp /weights ./weights.bak      back it up
  shmkit cp id:65538 - | xxd | head     a segment's bytes to a pipe
  cat config.json | shmkit cp - /config";

/// `shmkit cp SRC DST`.
pub fn cp(src: &str, dst: &str, mode: u32, force: bool) -> Result<u8> {
    match (side(src), side(dst)) {
        (Side::File(path), Side::Shm(name)) => {
            copy_in(&mut open_file(&path)?, &path.display().to_string(), &name, mode, force)
        }
        (Side::Std, Side::Shm(name)) => {
            copy_in(&mut std::io::stdin().lock(), "standard input", &name, mode, force)
        }
        (Side::Shm(name), Side::File(path)) => copy_to_file(&name, &path),
        (Side::Shm(name), Side::Std) => {
            let data = read_object(&name)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&data)?;
            out.flush()?;
            Ok(0)
        }
        (Side::Shm(_), Side::Shm(_)) => bail!(
            "{src} and {dst} are both shared memory: one side of `shmkit cp` is a file (write ./{} for a file in this directory)",
            dst.trim_start_matches('/')
        ),
        _ => bail!(
            "neither {src} nor {dst} is shared memory: name the object `/name` or `shm:name` (or id:SHMID, key:KEY)"
        ),
    }
}

fn open_file(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("cannot open {}", path.display()))
}

/// Reads `input` whole if it holds at most `limit` bytes (None if more:
/// nothing has been written anywhere then).
fn read_limited(input: &mut dyn Read, what: &str, limit: u64) -> Result<Option<Vec<u8>>> {
    let mut data = Vec::new();
    input
        .take(limit.saturating_add(1))
        .read_to_end(&mut data)
        .with_context(|| format!("cannot read {what}"))?;
    Ok((data.len() as u64 <= limit).then_some(data))
}

/// The bytes of `input` into the object `name` (created with the input's
/// size if absent).
fn copy_in(input: &mut dyn Read, what: &str, name: &str, mode: u32, force: bool) -> Result<u8> {
    let target = Target::parse(name)?;
    match Opened::open(&target, true) {
        Ok(obj) => {
            refuse_structured(&obj, "copy into", force)?;
            let size = obj.size()?;
            let Some(data) = read_limited(input, what, size)? else {
                bail!(Error::new(
                    ErrorKind::InvalidArgument,
                    "copy into",
                    obj.label(),
                    format!(
                        "{what} holds more than the object's {size} bytes; nothing was written (grow it with `shmkit resize {} SIZE`)",
                        obj.label()
                    ),
                ));
            };
            obj.window("copy into", 0, Some(data.len() as u64), true)?
                .write_all(&data)?;
            Ok(0)
        }
        Err(e) if e.kind() == ErrorKind::NotFound && matches!(target, Target::Posix(_)) => {
            crate::target::check_creatable(name)?;
            let mut data = Vec::new();
            input
                .read_to_end(&mut data)
                .with_context(|| format!("cannot read {what}"))?;
            create_from(name, &data, data.len() as u64, mode)?;
            Ok(0)
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates the object `name` (it must not exist) of `size` bytes (at
/// least `data`'s), its space reserved, holding `data` from offset 0;
/// removes it again if writing fails.
fn create_from(name: &str, data: &[u8], size: u64, mode: u32) -> Result<()> {
    let mut opts = OpenOptions::new();
    opts.size(size).mode(mode).create_new(true);
    let obj = opts.open(name)?;
    let written = (|| -> Result<()> {
        let opened = Opened::Posix(obj);
        opened
            .window("copy into", 0, Some(data.len() as u64), true)?
            .write_all(data)?;
        Ok(())
    })();
    if let Err(e) = written {
        // A half-made object must not pass for a copy.
        let _ = posix::unlink(name);
        return Err(e.context(format!("{name} was removed again")));
    }
    Ok(())
}

/// `create NAME --from FILE [--size SIZE]`: the object holds the file's
/// bytes, and is `size` bytes long if given (at least the file's).
pub fn create_from_file(name: &str, path: &Path, size: Option<u64>, mode: u32) -> Result<u8> {
    let mut file = open_file(path)?;
    let limit = size.unwrap_or(u64::MAX);
    let what = path.display().to_string();
    let Some(data) = read_limited(&mut file, &what, limit)? else {
        bail!(Error::new(
            ErrorKind::InvalidArgument,
            "create",
            name,
            format!("{what} holds more than the {limit} bytes of --size; nothing was created"),
        ));
    };
    create_from(name, &data, size.unwrap_or(data.len() as u64), mode)?;
    Ok(0)
}

/// The whole object or segment `name`, copied out.
fn read_object(name: &str) -> Result<Vec<u8>> {
    let window = Opened::open(&Target::parse(name)?, false)?.window("read", 0, None, false)?;
    let mut data = vec![0u8; window.len()];
    window.read_at(0, &mut data)?;
    Ok(data)
}

/// The object's bytes into `path`, through a temporary file in the same
/// directory renamed into place: a failed copy leaves no half file.
fn copy_to_file(name: &str, path: &Path) -> Result<u8> {
    let data = read_object(name)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let temporary = dir.join(format!(
        ".{}.shmkit-cp.{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&temporary)?;
        f.write_all(&data)?;
        f.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_are_told_apart() {
        assert_eq!(side("-"), Side::Std);
        assert_eq!(side("/jobs"), Side::Shm("/jobs".into()));
        assert_eq!(side("shm:jobs"), Side::Shm("jobs".into()));
        assert_eq!(side("id:7"), Side::Shm("id:7".into()));
        assert_eq!(side("key:0x1"), Side::Shm("key:0x1".into()));
        assert_eq!(side("/tmp/jobs"), Side::File("/tmp/jobs".into()));
        assert_eq!(side("./jobs"), Side::File("./jobs".into()));
        assert_eq!(side("jobs"), Side::File("jobs".into()));
        assert_eq!(side("/"), Side::File("/".into()));
    }
}
