//! A board opened by a process that may only read it (issue 15, defect
//! 10): readers only load, so a 0644 board is readable by other users.
//!
//! The child drops to uid/gid 65534 (nobody) after a fork, so this runs
//! only as root; one test in this binary, so the process forks with no
//! other test thread running.

use std::time::Duration;

use shmkit::board::{Board, BoardOptions};
use shmkit::{posix, ErrorKind};

/// A unique object name, unlinked on drop even when the test fails.
struct Name(String);

impl Drop for Name {
    fn drop(&mut self) {
        let _ = posix::unlink(&self.0);
    }
}

#[test]
fn another_user_reads_and_watches_a_0644_board() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to play another user");
        return;
    }
    let name = Name(format!("/shmkit-test-{}-0-read-only", std::process::id()));
    let mut opts = BoardOptions::new();
    opts.max_size(32).mode(0o644);
    let board = Board::create(&name.0, &opts).unwrap();
    let mut writer = board.writer().unwrap();
    let v1 = writer.write(b"first").unwrap();
    // SAFETY: one test in this binary: no other thread holds a lock the
    // child needs; it ends with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let checks = || {
            // SAFETY: plain system calls changing this process's ids.
            unsafe {
                assert_eq!(libc::setgid(65534), 0);
                assert_eq!(libc::setuid(65534), 0);
            }
            let b = Board::open(&name.0).unwrap();
            assert_eq!(b.read().unwrap(), (b"first".to_vec(), v1));
            let e = b.writer().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ReadOnly, "{e}");
            // Watching works too: the parent writes the next version.
            let (value, v2) = b
                .wait_for_change(v1, Some(Duration::from_secs(10)))
                .unwrap();
            assert_eq!((value.as_slice(), v2), (&b"second"[..], v1 + 1));
        };
        let ok = std::panic::catch_unwind(checks).is_ok();
        // SAFETY: ends the child at once, as after any fork.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    // Not a timing goal: the child waits up to 10 s for this write.
    std::thread::sleep(Duration::from_millis(100));
    writer.write(b"second").unwrap();
    let mut status = 0;
    // SAFETY: our own child; `status` is a valid out pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "the child's checks failed");
}
