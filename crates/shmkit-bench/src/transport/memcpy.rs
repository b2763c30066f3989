//! `memcpy`: the bandwidth line for `bulk`, in one process.
//!
//! Every copying transport moves a message at least twice: from the
//! producer's buffer into the medium and out into the consumer's. This
//! "transport" does exactly that between two private buffers of one process,
//! with no second process, no synchronisation and no cache lines crossing
//! cores: a ceiling for `bulk`, not something IPC can reach.

use anyhow::{ensure, Result};

use super::{Conn, End, Handoff, Link, LinkSpec, Transport};
use crate::Scenario;

/// Copy in, copy out, one process.
pub struct Memcpy;

impl Transport for Memcpy {
    fn name(&self) -> &'static str {
        "memcpy"
    }
    fn about(&self) -> &'static str {
        "bandwidth line: copy into a buffer and out again, one process (bulk only)"
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
        Ok(Box::new(Loopback {
            medium: vec![0; spec.msg_size],
            full: false,
        }))
    }
}

/// One buffer standing for the medium: `send` fills it, `recv` drains it.
struct Loopback {
    medium: Vec<u8>,
    full: bool,
}

impl Conn for Loopback {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        ensure!(!self.full, "memcpy holds one message: receive it first");
        self.medium.copy_from_slice(msg);
        self.full = true;
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        ensure!(self.full, "memcpy has no message: send one first");
        buf.copy_from_slice(&self.medium);
        self.full = false;
        Ok(())
    }
}
