//! The identity of a process: a pid and the time it started.
//!
//! A pid alone is reused by the kernel, so "is the process that took this
//! slot still alive?" asked with a bare pid can answer yes about a stranger.
//! The start time (field 22 of `/proc/PID/stat`, in clock ticks since boot)
//! tells two processes with the same pid apart, and needs no handle kept open.
//!
//! # When `/proc/PID` cannot be read
//! A process of another user under `hidepid=1/2`, or one this process may
//! not inspect, has a `/proc` entry that cannot be read (or that does not
//! show at all) although it runs. Unreadable is therefore never taken for
//! dead: the pid is then probed with `kill(pid, 0)` (`ESRCH`: no such
//! process; success or `EPERM`: it exists), and an existing pid whose start
//! time cannot be read counts as alive, since nothing proves it is another
//! process. The cost is that such a peer, once dead, is recognised only
//! when its pid is gone, not when the pid is reused. Peers in another pid
//! namespace are not supported: their pids mean nothing here.

use std::fs;

/// A process, identified beyond pid reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId {
    /// The process id.
    pub pid: u32,
    /// When it started, in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        ProcessId {
            pid,
            // Our own /proc entry is always readable; 0 only if /proc is not mounted.
            start_time: start_time(pid).unwrap_or(0),
        }
    }

    /// Whether this very process (not merely its pid) is still running.
    ///
    /// A zombie (exited, not yet reaped) counts as gone. A start time of 0
    /// means "unknown" and falls back to the pid alone.
    /// A `/proc` entry that cannot be read counts as alive while the pid
    /// exists (see the [module documentation](self)).
    pub fn is_alive(&self) -> bool {
        match read_stat(self.pid) {
            Some(stat) => {
                let same = self.start_time == 0 || stat.start_time == self.start_time;
                same && stat.state != 'Z' && stat.state != 'X'
            }
            None => pid_exists(self.pid),
        }
    }
}

/// Whether a process with this pid exists, by `kill(pid, 0)`: `ESRCH` says
/// no; success and `EPERM` (it exists, we may not signal it) say yes, and so
/// does any other failure (nothing proves it gone).
#[doc(alias = "kill")]
fn pid_exists(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false; // 0 or beyond any pid: nobody
    };
    !matches!(
        rustix::process::test_kill_process(p),
        Err(rustix::io::Errno::SRCH)
    )
}

struct Stat {
    state: char,
    start_time: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(stat_path(pid)).ok()?;
    parse_stat(&text)
}

#[cfg(not(test))]
fn stat_path(pid: u32) -> String {
    format!("/proc/{pid}/stat")
}

/// Under test, a thread may point `/proc` elsewhere to play an unreadable
/// entry (see `tests::with_proc_root`).
#[cfg(test)]
fn stat_path(pid: u32) -> String {
    let root = tests::PROC_ROOT.with(|r| r.borrow().clone());
    format!("{}/{pid}/stat", root.as_deref().unwrap_or("/proc"))
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and
/// may itself contain spaces and parentheses, so fields are counted from the
/// last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3) come fields 4..; start time is field 22.
    let start_time = fields.nth(22 - 4)?.parse().ok()?;
    Some(Stat { state, start_time })
}

/// The start time of process `pid`, or None if it does not exist (or its
/// entry cannot be read).
pub fn start_time(pid: u32) -> Option<u64> {
    read_stat(pid).map(|s| s.start_time)
}

/// Forks this process (and its ancestors, from the first [`Home::here`])
/// has gone through: a `pthread_atfork` child handler adds one in every
/// child, so a handle made before a fork sees another count in the child.
#[cfg(not(loom))]
static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs in the child of every `fork` (async-signal-safe: one atomic add).
#[cfg(not(loom))]
extern "C" fn count_fork() {
    FORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// The process a handle was made in, told apart from a forked child that
/// inherited the handle's memory: the child holds the parent's handles,
/// whose identity words and claimed slots belong to the parent, and must
/// neither use them nor give them back on drop.
///
/// Checking costs one relaxed load of a process-wide counter (no `getpid`
/// syscall, which glibc no longer caches). Forks are seen through
/// `pthread_atfork`, so a child made by a raw `clone`/`fork` system call
/// that bypasses the C library is not detected.
#[cfg(not(loom))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Home {
    forks: u64,
}

#[cfg(not(loom))]
impl Home {
    /// This process, as it is now.
    pub(crate) fn here() -> Home {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            // SAFETY: registers a child handler that only does an atomic
            // add on a static, which is async-signal-safe as a handler run
            // after fork must be; no prepare or parent handlers. Failure
            // (ENOMEM) leaves forks undetected, as before.
            let _ = unsafe { libc::pthread_atfork(None, None, Some(count_fork)) };
        });
        Home {
            forks: FORKS.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Whether this is still the process the handle was made in (not a
    /// child forked since).
    #[inline]
    pub(crate) fn is_here(self) -> bool {
        // Relaxed: only this thread's own process history matters, and a
        // fork's child handler runs on the forking thread before fork returns.
        FORKS.load(std::sync::atomic::Ordering::Relaxed) == self.forks
    }

    /// What a child forked after `self` was taken sees (for unit tests).
    #[cfg(test)]
    pub(crate) fn forked(self) -> Home {
        Home {
            forks: self.forks + 1,
        }
    }
}

/// The error for a handle used in a child forked after it was made.
#[cfg(not(loom))]
pub(crate) fn forked_error(op: &'static str, object: &str, what: &str) -> crate::error::Error {
    crate::error::Error::new(
        crate::error::ErrorKind::InvalidArgument,
        op,
        object,
        format!(
            "this {what} was made in the parent of a fork and belongs to it; a forked child must open and connect its own"
        ),
    )
}

/// Bits of a pid in an [identity word](identity_word).
const WORD_PID_BITS: u32 = 22;
/// Where the start time begins in an identity word (bits 22 and 23 are left
/// to the caller, for a role).
const WORD_START_SHIFT: u32 = 24;
const WORD_START_MASK: u64 = (1 << (64 - WORD_START_SHIFT)) - 1;

/// Packs a process identity into one word for a table in shared memory, so
/// it can be claimed and released with a single compare-and-swap:
///
/// ```text
///  63                         24 23   22 21          0
/// +-----------------------------+-------+-------------+
/// | start time, low 40 bits     | spare |  pid        |
/// +-----------------------------+-------+-------------+
/// ```
///
/// Linux pids are below 2²² (`pid_max` can be at most 4194304), and a live
/// process is never pid 0, so a claimed word is never 0: 0 means "nobody".
/// 40 bits of clock ticks are 348 years at 100 Hz.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn identity_word(p: ProcessId) -> u64 {
    (u64::from(p.pid) & ((1 << WORD_PID_BITS) - 1))
        | ((p.start_time & WORD_START_MASK) << WORD_START_SHIFT)
}

/// The pid of an identity word (0: nobody).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn identity_pid(word: u64) -> u32 {
    (word & ((1 << WORD_PID_BITS) - 1)) as u32
}

/// Whether the process an identity word names (pid and start time) is still
/// running; false for 0. Reads `/proc`: not for hot paths.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn identity_alive(word: u64) -> bool {
    let pid = identity_pid(word);
    if pid == 0 {
        return false;
    }
    #[cfg(test)]
    tests::PROBES.with(|n| n.set(n.get() + 1));
    let start = (word >> WORD_START_SHIFT) & WORD_START_MASK;
    // One read of /proc/PID/stat answers both questions: same process
    // (start time), and still running (not a zombie).
    match read_stat(pid) {
        // A recorded start time of 0 is "unknown" (its process had no
        // /proc): the pid is all there is to go by.
        Some(stat) if start == 0 || stat.start_time & WORD_START_MASK == start => {
            stat.state != 'Z' && stat.state != 'X'
        }
        // Readable, another start time: the pid was reused.
        Some(_) => false,
        // Unreadable (hidepid, another user): alive while the pid exists.
        None => pid_exists(pid),
    }
}

/// How long a cached "alive" verdict is trusted (see [`Liveness`]).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// Verdicts of [`identity_alive`] kept by one mapped object, so that the
/// endpoints blocked on it do not re-read every peer's `/proc` entry at
/// every liveness slice (issue 15, defect 11: 64 entries every 50 ms per
/// blocked endpoint).
///
/// A "dead" verdict is final: an identity word names one process (pid and
/// start time), which never runs again. An "alive" verdict is trusted for
/// [`RECHECK`], so a peer that dies is noticed within that much more time.
/// A word not seen before (someone joined: the table changed) is probed at
/// once.
#[cfg_attr(loom, allow(dead_code))]
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    verdicts: std::sync::Mutex<Vec<Verdict>>,
}

#[derive(Debug, Clone, Copy)]
struct Verdict {
    word: u64,
    alive: bool,
    at: std::time::Instant,
}

/// Verdicts one cache keeps; beyond, the oldest are dropped (a table has 64
/// to 128 entries, and hostile words must not grow the cache).
const MAX_VERDICTS: usize = 256;

#[cfg_attr(loom, allow(dead_code))]
impl Liveness {
    /// Whether the process `word` names runs, from the cache when it can.
    /// The caller's bits 22 and 23 (a role) do not matter.
    pub(crate) fn alive(&self, word: u64) -> bool {
        let word = word & !(0b11 << WORD_PID_BITS);
        if identity_pid(word) == 0 {
            return false;
        }
        let now = std::time::Instant::now();
        let cached = self
            .lock()
            .iter()
            .find(|v| v.word == word)
            .filter(|v| !v.alive || now.duration_since(v.at) < RECHECK)
            .map(|v| v.alive);
        if let Some(alive) = cached {
            return alive;
        }
        // Probed without the lock: /proc is slow, and others may ask.
        let alive = identity_alive(word);
        let mut verdicts = self.lock();
        verdicts.retain(|v| v.word != word);
        if verdicts.len() >= MAX_VERDICTS {
            verdicts.remove(0);
        }
        verdicts.push(Verdict {
            word,
            alive,
            at: now,
        });
        alive
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Verdict>> {
        // A panic elsewhere while holding it leaves a list of verdicts
        // that is still a valid list.
        self.verdicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        /// Where this thread's `/proc` lookups go (None: `/proc`).
        pub(super) static PROC_ROOT: RefCell<Option<String>> = const { RefCell::new(None) };
        /// How many identities this thread probed in `/proc`.
        pub(crate) static PROBES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Probes of `/proc` made by `f` on this thread.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn probes_in(f: impl FnOnce()) -> usize {
        let before = PROBES.with(|n| n.get());
        f();
        PROBES.with(|n| n.get()) - before
    }

    /// Runs `f` with this thread's `/proc` lookups sent to `root`.
    fn with_proc_root<T>(root: &std::path::Path, f: impl FnOnce() -> T) -> T {
        PROC_ROOT.with(|r| *r.borrow_mut() = Some(root.to_str().unwrap().to_owned()));
        let out = f();
        PROC_ROOT.with(|r| *r.borrow_mut() = None);
        out
    }

    /// Issue 15, defect 3: a live process whose `/proc` entry cannot be
    /// read (hidepid, another uid) is alive, not reaped as dead; a pid that
    /// does not exist is still dead.
    #[test]
    fn an_unreadable_proc_entry_is_not_a_dead_process() {
        let me = ProcessId::current();
        let word = identity_word(me);
        let hidden = tempfile::tempdir().unwrap();
        // An entry that exists but cannot be read as a file (EISDIR), and
        // no entry at all (ENOENT, as hidepid=2 shows it).
        std::fs::create_dir_all(hidden.path().join(me.pid.to_string()).join("stat")).unwrap();
        let empty = tempfile::tempdir().unwrap();
        for root in [hidden.path(), empty.path()] {
            with_proc_root(root, || {
                assert!(me.is_alive());
                assert!(identity_alive(word));
            });
        }
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = ProcessId {
            pid: child.id(),
            start_time: start_time(child.id()).unwrap_or(0),
        };
        child.wait().unwrap();
        with_proc_root(empty.path(), || {
            assert!(!gone.is_alive());
            assert!(!identity_alive(identity_word(gone)));
        });
    }

    #[test]
    fn parses_names_with_spaces_and_parentheses() {
        let line = "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn current_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessId::current();
        assert!(me.start_time > 0);
        assert!(me.is_alive());
        let impostor = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!impostor.is_alive());
    }

    #[test]
    fn a_reaped_child_is_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = ProcessId {
            pid: child.id(),
            start_time: start_time(child.id()).unwrap_or(0),
        };
        child.wait().unwrap();
        assert!(!id.is_alive());
    }

    #[test]
    fn identity_words_name_live_processes_only() {
        let me = ProcessId::current();
        let word = identity_word(me);
        assert_ne!(word, 0);
        assert_eq!(identity_pid(word), me.pid);
        assert!(identity_alive(word));
        assert!(!identity_alive(0));
        let other_start = identity_word(ProcessId {
            start_time: me.start_time + 1,
            ..me
        });
        assert!(!identity_alive(other_start));
    }
}
