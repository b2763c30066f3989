//! `stream` through the real harness: a producer and a consumer process
//! over `raw-stream` (the floor: records end to end, positions once per
//! batch), `raw-spin` (the per-slot ring) and `pipe`, very briefly, at a
//! message size that divides the ring and one that does not. Every row
//! measures something, the ratios are against `raw-stream`, `raw-stream`
//! runs `stream` only, and nothing is left in `/dev/shm`.
//!
//! The harness re-executes its child program; this test binary is that
//! program too (`stream bench-child SPEC` goes to `child_main`), hence
//! `harness = false` and a `main` of its own.

use std::time::{Duration, Instant};

use shmkit_bench::{BenchOptions, ChildCommand, Scenario};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("bench-child") {
        std::process::exit(shmkit_bench::child_main(&args[2..]));
    }
    if args.iter().any(|a| a == "--list") {
        println!("stream_rows_are_sane: test");
        return;
    }
    // `cargo test` passes libtest's options; a filter that names another
    // test skips this one.
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !"stream_rows_are_sane".contains(f.as_str())) {
        return;
    }
    let started = Instant::now();
    stream_rows_are_sane();
    println!(
        "test stream_rows_are_sane ... ok ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

fn stream_rows_are_sane() {
    for size in [64usize, 100] {
        let mut opts = BenchOptions::new(ChildCommand::current_exe(&["bench-child"]).unwrap());
        // rtt too: raw-stream does not run it, and is left out of it.
        opts.scenarios = vec![Scenario::Rtt, Scenario::Stream];
        opts.transports = ["raw-stream", "raw-spin", "pipe"]
            .map(String::from)
            .to_vec();
        opts.size = Some(size);
        opts.warmup = Duration::from_millis(20);
        opts.duration = Duration::from_millis(100);
        let report = shmkit_bench::run(&opts).unwrap();
        let table = report.render_table();
        let rtt: Vec<_> = report.rows(Scenario::Rtt).map(|r| &r.transport).collect();
        assert_eq!(rtt, ["raw-spin", "pipe"], "{table}");
        let stream: Vec<_> = report.rows(Scenario::Stream).collect();
        assert_eq!(stream.len(), 3, "{table}");
        for r in &stream {
            assert!(r.error.is_none(), "{}: {:?}\n{table}", r.transport, r.error);
            assert_eq!(r.msg_size, size, "{table}");
            let rate = r.msgs_per_s.unwrap();
            assert!(rate > 0.0, "{table}");
            assert_eq!(r.bytes_per_s, Some(rate * size as f64), "{table}");
            assert!(r.vs_floor.unwrap() > 0.0, "{table}");
        }
        let floor = stream.iter().find(|r| r.transport == "raw-stream").unwrap();
        assert_eq!(floor.vs_floor, Some(1.0), "{table}");
        assert!(table.contains("vs raw-stream"), "{table}");
    }
    let tag = format!("shmkit-bench-{}-", std::process::id());
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&tag))
        .collect();
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}
