//! `shmkit ls`: every POSIX object and System V segment, with the columns
//! an administrator scripts against (util-linux's conventions: `-o`,
//! `--noheadings`, `--raw`, `--bytes`, `--sort`), a summary (`-u`), POSIX
//! semaphores (`--sem`), other directories (`--dir`), and objects removed
//! while still mapped (status `deleted`).
//!
//! Every entry is first one JSON object (what `--json` prints); a column
//! is a view of one of its fields, so the table and JSON never disagree.
//! The default columns are `show::LS_HEADER`, unchanged.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::{json, Map, Value};
use shmkit::inventory::{self, FileType, PosixEntry, ProcessScan, StaleKind, StaleOptions};
use shmkit::posix::{PosixObject, SHM_DIR};
use shmkit::sysv::SegmentInfo;

use crate::commands::{denied_note, mapper_cells, posix_json, print_json, users};
use crate::show;
use crate::sysv_cmds;

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
    /// Only POSIX objects.
    #[arg(long, conflicts_with = "sysv")]
    pub posix: bool,
    /// Only System V segments.
    #[arg(long)]
    pub sysv: bool,
    /// Columns to show, comma-separated (`-o name,object,size,stale`);
    /// `-o help` lists them. Default: KIND NAME/KEY ID OWNER PERMS BYTES
    /// NATTCH STATUS MAPPED-BY CHANGED.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "COLUMNS",
        value_delimiter = ','
    )]
    pub output: Option<Vec<String>>,
    /// Do not print the header line.
    #[arg(long, short = 'n')]
    pub noheadings: bool,
    /// Raw output: one space between cells, spaces inside a cell as \x20.
    #[arg(long, short = 'r')]
    pub raw: bool,
    /// Exact sizes in bytes in the SIZE and ALLOCATED columns (default:
    /// human sizes as lsipc prints them; BYTES is always exact).
    #[arg(long, short = 'b')]
    pub bytes: bool,
    /// Sort by this column (numbers numerically).
    #[arg(long, value_name = "COLUMN")]
    pub sort: Option<String>,
    /// Only objects owned by this user (name or uid).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Only objects whose name (without the slash) or key matches this glob.
    #[arg(long, value_name = "GLOB")]
    pub name: Option<glob::Pattern>,
    /// Totals by kind and owner, /dev/shm's use against its size, and how
    /// much is stale.
    #[arg(long, short = 'u')]
    pub summary: bool,
    /// Also list POSIX named semaphores (`sem.NAME` in /dev/shm) with
    /// their value.
    #[arg(long)]
    pub sem: bool,
    /// Also list the files of this directory (a subdirectory of /dev/shm,
    /// another tmpfs or a hugetlbfs mount); may be repeated.
    #[arg(long, value_name = "DIR")]
    pub dir: Vec<PathBuf>,
}

/// Columns beyond the default ones: header name → JSON field.
const FIELDS: &[(&str, &str, &str)] = &[
    (
        "OBJECT",
        "object",
        "shmkit object: channel, board, broadcast, or -",
    ),
    ("NAME", "name", "POSIX name, or id:SHMID"),
    ("KEY", "key", "System V key"),
    ("SIZE", "size", "size (human unless --bytes)"),
    ("ALLOCATED", "allocated", "bytes allocated (POSIX)"),
    ("UID", "uid", "owner's uid"),
    ("USER", "user", "owner's name"),
    ("GID", "gid", "group id"),
    ("GROUP", "group", "group name"),
    ("MODE", "mode", "permission bits, four octal digits"),
    ("ATIME", "atime", "last access / attach"),
    ("MTIME", "mtime", "last modification (POSIX)"),
    ("CTIME", "ctime", "last change"),
    ("DTIME", "dtime", "last detach (System V)"),
    ("CPID", "cpid", "creator's pid"),
    ("LPID", "lpid", "last attach/detach pid (System V)"),
    ("CREATOR-ALIVE", "creator_alive", "whether the creator runs"),
    ("STALE", "stale", "whether `shmkit gc` counts it stale"),
    ("RSS", "rss", "resident bytes (System V)"),
    (
        "OPEN-BY",
        "open_by",
        "pids with a descriptor open on it (POSIX)",
    ),
    ("PATH", "path", "file path (POSIX)"),
    ("VALUE", "value", "a semaphore's value (--sem)"),
];

/// One listed entry: its JSON, and its cells in the default columns.
struct Entry {
    json: Map<String, Value>,
    legacy: Vec<String>,
}

fn column_field(col: &str) -> Option<&'static str> {
    let norm = col.trim().to_ascii_uppercase().replace('_', "-");
    FIELDS
        .iter()
        .find(|(h, _, _)| *h == norm)
        .map(|(_, f, _)| *f)
}

fn legacy_index(col: &str) -> Option<usize> {
    let norm = col.trim().to_ascii_uppercase().replace('_', "-");
    let norm = match norm.as_str() {
        "NAME/KEY" | "NAMEKEY" => "NAME/KEY",
        "MAPPED-BY" | "MAPPEDBY" => "MAPPED-BY",
        other => other,
    }
    .to_string();
    show::LS_HEADER.iter().position(|h| *h == norm)
}

fn cell_of(v: &Value, field: &str, bytes: bool) -> String {
    match (field, v) {
        ("size" | "allocated", Value::Number(n)) if !bytes => lsipc_size(n.as_u64().unwrap_or(0)),
        (_, Value::Null) => "-".into(),
        (_, Value::Bool(b)) => if *b { "yes" } else { "no" }.into(),
        (_, Value::String(s)) => s.clone(),
        (_, Value::Array(a)) => {
            let pids: Vec<i32> = a
                .iter()
                .filter_map(|p| p.as_i64())
                .map(|p| p as i32)
                .collect();
            show::pid_list(&pids)
        }
        (_, other) => other.to_string(),
    }
}

/// A size as lsipc prints it: `4K`, `1.1M`, `512B`.
fn lsipc_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else if v.fract() < 0.05 || v >= 10.0 {
        format!("{}{}", v.round(), UNITS[unit])
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

fn posix_entry(scan: &ProcessScan, e: &PosixEntry, stale: &HashSet<String>) -> Entry {
    let mut json = match posix_json(scan, e) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let header = (e.file_type == FileType::Regular)
        .then(|| PosixObject::open_read_only(e.name.as_str()).ok())
        .flatten()
        .and_then(|obj| shmkit::layout::peek_header_of(&obj));
    json.insert(
        "object".into(),
        header.map_or("-", |h| h.kind.as_str()).into(),
    );
    json.insert("cpid".into(), header.map(|h| h.creator.pid).into());
    json.insert(
        "creator_alive".into(),
        header.map(|h| h.creator.is_alive()).into(),
    );
    let status = match e.file_type {
        FileType::Regular => "-".to_string(),
        other => format!("not an object ({})", other.as_str()),
    };
    json.insert("status".into(), status.clone().into());
    json.insert("stale".into(), stale.contains(e.name.as_str()).into());
    let md = &e.metadata;
    let (mapped_by, _) = users(scan, e);
    let (nattch, mapped) = mapper_cells(scan, &mapped_by);
    let legacy = vec![
        "posix".to_string(),
        e.name.to_string(),
        "-".to_string(),
        show::user(md.uid),
        show::perms(md.mode),
        md.size.to_string(),
        nattch,
        status,
        mapped,
        show::rfc3339(md.mtime),
    ];
    Entry { json, legacy }
}

fn segment_entry(scan: &ProcessScan, s: &SegmentInfo, stale: &HashSet<String>) -> Entry {
    let mut json = match sysv_cmds::segment_json(scan, s) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let legacy = sysv_cmds::segment_row(scan, s);
    json.insert("object".into(), "-".into());
    let alive = json.get("cpid_alive").cloned().unwrap_or(Value::Null);
    json.insert("creator_alive".into(), alive);
    json.insert("status".into(), legacy[7].clone().into());
    json.insert(
        "stale".into(),
        stale.contains(&format!("id:{}", s.id)).into(),
    );
    Entry { json, legacy }
}

/// Removed objects that processes still map: status `deleted`.
fn deleted_entries(scan: &ProcessScan, live: &HashSet<u64>) -> Vec<Entry> {
    scan.deleted()
        .filter(|d| !live.contains(&d.inode))
        .map(|d| {
            let json = json!({
                "kind": "posix",
                "name": d.name,
                "path": format!("{SHM_DIR}{}", d.name),
                "file_type": "regular",
                "size": d.mapped_bytes,
                "object": "-",
                "status": "deleted",
                "deleted": true,
                "mapped_by": d.mapped_by,
                "open_by": d.open_by,
                "mapped_by_complete": scan.denied() == 0,
                "stale": false,
            });
            let (nattch, mapped) = mapper_cells(scan, &d.mapped_by);
            let legacy = vec![
                "posix".into(),
                d.name.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                d.mapped_bytes.to_string(),
                nattch,
                "deleted".into(),
                mapped,
                "-".into(),
            ];
            Entry {
                json: json.as_object().cloned().unwrap_or_default(),
                legacy,
            }
        })
        .collect()
}

/// glibc's `sem_t` keeps the value in the low 32 bits of its first word.
fn semaphore_entries() -> Vec<Entry> {
    let Ok(dir) = std::fs::read_dir(SHM_DIR) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in dir.flatten() {
        let file = d.file_name().to_string_lossy().into_owned();
        let Some(sem) = file.strip_prefix("sem.") else {
            continue;
        };
        let Ok(md) = d.path().symlink_metadata() else {
            continue;
        };
        use std::os::unix::fs::{FileExt, MetadataExt};
        let value = std::fs::File::open(d.path()).ok().and_then(|f| {
            let mut word = [0u8; 8];
            f.read_exact_at(&mut word, 0).ok()?;
            Some(u64::from_le_bytes(word) as u32)
        });
        let name = format!("/{sem}");
        let json = json!({
            "kind": "sem",
            "name": name,
            "path": d.path().to_string_lossy(),
            "size": md.size(),
            "mode": show::perms_json(md.mode()),
            "uid": md.uid(),
            "user": show::user(md.uid()),
            "value": value,
            "object": "-",
            "status": "-",
            "stale": false,
        });
        let legacy = vec![
            "sem".into(),
            name,
            "-".into(),
            show::user(md.uid()),
            show::perms(md.mode()),
            md.size().to_string(),
            "-".into(),
            value.map_or("value ?".into(), |v| format!("value {v}")),
            "-".into(),
            show::rfc3339(shmkit_time(md.mtime())),
        ];
        out.push(Entry {
            json: json.as_object().cloned().unwrap_or_default(),
            legacy,
        });
    }
    out
}

fn shmkit_time(secs: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64)
}

/// Files of another directory (`--dir`): listed as `file` entries.
fn dir_entries(dir: &std::path::Path, scan: &ProcessScan) -> Result<Vec<Entry>> {
    use std::os::unix::fs::MetadataExt;
    let list = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for d in list.flatten() {
        let Ok(md) = d.path().symlink_metadata() else {
            continue;
        };
        if !md.is_file() {
            continue;
        }
        let path = d.path().to_string_lossy().into_owned();
        let mapped_by = scan.path_mappers(&path, md.ino());
        let (nattch, mapped) = mapper_cells(scan, &mapped_by);
        let json = json!({
            "kind": "file",
            "name": path,
            "path": path,
            "size": md.size(),
            "allocated": md.blocks() * 512,
            "mode": show::perms_json(md.mode()),
            "uid": md.uid(),
            "user": show::user(md.uid()),
            "gid": md.gid(),
            "mtime": show::rfc3339(shmkit_time(md.mtime())),
            "mapped_by": mapped_by,
            "object": "-",
            "status": "-",
            "stale": false,
        });
        let legacy = vec![
            "file".into(),
            path.clone(),
            "-".into(),
            show::user(md.uid()),
            show::perms(md.mode()),
            md.size().to_string(),
            nattch,
            "-".into(),
            mapped,
            show::rfc3339(shmkit_time(md.mtime())),
        ];
        out.push(Entry {
            json: json.as_object().cloned().unwrap_or_default(),
            legacy,
        });
    }
    out.sort_by(|a, b| a.legacy[1].cmp(&b.legacy[1]));
    Ok(out)
}

fn print_columns_help(out: &mut dyn Write) -> Result<()> {
    writeln!(out, "Default columns (also accepted by -o):")?;
    writeln!(out, "  {}", show::LS_HEADER.join(" "))?;
    writeln!(out, "More columns:")?;
    for (h, f, what) in FIELDS {
        writeln!(out, "  {h:<14} {what} (JSON field `{f}`)")?;
    }
    Ok(())
}

fn sort_key(v: &Value) -> (u8, f64, String) {
    match v {
        Value::Null => (0, 0.0, String::new()),
        Value::Number(n) => (1, n.as_f64().unwrap_or(0.0), String::new()),
        Value::Bool(b) => (1, f64::from(u8::from(*b)), String::new()),
        Value::Array(a) => (1, a.len() as f64, String::new()),
        other => (2, 0.0, other.as_str().unwrap_or_default().to_string()),
    }
}

pub fn run(out: &mut dyn Write, args: LsArgs) -> Result<u8> {
    if args
        .output
        .as_ref()
        .is_some_and(|o| o.iter().any(|c| c == "help"))
    {
        print_columns_help(out)?;
        return Ok(0);
    }
    let both = !args.posix && !args.sysv;
    let (want_posix, want_sysv) = (args.posix || both, args.sysv || both);
    let entries = if want_posix {
        inventory::posix_objects()?
    } else {
        Vec::new()
    };
    let segments = if want_sysv {
        sysv_cmds::list(!want_posix)?
    } else {
        Vec::new()
    };
    let mut scan_dirs: Vec<String> = args
        .dir
        .iter()
        .map(|d| d.to_string_lossy().trim_end_matches('/').to_string() + "/")
        .collect();
    scan_dirs.retain(|d| !d.starts_with("/dev/shm/"));
    let scan = ProcessScan::with_dirs(&scan_dirs);
    let report = inventory::stale_in(&entries, &segments, &scan, &StaleOptions::new());
    let stale: HashSet<String> = report
        .objects
        .iter()
        .filter(|o| o.kind == StaleKind::Stale)
        .map(|o| o.target.label())
        .collect();
    let live: HashSet<u64> = entries.iter().map(|e| e.metadata.inode).collect();
    let mut listed: Vec<Entry> = entries
        .iter()
        .map(|e| posix_entry(&scan, e, &stale))
        .collect();
    if want_posix {
        listed.extend(deleted_entries(&scan, &live));
        if args.sem {
            listed.extend(semaphore_entries());
        }
        for d in &args.dir {
            listed.extend(dir_entries(d, &scan)?);
        }
    }
    listed.extend(segments.iter().map(|s| segment_entry(&scan, s, &stale)));

    if let Some(user) = &args.user {
        let uid =
            inventory::uid_of(user).ok_or_else(|| anyhow::anyhow!("no such user: {user:?}"))?;
        listed.retain(|e| e.json.get("uid").and_then(Value::as_u64) == Some(u64::from(uid)));
    }
    if let Some(p) = &args.name {
        listed.retain(|e| {
            let name = if e.json.get("kind").and_then(Value::as_str) == Some("sysv") {
                e.json
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            } else {
                e.json
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            };
            p.matches(name) || p.matches(name.trim_start_matches('/'))
        });
    }
    if let Some(col) = &args.sort {
        let field = column_field(col).map(str::to_string).or_else(|| {
            legacy_index(col).map(|i| {
                match show::LS_HEADER[i] {
                    "NAME/KEY" => "name",
                    "ID" => "id",
                    "OWNER" => "user",
                    "PERMS" => "mode",
                    "BYTES" => "size",
                    "NATTCH" | "MAPPED-BY" => "mapped_by",
                    "STATUS" => "status",
                    "CHANGED" => "ctime",
                    _ => "kind",
                }
                .to_string()
            })
        });
        let Some(field) = field else {
            bail!("unknown column {col:?} for --sort (`shmkit ls -o help` lists them)");
        };
        listed.sort_by(|a, b| {
            let ka = sort_key(a.json.get(&field).unwrap_or(&Value::Null));
            let kb = sort_key(b.json.get(&field).unwrap_or(&Value::Null));
            ka.partial_cmp(&kb).unwrap_or(std::cmp::Ordering::Equal)
        });
    }

    if args.summary {
        return summary(out, &args, &listed, &report);
    }
    if args.json {
        let all: Vec<Value> = listed.into_iter().map(|e| Value::Object(e.json)).collect();
        print_json(out, &Value::Array(all))?;
        return Ok(0);
    }
    let (header, rows): (Vec<String>, Vec<Vec<String>>) = match &args.output {
        None => (
            show::LS_HEADER.iter().map(|h| h.to_string()).collect(),
            listed.into_iter().map(|e| e.legacy).collect(),
        ),
        Some(cols) => {
            enum Col {
                Legacy(usize),
                Field(&'static str),
            }
            let mut chosen = Vec::new();
            for c in cols {
                if let Some(i) = legacy_index(c) {
                    chosen.push((show::LS_HEADER[i].to_string(), Col::Legacy(i)));
                } else if let Some(f) = column_field(c) {
                    let h = FIELDS.iter().find(|x| x.1 == f).map_or(f, |x| x.0);
                    chosen.push((h.to_string(), Col::Field(f)));
                } else {
                    bail!("unknown column {c:?} (`shmkit ls -o help` lists them)");
                }
            }
            let rows = listed
                .iter()
                .map(|e| {
                    chosen
                        .iter()
                        .map(|(_, c)| match c {
                            Col::Legacy(i) => e.legacy[*i].clone(),
                            Col::Field(f) => {
                                cell_of(e.json.get(*f).unwrap_or(&Value::Null), f, args.bytes)
                            }
                        })
                        .collect()
                })
                .collect();
            (chosen.into_iter().map(|(h, _)| h).collect(), rows)
        }
    };
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    if args.raw {
        let raw = |c: &str| show::escape_name(c).replace(' ', "\\x20");
        if !args.noheadings {
            writeln!(out, "{}", header.join(" "))?;
        }
        for row in &rows {
            let cells: Vec<String> = row.iter().map(|c| raw(c)).collect();
            writeln!(out, "{}", cells.join(" "))?;
        }
    } else if args.noheadings {
        let mut buf = Vec::new();
        show::table(&mut buf, &header, &rows)?;
        let text = String::from_utf8_lossy(&buf);
        for line in text.lines().skip(1) {
            writeln!(out, "{line}")?;
        }
    } else {
        show::table(out, &header, &rows)?;
    }
    if let Some(note) = denied_note(&scan) {
        if !args.raw && !args.noheadings {
            writeln!(out, "{note}")?;
        }
    }
    Ok(0)
}

fn summary(
    out: &mut dyn Write,
    args: &LsArgs,
    listed: &[Entry],
    report: &inventory::StaleReport,
) -> Result<u8> {
    let mut by_kind: Vec<(String, u64, u64)> = Vec::new();
    let mut by_owner: Vec<(String, u64, u64)> = Vec::new();
    let add = |list: &mut Vec<(String, u64, u64)>, key: String, size: u64| match list
        .iter_mut()
        .find(|(k, _, _)| *k == key)
    {
        Some(e) => {
            e.1 += 1;
            e.2 += size;
        }
        None => list.push((key, 1, size)),
    };
    for e in listed {
        let size = e.json.get("size").and_then(Value::as_u64).unwrap_or(0);
        let kind = e.json.get("kind").and_then(Value::as_str).unwrap_or("?");
        let object = e.json.get("object").and_then(Value::as_str).unwrap_or("-");
        let status = e.json.get("status").and_then(Value::as_str).unwrap_or("-");
        let label = match (kind, object, status) {
            (_, _, "deleted") => format!("{kind} (deleted)"),
            (_, "-", _) => kind.to_string(),
            (_, o, _) => format!("{kind} {o}"),
        };
        add(&mut by_kind, label, size);
        let owner = e
            .json
            .get("user")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string();
        add(&mut by_owner, owner, size);
    }
    by_kind.sort();
    by_owner.sort();
    let stale: Vec<_> = report.stale().collect();
    let stale_bytes: u64 = stale.iter().map(|o| o.size).sum();
    let shm = rustix::fs::statvfs(SHM_DIR).ok().map(|v| {
        (
            (v.f_blocks - v.f_bfree).saturating_mul(v.f_frsize),
            v.f_blocks.saturating_mul(v.f_frsize),
        )
    });
    if args.json {
        let rows = |l: &[(String, u64, u64)], key: &str| -> Vec<Value> {
            l.iter()
                .map(|(k, n, b)| json!({ key: k, "objects": n, "bytes": b }))
                .collect()
        };
        print_json(
            out,
            &json!({
                "by_kind": rows(&by_kind, "kind"),
                "by_owner": rows(&by_owner, "owner"),
                "dev_shm_used": shm.map(|s| s.0),
                "dev_shm_size": shm.map(|s| s.1),
                "stale": stale.len(),
                "stale_bytes": stale_bytes,
            }),
        )?;
        return Ok(0);
    }
    let size = |b: u64| {
        if args.bytes {
            b.to_string()
        } else {
            lsipc_size(b)
        }
    };
    let table = |l: &[(String, u64, u64)]| -> Vec<Vec<String>> {
        l.iter()
            .map(|(k, n, b)| vec![k.clone(), n.to_string(), size(*b)])
            .collect()
    };
    show::table(out, &["KIND", "OBJECTS", "SIZE"], &table(&by_kind))?;
    writeln!(out)?;
    show::table(out, &["OWNER", "OBJECTS", "SIZE"], &table(&by_owner))?;
    writeln!(out)?;
    if let Some((used, total)) = shm {
        let pct = if total == 0 {
            0.0
        } else {
            used as f64 * 100.0 / total as f64
        };
        writeln!(
            out,
            "{SHM_DIR}: {} used of {} ({pct:.1}%)",
            size(used),
            size(total)
        )?;
    }
    writeln!(
        out,
        "stale: {} objects, {} (`shmkit gc` lists them)",
        stale.len(),
        size(stale_bytes)
    )?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_lsipc_prints_them() {
        assert_eq!(lsipc_size(512), "512B");
        assert_eq!(lsipc_size(4096), "4K");
        assert_eq!(lsipc_size(1_153_024), "1.1M");
        assert_eq!(lsipc_size(64 << 20), "64M");
    }

    #[test]
    fn columns_are_found_in_any_case_and_either_separator() {
        assert_eq!(column_field("open_by"), Some("open_by"));
        assert_eq!(column_field("Creator-Alive"), Some("creator_alive"));
        assert_eq!(legacy_index("mapped_by"), Some(8));
        assert_eq!(legacy_index("name/key"), Some(1));
        assert_eq!(column_field("nonsense"), None);
    }
}
