//! `CoeBenchmarkRun`: one execution of a benchmark, with an immutable copy of its plan.

use coebench_plan::{Row, RunOptions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Endpoint, ResultsSpec, RowStatus, RunPhase, RunnerSpec};

/// One execution: the resolved plan (rows already expanded from any CSV), what triggered it, and
/// the runner settings it was started with. The spec never changes once created.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "coebench.dev",
    version = "v1alpha1",
    kind = "CoeBenchmarkRun",
    namespaced,
    shortname = "coebr",
    category = "coebench",
    status = "CoeBenchmarkRunStatus",
    doc = "One execution of a CoeBenchmark (or a standalone plan): a runner Job and its results.",
    cel,
    validation = Rule::new("size(self.metadata.name) <= 63").message("a CoeBenchmarkRun name has at most 63 characters (it names the runner Job)"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Benchmark", type_ = "string", json_path = ".spec.benchmark"),
    printcolumn(name = "Rows", type_ = "integer", json_path = ".status.rowCount"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress", description = "Rows finished / rows in the plan"),
    printcolumn(name = "P50 TTFT", type_ = "string", json_path = ".status.ttftP50", description = "Client-side median time to first token (range over rows)"),
    printcolumn(name = "Started", type_ = "date", json_path = ".status.startTime"),
    printcolumn(name = "Regressed", type_ = "string", json_path = ".status.conditions[?(@.type==\"Regressed\")].status", priority = 1, description = "Whether the run regressed against its benchmark's baseline"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("a run's spec is immutable: create a new run (or set coebench.dev/run-now on its benchmark)"))]
#[x_kube(validation = Rule::new("self.rows.all(r, has(r.concurrency) != has(r.qps))").message("each row sets exactly one of concurrency and qps"))]
#[x_kube(validation = Rule::new("self.rows.all(r, !has(r.qps) || r.qps > 0.0)").message("qps must be above 0"))]
#[x_kube(validation = Rule::new("self.rows.all(r, !has(r.workers) || r.workers <= (has(self.workers) ? self.workers : 1))").message("a row's workers must be at most spec.workers (default 1): raise spec.workers or lower the row's"))]
pub struct CoeBenchmarkRunSpec {
    /// The benchmark this run belongs to; empty for a standalone run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub benchmark: Option<String>,
    /// What started the run. Default: `Manual`.
    #[serde(default)]
    pub trigger: RunTrigger,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The rows, in order.
    #[schemars(length(min = 1, max = 1000))]
    pub rows: Vec<Row>,
    /// Run-wide options.
    #[serde(default)]
    pub options: RunOptions,
    /// Runner Pod settings; `image` is filled in by the operator when missing.
    #[serde(default)]
    pub runner: RunnerSpec,
    /// Where results are kept; without it they are not kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<ResultsSpec>,
    /// Seconds the finished Job is kept. Default 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i32>,
    /// Worker Pods of the run (1 to 1000, default 1), from the benchmark's `spec.workers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub workers: Option<u32>,
}

impl CoeBenchmarkRunSpec {
    /// The run's worker Pods: `workers`, default 1.
    pub fn worker_count(&self) -> u32 {
        self.workers.unwrap_or(1).max(1)
    }
}

/// What started a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunTrigger {
    /// The kind of trigger.
    #[serde(rename = "type")]
    pub kind: TriggerKind,
    /// `RunNow`: the annotation's value; `Schedule`: the slot (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub value: Option<String>,
    /// The run's number within its benchmark (1, 2, ...); absent for standalone runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
}

/// The kinds of trigger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TriggerKind {
    /// The first run of a benchmark without a schedule.
    Initial,
    /// The `coebench.dev/run-now` annotation.
    RunNow,
    /// A slot of the benchmark's schedule.
    Schedule,
    /// Created directly by a user.
    #[default]
    Manual,
}

/// What the operator observed of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CoeBenchmarkRunStatus {
    /// Pending, Running, Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RunPhase>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Valid`, `JobCreated`, `Running`, `Complete` or `Failed`, `ResultsWritten`, and
    /// `Regressed` when its benchmark compares runs (`spec.regression`).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// When the runner Job started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The runner Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Where the run's files are on the results volume
    /// (`<claim>:/<subPath>/<namespace>/<benchmark>/<run>/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_path: Option<String>,
    /// Why results are not kept, when they are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_note: Option<String>,
    /// Rows in the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_count: Option<u32>,
    /// Client-side median time to first token (one value or the range over rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p50: Option<String>,
    /// Rows the runner has finished so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_finished: Option<u32>,
    /// `finished/planned` rows, e.g. `12/40`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Per-row numbers of every finished row, in plan order, as the runner published them to
    /// the run's results ConfigMaps (`<run>-results-<n>`) while it ran; from its termination
    /// report when it could not publish.
    #[serde(default)]
    pub rows: Vec<RowStatus>,
    /// Rows left out of the report to fit its size limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_omitted: Option<u32>,
    /// The runner's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}
