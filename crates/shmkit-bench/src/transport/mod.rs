//! Transports: how messages get from one process to another.
//!
//! A transport makes *links*. A link joins two processes and carries
//! messages both ways; its two ends are called [`End::A`] (the side that
//! sends first: a client or a producer) and [`End::B`]. The harness asks
//! the transport for a link in the parent process ([`Transport::link`]),
//! hands each end's file descriptors and arguments to the child process
//! that owns it, and the child opens its end ([`Transport::open`]) as a
//! [`Conn`]. Names of objects the link created (`/dev/shm`, `/dev/mqueue`)
//! are listed in [`Link::names`]; the harness removes them as soon as every
//! child has opened its end, and again at the end if something failed.
//!
//! # Fan-out links
//! In `fanout` a link joins one writer to [`LinkSpec::readers`] readers:
//! the writer opens [`End::A`] from `Link::ends[0]`, reader *k* opens
//! [`End::B`] from `Link::readers[k]` (`Link::ends[1]` is unused). The
//! writer only sends, each reader only receives. A transport that may drop
//! messages by design (a latest-value board, a broadcast that overwrites
//! what a slow reader has not read) says so with [`Transport::lossy`]:
//! its readers then count the messages they missed instead of failing.
//!
//! # Adding a transport (one file)
//! 1. Create `src/transport/NAME.rs` with a unit struct implementing
//!    [`Transport`]:
//!    - `link`: make the shared thing (a socket pair, a shared memory
//!      object, a queue) for messages of `spec.msg_size` bytes; put each
//!      end's file descriptors and strings in [`Link::ends`];
//!    - `open`: in the child, turn an [`Handoff`] back into a [`Conn`];
//!      `send` and `recv` move one whole message; override `send_batch` and
//!      `recv_batch` where the transport can move many at once;
//!    - `supports`: the scenarios it can run (others are left out of the
//!      report, not shown as failures).
//! 2. Add `mod NAME;` below and the type to [`all`].
//!
//! A transport whose children make objects the parent cannot name in advance
//! (a peer library's own files) removes what a killed child left of them in
//! [`Transport::clean_up`].
//!
//! A transport that hits a limit (a queue's message size, a datagram's) returns
//! the error from `link` or `open`; the report shows it in that row.
//!
//! Peers (other crates) go behind the cargo feature `peers`, off by default:
//! `ipc-channel` and `iceoryx2` (see the crate README).

mod bytestream;
mod eventfd;
mod fanout_ring;
#[cfg(feature = "peers")]
mod iceoryx2;
#[cfg(feature = "peers")]
mod ipc_channel;
mod memcpy;
mod pipe;
mod posix_mq;
mod raw;
mod raw_stream;
mod ring;
mod shmkit_channel;
mod shmkit_fanout;
mod shmkit_ready;
mod shmkit_stream;
mod tcp;
mod unix_dgram;
mod unix_stream;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::Scenario;

/// Every transport the harness knows, in report order: floors first, then
/// classic IPC.
pub fn all() -> Vec<&'static dyn Transport> {
    #[allow(unused_mut)] // without peers nothing is added
    let mut all: Vec<&'static dyn Transport> = vec![
        &raw::RawSpin,
        &raw_stream::RawStream,
        &raw::RawFutex,
        &memcpy::Memcpy,
        &pipe::Pipe,
        &unix_stream::UnixStream,
        &unix_dgram::UnixDgram,
        &tcp::Tcp,
        &eventfd::EventFd,
        &posix_mq::PosixMq,
        &shmkit_channel::Shmkit,
        &shmkit_channel::ShmkitBlock,
        &shmkit_channel::ShmkitZeroCopy,
        &shmkit_channel::ShmkitMpmc,
        &shmkit_stream::ShmkitStream,
        &shmkit_fanout::ShmkitBoard,
        &shmkit_fanout::ShmkitLossless,
        // issue 13 (clib): waits on the readiness descriptor
        &shmkit_ready::ShmkitReady,
    ];
    #[cfg(feature = "peers")]
    all.push(&ipc_channel::IpcChannel);
    #[cfg(feature = "peers")]
    all.push(&iceoryx2::Iceoryx2);
    all
}

/// The transport with this name.
pub fn by_name(name: &str) -> Result<&'static dyn Transport> {
    match all().into_iter().find(|t| t.name() == name) {
        Some(t) => Ok(t),
        None => bail!(
            "unknown transport {name:?}; known: {}",
            all()
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The named transports (all when `names` is empty), in report order.
pub(crate) fn select(names: &[String]) -> Result<Vec<&'static dyn Transport>> {
    for n in names {
        by_name(n)?;
    }
    Ok(all()
        .into_iter()
        .filter(|t| names.is_empty() || names.iter().any(|n| n == t.name()))
        .collect())
}

/// One way for processes to exchange messages.
pub trait Transport: Sync {
    /// Short name used on the command line and in reports (`pipe`, `raw-spin`).
    fn name(&self) -> &'static str;

    /// One line saying what the transport is.
    fn about(&self) -> &'static str;

    /// Whether the transport can run `scenario`.
    fn supports(&self, scenario: Scenario) -> bool;

    /// Whether both ends live in one process (a bandwidth line such as
    /// `memcpy`): the harness then runs one child that sends and receives in
    /// turn, for `bulk` only.
    fn in_one_process(&self) -> bool {
        false
    }

    /// Whether readers may miss messages by design in `fanout` (a board
    /// keeps only the latest value; a broadcast overwrites what a slow
    /// reader has not read). Readers of a lossless transport fail on a gap
    /// in the sequence; those of a lossy one count it as lost.
    fn lossy(&self) -> bool {
        false
    }

    /// In the parent: makes one link for messages of `spec.msg_size` bytes.
    fn link(&self, spec: &LinkSpec) -> Result<Link>;

    /// In a child: opens one end of a link from what the parent handed over.
    fn open(&self, spec: &LinkSpec, end: End, handoff: Handoff) -> Result<Box<dyn Conn>>;

    /// In the parent, once every process of the link has exited or been
    /// killed: removes what they may have left behind that [`Link::names`]
    /// could not name in advance (files a peer library names itself).
    /// Called after every measurement, failed or not. Nothing by default.
    fn clean_up(&self, _spec: &LinkSpec) {}
}

/// One end of a link, in the process that owns it.
///
/// Every call moves whole messages of the link's message size. A call that
/// waits gives up (with an error) once the deadline of [`LinkSpec`] has
/// passed where the transport can wait with a timeout; otherwise the harness
/// kills the process.
pub trait Conn {
    /// Sends one message.
    fn send(&mut self, msg: &[u8]) -> Result<()>;

    /// Receives one message into `buf`, which is exactly one message long.
    fn recv(&mut self, buf: &mut [u8]) -> Result<()>;

    /// Sends the messages laid end to end in `msgs`, each `msg_size` bytes.
    /// Transports that can batch (a byte stream's single `write`) override it.
    fn send_batch(&mut self, msgs: &[u8], msg_size: usize) -> Result<()> {
        for m in msgs.chunks_exact(msg_size) {
            self.send(m)?;
        }
        Ok(())
    }

    /// Zero-copy send of one `len`-byte message: `fill` writes it in place
    /// (every one of its `len` bytes) through a pointer to `len` writable
    /// bytes that no other process touches until the call returns. `None`: the transport has no such
    /// path, and the harness sends from its own buffer instead.
    fn send_in_place(&mut self, _len: usize, _fill: &mut dyn FnMut(*mut u8)) -> Option<Result<()>> {
        None
    }

    /// Zero-copy receive of one `len`-byte message: `read` looks at it in
    /// place through a pointer to `len` bytes, valid during the call.
    /// `None`: no such path.
    fn recv_in_place(
        &mut self,
        _len: usize,
        _read: &mut dyn FnMut(*const u8) -> Result<()>,
    ) -> Option<Result<()>> {
        None
    }

    /// Receives at least one and at most `buf.len() / msg_size` messages into
    /// `buf`, laid end to end; returns how many.
    fn recv_batch(&mut self, buf: &mut [u8], msg_size: usize) -> Result<usize> {
        self.recv(&mut buf[..msg_size])?;
        Ok(1)
    }
}

/// Which end of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum End {
    /// The end that sends first: a client, a producer.
    A,
    /// The other end: a server, a consumer.
    B,
}

impl End {
    /// 0 for A, 1 for B.
    pub fn index(self) -> usize {
        match self {
            End::A => 0,
            End::B => 1,
        }
    }
}

/// What a link is made for; the same value reaches the parent and the child.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkSpec {
    /// Bytes in every message.
    pub msg_size: usize,
    /// The scenario the link serves (a transport may size buffers by it).
    pub scenario: Scenario,
    /// A prefix unique to this link on this machine, for naming objects:
    /// `shmkit-bench-PID-RUN-LINK`.
    pub tag: String,
    /// Milliseconds from the child's start after which waits give up.
    pub deadline_ms: u64,
    /// Processes that receive on the link: 1, or in `fanout` the readers.
    pub readers: usize,
}

impl LinkSpec {
    /// The instant after which waits give up, counted from the child's start.
    pub fn deadline(&self, start: Instant) -> Instant {
        start + std::time::Duration::from_millis(self.deadline_ms)
    }
}

/// What one end of a link needs: file descriptors inherited by the child, and
/// strings (object names, sizes).
#[derive(Debug, Default)]
pub struct Handoff {
    /// Descriptors in the order the transport put them.
    pub fds: Vec<OwnedFd>,
    /// Strings in the order the transport put them.
    pub args: Vec<String>,
}

impl Handoff {
    /// The next descriptor, in the order the transport put them in `link`.
    pub fn take_fd(&mut self) -> Result<OwnedFd> {
        if self.fds.is_empty() {
            bail!("the handoff has no file descriptor left");
        }
        Ok(self.fds.remove(0))
    }

    /// The string at `index`.
    pub fn arg(&self, index: usize) -> Result<&str> {
        match self.args.get(index) {
            Some(a) => Ok(a),
            None => bail!("handoff lacks argument #{index}"),
        }
    }

    pub(crate) fn to_wire(&self) -> HandoffWire {
        HandoffWire {
            fds: self.fds.iter().map(|f| f.as_raw_fd()).collect(),
            args: self.args.clone(),
        }
    }

    /// Takes ownership of the descriptors named in `wire`.
    ///
    /// # Safety
    /// Every descriptor in `wire.fds` must be open in this process, owned by
    /// nothing else, and not named twice: the harness guarantees it for a
    /// child started with the specification it wrote.
    pub(crate) unsafe fn from_wire(wire: HandoffWire) -> Self {
        Handoff {
            fds: wire
                .fds
                .into_iter()
                // SAFETY: the caller's contract: open, unowned, unique.
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                .collect(),
            args: wire.args,
        }
    }
}

/// A [`Handoff`] as written into a child's specification: descriptor numbers
/// (inherited across `exec`) instead of owned descriptors.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HandoffWire {
    pub fds: Vec<RawFd>,
    pub args: Vec<String>,
}

/// A named object a link created, removed by the harness once every child
/// has opened it (and again at the end, in case a run failed first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Named {
    /// A POSIX shared memory object (`/dev/shm`).
    Shm(String),
    /// A POSIX message queue (`/dev/mqueue`).
    MessageQueue(String),
}

impl Named {
    /// Removes the object; one that is already gone is not an error.
    pub fn remove(&self) {
        match self {
            Named::Shm(name) => {
                let _ = shmkit::posix::unlink(name);
            }
            Named::MessageQueue(name) => posix_mq::unlink(name),
        }
    }
}

/// One link as the parent made it.
#[derive(Debug, Default)]
pub struct Link {
    /// What end A and end B receive (in `fanout`: end A is the writer's,
    /// end B is unused).
    pub ends: [Handoff; 2],
    /// `fanout` only: what each reader receives, one per reader, in order.
    pub readers: Vec<Handoff>,
    /// Named objects to remove once both ends are open.
    pub names: Vec<Named>,
    /// Parent-side state kept alive until every child is ready, then
    /// dropped (a broker thread that hands out channel ends by name).
    pub keep: Vec<Box<dyn std::any::Any + Send>>,
}
