//! `shmkit completions` and `shmkit man`, generated from the parser's own
//! definitions.

mod common;

use common::*;

#[test]
fn every_shell_gets_completions_that_know_the_verbs() {
    for shell in ["bash", "zsh", "fish"] {
        let script = String::from_utf8(ok(&["completions", shell])).unwrap();
        for verb in ["gc", "top", "ls", "consume", "older-than"] {
            assert!(script.contains(verb), "{shell} completions lack {verb}");
        }
    }
    let out = shmkit(&["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_pages_are_written_for_the_tool_and_each_verb() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let said = String::from_utf8(ok(&["man", "--dir", d])).unwrap();
    assert!(said.starts_with("wrote "), "{said}");
    for page in [
        "shmkit.1",
        "shmkit-gc.1",
        "shmkit-ls.1",
        "shmkit-top.1",
        "shmkit-chan.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page} is a man page");
    }
    let gc = std::fs::read_to_string(dir.path().join("shmkit-gc.1")).unwrap();
    assert!(gc.contains("older\\-than"), "{gc}");
    assert!(
        !dir.path().join("shmkit-bench-child.1").exists(),
        "hidden verbs get no page"
    );
    let main = String::from_utf8(ok(&["man"])).unwrap();
    assert!(main.contains(".TH shmkit"), "{main}");
}
