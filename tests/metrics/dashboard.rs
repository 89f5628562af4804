//! The Grafana dashboard shipped with the chart (`charts/coebench/dashboards/coebench.json`):
//! valid enough for Grafana to load, and every metric any query names is one the runner or the
//! operator exports, with the names taken from their registries, not from a list kept by hand.

use std::collections::BTreeSet;

use coebench_operator::crd::RunPhase;
use coebench_operator::metrics::Metrics;
use coebench_plan::Row;
use coebench_plan::exposition::sample_names;
use coebench_runner::engine::observer::{RunObserver, RunStarted};
use coebench_runner::prometheus::{RunLabels, RunMetrics};
use serde_json::Value;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/coebench/dashboards/coebench.json"
);

/// Every sample name both binaries export, from their registries with each family populated.
fn exported_names() -> BTreeSet<String> {
    let runner = RunMetrics::new(RunLabels::default());
    runner.run_started(&RunStarted {
        run_name: "r".into(),
        rows: 1,
        endpoint: "e".into(),
        run_dir: "/tmp".into(),
    });
    let row = Row {
        model: "m".into(),
        input_tokens: 1,
        output_tokens: 1,
        num_requests: 1,
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
    };
    runner.row_started(0, &row, "b");
    let mut names: BTreeSet<String> = sample_names(&runner.encode(None).unwrap().body)
        .into_iter()
        .collect();

    let operator = Metrics::new();
    drop(operator.reconcile("run"));
    operator.reconcile_error("run", "kube_api");
    operator.run_finished(RunPhase::Succeeded, "Succeeded");
    operator.regression_found("ns", "b");
    operator.watch_runs(kube::runtime::reflector::store::Writer::default().as_reader());
    names.extend(sample_names(&operator.exposition(None).unwrap().body));
    names
}

/// Every string under a `expr`, `query` or `definition` key, anywhere in `value`.
fn queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "query" | "definition", Value::String(q)) => out.push(q.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// The identifiers in a PromQL expression that name coebench metrics.
fn metric_names(promql: &str) -> Vec<String> {
    promql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| token.starts_with("coebench_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let exported = exported_names();
    for must in [
        "coebench_requests_total",
        "coebench_client_ttft_seconds_bucket",
        "coebench_benchmark_result_client_ttft_seconds",
        "coebench_operator_reconciles_total",
    ] {
        assert!(exported.contains(must), "{must} not in {exported:?}");
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let mut all = Vec::new();
    queries(&dashboard, &mut all);
    let mut used = BTreeSet::new();
    for query in &all {
        for name in metric_names(query) {
            assert!(
                exported.contains(&name),
                "the dashboard queries {name}, which nothing exports (in {query})"
            );
            used.insert(name);
        }
    }
    // The dashboard covers both binaries.
    assert!(
        used.iter()
            .any(|n| n.starts_with("coebench_benchmark_result_"))
    );
    assert!(used.iter().any(|n| n.starts_with("coebench_operator_")));
    assert!(used.contains("coebench_client_ttft_seconds_bucket"));
}

#[test]
fn the_dashboard_is_a_loadable_grafana_dashboard() {
    let d: Value = serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    assert_eq!(d["uid"], "coebench-overview");
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        vars,
        ["datasource", "namespace", "benchmark", "model", "run"]
    );
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for panel in panels {
        let id = panel["id"].as_u64().expect("every panel has an id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        let grid = &panel["gridPos"];
        assert!(grid["w"].as_u64().unwrap() <= 24 && grid["h"].as_u64().unwrap() > 0);
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("a panel has targets");
        assert!(!targets.is_empty(), "panel {id} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {id}");
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()));
        }
    }
}
