//! A full /dev/shm: creating a channel, broadcast or object that does not
//! fit fails with how much was needed, how much is free, and (for channels
//! and broadcasts) which flags make it smaller; nothing half-made is left.
//! Runs in a mount namespace of its own with a 1 MiB tmpfs on /dev/shm
//! (`unshare -m`, as root); skipped, saying why, where that is not allowed.

mod common;

use std::process::Command;

use common::*;

/// Runs `script` (sh) with `$B` the shmkit binary, in a new mount
/// namespace whose /dev/shm is a 1 MiB tmpfs; None where that cannot be.
fn in_small_shm(script: &str) -> Option<(String, String)> {
    if !is_root() {
        eprintln!("skipping: a tmpfs of our own on /dev/shm needs root");
        return None;
    }
    let full = format!("mount -t tmpfs -o size=1M shmkit-test /dev/shm || exit 99\n{script}");
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &full])
        .env("B", env!("CARGO_BIN_EXE_shmkit"))
        .output();
    let out = match out {
        Ok(out) if out.status.code() != Some(99) && out.status.success() => out,
        Ok(out) => {
            eprintln!(
                "skipping: no mount namespace with a small /dev/shm here: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        Err(e) => {
            eprintln!("skipping: unshare: {e}");
            return None;
        }
    };
    Some((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn a_full_dev_shm_says_what_was_needed_and_what_to_change() {
    let Some((out, err)) = in_small_shm(
        "$B create /filler --size 600K || exit 1
         $B chan create /chan --capacity 512 --max-msg 1024 && exit 2
         $B pub /cast --count 1 --capacity 512 --max-msg 1024 && exit 3
         $B create /huge --size 2M && exit 4
         ls /dev/shm",
    ) else {
        return;
    };
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    for line in &lines[..2] {
        assert!(
            line.contains("No space left on device")
                && line.contains("needed;")
                && line.contains("free of 1.0 MiB")
                && line.contains("--capacity or --max-msg"),
            "{line}"
        );
    }
    assert!(lines[0].contains("cannot create /chan") && lines[0].contains("(561920 bytes) needed"));
    assert!(lines[1].contains("cannot create /cast"));
    assert!(
        lines[2].contains("cannot create /huge")
            && lines[2].contains("larger than the whole filesystem"),
        "{}",
        lines[2]
    );
    // Nothing half-made is left: only the filler.
    assert_eq!(out, "filler\n");
}
