//! `shmkit bridge` (issue 14): finds `shmkit-bridge` beside itself or on
//! PATH and execs it with the arguments; says how to build it otherwise.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// A copy of `shmkit` alone in a temporary directory (so whatever sits
/// beside the real one does not count).
fn lone_shmkit() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("shmkit");
    std::fs::copy(env!("CARGO_BIN_EXE_shmkit"), &exe).unwrap();
    (dir, exe)
}

#[test]
fn without_the_bridge_it_says_how_to_build_it() {
    let (dir, exe) = lone_shmkit();
    let out = Command::new(&exe)
        .args(["bridge", "export", "/x", "--key", "k"])
        .env("PATH", dir.path().join("nothing-here"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("shmkit-bridge") && err.contains("cargo build --release -p shmkit-zenoh"),
        "{err}"
    );
}

#[test]
fn it_execs_the_bridge_beside_it_with_every_argument() {
    let (dir, exe) = lone_shmkit();
    let fake = dir.path().join("shmkit-bridge");
    std::fs::write(&fake, "#!/bin/sh\necho \"bridge got: $*\"\nexit 7\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(&exe)
        .args(["bridge", "import", "k/**", "--into", "/y", "--help"])
        .env("PATH", dir.path().join("nothing-here"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "the bridge's own exit status");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "bridge got: import k/** --into /y --help\n"
    );
}
