//! The chart's opt-in PrometheusRule: off by default, and its alerts tested with the real
//! `promtool test rules` (Debian's `prometheus` package) on the rules the chart renders with
//! the demo values, against the scenarios of `tests/chart/alerts_test.yaml`; every metric the
//! rules query is one the operator exports.

use std::process::Command;

use coebench_operator::crd::RunPhase;
use coebench_operator::metrics::Metrics;
use coebench_plan::exposition::sample_names;

use super::{read, render};
use crate::support::prometheus::require;

#[test]
fn the_alerts_fire_on_regressions_failed_runs_and_missed_schedules() {
    let rendered = render();
    assert_eq!(
        rendered.cases["default"].of_kind("PrometheusRule").count(),
        0,
        "the PrometheusRule is opt-in"
    );
    let case = &rendered.cases["demo"];
    let rule = case.get("PrometheusRule", &rendered.release);
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    let spec = &rule["spec"];

    // Every metric the rules query is exported by the operator.
    let operator = Metrics::new();
    operator.run_finished(RunPhase::Failed, "DeadlineExceeded");
    operator.regression_found("ns", "b");
    operator.missed_schedule("ns", "b", "concurrency_forbid");
    operator.watch_benchmarks(kube::runtime::reflector::store::Writer::default().as_reader());
    let exported = sample_names(&operator.exposition(None).unwrap().body);
    let mut alerts = Vec::new();
    for r in spec["groups"][0]["rules"].as_array().unwrap() {
        alerts.push(r["alert"].as_str().unwrap().to_string());
        let expr = r["expr"].as_str().unwrap();
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("coebench_"))
        {
            assert!(
                exported.iter().any(|e| e == name),
                "alert {} queries {name}, which the operator does not export",
                r["alert"]
            );
        }
    }
    assert_eq!(
        alerts,
        [
            "CoeBenchmarkRegressed",
            "CoeBenchmarkRunFailed",
            "CoeBenchmarkScheduleMissed",
            "CoeBenchmarkScheduledRunsNotSucceeding"
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.json"), spec.to_string()).unwrap();
    std::fs::write(
        dir.path().join("alerts_test.yaml"),
        read("tests/chart/alerts_test.yaml"),
    )
    .unwrap();
    let output = Command::new(require("promtool"))
        .args(["test", "rules", "alerts_test.yaml"])
        .current_dir(dir.path())
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
