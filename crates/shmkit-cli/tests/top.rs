//! `shmkit top`: one sample for scripts (`--once`, `--json`), and the live
//! screen driven under tmux (send-keys, capture-pane).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A producer and a consumer moving messages over `ch` until dropped.
fn busy_channel(ch: &TestObject) -> (Running, Running) {
    ok(&[
        "chan",
        "create",
        &ch.name,
        "--capacity",
        "64",
        "--max-msg",
        "64",
    ]);
    let consumer = spawn(&["consume", &ch.name]);
    let producer = spawn(&["produce", &ch.name, "--count", "1000000000"]);
    (consumer, producer)
}

fn sample(glob: &str) -> serde_json::Value {
    json(&["top", "--json", "--interval", "300ms", "--name", glob])
}

#[test]
fn one_sample_shows_rates_endpoints_and_stale_objects() {
    let busy = TestObject::new("top-busy");
    let idle = TestObject::new("top-stale");
    let (consumer, producer) = busy_channel(&busy);
    ok(&["board", "create", &idle.name, "--size", "64"]);
    let glob = format!("shmkit-test-{}-*-top-*", std::process::id());
    let deadline = Instant::now() + Duration::from_secs(30);
    let v = loop {
        let v = sample(&glob);
        let moving =
            v["objects"].as_array().unwrap().iter().any(|o| {
                o["name"] == busy.name.as_str() && o["in_per_second"].as_f64() > Some(0.0)
            });
        if moving {
            break v;
        }
        assert!(Instant::now() < deadline, "no traffic seen: {v}");
    };
    let objects = v["objects"].as_array().unwrap();
    let b = objects
        .iter()
        .find(|o| o["name"] == busy.name.as_str())
        .unwrap();
    assert_eq!(b["object"], "channel");
    assert_eq!(b["capacity"], 64);
    assert_eq!(b["stale"], false);
    let pids: Vec<(String, u64, bool)> = b["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["role"].as_str().unwrap().to_string(),
                e["pid"].as_u64().unwrap(),
                e["alive"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(
        pids.contains(&("producer".into(), u64::from(producer.id()), true)),
        "{b}"
    );
    assert!(
        pids.contains(&("consumer".into(), u64::from(consumer.id()), true)),
        "{b}"
    );
    let i = objects
        .iter()
        .find(|o| o["name"] == idle.name.as_str())
        .unwrap();
    assert_eq!(
        (i["object"].as_str(), i["stale"].as_bool()),
        (Some("board"), Some(true)),
        "{i}"
    );

    let text = String::from_utf8(ok(&[
        "top",
        "--once",
        "--interval",
        "200ms",
        "--name",
        &glob,
    ]))
    .unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "OBJECT",
            "DEPTH",
            "CAPACITY",
            "IN/S",
            "OUT/S",
            "STATE",
            "ENDPOINTS"
        ]
    );
    let row = text
        .lines()
        .find(|l| l.contains(&idle.name))
        .expect("board row");
    assert!(row.contains("stale"), "{row}");
    drop((consumer, producer));
}

fn tmux(args: &[&str]) -> std::process::Output {
    Command::new("tmux").args(args).output().expect("run tmux")
}

struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = tmux(&["kill-session", "-t", &self.0]);
    }
}

fn screen(session: &str) -> String {
    String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", session]).stdout).into_owned()
}

fn wait_screen(session: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = screen(session);
        if check(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} never shown:\n{s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_live_screen_sorts_shows_detail_and_quits_on_q() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipping: tmux is not installed (.ci/run installs it)");
        return;
    }
    let busy = TestObject::new("tui-busy");
    let (consumer, producer) = busy_channel(&busy);
    let glob = format!("shmkit-test-{}-*-tui-*", std::process::id());
    let session = Session(format!("shmkit-test-{}", std::process::id()));
    let cmd = format!(
        "{} top --interval 200ms --name '{glob}'; echo top-exited-$?; sleep 30",
        env!("CARGO_BIN_EXE_shmkit")
    );
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session.0,
        "-x",
        "150",
        "-y",
        "30",
        &cmd,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = wait_screen(&session.0, "the channel", |s| {
        s.contains(&busy.name) && s.contains("shmkit top")
    });
    assert!(s.contains("sorted by name"), "{s}");
    tmux(&["send-keys", "-t", &session.0, "s"]);
    wait_screen(&session.0, "the next sort", |s| {
        s.contains("sorted by in/s")
    });
    tmux(&["send-keys", "-t", &session.0, "Enter"]);
    let s = wait_screen(&session.0, "the detail", |s| s.contains("┌ detail"));
    assert!(
        s.contains(&format!("pid {}", producer.id())) && s.contains("producer"),
        "{s}"
    );
    tmux(&["send-keys", "-t", &session.0, "q"]); // closes the detail
    wait_screen(&session.0, "the table again", |s| !s.contains("┌ detail"));
    tmux(&["send-keys", "-t", &session.0, "q"]);
    wait_screen(&session.0, "a clean exit", |s| s.contains("top-exited-0"));
    drop((consumer, producer));
}
