//! The end-to-end scenarios, written against [`Cluster`] only, so each runs on the fake API
//! server in CI and on a real cluster when asked (see the module docs of `e2e`).

use std::time::Duration;

use coebench_operator::crd::RunPhase;
use coebench_operator::lease;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use serde_json::{Value, json};

use super::cluster::{Cluster, phase, true_reason};
use super::kubelet::Kubelet;

/// The README's first benchmark (`examples/benchmark-simulator.yaml`), with the engine's
/// embedded simulator as its endpoint (no in-cluster Service or Secret needed), its rows
/// repeated `copies` times, and each row cut to at most `requests` requests of at most 16 output
/// tokens so that a 40-row plan finishes in seconds.
fn first_benchmark(copies: usize, requests: u64) -> Value {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(include_str!("../../examples/benchmark-simulator.yaml"))
            .expect("the example parses");
    let bench = docs
        .into_iter()
        .find(|d| d["kind"] == "CoeBenchmark")
        .expect("the example has a CoeBenchmark");
    let mut spec = bench["spec"].clone();
    spec["endpoint"] = json!({"api": "simulator"});
    let rows: Vec<Value> = spec["rows"].as_array().expect("rows").clone();
    let mut all = Vec::new();
    for _ in 0..copies {
        for row in &rows {
            let mut row = row.clone();
            let n = row["numRequests"]
                .as_u64()
                .unwrap_or(requests)
                .min(requests);
            row["numRequests"] = json!(n);
            let out = row["outputTokens"].as_u64().unwrap_or(16).min(16);
            row["outputTokens"] = json!(out);
            if let Some(qps) = row["qps"].as_f64() {
                row["qps"] = json!(qps.max(50.0));
            }
            all.push(row);
        }
    }
    spec["rows"] = json!(all);
    spec["options"] = json!({"timeoutSeconds": 120, "requestTimeoutSeconds": 60});
    spec
}

/// A one-row simulator benchmark, with room in the history for every run a scenario makes.
fn small_benchmark() -> Value {
    let mut spec = first_benchmark(1, 2);
    spec["rows"] = json!([spec["rows"][0]]);
    spec["successfulRunsHistoryLimit"] = json!(10);
    spec["failedRunsHistoryLimit"] = json!(10);
    spec
}

/// The README's first benchmark with 40 rows: every row's numbers reach the run's status (as
/// each row finishes, through the results ConfigMaps) and the benchmark's `lastResult`.
pub async fn the_first_benchmark_with_40_rows_reports_every_row(cluster: &Cluster) {
    let operator = cluster.operator().await;
    let spec = first_benchmark(8, 2);
    let rows = spec["rows"].as_array().unwrap().len();
    assert_eq!(rows, 40);
    cluster
        .apply_benchmark("e2e-first", spec)
        .await
        .expect("the API server accepts the example");
    if cluster.plays_kubelet() {
        let result = Kubelet::new(cluster).run_runner("e2e-first-1").await;
        assert_eq!(result.rows.len(), 40);
    }
    let run = cluster.finished_run("e2e-first-1").await;
    let status = run.status.as_ref().unwrap();
    assert_eq!(
        phase(&run),
        Some(RunPhase::Succeeded),
        "{:?}",
        status.conditions
    );
    assert_eq!(status.rows.len(), 40);
    assert_eq!(status.progress.as_deref(), Some("40/40"));
    assert!(
        status.rows.iter().all(|r| r.completed > 0),
        "{:?}",
        status.rows
    );
    let bench = cluster
        .until("the benchmark's last result", || async {
            cluster
                .benchmarks()
                .get("e2e-first")
                .await
                .ok()
                .filter(|b| b.status.as_ref().is_some_and(|s| s.last_result.is_some()))
        })
        .await;
    assert_eq!(bench.status.unwrap().last_result.unwrap().rows.len(), 40);
    operator.stop().await;
}

/// Two run-now values set in quick succession: exactly two more runs, never a third.
pub async fn run_now_twice_in_quick_succession_makes_exactly_two_runs(cluster: &Cluster) {
    let operator = cluster.operator().await;
    cluster
        .apply_benchmark("e2e-runnow", small_benchmark())
        .await
        .expect("create the benchmark");
    cluster.run_where("e2e-runnow-1", "created", |_| true).await;
    // The second value follows the first as soon as the first has a run: while the operator's
    // caches may still hold the benchmark as it was before the first was handled.
    cluster.run_now("e2e-runnow", "first").await;
    cluster.run_where("e2e-runnow-2", "created", |_| true).await;
    cluster.run_now("e2e-runnow", "second").await;
    cluster.run_where("e2e-runnow-3", "created", |_| true).await;
    // The same value again (a re-applied manifest) asks for nothing.
    cluster.run_now("e2e-runnow", "second").await;
    // Give a duplicate every chance to appear.
    tokio::time::sleep(settle(cluster)).await;
    assert_eq!(
        cluster.run_names().await,
        ["e2e-runnow-1", "e2e-runnow-2", "e2e-runnow-3"]
    );
    operator.stop().await;
}

/// The operator killed mid-run and started again: no second run, Job or Pod, and the run is
/// carried to its end.
pub async fn a_killed_and_restarted_operator_duplicates_nothing(cluster: &Cluster) {
    let operator = cluster.operator().await;
    cluster
        .apply_benchmark("e2e-restart", small_benchmark())
        .await
        .expect("create the benchmark");
    cluster
        .until("the Job", || async {
            cluster.api::<Job>().get_opt("e2e-restart-1").await.ok()?
        })
        .await;
    if cluster.plays_kubelet() {
        let kubelet = Kubelet::new(cluster);
        kubelet.start(&kubelet.pod_of("e2e-restart-1").await).await;
    }
    cluster
        .run_where("e2e-restart-1", "Running", |r| {
            phase(r) == Some(RunPhase::Running)
        })
        .await;
    operator.kill();
    let operator = cluster.operator().await;
    tokio::time::sleep(settle(cluster)).await;
    assert_eq!(cluster.run_names().await, ["e2e-restart-1"]);
    let jobs = labelled::<Job>(cluster, "e2e-restart").await;
    assert_eq!(jobs, 1);
    if cluster.plays_kubelet() {
        Kubelet::new(cluster).run_runner("e2e-restart-1").await;
    }
    let run = cluster.finished_run("e2e-restart-1").await;
    assert_eq!(phase(&run), Some(RunPhase::Succeeded));
    assert_eq!(labelled::<Pod>(cluster, "e2e-restart").await, 1);
    operator.stop().await;
}

/// Two replicas on one Lease: one leads, the other stands by and takes over when it leaves.
pub async fn two_replicas_elect_one_leader_on_the_lease(cluster: &Cluster) {
    let join = |id: &'static str| {
        lease::join_with(
            cluster.client.clone(),
            &cluster.namespace,
            "coebench-e2e-operator",
            id,
            3,
            1,
        )
    };
    let mut first = join("replica-a").await.expect("join the Lease");
    tokio::time::timeout(cluster.wait, first.acquired())
        .await
        .expect("replica a leads in time");
    let mut second = join("replica-b").await.expect("join the Lease");
    assert!(
        tokio::time::timeout(Duration::from_secs(2), second.acquired())
            .await
            .is_err(),
        "both replicas lead"
    );
    first.release().await;
    tokio::time::timeout(cluster.wait, second.acquired())
        .await
        .expect("replica b takes over");
    second.release().await;
}

/// Deleting a benchmark collects its runs, Jobs, Pods and ConfigMaps, and leaves the results
/// claim alone.
pub async fn deleting_a_benchmark_collects_what_it_made_but_not_the_volume(cluster: &Cluster) {
    let operator = cluster.operator().await;
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "e2e-results"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}
    }))
    .unwrap();
    let claims = cluster.api::<PersistentVolumeClaim>();
    let _ = claims.create(&PostParams::default(), &claim).await;
    let mut spec = small_benchmark();
    spec["results"] = json!({"persistentVolumeClaim": {"claimName": "e2e-results"}});
    cluster
        .apply_benchmark("e2e-delete", spec)
        .await
        .expect("create the benchmark");
    if cluster.plays_kubelet() {
        Kubelet::new(cluster).pod_of("e2e-delete-1").await;
    }
    cluster
        .until("the run's Pod", || async {
            (labelled::<Pod>(cluster, "e2e-delete").await > 0).then_some(())
        })
        .await;
    assert!(labelled::<ConfigMap>(cluster, "e2e-delete").await >= 2);
    cluster
        .benchmarks()
        .delete("e2e-delete", &DeleteParams::background())
        .await
        .expect("delete the benchmark");
    if cluster.collects_garbage() {
        cluster
            .until("runs, Jobs, Pods and ConfigMaps collected", || async {
                let left = cluster
                    .run_names()
                    .await
                    .iter()
                    .filter(|n| n.starts_with("e2e-delete"))
                    .count()
                    + labelled::<Job>(cluster, "e2e-delete").await
                    + labelled::<Pod>(cluster, "e2e-delete").await
                    + labelled::<ConfigMap>(cluster, "e2e-delete").await;
                (left == 0).then_some(())
            })
            .await;
    } else {
        eprintln!("e2e: no garbage collector runs beside this API server; collection not checked");
    }
    assert!(
        claims.get_opt("e2e-results").await.unwrap().is_some(),
        "the results claim was deleted"
    );
    operator.stop().await;
}

/// What CEL can say is refused by the API server itself (a real one: the fake evaluates no
/// CEL); what it cannot (a CSV's line) is `Valid=False` naming the line.
pub async fn invalid_specs_are_refused_or_named(cluster: &Cluster) {
    let operator = cluster.operator().await;
    if cluster.fake.is_none() {
        let mut spec = small_benchmark();
        spec["rows"][0]["qps"] = json!(2.0);
        spec["rows"][0]["concurrency"] = json!(2);
        let refused = cluster.apply_benchmark("e2e-cel", spec).await;
        match refused {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{e:?}");
                assert!(
                    e.message.contains("exactly one of concurrency and qps"),
                    "{}",
                    e.message
                );
            }
            other => panic!("a row with both concurrency and qps was not refused: {other:?}"),
        }
    }
    let csv = ConfigMap {
        metadata: ObjectMeta {
            name: Some("e2e-rows".into()),
            ..ObjectMeta::default()
        },
        data: Some(
            [(
                "model_configs.csv".to_string(),
                "model_name,input_tokens,output_tokens,num_requests,concurrent_requests\nMeta-Llama-3.3-70B-Instruct,100,16,2,1\nMeta-Llama-3.3-70B-Instruct,lots,16,2,1\n".to_string(),
            )]
            .into(),
        ),
        ..ConfigMap::default()
    };
    let maps = cluster.api::<ConfigMap>();
    let _ = maps.delete("e2e-rows", &DeleteParams::default()).await;
    maps.create(&PostParams::default(), &csv)
        .await
        .expect("create the CSV ConfigMap");
    let mut spec = small_benchmark();
    spec["rows"] = Value::Null;
    spec["rowsFrom"] = json!({"configMapKeyRef": {"name": "e2e-rows", "key": "model_configs.csv"}});
    cluster
        .apply_benchmark("e2e-csv", spec)
        .await
        .expect("create the benchmark");
    let bench = cluster
        .until("Valid=False", || async {
            cluster.benchmarks().get("e2e-csv").await.ok().filter(|b| {
                b.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Valid" && c.status == "False")
                })
            })
        })
        .await;
    let valid = bench
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Valid")
        .unwrap();
    assert_eq!(valid.reason, "InvalidRows");
    assert!(valid.message.contains("line 3"), "{}", valid.message);
    assert!(
        cluster
            .run_names()
            .await
            .iter()
            .all(|n| !n.starts_with("e2e-csv"))
    );
    operator.stop().await;
}

/// A missing API-key Secret and an image that cannot be pulled both end the run `Failed` with
/// their reason within the operator's bounds.
pub async fn a_missing_secret_and_a_stuck_image_pull_fail_in_bounded_time(cluster: &Cluster) {
    let settings = cluster.settings();
    let operator = cluster.operator().await;
    let mut spec = small_benchmark();
    spec["endpoint"] = json!({
        "api": "sncloud", "url": "http://127.0.0.1:9/v1",
        "apiKeySecretRef": {"name": "e2e-no-such-secret", "key": "apiKey"}
    });
    cluster
        .apply_benchmark("e2e-secret", spec)
        .await
        .expect("create the benchmark");
    let mut spec = small_benchmark();
    spec["runner"] = json!({"image": "registry.invalid/coebench:none"});
    cluster
        .apply_benchmark("e2e-image", spec)
        .await
        .expect("create the benchmark");
    if cluster.plays_kubelet() {
        let kubelet = Kubelet::new(cluster);
        let pod = kubelet.pod_of("e2e-secret-1").await;
        kubelet
            .wait_with(
                &pod,
                "CreateContainerConfigError",
                "secret \"e2e-no-such-secret\" not found",
            )
            .await;
        let pod = kubelet.pod_of("e2e-image-1").await;
        kubelet
            .wait_with(
                &pod,
                "ErrImagePull",
                "failed to resolve reference \"registry.invalid/coebench:none\": no such host",
            )
            .await;
    }
    let started = tokio::time::Instant::now();
    let secret = cluster.finished_run("e2e-secret-1").await;
    assert_eq!(
        true_reason(&secret, "Failed").as_deref(),
        Some("SecretNotFound")
    );
    let image = cluster.finished_run("e2e-image-1").await;
    assert_eq!(
        true_reason(&image, "Failed").as_deref(),
        Some("ImagePullFailed")
    );
    let bound = settings.dependency_timeout.max(settings.image_pull_timeout) + settle(cluster) * 3;
    assert!(
        started.elapsed() <= bound,
        "took {:?}, bound {bound:?}",
        started.elapsed()
    );
    operator.stop().await;
}

/// A minutely schedule under `Forbid` skips the slot that comes while its run is active (no
/// second run, `lastMissedScheduleTime`, a `RunSkipped` Event); switched to `Replace`, the next
/// slot deletes the active run and starts its own. Takes up to three minutes of wall time.
pub async fn forbid_then_replace_on_a_minutely_schedule(cluster: &Cluster) {
    let operator = cluster.operator().await;
    let mut spec = small_benchmark();
    spec["schedule"] = json!("* * * * *");
    spec["concurrencyPolicy"] = json!("Forbid");
    cluster
        .apply_benchmark("e2e-cron", spec)
        .await
        .expect("create the benchmark");
    let minute = Duration::from_secs(75);
    let slow = Cluster {
        wait: cluster.wait.max(minute),
        ..cluster.clone()
    };

    let first = slow
        .until("the first scheduled run", || async {
            cluster
                .run_names()
                .await
                .into_iter()
                .find(|n| n.starts_with("e2e-cron-"))
        })
        .await;
    // Keep it running: its Pod starts and never ends.
    if cluster.plays_kubelet() {
        let kubelet = Kubelet::new(cluster);
        kubelet.start(&kubelet.pod_of(&first).await).await;
    }
    let skipped = slow
        .until("the next slot skipped", || async {
            let bench = cluster.benchmarks().get("e2e-cron").await.ok()?;
            bench.status?.last_missed_schedule_time
        })
        .await;
    assert_eq!(
        cluster.run_names().await,
        std::slice::from_ref(&first),
        "Forbid started a second run"
    );
    eprintln!("e2e: slot {skipped:?} skipped under Forbid");
    let patch = json!({"spec": {"concurrencyPolicy": "Replace"}});
    cluster
        .benchmarks()
        .patch(
            "e2e-cron",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("switch to Replace");
    let second = slow
        .until("a run replacing the first", || async {
            let names = cluster.run_names().await;
            names
                .iter()
                .find(|n| n.starts_with("e2e-cron-") && **n != first)
                .cloned()
        })
        .await;
    slow.until("the first run deleted", || async {
        cluster
            .runs()
            .get_opt(&first)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    eprintln!("e2e: {second} replaced {first}");
    let _ = cluster
        .benchmarks()
        .delete("e2e-cron", &DeleteParams::background())
        .await;
    operator.stop().await;
}

/// A benchmark on three workers: the run is an Indexed Job of three Pods and a headless
/// Service; every Pod runs the real distributed runner (index 0 coordinating), and the run's
/// outcome and rows are the coordinator's, every request of the row counted once.
pub async fn a_benchmark_on_three_workers_runs_as_an_indexed_job(cluster: &Cluster) {
    let operator = cluster.operator().await;
    let mut spec = small_benchmark();
    spec["workers"] = json!(3);
    spec["rows"][0]["numRequests"] = json!(9);
    spec["rows"][0]["concurrency"] = json!(3);
    cluster
        .apply_benchmark("e2e-workers", spec)
        .await
        .expect("create the benchmark");
    let job = cluster
        .until("the Job", || async {
            cluster.api::<Job>().get_opt("e2e-workers-1").await.ok()?
        })
        .await;
    let job_spec = job.spec.as_ref().unwrap();
    assert_eq!(job_spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!(job_spec.completions, Some(3));
    assert_eq!(job_spec.backoff_limit_per_index, Some(0));
    let service = cluster
        .api::<Service>()
        .get("e2e-workers-1-workers")
        .await
        .expect("the headless Service");
    assert_eq!(service.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    if cluster.plays_kubelet() {
        let ended = Kubelet::new(cluster).run_workers("e2e-workers-1").await;
        assert!(
            ended.iter().all(|(code, _)| *code == 0),
            "exit codes by index: {:?}",
            ended.iter().map(|(c, _)| c).collect::<Vec<_>>()
        );
        assert!(!ended[0].1.is_empty(), "the coordinator wrote its report");
        assert!(
            ended[1..].iter().all(|(_, report)| report.is_empty()),
            "a worker wrote a report"
        );
    }
    let run = cluster.finished_run("e2e-workers-1").await;
    let status = run.status.as_ref().unwrap();
    assert_eq!(
        phase(&run),
        Some(RunPhase::Succeeded),
        "{:?}",
        status.conditions
    );
    assert_eq!(status.rows.len(), 1);
    assert_eq!(status.rows[0].completed + status.rows[0].errors, 9);
    operator.stop().await;
}

/// How long to let a duplicate or a late reconcile show up.
fn settle(cluster: &Cluster) -> Duration {
    if cluster.fake.is_some() {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(10)
    }
}

/// Objects of kind `K` labelled as made for benchmark `benchmark`.
async fn labelled<K>(cluster: &Cluster, benchmark: &str) -> usize
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let selector = format!("{}={benchmark}", coebench_operator::crd::LABEL_BENCHMARK);
    cluster
        .api::<K>()
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("list by label")
        .items
        .len()
}
