//! The bytes the bridge puts on a Zenoh key: one frame per sample.
//!
//! ```text
//! offset  contents
//! 0       stream id, u64 little-endian: one per exporter run (a restarted
//!         exporter is a new stream, so the importer can tell it apart)
//! 8       sequence number of the first message in the frame, u64 LE:
//!         channel: 0, 1, 2… per stream; broadcast: the message's position
//!         in the broadcast; board: the value's version
//! 16      messages, each a u32 LE length and that many bytes
//! ```
//!
//! A frame carries consecutive sequence numbers, so one sample can hold
//! every message the exporter found waiting (the channel's batch) and a
//! 64-byte stream does not pay Zenoh's per-sample cost per message. Frames
//! come from the network: [`Frame::parse`] and [`Frame::messages`] check
//! every length against the bytes there and never panic.

use std::fmt;

/// Bytes before the first message.
pub const HEADER: usize = 16;
/// Bytes before each message: its length.
pub const LENGTH: usize = 4;

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed bridge frame: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// Starts a frame in `buf` (cleared first).
pub fn begin(buf: &mut Vec<u8>, stream: u64, first_seq: u64) {
    buf.clear();
    buf.extend_from_slice(&stream.to_le_bytes());
    buf.extend_from_slice(&first_seq.to_le_bytes());
}

/// Appends one message to a frame begun with [`begin`].
///
/// # Panics
/// If the message is 4 GiB or more (channels hold at most 1 GiB).
pub fn push(buf: &mut Vec<u8>, msg: &[u8]) {
    let len = u32::try_from(msg.len()).expect("a bridged message is under 4 GiB");
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(msg);
}

/// Appends a message of `len` bytes written by `fill` into the frame's
/// tail (so a channel slot is copied once, straight into the frame).
pub fn push_with<E>(
    buf: &mut Vec<u8>,
    len: usize,
    fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> Result<(), E> {
    let len32 = u32::try_from(len).expect("a bridged message is under 4 GiB");
    let start = buf.len();
    buf.extend_from_slice(&len32.to_le_bytes());
    buf.resize(start + LENGTH + len, 0);
    let filled = fill(&mut buf[start + LENGTH..]);
    if filled.is_err() {
        buf.truncate(start);
    }
    filled
}

/// A frame read from a sample.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The exporter run that sent it.
    pub stream: u64,
    /// Sequence number of its first message.
    pub first_seq: u64,
    body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Reads the header of `bytes`.
    ///
    /// # Errors
    /// [`Malformed`] when the header is cut short.
    pub fn parse(bytes: &'a [u8]) -> Result<Frame<'a>, Malformed> {
        if bytes.len() < HEADER {
            return Err(Malformed(format!(
                "{} bytes cannot hold the {HEADER}-byte header",
                bytes.len()
            )));
        }
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(w)
        };
        Ok(Frame {
            stream: word(0),
            first_seq: word(8),
            body: &bytes[HEADER..],
        })
    }

    /// The messages, in order; an item is an error where a length runs past
    /// the end (iteration stops there).
    pub fn messages(&self) -> Messages<'a> {
        Messages {
            rest: self.body,
            failed: false,
        }
    }
}

/// Iterator over a frame's messages.
#[derive(Debug)]
pub struct Messages<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<&'a [u8], Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let bad = |why: String| Some(Err(Malformed(why)));
        if self.rest.len() < LENGTH {
            self.failed = true;
            return bad(format!("{} trailing bytes", self.rest.len()));
        }
        let mut l = [0u8; LENGTH];
        l.copy_from_slice(&self.rest[..LENGTH]);
        let len = u32::from_le_bytes(l) as usize;
        let after = &self.rest[LENGTH..];
        if len > after.len() {
            self.failed = true;
            return bad(format!(
                "a message of {len} bytes with only {} left",
                after.len()
            ));
        }
        let (msg, rest) = after.split_at(len);
        self.rest = rest;
        Some(Ok(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips() {
        let mut buf = Vec::new();
        begin(&mut buf, 7, 40);
        push(&mut buf, b"one");
        push(&mut buf, b"");
        push_with::<()>(&mut buf, 3, |tail| {
            tail.copy_from_slice(b"two");
            Ok(())
        })
        .unwrap();
        let f = Frame::parse(&buf).unwrap();
        assert_eq!((f.stream, f.first_seq), (7, 40));
        let msgs: Vec<&[u8]> = f.messages().map(Result::unwrap).collect();
        assert_eq!(msgs, [&b"one"[..], b"", b"two"]);
    }

    #[test]
    fn a_failed_fill_leaves_the_frame_as_it_was() {
        let mut buf = Vec::new();
        begin(&mut buf, 1, 0);
        push(&mut buf, b"kept");
        let before = buf.clone();
        assert!(push_with(&mut buf, 10, |_| Err("no")).is_err());
        assert_eq!(buf, before);
    }

    #[test]
    fn hostile_frames_are_errors_not_panics() {
        assert!(Frame::parse(&[0; 15]).is_err());
        let mut buf = Vec::new();
        begin(&mut buf, 1, 0);
        push(&mut buf, b"ok");
        // A length far past the end, then two stray bytes.
        let mut long = buf.clone();
        long.extend_from_slice(&u32::MAX.to_le_bytes());
        let f = Frame::parse(&long).unwrap();
        let items: Vec<_> = f.messages().collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok() && items[1].is_err());
        let mut stray = buf;
        stray.extend_from_slice(&[1, 2]);
        let f = Frame::parse(&stray).unwrap();
        assert!(f.messages().nth(1).unwrap().is_err());
    }
}
