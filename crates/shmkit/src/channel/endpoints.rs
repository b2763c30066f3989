//! The channel's use of the endpoint table (`crate::endpoint_table`, the
//! protocol it shares with broadcasts): joining with a role, the
//! single-producer admission, settling what an endpoint leaves (its slots,
//! its message count), and the liveness questions blocked endpoints ask.

use std::sync::atomic::{AtomicU64, Ordering};

use super::layout::*;
use super::ring;
use super::spsc;
use crate::endpoint_table::{self, EndpointWords};
use crate::error::{ErrorKind, Result};
use crate::process::{self, ProcessId};

impl Inner {
    /// Whether the endpoint that owns slots as `owner` is gone. May read
    /// /proc (a cached verdict, see `peer_alive`): slow paths only.
    pub(super) fn owner_dead(&self, owner: u8) -> bool {
        let i = usize::from(owner);
        if i == 0 || i > MAX_ENDPOINTS {
            return true; // nobody, or garbage: nobody will finish it
        }
        let word = self.endpoint_identity(i - 1).load(Ordering::Acquire);
        word == 0 || !self.peer_alive(word)
    }

    /// Whether a peer's process runs, as a blocked endpoint asks it every
    /// liveness slice: from this mapping's cache (`process::Liveness`), so
    /// each peer's /proc entry is read once per `process::RECHECK` at most,
    /// and a new peer at once. Joining asks `identity_alive` afresh.
    pub(super) fn peer_alive(&self, word: u64) -> bool {
        self.liveness.alive(word)
    }

    /// Joins the endpoint table with `role`, taking over a dead endpoint's
    /// entry (and recovering its slots) if no entry is free
    /// (`endpoint_table::join`). Returns the entry and the occupant word
    /// stored there.
    pub(super) fn join(&self, role: u64) -> Result<(usize, u64)> {
        let mine = identity_word(ProcessId::current(), role);
        let joined = endpoint_table::join(
            self,
            mine,
            |word| !identity_alive(word),
            |i, old| self.retire(i, old),
        );
        let Some(i) = joined else {
            return Err(self.err(
                ErrorKind::LimitExceeded,
                "connect to",
                format!(
                    "{MAX_ENDPOINTS} live endpoints are connected, the most a channel has room for"
                ),
            ));
        };
        // Relaxed: ours alone while we hold the entry (the join's Acquire
        // ordered them after the previous holder's settling).
        self.endpoint_count(i).store(0, Ordering::Relaxed);
        self.endpoint_claim(i).store(0, Ordering::Relaxed);
        self.endpoint_leaked(i).store(0, Ordering::Relaxed);
        let ever = if role == ROLE_PRODUCER {
            OFF_PRODUCERS_EVER
        } else {
            OFF_CONSUMERS_EVER
        };
        if self.layout.spsc() {
            if let Some(other) = self.other_live(i, role) {
                self.leave(i, mine, role);
                let side = if role == ROLE_PRODUCER {
                    "sender"
                } else {
                    "receiver"
                };
                return Err(self.err(
                    ErrorKind::LimitExceeded,
                    "connect to",
                    format!(
                        "it is a single-producer single-consumer channel and process {} is connected as its {side}",
                        process::identity_pid(other)
                    ),
                ));
            }
        }
        self.word32(ever).fetch_add(1, Ordering::Relaxed);
        self.announce();
        Ok((i, mine))
    }

    /// A live endpoint of `role` other than entry `mine`, reaping dead
    /// ones of that role on the way (their entries are then free).
    ///
    /// The caller claimed entry `mine` before: `spsc::rival`'s fence makes
    /// two concurrent joiners see each other's claims (Dekker).
    pub(super) fn other_live(&self, mine: usize, role: u64) -> Option<u64> {
        self.reap(identity_alive);
        spsc::rival(
            MAX_ENDPOINTS,
            mine,
            // Acquire: pairs with the Release (AcqRel) claim in `join`.
            |j| endpoint_table::occupant(self, j),
            |word| role_of(word) == role && identity_alive(word),
        )
    }

    /// Settles what occupant `old` of entry `i` left, as it leaves or once
    /// it is dead (the table's settling step, idempotent): slots it was
    /// writing or reading, and its message count.
    pub(super) fn retire(&self, i: usize, old: u64) {
        // The SPSC ring records no owners in its slots: a dead producer
        // published nothing half-way, a dead consumer's message stays.
        if !self.layout.spsc() {
            self.recover_slots_of(i);
        }
        let count = self.endpoint_count(i).swap(0, Ordering::Relaxed);
        match role_of(old) {
            ROLE_PRODUCER => self
                .word64(OFF_DEPARTED_SENT)
                .fetch_add(count, Ordering::Relaxed),
            ROLE_CONSUMER => self
                .word64(OFF_DEPARTED_RECEIVED)
                .fetch_add(count, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// Records that entry `i`'s endpoint forgot a claimed slot (it claims
    /// again with one still open): from now on its slots are found by a
    /// scan when it leaves or dies, not by its last claim alone.
    #[cold]
    pub(super) fn note_leak(&self, i: usize) {
        // Relaxed: read by this endpoint (leave) or after its death.
        self.endpoint_leaked(i).store(1, Ordering::Relaxed);
    }

    /// Frees the slots entry `i`'s endpoint holds on the shared ring (it is
    /// dead, or leaving). An endpoint holds at most the one slot it claimed
    /// last, unless it forgot a slot (`mem::forget` of a `SendSlot` or
    /// `RecvSlot`, recorded in its entry): only then is the whole ring
    /// scanned, so a takeover costs one slot, not up to 2^24 (issue 15,
    /// defect 11). The entry's words are untrusted; the slot must hold
    /// exactly this owner's claim to be freed.
    pub(super) fn recover_slots_of(&self, i: usize) {
        let owner = (i + 1) as u8;
        if self.endpoint_leaked(i).load(Ordering::Relaxed) != 0 {
            ring::recover_owner(self, owner);
        } else if let Some(pos) = self
            .endpoint_claim(i)
            .load(Ordering::Relaxed)
            .checked_sub(1)
        {
            ring::recover_claim(self, pos, owner);
        }
    }

    /// Leaves the table (a handle dropped): entry `i`, where the handle
    /// stored `word` (`endpoint_table::leave`: only an entry that still
    /// holds `word` is settled and freed; one a reaper took, judging us
    /// dead, is its own). Settling gives back the slots this endpoint
    /// forgot (`mem::forget` of a slot), which would otherwise look claimed
    /// by the next occupant of the entry, alive, and adds its count to the
    /// departed totals.
    pub(super) fn leave(&self, i: usize, word: u64, role: u64) {
        debug_assert_eq!(role_of(word), role);
        // The table's Release (settling word, then 0) pairs with the
        // Acquire in `join`, so the next occupant sees the count settled,
        // and in `all_gone`, so a receiver that sees us gone sees what we
        // sent (the `a_sender_seen_gone_left_its_messages_visible` model).
        if endpoint_table::leave(self, i, word, |i, old| self.retire(i, old)) {
            self.announce();
        }
    }

    /// Tells every sleeper that the set of endpoints changed.
    pub(super) fn announce(&self) {
        // Release: pairs with the Acquire in `epoch`.
        self.word32(OFF_EPOCH).fetch_add(1, Ordering::Release);
        self.notify_data();
        self.space_event().notify_all();
    }

    /// Reaps the entries of dead endpoints (`endpoint_table::reap`),
    /// recovering their slots; returns how many it freed. `alive` judges
    /// each occupant: afresh when joining, from the cache when blocked
    /// (`all_gone`).
    pub(super) fn reap(&self, alive: impl Fn(u64) -> bool) -> usize {
        let reaper = endpoint_table::settling(process::identity_word(ProcessId::current()));
        let freed = endpoint_table::reap(self, reaper, alive, |i, old| self.retire(i, old));
        if freed > 0 {
            self.announce();
        }
        freed
    }

    /// Whether endpoints of `role` have connected before and none is alive now.
    pub(super) fn all_gone(&self, role: u64) -> bool {
        let ever = if role == ROLE_PRODUCER {
            OFF_PRODUCERS_EVER
        } else {
            OFF_CONSUMERS_EVER
        };
        let seen = &self.seen[usize::from(role == ROLE_PRODUCER)];
        // Relaxed: both are hints about the past; liveness is decided below.
        if self.word32(ever).load(Ordering::Relaxed) != 0 {
            seen.store(true, Ordering::Relaxed);
        }
        self.reap(|word| self.peer_alive(word));
        let any_alive = (0..MAX_ENDPOINTS).any(|i| {
            let word = endpoint_table::occupant(self, i);
            role_of(word) == role && self.peer_alive(word)
        });
        if any_alive {
            seen.store(true, Ordering::Relaxed);
            return false;
        }
        // Nobody alive: gone if anyone ever came (as far as this process
        // saw, or the header says); otherwise wait for the first.
        seen.load(Ordering::Relaxed)
    }
}

/// An endpoint's occupant word: the process (see
/// [`process::identity_word`]) with its role (`endpoint_table::with_role`).
pub(super) fn identity_word(p: ProcessId, role: u64) -> u64 {
    endpoint_table::with_role(process::identity_word(p), role)
}

pub(super) use crate::endpoint_table::role_of;

impl EndpointWords for Inner {
    fn entries(&self) -> usize {
        MAX_ENDPOINTS
    }
    fn occupant(&self, entry: usize) -> &AtomicU64 {
        self.endpoint_identity(entry)
    }
}

/// Whether the process an identity word names is still running.
pub(super) fn identity_alive(word: u64) -> bool {
    process::identity_alive(word)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::channel::{Channel, ChannelOptions};
    use crate::process::tests::probes_in;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    use crate::shared_object::TestName as Name;

    /// A live process of our own to name in the table, killed on drop.
    struct Peer(Child);

    impl Peer {
        fn start() -> Peer {
            Peer(Command::new("sleep").arg("30").spawn().unwrap())
        }

        fn identity(&self, role: u64) -> u64 {
            let pid = self.0.id();
            let start_time = process::start_time(pid).unwrap();
            identity_word(ProcessId { pid, start_time }, role)
        }

        fn kill(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    impl Drop for Peer {
        fn drop(&mut self) {
            self.kill();
        }
    }

    /// The identity of a process that has exited.
    fn dead_identity(role: u64) -> u64 {
        let mut child = Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        identity_word(
            ProcessId {
                pid: child.id(),
                start_time: 12345,
            },
            role,
        )
    }

    fn channel(name: &Name, capacity: usize) -> Channel {
        let mut o = ChannelOptions::new();
        o.capacity(capacity).max_message(8);
        Channel::create(&name.0, &o).unwrap()
    }

    /// Issue 15, defect 11: a blocked endpoint asks "is every sender
    /// gone?" every liveness slice; it used to read every occupied
    /// entry's /proc twice each time (64 entries every 50 ms).
    #[test]
    fn blocked_endpoints_do_not_reread_every_peer_each_slice() {
        let name = Name::new("probes");
        let ch = channel(&name, 4);
        let _rx = ch.receiver().unwrap();
        let _senders: Vec<_> = (0..8).map(|_| ch.sender().unwrap()).collect();
        let peers: Vec<Peer> = (0..5).map(|_| Peer::start()).collect();
        for (k, peer) in peers.iter().enumerate() {
            ch.inner
                .endpoint_identity(20 + k)
                .store(peer.identity(ROLE_CONSUMER), Ordering::Release);
        }
        // Six processes in the table (this one in 9 entries, 5 peers).
        let probes = probes_in(|| {
            for _ in 0..50 {
                assert!(!ch.inner.all_gone(ROLE_PRODUCER));
            }
        });
        assert!(
            probes <= 2 * 6,
            "50 slices probed /proc {probes} times for 6 processes"
        );
    }

    /// The cache does not hide a death: a peer that dies is found gone
    /// once its verdict is old (`process::RECHECK`), a dead one at once.
    #[test]
    fn a_peer_that_dies_is_still_noticed() {
        let name = Name::new("dies");
        let ch = channel(&name, 4);
        let _rx = ch.receiver().unwrap();
        let mut peer = Peer::start();
        let entry = ch.inner.endpoint_identity(30);
        entry.store(peer.identity(ROLE_PRODUCER), Ordering::Release);
        assert!(!ch.inner.all_gone(ROLE_PRODUCER), "a live sender");
        peer.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ch.inner.all_gone(ROLE_PRODUCER) {
            assert!(Instant::now() < deadline, "the dead sender never noticed");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(entry.load(Ordering::Acquire), 0, "reaped");
        // A dead identity never seen before is reaped at the first look.
        entry.store(dead_identity(ROLE_PRODUCER), Ordering::Release);
        assert!(ch.inner.all_gone(ROLE_PRODUCER));
        assert_eq!(entry.load(Ordering::Acquire), 0);
    }

    /// Issue 15, defect 11: taking over a dead endpoint scanned every slot
    /// (up to 2^24); it now frees the slot of the endpoint's last claim,
    /// and scans only for an endpoint that forgot a slot.
    #[test]
    fn a_takeover_frees_the_last_claim_without_scanning_the_ring() {
        use super::ring::{Phase, RingWords, State};
        for leaked in [false, true] {
            let name = Name::new("takeover");
            let ch = channel(&name, 8);
            let inner = &*ch.inner;
            let (entry, owner) = (5, 6u8);
            let writing = |pos| {
                State {
                    pos,
                    phase: Phase::Writing,
                    owner,
                }
                .encode()
            };
            // The dead endpoint's recorded claim, position 2, and a slot it
            // holds that no record names, position 6.
            inner.slot_state(2).store(writing(2), Ordering::Release);
            inner.slot_state(6).store(writing(6), Ordering::Release);
            inner.endpoint_claim(entry).store(3, Ordering::Relaxed);
            inner
                .endpoint_leaked(entry)
                .store(u64::from(leaked), Ordering::Relaxed);
            inner
                .endpoint_identity(entry)
                .store(dead_identity(ROLE_PRODUCER), Ordering::Release);
            inner.reap(identity_alive);
            assert_eq!(inner.endpoint_identity(entry).load(Ordering::Acquire), 0);
            let freed = |index: usize| {
                let s = State::decode(inner.slot_state(index).load(Ordering::Acquire));
                s.phase == Phase::Empty && s.pos == index as u64 + 8
            };
            assert!(freed(2), "the recorded claim is freed (leaked {leaked})");
            assert_eq!(
                freed(6),
                leaked,
                "only an endpoint that forgot a slot costs a scan"
            );
        }
    }

    /// A sender that forgot its slots (`mem::forget` of a `SendSlot`)
    /// gives them back when it leaves, so the next sender in its entry is
    /// not taken for their owner and the ring is not wedged.
    #[test]
    fn forgotten_slots_are_given_back_when_their_sender_leaves() {
        let name = Name::new("forgot");
        let ch = channel(&name, 2);
        let mut rx = ch.receiver().unwrap();
        let mut tx = ch.sender().unwrap();
        for _ in 0..2 {
            std::mem::forget(tx.try_reserve().unwrap());
        }
        assert_eq!(
            tx.try_send(b"x").unwrap_err().kind(),
            ErrorKind::WouldBlock,
            "both slots are held"
        );
        drop(tx);
        let mut tx = ch.sender().unwrap();
        for m in [b"a", b"b"] {
            tx.send_timeout(m, Duration::from_secs(5)).unwrap();
        }
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), b"a");
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), b"b");
    }
}
