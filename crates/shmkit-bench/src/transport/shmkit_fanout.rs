//! shmkit in `fanout`: `shmkit` is shmkit's broadcast there, and
//! `shmkit-board` (`fanout` only) its board.
//!
//! - `shmkit`: a [`Broadcast`] of [`BROADCAST_CAPACITY`] messages. The
//!   writer publishes and never waits; each reader is a [`Subscriber`]
//!   with its own cursor (default wait: a brief spin, then a shared futex
//!   sleep). A reader that falls more than the capacity behind is told how
//!   many it missed and resumes half a ring behind the newest: lossy
//!   by design, the sequence numbers show the gap.
//! - `shmkit-lossless` (`fanout` only): the same broadcast created
//!   lossless ([`SlowSubscriber::Block`]): the writer waits (spin, then a
//!   shared futex) while the slowest reader is a whole ring behind, so
//!   every reader gets every message; a gap fails the run.
//! - `shmkit-board`: a [`Board`] holding the latest message. The writer
//!   replaces it and never waits; each reader waits for a new version
//!   (`wait_for_change`: spin, then futex) and copies the latest one. Every
//!   version in between is skipped: lossy by design.
//!
//! Readers join in `open`, before the harness says `go`, so they see every
//! message from the first.

use std::time::Instant;

use anyhow::{bail, Result};
use shmkit::board::{Board, BoardOptions, BoardWriter};
use shmkit::broadcast::{
    Broadcast, BroadcastOptions, Publisher, Received, SlowSubscriber, Subscriber,
};

use super::{Conn, End, Handoff, Link, LinkSpec, Named, Transport};
use crate::Scenario;

/// Messages the broadcast keeps for readers that fall behind.
pub(super) const BROADCAST_CAPACITY: usize = 1024;

/// shmkit's board: the latest value, lossy (`fanout` only).
pub struct ShmkitBoard;

/// shmkit's broadcast in lossless mode (`fanout` only).
pub struct ShmkitLossless;

/// A link over one named object: the writer and every reader get its name.
fn named_link(spec: &LinkSpec, name: String) -> Link {
    let mut link = Link::default();
    link.ends[0].args.push(name.clone());
    link.readers = (0..spec.readers)
        .map(|_| Handoff {
            fds: Vec::new(),
            args: vec![name.clone()],
        })
        .collect();
    link.names.push(Named::Shm(name));
    link
}

/// The broadcast of a `fanout` link over `shmkit`.
pub(super) fn broadcast_link(spec: &LinkSpec) -> Result<Link> {
    broadcast_link_with(spec, None)
}

/// The broadcast of a `fanout` link, lossless when `policy` is `Some`.
fn broadcast_link_with(spec: &LinkSpec, policy: Option<SlowSubscriber>) -> Result<Link> {
    let name = format!("/{}", spec.tag);
    let mut opts = BroadcastOptions::new();
    opts.capacity(BROADCAST_CAPACITY).max_message(spec.msg_size);
    if let Some(policy) = policy {
        opts.lossless(policy);
    }
    Broadcast::create(&name, &opts)?;
    Ok(named_link(spec, name))
}

/// The publisher (end A) or a subscriber (end B) of the broadcast.
pub(super) fn broadcast_open(
    spec: &LinkSpec,
    end: End,
    handoff: &Handoff,
) -> Result<Box<dyn Conn>> {
    let broadcast = Broadcast::open(handoff.arg(0)?)?;
    Ok(match end {
        End::A => Box::new(BroadcastWriter(broadcast.publisher()?)),
        End::B => Box::new(BroadcastReader {
            sub: broadcast.subscribe()?,
            msg: Vec::with_capacity(spec.msg_size),
            deadline: spec.deadline(Instant::now()),
        }),
    })
}

struct BroadcastWriter(Publisher);

impl Conn for BroadcastWriter {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.0.send(msg)?;
        Ok(())
    }

    fn recv(&mut self, _buf: &mut [u8]) -> Result<()> {
        bail!("a broadcast's publisher does not receive")
    }
}

struct BroadcastReader {
    sub: Subscriber,
    msg: Vec<u8>,
    deadline: Instant,
}

impl Conn for BroadcastReader {
    fn send(&mut self, _msg: &[u8]) -> Result<()> {
        bail!("a broadcast's subscriber does not send")
    }

    /// The next message there is; a lag report is passed over (the
    /// harness sees the gap in the sequence numbers).
    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        loop {
            // What is there first, without reading the clock; the deadline
            // (a harness guard) only bounds a wait.
            let got = match self.sub.try_recv_into(&mut self.msg) {
                Err(e) if e.kind() == shmkit::ErrorKind::WouldBlock => {
                    let left = self.deadline.saturating_duration_since(Instant::now());
                    self.sub.recv_into(&mut self.msg, Some(left))?
                }
                other => other?,
            };
            match got {
                Received::Message { .. } => return copy_message(&self.msg, buf),
                Received::Lagged { .. } => {}
            }
        }
    }
}

/// Copies a received message into the harness's buffer, which is exactly
/// one message long.
fn copy_message(msg: &[u8], buf: &mut [u8]) -> Result<()> {
    if msg.len() != buf.len() {
        bail!(
            "a message of {} bytes where {} were due",
            msg.len(),
            buf.len()
        );
    }
    buf.copy_from_slice(msg);
    Ok(())
}

struct BoardWriterConn(BoardWriter);

impl Conn for BoardWriterConn {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.0.write(msg)?;
        Ok(())
    }

    fn recv(&mut self, _buf: &mut [u8]) -> Result<()> {
        bail!("a board's writer does not receive")
    }
}

struct BoardReader {
    board: Board,
    /// The version read last (0: none yet).
    version: u64,
    value: Vec<u8>,
    deadline: Instant,
}

impl Conn for BoardReader {
    fn send(&mut self, _msg: &[u8]) -> Result<()> {
        bail!("a board's reader does not send")
    }

    /// The latest value once it is newer than the one read last: read at
    /// once if it is, else after waiting for a change.
    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        if self.board.version() == self.version {
            let left = self.deadline.saturating_duration_since(Instant::now());
            let (value, version) = self.board.wait_for_change(self.version, Some(left))?;
            self.value = value;
            self.version = version;
        } else {
            self.version = self.board.read_into(&mut self.value)?;
        }
        copy_message(&self.value, buf)
    }
}

impl Transport for ShmkitLossless {
    fn name(&self) -> &'static str {
        "shmkit-lossless"
    }
    fn about(&self) -> &'static str {
        "shmkit broadcast, lossless mode: the writer waits for the slowest live reader (spin, then futex); every reader gets every message"
    }
    fn supports(&self, scenario: Scenario) -> bool {
        scenario == Scenario::Fanout
    }
    fn link(&self, spec: &LinkSpec) -> Result<Link> {
        broadcast_link_with(spec, Some(SlowSubscriber::Block))
    }
    fn open(&self, spec: &LinkSpec, end: End, handoff: Handoff) -> Result<Box<dyn Conn>> {
        broadcast_open(spec, end, &handoff)
    }
}

impl Transport for ShmkitBoard {
    fn name(&self) -> &'static str {
        "shmkit-board"
    }
    fn about(&self) -> &'static str {
        "shmkit board (latest value, sequence lock): readers wait for a new version and copy the latest; lossy by design"
    }
    fn supports(&self, scenario: Scenario) -> bool {
        scenario == Scenario::Fanout
    }
    fn lossy(&self) -> bool {
        true
    }
    fn link(&self, spec: &LinkSpec) -> Result<Link> {
        let name = format!("/{}", spec.tag);
        Board::create(&name, BoardOptions::new().max_size(spec.msg_size))?;
        Ok(named_link(spec, name))
    }
    fn open(&self, spec: &LinkSpec, end: End, handoff: Handoff) -> Result<Box<dyn Conn>> {
        let board = Board::open(handoff.arg(0)?)?;
        Ok(match end {
            End::A => Box::new(BoardWriterConn(board.writer()?)),
            End::B => Box::new(BoardReader {
                version: board.version(),
                board,
                value: Vec::with_capacity(spec.msg_size),
                deadline: spec.deadline(Instant::now()),
            }),
        })
    }
}
