//! [`RunMetrics`]: the runner's Prometheus registry, fed by the run's [`RunObserver`] hooks.
//!
//! Every series a row will use is created at `row_started` and its handles kept per row, so the
//! request hooks, which run in every request's own task, only index a vector, bump atomics and
//! observe histograms: no label hashing, no allocation. Counters of every outcome start at 0, so
//! `rate()` and `increase()` see a row's first error. Encoding is
//! [`super::exposition`]'s job; serving is [`super::server`]'s.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use super::buckets::{END_TO_END_SECONDS, INTER_TOKEN_SECONDS, TTFT_SECONDS};
use super::labels::{OutcomeLabels, RowLabels, RunLabels, WorkerLabels};
use crate::engine::observer::{RunObserver, RunStarted};
use crate::output::row_files::RowFilePaths;
use crate::statistics::record::RequestRecord;
use crate::statistics::summary::RowSummary;
use coebench_plan::Row;
use coebench_plan::exposition::{self, Exposition};

/// Values of the `outcome` label: `ok`, then every failure class
/// ([`crate::client::measurement::ErrorKind::class`]).
pub const OUTCOMES: [&str; 9] = [
    "ok",
    "http-4xx",
    "http-5xx",
    "rate-limited",
    "timeout",
    "connect",
    "stream-broken",
    "malformed-event",
    "interrupted",
];

/// `outcome` of a failure whose class is not in [`OUTCOMES`] (none today).
pub const UNKNOWN_OUTCOME: &str = "unknown";

type HistogramFamily = Family<RowLabels, Histogram, fn() -> Histogram>;
type TokenCounter = Counter<u64, AtomicU64>;

fn ttft_histogram() -> Histogram {
    Histogram::new(TTFT_SECONDS)
}
fn inter_token_histogram() -> Histogram {
    Histogram::new(INTER_TOKEN_SECONDS)
}
fn end_to_end_histogram() -> Histogram {
    Histogram::new(END_TO_END_SECONDS)
}

/// The handles of one row's series.
struct RowHandles {
    labels: RowLabels,
    outcomes: [Counter; OUTCOMES.len()],
    input_tokens: TokenCounter,
    output_tokens: TokenCounter,
    in_flight: Gauge,
    stale_retries: Counter,
    stopped_early: Counter,
    client_ttft: Histogram,
    server_ttft: Histogram,
    inter_token: Histogram,
    end_to_end: Histogram,
}

/// The runner's metrics registry and its handles. Implements [`RunObserver`].
#[derive(Debug)]
pub struct RunMetrics {
    registry: Registry,
    labels: RwLock<RunLabels>,
    requests: Family<OutcomeLabels, Counter>,
    input_tokens: Family<RowLabels, TokenCounter>,
    output_tokens: Family<RowLabels, TokenCounter>,
    in_flight: Family<RowLabels, Gauge>,
    stale_retries: Family<RowLabels, Counter>,
    stopped_early: Family<RowLabels, Counter>,
    client_ttft: HistogramFamily,
    server_ttft: HistogramFamily,
    inter_token: HistogramFamily,
    end_to_end: HistogramFamily,
    rows: Family<RunLabels, Gauge>,
    current_row: Family<RunLabels, Gauge>,
    rows_finished: Family<RunLabels, Counter>,
    worker_requests: Family<WorkerLabels, Counter>,
    worker_saturated: Family<WorkerLabels, Gauge>,
    handles: RwLock<Vec<Option<Arc<RowHandles>>>>,
}

impl std::fmt::Debug for RowHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowHandles")
            .field("labels", &self.labels)
            .finish()
    }
}

impl RunMetrics {
    /// A registry (prefix `coebench`) whose series carry `labels` (`run` is filled in when the
    /// run starts).
    pub fn new(labels: RunLabels) -> Self {
        let mut registry = Registry::with_prefix("coebench");
        registry.register(
            "runner",
            "The coebench runner's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests that finished, by outcome (ok, or the failure class)",
            requests.clone(),
        );
        let input_tokens = Family::<RowLabels, TokenCounter>::default();
        registry.register(
            "input_tokens",
            "Prompt tokens of successful requests (the server's count, else the client's)",
            input_tokens.clone(),
        );
        let output_tokens = Family::<RowLabels, TokenCounter>::default();
        registry.register(
            "output_tokens",
            "Generated tokens of successful requests (the server's count, else the client's)",
            output_tokens.clone(),
        );
        let in_flight = Family::<RowLabels, Gauge>::default();
        registry.register(
            "requests_in_flight",
            "Requests sent and not finished yet",
            in_flight.clone(),
        );
        let stale_retries = Family::<RowLabels, Counter>::default();
        registry.register(
            "stale_connection_retries",
            "Requests sent again on a fresh connection because the server had closed the \
             kept-alive one they first went out on",
            stale_retries.clone(),
        );
        let stopped_early = Family::<RowLabels, Counter>::default();
        registry.register(
            "requests_stopped_early",
            "Successful requests that generated fewer tokens than their max_tokens",
            stopped_early.clone(),
        );
        let histogram =
            |registry: &mut Registry, name: &str, help: &str, make: fn() -> Histogram| {
                let family: HistogramFamily = Family::new_with_constructor(make);
                registry.register_with_unit(name, help, Unit::Seconds, family.clone());
                family
            };
        let client_ttft = histogram(
            &mut registry,
            "client_ttft",
            "Client-side time to first token of successful requests",
            ttft_histogram,
        );
        let server_ttft = histogram(
            &mut registry,
            "server_ttft",
            "Server-reported time to first token of successful requests",
            ttft_histogram,
        );
        let inter_token = histogram(
            &mut registry,
            "client_inter_token_latency",
            "Client-side gap before each generated token after the first",
            inter_token_histogram,
        );
        let end_to_end = histogram(
            &mut registry,
            "client_end_to_end_latency",
            "Client-side time from send to the end of the stream, successful requests",
            end_to_end_histogram,
        );
        let rows = Family::<RunLabels, Gauge>::default();
        registry.register("run_rows", "Rows in the run's plan", rows.clone());
        let current_row = Family::<RunLabels, Gauge>::default();
        registry.register(
            "run_current_row",
            "Index (from 0) of the row that started last",
            current_row.clone(),
        );
        let rows_finished = Family::<RunLabels, Counter>::default();
        registry.register(
            "run_rows_finished",
            "Rows that finished (or could not run)",
            rows_finished.clone(),
        );
        let worker_requests = Family::<WorkerLabels, Counter>::default();
        registry.register(
            "worker_requests",
            "Requests that finished on each worker of a distributed run (worker 0 is the \
             coordinator; the other series are the merged run's)",
            worker_requests.clone(),
        );
        let worker_saturated = Family::<WorkerLabels, Gauge>::default();
        registry.register(
            "worker_client_saturated",
            "1 when a worker's client was the bottleneck in its share of the row (set when the \
             row ends), else 0",
            worker_saturated.clone(),
        );
        RunMetrics {
            registry,
            worker_requests,
            worker_saturated,
            labels: RwLock::new(labels),
            requests,
            input_tokens,
            output_tokens,
            in_flight,
            stale_retries,
            stopped_early,
            client_ttft,
            server_ttft,
            inter_token,
            end_to_end,
            rows,
            current_row,
            rows_finished,
            handles: RwLock::new(Vec::new()),
        }
    }

    /// The registry, e.g. to encode it with others.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The run's labels as they stand (with `run` once the run started).
    pub fn labels(&self) -> RunLabels {
        self.labels.read().map(|l| l.clone()).unwrap_or_default()
    }

    /// The metrics in the format `accept` asks for (see [`exposition::encode`]).
    pub fn encode(&self, accept: Option<&str>) -> Result<Exposition, std::fmt::Error> {
        exposition::encode(&[&self.registry], accept)
    }

    fn row_handles(&self, row_index: usize) -> Option<Arc<RowHandles>> {
        let handles = self.handles.read().ok()?;
        handles.get(row_index).cloned().flatten()
    }

    /// The labels of worker `worker`'s series of row `row_index`, once the row started.
    fn worker_labels(&self, row_index: usize, worker: u32) -> Option<WorkerLabels> {
        Some(WorkerLabels {
            row: self.row_handles(row_index)?.labels.clone(),
            worker: worker.to_string(),
        })
    }

    fn create_row(&self, labels: RowLabels) -> RowHandles {
        let outcomes = OUTCOMES.map(|outcome| {
            self.requests.get_or_create_owned(&OutcomeLabels {
                row: labels.clone(),
                outcome,
            })
        });
        RowHandles {
            outcomes,
            input_tokens: self.input_tokens.get_or_create_owned(&labels),
            output_tokens: self.output_tokens.get_or_create_owned(&labels),
            in_flight: self.in_flight.get_or_create_owned(&labels),
            stale_retries: self.stale_retries.get_or_create_owned(&labels),
            stopped_early: self.stopped_early.get_or_create_owned(&labels),
            client_ttft: self.client_ttft.get_or_create_owned(&labels),
            server_ttft: self.server_ttft.get_or_create_owned(&labels),
            inter_token: self.inter_token.get_or_create_owned(&labels),
            end_to_end: self.end_to_end.get_or_create_owned(&labels),
            labels,
        }
    }
}

impl RunObserver for RunMetrics {
    fn run_started(&self, run: &RunStarted) {
        let labels = match self.labels.write() {
            Ok(mut labels) => {
                labels.run = run.run_name.clone();
                labels.clone()
            }
            Err(_) => return,
        };
        self.rows
            .get_or_create(&labels)
            .set(i64::try_from(run.rows).unwrap_or(i64::MAX));
        self.current_row.get_or_create(&labels).set(-1);
        let _created = self.rows_finished.get_or_create(&labels);
    }

    fn row_started(&self, row_index: usize, row: &Row, _base_name: &str) {
        let run = self.labels();
        self.current_row
            .get_or_create(&run)
            .set(i64::try_from(row_index).unwrap_or(i64::MAX));
        let handles = Arc::new(self.create_row(run.row(row_index, &row.model)));
        if let Ok(mut all) = self.handles.write() {
            if all.len() <= row_index {
                all.resize(row_index + 1, None);
            }
            all[row_index] = Some(handles);
        }
    }

    fn worker_request_finished(&self, row_index: usize, worker: u32) {
        if let Some(labels) = self.worker_labels(row_index, worker) {
            self.worker_requests.get_or_create(&labels).inc();
        }
    }

    fn worker_row_health(&self, row_index: usize, worker: u32, saturated: bool) {
        if let Some(labels) = self.worker_labels(row_index, worker) {
            self.worker_saturated
                .get_or_create(&labels)
                .set(i64::from(saturated));
        }
    }

    fn request_started(&self, row_index: usize) {
        if let Some(row) = self.row_handles(row_index) {
            row.in_flight.inc();
        }
    }

    fn request_finished(&self, row_index: usize, record: &RequestRecord) {
        let Some(row) = self.row_handles(row_index) else {
            return;
        };
        row.in_flight.dec();
        if record.stale_connection_retry {
            row.stale_retries.inc();
        }
        if !record.is_success() {
            let class = record.error_class.as_deref().unwrap_or(UNKNOWN_OUTCOME);
            match OUTCOMES.iter().position(|o| *o == class) {
                Some(i) => {
                    row.outcomes[i].inc();
                }
                None => {
                    self.requests
                        .get_or_create(&OutcomeLabels {
                            row: row.labels.clone(),
                            outcome: UNKNOWN_OUTCOME,
                        })
                        .inc();
                }
            }
            return;
        }
        row.outcomes[0].inc();
        if record.stopped_early == Some(true) {
            row.stopped_early.inc();
        }
        if let Some(n) = record.number_input_tokens {
            row.input_tokens.inc_by(n);
        }
        if let Some(n) = record.number_output_tokens {
            row.output_tokens.inc_by(n);
        }
        if let Some(v) = record.client_ttft_s {
            row.client_ttft.observe(v);
        }
        if let Some(v) = record.server_ttft_s {
            row.server_ttft.observe(v);
        }
        if let Some(v) = record.client_end_to_end_latency_s {
            row.end_to_end.observe(v);
        }
        for gap in record.client_inter_token_latencies_s.iter().flatten() {
            row.inter_token.observe(*gap);
        }
    }

    fn row_finished(&self, summary: &RowSummary, _files: Option<&RowFilePaths>) {
        if let Some(row) = self.row_handles(summary.row_index) {
            // Requests abandoned by an interrupt never report their end.
            row.in_flight.set(0);
        }
        self.rows_finished.get_or_create(&self.labels()).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::measurement::ErrorKind;

    #[test]
    fn every_error_class_is_an_outcome() {
        for kind in [
            ErrorKind::Http(404),
            ErrorKind::Http(503),
            ErrorKind::RateLimited,
            ErrorKind::Timeout,
            ErrorKind::Connect,
            ErrorKind::StreamBroken,
            ErrorKind::MalformedEvent,
        ] {
            assert!(OUTCOMES.contains(&kind.class()), "{}", kind.class());
        }
    }

    fn row() -> Row {
        Row {
            model: "expert-a".into(),
            input_tokens: 10,
            output_tokens: 5,
            num_requests: 3,
            concurrency: Some(1),
            qps: None,
            qps_distribution: None,
            image_size: None,
            max_sequence_length: None,
            ignore_eos: None,
            min_tokens: None,
            sampling_params: Default::default(),
            dataset: None,
            workers: None,
            objectives: None,
        }
    }

    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    #[test]
    fn hooks_update_the_row_series() {
        let metrics = RunMetrics::new(RunLabels {
            namespace: "perf".into(),
            benchmark: "nightly".into(),
            run: String::new(),
        });
        metrics.run_started(&RunStarted {
            run_name: "nightly-3".into(),
            rows: 2,
            endpoint: "test".into(),
            run_dir: "/tmp".into(),
        });
        metrics.row_started(1, &row(), "base");
        metrics.request_started(1);
        metrics.request_started(1);
        metrics.request_started(1);
        let ok = RequestRecord {
            number_input_tokens: Some(10),
            number_output_tokens: Some(5),
            client_ttft_s: Some(0.2),
            server_ttft_s: Some(0.15),
            client_end_to_end_latency_s: Some(1.0),
            client_inter_token_latencies_s: Some(vec![0.01, 0.02, 0.03, 0.04]),
            stale_connection_retry: true,
            stopped_early: Some(true),
            ..RequestRecord::default()
        };
        metrics.request_finished(1, &ok);
        let limited = RequestRecord {
            error_code: Some("429".into()),
            error_class: Some("rate-limited".into()),
            stale_connection_retry: true,
            ..RequestRecord::default()
        };
        metrics.request_finished(1, &limited);
        // A hook for a row that never started is ignored.
        metrics.request_finished(7, &ok);
        let text = metrics.encode(None).unwrap().body;
        let labels = "namespace=\"perf\",benchmark=\"nightly\",run=\"nightly-3\",model=\"expert-a\",row=\"1\"";
        let get = |name: &str, extra: &str| {
            sample(&text, &format!("{name}{{{labels}{extra}}} "))
                .unwrap_or_else(|| panic!("no {name}{{{labels}{extra}}} in\n{text}"))
        };
        assert_eq!(get("coebench_requests_total", ",outcome=\"ok\""), 1.0);
        assert_eq!(
            get("coebench_requests_total", ",outcome=\"rate-limited\""),
            1.0
        );
        assert_eq!(get("coebench_requests_total", ",outcome=\"timeout\""), 0.0);
        assert_eq!(get("coebench_requests_in_flight", ""), 1.0);
        assert_eq!(get("coebench_stale_connection_retries_total", ""), 2.0);
        assert_eq!(get("coebench_requests_stopped_early_total", ""), 1.0);
        assert_eq!(get("coebench_input_tokens_total", ""), 10.0);
        assert_eq!(get("coebench_output_tokens_total", ""), 5.0);
        assert_eq!(get("coebench_client_ttft_seconds_count", ""), 1.0);
        assert_eq!(
            get("coebench_client_ttft_seconds_bucket", ",le=\"0.2\""),
            1.0
        );
        assert_eq!(
            get("coebench_client_ttft_seconds_bucket", ",le=\"0.15\""),
            0.0
        );
        assert_eq!(get("coebench_server_ttft_seconds_sum", ""), 0.15);
        assert_eq!(
            get("coebench_client_inter_token_latency_seconds_count", ""),
            4.0
        );
        assert_eq!(
            get("coebench_client_end_to_end_latency_seconds_count", ""),
            1.0
        );
        let run = "namespace=\"perf\",benchmark=\"nightly\",run=\"nightly-3\"";
        assert_eq!(
            sample(&text, &format!("coebench_run_rows{{{run}}} ")),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, &format!("coebench_run_current_row{{{run}}} ")),
            Some(1.0)
        );
        assert!(
            text.contains(&format!(
                "coebench_runner_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }
}
