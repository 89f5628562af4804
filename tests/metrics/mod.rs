//! Metrics end to end: a real Prometheus server scrapes a runner benchmarking the simulator and
//! the operator reporting that run, and PromQL over its HTTP API must agree with the run's own
//! numbers; `promtool check metrics` accepts both endpoints; the dashboard only queries what is
//! exported; a deleted benchmark's result series disappear.

mod dashboard;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use coebench_operator::controller::Settings;
use coebench_operator::http;
use coebench_plan::report::RunOutcome;
use coebench_runner::client::ClientOptions;
use coebench_runner::engine::load::StopSignal;
use coebench_runner::engine::run::{PlanSource, RunSettings, run_plan};
use coebench_runner::prometheus::buckets::TTFT_SECONDS;
use coebench_runner::prometheus::{ExportOptions, Exporter, RunLabels};
use coebench_test_support::engine_support as engine;
use k8s_openapi::api::batch::v1::Job;
use serde_json::json;
use tokio::sync::watch;

use crate::support::prometheus::{Prometheus, http_get, promtool_check_metrics, require};
use crate::support::*;

/// How long Prometheus may take to show a scraped value.
const SCRAPED: Duration = Duration::from_secs(30);

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_runner_and_the_operator_and_promql_agrees_with_the_run() {
    require("prometheus");
    require("promtool");

    // The operator, against the fake API server, with its HTTP server on a free port.
    let fake = FakeApiServer::new();
    put_secret(&fake, "sn-key", "apiKey");
    put_claim(&fake, "results");
    // The run happens between the Job's creation and its Pod's: the bounds on a Job without a
    // Pod must not end it first on a loaded machine.
    let patient = Settings {
        unschedulable_timeout: Duration::from_secs(600),
        startup_timeout: Duration::from_secs(600),
        ..fast_settings()
    };
    let operator = Operator::start(&fake, patient).await;
    put_benchmark(&fake, "nightly", json!({}));
    eventually(WAIT, "the runner Job", || fake.get::<Job>(NS, "nightly-1")).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let operator_addr = listener.local_addr().unwrap();
    let (stop_http, stop_http_rx) = watch::channel(false);
    let (_ready, ready_rx) = watch::channel(true);
    let http_server = tokio::spawn(http::serve(
        listener,
        operator.metrics.clone(),
        ready_rx,
        stop_http_rx,
    ));

    // The runner's exporter, labelled as the operator's Job labels it.
    let exporter = Exporter::start(ExportOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        labels: RunLabels {
            namespace: NS.into(),
            benchmark: "nightly".into(),
            run: String::new(),
        },
        ..ExportOptions::default()
    })
    .await
    .unwrap();
    let runner_addr = exporter.local_addr().unwrap();
    let prometheus =
        Prometheus::start(&[("runner", runner_addr), ("operator", operator_addr)]).await;

    // The run: a healthy expert, a rate-limited one and a broken one.
    let sim =
        engine::start_simulator(&engine::bundle_yaml(engine::RATE_LIMITED_AND_BROKEN_MODELS)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut plan = engine::plan_against(
        &sim,
        vec![
            engine::concurrency_row("expert-a", 60, 12, 8, 2),
            engine::concurrency_row("limited", 40, 8, 5, 5),
            engine::concurrency_row("broken", 40, 8, 3, 1),
        ],
        dir.path(),
    );
    plan.output.run_name = Some("nightly-1".into());
    let env: HashMap<String, String> =
        [("SAMBANOVA_API_KEY".to_string(), engine::KEY.to_string())].into();
    let settings = RunSettings {
        source: PlanSource::default(),
        env: Box::new(move |name| env.get(name).cloned()),
        simulator_truth_log: None,
        client: ClientOptions::default(),
        distribution: None,
    };
    let stop = Arc::new(StopSignal::default());
    let result = run_plan(plan, settings, exporter.metrics(), Arc::clone(&stop))
        .await
        .expect("the run starts");
    // The broken row had every request fail: the run says so (exit code 6).
    assert_eq!(
        result.outcome,
        RunOutcome::RowsFailed,
        "{:?}",
        result.message
    );
    let report = result.report();

    // The runner's report reaches the operator as the kubelet would hand it over.
    let pod = fake.start_job_pod(NS, "nightly-1");
    fake.set_pod_running(NS, &pod);
    fake.terminate_pod(NS, &pod, 0, &report.to_bounded_json());
    fake.mark_job(NS, "nightly-1", None);

    // Runner series, as Prometheus scraped them.
    let run = r#"namespace="team-a",benchmark="nightly",run="nightly-1""#;
    let sent: u32 = result.rows.iter().map(|r| r.num_requests_started).sum();
    let completed: u32 = result.rows.iter().map(|r| r.num_completed_requests).sum();
    let expect = |promql: String, want: f64| {
        let prometheus = &prometheus;
        async move {
            prometheus
                .value_when(&promql, SCRAPED, |v| close(v, want))
                .await
        }
    };
    expect(
        format!("sum(coebench_requests_total{{{run}}})"),
        f64::from(sent),
    )
    .await;
    expect(
        format!(r#"sum(coebench_requests_total{{{run},outcome="ok"}})"#),
        f64::from(completed),
    )
    .await;
    expect(
        format!("sum(coebench_client_ttft_seconds_count{{{run}}})"),
        f64::from(completed),
    )
    .await;
    for (index, summary) in result.rows.iter().enumerate() {
        let row = format!(r#"{run},row="{index}",model="{}""#, summary.model);
        for (class, n) in &summary.error_class_frequency {
            expect(
                format!(r#"sum(coebench_requests_total{{{row},outcome="{class}"}})"#),
                f64::from(*n),
            )
            .await;
        }
        let records = engine::individual_responses(&result, index);
        let tokens = |key: &str| -> f64 {
            records
                .iter()
                .filter(|r| r["error_code"].is_null())
                .filter_map(|r| r[key].as_f64())
                .sum()
        };
        expect(
            format!("sum(coebench_output_tokens_total{{{row}}})"),
            tokens("number_output_tokens"),
        )
        .await;
        expect(
            format!("sum(coebench_input_tokens_total{{{row}}})"),
            tokens("number_input_tokens"),
        )
        .await;
        expect(format!("sum(coebench_requests_in_flight{{{row}}})"), 0.0).await;
    }
    assert!(
        result.rows[1]
            .error_class_frequency
            .contains_key("rate-limited")
            && result.rows[2]
                .error_class_frequency
                .contains_key("http-5xx"),
        "the faults happened: {:?} {:?}",
        result.rows[1].error_class_frequency,
        result.rows[2].error_class_frequency
    );

    // The median from the histogram falls between the buckets of the fastest and slowest TTFT.
    let ttfts: Vec<f64> = engine::individual_responses(&result, 0)
        .iter()
        .filter_map(|r| r["client_ttft_s"].as_f64())
        .collect();
    let lowest = ttfts.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = ttfts.iter().copied().fold(0.0, f64::max);
    let floor = TTFT_SECONDS
        .iter()
        .copied()
        .filter(|b| *b < lowest)
        .fold(0.0, f64::max);
    let ceiling = TTFT_SECONDS
        .iter()
        .copied()
        .find(|b| *b >= highest)
        .unwrap_or(f64::INFINITY);
    prometheus
        .value_when(
            &format!(
                r#"histogram_quantile(0.5, sum by (le) (coebench_client_ttft_seconds_bucket{{{run},row="0"}}))"#
            ),
            SCRAPED,
            |v| v >= floor && v <= ceiling,
        )
        .await;

    // Operator series: the latest result gauges equal the runner's report.
    let row0 = &report.rows[0];
    let bench = r#"namespace="team-a",benchmark="nightly",row="0",model="expert-a""#;
    let gauge = |name: &str, stat: Option<&str>| {
        let q = stat.map(|q| format!(r#",stat="{q}""#)).unwrap_or_default();
        format!("coebench_benchmark_result_{name}{{{bench}{q}}}")
    };
    for (promql, want) in [
        (
            gauge("client_ttft_seconds", Some("p50")),
            row0.client_ttft_p50_s,
        ),
        (
            gauge("client_ttft_seconds", Some("p90")),
            row0.client_ttft_p90_s(),
        ),
        (
            gauge("client_ttft_seconds", Some("p99")),
            row0.client_ttft_p99_s(),
        ),
        (
            gauge("server_ttft_seconds", Some("p50")),
            row0.server_ttft_p50_s,
        ),
        (
            gauge("server_ttft_seconds", Some("p99")),
            row0.server_ttft_p99_s(),
        ),
        (
            gauge("end_to_end_latency_seconds", Some("p50")),
            row0.e2e_p50_s,
        ),
        (
            gauge("output_tokens_per_second", Some("p50")),
            row0.output_tokens_per_s_p50,
        ),
        (gauge("error_ratio", None), Some(0.0)),
    ] {
        let want = want.unwrap_or_else(|| panic!("the report has a value for {promql}"));
        assert_eq!(
            prometheus.value_when(&promql, SCRAPED, |v| v == want).await,
            want
        );
    }
    expect(
        r#"coebench_benchmark_result_error_ratio{benchmark="nightly",row="2"}"#.to_string(),
        1.0,
    )
    .await;
    expect(
        r#"count(coebench_benchmark_result_run_info{benchmark="nightly",run="nightly-1"})"#
            .to_string(),
        1.0,
    )
    .await;
    prometheus
        .value_when(
            r#"sum(coebench_operator_reconciles_total{controller="run"})"#,
            SCRAPED,
            |v| v >= 1.0,
        )
        .await;
    expect(r#"sum(up{job=~"runner|operator"})"#.to_string(), 2.0).await;
    prometheus
        .value_when(r#"count_over_time(up{job="runner"}[5m])"#, SCRAPED, |v| {
            v >= 2.0
        })
        .await;

    // promtool accepts what each endpoint serves in the Prometheus text format.
    for (what, addr) in [("runner", runner_addr), ("operator", operator_addr)] {
        let (status, text) = http_get(addr, "/metrics", None).await.unwrap();
        assert_eq!(status, 200, "{what}: {text}");
        if let Err(problems) = promtool_check_metrics(&text) {
            panic!("promtool rejects the {what}'s metrics: {problems}\n{text}");
        }
    }

    drop(prometheus);
    exporter.finish(&stop).await;
    let _ = stop_http.send(true);
    let _ = http_server.await;
    sim.shutdown().await.unwrap();
    operator.stop().await;
}

#[tokio::test]
async fn a_deleted_benchmarks_result_series_disappear() {
    let fake = FakeApiServer::new();
    put_secret(&fake, "sn-key", "apiKey");
    put_claim(&fake, "results");
    let operator = Operator::start(&fake, fast_settings()).await;
    put_benchmark(&fake, "bench", json!({}));
    eventually(WAIT, "the runner Job", || fake.get::<Job>(NS, "bench-1")).await;
    let pod = fake.start_job_pod(NS, "bench-1");
    fake.terminate_pod(NS, &pod, 0, &report("bench-1", RunOutcome::Succeeded, None));
    fake.mark_job(NS, "bench-1", None);
    let series = r#"coebench_benchmark_result_client_ttft_seconds{namespace="team-a",benchmark="bench",model="DeepSeek-R1",row="1",stat="p50"} 0.48"#;
    eventually(WAIT, "the result gauge", || {
        operator
            .metrics
            .encode()
            .unwrap()
            .contains(series)
            .then_some(())
    })
    .await;
    let api: kube::Api<coebench_operator::crd::CoeBenchmark> =
        kube::Api::namespaced(fake.client(), NS);
    api.delete("bench", &Default::default()).await.unwrap();
    eventually(WAIT, "no series of the deleted benchmark", || {
        (!operator
            .metrics
            .encode()
            .unwrap()
            .contains("benchmark=\"bench\""))
        .then_some(())
    })
    .await;
    operator.stop().await;
}
