//! Creating and opening a channel ([`Channel`], [`ChannelOptions`]) and
//! connecting its endpoints.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::layout::*;
use super::receiver::Receiver;
use super::ring;
use super::sender::Sender;
use super::spsc;
use super::stream;
use super::wait::WaitStrategy;
use crate::error::{Error, ErrorKind, Result};
use crate::layout::{self, Kind};
use crate::posix::ShmName;
use crate::process::{Home, ProcessId};
use crate::shared_object;

/// How to create a channel.
#[derive(Debug, Clone)]
pub struct ChannelOptions {
    capacity: usize,
    max_msg: usize,
    mode: u32,
    spsc: bool,
    stream: bool,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ChannelOptions {
    /// 1024 messages of up to 1024 bytes, mode 0600.
    pub fn new() -> Self {
        ChannelOptions {
            capacity: 1024,
            max_msg: 1024,
            mode: 0o600,
            spsc: false,
            stream: false,
        }
    }

    /// How many messages the ring holds; rounded up to a power of two.
    pub fn capacity(&mut self, capacity: usize) -> &mut Self {
        self.capacity = capacity;
        self
    }

    /// The largest message in bytes.
    pub fn max_message(&mut self, bytes: usize) -> &mut Self {
        self.max_msg = bytes;
        self
    }

    /// Permission bits of the object (default 0600).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    /// One sender and one receiver at a time (default: any number).
    ///
    /// The channel then runs a single-producer / single-consumer ring: a
    /// message crosses in one cache-line transfer with no compare-and-swap,
    /// several times the streaming rate of the shared ring. A second live
    /// sender or receiver is refused ([`ErrorKind::LimitExceeded`]); a new
    /// one may take over from a dead one at any time. A receiver killed
    /// while holding a message leaves it to the next receiver (delivered at
    /// least once) instead of losing it.
    pub fn spsc(&mut self, on: bool) -> &mut Self {
        self.spsc = on;
        self
    }

    /// One sender and one receiver over the framed byte ring (default:
    /// off); implies [`spsc`](Self::spsc) admission.
    ///
    /// Messages are records `[header | payload]` laid end to end in a ring
    /// of `capacity` × (largest message + 8) bytes, so small messages take
    /// only their own size (an 8-byte message 16 bytes, a 64-byte one 72)
    /// and the ring holds more of them than `capacity`. The producer
    /// publishes a whole batch ([`Sender::send_batch`],
    /// [`Sender::reserve_batch`]) with one store, the consumer takes every
    /// published record in one call ([`Receiver::recv_batch`]): the fastest
    /// way to stream small messages. Single messages cost one cache line
    /// more than on the slot ring ([`spsc`](Self::spsc) alone), which
    /// polls the slot itself: choose this one for streams, that one for
    /// request and reply.
    ///
    /// Crashes: a sender killed at any instruction published only whole
    /// batches (its unpublished records are written over by the next
    /// sender). A receiver publishes its position after each single
    /// receive and at the end of each batch; one killed mid-batch leaves
    /// every record of that batch to the next receiver (delivered again,
    /// never lost).
    pub fn stream(&mut self, on: bool) -> &mut Self {
        self.stream = on;
        self
    }
}

/// A channel: a named shared memory object that senders and receivers in
/// any number of processes connect to. Cheap to clone.
#[derive(Clone)]
pub struct Channel {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.inner.name)
            .field("capacity", &self.inner.layout.capacity)
            .field("max_message", &self.inner.layout.max_msg)
            .finish()
    }
}

impl Channel {
    /// Creates the channel `name` for byte messages; fails if it exists.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a capacity or message size out of
    /// range; anything [`OpenOptions::open`](crate::posix::OpenOptions::open) reports (exists, no space…).
    pub fn create(name: &str, options: &ChannelOptions) -> Result<Channel> {
        Self::create_with(name, options, 0, 0)
    }

    pub(super) fn create_with(
        name: &str,
        options: &ChannelOptions,
        type_size: u32,
        type_align: u32,
    ) -> Result<Channel> {
        let capacity =
            crate::shared_object::ring_capacity(options.capacity, MAX_CAPACITY, "channel", name)?;
        let flags = match (options.spsc, options.stream) {
            (_, true) => FLAG_SPSC | FLAG_STREAM,
            (true, false) => FLAG_SPSC,
            (false, false) => 0,
        };
        let layout = Layout::new(
            capacity,
            options.max_msg as u64,
            type_size,
            type_align,
            flags,
        )
        .map_err(|why| Error::new(ErrorKind::InvalidArgument, "create", name, why))?;
        let inner = crate::shared_object::create_built(
            name,
            Kind::Channel,
            layout.total,
            options.mode,
            |name, region| {
                let base = region.as_mut_ptr()?;
                for (off, value) in [
                    (OFF_CAPACITY, layout.capacity),
                    (OFF_MAX_MSG, layout.max_msg),
                    (OFF_SLOT_SIZE, layout.slot_size),
                    (OFF_SLOTS, SLOTS_START as u64),
                ] {
                    region.atomic_u64(off)?.store(value, Ordering::Relaxed);
                }
                for (off, value) in [
                    (OFF_TYPE_SIZE, type_size),
                    (OFF_TYPE_ALIGN, type_align),
                    (OFF_FLAGS, layout.flags),
                ] {
                    region.atomic_u32(off)?.store(value, Ordering::Relaxed);
                }
                let info = layout::HeaderInfo {
                    kind: Kind::Channel,
                    total_size: layout.total,
                    creator: ProcessId::current(),
                    created: SystemTime::now(),
                };
                let inner = Inner::new(name, region, base, layout, info);
                if layout.stream() {
                    stream::init(&inner);
                } else if layout.spsc() {
                    spsc::init(&inner);
                } else {
                    ring::init(&inner);
                }
                Ok(inner)
            },
            |inner| &inner.region,
        )?;
        Ok(Channel {
            inner: Arc::new(inner),
        })
    }

    /// Opens the existing channel `name`, checking its header and layout.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`]; [`ErrorKind::Corrupt`] when the object is
    /// not a channel this build can read; [`ErrorKind::Disconnected`] when
    /// its creator died half-way (a stale object); [`ErrorKind::TimedOut`]
    /// when a live creator is still initialising after two seconds.
    pub fn open(name: &str) -> Result<Channel> {
        Self::open_with(name, None)
    }

    pub(super) fn open_with(name: &str, typed: Option<(u32, u32)>) -> Result<Channel> {
        let (name, region, info) = crate::shared_object::open(name, Kind::Channel, false)?;
        let bad = |why: String| Error::new(ErrorKind::Corrupt, "open", name.as_str(), why);
        if region.len() < SLOTS_START {
            return Err(bad(format!(
                "{} bytes cannot hold a channel's header",
                region.len()
            )));
        }
        let capacity = region.load_u64(OFF_CAPACITY, Ordering::Relaxed)?;
        let max_msg = region.load_u64(OFF_MAX_MSG, Ordering::Relaxed)?;
        let type_size = region.load_u32(OFF_TYPE_SIZE, Ordering::Relaxed)?;
        let type_align = region.load_u32(OFF_TYPE_ALIGN, Ordering::Relaxed)?;
        let flags = region.load_u32(OFF_FLAGS, Ordering::Relaxed)?;
        let layout = Layout::new(capacity, max_msg, type_size, type_align, flags).map_err(bad)?;
        let slot_size = region.load_u64(OFF_SLOT_SIZE, Ordering::Relaxed)?;
        let slots = region.load_u64(OFF_SLOTS, Ordering::Relaxed)?;
        shared_object::check_geometry(
            &name,
            [slot_size, slots, info.total_size],
            [layout.slot_size, SLOTS_START as u64, layout.total],
        )?;
        shared_object::check_type(&name, (type_size, type_align), typed, "carries", "messages")?;
        let base = region.as_mut_ptr()?;
        Ok(Channel {
            inner: Arc::new(Inner::new(name, region, base, layout, info)),
        })
    }

    /// Opens `name`, creating it with `options` if it does not exist.
    pub fn open_or_create(name: &str, options: &ChannelOptions) -> Result<Channel> {
        shared_object::open_or_create(|| Self::create(name, options), || Self::open(name))
    }

    /// Connects a sender (a producer endpoint).
    ///
    /// # Errors
    /// [`ErrorKind::LimitExceeded`] when [`MAX_ENDPOINTS`] live endpoints
    /// are connected already.
    pub fn sender(&self) -> Result<Sender> {
        let joined = self.connect(ROLE_PRODUCER, spsc::resume_send, stream::resume_send)?;
        Ok(Sender {
            inner: self.inner.clone(),
            entry: joined.entry,
            identity: joined.identity,
            home: Home::here(),
            owner: (joined.entry + 1) as u8,
            count: 0,
            wait: WaitStrategy::default(),
            spsc: joined.spsc,
            stream: joined.stream,
            open_claim: false,
        })
    }

    /// Connects a receiver (a consumer endpoint).
    pub fn receiver(&self) -> Result<Receiver> {
        let joined = self.connect(ROLE_CONSUMER, spsc::resume_recv, stream::resume_recv)?;
        Ok(Receiver {
            inner: self.inner.clone(),
            entry: joined.entry,
            identity: joined.identity,
            home: Home::here(),
            owner: (joined.entry + 1) as u8,
            count: 0,
            wait: WaitStrategy::default(),
            spsc: joined.spsc,
            stream: joined.stream,
            last_corrupt: None,
            open_claim: false,
        })
    }

    /// Joins the endpoint table as `role` and, on a single-producer or
    /// stream channel, picks up the ring where the previous endpoint of
    /// that role left it (with `resume_spsc` or `resume_stream`); leaves
    /// again if the ring's words do not make sense.
    fn connect<S, T>(
        &self,
        role: u64,
        resume_spsc: impl FnOnce(&Inner) -> std::result::Result<S, spsc::SpscError>,
        resume_stream: impl FnOnce(&Inner) -> std::result::Result<T, stream::StreamError>,
    ) -> Result<Joined<S, T>> {
        let inner = &*self.inner;
        let (entry, identity) = inner.join(role)?;
        let mut joined = Joined {
            entry,
            identity,
            spsc: None,
            stream: None,
        };
        // Joined as the only live endpoint of its role: nobody else moves
        // that end of the ring.
        let resumed = if inner.layout.stream() {
            resume_stream(inner)
                .map(|cursor| joined.stream = Some(cursor))
                .map_err(|e| inner.stream_error("connect to", e))
        } else if inner.layout.spsc() {
            resume_spsc(inner)
                .map(|cursor| joined.spsc = Some(cursor))
                .map_err(|e| inner.spsc_corrupt("connect to", e))
        } else {
            Ok(())
        };
        if let Err(e) = resumed {
            inner.leave(entry, identity, role);
            return Err(e);
        }
        Ok(joined)
    }

    /// Whether the channel takes one sender and one receiver at a time
    /// (see [`ChannelOptions::spsc`]).
    pub fn is_spsc(&self) -> bool {
        self.inner.layout.spsc()
    }

    /// Whether the channel runs the framed byte ring (see
    /// [`ChannelOptions::stream`]; such a channel is also
    /// [`is_spsc`](Self::is_spsc)).
    pub fn is_stream(&self) -> bool {
        self.inner.layout.stream()
    }

    /// The channel's name.
    pub fn name(&self) -> &ShmName {
        &self.inner.name
    }

    /// How many messages the ring holds.
    pub fn capacity(&self) -> usize {
        self.inner.layout.capacity as usize
    }

    /// The largest message in bytes.
    pub fn max_message(&self) -> usize {
        self.inner.layout.max_msg as usize
    }

    /// Removes the channel's name (see [`crate::posix::unlink`]); connected
    /// endpoints keep working on the memory they have mapped.
    pub fn unlink(&self) -> Result<()> {
        crate::posix::unlink(self.inner.name.as_str())
    }
}

/// An endpoint just joined: its entry, its occupant word, and its ring's
/// cursors on a single-producer (`spsc`) or stream channel.
struct Joined<S, T> {
    entry: usize,
    identity: u64,
    spsc: Option<S>,
    stream: Option<T>,
}
