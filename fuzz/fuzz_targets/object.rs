//! A whole object image from the fuzzer: the first byte picks the kind
//! (channel, SPSC channel, board, broadcast), the rest is planted as the
//! object's bytes; then every operation of that kind runs against it. Any
//! panic, hang (libFuzzer's -timeout) or huge allocation (-malloc_limit_mb)
//! is a finding.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/shmkit/tests/fuzz_harness/mod.rs"]
mod fuzz_harness;

use fuzz_harness::{exercise_waiting, Kind, Planted, OBJECT_MAX};

fuzz_target!(|data: &[u8]| {
    let Some((&first, image)) = data.split_first() else {
        return;
    };
    let kind = Kind::from_byte(first);
    let planted = Planted::plant(kind, &image[..image.len().min(OBJECT_MAX)]);
    exercise_waiting(kind, &planted.name, Duration::from_millis(1));
});
