//! The double-buffered sequence lock under every board.
//!
//! # Algorithm
//! A sequence lock (Lameter's seqlock, as the Linux kernel uses it for the
//! clock) with two value slots instead of one, so that a writer killed in
//! the middle of a write never hides the last complete value.
//!
//! One 64-bit sequence word `seq` says everything:
//!
//! ```text
//! seq = 2v       v writes are complete; version v is in slot v % 2
//!                (version 0: nothing written yet, slot 0 holds length 0)
//! seq = 2v + 1   the write of version v + 1 into slot (v + 1) % 2 has
//!                begun (and may never end: its writer may have died);
//!                version v is still intact in slot v % 2
//! ```
//!
//! So the version a reader can read is always `seq / 2`, in slot
//! `(seq / 2) % 2`, whether or not a write is in progress: readers never
//! wait for a writer, and the writer never waits for anyone.
//!
//! Writer (one at a time; the board's writer identity word makes sure):
//! 1. `s = seq` (Acquire); `next = s / 2 + 1`.
//! 2. If `s` is even, store `s + 1` (Release). If it is odd, a writer died
//!    half-way through writing `next`: the word already says what we are
//!    about to do, so we simply do it again.
//! 3. A Release fence.
//! 4. Store the length and the data words of slot `next % 2` (Relaxed).
//! 5. Store `2 * next` (Release).
//!
//! Reader:
//! 1. `s1 = seq` (Acquire); `v = s1 / 2`, slot `v % 2`.
//! 2. Load the length and the data words (Relaxed), word by word: a plain
//!    `memcpy` of bytes another thread is writing would be a data race.
//! 3. An Acquire fence.
//! 4. `s2 = seq` (Relaxed). Slot `v % 2` is next written by the write of
//!    version `v + 2`, whose step 2 stores `2v + 3`. If `s2 >= 2v + 3` the
//!    copy may be torn: retry. Otherwise it is version `v`, exactly.
//!
//! # Why a torn copy is always caught
//! If any word the reader loaded was stored by a later write `W` into the
//! same slot, then `W`'s Release fence (writer step 3) synchronises with the
//! reader's Acquire fence (reader step 3), so `W`'s step-2 store of `seq`
//! (or, for a writer taking over from a dead one, the odd value its step-1
//! Acquire load read) happens before the reader's step-4 load, which must
//! therefore read `2v + 3` or later. Conversely, the reader's step-1 Acquire
//! load read a Release store made after every store of version `v` (its own
//! step 5, or the next writer's step 2), so the copy sees version `v`'s
//! words or later ones, never earlier ones. The loom models below check
//! both, with a writer that dies half-way and a second writer taking over.
//!
//! The sequence word is 64 bits: at a billion writes a second it wraps after
//! 292 years.

use crate::primitive::{fence, AtomicU64, Ordering};
use crate::word_copy;

/// Where a board's words live: shared memory in production, the heap under
/// loom. Implementations guarantee that `data(0)` and `data(1)` have the
/// same length, at least `ceil(max_len() / 8)` words.
pub(crate) trait SeqlockWords {
    /// The largest value in bytes.
    fn max_len(&self) -> u64;
    /// The sequence word.
    fn seq(&self) -> &AtomicU64;
    /// The length word of slot `slot` (0 or 1).
    fn len(&self, slot: usize) -> &AtomicU64;
    /// The data words of slot `slot` (0 or 1).
    fn data(&self, slot: usize) -> &[AtomicU64];
}

/// Why a read attempt did not return a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The writer reused the slot while we copied it: try again.
    Overwritten,
    /// A consistent copy whose length word is over the maximum: a peer
    /// wrote garbage.
    Corrupt { len: u64 },
}

/// The version readable when the sequence word is `seq`.
#[inline]
pub(crate) fn version_of(seq: u64) -> u64 {
    seq >> 1
}

/// The current version (Acquire: pairs with the writer's Release stores of
/// `seq`, so a caller that then reads sees at least this version).
#[inline]
pub(crate) fn version(words: &impl SeqlockWords) -> u64 {
    version_of(words.seq().load(Ordering::Acquire))
}

/// Whether a write began and never ended (its writer died, or is writing
/// now). A hint for people: Relaxed.
pub(crate) fn write_in_progress(words: &impl SeqlockWords) -> bool {
    words.seq().load(Ordering::Relaxed) & 1 == 1
}

/// One attempt to copy the current value into `out` (cleared first);
/// returns its version.
pub(crate) fn try_read(words: &impl SeqlockWords, out: &mut Vec<u8>) -> Result<u64, ReadError> {
    // Reader step 1. Acquire: pairs with the writer's Release stores of
    // `seq` (steps 2 and 5): every store of version `v` is visible below.
    let s1 = words.seq().load(Ordering::Acquire);
    let v = version_of(s1);
    let slot = (v & 1) as usize;
    // Step 2. Relaxed: ordered by the fences (see module doc). Untrusted:
    // clamped for the copy, checked once the copy is known consistent.
    let len = words.len(slot).load(Ordering::Relaxed);
    let data = words.data(slot);
    let n = len.min(words.max_len()).min(data.len() as u64 * 8) as usize;
    // Relaxed loads: a torn mix is caught by the re-check below.
    word_copy::load(data, n, out);
    // Step 3, SYNC POINT: pairs with the writer's Release fence (step 3): if
    // any load above saw a later write's word, the load below sees that
    // write's odd `seq`.
    fence(Ordering::Acquire);
    // Step 4. Relaxed: ordered after the copy by the fence above.
    let s2 = words.seq().load(Ordering::Relaxed);
    // Saturating: `seq` is a word anyone can write; 2v cannot overflow
    // (v = seq / 2).
    if s2 >= (2 * v).saturating_add(3) {
        return Err(ReadError::Overwritten);
    }
    if len > words.max_len() {
        return Err(ReadError::Corrupt { len });
    }
    Ok(v)
}

/// A write begun by [`begin_write`]: the slot to fill and the version it
/// will become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingWrite {
    pub slot: usize,
    pub version: u64,
}

/// Writer steps 1–3: announces the write of the next version and returns
/// the slot to fill. The caller must be the board's only writer.
pub(crate) fn begin_write(words: &impl SeqlockWords) -> PendingWrite {
    // Step 1. Acquire: pairs with the previous writer's Release stores of
    // `seq`, which matters when that writer was another process (taken
    // over): its complete version is ordered before what we write.
    let s = words.seq().load(Ordering::Acquire);
    let version = version_of(s) + 1;
    if s & 1 == 0 {
        // Step 2. Release: pairs with the reader's step-1 Acquire load: a
        // reader that sees this odd value sees version `version - 1`
        // complete in the other slot.
        words.seq().store(s + 1, Ordering::Release);
    }
    // Step 3, SYNC POINT: pairs with the reader's Acquire fence (step 3):
    // a reader that loads any word stored after this fence sees the odd
    // `seq` above (or the odd value a dead writer left, which our Acquire
    // load read) when it re-checks.
    fence(Ordering::Release);
    PendingWrite {
        slot: (version & 1) as usize,
        version,
    }
}

/// Writer step 4 for a whole value: stores `value` as the pending slot's
/// length and data. `value.len()` must be at most `max_len()` (checked by
/// the caller; a longer value panics).
pub(crate) fn store_value(words: &impl SeqlockWords, pending: PendingWrite, value: &[u8]) {
    let data = words.data(pending.slot);
    assert!(value.len() as u64 <= words.max_len());
    // Relaxed stores: published by the Release store in `commit_write`.
    word_copy::store(data, value);
    // Relaxed: as above.
    words
        .len(pending.slot)
        .store(value.len() as u64, Ordering::Relaxed);
}

/// Writer step 4 for part of a value: stores `bytes` at byte `offset` of
/// the pending slot. Whole words are stored directly; a word only partly
/// covered is loaded, merged and stored (only the writer stores to a
/// pending slot, so no update is lost). The range must lie within
/// `max_len()` (checked by the caller; out of range panics).
pub(crate) fn store_at(
    words: &impl SeqlockWords,
    pending: PendingWrite,
    offset: usize,
    bytes: &[u8],
) {
    let data = words.data(pending.slot);
    assert!((offset + bytes.len()) as u64 <= words.max_len());
    // Relaxed stores: published by the Release store in `commit_write`.
    word_copy::store_at_exclusive(data, offset, bytes);
}

/// Sets the pending slot's length word (for values written with
/// [`store_at`]); `len` must be at most `max_len()`.
pub(crate) fn store_len(words: &impl SeqlockWords, pending: PendingWrite, len: u64) {
    assert!(len <= words.max_len());
    // Relaxed: published by the Release store in `commit_write`.
    words.len(pending.slot).store(len, Ordering::Relaxed);
}

/// Writer step 5: publishes the pending write; returns its version.
pub(crate) fn commit_write(words: &impl SeqlockWords, pending: PendingWrite) -> u64 {
    // Release: pairs with the reader's step-1 Acquire load: a reader that
    // sees this value sees every word stored for it.
    // Wrapping: only a garbage `seq` near u64::MAX gets here.
    words
        .seq()
        .store(pending.version.wrapping_mul(2), Ordering::Release);
    pending.version
}

/// Writes a whole value: steps 1 to 5. Returns the new version.
pub(crate) fn write(words: &impl SeqlockWords, value: &[u8]) -> u64 {
    let pending = begin_write(words);
    store_value(words, pending, value);
    commit_write(words, pending)
}

#[cfg(test)]
pub(crate) mod heap {
    //! A board whose words live on the heap, for unit and loom tests.
    use super::*;

    pub(crate) struct HeapBoard {
        pub max_len: u64,
        pub seq: AtomicU64,
        pub len: [AtomicU64; 2],
        pub data: [Vec<AtomicU64>; 2],
    }

    impl HeapBoard {
        pub(crate) fn new(max_len: usize) -> Self {
            let words = || {
                (0..max_len.div_ceil(8))
                    .map(|_| AtomicU64::new(0))
                    .collect()
            };
            HeapBoard {
                max_len: max_len as u64,
                seq: AtomicU64::new(0),
                len: [AtomicU64::new(0), AtomicU64::new(0)],
                data: [words(), words()],
            }
        }
    }

    impl SeqlockWords for HeapBoard {
        fn max_len(&self) -> u64 {
            self.max_len
        }
        fn seq(&self) -> &AtomicU64 {
            &self.seq
        }
        fn len(&self, slot: usize) -> &AtomicU64 {
            &self.len[slot]
        }
        fn data(&self, slot: usize) -> &[AtomicU64] {
            &self.data[slot]
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::heap::HeapBoard;
    use super::*;

    #[test]
    fn reads_what_was_written_with_its_version() {
        let b = HeapBoard::new(20);
        let mut out = vec![1, 2, 3];
        assert_eq!(try_read(&b, &mut out), Ok(0));
        assert!(out.is_empty());
        for (i, value) in [
            &b"hello"[..],
            b"",
            b"exactly-16-bytes",
            b"twenty bytes, full!!",
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(write(&b, value), i as u64 + 1);
            assert_eq!(try_read(&b, &mut out), Ok(i as u64 + 1));
            assert_eq!(out, *value);
            assert_eq!(version(&b), i as u64 + 1);
        }
    }

    #[test]
    fn an_unfinished_write_hides_nothing_and_the_next_writer_completes_it() {
        let b = HeapBoard::new(16);
        write(&b, b"complete");
        // A writer that dies after step 3 and part of step 4.
        let dead = begin_write(&b);
        store_at(&b, dead, 0, b"TORN");
        assert!(write_in_progress(&b));
        let mut out = Vec::new();
        assert_eq!(try_read(&b, &mut out), Ok(1));
        assert_eq!(out, b"complete");
        // The next writer reuses the announced version and slot.
        let next = begin_write(&b);
        assert_eq!(next, dead);
        store_at(&b, next, 0, b"new value");
        store_len(&b, next, 9);
        assert_eq!(commit_write(&b, next), 2);
        assert_eq!(try_read(&b, &mut out), Ok(2));
        assert_eq!(out, b"new value");
        assert!(!write_in_progress(&b));
    }

    #[test]
    fn partial_stores_merge_into_words() {
        let b = HeapBoard::new(24);
        let p = begin_write(&b);
        store_at(&b, p, 0, &[b'a'; 24]);
        store_at(&b, p, 5, b"XYZ-across-words");
        store_len(&b, p, 24);
        commit_write(&b, p);
        let mut out = Vec::new();
        try_read(&b, &mut out).unwrap();
        assert_eq!(out, b"aaaaaXYZ-across-wordsaaa");
    }

    /// A board that runs `meddle` (writes) in the middle of a reader's
    /// copy: after the reader has loaded the sequence and the length, when
    /// it asks for the data words.
    struct Meddling {
        board: HeapBoard,
        writes: std::cell::Cell<usize>,
    }

    impl SeqlockWords for Meddling {
        fn max_len(&self) -> u64 {
            self.board.max_len()
        }
        fn seq(&self) -> &AtomicU64 {
            self.board.seq()
        }
        fn len(&self, slot: usize) -> &AtomicU64 {
            self.board.len(slot)
        }
        fn data(&self, slot: usize) -> &[AtomicU64] {
            for k in 0..self.writes.replace(0) {
                write(&self.board, format!("meddle {k}").as_bytes());
            }
            self.board.data(slot)
        }
    }

    #[test]
    fn a_copy_overtaken_by_a_write_to_its_slot_is_refused() {
        let b = Meddling {
            board: HeapBoard::new(16),
            writes: std::cell::Cell::new(0),
        };
        write(&b.board, b"one");
        let mut out = Vec::new();
        // One write during the copy goes to the other slot: the copy stands.
        b.writes.set(1);
        assert_eq!(try_read(&b, &mut out), Ok(1));
        assert_eq!(out, b"one");
        // Two writes: the second reuses the slot being copied.
        b.writes.set(2);
        assert_eq!(try_read(&b, &mut out), Err(ReadError::Overwritten));
        assert_eq!(try_read(&b, &mut out), Ok(4));
        assert_eq!(out, b"meddle 1");
    }

    #[test]
    fn garbage_lengths_are_reported_not_trusted() {
        let b = HeapBoard::new(8);
        write(&b, b"one");
        b.len[1].store(1 << 40, Ordering::Relaxed);
        let mut out = Vec::new();
        assert_eq!(
            try_read(&b, &mut out),
            Err(ReadError::Corrupt { len: 1 << 40 })
        );
        assert_eq!(out.len(), 8, "the copy was clamped to the maximum");
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p shmkit --release --lib board::seqlock`
    //!
    //! Values are two words that must be equal (`[k, k]` for version `k`,
    //! written as the bytes of two u64s): a torn copy shows as two different
    //! words, and the version returned must match the value.
    //!
    //! Every role (writer, reader) runs in a spawned thread of its own; the
    //! main thread only sets up, spawns, joins and checks. A role on the
    //! main thread can make loom 0.7 explore a single interleaving
    //! (tokio-rs/loom#392, see `crate::loom_check`).
    use super::heap::HeapBoard;
    use super::*;
    use crate::loom_check::check as model;
    use loom::sync::Arc;

    fn value(k: u64) -> [u8; 16] {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&k.to_ne_bytes());
        v[8..].copy_from_slice(&k.to_ne_bytes());
        v
    }

    /// Checks an accepted copy: both words equal, equal to the version.
    fn check(out: &[u8], version: u64) {
        if version == 0 {
            assert!(out.is_empty());
            return;
        }
        let a = u64::from_ne_bytes(out[..8].try_into().unwrap());
        let b = u64::from_ne_bytes(out[8..16].try_into().unwrap());
        assert_eq!(a, b, "torn read accepted");
        assert_eq!(a, version, "value does not match its version");
    }

    /// A writer writes versions 1..=3 (so each slot is reused while a
    /// reader may be copying it); a reader reads twice. Every accepted copy
    /// is a whole value with the right version, and versions never go back.
    #[test]
    fn no_torn_read_is_accepted() {
        model(Some(3), || {
            let b = Arc::new(HeapBoard::new(16));
            let writer = {
                let b = b.clone();
                loom::thread::spawn(move || {
                    for k in 1..=3 {
                        assert_eq!(write(&*b, &value(k)), k);
                    }
                })
            };
            let reader = {
                let b = b.clone();
                loom::thread::spawn(move || {
                    let mut out = Vec::new();
                    let mut last = 0;
                    for _ in 0..2 {
                        match try_read(&*b, &mut out) {
                            Ok(v) => {
                                check(&out, v);
                                assert!(v >= last, "version went back");
                                last = v;
                            }
                            Err(ReadError::Overwritten) => {}
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                })
            };
            writer.join().unwrap();
            reader.join().unwrap();
            let mut out = Vec::new();
            assert_eq!(try_read(&*b, &mut out), Ok(3));
            check(&out, 3);
        });
    }

    /// A writer dies half-way through writing version 2 (one word of two
    /// stored); a second writer takes over and writes versions 2 and 3
    /// while a reader reads. The reader never accepts the dead writer's
    /// half value or a torn one.
    #[test]
    fn a_dead_writer_half_way_hides_nothing() {
        model(Some(5), || {
            let b = Arc::new(HeapBoard::new(16));
            write(&*b, &value(1));
            let dying = begin_write(&*b);
            // Half of version 2, then the writer is gone.
            store_at(&*b, dying, 0, &99u64.to_ne_bytes());
            let reader = {
                let b = b.clone();
                loom::thread::spawn(move || {
                    let mut out = Vec::new();
                    let mut last = 0;
                    for _ in 0..2 {
                        if let Ok(v) = try_read(&*b, &mut out) {
                            check(&out, v);
                            assert!(v >= last);
                            last = v;
                        }
                    }
                })
            };
            // The new writer, on another thread (another process).
            let taker = {
                let b = b.clone();
                loom::thread::spawn(move || {
                    assert_eq!(write(&*b, &value(2)), 2);
                    assert_eq!(write(&*b, &value(3)), 3);
                })
            };
            taker.join().unwrap();
            reader.join().unwrap();
        });
    }
}
