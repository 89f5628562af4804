//! `CoeBenchmark`: a benchmark definition that asks for runs.

use coebench_plan::{Row, RunOptions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ConfigMapKeyRef, Endpoint, ResultsSpec, RowStatus, RunPhase, RunnerSpec};
use super::regression::{RegressionSpec, RegressionStatus};

/// What to benchmark, with which rows and options, and how to run it in the cluster.
///
/// Without a schedule the operator starts one run when the benchmark is created; with one, a
/// run per slot of the schedule (CronJob semantics). Setting the annotation
/// `coebench.dev/run-now` to a new value asks for one more run either way.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "coebench.dev",
    version = "v1alpha1",
    kind = "CoeBenchmark",
    namespaced,
    shortname = "coeb",
    category = "coebench",
    status = "CoeBenchmarkStatus",
    doc = "A benchmark of an LLM endpoint serving many models: its endpoint, rows and options. Each execution is a CoeBenchmarkRun.",
    cel,
    validation = Rule::new("size(self.metadata.name) <= 52").message("a CoeBenchmark name has at most 52 characters, so that its runs' names fit in 63"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Phase of the last run"),
    printcolumn(name = "Last Run", type_ = "string", json_path = ".status.lastRun"),
    printcolumn(name = "Rows", type_ = "integer", json_path = ".status.rowCount"),
    printcolumn(name = "P50 TTFT", type_ = "string", json_path = ".status.lastResult.ttftP50", description = "Client-side median time to first token of the last successful run (range over rows)"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule", description = "Cron schedule of recurring runs"),
    printcolumn(name = "Next", type_ = "string", json_path = ".status.nextScheduleTime", description = "When the next scheduled run is due (empty when suspended or unscheduled)"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend", priority = 1),
    printcolumn(name = "Last", type_ = "date", json_path = ".status.lastScheduleTime", priority = 1, description = "When the last scheduled run was due"),
    printcolumn(name = "Regressed", type_ = "string", json_path = ".status.conditions[?(@.type==\"Regressed\")].status", description = "Whether the last run compared with the baseline regressed (spec.regression)"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.rows) != has(self.rowsFrom)").message("set exactly one of rows and rowsFrom"))]
#[x_kube(validation = Rule::new("!has(self.rows) || self.rows.all(r, has(r.concurrency) != has(r.qps))").message("each row sets exactly one of concurrency and qps"))]
#[x_kube(validation = Rule::new("!has(self.rows) || self.rows.all(r, !has(r.qps) || r.qps > 0.0)").message("qps must be above 0"))]
#[x_kube(validation = Rule::new("!has(self.rows) || self.rows.all(r, !has(r.maxSequenceLength) || r.inputTokens + r.outputTokens <= r.maxSequenceLength)").message("inputTokens + outputTokens must fit in maxSequenceLength"))]
#[x_kube(validation = Rule::new("!has(self.rows) || self.rows.all(r, !has(r.workers) || r.workers <= (has(self.workers) ? self.workers : 1))").message("a row's workers must be at most spec.workers (default 1): raise spec.workers or lower the row's"))]
pub struct CoeBenchmarkSpec {
    /// The endpoint to benchmark.
    pub endpoint: Endpoint,
    /// The model-config rows, run in order. Exactly one of `rows` and `rowsFrom` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1000))]
    pub rows: Option<Vec<Row>>,
    /// Rows from a kit model-configs CSV in a ConfigMap, read when a run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_from: Option<RowsFrom>,
    /// Run-wide options (timeouts, delay between rows, seed, prompts, tokenizer).
    #[serde(default)]
    pub options: RunOptions,
    /// Settings of the runner Pod.
    #[serde(default)]
    pub runner: RunnerSpec,
    /// Where results are kept. Without it results go to an emptyDir and are lost with the Pod
    /// (the status still carries each row's headline numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<ResultsSpec>,
    /// Seconds a finished runner Job (and its Pod) is kept. Default 86400 (one day). The
    /// operator reads the run's report from the Pod, so keep this above the longest time the
    /// operator may be down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i32>,
    /// Succeeded runs to keep. Default 3.
    #[serde(default = "default_successful_history")]
    #[schemars(range(min = 0, max = 100))]
    pub successful_runs_history_limit: i32,
    /// Failed runs to keep. Default 1.
    #[serde(default = "default_failed_history")]
    #[schemars(range(min = 0, max = 100))]
    pub failed_runs_history_limit: i32,
    /// Cron schedule of recurring runs: five fields (minute hour day-of-month month
    /// day-of-week, e.g. `0 2 * * *`) or a macro (`@hourly`, `@daily`, `@midnight`, `@weekly`,
    /// `@monthly`, `@yearly`). Each slot starts run `<benchmark>-<slot in unix minutes>`.
    /// Without a schedule, the benchmark runs once when created (and on run-now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub schedule: Option<String>,
    /// IANA time zone of `schedule` (e.g. `Europe/Paris`). Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// Stops scheduled runs (run-now still works). On resume, the latest slot missed meanwhile
    /// starts at once unless `startingDeadlineSeconds` says it is too late. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// What a slot does while a run of this benchmark is active. Default Forbid.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// Seconds after its time within which a slot may still start (e.g. after operator
    /// downtime); an older slot is recorded as missed. Default: no limit. Use 10 or more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,
    /// Compare each succeeded run with a baseline run and set its `Regressed` condition (and
    /// the benchmark's), with an Event and the `coebench_benchmark_regressed` gauge. Default: no
    /// comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<RegressionSpec>,
    /// Worker Pods each run is spread over (1 to 1000, default 1). With more than one, a run is
    /// an Indexed Job of that many Pods and a headless Service: Pod 0 coordinates and writes
    /// every result, each Pod gets `runner.resources`, and Pods are spread across nodes. A row
    /// may use fewer (`rows[].workers`), never more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub workers: Option<u32>,
}

fn default_successful_history() -> i32 {
    3
}

fn default_failed_history() -> i32 {
    1
}

/// Where a benchmark's rows come from when they are not inline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RowsFrom {
    /// A ConfigMap key holding a kit model-configs CSV
    /// (`model_name,input_tokens,output_tokens,num_requests,concurrent_requests,qps,...`).
    pub config_map_key_ref: ConfigMapKeyRef,
}

/// What a schedule slot does when a run of the benchmark (of any trigger) is active.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Start it anyway.
    Allow,
    /// Skip the slot (overlapping load tests skew each other): Event `RunSkipped`.
    #[default]
    Forbid,
    /// Delete the active runs (and their Jobs), then start the new one.
    Replace,
}

/// What the operator observed of a benchmark and its runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CoeBenchmarkStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Valid`, `Running`, `LastRunSucceeded`, `Scheduled` when a schedule is set, and
    /// `Regressed` with `spec.regression` (the verdict of the last run compared).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Phase of the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RunPhase>,
    /// Name of the most recent run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// Name of the most recent succeeded run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_run: Option<String>,
    /// Runs not finished yet.
    #[serde(default)]
    pub active_runs: Vec<String>,
    /// Rows of the resolved plan (inline or from the CSV).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_count: Option<u32>,
    /// Headline numbers of the most recent succeeded run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<ResultSummary>,
    /// Runs created so far; the next run is `<benchmark>-<runCount + 1>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_count: Option<u64>,
    /// The last `coebench.dev/run-now` value acted on; the same value never triggers twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_run_now: Option<String>,
    /// The slot of the last scheduled run (when it was due, not when it started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// The last slot that started no run: skipped (Forbid), past `startingDeadlineSeconds`, or
    /// beyond 100 missed slots. Slots up to it are never reconsidered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_missed_schedule_time: Option<Time>,
    /// When the next scheduled run is due; absent without a valid schedule or while suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// When the most recent succeeded run completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// What regression detection keeps (with `spec.regression`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<RegressionStatus>,
}

/// A run's results in brief.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultSummary {
    /// The run.
    pub run: String,
    /// Client-side median time to first token: one value, or the range over rows
    /// (e.g. `0.105s-0.480s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p50: Option<String>,
    /// Where the run's files are, when results are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_path: Option<String>,
    /// Per-row numbers.
    #[serde(default)]
    pub rows: Vec<RowStatus>,
    /// Rows left out of the report to fit its size limit (their numbers are on the volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_omitted: Option<u32>,
}
