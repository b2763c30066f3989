//! The `shmkit` binary on System V segments, across real processes: a C
//! program using ftok/shmget/shmat, `ipcmk`, `ipcs` and `lsipc`; removal of
//! an attached segment; chmod/chown on both kinds; every bad input and its
//! message.
//!
//! Every segment a test makes is owned by a [`SegmentGuard`] that removes it
//! (IPC_RMID, through the library) when dropped, even if the test fails, and
//! only if the id still names the segment it was made for. Keys are unique
//! per process and counter, and made with exclusive creation, so tests (and
//! other test processes) can run in parallel. Child processes are killed
//! when their guard drops; every wait has a timeout.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;
use shmkit::sysv::{Key, Segment};

use common::*;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// How long any wait on a child process may take.
const PATIENCE: Duration = Duration::from_secs(20);

/// A key nobody else is likely to use: a tag of our own (the library's
/// tests use 0x5d), the pid, a counter.
fn unique_key() -> Key {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    Key::new((0x5c00_0000 | ((pid & 0xfff) << 12) | (n & 0xfff)) as i32)
}

/// Removes a segment with IPC_RMID on drop, only if the id still names the
/// segment it was made for: same creator pid, creator uid and size, which
/// never change (unlike ctime, which chmod and chown move). A reused id is
/// never someone else's loss.
struct SegmentGuard {
    id: i32,
    identity: (i32, u32, u64),
}

fn identity(id: i32) -> Option<(i32, u32, u64)> {
    let info = Segment::from_id(id).and_then(|s| s.stat()).ok()?;
    Some((info.cpid, info.cuid, info.size))
}

impl SegmentGuard {
    fn new(id: i32) -> Self {
        SegmentGuard {
            id,
            identity: identity(id).expect("the segment to guard exists"),
        }
    }
}

impl Drop for SegmentGuard {
    fn drop(&mut self) {
        if identity(self.id) == Some(self.identity) {
            if let Ok(seg) = Segment::from_id(self.id) {
                let _ = seg.remove();
            }
        }
    }
}

/// `shmkit create --sysv --key K --exclusive ARGS` with fresh keys until one
/// is free; the key, the id and its guard.
fn create_segment(args: &[&str]) -> (Key, i32, SegmentGuard) {
    for _ in 0..64 {
        let key = unique_key();
        let key_arg = key.to_string();
        let mut all = vec!["create", "--sysv", "--key", &key_arg, "--exclusive"];
        all.extend_from_slice(args);
        let out = shmkit(&all);
        if out.status.success() {
            let text = String::from_utf8(out.stdout).unwrap();
            assert!(text.ends_with('\n'), "{text:?}");
            let id: i32 = text.trim_end().parse().expect("create prints the id");
            let guard = SegmentGuard::new(id);
            assert_eq!(text, format!("{id}\n"), "just the id");
            return (key, id, guard);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("File exists"), "create {all:?}: {err}");
    }
    panic!("no free key found");
}

/// The `ls --json` entry of segment `id`, if listed.
fn listed(id: i32) -> Option<Value> {
    json(&["ls", "--json", "--sysv"])
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .cloned()
}

fn pids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("a pid list: {v}"))
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect()
}

/// A child process whose stdout lines arrive on a channel (so reading
/// them can time out), killed and reaped when dropped.
struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Holder {
    fn spawn(cmd: &mut Command) -> Holder {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the holder");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Holder {
            child,
            stdin,
            lines,
        }
    }

    fn pid(&self) -> u64 {
        u64::from(self.child.id())
    }

    /// The next line, or None when the child closed its stdout.
    fn line(&self) -> Option<String> {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the holder said nothing in time"),
        }
    }

    fn tell(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes its stdin (it exits at EOF) and waits for it to exit.
    fn finish(&mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the holder did not exit in time");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it is true, for at most PATIENCE.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const HOLDER_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

/* holder PATH PROJ SIZE TEXT: ftok, shmget(IPC_CREAT|IPC_EXCL, 0600), shmat,
 *   fill the segment with '.' and put TEXT at its start; exit 3 if the key
 *   is taken.
 * holder id ID: attach the existing segment ID.
 * Then say "ready ID KEY SIZE" and obey standard input: "print" writes the
 * segment's bytes and a newline, "detach" detaches; EOF exits. */
int main(int argc, char **argv) {
    int id;
    key_t key = 0;
    if (argc == 3 && !strcmp(argv[1], "id")) {
        id = atoi(argv[2]);
    } else if (argc == 5) {
        key = ftok(argv[1], atoi(argv[2]));
        if (key == -1) { perror("ftok"); return 1; }
        id = shmget(key, strtoul(argv[3], NULL, 10), IPC_CREAT | IPC_EXCL | 0600);
        if (id == -1) { perror("shmget"); return 3; }
    } else {
        return 2;
    }
    struct shmid_ds ds;
    if (shmctl(id, IPC_STAT, &ds) == -1) { perror("shmctl"); return 1; }
    size_t size = ds.shm_segsz;
    char *p = shmat(id, NULL, 0);
    if (p == (void *)-1) { perror("shmat"); return 1; }
    if (argc == 5) {
        memset(p, '.', size);
        memcpy(p, argv[4], strlen(argv[4]));
    }
    printf("ready %d 0x%08x %zu\n", id, (unsigned)key, size);
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (!strncmp(line, "print", 5)) {
            fwrite(p, 1, size, stdout);
            printf("\n");
        } else if (!strncmp(line, "detach", 6)) {
            if (shmdt(p) == -1) { perror("shmdt"); return 1; }
            printf("detached\n");
        }
        fflush(stdout);
    }
    return 0;
}
"#;

/// Compiles the C holder into `dir`, or None when gcc is missing.
fn holder_exe(dir: &Path) -> Option<std::path::PathBuf> {
    compile_c(dir, "holder", HOLDER_C, &[])
}

#[test]
fn a_c_programs_segment_is_listed_read_and_written() {
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = holder_exe(dir.path()) else {
        return;
    };
    let key_file = dir.path().join("key-file");
    std::fs::write(&key_file, b"ftok needs a file").unwrap();
    let key_path = key_file.to_str().unwrap();
    const SIZE: usize = 4096;
    let text = "filled by C";

    // ftok keys can collide with someone's segment: try other project ids.
    let mut found = None;
    for proj in 1..=64u8 {
        let mut c = Holder::spawn(Command::new(&exe).args([
            key_path,
            &proj.to_string(),
            &SIZE.to_string(),
            text,
        ]));
        match c.line() {
            Some(line) => {
                found = Some((c, proj, line));
                break;
            }
            None => assert_eq!(c.finish().code(), Some(3), "the C holder failed"),
        }
    }
    let (mut c, proj, ready) = found.expect("a free ftok key");
    let fields: Vec<&str> = ready.split(' ').collect();
    assert_eq!(fields[0], "ready", "{ready}");
    let id: i32 = fields[1].parse().unwrap();
    let _guard = SegmentGuard::new(id);
    let c_key = fields[2].to_string();
    let target = format!("id:{id}");

    // `create --sysv --ftok` with the same path and project id makes the
    // same key as C's ftok: it finds C's segment rather than a new one.
    let ftok = format!("{key_path}:{proj}");
    let again = ok(&["create", "--sysv", "--ftok", &ftok, "--size", "4096"]);
    assert_eq!(String::from_utf8(again).unwrap(), format!("{id}\n"));
    fails(
        &[
            "create",
            "--sysv",
            "--ftok",
            &ftok,
            "--size",
            "4096",
            "--exclusive",
        ],
        &["cannot create", &format!("key:{c_key}"), "File exists"],
    );

    let entry = listed(id).expect("the C segment is listed");
    assert_eq!(entry["kind"], "sysv");
    assert_eq!(entry["name"], target.as_str());
    assert_eq!(entry["key"], c_key.as_str());
    assert_eq!(entry["size"], SIZE);
    assert_eq!(entry["mode"], "0600");
    assert_eq!(entry["cpid"].as_u64(), Some(c.pid()));
    assert_eq!(entry["cpid_alive"], true);
    assert_eq!(entry["lpid"].as_u64(), Some(c.pid()), "C attached last");
    assert_eq!(entry["nattch"], 1);
    assert_eq!(pids(&entry["attached_by"]), [c.pid()]);
    assert_eq!(entry["marked_for_removal"], false);
    assert_eq!(entry["locked"], false);
    assert!(entry["atime"].as_str().unwrap().ends_with('Z'), "{entry}");
    assert_eq!(entry["dtime"], Value::Null, "never detached yet");
    assert!(entry["ctime"].is_string());

    // stat, by id and by key, prints the same fields as ls.
    for t in [target.clone(), format!("key:{c_key}")] {
        let st = json(&["stat", &t, "--json"]);
        for field in [
            "kind",
            "name",
            "id",
            "key",
            "size",
            "mode",
            "uid",
            "user",
            "gid",
            "cuid",
            "cgid",
            "cpid",
            "lpid",
            "nattch",
            "marked_for_removal",
            "locked",
            "atime",
            "dtime",
            "ctime",
            "attached_by",
            "cpid_alive",
        ] {
            assert_eq!(st[field], entry[field], "{t}: {field}");
        }
    }
    let human = String::from_utf8(ok(&["stat", &target])).unwrap();
    assert!(
        human.contains(&format!("key:         {c_key}\n")),
        "{human}"
    );
    assert!(
        human.contains(&format!("creator pid: {} (running)", c.pid())),
        "{human}"
    );
    assert!(
        human.contains(&format!("attached by: {}\n", c.pid())),
        "{human}"
    );

    // shmkit reads what C wrote, in full and in part.
    let mut expected = vec![b'.'; SIZE];
    expected[..text.len()].copy_from_slice(text.as_bytes());
    assert_eq!(ok(&["cat", &target]), expected);
    assert_eq!(
        ok(&[
            "cat",
            &format!("key:{c_key}"),
            "--offset",
            "7",
            "--len",
            "6"
        ]),
        b"by C.."
    );
    let dump = String::from_utf8(ok(&["dump", &target, "--len", "16"])).unwrap();
    assert_eq!(
        dump,
        "00000000  66 69 6c 6c 65 64 20 62  79 20 43 2e 2e 2e 2e 2e  |filled by C.....|\n\
         00000010\n"
    );

    // C sees what shmkit writes, from the argument and from standard input.
    ok(&["write", &target, "written by shmkit"]);
    let out = shmkit_stdin(&["write", &target, "--offset", "4090"], b"tail!!");
    assert!(out.status.success(), "{out:?}");
    c.tell("print");
    let seen = c.line().unwrap();
    assert_eq!(seen.len(), SIZE);
    assert!(seen.starts_with("written by shmkit....."), "{seen:.40}");
    assert!(seen.ends_with("....tail!!"), "{seen}");

    // shmkit's attachments are gone with it: C's is the only one.
    let entry = listed(id).unwrap();
    assert_eq!(entry["nattch"], 1);
    assert_eq!(pids(&entry["attached_by"]), [c.pid()]);

    // When C exits its attachment goes, and its pid is no longer running.
    assert!(c.finish().success());
    let entry = listed(id).expect("a segment outlives its creator");
    assert_eq!(entry["nattch"], 0);
    assert_eq!(entry["attached_by"], Value::Array(vec![]));
    assert_eq!(entry["cpid_alive"], false);
    assert!(entry["dtime"].is_string(), "{entry}");
}

/// The rows of `ipcs -m`: key, shmid, owner, perms, bytes, nattch and the
/// status words, as ipcs prints them.
fn ipcs_rows() -> Option<Vec<Vec<String>>> {
    let out = Command::new("ipcs").arg("-m").output().ok()?;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        text.lines()
            .filter(|l| l.starts_with("0x"))
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect(),
    )
}

fn ipcs_row(id: i32) -> Vec<String> {
    ipcs_rows()
        .unwrap()
        .into_iter()
        .find(|r| r[1] == id.to_string())
        .unwrap_or_else(|| panic!("ipcs -m lists id {id}"))
}

/// The row of `shmkit ls --sysv` for segment `id`, split on whitespace:
/// KIND NAME/KEY ID OWNER PERMS BYTES NATTCH STATUS MAPPED-BY CHANGED.
fn table_row(id: i32) -> Option<Vec<String>> {
    let table = String::from_utf8(ok(&["ls", "--sysv"])).unwrap();
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "KIND",
            "NAME/KEY",
            "ID",
            "OWNER",
            "PERMS",
            "BYTES",
            "NATTCH",
            "STATUS",
            "MAPPED-BY",
            "CHANGED"
        ]
    );
    lines
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|r| r[2] == id.to_string())
}

fn as_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

#[test]
fn ipcmk_ipcs_and_lsipc_agree_with_shmkit() {
    let made = match Command::new("ipcmk")
        .args(["-M", "4096", "-p", "0640"])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipping: ipcmk is not available ({e})");
            return;
        }
    };
    assert!(made.status.success(), "{made:?}");
    // "Shared memory id: 65538"
    let text = String::from_utf8(made.stdout).unwrap();
    let id: i32 = text
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("ipcmk said {text:?}"));
    let _guard = SegmentGuard::new(id);

    let ipcs = ipcs_row(id);
    let entry = listed(id).expect("ipcmk's segment is listed");
    assert_eq!(entry["key"].as_str().unwrap(), ipcs[0]);
    assert_eq!(entry["id"].to_string(), ipcs[1]);
    assert_eq!(entry["user"].as_str().unwrap(), ipcs[2]);
    assert_eq!(entry["mode"], "0640");
    assert_eq!(ipcs[3], "640");
    assert_eq!(entry["size"].to_string(), ipcs[4]);
    assert_eq!(entry["nattch"].to_string(), ipcs[5]);
    assert_eq!(ipcs.len(), 6, "no status: {ipcs:?}");
    assert_eq!(entry["marked_for_removal"], false);

    // The table shows the same columns as ipcs, in its order.
    let row = table_row(id).expect("the table lists it");
    assert_eq!(row[0], "sysv");
    assert_eq!(&row[1..7], &ipcs[..6]);
    assert_eq!(row[7], "-", "no status");

    // lsipc (util-linux's other lister) agrees too, where it exists.
    if let Ok(out) = Command::new("lsipc")
        .args(["-m", "--json", "--bytes", "--numeric-perms"])
        .args(["-o", "KEY,ID,OWNER,PERMS,SIZE,NATTCH,CPID"])
        .output()
    {
        assert!(out.status.success(), "{out:?}");
        let all: Value = serde_json::from_slice(&out.stdout).unwrap();
        let seg = all["sharedmemory"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| as_text(&s["id"]) == id.to_string())
            .expect("lsipc lists it")
            .clone();
        assert_eq!(as_text(&seg["key"]), entry["key"].as_str().unwrap());
        assert_eq!(as_text(&seg["owner"]), entry["user"].as_str().unwrap());
        assert_eq!(as_text(&seg["perms"]), "0640");
        assert_eq!(as_text(&seg["size"]), "4096");
        assert_eq!(as_text(&seg["nattch"]), "0");
        assert_eq!(as_text(&seg["cpid"]), entry["cpid"].to_string());
    } else {
        eprintln!("lsipc is not available: not compared");
    }

    // Removed by key: unattached, it is gone at once.
    ok(&["rm", &format!("key:{}", entry["key"].as_str().unwrap())]);
    assert!(listed(id).is_none());
    assert!(ipcs_rows().unwrap().iter().all(|r| r[1] != id.to_string()));

    // The other way round: what shmkit makes, ipcs shows as asked.
    let (key, id, _guard) = create_segment(&["--size", "10000", "--mode", "0604"]);
    let ipcs = ipcs_row(id);
    assert_eq!(ipcs[0], key.to_string());
    assert_eq!(ipcs[3], "604");
    assert_eq!(ipcs[4], "10000");
    assert_eq!(ipcs[5], "0");
    let row = table_row(id).unwrap();
    assert_eq!(&row[1..7], &ipcs[..6]);

    // And a private one, by id only.
    let out = ok(&["create", "--sysv", "--private", "--size", "1"]);
    let private: i32 = String::from_utf8(out).unwrap().trim().parse().unwrap();
    let _private_guard = SegmentGuard::new(private);
    let ipcs = ipcs_row(private);
    assert_eq!(ipcs[0], "0x00000000");
    assert_eq!(ipcs[3], "600");
    assert_eq!(ipcs[4], "1");
    assert_eq!(listed(private).unwrap()["key"], "0x00000000");
}

#[test]
fn rm_of_an_attached_segment_waits_for_the_last_detach() {
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = holder_exe(dir.path()) else {
        return;
    };
    let (key, id, _guard) = create_segment(&["--size", "8K"]);
    let target = format!("id:{id}");
    ok(&["write", &target, "still here"]);
    let mut c = Holder::spawn(Command::new(&exe).args(["id", &id.to_string()]));
    let ready = c.line().expect("the holder attached");
    assert!(ready.starts_with(&format!("ready {id} ")), "{ready}");
    assert_eq!(listed(id).unwrap()["nattch"], 1);

    ok(&["rm", &target]);
    // Marked, its key released, still attached and readable.
    let entry = listed(id).expect("still listed while attached");
    assert_eq!(entry["marked_for_removal"], true);
    assert_eq!(entry["key"], "0x00000000");
    assert_eq!(entry["nattch"], 1);
    assert_eq!(pids(&entry["attached_by"]), [c.pid()]);
    let row = table_row(id).unwrap();
    assert_eq!(row[7], "dest", "{row:?}");
    let ipcs = ipcs_row(id);
    assert_eq!(ipcs[6], "dest", "{ipcs:?}");
    let human = String::from_utf8(ok(&["stat", &target])).unwrap();
    assert!(human.contains("marked for removal (dest)"), "{human}");
    assert!(human.contains("(removed: the key was released)"), "{human}");
    fails(
        &["stat", &format!("key:{key}")],
        &[&format!("key:{key}"), "no segment has this key"],
    );
    assert_eq!(ok(&["cat", &target, "--len", "10"]), b"still here");
    c.tell("print");
    assert!(c.line().unwrap().starts_with("still here"));

    // The last detach frees it.
    c.tell("detach");
    assert_eq!(c.line().as_deref(), Some("detached"));
    eventually("the segment to go", || listed(id).is_none());
    fails(&["cat", &target], &[&target, "no segment has this id"]);
    assert!(c.finish().success());
}

#[test]
fn bad_inputs_give_one_clear_line_and_the_right_status() {
    let (key, id, _guard) = create_segment(&["--size", "4096"]);
    let target = format!("id:{id}");
    let key_target = format!("key:{key}");

    // Targets that name nothing, or are not targets.
    for verb in ["cat", "dump", "stat", "rm"] {
        fails(
            &[verb, "id:999999999"],
            &["id:999999999", "no segment has this id"],
        );
        fails(
            &[verb, "id:abc"],
            &["cannot parse id:abc", "decimal number"],
        );
        fails(&[verb, "id:-1"], &["cannot parse id:-1"]);
        fails(&[verb, "key:zz"], &["cannot parse key:zz", "32-bit number"]);
    }
    fails(&["write", "id:abc", "x"], &["cannot parse id:abc"]);
    fails(&["chmod", "key:zz", "600"], &["cannot parse key:zz"]);
    fails(&["stat", "key:0"], &["key:0x00000000", "IPC_PRIVATE"]);
    let unused = unique_key();
    fails(
        &["stat", &format!("key:{unused}")],
        &[&format!("key:{unused}"), "no segment has this key"],
    );

    // Creation: taken keys, sizes, ftok of a missing file.
    fails(
        &[
            "create",
            "--sysv",
            "--key",
            &key.to_string(),
            "--size",
            "4096",
            "--exclusive",
        ],
        &["cannot create", &key_target, "File exists"],
    );
    fails(
        &[
            "create",
            "--sysv",
            "--key",
            &key.to_string(),
            "--size",
            "100",
        ],
        &[
            &key_target,
            &format!("exists ({target}) with a size of 4096 bytes, not 100"),
        ],
    );
    fails(
        &[
            "create",
            "--sysv",
            "--key",
            &key.raw().to_string(),
            "--size",
            "8192",
        ],
        &[&key_target, "fewer than the 8192 asked for"],
    );
    fails(
        &["create", "--sysv", "--private", "--size", "0"],
        &["cannot create key:0x00000000", "at least 1 byte"],
    );
    fails(
        &[
            "create",
            "--sysv",
            "--private",
            "--size",
            &u64::MAX.to_string(),
        ],
        &["key:0x00000000", "exceed shmmax", "/proc/sys/kernel/shmmax"],
    );
    let shmmax: u64 = std::fs::read_to_string("/proc/sys/kernel/shmmax")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if shmmax > 1 << 63 {
        fails(
            &["create", "--sysv", "--private", "--size", "8388608T"],
            &["key:0x00000000", "at most 9223372036854775807 bytes"],
        );
    }
    fails(
        &[
            "create",
            "--sysv",
            "--ftok",
            "/nonexistent/shmkit-ftok:1",
            "--size",
            "1",
        ],
        &["/nonexistent/shmkit-ftok", "No such file or directory"],
    );
    fails(
        &["create", "id:5", "--size", "1"],
        &["cannot create id:5", "--sysv", "/id:5"],
    );

    // Ranges: the same checks and words as for POSIX objects.
    fails(
        &["cat", &target, "--offset", "5000"],
        &[
            "cannot read",
            &target,
            "offset 5000 is past the end of the segment (4096 bytes)",
        ],
    );
    fails(
        &["dump", &key_target, "--len", "4097"],
        &["4097 bytes at offset 0 exceed the segment's size of 4096 bytes"],
    );
    fails(
        &["write", &target, "--offset", "4094", "abc"],
        &[
            "cannot write",
            &target,
            "3 bytes at offset 4094 exceed the segment's size of 4096 bytes",
        ],
    );
    let out = shmkit_stdin(&["write", &target, "--offset", "4090"], &[b'z'; 64]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than the 6 bytes that fit"));
    assert!(
        ok(&["cat", &target]).iter().all(|&b| b == 0),
        "failed writes change nothing"
    );
    fails(
        &["resize", &target, "8K"],
        &["cannot resize", &target, "fixed when it is created"],
    );

    // Usage errors: status 2, naming the arguments.
    for (args, piece) in [
        (
            vec!["create", "name", "--sysv", "--private", "--size", "1"],
            "cannot be used with",
        ),
        (vec!["create", "--key", "1", "--size", "1"], "--sysv"),
        (vec!["create", "--private", "--size", "1"], "--sysv"),
        (
            vec!["create", "name", "--key", "1", "--size", "1"],
            "cannot be used with",
        ),
        (
            vec!["create", "--sysv", "--key", "1", "--private", "--size", "1"],
            "cannot be used with",
        ),
        (vec!["create", "--sysv", "--size", "1"], "--key"),
        (
            vec!["create", "--sysv", "--key", "zz", "--size", "1"],
            "invalid key",
        ),
        (
            vec!["create", "--sysv", "--ftok", "nocolon", "--size", "1"],
            "PATH:PROJ",
        ),
        (
            vec!["create", "--sysv", "--private", "--size", "20000000T"],
            "too large",
        ),
        (vec!["ls", "--posix", "--sysv"], "cannot be used with"),
        (vec!["chmod", &target, "0999"], "invalid mode"),
    ] {
        let out = shmkit(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(piece), "{args:?}: {err}");
    }

    // rm goes on past a bad target and says which failed.
    let out = shmkit(&["rm", "id:abc", &target]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("id:abc"));
    assert!(listed(id).is_none(), "the good target was removed");
}

/// A POSIX object whose name begins with `id:`, reachable with its slash.
#[test]
fn a_posix_object_named_like_a_target_is_reached_with_its_slash() {
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(format!("/dev/shm{}", self.0));
        }
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let obj = Gone(format!("/id:shmkit-test-{}-{n}", std::process::id()));
    let name = obj.0.as_str();
    ok(&["create", name, "--size", "16"]);
    ok(&["write", name, "posix"]);
    assert_eq!(ok(&["cat", name, "--len", "5"]), b"posix");
    assert_eq!(json(&["stat", name, "--json"])["kind"], "posix");
    fails(&["cat", &name[1..]], &["cannot parse", "/id:"]);
    ok(&["rm", name]);
    assert!(!Path::new(&format!("/dev/shm{name}")).exists());
}

#[test]
fn chmod_and_chown_on_both_kinds() {
    let (_key, id, _guard) = create_segment(&["--size", "4096", "--mode", "0600"]);
    let target = format!("id:{id}");
    let creator = listed(id).unwrap()["cuid"].clone();

    ok(&["chmod", &target, "0644"]);
    assert_eq!(listed(id).unwrap()["mode"], "0644");
    assert_eq!(ipcs_row(id)[3], "644");
    ok(&["chown", &target, "1234:5678"]);
    let e = listed(id).unwrap();
    assert_eq!(
        (e["uid"].clone(), e["gid"].clone()),
        (1234.into(), 5678.into())
    );
    assert_eq!(e["cuid"], creator, "the creator never changes");
    assert_eq!(e["user"], "1234", "a uid with no name shows as a number");
    ok(&["chown", &target, ":4321"]);
    let e = listed(id).unwrap();
    assert_eq!(
        (e["uid"].clone(), e["gid"].clone()),
        (1234.into(), 4321.into())
    );
    ok(&["chown", &target, "4242"]);
    assert_eq!(
        listed(id).unwrap()["gid"],
        4321,
        "USER alone keeps the group"
    );
    ok(&["chown", &target, "root:"]);
    let e = listed(id).unwrap();
    assert_eq!((e["uid"].clone(), e["gid"].clone()), (0.into(), 0.into()));
    assert_eq!(e["user"], "root");
    fails(
        &["chown", &target, "no-such-user-shmkit"],
        &[
            "cannot chown",
            &target,
            "unknown user \"no-such-user-shmkit\"",
        ],
    );
    fails(
        &["chown", &target, "root:no-such-group-shmkit"],
        &["unknown group"],
    );
    fails(&["chown", &target, ":"], &["changes nothing"]);

    let obj = TestObject::new("chmod");
    ok(&["create", &obj.name, "--size", "16", "--mode", "0600"]);
    ok(&["chmod", &obj.name, "0640"]);
    assert_eq!(json(&["stat", &obj.name, "--json"])["mode"], "0640");
    ok(&["chown", obj.bare(), "1234:5678"]);
    let st = json(&["stat", &obj.name, "--json"]);
    assert_eq!(
        (st["uid"].clone(), st["gid"].clone()),
        (1234.into(), 5678.into())
    );
    ok(&["chown", &obj.name, ":42"]);
    assert_eq!(json(&["stat", &obj.name, "--json"])["gid"], 42);
    let missing = TestObject::new("chmod-missing");
    fails(
        &["chmod", &missing.name, "0600"],
        &[&missing.name, "No such file or directory"],
    );

    // Someone who is neither owner nor creator may not change a segment.
    if euid() == 0 && Command::new("setpriv").arg("--version").output().is_ok() {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_shmkit"))
            .args(["chmod", &target, "0666"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("cannot chmod {target}: Operation not permitted")),
            "{err}"
        );
        assert_eq!(listed(id).unwrap()["mode"], "0644");
    }
}

/// This process's effective uid, from /proc (the second number of `Uid:`).
fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .expect("a Uid: line in /proc/self/status")
}

#[test]
fn ls_lists_both_kinds_and_filters() {
    let (key, id, _guard) = create_segment(&["--size", "4096"]);
    let obj = TestObject::new("ls-both");
    ok(&["create", &obj.name, "--size", "16"]);

    let both = json(&["ls", "--json"]);
    let both = both.as_array().unwrap();
    assert!(both.iter().any(|e| e["name"] == obj.name.as_str()));
    let seg = both
        .iter()
        .find(|e| e["kind"] == "sysv" && e["id"] == id)
        .expect("the segment is listed with the objects");
    // Every entry has the fields scripts read from both kinds.
    for e in both {
        for field in ["kind", "name", "size", "mode", "uid", "user", "gid"] {
            assert!(!e[field].is_null(), "{field} in {e}");
        }
        assert!(e["mapped_by"].is_array(), "{e}");
    }
    assert_eq!(seg["name"], format!("id:{id}"));
    assert_eq!(seg["key"], key.to_string());
    assert_eq!(seg["mapped_by"], seg["attached_by"]);

    let posix = json(&["ls", "--json", "--posix"]);
    assert!(posix
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["kind"] == "posix"));
    assert!(posix
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == obj.name.as_str()));
    let sysv = json(&["ls", "--json", "--sysv"]);
    assert!(sysv.as_array().unwrap().iter().all(|e| e["kind"] == "sysv"));
    assert!(sysv.as_array().unwrap().iter().any(|e| e["id"] == id));

    let table = String::from_utf8(ok(&["ls"])).unwrap();
    assert!(table.starts_with("KIND"), "{table}");
    let posix_row = table
        .lines()
        .find(|l| l.contains(&obj.name))
        .expect("the object's row");
    let cells: Vec<&str> = posix_row.split_whitespace().collect();
    assert_eq!(&cells[..3], ["posix", obj.name.as_str(), "-"]);
    assert_eq!(cells[5], "16");
    assert_eq!(cells[6], "0", "NATTCH is the number of mapping pids");
    assert!(table_row(id).is_some());
}

#[test]
fn limits_prints_the_kernel_limits_and_use() {
    let (_key, _id, _guard) = create_segment(&["--size", "5000"]);
    let lim = json(&["limits", "--json"]);
    for field in [
        "shmmax",
        "shmall_pages",
        "shmall_bytes",
        "shmmni",
        "page_size",
        "segments_in_use",
        "bytes_in_use",
        "pages_in_use",
        "dev_shm_size",
        "dev_shm_free",
    ] {
        assert!(lim[field].is_u64(), "{field}: {lim}");
    }
    let read = |name: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(lim["shmmax"], read("shmmax"));
    assert_eq!(lim["shmall_pages"], read("shmall"));
    assert_eq!(lim["shmmni"], read("shmmni"));
    let page = lim["page_size"].as_u64().unwrap();
    assert!(page.is_power_of_two() && page >= 4096);
    assert_eq!(
        lim["shmall_bytes"].as_u64().unwrap(),
        read("shmall").saturating_mul(page)
    );
    assert!(lim["segments_in_use"].as_u64().unwrap() >= 1);
    assert!(lim["bytes_in_use"].as_u64().unwrap() >= 5000);
    assert!(lim["pages_in_use"].as_u64().unwrap() >= 5000u64.div_ceil(page));
    assert!(lim["dev_shm_size"].as_u64().unwrap() >= lim["dev_shm_free"].as_u64().unwrap());
    assert_eq!(lim["dev_shm_path"], "/dev/shm");

    let human = String::from_utf8(ok(&["limits"])).unwrap();
    for label in [
        "shmmax:",
        "shmall:",
        "shmmni:",
        "page size:",
        "in use:",
        "/dev/shm:",
    ] {
        assert!(
            human.lines().any(|l| l.starts_with(label)),
            "{label}: {human}"
        );
    }
}
