//! `eventfd`: payload in shared memory, notification through eventfds.
//!
//! The same ring as `raw-futex` (see [`super::ring`]), but the producer
//! signals every publish (or batch) with `write` to a `data` eventfd and the
//! consumer sleeps in `read` of it; a producer that finds the ring full
//! sleeps in `read` of a `space` eventfd. This is how shared memory is
//! usually paired with an fd that `epoll` can watch.

use std::time::Instant;

use anyhow::Result;
use rustix::event::EventfdFlags;

use super::ring::{self, Notify, RingConn};
use super::{Conn, End, Handoff, Link, LinkSpec, Named, Transport};
use crate::Scenario;

/// Shared memory ring with eventfd wake-ups.
pub struct EventFd;

impl Transport for EventFd {
    fn name(&self) -> &'static str {
        "eventfd"
    }
    fn about(&self) -> &'static str {
        "payload in a POSIX shm ring, every wake-up a write/read of an eventfd"
    }
    fn supports(&self, scenario: Scenario) -> bool {
        scenario != Scenario::Fanout
    }

    /// Descriptors, for both ends alike: lane 0 data, lane 0 space, lane 1
    /// data, lane 1 space (lane 0 carries A to B).
    fn link(&self, spec: &LinkSpec) -> Result<Link> {
        let name = ring::create_object(spec)?;
        let mut link = Link::default();
        link.names.push(Named::Shm(name.clone()));
        for _ in 0..4 {
            let fd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC)?;
            link.ends[1].fds.push(rustix::io::dup(&fd)?);
            link.ends[0].fds.push(fd);
        }
        for end in &mut link.ends {
            end.args.push(name.clone());
        }
        Ok(link)
    }

    fn open(&self, spec: &LinkSpec, end: End, mut handoff: Handoff) -> Result<Box<dyn Conn>> {
        let deadline = spec.deadline(Instant::now());
        let mut lanes = Vec::new();
        for _ in 0..2 {
            let data = handoff.take_fd()?;
            let space = handoff.take_fd()?;
            lanes.push(Notify::EventFd { data, space });
        }
        let lane1 = lanes.pop().expect("two lanes");
        let lane0 = lanes.pop().expect("two lanes");
        let (tx, rx) = match end {
            End::A => (lane0, lane1),
            End::B => (lane1, lane0),
        };
        Ok(Box::new(RingConn::open(
            handoff.arg(0)?,
            spec,
            end,
            tx,
            rx,
            deadline,
        )?))
    }
}
