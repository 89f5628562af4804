//! The run manifest, `run.json` in the run folder: what was run, against which endpoint, when,
//! how each row went and which files it wrote, and how the run ended.
//!
//! The engine fills a [`RunManifest`] as the run goes and may rewrite it after every row. It
//! never holds credentials: URLs are stored without user info or query string.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::OutputError;
use super::atomic::write_json_atomic;
use super::naming::MANIFEST_FILE;
use crate::statistics::summary::{RowOutcome, RowSummary};
use coebench_plan::report::RunOutcome;
use coebench_plan::{ApiKind, EndpointSpec, Plan};

/// Contents of `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    /// Version of coebench that ran.
    pub coebench_version: String,
    /// Name of the run.
    pub run_name: String,
    /// When the run started, RFC 3339 UTC.
    pub started_at: String,
    /// When the run ended, RFC 3339 UTC; `None` while it runs.
    pub ended_at: Option<String>,
    /// What the run was given.
    pub inputs: ManifestInputs,
    /// The endpoint benchmarked.
    pub endpoint: ManifestEndpoint,
    /// The run's free-form metadata (plan `options.metadata`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// One entry per plan row that has an outcome, in plan order.
    pub rows: Vec<ManifestRow>,
    /// How the run ended; `None` while it runs.
    pub exit: Option<ManifestExit>,
    /// A distributed run's workers (clock offsets, round trips, health per row); absent for a
    /// run of one process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<ManifestWorkers>,
}

/// A distributed run's workers, as its coordinator (worker 0) measured them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ManifestWorkers {
    /// Worker processes (or Pods) in the run, the coordinator included.
    pub count: u32,
    /// Each worker other than the coordinator: its clock and connection.
    pub workers: Vec<ManifestWorker>,
    /// Each worker's share of each row that ran, and its client's health.
    pub rows: Vec<ManifestWorkerRow>,
    /// The worker that was lost, and how, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<String>,
}

/// One worker's clock, as the coordinator measured it by repeated round trips.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ManifestWorker {
    /// The worker's index (0 is the coordinator).
    pub index: u32,
    /// The host the worker connected from.
    pub host: String,
    /// The worker's wall clock minus the coordinator's, seconds, from the round trip with the
    /// smallest RTT; every record of the worker was put on the coordinator's clock with it.
    pub clock_offset_s: f64,
    /// The smallest round-trip time measured, seconds (the offset's uncertainty is half of it).
    pub rtt_s: f64,
    /// Round trips measured.
    pub samples: u32,
}

/// One worker's share of one row and how healthy its client was.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ManifestWorkerRow {
    /// Position of the row in the plan.
    pub row_index: usize,
    /// The worker's index (0 is the coordinator).
    pub worker: u32,
    /// Requests the worker was given.
    pub requests: u32,
    /// Requests it sent whose records reached the coordinator.
    pub records: u32,
    /// The largest dispatch delay of its open-loop requests, seconds.
    pub dispatch_delay_max_s: Option<f64>,
    /// The p99 of its runtime's scheduling lag, seconds.
    pub event_loop_lag_p99_s: Option<f64>,
    /// Its process's CPU, as a fraction of the cores it may use.
    pub cpu_utilization: Option<f64>,
    /// Whether its client was the bottleneck (`client_saturated`).
    pub client_saturated: bool,
    /// The worker's clock minus the coordinator's, seconds, as measured just before the row
    /// (applied to every record of its share); absent for the coordinator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_s: Option<f64>,
    /// The round trip that measurement came from, seconds (the offset is within half of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_rtt_s: Option<f64>,
    /// Why the worker was lost during the row (its share then ended early, and what it had not
    /// reported was not measured); absent when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<String>,
}

/// The inputs of a run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ManifestInputs {
    /// The plan as run (endpoint URL redacted).
    pub plan: Option<Plan>,
    /// Path of a native plan file, if one was given.
    pub plan_path: Option<String>,
    /// Path of the kit's `config.yaml`, if one was given.
    pub config_path: Option<String>,
    /// Path of the kit's model-configs CSV, if one was given.
    pub model_configs_path: Option<String>,
}

/// The endpoint of a run, without credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEndpoint {
    /// API flavour.
    pub api: ApiKind,
    /// URL without user info or query string.
    pub url: Option<String>,
}

/// How one row went and where its files are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestRow {
    /// Position in the plan.
    pub row_index: usize,
    /// Model.
    pub model: String,
    /// Outcome.
    pub outcome: RowOutcome,
    /// The row's UUID.
    pub row_uuid: String,
    /// Summary file name (in the run folder); `None` when the row did not run.
    pub summary_file: Option<String>,
    /// Per-request file name (in the run folder); `None` when the row did not run.
    pub individual_responses_file: Option<String>,
    /// Generated-texts file name (in the run folder), when the run saves them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_texts_file: Option<String>,
    /// Requests sent.
    pub num_requests_started: u32,
    /// Requests that succeeded.
    pub num_completed_requests: u32,
    /// Requests that failed.
    pub number_errors: u32,
    /// Requests never sent.
    pub num_requests_not_sent: u32,
    /// Why the row's files could not be written (then neither file is listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_not_written: Option<String>,
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestExit {
    /// Outcome, as in the operator's report.
    pub outcome: RunOutcome,
    /// Process exit code.
    pub code: i32,
    /// Short message for failed runs.
    pub message: Option<String>,
    /// Indexes (0-based, as `rows[].row_index`) of the rows that sent requests and had every
    /// one fail; such a run exits 6.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_rows: Vec<usize>,
}

impl RunManifest {
    /// A manifest for a run that started at `started`, with the endpoint's URL redacted and no
    /// rows yet.
    pub fn new(
        run_name: impl Into<String>,
        started: jiff::Timestamp,
        endpoint: &EndpointSpec,
    ) -> Self {
        RunManifest {
            coebench_version: env!("CARGO_PKG_VERSION").to_string(),
            run_name: run_name.into(),
            started_at: crate::statistics::record::utc_timestamp(started),
            ended_at: None,
            workers: None,
            inputs: ManifestInputs::default(),
            endpoint: ManifestEndpoint {
                api: endpoint.api,
                url: endpoint.url.as_deref().map(redact_url),
            },
            metadata: BTreeMap::new(),
            rows: Vec::new(),
            exit: None,
        }
    }

    /// Records the plan, with its endpoint URL redacted, and the run's metadata.
    pub fn set_plan(&mut self, plan: &Plan) {
        self.metadata = plan.options.metadata.clone();
        let mut plan = plan.clone();
        plan.endpoint.url = plan.endpoint.url.as_deref().map(redact_url);
        self.inputs.plan = Some(plan);
    }

    /// Records a row's outcome, replacing an earlier entry for the same row.
    pub fn set_row(&mut self, summary: &RowSummary) {
        self.insert_row(ManifestRow::from_summary(summary));
    }

    /// Records a row whose files could not be written: no file is listed, `why` says what
    /// failed.
    pub fn set_row_unwritten(&mut self, summary: &RowSummary, why: &str) {
        let mut row = ManifestRow::from_summary(summary);
        row.summary_file = None;
        row.individual_responses_file = None;
        row.response_texts_file = None;
        row.files_not_written = Some(why.to_string());
        self.insert_row(row);
    }

    fn insert_row(&mut self, row: ManifestRow) {
        self.rows.retain(|r| r.row_index != row.row_index);
        let at = self.rows.partition_point(|r| r.row_index < row.row_index);
        self.rows.insert(at, row);
    }

    /// Records the end of the run.
    pub fn finish(&mut self, ended: jiff::Timestamp, exit: ManifestExit) {
        self.ended_at = Some(crate::statistics::record::utc_timestamp(ended));
        self.exit = Some(exit);
    }
}

impl ManifestRow {
    /// The manifest entry of a row.
    pub fn from_summary(summary: &RowSummary) -> Self {
        let ran = summary.outcome != RowOutcome::NotRun;
        ManifestRow {
            row_index: summary.row_index,
            model: summary.model.clone(),
            outcome: summary.outcome,
            row_uuid: summary.row_uuid.to_string(),
            summary_file: ran.then(|| summary.summary_file()),
            individual_responses_file: ran.then(|| summary.individual_responses_file()),
            response_texts_file: summary.response_texts_file.clone().filter(|_| ran),
            num_requests_started: summary.num_requests_started,
            num_completed_requests: summary.num_completed_requests,
            number_errors: summary.number_errors,
            num_requests_not_sent: summary.num_requests_not_sent,
            files_not_written: None,
        }
    }
}

/// `url` without user info (`user:key@`) and without query string or fragment.
pub fn redact_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or_default();
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = authority.rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}{path}")
        }
        None => without_query.to_string(),
    }
}

/// Writes `run.json` into `run_dir`, atomically.
pub fn write_manifest(run_dir: &Path, manifest: &RunManifest) -> Result<PathBuf, OutputError> {
    let path = run_dir.join(MANIFEST_FILE);
    write_json_atomic(&path, manifest)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials() {
        assert_eq!(
            redact_url("https://user:secret@api.example.com/v1?key=abc#x"),
            "https://api.example.com/v1"
        );
        assert_eq!(
            redact_url("https://api.sambanova.ai/v1"),
            "https://api.sambanova.ai/v1"
        );
        assert_eq!(redact_url("http://h:8080"), "http://h:8080");
        assert_eq!(redact_url("not a url?k=v"), "not a url");
    }
}
