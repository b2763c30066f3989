//! Thin wrappers over the *shared* `futex(2)` operations `FUTEX_WAIT` and
//! `FUTEX_WAKE`.
//!
//! A futex is a 32-bit word in memory plus a kernel wait queue keyed on that
//! word. Private futexes (`FUTEX_PRIVATE_FLAG`, what std and parking_lot use)
//! key the queue on the calling process's address space, so they never wake a
//! process other than the caller's. These wrappers never set that flag: the
//! kernel keys the queue on the physical page (inode and offset for a shared
//! mapping), and a waiter in one process is woken by a waker in another even
//! when the two map the word at different addresses.
//!
//! These are building blocks: [`Event`](super::Event) is the protocol built on
//! them (spin, register as a sleeper, sleep, no syscall when nobody sleeps).
//!
//! Under `cfg(loom)` the same functions are a model of the kernel's contract
//! (check the word and enqueue atomically with respect to wakers; wake at most
//! `count` queued waiters) built from loom's mutex and condition variable, so
//! a lost wake-up shows up in the model as a deadlock.
//!
//! See [futex(2)](https://man7.org/linux/man-pages/man2/futex.2.html) and
//! [futex(7)](https://man7.org/linux/man-pages/man7/futex.7.html).

#[cfg(not(loom))]
use std::time::Duration;

#[cfg(not(loom))]
use crate::error::Result;
#[cfg(not(loom))]
use crate::primitive::AtomicU32;

/// How a [`wait`] ended. Every outcome may be spurious: a caller re-checks
/// its condition whatever it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A `FUTEX_WAKE` woke the caller (or the kernel woke it spuriously).
    Woken,
    /// The word did not hold the expected value when the kernel looked
    /// (`EAGAIN`): it changed since the caller read it.
    Changed,
    /// The timeout ran out (`ETIMEDOUT`).
    TimedOut,
    /// A signal handler ran (`EINTR`).
    Interrupted,
}

/// Sleeps while `word` holds `expected`, for at most `timeout` (measured on
/// `CLOCK_MONOTONIC`) or until a [`wake`] on the same word from any process.
///
/// `syscall(SYS_futex, word, FUTEX_WAIT, expected, timeout)`, without
/// `FUTEX_PRIVATE_FLAG`. The kernel compares the word with `expected` and
/// queues the caller atomically with respect to [`wake`]: a waker that
/// changes the word and then wakes cannot slip between the comparison and
/// the sleep.
///
/// # Errors
/// Only for an invalid address or operation (`EFAULT`, `EINVAL`,
/// `ENOSYS`), which a live `&AtomicU32` rules out in practice; the ordinary
/// outcomes are [`Wake`] values.
#[cfg(not(loom))]
#[doc(alias = "FUTEX_WAIT")]
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Result<Wake> {
    use rustix::io::Errno;
    use rustix::thread::futex;

    let timespec = timeout.map(|t| futex::Timespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    // Flags::empty(): a shared futex, keyed on the page rather than on this
    // process's address space, so another process's `wake` reaches us.
    match futex::wait(word, futex::Flags::empty(), expected, timespec.as_ref()) {
        Ok(()) => Ok(Wake::Woken),
        Err(Errno::AGAIN) => Ok(Wake::Changed),
        Err(Errno::TIMEDOUT) => Ok(Wake::TimedOut),
        Err(Errno::INTR) => Ok(Wake::Interrupted),
        Err(e) => Err(crate::Error::os("wait on", "futex", e.raw_os_error())),
    }
}

/// Wakes at most `count` processes or threads sleeping in [`wait`] on
/// `word`, and returns how many it woke.
///
/// `syscall(SYS_futex, word, FUTEX_WAKE, count)`, without
/// `FUTEX_PRIVATE_FLAG`. `count` above `i32::MAX` means all of them (the
/// kernel reads it as a signed int). Change the word *before* waking, or a
/// waiter about to sleep will not notice.
///
/// # Errors
/// Only for an invalid address (`EFAULT`, `EINVAL`).
#[cfg(not(loom))]
#[doc(alias = "FUTEX_WAKE")]
pub fn wake(word: &AtomicU32, count: u32) -> Result<usize> {
    use rustix::thread::futex;
    let count = count.min(i32::MAX as u32);
    futex::wake(word, futex::Flags::empty(), count)
        .map_err(|e| crate::Error::os("wake", "futex", e.raw_os_error()))
}

#[cfg(loom)]
pub use model::{timed_waits_block, wait, wake};

/// A model of the kernel's futex contract for loom.
#[cfg(loom)]
mod model {
    use super::Wake;
    use crate::error::Result;
    use crate::primitive::{AtomicU32, Ordering};
    use loom::sync::{Condvar, Mutex};
    use std::time::Duration;

    /// The kernel's wait queue: every futex hashes to this one bucket.
    #[derive(Default)]
    struct Queue {
        next_ticket: u64,
        /// Sleepers in arrival order: (word address, ticket).
        sleeping: Vec<(usize, u64)>,
        /// Tickets that a `wake` picked and that have not left `wait` yet.
        woken: Vec<u64>,
    }

    loom::lazy_static! {
        static ref BUCKET: (Mutex<Queue>, Condvar) = (Mutex::new(Queue::default()), Condvar::new());
    }

    loom::lazy_static! {
        static ref TIMED_WAITS_BLOCK: crate::primitive::AtomicUsize =
            crate::primitive::AtomicUsize::new(0);
    }

    /// Makes every timed wait of this execution block like an untimed one
    /// until a `wake` picks it (its time never runs out): for models of
    /// timed waits (bounded slices, deadlines) that must show a lost
    /// wake-up as a deadlock. Call it first in the model's closure.
    pub fn timed_waits_block() {
        TIMED_WAITS_BLOCK.store(1, Ordering::Relaxed);
    }

    /// Checks the word and queues the caller under the bucket lock, as the
    /// kernel does, then blocks until a `wake` picks its ticket. A timed
    /// wait returns as if the time ran out at once (an outcome a caller
    /// must cope with anyway), unless the model asked for
    /// [`timed_waits_block`].
    pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Result<Wake> {
        let (lock, cond) = &*BUCKET;
        let mut queue = lock.lock().unwrap();
        // The kernel reads the word after a full barrier, under the bucket
        // lock that `wake` also takes.
        if word.load(Ordering::SeqCst) != expected {
            return Ok(Wake::Changed);
        }
        if timeout.is_some() && TIMED_WAITS_BLOCK.load(Ordering::Relaxed) == 0 {
            drop(queue);
            loom::thread::yield_now();
            return Ok(Wake::TimedOut);
        }
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue
            .sleeping
            .push((word as *const AtomicU32 as usize, ticket));
        loop {
            queue = cond.wait(queue).unwrap();
            if let Some(i) = queue.woken.iter().position(|&t| t == ticket) {
                queue.woken.swap_remove(i);
                return Ok(Wake::Woken);
            }
        }
    }

    /// Picks at most `count` sleepers on `word`, oldest first, and lets them go.
    pub fn wake(word: &AtomicU32, count: u32) -> Result<usize> {
        let (lock, cond) = &*BUCKET;
        let mut queue = lock.lock().unwrap();
        let addr = word as *const AtomicU32 as usize;
        let mut woken = 0;
        while woken < count as usize {
            let Some(i) = queue.sleeping.iter().position(|&(a, _)| a == addr) else {
                break;
            };
            let (_, ticket) = queue.sleeping.remove(i);
            queue.woken.push(ticket);
            woken += 1;
        }
        if woken > 0 {
            cond.notify_all();
        }
        Ok(woken)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn wait_returns_at_once_when_the_word_changed() {
        let word = AtomicU32::new(5);
        assert_eq!(wait(&word, 4, None).unwrap(), Wake::Changed);
    }

    #[test]
    fn wait_times_out() {
        let word = AtomicU32::new(0);
        let start = Instant::now();
        let got = wait(&word, 0, Some(Duration::from_millis(20))).unwrap();
        // A spurious wake-up is allowed; a timeout is what normally happens.
        assert!(matches!(got, Wake::TimedOut | Wake::Woken), "{got:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn wake_reaches_a_sleeping_thread() {
        use std::sync::atomic::Ordering;
        let word = Arc::new(AtomicU32::new(0));
        let sleeper = {
            let word = Arc::clone(&word);
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                while word.load(Ordering::Acquire) == 0 && Instant::now() < deadline {
                    wait(&word, 0, Some(Duration::from_secs(10))).unwrap();
                }
                word.load(Ordering::Acquire)
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        word.store(1, Ordering::Release);
        wake(&word, 1).unwrap();
        assert_eq!(sleeper.join().unwrap(), 1);
    }
}
