//! Stream channels (`ChannelOptions::stream`, the framed byte ring): the
//! calls in one process (threads), damaged words, and crashes across real
//! processes (this test binary re-executed as a child, then SIGKILLed).

use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shmkit::channel::{Channel, ChannelOptions, Messages, Receiver, Sender};
use shmkit::posix::{self, OpenOptions};
use shmkit::ErrorKind;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique channel name, unlinked on drop even when the test fails.
struct Name(String);

impl Name {
    fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Name(format!("/shmkit-test-{}-stream-{n}", std::process::id()))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = posix::unlink(&self.0);
    }
}

fn stream_options(capacity: usize, max: usize) -> ChannelOptions {
    let mut o = ChannelOptions::new();
    o.capacity(capacity).max_message(max).stream(true);
    o
}

/// Message `i`: its number, then a length from 8 to 8 + 56 bytes of a
/// pattern that names it.
fn message(i: u64) -> Vec<u8> {
    let mut m = i.to_le_bytes().to_vec();
    m.extend((0..(i * 13 % 57) as usize).map(|k| (i as usize + k) as u8));
    m
}

fn number(m: &[u8]) -> u64 {
    u64::from_le_bytes(m[..8].try_into().unwrap())
}

/// The data area: after the header, parameters, hot words and the 64-entry
/// endpoint table.
const DATA: usize = 768 + 64 * 64;
const TAIL: usize = 256;
const HEAD: usize = 384;

#[test]
fn every_call_moves_variable_records_in_order_across_wraps() {
    let name = Name::new();
    // 4 records of 64 bytes: 288 bytes of ring, many laps, padding in most.
    let ch = Channel::create(&name.0, &stream_options(4, 64)).unwrap();
    assert!(ch.is_stream() && ch.is_spsc());
    const N: u64 = 20_000;
    let consumer = {
        let ch = ch.clone();
        std::thread::spawn(move || {
            let mut rx = ch.receiver().unwrap();
            let mut next = 0u64;
            let mut out = Messages::new();
            while next < N {
                // Each way of receiving in turn.
                match next % 4 {
                    0 => {
                        assert_eq!(rx.recv().unwrap(), message(next));
                        next += 1;
                    }
                    1 => {
                        let slot = rx.recv_slot().unwrap();
                        assert_eq!(slot.to_vec(), message(next));
                        assert_eq!(slot.as_ptr() as usize % 8, 0);
                        next += 1;
                    }
                    2 => {
                        let n = rx
                            .recv_batch(usize::MAX, None, |slot| {
                                assert_eq!(slot.to_vec(), message(next));
                                next += 1;
                                Ok(())
                            })
                            .unwrap();
                        assert!(n >= 1);
                    }
                    _ => {
                        out.clear();
                        let n = rx.recv_batch_into(&mut out, 3, None).unwrap();
                        assert!((1..=3).contains(&n) && out.len() == n);
                        for m in out.iter() {
                            assert_eq!(m, message(next));
                            next += 1;
                        }
                    }
                }
            }
            rx
        })
    };
    let mut tx = ch.sender().unwrap();
    let mut sent = 0u64;
    while sent < N {
        match sent % 3 {
            0 => {
                tx.send(&message(sent)).unwrap();
                sent += 1;
            }
            1 => {
                let batch: Vec<Vec<u8>> = (sent..(sent + 7).min(N)).map(message).collect();
                tx.send_batch(batch.iter().map(|m| &m[..])).unwrap();
                sent += batch.len() as u64;
            }
            _ => {
                // Zero copy: three records of one length, filled in place.
                let len = message(sent).len();
                let count = (0..3)
                    .take_while(|k| sent + k < N && message(sent + k).len() == len)
                    .count();
                let mut batch = tx.reserve_batch(count, len).unwrap();
                for k in 0..count {
                    batch.write_at(k, 0, &message(sent + k as u64)).unwrap();
                }
                batch.commit(count).unwrap();
                sent += count as u64;
            }
        }
    }
    let rx = consumer.join().unwrap();
    let stats = ch.stats();
    assert!(stats.stream && stats.spsc);
    assert_eq!((stats.sent, stats.received, stats.depth), (N, N, 0));
    drop(rx);
}

#[test]
fn zero_copy_slots_batches_and_their_limits() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &stream_options(4, 64)).unwrap();
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    // One slot of up to the maximum, committed shorter.
    let mut slot = tx.reserve().unwrap();
    assert_eq!(slot.capacity(), 64);
    slot.write_at(0, b"in place").unwrap();
    slot.commit(8).unwrap();
    assert_eq!(rx.recv().unwrap(), b"in place");
    // A slot dropped uncommitted sends nothing.
    drop(tx.reserve().unwrap());
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    // A batch committed in part: the rest is not sent.
    let mut batch = tx.reserve_batch(5, 16).unwrap();
    for k in 0..5 {
        batch.write_at(k, 0, &[k as u8; 16]).unwrap();
    }
    assert!(batch.write_at(5, 0, b"x").is_err());
    assert!(batch.write_at(0, 10, &[0; 7]).is_err());
    batch.commit(2).unwrap();
    assert_eq!(rx.recv().unwrap(), [0; 16]);
    assert_eq!(rx.recv().unwrap(), [1; 16]);
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    // More than the ring, or more than the maximum message: refused.
    let e = tx.reserve_batch(100, 64).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e = tx.reserve_batch(1, 65).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e = tx.send(&[0; 65]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    // A full ring: try_send says so; 8-byte records take 16 bytes, so the
    // 288-byte ring holds 18 of them where 4 of the largest fit.
    let mut n = 0;
    while tx.try_send(&[7; 8]).is_ok() {
        n += 1;
    }
    assert_eq!(n, 18);
    assert_eq!(
        tx.send_timeout(&[7; 8], Duration::from_millis(20))
            .unwrap_err()
            .kind(),
        ErrorKind::TimedOut
    );
    // reserve_batch is for stream channels only.
    let other = Name::new();
    let mut o = ChannelOptions::new();
    o.spsc(true);
    let plain = Channel::create(&other.0, &o).unwrap();
    let e = plain.sender().unwrap().reserve_batch(1, 8).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

#[test]
fn one_sender_one_receiver_and_disconnection() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &stream_options(8, 32)).unwrap();
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    assert_eq!(ch.sender().unwrap_err().kind(), ErrorKind::LimitExceeded);
    assert_eq!(ch.receiver().unwrap_err().kind(), ErrorKind::LimitExceeded);
    tx.send_batch([&b"a"[..], b"b"]).unwrap();
    drop(tx);
    // What was sent is delivered, then the receiver learns the sender left.
    assert_eq!(rx.recv().unwrap(), b"a");
    assert_eq!(rx.recv().unwrap(), b"b");
    let e = rx.recv_timeout(Duration::from_secs(10)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    // A new sender takes over; a sender facing a full ring with no
    // receiver left is told so.
    let mut tx = Channel::open(&name.0).unwrap().sender().unwrap();
    drop(rx);
    while tx.try_send(&[0; 32]).is_ok() {}
    let e = tx
        .send_timeout(&[0; 32], Duration::from_secs(10))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    let mut rx = ch.receiver().unwrap();
    assert_eq!(rx.recv().unwrap(), [0; 32]);
}

#[test]
fn damaged_words_are_errors_and_the_channel_goes_on() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &stream_options(8, 32)).unwrap();
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    tx.send(b"fine").unwrap();
    assert_eq!(rx.recv().unwrap(), b"fine");
    let raw = OpenOptions::new().open(&name.0).unwrap().map().unwrap();
    let word = |off: usize| raw.atomic_u64(off).unwrap();
    // The next record's header (at byte 16) claims far more than the
    // ring: reported, the records published with it dropped, no read past
    // the ring.
    tx.send_batch([&b"one"[..], b"two"]).unwrap();
    word(DATA + 16).store(0x5245_4331 << 32 | 1 << 30, Ordering::Relaxed);
    let e = rx.try_recv().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(
        e.to_string()
            .contains("the 32 bytes published with it are dropped"),
        "{e}"
    );
    tx.send(b"after").unwrap();
    assert_eq!(rx.recv().unwrap(), b"after");
    // An unknown tag, and a padding record that stops short of the end.
    for bad in [0xdead_beef_u64 << 32 | 4, 0x5041_4431 << 32] {
        let at = word(TAIL).load(Ordering::Relaxed) as usize % (8 * 40);
        tx.send(b"lost").unwrap();
        word(DATA + at).store(bad, Ordering::Relaxed);
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::Corrupt);
        tx.send(b"kept").unwrap();
        assert_eq!(rx.recv().unwrap(), b"kept");
    }
    // A tail that runs ahead of what the ring holds.
    word(TAIL).store(1 << 40, Ordering::Relaxed);
    let e = rx.try_recv().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("positions"), "{e}");
    // Garbage positions: a new endpoint refuses to start there.
    drop((tx, rx));
    word(HEAD).store(7, Ordering::Relaxed);
    assert_eq!(ch.sender().unwrap_err().kind(), ErrorKind::Corrupt);
    assert_eq!(ch.receiver().unwrap_err().kind(), ErrorKind::Corrupt);
    assert!(ch.stats().endpoints.is_empty());
}

/// `recv_batch_into`'s fast path copies records straight out of the ring:
/// a damaged header in the middle of its batch ends the batch with the
/// error, keeps what came before, and the channel goes on.
#[test]
fn a_damaged_header_mid_batch_ends_a_copying_batch_cleanly() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &stream_options(8, 32)).unwrap();
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    let mut out = Messages::new();
    // An empty record, then one of 3 bytes: positions 0..8 and 8..24.
    tx.send_batch([&b""[..], b"one"]).unwrap();
    assert_eq!(rx.recv_batch_into(&mut out, 10, None).unwrap(), 2);
    assert_eq!(out.iter().collect::<Vec<_>>(), [&b""[..], b"one"]);
    let raw = OpenOptions::new().open(&name.0).unwrap().map().unwrap();
    let word = |off: usize| raw.atomic_u64(off).unwrap();
    // "two" at 24..40, "three" at 40..56: its header claims 1 GiB.
    tx.send_batch([&b"two"[..], b"three", b"four"]).unwrap();
    word(DATA + 40).store(0x5245_4331 << 32 | 1 << 30, Ordering::Relaxed);
    out.clear();
    let e = rx.recv_batch_into(&mut out, 10, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert_eq!(out.iter().collect::<Vec<_>>(), [&b"two"[..]]);
    tx.send(b"after").unwrap();
    out.clear();
    assert_eq!(rx.recv_batch_into(&mut out, 10, None).unwrap(), 1);
    assert_eq!(out.get(0), Some(&b"after"[..]));
    // A batch stops at `max`; the rest waits for the next call.
    tx.send_batch([&b"a"[..], b"b", b"c"]).unwrap();
    out.clear();
    assert_eq!(rx.recv_batch_into(&mut out, 2, None).unwrap(), 2);
    assert_eq!(rx.recv_batch_into(&mut out, 2, None).unwrap(), 1);
    assert_eq!(out.iter().collect::<Vec<_>>(), [&b"a"[..], b"b", b"c"]);
    assert_eq!(ch.stats().received, 7);
}

/// Child entry point: when SHMKIT_CHILD is set, this "test" plays a role
/// until killed; otherwise it does nothing.
#[test]
fn child_role() {
    let Ok(role) = std::env::var("SHMKIT_CHILD") else {
        return;
    };
    let ch = Channel::open(&std::env::var("SHMKIT_CHANNEL").unwrap()).unwrap();
    let hang = || std::thread::sleep(Duration::from_secs(60));
    match role.as_str() {
        "frame-then-hang" => {
            let mut tx = ch.sender().unwrap();
            tx.send_batch(
                (0..3)
                    .map(message)
                    .collect::<Vec<_>>()
                    .iter()
                    .map(|m| &m[..]),
            )
            .unwrap();
            let mut batch = tx.reserve_batch(2, 16).unwrap();
            batch.write_at(0, 0, b"TORN TORN TORN!!").unwrap();
            println!("ready");
            hang();
        }
        "hang-mid-batch" => {
            let mut rx = ch.receiver().unwrap();
            rx.recv_batch(2, None, |_| Ok(())).unwrap();
            rx.recv_batch(usize::MAX, None, |_| {
                println!("ready");
                hang();
                Ok(())
            })
            .unwrap();
        }
        "stream-forever" => {
            let mut tx = ch.sender().unwrap();
            println!("ready");
            let mut i = 0u64;
            loop {
                let batch: Vec<Vec<u8>> = (i..i + 5).map(message).collect();
                tx.send_batch(batch.iter().map(|m| &m[..])).unwrap();
                i += 5;
            }
        }
        "consume-forever" => {
            let mut rx = ch.receiver().unwrap();
            println!("ready");
            let mut next = 0u64;
            loop {
                rx.recv_batch(7, None, |slot| {
                    assert_eq!(slot.to_vec(), message(next));
                    next += 1;
                    Ok(())
                })
                .unwrap();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Starts this test binary as a child playing `role`; waits for "ready".
fn spawn_child(role: &str, channel: &str) -> Child {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env("SHMKIT_CHILD", role)
        .env("SHMKIT_CHANNEL", channel)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    while !line.contains("ready") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child {role} exited early"
        );
    }
    child
}

/// SIGKILL, then reap.
fn kill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

fn recv_timeout(rx: &mut Receiver) -> Vec<u8> {
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

#[test]
fn a_producer_killed_before_its_batch_is_published_sends_none_of_it() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &stream_options(16, 64)).unwrap();
    let mut rx = ch.receiver().unwrap();
    let child = spawn_child("frame-then-hang", &name.0);
    for i in 0..3 {
        assert_eq!(recv_timeout(&mut rx), message(i));
    }
    assert_eq!(ch.sender().unwrap_err().kind(), ErrorKind::LimitExceeded);
    kill(child);
    // Dead: a new sender takes over where the published records end.
    let mut tx = ch.sender().unwrap();
    tx.send(b"after").unwrap();
    assert_eq!(recv_timeout(&mut rx), b"after");
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
}

#[test]
fn a_consumer_killed_mid_batch_leaves_the_whole_batch_to_the_next() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &stream_options(16, 64)).unwrap();
    let mut tx = ch.sender().unwrap();
    tx.send_batch([&b"m0"[..], b"m1"]).unwrap();
    let child = spawn_child_after(&name.0, &mut tx);
    kill(child);
    // The first batch was published as read; the second, read in part
    // when the child died, comes again whole.
    let mut rx = ch.receiver().unwrap();
    assert_eq!(recv_timeout(&mut rx), b"m2");
    assert_eq!(recv_timeout(&mut rx), b"m3");
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    let stats = ch.stats();
    assert_eq!((stats.sent, stats.received), (4, 4));
}

/// Starts the "hang-mid-batch" consumer once its second batch is there.
fn spawn_child_after(name: &str, tx: &mut Sender) -> Child {
    let ch = Channel::open(name).unwrap();
    let wait_for_read = |ch: &Channel| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while ch.stats().received < 2 {
            assert!(Instant::now() < deadline, "the child never read");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    // The child reads the first batch, then blocks for a second one.
    let name = name.to_owned();
    let spawner = std::thread::spawn(move || spawn_child("hang-mid-batch", &name));
    wait_for_read(&ch);
    tx.send_batch([&b"m2"[..], b"m3"]).unwrap();
    spawner.join().unwrap()
}

#[test]
fn a_producer_killed_mid_stream_leaves_whole_records_in_order() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &stream_options(64, 64)).unwrap();
    let mut rx = ch.receiver().unwrap();
    let child = spawn_child("stream-forever", &name.0);
    let mut next = 0u64;
    while next < 50_000 {
        assert_eq!(recv_timeout(&mut rx), message(next));
        next += 1;
    }
    kill(child);
    // Every record it published arrives whole and in order, then none.
    loop {
        match rx.try_recv() {
            Ok(m) => {
                assert_eq!(m, message(next));
                next += 1;
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
                break;
            }
        }
    }
    // The next sender's records follow.
    let mut tx = ch.sender().unwrap();
    tx.send(&message(next)).unwrap();
    assert_eq!(recv_timeout(&mut rx), message(next));
}

#[test]
fn a_consumer_killed_mid_stream_loses_nothing() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &stream_options(64, 64)).unwrap();
    let mut tx = ch.sender().unwrap();
    let child = spawn_child("consume-forever", &name.0);
    let mut sent = 0u64;
    while sent < 50_000 {
        let batch: Vec<Vec<u8>> = (sent..sent + 3).map(message).collect();
        tx.send_batch(batch.iter().map(|m| &m[..])).unwrap();
        sent += 3;
    }
    kill(child);
    // It may have read everything: up to three more make sure something is
    // left. The ring may also be full (the child was killed behind), and
    // then with no receiver left a send rightly fails: whatever fills the
    // ring is left then.
    let mut extra = 0;
    while extra < 3 {
        match tx.try_send(&message(sent)) {
            Ok(()) => {
                sent += 1;
                extra += 1;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Disconnected) => break,
            Err(e) => panic!("send after the kill: {e}"),
        }
    }
    // The next receiver starts where the dead one last published its
    // position (records it read after that come again): from there on,
    // every record arrives, whole and in order.
    let mut rx = ch.receiver().unwrap();
    let first = number(&recv_timeout(&mut rx));
    assert!(
        first > 0 && first <= sent - extra.max(1),
        "{first} of {sent}"
    );
    for i in first + 1..sent {
        assert_eq!(recv_timeout(&mut rx), message(i));
    }
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
}

/// Typed values over the byte ring: each a record of its own size; a type
/// aligned to more than the ring's 8 bytes is refused at creation.
#[test]
fn typed_values_stream_too() {
    use shmkit::channel::TypedChannel;
    let name = Name::new();
    let ch = TypedChannel::<[u64; 3]>::create_with_options(&name.0, &stream_options(4, 0)).unwrap();
    assert!(ch.channel().is_stream());
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    for i in 0..100u64 {
        tx.send(&[i, i * 2, i * 3]).unwrap();
        assert_eq!(rx.recv().unwrap(), [i, i * 2, i * 3]);
    }
    // Records reserved in place through the untyped sender must be one
    // value each too, or the typed receiver would find them corrupt.
    drop(tx);
    let mut raw = ch.channel().sender().unwrap();
    for len in [0, 8, 23, 25] {
        let e = raw.reserve_batch(2, len).map(drop).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{len}: {e}");
        assert!(e.to_string().contains("exactly one value"), "{e}");
    }
    let mut batch = raw.reserve_batch(1, 24).unwrap();
    batch
        .write_at(0, 0, bytemuck::bytes_of(&[7u64, 8, 9]))
        .unwrap();
    batch.commit(1).unwrap();
    assert_eq!(rx.recv().unwrap(), [7, 8, 9]);
    #[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
    #[repr(C, align(16))]
    struct Wide([u64; 2]);
    let other = Name::new();
    let e = TypedChannel::<Wide>::create_with_options(&other.0, &stream_options(4, 0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

/// A receiver that sleeps on its readiness descriptor (poll, tokio, asyncio,
/// libshmkit) is woken by a stream sender's publish, and only an armed one:
/// before, the stream's publish woke futex sleepers only, so the descriptor
/// stayed quiet until the caller's own timeout.
#[test]
fn a_stream_publish_wakes_an_armed_readiness_descriptor() {
    use shmkit::readiness::Arm;
    let name = Name::new();
    let ch = Channel::create(&name.0, &stream_options(16, 64)).unwrap();
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    let ready = rx.readiness().unwrap();
    assert_eq!(rx.arm_readiness(&ready).unwrap(), Arm::Sleep);
    assert!(!ready.wait(Some(Duration::from_millis(20))).unwrap());
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        tx.send(b"wake").unwrap();
        tx
    });
    assert!(
        ready.wait(Some(Duration::from_secs(20))).unwrap(),
        "no wake-up in 20 s"
    );
    let _tx = sender.join().unwrap();
    assert_eq!(rx.try_recv().unwrap(), b"wake");
    // Nothing left: armed again, it sleeps.
    assert_eq!(rx.arm_readiness(&ready).unwrap(), Arm::Sleep);
}
