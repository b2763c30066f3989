//! What a bridge counts, printed as `key: value` lines or one JSON object,
//! and optionally kept on a local board so other tools can read it while
//! the bridge runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde_json::{json, Value};

/// Counters shared by a bridge's threads and Zenoh's callbacks. Relaxed:
/// each is a tally read for display, ordered with nothing else.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages bridged (exporter: put on Zenoh; importer: delivered locally).
    pub messages: AtomicU64,
    /// Their payload bytes.
    pub bytes: AtomicU64,
    /// Zenoh samples (frames) sent or received.
    pub frames: AtomicU64,
    /// Messages the importer knows it never got (jumps in sequence numbers).
    pub gaps: AtomicU64,
    /// How many jumps there were.
    pub gap_events: AtomicU64,
    /// Messages dropped because their number was seen already.
    pub duplicates: AtomicU64,
    /// Exporter runs seen after the first (restarts, or a second exporter).
    pub restarts: AtomicU64,
    /// Frames that could not be read.
    pub malformed: AtomicU64,
    /// Messages the local object refused (too large, for instance).
    pub rejected: AtomicU64,
    /// Broadcast exporter: messages the local ring overwrote before the
    /// exporter read them (they never reached Zenoh; the importer sees
    /// them as a gap too).
    pub source_missed: AtomicU64,
    /// Channel exporter: messages put again after a dropped link (the
    /// importer said it had not got them).
    pub replayed: AtomicU64,
    /// Exporter: whether an importer's subscriber matches the key now.
    pub matched: AtomicBool,
    /// How many times matching was lost (importer gone, link dropped).
    pub unmatched: AtomicU64,
    /// Remote bridges on this key, by Zenoh id: alive or not.
    pub peers: Mutex<BTreeMap<String, bool>>,
}

/// What a stats report names besides the counters.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `export` or `import`.
    pub role: &'static str,
    /// `channel`, `broadcast` or `board`.
    pub kind: &'static str,
    /// The local object.
    pub object: String,
    /// The Zenoh key expression.
    pub key: String,
    /// This bridge's Zenoh id.
    pub zid: String,
}

impl Stats {
    /// Records that the remote bridge `zid` appeared (or vanished).
    pub fn peer(&self, zid: String, alive: bool) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.insert(zid, alive);
    }

    /// One JSON object with every counter.
    pub fn to_json(&self, id: &Identity) -> Value {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let peers: Vec<Value> = peers
            .iter()
            .map(|(zid, alive)| json!({ "zid": zid, "alive": alive }))
            .collect();
        json!({
            "role": id.role,
            "kind": id.kind,
            "object": id.object,
            "key": id.key,
            "zid": id.zid,
            "messages": self.messages.load(Relaxed),
            "bytes": self.bytes.load(Relaxed),
            "frames": self.frames.load(Relaxed),
            "gaps": self.gaps.load(Relaxed),
            "gap_events": self.gap_events.load(Relaxed),
            "duplicates": self.duplicates.load(Relaxed),
            "restarts": self.restarts.load(Relaxed),
            "malformed": self.malformed.load(Relaxed),
            "rejected": self.rejected.load(Relaxed),
            "source_missed": self.source_missed.load(Relaxed),
            "replayed": self.replayed.load(Relaxed),
            "matched": self.matched.load(Relaxed),
            "unmatched": self.unmatched.load(Relaxed),
            "peers": peers,
        })
    }

    /// The same as `key: value` lines.
    pub fn to_text(&self, id: &Identity) -> String {
        let Value::Object(map) = self.to_json(id) else {
            unreachable!("to_json builds an object")
        };
        let mut out = String::new();
        for (key, value) in map {
            let shown = match value {
                Value::String(s) => s,
                Value::Array(peers) => peers
                    .iter()
                    .map(|p| {
                        let alive = p["alive"].as_bool().unwrap_or(false);
                        format!(
                            "{} ({})",
                            p["zid"].as_str().unwrap_or("?"),
                            if alive { "alive" } else { "gone" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            out.push_str(&format!("{key}: {shown}\n"));
        }
        out
    }
}
