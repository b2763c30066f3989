//! `memcpy`: the bandwidth line for `bulk`, in one process.
//!
//! One core copies each message once (`ptr::copy_nonoverlapping` through
//! `copy_from_slice`) from one private buffer into another: no second
//! process, no synchronisation, no fill or read of the payload, no cache
//! lines crossing cores. A copying transport makes at least this copy per
//! message (usually two: in and out), but spreads its work over two cores
//! (the producer fills and copies in while the consumer copies out and
//! reads), so it can come close to this line or, on a machine with spare
//! memory bandwidth, pass it.

use anyhow::{ensure, Result};

use super::{Conn, End, Handoff, Link, LinkSpec, Transport};
use crate::Scenario;

/// One copy per message, one process.
pub struct Memcpy;

impl Transport for Memcpy {
    fn name(&self) -> &'static str {
        "memcpy"
    }
    fn about(&self) -> &'static str {
        "bandwidth line: one core copies each message once (bulk only, one process)"
    }
    fn supports(&self, scenario: Scenario) -> bool {
        scenario == Scenario::Bulk
    }
    fn in_one_process(&self) -> bool {
        true
    }
    fn link(&self, _spec: &LinkSpec) -> Result<Link> {
        Ok(Link::default())
    }
    fn open(&self, spec: &LinkSpec, _end: End, _handoff: Handoff) -> Result<Box<dyn Conn>> {
        Ok(Box::new(Medium {
            bytes: vec![0; spec.msg_size],
            sent: false,
        }))
    }
}

/// A private buffer standing for the medium: `send` overwrites it with one
/// copy, `recv` copies the latest message out.
struct Medium {
    bytes: Vec<u8>,
    sent: bool,
}

impl Conn for Medium {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.bytes.copy_from_slice(msg);
        self.sent = true;
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        ensure!(self.sent, "memcpy has no message: send one first");
        buf.copy_from_slice(&self.bytes);
        Ok(())
    }
}
