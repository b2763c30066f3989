//! Bounded producer/consumer channels between processes: the textbook
//! bounded buffer, without its four faults (uninitialised semaphores, a
//! never-removed object, loops that never end, and a deadlock when a process
//! dies holding the lock).
//!
//! A channel is a named POSIX object holding a [`layout`](crate::layout)
//! header, a table of connected endpoints, and a ring of fixed-size slots
//! (the `ring` module holds the lock-free, crash-tolerant algorithm). Any number of
//! processes may send and receive at once.
//!
//! A channel created with [`ChannelOptions::spsc`] takes one sender and one
//! receiver at a time and runs the `spsc` ring instead: each slot carries a
//! sequence word the consumer polls, and the two positions are written by
//! one side each, so a message crosses in one cache-line transfer with no
//! compare-and-swap (the shared ring needs two transfers and two CAS per
//! side). Same layout, same calls, same crash handling, except that a
//! receiver killed holding a message leaves it to the next receiver.
//! Measured with `shmkit bench` (`shmkit` against `shmkit-mpmc`, see
//! BENCHMARKS.md).
//!
//! ```text
//! offset                 contents
//! 0                      object header (magic, version, kind, ready flag, creator)
//! 64                     channel parameters (capacity, max message, type, counters)
//! 256                    enqueue position        (own 128-byte block: no false sharing)
//! 384                    dequeue position
//! 512                    "data available" event  (consumers sleep here)
//! 576                    readiness waiter table  (`crate::readiness`)
//! 640                    "space available" event (producers sleep here)
//! 768                    endpoint table: 64 × 64 bytes (identity word, message count)
//! 768 + 4096             slots: capacity × slot size; a slot is its state word
//!                        (SPSC: its sequence), the message length, and the
//!                        payload at +16 (at +64, on its own cache line, for
//!                        messages of 4 KiB and more); slots are 64-byte
//!                        aligned (SPSC with smaller messages: 16)
//! ```
//!
//! # Waiting
//! A blocked sender or receiver spins for a bounded, adaptive time and then
//! sleeps on a shared futex ([`Event`](crate::sync::Event)); the other side
//! wakes it only if someone sleeps, so a busy channel makes no syscall and
//! an idle one burns no CPU. Sleeps are cut into slices of
//! [`LIVENESS_SLICE`] so a blocked endpoint notices dead peers.
//!
//! # Crashes and delivery
//! - A producer killed mid-send never publishes a torn message and never
//!   stalls the channel: its half-written slot is skipped once a blocked
//!   peer sees it is dead.
//! - A consumer killed mid-receive loses at most the message it held (SPSC:
//!   loses nothing; the next receiver gets that message again), inside a
//!   `recv_batch` too: a batch frees each slot as it is read.
//! - A new process may take over any role at any time.
//! - Committed messages are otherwise delivered exactly once, and each
//!   producer's messages are received in the order it sent them.
//! - A receiver learns that every sender is gone (including killed ones) and
//!   gets [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) once the ring is empty; a sender
//!   blocked on a full ring with no receiver left gets it too.
//!
//! All endpoints must share a pid namespace: liveness is judged from
//! `/proc/PID/stat`.
//!
//! # Two processes
//! One program, started twice: `jobs produce` in one terminal sends ten
//! jobs, `jobs consume` in another prints them (whichever starts first
//! creates the channel; the consumer waits for the first producer and ends
//! when every producer has left and the channel is empty).
//!
//! ```no_run
//! use shmkit::channel::{Channel, ChannelOptions};
//! use shmkit::ErrorKind;
//!
//! fn main() -> shmkit::Result<()> {
//!     let mut options = ChannelOptions::new();
//!     options.capacity(64).max_message(256);
//!     let jobs = Channel::open_or_create("/jobs", &options)?;
//!     if std::env::args().nth(1).as_deref() == Some("produce") {
//!         let mut tx = jobs.sender()?;
//!         for i in 0..10 {
//!             tx.send(format!("job {i}").as_bytes())?;
//!         }
//!     } else {
//!         let mut rx = jobs.receiver()?;
//!         loop {
//!             match rx.recv() {
//!                 Ok(job) => println!("{}", String::from_utf8_lossy(&job)),
//!                 Err(e) if e.kind() == ErrorKind::Disconnected => break,
//!                 Err(e) => return Err(e),
//!             }
//!         }
//!         jobs.unlink()?;
//!     }
//!     Ok(())
//! }
//! ```

pub(crate) mod ring;
pub(crate) mod spsc;
pub(crate) mod stream;

// The channel itself, file by file (none is built under loom: the models
// exercise `ring` and `spsc` directly):
// - `layout`: offsets after the common header, `Layout`, and `Inner`, the
//   mapped channel with its word, slot and event accessors;
// - `endpoints`: the endpoint table (join, leave, reap) and liveness;
// - `object`: `ChannelOptions`, `Channel` create/open/connect;
// - `wait`: the bounded-spin-then-futex wait in liveness slices;
// - `sender`, `receiver`: the two ends and their in-place slots;
// - `typed`: channels of `bytemuck::Pod` values;
// - `stats`: `Channel::stats` and what it reports;
// - `peek`: `Channel::peek`, a look at queued messages that takes none.
#[cfg(not(loom))]
mod endpoints;
#[cfg(not(loom))]
mod layout;
#[cfg(not(loom))]
mod object;
// issue 17: a look at queued messages that takes none
#[cfg(not(loom))]
mod peek;
#[cfg(not(loom))]
mod receiver;
#[cfg(not(loom))]
mod sender;
#[cfg(not(loom))]
mod stats;
#[cfg(not(loom))]
mod typed;
#[cfg(not(loom))]
mod wait;

#[cfg(not(loom))]
pub use layout::{LIVENESS_SLICE, MAX_CAPACITY, MAX_ENDPOINTS, MAX_MESSAGE};
#[cfg(not(loom))]
pub use object::{Channel, ChannelOptions};
#[cfg(not(loom))]
pub use peek::PeekedMessage;
#[cfg(not(loom))]
pub use receiver::{Messages, Receiver, RecvSlot};
#[cfg(not(loom))]
pub use sender::{SendSlot, Sender};
#[cfg(not(loom))]
pub use stats::{ChannelStats, EndpointInfo, Role};
#[cfg(not(loom))]
pub use stream::SendBatch;
#[cfg(not(loom))]
pub use typed::{TypedChannel, TypedReceiver, TypedSender};
#[cfg(not(loom))]
pub use wait::WaitStrategy;
