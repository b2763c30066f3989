//! Shared test support: unique object names, cleanup guards, running the
//! real `shmkit` binary, compiling C helpers.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A POSIX object name no other test (in this or another process) uses,
/// removed from /dev/shm when the guard drops, even if the test panics.
pub struct TestObject {
    pub name: String,
}

impl TestObject {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TestObject {
            name: format!("/shmkit-test-{}-{n}-{tag}", std::process::id()),
        }
    }

    /// The name without the leading slash.
    pub fn bare(&self) -> &str {
        &self.name[1..]
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/dev/shm").join(self.bare())
    }

    pub fn exists(&self) -> bool {
        self.path().symlink_metadata().is_ok()
    }
}

impl Drop for TestObject {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}

pub fn shmkit_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmkit"))
}

/// Runs `shmkit ARGS` with no standard input and returns its output.
pub fn shmkit(args: &[&str]) -> Output {
    shmkit_cmd()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run shmkit")
}

/// Runs `shmkit ARGS` with `input` on standard input.
pub fn shmkit_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = shmkit_cmd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmkit");
    // A write error means shmkit stopped reading early, which the caller checks.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

/// Runs `shmkit ARGS`, asserts success, returns standard output.
pub fn ok(args: &[&str]) -> Vec<u8> {
    let out = shmkit(args);
    assert!(
        out.status.success(),
        "shmkit {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `shmkit ARGS`, asserts exit status 1 and one line on standard
/// error containing every piece of `expected`; returns that line.
pub fn fails(args: &[&str], expected: &[&str]) -> String {
    let out = shmkit(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "shmkit {args:?} should fail with status 1; stderr: {err}"
    );
    assert_eq!(
        err.lines().count(),
        1,
        "one line of error expected: {err:?}"
    );
    for piece in expected {
        assert!(
            err.contains(piece),
            "shmkit {args:?}: {err:?} lacks {piece:?}"
        );
    }
    err
}

pub fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&ok(args)).expect("valid JSON")
}

/// Compiles C source with gcc into `dir`, returning the executable, or None
/// (with the reason printed) when gcc is missing.
pub fn compile_c(dir: &Path, name: &str, source: &str, extra: &[&str]) -> Option<PathBuf> {
    if Command::new("gcc").arg("--version").output().is_err() {
        eprintln!("skipping: gcc is not installed");
        return None;
    }
    let src = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&src, source).unwrap();
    let out = Command::new("gcc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(extra)
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(exe)
}

/// A running shmkit process whose output is drained as it comes, so a
/// full pipe never blocks it. Killed if dropped unfinished (a failing test
/// leaves no subscriber waiting for ever).
pub struct Running {
    pub child: Child,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (what `Child::kill` sends on Unix); reaped by `finish`.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a pipe to its end; bytes that are not UTF-8 (a corrupted value
/// printed raw) become U+FFFD rather than failing the read.
pub fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        pipe.read_to_end(&mut bytes).unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

pub fn spawn(args: &[&str]) -> Running {
    let mut child = shmkit_cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shmkit");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    Running {
        child,
        stdout: Some(stdout),
        stderr: Some(stderr),
    }
}

/// Waits for a process at most `limit`; kills it and fails the test if it hangs.
pub fn finish(
    mut run: Running,
    limit: Duration,
    what: &str,
) -> (std::process::ExitStatus, String, String) {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = run.child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = run.child.kill();
            let _ = run.child.wait();
            panic!("{what} hung for more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = run.stdout.take().unwrap().join().unwrap();
    let err = run.stderr.take().unwrap().join().unwrap();
    (status, out, err)
}

// ---- Broadcasts: stat, signals, `sub` output --------------------------------

/// Polls `stat --json` until `ready` holds (at most 30 s); returns it. The
/// object may not exist yet, or not be initialised yet: those are retried.
pub fn stat_until(
    name: &str,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = shmkit(&["stat", name, "--json"]);
        let st: serde_json::Value = if out.status.success() {
            serde_json::from_slice(&out.stdout).expect("valid JSON")
        } else {
            serde_json::Value::Null
        };
        if ready(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {st}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The number of subscribers `stat` shows, 0 if it shows none (yet).
pub fn subscriber_count(st: &serde_json::Value) -> usize {
    st.get("subscribers")
        .and_then(|s| s.as_array())
        .map_or(0, |s| s.len())
}

pub fn subscribers(st: &serde_json::Value) -> &[serde_json::Value] {
    st.get("subscribers")
        .and_then(|s| s.as_array())
        .map_or(&[], |s| s.as_slice())
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill {sig} {pid}");
}

/// Parses `sub` output lines `TAG I` into indices, checking the tag.
pub fn indices(out: &str, tag: &str) -> Vec<u64> {
    out.lines()
        .map(|l| {
            let (t, i) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            assert_eq!(t, tag, "bad line {l:?}");
            i.parse().unwrap_or_else(|_| panic!("bad line {l:?}"))
        })
        .collect()
}

/// Sums the `lagged: missed N messages` reports on standard error.
pub fn reported_lag(err: &str) -> u64 {
    err.lines()
        .map(|l| {
            let n = l
                .strip_prefix("lagged: missed ")
                .and_then(|r| r.strip_suffix(" messages"))
                .unwrap_or_else(|| panic!("unexpected stderr line {l:?}"));
            n.parse::<u64>().unwrap()
        })
        .sum()
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A uid with no privileges: `shmkit-unpriv` where CI made it (`.ci/run`),
/// else nobody (65534); None, with the reason printed, where this test
/// cannot run commands as another user (not root, no setpriv).
pub fn unprivileged() -> Option<u32> {
    if !is_root() {
        eprintln!("skipping: running as another user needs root");
        return None;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipping: setpriv (util-linux) is not installed");
        return None;
    }
    Some(shmkit::inventory::uid_of("shmkit-unpriv").unwrap_or(65534))
}

/// The unprivileged user's own group: `shmkit-unpriv`'s, else nogroup.
pub fn unprivileged_gid() -> u32 {
    shmkit::inventory::gid_of("shmkit-unpriv").unwrap_or(65534)
}

/// `shmkit ARGS` as `uid` with group `uid` (as hostile_fs always did).
pub fn as_user(uid: u32, args: &[&str]) -> Output {
    as_user_in_group(uid, uid, args)
}

/// `shmkit ARGS` as `uid` with real and effective group `gid` and no
/// supplementary groups, no standard input.
pub fn as_user_in_group(uid: u32, gid: u32, args: &[&str]) -> Output {
    Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Removes a System V segment on drop, even when the test fails.
pub struct SegmentRemover(pub i32);

impl Drop for SegmentRemover {
    fn drop(&mut self) {
        if let Ok(s) = shmkit::sysv::Segment::from_id(self.0) {
            let _ = s.remove();
        }
    }
}

/// `shmkit create --sysv --key 0xPPnnnnnn --size SIZE --exclusive` (PP the
/// test's own prefix, n this process): the key, the id and a remover; None
/// (with the reason printed) when the key is taken or System V is absent.
pub fn sysv_segment(prefix: u8, size: &str) -> Option<(String, i32, SegmentRemover)> {
    let key = format!("0x{prefix:02x}{:06x}", std::process::id() & 0xffffff);
    let out = shmkit(&[
        "create",
        "--sysv",
        "--key",
        &key,
        "--size",
        size,
        "--exclusive",
    ]);
    if !out.status.success() {
        eprintln!("skipping: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let id: i32 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    Some((key, id, SegmentRemover(id)))
}
