//! `shmkit chan peek`: queued messages shown without taking them, on every
//! ring (shared, `--spsc`, `--stream`), as lines, hex or NUL-separated; a
//! peek changes no byte of the channel, racing producers and consumers
//! never make it report damage, and damage is reported, not trusted.

mod common;

use std::time::{Duration, Instant};

use common::*;

const RINGS: [&[&str]; 3] = [&[], &["--spsc"], &["--stream"]];

/// Where the slots start in a channel (after the header and the endpoint
/// table: 768 + 64 entries of 64 bytes).
const SLOTS_START: u64 = 768 + 64 * 64;

/// `chan create NAME --capacity CAPACITY --max-msg MAX FLAGS...`.
fn create_channel(name: &str, capacity: &str, max: &str, flags: &[&str]) {
    let mut args = vec![
        "chan",
        "create",
        name,
        "--capacity",
        capacity,
        "--max-msg",
        max,
    ];
    args.extend(flags);
    ok(&args);
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn peek_shows_messages_and_changes_nothing() {
    for flags in RINGS {
        let ch = TestObject::new("peek-lines");
        create_channel(&ch.name, "8", "64", flags);
        let out = shmkit_stdin(&["produce", &ch.name], b"one\ntwo\n\x01binary\n");
        assert!(out.status.success(), "{flags:?}: produce failed");
        let before = std::fs::read(ch.path()).unwrap();
        let meta = std::fs::metadata(ch.path()).unwrap();
        assert_eq!(
            stdout(&shmkit(&["chan", "peek", &ch.name])),
            "one\ntwo\n[7 bytes] 01 62 69 6e 61 72 79\n",
            "{flags:?}"
        );
        let hex = stdout(&shmkit(&[
            "chan", "peek", &ch.name, "--hex", "--count", "1",
        ]));
        assert_eq!(
            hex, "0: 3 bytes\n00000000  6f 6e 65                                          |one|\n",
            "{flags:?}"
        );
        assert_eq!(
            shmkit(&["chan", "peek", &ch.name, "-0"]).stdout,
            b"one\0two\0\x01binary\0",
            "{flags:?}"
        );
        // Not one byte of the object changed, nor its times.
        assert!(
            std::fs::read(ch.path()).unwrap() == before,
            "{flags:?}: peek wrote into the channel"
        );
        let after = std::fs::metadata(ch.path()).unwrap();
        assert_eq!(after.modified().unwrap(), meta.modified().unwrap());
        let st = json(&["chan", "stat", &ch.name, "--json"]);
        assert_eq!(st["depth"], 3, "{flags:?}: {st}");
        assert_eq!(st["received"], 0, "{flags:?}: {st}");
        // The consumer still gets everything, in order.
        assert_eq!(
            ok(&["consume", &ch.name, "--count", "3"]),
            b"one\ntwo\n\x01binary\n",
            "{flags:?}"
        );
        assert_eq!(
            stdout(&shmkit(&["chan", "peek", &ch.name])),
            "",
            "{flags:?}"
        );
    }
}

/// `--json`: one document with every message's position, length and hex,
/// and its text where it is plain text; the channel is left as it was.
#[test]
fn peek_json_lists_each_message() {
    for flags in RINGS {
        let ch = TestObject::new("peek-json");
        create_channel(&ch.name, "8", "64", flags);
        let out = shmkit_stdin(&["produce", &ch.name], b"one\n\x01b\n");
        assert!(out.status.success(), "{flags:?}: produce failed");
        let before = std::fs::read(ch.path()).unwrap();
        let out = shmkit(&["chan", "peek", &ch.name, "--json"]);
        assert!(
            out.status.success(),
            "{flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["name"], ch.name.as_str(), "{v}");
        assert_eq!(v["depth"], 2, "{v}");
        let m = v["messages"].as_array().unwrap();
        assert_eq!(m.len(), 2, "{v}");
        assert_eq!(
            (&m[0]["position"], &m[0]["len"], &m[0]["hex"], &m[0]["text"]),
            (&0.into(), &3.into(), &"6f6e65".into(), &"one".into()),
            "{flags:?}: {v}"
        );
        // Positions count messages on the slot rings, bytes on a stream.
        assert!(m[1]["position"].as_u64() > m[0]["position"].as_u64(), "{v}");
        assert_eq!(
            (&m[1]["len"], &m[1]["hex"]),
            (&2.into(), &"0162".into()),
            "{flags:?}: {v}"
        );
        assert!(m[1].get("text").is_none(), "{v}");
        assert_eq!(std::fs::read(ch.path()).unwrap(), before, "{flags:?}");
        // The consumer still gets both.
        let got = shmkit(&["consume", &ch.name, "--count", "2"]);
        assert_eq!(got.stdout, b"one\n\x01b\n", "{flags:?}");
    }
}

#[test]
fn peek_count_limits_and_says_how_many_are_queued() {
    let ch = TestObject::new("peek-count");
    ok(&["chan", "create", &ch.name, "--capacity", "64"]);
    ok(&["produce", &ch.name, "--count", "20", "--tag", "m"]);
    let out = shmkit(&["chan", "peek", &ch.name, "--count", "3"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "m 0\nm 1\nm 2\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 of about 20"), "{err:?}");
    let missing = TestObject::new("peek-missing");
    fails(
        &["chan", "peek", &missing.name],
        &[&missing.name, "No such file"],
    );
    assert!(!missing.exists(), "peek created an object");
}

#[test]
fn typed_channel_messages_are_shown_as_length_and_hex() {
    let ch = TestObject::new("peek-typed");
    let mut options = shmkit::channel::ChannelOptions::new();
    options.capacity(4);
    let typed =
        shmkit::channel::TypedChannel::<u64>::create_with_options(&ch.name, &options).unwrap();
    let mut tx = typed.sender().unwrap();
    tx.send(&0x0102_0304_0506_0708).unwrap();
    tx.send(&u64::from_ne_bytes(*b"AAAAAAAA")).unwrap();
    let expected_first: Vec<String> = 0x0102_0304_0506_0708u64
        .to_ne_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        stdout(&shmkit(&["chan", "peek", &ch.name])),
        format!(
            "[8 bytes] {}\n[8 bytes] 41 41 41 41 41 41 41 41\n",
            expected_first.join(" ")
        )
    );
}

#[test]
fn damaged_words_are_reported_not_trusted() {
    let ch = TestObject::new("peek-damage");
    create_channel(&ch.name, "4", "32", &[]);
    ok(&["produce", &ch.name, "--count", "1"]);
    // The first slot's length word: more than the largest message.
    let len_word = (SLOTS_START + 8).to_string();
    let out = shmkit_stdin(
        &["write", &ch.name, "--force", "--offset", &len_word],
        &[0xff; 8],
    );
    assert!(out.status.success());
    fails(
        &["chan", "peek", &ch.name],
        &[&ch.name, "slot 0 says its message has", "bytes"],
    );
    // The first slot's state word: a state the protocol never writes.
    let state_word = SLOTS_START.to_string();
    let out = shmkit_stdin(
        &["write", &ch.name, "--force", "--offset", &state_word],
        &[0xff; 8],
    );
    assert!(out.status.success());
    fails(&["chan", "peek", &ch.name], &[&ch.name, "corrupt"]);
}

#[test]
fn peeking_while_messages_flow_never_reports_damage() {
    for flags in RINGS {
        let ch = TestObject::new("peek-race");
        create_channel(&ch.name, "16", "32", flags);
        let consumer = spawn(&["consume", &ch.name, "--count", "400000"]);
        let producer = spawn(&["produce", &ch.name, "--count", "400000", "--tag", "r"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut peeks = 0;
        let mut seen = 0;
        // Until the consumer is done (at least a few looks).
        loop {
            let out = shmkit(&["chan", "peek", &ch.name, "--count", "16"]);
            assert!(
                out.status.success(),
                "{flags:?}: peek failed while messages flowed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            for line in stdout(&out).lines() {
                assert!(
                    line.strip_prefix("r ")
                        .is_some_and(|n| n.parse::<u64>().is_ok()),
                    "{flags:?}: peek showed {line:?}"
                );
            }
            peeks += 1;
            seen += usize::from(!out.stdout.is_empty());
            let st = json(&["chan", "stat", &ch.name, "--json"]);
            if (st["received"] == 400_000 && peeks >= 3) || Instant::now() > deadline {
                break;
            }
        }
        eprintln!("{flags:?}: {peeks} looks, {seen} of them saw messages");
        let (status, _, err) = finish(producer, Duration::from_secs(60), "produce");
        assert!(status.success(), "{flags:?}: {err}");
        let (status, out, err) = finish(consumer, Duration::from_secs(60), "consume");
        assert!(status.success(), "{flags:?}: {err}");
        assert_eq!(out.lines().count(), 400_000, "{flags:?}");
    }
}
