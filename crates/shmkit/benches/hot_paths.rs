//! Micro-benchmarks of shmkit's hot paths, in one process and one thread:
//! what a call costs when nothing waits (no futex system call, no other
//! core), the floor under the cross-process figures of `shmkit bench`.
//!
//! ```sh
//! cargo bench -p shmkit --bench hot_paths              # everything, ~1 min
//! cargo bench -p shmkit --bench hot_paths -- channel   # names containing "channel"
//! ```
//!
//! Channels live in `/dev/shm` under a name unique to this process, removed
//! as soon as the benchmark has connected its endpoints (they keep the memory
//! mapped); the sync primitives live in anonymous shared memory
//! ([`Region::anonymous`]).

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput};
use shmkit::channel::{Channel, ChannelOptions, Messages, Receiver, Sender};
use shmkit::sync::{Event, Mutex, Semaphore};
use shmkit::Region;

/// Messages a batch moves.
const BATCH: usize = 64;

/// A sender and a receiver on a fresh channel whose name is already
/// removed, so nothing is left in `/dev/shm` even if the benchmark panics.
fn channel(max_message: usize, spsc: bool) -> (Sender, Receiver) {
    let mut opts = ChannelOptions::new();
    opts.capacity(BATCH).max_message(max_message).spsc(spsc);
    connect(&opts)
}

/// As [`channel`], with any options.
fn connect(opts: &ChannelOptions) -> (Sender, Receiver) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "/shmkit-bench-hot-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let ch = Channel::create(&name, opts).expect("create the channel");
    let endpoints = (ch.sender(), ch.receiver());
    ch.unlink().expect("remove the channel's name");
    (
        endpoints.0.expect("connect a sender"),
        endpoints.1.expect("connect a receiver"),
    )
}

fn channels(c: &mut Criterion) {
    let mut g = c.benchmark_group("channel");
    // The shared ring (any number of senders and receivers), then the
    // single-producer single-consumer one (`spsc/` in the names).
    for (ring, spsc) in [("", false), ("spsc/", true)] {
        g.throughput(Throughput::Elements(1));
        for size in [8, 64] {
            let (mut tx, mut rx) = channel(size, spsc);
            let msg = vec![7u8; size];
            // try_recv hands back a new Vec: one allocation per message.
            g.bench_function(format!("{ring}try_send+try_recv/{size}B"), |b| {
                b.iter(|| {
                    tx.try_send(black_box(&msg)).unwrap();
                    black_box(rx.try_recv().unwrap());
                })
            });
            // The same without allocating: read in place into our buffer.
            let mut buf = vec![0u8; size];
            g.bench_function(format!("{ring}try_send+try_recv_slot/{size}B"), |b| {
                b.iter(|| {
                    tx.try_send(black_box(&msg)).unwrap();
                    let slot = rx.try_recv_slot().unwrap();
                    slot.read_at(0, &mut buf).unwrap();
                    black_box(&buf);
                })
            });
        }

        // One wake-up check per batch instead of one per message.
        let size = 64;
        let (mut tx, mut rx) = channel(size, spsc);
        let msgs = vec![7u8; size * BATCH];
        let mut buf = vec![0u8; size * BATCH];
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(
            format!("{ring}send_batch+recv_batch/{BATCH}x{size}B"),
            |b| {
                b.iter(|| {
                    tx.send_batch(black_box(&msgs).chunks_exact(size)).unwrap();
                    let mut out = buf.chunks_exact_mut(size);
                    let n = rx
                        .recv_batch(BATCH, None, |slot| {
                            slot.read_at(0, out.next().expect("at most BATCH messages"))
                        })
                        .unwrap();
                    assert_eq!(n, BATCH);
                    black_box(&buf);
                })
            },
        );
    }
    g.finish();
}

/// The byte ring of a stream channel (`ChannelOptions::stream`): a batch
/// of records framed end to end and published with one store, then taken
/// with one load and one store, copying (`send_batch`, `recv_batch`) or in
/// place (`reserve_batch`): the per-record cost of streaming.
fn streams(c: &mut Criterion) {
    let mut g = c.benchmark_group("channel/stream");
    g.throughput(Throughput::Elements(BATCH as u64));
    for size in [8, 64] {
        let mut opts = ChannelOptions::new();
        opts.capacity(BATCH).max_message(size).stream(true);
        let (mut tx, mut rx) = connect(&opts);
        let msgs = vec![7u8; size * BATCH];
        let mut buf = vec![0u8; size * BATCH];
        g.bench_function(format!("send_batch+recv_batch/{BATCH}x{size}B"), |b| {
            b.iter(|| {
                tx.send_batch(black_box(&msgs).chunks_exact(size)).unwrap();
                let mut out = buf.chunks_exact_mut(size);
                let n = rx
                    .recv_batch(BATCH, None, |slot| {
                        slot.read_at(0, out.next().expect("at most BATCH messages"))
                    })
                    .unwrap();
                assert_eq!(n, BATCH);
                black_box(&buf);
            })
        });
        // The copying batch without a callback: records straight into a
        // reused buffer (`Messages`), nothing per record but the header's
        // checks and the copy.
        // Also with batches four times larger (and a ring to match): what
        // is left per record once the per-batch costs (the wait's first
        // claim, the publish and its waker check) are spread thinner.
        let mut got = Messages::new();
        for batch in [BATCH, 4 * BATCH] {
            let mut opts = ChannelOptions::new();
            opts.capacity(batch).max_message(size).stream(true);
            let (mut tx, mut rx) = connect(&opts);
            let msgs = vec![7u8; size * batch];
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(format!("send_batch+recv_batch_into/{batch}x{size}B"), |b| {
                b.iter(|| {
                    tx.send_batch(black_box(&msgs).chunks_exact(size)).unwrap();
                    got.clear();
                    let n = rx.recv_batch_into(&mut got, batch, None).unwrap();
                    assert_eq!(n, batch);
                    black_box(&got);
                })
            });
        }
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(format!("reserve_batch+recv_batch/{BATCH}x{size}B"), |b| {
            b.iter(|| {
                let mut batch = tx.reserve_batch(BATCH, size).unwrap();
                for i in 0..BATCH {
                    // SAFETY: record i of the batch has `size` bytes, ours
                    // until commit; `msgs` is private memory.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            black_box(&msgs).as_ptr(),
                            batch.as_mut_ptr(i),
                            size,
                        )
                    };
                }
                batch.commit(BATCH).unwrap();
                let mut out = buf.chunks_exact_mut(size);
                let n = rx
                    .recv_batch(BATCH, None, |slot| {
                        slot.read_at(0, out.next().expect("at most BATCH messages"))
                    })
                    .unwrap();
                assert_eq!(n, BATCH);
                black_box(&buf);
            })
        });
    }
    g.finish();
}

fn sync(c: &mut Criterion) {
    let region = Region::anonymous(4096).expect("map anonymous shared memory");
    let mut g = c.benchmark_group("sync");
    g.throughput(Throughput::Elements(1));

    let sem = Semaphore::from_region(&region, 0).unwrap();
    sem.init(0);
    g.bench_function("Semaphore::post+try_wait", |b| {
        b.iter(|| {
            sem.post().unwrap();
            assert!(sem.try_wait());
        })
    });

    let event = Event::from_region(&region, 64).unwrap();
    event.init();
    g.bench_function("Event::notify_one/no sleepers", |b| {
        b.iter(|| black_box(event).notify_one())
    });

    // SAFETY: these bytes of the new region hold nothing else and nobody
    // else uses them; no guard is leaked, and the region outlives the
    // mutex (both live to the end of this function).
    let mutex = unsafe { Mutex::init_in(&region, 128) }.unwrap();
    g.bench_function("Mutex::lock+unlock/uncontended", |b| {
        b.iter(|| drop(black_box(mutex.lock().unwrap())))
    });
    g.finish();
}

/// Short enough to run everything in about a minute on two busy cores.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

// What `criterion_group!` and `criterion_main!` expand to, written out: the
// macros' `pub fn` would need a doc comment we cannot give it.
fn main() {
    let mut c = config().configure_from_args();
    channels(&mut c);
    streams(&mut c);
    sync(&mut c);
    c.final_summary();
}
