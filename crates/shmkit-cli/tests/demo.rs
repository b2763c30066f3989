//! `shmkit demo`: every step printed as a command to copy, with its real
//! output; an object, a channel with a readable rate and `chan stat`, a
//! board, a broadcast, a kill -9 recovery; nothing left behind.

mod common;

use common::*;

#[test]
fn the_demo_shows_commands_real_output_and_leaves_nothing() {
    let run = spawn(&["demo", "--messages", "20000"]);
    let pid = run.id();
    let (status, out, err) = finish(run, std::time::Duration::from_secs(120), "demo");
    assert!(status.success(), "demo failed: {err}\n{out}");
    for piece in [
        "$ shmkit create /demo-",
        "$ shmkit write /demo-",
        "    Hello, shared memory!",
        "$ shmkit ls --posix --name /demo-",
        "NAME/KEY",
        "$ shmkit chan stat /demo-",
        "    received:  20000",
        "$ shmkit board get",
        "\tx=1.5 y=2.0",
        "$ shmkit pub",
        "      tick 2",
        "$ kill -9 ",
        "1 dead with 0 messages",
        "    after 2",
        "freed 1 dead endpoint",
    ] {
        assert!(out.contains(piece), "demo output lacks {piece:?}:\n{out}");
    }
    // The rate reads as people write it: `2.69 M messages/s`.
    let rate_line = out
        .lines()
        .find(|l| l.contains("messages/s"))
        .expect("a rate line");
    let number = rate_line
        .split(": ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_default();
    assert!(number.parse::<f64>().is_ok(), "{rate_line}");
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!("demo-{pid}")))
        .collect();
    assert!(left.is_empty(), "the demo left {left:?}");
}
