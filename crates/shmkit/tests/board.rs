//! Boards and broadcasts: behaviour in one process, header checks, and
//! real processes (this test binary re-executed as a child): 32 readers
//! hammering a board, writers and subscribers killed mid-operation.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shmkit::board::{Board, BoardOptions, TypedBoard};
use shmkit::broadcast::{Broadcast, BroadcastOptions, Received, TypedBroadcast};
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

const WAIT: Duration = Duration::from_secs(10);

// ---- Boards in one process ------------------------------------------------

#[test]
fn board_values_versions_and_watching() {
    let name = Name::new("board");
    let board = Board::create(&name.0, BoardOptions::new().max_size(32)).unwrap();
    assert_eq!(board.read().unwrap(), (vec![], 0));
    let reader = Board::open(&name.0).unwrap();
    let mut w = board.writer().unwrap();
    assert_eq!(w.next_version(), 1);
    assert_eq!(w.write(b"first").unwrap(), 1);
    assert_eq!(reader.read().unwrap(), (b"first".to_vec(), 1));
    assert_eq!(w.write(b"").unwrap(), 2);
    assert_eq!(reader.read().unwrap(), (vec![], 2));
    let e = w.write(&[0; 33]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(
        e.to_string()
            .contains("a value of 33 bytes exceeds the board's maximum of 32"),
        "{e}"
    );
    // Nothing new: a bounded wait times out.
    let start = Instant::now();
    let e = reader
        .wait_for_change(2, Some(Duration::from_millis(100)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(100));
    // A version other than the one given returns at once.
    assert_eq!(
        reader.wait_for_change(1, Some(Duration::ZERO)).unwrap(),
        (vec![], 2)
    );
    // A watcher asleep on the futex wakes for the next write.
    std::thread::scope(|s| {
        let watcher = s.spawn(|| reader.wait_for_change(2, Some(WAIT)));
        std::thread::sleep(Duration::from_millis(50));
        w.write(b"third").unwrap();
        assert_eq!(watcher.join().unwrap().unwrap(), (b"third".to_vec(), 3));
    });
    // In place: a value written piece by piece.
    let mut write = w.begin();
    assert_eq!(write.capacity(), 32);
    write.write_at(0, b"in ").unwrap();
    write.write_at(3, b"place").unwrap();
    assert!(write.write_at(30, b"xyz").is_err());
    assert_eq!(write.commit(8).unwrap(), 4);
    assert_eq!(reader.read().unwrap(), (b"in place".to_vec(), 4));
    // An abandoned in-place write changes nothing for readers.
    {
        let mut write = w.begin();
        write.write_at(0, b"abandoned").unwrap();
    }
    assert_eq!(reader.read().unwrap(), (b"in place".to_vec(), 4));
    assert!(reader.stats().write_in_progress);
    assert_eq!(w.write(b"fifth").unwrap(), 5);
    let st = reader.stats();
    assert_eq!((st.version, st.max_size, st.type_size), (5, 32, 0));
    assert!(!st.write_in_progress);
    let writer = st.writer.unwrap();
    assert_eq!(writer.pid, std::process::id());
    assert!(writer.alive);
}

#[test]
fn typed_boards_check_their_type() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Pose {
        x: f64,
        y: f64,
        heading: f32,
        id: u32,
    }
    let name = Name::new("typed-board");
    let board = TypedBoard::<Pose>::create(&name.0, 0o600).unwrap();
    let (zero, version) = board.read().unwrap();
    assert_eq!(version, 0);
    assert_eq!(zero, bytemuck::Zeroable::zeroed());
    let mut w = board.writer().unwrap();
    let p = Pose {
        x: 1.0,
        y: -2.5,
        heading: 0.5,
        id: 7,
    };
    assert_eq!(w.write(&p).unwrap(), 1);
    let other = TypedBoard::<Pose>::open(&name.0).unwrap();
    assert_eq!(other.read().unwrap(), (p, 1));
    let e = TypedBoard::<u64>::open(&name.0).unwrap_err();
    assert!(
        e.to_string()
            .contains("it holds values of 24 bytes aligned to 8, not 8 aligned to 8"),
        "{e}"
    );
    // As bytes it opens, but only values of the type's size may be written.
    drop(w);
    let bytes = Board::open(&name.0).unwrap();
    assert_eq!(bytes.stats().type_size, 24);
    let e = bytes.writer().unwrap().write(b"short").unwrap_err();
    assert!(
        e.to_string().contains("on a board of 24-byte values"),
        "{e}"
    );
}

#[test]
fn board_headers_are_checked_on_open() {
    let name = Name::new("board-open");
    // A plain object of zeros: no creator ever finished it.
    OpenOptions::new()
        .create_new(true)
        .size(4096)
        .open(&name.0)
        .unwrap();
    let e = Board::open(&name.0).unwrap_err();
    assert!(e.to_string().contains("not a shmkit board"), "{e}");
    posix::unlink(&name.0).unwrap();
    // Another kind of shmkit object.
    let b = Broadcast::create(&name.0, &BroadcastOptions::new()).unwrap();
    let e = Board::open(&name.0).unwrap_err();
    assert!(
        e.to_string()
            .contains("it is a shmkit broadcast, not a board"),
        "{e}"
    );
    b.unlink().unwrap();
    // Bad parameters leave nothing behind.
    let e = Board::create(&name.0, BoardOptions::new().max_size(0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(posix::unlink(&name.0).is_err(), "nothing half-made is left");
    // A damaged parameter block is refused.
    let board = Board::create(&name.0, BoardOptions::new().max_size(64)).unwrap();
    let raw = shmkit::PosixObject::open(&name.0).unwrap().map().unwrap();
    raw.atomic_u64(64)
        .unwrap()
        .store(1 << 20, Ordering::Relaxed);
    let e = Board::open(&name.0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    raw.atomic_u64(64).unwrap().store(64, Ordering::Relaxed);
    // A damaged length word is an error, never an out-of-bounds copy.
    board.writer().unwrap().write(b"ok").unwrap();
    let slot1_len = 512 + 128; // version 1 lives in slot 1
    raw.atomic_u64(slot1_len)
        .unwrap()
        .store(1 << 40, Ordering::Relaxed);
    let e = board.read().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("over the maximum of 64"), "{e}");
}

// ---- Broadcasts in one process --------------------------------------------

fn message(r: Received<Vec<u8>>) -> (u64, Vec<u8>) {
    match r {
        Received::Message { position, value } => (position, value),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn broadcast_every_subscriber_reads_every_message() {
    let name = Name::new("bcast");
    let mut opts = BroadcastOptions::new();
    opts.capacity(8).max_message(16);
    let b = Broadcast::create(&name.0, &opts).unwrap();
    let mut early = b.subscribe().unwrap();
    let mut p = b.publisher().unwrap();
    assert_eq!(p.send(b"zero").unwrap(), 0);
    let mut late = Broadcast::open(&name.0).unwrap().subscribe().unwrap();
    let mut oldest = b.subscribe_from_oldest().unwrap();
    for i in 1..5u8 {
        assert_eq!(p.send(&[i]).unwrap(), u64::from(i));
    }
    assert_eq!(message(early.recv().unwrap()), (0, b"zero".to_vec()));
    assert_eq!(message(oldest.recv().unwrap()), (0, b"zero".to_vec()));
    for i in 1..5u8 {
        assert_eq!(message(early.recv().unwrap()), (u64::from(i), vec![i]));
        assert_eq!(message(late.recv().unwrap()), (u64::from(i), vec![i]));
        assert_eq!(message(oldest.recv().unwrap()), (u64::from(i), vec![i]));
    }
    assert_eq!(early.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    let e = early.recv_timeout(Duration::from_millis(100)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    let e = p.send(&[0; 17]).unwrap_err();
    assert!(
        e.to_string()
            .contains("a message of 17 bytes exceeds the broadcast's maximum of 16"),
        "{e}"
    );
    // One writer at a time.
    let e = b.publisher().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert!(
        e.to_string().contains(&format!(
            "broadcast has a live writer pid {}",
            std::process::id()
        )),
        "{e}"
    );
    // A sleeping subscriber wakes for the next message.
    std::thread::scope(|s| {
        let waiter = s.spawn(|| early.recv_timeout(WAIT));
        std::thread::sleep(Duration::from_millis(50));
        p.send(b"wake").unwrap();
        assert_eq!(
            message(waiter.join().unwrap().unwrap()),
            (5, b"wake".to_vec())
        );
    });
    let st = b.stats();
    assert_eq!((st.published, st.capacity, st.max_message), (6, 8, 16));
    assert_eq!(st.subscribers.len(), 3);
    let e = st.subscribers.iter().find(|s| s.cursor == 6).unwrap();
    assert_eq!((e.lag, e.missed, e.received, e.alive), (0, 0, 6, true));
    // The writer leaves: once everything is read, subscribers are told.
    drop(p);
    assert_eq!(message(late.recv().unwrap()), (5, b"wake".to_vec()));
    let e = late.recv().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    assert!(e.to_string().contains("the writer is gone"), "{e}");
    // Not final: a new writer is heard.
    let mut p2 = b.publisher().unwrap();
    assert_eq!(p2.position(), 6);
    p2.send(b"again").unwrap();
    assert_eq!(message(late.recv().unwrap()), (6, b"again".to_vec()));
    drop((early, oldest));
    assert_eq!(b.stats().subscribers.len(), 1);
}

#[test]
fn a_slow_subscriber_learns_exactly_how_many_it_missed() {
    let name = Name::new("bcast-lag");
    let mut opts = BroadcastOptions::new();
    opts.capacity(4).max_message(8);
    let b = Broadcast::create(&name.0, &opts).unwrap();
    let mut slow = b.subscribe().unwrap();
    let mut p = b.publisher().unwrap();
    let mut sent = 0u64;
    let mut received = 0u64;
    let mut missed = 0u64;
    let mut last = None;
    // Rounds of bursts of different sizes, some over the capacity.
    for burst in [1u64, 3, 4, 5, 9, 2, 17, 4] {
        for _ in 0..burst {
            p.send(&sent.to_le_bytes()).unwrap();
            sent += 1;
        }
        while received + missed < sent {
            match slow.recv_timeout(WAIT).unwrap() {
                Received::Message { position, value } => {
                    assert_eq!(value, position.to_le_bytes());
                    assert!(last.is_none_or(|l| position > l));
                    last = Some(position);
                    received += 1;
                }
                Received::Lagged { missed: n } => missed += n,
            }
        }
        // Whatever was missed, the newest message was received.
        assert_eq!(last, Some(sent - 1));
    }
    assert_eq!(received + missed, sent);
    // Each burst over the capacity made it resume half a ring (2
    // messages) behind the head: it received those 2 and missed the rest.
    assert_eq!(missed, (5 - 2) + (9 - 2) + (17 - 2));
    assert_eq!((slow.received(), slow.missed()), (received, missed));
    let info = &b.stats().subscribers[0];
    assert_eq!(
        (info.missed, info.received, info.lag),
        (missed, received, 0)
    );
}

/// Lossless mode in one process: a subscriber that stops reading holds
/// the writer at one lap, is evicted after the creator's time, and learns
/// it; a late joiner starts at the head; a policy is kept in the header.
#[test]
fn a_lossless_writer_waits_then_evicts_a_stopped_subscriber() {
    use shmkit::broadcast::SlowSubscriber;
    let name = Name::new("bcast-lossless");
    let mut opts = BroadcastOptions::new();
    opts.capacity(4)
        .max_message(8)
        .lossless(SlowSubscriber::EvictAfter(Duration::from_millis(20)));
    let b = Broadcast::create(&name.0, &opts).unwrap();
    assert_eq!(
        Broadcast::open(&name.0).unwrap().lossless(),
        Some(SlowSubscriber::EvictAfter(Duration::from_millis(20)))
    );
    let mut stopped = b.subscribe().unwrap();
    let mut reader = b.subscribe().unwrap();
    let mut p = b.publisher().unwrap();
    for i in 0..4u64 {
        p.send(&i.to_le_bytes()).unwrap();
        assert_eq!(message(reader.recv_timeout(WAIT).unwrap()).0, i);
    }
    let s = b.stats();
    assert!(s.subscribers.iter().all(|e| e.gating));
    assert_eq!(s.subscribers.iter().filter(|e| e.holds_writer).count(), 1);
    // The fifth would overwrite what `stopped` has not read: the writer
    // waits 20 ms for it, then cuts it off.
    let start = std::time::Instant::now();
    p.send(&4u64.to_le_bytes()).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(20));
    let late = b.subscribe().unwrap();
    assert_eq!(late.cursor(), 5, "a late joiner starts at the head");
    let s = b.stats();
    assert_eq!((s.evictions, s.writer_waits), (1, 1));
    assert_eq!(s.subscribers.iter().filter(|e| e.evicted).count(), 1);
    let err = stopped.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Disconnected);
    assert!(err.to_string().contains("evicted by the writer"), "{err}");
    assert!(stopped.evicted());
    assert_eq!(message(reader.recv_timeout(WAIT).unwrap()).0, 4);
    // Nobody lags now: the writer goes on without waiting.
    for i in 5..9u64 {
        p.send(&i.to_le_bytes()).unwrap();
        assert_eq!(message(reader.recv_timeout(WAIT).unwrap()).0, i);
    }
    assert_eq!(b.stats().writer_waits, 1);
    drop(late);
    // An eviction time out of range is refused.
    let mut bad = BroadcastOptions::new();
    bad.lossless(SlowSubscriber::EvictAfter(Duration::ZERO));
    let other = Name::new("bcast-lossless-bad");
    let e = Broadcast::create(&other.0, &bad).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

/// A lossless broadcast's mode words are checked on open: an unknown mode,
/// or an eviction time that does not go with its mode, is corruption.
#[test]
fn garbage_mode_words_are_corruption() {
    use shmkit::broadcast::SlowSubscriber;
    let name = Name::new("bcast-mode");
    let mut opts = BroadcastOptions::new();
    opts.capacity(4).lossless(SlowSubscriber::Block);
    Broadcast::create(&name.0, &opts).unwrap();
    let raw = OpenOptions::new().open(&name.0).unwrap().map().unwrap();
    // Control::mode at 120, Control::evict_after_ns at 136.
    let (mode, evict) = (raw.atomic_u64(120).unwrap(), raw.atomic_u64(136).unwrap());
    assert_eq!(mode.load(Ordering::Relaxed), 1, "the layout moved");
    mode.store(9, Ordering::Relaxed);
    let e = Broadcast::open(&name.0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("mode word 9"), "{e}");
    mode.store(1, Ordering::Relaxed);
    evict.store(5, Ordering::Relaxed);
    let e = Broadcast::open(&name.0).unwrap_err();
    assert!(e.to_string().contains("does not go with mode 1"), "{e}");
    evict.store(0, Ordering::Relaxed);
    assert_eq!(
        Broadcast::open(&name.0).unwrap().lossless(),
        Some(SlowSubscriber::Block)
    );
}

/// Issue 15, defect 8: a garbage head (header bytes 256..264) is reported
/// as corruption, never turned into a `Lagged` of billions of messages by
/// a late subscriber or a writer taking over.
#[test]
fn a_garbage_head_is_corruption_not_a_huge_lag() {
    let name = Name::new("bcast-head");
    let mut opts = BroadcastOptions::new();
    opts.capacity(4).max_message(16);
    let b = Broadcast::create(&name.0, &opts).unwrap();
    let mut early = b.subscribe().unwrap();
    {
        let mut p = b.publisher().unwrap();
        for i in 0..6u8 {
            p.send(&[i]).unwrap();
        }
    }
    let raw = OpenOptions::new().open(&name.0).unwrap().map().unwrap();
    raw.atomic_u64(256)
        .unwrap()
        .store(0x43e6_0000_0000_1234, Ordering::Relaxed);
    let e = b.publisher().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    for oldest in [false, true] {
        let e = if oldest {
            b.subscribe_from_oldest()
        } else {
            b.subscribe()
        }
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    }
    // The early subscriber fell behind (positions 0 and 1 are overwritten):
    // the lag needs the head, which is garbage: an error, not a lag.
    let got = early.try_recv();
    match got {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}"),
        Ok(Received::Lagged { missed }) => assert!(missed <= 6, "missed {missed}"),
        Ok(other) => panic!("{other:?}"),
    }
    // Put the head back: everything works again.
    raw.atomic_u64(256).unwrap().store(6, Ordering::Relaxed);
    let mut p = b.publisher().unwrap();
    assert_eq!(p.send(b"on").unwrap(), 6);
}

#[test]
fn broadcast_subscriber_table_has_a_limit() {
    let name = Name::new("bcast-table");
    let b = Broadcast::create(&name.0, &BroadcastOptions::new()).unwrap();
    let subs: Vec<_> = (0..shmkit::broadcast::MAX_SUBSCRIBERS)
        .map(|_| b.subscribe().unwrap())
        .collect();
    let e = b.subscribe().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    drop(subs);
    assert!(b.stats().subscribers.is_empty());
    b.subscribe().unwrap();
}

// ---- Real processes -------------------------------------------------------

/// A board value that carries its own checksum: counter, payload derived
/// from it, FNV-1a of both. 256 bytes.
const VALUE_SIZE: usize = 256;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn checked_value(counter: u64) -> [u8; VALUE_SIZE] {
    let mut v = [0u8; VALUE_SIZE];
    v[..8].copy_from_slice(&counter.to_le_bytes());
    for (i, b) in v[8..VALUE_SIZE - 8].iter_mut().enumerate() {
        *b = (counter as u8).wrapping_mul(31).wrapping_add(i as u8);
    }
    let sum = fnv1a(&v[..VALUE_SIZE - 8]);
    v[VALUE_SIZE - 8..].copy_from_slice(&sum.to_le_bytes());
    v
}

/// Whether `v` is a whole value with counter `version`.
fn value_is_whole(v: &[u8], version: u64) -> bool {
    if version == 0 {
        return v.is_empty();
    }
    v.len() == VALUE_SIZE
        && fnv1a(&v[..VALUE_SIZE - 8]).to_le_bytes() == v[VALUE_SIZE - 8..]
        && u64::from_le_bytes(v[..8].try_into().unwrap()) == version
}

/// Child entry point: when SHMKIT_CHILD is set, this "test" plays a role;
/// otherwise it does nothing.
#[test]
fn child_role() {
    let Ok(role) = std::env::var("SHMKIT_CHILD") else {
        return;
    };
    let name = std::env::var("SHMKIT_OBJECT").unwrap();
    let arg = |key: &str| -> u64 { std::env::var(key).unwrap().parse().unwrap() };
    match role.as_str() {
        "board-reader" => {
            let board = Board::open(&name).unwrap();
            let reads = arg("SHMKIT_READS");
            let (mut torn, mut last, mut versions) = (0u64, 0u64, 0u64);
            let mut buf = Vec::new();
            for _ in 0..reads {
                let version = board.read_into(&mut buf).unwrap();
                if !value_is_whole(&buf, version) {
                    torn += 1;
                }
                assert!(version >= last, "version went back: {version} < {last}");
                if version != last {
                    versions += 1;
                }
                last = version;
            }
            println!("reads {reads} torn {torn} versions {versions}");
        }
        "board-writer-hang-mid-write" => {
            let board = Board::open(&name).unwrap();
            let mut w = board.writer().unwrap();
            w.write(b"the last complete value").unwrap();
            let mut write = w.begin();
            write.write_at(0, b"TORN TORN TORN").unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
        }
        "publisher-hang-mid-send" => {
            let b = Broadcast::open(&name).unwrap();
            let mut p = b.publisher().unwrap();
            p.send(b"m0").unwrap();
            p.send(b"m1").unwrap();
            p.begin_and_abandon(b"TORN");
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
        }
        "subscriber-idle" => {
            let _sub = Broadcast::open(&name).unwrap().subscribe().unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
        }
        "subscriber-count" => {
            let mut sub = Broadcast::open(&name).unwrap().subscribe().unwrap();
            println!("ready");
            let n = arg("SHMKIT_COUNT");
            let mut next = 0;
            while next < n {
                let (position, value) = message(sub.recv_timeout(WAIT).unwrap());
                assert_eq!(position, next);
                assert_eq!(value, position.to_le_bytes());
                next += 1;
            }
            println!("got {next}");
        }
        "typed-subscriber-count" => {
            let b = TypedBroadcast::<[u64; 4]>::open(&name).unwrap();
            let mut sub = b.subscribe().unwrap();
            println!("ready");
            let n = arg("SHMKIT_COUNT");
            for next in 0..n {
                match sub.recv_timeout(WAIT).unwrap() {
                    Received::Message { position, value } => {
                        assert_eq!(position, next);
                        assert_eq!(value, typed_value(position), "a torn or wrong value");
                    }
                    Received::Lagged { missed } => panic!("missed {missed}"),
                }
            }
            assert_eq!((sub.received(), sub.missed()), (n, 0));
            println!("got {n}");
        }
        other => panic!("unknown role {other}"),
    }
}

/// Value `i` of the typed broadcast test: four words that all depend on it.
fn typed_value(i: u64) -> [u64; 4] {
    [i, i.wrapping_mul(3), !i, i ^ 0x5555_5555_5555_5555]
}

#[test]
fn typed_broadcast_values_reach_subscriber_processes_whole() {
    const COUNT: u64 = 500;
    let name = Name::new("typed-bcast");
    let mut opts = BroadcastOptions::new();
    // Room for every value: the subscribers must not lag.
    opts.capacity(1024);
    let b = TypedBroadcast::<[u64; 4]>::create(&name.0, &opts).unwrap();
    let env = [("SHMKIT_COUNT", COUNT.to_string())];
    let mut children: Vec<_> = (0..2)
        .map(|_| spawn_child("typed-subscriber-count", &name.0, &env))
        .collect();
    let outputs: Vec<_> = children.iter_mut().map(wait_ready).collect();
    // A subscriber of another type cannot even open it.
    assert!(TypedBroadcast::<[u32; 8]>::open(&name.0).is_err());
    let mut p = b.publisher().unwrap();
    for i in 0..COUNT {
        assert_eq!(p.send(&typed_value(i)).unwrap(), i);
    }
    for (child, out) in children.into_iter().zip(outputs) {
        finish(child, Duration::from_secs(30), "typed subscriber");
        assert!(out.join().unwrap().contains(&format!("got {COUNT}")));
    }
}

/// Starts this test binary as a child playing `role` on `object`.
fn spawn_child(role: &str, object: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env("SHMKIT_CHILD", role)
        .env("SHMKIT_OBJECT", object)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Reads the child's standard output until a line containing "ready";
/// returns a thread that collects the rest (so the child never blocks on a
/// full pipe).
fn wait_ready(child: &mut Child) -> std::thread::JoinHandle<String> {
    use std::io::{BufRead, BufReader};
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child exited early");
    }
    std::thread::spawn(move || {
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        rest
    })
}

/// Waits at most `limit` for a child; kills it and fails if it hangs.
/// Returns its standard output.
fn finish(mut child: Child, limit: Duration, what: &str) -> String {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} hung for more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out).unwrap();
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).unwrap();
    }
    assert!(status.success(), "{what} failed: {status}\n{out}\n{err}");
    out
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// One writer (a thread of this process, writing without pause) and 32
/// reader processes; each read is checked against the value's checksum and
/// its version. 32 × 32768 = 1,048,576 reads.
#[test]
fn thirty_two_reader_processes_never_see_a_torn_value() {
    const READERS: usize = 32;
    const READS: u64 = 32_768;
    // The check can tell: half of one value and half of the next is torn.
    let (a, b) = (checked_value(7), checked_value(8));
    assert!(value_is_whole(&a, 7) && value_is_whole(&b, 8));
    let mixed = [&a[..128], &b[128..]].concat();
    assert!(!value_is_whole(&mixed, 7) && !value_is_whole(&mixed, 8));
    let name = Name::new("board-32");
    let board = Board::create(&name.0, BoardOptions::new().max_size(VALUE_SIZE)).unwrap();
    let stop = AtomicBool::new(false);
    let (outputs, writes) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut w = board.writer().unwrap();
            let mut writes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let next = w.next_version();
                assert_eq!(w.write(&checked_value(next)).unwrap(), next);
                writes += 1;
            }
            writes
        });
        let readers: Vec<Child> = (0..READERS)
            .map(|_| {
                spawn_child(
                    "board-reader",
                    &name.0,
                    &[("SHMKIT_READS", READS.to_string())],
                )
            })
            .collect();
        let outputs: Vec<String> = readers
            .into_iter()
            .map(|c| finish(c, Duration::from_secs(300), "reader"))
            .collect();
        stop.store(true, Ordering::Relaxed);
        (outputs, writer.join().unwrap())
    });
    let (mut reads, mut torn, mut versions) = (0u64, 0u64, 0u64);
    for out in &outputs {
        // The harness may print "test child_role ... " before it.
        let line = out
            .lines()
            .find_map(|l| l.find("reads ").map(|at| &l[at..]))
            .unwrap_or_else(|| panic!("no result in {out:?}"));
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        reads += f[0];
        torn += f[1];
        versions += f[2];
    }
    eprintln!(
        "{READERS} reader processes: {reads} reads, {torn} torn, {versions} version changes seen; {writes} writes"
    );
    assert_eq!(reads, READERS as u64 * READS);
    assert!(reads >= 1_000_000);
    assert_eq!(torn, 0, "torn reads accepted");
    assert!(
        versions > READERS as u64,
        "readers should see the value change while they read"
    );
}

#[test]
fn a_writer_killed_mid_write_leaves_the_last_value_and_is_taken_over() {
    let name = Name::new("board-kill");
    let board = Board::create(&name.0, BoardOptions::new().max_size(64)).unwrap();
    let mut child = spawn_child("board-writer-hang-mid-write", &name.0, &[]);
    wait_ready(&mut child);
    let pid = child.id();
    assert_eq!(
        board.read().unwrap(),
        (b"the last complete value".to_vec(), 1)
    );
    let st = board.stats();
    assert!(st.write_in_progress);
    assert_eq!(st.writer.map(|w| (w.pid, w.alive)), Some((pid, true)));
    let e = board.writer().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert!(
        e.to_string()
            .contains(&format!("board has a live writer pid {pid}")),
        "{e}"
    );
    kill(child);
    // Dead mid-write: the last complete value is still what readers get.
    assert_eq!(
        board.read().unwrap(),
        (b"the last complete value".to_vec(), 1)
    );
    assert_eq!(board.stats().writer.map(|w| w.alive), Some(false));
    std::thread::scope(|s| {
        let watcher = s.spawn(|| board.wait_for_change(1, Some(WAIT)));
        let mut w = board.writer().unwrap();
        assert_eq!(w.took_over_from(), Some(pid));
        assert_eq!(w.write(b"a new writer").unwrap(), 2);
        assert_eq!(
            watcher.join().unwrap().unwrap(),
            (b"a new writer".to_vec(), 2)
        );
    });
    let st = board.stats();
    assert!(!st.write_in_progress);
    assert!(st.writer.is_none(), "the new writer gave the role back");
    assert_eq!(st.writer_claims, 2);
}

#[test]
fn a_publisher_killed_mid_message_publishes_nothing_torn_and_is_taken_over() {
    let name = Name::new("bcast-kill");
    let mut opts = BroadcastOptions::new();
    opts.capacity(4).max_message(16);
    let b = Broadcast::create(&name.0, &opts).unwrap();
    let mut sub = b.subscribe().unwrap();
    let mut child = spawn_child("publisher-hang-mid-send", &name.0, &[]);
    wait_ready(&mut child);
    let pid = child.id();
    assert_eq!(
        message(sub.recv_timeout(WAIT).unwrap()),
        (0, b"m0".to_vec())
    );
    assert_eq!(
        message(sub.recv_timeout(WAIT).unwrap()),
        (1, b"m1".to_vec())
    );
    // Position 2 is begun by a live writer: wait for it.
    let e = sub.recv_timeout(Duration::from_millis(200)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    let e = b.publisher().unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("broadcast has a live writer pid {pid}")),
        "{e}"
    );
    kill(child);
    // Its half message is never delivered; the subscriber learns the
    // writer is gone.
    let e = sub.recv_timeout(WAIT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    let mut p = b.publisher().unwrap();
    assert_eq!(p.took_over_from(), Some(pid));
    assert_eq!(p.position(), 2);
    p.send(b"m2").unwrap();
    assert_eq!(
        message(sub.recv_timeout(WAIT).unwrap()),
        (2, b"m2".to_vec())
    );
    assert_eq!((sub.received(), sub.missed()), (3, 0));
}

#[test]
fn killed_subscribers_are_reaped_and_the_others_go_on() {
    const COUNT: u64 = 2000;
    let name = Name::new("bcast-reap");
    let mut opts = BroadcastOptions::new();
    opts.capacity(4096).max_message(8);
    let b = Broadcast::create(&name.0, &opts).unwrap();
    let env = [("SHMKIT_COUNT", COUNT.to_string())];
    let mut workers: Vec<Child> = (0..3)
        .map(|_| spawn_child("subscriber-count", &name.0, &env))
        .collect();
    let mut idle: Vec<Child> = (0..2)
        .map(|_| spawn_child("subscriber-idle", &name.0, &[]))
        .collect();
    let outputs: Vec<_> = workers.iter_mut().map(wait_ready).collect();
    for c in idle.iter_mut() {
        wait_ready(c);
    }
    let st = b.stats();
    assert_eq!(st.subscribers.len(), 5);
    assert!(st.subscribers.iter().all(|s| s.alive));
    let dead: Vec<u32> = idle.iter().map(|c| c.id()).collect();
    for c in idle {
        kill(c);
    }
    let st = b.stats();
    for pid in &dead {
        let e = st.subscribers.iter().find(|s| s.pid == *pid).unwrap();
        assert!(!e.alive);
    }
    // A joiner reaps them.
    let me = b.subscribe().unwrap();
    let st = b.stats();
    assert_eq!(st.subscribers.len(), 4);
    assert!(st
        .subscribers
        .iter()
        .all(|s| s.alive && !dead.contains(&s.pid)));
    drop(me);
    assert_eq!(b.reap(), 0);
    let mut p = b.publisher().unwrap();
    for i in 0..COUNT {
        p.send(&i.to_le_bytes()).unwrap();
    }
    for (c, out) in workers.into_iter().zip(outputs) {
        finish(c, Duration::from_secs(60), "subscriber");
        let out = out.join().unwrap();
        assert!(out.contains(&format!("got {COUNT}")), "{out}");
    }
    assert!(b.stats().subscribers.is_empty());
}
