//! The chart's SVG text, drawn from made-up reports: colours, value
//! labels, axis units and the fan-out loss.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::style::{OTHERS, SHMKIT};
use crate::report::{Machine, Report, Row};
use crate::scenario::{Latency, Measurement};
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
