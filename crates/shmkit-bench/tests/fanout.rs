//! `fanout` through the real harness: a writer and 2 reader processes over
//! `shmkit` (broadcast), `shmkit-lossless`, `shmkit-board`, `pipe` and
//! `raw-spin`, very briefly; then `paced` at one rate. Every row measures
//! something sane, and nothing is left in `/dev/shm`.
//!
//! The harness re-executes its child program; this test binary is that
//! program too (`fanout bench-child SPEC` goes to `child_main`), hence
//! `harness = false` and a `main` of its own.

use std::time::{Duration, Instant};

use shmkit_bench::{BenchOptions, ChildCommand, Scenario};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("bench-child") {
        std::process::exit(shmkit_bench::child_main(&args[2..]));
    }
    if args.iter().any(|a| a == "--list") {
        println!("fanout_rows_are_sane: test");
        return;
    }
    // `cargo test` passes libtest's options; a filter that names another
    // test skips this one.
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !"fanout_rows_are_sane".contains(f.as_str())) {
        return;
    }
    let started = Instant::now();
    fanout_rows_are_sane();
    println!(
        "test fanout_rows_are_sane ... ok ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

fn fanout_rows_are_sane() {
    let mut opts = BenchOptions::new(ChildCommand::current_exe(&["bench-child"]).unwrap());
    opts.scenarios = vec![Scenario::Fanout];
    opts.transports = [
        "shmkit",
        "shmkit-lossless",
        "shmkit-board",
        "pipe",
        "raw-spin",
    ]
    .map(String::from)
    .to_vec();
    opts.readers = vec![2];
    opts.warmup = Duration::from_millis(20);
    opts.duration = Duration::from_millis(100);
    let report = shmkit_bench::run(&opts).unwrap();
    let table = report.render_table();
    assert_eq!(report.results.len(), 5, "{table}");
    for r in &report.results {
        assert_eq!(r.scenario, Scenario::Fanout);
        assert!(r.error.is_none(), "{}: {:?}\n{table}", r.transport, r.error);
        assert_eq!(r.readers, Some(2), "{table}");
        assert_eq!(r.msg_size, 64, "{table}");
        // Every reader received something.
        let each = r.msgs_per_s.unwrap();
        let slowest = r.slowest_msgs_per_s.unwrap();
        assert!(slowest > 0.0 && slowest <= each, "{table}");
        let all = r.total_msgs_per_s.unwrap();
        assert!((all - 2.0 * each).abs() <= 1e-6 * all, "{table}");
        assert_eq!(r.bytes_per_s, Some(each * 64.0));
        assert!(r.published_per_s.unwrap() > 0.0, "{table}");
        let (min, p50, p99, max) = (
            r.min_ns.unwrap(),
            r.p50_ns.unwrap(),
            r.p99_ns.unwrap(),
            r.max_ns.unwrap(),
        );
        assert!(0 < min && min <= p50 && p50 <= p99 && p99 <= max, "{table}");
        // Nothing waits longer than the run.
        assert!(max < 10_000_000_000, "{table}");
        let lost = r.lost.unwrap();
        assert!((0.0..1.0).contains(&lost), "{table}");
        if ["pipe", "raw-spin", "shmkit-lossless"].contains(&r.transport.as_str()) {
            assert_eq!(lost, 0.0, "{} is lossless\n{table}", r.transport);
        }
    }
    let pipe = &report
        .results
        .iter()
        .find(|r| r.transport == "pipe")
        .unwrap();
    assert_eq!(pipe.vs_pipe, Some(1.0));
    assert!(table.contains("fanout: one writer"), "{table}");
    let json = report.to_json();
    for key in [
        "readers",
        "lost",
        "msgs_per_s",
        "p50_ns",
        "total_msgs_per_s",
    ] {
        assert!(json["results"][0].get(key).is_some(), "{key}");
    }
    let plot = std::env::temp_dir().join(format!("shmkit-bench-fanout-{}.svg", std::process::id()));
    report.write_svg(&plot).unwrap();
    let svg = std::fs::read_to_string(&plot).unwrap();
    let _ = std::fs::remove_file(&plot);
    assert!(
        svg.contains("fanout") && svg.contains("shmkit-board"),
        "{svg:.300}"
    );
    // Each transport that lost messages says how much on its point.
    for r in report.results.iter().filter(|r| r.lost.unwrap() >= 0.01) {
        let share = format!("lost {:.0} %", r.lost.unwrap() * 100.0);
        assert!(svg.contains(&share), "{}: {share} missing", r.transport);
    }
    assert!(svg.contains("delivered messages/s per reader"));

    paced_rows_are_sane(opts);

    let tag = format!("shmkit-bench-{}-", std::process::id());
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&tag))
        .collect();
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

/// `paced` at 20 k messages/s: the writer keeps to the schedule (never
/// above the rate), lossless transports lose nothing, reader CPU is a
/// fraction of a core or so, and the table and chart show the rate.
fn paced_rows_are_sane(mut opts: BenchOptions) {
    const RATE: u64 = 20_000;
    opts.scenarios = vec![Scenario::Paced];
    opts.transports = ["shmkit", "shmkit-lossless", "raw-futex"]
        .map(String::from)
        .to_vec();
    opts.rates = vec![RATE];
    let report = shmkit_bench::run(&opts).unwrap();
    let table = report.render_table();
    assert_eq!(report.results.len(), 3, "{table}");
    for r in &report.results {
        assert!(r.error.is_none(), "{}: {:?}\n{table}", r.transport, r.error);
        assert_eq!(
            (r.scenario, r.rate, r.readers),
            (Scenario::Paced, Some(RATE), Some(2))
        );
        let published = r.published_per_s.unwrap();
        assert!(published > 0.0 && published <= RATE as f64 * 1.2, "{table}");
        let cpu = r.reader_cpu.unwrap();
        assert!((0.0..=2.0).contains(&cpu), "{table}");
        assert!(r.p99_ns.unwrap() > 0, "{table}");
        if r.transport != "shmkit" {
            assert_eq!(r.lost, Some(0.0), "{} is lossless\n{table}", r.transport);
        }
    }
    assert!(
        table.contains("paced: one writer at fixed rates"),
        "{table}"
    );
    assert!(table.contains("20.0k"), "{table}");
    let json = report.to_json();
    assert_eq!(json["results"][0]["rate"], RATE);
    assert!(json["results"][0]["reader_cpu"].is_number());
    let plot = std::env::temp_dir().join(format!("shmkit-bench-paced-{}.svg", std::process::id()));
    report.write_svg(&plot).unwrap();
    let svg = std::fs::read_to_string(&plot).unwrap();
    let _ = std::fs::remove_file(&plot);
    assert!(
        svg.contains("paced") && svg.contains("shmkit-lossless, 20.0k/s"),
        "{svg:.300}"
    );
}
