//! No input from the filesystem or from shared memory may panic the CLI
//! (issue 15, defect 7): file times no calendar format holds, and header
//! words of channels, boards and broadcasts overwritten with garbage, shown
//! by every verb that renders them. Each run must end with status 0 or 1
//! (a clean error), never a panic (101), a signal or a hang.
//!
//! The garbage comes from a seeded generator: a failure prints the seed and
//! the words written, and `SHMKIT_HOSTILE_CASES=N` runs N cases per object
//! kind instead of the quick default (`scripts/fuzz` runs many).

mod common;

use std::fs::{File, FileTimes};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

/// Longer than any of these verbs needs; a hang fails the test.
const LIMIT: Duration = Duration::from_secs(20);

/// Runs `shmkit ARGS` and fails the test unless it ended with 0 or 1 and no
/// panic message. Returns (status, stdout, stderr).
fn clean_run(args: &[&str], context: &str) -> (i32, String, String) {
    let (status, out, err) = finish(spawn(args), LIMIT, &format!("shmkit {args:?} ({context})"));
    assert!(
        status.signal().is_none(),
        "shmkit {args:?} died of signal {:?} ({context}); stderr: {err}",
        status.signal()
    );
    let code = status.code().unwrap();
    assert!(
        (code == 0 || code == 1) && !err.contains("panicked"),
        "shmkit {args:?} exited {code} ({context}); stderr: {err}"
    );
    (code, out, err)
}

fn set_mtime(obj: &TestObject, t: SystemTime) {
    let f = File::options().write(true).open(obj.path()).unwrap();
    f.set_times(FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

/// `touch -d @300000000000` made `ls` and `stat` exit 101 for every user:
/// humantime's RFC 3339 formatter panics past year 9999 (and before 1970).
#[test]
fn times_outside_rfc3339_years_are_shown_not_panicked_on() {
    let late = TestObject::new("mtime-late");
    let early = TestObject::new("mtime-early");
    ok(&["create", &late.name, "--size", "64"]);
    ok(&["create", &early.name, "--size", "64"]);
    set_mtime(&late, UNIX_EPOCH + Duration::from_secs(300_000_000_000));
    set_mtime(&early, UNIX_EPOCH - Duration::from_secs(100_000_000_000));
    let late_text = "+11476-08-15T05:20:00Z";
    let early_text = "-1199-02-15T14:13:20Z";
    for (obj, text) in [(&late, late_text), (&early, early_text)] {
        let (_, out, _) = clean_run(&["stat", &obj.name], "planted mtime");
        assert!(out.contains(text), "stat shows {text}: {out}");
        let (_, out, _) = clean_run(&["stat", &obj.name, "--json"], "planted mtime");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["mtime"], text);
    }
    let (_, out, _) = clean_run(&["ls", "--posix"], "planted mtimes");
    for (obj, text) in [(&late, late_text), (&early, early_text)] {
        let row = out
            .lines()
            .find(|l| l.contains(&obj.name))
            .unwrap_or_else(|| panic!("ls lists {}: {out}", obj.name));
        assert!(row.ends_with(text), "ls row shows {text}: {row}");
    }
    let (_, out, _) = clean_run(&["ls", "--posix", "--json"], "planted mtimes");
    let all: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = all
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == late.name.as_str())
        .unwrap();
    assert_eq!(row["mtime"], late_text);
}

/// `chan stat` exit 101 when the header's `created` word (offset 48) was
/// garbage.
#[test]
fn a_garbage_created_word_is_shown() {
    let ch = TestObject::new("created-word");
    ok(&[
        "chan",
        "create",
        &ch.name,
        "--capacity",
        "4",
        "--max-msg",
        "16",
    ]);
    let f = File::options().write(true).open(ch.path()).unwrap();
    f.write_all_at(&u64::MAX.to_ne_bytes(), 48).unwrap();
    let (code, out, err) = clean_run(&["chan", "stat", &ch.name], "created = u64::MAX");
    assert_eq!(code, 0, "{err}");
    let created = out.lines().find(|l| l.starts_with("created:")).unwrap();
    assert!(created.contains("+"), "a year past 9999, signed: {created}");
    clean_run(&["chan", "stat", &ch.name, "--json"], "created = u64::MAX");
}

/// splitmix64: a few lines of well-known generator, so a seed replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A word an attacker would try: the edges of every width, small
    /// numbers, powers of two, neighbours of the true value, random bits.
    fn hostile(&mut self, was: u64) -> u64 {
        match self.below(10) {
            0 => 0,
            1 => u64::MAX,
            2 => 1 << self.below(64),
            3 => (1 << self.below(64)) - 1,
            4 => self.below(70),
            5 => was.wrapping_add(self.below(5)).wrapping_sub(2),
            6 => was ^ (1 << self.below(64)),
            7 => u64::from(u32::MAX) << (32 * self.below(2)),
            8 => i64::MAX as u64 + self.below(3),
            _ => self.next(),
        }
    }
}

fn cases() -> u64 {
    std::env::var("SHMKIT_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

/// Overwrites header words of a real object of each kind and runs every
/// verb that renders it; the pristine bytes are put back between cases.
#[test]
fn garbage_header_words_never_panic_a_renderer() {
    let chan = TestObject::new("hostile-chan");
    let spsc = TestObject::new("hostile-spsc");
    let stream = TestObject::new("hostile-stream");
    let board = TestObject::new("hostile-board");
    let cast = TestObject::new("hostile-cast");
    ok(&[
        "chan",
        "create",
        &chan.name,
        "--capacity",
        "4",
        "--max-msg",
        "16",
    ]);
    ok(&[
        "chan",
        "create",
        &spsc.name,
        "--capacity",
        "4",
        "--max-msg",
        "16",
        "--spsc",
    ]);
    ok(&["produce", &chan.name, "--count", "2"]);
    ok(&["produce", &spsc.name, "--count", "2"]);
    ok(&[
        "chan",
        "create",
        &stream.name,
        "--capacity",
        "4",
        "--max-msg",
        "16",
        "--stream",
    ]);
    ok(&["produce", &stream.name, "--count", "2"]);
    ok(&["board", "create", &board.name, "--size", "32"]);
    shmkit_stdin(&["board", "set", &board.name], b"value");
    let out = shmkit_stdin(
        &["pub", &cast.name, "--capacity", "4", "--max-msg", "16"],
        b"one\ntwo\nthree\n",
    );
    assert!(out.status.success());
    let stat_verbs: &[&[&str]] = &[&["stat"], &["stat", "--json"]];
    let chan_verbs: &[&[&str]] = &[&["chan", "stat"], &["chan", "stat", "--json"], &["stat"]];
    let board_verbs: &[&[&str]] = &[&["board", "get"], &["board", "get", "--with-version"]];
    let kinds: [(&TestObject, &[&[&str]]); 5] = [
        (&chan, chan_verbs),
        (&spsc, chan_verbs),
        (&stream, chan_verbs),
        (&board, &[stat_verbs, board_verbs].concat()),
        (&cast, stat_verbs),
    ];
    let seed = std::env::var("SHMKIT_HOSTILE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x005e_ed15);
    let mut rng = Rng(seed);
    let mut runs = 0;
    for (obj, verbs) in kinds {
        let pristine = std::fs::read(obj.path()).unwrap();
        let file = File::options().write(true).open(obj.path()).unwrap();
        // The header and tables hold every word a renderer reads; the rest
        // is payload.
        let words = (pristine.len().min(8192) / 8) as u64;
        for case in 0..cases() {
            file.write_all_at(&pristine, 0).unwrap();
            let mut written = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let off = rng.below(words) as usize * 8;
                let was = u64::from_ne_bytes(pristine[off..off + 8].try_into().unwrap());
                let word = rng.hostile(was);
                file.write_all_at(&word.to_ne_bytes(), off as u64).unwrap();
                written.push(format!("{word:#x} at {off}"));
            }
            let context = format!("seed {seed:#x}, case {case}: {}", written.join(", "));
            for verb in verbs {
                let mut args = verb.to_vec();
                args.insert(if args[0] == "stat" { 1 } else { 2 }, &obj.name);
                clean_run(&args, &context);
                runs += 1;
            }
        }
        file.write_all_at(&pristine, 0).unwrap();
    }
    eprintln!("{runs} runs of shmkit on corrupted objects, none panicked");
}
