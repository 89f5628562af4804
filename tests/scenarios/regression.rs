//! Regression detection (`spec.regression`): runs driven to completion with real runner reports
//! through the fake API server, each succeeded run compared with its baseline by the benchmark
//! controller, the verdict on the run and the benchmark, its Events and its metrics.

use coebench_plan::report::RunReport;

use super::*;

/// Plays the Job controller and the kubelet until run `run` succeeded, its runner reporting
/// the rows of [`report`] with DeepSeek-R1's end-to-end latency times `e2e_scale`.
async fn succeed(fake: &FakeApiServer, run: &str, e2e_scale: f64) {
    eventually(WAIT, "the run's Job", || fake.get::<Job>(NS, run)).await;
    let pod = running_pod(fake, run).await;
    let mut r: RunReport = serde_json::from_str(&report(run, RunOutcome::Succeeded, None)).unwrap();
    for row in r.rows.iter_mut().filter(|r| r.model == "DeepSeek-R1") {
        row.e2e_p50_s = row.e2e_p50_s.map(|v| v * e2e_scale);
        row.e2e_tail_s = row.e2e_tail_s.map(|t| t.map(|v| v.map(|v| v * e2e_scale)));
    }
    fake.terminate_pod(NS, &pod, 0, &r.to_bounded_json());
    fake.mark_job(NS, run, None);
}

/// Asks benchmark `bench` for one more run.
fn run_now(fake: &FakeApiServer, bench: &str, value: &str) {
    fake.modify::<CoeBenchmark>(NS, bench, |b| {
        b["metadata"]["annotations"] = json!({"coebench.dev/run-now": value})
    });
}

/// Waits for run `run`'s `Regressed` condition: (status, reason, message).
async fn verdict(fake: &FakeApiServer, run: &str) -> (String, String, String) {
    let r = run_where(fake, run, "a Regressed condition", |r| {
        run_condition(r, "Regressed").is_some()
    })
    .await;
    run_condition(&r, "Regressed").unwrap()
}

/// Waits until benchmark `bench`'s `Regressed` condition is about run `run`.
async fn benchmark_verdict(fake: &FakeApiServer, bench: &str, run: &str) -> Condition {
    let b = benchmark_where(fake, bench, "the benchmark's Regressed condition", |b| {
        b.status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "Regressed"))
            .is_some_and(|c| c.message.starts_with(&format!("run {run}: ")))
    })
    .await;
    condition(&b.status.unwrap().conditions, "Regressed")
        .unwrap()
        .clone()
}

/// Events about `object` with `reason`, as (type, note).
fn events(fake: &FakeApiServer, object: &str, reason: &str) -> Vec<(String, String)> {
    fake.list::<Event>(NS)
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object))
        .map(|e| (e.type_.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn each_run_is_compared_with_the_previous_successful_one_even_after_its_deletion() {
    let fake = FakeApiServer::new();
    let (operator, _) = started(
        &fake,
        "bench",
        json!({"regression": {"maxRegression": {"e2e": "10%"}}, "successfulRunsHistoryLimit": 1}),
    )
    .await;

    // The first run has nothing to be compared with.
    succeed(&fake, "bench-1", 1.0).await;
    let (status, reason, message) = verdict(&fake, "bench-1").await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("Unknown", "NoBaseline")
    );
    assert!(message.contains("no earlier successful run"), "{message}");
    let c = benchmark_verdict(&fake, "bench", "bench-1").await;
    assert_eq!(c.status, "Unknown");

    // The same numbers again: compared, nothing moved.
    run_now(&fake, "bench", "2");
    succeed(&fake, "bench-2", 1.0).await;
    let (status, reason, message) = verdict(&fake, "bench-2").await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "WithinThresholds"),
        "{message}"
    );
    assert!(
        message.contains("baseline run bench-1 (the previous successful run)")
            && message.contains("2 row(s), 18 values")
            && message.contains("significance not tested"),
        "{message}"
    );
    benchmark_verdict(&fake, "bench", "bench-2").await;
    // The history limit (1) deletes bench-1; bench-2's numbers stay in lastResult.
    eventually(WAIT, "bench-1 deleted", || {
        fake.get::<CoeBenchmarkRun>(NS, "bench-1")
            .is_none()
            .then_some(())
    })
    .await;

    // DeepSeek-R1's end-to-end latency 20 % slower, beyond the 10 % allowed.
    run_now(&fake, "bench", "3");
    succeed(&fake, "bench-3", 1.2).await;
    let (status, reason, message) = verdict(&fake, "bench-3").await;
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Regressed"));
    assert!(
        message.starts_with(
            "1 of 2 row(s) regressed against baseline run bench-2 (the previous successful run): DeepSeek-R1 1000/100 c8: e2e p50 1.500s -> 1.800s (+20.0%, threshold 10%); DeepSeek-R1 1000/100 c8: e2e p90"
        ),
        "{message}"
    );
    assert!(!message.contains("Meta-Llama"), "{message}");
    let c = benchmark_verdict(&fake, "bench", "bench-3").await;
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "Regressed")
    );
    // bench-2 is deleted in turn; what bench-4 is compared with is bench-3's numbers.
    eventually(WAIT, "bench-2 deleted", || {
        fake.get::<CoeBenchmarkRun>(NS, "bench-2")
            .is_none()
            .then_some(())
    })
    .await;

    // A Warning Event on the run and on the benchmark, and the metrics.
    let on_run = events(&fake, "bench-3", "Regressed");
    assert!(
        on_run
            .iter()
            .any(|(t, n)| t == "Warning" && n.contains("e2e p50")),
        "{on_run:?}"
    );
    let on_bench = events(&fake, "bench", "Regressed");
    assert!(
        on_bench
            .iter()
            .any(|(t, n)| t == "Warning" && n.starts_with("run bench-3 regressed: ")),
        "{on_bench:?}"
    );
    assert!(events(&fake, "bench-2", "Regressed").is_empty());
    let text = eventually(WAIT, "the regressed gauge at 1", || {
        let text = operator.metrics.encode().unwrap();
        text.contains("coebench_benchmark_regressed{namespace=\"team-a\",benchmark=\"bench\"} 1")
            .then_some(text)
    })
    .await;
    assert!(
        text.contains(
            "coebench_benchmark_regressions_total{namespace=\"team-a\",benchmark=\"bench\"} 1"
        ),
        "{text}"
    );

    // Back to the old speed: compared with bench-3, nothing got worse, and the gauge goes
    // back to 0.
    run_now(&fake, "bench", "4");
    succeed(&fake, "bench-4", 1.0).await;
    let (status, _, message) = verdict(&fake, "bench-4").await;
    assert_eq!(status, "False", "{message}");
    assert!(message.contains("baseline run bench-3"), "{message}");
    eventually(WAIT, "the regressed gauge at 0", || {
        operator
            .metrics
            .encode()
            .unwrap()
            .contains("coebench_benchmark_regressed{namespace=\"team-a\",benchmark=\"bench\"} 0")
            .then_some(())
    })
    .await;
    operator.stop().await;
}

#[tokio::test]
async fn a_named_baseline_is_kept_after_its_deletion_and_a_missing_one_is_said() {
    let fake = FakeApiServer::new();
    // A history limit of 0 deletes every run as soon as it succeeded.
    let (operator, _) = started(
        &fake,
        "bench",
        json!({"regression": {"baselineRun": "bench-1"}, "successfulRunsHistoryLimit": 0}),
    )
    .await;
    succeed(&fake, "bench-1", 1.0).await;
    eventually(WAIT, "bench-1 deleted", || {
        fake.get::<CoeBenchmarkRun>(NS, "bench-1")
            .is_none()
            .then_some(())
    })
    .await;
    let bench = benchmark_where(&fake, "bench", "the baseline kept", |b| {
        b.status
            .as_ref()
            .and_then(|s| s.regression.as_ref())
            .is_some_and(|r| r.baseline.is_some())
    })
    .await;
    let kept = bench.status.unwrap().regression.unwrap().baseline.unwrap();
    assert_eq!((kept.run.as_str(), kept.rows.len()), ("bench-1", 2));

    // Run 2 is 50 % slower on DeepSeek-R1's e2e: beyond the default 5 %.
    run_now(&fake, "bench", "2");
    succeed(&fake, "bench-2", 1.5).await;
    let c = benchmark_verdict(&fake, "bench", "bench-2").await;
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "Regressed")
    );
    assert!(
        c.message.contains(
            "against baseline run bench-1 (spec.regression.baselineRun): DeepSeek-R1 1000/100 c8: e2e p50 1.500s -> 2.250s (+50.0%, threshold 5%)"
        ),
        "{}",
        c.message
    );
    assert!(!events(&fake, "bench-2", "Regressed").is_empty());

    // A benchmark naming a run that never existed says so on its first run.
    put_benchmark(
        &fake,
        "other",
        json!({"regression": {"baselineRun": "nightly-7"}}),
    );
    succeed(&fake, "other-1", 1.0).await;
    let (status, reason, message) = verdict(&fake, "other-1").await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("Unknown", "BaselineNotFound")
    );
    assert!(
        message.contains("baseline run nightly-7 (spec.regression.baselineRun) does not exist"),
        "{message}"
    );
    operator.stop().await;
}
