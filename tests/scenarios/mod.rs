//! Controller scenarios: the real `kube::runtime::Controller`s of the operator against the
//! in-process fake API server, which plays the Job controller and the kubelet on cue.
//! Each wait polls with a deadline ([`WAIT`]); no test sleeps a fixed time.

use coebench_operator::crd::{CoeBenchmark, CoeBenchmarkRun, RunPhase, TriggerKind};
use coebench_plan::Plan;
use coebench_plan::report::RunOutcome;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use serde_json::json;

use crate::support::*;

mod ca_certificate;
mod lease;
pub(crate) mod rbac;
mod regression;
mod results_channel;
mod schedule;
mod stale_cache;
mod workers;

fn condition<'c>(conditions: &'c [Condition], type_: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Waits until run `name` exists and `check` holds for it; returns it.
async fn run_where(
    fake: &FakeApiServer,
    name: &str,
    what: &str,
    check: impl Fn(&CoeBenchmarkRun) -> bool,
) -> CoeBenchmarkRun {
    eventually(WAIT, what, || {
        fake.get::<CoeBenchmarkRun>(NS, name).filter(|r| check(r))
    })
    .await
}

async fn benchmark_where(
    fake: &FakeApiServer,
    name: &str,
    what: &str,
    check: impl Fn(&CoeBenchmark) -> bool,
) -> CoeBenchmark {
    eventually(WAIT, what, || {
        fake.get::<CoeBenchmark>(NS, name).filter(|b| check(b))
    })
    .await
}

fn run_phase(run: &CoeBenchmarkRun) -> Option<RunPhase> {
    run.status.as_ref().and_then(|s| s.phase)
}

fn run_condition(run: &CoeBenchmarkRun, type_: &str) -> Option<(String, String, String)> {
    let c = condition(&run.status.as_ref()?.conditions, type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn has_condition(run: &CoeBenchmarkRun, type_: &str, status: &str, reason: &str) -> bool {
    run_condition(run, type_).is_some_and(|(s, r, _)| s == status && r == reason)
}

/// A benchmark with its Secret and claim, and an operator; waits for the first Job.
/// Plays the Job controller and the kubelet until run `run` is Running; returns its Pod.
async fn running_pod(fake: &FakeApiServer, run: &str) -> String {
    let pod = fake.start_job_pod(NS, run);
    fake.set_pod_running(NS, &pod);
    run_where(fake, run, "phase Running", |r| {
        run_phase(r) == Some(RunPhase::Running)
    })
    .await;
    pod
}

async fn started(fake: &FakeApiServer, name: &str, extra: serde_json::Value) -> (Operator, Job) {
    put_secret(fake, "sn-key", "apiKey");
    put_claim(fake, "results");
    let operator = Operator::start(fake, fast_settings()).await;
    put_benchmark(fake, name, extra);
    let job_name = format!("{name}-1");
    let job = eventually(WAIT, "the first Job", || fake.get::<Job>(NS, &job_name)).await;
    (operator, job)
}

#[tokio::test]
async fn a_benchmark_gets_a_run_a_plan_config_map_and_a_runner_job() {
    let fake = FakeApiServer::new();
    let (operator, job) = started(&fake, "bench", json!({})).await;

    let run = fake.get::<CoeBenchmarkRun>(NS, "bench-1").expect("the run");
    assert_eq!(run.spec.trigger.kind, TriggerKind::Initial);
    assert_eq!(run.spec.trigger.sequence, Some(1));
    assert_eq!(run.spec.rows.len(), 2);
    assert_eq!(
        run.spec.runner.image.as_deref(),
        Some("registry.local/coebench:test")
    );
    assert_eq!(
        run.metadata.owner_references.as_ref().unwrap()[0].kind,
        "CoeBenchmark"
    );

    let cm = fake
        .get::<ConfigMap>(NS, "bench-1-plan")
        .expect("the plan ConfigMap");
    assert_eq!(
        cm.metadata.owner_references.as_ref().unwrap()[0].kind,
        "CoeBenchmarkRun"
    );
    let plan: Plan = serde_json::from_str(&cm.data.unwrap()["plan.json"]).unwrap();
    assert_eq!(
        plan.endpoint.api_key_env.as_deref(),
        Some("COEBENCH_API_KEY")
    );
    assert_eq!(plan.rows, run.spec.rows);

    assert_eq!(
        job.metadata.owner_references.as_ref().unwrap()[0].kind,
        "CoeBenchmarkRun"
    );
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    // 2 rows × (60 + 30) + 0 delay + 300 margin.
    assert_eq!(spec.active_deadline_seconds, Some(480));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let c = &pod.containers[0];
    let args = c.args.as_ref().unwrap().join(" ");
    assert!(
        args.starts_with("run --plan /etc/coebench/plan.json --run-name bench-1"),
        "{args}"
    );
    assert!(
        args.contains("--report-file /dev/termination-log"),
        "{args}"
    );
    assert!(
        args.contains(&format!(
            "--consolidated-results-dir /results/perf/{NS}/bench/bench-1"
        )),
        "{args}"
    );
    let key = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "COEBENCH_API_KEY")
        .unwrap();
    let selector = key
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (selector.name.as_str(), selector.key.as_str()),
        ("sn-key", "apiKey")
    );
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let volumes: Vec<_> = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(volumes, ["plan", "results", "tmp"]);
    assert_eq!(
        pod.volumes.as_ref().unwrap()[1]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "results"
    );

    let run = run_where(&fake, "bench-1", "JobCreated=True", |r| {
        has_condition(r, "JobCreated", "True", "JobCreated")
    })
    .await;
    assert_eq!(run_phase(&run), Some(RunPhase::Pending));
    assert_eq!(
        run.status.as_ref().unwrap().results_path.as_deref(),
        Some(format!("results:/perf/{NS}/bench/bench-1/").as_str())
    );
    let bench = benchmark_where(&fake, "bench", "the benchmark's status", |b| {
        b.status
            .as_ref()
            .is_some_and(|s| s.last_run.as_deref() == Some("bench-1"))
    })
    .await;
    let status = bench.status.unwrap();
    assert_eq!(status.run_count, Some(1));
    assert_eq!(status.row_count, Some(2));
    assert_eq!(status.active_runs, ["bench-1"]);
    operator.stop().await;
}

#[tokio::test]
async fn a_succeeded_job_reports_its_rows_to_the_run_and_the_benchmark() {
    let fake = FakeApiServer::new();
    let (operator, _) = started(&fake, "bench", json!({})).await;
    let pod = running_pod(&fake, "bench-1").await;

    fake.terminate_pod(NS, &pod, 0, &report("bench-1", RunOutcome::Succeeded, None));
    fake.mark_job(NS, "bench-1", None);
    let run = run_where(&fake, "bench-1", "phase Succeeded", |r| {
        run_phase(r) == Some(RunPhase::Succeeded)
    })
    .await;
    let status = run.status.as_ref().unwrap();
    assert_eq!(status.rows.len(), 2);
    assert_eq!(status.rows[1].model, "DeepSeek-R1");
    assert_eq!(status.rows[1].client_ttft_p50_seconds, Some(0.48));
    assert_eq!(status.rows[1].goodput, Some(0.75));
    assert_eq!(status.ttft_p50.as_deref(), Some("0.105s-0.480s"));
    assert_eq!(status.exit_code, Some(0));
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    assert!(has_condition(&run, "Complete", "True", "Succeeded"));
    assert!(has_condition(&run, "Running", "False", "Finished"));
    assert!(has_condition(
        &run,
        "ResultsWritten",
        "True",
        "ResultsOnVolume"
    ));
    assert!(run_condition(&run, "Failed").is_none());

    let bench = benchmark_where(&fake, "bench", "the benchmark's last result", |b| {
        b.status
            .as_ref()
            .is_some_and(|s| s.last_result.is_some() && s.phase == Some(RunPhase::Succeeded))
    })
    .await;
    let s = bench.status.unwrap();
    assert_eq!(s.last_successful_run.as_deref(), Some("bench-1"));
    assert!(s.active_runs.is_empty());
    assert_eq!(
        s.last_result.as_ref().unwrap().ttft_p50.as_deref(),
        Some("0.105s-0.480s")
    );
    assert!(s.last_successful_time.is_some());
    let last = condition(&s.conditions, "LastRunSucceeded").unwrap();
    assert_eq!(
        (last.status.as_str(), last.reason.as_str()),
        ("True", "Succeeded")
    );

    let events: Vec<String> = fake
        .list::<Event>(NS)
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for reason in ["RunCreated", "JobCreated", "Started", "Succeeded"] {
        assert!(
            events.iter().any(|r| r == reason),
            "no {reason} Event in {events:?}"
        );
    }

    // A finished run is left alone: its status is written once.
    let patches = |fake: &FakeApiServer| {
        fake.requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.path.ends_with("/coebenchmarkruns/bench-1/status"))
            .count()
    };
    let before = patches(&fake);
    let reconciles = operator.reconciles("run");
    fake.modify::<CoeBenchmarkRun>(NS, "bench-1", |r| {
        r["metadata"]["labels"]["touched"] = json!("yes")
    });
    eventually(WAIT, "a reconcile after the touch", || {
        (operator.reconciles("run") > reconciles).then_some(())
    })
    .await;
    assert_eq!(patches(&fake), before);
    operator.stop().await;
}

#[tokio::test]
async fn a_failed_job_fails_the_run_with_the_runners_reason() {
    let fake = FakeApiServer::new();
    let (operator, _) = started(&fake, "bench", json!({})).await;
    let pod = fake.start_job_pod(NS, "bench-1");
    fake.terminate_pod(
        NS,
        &pod,
        3,
        &report(
            "bench-1",
            RunOutcome::AuthenticationFailed,
            Some("401 Unauthorized"),
        ),
    );
    fake.mark_job(NS, "bench-1", Some("BackoffLimitExceeded"));
    let run = run_where(&fake, "bench-1", "phase Failed", |r| {
        run_phase(r) == Some(RunPhase::Failed)
    })
    .await;
    let (status, reason, message) = run_condition(&run, "Failed").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "AuthenticationFailed")
    );
    assert!(
        message.contains("401 Unauthorized") && message.contains("apiKeySecretRef"),
        "{message}"
    );
    assert_eq!(run.status.as_ref().unwrap().exit_code, Some(3));
    let bench = benchmark_where(&fake, "bench", "LastRunSucceeded=False", |b| {
        b.status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "LastRunSucceeded"))
            .is_some_and(|c| c.status == "False")
    })
    .await;
    let s = bench.status.unwrap();
    assert_eq!(s.phase, Some(RunPhase::Failed));
    assert_eq!(
        condition(&s.conditions, "LastRunSucceeded").unwrap().reason,
        "AuthenticationFailed"
    );
    operator.stop().await;
}

#[tokio::test]
async fn an_expired_deadline_fails_the_run() {
    let fake = FakeApiServer::new();
    let (operator, _) = started(&fake, "bench", json!({})).await;
    let pod = fake.start_job_pod(NS, "bench-1");
    fake.set_pod_running(NS, &pod);
    fake.terminate_pod(
        NS,
        &pod,
        5,
        &report("bench-1", RunOutcome::Interrupted, Some("SIGTERM")),
    );
    fake.mark_job(NS, "bench-1", Some("DeadlineExceeded"));
    let run = run_where(&fake, "bench-1", "phase Failed", |r| {
        run_phase(r) == Some(RunPhase::Failed)
    })
    .await;
    let (_, reason, message) = run_condition(&run, "Failed").unwrap();
    assert_eq!(reason, "DeadlineExceeded");
    assert!(message.contains("480 s"), "{message}");
    // Rows that finished before the deadline are still reported.
    assert_eq!(run.status.as_ref().unwrap().rows.len(), 2);
    operator.stop().await;
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_the_run_within_the_bound() {
    let fake = FakeApiServer::new();
    let (operator, _) = started(&fake, "bench", json!({})).await;
    let pod = fake.start_job_pod(NS, "bench-1");
    fake.set_pod_waiting(
        NS,
        &pod,
        "ImagePullBackOff",
        "Back-off pulling image \"registry.local/coebench:test\"",
    );
    run_where(&fake, "bench-1", "Running=False ImagePullBackOff", |r| {
        has_condition(r, "Running", "False", "ImagePullBackOff")
    })
    .await;
    // The bound is 1 s here; the run must fail soon after, and its Job be deleted.
    let run = run_where(&fake, "bench-1", "phase Failed", |r| {
        run_phase(r) == Some(RunPhase::Failed)
    })
    .await;
    let (_, reason, message) = run_condition(&run, "Failed").unwrap();
    assert_eq!(reason, "ImagePullFailed");
    assert!(
        message.contains("registry.local/coebench:test") && message.contains("imagePullSecrets"),
        "{message}"
    );
    eventually(WAIT, "the stuck Job deleted", || {
        fake.get::<Job>(NS, "bench-1").is_none().then_some(())
    })
    .await;
    // The Pod went with it (garbage collection), and the run stays Failed.
    assert!(fake.get::<Pod>(NS, &pod).is_none());
    let run = fake.get::<CoeBenchmarkRun>(NS, "bench-1").unwrap();
    assert_eq!(run_condition(&run, "Failed").unwrap().1, "ImagePullFailed");
    operator.stop().await;
}

#[tokio::test]
async fn run_now_asks_for_exactly_one_more_run_per_new_value() {
    let fake = FakeApiServer::new();
    let (operator, _) = started(&fake, "bench", json!({})).await;
    let annotate = |value: &str| {
        fake.modify::<CoeBenchmark>(NS, "bench", |b| {
            b["metadata"]["annotations"]["coebench.dev/run-now"] = json!(value);
        })
    };
    let handled = |value: &'static str| {
        move |b: &CoeBenchmark| {
            b.status
                .as_ref()
                .is_some_and(|s| s.handled_run_now.as_deref() == Some(value))
        }
    };
    annotate("2026-11-28T10:00");
    benchmark_where(
        &fake,
        "bench",
        "run-now handled",
        handled("2026-11-28T10:00"),
    )
    .await;
    let run = fake
        .get::<CoeBenchmarkRun>(NS, "bench-2")
        .expect("a second run");
    assert_eq!(run.spec.trigger.kind, TriggerKind::RunNow);
    assert_eq!(run.spec.trigger.value.as_deref(), Some("2026-11-28T10:00"));
    eventually(WAIT, "the second Job", || fake.get::<Job>(NS, "bench-2")).await;

    // The same value again (with another change to trigger a reconcile): nothing new.
    let reconciles = operator.reconciles("benchmark");
    fake.modify::<CoeBenchmark>(NS, "bench", |b| {
        b["metadata"]["labels"]["team"] = json!("perf")
    });
    eventually(WAIT, "a reconcile after the change", || {
        (operator.reconciles("benchmark") > reconciles).then_some(())
    })
    .await;
    assert_eq!(fake.list::<CoeBenchmarkRun>(NS).len(), 2);

    annotate("again");
    benchmark_where(&fake, "bench", "the new value handled", handled("again")).await;
    let names: Vec<String> = fake
        .list::<CoeBenchmarkRun>(NS)
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect();
    assert_eq!(names, ["bench-1", "bench-2", "bench-3"]);
    operator.stop().await;
}

#[tokio::test]
async fn a_new_benchmark_makes_exactly_the_writes_it_needs() {
    let fake = FakeApiServer::new();
    let mark = fake.mark();
    let (operator, _) = started(&fake, "bench", json!({})).await;
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
    // One run, its plan and results ConfigMaps, its results identity (ServiceAccount, Role,
    // RoleBinding) and its Job, the two statuses, and Events: nothing deleted, nothing
    // replaced, no Secret or claim written.
    fake.assert_writes_since(
        mark,
        &[
            "create coebench.dev/coebenchmarkruns",
            "patch coebench.dev/coebenchmarks/status",
            "create /configmaps",
            "create /serviceaccounts",
            "create rbac.authorization.k8s.io/roles",
            "create rbac.authorization.k8s.io/rolebindings",
            "create batch/jobs",
            "patch coebench.dev/coebenchmarkruns/status",
            "create events.k8s.io/events",
        ],
    );
}

#[tokio::test]
async fn a_restarted_operator_duplicates_nothing() {
    let fake = FakeApiServer::new();
    let (operator, _) = started(&fake, "bench", json!({})).await;
    run_where(&fake, "bench-1", "JobCreated=True", |r| {
        has_condition(r, "JobCreated", "True", "JobCreated")
    })
    .await;
    let pod = running_pod(&fake, "bench-1").await;
    operator.stop().await;
    let requests_before = fake.requests().len();

    // A second operator on the same store, mid-run.
    let operator = Operator::start(&fake, fast_settings()).await;
    eventually(WAIT, "both controllers reconciled", || {
        (operator.reconciles("run") >= 1 && operator.reconciles("benchmark") >= 1).then_some(())
    })
    .await;
    let created: Vec<_> = fake.requests()[requests_before..]
        .iter()
        .filter(|r| r.method == "POST" && r.status == 201 && !r.path.contains("/events"))
        .map(|r| r.path.clone())
        .collect();
    assert!(
        created.is_empty(),
        "the restarted operator created {created:?}"
    );
    assert_eq!(fake.list::<CoeBenchmarkRun>(NS).len(), 1);
    assert_eq!(fake.list::<Job>(NS).len(), 1);
    // The plan and the results ConfigMaps.
    assert_eq!(fake.list::<ConfigMap>(NS).len(), 2);

    // And it carries the run to its end.
    fake.terminate_pod(NS, &pod, 0, &report("bench-1", RunOutcome::Succeeded, None));
    fake.mark_job(NS, "bench-1", None);
    run_where(&fake, "bench-1", "phase Succeeded", |r| {
        run_phase(r) == Some(RunPhase::Succeeded)
    })
    .await;
    operator.stop().await;
}

#[tokio::test]
async fn a_run_created_just_before_a_crash_is_adopted_not_duplicated() {
    let fake = FakeApiServer::new();
    put_secret(&fake, "sn-key", "apiKey");
    put_claim(&fake, "results");
    // The state an operator leaves when it dies after creating run 1 but before recording it.
    let bench = put_benchmark(&fake, "bench", json!({}));
    fake.put_value(
        "coebench.dev/v1alpha1/coebenchmarkruns",
        json!({
            "apiVersion": "coebench.dev/v1alpha1", "kind": "CoeBenchmarkRun",
            "metadata": {
                "name": "bench-1", "namespace": NS,
                "labels": {"coebench.dev/benchmark": "bench"},
                "ownerReferences": [{"apiVersion": "coebench.dev/v1alpha1", "kind": "CoeBenchmark",
                    "name": "bench", "uid": bench["metadata"]["uid"], "controller": true}]
            },
            "spec": {
                "benchmark": "bench", "trigger": {"type": "Initial", "sequence": 1},
                "endpoint": {"api": "simulator"}, "rows": [row("m", 1)]
            }
        }),
    );
    let operator = Operator::start(&fake, fast_settings()).await;
    benchmark_where(&fake, "bench", "runCount recorded", |b| {
        b.status.as_ref().is_some_and(|s| s.run_count == Some(1))
    })
    .await;
    eventually(WAIT, "the adopted run's Job", || {
        fake.get::<Job>(NS, "bench-1")
    })
    .await;
    assert_eq!(fake.list::<CoeBenchmarkRun>(NS).len(), 1);
    operator.stop().await;
}

const CSV_HEADER: &str = "model_name,input_tokens,output_tokens,num_requests,concurrent_requests,qps,qps_distribution,multimodal_img_size\n";

#[tokio::test]
async fn a_bad_csv_sets_valid_false_naming_the_line_and_a_fixed_one_runs() {
    let fake = FakeApiServer::new();
    put_secret(&fake, "sn-key", "apiKey");
    put_claim(&fake, "results");
    let bad = format!(
        "{CSV_HEADER}Meta-Llama-3.3-70B-Instruct,1000,100,16,4,,,\nDeepSeek-R1,1000,100,16,4,2.5,,\n"
    );
    put_config_map(&fake, "configs", "model_configs.csv", &bad);
    let operator = Operator::start(&fake, fast_settings()).await;
    put_benchmark(
        &fake,
        "csv",
        json!({"rows": null, "rowsFrom": {"configMapKeyRef": {"name": "configs", "key": "model_configs.csv"}}}),
    );
    let bench = benchmark_where(&fake, "csv", "Valid=False", |b| {
        b.status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "Valid"))
            .is_some_and(|c| c.status == "False")
    })
    .await;
    let valid = condition(&bench.status.as_ref().unwrap().conditions, "Valid")
        .unwrap()
        .clone();
    assert_eq!(valid.reason, "InvalidRows");
    assert!(
        valid.message.contains("line 3") && valid.message.contains("qps"),
        "{}",
        valid.message
    );
    assert!(fake.list::<CoeBenchmarkRun>(NS).is_empty());
    let events: Vec<_> = fake
        .list::<Event>(NS)
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(events.contains(&"InvalidRows".to_string()), "{events:?}");

    let good = format!(
        "{CSV_HEADER}Meta-Llama-3.3-70B-Instruct,1000,100,16,4,,,\nDeepSeek-R1,1000,100,16,,2.5,poisson,\n"
    );
    let good = good.replace("poisson", "exponential");
    put_config_map(&fake, "configs", "model_configs.csv", &good);
    let run = eventually(WAIT, "a run once the CSV is fixed", || {
        fake.get::<CoeBenchmarkRun>(NS, "csv-1")
    })
    .await;
    assert_eq!(run.spec.rows.len(), 2);
    assert_eq!(run.spec.rows[1].qps, Some(2.5));
    operator.stop().await;
}

/// The kubelet's message for a container whose Secret does not exist.
const SECRET_MISSING: &str = "secret \"sn-key\" not found";

#[tokio::test]
async fn a_missing_secret_named_by_the_kubelet_fails_the_run_with_its_fix() {
    let fake = FakeApiServer::new();
    put_claim(&fake, "results");
    let operator = Operator::start(&fake, fast_settings()).await;
    put_benchmark(&fake, "bench", json!({}));
    // The operator cannot read Secrets: the Job is created, and the kubelet says what is missing.
    let job = eventually(WAIT, "the Job", || fake.get::<Job>(NS, "bench-1")).await;
    let pod = fake.start_job_pod(NS, &job.name_any());
    fake.set_pod_waiting(NS, &pod, "CreateContainerConfigError", SECRET_MISSING);
    let run = run_where(&fake, "bench-1", "waiting on the Secret", |r| {
        has_condition(r, "Running", "False", "SecretNotFound")
    })
    .await;
    let (_, _, message) = run_condition(&run, "Running").unwrap();
    assert!(
        message.contains("kubectl create secret generic sn-key"),
        "{message}"
    );
    assert_eq!(run_phase(&run), Some(RunPhase::Pending));
    let run = run_where(&fake, "bench-1", "phase Failed", |r| {
        run_phase(r) == Some(RunPhase::Failed)
    })
    .await;
    assert_eq!(run_condition(&run, "Failed").unwrap().1, "SecretNotFound");
    eventually(WAIT, "the stuck Job deleted", || {
        fake.get::<Job>(NS, "bench-1").is_none().then_some(())
    })
    .await;
    assert!(
        fake.requests().iter().all(|r| !r.path.contains("/secrets")),
        "the operator read a Secret"
    );
    operator.stop().await;
}

#[tokio::test]
async fn a_missing_secret_key_is_named_with_its_fix() {
    let fake = FakeApiServer::new();
    put_claim(&fake, "results");
    let operator = Operator::start(&fake, fast_settings()).await;
    put_benchmark(&fake, "bench", json!({}));
    let job = eventually(WAIT, "the Job", || fake.get::<Job>(NS, "bench-1")).await;
    let pod = fake.start_job_pod(NS, &job.name_any());
    let kubelet = format!("couldn't find key apiKey in Secret {NS}/sn-key");
    fake.set_pod_waiting(NS, &pod, "CreateContainerConfigError", &kubelet);
    let run = run_where(&fake, "bench-1", "waiting on the key", |r| {
        has_condition(r, "Running", "False", "SecretKeyNotFound")
    })
    .await;
    let (_, _, message) = run_condition(&run, "Running").unwrap();
    assert!(message.contains("add key \"apiKey\""), "{message}");
    operator.stop().await;
}

#[tokio::test]
async fn a_secret_created_in_time_lets_the_run_start() {
    let fake = FakeApiServer::new();
    put_claim(&fake, "results");
    let mut settings = fast_settings();
    settings.dependency_timeout = std::time::Duration::from_secs(30);
    let operator = Operator::start(&fake, settings).await;
    put_benchmark(&fake, "bench", json!({}));
    let job = eventually(WAIT, "the Job", || fake.get::<Job>(NS, "bench-1")).await;
    let pod = fake.start_job_pod(NS, &job.name_any());
    fake.set_pod_waiting(NS, &pod, "CreateContainerConfigError", SECRET_MISSING);
    run_where(&fake, "bench-1", "waiting on the Secret", |r| {
        has_condition(r, "Running", "False", "SecretNotFound")
    })
    .await;
    // The Secret appears and the kubelet starts the container.
    put_secret(&fake, "sn-key", "apiKey");
    fake.set_pod_running(NS, &pod);
    run_where(&fake, "bench-1", "phase Running", |r| {
        run_phase(r) == Some(RunPhase::Running)
    })
    .await;
    operator.stop().await;
}

#[tokio::test]
async fn finished_runs_are_trimmed_to_the_history_limits() {
    let fake = FakeApiServer::new();
    let (operator, _) = started(
        &fake,
        "bench",
        json!({"successfulRunsHistoryLimit": 1, "failedRunsHistoryLimit": 1}),
    )
    .await;
    let finish = |run: &str, code: i32| {
        let pod = fake.start_job_pod(NS, run);
        let outcome = if code == 0 {
            RunOutcome::Succeeded
        } else {
            RunOutcome::AllRequestsFailed
        };
        fake.terminate_pod(NS, &pod, code, &report(run, outcome, None));
        fake.mark_job(NS, run, (code != 0).then_some("BackoffLimitExceeded"));
    };
    let run_now = |value: &str| {
        fake.modify::<CoeBenchmark>(NS, "bench", |b| {
            b["metadata"]["annotations"]["coebench.dev/run-now"] = json!(value)
        })
    };
    finish("bench-1", 0);
    run_where(&fake, "bench-1", "run 1 Succeeded", |r| {
        run_phase(r) == Some(RunPhase::Succeeded)
    })
    .await;
    run_now("2");
    eventually(WAIT, "Job 2", || fake.get::<Job>(NS, "bench-2")).await;
    finish("bench-2", 4);
    run_where(&fake, "bench-2", "run 2 Failed", |r| {
        run_phase(r) == Some(RunPhase::Failed)
    })
    .await;
    run_now("3");
    eventually(WAIT, "Job 3", || fake.get::<Job>(NS, "bench-3")).await;
    finish("bench-3", 0);
    // Run 1 (the older success) goes, with its Job and ConfigMap; runs 2 and 3 stay.
    eventually(WAIT, "run 1 trimmed", || {
        fake.get::<CoeBenchmarkRun>(NS, "bench-1")
            .is_none()
            .then_some(())
    })
    .await;
    assert!(fake.get::<Job>(NS, "bench-1").is_none());
    assert!(fake.get::<ConfigMap>(NS, "bench-1-plan").is_none());
    let names: Vec<String> = fake
        .list::<CoeBenchmarkRun>(NS)
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect();
    assert_eq!(names, ["bench-2", "bench-3"]);
    let bench = benchmark_where(&fake, "bench", "last result from run 3", |b| {
        b.status
            .as_ref()
            .and_then(|s| s.last_result.as_ref())
            .is_some_and(|r| r.run == "bench-3")
    })
    .await;
    assert_eq!(bench.status.unwrap().last_run.as_deref(), Some("bench-3"));
    operator.stop().await;
}

#[tokio::test]
async fn deleting_a_benchmark_removes_its_runs_jobs_and_config_maps() {
    let fake = FakeApiServer::new();
    let (operator, _) = started(&fake, "bench", json!({})).await;
    eventually(WAIT, "the plan ConfigMap", || {
        fake.get::<ConfigMap>(NS, "bench-1-plan")
    })
    .await;
    let client = fake.client();
    let api: kube::Api<CoeBenchmark> = kube::Api::namespaced(client, NS);
    api.delete("bench", &Default::default()).await.unwrap();
    eventually(WAIT, "everything gone", || {
        (fake.list::<CoeBenchmarkRun>(NS).is_empty()
            && fake.list::<Job>(NS).is_empty()
            && fake.list::<ConfigMap>(NS).is_empty())
        .then_some(())
    })
    .await;
    operator.stop().await;
}

#[tokio::test]
async fn the_runs_metric_counts_runs_by_phase() {
    let fake = FakeApiServer::new();
    let (operator, _) = started(&fake, "bench", json!({})).await;
    run_where(&fake, "bench-1", "Pending with a Job", |r| {
        has_condition(r, "JobCreated", "True", "JobCreated")
    })
    .await;
    eventually(WAIT, "runs{phase=Pending} 1", || {
        operator
            .metrics
            .encode()
            .unwrap()
            .contains("coebench_operator_runs{phase=\"Pending\"} 1")
            .then_some(())
    })
    .await;
    operator.stop().await;
}

#[tokio::test]
async fn ready_says_what_kstatus_and_argo_cd_read() {
    let fake = FakeApiServer::new();
    let (operator, _) = started(&fake, "bench", json!({})).await;
    let run = fake.get::<CoeBenchmarkRun>(NS, "bench-1").unwrap();
    assert!(has_condition(&run, "Ready", "False", "InProgress"));
    let pod = fake.start_job_pod(NS, "bench-1");
    fake.terminate_pod(NS, &pod, 0, &report("bench-1", RunOutcome::Succeeded, None));
    fake.mark_job(NS, "bench-1", None);
    run_where(&fake, "bench-1", "Ready=True", |r| {
        has_condition(r, "Ready", "True", "Succeeded")
    })
    .await;
    eventually(WAIT, "the benchmark Ready", || {
        fake.get::<CoeBenchmark>(NS, "bench").filter(|b| {
            b.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True" && c.reason == "Ready")
            })
        })
    })
    .await;

    // A failed run: the run is not Ready for its failure's reason, nor is the benchmark.
    fake.modify::<CoeBenchmark>(NS, "bench", |b| {
        b["metadata"]["annotations"]["coebench.dev/run-now"] = json!("again")
    });
    eventually(WAIT, "Job 2", || fake.get::<Job>(NS, "bench-2")).await;
    let pod = fake.start_job_pod(NS, "bench-2");
    fake.set_pod_waiting(NS, &pod, "ErrImagePull", "manifest unknown");
    run_where(&fake, "bench-2", "Ready=False ImagePullFailed", |r| {
        has_condition(r, "Ready", "False", "ImagePullFailed")
    })
    .await;
    eventually(WAIT, "the benchmark not Ready", || {
        fake.get::<CoeBenchmark>(NS, "bench").filter(|b| {
            b.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "Ready" && c.status == "False" && c.reason == "LastRunFailed"
                })
            })
        })
    })
    .await;
    operator.stop().await;
}

#[tokio::test]
async fn a_job_the_api_server_refuses_fails_the_run_at_once_with_its_words() {
    let fake = FakeApiServer::new();
    put_secret(&fake, "sn-key", "apiKey");
    put_claim(&fake, "results");
    let operator = Operator::start(&fake, fast_settings()).await;
    // 62 characters: the run is <name>-1, one too many for a Job's name.
    let name = format!("a-benchmark-with-a-long-name-{}", "x".repeat(33));
    assert_eq!(name.len(), 62);
    put_benchmark(&fake, &name, json!({}));
    let run_name = format!("{name}-1");
    let run = run_where(&fake, &run_name, "Failed JobRejected", |r| {
        has_condition(r, "Failed", "True", "JobRejected")
    })
    .await;
    let (_, _, message) = run_condition(&run, "Failed").unwrap();
    assert!(message.contains("63 characters"), "{message}");
    assert!(fake.get::<Job>(NS, &run_name).is_none());
    let creates = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/jobs"))
        .count();
    assert_eq!(creates, 1, "a refused Job is not retried");
    operator.stop().await;
}
