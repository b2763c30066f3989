//! The lossless broadcast's gate: the writer may not overwrite a message
//! that a gating subscriber has not read yet (the Disruptor's shape, over
//! the same ring as the lossy broadcast).
//!
//! # Words
//! Each subscriber entry has a `state` word and a `cursor` word (the next
//! position it will read), both written by that subscriber, except that
//! the writer may move `state` from `GATING` to `EVICTED`:
//!
//! ```text
//! state = 0         not in the gate (free, joining, or a lossy broadcast)
//! state = GATING    the writer waits for this cursor
//! state = EVICTED   cut off by the writer: no longer waited for
//! ```
//!
//! # Algorithm
//! The writer keeps a `limit`: it may write every position below it
//! without looking at the subscribers. At the limit it computes a new one
//! ([`limit`]): a SeqCst fence, then for every `GATING` entry its cursor
//! (Acquire); the new limit is `min(cursors, position) + capacity`. When
//! that is still not above the position it waits (the caller: bounded spin,
//! then the gate bell, dropping dead subscribers and evicting laggards
//! between sleeps).
//!
//! A subscriber, after copying message `c`, stores `c + 1` in its cursor
//! (Release): SYNC POINT with the writer's Acquire load of it in
//! [`limit`], so the copy is finished before the writer reuses the slot.
//!
//! # Joining without a window
//! A subscriber joins ([`join`]) by storing a provisional cursor `h1` (the
//! head it read), then `state = GATING` (Release), then a SeqCst fence,
//! then reading the head again (`h2`) and starting there. Dekker's pattern
//! with the writer's "store head, SeqCst fence, scan": either the writer's
//! scan sees the entry (and gates at `h1 <= h2`: no later message is
//! overwritten before this subscriber reads it), or the subscriber's second
//! read of the head sees at least the position `p` at which the writer
//! scanned, and the limit that scan gave is at most `p + capacity <= h2 +
//! capacity`: position `h2` and everything after it are still to be
//! written when the subscriber looks. The loom model below fails when
//! either fence is weakened to AcqRel.

use crate::primitive::{fence, AtomicU64, Ordering};

/// `state`: the writer waits for this subscriber.
pub(crate) const GATING: u64 = 1;
/// `state`: the writer cut this subscriber off (evict-after policy).
pub(crate) const EVICTED: u64 = 2;

/// Where the gate's words live: the subscriber table in production, the
/// heap under loom.
pub(crate) trait GateWords {
    /// The ring's capacity: how far the writer may run ahead.
    fn lap(&self) -> u64;
    fn entries(&self) -> usize;
    fn state(&self, entry: usize) -> &AtomicU64;
    fn cursor(&self, entry: usize) -> &AtomicU64;
}

/// The first position the writer at `position` may not write yet: the
/// slowest gating cursor (clamped to `position`: a cursor ahead of the
/// writer is garbage or a joiner's, and gates nothing) plus the capacity.
/// Above `position` when there is room.
pub(crate) fn limit(words: &impl GateWords, position: u64) -> u64 {
    // SYNC POINT (Dekker, see "Joining without a window"): pairs with the
    // joiner's fence between storing GATING and reading the head again.
    // The head this writer stored (commit, Release) is ordered before it.
    fence(Ordering::SeqCst);
    slowest(words, position).saturating_add(words.lap())
}

/// The slowest gating cursor, at most `position`.
pub(crate) fn slowest(words: &impl GateWords, position: u64) -> u64 {
    let mut slowest = position;
    for i in 0..words.entries() {
        // Acquire: pairs with the joiner's Release store of GATING (its
        // provisional cursor is visible).
        if words.state(i).load(Ordering::Acquire) == GATING {
            // Acquire: SYNC POINT with the subscriber's Release store of
            // its cursor after a copy: that copy is done.
            slowest = slowest.min(words.cursor(i).load(Ordering::Acquire));
        }
    }
    slowest
}

/// Whether entry `i` is one the writer at `position` waits for now.
pub(crate) fn blocks(words: &impl GateWords, i: usize, position: u64) -> bool {
    // Relaxed: a hint for whom to check for liveness or evict; the caller
    // acts with a compare-and-swap and then recomputes the limit.
    words.state(i).load(Ordering::Relaxed) == GATING
        && position.saturating_sub(words.cursor(i).load(Ordering::Relaxed)) >= words.lap()
}

/// A subscriber's join (module doc): `provisional` is the head it read
/// first; `head` reads the head again. Returns where it starts.
pub(crate) fn join(
    words: &impl GateWords,
    entry: usize,
    provisional: u64,
    head: impl FnOnce() -> u64,
) -> u64 {
    // Relaxed: published by the Release store of GATING below.
    words.cursor(entry).store(provisional, Ordering::Relaxed);
    // Release: pairs with the writer's Acquire load of the state in
    // `slowest`: it sees the provisional cursor, never a previous
    // occupant's.
    words.state(entry).store(GATING, Ordering::Release);
    // SYNC POINT (Dekker): pairs with the writer's fence in `limit`.
    fence(Ordering::SeqCst);
    let start = head().max(provisional);
    // Release: as for every cursor store (`advance`).
    words.cursor(entry).store(start, Ordering::Release);
    start
}

/// A subscriber has copied every message below `cursor`.
#[inline]
pub(crate) fn advance(words: &impl GateWords, entry: usize, cursor: u64) {
    // Release: SYNC POINT with the writer's Acquire load in `slowest`.
    words.cursor(entry).store(cursor, Ordering::Release);
}

/// The writer cuts entry `i` off if it still gates; returns whether it did.
pub(crate) fn evict(words: &impl GateWords, i: usize) -> bool {
    // AcqRel: one transition, ordered with the subscriber's own stores.
    words
        .state(i)
        .compare_exchange(GATING, EVICTED, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

#[cfg(test)]
pub(crate) mod heap {
    //! Gate words on the heap, beside a [`HeapRing`](super::super::ring::heap::HeapRing).
    use super::*;

    pub(crate) struct HeapGate {
        pub capacity: u64,
        pub state: Vec<AtomicU64>,
        pub cursor: Vec<AtomicU64>,
    }

    impl HeapGate {
        pub(crate) fn new(capacity: u64, entries: usize) -> Self {
            let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
            HeapGate {
                capacity,
                state: zeros(entries),
                cursor: zeros(entries),
            }
        }
    }

    impl GateWords for HeapGate {
        fn lap(&self) -> u64 {
            self.capacity
        }
        fn entries(&self) -> usize {
            self.state.len()
        }
        fn state(&self, entry: usize) -> &AtomicU64 {
            &self.state[entry]
        }
        fn cursor(&self, entry: usize) -> &AtomicU64 {
            &self.cursor[entry]
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::ring::{self, heap::HeapRing, Step};
    use super::heap::HeapGate;
    use super::*;

    #[test]
    fn the_slowest_gating_cursor_sets_the_limit() {
        let gate = HeapGate::new(4, 3);
        assert_eq!(limit(&gate, 10), 14, "nobody gates: a lap of room");
        assert_eq!(join(&gate, 0, 10, || 10), 10);
        assert_eq!(limit(&gate, 10), 14);
        assert_eq!(limit(&gate, 14), 14, "a lap ahead of it: full");
        assert!(blocks(&gate, 0, 14) && !blocks(&gate, 0, 13));
        advance(&gate, 0, 12);
        assert_eq!(limit(&gate, 14), 16);
        // A cursor ahead of the writer gates nothing more than the writer.
        gate.cursor[0].store(1 << 40, Ordering::Relaxed);
        assert_eq!(limit(&gate, 14), 18);
        // An evicted entry is not waited for.
        assert_eq!(join(&gate, 1, 3, || 3), 3);
        assert_eq!(limit(&gate, 7), 7);
        assert!(evict(&gate, 1));
        assert!(!evict(&gate, 1), "once");
        assert_eq!(limit(&gate, 7), 11);
    }

    /// A writer gated by one subscriber, both driven step by step: every
    /// message arrives, none is lost, and the writer is held at a lap.
    #[test]
    fn a_gated_writer_never_overwrites_an_unread_message() {
        let ring = HeapRing::new(4, 8);
        let gate = HeapGate::new(4, 1);
        let mut cursor = join(&gate, 0, 0, || ring::head(&ring));
        let (mut pos, mut lim) = (0u64, 0u64);
        let mut out = Vec::new();
        let mut got = 0u64;
        for round in 0..100u64 {
            // The writer writes as far as the gate lets it.
            for _ in 0..1 + round % 7 {
                if pos >= lim {
                    lim = limit(&gate, pos);
                    if pos >= lim {
                        break;
                    }
                }
                pos = ring::send(&ring, pos, &pos.to_ne_bytes());
            }
            assert!(pos - cursor <= 4);
            // The subscriber reads one or two.
            for _ in 0..1 + round % 2 {
                match ring::try_recv(&ring, cursor, &mut out) {
                    Step::Message { .. } => {
                        assert_eq!(out, cursor.to_ne_bytes());
                        cursor += 1;
                        got += 1;
                        advance(&gate, 0, cursor);
                    }
                    Step::Empty => {}
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(got, cursor);
        assert!(got > 50);
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p shmkit --release --lib broadcast::gate`
    //!
    //! Shown to catch a weakened ordering: with either SeqCst fence (in
    //! `limit` or in `join`) weakened to AcqRel, the joiner model fails
    //! ("lossless subscriber lagged"): the writer's scan misses the joiner
    //! and the joiner's second head read misses the writer's progress.
    use super::super::ring::{self, heap::HeapRing, Step};
    use super::heap::HeapGate;
    use super::*;
    use crate::loom_check::check as model;
    use loom::sync::Arc;

    struct Shared {
        ring: HeapRing,
        gate: HeapGate,
    }

    /// The writer: `n` messages, waiting (yielding) at the gate.
    fn writer(s: &Arc<Shared>, n: u64) -> loom::thread::JoinHandle<()> {
        let s = s.clone();
        loom::thread::spawn(move || {
            let (mut pos, mut lim) = (0u64, 0u64);
            while pos < n {
                if pos >= lim {
                    lim = limit(&s.gate, pos);
                    if pos >= lim {
                        loom::thread::yield_now();
                        continue;
                    }
                }
                pos = ring::send(&s.ring, pos, &pos.to_ne_bytes());
            }
        })
    }

    /// A subscriber that joins (while the writer runs) and reads until
    /// position `n`; returns what it received. A lag is a failure.
    fn subscriber(s: &Arc<Shared>, n: u64) -> loom::thread::JoinHandle<Vec<u64>> {
        let s = s.clone();
        loom::thread::spawn(move || {
            let first = ring::head(&s.ring);
            let mut cursor = join(&s.gate, 0, first, || ring::head(&s.ring));
            let mut got = Vec::new();
            let mut out = Vec::new();
            while cursor < n {
                match ring::try_recv(&s.ring, cursor, &mut out) {
                    Step::Message { .. } => {
                        assert_eq!(out, cursor.to_ne_bytes(), "wrong message");
                        got.push(cursor);
                        cursor += 1;
                        advance(&s.gate, 0, cursor);
                    }
                    Step::Empty => loom::thread::yield_now(),
                    Step::Lagged { .. } => panic!("lossless subscriber lagged at {cursor}"),
                    Step::Corrupt { .. } => panic!("corrupt"),
                }
            }
            got
        })
    }

    /// A writer sends 3 messages into a ring of 1 while a subscriber joins:
    /// whatever position it starts at, it receives every message from there
    /// on, in order, and never finds one overwritten. Outcomes: where it
    /// started (every start from 0 to 3 must be reached).
    #[test]
    fn a_joiner_never_misses_a_message_after_its_start() {
        let starts = model(Some(3), || {
            let s = Arc::new(Shared {
                ring: HeapRing::new(1, 8),
                gate: HeapGate::new(1, 1),
            });
            let w = writer(&s, 3);
            let r = subscriber(&s, 3);
            w.join().unwrap();
            let got = r.join().unwrap();
            let start = got.first().copied().unwrap_or(3);
            assert_eq!(got, (start..3).collect::<Vec<_>>());
            start
        });
        assert!(starts.len() >= 2, "starts reached: {starts:?}");
    }
}
