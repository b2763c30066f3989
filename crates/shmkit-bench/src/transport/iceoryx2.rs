//! `iceoryx2` (cargo feature `peers`): Eclipse iceoryx2's publish-subscribe
//! service, as a peer to compare with, used through its public API only.
//!
//! A link is two directions (`TAG/ab` from end A to end B, `TAG/ba` back).
//! Each direction is a publish-subscribe service of byte slices (`[u8]`,
//! one publisher, one subscriber) and an event service of the same name
//! (one notifier, one listener): iceoryx2's subscriber has no blocking
//! receive, and pairing a publisher with a notifier is how iceoryx2 lets a
//! subscriber sleep until data arrives (its "event-based communication"
//! pattern).
//!
//! - **Sending**: the publisher loans a sample from its shared memory pool,
//!   the message is written into it, and `send` hands its offset to the
//!   subscriber; then the notifier wakes the listener. The notifier makes a
//!   system call only when no wake-up is already pending, so a receiver
//!   that keeps up costs the sender an atomic or two. `send_batch` sends
//!   the batch and notifies once (at least once per subscriber buffer's
//!   worth, so a sleeping receiver is woken before the sender can block).
//!   With a full subscriber buffer, `send` waits the way iceoryx2 does
//!   (`BackpressureStrategy::RetryUntilDelivered`: `sched_yield`, then
//!   sleeps of 100 µs, then 10 ms); a backpressure handler turns the wait
//!   into an error at the deadline. One case that wait does not cover: a
//!   subscriber that has not yet attached to the publisher (it does in its
//!   first `receive`) and whose buffer is full gets nothing, and the send
//!   reports no recipient; the sample is then sent again after 50 µs
//!   pauses, so a producer that starts before its consumer loses nothing.
//! - **Receiving**: poll `receive` for up to [`SPIN`] (40 µs, the longest
//!   spin of shmkit's default wait), then sleep on the listener
//!   (`timed_wait`, a Unix datagram socket) until a notification or the
//!   deadline. The spin is the harness's choice, not iceoryx2's: without it
//!   every wait would be a sleep, and the figures would compare shmkit's
//!   spin-then-sleep with a sleep-only line. It is fixed, not adaptive like
//!   shmkit's (halved after a spin that ran out, down to 2 µs): a wake-up
//!   through the listener takes longer than 2 µs even when the receiver has
//!   not fallen asleep yet, so once both ends of a round trip had cut their
//!   spins short they slept on every message and never spun long enough to
//!   see a success again (round trips at about 90 µs instead of 1–3 µs).
//!   `recv_batch` waits for one sample and takes every other one already
//!   there.
//! - **Bulk** uses the zero-copy path: the producer fills the loaned sample
//!   in place and the consumer checks the received sample in place (compare
//!   with `shmkit-zc`, not the copying `shmkit`). Other scenarios copy the
//!   message into the loaned sample and out of the received one.
//!
//! Subscriber buffers are as deep as shmkit's channels in each scenario (4,
//! 1024, 8 messages); safe overflow is off, so nothing is overwritten.
//!
//! # Files
//! Nothing is made in the parent: both children `open_or_create` every
//! service with the same settings (iceoryx2 services live as long as a node
//! uses them and cannot be handed over as descriptors). Each end has its own
//! node whose configuration puts the link's tag first in the name of every
//! file iceoryx2 makes (`/dev/shm/TAG-…`, `/tmp/iceoryx2/…/TAG-…`), so a
//! leftover shows up under the tag like any other transport's. iceoryx2
//! removes a node's and a service's files when the last port and node using
//! them drop, which happens when a child returns from its role, before it
//! exits; the one file it keeps, a node counter, each end removes itself
//! once its node exists ([`remove_node_counter`]). A child the harness
//! kills (after another failed, or at a timeout) leaves its files behind;
//! once every child is gone the harness calls `clean_up` in the parent,
//! which has iceoryx2 remove the stale resources of the link's dead nodes,
//! then removes whatever else is left under the link's prefix.
//!
//! Signal handling is off in every node (the harness handles signals).

use std::hint::spin_loop;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::{BackpressureAction, BackpressureInfo};
use iceoryx2::prelude::*;
use iceoryx2::sample::Sample;
use iceoryx2::sample_mut::SampleMut;
use iceoryx2::sample_mut_uninit::SampleMutUninit;
use shmkit::sync::event::SPIN_MAX;

use super::shmkit_channel::capacity;
use super::{Conn, End, Handoff, Link, LinkSpec, Transport};
use crate::Scenario;

/// iceoryx2 publish-subscribe with event notifications.
pub struct Iceoryx2;

type Pub = Publisher<ipc::Service, [u8], ()>;
type Sub = Subscriber<ipc::Service, [u8], ()>;
type Received = Sample<ipc::Service, [u8], ()>;
type Loaned = SampleMutUninit<ipc::Service, [MaybeUninit<u8>], ()>;
type Filled = SampleMut<ipc::Service, [u8], ()>;

/// How long a receiver polls before it sleeps: shmkit's longest spin.
const SPIN: Duration = SPIN_MAX;
/// Polls of `receive` between two reads of the clock while spinning.
const POLLS_PER_CLOCK_READ: u32 = 32;
/// The pause before a send that reached no subscriber is made again.
const RESEND_PAUSE: Duration = Duration::from_micros(50);

impl Transport for Iceoryx2 {
    fn name(&self) -> &'static str {
        "iceoryx2"
    }
    fn about(&self) -> &'static str {
        "peer: iceoryx2 publish-subscribe + event service, bounded spin then listener sleep, \
         zero-copy in bulk, feature `peers`"
    }
    fn supports(&self, scenario: Scenario) -> bool {
        // Not wired for `fanout` (one publisher, several subscribers) yet.
        scenario != Scenario::Fanout
    }

    fn link(&self, _spec: &LinkSpec) -> Result<Link> {
        // Both children open or create the services themselves (see above).
        Ok(Link::default())
    }

    fn open(&self, spec: &LinkSpec, end: End, _handoff: Handoff) -> Result<Box<dyn Conn>> {
        Ok(Box::new(
            Iceoryx2Conn::open(spec, end).context("iceoryx2: open the link")?,
        ))
    }

    /// Removes what killed children left. First iceoryx2's own way: the
    /// stale resources of the link's dead nodes (it tells a dead node by its
    /// released file lock), which removes the services only they used. Then
    /// whatever still bears the link's prefix: a process killed while it
    /// made its node or a service leaves half-made files that iceoryx2 does
    /// not count as a dead node. Every process of the link is gone by now
    /// and no other link uses the prefix, so nothing under it is in use.
    fn clean_up(&self, spec: &LinkSpec) {
        let Ok(config) = config(spec) else {
            return;
        };
        let _ = Node::<ipc::Service>::list(&config, |node| {
            if let NodeState::Dead(dead) = node {
                let _ = dead.blocking_remove_stale_resources(Duration::from_secs(1));
            }
            CallbackProgression::Continue
        });
        remove_node_counter(&config);
        remove_files_with_prefix(&config);
    }
}

/// iceoryx2's configuration for one link: defaults, but every file's name
/// starts with the link's tag.
fn config(spec: &LinkSpec) -> Result<Config> {
    let mut config = Config::default();
    config.global.prefix = FileName::new(format!("{}-", spec.tag).as_bytes())
        .map_err(|e| anyhow!("{:?} as a file name prefix: {e:?}", spec.tag))?;
    Ok(config)
}

/// Removes the link's node counter: a shared memory object
/// (`PREFIX…node.VERSION.global_mgmt`) that iceoryx2 reads only while it
/// makes a node, and never removes. Each end removes it once its own node
/// exists; an end whose peer made the counter first and removed it makes a
/// new one, and removes that. Ids stay unique: a node's id holds its
/// process id besides the counter, and a link's two nodes are in two
/// processes.
fn remove_node_counter(config: &Config) {
    let prefix = config.global.prefix.to_string();
    let suffix = config.global.node.global_mgmt_suffix.to_string();
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(&suffix) {
            // Gone already (the peer removed it) is fine.
            let _ = shmkit::posix::unlink(&format!("/{name}"));
        }
    }
}

/// Removes every file whose name starts with the configuration's prefix
/// from /dev/shm and from iceoryx2's directories (its root, the node and
/// service directories, and each node's own directory, named by node id,
/// which goes too if that leaves it empty).
fn remove_files_with_prefix(config: &Config) {
    let prefix = config.global.prefix.to_string();
    let remove = |dir: &Path| -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        removed
    };
    remove(Path::new("/dev/shm"));
    remove(Path::new(&config.global.root_path().to_string()));
    remove(Path::new(&config.global.service_dir().to_string()));
    let node_dir = PathBuf::from(config.global.node_dir().to_string());
    remove(&node_dir);
    for entry in std::fs::read_dir(&node_dir).into_iter().flatten().flatten() {
        // Only a directory this emptied: another node's may be in the
        // making, and empty for a moment.
        if entry.file_type().is_ok_and(|t| t.is_dir()) && remove(&entry.path()) > 0 {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

fn service_name(spec: &LinkSpec, dir: &str) -> Result<ServiceName> {
    let name = format!("{}/{dir}", spec.tag);
    ServiceName::new(&name).map_err(|e| anyhow!("service name {name:?}: {e:?}"))
}

struct Iceoryx2Conn {
    // Ports first: fields drop in order, the node after its ports.
    publisher: Pub,
    notifier: Notifier<ipc::Service>,
    subscriber: Sub,
    listener: Listener<ipc::Service>,
    _node: Node<ipc::Service>,
    /// Messages a subscriber buffer holds: notify at least this often.
    depth: usize,
    deadline: Instant,
}

impl Iceoryx2Conn {
    fn open(spec: &LinkSpec, end: End) -> Result<Self> {
        let config = config(spec)?;
        let node = NodeBuilder::new()
            .config(&config)
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>()
            .context("create a node")?;
        remove_node_counter(&config);
        let (out, inn) = match end {
            End::A => ("ab", "ba"),
            End::B => ("ba", "ab"),
        };
        let depth = capacity(spec);
        let deadline = spec.deadline(Instant::now());

        let pubsub = |dir: &str| -> Result<_> {
            node.service_builder(&service_name(spec, dir)?)
                .publish_subscribe::<[u8]>()
                .max_publishers(1)
                .max_subscribers(1)
                .history_size(0)
                .enable_safe_overflow(false)
                .subscriber_max_buffer_size(depth)
                .subscriber_max_borrowed_samples(1)
                .open_or_create()
                .with_context(|| format!("open or create the publish-subscribe service {dir}"))
        };
        let event = |dir: &str| -> Result<_> {
            node.service_builder(&service_name(spec, dir)?)
                .event()
                .max_notifiers(1)
                .max_listeners(1)
                .open_or_create()
                .with_context(|| format!("open or create the event service {dir}"))
        };

        let publisher = pubsub(out)?
            .publisher_builder()
            .initial_max_slice_len(spec.msg_size)
            .max_loaned_samples(1)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .set_backpressure_handler(move |_: &BackpressureInfo| {
                if Instant::now() < deadline {
                    BackpressureAction::Retry
                } else {
                    BackpressureAction::DiscardDataAndFail
                }
            })
            .create()
            .context("create the publisher")?;
        let notifier = event(out)?
            .notifier_builder()
            .create()
            .context("create the notifier")?;
        let subscriber = pubsub(inn)?
            .subscriber_builder()
            .buffer_size(depth)
            .create()
            .context("create the subscriber")?;
        let listener = event(inn)?
            .listener_builder()
            .create()
            .context("create the listener")?;
        Ok(Iceoryx2Conn {
            publisher,
            notifier,
            subscriber,
            listener,
            _node: node,
            depth,
            deadline,
        })
    }

    /// Loans a `len`-byte sample, has `write` fill it, and sends it (no
    /// notification). A send that reached no subscriber is made again, after
    /// a pause, until the deadline: iceoryx2 drops a sample, and reports no
    /// recipient, when the subscriber's buffer is full and the subscriber
    /// has not yet attached to this publisher (it attaches in its first
    /// `receive` after the publisher appeared), which a producer that starts
    /// before its consumer runs into.
    fn send_with(&self, len: usize, mut write: impl FnMut(Loaned) -> Result<Filled>) -> Result<()> {
        loop {
            let sample = self
                .publisher
                .loan_slice_uninit(len)
                .context("iceoryx2 loan")?;
            match write(sample)?.send().context("iceoryx2 send")? {
                1 => return Ok(()),
                0 if Instant::now() < self.deadline => std::thread::sleep(RESEND_PAUSE),
                0 => bail!("iceoryx2 send: no subscriber took the message before the deadline"),
                n => bail!("iceoryx2 send: {n} subscribers where one was due"),
            }
        }
    }

    /// Copies `msg` into a loaned sample and sends it (no notification).
    fn publish(&self, msg: &[u8]) -> Result<()> {
        self.send_with(msg.len(), |sample| Ok(sample.write_from_slice(msg)))
    }

    /// Wakes the receiver if it sleeps (or will: the wake-up stays pending).
    fn wake(&self) -> Result<()> {
        self.notifier.notify().context("iceoryx2 notify")?;
        Ok(())
    }

    /// The next sample, if one is there now.
    fn try_take(&self) -> Result<Option<Received>> {
        self.subscriber.receive().context("iceoryx2 receive")
    }

    /// The next sample: a bounded spin, then sleeps on the listener until
    /// the deadline.
    fn take(&self) -> Result<Received> {
        if let Some(sample) = self.try_take()? {
            return Ok(sample);
        }
        let start = Instant::now();
        let limit = SPIN.min(self.deadline.saturating_duration_since(start));
        while start.elapsed() < limit {
            for _ in 0..POLLS_PER_CLOCK_READ {
                spin_loop();
                if let Some(sample) = self.try_take()? {
                    return Ok(sample);
                }
            }
        }
        loop {
            // A notification sent after this check wakes the wait below (it
            // stays pending until a listener consumes it).
            if let Some(sample) = self.try_take()? {
                return Ok(sample);
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("iceoryx2: no message before the deadline");
            }
            self.listener
                .timed_wait(|_| {}, left)
                .context("iceoryx2 listener wait")?;
        }
    }
}

fn check_len(got: usize, due: usize) -> Result<()> {
    if got != due {
        bail!("a {got}-byte message where {due} were due");
    }
    Ok(())
}

impl Conn for Iceoryx2Conn {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.publish(msg)?;
        self.wake()
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        let sample = self.take()?;
        check_len(sample.payload().len(), buf.len())?;
        buf.copy_from_slice(sample.payload());
        Ok(())
    }

    fn send_batch(&mut self, msgs: &[u8], msg_size: usize) -> Result<()> {
        // One wake-up per batch, or per subscriber buffer if the batch is
        // longer: a sender blocked on a full buffer has woken the receiver.
        for chunk in msgs.chunks(self.depth * msg_size) {
            for m in chunk.chunks_exact(msg_size) {
                self.publish(m)?;
            }
            self.wake()?;
        }
        Ok(())
    }

    fn recv_batch(&mut self, buf: &mut [u8], msg_size: usize) -> Result<usize> {
        let max = buf.len() / msg_size;
        let mut next = Some(self.take()?);
        let mut n = 0;
        while let Some(sample) = next {
            check_len(sample.payload().len(), msg_size)?;
            buf[n * msg_size..(n + 1) * msg_size].copy_from_slice(sample.payload());
            n += 1;
            // Back to the publisher before the next one is taken.
            drop(sample);
            next = if n < max { self.try_take()? } else { None };
        }
        Ok(n)
    }

    fn send_in_place(&mut self, len: usize, fill: &mut dyn FnMut(*mut u8)) -> Option<Result<()>> {
        Some((|| {
            self.send_with(len, |mut sample| {
                check_len(sample.payload_mut().len(), len)?;
                fill(sample.payload_mut().as_mut_ptr().cast::<u8>());
                // SAFETY: `fill` wrote all `len` bytes of the payload (the
                // contract of `Conn::send_in_place`), so every element is
                // initialised.
                Ok(unsafe { sample.assume_init() })
            })?;
            self.wake()
        })())
    }

    fn recv_in_place(
        &mut self,
        len: usize,
        read: &mut dyn FnMut(*const u8) -> Result<()>,
    ) -> Option<Result<()>> {
        Some((|| {
            let sample = self.take()?;
            check_len(sample.payload().len(), len)?;
            read(sample.payload().as_ptr())
        })())
    }
}
