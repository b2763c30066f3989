//! `shmkit-ready`: shmkit's SPSC channel pair, every wait a `poll(2)` on
//! the receiver's readiness descriptor (`shmkit::readiness`), as an event
//! loop waits: try to receive; if empty, arm; if still empty, poll. No
//! spinning, so its round trip is to be read against `raw-futex` (every
//! wait a shared `FUTEX_WAIT`) and `shmkit-block`: the readiness path
//! should add no second wake-up.

use std::time::Instant;

use anyhow::{bail, Result};
use shmkit::channel::{Channel, Receiver, Sender};
use shmkit::readiness::{Arm, Readiness, SLICE};
use shmkit::ErrorKind;

use super::shmkit_channel::link;
use super::{Conn, End, Handoff, Link, LinkSpec, Transport};
use crate::Scenario;

/// shmkit's channel, waits on the readiness descriptor.
pub struct ShmkitReady;

struct ReadyConn {
    tx: Sender,
    rx: Receiver,
    ready: Readiness,
    deadline: Instant,
}

impl Conn for ReadyConn {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        Ok(self.tx.send_deadline(msg, self.deadline)?)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        loop {
            match self.rx.try_recv_slot() {
                Ok(slot) => {
                    if slot.len() != buf.len() {
                        bail!(
                            "a message of {} bytes where {} were due",
                            slot.len(),
                            buf.len()
                        );
                    }
                    slot.read_at(0, buf)?;
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
            if Instant::now() >= self.deadline {
                bail!("no message before the deadline");
            }
            if self.rx.arm_readiness(&self.ready)? == Arm::Sleep {
                self.ready.wait(Some(SLICE))?;
            }
        }
    }
}

impl Transport for ShmkitReady {
    fn name(&self) -> &'static str {
        "shmkit-ready"
    }
    fn about(&self) -> &'static str {
        "shmkit SPSC channel pair, every wait a poll(2) on the receiver's readiness descriptor (as an event loop), no spinning"
    }
    fn supports(&self, scenario: Scenario) -> bool {
        matches!(scenario, Scenario::Rtt | Scenario::Oversubscribed)
    }
    fn link(&self, spec: &LinkSpec) -> Result<Link> {
        link(spec, true)
    }
    fn open(&self, spec: &LinkSpec, end: End, handoff: Handoff) -> Result<Box<dyn Conn>> {
        let ab = Channel::open(handoff.arg(0)?)?;
        let ba = Channel::open(handoff.arg(1)?)?;
        let (tx, rx) = match end {
            End::A => (ab.sender()?, ba.receiver()?),
            End::B => (ba.sender()?, ab.receiver()?),
        };
        let ready = rx.readiness()?;
        Ok(Box::new(ReadyConn {
            tx,
            rx,
            ready,
            deadline: spec.deadline(Instant::now()),
        }))
    }
}
