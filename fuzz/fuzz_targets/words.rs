//! Structured corruption: the first byte picks one of the harness's seed
//! objects (real channels, boards and broadcasts after some traffic), the
//! rest says which of its control words to overwrite with what. The
//! object is then used; beyond no panic, hang or huge allocation, every
//! message read back must be one some process sent.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/shmkit/tests/fuzz_harness/mod.rs"]
mod fuzz_harness;

use fuzz_harness::{all_seeds, exercise_waiting, mutate, mutations_from_bytes, Image, Planted};

static SEEDS: OnceLock<Vec<Image>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let seeds = SEEDS.get_or_init(all_seeds);
    let image = &seeds[usize::from(first) % seeds.len()];
    let mutations = mutations_from_bytes(image, rest);
    let planted = Planted::plant(image.kind, &mutate(image, &mutations));
    let outcome = exercise_waiting(image.kind, &planted.name, Duration::from_millis(1));
    if let Some(m) = outcome.fabricated() {
        panic!(
            "a message nobody sent came back ({:?}) from {:?} (fresh: {}) after {mutations:x?}",
            String::from_utf8_lossy(m),
            image.kind,
            image.fresh
        );
    }
});
