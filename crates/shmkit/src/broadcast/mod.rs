//! Broadcast: one writer, any number of subscribers, every subscriber sees
//! every message; lossy (the writer never waits for anyone) or lossless
//! (the writer waits for the slowest live subscriber).
//!
//! A broadcast is a named POSIX object holding a [`layout`](crate::layout)
//! header, a control block, a table of subscribers, and a ring of
//! fixed-size slots, each guarded by its own sequence lock (the `ring`
//! module, model-checked with loom):
//!
//! - **The writer never blocks.** When the ring is full it overwrites the
//!   oldest message, whoever has not read it yet.
//! - **Every subscriber reads every message, in order, or learns exactly
//!   how many it missed.** Each subscriber keeps its own cursor; one that
//!   falls more than the capacity behind gets
//!   [`Received::Lagged`]` { missed }` with the exact count and resumes
//!   half a ring behind the newest message (the newest itself for a
//!   capacity of 1 or 2), never at the oldest, which the writer overwrites
//!   next: so a subscriber slower than the writer still receives a steady
//!   share of fresh messages instead of lagging again at once (the `ring`
//!   module's "Lag accounting" says why half). For every subscriber,
//!   messages received plus messages reported missed equals messages
//!   published since it joined.
//! - **No torn message.** A subscriber copies a slot with word-sized atomic
//!   loads and checks the slot's sequence word before and after: a slot
//!   overwritten mid-copy counts as missed, never as a message.
//! - **Crashes.** A writer killed mid-message publishes nothing torn; a new
//!   writer takes over ([`Broadcast::publisher`] succeeds only if the old one
//!   is dead, else "broadcast has a live writer pid N"). Subscribers may
//!   join, leave, or be killed at any time: a dead subscriber's table entry
//!   is reaped by the next subscriber to join (or [`Broadcast::reap`]), and
//!   nobody ever waited for it.
//! - **Lossless mode** ([`BroadcastOptions::lossless`], `pub --lossless`):
//!   the Disruptor's shape, made crash-proof. The writer never overwrites a
//!   message that a live subscriber has not read (the `gate` module,
//!   model-checked with loom): it keeps a limit, the slowest subscriber's
//!   cursor plus the capacity, looks at the subscribers' cursors only when
//!   it reaches it, and waits there (bounded spin, then a second bell that
//!   subscribers ring once per eighth of a ring they read, when they run
//!   dry and when they leave). A subscriber whose process is dead is
//!   dropped from the gate as soon as it holds the writer back: after
//!   [`GATE_SPIN_WINDOW`] plus one liveness check, or one
//!   [`GATE_LIVENESS_SLICE`] more if it dies while the writer sleeps. A live one
//!   a whole ring behind is waited for ([`SlowSubscriber::Block`]) or, after
//!   the creator's time ([`SlowSubscriber::EvictAfter`]), cut off: its next
//!   receive fails with [`ErrorKind::Disconnected`](crate::ErrorKind)
//!   ("evicted by the writer …", [`Subscriber::evicted`]) and the writer
//!   goes on. Late joiners start at the head; joining is a store, a SeqCst
//!   fence and a second read of the head, so the writer either waits for
//!   the joiner or the joiner starts past everything the writer may still
//!   overwrite. The policy is fixed at creation and kept in the header.
//! - **Waiting.** A subscriber with nothing to read spins briefly, then
//!   sleeps on a shared futex (a bell: like [`Event`](crate::sync::Event),
//!   but the writer makes at most one wake-up syscall per sleep, and none
//!   while nobody sleeps, so a fast writer does not pay a syscall per
//!   message while woken subscribers wait for a CPU).
//! - **Observability.** Each subscriber publishes its cursor and its missed
//!   count in its table entry (relaxed stores to its own cache line), so
//!   [`Broadcast::stats`] shows every subscriber's pid, liveness and lag.
//!
//! ```text
//! offset          contents
//! 0               object header (magic, version, kind, ready flag, creator)
//! 64              parameters (capacity, maximum message, slot size, mode), counters
//! 128             writer identity word (pid | start time), eviction time,
//!                 gate statistics (waits, evictions, dead dropped)
//! 256             head: the next position to write   (own 128-byte block)
//! 384             "new message" bell                  (own 128-byte block)
//! 392             lossless mode: "a subscriber freed room" bell (the gate bell)
//! 448             readiness waiter table              (`crate::readiness`)
//! 512             subscriber table: 128 × 64 bytes (identity, cursor, missed,
//!                 joined at, gate state)
//! 8704            slots: capacity × slot size; a slot is its sequence word,
//!                 the message length, and the message as 64-bit words
//! ```
//!
//! [`TypedBroadcast`] carries values of one plain-old-data type `T`
//! ([`bytemuck::Pod`]) instead of bytes: [`TypedPublisher::send`] takes a
//! `&T`, [`TypedSubscriber::recv`] returns a [`Received<T>`]; the type's
//! size and alignment are recorded at creation and checked on open.
//!
//! All processes must share a pid namespace: liveness is judged from
//! `/proc/PID/stat`.
//!
//! ```no_run
//! use shmkit::broadcast::{Broadcast, BroadcastOptions, Received};
//!
//! let news = Broadcast::open_or_create("/news", BroadcastOptions::new().capacity(256))?;
//! let mut sub = news.subscribe()?;
//! let mut publisher = news.publisher()?;
//! publisher.send(b"extra! extra!")?;
//! match sub.recv()? {
//!     Received::Message { position, value } => println!("{position}: {value:?}"),
//!     Received::Lagged { missed } => eprintln!("missed {missed} messages"),
//! }
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # Two processes
//! One program, started several times: `ticks pub` publishes a thousand
//! ticks, each `ticks sub` prints every tick it sees (a subscriber waits
//! for the first writer, reports what the ring overwrote before it could
//! read it, and ends when the writer has left and everything is read).
//!
//! ```no_run
//! use shmkit::broadcast::{Broadcast, BroadcastOptions, Received};
//! use shmkit::ErrorKind;
//!
//! fn main() -> shmkit::Result<()> {
//!     let ticks = Broadcast::open_or_create("/ticks", BroadcastOptions::new().capacity(1024))?;
//!     if std::env::args().nth(1).as_deref() == Some("pub") {
//!         let mut publisher = ticks.publisher()?;
//!         for i in 0..1000u32 {
//!             publisher.send(&i.to_le_bytes())?;
//!         }
//!     } else {
//!         let mut sub = ticks.subscribe()?;
//!         loop {
//!             match sub.recv() {
//!                 Ok(Received::Message { position, value }) => println!("{position}: {value:?}"),
//!                 Ok(Received::Lagged { missed }) => eprintln!("missed {missed} ticks"),
//!                 Err(e) if e.kind() == ErrorKind::Disconnected => break,
//!                 Err(e) => return Err(e),
//!             }
//!         }
//!     }
//!     Ok(())
//! }
//! ```

// Under loom only the models use the algorithm.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) mod ring;

#[cfg_attr(loom, allow(dead_code))]
pub(crate) mod gate;

#[cfg(not(loom))]
mod shared;

#[cfg(not(loom))]
mod typed;

#[cfg(not(loom))]
pub use shared::*;
#[cfg(not(loom))]
pub use typed::*;
