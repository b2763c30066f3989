//! Objects someone else owns (issue 15, defect 11): /dev/shm is
//! world-writable, so a channel, board or broadcast under the name a user
//! expected may have been made by another user (a 0666 channel squatted
//! before root's service started), who then writes what it carries. The
//! verbs that use an object's contents warn on standard error when its
//! owner is not the caller; `--allow-foreign` says the sharing is meant.

use std::sync::atomic::{AtomicBool, Ordering};

use shmkit::posix::PosixObject;

use crate::show;

static ALLOWED: AtomicBool = AtomicBool::new(false);

/// `--allow-foreign`: objects of other owners are used without a warning.
pub fn allow(on: bool) {
    ALLOWED.store(on, Ordering::Relaxed);
}

/// Called once `name` is open for its contents (a channel, board or
/// broadcast): warns when another user owns it. Looks again by name (with
/// the same no-follow, regular-file-only open as every verb): a warning is
/// advice, the library's open already decided what may be used.
pub fn check(name: &str) {
    if ALLOWED.load(Ordering::Relaxed) {
        return;
    }
    let Ok(owner) = PosixObject::open_read_only(name)
        .and_then(|o| o.metadata())
        .map(|md| md.uid)
    else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    if owner != me {
        eprintln!(
            "shmkit: warning: {} belongs to {} (uid {owner}), not to {} (uid {me}): \
             whoever owns it controls what it carries (--allow-foreign: no warning)",
            show::escape_name(name),
            show::user(owner),
            show::user(me),
        );
    }
}
