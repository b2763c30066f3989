//! `shmkit bridge ...`: runs `shmkit-bridge` (crate `shmkit-zenoh`), which
//! bridges channels, broadcasts and boards between hosts over Zenoh.
//!
//! The bridge is its own binary so that the default `shmkit` build does
//! not carry Zenoh (about 220 crates); this verb only finds and execs it.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::{bail, Result};

/// The bridge's binary name.
pub const BINARY: &str = "shmkit-bridge";

/// Where `shmkit-bridge` is: beside this executable, else on `PATH`.
fn locate() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(BINARY)));
    if let Some(path) = beside.filter(|p| p.is_file()) {
        return Some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(BINARY))
        .find(|p| p.is_file())
}

/// Replaces this process with `shmkit-bridge ARGS...`.
///
/// # Errors
/// When the bridge is not installed (with how to build it), or exec fails.
pub fn exec(args: &[String]) -> Result<u8> {
    let Some(binary) = locate() else {
        bail!(
            "shmkit bridge needs the {BINARY} binary beside shmkit or on PATH; build it with \
             `cargo build --release -p shmkit-zenoh` (or `cargo install --path crates/shmkit-zenoh`)"
        );
    };
    let err = std::process::Command::new(&binary).args(args).exec();
    bail!("cannot run {}: {err}", binary.display())
}
