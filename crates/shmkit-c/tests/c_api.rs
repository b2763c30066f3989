//! libshmkit from C: test programs compiled here with gcc (`tests/c/peer.c`)
//! exchange messages with Rust and with the `shmkit` CLI in both
//! directions, survive a SIGKILL mid-stream, refuse bad arguments, run
//! clean under valgrind, and wait on the readiness descriptor.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shmkit::channel::{Channel, ChannelOptions};

/// Where cargo put this test's build: target/<profile>.
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/c_api-HASH
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
}

/// Runs `cargo build` with `args` into this test's target directory and
/// profile. `cargo test` builds only the rlib that a test links, never the
/// cdylib and staticlib beside it, nor another package's binary, so without
/// this step the C programs would find no library on a fresh checkout, or
/// link one left by an earlier `cargo build` and test stale code. Cargo is
/// idle while tests run, so the nested build takes the target directory's
/// lock at once; when everything is current it finishes in a moment.
fn cargo_build(args: &[&str]) {
    let dir = build_dir();
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
    let target = dir.parent().expect("target dir").to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .arg("build")
        .args(args)
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let output = build
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo build {args:?}: {e}"));
    assert!(
        output.status.success(),
        "cargo build {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// libshmkit_c.so, libshmkit_c.a: built fresh once per test run.
fn build_libraries() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            cargo_build(&["--lib", "-p", "shmkit-c"]);
            let lib = build_dir().join("libshmkit_c.so");
            assert!(
                lib.exists(),
                "{} missing after cargo build -p shmkit-c",
                lib.display()
            );
            lib
        })
        .clone()
}

/// A directory with the library under its installed names
/// (libshmkit.so -> libshmkit.so.0 -> cargo's libshmkit_c.so) and the
/// compiled test programs.
fn work_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("shmkit-c-test")
            .tempdir()
            .unwrap();
        let lib = build_libraries();
        std::os::unix::fs::symlink(&lib, dir.path().join("libshmkit.so.0")).unwrap();
        std::os::unix::fs::symlink("libshmkit.so.0", dir.path().join("libshmkit.so")).unwrap();
        dir
    })
    .path()
}

/// Compiles `tests/c/<name>.c` with the given compiler and flags against
/// the library; returns the program's path.
fn compile(compiler: &str, flags: &[&str], source: &Path, out: &str) -> PathBuf {
    let dir = work_dir();
    let exe = dir.join(out);
    let output = Command::new(compiler)
        .args(flags)
        .arg("-I")
        .arg(include_dir())
        .arg(source)
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(dir)
        .arg("-lshmkit")
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        output.status.success(),
        "{compiler} failed on {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    exe
}

fn peer() -> &'static Path {
    static PEER: OnceLock<PathBuf> = OnceLock::new();
    PEER.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/peer.c");
        compile(
            "gcc",
            &["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"],
            &source,
            "peer",
        )
    })
}

/// The `shmkit` CLI next to this build, built fresh once per test run.
fn cli() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            cargo_build(&["-p", "shmkit-cli", "--bin", "shmkit"]);
            let exe = build_dir().join("shmkit");
            assert!(
                exe.exists(),
                "{} missing after cargo build -p shmkit-cli",
                exe.display()
            );
            exe
        })
        .clone()
}

/// A unique object name, removed (with the `-*` names derived from it) on drop.
struct Name(String);

impl Name {
    fn new(what: &str) -> Name {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Name(format!("/shmkit-test-{}-c{n}-{what}", std::process::id()))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = shmkit::posix::unlink(&self.0);
        for suffix in ["-chan", "-board", "-news", "-obj"] {
            let _ = shmkit::posix::unlink(&format!("{}{suffix}", self.0));
        }
    }
}

/// A child killed on drop, so a failing test leaves no process behind.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn channel(name: &Name) -> Channel {
    Channel::create(&name.0, ChannelOptions::new().capacity(64).max_message(256)).unwrap()
}

/// Waits for the child's first line ("ready") so its receiver is connected.
fn spawn_ready(cmd: &mut Command) -> (Kid, BufReader<std::process::ChildStdout>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the C receiver did not start");
    (Kid(child), out)
}

fn finish(mut kid: Kid, mut out: BufReader<std::process::ChildStdout>) -> Vec<String> {
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = kid.0.wait().unwrap();
    assert!(status.success(), "the C peer failed: {status}");
    rest.lines().map(str::to_string).collect()
}

#[test]
fn the_header_compiles_as_strict_c11_and_as_cpp17() {
    let dir = work_dir();
    let source = dir.join("header_only.c");
    std::fs::write(
        &source,
        "#include \"shmkit.h\"\nint main(void) { return shmkit_last_error()[0] != 0; }\n",
    )
    .unwrap();
    let c = compile(
        "gcc",
        &["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"],
        &source,
        "h_c",
    );
    let cpp = compile(
        "g++",
        &["-std=c++17", "-Wall", "-Wextra", "-Werror", "-x", "c++"],
        &source,
        "h_cpp",
    );
    run(&mut Command::new(c));
    run(&mut Command::new(cpp));
    // libshmkit.a links on its own with the libraries shmkit.pc lists
    // under Libs.private.
    let exe = dir.join("h_static");
    let out = Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(include_dir())
        .arg(&source)
        .arg(build_libraries().with_file_name("libshmkit_c.a"))
        .args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-o",
        ])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(&mut Command::new(exe));
}

#[test]
fn c_sends_and_rust_receives() {
    let name = Name::new("c2rust");
    let ch = channel(&name);
    let mut rx = ch.receiver().unwrap();
    run(Command::new(peer()).args(["send", &name.0, "50"]));
    for i in 0..50 {
        let msg = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(msg, format!("c {i}").into_bytes());
    }
    // The C sender disconnected: once empty, the receiver is told.
    let err = rx.recv_timeout(Duration::from_secs(10)).unwrap_err();
    assert_eq!(err.kind(), shmkit::ErrorKind::Disconnected, "{err}");
}

#[test]
fn rust_sends_and_c_receives_with_and_without_the_readiness_fd() {
    for mode in ["recv", "poll"] {
        let name = Name::new(mode);
        let ch = channel(&name);
        let (kid, out) = spawn_ready(Command::new(peer()).args([mode, &name.0, "20"]));
        let mut tx = ch.sender().unwrap();
        for i in 0..20 {
            if i % 5 == 0 {
                // Let the receiver fall asleep (futex or poll) now and then.
                std::thread::sleep(Duration::from_millis(30));
            }
            tx.send(format!("rust {i}").as_bytes()).unwrap();
        }
        let mut lines = finish(kid, out);
        if mode == "poll" {
            // Every sleep in poll ended by a wake-up, none by its 250 ms
            // timeout: the sends woke the descriptor.
            assert_eq!(lines.pop().as_deref(), Some("poll timeouts 0"));
        }
        let want: Vec<String> = (0..20).map(|i| format!("rust {i}")).collect();
        assert_eq!(lines, want, "mode {mode}");
    }
}

#[test]
fn the_cli_and_c_exchange_messages_both_ways() {
    // Build (or find current) the CLI before any peer starts its clock.
    let cli = cli();
    // CLI producer -> C receiver.
    let name = Name::new("cli2c");
    drop(channel(&name));
    let (kid, out) = spawn_ready(Command::new(peer()).args(["recv", &name.0, "10"]));
    run(Command::new(&cli).args(["produce", &name.0, "--count", "10", "--tag", "cli"]));
    let lines = finish(kid, out);
    assert_eq!(
        lines,
        (0..10).map(|i| format!("cli {i}")).collect::<Vec<_>>()
    );

    // C sender -> CLI consumer.
    let name = Name::new("c2cli");
    drop(channel(&name));
    let consumer = Command::new(&cli)
        .args(["consume", &name.0, "--count", "10"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let consumer = Kid(consumer);
    // The consumer connects before the C sender disconnects, or it waits
    // for a first sender; both orders end with 10 lines.
    run(Command::new(peer()).args(["send", &name.0, "10"]));
    let mut kid = consumer;
    let mut text = String::new();
    std::io::Read::read_to_string(kid.0.stdout.as_mut().unwrap(), &mut text).unwrap();
    assert!(kid.0.wait().unwrap().success());
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        (0..10).map(|i| format!("c {i}")).collect::<Vec<_>>()
    );
}

#[test]
fn a_c_producer_killed_mid_stream_leaves_a_usable_channel() {
    let name = Name::new("kill");
    let ch = Channel::create(&name.0, ChannelOptions::new().capacity(8).max_message(64)).unwrap();
    let mut rx = ch.receiver().unwrap();
    let mut child = Command::new(peer())
        .args(["stream", &name.0])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let kid = Kid(child);
    // Drain while it streams until it says it is well under way.
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line
    });
    let mut next = 0u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reader.is_finished() || next < 200 {
        assert!(Instant::now() < deadline, "the stream stalled at {next}");
        if let Ok(msg) = rx.recv_timeout(Duration::from_millis(100)) {
            assert_eq!(msg, format!("s {next}").into_bytes());
            next += 1;
        }
    }
    assert_eq!(reader.join().unwrap().trim(), "streaming");
    // SIGKILL mid-stream (it is blocked in reserve or writing a slot).
    drop(kid);
    // What it committed is delivered in order; then every sender is gone.
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(msg) => {
                assert_eq!(msg, format!("s {next}").into_bytes());
                next += 1;
            }
            Err(e) => {
                assert_eq!(e.kind(), shmkit::ErrorKind::Disconnected, "{e}");
                break;
            }
        }
    }
    // A new sender (a C one) is served at once by the same receiver.
    run(Command::new(peer()).args(["send", &name.0, "3"]));
    for i in 0..3 {
        let msg = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(msg, format!("c {i}").into_bytes());
    }
}

#[test]
fn every_entry_point_refuses_null_wrong_kind_small_buffers_and_bad_names() {
    let name = Name::new("errors");
    let ch = channel(&name);
    let mut tx = ch.sender().unwrap();
    tx.send(b"a message longer than four bytes").unwrap();
    let out = run(Command::new(peer()).args(["errors", &name.0]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "failures 0");
    for leftover in ["/shmkit-test-bad-cap", "/shmkit-test-bad-flags"] {
        assert!(
            shmkit::posix::unlink(leftover).is_err(),
            "{leftover} was created"
        );
    }
}

#[test]
fn the_readiness_fd_stays_quiet_without_messages_and_costs_no_cpu() {
    let name = Name::new("quiet");
    let _ch = channel(&name);
    let out = run(Command::new(peer()).args(["quiet", &name.0, "300"]));
    let text = String::from_utf8_lossy(&out.stdout);
    // "woken 0 cpu_ms X"
    let cpu_ms: f64 = text.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(text.starts_with("woken 0"), "{text}");
    assert!(
        cpu_ms < 50.0,
        "an idle wait of 300 ms used {cpu_ms} ms of CPU"
    );
}

#[test]
fn a_c_program_runs_clean_under_valgrind_memcheck() {
    let have = Command::new("valgrind").arg("--version").output();
    if !matches!(&have, Ok(o) if o.status.success()) {
        println!("SKIPPED: valgrind is not installed (.ci/run installs it)");
        return;
    }
    let name = Name::new("vg");
    let out = Command::new("valgrind")
        .args([
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect",
            "--error-exitcode=99",
            "-q",
        ])
        .arg(peer())
        .args(["selftest", &name.0])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "valgrind found errors ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "selftest ok");
}

#[test]
fn the_selftest_passes_without_valgrind_too() {
    let name = Name::new("self");
    let out = run(Command::new(peer()).args(["selftest", &name.0]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "selftest ok");
    let _ = std::io::stdout().flush();
}

/// The module doc's claim: a receiver in another network namespace cannot
/// be reached by the senders' datagrams (abstract socket addresses belong
/// to a namespace), so it learns of messages only when its poll times out
/// (250 ms) and it tries again; it still gets every message.
#[test]
fn across_network_namespaces_the_slice_bounds_the_wait() {
    let probe = Command::new("unshare").args(["--net", "true"]).output();
    if !matches!(&probe, Ok(o) if o.status.success()) {
        println!("SKIPPED: cannot make a network namespace here (unshare --net needs root)");
        return;
    }
    let name = Name::new("netns");
    let ch = channel(&name);
    let mut cmd = Command::new("unshare");
    cmd.arg("--net").arg(peer()).args(["poll", &name.0, "3"]);
    let (kid, out) = spawn_ready(&mut cmd);
    let mut tx = ch.sender().unwrap();
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(100));
        tx.send(format!("far {i}").as_bytes()).unwrap();
    }
    let mut lines = finish(kid, out);
    let timeouts = lines.pop().unwrap();
    assert_eq!(lines, ["far 0", "far 1", "far 2"]);
    assert_ne!(
        timeouts, "poll timeouts 0",
        "a datagram crossed network namespaces?"
    );
}
