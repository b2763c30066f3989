//! The bounded multi-producer / multi-consumer ring under every channel,
//! hardened so that a process killed at any instruction cannot stall it.
//!
//! # Algorithm
//! Dmitry Vyukov's bounded MPMC queue keeps a sequence number per slot and
//! two positions: `enqueue` (next position to write) and `dequeue` (next to
//! read); position `p` lives in slot `p % capacity`. We keep its shape and
//! change one thing: a slot is *claimed* by a compare-and-swap on the slot's
//! own state word, which records the claimer's endpoint index, and the
//! position counters only follow (anyone may help advance them). So at every
//! instant the slot itself says who is working on it, and a peer that finds
//! a slot stuck behind a dead process can tell and take it back. (In the
//! original, a producer killed between claiming a position and publishing
//! its slot blocks every consumer forever, and nobody can tell why.)
//!
//! # The slot state word (64 bits)
//! ```text
//!  63                                  10 9     8 7          0
//! +--------------------------------------+-------+------------+
//! |            position (54 bits)        | phase |   owner    |
//! +--------------------------------------+-------+------------+
//! ```
//! - `position`: the lap-qualified position this state is about.
//! - `phase`: `EMPTY` (free for the producer of `position`), `WRITING`
//!   (claimed by producer `owner`), `FULL` (a committed message for the
//!   consumer of `position`), `READING` (claimed by consumer `owner`).
//! - `owner`: endpoint table index + 1 of the claimer (0: nobody).
//!
//! Life of position `p` in slot `i = p % cap`:
//! `(p, EMPTY)` → producer CAS → `(p, WRITING, w)` → copy → store
//! `(p, FULL, w)` → consumer CAS → `(p, READING, r)` → copy out → store
//! `(p + cap, EMPTY)`, ready for the producer one lap later.
//!
//! # Runs (batches)
//! A batch claims its first slot as above and each next one directly at
//! the position after its last claim ([`extend_send`], [`extend_recv`]),
//! moving the position counter once at the end of the run instead of once
//! per message. Each claim is still a compare-and-swap on the slot's own
//! word and is noted in the endpoint's entry first, so crash recovery is
//! unchanged. A run stays under half a lap ([`max_run`]), so that no
//! counter ever lags a whole lap behind a slot.
//!
//! # Crash recovery
//! A claimer that died (its endpoint's process identity is gone) leaves
//! `WRITING` or `READING` behind. Whoever is blocked by it replaces the state
//! with `(p + cap, EMPTY)` by CAS: an unfinished write is dropped (never
//! published torn), a message held by a dead reader is lost (at most that
//! one). Position counters that lag behind a resolved slot are advanced by
//! whoever notices, so nothing waits for the dead to move them.
//!
//! Positions have 54 bits: at 100 million messages a second they wrap after
//! about five years of continuous traffic on one channel.
//!
//! # Untrusted memory
//! The ring lives in memory other processes write. Every state word read is
//! checked against what the protocol allows at that point; anything else is
//! reported as [`RingError::Corrupt`] instead of being trusted.

use crate::primitive::{AtomicU64, Ordering};

/// Bits of the owner field.
const OWNER_BITS: u32 = 8;
const OWNER_MASK: u64 = (1 << OWNER_BITS) - 1;
const PHASE_SHIFT: u32 = OWNER_BITS;
const PHASE_MASK: u64 = 0b11;
const POS_SHIFT: u32 = OWNER_BITS + 2;

/// The largest number of endpoints the owner field can name.
pub(crate) const MAX_OWNERS: usize = OWNER_MASK as usize; // owners are 1..=255

/// Phase of a slot (bits 8..10 of its state word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Empty = 0,
    Writing = 1,
    Full = 2,
    Reading = 3,
}

/// A decoded slot state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct State {
    pub pos: u64,
    pub phase: Phase,
    pub owner: u8,
}

impl State {
    pub(crate) fn encode(self) -> u64 {
        (self.pos << POS_SHIFT) | ((self.phase as u64) << PHASE_SHIFT) | self.owner as u64
    }

    pub(crate) fn decode(word: u64) -> Self {
        let phase = match (word >> PHASE_SHIFT) & PHASE_MASK {
            0 => Phase::Empty,
            1 => Phase::Writing,
            2 => Phase::Full,
            _ => Phase::Reading,
        };
        State {
            pos: word >> POS_SHIFT,
            phase,
            owner: (word & OWNER_MASK) as u8,
        }
    }

    fn empty(pos: u64) -> Self {
        State {
            pos,
            phase: Phase::Empty,
            owner: 0,
        }
    }
}

/// Where a ring's words live: shared memory in production, the heap under
/// loom. Implementations guarantee `slot_state(i)` is valid for every
/// `i < capacity()`, and that `capacity()` is a power of two.
pub(crate) trait RingWords {
    fn capacity(&self) -> u64;
    fn enqueue_pos(&self) -> &AtomicU64;
    fn dequeue_pos(&self) -> &AtomicU64;
    fn slot_state(&self, index: usize) -> &AtomicU64;

    /// Called just before `owner` tries to claim position `pos`, so that
    /// whoever takes over a dead owner can look at that slot alone instead
    /// of scanning the ring (`recover_claim`). Recorded before the claim: a
    /// claimer killed right after its compare-and-swap is found too.
    #[inline(always)]
    fn note_claim(&self, _owner: u8, _pos: u64) {}
}

/// Why a claim did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RingError {
    /// try_send: no free slot. try_recv: no committed message.
    WouldBlock,
    /// A state word that the protocol cannot produce: a peer wrote garbage.
    Corrupt { index: usize, word: u64 },
}

/// A claimed slot: position and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claim {
    pub pos: u64,
    pub index: usize,
}

/// Writes the initial states: slot `i` waits for the producer of position `i`.
pub(crate) fn init(words: &impl RingWords) {
    for i in 0..words.capacity() {
        words
            .slot_state(i as usize)
            .store(State::empty(i).encode(), Ordering::Relaxed);
    }
    words.enqueue_pos().store(0, Ordering::Relaxed);
    words.dequeue_pos().store(0, Ordering::Relaxed);
}

/// Tries to claim the next free slot for producer `me`.
///
/// `is_dead(owner)` is asked only about a slot that blocks us (full at the
/// previous lap and held by a claimer), and only when `check_dead` is set:
/// it reads `/proc`, which does not belong on the hot path.
pub(crate) fn claim_send(
    words: &impl RingWords,
    me: u8,
    check_dead: bool,
    is_dead: &mut dyn FnMut(u8) -> bool,
) -> Result<Claim, RingError> {
    let cap = words.capacity();
    loop {
        // Acquire pairs with the Release CASes that advance `enqueue`: the
        // claim of position pos - 1 happened before, so the slot state we
        // load next is at least as new as that lap (see module doc).
        let pos = words.enqueue_pos().load(Ordering::Acquire);
        let index = (pos & (cap - 1)) as usize;
        let slot = words.slot_state(index);
        // Acquire pairs with the consumer's Release store of (pos, EMPTY):
        // its copy-out of the previous message is done before we overwrite.
        let word = slot.load(Ordering::Acquire);
        let state = State::decode(word);
        if state.pos == pos && state.phase == Phase::Empty {
            let claimed = State {
                pos,
                phase: Phase::Writing,
                owner: me,
            };
            words.note_claim(me, pos);
            if slot
                .compare_exchange_weak(word, claimed.encode(), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                advance(words.enqueue_pos(), pos);
                return Ok(Claim { pos, index });
            }
        } else if state.pos == pos || state.pos == pos.wrapping_add(cap) {
            // Claimed at this lap by another producer, or already resolved:
            // `enqueue` lags; help it along and look again.
            advance(words.enqueue_pos(), pos);
        } else if state.pos.wrapping_add(cap) == pos && state.phase != Phase::Empty {
            // The previous lap's message is still there: full, unless its
            // claimer died.
            if state.phase == Phase::Full || !(check_dead && is_dead(state.owner)) {
                return Err(RingError::WouldBlock);
            }
            recover(slot, word, pos);
        } else if words.enqueue_pos().load(Ordering::Acquire) == pos {
            // No state the protocol allows for the current position.
            return Err(RingError::Corrupt { index, word });
        }
        // Otherwise `pos` was stale: look again.
    }
}

/// One more slot of a run for producer `me`: claims position `pos` if its
/// slot is free for it (`(pos, EMPTY)`), without a look at `enqueue`.
///
/// A batch claims its first slot with [`claim_send`] and each next one
/// with this, at the position after its last claim; the run's claims are
/// per slot as every claim is (the slot says who holds it, which is what
/// crash recovery reads), but `enqueue` moves once, at the end of the run
/// ([`advance_enqueue_to`]), instead of once per message: one atomic
/// read-modify-write less per message. Meanwhile `enqueue` lags behind the
/// run, and a producer that loads it finds claimed slots and helps it
/// along (as after any claim). `None` when the slot is not free for `pos`
/// (full, claimed by another producer, anything else): the run ends, and
/// the next claim goes through `claim_send`, which judges what is there.
///
/// The claim is noted first ([`RingWords::note_claim`]), as `claim_send`
/// notes its own: an endpoint still holds at most the one slot it claimed
/// last, so taking over a dead one looks at that slot alone.
///
/// A run is at most [`max_run`] claims long. Without a bound, a run could
/// go a whole lap past `enqueue` (which it does not move), and a peer that
/// loads the counter would find its slot two laps on, a state the claim
/// loops rightly call corrupt (a test with runs of 33 in 16 slots did).
/// With every run shorter than a lap, the counter is never more than one
/// lap behind any slot, as in the ring without runs.
#[inline]
pub(crate) fn extend_send(words: &impl RingWords, me: u8, pos: u64) -> Option<Claim> {
    extend(words, me, pos, Phase::Empty, Phase::Writing)
}

/// The consumer's side of [`extend_send`]: claims position `pos` for
/// consumer `me` if its slot holds that position's committed message
/// (`(pos, FULL)`), without a look at `dequeue`; `None` otherwise (the run
/// ends; [`claim_recv`] judges what is there).
#[inline]
pub(crate) fn extend_recv(words: &impl RingWords, me: u8, pos: u64) -> Option<Claim> {
    extend(words, me, pos, Phase::Full, Phase::Reading)
}

/// Claims position `pos` for `me` (phase `from` to `to`) if its slot is in
/// phase `from` for exactly that position, as the claim loops do.
#[inline(always)]
fn extend(words: &impl RingWords, me: u8, pos: u64, from: Phase, to: Phase) -> Option<Claim> {
    let cap = words.capacity();
    let index = (pos & (cap - 1)) as usize;
    let slot = words.slot_state(index);
    // Acquire: as in the claim loops (a producer: the consumer's release of
    // the previous lap is done before it overwrites; a consumer: the
    // message bytes are visible with FULL).
    let word = slot.load(Ordering::Acquire);
    let state = State::decode(word);
    if state.pos != pos || state.phase != from {
        return None;
    }
    let claimed = State {
        pos,
        phase: to,
        owner: me,
    };
    words.note_claim(me, pos);
    slot.compare_exchange(word, claimed.encode(), Ordering::AcqRel, Ordering::Relaxed)
        .ok()
        .map(|_| Claim { pos, index })
}

/// A batch's run of claims on one side (see "Runs" in the module doc):
/// where the next slot would be, how long the run is; `SEND` says which
/// side, so the choice costs nothing at run time.
#[derive(Debug)]
pub(crate) struct Run<const SEND: bool> {
    /// The position after the run's last claim; None: no run open.
    next: Option<u64>,
    len: u64,
    max: u64,
}

/// A producer's run ([`extend_send`], `enqueue`).
pub(crate) type SendRun = Run<true>;
/// A consumer's run ([`extend_recv`], `dequeue`).
pub(crate) type RecvRun = Run<false>;

impl<const SEND: bool> Run<SEND> {
    pub(crate) fn new(words: &impl RingWords) -> Self {
        Run {
            next: None,
            len: 0,
            max: max_run(words),
        }
    }

    /// The run's next slot for `me`, claimed directly, if the run may go on
    /// and the slot is ready; otherwise the run ends ([`end`](Self::end))
    /// and the caller claims the ordinary way, then calls
    /// [`start_after`](Self::start_after).
    #[inline]
    pub(crate) fn extend(&mut self, words: &impl RingWords, me: u8) -> Option<Claim> {
        let claim = self.next.filter(|_| self.len < self.max).and_then(|pos| {
            if SEND {
                extend_send(words, me, pos)
            } else {
                extend_recv(words, me, pos)
            }
        });
        match claim {
            Some(c) => {
                self.len += 1;
                self.next = Some(c.pos.wrapping_add(1));
            }
            None => self.end(words),
        }
        claim
    }

    /// A claim made by `claim_send` or `claim_recv` begins a new run.
    #[inline]
    pub(crate) fn start_after(&mut self, claim: Claim) {
        self.next = Some(claim.pos.wrapping_add(1));
        self.len = 1;
    }

    /// Moves the side's counter past the run, if one is open.
    #[inline]
    pub(crate) fn end(&mut self, words: &impl RingWords) {
        if let Some(pos) = self.next.take() {
            if SEND {
                advance_enqueue_to(words, pos)
            } else {
                advance_dequeue_to(words, pos)
            }
        }
    }
}

/// The most claims one run may make (its first, by `claim_send` or
/// `claim_recv`, included): half a lap, at least one (see [`extend_send`]).
#[inline]
pub(crate) fn max_run(words: &impl RingWords) -> u64 {
    (words.capacity() / 2).max(1)
}

/// Moves `enqueue` up to `target` (the position after a run of
/// [`extend_send`] claims) unless it is there or past already.
#[inline]
pub(crate) fn advance_enqueue_to(words: &impl RingWords, target: u64) {
    advance_to(words.enqueue_pos(), target);
}

/// Moves `dequeue` up to `target`, as [`advance_enqueue_to`] for runs of
/// [`extend_recv`] claims.
#[inline]
pub(crate) fn advance_dequeue_to(words: &impl RingWords, target: u64) {
    advance_to(words.dequeue_pos(), target);
}

/// Moves a position counter up to `target`, never down. Every position
/// below `target` and at or past the counter is one the caller claimed
/// (its run), so no position is skipped. Release pairs with the Acquire
/// loads at the top of the claim loops, as in `advance`: whoever loads the
/// new value sees the run's claims.
fn advance_to(counter: &AtomicU64, target: u64) {
    let mut now = counter.load(Ordering::Relaxed);
    while now < target {
        match counter.compare_exchange_weak(now, target, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(seen) => now = seen,
        }
    }
}

/// Publishes the message in a slot claimed by `claim_send`.
///
/// The caller then notifies the consumers' event, whose SeqCst fence orders
/// this store before its look at the sleeper count (the Dekker pair of the
/// wait protocol, see `sync::Event`).
///
/// A compare-and-swap from exactly the state our claim wrote, not a store:
/// if a peer took the slot back meanwhile (it judged us dead), the slot is
/// no longer ours and is left alone. Returns whether the message was
/// published.
pub(crate) fn commit_send(words: &impl RingWords, claim: Claim, me: u8) -> bool {
    let held = State {
        pos: claim.pos,
        phase: Phase::Writing,
        owner: me,
    };
    let full = State {
        phase: Phase::Full,
        ..held
    };
    // Release: pairs with the consumer's Acquire load of the slot state;
    // the payload and length written before are visible with FULL.
    settle(words.slot_state(claim.index), held, full)
}

/// Gives a claimed slot back without a message (the position is skipped by
/// consumers, exactly as if its writer had died). A compare-and-swap, as in
/// `commit_send`.
pub(crate) fn abandon_send(words: &impl RingWords, claim: Claim, me: u8) -> bool {
    let cap = words.capacity();
    let held = State {
        pos: claim.pos,
        phase: Phase::Writing,
        owner: me,
    };
    // Release: orders our (partial) writes before the slot is reused.
    settle(
        words.slot_state(claim.index),
        held,
        State::empty(claim.pos.wrapping_add(cap)),
    )
}

/// Moves a slot we hold from `held` to `next` with a Release
/// compare-and-swap; false if it is no longer in the state we left it in.
#[inline]
fn settle(slot: &AtomicU64, held: State, next: State) -> bool {
    // Release: see the callers. Relaxed on failure: we then touch nothing.
    slot.compare_exchange(
        held.encode(),
        next.encode(),
        Ordering::Release,
        Ordering::Relaxed,
    )
    .is_ok()
}

/// Tries to claim the next committed message for consumer `me`.
pub(crate) fn claim_recv(
    words: &impl RingWords,
    me: u8,
    check_dead: bool,
    is_dead: &mut dyn FnMut(u8) -> bool,
) -> Result<Claim, RingError> {
    let cap = words.capacity();
    loop {
        // Acquire pairs with the Release CASes that advance `dequeue`.
        let pos = words.dequeue_pos().load(Ordering::Acquire);
        let index = (pos & (cap - 1)) as usize;
        let slot = words.slot_state(index);
        // Acquire pairs with the producer's store of (pos, FULL): the
        // message bytes are visible once we see FULL.
        let word = slot.load(Ordering::Acquire);
        let state = State::decode(word);
        if state.pos == pos {
            match state.phase {
                Phase::Full => {
                    let claimed = State {
                        pos,
                        phase: Phase::Reading,
                        owner: me,
                    };
                    words.note_claim(me, pos);
                    if slot
                        .compare_exchange_weak(
                            word,
                            claimed.encode(),
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        advance(words.dequeue_pos(), pos);
                        return Ok(Claim { pos, index });
                    }
                }
                // Another consumer has it: help `dequeue` past it.
                Phase::Reading => advance(words.dequeue_pos(), pos),
                Phase::Empty => return Err(RingError::WouldBlock),
                Phase::Writing => {
                    if !(check_dead && is_dead(state.owner)) {
                        return Err(RingError::WouldBlock);
                    }
                    // Its writer died before committing: drop the position.
                    recover(slot, word, pos.wrapping_add(cap));
                }
            }
        } else if state.pos == pos.wrapping_add(cap) {
            // Resolved already (consumed, or abandoned): `dequeue` lags.
            advance(words.dequeue_pos(), pos);
        } else if state.pos.wrapping_add(cap) == pos && state.phase == Phase::Reading {
            // The slot still shows the previous lap: its reader has not
            // released it yet, so our producer has not written. Empty,
            // unless that reader died holding it.
            if !(check_dead && is_dead(state.owner)) {
                return Err(RingError::WouldBlock);
            }
            recover(slot, word, pos);
        } else if words.dequeue_pos().load(Ordering::Acquire) == pos {
            // No state the protocol allows for the current position.
            return Err(RingError::Corrupt { index, word });
        }
        // Otherwise `pos` was stale: look again.
    }
}

/// Frees a slot claimed by `claim_recv` after its message was copied out.
///
/// Release: pairs with the producer's Acquire load of the slot state, so
/// our copy-out is finished before it overwrites. The caller notifies the
/// producers' event (whose fence completes the Dekker pair, as for
/// `commit_send`).
///
/// A compare-and-swap from the state our claim wrote (as in `commit_send`):
/// false if a peer took the slot back meanwhile.
pub(crate) fn release_recv(words: &impl RingWords, claim: Claim, me: u8) -> bool {
    let cap = words.capacity();
    let held = State {
        pos: claim.pos,
        phase: Phase::Reading,
        owner: me,
    };
    settle(
        words.slot_state(claim.index),
        held,
        State::empty(claim.pos.wrapping_add(cap)),
    )
}

/// Moves a position counter from `pos` to `pos + 1` unless someone already did.
/// Release pairs with the Acquire loads at the top of the claim loops.
fn advance(counter: &AtomicU64, pos: u64) {
    let _ = counter.compare_exchange(
        pos,
        pos.wrapping_add(1),
        Ordering::Release,
        Ordering::Relaxed,
    );
}

/// Replaces a dead claimer's state `word` with `(next, EMPTY)`; losing the
/// race means someone else resolved it, which is just as good.
fn recover(slot: &AtomicU64, word: u64, next: u64) {
    let _ = slot.compare_exchange(
        word,
        State::empty(next).encode(),
        Ordering::AcqRel,
        Ordering::Relaxed,
    );
}

/// A consumer's way past a slot whose state `word` (at `index`) the
/// protocol never writes: if the slot still holds it and `dequeue` still
/// names that slot, the position is resolved as abandoned (`(pos + cap,
/// EMPTY)`, as for a dead writer) and `dequeue` moves on. Producers then
/// see the position resolved and skip it too. True if it was done (by us).
pub(crate) fn skip_corrupt(words: &impl RingWords, index: usize, word: u64) -> bool {
    let cap = words.capacity();
    // Acquire: as at the top of `claim_recv`.
    let pos = words.dequeue_pos().load(Ordering::Acquire);
    if (pos & (cap - 1)) as usize != index {
        return false;
    }
    let slot = words.slot_state(index);
    let skipped = slot
        .compare_exchange(
            word,
            State::empty(pos.wrapping_add(cap)).encode(),
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_ok();
    if skipped {
        advance(words.dequeue_pos(), pos);
    }
    skipped
}

/// How many positions are claimed but not yet consumed (approximate while
/// others run).
pub(crate) fn depth(words: &impl RingWords) -> u64 {
    let enq = words.enqueue_pos().load(Ordering::Relaxed);
    let deq = words.dequeue_pos().load(Ordering::Relaxed);
    enq.saturating_sub(deq).min(words.capacity())
}

/// Load-only: could a receiver make progress now (`Inner::may_recv`, the
/// condition a blocked receiver waits for)? Relaxed: a hint; the claim
/// that follows decides with its own Acquire.
pub(crate) fn may_recv(words: &impl RingWords) -> bool {
    let cap = words.capacity();
    let pos = words.dequeue_pos().load(Ordering::Relaxed);
    let s = State::decode(
        words
            .slot_state((pos & (cap - 1)) as usize)
            .load(Ordering::Relaxed),
    );
    let waiting_for_writer = s.pos == pos && matches!(s.phase, Phase::Empty | Phase::Writing);
    let waiting_for_reader = s.pos.wrapping_add(cap) == pos && s.phase == Phase::Reading;
    !(waiting_for_writer || waiting_for_reader)
}

/// Frees the slot of position `pos` if it still holds `owner`'s claim of
/// that position (mid-write or mid-read): what `recover_owner` does for
/// the one slot an endpoint can hold. True if it was freed (by us).
pub(crate) fn recover_claim(words: &impl RingWords, pos: u64, owner: u8) -> bool {
    let cap = words.capacity();
    let slot = words.slot_state((pos & (cap - 1)) as usize);
    let word = slot.load(Ordering::Acquire);
    let state = State::decode(word);
    let held = state.owner == owner
        && state.pos == pos
        && matches!(state.phase, Phase::Writing | Phase::Reading);
    held && slot
        .compare_exchange(
            word,
            State::empty(state.pos.wrapping_add(cap)).encode(),
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_ok()
}

/// The owners recorded in slots that are mid-write or mid-read, with their
/// states: used when an endpoint index is taken over from a dead process.
pub(crate) fn recover_owner(words: &impl RingWords, owner: u8) -> usize {
    let cap = words.capacity();
    let mut recovered = 0;
    for index in 0..cap as usize {
        let slot = words.slot_state(index);
        let word = slot.load(Ordering::Acquire);
        let state = State::decode(word);
        if state.owner != owner {
            continue;
        }
        let next = match state.phase {
            Phase::Writing | Phase::Reading => state.pos.wrapping_add(cap),
            _ => continue,
        };
        if slot
            .compare_exchange(
                word,
                State::empty(next).encode(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            recovered += 1;
        }
    }
    recovered
}

#[cfg(test)]
pub(crate) mod heap {
    //! A ring whose words live on the heap, for unit and loom tests.
    use super::*;

    pub(crate) struct HeapRing {
        pub enqueue: AtomicU64,
        pub dequeue: AtomicU64,
        pub slots: Vec<AtomicU64>,
    }

    impl HeapRing {
        pub(crate) fn new(capacity: usize) -> Self {
            assert!(capacity.is_power_of_two());
            let ring = HeapRing {
                enqueue: AtomicU64::new(0),
                dequeue: AtomicU64::new(0),
                slots: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            };
            init(&ring);
            ring
        }
    }

    impl RingWords for HeapRing {
        fn capacity(&self) -> u64 {
            self.slots.len() as u64
        }
        fn enqueue_pos(&self) -> &AtomicU64 {
            &self.enqueue
        }
        fn dequeue_pos(&self) -> &AtomicU64 {
            &self.dequeue
        }
        fn slot_state(&self, index: usize) -> &AtomicU64 {
            &self.slots[index]
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::heap::HeapRing;
    use super::*;

    fn nobody_dead(_: u8) -> bool {
        false
    }

    #[test]
    fn state_words_round_trip() {
        for phase in [Phase::Empty, Phase::Writing, Phase::Full, Phase::Reading] {
            let s = State {
                pos: (1 << 53) + 7,
                phase,
                owner: 255,
            };
            assert_eq!(State::decode(s.encode()), s);
        }
    }

    #[test]
    fn fills_drains_and_wraps_in_order() {
        let ring = HeapRing::new(4);
        let mut next_in = 0;
        let mut next_out = 0;
        for round in 0..10 {
            for _ in 0..(round % 4) + 1 {
                let c = claim_send(&ring, 1, false, &mut nobody_dead).unwrap();
                assert_eq!(c.pos, next_in);
                next_in += 1;
                assert!(commit_send(&ring, c, 1));
            }
            while let Ok(c) = claim_recv(&ring, 2, false, &mut nobody_dead) {
                assert_eq!(c.pos, next_out);
                next_out += 1;
                assert!(release_recv(&ring, c, 2));
            }
            assert_eq!(next_in, next_out);
        }
        for _ in 0..4 {
            let c = claim_send(&ring, 1, false, &mut nobody_dead).unwrap();
            assert!(commit_send(&ring, c, 1));
        }
        assert_eq!(
            claim_send(&ring, 1, false, &mut nobody_dead),
            Err(RingError::WouldBlock)
        );
        assert_eq!(depth(&ring), 4);
    }

    #[test]
    fn a_dead_writer_is_skipped_and_a_live_one_waited_for() {
        let ring = HeapRing::new(4);
        let stuck = claim_send(&ring, 7, false, &mut nobody_dead).unwrap();
        let ok = claim_send(&ring, 1, false, &mut nobody_dead).unwrap();
        assert!(commit_send(&ring, ok, 1));
        // Writer 7 is alive: the consumer waits for it, in order.
        let mut seven_alive = |o: u8| o != 7;
        assert_eq!(
            claim_recv(&ring, 2, true, &mut seven_alive),
            Err(RingError::WouldBlock)
        );
        // Writer 7 died: its position is dropped, the next message flows.
        let mut seven_dead = |o: u8| o == 7;
        let c = claim_recv(&ring, 2, true, &mut seven_dead).unwrap();
        assert_eq!(c.pos, ok.pos);
        assert!(release_recv(&ring, c, 2));
        let _ = stuck;
        assert_eq!(
            claim_recv(&ring, 2, true, &mut seven_dead),
            Err(RingError::WouldBlock)
        );
    }

    #[test]
    fn a_dead_reader_frees_its_slot_for_producers() {
        let ring = HeapRing::new(2);
        for _ in 0..2 {
            let c = claim_send(&ring, 1, false, &mut nobody_dead).unwrap();
            assert!(commit_send(&ring, c, 1));
        }
        let _held = claim_recv(&ring, 9, false, &mut nobody_dead).unwrap();
        let c = claim_recv(&ring, 2, false, &mut nobody_dead).unwrap();
        assert!(release_recv(&ring, c, 2));
        // Position 2 needs slot 0, still held by reader 9: full until 9 is
        // found dead, and a consumer sees it as empty meanwhile.
        let mut nine_alive = |o: u8| o != 9;
        assert_eq!(
            claim_send(&ring, 1, true, &mut nine_alive),
            Err(RingError::WouldBlock)
        );
        assert_eq!(
            claim_recv(&ring, 2, true, &mut nine_alive),
            Err(RingError::WouldBlock)
        );
        let mut nine_dead = |o: u8| o == 9;
        let c = claim_send(&ring, 1, true, &mut nine_dead).unwrap();
        assert_eq!(c.pos, 2);
        assert!(commit_send(&ring, c, 1));
        assert_eq!(
            claim_recv(&ring, 2, false, &mut nobody_dead).unwrap().pos,
            2
        );
    }

    /// Issue 15, defect 2: commit and release are compare-and-swaps on the
    /// state the claim wrote, so a claimer whose slot was taken back (it
    /// was judged dead) cannot publish into, or free, a slot re-claimed
    /// since.
    #[test]
    fn a_slot_taken_back_is_not_committed_or_released_by_its_old_owner() {
        let ring = HeapRing::new(2);
        let stale = claim_send(&ring, 5, false, &mut nobody_dead).unwrap();
        assert_eq!(recover_owner(&ring, 5), 1);
        let fresh = claim_send(&ring, 1, false, &mut nobody_dead).unwrap();
        assert!(!commit_send(&ring, stale, 5));
        assert!(!abandon_send(&ring, stale, 5));
        assert!(commit_send(&ring, fresh, 1));
        let held = claim_recv(&ring, 7, false, &mut nobody_dead).unwrap();
        assert_eq!(held.pos, fresh.pos);
        assert_eq!(recover_owner(&ring, 7), 1);
        assert!(!release_recv(&ring, held, 7));
        // The ring goes on: the next lap is writable and readable.
        for _ in 0..3 {
            let c = claim_send(&ring, 1, false, &mut nobody_dead).unwrap();
            assert!(commit_send(&ring, c, 1));
            let r = claim_recv(&ring, 2, false, &mut nobody_dead).unwrap();
            assert_eq!(r.pos, c.pos);
            assert!(release_recv(&ring, r, 2));
        }
    }

    /// Runs (`extend_send`, `extend_recv`): a producer's run ends where
    /// another producer got in first, every position is claimed once, the
    /// counters end past every run, a consumer's run stops at a slot not yet
    /// committed, and a dead run holder's slots are recovered one by one.
    #[test]
    fn runs_claim_each_slot_once_and_move_the_counters_once() {
        let ring = HeapRing::new(8);
        let a0 = claim_send(&ring, 1, false, &mut nobody_dead).unwrap();
        let a1 = extend_send(&ring, 1, a0.pos + 1).unwrap();
        assert_eq!((a0.pos, a1.pos), (0, 1));
        // `enqueue` lags behind the run (claim_send moved it past 0 only):
        // producer 2 helps it past the run's slot and claims 2.
        assert_eq!(ring.enqueue.load(Ordering::Relaxed), 1);
        let b = claim_send(&ring, 2, false, &mut nobody_dead).unwrap();
        assert_eq!(b.pos, 2);
        // Producer 1's run ends there; the counter is never moved back.
        assert_eq!(extend_send(&ring, 1, 2), None);
        advance_enqueue_to(&ring, 2);
        assert_eq!(ring.enqueue.load(Ordering::Relaxed), 3);
        for (c, me) in [(a0, 1), (b, 2)] {
            assert!(commit_send(&ring, c, me));
        }
        // The consumer's run: 0, then 1 is still being written: it stops.
        let r0 = claim_recv(&ring, 3, false, &mut nobody_dead).unwrap();
        assert_eq!(r0.pos, 0);
        assert_eq!(extend_recv(&ring, 3, 1), None);
        assert!(commit_send(&ring, a1, 1));
        let r1 = extend_recv(&ring, 3, 1).unwrap();
        let r2 = extend_recv(&ring, 3, 2).unwrap();
        assert_eq!(extend_recv(&ring, 3, 3), None, "nothing sent at 3");
        advance_dequeue_to(&ring, 3);
        assert_eq!(ring.dequeue.load(Ordering::Relaxed), 3);
        for c in [r0, r1, r2] {
            assert!(release_recv(&ring, c, 3));
        }
        // A run whose holder died: each of its slots is taken back by the
        // consumer it blocks, and the run's position is never delivered.
        let d0 = claim_send(&ring, 9, false, &mut nobody_dead).unwrap();
        let d1 = extend_send(&ring, 9, d0.pos + 1).unwrap();
        let ok = claim_send(&ring, 1, false, &mut nobody_dead).unwrap();
        assert_eq!((d0.pos, d1.pos, ok.pos), (3, 4, 5));
        assert!(commit_send(&ring, ok, 1));
        let mut nine_dead = |o: u8| o == 9;
        let got = claim_recv(&ring, 3, true, &mut nine_dead).unwrap();
        assert_eq!(got.pos, 5);
        assert!(!commit_send(&ring, d1, 9), "taken back");
        // A slot taken back at one lap is no run's at the next.
        assert_eq!(extend_recv(&ring, 3, 4), None);
    }

    #[test]
    fn takeover_recovers_an_owners_slots() {
        let ring = HeapRing::new(4);
        let _a = claim_send(&ring, 5, false, &mut nobody_dead).unwrap();
        let b = claim_send(&ring, 1, false, &mut nobody_dead).unwrap();
        assert!(commit_send(&ring, b, 1));
        assert_eq!(recover_owner(&ring, 5), 1);
        let c = claim_recv(&ring, 2, false, &mut nobody_dead).unwrap();
        assert_eq!(c.pos, b.pos);
    }

    /// Issue 15, defect 10: a garbage slot word is skipped, so the ring
    /// goes on for consumers and producers.
    #[test]
    fn a_garbage_slot_can_be_skipped() {
        let ring = HeapRing::new(2);
        ring.slots[0].store(u64::MAX, Ordering::Relaxed);
        assert!(matches!(
            claim_recv(&ring, 1, false, &mut nobody_dead),
            Err(RingError::Corrupt {
                index: 0,
                word: u64::MAX
            })
        ));
        assert!(!skip_corrupt(&ring, 0, 5), "another word: not skipped");
        assert!(skip_corrupt(&ring, 0, u64::MAX));
        for _ in 0..4 {
            let c = claim_send(&ring, 1, false, &mut nobody_dead).unwrap();
            assert!(commit_send(&ring, c, 1));
            let r = claim_recv(&ring, 2, false, &mut nobody_dead).unwrap();
            assert_eq!(r.pos, c.pos);
            assert!(release_recv(&ring, r, 2));
        }
    }

    #[test]
    fn garbage_is_reported_not_trusted() {
        let ring = HeapRing::new(4);
        ring.slots[0].store(u64::MAX, Ordering::Relaxed);
        assert!(matches!(
            claim_send(&ring, 1, false, &mut nobody_dead),
            Err(RingError::Corrupt { index: 0, .. })
        ));
        assert!(matches!(
            claim_recv(&ring, 1, false, &mut nobody_dead),
            Err(RingError::Corrupt { index: 0, .. })
        ));
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! Model checks of the claim protocol over every interleaving (and weak
    //! memory outcome) loom explores. The payload lives in a loom
    //! `UnsafeCell`, so a producer's write racing with a consumer's read is
    //! reported as a data race: that is what the slot states must prevent.
    //!
    //! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p shmkit --lib --release channel::ring`
    //!
    //! Every role (producer, consumer) runs in a spawned thread of its own;
    //! the main thread only sets up, spawns, joins and checks (and drains
    //! what is left, after the joins). A role on the main thread can make
    //! loom 0.7 explore a single interleaving (tokio-rs/loom#392, see
    //! `crate::loom_check`).
    use super::heap::HeapRing;
    use super::*;
    use crate::endpoint_table::{self, HeapTable};
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    fn never(_: u8) -> bool {
        false
    }

    struct Shared {
        ring: HeapRing,
        payload: Vec<UnsafeCell<u64>>,
    }

    fn shared(capacity: usize) -> Arc<Shared> {
        Arc::new(Shared {
            ring: HeapRing::new(capacity),
            payload: (0..capacity).map(|_| UnsafeCell::new(0)).collect(),
        })
    }

    fn send(s: &Shared, me: u8, value: u64) -> bool {
        match claim_send(&s.ring, me, false, &mut never) {
            Ok(c) => {
                // SAFETY (model): the claim gives this thread the slot.
                s.payload[c.index].with_mut(|p| unsafe { *p = value });
                assert!(commit_send(&s.ring, c, me));
                true
            }
            Err(RingError::WouldBlock) => false,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn recv(s: &Shared, me: u8) -> Option<u64> {
        match claim_recv(&s.ring, me, false, &mut never) {
            Ok(c) => {
                // SAFETY (model): the claim gives this thread the slot.
                let v = s.payload[c.index].with(|p| unsafe { *p });
                assert!(release_recv(&s.ring, c, me));
                Some(v)
            }
            Err(RingError::WouldBlock) => None,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn model<T: Ord + Send + 'static>(
        f: impl Fn() -> T + Sync + Send + 'static,
    ) -> std::collections::BTreeSet<T> {
        crate::loom_check::check(Some(3), f)
    }

    /// The channel-level disconnect protocol (issue 15, Deliver 4): a
    /// producer commits a message and leaves (`endpoint_table::leave`); a consumer
    /// that finds the ring empty and the producer's entry empty
    /// (`endpoint_table::occupant`: free, or being settled) takes one last
    /// look, which must find the message:
    /// "every sender is gone" is never reported over a committed message.
    /// Shown to catch a weakened ordering: with `endpoint_table::take`'s
    /// AcqRel made Acquire, or `endpoint_table::free`'s Release made
    /// Relaxed, the model fails (the consumer sees the entry settling or
    /// free but the slot still empty, and reports a disconnection).
    #[test]
    fn a_sender_seen_gone_left_its_messages_visible() {
        #[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
        enum Seen {
            Message,
            NotYet,
        }
        let outcomes = model(|| {
            let s = shared(1);
            let table = Arc::new(HeapTable::new(1));
            table.0[0].store(5, Ordering::Relaxed);
            let producer = {
                let (s, table) = (s.clone(), table.clone());
                loom::thread::spawn(move || {
                    assert!(send(&s, 1, 7));
                    assert!(endpoint_table::leave(&*table, 0, 5, |_, _| {}));
                })
            };
            let consumer = {
                let (s, table) = (s.clone(), table.clone());
                loom::thread::spawn(move || {
                    for _ in 0..2 {
                        if let Some(v) = recv(&s, 2) {
                            assert_eq!(v, 7);
                            return Seen::Message;
                        }
                        let word = endpoint_table::occupant(&*table, 0);
                        if word == 0 || endpoint_table::is_settling(word) {
                            // Every sender gone: the last look.
                            let last = recv(&s, 2);
                            assert_eq!(last, Some(7), "gone, and its message not seen");
                            return Seen::Message;
                        }
                        loom::thread::yield_now();
                    }
                    Seen::NotYet
                })
            };
            producer.join().unwrap();
            consumer.join().unwrap()
        });
        assert!(outcomes.contains(&Seen::Message), "{outcomes:?}");
    }

    /// Runs of claims (`extend_send`, `extend_recv`, and the counters
    /// moved once per run): producer 1 sends two messages as a run,
    /// producer 2 one message with a single claim, and the consumer takes
    /// runs too. Every message arrives exactly once, producer 1's in order,
    /// and no payload is read while it is written (loom's `UnsafeCell`
    /// reports that as a data race).
    /// Shown to catch a weakened ordering: with `extend_recv`'s Acquire
    /// taken away (its load of the slot state Relaxed and its
    /// compare-and-swap Release; either one alone still acquires, since both
    /// read the producer's commit), loom reports the payload read racing
    /// with its write. About a minute in release.
    #[test]
    fn runs_deliver_every_message_once_in_order() {
        let outcomes = model(|| {
            let s = shared(4);
            let run = {
                let s = s.clone();
                loom::thread::spawn(move || {
                    let first = claim_send(&s.ring, 1, false, &mut never).unwrap();
                    let mut claims = vec![first];
                    if let Some(next) = extend_send(&s.ring, 1, first.pos + 1) {
                        claims.push(next);
                    }
                    advance_enqueue_to(&s.ring, claims.last().unwrap().pos + 1);
                    for (k, c) in claims.iter().enumerate() {
                        // SAFETY (model): the claim gives this thread the slot.
                        s.payload[c.index].with_mut(|p| unsafe { *p = 10 + k as u64 });
                        assert!(commit_send(&s.ring, *c, 1));
                    }
                    if claims.len() == 1 {
                        // The run was cut short by producer 2: one more claim.
                        assert!(send(&s, 1, 11));
                    }
                })
            };
            let single = {
                let s = s.clone();
                loom::thread::spawn(move || assert!(send(&s, 2, 20)))
            };
            let consumer = {
                let s = s.clone();
                loom::thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..2 {
                        let Ok(first) = claim_recv(&s.ring, 3, false, &mut never) else {
                            loom::thread::yield_now();
                            continue;
                        };
                        let mut c = first;
                        loop {
                            // SAFETY (model): the claim gives this thread the slot.
                            got.push(s.payload[c.index].with(|p| unsafe { *p }));
                            assert!(release_recv(&s.ring, c, 3));
                            match extend_recv(&s.ring, 3, c.pos + 1) {
                                Some(next) => c = next,
                                None => break,
                            }
                        }
                        advance_dequeue_to(&s.ring, c.pos + 1);
                    }
                    got
                })
            };
            run.join().unwrap();
            single.join().unwrap();
            let mut got = consumer.join().unwrap();
            while let Some(v) = recv(&s, 3) {
                got.push(v);
            }
            let ones: Vec<u64> = got.iter().copied().filter(|v| *v < 20).collect();
            assert_eq!(
                ones,
                [10, 11],
                "producer 1's messages once, in order: {got:?}"
            );
            assert_eq!(got.len(), 3, "every message once: {got:?}");
            got.len()
        });
        assert_eq!(outcomes.len(), 1);
    }

    /// The channel-level wait path (issue 15, Deliver 4): a receiver that
    /// finds the ring empty waits as a blocked `Receiver` does
    /// (`Event::wait_slice`: quick polls, the adaptive spin, registering,
    /// the futex sleep), with a deadline and a slice, and the futex model's
    /// timed waits block until woken (`futex::timed_waits_block`), so only
    /// the sender's notify can end the sleep: a lost wake-up is a deadlock.
    /// Shown to catch a weakened ordering: without the `SeqCst` fence in
    /// `wait_word::wake_sleepers` (the notify's side of the Dekker pair),
    /// loom reports a deadlock.
    #[test]
    fn a_blocked_receiver_is_woken_by_a_send() {
        use crate::sync::Event;
        use std::time::{Duration, Instant};
        model(|| {
            crate::sync::futex::timed_waits_block();
            let s = shared(1);
            let event = Arc::new(Event::new());
            let producer = {
                let (s, event) = (s.clone(), event.clone());
                loom::thread::spawn(move || {
                    assert!(send(&s, 1, 7));
                    event.notify_all();
                })
            };
            let consumer = {
                let (s, event) = (s.clone(), event.clone());
                loom::thread::spawn(move || loop {
                    if let Some(v) = recv(&s, 2) {
                        return v;
                    }
                    let deadline = Instant::now() + Duration::from_secs(3600);
                    let slice = Duration::from_secs(600);
                    let woke = event
                        .wait_slice(Some(deadline), slice, true, || 0, || may_recv(&s.ring))
                        .unwrap();
                    assert_eq!(woke, Some(true), "the wait ended without the message");
                })
            };
            producer.join().unwrap();
            consumer.join().unwrap()
        });
    }

    /// Two producers claim concurrently: distinct slots, both messages
    /// received exactly once afterwards.
    #[test]
    fn concurrent_producers_get_distinct_slots() {
        model(|| {
            let s = shared(2);
            let handles: Vec<_> = (1..=2u8)
                .map(|me| {
                    let s = s.clone();
                    loom::thread::spawn(move || assert!(send(&s, me, u64::from(me) * 10)))
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            let mut got = vec![recv(&s, 3).unwrap(), recv(&s, 3).unwrap()];
            got.sort();
            assert_eq!(got, vec![10, 20]);
            assert_eq!(recv(&s, 3), None);
        });
    }

    /// A producer and a consumer run concurrently around a one-slot ring,
    /// two laps: the consumer sees each value whole, in order, or nothing
    /// yet; never a slot being written.
    #[test]
    fn producer_and_consumer_race_over_one_slot() {
        let outcomes = model(|| {
            let s = shared(1);
            let p = {
                let s = s.clone();
                loom::thread::spawn(move || {
                    assert!(send(&s, 1, 7));
                    // Lets the consumer take a step here: without it loom
                    // never tries the consumer's whole receive between the
                    // two sends (`crate::loom_check`), the one interleaving
                    // where the second lap overwrites a slot just read.
                    loom::thread::yield_now();
                    // The second lap succeeds only once the first is consumed.
                    send(&s, 1, 8)
                })
            };
            let c = {
                let s = s.clone();
                loom::thread::spawn(move || recv(&s, 2))
            };
            let second_sent = p.join().unwrap();
            let first = c.join().unwrap();
            let mut got: Vec<u64> = first.into_iter().collect();
            while let Some(v) = recv(&s, 2) {
                got.push(v);
            }
            let expected: Vec<u64> = if second_sent { vec![7, 8] } else { vec![7] };
            assert_eq!(got, expected);
            (first, second_sent)
        });
        // Nothing yet; the first message but the slot not yet free; the
        // second lap written after the consumer's release.
        for outcome in [(None, false), (Some(7), false), (Some(7), true)] {
            assert!(outcomes.contains(&outcome), "{outcome:?} never reached");
        }
    }

    /// Two consumers race for one message: exactly one gets it.
    #[test]
    fn one_message_goes_to_exactly_one_consumer() {
        model(|| {
            let s = shared(2);
            assert!(send(&s, 1, 42));
            let handles: Vec<_> = (2..=3u8)
                .map(|me| {
                    let s = s.clone();
                    loom::thread::spawn(move || recv(&s, me))
                })
                .collect();
            let got: Vec<u64> = handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect();
            assert_eq!(got, vec![42]);
        });
    }

    /// A dead writer's slot is recovered by a consumer while a live producer
    /// sends the next message: the live message arrives, the dead one never.
    #[test]
    fn recovery_races_with_a_live_producer() {
        model(|| {
            let s = shared(2);
            let dead = claim_send(&s.ring, 9, false, &mut never).unwrap();
            let _ = dead;
            let p = {
                let s = s.clone();
                loom::thread::spawn(move || assert!(send(&s, 1, 5)))
            };
            let c = {
                let s = s.clone();
                loom::thread::spawn(move || {
                    let mut nine_dead = |o: u8| o == 9;
                    for _ in 0..2 {
                        if let Ok(c) = claim_recv(&s.ring, 2, true, &mut nine_dead) {
                            // SAFETY (model): the claim gives this thread the slot.
                            let got = s.payload[c.index].with(|p| unsafe { *p });
                            assert!(release_recv(&s.ring, c, 2));
                            return Some(got);
                        }
                    }
                    None
                })
            };
            p.join().unwrap();
            let mut got = c.join().unwrap();
            if got.is_none() {
                got = recv(&s, 2);
            }
            assert_eq!(got, Some(5));
        });
    }
}
