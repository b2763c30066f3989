//! What [`Channel::stats`] reports: the endpoint table and counters, for
//! people and monitoring.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::endpoints::*;
use super::layout::*;
use super::object::Channel;
use super::ring;
use crate::process::{self, ProcessId};

impl Channel {
    /// Frees the entries of endpoints whose processes died (what a blocked
    /// endpoint does on its own), adding their message counts to the
    /// departed totals; returns how many were freed. Live endpoints are
    /// untouched.
    pub fn reap(&self) -> usize {
        self.inner.reap(identity_alive)
    }

    /// A snapshot of the channel's state, for people and monitoring.
    pub fn stats(&self) -> ChannelStats {
        let inner = &*self.inner;
        let mut endpoints = Vec::new();
        let mut sent = inner.word64(OFF_DEPARTED_SENT).load(Ordering::Relaxed);
        let mut received = inner.word64(OFF_DEPARTED_RECEIVED).load(Ordering::Relaxed);
        for i in 0..MAX_ENDPOINTS {
            let word = inner.endpoint_identity(i).load(Ordering::Acquire);
            let role = match role_of(word) {
                _ if word == 0 => continue,
                ROLE_PRODUCER => Role::Sender,
                ROLE_CONSUMER => Role::Receiver,
                _ => continue,
            };
            let messages = inner.endpoint_count(i).load(Ordering::Relaxed);
            // Saturating: the counts are words anyone can write.
            match role {
                Role::Sender => sent = sent.saturating_add(messages),
                Role::Receiver => received = received.saturating_add(messages),
            }
            endpoints.push(EndpointInfo {
                pid: process::identity_pid(word),
                role,
                alive: identity_alive(word),
                messages,
            });
        }
        ChannelStats {
            capacity: inner.layout.capacity,
            max_message: inner.layout.max_msg,
            type_size: inner.layout.type_size,
            spsc: inner.layout.spsc(),
            stream: inner.layout.stream(),
            depth: if inner.layout.stream() {
                // Records are not counted in the ring: the counts tell.
                sent.saturating_sub(received)
            } else {
                ring::depth(inner)
            },
            sent,
            received,
            endpoints,
            creator: inner.info.creator,
            creator_alive: inner.info.creator.is_alive(),
            created: inner.info.created,
            size: inner.layout.total,
        }
    }
}

/// Which side of a channel an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends messages.
    Sender,
    /// Receives messages.
    Receiver,
}

/// One connected endpoint in [`ChannelStats`].
#[derive(Debug, Clone)]
pub struct EndpointInfo {
    /// Its process.
    pub pid: u32,
    /// Sender or receiver.
    pub role: Role,
    /// Whether its process (pid and start time) is still running.
    pub alive: bool,
    /// Messages it sent or received since it connected.
    pub messages: u64,
}

/// A snapshot of a channel, from [`Channel::stats`].
#[derive(Debug, Clone)]
pub struct ChannelStats {
    /// Messages the ring holds.
    pub capacity: u64,
    /// Largest message in bytes.
    pub max_message: u64,
    /// Size of the message type for typed channels, 0 for byte channels.
    pub type_size: u32,
    /// One sender and one receiver at a time ([`ChannelOptions::spsc`](super::ChannelOptions::spsc)).
    pub spsc: bool,
    /// The framed byte ring ([`ChannelOptions::stream`](super::ChannelOptions::stream)).
    pub stream: bool,
    /// Messages sent and not yet received (approximate while others run).
    pub depth: u64,
    /// Messages sent, by endpoints connected now and before.
    pub sent: u64,
    /// Messages received, by endpoints connected now and before.
    pub received: u64,
    /// Connected endpoints (dead ones until someone reaps them).
    pub endpoints: Vec<EndpointInfo>,
    /// The process that created the channel.
    pub creator: ProcessId,
    /// Whether it still runs.
    pub creator_alive: bool,
    /// When the channel was created.
    pub created: SystemTime,
    /// Bytes of shared memory the channel uses.
    pub size: u64,
}
