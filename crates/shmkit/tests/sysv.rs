//! The System V segment API against the real kernel, `ipcmk`, `ipcs` and a C
//! program.
//!
//! Every segment a test makes is owned by a [`Cleanup`] guard that removes it
//! on drop, so a failing test leaves nothing behind; keys are unique per
//! process and made with exclusive creation, so tests (and other test
//! processes) can run in parallel.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use shmkit::sysv::{self, Key, Segment, SegmentInfo};
use shmkit::ErrorKind;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `fork` copies every attachment of the process into the child until it
/// execs or exits, so a test that starts a process can briefly raise the
/// attachment counts, and delay the destruction, that another test checks.
/// Tests that start processes hold this for writing; tests that count
/// attachments hold it for reading.
static ATTACHMENTS: RwLock<()> = RwLock::new(());

fn counting_attachments() -> RwLockReadGuard<'static, ()> {
    ATTACHMENTS.read().unwrap_or_else(|e| e.into_inner())
}

fn starting_processes() -> RwLockWriteGuard<'static, ()> {
    ATTACHMENTS.write().unwrap_or_else(|e| e.into_inner())
}

/// A key nobody else is likely to use: a fixed tag, the pid, a counter.
fn unique_key() -> Key {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    Key::new((0x5d00_0000 | ((pid & 0xfff) << 12) | (n & 0xfff)) as i32)
}

/// Removes a segment with `IPC_RMID` on drop, but only if the id still names
/// the segment it was made for (same creator pid and ctime), so a reused id
/// is never someone else's loss.
struct Cleanup {
    id: i32,
    cpid: i32,
    ctime: libc::time_t,
}

impl Cleanup {
    fn new(id: i32) -> Self {
        let ds = raw_stat(id).expect("the segment to guard exists");
        Cleanup {
            id,
            cpid: ds.shm_cpid,
            ctime: ds.shm_ctime,
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(ds) = raw_stat(self.id) {
            if ds.shm_cpid == self.cpid && ds.shm_ctime == self.ctime {
                // SAFETY: IPC_RMID reads no buffer.
                unsafe { libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut()) };
            }
        }
    }
}

/// IPC_STAT straight from libc, independent of the code under test.
fn raw_stat(id: i32) -> Option<libc::shmid_ds> {
    // SAFETY: shmid_ds is plain integers; zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a live shmid_ds for IPC_STAT to fill.
    let rc = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) };
    (rc == 0).then_some(ds)
}

/// A new segment with a unique key, and its guard.
fn fresh(size: u64, mode: u32) -> (Segment, Cleanup) {
    for _ in 0..64 {
        match Segment::create_exclusive(unique_key(), size, mode) {
            Ok(seg) => {
                let guard = Cleanup::new(seg.id());
                return (seg, guard);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("create: {e}"),
        }
    }
    panic!("no free key found");
}

fn listed(id: i32) -> Option<SegmentInfo> {
    sysv::segments().unwrap().into_iter().find(|s| s.id == id)
}

/// A private directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("shmkit-sysv-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

#[test]
fn two_attachments_see_each_others_writes() {
    let (seg, _guard) = fresh(10_000, 0o600);
    let a = seg.attach().unwrap();
    let b = seg.attach().unwrap();
    // The region is exactly the segment's size, not rounded to pages.
    assert_eq!(a.len(), 10_000);
    assert!(a.is_writable());
    assert_eq!(a.object(), format!("id:{}", seg.id()));
    assert_eq!(
        b.read_vec(0, 16).unwrap(),
        [0; 16],
        "new segments are zeroed"
    );

    a.write_at(0, b"hello from a").unwrap();
    b.write_at(9_990, b"tail of b!").unwrap();
    assert_eq!(b.read_vec(0, 12).unwrap(), b"hello from a");
    assert_eq!(a.read_vec(9_990, 10).unwrap(), b"tail of b!");
    let e = a.write_at(9_995, b"0123456789").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);

    // Opening the key, or creating without exclusivity, finds the same one.
    let opened = Segment::open(seg.key()).unwrap();
    assert_eq!(opened.id(), seg.id());
    let again = Segment::create(seg.key(), 100, 0o600).unwrap();
    assert_eq!(again.id(), seg.id());
    assert_eq!(opened.attach().unwrap().read_vec(0, 5).unwrap(), b"hello");

    // ...but not when it is smaller than asked for: EINVAL, explained.
    let e = Segment::create(seg.key(), 20_000, 0o600).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("cannot create key:{}", seg.key())),
        "{msg}"
    );
    assert!(
        msg.contains("already exists") && msg.contains("10000 bytes"),
        "{msg}"
    );
}

#[test]
fn read_only_attachment_refuses_writes() {
    let (seg, _guard) = fresh(4096, 0o644);
    let rw = seg.attach().unwrap();
    rw.write_at(100, b"visible").unwrap();
    let ro = seg.attach_read_only().unwrap();
    assert!(!ro.is_writable());
    assert_eq!(ro.len(), 4096);
    assert_eq!(ro.read_vec(100, 7).unwrap(), b"visible");
    let e = ro.write_at(0, b"x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ReadOnly);
    assert_eq!(ro.fill(0, 1, 0).unwrap_err().kind(), ErrorKind::ReadOnly);
    assert!(ro.as_mut_ptr().is_err());
    assert_eq!(ro.read_vec(0, 1).unwrap(), [0]);
}

#[test]
fn exclusive_create_of_a_taken_key_fails() {
    let (seg, _guard) = fresh(4096, 0o600);
    let e = Segment::create_exclusive(seg.key(), 4096, 0o600).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(e.operation(), "create");
    assert_eq!(e.object(), format!("key:{}", seg.key()));
    assert!(e.to_string().contains("File exists"), "{e}");
}

#[test]
fn private_key_always_makes_a_new_segment() {
    let one = Segment::create(Key::PRIVATE, 4096, 0o600).unwrap();
    let _g1 = Cleanup::new(one.id());
    let two = Segment::create_exclusive(Key::PRIVATE, 4096, 0o600).unwrap();
    let _g2 = Cleanup::new(two.id());
    assert_ne!(one.id(), two.id());
    assert_eq!(one.stat().unwrap().key, Key::PRIVATE);
    let e = Segment::open(Key::PRIVATE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    // from_id reads the key back from the kernel.
    let by_id = Segment::from_id(two.id()).unwrap();
    assert_eq!(by_id, two);
}

#[test]
fn bad_sizes_and_modes_are_explained() {
    let key = unique_key();
    let e = Segment::create(key, 0, 0o600).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("at least 1 byte"), "{e}");
    let e = Segment::create(Key::PRIVATE, 0, 0o600).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);

    let limits = sysv::limits().unwrap();
    assert!(limits.shmmax > 0 && limits.shmmni > 0 && limits.page_size >= 4096);
    let too_big = limits.shmmax + 1;
    let e = Segment::create(key, too_big, 0o600).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{too_big} bytes exceed shmmax")),
        "{msg}"
    );
    assert!(msg.contains(&limits.shmmax.to_string()), "{msg}");
    assert!(msg.contains("/proc/sys/kernel/shmmax"), "{msg}");
    let e = Segment::create_exclusive(Key::PRIVATE, u64::MAX, 0o600).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");

    let e = Segment::create(key, 4096, 0o4600).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    // None of that left a segment behind.
    let e = Segment::open(key).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("no segment has this key"), "{e}");

    let e = Segment::from_id(i32::MAX).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.object(), format!("id:{}", i32::MAX));
}

#[test]
fn stat_reports_creator_attachments_and_times() {
    let _counting = counting_attachments();
    let (seg, _guard) = fresh(12_345, 0o640);
    let pid = std::process::id() as i32;
    let info = seg.stat().unwrap();
    assert_eq!(info.id, seg.id());
    assert_eq!(info.key, seg.key());
    assert_eq!(info.size, 12_345);
    assert_eq!(info.mode, 0o640);
    assert_eq!((info.uid, info.cuid), (euid(), euid()));
    assert_eq!(info.cpid, pid);
    assert_eq!(info.lpid, 0);
    assert_eq!(info.nattch, 0);
    assert_eq!((info.atime, info.dtime), (None, None));
    assert!(info.ctime.is_some());
    assert!(!info.marked_for_removal && !info.locked);
    assert_eq!((info.rss, info.swap), (None, None));
    assert_eq!(seg.size().unwrap(), 12_345);

    let a = seg.attach().unwrap();
    let b = seg.attach_read_only().unwrap();
    let info = seg.stat().unwrap();
    assert_eq!(info.nattch, 2);
    assert_eq!(info.lpid, pid);
    assert!(info.atime.is_some());
    assert_eq!(info.dtime, None);
    drop(b);
    let info = seg.stat().unwrap();
    assert_eq!(info.nattch, 1);
    assert!(info.dtime.is_some());

    // /proc/sysvipc/shm says the same, plus memory use.
    a.fill(0, 12_345, 1).unwrap();
    let listed = listed(seg.id()).expect("listed");
    assert_eq!(
        (listed.key, listed.size, listed.mode, listed.nattch),
        (seg.key(), 12_345, 0o640, 1)
    );
    assert_eq!((listed.cpid, listed.lpid, listed.cuid), (pid, pid, euid()));
    assert_eq!(listed.ctime, info.ctime);
    assert!(listed.rss.unwrap() >= 12_345, "{listed:?}");
}

#[test]
fn locked_flag_is_reported() {
    let (seg, _guard) = fresh(4096, 0o600);
    // SAFETY: SHM_LOCK reads no buffer.
    let rc = unsafe { libc::shmctl(seg.id(), libc::SHM_LOCK, std::ptr::null_mut()) };
    if rc != 0 {
        eprintln!(
            "skipping: SHM_LOCK failed: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    assert!(seg.stat().unwrap().locked);
    assert!(listed(seg.id()).unwrap().locked);
    // SAFETY: as above.
    unsafe { libc::shmctl(seg.id(), libc::SHM_UNLOCK, std::ptr::null_mut()) };
    assert!(!seg.stat().unwrap().locked);
}

#[test]
fn removal_frees_the_key_at_once_and_the_memory_at_last_detach() {
    let _counting = counting_attachments();
    let (seg, _guard) = fresh(4096, 0o600);
    let key = seg.key();
    let region = seg.attach().unwrap();
    region.write_at(0, b"still here").unwrap();

    seg.remove().unwrap();
    let info = seg.stat().unwrap();
    assert!(info.marked_for_removal);
    assert_eq!(info.key, Key::PRIVATE, "a removed segment shows key 0");
    assert_eq!(info.nattch, 1);
    let listed_info = listed(seg.id()).expect("still listed while attached");
    assert!(listed_info.marked_for_removal);
    assert_eq!(listed_info.key, Key::PRIVATE);

    // The key is free: it names nothing, and a new segment can take it.
    assert_eq!(Segment::open(key).unwrap_err().kind(), ErrorKind::NotFound);
    let successor = Segment::create_exclusive(key, 4096, 0o600).unwrap();
    let _successor_guard = Cleanup::new(successor.id());
    assert_ne!(successor.id(), seg.id());

    // The memory lives on for the attachment.
    assert_eq!(region.read_vec(0, 10).unwrap(), b"still here");
    region.write_at(0, b"and writab").unwrap();
    assert_eq!(region.read_vec(0, 10).unwrap(), b"and writab");

    drop(region);
    let e = seg.stat().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(
        Segment::from_id(seg.id()).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(listed(seg.id()).is_none());
    assert_eq!(seg.remove().unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(seg.attach().unwrap_err().kind(), ErrorKind::NotFound);
    successor.remove().unwrap();
}

#[test]
fn set_mode_and_owner() {
    let (seg, _guard) = fresh(4096, 0o600);
    seg.set_mode(0o640).unwrap();
    assert_eq!(seg.stat().unwrap().mode, 0o640);
    seg.set_mode(0o404).unwrap();
    let info = seg.stat().unwrap();
    assert_eq!(info.mode, 0o404);
    assert_eq!(listed(seg.id()).unwrap().mode, 0o404);
    let e = seg.set_mode(0o1777).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(e.operation(), "chmod");

    // The status bits survive a mode change.
    let region = seg.attach_read_only().unwrap();
    seg.remove().unwrap();
    seg.set_mode(0o600).unwrap();
    let info = seg.stat().unwrap();
    assert_eq!(info.mode, 0o600);
    assert!(info.marked_for_removal);
    drop(region);

    let (seg, _guard) = fresh(4096, 0o600);
    if euid() != 0 {
        // The owner may give the segment away; the creator keeps control.
        seg.set_owner(Some(1), None).unwrap();
        assert_eq!(seg.stat().unwrap().uid, 1);
        seg.set_owner(Some(euid()), None).unwrap();
        assert_eq!(seg.stat().unwrap().uid, euid());
        return;
    }
    seg.set_owner(Some(65534), None).unwrap();
    let info = seg.stat().unwrap();
    assert_eq!((info.uid, info.gid), (65534, 0));
    seg.set_owner(None, Some(65534)).unwrap();
    let info = seg.stat().unwrap();
    assert_eq!((info.uid, info.gid), (65534, 65534));
    assert_eq!((info.cuid, info.cgid), (0, 0), "the creator never changes");
    let e = seg.set_owner(Some(u32::MAX), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("not valid"), "{e}");
}

/// The helper half of `read_write_attach_needs_write_permission`: run by
/// that test as another user, with the segment id in the environment; a
/// no-op in a normal run.
#[test]
fn child_attach_as_other_user() {
    let Ok(id) = std::env::var("SHMKIT_TEST_SHMID") else {
        return;
    };
    let seg = Segment::from_id(id.parse().unwrap()).unwrap();
    let e = seg.attach().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("read and write permission") && msg.contains("read-only"),
        "{msg}"
    );
    let ro = seg.attach_read_only().unwrap();
    assert_eq!(ro.read_vec(0, 6).unwrap(), b"shared");
}

#[test]
fn read_write_attach_needs_write_permission() {
    if euid() != 0 {
        // Our own segment with mode r--: we may read it only.
        let (seg, _guard) = fresh(4096, 0o400);
        let e = seg.attach().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("read-only"), "{e}");
        seg.attach_read_only().unwrap();
        return;
    }
    // Root passes every permission check: ask another user to try.
    let (seg, _guard) = fresh(4096, 0o644);
    seg.attach().unwrap().write_at(0, b"shared").unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = {
        use std::os::unix::process::CommandExt;
        let _spawning = starting_processes();
        Command::new(&exe)
            .args([
                "--exact",
                "child_attach_as_other_user",
                "--test-threads=1",
                "--nocapture",
            ])
            .env("SHMKIT_TEST_SHMID", seg.id().to_string())
            .uid(65534)
            .gid(65534)
            .output()
    };
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipping: cannot run the test binary as nobody: {e}");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "child failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn segment_made_by_ipcmk_is_listed() {
    let _spawning = starting_processes();
    let Ok(out) = Command::new("ipcmk")
        .args(["-M", "4096", "-p", "0640"])
        .output()
    else {
        eprintln!("skipping: ipcmk is not installed");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "ipcmk: {text}");
    // "Shared memory id: 5"
    let id: i32 = text
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no id in {text:?}"));
    let _guard = Cleanup::new(id);

    let info = listed(id).expect("the ipcmk segment is listed");
    assert_eq!(info.size, 4096);
    assert_eq!(info.mode, 0o640);
    assert_eq!(info.nattch, 0);
    assert!(!info.marked_for_removal);
    let seg = Segment::from_id(id).unwrap();
    assert_eq!(seg.key(), info.key);
    assert_eq!(seg.stat().unwrap().key, info.key);
    assert_eq!(Segment::open(info.key).unwrap().id(), id);

    // ipcs prints the same key the same way (0x%08x).
    let ipcs = Command::new("ipcs").arg("-m").output().unwrap();
    let ipcs = String::from_utf8_lossy(&ipcs.stdout);
    let line = ipcs
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(&id.to_string()))
        .unwrap_or_else(|| panic!("id {id} not in ipcs:\n{ipcs}"));
    assert_eq!(line.split_whitespace().next(), Some(&*info.key.to_string()));
    assert_eq!(Key::parse(&info.key.to_string()).unwrap(), info.key);
}

const C_SOURCE: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/shm.h>

/* usage: prog PATH PROJ SIZE: makes a segment keyed by ftok(PATH, PROJ),
   fills byte i with (i * 7 + 3) & 0xff, detaches and exits. */
int main(int argc, char **argv) {
    if (argc != 4) return 1;
    key_t key = ftok(argv[1], atoi(argv[2]));
    if (key == -1) { perror("ftok"); return 1; }
    size_t size = strtoul(argv[3], NULL, 10);
    int id = shmget(key, size, IPC_CREAT | IPC_EXCL | 0600);
    if (id == -1) { perror("shmget"); return errno == EEXIST ? 3 : 1; }
    printf("id=%d key=%d\n", id, key);
    fflush(stdout);
    unsigned char *p = shmat(id, NULL, 0);
    if (p == (void *)-1) { perror("shmat"); return 1; }
    for (size_t i = 0; i < size; i++) p[i] = (unsigned char)(i * 7 + 3);
    if (shmdt(p) == -1) { perror("shmdt"); return 1; }
    printf("done\n");
    return 0;
}
"#;

fn compile_c(dir: &Path, name: &str, source: &str) -> Option<PathBuf> {
    if Command::new("gcc").arg("--version").output().is_err() {
        eprintln!("skipping: gcc is not installed");
        return None;
    }
    let src = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&src, source).unwrap();
    let out = Command::new("gcc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(exe)
}

#[test]
fn segment_made_by_a_c_program_is_seen_with_its_ftok_key() {
    let _spawning = starting_processes();
    let dir = TempDir::new();
    let Some(exe) = compile_c(&dir.0, "sysv_writer", C_SOURCE) else {
        return;
    };
    let key_file = dir.0.join("key-file");
    std::fs::write(&key_file, b"ftok needs an existing file").unwrap();
    const SIZE: usize = 5000;

    // Another process's segment may hold the same key (ftok collides): the
    // C program then exits 3 and we try the next project byte.
    for proj in [b'S', b'T', b'U', b'V', 1, 2, 3] {
        let child = Command::new(&exe)
            .arg(&key_file)
            .arg(proj.to_string())
            .arg(SIZE.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let child_pid = child.id() as i32;
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.code() == Some(3) {
            continue;
        }
        // Guard the segment before asserting anything else.
        let field = |name: &str| -> Option<i32> {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .and_then(|v| v.parse().ok())
        };
        let id = field("id=").unwrap_or_else(|| panic!("no id from the C program: {text:?}"));
        let _guard = Cleanup::new(id);
        assert!(out.status.success() && text.contains("done"), "{text}");

        let key = Key::ftok(&key_file, proj).unwrap();
        assert_eq!(Some(key.raw()), field("key="), "same ftok key as C");
        let seg = Segment::open(key).unwrap();
        assert_eq!(seg.id(), id);
        let info = seg.stat().unwrap();
        assert_eq!(info.key, key);
        assert_eq!(info.size, SIZE as u64);
        assert_eq!(info.cpid, child_pid);
        assert_eq!(info.lpid, child_pid);
        assert_eq!(info.nattch, 0);
        assert!(info.atime.is_some() && info.dtime.is_some());
        assert_eq!(listed(id).unwrap().key, key);

        let region = seg.attach_read_only().unwrap();
        assert_eq!(region.len(), SIZE);
        let bytes = region.read_vec(0, SIZE).unwrap();
        let expected: Vec<u8> = (0..SIZE).map(|i| (i * 7 + 3) as u8).collect();
        assert!(bytes == expected, "bytes differ from the C program's");
        return;
    }
    panic!("every ftok key was taken");
}

#[test]
fn ftok_needs_an_existing_file() {
    let dir = TempDir::new();
    let path = dir.0.join("absent");
    let e = Key::ftok(&path, b'x').unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
    std::fs::write(&path, b"").unwrap();
    let key = Key::ftok(&path, b'x').unwrap();
    assert_eq!(Key::ftok(&path, b'x').unwrap(), key, "stable");
    assert_ne!(Key::ftok(&path, b'y').unwrap(), key, "proj_id counts");
    assert_eq!((key.raw() as u32) >> 24, u32::from(b'x'));
}

#[test]
fn listing_is_sorted_by_id() {
    let (_a, _ga) = fresh(4096, 0o600);
    let (_b, _gb) = fresh(4096, 0o600);
    let all = sysv::segments().unwrap();
    assert!(all.len() >= 2);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
}
