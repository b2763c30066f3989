//! What the hot paths allocate, counted by a global allocator. One test in
//! this binary, so no other test allocates while it counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use shmkit::broadcast::{Broadcast, BroadcastOptions};
use shmkit::channel::{Channel, ChannelOptions};
use shmkit::{posix, ErrorKind};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the one System::alloc needs.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, i.e. from System.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A unique object name, unlinked on drop even when the test fails.
struct Name(String);

impl Name {
    fn new(tag: &str) -> Self {
        Name(format!("/shmkit-test-{}-0-alloc-{tag}", std::process::id()))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = posix::unlink(&self.0);
    }
}

fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    f();
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// Issue 15, defect 10: a polling loop of `try_send` on a full channel or
/// `try_recv` on an empty one (or an empty broadcast) allocates nothing;
/// the error still says what happened.
#[test]
fn would_block_errors_allocate_nothing() {
    for spsc in [false, true] {
        let name = Name::new(if spsc { "spsc" } else { "mpmc" });
        let mut opts = ChannelOptions::new();
        opts.capacity(2).max_message(8).spsc(spsc);
        let ch = Channel::create(&name.0, &opts).unwrap();
        let mut tx = ch.sender().unwrap();
        let mut rx = ch.receiver().unwrap();
        let n = allocations_in(|| {
            for _ in 0..100 {
                let e = rx.try_recv().unwrap_err();
                assert_eq!(e.kind(), ErrorKind::WouldBlock);
            }
        });
        assert_eq!(n, 0, "try_recv on an empty channel (spsc {spsc})");
        tx.send(b"a").unwrap();
        tx.send(b"b").unwrap();
        let n = allocations_in(|| {
            for _ in 0..100 {
                let e = tx.try_send(b"c").unwrap_err();
                assert_eq!(e.kind(), ErrorKind::WouldBlock);
            }
        });
        assert_eq!(n, 0, "try_send on a full channel (spsc {spsc})");
        let e = tx.try_send(b"c").unwrap_err();
        assert!(e.to_string().contains("the channel is full"), "{e}");
        assert_eq!(e.object(), name.0);
    }
    let name = Name::new("bcast");
    let b = Broadcast::create(&name.0, &BroadcastOptions::new()).unwrap();
    let mut sub = b.subscribe().unwrap();
    let n = allocations_in(|| {
        for _ in 0..100 {
            let e = sub.try_recv().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
        }
    });
    assert_eq!(n, 0, "try_recv on an empty broadcast");
}
