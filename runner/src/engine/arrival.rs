//! Open-loop arrival schedules: when each request of a QPS row is due.
//!
//! The whole schedule is computed before the row starts, from a seeded generator, so a run is
//! reproducible and the dispatcher only sleeps to absolute deadlines (no drift from summed
//! sleeps, kit defect 12). The first request is due at once, as in the kit; each later one
//! follows its predecessor by a gap drawn from the row's distribution with mean `1/qps`.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use coebench_plan::QpsDistribution;

/// Offsets from the row start at which requests `0..n` are due.
pub fn arrival_offsets(
    n: u32,
    qps: f64,
    distribution: QpsDistribution,
    seed: u64,
) -> Vec<Duration> {
    let mean = 1.0 / qps;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut at = 0.0_f64;
    let mut offsets = Vec::with_capacity(n as usize);
    for i in 0..n {
        if i > 0 {
            at += match distribution {
                QpsDistribution::Constant => mean,
                QpsDistribution::Uniform => rng.random_range(0.0..=2.0 * mean),
                // Inverse transform: -ln(1 - U) is exponential with mean 1; 1 - U is in (0, 1].
                QpsDistribution::Exponential => -(1.0 - rng.random::<f64>()).ln() * mean,
            };
        }
        offsets.push(crate::engine::load::saturating_duration(at));
    }
    offsets
}

/// The seed of row `row_index`'s arrivals, derived from the run seed so rows differ but repeat.
pub fn row_seed(run_seed: u64, row_index: usize) -> u64 {
    // SplitMix64 finaliser: well-spread seeds even for consecutive inputs.
    let mut z = run_seed ^ (row_index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(offsets: &[Duration]) -> Vec<f64> {
        offsets
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect()
    }

    #[test]
    fn constant_arrivals_are_evenly_spaced_from_zero() {
        let offsets = arrival_offsets(5, 4.0, QpsDistribution::Constant, 1);
        let secs: Vec<f64> = offsets.iter().map(Duration::as_secs_f64).collect();
        assert_eq!(secs, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    }

    #[test]
    fn random_arrivals_have_the_right_mean_and_shape() {
        let n = 20_000;
        let uniform = gaps(&arrival_offsets(n, 10.0, QpsDistribution::Uniform, 7));
        let mean = uniform.iter().sum::<f64>() / uniform.len() as f64;
        assert!((mean - 0.1).abs() < 0.003, "uniform mean {mean}");
        assert!(uniform.iter().all(|g| (0.0..=0.2).contains(g)));

        let exp = gaps(&arrival_offsets(n, 10.0, QpsDistribution::Exponential, 7));
        let mean = exp.iter().sum::<f64>() / exp.len() as f64;
        assert!((mean - 0.1).abs() < 0.004, "exponential mean {mean}");
        // Exponential: the standard deviation equals the mean; P(gap > mean) = e^-1.
        let above = exp.iter().filter(|g| **g > 0.1).count() as f64 / exp.len() as f64;
        assert!((above - (-1.0f64).exp()).abs() < 0.02, "tail share {above}");
    }

    #[test]
    fn schedules_repeat_for_a_seed_and_differ_across_seeds() {
        let a = arrival_offsets(100, 3.0, QpsDistribution::Exponential, 42);
        let b = arrival_offsets(100, 3.0, QpsDistribution::Exponential, 42);
        let c = arrival_offsets(100, 3.0, QpsDistribution::Exponential, 43);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(row_seed(0, 0), row_seed(0, 1));
        assert_eq!(row_seed(5, 2), row_seed(5, 2));
    }
}
