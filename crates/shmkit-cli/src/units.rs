//! Parsing of the numbers people type: sizes with suffixes and octal modes.

use anyhow::{bail, Context, Result};

/// Parses a byte count: `200`, `4K`, `4KiB`, `1M`, `1GiB`, `2T`; `KB`, `MB`,
/// `GB` and `TB` are powers of 1000 (as coreutils reads them), everything
/// else powers of 1024. Case does not matter; `B` alone means bytes.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() {
        bail!("invalid size {text:?}: expected a number with an optional suffix such as 4K, 1M or 1GiB");
    }
    let n: u64 = digits
        .parse()
        .with_context(|| format!("invalid size {text:?}: the number is too large"))?;
    let multiplier: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => bail!(
            "invalid size {text:?}: unknown suffix {other:?} (use K, M, G, T, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
        ),
    };
    n.checked_mul(multiplier)
        .with_context(|| format!("invalid size {text:?}: too large"))
}

/// Parses permission bits written in octal: `600`, `0600`, `0o600`.
pub fn parse_mode(text: &str) -> Result<u32> {
    let t = text.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    let mode = u32::from_str_radix(digits, 8)
        .ok()
        .filter(|_| !digits.is_empty())
        .with_context(|| format!("invalid mode {text:?}: expected octal digits such as 0600"))?;
    if mode > 0o777 {
        bail!("invalid mode {text:?}: permission bits go up to 0777");
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("200").unwrap(), 200);
        assert_eq!(parse_size("4K").unwrap(), 4096);
        assert_eq!(parse_size("4k").unwrap(), 4096);
        assert_eq!(parse_size("1M").unwrap(), 1 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1 MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("2KB").unwrap(), 2000);
        assert_eq!(parse_size("1_000").unwrap(), 1000);
        for bad in [
            "",
            "K",
            "12Q",
            "-1",
            "1.5M",
            "99999999999999999999",
            "20000000T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("600").unwrap(), 0o600);
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("0o666").unwrap(), 0o666);
        for bad in ["", "8", "0x1", "1777", "rw"] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
    }
}
