//! Blackboard and broadcast verbs: `board create|set|get|ls` (plain boards
//! and keyed ones), `pub`, `sub`, and what `stat` adds for these objects.

use std::io::{BufRead, Read, Write};

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::{json, Map, Value};
use shmkit::board::{Board, BoardOptions, KeyInfo, KeyedBoard, KeyedBoardOptions};
use shmkit::broadcast::{Broadcast, BroadcastOptions, Received, SlowSubscriber, Subscriber};
use shmkit::layout::{self, Kind};
use shmkit::posix::PosixObject;
use shmkit::{Error, ErrorKind};

use crate::units;

#[derive(Subcommand, Debug)]
pub enum BoardCommand {
    /// Create a board holding values of up to SIZE bytes, or with --key a
    /// keyed board (a value per key, each with its own maximum size, its
    /// own version and its own writer); fails if the name exists.
    Create {
        /// Board name.
        name: String,
        /// Largest value in bytes (suffixes as for sizes).
        #[arg(long, value_parser = units::parse_size, required_unless_present = "keys", conflicts_with = "keys")]
        size: Option<u64>,
        /// A key of a keyed board and its largest value (`pose=64`,
        /// `config=4K`); repeatable, in the order given.
        #[arg(long = "key", value_name = "KEY=SIZE", value_parser = parse_key)]
        keys: Vec<(String, u64)>,
        /// Permission bits in octal.
        #[arg(long, default_value = "0600", value_parser = units::parse_mode)]
        mode: u32,
    },
    /// Replace the value with TEXT (or all of standard input), as the
    /// board's writer for the moment; fails while another live process
    /// writes.
    ///
    /// On a keyed board: `board set NAME KEY [TEXT]`, as the key's writer
    /// (other keys may have other writers).
    Set {
        /// Board name.
        name: String,
        /// The value (standard input when absent); on a keyed board the key,
        /// then the value.
        #[arg(num_args = 0..=2, value_name = "[KEY] TEXT")]
        args: Vec<String>,
        /// Print the version written as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the value (with a newline added unless it ends with one). On a
    /// keyed board, KEY's value; with several keys or none, a consistent
    /// snapshot of those (or all), one `KEY<TAB>VALUE` line each.
    Get {
        /// Board name.
        name: String,
        /// Keys of a keyed board.
        #[arg(value_name = "KEY")]
        keys: Vec<String>,
        /// Then print each new version as it comes, until killed.
        #[arg(long)]
        watch: bool,
        /// With --watch: stop after printing N values (the first included).
        #[arg(long, requires = "watch")]
        count: Option<u64>,
        /// With --watch: give up when no new version comes for DURATION
        /// (`500ms`, `5s`); exit status 124 then, with a message on
        /// standard error.
        #[arg(long, requires = "watch", value_name = "DURATION", value_parser = crate::gc::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// Print `VERSION<TAB>` before each value.
        #[arg(long)]
        with_version: bool,
        /// Print JSON: one object per value read (a snapshot is one object).
        #[arg(long)]
        json: bool,
    },
    /// List a board's keys with their versions, sizes and writers (a plain
    /// board: its one value, key `-`).
    Ls {
        /// Board name.
        name: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// `KEY=SIZE` of `board create --key`.
fn parse_key(text: &str) -> Result<(String, u64)> {
    let Some((key, size)) = text.rsplit_once('=') else {
        bail!("{text:?} is not KEY=SIZE");
    };
    Ok((key.to_string(), units::parse_size(size)?))
}

/// Whether `name` is a keyed board (false for anything else: the plain
/// board code then reports what it is).
fn is_keyed(name: &str) -> bool {
    PosixObject::open_read_only(name)
        .ok()
        .and_then(|o| layout::peek_kind_of(&o))
        == Some(Kind::KeyedBoard)
}

/// Standard input, at most one byte more than `max` (so an endless input
/// cannot exhaust memory and an oversized one is detected).
fn read_stdin(max: usize) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    std::io::stdin()
        .lock()
        .take(max as u64 + 1)
        .read_to_end(&mut data)?;
    Ok(data)
}

/// A value printed as a line: the bytes, and a newline unless it ends
/// with one.
fn print_value(out: &mut dyn Write, value: &[u8]) -> Result<()> {
    out.write_all(value)?;
    if value.last() != Some(&b'\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// A value in JSON: `key` (null on a plain board), `version`, `size` and
/// `value` (as UTF-8, invalid bytes replaced).
fn value_json(key: Option<&str>, value: &[u8], version: u64) -> Value {
    json!({
        "key": key,
        "version": version,
        "size": value.len(),
        "value": String::from_utf8_lossy(value),
    })
}

/// How `board get` prints one key's (or a plain board's) values.
struct Show<'a> {
    name: &'a str,
    key: Option<&'a str>,
    watch: bool,
    count: Option<u64>,
    timeout: Option<std::time::Duration>,
    with_version: bool,
    json: bool,
}

impl Show<'_> {
    /// Prints `first`, then with `watch` each value `next(version, wait)`
    /// waits for (`wait` what is left of `timeout`), until `count` are
    /// printed. Returns the exit status (124 when `timeout` ran out).
    fn versions(
        &self,
        out: &mut dyn Write,
        first: (Vec<u8>, u64),
        mut next: impl FnMut(u64, Option<std::time::Duration>) -> shmkit::Result<(Vec<u8>, u64)>,
    ) -> Result<u8> {
        let (mut value, mut version) = first;
        let mut printed = 0u64;
        let mut idle = crate::waiting::Idle::start(crate::waiting::TimeoutArg {
            timeout: self.timeout,
        });
        loop {
            if self.json {
                let mut v = value_json(self.key, &value, version);
                v["name"] = self.name.into();
                writeln!(out, "{v}")?;
            } else {
                if self.with_version {
                    write!(out, "{version}\t")?;
                }
                print_value(out, &value)?;
            }
            out.flush()?;
            printed += 1;
            if !self.watch || self.count.is_some_and(|n| printed >= n) {
                return Ok(0);
            }
            idle.reset();
            (value, version) = match next(version, idle.remaining()) {
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    let what = match self.key {
                        Some(key) => format!("no new version of {key} on {}", self.name),
                        None => format!("no new version on {}", self.name),
                    };
                    return Ok(idle.expired(&what, None));
                }
                other => other?,
            };
        }
    }
}

/// One key in `board ls --json` and `stat --json`.
fn key_json(k: &KeyInfo) -> Value {
    json!({
        "key": k.name,
        "version": k.version,
        "size": k.size,
        "max_size": k.max_size,
        "writer_pid": k.writer.map(|w| w.pid),
        "writer_alive": k.writer.is_some_and(|w| w.alive),
        "write_in_progress": k.write_in_progress,
    })
}

/// `board set|get|ls` on a keyed board.
fn keyed(out: &mut dyn Write, cmd: BoardCommand) -> Result<u8> {
    match cmd {
        BoardCommand::Create { .. } => unreachable!("create makes its own kind"),
        BoardCommand::Set { name, args, json } => {
            let board = KeyedBoard::open(&name)?;
            crate::foreign::check(&name);
            let Some(key) = args.first() else {
                bail!(
                    "{} is a keyed board: name the key (`board set NAME KEY [TEXT]`)",
                    board.name()
                );
            };
            let mut writer = board.writer(key)?;
            let value = match args.get(1) {
                Some(t) => t.clone().into_bytes(),
                None => read_stdin(board.max_size(key)?)?,
            };
            let version = writer.write(&value)?;
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({"name": board.name().as_str(), "key": key, "version": version})
                )?;
            }
        }
        BoardCommand::Get {
            name,
            keys,
            watch,
            count,
            timeout,
            with_version,
            json,
        } => {
            let board = KeyedBoard::open(&name)?;
            crate::foreign::check(&name);
            if keys.len() == 1 {
                let key = &keys[0];
                let show = Show {
                    name: board.name().as_str(),
                    key: Some(key),
                    watch,
                    count,
                    timeout,
                    with_version,
                    json,
                };
                return show.versions(out, board.read(key)?, |since, wait| {
                    board.wait_for_change(key, since, wait)
                });
            } else {
                if watch {
                    bail!("--watch watches one key: `board get {name} KEY --watch`");
                }
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                let snap = board.snapshot(&keys)?;
                if json {
                    let values: Vec<Value> = snap
                        .iter()
                        .map(|(k, v, version)| value_json(Some(k), v, *version))
                        .collect();
                    writeln!(
                        out,
                        "{}",
                        json!({"name": board.name().as_str(), "keys": values})
                    )?;
                } else {
                    for (key, value, version) in &snap {
                        write!(out, "{}\t", crate::show::escape_controls(key))?;
                        if with_version {
                            write!(out, "{version}\t")?;
                        }
                        print_value(out, value)?;
                    }
                }
            }
        }
        BoardCommand::Ls { name, json } => {
            let board = KeyedBoard::open(&name)?;
            crate::foreign::check(&name);
            let stats = board.stats();
            if json {
                let keys: Vec<Value> = stats.iter().map(key_json).collect();
                writeln!(
                    out,
                    "{}",
                    json!({"name": board.name().as_str(), "object": "keyed-board", "keys": keys})
                )?;
            } else {
                let rows = stats.iter().map(|k| {
                    [
                        crate::show::escape_controls(&k.name),
                        k.version.to_string(),
                        k.size.to_string(),
                        k.max_size.to_string(),
                        who(k.writer) + if k.write_in_progress { ", writing" } else { "" },
                    ]
                });
                ls_table(out, rows)?;
            }
        }
    }
    Ok(0)
}

/// The `board ls` table.
fn ls_table(out: &mut dyn Write, rows: impl Iterator<Item = [String; 5]>) -> Result<()> {
    let mut lines = vec![["KEY", "VERSION", "SIZE", "MAX", "WRITER"].map(String::from)];
    lines.extend(rows);
    let widths: Vec<usize> = (0..5)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for l in &lines {
        let mut line = String::new();
        for (c, cell) in l.iter().enumerate() {
            if c + 1 == l.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
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

    /// Opens `name`, creating it with these parameters if absent and
    /// `missing` allows it; refuses an existing one whose mode is not the
    /// one asked for.
    fn open(&self, name: &str, missing: Missing) -> Result<Broadcast> {
        let bcast = match Broadcast::open(name) {
            Err(e) if e.kind() == ErrorKind::NotFound => match missing {
                Missing::Refuse => bail!(
                    "{e} (no such broadcast: check the name, start `shmkit pub` first, or pass --create)"
                ),
                Missing::Create => Broadcast::open_or_create(name, &self.options()).map_err(crate::chan::space_hint)?,
                Missing::Announce => {
                    let bcast = Broadcast::open_or_create(name, &self.options()).map_err(crate::chan::space_hint)?;
                    // A typo must not pass silently for the name meant.
                    eprintln!(
                        "shmkit: created broadcast {} ({} messages of up to {} bytes, {})",
                        crate::show::escape_controls(bcast.name().as_str()),
                        bcast.capacity(),
                        bcast.max_message(),
                        mode_text(bcast.lossless())
                    );
                    bcast
                }
            },
            other => other?,
        };
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

/// What `pub` and `sub` do when the broadcast does not exist.
#[derive(Debug, Clone, Copy)]
pub enum Missing {
    /// Create it and say so on standard error (`pub`).
    Announce,
    /// Create it (`sub --create`).
    Create,
    /// An error naming the object (`sub`): a typo makes nothing.
    Refuse,
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
    let named = match &cmd {
        BoardCommand::Create { .. } => None,
        BoardCommand::Set { name, .. }
        | BoardCommand::Get { name, .. }
        | BoardCommand::Ls { name, .. } => Some(name.as_str()),
    };
    if named.is_some_and(is_keyed) {
        return keyed(out, cmd);
    }
    match cmd {
        BoardCommand::Create {
            name,
            size,
            keys,
            mode,
        } => {
            crate::target::check_creatable(&name)?;
            if keys.is_empty() {
                let size = size.expect("clap requires --size without --key");
                let mut o = BoardOptions::new();
                o.max_size(size.min(usize::MAX as u64) as usize).mode(mode);
                Board::create(&name, &o)?;
            } else {
                let mut o = KeyedBoardOptions::new();
                for (key, size) in &keys {
                    o.key(key, (*size).min(usize::MAX as u64) as usize);
                }
                o.mode(mode);
                KeyedBoard::create(&name, &o)?;
            }
        }
        BoardCommand::Set { name, args, json } => {
            let board = Board::open(&name)?;
            crate::foreign::check(&name);
            if args.len() > 1 {
                bail!(
                    "{} is a board of one value, without keys: `board set NAME [TEXT]`",
                    board.name()
                );
            }
            // The writer role first: while standard input is read, this
            // process is the board's writer, and a second `set` is refused.
            let mut writer = board.writer()?;
            let value = match args.into_iter().next() {
                Some(t) => t.into_bytes(),
                None => read_stdin(board.max_size())?,
            };
            let version = writer.write(&value)?;
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({"name": board.name().as_str(), "key": null, "version": version})
                )?;
            }
        }
        BoardCommand::Ls { name, json } => {
            let board = Board::open(&name)?;
            let s = board.stats();
            let value_size = board.read()?.0.len() as u64;
            if json {
                let mut row = key_json(&KeyInfo {
                    name: String::new(),
                    version: s.version,
                    size: value_size,
                    max_size: s.max_size,
                    writer: s.writer,
                    write_in_progress: s.write_in_progress,
                    writer_claims: s.writer_claims,
                });
                row["key"] = Value::Null;
                writeln!(
                    out,
                    "{}",
                    json!({"name": board.name().as_str(), "object": "board", "keys": [row]})
                )?;
            } else {
                let row = [
                    "-".to_string(),
                    s.version.to_string(),
                    value_size.to_string(),
                    s.max_size.to_string(),
                    who(s.writer) + if s.write_in_progress { ", writing" } else { "" },
                ];
                ls_table(out, std::iter::once(row))?;
            }
        }
        BoardCommand::Get {
            name,
            keys,
            watch,
            count,
            timeout,
            with_version,
            json,
        } => {
            let board = Board::open(&name)?;
            crate::foreign::check(&name);
            if !keys.is_empty() {
                bail!(
                    "{} is a board of one value, without keys: `board get NAME`",
                    board.name()
                );
            }
            let show = Show {
                name: board.name().as_str(),
                key: None,
                watch,
                count,
                timeout,
                with_version,
                json,
            };
            return show.versions(out, board.read()?, |since, wait| {
                board.wait_for_change(since, wait)
            });
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
    let bcast = args.open(name, Missing::Announce)?;
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

/// What `sub` is asked to do besides printing.
pub struct SubscribeArgs {
    pub count: Option<u64>,
    pub from_oldest: bool,
    pub unbuffered: bool,
    pub receive: crate::waiting::ReceiveArgs,
}

/// `sub`: prints each message as a line and each lag report on standard
/// error, until `count` messages are accounted for (received or missed),
/// or, without a count, until the writer is gone and everything is read
/// (with `follow`, a writer that leaves is waited for again). It waits for
/// the first writer; `timeout` bounds every wait.
pub fn subscribe(
    out: &mut dyn Write,
    name: &str,
    args: &SubscribeArgs,
    bcast_args: &BcastArgs,
) -> Result<u8> {
    let missing = if args.receive.create {
        Missing::Create
    } else {
        Missing::Refuse
    };
    let bcast = bcast_args.open(name, missing)?;
    crate::foreign::check(name);
    let mut sub = if args.from_oldest {
        bcast.subscribe_from_oldest()?
    } else {
        bcast.subscribe()?
    };
    let count = args.count;
    let mut buf = Vec::new();
    let mut idle = crate::waiting::Idle::start(args.receive.timeout);
    let accounted = |s: &Subscriber| s.received() + s.missed();
    while count.is_none_or(|n| accounted(&sub) < n) {
        // Take what is there without blocking; flush before waiting, so a
        // person watching sees every line as soon as it arrives.
        let got = match sub.try_recv_into(&mut buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                out.flush()?;
                // A wait whose time is up ends at once with TimedOut.
                sub.recv_into(&mut buf, idle.remaining())
            }
            other => other,
        };
        match got {
            Ok(Received::Message { .. }) => {
                idle.reset();
                buf.push(b'\n');
                out.write_all(&buf)?;
                if args.unbuffered {
                    out.flush()?;
                }
            }
            Ok(Received::Lagged { missed }) => {
                idle.reset();
                out.flush()?;
                eprintln!("lagged: missed {missed} messages");
            }
            // The writer left: the next receive sleeps a liveness slice on
            // the broadcast's bell before it says so again, and a new
            // writer's claim ends that sleep: following never spins.
            Err(e)
                if e.kind() == ErrorKind::Disconnected && !sub.evicted() && args.receive.follow => {
            }
            Err(e) if e.kind() == ErrorKind::Disconnected && !sub.evicted() => {
                if let Some(n) = count {
                    bail!(
                        "cannot receive from {}: the writer left after {} of {n} messages (--follow waits for a new writer)",
                        sub.name(),
                        accounted(&sub)
                    );
                }
                if accounted(&sub) == 0 {
                    eprintln!(
                        "shmkit: the writer of {} has left and nothing new is there (--follow waits for a new writer)",
                        crate::show::escape_controls(sub.name().as_str())
                    );
                }
                break;
            }
            Err(e) if e.kind() == ErrorKind::TimedOut => {
                out.flush()?;
                return Ok(idle.expired(
                    &format!("no message on {}", sub.name()),
                    count.map(|n| format!("{} of {n} received or missed", accounted(&sub))),
                ));
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
        Kind::KeyedBoard => KeyedBoard::open(name).map(|b| {
            let keys = b.stats();
            let list: Vec<Value> = keys.iter().map(key_json).collect();
            json.insert("keys".into(), list.into());
            lines.push(("keys", keys.len().to_string()));
            for k in &keys {
                lines.push((
                    "key",
                    format!(
                        "{} (version {}, {} of {} bytes, writer {})",
                        k.name,
                        k.version,
                        k.size,
                        k.max_size,
                        who(k.writer)
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
