//! The `shmkit` binary on POSIX objects, across real processes: shmkit with
//! itself, with C programs using shm_open/mmap, and with Python's
//! multiprocessing.shared_memory; every bad input and its message.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use common::*;

#[test]
fn one_process_writes_another_reads() {
    let obj = TestObject::new("flow");
    ok(&["create", &obj.name, "--size", "200"]);
    assert!(obj.exists());
    ok(&["write", &obj.name, "hello from a writer"]);
    assert_eq!(
        ok(&["cat", &obj.name, "--len", "19"]),
        b"hello from a writer"
    );
    // The whole object: the text, then zeros up to 200 bytes, no NUL added.
    let all = ok(&["cat", &obj.name]);
    assert_eq!(all.len(), 200);
    assert!(all[19..].iter().all(|&b| b == 0));
    // Standard input, at an offset; the bare name works as well as /name.
    let out = shmkit_stdin(&["write", obj.bare(), "--offset", "100"], b"from stdin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ok(&["cat", &obj.name, "--offset", "100", "--len", "10"]),
        b"from stdin"
    );
    let dump =
        String::from_utf8(ok(&["dump", &obj.name, "--offset", "96", "--len", "20"])).unwrap();
    assert_eq!(
        dump,
        "00000060  00 00 00 00 66 72 6f 6d  20 73 74 64 69 6e 00 00  |....from stdin..|\n\
         00000070  00 00 00 00                                       |....|\n\
         00000074\n"
    );
    ok(&["rm", &obj.name]);
    assert!(!obj.exists());
}

#[test]
fn create_is_idempotent_but_never_resizes_silently() {
    let obj = TestObject::new("idem");
    ok(&["create", &obj.name, "--size", "4K", "--mode", "0640"]);
    ok(&["create", &obj.name, "--size", "4096"]);
    fails(
        &["create", &obj.name, "--size", "8K"],
        &[&obj.name, "exists with a size of 4096 bytes, not 8192"],
    );
    fails(
        &["create", &obj.name, "--size", "4K", "--exclusive"],
        &["cannot create", &obj.name, "File exists"],
    );
    let st = json(&["stat", &obj.name, "--json"]);
    assert_eq!(st["size"], 4096);
    // The mode is what was asked for, whatever the umask.
    assert_eq!(st["mode"], "0640");
}

#[test]
fn stat_and_ls_json_have_the_contract_fields() {
    let obj = TestObject::new("json");
    ok(&["create", &obj.name, "--size", "1M"]);
    let st = json(&["stat", &obj.name, "--json"]);
    assert_eq!(st["kind"], "posix");
    assert_eq!(st["name"], obj.name.as_str());
    assert_eq!(st["size"], 1 << 20);
    assert_eq!(st["mode"], "0600");
    assert!(st["uid"].is_u64() && st["gid"].is_u64());
    assert!(st["user"].is_string());
    let mtime = st["mtime"].as_str().unwrap();
    assert!(
        mtime.len() == 20 && mtime.ends_with('Z') && mtime.as_bytes()[10] == b'T',
        "{mtime}"
    );
    assert!(st["mapped_by"].is_array());
    // Space was reserved up front: all of it is allocated.
    assert_eq!(st["allocated"], 1 << 20);

    let all = json(&["ls", "--json"]);
    let mine: Vec<_> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == obj.name.as_str())
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["size"], 1 << 20);
    let table = String::from_utf8(ok(&["ls"])).unwrap();
    assert!(table.starts_with("KIND"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains(&obj.name) && l.contains("1048576")),
        "{table}"
    );
}

#[test]
fn ls_marks_entries_that_are_not_objects_and_skips_semaphores() {
    let dir = TestObject::new("dir");
    std::fs::create_dir(dir.path()).unwrap();
    let sem = TestObject::new("semfile");
    let sem_path = std::path::Path::new("/dev/shm").join(format!("sem.{}", sem.bare()));
    std::fs::write(&sem_path, b"").unwrap();
    let all = json(&["ls", "--json"]);
    let _ = std::fs::remove_file(&sem_path);
    let _ = std::fs::remove_dir(dir.path());
    let entries = all.as_array().unwrap();
    let d = entries
        .iter()
        .find(|e| e["name"] == dir.name.as_str())
        .expect("dir listed");
    assert_eq!(d["file_type"], "directory");
    assert!(!entries.iter().any(|e| e["name"]
        .as_str()
        .unwrap()
        .contains(&format!("sem.{}", sem.bare()))));
}

#[test]
fn resize_grows_keeping_data_and_shrinks() {
    let obj = TestObject::new("resize");
    ok(&["create", &obj.name, "--size", "16"]);
    ok(&["write", &obj.name, "0123456789abcdef"]);
    ok(&["resize", &obj.name, "64K"]);
    let all = ok(&["cat", &obj.name]);
    assert_eq!(all.len(), 65536);
    assert_eq!(&all[..16], b"0123456789abcdef");
    assert!(all[16..].iter().all(|&b| b == 0));
    assert_eq!(json(&["stat", &obj.name, "--json"])["allocated"], 65536);
    ok(&["resize", &obj.name, "4"]);
    assert_eq!(ok(&["cat", &obj.name]), b"0123");
}

#[test]
fn bad_inputs_give_one_clear_line_and_status_1() {
    let obj = TestObject::new("bad");
    let missing = TestObject::new("missing");
    ok(&["create", &obj.name, "--size", "200"]);
    let enoent = ["No such file or directory"];
    for verb in [
        &["cat"][..],
        &["dump"],
        &["stat"],
        &["write"],
        &["resize"],
        &["rm"],
    ] {
        let mut args: Vec<&str> = verb.to_vec();
        args.push(&missing.name);
        match verb[0] {
            "write" => args.push("x"),
            "resize" => args.push("10"),
            _ => {}
        }
        fails(&args, &[&missing.name, enoent[0]]);
    }
    fails(
        &["create", "a/b", "--size", "1"],
        &["\"a/b\"", "one component"],
    );
    fails(&["create", "/", "--size", "1"], &["name is empty"]);
    let long = "x".repeat(256);
    fails(
        &["create", &long, "--size", "1"],
        &["256 bytes long; the limit is 255"],
    );
    fails(&["cat", ".."], &["'.' and '..' are not object names"]);
    fails(
        &["write", &obj.name, "--offset", "198", "abc"],
        &[
            "cannot write",
            &obj.name,
            "3 bytes at offset 198 exceed the object's size of 200 bytes",
        ],
    );
    let out = shmkit_stdin(&["write", &obj.name, "--offset", "190"], &[b'z'; 64]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than the 10 bytes that fit"));
    // Nothing was written by the failed writes.
    assert!(ok(&["cat", &obj.name]).iter().all(|&b| b == 0));
    fails(
        &["cat", &obj.name, "--offset", "201"],
        &["offset 201 is past the end of the object (200 bytes)"],
    );
    fails(
        &["cat", &obj.name, "--len", "201"],
        &["201 bytes at offset 0 exceed the object's size of 200 bytes"],
    );
    fails(&["rm", &obj.name, &missing.name], &[&missing.name]);
    assert!(!obj.exists(), "rm goes on past a failing name");
    // Malformed numbers are usage errors (status 2), named with the argument.
    for (args, piece) in [
        (vec!["create", "q", "--size", "12Q"], "unknown suffix"),
        (vec!["create", "q", "--size", "-1"], "--size"),
        (
            vec!["create", "q", "--size", "1", "--mode", "0999"],
            "invalid mode",
        ),
        (
            vec!["create", "q", "--size", "1", "--mode", "1777"],
            "up to 0777",
        ),
    ] {
        let out = shmkit(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(piece),
            "{args:?}"
        );
    }
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let obj = TestObject::new("pipe");
    ok(&["create", &obj.name, "--size", "4M"]);
    for verb in ["cat", "dump"] {
        let mut child = shmkit_cmd()
            .args([verb, &obj.name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 8];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
        drop(child.stdout.take()); // like `| head -c 8`
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

const TEXTBOOK_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The textbook creator / writer / reader, one program with a verb. */
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *verb = argv[1], *name = argv[2];
    if (!strcmp(verb, "create")) {
        int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
        if (fd < 0) { perror("shm_open"); return 1; }
        if (ftruncate(fd, atoi(argv[3])) < 0) { perror("ftruncate"); return 1; }
        return 0;
    }
    if (!strcmp(verb, "write")) {
        int fd = shm_open(name, O_RDWR, 0);
        if (fd < 0) { perror("shm_open"); return 1; }
        struct stat st; fstat(fd, &st);
        char *p = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) { perror("mmap"); return 1; }
        memcpy(p, argv[3], strlen(argv[3]));
        return 0;
    }
    if (!strcmp(verb, "read") || !strcmp(verb, "hold")) {
        int fd = shm_open(name, O_RDONLY, 0);
        if (fd < 0) { perror("shm_open"); return 1; }
        struct stat st; fstat(fd, &st);
        char *p = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) { perror("mmap"); return 1; }
        close(fd);
        if (!strcmp(verb, "hold")) {
            printf("mapped\n"); fflush(stdout);
            char line[8]; fgets(line, sizeof line, stdin); /* until told to go */
        }
        fwrite(p, 1, strnlen(p, st.st_size), stdout);
        return 0;
    }
    return 2;
}
"#;

#[test]
fn c_programs_and_shmkit_share_objects_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let Some(c) = compile_c(dir.path(), "textbook", TEXTBOOK_C, &["-lrt"]) else {
        return;
    };
    let run_c = |args: &[&str]| {
        let out = Command::new(&c).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "C {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };

    // C creates and writes, shmkit reads and sees the C-made object.
    let from_c = TestObject::new("from-c");
    run_c(&["create", &from_c.name, "200"]);
    run_c(&["write", &from_c.name, "written by C"]);
    assert_eq!(ok(&["cat", &from_c.name, "--len", "12"]), b"written by C");
    let st = json(&["stat", &from_c.name, "--json"]);
    assert_eq!(st["size"], 200);
    assert_eq!(st["mode"], "0600");

    // shmkit creates and writes, C reads.
    let to_c = TestObject::new("to-c");
    ok(&["create", &to_c.name, "--size", "200"]);
    ok(&["write", &to_c.name, "written by shmkit"]);
    assert_eq!(run_c(&["read", &to_c.name]), b"written by shmkit");

    // A C process that maps the object shows up as a mapper, and reads what
    // shmkit writes while it holds the mapping.
    let mut holder = Command::new(&c)
        .args(["hold", &to_c.name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "mapped\n");
    let st = json(&["stat", &to_c.name, "--json"]);
    let mapped_by: Vec<u64> = st["mapped_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert_eq!(mapped_by, vec![holder.id() as u64], "{st}");
    ok(&["write", &to_c.name, "changed under the C reader"]);
    holder.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(holder.wait().unwrap().success());
    assert_eq!(rest, "changed under the C reader");
}

const PYTHON_HOLDER: &str = r#"
import sys
from multiprocessing import shared_memory
name = sys.argv[1]
shm = shared_memory.SharedMemory(name=name, create=True, size=4096)
shm.buf[:15] = b"made by python!"
print("ready", flush=True)
sys.stdin.readline()
shm.close()
shm.unlink()
"#;

#[test]
fn python_shared_memory_is_listed_read_and_shown_mapped() {
    let obj = TestObject::new("python");
    let mut py = match Command::new("python3")
        .args(["-c", PYTHON_HOLDER, obj.bare()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping: python3 is not available ({e})");
            return;
        }
    };
    let mut reader = BufReader::new(py.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");

    let all = json(&["ls", "--json"]);
    let entry = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == obj.name.as_str())
        .cloned()
        .expect("python's object is listed");
    assert_eq!(entry["size"], 4096);
    let pid = py.id() as u64;
    assert!(
        entry["mapped_by"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_u64() == Some(pid)),
        "{entry}"
    );
    assert!(
        entry["open_by"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_u64() == Some(pid)),
        "{entry}"
    );
    assert_eq!(ok(&["cat", &obj.name, "--len", "15"]), b"made by python!");
    let human = String::from_utf8(ok(&["stat", &obj.name])).unwrap();
    assert!(human.contains(&format!("mapped by: {pid}")), "{human}");

    py.stdin.take().unwrap().write_all(b"done\n").unwrap();
    assert!(py.wait().unwrap().success());
    assert!(!obj.exists(), "python unlinked its object");
}

/// Runs `script` as root in a private mount namespace with a 1 MiB tmpfs
/// over /dev/shm, or explains why it cannot.
fn in_small_dev_shm(script: &str) -> Result<std::process::Output, String> {
    let probe = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs -o size=1M tmpfs /dev/shm"])
        .output()
        .map_err(|e| format!("unshare is not available: {e}"))?;
    if !probe.status.success() {
        return Err(format!(
            "this machine does not allow a private tmpfs mount: {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=1M tmpfs /dev/shm && {script}"
        ))
        .env("SHMKIT", env!("CARGO_BIN_EXE_shmkit"))
        .output()
        .map_err(|e| e.to_string())
}

#[test]
fn a_full_dev_shm_is_no_space_not_sigbus() {
    let script = r#"
        "$SHMKIT" create big --size 4M; echo "create=$?"
        ls -A /dev/shm | sed 's/^/left:/'
        "$SHMKIT" create small --size 512K; echo "small=$?"
        "$SHMKIT" resize small 2M; echo "resize=$?"
        "$SHMKIT" stat small --json | grep '"size"'
        truncate -s 4M /dev/shm/sparse
        "$SHMKIT" write sparse --offset 3000000 "a page fits"; echo "page=$?"
        head -c 700000 /dev/zero | tr '\0' a | "$SHMKIT" write sparse; echo "sparse=$?"
    "#;
    let out = match in_small_dev_shm(script) {
        Ok(out) => out,
        Err(why) => {
            eprintln!("skipping: {why}");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("create=1"), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("left:big"),
        "the half-made object was removed: {stdout}"
    );
    assert!(
        stderr.contains("cannot create /big: No space left on device (/dev/shm has"),
        "{stderr}"
    );
    assert!(stdout.contains("small=0"), "{stdout}\n{stderr}");
    assert!(stdout.contains("resize=1"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("cannot resize /small: No space left on device"),
        "{stderr}"
    );
    assert!(
        stdout.contains("\"size\": 524288"),
        "a failed grow keeps the size: {stdout}"
    );
    // An object sized by ftruncate alone (by another program) is reserved
    // before shmkit writes to it: a write that fits in the free space works,
    // one that does not is an error, not SIGBUS (status 135).
    assert!(stdout.contains("page=0"), "{stdout}\n{stderr}");
    assert!(stdout.contains("sparse=1"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("cannot map /sparse: No space left on device"),
        "{stderr}"
    );
}

#[test]
fn dump_collapses_repeats_as_hexdump_c_does() {
    let obj = TestObject::new("dump-star");
    ok(&["create", &obj.name, "--size", "4K"]);
    ok(&["write", &obj.name, "--offset", "2000", "hello"]);
    let ours = String::from_utf8(ok(&["dump", &obj.name])).unwrap();
    assert!(ours.lines().count() < 10, "{ours}");
    assert!(ours.lines().any(|l| l == "*"), "{ours}");
    match std::process::Command::new("hexdump")
        .arg("-C")
        .arg(obj.path())
        .output()
    {
        Ok(theirs) if theirs.status.success() => {
            assert_eq!(ours, String::from_utf8(theirs.stdout).unwrap());
        }
        _ => eprintln!("hexdump is not installed: compared with the expected shape only"),
    }
    // Sizes with a fraction.
    let half = TestObject::new("size-frac");
    ok(&["create", &half.name, "--size", "1.5K"]);
    assert_eq!(json(&["stat", "--json", &half.name])["size"], 1536);
}

#[test]
fn raw_write_into_a_structured_object_needs_force() {
    let board = TestObject::new("write-board");
    ok(&["board", "create", &board.name, "--size", "64"]);
    fails(
        &["write", &board.name, "oops"],
        &[&board.name, "shmkit board", "--force"],
    );
    // Untouched: still a board.
    ok(&["board", "get", &board.name]);
    ok(&["write", &board.name, "--offset", "700", "x", "--force"]);
}
