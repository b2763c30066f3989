//! The `tokio` feature: `recv_async` / `changed` on the readiness
//! descriptor, through tokio's [`AsyncFd`] (epoll in tokio's reactor).
//! No thread spins or polls: a task with nothing to receive is parked in
//! the reactor until a sender's byte makes the descriptor readable, or
//! [`SLICE`](super::SLICE) passes (then it looks again, as a blocked
//! receiver does, which also notices peers that died).
//!
//! The descriptor is made when a task first has to sleep and dropped when
//! the call returns (a socket, a bind, one slot claimed in the object's
//! table, an epoll registration: a few µs, only on the path that sleeps
//! anyway). A call that finds a message at once costs what `try_recv` does.

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::{Arm, Readiness, SLICE};
use crate::board::Board;
use crate::broadcast::{Received, Subscriber};
use crate::channel::Receiver;
use crate::error::{Error, ErrorKind, Result};

/// Something to wait for through a readiness descriptor.
trait AsyncWait {
    type Output;
    /// Tries once without blocking: `Ok(None)` when it would block.
    fn attempt(&mut self) -> Result<Option<Self::Output>>;
    fn readiness(&self) -> Result<Readiness>;
    fn arm(&self, readiness: &Readiness) -> Result<Arm>;
    /// After a sleep that ended by its slice: the error to end with if the
    /// peers are gone (the caller tries once more first).
    fn gone(&self) -> Option<Error> {
        None
    }
}

/// Tries, and between tries sleeps in the reactor on a readiness descriptor.
async fn wait<W: AsyncWait>(waiter: &mut W) -> Result<W::Output> {
    if let Some(value) = waiter.attempt()? {
        return Ok(value);
    }
    let fd = waiter.readiness()?;
    let object = fd.object().to_string();
    let io = |e: std::io::Error| {
        Error::os(
            "wait for readiness of",
            &object,
            e.raw_os_error().unwrap_or(libc::EIO),
        )
    };
    // SAFETY: the descriptor is the Readiness's own socket, which stays
    // open while the Readiness lives, and the AsyncFd owns the Readiness;
    // `as_raw_fd` always returns that one descriptor.
    let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
        .map_err(|e| io(e.into()))?;
    loop {
        if let Some(value) = waiter.attempt()? {
            return Ok(value);
        }
        if waiter.arm(fd.get_ref())? == Arm::Ready {
            continue;
        }
        match tokio::time::timeout(SLICE, fd.readable()).await {
            // Readable: the byte is drained by the next arm; tell tokio to
            // wait for a new edge after that.
            Ok(Ok(mut guard)) => guard.clear_ready(),
            Ok(Err(e)) => return Err(io(e)),
            Err(_slice_over) => {
                #[cfg(test)]
                tests::SLICES_RUN_OUT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(gone) = waiter.gone() {
                    // One last look: what they sent before leaving.
                    return waiter.attempt()?.ok_or(gone);
                }
            }
        }
    }
}

/// Maps "would block" to `None`.
fn would_block<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

impl AsyncWait for Receiver {
    type Output = Vec<u8>;
    fn attempt(&mut self) -> Result<Option<Vec<u8>>> {
        would_block(self.try_recv())
    }
    fn readiness(&self) -> Result<Readiness> {
        Receiver::readiness(self)
    }
    fn arm(&self, readiness: &Readiness) -> Result<Arm> {
        self.arm_readiness(readiness)
    }
    fn gone(&self) -> Option<Error> {
        self.senders_gone().then(|| {
            Error::new(
                ErrorKind::Disconnected,
                "receive from",
                self.name().as_str(),
                "the channel is empty and every sender is gone",
            )
        })
    }
}

impl AsyncWait for Subscriber {
    type Output = Received<Vec<u8>>;
    fn attempt(&mut self) -> Result<Option<Received<Vec<u8>>>> {
        would_block(self.try_recv())
    }
    fn readiness(&self) -> Result<Readiness> {
        Subscriber::readiness(self)
    }
    fn arm(&self, readiness: &Readiness) -> Result<Arm> {
        self.arm_readiness(readiness)
    }
    fn gone(&self) -> Option<Error> {
        self.writer_left().then(|| {
            Error::new(
                ErrorKind::Disconnected,
                "receive from",
                self.name().as_str(),
                "every message is read and the writer is gone",
            )
        })
    }
}

/// A board watched for a version other than `since`.
struct Change<'a> {
    board: &'a Board,
    since: u64,
}

impl AsyncWait for Change<'_> {
    type Output = (Vec<u8>, u64);
    fn attempt(&mut self) -> Result<Option<(Vec<u8>, u64)>> {
        if self.board.version() == self.since {
            return Ok(None);
        }
        self.board.read().map(Some)
    }
    fn readiness(&self) -> Result<Readiness> {
        self.board.readiness()
    }
    fn arm(&self, readiness: &Readiness) -> Result<Arm> {
        self.board.arm_readiness(readiness, self.since)
    }
}

impl Receiver {
    /// Receives the next message, sleeping in tokio's reactor while there
    /// is none (feature `tokio`; see [`crate::readiness`]). Cancel-safe: a
    /// future dropped before it completes has received nothing.
    ///
    /// # Errors
    /// As [`Receiver::recv`] ([`ErrorKind::Disconnected`] once every sender
    /// is gone and the channel is empty), and [`Receiver::readiness`]'s.
    pub async fn recv_async(&mut self) -> Result<Vec<u8>> {
        wait(self).await
    }
}

impl Subscriber {
    /// Receives the next message (or the news of missed ones), sleeping in
    /// tokio's reactor while there is none (feature `tokio`). Cancel-safe.
    ///
    /// # Errors
    /// As [`Subscriber::recv`], and [`Subscriber::readiness`]'s.
    pub async fn recv_async(&mut self) -> Result<Received<Vec<u8>>> {
        wait(self).await
    }
}

impl Board {
    /// Waits, in tokio's reactor, until the board holds a version other
    /// than `since`, then reads it (feature `tokio`): the async
    /// [`wait_for_change`](Board::wait_for_change). Cancel-safe.
    ///
    /// # Errors
    /// As [`Board::read`], and [`Board::readiness`]'s
    /// ([`ErrorKind::ReadOnly`] for a board opened read-only).
    pub async fn changed(&self, since: u64) -> Result<(Vec<u8>, u64)> {
        wait(&mut Change { board: self, since }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::BoardOptions;
    use crate::broadcast::{Broadcast, BroadcastOptions};
    use crate::channel::{Channel, ChannelOptions};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// Sleeps that ended by the slice, not by a wake-up (all tests).
    pub(super) static SLICES_RUN_OUT: AtomicU32 = AtomicU32::new(0);

    /// A unique object name, unlinked on drop.
    struct Name(String);
    impl Name {
        fn new(what: &str) -> Name {
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            Name(format!(
                "/shmkit-test-{}-tokio{n}-{what}",
                std::process::id()
            ))
        }
    }
    impl Drop for Name {
        fn drop(&mut self) {
            let _ = crate::posix::unlink(&self.0);
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Sends from another thread once a descriptor was armed to sleep
    /// (this test's, or another test's: then it only sends sooner).
    fn later(send: impl FnOnce() + Send + 'static) {
        let arms = super::super::tests_support::ARMED_TO_SLEEP.load(Ordering::Relaxed);
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while super::super::tests_support::ARMED_TO_SLEEP.load(Ordering::Relaxed) == arms
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(10));
            send();
        });
    }

    // One test for all three, so that SLICES_RUN_OUT counts only its own
    // waits (tests of one binary run in parallel threads).
    #[test]
    fn recv_async_and_changed_are_woken_through_the_descriptor() {
        let before = SLICES_RUN_OUT.load(Ordering::Relaxed);

        // A channel receiver.
        let name = Name::new("chan");
        let ch =
            Channel::create(&name.0, ChannelOptions::new().capacity(4).max_message(64)).unwrap();
        let mut rx = ch.receiver().unwrap();
        let mut tx = ch.sender().unwrap();
        later(move || tx.send(b"hello").unwrap());
        let got = block_on(rx.recv_async()).unwrap();
        assert_eq!(got, b"hello");

        // A broadcast subscriber.
        let name = Name::new("news");
        let news = Broadcast::create(&name.0, BroadcastOptions::new().capacity(4)).unwrap();
        let mut sub = news.subscribe().unwrap();
        let mut publisher = news.publisher().unwrap();
        later(move || {
            publisher.send(b"extra").unwrap();
        });
        match block_on(sub.recv_async()).unwrap() {
            Received::Message { value, .. } => assert_eq!(value, b"extra"),
            other => panic!("{other:?}"),
        }

        // A board.
        let name = Name::new("board");
        let board = Board::create(&name.0, BoardOptions::new().max_size(64)).unwrap();
        let mut writer = board.writer().unwrap();
        later(move || {
            writer.write(b"sunny").unwrap();
        });
        let (value, version) = block_on(board.changed(0)).unwrap();
        assert_eq!((value.as_slice(), version), (&b"sunny"[..], 1));

        assert_eq!(
            SLICES_RUN_OUT.load(Ordering::Relaxed),
            before,
            "a wait ended by its slice: the sender's byte did not wake the task"
        );

        // Every sender gone (noticed after a slice): Disconnected.
        let name = Name::new("gone");
        let ch =
            Channel::create(&name.0, ChannelOptions::new().capacity(4).max_message(64)).unwrap();
        let mut rx = ch.receiver().unwrap();
        drop(ch.sender().unwrap());
        let err = block_on(rx.recv_async()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
    }

    #[test]
    fn a_message_already_there_needs_no_descriptor() {
        let name = Name::new("ready");
        let ch =
            Channel::create(&name.0, ChannelOptions::new().capacity(4).max_message(64)).unwrap();
        let mut rx = ch.receiver().unwrap();
        ch.sender().unwrap().send(b"now").unwrap();
        assert_eq!(block_on(rx.recv_async()).unwrap(), b"now");
    }
}
