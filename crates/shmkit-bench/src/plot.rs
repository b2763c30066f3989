//! The SVG chart of a report, drawn with plotters' SVG backend only (text is
//! written as SVG `<text>`, so no font files or system libraries are needed).
//!
//! Four panels: round-trip latency (min, p50, p99, p99.9 per transport, log
//! scale), lap latency of the oversubscribed ring, stream messages/s and
//! bulk GB/s. Failed transports are left out.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::{Report, Row};
use crate::Scenario;

const WIDTH: u32 = 1100;
const PANEL: u32 = 380;

/// Writes the chart of `report` to `path`.
pub(crate) fn write_svg(report: &Report, path: &Path) -> Result<()> {
    let panels: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|&s| report.rows(s).any(|r| r.error.is_none()))
        .collect();
    let height = PANEL * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for (scenario, area) in panels.iter().zip(areas.iter()) {
        let rows: Vec<&Row> = report
            .rows(*scenario)
            .filter(|r| r.error.is_none())
            .collect();
        match scenario {
            Scenario::Rtt => latency(area, "rtt: round-trip latency", &rows)?,
            Scenario::Oversubscribed => latency(
                area,
                "oversubscribed: lap of a token around 3 processes on 2 cores",
                &rows,
            )?,
            Scenario::Stream => bars(
                area,
                "stream: messages per second",
                "messages/s (log)",
                &rows,
                |r| r.msgs_per_s,
                true,
            )?,
            Scenario::Bulk => bars(
                area,
                "bulk: GB/s (1 GB = 10^9 bytes)",
                "GB/s",
                &rows,
                |r| r.bytes_per_s.map(|b| b / 1e9),
                false,
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

/// Reads one percentile of a row.
type Percentile = fn(&Row) -> Option<u64>;

/// Percentile markers per transport on a log scale of nanoseconds.
fn latency(area: &DrawingArea<SVGBackend, Shift>, title: &str, rows: &[&Row]) -> Result<()> {
    let names: Vec<String> = rows.iter().map(|r| r.transport.clone()).collect();
    let values: Vec<u64> = rows
        .iter()
        .flat_map(|r| [r.min_ns, r.p50_ns, r.p99_ns, r.p999_ns])
        .flatten()
        .collect();
    let lo = values.iter().copied().min().unwrap_or(1).max(1) as f64 / 2.0;
    // Headroom above the highest marker for the legend.
    let hi = values.iter().copied().max().unwrap_or(10) as f64 * 12.0;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (0..names.len().saturating_sub(1)).into_segmented(),
            (lo..hi).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len())
        .x_label_formatter(&|v| label(&names, v))
        .y_desc("nanoseconds (log)")
        .y_label_formatter(&|v| crate::report::fmt_ns(*v as u64))
        .draw()
        .map_err(err)?;
    let series: [(&str, RGBColor, Percentile); 4] = [
        ("min", RGBColor(120, 120, 120), |r| r.min_ns),
        ("p50", RGBColor(31, 119, 180), |r| r.p50_ns),
        ("p99", RGBColor(255, 127, 14), |r| r.p99_ns),
        ("p99.9", RGBColor(214, 39, 40), |r| r.p999_ns),
    ];
    for (name, color, get) in series {
        chart
            .draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
                get(r)
                    .map(|v| Circle::new((SegmentValue::CenterOf(i), v as f64), 5, color.filled()))
            }))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Circle::new((x, y), 5, color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// One bar per transport.
fn bars(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    y_desc: &str,
    rows: &[&Row],
    value: fn(&Row) -> Option<f64>,
    log: bool,
) -> Result<()> {
    let names: Vec<String> = rows.iter().map(|r| r.transport.clone()).collect();
    let data: Vec<(usize, f64)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| value(r).map(|v| (i, v)))
        .collect();
    let max = data.iter().map(|d| d.1).fold(0.0, f64::max).max(1e-9);
    let min = data.iter().map(|d| d.1).fold(f64::INFINITY, f64::min);
    let x = (0..names.len().saturating_sub(1)).into_segmented();
    let color = RGBColor(31, 119, 180);
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(80);
    let fmt_x = |v: &SegmentValue<usize>| label(&names, v);
    if log {
        let lo = (min / 2.0).max(1e-9);
        let mut chart = builder
            .build_cartesian_2d(x, (lo..max * 2.0).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(names.len())
            .x_label_formatter(&fmt_x)
            .y_desc(y_desc)
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(color.filled())
                    .margin(12)
                    .baseline(lo)
                    .data(data.iter().copied()),
            )
            .map_err(err)?;
    } else {
        let mut chart = builder
            .build_cartesian_2d(x, 0.0..max * 1.15)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(names.len())
            .x_label_formatter(&fmt_x)
            .y_desc(y_desc)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(color.filled())
                    .margin(12)
                    .data(data.iter().copied()),
            )
            .map_err(err)?;
    }
    Ok(())
}
