//! Boards over named shared memory: [`Board`], [`BoardWriter`], in-place
//! writes ([`BoardWrite`]) and typed boards ([`TypedBoard`]).

use std::marker::PhantomData;
use std::mem::{align_of, offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::seqlock::{self, PendingWrite, ReadError, SeqlockWords};
use crate::bell::Bell;
use crate::error::{Error, ErrorKind, Result};
use crate::layout::{HeaderInfo, Kind, HEADER_SIZE};
use crate::posix::ShmName;
use crate::process::{self, ProcessId};
use crate::readiness::{Arm, FdWaiters, Readiness};
use crate::region::Region;
use crate::shared_object::{self, Claim};

/// The largest value a board can hold, in bytes.
pub const MAX_SIZE: usize = 1 << 30;
/// The largest alignment a typed board records.
pub const MAX_TYPE_ALIGN: usize = 4096;
/// How long [`Board::read`] keeps trying when the writer overwrites every
/// copy it makes, before it gives up with [`ErrorKind::TimedOut`].
pub const READ_PATIENCE: Duration = Duration::from_secs(1);
/// Refused copies retried at once, before a reader starts to yield and sleep.
const READ_SPINS: u32 = 16;

/// The board's fixed part, right after the common header. Atomics only
/// (padding included), so a shared reference to it over memory other
/// processes write is sound.
#[repr(C)]
struct Control {
    /// Largest value in bytes (written once by the creator).
    max_size: AtomicU64,
    /// Bytes per slot (written once).
    slot_size: AtomicU64,
    /// Offset of slot 0 from the start of the object (written once).
    slots_offset: AtomicU64,
    /// `size_of::<T>()` for a typed board, 0 for bytes (written once).
    type_size: AtomicU32,
    /// `align_of::<T>()` for a typed board, 0 for bytes (written once).
    type_align: AtomicU32,
    /// How many times a writer claimed the board (statistic).
    claims: AtomicU64,
    _pad0: [AtomicU64; 3],
    /// The writer's identity word (pid | start time), 0 when none.
    writer: AtomicU64,
    _pad1: [AtomicU64; 15],
    /// The sequence word (see the `seqlock` module).
    seq: AtomicU64,
    _pad2: [AtomicU64; 15],
    /// Bumped after every write; watchers sleep on it.
    bell: Bell,
    _pad3: [AtomicU32; 14],
    /// Readiness descriptors of watchers (`crate::readiness`), at 448: the
    /// bell block's second line, padding (zero) in boards made before.
    fd_waiters: FdWaiters,
}

const CONTROL_OFFSET: usize = HEADER_SIZE;
const SLOTS_START: usize = CONTROL_OFFSET + size_of::<Control>();
/// A slot: its length word, then the value's words.
const SLOT_HEADER: usize = 8;

const _: () = {
    assert!(CONTROL_OFFSET % 64 == 0);
    assert!(align_of::<Control>() == 8);
    assert!(CONTROL_OFFSET + offset_of!(Control, writer) == 128);
    // The sequence word and the bell each get a 128-byte block of their
    // own (the adjacent-line prefetcher pulls 64-byte lines in pairs).
    assert!(CONTROL_OFFSET + offset_of!(Control, seq) == 256);
    assert!(CONTROL_OFFSET + offset_of!(Control, bell) == 384);
    assert!(CONTROL_OFFSET + offset_of!(Control, fd_waiters) == 448);
    assert!(SLOTS_START == 512);
};

/// What a board is made of: fixed at creation, checked on every open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    max_size: u64,
    slot_size: u64,
    type_size: u32,
    type_align: u32,
    total: u64,
}

impl Layout {
    fn new(max_size: u64, type_size: u32, type_align: u32) -> std::result::Result<Self, String> {
        if max_size == 0 || max_size > MAX_SIZE as u64 {
            return Err(format!(
                "maximum value size {max_size} is not from 1 to {MAX_SIZE} bytes"
            ));
        }
        if type_size != 0
            && (u64::from(type_size) != max_size
                || !type_align.is_power_of_two()
                || type_align as usize > MAX_TYPE_ALIGN)
        {
            return Err(format!(
                "value type of {type_size} bytes aligned to {type_align} does not fit (alignment up to {MAX_TYPE_ALIGN})"
            ));
        }
        if type_size == 0 && type_align != 0 {
            return Err(format!("untyped board with type alignment {type_align}"));
        }
        // max_size <= 2^30, so nothing below can overflow.
        let slot_size = (SLOT_HEADER as u64 + max_size.next_multiple_of(8)).next_multiple_of(64);
        Ok(Layout {
            max_size,
            slot_size,
            type_size,
            type_align,
            total: SLOTS_START as u64 + 2 * slot_size,
        })
    }
}

/// How to create a board.
#[derive(Debug, Clone)]
pub struct BoardOptions {
    max_size: usize,
    mode: u32,
}

impl Default for BoardOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl BoardOptions {
    /// Values up to 4096 bytes, mode 0600.
    pub fn new() -> Self {
        BoardOptions {
            max_size: 4096,
            mode: 0o600,
        }
    }

    /// The largest value in bytes (1 to [`MAX_SIZE`]).
    pub fn max_size(&mut self, bytes: usize) -> &mut Self {
        self.max_size = bytes;
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
    /// The mapping `base` points into, kept alive (and unmapped on drop).
    _region: Region,
    name: ShmName,
    layout: Layout,
    info: HeaderInfo,
    /// `region`'s first byte; writable only if `writable`.
    base: *mut u8,
    /// Whether the mapping is writable. A board opened read-only (no write
    /// permission) is only ever loaded from: `writer` is refused and the
    /// registering wait replaced (see `wait_for_change`).
    writable: bool,
}

// SAFETY: `base` points into `region`, which Inner owns and which is Send +
// Sync; every access through it is atomic, and only loads when the mapping
// is read-only (`writable`).
unsafe impl Send for Inner {}
// SAFETY: as for Send.
unsafe impl Sync for Inner {}

impl Inner {
    fn control(&self) -> &Control {
        // SAFETY: open checked that the mapping holds SLOTS_START bytes, so
        // the control block (CONTROL_OFFSET..SLOTS_START) lies inside it;
        // CONTROL_OFFSET is 64 and mappings are page-aligned, so it is
        // aligned for Control; Control is atomics only, for which a shared
        // reference over memory other processes write is sound; the mapping
        // lives as long as `self`.
        unsafe { &*self.base.add(CONTROL_OFFSET).cast::<Control>() }
    }

    fn slot(&self, slot: usize) -> *mut u8 {
        // Checked in release builds: the layout depends on it.
        assert!(slot < 2, "a board has two slots");
        // SAFETY: SLOTS_START + 2 * slot_size == total <= mapped length
        // (checked in open), so slot `slot` lies inside the mapping.
        unsafe {
            self.base
                .add(SLOTS_START + slot * self.layout.slot_size as usize)
        }
    }

    fn err(&self, kind: ErrorKind, op: &'static str, detail: impl Into<String>) -> Error {
        Error::new(kind, op, self.name.as_str(), detail)
    }

    fn type_check(&self, len: usize) -> Result<()> {
        if len as u64 > self.layout.max_size {
            return Err(self.err(
                ErrorKind::InvalidArgument,
                "write to",
                format!(
                    "a value of {len} bytes exceeds the board's maximum of {}",
                    self.layout.max_size
                ),
            ));
        }
        if self.layout.type_size != 0 && len as u64 != u64::from(self.layout.type_size) {
            return Err(self.err(
                ErrorKind::InvalidArgument,
                "write to",
                format!(
                    "a value of {len} bytes on a board of {}-byte values",
                    self.layout.type_size
                ),
            ));
        }
        Ok(())
    }

    fn read_into(&self, out: &mut Vec<u8>) -> Result<u64> {
        let mut refused = 0u32;
        let mut since: Option<Instant> = None;
        loop {
            match seqlock::try_read(self, out) {
                Ok(version) => return Ok(version),
                Err(ReadError::Corrupt { len }) => {
                    return Err(self.err(
                        ErrorKind::Corrupt,
                        "read from",
                        format!(
                            "its value claims {len} bytes, over the maximum of {}",
                            self.layout.max_size
                        ),
                    ))
                }
                Err(ReadError::Overwritten) => refused += 1,
            }
            if refused <= READ_SPINS {
                std::hint::spin_loop();
                continue;
            }
            let start = *since.get_or_insert_with(Instant::now);
            if start.elapsed() > READ_PATIENCE {
                return Err(self.err(
                    ErrorKind::TimedOut,
                    "read from",
                    format!(
                        "the writer overwrote each of {refused} copies in a row (two writes during every copy): this reader is too slow for it"
                    ),
                ));
            }
            if refused <= 2 * READ_SPINS {
                std::thread::yield_now();
            } else {
                // 1 µs, doubling up to about 1 ms.
                let shift = (refused - 2 * READ_SPINS).min(10);
                std::thread::sleep(Duration::from_micros(1 << shift));
            }
        }
    }

    fn wait_for_change(&self, since: u64, timeout: Option<Duration>) -> Result<()> {
        let changed = || seqlock::version(self) != since;
        if changed() {
            return Ok(());
        }
        // A timeout too large to add to now is, for all purposes, for ever.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        // Waiting registers in the bell, a write: a read-only reader polls
        // the bell's word instead, in short sleeps (no ringer knows of it).
        let bell = &self.control().bell;
        let woke = if self.writable {
            bell.wait_until(changed, deadline)?
        } else {
            bell.wait_until_unregistered(changed, deadline)?
        };
        if woke {
            Ok(())
        } else {
            Err(self.err(
                ErrorKind::TimedOut,
                "watch",
                format!(
                    "no version after {since} within {:?}",
                    timeout.unwrap_or_default()
                ),
            ))
        }
    }
}

impl SeqlockWords for Inner {
    fn max_len(&self) -> u64 {
        self.layout.max_size
    }

    fn seq(&self) -> &AtomicU64 {
        &self.control().seq
    }

    fn len(&self, slot: usize) -> &AtomicU64 {
        // SAFETY: `slot` lies inside the mapping (see `slot`), which lives
        // as long as `self`; slots start at 512 and are multiples of 64
        // bytes, each SLOT_HEADER + 8 * ceil(max_size / 8) bytes or more.
        unsafe { slot_words(self.slot(slot), self.layout.max_size).0 }
    }

    fn data(&self, slot: usize) -> &[AtomicU64] {
        // SAFETY: as in `len`.
        unsafe { slot_words(self.slot(slot), self.layout.max_size).1 }
    }
}

/// The length word and the data words of a value slot at `slot`: a length
/// word, then `ceil(max_size / 8)` value words (plain and keyed boards).
///
/// # Safety
/// `slot` must be 8-aligned and point to at least `SLOT_HEADER + 8 *
/// ceil(max_size / 8)` bytes of a mapping that outlives `'a`, accessed
/// only atomically (AtomicU64 has the size and alignment of u64, and
/// atomics may be shared across processes).
pub(super) unsafe fn slot_words<'a>(
    slot: *mut u8,
    max_size: u64,
) -> (&'a AtomicU64, &'a [AtomicU64]) {
    let words = max_size.div_ceil(8) as usize;
    // SAFETY: the caller's contract: the first 8 bytes are the length word,
    // the next 8 * words the value, all 8-aligned inside a live mapping.
    unsafe {
        (
            &*slot.cast::<AtomicU64>(),
            std::slice::from_raw_parts(slot.add(SLOT_HEADER).cast::<AtomicU64>(), words),
        )
    }
}

/// A board: a named shared memory object holding one value that any
/// number of processes read and one process at a time writes. Cheap to
/// clone; see the [module documentation](super) for the guarantees.
#[derive(Clone)]
pub struct Board {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("name", &self.inner.name)
            .field("max_size", &self.inner.layout.max_size)
            .finish()
    }
}

/// Readiness descriptors (see [`crate::readiness`]).
impl Board {
    /// A descriptor that becomes readable when a new version may be there,
    /// once armed with [`arm_readiness`](Board::arm_readiness); for event
    /// loops (`poll`, `epoll`, tokio, asyncio). It keeps the board mapped.
    ///
    /// # Errors
    /// [`ErrorKind::ReadOnly`] for a board opened read-only (arming writes
    /// to it); [`ErrorKind::LimitExceeded`] when all
    /// [`MAX_FD_WAITERS`](crate::readiness::MAX_FD_WAITERS) slots are held
    /// by live watchers; the OS reason if no socket can be made.
    pub fn readiness(&self) -> Result<Readiness> {
        if !self.inner.writable {
            return Err(self.inner.err(
                ErrorKind::ReadOnly,
                "make a readiness descriptor for",
                "the board is mapped read-only, and arming one writes to it",
            ));
        }
        let table: *const FdWaiters = &self.inner.control().fd_waiters;
        let keep: Arc<dyn Send + Sync> = self.inner.clone();
        // SAFETY: the table lies in the mapping Inner owns; `keep` holds it.
        unsafe { Readiness::register(table, keep, &Arc::from(self.inner.name.as_str())) }
    }

    /// Declares that the caller is about to sleep on `readiness` until the
    /// board holds a version other than `since`: [`Arm::Ready`] if it
    /// already does (do not sleep), else [`Arm::Sleep`].
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a descriptor made for another
    /// object.
    pub fn arm_readiness(&self, readiness: &Readiness, since: u64) -> Result<Arm> {
        readiness.check(&self.inner.control().fd_waiters, self.inner.name.as_str())?;
        Ok(readiness.arm(|| seqlock::version(&*self.inner) != since))
    }
}

impl Board {
    /// Creates the board `name` for byte values; fails if it exists. Until
    /// the first write its value is empty, at version 0.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a maximum size out of range;
    /// anything [`OpenOptions::open`](crate::OpenOptions::open) reports
    /// (exists, no space…).
    pub fn create(name: &str, options: &BoardOptions) -> Result<Board> {
        Self::create_with(name, options.max_size as u64, options.mode, 0, 0)
    }

    fn create_with(
        name: &str,
        max_size: u64,
        mode: u32,
        type_size: u32,
        type_align: u32,
    ) -> Result<Board> {
        let layout = Layout::new(max_size, type_size, type_align)
            .map_err(|why| Error::new(ErrorKind::InvalidArgument, "create", name, why))?;
        let (name, region, info) =
            shared_object::create(name, Kind::Board, layout.total, mode, |region| {
                // Relaxed: published by the Release store of READY that
                // follows (`layout::publish_ready`). The rest is zero:
                // version 0, an empty value, no writer, an idle bell.
                region
                    .atomic_u64(CONTROL_OFFSET + offset_of!(Control, max_size))?
                    .store(layout.max_size, Ordering::Relaxed);
                region
                    .atomic_u64(CONTROL_OFFSET + offset_of!(Control, slot_size))?
                    .store(layout.slot_size, Ordering::Relaxed);
                region
                    .atomic_u64(CONTROL_OFFSET + offset_of!(Control, slots_offset))?
                    .store(SLOTS_START as u64, Ordering::Relaxed);
                region
                    .atomic_u32(CONTROL_OFFSET + offset_of!(Control, type_size))?
                    .store(type_size, Ordering::Relaxed);
                region
                    .atomic_u32(CONTROL_OFFSET + offset_of!(Control, type_align))?
                    .store(type_align, Ordering::Relaxed);
                Ok(())
            })?;
        Self::from_region(name, region, info, layout)
    }

    fn from_region(
        name: ShmName,
        region: Region,
        info: HeaderInfo,
        layout: Layout,
    ) -> Result<Board> {
        let writable = region.is_writable();
        // A read-only mapping's pointer is made `*mut` only to share the
        // accessors: nothing stores through it (`writable` is checked
        // before every path that writes).
        let base = if writable {
            region.as_mut_ptr()?
        } else {
            region.as_ptr().cast_mut()
        };
        Ok(Board {
            inner: Arc::new(Inner {
                _region: region,
                name,
                layout,
                info,
                base,
                writable,
            }),
        })
    }

    /// Opens the existing board `name`, checking its header and layout. A
    /// typed board opens too (its values are bytes of the type's size).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`]; [`ErrorKind::InvalidArgument`] when it is
    /// another kind of shmkit object; [`ErrorKind::Corrupt`] when it is not
    /// a board this build can read; [`ErrorKind::Disconnected`] when its
    /// creator died half-way (a stale object); [`ErrorKind::TimedOut`] when
    /// a live creator is still initialising after two seconds.
    pub fn open(name: &str) -> Result<Board> {
        Self::open_with(name, None)
    }

    fn open_with(name: &str, typed: Option<(u32, u32)>) -> Result<Board> {
        let (name, region, info) = shared_object::open(name, Kind::Board, true)?;
        let bad = |why: String| shared_object::corrupt(&name, "open", why);
        if region.len() < SLOTS_START {
            return Err(bad(format!(
                "{} bytes cannot hold a board's header",
                region.len()
            )));
        }
        let word = |field: usize| region.load_u64(CONTROL_OFFSET + field, Ordering::Relaxed);
        // Relaxed: ordered after the creator's stores by wait_ready's
        // Acquire load of READY. Untrusted: checked right below.
        let max_size = word(offset_of!(Control, max_size))?;
        let slot_size = word(offset_of!(Control, slot_size))?;
        let slots = word(offset_of!(Control, slots_offset))?;
        let type_size = region.load_u32(
            CONTROL_OFFSET + offset_of!(Control, type_size),
            Ordering::Relaxed,
        )?;
        let type_align = region.load_u32(
            CONTROL_OFFSET + offset_of!(Control, type_align),
            Ordering::Relaxed,
        )?;
        let layout = Layout::new(max_size, type_size, type_align).map_err(bad)?;
        shared_object::check_geometry(
            &name,
            [slot_size, slots, info.total_size],
            [layout.slot_size, SLOTS_START as u64, layout.total],
        )?;
        shared_object::check_type(&name, (type_size, type_align), typed, "holds", "values")?;
        Self::from_region(name, region, info, layout)
    }

    /// Opens `name`, creating it with `options` if it does not exist.
    pub fn open_or_create(name: &str, options: &BoardOptions) -> Result<Board> {
        crate::shared_object::open_or_create(|| Self::create(name, options), || Self::open(name))
    }

    /// Becomes the board's writer.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] with "board has a live writer pid N"
    /// while another live process (or another handle in this one) writes.
    /// A writer that died is taken over: see
    /// [`BoardWriter::took_over_from`].
    pub fn writer(&self) -> Result<BoardWriter> {
        if !self.inner.writable {
            return Err(self.inner.err(
                ErrorKind::ReadOnly,
                "write to",
                "this process may only read the board (it was opened read-only)",
            ));
        }
        let c = self.inner.control();
        let claim = shared_object::claim_writer(&c.writer, &c.claims, "board", &self.inner.name)?;
        Ok(BoardWriter {
            inner: self.inner.clone(),
            claim,
        })
    }

    /// Copies the latest complete value out, with its version (0 and an
    /// empty value before the first write).
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] after [`READ_PATIENCE`] of copies that the
    /// writer overwrote (see the module documentation);
    /// [`ErrorKind::Corrupt`] if the shared state is damaged.
    pub fn read(&self) -> Result<(Vec<u8>, u64)> {
        let mut value = Vec::new();
        let version = self.read_into(&mut value)?;
        Ok((value, version))
    }

    /// Like [`read`](Board::read), into `buf` (cleared first), reusing its
    /// allocation; returns the version.
    pub fn read_into(&self, buf: &mut Vec<u8>) -> Result<u64> {
        self.inner.read_into(buf)
    }

    /// The latest complete version (0 before the first write), without
    /// copying the value.
    pub fn version(&self) -> u64 {
        seqlock::version(&*self.inner)
    }

    /// Waits until the version differs from `since` (spinning briefly, then
    /// sleeping on a shared futex), then reads. `None` waits for ever.
    ///
    /// Versions in between may be skipped: a board holds the latest value,
    /// not a history (use a [broadcast](crate::broadcast) for that).
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] when no new version came in time; those of
    /// [`read`](Board::read).
    #[doc(alias = "FUTEX_WAIT")]
    pub fn wait_for_change(&self, since: u64, timeout: Option<Duration>) -> Result<(Vec<u8>, u64)> {
        self.inner.wait_for_change(since, timeout)?;
        self.read()
    }

    /// The board's name.
    pub fn name(&self) -> &ShmName {
        &self.inner.name
    }

    /// The largest value in bytes.
    pub fn max_size(&self) -> usize {
        self.inner.layout.max_size as usize
    }

    /// A snapshot of the board's state, for people and monitoring.
    pub fn stats(&self) -> BoardStats {
        let inner = &*self.inner;
        let c = inner.control();
        BoardStats {
            version: self.version(),
            write_in_progress: seqlock::write_in_progress(inner),
            writer: shared_object::writer_of(&c.writer)
                .map(|(pid, alive)| WriterInfo { pid, alive }),
            // Relaxed: a statistic.
            writer_claims: c.claims.load(Ordering::Relaxed),
            max_size: inner.layout.max_size,
            type_size: inner.layout.type_size,
            creator: inner.info.creator,
            creator_alive: inner.info.creator.is_alive(),
            created: inner.info.created,
            size: inner.layout.total,
        }
    }

    /// Removes the board's name (see [`crate::posix::unlink`]); processes
    /// that have it open keep using the memory they have mapped.
    pub fn unlink(&self) -> Result<()> {
        crate::posix::unlink(self.inner.name.as_str())
    }
}

/// The process that holds a board's or broadcast's writer role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterInfo {
    /// Its pid.
    pub pid: u32,
    /// Whether that very process (pid and start time) still runs.
    pub alive: bool,
}

/// A snapshot of a board, from [`Board::stats`].
#[derive(Debug, Clone)]
pub struct BoardStats {
    /// The latest complete version (the number of complete writes).
    pub version: u64,
    /// Whether a write has begun and not ended: a writer is writing now,
    /// or died mid-write (readers still read the previous value).
    pub write_in_progress: bool,
    /// The writer, if one holds the role (dead ones until taken over).
    pub writer: Option<WriterInfo>,
    /// How many times a writer claimed the board.
    pub writer_claims: u64,
    /// Largest value in bytes.
    pub max_size: u64,
    /// Size of the value type of a typed board, 0 for bytes.
    pub type_size: u32,
    /// The process that created the board.
    pub creator: ProcessId,
    /// Whether it still runs.
    pub creator_alive: bool,
    /// When the board was created.
    pub created: SystemTime,
    /// Bytes of shared memory the board uses.
    pub size: u64,
}

/// The one writer of a board. Dropping it gives the role back.
pub struct BoardWriter {
    inner: Arc<Inner>,
    claim: Claim,
}

impl std::fmt::Debug for BoardWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoardWriter")
            .field("board", &self.inner.name)
            .finish()
    }
}

impl BoardWriter {
    /// Replaces the value; returns its version. Never waits for readers.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a value over the maximum size (or,
    /// on a typed board, of another size than the type's).
    pub fn write(&mut self, value: &[u8]) -> Result<u64> {
        self.claim
            .check_here("write to", &self.inner.name, "board writer")?;
        self.inner.type_check(value.len())?;
        let version = seqlock::write(&*self.inner, value);
        let c = self.inner.control();
        c.bell.ring_and(&c.fd_waiters);
        Ok(version)
    }

    /// Begins writing the next version in place: fill it with
    /// [`BoardWrite::write_at`], then [`commit`](BoardWrite::commit).
    ///
    /// Readers go on reading the current value meanwhile. Dropped without
    /// a commit, the write stays unfinished, exactly as if this process had
    /// died mid-write: readers are unaffected, and the next write (by this
    /// or a new writer) replaces it.
    ///
    /// In a child forked after the writer was made, nothing is begun and
    /// the write's `write_at` and `commit` fail (the role is the parent's).
    pub fn begin(&mut self) -> BoardWrite<'_> {
        let pending = self
            .claim
            .home
            .is_here()
            .then(|| seqlock::begin_write(&*self.inner));
        BoardWrite {
            writer: self,
            pending,
        }
    }

    /// The version the next write will have.
    pub fn next_version(&self) -> u64 {
        seqlock::version(&*self.inner) + 1
    }

    /// The pid of the dead writer this one took over from, if it did.
    pub fn took_over_from(&self) -> Option<u32> {
        self.claim.took_over_from
    }

    /// The board this writer writes.
    pub fn name(&self) -> &ShmName {
        &self.inner.name
    }
}

impl Drop for BoardWriter {
    fn drop(&mut self) {
        shared_object::release_writer(&self.inner.control().writer, self.claim);
    }
}

/// A version being written in place, from [`BoardWriter::begin`].
pub struct BoardWrite<'a> {
    writer: &'a mut BoardWriter,
    /// None in a forked child (see [`BoardWriter::begin`]).
    pending: Option<PendingWrite>,
}

impl BoardWrite<'_> {
    fn pending(&self) -> Result<PendingWrite> {
        let w = &*self.writer;
        match self.pending {
            Some(p) => Ok(p),
            None => Err(process::forked_error(
                "write to",
                w.inner.name.as_str(),
                "board writer",
            )),
        }
    }

    /// Bytes the value can hold (the board's maximum size).
    pub fn capacity(&self) -> usize {
        self.writer.inner.layout.max_size as usize
    }

    /// Copies `data` into the value at `offset`. Bytes never written keep
    /// what the slot held before (a value two versions old): write every
    /// byte up to the length you commit.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when the range exceeds the capacity.
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        if offset
            .checked_add(data.len())
            .is_none_or(|end| end > self.capacity())
        {
            return Err(self.writer.inner.err(
                ErrorKind::InvalidArgument,
                "write to",
                format!(
                    "{} bytes at offset {offset} exceed the board's {} bytes",
                    data.len(),
                    self.capacity()
                ),
            ));
        }
        let pending = self.pending()?;
        seqlock::store_at(&*self.writer.inner, pending, offset, data);
        Ok(())
    }

    /// Publishes the first `len` bytes as the new value; returns its version.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a length over the capacity (or
    /// another than the type's, on a typed board); nothing is published.
    pub fn commit(self, len: usize) -> Result<u64> {
        let pending = self.pending()?;
        let inner = &*self.writer.inner;
        inner.type_check(len)?;
        seqlock::store_len(inner, pending, len as u64);
        let version = seqlock::commit_write(inner, pending);
        let c = inner.control();
        c.bell.ring_and(&c.fd_waiters);
        Ok(version)
    }
}

/// A board holding one plain-old-data value of type `T`.
///
/// The type's size and alignment are recorded at creation and checked on
/// open; [`bytemuck::Pod`] proves that any bytes are a valid `T`, which is
/// what a value from another process must be. Values are copied out, so
/// the type's alignment does not constrain the shared layout.
pub struct TypedBoard<T> {
    board: Board,
    _type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for TypedBoard<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TypedBoard").field(&self.board).finish()
    }
}

impl<T> Clone for TypedBoard<T> {
    fn clone(&self) -> Self {
        TypedBoard {
            board: self.board.clone(),
            _type: PhantomData,
        }
    }
}

impl<T: bytemuck::Pod> TypedBoard<T> {
    fn type_params() -> (u32, u32) {
        (size_of::<T>() as u32, align_of::<T>() as u32)
    }

    /// Creates a board for values of `T` (all-zero bytes until the first
    /// write, at version 0).
    ///
    /// # Errors
    /// As [`Board::create`]; [`ErrorKind::InvalidArgument`] for a
    /// zero-sized type.
    pub fn create(name: &str, mode: u32) -> Result<Self> {
        let (size, align) = Self::type_params();
        if size == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "create",
                name,
                "zero-sized types carry nothing",
            ));
        }
        Ok(TypedBoard {
            board: Board::create_with(name, u64::from(size), mode, size, align)?,
            _type: PhantomData,
        })
    }

    /// Opens a board of `T`; fails if it was made for another type layout.
    pub fn open(name: &str) -> Result<Self> {
        Ok(TypedBoard {
            board: Board::open_with(name, Some(Self::type_params()))?,
            _type: PhantomData,
        })
    }

    /// Becomes the writer (see [`Board::writer`]).
    pub fn writer(&self) -> Result<TypedBoardWriter<T>> {
        Ok(TypedBoardWriter {
            writer: self.board.writer()?,
            _type: PhantomData,
        })
    }

    fn value(&self, bytes: &[u8]) -> Result<T> {
        let mut value = T::zeroed();
        let out = bytemuck::bytes_of_mut(&mut value);
        match bytes.len() {
            // Version 0: nothing written yet, the zero value.
            0 => {}
            n if n == out.len() => out.copy_from_slice(bytes),
            n => {
                return Err(self.board.inner.err(
                    ErrorKind::Corrupt,
                    "read from",
                    format!(
                        "a value of {n} bytes on a board of {}-byte values",
                        out.len()
                    ),
                ))
            }
        }
        Ok(value)
    }

    /// The latest value and its version (see [`Board::read`]).
    pub fn read(&self) -> Result<(T, u64)> {
        let (bytes, version) = self.board.read()?;
        Ok((self.value(&bytes)?, version))
    }

    /// Waits for a version other than `since` (see [`Board::wait_for_change`]).
    pub fn wait_for_change(&self, since: u64, timeout: Option<Duration>) -> Result<(T, u64)> {
        let (bytes, version) = self.board.wait_for_change(since, timeout)?;
        Ok((self.value(&bytes)?, version))
    }

    /// The untyped board underneath (for stats, versions and unlink).
    pub fn board(&self) -> &Board {
        &self.board
    }
}

/// Writes values of `T` to a [`TypedBoard`].
pub struct TypedBoardWriter<T> {
    writer: BoardWriter,
    _type: PhantomData<fn(T)>,
}

impl<T: bytemuck::Pod> TypedBoardWriter<T> {
    /// Replaces the value; returns its version.
    pub fn write(&mut self, value: &T) -> Result<u64> {
        self.writer.write(bytemuck::bytes_of(value))
    }

    /// The untyped writer underneath.
    pub fn writer(&mut self) -> &mut BoardWriter {
        &mut self.writer
    }
}

impl<T> std::fmt::Debug for TypedBoardWriter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TypedBoardWriter")
            .field(&self.writer)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::shared_object::TestName as Name;

    #[test]
    fn layout_is_checked() {
        assert!(Layout::new(0, 0, 0).is_err());
        assert!(Layout::new(MAX_SIZE as u64 + 1, 0, 0).is_err());
        assert!(Layout::new(8, 4, 4).is_err(), "type size must be the max");
        assert!(Layout::new(8, 8, 3).is_err());
        let l = Layout::new(100, 0, 0).unwrap();
        assert_eq!(l.slot_size, 128);
        assert_eq!(l.total, 512 + 256);
    }

    #[test]
    fn the_same_process_cannot_hold_two_writers() {
        let name = Name::new("two-writers");
        let board = Board::create(&name.0, &BoardOptions::new()).unwrap();
        let w = board.writer().unwrap();
        assert_eq!(w.took_over_from(), None);
        let e = board.writer().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert!(
            e.to_string().contains(&format!(
                "board has a live writer pid {}",
                std::process::id()
            )),
            "{e}"
        );
        drop(w);
        let _again = board.writer().unwrap();
        assert_eq!(board.stats().writer_claims, 2);
    }
}
