//! Keyed blackboards: a fixed set of named keys, each holding its own value
//! of up to its own maximum size, with its own sequence lock, version,
//! writer and bell. [`KeyedBoard`], [`KeyWriter`].
//!
//! Each key is a board of its own inside one object (the double-buffered
//! sequence lock of the `seqlock` module, model-checked with loom), so:
//! - **one writer per key**, not per board: a process may write `pose`
//!   while another writes `status` ([`KeyedBoard::writer`] claims one key's
//!   writer identity word; "key pose of board has a live writer pid N"
//!   while its writer lives; a dead one is taken over, per key, and a write
//!   it left half-done hides nothing);
//! - **readers never wait and never see a torn value**, one key
//!   ([`KeyedBoard::read`]) or a **consistent snapshot** of several
//!   ([`KeyedBoard::snapshot`]): values that were all the latest at one
//!   instant (each key is copied, then every key's version is checked
//!   again; a key written meanwhile makes the snapshot start over);
//! - **watching one key** ([`KeyedBoard::wait_for_change`]) sleeps on that
//!   key's bell: writes to other keys never wake it.
//!
//! Against iceoryx2's blackboard (0.9/0.10: a key set fixed at creation,
//! each key a typed value with a default; one writer for the whole
//! blackboard; readers with entry handles that copy a value and its
//! generation counter and never block the writer; an event id per entry
//! for its separate event service): the key set, the versions (its
//! generation counters) and the non-blocking readers are here too; added
//! are a writer per key with per-key crash takeover, a snapshot consistent
//! across keys, and watching one key built in (its own bell, no event
//! service to wire). Not here: typed values with defaults (values are
//! bytes, version 0 is empty) and writing in place.
//!
//! ```text
//! offset              contents
//! 0                   object header (magic, version, kind, ready flag, creator)
//! 64                  parameters: key count, entry size, where the slots start
//! 128 + 256 k         key k: name (length, 48 bytes), maximum size, slot
//!                     offset and size, writer identity word, claims;
//!                     +128 its sequence word (own line); +192 its bell
//! slots               key k's two slots: each a length word, then the
//!                     value as 64-bit words
//! ```
//!
//! Everything read back from the header is checked on open against the
//! layout the key list implies (offsets recomputed, names unique, valid
//! UTF-8, at most [`MAX_KEY_NAME`] bytes).

use std::mem::{align_of, offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::seqlock::{self, ReadError, SeqlockWords};
use super::shared::slot_words;
use super::{WriterInfo, READ_PATIENCE};
use crate::bell::Bell;
use crate::error::{Error, ErrorKind, Result};
use crate::layout::{Kind, HEADER_SIZE};
use crate::posix::ShmName;
use crate::region::Region;
use crate::shared_object::{self, Claim};

/// The longest key name, in bytes.
pub const MAX_KEY_NAME: usize = 48;
/// The most keys one board holds.
pub const MAX_KEYS: usize = 4096;
/// The largest value of one key, in bytes.
pub const MAX_KEY_SIZE: usize = 1 << 26;

/// The board's parameters, right after the common header.
#[repr(C)]
struct Control {
    /// How many keys (written once by the creator).
    keys: AtomicU64,
    /// Bytes per key entry (written once).
    entry_size: AtomicU64,
    /// Offset of the first key's slots (written once).
    slots_offset: AtomicU64,
    _pad: [AtomicU64; 5],
}

/// One key's entry. Atomics only, so a shared reference over memory other
/// processes write is sound.
#[repr(C)]
struct Entry {
    /// Bytes of the name (written once).
    name_len: AtomicU64,
    /// The name's bytes, 8 to a word (written once).
    name: [AtomicU64; MAX_KEY_NAME / 8],
    /// Largest value in bytes (written once).
    max_size: AtomicU64,
    /// Offset of the key's slot 0 from the start of the object (written
    /// once); slot 1 follows it.
    slot_offset: AtomicU64,
    /// Bytes per slot (written once).
    slot_size: AtomicU64,
    /// The key's writer identity word (pid | start time), 0 when none.
    writer: AtomicU64,
    /// How many times a writer claimed the key (statistic).
    claims: AtomicU64,
    _pad0: [AtomicU64; 4],
    /// The key's sequence word (the `seqlock` module).
    seq: AtomicU64,
    _pad1: [AtomicU64; 7],
    /// Bumped after every write of this key; its watchers sleep on it.
    bell: Bell,
    _pad2: [AtomicU32; 14],
}

const CONTROL_OFFSET: usize = HEADER_SIZE;
const ENTRIES_OFFSET: usize = CONTROL_OFFSET + size_of::<Control>();
const ENTRY_SIZE: usize = size_of::<Entry>();
/// A slot: its length word, then the value's words (as a plain board's).
const SLOT_HEADER: usize = 8;

const _: () = {
    assert!(align_of::<Control>() == 8 && align_of::<Entry>() == 8);
    assert!(ENTRIES_OFFSET == 128);
    assert!(ENTRY_SIZE == 256);
    // The sequence word and the bell each on a line of their own.
    assert!(offset_of!(Entry, seq) == 128);
    assert!(offset_of!(Entry, bell) == 192);
};

/// One key as the layout has it (checked on open).
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyLayout {
    name: String,
    max_size: u64,
    slot_offset: u64,
    slot_size: u64,
}

/// Where every key's slots go, for keys of these maximum sizes; and the
/// object's total size.
fn place(keys: &[(String, u64)]) -> std::result::Result<(Vec<KeyLayout>, u64, u64), String> {
    if keys.is_empty() || keys.len() > MAX_KEYS {
        return Err(format!(
            "{} keys; a keyed board has 1 to {MAX_KEYS}",
            keys.len()
        ));
    }
    let slots_offset = (ENTRIES_OFFSET + keys.len() * ENTRY_SIZE) as u64;
    let mut at = slots_offset;
    let mut out = Vec::with_capacity(keys.len());
    for (i, (name, max_size)) in keys.iter().enumerate() {
        check_key_name(name)?;
        if keys[..i].iter().any(|(other, _)| other == name) {
            return Err(format!("key {name:?} is given twice"));
        }
        if *max_size == 0 || *max_size > MAX_KEY_SIZE as u64 {
            return Err(format!(
                "key {name:?}: a maximum size of {max_size} bytes is not from 1 to {MAX_KEY_SIZE}"
            ));
        }
        let slot_size = (SLOT_HEADER as u64 + max_size.next_multiple_of(8)).next_multiple_of(64);
        out.push(KeyLayout {
            name: name.clone(),
            max_size: *max_size,
            slot_offset: at,
            slot_size,
        });
        at += 2 * slot_size;
    }
    Ok((out, slots_offset, at))
}

fn check_key_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > MAX_KEY_NAME {
        return Err(format!(
            "key name {name:?} is not 1 to {MAX_KEY_NAME} bytes"
        ));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(format!("key name {name:?} holds a control character"));
    }
    Ok(())
}

/// How to create a keyed board: its keys, each with its maximum size.
#[derive(Debug, Clone)]
pub struct KeyedBoardOptions {
    keys: Vec<(String, u64)>,
    mode: u32,
}

impl Default for KeyedBoardOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyedBoardOptions {
    /// No keys yet, mode 0600.
    pub fn new() -> Self {
        KeyedBoardOptions {
            keys: Vec::new(),
            mode: 0o600,
        }
    }

    /// Adds key `name` holding values of up to `max_size` bytes (keys keep
    /// the order they are added in).
    pub fn key(&mut self, name: &str, max_size: usize) -> &mut Self {
        self.keys.push((name.to_owned(), max_size as u64));
        self
    }

    /// Permission bits of the object (default 0600).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }
}

/// The mapped board, shared by its handles.
struct Inner {
    _region: Region,
    name: ShmName,
    keys: Vec<KeyLayout>,
    /// `region`'s first byte; writable only if `writable`.
    base: *mut u8,
    writable: bool,
    total: u64,
}

// SAFETY: `base` points into `region`, which Inner owns and which is Send +
// Sync; every access through it is atomic (loads only when read-only).
unsafe impl Send for Inner {}
// SAFETY: as for Send.
unsafe impl Sync for Inner {}

impl Inner {
    fn entry(&self, k: usize) -> &Entry {
        // Checked in release builds: the layout depends on it.
        assert!(k < self.keys.len(), "key index out of range");
        // SAFETY: open checked that the mapping holds every entry
        // (ENTRIES_OFFSET + keys * ENTRY_SIZE <= slots_offset <= total <=
        // mapped length); entries are 8-aligned in a page-aligned mapping;
        // Entry is atomics only.
        unsafe {
            &*self
                .base
                .add(ENTRIES_OFFSET + k * ENTRY_SIZE)
                .cast::<Entry>()
        }
    }

    fn err(&self, kind: ErrorKind, op: &'static str, detail: impl Into<String>) -> Error {
        Error::new(kind, op, self.name.as_str(), detail)
    }

    fn index(&self, key: &str, op: &'static str) -> Result<usize> {
        self.keys.iter().position(|k| k.name == key).ok_or_else(|| {
            self.err(
                ErrorKind::NotFound,
                op,
                format!(
                    "it has no key {key:?} (keys: {})",
                    self.keys
                        .iter()
                        .map(|k| k.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }
}

/// One key's words, for the `seqlock` algorithm.
struct KeyWords<'a> {
    inner: &'a Inner,
    key: usize,
}

impl KeyWords<'_> {
    fn layout(&self) -> &KeyLayout {
        &self.inner.keys[self.key]
    }

    fn slot(&self, slot: usize) -> *mut u8 {
        assert!(slot < 2, "a key has two slots");
        let k = self.layout();
        // SAFETY: open checked slot_offset + 2 * slot_size <= total <=
        // mapped length for every key (the offsets are recomputed from the
        // key list and must match).
        unsafe {
            self.inner
                .base
                .add((k.slot_offset + slot as u64 * k.slot_size) as usize)
        }
    }
}

impl SeqlockWords for KeyWords<'_> {
    fn max_len(&self) -> u64 {
        self.layout().max_size
    }

    fn seq(&self) -> &AtomicU64 {
        &self.inner.entry(self.key).seq
    }

    fn len(&self, slot: usize) -> &AtomicU64 {
        // SAFETY: `slot` lies inside the mapping (see `slot`), which lives
        // as long as `self.inner`; slot offsets are multiples of 64 from an
        // 8-aligned start, each slot SLOT_HEADER + 8 * ceil(max_size / 8)
        // bytes or more (`place`, checked on open).
        unsafe { slot_words(self.slot(slot), self.layout().max_size).0 }
    }

    fn data(&self, slot: usize) -> &[AtomicU64] {
        // SAFETY: as in `len`.
        unsafe { slot_words(self.slot(slot), self.layout().max_size).1 }
    }
}

/// A keyed blackboard: a named shared memory object holding one value per
/// key, each key written by one process at a time and read by any number.
/// Cheap to clone; see the [module documentation](super).
///
/// Each key is a board of its own: one writer per key ([`writer`]:
/// "key K of board has a live writer pid N"; a dead writer is taken over
/// per key and a write it left half-done hides nothing), readers that never
/// wait and never see a torn value ([`read`]), a consistent snapshot of
/// several keys ([`snapshot`]: values that were all the latest at one
/// instant), and watching one key on its own bell ([`wait_for_change`]:
/// writes to other keys never wake it). The key set and each key's
/// maximum size are fixed at creation; on open the key table is checked
/// against the layout it implies (offsets recomputed, names unique, UTF-8,
/// at most [`MAX_KEY_NAME`] bytes).
///
/// [`writer`]: Self::writer
/// [`read`]: Self::read
/// [`snapshot`]: Self::snapshot
/// [`wait_for_change`]: Self::wait_for_change
#[derive(Clone)]
pub struct KeyedBoard {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KeyedBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedBoard")
            .field("name", &self.inner.name)
            .field("keys", &self.inner.keys.len())
            .finish()
    }
}

/// One key in [`KeyedBoard::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's name.
    pub name: String,
    /// Its version: how many writes completed (0: never written).
    pub version: u64,
    /// The current value's length in bytes.
    pub size: u64,
    /// Its largest value in bytes.
    pub max_size: u64,
    /// Its writer, if one holds the role (a dead one until taken over).
    pub writer: Option<WriterInfo>,
    /// Whether a write began and has not ended (its writer may have died).
    pub write_in_progress: bool,
    /// How many times a writer claimed the key.
    pub writer_claims: u64,
}

impl KeyedBoard {
    /// Creates the keyed board `name` with the keys of `options`; fails if
    /// it exists.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for no keys or more than
    /// [`MAX_KEYS`], a key name given twice, empty, longer than
    /// [`MAX_KEY_NAME`] bytes or with a control character, a maximum size
    /// of 0 or over [`MAX_KEY_SIZE`]; anything
    /// [`OpenOptions::open`](crate::OpenOptions::open) reports.
    pub fn create(name: &str, options: &KeyedBoardOptions) -> Result<KeyedBoard> {
        let (keys, slots_offset, total) = place(&options.keys)
            .map_err(|why| Error::new(ErrorKind::InvalidArgument, "create", name, why))?;
        let (name, region, _info) =
            shared_object::create(name, Kind::KeyedBoard, total, options.mode, |region| {
                // Relaxed: published by the Release store of READY that
                // follows. Everything else starts at zero: version 0, no
                // writer, idle bells.
                let at = |offset: usize| region.atomic_u64(offset);
                at(CONTROL_OFFSET + offset_of!(Control, keys))?
                    .store(keys.len() as u64, Ordering::Relaxed);
                at(CONTROL_OFFSET + offset_of!(Control, entry_size))?
                    .store(ENTRY_SIZE as u64, Ordering::Relaxed);
                at(CONTROL_OFFSET + offset_of!(Control, slots_offset))?
                    .store(slots_offset, Ordering::Relaxed);
                for (k, key) in keys.iter().enumerate() {
                    let e = ENTRIES_OFFSET + k * ENTRY_SIZE;
                    at(e + offset_of!(Entry, name_len))?
                        .store(key.name.len() as u64, Ordering::Relaxed);
                    let mut bytes = [0u8; MAX_KEY_NAME];
                    bytes[..key.name.len()].copy_from_slice(key.name.as_bytes());
                    for (w, chunk) in bytes.chunks_exact(8).enumerate() {
                        let word = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
                        at(e + offset_of!(Entry, name) + 8 * w)?.store(word, Ordering::Relaxed);
                    }
                    at(e + offset_of!(Entry, max_size))?.store(key.max_size, Ordering::Relaxed);
                    at(e + offset_of!(Entry, slot_offset))?
                        .store(key.slot_offset, Ordering::Relaxed);
                    at(e + offset_of!(Entry, slot_size))?.store(key.slot_size, Ordering::Relaxed);
                }
                Ok(())
            })?;
        Self::from_region(name, region, keys, total)
    }

    fn from_region(
        name: ShmName,
        region: Region,
        keys: Vec<KeyLayout>,
        total: u64,
    ) -> Result<KeyedBoard> {
        let writable = region.is_writable();
        let base = if writable {
            region.as_mut_ptr()?
        } else {
            region.as_ptr().cast_mut()
        };
        Ok(KeyedBoard {
            inner: Arc::new(Inner {
                _region: region,
                name,
                keys,
                base,
                writable,
                total,
            }),
        })
    }

    /// Opens the existing keyed board `name` (read-only when this process
    /// may not write it: reading and watching work, writing does not),
    /// checking its header and every key's layout.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`]; [`ErrorKind::InvalidArgument`] when it is
    /// another kind of object; [`ErrorKind::Corrupt`] when its layout does
    /// not add up.
    pub fn open(name: &str) -> Result<KeyedBoard> {
        let (name, region, info) = shared_object::open(name, Kind::KeyedBoard, true)?;
        let bad = |why: String| shared_object::corrupt(&name, "open", why);
        if region.len() < ENTRIES_OFFSET {
            return Err(bad(format!(
                "{} bytes cannot hold a keyed board's header",
                region.len()
            )));
        }
        // Relaxed: ordered after the creator's stores by the Acquire load
        // of READY in open. Untrusted: checked below.
        let word = |offset: usize| region.load_u64(offset, Ordering::Relaxed);
        let count = word(CONTROL_OFFSET + offset_of!(Control, keys))?;
        let entry_size = word(CONTROL_OFFSET + offset_of!(Control, entry_size))?;
        if count == 0 || count > MAX_KEYS as u64 || entry_size != ENTRY_SIZE as u64 {
            return Err(bad(format!(
                "it claims {count} keys of {entry_size}-byte entries"
            )));
        }
        if ((ENTRIES_OFFSET + count as usize * ENTRY_SIZE) as u64) > info.total_size
            || info.total_size > region.len() as u64
        {
            return Err(bad(format!(
                "{count} keys do not fit in {} bytes",
                info.total_size
            )));
        }
        let mut listed = Vec::with_capacity(count as usize);
        let mut found = Vec::with_capacity(count as usize);
        for k in 0..count as usize {
            let e = ENTRIES_OFFSET + k * ENTRY_SIZE;
            let len = word(e + offset_of!(Entry, name_len))?;
            if len == 0 || len > MAX_KEY_NAME as u64 {
                return Err(bad(format!("key {k} has a name of {len} bytes")));
            }
            let mut bytes = Vec::with_capacity(MAX_KEY_NAME);
            for w in 0..MAX_KEY_NAME / 8 {
                bytes.extend_from_slice(&word(e + offset_of!(Entry, name) + 8 * w)?.to_ne_bytes());
            }
            bytes.truncate(len as usize);
            let key = String::from_utf8(bytes)
                .map_err(|_| bad(format!("key {k}'s name is not UTF-8")))?;
            let max_size = word(e + offset_of!(Entry, max_size))?;
            listed.push((key.clone(), max_size));
            found.push(KeyLayout {
                name: key,
                max_size,
                slot_offset: word(e + offset_of!(Entry, slot_offset))?,
                slot_size: word(e + offset_of!(Entry, slot_size))?,
            });
        }
        let (expected, slots_offset, total) = place(&listed).map_err(bad)?;
        if expected != found
            || word(CONTROL_OFFSET + offset_of!(Control, slots_offset))? != slots_offset
            || total != info.total_size
        {
            return Err(bad(
                "its key table does not match the layout its keys imply".to_string(),
            ));
        }
        Self::from_region(name, region, expected, total)
    }

    /// Opens `name`, creating it with `options` if it does not exist.
    pub fn open_or_create(name: &str, options: &KeyedBoardOptions) -> Result<KeyedBoard> {
        crate::shared_object::open_or_create(|| Self::create(name, options), || Self::open(name))
    }

    /// The board's keys, in creation order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.inner.keys.iter().map(|k| k.name.as_str())
    }

    /// The largest value of `key`, in bytes.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] for a key the board does not have.
    pub fn max_size(&self, key: &str) -> Result<usize> {
        let k = self.inner.index(key, "look up")?;
        Ok(self.inner.keys[k].max_size as usize)
    }

    fn words(&self, key: usize) -> KeyWords<'_> {
        KeyWords {
            inner: &self.inner,
            key,
        }
    }

    /// Becomes the writer of `key`.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] for a key the board does not have;
    /// [`ErrorKind::ReadOnly`] on a board opened read-only;
    /// [`ErrorKind::AlreadyExists`] "key K of board has a live writer pid
    /// N" while another live process (or handle) writes it. A dead one is
    /// taken over ([`KeyWriter::took_over_from`]).
    pub fn writer(&self, key: &str) -> Result<KeyWriter> {
        let k = self.inner.index(key, "write to")?;
        if !self.inner.writable {
            return Err(self.inner.err(
                ErrorKind::ReadOnly,
                "write to",
                "it was opened read-only (no write permission)",
            ));
        }
        let e = self.inner.entry(k);
        let what = format!("key {key:?} of board");
        let claim = shared_object::claim_writer(&e.writer, &e.claims, &what, &self.inner.name)?;
        Ok(KeyWriter {
            board: self.clone(),
            key: k,
            claim,
        })
    }

    /// The latest complete value of `key` and its version (0 and empty:
    /// never written). Never waits for a writer.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] for an unknown key; [`ErrorKind::Corrupt`]
    /// for a length over the key's maximum; [`ErrorKind::TimedOut`] when
    /// the writer overwrote every copy for [`READ_PATIENCE`].
    pub fn read(&self, key: &str) -> Result<(Vec<u8>, u64)> {
        let k = self.inner.index(key, "read from")?;
        let mut out = Vec::new();
        let version = self.read_index(k, &mut out)?;
        Ok((out, version))
    }

    /// One key's value into `out`, retried as a plain board's read is.
    fn read_index(&self, k: usize, out: &mut Vec<u8>) -> Result<u64> {
        self.patiently(|| self.copy(k, out))
    }

    /// One copy attempt of key `k`: `None` when overwritten meanwhile.
    fn copy(&self, k: usize, out: &mut Vec<u8>) -> Result<Option<u64>> {
        match seqlock::try_read(&self.words(k), out) {
            Ok(version) => Ok(Some(version)),
            Err(ReadError::Overwritten) => Ok(None),
            Err(ReadError::Corrupt { len }) => Err(self.inner.err(
                ErrorKind::Corrupt,
                "read from",
                format!(
                    "key {:?} claims a value of {len} bytes, over its maximum of {}",
                    self.inner.keys[k].name, self.inner.keys[k].max_size
                ),
            )),
        }
    }

    /// Runs `attempt` until it gives a value: at once a few times, then
    /// yielding and sleeping (as `Board::read` does), for at most
    /// [`READ_PATIENCE`].
    fn patiently<T>(&self, mut attempt: impl FnMut() -> Result<Option<T>>) -> Result<T> {
        let mut refused = 0u32;
        let mut since: Option<Instant> = None;
        loop {
            if let Some(v) = attempt()? {
                return Ok(v);
            }
            refused += 1;
            if refused <= 16 {
                std::hint::spin_loop();
                continue;
            }
            let start = *since.get_or_insert_with(Instant::now);
            if start.elapsed() > READ_PATIENCE {
                return Err(self.inner.err(
                    ErrorKind::TimedOut,
                    "read from",
                    format!("writers changed what was being copied {refused} times in a row"),
                ));
            }
            let shift = (refused - 16).min(10);
            std::thread::sleep(Duration::from_micros(1 << shift));
        }
    }

    /// A consistent snapshot of `keys` (every key when empty): each value
    /// with its version, all of which were the latest at one instant.
    /// Copies every key, then checks that no key got a new version
    /// meanwhile; if one did, starts over.
    ///
    /// # Errors
    /// As [`read`](Self::read); [`ErrorKind::TimedOut`] when writes kept
    /// changing some key during every attempt for [`READ_PATIENCE`].
    pub fn snapshot(&self, keys: &[&str]) -> Result<Vec<(String, Vec<u8>, u64)>> {
        let indices: Vec<usize> = if keys.is_empty() {
            (0..self.inner.keys.len()).collect()
        } else {
            keys.iter()
                .map(|k| self.inner.index(k, "read from"))
                .collect::<Result<_>>()?
        };
        let mut values: Vec<(Vec<u8>, u64)> = vec![(Vec::new(), 0); indices.len()];
        self.patiently(|| {
            for (&k, (out, version)) in indices.iter().zip(values.iter_mut()) {
                match self.copy(k, out)? {
                    Some(v) => *version = v,
                    None => return Ok(None),
                }
            }
            // Every copy was the latest of its key when it began; if each
            // key's version is still the same now (Acquire loads, after
            // every copy), all of them were the latest at once: the moment
            // the last copy began.
            let unchanged = indices
                .iter()
                .zip(&values)
                .all(|(&k, (_, v))| seqlock::version(&self.words(k)) == *v);
            Ok(unchanged.then_some(()))
        })?;
        Ok(indices
            .iter()
            .zip(values)
            .map(|(&k, (value, version))| (self.inner.keys[k].name.clone(), value, version))
            .collect())
    }

    /// The current version of `key` (no copy).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] for an unknown key.
    pub fn version(&self, key: &str) -> Result<u64> {
        let k = self.inner.index(key, "read from")?;
        Ok(seqlock::version(&self.words(k)))
    }

    /// Waits until `key` has a version other than `since`, then reads it.
    /// Sleeps on that key's own bell (spin, then a shared futex): writes
    /// to other keys do not wake it.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] when no new version came in time; as
    /// [`read`](Self::read).
    pub fn wait_for_change(
        &self,
        key: &str,
        since: u64,
        timeout: Option<Duration>,
    ) -> Result<(Vec<u8>, u64)> {
        let k = self.inner.index(key, "watch")?;
        let words = self.words(k);
        let changed = || seqlock::version(&words) != since;
        if !changed() {
            let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
            let bell = &self.inner.entry(k).bell;
            let woke = if self.inner.writable {
                bell.wait_until(changed, deadline)?
            } else {
                bell.wait_until_unregistered(changed, deadline)?
            };
            if !woke {
                return Err(self.inner.err(
                    ErrorKind::TimedOut,
                    "watch",
                    format!(
                        "key {key:?} got no version after {since} within {:?}",
                        timeout.unwrap_or_default()
                    ),
                ));
            }
        }
        let mut out = Vec::new();
        let version = self.read_index(k, &mut out)?;
        Ok((out, version))
    }

    /// Every key's version, size, maximum and writer, for people and
    /// monitoring.
    pub fn stats(&self) -> Vec<KeyInfo> {
        (0..self.inner.keys.len())
            .map(|k| {
                let words = self.words(k);
                let e = self.inner.entry(k);
                // Acquire: as `version`; the length word of the slot it
                // names, Relaxed (a snapshot for people), clamped.
                let seq = e.seq.load(Ordering::Acquire);
                let version = seqlock::version_of(seq);
                let size = words
                    .len((version & 1) as usize)
                    .load(Ordering::Relaxed)
                    .min(self.inner.keys[k].max_size);
                KeyInfo {
                    name: self.inner.keys[k].name.clone(),
                    version,
                    size,
                    max_size: self.inner.keys[k].max_size,
                    writer: shared_object::writer_of(&e.writer)
                        .map(|(pid, alive)| WriterInfo { pid, alive }),
                    write_in_progress: seq & 1 == 1,
                    // Relaxed: a statistic.
                    writer_claims: e.claims.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Bytes of shared memory the board uses.
    pub fn size(&self) -> u64 {
        self.inner.total
    }

    /// The board's name.
    pub fn name(&self) -> &ShmName {
        &self.inner.name
    }
}

/// The writer of one key. Dropping it gives the role back.
pub struct KeyWriter {
    board: KeyedBoard,
    key: usize,
    claim: Claim,
}

impl std::fmt::Debug for KeyWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyWriter")
            .field("board", &self.board.inner.name)
            .field("key", &self.board.inner.keys[self.key].name)
            .finish()
    }
}

impl KeyWriter {
    /// Replaces the key's value; returns its version. Never waits.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a value over the key's maximum.
    pub fn write(&mut self, value: &[u8]) -> Result<u64> {
        let inner = &*self.board.inner;
        self.claim
            .check_here("write to", &inner.name, "key writer")?;
        let key = &inner.keys[self.key];
        if value.len() as u64 > key.max_size {
            return Err(inner.err(
                ErrorKind::InvalidArgument,
                "write to",
                format!(
                    "a value of {} bytes exceeds key {:?}'s maximum of {}",
                    value.len(),
                    key.name,
                    key.max_size
                ),
            ));
        }
        let version = seqlock::write(&self.board.words(self.key), value);
        inner.entry(self.key).bell.ring();
        Ok(version)
    }

    /// Begins a write and stops half-way, as a writer killed mid-write
    /// would: for crash tests. Readers keep the last complete value.
    #[doc(hidden)]
    pub fn begin_and_abandon(&mut self, partial: &[u8]) {
        if !self.claim.home.is_here() {
            return;
        }
        let words = self.board.words(self.key);
        let pending = seqlock::begin_write(&words);
        let n = partial
            .len()
            .min(self.board.inner.keys[self.key].max_size as usize);
        seqlock::store_value(&words, pending, &partial[..n]);
    }

    /// The pid of the dead writer this one took over from, if it did.
    pub fn took_over_from(&self) -> Option<u32> {
        self.claim.took_over_from
    }

    /// The key this writer writes.
    pub fn key(&self) -> &str {
        &self.board.inner.keys[self.key].name
    }
}

impl Drop for KeyWriter {
    fn drop(&mut self) {
        shared_object::release_writer(&self.board.inner.entry(self.key).writer, self.claim);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(tag: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        format!(
            "/shmkit-test-{}-{}-keyed-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = crate::posix::unlink(&self.0);
        }
    }

    fn opts() -> KeyedBoardOptions {
        let mut o = KeyedBoardOptions::new();
        o.key("pose", 24).key("status", 100).key("config", 4000);
        o
    }

    #[test]
    fn keys_are_independent_boards() {
        let n = name("indep");
        let _g = Gone(n.clone());
        let b = KeyedBoard::create(&n, &opts()).unwrap();
        assert_eq!(b.keys().collect::<Vec<_>>(), ["pose", "status", "config"]);
        assert_eq!(b.read("pose").unwrap(), (vec![], 0));
        let mut pose = b.writer("pose").unwrap();
        let mut status = KeyedBoard::open(&n).unwrap().writer("status").unwrap();
        assert_eq!(pose.write(b"1,2,3").unwrap(), 1);
        assert_eq!(pose.write(b"4,5,6").unwrap(), 2);
        assert_eq!(status.write(b"ok").unwrap(), 1);
        let other = KeyedBoard::open(&n).unwrap();
        assert_eq!(other.read("pose").unwrap(), (b"4,5,6".to_vec(), 2));
        assert_eq!(other.read("status").unwrap(), (b"ok".to_vec(), 1));
        // One writer per key.
        let e = other.writer("pose").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert!(
            e.to_string()
                .contains("key \"pose\" of board has a live writer pid"),
            "{e}"
        );
        let e = pose.write(&[0; 25]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(
            e.to_string().contains("key \"pose\"'s maximum of 24"),
            "{e}"
        );
        let e = other.read("nope").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("keys: pose, status, config"), "{e}");
        // A snapshot of several keys, and of all.
        let snap = other.snapshot(&["status", "pose"]).unwrap();
        assert_eq!(
            snap,
            [
                ("status".to_string(), b"ok".to_vec(), 1),
                ("pose".to_string(), b"4,5,6".to_vec(), 2)
            ]
        );
        assert_eq!(other.snapshot(&[]).unwrap().len(), 3);
        let stats = other.stats();
        assert_eq!(
            (stats[0].version, stats[0].size, stats[0].max_size),
            (2, 5, 24)
        );
        assert_eq!(stats[0].writer.unwrap().pid, std::process::id());
        assert!(stats[2].writer.is_none());
        // Dropping the writer frees the key.
        drop(pose);
        other.writer("pose").unwrap();
    }

    #[test]
    fn a_half_written_key_hides_nothing_and_is_taken_over() {
        let n = name("crash");
        let _g = Gone(n.clone());
        let b = KeyedBoard::create(&n, &opts()).unwrap();
        let mut w = b.writer("status").unwrap();
        w.write(b"good").unwrap();
        w.begin_and_abandon(b"TORN TORN");
        assert_eq!(b.read("status").unwrap(), (b"good".to_vec(), 1));
        assert!(b.stats()[1].write_in_progress);
        drop(w);
        let mut next = b.writer("status").unwrap();
        assert_eq!(next.write(b"new").unwrap(), 2);
        assert_eq!(b.read("status").unwrap(), (b"new".to_vec(), 2));
    }

    #[test]
    fn watching_one_key_ignores_the_others() {
        let n = name("watch");
        let _g = Gone(n.clone());
        let b = KeyedBoard::create(&n, &opts()).unwrap();
        let mut pose = b.writer("pose").unwrap();
        let mut status = b.writer("status").unwrap();
        std::thread::scope(|s| {
            let watcher = s.spawn(|| b.wait_for_change("status", 0, Some(Duration::from_secs(10))));
            // Once the watcher sleeps on the status bell, writes to pose
            // never ring it: a ring would clear its `parked` flag.
            let status_bell = &b.inner.entry(1).bell;
            let until = Instant::now() + Duration::from_secs(10);
            while !status_bell.parked() {
                assert!(Instant::now() < until, "the watcher never slept");
                std::thread::sleep(Duration::from_millis(1));
            }
            for i in 0..50u32 {
                pose.write(&i.to_ne_bytes()).unwrap();
            }
            assert!(status_bell.parked(), "a write to pose rang the status bell");
            std::thread::sleep(Duration::from_millis(20));
            status.write(b"changed").unwrap();
            assert_eq!(watcher.join().unwrap().unwrap(), (b"changed".to_vec(), 1));
        });
        let e = b
            .wait_for_change("pose", 50, Some(Duration::from_millis(10)))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
    }

    /// A writer sets `pose` then `status` to the same counter, over and
    /// over: at every instant pose is status or status + 1. A snapshot
    /// must see exactly that; reading the keys one after the other (status
    /// first) would see status ahead of pose whenever a write pair fell
    /// between the two reads.
    #[test]
    fn a_snapshot_is_consistent_across_keys() {
        let n = name("snap");
        let _g = Gone(n.clone());
        let b = KeyedBoard::create(&n, &opts()).unwrap();
        // A big value copied between the two: a wider window for a write
        // pair to fall into.
        b.writer("config").unwrap().write(&[7; 4000]).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut pose = b.writer("pose").unwrap();
                let mut status = b.writer("status").unwrap();
                for i in 1..=200_000u64 {
                    pose.write(&i.to_ne_bytes()).unwrap();
                    status.write(&i.to_ne_bytes()).unwrap();
                }
                done.store(true, Ordering::Release);
            });
            let value = |v: &[u8]| v.try_into().map(u64::from_ne_bytes).unwrap_or(0);
            let mut snapshots = 0u64;
            while !done.load(Ordering::Acquire) || snapshots == 0 {
                let snap = b.snapshot(&["status", "pose"]).unwrap();
                let (status, pose) = (value(&snap[0].1), value(&snap[1].1));
                assert!(
                    pose == status || pose == status + 1,
                    "pose {pose}, status {status}"
                );
                assert_eq!(
                    (snap[0].2, snap[1].2),
                    (status, pose),
                    "versions follow values"
                );
                snapshots += 1;
            }
        });
    }

    #[test]
    fn bad_key_sets_are_refused() {
        let n = name("bad");
        let _g = Gone(n.clone());
        for (o, why) in [
            (KeyedBoardOptions::new(), "0 keys"),
            (
                KeyedBoardOptions::new().key("a", 1).key("a", 2).clone(),
                "given twice",
            ),
            (
                KeyedBoardOptions::new().key("a", 0).clone(),
                "maximum size of 0",
            ),
            (
                KeyedBoardOptions::new().key(&"x".repeat(49), 1).clone(),
                "not 1 to 48",
            ),
            (
                KeyedBoardOptions::new().key("a\n", 1).clone(),
                "control character",
            ),
        ] {
            let e = KeyedBoard::create(&n, &o).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.to_string().contains(why), "{e}");
        }
        // A plain board is not a keyed one.
        let plain =
            super::super::Board::create(&n, super::super::BoardOptions::new().max_size(8)).unwrap();
        let e = KeyedBoard::open(&n).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        drop(plain);
    }

    #[test]
    fn a_damaged_key_table_is_corruption() {
        let n = name("damaged");
        let _g = Gone(n.clone());
        let b = KeyedBoard::create(&n, &opts()).unwrap();
        // Key 1's slot offset moved by a peer.
        let e = b.inner.entry(1);
        e.slot_offset.fetch_add(64, Ordering::Relaxed);
        let err = KeyedBoard::open(&n).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        e.slot_offset.fetch_sub(64, Ordering::Relaxed);
        // A length word over the maximum.
        KeyedBoard::open(&n).unwrap();
        b.words(0).len(0).store(1 << 40, Ordering::Relaxed);
        let err = b.read("pose").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.to_string().contains("over its maximum of 24"), "{err}");
    }
}
