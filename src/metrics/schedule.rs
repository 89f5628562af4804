//! Metrics of recurring benchmarks, in their own registry with the prefix `coebench_benchmark`
//! (per-benchmark series, apart from the operator's own `coebench_operator_*`):
//! - `coebench_benchmark_next_run_timestamp_seconds{namespace,benchmark}` (gauge, Unix seconds):
//!   `status.nextScheduleTime` of every benchmark in the benchmark controller's cache whose
//!   schedule is set and not suspended, read at scrape time. Deleting the benchmark, removing
//!   its schedule or suspending it removes its series at the next scrape.
//! - `coebench_benchmark_missed_schedules_total{namespace,benchmark,reason}` (counter): slots
//!   that were due and started no run (`reason` `concurrency_forbid` or `starting_deadline`),
//!   and starts after more than 100 missed slots (`too_many_missed`). Like every counter it lives
//!   until the operator restarts.

use std::fmt;
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::Metrics;
use crate::crd::CoeBenchmark;

/// Labels of a benchmark's missed slots.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MissedLabels {
    /// The benchmark's namespace.
    pub namespace: String,
    /// The benchmark.
    pub benchmark: String,
    /// Why the slot started no run.
    pub reason: &'static str,
}

/// The registry and handles of the schedule metrics.
#[derive(Debug)]
pub(super) struct ScheduleMetrics {
    pub(super) registry: Registry,
    missed: Family<MissedLabels, Counter>,
    next_runs: Arc<NextRuns>,
}

impl ScheduleMetrics {
    pub(super) fn new() -> Self {
        let mut registry = Registry::with_prefix("coebench_benchmark");
        let missed = Family::<MissedLabels, Counter>::default();
        registry.register(
            "missed_schedules",
            "Schedule slots that were due and started no run, by reason",
            missed.clone(),
        );
        let next_runs = Arc::new(NextRuns::default());
        registry.register_collector(Box::new(next_runs.clone()));
        ScheduleMetrics {
            registry,
            missed,
            next_runs,
        }
    }
}

impl Metrics {
    /// Counts a slot of benchmark `namespace/benchmark` that started no run.
    pub fn missed_schedule(&self, namespace: &str, benchmark: &str, reason: &'static str) {
        self.schedule
            .missed
            .get_or_create(&MissedLabels {
                namespace: namespace.to_string(),
                benchmark: benchmark.to_string(),
                reason,
            })
            .inc();
    }
}

impl ScheduleMetrics {
    /// Lets `coebench_benchmark_next_run_timestamp_seconds` read the benchmark controller's cache.
    pub(super) fn watch(&self, store: Store<CoeBenchmark>) {
        *self.next_runs.store.lock().expect("metrics lock") = Some(store);
    }
}

/// Reads each scheduled benchmark's next slot from the cache at scrape time.
#[derive(Default)]
struct NextRuns {
    store: Mutex<Option<Store<CoeBenchmark>>>,
}

impl fmt::Debug for NextRuns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NextRuns")
    }
}

impl Collector for NextRuns {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(store) = self.store.lock().expect("metrics lock").clone() else {
            return Ok(());
        };
        let mut next: Vec<(String, String, i64)> = store
            .state()
            .iter()
            .filter(|b| b.spec.schedule.is_some() && b.spec.suspend != Some(true))
            .filter_map(|b| {
                let at = b.status.as_ref()?.next_schedule_time.as_ref()?.0;
                Some((
                    b.namespace().unwrap_or_default(),
                    b.name_any(),
                    at.as_second(),
                ))
            })
            .collect();
        next.sort();
        let unit = Unit::Seconds;
        let mut family = encoder.encode_descriptor(
            "next_run_timestamp",
            "When the next scheduled run of a benchmark is due, in Unix seconds",
            Some(&unit),
            MetricType::Gauge,
        )?;
        for (namespace, benchmark, at) in next {
            let labels = [("namespace", namespace), ("benchmark", benchmark)];
            let metric = family.encode_family(&labels)?;
            ConstGauge::new(at).encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    use super::*;
    use crate::crd::CoeBenchmarkStatus;

    fn bench(name: &str, schedule: Option<&str>, suspend: bool, next: i64) -> CoeBenchmark {
        let spec = serde_json::from_value(serde_json::json!({
            "endpoint": {"api": "simulator"},
            "rows": [{"model": "m", "inputTokens": 1, "outputTokens": 1, "numRequests": 1, "concurrency": 1}],
            "schedule": schedule,
            "suspend": suspend,
        }))
        .unwrap();
        let mut b = CoeBenchmark::new(name, spec);
        b.metadata.namespace = Some("ns".into());
        b.status = Some(CoeBenchmarkStatus {
            next_schedule_time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(next).unwrap(),
            )),
            ..Default::default()
        });
        b
    }

    #[test]
    fn next_runs_come_from_the_cache_and_missed_slots_are_counted() {
        let metrics = Metrics::new();
        let mut writer = Writer::<CoeBenchmark>::default();
        for b in [
            bench("nightly", Some("0 2 * * *"), false, 1_800_000_000),
            bench("paused", Some("0 2 * * *"), true, 1_800_000_000),
            bench("unscheduled", None, false, 1_800_000_000),
        ] {
            writer.apply_watcher_event(&Event::Apply(b));
        }
        metrics.watch_benchmarks(writer.as_reader());
        metrics.missed_schedule("ns", "nightly", "concurrency_forbid");
        drop(metrics.reconcile("benchmark"));
        let text = metrics.encode().unwrap();
        for needle in [
            "# TYPE coebench_benchmark_next_run_timestamp_seconds gauge",
            "coebench_benchmark_next_run_timestamp_seconds{namespace=\"ns\",benchmark=\"nightly\"} 1800000000",
            "coebench_benchmark_missed_schedules_total{namespace=\"ns\",benchmark=\"nightly\",reason=\"concurrency_forbid\"} 1",
            "coebench_operator_reconciles_total{controller=\"benchmark\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(
            !text.contains("paused") && !text.contains("unscheduled"),
            "{text}"
        );
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");

        // A deleted benchmark's series goes with it.
        writer.apply_watcher_event(&Event::Delete(bench(
            "nightly",
            Some("0 2 * * *"),
            false,
            0,
        )));
        let text = metrics.encode().unwrap();
        assert!(!text.contains("next_run_timestamp_seconds{"), "{text}");
    }
}
