//! `shmkit-stream`: shmkit's stream channel (`ChannelOptions::stream`, the
//! framed byte ring): records end to end, a batch published with one
//! store, the receiver taking every published record in one call. The same
//! link and copying connection as `shmkit` (one channel per direction,
//! `send_batch` and `recv_batch` in `stream`), over the byte ring.

use anyhow::Result;
use shmkit::channel::{ChannelOptions, WaitStrategy};

use super::shmkit_channel::{capacity, copying, link_with};
use super::{Conn, End, Handoff, Link, LinkSpec, Transport};
use crate::Scenario;

/// shmkit's stream channel, default wait strategy, copying.
pub struct ShmkitStream;

/// About this many bytes of ring in `stream`, as the floors' rings.
const STREAM_BYTES: usize = 256 << 10;

impl Transport for ShmkitStream {
    fn name(&self) -> &'static str {
        "shmkit-stream"
    }
    fn about(&self) -> &'static str {
        "shmkit stream channel pair (framed byte ring: records end to end, one publish per batch), default wait, copy in/out"
    }
    fn supports(&self, scenario: Scenario) -> bool {
        scenario != Scenario::Fanout
    }
    fn link(&self, spec: &LinkSpec) -> Result<Link> {
        let max = spec.msg_size.max(8);
        // A stream's ring holds about STREAM_BYTES of the largest records
        // (8 bytes of header each); the other scenarios as `shmkit`.
        let records = match spec.scenario {
            Scenario::Stream => (STREAM_BYTES / (max + 8))
                .clamp(4, 1 << 20)
                .next_power_of_two(),
            _ => capacity(spec),
        };
        let mut opts = ChannelOptions::new();
        opts.capacity(records).max_message(max).stream(true);
        link_with(spec, &opts)
    }
    fn open(&self, spec: &LinkSpec, end: End, handoff: Handoff) -> Result<Box<dyn Conn>> {
        copying(spec, end, &handoff, WaitStrategy::SpinThenSleep)
    }
}
