//! `inventory::stale` and `remove_stale` against real processes: a process
//! that maps an object between the scan and the removal keeps it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shmkit::inventory::{self, Removal, StaleKind, StaleOptions, StaleTarget};
use shmkit::posix::{OpenOptions, PosixObject};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique object name, removed on drop even if the test fails.
struct Name(String);

impl Name {
    fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Name(format!("/shmkit-test-{}-{n}-{tag}", std::process::id()))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = shmkit::posix::unlink(&self.0);
    }
}

/// Run as a child (`SHMKIT_CHILD=map`): maps the object, says "ready",
/// waits to be killed.
#[test]
fn child_role() {
    let Ok(name) = std::env::var("SHMKIT_STALE_MAP") else {
        return;
    };
    let obj = PosixObject::open_read_only(&name).unwrap();
    let _map = obj.map_read_only().unwrap();
    drop(obj); // only the mapping keeps it in use
    println!("ready");
    std::thread::sleep(Duration::from_secs(60));
}

struct Mapper(Child);

impl Mapper {
    fn start(name: &str) -> Mapper {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
            .env("SHMKIT_STALE_MAP", name)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("ready") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "mapper exited early");
        }
        Mapper(child)
    }
}

impl Drop for Mapper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn candidate(name: &Name, report: &inventory::StaleReport) -> Option<inventory::StaleObject> {
    report
        .objects
        .iter()
        .find(|o| matches!(&o.target, StaleTarget::Posix { name: n, .. } if n.as_str() == name.0))
        .cloned()
}

#[test]
fn a_process_that_maps_the_object_between_scan_and_removal_keeps_it() {
    let name = Name::new("race");
    drop(
        OpenOptions::new()
            .create_new(true)
            .size(4096)
            .open(&name.0)
            .unwrap(),
    );
    // Not shmkit's: stale only by age.
    let mut options = StaleOptions::new();
    options.sysv(false);
    let report = inventory::stale(&options).unwrap();
    assert!(
        candidate(&name, &report).is_none(),
        "foreign objects need --older-than"
    );
    options.older_than(Some(Duration::ZERO));
    std::thread::sleep(Duration::from_millis(20));
    let report = inventory::stale(&options).unwrap();
    let found = candidate(&name, &report).expect("unused and old: stale");
    assert_eq!(found.kind, StaleKind::Stale, "{}", found.reason);

    // Between the scan and the removal, a process maps it.
    let mapper = Mapper::start(&name.0);
    let outcome = inventory::remove_stale(std::slice::from_ref(&found));
    match &outcome[..] {
        [Removal::Kept(why)] => assert!(
            why.contains(&mapper.0.id().to_string()),
            "the reason names the mapper: {why}"
        ),
        other => panic!("a mapped object must be kept: {other:?}"),
    }
    // Kept under its own name, openable as before.
    PosixObject::open_read_only(&name.0).expect("the name was given back");
    // A fresh scan does not count it while it is mapped.
    assert!(candidate(&name, &inventory::stale(&options).unwrap()).is_none());

    drop(mapper);
    let report = inventory::stale(&options).unwrap();
    let found = candidate(&name, &report).expect("stale again once unmapped");
    let outcome = inventory::remove_stale(&[found]);
    assert!(matches!(outcome[..], [Removal::Removed]), "{outcome:?}");
    assert!(PosixObject::open_read_only(&name.0).is_err(), "removed");
}

#[test]
fn an_object_replaced_after_the_scan_is_kept() {
    let name = Name::new("replaced");
    drop(
        OpenOptions::new()
            .create_new(true)
            .size(64)
            .open(&name.0)
            .unwrap(),
    );
    let mut options = StaleOptions::new();
    options.sysv(false).older_than(Some(Duration::ZERO));
    std::thread::sleep(Duration::from_millis(20));
    let found = candidate(&name, &inventory::stale(&options).unwrap()).unwrap();
    shmkit::posix::unlink(&name.0).unwrap();
    drop(
        OpenOptions::new()
            .create_new(true)
            .size(64)
            .open(&name.0)
            .unwrap(),
    );
    let outcome = inventory::remove_stale(&[found]);
    assert!(
        matches!(&outcome[..], [Removal::Kept(why)] if why.contains("replaced")),
        "{outcome:?}"
    );
    PosixObject::open_read_only(&name.0).expect("the new object stays");
}
