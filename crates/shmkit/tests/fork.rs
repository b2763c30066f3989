//! Handles across `fork` (issue 15, defect 2): a child inherits the
//! parent's handles, whose endpoint entries, writer roles and claimed slots
//! are the parent's. In the child they must fail with a clear error, and
//! dropping them must leave the parent's state alone.
//!
//! One test in this binary, so the process forks with no other test
//! thread running (the child then runs alone and exits with `_exit`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shmkit::board::{Board, BoardOptions};
use shmkit::broadcast::{Broadcast, BroadcastOptions};
use shmkit::channel::{Channel, ChannelOptions};
use shmkit::{posix, ErrorKind};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique object name, unlinked on drop even when the test fails.
struct Name(String);

impl Name {
    fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Name(format!(
            "/shmkit-test-{}-{n}-fork-{tag}",
            std::process::id()
        ))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = posix::unlink(&self.0);
    }
}

/// Waits for our child `pid` and returns its exit status.
fn wait_child(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // The child does nothing that waits for long (every call in it fails
    // at once, or is a try_ or a short timeout), so this returns.
    // SAFETY: waits for our own child; `status` is a valid out pointer.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    libc::WEXITSTATUS(status)
}

fn forked(e: &shmkit::Error) -> bool {
    e.kind() == ErrorKind::InvalidArgument && e.to_string().contains("fork")
}

#[test]
fn handles_inherited_by_a_forked_child_are_inert_there() {
    let chan_name = Name::new("chan");
    let mut opts = ChannelOptions::new();
    opts.capacity(4).max_message(16);
    let ch = Channel::create(&chan_name.0, &opts).unwrap();
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    tx.send(b"one").unwrap();
    tx.send(b"two").unwrap();

    let board_name = Name::new("board");
    let board = Board::create(&board_name.0, &BoardOptions::new()).unwrap();
    let mut writer = board.writer().unwrap();
    writer.write(b"parent").unwrap();

    let bc_name = Name::new("bcast");
    let bc = Broadcast::create(&bc_name.0, &BroadcastOptions::new()).unwrap();
    let mut publisher = bc.publisher().unwrap();
    let mut sub = bc.subscribe().unwrap();
    publisher.send(b"p0").unwrap();

    // A message held in its slot while the process forks.
    let held = rx.recv_slot().unwrap();
    assert_eq!(held.to_vec(), b"one");

    // SAFETY: this binary runs one test, so no other thread holds a lock
    // the child could need; the child ends with `_exit`, running no
    // destructor or atexit handler of the parent's.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // The held slot is the parent's: dropping it here frees nothing.
        drop(held);
        let ch = ch.clone();
        let checks = move || {
            let e = tx.try_send(b"child").unwrap_err();
            assert!(forked(&e), "{e}");
            let e = tx.send_batch([&b"x"[..]]).unwrap_err();
            assert!(forked(&e), "{e}");
            let e = rx.try_recv().unwrap_err();
            assert!(forked(&e), "{e}");
            let e = rx.recv_timeout(Duration::from_millis(10)).unwrap_err();
            assert!(forked(&e), "{e}");
            let e = writer.write(b"child").unwrap_err();
            assert!(forked(&e), "{e}");
            let mut w = writer.begin();
            let e = w.write_at(0, b"child").unwrap_err();
            assert!(forked(&e), "{e}");
            let e = w.commit(5).unwrap_err();
            assert!(forked(&e), "{e}");
            let e = publisher.send(b"child").unwrap_err();
            assert!(forked(&e), "{e}");
            let e = sub.try_recv().unwrap_err();
            assert!(forked(&e), "{e}");
            // Dropping the parent's handles here leaves its entries and roles.
            drop((tx, rx, writer, publisher, sub));
            // The child may connect a handle of its own.
            let mut own = ch.sender().unwrap();
            own.send(b"from child").unwrap();
        };
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(checks)).is_ok();
        // SAFETY: ends the child at once, as after any fork.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let status = wait_child(pid);
    assert_eq!(status, 0, "the child's checks failed (see its stderr)");

    // The parent's endpoints are all still connected and alive.
    let me = std::process::id();
    let mine = ch
        .stats()
        .endpoints
        .iter()
        .filter(|e| e.pid == me && e.alive)
        .count();
    assert_eq!(mine, 2, "{:?}", ch.stats().endpoints);
    // Its held slot is still its own to release, and the ring goes on.
    drop(held);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), b"two");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        b"from child"
    );
    tx.send(b"three").unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), b"three");
    // The board and the broadcast still have the parent as their writer.
    assert_eq!(board.writer().unwrap_err().kind(), ErrorKind::AlreadyExists);
    writer.write(b"again").unwrap();
    assert_eq!(board.read().unwrap().0, b"again");
    assert_eq!(bc.publisher().unwrap_err().kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        bc.stats()
            .subscribers
            .iter()
            .filter(|s| s.pid == me && s.alive)
            .count(),
        1
    );
    publisher.send(b"p1").unwrap();
    let got: Vec<_> = (0..2)
        .map(|_| sub.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    assert_eq!(
        got,
        vec![
            shmkit::broadcast::Received::Message {
                position: 0,
                value: b"p0".to_vec()
            },
            shmkit::broadcast::Received::Message {
                position: 1,
                value: b"p1".to_vec()
            },
        ]
    );
}
