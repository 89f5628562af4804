//! Multi-worker runs (`spec.workers` > 1): the run's headless Service and Indexed Job, the
//! coordinator's report deciding the outcome, and a worker that dies or never starts failing
//! the run as `WorkerLost`, naming its Pod and index, within the bounds.

use k8s_openapi::api::core::v1::Service;

use super::*;

/// A three-worker benchmark and an operator; waits for the run's Job.
async fn three_workers(fake: &FakeApiServer) -> (Operator, Job) {
    started(fake, "bench", json!({"workers": 3})).await
}

/// Plays the Job controller and the kubelet until every Pod of run `run` runs; returns the
/// Pods by index.
async fn running_workers(fake: &FakeApiServer, run: &str) -> Vec<String> {
    let pods = fake.start_indexed_job_pods(NS, run);
    for pod in &pods {
        fake.set_pod_running(NS, pod);
    }
    run_where(fake, run, "phase Running", |r| {
        run_phase(r) == Some(RunPhase::Running)
    })
    .await;
    pods
}

#[tokio::test]
async fn a_multi_worker_run_creates_exactly_its_service_and_indexed_job() {
    let fake = FakeApiServer::new();
    let mark = fake.mark();
    let (operator, job) = three_workers(&fake).await;
    run_where(&fake, "bench-1", "JobCreated=True", |r| {
        has_condition(r, "JobCreated", "True", "JobCreated")
    })
    .await;
    eventually(WAIT, "the benchmark's status", || {
        fake.get::<CoeBenchmark>(NS, "bench")
            .filter(|b| b.status.as_ref().is_some_and(|s| s.run_count == Some(1)))
    })
    .await;
    operator.stop().await;
    // What a single-Pod run writes, plus the Service.
    fake.assert_writes_since(
        mark,
        &[
            "create coebench.dev/coebenchmarkruns",
            "patch coebench.dev/coebenchmarks/status",
            "create /configmaps",
            "create /serviceaccounts",
            "create rbac.authorization.k8s.io/roles",
            "create rbac.authorization.k8s.io/rolebindings",
            "create /services",
            "create batch/jobs",
            "patch coebench.dev/coebenchmarkruns/status",
            "create events.k8s.io/events",
        ],
    );
    assert_eq!(fake.list::<Service>(NS).len(), 1);
    let run = fake.get::<CoeBenchmarkRun>(NS, "bench-1").unwrap();
    assert_eq!(run.spec.workers, Some(3));
    let service = fake
        .get::<Service>(NS, "bench-1-workers")
        .expect("the Service");
    assert_eq!(
        service.metadata.owner_references.as_ref().unwrap()[0].uid,
        run.uid().unwrap()
    );
    let spec = service.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
    assert_eq!(spec.ports.unwrap()[0].port, 7470);

    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!((spec.completions, spec.parallelism), (Some(3), Some(3)));
    assert_eq!(spec.backoff_limit_per_index, Some(0));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.subdomain.as_deref(), Some("bench-1-workers"));
    let args = pod.containers[0].args.as_ref().unwrap().join(" ");
    assert!(
        args.ends_with(&format!(
            "--workers 3 --coordinator bench-1-0.bench-1-workers.{NS}.svc:7470"
        )),
        "{args}"
    );
    let plan: Plan = serde_json::from_str(
        &fake
            .get::<ConfigMap>(NS, "bench-1-plan")
            .unwrap()
            .data
            .unwrap()["plan.json"],
    )
    .unwrap();
    assert_eq!(plan.workers, 3);
}

#[tokio::test]
async fn the_coordinators_report_decides_the_outcome_not_the_workers() {
    let fake = FakeApiServer::new();
    let (operator, _) = three_workers(&fake).await;
    let pods = running_workers(&fake, "bench-1").await;
    // Workers end first; a worker's message must never be read as the run's report.
    for pod in &pods[1..] {
        fake.terminate_pod(
            NS,
            pod,
            0,
            &report("bench-1", RunOutcome::WorkerLost, Some("a worker's words")),
        );
    }
    fake.terminate_pod(
        NS,
        &pods[0],
        0,
        &report("bench-1", RunOutcome::Succeeded, None),
    );
    fake.mark_job(NS, "bench-1", None);
    let run = run_where(&fake, "bench-1", "phase Succeeded", |r| {
        run_phase(r) == Some(RunPhase::Succeeded)
    })
    .await;
    let status = run.status.as_ref().unwrap();
    assert_eq!(status.rows.len(), 2);
    assert_eq!(status.exit_code, Some(0));
    assert!(has_condition(&run, "Complete", "True", "Succeeded"));
    operator.stop().await;
}

#[tokio::test]
async fn a_failed_worker_fails_the_run_as_worker_lost_with_the_coordinators_report() {
    let fake = FakeApiServer::new();
    let (operator, _) = three_workers(&fake).await;
    let pods = running_workers(&fake, "bench-1").await;
    fake.terminate_pod(NS, &pods[2], 137, "");
    // The coordinator notices, writes what was measured, and exits 8 with its report.
    fake.terminate_pod(
        NS,
        &pods[0],
        8,
        &report(
            "bench-1",
            RunOutcome::WorkerLost,
            Some("lost the connection to worker 2"),
        ),
    );
    let run = run_where(&fake, "bench-1", "phase Failed", |r| {
        run_phase(r) == Some(RunPhase::Failed)
    })
    .await;
    let (_, reason, message) = run_condition(&run, "Failed").unwrap();
    assert_eq!(reason, "WorkerLost");
    assert!(
        message.contains(&format!("worker 2 (Pod {})", pods[2]))
            && message.contains("code 137")
            && message.contains("lost the connection to worker 2"),
        "{message}"
    );
    let status = run.status.as_ref().unwrap();
    assert_eq!(status.exit_code, Some(8));
    // The coordinator's report carried the rows measured.
    assert_eq!(status.rows.len(), 2);
    operator.stop().await;
}

/// Waits for run `bench-1` to fail as `WorkerLost` and for the operator to delete its Job;
/// returns the condition's message.
async fn lost_and_job_deleted(fake: &FakeApiServer) -> String {
    let run = run_where(fake, "bench-1", "phase Failed", |r| {
        run_phase(r) == Some(RunPhase::Failed)
    })
    .await;
    let (_, reason, message) = run_condition(&run, "Failed").unwrap();
    assert_eq!(reason, "WorkerLost");
    eventually(WAIT, "the Job deleted", || {
        fake.get::<Job>(NS, "bench-1").is_none().then_some(())
    })
    .await;
    message
}

#[tokio::test]
async fn a_failed_worker_with_a_coordinator_that_does_not_end_fails_the_run_within_the_bound() {
    let fake = FakeApiServer::new();
    let (operator, _) = three_workers(&fake).await;
    let pods = running_workers(&fake, "bench-1").await;
    fake.terminate_pod(NS, &pods[1], 1, "");
    // The bound is the dependency timeout, 1 s here. The operator ends the Job, so the
    // coordinator is stopped and writes what it has.
    let message = lost_and_job_deleted(&fake).await;
    assert!(
        message.contains(&format!("worker 1 (Pod {})", pods[1])),
        "{message}"
    );
    operator.stop().await;
}

#[tokio::test]
async fn an_unschedulable_worker_fails_the_run_as_worker_lost_within_the_bound() {
    let fake = FakeApiServer::new();
    let (operator, _) = three_workers(&fake).await;
    let pods = fake.start_indexed_job_pods(NS, "bench-1");
    fake.set_pod_running(NS, &pods[0]);
    fake.set_pod_running(NS, &pods[1]);
    fake.set_pod_unschedulable(NS, &pods[2], "0/3 nodes are available: 3 Insufficient cpu");
    // The unschedulable bound is 2 s here.
    let message = lost_and_job_deleted(&fake).await;
    assert!(
        message.contains(&format!("worker 2 (Pod {})", pods[2]))
            && message.contains("Insufficient cpu"),
        "{message}"
    );
    operator.stop().await;
}

#[tokio::test]
async fn a_row_with_more_workers_than_the_benchmark_is_invalid_with_the_fix() {
    let fake = FakeApiServer::new();
    put_secret(&fake, "sn-key", "apiKey");
    put_claim(&fake, "results");
    let operator = Operator::start(&fake, fast_settings()).await;
    let mut wide = row("DeepSeek-R1", 8);
    wide["workers"] = json!(4);
    put_benchmark(&fake, "bench", json!({"workers": 2, "rows": [wide]}));
    let bench = benchmark_where(&fake, "bench", "Valid=False", |b| {
        b.status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "Valid"))
            .is_some_and(|c| c.status == "False")
    })
    .await;
    let valid = condition(&bench.status.as_ref().unwrap().conditions, "Valid").unwrap();
    assert!(
        valid.message.contains("row 1") && valid.message.contains("workers"),
        "{}",
        valid.message
    );
    assert!(fake.get::<CoeBenchmarkRun>(NS, "bench-1").is_none());
    operator.stop().await;
}

#[tokio::test]
async fn deleting_a_multi_worker_run_collects_its_service() {
    let fake = FakeApiServer::new();
    let (operator, _) = three_workers(&fake).await;
    eventually(WAIT, "the Service", || {
        fake.get::<Service>(NS, "bench-1-workers")
    })
    .await;
    let api: kube::Api<CoeBenchmarkRun> = kube::Api::namespaced(fake.client(), NS);
    api.delete("bench-1", &Default::default()).await.unwrap();
    eventually(WAIT, "the Service and the Job gone", || {
        (fake.get::<Service>(NS, "bench-1-workers").is_none()
            && fake.get::<Job>(NS, "bench-1").is_none())
        .then_some(())
    })
    .await;
    operator.stop().await;
}
