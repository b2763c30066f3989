//! `pipe`: two anonymous pipes, one per direction; in `fanout`, one pipe
//! per reader, the writer writing each message to every pipe in turn.

use std::os::fd::OwnedFd;

use anyhow::{bail, Result};
use rustix::pipe::{pipe_with, PipeFlags};

use super::bytestream::{self, ByteStream};
use super::{Conn, End, Handoff, Link, LinkSpec, Transport};
use crate::Scenario;

/// Two pipes, one each way; a stream batch is one `write`.
pub struct Pipe;

impl Transport for Pipe {
    fn name(&self) -> &'static str {
        "pipe"
    }
    fn about(&self) -> &'static str {
        "two anonymous pipes (pipe2), default 64 KiB capacity; batches are single writes; fanout: one pipe per reader"
    }
    fn supports(&self, _: Scenario) -> bool {
        true
    }

    /// Each end gets its read end, then its write end. In `fanout` the
    /// writer gets the write end of every reader's pipe, each reader the
    /// read end of its own.
    fn link(&self, spec: &LinkSpec) -> Result<Link> {
        let mut link = Link::default();
        if spec.scenario == Scenario::Fanout {
            for _ in 0..spec.readers {
                let (rx, tx) = pipe_with(PipeFlags::CLOEXEC)?;
                link.ends[0].fds.push(tx);
                link.readers.push(Handoff {
                    fds: vec![rx],
                    args: Vec::new(),
                });
            }
            return Ok(link);
        }
        let (a_to_b_rx, a_to_b_tx) = pipe_with(PipeFlags::CLOEXEC)?;
        let (b_to_a_rx, b_to_a_tx) = pipe_with(PipeFlags::CLOEXEC)?;
        link.ends[0].fds = vec![b_to_a_rx, a_to_b_tx];
        link.ends[1].fds = vec![a_to_b_rx, b_to_a_tx];
        Ok(link)
    }

    fn open(&self, spec: &LinkSpec, end: End, mut handoff: Handoff) -> Result<Box<dyn Conn>> {
        if spec.scenario == Scenario::Fanout {
            return Ok(match end {
                End::A => Box::new(FanWriter(std::mem::take(&mut handoff.fds))),
                End::B => Box::new(FanReader(handoff.take_fd()?)),
            });
        }
        let rx = handoff.take_fd()?;
        let tx = handoff.take_fd()?;
        Ok(Box::new(ByteStream::new(rx, tx)))
    }
}

/// The fan-out writer: every message written to each reader's pipe in
/// turn (blocking while a reader's pipe is full).
struct FanWriter(Vec<OwnedFd>);

impl Conn for FanWriter {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        for fd in &self.0 {
            bytestream::write_all(fd, msg)?;
        }
        Ok(())
    }

    fn recv(&mut self, _buf: &mut [u8]) -> Result<()> {
        bail!("a fan-out writer does not receive")
    }
}

/// A fan-out reader: its own pipe's read end.
struct FanReader(OwnedFd);

impl Conn for FanReader {
    fn send(&mut self, _msg: &[u8]) -> Result<()> {
        bail!("a fan-out reader does not send")
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        bytestream::read_exact(&self.0, buf)
    }

    fn recv_batch(&mut self, buf: &mut [u8], msg_size: usize) -> Result<usize> {
        bytestream::recv_batch(&self.0, buf, msg_size)
    }
}
