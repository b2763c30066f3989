//! Parsing of the numbers people type: sizes with suffixes and octal modes.

use anyhow::{bail, Context, Result};

/// Parses a byte count: `200`, `4K`, `4KiB`, `1M`, `1.5M`, `1GiB`, `2T`;
/// `KB`, `MB`, `GB` and `TB` are powers of 1000 (as coreutils reads them),
/// everything else powers of 1024. Case does not matter; `B` alone means
/// bytes. A fraction must come to a whole number of bytes.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(t.len());
    let (digits, rest) = t.split_at(split);
    // A fraction: `1.5M`.
    let (fraction, suffix) = match rest.strip_prefix('.') {
        Some(after) => {
            let end = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            let (f, s) = after.split_at(end);
            if f.is_empty() || f.len() > 9 {
                bail!("invalid size {text:?}: expected digits after the point, such as 1.5M");
            }
            (Some(f), s)
        }
        None => (None, rest),
    };
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
    let whole = n
        .checked_mul(multiplier)
        .with_context(|| format!("invalid size {text:?}: too large"))?;
    let Some(fraction) = fraction else {
        return Ok(whole);
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let part = u128::from(fraction.parse::<u64>().unwrap_or(0)) * u128::from(multiplier);
    if part % scale != 0 {
        bail!("invalid size {text:?}: not a whole number of bytes");
    }
    whole
        .checked_add((part / scale) as u64)
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
        assert_eq!(parse_size("1.5M").unwrap(), 3 << 19);
        assert_eq!(parse_size("0.5K").unwrap(), 512);
        assert_eq!(parse_size("2.25 KiB").unwrap(), 2304);
        assert_eq!(parse_size("1.5KB").unwrap(), 1500);
        for bad in [
            "",
            "K",
            "12Q",
            "-1",
            "1.5",
            "1.M",
            "1.0001K",
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
