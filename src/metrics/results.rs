//! Gauges of each benchmark's latest results: the per-row numbers of its most recent succeeded
//! run (`status.lastResult`), so trends across scheduled runs need nothing but Prometheus.
//!
//! They are read at scrape time from the benchmark controller's cache: a deleted benchmark's
//! series vanish with it, a restarted operator exports them again at once, and nothing here
//! is ever stale or needs cleaning up. Every series is labelled `namespace`, `benchmark` and,
//! per row, `model` and `row` (the row's index in the plan, from 0); there is no `run` label on
//! values, so a benchmark's series continue from run to run (`result_run_info` names the run).

use std::fmt;
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::crd::{CoeBenchmark, RowStatus};

/// One series of a per-row metric: its `stat` label (if any) and how to read its value.
type RowValue = (Option<&'static str>, fn(&RowStatus) -> Option<f64>);

/// A per-row metric: name (without prefix and unit), help, unit, and its series.
struct RowMetric {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    values: &'static [RowValue],
}

fn row_metrics() -> [RowMetric; 8] {
    [
        RowMetric {
            name: "result_client_ttft",
            help: "Client-side time to first token of the latest succeeded run, by statistic (stat = p50, p90, p99)",
            unit: Some(Unit::Seconds),
            values: &[
                (Some("p50"), |r| r.client_ttft_p50_seconds),
                (Some("p90"), |r| r.client_ttft_p90_seconds),
                (Some("p99"), |r| r.client_ttft_p99_seconds),
            ],
        },
        RowMetric {
            name: "result_server_ttft",
            help: "Server-reported time to first token of the latest succeeded run, by statistic (stat = p50, p90, p99)",
            unit: Some(Unit::Seconds),
            values: &[
                (Some("p50"), |r| r.server_ttft_p50_seconds),
                (Some("p90"), |r| r.server_ttft_p90_seconds),
                (Some("p99"), |r| r.server_ttft_p99_seconds),
            ],
        },
        RowMetric {
            name: "result_end_to_end_latency",
            help: "Client-side end-to-end latency of the latest succeeded run, by statistic (stat = p50, p90, p99)",
            unit: Some(Unit::Seconds),
            values: &[
                (Some("p50"), |r| r.e2e_p50_seconds),
                (Some("p90"), |r| r.e2e_p90_seconds),
                (Some("p99"), |r| r.e2e_p99_seconds),
            ],
        },
        RowMetric {
            name: "result_output_tokens_per_second",
            help: "Per-request output tokens per second after the first token, latest succeeded run, by statistic (stat = p50, p90, p99)",
            unit: None,
            values: &[
                (Some("p50"), |r| r.output_tokens_per_second_p50),
                (Some("p90"), |r| r.output_tokens_per_second_p90),
                (Some("p99"), |r| r.output_tokens_per_second_p99),
            ],
        },
        RowMetric {
            name: "result_switching_time",
            help: "Estimated model-switching time of the latest succeeded run",
            unit: Some(Unit::Seconds),
            values: &[(None, |r| r.switching_time_seconds)],
        },
        RowMetric {
            name: "result_error_ratio",
            help: "Failed requests / requests sent, latest succeeded run",
            unit: None,
            values: &[(None, error_ratio)],
        },
        RowMetric {
            name: "result_goodput_ratio",
            help: "Share of requests that met the run's latency objectives (failures count as misses), latest succeeded run",
            unit: None,
            values: &[(None, |r| r.goodput)],
        },
        RowMetric {
            name: "result_completed_requests",
            help: "Requests that completed successfully in the latest succeeded run",
            unit: None,
            values: &[(None, |r| Some(f64::from(r.completed)))],
        },
    ]
}

fn error_ratio(row: &RowStatus) -> Option<f64> {
    let sent = u64::from(row.completed) + u64::from(row.errors);
    (sent > 0).then(|| f64::from(row.errors) / sent as f64)
}

/// The latest results of every benchmark in the cache, encoded at scrape time.
#[derive(Default)]
pub struct ResultGauges {
    store: Mutex<Option<Store<CoeBenchmark>>>,
}

impl fmt::Debug for ResultGauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResultGauges")
    }
}

impl ResultGauges {
    /// Reads benchmarks from `store` from now on.
    pub fn watch(&self, store: Store<CoeBenchmark>) {
        if let Ok(mut slot) = self.store.lock() {
            *slot = Some(store);
        }
    }
}

impl Collector for ResultGauges {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let benchmarks = self
            .store
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(Store::state))
            .unwrap_or_default();
        encode_results(&benchmarks, encoder)
    }
}

/// Encodes the results of `benchmarks`: every descriptor, with a series for each value present.
pub fn encode_results(
    benchmarks: &[Arc<CoeBenchmark>],
    mut encoder: DescriptorEncoder,
) -> Result<(), fmt::Error> {
    let mut latest: Vec<(String, String, &crate::crd::ResultSummary, Option<f64>)> = benchmarks
        .iter()
        .filter_map(|b| {
            let status = b.status.as_ref()?;
            let result = status.last_result.as_ref()?;
            let completed = status
                .last_successful_time
                .as_ref()
                .map(|t| t.0.as_millisecond() as f64 / 1000.0);
            Some((
                b.namespace().unwrap_or_default(),
                b.name_any(),
                result,
                completed,
            ))
        })
        .collect();
    latest.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));

    for metric in row_metrics() {
        let mut family = encoder.encode_descriptor(
            metric.name,
            metric.help,
            metric.unit.as_ref(),
            MetricType::Gauge,
        )?;
        for (namespace, benchmark, result, _) in &latest {
            for (index, row) in result.rows.iter().enumerate() {
                let index = index.to_string();
                for (stat, read) in metric.values {
                    let Some(value) = read(row).filter(|v| v.is_finite()) else {
                        continue;
                    };
                    let base = [
                        ("namespace", namespace.as_str()),
                        ("benchmark", benchmark.as_str()),
                        ("model", row.model.as_str()),
                        ("row", index.as_str()),
                    ];
                    match stat {
                        Some(q) => {
                            let labels = [base[0], base[1], base[2], base[3], ("stat", q)];
                            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
                        }
                        None => ConstGauge::new(value).encode(family.encode_family(&base)?)?,
                    }
                }
            }
        }
    }

    let mut family = encoder.encode_descriptor(
        "result_row",
        "The rows of the latest succeeded run: model, token lengths and load (value 1)",
        None,
        MetricType::Info,
    )?;
    for (namespace, benchmark, result, _) in &latest {
        for (index, row) in result.rows.iter().enumerate() {
            let (index, input, output) = (
                index.to_string(),
                row.input_tokens.to_string(),
                row.output_tokens.to_string(),
            );
            let concurrency = row.concurrency.map(|c| c.to_string()).unwrap_or_default();
            let qps = row.qps.map(|q| q.to_string()).unwrap_or_default();
            let labels = [
                ("namespace", namespace.as_str()),
                ("benchmark", benchmark.as_str()),
                ("model", row.model.as_str()),
                ("row", index.as_str()),
                ("input_tokens", input.as_str()),
                ("output_tokens", output.as_str()),
                ("concurrency", concurrency.as_str()),
                ("qps", qps.as_str()),
            ];
            family.encode_info(&labels)?;
        }
    }

    let mut family = encoder.encode_descriptor(
        "result_run",
        "The run the latest results come from (value 1)",
        None,
        MetricType::Info,
    )?;
    for (namespace, benchmark, result, _) in &latest {
        let labels = [
            ("namespace", namespace.as_str()),
            ("benchmark", benchmark.as_str()),
            ("run", result.run.as_str()),
        ];
        family.encode_info(&labels)?;
    }

    let mut family = encoder.encode_descriptor(
        "result_timestamp",
        "When the latest succeeded run completed, Unix time",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?;
    for (namespace, benchmark, _, completed) in &latest {
        if let Some(at) = completed {
            let labels = [
                ("namespace", namespace.as_str()),
                ("benchmark", benchmark.as_str()),
            ];
            ConstGauge::new(*at).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}
