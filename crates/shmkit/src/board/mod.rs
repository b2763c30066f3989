//! Blackboards: one value, written by one writer at a time and read by any
//! number of readers in any number of processes, each of whom sees the
//! latest complete value and its version.
//!
//! A board is a named POSIX object holding a [`layout`](crate::layout)
//! header, a control block and two value slots. The algorithm is a
//! double-buffered sequence lock (the `seqlock` module, model-checked with
//! loom):
//!
//! - **The writer never waits.** Readers only load; nothing a reader does
//!   (or fails to do: a stalled or killed reader) can hold the writer up.
//! - **Readers never see a torn value.** A reader copies with word-sized
//!   atomic loads between Acquire fences and retries if the writer reused
//!   the slot meanwhile; each accepted copy is exactly one complete version.
//! - **A writer killed mid-write hides nothing.** The value being written
//!   goes into the slot *not* holding the latest complete value, so readers
//!   go on reading that one; the next writer finishes the interrupted
//!   version.
//! - **One writer at a time.** [`Board::writer`] claims the board's writer
//!   identity word (pid and start time); a second claim fails with
//!   "board has a live writer pid N" unless that process is dead, in which
//!   case it is taken over.
//! - **Watching.** [`Board::wait_for_change`] spins briefly, then sleeps on
//!   a shared futex (a bell: like [`Event`](crate::sync::Event), but the
//!   writer makes at most one wake-up syscall per sleep, and none while
//!   nobody sleeps).
//!
//! # Readers that cannot keep up
//! A copy is refused only if the writer completed *two* writes during it
//! (the first goes to the other slot). A reader retries at once a few times,
//! then yields and sleeps briefly between attempts (a reader descheduled
//! mid-copy is the usual cause); after [`READ_PATIENCE`] of refused copies
//! it returns [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut) rather than spin for ever. With values
//! of a few KiB that takes a writer completing a write every few
//! hundred nanoseconds *and* a reader preempted on every attempt.
//!
//! ```text
//! offset          contents
//! 0               object header (magic, version, kind, ready flag, creator)
//! 64              parameters (maximum size, slot size, value type), claims
//! 128             writer identity word (pid | start time)
//! 256             sequence word            (own 128-byte block)
//! 384             "new version" bell       (own 128-byte block)
//! 448             readiness waiter table   (`crate::readiness`)
//! 512             slot 0: length word, then the value as 64-bit words
//! 512 + slot size slot 1
//! ```
//!
//! # Keyed boards
//! [`KeyedBoard`] holds a fixed set of named keys (given at creation, each
//! with its own maximum size), and each key is a board of its own: its own
//! sequence lock and version, its own writer (one per key, taken over per
//! key when it dies), its own bell, so a watcher of one key never wakes for
//! another. [`KeyedBoard::snapshot`] reads several keys (or all) as they
//! all were at one instant. `shmkit board create NAME --key pose=64 --key
//! status=1K`, `board set NAME KEY VALUE`, `board get NAME [KEY...]`,
//! `board ls NAME`.
//!
//! All processes must share a pid namespace: writer liveness is judged from
//! `/proc/PID/stat`.
//!
//! # Two processes
//! One program, started twice: `pose write` publishes a position ten
//! times a second, `pose watch` prints each new version as it comes (a
//! watcher sleeps on the board's futex between versions).
//!
//! ```no_run
//! use std::time::Duration;
//! use shmkit::board::{Board, BoardOptions};
//!
//! fn main() -> shmkit::Result<()> {
//!     let mut options = BoardOptions::new();
//!     options.max_size(64);
//!     let pose = Board::open_or_create("/pose", &options)?;
//!     if std::env::args().nth(1).as_deref() == Some("write") {
//!         let mut writer = pose.writer()?;
//!         for step in 0..100 {
//!             writer.write(format!("x={step} y={}", step * 2).as_bytes())?;
//!             std::thread::sleep(Duration::from_millis(100));
//!         }
//!     } else {
//!         let (mut value, mut version) = pose.read()?;
//!         loop {
//!             println!("{version}: {}", String::from_utf8_lossy(&value));
//!             (value, version) = pose.wait_for_change(version, Some(Duration::from_secs(5)))?;
//!         }
//!     }
//!     Ok(())
//! }
//! ```
//!
//! ```no_run
//! use std::time::Duration;
//! use shmkit::board::{Board, BoardOptions};
//!
//! let board = Board::create("/weather", BoardOptions::new().max_size(256))?;
//! let mut writer = board.writer()?;
//! writer.write(b"sunny, 21 C")?;
//!
//! // In another process:
//! let board = Board::open("/weather")?;
//! let (value, version) = board.read()?;
//! let (next, _) = board.wait_for_change(version, Some(Duration::from_secs(5)))?;
//! # Ok::<(), shmkit::Error>(())
//! ```

// Under loom only the models use the algorithm.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) mod seqlock;

#[cfg(not(loom))]
mod shared;

#[cfg(not(loom))]
mod keyed;

#[cfg(not(loom))]
pub use keyed::*;
#[cfg(not(loom))]
pub use shared::*;
