//! The chart's SVG text, drawn from made-up reports: colours, value
//! labels, axis units and the fan-out loss.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::style::{OTHERS, SHMKIT};
use crate::report::{Machine, Report, Row};
use crate::scenario::{FanoutFigures, Latency, Measurement};
use crate::{BenchOptions, ChildCommand, Scenario};

fn latency(p50: u64) -> Latency {
    Latency {
        min_ns: p50 / 2,
        p50_ns: p50,
        p99_ns: p50 * 2,
        p999_ns: p50 * 3,
        max_ns: p50 * 10,
    }
}

fn rtt(transport: &str, p50: u64) -> Row {
    let m = Measurement {
        count: 1_000_000_000 / p50,
        elapsed_ns: 1_000_000_000,
        latency: Some(latency(p50)),
        ..Measurement::default()
    };
    Row::from_measurement(Scenario::Rtt, transport, 8, &m)
}

/// A `stream` row of `per_s` messages per second.
fn stream(transport: &str, per_s: u64) -> Row {
    let m = Measurement {
        count: per_s,
        elapsed_ns: 1_000_000_000,
        ..Measurement::default()
    };
    Row::from_measurement(Scenario::Stream, transport, 64, &m)
}

/// A `fanout` row: each of 2 readers received `each` messages/s and
/// `lost` of what was published.
fn fanout(transport: &str, each: f64, lost: f64) -> Row {
    let m = Measurement {
        latency: Some(latency(2_000)),
        fanout: Some(FanoutFigures {
            readers: 2,
            per_reader_msgs_per_s: each,
            total_msgs_per_s: each * 2.0,
            slowest_msgs_per_s: each,
            published_per_s: each / (1.0 - lost),
            lost,
            rate: None,
            reader_cpu: 1.0,
        }),
        ..Measurement::default()
    };
    Row::from_measurement(Scenario::Fanout, transport, 64, &m)
}

fn report(rows: Vec<Row>) -> Report {
    let opts = BenchOptions::new(ChildCommand {
        program: "unused".into(),
        args: Vec::new(),
    });
    Report::new(Machine::detect(), &opts, &[rows])
}

/// The chart of `rows`, as SVG text.
fn svg(rows: Vec<Row>) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "shmkit-test-{}-{}.svg",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = report(rows).write_svg(&path);
    let text = std::fs::read_to_string(&path);
    let _ = std::fs::remove_file(&path);
    written.unwrap();
    text.unwrap()
}

/// `RGBColor(230, 85, 13)` as the SVG writes it: `#E6550D`.
fn hex(c: plotters::style::RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// The fill colours of the bars (`<rect>`s other than the background and
/// the legend's box), in order.
fn bar_fills(svg: &str) -> Vec<String> {
    svg.split("<rect")
        .skip(1)
        .filter_map(|r| {
            let fill = r.split("fill=\"").nth(1)?.split('"').next()?;
            (fill != "#FFFFFF" && fill != "none").then(|| fill.to_string())
        })
        .collect()
}

#[test]
fn shmkit_transports_have_their_own_colours_in_every_panel() {
    let svg = svg(vec![
        rtt("shmkit-stream", 300),
        rtt("pipe", 20_000),
        stream("shmkit-stream", 9_000_000),
        stream("pipe", 800_000),
    ]);
    // The stream bars: shmkit's first, then pipe's.
    // (The histogram draws its bars in no fixed order.)
    let mut fills = bar_fills(&svg);
    fills.sort();
    let mut expected = [hex(SHMKIT[0]), hex(OTHERS[0])];
    expected.sort();
    assert_eq!(fills, expected);
    // The rtt markers take the same colours.
    for c in [SHMKIT[0], OTHERS[0]] {
        let circles = svg
            .split("<circle")
            .filter(|c2| c2.contains(&hex(c)))
            .count();
        assert!(circles >= 2, "{}: {circles}", hex(c));
    }
    assert!(svg.contains("own transports in oranges and reds"));
    // The two families share no colour.
    assert!(SHMKIT.iter().all(|c| !OTHERS.contains(c)));
}

#[test]
fn every_bar_and_median_has_its_value_written() {
    let svg = svg(vec![
        rtt("shmkit-stream", 300),
        rtt("pipe", 20_000),
        stream("shmkit-stream", 12_345_678),
        stream("pipe", 456_000),
    ]);
    let texts = texts(&svg);
    for label in ["12.3 M/s", "456.0 k/s", "300 ns", "20.0 µs"] {
        assert!(
            texts.iter().any(|t| t == label),
            "{label} missing: {texts:?}"
        );
    }
}

/// The text of every `<text>` element.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let inner = t.split_once('>')?.1.split_once("</text>")?.0;
            Some(inner.trim().to_string())
        })
        .collect()
}

/// The y axis's title and its ticks (the texts that are plain numbers) of
/// a chart with one panel whose x labels are not numbers.
fn y_axis(svg: &str, desc_starts: &str) -> (String, Vec<f64>) {
    let texts = texts(svg);
    let desc = texts
        .iter()
        .find(|t| t.starts_with(desc_starts))
        .unwrap_or_else(|| panic!("no axis title {desc_starts:?}: {texts:?}"))
        .clone();
    let ticks: Vec<f64> = texts.iter().filter_map(|t| t.parse().ok()).collect();
    assert!(ticks.len() >= 2, "{texts:?}");
    (desc, ticks)
}

#[test]
fn axis_units_match_their_ticks() {
    // Medians of 300 ns and 20 µs: markers from 150 ns to 60 µs.
    let (desc, ticks) = y_axis(
        &svg(vec![rtt("shmkit-stream", 300), rtt("pipe", 20_000)]),
        "latency",
    );
    assert_eq!(desc, "latency, µs (log)");
    // In µs: from about 0.075 (the lowest, halved) up to the headroom.
    assert!(
        ticks.iter().all(|&t| (0.05..=1000.0).contains(&t)),
        "{ticks:?}"
    );
    assert!(
        ticks.iter().any(|&t| t < 1.0) && ticks.iter().any(|&t| t >= 10.0),
        "{ticks:?}"
    );

    // Everything below a microsecond: nanoseconds.
    let (desc, ticks) = y_axis(
        &svg(vec![rtt("shmkit-stream", 100), rtt("pipe", 250)]),
        "latency",
    );
    assert_eq!(desc, "latency, ns (log)");
    assert!(
        ticks.iter().all(|&t| (20.0..=10_000.0).contains(&t)),
        "{ticks:?}"
    );

    let (desc, ticks) = y_axis(
        &svg(vec![
            stream("shmkit-stream", 12_000_000),
            stream("pipe", 900_000),
        ]),
        "messages per second",
    );
    assert_eq!(desc, "messages per second, M/s (log)");
    assert!(
        ticks.iter().all(|&t| (0.4..=25.0).contains(&t)),
        "{ticks:?}"
    );
}

#[test]
fn units_and_ticks() {
    use super::style::Unit;
    assert_eq!(Unit::latency(900.0).name, "ns");
    assert_eq!(Unit::latency(60_000.0).name, "µs");
    assert_eq!(Unit::latency(3.4e6).name, "ms");
    assert_eq!(Unit::rate(900.0).name, "/s");
    assert_eq!(Unit::rate(456e3).name, "k/s");
    assert_eq!(Unit::rate(12.3e6).name, "M/s");
    let us = Unit::latency(60_000.0);
    let ticks: Vec<String> = [50.0, 500.0, 2_500.0, 20_000.0, 100_000.0]
        .iter()
        .map(|&v| us.tick(v))
        .collect();
    assert_eq!(ticks, ["0.05", "0.5", "2.5", "20", "100"]);
}

#[test]
fn fanout_shows_what_a_lossy_transport_lost() {
    let svg = svg(vec![
        fanout("shmkit-board", 4_500_000.0, 0.78),
        fanout("shmkit-lossless", 2_000_000.0, 0.0),
        fanout("pipe", 300_000.0, 0.0),
    ]);
    let texts = texts(&svg);
    for label in ["4.5 M/s, lost 78 %", "2.0 M/s", "300.0 k/s"] {
        assert!(
            texts.iter().any(|t| t == label),
            "{label} missing: {texts:?}"
        );
    }
    // Only the lossy one says so.
    assert_eq!(
        texts.iter().filter(|t| t.contains(", lost ")).count(),
        1,
        "{texts:?}"
    );
    assert!(texts
        .iter()
        .any(|t| t.starts_with("fanout: messages/s each reader received (delivered")));
    assert!(
        texts
            .iter()
            .any(|t| t == "delivered messages/s per reader, M/s (log)"),
        "{texts:?}"
    );
}
