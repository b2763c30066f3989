//! Channels through the `shmkit` binary: the two-terminal textbook demo,
//! many producer and consumer processes, and processes killed at random.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn textbook_two_terminal_flow() {
    let ch = TestObject::new("chan-lines");
    let consumer = spawn(&["consume", &ch.name, "--count", "3", "--create"]);
    let mut producer = shmkit_cmd()
        .args(["produce", &ch.name])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    producer
        .stdin
        .take()
        .unwrap()
        .write_all(b"first line\nsecond line\n\nno newline at the end")
        .unwrap();
    assert!(producer.wait().unwrap().success());
    let (status, out, err) = finish(consumer, Duration::from_secs(30), "consume");
    assert!(status.success(), "{err}");
    assert_eq!(out, "first line\nsecond line\n\n");
    // The fourth message is still queued; stat shows it and the counts.
    let st = json(&["chan", "stat", &ch.name, "--json"]);
    assert_eq!(st["depth"], 1);
    assert_eq!(st["sent"], 4);
    assert_eq!(st["received"], 3);
    assert_eq!(st["capacity"], 1024);
    assert_eq!(st["max_msg"], 1024);
    assert_eq!(st["producers"].as_array().unwrap().len(), 0, "{st}");
    assert_eq!(
        ok(&["consume", &ch.name, "--count", "1"]),
        b"no newline at the end\n"
    );
}

#[test]
fn chan_create_and_stat_show_live_endpoints() {
    let ch = TestObject::new("chan-stat");
    ok(&[
        "chan",
        "create",
        &ch.name,
        "--capacity",
        "100",
        "--max-msg",
        "256",
    ]);
    fails(&["chan", "create", &ch.name], &[&ch.name, "File exists"]);
    let consumer = spawn(&["consume", &ch.name, "--count", "1"]);
    // Wait until the consumer has connected.
    let deadline = Instant::now() + Duration::from_secs(20);
    let st = loop {
        let st = json(&["chan", "stat", &ch.name, "--json"]);
        if !st["consumers"].as_array().unwrap().is_empty() || Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(st["capacity"], 128, "rounded up to a power of two");
    assert_eq!(st["max_msg"], 256);
    let c = &st["consumers"][0];
    assert_eq!(c["pid"], consumer.id());
    assert_eq!(c["alive"], true);
    let human = String::from_utf8(ok(&["chan", "stat", &ch.name])).unwrap();
    assert!(
        human.contains(&format!("consumers: {} (alive, 0 messages)", consumer.id())),
        "{human}"
    );
    let long = "x".repeat(257);
    let out = shmkit_stdin(&["produce", &ch.name], format!("{long}\n").as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("a message of 257 bytes exceeds the channel's maximum of 256"));
    ok(&["produce", &ch.name, "--count", "1", "--tag", "t"]);
    let (status, out, _) = finish(consumer, Duration::from_secs(30), "consume");
    assert!(status.success());
    assert_eq!(out, "t 0\n");
    fails(
        &["chan", "stat", "/shmkit-test-no-such-channel"],
        &["No such file or directory"],
    );
    let plain = TestObject::new("not-a-channel");
    ok(&["create", &plain.name, "--size", "4K"]);
    fails(&["chan", "stat", &plain.name], &[&plain.name]);
}

/// Parses consumer output lines `TAG I` into (tag, i).
fn parse(out: &str) -> Vec<(String, u64)> {
    out.lines()
        .map(|l| {
            let (tag, i) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            (
                tag.to_string(),
                i.parse().unwrap_or_else(|_| panic!("bad line {l:?}")),
            )
        })
        .collect()
}

/// Checks per-consumer order for each producer and returns, per producer,
/// every index received, failing on duplicates.
fn collect(outputs: &[String]) -> HashMap<String, HashSet<u64>> {
    let mut seen: HashMap<String, HashSet<u64>> = HashMap::new();
    for out in outputs {
        let mut last: HashMap<String, u64> = HashMap::new();
        for (tag, i) in parse(out) {
            if let Some(&prev) = last.get(&tag) {
                assert!(i > prev, "producer {tag}: {i} after {prev} at one consumer");
            }
            last.insert(tag.clone(), i);
            assert!(
                seen.entry(tag.clone()).or_default().insert(i),
                "producer {tag}: {i} delivered twice"
            );
        }
    }
    seen
}

#[test]
fn three_producers_three_consumers_a_million_messages() {
    let ch = TestObject::new("chan-3x3");
    ok(&[
        "chan",
        "create",
        &ch.name,
        "--capacity",
        "4096",
        "--max-msg",
        "32",
    ]);
    let per_producer: u64 = 333_334; // 1,000,002 in all
    let consumers: Vec<Running> = (0..3).map(|_| spawn(&["consume", &ch.name])).collect();
    let producers: Vec<Running> = (0..3)
        .map(|p| {
            spawn(&[
                "produce",
                &ch.name,
                "--count",
                &per_producer.to_string(),
                "--tag",
                &format!("p{p}"),
            ])
        })
        .collect();
    for p in producers {
        let (status, _, err) = finish(p, Duration::from_secs(300), "produce");
        assert!(status.success(), "{err}");
    }
    let outputs: Vec<String> = consumers
        .into_iter()
        .map(|c| {
            let (status, out, err) = finish(c, Duration::from_secs(300), "consume");
            assert!(status.success(), "{err}");
            out
        })
        .collect();
    let seen = collect(&outputs);
    for p in 0..3 {
        let got = &seen[&format!("p{p}")];
        assert_eq!(
            got.len() as u64,
            per_producer,
            "producer p{p}: messages lost"
        );
    }
    let st = json(&["chan", "stat", &ch.name, "--json"]);
    assert_eq!(st["sent"], 3 * per_producer);
    assert_eq!(st["received"], 3 * per_producer);
}

/// A small deterministic generator, so a failing round can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Rounds of two producers and two consumers where one producer and/or one
/// consumer is SIGKILLed at a random moment and a new consumer takes over.
/// SHMKIT_CRASH_ROUNDS sets the number of rounds (default 20; the full run
/// uses hundreds).
#[test]
fn processes_killed_at_random_moments_never_hang_the_rest() {
    let rounds: u64 = std::env::var("SHMKIT_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed = std::env::var("SHMKIT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let mut rng = Rng(seed | 1);
    let (mut killed_producers, mut killed_consumers, mut lost_total) = (0, 0, 0);
    const COUNT: u64 = 20_000;
    for round in 0..rounds {
        let ch = TestObject::new("chan-crash");
        ok(&[
            "chan",
            "create",
            &ch.name,
            "--capacity",
            "64",
            "--max-msg",
            "32",
        ]);
        let mut consumers: Vec<Running> = (0..2)
            .map(|_| spawn(&["consume", &ch.name, "--unbuffered"]))
            .collect();
        let mut producers: Vec<Running> = (0..2)
            .map(|p| {
                spawn(&[
                    "produce",
                    &ch.name,
                    "--count",
                    &COUNT.to_string(),
                    "--tag",
                    &format!("p{p}"),
                ])
            })
            .collect();
        std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        let victim = rng.below(3); // 0: a producer, 1: a consumer, 2: one of each
        let kill_producer = victim != 1;
        let kill_consumer = victim != 0;
        if kill_producer {
            producers[0].kill();
            killed_producers += 1;
        }
        if kill_consumer {
            consumers[0].kill();
            killed_consumers += 1;
            // A new process takes over the dead consumer's role.
            consumers.push(spawn(&["consume", &ch.name, "--unbuffered"]));
        }
        let what = format!("round {round} (seed {seed})");
        for (i, p) in producers.into_iter().enumerate() {
            let (status, _, err) = finish(p, Duration::from_secs(60), &what);
            if !(kill_producer && i == 0) {
                assert!(status.success(), "{what}: producer {i}: {err}");
            }
        }
        let mut outputs = Vec::new();
        for (i, c) in consumers.into_iter().enumerate() {
            let (status, out, err) = finish(c, Duration::from_secs(60), &what);
            if !(kill_consumer && i == 0) {
                assert!(status.success(), "{what}: consumer {i}: {err}");
            }
            outputs.push(out);
        }
        let seen = collect(&outputs);
        let empty = HashSet::new();
        let survivor = seen.get("p1").unwrap_or(&empty);
        let mut lost = COUNT - survivor.len() as u64;
        assert!(survivor.iter().all(|&i| i < COUNT));
        // The killed producer's messages are a prefix of what it sent (the
        // torn one never appears), minus what a killed consumer held.
        let victim_seen = seen.get("p0").unwrap_or(&empty);
        if kill_producer {
            let top = victim_seen.iter().max().map_or(0, |m| m + 1);
            lost += top - victim_seen.len() as u64;
        } else {
            lost += COUNT - victim_seen.len() as u64;
        }
        let allowed = u64::from(kill_consumer);
        assert!(
            lost <= allowed,
            "{what}: {lost} messages lost, at most {allowed} allowed"
        );
        lost_total += lost;
    }
    eprintln!(
        "{rounds} rounds: {killed_producers} producers and {killed_consumers} consumers killed, {lost_total} messages lost with killed consumers"
    );
}

#[test]
fn spsc_channel_takes_one_consumer_at_a_time() {
    let ch = TestObject::new("chan-spsc");
    ok(&["chan", "create", &ch.name, "--spsc", "--capacity", "8"]);
    let st = json(&["chan", "stat", &ch.name, "--json"]);
    assert_eq!(st["spsc"], true, "{st}");
    let human = String::from_utf8(ok(&["chan", "stat", &ch.name])).unwrap();
    assert!(
        human.contains("single producer, single consumer"),
        "{human}"
    );
    let consumer = spawn(&["consume", &ch.name, "--count", "2"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while json(&["chan", "stat", &ch.name, "--json"])["consumers"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the consumer never connected");
        std::thread::sleep(Duration::from_millis(10));
    }
    fails(
        &["consume", &ch.name, "--count", "1"],
        &[
            &ch.name,
            &format!(
                "single-producer single-consumer channel and process {} is connected as its receiver",
                consumer.id()
            ),
        ],
    );
    ok(&["produce", &ch.name, "--count", "2", "--tag", "t"]);
    let (status, out, err) = finish(consumer, Duration::from_secs(30), "consume");
    assert!(status.success(), "{err}");
    assert_eq!(out, "t 0\nt 1\n");
}

/// Lines and numbered messages through a stream channel made by `chan
/// create --stream` (or by `produce --stream`), in order, whole, in
/// batches; `chan stat` says what it is; one consumer at a time.
#[test]
fn stream_channel_from_the_cli() {
    let ch = TestObject::new("chan-stream");
    ok(&[
        "chan",
        "create",
        &ch.name,
        "--stream",
        "--capacity",
        "16",
        "--max-msg",
        "64",
    ]);
    let st = json(&["chan", "stat", &ch.name, "--json"]);
    assert_eq!(
        (st["stream"].clone(), st["spsc"].clone()),
        (true.into(), true.into()),
        "{st}"
    );
    let human = String::from_utf8(ok(&["chan", "stat", &ch.name])).unwrap();
    assert!(human.contains("framed byte stream"), "{human}");
    // 5000 numbered messages through a ring of 16 of the largest: many
    // waits on both sides.
    let consumer = spawn(&["consume", &ch.name, "--count", "5002"]);
    ok(&["produce", &ch.name, "--count", "5000", "--tag", "t"]);
    let mut producer = shmkit_cmd()
        .args(["produce", &ch.name])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    producer
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"one

two",
        )
        .unwrap();
    assert!(producer.wait().unwrap().success());
    let (status, out, err) = finish(consumer, Duration::from_secs(60), "consume");
    assert!(status.success(), "{err}");
    let want: String = (0..5000).map(|i| format!("t {i}\n")).collect::<String>() + "one\n\n";
    assert_eq!(out, want);
    assert_eq!(ok(&["consume", &ch.name, "--count", "1"]), b"two\n");
    // Too long for the channel: refused, as on the slot rings.
    let mut producer = shmkit_cmd()
        .args(["produce", &ch.name])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    producer
        .stdin
        .take()
        .unwrap()
        .write_all(&[b'x'; 65])
        .unwrap();
    assert!(!producer.wait().unwrap().success());
    // `produce --stream` creates a stream channel when none exists.
    let other = TestObject::new("chan-stream-made");
    ok(&["produce", &other.name, "--stream", "--count", "3"]);
    let st = json(&["chan", "stat", &other.name, "--json"]);
    assert_eq!(
        (st["stream"].clone(), st["sent"].clone()),
        (true.into(), 3.into()),
        "{st}"
    );
}

/// `consume --unbuffered` on a single-consumer channel, SIGKILLed again and
/// again while it prints: a message's slot is released only after its line
/// is out, so every message reaches standard output of some consumer (some
/// twice). Before, it freed the slot first and lost one message to many kills.
#[test]
fn a_killed_spsc_consumer_loses_no_message() {
    killed_single_consumer_loses_no_message("--spsc", 80);
}

/// The same on a stream channel, whose consumer takes messages in batches
/// and publishes its position once a batch: a batch a killed consumer was
/// printing comes again whole to the next.
#[test]
fn a_killed_stream_consumer_loses_no_message() {
    killed_single_consumer_loses_no_message("--stream", 40);
}

/// Waits (at most 60 s) until `chan stat` lists process `pid` as a live
/// consumer of `name`.
fn wait_for_consumer(name: &str, pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = json(&["chan", "stat", name, "--json"]);
        let joined = st["consumers"]
            .as_array()
            .is_some_and(|c| c.iter().any(|e| e["pid"] == pid && e["alive"] == true));
        if joined {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "consumer {pid} never joined: {st}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn killed_single_consumer_loses_no_message(flag: &str, kills: usize) {
    const COUNT: u64 = 200_000;
    let ch = TestObject::new("chan-kill-single");
    ok(&[
        "chan",
        "create",
        &ch.name,
        flag,
        "--capacity",
        "64",
        "--max-msg",
        "32",
    ]);
    let producer = spawn(&[
        "produce",
        &ch.name,
        "--count",
        &COUNT.to_string(),
        "--tag",
        "t",
    ]);
    let mut rng = Rng(0x6b11_u64 | 1);
    let mut outputs = Vec::new();
    // Between a kill and the next consumer's join the channel has no
    // receiver, and a producer that finds it full then for a whole liveness
    // slice rightly gives up ("every receiver is gone"). On a loaded machine
    // starting a process can take longer than that slice, so the producer is
    // stopped (SIGSTOP: alive, so no consumer gives up either) from just
    // before each kill until the next consumer has joined. The kill itself
    // still lands anywhere in the consumer's work.
    let producer_pid = producer.id();
    let mut consumer = spawn(&["consume", &ch.name, "--unbuffered"]);
    for round in 0..kills {
        std::thread::sleep(Duration::from_micros(2_000 + rng.below(15_000)));
        signal(producer_pid, "-STOP");
        consumer.kill();
        let (_, out, _) = finish(consumer, Duration::from_secs(30), &format!("kill {round}"));
        outputs.push(out);
        consumer = spawn(&["consume", &ch.name, "--unbuffered"]);
        wait_for_consumer(&ch.name, consumer.id());
        signal(producer_pid, "-CONT");
    }
    consumer.kill();
    let (_, out, _) = finish(consumer, Duration::from_secs(30), "last kill");
    outputs.push(out);
    // The last one drains the rest and ends when the producer is gone.
    let last = spawn(&["consume", &ch.name, "--unbuffered"]);
    let (status, _, err) = finish(producer, Duration::from_secs(120), "producer");
    assert!(status.success(), "producer: {err}");
    let (status, out, err) = finish(last, Duration::from_secs(120), "last consumer");
    assert!(status.success(), "last consumer: {err}");
    outputs.push(out);
    // Redelivery after a kill may print a line twice; each consumer still
    // prints in order.
    let mut got = HashSet::new();
    for out in &outputs {
        let mut last = None;
        for (tag, i) in parse(out) {
            assert_eq!(tag, "t");
            assert!(last < Some(i), "{i} after {last:?} at one consumer");
            last = Some(i);
            got.insert(i);
        }
    }
    let missing: Vec<u64> = (0..COUNT).filter(|i| !got.contains(i)).take(10).collect();
    assert!(
        missing.is_empty(),
        "{} of {COUNT} messages never printed after {kills} kills ({flag}), first: {missing:?}",
        COUNT - got.len() as u64
    );
}

#[test]
fn a_typo_never_creates_a_channel_and_auto_creation_is_said() {
    let ch = TestObject::new("typo");
    fails(
        &["consume", &ch.name, "--count", "1"],
        &[&ch.name, "--create"],
    );
    assert!(!ch.exists(), "consume without --create made an object");
    let out = shmkit_stdin(&["produce", &ch.name], b"one\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("created channel") && err.contains(&ch.name),
        "{err}"
    );
    assert_eq!(ok(&["consume", &ch.name, "--count", "1"]), b"one\n");
    // An existing channel is used quietly.
    let out = shmkit_stdin(&["produce", &ch.name], b"two\n");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dead_endpoints_are_counted_and_reaped() {
    let ch = TestObject::new("reap");
    ok(&["chan", "create", &ch.name]);
    let mut consumers: Vec<Running> = (0..3).map(|_| spawn(&["consume", &ch.name])).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while json(&["chan", "stat", &ch.name, "--json"])["consumers"]
        .as_array()
        .unwrap()
        .len()
        < 3
    {
        assert!(
            std::time::Instant::now() < deadline,
            "consumers never joined"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for c in &mut consumers {
        c.kill();
    }
    for c in consumers {
        let _ = finish(c, Duration::from_secs(20), "killed consumer");
    }
    let st = json(&["chan", "stat", &ch.name, "--json"]);
    assert_eq!(st["dead_endpoints"], 3, "{st}");
    let human = String::from_utf8(ok(&["chan", "stat", &ch.name])).unwrap();
    assert!(human.contains("3 dead with 0 messages"), "{human}");
    let said = String::from_utf8(ok(&["chan", "reap", &ch.name])).unwrap();
    assert!(said.contains("freed 3 dead endpoint"), "{said}");
    let st = json(&["chan", "stat", &ch.name, "--json"]);
    assert_eq!(st["dead_endpoints"], 0, "{st}");
    assert!(st["consumers"].as_array().unwrap().is_empty(), "{st}");
}

#[test]
fn produce_into_a_typed_channel_refuses_other_lengths() {
    let ch = TestObject::new("chan-typed");
    let mut options = shmkit::channel::ChannelOptions::new();
    options.capacity(4);
    let typed =
        shmkit::channel::TypedChannel::<[u64; 2]>::create_with_options(&ch.name, &options).unwrap();
    let out = shmkit_stdin(&["produce", &ch.name], b"hi\n");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a message of 2 bytes") && err.contains("16-byte typed values"),
        "{err}"
    );
    // The real receiver finds nothing, not a corrupt message.
    let e = typed.receiver().unwrap().try_recv().unwrap_err();
    assert_eq!(e.kind(), shmkit::ErrorKind::WouldBlock, "{e}");
    // A 16-byte line is one value.
    let out = shmkit_stdin(&["produce", &ch.name], b"0123456789abcdef\n");
    assert!(out.status.success());
    assert_eq!(
        typed.receiver().unwrap().try_recv().unwrap(),
        [
            u64::from_ne_bytes(*b"01234567"),
            u64::from_ne_bytes(*b"89abcdef")
        ]
    );
}
