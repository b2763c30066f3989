//! [`Readiness`]: a file descriptor that `poll`, `epoll`, tokio or asyncio
//! can wait on, readable when a message (or a new board version) may be
//! there, woken from another process without passing any descriptor.
//!
//! # Use
//! Every receiving end offers the same two calls: `readiness()` makes a
//! [`Readiness`] for it ([`Receiver`](crate::channel::Receiver),
//! [`Subscriber`](crate::broadcast::Subscriber),
//! [`Board`](crate::board::Board)), and `arm_readiness(&readiness, ..)`
//! declares that the caller is about to sleep on the descriptor. An event
//! loop then does, per wait:
//!
//! ```text
//! loop {
//!     try the non-blocking receive (try_recv / try_read ...): got one? done
//!     match arm_readiness(&r)? {
//!         Arm::Ready => continue,                 // came meanwhile: try again
//!         Arm::Sleep => poll(r.as_raw_fd(), POLLIN, SLICE),  // then try again
//!     }
//! }
//! ```
//!
//! `arm_readiness` first reads the wake-up byte a previous sleep may have
//! left (one `recv`, only when one may be there), so a wake-up is not left
//! behind to make the next poll return for nothing. Poll with a timeout of at most [`SLICE`] and
//! try again after it (see "What can delay a wake-up").
//!
//! # Mechanism
//! A waiter owns an unbound-by-path `AF_UNIX` datagram socket bound to an
//! *abstract* address, `"\0shmkit-ready-" + 8 hex digits`, the digits being
//! a random 32-bit *token* (retried when taken). The descriptor handed out
//! is that socket: readable when a datagram is queued.
//!
//! Next to the futex word the waiter would otherwise sleep on (a channel's
//! "data available" [`Event`](crate::sync::Event), a board's or broadcast's
//! bell), the object keeps a *waiter table* of 64 bytes:
//!
//! ```text
//! word      written by                         meaning
//! armed     waiters (fetch_or), notifiers (swap 0)  bit i: slot i's waiter sleeps on its fd
//! token[i]  its waiter (claim, release), i < 15     0 = free, else the socket's token
//! ```
//!
//! A waiter, in `arm_readiness`: reads a queued byte if one may be there; sets its bit in `armed`
//! (`fetch_or`); a `SeqCst` fence; checks the condition: if true, clears its
//! bit again and says [`Arm::Ready`], else [`Arm::Sleep`].
//!
//! A notifier, after storing what makes the condition true, already runs a
//! `SeqCst` fence and loads the futex word (the event's protocol); it also
//! loads `armed` (the next cache line, which only arming writes). Zero,
//! the normal case while the receiver keeps up: nothing more, no syscall.
//! Otherwise it swaps `armed` to 0 and sends one byte (`MSG_DONTWAIT`) to
//! each armed slot's token address, from one unbound datagram socket per
//! process.
//!
//! The two sides are the Dekker pattern of the event and the bell: either
//! the notifier's load sees the armed bit (and the byte makes the socket
//! readable, whether or not the waiter is inside `poll` yet), or the
//! waiter's check sees the condition. Draining happens before arming, so a
//! byte sent for this arm is never drained by it.
//!
//! One wake-up per sleep: the sender's `sendto` wakes the `poll` directly,
//! as a `FUTEX_WAKE` wakes a `FUTEX_WAIT`; no helper thread forwards it.
//!
//! # What can delay a wake-up
//! - **Network namespaces.** Abstract socket addresses belong to a network
//!   namespace: a notifier in another one finds no socket at the address
//!   (`ECONNREFUSED`), and the waiter learns of the message only when its
//!   poll times out. This is why polls are bounded by [`SLICE`]. (Channels
//!   already require one pid namespace for liveness.)
//! - **A crashed waiter.** Its socket closes with the process, so bytes sent
//!   to its token fail with `ECONNREFUSED` and cost one syscall per notify
//!   that finds its bit still set (at most once: the notify clears it). Its
//!   slot stays claimed until a process that needs a slot and finds the
//!   table full probes every token (`connect` to the address: refused means
//!   dead) and takes a dead one over. A notifier never frees a slot, since
//!   "refused" may only mean "another network namespace".
//! - **A hostile or buggy peer** that can write the object can write the
//!   table. A garbage token makes notifiers send a byte to whatever
//!   shmkit readiness socket has that token (a spurious wake-up, which a
//!   "may be ready" descriptor allows) or to none (refused, ignored); it
//!   cannot aim at sockets outside the `shmkit-ready-` prefix. Clearing a
//!   waiter's bit or token makes notifiers skip it: the waiter then wakes at
//!   its [`SLICE`] timeout, as a futex waiter wakes at its sleep slice.
//!   Any process in the network namespace can also send to an abstract
//!   address (they have no permissions): again only spurious wake-ups, and
//!   the drain is bounded so a flood cannot hold a waiter.
//! - **Older builds** of shmkit do not look at the table: a waiter woken by
//!   them only at its slice timeout.
//!
//! At most [`MAX_FD_WAITERS`] descriptors per waiter table at once; one
//! more is refused with [`crate::ErrorKind::LimitExceeded`].
//!
//! # Async
//! With the `tokio` feature, `Receiver::recv_async`,
//! `Subscriber::recv_async` and `Board::changed` wait on this descriptor
//! through tokio's `AsyncFd`: no thread spins or polls.
//!
//! # Where the table lives
//! In space that was padding (zero in every object ever made, so old
//! objects have an empty table): a channel's at offset 576 (the second
//! cache line of the "data available" event's 128-byte block), a board's
//! and a broadcast's at offset 448 (the second line of the bell's block).

#[cfg(feature = "tokio")]
mod asynchronous;

/// Counters the tests watch.
#[cfg(test)]
pub(crate) mod tests_support {
    /// Arms that returned [`Arm::Sleep`](super::Arm::Sleep).
    pub(crate) static ARMED_TO_SLEEP: std::sync::atomic::AtomicU32 =
        std::sync::atomic::AtomicU32::new(0);
}

use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::primitive::{fence, AtomicU32, Ordering};

/// Descriptors one waiter table holds at once.
pub const MAX_FD_WAITERS: usize = 15;

/// The longest a caller should wait on a readiness descriptor before trying
/// again (module doc, "What can delay a wake-up"); also how often a
/// receiver waiting this way notices peers that died.
pub const SLICE: Duration = Duration::from_millis(250);

/// At most this many datagrams are drained per arm (a flood cannot hold a
/// waiter in its drain loop).
const MAX_DRAIN: usize = 64;

/// The prefix of every readiness socket's abstract address.
const ADDRESS_PREFIX: &[u8] = b"shmkit-ready-";

/// What an `arm_readiness` call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Arm {
    /// Something may be there already: try to receive again, do not sleep.
    Ready,
    /// Armed: sleep until the descriptor is readable (bounded by [`SLICE`]),
    /// then try again.
    Sleep,
}

/// The waiter table: 64 bytes of atomics next to an event or a bell (see
/// the module doc). Every bit pattern is valid; all zero is empty.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct FdWaiters {
    /// Bit i: the waiter in slot i sleeps on its descriptor.
    armed: AtomicU32,
    /// Slot i's socket token; 0 when the slot is free.
    tokens: [AtomicU32; MAX_FD_WAITERS],
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<FdWaiters>() == 64);
    assert!(std::mem::align_of::<FdWaiters>() == 4);
};

impl FdWaiters {
    /// An empty table in ordinary memory (tests).
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        FdWaiters {
            armed: AtomicU32::new(0),
            tokens: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    /// The table at `ptr`.
    ///
    /// # Safety
    /// `ptr` must be 4-byte aligned and valid for reads and writes of 64
    /// bytes for all of `'a`. Every bit pattern is a table.
    pub(crate) unsafe fn from_ptr<'a>(ptr: *mut u8) -> &'a FdWaiters {
        debug_assert!(ptr as usize % 4 == 0);
        // SAFETY: the caller guarantees alignment and validity; FdWaiters is
        // repr(C) atomics only, sound to share with writers in other processes.
        unsafe { &*ptr.cast::<FdWaiters>() }
    }

    /// The notifier's half, after the caller's `SeqCst` fence: wakes the
    /// armed descriptors, if any. One Relaxed load when none is armed.
    #[inline]
    pub(crate) fn notify(&self) {
        // Relaxed: ordered after the condition store by the caller's SeqCst
        // fence (SYNC POINT with the fence in `Readiness::arm`).
        let armed = self.armed.load(Ordering::Relaxed);
        if armed != 0 {
            self.wake();
        }
    }

    #[cold]
    fn wake(&self) {
        // Take every bit at once: each arm is answered by one byte only,
        // however many notifiers race here.
        let armed = self.armed.swap(0, Ordering::Relaxed);
        for slot in 0..MAX_FD_WAITERS {
            if armed & (1 << slot) == 0 {
                continue;
            }
            let token = self.tokens[slot].load(Ordering::Relaxed);
            if token != 0 {
                send_wake(token);
            }
        }
    }

    /// Claims a free slot for `token` (or one whose socket is gone).
    fn claim(&self, token: u32) -> Option<usize> {
        for (slot, word) in self.tokens.iter().enumerate() {
            // Relaxed: the token is only an address; nothing is published.
            if word
                .compare_exchange(0, token, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return Some(slot);
            }
        }
        for (slot, word) in self.tokens.iter().enumerate() {
            let old = word.load(Ordering::Relaxed);
            if old != 0
                && !token_alive(old)
                && word
                    .compare_exchange(old, token, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                return Some(slot);
            }
        }
        None
    }
}

/// The abstract address of a token, as a `sockaddr_un` and its length.
fn address(token: u32) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let name = format!("{token:08x}");
    // sun_path[0] stays 0: the abstract namespace.
    let bytes = ADDRESS_PREFIX.iter().chain(name.as_bytes());
    let mut len = 1;
    for (dst, &b) in addr.sun_path[1..].iter_mut().zip(bytes) {
        *dst = b as libc::c_char;
        len += 1;
    }
    let base = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    (addr, (base + len) as libc::socklen_t)
}

/// A non-blocking, close-on-exec `AF_UNIX` datagram socket.
fn datagram_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; it returns a new
    // descriptor or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The socket this process sends wake-ups from (unbound, made once).
fn sender_socket() -> Option<RawFd> {
    static SENDER: OnceLock<Option<OwnedFd>> = OnceLock::new();
    SENDER
        .get_or_init(|| datagram_socket().ok())
        .as_ref()
        .map(|fd| fd.as_raw_fd())
}

/// Sends the one-byte wake-up to `token`'s socket. Failures are ignored: a
/// full socket is readable already; a missing one belongs to a dead waiter
/// or another network namespace (module doc).
fn send_wake(token: u32) {
    let Some(fd) = sender_socket() else { return };
    let (addr, len) = address(token);
    let byte = 1u8;
    // SAFETY: `byte` and `addr` are live locals of the sizes given; `fd` is
    // the process's sender socket, never closed.
    let _ = unsafe {
        libc::sendto(
            fd,
            (&byte as *const u8).cast(),
            1,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    };
}

/// Whether a socket is bound at `token`'s address in this network
/// namespace (`connect` succeeds; nothing is sent).
fn token_alive(token: u32) -> bool {
    let Ok(probe) = datagram_socket() else {
        return true; // cannot tell: assume alive, take nothing over
    };
    let (addr, len) = address(token);
    // SAFETY: `addr` is a live local of length `len`; `probe` is ours.
    let rc = unsafe {
        libc::connect(
            probe.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ECONNREFUSED)
}

/// A random non-zero token.
fn random_token() -> u32 {
    let mut bytes = [0u8; 4];
    // SAFETY: getrandom(2) writes at most 4 bytes into `bytes`.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), 4, libc::GRND_NONBLOCK) };
    let mut token = u32::from_ne_bytes(bytes);
    if got != 4 {
        // No entropy yet (early boot): the pid and the clock are unique
        // enough, and a taken address is retried anyway.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        token = std::process::id().rotate_left(16) ^ nanos;
    }
    token.max(1)
}

/// A readiness descriptor: readable when the object it was made for may
/// have something for its owner (see the [module documentation](self)).
///
/// Made by `readiness()` on a [`Receiver`](crate::channel::Receiver), a
/// [`Subscriber`](crate::broadcast::Subscriber) or a
/// [`Board`](crate::board::Board); armed by that object's
/// `arm_readiness`. It keeps the object's mapping alive, and frees its slot
/// in the object's waiter table when dropped. `Send` and `Sync`: a
/// descriptor can be polled from any thread; arm it from one at a time.
pub struct Readiness {
    socket: OwnedFd,
    /// Whether a wake-up byte may be queued (or on its way): set by an arm
    /// that sleeps, or whose bit a notifier took; cleared by a drain. An
    /// arm drains only then, so a sleep costs one `recv`, not two.
    pending: std::sync::atomic::AtomicBool,
    token: u32,
    slot: usize,
    table: *const FdWaiters,
    /// Keeps the mapping holding `table` alive.
    _keep: Arc<dyn Send + Sync>,
    object: Arc<str>,
}

// SAFETY: `table` points into the mapping `_keep` holds, valid for the life
// of the value, and is only accessed atomically.
unsafe impl Send for Readiness {}
// SAFETY: as for Send; the socket is a descriptor, usable from any thread.
unsafe impl Sync for Readiness {}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("object", &self.object)
            .field("fd", &self.socket.as_raw_fd())
            .field("slot", &self.slot)
            .field("token", &format_args!("{:08x}", self.token))
            .finish()
    }
}

impl Readiness {
    /// Binds a new socket and claims a slot in `table`.
    ///
    /// # Safety
    /// `table` must point to a waiter table that stays valid (mapped) for
    /// as long as `keep` is alive.
    pub(crate) unsafe fn register(
        table: *const FdWaiters,
        keep: Arc<dyn Send + Sync>,
        object: &Arc<str>,
    ) -> Result<Readiness> {
        let os = |errno: std::io::Error| {
            Error::os(
                "make a readiness descriptor for",
                &**object,
                errno.raw_os_error().unwrap_or(libc::EIO),
            )
        };
        let socket = datagram_socket().map_err(os)?;
        let mut token = 0;
        for _ in 0..16 {
            let candidate = random_token();
            let (addr, len) = address(candidate);
            // SAFETY: `addr` is a live local of length `len`; `socket` is ours.
            let rc = unsafe {
                libc::bind(
                    socket.as_raw_fd(),
                    (&addr as *const libc::sockaddr_un).cast(),
                    len,
                )
            };
            if rc == 0 {
                token = candidate;
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EADDRINUSE) {
                return Err(os(err));
            }
        }
        if token == 0 {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                "make a readiness descriptor for",
                &**object,
                "16 random socket addresses in a row were taken",
            ));
        }
        // SAFETY: the caller guarantees `table` is valid while `keep` lives,
        // and we hold `keep` here.
        let waiters = unsafe { &*table };
        let slot = waiters.claim(token).ok_or_else(|| {
            Error::new(
                ErrorKind::LimitExceeded,
                "make a readiness descriptor for",
                &**object,
                format!("all {MAX_FD_WAITERS} readiness slots are taken by live waiters"),
            )
        })?;
        Ok(Readiness {
            socket,
            pending: std::sync::atomic::AtomicBool::new(false),
            token,
            slot,
            table,
            _keep: keep,
            object: Arc::clone(object),
        })
    }

    fn waiters(&self) -> &FdWaiters {
        // SAFETY: `table` stays valid while `_keep` lives (register's
        // contract), which is at least as long as `self`.
        unsafe { &*self.table }
    }

    /// Whether this descriptor was made for the table at `table`.
    pub(crate) fn belongs_to(&self, table: *const FdWaiters) -> bool {
        std::ptr::eq(self.table, table)
    }

    /// The error for a descriptor armed on an object it was not made for.
    pub(crate) fn foreign(&self, object: &str) -> Error {
        Error::new(
            ErrorKind::InvalidArgument,
            "arm readiness on",
            object,
            format!("this readiness descriptor was made for {}", self.object),
        )
    }

    /// The waiter's half (module doc): drain, arm, fence, check `cond`.
    pub(crate) fn arm(&self, cond: impl FnOnce() -> bool) -> Arm {
        // Relaxed: our own flag (a descriptor is armed from one thread at
        // a time).
        if self
            .pending
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.drain(1);
        }
        let waiters = self.waiters();
        let bit = 1u32 << self.slot;
        // A slot taken over (by a prober that judged us dead, which only
        // a network-namespace mix-up or a hostile write can cause) is
        // claimed back if free; if not, we still arm: the slice bounds it.
        let token = &waiters.tokens[self.slot];
        if token.load(Ordering::Relaxed) != self.token {
            let _ = token.compare_exchange(0, self.token, Ordering::Relaxed, Ordering::Relaxed);
        }
        // Relaxed: the fence below orders it.
        waiters.armed.fetch_or(bit, Ordering::Relaxed);
        // SYNC POINT (Dekker): pairs with the notifier's SeqCst fence before
        // its load of `armed` (`FdWaiters::notify`). Either it sees our bit,
        // or `cond` below sees its condition store.
        fence(Ordering::SeqCst);
        if cond() {
            // Take the bit back so the next notify makes no syscall for us;
            // if a notifier took it first, its byte is on the way.
            let before = waiters.armed.fetch_and(!bit, Ordering::Relaxed);
            if before & bit == 0 {
                self.pending
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            return Arm::Ready;
        }
        self.pending
            .store(true, std::sync::atomic::Ordering::Relaxed);
        #[cfg(test)]
        tests_support::ARMED_TO_SLEEP.fetch_add(1, Ordering::Relaxed);
        Arm::Sleep
    }

    /// Empties the descriptor (reads the queued wake-ups, at most 64).
    /// `arm_readiness` does this itself; call it only to stop a readable
    /// descriptor from waking an event loop again.
    pub fn clear(&self) {
        self.pending
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.drain(MAX_DRAIN);
    }

    /// Reads up to `max` queued datagrams (stops at the first EAGAIN). One
    /// per arm is enough: a notifier sends one byte per arm it answers;
    /// stray ones (a hostile sender, a lost race) cost a spurious wake-up
    /// each, and each such wake-up's arm reads one more.
    fn drain(&self, max: usize) {
        let mut buf = [0u8; 16];
        for _ in 0..max {
            // SAFETY: `buf` is a live local of the length given.
            let n = unsafe {
                libc::recv(
                    self.socket.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                break;
            }
        }
    }

    /// Waits until the descriptor is readable or `timeout` passes (`None`:
    /// for ever); returns whether it became readable. A plain `poll(2)`,
    /// for callers without an event loop; signals end the wait early
    /// (`Ok(false)`).
    ///
    /// # Errors
    /// Only if `poll` fails for a reason other than a signal.
    #[doc(alias = "poll")]
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.map_or(-1, |t| {
            // Round up: a wait of 0.5 ms must not become a busy poll.
            i32::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX)
        });
        // SAFETY: one live pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                return Ok(false);
            }
            return Err(Error::os(
                "wait for readiness of",
                &*self.object,
                err.raw_os_error().unwrap_or(libc::EIO),
            ));
        }
        Ok(rc > 0)
    }

    /// The object this descriptor was made for.
    pub fn object(&self) -> &str {
        &self.object
    }
}

impl AsFd for Readiness {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for Readiness {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        let waiters = self.waiters();
        waiters
            .armed
            .fetch_and(!(1u32 << self.slot), Ordering::Relaxed);
        // Only our own token: a slot taken over is someone else's now.
        let _ = waiters.tokens[self.slot].compare_exchange(
            self.token,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Instant;

    fn table_in(region: &crate::Region) -> *const FdWaiters {
        region
            .as_mut_ptr()
            .unwrap()
            .cast::<FdWaiters>()
            .cast_const()
    }

    fn register(region: &Arc<crate::Region>) -> Result<Readiness> {
        let table = table_in(region);
        let keep: Arc<dyn Send + Sync> = region.clone();
        // SAFETY: the table is the region's first 64 bytes; `keep` holds the region.
        unsafe { Readiness::register(table, keep, &Arc::from("/test")) }
    }

    #[test]
    fn a_notify_wakes_an_armed_descriptor_in_another_process_and_only_then() {
        let region = Arc::new(crate::Region::anonymous(4096).unwrap());
        let flag = region.atomic_u32(128).unwrap();
        let ready = register(&region).unwrap();
        assert!(!ready.wait(Some(Duration::ZERO)).unwrap());
        assert_eq!(ready.arm(|| false), Arm::Sleep);
        // SAFETY: the child only stores, fences and sends, then _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            std::thread::sleep(Duration::from_millis(50));
            flag.store(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            // SAFETY: the table lies in the shared anonymous mapping.
            unsafe { &*table_in(&region) }.notify();
            // SAFETY: ends the child without running the parent's handlers.
            unsafe { libc::_exit(0) };
        }
        let start = Instant::now();
        assert!(ready.wait(Some(Duration::from_secs(10))).unwrap());
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(flag.load(Ordering::Relaxed), 1);
        // SAFETY: reaps our own child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        // The arm drains the byte; with nothing new, the fd stays quiet.
        assert_eq!(ready.arm(|| false), Arm::Sleep);
        assert!(!ready.wait(Some(Duration::from_millis(30))).unwrap());
        // A notify with nobody armed sends nothing.
        let waiters = ready.waiters();
        waiters.armed.store(0, Ordering::Relaxed);
        waiters.notify();
        assert!(!ready.wait(Some(Duration::from_millis(10))).unwrap());
    }

    #[test]
    fn a_condition_already_true_disarms() {
        let region = Arc::new(crate::Region::anonymous(4096).unwrap());
        let ready = register(&region).unwrap();
        assert_eq!(ready.arm(|| true), Arm::Ready);
        assert_eq!(ready.waiters().armed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn slots_are_limited_freed_on_drop_and_dead_ones_taken_over() {
        let region = Arc::new(crate::Region::anonymous(4096).unwrap());
        let all: Vec<_> = (0..MAX_FD_WAITERS)
            .map(|_| register(&region).unwrap())
            .collect();
        let err = register(&region).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
        drop(all);
        let waiters = FdWaiters::new();
        // A token no socket has (a crashed waiter's) is taken over.
        waiters.tokens[0].store(0xdead_0001, Ordering::Relaxed);
        for t in &waiters.tokens[1..] {
            t.store(0xdead_0001, Ordering::Relaxed);
        }
        assert_eq!(waiters.claim(7), Some(0));
        let me = register(&region).unwrap();
        assert_eq!(me.slot, 0);
    }

    #[test]
    fn garbage_tokens_and_bits_cost_nothing_but_a_send() {
        let waiters = FdWaiters::new();
        waiters.armed.store(u32::MAX, Ordering::Relaxed);
        waiters.tokens[3].store(0x1234_5678, Ordering::Relaxed);
        waiters.notify();
        assert_eq!(waiters.armed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn addresses_carry_the_prefix_and_the_token() {
        let (addr, len) = address(0xab);
        let base = std::mem::offset_of!(libc::sockaddr_un, sun_path);
        let name: Vec<u8> = addr.sun_path[..len as usize - base]
            .iter()
            .map(|&c| c as u8)
            .collect();
        assert_eq!(name, b"\0shmkit-ready-000000ab");
    }
}
