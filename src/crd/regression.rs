//! Regression detection settings of a `CoeBenchmark` and what the operator keeps for them: which
//! run each succeeded run is compared with, and how much worse a metric may get.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::benchmark::ResultSummary;

/// Compare each succeeded run with a baseline run and set its `Regressed` condition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegressionSpec {
    /// The run every succeeded run is compared with (a `CoeBenchmarkRun` of the namespace that
    /// succeeded). Default: the benchmark's previous successful run, whose rows the benchmark
    /// keeps in `status.lastResult`, so deleting it for the history limits changes nothing.
    /// A named run's rows are kept in `status.regression.baseline` once read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub baseline_run: Option<String>,
    /// How much worse each metric may get before a run counts as regressed. Default 5 % for
    /// every metric.
    #[serde(default)]
    pub max_regression: MaxRegression,
}

/// The largest change for the worse of each metric (client side, each compared at p50, p90 and
/// p99), in the syntax of `coebench compare --max-regression`: `10%` (relative), `0.05`
/// (absolute, in the metric's unit) or `10%,0.05` (both must be exceeded). A metric left out
/// allows 5 %.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
pub struct MaxRegression {
    /// Time to first token (seconds when absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^ *[0-9.eE+-]+ *%? *(, *[0-9.eE+-]+ *%? *)?$")
    )]
    pub ttft: Option<String>,
    /// End-to-end latency (seconds when absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^ *[0-9.eE+-]+ *%? *(, *[0-9.eE+-]+ *%? *)?$")
    )]
    pub e2e: Option<String>,
    /// Output tokens per second per request, where lower is worse (tokens/s when absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^ *[0-9.eE+-]+ *%? *(, *[0-9.eE+-]+ *%? *)?$")
    )]
    pub tokens_per_s: Option<String>,
}

impl MaxRegression {
    /// The limits set, as (metric name, limit).
    pub fn limits(&self) -> Vec<(&'static str, &str)> {
        [
            ("ttft", &self.ttft),
            ("e2e", &self.e2e),
            ("tokens_per_s", &self.tokens_per_s),
        ]
        .into_iter()
        .filter_map(|(name, limit)| limit.as_deref().map(|l| (name, l)))
        .collect()
    }
}

/// What the operator keeps to compare runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegressionStatus {
    /// The named baseline run's numbers (`spec.regression.baselineRun`), kept once read so
    /// runs are still compared with it after it is deleted. Absent when comparing with the
    /// previous successful run (its numbers are `status.lastResult`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<ResultSummary>,
    /// The last run compared; its verdict is the benchmark's `Regressed` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_compared_run: Option<String>,
}
