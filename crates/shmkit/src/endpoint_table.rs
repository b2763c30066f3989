//! The endpoint table channels and broadcasts share: who is connected,
//! joining, leaving, and reaping the dead, with one protocol for both.
//!
//! A table is a row of entries in shared memory (64 in a channel, 128 in a
//! broadcast, 64 bytes each). Word 0 of an entry is its *occupant word*;
//! the entry's other words (message counts, cursors, claims) belong to the
//! kind and are written only by whoever holds the entry.
//!
//! ```text
//! occupant word: 0                          free
//!                identity | role << 22      an endpoint (role 0, 1 or 2; see
//!                                           `process::identity_word`)
//!                identity | SETTLING << 22  the process `identity` is settling
//!                                           the entry (leaving it, or reaping
//!                                           its dead occupant)
//! ```
//!
//! Every transition is a compare-and-swap from the exact word seen, so no
//! one ever clears or takes what someone else holds:
//!
//! ```text
//!  free ──join: 0 → mine──▶ occupied ──leave: mine → settling(me)──▶ settling
//!                             │   ▲                                    │
//!                             │   └─takeover: dead → mine, settle──┐   │ settle,
//!                             └──reap: dead → settling(me)─────────┼──▶│ store 0
//!                                                                  │   ▼
//!                                              (a joiner, table full)  free
//! ```
//!
//! *Settling* runs the kind's clean-up (a channel frees the slots the
//! occupant held and adds its message count to the departed totals; a
//! broadcast takes the subscriber out of the lossless gate) while the entry
//! is held, then frees it with a Release store of 0 that the next joiner's
//! compare-and-swap acquires: the next occupant finds the entry settled. A
//! settler that dies half-way leaves its own settling word, which names a
//! dead process, so the next reap takes the entry again and settles it
//! again: settling must be idempotent (both kinds' are: they swap counts
//! to 0 and free slots only if they still hold exactly the dead claim).
//!
//! Handles remember the process that joined ([`Membership`]): a child
//! forked after the join holds the parent's entry in its copy of memory and
//! must not leave it on drop (issue 15, defect 2).
//!
//! The algorithm is written against [`EndpointWords`], so the loom models
//! below run it over heap memory.

// Under loom only the models use it (channels and broadcasts are not built).
#![cfg_attr(loom, allow(dead_code))]

use crate::primitive::{AtomicU64, Ordering};

/// Where the role lives in an occupant word (bits 22 and 23, which
/// `process::identity_word` leaves free).
const ROLE_SHIFT: u32 = 22;
const ROLE_MASK: u64 = 0b11 << ROLE_SHIFT;

/// The role of a settling word: the process named is leaving the entry or
/// reaping its dead occupant.
pub(crate) const SETTLING: u64 = 3;

/// Where a table lives: a kind's shared memory (channel, broadcast), or a
/// loom model's heap.
pub(crate) trait EndpointWords {
    /// How many entries the table has.
    fn entries(&self) -> usize;
    /// Entry `entry`'s occupant word; `entry < entries()`.
    fn occupant(&self, entry: usize) -> &AtomicU64;
}

/// An occupant word: a process's identity word with `role` (0, 1 or 2).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn with_role(identity: u64, role: u64) -> u64 {
    debug_assert!(role < SETTLING);
    (identity & !ROLE_MASK) | (role << ROLE_SHIFT)
}

/// The role an occupant word carries (`SETTLING` for a settling word).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn role_of(word: u64) -> u64 {
    (word & ROLE_MASK) >> ROLE_SHIFT
}

/// Whether `word` is a settler's, not an endpoint's. Broadcasts made
/// before this table marked a settling entry `1 << 22` (pid 0, a dead
/// process, so reaping frees it).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn is_settling(word: u64) -> bool {
    role_of(word) == SETTLING
}

/// The word with which the process of occupant word `word` settles an
/// entry.
pub(crate) fn settling(word: u64) -> u64 {
    word | ROLE_MASK
}

/// Entry `entry`'s occupant word, 0 when free. Acquire: pairs with the
/// Release of the compare-and-swap or the store that wrote it, so what
/// that endpoint did before joining, or before it left, is visible (a
/// receiver that sees every sender gone sees what they sent: the
/// `a_sender_seen_gone_left_its_messages_visible` model in the channel
/// ring).
pub(crate) fn occupant(table: &impl EndpointWords, entry: usize) -> u64 {
    table.occupant(entry).load(Ordering::Acquire)
}

/// Takes entry `entry` from exactly `old` to `new`. AcqRel: Acquire pairs
/// with the Release that wrote `old` (the entry's words as its previous
/// holder left them), Release publishes what we did before (a leaver's
/// last messages) to whoever reads `new`.
fn take(table: &impl EndpointWords, entry: usize, old: u64, new: u64) -> bool {
    table
        .occupant(entry)
        .compare_exchange(old, new, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

/// Frees an entry this process holds (settled). Release: pairs with the
/// Acquire of the next joiner's compare-and-swap and of `occupant`.
fn free(table: &impl EndpointWords, entry: usize) {
    table.occupant(entry).store(0, Ordering::Release);
}

/// Joins the table as `mine`: a free entry if there is one, else the entry
/// of an occupant that `dead` judges gone, taken over (settled with
/// `settle(entry, old)` before this returns). Returns the entry, or None
/// when every entry is held by the living.
pub(crate) fn join(
    table: &impl EndpointWords,
    mine: u64,
    dead: impl Fn(u64) -> bool,
    mut settle: impl FnMut(usize, u64),
) -> Option<usize> {
    for takeover in [false, true] {
        for i in 0..table.entries() {
            let word = occupant(table, i);
            let free = word == 0;
            if !(free || (takeover && dead(word))) {
                continue;
            }
            if take(table, i, word, mine) {
                if !free {
                    settle(i, word);
                }
                return Some(i);
            }
        }
    }
    None
}

/// Reaps entry `entry` if its occupant (or settler) is not `alive`: takes
/// it as `reaper` (a settling word), settles it, frees it. Returns whether
/// this call freed it; of two reapers racing for one entry exactly one
/// does, and settles it once.
pub(crate) fn reap_entry(
    table: &impl EndpointWords,
    entry: usize,
    reaper: u64,
    alive: impl Fn(u64) -> bool,
    settle: impl FnOnce(usize, u64),
) -> bool {
    debug_assert!(is_settling(reaper));
    let word = occupant(table, entry);
    if word == 0 || word == reaper || alive(word) {
        return false;
    }
    if !take(table, entry, word, reaper) {
        return false; // someone else reaped it, or it left, or a joiner took over
    }
    settle(entry, word);
    free(table, entry);
    true
}

/// Reaps every entry whose occupant is not `alive`; returns how many.
pub(crate) fn reap(
    table: &impl EndpointWords,
    reaper: u64,
    alive: impl Fn(u64) -> bool,
    mut settle: impl FnMut(usize, u64),
) -> usize {
    (0..table.entries())
        .filter(|&i| reap_entry(table, i, reaper, &alive, &mut settle))
        .count()
}

/// Leaves entry `entry`, which this endpoint joined as `mine`: takes it
/// from exactly `mine` to our settling word, settles it, frees it. False
/// (nothing done) if the entry no longer holds `mine` (a reaper judged us
/// dead and took it: it is its own now).
pub(crate) fn leave(
    table: &impl EndpointWords,
    entry: usize,
    mine: u64,
    settle: impl FnOnce(usize, u64),
) -> bool {
    if !take(table, entry, mine, settling(mine)) {
        return false;
    }
    settle(entry, mine);
    free(table, entry);
    true
}

/// An endpoint's hold on its entry, as a handle keeps it: the entry, the
/// occupant word it joined with, and the process that joined, so that a
/// child forked since neither uses the entry nor leaves it (issue 15,
/// defect 2).
#[cfg(not(loom))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Membership {
    pub(crate) entry: usize,
    pub(crate) word: u64,
    home: crate::process::Home,
}

#[cfg(not(loom))]
impl Membership {
    /// The hold of the endpoint that joined `entry` as `word` just now, in
    /// this process.
    pub(crate) fn new(entry: usize, word: u64) -> Membership {
        Membership {
            entry,
            word,
            home: crate::process::Home::here(),
        }
    }

    /// Whether this is the process that joined (not a child forked since).
    #[inline]
    pub(crate) fn is_here(&self) -> bool {
        self.home.is_here()
    }

    /// Leaves the entry (see [`leave`]), unless this is a forked child:
    /// the entry is then the parent's. Returns whether it left.
    pub(crate) fn leave(
        &self,
        table: &impl EndpointWords,
        settle: impl FnOnce(usize, u64),
    ) -> bool {
        self.is_here() && leave(table, self.entry, self.word, settle)
    }
}

/// A table in heap memory, for unit tests and loom models.
#[cfg(test)]
pub(crate) struct HeapTable(pub(crate) Vec<AtomicU64>);

#[cfg(test)]
impl HeapTable {
    pub(crate) fn new(entries: usize) -> HeapTable {
        HeapTable((0..entries).map(|_| AtomicU64::new(0)).collect())
    }
}

#[cfg(test)]
impl EndpointWords for HeapTable {
    fn entries(&self) -> usize {
        self.0.len()
    }
    fn occupant(&self, entry: usize) -> &AtomicU64 {
        &self.0[entry]
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    const DEAD: u64 = 0x1234_0000_0042; // a role-0 occupant we call dead
    const ME: u64 = 0x5678_0000_0007;

    #[test]
    fn roles_and_settling_words_keep_the_identity() {
        let w = with_role(ME, 2);
        assert_eq!(role_of(w), 2);
        assert!(!is_settling(w));
        let s = settling(w);
        assert!(is_settling(s));
        assert_eq!(s & !ROLE_MASK, ME, "the settler is named");
        // What broadcasts made before this table left: a settling word
        // naming pid 0, which no liveness test calls alive.
        assert!(!is_settling(1 << 22));
    }

    #[test]
    fn join_prefers_a_free_entry_and_takes_over_only_the_dead() {
        let t = HeapTable::new(2);
        t.0[0].store(DEAD, Ordering::Relaxed);
        let settled = AtomicUsize::new(0);
        let settle = |_, _| {
            settled.fetch_add(1, Ordering::Relaxed);
        };
        assert_eq!(join(&t, ME, |w| w == DEAD, settle), Some(1));
        assert_eq!(settled.load(Ordering::Relaxed), 0, "a free entry was there");
        assert_eq!(join(&t, ME + 1, |_| false, settle), None, "all alive");
        assert_eq!(join(&t, ME + 2, |w| w == DEAD, settle), Some(0));
        assert_eq!(settled.load(Ordering::Relaxed), 1, "the dead one settled");
        assert_eq!(t.0[0].load(Ordering::Relaxed), ME + 2);
    }

    #[test]
    fn leave_clears_only_its_own_word() {
        let t = HeapTable::new(1);
        t.0[0].store(DEAD, Ordering::Relaxed);
        assert!(!leave(&t, 0, ME, |_, _| panic!("not ours")));
        assert_eq!(t.0[0].load(Ordering::Relaxed), DEAD);
        assert!(leave(&t, 0, DEAD, |i, w| assert_eq!((i, w), (0, DEAD))));
        assert_eq!(t.0[0].load(Ordering::Relaxed), 0);
    }

    /// A reaper that died while settling left its settling word: the next
    /// reap takes the entry again (and settles it again).
    #[test]
    fn a_dead_settler_is_reaped_too() {
        let t = HeapTable::new(3);
        let dead_settler = settling(DEAD);
        t.0[1].store(dead_settler, Ordering::Relaxed);
        t.0[2].store(1 << 22, Ordering::Relaxed); // an old broadcast's mark
        let me = settling(ME);
        let mut seen = Vec::new();
        let alive = |w: u64| w & !ROLE_MASK == ME;
        assert_eq!(reap(&t, me, alive, |i, w| seen.push((i, w))), 2);
        assert_eq!(seen, [(1, dead_settler), (2, 1 << 22)]);
        assert!(t.0.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn a_fork_child_membership_does_not_leave() {
        let t = HeapTable::new(1);
        t.0[0].store(ME, Ordering::Relaxed);
        let m = Membership::new(0, ME);
        assert!(m.is_here());
        // What a forked child sees: another fork count than at the join.
        let child = Membership {
            home: m.home.forked(),
            ..m
        };
        assert!(!child.leave(&t, |_, _| panic!("the parent's entry")));
        assert_eq!(t.0[0].load(Ordering::Relaxed), ME);
        assert!(m.leave(&t, |_, _| {}));
        assert_eq!(t.0[0].load(Ordering::Relaxed), 0);
    }
}

/// Loom models of the protocol (run by `scripts/test`: `cargo test -p
/// shmkit --release --lib loom_models` with `--cfg loom`).
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    const DEAD: u64 = 0x11;
    const JOINER: u64 = 0x22;
    const REAPER_A: u64 = 0x33 | ROLE_MASK;
    const REAPER_B: u64 = 0x44 | ROLE_MASK;

    /// One entry held by a dead occupant, and the entry's private words
    /// (a plain cell: loom reports any access not ordered by the protocol
    /// as a data race, as two processes writing them at once would be).
    struct Shared {
        table: HeapTable,
        private: UnsafeCell<u64>,
        settled: crate::primitive::AtomicUsize,
    }

    fn dead_entry() -> Arc<Shared> {
        let table = HeapTable::new(1);
        table.0[0].store(DEAD, Ordering::Relaxed);
        Arc::new(Shared {
            table,
            private: UnsafeCell::new(5),
            settled: crate::primitive::AtomicUsize::new(0),
        })
    }

    fn settle(s: &Shared) -> impl FnMut(usize, u64) + '_ {
        move |_, old| {
            assert_eq!(old, DEAD, "settled a living occupant");
            // SAFETY (model): the protocol gives the settler the entry.
            s.private.with_mut(|p| unsafe { *p = 0 });
            s.settled.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        crate::loom_check::check(Some(3), move || {
            f();
        });
    }

    /// Two reapers race for one dead entry while a joiner (the table
    /// full) tries to take it over: the dead occupant is settled exactly
    /// once, the joiner ends up holding the entry or finding it taken, and
    /// the joiner's writes to the entry's words never race with a
    /// settler's. Shown to catch a weakened ordering: with `free`'s store
    /// Relaxed, loom reports the joiner's write racing with the reaper's
    /// ("Concurrent write accesses to `UnsafeCell`"). The Release half of
    /// `take` is what the channel ring's
    /// `a_sender_seen_gone_left_its_messages_visible` model checks.
    #[test]
    fn reapers_and_a_joiner_settle_a_dead_entry_once() {
        model(|| {
            let s = dead_entry();
            let reapers: Vec<_> = [REAPER_A, REAPER_B]
                .into_iter()
                .map(|me| {
                    let s = s.clone();
                    loom::thread::spawn(move || {
                        // The joiner and both reapers are alive.
                        let alive = |w: u64| w == JOINER || is_settling(w);
                        reap_entry(&s.table, 0, me, alive, settle(&s))
                    })
                })
                .collect();
            let joined = {
                let s = s.clone();
                loom::thread::spawn(move || {
                    let joined = join(&s.table, JOINER, |w| w == DEAD, settle(&s));
                    if joined.is_some() {
                        // SAFETY (model): the joiner holds the entry.
                        s.private.with_mut(|p| unsafe { *p = 1 });
                    }
                    joined.is_some()
                })
            };
            let reaped = reapers
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|&r| r)
                .count();
            let joined = joined.join().unwrap();
            assert_eq!(s.settled.load(Ordering::Relaxed), 1, "settled once");
            let word = s.table.0[0].load(Ordering::Relaxed);
            if joined {
                assert_eq!(word, JOINER);
                assert!(reaped <= 1);
            } else {
                assert_eq!((word, reaped), (0, 1));
            }
        });
    }
}
