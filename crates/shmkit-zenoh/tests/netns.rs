//! Bridges across a real network: two network namespaces joined by a veth
//! pair, an exporter `shmkit-bridge` process in A, an importer in B. The
//! test process is the shmkit producer and consumer (shared memory is not
//! namespaced by the network, so it sits on both sides; the object names
//! differ per side). Needs root; skipped with the reason printed otherwise.

use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmkit::board::{Board, BoardOptions};
use shmkit::channel::{Channel, ChannelOptions};
use shmkit_zenoh::netns::{NetnsPair, ADDR_A};

const BRIDGE: &str = env!("CARGO_BIN_EXE_shmkit-bridge");

/// Unique object names, removed on drop (also when the test fails).
struct Names(Vec<String>);

impl Names {
    fn new(count: usize) -> Names {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Names(
            (0..count)
                .map(|i| format!("/shmkit-test-{}-zenoh-{n}-{i}", std::process::id()))
                .collect(),
        )
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = shmkit::posix::unlink(name);
        }
    }
}

/// A bridge process, killed on drop.
struct Bridge(Option<Child>);

impl Bridge {
    fn spawn(ns: &str, args: &[&str]) -> Bridge {
        let child = NetnsPair::command(ns, BRIDGE)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn shmkit-bridge");
        Bridge(Some(child))
    }

    /// Waits for it to exit (at most `limit`) and parses its last JSON line.
    fn finish(mut self, limit: Duration) -> serde_json::Value {
        let mut child = self.0.take().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "shmkit-bridge failed: {status}");
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("shmkit-bridge did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let line = out.lines().last().expect("stats on stdout");
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// SIGTERM, then its final stats.
    fn stop(self) -> serde_json::Value {
        let pid = self.0.as_ref().unwrap().id();
        // The child is `ip netns exec`, which execs the bridge: same pid.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        self.finish(Duration::from_secs(10))
    }

    fn kill(mut self) {
        let mut child = self.0.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn netns(tag: &str) -> Option<NetnsPair> {
    match NetnsPair::create(tag) {
        Ok(pair) => Some(pair),
        Err(e) => {
            eprintln!("skipped: cannot make network namespaces here: {e:#}");
            None
        }
    }
}

fn listen(port: u16) -> String {
    format!("tcp/{ADDR_A}:{port}")
}

/// A port per test, so tests running at once do not collide (each pair of
/// namespaces has its own addresses anyway; this is for clarity in logs).
fn port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    17500 + NEXT.fetch_add(1, Ordering::Relaxed) as u16
}

fn message(i: u64) -> [u8; 64] {
    let mut m = [0u8; 64];
    m[..8].copy_from_slice(&i.to_le_bytes());
    m[8..16].copy_from_slice(&(!i).to_le_bytes());
    m
}

fn number(m: &[u8]) -> u64 {
    assert_eq!(m.len(), 64, "a message keeps its length");
    let i = u64::from_le_bytes(m[..8].try_into().unwrap());
    assert_eq!(
        u64::from_le_bytes(m[8..16].try_into().unwrap()),
        !i,
        "a message keeps its bytes"
    );
    i
}

fn channel(name: &str) -> Channel {
    let mut o = ChannelOptions::new();
    o.capacity(1024).max_message(64);
    Channel::create(name, &o).unwrap()
}

fn produce(name: String, range: std::ops::Range<u64>) -> std::thread::JoinHandle<()> {
    let ch = Channel::open(&name).unwrap();
    let mut tx = ch.sender().unwrap();
    std::thread::spawn(move || {
        for i in range {
            tx.send(&message(i)).unwrap();
        }
    })
}

/// Receives `count` messages from `name` (waiting at most `limit` for
/// each); returns their numbers.
fn consume(name: &str, count: u64, limit: Duration) -> Vec<u64> {
    let ch = Channel::open(name).unwrap();
    let mut rx = ch.receiver().unwrap();
    (0..count)
        .map(|k| {
            let m = rx
                .recv_timeout(limit)
                .unwrap_or_else(|e| panic!("message {k} of {count}: {e}"));
            number(&m)
        })
        .collect()
}

fn export_args<'a>(name: &'a str, key: &'a str, listen: &'a str) -> Vec<&'a str> {
    vec!["export", name, "--key", key, "--listen", listen, "--json"]
}

#[test]
fn a_channel_crosses_the_network_losslessly_and_in_order() {
    let Some(net) = netns("lossless") else { return };
    let names = Names::new(2);
    let (a, b) = (&names.0[0], &names.0[1]);
    channel(a);
    channel(b);
    const N: u64 = 100_000;
    let ep = listen(port());
    let exporter = Bridge::spawn(&net.a, &export_args(a, "test/lossless", &ep));
    let count = N.to_string();
    let importer = Bridge::spawn(
        &net.b,
        &[
            "import",
            "test/lossless",
            "--into",
            b,
            "--connect",
            &ep,
            "--count",
            &count,
            "--json",
        ],
    );
    // Sent at once: the exporter holds them in the channel until the
    // importer matches, so none is lost to a late subscriber.
    let producer = produce(a.clone(), 0..N);
    let got = consume(b, N, Duration::from_secs(30));
    producer.join().unwrap();
    assert!(got.iter().copied().eq(0..N), "every message once, in order");
    let imported = importer.finish(Duration::from_secs(10));
    let exported = exporter.stop();
    assert_eq!(imported["messages"], N);
    assert_eq!(imported["gaps"], 0);
    assert_eq!(imported["duplicates"], 0);
    assert_eq!(exported["messages"], N);
    assert_eq!(exported["bytes"], N * 64);
    assert_eq!(imported["peers"][0]["zid"], exported["zid"]);
}

#[test]
fn a_cut_link_stalls_the_stream_which_resumes_with_the_counts_telling() {
    let Some(net) = netns("cut") else { return };
    let names = Names::new(2);
    let (a, b) = (&names.0[0], &names.0[1]);
    channel(a);
    channel(b);
    const N: u64 = 60_000;
    let ep = listen(port());
    let exporter = Bridge::spawn(&net.a, &export_args(a, "test/cut", &ep));
    let importer = Bridge::spawn(
        &net.b,
        &[
            "import",
            "test/cut",
            "--into",
            b,
            "--connect",
            &ep,
            "--json",
        ],
    );
    let producer = produce(a.clone(), 0..N);
    let ch = Channel::open(b).unwrap();
    let mut rx = ch.receiver().unwrap();
    let mut got = Vec::new();
    while got.len() < 10_000 {
        got.push(number(&rx.recv_timeout(Duration::from_secs(30)).unwrap()));
    }
    net.set_link(false).unwrap();
    let cut = Instant::now();
    // Drain what was already across; then nothing can come.
    while let Ok(m) = rx.recv_timeout(Duration::from_millis(300)) {
        got.push(number(&m));
    }
    let during = got.len();
    std::thread::sleep(Duration::from_secs(1).saturating_sub(cut.elapsed()));
    net.set_link(true).unwrap();
    // After the cut, the rest arrives (TCP retransmits; the Zenoh session
    // outlives a one-second cut, its lease being ten).
    while let Ok(m) = rx.recv_timeout(Duration::from_secs(20)) {
        got.push(number(&m));
        if got.len() as u64 == N {
            break;
        }
    }
    producer.join().unwrap();
    let imported = importer.stop();
    let exported = exporter.stop();
    eprintln!(
        "cut after 10000 messages; {during} arrived before the link went quiet; {} in all; importer gaps {}",
        got.len(),
        imported["gaps"]
    );
    assert!((during as u64) < N, "the cut stalled the stream");
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "order kept, no duplicate"
    );
    let gaps = imported["gaps"].as_u64().unwrap();
    assert_eq!(
        got.len() as u64 + gaps,
        N,
        "delivered + counted gaps = sent"
    );
    assert_eq!(imported["messages"], got.len() as u64);
    assert_eq!(imported["duplicates"], 0);
    assert_eq!(exported["messages"], N);
}

#[test]
fn the_importer_survives_a_killed_exporter_and_counts_the_restart() {
    let Some(net) = netns("restart") else { return };
    let names = Names::new(2);
    let (a, b) = (&names.0[0], &names.0[1]);
    channel(a);
    channel(b);
    let ep = listen(port());
    let importer = Bridge::spawn(
        &net.b,
        &[
            "import",
            "test/restart",
            "--into",
            b,
            "--connect",
            &ep,
            "--count",
            "2000",
            "--json",
        ],
    );
    let first = Bridge::spawn(&net.a, &export_args(a, "test/restart", &ep));
    produce(a.clone(), 0..1000).join().unwrap();
    let got = consume(b, 1000, Duration::from_secs(30));
    assert!(got.iter().copied().eq(0..1000));
    first.kill();
    // Sent while no exporter runs: they wait in the channel.
    produce(a.clone(), 1000..2000).join().unwrap();
    let second = Bridge::spawn(&net.a, &export_args(a, "test/restart", &ep));
    let got = consume(b, 1000, Duration::from_secs(30));
    assert!(
        got.iter().copied().eq(1000..2000),
        "resumed, in order, once"
    );
    let imported = importer.finish(Duration::from_secs(10));
    let exported = second.stop();
    assert_eq!(imported["restarts"], 1);
    assert_eq!(imported["duplicates"], 0);
    assert_eq!(imported["gaps"], 0);
    assert_eq!(exported["messages"], 1000);
}

#[test]
fn a_late_board_importer_gets_the_current_value_at_once() {
    let Some(net) = netns("board") else { return };
    let names = Names::new(2);
    let (a, b) = (&names.0[0], &names.0[1]);
    let mut o = BoardOptions::new();
    o.max_size(256);
    let board = Board::create(a, &o).unwrap();
    let mut writer = board.writer().unwrap();
    writer.write(b"first").unwrap();
    writer.write(b"current value").unwrap();
    let ep = listen(port());
    let exporter = Bridge::spawn(
        &net.a,
        &[
            "export",
            a,
            "--key",
            "test/board",
            "--kind",
            "board",
            "--listen",
            &ep,
            "--json",
        ],
    );
    // Joins after the value was written and exported.
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let importer = Bridge::spawn(
        &net.b,
        &[
            "import",
            "test/board",
            "--into",
            b,
            "--kind",
            "board",
            "--connect",
            &ep,
            "--count",
            "1",
            "--json",
        ],
    );
    let imported = importer.finish(Duration::from_secs(10));
    eprintln!("late joiner had the value after {:?}", started.elapsed());
    let local = Board::open(b).unwrap();
    assert_eq!(local.read().unwrap().0, b"current value");
    assert_eq!(imported["messages"], 1);
    // A later change follows.
    let importer = Bridge::spawn(
        &net.b,
        &[
            "import",
            "test/board",
            "--into",
            b,
            "--kind",
            "board",
            "--connect",
            &ep,
            "--json",
        ],
    );
    let since = local.version();
    let (value, _) = loop {
        // The importer first writes the current value again, then the new one.
        writer.write(b"newer").unwrap();
        let (v, version) = local
            .wait_for_change(since, Some(Duration::from_secs(10)))
            .unwrap();
        if v == b"newer" {
            break (v, version);
        }
    };
    assert_eq!(value, b"newer");
    drop(importer);
    exporter.stop();
}

/// A file removed on drop.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_link_down_past_the_lease_reconnects_and_resends_what_was_lost() {
    let Some(net) = netns("lease") else { return };
    let names = Names::new(2);
    let (a, b) = (&names.0[0], &names.0[1]);
    channel(a);
    channel(b);
    // A one-second lease: a three-second cut closes the Zenoh session on
    // both sides, as a real outage would; the config file path is tested too.
    let config = TempFile(
        std::env::temp_dir().join(format!("shmkit-test-{}-lease.json5", std::process::id())),
    );
    std::fs::write(
        &config.0,
        "{ scouting: { multicast: { enabled: false } }, transport: { link: { tx: { lease: 1000, keep_alive: 4 } } } }",
    )
    .unwrap();
    let conf = config.0.to_str().unwrap();
    const N: u64 = 60_000;
    let ep = listen(port());
    let exporter = Bridge::spawn(
        &net.a,
        &[
            "export",
            a,
            "--key",
            "test/lease",
            "--listen",
            &ep,
            "--config",
            conf,
            "--json",
        ],
    );
    let importer = Bridge::spawn(
        &net.b,
        &[
            "import",
            "test/lease",
            "--into",
            b,
            "--connect",
            &ep,
            "--config",
            conf,
            "--json",
        ],
    );
    let producer = produce(a.clone(), 0..N);
    let ch = Channel::open(b).unwrap();
    let mut rx = ch.receiver().unwrap();
    let mut got = Vec::new();
    while got.len() < 10_000 {
        got.push(number(&rx.recv_timeout(Duration::from_secs(30)).unwrap()));
    }
    net.set_link(false).unwrap();
    let cut = Instant::now();
    while let Ok(m) = rx.recv_timeout(Duration::from_millis(300)) {
        got.push(number(&m));
    }
    std::thread::sleep(Duration::from_secs(3).saturating_sub(cut.elapsed()));
    net.set_link(true).unwrap();
    while let Ok(m) = rx.recv_timeout(Duration::from_secs(20)) {
        got.push(number(&m));
        if got.last() == Some(&(N - 1)) {
            break;
        }
    }
    producer.join().unwrap();
    let imported = importer.stop();
    let exported = exporter.stop();
    let gaps = imported["gaps"].as_u64().unwrap();
    eprintln!("importer: {imported}\nexporter: {exported}");
    eprintln!(
        "lease cut: {} delivered, {gaps} counted lost in {} gap(s); exporter lost its match {} time(s), put {} again",
        got.len(),
        imported["gap_events"],
        exported["unmatched"],
        exported["replayed"]
    );
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "order kept, no duplicate"
    );
    assert_eq!(got.last(), Some(&(N - 1)), "the stream resumed to its end");
    assert_eq!(
        got.len() as u64 + gaps,
        N,
        "delivered + counted gaps = sent"
    );
    assert_eq!(imported["duplicates"], 0);
    assert!(
        exported["unmatched"].as_u64().unwrap() >= 1,
        "the session was lost"
    );
    assert_eq!(exported["messages"], N);
}

#[test]
fn a_lossless_broadcast_crosses_in_order_and_counts_what_it_missed() {
    use shmkit::broadcast::{Broadcast, BroadcastOptions, Received};
    let Some(net) = netns("bcast") else { return };
    let names = Names::new(2);
    let (a, b) = (&names.0[0], &names.0[1]);
    let mut o = BroadcastOptions::new();
    o.capacity(4096).max_message(64);
    let source = Broadcast::create(a, &o).unwrap();
    let mut publisher = source.publisher().unwrap();
    let sink = Broadcast::create(b, &o).unwrap();
    let mut subscriber = sink.subscribe().unwrap();
    let ep = listen(port());
    let exporter = Bridge::spawn(
        &net.a,
        &[
            "export",
            a,
            "--key",
            "test/bcast",
            "--kind",
            "broadcast",
            "--lossless",
            "--listen",
            &ep,
            "--json",
        ],
    );
    let importer = Bridge::spawn(
        &net.b,
        &[
            "import",
            "test/bcast",
            "--into",
            b,
            "--kind",
            "broadcast",
            "--connect",
            &ep,
            "--json",
        ],
    );
    // A broadcast never waits for subscribers: publish a warm-up message
    // until one crosses, so the route is up before the counted ones.
    let warm = Instant::now();
    loop {
        publisher.send(&message(u64::MAX)).unwrap();
        if let Ok(Received::Message { .. }) = subscriber.recv_timeout(Duration::from_millis(100)) {
            break;
        }
        assert!(
            warm.elapsed() < Duration::from_secs(20),
            "the route never came up"
        );
    }
    while subscriber.try_recv().is_ok() {}
    const N: u64 = 2000;
    for i in 0..N {
        publisher.send(&message(i)).unwrap();
    }
    let mut got = Vec::new();
    let mut missed = 0;
    while (got.len() as u64) + missed < N {
        match subscriber.recv_timeout(Duration::from_secs(20)).unwrap() {
            // A warm-up still in flight is not one of the counted.
            Received::Message { value, .. } if number(&value) == u64::MAX => {}
            Received::Message { value, .. } => got.push(number(&value)),
            Received::Lagged { missed: m } => missed += m,
        }
    }
    let imported = importer.stop();
    let exported = exporter.stop();
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "order kept, no duplicate"
    );
    // The ring holds every one of them: nothing may be missed anywhere.
    assert_eq!((got.len() as u64, missed), (N, 0));
    assert_eq!(imported["gaps"], 0);
    assert_eq!(exported["source_missed"], 0);
    assert!(imported["messages"].as_u64().unwrap() >= N);
}
