//! The runner Job of a run: one Pod running `coebench run` on the plan ConfigMap, with the API
//! key from the Secret, the results volume, the endpoint's CA certificate when it names one, and a Pod Security "restricted" security context
//! (an Indexed Job of one such Pod per worker for a multi-worker run: see
//! [`super::workers`]).
//!
//! Deadline formula (`activeDeadlineSeconds`): every row may send for `timeoutSeconds` and then
//! wait `requestTimeoutSeconds` for its last requests, with `timeDelaySeconds` between rows, plus
//! a fixed margin for image pull and start-up:
//! `rows × (timeoutSeconds + requestTimeoutSeconds) + (rows − 1) × timeDelaySeconds + margin`.
//! The Pod's `terminationGracePeriodSeconds` covers the runner's stop grace and writing its
//! files after SIGTERM.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, KeyToPath, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::ObjectMeta;

use crate::crd::CoeBenchmarkRun;
use crate::error::Result;
use crate::resources::ca_certificate::ca_certificate_volume;
use crate::resources::configmap::{API_KEY_ENV, PLAN_DIR, PLAN_KEY, run_dirs};
use crate::resources::{
    RESULTS_MOUNT, job_name, namespace_and_owner, plan_config_map_name, run_labels,
    runner_service_account_name,
};

/// Name of the runner container (the operator reads its termination state).
pub const RUNNER_CONTAINER: &str = "runner";
/// Port of the runner's `/metrics` while a run lasts; the container port is named `metrics`
/// (the chart's PodMonitor scrapes it).
pub const RUNNER_METRICS_PORT: i32 = 9090;
/// Seconds the runner keeps serving metrics after its run, so one more scrape catches the end
/// (covered by the Job deadline's margin).
pub const RUNNER_METRICS_LINGER_SECONDS: u32 = 20;
/// User and group the runner runs as when the image does not say (distroless `nonroot`).
pub const RUNNER_UID: i64 = 65532;
/// Default `ttlSecondsAfterFinished`: one day, so the Pod (and the report in its termination
/// message) outlives any reasonable operator downtime.
pub const DEFAULT_TTL_SECONDS_AFTER_FINISHED: i32 = 86_400;
/// Where `runner.files` volumes are mounted: `/files/<name>/`.
pub const FILES_DIR: &str = "/files";
/// Where a tokenizer cache claim is mounted, and the runner's `HF_HOME` then.
pub const TOKENIZER_CACHE_DIR: &str = "/var/cache/huggingface";
/// Default start-up margin of the deadline, in seconds.
pub const DEFAULT_DEADLINE_MARGIN_SECONDS: i64 = 300;

/// Operator-wide defaults the Job builder needs.
#[derive(Clone, Debug, PartialEq)]
pub struct JobDefaults {
    /// Image used when the run names none.
    pub runner_image: String,
    /// Compute resources of runner containers whose run sets none (default:
    /// [`default_runner_resources`]).
    pub runner_resources: ResourceRequirements,
    /// Service account of runner Pods whose run names none (default: none, so each run gets
    /// its own); the run's results Role is bound to it.
    pub runner_service_account: Option<String>,
    /// The claim runner Pods whose run names no `runner.tokenizerCache` use as their Hugging
    /// Face cache (default: none, a folder of the Pod's `/tmp`).
    pub runner_tokenizer_cache_claim: Option<String>,
    /// `ttlSecondsAfterFinished` when the run sets none.
    pub ttl_seconds_after_finished: i32,
    /// Start-up margin added to the deadline.
    pub deadline_margin_seconds: i64,
}

impl Default for JobDefaults {
    fn default() -> Self {
        JobDefaults {
            runner_image: default_runner_image(),
            runner_resources: default_runner_resources(),
            runner_service_account: None,
            runner_tokenizer_cache_claim: None,
            ttl_seconds_after_finished: DEFAULT_TTL_SECONDS_AFTER_FINISHED,
            deadline_margin_seconds: DEFAULT_DEADLINE_MARGIN_SECONDS,
        }
    }
}

/// The runner image matching this operator's version.
pub fn default_runner_image() -> String {
    format!("ghcr.io/coebench/coebench:{}", env!("CARGO_PKG_VERSION"))
}

/// `activeDeadlineSeconds` of a run (see the module docs for the formula).
pub fn active_deadline_seconds(run: &CoeBenchmarkRun, margin: i64) -> i64 {
    let rows = run.spec.rows.len().max(1) as f64;
    let o = &run.spec.options;
    let positive = |v: f64| if v.is_finite() && v > 0.0 { v } else { 0.0 };
    let seconds = rows * (positive(o.timeout_seconds) + positive(o.request_timeout_seconds))
        + (rows - 1.0) * positive(o.time_delay_seconds);
    // Cap at ~10 years: beyond that the number means "no deadline" anyway.
    (seconds.ceil().min(315_360_000.0) as i64) + margin
}

/// Seconds the runner may take to write its files after SIGTERM, on top of its stop grace.
const FILES_AFTER_STOP_SECONDS: i64 = 20;

/// `terminationGracePeriodSeconds` of a run's Pod: the runner's stop grace
/// (`options.stopGraceSeconds`, requests in flight finishing) plus time to write its files,
/// so a stopped Pod is not killed before its `run.json` is written. At least Kubernetes'
/// default of 30 s.
pub fn termination_grace_seconds(run: &CoeBenchmarkRun) -> i64 {
    let grace = run.spec.options.stop_grace_seconds;
    let grace = if grace.is_finite() && grace > 0.0 {
        grace.ceil().min(3_600.0) as i64
    } else {
        0
    };
    (grace + FILES_AFTER_STOP_SECONDS).max(30)
}

/// The runner's arguments.
pub fn runner_args(run: &CoeBenchmarkRun, namespace: &str) -> Vec<String> {
    let dirs = run_dirs(run, namespace);
    [
        "run",
        "--plan",
        &format!("{PLAN_DIR}/{PLAN_KEY}"),
        "--run-name",
        &run.name_any(),
        "--output-files-dir",
        &dirs.output_files_dir,
        "--consolidated-results-dir",
        &dirs.consolidated_results_dir,
        "--report-file",
        "/dev/termination-log",
        "--log-format",
        "json",
        "--no-progress",
        "--metrics-addr",
        &format!("0.0.0.0:{RUNNER_METRICS_PORT}"),
        "--metrics-linger",
        &RUNNER_METRICS_LINGER_SECONDS.to_string(),
        "--publish-results",
        &run.name_any(),
    ]
    .into_iter()
    .map(str::to_string)
    .collect()
}

/// The ServiceAccount the runner Pod uses: the run's `runner.serviceAccountName`, else the
/// operator's `--runner-service-account`, else the run's own (`<run>-runner`).
pub fn pod_service_account(run: &CoeBenchmarkRun, defaults: &JobDefaults) -> String {
    run.spec
        .runner
        .service_account_name
        .clone()
        .or_else(|| defaults.runner_service_account.clone())
        .unwrap_or_else(|| runner_service_account_name(&run.name_any()))
}

/// Whether the operator creates the Pod's ServiceAccount (no other one is named).
pub fn creates_service_account(run: &CoeBenchmarkRun, defaults: &JobDefaults) -> bool {
    pod_service_account(run, defaults) == runner_service_account_name(&run.name_any())
}

/// The runner Job of `run`, owned by it.
pub fn build_job(run: &CoeBenchmarkRun, defaults: &JobDefaults) -> Result<Job> {
    let name = run.name_any();
    let (namespace, owner) = namespace_and_owner(run)?;
    let labels = run_labels(run);
    let container = runner_container(run, &namespace, defaults);
    let pod = runner_pod(run, defaults, container);

    let mut job = Job {
        metadata: ObjectMeta {
            name: Some(job_name(&name)),
            namespace: Some(namespace.clone()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(active_deadline_seconds(
                run,
                defaults.deadline_margin_seconds,
            )),
            ttl_seconds_after_finished: Some(
                run.spec
                    .ttl_seconds_after_finished
                    .unwrap_or(defaults.ttl_seconds_after_finished),
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    };
    super::workers::apply_workers(run, &namespace, &mut job);
    Ok(job)
}

/// The runner's environment: the user's variables, then `HOME`, `HF_HOME` when a tokenizer
/// cache claim is mounted, the metric labels and the API key from its Secret (user variables
/// of those names are replaced).
fn runner_env(run: &CoeBenchmarkRun, namespace: &str, defaults: &JobDefaults) -> Vec<EnvVar> {
    let name = run.name_any();
    let mut env: Vec<EnvVar> = run.spec.runner.env.clone().unwrap_or_default();
    env.retain(|e| e.name != API_KEY_ENV);
    env.retain(|e| !matches!(e.name.as_str(), "COEBENCH_NAMESPACE" | "COEBENCH_BENCHMARK"));
    let plain = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    };
    env.push(plain("HOME", "/tmp"));
    if tokenizer_cache_claim(run, defaults).is_some() {
        env.retain(|e| e.name != "HF_HOME");
        env.push(plain("HF_HOME", TOKENIZER_CACHE_DIR));
    }
    // The runner's metric labels: which benchmark in which namespace.
    env.push(plain("COEBENCH_NAMESPACE", namespace));
    env.push(plain(
        "COEBENCH_BENCHMARK",
        run.spec.benchmark.as_deref().unwrap_or(&name),
    ));
    if let Some(secret) = &run.spec.endpoint.api_key_secret_ref {
        env.push(EnvVar {
            name: API_KEY_ENV.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.name.clone(),
                    key: secret.key.clone(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }
    env
}

/// The claim of the run's Hugging Face cache: its own, else the operator's default.
fn tokenizer_cache_claim<'a>(
    run: &'a CoeBenchmarkRun,
    defaults: &'a JobDefaults,
) -> Option<&'a str> {
    run.spec
        .runner
        .tokenizer_cache
        .as_ref()
        .map(|c| c.claim_name.as_str())
        .or(defaults.runner_tokenizer_cache_claim.as_deref())
}

/// The volume name of a `runner.files` entry.
fn files_volume_name(name: &str) -> String {
    format!("files-{name}")
}

/// The `runner.files` volumes and the tokenizer cache, with their mounts.
fn file_volumes(run: &CoeBenchmarkRun, defaults: &JobDefaults) -> Vec<(Volume, VolumeMount)> {
    let mount = |name: &str, path: String, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path,
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    let mut volumes = Vec::new();
    for files in run.spec.runner.files.iter().flatten() {
        let name = files_volume_name(&files.name);
        let volume = Volume {
            name: name.clone(),
            config_map: files.config_map.as_ref().map(|c| ConfigMapVolumeSource {
                name: c.name.clone(),
                ..ConfigMapVolumeSource::default()
            }),
            persistent_volume_claim: files.persistent_volume_claim.as_ref().map(|c| {
                PersistentVolumeClaimVolumeSource {
                    claim_name: c.claim_name.clone(),
                    read_only: Some(true),
                }
            }),
            ..Volume::default()
        };
        volumes.push((
            volume,
            mount(&name, format!("{FILES_DIR}/{}", files.name), true),
        ));
    }
    if let Some(claim) = tokenizer_cache_claim(run, defaults) {
        let volume = Volume {
            name: "tokenizer-cache".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.to_string(),
                read_only: Some(false),
            }),
            ..Volume::default()
        };
        volumes.push((
            volume,
            mount("tokenizer-cache", TOKENIZER_CACHE_DIR.to_string(), false),
        ));
    }
    volumes
}

/// The Pod's volumes: the plan's ConfigMap, the results (the claim, or an emptyDir), `/tmp`,
/// then the `runner.files` volumes, the tokenizer cache and the endpoint's CA certificate.
fn runner_volumes(run: &CoeBenchmarkRun, defaults: &JobDefaults) -> Vec<Volume> {
    let results_volume = match &run.spec.results {
        Some(results) => Volume {
            name: "results".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: results.persistent_volume_claim.claim_name.clone(),
                read_only: Some(false),
            }),
            ..Volume::default()
        },
        None => Volume {
            name: "results".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    };
    vec![
        Volume {
            name: "plan".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: plan_config_map_name(&run.name_any()),
                items: Some(vec![KeyToPath {
                    key: PLAN_KEY.into(),
                    path: PLAN_KEY.into(),
                    ..KeyToPath::default()
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        results_volume,
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("1Gi".into())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
    .into_iter()
    .chain(file_volumes(run, defaults).into_iter().map(|(v, _)| v))
    .chain(ca_certificate_volume(run).map(|(v, _)| v))
    .collect()
}

/// The runner container: image, arguments, environment, the metrics port, resources, mounts,
/// and the restricted security context; its termination message is the runner's report.
fn runner_container(run: &CoeBenchmarkRun, namespace: &str, defaults: &JobDefaults) -> Container {
    let runner = &run.spec.runner;
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };

    Container {
        name: RUNNER_CONTAINER.into(),
        image: Some(
            runner
                .image
                .clone()
                .unwrap_or_else(|| defaults.runner_image.clone()),
        ),
        image_pull_policy: runner.image_pull_policy.map(|p| p.as_str().to_string()),
        command: Some(vec!["coebench".into()]),
        args: Some(runner_args(run, namespace)),
        env: Some(runner_env(run, namespace, defaults)),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: RUNNER_METRICS_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        resources: Some(
            runner
                .resources
                .clone()
                .unwrap_or_else(|| defaults.runner_resources.clone()),
        ),
        volume_mounts: Some(
            [
                mount("plan", PLAN_DIR, true),
                mount("results", RESULTS_MOUNT, false),
                mount("tmp", "/tmp", false),
            ]
            .into_iter()
            .chain(file_volumes(run, defaults).into_iter().map(|(_, m)| m))
            .chain(ca_certificate_volume(run).map(|(_, m)| m))
            .collect(),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(runtime_default()),
            ..SecurityContext::default()
        }),
        termination_message_path: Some("/dev/termination-log".into()),
        termination_message_policy: Some("File".into()),
        ..Container::default()
    }
}

/// The runner Pod: never restarted, the ServiceAccount that may write the run's results
/// ConfigMaps (and nothing else, see [`super::results`]) with its token mounted, the run's
/// scheduling settings, the runner's UID and group.
fn runner_pod(run: &CoeBenchmarkRun, defaults: &JobDefaults, container: Container) -> PodSpec {
    let runner = &run.spec.runner;
    PodSpec {
        restart_policy: Some("Never".into()),
        service_account_name: Some(pod_service_account(run, defaults)),
        automount_service_account_token: Some(true),
        image_pull_secrets: runner.image_pull_secrets.clone(),
        node_selector: runner.node_selector.clone(),
        tolerations: runner.tolerations.clone(),
        affinity: runner.affinity.clone(),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(runner.run_as_user.unwrap_or(RUNNER_UID)),
            run_as_group: Some(runner.run_as_user.unwrap_or(RUNNER_UID)),
            fs_group: Some(runner.fs_group.or(runner.run_as_user).unwrap_or(RUNNER_UID)),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            seccomp_profile: Some(runtime_default()),
            ..PodSecurityContext::default()
        }),
        containers: vec![container],
        volumes: Some(runner_volumes(run, defaults)),
        termination_grace_period_seconds: Some(termination_grace_seconds(run)),
        ..PodSpec::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

/// Resources of a runner container when neither the run nor the operator's
/// `--runner-resources` say otherwise: requests of 500m CPU and 512Mi memory, no limits.
pub fn default_runner_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("500m".into())),
            ("memory".to_string(), Quantity("512Mi".into())),
        ])),
        ..ResourceRequirements::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crd::{
        CoeBenchmarkRunSpec, Endpoint, PersistentVolumeClaimRef, ResultsSpec, RunTrigger,
        RunnerSpec, SecretKeyRef, TriggerKind,
    };
    use coebench_plan::{ApiKind, Row, RunOptions};

    pub(crate) fn sample_run() -> CoeBenchmarkRun {
        let row = Row {
            model: "Meta-Llama-3.3-70B-Instruct".into(),
            input_tokens: 1000,
            output_tokens: 100,
            num_requests: 16,
            concurrency: Some(4),
            qps: None,
            qps_distribution: None,
            image_size: None,
            max_sequence_length: None,
            ignore_eos: None,
            min_tokens: None,
            sampling_params: Default::default(),
            dataset: None,
            workers: None,
            objectives: None,
        };
        let mut run = CoeBenchmarkRun::new(
            "bench-1",
            CoeBenchmarkRunSpec {
                benchmark: Some("bench".into()),
                trigger: RunTrigger {
                    kind: TriggerKind::Initial,
                    value: None,
                    sequence: Some(1),
                },
                endpoint: Endpoint {
                    api: ApiKind::Sncloud,
                    url: None,
                    api_key_secret_ref: Some(SecretKeyRef {
                        name: "sn-key".into(),
                        key: "apiKey".into(),
                    }),
                    ca_certificate: None,
                },
                rows: vec![row.clone(), row],
                options: RunOptions {
                    timeout_seconds: 600.0,
                    time_delay_seconds: 10.0,
                    request_timeout_seconds: 60.0,
                    ..RunOptions::default()
                },
                runner: RunnerSpec {
                    image: Some("registry.local/coebench:1".into()),
                    ..RunnerSpec::default()
                },
                results: Some(ResultsSpec {
                    persistent_volume_claim: PersistentVolumeClaimRef {
                        claim_name: "results".into(),
                    },
                    sub_path: Some("perf".into()),
                }),
                ttl_seconds_after_finished: None,
                workers: None,
            },
        );
        run.metadata.namespace = Some("team-a".into());
        run.metadata.uid = Some("uid-run-1".into());
        run
    }

    fn container(job: &Job) -> &Container {
        &job.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
    }

    #[test]
    fn the_job_runs_the_runner_once_with_its_contract_flags() {
        let job = build_job(&sample_run(), &JobDefaults::default()).unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("bench-1"));
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(
            spec.ttl_seconds_after_finished,
            Some(DEFAULT_TTL_SECONDS_AFTER_FINISHED)
        );
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.automount_service_account_token, Some(true));
        assert_eq!(pod.service_account_name.as_deref(), Some("bench-1-runner"));
        let c = container(&job);
        assert_eq!(c.image.as_deref(), Some("registry.local/coebench:1"));
        assert_eq!(c.command.as_deref(), Some(&["coebench".to_string()][..]));
        assert_eq!(
            c.args.as_ref().unwrap().join(" "),
            "run --plan /etc/coebench/plan.json --run-name bench-1 \
             --output-files-dir /results/perf/team-a/bench \
             --consolidated-results-dir /results/perf/team-a/bench/bench-1 \
             --report-file /dev/termination-log --log-format json --no-progress \
             --metrics-addr 0.0.0.0:9090 --metrics-linger 20 --publish-results bench-1"
        );
        assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
        let labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(labels["coebench.dev/run"], "bench-1");
        assert_eq!(labels["coebench.dev/benchmark"], "bench");
        let port = &c.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.container_port),
            (Some("metrics"), 9090)
        );
        let env = c.env.as_ref().unwrap();
        let value = |name: &str| {
            env.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(value("COEBENCH_NAMESPACE").as_deref(), Some("team-a"));
        assert!(value("COEBENCH_BENCHMARK").is_some());
    }

    #[test]
    fn the_api_key_comes_from_the_secret_and_cannot_be_overridden() {
        let mut run = sample_run();
        run.spec.runner.env = Some(vec![
            EnvVar {
                name: "COEBENCH_API_KEY".into(),
                value: Some("leak".into()),
                ..EnvVar::default()
            },
            EnvVar {
                name: "RUST_LOG".into(),
                value: Some("debug".into()),
                ..EnvVar::default()
            },
        ]);
        let job = build_job(&run, &JobDefaults::default()).unwrap();
        let env = container(&job).env.as_ref().unwrap();
        let keys: Vec<_> = env.iter().filter(|e| e.name == API_KEY_ENV).collect();
        assert_eq!(keys.len(), 1);
        let selector = keys[0]
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
        assert!(env.iter().any(|e| e.name == "RUST_LOG"));
    }

    #[test]
    fn the_pod_meets_pod_security_restricted() {
        let job = build_job(&sample_run(), &JobDefaults::default()).unwrap();
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let sc = container(&job).security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let mounts: Vec<_> = container(&job)
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(mounts, ["/etc/coebench", "/results", "/tmp"]);
    }

    #[test]
    fn the_volume_is_chowned_only_on_a_mismatch_and_the_runners_ids_can_be_set() {
        let pod_security = |run: &CoeBenchmarkRun| {
            let job = build_job(run, &JobDefaults::default()).unwrap();
            job.spec
                .unwrap()
                .template
                .spec
                .unwrap()
                .security_context
                .unwrap()
        };
        let mut run = sample_run();
        let default = pod_security(&run);
        assert_eq!(
            default.fs_group_change_policy.as_deref(),
            Some("OnRootMismatch")
        );
        assert_eq!(
            (default.run_as_user, default.fs_group),
            (Some(RUNNER_UID), Some(RUNNER_UID))
        );
        run.spec.runner.run_as_user = Some(1000);
        let nfs = pod_security(&run);
        assert_eq!(
            (nfs.run_as_user, nfs.run_as_group, nfs.fs_group),
            (Some(1000), Some(1000), Some(1000))
        );
        run.spec.runner.fs_group = Some(2000);
        assert_eq!(pod_security(&run).fs_group, Some(2000));
    }

    #[test]
    fn runner_files_and_the_tokenizer_cache_are_mounted_where_the_plan_reads_them() {
        use crate::crd::RunnerFiles;
        use k8s_openapi::api::core::v1::LocalObjectReference;
        let mut run = sample_run();
        run.spec.runner.files = Some(vec![
            RunnerFiles {
                name: "tokenizers".into(),
                config_map: Some(LocalObjectReference {
                    name: "llama-tokenizer".into(),
                }),
                persistent_volume_claim: None,
            },
            RunnerFiles {
                name: "datasets".into(),
                config_map: None,
                persistent_volume_claim: Some(PersistentVolumeClaimRef {
                    claim_name: "prompts".into(),
                }),
            },
        ]);
        let defaults = JobDefaults {
            runner_tokenizer_cache_claim: Some("hf-cache".into()),
            ..JobDefaults::default()
        };
        let job = build_job(&run, &defaults).unwrap();
        let c = container(&job);
        let mounts: Vec<(&str, &str, Option<bool>)> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
            .collect();
        assert_eq!(
            &mounts[3..],
            [
                ("files-tokenizers", "/files/tokenizers", Some(true)),
                ("files-datasets", "/files/datasets", Some(true)),
                ("tokenizer-cache", TOKENIZER_CACHE_DIR, Some(false)),
            ]
        );
        let env = c.env.as_ref().unwrap();
        let hf_home: Vec<_> = env.iter().filter(|e| e.name == "HF_HOME").collect();
        assert_eq!(hf_home.len(), 1);
        assert_eq!(hf_home[0].value.as_deref(), Some(TOKENIZER_CACHE_DIR));
        let pod = job.spec.unwrap().template.spec.unwrap();
        let volumes = pod.volumes.unwrap();
        let by_name = |n: &str| volumes.iter().find(|v| v.name == n).unwrap();
        assert_eq!(
            by_name("files-tokenizers")
                .config_map
                .as_ref()
                .unwrap()
                .name,
            "llama-tokenizer"
        );
        let prompts = by_name("files-datasets")
            .persistent_volume_claim
            .as_ref()
            .unwrap();
        assert_eq!(
            (prompts.claim_name.as_str(), prompts.read_only),
            ("prompts", Some(true))
        );
        assert_eq!(
            by_name("tokenizer-cache")
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "hf-cache"
        );

        // The run's own cache claim wins over the operator's; without either, no cache volume
        // and no HF_HOME (the runner's default cache is under HOME=/tmp).
        run.spec.runner.tokenizer_cache = Some(PersistentVolumeClaimRef {
            claim_name: "own-cache".into(),
        });
        let job = build_job(&run, &defaults).unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert!(pod.volumes.unwrap().iter().any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == "own-cache")
        }));
        let plain = build_job(&sample_run(), &JobDefaults::default()).unwrap();
        let c = container(&plain);
        assert_eq!(c.volume_mounts.as_ref().unwrap().len(), 3);
        assert!(!c.env.as_ref().unwrap().iter().any(|e| e.name == "HF_HOME"));
    }

    #[test]
    fn the_ca_certificate_has_its_own_volume_and_folder_beside_files_cache_and_results() {
        use crate::crd::{CaCertificateRef, ConfigMapKeyRef, RunnerFiles};
        use crate::resources::ca_certificate::{CA_CERTIFICATE_DIR, CA_CERTIFICATE_VOLUME};
        use k8s_openapi::api::core::v1::LocalObjectReference;
        let mut run = sample_run();
        // A runner.files entry named like the CA volume's folder must not collide with it.
        run.spec.runner.files = Some(vec![RunnerFiles {
            name: "ca-certificate".into(),
            config_map: Some(LocalObjectReference {
                name: "datasets".into(),
            }),
            persistent_volume_claim: None,
        }]);
        run.spec.endpoint.ca_certificate = Some(CaCertificateRef {
            config_map_key_ref: Some(ConfigMapKeyRef {
                name: "corp-ca".into(),
                key: "ca.crt".into(),
            }),
            secret_key_ref: None,
        });
        let defaults = JobDefaults {
            runner_tokenizer_cache_claim: Some("hf-cache".into()),
            ..JobDefaults::default()
        };
        let job = build_job(&run, &defaults).unwrap();
        let mounts = container(&job).volume_mounts.clone().unwrap();
        let ca = mounts
            .iter()
            .find(|m| m.name == CA_CERTIFICATE_VOLUME)
            .expect("the CA certificate's mount");
        assert_eq!(
            (ca.mount_path.as_str(), ca.read_only),
            (CA_CERTIFICATE_DIR, Some(true))
        );
        let pod = job.spec.unwrap().template.spec.unwrap();
        let mut volumes: Vec<_> = pod.volumes.unwrap().into_iter().map(|v| v.name).collect();
        let count = volumes.len();
        volumes.sort();
        volumes.dedup();
        assert_eq!(
            volumes.len(),
            count,
            "two volumes share a name: {volumes:?}"
        );
        // No mount is at or inside another one's folder.
        let folder = |p: &str| format!("{}/", p.trim_end_matches('/'));
        for a in &mounts {
            for b in &mounts {
                if a.name != b.name {
                    assert!(
                        !folder(&a.mount_path).starts_with(&folder(&b.mount_path)),
                        "{} is inside {}",
                        a.mount_path,
                        b.mount_path
                    );
                }
            }
        }
    }

    #[test]
    fn results_use_the_claim_or_an_empty_dir() {
        let job = build_job(&sample_run(), &JobDefaults::default()).unwrap();
        let volumes = job.spec.unwrap().template.spec.unwrap().volumes.unwrap();
        assert_eq!(
            volumes[1]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "results"
        );
        let mut run = sample_run();
        run.spec.results = None;
        let job = build_job(&run, &JobDefaults::default()).unwrap();
        let volumes = job.spec.unwrap().template.spec.unwrap().volumes.unwrap();
        assert!(volumes[1].empty_dir.is_some());
    }

    #[test]
    fn the_pods_grace_covers_the_stop_grace_and_writing_the_files() {
        // The default stop grace (10 s) plus time to write the files, at least 30 s.
        assert_eq!(termination_grace_seconds(&sample_run()), 30);
        let mut long_grace = sample_run();
        long_grace.spec.options.stop_grace_seconds = 120.5;
        assert_eq!(termination_grace_seconds(&long_grace), 141);
        let job = build_job(&long_grace, &JobDefaults::default()).unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.termination_grace_period_seconds, Some(141));
    }

    #[test]
    fn the_deadline_covers_every_row_its_requests_and_the_delays() {
        // 2 rows × (600 + 60) + 1 × 10 + 300.
        assert_eq!(active_deadline_seconds(&sample_run(), 300), 1630);
        let job = build_job(&sample_run(), &JobDefaults::default()).unwrap();
        assert_eq!(job.spec.unwrap().active_deadline_seconds, Some(1630));
    }

    #[test]
    fn operator_defaults_fill_resources_and_service_account_the_run_leaves_out() {
        let defaults = JobDefaults {
            runner_resources: ResourceRequirements {
                limits: Some(BTreeMap::from([(
                    "memory".to_string(),
                    Quantity("1Gi".into()),
                )])),
                ..ResourceRequirements::default()
            },
            runner_service_account: Some("coebench-runner".into()),
            ..JobDefaults::default()
        };
        let job = build_job(&sample_run(), &defaults).unwrap();
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("coebench-runner"));
        assert_eq!(pod.automount_service_account_token, Some(true));
        assert_eq!(
            container(&job).resources.as_ref(),
            Some(&defaults.runner_resources)
        );

        // The run's own settings win.
        let mut run = sample_run();
        run.spec.runner.service_account_name = Some("mine".into());
        run.spec.runner.resources = Some(default_runner_resources());
        let job = build_job(&run, &defaults).unwrap();
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("mine"));
        assert_eq!(
            container(&job).resources.as_ref(),
            Some(&default_runner_resources())
        );
    }

    #[test]
    fn the_simulator_needs_no_key() {
        let mut run = sample_run();
        run.spec.endpoint = Endpoint {
            api: ApiKind::Simulator,
            url: None,
            api_key_secret_ref: None,
            ca_certificate: None,
        };
        let job = build_job(&run, &JobDefaults::default()).unwrap();
        assert!(
            !container(&job)
                .env
                .as_ref()
                .unwrap()
                .iter()
                .any(|e| e.name == API_KEY_ENV)
        );
    }
}
