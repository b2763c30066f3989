//! Boards and broadcasts through the `shmkit` binary: set/get/watch, one
//! writer at a time, sixteen subscriber processes, a stopped subscriber's
//! exact lag, killed processes, and what `stat` shows.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// A child killed (and reaped) when dropped, if it still runs.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn board_create_set_get_and_stat() {
    let b = TestObject::new("board-cli");
    ok(&["board", "create", &b.name, "--size", "64"]);
    fails(
        &["board", "create", &b.name, "--size", "64"],
        &[&b.name, "File exists"],
    );
    // Never written: version 0, an empty value.
    assert_eq!(ok(&["board", "get", &b.name, "--with-version"]), b"0\t\n");
    ok(&["board", "set", &b.name, "hello"]);
    assert_eq!(ok(&["board", "get", &b.name]), b"hello\n");
    let out = shmkit_stdin(&["board", "set", &b.name], b"from stdin\n");
    assert!(out.status.success());
    assert_eq!(
        ok(&["board", "get", &b.name, "--with-version"]),
        b"2\tfrom stdin\n"
    );
    let long = "x".repeat(65);
    fails(
        &["board", "set", &b.name, &long],
        &["a value of 65 bytes exceeds the board's maximum of 64"],
    );
    let st = json(&["stat", &b.name, "--json"]);
    assert_eq!(st["kind"], "posix", "the POSIX fields stay: {st}");
    assert_eq!(st["object"], "board");
    assert_eq!(st["version"], 2);
    assert_eq!(st["writer_pid"], serde_json::Value::Null);
    assert_eq!(st["writer_alive"], false);
    assert_eq!(st["max_size"], 64);
    let human = String::from_utf8(ok(&["stat", &b.name])).unwrap();
    assert!(human.contains("object:    board"), "{human}");
    assert!(human.contains("version:   2"), "{human}");
    fails(
        &["board", "get", "/shmkit-test-no-such-board"],
        &["No such file or directory"],
    );
    let plain = TestObject::new("not-a-board");
    ok(&["create", &plain.name, "--size", "4K"]);
    fails(&["board", "get", &plain.name], &[&plain.name]);
    assert!(json(&["stat", &plain.name, "--json"])
        .get("object")
        .is_none());
}

#[test]
fn board_get_watch_prints_each_new_version() {
    let b = TestObject::new("board-watch");
    ok(&["board", "create", &b.name, "--size", "32"]);
    ok(&["board", "set", &b.name, "one"]);
    let mut watcher = Guard(
        shmkit_cmd()
            .args([
                "board",
                "get",
                &b.name,
                "--watch",
                "--count",
                "3",
                "--with-version",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Lines as they come, each waited for with a timeout.
    let (tx, rx) = mpsc::channel();
    let out = BufReader::new(watcher.0.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("a line from the watcher")
    };
    assert_eq!(next(), "1\tone");
    ok(&["board", "set", &b.name, "two"]);
    assert_eq!(next(), "2\ttwo");
    ok(&["board", "set", &b.name, "three"]);
    assert_eq!(next(), "3\tthree");
    let deadline = Instant::now() + Duration::from_secs(30);
    while watcher.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "watcher did not stop after 3 values"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(watcher.0.wait().unwrap().success());
}

/// `board set ARGS` reading a standard input that never ends: it holds
/// the writer role until killed. Returns it and its pid.
fn hold_writer(args: &[&str]) -> (Guard, u32) {
    let mut holder = Guard(
        shmkit_cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = holder.0.id();
    holder
        .0
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"never fin")
        .unwrap();
    (holder, pid)
}

#[test]
fn one_board_writer_at_a_time_and_a_killed_one_is_taken_over() {
    let b = TestObject::new("board-writer");
    ok(&["board", "create", &b.name, "--size", "32"]);
    ok(&["board", "set", &b.name, "before"]);
    let (mut holder, pid) = hold_writer(&["board", "set", &b.name]);
    let st = stat_until(&b.name, "the writer", |st| st["writer_pid"] == pid);
    assert_eq!(st["writer_alive"], true);
    fails(
        &["board", "set", &b.name, "second"],
        &[&format!("board has a live writer pid {pid}")],
    );
    holder.0.kill().unwrap();
    holder.0.wait().unwrap();
    let st = json(&["stat", &b.name, "--json"]);
    assert_eq!(st["writer_pid"], pid);
    assert_eq!(st["writer_alive"], false);
    assert_eq!(ok(&["board", "get", &b.name]), b"before\n");
    ok(&["board", "set", &b.name, "after"]);
    assert_eq!(
        ok(&["board", "get", &b.name, "--with-version"]),
        b"2\tafter\n"
    );
    assert_eq!(
        json(&["stat", &b.name, "--json"])["writer_pid"],
        serde_json::Value::Null
    );
}

#[test]
fn sixteen_subscribers_receive_every_message_in_order() {
    const SUBSCRIBERS: usize = 16;
    const COUNT: u64 = 50_000;
    let b = TestObject::new("bcast-16");
    let params = ["--capacity", "65536", "--max-msg", "32"];
    let count = COUNT.to_string();
    let subs: Vec<Running> = (0..SUBSCRIBERS)
        .map(|_| {
            let mut args = vec!["sub", &b.name, "--create", "--count", &count];
            args.extend(params);
            spawn(&args)
        })
        .collect();
    let st = stat_until(&b.name, "16 subscribers", |st| {
        subscriber_count(st) == SUBSCRIBERS
    });
    assert_eq!(st["capacity"], 65536);
    assert!(subscribers(&st)
        .iter()
        .all(|s| s["alive"] == true && s["lag"] == 0));
    let mut args = vec!["pub", &b.name, "--count", &count, "--tag", "p"];
    args.extend(params);
    ok(&args);
    for (i, s) in subs.into_iter().enumerate() {
        let (status, out, err) = finish(s, Duration::from_secs(120), "sub");
        assert!(status.success(), "subscriber {i}: {err}");
        let got = indices(&out, "p");
        assert_eq!(reported_lag(&err), 0, "subscriber {i} lagged");
        assert_eq!(got.len() as u64, COUNT, "subscriber {i}");
        assert!(
            got.iter().enumerate().all(|(k, &v)| v == k as u64),
            "subscriber {i}: not every message in order"
        );
    }
    let st = json(&["stat", &b.name, "--json"]);
    assert_eq!(st["version"], COUNT);
    assert!(
        subscribers(&st).is_empty(),
        "subscribers left the table: {st}"
    );
}

#[test]
fn a_stopped_subscriber_learns_exactly_how_many_it_missed() {
    const COUNT: u64 = 100;
    let b = TestObject::new("bcast-lag");
    let params = ["--capacity", "4", "--max-msg", "32"];
    let count = COUNT.to_string();
    let mut args = vec!["sub", &b.name, "--create", "--count", &count];
    args.extend(params);
    let stopped = spawn(&args);
    let running = spawn(&args);
    stat_until(&b.name, "2 subscribers", |st| subscriber_count(st) == 2);
    signal(stopped.id(), "-STOP");
    let mut args = vec!["pub", &b.name, "--count", &count, "--tag", "p"];
    args.extend(params);
    ok(&args);
    // While stopped it has read nothing: it is the whole stream behind.
    let st = json(&["stat", &b.name, "--json"]);
    let me = subscribers(&st)
        .iter()
        .find(|s| s["pid"] == stopped.id())
        .unwrap();
    assert_eq!(me["alive"], true);
    assert_eq!(me["cursor"], 0);
    assert_eq!(me["lag"], COUNT);
    signal(stopped.id(), "-CONT");
    let (status, out, err) = finish(stopped, Duration::from_secs(60), "stopped sub");
    assert!(status.success(), "{err}");
    // It resumes half a ring (2 messages) behind the head: exactly the
    // newest 2, and exactly the rest missed.
    assert_eq!(indices(&out, "p"), vec![98, 99]);
    assert_eq!(err, "lagged: missed 98 messages\n");
    // The other one may or may not have kept up; its accounts add up.
    let (status, out, err) = finish(running, Duration::from_secs(60), "running sub");
    assert!(status.success(), "{err}");
    let got = indices(&out, "p");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert_eq!(got.last(), Some(&(COUNT - 1)));
    assert_eq!(got.len() as u64 + reported_lag(&err), COUNT);
}

#[test]
fn killed_subscribers_show_dead_and_are_reaped_by_the_next() {
    let b = TestObject::new("bcast-reap");
    // `pub` reading a standard input kept open is a live writer, so the
    // subscribers wait rather than find the writer gone.
    let mut publisher = Guard(
        shmkit_cmd()
            .args(["pub", &b.name])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let writer = publisher.0.id();
    stat_until(&b.name, "the writer", |st| st["writer_pid"] == writer);
    let mut victim = Guard(
        shmkit_cmd()
            .args(["sub", &b.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = victim.0.id();
    stat_until(&b.name, "the victim", |st| {
        subscribers(st).iter().any(|s| s["pid"] == pid)
    });
    victim.0.kill().unwrap();
    victim.0.wait().unwrap();
    let st = json(&["stat", &b.name, "--json"]);
    let dead = subscribers(&st).iter().find(|s| s["pid"] == pid).unwrap();
    assert_eq!(dead["alive"], false, "{st}");
    let human = String::from_utf8(ok(&["stat", &b.name])).unwrap();
    assert!(
        human.contains(&format!("subscriber: {pid} (dead")),
        "{human}"
    );
    // The next subscriber to join reaps it, and hears the next message.
    let next = spawn(&["sub", &b.name, "--count", "1"]);
    let st = stat_until(&b.name, "the next subscriber", |st| {
        subscribers(st).iter().any(|s| s["pid"] == next.id())
    });
    assert!(subscribers(&st).iter().all(|s| s["pid"] != pid), "{st}");
    let mut stdin = publisher.0.stdin.take().unwrap();
    stdin.write_all(b"t 0\n").unwrap();
    drop(stdin);
    let (status, out, err) = finish(next, Duration::from_secs(30), "sub");
    assert!(status.success(), "{err}");
    assert_eq!(out, "t 0\n");
    assert!(publisher.0.wait().unwrap().success());
}

#[test]
fn a_killed_publisher_is_taken_over_and_subscribers_see_no_torn_line() {
    let b = TestObject::new("bcast-pub-kill");
    let params = ["--capacity", "1024", "--max-msg", "32"];
    let mut args = vec!["sub", &b.name, "--create"];
    args.extend(params);
    let sub = spawn(&args);
    stat_until(&b.name, "the subscriber", |st| subscriber_count(st) == 1);
    let mut args = vec!["pub", &b.name, "--count", "100000000", "--tag", "old"];
    args.extend(params);
    let mut publisher = spawn(&args);
    let st = stat_until(&b.name, "messages", |st| {
        st["version"].as_u64() > Some(1000)
    });
    assert_eq!(st["writer_pid"], publisher.id());
    publisher.child.kill().unwrap();
    let (_, _, _) = finish(publisher, Duration::from_secs(30), "killed pub");
    let st = json(&["stat", &b.name, "--json"]);
    assert_eq!(st["writer_alive"], false);
    // The subscriber drains what was published and stops: the writer is gone.
    let (status, out, err) = finish(sub, Duration::from_secs(60), "sub");
    assert!(status.success(), "{err}");
    let lag = reported_lag(&err);
    let got = indices(&out, "old");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert_eq!(
        got.len() as u64 + lag,
        st["version"].as_u64().unwrap(),
        "received + missed == published"
    );
    // A new writer takes over where the old one stopped.
    let mut args = vec!["pub", &b.name, "--count", "3", "--tag", "new"];
    args.extend(params);
    ok(&args);
    let st = json(&["stat", &b.name, "--json"]);
    assert_eq!(st["version"].as_u64(), Some(got.len() as u64 + lag + 3));
}

#[test]
fn pub_and_sub_lines_from_standard_input() {
    let b = TestObject::new("bcast-lines");
    let out = shmkit_stdin(&["pub", &b.name], b"first line\n\nthird\nno newline");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Joined after the writer left: it reads what the ring holds, then stops.
    assert_eq!(
        ok(&["sub", &b.name, "--from-oldest"]),
        b"first line\n\nthird\nno newline\n"
    );
    let long = "x".repeat(1025);
    let out = shmkit_stdin(&["pub", &b.name], format!("{long}\n").as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("a message of 1025 bytes exceeds the broadcast's maximum of 1024"));
    fails(
        &["sub", &b.name, "--count", "5"],
        &["the writer left after 0 of 5 messages"],
    );
}

// ---- Keyed boards ------------------------------------------------------------

#[test]
fn keyed_board_set_get_snapshot_ls_and_json() {
    let b = TestObject::new("keyed");
    ok(&[
        "board",
        "create",
        &b.name,
        "--key",
        "pose=24",
        "--key",
        "status=100",
    ]);
    fails(
        &["board", "create", &b.name, "--key", "x=1"],
        &["File exists"],
    );
    let v = json(&["board", "set", &b.name, "pose", "1,2,3", "--json"]);
    assert_eq!(
        (v["key"].as_str(), v["version"].as_u64()),
        (Some("pose"), Some(1))
    );
    let out = shmkit_stdin(&["board", "set", &b.name, "status"], b"all good\n");
    assert!(out.status.success());
    assert_eq!(ok(&["board", "get", &b.name, "pose"]), b"1,2,3\n");
    assert_eq!(
        ok(&["board", "get", &b.name, "status", "--with-version"]),
        b"1\tall good\n"
    );
    // No key: a snapshot of every key, `KEY<TAB>VALUE` lines.
    assert_eq!(
        ok(&["board", "get", &b.name]),
        b"pose\t1,2,3\nstatus\tall good\n"
    );
    let snap = json(&["board", "get", &b.name, "status", "pose", "--json"]);
    let keys = snap["keys"].as_array().unwrap();
    assert_eq!(keys[0]["key"], "status");
    assert_eq!(keys[1]["value"], "1,2,3");
    assert_eq!(keys[1]["version"], 1);
    let ls = String::from_utf8(ok(&["board", "ls", &b.name])).unwrap();
    assert!(ls.starts_with("KEY"), "{ls}");
    assert!(ls.contains("pose    1        5     24"), "{ls}");
    let ls = json(&["board", "ls", &b.name, "--json"]);
    assert_eq!(ls["object"], "keyed-board");
    assert_eq!(ls["keys"][1]["max_size"], 100);
    assert_eq!(ls["keys"][1]["size"], 9);
    assert_eq!(ls["keys"][0]["writer_pid"], serde_json::Value::Null);
    let st = json(&["stat", &b.name, "--json"]);
    assert_eq!(st["object"], "keyed-board");
    assert_eq!(st["keys"].as_array().unwrap().len(), 2);
    // Clear errors.
    fails(
        &["board", "set", &b.name, "nope", "x"],
        &["has no key \"nope\"", "keys: pose, status"],
    );
    fails(
        &["board", "set", &b.name, "pose", &"x".repeat(25)],
        &["exceeds key \"pose\"'s maximum of 24"],
    );
    fails(&["board", "set", &b.name], &["name the key"]);
    fails(&["board", "get", &b.name, "--watch"], &["watches one key"]);
    // A plain board keeps its forms and refuses keys.
    let p = TestObject::new("plain-with-keys");
    ok(&["board", "create", &p.name, "--size", "16"]);
    ok(&["board", "set", &p.name, "hi"]);
    assert_eq!(ok(&["board", "get", &p.name]), b"hi\n");
    fails(&["board", "get", &p.name, "k"], &["without keys"]);
    fails(&["board", "set", &p.name, "k", "v"], &["without keys"]);
    let ls = json(&["board", "ls", &p.name, "--json"]);
    assert_eq!(ls["keys"][0]["key"], serde_json::Value::Null);
    assert_eq!(ls["keys"][0]["size"], 2);
    assert_eq!(json(&["board", "get", &p.name, "--json"])["value"], "hi");
}

#[test]
fn each_key_has_its_own_writer_and_a_killed_one_is_taken_over() {
    let b = TestObject::new("keyed-writer");
    ok(&[
        "board",
        "create",
        &b.name,
        "--key",
        "pose=24",
        "--key",
        "status=32",
    ]);
    ok(&["board", "set", &b.name, "pose", "before"]);
    let (mut holder, pid) = hold_writer(&["board", "set", &b.name, "pose"]);
    stat_until(&b.name, "the pose writer", |st| {
        st["keys"][0]["writer_pid"] == pid
    });
    fails(
        &["board", "set", &b.name, "pose", "second"],
        &[&format!(
            "key \"pose\" of board has a live writer pid {pid}"
        )],
    );
    // Another key is free meanwhile.
    ok(&["board", "set", &b.name, "status", "fine"]);
    holder.0.kill().unwrap();
    holder.0.wait().unwrap();
    let ls = json(&["board", "ls", &b.name, "--json"]);
    assert_eq!(ls["keys"][0]["writer_alive"], false);
    assert_eq!(ok(&["board", "get", &b.name, "pose"]), b"before\n");
    ok(&["board", "set", &b.name, "pose", "after"]);
    assert_eq!(
        ok(&["board", "get", &b.name, "pose", "--with-version"]),
        b"2\tafter\n"
    );
}

#[test]
fn watching_one_key_prints_only_its_versions() {
    let b = TestObject::new("keyed-watch");
    ok(&[
        "board",
        "create",
        &b.name,
        "--key",
        "pose=24",
        "--key",
        "status=32",
    ]);
    let watcher = spawn(&[
        "board", "get", &b.name, "status", "--watch", "--count", "2", "--json",
    ]);
    // The watcher has printed version 0 once it registered; give it time.
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..6 {
        ok(&["board", "set", &b.name, "pose", &i.to_string()]);
    }
    ok(&["board", "set", &b.name, "status", "changed"]);
    let (status, out, err) = finish(watcher, Duration::from_secs(60), "watcher");
    assert!(status.success(), "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        (lines[0]["version"].as_u64(), lines[1]["version"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(lines[1]["value"], "changed");
}
