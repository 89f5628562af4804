//! The cluster a scenario runs on, reached only through a `kube::Client`: the in-process fake API
//! server (in CI), or the cluster of `KUBECONFIG`. What the cluster lacks, the suite plays
//! through the API ([`super::kubelet`]), so the same scenario runs on both.

use std::sync::Arc;
use std::time::Duration;

use coebench_operator::clock::SystemClock;
use coebench_operator::controller::{Context, Settings, run_controllers};
use coebench_operator::crd::{CoeBenchmark, CoeBenchmarkRun, RunPhase};
use coebench_operator::metrics::Metrics;
use coebench_operator::resources::job::JobDefaults;
use coebench_runner::results_api::ApiAccess;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::support::FakeApiServer;

/// How long one expected state may take on a real cluster (image pulls, scheduling).
pub const REAL_WAIT: Duration = Duration::from_secs(300);

/// What runs beside the API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlPlane {
    /// The API server alone (envtest, or the fake): no Job controller, no garbage collector,
    /// no scheduler, no kubelet. The suite creates the Job's Pod and sets Pod and Job status.
    ApiServerOnly,
    /// kube-controller-manager too (Job controller, garbage collector), but no scheduler or
    /// kubelet: the suite plays the kubelet on the Job controller's Pods.
    Controllers,
    /// A full cluster (kind, k3d): Pods really run the runner image.
    Full,
}

/// A cluster and the namespace the scenarios use.
#[derive(Clone)]
pub struct Cluster {
    /// The client every call goes through.
    pub client: Client,
    /// The scenarios' namespace.
    pub namespace: String,
    /// What runs beside the API server.
    pub plane: ControlPlane,
    /// How the played runner reaches the API, when the suite plays the kubelet against the fake
    /// (no ServiceAccount tokens there); `None` on a real cluster, where it authenticates as the
    /// run's ServiceAccount with a token from the TokenRequest API.
    pub fake_api: Option<ApiAccess>,
    /// The fake, when the cluster is one.
    pub fake: Option<FakeApiServer>,
    /// The runner image for real Pods.
    pub runner_image: String,
    /// How long one expected state may take.
    pub wait: Duration,
}

impl Cluster {
    /// The in-process fake API server, served over loopback HTTP too for the played runner.
    pub async fn fake(namespace: &str) -> Cluster {
        let fake = FakeApiServer::new();
        let base = fake.serve_http().await;
        Cluster {
            client: fake.client(),
            namespace: namespace.into(),
            plane: ControlPlane::ApiServerOnly,
            fake_api: Some(ApiAccess {
                base: base.parse().expect("the fake's URL"),
                namespace: namespace.into(),
                token_file: None,
                ca_file: None,
            }),
            fake: Some(fake),
            runner_image: "registry.local/coebench:e2e".into(),
            wait: crate::support::WAIT,
        }
    }

    /// The cluster of `KUBECONFIG` (or the in-cluster config), in a fresh namespace
    /// `coebench-e2e-<n>` (or `COEBENCH_E2E_NAMESPACE`); what runs beside its API server is
    /// read from it: Nodes mean a full cluster, kube-controller-manager's Lease means the
    /// controllers run.
    pub async fn from_env() -> Cluster {
        let client = Client::try_default()
            .await
            .expect("a kubeconfig: set KUBECONFIG to the cluster under test");
        let namespace = std::env::var("COEBENCH_E2E_NAMESPACE")
            .unwrap_or_else(|_| format!("coebench-e2e-{}", std::process::id()));
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("cannot create namespace {namespace}: {e}"),
        }
        let nodes: Api<Node> = Api::all(client.clone());
        let has_nodes = !nodes
            .list(&ListParams::default().limit(1))
            .await
            .expect("list Nodes")
            .items
            .is_empty();
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
        let has_controllers = leases
            .get_opt("kube-controller-manager")
            .await
            .ok()
            .flatten()
            .is_some();
        let plane = match (has_nodes, has_controllers) {
            (true, _) => ControlPlane::Full,
            (false, true) => ControlPlane::Controllers,
            (false, false) => ControlPlane::ApiServerOnly,
        };
        eprintln!("e2e: namespace {namespace}, control plane {plane:?}");
        Cluster {
            client,
            namespace,
            plane,
            fake_api: None,
            fake: None,
            runner_image: std::env::var("COEBENCH_E2E_IMAGE")
                .unwrap_or_else(|_| JobDefaults::default().runner_image),
            wait: REAL_WAIT,
        }
    }

    /// Whether the suite must play the kubelet (no node runs Pods).
    pub fn plays_kubelet(&self) -> bool {
        self.plane != ControlPlane::Full
    }

    /// Whether owned objects are garbage-collected (the fake does it itself; a real API server
    /// needs kube-controller-manager).
    pub fn collects_garbage(&self) -> bool {
        self.fake.is_some() || self.plane != ControlPlane::ApiServerOnly
    }

    /// The operator's settings on this cluster: real bounds on a real one, short ones on the fake.
    pub fn settings(&self) -> Settings {
        let job = JobDefaults {
            runner_image: self.runner_image.clone(),
            ..JobDefaults::default()
        };
        if self.fake.is_some() {
            Settings {
                job,
                ..crate::support::fast_settings()
            }
        } else {
            Settings {
                job,
                poll_interval: Duration::from_secs(2),
                image_pull_timeout: Duration::from_secs(60),
                dependency_timeout: Duration::from_secs(30),
                unschedulable_timeout: Duration::from_secs(120),
                startup_timeout: Duration::from_secs(120),
                ..Settings::default()
            }
        }
    }

    /// Starts an operator in this process, watching the scenarios' namespace.
    pub async fn operator(&self) -> RunningOperator {
        RunningOperator::start(self.client.clone(), &self.namespace, self.settings()).await
    }

    /// The benchmarks API of the namespace.
    pub fn benchmarks(&self) -> Api<CoeBenchmark> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The runs API of the namespace.
    pub fn runs(&self) -> Api<CoeBenchmarkRun> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Any API of the namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates benchmark `name` with `spec` (a fresh one: an old one of the name is deleted
    /// first); the API server's refusal is returned as is.
    pub async fn apply_benchmark(
        &self,
        name: &str,
        spec: Value,
    ) -> Result<CoeBenchmark, kube::Error> {
        let _ = self
            .benchmarks()
            .delete(name, &DeleteParams::foreground())
            .await;
        self.until(&format!("old benchmark {name} gone"), || async {
            self.benchmarks()
                .get_opt(name)
                .await
                .ok()?
                .is_none()
                .then_some(())
        })
        .await;
        let benchmark: CoeBenchmark = serde_json::from_value(json!({
            "apiVersion": "coebench.dev/v1alpha1", "kind": "CoeBenchmark",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec
        }))
        .expect("a CoeBenchmark");
        self.benchmarks()
            .create(&PostParams::default(), &benchmark)
            .await
    }

    /// Sets the run-now annotation of benchmark `name` to `value`.
    pub async fn run_now(&self, name: &str, value: &str) {
        let patch = json!({"metadata": {"annotations": {"coebench.dev/run-now": value}}});
        self.benchmarks()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate the benchmark");
    }

    /// Polls `check` (every 100 ms on the fake, 1 s on a cluster) until it gives a value.
    pub async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let step = if self.fake.is_some() {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {:?} waiting for {what}",
                self.wait
            );
            tokio::time::sleep(step).await;
        }
    }

    /// Run `name` once it satisfies `done`.
    pub async fn run_where(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&CoeBenchmarkRun) -> bool,
    ) -> CoeBenchmarkRun {
        self.until(&format!("run {name}: {what}"), || async {
            self.runs().get_opt(name).await.ok()?.filter(|r| done(r))
        })
        .await
    }

    /// Run `name` once it has finished.
    pub async fn finished_run(&self, name: &str) -> CoeBenchmarkRun {
        self.run_where(name, "finished", |r| {
            phase(r).is_some_and(RunPhase::is_finished)
        })
        .await
    }

    /// The names of the namespace's runs, sorted.
    pub async fn run_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .runs()
            .list(&ListParams::default())
            .await
            .expect("list runs")
            .items
            .into_iter()
            .filter_map(|r| r.metadata.name)
            .collect();
        names.sort();
        names
    }
}

/// A run's phase.
pub fn phase(run: &CoeBenchmarkRun) -> Option<RunPhase> {
    run.status.as_ref().and_then(|s| s.phase)
}

/// The reason of a run's condition `type_` when its status is True.
pub fn true_reason(run: &CoeBenchmarkRun, type_: &str) -> Option<String> {
    run.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.reason.clone())
}

/// The operator's controllers, running in this process against a cluster's API.
pub struct RunningOperator {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningOperator {
    async fn start(client: Client, namespace: &str, settings: Settings) -> RunningOperator {
        let ctx = Arc::new(
            Context::new(
                client,
                Arc::new(Metrics::new()),
                settings,
                Some("e2e".into()),
            )
            .with_clock(Arc::new(SystemClock)),
        );
        let (stop, stop_rx) = watch::channel(false);
        let (ready_tx, mut ready_rx) = watch::channel(false);
        let task = tokio::spawn(run_controllers(
            ctx,
            Some(namespace.to_string()),
            stop_rx,
            move || {
                let _ = ready_tx.send(true);
            },
        ));
        tokio::time::timeout(REAL_WAIT, ready_rx.wait_for(|r| *r))
            .await
            .expect("the operator's caches synced in time")
            .expect("the operator runs");
        RunningOperator { stop, task }
    }

    /// Stops the controllers and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(REAL_WAIT, self.task).await;
    }

    /// Ends the controllers at once, as a killed process would (no graceful stop).
    pub fn kill(self) {
        self.task.abort();
    }
}
