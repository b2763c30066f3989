//! The endpoint table: joining (and taking over a dead endpoint's entry),
//! leaving by compare-and-swap, reaping the dead and recovering their
//! slots, and the liveness questions blocked endpoints ask.

use std::sync::atomic::Ordering;

use super::layout::*;
use super::ring;
use super::spsc;
use crate::error::{ErrorKind, Result};
use crate::process::{self, ProcessId};

impl Inner {
    /// Whether the endpoint that owns slots as `owner` is gone. Reads /proc:
    /// called only from slow paths.
    pub(super) fn owner_dead(&self, owner: u8) -> bool {
        let i = usize::from(owner);
        if i == 0 || i > MAX_ENDPOINTS {
            return true; // nobody, or garbage: nobody will finish it
        }
        let word = self.endpoint_identity(i - 1).load(Ordering::Acquire);
        word == 0 || !identity_alive(word)
    }

    /// Joins the endpoint table with `role`, taking over a dead endpoint's
    /// entry (and recovering its slots) if no entry is free. Returns the
    /// entry and the identity word stored there.
    pub(super) fn join(&self, role: u64) -> Result<(usize, u64)> {
        let mine = identity_word(ProcessId::current(), role);
        for pass in 0..2 {
            for i in 0..MAX_ENDPOINTS {
                let id = self.endpoint_identity(i);
                let word = id.load(Ordering::Acquire);
                let free = word == 0;
                if !(free || (pass == 1 && !identity_alive(word))) {
                    continue;
                }
                // AcqRel: Acquire pairs with the leaver's Release store of 0;
                // Release publishes our identity before any slot we claim.
                if id
                    .compare_exchange(word, mine, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                if !free {
                    self.retire(i, word);
                }
                self.endpoint_count(i).store(0, Ordering::Relaxed);
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
                return Ok((i, mine));
            }
        }
        Err(self.err(
            ErrorKind::LimitExceeded,
            "connect to",
            format!(
                "{MAX_ENDPOINTS} live endpoints are connected, the most a channel has room for"
            ),
        ))
    }

    /// A live endpoint of `role` other than entry `mine`, reaping dead
    /// ones of that role on the way (their entries are then free).
    ///
    /// The caller claimed entry `mine` before: `spsc::rival`'s fence makes
    /// two concurrent joiners see each other's claims (Dekker).
    pub(super) fn other_live(&self, mine: usize, role: u64) -> Option<u64> {
        self.reap();
        spsc::rival(
            MAX_ENDPOINTS,
            mine,
            // Acquire: pairs with the Release (AcqRel) claim in `join`.
            |j| self.endpoint_identity(j).load(Ordering::Acquire),
            |word| role_of(word) == role && identity_alive(word),
        )
    }

    /// Settles what the dead occupant `old` of entry `i` left: slots it was
    /// writing or reading, and its message count.
    pub(super) fn retire(&self, i: usize, old: u64) {
        // The SPSC ring records no owners in its slots: a dead producer
        // published nothing half-way, a dead consumer's message stays.
        if !self.layout.spsc() {
            ring::recover_owner(self, (i + 1) as u8);
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

    /// Leaves the table (a handle dropped): entry `i`, where the handle
    /// stored `word`. Only an entry that still holds `word` is cleared, by
    /// compare-and-swap: one a reaper took (judging us dead) is its own.
    pub(super) fn leave(&self, i: usize, word: u64, role: u64) {
        let id = self.endpoint_identity(i);
        // Relaxed: our own join wrote it; the CAS below decides.
        if id.load(Ordering::Relaxed) != word {
            return;
        }
        // A reaper racing with us swaps the count too: it is added once.
        let count = self.endpoint_count(i).swap(0, Ordering::Relaxed);
        let departed = if role == ROLE_PRODUCER {
            OFF_DEPARTED_SENT
        } else {
            OFF_DEPARTED_RECEIVED
        };
        self.word64(departed).fetch_add(count, Ordering::Relaxed);
        // Release: pairs with the Acquire in `join`, so the next occupant
        // sees the count settled.
        if id
            .compare_exchange(word, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
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

    /// Takes over the entries of dead endpoints, recovering their slots.
    pub(super) fn reap(&self) {
        let reaper = identity_word(ProcessId::current(), ROLE_REAPING);
        for i in 0..MAX_ENDPOINTS {
            let id = self.endpoint_identity(i);
            let word = id.load(Ordering::Acquire);
            if word == 0 || identity_alive(word) {
                continue;
            }
            if id
                .compare_exchange(word, reaper, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.retire(i, word);
                id.store(0, Ordering::Release);
                self.announce();
            }
        }
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
        self.reap();
        let any_alive = (0..MAX_ENDPOINTS).any(|i| {
            let word = self.endpoint_identity(i).load(Ordering::Acquire);
            role_of(word) == role && identity_alive(word)
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

/// An endpoint's identity word: the process (see
/// [`process::identity_word`]) with its role in the two spare bits 22–23.
pub(super) fn identity_word(p: ProcessId, role: u64) -> u64 {
    process::identity_word(p) | (role << 22)
}

pub(super) fn role_of(word: u64) -> u64 {
    (word >> 22) & 0b11
}

/// Whether the process an identity word names is still running.
pub(super) fn identity_alive(word: u64) -> bool {
    process::identity_alive(word)
}
