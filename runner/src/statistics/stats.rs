//! Summary statistics of one metric over a row's requests, computed the way the kit's pandas code
//! computes them (kit-reference 5.4).
//!
//! Quantiles use numpy's default linear interpolation, step for step (including pandas passing
//! percentages to `np.percentile`, and numpy's two-sided lerp); sums use numpy's pairwise
//! summation; the standard deviation is the sample one (ddof = 1). Every value is rounded to 4
//! decimals like Python's `round(x, 4)`. Unlike the kit, nothing here is ever NaN or infinite:
//! non-finite inputs are ignored, an empty input has no statistics, and the standard deviation
//! of a single value is `None`. This module knows nothing about requests or files.

use serde::{Deserialize, Serialize};

/// The quantile levels the kit reports, with their key suffixes (`p5` ... `p99`).
pub const QUANTILES: [(f64, &str); 7] = [
    (0.05, "p5"),
    (0.25, "p25"),
    (0.5, "p50"),
    (0.75, "p75"),
    (0.9, "p90"),
    (0.95, "p95"),
    (0.99, "p99"),
];

/// The kit's statistics of one metric, each rounded to 4 decimals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// 5th percentile.
    pub p5: f64,
    /// 25th percentile.
    pub p25: f64,
    /// Median.
    pub p50: f64,
    /// 75th percentile.
    pub p75: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Sample standard deviation (ddof = 1); `None` for a single value.
    pub stddev: Option<f64>,
    /// Number of values the statistics were computed over.
    pub count: usize,
}

impl Stats {
    /// Statistics of the finite values in `values`; `None` when there are none, or when a
    /// statistic would overflow to infinity (values near `f64::MAX` are garbage, not data).
    pub fn of(values: &[f64]) -> Option<Stats> {
        // pandas sums in input order, so the mean and deviation use that order.
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if finite.is_empty() {
            return None;
        }
        let mut sorted = finite.clone();
        sorted.sort_by(f64::total_cmp);
        let q = |level: f64| round4(quantile_sorted(&sorted, level));
        let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
        let stats = Stats {
            p5: q(0.05),
            p25: q(0.25),
            p50: q(0.5),
            p75: q(0.75),
            p90: q(0.9),
            p95: q(0.95),
            p99: q(0.99),
            mean: round4(mean(&finite)),
            min: round4(min),
            max: round4(max),
            stddev: sample_std(&finite).map(round4),
            count: sorted.len(),
        };
        let all_finite = stats.quantiles().iter().all(|v| v.is_finite())
            && [stats.mean, stats.min, stats.max]
                .iter()
                .all(|v| v.is_finite());
        all_finite.then_some(stats)
    }

    /// Statistics of optional values, ignoring the `None`s (the kit's `dropna`).
    pub fn of_options(values: impl IntoIterator<Item = Option<f64>>) -> Option<Stats> {
        let present: Vec<f64> = values.into_iter().flatten().collect();
        Stats::of(&present)
    }

    /// The quantile values in [`QUANTILES`] order.
    pub fn quantiles(&self) -> [f64; 7] {
        [
            self.p5, self.p25, self.p50, self.p75, self.p90, self.p95, self.p99,
        ]
    }
}

/// Python's `round(x, 4)`: the decimal nearest to the exact binary value, ties to even; values
/// too large to have decimals are returned unchanged. Non-finite values pass through.
pub fn round4(x: f64) -> f64 {
    if !x.is_finite() || x.abs() >= 1e15 {
        return x;
    }
    format!("{x:.4}").parse().unwrap_or(x)
}

/// Linear-interpolated quantile of sorted, non-empty `sorted`, as
/// `pandas.Series.quantile(level)` computes it through `np.percentile(values, level * 100)`.
pub fn quantile_sorted(sorted: &[f64], level: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let (below, above, gamma) = quantile_ranks(sorted.len(), level);
    lerp(sorted[below], sorted[above], gamma)
}

/// The ranks (0-based, in a sorted sample of `n` values) that the quantile at `level`
/// interpolates between, and the weight of the upper one: [`quantile_sorted`] is
/// `lerp(sorted[below], sorted[above], gamma)`. `n` must be at least 1.
pub fn quantile_ranks(n: usize, level: f64) -> (usize, usize, f64) {
    // pandas hands numpy a percentage, which numpy divides back.
    let q = (level * 100.0) / 100.0;
    // numpy's `_compute_virtual_index` with alpha = beta = 1.
    let virtual_index = n as f64 * q + (1.0 - q) - 1.0;
    let last = n - 1;
    let (below, above) = if virtual_index < 0.0 {
        (0, 0)
    } else if virtual_index >= last as f64 {
        (last, last)
    } else {
        let floor = virtual_index.floor() as usize;
        (floor.min(last), (floor + 1).min(last))
    };
    (below, above, virtual_index - virtual_index.floor())
}

/// numpy's `_lerp`: interpolates from the nearer end so that `t = 1` gives exactly `b`.
pub fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// numpy's pairwise summation of a contiguous float64 array (`pairwise_sum_DOUBLE`).
pub fn pairwise_sum(values: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = values.len();
    if n < 8 {
        values.iter().fold(0.0, |acc, v| acc + v)
    } else if n <= BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&values[..8]);
        let whole = n - n % 8;
        let mut i = 8;
        while i < whole {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += values[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for v in &values[whole..] {
            res += v;
        }
        res
    } else {
        let mut half = n / 2;
        half -= half % 8;
        pairwise_sum(&values[..half]) + pairwise_sum(&values[half..])
    }
}

/// Mean as pandas computes it (pairwise sum divided by the count); NaN for no values.
pub fn mean(values: &[f64]) -> f64 {
    pairwise_sum(values) / values.len() as f64
}

/// Sample standard deviation (ddof = 1) as pandas computes it; `None` below two values.
pub fn sample_std(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let avg = mean(values);
    let squares: Vec<f64> = values.iter().map(|v| (avg - v) * (avg - v)).collect();
    let std = (pairwise_sum(&squares) / (values.len() - 1) as f64).sqrt();
    std.is_finite().then_some(std)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_hand_computed_linear_interpolation() {
        // 1..=10: index h = 9q, value = 1 + h.
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        let s = Stats::of(&values).unwrap();
        assert_eq!(s.p5, 1.45);
        assert_eq!(s.p25, 3.25);
        assert_eq!(s.p50, 5.5);
        assert_eq!(s.p75, 7.75);
        assert_eq!(s.p90, 9.1);
        assert_eq!(s.p95, 9.55);
        assert_eq!(s.p99, 9.91);
        assert_eq!(s.mean, 5.5);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 10.0);
        // Sample variance of 1..=10 is 55/6; sqrt = 3.02765...
        assert_eq!(s.stddev, Some(3.0277));
        assert_eq!(s.count, 10);
    }

    #[test]
    fn unsorted_input_and_small_samples() {
        // Sorted: [0.1, 0.2, 0.4, 0.8]; h = 3q.
        let s = Stats::of(&[0.8, 0.1, 0.4, 0.2]).unwrap();
        assert_eq!(s.p5, 0.115); // 0.1 + 0.15 * 0.1
        assert_eq!(s.p50, 0.3); // 0.2 + 0.5 * 0.2
        assert_eq!(s.p75, 0.5); // h = 2.25: 0.4 + 0.25 * 0.4
        assert_eq!(s.p99, 0.788); // h = 2.97: 0.4 + 0.97 * 0.4
        assert_eq!(s.mean, 0.375);
        // Deviations 0.425, -0.275, 0.025, -0.175: squares sum 0.2875; /3 = 0.0958333; sqrt.
        assert_eq!(s.stddev, Some(0.3096));
    }

    #[test]
    fn one_value_has_no_stddev_and_none_has_no_stats() {
        let s = Stats::of(&[2.5]).unwrap();
        assert_eq!(s.quantiles(), [2.5; 7]);
        assert_eq!((s.mean, s.min, s.max, s.stddev), (2.5, 2.5, 2.5, None));
        assert_eq!(Stats::of(&[]), None);
        assert_eq!(Stats::of(&[f64::NAN, f64::INFINITY]), None);
        assert_eq!(Stats::of(&[f64::MAX, f64::MAX]), None, "the mean overflows");
        assert_eq!(Stats::of(&[-f64::MAX, f64::MAX]).map(|s| s.p50), None);
        assert_eq!(
            Stats::of_options([None, Some(1.0), None, Some(3.0)])
                .unwrap()
                .p50,
            2.0
        );
    }

    #[test]
    fn rounding_is_pythons() {
        assert_eq!(round4(0.123456), 0.1235);
        // Python: round(2.00005, 4) == 2.0 (stored below the tie), round(1.00005, 4) == 1.0001.
        assert_eq!(round4(2.00005), 2.0);
        assert_eq!(round4(1.00005), 1.0001);
        assert_eq!(round4(0.00015), 0.0001);
        assert_eq!(round4(0.00025), 0.0003);
        assert_eq!(round4(-1.23456), -1.2346);
        assert_eq!(round4(1e300), 1e300);
        assert_eq!(format!("{:.0}", 2.5), "2", "ties go to even");
    }

    #[test]
    fn pairwise_sum_handles_every_length() {
        for n in [0usize, 1, 7, 8, 9, 16, 17, 128, 129, 1000] {
            let values: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let expected = (n * n.saturating_sub(1) / 2) as f64;
            assert_eq!(pairwise_sum(&values), expected, "n = {n}");
        }
        assert_eq!(sample_std(&[1.0]), None);
        assert_eq!(sample_std(&[3.0, 3.0, 3.0]), Some(0.0));
    }
}
