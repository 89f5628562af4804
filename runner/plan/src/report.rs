//! The compact run report: a few numbers per row that the runner hands to the operator.
//!
//! In a cluster the runner writes it to its container's termination message
//! (`/dev/termination-log`, at most 4096 bytes), where the kubelet keeps it in the Pod's status
//! until the Pod is deleted, so the operator can read it even if it was down when the run ended.
//! The full results stay on the results volume. This module defines the format and fits it into
//! the size limit; it performs no I/O.
//!
//! Every row's numbers also reach the API as each row finishes, through the run's *results
//! ConfigMaps*: the operator creates them empty, the runner adds one key per finished row
//! ([`results_row_key`], a [`RowReport`] as compact JSON), and the operator copies them into the
//! run's status. [`ROWS_PER_RESULTS_CONFIG_MAP`] rows share one ConfigMap, so no ConfigMap comes
//! near the API server's 1 MiB limit; [`results_config_map_name`] names them. Both programs use
//! these names, so they are defined here once.

use serde::{Deserialize, Serialize};

use crate::ImageSize;

/// Largest termination message the kubelet keeps, in bytes.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// What the operator needs to know about a finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// Format version of this report, currently 1.
    pub version: u32,
    /// The run's name (the folder of its files).
    pub run_name: String,
    /// How the run ended.
    pub outcome: RunOutcome,
    /// Folder holding the run's per-row files, as the runner saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_path: Option<String>,
    /// One entry per row, in plan order (possibly cut short, see `rowsOmitted`).
    pub rows: Vec<RowReport>,
    /// Rows left out to fit the size limit; their numbers are in the files on the volume.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_omitted: u32,
    /// A short message for failed runs (never contains credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How a run ended, as the runner's exit code also says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunOutcome {
    /// Every row ran (some requests may have failed).
    Succeeded,
    /// The input was invalid; nothing was sent.
    InvalidInput,
    /// The endpoint rejected the credentials.
    AuthenticationFailed,
    /// Every request of every row failed.
    AllRequestsFailed,
    /// The run finished, but some rows had every request fail (the others had successes).
    RowsFailed,
    /// The run was interrupted; rows that finished were written.
    Interrupted,
    /// A worker of a multi-worker run was lost (its process or Pod died, or it never
    /// connected); what the others measured was written and `message` names the worker.
    WorkerLost,
    /// An unexpected internal failure.
    Failed,
}

/// A row's headline numbers. Latencies in seconds; `None` where nothing was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RowReport {
    /// Model name.
    pub model: String,
    /// Input tokens per request.
    pub input_tokens: u32,
    /// Output tokens per request.
    pub output_tokens: u32,
    /// Concurrency of a closed-loop row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Requests per second of an open-loop row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qps: Option<f64>,
    /// Requests that completed successfully.
    pub completed: u32,
    /// Requests that failed.
    pub errors: u32,
    /// Median client-side time to first token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ttft_p50_s: Option<f64>,
    /// Median server-reported time to first token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ttft_p50_s: Option<f64>,
    /// Median client-side end-to-end latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_p50_s: Option<f64>,
    /// Median per-request output tokens per second (client side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_s_p50: Option<f64>,
    /// Estimated model-switching time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switching_time_s: Option<f64>,
    /// Tail time to first token, compactly: `[client p90, client p99, server p90, server p99]`
    /// (each `null` when not measured). The first thing dropped when the report does not fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_tail_s: Option<[Option<f64>; 4]>,
    /// Share of the row's requests that met the run's latency objectives (failures count as
    /// misses); absent without objectives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput: Option<f64>,
    /// The image size of a multimodal row (part of what the row asked for, so runs are
    /// compared row by row as `coebench compare` matches them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<ImageSize>,
    /// Tail end-to-end latency, compactly: `[p90, p99]`. Dropped with `ttftTailS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_tail_s: Option<[Option<f64>; 2]>,
    /// Tail per-request output tokens per second, compactly: `[p90, p99]` (of the requests'
    /// values, so p90 is the 90th percentile of the rates, not the slow tail). Dropped with
    /// `ttftTailS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_s_tail: Option<[Option<f64>; 2]>,
    /// Whether the row met every percentile objective of its objectives (`p99 TTFT <= 0.5 s`,
    /// ...); absent without percentile objectives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives_met: Option<bool>,
}

impl RowReport {
    /// Client-side 90th percentile time to first token.
    pub fn client_ttft_p90_s(&self) -> Option<f64> {
        self.ttft_tail_s.and_then(|t| t[0])
    }
    /// Client-side 99th percentile time to first token.
    pub fn client_ttft_p99_s(&self) -> Option<f64> {
        self.ttft_tail_s.and_then(|t| t[1])
    }
    /// Server-reported 90th percentile time to first token.
    pub fn server_ttft_p90_s(&self) -> Option<f64> {
        self.ttft_tail_s.and_then(|t| t[2])
    }
    /// Server-reported 99th percentile time to first token.
    pub fn server_ttft_p99_s(&self) -> Option<f64> {
        self.ttft_tail_s.and_then(|t| t[3])
    }
    /// 90th percentile end-to-end latency.
    pub fn e2e_p90_s(&self) -> Option<f64> {
        self.e2e_tail_s.and_then(|t| t[0])
    }
    /// 99th percentile end-to-end latency.
    pub fn e2e_p99_s(&self) -> Option<f64> {
        self.e2e_tail_s.and_then(|t| t[1])
    }
    /// 90th percentile of the per-request output tokens per second.
    pub fn output_tokens_per_s_p90(&self) -> Option<f64> {
        self.output_tokens_per_s_tail.and_then(|t| t[0])
    }
    /// 99th percentile of the per-request output tokens per second.
    pub fn output_tokens_per_s_p99(&self) -> Option<f64> {
        self.output_tokens_per_s_tail.and_then(|t| t[1])
    }
    fn has_tails(&self) -> bool {
        self.ttft_tail_s.is_some()
            || self.e2e_tail_s.is_some()
            || self.output_tokens_per_s_tail.is_some()
    }
    fn drop_tails(&mut self) {
        self.ttft_tail_s = None;
        self.e2e_tail_s = None;
        self.output_tokens_per_s_tail = None;
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl RunReport {
    /// The report as compact JSON of at most [`TERMINATION_MESSAGE_LIMIT`] bytes: the message
    /// is cut to [`MESSAGE_LIMIT`] bytes, then every row's tails (`ttftTailS`, `e2eTailS`,
    /// `outputTokensPerSTail`) are dropped, then rows
    /// are dropped from the end, and counted in `rowsOmitted`, until it fits.
    pub fn to_bounded_json(&self) -> String {
        let mut report = self.clone();
        if let Some(message) = report.message.as_mut()
            && message.len() > MESSAGE_LIMIT
        {
            message.truncate(floor_char_boundary(message, MESSAGE_LIMIT - 3));
            message.push_str("...");
        }
        report
            .run_name
            .truncate(floor_char_boundary(&report.run_name, 253));
        loop {
            let json = serde_json::to_string(&report).expect("a report always serializes");
            if json.len() <= TERMINATION_MESSAGE_LIMIT || report.rows.is_empty() {
                return json;
            }
            if report.rows.iter().any(RowReport::has_tails) {
                report.rows.iter_mut().for_each(RowReport::drop_tails);
                continue;
            }
            report.rows.pop();
            report.rows_omitted += 1;
        }
    }
}

/// Rows whose numbers share one results ConfigMap. A row's entry is at most about 720 bytes of
/// JSON (a 100-character model name, every number set with full precision), so 1,000 rows stay
/// under 0.7 MiB, below the API server's 1 MiB ConfigMap limit.
pub const ROWS_PER_RESULTS_CONFIG_MAP: usize = 1000;

/// Name of the `shard`-th results ConfigMap of `run` (from 0): `<run>-results-<shard>`.
pub fn results_config_map_name(run: &str, shard: usize) -> String {
    format!("{run}-results-{shard}")
}

/// The results ConfigMaps a run of `rows` rows needs (at least one).
pub fn results_config_map_count(rows: usize) -> usize {
    rows.div_ceil(ROWS_PER_RESULTS_CONFIG_MAP).max(1)
}

/// The results ConfigMap (its shard number) that holds row `row_index`.
pub fn results_shard_of(row_index: usize) -> usize {
    row_index / ROWS_PER_RESULTS_CONFIG_MAP
}

/// The key of row `row_index` (from 0) in its results ConfigMap: `row-00042`. Zero-padded so
/// `kubectl get configmap -o yaml`, which sorts keys, lists rows in plan order.
pub fn results_row_key(row_index: usize) -> String {
    format!("row-{row_index:05}")
}

/// The row index of a results ConfigMap key, or `None` for a key that is not a row's.
pub fn row_index_of_key(key: &str) -> Option<usize> {
    key.strip_prefix("row-")?.parse().ok()
}

/// Largest `message` kept in a bounded report, in bytes.
pub const MESSAGE_LIMIT: usize = 1024;

fn floor_char_boundary(text: &str, max: usize) -> usize {
    let mut cut = max.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize) -> RowReport {
        RowReport {
            model: format!("Meta-Llama-3.3-70B-Instruct-variant-{i}"),
            input_tokens: 4000,
            output_tokens: 100,
            concurrency: Some(16),
            qps: None,
            completed: 64,
            errors: 0,
            client_ttft_p50_s: Some(0.123456),
            server_ttft_p50_s: Some(0.1),
            e2e_p50_s: Some(1.5),
            output_tokens_per_s_p50: Some(250.25),
            switching_time_s: Some(0.0),
            ttft_tail_s: Some([Some(0.2345), Some(0.3456), Some(0.1876), Some(0.2987)]),
            goodput: None,
            image_size: None,
            e2e_tail_s: Some([Some(1.8765), Some(2.1234)]),
            output_tokens_per_s_tail: Some([Some(270.5), Some(281.25)]),
            objectives_met: None,
        }
    }

    fn realistic(rows: usize) -> RunReport {
        RunReport {
            version: 1,
            run_name: "nightly-llama-128".into(),
            outcome: RunOutcome::Succeeded,
            results_path: Some("results:/perf/team-a/nightly-llama/nightly-llama-128/".into()),
            rows: (0..rows)
                .map(|i| RowReport {
                    model: format!("Meta-Llama-3.3-70B-Instruct-{i:02}"),
                    ..row(i)
                })
                .collect(),
            rows_omitted: 0,
            message: None,
        }
    }

    #[test]
    fn fifteen_rows_keep_their_medians_and_fewer_rows_keep_their_tails() {
        let json = realistic(15).to_bounded_json();
        assert!(json.len() <= TERMINATION_MESSAGE_LIMIT);
        let back: RunReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.rows.len(), 15, "{json}");
        assert!(back.rows.iter().all(|r| r.client_ttft_p50_s.is_some()));
        let json = realistic(10).to_bounded_json();
        let back: RunReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, realistic(10), "ten rows fit whole");
        assert_eq!(back.rows[9].server_ttft_p99_s(), Some(0.2987));
    }

    #[test]
    fn results_config_maps_hold_their_share_of_rows_under_the_size_limit() {
        assert_eq!(results_config_map_count(0), 1);
        assert_eq!(results_config_map_count(1000), 1);
        assert_eq!(results_config_map_count(1001), 2);
        assert_eq!(results_shard_of(999), 0);
        assert_eq!(results_shard_of(1000), 1);
        assert_eq!(results_config_map_name("b-1", 1), "b-1-results-1");
        assert_eq!(results_row_key(42), "row-00042");
        assert_eq!(row_index_of_key("row-00042"), Some(42));
        assert_eq!(row_index_of_key("plan.json"), None);
        // The largest row: a 100-character model name, every number set with full precision.
        let widest = RowReport {
            model: "m".repeat(100),
            input_tokens: u32::MAX,
            output_tokens: u32::MAX,
            concurrency: Some(u32::MAX),
            qps: Some(1.0 / 3.0),
            completed: u32::MAX,
            errors: u32::MAX,
            client_ttft_p50_s: Some(1.0 / 3.0),
            server_ttft_p50_s: Some(1.0 / 3.0),
            e2e_p50_s: Some(1.0 / 3.0),
            output_tokens_per_s_p50: Some(1.0 / 3.0),
            switching_time_s: Some(1.0 / 3.0),
            ttft_tail_s: Some([Some(1.0 / 3.0); 4]),
            goodput: Some(1.0 / 3.0),
            image_size: Some(ImageSize::Medium),
            e2e_tail_s: Some([Some(1.0 / 3.0); 2]),
            output_tokens_per_s_tail: Some([Some(1.0 / 3.0); 2]),
            objectives_met: Some(false),
        };
        let entry = results_row_key(99_999).len() + serde_json::to_string(&widest).unwrap().len();
        assert!(entry <= 730, "{entry} bytes");
        assert!(entry * ROWS_PER_RESULTS_CONFIG_MAP < 1024 * 1024 * 70 / 100);
    }

    #[test]
    fn a_small_report_round_trips() {
        let report = RunReport {
            version: 1,
            run_name: "r".into(),
            outcome: RunOutcome::Succeeded,
            results_path: Some("/results/ns/b/r".into()),
            rows: vec![row(0)],
            rows_omitted: 0,
            message: None,
        };
        let json = report.to_bounded_json();
        assert_eq!(serde_json::from_str::<RunReport>(&json).unwrap(), report);
    }

    #[test]
    fn a_large_report_is_cut_to_the_limit_and_says_so() {
        let report = RunReport {
            version: 1,
            run_name: "r".into(),
            outcome: RunOutcome::Succeeded,
            results_path: None,
            rows: (0..200).map(row).collect(),
            rows_omitted: 0,
            message: Some("x".repeat(10_000)),
        };
        let json = report.to_bounded_json();
        assert!(json.len() <= TERMINATION_MESSAGE_LIMIT);
        let back: RunReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.rows.len() + back.rows_omitted as usize, 200);
    }
}
