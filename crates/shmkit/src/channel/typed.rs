//! Channels of plain-old-data values: [`TypedChannel`], [`TypedSender`],
//! [`TypedReceiver`].

use std::marker::PhantomData;
use std::time::Duration;

use super::object::{Channel, ChannelOptions};
use super::receiver::{Receiver, RecvSlot};
use super::sender::Sender;
use crate::error::{Error, ErrorKind, Result};

/// A channel of plain-old-data values of type `T`.
///
/// The type's size and alignment are recorded at creation and checked on
/// open; [`bytemuck::Pod`] proves that any bytes are a valid `T`, which is
/// what a value from another process must be.
pub struct TypedChannel<T> {
    channel: Channel,
    _type: PhantomData<fn() -> T>,
}

impl<T: bytemuck::Pod> TypedChannel<T> {
    fn type_params() -> (u32, u32) {
        (
            std::mem::size_of::<T>() as u32,
            std::mem::align_of::<T>() as u32,
        )
    }

    /// Creates a channel for `capacity` values of `T`.
    #[deprecated(
        since = "0.1.0",
        note = "use `TypedChannel::create_with_options(name, &ChannelOptions)`, which takes options as `Channel::create` does"
    )]
    pub fn create(name: &str, capacity: usize, mode: u32) -> Result<Self> {
        let mut opts = ChannelOptions::new();
        opts.capacity(capacity).mode(mode);
        Self::create_with_options(name, &opts)
    }

    /// Creates a channel of `T` with `options` (capacity, mode, SPSC,
    /// stream), as [`Channel::create`] does; the maximum message is the
    /// size of `T` whatever `options` says, and a sender refuses any other
    /// length.
    ///
    /// ```no_run
    /// use shmkit::channel::{ChannelOptions, TypedChannel};
    ///
    /// let mut options = ChannelOptions::new();
    /// options.capacity(256).mode(0o600);
    /// let ticks = TypedChannel::<u64>::create_with_options("/ticks", &options)?;
    /// ticks.sender()?.send(&42)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Channel::create`]; [`ErrorKind::InvalidArgument`] for a
    /// zero-sized `T` or one aligned to more than 16 bytes.
    pub fn create_with_options(name: &str, options: &ChannelOptions) -> Result<Self> {
        let (size, align) = Self::type_params();
        if size == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "create",
                name,
                "zero-sized types carry nothing",
            ));
        }
        let mut opts = options.clone();
        opts.max_message(size as usize);
        Ok(TypedChannel {
            channel: Channel::create_with(name, &opts, size, align)?,
            _type: PhantomData,
        })
    }

    /// Opens a channel of `T`; fails if it was made for another type layout.
    pub fn open(name: &str) -> Result<Self> {
        Ok(TypedChannel {
            channel: Channel::open_with(name, Some(Self::type_params()))?,
            _type: PhantomData,
        })
    }

    /// Opens the channel of `T` named `name`, creating it with `options`
    /// if it does not exist (as [`Channel::open_or_create`]).
    ///
    /// # Errors
    /// As [`create_with_options`](Self::create_with_options) and
    /// [`open`](Self::open): an existing channel made for another type
    /// layout is refused.
    pub fn open_or_create(name: &str, options: &ChannelOptions) -> Result<Self> {
        match Self::create_with_options(name, options) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Self::open(name),
            other => other,
        }
    }

    /// Connects a sender.
    pub fn sender(&self) -> Result<TypedSender<T>> {
        Ok(TypedSender {
            sender: self.channel.sender()?,
            _type: PhantomData,
        })
    }

    /// Connects a receiver.
    pub fn receiver(&self) -> Result<TypedReceiver<T>> {
        Ok(TypedReceiver {
            receiver: self.channel.receiver()?,
            _type: PhantomData,
        })
    }

    /// The untyped channel underneath (for stats and unlink).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

impl<T> std::fmt::Debug for TypedChannel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TypedChannel").field(&self.channel).finish()
    }
}

/// Sends values of `T`.
pub struct TypedSender<T> {
    sender: Sender,
    _type: PhantomData<fn(T)>,
}

impl<T: bytemuck::Pod> TypedSender<T> {
    /// Sends `value`, waiting while full.
    pub fn send(&mut self, value: &T) -> Result<()> {
        self.sender.send(bytemuck::bytes_of(value))
    }

    /// Sends `value` if there is room now.
    pub fn try_send(&mut self, value: &T) -> Result<()> {
        self.sender.try_send(bytemuck::bytes_of(value))
    }

    /// Sends `value`, waiting at most `timeout`.
    pub fn send_timeout(&mut self, value: &T, timeout: Duration) -> Result<()> {
        self.sender.send_timeout(bytemuck::bytes_of(value), timeout)
    }
}

/// Receives values of `T`.
pub struct TypedReceiver<T> {
    receiver: Receiver,
    _type: PhantomData<fn() -> T>,
}

impl<T: bytemuck::Pod> TypedReceiver<T> {
    fn take(slot: RecvSlot<'_>) -> Result<T> {
        let mut value = T::zeroed();
        let bytes = bytemuck::bytes_of_mut(&mut value);
        if slot.len() != bytes.len() {
            return Err(slot.receiver.inner.err(
                ErrorKind::Corrupt,
                "receive from",
                format!(
                    "a message of {} bytes in a channel of {}-byte values",
                    slot.len(),
                    bytes.len()
                ),
            ));
        }
        slot.read_at(0, bytes)?;
        Ok(value)
    }

    /// Receives the next value, waiting while empty.
    pub fn recv(&mut self) -> Result<T> {
        Self::take(self.receiver.recv_slot()?)
    }

    /// Receives a value if one is there now.
    pub fn try_recv(&mut self) -> Result<T> {
        Self::take(self.receiver.try_recv_slot()?)
    }

    /// Receives, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
        Self::take(self.receiver.recv_slot_timeout(timeout)?)
    }
}
