//! Regression metrics, in the per-benchmark registry (prefix `coebench_benchmark`):
//! - `coebench_benchmark_regressed{namespace,benchmark}` (gauge, 0 or 1): 1 while the
//!   benchmark's `Regressed` condition is True (its newest compared run regressed against its
//!   baseline), 0 while it is False or Unknown; read from the benchmark controller's cache at
//!   scrape time, for benchmarks with `spec.regression` that have compared a run.
//! - `coebench_benchmark_regressions_total{namespace,benchmark}` (counter): runs found to have
//!   regressed, counted when the verdict is written to the run (once per run). Like every
//!   counter it lives until the operator restarts.

use std::fmt;
use std::sync::Mutex;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::conditions::types;
use crate::crd::CoeBenchmark;

/// Labels of a benchmark's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BenchmarkLabels {
    /// The benchmark's namespace.
    pub namespace: String,
    /// The benchmark.
    pub benchmark: String,
}

/// Reads each benchmark's `Regressed` condition from the cache at scrape time.
#[derive(Default)]
pub(super) struct RegressedGauge {
    pub(super) store: Mutex<Option<Store<CoeBenchmark>>>,
}

impl fmt::Debug for RegressedGauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RegressedGauge")
    }
}

impl Collector for RegressedGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let benchmarks = self
            .store
            .lock()
            .expect("metrics lock")
            .as_ref()
            .map(Store::state)
            .unwrap_or_default();
        let mut states: Vec<(String, String, i64)> = benchmarks
            .iter()
            .filter(|b| b.spec.regression.is_some())
            .filter_map(|b| {
                let conditions = &b.status.as_ref()?.conditions;
                let c = crate::conditions::find(conditions, types::REGRESSED)?;
                Some((
                    b.namespace().unwrap_or_default(),
                    b.name_any(),
                    i64::from(c.status == "True"),
                ))
            })
            .collect();
        states.sort();
        let mut family = encoder.encode_descriptor(
            "regressed",
            "1 while the benchmark's newest compared run regressed against its baseline beyond the thresholds (spec.regression), else 0",
            None,
            MetricType::Gauge,
        )?;
        for (namespace, benchmark, value) in states {
            let labels = [("namespace", namespace), ("benchmark", benchmark)];
            let metric = family.encode_family(&labels)?;
            ConstGauge::new(value).encode(metric)?;
        }
        Ok(())
    }
}
