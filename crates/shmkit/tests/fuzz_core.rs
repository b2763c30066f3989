//! Fuzzing the object core on the stable toolchain (issue 15, Deliver 2):
//! real channels (shared and SPSC), boards and broadcasts, their control
//! words overwritten by a seeded generator, opened and run through every
//! operation of their kind (`fuzz_harness::exercise`). Each case must end in
//! data or clean errors: no panic, no hang (a watchdog aborts a case that
//! runs past 20 s), no allocation over 64 MiB (the allocator below refuses
//! it), and no message nobody sent.
//!
//! The committed corpus of the cargo-fuzz targets (`fuzz/corpus`) is
//! replayed here too, so the stable build checks the same inputs. More
//! cases: `SHMKIT_FUZZ_CASES=N` (per kind), `SHMKIT_FUZZ_SEED=S`;
//! `scripts/fuzz` runs many, and cargo-fuzz where nightly is installed.

mod fuzz_harness;

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuzz_harness::*;

/// No object here is larger than a few KiB: an allocation this big can only
/// be sized by a hostile word.
const HUGE: usize = 64 << 20;

struct Bounded;

// SAFETY: forwards to the system allocator; refuses (null) only requests
// over HUGE, which the standard library then reports and aborts on.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > HUGE {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is the one System::alloc needs.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, i.e. from System.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Bounded = Bounded;

/// A case longer than this is a hang.
const CASE_LIMIT: Duration = Duration::from_secs(20);

/// Runs cases under a watchdog thread that aborts the process (naming the
/// case) when one runs past CASE_LIMIT: a hang must fail the test, not
/// stall CI.
struct Watchdog {
    current: Arc<Mutex<Option<(Instant, String)>>>,
}

impl Watchdog {
    fn new() -> Self {
        let current: Arc<Mutex<Option<(Instant, String)>>> = Arc::default();
        let watched = Arc::downgrade(&current);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200));
            let Some(current) = watched.upgrade() else {
                return;
            };
            let guard = current.lock().unwrap();
            if let Some((start, what)) = &*guard {
                if start.elapsed() > CASE_LIMIT {
                    eprintln!("fuzz case hung for more than {CASE_LIMIT:?}: {what}");
                    std::process::abort();
                }
            }
        });
        Watchdog { current }
    }

    /// Runs one case; a panic in it fails the test with `what`.
    fn case<T>(&self, what: &str, f: impl FnOnce() -> T) -> T {
        *self.current.lock().unwrap() = Some((Instant::now(), what.to_string()));
        let result = catch_unwind(AssertUnwindSafe(f));
        *self.current.lock().unwrap() = None;
        match result {
            Ok(v) => v,
            Err(_) => panic!("fuzz case panicked (see above): {what}"),
        }
    }
}

fn cases() -> u64 {
    std::env::var("SHMKIT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

fn check(outcome: &Outcome, what: &str) {
    if let Some(m) = outcome.fabricated() {
        panic!(
            "a message nobody sent came back ({:?}): {what}",
            String::from_utf8_lossy(m)
        );
    }
}

#[test]
fn corrupted_objects_of_every_kind_give_data_or_clean_errors() {
    let rng_seed = std::env::var("SHMKIT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x0015_f022);
    let dog = Watchdog::new();
    let mut rng = Rng(rng_seed);
    let started = Instant::now();
    let mut summary = Vec::new();
    for image in all_seeds() {
        let kind = image.kind;
        let planted = Planted::plant(kind, &image.bytes);
        // The pristine object works and gives back what the seed left.
        let clean = dog.case(&format!("{kind:?} pristine"), || {
            exercise(kind, &planted.name)
        });
        check(&clean, "pristine");
        assert!(
            !clean.messages.is_empty(),
            "{kind:?}: the pristine seed gives messages back: {clean:?}"
        );
        let (mut calls, mut errors, mut messages) = (0, 0, 0);
        for case in 0..cases() {
            let count = 1 + rng.below(4) as usize;
            let mutations = random_mutations(&image, &mut rng, count);
            let what = format!(
                "{kind:?}{}, seed {rng_seed:#x}, case {case}: {}",
                if image.fresh { " (fresh)" } else { "" },
                mutations
                    .iter()
                    .map(|(off, v)| format!("{v:#x} at {off}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            planted.rewrite(&mutate(&image, &mutations));
            let outcome = dog.case(&what, || exercise(kind, &planted.name));
            check(&outcome, &what);
            calls += outcome.calls;
            errors += outcome.errors;
            messages += outcome.messages.len();
        }
        summary.push(format!(
            "{kind:?}{}: {} cases, {calls} calls ({errors} errors), {messages} messages",
            if image.fresh { " fresh" } else { "" },
            cases()
        ));
    }
    eprintln!(
        "fuzz_core (seed {rng_seed:#x}, {:.1} s): {}",
        started.elapsed().as_secs_f64(),
        summary.join("; ")
    );
}

/// The inputs committed for the cargo-fuzz targets, replayed on stable:
/// `object` (a kind byte, then a whole object image) and `words` (a byte
/// choosing one of `all_seeds`, then mutations of it).
#[test]
fn the_committed_fuzz_corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let dog = Watchdog::new();
    let images = all_seeds();
    let mut replayed = 0;
    for target in ["object", "words"] {
        let dir = root.join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "no corpus in {}", dir.display());
        for path in inputs {
            let data = std::fs::read(&path).unwrap();
            let what = format!("{target} input {}", path.display());
            let Some((&first, rest)) = data.split_first() else {
                continue;
            };
            let outcome = match target {
                "object" => {
                    let kind = Kind::from_byte(first);
                    let planted = Planted::plant(kind, &rest[..rest.len().min(OBJECT_MAX)]);
                    dog.case(&what, || exercise(kind, &planted.name))
                }
                _ => {
                    let image = &images[usize::from(first) % images.len()];
                    let mutated = mutate(image, &mutations_from_bytes(image, rest));
                    let planted = Planted::plant(image.kind, &mutated);
                    let outcome = dog.case(&what, || exercise(image.kind, &planted.name));
                    check(&outcome, &what);
                    outcome
                }
            };
            std::hint::black_box(outcome);
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} corpus inputs");
}

/// Writes the seed corpus of the cargo-fuzz targets (`fuzz/corpus`), kept
/// in the repository: each seed image for `object`, and for `words` each
/// seed untouched, a known regression (an SPSC `dequeue` of `u64::MAX` on
/// a fresh channel, issue 15 defect 8) and a few random mutations. Run by
/// hand: `cargo test -p shmkit --test fuzz_core -- --ignored write`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn write_the_seed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let seeds = all_seeds();
    let mut rng = Rng(0xc0_ffee);
    for (i, image) in seeds.iter().enumerate() {
        let tag = format!(
            "{}{}",
            image.kind.tag(),
            if image.fresh { "-fresh" } else { "" }
        );
        if !image.fresh {
            let kind_byte = KINDS.iter().position(|&k| k == image.kind).unwrap() as u8;
            let mut object = vec![kind_byte];
            object.extend(&image.bytes);
            std::fs::write(root.join("object").join(&tag), object).unwrap();
        }
        let words = root.join("words");
        std::fs::write(words.join(format!("{tag}-untouched")), [i as u8]).unwrap();
        for n in 0..4 {
            let mut input = vec![i as u8];
            for _ in 0..=rng.below(3) {
                let which = rng.next() as u16;
                input.extend(which.to_le_bytes());
                input.extend(rng.next().to_le_bytes());
            }
            std::fs::write(words.join(format!("{tag}-random-{n}")), input).unwrap();
        }
        if image.kind == Kind::SpscChannel && image.fresh {
            // The dequeue word (offset 384 = control word 48) set to u64::MAX.
            let mut input = vec![i as u8];
            input.extend(48u16.to_le_bytes());
            input.extend(u64::MAX.to_le_bytes());
            std::fs::write(words.join("spsc-fresh-dequeue-max"), input).unwrap();
        }
    }
}

/// Whatever a case opens it also unmaps and closes: after many cases of
/// every seed, none of the objects they used is still mapped or open in
/// this process (a handle leaked on some error path would keep both).
/// Checked by name, so other tests running meanwhile do not count.
#[test]
fn cases_leave_no_mapping_or_descriptor_behind() {
    let seeds = all_seeds();
    let mut rng = Rng(7);
    let mut used = Vec::new();
    for image in &seeds {
        let planted = Planted::plant(image.kind, &image.bytes);
        for _ in 0..10 {
            let mutations = random_mutations(image, &mut rng, 2);
            planted.rewrite(&mutate(image, &mutations));
            std::hint::black_box(exercise(image.kind, &planted.name));
        }
        used.push(planted.name[1..].to_string());
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let open: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    for name in &used {
        let tail = format!("/{name}");
        assert!(
            !maps.lines().any(|l| l.contains(&tail)),
            "{name} is still mapped"
        );
        assert!(
            !open.iter().any(|p| p.contains(&tail)),
            "{name} is still open"
        );
    }
}
