//! The textbook bounded buffer, byte for byte the C program's, so a C
//! producer can feed this consumer and the other way round.
//!
//! One POSIX shared memory object holds C's
//!
//! ```c
//! struct shared {
//!     int buffer[5];  /* offset  0: a circular buffer of five ints    */
//!     int in;         /* offset 20: the next slot to fill             */
//!     int out;        /* offset 24: the next slot to empty            */
//!     sem_t mutex;    /* offset 32: 1, guards buffer, in and out      */
//!     sem_t empty;    /* offset 64: free slots, 5 at first            */
//!     sem_t full;     /* offset 96: used slots, 0 at first            */
//! };                  /* 128 bytes, on x86-64 and aarch64 glibc       */
//! ```
//!
//! with three unnamed, process-shared POSIX semaphores. A producer waits on
//! `empty`, then `mutex`, stores `buffer[in]`, advances `in`, posts `mutex`,
//! then `full`; a consumer mirrors it with `full`, `out` and `empty`.
//!
//! ```sh
//! cargo run -p shmkit --example bounded_buffer -- init /bb
//! cargo run -p shmkit --example bounded_buffer -- consume /bb 20 &   # prints 1..=20
//! cargo run -p shmkit --example bounded_buffer -- produce /bb 20
//! cargo run -p shmkit --example bounded_buffer -- destroy /bb
//! ```
//!
//! Every verb takes `--timeout SECONDS` (default 10), the longest any one
//! wait may last. Exit status: 0 done, 1 failed (one line on standard error
//! says why), 2 a usage error.
//!
//! # The textbook's four faults, and what this program does about them
//!
//! 1. **Uninitialised semaphores: fixed.** The textbook maps the object and
//!    waits on semaphores nobody passed to `sem_init`, which POSIX leaves
//!    undefined (glibc reads zeroed bytes as a semaphore at 0, so the
//!    producer waits on `empty` forever). `init` creates the object (mode
//!    0600) under a temporary name, `sem_init`s the three semaphores with
//!    `pshared = 1` (mutex 1, empty 5, full 0), and only then links it under
//!    its real name, as glibc's `sem_open` does: no process can open a
//!    half-made buffer, and an existing one is never initialised again under
//!    its users (`init` fails if the name exists).
//! 2. **Never unlinked: fixed.** `destroy` `sem_destroy`s the semaphores and
//!    `shm_unlink`s the object. It refuses while another process maps or
//!    holds the object open (read from `/proc`, as `shmkit stat` shows it),
//!    because destroying a semaphore in use is undefined behaviour.
//! 3. **Loops forever: fixed.** `produce` and `consume` stop after COUNT
//!    values, and every wait is a `sem_timedwait` with a deadline: when the
//!    peer never came, is gone or is stuck, the program exits with status 1
//!    and names the semaphore it waited on.
//! 4. **Deadlock when a process dies holding `mutex`: NOT fixed, and it
//!    cannot be with `sem_t`.** A semaphore keeps a count, not an owner:
//!    nothing records who took `mutex`, so nothing can tell the others that
//!    the holder died, and nobody may post on its behalf, since it may have
//!    died half-way through changing `buffer`, `in` or `out`. The timeout
//!    only turns the eternal hang into an error that names the likely cause;
//!    recovery is `destroy` and `init`, losing what was buffered. Where a
//!    crash must not stall everyone, use shmkit's robust
//!    `shmkit::sync::Mutex` (the next locker learns that the owner died and
//!    can repair the data) or `shmkit::channel` (survives any peer being
//!    killed).
//!
//! # Access from Rust
//!
//! No Rust reference is ever made over the shared bytes except through
//! shmkit's checked constructors: the semaphores through [`PosixSemaphore`]
//! (transparent over `sem_t`), the ints as `AtomicU32` from
//! [`Region::atomic_u32`]. Indices read back from shared memory are checked
//! before use: a corrupt `in` or `out` is an error, never an out-of-bounds
//! access.

use std::io::{self, Write};
use std::mem::{align_of, offset_of, size_of};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shmkit::inventory::ProcessScan;
use shmkit::posix::{self, MapOptions, OpenOptions, PosixObject, ShmName};
use shmkit::sync::PosixSemaphore;
use shmkit::{Error, ErrorKind, Region, Result};

/// Slots in the circular buffer (C's `BUFFER_SIZE`).
pub const SLOTS: usize = 5;

/// C's `struct shared`, field for field, to compute its offsets and size.
///
/// Never built as a value and never referenced over shared memory: only
/// `offset_of!` and `size_of` read it. The ints are `i32` (C's `int`), each
/// semaphore a [`PosixSemaphore`], which is `#[repr(transparent)]` over the
/// `libc` crate's `sem_t`, so `#[repr(C)]` lays it out as the C compiler does.
#[repr(C)]
#[allow(dead_code)] // A description of bytes: its fields are never read.
pub struct Shared {
    buffer: [i32; SLOTS],
    r#in: i32,
    out: i32,
    mutex: PosixSemaphore,
    empty: PosixSemaphore,
    full: PosixSemaphore,
}

/// Offset of `int buffer[5]`.
pub const BUFFER: usize = offset_of!(Shared, buffer);
/// Offset of `int in`.
pub const IN: usize = offset_of!(Shared, r#in);
/// Offset of `int out`.
pub const OUT: usize = offset_of!(Shared, out);
/// Offset of `sem_t mutex`.
pub const MUTEX: usize = offset_of!(Shared, mutex);
/// Offset of `sem_t empty`.
pub const EMPTY: usize = offset_of!(Shared, empty);
/// Offset of `sem_t full`.
pub const FULL: usize = offset_of!(Shared, full);
/// `sizeof(struct shared)`: the object's size.
pub const SIZE: usize = size_of::<Shared>();

// What C's layout rules give on any target.
const _: () = {
    assert!(BUFFER == 0);
    assert!(IN == BUFFER + SLOTS * size_of::<i32>());
    assert!(OUT == IN + size_of::<i32>());
    assert!(MUTEX % align_of::<PosixSemaphore>() == 0);
    assert!(EMPTY == MUTEX + size_of::<PosixSemaphore>());
    assert!(FULL == EMPTY + size_of::<PosixSemaphore>());
    assert!(SIZE == FULL + size_of::<PosixSemaphore>());
};

// The numbers, where glibc's sem_t is 32 bytes aligned to 8 (every 64-bit
// glibc target, x86-64 and aarch64 included); tests/bounded_buffer.rs checks
// them against a C compiler's offsetof.
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
const _: () = {
    assert!(size_of::<PosixSemaphore>() == 32);
    assert!(align_of::<PosixSemaphore>() == 8);
    assert!(IN == 20 && OUT == 24);
    assert!(MUTEX == 32 && EMPTY == 64 && FULL == 96);
    assert!(SIZE == 128 && align_of::<Shared>() == 8);
};

/// How long one wait may last unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The command line's grammar, printed on a usage error.
pub const USAGE: &str = "usage: bounded_buffer init NAME | produce NAME COUNT | \
consume NAME COUNT | destroy NAME  [--timeout SECONDS]";

/// An existing bounded buffer, mapped read-write.
pub struct BoundedBuffer {
    obj: PosixObject,
    region: Region,
}

impl BoundedBuffer {
    /// Opens the buffer `name`, which `init` (this program's or the C
    /// program's) made.
    ///
    /// # Errors
    /// The object does not exist or cannot be mapped, or it is smaller than
    /// `struct shared` ([`ErrorKind::Corrupt`]).
    pub fn open(name: &str) -> Result<Self> {
        let obj = PosixObject::open(name)?;
        let size = obj.size()?;
        if size < SIZE as u64 {
            return Err(Error::new(
                ErrorKind::Corrupt,
                "open",
                obj.name().as_str(),
                format!(
                    "it has {size} bytes, fewer than the {SIZE} of struct shared: \
                     not a bounded buffer (make one with `init`)"
                ),
            ));
        }
        let region = obj.map_with(MapOptions::new().len(SIZE).write(true))?;
        Ok(BoundedBuffer { obj, region })
    }

    fn name(&self) -> &str {
        self.obj.name().as_str()
    }

    fn semaphore(&self, offset: usize) -> Result<&PosixSemaphore> {
        // SAFETY: `init` sem_init'ed the three semaphores before anyone could
        // open the object: this program's links the name only afterwards,
        // and the C program's finishes before producers and consumers start
        // (the usage contract). Every process touches these bytes only
        // through sem_*. The reference borrows `self.region`, which keeps
        // the mapping alive.
        unsafe { PosixSemaphore::open_in(&self.region, offset) }
    }

    /// Reads `in` or `out` and checks it: shared memory is untrusted input.
    fn index(&self, offset: usize) -> Result<usize> {
        // Relaxed: called only while holding `mutex`, whose sem_wait (an
        // acquire) pairs with the previous holder's sem_post (a release);
        // POSIX lists both as synchronising memory. The C side uses plain
        // int accesses under the same mutex.
        let index = self.region.atomic_u32(offset)?.load(Ordering::Relaxed);
        match usize::try_from(index) {
            Ok(i) if i < SLOTS => Ok(i),
            _ => Err(Error::new(
                ErrorKind::Corrupt,
                "use",
                self.name(),
                format!(
                    "index {} at offset {offset} is outside the buffer's {SLOTS} slots",
                    index as i32
                ),
            )),
        }
    }

    fn timed_out(&self, op: &'static str, why: String) -> Error {
        Error::new(ErrorKind::TimedOut, op, self.name(), why)
    }

    /// Runs `critical` holding `mutex`, waiting at most `timeout` for it.
    fn locked<T>(
        &self,
        op: &'static str,
        timeout: Duration,
        critical: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let mutex = self.semaphore(MUTEX)?;
        if !mutex.wait_timeout(timeout)? {
            // Fault 4: detected as a timeout, not repaired (see the module doc).
            return Err(self.timed_out(
                op,
                format!(
                    "`mutex` was not released within {timeout:?}: a process may have \
                     died holding it, which a sem_t can neither detect nor repair; \
                     stop every producer and consumer, then `destroy` and `init` again"
                ),
            ));
        }
        let result = critical();
        mutex.post()?;
        result
    }

    /// Stores `value` in the next free slot: the textbook producer's step.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] when no slot frees up or `mutex` is not
    /// released within `timeout` (nothing is stored, and the slot taken is
    /// given back); [`ErrorKind::Corrupt`] for an `in` outside the buffer.
    pub fn put(&self, value: i32, timeout: Duration) -> Result<()> {
        let empty = self.semaphore(EMPTY)?;
        let full = self.semaphore(FULL)?;
        if !empty.wait_timeout(timeout)? {
            return Err(self.timed_out(
                "produce into",
                format!("no slot was free within {timeout:?} (waited on `empty`): is a consumer running?"),
            ));
        }
        let stored = self.locked("produce into", timeout, || {
            let i = self.index(IN)?;
            // Relaxed: ordered by `mutex` (see `index`) and published to the
            // consumer by `full`'s post below.
            self.region
                .atomic_u32(BUFFER + i * size_of::<i32>())?
                .store(value as u32, Ordering::Relaxed);
            self.region
                .atomic_u32(IN)?
                .store(((i + 1) % SLOTS) as u32, Ordering::Relaxed);
            Ok(())
        });
        if let Err(e) = stored {
            // Nothing was stored: give the free slot back.
            let _ = empty.post();
            return Err(e);
        }
        full.post()
    }

    /// Takes the value in the oldest used slot: the textbook consumer's step.
    ///
    /// # Errors
    /// As for [`BoundedBuffer::put`], with `full` and `out`.
    pub fn get(&self, timeout: Duration) -> Result<i32> {
        let empty = self.semaphore(EMPTY)?;
        let full = self.semaphore(FULL)?;
        if !full.wait_timeout(timeout)? {
            return Err(self.timed_out(
                "consume from",
                format!("no value arrived within {timeout:?} (waited on `full`): is a producer running?"),
            ));
        }
        let taken = self.locked("consume from", timeout, || {
            let i = self.index(OUT)?;
            // Relaxed: the producer's store is ordered before our load by
            // its `full` post and our `full` wait, and by `mutex`.
            let value = self
                .region
                .atomic_u32(BUFFER + i * size_of::<i32>())?
                .load(Ordering::Relaxed);
            self.region
                .atomic_u32(OUT)?
                .store(((i + 1) % SLOTS) as u32, Ordering::Relaxed);
            Ok(value as i32)
        });
        match taken {
            Ok(value) => {
                empty.post()?;
                Ok(value)
            }
            Err(e) => {
                // Nothing was taken: the value stays for the next consumer.
                let _ = full.post();
                Err(e)
            }
        }
    }
}

/// Removes a name from `/dev/shm` when dropped.
struct Unlink<'a>(&'a ShmName);

impl Drop for Unlink<'_> {
    fn drop(&mut self) {
        let _ = posix::unlink(self.0.as_str());
    }
}

/// Creates the buffer `name` (mode 0600) with its semaphores initialised
/// (mutex 1, empty 5, full 0) and `in` = `out` = 0.
///
/// # Errors
/// [`ErrorKind::AlreadyExists`] if `name` exists; what creating, mapping
/// and `sem_init` report.
pub fn init(name: &str) -> Result<()> {
    let name = ShmName::new(name)?;
    // Made under a name only this call knows, then linked under the real
    // one when complete (glibc's sem_open does the same): nobody can open a
    // buffer whose semaphores are not initialised yet.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let temp = ShmName::new(&format!(
        "bounded_buffer.init.{}.{nanos}",
        std::process::id()
    ))?;
    let obj = OpenOptions::new()
        .create_new(true)
        .mode(0o600)
        .size(SIZE as u64)
        .open(temp.as_str())?;
    let _temp = Unlink(&temp);
    let region = obj.map()?;
    // SAFETY: a new object under a name no other process was given: nobody
    // uses the bytes, let alone a semaphore there. They are sem_t's size and
    // alignment apart (the layout asserts), inside the region (checked).
    unsafe {
        PosixSemaphore::init_in(&region, MUTEX, 1)?;
        PosixSemaphore::init_in(&region, EMPTY, SLOTS as u32)?;
        PosixSemaphore::init_in(&region, FULL, 0)?;
    }
    // buffer, in and out: a new object is zeroed, which is what they start as.
    drop(region);
    // link(2) fails with EEXIST if the name exists: never a second init.
    std::fs::hard_link(temp.path(), name.path()).map_err(|e| {
        Error::os(
            "create",
            name.as_str(),
            e.raw_os_error().unwrap_or(libc::EIO),
        )
    })
}

/// Destroys the semaphores of the buffer `name` and unlinks it.
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] while another process maps or holds the
/// object open (nothing is changed); what opening and unlinking report.
pub fn destroy(name: &str) -> Result<()> {
    let buffer = BoundedBuffer::open(name)?;
    let inode = buffer.obj.metadata()?.inode;
    let me = std::process::id() as i32;
    let scan = ProcessScan::new();
    let mut users: Vec<i32> = scan.posix_mappers(inode);
    users.extend(scan.posix_holders(inode));
    users.retain(|&pid| pid != me);
    users.sort_unstable();
    users.dedup();
    if !users.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "destroy",
            buffer.name(),
            format!(
                "process(es) {users:?} still use it; destroying its semaphores \
                 under them would be undefined behaviour"
            ),
        ));
    }
    // No new process can open it from here on.
    buffer.obj.unlink()?;
    for offset in [MUTEX, EMPTY, FULL] {
        let sem = buffer.semaphore(offset)?;
        // SAFETY: no other process mapped or held the object a moment ago
        // (the scan above: every process as root, otherwise every process
        // of this user, the only ones a 0600 object admits besides root's)
        // and none can open it by name now; this process waits on none of
        // them. Anything the scan cannot see is the usage contract: destroy
        // after every producer and consumer has finished. (glibc's
        // sem_destroy changes nothing, so even then no peer is disturbed.)
        unsafe { sem.destroy()? };
    }
    Ok(())
}

/// One parsed command line.
enum Command {
    Init(String),
    Produce(String, i32),
    Consume(String, i32),
    Destroy(String),
}

fn parse(args: &[String]) -> std::result::Result<(Command, Duration), String> {
    let mut timeout = DEFAULT_TIMEOUT;
    let mut words = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--timeout" {
            let value = args.next().ok_or("--timeout needs a number of seconds")?;
            timeout = value
                .parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| format!("--timeout {value:?}: not a positive number of seconds"))?;
        } else {
            words.push(arg.as_str());
        }
    }
    let count = |word: &str| {
        word.parse::<i32>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("COUNT {word:?}: not a number from 0 to {}", i32::MAX))
    };
    let command = match words.as_slice() {
        ["init", name] => Command::Init(name.to_string()),
        ["produce", name, n] => Command::Produce(name.to_string(), count(n)?),
        ["consume", name, n] => Command::Consume(name.to_string(), count(n)?),
        ["destroy", name] => Command::Destroy(name.to_string()),
        _ => return Err("expected a verb and its arguments".to_string()),
    };
    Ok((command, timeout))
}

fn execute(command: Command, timeout: Duration, out: &mut dyn Write) -> Result<()> {
    match command {
        Command::Init(name) => init(&name),
        Command::Destroy(name) => destroy(&name),
        Command::Produce(name, count) => {
            let buffer = BoundedBuffer::open(&name)?;
            (1..=count).try_for_each(|value| buffer.put(value, timeout))
        }
        Command::Consume(name, count) => {
            let buffer = BoundedBuffer::open(&name)?;
            for _ in 0..count {
                let value = buffer.get(timeout)?;
                match writeln!(out, "{value}") {
                    Ok(()) => {}
                    // `consume ... | head`: the reader has what it wanted.
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => {
                        return Err(Error::new(
                            ErrorKind::Other,
                            "print",
                            "stdout",
                            e.to_string(),
                        ))
                    }
                }
            }
            out.flush()
                .map_err(|e| Error::new(ErrorKind::Other, "print", "stdout", e.to_string()))
        }
    }
}

/// Runs one command line (without the program's name), printing values on
/// `out` and errors on `err`; returns the exit status: 0 done, 1 failed,
/// 2 a usage error.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let (command, timeout) = match parse(args) {
        Ok(parsed) => parsed,
        Err(why) => {
            let _ = writeln!(err, "bounded_buffer: {why}\n{USAGE}");
            return 2;
        }
    };
    match execute(command, timeout, out) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "bounded_buffer: {e}");
            1
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    ExitCode::from(run(&args, &mut io::stdout().lock(), &mut io::stderr()))
}
