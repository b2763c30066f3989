//! Channels: bounded producer/consumer queues of byte messages.

use std::ffi::{c_char, c_int, c_void};
use std::time::Instant;

use shmkit::channel::{Channel, ChannelOptions, Receiver, RecvSlot, SendSlot, Sender};
use shmkit::readiness::{Arm, Readiness, SLICE};
use shmkit::ErrorKind;

use crate::{
    buf_arg, bytes_arg, close_handle, entry, failure, give, handle, invalid, name_arg, out_arg,
    tag, too_small, wait_of, Kind, Outcome, Wait,
};

/// `shmkit_channel_create` flag: one sender and one receiver at a time,
/// the faster single-producer/single-consumer ring.
pub const SHMKIT_SPSC: u32 = 1;

/// A channel: a named POSIX object holding a ring of message slots.
pub struct shmkit_channel {
    _opaque: [u8; 0],
}

/// The sending end of a channel, connected as one endpoint.
pub struct shmkit_sender {
    _opaque: [u8; 0],
}

/// The receiving end of a channel, connected as one endpoint.
pub struct shmkit_receiver {
    _opaque: [u8; 0],
}

/// A snapshot of a channel (`shmkit_channel_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct shmkit_channel_info {
    /// Messages the ring holds.
    pub capacity: u64,
    /// Largest message in bytes.
    pub max_message: u64,
    /// Messages sent and not yet received (approximate while others run).
    pub depth: u64,
    /// Messages sent, by endpoints connected now and before.
    pub sent: u64,
    /// Messages received, by endpoints connected now and before.
    pub received: u64,
    /// Endpoints connected now (dead ones until someone reaps them).
    pub endpoints: u32,
    /// 1 for an SPSC channel, else 0.
    pub spsc: u32,
}

impl Kind for Channel {
    const TAG: u64 = tag(10);
    const NAME: &'static str = "channel";
}

/// A sender and the slot it has reserved, if any.
pub(crate) struct SenderState {
    /// Borrows `*sender` (a box: its address is stable); declared first so
    /// it drops first. While it is `Some`, nothing else touches `sender`.
    slot: Option<SendSlot<'static>>,
    sender: Box<Sender>,
    object: String,
}

impl Kind for SenderState {
    const TAG: u64 = tag(11);
    const NAME: &'static str = "sender";
}

/// A receiver, the slot it holds (zero-copy, or kept after a too-small
/// buffer) and its readiness descriptor.
pub(crate) struct ReceiverState {
    /// Borrows `*receiver` (a box); declared first so it drops first.
    /// While it is `Some`, nothing else touches `receiver`.
    slot: Option<RecvSlot<'static>>,
    /// Whether the caller holds `slot` (`shmkit_receive`) rather than the
    /// library keeping it after a too-small buffer.
    lent: bool,
    ready: Option<Readiness>,
    /// Since when arms found nothing (reset by every message received):
    /// after a slice of that, an arm checks whether the senders are gone.
    empty_since: Option<Instant>,
    receiver: Box<Receiver>,
    max_message: usize,
    object: String,
}

impl Kind for ReceiverState {
    const TAG: u64 = tag(12);
    const NAME: &'static str = "receiver";
}

impl SenderState {
    /// The sender, refused while a reserved slot is open.
    fn idle(&mut self, op: &'static str) -> Outcome<&mut Sender> {
        if self.slot.is_some() {
            return Err(busy(
                op,
                &self.object,
                "a reserved slot is open: commit or abort it first",
            ));
        }
        Ok(&mut self.sender)
    }
}

impl ReceiverState {
    /// The receiver, refused while the caller holds a slot.
    fn idle(&mut self, op: &'static str) -> Outcome<&mut Receiver> {
        if self.lent {
            return Err(busy(
                op,
                &self.object,
                "a received message is held: release it first",
            ));
        }
        Ok(&mut self.receiver)
    }

    /// The slot to read next: the one kept from a too-small buffer, or a
    /// newly received one (waiting as `wait` says).
    fn take_slot(&mut self, op: &'static str, wait: Wait) -> Outcome<RecvSlot<'static>> {
        self.idle(op)?;
        if let Some(slot) = self.slot.take() {
            return Ok(slot);
        }
        let receiver: *mut Receiver = &mut *self.receiver;
        // SAFETY: the receiver is boxed, so its address stays put while the
        // handle lives; the slot that borrows it is kept in `self.slot`
        // (dropped before the box) or dropped within the call, and while it
        // exists no other call touches the receiver (`idle` refuses).
        let receiver: &'static mut Receiver = unsafe { &mut *receiver };
        let slot = match wait {
            Wait::Forever => receiver.recv_slot()?,
            Wait::Try => receiver.try_recv_slot()?,
            Wait::For(d) => receiver.recv_slot_timeout(d)?,
        };
        self.empty_since = None;
        Ok(slot)
    }
}

fn busy(op: &'static str, object: &str, detail: &str) -> crate::Failure {
    failure(
        libc::EBUSY,
        ErrorKind::InvalidArgument,
        op,
        object,
        detail.to_string(),
    )
}

/// Creates the channel `name` (it must not exist: -EEXIST) with room for
/// `capacity` messages (a power of two, 1 to 2^24) of at most
/// `max_message` bytes each, permission `mode` (0600), `flags` 0 or
/// `SHMKIT_SPSC`. Ownership: `*out` receives a handle the caller closes
/// with `shmkit_channel_close`; remove the object with
/// `shmkit_channel_unlink`. Errors: -EINVAL (NULL, bad name, capacity or
/// size), -EEXIST, -EACCES, -ENOSPC.
#[no_mangle]
pub extern "C" fn shmkit_channel_create(
    name: *const c_char,
    capacity: usize,
    max_message: usize,
    mode: u32,
    flags: u32,
    out: *mut *mut shmkit_channel,
) -> c_int {
    const OP: &str = "create";
    entry(OP, || {
        let name = name_arg(OP, name)?;
        let out = out_arg(OP, name, "output", out)?;
        if flags & !SHMKIT_SPSC != 0 {
            return Err(invalid(
                OP,
                name,
                format!("unknown flags {:#x}", flags & !SHMKIT_SPSC),
            ));
        }
        let mut options = ChannelOptions::new();
        options
            .capacity(capacity)
            .max_message(max_message)
            .mode(mode)
            .spsc(flags & SHMKIT_SPSC != 0);
        give(out, Channel::create(name, &options)?)
    })
}

/// Opens the existing channel `name` (checked: magic, version, layout).
/// Ownership and errors as `shmkit_channel_create`, with -ENOENT when it
/// does not exist and -EBADMSG / -EINVAL when it is not a valid channel.
#[no_mangle]
pub extern "C" fn shmkit_channel_open(name: *const c_char, out: *mut *mut shmkit_channel) -> c_int {
    const OP: &str = "open";
    entry(OP, || {
        let name = name_arg(OP, name)?;
        let out = out_arg(OP, name, "output", out)?;
        give(out, Channel::open(name)?)
    })
}

/// Closes a channel handle; senders and receivers made from it stay
/// usable (they keep the mapping). NULL is accepted.
#[no_mangle]
pub extern "C" fn shmkit_channel_close(channel: *mut shmkit_channel) -> c_int {
    close_handle::<Channel, _>("close", channel)
}

/// Removes the channel's name (`shm_unlink`): connected endpoints go on;
/// nobody new can open it. Errors: -EINVAL, -ENOENT, -EACCES.
#[no_mangle]
pub extern "C" fn shmkit_channel_unlink(channel: *mut shmkit_channel) -> c_int {
    const OP: &str = "unlink";
    entry(OP, || {
        handle::<Channel, _>(OP, channel)?.unlink()?;
        Ok(0)
    })
}

/// Fills `*stats` with a snapshot of the channel. Errors: -EINVAL.
#[no_mangle]
pub extern "C" fn shmkit_channel_stats(
    channel: *mut shmkit_channel,
    stats: *mut shmkit_channel_info,
) -> c_int {
    const OP: &str = "stat";
    entry(OP, || {
        let channel = handle::<Channel, _>(OP, channel)?;
        let out = out_arg(OP, channel.name().as_str(), "stats", stats)?;
        let s = channel.stats();
        *out = shmkit_channel_info {
            capacity: s.capacity,
            max_message: s.max_message,
            depth: s.depth,
            sent: s.sent,
            received: s.received,
            endpoints: u32::try_from(s.endpoints.len()).unwrap_or(u32::MAX),
            spsc: u32::from(s.spsc),
        };
        Ok(0)
    })
}

/// Connects a sender (at most 64 endpoints per channel, one sender for
/// SPSC: -EBUSY-like errors say who holds it). Ownership: `*out` receives a
/// handle the caller closes with `shmkit_sender_close`, which disconnects.
/// Errors: -EINVAL, -E2BIG (endpoint table full or SPSC sender taken).
#[no_mangle]
pub extern "C" fn shmkit_sender_open(
    channel: *mut shmkit_channel,
    out: *mut *mut shmkit_sender,
) -> c_int {
    const OP: &str = "connect to";
    entry(OP, || {
        let channel = handle::<Channel, _>(OP, channel)?;
        let object = channel.name().as_str().to_string();
        let out = out_arg(OP, &object, "output", out)?;
        let sender = Box::new(channel.sender()?);
        give(
            out,
            SenderState {
                slot: None,
                sender,
                object,
            },
        )
    })
}

/// Disconnects and frees a sender (an open reserved slot is aborted).
/// NULL is accepted.
#[no_mangle]
pub extern "C" fn shmkit_sender_close(sender: *mut shmkit_sender) -> c_int {
    close_handle::<SenderState, _>("disconnect from", sender)
}

/// Sends the `len` bytes at `data` as one message, waiting while the
/// channel is full as `timeout_ms` says. Errors: -EINVAL (NULL, a message
/// over the maximum), -EAGAIN (full, timeout 0), -ETIMEDOUT, -EPIPE (no
/// receiver left and the channel full), -EBUSY (a reserved slot is open).
#[no_mangle]
pub extern "C" fn shmkit_send(
    sender: *mut shmkit_sender,
    data: *const c_void,
    len: usize,
    timeout_ms: i64,
) -> c_int {
    const OP: &str = "send to";
    entry(OP, || {
        let state = handle::<SenderState, _>(OP, sender)?;
        let msg = bytes_arg(OP, &state.object, data.cast(), len)?;
        let wait = wait_of(OP, &state.object, timeout_ms)?;
        let sender = state.idle(OP)?;
        match wait {
            Wait::Forever => sender.send(msg)?,
            Wait::Try => sender.try_send(msg)?,
            Wait::For(d) => sender.send_timeout(msg, d)?,
        }
        Ok(0)
    })
}

/// Sends `count` messages, message i being `lens[i]` bytes at `msgs[i]`,
/// in order, waiting while the channel is full, and waking receivers once
/// per batch. Errors as `shmkit_send`; messages before a failing one were
/// sent.
#[no_mangle]
pub extern "C" fn shmkit_send_batch(
    sender: *mut shmkit_sender,
    msgs: *const *const c_void,
    lens: *const usize,
    count: usize,
) -> c_int {
    const OP: &str = "send to";
    entry(OP, || {
        let state = handle::<SenderState, _>(OP, sender)?;
        if count == 0 {
            return Ok(0);
        }
        if msgs.is_null() || lens.is_null() {
            return Err(invalid(
                OP,
                &state.object,
                "the message or length array is NULL",
            ));
        }
        if count > isize::MAX as usize / 8 {
            return Err(invalid(
                OP,
                &state.object,
                format!("count {count} is too large"),
            ));
        }
        // SAFETY: not NULL (checked); the caller passes arrays of `count`
        // elements (documented).
        let (ptrs, lens) = unsafe {
            (
                std::slice::from_raw_parts(msgs, count),
                std::slice::from_raw_parts(lens, count),
            )
        };
        let mut batch = Vec::with_capacity(count);
        for (&p, &n) in ptrs.iter().zip(lens) {
            batch.push(bytes_arg(OP, &state.object, p.cast(), n)?);
        }
        state.idle(OP)?.send_batch(batch)?;
        Ok(0)
    })
}

/// Reserves the next slot for writing a message in place (zero copy):
/// `*buf` receives its address and `*capacity` its size (the channel's
/// maximum message). Write the message there, then `shmkit_commit` it (or
/// `shmkit_abort`). The slot belongs to this sender until then; other calls
/// on the sender return -EBUSY. Errors as `shmkit_send`.
#[no_mangle]
pub extern "C" fn shmkit_reserve(
    sender: *mut shmkit_sender,
    timeout_ms: i64,
    buf: *mut *mut c_void,
    capacity: *mut usize,
) -> c_int {
    const OP: &str = "reserve in";
    entry(OP, || {
        let state = handle::<SenderState, _>(OP, sender)?;
        let wait = wait_of(OP, &state.object, timeout_ms)?;
        let buf = out_arg(OP, &state.object, "buffer", buf)?;
        let capacity = out_arg(OP, &state.object, "capacity", capacity)?;
        let sender: *mut Sender = state.idle(OP)?;
        // SAFETY: the sender is boxed, so its address stays put while the
        // handle lives; the slot borrowing it is kept in `state.slot`
        // (dropped before the box), and while it exists no other call
        // touches the sender (`idle` refuses).
        let sender: &'static mut Sender = unsafe { &mut *sender };
        let mut slot = match wait {
            Wait::Forever => sender.reserve()?,
            Wait::Try => sender.try_reserve()?,
            Wait::For(d) => sender.reserve_deadline(Instant::now() + d)?,
        };
        *buf = slot.as_mut_ptr().cast();
        *capacity = slot.capacity();
        state.slot = Some(slot);
        Ok(0)
    })
}

/// Publishes the reserved slot as a message of its first `len` bytes.
/// Errors: -EINVAL (no slot reserved, `len` over the capacity: the slot is
/// then aborted).
#[no_mangle]
pub extern "C" fn shmkit_commit(sender: *mut shmkit_sender, len: usize) -> c_int {
    const OP: &str = "commit to";
    entry(OP, || {
        let state = handle::<SenderState, _>(OP, sender)?;
        let slot = state
            .slot
            .take()
            .ok_or_else(|| invalid(OP, &state.object, "no slot is reserved"))?;
        slot.commit(len)?;
        Ok(0)
    })
}

/// Gives the reserved slot back unpublished (receivers skip it).
/// Errors: -EINVAL (no slot reserved).
#[no_mangle]
pub extern "C" fn shmkit_abort(sender: *mut shmkit_sender) -> c_int {
    const OP: &str = "abort in";
    entry(OP, || {
        let state = handle::<SenderState, _>(OP, sender)?;
        state
            .slot
            .take()
            .ok_or_else(|| invalid(OP, &state.object, "no slot is reserved"))?;
        Ok(0)
    })
}

/// Connects a receiver. Ownership: `*out` receives a handle the caller
/// closes with `shmkit_receiver_close`, which disconnects. Errors as
/// `shmkit_sender_open`.
#[no_mangle]
pub extern "C" fn shmkit_receiver_open(
    channel: *mut shmkit_channel,
    out: *mut *mut shmkit_receiver,
) -> c_int {
    const OP: &str = "connect to";
    entry(OP, || {
        let channel = handle::<Channel, _>(OP, channel)?;
        let object = channel.name().as_str().to_string();
        let out = out_arg(OP, &object, "output", out)?;
        let receiver = Box::new(channel.receiver()?);
        give(
            out,
            ReceiverState {
                slot: None,
                lent: false,
                ready: None,
                empty_since: None,
                receiver,
                max_message: channel.max_message(),
                object,
            },
        )
    })
}

/// Disconnects and frees a receiver (a held or kept message is released:
/// in an SPSC channel the next receiver gets it again). NULL is accepted.
#[no_mangle]
pub extern "C" fn shmkit_receiver_close(receiver: *mut shmkit_receiver) -> c_int {
    close_handle::<ReceiverState, _>("disconnect from", receiver)
}

/// Receives the next message into `buf` (`cap` bytes), waiting as
/// `timeout_ms` says; `*len` receives its length. A message larger than
/// `cap` is not lost: -EMSGSIZE, `*len` = its length, and the next call
/// receives it. Errors: -EINVAL (NULL), -EAGAIN, -ETIMEDOUT, -EPIPE (every
/// sender gone and the channel empty), -EBADMSG (a damaged slot, skipped),
/// -EMSGSIZE, -EBUSY (a message from `shmkit_receive` is held).
#[no_mangle]
pub extern "C" fn shmkit_recv(
    receiver: *mut shmkit_receiver,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    timeout_ms: i64,
) -> c_int {
    const OP: &str = "receive from";
    entry(OP, || {
        let state = handle::<ReceiverState, _>(OP, receiver)?;
        let len = out_arg(OP, &state.object, "length", len)?;
        let wait = wait_of(OP, &state.object, timeout_ms)?;
        let slot = state.take_slot(OP, wait)?;
        let n = slot.len();
        if n > cap {
            state.slot = Some(slot);
            *len = n;
            return Err(too_small(OP, &state.object, n, cap));
        }
        let dst = buf_arg(OP, &state.object, buf.cast(), n)?;
        slot.read_at(0, dst)?;
        *len = n;
        Ok(0)
    })
}

/// Receives up to `max` messages into consecutive buffers of `stride`
/// bytes at `bufs` (message i at `bufs + i * stride`, its length in
/// `lens[i]`): waits as `timeout_ms` says for the first, then takes those
/// already there; `*count` receives how many. `stride` must be at least
/// the channel's maximum message (-EMSGSIZE otherwise, nothing received).
/// Errors as `shmkit_recv`.
#[no_mangle]
pub extern "C" fn shmkit_recv_batch(
    receiver: *mut shmkit_receiver,
    bufs: *mut c_void,
    stride: usize,
    max: usize,
    lens: *mut usize,
    count: *mut usize,
    timeout_ms: i64,
) -> c_int {
    const OP: &str = "receive from";
    entry(OP, || {
        let state = handle::<ReceiverState, _>(OP, receiver)?;
        let count = out_arg(OP, &state.object, "count", count)?;
        let wait = wait_of(OP, &state.object, timeout_ms)?;
        if state.slot.is_some() {
            return Err(busy(
                OP,
                &state.object,
                "a message is held or kept: receive or release it first",
            ));
        }
        let max_message = state.max_message;
        if stride < max_message {
            return Err(failure(
                libc::EMSGSIZE,
                ErrorKind::InvalidArgument,
                OP,
                &state.object,
                format!(
                    "a stride of {stride} bytes is less than the maximum message of {max_message}"
                ),
            ));
        }
        let total = stride
            .checked_mul(max)
            .ok_or_else(|| invalid(OP, &state.object, "stride times max overflows"))?;
        let area = buf_arg(OP, &state.object, bufs.cast(), total)?;
        if max > 0 && lens.is_null() {
            return Err(invalid(OP, &state.object, "the lengths array is NULL"));
        }
        let lens = if max == 0 {
            &mut [][..]
        } else {
            // SAFETY: not NULL (checked); the caller passes `max` writable
            // lengths (documented).
            unsafe { std::slice::from_raw_parts_mut(lens, max) }
        };
        let deadline = match wait {
            Wait::Forever => None,
            Wait::Try => Some(Instant::now()),
            Wait::For(d) => Some(Instant::now() + d),
        };
        let mut i = 0;
        let got = state.receiver.recv_batch(max, deadline, |slot| {
            let n = slot.len();
            let at = i * stride;
            slot.read_at(0, &mut area[at..at + n])?;
            lens[i] = n;
            i += 1;
            Ok(())
        });
        let got = match got {
            Err(e) if wait_is_try(wait) && e.kind() == ErrorKind::TimedOut => {
                return Err(shmkit::Error::new(
                    ErrorKind::WouldBlock,
                    OP,
                    &state.object,
                    "no message",
                )
                .into())
            }
            other => other?,
        };
        *count = got;
        Ok(0)
    })
}

fn wait_is_try(wait: Wait) -> bool {
    matches!(wait, Wait::Try)
}

/// Receives the next message in place (zero copy): `*data` receives the
/// address of its bytes in shared memory and `*len` its length. They stay
/// valid, and other calls on the receiver return -EBUSY, until
/// `shmkit_release`. Read the bytes only; another process may not write
/// them meanwhile (the slot is this receiver's). Errors as `shmkit_recv`.
#[no_mangle]
pub extern "C" fn shmkit_receive(
    receiver: *mut shmkit_receiver,
    timeout_ms: i64,
    data: *mut *const c_void,
    len: *mut usize,
) -> c_int {
    const OP: &str = "receive from";
    entry(OP, || {
        let state = handle::<ReceiverState, _>(OP, receiver)?;
        let data = out_arg(OP, &state.object, "data", data)?;
        let len = out_arg(OP, &state.object, "length", len)?;
        let wait = wait_of(OP, &state.object, timeout_ms)?;
        let slot = state.take_slot(OP, wait)?;
        *data = slot.as_ptr().cast();
        *len = slot.len();
        state.slot = Some(slot);
        state.lent = true;
        Ok(0)
    })
}

/// Frees the slot of the message `shmkit_receive` gave (its bytes are no
/// longer valid). Errors: -EINVAL (no message held).
#[no_mangle]
pub extern "C" fn shmkit_release(receiver: *mut shmkit_receiver) -> c_int {
    const OP: &str = "release in";
    entry(OP, || {
        let state = handle::<ReceiverState, _>(OP, receiver)?;
        if !state.lent {
            return Err(invalid(OP, &state.object, "no received message is held"));
        }
        state.lent = false;
        state.slot = None;
        Ok(0)
    })
}

/// Stores in `*fd` the receiver's readiness descriptor, for `poll`,
/// `select` or `epoll` (made on the first call; owned by the receiver and
/// closed with it: do not close it yourself). It becomes readable after
/// `shmkit_receiver_arm` said 0 and a message may have arrived. Use:
///
/// ```c
/// for (;;) {
///     rc = shmkit_recv(rx, buf, sizeof buf, &len, 0);
///     if (rc != -EAGAIN) break;               // a message, or an error
///     int ready;
///     if (shmkit_receiver_arm(rx, &ready) < 0) break;
///     if (!ready) poll(&(struct pollfd){fd, POLLIN, 0}, 1, 250);
/// }
/// ```
///
/// Poll with a timeout of at most 250 ms (a sender in another network
/// namespace cannot wake it; see the shmkit readiness docs). Errors:
/// -EINVAL, -E2BIG (15 descriptors already wait on this channel),
/// -EBUSY (a message is held), the OS error of `socket`.
#[no_mangle]
pub extern "C" fn shmkit_receiver_fd(receiver: *mut shmkit_receiver, fd: *mut c_int) -> c_int {
    const OP: &str = "make a readiness descriptor for";
    entry(OP, || {
        let state = handle::<ReceiverState, _>(OP, receiver)?;
        let fd = out_arg(OP, &state.object, "fd", fd)?;
        if state.slot.is_some() {
            return Err(busy(
                OP,
                &state.object,
                "a message is held or kept: receive or release it first",
            ));
        }
        if state.ready.is_none() {
            state.ready = Some(state.receiver.readiness()?);
        }
        *fd = state
            .ready
            .as_ref()
            .map_or(-1, std::os::fd::AsRawFd::as_raw_fd);
        Ok(0)
    })
}

/// Declares that the caller is about to sleep on the readiness descriptor
/// (it empties the descriptor first): `*ready` = 1 if a message may be
/// there already (receive again, do not sleep), 0 if armed (poll the
/// descriptor, then receive again). Costs no syscall for the sender unless
/// it finds the receiver armed. When arms have found nothing for 250 ms it
/// also checks whether every sender is gone: -EPIPE then (the channel is
/// empty and will stay so). Errors as `shmkit_receiver_fd`, and -EPIPE.
#[no_mangle]
pub extern "C" fn shmkit_receiver_arm(receiver: *mut shmkit_receiver, ready: *mut c_int) -> c_int {
    const OP: &str = "arm readiness on";
    entry(OP, || {
        let state = handle::<ReceiverState, _>(OP, receiver)?;
        let ready = out_arg(OP, &state.object, "ready", ready)?;
        if state.slot.is_some() {
            *ready = 1;
            return Ok(0);
        }
        let r = match &mut state.ready {
            Some(r) => r,
            none => none.insert(state.receiver.readiness()?),
        };
        let mut arm = state.receiver.arm_readiness(r)?;
        if arm == Arm::Sleep {
            let since = *state.empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= SLICE && state.receiver.senders_gone() {
                // Gone: but what they sent just before leaving comes first.
                arm = state.receiver.arm_readiness(r)?;
                if arm == Arm::Sleep {
                    return Err(shmkit::Error::new(
                        ErrorKind::Disconnected,
                        OP,
                        &state.object,
                        "the channel is empty and every sender is gone",
                    )
                    .into());
                }
            }
        }
        *ready = c_int::from(arm == Arm::Ready);
        Ok(0)
    })
}
