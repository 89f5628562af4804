//! Goodput: the share of a row's requests that met every per-request latency objective (the
//! row's `objectives`, else the run's `options.objectives`). Every request sent counts: a failed
//! or timed-out request is a miss, where the kit and most peers leave failures out and so
//! overstate it. And the percentile objectives (`objectives.percentiles`, e.g. p99 TTFT at most
//! 0.5 s): whether the row met each, with failed requests counted as slower than any bound.

use coebench_plan::{ObjectiveMetric, Objectives, PercentileObjective};
use serde::Serialize;

use crate::statistics::record_digest::RecordDigest;
use crate::statistics::stats::{quantile_sorted, round4};

/// A row's goodput.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Goodput {
    /// Requests that succeeded and met every objective.
    pub met: u32,
    /// Requests counted: every request sent.
    pub counted: u32,
    /// `met / counted` (4 decimals); `None` when nothing was sent.
    pub share: Option<f64>,
}

/// Whether one request met `objectives` (a failure never does).
fn meets(digest: &RecordDigest, objectives: &Objectives) -> bool {
    let within = |value: Option<f64>, limit: Option<f64>| match limit {
        None => true,
        Some(limit) => value.is_some_and(|v| v <= limit),
    };
    digest.is_success()
        && within(digest.client_ttft_s, objectives.ttft_seconds)
        && within(digest.client_end_to_end_latency_s, objectives.e2e_seconds)
        && within(
            digest.client_mean_inter_token_latency_s,
            objectives.inter_token_latency_seconds,
        )
}

/// The goodput of `digests` under `objectives`.
pub fn goodput(digests: &[RecordDigest], objectives: &Objectives) -> Goodput {
    let met = digests.iter().filter(|d| meets(d, objectives)).count();
    let counted = digests.len();
    Goodput {
        met: u32::try_from(met).unwrap_or(u32::MAX),
        counted: u32::try_from(counted).unwrap_or(u32::MAX),
        share: (counted > 0).then(|| round4(met as f64 / counted as f64)),
    }
}

/// One percentile objective, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PercentileCheck {
    /// `ttft`, `e2e` or `interTokenLatency`.
    pub metric: &'static str,
    /// The percentile (e.g. 99).
    pub percentile: f64,
    /// The bound, in seconds.
    pub max_seconds: f64,
    /// The row's value at that percentile (4 decimals), failed requests (and successes without
    /// the value) counting as slower than any bound; `None` when that puts it past every
    /// measured value, or nothing was sent.
    pub value_seconds: Option<f64>,
    /// Whether the value is at most the bound.
    pub met: bool,
}

/// Whether a row met its percentile objectives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PercentileObjectivesMet {
    /// Every objective held.
    pub met: bool,
    /// Each objective, in the plan's order.
    pub checks: Vec<PercentileCheck>,
}

/// Checks `objectives` on the row's `digests`.
pub fn percentile_objectives(
    digests: &[RecordDigest],
    objectives: &[PercentileObjective],
) -> PercentileObjectivesMet {
    let checks: Vec<PercentileCheck> = objectives
        .iter()
        .map(|o| {
            let mut values: Vec<f64> = digests
                .iter()
                .map(|d| {
                    let value = match o.metric {
                        ObjectiveMetric::Ttft => d.client_ttft_s,
                        ObjectiveMetric::E2e => d.client_end_to_end_latency_s,
                        ObjectiveMetric::InterTokenLatency => d.client_mean_inter_token_latency_s,
                    };
                    value
                        .filter(|v| d.is_success() && v.is_finite())
                        .unwrap_or(f64::INFINITY)
                })
                .collect();
            values.sort_by(f64::total_cmp);
            let value = (!values.is_empty())
                .then(|| quantile_sorted(&values, o.percentile / 100.0))
                .filter(|v| v.is_finite());
            PercentileCheck {
                metric: o.metric.name(),
                percentile: o.percentile,
                max_seconds: o.max_seconds,
                value_seconds: value.map(round4),
                met: value.is_some_and(|v| v <= o.max_seconds),
            }
        })
        .collect();
    PercentileObjectivesMet {
        met: checks.iter().all(|c| c.met),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_objectives_hold_or_not_with_failures_counted_as_slowest() {
        // 100 requests: TTFT 0.01 .. 1.00 s.
        let mut digests: Vec<RecordDigest> = (1..=100)
            .map(|i| request(f64::from(i) / 100.0, 2.0, 0.01, false))
            .collect();
        let p = |metric, percentile, max_seconds| PercentileObjective {
            metric,
            percentile,
            max_seconds,
        };
        let r = percentile_objectives(
            &digests,
            &[
                p(ObjectiveMetric::Ttft, 50.0, 0.6),
                p(ObjectiveMetric::E2e, 99.0, 2.0),
            ],
        );
        assert!(r.met, "{r:?}");
        assert_eq!(r.checks[0].value_seconds, Some(0.505));
        assert_eq!(r.checks[1].metric, "e2e");
        // p99 TTFT is 0.9901 s: over a 0.5 s bound.
        let r = percentile_objectives(&digests, &[p(ObjectiveMetric::Ttft, 99.0, 0.5)]);
        assert!(!r.met && !r.checks[0].met, "{r:?}");
        assert_eq!(r.checks[0].value_seconds, Some(0.9901));
        // Two fast requests failing make p99 infinite: a miss with no value.
        digests[0].error_code = Some("500".into());
        digests[1].error_code = Some("timeout".into());
        let r = percentile_objectives(&digests, &[p(ObjectiveMetric::E2e, 99.0, 10.0)]);
        assert_eq!((r.met, r.checks[0].value_seconds), (false, None));
        // ...while p50 still holds.
        let r = percentile_objectives(&digests, &[p(ObjectiveMetric::E2e, 50.0, 10.0)]);
        assert!(r.met, "{r:?}");
        assert!(!percentile_objectives(&[], &[p(ObjectiveMetric::Ttft, 50.0, 1.0)]).met);
    }

    fn request(ttft: f64, e2e: f64, itl: f64, failed: bool) -> RecordDigest {
        RecordDigest {
            error_code: failed.then(|| "500".to_string()),
            client_ttft_s: Some(ttft),
            client_end_to_end_latency_s: Some(e2e),
            client_mean_inter_token_latency_s: Some(itl),
            ..RecordDigest::default()
        }
    }

    #[test]
    fn every_objective_must_hold_and_failures_are_misses() {
        let digests = [
            request(0.1, 1.0, 0.01, false), // meets all
            request(0.6, 1.0, 0.01, false), // TTFT too slow
            request(0.1, 3.0, 0.01, false), // e2e too slow
            request(0.1, 1.0, 0.05, false), // inter-token too slow
            request(0.1, 1.0, 0.01, true),  // fast, but failed
        ];
        let all = Objectives {
            ttft_seconds: Some(0.5),
            e2e_seconds: Some(2.0),
            inter_token_latency_seconds: Some(0.02),
            percentiles: Vec::new(),
        };
        assert_eq!(
            goodput(&digests, &all),
            Goodput {
                met: 1,
                counted: 5,
                share: Some(0.2)
            }
        );
        let ttft_only = Objectives {
            ttft_seconds: Some(0.5),
            ..Objectives::default()
        };
        assert_eq!(goodput(&digests, &ttft_only).met, 3);
        let missing = RecordDigest {
            client_ttft_s: None,
            ..request(0.1, 1.0, 0.01, false)
        };
        assert_eq!(goodput(&[missing], &ttft_only).met, 0, "no TTFT is no pass");
        assert_eq!(goodput(&[], &all).share, None);
    }
}
