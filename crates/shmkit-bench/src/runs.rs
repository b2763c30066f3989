//! Repeated runs combined into one report: the median of every figure, the
//! spread of the main one, and ratios taken *within* each run before their
//! median is taken.
//!
//! On a shared machine the load drifts over minutes. A ratio between two
//! transports measured a few seconds apart in the same run cancels most of
//! that drift; a ratio of two medians (each from a different mix of quiet
//! and busy moments) does not. Hence `vs_pipe` and `vs_floor` are medians of
//! per-run ratios.

use crate::report::{floor_of, ratio, Row};

/// Combines `runs[r][i]` (run `r` of plan entry `i`; every run holds the
/// same entries in the same order) into one row per entry.
///
/// A row that failed in some runs is the median of the others, with
/// `failed_runs` and `last_failure` set; a row that failed in every run
/// keeps the last error in `error`.
pub(crate) fn combine(runs: &[Vec<Row>]) -> Vec<Row> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    (0..first.len())
        .map(|i| {
            let samples: Vec<&Row> = runs.iter().map(|run| &run[i]).collect();
            let mut row = median_row(&samples);
            let ratios = |base: &str| -> Vec<f64> {
                runs.iter()
                    .filter_map(|run| {
                        let this = &run[i];
                        let base = run
                            .iter()
                            .find(|r| r.transport == base && r.same_measure(this))?;
                        ratio(this, base)
                    })
                    .collect()
            };
            row.vs_pipe = median_f64(ratios("pipe"));
            row.vs_floor = median_f64(ratios(floor_of(row.scenario)));
            row
        })
        .collect()
}

/// One entry's runs folded into one row (ratios left unset).
fn median_row(samples: &[&Row]) -> Row {
    let last = samples.last().expect("at least one run");
    let ok: Vec<&Row> = samples
        .iter()
        .copied()
        .filter(|r| r.error.is_none())
        .collect();
    let failed = samples.len() - ok.len();
    if ok.is_empty() {
        let mut row = Row::failed(
            last.scenario,
            &last.transport,
            last.msg_size,
            last.readers,
            last.error.clone().unwrap_or_default(),
        );
        row.rate = last.rate;
        row.failed_runs = failed;
        return row;
    }
    let u = |get: fn(&Row) -> Option<u64>| median_u64(ok.iter().filter_map(|r| get(r)).collect());
    let f = |get: fn(&Row) -> Option<f64>| median_f64(ok.iter().filter_map(|r| get(r)).collect());
    let main: Vec<f64> = ok.iter().filter_map(|r| r.main_figure()).collect();
    Row {
        scenario: last.scenario,
        transport: last.transport.clone(),
        msg_size: last.msg_size,
        min_ns: u(|r| r.min_ns),
        p50_ns: u(|r| r.p50_ns),
        p99_ns: u(|r| r.p99_ns),
        p999_ns: u(|r| r.p999_ns),
        max_ns: u(|r| r.max_ns),
        msgs_per_s: f(|r| r.msgs_per_s),
        bytes_per_s: f(|r| r.bytes_per_s),
        readers: last.readers,
        total_msgs_per_s: f(|r| r.total_msgs_per_s),
        slowest_msgs_per_s: f(|r| r.slowest_msgs_per_s),
        published_per_s: f(|r| r.published_per_s),
        lost: f(|r| r.lost),
        rate: last.rate,
        reader_cpu: f(|r| r.reader_cpu),
        error: None,
        runs: ok.len(),
        failed_runs: failed,
        last_failure: samples.iter().rev().find_map(|r| r.error.clone()),
        spread_of: last.spread_of,
        spread_min: main.iter().copied().reduce(f64::min),
        spread_max: main.iter().copied().reduce(f64::max),
        vs_pipe: None,
        vs_floor: None,
    }
}

/// The median; for an even count, the mean of the middle two (rounded).
fn median_u64(mut v: Vec<u64>) -> Option<u64> {
    v.sort_unstable();
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        // In u128: the sum of two u64 does not overflow; half up.
        _ => Some((v[n / 2 - 1] as u128 + v[n / 2] as u128).div_ceil(2) as u64),
    }
}

/// The median; for an even count, the mean of the middle two.
fn median_f64(mut v: Vec<f64>) -> Option<f64> {
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Latency, Measurement};
    use crate::Scenario;

    fn rtt(transport: &str, p50: u64) -> Row {
        let m = Measurement {
            count: 1_000_000_000 / p50,
            elapsed_ns: 1_000_000_000,
            latency: Some(Latency {
                min_ns: p50 / 2,
                p50_ns: p50,
                p99_ns: p50 * 2,
                p999_ns: p50 * 3,
                max_ns: p50 * 10,
            }),
            ..Measurement::default()
        };
        Row::from_measurement(Scenario::Rtt, transport, 8, &m)
    }

    #[test]
    fn medians() {
        assert_eq!(median_u64(vec![]), None);
        assert_eq!(median_u64(vec![5, 1, 3]), Some(3));
        assert_eq!(median_u64(vec![4, 1, 3, 100]), Some(4)); // (3 + 4) / 2, rounded up
        assert_eq!(median_u64(vec![u64::MAX, u64::MAX]), Some(u64::MAX));
        assert_eq!(median_f64(vec![2.0, 1.0]), Some(1.5));
    }

    #[test]
    fn medians_spread_and_per_run_ratios() {
        // The machine gets busier every run: both transports slow down, the
        // ratio between them stays 100.
        let runs = vec![
            vec![rtt("raw-spin", 200), rtt("pipe", 20_000)],
            vec![rtt("raw-spin", 400), rtt("pipe", 40_000)],
            vec![rtt("raw-spin", 900), rtt("pipe", 90_000)],
        ];
        let rows = combine(&runs);
        let spin = &rows[0];
        assert_eq!(spin.p50_ns, Some(400));
        assert_eq!(spin.min_ns, Some(200));
        assert_eq!(spin.runs, 3);
        assert_eq!(spin.failed_runs, 0);
        assert_eq!(
            (spin.spread_min, spin.spread_max),
            (Some(200.0), Some(900.0))
        );
        assert_eq!(spin.vs_pipe, Some(100.0));
        assert_eq!(spin.vs_floor, Some(1.0));
        assert_eq!(rows[1].vs_floor, Some(0.01));
    }

    #[test]
    fn failed_runs_are_left_out_or_reported() {
        let fail = |t: &str, e: &str| Row::failed(Scenario::Rtt, t, 8, None, e.into());
        let runs = vec![
            vec![rtt("raw-spin", 200), fail("pipe", "first")],
            vec![fail("raw-spin", "flaky"), fail("pipe", "second")],
            vec![rtt("raw-spin", 300), fail("pipe", "third")],
        ];
        let rows = combine(&runs);
        let spin = &rows[0];
        assert_eq!(spin.error, None);
        assert_eq!((spin.runs, spin.failed_runs), (2, 1));
        assert_eq!(spin.p50_ns, Some(250));
        assert_eq!(spin.last_failure.as_deref(), Some("flaky"));
        assert_eq!(spin.vs_pipe, None);
        let pipe = &rows[1];
        assert_eq!(pipe.error.as_deref(), Some("third"));
        assert_eq!((pipe.runs, pipe.failed_runs), (0, 3));
        assert_eq!(pipe.p50_ns, None);
        assert_eq!(pipe.spread_min, None);
    }
}
