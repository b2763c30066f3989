//! Boards (one latest value, many readers) and broadcasts (one writer,
//! every subscriber sees every message or learns how many it missed).

use std::ffi::{c_char, c_int, c_void};
use std::os::fd::AsRawFd;
use std::time::Instant;

use shmkit::board::{Board, BoardOptions, BoardWriter};
use shmkit::broadcast::{Broadcast, BroadcastOptions, Publisher, Received, Subscriber};
use shmkit::readiness::{Arm, Readiness, SLICE};
use shmkit::{Error, ErrorKind};

use crate::{
    bytes_arg, close_handle, copy_out, entry, give, handle, name_arg, out_arg, tag, too_small,
    wait_of, Kind, Outcome, Wait,
};

/// A board: the latest value of something, read by any number of readers.
pub struct shmkit_board {
    _opaque: [u8; 0],
}

/// A board's writer (one at a time per board).
pub struct shmkit_board_writer {
    _opaque: [u8; 0],
}

/// A broadcast: one writer, any number of subscribers.
pub struct shmkit_broadcast {
    _opaque: [u8; 0],
}

/// A broadcast's writer (one at a time per broadcast).
pub struct shmkit_publisher {
    _opaque: [u8; 0],
}

/// A broadcast's subscriber: reads every message published after it joined.
pub struct shmkit_subscriber {
    _opaque: [u8; 0],
}

/// A board, a reusable read buffer and its readiness descriptor.
pub(crate) struct BoardState {
    board: Board,
    buf: Vec<u8>,
    ready: Option<Readiness>,
}

impl Kind for BoardState {
    const TAG: u64 = tag(20);
    const NAME: &'static str = "board";
}

impl Kind for BoardWriter {
    const TAG: u64 = tag(21);
    const NAME: &'static str = "board writer";
}

impl Kind for Broadcast {
    const TAG: u64 = tag(22);
    const NAME: &'static str = "broadcast";
}

impl Kind for Publisher {
    const TAG: u64 = tag(23);
    const NAME: &'static str = "publisher";
}

/// A subscriber, a message kept after a too-small buffer, and its
/// readiness descriptor.
pub(crate) struct SubscriberState {
    subscriber: Subscriber,
    buf: Vec<u8>,
    kept: bool,
    ready: Option<Readiness>,
    /// Since when arms found nothing (reset by every receive).
    empty_since: Option<Instant>,
    object: String,
}

impl Kind for SubscriberState {
    const TAG: u64 = tag(24);
    const NAME: &'static str = "subscriber";
}

/// Creates the board `name` (it must not exist) for values of at most
/// `max_size` bytes, permission `mode`; its value is empty, version 0,
/// until the first write. Ownership: `*out` receives a handle the caller
/// closes with `shmkit_board_close`. Errors: -EINVAL, -EEXIST, -EACCES,
/// -ENOSPC.
#[no_mangle]
pub extern "C" fn shmkit_board_create(
    name: *const c_char,
    max_size: usize,
    mode: u32,
    out: *mut *mut shmkit_board,
) -> c_int {
    const OP: &str = "create";
    entry(OP, || {
        let name = name_arg(OP, name)?;
        let out = out_arg(OP, name, "output", out)?;
        let board = Board::create(name, BoardOptions::new().max_size(max_size).mode(mode))?;
        give(
            out,
            BoardState {
                board,
                buf: Vec::new(),
                ready: None,
            },
        )
    })
}

/// Opens the existing board `name` (read-only if this process may not
/// write it: reading and waiting work, writing does not).
/// Errors: -EINVAL, -ENOENT, -EACCES, -EBADMSG.
#[no_mangle]
pub extern "C" fn shmkit_board_open(name: *const c_char, out: *mut *mut shmkit_board) -> c_int {
    const OP: &str = "open";
    entry(OP, || {
        let name = name_arg(OP, name)?;
        let out = out_arg(OP, name, "output", out)?;
        give(
            out,
            BoardState {
                board: Board::open(name)?,
                buf: Vec::new(),
                ready: None,
            },
        )
    })
}

/// Closes a board handle (writers made from it stay usable). NULL is accepted.
#[no_mangle]
pub extern "C" fn shmkit_board_close(board: *mut shmkit_board) -> c_int {
    close_handle::<BoardState, _>("close", board)
}

/// Removes the board's name. Errors: -EINVAL, -ENOENT, -EACCES.
#[no_mangle]
pub extern "C" fn shmkit_board_unlink(board: *mut shmkit_board) -> c_int {
    const OP: &str = "unlink";
    entry(OP, || {
        handle::<BoardState, _>(OP, board)?.board.unlink()?;
        Ok(0)
    })
}

/// Copies the latest complete value into `buf` (`cap` bytes): `*len`
/// receives its length, `*version` its version (0: never written; NULL if
/// not wanted). A value larger than `cap` gives -EMSGSIZE with `*len` set
/// to its length (read again with a larger buffer). Never torn.
/// Errors: -EINVAL, -EMSGSIZE, -ETIMEDOUT (a writer too fast to copy).
#[no_mangle]
pub extern "C" fn shmkit_board_read(
    board: *mut shmkit_board,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    version: *mut u64,
) -> c_int {
    const OP: &str = "read from";
    entry(OP, || {
        let state = handle::<BoardState, _>(OP, board)?;
        let name = state.board.name().as_str().to_string();
        let len = out_arg(OP, &name, "length", len)?;
        let v = state.board.read_into(&mut state.buf)?;
        copy_out(OP, &name, &state.buf, buf.cast(), cap, len)?;
        if !version.is_null() {
            *out_arg(OP, &name, "version", version)? = v;
        }
        Ok(0)
    })
}

/// Stores the board's current version in `*version`. Errors: -EINVAL.
#[no_mangle]
pub extern "C" fn shmkit_board_version(board: *mut shmkit_board, version: *mut u64) -> c_int {
    const OP: &str = "read from";
    entry(OP, || {
        let state = handle::<BoardState, _>(OP, board)?;
        *out_arg(OP, state.board.name().as_str(), "version", version)? = state.board.version();
        Ok(0)
    })
}

/// Waits until the board's version differs from `since`, as `timeout_ms`
/// says (spin briefly, then sleep on a shared futex); then read it with
/// `shmkit_board_read`. Errors: -EINVAL, -EAGAIN (timeout 0, unchanged),
/// -ETIMEDOUT.
#[no_mangle]
pub extern "C" fn shmkit_board_wait(
    board: *mut shmkit_board,
    since: u64,
    timeout_ms: i64,
) -> c_int {
    const OP: &str = "watch";
    entry(OP, || {
        let state = handle::<BoardState, _>(OP, board)?;
        let name = state.board.name().as_str().to_string();
        match wait_of(OP, &name, timeout_ms)? {
            Wait::Try if state.board.version() == since => Err(Error::new(
                ErrorKind::WouldBlock,
                OP,
                name,
                format!("still at version {since}"),
            )
            .into()),
            Wait::Try => Ok(0),
            wait => {
                state.board.wait_for_change(since, wait.timeout())?;
                Ok(0)
            }
        }
    })
}

/// Stores in `*fd` the board handle's readiness descriptor (made on the
/// first call, closed with the handle: do not close it yourself); it
/// becomes readable after `shmkit_board_arm` said 0 and a new version may
/// be there. Poll with a timeout of at most 250 ms. Errors: -EINVAL,
/// -EROFS (board opened read-only), -E2BIG (15 descriptors already wait).
#[no_mangle]
pub extern "C" fn shmkit_board_fd(board: *mut shmkit_board, fd: *mut c_int) -> c_int {
    const OP: &str = "make a readiness descriptor for";
    entry(OP, || {
        let state = handle::<BoardState, _>(OP, board)?;
        let fd = out_arg(OP, state.board.name().as_str(), "fd", fd)?;
        *fd = board_readiness(state)?.as_raw_fd();
        Ok(0)
    })
}

fn board_readiness(state: &mut BoardState) -> Outcome<&Readiness> {
    Ok(match &mut state.ready {
        Some(r) => r,
        none => none.insert(state.board.readiness()?),
    })
}

/// Arms the board's readiness descriptor for a version other than `since`:
/// `*ready` = 1 if the board holds one already (do not sleep), 0 if armed
/// (poll the descriptor). Errors as `shmkit_board_fd`.
#[no_mangle]
pub extern "C" fn shmkit_board_arm(
    board: *mut shmkit_board,
    since: u64,
    ready: *mut c_int,
) -> c_int {
    const OP: &str = "arm readiness on";
    entry(OP, || {
        let state = handle::<BoardState, _>(OP, board)?;
        let ready = out_arg(OP, state.board.name().as_str(), "ready", ready)?;
        board_readiness(state)?;
        let (Some(r), board) = (&state.ready, &state.board) else {
            return Ok(0);
        };
        *ready = c_int::from(board.arm_readiness(r, since)? == Arm::Ready);
        Ok(0)
    })
}

/// Claims the board's writer role (-EBUSY-like -EINVAL error naming the
/// live writer's pid if another process holds it; a dead writer's role is
/// taken over). Ownership: close with `shmkit_board_writer_close`.
#[no_mangle]
pub extern "C" fn shmkit_board_writer_open(
    board: *mut shmkit_board,
    out: *mut *mut shmkit_board_writer,
) -> c_int {
    const OP: &str = "write to";
    entry(OP, || {
        let state = handle::<BoardState, _>(OP, board)?;
        let out = out_arg(OP, state.board.name().as_str(), "output", out)?;
        give(out, state.board.writer()?)
    })
}

/// Gives up the writer role and frees the handle. NULL is accepted.
#[no_mangle]
pub extern "C" fn shmkit_board_writer_close(writer: *mut shmkit_board_writer) -> c_int {
    close_handle::<BoardWriter, _>("close", writer)
}

/// Replaces the board's value with the `len` bytes at `data` (never waits
/// for readers); `*version` receives its version (NULL if not wanted).
/// Errors: -EINVAL (NULL, a value over the maximum size).
#[no_mangle]
pub extern "C" fn shmkit_board_write(
    writer: *mut shmkit_board_writer,
    data: *const c_void,
    len: usize,
    version: *mut u64,
) -> c_int {
    const OP: &str = "write to";
    entry(OP, || {
        let writer = handle::<BoardWriter, _>(OP, writer)?;
        let name = writer.name().as_str().to_string();
        let value = bytes_arg(OP, &name, data.cast(), len)?;
        let v = writer.write(value)?;
        if !version.is_null() {
            *out_arg(OP, &name, "version", version)? = v;
        }
        Ok(0)
    })
}

/// Creates the broadcast `name` (it must not exist) keeping the last
/// `capacity` messages (a power of two) of at most `max_message` bytes,
/// permission `mode`. Ownership: close with `shmkit_broadcast_close`.
/// Errors: -EINVAL, -EEXIST, -EACCES, -ENOSPC.
#[no_mangle]
pub extern "C" fn shmkit_broadcast_create(
    name: *const c_char,
    capacity: usize,
    max_message: usize,
    mode: u32,
    out: *mut *mut shmkit_broadcast,
) -> c_int {
    const OP: &str = "create";
    entry(OP, || {
        let name = name_arg(OP, name)?;
        let out = out_arg(OP, name, "output", out)?;
        let mut options = BroadcastOptions::new();
        options
            .capacity(capacity)
            .max_message(max_message)
            .mode(mode);
        give(out, Broadcast::create(name, &options)?)
    })
}

/// Opens the existing broadcast `name`. Errors: -EINVAL, -ENOENT, -EACCES,
/// -EBADMSG.
#[no_mangle]
pub extern "C" fn shmkit_broadcast_open(
    name: *const c_char,
    out: *mut *mut shmkit_broadcast,
) -> c_int {
    const OP: &str = "open";
    entry(OP, || {
        let name = name_arg(OP, name)?;
        let out = out_arg(OP, name, "output", out)?;
        give(out, Broadcast::open(name)?)
    })
}

/// Closes a broadcast handle (publishers and subscribers made from it stay
/// usable). NULL is accepted.
#[no_mangle]
pub extern "C" fn shmkit_broadcast_close(broadcast: *mut shmkit_broadcast) -> c_int {
    close_handle::<Broadcast, _>("close", broadcast)
}

/// Removes the broadcast's name. Errors: -EINVAL, -ENOENT, -EACCES.
#[no_mangle]
pub extern "C" fn shmkit_broadcast_unlink(broadcast: *mut shmkit_broadcast) -> c_int {
    const OP: &str = "unlink";
    entry(OP, || {
        handle::<Broadcast, _>(OP, broadcast)?.unlink()?;
        Ok(0)
    })
}

/// Claims the broadcast's writer role (an error naming the live writer's
/// pid if another process holds it; a dead writer's is taken over).
/// Ownership: close with `shmkit_publisher_close`.
#[no_mangle]
pub extern "C" fn shmkit_publisher_open(
    broadcast: *mut shmkit_broadcast,
    out: *mut *mut shmkit_publisher,
) -> c_int {
    const OP: &str = "write to";
    entry(OP, || {
        let broadcast = handle::<Broadcast, _>(OP, broadcast)?;
        let out = out_arg(OP, broadcast.name().as_str(), "output", out)?;
        give(out, broadcast.publisher()?)
    })
}

/// Gives up the writer role (subscribers learn it) and frees the handle.
/// NULL is accepted.
#[no_mangle]
pub extern "C" fn shmkit_publisher_close(publisher: *mut shmkit_publisher) -> c_int {
    close_handle::<Publisher, _>("close", publisher)
}

/// Publishes the `len` bytes at `data` (never waits: the oldest message is
/// overwritten); `*position` receives its position (NULL if not wanted).
/// Errors: -EINVAL (NULL, over the maximum message).
#[no_mangle]
pub extern "C" fn shmkit_publish(
    publisher: *mut shmkit_publisher,
    data: *const c_void,
    len: usize,
    position: *mut u64,
) -> c_int {
    const OP: &str = "publish to";
    entry(OP, || {
        let publisher = handle::<Publisher, _>(OP, publisher)?;
        let msg = bytes_arg(OP, "broadcast", data.cast(), len)?;
        let p = publisher.send(msg)?;
        if !position.is_null() {
            *out_arg(OP, "broadcast", "position", position)? = p;
        }
        Ok(0)
    })
}

/// Joins the broadcast as a subscriber (at most 128 at once), reading from
/// the next message published. Ownership: close with
/// `shmkit_subscriber_close`. Errors: -EINVAL, -E2BIG (table full).
#[no_mangle]
pub extern "C" fn shmkit_subscriber_open(
    broadcast: *mut shmkit_broadcast,
    out: *mut *mut shmkit_subscriber,
) -> c_int {
    const OP: &str = "subscribe to";
    entry(OP, || {
        let broadcast = handle::<Broadcast, _>(OP, broadcast)?;
        let object = broadcast.name().as_str().to_string();
        let out = out_arg(OP, &object, "output", out)?;
        give(
            out,
            SubscriberState {
                subscriber: broadcast.subscribe()?,
                buf: Vec::new(),
                kept: false,
                ready: None,
                empty_since: None,
                object,
            },
        )
    })
}

/// Leaves the broadcast and frees the handle. NULL is accepted.
#[no_mangle]
pub extern "C" fn shmkit_subscriber_close(subscriber: *mut shmkit_subscriber) -> c_int {
    close_handle::<SubscriberState, _>("unsubscribe from", subscriber)
}

/// Receives the next message into `buf` (`cap` bytes), waiting as
/// `timeout_ms` says. On a message: `*len` = its length, `*missed` = 0. If
/// the subscriber fell more than the capacity behind: `*len` = 0,
/// `*missed` = how many messages it missed (exactly), and it resumes
/// further on. A message larger than `cap` is kept for the next call:
/// -EMSGSIZE with `*len` = its length. Errors: -EINVAL, -EAGAIN,
/// -ETIMEDOUT, -EPIPE (the writer is gone and everything is read),
/// -EBADMSG, -EMSGSIZE.
#[no_mangle]
pub extern "C" fn shmkit_subscriber_recv(
    subscriber: *mut shmkit_subscriber,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    missed: *mut u64,
    timeout_ms: i64,
) -> c_int {
    const OP: &str = "receive from";
    entry(OP, || {
        let state = handle::<SubscriberState, _>(OP, subscriber)?;
        let len = out_arg(OP, &state.object, "length", len)?;
        let missed = out_arg(OP, &state.object, "missed", missed)?;
        let wait = wait_of(OP, &state.object, timeout_ms)?;
        if !state.kept {
            let got = match wait {
                Wait::Try => match state.subscriber.try_recv()? {
                    Received::Message { position, value } => {
                        state.buf = value;
                        Received::Message {
                            position,
                            value: state.buf.len(),
                        }
                    }
                    Received::Lagged { missed } => Received::Lagged { missed },
                },
                wait => state.subscriber.recv_into(&mut state.buf, wait.timeout())?,
            };
            state.empty_since = None;
            if let Received::Lagged { missed: n } = got {
                *len = 0;
                *missed = n;
                return Ok(0);
            }
            state.kept = true;
        }
        if state.buf.len() > cap {
            *len = state.buf.len();
            return Err(too_small(OP, &state.object, state.buf.len(), cap));
        }
        copy_out(OP, &state.object, &state.buf, buf.cast(), cap, len)?;
        state.kept = false;
        *missed = 0;
        Ok(0)
    })
}

fn subscriber_readiness(state: &mut SubscriberState) -> Outcome<&Readiness> {
    Ok(match &mut state.ready {
        Some(r) => r,
        none => none.insert(state.subscriber.readiness()?),
    })
}

/// Stores in `*fd` the subscriber's readiness descriptor (made on the
/// first call, closed with the subscriber); readable after
/// `shmkit_subscriber_arm` said 0 and a message may be there. Poll with a
/// timeout of at most 250 ms. Errors: -EINVAL, -E2BIG (15 descriptors
/// already wait on this broadcast).
#[no_mangle]
pub extern "C" fn shmkit_subscriber_fd(
    subscriber: *mut shmkit_subscriber,
    fd: *mut c_int,
) -> c_int {
    const OP: &str = "make a readiness descriptor for";
    entry(OP, || {
        let state = handle::<SubscriberState, _>(OP, subscriber)?;
        let fd = out_arg(OP, &state.object, "fd", fd)?;
        *fd = subscriber_readiness(state)?.as_raw_fd();
        Ok(0)
    })
}

/// Arms the subscriber's readiness descriptor: `*ready` = 1 if a message
/// is there already (do not sleep), 0 if armed (poll the descriptor).
/// After 250 ms of arms that found nothing it also checks whether the
/// writer is gone: -EPIPE then. Errors as `shmkit_subscriber_fd`, -EPIPE.
#[no_mangle]
pub extern "C" fn shmkit_subscriber_arm(
    subscriber: *mut shmkit_subscriber,
    ready: *mut c_int,
) -> c_int {
    const OP: &str = "arm readiness on";
    entry(OP, || {
        let state = handle::<SubscriberState, _>(OP, subscriber)?;
        let ready = out_arg(OP, &state.object, "ready", ready)?;
        if state.kept {
            *ready = 1;
            return Ok(0);
        }
        subscriber_readiness(state)?;
        let (Some(r), subscriber) = (&state.ready, &state.subscriber) else {
            return Ok(0);
        };
        let mut arm = subscriber.arm_readiness(r)?;
        if arm == Arm::Sleep {
            let since = *state.empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= SLICE && subscriber.writer_left() {
                // Gone: but what it published just before leaving comes first.
                arm = subscriber.arm_readiness(r)?;
                if arm == Arm::Sleep {
                    return Err(Error::new(
                        ErrorKind::Disconnected,
                        OP,
                        &state.object,
                        "every message is read and the writer is gone",
                    )
                    .into());
                }
            }
        }
        *ready = c_int::from(arm == Arm::Ready);
        Ok(0)
    })
}
