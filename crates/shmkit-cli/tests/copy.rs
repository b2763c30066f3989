//! `shmkit cp` and `shmkit create --from`: bytes between files and shared
//! memory, both ways, with nothing half-written when a size does not fit
//! and structured objects refused unless `--force`.

mod common;

use std::path::Path;

use common::*;

fn file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

fn contents(obj: &TestObject) -> Vec<u8> {
    std::fs::read(obj.path()).unwrap()
}

#[test]
fn create_from_a_file_takes_its_size_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let src = file(dir.path(), "model.bin", b"weights \x00\x01\x02");
    let obj = TestObject::new("cp-from");
    ok(&["create", &obj.name, "--from", &src]);
    assert_eq!(contents(&obj), b"weights \x00\x01\x02");
    // Created means created: an existing object is not overwritten.
    let other = file(dir.path(), "other.bin", b"OTHER");
    fails(&["create", &obj.name, "--from", &other], &["File exists"]);
    assert_eq!(contents(&obj), b"weights \x00\x01\x02");

    let padded = TestObject::new("cp-from-size");
    ok(&["create", &padded.name, "--from", &src, "--size", "1K"]);
    let bytes = contents(&padded);
    assert_eq!(bytes.len(), 1024);
    assert!(bytes.starts_with(b"weights ") && bytes[11..].iter().all(|&b| b == 0));

    let short = TestObject::new("cp-from-short");
    fails(
        &["create", &short.name, "--from", &src, "--size", "4"],
        &[
            "holds more than the 4 bytes of --size",
            "nothing was created",
        ],
    );
    assert!(!short.exists());
    let missing = dir.path().join("missing");
    fails(
        &["create", &short.name, "--from", missing.to_str().unwrap()],
        &["No such file"],
    );
    assert!(!short.exists());
    // --from belongs to POSIX objects, and --size or --from is needed.
    assert_eq!(shmkit(&["create", &short.name]).status.code(), Some(2));
}

#[test]
fn cp_in_and_out_of_an_object() {
    let dir = tempfile::tempdir().unwrap();
    let src = file(dir.path(), "data", b"0123456789");
    let obj = TestObject::new("cp-in");
    // Absent: created with the file's size.
    ok(&["cp", &src, &obj.name]);
    assert_eq!(contents(&obj), b"0123456789");
    // Present: written from offset 0, the rest kept.
    let small = file(dir.path(), "small", b"ab");
    ok(&["cp", &small, &obj.name]);
    assert_eq!(contents(&obj), b"ab23456789");
    // Too long: refused before a byte is written.
    let big = file(dir.path(), "big", &[b'x'; 11]);
    fails(
        &["cp", &big, &obj.name],
        &[
            "holds more than the object's 10 bytes",
            "nothing was written",
        ],
    );
    assert_eq!(contents(&obj), b"ab23456789");
    // Standard input in, standard output and a file out.
    let out = shmkit_stdin(&["cp", "-", &obj.name], b"STDIN");
    assert!(out.status.success());
    assert_eq!(ok(&["cp", &obj.name, "-"]), b"STDIN56789");
    let back = dir.path().join("back");
    ok(&["cp", &obj.name, back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&back).unwrap(), b"STDIN56789");
    // shm:NAME for any name; a file in this directory is ./NAME.
    ok(&["cp", &format!("shm:{}", obj.bare()), back.to_str().unwrap()]);
    // No temporary file is left beside the copy.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
}

#[test]
fn cp_refuses_structured_objects_and_unclear_sides() {
    let dir = tempfile::tempdir().unwrap();
    let src = file(dir.path(), "data", b"raw bytes");
    let ch = TestObject::new("cp-chan");
    // The default channel: its parameters do not matter here.
    ok(&["chan", "create", &ch.name]);
    let before = contents(&ch);
    fails(
        &["cp", &src, &ch.name],
        &["it is a shmkit channel", "--force"],
    );
    assert!(
        contents(&ch) == before,
        "a refused copy wrote into the channel"
    );
    // Reading one out is harmless.
    assert_eq!(ok(&["cp", &ch.name, "-"]).len(), before.len());
    fails(
        &["cp", &ch.name, "/shmkit-test-other"],
        &["both shared memory"],
    );
    fails(
        &["cp", &src, "plain-file"],
        &["neither", "is shared memory"],
    );
}

#[test]
fn cp_in_and_out_of_a_system_v_segment() {
    let Some((key, id, _guard)) = sysv_segment(0x5f, "16") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = file(dir.path(), "data", b"segment!");
    ok(&["cp", &src, &format!("key:{key}")]);
    let out = ok(&["cp", &format!("id:{id}"), "-"]);
    assert_eq!(out.len(), 16);
    assert!(out.starts_with(b"segment!") && out[8..].iter().all(|&b| b == 0));
}
