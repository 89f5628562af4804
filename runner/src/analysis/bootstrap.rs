//! The percentile bootstrap of a difference of quantiles between two independent samples: how
//! much `quantile(candidate) - quantile(baseline)` could move by chance, as a confidence
//! interval. Seeded, so the same inputs give the same interval.
//!
//! Each resample draws `n` indices with replacement and counts them per index of the sorted
//! sample, so its quantile is read off the counts in O(n) without sorting. Quantiles use the
//! same linear interpolation as the row statistics ([`quantile_sorted`]).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::sorted_finite;
use crate::statistics::stats::{lerp, quantile_ranks, quantile_sorted};

/// A difference and its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Interval {
    /// The difference measured on the samples themselves.
    pub estimate: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

impl Interval {
    /// Whether the interval excludes 0: the difference is unlikely to be chance.
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// How the bootstrap runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootstrapSettings {
    /// Resamples drawn.
    pub resamples: usize,
    /// Coverage of the interval, e.g. 0.95.
    pub confidence: f64,
    /// Seed of the random draws.
    pub seed: u64,
}

impl Default for BootstrapSettings {
    fn default() -> Self {
        BootstrapSettings {
            resamples: 2000,
            confidence: 0.95,
            seed: 1,
        }
    }
}

/// The quantile at `level` of a resample of `sorted` given by `counts` (how often each index was
/// drawn; they sum to `sorted.len()`).
fn resampled_quantile(sorted: &[f64], counts: &[u32], level: f64) -> f64 {
    let (below, above, gamma) = quantile_ranks(sorted.len(), level);
    // The resample's values at ranks `below` and `above`: walk the counts once.
    let (mut lower, mut upper) = (None, None);
    let mut seen = 0usize;
    for (index, &count) in counts.iter().enumerate() {
        seen += count as usize;
        if lower.is_none() && seen > below {
            lower = Some(sorted[index]);
        }
        if seen > above {
            upper = Some(sorted[index]);
            break;
        }
    }
    let last = sorted[sorted.len() - 1];
    lerp(lower.unwrap_or(last), upper.unwrap_or(last), gamma)
}

fn draw(rng: &mut StdRng, counts: &mut [u32]) {
    counts.iter_mut().for_each(|c| *c = 0);
    let n = counts.len();
    for _ in 0..n {
        counts[rng.random_range(0..n)] += 1;
    }
}

/// The bootstrap interval of `quantile(candidate, level) - quantile(baseline, level)`; `None`
/// when either sample is empty.
pub fn quantile_difference(
    baseline: &[f64],
    candidate: &[f64],
    level: f64,
    settings: &BootstrapSettings,
) -> Option<Interval> {
    if baseline.is_empty() || candidate.is_empty() {
        return None;
    }
    let (base, cand) = (
        sorted_finite(baseline.iter().copied()),
        sorted_finite(candidate.iter().copied()),
    );
    if base.is_empty() || cand.is_empty() {
        return None;
    }
    let estimate = quantile_sorted(&cand, level) - quantile_sorted(&base, level);
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let (mut base_counts, mut cand_counts) = (vec![0u32; base.len()], vec![0u32; cand.len()]);
    let mut differences: Vec<f64> = (0..settings.resamples.max(1))
        .map(|_| {
            draw(&mut rng, &mut base_counts);
            draw(&mut rng, &mut cand_counts);
            resampled_quantile(&cand, &cand_counts, level)
                - resampled_quantile(&base, &base_counts, level)
        })
        .collect();
    differences.sort_by(f64::total_cmp);
    let tail = (1.0 - settings.confidence.clamp(0.0, 1.0)) / 2.0;
    Some(Interval {
        estimate,
        low: quantile_sorted(&differences, tail),
        high: quantile_sorted(&differences, 1.0 - tail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resample_that_is_the_sample_has_the_samples_quantiles() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 10.0];
        let once = [1, 1, 1, 1, 1];
        for level in [0.0, 0.25, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(
                resampled_quantile(&sorted, &once, level),
                quantile_sorted(&sorted, level),
                "level {level}"
            );
        }
        // Index 0 drawn three times, index 4 twice: the resample is [1, 1, 1, 10, 10].
        let counts = [3, 0, 0, 0, 2];
        assert_eq!(resampled_quantile(&sorted, &counts, 0.5), 1.0);
        assert_eq!(resampled_quantile(&sorted, &counts, 0.75), 10.0);
        assert_eq!(resampled_quantile(&sorted, &counts, 0.625), 5.5);
    }

    #[test]
    fn the_interval_is_seeded() {
        let a: Vec<f64> = (0..50).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..50).map(|i| i as f64 + 5.0).collect();
        let settings = BootstrapSettings::default();
        let first = quantile_difference(&a, &b, 0.5, &settings).unwrap();
        assert_eq!(first, quantile_difference(&a, &b, 0.5, &settings).unwrap());
        assert_eq!(first.estimate, 5.0);
        assert!(first.low <= 5.0 && 5.0 <= first.high, "{first:?}");
        assert!(quantile_difference(&[], &b, 0.5, &settings).is_none());
    }
}
