//! What channels, boards and broadcasts share: creating and opening a
//! structured object over a named POSIX object (header written, published
//! ready, a half-made object removed; on open a bounded wait for a young
//! object's creator and the header checked), capacities and flags judged
//! as the caller gave them, and the one-writer identity word of boards and
//! broadcasts (claimed by compare-and-swap, taken over only from the dead).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, ErrorKind, Result};
use crate::layout::{self, HeaderInfo, Kind, HEADER_SIZE};
use crate::posix::{OpenOptions, PosixObject, ShmName};
use crate::process::{self, Home, ProcessId};
use crate::region::Region;

/// How long `open` waits for a creator that is still initialising.
pub(crate) const OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// Creates `name` (fails if it exists) with `total` bytes reserved, writes
/// the common header, runs `init` on the zeroed region, and publishes it
/// ready. On any failure the half-made object is removed.
pub(crate) fn create(
    name: &str,
    kind: Kind,
    total: u64,
    mode: u32,
    init: impl FnOnce(&Region) -> Result<()>,
) -> Result<(ShmName, Region, HeaderInfo)> {
    create_built(
        name,
        kind,
        total,
        mode,
        |name, region| {
            init(&region)?;
            Ok((name, region))
        },
        |(_, region)| region,
    )
    .and_then(|(name, region)| {
        let info = layout::wait_ready(&region, kind, Duration::ZERO)?;
        Ok((name, region, info))
    })
}

/// [`create`] for a kind whose initialisation needs its own handle over
/// the mapping (a channel initialises its ring through the `RingWords` of
/// the mapped channel): `build` gets the name and the region, with the
/// common header written, and returns what owns the region (`region_of`
/// finds it again); the object is then published ready. On any failure
/// the half-made object is removed.
pub(crate) fn create_built<T>(
    name: &str,
    kind: Kind,
    total: u64,
    mode: u32,
    build: impl FnOnce(ShmName, Region) -> Result<T>,
    region_of: impl FnOnce(&T) -> &Region,
) -> Result<T> {
    let obj = OpenOptions::new()
        .create_new(true)
        .size(total)
        .mode(mode)
        .open(name)?;
    let made = (|| {
        let region = obj.map()?;
        layout::write_initialising(&region, kind, total)?;
        let built = build(obj.name().clone(), region)?;
        layout::publish_ready(region_of(&built))?;
        Ok(built)
    })();
    if made.is_err() {
        let _ = obj.unlink();
    }
    made
}

/// Opens `name` read-write, waits (bounded) for its creator to publish it,
/// and checks the common header against `kind`. The caller checks its own
/// parameters next.
///
/// With `read_only_ok`, an object this process may only read (a 0644 board
/// of another user) is opened and mapped read-only instead: the region
/// then says so ([`Region::is_writable`]) and the caller must only load.
pub(crate) fn open(
    name: &str,
    kind: Kind,
    read_only_ok: bool,
) -> Result<(ShmName, Region, HeaderInfo)> {
    let obj = match PosixObject::open(name) {
        Err(e) if read_only_ok && e.kind() == ErrorKind::PermissionDenied => {
            PosixObject::open_read_only(name)?
        }
        other => other?,
    };
    let (region, info) = map_ready(&obj, kind)?;
    Ok((obj.name().clone(), region, info))
}

/// Maps an opened object (read-write if it was opened so) once its creator
/// has published it, and checks the common header against `kind`.
///
/// A creator sizes the object and writes its header within moments of
/// creating it, so only a young object is waited for: an old one with no
/// header, or with bytes that are not a shmkit header, is refused at once
/// (not after [`OPEN_TIMEOUT`]). The header is peeked at with `pread`
/// before anything is mapped.
pub(crate) fn map_ready(obj: &PosixObject, kind: Kind) -> Result<(Region, HeaderInfo)> {
    let settle = settle_time(obj)?;
    let deadline = Instant::now() + settle;
    // A creator between shm_open and sizing leaves the object empty for a
    // moment: wait for the header to exist.
    while obj.size()? < HEADER_SIZE as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    if layout::holds_foreign_bytes(obj)? {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "open",
            obj.name().as_str(),
            format!("it holds no shmkit header: not a shmkit {}", kind.as_str()),
        ));
    }
    let region = if obj.is_writable() {
        obj.map()?
    } else {
        obj.map_read_only()?
    };
    let info = layout::wait_ready(&region, kind, settle)?;
    Ok((region, info))
}

/// How long an opener waits for `obj`'s creator: [`OPEN_TIMEOUT`] while
/// the object is young (its status changed less than that long ago), not at
/// all once it is older.
fn settle_time(obj: &PosixObject) -> Result<Duration> {
    let changed = obj.metadata()?.ctime;
    let young = SystemTime::now()
        .duration_since(changed)
        .map_or(true, |age| age < OPEN_TIMEOUT);
    Ok(if young { OPEN_TIMEOUT } else { Duration::ZERO })
}

/// The ring capacity to create for a request of `requested` messages:
/// rounded up to a power of two, from 1 to `max`.
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] naming the value as the caller gave it
/// (not the rounded one): 0, or more than `max`.
pub(crate) fn ring_capacity(requested: usize, max: usize, what: &str, name: &str) -> Result<u64> {
    let why = if requested == 0 {
        format!("a capacity of 0: a {what} holds at least one message")
    } else if requested > max {
        format!(
            "a capacity of {requested} messages is more than a {what} can hold ({max}, 2^{})",
            max.trailing_zeros()
        )
    } else {
        return Ok((requested as u64).next_power_of_two());
    };
    Err(Error::new(ErrorKind::InvalidArgument, "create", name, why))
}

/// The checks every ring's layout makes of the parameters a header holds
/// (or a creator asks for): no flag this build does not know, a capacity
/// that is a power of two up to `max_capacity`, a largest message from 1
/// to `max_message` bytes. The reason, for the caller's error.
pub(crate) fn check_ring_parameters(
    flags: u32,
    known_flags: u32,
    capacity: u64,
    max_capacity: usize,
    max_msg: u64,
    max_message: usize,
) -> std::result::Result<(), String> {
    if flags & !known_flags != 0 {
        return Err(format!(
            "flags {flags:#x} include ones this build does not know (a newer format?)"
        ));
    }
    if capacity == 0 || capacity > max_capacity as u64 || !capacity.is_power_of_two() {
        return Err(format!(
            "capacity {capacity} is not a power of two from 1 to {max_capacity}"
        ));
    }
    if max_msg == 0 || max_msg > max_message as u64 {
        return Err(format!(
            "maximum message size {max_msg} is not from 1 to {max_message} bytes"
        ));
    }
    Ok(())
}

/// A writer role held by this process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim {
    /// The identity word we stored (to give back with a CAS).
    pub word: u64,
    /// The pid of the dead writer we took over from, if any.
    pub took_over_from: Option<u32>,
    /// The process that claimed it: in a child forked since, the role is
    /// the parent's, and the child's handle neither writes nor releases.
    pub home: Home,
}

impl Claim {
    /// Fails with a clear error in a child forked after the claim.
    #[inline]
    pub(crate) fn check_here(&self, op: &'static str, name: &ShmName, what: &str) -> Result<()> {
        if self.home.is_here() {
            Ok(())
        } else {
            Err(process::forked_error(op, name.as_str(), what))
        }
    }
}

/// Claims the one-writer identity word `writer` for this process: free (0)
/// or held by a dead process. Bumps `claims` (a statistic).
///
/// # Errors
/// [`ErrorKind::AlreadyExists`] when a live process holds it: "`what` has a
/// live writer pid N".
pub(crate) fn claim_writer(
    writer: &AtomicU64,
    claims: &AtomicU64,
    what: &str,
    name: &ShmName,
) -> Result<Claim> {
    let mine = process::identity_word(ProcessId::current());
    loop {
        // Acquire: pairs with the Release store of 0 in `release_writer`
        // (and the winning CAS below, in a racing claimer): what the last
        // writer stored is visible to us before we write.
        let word = writer.load(Ordering::Acquire);
        if word != 0 && process::identity_alive(word) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                "write to",
                name.as_str(),
                format!(
                    "{what} has a live writer pid {}",
                    process::identity_pid(word)
                ),
            ));
        }
        // AcqRel: Acquire as above; Release publishes our identity to
        // anyone who then reads it (stat, a would-be second writer).
        if writer
            .compare_exchange(word, mine, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // Relaxed: a statistic, and the "a writer has been here" flag
            // that subscribers read only between liveness slices.
            claims.fetch_add(1, Ordering::Relaxed);
            return Ok(Claim {
                word: mine,
                took_over_from: (word != 0).then(|| process::identity_pid(word)),
                home: Home::here(),
            });
        }
        // Someone else changed it first: look again.
    }
}

/// Gives the writer role back (a writer handle dropped); nothing in a child
/// forked after the claim (the role is the parent's).
pub(crate) fn release_writer(writer: &AtomicU64, claim: Claim) {
    if !claim.home.is_here() {
        return;
    }
    // Release: pairs with the Acquire load in `claim_writer`, so the next
    // writer sees our last write complete. A CAS rather than a store: a
    // word someone else wrote (garbage) is not ours to clear.
    let _ = writer.compare_exchange(claim.word, 0, Ordering::Release, Ordering::Relaxed);
}

/// The writer recorded in an identity word: (pid, alive), or None if free.
pub(crate) fn writer_of(writer: &AtomicU64) -> Option<(u32, bool)> {
    // Acquire: pairs with the claim's Release CAS.
    let word = writer.load(Ordering::Acquire);
    (word != 0).then(|| (process::identity_pid(word), process::identity_alive(word)))
}

/// The size of a ring object: `capacity` slots of `slot_size` bytes after
/// `slots_start` bytes of header and tables, or why it cannot be mapped.
/// Checked: both numbers may come from shared memory.
pub(crate) fn ring_total(capacity: u64, slot_size: u64, slots_start: usize) -> Result<u64, String> {
    capacity
        .checked_mul(slot_size)
        .and_then(|s| s.checked_add(slots_start as u64))
        .filter(|&t| t <= isize::MAX as u64)
        .ok_or_else(|| format!("{capacity} slots of {slot_size} bytes do not fit in memory"))
}

/// `open_or_create` of every kind: `create`, or `open` when the object
/// exists already.
pub(crate) fn open_or_create<T>(
    create: impl FnOnce() -> Result<T>,
    open: impl FnOnce() -> Result<T>,
) -> Result<T> {
    match create() {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => open(),
        other => other,
    }
}

/// The open-time check that an object's geometry as its header states it
/// (`stated`: slot size, offset of the slots, total bytes) is the one its
/// parameters make (`made`).
pub(crate) fn check_geometry(name: &ShmName, stated: [u64; 3], made: [u64; 3]) -> Result<()> {
    if stated == made {
        return Ok(());
    }
    let [slot_size, slots, total] = stated;
    Err(corrupt(
        name,
        "open",
        format!(
            "its layout (slot size {slot_size}, slots at {slots}, {total} bytes) does not match its parameters"
        ),
    ))
}

/// The open-time check of a typed handle: the object's element type
/// (`found`, size and alignment; (0, 0) for bytes) is the one `wanted`
/// (`None`: any). `holds` says how the kind holds them ("carries",
/// "holds") and `what` what they are ("messages", "values").
pub(crate) fn check_type(
    name: &ShmName,
    found: (u32, u32),
    wanted: Option<(u32, u32)>,
    holds: &str,
    what: &str,
) -> Result<()> {
    let Some((size, align)) = wanted.filter(|&w| w != found) else {
        return Ok(());
    };
    let (type_size, type_align) = found;
    Err(Error::new(
        ErrorKind::InvalidArgument,
        "open",
        name.as_str(),
        if type_size == 0 {
            format!("it {holds} bytes, not {what} of {size} bytes aligned to {align}")
        } else {
            format!(
                "it {holds} {what} of {type_size} bytes aligned to {type_align}, not {size} aligned to {align}"
            )
        },
    ))
}

/// An error about a damaged object.
pub(crate) fn corrupt(name: &ShmName, op: &'static str, why: impl Into<String>) -> Error {
    Error::new(ErrorKind::Corrupt, op, name.as_str(), why)
}

/// For unit tests of every kind: a POSIX object name no other test (in
/// this or another process) uses, removed when the guard drops, even if
/// the test fails.
#[cfg(all(test, not(loom)))]
pub(crate) struct TestName(pub String);

#[cfg(all(test, not(loom)))]
impl TestName {
    pub(crate) fn new(tag: &str) -> TestName {
        use std::sync::atomic::AtomicUsize;
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TestName(format!(
            "/shmkit-test-{}-{n}-unit-{tag}",
            std::process::id()
        ))
    }
}

#[cfg(all(test, not(loom)))]
impl Drop for TestName {
    fn drop(&mut self) {
        let _ = crate::posix::unlink(&self.0);
    }
}
