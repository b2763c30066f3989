//! `shmkit`, `shmkit-block`, `shmkit-zc` and `shmkit-mpmc`: shmkit's own
//! channels.
//!
//! A link is two channels, one per direction (`/shmkit-bench-…-ab` from end A
//! to end B, `…-ba` back), created by the harness and opened by the
//! children, each connecting one sender and one receiver. One sender and
//! one receiver per channel is what `ChannelOptions::spsc` is for, so the
//! first three use it; `shmkit-mpmc` runs the same link over the shared
//! (any number of producers and consumers) ring, to show what that costs.
//!
//! - `shmkit`: the default wait strategy (bounded adaptive spin, then a
//!   shared futex sleep); messages copied in and out. In `fanout`, shmkit's
//!   broadcast instead ([`super::shmkit_fanout`]).
//! - `shmkit-block`: the same channel, every wait a futex sleep
//!   ([`WaitStrategy::Sleep`]): the "blocking only" line.
//! - `shmkit-zc` (bulk only): the zero-copy path. The producer reserves a
//!   slot and fills the message in place; the consumer checks it in place
//!   and releases the slot. No copy between the processes' own buffers and
//!   the shared ring.
//! - `shmkit-mpmc` (rtt, stream): as `shmkit`, over the multi-producer
//!   multi-consumer ring.

use std::time::Instant;

use anyhow::{bail, Result};
use shmkit::channel::{Channel, ChannelOptions, Receiver, Sender, WaitStrategy};

use super::shmkit_fanout;
use super::{Conn, End, Handoff, Link, LinkSpec, Named, Transport};
use crate::Scenario;

/// shmkit's channel, default wait strategy, copying.
pub struct Shmkit;
/// shmkit's channel, blocking waits only.
pub struct ShmkitBlock;
/// shmkit's channel, zero-copy slots (bulk).
pub struct ShmkitZeroCopy;
/// shmkit's shared (MPMC) channel, default wait strategy, copying.
pub struct ShmkitMpmc;

/// Messages a channel holds in each scenario: two are enough for a round
/// trip; a stream wants room to run ahead; 1 MiB bulk messages want a few.
pub(super) fn capacity(spec: &LinkSpec) -> usize {
    match spec.scenario {
        Scenario::Rtt | Scenario::Oversubscribed => 4,
        Scenario::Stream => 1024,
        Scenario::Bulk => 8,
        Scenario::Fanout | Scenario::Paced => shmkit_fanout::BROADCAST_CAPACITY,
    }
}

pub(super) fn link(spec: &LinkSpec, spsc: bool) -> Result<Link> {
    let mut opts = ChannelOptions::new();
    opts.capacity(capacity(spec))
        .max_message(spec.msg_size.max(8))
        .spsc(spsc);
    link_with(spec, &opts)
}

/// A link of two channels made with `opts`, one per direction.
pub(super) fn link_with(spec: &LinkSpec, opts: &ChannelOptions) -> Result<Link> {
    let mut link = Link::default();
    for dir in ["ab", "ba"] {
        let name = format!("/{}-{dir}", spec.tag);
        Channel::create(&name, opts)?;
        link.names.push(Named::Shm(name.clone()));
        for end in &mut link.ends {
            end.args.push(name.clone());
        }
    }
    Ok(link)
}

struct ChannelConn {
    tx: Sender,
    rx: Receiver,
    deadline: Instant,
}

impl ChannelConn {
    fn open(spec: &LinkSpec, end: End, handoff: &Handoff, wait: WaitStrategy) -> Result<Self> {
        let ab = Channel::open(handoff.arg(0)?)?;
        let ba = Channel::open(handoff.arg(1)?)?;
        let (tx, rx) = match end {
            End::A => (ab.sender()?, ba.receiver()?),
            End::B => (ba.sender()?, ab.receiver()?),
        };
        let mut conn = ChannelConn {
            tx,
            rx,
            deadline: spec.deadline(Instant::now()),
        };
        conn.tx.set_wait_strategy(wait);
        conn.rx.set_wait_strategy(wait);
        Ok(conn)
    }
}

impl Conn for ChannelConn {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        Ok(self.tx.send_deadline(msg, self.deadline)?)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        let slot = self.rx.recv_slot_deadline(self.deadline)?;
        if slot.len() != buf.len() {
            bail!(
                "a message of {} bytes where {} were due",
                slot.len(),
                buf.len()
            );
        }
        slot.read_at(0, buf)?;
        Ok(())
    }

    fn send_batch(&mut self, msgs: &[u8], msg_size: usize) -> Result<()> {
        Ok(self.tx.send_batch(msgs.chunks_exact(msg_size))?)
    }

    fn recv_batch(&mut self, buf: &mut [u8], msg_size: usize) -> Result<usize> {
        let mut chunks = buf.chunks_exact_mut(msg_size);
        let max = chunks.len();
        Ok(self.rx.recv_batch(max, Some(self.deadline), |slot| {
            let out = chunks.next().expect("at most `max` messages");
            if slot.len() != msg_size {
                return Err(shmkit::Error::new(
                    shmkit::ErrorKind::Corrupt,
                    "receive from",
                    "benchmark channel",
                    format!(
                        "a message of {} bytes where {msg_size} were due",
                        slot.len()
                    ),
                ));
            }
            slot.read_at(0, out)
        })?)
    }

    fn send_in_place(&mut self, len: usize, fill: &mut dyn FnMut(*mut u8)) -> Option<Result<()>> {
        Some((|| {
            let mut slot = self.tx.reserve_deadline(self.deadline)?;
            if slot.capacity() < len {
                bail!("a slot holds {} bytes, not {len}", slot.capacity());
            }
            fill(slot.as_mut_ptr());
            slot.commit(len)?;
            Ok(())
        })())
    }

    fn recv_in_place(
        &mut self,
        len: usize,
        read: &mut dyn FnMut(*const u8) -> Result<()>,
    ) -> Option<Result<()>> {
        Some((|| {
            let slot = self.rx.recv_slot_deadline(self.deadline)?;
            if slot.len() != len {
                bail!("a message of {} bytes where {len} were due", slot.len());
            }
            read(slot.as_ptr())
        })())
    }
}

/// The copying connection: hides the in-place methods, so the harness
/// copies through its own buffers as with every other transport.
struct Copying(ChannelConn);

impl Conn for Copying {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.0.send(msg)
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        self.0.recv(buf)
    }
    fn send_batch(&mut self, msgs: &[u8], msg_size: usize) -> Result<()> {
        self.0.send_batch(msgs, msg_size)
    }
    fn recv_batch(&mut self, buf: &mut [u8], msg_size: usize) -> Result<usize> {
        self.0.recv_batch(buf, msg_size)
    }
}

/// Opens an end as a copying connection.
pub(super) fn copying(
    spec: &LinkSpec,
    end: End,
    handoff: &Handoff,
    wait: WaitStrategy,
) -> Result<Box<dyn Conn>> {
    Ok(Box::new(Copying(ChannelConn::open(
        spec, end, handoff, wait,
    )?)))
}

impl Transport for Shmkit {
    fn name(&self) -> &'static str {
        "shmkit"
    }
    fn about(&self) -> &'static str {
        "shmkit SPSC channel pair, default wait (bounded adaptive spin, then shared futex), copy in/out; fanout: shmkit broadcast (lossy)"
    }
    fn supports(&self, _: Scenario) -> bool {
        true
    }
    /// In `fanout`: the broadcast overwrites what a slow reader has not read.
    fn lossy(&self) -> bool {
        true
    }
    fn link(&self, spec: &LinkSpec) -> Result<Link> {
        if spec.scenario == Scenario::Fanout {
            return shmkit_fanout::broadcast_link(spec);
        }
        link(spec, true)
    }
    fn open(&self, spec: &LinkSpec, end: End, handoff: Handoff) -> Result<Box<dyn Conn>> {
        if spec.scenario == Scenario::Fanout {
            return shmkit_fanout::broadcast_open(spec, end, &handoff);
        }
        copying(spec, end, &handoff, WaitStrategy::SpinThenSleep)
    }
}

impl Transport for ShmkitBlock {
    fn name(&self) -> &'static str {
        "shmkit-block"
    }
    fn about(&self) -> &'static str {
        "shmkit SPSC channel pair, every wait a shared futex sleep (no spinning), copy in/out"
    }
    fn supports(&self, scenario: Scenario) -> bool {
        scenario != Scenario::Fanout
    }
    fn link(&self, spec: &LinkSpec) -> Result<Link> {
        link(spec, true)
    }
    fn open(&self, spec: &LinkSpec, end: End, handoff: Handoff) -> Result<Box<dyn Conn>> {
        copying(spec, end, &handoff, WaitStrategy::Sleep)
    }
}

impl Transport for ShmkitZeroCopy {
    fn name(&self) -> &'static str {
        "shmkit-zc"
    }
    fn about(&self) -> &'static str {
        "shmkit SPSC channel pair, zero-copy slots: filled and checked in place (bulk)"
    }
    fn supports(&self, scenario: Scenario) -> bool {
        scenario == Scenario::Bulk
    }
    fn link(&self, spec: &LinkSpec) -> Result<Link> {
        link(spec, true)
    }
    fn open(&self, spec: &LinkSpec, end: End, handoff: Handoff) -> Result<Box<dyn Conn>> {
        Ok(Box::new(ChannelConn::open(
            spec,
            end,
            &handoff,
            WaitStrategy::SpinThenSleep,
        )?))
    }
}

impl Transport for ShmkitMpmc {
    fn name(&self) -> &'static str {
        "shmkit-mpmc"
    }
    fn about(&self) -> &'static str {
        "shmkit shared (MPMC) channel pair, default wait, copy in/out: the cost of many-to-many"
    }
    fn supports(&self, scenario: Scenario) -> bool {
        matches!(scenario, Scenario::Rtt | Scenario::Stream)
    }
    fn link(&self, spec: &LinkSpec) -> Result<Link> {
        link(spec, false)
    }
    fn open(&self, spec: &LinkSpec, end: End, handoff: Handoff) -> Result<Box<dyn Conn>> {
        copying(spec, end, &handoff, WaitStrategy::SpinThenSleep)
    }
}
