//! A [`Conn`] over byte-stream descriptors (pipes, stream sockets): each
//! message is `msg_size` bytes of the stream; a batch is one `write`, and a
//! receive takes whatever whole messages have arrived.

use std::os::fd::OwnedFd;

use anyhow::{bail, Context, Result};
use rustix::io::Errno;

use super::Conn;

/// Reads from `rx`, writes to `tx` (the same socket twice, or two pipes).
pub(crate) struct ByteStream {
    rx: OwnedFd,
    tx: OwnedFd,
}

impl ByteStream {
    pub(crate) fn new(rx: OwnedFd, tx: OwnedFd) -> Self {
        ByteStream { rx, tx }
    }

    /// One descriptor for both directions (a connected stream socket).
    pub(crate) fn socket(fd: OwnedFd) -> Result<Self> {
        Ok(ByteStream {
            rx: rustix::io::dup(&fd)?,
            tx: fd,
        })
    }
}

pub(crate) fn write_all(fd: &OwnedFd, mut data: &[u8]) -> Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e).context("write"),
        }
    }
    Ok(())
}

/// Reads once (at least one byte); end of file is an error: the peer left.
fn read_some(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(0) => bail!("the peer closed the connection"),
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e).context("read"),
        }
    }
}

pub(crate) fn read_exact(fd: &OwnedFd, mut buf: &mut [u8]) -> Result<()> {
    while !buf.is_empty() {
        let n = read_some(fd, buf)?;
        buf = &mut buf[n..];
    }
    Ok(())
}

impl Conn for ByteStream {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        write_all(&self.tx, msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        read_exact(&self.rx, buf)
    }

    fn send_batch(&mut self, msgs: &[u8], _msg_size: usize) -> Result<()> {
        write_all(&self.tx, msgs)
    }

    fn recv_batch(&mut self, buf: &mut [u8], msg_size: usize) -> Result<usize> {
        recv_batch(&self.rx, buf, msg_size)
    }
}

/// Reads the whole messages that have arrived on `fd` (at least one, at
/// most as many as `buf` holds); returns how many.
pub(crate) fn recv_batch(fd: &OwnedFd, buf: &mut [u8], msg_size: usize) -> Result<usize> {
    let whole = buf.len() / msg_size * msg_size;
    let n = read_some(fd, &mut buf[..whole])?;
    // Complete a message cut in the middle.
    let end = n.next_multiple_of(msg_size);
    read_exact(fd, &mut buf[n..end])?;
    Ok(end / msg_size)
}
