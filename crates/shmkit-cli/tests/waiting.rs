//! How `consume`, `sub` and `board get --watch` wait, through the `shmkit`
//! binary: a subscriber waits for its first writer, `--follow` waits for
//! the next producer or writer after one left, `--timeout` ends a wait
//! with exit status 124 and a message, and `sub` creates nothing unless
//! asked (`pub` says when it creates).

mod common;

use std::time::Duration;

use common::*;

/// The exit status of a verb whose `--timeout` ran out.
const TIMED_OUT: i32 = 124;

/// Long enough that a loaded machine never ends a test's wait by itself.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// Asserts that `run` is still running (it waits), with its output if not.
fn still_waiting(run: &mut Running, what: &str) {
    std::thread::sleep(Duration::from_millis(300));
    if let Some(status) = run.child.try_wait().unwrap() {
        panic!("{what} should still wait, but exited with {status}");
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn sub_needs_create_and_pub_says_it_creates() {
    let b = TestObject::new("wait-sub-typo");
    fails(
        &["sub", &b.name, "--count", "1"],
        &["no such broadcast", "--create"],
    );
    assert!(!b.exists(), "a missing broadcast was made by `sub`");
    let out = shmkit(&["pub", &b.name, "--count", "1"]);
    assert!(out.status.success(), "pub: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("created broadcast") && err.contains(b.name.as_str()),
        "pub created the broadcast without saying so: {err:?}"
    );
    // The second one finds it and says nothing.
    let out = shmkit(&["pub", &b.name, "--count", "1"]);
    assert!(out.status.success(), "pub: {}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

#[test]
fn sub_waits_for_its_first_writer() {
    let b = TestObject::new("wait-sub-first");
    let mut sub = spawn(&["sub", &b.name, "--create", "--count", "2"]);
    stat_until(&b.name, "the subscriber", |st| subscriber_count(st) == 1);
    still_waiting(&mut sub, "a subscriber without a writer");
    let out = shmkit(&["pub", &b.name, "--count", "2", "--tag", "w"]);
    assert!(out.status.success(), "pub: {}", stderr(&out));
    let (status, out, err) = finish(sub, HANG_GUARD, "sub");
    assert!(status.success(), "sub: {err}");
    assert_eq!(out, "w 0\nw 1\n");
}

#[test]
fn timeouts_end_with_status_124_and_say_why() {
    let b = TestObject::new("wait-sub-timeout");
    let out = shmkit(&[
        "sub",
        &b.name,
        "--create",
        "--count",
        "2",
        "--timeout",
        "300ms",
    ]);
    assert_eq!(out.status.code(), Some(TIMED_OUT), "sub: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("timed out") && err.contains("300ms") && err.contains("0 of 2"),
        "sub: {err:?}"
    );

    let ch = TestObject::new("wait-consume-timeout");
    ok(&["chan", "create", &ch.name]);
    ok(&["produce", &ch.name, "--count", "1", "--tag", "t"]);
    // --follow: the producer has left, which alone would end it.
    let out = shmkit(&[
        "consume",
        &ch.name,
        "--follow",
        "--count",
        "3",
        "--timeout",
        "300ms",
    ]);
    assert_eq!(
        out.status.code(),
        Some(TIMED_OUT),
        "consume: {}",
        stderr(&out)
    );
    // What came is printed before the timeout.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "t 0\n");
    assert!(stderr(&out).contains("1 of 3 received"), "{}", stderr(&out));

    let board = TestObject::new("wait-board-timeout");
    ok(&["board", "create", &board.name, "--size", "16"]);
    ok(&["board", "set", &board.name, "v1"]);
    let out = shmkit(&["board", "get", &board.name, "--watch", "--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(TIMED_OUT), "get: {}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v1\n");
    assert!(stderr(&out).contains("no new version"), "{}", stderr(&out));
    // --timeout belongs to --watch; a bad duration is a usage error.
    assert_eq!(
        shmkit(&["board", "get", &board.name, "--timeout", "1s"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        shmkit(&["consume", &ch.name, "--timeout", "soon"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn a_timeout_does_not_cut_a_stream_that_keeps_coming() {
    // Each message restarts the wait: 6 messages 150 ms apart outlast a
    // 400 ms timeout in all, never between two of them.
    let b = TestObject::new("wait-board-idle");
    ok(&["board", "create", &b.name, "--size", "16"]);
    ok(&["board", "set", &b.name, "v0"]);
    let watch = spawn(&[
        "board",
        "get",
        &b.name,
        "--watch",
        "--count",
        "6",
        "--timeout",
        "5s",
    ]);
    for i in 1..6 {
        std::thread::sleep(Duration::from_millis(150));
        ok(&["board", "set", &b.name, &format!("v{i}")]);
    }
    let (status, out, err) = finish(watch, HANG_GUARD, "board get --watch");
    assert!(status.success(), "{err}");
    assert!(out.starts_with("v0\n") && out.ends_with("v5\n"), "{out:?}");
}

#[test]
fn consume_follow_waits_for_the_next_producer() {
    let ch = TestObject::new("wait-follow-chan");
    ok(&["chan", "create", &ch.name]);
    ok(&["produce", &ch.name, "--count", "2", "--tag", "a"]);
    // The producer has come and gone: without --follow a consumer drains
    // and ends (with a hint), or fails when it wanted more.
    let out = shmkit(&["consume", &ch.name, "--count", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a 0\n");
    fails(
        &["consume", &ch.name, "--count", "2"],
        &["every producer left after 1 of 2", "--follow"],
    );
    // That drained the last message; now a consumer that follows.
    ok(&["produce", &ch.name, "--count", "1", "--tag", "b"]);
    let mut follow = spawn(&["consume", &ch.name, "--follow", "--count", "3"]);
    still_waiting(&mut follow, "a following consumer");
    ok(&["produce", &ch.name, "--count", "1", "--tag", "c"]);
    still_waiting(&mut follow, "a following consumer");
    ok(&["produce", &ch.name, "--count", "1", "--tag", "d"]);
    let (status, out, err) = finish(follow, HANG_GUARD, "consume --follow");
    assert!(status.success(), "{err}");
    assert_eq!(out, "b 0\nc 0\nd 0\n");
}

#[test]
fn sub_follow_waits_for_the_next_writer() {
    let b = TestObject::new("wait-follow-bcast");
    ok(&["pub", &b.name, "--count", "1", "--tag", "old"]);
    // The writer is gone: a plain subscriber ends at once, and says why.
    let out = shmkit(&["sub", &b.name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("--follow"), "{}", stderr(&out));
    let mut follow = spawn(&["sub", &b.name, "--follow", "--count", "2"]);
    stat_until(&b.name, "the subscriber", |st| subscriber_count(st) == 1);
    ok(&["pub", &b.name, "--count", "1", "--tag", "first"]);
    still_waiting(&mut follow, "a following subscriber");
    ok(&["pub", &b.name, "--count", "1", "--tag", "second"]);
    let (status, out, err) = finish(follow, HANG_GUARD, "sub --follow");
    assert!(status.success(), "{err}");
    assert_eq!(out, "first 0\nsecond 0\n");
}
