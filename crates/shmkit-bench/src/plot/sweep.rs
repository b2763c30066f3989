//! The `stream` panel when several message sizes ran: messages per second
//! against the message size, one line per transport (log scale), with each
//! point's GB/s written next to it.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{err, legend, log_panel, msgs_range, transports_of, Colors, Unit};
use crate::report::Row;
use anyhow::Result;

/// Draws the sweep of `rows` (every size of the stream scenario) on `area`.
pub(super) fn stream_by_size(
    area: &DrawingArea<SVGBackend, Shift>,
    sizes: &[usize],
    rows: &[&Row],
    colors: &Colors,
) -> Result<()> {
    let names: Vec<String> = sizes.iter().map(|n| format!("{n} B")).collect();
    let transports = transports_of(rows);
    let range = msgs_range(rows);
    let unit = Unit::rate(range.1 / 8.0);
    let mut chart = log_panel(
        area,
        "stream: messages per second by message size (labels: GB/s)",
        &names,
        range,
        &format!("messages per second, {} (log)", unit.name),
        &|v| unit.tick(*v),
    )?;
    for &t in &transports {
        let color = colors.of(t);
        let points: Vec<(SegmentValue<usize>, f64, f64)> = sizes
            .iter()
            .enumerate()
            .filter_map(|(x, &n)| {
                let r = rows.iter().find(|r| r.transport == t && r.msg_size == n)?;
                let v = r.msgs_per_s.filter(|&v| v > 0.0)?;
                Some((SegmentValue::CenterOf(x), v, v * n as f64 / 1e9))
            })
            .collect();
        let line: Vec<(SegmentValue<usize>, f64)> =
            points.iter().map(|p| (p.0.clone(), p.1)).collect();
        chart
            .draw_series(std::iter::once(PathElement::new(
                line,
                color.stroke_width(2),
            )))
            .map_err(err)?
            .label(t)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.into_iter().map(|(x, v, gb)| {
                EmptyElement::at((x, v))
                    + Circle::new((0, 0), 4, color.filled())
                    + Text::new(format!("{gb:.2}"), (6, -6), ("sans-serif", 11))
            }))
            .map_err(err)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}
