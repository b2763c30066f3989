//! The POSIX object API: open flags, sizes, mappings and their protections.

use std::sync::atomic::{AtomicUsize, Ordering};

use shmkit::posix::{self, MapOptions, OpenOptions, PosixObject};
use shmkit::ErrorKind;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique object name, unlinked on drop even when the test fails.
struct Name(String);

impl Name {
    fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Name(format!("/shmkit-test-{}-{n}", std::process::id()))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = posix::unlink(&self.0);
    }
}

#[test]
fn create_flags_mirror_shm_open() {
    let name = Name::new();
    let e = PosixObject::open(&name.0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        format!("cannot open {}: No such file or directory", name.0)
    );

    let obj = PosixObject::create(&name.0, 100).unwrap();
    assert_eq!(obj.size().unwrap(), 100);
    assert_eq!(obj.metadata().unwrap().mode, 0o600);
    let e = PosixObject::create(&name.0, 100).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);

    // create without exclusivity opens the existing object as it is.
    obj.map().unwrap().write_at(0, b"keep").unwrap();
    let again = OpenOptions::new()
        .create(true)
        .size(999)
        .open(&name.0)
        .unwrap();
    assert_eq!(again.size().unwrap(), 100);
    assert_eq!(again.map().unwrap().read_vec(0, 4).unwrap(), b"keep");

    // truncate empties it, then the size option applies.
    let t = OpenOptions::new()
        .truncate(true)
        .size(10)
        .open(&name.0)
        .unwrap();
    assert_eq!(t.size().unwrap(), 10);
    assert_eq!(t.map().unwrap().read_vec(0, 4).unwrap(), [0; 4]);

    let e = OpenOptions::new()
        .write(false)
        .truncate(true)
        .open(&name.0)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn mode_is_exact_despite_the_umask() {
    let name = Name::new();
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0o077) };
    let obj = OpenOptions::new()
        .create_new(true)
        .mode(0o666)
        .size(1)
        .open(&name.0);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    assert_eq!(obj.unwrap().metadata().unwrap().mode, 0o666);
}

#[test]
fn read_only_mappings_cannot_be_written_through_the_safe_api() {
    let name = Name::new();
    PosixObject::create(&name.0, 4096).unwrap();
    let ro = PosixObject::open_read_only(&name.0).unwrap();
    let region = ro.map().unwrap();
    assert!(!region.is_writable());
    assert_eq!(
        region.write_at(0, b"x").unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
    assert_eq!(
        region.fill(0, 1, 0).unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
    assert_eq!(
        region.atomic_u32(0).unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
    assert_eq!(region.as_mut_ptr().unwrap_err().kind(), ErrorKind::ReadOnly);
    assert_eq!(region.load_u32(0, Ordering::Relaxed).unwrap(), 0);
    let e = ro.map_with(MapOptions::new().write(true)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ReadOnly);
    assert_eq!(ro.resize(1).unwrap_err().kind(), ErrorKind::ReadOnly);

    // A private copy-on-write view may be written; the object does not change.
    let private = ro
        .map_with(MapOptions::new().write(true).private(true))
        .unwrap();
    private.write_at(0, b"mine").unwrap();
    assert_eq!(private.read_vec(0, 4).unwrap(), b"mine");
    assert_eq!(region.read_vec(0, 4).unwrap(), [0; 4]);
}

#[test]
fn shared_mappings_see_each_other_and_ranges_are_checked() {
    let name = Name::new();
    let obj = PosixObject::create(&name.0, 3 * 4096 + 100).unwrap();
    let whole = obj.map().unwrap();
    // A range at an offset that is not page-aligned.
    let part = obj
        .map_with(MapOptions::new().offset(5000).len(300).write(true))
        .unwrap();
    assert_eq!(part.len(), 300);
    part.write_at(0, b"at 5000").unwrap();
    assert_eq!(whole.read_vec(5000, 7).unwrap(), b"at 5000");
    let e = part.write_at(295, b"too long").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);

    let e = obj
        .map_with(MapOptions::new().offset(12288).len(200))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(
        e.to_string()
            .contains("exceed the object's size of 12388 bytes"),
        "{e}"
    );
    assert!(obj
        .map_with(MapOptions::new().offset(u64::MAX).len(2))
        .is_err());
    // Mapping at the very end gives an empty region, not an mmap error.
    assert!(obj
        .map_with(MapOptions::new().offset(12388))
        .unwrap()
        .is_empty());
}

#[test]
fn resize_grows_and_shrinks() {
    let name = Name::new();
    let obj = PosixObject::create(&name.0, 8).unwrap();
    obj.map().unwrap().write_at(0, b"12345678").unwrap();
    obj.resize(1 << 20).unwrap();
    let md = obj.metadata().unwrap();
    assert_eq!(md.size, 1 << 20);
    assert_eq!(md.allocated, 1 << 20, "growth is reserved");
    assert_eq!(obj.map().unwrap().read_vec(0, 8).unwrap(), b"12345678");
    obj.resize(3).unwrap();
    assert_eq!(obj.map().unwrap().read_vec(0, 3).unwrap(), b"123");
}

#[test]
fn set_mode_and_unlink() {
    let name = Name::new();
    let obj = PosixObject::create(&name.0, 1).unwrap();
    obj.set_mode(0o644).unwrap();
    assert_eq!(obj.metadata().unwrap().mode, 0o644);
    assert_eq!(
        obj.set_mode(0o10000).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    obj.unlink().unwrap();
    assert_eq!(
        posix::unlink(&name.0).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // The open object still works after its name is gone.
    obj.map().unwrap().write_at(0, b"z").unwrap();
}
