//! The SVG chart of a report, drawn with plotters' SVG backend only (text is
//! written as SVG `<text>`, so no font files or system libraries are needed).
//!
//! One panel per scenario that ran: round-trip latency (min, p50, p99,
//! p99.9 per transport, log scale), lap latency of the oversubscribed ring,
//! stream messages/s, bulk GB/s, for `fanout` the messages/s each
//! reader received against the number of readers (one line per transport,
//! log scale), and for `paced` the p99 latency against the number of
//! readers (one line per transport and rate, log scale). Failed transports
//! are left out (the caption names them). shmkit's own transports take a
//! warm colour family, the others a cool one, the same in every panel;
//! bars and points carry their values, fan-out points the share lost; each
//! y axis is labelled in the unit its ticks are written in.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::combinators::LogCoord;
use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::RangedCoordusize;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{Report, Row};
use crate::Scenario;

mod style;
mod sweep;

use style::{Colors, Unit};

const WIDTH: u32 = 1100;
const PANEL: u32 = 380;
/// Height of the caption above the panels: where, what and how loaded.
const CAPTION: u32 = 82;

/// The caption's lines: the machine, the commit, the load before and after,
/// and every transport that failed (left out of the panels).
fn caption(report: &Report) -> Vec<String> {
    let m = &report.machine;
    let load = |l: [f64; 3]| format!("{:.2}", l[0]);
    let mut lines = vec![
        format!(
            "shmkit-bench {} at commit {} on {} ({} CPUs, {} allowed, {}{}), {} run(s)",
            m.shmkit_version,
            m.commit,
            m.model,
            m.cpus,
            m.cpus_allowed,
            m.kernel,
            if m.virtualized { ", virtualized" } else { "" },
            report.runs
        ),
        format!(
            "load average (1 min) {} at the start, {} at the end: other work competes with the measurement",
            load(m.load_average),
            m.load_average_end.map_or("-".to_string(), load)
        ),
    ];
    let failed: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| format!("{} in {:?}", r.transport, r.scenario))
        .collect();
    lines.push(if failed.is_empty() {
        "every transport ran".to_string()
    } else {
        format!("FAILED (not drawn): {}", failed.join(", "))
    });
    lines.push(
        "colours: shmkit's own transports in oranges and reds, baselines and peers in blues and greys (the same in every panel)"
            .to_string(),
    );
    lines
}

/// Writes the chart of `report` to `path`.
pub(crate) fn write_svg(report: &Report, path: &Path) -> Result<()> {
    let panels: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|&s| report.rows(s).any(|r| r.error.is_none()))
        .collect();
    let height = CAPTION + PANEL * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, body) = root.split_vertically(CAPTION);
    for (i, line) in caption(report).iter().enumerate() {
        top.draw(&Text::new(
            line.clone(),
            (12, 8 + 18 * i as i32),
            ("sans-serif", 13).into_font().color(&BLACK),
        ))
        .map_err(err)?;
    }
    let colors = Colors::new(report);
    let areas = body.split_evenly((panels.len().max(1), 1));
    for (scenario, area) in panels.iter().zip(areas.iter()) {
        let rows: Vec<&Row> = report
            .rows(*scenario)
            .filter(|r| r.error.is_none())
            .collect();
        match scenario {
            Scenario::Rtt => latency(
                area,
                "rtt: round-trip latency (lower is better)",
                &rows,
                &colors,
            )?,
            Scenario::Oversubscribed => latency(
                area,
                "oversubscribed: lap of a token around 3 processes on 2 cores (lower is better)",
                &rows,
                &colors,
            )?,
            Scenario::Stream if report.sizes(Scenario::Stream).len() > 1 => {
                sweep::stream_by_size(area, &report.sizes(Scenario::Stream), &rows, &colors)?
            }
            Scenario::Stream => bars(
                area,
                "stream: messages per second (higher is better)",
                "messages per second",
                &rows,
                (|r| r.msgs_per_s, fmt_rate),
                true,
                &colors,
            )?,
            Scenario::Bulk => bars(
                area,
                "bulk: GB/s, 1 GB = 10^9 bytes (higher is better)",
                "GB/s",
                &rows,
                (
                    |r| r.bytes_per_s.map(|b| b / 1e9),
                    |gb| format!("{gb:.2} GB/s"),
                ),
                false,
                &colors,
            )?,
            Scenario::Fanout => by_readers(
                area,
                "fanout: messages/s each reader received (delivered, not published), by readers (x); labels: rate and share lost (higher is better where nothing is lost)",
                ("delivered messages/s per reader", Unit::rate),
                &rows,
                &colors,
                |r| r.transport.clone(),
                |r| r.msgs_per_s.map(|v| (v, with_loss(v, r.lost))),
            )?,
            Scenario::Paced => by_readers(
                area,
                "paced: p99 publish-to-receive latency at each rate, by readers (x) (lower is better)",
                ("p99 latency", Unit::latency),
                &rows,
                &colors,
                |r| r.label_rate(),
                |r| r.p99_ns.map(|ns| (ns as f64, crate::report::fmt_ns(ns))),
            )?,
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("cannot draw the chart: {e:?}")
}

fn label(names: &[String], v: &SegmentValue<usize>) -> String {
    match v {
        SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

/// A chart on `area` with the panels' title style, margin and label areas.
fn builder<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
) -> ChartBuilder<'a, 'static, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(area);
    b.caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(80);
    b
}

/// A panel with one segment per name along x and a log scale up y.
type LogChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<SegmentedCoord<RangedCoordusize>, LogCoord<f64>>>;

/// Draws the frame of a [`LogChart`]: the title, `names` along x, `lo` to
/// `hi` up y (described by `y_desc`, labelled by `y_label`).
fn log_panel<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    names: &[String],
    (lo, hi): (f64, f64),
    y_desc: &str,
    y_label: &dyn Fn(&f64) -> String,
) -> Result<LogChart<'a, 'b>> {
    let mut chart = builder(area, title)
        .build_cartesian_2d(
            (0..names.len().saturating_sub(1)).into_segmented(),
            (lo..hi).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len())
        .x_label_formatter(&|v| label(names, v))
        .y_desc(y_desc)
        .y_label_formatter(y_label)
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// Reads one percentile of a row.
type Percentile = fn(&Row) -> Option<u64>;

/// The marker of one percentile in the latency panels (colour is the
/// transport's).
#[derive(Clone, Copy)]
enum Mark {
    Ring,
    Dot,
    Triangle,
    Cross,
}

fn mark<DB: DrawingBackend, C: Clone + 'static>(
    m: Mark,
    at: C,
    color: RGBColor,
) -> DynElement<'static, DB, C> {
    match m {
        Mark::Ring => Circle::new(at, 4, color.stroke_width(2)).into_dyn(),
        Mark::Dot => Circle::new(at, 5, color.filled()).into_dyn(),
        Mark::Triangle => TriangleMarker::new(at, 6, color.filled()).into_dyn(),
        Mark::Cross => Cross::new(at, 5, color.stroke_width(2)).into_dyn(),
    }
}

/// Percentile markers per transport on a log scale of nanoseconds: the
/// shape says which percentile, the colour which transport.
fn latency(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    rows: &[&Row],
    colors: &Colors,
) -> Result<()> {
    let names: Vec<String> = rows.iter().map(|r| r.transport.clone()).collect();
    let values: Vec<u64> = rows
        .iter()
        .flat_map(|r| [r.min_ns, r.p50_ns, r.p99_ns, r.p999_ns])
        .flatten()
        .collect();
    let lo = values.iter().copied().min().unwrap_or(1).max(1) as f64 / 2.0;
    // Headroom above the highest marker for the legend.
    let hi = values.iter().copied().max().unwrap_or(10) as f64 * 12.0;
    let unit = Unit::latency(values.iter().copied().max().unwrap_or(1) as f64);
    let y_desc = format!("latency, {} (log)", unit.name);
    let mut chart = log_panel(area, title, &names, (lo, hi), &y_desc, &|v| unit.tick(*v))?;
    // The span from min to p99.9, one line per transport.
    chart
        .draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
            let (a, b) = (r.min_ns?, r.p999_ns?);
            let x = SegmentValue::CenterOf(i);
            Some(PathElement::new(
                vec![(x.clone(), a as f64), (x, b as f64)],
                colors.of(&r.transport).stroke_width(2),
            ))
        }))
        .map_err(err)?;
    let series: [(&str, Mark, Percentile); 4] = [
        ("min", Mark::Ring, |r| r.min_ns),
        ("p50", Mark::Dot, |r| r.p50_ns),
        ("p99", Mark::Triangle, |r| r.p99_ns),
        ("p99.9", Mark::Cross, |r| r.p999_ns),
    ];
    for (name, shape, get) in series {
        chart
            .draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
                get(r).map(|v| {
                    mark(
                        shape,
                        (SegmentValue::CenterOf(i), v as f64),
                        colors.of(&r.transport),
                    )
                })
            }))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| mark(shape, (x, y), RGBColor(60, 60, 60)));
    }
    // The median's value beside its marker.
    chart
        .draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
            let p50 = r.p50_ns?;
            Some(
                EmptyElement::at((SegmentValue::CenterOf(i), p50 as f64))
                    + Text::new(
                        crate::report::fmt_ns(p50),
                        (9, -6),
                        ("sans-serif", 12).into_font(),
                    ),
            )
        }))
        .map_err(err)?;
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// Draws the legend of the series drawn on `chart`.
fn legend<'a, 'b: 'a>(chart: &mut LogChart<'a, 'b>, position: SeriesLabelPosition) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(err)
}

/// The text `label` centred just above the top of bar `i` (at `v`).
fn value_label(
    i: usize,
    v: f64,
    label: String,
) -> Text<'static, (SegmentValue<usize>, f64), String> {
    let style =
        TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    Text::new(label, (SegmentValue::CenterOf(i), v), style)
}

/// A fan-out point's label: the rate each reader received and, where
/// readers missed some of what was published, the share lost
/// (`4.5 M/s, lost 78 %`), so a lossy transport does not pass for fast.
fn with_loss(per_s: f64, lost: Option<f64>) -> String {
    match lost {
        Some(l) if l >= 0.995 => format!("{}, lost {:.1} %", fmt_rate(per_s), l * 100.0),
        Some(l) if l >= 0.01 => format!("{}, lost {:.0} %", fmt_rate(per_s), l * 100.0),
        Some(l) if l > 0.0 => format!("{}, lost <1 %", fmt_rate(per_s)),
        _ => fmt_rate(per_s),
    }
}

/// A rate in human units: `12.3 M/s`, `456 k/s`, `950 /s`.
fn fmt_rate(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} G/s", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1} M/s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k/s", v / 1e3)
    } else {
        format!("{v:.0} /s")
    }
}

/// What a bar panel draws: a row's figure, and how its label writes it.
type Figure = (fn(&Row) -> Option<f64>, fn(f64) -> String);

/// One bar per transport, its value written above it.
fn bars(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    y_desc: &str,
    rows: &[&Row],
    (value, fmt): Figure,
    log: bool,
    colors: &Colors,
) -> Result<()> {
    let names: Vec<String> = rows.iter().map(|r| r.transport.clone()).collect();
    let data: Vec<(usize, f64)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| value(r).map(|v| (i, v)))
        .collect();
    let max = data.iter().map(|d| d.1).fold(0.0, f64::max).max(1e-9);
    let min = data.iter().map(|d| d.1).fold(f64::INFINITY, f64::min);
    let style = |x: &SegmentValue<usize>, _: &f64| match x {
        SegmentValue::Exact(i) | SegmentValue::CenterOf(i) => {
            colors.of(names.get(*i).map_or("", String::as_str)).filled()
        }
        SegmentValue::Last => BLACK.filled(),
    };
    if log {
        let lo = (min / 2.0).max(1e-9);
        let unit = Unit::rate(max);
        let y_desc = format!("{y_desc}, {} (log)", unit.name);
        let mut chart = log_panel(area, title, &names, (lo, max * 2.0), &y_desc, &|v| {
            unit.tick(*v)
        })?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style_func(style)
                    .margin(12)
                    .baseline(lo)
                    .data(data.iter().copied()),
            )
            .map_err(err)?;
        chart
            .draw_series(data.iter().map(|&(i, v)| value_label(i, v, fmt(v))))
            .map_err(err)?;
    } else {
        let mut chart = builder(area, title)
            .build_cartesian_2d(
                (0..names.len().saturating_sub(1)).into_segmented(),
                0.0..max * 1.15,
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(names.len())
            .x_label_formatter(&|v| label(&names, v))
            .y_desc(y_desc)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style_func(style)
                    .margin(12)
                    .data(data.iter().copied()),
            )
            .map_err(err)?;
        chart
            .draw_series(data.iter().map(|&(i, v)| value_label(i, v, fmt(v))))
            .map_err(err)?;
    }
    Ok(())
}

/// `color`, lighter for the `k`-th series of one transport (mixed with
/// white by a third each step, at most twice).
fn shade(color: RGBColor, k: usize) -> RGBColor {
    let f = [1.0, 0.67, 0.4][k.min(2)];
    let mix = |c: u8| (c as f64 * f + 255.0 * (1.0 - f)).round() as u8;
    RGBColor(mix(color.0), mix(color.1), mix(color.2))
}

/// The y axis of a panel by reader count: what it shows, and the unit for
/// the largest value drawn.
type Axis = (&'static str, fn(f64) -> Unit);

/// A figure by reader count: one line per series (`series` names a row's),
/// log scale.
fn by_readers(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    (y_label, unit_of): Axis,
    rows: &[&Row],
    colors: &Colors,
    series: impl Fn(&Row) -> String,
    value: impl Fn(&Row) -> Option<(f64, String)>,
) -> Result<()> {
    let mut counts: Vec<usize> = rows.iter().filter_map(|r| r.readers).collect();
    counts.sort_unstable();
    counts.dedup();
    let names: Vec<String> = counts.iter().map(|n| n.to_string()).collect();
    // Each series with its transport and how many series of that
    // transport came before it (paced: one per rate, lighter each).
    let mut transports: Vec<(String, &str, usize)> = Vec::new();
    for r in rows {
        let name = series(r);
        if !transports.iter().any(|t| t.0 == name) {
            let before = transports.iter().filter(|t| t.1 == r.transport).count();
            transports.push((name, &r.transport, before));
        }
    }
    let values: Vec<f64> = rows
        .iter()
        .filter_map(|r| value(r).map(|v| v.0))
        .filter(|&v| v > 0.0)
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    let (lo, hi) = if values.is_empty() {
        (1.0, 10.0)
    } else {
        // Headroom above the highest point for the legend.
        (lo / 2.0, hi * 8.0)
    };
    let unit = unit_of(hi / 8.0);
    let y_desc = format!("{y_label}, {} (log)", unit.name);
    let mut chart = log_panel(area, title, &names, (lo, hi), &y_desc, &|v| unit.tick(*v))?;
    for (t, transport, before) in &transports {
        let color = shade(colors.of(transport), *before);
        let labelled: Vec<((SegmentValue<usize>, f64), String)> = counts
            .iter()
            .enumerate()
            .filter_map(|(x, &n)| {
                let r = rows
                    .iter()
                    .find(|r| series(r) == *t && r.readers == Some(n))?;
                let (v, label) = value(r).filter(|v| v.0 > 0.0)?;
                Some(((SegmentValue::CenterOf(x), v), label))
            })
            .collect();
        let points: Vec<(SegmentValue<usize>, f64)> =
            labelled.iter().map(|p| p.0.clone()).collect();
        chart
            .draw_series(std::iter::once(PathElement::new(
                points.clone(),
                color.stroke_width(2),
            )))
            .map_err(err)?
            .label(t.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(err)?;
        chart
            .draw_series(labelled.into_iter().map(|(p, label)| {
                EmptyElement::at(p) + Text::new(label, (7, -14), ("sans-serif", 11).into_font())
            }))
            .map_err(err)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// The transports of `rows`, each once, in order.
fn transports_of<'r>(rows: &[&'r Row]) -> Vec<&'r str> {
    let mut transports: Vec<&str> = Vec::new();
    for r in rows {
        if !transports.contains(&r.transport.as_str()) {
            transports.push(&r.transport);
        }
    }
    transports
}

/// The log scale's range for the messages/s of `rows`, with headroom above
/// the highest point for the legend.
fn msgs_range(rows: &[&Row]) -> (f64, f64) {
    let values: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.msgs_per_s)
        .filter(|&v| v > 0.0)
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    if values.is_empty() {
        (1.0, 10.0)
    } else {
        (lo / 2.0, hi * 8.0)
    }
}

#[cfg(test)]
mod tests;
