//! The broadcast ring: one writer that never waits, any number of
//! subscribers that each read every message, or learn exactly how many
//! they missed.
//!
//! # Algorithm
//! A ring of `capacity` slots (a power of two); message position `p` goes
//! to slot `p % capacity`, overwriting position `p - capacity`. Each slot
//! is guarded by its own sequence lock, whose word also says which
//! position the slot holds:
//!
//! ```text
//! slot seq = 0        never written
//! slot seq = 2p + 1   position p is being written (or its writer died)
//! slot seq = 2p + 2   position p is complete
//! ```
//!
//! and `head` is the next position the writer will write (every position
//! below it is complete). Writing position `p` (one writer at a time; the
//! broadcast's writer identity word makes sure):
//! 1. store `2p + 1` in the slot's seq (Release);
//! 2. a Release fence;
//! 3. store the length and data words (Relaxed);
//! 4. store `2p + 2` in the slot's seq (Release);
//! 5. store `p + 1` in `head` (Release).
//!
//! The writer never reads what subscribers do: a subscriber that falls
//! behind is overwritten, never waited for.
//!
//! A subscriber keeps its cursor `c` (the next position it wants) in its
//! own memory. To read it:
//! 1. `s1` = the seq of slot `c % capacity` (Acquire);
//! 2. if `s1` says position `c` is complete, copy the length and data
//!    words out (Relaxed), an Acquire fence, reload the seq (Relaxed): if
//!    it still equals `s1` the copy is message `c`, whole; if not, the
//!    writer overwrote it mid-copy and `c` is lost;
//! 3. if `s1` says an older position (or `c` itself, mid-write), nothing
//!    is there yet: wait;
//! 4. if `s1` says a newer position, `c` is lost.
//!
//! # Lag accounting
//! A subscriber that finds `c` lost loads `head` = `h` (Acquire) and
//! resumes at `max(h - slack(capacity), c + 1)`, where `slack(capacity) =
//! max(capacity / 2, 1)`: **half a ring behind the head** (the newest
//! message for a capacity of 1 or 2), reporting `resume - c` messages
//! missed.
//!
//! Why not the oldest position still in the ring, `h - capacity`? It is
//! the very slot the writer overwrites next: against a writer that
//! publishes faster than one read, a subscriber resuming there is
//! overwritten again before it finishes, lags again, and so on for ever,
//! receiving a ring-lap-old message now and then (a livelock). Resuming
//! half a ring behind leaves `capacity / 2` messages of slack before the
//! writer can reach the cursor again, so a subscriber reading at `r`
//! messages a second against a writer at `w > r` lags at most once per
//! `(capacity / 2) * r / (w - r)` messages it receives (and at least one
//! message follows every lag report): it receives a steady share `r / w`
//! of fresh messages, each less than a lap old. The other half is
//! history: a subscriber that stalled for a moment (a page fault, a
//! scheduler time slice) and can keep up on average still gets the newest
//! `capacity / 2` messages, then catches up. Resuming at the newest
//! message would give twice the slack but drop all of that history.
//!
//! The count is exact either way: positions from `c` up to `resume` are
//! skipped and counted missed, never delivered later. Position `c` was
//! really overwritten (its slot holds a newer position), and so was every
//! `x < h - capacity` (its slot was rewritten by `x + capacity < h`); the
//! ones from `h - capacity` up to `resume` were still in the ring and are
//! dropped to make the slack. `resume <= h - 1`, a message that is
//! complete (or `c + 1` when `h` looks older than that, see below). A
//! newer position in slot `c` means `h >= c + capacity` (the writer stored
//! `head` before it began that position, and the subscriber's Acquire load
//! of the slot's seq synchronises with that Release store). Every
//! position from `resume` on is later either received or counted missed,
//! so for each subscriber `received + missed` equals the positions
//! published after it joined, exactly.
//!
//! # Why a torn message is never accepted
//! As for the board's sequence lock: if the copy loaded any word stored
//! for a later position, that position's Release fence (writer step 2)
//! synchronises with the subscriber's Acquire fence, so the reload sees
//! that position's odd seq (or later) and differs from `s1`. Loom checks
//! it, and the lag arithmetic, in the models below.
//!
//! # A writer that dies
//! A writer killed between steps 1 and 4 leaves the slot's seq odd: the
//! message was never published, and subscribers wait at `c`. One killed
//! between 4 and 5 leaves a complete message that `head` does not count
//! yet. A new writer calls [`recover`] first, which counts the latter, then
//! writes from `head` on, rewriting an unfinished slot.
//!
//! Positions have 63 bits: at a billion messages a second they last 146
//! years.

use crate::primitive::{fence, AtomicU64, Ordering};
use crate::word_copy;

/// Where a broadcast ring's words live: shared memory in production, the
/// heap under loom. Implementations guarantee that `capacity()` is a power
/// of two, that `slot_seq(i)`, `slot_len(i)` and `slot_data(i)` are valid
/// for every `i < capacity()`, and that each `slot_data(i)` holds at least
/// `ceil(max_len() / 8)` words.
pub(crate) trait RingWords {
    fn capacity(&self) -> u64;
    fn max_len(&self) -> u64;
    /// The next position the writer will write.
    fn head(&self) -> &AtomicU64;
    fn slot_seq(&self, index: usize) -> &AtomicU64;
    fn slot_len(&self, index: usize) -> &AtomicU64;
    fn slot_data(&self, index: usize) -> &[AtomicU64];
}

/// What a slot's sequence word says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// Never written.
    Empty,
    /// Position `p` is being written (or its writer died).
    Writing(u64),
    /// Position `p` is complete.
    Complete(u64),
}

impl SlotState {
    pub(crate) fn decode(seq: u64) -> Self {
        match seq {
            0 => SlotState::Empty,
            s if s & 1 == 1 => SlotState::Writing(s >> 1),
            s => SlotState::Complete((s >> 1) - 1),
        }
    }

    fn position(self) -> Option<u64> {
        match self {
            SlotState::Empty => None,
            SlotState::Writing(p) | SlotState::Complete(p) => Some(p),
        }
    }
}

/// What one receive attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Message `cursor`, `len` bytes, copied out whole. Advance the cursor by one.
    Message { len: usize },
    /// Nothing at `cursor` yet.
    Empty,
    /// Messages `cursor..resume` are gone. Continue at `resume`.
    Lagged { resume: u64 },
    /// A state the protocol never writes: a peer wrote garbage.
    Corrupt { index: usize, seq: u64, len: u64 },
}

/// The slot of `position`.
#[inline]
pub(crate) fn index_of(words: &impl RingWords, position: u64) -> usize {
    (position & (words.capacity() - 1)) as usize
}

/// The next position the writer will write (Acquire: pairs with the
/// writer's Release store in `commit`; every position below is complete).
#[inline]
pub(crate) fn head(words: &impl RingWords) -> u64 {
    words.head().load(Ordering::Acquire)
}

/// `head`, checked against the slot of the position before it: when the
/// writer stored `head = h` (after completing `h - 1`), that slot held
/// `h - 1` complete, and a slot only moves on to later positions, so any
/// load after ours of `head` (Acquire) finds a position of at least `h - 1`
/// there. `None` when it does not: `head` is garbage (a hostile or broken
/// write), and lag arithmetic on it would report billions of messages
/// missed.
pub(crate) fn checked_head(words: &impl RingWords) -> Option<u64> {
    let h = head(words);
    if h == 0 {
        return Some(0);
    }
    let before = h - 1;
    // Acquire: as in `try_recv`, the slot's seq and what it names.
    let seq = words
        .slot_seq(index_of(words, before))
        .load(Ordering::Acquire);
    SlotState::decode(seq)
        .position()
        .is_some_and(|p| p >= before && index_of(words, p) == index_of(words, before))
        .then_some(h)
}

/// Load-only peek for waiting: is there something at `cursor` (a message,
/// or proof that it was lost)? Relaxed: a hint; `try_recv` decides.
#[inline]
pub(crate) fn ready(words: &impl RingWords, cursor: u64) -> bool {
    let seq = words
        .slot_seq(index_of(words, cursor))
        .load(Ordering::Relaxed);
    match SlotState::decode(seq) {
        SlotState::Empty => false,
        SlotState::Writing(p) => p > cursor,
        SlotState::Complete(p) => p >= cursor,
    }
}

/// One attempt to copy message `cursor` into `out` (cleared first).
pub(crate) fn try_recv(words: &impl RingWords, cursor: u64, out: &mut Vec<u8>) -> Step {
    let index = index_of(words, cursor);
    let slot = words.slot_seq(index);
    // Step 1. Acquire: pairs with the writer's Release stores of the slot's
    // seq (steps 1 and 4): the words of the position it names are visible,
    // and so is `head` as the writer stored it before.
    let s1 = slot.load(Ordering::Acquire);
    let state = SlotState::decode(s1);
    if let Some(p) = state.position() {
        // A slot only ever holds positions that map to it.
        if index_of(words, p) != index {
            return Step::Corrupt {
                index,
                seq: s1,
                len: 0,
            };
        }
    }
    match state {
        SlotState::Complete(p) if p == cursor => {}
        SlotState::Complete(p) | SlotState::Writing(p) if p > cursor => {
            return lagged(words, cursor)
        }
        // Never written, an older lap, or `cursor` itself mid-write.
        _ => return Step::Empty,
    }
    // Step 2. Relaxed: ordered by the fences (module doc). Untrusted:
    // clamped for the copy, checked once the copy is known consistent.
    let len = words.slot_len(index).load(Ordering::Relaxed);
    let data = words.slot_data(index);
    let n = len.min(words.max_len()).min(data.len() as u64 * 8) as usize;
    // Relaxed loads: a torn mix is caught by the re-check below.
    word_copy::load(data, n, out);
    // SYNC POINT: pairs with the writer's Release fence (its step 2): if a
    // load above saw a later position's word, the reload sees its odd seq.
    fence(Ordering::Acquire);
    // Relaxed: ordered after the copy by the fence above.
    if slot.load(Ordering::Relaxed) != s1 {
        // Overwritten while we copied: message `cursor` is lost.
        return lagged(words, cursor);
    }
    if len > words.max_len() {
        return Step::Corrupt {
            index,
            seq: s1,
            len,
        };
    }
    Step::Message { len: n }
}

/// How far behind the head a lagging subscriber resumes: half the ring,
/// at least one message (see "Lag accounting").
#[inline]
pub(crate) fn slack(capacity: u64) -> u64 {
    (capacity / 2).max(1)
}

/// Message `cursor` is gone: where to resume (see "Lag accounting"): half
/// a ring behind the head, never at or before `cursor`.
#[cold]
fn lagged(words: &impl RingWords, cursor: u64) -> Step {
    let Some(h) = checked_head(words) else {
        let index = index_of(words, cursor);
        return Step::Corrupt {
            index,
            // Relaxed: for the error message only.
            seq: words.slot_seq(index).load(Ordering::Relaxed),
            len: 0,
        };
    };
    let resume = h.saturating_sub(slack(words.capacity()));
    Step::Lagged {
        resume: resume.max(cursor.saturating_add(1)),
    }
}

/// How many messages subscribers can read: `head`, plus one when the
/// slot at `head` already holds that position complete (a writer between
/// its steps 4 and 5, or one that died there, which [`recover`] then
/// counts). Read-only: statistics report this, so that `published` agrees
/// with what a subscriber receives.
pub(crate) fn published(words: &impl RingWords) -> u64 {
    let h = head(words);
    // Acquire: pairs with the writer's Release store of the slot's seq.
    let seq = words.slot_seq(index_of(words, h)).load(Ordering::Acquire);
    if SlotState::decode(seq) == SlotState::Complete(h) {
        h.saturating_add(1)
    } else {
        h
    }
}

/// For a writer taking over: counts a message a dead writer completed but
/// did not add to `head` (died between steps 4 and 5), and returns the
/// position to write next.
/// `None` when `head` is garbage (see [`checked_head`]).
pub(crate) fn recover(words: &impl RingWords) -> Option<u64> {
    let pos = checked_head(words)?;
    // Acquire: pairs with the dead writer's Release store of the slot's
    // seq (its step 4): the message it completed is whole.
    let seq = words.slot_seq(index_of(words, pos)).load(Ordering::Acquire);
    if SlotState::decode(seq) == SlotState::Complete(pos) {
        // Release: pairs with the Acquire loads of `head`, as in `commit`.
        words.head().store(pos + 1, Ordering::Release);
        Some(pos + 1)
    } else {
        Some(pos)
    }
}

/// A message being written at `position`, from [`begin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    pub position: u64,
    pub index: usize,
}

/// Writer steps 1 and 2 for `position` (the writer's own count, starting
/// from [`recover`]).
pub(crate) fn begin(words: &impl RingWords, position: u64) -> Pending {
    let index = index_of(words, position);
    // Step 1. Release: pairs with the subscribers' Acquire load of the
    // slot's seq: one that sees this sees `head` = `position` (stored in
    // the previous commit, or loaded by `recover`), which its lag
    // arithmetic relies on.
    words
        .slot_seq(index)
        .store(position.wrapping_mul(2).wrapping_add(1), Ordering::Release);
    // Step 2, SYNC POINT: pairs with the subscribers' Acquire fence between
    // copy and re-check: one that loads a word stored below sees the odd
    // seq above when it re-checks.
    fence(Ordering::Release);
    Pending { position, index }
}

/// Writer step 3: the message's bytes. At most `max_len()` bytes (checked
/// by the caller; more panics).
pub(crate) fn store(words: &impl RingWords, pending: Pending, msg: &[u8]) {
    let data = words.slot_data(pending.index);
    assert!(msg.len() as u64 <= words.max_len());
    // Relaxed stores: published by the Release store in `commit`.
    word_copy::store(data, msg);
    // Relaxed: as above.
    words
        .slot_len(pending.index)
        .store(msg.len() as u64, Ordering::Relaxed);
}

/// Writer steps 4 and 5: publishes the message; returns the next position.
pub(crate) fn commit(words: &impl RingWords, pending: Pending) -> u64 {
    // Step 4. Release: pairs with the subscribers' Acquire load of the
    // slot's seq: the words stored above are visible to whoever sees it.
    words.slot_seq(pending.index).store(
        pending.position.wrapping_mul(2).wrapping_add(2),
        Ordering::Release,
    );
    // Step 5. Release: pairs with the Acquire loads of `head` (lag
    // arithmetic, a writer taking over, statistics).
    words.head().store(pending.position + 1, Ordering::Release);
    pending.position + 1
}

/// Writes one whole message at `position`; returns the next position.
pub(crate) fn send(words: &impl RingWords, position: u64, msg: &[u8]) -> u64 {
    let pending = begin(words, position);
    store(words, pending, msg);
    commit(words, pending)
}

#[cfg(test)]
pub(crate) mod heap {
    //! A ring whose words live on the heap, for unit and loom tests.
    use super::*;

    pub(crate) struct HeapRing {
        pub max_len: u64,
        pub head: AtomicU64,
        pub seq: Vec<AtomicU64>,
        pub len: Vec<AtomicU64>,
        pub data: Vec<Vec<AtomicU64>>,
    }

    impl HeapRing {
        pub(crate) fn new(capacity: usize, max_len: usize) -> Self {
            assert!(capacity.is_power_of_two());
            let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
            HeapRing {
                max_len: max_len as u64,
                head: AtomicU64::new(0),
                seq: zeros(capacity),
                len: zeros(capacity),
                data: (0..capacity).map(|_| zeros(max_len.div_ceil(8))).collect(),
            }
        }
    }

    impl RingWords for HeapRing {
        fn capacity(&self) -> u64 {
            self.seq.len() as u64
        }
        fn max_len(&self) -> u64 {
            self.max_len
        }
        fn head(&self) -> &AtomicU64 {
            &self.head
        }
        fn slot_seq(&self, index: usize) -> &AtomicU64 {
            &self.seq[index]
        }
        fn slot_len(&self, index: usize) -> &AtomicU64 {
            &self.len[index]
        }
        fn slot_data(&self, index: usize) -> &[AtomicU64] {
            &self.data[index]
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::heap::HeapRing;
    use super::*;

    fn recv(ring: &HeapRing, cursor: &mut u64) -> Result<Vec<u8>, u64> {
        let mut out = Vec::new();
        match try_recv(ring, *cursor, &mut out) {
            Step::Message { len } => {
                assert_eq!(len, out.len());
                *cursor += 1;
                Ok(out)
            }
            Step::Lagged { resume } => {
                let missed = resume - *cursor;
                *cursor = resume;
                Err(missed)
            }
            other => panic!("{other:?}"),
        }
    }

    /// A writer killed between publishing a slot (step 4) and counting it
    /// in `head` (step 5): subscribers read the message, so `published`
    /// counts it, before and after a new writer's `recover`.
    #[test]
    fn a_message_published_but_not_counted_in_head_is_counted() {
        let ring = HeapRing::new(4, 16);
        let mut pos = recover(&ring).unwrap();
        for _ in 0..5 {
            pos = send(&ring, pos, b"m");
        }
        assert_eq!(published(&ring), 5);
        let pending = begin(&ring, pos);
        store(&ring, pending, b"last");
        assert_eq!(published(&ring), 5, "not yet published");
        // Step 4 only, as `commit` does before its head store.
        ring.slot_seq(pending.index)
            .store(pos * 2 + 2, Ordering::Release);
        assert_eq!(head(&ring), 5);
        assert_eq!(published(&ring), 6);
        let mut cursor = 5;
        assert_eq!(recv(&ring, &mut cursor), Ok(b"last".to_vec()));
        assert_eq!(recover(&ring), Some(6));
        assert_eq!(published(&ring), 6);
    }

    #[test]
    fn every_subscriber_reads_every_message_in_order() {
        let ring = HeapRing::new(4, 16);
        let mut pos = recover(&ring).unwrap();
        let (mut a, mut b) = (0, 0);
        let mut out = Vec::new();
        assert_eq!(try_recv(&ring, a, &mut out), Step::Empty);
        assert!(!ready(&ring, a));
        for round in 0..5u64 {
            for k in 0..3 {
                pos = send(&ring, pos, format!("m{}", round * 3 + k).as_bytes());
            }
            for k in 0..3 {
                let want = format!("m{}", round * 3 + k).into_bytes();
                assert!(ready(&ring, a));
                assert_eq!(recv(&ring, &mut a), Ok(want.clone()));
                assert_eq!(recv(&ring, &mut b), Ok(want));
            }
            assert_eq!(try_recv(&ring, a, &mut out), Step::Empty);
        }
        assert_eq!(head(&ring), 15);
    }

    #[test]
    fn a_slow_subscriber_learns_exactly_what_it_missed() {
        let ring = HeapRing::new(4, 8);
        let mut pos = 0;
        let mut slow = 0;
        for i in 0..10u64 {
            pos = send(&ring, pos, &i.to_ne_bytes());
        }
        // Positions 6..10 are in the ring, 0..6 are gone; it resumes half
        // a ring behind the head, at 8: 0..8 missed.
        assert_eq!(recv(&ring, &mut slow), Err(8));
        for i in 8..10u64 {
            assert_eq!(recv(&ring, &mut slow), Ok(i.to_ne_bytes().to_vec()));
        }
        assert_eq!(try_recv(&ring, slow, &mut Vec::new()), Step::Empty);
        // Exactly a lap behind: position 10 overwrote 6; it resumes at
        // 11 - 2 = 9.
        let mut lap = 6;
        pos = send(&ring, pos, b"x");
        assert_eq!(pos, 11);
        assert_eq!(recv(&ring, &mut lap), Err(3));
        assert_eq!(lap, 9);
        // Capacity 1 and 2: the slack is one message, the newest.
        for capacity in [1, 2] {
            let ring = HeapRing::new(capacity, 8);
            let mut pos = 0;
            for i in 0..5u64 {
                pos = send(&ring, pos, &i.to_ne_bytes());
            }
            let mut c = 0;
            assert_eq!(recv(&ring, &mut c), Err(4), "capacity {capacity}");
            assert_eq!(recv(&ring, &mut c), Ok(4u64.to_ne_bytes().to_vec()));
        }
    }

    /// A small deterministic generator (xorshift64*), so that the schedule
    /// below is the same on every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % n
        }
    }

    /// The lag-recovery livelock (issue 11): a subscriber slower than the
    /// writer (here the writer publishes a burst of 1 to `max_burst`
    /// messages, at most the slack, between any two receive attempts: 1.5
    /// to 100 times as fast as the subscriber on average) must still
    /// receive a steady share of fresh messages, and account exactly for
    /// the rest. Resuming at the oldest position still in the ring, the
    /// slot the writer overwrites next, it would receive nothing at all
    /// once a burst of 2 followed its first lag: every attempt would find
    /// its cursor overwritten.
    #[test]
    fn a_subscriber_slower_than_the_writer_still_receives_fresh_messages() {
        for capacity in [4usize, 8, 64, 1024] {
            for (seed, max_burst) in [(1u64, 2u64), (7, 3), (42, 5), (9, 40), (3, 200)] {
                let max_burst = max_burst.min(slack(capacity as u64));
                let ring = HeapRing::new(capacity, 8);
                let cap = capacity as u64;
                let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
                let (mut pos, mut cursor) = (0u64, 0u64);
                let (mut received, mut missed, mut lags) = (0u64, 0u64, 0u64);
                let mut out = Vec::new();
                let window = 4 * cap.max(16);
                let mut window_received = 0u64;
                let what = format!("capacity {capacity}, bursts 1..={max_burst}");
                let attempts = 8 * window;
                for attempt in 1..=attempts {
                    // The writer: 1..=max_burst messages.
                    for _ in 0..1 + rng.below(max_burst) {
                        pos = send(&ring, pos, &pos.to_ne_bytes());
                    }
                    // The subscriber: one attempt.
                    match try_recv(&ring, cursor, &mut out) {
                        Step::Message { len } => {
                            assert_eq!(out[..len], cursor.to_ne_bytes(), "{what}");
                            // Fresh: less than a lap old.
                            assert!(pos - cursor <= cap, "{what}: {cursor} of {pos}");
                            cursor += 1;
                            received += 1;
                            window_received += 1;
                        }
                        Step::Lagged { resume } => {
                            assert!(resume > cursor && resume < pos, "{what}");
                            // Half a ring behind the head (the newest
                            // message for a ring of 2).
                            assert_eq!(resume, pos - slack(cap), "{what}");
                            missed += resume - cursor;
                            cursor = resume;
                            lags += 1;
                        }
                        other => panic!("{what}: {other:?}"),
                    }
                    // A steady share: in every window at least half the
                    // attempts deliver a message (every lag report is
                    // followed by at least one).
                    if attempt % window == 0 {
                        assert!(
                            window_received >= window / 2,
                            "{what}: {window_received} of {window} attempts delivered"
                        );
                        window_received = 0;
                    }
                }
                assert!(lags > 0, "{what}: the writer never lapped the subscriber");
                assert!(pos > attempts * 5 / 4, "{what}: the writer was not faster");
                // The writer stops; the subscriber drains what is left.
                loop {
                    match try_recv(&ring, cursor, &mut out) {
                        Step::Message { .. } => {
                            cursor += 1;
                            received += 1;
                        }
                        Step::Lagged { resume } => {
                            missed += resume - cursor;
                            cursor = resume;
                        }
                        Step::Empty => break,
                        other => panic!("{what}: {other:?}"),
                    }
                }
                assert_eq!(cursor, pos, "{what}");
                assert_eq!(
                    received + missed,
                    pos,
                    "{what}: received + missed == published"
                );
            }
        }
    }

    #[test]
    fn a_message_being_written_is_not_read_and_overwrites_the_old_one() {
        let ring = HeapRing::new(2, 8);
        let mut pos = send(&ring, 0, b"zero");
        pos = send(&ring, pos, b"one");
        // The writer begins position 2 (overwriting 0) and stops there.
        let p = begin(&ring, pos);
        store(&ring, p, b"TORN");
        let mut at_zero = 0;
        assert_eq!(recv(&ring, &mut at_zero), Err(1), "0 is being overwritten");
        assert_eq!(recv(&ring, &mut at_zero), Ok(b"one".to_vec()));
        let mut out = Vec::new();
        assert_eq!(try_recv(&ring, 2, &mut out), Step::Empty);
        assert!(!ready(&ring, 2));
        // A new writer rewrites the unfinished position.
        assert_eq!(recover(&ring), Some(2));
        send(&ring, 2, b"two");
        assert_eq!(recv(&ring, &mut at_zero), Ok(b"two".to_vec()));
    }

    #[test]
    fn a_writer_that_died_after_completing_a_slot_is_counted() {
        let ring = HeapRing::new(4, 8);
        let p = begin(&ring, 0);
        store(&ring, p, b"done");
        // Step 4 only: the slot is complete, head still 0.
        ring.seq[0].store(2, Ordering::Release);
        assert_eq!(head(&ring), 0);
        assert_eq!(recover(&ring), Some(1));
        assert_eq!(head(&ring), 1);
        let mut c = 0;
        assert_eq!(recv(&ring, &mut c), Ok(b"done".to_vec()));
    }

    #[test]
    fn garbage_is_reported_not_trusted() {
        let ring = HeapRing::new(4, 8);
        send(&ring, 0, b"ok");
        let mut out = Vec::new();
        // A slot claiming a position that does not map to it.
        ring.seq[1].store(2 * 2 + 2, Ordering::Relaxed);
        assert!(matches!(
            try_recv(&ring, 1, &mut out),
            Step::Corrupt { index: 1, .. }
        ));
        // A length over the maximum.
        ring.len[0].store(1 << 40, Ordering::Relaxed);
        assert!(matches!(
            try_recv(&ring, 0, &mut out),
            Step::Corrupt { len, .. } if len == 1 << 40
        ));
        assert_eq!(out.len(), 8, "the copy was clamped");
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p shmkit --release --lib broadcast::ring`
    //!
    //! Message `k` is two words `[k, k]`: a torn copy shows as two
    //! different words, and a message must match its position.
    //!
    //! Every role (writer, subscriber) runs in a spawned thread of its own;
    //! the main thread only sets up, spawns, joins and checks (and drains
    //! what is left, after the joins). A role on the main thread can make
    //! loom 0.7 explore a single interleaving (tokio-rs/loom#392, see
    //! `crate::loom_check`).
    use super::heap::HeapRing;
    use super::*;
    use crate::loom_check::check as model;
    use loom::sync::Arc;

    fn message(k: u64) -> [u8; 16] {
        let mut m = [0u8; 16];
        m[..8].copy_from_slice(&k.to_ne_bytes());
        m[8..].copy_from_slice(&k.to_ne_bytes());
        m
    }

    /// A subscriber's view of one run: what it received and missed.
    struct Account {
        cursor: u64,
        received: Vec<u64>,
        missed: u64,
    }

    impl Account {
        /// One attempt; returns false when nothing was there.
        fn step(&mut self, ring: &HeapRing, out: &mut Vec<u8>) -> bool {
            match try_recv(ring, self.cursor, out) {
                Step::Message { len } => {
                    assert_eq!(len, 16);
                    let a = u64::from_ne_bytes(out[..8].try_into().unwrap());
                    let b = u64::from_ne_bytes(out[8..16].try_into().unwrap());
                    assert_eq!(a, b, "torn message accepted");
                    assert_eq!(a, self.cursor, "message does not match its position");
                    self.received.push(a);
                    self.cursor += 1;
                    true
                }
                Step::Lagged { resume } => {
                    assert!(resume > self.cursor);
                    let cap = ring.capacity();
                    // Resuming half a ring behind the head `h` it loaded
                    // (`resume == h - slack`), or just past the cursor. The
                    // positions it skips are the cursor, which really is
                    // gone, those below `h - capacity`, which really are
                    // gone too, and those it drops for slack, which were
                    // published. Gone: the slot holds a later position
                    // (being written or complete). If the lag arithmetic is
                    // right, the writer's store of that later position
                    // happens before this load (through the Acquire loads
                    // in `try_recv`), so by coherence even a Relaxed load
                    // (which adds no synchronisation to the model) must
                    // see it. Published: by coherence `head` now is at
                    // least the `h` it loaded.
                    let gone_below = if resume == self.cursor + 1 {
                        resume
                    } else {
                        assert!(resume < ring.head.load(Ordering::Relaxed));
                        (resume + slack(cap))
                            .saturating_sub(cap)
                            .max(self.cursor + 1)
                    };
                    for x in self.cursor..gone_below {
                        let slot = &ring.seq[index_of(ring, x)];
                        let now = SlotState::decode(slot.load(Ordering::Relaxed));
                        assert!(
                            matches!(now, SlotState::Writing(p) | SlotState::Complete(p) if p > x),
                            "position {x} counted missed but its slot holds {now:?}"
                        );
                    }
                    self.missed += resume - self.cursor;
                    self.cursor = resume;
                    true
                }
                Step::Empty => false,
                Step::Corrupt { .. } => panic!("corrupt"),
            }
        }
    }

    /// A subscriber from position 0, on a thread of its own, making
    /// `tries` receive attempts (yielding after each that found nothing);
    /// returns its account so far.
    fn subscribe(ring: &Arc<HeapRing>, tries: usize) -> loom::thread::JoinHandle<Account> {
        let ring = ring.clone();
        loom::thread::spawn(move || {
            let mut acc = Account {
                cursor: 0,
                received: Vec::new(),
                missed: 0,
            };
            let mut out = Vec::new();
            for _ in 0..tries {
                if !acc.step(&ring, &mut out) {
                    loom::thread::yield_now();
                }
            }
            acc
        })
    }

    /// One writer sends 3 messages into a ring of 2 while a subscriber
    /// reads: it never accepts a slot overwritten mid-copy, receives in
    /// order, and once the writer is done, received + missed == 3.
    #[test]
    fn overwritten_slots_are_never_accepted_and_lag_is_exact() {
        model(Some(3), || {
            let ring = Arc::new(HeapRing::new(2, 16));
            let writer = {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    let mut pos = recover(&*ring).unwrap();
                    for k in 0..3 {
                        pos = send(&*ring, pos, &message(k));
                    }
                })
            };
            // Read concurrently with the writer, a bounded number of tries.
            let subscriber = subscribe(&ring, 3);
            writer.join().unwrap();
            let mut acc = subscriber.join().unwrap();
            let mut out = Vec::new();
            // Then drain: everything is accounted for, exactly.
            while acc.cursor < 3 {
                assert!(acc.step(&ring, &mut out), "stuck at {}", acc.cursor);
            }
            assert!(acc.received.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(acc.received.len() as u64 + acc.missed, 3);
        });
    }

    /// A writer dies after beginning position 1 (seq odd, half the words
    /// stored); a new writer recovers and writes positions 1 and 2 while a
    /// subscriber reads. The half message is never accepted, and the
    /// subscriber accounts for all three positions.
    #[test]
    fn a_writer_dying_mid_message_is_taken_over() {
        model(Some(5), || {
            let ring = Arc::new(HeapRing::new(2, 16));
            let pos = send(&*ring, 0, &message(0));
            let p = begin(&*ring, pos);
            ring.data[p.index][0].store(99, Ordering::Relaxed);
            let taker = {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    let mut pos = recover(&*ring).unwrap();
                    assert_eq!(pos, 1);
                    for k in 1..3 {
                        pos = send(&*ring, pos, &message(k));
                    }
                })
            };
            let subscriber = subscribe(&ring, 3);
            taker.join().unwrap();
            let mut acc = subscriber.join().unwrap();
            let mut out = Vec::new();
            while acc.cursor < 3 {
                assert!(acc.step(&ring, &mut out), "stuck at {}", acc.cursor);
            }
            assert_eq!(acc.received.len() as u64 + acc.missed, 3);
        });
    }
}
