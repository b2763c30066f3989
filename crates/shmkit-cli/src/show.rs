//! Output formatting: tables, times, hex dumps.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// RFC 3339 in UTC with whole seconds: `2026-11-22T20:04:17Z`.
///
/// Any time at all: file times and header words are set by whoever wants
/// to (`touch -d @300000000000`), and RFC 3339 only has years 0000 to 9999
/// (humantime's formatter panics past them). A year outside that range is
/// written as ISO 8601's expanded years are, signed: `+11476-08-15T…Z`.
pub fn rfc3339(t: SystemTime) -> String {
    // Whole seconds since the epoch, rounded down (also before it).
    let secs: i128 = match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::from(after.as_secs()),
        Err(before) => {
            let d = before.duration();
            -i128::from(d.as_secs()) - i128::from(d.subsec_nanos() > 0)
        }
    };
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let second_of_day = secs.rem_euclid(86_400);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+05}")
    };
    format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// The proleptic Gregorian (year, month, day) of a day counted from
/// 1970-01-01: Howard Hinnant's `civil_from_days`, over i128 so that no
/// `SystemTime` overflows it.
fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z.div_euclid(146_097); // 400-year eras
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

/// RFC 3339 for JSON, or null for a time that never happened.
pub fn rfc3339_or_null(t: Option<SystemTime>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| rfc3339(t).into())
}

/// RFC 3339, or `never`.
pub fn rfc3339_or_never(t: Option<SystemTime>) -> String {
    t.map_or_else(|| "never".to_string(), rfc3339)
}

/// A name as `ls -b` shows it: control characters and backslashes escaped
/// (`\n`, `\t`, `\033`, `\\`), everything else as it is. Anyone can name
/// a file in /dev/shm, so a name must never move the cursor, recolour the
/// terminal or start a table row of its own.
pub fn escape_name(text: &str) -> String {
    escape(text, true)
}

/// A message with its control characters escaped as [`escape_name`] does,
/// backslashes left alone: for error messages that quote a name.
pub fn escape_controls(text: &str) -> String {
    escape(text, false)
}

fn escape(text: &str, backslash: bool) -> String {
    if !text
        .chars()
        .any(|c| c.is_control() || (backslash && c == '\\'))
    {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' if backslash => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:03o}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `key: value` lines as `stat` prints them, values escaped as names are
/// (a value may quote a name anyone chose).
pub fn key_values(out: &mut dyn Write, lines: &[(&str, String)]) -> io::Result<()> {
    for (key, value) in lines {
        writeln!(out, "{:<10} {}", format!("{key}:"), escape_name(value))?;
    }
    Ok(())
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

thread_local! {
    /// Names looked up so far: the user database is a file parsed on every
    /// call, and a listing of 10,000 objects would parse it 20,000 times.
    static NAMES: std::cell::RefCell<std::collections::HashMap<(bool, u32), String>> =
        Default::default();
}

fn cached_name(group: bool, id: u32, look_up: fn(u32) -> Option<String>) -> String {
    NAMES.with(|names| {
        names
            .borrow_mut()
            .entry((group, id))
            .or_insert_with(|| look_up(id).unwrap_or_else(|| id.to_string()))
            .clone()
    })
}

/// A user name, or the number when the user database does not know it.
pub fn user(uid: u32) -> String {
    cached_name(false, uid, shmkit::inventory::user_name)
}

/// A group name, or the number when the group database does not know it.
pub fn group(gid: u32) -> String {
    cached_name(true, gid, shmkit::inventory::group_name)
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
    // A cell with a newline or an escape sequence would break the table
    // (a name shown as two rows) or reach the terminal raw.
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| escape_name(c)).collect())
        .collect();
    let rows = &rows[..];
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
    fn any_time_is_written_without_a_panic() {
        use std::time::Duration;
        let at = |secs: i64| crate::show::rfc3339(shmkit_time(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(at(253_402_300_800), "+10000-01-01T00:00:00Z");
        assert_eq!(at(300_000_000_000), "+11476-08-15T05:20:00Z");
        assert_eq!(at(-1), "1969-12-31T23:59:59Z");
        assert_eq!(at(-62_167_219_200), "0000-01-01T00:00:00Z");
        assert_eq!(at(-62_167_219_201), "-0001-12-31T23:59:59Z");
        // The extremes a timespec holds.
        assert!(at(i64::MAX).starts_with('+'));
        assert!(at(i64::MIN).starts_with('-'));
        // A sub-second time before the epoch rounds down, as `date` does.
        let t = std::time::UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(crate::show::rfc3339(t), "1969-12-31T23:59:59Z");
        // Agrees with humantime wherever humantime can answer.
        for secs in (0..253_402_300_800_i64).step_by(7_777_777_777) {
            assert_eq!(
                at(secs),
                humantime::format_rfc3339_seconds(shmkit_time(secs)).to_string()
            );
        }
    }

    fn shmkit_time(secs: i64) -> std::time::SystemTime {
        use std::time::{Duration, UNIX_EPOCH};
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        }
    }

    #[test]
    fn control_characters_are_escaped_as_ls_b_does() {
        assert_eq!(escape_name("plain name"), "plain name");
        assert_eq!(escape_name("two\nrows"), "two\\nrows");
        assert_eq!(escape_name("\u{1b}[31mred"), "\\033[31mred");
        assert_eq!(escape_name("a\\b\tc\u{7f}"), "a\\\\b\\tc\\177");
        assert_eq!(escape_name("caf\u{e9}"), "caf\u{e9}");
        assert_eq!(escape_controls("a\\b\u{1b}"), "a\\b\\033");
    }

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
