//! `shmkit gc`: find stale shared memory (see `shmkit::inventory::stale`)
//! and, with `--remove`, remove it.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};
use shmkit::inventory::{self, Removal, StaleKind, StaleObject, StaleOptions, StaleTarget};

use crate::commands::print_json;
use crate::show;

/// Exit status when stale objects were found (dry run) or left behind.
pub const FOUND: u8 = 2;

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Remove the stale objects (default: only list them).
    #[arg(long, short = 'f', visible_alias = "force")]
    pub remove: bool,
    /// Also count objects unused and unchanged for longer than this
    /// (`90s`, `30m`, `2h`, `7d`); the only way an object shmkit did not
    /// make is ever stale.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<Duration>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Only objects whose name (or a segment's key) matches this glob,
    /// such as 'shmkit-bench-*'.
    #[arg(long, value_name = "GLOB")]
    pub name: Option<glob::Pattern>,
    /// Only objects owned by this user (name or uid).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Only objects of this kind: posix, sysv, channel, board, broadcast
    /// or plain (a POSIX object that is not shmkit's).
    #[arg(long, value_name = "KIND", value_parser = ["posix", "sysv", "channel", "board", "keyed-board", "broadcast", "plain"])]
    pub kind: Option<String>,
}

pub fn parse_duration(text: &str) -> Result<Duration> {
    humantime::parse_duration(text).map_err(|e| {
        anyhow::anyhow!(
            "invalid duration {text:?} ({e}): use a number and a unit, such as 90s, 30m, 2h or 7d"
        )
    })
}

/// The name a glob is matched against: a POSIX name without its slash, a
/// segment's key (`0x...`).
fn match_name(o: &StaleObject) -> String {
    match &o.target {
        StaleTarget::Posix { name, .. } => name.file_name().to_string(),
        StaleTarget::Sysv { key, .. } => key.to_string(),
    }
}

fn object_word(o: &StaleObject) -> &'static str {
    match (&o.target, o.object) {
        (_, Some(k)) => k.as_str(),
        (StaleTarget::Posix { .. }, None) => "-",
        (StaleTarget::Sysv { .. }, None) => "-",
    }
}

fn kind_word(o: &StaleObject) -> &'static str {
    match o.target {
        StaleTarget::Posix { .. } => "posix",
        StaleTarget::Sysv { .. } => "sysv",
    }
}

fn wanted(args: &GcArgs, uid: Option<u32>, o: &StaleObject) -> bool {
    if let Some(p) = &args.name {
        let name = match_name(o);
        let slashed = format!("/{name}");
        if !p.matches(&name) && !p.matches(&slashed) {
            return false;
        }
    }
    if uid.is_some_and(|u| u != o.uid) {
        return false;
    }
    match args.kind.as_deref() {
        None => true,
        Some("posix") => kind_word(o) == "posix",
        Some("sysv") => kind_word(o) == "sysv",
        Some("plain") => kind_word(o) == "posix" && o.object.is_none(),
        Some(k) => o.object.is_some_and(|x| x.as_str() == k),
    }
}

fn removal_text(r: &Removal) -> (String, String) {
    match r {
        Removal::Removed => ("removed".into(), String::new()),
        Removal::Kept(why) => ("kept".into(), why.clone()),
        Removal::Failed(e) => ("failed".into(), e.to_string()),
    }
}

pub fn run(out: &mut dyn Write, args: GcArgs) -> Result<u8> {
    let uid = match &args.user {
        Some(u) => {
            Some(inventory::uid_of(u).ok_or_else(|| anyhow::anyhow!("no such user: {u:?}"))?)
        }
        None => None,
    };
    let mut options = StaleOptions::new();
    options.older_than(args.older_than);
    match args.kind.as_deref() {
        Some("sysv") => {
            options.posix(false);
        }
        Some(_) => {
            options.sysv(false);
        }
        None => {}
    }
    let mut report = inventory::stale(&options)?;
    report.objects.retain(|o| wanted(&args, uid, o));
    let removals: Vec<Removal> = if args.remove {
        inventory::remove_stale(&report.objects)
    } else {
        Vec::new()
    };
    let stale: Vec<&StaleObject> = report.stale().collect();
    let stale_bytes: u64 = stale.iter().map(|o| o.size).sum();
    let removed = removals
        .iter()
        .filter(|r| matches!(r, Removal::Removed))
        .count();
    let failed = removals
        .iter()
        .filter(|r| matches!(r, Removal::Failed(_)))
        .count();
    if args.json {
        let objects: Vec<Value> = report
            .objects
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let mut v = json!({
                    "kind": kind_word(o),
                    "name": o.target.label(),
                    "object": object_word(o),
                    "status": o.kind.as_str(),
                    "stale": o.kind == StaleKind::Stale,
                    "size": o.size,
                    "uid": o.uid,
                    "user": show::user(o.uid),
                    "creator": o.creator,
                    "changed": show::rfc3339_or_null(o.changed),
                    "reason": o.reason,
                });
                if let Some(r) = removals.get(i) {
                    let (result, why) = removal_text(r);
                    v["result"] = result.into();
                    v["result_reason"] = why.into();
                }
                v
            })
            .collect();
        print_json(
            out,
            &json!({
                "objects": objects,
                "stale": stale.len(),
                "stale_bytes": stale_bytes,
                "removed": removed,
                "failed": failed,
                "examined": report.examined,
                "denied_processes": report.denied_processes,
                "dry_run": !args.remove,
            }),
        )?;
    } else {
        let mut header = vec!["KIND", "NAME/KEY", "OBJECT", "OWNER", "SIZE", "STATUS"];
        if args.remove {
            header.push("RESULT");
        }
        header.push("REASON");
        let rows: Vec<Vec<String>> = report
            .objects
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let mut row = vec![
                    kind_word(o).to_string(),
                    match &o.target {
                        StaleTarget::Posix { name, .. } => name.to_string(),
                        StaleTarget::Sysv { id, key } => format!("{key} (id:{id})"),
                    },
                    object_word(o).to_string(),
                    show::user(o.uid),
                    shmkit::human_bytes(o.size),
                    o.kind.as_str().to_string(),
                ];
                let mut reason = o.reason.clone();
                if let Some(r) = removals.get(i) {
                    let (result, why) = removal_text(r);
                    row.push(result);
                    if !why.is_empty() {
                        reason = format!("{why}; {reason}");
                    }
                }
                row.push(reason);
                row
            })
            .collect();
        if !rows.is_empty() {
            show::table(out, &header, &rows)?;
        }
        let what = format!(
            "{} stale of {} examined ({})",
            stale.len(),
            report.examined,
            shmkit::human_bytes(stale_bytes)
        );
        if args.remove {
            writeln!(out, "{what}: {removed} removed, {failed} failed")?;
        } else if stale.is_empty() {
            writeln!(out, "{what}")?;
        } else {
            writeln!(out, "{what}; dry run: `shmkit gc --remove` removes them")?;
        }
        if report.denied_processes > 0 {
            writeln!(
                out,
                "? {} could not be inspected: what they map is not seen{}",
                if report.denied_processes == 1 {
                    "1 process".to_string()
                } else {
                    format!("{} processes", report.denied_processes)
                },
                if rustix::process::geteuid().is_root() {
                    " (closed even to root)"
                } else {
                    "; objects they may use are `unknown` (run as root)"
                }
            )?;
        }
    }
    Ok(if failed > 0 {
        1
    } else if !args.remove && !stale.is_empty() {
        FOUND
    } else {
        0
    })
}
