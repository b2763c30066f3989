//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p shmkit --lib --release channel::stream`
//!
//! Payloads live in loom `UnsafeCell`s, one per 8-byte word of the data
//! area: a producer writing a word the consumer is reading (or may still
//! read) is reported as a data race, which is what the two positions must
//! rule out. Headers are the ring's atomic words: a header read before
//! the producer's store is visible shows up as a corrupt record.
//!
//! Every concurrent role runs in a spawned thread and the model's main
//! thread only sets up and joins (see `crate::loom_check`: loom#392).
//!
//! Each model was seen to fail with an ordering weakened (see the doc of
//! each): the Release store of `tail` in `publish_send` or of `head` in
//! `publish_recv` made Relaxed, or the Acquire load of `tail` in
//! `claim_recv` or of `head` in `has_room` made Relaxed.
use super::heap::HeapStream;
use super::*;
use loom::cell::UnsafeCell;
use loom::sync::Arc;

struct Shared {
    ring: HeapStream,
    /// The payload words, by data offset / 8.
    cells: Vec<UnsafeCell<u64>>,
}

fn shared(size: usize) -> Arc<Shared> {
    Arc::new(Shared {
        ring: HeapStream::new(size),
        cells: (0..size / 8).map(|_| UnsafeCell::new(0)).collect(),
    })
}

/// Frames one 8-byte record holding `value` (not published).
fn frame(s: &Shared, tx: &mut SendCursor, value: u64) -> bool {
    match claim_send(&s.ring, tx, 8) {
        Ok(at) => {
            // SAFETY (model): the claim gives the producer this word.
            s.cells[(at / 8) as usize].with_mut(|p| unsafe { *p = value });
            commit_send(&s.ring, tx, 8);
            true
        }
        Err(StreamError::WouldBlock) => false,
        Err(e) => panic!("{e:?}"),
    }
}

/// Reads the next record, stepping past it (not published).
fn take(s: &Shared, rx: &mut RecvCursor) -> Option<u64> {
    match claim_recv(&s.ring, rx, 8) {
        Ok(rec) => {
            assert_eq!(rec.len, 8);
            // SAFETY (model): `tail` published this word to the consumer.
            let v = s.cells[(rec.offset / 8) as usize].with(|p| unsafe { *p });
            step_recv(&s.ring, rx, rec.len);
            Some(v)
        }
        Err(StreamError::WouldBlock) => None,
        Err(e) => panic!("{e:?}"),
    }
}

fn drain(s: &Shared, rx: &mut RecvCursor, got: &mut Vec<u64>) {
    while let Some(v) = take(s, rx) {
        got.push(v);
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    crate::loom_check::check(Some(3), f);
}

/// Producer and consumer race around a 40-byte ring (two 16-byte records
/// and 8 bytes of padding a lap) in batches of two: four records, so the
/// third follows a padding record and starts the next lap. The consumer
/// sees whole values, in order; nobody writes what the other reads.
/// Fails with `publish_send`'s Release or `claim_recv`'s Acquire made
/// Relaxed (a race on the payload), and with `publish_recv`'s Release or
/// `has_room`'s Acquire made Relaxed (the producer overwrites a record
/// being read).
#[test]
fn batches_wrap_through_padding() {
    model(|| {
        let s = shared(40);
        let p = {
            let s = s.clone();
            loom::thread::spawn(move || {
                let mut tx = resume_send(&s.ring).unwrap();
                let mut sent = 0;
                for v in 1..=4 {
                    if !frame(&s, &mut tx, v) {
                        break;
                    }
                    sent += 1;
                    if v % 2 == 0 {
                        publish_send(&s.ring, &mut tx);
                    }
                }
                publish_send(&s.ring, &mut tx);
                sent
            })
        };
        let c = {
            let s = s.clone();
            loom::thread::spawn(move || {
                let mut rx = resume_recv(&s.ring).unwrap();
                let mut got = Vec::new();
                for _ in 0..2 {
                    drain(&s, &mut rx, &mut got);
                    publish_recv(&s.ring, &mut rx);
                }
                (got, rx)
            })
        };
        let sent = p.join().unwrap();
        let (mut got, mut rx) = c.join().unwrap();
        drain(&s, &mut rx, &mut got);
        assert_eq!(got, (1..=sent).collect::<Vec<u64>>());
    });
}

/// A producer frames a record and dies before publishing it; a new one
/// takes over while the consumer reads. The consumer never sees the dead
/// producer's record, and the new producer's writes over it never race
/// with a read. Fails with `publish_send`'s Release or `claim_recv`'s
/// Acquire made Relaxed.
#[test]
fn a_new_producer_takes_over_while_the_consumer_reads() {
    model(|| {
        let s = shared(48);
        let p = {
            let s = s.clone();
            loom::thread::spawn(move || {
                let mut dead = resume_send(&s.ring).unwrap();
                assert!(frame(&s, &mut dead, 1));
                publish_send(&s.ring, &mut dead);
                assert!(frame(&s, &mut dead, 99)); // never published
                let mut tx = resume_send(&s.ring).unwrap();
                assert_eq!(tx.tail, 16);
                assert!(frame(&s, &mut tx, 2));
                publish_send(&s.ring, &mut tx);
            })
        };
        let c = {
            let s = s.clone();
            loom::thread::spawn(move || {
                let mut rx = resume_recv(&s.ring).unwrap();
                let mut got = Vec::new();
                for _ in 0..2 {
                    drain(&s, &mut rx, &mut got);
                }
                (got, rx)
            })
        };
        p.join().unwrap();
        let (mut got, mut rx) = c.join().unwrap();
        drain(&s, &mut rx, &mut got);
        assert_eq!(got, vec![1, 2]);
    });
}

/// A consumer reads two records and dies before publishing the second as
/// read; a new one takes over while the producer tries to write into the
/// full ring. The second record is delivered again, nothing is lost, and
/// the producer writes over the first only after it was read. Fails with
/// `publish_recv`'s Release or `has_room`'s Acquire made Relaxed.
#[test]
fn a_new_consumer_takes_over_while_the_producer_writes() {
    model(|| {
        let s = shared(32);
        {
            let mut tx = resume_send(&s.ring).unwrap();
            assert!(frame(&s, &mut tx, 1) && frame(&s, &mut tx, 2));
            publish_send(&s.ring, &mut tx);
        }
        let p = {
            let s = s.clone();
            loom::thread::spawn(move || {
                let mut tx = resume_send(&s.ring).unwrap();
                let sent = frame(&s, &mut tx, 3);
                publish_send(&s.ring, &mut tx);
                sent
            })
        };
        let c = {
            let s = s.clone();
            loom::thread::spawn(move || {
                let mut dead = resume_recv(&s.ring).unwrap();
                assert_eq!(take(&s, &mut dead), Some(1));
                publish_recv(&s.ring, &mut dead);
                assert_eq!(take(&s, &mut dead), Some(2)); // then killed
                let mut rx = resume_recv(&s.ring).unwrap();
                let mut got = Vec::new();
                drain(&s, &mut rx, &mut got);
                publish_recv(&s.ring, &mut rx);
                (got, rx)
            })
        };
        let third = p.join().unwrap();
        let (mut got, mut rx) = c.join().unwrap();
        drain(&s, &mut rx, &mut got);
        assert_eq!(got, if third { vec![2, 3] } else { vec![2] });
    });
}
