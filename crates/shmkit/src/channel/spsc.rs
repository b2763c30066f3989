//! The single-producer / single-consumer ring: the fast path for a channel
//! created with [`ChannelOptions::spsc`](super::ChannelOptions::spsc).
//!
//! # Algorithm
//! Each slot's first word is its *sequence*: `p + 1` once the message for
//! position `p` is published there, and the two positions are plain
//! counters, each written by one side only:
//!
//! ```text
//! word            written by          read by
//! slot sequence   producer (publish)  consumer, polling the slot it reads next
//! enqueue         producer            a new producer taking over; stats
//! dequeue         consumer            producer, only when it thinks the ring is full
//! ```
//!
//! A message moves in the slot's own cache lines: the consumer polls the
//! very line the producer wrote, and it never writes a slot. The producer
//! keeps its own copy of `dequeue` and reloads it only when that copy says
//! the ring is full, so the consumer's position line crosses once per
//! ring's worth of messages, not once per message. This is why this ring
//! moves a message with one cache-line transfer where the multi-producer
//! ring (`ring`) needs two and two compare-and-swaps.
//!
//! # Crashes
//! - A producer killed before it stores the sequence published nothing; the
//!   next producer writes the same slot again. One killed between the
//!   sequence and its `enqueue` store left `enqueue` one behind: a new
//!   producer ([`resume_send`]) walks forward over slots whose sequence says
//!   they are published, at most one lap.
//! - A consumer advances `dequeue` only after it has copied a message out,
//!   so one killed while holding a message leaves it for the next consumer:
//!   the message is delivered again (at least once), never lost.
//!
//! # Untrusted memory
//! The sequence of slot `p % cap` is always `p + 1` (published) or the one
//! from the lap before (`p + 1 - cap`, or 0 on the first lap); any other
//! value, or positions more than a ring apart, is reported as corrupt.

use crate::channel::ring::RingWords;
use crate::primitive::{fence, Ordering};

/// Why a step did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpscError {
    /// Full (producer) or empty (consumer).
    WouldBlock,
    /// A slot sequence the protocol never writes.
    CorruptSlot { index: usize, word: u64 },
    /// Positions that no run of the protocol produces.
    CorruptPositions { enqueue: u64, dequeue: u64 },
}

/// The producer's private state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendCursor {
    /// The next position to write.
    pub tail: u64,
    /// The consumer's position as last loaded: room is `cap - (tail - head_seen)`
    /// at least.
    head_seen: u64,
}

/// The consumer's private state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecvCursor {
    /// The next position to read.
    pub head: u64,
}

/// Zeroes the slot sequences and both positions.
pub(crate) fn init(words: &impl RingWords) {
    for i in 0..words.capacity() as usize {
        words.slot_state(i).store(0, Ordering::Relaxed);
    }
    words.enqueue_pos().store(0, Ordering::Relaxed);
    words.dequeue_pos().store(0, Ordering::Relaxed);
}

/// Positions from here on are garbage: at 10⁹ messages a second a channel
/// takes 146 years to get there, and below it `pos + 1` and `pos + cap`
/// cannot overflow.
const MAX_POSITION: u64 = 1 << 62;

/// The sequence slot `pos % cap` holds while `pos` is not yet published.
fn unpublished(pos: u64, cap: u64) -> u64 {
    pos.saturating_add(1).saturating_sub(cap)
}

/// Whether `enqueue` and `dequeue` are positions a run of the protocol can
/// leave: below [`MAX_POSITION`], at most a ring apart, and the consumer at
/// most one past the stored `enqueue` (a producer killed between
/// publishing and storing `enqueue` leaves it one behind).
fn positions_ok(enqueue: u64, dequeue: u64, cap: u64) -> bool {
    enqueue < MAX_POSITION
        && dequeue < MAX_POSITION
        && dequeue <= enqueue + 1
        && enqueue.saturating_sub(dequeue) <= cap
}

/// Where a producer starts: the stored `enqueue`, moved past positions
/// already published (a predecessor killed between publishing and storing
/// `enqueue`).
pub(crate) fn resume_send(words: &impl RingWords) -> Result<SendCursor, SpscError> {
    let cap = words.capacity();
    // Acquire: pairs with the predecessor's Release stores.
    let mut tail = words.enqueue_pos().load(Ordering::Acquire);
    let head = words.dequeue_pos().load(Ordering::Acquire);
    if !positions_ok(tail, head, cap) {
        return Err(SpscError::CorruptPositions {
            enqueue: tail,
            dequeue: head,
        });
    }
    for _ in 0..cap {
        let word = words
            .slot_state((tail & (cap - 1)) as usize)
            .load(Ordering::Acquire);
        if word != tail.wrapping_add(1) {
            break;
        }
        tail += 1;
    }
    if head > tail || tail - head > cap {
        return Err(SpscError::CorruptPositions {
            enqueue: tail,
            dequeue: head,
        });
    }
    words.enqueue_pos().store(tail, Ordering::Release);
    Ok(SendCursor {
        tail,
        head_seen: head,
    })
}

/// Where a consumer starts: the stored `dequeue`, checked against
/// `enqueue` (a garbage `dequeue` such as `u64::MAX` would otherwise make a
/// never-written slot look published).
pub(crate) fn resume_recv(words: &impl RingWords) -> Result<RecvCursor, SpscError> {
    // Acquire: pairs with the predecessor's Release store after its copy-out.
    let head = words.dequeue_pos().load(Ordering::Acquire);
    // Acquire: pairs with the producer's Release store of `enqueue`.
    let enqueue = words.enqueue_pos().load(Ordering::Acquire);
    if !positions_ok(enqueue, head, words.capacity()) {
        return Err(SpscError::CorruptPositions {
            enqueue,
            dequeue: head,
        });
    }
    Ok(RecvCursor { head })
}

/// The slot index the producer may write next, if there is room.
#[inline]
pub(crate) fn claim_send(words: &impl RingWords, cur: &mut SendCursor) -> Result<usize, SpscError> {
    let cap = words.capacity();
    if cur.tail.wrapping_sub(cur.head_seen) >= cap {
        // Acquire: pairs with the consumer's Release store of `dequeue`,
        // made after it copied the message out: it is done with the slot
        // we are about to overwrite.
        let head = words.dequeue_pos().load(Ordering::Acquire);
        if head > cur.tail || cur.tail - head > cap || cur.tail >= MAX_POSITION {
            return Err(SpscError::CorruptPositions {
                enqueue: cur.tail,
                dequeue: head,
            });
        }
        cur.head_seen = head;
        if cur.tail - head >= cap {
            return Err(SpscError::WouldBlock);
        }
    }
    Ok((cur.tail & (cap - 1)) as usize)
}

/// Publishes the slot `claim_send` gave, after its length and payload are
/// written. The caller then notifies the consumer's event (whose SeqCst
/// fence completes the Dekker pair of the wait protocol, see `sync::Event`).
#[inline]
pub(crate) fn commit_send(words: &impl RingWords, cur: &mut SendCursor) {
    let cap = words.capacity();
    let index = (cur.tail & (cap - 1)) as usize;
    // Release: pairs with the consumer's Acquire load of the sequence; the
    // length and payload written before are visible with it.
    // Wrapping: `tail` < MAX_POSITION while `claim_send` admits it.
    words
        .slot_state(index)
        .store(cur.tail.wrapping_add(1), Ordering::Release);
    cur.tail = cur.tail.wrapping_add(1);
    // Release: a producer that takes over reads it with Acquire; the
    // consumer never waits on it.
    words.enqueue_pos().store(cur.tail, Ordering::Release);
}

/// The slot holding the next message, if it is published.
#[inline]
pub(crate) fn claim_recv(words: &impl RingWords, cur: &RecvCursor) -> Result<usize, SpscError> {
    let cap = words.capacity();
    let index = (cur.head & (cap - 1)) as usize;
    // Acquire: pairs with the producer's Release store of the sequence.
    let word = words.slot_state(index).load(Ordering::Acquire);
    // `head < MAX_POSITION` (checked at resume, one step per message), so
    // `head + 1` never wraps to a never-written slot's 0.
    if word == cur.head.wrapping_add(1) && word != 0 {
        Ok(index)
    } else if word == unpublished(cur.head, cap) {
        Err(SpscError::WouldBlock)
    } else {
        Err(SpscError::CorruptSlot { index, word })
    }
}

/// The consumer's way past a slot sequence `word` (at its `head`) that the
/// protocol never writes, if the slot still holds it. A position the
/// producer has passed (`head < enqueue`) was published and then damaged:
/// the consumer moves past it (the message is dropped). One it has not
/// reached yet is reset to "unpublished" (by compare-and-swap: a producer's
/// publish wins), and the producer writes it as usual.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn skip_corrupt(words: &impl RingWords, cur: &mut RecvCursor, word: u64) {
    let cap = words.capacity();
    let slot = words.slot_state((cur.head & (cap - 1)) as usize);
    // Acquire: pairs with the producer's Release store of `enqueue`.
    let enqueue = words.enqueue_pos().load(Ordering::Acquire);
    if cur.head < enqueue {
        // Relaxed: we only compare; the position is dropped either way
        // unless the slot changed (then the next claim looks again).
        if slot.load(Ordering::Relaxed) == word {
            release_recv(words, cur);
        }
    } else {
        let _ = slot.compare_exchange(
            word,
            unpublished(cur.head, cap),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

/// Frees the slot `claim_recv` gave, after the message was copied out.
#[inline]
pub(crate) fn release_recv(words: &impl RingWords, cur: &mut RecvCursor) {
    step_recv(cur);
    publish_recv(words, cur);
}

/// Moves past the slot `claim_recv` gave without telling the producer yet:
/// a batch frees its slots with one [`publish_recv`] at its end, so the
/// consumer's position line crosses once per batch, not once per message.
#[inline]
pub(crate) fn step_recv(cur: &mut RecvCursor) {
    // Wrapping: a message at `head` was published as `head + 1`, so it did
    // not overflow.
    cur.head = cur.head.wrapping_add(1);
}

/// Tells the producer every slot up to the cursor is free.
#[inline]
pub(crate) fn publish_recv(words: &impl RingWords, cur: &RecvCursor) {
    // Release: pairs with the producer's Acquire load in `claim_send`: our
    // reads of the slots are finished before it overwrites them.
    words.dequeue_pos().store(cur.head, Ordering::Release);
}

/// Admission of a new endpoint, after it claimed entry `mine` of the
/// endpoint table with a compare-and-swap: the first other entry `load(j)`
/// shows whose word `is_rival` accepts (a live endpoint of the same role),
/// if any. The joiner is admitted only when there is none; otherwise it
/// leaves its entry again.
///
/// Two endpoints joining at once each write their own entry and then read
/// the other's: Dekker's pattern. Without a fence both reads may miss the
/// other's write (store buffering) and both be admitted.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn rival(
    entries: usize,
    mine: usize,
    load: impl Fn(usize) -> u64,
    mut is_rival: impl FnMut(u64) -> bool,
) -> Option<u64> {
    // SYNC POINT (Dekker): pairs with the same fence in a concurrent
    // joiner, between its claim of its own entry and its reads here. The
    // fences are ordered one way or the other, and the later one's reads
    // see the earlier joiner's claim: at most one of two is admitted.
    fence(Ordering::SeqCst);
    (0..entries).filter(|&j| j != mine).find_map(|j| {
        // Relaxed would do (ordered by the fence); Acquire also orders what
        // the caller reads about that endpoint after it.
        let word = load(j);
        (word != 0 && is_rival(word)).then_some(word)
    })
}

/// Load-only: could the producer at `tail` write now?
pub(crate) fn may_send(words: &impl RingWords, tail: u64) -> bool {
    let head = words.dequeue_pos().load(Ordering::Relaxed);
    // Garbage (head past tail) counts as "go and look": the claim reports it.
    head > tail || tail - head < words.capacity()
}

/// Load-only: could the consumer at `head` read now (or report garbage)?
pub(crate) fn may_recv(words: &impl RingWords, head: u64) -> bool {
    let cap = words.capacity();
    let word = words
        .slot_state((head & (cap - 1)) as usize)
        .load(Ordering::Relaxed);
    word != unpublished(head, cap)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::channel::ring::heap::HeapRing;

    fn ring(cap: usize) -> HeapRing {
        let r = HeapRing::new(cap);
        init(&r);
        r
    }

    #[test]
    fn fills_drains_and_wraps_in_order() {
        let r = ring(4);
        let mut tx = resume_send(&r).unwrap();
        let mut rx = resume_recv(&r).unwrap();
        for round in 0..10u64 {
            for _ in 0..(round % 4) + 1 {
                let i = claim_send(&r, &mut tx).unwrap();
                assert_eq!(i as u64, tx.tail % 4);
                commit_send(&r, &mut tx);
            }
            while let Ok(i) = claim_recv(&r, &rx) {
                assert_eq!(i as u64, rx.head % 4);
                release_recv(&r, &mut rx);
            }
            assert_eq!(tx.tail, rx.head);
            assert_eq!(claim_recv(&r, &rx), Err(SpscError::WouldBlock));
            assert!(!may_recv(&r, rx.head));
        }
        for _ in 0..4 {
            claim_send(&r, &mut tx).unwrap();
            commit_send(&r, &mut tx);
        }
        assert_eq!(claim_send(&r, &mut tx), Err(SpscError::WouldBlock));
        assert!(!may_send(&r, tx.tail));
        assert!(may_recv(&r, rx.head));
    }

    #[test]
    fn a_new_producer_resumes_after_what_was_published() {
        let r = ring(4);
        let mut tx = resume_send(&r).unwrap();
        for _ in 0..3 {
            claim_send(&r, &mut tx).unwrap();
            commit_send(&r, &mut tx);
        }
        // The predecessor died between publishing position 3 and storing
        // `enqueue`: put it back one behind, as such a crash leaves it.
        claim_send(&r, &mut tx).unwrap();
        commit_send(&r, &mut tx);
        r.enqueue.store(3, Ordering::Relaxed);
        let tx2 = resume_send(&r).unwrap();
        assert_eq!(tx2.tail, 4);
        // One that died before publishing is simply written again.
        let r = ring(4);
        let mut tx = resume_send(&r).unwrap();
        claim_send(&r, &mut tx).unwrap();
        assert_eq!(resume_send(&r).unwrap().tail, 0);
    }

    #[test]
    fn a_new_consumer_gets_the_message_its_predecessor_held() {
        let r = ring(2);
        let mut tx = resume_send(&r).unwrap();
        claim_send(&r, &mut tx).unwrap();
        commit_send(&r, &mut tx);
        let rx = resume_recv(&r).unwrap();
        assert_eq!(claim_recv(&r, &rx), Ok(0)); // then killed: no release
        let rx2 = resume_recv(&r).unwrap();
        assert_eq!(claim_recv(&r, &rx2), Ok(0));
    }

    #[test]
    fn garbage_is_reported_not_trusted() {
        let r = ring(4);
        r.slots[0].store(77, Ordering::Relaxed);
        assert_eq!(
            claim_recv(&r, &resume_recv(&r).unwrap()),
            Err(SpscError::CorruptSlot { index: 0, word: 77 })
        );
        let r = ring(4);
        r.dequeue.store(9, Ordering::Relaxed);
        assert!(matches!(
            resume_send(&r),
            Err(SpscError::CorruptPositions { .. })
        ));
        // Issue 15, defect 8: a dequeue of u64::MAX made the slot it names
        // (never written: sequence 0 = MAX + 1) look published.
        for garbage in [u64::MAX, 1 << 62, 9] {
            r.dequeue.store(garbage, Ordering::Relaxed);
            assert!(matches!(
                resume_recv(&r),
                Err(SpscError::CorruptPositions { .. })
            ));
            assert_eq!(
                claim_recv(&r, &RecvCursor { head: u64::MAX }),
                Err(SpscError::CorruptSlot { index: 3, word: 0 })
            );
        }
        let r = ring(4);
        let mut tx = resume_send(&r).unwrap();
        for _ in 0..4 {
            claim_send(&r, &mut tx).unwrap();
            commit_send(&r, &mut tx);
        }
        r.dequeue.store(100, Ordering::Relaxed);
        assert!(matches!(
            claim_send(&r, &mut tx),
            Err(SpscError::CorruptPositions { .. })
        ));
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p shmkit --lib --release channel::spsc`
    //!
    //! The payload lives in a loom `UnsafeCell`: a producer's write racing
    //! with the consumer's read of the same slot is reported as a data race,
    //! which is what the sequences and positions must rule out.
    //!
    //! Every concurrent role runs in a spawned thread and the model's main
    //! thread only joins (see `crate::loom_check` for why: loom#392).
    use super::*;
    use crate::channel::ring::heap::HeapRing;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    struct Shared {
        ring: HeapRing,
        payload: Vec<UnsafeCell<u64>>,
    }

    fn shared(cap: usize) -> Arc<Shared> {
        let ring = HeapRing::new(cap);
        init(&ring);
        Arc::new(Shared {
            ring,
            payload: (0..cap).map(|_| UnsafeCell::new(0)).collect(),
        })
    }

    fn send(s: &Shared, tx: &mut SendCursor, value: u64) -> bool {
        match claim_send(&s.ring, tx) {
            Ok(i) => {
                // SAFETY (model): the cursor gives the producer this slot.
                s.payload[i].with_mut(|p| unsafe { *p = value });
                commit_send(&s.ring, tx);
                true
            }
            Err(SpscError::WouldBlock) => false,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn recv(s: &Shared, rx: &mut RecvCursor) -> Option<u64> {
        match claim_recv(&s.ring, rx) {
            Ok(i) => {
                // SAFETY (model): the sequence gives the consumer this slot.
                let v = s.payload[i].with(|p| unsafe { *p });
                release_recv(&s.ring, rx);
                Some(v)
            }
            Err(SpscError::WouldBlock) => None,
            Err(e) => panic!("{e:?}"),
        }
    }

    /// Runs through `crate::loom_check`, which fails a model that explored
    /// only one interleaving.
    fn model(f: impl Fn() + Sync + Send + 'static) {
        crate::loom_check::check(Some(3), f);
    }

    /// Producer and consumer race around a one-slot ring for three laps:
    /// the consumer sees whole values, in order, and the producer never
    /// overwrites a slot being read.
    #[test]
    fn producer_and_consumer_race_over_one_slot() {
        model(|| {
            let s = shared(1);
            let p = {
                let s = s.clone();
                loom::thread::spawn(move || {
                    let mut tx = resume_send(&s.ring).unwrap();
                    let mut sent = 0;
                    for v in 1..=3 {
                        if !send(&s, &mut tx, v) {
                            break;
                        }
                        sent += 1;
                    }
                    sent
                })
            };
            let c = {
                let s = s.clone();
                loom::thread::spawn(move || {
                    let mut rx = resume_recv(&s.ring).unwrap();
                    let mut got = Vec::new();
                    for _ in 0..3 {
                        if let Some(v) = recv(&s, &mut rx) {
                            got.push(v);
                        }
                    }
                    (got, rx)
                })
            };
            let sent = p.join().unwrap();
            let (mut got, mut rx) = c.join().unwrap();
            while let Some(v) = recv(&s, &mut rx) {
                got.push(v);
            }
            // Everything sent arrives, in order; what arrived was sent.
            assert_eq!(got, (1..=sent).collect::<Vec<u64>>());
        });
    }

    /// Two producers join an SPSC channel at once (issue 15, defect 4):
    /// each claims its own endpoint entry and looks for a rival through
    /// `rival`. At most one is admitted; whoever is refused leaves. Fails
    /// with the fence in `rival` removed (both admitted).
    #[test]
    fn two_joiners_are_never_both_admitted() {
        use crate::primitive::AtomicU64;
        let outcomes = crate::loom_check::check(None, || {
            let table = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
            let join = |me: usize| {
                let table = table.clone();
                loom::thread::spawn(move || {
                    let word = me as u64 + 1;
                    table[me]
                        .compare_exchange(0, word, Ordering::AcqRel, Ordering::Relaxed)
                        .unwrap();
                    let admitted =
                        rival(2, me, |j| table[j].load(Ordering::Acquire), |_| true).is_none();
                    if !admitted {
                        table[me].store(0, Ordering::Release);
                    }
                    admitted
                })
            };
            let a = join(0);
            let b = join(1);
            let got = (a.join().unwrap(), b.join().unwrap());
            assert!(!(got.0 && got.1), "two producers admitted");
            got
        });
        assert!(outcomes.contains(&(true, false)));
        assert!(outcomes.contains(&(false, true)));
    }

    /// A consumer taking over while the producer runs starts where its
    /// predecessor stopped and sees every later message once.
    #[test]
    fn consumer_takeover_races_with_the_producer() {
        model(|| {
            let s = shared(2);
            {
                let mut tx = resume_send(&s.ring).unwrap();
                assert!(send(&s, &mut tx, 1));
            }
            let p = {
                let s = s.clone();
                loom::thread::spawn(move || {
                    let mut tx = resume_send(&s.ring).unwrap();
                    assert_eq!(tx.tail, 1);
                    assert!(send(&s, &mut tx, 2));
                    // Room for a third only once the consumer freed one.
                    send(&s, &mut tx, 3)
                })
            };
            let c = {
                let s = s.clone();
                loom::thread::spawn(move || {
                    let mut first = resume_recv(&s.ring).unwrap();
                    assert_eq!(recv(&s, &mut first), Some(1));
                    let mut second = resume_recv(&s.ring).unwrap();
                    let got = recv(&s, &mut second);
                    (got, second)
                })
            };
            let third = p.join().unwrap();
            let (got, mut second) = c.join().unwrap();
            let mut all: Vec<u64> = got.into_iter().collect();
            while let Some(v) = recv(&s, &mut second) {
                all.push(v);
            }
            assert_eq!(all, if third { vec![2, 3] } else { vec![2] });
        });
    }
}
