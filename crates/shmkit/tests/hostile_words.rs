//! Words in a shared header that any peer with write access can change:
//! one hostile (or buggy) store must not strand a legitimate endpoint in
//! a wait for ever. Each test stores into the live object from outside the
//! library, at the offset the layout gives the word, while an endpoint waits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shmkit::board::{Board, BoardOptions};
use shmkit::broadcast::{Broadcast, BroadcastOptions, Received};
use shmkit::channel::{Channel, ChannelOptions};
use shmkit::posix::{self, OpenOptions};
use shmkit::ErrorKind;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique object name, unlinked on drop even when the test fails.
struct Name(String);

impl Name {
    fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Name(format!("/shmkit-test-{}-{n}-{tag}", std::process::id()))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = posix::unlink(&self.0);
    }
}

/// Long enough for any legitimate wake-up; a hang fails the test.
const WAIT: Duration = Duration::from_secs(10);

/// Stores `value` into the 32- or 64-bit word at `offset` of object `name`,
/// as a peer mapping it read-write could.
fn poke(name: &str, offset: usize, value: u64, wide: bool) {
    let obj = OpenOptions::new().open(name).unwrap();
    let region = obj.map().unwrap();
    if wide {
        region
            .atomic_u64(offset)
            .unwrap()
            .store(value, Ordering::SeqCst);
    } else {
        region
            .atomic_u32(offset)
            .unwrap()
            .store(value as u32, Ordering::SeqCst);
    }
}

/// The channel header's "producers ever connected" counter.
const CHANNEL_PRODUCERS_EVER: usize = 108;
/// The broadcast header's writer-claim counter.
const BROADCAST_CLAIMS: usize = 96;

#[test]
fn a_zeroed_producer_counter_does_not_hide_that_every_producer_left() {
    let name = Name::new("ever");
    let mut o = ChannelOptions::new();
    o.capacity(8).max_message(16);
    let ch = Channel::create(&name.0, &o).unwrap();
    let tx = ch.sender().unwrap();
    let mut rx = Channel::open(&name.0).unwrap().receiver().unwrap();
    let (done, result) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = done.send(rx.recv().map(|_| ()));
    });
    // The receiver waits (and checks liveness every slice) while the
    // producer lives; then a peer zeroes the counter and the producer leaves.
    std::thread::sleep(Duration::from_millis(300));
    poke(&name.0, CHANNEL_PRODUCERS_EVER, 0, false);
    drop(tx);
    let got = result
        .recv_timeout(WAIT)
        .expect("the receiver still waits for a producer after every producer left");
    assert_eq!(got.unwrap_err().kind(), ErrorKind::Disconnected);
    t.join().unwrap();
}

#[test]
fn a_zeroed_claim_counter_does_not_hide_that_the_writer_left() {
    let name = Name::new("claims");
    let mut o = BroadcastOptions::new();
    o.capacity(8).max_message(16);
    let b = Broadcast::create(&name.0, &o).unwrap();
    let mut publisher = b.publisher().unwrap();
    publisher.send(b"one").unwrap();
    let mut sub = Broadcast::open(&name.0).unwrap().subscribe().unwrap();
    let (done, result) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = done.send(sub.recv_into(&mut buf, None).map(|r| match r {
            Received::Message { .. } => "message",
            Received::Lagged { .. } => "lagged",
        }));
    });
    std::thread::sleep(Duration::from_millis(300));
    poke(&name.0, BROADCAST_CLAIMS, 0, true);
    drop(publisher);
    let got = result
        .recv_timeout(WAIT)
        .expect("the subscriber still waits for a writer after the writer left");
    assert_eq!(got.unwrap_err().kind(), ErrorKind::Disconnected);
    t.join().unwrap();
}

/// The board's bell word (its futex word), at a fixed offset of the layout.
const BOARD_BELL_OFFSET: usize = 384;

#[test]
fn a_watcher_survives_a_cleared_bell_word() {
    // A peer (hostile or buggy) zeroes the bell word while a watcher sleeps:
    // the writer's next rings then see nobody parked and make no wake-up.
    // The watcher must still see the new version (its sleeps are bounded).
    let name = Name::new("bellzero");
    let board = Board::create(&name.0, BoardOptions::new().max_size(16)).unwrap();
    let mut w = board.writer().unwrap();
    w.write(b"v1").unwrap();
    let watcher = Board::open(&name.0).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let got = watcher.wait_for_change(1, None);
        let _ = tx.send(got);
    });
    // Let the watcher get past its spin and go to sleep on the futex.
    std::thread::sleep(Duration::from_millis(300));
    let obj = OpenOptions::new().open(&name.0).unwrap();
    let region = obj.map().unwrap();
    region
        .atomic_u32(BOARD_BELL_OFFSET)
        .unwrap()
        .store(0, Ordering::SeqCst);
    w.write(b"v2").unwrap();
    let got = rx
        .recv_timeout(WAIT)
        .expect("the watcher never saw version 2 after the bell word was cleared");
    assert_eq!(got.unwrap(), (b"v2".to_vec(), 2));
    t.join().unwrap();
}
