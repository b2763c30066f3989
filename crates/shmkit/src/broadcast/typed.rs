//! Typed broadcasts: [`TypedBroadcast`], [`TypedPublisher`],
//! [`TypedSubscriber`], carrying plain-old-data values of one type `T`
//! (as [`TypedChannel`](crate::channel::TypedChannel) does for channels).

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::shared::{Broadcast, BroadcastOptions, Publisher, Received, Subscriber};
use crate::error::{Error, ErrorKind, Result};
use crate::posix::ShmName;

/// A broadcast of plain-old-data values of type `T`: one writer, any
/// number of subscribers, the same guarantees as [`Broadcast`] (the writer
/// never waits; each subscriber gets every value in order or learns
/// exactly how many it missed).
///
/// The type's size and alignment are recorded at creation and checked on
/// open, and every message is exactly `size_of::<T>()` bytes (an untyped
/// [`Publisher`] on the same broadcast is held to that too);
/// [`bytemuck::Pod`] proves that any bytes are a valid `T`, which is what
/// a value from another process must be. Values are copied out, so the
/// type's alignment does not constrain the shared layout.
///
/// ```no_run
/// use shmkit::broadcast::{BroadcastOptions, Received, TypedBroadcast};
///
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// #[repr(C)]
/// struct Tick { price: f64, size: u32, venue: u32 }
///
/// let ticks = TypedBroadcast::<Tick>::open_or_create("/ticks", BroadcastOptions::new().capacity(4096))?;
/// let mut sub = ticks.subscribe()?;
/// let mut publisher = ticks.publisher()?;
/// publisher.send(&Tick { price: 101.25, size: 300, venue: 7 })?;
/// match sub.recv()? {
///     Received::Message { position, value } => println!("{position}: {}", value.price),
///     Received::Lagged { missed } => eprintln!("missed {missed} ticks"),
/// }
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct TypedBroadcast<T> {
    broadcast: Broadcast,
    _type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for TypedBroadcast<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TypedBroadcast")
            .field(&self.broadcast)
            .finish()
    }
}

impl<T> Clone for TypedBroadcast<T> {
    fn clone(&self) -> Self {
        TypedBroadcast {
            broadcast: self.broadcast.clone(),
            _type: PhantomData,
        }
    }
}

impl<T: bytemuck::Pod> TypedBroadcast<T> {
    fn type_params() -> (u32, u32) {
        (
            std::mem::size_of::<T>() as u32,
            std::mem::align_of::<T>() as u32,
        )
    }

    /// Creates the broadcast `name` for values of `T` with `options`
    /// (capacity, mode); the maximum message is the size of `T` whatever
    /// `options` says.
    ///
    /// # Errors
    /// As [`Broadcast::create`]; [`ErrorKind::InvalidArgument`] for a
    /// zero-sized type or one larger than
    /// [`MAX_MESSAGE`](super::MAX_MESSAGE) bytes.
    pub fn create(name: &str, options: &BroadcastOptions) -> Result<Self> {
        let size = std::mem::size_of::<T>();
        if size == 0 || size > super::MAX_MESSAGE {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "create",
                name,
                if size == 0 {
                    "zero-sized types carry nothing".to_string()
                } else {
                    format!(
                        "values of {size} bytes exceed the maximum message of {} bytes",
                        super::MAX_MESSAGE
                    )
                },
            ));
        }
        let (size, align) = Self::type_params();
        Ok(TypedBroadcast {
            broadcast: Broadcast::create_with(name, options, size, align)?,
            _type: PhantomData,
        })
    }

    /// Opens the broadcast `name`; fails unless it was created for values
    /// of `T`'s size and alignment.
    ///
    /// # Errors
    /// As [`Broadcast::open`]; [`ErrorKind::InvalidArgument`] when it
    /// carries bytes or values of another type layout.
    pub fn open(name: &str) -> Result<Self> {
        Ok(TypedBroadcast {
            broadcast: Broadcast::open_with(name, Some(Self::type_params()))?,
            _type: PhantomData,
        })
    }

    /// Opens `name`, creating it with `options` if it does not exist.
    pub fn open_or_create(name: &str, options: &BroadcastOptions) -> Result<Self> {
        match Self::create(name, options) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Self::open(name),
            other => other,
        }
    }

    /// Becomes the broadcast's writer (see [`Broadcast::publisher`]).
    pub fn publisher(&self) -> Result<TypedPublisher<T>> {
        Ok(TypedPublisher {
            publisher: self.broadcast.publisher()?,
            _type: PhantomData,
        })
    }

    /// Joins as a subscriber of the values published from now on (see
    /// [`Broadcast::subscribe`]).
    pub fn subscribe(&self) -> Result<TypedSubscriber<T>> {
        Ok(TypedSubscriber::new(self.broadcast.subscribe()?))
    }

    /// Joins as a subscriber that first receives the values still in the
    /// ring (see [`Broadcast::subscribe_from_oldest`]).
    pub fn subscribe_from_oldest(&self) -> Result<TypedSubscriber<T>> {
        Ok(TypedSubscriber::new(
            self.broadcast.subscribe_from_oldest()?,
        ))
    }

    /// The untyped broadcast underneath (for stats, reaping and unlink).
    pub fn broadcast(&self) -> &Broadcast {
        &self.broadcast
    }
}

/// The one writer of a [`TypedBroadcast`]. Dropping it gives the role back.
pub struct TypedPublisher<T> {
    publisher: Publisher,
    _type: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for TypedPublisher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TypedPublisher")
            .field(&self.publisher)
            .finish()
    }
}

impl<T: bytemuck::Pod> TypedPublisher<T> {
    /// Publishes `value`; returns its position. Never waits: when the ring
    /// is full the oldest value is overwritten.
    pub fn send(&mut self, value: &T) -> Result<u64> {
        self.publisher.send(bytemuck::bytes_of(value))
    }

    /// The position the next value will have.
    pub fn position(&self) -> u64 {
        self.publisher.position()
    }

    /// The untyped publisher underneath.
    pub fn publisher(&mut self) -> &mut Publisher {
        &mut self.publisher
    }
}

/// A subscriber of a [`TypedBroadcast`]: every value published after it
/// joined, in order, or the exact count of those it missed. Dropping it
/// leaves the table.
pub struct TypedSubscriber<T> {
    subscriber: Subscriber,
    /// The copy-out buffer, reused (a value is copied from it into a `T`).
    buf: Vec<u8>,
    _type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for TypedSubscriber<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TypedSubscriber")
            .field(&self.subscriber)
            .finish()
    }
}

impl<T: bytemuck::Pod> TypedSubscriber<T> {
    fn new(subscriber: Subscriber) -> Self {
        TypedSubscriber {
            subscriber,
            buf: Vec::with_capacity(std::mem::size_of::<T>()),
            _type: PhantomData,
        }
    }

    fn next(&mut self, block: bool, deadline: Option<Instant>) -> Result<Received<T>> {
        match self.subscriber.next(&mut self.buf, block, deadline)? {
            Received::Lagged { missed } => Ok(Received::Lagged { missed }),
            Received::Message { position, value } => {
                let mut out = T::zeroed();
                let bytes = bytemuck::bytes_of_mut(&mut out);
                // Checked in release builds: the length came from shared
                // memory (the creator's type check binds only honest
                // writers).
                if value != bytes.len() || self.buf.len() != bytes.len() {
                    return Err(Error::new(
                        ErrorKind::Corrupt,
                        "receive from",
                        self.subscriber.name().as_str(),
                        format!(
                            "message {position} has {value} bytes in a broadcast of {}-byte values",
                            bytes.len()
                        ),
                    ));
                }
                bytes.copy_from_slice(&self.buf);
                Ok(Received::Message {
                    position,
                    value: out,
                })
            }
        }
    }

    /// Receives the next value (or a lag report), waiting while there is
    /// none.
    ///
    /// # Errors
    /// As [`Subscriber::recv`]; [`ErrorKind::Corrupt`] for a message whose
    /// length is not `size_of::<T>()` (counted received, and skipped).
    pub fn recv(&mut self) -> Result<Received<T>> {
        self.next(true, None)
    }

    /// Receives, waiting at most `timeout` ([`ErrorKind::TimedOut`]).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Received<T>> {
        self.next(true, Instant::now().checked_add(timeout))
    }

    /// Receives what is there now: [`ErrorKind::WouldBlock`] if nothing.
    pub fn try_recv(&mut self) -> Result<Received<T>> {
        self.next(false, None)
    }

    /// The next position this subscriber will read.
    pub fn cursor(&self) -> u64 {
        self.subscriber.cursor()
    }

    /// Values received so far.
    pub fn received(&self) -> u64 {
        self.subscriber.received()
    }

    /// Values missed so far (reported as [`Received::Lagged`]).
    pub fn missed(&self) -> u64 {
        self.subscriber.missed()
    }

    /// The broadcast this subscriber reads.
    pub fn name(&self) -> &ShmName {
        self.subscriber.name()
    }

    /// The untyped subscriber underneath.
    pub fn subscriber(&self) -> &Subscriber {
        &self.subscriber
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::shared_object::TestName as Name;

    #[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Tick {
        price: f64,
        size: u32,
        venue: u16,
        flags: u16,
    }

    fn tick(i: u64) -> Tick {
        Tick {
            price: i as f64 * 0.25,
            size: i as u32,
            venue: (i % 7) as u16,
            flags: 0xa5a5,
        }
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn values_go_out_whole_and_in_order_to_every_subscriber() {
        let name = Name::new("values");
        let mut opts = BroadcastOptions::new();
        // The maximum message is the type's size, whatever this says.
        opts.capacity(8).max_message(1);
        let b = TypedBroadcast::<Tick>::create(&name.0, &opts).unwrap();
        assert_eq!(b.broadcast().max_message(), std::mem::size_of::<Tick>());
        let st = b.broadcast().stats();
        assert_eq!((st.type_size, st.type_align), (16, 8));
        let mut early = b.subscribe().unwrap();
        let mut p = b.publisher().unwrap();
        let other = TypedBroadcast::<Tick>::open(&name.0).unwrap();
        let mut late = other.subscribe().unwrap();
        for i in 0..5 {
            assert_eq!(p.send(&tick(i)).unwrap(), i);
        }
        assert_eq!(p.position(), 5);
        for i in 0..5 {
            let want = Received::Message {
                position: i,
                value: tick(i),
            };
            assert_eq!(early.recv_timeout(WAIT).unwrap(), want);
            assert_eq!(late.try_recv().unwrap(), want);
        }
        assert_eq!(early.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
        assert_eq!(
            (early.received(), early.missed(), early.cursor()),
            (5, 0, 5)
        );
        let mut oldest = b.subscribe_from_oldest().unwrap();
        assert_eq!(
            oldest.recv().unwrap(),
            Received::Message {
                position: 0,
                value: tick(0)
            }
        );
    }

    #[test]
    fn a_lagging_typed_subscriber_learns_exactly_what_it_missed() {
        let name = Name::new("lag");
        let mut opts = BroadcastOptions::new();
        opts.capacity(4);
        let b = TypedBroadcast::<u64>::create(&name.0, &opts).unwrap();
        let mut sub = b.subscribe().unwrap();
        let mut p = b.publisher().unwrap();
        for i in 0..10u64 {
            p.send(&i).unwrap();
        }
        // Half a ring (2) behind the head: 8 and 9 remain for it.
        assert_eq!(sub.recv().unwrap(), Received::Lagged { missed: 8 });
        for i in 8..10 {
            assert_eq!(
                sub.recv().unwrap(),
                Received::Message {
                    position: i,
                    value: i
                }
            );
        }
        assert_eq!(sub.received() + sub.missed(), 10);
    }

    #[test]
    fn the_type_is_checked_on_open_and_on_send() {
        let name = Name::new("type");
        let b = TypedBroadcast::<Tick>::create(&name.0, &BroadcastOptions::new()).unwrap();
        // Another layout, or bytes: refused.
        let e = TypedBroadcast::<u64>::open(&name.0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(
            e.to_string()
                .contains("values of 16 bytes aligned to 8, not 8 aligned to 8"),
            "{e}"
        );
        let e = TypedBroadcast::<[u32; 4]>::open(&name.0).unwrap_err();
        assert!(e.to_string().contains("not 16 aligned to 4"), "{e}");
        // Untyped access still works, held to the type's length.
        let raw = Broadcast::open(&name.0).unwrap();
        let mut p = raw.publisher().unwrap();
        let e = p.send(b"short").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(
            e.to_string().contains("a broadcast of 16-byte values"),
            "{e}"
        );
        let e = p.send(&[0u8; 17]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let mut sub = b.subscribe().unwrap();
        p.send(bytemuck::bytes_of(&tick(3))).unwrap();
        assert_eq!(
            sub.recv().unwrap(),
            Received::Message {
                position: 0,
                value: tick(3)
            }
        );
        drop(p);

        let bytes = Name::new("bytes");
        Broadcast::create(&bytes.0, &BroadcastOptions::new()).unwrap();
        let e = TypedBroadcast::<Tick>::open(&bytes.0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("it carries bytes"), "{e}");

        let zst = Name::new("zst");
        let e = TypedBroadcast::<()>::create(&zst.0, &BroadcastOptions::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(crate::posix::PosixObject::open(&zst.0).is_err());
    }

    #[test]
    fn a_message_of_the_wrong_length_is_reported_not_trusted() {
        let name = Name::new("corrupt");
        let b = TypedBroadcast::<u64>::create(&name.0, &BroadcastOptions::new()).unwrap();
        let mut sub = b.subscribe().unwrap();
        let mut p = b.publisher().unwrap();
        // A 3-byte message forged past the type check, as a buggy or
        // hostile process could: the writer begins it, and the slot's
        // sequence word and `head` are then set by hand through another
        // mapping (offsets from the layout in the module doc: slot 0 at
        // 8704, head at 256).
        p.publisher().begin_and_abandon(b"abc");
        assert_eq!(sub.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
        let region = crate::posix::PosixObject::open(&name.0)
            .unwrap()
            .map()
            .unwrap();
        region
            .atomic_u64(8704)
            .unwrap()
            .store(2, std::sync::atomic::Ordering::Release);
        region
            .atomic_u64(256)
            .unwrap()
            .store(1, std::sync::atomic::Ordering::Release);
        let e = sub.recv_timeout(WAIT).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains("message 0 has 3 bytes"), "{e}");
        // It was skipped: the next value is read as usual.
        assert_eq!(sub.cursor(), 1);
        drop(p);
        let mut p = b.publisher().unwrap();
        assert_eq!(p.send(&7).unwrap(), 1);
        assert_eq!(
            sub.recv_timeout(WAIT).unwrap(),
            Received::Message {
                position: 1,
                value: 7
            }
        );
    }
}
