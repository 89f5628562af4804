//! Races that only a real API server shows: the fake delays the watch events of one resource,
//! so the operator's cache of it is stale while reads and the other caches are current (as an
//! informer is behind the store on a busy control plane). Each test failed on the operator
//! before its fix.

use std::time::Duration;

use serde_json::json;

use super::*;

/// How far behind the store the stale cache is.
const STALE: Duration = Duration::from_millis(700);

/// Long enough for a reconcile on the stale cache, and the one after it catches up, to finish.
const SETTLE: Duration = Duration::from_secs(3);

fn run_names(fake: &FakeApiServer) -> Vec<String> {
    let mut names: Vec<String> = fake
        .list::<CoeBenchmarkRun>(NS)
        .iter()
        .map(|r| r.metadata.name.clone().unwrap_or_default())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn run_now_under_a_stale_benchmark_cache_starts_exactly_one_run_per_value() {
    let fake = FakeApiServer::new();
    fake.delay_watches::<CoeBenchmark>(STALE);
    // Runs whose Pods never start fail after a few seconds here; keep them all in view.
    let keep = json!({"successfulRunsHistoryLimit": 100, "failedRunsHistoryLimit": 100});
    let (operator, _) = started(&fake, "bench", keep).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(run_names(&fake), ["bench-1"]);

    // The run created for "a" wakes the benchmark's reconciler at once (runs are not delayed),
    // while its cache still holds the status from before "a" was handled.
    fake.modify::<CoeBenchmark>(NS, "bench", |b| {
        b["metadata"]["annotations"]["coebench.dev/run-now"] = json!("a")
    });
    eventually(WAIT, "the run for a", || {
        fake.get::<CoeBenchmarkRun>(NS, "bench-2")
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        run_names(&fake),
        ["bench-1", "bench-2"],
        "one run-now value started more than one run"
    );
    let bench = fake.get::<CoeBenchmark>(NS, "bench").unwrap();
    let status = bench.status.unwrap();
    assert_eq!(status.handled_run_now.as_deref(), Some("a"));
    assert_eq!(status.run_count, Some(2));

    // A new value still starts a run.
    fake.modify::<CoeBenchmark>(NS, "bench", |b| {
        b["metadata"]["annotations"]["coebench.dev/run-now"] = json!("b")
    });
    eventually(WAIT, "the run for b", || {
        fake.get::<CoeBenchmarkRun>(NS, "bench-3")
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(run_names(&fake), ["bench-1", "bench-2", "bench-3"]);
    operator.stop().await;
}

#[tokio::test]
async fn a_history_limit_of_zero_still_reports_the_last_result() {
    let fake = FakeApiServer::new();
    let (operator, _) = started(&fake, "bench", json!({"successfulRunsHistoryLimit": 0})).await;
    let pod = fake.start_job_pod(NS, "bench-1");
    fake.terminate_pod(NS, &pod, 0, &report("bench-1", RunOutcome::Succeeded, None));
    fake.mark_job(NS, "bench-1", None);
    // The run is deleted as soon as it has succeeded; the benchmark must say so first.
    let bench = eventually(WAIT, "the benchmark's last result", || {
        fake.get::<CoeBenchmark>(NS, "bench")
            .filter(|b| b.status.as_ref().is_some_and(|s| s.last_result.is_some()))
    })
    .await;
    let status = bench.status.unwrap();
    assert_eq!(status.phase, Some(RunPhase::Succeeded));
    assert_eq!(status.last_successful_run.as_deref(), Some("bench-1"));
    let result = status.last_result.unwrap();
    assert_eq!(result.run, "bench-1");
    assert_eq!(result.rows.len(), 2, "every row of the report");
    eventually(WAIT, "the run trimmed", || {
        fake.get::<CoeBenchmarkRun>(NS, "bench-1")
            .is_none()
            .then_some(())
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    let status = fake
        .get::<CoeBenchmark>(NS, "bench")
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        status.phase,
        Some(RunPhase::Succeeded),
        "phase kept after the trim"
    );
    assert!(
        status.last_result.is_some(),
        "last result kept after the trim"
    );
    operator.stop().await;
}

/// The controlling owner's uid of an object.
fn owner_uid(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<String> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone())
}

#[tokio::test]
async fn a_re_created_benchmark_never_adopts_its_predecessors_run_or_job() {
    let fake = FakeApiServer::new();
    fake.delay_garbage_collection(Duration::from_secs(2));
    let keep = json!({"successfulRunsHistoryLimit": 100, "failedRunsHistoryLimit": 100});
    let (operator, old_job) = started(&fake, "bench", keep.clone()).await;
    let old_run = fake.get::<CoeBenchmarkRun>(NS, "bench-1").unwrap();

    // Deleted and applied again at once: the old run, then its Job, linger until collected.
    assert!(fake.delete::<CoeBenchmark>(NS, "bench"));
    put_benchmark(&fake, "bench", keep);
    let bench = fake.get::<CoeBenchmark>(NS, "bench").unwrap();
    let bench_uid = bench.metadata.uid.clone().unwrap();

    let run = eventually(WAIT, "bench-1 owned by the new benchmark", || {
        fake.get::<CoeBenchmarkRun>(NS, "bench-1")
            .filter(|r| owner_uid(&r.metadata).as_deref() == Some(bench_uid.as_str()))
    })
    .await;
    assert_ne!(run.metadata.uid, old_run.metadata.uid);
    let run_uid = run.metadata.uid.clone().unwrap();
    let job = eventually(WAIT, "Job bench-1 owned by the new run", || {
        fake.get::<Job>(NS, "bench-1")
            .filter(|j| owner_uid(&j.metadata).as_deref() == Some(run_uid.as_str()))
    })
    .await;
    assert_ne!(job.metadata.uid, old_job.metadata.uid);
    let run = fake.get::<CoeBenchmarkRun>(NS, "bench-1").unwrap();
    assert_ne!(
        run_phase(&run),
        Some(RunPhase::Failed),
        "the new run must not fail for its predecessor's Job: {:?}",
        run.status
    );
    operator.stop().await;
}

/// Runs counted as finished so far, over every phase and reason.
fn runs_finished(operator: &Operator) -> u64 {
    let text = operator.metrics.encode().unwrap();
    text.lines()
        .filter(|l| l.starts_with("coebench_operator_runs_finished_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_failed_run_keeps_its_reason_when_a_stale_reconcile_finds_its_job_gone() {
    let fake = FakeApiServer::new();
    fake.delay_watches::<CoeBenchmarkRun>(STALE);
    let (operator, _) = started(&fake, "bench", json!({})).await;
    let pod = fake.start_job_pod(NS, "bench-1");
    fake.set_pod_waiting(NS, &pod, "ErrImagePull", "manifest unknown");
    // The operator deletes the stuck Job and fails the run; the Job's deletion wakes it again
    // while its cache of the run still says the Job was running.
    let run = eventually(WAIT, "run 1 failed", || {
        fake.get::<CoeBenchmarkRun>(NS, "bench-1")
            .filter(|r| run_phase(r) == Some(RunPhase::Failed))
    })
    .await;
    let reason = |run: &CoeBenchmarkRun| {
        run.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Failed"))
            .map(|c| c.reason.clone())
    };
    let first = reason(&run);
    assert_ne!(first.as_deref(), Some("JobDeleted"));
    tokio::time::sleep(SETTLE).await;
    let run = fake.get::<CoeBenchmarkRun>(NS, "bench-1").unwrap();
    assert_eq!(reason(&run), first, "a terminal reason was overwritten");
    assert_eq!(
        runs_finished(&operator),
        1,
        "the run was counted more than once"
    );
    operator.stop().await;
}

#[tokio::test]
async fn after_the_history_is_compacted_the_controllers_list_again_and_keep_working() {
    let fake = FakeApiServer::new();
    let (operator, _) = started(&fake, "bench", json!({})).await;
    let pod = running_pod(&fake, "bench-1").await;
    // Every watch ends, and the versions the controllers saw are gone: their next watch gets
    // 410 Gone, and only a fresh list brings them back.
    fake.compact_and_close_watches();
    eventually(
        WAIT,
        "410 Gone answered to the controllers' watches",
        || (fake.expired_watches() > 0).then_some(()),
    )
    .await;
    // Changes made after the compaction still reach both controllers.
    fake.terminate_pod(NS, &pod, 0, &report("bench-1", RunOutcome::Succeeded, None));
    fake.mark_job(NS, "bench-1", None);
    run_where(&fake, "bench-1", "phase Succeeded", |r| {
        run_phase(r) == Some(RunPhase::Succeeded)
    })
    .await;
    fake.modify::<CoeBenchmark>(NS, "bench", |b| {
        b["metadata"]["annotations"]["coebench.dev/run-now"] = json!("after-compaction")
    });
    eventually(WAIT, "the run-now run", || {
        fake.get::<CoeBenchmarkRun>(NS, "bench-2")
    })
    .await;
    assert_eq!(run_names(&fake), ["bench-1", "bench-2"]);
    operator.stop().await;
}
