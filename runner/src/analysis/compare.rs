//! Run-to-run comparison: rows of a baseline and a candidate run matched by what they asked for
//! (model, tokens, load, image size), and for p50/p90/p99 of time to first token, end-to-end
//! latency and output tokens per second, the candidate's difference with a seeded bootstrap
//! confidence interval ([`super::bootstrap`]) and a verdict. A difference is *significant* when
//! its interval excludes 0; a significant change for the worse is a regression, and a
//! regression larger than the metric's threshold (relative and/or absolute) fails the
//! comparison, which is what a CI gate checks.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::bootstrap::{BootstrapSettings, Interval, quantile_difference};
use super::run_folder::{RowData, RunFolder, Samples};
use super::{quantile_of, sorted_finite};

pub use coebench_plan::regression::{Metric, QUANTILES, Threshold};

/// A metric's per-request values in a row's samples.
fn values(metric: Metric, samples: &Samples) -> &[f64] {
    match metric {
        Metric::Ttft => &samples.ttft_s,
        Metric::E2e => &samples.e2e_s,
        Metric::TokensPerS => &samples.output_tokens_per_s,
    }
}

/// How to compare.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// The bootstrap's resamples, confidence and seed.
    pub bootstrap: BootstrapSettings,
    /// The threshold of each metric (default: 5 % for every metric).
    pub thresholds: BTreeMap<Metric, Threshold>,
    /// Fewest successful requests a row needs on each side to be judged.
    pub min_samples: usize,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            bootstrap: BootstrapSettings::default(),
            thresholds: Metric::ALL
                .into_iter()
                .map(|m| (m, Threshold::default()))
                .collect(),
            min_samples: 5,
        }
    }
}

/// What a difference means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The interval includes 0: no evidence of a change.
    NotSignificant,
    /// Significantly better.
    Improved,
    /// Significantly worse, within the threshold.
    Regressed,
    /// Significantly worse, beyond the threshold: fails the comparison.
    RegressedBeyondThreshold,
    /// Too few successful requests on one side to judge.
    TooFewSamples,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::NotSignificant => "same",
            Verdict::Improved => "better",
            Verdict::Regressed => "worse (within threshold)",
            Verdict::RegressedBeyondThreshold => "REGRESSED",
            Verdict::TooFewSamples => "too few samples",
        })
    }
}

/// One metric's quantile compared.
#[derive(Debug, Clone, Serialize)]
pub struct MetricComparison {
    /// The metric.
    pub metric: Metric,
    /// `p50`, `p90` or `p99`.
    pub stat: &'static str,
    /// The baseline's value.
    pub baseline: Option<f64>,
    /// The candidate's value.
    pub candidate: Option<f64>,
    /// Candidate minus baseline, with its interval.
    pub difference: Option<Interval>,
    /// The difference relative to the baseline.
    pub relative: Option<f64>,
    /// What it means.
    pub verdict: Verdict,
}

/// One matched row.
#[derive(Debug, Clone, Serialize)]
pub struct RowComparison {
    /// What the row asked for, e.g. `Meta-Llama-3.3-70B-Instruct 1000/100 c4`.
    pub row: String,
    /// Its index in the baseline's plan.
    pub baseline_row: usize,
    /// Its index in the candidate's plan.
    pub candidate_row: usize,
    /// Successful requests on each side.
    pub samples: [usize; 2],
    /// Failed requests on each side.
    pub failed: [usize; 2],
    /// Each metric and quantile.
    pub metrics: Vec<MetricComparison>,
}

/// A whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The baseline run's name.
    pub baseline: String,
    /// The candidate run's name.
    pub candidate: String,
    /// The interval's coverage.
    pub confidence: f64,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Bootstrap seed.
    pub seed: u64,
    /// Matched rows, in the baseline's order.
    pub rows: Vec<RowComparison>,
    /// Rows of the baseline with no counterpart.
    pub only_in_baseline: Vec<String>,
    /// Rows of the candidate with no counterpart.
    pub only_in_candidate: Vec<String>,
}

impl Comparison {
    /// Comparisons that regressed beyond their threshold.
    pub fn failures(&self) -> impl Iterator<Item = (&RowComparison, &MetricComparison)> {
        self.rows.iter().flat_map(|row| {
            row.metrics
                .iter()
                .filter(|m| m.verdict == Verdict::RegressedBeyondThreshold)
                .map(move |m| (row, m))
        })
    }
}

/// A row's identity for matching: what it asked for.
fn row_key(data: &RowData) -> String {
    let row = &data.row;
    let load = match (row.concurrency, row.qps) {
        (Some(c), _) => format!("c{c}"),
        (None, Some(q)) => format!("qps{q}"),
        (None, None) => String::new(),
    };
    let image = row
        .image_size
        .map(|s| {
            format!(
                " image {}",
                serde_json::to_value(s)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_default();
    format!(
        "{} {}/{} {load}{image}",
        row.model, row.input_tokens, row.output_tokens
    )
}

/// Compares `candidate` with `baseline`.
pub fn compare(
    baseline: &RunFolder,
    candidate: &RunFolder,
    options: &CompareOptions,
) -> Comparison {
    // Rows with the same key pair up in plan order.
    let mut unmatched: BTreeMap<String, Vec<&RowData>> = BTreeMap::new();
    for row in &candidate.rows {
        unmatched.entry(row_key(row)).or_default().push(row);
    }
    unmatched.values_mut().for_each(|rows| rows.reverse());
    let mut rows = Vec::new();
    let mut only_in_baseline = Vec::new();
    for base in &baseline.rows {
        let key = row_key(base);
        match unmatched.get_mut(&key).and_then(Vec::pop) {
            Some(cand) => rows.push(compare_row(key, base, cand, options)),
            None => only_in_baseline.push(format!("row {}: {key}", base.index)),
        }
    }
    let mut only_in_candidate: Vec<(usize, String)> = unmatched
        .into_iter()
        .flat_map(|(key, rows)| {
            rows.into_iter()
                .map(move |r| (r.index, format!("row {}: {key}", r.index)))
        })
        .collect();
    only_in_candidate.sort();
    Comparison {
        baseline: baseline.run_name.clone(),
        candidate: candidate.run_name.clone(),
        confidence: options.bootstrap.confidence,
        resamples: options.bootstrap.resamples,
        seed: options.bootstrap.seed,
        rows,
        only_in_baseline,
        only_in_candidate: only_in_candidate.into_iter().map(|(_, s)| s).collect(),
    }
}

fn compare_row(
    key: String,
    base: &RowData,
    cand: &RowData,
    options: &CompareOptions,
) -> RowComparison {
    let mut metrics = Vec::new();
    for metric in Metric::ALL {
        let (b, c) = (values(metric, &base.samples), values(metric, &cand.samples));
        for (stat, level) in QUANTILES {
            metrics.push(compare_metric(metric, stat, level, b, c, options));
        }
    }
    RowComparison {
        row: key,
        baseline_row: base.index,
        candidate_row: cand.index,
        samples: [base.samples.ttft_s.len(), cand.samples.ttft_s.len()],
        failed: [base.samples.failed, cand.samples.failed],
        metrics,
    }
}

fn compare_metric(
    metric: Metric,
    stat: &'static str,
    level: f64,
    baseline: &[f64],
    candidate: &[f64],
    options: &CompareOptions,
) -> MetricComparison {
    let quantile = |values: &[f64]| quantile_of(&sorted_finite(values.iter().copied()), level);
    let (b, c) = (quantile(baseline), quantile(candidate));
    let enough = baseline.len() >= options.min_samples && candidate.len() >= options.min_samples;
    let difference = enough
        .then(|| quantile_difference(baseline, candidate, level, &options.bootstrap))
        .flatten();
    let relative = b
        .zip(c)
        .filter(|(b, _)| *b != 0.0)
        .map(|(b, c)| (c - b) / b.abs());
    let verdict = match (difference, b) {
        (Some(d), Some(base)) if d.excludes_zero() => {
            let worse_by = metric.worse_by(0.0, d.estimate);
            if worse_by <= 0.0 {
                Verdict::Improved
            } else if options
                .thresholds
                .get(&metric)
                .is_none_or(|t| t.exceeded(worse_by, base))
            {
                Verdict::RegressedBeyondThreshold
            } else {
                Verdict::Regressed
            }
        }
        (Some(_), _) => Verdict::NotSignificant,
        _ => Verdict::TooFewSamples,
    };
    MetricComparison {
        metric,
        stat,
        baseline: b,
        candidate: c,
        difference,
        relative,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A log-normal-ish latency sample: `scale * exp(0.3 * z)`.
    fn latencies(rng: &mut StdRng, n: usize, scale: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                // Box-Muller.
                let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
                let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
                scale * (0.3 * z).exp()
            })
            .collect()
    }

    fn options(seed: u64) -> CompareOptions {
        CompareOptions {
            bootstrap: BootstrapSettings {
                resamples: 400,
                confidence: 0.95,
                seed,
            },
            ..CompareOptions::default()
        }
    }

    #[test]
    fn equal_distributions_are_significant_at_about_the_stated_rate() {
        let mut rng = StdRng::seed_from_u64(42);
        let trials: usize = 200;
        let significant = (0..trials)
            .filter(|&t| {
                let a = latencies(&mut rng, 200, 1.0);
                let b = latencies(&mut rng, 200, 1.0);
                let m = compare_metric(Metric::Ttft, "p50", 0.5, &a, &b, &options(t as u64));
                !matches!(m.verdict, Verdict::NotSignificant)
            })
            .count();
        // 5 % expected; allow for the bootstrap's slight anticonservatism and chance.
        assert!(
            significant <= trials * 10 / 100,
            "{significant} of {trials} significant"
        );
    }

    #[test]
    fn a_known_shift_is_detected_in_the_right_direction() {
        let mut rng = StdRng::seed_from_u64(7);
        let a = latencies(&mut rng, 200, 1.0);
        let slower = latencies(&mut rng, 200, 1.2);
        let m = compare_metric(Metric::Ttft, "p50", 0.5, &a, &slower, &options(1));
        assert_eq!(m.verdict, Verdict::RegressedBeyondThreshold, "{m:?}");
        let d = m.difference.unwrap();
        assert!(d.low > 0.0 && (0.1..0.3).contains(&d.estimate), "{d:?}");
        // The same shift in tokens per second is an improvement.
        let m = compare_metric(Metric::TokensPerS, "p50", 0.5, &a, &slower, &options(1));
        assert_eq!(m.verdict, Verdict::Improved);
        // A 20 % regression within a 50 % threshold is reported, not failed.
        let mut lenient = options(1);
        lenient
            .thresholds
            .insert(Metric::Ttft, Threshold::parse("50%").unwrap());
        let m = compare_metric(Metric::Ttft, "p50", 0.5, &a, &slower, &lenient);
        assert_eq!(m.verdict, Verdict::Regressed);
        // Too few requests are not judged.
        let m = compare_metric(Metric::Ttft, "p50", 0.5, &a[..3], &slower, &options(1));
        assert_eq!(m.verdict, Verdict::TooFewSamples);
    }
}
