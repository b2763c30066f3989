//! The process-shared primitives of `shmkit::sync` between real processes.
//!
//! Each test puts its primitives in a fresh POSIX object named
//! `/shmkit-test-<pid>-<n>` (unlinked by a guard on drop, so a failing test
//! leaves nothing in /dev/shm) and starts its peer by running this test
//! binary again on the single test [`child`], with the role and the object's
//! name in environment variables; in an ordinary run `child` does nothing.
//! The C interop tests compile a small C program with gcc instead.
//!
//! Every wait has a timeout and every child is killed if it outlives its
//! test, so a broken primitive fails the test instead of hanging it.
#![cfg(not(loom))]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmkit::posix::{self, PosixObject};
use shmkit::sync::{Event, Mutex, NamedSemaphore, PosixSemaphore, Semaphore};
use shmkit::{ErrorKind, Region};

/// Generous: a loaded two-core machine can be slow, but never this slow.
const TIMEOUT: Duration = Duration::from_secs(20);
const ROLE_VAR: &str = "SHMKIT_SYNC_TEST_ROLE";
const OBJECT_VAR: &str = "SHMKIT_SYNC_TEST_OBJECT";
const SIZE: u64 = 4096;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A POSIX object for one test, unlinked on drop even when the test fails.
struct Shared {
    obj: PosixObject,
    region: Region,
}

impl Shared {
    fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("/shmkit-test-{}-{n}", std::process::id());
        let obj = PosixObject::create(&name, SIZE).unwrap();
        let region = obj.map().unwrap();
        Shared { obj, region }
    }

    fn name(&self) -> &str {
        self.obj.name().as_str()
    }

    /// Unlinks now and checks that nothing is left in /dev/shm.
    fn remove(self) {
        let path = self.obj.name().path();
        drop(self);
        assert!(!Path::new(&path).exists(), "{path} was left behind");
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = posix::unlink(self.obj.name().as_str());
    }
}

/// A child process, killed and reaped on drop if the test gives up on it.
struct Child(std::process::Child);

impl Child {
    /// Runs this test binary's `child` test in the role `role` on `object`.
    fn spawn(role: &str, object: &str) -> Self {
        let exe = std::env::current_exe().unwrap();
        let child = Command::new(exe)
            .args(["child", "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_VAR, role)
            .env(OBJECT_VAR, object)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Child(child)
    }

    /// Waits (bounded) for the child to exit.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "child {} hangs", self.0.id());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGKILL and reaps the child.
    fn kill(&mut self) -> ExitStatus {
        self.0.kill().unwrap();
        self.wait()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Polls `cond` every millisecond until it holds; panics after [`TIMEOUT`].
fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn read_u64(region: &Region, offset: usize) -> u64 {
    let mut bytes = [0; 8];
    region.read_at(offset, &mut bytes).unwrap();
    u64::from_ne_bytes(bytes)
}

fn write_u64(region: &Region, offset: usize, value: u64) {
    region.write_at(offset, &value.to_ne_bytes()).unwrap();
}

// Layouts: the offsets each pair of processes agrees on.
const PING: usize = 0;
const PONG: usize = 64;
const PAYLOAD: usize = 128;
const ROUNDS: u64 = 2000;

const EVENT: usize = 0;
const FLAG: usize = 64;

const MUTEX: usize = 0;
const LOCKED: usize = 64;
const STATE_A: usize = 128;
const STATE_B: usize = 136;

/// The child side of every test, selected by the role variable.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE_VAR) else {
        return; // An ordinary test run: nothing to do.
    };
    let name = std::env::var(OBJECT_VAR).unwrap();
    let obj = PosixObject::open(&name).unwrap();
    let region = obj.map().unwrap();
    match role.as_str() {
        // Semaphore ping-pong: wait for ping, check and bump the payload
        // (plain bytes, ordered by the semaphores), post pong.
        "pong" => {
            let ping = Semaphore::from_region(&region, PING).unwrap();
            let pong = Semaphore::from_region(&region, PONG).unwrap();
            for round in 0..ROUNDS {
                assert!(ping.wait_timeout(TIMEOUT).unwrap(), "no ping {round}");
                assert_eq!(read_u64(&region, PAYLOAD), 2 * round);
                write_u64(&region, PAYLOAD, 2 * round + 1);
                pong.post().unwrap();
            }
        }
        // Event: wait until the parent sleeps on the event, then make the
        // condition true and notify.
        "notify-sleeper" => {
            let event = Event::from_region(&region, EVENT).unwrap();
            let flag = region.atomic_u32(FLAG).unwrap();
            poll_until("the parent to sleep", || event.sleepers() > 0);
            // Release: pairs with the parent's Acquire load in its condition.
            flag.store(1, Ordering::Release);
            event.notify_one();
        }
        // Robust mutex: lock, half-update the protected state (a != b), say
        // so, and hang until killed.
        "lock-and-hang" => {
            // SAFETY: the parent initialised the mutex before starting us;
            // the mapping lives until this process dies.
            let mutex = unsafe { Mutex::open_in(&region, MUTEX).unwrap() };
            let guard = mutex.lock().unwrap();
            assert!(!guard.previous_owner_died());
            write_u64(&region, STATE_A, read_u64(&region, STATE_A) + 1);
            region
                .atomic_u32(LOCKED)
                .unwrap()
                .store(1, Ordering::Release);
            std::thread::sleep(TIMEOUT * 2);
            std::process::exit(3); // Never reached: the parent kills us.
        }
        // Robust mutex, afterwards: a normal locker from another process.
        "lock-and-update" => {
            // SAFETY: as above.
            let mutex = unsafe { Mutex::open_in(&region, MUTEX).unwrap() };
            let guard = mutex.lock_timeout(TIMEOUT).unwrap().expect("the lock");
            assert!(!guard.previous_owner_died());
            let a = read_u64(&region, STATE_A);
            assert_eq!(a, read_u64(&region, STATE_B));
            write_u64(&region, STATE_A, a + 1);
            write_u64(&region, STATE_B, a + 1);
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn semaphores_ping_pong_between_processes() {
    let shared = Shared::new();
    let region = &shared.region;
    let ping = Semaphore::from_region(region, PING).unwrap();
    let pong = Semaphore::from_region(region, PONG).unwrap();
    // A fresh object is zeroed: both semaphores start at 0.
    assert_eq!((ping.value(), pong.value()), (0, 0));
    let mut child = Child::spawn("pong", shared.name());
    let mut start = Instant::now();
    for round in 0..ROUNDS {
        write_u64(region, PAYLOAD, 2 * round);
        ping.post().unwrap();
        assert!(pong.wait_timeout(TIMEOUT).unwrap(), "no pong {round}");
        assert_eq!(read_u64(region, PAYLOAD), 2 * round + 1);
        if round == 0 {
            start = Instant::now(); // The child has started: time the rest.
        }
    }
    let took = start.elapsed();
    assert!(child.wait().success());
    assert_eq!((ping.value(), pong.value()), (0, 0));
    assert_eq!((ping.sleepers(), pong.sleepers()), (0, 0));
    eprintln!(
        "{} round trips in {took:?}: {:?} each",
        ROUNDS - 1,
        took / (ROUNDS - 1) as u32
    );
    shared.remove();
}

#[test]
fn event_wait_times_out_when_nobody_notifies() {
    let shared = Shared::new();
    let event = Event::from_region(&shared.region, EVENT).unwrap();
    let flag = shared.region.atomic_u32(FLAG).unwrap();
    let start = Instant::now();
    let ok = event
        .wait_timeout(
            || flag.load(Ordering::Acquire) != 0,
            Duration::from_millis(50),
        )
        .unwrap();
    let took = start.elapsed();
    assert!(!ok, "nobody made the condition true");
    assert!(took >= Duration::from_millis(50), "{took:?}");
    assert!(took < TIMEOUT, "{took:?}");
    assert_eq!(event.sleepers(), 0);
    shared.remove();
}

#[test]
fn event_notify_from_another_process_wakes_a_sleeper() {
    let shared = Shared::new();
    let event = Event::from_region(&shared.region, EVENT).unwrap();
    let flag = shared.region.atomic_u32(FLAG).unwrap();
    let mut child = Child::spawn("notify-sleeper", shared.name());
    let start = Instant::now();
    // Acquire: pairs with the child's Release store of the flag.
    let ok = event
        .wait_timeout(|| flag.load(Ordering::Acquire) == 1, TIMEOUT)
        .unwrap();
    assert!(ok, "woken by the child's notify, not by the timeout");
    assert!(start.elapsed() < TIMEOUT);
    assert!(child.wait().success());
    assert_eq!(event.sleepers(), 0);
    shared.remove();
}

#[test]
fn robust_mutex_survives_a_killed_owner() {
    let shared = Shared::new();
    let region = &shared.region;
    // SAFETY: a new object nobody else maps yet; this process never leaks a
    // guard, and the region outlives every guard below.
    let mutex = unsafe { Mutex::init_in(region, MUTEX).unwrap() };
    write_u64(region, STATE_A, 10);
    write_u64(region, STATE_B, 10);

    let mut owner = Child::spawn("lock-and-hang", shared.name());
    let locked = region.atomic_u32(LOCKED).unwrap();
    // Acquire: pairs with the child's Release store after it locked.
    poll_until("the child to lock", || locked.load(Ordering::Acquire) == 1);
    assert!(mutex.try_lock().unwrap().is_none(), "the child holds it");
    let status = owner.kill();
    assert!(!status.success());

    let mut guard = mutex.lock_timeout(TIMEOUT).unwrap().expect("the lock");
    assert!(guard.previous_owner_died());
    assert!(!guard.is_consistent());
    // The child died half-way: repair the invariant a == b.
    let (a, b) = (read_u64(region, STATE_A), read_u64(region, STATE_B));
    assert_eq!((a, b), (11, 10));
    write_u64(region, STATE_B, a);
    guard.mark_consistent().unwrap();
    drop(guard);

    // The mutex keeps working, in this process and in another.
    let guard = mutex.lock().unwrap();
    assert!(!guard.previous_owner_died());
    drop(guard);
    let mut locker = Child::spawn("lock-and-update", shared.name());
    assert!(locker.wait().success());
    let guard = mutex.lock_timeout(TIMEOUT).unwrap().expect("the lock");
    assert!(!guard.previous_owner_died());
    assert_eq!(
        (read_u64(region, STATE_A), read_u64(region, STATE_B)),
        (12, 12)
    );
    drop(guard);
    shared.remove();
}

/// The C side of the interop tests: the same `sem_t` in the same object,
/// or the same named semaphore.
const C_PEER: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* usage: sem_peer unnamed|named NAME post|wait COUNT */
int main(int argc, char **argv) {
    if (argc != 5) return 64;
    int count = atoi(argv[4]);
    sem_t *sem;
    if (strcmp(argv[1], "unnamed") == 0) {
        int fd = shm_open(argv[2], O_RDWR, 0);
        if (fd < 0) { perror("shm_open"); return 10; }
        sem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (sem == MAP_FAILED) { perror("mmap"); return 11; }
    } else {
        sem = sem_open(argv[2], 0);
        if (sem == SEM_FAILED) { perror("sem_open"); return 12; }
    }
    for (int i = 0; i < count; i++) {
        if (strcmp(argv[3], "post") == 0) {
            if (sem_post(sem) != 0) { perror("sem_post"); return 13; }
        } else {
            struct timespec deadline;
            clock_gettime(CLOCK_REALTIME, &deadline);
            deadline.tv_sec += 20;
            int rc;
            while ((rc = sem_timedwait(sem, &deadline)) != 0 && errno == EINTR) {}
            if (rc != 0) { perror("sem_timedwait"); return 14; }
        }
    }
    return 0;
}
"#;

/// Compiles [`C_PEER`] into `dir`, or `None` (with the reason printed)
/// when gcc is not installed.
fn compile_c_peer(dir: &Path) -> Option<PathBuf> {
    if Command::new("gcc").arg("--version").output().is_err() {
        eprintln!("skipping: gcc is not installed");
        return None;
    }
    let src = dir.join("sem_peer.c");
    let exe = dir.join("sem_peer");
    std::fs::write(&src, C_PEER).unwrap();
    let out = Command::new("gcc")
        .args(["-O1", "-Wall", "-pthread", "-o"])
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

fn run_c_peer(exe: &Path, args: &[&str]) -> Child {
    Child(Command::new(exe).args(args).spawn().unwrap())
}

#[test]
fn posix_semaphore_is_shared_with_a_c_program() {
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = compile_c_peer(dir.path()) else {
        return;
    };
    let shared = Shared::new();
    // SAFETY: a new object nobody else maps yet; the C peer touches the
    // sem_t only through sem_*.
    let sem = unsafe { PosixSemaphore::init_in(&shared.region, 0, 0).unwrap() };

    // C posts, Rust waits.
    let mut c = run_c_peer(&exe, &["unnamed", shared.name(), "post", "5"]);
    for _ in 0..5 {
        assert!(sem.wait_timeout(TIMEOUT).unwrap());
    }
    assert!(c.wait().success());
    assert_eq!(sem.value().unwrap(), 0);

    // Rust posts, C waits.
    let mut c = run_c_peer(&exe, &["unnamed", shared.name(), "wait", "3"]);
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(2));
        sem.post().unwrap();
    }
    let status = c.wait();
    assert!(status.success(), "C peer: {status}");
    assert_eq!(sem.value().unwrap(), 0);
    shared.remove();
}

/// Unlinks a named semaphore on drop.
struct SemName(String);

impl Drop for SemName {
    fn drop(&mut self) {
        let _ = NamedSemaphore::unlink(&self.0);
    }
}

#[test]
fn named_semaphore_is_shared_with_a_c_program() {
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = compile_c_peer(dir.path()) else {
        return;
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = SemName(format!("/shmkit-test-{}-{n}", std::process::id()));
    let sem = NamedSemaphore::create(&name.0, 0).unwrap();
    let path = format!("/dev/shm/sem.{}", &name.0[1..]);
    assert!(Path::new(&path).exists(), "glibc keeps it as {path}");

    let mut c = run_c_peer(&exe, &["named", &name.0, "post", "4"]);
    for _ in 0..4 {
        assert!(sem.wait_timeout(TIMEOUT).unwrap());
    }
    assert!(c.wait().success());

    let mut c = run_c_peer(&exe, &["named", &name.0, "wait", "2"]);
    sem.post().unwrap();
    sem.post().unwrap();
    assert!(c.wait().success());
    assert_eq!(sem.value().unwrap(), 0);

    drop(sem);
    drop(name);
    assert!(!Path::new(&path).exists(), "{path} was left behind");
    assert_eq!(
        NamedSemaphore::open(&format!("/shmkit-test-{}-{n}", std::process::id()))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}
