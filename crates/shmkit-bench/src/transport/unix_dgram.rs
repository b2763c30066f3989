//! `unix-dgram`: a connected pair of Unix datagram sockets, one message per
//! datagram. A message larger than the socket's send buffer (about 208 KiB
//! by default) fails with `EMSGSIZE`, which the report shows.

use std::os::fd::OwnedFd;

use anyhow::{bail, Context, Result};
use rustix::io::Errno;
use rustix::net::{socketpair, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::{Conn, End, Handoff, Link, LinkSpec, Transport};
use crate::Scenario;

/// `socketpair(AF_UNIX, SOCK_DGRAM)`; no batching (one `send` per message).
pub struct UnixDgram;

impl Transport for UnixDgram {
    fn name(&self) -> &'static str {
        "unix-dgram"
    }
    fn about(&self) -> &'static str {
        "socketpair(AF_UNIX, SOCK_DGRAM), one datagram per message, no batching"
    }
    fn supports(&self, scenario: Scenario) -> bool {
        scenario != Scenario::Fanout
    }

    fn link(&self, _spec: &LinkSpec) -> Result<Link> {
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        let mut link = Link::default();
        link.ends[0].fds.push(a);
        link.ends[1].fds.push(b);
        Ok(link)
    }

    fn open(&self, _spec: &LinkSpec, _end: End, mut handoff: Handoff) -> Result<Box<dyn Conn>> {
        Ok(Box::new(Datagrams(handoff.take_fd()?)))
    }
}

struct Datagrams(OwnedFd);

impl Conn for Datagrams {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        loop {
            match rustix::net::send(&self.0, msg, SendFlags::empty()) {
                Ok(n) if n == msg.len() => return Ok(()),
                Ok(n) => bail!("sent {n} of {} bytes as one datagram", msg.len()),
                Err(Errno::INTR) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("send a {}-byte datagram", msg.len()))
                }
            }
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        loop {
            // MSG_TRUNC: learn the datagram's real length if it was longer.
            match rustix::net::recv(&self.0, &mut *buf, RecvFlags::TRUNC) {
                Ok((_, n)) if n == buf.len() => return Ok(()),
                Ok((_, 0)) => bail!("the peer closed the socket"),
                Ok((_, n)) => bail!("a {n}-byte datagram where {} were due", buf.len()),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e).context("recv"),
            }
        }
    }
}
