//! What the panels share: each transport's colour (shmkit's own in a warm
//! family, baselines and peers in a cool one, the same in every panel).

use plotters::style::RGBColor;

use crate::report::Report;

/// shmkit's own transports (names starting with `shmkit`): oranges and reds.
pub(super) const SHMKIT: [RGBColor; 6] = [
    RGBColor(230, 85, 13),
    RGBColor(165, 15, 21),
    RGBColor(253, 141, 60),
    RGBColor(140, 45, 4),
    RGBColor(251, 106, 74),
    RGBColor(203, 24, 29),
];

/// Baselines and peers: blues, greys and a teal.
pub(super) const OTHERS: [RGBColor; 6] = [
    RGBColor(49, 130, 189),
    RGBColor(115, 115, 115),
    RGBColor(8, 81, 156),
    RGBColor(107, 174, 214),
    RGBColor(37, 37, 37),
    RGBColor(102, 194, 164),
];

/// Whether `transport` is one of shmkit's own.
pub(super) fn is_shmkit(transport: &str) -> bool {
    transport.starts_with("shmkit")
}

/// The colour of every transport of a report, fixed for the whole chart:
/// the n-th shmkit transport (in the report's order) takes `SHMKIT[n]`, the
/// n-th other one `OTHERS[n]`.
pub(super) struct Colors {
    assigned: Vec<(String, RGBColor)>,
}

impl Colors {
    pub(super) fn new(report: &Report) -> Self {
        let mut assigned: Vec<(String, RGBColor)> = Vec::new();
        let (mut own, mut others) = (0, 0);
        for r in &report.results {
            if assigned.iter().any(|(t, _)| *t == r.transport) {
                continue;
            }
            let color = if is_shmkit(&r.transport) {
                own += 1;
                SHMKIT[(own - 1) % SHMKIT.len()]
            } else {
                others += 1;
                OTHERS[(others - 1) % OTHERS.len()]
            };
            assigned.push((r.transport.clone(), color));
        }
        Colors { assigned }
    }

    /// The colour of `transport` (one not in the report gets its family's
    /// first).
    pub(super) fn of(&self, transport: &str) -> RGBColor {
        self.assigned
            .iter()
            .find(|(t, _)| t == transport)
            .map(|(_, c)| *c)
            .unwrap_or(if is_shmkit(transport) {
                SHMKIT[0]
            } else {
                OTHERS[0]
            })
    }
}

/// The unit an axis is labelled in, and its ticks written in: chosen from
/// the largest value drawn, so the ticks read `0.5`, `2`, `10`, not `5e5`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Unit {
    /// Values per unit: 1e3 for µs over nanoseconds, 1e6 for M/s.
    scale: f64,
    /// `ns`, `µs`, `ms`, `s`; `/s`, `k/s`, `M/s`, `G/s`.
    pub(super) name: &'static str,
}

impl Unit {
    /// The unit of latencies up to `max_ns` nanoseconds.
    pub(super) fn latency(max_ns: f64) -> Unit {
        let (scale, name) = [(1e9, "s"), (1e6, "ms"), (1e3, "µs")]
            .into_iter()
            .find(|&(scale, _)| max_ns >= scale)
            .unwrap_or((1.0, "ns"));
        Unit { scale, name }
    }

    /// The unit of rates (per second) up to `max`.
    pub(super) fn rate(max: f64) -> Unit {
        let (scale, name) = [(1e9, "G/s"), (1e6, "M/s"), (1e3, "k/s")]
            .into_iter()
            .find(|&(scale, _)| max >= scale)
            .unwrap_or((1.0, "/s"));
        Unit { scale, name }
    }

    /// A tick at `v` (in the axis's raw values), written in this unit with
    /// two significant digits at most below 10: `0.05`, `2.5`, `20`.
    pub(super) fn tick(&self, v: f64) -> String {
        let x = v / self.scale;
        let s = if x >= 10.0 || x <= 0.0 {
            format!("{x:.0}")
        } else {
            let decimals = (1 - x.log10().floor() as i32).max(1) as usize;
            format!("{x:.decimals$}")
        };
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}
