//! A row's summary: the kit's `*_summary.json` object (kit-reference 5.4 and 6.2), followed by
//! coebench's own fields.
//!
//! The engine hands over a finished row as a [`RowExecution`]; [`RowExecution::finish`] sorts
//! its record digests, estimates switching time and batch sizes, and computes the
//! [`RowSummary`]; the switching time is written into the first request's record when the
//! records are read back from the spool ([`RowResult::for_each_record`]). Latency statistics cover successful requests only; failures
//! are counted. Serialising a summary writes the kit's keys in the kit's order, omitting
//! statistics without data (never NaN), then coebench's keys. This module writes no files.

mod execution;
mod json;
mod server_checks;

use crate::statistics::goodput::{
    Goodput, PercentileObjectivesMet, goodput, percentile_objectives,
};

use std::collections::BTreeMap;
use std::time::Instant;

pub use execution::{ClientHealth, RowExecution, RowNames, RowResult};
pub use server_checks::{
    ServerChecks, ServerTimings, TOKENIZER_TOLERANCE_SHARE, TOKENIZER_TOLERANCE_TOKENS,
    TokenizerCheck,
};

use crate::statistics::batching::BatchingInference;
use crate::statistics::record::{ratio, utc_timestamp};
use crate::statistics::record_digest::RecordDigest;
use crate::statistics::stats::{self, Stats, round4};
use crate::statistics::switching::SwitchingEstimate;
use coebench_plan::report::RowReport;
use coebench_plan::{ImageSize, Load, Row};

/// How a row went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowOutcome {
    /// Every planned request was sent and succeeded.
    Ok,
    /// Some requests succeeded; others failed or were never sent.
    Partial,
    /// Requests were sent and every one failed.
    AllFailed,
    /// No request was sent (the timeout passed first, or the run was interrupted).
    NothingSent,
    /// The row did not run.
    NotRun,
}

impl RowOutcome {
    /// The name written to files (`ok`, `partial`, `all_failed`, `nothing_sent`, `not_run`).
    pub fn as_str(self) -> &'static str {
        match self {
            RowOutcome::Ok => "ok",
            RowOutcome::Partial => "partial",
            RowOutcome::AllFailed => "all_failed",
            RowOutcome::NothingSent => "nothing_sent",
            RowOutcome::NotRun => "not_run",
        }
    }
}

/// Statistics of one metric, named as in the records.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricStats {
    /// The record key, e.g. `client_ttft_s`.
    pub metric: &'static str,
    /// Its statistics.
    pub stats: Stats,
}

/// A per-record metric and how to read it.
type Metric = (&'static str, fn(&RecordDigest) -> Option<f64>);

/// The kit's statistics metrics, in the kit's order (HEAD, kit-reference 5.4).
pub const KIT_STATS_METRICS: [&str; 13] = [
    "client_ttft_s",
    "client_end_to_end_latency_s",
    "client_output_token_per_s_per_request",
    "number_input_tokens",
    "number_output_tokens",
    "client_mean_inter_token_latency_s",
    "server_ttft_s",
    "server_end_to_end_latency_s",
    "server_output_token_per_s_per_request",
    "server_output_token_after_first_per_s_first_ten_per_request",
    "server_number_input_tokens",
    "server_number_output_tokens",
    "acceptance_rate",
];

fn int(v: Option<u64>) -> Option<f64> {
    v.map(|n| n as f64)
}

const KIT_METRICS: [Metric; 13] = [
    (KIT_STATS_METRICS[0], |r| r.client_ttft_s),
    (KIT_STATS_METRICS[1], |r| r.client_end_to_end_latency_s),
    (KIT_STATS_METRICS[2], |r| {
        r.client_output_token_per_s_per_request
    }),
    (KIT_STATS_METRICS[3], |r| int(r.number_input_tokens)),
    (KIT_STATS_METRICS[4], |r| int(r.number_output_tokens)),
    (KIT_STATS_METRICS[5], |r| {
        r.client_mean_inter_token_latency_s
    }),
    (KIT_STATS_METRICS[6], |r| r.server_ttft_s),
    (KIT_STATS_METRICS[7], |r| r.server_end_to_end_latency_s),
    (KIT_STATS_METRICS[8], |r| {
        r.server_output_token_per_s_per_request
    }),
    (KIT_STATS_METRICS[9], |r| {
        r.server_output_token_after_first_per_s_first_ten_per_request
    }),
    (KIT_STATS_METRICS[10], |r| int(r.server_number_input_tokens)),
    (
        KIT_STATS_METRICS[11],
        |r| int(r.server_number_output_tokens),
    ),
    (KIT_STATS_METRICS[12], |r| r.acceptance_rate),
];

/// coebench's statistics over successful requests, after the kit's keys.
const EXTRA_METRICS: [Metric; 4] = [
    ("client_server_ttft_gap_s", |r| r.client_server_ttft_gap_s),
    ("client_tpot_s", |r| r.client_tpot_s),
    ("client_ttfb_s", |r| r.client_ttfb_s),
    ("server_cached_input_tokens", |r| {
        int(r.server_cached_input_tokens)
    }),
];

/// Statistics of how late the client sent requests, over every sent request (open loop).
pub const DISPATCH_DELAY_METRIC: &str = "dispatch_delay_s";

/// How closely the delivered load matched the planned one.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LoadAccuracy {
    /// Planned requests per second (open loop).
    pub target_qps: Option<f64>,
    /// Delivered requests per second: `(sent - 1) / (last send - first send)` (open loop).
    pub achieved_qps: Option<f64>,
    /// Planned requests in flight (closed loop).
    pub target_concurrency: Option<u32>,
    /// Time-averaged requests in flight from the first send to the last response end:
    /// `sum(end - send) / (last end - first send)` (closed loop).
    pub mean_in_flight: Option<f64>,
}

/// A row's summary. Serialises to the `*_summary.json` object.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSummary {
    /// `<base>_summary`, as the kit names it.
    pub name: String,
    /// Base name of the row's files.
    pub base_name: String,
    /// File name of the row's per-request file.
    individual_responses_file: String,
    /// File name of the row's summary file.
    summary_file: String,
    /// Name of the run.
    pub run_name: String,
    /// Position of the row in the plan (the kit's `model_idx`).
    pub row_index: usize,
    /// The row's UUID (in its file names).
    pub row_uuid: uuid::Uuid,
    /// Model name.
    pub model: String,
    /// Concurrency or rate of the row.
    pub load: Load,
    /// Image size of a multimodal row.
    pub image_size: Option<ImageSize>,
    /// Planned input tokens per request.
    pub num_input_tokens: u32,
    /// Planned output tokens per request.
    pub num_output_tokens: u32,
    /// Planned number of requests.
    pub num_requests: u32,
    /// The kit's statistics, in [`KIT_STATS_METRICS`] order; metrics without data left out.
    pub kit_stats: Vec<MetricStats>,
    /// Requests sent (successes and failures).
    pub num_requests_started: u32,
    /// `number_errors / num_requests_started` (0 when nothing was sent).
    pub error_rate: f64,
    /// Failed requests.
    pub number_errors: u32,
    /// Failed requests by `error_code`.
    pub error_code_frequency: BTreeMap<String, u32>,
    /// Output tokens of successful requests per second of the row (ending at the last response).
    pub client_total_output_throughput: Option<f64>,
    /// Mean of `client_output_token_per_s_per_request` over successes.
    pub mean_output_throughput_token_per_s: Option<f64>,
    /// Successful requests.
    pub num_completed_requests: u32,
    /// Successful requests per minute of the row.
    pub num_completed_requests_per_min: Option<f64>,
    /// When the row ended, Unix seconds.
    pub timestamp: i64,
    /// How the row went.
    pub outcome: RowOutcome,
    /// When the row started, RFC 3339 UTC.
    pub started_at: String,
    /// Seconds from the row's start to its last response (or its end without responses).
    pub row_duration_s: f64,
    /// Requests never sent.
    pub num_requests_not_sent: u32,
    /// Requests whose server metrics held impossible values (negative, `NaN`, infinite),
    /// dropped from the statistics.
    pub requests_with_impossible_server_metrics: u32,
    /// Failed requests by [`crate::client::measurement::ErrorKind::class`].
    pub error_class_frequency: BTreeMap<String, u32>,
    /// Switching-time estimate.
    pub switching: SwitchingEstimate,
    /// Batch-size inference.
    pub batching: BatchingInference,
    /// coebench's statistics (TTFT gap, TPOT, time to headers, dispatch delay).
    pub extra_stats: Vec<MetricStats>,
    /// Delivered versus planned load.
    pub load_accuracy: LoadAccuracy,
    /// The client's health.
    pub client_health: ClientHealth,
    /// What the records say about the server: stale connections, early stops, server timings,
    /// prefix-cache share, tokenizer check.
    pub server_checks: ServerChecks,
    /// The share of requests that met the row's per-request latency objectives; `None`
    /// without them.
    pub goodput: Option<Goodput>,
    /// Whether the row met its percentile objectives, each checked; `None` without them.
    pub percentile_objectives: Option<PercentileObjectivesMet>,
    /// The sampling parameters the row's requests sent.
    pub sampling_params: coebench_plan::SamplingParams,
    /// The run's metadata.
    pub metadata: BTreeMap<String, String>,
    /// File name of the row's generated texts, when the run saves them.
    pub response_texts_file: Option<String>,
}

impl RowSummary {
    pub(crate) fn compute(
        exec: &RowExecution,
        switching: SwitchingEstimate,
        batching: BatchingInference,
    ) -> Self {
        let records = &exec.digests;
        let successes: Vec<&RecordDigest> = records.iter().filter(|r| r.is_success()).collect();
        let stats_of = |metrics: &[Metric]| -> Vec<MetricStats> {
            metrics
                .iter()
                .filter_map(|&(metric, get)| {
                    Stats::of_options(successes.iter().map(|r| get(r)))
                        .map(|stats| MetricStats { metric, stats })
                })
                .collect()
        };
        let kit_stats = stats_of(&KIT_METRICS);
        let mut extra_stats = stats_of(&EXTRA_METRICS);
        if let Some(stats) = Stats::of_options(records.iter().map(|r| r.dispatch_delay_s)) {
            extra_stats.push(MetricStats {
                metric: DISPATCH_DELAY_METRIC,
                stats,
            });
        }

        let started = count(records.len());
        let completed = count(successes.len());
        let errors = started - completed;
        let mut error_code_frequency = BTreeMap::new();
        let mut error_class_frequency = BTreeMap::new();
        for r in records.iter().filter(|r| !r.is_success()) {
            let code = r.error_code.clone().unwrap_or_default();
            *error_code_frequency.entry(code).or_insert(0) += 1;
            let class = r.error_class.clone().unwrap_or_else(|| "unknown".into());
            *error_class_frequency.entry(class).or_insert(0) += 1;
        }

        let row_duration_s = records
            .iter()
            .map(|r| r.end_s)
            .filter(|v| v.is_finite())
            .fold(None, |acc: Option<f64>, v| {
                Some(acc.map_or(v, |a| a.max(v)))
            })
            .unwrap_or_else(|| {
                exec.ended
                    .saturating_duration_since(exec.started)
                    .as_secs_f64()
            });
        let output_tokens: u64 = successes
            .iter()
            .filter_map(|r| r.number_output_tokens)
            .sum();
        let per_request_rates: Vec<f64> = successes
            .iter()
            .filter_map(|r| r.client_output_token_per_s_per_request)
            .collect();
        let ended_wall =
            jiff::SignedDuration::try_from(exec.ended.saturating_duration_since(exec.started))
                .ok()
                .and_then(|elapsed| exec.started_wall.checked_add(elapsed).ok())
                .unwrap_or(exec.started_wall);
        let load = exec.row.effective_load();
        let base_name = exec.names.base.clone();

        RowSummary {
            name: format!("{base_name}_summary"),
            base_name,
            individual_responses_file: exec.names.individual_responses_file.clone(),
            summary_file: exec.names.summary_file.clone(),
            run_name: exec.run_name.clone(),
            row_index: exec.row_index,
            row_uuid: exec.names.uuid,
            model: exec.row.model.clone(),
            load,
            image_size: exec.row.image_size,
            num_input_tokens: exec.row.input_tokens,
            num_output_tokens: exec.row.output_tokens,
            num_requests: exec.row.num_requests,
            kit_stats,
            num_requests_started: started,
            error_rate: if started == 0 {
                0.0
            } else {
                f64::from(errors) / f64::from(started)
            },
            number_errors: errors,
            error_code_frequency,
            client_total_output_throughput: ratio(Some(output_tokens as f64), Some(row_duration_s))
                .map(round4),
            mean_output_throughput_token_per_s: (!per_request_rates.is_empty())
                .then(|| round4(stats::mean(&per_request_rates))),
            num_completed_requests: completed,
            num_completed_requests_per_min: ratio(
                Some(f64::from(completed) * 60.0),
                Some(row_duration_s),
            )
            .map(round4),
            timestamp: ended_wall.as_second(),
            outcome: outcome(started, completed, exec.not_sent, exec.row.num_requests),
            started_at: utc_timestamp(exec.started_wall),
            row_duration_s,
            num_requests_not_sent: exec.not_sent,
            requests_with_impossible_server_metrics: count(
                records
                    .iter()
                    .filter(|r| r.server_impossible_values > 0)
                    .count(),
            ),
            error_class_frequency,
            switching,
            batching,
            extra_stats,
            load_accuracy: load_accuracy(load, records),
            client_health: exec.client_health,
            server_checks: ServerChecks::of(exec),
            goodput: exec
                .objectives
                .as_ref()
                .filter(|o| !o.set().is_empty())
                .map(|o| goodput(&exec.digests, o)),
            percentile_objectives: exec
                .objectives
                .as_ref()
                .filter(|o| !o.percentiles.is_empty())
                .map(|o| percentile_objectives(&exec.digests, &o.percentiles)),
            sampling_params: exec.sampling_params.clone(),
            metadata: exec.metadata.clone(),
            response_texts_file: exec
                .response_texts
                .as_ref()
                .map(|_| exec.names.response_texts_file.clone()),
        }
    }

    /// The summary of a row named `names` that did not run: no requests, outcome
    /// [`RowOutcome::NotRun`].
    pub fn not_run(
        row_index: usize,
        row: &Row,
        run_name: impl Into<String>,
        names: RowNames,
        now: jiff::Timestamp,
    ) -> Self {
        let started = Instant::now();
        let exec = RowExecution::new(row_index, row.clone(), run_name, names, started, now);
        let mut summary = exec.finish().summary;
        summary.outcome = RowOutcome::NotRun;
        summary.num_requests_not_sent = row.num_requests;
        summary
    }

    /// The statistics of one of the kit's metrics (e.g. `server_ttft_s`) or of coebench's
    /// (`client_tpot_s`, `dispatch_delay_s`, ...), if it had data.
    pub fn stats(&self, metric: &str) -> Option<&Stats> {
        self.kit_stats
            .iter()
            .chain(&self.extra_stats)
            .find(|m| m.metric == metric)
            .map(|m| &m.stats)
    }

    /// File name of the row's per-request file.
    pub fn individual_responses_file(&self) -> String {
        self.individual_responses_file.clone()
    }

    /// File name of the row's summary file.
    pub fn summary_file(&self) -> String {
        self.summary_file.clone()
    }

    /// The row's line in the compact run report handed to the operator.
    pub fn row_report(&self) -> RowReport {
        let (concurrency, qps) = match self.load {
            Load::Concurrency(c) => (Some(c), None),
            Load::Rate { qps, .. } => (None, Some(qps)),
        };
        let p50 = |metric: &str| self.stats(metric).map(|s| s.p50);
        let (client, server) = (self.stats("client_ttft_s"), self.stats("server_ttft_s"));
        let ttft_tail_s = (client.is_some() || server.is_some()).then(|| {
            [
                client.map(|s| s.p90),
                client.map(|s| s.p99),
                server.map(|s| s.p90),
                server.map(|s| s.p99),
            ]
        });
        let tail = |metric: &str| self.stats(metric).map(|s| [Some(s.p90), Some(s.p99)]);
        RowReport {
            model: self.model.clone(),
            input_tokens: self.num_input_tokens,
            output_tokens: self.num_output_tokens,
            concurrency,
            qps,
            completed: self.num_completed_requests,
            errors: self.number_errors,
            client_ttft_p50_s: p50("client_ttft_s"),
            server_ttft_p50_s: p50("server_ttft_s"),
            e2e_p50_s: p50("client_end_to_end_latency_s"),
            output_tokens_per_s_p50: p50("client_output_token_per_s_per_request"),
            switching_time_s: self.switching.switching_time_s,
            ttft_tail_s,
            goodput: self.goodput.and_then(|g| g.share),
            image_size: self.image_size,
            e2e_tail_s: tail("client_end_to_end_latency_s"),
            output_tokens_per_s_tail: tail("client_output_token_per_s_per_request"),
            objectives_met: self.percentile_objectives.as_ref().map(|p| p.met),
        }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn outcome(started: u32, completed: u32, not_sent: u32, planned: u32) -> RowOutcome {
    if started == 0 {
        RowOutcome::NothingSent
    } else if completed == 0 {
        RowOutcome::AllFailed
    } else if completed == started && not_sent == 0 && started >= planned {
        RowOutcome::Ok
    } else {
        RowOutcome::Partial
    }
}

fn load_accuracy(load: Load, records: &[RecordDigest]) -> LoadAccuracy {
    let sends: Vec<f64> = records.iter().map(|r| r.actual_send_s).collect();
    let first_send = sends.iter().copied().fold(f64::INFINITY, f64::min);
    let last_send = sends.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match load {
        Load::Rate { qps, .. } => LoadAccuracy {
            target_qps: Some(qps),
            achieved_qps: (sends.len() >= 2)
                .then(|| ratio(Some((sends.len() - 1) as f64), Some(last_send - first_send)))
                .flatten()
                .map(round4),
            ..LoadAccuracy::default()
        },
        Load::Concurrency(c) => {
            let last_end = records
                .iter()
                .map(|r| r.end_s)
                .fold(f64::NEG_INFINITY, f64::max);
            let busy: f64 = records
                .iter()
                .map(|r| (r.end_s - r.actual_send_s).max(0.0))
                .sum();
            LoadAccuracy {
                target_concurrency: Some(c),
                mean_in_flight: ratio(Some(busy), Some(last_end - first_send)).map(round4),
                ..LoadAccuracy::default()
            }
        }
    }
}
