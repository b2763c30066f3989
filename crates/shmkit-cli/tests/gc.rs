//! `shmkit gc`: killed creators, live mappers kept, foreign objects only by
//! age, System V segments, filters and exit statuses. (The scan/remove race
//! is tested in the library: crates/shmkit/tests/stale.rs.)

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn gc_json(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut all = vec!["gc", "--json"];
    all.extend_from_slice(args);
    let out = shmkit(&all);
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(2)),
        "shmkit {all:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (code, serde_json::from_slice(&out.stdout).unwrap())
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until some process maps `name`.
fn wait_mapped(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = shmkit(&["stat", "--json", name]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if !v["mapped_by"].as_array().unwrap().is_empty() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "nobody mapped {name}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_channel_whose_creator_was_killed_is_stale_and_removed() {
    let obj = TestObject::new("killed");
    let mut consumer = spawn(&["consume", &obj.name, "--create"]);
    let pid = consumer.id();
    wait_mapped(&obj.name);
    consumer.kill();
    let _ = finish(consumer, Duration::from_secs(20), "killed consumer");

    let (code, v) = gc_json(&["--name", obj.bare()]);
    assert_eq!(code, Some(2), "stale found: {v}");
    assert_eq!(names(&v), vec![obj.name.clone()], "{v}");
    let o = &v["objects"][0];
    assert_eq!(o["object"], "channel");
    assert_eq!(o["status"], "stale");
    assert_eq!(o["creator"], pid);
    let reason = o["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("creator {pid} is gone")),
        "{reason}"
    );
    assert!(obj.exists(), "a dry run removes nothing");

    let text = String::from_utf8(shmkit(&["gc", "--name", obj.bare()]).stdout).unwrap();
    assert!(text.contains("dry run"), "{text}");
    let (code, v) = gc_json(&["--remove", "--name", obj.bare()]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["removed"], 1, "{v}");
    assert_eq!(v["objects"][0]["result"], "removed");
    assert!(!obj.exists());
    let (code, v) = gc_json(&["--name", obj.bare()]);
    assert_eq!((code, names(&v).len()), (Some(0), 0), "{v}");
}

#[test]
fn an_object_a_live_process_maps_is_never_stale() {
    let obj = TestObject::new("live");
    let consumer = spawn(&["consume", &obj.name, "--create"]);
    wait_mapped(&obj.name);
    // Not even by age.
    let (code, v) = gc_json(&["-f", "--older-than", "0s", "--name", obj.bare()]);
    assert_eq!(code, Some(0), "{v}");
    assert!(names(&v).is_empty(), "{v}");
    assert!(obj.exists());
    drop(consumer);
}

#[test]
fn a_foreign_object_is_stale_only_by_age_and_filters_apply() {
    let obj = TestObject::new("plain");
    ok(&["create", &obj.name, "--size", "4K"]);
    let (_, v) = gc_json(&["--name", obj.bare()]);
    assert!(names(&v).is_empty(), "nothing foreign by default: {v}");
    let (_, v) = gc_json(&["--name", obj.bare(), "--older-than", "1h"]);
    assert!(names(&v).is_empty(), "too young: {v}");
    std::thread::sleep(Duration::from_millis(1100));
    let (code, v) = gc_json(&["--name", obj.bare(), "--older-than", "1s"]);
    assert_eq!((code, names(&v)), (Some(2), vec![obj.name.clone()]), "{v}");
    assert_eq!(v["objects"][0]["object"], "-");
    assert!(v["objects"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("over 1s"));
    // Filters: a glob with a slash, kind, owner.
    let pattern = format!("/{}*", &obj.bare()[..obj.bare().len() - 2]);
    let (_, v) = gc_json(&["--name", &pattern, "--older-than", "1s", "--kind", "plain"]);
    assert_eq!(names(&v), vec![obj.name.clone()], "{v}");
    for kind in ["channel", "sysv", "board"] {
        let (_, v) = gc_json(&["--name", obj.bare(), "--older-than", "1s", "--kind", kind]);
        assert!(names(&v).is_empty(), "--kind {kind}: {v}");
    }
    let me = shmkit::inventory::user_name(rustix_uid()).unwrap();
    let (_, v) = gc_json(&["--name", obj.bare(), "--older-than", "1s", "--user", &me]);
    assert_eq!(names(&v).len(), 1, "{v}");
    let (_, v) = gc_json(&["--name", obj.bare(), "--older-than", "1s", "--user", "4242"]);
    assert!(names(&v).is_empty(), "{v}");
    let bad = shmkit(&["gc", "--older-than", "soon"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "a usage error: {err}");
    assert!(
        err.contains("invalid duration") && err.contains("7d"),
        "{err}"
    );
    ok(&["gc", "--name", obj.bare(), "--older-than", "1s", "-f"]);
    assert!(!obj.exists());
}

fn rustix_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(0, |m| std::os::unix::fs::MetadataExt::uid(&m))
}

#[test]
fn a_segment_whose_creator_is_gone_and_nobody_attaches_is_stale() {
    // `shmkit create --sysv` exits at once: its creator is gone.
    let Some((key, id, _guard)) = sysv_segment(0x5d, "4096") else {
        return;
    };
    let (code, v) = gc_json(&["--kind", "sysv", "--name", &key]);
    assert_eq!(code, Some(2), "{v}");
    assert_eq!(names(&v), [format!("id:{id}")], "{v}");
    assert!(v["objects"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("nattch 0; creator"));
    // Attached, it is not stale.
    let seg = shmkit::sysv::Segment::from_id(id).unwrap();
    let region = seg.attach_read_only().unwrap();
    let (_, v) = gc_json(&["--kind", "sysv", "--name", &key]);
    assert!(names(&v).is_empty(), "{v}");
    drop(region);
    let (code, v) = gc_json(&["-f", "--kind", "sysv", "--name", &key]);
    assert_eq!((code, v["removed"].as_u64()), (Some(0), Some(1)), "{v}");
    assert!(shmkit::sysv::Segment::from_id(id).is_err(), "removed");
}

#[test]
fn objects_another_user_cannot_judge_or_remove_are_reported_not_fatal() {
    let is_root = rustix_uid() == 0;
    if !is_root || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipping: needs root and setpriv");
        return;
    }
    let uid = shmkit::inventory::uid_of("shmkit-unpriv").unwrap_or(65534);
    let as_user = |args: &[&str]| as_user(uid, args);
    let prefix = TestObject::new("perm");
    let theirs = TestObject {
        name: format!("{}-theirs", prefix.name),
    };
    let roots = TestObject {
        name: format!("{}-root", prefix.name),
    };
    ok(&["chan", "create", &roots.name]);
    let out = as_user(&["chan", "create", &theirs.name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let glob = format!("{}-*", prefix.bare());
    let out = as_user(&["gc", "--json", "-f", "--name", &glob]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |n: &str| {
        v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} in {v}"))
    };
    assert_eq!(by_name(&theirs.name)["result"], "removed", "{v}");
    let root = by_name(&roots.name);
    assert_eq!(root["status"], "unknown", "{v}");
    assert!(
        root["reason"]
            .as_str()
            .unwrap()
            .contains("permission denied"),
        "{v}"
    );
    assert!(!theirs.exists());
    assert!(roots.exists(), "another user's object is left alone");
}
