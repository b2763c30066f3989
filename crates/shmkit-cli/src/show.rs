//! Output formatting: tables, times, hex dumps.

use std::io::{self, Write};
use std::time::SystemTime;

/// RFC 3339 in UTC with whole seconds: `2026-11-22T20:04:17Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// RFC 3339 for JSON, or null for a time that never happened.
pub fn rfc3339_or_null(t: Option<SystemTime>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| rfc3339(t).into())
}

/// RFC 3339, or `never`.
pub fn rfc3339_or_never(t: Option<SystemTime>) -> String {
    t.map_or_else(|| "never".to_string(), rfc3339)
}

/// The columns of `shmkit ls`, for POSIX objects and System V segments
/// alike. The first ones are `ipcs -m`'s (key, shmid, owner, perms, bytes,
/// nattch, status); a POSIX object shows its name for the key, `-` for the
/// id, and the number of processes that map it for NATTCH. CHANGED is a
/// POSIX object's mtime and a segment's ctime (creation or last chmod/chown).
pub const LS_HEADER: [&str; 10] = [
    "KIND",
    "NAME/KEY",
    "ID",
    "OWNER",
    "PERMS",
    "BYTES",
    "NATTCH",
    "STATUS",
    "MAPPED-BY",
    "CHANGED",
];

/// Permission bits the way `ipcs` and `ls -l` users read them: `600`.
pub fn perms(mode: u32) -> String {
    format!("{:o}", mode & 0o777)
}

/// Permission bits for JSON: always four octal digits, `0600`.
pub fn perms_json(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// A user name, or the number when the user database does not know it.
pub fn user(uid: u32) -> String {
    shmkit::inventory::user_name(uid).unwrap_or_else(|| uid.to_string())
}

/// A group name, or the number when the group database does not know it.
pub fn group(gid: u32) -> String {
    shmkit::inventory::group_name(gid).unwrap_or_else(|| gid.to_string())
}

/// A comma-separated pid list, or `-` when empty.
pub fn pid_list(pids: &[i32]) -> String {
    if pids.is_empty() {
        "-".to_string()
    } else {
        pids.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Writes rows as left-aligned columns separated by two spaces; the last
/// column is not padded.
pub fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Hex dump lines in the `hexdump -C` shape: 16 bytes a line, offset first
/// (counted from `start`), then hex, then printable ASCII. The closing line
/// with the end offset is the caller's (see `hex_end`), so a long range can
/// be dumped in chunks that are multiples of 16 bytes.
pub fn hex_lines(out: &mut dyn Write, start: u64, bytes: &[u8]) -> io::Result<()> {
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let mut hex = String::with_capacity(50);
        for j in 0..16 {
            match chunk.get(j) {
                Some(b) => hex.push_str(&format!("{b:02x} ")),
                None => hex.push_str("   "),
            }
            if j == 7 {
                hex.push(' ');
            }
        }
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        writeln!(out, "{:08x}  {hex} |{ascii}|", start + (i as u64) * 16)?;
    }
    Ok(())
}

/// The closing line of a hex dump: the offset just past the last byte.
pub fn hex_end(out: &mut dyn Write, end: u64) -> io::Result<()> {
    writeln!(out, "{end:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_matches_hexdump_c() {
        let mut out = Vec::new();
        hex_lines(&mut out, 0, b"Hello, world!\n\0\x01ABC").unwrap();
        hex_end(&mut out, 19).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "00000000  48 65 6c 6c 6f 2c 20 77  6f 72 6c 64 21 0a 00 01  |Hello, world!...|\n\
             00000010  41 42 43                                          |ABC|\n\
             00000013\n"
        );
    }
}
