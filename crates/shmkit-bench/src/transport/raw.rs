//! `raw-spin` and `raw-futex`: the floors for messages, written in the
//! harness. Both use the shared-memory ring of [`super::ring`]; they differ
//! only in how a waiter waits.
//!
//! - `raw-spin` busy-polls the slot's cache line for up to 50 µs (adaptive:
//!   less after spins that failed), then sleeps on a shared futex. With a
//!   core per process this is the fastest a message can cross (one cache
//!   line transfer each way); with more processes than cores the bounded
//!   spin keeps it from starving the peer.
//! - `raw-futex` never spins: every wait is a `FUTEX_WAIT` and every wake a
//!   `FUTEX_WAKE` (shared, not private). It is the floor for anything that
//!   sleeps and wakes.
//!
//! In `fanout` both use the one-writer, many-reader ring of
//! [`super::fanout_ring`] instead (lossless: the writer waits for the
//! slowest reader), with the same two ways of waiting.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::fanout_ring;
use super::ring::{self, Notify, RingConn};
use super::{Conn, End, Handoff, Link, LinkSpec, Named, Transport};
use crate::Scenario;

/// How long a `raw-spin` waiter polls before it sleeps: a wake-up costs
/// 25–50 µs here, so spinning about as long captures most of the gain.
const MAX_SPIN: Duration = Duration::from_micros(50);

/// Busy-polled shared memory ring, bounded spin then futex.
pub struct RawSpin;

/// Shared memory ring whose waiters always sleep on a shared futex.
pub struct RawFutex;

fn link(spec: &LinkSpec) -> Result<Link> {
    if spec.scenario == Scenario::Fanout {
        return fanout_ring::link(spec);
    }
    let name = ring::create_object(spec)?;
    let mut link = Link::default();
    link.ends[0].args.push(name.clone());
    link.ends[1].args.push(name.clone());
    link.names.push(Named::Shm(name));
    Ok(link)
}

fn open(spec: &LinkSpec, end: End, handoff: &Handoff, spin: Duration) -> Result<Box<dyn Conn>> {
    if spec.scenario == Scenario::Fanout {
        return fanout_ring::open(spec, end, handoff, spin);
    }
    let deadline = spec.deadline(Instant::now());
    Ok(Box::new(RingConn::open(
        handoff.arg(0)?,
        spec,
        end,
        Notify::futex(spin),
        Notify::futex(spin),
        deadline,
    )?))
}

impl Transport for RawSpin {
    fn name(&self) -> &'static str {
        "raw-spin"
    }
    fn about(&self) -> &'static str {
        "floor: SPSC ring in a POSIX shm object (fanout: one ring, a cursor per reader, lossless), busy-poll up to 50 µs, then shared futex"
    }
    fn supports(&self, _: Scenario) -> bool {
        true
    }
    fn link(&self, spec: &LinkSpec) -> Result<Link> {
        link(spec)
    }
    fn open(&self, spec: &LinkSpec, end: End, handoff: Handoff) -> Result<Box<dyn Conn>> {
        open(spec, end, &handoff, MAX_SPIN)
    }
}

impl Transport for RawFutex {
    fn name(&self) -> &'static str {
        "raw-futex"
    }
    fn about(&self) -> &'static str {
        "floor for sleeping: the same ring, every wait a shared FUTEX_WAIT"
    }
    fn supports(&self, _: Scenario) -> bool {
        true
    }
    fn link(&self, spec: &LinkSpec) -> Result<Link> {
        link(spec)
    }
    fn open(&self, spec: &LinkSpec, end: End, handoff: Handoff) -> Result<Box<dyn Conn>> {
        open(spec, end, &handoff, Duration::ZERO)
    }
}
