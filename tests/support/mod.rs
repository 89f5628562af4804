//! Test support: the fake API server, fixtures, and a harness that runs the real controllers
//! against it.

#![allow(dead_code)]

pub mod fake_apiserver;
pub mod prometheus;

use std::sync::Arc;
use std::time::Duration;

use coebench_operator::clock::{Clock, SystemClock};
use coebench_operator::controller::{Context, Settings, run_controllers};
use coebench_operator::metrics::Metrics;
use coebench_operator::resources::job::JobDefaults;
use coebench_plan::report::{RowReport, RunOutcome, RunReport};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use kube::api::ObjectMeta;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use fake_apiserver::{FakeApiServer, eventually};

/// The namespace of every scenario.
pub const NS: &str = "team-a";
/// How long a scenario waits for one expected state.
pub const WAIT: Duration = Duration::from_secs(15);

/// Settings with short bounds so that timeouts happen within a test.
pub fn fast_settings() -> Settings {
    Settings {
        job: JobDefaults {
            runner_image: "registry.local/coebench:test".into(),
            ..JobDefaults::default()
        },
        poll_interval: Duration::from_millis(100),
        image_pull_timeout: Duration::from_secs(1),
        dependency_timeout: Duration::from_secs(1),
        unschedulable_timeout: Duration::from_secs(2),
        startup_timeout: Duration::from_secs(2),
        invalid_retry: Duration::from_millis(200),
        concurrency: 4,
    }
}

/// The real controllers, running against a fake API server.
pub struct Operator {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
}

impl Operator {
    /// Starts the controllers and waits until their caches are synced.
    pub async fn start(fake: &FakeApiServer, settings: Settings) -> Operator {
        Self::start_with_clock(fake, settings, Arc::new(SystemClock)).await
    }

    /// Like [`Operator::start`], with the controllers reading the time from `clock`.
    pub async fn start_with_clock(
        fake: &FakeApiServer,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Operator {
        let metrics = Arc::new(Metrics::new());
        let ctx = Arc::new(
            Context::new(
                fake.client(),
                metrics.clone(),
                settings,
                Some("test".into()),
            )
            .with_clock(clock),
        );
        let (stop, stop_rx) = watch::channel(false);
        let (ready_tx, mut ready_rx) = watch::channel(false);
        let task = tokio::spawn(run_controllers(ctx, None, stop_rx, move || {
            let _ = ready_tx.send(true);
        }));
        tokio::time::timeout(WAIT, ready_rx.wait_for(|r| *r))
            .await
            .expect("controllers synced in time")
            .expect("controllers running");
        Operator {
            stop,
            task,
            metrics,
        }
    }

    /// Reconciles started by `controller` so far.
    pub fn reconciles(&self, controller: &str) -> u64 {
        let text = self.metrics.encode().unwrap();
        let needle = format!("coebench_operator_reconciles_total{{controller=\"{controller}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Stops the controllers gracefully and waits for them to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("controllers stopped in time")
            .expect("controller task did not panic");
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        ..ObjectMeta::default()
    }
}

/// Stores a Secret holding an API key under `key`.
pub fn put_secret(fake: &FakeApiServer, name: &str, key: &str) {
    fake.put(&Secret {
        metadata: meta(name),
        string_data: None,
        data: Some(
            [(
                key.to_string(),
                k8s_openapi::ByteString(b"sk-test".to_vec()),
            )]
            .into(),
        ),
        ..Secret::default()
    });
}

/// Stores a PersistentVolumeClaim.
pub fn put_claim(fake: &FakeApiServer, name: &str) {
    fake.put(&PersistentVolumeClaim {
        metadata: meta(name),
        ..PersistentVolumeClaim::default()
    });
}

/// Stores a ConfigMap with one key.
pub fn put_config_map(fake: &FakeApiServer, name: &str, key: &str, text: &str) {
    fake.put(&ConfigMap {
        metadata: meta(name),
        data: Some([(key.to_string(), text.to_string())].into()),
        ..ConfigMap::default()
    });
}

/// One closed-loop row.
pub fn row(model: &str, concurrency: u32) -> Value {
    json!({"model": model, "inputTokens": 1000, "outputTokens": 100, "numRequests": 16, "concurrency": concurrency})
}

/// Stores a `CoeBenchmark` on sncloud (key in Secret `sn-key`, results on claim `results`),
/// with `extra` merged into its spec, and optional annotations.
pub fn put_benchmark(fake: &FakeApiServer, name: &str, extra: Value) -> Value {
    let mut spec = json!({
        "endpoint": {"api": "sncloud", "apiKeySecretRef": {"name": "sn-key", "key": "apiKey"}},
        "rows": [row("Meta-Llama-3.3-70B-Instruct", 4), row("DeepSeek-R1", 8)],
        "options": {"timeoutSeconds": 60, "requestTimeoutSeconds": 30},
        "results": {"persistentVolumeClaim": {"claimName": "results"}, "subPath": "perf"}
    });
    fake_apiserver::merge(&mut spec, &extra);
    fake.put_value(
        "coebench.dev/v1alpha1/coebenchmarks",
        json!({
            "apiVersion": "coebench.dev/v1alpha1", "kind": "CoeBenchmark",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec
        }),
    )
}

/// A runner report for the rows of [`put_benchmark`].
pub fn report(run: &str, outcome: RunOutcome, message: Option<&str>) -> String {
    let row = |model: &str, concurrency: u32, ttft: f64| RowReport {
        model: model.into(),
        input_tokens: 1000,
        output_tokens: 100,
        concurrency: Some(concurrency),
        qps: None,
        completed: 16,
        errors: 0,
        client_ttft_p50_s: Some(ttft),
        server_ttft_p50_s: Some(ttft - 0.01),
        e2e_p50_s: Some(1.5),
        output_tokens_per_s_p50: Some(250.0),
        switching_time_s: Some(0.0),
        ttft_tail_s: Some([Some(ttft + 0.1), Some(ttft + 0.2), None, None]),
        goodput: Some(0.75),
        image_size: None,
        e2e_tail_s: Some([Some(1.8), Some(2.0)]),
        output_tokens_per_s_tail: Some([Some(270.0), Some(280.0)]),
        objectives_met: None,
    };
    RunReport {
        version: 1,
        run_name: run.into(),
        outcome,
        results_path: Some(format!("/results/perf/{NS}/bench/{run}")),
        rows: vec![
            row("Meta-Llama-3.3-70B-Instruct", 4, 0.105),
            row("DeepSeek-R1", 8, 0.48),
        ],
        rows_omitted: 0,
        message: message.map(str::to_string),
    }
    .to_bounded_json()
}
