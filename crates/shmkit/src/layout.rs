//! The header every structured shmkit object (a channel, a board) starts with.
//!
//! ```text
//! offset  field          written                     checked on open
//!  0      magic          by the creator, once        must be MAGIC
//!  8      version        by the creator, once        must be VERSION
//! 12      kind           by the creator, once        must be the kind asked for
//! 16      state          INITIALISING → READY        waited for (Acquire)
//! 20      header_size    by the creator, once        must match
//! 24      total_size     by the creator, once        must fit the mapping
//! 32      creator_pid    by the creator, once        for "is the creator alive"
//! 40      creator_start  by the creator, once        (pid, start time) identity
//! 48      created_unix   by the creator, once        shown by `stat`
//! ```
//!
//! Creation: `shm_open(O_CREAT|O_EXCL)` → reserve space → write everything →
//! store `READY` with Release. Opening: map → wait for `READY` with Acquire
//! (bounded; a dead creator means a stale object) → check every field against
//! what the opener expects and what the mapping can hold. Nothing read from
//! the header is trusted before those checks pass.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorKind, Result};
use crate::posix::PosixObject;
use crate::process::ProcessId;
use crate::region::Region;

/// "SHMKIT\0\x01" read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMKIT\0\x01");
/// The format version of every structured object this build writes.
pub const VERSION: u32 = 1;

/// The header's length in bytes; the object's own fields start after it.
pub const HEADER_SIZE: usize = 64;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_KIND: usize = 12;
const OFF_STATE: usize = 16;
const OFF_HEADER_SIZE: usize = 20;
const OFF_TOTAL_SIZE: usize = 24;
const OFF_CREATOR_PID: usize = 32;
const OFF_CREATOR_START: usize = 40;
const OFF_CREATED: usize = 48;

const STATE_INITIALISING: u32 = 0;
const STATE_READY: u32 = 1;

/// What a structured object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    /// A producer/consumer channel.
    Channel = 1,
    /// A latest-value blackboard.
    Board = 2,
    /// A broadcast ring.
    Broadcast = 3,
    /// A blackboard of named keys, each its own value (`board::KeyedBoard`).
    KeyedBoard = 4,
}

impl Kind {
    fn from_u32(v: u32) -> Option<Kind> {
        match v {
            1 => Some(Kind::Channel),
            2 => Some(Kind::Board),
            3 => Some(Kind::Broadcast),
            4 => Some(Kind::KeyedBoard),
            _ => None,
        }
    }

    /// A word for messages: `channel`, `board`, `broadcast`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Channel => "channel",
            Kind::Board => "board",
            Kind::Broadcast => "broadcast",
            Kind::KeyedBoard => "keyed-board",
        }
    }
}

/// What the header of an opened object says, after checking.
#[derive(Debug, Clone, Copy)]
pub struct HeaderInfo {
    /// The object's kind.
    pub kind: Kind,
    /// Bytes the creator laid out (≤ the mapping).
    pub total_size: u64,
    /// The process that created it.
    pub creator: ProcessId,
    /// When it was created.
    pub created: SystemTime,
}

fn word64(region: &Region, off: usize) -> Result<&AtomicU64> {
    region.atomic_u64(off)
}

fn word32(region: &Region, off: usize) -> Result<&AtomicU32> {
    region.atomic_u32(off)
}

/// Writes a header in state INITIALISING at the start of a fresh, zeroed,
/// writable region of `total_size` bytes.
pub fn write_initialising(region: &Region, kind: Kind, total_size: u64) -> Result<()> {
    let me = ProcessId::current();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Relaxed everywhere: nobody trusts these before the Release store of
    // READY in `publish_ready`, which orders them all.
    word32(region, OFF_STATE)?.store(STATE_INITIALISING, Ordering::Relaxed);
    word64(region, OFF_MAGIC)?.store(MAGIC, Ordering::Relaxed);
    word32(region, OFF_VERSION)?.store(VERSION, Ordering::Relaxed);
    word32(region, OFF_KIND)?.store(kind as u32, Ordering::Relaxed);
    word32(region, OFF_HEADER_SIZE)?.store(HEADER_SIZE as u32, Ordering::Relaxed);
    word64(region, OFF_TOTAL_SIZE)?.store(total_size, Ordering::Relaxed);
    word64(region, OFF_CREATOR_PID)?.store(u64::from(me.pid), Ordering::Relaxed);
    word64(region, OFF_CREATOR_START)?.store(me.start_time, Ordering::Relaxed);
    word64(region, OFF_CREATED)?.store(now, Ordering::Relaxed);
    Ok(())
}

/// Marks the object ready: everything the creator wrote before becomes
/// visible to openers that see READY.
pub fn publish_ready(region: &Region) -> Result<()> {
    // Release: pairs with the Acquire load in `wait_ready`.
    word32(region, OFF_STATE)?.store(STATE_READY, Ordering::Release);
    Ok(())
}

fn corrupt(region: &Region, why: String) -> Error {
    Error::new(ErrorKind::Corrupt, "open", region.object(), why)
}

/// Waits (at most `timeout`) until the object's creator has published it,
/// then checks the header against `kind` and the mapping.
///
/// # Errors
/// [`ErrorKind::Corrupt`] for a header that is not shmkit's, of another
/// kind or version, or larger than the mapping; [`ErrorKind::Disconnected`]
/// if the creator died before finishing (a stale object: remove it);
/// [`ErrorKind::TimedOut`] if a live creator did not finish in time.
pub fn wait_ready(region: &Region, kind: Kind, timeout: Duration) -> Result<HeaderInfo> {
    if region.len() < HEADER_SIZE {
        return Err(corrupt(
            region,
            format!(
                "{} bytes is too small to be a shmkit {} (header alone is {HEADER_SIZE})",
                region.len(),
                kind.as_str()
            ),
        ));
    }
    let deadline = Instant::now() + timeout;
    loop {
        // Acquire: pairs with the Release store in `publish_ready`. A load
        // (not `atomic_u32`): readers may map the object read-only.
        let s = region.load_u32(OFF_STATE, Ordering::Acquire)?;
        if s == STATE_READY {
            break;
        }
        if s != STATE_INITIALISING {
            return Err(corrupt(region, format!("unknown header state {s}")));
        }
        let creator = creator_of(region)?;
        if creator.pid != 0 && !creator.is_alive() {
            return Err(Error::new(
                ErrorKind::Disconnected,
                "open",
                region.object(),
                format!(
                    "its creator (pid {}) died before finishing it: a stale object, remove it",
                    creator.pid
                ),
            ));
        }
        if Instant::now() >= deadline {
            if creator.pid == 0 && region.load_u64(OFF_MAGIC, Ordering::Relaxed)? != MAGIC {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "open",
                    region.object(),
                    format!("it holds no shmkit header: not a shmkit {}", kind.as_str()),
                ));
            }
            return Err(Error::new(
                ErrorKind::TimedOut,
                "open",
                region.object(),
                format!(
                    "its creator (pid {}) has not finished initialising it",
                    creator.pid
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let magic = region.load_u64(OFF_MAGIC, Ordering::Relaxed)?;
    if magic != MAGIC {
        return Err(corrupt(
            region,
            format!("not a shmkit object (magic {magic:#018x})"),
        ));
    }
    let version = region.load_u32(OFF_VERSION, Ordering::Relaxed)?;
    if version != VERSION {
        return Err(corrupt(
            region,
            format!("format version {version}; this build reads version {VERSION}"),
        ));
    }
    let found = region.load_u32(OFF_KIND, Ordering::Relaxed)?;
    match Kind::from_u32(found) {
        Some(k) if k == kind => {}
        Some(k) => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "open",
                region.object(),
                format!("it is a shmkit {}, not a {}", k.as_str(), kind.as_str()),
            ))
        }
        None => return Err(corrupt(region, format!("unknown object kind {found}"))),
    }
    let header_size = region.load_u32(OFF_HEADER_SIZE, Ordering::Relaxed)?;
    if header_size as usize != HEADER_SIZE {
        return Err(corrupt(
            region,
            format!("header size {header_size}, expected {HEADER_SIZE}"),
        ));
    }
    let total_size = region.load_u64(OFF_TOTAL_SIZE, Ordering::Relaxed)?;
    if total_size > region.len() as u64 || total_size < HEADER_SIZE as u64 {
        return Err(corrupt(
            region,
            format!(
                "its header claims {total_size} bytes but {} are mapped",
                region.len()
            ),
        ));
    }
    let created = UNIX_EPOCH
        + Duration::from_secs(
            region
                .load_u64(OFF_CREATED, Ordering::Relaxed)?
                .min(1 << 40),
        );
    Ok(HeaderInfo {
        kind,
        total_size,
        creator: creator_of(region)?,
        created,
    })
}

fn creator_of(region: &Region) -> Result<ProcessId> {
    Ok(ProcessId {
        pid: region.load_u64(OFF_CREATOR_PID, Ordering::Relaxed)? as u32,
        start_time: region.load_u64(OFF_CREATOR_START, Ordering::Relaxed)?,
    })
}

/// Reads just enough of a mapping to tell whether it holds a shmkit object,
/// and which kind: for listings, never for trusting the rest.
pub fn peek_kind(region: &Region) -> Option<Kind> {
    if region.len() < HEADER_SIZE {
        return None;
    }
    let magic = region.load_u64(OFF_MAGIC, Ordering::Acquire).ok()?;
    let kind = region.load_u32(OFF_KIND, Ordering::Relaxed).ok()?;
    (magic == MAGIC).then(|| Kind::from_u32(kind)).flatten()
}

/// What a shmkit header says, read without mapping or writing anything:
/// for listings and stale detection, never for trusting the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPeek {
    /// The object's kind.
    pub kind: Kind,
    /// Whether the creator finished initialising it (state READY).
    pub ready: bool,
    /// The process that created it (pid 0 while a creator writes it).
    pub creator: ProcessId,
    /// When it was created, as the creator recorded it.
    pub created: SystemTime,
}

/// Reads an object's header with `pread` (never a mapping, so a sparse
/// object on a full `/dev/shm` cannot raise `SIGBUS`, and its mtime and
/// ctime stay as they are), if it holds a shmkit header.
pub fn peek_header_of(obj: &PosixObject) -> Option<HeaderPeek> {
    let mut header = [0u8; HEADER_SIZE];
    obj.read_at(0, &mut header).ok()?;
    let u64_at = |off: usize| header[off..off + 8].try_into().ok().map(u64::from_le_bytes);
    let u32_at = |off: usize| header[off..off + 4].try_into().ok().map(u32::from_le_bytes);
    if u64_at(OFF_MAGIC)? != MAGIC {
        return None;
    }
    let kind = Kind::from_u32(u32_at(OFF_KIND)?)?;
    Some(HeaderPeek {
        kind,
        ready: u32_at(OFF_STATE)? == STATE_READY,
        creator: ProcessId {
            pid: u64_at(OFF_CREATOR_PID)? as u32,
            start_time: u64_at(OFF_CREATOR_START)?,
        },
        created: UNIX_EPOCH + Duration::from_secs(u64_at(OFF_CREATED)?.min(1 << 40)),
    })
}

/// Reads just enough of an object, with `pread` (see [`peek_header_of`]),
/// to tell whether it holds a shmkit object, and which kind.
pub fn peek_kind_of(obj: &PosixObject) -> Option<Kind> {
    peek_header_of(obj).map(|h| h.kind)
}

/// Whether the object's first bytes are something other than a shmkit
/// header or the zeros of one not yet written: a plain object, never to be
/// waited for. Read with `pread`.
pub(crate) fn holds_foreign_bytes(obj: &PosixObject) -> Result<bool> {
    let mut magic = [0u8; 8];
    if obj.size()? < magic.len() as u64 {
        return Ok(false);
    }
    obj.read_at(OFF_MAGIC as u64, &mut magic)?;
    let magic = u64::from_le_bytes(magic);
    Ok(magic != 0 && magic != MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_headers_open_and_wrong_ones_do_not() {
        let r = Region::anonymous(4096).unwrap();
        // Never initialised, no header at all: not a shmkit object.
        let e = wait_ready(&r, Kind::Channel, Duration::from_millis(5)).unwrap_err();
        assert!(
            e.to_string()
                .contains("no shmkit header: not a shmkit channel"),
            "{e}"
        );
        write_initialising(&r, Kind::Channel, 4096).unwrap();
        publish_ready(&r).unwrap();
        let info = wait_ready(&r, Kind::Channel, Duration::ZERO).unwrap();
        assert_eq!(info.creator, ProcessId::current());
        assert_eq!(peek_kind(&r), Some(Kind::Channel));
        let e = wait_ready(&r, Kind::Board, Duration::ZERO).unwrap_err();
        assert!(
            e.to_string()
                .contains("it is a shmkit channel, not a board"),
            "{e}"
        );
        r.atomic_u64(OFF_TOTAL_SIZE)
            .unwrap()
            .store(1 << 20, Ordering::Relaxed);
        let e = wait_ready(&r, Kind::Channel, Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        r.atomic_u32(OFF_VERSION)
            .unwrap()
            .store(9, Ordering::Relaxed);
        let e = wait_ready(&r, Kind::Channel, Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("format version 9"), "{e}");
    }

    #[test]
    fn a_dead_creator_means_a_stale_object() {
        let r = Region::anonymous(4096).unwrap();
        write_initialising(&r, Kind::Board, 4096).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        r.atomic_u64(OFF_CREATOR_PID)
            .unwrap()
            .store(u64::from(pid), Ordering::Relaxed);
        let e = wait_ready(&r, Kind::Board, Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected);
        assert!(e.to_string().contains("died before finishing it"), "{e}");
    }
}
