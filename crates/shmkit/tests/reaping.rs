//! The endpoint table's reaping protocol, shared by channels and
//! broadcasts (`endpoint_table` in the library, issue 15): a consumer and a
//! subscriber killed in one child process are found dead and freed by the
//! same steps, each once, whoever reaps and however many reap at once.
//! Children are this test binary re-executed (`SHMKIT_REAP_CHILD`).

use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::Duration;

use shmkit::broadcast::{Broadcast, BroadcastOptions, SlowSubscriber};
use shmkit::channel::{Channel, ChannelOptions, Role};
use shmkit::posix;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique object name, unlinked on drop even when the test fails.
struct Name(String);

impl Name {
    fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Name(format!(
            "/shmkit-test-{}-{n}-reap-{tag}",
            std::process::id()
        ))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = posix::unlink(&self.0);
    }
}

/// Child entry point: with SHMKIT_REAP_CHILD set, connects a receiver to
/// the channel and a subscriber to the broadcast, receives what it is told
/// to, says "ready" and parks until killed; otherwise does nothing.
#[test]
fn child_role() {
    let Ok(take) = std::env::var("SHMKIT_REAP_CHILD") else {
        return;
    };
    let take: usize = take.parse().unwrap();
    let ch = Channel::open(&std::env::var("SHMKIT_REAP_CHANNEL").unwrap()).unwrap();
    let bc = Broadcast::open(&std::env::var("SHMKIT_REAP_BROADCAST").unwrap()).unwrap();
    let mut rx = ch.receiver().unwrap();
    let _sub = bc.subscribe().unwrap();
    for _ in 0..take {
        rx.recv_timeout(Duration::from_secs(20)).unwrap();
    }
    println!("ready");
    std::thread::sleep(Duration::from_secs(60));
}

/// Starts a child that joins both objects and receives `take` messages
/// from the channel; returns once it said "ready".
fn spawn_joiner(ch: &Name, bc: &Name, take: usize) -> Child {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env("SHMKIT_REAP_CHILD", take.to_string())
        .env("SHMKIT_REAP_CHANNEL", &ch.0)
        .env("SHMKIT_REAP_BROADCAST", &bc.0)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child exited early"
        );
    }
    child
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

fn channel(name: &Name) -> Channel {
    let mut o = ChannelOptions::new();
    o.capacity(8).max_message(16);
    Channel::create(&name.0, &o).unwrap()
}

fn dead_receivers(ch: &Channel) -> usize {
    let s = ch.stats();
    s.endpoints
        .iter()
        .filter(|e| e.role == Role::Receiver && !e.alive)
        .count()
}

fn dead_subscribers(bc: &Broadcast) -> usize {
    bc.stats().subscribers.iter().filter(|s| !s.alive).count()
}

/// A killed consumer and a killed subscriber of one process: both listed
/// dead, then freed by four threads reaping both objects at once: each
/// entry exactly once, and the consumer's count of received messages
/// added to the channel's totals once, not once per reaper.
#[test]
fn a_killed_consumer_and_subscriber_are_reaped_once_by_racing_reapers() {
    let (ch_name, bc_name) = (Name::new("chan"), Name::new("bcast"));
    let ch = channel(&ch_name);
    let bc = Broadcast::create(&bc_name.0, &BroadcastOptions::new()).unwrap();
    let mut tx = ch.sender().unwrap();
    for i in 0..3u8 {
        tx.send(&[i]).unwrap();
    }
    kill(spawn_joiner(&ch_name, &bc_name, 3));
    assert_eq!(dead_receivers(&ch), 1, "{:?}", ch.stats().endpoints);
    assert_eq!(dead_subscribers(&bc), 1, "{:?}", bc.stats().subscribers);

    let reapers = 4;
    let barrier = Barrier::new(reapers);
    let (chan_freed, bcast_freed) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..reapers)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    (ch.reap(), bc.reap())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    });
    assert_eq!((chan_freed, bcast_freed), (1, 1), "each entry freed once");
    assert_eq!(dead_receivers(&ch), 0);
    assert_eq!(dead_subscribers(&bc), 0);
    let stats = ch.stats();
    assert_eq!((stats.sent, stats.received), (3, 3), "settled once");
    assert_eq!((ch.reap(), bc.reap()), (0, 0), "nothing left to reap");
    // The freed entries are joinable again.
    let _rx = ch.receiver().unwrap();
    let _sub = bc.subscribe().unwrap();
}

/// A lossless broadcast's writer, held back by a killed subscriber, frees
/// its entry through the same reaping step and goes on; the channel's
/// blocked sender, held back by a killed receiver's full ring, learns that
/// every receiver is gone the same way.
#[test]
fn blocked_writers_reap_the_dead_that_hold_them_back() {
    let (ch_name, bc_name) = (Name::new("chan"), Name::new("bcast"));
    let ch = channel(&ch_name);
    let mut o = BroadcastOptions::new();
    o.capacity(2).lossless(SlowSubscriber::Block);
    let bc = Broadcast::create(&bc_name.0, &o).unwrap();
    let mut publisher = bc.publisher().unwrap();
    kill(spawn_joiner(&ch_name, &bc_name, 0));
    // The dead subscriber is a whole ring behind after two messages.
    for i in 0..5u8 {
        publisher.send(&[i]).unwrap();
    }
    assert_eq!(bc.stats().dropped_dead, 1);
    assert_eq!(dead_subscribers(&bc), 0, "reaped by the writer");

    let mut tx = ch.sender().unwrap();
    let e = loop {
        match tx.send_timeout(b"x", Duration::from_secs(20)) {
            Ok(()) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind(), shmkit::ErrorKind::Disconnected, "{e}");
    assert_eq!(dead_receivers(&ch), 0, "reaped by the blocked sender");
}
