//! Channel verbs: `chan create`, `chan stat`, `produce`, `consume`.

use std::io::{BufRead, Write};

use anyhow::Result;
use serde_json::json;
use shmkit::channel::{Channel, ChannelOptions, Role};
use shmkit::ErrorKind;

use crate::show;

/// Options for a channel that `produce`/`consume` create when it is absent.
pub fn options(capacity: usize, max_msg: usize, mode: u32) -> ChannelOptions {
    let mut o = ChannelOptions::new();
    o.capacity(capacity).max_message(max_msg).mode(mode);
    o
}

pub fn create(name: &str, opts: &ChannelOptions) -> Result<u8> {
    Channel::create(name, opts)?;
    Ok(0)
}

pub fn stat(out: &mut dyn Write, name: &str, as_json: bool) -> Result<u8> {
    let ch = Channel::open(name)?;
    let s = ch.stats();
    let endpoints = |role: Role| -> Vec<serde_json::Value> {
        s.endpoints
            .iter()
            .filter(|e| e.role == role)
            .map(|e| json!({"pid": e.pid, "alive": e.alive, "messages": e.messages}))
            .collect()
    };
    if as_json {
        let v = json!({
            "kind": "channel",
            "name": ch.name().as_str(),
            "capacity": s.capacity,
            "max_msg": s.max_message,
            "type_size": s.type_size,
            "spsc": s.spsc,
            "depth": s.depth,
            "sent": s.sent,
            "received": s.received,
            "producers": endpoints(Role::Sender),
            "consumers": endpoints(Role::Receiver),
            "creator_pid": s.creator.pid,
            "creator_alive": s.creator_alive,
            "created": show::rfc3339(s.created),
            "size": s.size,
        });
        serde_json::to_writer_pretty(&mut *out, &v)?;
        writeln!(out)?;
        return Ok(0);
    }
    let who = |role: Role| {
        let list: Vec<String> = s
            .endpoints
            .iter()
            .filter(|e| e.role == role)
            .map(|e| {
                format!(
                    "{} ({}, {} messages)",
                    e.pid,
                    if e.alive { "alive" } else { "dead" },
                    e.messages
                )
            })
            .collect();
        if list.is_empty() {
            "-".to_string()
        } else {
            list.join(", ")
        }
    };
    let lines = [
        ("name", ch.name().to_string()),
        ("kind", "channel".to_string()),
        ("capacity", format!("{} messages", s.capacity)),
        ("max msg", format!("{} bytes", s.max_message)),
        (
            "ring",
            if s.spsc {
                "single producer, single consumer"
            } else {
                "any number of producers and consumers"
            }
            .to_string(),
        ),
        ("depth", s.depth.to_string()),
        ("sent", s.sent.to_string()),
        ("received", s.received.to_string()),
        ("producers", who(Role::Sender)),
        ("consumers", who(Role::Receiver)),
        (
            "creator",
            format!(
                "{} ({})",
                s.creator.pid,
                if s.creator_alive { "alive" } else { "gone" }
            ),
        ),
        ("created", show::rfc3339(s.created)),
        (
            "size",
            format!("{} ({})", s.size, shmkit::human_bytes(s.size)),
        ),
    ];
    show::key_values(out, &lines)?;
    Ok(0)
}

/// `produce`: each line of standard input as one message, or `count`
/// numbered messages `TAG I` (TAG defaults to the pid).
pub fn produce(
    name: &str,
    count: Option<u64>,
    tag: Option<String>,
    opts: &ChannelOptions,
) -> Result<u8> {
    let ch = match Channel::open(name) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let ch = Channel::open_or_create(name, opts)?;
            // A typo must not pass silently for the name meant.
            eprintln!(
                "shmkit: created channel {} ({} messages of up to {} bytes)",
                show::escape_controls(ch.name().as_str()),
                ch.capacity(),
                ch.max_message()
            );
            ch
        }
        other => other?,
    };
    let mut tx = ch.sender()?;
    match count {
        Some(n) => {
            let tag = tag.unwrap_or_else(|| std::process::id().to_string());
            let mut msg = String::new();
            for i in 0..n {
                msg.clear();
                use std::fmt::Write as _;
                let _ = write!(msg, "{tag} {i}");
                tx.send(msg.as_bytes())?;
            }
        }
        None => {
            let stdin = std::io::stdin();
            let mut line = Vec::new();
            let mut reader = stdin.lock();
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line)? == 0 {
                    break;
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                tx.send(&line)?;
            }
        }
    }
    Ok(0)
}

/// `consume`: prints each message as a line, until `count` messages or
/// until every producer is gone and the channel is empty.
///
/// A message's slot is released only after its line is written (and, with
/// `unbuffered`, flushed): a consumer killed at any point leaves what it had
/// not yet printed in the channel. On a single-consumer (`--spsc`) channel
/// the next consumer receives it, so with `--unbuffered` nothing is lost to
/// a kill (a line may be printed twice). Without `--unbuffered`, lines still
/// in the output buffer when the process is killed are lost.
pub fn consume(
    out: &mut dyn Write,
    name: &str,
    count: Option<u64>,
    unbuffered: bool,
    create: bool,
    opts: &ChannelOptions,
) -> Result<u8> {
    let ch = if create {
        Channel::open_or_create(name, opts)?
    } else {
        Channel::open(name).map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                anyhow::anyhow!(
                    "{e} (no such channel: check the name, create it with `shmkit chan create`, or pass --create)"
                )
            } else {
                e.into()
            }
        })?
    };
    let mut rx = ch.receiver()?;
    let mut line = Vec::new();
    let mut received = 0u64;
    while count.is_none_or(|n| received < n) {
        // Take what is there without blocking; flush before we wait, so a
        // person watching sees every line as soon as it arrives.
        let first = rx.try_recv_slot();
        let got = if matches!(&first, Err(e) if e.kind() == ErrorKind::WouldBlock) {
            drop(first);
            out.flush()?;
            rx.recv_slot()
        } else {
            first
        };
        match got {
            Ok(slot) => {
                line.clear();
                line.resize(slot.len(), 0);
                slot.read_at(0, &mut line)?;
                line.push(b'\n');
                out.write_all(&line)?;
                if unbuffered {
                    out.flush()?;
                }
                // Released here, once the line is out.
                drop(slot);
                received += 1;
            }
            Err(e) if e.kind() == ErrorKind::Disconnected => {
                if let Some(n) = count {
                    anyhow::bail!(
                        "cannot receive from {}: every producer left after {received} of {n} messages",
                        ch.name()
                    );
                }
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(0)
}
