//! The bounded-buffer example (`examples/bounded_buffer.rs`) against a C
//! program on the same bytes: C's `struct shared` with three `sem_t`.
//!
//! How the example's code is run. Cargo tells integration tests where the
//! package's *binaries* are (`CARGO_BIN_EXE_<name>`) but not its examples,
//! and guessing `target/<profile>/examples/bounded_buffer` breaks under
//! `--release`, `--target`, `CARGO_TARGET_DIR` or a stale build. So this
//! test compiles the example's source into itself as a module (`#[path]`
//! below) and calls its `run`, `init` and `destroy`; where a Rust peer must
//! be a process of its own (a producer or consumer beside a C one, a holder
//! to SIGKILL), it runs this test binary again on the single test [`child`]
//! (the pattern of `tests/channel.rs`), which calls the example's `run` with
//! the arguments passed in an environment variable. The code under test is
//! the example's, byte for byte, and no build path is assumed.
//!
//! The C peer is written into a temporary directory and compiled with
//! `gcc -pthread`; the tests that need it are skipped, saying so, when gcc
//! is missing. Every test uses its own object name, unlinked by a guard even
//! when the test fails, and checks that nothing is left in /dev/shm. Every
//! wait is bounded: the programs' own timeouts, and a child that outlives
//! [`TIMEOUT`] is killed.
#![cfg(not(loom))]

#[path = "../examples/bounded_buffer.rs"]
#[allow(dead_code)] // `main`, and whatever no test here calls.
mod bounded_buffer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bounded_buffer::{BUFFER, EMPTY, FULL, IN, MUTEX, OUT, SIZE, SLOTS};
use shmkit::inventory::ProcessScan;
use shmkit::posix::{self, PosixObject};
use shmkit::sync::PosixSemaphore;

/// How long a child may run before the test kills it and fails. Generous:
/// a loaded two-core machine can be slow, but never this slow.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The programs' own `--timeout` in the round trips, in seconds.
const WAIT: &str = "30";
/// Values sent through the five-slot buffer in each round trip.
const VALUES: usize = 10_000;

const ROLE_VAR: &str = "SHMKIT_BB_TEST_ROLE";
const ARGS_VAR: &str = "SHMKIT_BB_TEST_ARGS";
const OUT_VAR: &str = "SHMKIT_BB_TEST_OUT";
/// Separates arguments in [`ARGS_VAR`] (ASCII's unit separator).
const SEP: char = '\u{1f}';

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique object name, unlinked on drop even when the test fails.
struct Name(String);

impl Name {
    fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Name(format!("/shmkit-test-{}-bb-{n}", std::process::id()))
    }

    fn path(&self) -> PathBuf {
        Path::new("/dev/shm").join(&self.0[1..])
    }

    fn assert_gone(&self) {
        assert!(!self.path().exists(), "{} was left behind", self.0);
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = posix::unlink(&self.0);
    }
}

/// A child process, killed and reaped on drop if the test gives up on it.
struct Child {
    child: std::process::Child,
    what: String,
    out: PathBuf,
    err: PathBuf,
}

impl Child {
    /// Waits (at most [`TIMEOUT`]) for the child to exit.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} hangs", self.what);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the child; returns its exit code, stdout and stderr.
    fn finish(&mut self) -> (Option<i32>, String, String) {
        let status = self.wait();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        (status.code(), read(&self.out), read(&self.err))
    }

    /// Waits for the child and asserts that it succeeded; returns its stdout.
    fn ok(&mut self) -> String {
        let (code, out, err) = self.finish();
        assert_eq!(code, Some(0), "{} failed: {err}", self.what);
        out
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Which implementation plays a part.
#[derive(Debug, Clone, Copy)]
enum Lang {
    C,
    Rust,
}

/// The peers: the C program (when gcc is there) and the example.
struct Programs {
    dir: tempfile::TempDir,
    c: Option<PathBuf>,
}

impl Programs {
    /// `None`, with the reason printed, when the test `needs_c` and gcc is
    /// not installed (the Rust-only tests run without it).
    fn new(needs_c: bool) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let c = compile_c(dir.path());
        if needs_c && c.is_none() {
            eprintln!("skipping: gcc is not installed, and this test needs the C program");
            return None;
        }
        Some(Programs { dir, c })
    }

    /// Starts `lang`'s program with `args`; its output goes to files named
    /// after `tag` (a Rust child writes the values itself: libtest prints
    /// on the child's stdout too).
    fn spawn(&self, lang: Lang, args: &[&str], tag: &str) -> Child {
        let out = self.dir.path().join(format!("{tag}.out"));
        let err = self.dir.path().join(format!("{tag}.err"));
        let stderr = Stdio::from(File::create(&err).unwrap());
        let child = match lang {
            Lang::C => Command::new(self.c.as_ref().expect("the C program"))
                .args(args)
                .stdin(Stdio::null())
                .stdout(File::create(&out).unwrap())
                .stderr(stderr)
                .spawn(),
            Lang::Rust => Command::new(std::env::current_exe().unwrap())
                .args(["child", "--exact", "--nocapture", "--test-threads=1"])
                .env(ROLE_VAR, "run")
                .env(ARGS_VAR, args.join(&SEP.to_string()))
                .env(OUT_VAR, &out)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn(),
        };
        Child {
            child: child.unwrap(),
            what: format!("{lang:?} {}", args.join(" ")),
            out,
            err,
        }
    }

    /// Runs `lang`'s program with `args` to the end and asserts success.
    fn ok(&self, lang: Lang, args: &[&str]) -> String {
        self.spawn(lang, args, "step").ok()
    }
}

/// The child side: runs the example, or holds `mutex` until killed.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE_VAR) else {
        return; // An ordinary test run: nothing to do.
    };
    let args: Vec<String> = std::env::var(ARGS_VAR)
        .unwrap()
        .split(SEP)
        .map(String::from)
        .collect();
    match role.as_str() {
        "run" => {
            let mut out = File::create(std::env::var(OUT_VAR).unwrap()).unwrap();
            let code = bounded_buffer::run(&args, &mut out, &mut std::io::stderr());
            std::process::exit(code.into());
        }
        "hold-mutex" => {
            let region = PosixObject::open(&args[0]).unwrap().map().unwrap();
            // SAFETY: the parent ran `init` before starting us; the mapping
            // lives until this process dies.
            let mutex = unsafe { PosixSemaphore::open_in(&region, MUTEX).unwrap() };
            assert!(mutex.wait_timeout(TIMEOUT).unwrap());
            std::thread::sleep(TIMEOUT * 2);
            std::process::exit(3); // Never reached: the parent kills us.
        }
        other => panic!("unknown role {other}"),
    }
}

/// The textbook producer and consumer in C, on C's own `struct shared`,
/// with `sem_init` done properly and every wait bounded. Same verbs as the
/// example, plus `layout`, which prints what the C compiler made of it.
const C_PROGRAM: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* usage: bb_c layout | init NAME | produce NAME COUNT | consume NAME COUNT
 *        | destroy NAME   [--timeout SECONDS] */

#define BUFFER_SIZE 5

struct shared {
    int buffer[BUFFER_SIZE];
    int in;
    int out;
    sem_t mutex;
    sem_t empty;
    sem_t full;
};

static int timeout = 30;

static struct shared *map(const char *name, int flags) {
    int fd = shm_open(name, flags, 0600);
    if (fd < 0) { perror("shm_open"); exit(10); }
    if ((flags & O_CREAT) && ftruncate(fd, sizeof(struct shared)) != 0) {
        perror("ftruncate");
        shm_unlink(name);
        exit(11);
    }
    struct shared *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (s == MAP_FAILED) { perror("mmap"); exit(12); }
    close(fd);
    return s;
}

/* sem_wait, giving up after `timeout` seconds instead of never. */
static void wait_on(sem_t *sem, const char *what) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout;
    int rc;
    while ((rc = sem_timedwait(sem, &deadline)) != 0 && errno == EINTR) {}
    if (rc != 0) {
        fprintf(stderr, "bb_c: waiting on %s: %s\n", what, strerror(errno));
        exit(13);
    }
}

static void post(sem_t *sem) {
    if (sem_post(sem) != 0) { perror("sem_post"); exit(14); }
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[argc - 2], "--timeout") == 0) {
        timeout = atoi(argv[argc - 1]);
        argc -= 2;
    }
    if (argc == 2 && strcmp(argv[1], "layout") == 0) {
        printf("buffer %zu\nin %zu\nout %zu\nmutex %zu\nempty %zu\nfull %zu\nsize %zu\n",
               offsetof(struct shared, buffer), offsetof(struct shared, in),
               offsetof(struct shared, out), offsetof(struct shared, mutex),
               offsetof(struct shared, empty), offsetof(struct shared, full),
               sizeof(struct shared));
        return 0;
    }
    if (argc < 3) return 64;
    const char *verb = argv[1], *name = argv[2];
    if (argc == 3 && strcmp(verb, "init") == 0) {
        struct shared *s = map(name, O_RDWR | O_CREAT | O_EXCL);
        s->in = 0;
        s->out = 0;
        if (sem_init(&s->mutex, 1, 1) != 0 || sem_init(&s->empty, 1, BUFFER_SIZE) != 0
            || sem_init(&s->full, 1, 0) != 0) {
            perror("sem_init");
            shm_unlink(name);
            return 15;
        }
        return 0;
    }
    if (argc == 3 && strcmp(verb, "destroy") == 0) {
        struct shared *s = map(name, O_RDWR);
        sem_destroy(&s->mutex);
        sem_destroy(&s->empty);
        sem_destroy(&s->full);
        munmap(s, sizeof *s);
        if (shm_unlink(name) != 0) { perror("shm_unlink"); return 16; }
        return 0;
    }
    if (argc != 4) return 64;
    int count = atoi(argv[3]);
    struct shared *s = map(name, O_RDWR);
    if (strcmp(verb, "produce") == 0) {
        for (int i = 1; i <= count; i++) {
            wait_on(&s->empty, "empty");
            wait_on(&s->mutex, "mutex");
            s->buffer[s->in] = i;
            s->in = (s->in + 1) % BUFFER_SIZE;
            post(&s->mutex);
            post(&s->full);
        }
    } else if (strcmp(verb, "consume") == 0) {
        for (int i = 0; i < count; i++) {
            wait_on(&s->full, "full");
            wait_on(&s->mutex, "mutex");
            int value = s->buffer[s->out];
            s->out = (s->out + 1) % BUFFER_SIZE;
            post(&s->mutex);
            post(&s->empty);
            printf("%d\n", value);
        }
    } else {
        return 64;
    }
    return fflush(stdout) == 0 ? 0 : 17;
}
"#;

/// Compiles [`C_PROGRAM`] into `dir`, or `None` when gcc is not installed.
fn compile_c(dir: &Path) -> Option<PathBuf> {
    if Command::new("gcc").arg("--version").output().is_err() {
        return None;
    }
    let src = dir.join("bb_c.c");
    let exe = dir.join("bb_c");
    std::fs::write(&src, C_PROGRAM).unwrap();
    let out = Command::new("gcc")
        .args(["-O1", "-Wall", "-Werror", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg("-lrt")
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(exe)
}

/// Runs the example's command line in this process: (status, stdout, stderr).
fn run(args: &[&str]) -> (u8, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = bounded_buffer::run(&args, &mut out, &mut err);
    let text = |v: Vec<u8>| String::from_utf8(v).unwrap();
    (code, text(out), text(err))
}

/// Runs the example with `args`, asserting it succeeds (its standard error
/// in the message if not); returns its standard output.
fn run_ok(args: &[&str]) -> String {
    let (code, out, err) = run(args);
    assert_eq!(code, 0, "{args:?} failed: {err}");
    out
}

/// `destroy`, which must succeed once this test's own peers are gone. A
/// process that a test running beside this one (in this binary) spawns
/// shares or copies this process's mappings and descriptors until it
/// execs, so for a moment it maps the object too and `destroy` rightly
/// refuses: such a refusal is retried (for [`TIMEOUT`] at most), anything
/// else fails at once, with the example's error in the message.
fn destroy_ok(name: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (code, _, err) = run(&["destroy", name]);
        if code == 0 {
            return;
        }
        assert!(
            err.contains("still use it") && Instant::now() < deadline,
            "destroy {name} failed: {err}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The semaphores' counts (mutex, empty, full) and the indices (in, out),
/// read through a mapping that is gone again when this returns (so that
/// `destroy` does not see this process as a user).
fn state(name: &str) -> ((u32, u32, u32), (u32, u32)) {
    let region = PosixObject::open(name).unwrap().map().unwrap();
    let count = |offset| {
        // SAFETY: `init` ran before (every caller's first step); the region
        // outlives the reference.
        let sem = unsafe { PosixSemaphore::open_in(&region, offset).unwrap() };
        sem.value().unwrap()
    };
    let index = |offset| region.load_u32(offset, Ordering::Relaxed).unwrap();
    (
        (count(MUTEX), count(EMPTY), count(FULL)),
        (index(IN), index(OUT)),
    )
}

/// Asserts that `out` holds 1..=count, one per line: none lost, duplicated
/// or out of order.
fn assert_in_order(out: &str, count: usize) {
    let values: Vec<i64> = out
        .lines()
        .map(|l| l.parse().unwrap_or_else(|_| panic!("not a number: {l:?}")))
        .collect();
    if let Some(i) = (0..values.len().min(count)).find(|&i| values[i] != i as i64 + 1) {
        panic!(
            "value {} is {}, not {}: lost, duplicated or reordered",
            i + 1,
            values[i],
            i + 1
        );
    }
    assert_eq!(values.len(), count, "values received");
}

#[test]
fn layout_agrees_with_the_c_compiler() {
    let Some(programs) = Programs::new(true) else {
        return;
    };
    let out = programs.ok(Lang::C, &["layout"]);
    let c: Vec<(String, usize)> = out
        .lines()
        .map(|line| {
            let (field, value) = line.split_once(' ').unwrap();
            (field.to_string(), value.parse().unwrap())
        })
        .collect();
    let rust = [
        ("buffer", BUFFER),
        ("in", IN),
        ("out", OUT),
        ("mutex", MUTEX),
        ("empty", EMPTY),
        ("full", FULL),
        ("size", SIZE),
    ];
    let rust: Vec<(String, usize)> = rust.iter().map(|(f, v)| (f.to_string(), *v)).collect();
    assert_eq!(c, rust, "offsetof/sizeof in C vs the example's constants");
    eprintln!("struct shared: {out:?}");
}

/// `init` by one side, `VALUES` values from a producer to a consumer
/// running at once, `destroy` by one side; checks every value and that the
/// buffer ends as it began.
fn round_trip(init: Lang, producer: Lang, consumer: Lang, destroy: Lang) {
    let Some(programs) = Programs::new(true) else {
        return;
    };
    let name = Name::new();
    let n = VALUES.to_string();
    programs.ok(init, &["init", &name.0]);
    let meta = PosixObject::open(&name.0).unwrap().metadata().unwrap();
    assert_eq!((meta.size, meta.mode), (SIZE as u64, 0o600));
    assert_eq!(state(&name.0), ((1, SLOTS as u32, 0), (0, 0)));

    let mut consumer_child = programs.spawn(
        consumer,
        &["consume", &name.0, &n, "--timeout", WAIT],
        "consumer",
    );
    let mut producer_child = programs.spawn(
        producer,
        &["produce", &name.0, &n, "--timeout", WAIT],
        "producer",
    );
    producer_child.ok();
    let out = consumer_child.ok();
    assert_in_order(&out, VALUES);
    let end = (VALUES % SLOTS) as u32;
    assert_eq!(state(&name.0), ((1, SLOTS as u32, 0), (end, end)));

    programs.ok(destroy, &["destroy", &name.0]);
    name.assert_gone();
}

#[test]
fn c_producer_to_rust_consumer() {
    round_trip(Lang::Rust, Lang::C, Lang::Rust, Lang::C);
}

#[test]
fn rust_producer_to_c_consumer() {
    round_trip(Lang::C, Lang::Rust, Lang::C, Lang::Rust);
}

#[test]
fn rust_init_then_c_producer_and_consumer() {
    round_trip(Lang::Rust, Lang::C, Lang::C, Lang::Rust);
}

#[test]
fn c_init_then_rust_producer_and_consumer() {
    round_trip(Lang::C, Lang::Rust, Lang::Rust, Lang::C);
}

#[test]
fn every_wait_times_out_with_a_clear_message() {
    let name = Name::new();
    run_ok(&["init", &name.0]);

    let start = Instant::now();
    let (code, out, err) = run(&["consume", &name.0, "1", "--timeout", "0.2"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.contains("waited on `full`"), "{err}");
    assert!(err.contains("is a producer running?"), "{err}");
    assert!(start.elapsed() < TIMEOUT);

    // Five fit; the sixth finds no free slot and is not stored.
    let (code, _, err) = run(&["produce", &name.0, "6", "--timeout", "0.2"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("waited on `empty`"), "{err}");
    assert_eq!(state(&name.0).0, (1, 0, 5));
    let (code, out, err) = run(&["consume", &name.0, "5", "--timeout", "0.2"]);
    assert_eq!(code, 0, "{err}");
    assert_in_order(&out, 5);
    assert_eq!(state(&name.0).0, (1, 5, 0));

    destroy_ok(&name.0);
    name.assert_gone();
}

/// The textbook's fourth fault, which `sem_t` cannot fix: a process killed
/// holding `mutex` stalls everyone. The example only turns the hang into an
/// error naming the likely cause, and gives back the slot it had taken.
#[test]
fn a_killed_mutex_holder_stalls_everyone_until_the_timeout() {
    let Some(programs) = Programs::new(false) else {
        return;
    };
    let name = Name::new();
    run_ok(&["init", &name.0]);
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, "hold-mutex")
        .env(ARGS_VAR, &name.0)
        .stdout(Stdio::null())
        .spawn()
        .map(|child| Child {
            child,
            what: "the mutex holder".to_string(),
            out: programs.dir.path().join("none"),
            err: programs.dir.path().join("none"),
        })
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while state(&name.0).0 .0 != 0 {
        assert!(Instant::now() < deadline, "the child never took `mutex`");
        std::thread::sleep(Duration::from_millis(2));
    }
    holder.kill();

    let start = Instant::now();
    let (code, _, err) = run(&["produce", &name.0, "1", "--timeout", "0.3"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`mutex` was not released within 300ms"),
        "{err}"
    );
    assert!(err.contains("died holding it"), "{err}");
    assert!(start.elapsed() < TIMEOUT);
    // Still held by the dead process; the slot the producer took is back.
    assert_eq!(state(&name.0).0, (0, SLOTS as u32, 0));

    // Recovery is destroy and init (the dead holder maps nothing any more).
    destroy_ok(&name.0);
    name.assert_gone();
    run_ok(&["init", &name.0]);
    assert_eq!(state(&name.0).0, (1, SLOTS as u32, 0));
    destroy_ok(&name.0);
    name.assert_gone();
}

#[test]
fn destroy_refuses_while_another_process_uses_the_buffer() {
    let Some(programs) = Programs::new(false) else {
        return;
    };
    let name = Name::new();
    run_ok(&["init", &name.0]);
    let inode = PosixObject::open(&name.0)
        .unwrap()
        .metadata()
        .unwrap()
        .inode;
    let mut consumer = programs.spawn(
        Lang::Rust,
        &["consume", &name.0, "1", "--timeout", WAIT],
        "consumer",
    );
    let pid = consumer.child.id() as i32;
    let deadline = Instant::now() + TIMEOUT;
    while !ProcessScan::new().posix_mappers(inode).contains(&pid) {
        assert!(Instant::now() < deadline, "the consumer never mapped it");
        std::thread::sleep(Duration::from_millis(10));
    }

    let (code, _, err) = run(&["destroy", &name.0]);
    assert_eq!(code, 1, "{err}");
    // The consumer among the users (a process a test beside this one
    // spawns may be listed too, for a moment: see `destroy_ok`).
    let users = err
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once("] still use it"))
        .map(|(list, _)| list.to_string())
        .unwrap_or_default();
    assert!(users.split(", ").any(|p| p == pid.to_string()), "{err}");
    assert!(name.path().exists(), "a refused destroy changes nothing");

    let (code, _, err) = run(&["produce", &name.0, "1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(consumer.ok(), "1\n");
    destroy_ok(&name.0);
    name.assert_gone();
}

#[test]
fn init_is_exclusive_and_leaves_no_temporary_object() {
    let name = Name::new();
    run_ok(&["init", &name.0]);
    let (code, _, err) = run(&["init", &name.0]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("File exists"), "{err}");
    // The first init's semaphores were not initialised again.
    run_ok(&["produce", &name.0, "2"]);
    assert_eq!(run(&["init", &name.0]).0, 1);
    assert_eq!(state(&name.0), ((1, 3, 2), (2, 0)));

    let temporary = format!("bounded_buffer.init.{}.", std::process::id());
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.starts_with(&temporary))
        .collect();
    assert!(left.is_empty(), "temporary objects left behind: {left:?}");
    destroy_ok(&name.0);
    name.assert_gone();
}

/// Shared memory is untrusted input: a corrupt index or a short object is a
/// clean error, and the semaphores are left as they were.
#[test]
fn corrupt_indices_and_short_objects_are_errors() {
    let name = Name::new();
    run_ok(&["init", &name.0]);
    let region = PosixObject::open(&name.0).unwrap().map().unwrap();

    region.atomic_u32(IN).unwrap().store(7, Ordering::Relaxed);
    let (code, _, err) = run(&["produce", &name.0, "1", "--timeout", "1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("index 7 at offset {IN}")), "{err}");
    region.atomic_u32(IN).unwrap().store(0, Ordering::Relaxed);
    run_ok(&["produce", &name.0, "1"]);

    region
        .atomic_u32(OUT)
        .unwrap()
        .store(u32::MAX, Ordering::Relaxed);
    let (code, _, err) = run(&["consume", &name.0, "1", "--timeout", "1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("index -1 at offset {OUT}")), "{err}");
    drop(region);
    // The value stayed and every semaphore is where it was.
    assert_eq!(state(&name.0), ((1, 4, 1), (1, u32::MAX)));
    destroy_ok(&name.0);
    name.assert_gone();

    let short = Name::new();
    let _obj = PosixObject::create(&short.0, 64).unwrap();
    let (code, _, err) = run(&["consume", &short.0, "1"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("64 bytes, fewer than the {SIZE}")),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_with_status_2() {
    let cases: [&[&str]; 8] = [
        &[],
        &["init"],
        &["produce", "/x"],
        &["produce", "/x", "many"],
        &["consume", "/x", "-1"],
        &["consume", "/x", "1", "--timeout"],
        &["consume", "/x", "1", "--timeout", "0"],
        &["frobnicate", "/x"],
    ];
    for args in cases {
        let (code, _, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(bounded_buffer::USAGE), "{args:?}: {err}");
    }
    let (code, _, err) = run(&["init", "a/b"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("one component"), "{err}");
}
