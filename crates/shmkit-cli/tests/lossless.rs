//! Lossless broadcasts through the `shmkit` binary, across real processes:
//! every subscriber gets every message in order, a SIGKILLed subscriber
//! never stalls the writer, a stopped one is evicted when the creator asked
//! for it, and `stat` shows who gates the writer.

mod common;

use std::time::Duration;

use common::*;

/// Generous: only a hang fails the tests, never a slow machine.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// `sub` or `pub` arguments for broadcast `name` with `extra` appended.
fn args<'a>(verb: &'a str, name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![verb, name];
    // The subscribers start first: they make the broadcast.
    if verb == "sub" {
        a.push("--create");
    }
    a.extend_from_slice(extra);
    a
}

#[test]
fn every_lossless_subscriber_gets_every_message_in_order() {
    const SUBSCRIBERS: usize = 4;
    const COUNT: u64 = 20_000;
    let b = TestObject::new("lossless-all");
    let count = COUNT.to_string();
    // A small ring: the writer laps it 2500 times, so it is held back by
    // the subscribers again and again.
    let params = ["--lossless", "--capacity", "8", "--max-msg", "32"];
    let subs: Vec<Running> = (0..SUBSCRIBERS)
        .map(|_| {
            let mut a = args("sub", &b.name, &["--count", &count]);
            a.extend(params);
            spawn(&a)
        })
        .collect();
    let st = stat_until(&b.name, "4 subscribers", |st| {
        subscriber_count(st) == SUBSCRIBERS
    });
    assert_eq!(st["lossless"], true);
    assert_eq!(st["slow_subscriber"], "block");
    assert!(subscribers(&st).iter().all(|s| s["gating"] == true));
    let mut a = args("pub", &b.name, &["--count", &count, "--tag", "p"]);
    a.extend(params);
    let publisher = spawn(&a);
    let (status, _, err) = finish(publisher, HANG_GUARD, "pub");
    assert!(status.success(), "{err}");
    for (i, s) in subs.into_iter().enumerate() {
        let (status, out, err) = finish(s, HANG_GUARD, "sub");
        assert!(status.success(), "subscriber {i}: {err}");
        assert_eq!(err, "", "subscriber {i} reported a lag");
        let got = indices(&out, "p");
        assert_eq!(got, (0..COUNT).collect::<Vec<_>>(), "subscriber {i}");
    }
    let st = json(&["stat", &b.name, "--json"]);
    assert_eq!(st["version"], COUNT);
    assert_eq!(st["evictions"], 0);
    assert!(
        st["writer_waits"].as_u64().unwrap() > 0,
        "the gate never held: {st}"
    );
}

#[test]
fn a_killed_subscriber_never_stalls_the_writer() {
    let b = TestObject::new("lossless-kill");
    let params = ["--lossless", "--capacity", "4", "--max-msg", "32"];
    let mut a = args("sub", &b.name, &["--count", "3000"]);
    a.extend(params);
    let reader = spawn(&a);
    // Dead before the writer starts: it holds the writer back at once.
    let mut dead_early = spawn(&a);
    // Stopped, then killed while the writer waits for it.
    let stopped = spawn(&a);
    stat_until(&b.name, "3 subscribers", |st| subscriber_count(st) == 3);
    signal(stopped.id(), "-STOP");
    dead_early.kill();
    let (_, _, _) = finish(dead_early, HANG_GUARD, "killed sub");
    let mut a = args("pub", &b.name, &["--count", "3000", "--tag", "p"]);
    a.extend(params);
    let publisher = spawn(&a);
    let st = stat_until(&b.name, "the stopped subscriber holding the writer", |st| {
        subscribers(st)
            .iter()
            .any(|s| s["pid"] == stopped.id() && s["holds_writer"] == true)
    });
    assert!(st["writer_waits"].as_u64().unwrap() >= 1, "{st}");
    let text = String::from_utf8(ok(&["stat", &b.name])).unwrap();
    assert!(text.contains("holds the writer back"), "{text}");
    assert!(
        text.contains("lossless (waiting for slow subscribers)"),
        "{text}"
    );
    signal(stopped.id(), "-KILL");
    // The behaviour under test: the writer finishes.
    let (status, _, err) = finish(publisher, HANG_GUARD, "pub behind a killed subscriber");
    assert!(status.success(), "{err}");
    let (status, out, err) = finish(reader, HANG_GUARD, "live sub");
    assert!(status.success(), "{err}");
    assert_eq!(indices(&out, "p"), (0..3000).collect::<Vec<_>>());
    let st = json(&["stat", &b.name, "--json"]);
    assert_eq!(st["dropped_dead"], 2, "{st}");
    assert!(subscribers(&st).is_empty(), "{st}");
    let _ = finish(stopped, HANG_GUARD, "stopped sub");
}

#[test]
fn a_stopped_subscriber_is_evicted_with_a_clear_error() {
    let b = TestObject::new("lossless-evict");
    let params = [
        "--lossless",
        "--evict-after",
        "200ms",
        "--capacity",
        "4",
        "--max-msg",
        "32",
    ];
    let mut a = args("sub", &b.name, &["--count", "500"]);
    a.extend(params);
    let reader = spawn(&a);
    let stopped = spawn(&a);
    stat_until(&b.name, "2 subscribers", |st| subscriber_count(st) == 2);
    signal(stopped.id(), "-STOP");
    let mut a = args("pub", &b.name, &["--count", "500", "--tag", "p"]);
    a.extend(params);
    let (status, _, err) = finish(spawn(&a), HANG_GUARD, "pub");
    assert!(status.success(), "{err}");
    let st = json(&["stat", &b.name, "--json"]);
    assert_eq!(st["slow_subscriber"], "evict");
    assert_eq!(st["evict_after_ms"], 200.0);
    assert_eq!(st["evictions"], 1, "{st}");
    let me = subscribers(&st)
        .iter()
        .find(|s| s["pid"] == stopped.id())
        .expect("the stopped subscriber is listed");
    assert_eq!(me["evicted"], true);
    assert_eq!(me["gating"], false);
    signal(stopped.id(), "-CONT");
    let (status, out, err) = finish(stopped, HANG_GUARD, "evicted sub");
    assert!(!status.success(), "an evicted subscriber fails");
    assert!(err.contains("evicted by the writer"), "{err}");
    assert!(err.contains("more than 200ms"), "{err}");
    // It printed what it read before it was cut off, in order, no gap.
    let got = indices(&out, "p");
    assert_eq!(got, (0..got.len() as u64).collect::<Vec<_>>());
    let (status, out, err) = finish(reader, HANG_GUARD, "live sub");
    assert!(status.success(), "{err}");
    assert_eq!(indices(&out, "p"), (0..500).collect::<Vec<_>>());
}

#[test]
fn the_mode_is_fixed_at_creation() {
    let b = TestObject::new("lossless-mode");
    ok(&["pub", &b.name, "--count", "1"]);
    fails(
        &["pub", &b.name, "--lossless", "--count", "1"],
        &["cannot use", "as a lossless", "it was created lossy"],
    );
    let st = json(&["stat", &b.name, "--json"]);
    assert_eq!(st["lossless"], false);
    assert_eq!(st["slow_subscriber"], serde_json::Value::Null);
    let c = TestObject::new("lossless-mode2");
    ok(&["pub", &c.name, "--lossless", "--count", "1"]);
    fails(
        &[
            "sub",
            &c.name,
            "--lossless",
            "--evict-after",
            "1s",
            "--count",
            "1",
        ],
        &[
            "as a lossless (evicting slow subscribers after 1s)",
            "created lossless (waiting",
        ],
    );
    // --evict-after alone is a usage error.
    let out = shmkit(&["sub", &c.name, "--evict-after", "1s"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Thirty-two lossless subscriber processes on two cores, most of them
/// asleep at any moment: the writer, gated by whichever is slowest, still
/// gets every message to every one of them, in order.
#[test]
fn thirty_two_lossless_subscribers_all_progress() {
    const SUBSCRIBERS: usize = 32;
    const COUNT: u64 = 5_000;
    let b = TestObject::new("lossless-32");
    let count = COUNT.to_string();
    let params = ["--lossless", "--capacity", "64", "--max-msg", "32"];
    let subs: Vec<Running> = (0..SUBSCRIBERS)
        .map(|_| {
            let mut a = args("sub", &b.name, &["--count", &count]);
            a.extend(params);
            spawn(&a)
        })
        .collect();
    stat_until(&b.name, "32 subscribers", |st| {
        subscriber_count(st) == SUBSCRIBERS
    });
    let mut a = args("pub", &b.name, &["--count", &count, "--tag", "p"]);
    a.extend(params);
    let (status, _, err) = finish(spawn(&a), HANG_GUARD, "pub");
    assert!(status.success(), "{err}");
    for (i, s) in subs.into_iter().enumerate() {
        let (status, out, err) = finish(s, HANG_GUARD, "sub");
        assert!(status.success(), "subscriber {i}: {err}");
        assert_eq!(err, "", "subscriber {i} reported a lag");
        assert_eq!(
            indices(&out, "p"),
            (0..COUNT).collect::<Vec<_>>(),
            "subscriber {i}"
        );
    }
}
