//! End-to-end on a real cluster (ignored by default). Needs `KUBECONFIG` pointing at a cluster
//! with the CRDs applied (`kubectl apply -f crds/`) and the operator running (in the cluster,
//! or `cargo run --bin coebench-operator` beside it), and a runner image the cluster can pull
//! (`COEBENCH_E2E_IMAGE`, default the operator's). Run:
//! `cargo nextest run -p coebench-operator --run-ignored only e2e`.

use std::time::Duration;

use coebench_operator::crd::{CoeBenchmark, CoeBenchmarkRun, RunPhase};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

#[tokio::test]
#[ignore = "needs a cluster (KUBECONFIG) with the CRDs and the operator running"]
async fn a_simulator_benchmark_runs_to_success_on_a_real_cluster() {
    let client = Client::try_default().await.expect("a kubeconfig");
    let ns = std::env::var("COEBENCH_E2E_NAMESPACE").unwrap_or_else(|_| "default".into());
    let image = std::env::var("COEBENCH_E2E_IMAGE").ok();
    let benchmarks: Api<CoeBenchmark> = Api::namespaced(client.clone(), &ns);
    let runs: Api<CoeBenchmarkRun> = Api::namespaced(client, &ns);
    let name = "coebench-e2e";
    let _ = benchmarks.delete(name, &DeleteParams::default()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bench: CoeBenchmark = serde_json::from_value(json!({
        "apiVersion": "coebench.dev/v1alpha1", "kind": "CoeBenchmark",
        "metadata": {"name": name},
        "spec": {
            "endpoint": {"api": "simulator"},
            "rows": [{"model": "Meta-Llama-3.3-70B-Instruct", "inputTokens": 100, "outputTokens": 20,
                      "numRequests": 4, "concurrency": 2}],
            "options": {"timeoutSeconds": 60, "requestTimeoutSeconds": 30},
            "runner": image.map(|i| json!({"image": i})).unwrap_or(json!({}))
        }
    }))
    .unwrap();
    benchmarks
        .create(&PostParams::default(), &bench)
        .await
        .expect("create the benchmark");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let run = loop {
        if let Ok(run) = runs.get(&format!("{name}-1")).await
            && run
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(RunPhase::is_finished)
        {
            break run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    let status = run.status.unwrap();
    assert_eq!(
        status.phase,
        Some(RunPhase::Succeeded),
        "{:?}",
        status.conditions
    );
    assert_eq!(status.rows.len(), 1);
    benchmarks
        .delete(name, &DeleteParams::default())
        .await
        .expect("clean up");
}
