//! Loom models of the [`Event`] wait/notify protocol and the [`Semaphore`]
//! built on it: every interleaving (up to the preemption bound) and every
//! weak-memory outcome loom models, with the futex replaced by a model of
//! the kernel's contract that really blocks, so a lost wake-up shows up as a
//! deadlock.
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p shmkit --test loom_sync --release
//! ```
//!
//! (about a minute on two cores, plus the build). Under loom the waiters' spin phase is
//! a single poll, so the models always take the sleep path: register as a
//! sleeper, fence, re-check, `FUTEX_WAIT`.
//!
//! Every role (waiter, notifier, poster) runs in a spawned thread of its
//! own; the main thread only sets up, spawns, joins and checks. A role on
//! the main thread can make loom 0.7 explore a single interleaving
//! (tokio-rs/loom#392); `shmkit::loom_check::check` explains, and fails a
//! model that explores only one.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmkit::sync::{Event, Semaphore};

use shmkit::loom_check::check;

/// One notifier, one waiter: the waiter always wakes (no lost wake-up) and
/// sees the condition the notifier stored before notifying.
#[test]
fn event_wakes_its_waiter() {
    check(None, || {
        let shared = Arc::new((Event::new(), AtomicU32::new(0)));
        let notifier = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                shared.1.store(1, Ordering::Release);
                shared.0.notify_one();
            })
        };
        let waiter = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let (event, flag) = &*shared;
                event
                    .wait_until(|| flag.load(Ordering::Acquire) == 1, None)
                    .unwrap()
            })
        };
        notifier.join().unwrap();
        assert!(waiter.join().unwrap());
        assert_eq!(shared.0.sleepers(), 0);
    });
}

/// Two notifications in a row, the waiter waiting for both: the second
/// notify must not be lost while the waiter handles the first.
#[test]
fn event_sees_every_change() {
    check(Some(4), || {
        let shared = Arc::new((Event::new(), AtomicU32::new(0)));
        let notifier = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                for _ in 0..2 {
                    shared.1.fetch_add(1, Ordering::Release);
                    shared.0.notify_all();
                }
            })
        };
        let waiter = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let (event, count) = &*shared;
                for want in 1..=2 {
                    let ok = event
                        .wait_until(|| count.load(Ordering::Acquire) >= want, None)
                        .unwrap();
                    assert!(ok);
                }
            })
        };
        notifier.join().unwrap();
        waiter.join().unwrap();
    });
}

/// notify_all wakes two sleepers.
#[test]
fn event_notify_all_wakes_everyone() {
    check(Some(3), || {
        let shared = Arc::new((Event::new(), AtomicU32::new(0)));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || {
                    let (event, flag) = &*shared;
                    assert!(event
                        .wait_until(|| flag.load(Ordering::Acquire) == 1, None)
                        .unwrap());
                })
            })
            .collect();
        let notifier = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                shared.1.store(1, Ordering::Release);
                shared.0.notify_all();
            })
        };
        notifier.join().unwrap();
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(shared.0.sleepers(), 0);
    });
}

/// A poster and a waiter: every post is taken, none is lost, and the count
/// ends at zero.
#[test]
fn semaphore_loses_no_post() {
    check(Some(4), || {
        let sem = Arc::new(Semaphore::new(0));
        let poster = {
            let sem = Arc::clone(&sem);
            thread::spawn(move || {
                sem.post().unwrap();
                sem.post().unwrap();
            })
        };
        let waiter = {
            let sem = Arc::clone(&sem);
            thread::spawn(move || {
                sem.wait().unwrap();
                sem.wait().unwrap();
            })
        };
        poster.join().unwrap();
        waiter.join().unwrap();
        assert_eq!(sem.value(), 0);
    });
}

/// What a poster writes before `post` is visible to the waiter after `wait`
/// (the Release/Acquire pairing of the count), with no data race.
#[test]
fn semaphore_publishes_what_was_written_before_post() {
    check(None, || {
        let shared = Arc::new((Semaphore::new(0), UnsafeCell::new(0u32)));
        let poster = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                // SAFETY: only the poster writes, before posting; the waiter
                // reads only after taking the unit (loom checks exactly this).
                shared.1.with_mut(|p| unsafe { *p = 42 });
                shared.0.post().unwrap();
            })
        };
        let waiter = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                shared.0.wait().unwrap();
                // SAFETY: the post happened-before our wait returned (checked
                // by loom).
                shared.1.with(|p| unsafe { *p })
            })
        };
        poster.join().unwrap();
        assert_eq!(waiter.join().unwrap(), 42);
    });
}

/// Two sleepers and two posts with notify_one: each post wakes a different
/// waiter (or is taken before it sleeps); nobody is left asleep.
#[test]
fn semaphore_wakes_each_waiter() {
    check(Some(2), || {
        let sem = Arc::new(Semaphore::new(0));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let sem = Arc::clone(&sem);
                thread::spawn(move || sem.wait().unwrap())
            })
            .collect();
        let poster = {
            let sem = Arc::clone(&sem);
            thread::spawn(move || {
                sem.post().unwrap();
                sem.post().unwrap();
            })
        };
        poster.join().unwrap();
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(sem.value(), 0);
        assert_eq!(sem.sleepers(), 0);
    });
}

/// A binary semaphore as a lock between two threads: the count never goes
/// below zero, so at most one thread is ever inside, and it ends at one.
#[test]
fn semaphore_count_never_goes_negative() {
    check(None, || {
        let shared = Arc::new((Semaphore::new(1), AtomicUsize::new(0)));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || {
                    let (sem, inside) = &*shared;
                    sem.wait().unwrap();
                    assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0);
                    inside.fetch_sub(1, Ordering::Relaxed);
                    sem.post().unwrap();
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let (sem, _) = &*shared;
        assert_eq!(sem.value(), 1);
        assert!(sem.try_wait());
        assert!(!sem.try_wait());
    });
}
