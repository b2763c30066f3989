//! Blackboard and broadcast verbs: `board create|set|get`, `pub`, `sub`,
//! and what `stat` adds for these objects.

use std::io::{BufRead, Read, Write};

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::{json, Map, Value};
use shmkit::board::{Board, BoardOptions};
use shmkit::broadcast::{Broadcast, BroadcastOptions, Received, SlowSubscriber, Subscriber};
use shmkit::layout::{self, Kind};
use shmkit::posix::PosixObject;
use shmkit::{Error, ErrorKind};

use crate::units;

#[derive(Subcommand, Debug)]
pub enum BoardCommand {
    /// Create a board holding values of up to SIZE bytes; fails if the name
    /// exists.
    Create {
        /// Board name.
        name: String,
        /// Largest value in bytes (suffixes as for sizes).
        #[arg(long, value_parser = units::parse_size)]
        size: u64,
        /// Permission bits in octal.
        #[arg(long, default_value = "0600", value_parser = units::parse_mode)]
        mode: u32,
    },
    /// Replace the value with TEXT (or all of standard input), as the
    /// board's writer for the moment; fails while another live process
    /// writes.
    Set {
        /// Board name.
        name: String,
        /// The value; standard input when absent.
        text: Option<String>,
    },
    /// Print the value (with a newline added unless it ends with one).
    Get {
        /// Board name.
        name: String,
        /// Then print each new version as it comes, until killed.
        #[arg(long)]
        watch: bool,
        /// With --watch: stop after printing N values (the first included).
        #[arg(long, requires = "watch")]
        count: Option<u64>,
        /// Print `VERSION<TAB>` before each value.
        #[arg(long)]
        with_version: bool,
    },
}

/// Parameters of a broadcast, used when `pub` or `sub` creates one.
#[derive(clap::Args, Debug)]
pub struct BcastArgs {
    /// Messages the ring keeps for slow subscribers (rounded up to a power of two).
    #[arg(long, default_value = "1024")]
    capacity: usize,
    /// Largest message in bytes (suffixes as for sizes).
    #[arg(long, default_value = "1024", value_parser = units::parse_size)]
    max_msg: u64,
    /// Permission bits in octal.
    #[arg(long, default_value = "0600", value_parser = units::parse_mode)]
    mode: u32,
    /// Lossless: the writer never overwrites a message a live subscriber
    /// has not read; it waits for the slowest (a dead one is dropped at
    /// once). Chosen when the broadcast is created; an existing lossy one
    /// is refused.
    #[arg(long)]
    lossless: bool,
    /// With --lossless: cut off a live subscriber that holds the writer
    /// back (a whole ring behind) for longer than DURATION (`500ms`, `2s`),
    /// instead of waiting for it as long as it lives.
    #[arg(long, requires = "lossless", value_name = "DURATION", value_parser = humantime::parse_duration)]
    evict_after: Option<std::time::Duration>,
}

impl BcastArgs {
    fn policy(&self) -> Option<SlowSubscriber> {
        self.lossless.then(|| {
            self.evict_after
                .map_or(SlowSubscriber::Block, SlowSubscriber::EvictAfter)
        })
    }

    fn options(&self) -> BroadcastOptions {
        let mut o = BroadcastOptions::new();
        o.capacity(self.capacity)
            .max_message(self.max_msg.min(usize::MAX as u64) as usize)
            .mode(self.mode);
        if let Some(policy) = self.policy() {
            o.lossless(policy);
        }
        o
    }

    /// Opens `name`, creating it with these parameters if absent; refuses
    /// an existing one whose mode is not the one asked for.
    fn open(&self, name: &str) -> Result<Broadcast> {
        let bcast = Broadcast::open_or_create(name, &self.options())?;
        let asked = self.policy();
        if asked.is_some() && bcast.lossless() != asked {
            bail!(
                "cannot use {} as a {} broadcast: it was created {}",
                bcast.name(),
                mode_text(asked),
                mode_text(bcast.lossless())
            );
        }
        Ok(bcast)
    }
}

/// A broadcast's mode in words.
fn mode_text(policy: Option<SlowSubscriber>) -> String {
    match policy {
        None => "lossy".into(),
        Some(SlowSubscriber::Block) => "lossless (waiting for slow subscribers)".into(),
        Some(SlowSubscriber::EvictAfter(d)) => format!(
            "lossless (evicting slow subscribers after {})",
            humantime::format_duration(d)
        ),
    }
}

pub fn board(out: &mut dyn Write, cmd: BoardCommand) -> Result<u8> {
    match cmd {
        BoardCommand::Create { name, size, mode } => {
            crate::target::check_creatable(&name)?;
            let mut o = BoardOptions::new();
            o.max_size(size.min(usize::MAX as u64) as usize).mode(mode);
            Board::create(&name, &o)?;
        }
        BoardCommand::Set { name, text } => {
            let board = Board::open(&name)?;
            crate::foreign::check(&name);
            // The writer role first: while standard input is read, this
            // process is the board's writer, and a second `set` is refused.
            let mut writer = board.writer()?;
            let value = match text {
                Some(t) => t.into_bytes(),
                None => {
                    // At most one byte more than fits, so an endless stdin
                    // cannot exhaust memory and an oversized one is detected.
                    let mut data = Vec::new();
                    std::io::stdin()
                        .lock()
                        .take(board.max_size() as u64 + 1)
                        .read_to_end(&mut data)?;
                    data
                }
            };
            writer.write(&value)?;
        }
        BoardCommand::Get {
            name,
            watch,
            count,
            with_version,
        } => {
            let board = Board::open(&name)?;
            crate::foreign::check(&name);
            let (mut value, mut version) = board.read()?;
            let mut printed = 0u64;
            loop {
                if with_version {
                    write!(out, "{version}\t")?;
                }
                out.write_all(&value)?;
                if value.last() != Some(&b'\n') {
                    out.write_all(b"\n")?;
                }
                out.flush()?;
                printed += 1;
                if !watch || count.is_some_and(|n| printed >= n) {
                    break;
                }
                (value, version) = board.wait_for_change(version, None)?;
            }
        }
    }
    Ok(0)
}

/// `pub`: each line of standard input as one message, or `count` numbered
/// messages `TAG I` (TAG defaults to the pid).
pub fn publish(
    name: &str,
    count: Option<u64>,
    tag: Option<String>,
    args: &BcastArgs,
) -> Result<u8> {
    let bcast = args.open(name)?;
    crate::foreign::check(name);
    let mut publisher = bcast.publisher()?;
    match count {
        Some(n) => {
            let tag = tag.unwrap_or_else(|| std::process::id().to_string());
            let mut msg = String::new();
            for i in 0..n {
                msg.clear();
                use std::fmt::Write as _;
                let _ = write!(msg, "{tag} {i}");
                publisher.send(msg.as_bytes())?;
            }
        }
        None => {
            let mut line = Vec::new();
            let mut input = std::io::stdin().lock();
            loop {
                line.clear();
                if input.read_until(b'\n', &mut line)? == 0 {
                    break;
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                publisher.send(&line)?;
            }
        }
    }
    Ok(0)
}

/// `sub`: prints each message as a line and each lag report on standard
/// error, until `count` messages are accounted for (received or missed),
/// or, without a count, until the writer is gone and everything is read.
pub fn subscribe(
    out: &mut dyn Write,
    name: &str,
    count: Option<u64>,
    from_oldest: bool,
    unbuffered: bool,
    args: &BcastArgs,
) -> Result<u8> {
    let bcast = args.open(name)?;
    crate::foreign::check(name);
    let mut sub = if from_oldest {
        bcast.subscribe_from_oldest()?
    } else {
        bcast.subscribe()?
    };
    let mut buf = Vec::new();
    let accounted = |s: &Subscriber| s.received() + s.missed();
    while count.is_none_or(|n| accounted(&sub) < n) {
        // Take what is there without blocking; flush before waiting, so a
        // person watching sees every line as soon as it arrives.
        let got = match sub.try_recv() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                out.flush()?;
                sub.recv_into(&mut buf, None).map(|r| match r {
                    Received::Message { position, .. } => Received::Message {
                        position,
                        value: std::mem::take(&mut buf),
                    },
                    Received::Lagged { missed } => Received::Lagged { missed },
                })
            }
            other => other,
        };
        match got {
            Ok(Received::Message { value: mut m, .. }) => {
                m.push(b'\n');
                out.write_all(&m)?;
                if unbuffered {
                    out.flush()?;
                }
            }
            Ok(Received::Lagged { missed }) => {
                out.flush()?;
                eprintln!("lagged: missed {missed} messages");
            }
            Err(e) if e.kind() == ErrorKind::Disconnected && !sub.evicted() => {
                if let Some(n) = count {
                    bail!(
                        "cannot receive from {}: the writer left after {} of {n} messages",
                        sub.name(),
                        accounted(&sub)
                    );
                }
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(0)
}

/// What `stat` adds for a board or a broadcast: lines for people and JSON
/// fields, or None for any other object.
pub struct Extra {
    pub lines: Vec<(&'static str, String)>,
    pub json: Map<String, Value>,
}

fn who(writer: Option<shmkit::board::WriterInfo>) -> String {
    match writer {
        Some(w) => format!("{} ({})", w.pid, if w.alive { "alive" } else { "dead" }),
        None => "-".to_string(),
    }
}

/// Looks inside `name` for a shmkit board or broadcast header.
pub fn stat_extra(name: &str) -> Option<Extra> {
    // pread, not a mapping: a sparse object on a full /dev/shm must not
    // raise SIGBUS in `stat`.
    let kind = PosixObject::open_read_only(name)
        .ok()
        .and_then(|o| layout::peek_kind_of(&o))?;
    let mut json = Map::new();
    let mut lines = Vec::new();
    json.insert("object".into(), kind.as_str().into());
    lines.push(("object", kind.as_str().to_string()));
    let shown = match kind {
        Kind::Board => Board::open(name).map(|b| {
            let s = b.stats();
            json.insert("version".into(), s.version.into());
            json.insert("writer_pid".into(), json!(s.writer.map(|w| w.pid)));
            json.insert(
                "writer_alive".into(),
                json!(s.writer.is_some_and(|w| w.alive)),
            );
            json.insert("write_in_progress".into(), s.write_in_progress.into());
            json.insert("max_size".into(), s.max_size.into());
            json.insert("type_size".into(), s.type_size.into());
            lines.push(("version", s.version.to_string()));
            lines.push(("writer", who(s.writer)));
            if s.write_in_progress {
                lines.push(("writing", "a write has begun and not ended".into()));
            }
            lines.push(("max size", format!("{} bytes", s.max_size)));
        }),
        Kind::Broadcast => Broadcast::open(name).map(|b| {
            let s = b.stats();
            let subs: Vec<Value> = s
                .subscribers
                .iter()
                .map(|e| {
                    json!({
                        "pid": e.pid,
                        "alive": e.alive,
                        "cursor": e.cursor,
                        "lag": e.lag,
                        "missed": e.missed,
                        "received": e.received,
                        "gating": e.gating,
                        "holds_writer": e.holds_writer,
                        "evicted": e.evicted,
                    })
                })
                .collect();
            json.insert("version".into(), s.published.into());
            json.insert("writer_pid".into(), json!(s.writer.map(|w| w.pid)));
            json.insert(
                "writer_alive".into(),
                json!(s.writer.is_some_and(|w| w.alive)),
            );
            json.insert("capacity".into(), s.capacity.into());
            json.insert("max_msg".into(), s.max_message.into());
            json.insert("subscribers".into(), subs.into());
            json.insert("lossless".into(), s.lossless.is_some().into());
            json.insert(
                "slow_subscriber".into(),
                match s.lossless {
                    None => Value::Null,
                    Some(SlowSubscriber::Block) => "block".into(),
                    Some(SlowSubscriber::EvictAfter(_)) => "evict".into(),
                },
            );
            json.insert(
                "evict_after_ms".into(),
                match s.lossless {
                    Some(SlowSubscriber::EvictAfter(d)) => json!(d.as_secs_f64() * 1e3),
                    _ => Value::Null,
                },
            );
            json.insert("writer_waits".into(), s.writer_waits.into());
            json.insert("evictions".into(), s.evictions.into());
            json.insert("dropped_dead".into(), s.dropped_dead.into());
            lines.push(("published", format!("{} messages", s.published)));
            lines.push(("capacity", format!("{} messages", s.capacity)));
            lines.push(("max msg", format!("{} bytes", s.max_message)));
            lines.push(("mode", mode_text(s.lossless)));
            if s.lossless.is_some() {
                lines.push((
                    "gate",
                    format!(
                        "writer waited {} times; {} evicted, {} dead dropped",
                        s.writer_waits, s.evictions, s.dropped_dead
                    ),
                ));
            }
            lines.push(("writer", who(s.writer)));
            lines.push(("subscribers", s.subscribers.len().to_string()));
            for e in &s.subscribers {
                lines.push((
                    "subscriber",
                    format!(
                        "{} ({}, cursor {}, lag {}, missed {}{})",
                        e.pid,
                        if e.alive { "alive" } else { "dead" },
                        e.cursor,
                        e.lag,
                        e.missed,
                        if e.holds_writer {
                            ", holds the writer back"
                        } else if e.gating {
                            ", gates the writer"
                        } else if e.evicted {
                            ", evicted"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }),
        // Channels have `shmkit chan stat`.
        Kind::Channel => Ok(()),
    };
    if let Err(e) = shown {
        let e: Error = e;
        json.insert("object_error".into(), e.to_string().into());
        lines.push(("note", e.to_string()));
    }
    Some(Extra { lines, json })
}
