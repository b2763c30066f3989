//! Channels: behaviour in one process (threads), header checks, and crash
//! recovery across real processes (this test binary re-executed as a child).

use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shmkit::channel::{Channel, ChannelOptions, Role, TypedChannel};
use shmkit::posix::{self, OpenOptions};
use shmkit::ErrorKind;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique channel name, unlinked on drop even when the test fails.
struct Name(String);

impl Name {
    fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Name(format!("/shmkit-test-{}-chan-{n}", std::process::id()))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = posix::unlink(&self.0);
    }
}

fn options(capacity: usize, max: usize) -> ChannelOptions {
    let mut o = ChannelOptions::new();
    o.capacity(capacity).max_message(max);
    o
}

#[test]
fn send_and_receive_in_order_with_wraparound() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &options(4, 32)).unwrap();
    assert_eq!(ch.capacity(), 4);
    let mut tx = ch.sender().unwrap();
    let mut rx = Channel::open(&name.0).unwrap().receiver().unwrap();
    for i in 0..100u32 {
        tx.send(format!("message {i}").as_bytes()).unwrap();
        if i % 3 == 2 {
            for j in i - 2..=i {
                assert_eq!(rx.recv().unwrap(), format!("message {j}").as_bytes());
            }
        }
    }
    assert_eq!(rx.recv().unwrap(), b"message 99");
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    for _ in 0..4 {
        tx.try_send(b"x").unwrap();
    }
    let e = tx.try_send(b"x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    assert!(e.to_string().contains("the channel is full"), "{e}");
    let e = tx.send(&[0; 33]).unwrap_err();
    assert!(
        e.to_string()
            .contains("a message of 33 bytes exceeds the channel's maximum of 32"),
        "{e}"
    );
    let stats = ch.stats();
    assert_eq!((stats.sent, stats.received, stats.depth), (104, 100, 4));
    assert_eq!(stats.endpoints.len(), 2);
    assert!(stats
        .endpoints
        .iter()
        .all(|e| e.alive && e.pid == std::process::id()));
}

#[test]
fn batches_send_and_receive_many_with_one_wake_up() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &options(8, 16)).unwrap();
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    let msgs: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; (i % 16) as usize + 1]).collect();
    std::thread::scope(|s| {
        s.spawn(|| tx.send_batch(msgs.iter().map(|m| m.as_slice())).unwrap());
        let mut got: Vec<Vec<u8>> = Vec::new();
        while got.len() < 20 {
            let deadline = Some(Instant::now() + Duration::from_secs(10));
            let n = rx
                .recv_batch(5, deadline, |slot| {
                    got.push(slot.to_vec());
                    Ok(())
                })
                .unwrap();
            assert!((1..=5).contains(&n));
        }
        assert_eq!(got, msgs);
    });
    let e = tx.send_batch([&[0u8; 17][..]]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = rx
        .recv_batch(3, Some(Instant::now() + Duration::from_millis(50)), |_| {
            Ok(())
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
}

#[test]
fn timeouts_and_disconnection() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &options(2, 8)).unwrap();
    let mut rx = ch.receiver().unwrap();
    let start = Instant::now();
    let e = rx.recv_timeout(Duration::from_millis(120)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(120));
    {
        let mut tx = ch.sender().unwrap();
        tx.send(b"last").unwrap();
    } // the only sender leaves
    assert_eq!(rx.recv().unwrap(), b"last");
    let e = rx.recv().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected);
    assert!(e.to_string().contains("every sender is gone"), "{e}");

    let mut tx = ch.sender().unwrap();
    drop(rx);
    tx.send(b"1").unwrap();
    tx.send(b"2").unwrap();
    let e = tx.send(b"3").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected);
}

#[test]
fn threads_as_many_producers_and_consumers() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &options(8, 16)).unwrap();
    const PER: u32 = 20_000;
    let received = std::thread::scope(|s| {
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let mut rx = ch.receiver().unwrap();
                s.spawn(move || {
                    let mut got = Vec::new();
                    while let Ok(m) = rx.recv() {
                        got.push(m);
                    }
                    got
                })
            })
            .collect();
        for p in 0..2u32 {
            let mut tx = ch.sender().unwrap();
            s.spawn(move || {
                for i in 0..PER {
                    tx.send(&[p.to_le_bytes(), i.to_le_bytes()].concat())
                        .unwrap();
                }
            });
        }
        consumers
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    let mut per_producer = [Vec::new(), Vec::new()];
    for got in &received {
        let mut last = [None, None];
        for m in got {
            let p = u32::from_le_bytes(m[..4].try_into().unwrap()) as usize;
            let i = u32::from_le_bytes(m[4..].try_into().unwrap());
            assert!(last[p].is_none_or(|l| l < i), "producer {p} out of order");
            last[p] = Some(i);
            per_producer[p].push(i);
        }
    }
    for v in &mut per_producer {
        v.sort();
        assert_eq!(*v, (0..PER).collect::<Vec<_>>());
    }
}

#[test]
fn zero_copy_slots_and_typed_values() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &options(4, 64)).unwrap();
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    let mut slot = tx.reserve().unwrap();
    assert_eq!(slot.capacity(), 64);
    slot.write_at(0, b"in place").unwrap();
    assert!(slot.write_at(60, b"12345").is_err());
    slot.commit(8).unwrap();
    // An uncommitted slot sends nothing and does not stall the next message.
    drop(tx.reserve().unwrap());
    tx.send(b"after").unwrap();
    {
        let got = rx.recv_slot().unwrap();
        assert_eq!(got.len(), 8);
        assert_eq!(got.to_vec(), b"in place");
        let mut part = [0; 5];
        got.read_at(3, &mut part).unwrap();
        assert_eq!(&part, b"place");
        assert!(got.read_at(4, &mut part).is_err());
    }
    assert_eq!(rx.recv().unwrap(), b"after");

    let tname = Name::new();
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Point {
        x: f64,
        y: f64,
        id: u64,
    }
    let typed = TypedChannel::<Point>::create_with_options(&tname.0, &options(16, 1)).unwrap();
    let mut ttx = typed.sender().unwrap();
    let mut trx = TypedChannel::<Point>::open(&tname.0)
        .unwrap()
        .receiver()
        .unwrap();
    let p = Point {
        x: 1.5,
        y: -2.0,
        id: 7,
    };
    ttx.send(&p).unwrap();
    assert_eq!(trx.recv().unwrap(), p);
    let e = TypedChannel::<u32>::open(&tname.0).unwrap_err();
    assert!(
        e.to_string()
            .contains("messages of 24 bytes aligned to 8, not 4 aligned to 4"),
        "{e}"
    );

    // Typed values over the SPSC ring: 16-byte slot stride, values intact.
    let sname = Name::new();
    let typed = TypedChannel::<Point>::create_with_options(&sname.0, &spsc_options(4, 1)).unwrap();
    assert!(typed.channel().is_spsc());
    assert_eq!(typed.channel().max_message(), 24);
    let mut ttx = typed.sender().unwrap();
    let mut trx = typed.receiver().unwrap();
    for id in 0..10 {
        ttx.send(&Point { id, ..p }).unwrap();
        assert_eq!(trx.recv().unwrap(), Point { id, ..p });
    }
}

#[test]
fn headers_are_checked_on_open() {
    let name = Name::new();
    // Not a channel: a plain object of zeros (a creator that never finished).
    OpenOptions::new()
        .create_new(true)
        .size(8192)
        .open(&name.0)
        .unwrap();
    let e = Channel::open(&name.0).unwrap_err();
    assert!(e.to_string().contains("not a shmkit channel"), "{e}");
    posix::unlink(&name.0).unwrap();
    // Too small to be anything.
    OpenOptions::new()
        .create_new(true)
        .size(10)
        .open(&name.0)
        .unwrap();
    let e = Channel::open(&name.0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    posix::unlink(&name.0).unwrap();
    // Bad parameters at creation.
    let e = Channel::create(&name.0, &options(4, 0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(posix::unlink(&name.0).is_err(), "nothing half-made is left");
    // A damaged slot is an error, never undefined behaviour.
    let ch = Channel::create(&name.0, &options(4, 8)).unwrap();
    let raw = shmkit::PosixObject::open(&name.0).unwrap().map().unwrap();
    let mut rx = ch.receiver().unwrap();
    let slots_start = 768 + 64 * 64;
    raw.atomic_u64(slots_start)
        .unwrap()
        .store(u64::MAX, Ordering::Relaxed);
    let e = rx.try_recv().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    // A length over the maximum is refused, not copied.
    raw.atomic_u64(slots_start)
        .unwrap()
        .store(0, Ordering::Relaxed);
    let mut tx = ch.sender().unwrap();
    tx.send(b"ok").unwrap();
    raw.atomic_u64(slots_start + 8)
        .unwrap()
        .store(1 << 40, Ordering::Relaxed);
    let e = rx.try_recv().unwrap_err();
    assert!(e.to_string().contains("over the maximum"), "{e}");
}

// ---- Crash recovery with real processes ----------------------------------

/// Child entry point: when SHMKIT_CHILD is set, this "test" plays a role
/// and then parks until killed; otherwise it does nothing.
#[test]
fn child_role() {
    let Ok(role) = std::env::var("SHMKIT_CHILD") else {
        return;
    };
    let name = std::env::var("SHMKIT_CHANNEL").unwrap();
    let ch = Channel::open(&name).unwrap();
    match role.as_str() {
        "send-then-hang-mid-send" => {
            let mut tx = ch.sender().unwrap();
            tx.send(b"before").unwrap();
            let mut slot = tx.reserve().unwrap();
            slot.write_at(0, b"TORN").unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
        }
        "hang-mid-receive" => {
            let mut rx = ch.receiver().unwrap();
            let _held = rx.recv_slot().unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
        }
        "hang-mid-batch" => {
            // Takes a batch of up to 5 and stops for good in the third.
            let mut rx = ch.receiver().unwrap();
            let mut seen = 0;
            let _ = rx.recv_batch(5, None, |slot| {
                seen += 1;
                if seen == 3 {
                    println!("ready {:?}", slot.to_vec());
                    std::thread::sleep(Duration::from_secs(60));
                }
                Ok(())
            });
            unreachable!("killed in the batch");
        }
        "hang-in-send-batch" => {
            // Sends 0, 1 and 2 in one batch (a run on the shared ring, whose
            // `enqueue` moves only at the run's end), then stops for good
            // while the batch waits for its fourth message.
            let mut tx = ch.sender().unwrap();
            let msgs: Vec<[u8; 1]> = (0..4u8).map(|i| [i]).collect();
            let _ = tx.send_batch(msgs.iter().enumerate().map(|(i, m)| {
                if i == 3 {
                    println!("ready");
                    std::thread::sleep(Duration::from_secs(60));
                }
                &m[..]
            }));
            unreachable!("killed in the batch");
        }
        "sender-idle" => {
            let _tx = ch.sender().unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
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

fn kill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_producer_killed_mid_send_publishes_nothing_and_stalls_nobody() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &options(4, 16)).unwrap();
    let mut rx = ch.receiver().unwrap();
    let child = spawn_child("send-then-hang-mid-send", &name.0);
    let child_pid = child.id();
    let mut tx = ch.sender().unwrap();
    tx.send(b"after").unwrap();
    assert_eq!(rx.recv().unwrap(), b"before");
    // The next position is claimed by the live, hung child: we wait for it.
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(200))
            .unwrap_err()
            .kind(),
        ErrorKind::TimedOut
    );
    kill(child);
    // Once it is dead its torn slot is skipped; no TORN message ever arrives.
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), b"after");
    for i in 0..10u8 {
        tx.send(&[i]).unwrap();
        assert_eq!(rx.recv().unwrap(), [i]);
    }
    // The dead sender shows as dead until someone reaps its entry.
    let stats = ch.stats();
    assert!(stats
        .endpoints
        .iter()
        .all(|e| e.alive || e.pid == child_pid));
    assert!(!stats
        .endpoints
        .iter()
        .any(|e| e.alive && e.pid == child_pid));
}

#[test]
fn a_consumer_killed_mid_receive_loses_one_message_and_frees_the_slot() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &options(2, 32)).unwrap();
    let mut tx = ch.sender().unwrap();
    tx.send(b"held by the child").unwrap();
    let child = spawn_child("hang-mid-receive", &name.0);
    tx.send(b"m1").unwrap();
    // Slot of the held message is not free: the ring is full.
    assert_eq!(
        tx.try_send(b"m2").unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    kill(child);
    // The blocked send recovers the dead reader's slot.
    tx.send_timeout(b"m2", Duration::from_secs(10)).unwrap();
    let mut rx = ch.receiver().unwrap();
    assert_eq!(rx.recv().unwrap(), b"m1");
    assert_eq!(rx.recv().unwrap(), b"m2");
}

#[test]
fn a_killed_sender_counts_as_gone() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &options(4, 16)).unwrap();
    let mut rx = ch.receiver().unwrap();
    let child = spawn_child("sender-idle", &name.0);
    let stats = ch.stats();
    let sender = stats
        .endpoints
        .iter()
        .find(|e| e.role == Role::Sender)
        .unwrap();
    assert!(sender.alive);
    kill(child);
    let e = rx.recv_timeout(Duration::from_secs(10)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

// ---- Single producer, single consumer ------------------------------------

fn spsc_options(capacity: usize, max: usize) -> ChannelOptions {
    let mut o = options(capacity, max);
    o.spsc(true);
    o
}

#[test]
fn spsc_sends_and_receives_in_order_with_wraparound() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &spsc_options(4, 32)).unwrap();
    assert!(ch.is_spsc());
    let mut tx = ch.sender().unwrap();
    let opened = Channel::open(&name.0).unwrap();
    assert!(opened.is_spsc());
    let mut rx = opened.receiver().unwrap();
    for i in 0..100u32 {
        tx.send(format!("message {i}").as_bytes()).unwrap();
        if i % 3 == 2 {
            for j in i - 2..=i {
                assert_eq!(rx.recv().unwrap(), format!("message {j}").as_bytes());
            }
        }
    }
    assert_eq!(rx.recv().unwrap(), b"message 99");
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    for _ in 0..4 {
        tx.try_send(b"x").unwrap();
    }
    assert_eq!(tx.try_send(b"x").unwrap_err().kind(), ErrorKind::WouldBlock);
    // An abandoned reservation publishes nothing and keeps the ring full.
    assert_eq!(tx.try_reserve().unwrap_err().kind(), ErrorKind::WouldBlock);
    let stats = ch.stats();
    assert!(stats.spsc);
    assert_eq!((stats.sent, stats.received, stats.depth), (104, 100, 4));
    for _ in 0..4 {
        assert_eq!(rx.recv().unwrap(), b"x");
    }
    let mut slot = tx.reserve().unwrap();
    slot.write_at(0, b"dropped").unwrap();
    drop(slot);
    let mut slot = tx.reserve().unwrap();
    slot.write_at(0, b"kept").unwrap();
    slot.commit(4).unwrap();
    assert_eq!(rx.recv().unwrap(), b"kept");
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
}

#[test]
fn spsc_takes_one_live_sender_and_receiver_and_hands_over() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &spsc_options(8, 16)).unwrap();
    let mut tx = ch.sender().unwrap();
    let e = ch.sender().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    let me = std::process::id();
    assert!(
        e.to_string().contains(&format!(
            "single-producer single-consumer channel and process {me} is connected as its sender"
        )),
        "{e}"
    );
    let rx = ch.receiver().unwrap();
    assert_eq!(ch.receiver().unwrap_err().kind(), ErrorKind::LimitExceeded);
    // The refused joiners left no entry behind.
    assert_eq!(ch.stats().endpoints.len(), 2);
    tx.send(b"one").unwrap();
    tx.send(b"two").unwrap();
    drop(tx);
    drop(rx);
    // A new pair continues where the old one stopped.
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    tx.send(b"three").unwrap();
    for want in [&b"one"[..], b"two", b"three"] {
        assert_eq!(rx.recv().unwrap(), want);
    }
}

/// Runs on the shared ring under contention: two producers sending
/// batches of 1 to 40 into 16 slots, two consumers taking batches (one
/// with a callback, one copying into `Messages`). Every message arrives
/// exactly once, and each consumer sees each producer's messages in the
/// order they were sent.
#[test]
fn shared_ring_batches_from_many_to_many_arrive_once_in_order() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &options(16, 8)).unwrap();
    const N: u64 = 30_000;
    let value = |producer: u64, i: u64| (producer << 32 | i).to_le_bytes();
    let received = std::thread::scope(|s| {
        let consumers: Vec<_> = (0..2)
            .map(|c| {
                let mut rx = ch.receiver().unwrap();
                s.spawn(move || {
                    let mut got = Vec::new();
                    let mut out = shmkit::channel::Messages::new();
                    let deadline = Instant::now() + Duration::from_secs(120);
                    loop {
                        let step = if c == 0 {
                            rx.recv_batch(33, Some(deadline), |slot| {
                                got.push(u64::from_le_bytes(slot.to_vec().try_into().unwrap()));
                                Ok(())
                            })
                        } else {
                            out.clear();
                            let n = rx.recv_batch_into(&mut out, 33, Some(deadline));
                            got.extend(
                                out.iter()
                                    .map(|m| u64::from_le_bytes(m.try_into().unwrap())),
                            );
                            n
                        };
                        match step {
                            Ok(_) => {}
                            Err(e) if e.kind() == ErrorKind::Disconnected => break,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    got
                })
            })
            .collect();
        for p in 0..2u64 {
            let mut tx = ch.sender().unwrap();
            s.spawn(move || {
                let mut i = 0;
                while i < N {
                    let batch: Vec<[u8; 8]> = (i..(i + 1 + (i * 7 + p) % 40).min(N))
                        .map(|k| value(p, k))
                        .collect();
                    tx.send_batch(batch.iter().map(|b| &b[..])).unwrap();
                    i += batch.len() as u64;
                }
            });
        }
        consumers
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    let mut all = Vec::new();
    for got in &received {
        for p in 0..2u64 {
            let mine: Vec<u64> = got
                .iter()
                .filter(|v| *v >> 32 == p)
                .map(|v| v & 0xffff_ffff)
                .collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "producer {p} out of order"
            );
        }
        all.extend(got.iter().copied());
    }
    all.sort_unstable();
    let want: Vec<u64> = (0..2u64)
        .flat_map(|p| (0..N).map(move |i| p << 32 | i))
        .collect();
    assert_eq!(all.len(), want.len(), "every message once");
    assert!(all == want, "every message once");
}

#[test]
fn spsc_streams_between_threads_with_and_without_batches() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &spsc_options(64, 8)).unwrap();
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    const N: u64 = 200_000;
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut i = 0u64;
            while i < N {
                if i % 1000 < 500 {
                    tx.send(&i.to_le_bytes()).unwrap();
                    i += 1;
                } else {
                    let batch: Vec<[u8; 8]> = (i..(i + 37).min(N)).map(u64::to_le_bytes).collect();
                    tx.send_batch(batch.iter().map(|b| &b[..])).unwrap();
                    i += batch.len() as u64;
                }
            }
        });
        let mut next = 0u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while next < N {
            if next % 2 == 0 {
                let mut buf = Vec::new();
                rx.recv_into(&mut buf).unwrap();
                assert_eq!(buf, next.to_le_bytes());
                next += 1;
            } else {
                rx.recv_batch(50, Some(deadline), |slot| {
                    assert_eq!(slot.to_vec(), next.to_le_bytes());
                    next += 1;
                    Ok(())
                })
                .unwrap();
            }
        }
        let e = rx.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    });
}

#[test]
fn spsc_producer_killed_mid_send_publishes_nothing_and_is_replaced() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &spsc_options(4, 16)).unwrap();
    let mut rx = ch.receiver().unwrap();
    let child = spawn_child("send-then-hang-mid-send", &name.0);
    assert_eq!(rx.recv().unwrap(), b"before");
    // The child is alive and connected: no second sender.
    assert_eq!(ch.sender().unwrap_err().kind(), ErrorKind::LimitExceeded);
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(100))
            .unwrap_err()
            .kind(),
        ErrorKind::TimedOut
    );
    kill(child);
    // Dead: a new sender takes over at the slot it never published.
    let mut tx = ch.sender().unwrap();
    tx.send(b"after").unwrap();
    assert_eq!(rx.recv().unwrap(), b"after");
    for i in 0..10u8 {
        tx.send(&[i]).unwrap();
        assert_eq!(rx.recv().unwrap(), [i]);
    }
}

#[test]
fn spsc_consumer_killed_mid_receive_leaves_the_message_to_the_next() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &spsc_options(2, 32)).unwrap();
    let mut tx = ch.sender().unwrap();
    tx.send(b"held by the child").unwrap();
    let child = spawn_child("hang-mid-receive", &name.0);
    tx.send(b"m1").unwrap();
    assert_eq!(
        tx.try_send(b"m2").unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    kill(child);
    let mut rx = ch.receiver().unwrap();
    // At least once: the message the dead consumer held comes again.
    assert_eq!(rx.recv().unwrap(), b"held by the child");
    tx.send_timeout(b"m2", Duration::from_secs(10)).unwrap();
    assert_eq!(rx.recv().unwrap(), b"m1");
    assert_eq!(rx.recv().unwrap(), b"m2");
}

#[test]
fn spsc_killed_sender_counts_as_gone() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &spsc_options(4, 16)).unwrap();
    let mut rx = ch.receiver().unwrap();
    let child = spawn_child("sender-idle", &name.0);
    kill(child);
    let e = rx.recv_timeout(Duration::from_secs(10)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

#[test]
fn spsc_garbage_in_shared_memory_is_an_error_not_a_crash() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &spsc_options(4, 16)).unwrap();
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    tx.send(b"fine").unwrap();
    assert_eq!(rx.recv().unwrap(), b"fine");
    let raw = OpenOptions::new().open(&name.0).unwrap().map().unwrap();
    // Slot 1's sequence word (slots start after the 64-entry endpoint
    // table; SPSC slots of 16 + 16 bytes): a value no protocol step writes.
    let slots = 768 + 64 * 64;
    raw.atomic_u64(slots + 32)
        .unwrap()
        .store(0xdead_beef, std::sync::atomic::Ordering::Relaxed);
    let e = rx.try_recv().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("the channel is corrupt"), "{e}");
    // A message that claims more than the maximum is dropped with an error.
    raw.atomic_u64(slots + 32)
        .unwrap()
        .store(2, std::sync::atomic::Ordering::Relaxed);
    raw.atomic_u64(slots + 40)
        .unwrap()
        .store(1 << 40, std::sync::atomic::Ordering::Relaxed);
    let e = rx.try_recv().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("over the maximum"), "{e}");
    // Positions a ring apart: a new sender refuses to start there.
    drop(tx);
    raw.atomic_u64(384)
        .unwrap()
        .store(1 << 30, std::sync::atomic::Ordering::Relaxed);
    let e = ch.sender().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert_eq!(ch.stats().endpoints.len(), 1);
}

/// Issue 15, defect 8: a `dequeue` of u64::MAX made a new receiver get an
/// empty message nobody sent (the slot it names looked published); hostile
/// endpoint counts do not overflow the stats.
#[test]
fn spsc_garbage_positions_fabricate_no_message() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &spsc_options(4, 16)).unwrap();
    let raw = OpenOptions::new().open(&name.0).unwrap().map().unwrap();
    raw.atomic_u64(384)
        .unwrap()
        .store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
    match ch.receiver() {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}"),
        Ok(mut rx) => {
            let got = rx.try_recv();
            assert!(
                got.as_ref().is_err_and(|e| e.kind() == ErrorKind::Corrupt),
                "{got:?}"
            );
        }
    }
    assert_eq!(ch.stats().endpoints.len(), 0);
    raw.atomic_u64(384)
        .unwrap()
        .store(0, std::sync::atomic::Ordering::Relaxed);
    let mut rx = ch.receiver().unwrap();
    let mut tx = ch.sender().unwrap();
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    tx.send(b"real").unwrap();
    assert_eq!(rx.recv().unwrap(), b"real");
    // Every endpoint count at u64::MAX: the totals saturate, no panic.
    for entry in 0..2 {
        raw.atomic_u64(768 + 64 * entry + 8)
            .unwrap()
            .store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
    }
    raw.atomic_u64(120)
        .unwrap()
        .store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
    let stats = ch.stats();
    assert_eq!(stats.sent, u64::MAX);
}

/// Issue 15, defect 8: a message redelivered after a consumer was killed
/// holding it is counted received once, so received never exceeds sent.
#[test]
fn spsc_redelivery_counts_a_message_received_once() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &spsc_options(4, 32)).unwrap();
    let mut tx = ch.sender().unwrap();
    tx.send(b"held").unwrap();
    tx.send(b"next").unwrap();
    let child = spawn_child("hang-mid-receive", &name.0);
    kill(child);
    let mut rx = ch.receiver().unwrap();
    assert_eq!(rx.recv().unwrap(), b"held");
    assert_eq!(rx.recv().unwrap(), b"next");
    let stats = ch.stats();
    assert_eq!((stats.sent, stats.received), (2, 2), "{stats:?}");
}

/// Issue 15, defect 10: a slot state word the protocol never writes
/// costs at most that position: reported, skipped when found again, and
/// every later message flows (it made every later receive fail for ever).
#[test]
fn a_damaged_slot_word_does_not_stop_the_channel() {
    for spsc in [false, true] {
        let name = Name::new();
        let opts = if spsc {
            spsc_options(4, 16)
        } else {
            options(4, 16)
        };
        let ch = Channel::create(&name.0, &opts).unwrap();
        let mut tx = ch.sender().unwrap();
        let mut rx = ch.receiver().unwrap();
        tx.send(b"first").unwrap();
        assert_eq!(rx.recv().unwrap(), b"first");
        tx.send(b"damaged").unwrap();
        tx.send(b"after").unwrap();
        let raw = OpenOptions::new().open(&name.0).unwrap().map().unwrap();
        // Slot 1's state word: SPSC slots are 32 bytes apart, shared-ring
        // slots 64.
        let slots = 768 + 64 * 64;
        let slot1 = slots + if spsc { 32 } else { 64 };
        raw.atomic_u64(slot1)
            .unwrap()
            .store(0x0bad_0bad_0bad_0bad, std::sync::atomic::Ordering::Relaxed);
        for _ in 0..2 {
            let e = rx.try_recv().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "spsc {spsc}: {e}");
        }
        assert_eq!(rx.try_recv().unwrap(), b"after", "spsc {spsc}");
        for i in 0..10u8 {
            tx.send_timeout(&[i], Duration::from_secs(10)).unwrap();
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), [i]);
        }
        let stats = ch.stats();
        assert!(stats.received <= stats.sent, "{stats:?}");
    }
}

#[test]
fn spsc_batches_free_their_slots_when_they_end() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &spsc_options(4, 8)).unwrap();
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    for i in 0..4u8 {
        tx.send(&[i]).unwrap();
    }
    let mut seen = Vec::new();
    let n = rx
        .recv_batch(3, None, |slot| {
            seen.push(slot.to_vec()[0]);
            Ok(())
        })
        .unwrap();
    assert_eq!((n, seen), (3, vec![0, 1, 2]));
    // The batch freed three slots for the sender.
    for i in 4..7u8 {
        tx.try_send(&[i]).unwrap();
    }
    assert_eq!(tx.try_send(&[9]).unwrap_err().kind(), ErrorKind::WouldBlock);
    // A batch that stops on an error still frees what it took.
    let e = rx
        .recv_batch(2, None, |_| {
            Err(shmkit::Error::new(
                ErrorKind::Other,
                "read",
                "test",
                "stop here",
            ))
        })
        .unwrap_err();
    assert!(e.to_string().contains("stop here"), "{e}");
    tx.try_send(&[7]).unwrap();
    let rest: Vec<u8> = (0..4).map(|_| rx.recv().unwrap()[0]).collect();
    assert_eq!(rest, vec![4, 5, 6, 7]);
}

/// A sender killed in the middle of a batch on the shared ring, after
/// three messages of a run (whose `enqueue` moves only at the run's end):
/// the three are delivered, and a new sender, finding `enqueue` behind,
/// helps it past them and goes on; nothing is lost or delivered twice.
#[test]
fn a_sender_killed_mid_batch_leaves_its_messages_and_the_ring_usable() {
    let name = Name::new();
    let ch = Channel::create(&name.0, &options(8, 8)).unwrap();
    let mut rx = ch.receiver().unwrap();
    let child = spawn_child("hang-in-send-batch", &name.0);
    kill(child);
    let mut tx = ch.sender().unwrap();
    for i in 3..20u8 {
        tx.send(&[i]).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        if i == 3 {
            // The child's three first, in order.
            assert_eq!(got, [0]);
            for want in 1..=3u8 {
                assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), [want]);
            }
        } else {
            assert_eq!(got, [i]);
        }
    }
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    let stats = ch.stats();
    assert_eq!((stats.sent, stats.received), (20, 20), "{stats:?}");
}

/// Issue 15, defect 5: a receiver killed in the middle of a batch leaves
/// only the message it was reading, as the docs promise, not the whole
/// batch: the SPSC ring redelivered every message of the batch (its
/// position was published once, at the batch's end), the shared ring loses
/// just the held one.
#[test]
fn a_consumer_killed_mid_batch_leaves_only_the_message_it_held() {
    for spsc in [true, false] {
        let name = Name::new();
        let opts = if spsc {
            spsc_options(8, 8)
        } else {
            options(8, 8)
        };
        let ch = Channel::create(&name.0, &opts).unwrap();
        let mut tx = ch.sender().unwrap();
        for i in 0..6u8 {
            tx.send(&[i]).unwrap();
        }
        let child = spawn_child("hang-mid-batch", &name.0);
        kill(child);
        let mut rx = ch.receiver().unwrap();
        let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // SPSC: the held message 2 again; messages 0 and 1 are not. Shared
        // ring: 2 was lost with its reader, 3 comes next.
        let expected = if spsc { 2 } else { 3 };
        assert_eq!(first, [expected], "spsc {spsc}");
        let rest: Vec<u8> = (expected + 1..6)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()[0])
            .collect();
        assert_eq!(rest, (expected + 1..6).collect::<Vec<_>>(), "spsc {spsc}");
        let stats = ch.stats();
        assert!(stats.received <= stats.sent, "spsc {spsc}: {stats:?}");
    }
}
