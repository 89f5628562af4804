//! The Prometheus exporter on a real run: the engine against the simulator over loopback, with
//! [`RunMetrics`] as an observer, and the exported counters and histograms checked against the
//! run's own summaries and per-request files (errors by class included).

#[path = "common/engine_support.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;

use coebench_runner::client::ClientOptions;
use coebench_runner::engine::load::StopSignal;
use coebench_runner::engine::observer::RunObserver;
use coebench_runner::engine::run::{PlanSource, RunSettings, run_plan};
use coebench_runner::metrics::{OUTCOMES, RunLabels, RunMetrics};
use support::*;

/// The value of the sample `name{labels}` in Prometheus text `text`.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_against_the_simulator_counts_requests_tokens_and_error_classes() {
    let faulty = r#"
  - name: limited
    weights_gb: 1
    prefill_tokens_per_sec: 50000
    decode_tokens_per_sec: [800]
    max_sequence_length: 4096
    faults:
      rate_limit: {requests_per_sec: 0.5, burst: 2}
  - name: broken
    weights_gb: 1
    prefill_tokens_per_sec: 50000
    decode_tokens_per_sec: [800]
    max_sequence_length: 4096
    faults:
      error: {status: 500}
"#;
    let sim = start_simulator(&bundle_yaml(faulty)).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_against(
        &sim,
        vec![
            concurrency_row("expert-a", 60, 12, 6, 2),
            concurrency_row("limited", 40, 8, 5, 5),
            concurrency_row("broken", 40, 8, 3, 1),
        ],
        dir.path(),
    );
    let metrics = Arc::new(RunMetrics::new(RunLabels {
        namespace: "perf".into(),
        benchmark: "nightly".into(),
        run: String::new(),
    }));
    let env: HashMap<String, String> = [("SAMBANOVA_API_KEY".to_string(), KEY.to_string())].into();
    let settings = RunSettings {
        source: PlanSource::default(),
        env: Box::new(move |name| env.get(name).cloned()),
        simulator_truth_log: None,
        client: ClientOptions::default(),
    };
    let observer: Arc<dyn RunObserver> = metrics.clone();
    let result = run_plan(plan, settings, observer, Arc::new(StopSignal::default()))
        .await
        .expect("the run starts");
    let text = metrics.encode(None).unwrap().body;

    let run = "namespace=\"perf\",benchmark=\"nightly\",run=\"test-run\"";
    assert_eq!(sample(&text, "coebench_run_rows", run), Some(3.0), "{text}");
    assert_eq!(
        sample(&text, "coebench_run_rows_finished_total", run),
        Some(3.0)
    );
    assert_eq!(sample(&text, "coebench_run_current_row", run), Some(2.0));

    let mut classes_seen = Vec::new();
    for (index, summary) in result.rows.iter().enumerate() {
        let row = format!("{run},model=\"{}\",row=\"{index}\"", summary.model);
        let get = |name: &str, extra: &str| {
            sample(&text, name, &format!("{row}{extra}"))
                .unwrap_or_else(|| panic!("no {name}{{{row}{extra}}} in\n{text}"))
        };
        assert_eq!(
            get("coebench_requests_total", ",outcome=\"ok\""),
            f64::from(summary.num_completed_requests),
            "row {index}"
        );
        let mut sent = 0.0;
        for outcome in OUTCOMES {
            let n = get(
                "coebench_requests_total",
                &format!(",outcome=\"{outcome}\""),
            );
            sent += n;
            if outcome != "ok" {
                let expected = summary
                    .error_class_frequency
                    .get(outcome)
                    .copied()
                    .unwrap_or(0);
                assert_eq!(n, f64::from(expected), "row {index} outcome {outcome}");
                if n > 0.0 {
                    classes_seen.push(outcome);
                }
            }
        }
        assert_eq!(sent, f64::from(summary.num_requests_started), "row {index}");
        assert_eq!(get("coebench_requests_in_flight", ""), 0.0);

        let records = individual_responses(&result, index);
        let total = |key: &str| -> f64 {
            records
                .iter()
                .filter(|r| r["error_code"].is_null())
                .filter_map(|r| r[key].as_f64())
                .sum()
        };
        assert_eq!(
            get("coebench_input_tokens_total", ""),
            total("number_input_tokens")
        );
        assert_eq!(
            get("coebench_output_tokens_total", ""),
            total("number_output_tokens")
        );
        let completed = f64::from(summary.num_completed_requests);
        assert_eq!(get("coebench_client_ttft_seconds_count", ""), completed);
        assert_eq!(
            get("coebench_client_end_to_end_latency_seconds_count", ""),
            completed
        );
        assert_eq!(
            get("coebench_client_ttft_seconds_bucket", ",le=\"+Inf\""),
            completed
        );
        let gaps: usize = records
            .iter()
            .filter_map(|r| r["client_inter_token_latencies_s"].as_array())
            .map(Vec::len)
            .sum();
        assert_eq!(
            get("coebench_client_inter_token_latency_seconds_count", ""),
            gaps as f64
        );
        let ttft_sum = get("coebench_client_ttft_seconds_sum", "");
        assert!(
            (ttft_sum - total("client_ttft_s")).abs() < 1e-6,
            "{ttft_sum} vs {}",
            total("client_ttft_s")
        );
    }
    classes_seen.sort();
    assert_eq!(classes_seen, ["http-5xx", "rate-limited"], "{text}");
    sim.shutdown().await.unwrap();
}
