//! `pipe`: two anonymous pipes, one per direction.

use anyhow::Result;
use rustix::pipe::{pipe_with, PipeFlags};

use super::bytestream::ByteStream;
use super::{Conn, End, Handoff, Link, LinkSpec, Transport};
use crate::Scenario;

/// Two pipes, one each way; a stream batch is one `write`.
pub struct Pipe;

impl Transport for Pipe {
    fn name(&self) -> &'static str {
        "pipe"
    }
    fn about(&self) -> &'static str {
        "two anonymous pipes (pipe2), default 64 KiB capacity; batches are single writes"
    }
    fn supports(&self, _: Scenario) -> bool {
        true
    }

    /// Each end gets its read end, then its write end.
    fn link(&self, _spec: &LinkSpec) -> Result<Link> {
        let (a_to_b_rx, a_to_b_tx) = pipe_with(PipeFlags::CLOEXEC)?;
        let (b_to_a_rx, b_to_a_tx) = pipe_with(PipeFlags::CLOEXEC)?;
        let mut link = Link::default();
        link.ends[0].fds = vec![b_to_a_rx, a_to_b_tx];
        link.ends[1].fds = vec![a_to_b_rx, b_to_a_tx];
        Ok(link)
    }

    fn open(&self, _spec: &LinkSpec, _end: End, mut handoff: Handoff) -> Result<Box<dyn Conn>> {
        let rx = handoff.take_fd()?;
        let tx = handoff.take_fd()?;
        Ok(Box::new(ByteStream::new(rx, tx)))
    }
}
