//! What a local user can plant in the world-writable /dev/shm must not turn
//! root's `shmkit` against the system, stall it or crash it: symbolic links
//! (to a root-only file outside /dev/shm, and to a real object), FIFOs,
//! sockets, directories, device nodes and sparse files, against every verb
//! of the CLI and every open of the library. A clear refusal, nothing changed
//! outside /dev/shm, no hang, no signal.
//!
//! Some checks need root (a device node, a private /dev/shm in a mount
//! namespace, a second uid); they print why they are skipped elsewhere.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use shmkit::board::Board;
use shmkit::broadcast::Broadcast;
use shmkit::channel::Channel;
use shmkit::posix::{OpenOptions, PosixObject};
use shmkit::ErrorKind;

/// Longer than any verb needs, short enough that a hang fails the test.
const LIMIT: Duration = Duration::from_secs(20);

/// Runs `shmkit ARGS` with no input, failing the test if it runs past
/// LIMIT (the FIFO defect blocked in open for ever) or dies of a signal.
fn run_bounded(args: &[&str]) -> Output {
    let run = spawn(args);
    let (status, stdout, stderr) = finish(run, LIMIT, &format!("shmkit {args:?}"));
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.signal().is_none(),
        "shmkit {args:?} died of signal {:?}; stderr: {stderr}",
        status.signal()
    );
    Output {
        status,
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    }
}

/// One planted entry in /dev/shm, removed (file, link or directory) on drop.
struct Planted {
    obj: TestObject,
    // Keeps a planted socket's listener alive while the test runs.
    _listener: Option<std::os::unix::net::UnixListener>,
}

impl Planted {
    fn name(&self) -> &str {
        &self.obj.name
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(self.obj.path());
    }
}

/// A file outside /dev/shm that only root may read, as a link's target.
struct Secret {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

const SECRET: &[u8] = b"root's secret, 0600\n";

impl Secret {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, SECRET).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Secret { _dir: dir, path }
    }

    /// Content, mode, owner and size are what they were.
    fn assert_untouched(&self, after: &str) {
        let md = std::fs::metadata(&self.path).unwrap();
        assert_eq!(
            std::fs::read(&self.path).unwrap(),
            SECRET,
            "the link's target was written through after {after}"
        );
        assert_eq!(
            md.mode() & 0o7777,
            0o600,
            "the link's target was chmodded after {after}"
        );
        assert_eq!(
            (md.uid(), md.gid()),
            (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw()
            ),
            "the link's target was chowned after {after}"
        );
    }
}

fn plant(kind: &'static str, secret: &Path, real: &TestObject) -> Option<Planted> {
    let obj = TestObject::new(kind);
    let path = obj.path();
    let mut listener = None;
    match kind {
        "symlink" => std::os::unix::fs::symlink(secret, &path).unwrap(),
        "symlink-to-object" => std::os::unix::fs::symlink(real.path(), &path).unwrap(),
        "dangling-symlink" => {
            std::os::unix::fs::symlink("/nonexistent/shmkit-test", &path).unwrap()
        }
        "fifo" => rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o666),
            0,
        )
        .unwrap(),
        "socket" => listener = Some(std::os::unix::net::UnixListener::bind(&path).unwrap()),
        "directory" => std::fs::create_dir(&path).unwrap(),
        "char-device" => {
            if !is_root() {
                eprintln!("skipping the device node: making one needs root");
                return None;
            }
            // /dev/null's numbers: harmless if it were ever opened.
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::from_raw_mode(0o666),
                rustix::fs::makedev(1, 3),
            )
            .unwrap()
        }
        other => panic!("unknown entry kind {other}"),
    }
    Some(Planted {
        obj,
        _listener: listener,
    })
}

const KINDS: [&str; 7] = [
    "symlink",
    "symlink-to-object",
    "dangling-symlink",
    "fifo",
    "socket",
    "directory",
    "char-device",
];

/// Verbs that open the entry: each must refuse it, with one line naming it.
fn opening_verbs(name: &str) -> Vec<Vec<String>> {
    let v = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        v(&["cat", name]),
        v(&["dump", name]),
        v(&["write", name, "PWNED"]),
        v(&["chmod", name, "666"]),
        v(&["chown", name, "1:1"]),
        v(&["resize", name, "0"]),
        v(&["resize", name, "0", "--force"]),
        v(&["resize", name, "1M"]),
        v(&["board", "get", name]),
        v(&["board", "set", name, "PWNED"]),
        v(&["board", "set", name, "key", "PWNED"]),
        v(&["board", "get", name, "key"]),
        v(&["board", "ls", name]),
        v(&["chan", "stat", name]),
        v(&["consume", name, "--count", "1"]),
        v(&["produce", name, "--count", "1"]),
        v(&["sub", name, "--count", "1"]),
        v(&["pub", name, "--count", "1"]),
    ]
}

#[test]
fn every_verb_refuses_every_planted_entry() {
    let secret = Secret::new();
    let real = TestObject::new("real");
    ok(&["create", &real.name, "--size", "64"]);
    ok(&["write", &real.name, "real object"]);
    let mut matrix = Vec::new();
    for kind in KINDS {
        let Some(entry) = plant(kind, &secret.path, &real) else {
            continue;
        };
        for args in opening_verbs(entry.name()) {
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run_bounded(&argv);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "shmkit {argv:?} on a {kind} should be refused; stdout {:?}, stderr {err:?}",
                String::from_utf8_lossy(&out.stdout)
            );
            assert_eq!(err.lines().count(), 1, "one line of error: {err:?}");
            assert!(
                err.contains(entry.name()) && err.contains("not a shared memory object"),
                "shmkit {argv:?} on a {kind}: {err:?}"
            );
            assert!(
                out.stdout.is_empty(),
                "shmkit {argv:?} on a {kind} printed {:?}",
                String::from_utf8_lossy(&out.stdout)
            );
            secret.assert_untouched(&format!("shmkit {argv:?}"));
            assert!(
                entry.obj.path().symlink_metadata().is_ok(),
                "shmkit {argv:?} removed the planted {kind}"
            );
            matrix.push(format!(
                "{kind} × {}: refused",
                argv[..argv.len() - 1].join(" ")
            ));
        }
        // Listing verbs look without opening: they show what the entry is.
        let st = json(&["stat", entry.name(), "--json"]);
        let want = match kind {
            "symlink" | "symlink-to-object" | "dangling-symlink" => "symlink",
            "directory" => "directory",
            _ => "other",
        };
        assert_eq!(st["file_type"], want, "stat --json of a {kind}: {st}");
        let text = String::from_utf8(ok(&["stat", entry.name()])).unwrap();
        assert!(
            text.contains("not a regular file"),
            "stat of a {kind}: {text}"
        );
        let listed = json(&["ls", "--posix", "--json"]);
        let row = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == entry.name())
            .unwrap_or_else(|| panic!("ls --json does not list the planted {kind}"));
        assert_eq!(row["file_type"], want);
        let table = String::from_utf8(ok(&["ls", "--posix"])).unwrap();
        assert!(
            table
                .lines()
                .any(|l| l.contains(entry.name()) && l.contains("not an object")),
            "ls of a {kind}: {table}"
        );
        secret.assert_untouched("stat and ls");
        matrix.push(format!(
            "{kind} × stat, stat --json, ls, ls --json: shown, not opened"
        ));
    }
    // The real object the second link pointed at is unchanged too.
    assert_eq!(ok(&["cat", &real.name, "--len", "11"]), b"real object");
    assert_eq!(json(&["stat", &real.name, "--json"])["mode"], "0600");
    eprintln!("{}", matrix.join("\n"));
}

#[test]
fn rm_removes_a_planted_link_itself_never_its_target() {
    let secret = Secret::new();
    let real = TestObject::new("real");
    let link = plant("symlink", &secret.path, &real).unwrap();
    ok(&["rm", link.name()]);
    assert!(link.obj.path().symlink_metadata().is_err());
    secret.assert_untouched("rm");
    let dir = plant("directory", &secret.path, &real).unwrap();
    fails(&["rm", dir.name()], &[dir.name(), "is a directory"]);
    assert!(dir.obj.path().is_dir());
}

#[test]
fn library_opens_refuse_every_planted_entry() {
    let secret = Secret::new();
    let real = TestObject::new("real");
    ok(&["create", &real.name, "--size", "4096"]);
    for kind in KINDS {
        let Some(entry) = plant(kind, &secret.path, &real) else {
            continue;
        };
        let name = entry.name();
        let mut results = vec![
            ("PosixObject::open", PosixObject::open(name).map(drop)),
            (
                "PosixObject::open_read_only",
                PosixObject::open_read_only(name).map(drop),
            ),
            (
                "OpenOptions::create",
                OpenOptions::new()
                    .create(true)
                    .size(64)
                    .open(name)
                    .map(drop),
            ),
            (
                "OpenOptions::truncate",
                OpenOptions::new().truncate(true).open(name).map(drop),
            ),
            ("Channel::open", Channel::open(name).map(drop)),
            ("Board::open", Board::open(name).map(drop)),
            ("Broadcast::open", Broadcast::open(name).map(drop)),
        ];
        for (what, result) in results.drain(..) {
            let e = result.expect_err(&format!("{what} accepted a {kind}"));
            assert_eq!(e.kind(), ErrorKind::NotAnObject, "{what} on a {kind}: {e}");
            assert!(e.to_string().contains(name), "{e}");
        }
        // Creating exclusively over any entry is "exists", as shm_open says.
        let e = OpenOptions::new()
            .create_new(true)
            .size(64)
            .open(name)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{kind}: {e}");
        secret.assert_untouched(&format!("library opens of a {kind}"));
    }
}

#[test]
fn sparse_objects_are_read_without_mapping_their_holes() {
    // An object another program sized with ftruncate alone: a hole.
    let obj = TestObject::new("sparse");
    let f = std::fs::File::create(obj.path()).unwrap();
    f.set_len(1 << 20).unwrap();
    drop(f);
    let before = std::fs::metadata(obj.path()).unwrap().blocks();
    let all = ok(&["cat", &obj.name]);
    assert_eq!(all.len(), 1 << 20);
    assert!(all.iter().all(|&b| b == 0));
    ok(&["dump", &obj.name, "--len", "32"]);
    ok(&["stat", &obj.name]);
    ok(&["stat", &obj.name, "--json"]);
    // Reading allocated nothing: it went through pread, not a mapping.
    assert_eq!(std::fs::metadata(obj.path()).unwrap().blocks(), before);
}

/// Runs `script` as `sh -c` in a new mount namespace whose /dev/shm is a
/// private 1 MiB tmpfs, with $SHMKIT set; None (and why) where that is not
/// allowed.
fn in_private_dev_shm(script: &str) -> Option<Output> {
    if !is_root() {
        eprintln!("skipping: a private /dev/shm needs root (unshare -m, mount)");
        return None;
    }
    let full = format!("mount -t tmpfs -o size=1M tmpfs /dev/shm || exit 99\n{script}");
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &full])
        .env("SHMKIT", env!("CARGO_BIN_EXE_shmkit"))
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out)
            if out.status.code() == Some(99) || !out.status.success() && out.stdout.is_empty() =>
        {
            eprintln!(
                "skipping: cannot mount a private /dev/shm here: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Ok(out) => Some(out),
        Err(e) => {
            eprintln!("skipping: unshare is not available: {e}");
            None
        }
    }
}

#[test]
fn a_full_dev_shm_never_raises_sigbus() {
    // A sparse object, then /dev/shm filled to the last page: reading a hole
    // through a mapping would allocate a page and die of SIGBUS.
    let verbs = [
        "cat s",
        "dump s",
        "stat s",
        "stat s --json",
        "ls",
        "ls --json",
        "write s X",
        "board get s",
        "board set s X",
        "chan stat s",
        "sub s --count 1",
        "consume s --count 1",
        "resize s 1M",
    ];
    let mut script = String::from(
        "truncate -s 512K /dev/shm/s\n\
         dd if=/dev/zero of=/dev/shm/fill bs=4k 2>/dev/null\n",
    );
    for v in verbs {
        script.push_str(&format!(
            "\"$SHMKIT\" {v} >/dev/null 2>/tmp/shmkit-test-err; echo \"{v}|$?|$(head -c 300 /tmp/shmkit-test-err)\"\n"
        ));
    }
    script.push_str("rm -f /tmp/shmkit-test-err\n");
    let Some(out) = in_private_dev_shm(&script) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut seen = 0;
    for line in text.lines() {
        let mut parts = line.splitn(3, '|');
        let (Some(verb), Some(code), Some(err)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        seen += 1;
        let code: i32 = code.parse().unwrap();
        // 128 + 7: the shell's status for a process killed by SIGBUS.
        assert!(
            code < 128,
            "shmkit {verb} died of a signal (status {code}): {err}"
        );
        assert!(
            code == 0
                || err.contains("No space left on device")
                || err.contains("no shmkit header"),
            "shmkit {verb}: status {code}, {err}"
        );
        if [
            "cat s",
            "dump s",
            "stat s",
            "stat s --json",
            "ls",
            "ls --json",
        ]
        .contains(&verb)
        {
            assert_eq!(
                code, 0,
                "shmkit {verb} should work on a full /dev/shm: {err}"
            );
        }
    }
    assert_eq!(seen, verbs.len(), "{text}");
}

#[test]
fn resize_refuses_to_shrink_what_someone_uses() {
    let chan = TestObject::new("chan");
    ok(&[
        "chan",
        "create",
        &chan.name,
        "--capacity",
        "4",
        "--max-msg",
        "16",
    ]);
    let size = json(&["stat", &chan.name, "--json"])["size"]
        .as_u64()
        .unwrap();
    fails(
        &["resize", &chan.name, "0"],
        &[&chan.name, "it is a shmkit channel", "SIGBUS", "--force"],
    );
    assert_eq!(json(&["stat", &chan.name, "--json"])["size"], size);
    // Growing is harmless.
    ok(&["resize", &chan.name, &(size + 4096).to_string()]);

    let plain = TestObject::new("mapped");
    ok(&["create", &plain.name, "--size", "8K"]);
    let obj = PosixObject::open(&plain.name).unwrap();
    let region = obj.map().unwrap();
    let me = std::process::id().to_string();
    fails(
        &["resize", &plain.name, "4K"],
        &[&plain.name, &format!("processes {me} map it"), "--force"],
    );
    assert_eq!(json(&["stat", &plain.name, "--json"])["size"], 8192);
    drop(region);
    ok(&["resize", &plain.name, "4K"]);
    assert_eq!(json(&["stat", &plain.name, "--json"])["size"], 4096);
    // --force does it anyway.
    ok(&["resize", &chan.name, "0", "--force"]);
    assert_eq!(json(&["stat", &chan.name, "--json"])["size"], 0);
}

#[test]
fn a_listing_that_could_not_see_every_process_says_so() {
    let Some(uid) = unprivileged() else { return };
    let obj = TestObject::new("hidden");
    ok(&["create", &obj.name, "--size", "4K", "--mode", "0644"]);
    // Root (this test) maps it; another user cannot read root's /proc maps.
    let handle = PosixObject::open(&obj.name).unwrap();
    let _region = handle.map().unwrap();
    let denied = |text: &str| -> usize {
        text.lines()
            .find_map(|l| l.strip_prefix("? "))
            .and_then(|l| l.split(' ').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    let out = as_user(uid, &["ls", "--posix"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = text
        .lines()
        .find(|l| l.contains(&obj.name))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        row.contains('?'),
        "the row should not claim 0 mappers: {row}"
    );
    assert!(
        text.contains("could not be inspected: run as root"),
        "no footnote: {text}"
    );
    let out = as_user(uid, &["ls", "--posix", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == obj.name.as_str())
        .unwrap();
    assert_eq!(entry["mapped_by_complete"], false, "{entry}");
    let out = as_user(uid, &["stat", &obj.name]);
    let user_text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(user_text.contains("could not be inspected"), "{user_text}");
    // Root sees this test's mapping, and is denied fewer processes (some
    // sandboxes close pid 1's entries even to root: then it says so too).
    let entry = json(&["stat", &obj.name, "--json"]);
    assert!(entry["mapped_by"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(std::process::id())));
    let root_text = String::from_utf8(ok(&["stat", &obj.name])).unwrap();
    assert!(
        denied(&root_text) < denied(&user_text),
        "root: {root_text}\nuser: {user_text}"
    );
    assert_eq!(entry["mapped_by_complete"], denied(&root_text) == 0);
}

#[test]
fn names_that_would_be_ambiguous_or_reach_the_terminal_raw() {
    // id:… and key:… name segments everywhere, so no verb creates a POSIX
    // object under such a name.
    for args in [
        &["chan", "create", "id:x"][..],
        &["board", "create", "key:1", "--size", "8"],
        &["board", "create", "key:1", "--key", "a=8"],
        &["produce", "id:3", "--count", "1"],
        &["consume", "id:3", "--count", "1"],
        &["pub", "key:7", "--count", "1"],
        &["sub", "key:7", "--count", "1"],
    ] {
        fails(args, &["id:... and key:... name System V segments"]);
    }
    // A name with an escape sequence and a newline: escaped as `ls -b` does,
    // never printed raw, never a second row.
    let obj = TestObject::new("esc\u{1b}[31m\nrow");
    std::fs::write(obj.path(), b"x").unwrap();
    let table = String::from_utf8(ok(&["ls", "--posix"])).unwrap();
    assert!(!table.contains('\u{1b}'), "{table:?}");
    let escaped = obj.name.replace('\u{1b}', "\\033").replace('\n', "\\n");
    assert!(table.contains(&escaped), "{table:?}");
    let text = String::from_utf8(ok(&["stat", &obj.name])).unwrap();
    assert!(
        !text.contains('\u{1b}') && text.contains(&escaped),
        "{text:?}"
    );
    let out = shmkit(&["board", "get", &obj.name]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains('\u{1b}') && err.contains("\\033"), "{err:?}");
    // chown's (uid_t)-1 means "unchanged": refused, not a silent success.
    let plain = TestObject::new("chown");
    ok(&["create", &plain.name, "--size", "8"]);
    fails(&["chown", &plain.name, "4294967295"], &["(uid_t)-1"]);
    // Sizes no filesystem could hold say so.
    let big = TestObject::new("big");
    fails(
        &["create", &big.name, "--size", "100T"],
        &[&big.name, "larger than the whole filesystem"],
    );
    fails(
        &["create", &big.name, "--size", "18446744073709551615"],
        &[&big.name, "larger than any file can be"],
    );
    assert!(!big.exists());
    // Capacities are judged as given, not as rounded, and never silently
    // changed from 0 to 1.
    for verb in [&["chan", "create"][..], &["pub"]] {
        let mut args = verb.to_vec();
        args.extend([big.name.as_str(), "--capacity", "0", "--count", "0"]);
        if verb[0] == "chan" {
            args.truncate(args.len() - 2);
        }
        fails(&args, &[&big.name, "a capacity of 0"]);
        let n = args.iter().position(|a| *a == "0").unwrap();
        args[n] = "16777217";
        fails(
            &args,
            &[&big.name, "a capacity of 16777217 messages is more than"],
        );
        args[n] = "1099511627776";
        fails(&args, &["1099511627776 messages is more than", "2^24"]);
    }
    assert!(!big.exists());
}

#[test]
fn a_plain_object_is_not_waited_for_as_a_structured_one() {
    // Bytes that are no shmkit header: refused at once, not after the
    // two seconds a creator that is still initialising gets.
    let obj = TestObject::new("plain");
    ok(&["create", &obj.name, "--size", "4K"]);
    ok(&["write", &obj.name, "just some text, no header"]);
    let start = Instant::now();
    let e = Board::open(&obj.name).unwrap_err();
    assert!(e.to_string().contains("no shmkit header"), "{e}");
    let e = Channel::open(&obj.name).unwrap_err();
    assert!(e.to_string().contains("no shmkit header"), "{e}");
    let e = Broadcast::open(&obj.name).unwrap_err();
    assert!(e.to_string().contains("no shmkit header"), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "three opens of a plain object took {:?}: they waited for a creator",
        start.elapsed()
    );
}
