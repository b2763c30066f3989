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
