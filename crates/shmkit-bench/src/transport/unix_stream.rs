//! `unix-stream`: a connected pair of Unix stream sockets.

use anyhow::Result;
use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

use super::bytestream::ByteStream;
use super::{Conn, End, Handoff, Link, LinkSpec, Transport};
use crate::Scenario;

/// `socketpair(AF_UNIX, SOCK_STREAM)`; a stream batch is one `write`.
pub struct UnixStream;

impl Transport for UnixStream {
    fn name(&self) -> &'static str {
        "unix-stream"
    }
    fn about(&self) -> &'static str {
        "socketpair(AF_UNIX, SOCK_STREAM), default buffers; batches are single writes"
    }
    fn supports(&self, scenario: Scenario) -> bool {
        scenario != Scenario::Fanout
    }

    fn link(&self, _spec: &LinkSpec) -> Result<Link> {
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        let mut link = Link::default();
        link.ends[0].fds.push(a);
        link.ends[1].fds.push(b);
        Ok(link)
    }

    fn open(&self, _spec: &LinkSpec, _end: End, mut handoff: Handoff) -> Result<Box<dyn Conn>> {
        Ok(Box::new(ByteStream::socket(handoff.take_fd()?)?))
    }
}
