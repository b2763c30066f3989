//! Copying bytes in and out of shared memory as 8-byte atomic words: the
//! one place the crate turns words into bytes and back (issue 15,
//! defect 9). Memory another process may write at the same time is never
//! read or written as plain bytes (a data race, undefined behaviour):
//! every access here is a relaxed atomic load or store of a whole aligned
//! word, and the protocols around the copies (a sequence lock's fences, a
//! slot's Acquire/Release) order them and detect a torn mix.
//!
//! Users: [`Region`](crate::Region)'s `read_at`/`write_at`/`fill` (the
//! `part` functions, for ranges that start or end inside a word), the
//! board's sequence lock (`board::seqlock`) and the broadcast ring
//! (`broadcast::ring`) (the slice functions, over a slot's data words).
//! The channel's slots are copied with `ptr::copy_nonoverlapping` after the
//! slot's claim, which gives the copier the slot alone.

use crate::primitive::{AtomicU64, Ordering};

/// Words needed for `len` bytes.
#[inline]
pub(crate) fn words_for(len: usize) -> usize {
    len.div_ceil(8)
}

/// Copies the first `n` bytes of `words` into `out` (cleared first).
/// `n` must fit (`words_for(n) <= words.len()`; more panics). Relaxed:
/// the caller's protocol orders the loads and rejects a torn mix.
pub(crate) fn load(words: &[AtomicU64], n: usize, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(n);
    for word in &words[..words_for(n)] {
        out.extend_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
    }
    out.truncate(n);
}

/// Stores `bytes` into the first words of `words`, the last one padded
/// with zeros. They must fit (more panics). Relaxed: the caller publishes
/// them with its own Release store.
pub(crate) fn store(words: &[AtomicU64], bytes: &[u8]) {
    assert!(
        words_for(bytes.len()) <= words.len(),
        "bytes past the words"
    );
    let mut chunks = bytes.chunks_exact(8);
    for (word, chunk) in words.iter().zip(&mut chunks) {
        let value: [u8; 8] = chunk.try_into().expect("chunks of 8");
        word.store(u64::from_ne_bytes(value), Ordering::Relaxed);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut value = [0u8; 8];
        value[..rest.len()].copy_from_slice(rest);
        words[bytes.len() / 8].store(u64::from_ne_bytes(value), Ordering::Relaxed);
    }
}

/// Stores `bytes` at byte `offset` of `words`, for a writer that is the
/// only one storing to them (a board's pending slot): whole words are
/// stored, a word covered in part is loaded, merged and stored back. The
/// range must fit (more panics). Relaxed, as [`store`].
pub(crate) fn store_at_exclusive(words: &[AtomicU64], offset: usize, bytes: &[u8]) {
    let end = offset + bytes.len();
    assert!(words_for(end) <= words.len(), "bytes past the words");
    let mut pos = offset;
    while pos < end {
        let word = &words[pos / 8];
        let at = pos % 8;
        let take = (8 - at).min(end - pos);
        let src = &bytes[pos - offset..pos - offset + take];
        let value = if take == 8 {
            u64::from_ne_bytes(src.try_into().expect("8 bytes"))
        } else {
            // Our own earlier store (or an old value), read back by the
            // only thread that stores to these words now.
            let mut current = word.load(Ordering::Relaxed).to_ne_bytes();
            current[at..at + take].copy_from_slice(src);
            u64::from_ne_bytes(current)
        };
        word.store(value, Ordering::Relaxed);
        pos += take;
    }
}

/// Words a region's range touches, one at a time, for
/// [`Region`](crate::Region): each of these reads or writes the bytes
/// `inside` (a range within 0..8) of one word.
pub(crate) mod part {
    use std::ops::Range;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Copies the bytes `inside` of `word` into `out` (as long). Relaxed.
    #[inline]
    pub(crate) fn load(word: &AtomicU64, inside: Range<usize>, out: &mut [u8]) {
        out.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes()[inside]);
    }

    /// Stores the bytes `inside` of `word` as `set` makes them, where other
    /// threads or processes may store to the word's other bytes: a plain
    /// store when that is the whole word, else a compare-and-swap loop that
    /// keeps the other bytes as they are. Relaxed.
    pub(crate) fn store(word: &AtomicU64, inside: Range<usize>, set: impl Fn(&mut [u8])) {
        if inside == (0..8) {
            let mut bytes = [0u8; 8];
            set(&mut bytes);
            word.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
            return;
        }
        let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            let mut bytes = old.to_ne_bytes();
            set(&mut bytes[inside.clone()]);
            Some(u64::from_ne_bytes(bytes))
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn words(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(u64::MAX)).collect()
    }

    #[test]
    fn bytes_round_trip_through_words() {
        let w = words(3);
        let msg: Vec<u8> = (1..=19).collect();
        store(&w, &msg);
        let mut out = vec![7; 40];
        load(&w, msg.len(), &mut out);
        assert_eq!(out, msg);
        assert_eq!(
            w[2].load(Ordering::Relaxed).to_ne_bytes()[3..],
            [0; 5],
            "padded"
        );
        store_at_exclusive(&w, 6, b"abcdefghij");
        load(&w, 19, &mut out);
        assert_eq!(&out[..6], &msg[..6]);
        assert_eq!(&out[6..16], b"abcdefghij");
        assert_eq!(&out[16..], &msg[16..]);
    }

    #[test]
    fn a_part_store_keeps_the_other_bytes() {
        let w = std::sync::atomic::AtomicU64::new(0);
        part::store(&w, 2..5, |b| b.copy_from_slice(b"xyz"));
        let mut out = [0u8; 8];
        part::load(&w, 0..8, &mut out);
        assert_eq!(out, *b"\0\0xyz\0\0\0");
    }

    #[test]
    #[should_panic(expected = "past the words")]
    fn bytes_that_do_not_fit_panic() {
        store(&words(1), &[0; 9]);
    }
}
