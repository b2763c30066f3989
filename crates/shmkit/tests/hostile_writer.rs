//! A hostile writer (issue 15, Deliver 2): a second process overwrites the
//! header and table words of a live channel (shared and SPSC), broadcast
//! or board with garbage while a legitimate writer and reader work on it.
//! Every call must end in data or a clean error: no panic, no hang (every
//! call is bounded and the whole run must finish), no message nobody sent.
//!
//! The attacker leaves slot state words, lengths and payloads alone: with
//! those, a writer with write access can forge any message it likes, and
//! no library can tell; what is tested is that the library invents none
//! from the words that steer it.

mod fuzz_harness;

use std::os::unix::fs::FileExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use fuzz_harness::*;
use shmkit::board::{Board, BoardOptions};
use shmkit::broadcast::{Broadcast, BroadcastOptions, Received};
use shmkit::channel::Channel;

/// How long the attack lasts.
const ATTACK: Duration = Duration::from_millis(1500);
/// The bound of every call the legitimate pair makes.
const CALL: Duration = Duration::from_millis(50);

/// The attacker, when this binary is started as one: overwrites random
/// header words of the object for ATTACK, one every 100 µs or so.
#[test]
fn attacker_role() {
    let Ok(path) = std::env::var("SHMKIT_ATTACK_PATH") else {
        return;
    };
    let header: usize = std::env::var("SHMKIT_ATTACK_HEADER")
        .unwrap()
        .parse()
        .unwrap();
    let mut rng = Rng(std::env::var("SHMKIT_ATTACK_SEED")
        .unwrap()
        .parse()
        .unwrap());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let start = Instant::now();
    let mut writes = 0u64;
    while start.elapsed() < ATTACK {
        let off = rng.below((header / 8) as u64) * 8;
        let mut was = [0u8; 8];
        file.read_exact_at(&mut was, off).unwrap();
        let word = hostile_word(u64::from_ne_bytes(was), rng.next(), rng.next());
        file.write_all_at(&word.to_ne_bytes(), off).unwrap();
        writes += 1;
        if writes % 8 == 0 {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    println!("attacker wrote {writes} words");
}

fn start_attacker(obj: &Planted, kind: Kind, seed: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "attacker_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SHMKIT_ATTACK_PATH", obj.path())
        .env("SHMKIT_ATTACK_HEADER", header_end(kind).to_string())
        .env("SHMKIT_ATTACK_SEED", seed.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// What one side of the legitimate pair saw.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    errors: u64,
    received: Vec<Vec<u8>>,
}

impl Tally {
    fn note<T>(&mut self, r: shmkit::Result<T>) -> Option<T> {
        match r {
            Ok(v) => {
                self.ok += 1;
                Some(v)
            }
            Err(e) => {
                self.errors += 1;
                std::hint::black_box(e.to_string());
                None
            }
        }
    }
}

/// Waits for a side's thread and returns what it saw.
type Join = Box<dyn FnOnce() -> Tally>;

/// Runs `side` in a thread until `stop`; fails the test if it does not
/// come back within 20 s of being asked to stop (a hang).
fn side(
    name: &'static str,
    stop: &Arc<AtomicBool>,
    mut step: impl FnMut(&mut Tally) + Send + 'static,
) -> impl FnOnce() -> Tally {
    let (done, result) = mpsc::channel();
    let stop = stop.clone();
    std::thread::spawn(move || {
        let mut tally = Tally::default();
        while !stop.load(Ordering::Relaxed) {
            step(&mut tally);
        }
        let _ = done.send(tally);
    });
    move || {
        result
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the {name} hung under attack"))
    }
}

/// Makes the object, fills every slot once, then runs a writer and a
/// reader under attack; returns (writer, reader) tallies.
fn under_attack(kind: Kind, seed: u64) -> (Tally, Tally) {
    let obj = Planted::name(kind);
    let name = obj.name.as_str();
    let stop = Arc::new(AtomicBool::new(false));
    let (writer, reader): (Join, Join) = match kind {
        Kind::Channel | Kind::SpscChannel | Kind::StreamChannel => {
            let ch = Channel::create(name, &channel_options(kind)).unwrap();
            let mut tx = ch.sender().unwrap();
            let mut rx = ch.receiver().unwrap();
            for i in 0..4 {
                tx.send(&known_message("fz", i)).unwrap();
                rx.recv().unwrap();
            }
            let mut i = 0;
            let w = side("sender", &stop, move |t| {
                i += 1;
                t.note(tx.send_timeout(&known_message("ex", i), CALL));
            });
            let r = side("receiver", &stop, move |t| {
                if let Some(m) = t.note(rx.recv_timeout(CALL)) {
                    t.received.push(m);
                }
            });
            (Box::new(w), Box::new(r))
        }
        Kind::Broadcast => {
            let b = Broadcast::create(name, BroadcastOptions::new().capacity(4).max_message(16))
                .unwrap();
            let mut publisher = b.publisher().unwrap();
            let mut sub = b.subscribe().unwrap();
            for i in 0..4 {
                publisher.send(&known_message("fz", i)).unwrap();
            }
            let mut i = 0;
            let w = side("publisher", &stop, move |t| {
                i += 1;
                t.note(publisher.send(&known_message("ex", i)));
                std::thread::sleep(Duration::from_micros(50));
            });
            let r = side("subscriber", &stop, move |t| {
                if let Some(Received::Message { value, .. }) = t.note(sub.recv_timeout(CALL)) {
                    t.received.push(value);
                }
            });
            (Box::new(w), Box::new(r))
        }
        Kind::Board => {
            let b = Board::create(name, BoardOptions::new().max_size(32)).unwrap();
            let mut writer = b.writer().unwrap();
            writer.write(&known_message("fz", 0)).unwrap();
            writer.write(&known_message("fz", 1)).unwrap();
            let mut i = 0;
            let w = side("board writer", &stop, move |t| {
                i += 1;
                t.note(writer.write(&known_message("ex", i)));
                std::thread::sleep(Duration::from_micros(50));
            });
            let mut since = 0;
            let r = side("board reader", &stop, move |t| {
                if let Some((value, version)) = t.note(b.wait_for_change(since, Some(CALL))) {
                    since = version;
                    t.received.push(value);
                }
            });
            (Box::new(w), Box::new(r))
        }
    };
    let mut attacker = start_attacker(&obj, kind, seed);
    let status = attacker.wait().unwrap();
    assert!(status.success(), "the attacker failed: {status}");
    stop.store(true, Ordering::Relaxed);
    let (w, r) = (writer(), reader());
    drop(obj);
    (w, r)
}

#[test]
fn a_live_object_under_attack_gives_data_or_clean_errors() {
    let seed = std::env::var("SHMKIT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x0a77_ac4e);
    let mut report = Vec::new();
    for kind in KINDS {
        let (w, r) = under_attack(kind, seed);
        if let Some(m) = r.received.iter().find(|m| !is_known(m)) {
            panic!(
                "{kind:?} under attack (seed {seed:#x}): a message nobody sent came back: {:?}",
                String::from_utf8_lossy(m)
            );
        }
        report.push(format!(
            "{kind:?}: writer {} ok / {} errors, reader {} ok / {} errors",
            w.ok, w.errors, r.ok, r.errors
        ));
    }
    eprintln!("under attack (seed {seed:#x}): {}", report.join("; "));
}
