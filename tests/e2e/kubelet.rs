//! Plays, through the API only, what a control plane without nodes lacks: the Job controller's
//! Pod (when kube-controller-manager does not run), the kubelet's Pod status, and the runner
//! itself, which really runs: the run's plan, read from its plan ConfigMap, against the engine's
//! embedded simulator, publishing each row to the run's results ConfigMaps as the run's own
//! ServiceAccount (a token from the TokenRequest API: the Role the operator made must suffice),
//! then the container ends with the runner's own report and exit code.

use std::time::Duration;

use coebench_operator::resources::configmap::PLAN_KEY;
use coebench_operator::resources::plan_config_map_name;
use coebench_plan::Plan;
use coebench_runner::engine::run::RunResult;
use coebench_runner::results_api::{ApiAccess, ResultsPublisher};
use coebench_test_support::engine_support::run_observed;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::cluster::{Cluster, ControlPlane};

/// Label and annotation of each Pod of an Indexed Job: its completion index.
const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// How long the Job controller gets to create a Pod before the suite creates it.
const JOB_CONTROLLER_GRACE: Duration = Duration::from_secs(20);

/// The suite's stand-in for the missing node components.
pub struct Kubelet<'c> {
    cluster: &'c Cluster,
}

fn now() -> String {
    Timestamp::now().to_string()
}

impl<'c> Kubelet<'c> {
    /// A player on `cluster`.
    pub fn new(cluster: &'c Cluster) -> Self {
        Kubelet { cluster }
    }

    /// The runner Pod of Job `job`: the Job controller's, or one made here from the Job's
    /// template when no Job controller runs.
    pub async fn pod_of(&self, job: &str) -> Pod {
        let jobs = self.cluster.api::<Job>();
        let job = self
            .cluster
            .until(&format!("Job {job}"), || async {
                jobs.get_opt(job).await.ok()?
            })
            .await;
        let uid = job.uid().expect("a stored Job has a uid");
        let pods = self.cluster.api::<Pod>();
        let mine = |pods: Vec<Pod>| {
            pods.into_iter().find(|p| {
                p.owner_references()
                    .iter()
                    .any(|o| o.uid == uid && o.controller == Some(true))
            })
        };
        // The Pod made earlier (by the Job controller or by this player), if any; with a Job
        // controller, the one it is about to make.
        let grace = match self.cluster.plane {
            ControlPlane::ApiServerOnly => Duration::ZERO,
            _ => JOB_CONTROLLER_GRACE,
        };
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let listed = pods.list(&ListParams::default()).await.expect("list Pods");
            if let Some(pod) = mine(listed.items) {
                return pod;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let template = job.spec.as_ref().expect("a Job spec").template.clone();
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert("job-name".into(), job.name_any());
        labels.insert("controller-uid".into(), uid.clone());
        labels.insert("batch.kubernetes.io/controller-uid".into(), uid.clone());
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": format!("{}-e2e", job.name_any()),
                "namespace": self.cluster.namespace,
                "labels": labels,
                "ownerReferences": [{
                    "apiVersion": "batch/v1", "kind": "Job", "name": job.name_any(),
                    "uid": uid, "controller": true, "blockOwnerDeletion": true
                }]
            },
            "spec": template.spec,
        }))
        .expect("a Pod");
        let created = pods
            .create(&PostParams::default(), &pod)
            .await
            .expect("create the Job's Pod");
        let started = json!({"status": {"startTime": now(), "active": 1}});
        jobs.patch_status(
            &job.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&started),
        )
        .await
        .expect("mark the Job started");
        created
    }

    /// The Pods of Indexed Job `job`, by index: the Job controller's, or made here from the
    /// Job's template (labelled and annotated with their index, hostname `<job>-<index>`) when
    /// no Job controller runs.
    pub async fn indexed_pods_of(&self, job: &str) -> Vec<Pod> {
        let jobs = self.cluster.api::<Job>();
        let job = self
            .cluster
            .until(&format!("Job {job}"), || async {
                jobs.get_opt(job).await.ok()?
            })
            .await;
        let spec = job.spec.clone().expect("a Job spec");
        assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
        let n = usize::try_from(spec.completions.expect("completions")).expect("positive");
        let uid = job.uid().expect("a stored Job has a uid");
        let pods = self.cluster.api::<Pod>();
        let index_of =
            |pod: &Pod| -> Option<usize> { pod.labels().get(COMPLETION_INDEX)?.parse().ok() };
        let mine = |listed: Vec<Pod>| -> Vec<Option<Pod>> {
            let mut by_index: Vec<Option<Pod>> = vec![None; n];
            for pod in listed.into_iter().filter(|p| {
                p.owner_references()
                    .iter()
                    .any(|o| o.uid == uid && o.controller == Some(true))
            }) {
                if let Some(i) = index_of(&pod).filter(|i| *i < n) {
                    by_index[i] = Some(pod);
                }
            }
            by_index
        };
        if self.cluster.plane != ControlPlane::ApiServerOnly {
            return self
                .cluster
                .until("a Pod for every index", || async {
                    let listed = pods.list(&ListParams::default()).await.ok()?;
                    mine(listed.items).into_iter().collect::<Option<Vec<Pod>>>()
                })
                .await;
        }
        let template = spec.template;
        let mut made = Vec::new();
        for index in 0..n {
            let mut labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert("job-name".into(), job.name_any());
            labels.insert("controller-uid".into(), uid.clone());
            labels.insert("batch.kubernetes.io/controller-uid".into(), uid.clone());
            labels.insert(COMPLETION_INDEX.into(), index.to_string());
            let mut pod_spec = template.spec.clone().expect("a Pod template spec");
            pod_spec.hostname = Some(format!("{}-{index}", job.name_any()));
            let pod: Pod = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": format!("{}-{index}-e2e", job.name_any()),
                    "namespace": self.cluster.namespace,
                    "labels": labels,
                    "annotations": {COMPLETION_INDEX: index.to_string()},
                    "ownerReferences": [{
                        "apiVersion": "batch/v1", "kind": "Job", "name": job.name_any(),
                        "uid": uid, "controller": true, "blockOwnerDeletion": true
                    }]
                },
                "spec": pod_spec,
            }))
            .expect("a Pod");
            let created = match pods.create(&PostParams::default(), &pod).await {
                Ok(created) => created,
                Err(kube::Error::Api(e)) if e.code == 409 => pods
                    .get(&pod.name_any())
                    .await
                    .expect("read the index's Pod"),
                Err(e) => panic!("create the Pod of index {index}: {e}"),
            };
            made.push(created);
        }
        let started = json!({"status": {"startTime": now(), "active": n}});
        jobs.patch_status(
            &job.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&started),
        )
        .await
        .expect("mark the Job started");
        made
    }

    /// The container runs (without running anything: see [`Kubelet::run_runner`]).
    pub async fn start(&self, pod: &Pod) {
        self.set_container(pod, "Running", json!({"running": {"startedAt": now()}}))
            .await;
    }

    async fn set_container(&self, pod: &Pod, phase: &str, state: Value) {
        let container = &pod.spec.as_ref().expect("a Pod spec").containers[0];
        let patch = json!({"status": {
            "phase": phase,
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}],
            "containerStatuses": [{
                "name": container.name, "image": container.image, "imageID": "",
                "ready": phase == "Running", "restartCount": 0, "state": state
            }]
        }});
        self.cluster
            .api::<Pod>()
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .expect("set the Pod's status");
    }

    /// The container waits, as the kubelet says when it cannot start it.
    pub async fn wait_with(&self, pod: &Pod, reason: &str, message: &str) {
        self.set_container(
            pod,
            "Pending",
            json!({"waiting": {"reason": reason, "message": message}}),
        )
        .await;
    }

    /// Runs the runner of run `run` for real (see the module docs) and ends its container and
    /// Job as the kubelet and the Job controller would.
    pub async fn run_runner(&self, run: &str) -> RunResult {
        let pod = self.pod_of(run).await;
        self.start(&pod).await;
        let plan_map = self
            .cluster
            .api::<ConfigMap>()
            .get(&plan_config_map_name(run))
            .await
            .expect("the plan ConfigMap");
        let mut plan: Plan =
            serde_json::from_str(&plan_map.data.unwrap_or_default()[PLAN_KEY]).expect("a plan");
        let dir = tempfile::tempdir().expect("a temporary folder");
        plan.output.output_files_dir = Some(dir.path().join("out").display().to_string());
        plan.output.consolidated_results_dir =
            Some(dir.path().join("consolidated").display().to_string());
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .expect("the runner Pod names its ServiceAccount");
        let (access, _token_dir) = self.access_as(&account).await;
        let publisher = ResultsPublisher::start(access, run).expect("the publisher starts");
        let result = run_observed(plan, &[], publisher.clone())
            .await
            .expect("the runner starts");
        let published = publisher.finish().await;
        assert_eq!(published.failed, 0, "rows the runner could not publish");
        let code = i32::from(result.exit_code());
        let (phase, reason) = if code == 0 {
            ("Succeeded", "Completed")
        } else {
            ("Failed", "Error")
        };
        self.set_container(
            &pod,
            phase,
            json!({"terminated": {
                "exitCode": code, "reason": reason,
                "message": result.report().to_bounded_json(),
                "startedAt": now(), "finishedAt": now()
            }}),
        )
        .await;
        if self.cluster.plane == ControlPlane::ApiServerOnly {
            self.finish_job(run, code == 0).await;
        }
        result
    }

    /// Runs the Pods of multi-worker run `run` for real, as their containers would: one
    /// `coebench` process per index with the Pod's own arguments and `JOB_COMPLETION_INDEX`.
    /// What the cluster would provide is stood in for: the Service's name of index 0 resolves
    /// to this machine (`--coordinator` becomes a loopback port), the plan and the output
    /// folders are local files, and the results go to the API as the run's ServiceAccount.
    /// Each container then ends with its process's exit code, index 0's with its report.
    /// Returns (exit code, report file text or empty) by index.
    pub async fn run_workers(&self, run: &str) -> Vec<(i32, String)> {
        let pods = self.indexed_pods_of(run).await;
        for pod in &pods {
            self.start(pod).await;
        }
        let plan_map = self
            .cluster
            .api::<ConfigMap>()
            .get(&plan_config_map_name(run))
            .await
            .expect("the plan ConfigMap");
        let dir = tempfile::tempdir().expect("a temporary folder");
        let plan_file = dir.path().join(PLAN_KEY);
        std::fs::write(&plan_file, &plan_map.data.unwrap_or_default()[PLAN_KEY])
            .expect("write the plan");
        let account = pods[0]
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .expect("the runner Pod names its ServiceAccount");
        let (access, _token_dir) = self.access_as(&account).await;
        let binary = coebench_binary();
        // The coordinator's port is found by binding port 0 and letting it go, so another
        // process may take it before the coordinator binds it: that attempt is made again on
        // another port.
        let mut attempt = 0;
        let (first, others) = loop {
            attempt += 1;
            let coordinator = format!(
                "127.0.0.1:{}",
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free loopback port")
                    .port()
            );
            let mut children = Vec::new();
            for (index, pod) in pods.iter().enumerate() {
                let container = &pod.spec.as_ref().expect("a Pod spec").containers[0];
                let report = dir.path().join(format!("termination-log-{index}"));
                let args = local_args(
                    container.args.as_deref().unwrap_or_default(),
                    &[
                        ("--plan", plan_file.display().to_string()),
                        (
                            "--output-files-dir",
                            dir.path().join("out").display().to_string(),
                        ),
                        (
                            "--consolidated-results-dir",
                            dir.path().join("consolidated").display().to_string(),
                        ),
                        ("--report-file", report.display().to_string()),
                        ("--coordinator", coordinator.clone()),
                    ],
                );
                let mut command = std::process::Command::new(&binary);
                command
                    .args(&args)
                    .args(["--kube-api", &access.base.to_string()])
                    .args(["--kube-namespace", &access.namespace])
                    .env("JOB_COMPLETION_INDEX", index.to_string())
                    .env("HOME", dir.path())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                if let Some(token) = &access.token_file {
                    command.arg("--kube-token-file").arg(token);
                }
                for env in container.env.iter().flatten() {
                    if let Some(value) = &env.value
                        && env.name != "HOME"
                    {
                        command.env(&env.name, value);
                    }
                }
                let child = command.spawn().unwrap_or_else(|e| {
                    panic!("start {} for index {index}: {e}", binary.display())
                });
                children.push((child, report));
            }
            let mut others = children.split_off(1);
            let (coordinator_child, report) = children.pop().expect("index 0");
            let output = tokio::task::spawn_blocking(move || coordinator_child.wait_with_output())
                .await
                .expect("the wait ran")
                .expect("the runner process ended");
            if output.status.success() {
                break ((output, report), others);
            }
            // The coordinator failed: the workers would wait out their rendezvous time for it.
            for (child, _) in &mut others {
                let _ = child.kill();
            }
            let taken = String::from_utf8_lossy(&output.stderr).contains("cannot listen on");
            if !(taken && attempt < 3) {
                break ((output, report), others);
            }
            for (child, _) in &mut others {
                let _ = child.wait();
            }
            eprintln!("e2e: the coordinator's port was taken meanwhile; again on another port");
        };
        let mut ended = Vec::new();
        let mut outputs = vec![(Ok(first.0), first.1)];
        for (child, report) in others {
            let output = tokio::task::spawn_blocking(move || child.wait_with_output())
                .await
                .expect("the wait ran");
            outputs.push((output, report));
        }
        for (index, (output, report)) in outputs.into_iter().enumerate() {
            let output = output.expect("the runner process ended");
            let code = output.status.code().unwrap_or(-1);
            eprintln!(
                "e2e: worker {index} exited {code}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let message = std::fs::read_to_string(&report).unwrap_or_default();
            let (phase, reason) = if code == 0 {
                ("Succeeded", "Completed")
            } else {
                ("Failed", "Error")
            };
            self.set_container(
                &pods[index],
                phase,
                json!({"terminated": {
                    "exitCode": code, "reason": reason, "message": message,
                    "startedAt": now(), "finishedAt": now()
                }}),
            )
            .await;
            ended.push((code, message));
        }
        if self.cluster.plane == ControlPlane::ApiServerOnly {
            self.finish_job(run, ended.iter().all(|(code, _)| *code == 0))
                .await;
        }
        ended
    }

    /// How the runner reaches the API as ServiceAccount `account` (and the folder holding its
    /// token and CA files, to keep alive while it runs).
    async fn access_as(&self, account: &str) -> (ApiAccess, Option<tempfile::TempDir>) {
        if let Some(access) = &self.cluster.fake_api {
            return (access.clone(), None);
        }
        let accounts = self.cluster.api::<ServiceAccount>();
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let token = self
            .cluster
            .until(&format!("a token of ServiceAccount {account}"), || async {
                accounts
                    .create_token_request(account, &PostParams::default(), &request)
                    .await
                    .ok()
                    .and_then(|t| t.status)
                    .and_then(|s| s.token)
            })
            .await;
        let config = kube::Config::infer().await.expect("the kubeconfig");
        let dir = tempfile::tempdir().expect("a temporary folder");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, token).expect("write the token");
        let ca_file = config.root_cert.as_ref().map(|certs| {
            let pem: String = certs.iter().map(|der| pem_certificate(der)).collect();
            let path = dir.path().join("ca.crt");
            std::fs::write(&path, pem).expect("write the CA");
            path
        });
        let access = ApiAccess {
            base: config.cluster_url,
            namespace: self.cluster.namespace.clone(),
            token_file: Some(token_file),
            ca_file,
        };
        (access, Some(dir))
    }

    /// Ends Job `job` as its controller would, when none runs.
    async fn finish_job(&self, job: &str, succeeded: bool) {
        let at = now();
        let status = if succeeded {
            json!({"status": {"active": 0, "succeeded": 1, "completionTime": at, "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": at},
                {"type": "Complete", "status": "True", "lastTransitionTime": at}
            ]}})
        } else {
            json!({"status": {"active": 0, "failed": 1, "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": at},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": at}
            ]}})
        };
        self.cluster
            .api::<Job>()
            .patch_status(job, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("finish the Job");
    }
}

/// One DER certificate as PEM.
fn pem_certificate(der: &[u8]) -> String {
    let body = coebench_support::base64::encode(der, coebench_support::base64::Alphabet::Standard);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// A Pod's runner arguments with the values of `replace` swapped in, and the metrics server
/// left out (each process would bind the same port).
fn local_args(args: &[String], replace: &[(&str, String)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if matches!(arg.as_str(), "--metrics-addr" | "--metrics-linger") {
            iter.next();
            continue;
        }
        out.push(arg.clone());
        if let Some((_, value)) = replace.iter().find(|(flag, _)| *flag == arg.as_str()) {
            iter.next();
            out.push(value.clone());
        }
    }
    out
}

/// The `coebench` binary of this build (`target/<profile>/coebench`, built here when missing),
/// or `COEBENCH_BIN`.
fn coebench_binary() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("COEBENCH_BIN") {
        return path.into();
    }
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join("coebench");
    if !binary.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--locked",
                "-p",
                "coebench-runner",
                "--bin",
                "coebench",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --bin coebench failed");
    }
    binary
}
