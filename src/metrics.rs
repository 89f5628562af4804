//! The operator's Prometheus metrics, served at `/metrics` in the OpenMetrics text format.
//!
//! One [`Metrics`] holds the registry (prefix `coebench_operator`) and typed handles, so a new
//! metric is one field plus one `register` call. Current set:
//! - `coebench_operator_reconciles_total{controller}`;
//! - `coebench_operator_reconcile_errors_total{controller,error}` (`error` = [`crate::Error::metric_label`]);
//! - `coebench_operator_reconcile_duration_seconds{controller}` (histogram);
//! - `coebench_operator_runs_finished_total{phase,reason}`;
//! - `coebench_operator_runs{phase}`: runs in the operator's cache by phase, counted at scrape time;
//! - `coebench_operator_build_info{version}`;
//! - `coebench_benchmark_result_*{namespace,benchmark,model,row}`: each benchmark's latest
//!   results, from its status at scrape time ([`results`]);
//! - `coebench_benchmark_regressed{namespace,benchmark}` and
//!   `coebench_benchmark_regressions_total{namespace,benchmark}`: regression detection
//!   (`metrics/regression.rs`).
//!
//! Per-benchmark schedule metrics (`coebench_benchmark_next_run_timestamp_seconds`, missed
//! schedules) have their own registry in `metrics/schedule.rs`. Scrapes get OpenMetrics when
//! they ask for it (Prometheus does), else the Prometheus text format
//! ([`coebench_plan::exposition`]).

pub mod results;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::crd::{CoeBenchmark, CoeBenchmarkRun, RunPhase};
use coebench_plan::exposition::{self, Exposition};
use results::ResultGauges;

mod regression;
mod schedule;

pub use regression::BenchmarkLabels;
pub use schedule::MissedLabels;

/// Labels naming a controller (`benchmark` or `run`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// The controller.
    pub controller: &'static str,
}

/// Labels of a reconcile failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The controller.
    pub controller: &'static str,
    /// The error kind.
    pub error: &'static str,
}

/// Labels of a finished run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FinishedLabels {
    /// `Succeeded` or `Failed`.
    pub phase: &'static str,
    /// The reason of the `Complete` or `Failed` condition.
    pub reason: String,
}

type HistogramFamily = Family<ControllerLabels, Histogram, fn() -> Histogram>;

/// The registry and every metric handle.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    benchmarks: Registry,
    results: Arc<ResultGauges>,
    reconciles: Family<ControllerLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: HistogramFamily,
    runs_finished: Family<FinishedLabels, Counter>,
    run_phases: Arc<RunPhases>,
    schedule: schedule::ScheduleMetrics,
    regressed: Arc<regression::RegressedGauge>,
    regressions: Family<BenchmarkLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("coebench_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error kind",
            errors.clone(),
        );
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "reconcile_duration",
            "Time spent in one reconcile",
            Unit::Seconds,
            duration.clone(),
        );
        let runs_finished = Family::<FinishedLabels, Counter>::default();
        registry.register(
            "runs_finished",
            "Runs the operator saw finish, by phase and reason",
            runs_finished.clone(),
        );
        let run_phases = Arc::new(RunPhases::default());
        registry.register_collector(Box::new(run_phases.clone()));
        registry.register(
            "build",
            "The coebench operator's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let mut benchmarks = Registry::with_prefix("coebench_benchmark");
        let results = Arc::new(ResultGauges::default());
        benchmarks.register_collector(Box::new(results.clone()));
        let regressed = Arc::new(regression::RegressedGauge::default());
        benchmarks.register_collector(Box::new(regressed.clone()));
        let regressions = Family::<BenchmarkLabels, Counter>::default();
        benchmarks.register(
            "regressions",
            "Runs found to have regressed against their benchmark's baseline beyond the thresholds",
            regressions.clone(),
        );
        Metrics {
            registry,
            benchmarks,
            results,
            reconciles,
            errors,
            duration,
            runs_finished,
            run_phases,
            schedule: schedule::ScheduleMetrics::new(),
            regressed,
            regressions,
        }
    }

    /// Counts a reconcile of `controller` and times it until the guard drops.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.duration.get_or_create(&labels).clone(),
        }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_error(&self, controller: &'static str, error: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { controller, error })
            .inc();
    }

    /// Counts a run that the operator saw finish.
    pub fn run_finished(&self, phase: RunPhase, reason: &str) {
        self.runs_finished
            .get_or_create(&FinishedLabels {
                phase: phase.as_str(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a run of benchmark `namespace/benchmark` found to have regressed.
    pub fn regression_found(&self, namespace: &str, benchmark: &str) {
        self.regressions
            .get_or_create(&BenchmarkLabels {
                namespace: namespace.to_string(),
                benchmark: benchmark.to_string(),
            })
            .inc();
    }

    /// Lets `coebench_operator_runs` count the runs in the run controller's cache.
    pub fn watch_runs(&self, store: Store<CoeBenchmarkRun>) {
        *self.run_phases.store.lock().expect("metrics lock") = Some(store);
    }

    /// Lets the per-benchmark gauges (`coebench_benchmark_result_*`, the next scheduled run)
    /// read the benchmark controller's cache.
    pub fn watch_benchmarks(&self, store: Store<CoeBenchmark>) {
        self.schedule.watch(store.clone());
        *self.regressed.store.lock().expect("metrics lock") = Some(store.clone());
        self.results.watch(store);
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        Ok(self
            .exposition(Some(exposition::OPENMETRICS_CONTENT_TYPE))?
            .body)
    }

    /// The metrics in the format an `Accept` header asks for.
    pub fn exposition(&self, accept: Option<&str>) -> Result<Exposition, fmt::Error> {
        exposition::encode(
            &[&self.registry, &self.schedule.registry, &self.benchmarks],
            accept,
        )
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// Observes the time since it was made when dropped, so every exit path is measured.
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// Counts runs by phase from the run controller's cache at scrape time, so deleted runs never
/// linger in the numbers.
#[derive(Default)]
struct RunPhases {
    store: Mutex<Option<Store<CoeBenchmarkRun>>>,
}

impl fmt::Debug for RunPhases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RunPhases")
    }
}

impl Collector for RunPhases {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(store) = self.store.lock().expect("metrics lock").clone() else {
            return Ok(());
        };
        let mut counts = [0i64; 4];
        for run in store.state() {
            let phase = run
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .unwrap_or(RunPhase::Pending);
            counts[phase as usize] += 1;
        }
        let mut family = encoder.encode_descriptor(
            "runs",
            "CoeBenchmarkRuns in the operator's cache, by phase",
            None,
            MetricType::Gauge,
        )?;
        for phase in [
            RunPhase::Pending,
            RunPhase::Running,
            RunPhase::Succeeded,
            RunPhase::Failed,
        ] {
            let labels = [("phase", phase.as_str())];
            let metric = family.encode_family(&labels)?;
            ConstGauge::new(counts[phase as usize]).encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exposed_with_the_prefix() {
        let metrics = Metrics::new();
        drop(metrics.reconcile("run"));
        metrics.reconcile_error("run", "kube_api");
        metrics.run_finished(RunPhase::Failed, "DeadlineExceeded");
        let text = metrics.encode().unwrap();
        for needle in [
            "coebench_operator_reconciles_total{controller=\"run\"} 1",
            "coebench_operator_reconcile_errors_total{controller=\"run\",error=\"kube_api\"} 1",
            "coebench_operator_reconcile_duration_seconds_count{controller=\"run\"} 1",
            "coebench_operator_runs_finished_total{phase=\"Failed\",reason=\"DeadlineExceeded\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    /// A benchmark whose latest succeeded run reported `rows`.
    pub(crate) fn benchmark_with_result(name: &str, rows: serde_json::Value) -> CoeBenchmark {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "coebench.dev/v1alpha1", "kind": "CoeBenchmark",
            "metadata": {"name": name, "namespace": "perf", "uid": "u-1"},
            "spec": {"endpoint": {"api": "simulator"}, "rows": []},
            "status": {
                "lastSuccessfulTime": "2026-05-01T12:00:00Z",
                "lastResult": {"run": format!("{name}-7"), "rows": rows}
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_latest_results_are_gauges_read_from_the_cache() {
        use kube::runtime::reflector::store::Writer;
        use kube::runtime::watcher::Event;
        let metrics = Metrics::new();
        let mut writer = Writer::<CoeBenchmark>::default();
        let bench = benchmark_with_result(
            "nightly",
            serde_json::json!([
                {"model": "expert-a", "inputTokens": 100, "outputTokens": 10, "concurrency": 4,
                 "completed": 3, "errors": 1, "clientTtftP50Seconds": 0.25,
                 "clientTtftP99Seconds": 0.5, "e2eP50Seconds": 1.5},
                {"model": "expert-b", "inputTokens": 100, "outputTokens": 10, "qps": 2.5,
                 "completed": 0, "errors": 0}
            ]),
        );
        writer.apply_watcher_event(&Event::Apply(bench.clone()));
        metrics.watch_benchmarks(writer.as_reader());
        let text = metrics.exposition(None).unwrap().body;
        let row0 = "namespace=\"perf\",benchmark=\"nightly\",model=\"expert-a\",row=\"0\"";
        for needle in [
            format!("coebench_benchmark_result_client_ttft_seconds{{{row0},stat=\"p50\"}} 0.25"),
            format!("coebench_benchmark_result_client_ttft_seconds{{{row0},stat=\"p99\"}} 0.5"),
            format!("coebench_benchmark_result_end_to_end_latency_seconds{{{row0},stat=\"p50\"}} 1.5"),
            format!("coebench_benchmark_result_error_ratio{{{row0}}} 0.25"),
            "coebench_benchmark_result_run_info{namespace=\"perf\",benchmark=\"nightly\",run=\"nightly-7\"} 1".to_string(),
            "coebench_benchmark_result_timestamp_seconds{namespace=\"perf\",benchmark=\"nightly\"} 1777636800".to_string(),
            "qps=\"2.5\"".to_string(),
            format!("coebench_operator_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
        ] {
            assert!(text.contains(&needle), "missing {needle} in\n{text}");
        }
        assert!(
            !text.contains("stat=\"p90\""),
            "absent values have no series:\n{text}"
        );
        assert!(
            !text.contains("coebench_benchmark_result_error_ratio{namespace=\"perf\",benchmark=\"nightly\",model=\"expert-b\""),
            "a row that sent nothing has no error ratio:\n{text}"
        );

        writer.apply_watcher_event(&Event::Delete(bench));
        let text = metrics.exposition(None).unwrap().body;
        assert!(!text.contains("benchmark=\"nightly\""), "{text}");
        assert!(text.contains("# TYPE coebench_benchmark_result_client_ttft_seconds gauge"));
    }

    #[test]
    fn runs_are_counted_by_phase_from_the_cache() {
        use kube::runtime::reflector::store::Writer;
        use kube::runtime::watcher::Event;
        let metrics = Metrics::new();
        let mut writer = Writer::<CoeBenchmarkRun>::default();
        let mut run = crate::resources::job::tests::sample_run();
        run.status = Some(crate::crd::CoeBenchmarkRunStatus {
            phase: Some(RunPhase::Running),
            ..Default::default()
        });
        writer.apply_watcher_event(&Event::Apply(run));
        metrics.watch_runs(writer.as_reader());
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("coebench_operator_runs{phase=\"Running\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("coebench_operator_runs{phase=\"Pending\"} 0"),
            "{text}"
        );
    }
}
