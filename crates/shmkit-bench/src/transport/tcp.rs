//! `tcp`: a TCP connection over the loopback interface (127.0.0.1 only),
//! with `TCP_NODELAY` so small messages are not held back by Nagle.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;

use anyhow::{Context, Result};

use super::bytestream::ByteStream;
use super::{Conn, End, Handoff, Link, LinkSpec, Transport};
use crate::Scenario;

/// TCP over 127.0.0.1, `TCP_NODELAY`; a stream batch is one `write`.
pub struct Tcp;

impl Transport for Tcp {
    fn name(&self) -> &'static str {
        "tcp"
    }
    fn about(&self) -> &'static str {
        "TCP over 127.0.0.1 with TCP_NODELAY; batches are single writes"
    }
    fn supports(&self, scenario: Scenario) -> bool {
        scenario != Scenario::Fanout
    }

    /// The parent listens on an ephemeral loopback port, connects, accepts,
    /// and closes the listener: end A gets the connecting socket.
    fn link(&self, _spec: &LinkSpec) -> Result<Link> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1")?;
        let client = TcpStream::connect(listener.local_addr()?).context("connect")?;
        let (server, _) = listener.accept().context("accept")?;
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        let mut link = Link::default();
        link.ends[0].fds.push(OwnedFd::from(client));
        link.ends[1].fds.push(OwnedFd::from(server));
        Ok(link)
    }

    fn open(&self, _spec: &LinkSpec, _end: End, mut handoff: Handoff) -> Result<Box<dyn Conn>> {
        Ok(Box::new(ByteStream::socket(handoff.take_fd()?)?))
    }
}
