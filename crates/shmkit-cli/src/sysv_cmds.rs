//! The System V side of the verbs: `create --sysv`, a segment's `stat`, its
//! `ls` row and JSON, and `limits`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use shmkit::inventory::ProcessScan;
use shmkit::posix::SHM_DIR;
use shmkit::sysv::{self, Key, Segment, SegmentInfo};
use shmkit::{human_bytes, Error, ErrorKind};

use crate::commands::print_json;
use crate::show;

/// The System V options of `shmkit create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Create a System V segment (no NAME) and print its id; the key comes
    /// from --key, --ftok or --private.
    #[arg(long, requires = "key_source")]
    pub sysv: bool,
    #[command(flatten)]
    pub source: KeySource,
}

/// Where a new segment's key comes from: exactly one of these, with --sysv.
/// Each also conflicts with NAME: clap does not enforce `requires = "sysv"`
/// when NAME, which conflicts with --sysv, is given.
#[derive(Args, Debug)]
#[group(id = "key_source", multiple = false, requires = "sysv")]
pub struct KeySource {
    /// With --sysv: this key, hexadecimal with 0x (0x1234) or decimal.
    #[arg(long, value_parser = parse_key, conflicts_with = "name")]
    pub key: Option<Key>,
    /// With --sysv: the key ftok(3) derives from an existing file and a
    /// project id (a number 0-255, or one character as in ftok(path, 'A')),
    /// the same key C programs get.
    #[arg(
        long,
        value_name = "PATH:PROJ",
        value_parser = parse_ftok,
        conflicts_with = "name"
    )]
    pub ftok: Option<Ftok>,
    /// With --sysv: IPC_PRIVATE, a new segment reachable only by its id.
    #[arg(long, conflicts_with = "name")]
    pub private: bool,
}

/// The arguments of `ftok(3)`.
#[derive(Debug, Clone)]
pub struct Ftok {
    path: PathBuf,
    proj: u8,
}

fn parse_key(text: &str) -> Result<Key> {
    Key::parse(text).map_err(|_| {
        anyhow::anyhow!(
            "invalid key {text:?}: a key is a 32-bit number, hexadecimal with 0x (0x1234) or decimal (4660)"
        )
    })
}

/// `PATH:PROJ`, split at the last colon (a path may hold colons). PROJ is a
/// number (decimal, or hexadecimal with 0x) up to 255, or one ASCII
/// character standing for its code; digits are numbers, so `1` is 1.
fn parse_ftok(text: &str) -> Result<Ftok> {
    let usage =
        || format!("invalid --ftok {text:?}: expected PATH:PROJ, such as /etc/hosts:1 or ./key:A");
    let (path, proj) = text.rsplit_once(':').with_context(usage)?;
    if path.is_empty() {
        bail!(usage());
    }
    let number = match proj.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => proj.parse::<u32>().ok(),
    };
    let proj = match (number, proj.as_bytes()) {
        (Some(n), _) => u8::try_from(n).map_err(|_| {
            anyhow::anyhow!("invalid --ftok {text:?}: PROJ {n} is over 255 (ftok uses only 8 bits)")
        })?,
        (None, [c]) if c.is_ascii_graphic() => *c,
        _ => bail!(
            "invalid --ftok {text:?}: PROJ is a number up to 255 or one character, not {proj:?}"
        ),
    };
    Ok(Ftok {
        path: PathBuf::from(path),
        proj,
    })
}

/// `shmkit create --sysv`: prints the id of the new (or existing) segment.
pub fn create(
    out: &mut dyn Write,
    source: &KeySource,
    size: u64,
    mode: u32,
    exclusive: bool,
) -> Result<u8> {
    let key = if let Some(key) = source.key {
        key
    } else if let Some(ftok) = &source.ftok {
        Key::ftok(&ftok.path, ftok.proj)?
    } else if source.private {
        Key::PRIVATE
    } else {
        bail!("--sysv needs a key: --key, --ftok or --private");
    };
    let seg = if exclusive {
        Segment::create_exclusive(key, size, mode)?
    } else {
        Segment::create(key, size, mode)?
    };
    if !exclusive {
        // An existing segment larger than asked for is accepted by shmget:
        // say so rather than hand back something else, as for POSIX objects.
        let actual = seg.size()?;
        if actual != size {
            bail!(Error::new(
                ErrorKind::AlreadyExists,
                "create",
                format!("key:{key}"),
                format!(
                    "it exists (id:{}) with a size of {actual} bytes, not {size}",
                    seg.id()
                ),
            ));
        }
    }
    writeln!(out, "{}", seg.id())?;
    Ok(0)
}

/// Every segment, for `ls`. A kernel without System V IPC has no
/// `/proc/sysvipc/shm`: that is an error when only segments were asked
/// for, and an empty list when POSIX objects are listed too.
pub fn list(only_sysv: bool) -> Result<Vec<SegmentInfo>> {
    match sysv::segments() {
        Ok(all) => Ok(all),
        Err(e) if !only_sysv && e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// The pids that have segment `id` attached, leaving out this process.
fn attachers(scan: &ProcessScan, id: i32) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut pids = scan.sysv_attachers(id);
    pids.retain(|&p| p != me);
    pids
}

/// `ipcs -m`'s status column: `dest` (removed, waiting for the last
/// detach), `locked` (SHM_LOCK), both, or `-`.
fn status(s: &SegmentInfo) -> &'static str {
    match (s.marked_for_removal, s.locked) {
        (true, true) => "dest locked",
        (true, false) => "dest",
        (false, true) => "locked",
        (false, false) => "-",
    }
}

/// Whether the process that created the segment still runs (see
/// [`shmkit::inventory::segment_creator_alive`]).
pub fn creator_alive(s: &SegmentInfo) -> bool {
    shmkit::inventory::segment_creator_alive(s)
}

/// A segment as `ls --json` and `stat --json` print it.
pub fn segment_json(scan: &ProcessScan, s: &SegmentInfo) -> Value {
    let attached_by = attachers(scan, s.id);
    json!({
        "kind": "sysv",
        "name": format!("id:{}", s.id),
        "id": s.id,
        "key": s.key.to_string(),
        "size": s.size,
        "mode": show::perms_json(s.mode),
        "uid": s.uid,
        "user": show::user(s.uid),
        "gid": s.gid,
        "group": show::group(s.gid),
        "cuid": s.cuid,
        "cgid": s.cgid,
        "cpid": s.cpid,
        "cpid_alive": creator_alive(s),
        "lpid": s.lpid,
        "nattch": s.nattch,
        "marked_for_removal": s.marked_for_removal,
        "locked": s.locked,
        "atime": show::rfc3339_or_null(s.atime),
        "dtime": show::rfc3339_or_null(s.dtime),
        "ctime": show::rfc3339_or_null(s.ctime),
        "rss": s.rss,
        "swap": s.swap,
        "attached_by": attached_by,
        // The same pids, under the name POSIX entries use, so scripts that
        // read `mapped_by` from every entry work on both kinds.
        "mapped_by": attached_by,
        // false when some processes could not be inspected: the lists may
        // miss attachers (nattch, from the kernel, is complete).
        "mapped_by_complete": scan.denied() == 0,
    })
}

/// A segment as a row of `ls` (see `show::LS_HEADER`).
pub fn segment_row(scan: &ProcessScan, s: &SegmentInfo) -> Vec<String> {
    vec![
        "sysv".to_string(),
        s.key.to_string(),
        s.id.to_string(),
        show::user(s.uid),
        show::perms(s.mode),
        s.size.to_string(),
        s.nattch.to_string(),
        status(s).to_string(),
        crate::commands::mapper_cells(scan, &attachers(scan, s.id)).1,
        show::rfc3339_or_never(s.ctime),
    ]
}

/// What the kernel records about `seg`: from `/proc/sysvipc/shm`, which
/// anyone may read and which also tells resident and swapped bytes, or
/// from `IPC_STAT` where /proc does not list it.
fn info_of(seg: &Segment) -> Result<SegmentInfo> {
    let listed = sysv::segments()
        .ok()
        .and_then(|all| all.into_iter().find(|s| s.id == seg.id()));
    match listed {
        Some(info) => Ok(info),
        None => Ok(seg.stat()?),
    }
}

/// `shmkit stat id:N` / `key:K`.
pub fn stat(out: &mut dyn Write, seg: &Segment, json: bool) -> Result<u8> {
    let info = info_of(seg)?;
    let scan = ProcessScan::new();
    if json {
        print_json(out, &segment_json(&scan, &info))?;
        return Ok(0);
    }
    let s = &info;
    let key = if s.marked_for_removal && s.key.is_private() {
        format!("{} (removed: the key was released)", s.key)
    } else if s.key.is_private() {
        format!("{} (IPC_PRIVATE)", s.key)
    } else {
        s.key.to_string()
    };
    let who = |uid: u32, gid: u32| {
        format!(
            "{} ({uid}), group {} ({gid})",
            show::user(uid),
            show::group(gid)
        )
    };
    let status = match (s.marked_for_removal, s.locked) {
        (false, false) => "-".to_string(),
        (dest, locked) => {
            let mut parts = Vec::new();
            if dest {
                parts.push("marked for removal (dest): freed at the last detach");
            }
            if locked {
                parts.push("locked in memory (locked)");
            }
            parts.join("; ")
        }
    };
    let bytes = |b: Option<u64>| b.map_or_else(|| "unknown".to_string(), human_bytes);
    let lines = [
        ("name", format!("id:{}", s.id)),
        ("kind", "sysv".to_string()),
        ("key", key),
        ("id", s.id.to_string()),
        ("size", format!("{} ({})", s.size, human_bytes(s.size))),
        ("mode", show::perms_json(s.mode)),
        ("owner", who(s.uid, s.gid)),
        ("creator", who(s.cuid, s.cgid)),
        (
            "creator pid",
            format!(
                "{} ({})",
                s.cpid,
                if creator_alive(s) {
                    "running"
                } else {
                    "not running"
                }
            ),
        ),
        (
            "last pid",
            if s.lpid == 0 {
                "- (never attached)".to_string()
            } else {
                format!("{} (last attach or detach)", s.lpid)
            },
        ),
        ("nattch", s.nattch.to_string()),
        (
            "attached by",
            crate::commands::mapper_cells(&scan, &attachers(&scan, s.id)).1,
        ),
        ("status", status),
        ("last attach", show::rfc3339_or_never(s.atime)),
        ("last detach", show::rfc3339_or_never(s.dtime)),
        ("changed", show::rfc3339_or_never(s.ctime)),
        ("resident", bytes(s.rss)),
        ("swapped", bytes(s.swap)),
    ];
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (key, value) in lines {
        writeln!(out, "{:<width$} {value}", format!("{key}:"))?;
    }
    if let Some(note) = crate::commands::denied_note(&scan) {
        writeln!(out, "{note}")?;
    }
    Ok(0)
}

/// `shmkit limits`: the kernel's System V limits, what segments use now,
/// and the size of `/dev/shm` (where POSIX objects live).
pub fn limits(out: &mut dyn Write, json: bool) -> Result<u8> {
    let lim = sysv::limits()?;
    let all = sysv::segments()?;
    let page = lim.page_size.max(1);
    let bytes_in_use = all.iter().fold(0u64, |sum, s| sum.saturating_add(s.size));
    let pages_in_use = all
        .iter()
        .fold(0u64, |sum, s| sum.saturating_add(s.size.div_ceil(page)));
    let dev_shm = rustix::fs::statvfs(SHM_DIR).ok().map(|v| {
        (
            v.f_blocks.saturating_mul(v.f_frsize),
            v.f_bavail.saturating_mul(v.f_frsize),
        )
    });
    if json {
        print_json(
            out,
            &json!({
                "shmmax": lim.shmmax,
                "shmall_pages": lim.shmall,
                "shmall_bytes": lim.shmall_bytes(),
                "shmmni": lim.shmmni,
                "page_size": lim.page_size,
                "segments_in_use": all.len(),
                "bytes_in_use": bytes_in_use,
                "pages_in_use": pages_in_use,
                "dev_shm_path": SHM_DIR,
                "dev_shm_size": dev_shm.map(|(size, _)| size),
                "dev_shm_free": dev_shm.map(|(_, free)| free),
            }),
        )?;
        return Ok(0);
    }
    let dev_shm = match dev_shm {
        Some((size, free)) => format!(
            "{} ({}), {} ({}) free; POSIX objects only, segments are not counted here",
            size,
            human_bytes(size),
            free,
            human_bytes(free)
        ),
        None => "not mounted".to_string(),
    };
    let lines = [
        (
            "shmmax",
            format!(
                "{} bytes ({}): the largest segment ({})",
                lim.shmmax,
                human_bytes(lim.shmmax),
                sysv::SHMMAX_PATH
            ),
        ),
        (
            "shmall",
            format!(
                "{} pages = {} bytes ({}): all segments together ({})",
                lim.shmall,
                lim.shmall_bytes(),
                human_bytes(lim.shmall_bytes()),
                sysv::SHMALL_PATH
            ),
        ),
        (
            "shmmni",
            format!("{} segments at most ({})", lim.shmmni, sysv::SHMMNI_PATH),
        ),
        ("page size", format!("{} bytes", lim.page_size)),
        (
            "in use",
            format!(
                "{} segments, {} bytes ({}) in {} pages",
                all.len(),
                bytes_in_use,
                human_bytes(bytes_in_use),
                pages_in_use
            ),
        ),
        (SHM_DIR, dev_shm),
    ];
    for (key, value) in lines {
        writeln!(out, "{:<10} {value}", format!("{key}:"))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ftok_specs() {
        let f = parse_ftok("/etc/hosts:1").unwrap();
        assert_eq!((f.path, f.proj), (PathBuf::from("/etc/hosts"), 1));
        assert_eq!(parse_ftok("/a:b:A").unwrap().proj, b'A');
        assert_eq!(parse_ftok("/a:0x41").unwrap().proj, 0x41);
        assert_eq!(parse_ftok("/a:255").unwrap().proj, 255);
        for bad in ["/a", ":1", "/a:", "/a:256", "/a:AB", "/a:é"] {
            assert!(parse_ftok(bad).is_err(), "{bad}");
        }
    }
}
