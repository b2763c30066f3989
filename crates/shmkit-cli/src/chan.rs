//! Channel verbs: `chan create`, `chan stat`, `produce`, `consume`.

use std::io::{BufRead, Write};

use anyhow::Result;
use serde_json::json;
use std::time::Instant;

use shmkit::channel::{Channel, ChannelOptions, RecvSlot, Role};
use shmkit::ErrorKind;

use crate::show;

/// Options for a channel that `produce`/`consume` create when it is absent.
pub fn options(capacity: usize, max_msg: usize, mode: u32) -> ChannelOptions {
    let mut o = ChannelOptions::new();
    o.capacity(capacity).max_message(max_msg).mode(mode);
    o
}

/// A creation error, with what to change when the space ran out: the
/// library's error says how much was needed and how much is free.
pub fn space_hint(e: shmkit::Error) -> anyhow::Error {
    if e.kind() == ErrorKind::NoSpace {
        anyhow::anyhow!("{e}; a smaller --capacity or --max-msg needs less")
    } else {
        e.into()
    }
}

pub fn create(name: &str, opts: &ChannelOptions) -> Result<u8> {
    Channel::create(name, opts).map_err(space_hint)?;
    Ok(0)
}

/// `chan reap`: frees the entries of dead endpoints.
pub fn reap(out: &mut dyn Write, name: &str) -> Result<u8> {
    let ch = Channel::open(name)?;
    let n = ch.reap();
    writeln!(
        out,
        "{}: freed {n} dead endpoint(s)",
        show::escape_name(ch.name().as_str())
    )?;
    Ok(0)
}

/// How `chan peek` shows each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeekStyle {
    /// A line each; a message that is not text as its length and hex.
    Lines,
    /// A `POSITION: N bytes` line and a hex dump each.
    Hex,
    /// The raw bytes, each followed by a NUL byte.
    Nul,
    /// One JSON document for scripts.
    Json,
}

/// Whether a message can be shown as a line of text as it is: UTF-8 with
/// no control character but the tab (a newline would split it).
fn is_plain_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|t| !t.chars().any(|c| c.is_control() && c != '\t'))
}

/// `chan peek`: up to `count` queued messages, taking none.
pub fn peek(out: &mut dyn Write, name: &str, count: usize, style: PeekStyle) -> Result<u8> {
    let ch = Channel::open(name)?;
    let typed = ch.stats().type_size != 0;
    let messages = ch.peek(count)?;
    if style == PeekStyle::Json {
        let list: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| {
                let hex: String = m.bytes.iter().map(|b| format!("{b:02x}")).collect();
                let mut v = json!({"position": m.position, "len": m.bytes.len(), "hex": hex});
                if !typed && is_plain_text(&m.bytes) {
                    v["text"] = String::from_utf8_lossy(&m.bytes).into_owned().into();
                }
                v
            })
            .collect();
        let v = json!({
            "name": ch.name().as_str(),
            "depth": ch.stats().depth,
            "messages": list,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        out.flush()?;
        return Ok(0);
    }
    for m in &messages {
        match style {
            // Printed above, as one document.
            PeekStyle::Json => {}
            PeekStyle::Nul => {
                out.write_all(&m.bytes)?;
                out.write_all(b"\0")?;
            }
            PeekStyle::Hex => {
                writeln!(out, "{}: {} bytes", m.position, m.bytes.len())?;
                show::hex_lines(out, 0, &m.bytes)?;
            }
            PeekStyle::Lines if !typed && is_plain_text(&m.bytes) => {
                out.write_all(&m.bytes)?;
                out.write_all(b"\n")?;
            }
            PeekStyle::Lines => {
                let hex: Vec<String> = m.bytes.iter().map(|b| format!("{b:02x}")).collect();
                writeln!(out, "[{} bytes] {}", m.bytes.len(), hex.join(" "))?;
            }
        }
    }
    out.flush()?;
    // Depth after the look: a count, not a promise (others keep going).
    let depth = ch.stats().depth;
    if messages.len() as u64 == count as u64 && depth > count as u64 {
        eprintln!(
            "shmkit: {} of about {depth} queued messages shown (--count N shows more)",
            messages.len()
        );
    }
    Ok(0)
}

pub fn stat(out: &mut dyn Write, name: &str, as_json: bool) -> Result<u8> {
    let ch = Channel::open(name)?;
    let s = ch.stats();
    let dead = s.endpoints.iter().filter(|e| !e.alive).count();
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
            "stream": s.stream,
            "depth": s.depth,
            "sent": s.sent,
            "received": s.received,
            "producers": endpoints(Role::Sender),
            "consumers": endpoints(Role::Receiver),
            "dead_endpoints": dead,
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
            .filter(|e| e.role == role && (e.alive || e.messages > 0))
            .map(|e| {
                format!(
                    "{} ({}, {} messages)",
                    e.pid,
                    if e.alive { "alive" } else { "dead" },
                    e.messages
                )
            })
            .collect();
        // Dead endpoints that moved nothing (killed waiters) are counted,
        // not listed: there may be 64 of them.
        let idle_dead = s
            .endpoints
            .iter()
            .filter(|e| e.role == role && !e.alive && e.messages == 0)
            .count();
        let mut list = list;
        if idle_dead > 0 {
            list.push(format!(
                "{idle_dead} dead with 0 messages (`shmkit chan reap`)"
            ));
        }
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
            if s.stream {
                "single producer, single consumer, framed byte stream"
            } else if s.spsc {
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

/// Messages `produce` hands to one `send_batch` at most.
const BATCH: usize = 256;

/// `produce`: each line of standard input as one message, or `count`
/// numbered messages `TAG I` (TAG defaults to the pid).
///
/// Lines are sent in batches (one publish and at most one wake-up for
/// each), but a batch never waits for input: it holds the lines already
/// read into the input buffer, so a line typed at a terminal goes out at
/// once.
pub fn produce(
    name: &str,
    count: Option<u64>,
    tag: Option<String>,
    opts: &ChannelOptions,
) -> Result<u8> {
    let ch = match Channel::open(name) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let ch = Channel::open_or_create(name, opts).map_err(space_hint)?;
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
    crate::foreign::check(name);
    let mut tx = ch.sender()?;
    // Messages end to end in one buffer, and where each ends.
    let mut bytes = Vec::new();
    let mut ends = Vec::with_capacity(BATCH);
    let mut send = |bytes: &mut Vec<u8>, ends: &mut Vec<usize>| -> Result<()> {
        let mut start = 0;
        tx.send_batch(ends.iter().map(|&end| {
            let msg = &bytes[start..end];
            start = end;
            msg
        }))?;
        bytes.clear();
        ends.clear();
        Ok(())
    };
    match count {
        Some(n) => {
            use std::io::Write as _;
            let tag = tag.unwrap_or_else(|| std::process::id().to_string());
            for i in 0..n {
                write!(bytes, "{tag} {i}")?;
                ends.push(bytes.len());
                if ends.len() == BATCH {
                    send(&mut bytes, &mut ends)?;
                }
            }
        }
        None => {
            // Our own buffer, to see whether more lines are already in.
            let mut reader = std::io::BufReader::with_capacity(64 << 10, std::io::stdin().lock());
            loop {
                let start = bytes.len();
                if reader.read_until(b'\n', &mut bytes)? == 0 {
                    break;
                }
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                }
                debug_assert!(start <= bytes.len());
                ends.push(bytes.len());
                // Another whole line already read in: it joins the batch;
                // otherwise the batch goes before we wait for input.
                if ends.len() == BATCH || !reader.buffer().contains(&b'\n') {
                    send(&mut bytes, &mut ends)?;
                }
            }
        }
    }
    if !ends.is_empty() {
        send(&mut bytes, &mut ends)?;
    }
    Ok(0)
}

/// What `consume` is asked to do besides printing.
pub struct ConsumeArgs {
    pub count: Option<u64>,
    pub unbuffered: bool,
    pub receive: crate::waiting::ReceiveArgs,
}

/// `consume`: prints each message as a line, until `count` messages or
/// until every producer is gone and the channel is empty (with `follow`,
/// until `count` or killed: a producer that leaves is waited for again).
/// A consumer waits for the first producer; `timeout` bounds every wait.
///
/// Messages are taken in batches (`recv_batch`: one wake-up of a waiting
/// producer per batch), and a message is released only after its line is
/// written (and, with `unbuffered`, flushed): a consumer killed at any
/// point leaves what it had not yet printed in the channel. On a
/// single-consumer (`--spsc`, `--stream`) channel the next consumer
/// receives it, so with `--unbuffered` nothing is lost to a kill (a line
/// may be printed twice). Without `--unbuffered`, lines still in the
/// output buffer when the process is killed are lost. The output is
/// flushed before every wait, so a person watching sees every line as soon
/// as it arrives.
pub fn consume(
    out: &mut dyn Write,
    name: &str,
    args: &ConsumeArgs,
    opts: &ChannelOptions,
) -> Result<u8> {
    let ch = if args.receive.create {
        Channel::open_or_create(name, opts).map_err(space_hint)?
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
    crate::foreign::check(name);
    let mut rx = ch.receiver()?;
    let count = args.count;
    let unbuffered = args.unbuffered;
    let mut line = Vec::new();
    let mut received = 0u64;
    let mut idle = crate::waiting::Idle::start(args.receive.timeout);
    // A write error stops the batch; it is reported as itself.
    let mut write_error: Option<std::io::Error> = None;
    while count.is_none_or(|n| received < n) {
        let max = count.map_or(BATCH, |n| (n - received).min(BATCH as u64) as usize);
        // What is there, without waiting; then flush and wait.
        let mut got = rx.recv_batch(max, Some(Instant::now()), |slot| {
            print_line(&mut *out, slot, &mut line, unbuffered, &mut write_error)
        });
        if matches!(&got, Err(e) if e.kind() == ErrorKind::TimedOut) && write_error.is_none() {
            out.flush()?;
            got = rx.recv_batch(max, idle.deadline(), |slot| {
                print_line(&mut *out, slot, &mut line, unbuffered, &mut write_error)
            });
        }
        if let Some(e) = write_error.take() {
            return Err(e.into());
        }
        match got {
            Ok(n) => {
                received += n as u64;
                idle.reset();
            }
            // Every producer left: the next receive waits a liveness slice
            // (a futex sleep) before it says so again, so following costs
            // no spinning; a new producer's first message ends the wait.
            Err(e) if e.kind() == ErrorKind::Disconnected && args.receive.follow => {}
            Err(e) if e.kind() == ErrorKind::Disconnected => {
                if let Some(n) = count {
                    anyhow::bail!(
                        "cannot receive from {}: every producer left after {received} of {n} messages (--follow waits for new producers)",
                        ch.name()
                    );
                }
                if received == 0 {
                    eprintln!(
                        "shmkit: every producer of {} has left and it is empty (--follow waits for new producers)",
                        show::escape_controls(ch.name().as_str())
                    );
                }
                break;
            }
            Err(e) if e.kind() == ErrorKind::TimedOut => {
                out.flush()?;
                return Ok(idle.expired(
                    &format!("no message on {}", ch.name()),
                    count.map(|n| format!("{received} of {n} received")),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(0)
}

/// Writes one message as a line (flushed when `unbuffered`); a write error
/// is kept in `failed` and stops the batch.
fn print_line(
    out: &mut dyn Write,
    slot: &RecvSlot<'_>,
    line: &mut Vec<u8>,
    unbuffered: bool,
    failed: &mut Option<std::io::Error>,
) -> shmkit::Result<()> {
    line.clear();
    line.resize(slot.len(), 0);
    slot.read_at(0, line)?;
    line.push(b'\n');
    let written = out
        .write_all(line)
        .and_then(|()| if unbuffered { out.flush() } else { Ok(()) });
    written.map_err(|e| {
        *failed = Some(e);
        shmkit::Error::new(ErrorKind::Other, "write", "standard output", "write failed")
    })
}
