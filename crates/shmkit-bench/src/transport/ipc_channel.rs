//! `ipc-channel` (cargo feature `peers`): Servo's ipc-channel crate, as a
//! peer to compare with. Bytes channels (`IpcBytesSender`/`IpcBytesReceiver`,
//! no serialisation) over its Linux backend (Unix sockets, large messages
//! in fragments).
//!
//! ipc-channel hands out channels by name, not by descriptor: the parent
//! makes both channels, and for each end a one-shot server whose name the
//! child gets. A broker thread in the parent accepts the child's connection
//! and sends it its two channel ends. The brokers are parent state that the
//! harness keeps until every child is ready; a broker whose child never came
//! is unblocked (by connecting to it) and joined when dropped.

use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};
use ipc_channel::ipc::{self, IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcSender};

use super::{Conn, End, Handoff, Link, LinkSpec, Transport};
use crate::Scenario;

/// Servo's ipc-channel, bytes channels.
pub struct IpcChannel;

/// What a child receives from its broker: where to send, where to receive.
type Ends = (IpcBytesSender, IpcBytesReceiver);
/// The channel over which a child asks its broker for its ends.
type Mailbox = IpcSender<Ends>;

/// One broker thread and the name of its one-shot server.
#[derive(Debug)]
struct Broker {
    name: String,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if !thread.is_finished() {
            // The child never connected: connect and hang up, so that accept
            // returns (with an error) and the thread ends.
            drop(IpcSender::<Mailbox>::connect(self.name.clone()));
        }
        let _ = thread.join();
    }
}

impl Transport for IpcChannel {
    fn name(&self) -> &'static str {
        "ipc-channel"
    }
    fn about(&self) -> &'static str {
        "peer: Servo's ipc-channel bytes channels (Unix sockets), feature `peers`"
    }
    fn supports(&self, scenario: Scenario) -> bool {
        scenario != Scenario::Fanout
    }

    fn link(&self, _spec: &LinkSpec) -> Result<Link> {
        let (tx_ab, rx_ab) = ipc::bytes_channel()?;
        let (tx_ba, rx_ba) = ipc::bytes_channel()?;
        let mut link = Link::default();
        for (end, ends) in [(End::A, (tx_ab, rx_ba)), (End::B, (tx_ba, rx_ab))] {
            let (server, name) = IpcOneShotServer::<Mailbox>::new()?;
            let thread = std::thread::spawn(move || {
                if let Ok((_, mailbox)) = server.accept() {
                    let _ = mailbox.send(ends);
                }
            });
            link.ends[end.index()].args.push(name.clone());
            link.keep.push(Box::new(Broker {
                name,
                thread: Some(thread),
            }));
        }
        Ok(link)
    }

    fn open(&self, _spec: &LinkSpec, _end: End, handoff: Handoff) -> Result<Box<dyn Conn>> {
        let (mailbox, inbox) = ipc::channel::<Ends>()?;
        IpcSender::<Mailbox>::connect(handoff.arg(0)?.to_string())
            .context("connect to the harness's broker")?
            .send(mailbox)
            .map_err(|e| anyhow!("send to the broker: {e:?}"))?;
        let (tx, rx) = inbox
            .recv()
            .map_err(|e| anyhow!("receive the channel ends: {e:?}"))?;
        Ok(Box::new(Channel { tx, rx }))
    }
}

struct Channel {
    tx: IpcBytesSender,
    rx: IpcBytesReceiver,
}

impl Conn for Channel {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.send(msg).context("ipc-channel send")
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        let msg = self
            .rx
            .recv()
            .map_err(|e| anyhow!("ipc-channel recv: {e:?}"))?;
        if msg.len() != buf.len() {
            bail!("a {}-byte message where {} were due", msg.len(), buf.len());
        }
        buf.copy_from_slice(&msg);
        Ok(())
    }
}
