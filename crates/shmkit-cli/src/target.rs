//! What a verb acts on: a POSIX object or a System V segment, as the user
//! wrote it, and a mapped byte range of either with the one range check that
//! `cat`, `dump` and `write` share.

use shmkit::posix::{MapOptions, PosixObject};
use shmkit::sysv::{Key, Segment};
use shmkit::{Error, ErrorKind, Region, Result};

/// How targets are written; shown at the end of `shmkit --help`.
pub const HELP: &str = "\
TARGET is a POSIX object name, written `name` or `/name`, or a System V segment:
  id:SHMID   the segment with this id (the shmid column of `ipcs -m`): id:65538
  key:KEY    the segment with this key, hexadecimal with 0x as `ipcs -m` prints it
             (key:0x0000abcd) or decimal as /proc/sysvipc/shm does (key:4660)
A POSIX object whose name begins with `id:` or `key:` is written with its slash: /id:x.";

/// A command-line target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A POSIX object name, `name` or `/name` (the library validates it).
    Posix(String),
    /// `id:SHMID`: a System V segment by id.
    SysvId(i32),
    /// `key:KEY`: a System V segment by key.
    SysvKey(Key),
}

impl Target {
    /// Reads a target: `id:` and `key:` prefixes name System V segments,
    /// anything else is a POSIX object name.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`], naming the text, for an `id:` that is
    /// not a number from 0 up or a `key:` that is not a 32-bit number.
    pub fn parse(text: &str) -> Result<Target> {
        if let Some(rest) = text.strip_prefix("id:") {
            return rest
                .parse::<i32>()
                .ok()
                .filter(|id| *id >= 0)
                .map(Target::SysvId)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidArgument,
                        "parse",
                        text,
                        "a segment id is a decimal number from 0 up, the shmid that `ipcs -m` \
                         prints (id:65538); write /id:... for a POSIX object of that name",
                    )
                });
        }
        if let Some(rest) = text.strip_prefix("key:") {
            return Key::parse(rest).map(Target::SysvKey).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    "parse",
                    text,
                    "a key is a 32-bit number, hexadecimal with 0x (key:0x0000abcd) or decimal \
                     (key:4660, key:-559038737); write /key:... for a POSIX object of that name",
                )
            });
        }
        Ok(Target::Posix(text.to_string()))
    }

    /// The System V segment this target names, checked to exist; `None` for
    /// a POSIX name.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] if no segment has the id or key.
    pub fn segment(&self) -> Result<Option<Segment>> {
        match *self {
            Target::Posix(_) => Ok(None),
            Target::SysvId(id) => Segment::from_id(id).map(Some),
            Target::SysvKey(key) => Segment::open(key).map(Some),
        }
    }
}

/// Checks that `create NAME` is meant for a POSIX object: a bare `id:…` or
/// `key:…` names a segment everywhere else, so creating a POSIX object by
/// that spelling would make one that no other verb reaches that way.
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] naming the text and both ways out.
pub fn check_creatable(name: &str) -> anyhow::Result<()> {
    if name.starts_with("id:") || name.starts_with("key:") {
        anyhow::bail!(Error::new(
            ErrorKind::InvalidArgument,
            "create",
            name,
            format!(
                "id:... and key:... name System V segments: create one with --sysv \
                 (--key, --ftok or --private), or write /{name} for a POSIX object of that name"
            ),
        ));
    }
    Ok(())
}

/// An open target: a POSIX object (a descriptor) or a segment (an id).
#[derive(Debug)]
pub enum Opened {
    /// A POSIX object, opened read-only or read-write.
    Posix(PosixObject),
    /// A System V segment; access is checked when it is attached.
    Sysv(Segment),
}

impl Opened {
    /// Opens `target`, for writing if `write`.
    ///
    /// # Errors
    /// The library's: no such object or segment, permission denied, a bad name.
    pub fn open(target: &Target, write: bool) -> Result<Opened> {
        match target {
            Target::Posix(name) if write => PosixObject::open(name).map(Opened::Posix),
            Target::Posix(name) => PosixObject::open_read_only(name).map(Opened::Posix),
            sysv => Ok(Opened::Sysv(
                sysv.segment()?.expect("a System V target names a segment"),
            )),
        }
    }

    /// How messages name it: `/name` or `id:5`.
    pub fn label(&self) -> String {
        match self {
            Opened::Posix(obj) => obj.name().as_str().to_string(),
            Opened::Sysv(seg) => format!("id:{}", seg.id()),
        }
    }

    /// What it is, for messages: `object` or `segment`.
    pub fn noun(&self) -> &'static str {
        match self {
            Opened::Posix(_) => "object",
            Opened::Sysv(_) => "segment",
        }
    }

    /// The size in bytes (`fstat`, or `IPC_STAT`).
    pub fn size(&self) -> Result<u64> {
        match self {
            Opened::Posix(obj) => obj.size(),
            Opened::Sysv(seg) => seg.size(),
        }
    }

    /// Maps `len` bytes at `offset` (`None`: to the end) for `op` (`"read"`
    /// or `"write"`), writable if `write`. A POSIX object maps just that
    /// range; a segment is attached whole (`shmat` takes no offset), read-only
    /// unless `write`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if the range does not lie inside the
    /// object or segment (see [`check_range`]); the library's errors from
    /// mapping or attaching.
    pub fn window(
        &self,
        op: &'static str,
        offset: u64,
        len: Option<u64>,
        write: bool,
    ) -> Result<Window> {
        match self {
            Opened::Posix(obj) => {
                let size = obj.size()?;
                let len = check_range(op, &self.label(), self.noun(), size, offset, len)?;
                let len = to_usize(op, &self.label(), len)?;
                if !write {
                    // Read with pread, never through a mapping: an object
                    // another program sized with ftruncate is sparse, and a
                    // mapped read of a hole on a full /dev/shm is SIGBUS.
                    return Ok(Window {
                        access: Access::File(obj.try_clone()?, offset),
                        start: 0,
                        len,
                    });
                }
                let mut opts = MapOptions::new();
                opts.offset(offset).len(len).write(write);
                let region = obj.map_with(&opts)?;
                Ok(Window {
                    start: 0,
                    len: region.len(),
                    access: Access::Mapped(region),
                })
            }
            Opened::Sysv(seg) => {
                let region = if write {
                    seg.attach()?
                } else {
                    seg.attach_read_only()?
                };
                // The attached length is the segment's size: no IPC_STAT
                // (and no read permission beyond the attach's) needed.
                let size = region.len() as u64;
                let len = check_range(op, &self.label(), self.noun(), size, offset, len)?;
                // Both fit: they are at most the attached length.
                Ok(Window {
                    start: offset as usize,
                    len: len as usize,
                    access: Access::Mapped(region),
                })
            }
        }
    }
}

fn to_usize(op: &'static str, object: &str, n: u64) -> Result<usize> {
    usize::try_from(n).map_err(|_| {
        Error::new(
            ErrorKind::InvalidArgument,
            op,
            object,
            format!("{n} bytes do not fit in the address space"),
        )
    })
}

/// Checks that `len` bytes at `offset` (`None`: up to the end) lie inside
/// something of `size` bytes, and returns the length. Messages name the
/// object and say what does not fit, in the same words for objects and
/// segments (`noun`).
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] for an offset past the end or a range
/// that ends past it.
pub fn check_range(
    op: &'static str,
    object: &str,
    noun: &str,
    size: u64,
    offset: u64,
    len: Option<u64>,
) -> Result<u64> {
    if offset > size {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            op,
            object,
            format!("offset {offset} is past the end of the {noun} ({size} bytes)"),
        ));
    }
    let len = len.unwrap_or(size - offset);
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            op,
            object,
            format!("{len} bytes at offset {offset} exceed the {noun}'s size of {size} bytes"),
        ));
    }
    Ok(len)
}

/// A checked byte range of a mapping, or of a POSIX object read with
/// `pread`: `len` bytes from `start`. Positions passed to its methods count
/// from the range's first byte.
#[derive(Debug)]
pub struct Window {
    access: Access,
    start: usize,
    len: usize,
}

#[derive(Debug)]
enum Access {
    /// A mapping (written through, or a System V segment).
    Mapped(Region),
    /// A POSIX object read with `pread` from this offset.
    File(PosixObject, u64),
}

impl Window {
    /// The number of bytes in the range.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Copies `buf.len()` bytes from `pos` (inside the range) out.
    pub fn read_at(&self, pos: usize, buf: &mut [u8]) -> Result<()> {
        self.check(pos, buf.len())?;
        match &self.access {
            Access::Mapped(region) => region.read_at(self.start + pos, buf),
            Access::File(obj, offset) => obj.read_at(offset + pos as u64, buf),
        }
    }

    /// Copies `data` to the start of the range.
    pub fn write_all(&self, data: &[u8]) -> Result<()> {
        self.check(0, data.len())?;
        match &self.access {
            Access::Mapped(region) => region.write_at(self.start, data),
            Access::File(obj, _) => Err(Error::new(
                ErrorKind::ReadOnly,
                "write",
                obj.name().as_str(),
                "the range was opened for reading",
            )),
        }
    }

    fn object(&self) -> &str {
        match &self.access {
            Access::Mapped(region) => region.object(),
            Access::File(obj, _) => obj.name().as_str(),
        }
    }

    /// The region checks its own bounds; this keeps a caller inside the
    /// range it asked for.
    fn check(&self, pos: usize, len: usize) -> Result<()> {
        match pos.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::new(
                ErrorKind::InvalidArgument,
                "access",
                self.object(),
                format!(
                    "{len} bytes at {pos} are outside the {} bytes asked for",
                    self.len
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(Target::parse("id:5").unwrap(), Target::SysvId(5));
        assert_eq!(
            Target::parse("key:0x1234").unwrap(),
            Target::SysvKey(Key::new(0x1234))
        );
        assert_eq!(
            Target::parse("key:4660").unwrap(),
            Target::SysvKey(Key::new(0x1234))
        );
        assert_eq!(
            Target::parse("key:-559038737").unwrap(),
            Target::SysvKey(Key::new(0xdeadbeef_u32 as i32))
        );
        for posix in ["jobs", "/jobs", "/id:5", "/key:1", "ID:5", "idx:5"] {
            assert_eq!(
                Target::parse(posix).unwrap(),
                Target::Posix(posix.to_string())
            );
        }
        for bad in ["id:", "id:abc", "id:-1", "id:99999999999", "key:zz", "key:"] {
            let e = Target::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
            assert!(
                e.to_string().starts_with(&format!("cannot parse {bad}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn ranges() {
        let check = |offset, len| check_range("read", "/x", "object", 200, offset, len);
        assert_eq!(check(0, None).unwrap(), 200);
        assert_eq!(check(200, None).unwrap(), 0);
        assert_eq!(check(100, Some(100)).unwrap(), 100);
        assert_eq!(
            check(201, None).unwrap_err().to_string(),
            "cannot read /x: offset 201 is past the end of the object (200 bytes)"
        );
        assert_eq!(
            check(198, Some(3)).unwrap_err().to_string(),
            "cannot read /x: 3 bytes at offset 198 exceed the object's size of 200 bytes"
        );
        assert!(check(1, Some(u64::MAX)).is_err());
    }
}
