//! The bridges: a local channel, broadcast or board on one side, a Zenoh
//! key on the other.
//!
//! # Exporting
//! A dedicated thread waits on the local object like any receiver (the
//! channel's spin-then-futex wait; a board's change futex), so an idle
//! bridge sleeps. A channel exporter takes nothing from its channel while
//! no importer's subscriber matches the key (Zenoh's matching status):
//! messages wait in shared memory, not in a socket, and a message taken
//! just before matching was lost is held until it returns. Puts use
//! [`CongestionControl::Block`], so a slow importer slows the exporter
//! instead of losing samples.
//!
//! # Importing
//! Zenoh's callback checks each frame's stream id and numbers (see
//! [`crate::sequence`]), drops duplicates, counts gaps, and sends into the
//! local object; a full channel blocks the callback, which stops reading
//! the socket and so pushes back on the exporter through TCP.
//!
//! # After a dropped link
//! A link down for longer than the Zenoh lease closes the session on both
//! sides, and what was in the sockets and queues at that moment is gone.
//! The channel exporter keeps its last [`REPLAY_BYTES`] of frames; when an
//! importer matches again it asks each importer's position queryable
//! (`shmkit-bridge/position/<zid>/<key>`) where it is in this stream, puts
//! the kept frames from there again (the importer drops any duplicate by
//! number), then sends an empty frame carrying the next number so that
//! anything older than the kept frames is counted as a gap. A restarted
//! exporter is a new stream: what the killed one held is not resent.
//! A put blocked on the dead link gives up after one lease at most
//! (`net::config` caps Zenoh's `wait_before_close` there): a longer wait
//! held the dead session open past its lease, the importer reconnected into
//! it, and the session that followed carried no sample at all.
//!
//! # Liveness
//! Each bridge declares a liveliness token
//! `shmkit-bridge/<role>/<zid>/<key>` and watches the other role's tokens
//! on its key: the stats name the remote bridges and whether they live.
//! A board importer asks the exporter's queryable for the current value
//! at start and whenever an exporter (re)appears, so a late joiner gets
//! the value at once.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use shmkit::board::{Board, BoardOptions};
use shmkit::broadcast::{Broadcast, BroadcastOptions, Received};
use shmkit::channel::{Channel, ChannelOptions};
use shmkit::ErrorKind;
use zenoh::bytes::ZBytes;
use zenoh::qos::CongestionControl;
use zenoh::sample::SampleKind;
use zenoh::{Session, Wait};

use crate::sequence::{Sequencer, Verdict};
use crate::stats::Stats;
use crate::wire;

/// How often a blocked exporter looks up from its wait to see whether it
/// was asked to stop (it is woken at once by new data).
pub const STOP_CHECK: Duration = Duration::from_millis(250);

/// What is bridged.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A channel: every message once, in order (lossless by default).
    Channel,
    /// A broadcast: every message in order, or a counted gap.
    Broadcast,
    /// A board: the latest value.
    Board,
}

impl Kind {
    /// Its name in stats.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Channel => "channel",
            Kind::Broadcast => "broadcast",
            Kind::Board => "board",
        }
    }
}

/// A flag the bridge's threads stop on, with a condition variable to wait
/// for it (no polling).
#[derive(Debug, Default)]
pub struct Stop {
    done: Mutex<Option<Result<(), String>>>,
    cv: Condvar,
}

impl Stop {
    /// Asks everyone to stop, with the outcome (the first one wins).
    pub fn finish(&self, outcome: Result<(), String>) {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        if done.is_none() {
            *done = Some(outcome);
        }
        self.cv.notify_all();
    }

    /// Whether someone asked to stop.
    pub fn is_done(&self) -> bool {
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Waits for the stop or `timeout`; returns the outcome once stopped.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Result<(), String>> {
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        let done = match timeout {
            Some(t) => {
                self.cv
                    .wait_timeout_while(done, t, |d| d.is_none())
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            None => self
                .cv
                .wait_while(done, |d| d.is_none())
                .unwrap_or_else(|p| p.into_inner()),
        };
        done.clone()
    }
}

/// Whether an importer matches the exporter's key, and a way to wait for it.
#[derive(Debug, Default)]
struct Gate {
    matched: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn set(&self, matched: bool) {
        *self.matched.lock().unwrap_or_else(|p| p.into_inner()) = matched;
        self.cv.notify_all();
    }

    /// Whether an importer matches now.
    fn matched(&self) -> bool {
        *self.matched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until matched (true) or stopped (false).
    fn wait_matched(&self, stop: &Stop) -> bool {
        let mut m = self.matched.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if stop.is_done() {
                return false;
            }
            if *m {
                return true;
            }
            m = self
                .cv
                .wait_timeout(m, STOP_CHECK)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Everything an export or import needs.
pub struct Route {
    /// The Zenoh session.
    pub session: Session,
    /// The key expression.
    pub key: String,
    /// The local object's name.
    pub object: String,
    /// What it is.
    pub kind: Kind,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Stop flag.
    pub stop: Arc<Stop>,
    /// Stop after this many messages bridged.
    pub count: Option<u64>,
}

fn zerr(e: zenoh::Error) -> anyhow::Error {
    anyhow!("{e}")
}

/// A stream id for this exporter run: distinct across restarts.
fn new_stream_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // Mix pid and clock so two exporters started in one nanosecond differ.
    let mixed = nanos ^ (u64::from(std::process::id()) << 40);
    mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

fn token_key(role: &str, zid: &str, key: &str) -> String {
    format!("shmkit-bridge/{role}/{zid}/{key}")
}

/// Declares this bridge's liveliness token and watches the other side's;
/// `on_appear` runs when a remote bridge of the other role appears.
fn liveliness(
    route: &Route,
    role: &'static str,
    other: &'static str,
    on_appear: impl Fn() + Send + Sync + 'static,
) -> Result<(
    zenoh::liveliness::LivelinessToken,
    zenoh::pubsub::Subscriber<()>,
)> {
    let zid = route.session.zid().to_string();
    let token = route
        .session
        .liveliness()
        .declare_token(token_key(role, &zid, &route.key))
        .wait()
        .map_err(zerr)
        .context("declaring the liveliness token")?;
    let stats = route.stats.clone();
    let watched = token_key(other, "*", &route.key);
    let subscriber = route
        .session
        .liveliness()
        .declare_subscriber(&watched)
        .history(true)
        .callback(move |sample| {
            // The key is shmkit-bridge/<role>/<zid>/<key>.
            let zid = sample
                .key_expr()
                .as_str()
                .split('/')
                .nth(2)
                .unwrap_or("?")
                .to_string();
            let alive = sample.kind() == SampleKind::Put;
            eprintln!(
                "shmkit-bridge: {other} {zid} {}",
                if alive { "appeared" } else { "is gone" }
            );
            stats.peer(zid, alive);
            if alive {
                on_appear();
            }
        })
        .wait()
        .map_err(zerr)
        .context("watching the remote bridges' liveliness")?;
    Ok((token, subscriber))
}

/// Options of an export.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    /// Drop samples when the network is congested instead of waiting.
    pub lossy: bool,
    /// Most messages in one frame.
    pub max_batch: usize,
}

/// Runs an export until `route.stop` (or an error); the caller waits on
/// the stop flag.
pub fn export(route: Route, options: ExportOptions) -> Result<std::thread::JoinHandle<()>> {
    let congestion = if options.lossy {
        CongestionControl::Drop
    } else {
        CongestionControl::Block
    };
    let publisher = route
        .session
        .declare_publisher(route.key.clone())
        .congestion_control(congestion)
        .wait()
        .map_err(zerr)
        .with_context(|| format!("declaring a publisher on {}", route.key))?;
    let gate = Arc::new(Gate::default());
    let listener = {
        let gate = gate.clone();
        let stats = route.stats.clone();
        publisher
            .matching_listener()
            .callback(move |status| {
                let matched = status.matching();
                if !matched && stats.matched.swap(false, Relaxed) {
                    stats.unmatched.fetch_add(1, Relaxed);
                }
                stats.matched.store(matched, Relaxed);
                gate.set(matched);
            })
            .wait()
            .map_err(zerr)?
    };
    let (token, watch) = liveliness(&route, "export", "import", || {})?;
    let stream = new_stream_id();
    let latest = Arc::new(Mutex::new(None::<Vec<u8>>));
    let queryable = if route.kind == Kind::Board {
        let latest = latest.clone();
        let key = route.key.clone();
        Some(
            route
                .session
                .declare_queryable(route.key.clone())
                .callback(move |query| {
                    let frame = latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    if let Some(frame) = frame {
                        if let Err(e) = query.reply(key.clone(), frame).wait() {
                            eprintln!("shmkit-bridge: answering a query: {e}");
                        }
                    }
                })
                .wait()
                .map_err(zerr)
                .context("declaring the board's queryable")?,
        )
    } else {
        None
    };
    let handle = std::thread::Builder::new()
        .name("shmkit-export".into())
        .spawn(move || {
            // Keep every declaration alive as long as the loop runs.
            let _keep = (listener, token, watch, queryable);
            let put = |frame: ZBytes, messages: u64, bytes: u64| -> Result<()> {
                publisher
                    .put(frame)
                    .wait()
                    .map_err(zerr)
                    .context("putting a sample")?;
                route.stats.frames.fetch_add(1, Relaxed);
                route.stats.messages.fetch_add(messages, Relaxed);
                route.stats.bytes.fetch_add(bytes, Relaxed);
                Ok(())
            };
            let outcome = match route.kind {
                Kind::Channel => export_channel(&route, &gate, stream, options.max_batch, put),
                Kind::Broadcast => export_broadcast(&route, &gate, stream, put),
                Kind::Board => export_board(&route, stream, &latest, put),
            };
            route.stop.finish(outcome.map_err(|e| format!("{e:#}")));
        })
        .context("starting the export thread")?;
    Ok(handle)
}

fn reached(route: &Route) -> bool {
    route
        .count
        .is_some_and(|n| route.stats.messages.load(Relaxed) >= n)
}

fn export_channel(
    route: &Route,
    gate: &Gate,
    stream: u64,
    max_batch: usize,
    put: impl Fn(ZBytes, u64, u64) -> Result<()>,
) -> Result<()> {
    let channel = Channel::open(&route.object)?;
    let mut receiver = channel.receiver()?;
    let max_batch = max_batch.clamp(1, (256 * 1024 / channel.max_message().max(1)).max(1));
    let mut seq = 0u64;
    let mut told_gone = false;
    let mut frame = Vec::new();
    let mut unmatched_seen = 0;
    let mut replay = Replay::default();
    // After matching was lost (a dropped link, an importer restart): ask
    // the importers where they are, put again the frames they miss that
    // are still kept, then tell the number that comes next, so whatever is
    // lost for good shows as a gap even when nothing else follows.
    let mut resume = |seq: u64, replay: &Replay, put: &dyn Fn(ZBytes, u64, u64) -> Result<()>| {
        let unmatched = route.stats.unmatched.load(Relaxed);
        if unmatched != unmatched_seen {
            let before = unmatched_seen;
            unmatched_seen = unmatched;
            // Matching can come back before the importer is reachable over
            // the new link (Zenoh's routes are still settling); what is put
            // then is lost without a trace, marker included. So hold until
            // some importer answers the position query, which proves the
            // way there is open; but not for ever: past HOLD_FOR_ANSWER the
            // stream goes on (a late importer then counts what it missed as
            // a gap at the next marker), so a bridge never wedges on a
            // route that Zenoh does not mend.
            let mut told_silent = false;
            let holding_since = Instant::now();
            let answered = loop {
                match ask_position(&route.session, &route.key, stream) {
                    Some(answer) => break answer,
                    None if route.stop.is_done() => return Ok(()),
                    None if holding_since.elapsed() > HOLD_FOR_ANSWER => {
                        eprintln!(
                            "shmkit-bridge: no importer of {} answered in {:?} after matching again; going on without replay",
                            route.key, HOLD_FOR_ANSWER
                        );
                        break None;
                    }
                    None if !gate.matched() => {
                        // Lost again meanwhile: the next call resumes
                        // (what is put until then stays in the replay).
                        unmatched_seen = before;
                        return Ok(());
                    }
                    None => {
                        if !told_silent {
                            eprintln!(
                                "shmkit-bridge: an importer of {} matched again but does not answer yet; holding",
                                route.key
                            );
                            told_silent = true;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            };
            if let Some(next) = answered {
                let mut again = 0;
                for &(first, count, ref frame) in replay.since(next) {
                    put(frame.clone(), 0, 0)?;
                    again += (first + count).min(seq) - first.max(next);
                }
                if again > 0 {
                    route.stats.replayed.fetch_add(again, Relaxed);
                    eprintln!("shmkit-bridge: put {again} messages again that the dropped link had swallowed");
                }
            }
            let mut marker = Vec::new();
            wire::begin(&mut marker, stream, seq);
            put(marker.into(), 0, 0)?;
        }
        Ok::<(), anyhow::Error>(())
    };
    while !reached(route) {
        if !gate.wait_matched(&route.stop) {
            return Ok(());
        }
        resume(seq, &replay, &put)?;
        wire::begin(&mut frame, stream, seq);
        let mut bytes = 0u64;
        let taken = receiver.recv_batch(max_batch, Some(Instant::now() + STOP_CHECK), |slot| {
            bytes += slot.len() as u64;
            wire::push_with(&mut frame, slot.len(), |tail| slot.read_at(0, tail))
        });
        let taken = match taken {
            Ok(n) => n as u64,
            Err(e) if e.kind() == ErrorKind::TimedOut => {
                if route.stop.is_done() {
                    return Ok(());
                }
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Disconnected => {
                if !told_gone {
                    eprintln!(
                        "shmkit-bridge: every sender on {} is gone; waiting for one",
                        route.object
                    );
                    told_gone = true;
                }
                if route.stop.is_done() {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        told_gone = false;
        // Taken from the channel: if the importer went away meanwhile, hold
        // the frame until one matches again rather than put it into the void.
        if !gate.wait_matched(&route.stop) {
            return Err(anyhow!(
                "stopped holding {taken} messages taken from {} that no importer received",
                route.object
            ));
        }
        resume(seq, &replay, &put)?;
        // ZBytes is shared, not copied: the replay keeps a reference.
        let sample = ZBytes::from(std::mem::take(&mut frame));
        replay.keep(seq, taken, sample.clone());
        put(sample, taken, bytes)?;
        seq += taken;
    }
    Ok(())
}

/// How long a channel exporter that matched again holds its stream while
/// no importer answers where it is (see `export_channel`).
const HOLD_FOR_ANSWER: Duration = Duration::from_secs(10);

/// How many bytes of recent frames a channel exporter keeps to put again
/// after a dropped link: more than the sockets and Zenoh's queues hold
/// (about 1.3 MB of 64-byte messages were in flight in the tests).
pub const REPLAY_BYTES: usize = 16 << 20;

/// The channel exporter's recent frames, oldest first.
#[derive(Default)]
struct Replay {
    frames: std::collections::VecDeque<(u64, u64, ZBytes)>,
    bytes: usize,
}

impl Replay {
    fn keep(&mut self, first: u64, count: u64, frame: ZBytes) {
        self.bytes += frame.len();
        self.frames.push_back((first, count, frame));
        while self.bytes > REPLAY_BYTES {
            match self.frames.pop_front() {
                Some((_, _, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
    }

    /// The kept frames holding a message numbered `next` or later.
    fn since(&self, next: u64) -> impl Iterator<Item = &(u64, u64, ZBytes)> {
        self.frames
            .iter()
            .filter(move |(first, count, _)| first + count > next)
    }
}

fn position_key(zid: &str, key: &str) -> String {
    format!("shmkit-bridge/position/{zid}/{key}")
}

/// What the importers that answer within two seconds say about `stream`:
/// None when none answered; Some(None) when those that answered do not
/// know the stream (new importers); else the lowest next-expected number.
fn ask_position(session: &Session, key: &str, stream: u64) -> Option<Option<u64>> {
    let replies = session
        .get(position_key("*", key))
        .timeout(Duration::from_secs(2))
        .wait()
        .ok()?;
    let mut answered = false;
    let mut lowest: Option<u64> = None;
    while let Ok(reply) = replies.recv() {
        let Ok(sample) = reply.result() else { continue };
        answered = true;
        let bytes = sample.payload().to_bytes();
        for pair in bytes.chunks_exact(16) {
            let word =
                |at: usize| u64::from_le_bytes(pair[at..at + 8].try_into().unwrap_or([0; 8]));
            if word(0) == stream {
                lowest = Some(lowest.map_or(word(8), |l| l.min(word(8))));
            }
        }
    }
    answered.then_some(lowest)
}

fn export_broadcast(
    route: &Route,
    gate: &Gate,
    stream: u64,
    put: impl Fn(ZBytes, u64, u64) -> Result<()>,
) -> Result<()> {
    let broadcast = Broadcast::open(&route.object)?;
    let mut subscriber = broadcast.subscribe()?;
    let mut buf = Vec::new();
    let mut frame = Vec::new();
    while !reached(route) {
        if !gate.wait_matched(&route.stop) {
            return Ok(());
        }
        match subscriber.recv_into(&mut buf, Some(STOP_CHECK)) {
            Ok(Received::Message { position, .. }) => {
                wire::begin(&mut frame, stream, position);
                wire::push(&mut frame, &buf);
                put(std::mem::take(&mut frame).into(), 1, buf.len() as u64)?;
            }
            Ok(Received::Lagged { missed }) => {
                route.stats.source_missed.fetch_add(missed, Relaxed);
            }
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Disconnected) => {
                if route.stop.is_done() {
                    return Ok(());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn export_board(
    route: &Route,
    stream: u64,
    latest: &Mutex<Option<Vec<u8>>>,
    put: impl Fn(ZBytes, u64, u64) -> Result<()>,
) -> Result<()> {
    let board = Board::open(&route.object)?;
    let mut version = 0u64;
    let mut value = Vec::new();
    let mut frame = Vec::new();
    let mut first = true;
    while !reached(route) {
        if !first {
            match board.wait_for_change(version, Some(STOP_CHECK)) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    if route.stop.is_done() {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        first = false;
        // Read again: the newest value, whatever woke us.
        version = board.read_into(&mut value)?;
        if version == 0 {
            continue;
        }
        wire::begin(&mut frame, stream, version);
        wire::push(&mut frame, &value);
        *latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(frame.clone());
        // Published whether or not anyone matches: a late joiner gets the
        // value from the queryable instead.
        put(std::mem::take(&mut frame).into(), 1, value.len() as u64)?;
    }
    Ok(())
}

/// How an importer creates its local object when it does not exist.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    /// Channel or broadcast capacity in messages.
    pub capacity: usize,
    /// Largest message (board: value) in bytes.
    pub max_message: usize,
    /// A single-producer single-consumer channel.
    pub spsc: bool,
}

/// The local end an importer writes to.
enum Local {
    Channel(shmkit::channel::Sender),
    Broadcast(shmkit::broadcast::Publisher),
    /// The writer and the board's largest value.
    Board(shmkit::board::BoardWriter, usize),
}

impl Local {
    fn open(kind: Kind, name: &str, options: &ImportOptions) -> Result<Local> {
        Ok(match kind {
            Kind::Channel => {
                let mut o = ChannelOptions::new();
                o.capacity(options.capacity)
                    .max_message(options.max_message)
                    .spsc(options.spsc);
                Local::Channel(Channel::open_or_create(name, &o)?.sender()?)
            }
            Kind::Broadcast => {
                let mut o = BroadcastOptions::new();
                o.capacity(options.capacity)
                    .max_message(options.max_message);
                Local::Broadcast(Broadcast::open_or_create(name, &o)?.publisher()?)
            }
            Kind::Board => {
                let mut o = BoardOptions::new();
                o.max_size(options.max_message);
                let board = Board::open_or_create(name, &o)?;
                Local::Board(board.writer()?, board.max_size())
            }
        })
    }

    /// Sends `msgs` in order (a board keeps the last).
    fn send_all(&mut self, msgs: &[&[u8]]) -> shmkit::Result<()> {
        match self {
            Local::Channel(s) => s.send_batch(msgs.iter().copied()),
            Local::Broadcast(p) => msgs.iter().try_for_each(|m| p.send(m).map(drop)),
            Local::Board(w, _) => msgs.last().map_or(Ok(()), |m| w.write(m).map(drop)),
        }
    }

    fn max_message(&self) -> usize {
        match self {
            Local::Channel(s) => s.max_message(),
            Local::Broadcast(p) => p.max_message(),
            Local::Board(_, max) => *max,
        }
    }
}

/// What the importer's callbacks share.
struct Delivery {
    local: Local,
    sequencer: Sequencer,
    /// Board: the (stream, version) last written, so an older reply or
    /// sample does not overwrite a newer value.
    board_latest: Option<(u64, u64)>,
}

/// Handles one frame from the subscriber or a query reply.
fn deliver(route: &RouteShared, delivery: &Mutex<Delivery>, bytes: &[u8]) {
    let stats = &route.stats;
    let frame = match wire::Frame::parse(bytes) {
        Ok(f) => f,
        Err(e) => {
            stats.malformed.fetch_add(1, Relaxed);
            eprintln!("shmkit-bridge: {e}");
            return;
        }
    };
    stats.frames.fetch_add(1, Relaxed);
    let mut d = delivery.lock().unwrap_or_else(|p| p.into_inner());
    if route.kind == Kind::Board {
        let key = (frame.stream, frame.first_seq);
        if d.board_latest
            .is_some_and(|(s, v)| s == key.0 && v >= key.1)
        {
            stats.duplicates.fetch_add(1, Relaxed);
            return;
        }
        d.board_latest = Some(key);
    }
    if frame.messages().next().is_none() && route.kind != Kind::Board {
        let missed = d.sequencer.mark(frame.stream, frame.first_seq);
        if missed > 0 {
            stats.gaps.fetch_add(missed, Relaxed);
            stats.gap_events.fetch_add(1, Relaxed);
            eprintln!(
                "shmkit-bridge: gap: {missed} messages of stream {:#x} were lost with the link (told on reconnection)",
                frame.stream
            );
        }
        return;
    }
    let mut seq = frame.first_seq;
    let mut accepted: Vec<&[u8]> = Vec::new();
    for msg in frame.messages() {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                stats.malformed.fetch_add(1, Relaxed);
                eprintln!("shmkit-bridge: {e}");
                return;
            }
        };
        if route.kind != Kind::Board {
            match d.sequencer.observe(frame.stream, seq) {
                Verdict::Duplicate => {
                    stats.duplicates.fetch_add(1, Relaxed);
                    seq += 1;
                    continue;
                }
                Verdict::Deliver { missed, new_stream } => {
                    if new_stream && d.sequencer.streams() > 1 {
                        stats.restarts.fetch_add(1, Relaxed);
                        eprintln!(
                            "shmkit-bridge: a new exporter stream {:#x} on {}",
                            frame.stream, route.key
                        );
                    }
                    if missed > 0 {
                        stats.gaps.fetch_add(missed, Relaxed);
                        stats.gap_events.fetch_add(1, Relaxed);
                        eprintln!(
                            "shmkit-bridge: gap: {missed} messages of stream {:#x} never arrived (before number {seq})",
                            frame.stream
                        );
                    }
                }
            }
        }
        seq += 1;
        if msg.len() > d.local.max_message() {
            stats.rejected.fetch_add(1, Relaxed);
            eprintln!(
                "shmkit-bridge: a message of {} bytes does not fit {} (largest {}): dropped",
                msg.len(),
                route.object,
                d.local.max_message()
            );
            continue;
        }
        accepted.push(msg);
    }
    let bytes: u64 = accepted.iter().map(|m| m.len() as u64).sum();
    let n = accepted.len() as u64;
    // One batch per frame: receivers are woken once, not per message.
    match d.local.send_all(&accepted) {
        Ok(()) => {
            stats.bytes.fetch_add(bytes, Relaxed);
            let total = stats.messages.fetch_add(n, Relaxed) + n;
            if route.count.is_some_and(|c| total >= c) {
                route.stop.finish(Ok(()));
            }
        }
        Err(e) => {
            stats.rejected.fetch_add(n, Relaxed);
            eprintln!("shmkit-bridge: {e}");
        }
    }
}

/// The parts of a [`Route`] the importer's callbacks keep.
struct RouteShared {
    key: String,
    object: String,
    kind: Kind,
    stats: Arc<Stats>,
    stop: Arc<Stop>,
    count: Option<u64>,
}

/// The declarations an import keeps alive; drop it to stop importing.
pub struct Import {
    _subscriber: zenoh::pubsub::Subscriber<()>,
    _position: zenoh::query::Queryable<()>,
    _token: zenoh::liveliness::LivelinessToken,
    _watch: zenoh::pubsub::Subscriber<()>,
}

/// Starts an import: Zenoh's callbacks deliver until the returned
/// [`Import`] is dropped.
pub fn import(route: Route, options: ImportOptions) -> Result<Import> {
    let local = Local::open(route.kind, &route.object, &options)?;
    let delivery = Arc::new(Mutex::new(Delivery {
        local,
        sequencer: Sequencer::new(route.kind == Kind::Channel),
        board_latest: None,
    }));
    let shared = Arc::new(RouteShared {
        key: route.key.clone(),
        object: route.object.clone(),
        kind: route.kind,
        stats: route.stats.clone(),
        stop: route.stop.clone(),
        count: route.count,
    });
    let subscriber = {
        let (shared, delivery) = (shared.clone(), delivery.clone());
        route
            .session
            .declare_subscriber(route.key.clone())
            .callback(move |sample| deliver(&shared, &delivery, &sample.payload().to_bytes()))
            .wait()
            .map_err(zerr)
            .with_context(|| format!("subscribing to {}", route.key))?
    };
    // Where this importer is in each stream, for an exporter resuming
    // after a dropped link: (stream, next number) pairs, u64 LE.
    let position = {
        let delivery = delivery.clone();
        let zid = route.session.zid().to_string();
        route
            .session
            .declare_queryable(position_key(&zid, &route.key))
            .callback(move |query| {
                let positions = delivery
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .sequencer
                    .positions();
                let mut payload = Vec::with_capacity(positions.len() * 16);
                for (stream, next) in positions {
                    payload.extend_from_slice(&stream.to_le_bytes());
                    payload.extend_from_slice(&next.to_le_bytes());
                }
                if let Err(e) = query.reply(query.key_expr().clone(), payload).wait() {
                    eprintln!("shmkit-bridge: answering a position query: {e}");
                }
            })
            .wait()
            .map_err(zerr)
            .context("declaring the position queryable")?
    };
    // A board's importer asks for the current value whenever an exporter
    // appears (at start, through the token's history, and after a restart).
    let ask = {
        let session = route.session.clone();
        let (shared, delivery) = (shared.clone(), delivery.clone());
        move || {
            if shared.kind != Kind::Board {
                return;
            }
            let (shared, delivery) = (shared.clone(), delivery.clone());
            let asked = session
                .get(shared.key.clone())
                .callback(move |reply| {
                    if let Ok(sample) = reply.result() {
                        deliver(&shared, &delivery, &sample.payload().to_bytes());
                    }
                })
                .wait();
            if let Err(e) = asked {
                eprintln!("shmkit-bridge: asking for the board's value: {e}");
            }
        }
    };
    let (token, watch) = liveliness(&route, "import", "export", ask)?;
    Ok(Import {
        _subscriber: subscriber,
        _position: position,
        _token: token,
        _watch: watch,
    })
}
