//! The results channel: the runner's own publisher (`coebench_runner::results_api`) writes each
//! finished row to the run's results ConfigMaps over real HTTP (the fake API server on a
//! loopback port), and the operator carries every row into the run's status, the benchmark's
//! `lastResult` and the result gauges, far past what the 4 KiB termination message holds.

use coebench_operator::crd::CoeBenchmarkRunStatus;
use coebench_operator::crd::RowStatus;
use coebench_plan::report::{RowReport, RunReport, TERMINATION_MESSAGE_LIMIT};
use coebench_runner::results_api::{ApiAccess, Published, ResultsPublisher};
use coebench_test_support::engine_support::{
    KEY, bundle_yaml, concurrency_row, plan_against, run_observed, start_simulator,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

use super::*;

fn row_report(i: usize) -> RowReport {
    RowReport {
        model: format!("expert-{i:04}"),
        input_tokens: 1000,
        output_tokens: 100,
        concurrency: Some(1),
        qps: None,
        completed: 16,
        errors: 0,
        client_ttft_p50_s: Some(0.1 + i as f64 / 10_000.0),
        server_ttft_p50_s: Some(0.09),
        e2e_p50_s: Some(1.5),
        output_tokens_per_s_p50: Some(250.0),
        switching_time_s: Some(0.0),
        ttft_tail_s: Some([Some(0.2), Some(0.3), Some(0.19), Some(0.29)]),
        goodput: Some(0.9),
        image_size: None,
        e2e_tail_s: Some([Some(1.9), Some(2.4)]),
        output_tokens_per_s_tail: Some([Some(270.0), Some(290.0)]),
        objectives_met: None,
    }
}

async fn publisher(fake: &FakeApiServer, run: &str) -> std::sync::Arc<ResultsPublisher> {
    let access = ApiAccess {
        base: fake.serve_http().await.parse().unwrap(),
        namespace: NS.into(),
        token_file: None,
        ca_file: None,
    };
    ResultsPublisher::start(access, run).expect("the publisher starts")
}

fn progress(run: &CoeBenchmarkRun) -> Option<&str> {
    run.status.as_ref().and_then(|s| s.progress.as_deref())
}

#[tokio::test]
async fn every_row_of_a_thousand_row_run_reaches_the_status_the_benchmark_and_the_gauges() {
    const ROWS: usize = 1000;
    let fake = FakeApiServer::new();
    let rows: Vec<_> = (0..ROWS)
        .map(|i| row(&format!("expert-{i:04}"), 1))
        .collect();
    let (operator, _) = started(&fake, "bench", json!({ "rows": rows })).await;
    // The run's results channel exists before its Pod does.
    let config_map = fake.get::<ConfigMap>(NS, "bench-1-results-0").unwrap();
    assert!(config_map.data.unwrap_or_default().is_empty());
    assert!(fake.get::<ServiceAccount>(NS, "bench-1-runner").is_some());
    let role = fake.get::<Role>(NS, "bench-1-results").unwrap();
    let rule = &role.rules.unwrap()[0];
    assert_eq!(
        rule.resource_names.as_deref(),
        Some(&["bench-1-results-0".to_string()][..])
    );
    assert_eq!(rule.verbs, ["get", "patch"]);
    let binding = fake.get::<RoleBinding>(NS, "bench-1-results").unwrap();
    assert_eq!(binding.subjects.unwrap()[0].name, "bench-1-runner");

    let pod = running_pod(&fake, "bench-1").await;
    let publisher = publisher(&fake, "bench-1").await;
    for i in 0..ROWS / 2 {
        publisher.publish(i, row_report(i));
    }
    // Rows reach the status while the run is still running.
    let half = run_where(&fake, "bench-1", "500 rows while running", |r| {
        progress(r) == Some("500/1000")
    })
    .await;
    assert_eq!(run_phase(&half), Some(RunPhase::Running));
    assert_eq!(half.status.as_ref().unwrap().rows.len(), 500);
    for i in ROWS / 2..ROWS {
        publisher.publish(i, row_report(i));
    }
    assert_eq!(
        publisher.finish().await,
        Published {
            rows: ROWS,
            failed: 0
        }
    );

    // The termination message holds what fits in 4 KiB: a handful of rows.
    let report = RunReport {
        version: 1,
        run_name: "bench-1".into(),
        outcome: RunOutcome::Succeeded,
        results_path: None,
        rows: (0..ROWS).map(row_report).collect(),
        rows_omitted: 0,
        message: None,
    }
    .to_bounded_json();
    assert!(report.len() <= TERMINATION_MESSAGE_LIMIT);
    let in_message = serde_json::from_str::<RunReport>(&report)
        .unwrap()
        .rows
        .len();
    assert!(
        in_message < 50,
        "{in_message} rows in the termination message"
    );
    fake.terminate_pod(NS, &pod, 0, &report);
    fake.mark_job(NS, "bench-1", None);
    let run = run_where(&fake, "bench-1", "phase Succeeded", |r| {
        run_phase(r) == Some(RunPhase::Succeeded)
    })
    .await;
    let status = run.status.as_ref().unwrap();
    assert_eq!(status.rows.len(), ROWS);
    assert_eq!(status.progress.as_deref(), Some("1000/1000"));
    assert_eq!(status.rows_finished, Some(1000));
    assert_eq!(status.rows_omitted, None);
    assert_eq!(status.rows[999].model, "expert-0999");
    assert_eq!(status.rows[999].client_ttft_p99_seconds, Some(0.3));

    let bench = benchmark_where(&fake, "bench", "the last result", |b| {
        b.status.as_ref().is_some_and(|s| s.last_result.is_some())
    })
    .await;
    assert_eq!(bench.status.unwrap().last_result.unwrap().rows.len(), ROWS);
    let gauges = eventually(WAIT, "a result gauge for every row", || {
        let text = operator.metrics.encode().unwrap();
        let rows = text
            .lines()
            .filter(|l| {
                l.starts_with("coebench_benchmark_result_client_ttft_seconds{")
                    && l.contains("stat=\"p50\"")
            })
            .count();
        (rows == ROWS).then_some(text)
    })
    .await;
    assert!(gauges.contains("model=\"expert-0999\""));
    operator.stop().await;
}

#[tokio::test]
async fn the_engine_publishes_each_row_as_it_finishes() {
    let fake = FakeApiServer::new();
    let (operator, _) = started(&fake, "bench", json!({})).await;
    running_pod(&fake, "bench-1").await;
    // The real engine runs two rows against the simulator, with the publisher as observer.
    let sim = start_simulator(&bundle_yaml("")).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_against(
        &sim,
        vec![
            concurrency_row("expert-a", 64, 8, 4, 2),
            concurrency_row("expert-b", 64, 8, 4, 2),
        ],
        dir.path(),
    );
    let publisher = publisher(&fake, "bench-1").await;
    let result = run_observed(plan, &[("SAMBANOVA_API_KEY", KEY)], publisher.clone())
        .await
        .expect("the run starts");
    assert_eq!(publisher.finish().await.rows, 2);
    let run = run_where(&fake, "bench-1", "both rows in status", |r| {
        progress(r) == Some("2/2")
    })
    .await;
    // Before the Pod ended: the rows came through the API, not the termination message.
    assert_eq!(run_phase(&run), Some(RunPhase::Running));
    let rows = &run.status.as_ref().unwrap().rows;
    assert_eq!(rows[0].model, "expert-a");
    assert_eq!(rows[1].model, "expert-b");
    assert_eq!(rows[1].completed, 4);
    let engine_p50 = result.rows[1].row_report().client_ttft_p50_s;
    assert_eq!(rows[1].client_ttft_p50_seconds, engine_p50);
    operator.stop().await;
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_row_the_api_refuses_is_counted_and_logged_not_fatal() {
    let fake = FakeApiServer::new();
    // No such run: its ConfigMap does not exist, so the patch gets 404 and is not retried.
    let publisher = publisher(&fake, "nope").await;
    publisher.publish(0, row_report(0));
    assert_eq!(publisher.finish().await, Published { rows: 0, failed: 1 });
    let patches = fake
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/configmaps/nope-results-0"))
        .count();
    assert_eq!(patches, 1, "a 404 is not retried");
}

/// Sizes of what the API server stores for a run of `rows` rows: the run (spec and status),
/// the benchmark's `lastResult` and the largest results ConfigMap's data, in bytes of JSON.
fn stored_sizes(rows: usize) -> (usize, usize, usize) {
    let spec_row = |i: usize| row(&format!("Meta-Llama-3.3-70B-Instruct-variant-{i:04}"), 16);
    let reports: Vec<RowReport> = (0..rows)
        .map(|i| RowReport {
            model: format!("Meta-Llama-3.3-70B-Instruct-variant-{i:04}"),
            client_ttft_p50_s: Some(0.123456789),
            ..row_report(i)
        })
        .collect();
    let statuses: Vec<RowStatus> = reports
        .iter()
        .map(coebench_operator::status::row_status)
        .collect();
    let run = json!({
        "spec": {"rows": (0..rows).map(spec_row).collect::<Vec<_>>()},
        "status": CoeBenchmarkRunStatus { rows: statuses.clone(), ..Default::default() },
    });
    let last_result = serde_json::to_string(&statuses).unwrap().len();
    let shard: usize = reports
        .iter()
        .take(coebench_plan::report::ROWS_PER_RESULTS_CONFIG_MAP)
        .enumerate()
        .map(|(i, r)| {
            coebench_plan::report::results_row_key(i).len()
                + serde_json::to_string(r).unwrap().len()
                + 6
        })
        .sum();
    (run.to_string().len(), last_result, shard)
}

#[test]
fn stored_objects_stay_under_the_api_servers_limits() {
    const ETCD_LIMIT: usize = 1536 * 1024;
    const CONFIG_MAP_LIMIT: usize = 1024 * 1024;
    for rows in [1000, 5000] {
        let (run, last_result, shard) = stored_sizes(rows);
        eprintln!(
            "{rows} rows: run {run} bytes, benchmark lastResult {last_result} bytes, largest results ConfigMap {shard} bytes"
        );
        assert!(
            shard < CONFIG_MAP_LIMIT * 6 / 10,
            "{rows} rows: ConfigMap {shard}"
        );
        if rows <= 1000 {
            // The CRD's cap (1,000 rows a run) keeps the run and benchmark far below etcd's limit.
            assert!(run < ETCD_LIMIT / 2, "{rows} rows: run {run}");
            assert!(
                last_result < ETCD_LIMIT / 2,
                "{rows} rows: lastResult {last_result}"
            );
            // A benchmark comparing runs with a named baseline keeps its rows too
            // (`status.regression.baseline`): two copies still fit.
            assert!(
                2 * last_result < ETCD_LIMIT * 3 / 4,
                "{rows} rows: lastResult and a baseline {}",
                2 * last_result
            );
        } else {
            // Past it, a run's status alone would pass etcd's limit: why the cap is there.
            assert!(run > ETCD_LIMIT, "{rows} rows: run {run}");
        }
    }
}
