//! Reading a runner Job and its Pods into one [`Observation`]: waiting (and for what), stuck
//! (waited too long: the run must fail), running, or finished (with the runner's report).
//!
//! Pure: the caller passes the objects and the time, so every rule is unit-tested. The bounds
//! come from [`Limits`]; a run is never left waiting without one.

use std::time::Duration;

use coebench_plan::report::RunReport;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::resources::ca_certificate::mounted_ca_secret;
use crate::resources::job::RUNNER_CONTAINER;
use crate::status::{Outcome, outcome, parse_report};

pub mod workers;

/// How long each kind of waiting may last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Image pull failures (`ErrImagePull`, `ImagePullBackOff`).
    pub image_pull: Duration,
    /// `CreateContainerConfigError` (e.g. the Secret or its key vanished after the check).
    pub container_config: Duration,
    /// An unschedulable Pod, or a Job that creates no Pod.
    pub unschedulable: Duration,
    /// A scheduled Pod whose runner container is still being created (a volume that cannot be
    /// mounted or attached: FailedMount, Multi-Attach), measured from its scheduling.
    pub startup: Duration,
    /// Extra time past the Job's own deadline before the operator gives up on the Job.
    pub deadline_grace: Duration,
}

/// What a Job and its Pods say about a run.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// Not started yet, for a reason that may still resolve itself.
    Waiting {
        /// PascalCase reason.
        reason: &'static str,
        /// What it is waiting for.
        message: String,
    },
    /// Waited longer than allowed: the run fails and its Job is deleted.
    Stuck {
        /// PascalCase reason.
        reason: &'static str,
        /// What went wrong and what to do.
        message: String,
    },
    /// The runner is running.
    Running {
        /// When the runner container started.
        started: Option<Time>,
    },
    /// The Job finished.
    Finished {
        /// How it ended.
        outcome: Outcome,
        /// The runner's report, when its Pod still exists and it wrote one.
        report: Option<RunReport>,
        /// The runner's exit code, when known.
        exit_code: Option<i32>,
        /// When it ended.
        finished_at: Option<Time>,
    },
}

/// Reads `job` and its `pods` at `now`: the single runner Pod, or for a multi-worker run the
/// coordinator (index 0) and the workers ([`workers`]).
pub fn observe(job: &Job, pods: &[Pod], now: Timestamp, limits: &Limits) -> Observation {
    match workers::worker_count(job) {
        1 => observe_single(job, pods, now, limits),
        n => workers::observe_workers(job, pods, n, now, limits),
    }
}

/// Reads a Job of one runner Pod (or a multi-worker Job through its coordinator's Pods).
fn observe_single(job: &Job, pods: &[Pod], now: Timestamp, limits: &Limits) -> Observation {
    let name = job.metadata.name.clone().unwrap_or_default();
    let status = job.status.clone().unwrap_or_default();
    let job_condition = |type_: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
            .cloned()
    };
    let terminated = terminated_runner(pods);

    if let Some(complete) = job_condition("Complete") {
        return match terminated {
            Some(t) => finished(&name, &t, status.completion_time.clone()),
            None => Observation::Finished {
                outcome: Outcome {
                    succeeded: true,
                    reason: "Succeeded",
                    message: "the Job completed, but its Pod is gone, so the runner's report could not be read; the results on the volume are complete".into(),
                },
                report: None,
                exit_code: None,
                finished_at: status.completion_time.clone().or(complete.last_transition_time),
            },
        };
    }
    if let Some(failed) = job_condition("Failed") {
        let at = failed.last_transition_time.clone();
        if failed.reason.as_deref() == Some("DeadlineExceeded") {
            let deadline = job
                .spec
                .as_ref()
                .and_then(|s| s.active_deadline_seconds)
                .unwrap_or_default();
            let report = terminated
                .as_ref()
                .and_then(|t| t.message.as_deref().and_then(parse_report));
            return Observation::Finished {
                outcome: Outcome {
                    succeeded: false,
                    reason: "DeadlineExceeded",
                    message: format!(
                        "the run took longer than its deadline of {deadline} s (rows × (timeoutSeconds + requestTimeoutSeconds) + delays + margin); lower numRequests or raise options.timeoutSeconds"
                    ),
                },
                exit_code: terminated.as_ref().map(|t| t.exit_code),
                report,
                finished_at: at,
            };
        }
        return match terminated {
            Some(t) => finished(&name, &t, at),
            None => Observation::Finished {
                outcome: Outcome {
                    succeeded: false,
                    reason: "JobFailed",
                    message: format!(
                        "the Job failed ({}: {}); see `kubectl describe job/{name}`",
                        failed.reason.unwrap_or_default(),
                        failed.message.unwrap_or_default()
                    ),
                },
                report: None,
                exit_code: None,
                finished_at: at,
            },
        };
    }

    // Not finished. The Job's own deadline should end it; if the Job controller does not, the
    // operator does, a grace period later.
    if let (Some(start), Some(deadline)) = (
        status.start_time.as_ref(),
        job.spec.as_ref().and_then(|s| s.active_deadline_seconds),
    ) {
        let limit = Duration::from_secs(deadline.max(0) as u64) + limits.deadline_grace;
        if elapsed(&start.0, now) > limit {
            return Observation::Stuck {
                reason: "DeadlineExceeded",
                message: format!(
                    "the Job is still active {} s after its start, past its deadline of {deadline} s; it was deleted",
                    limit.as_secs()
                ),
            };
        }
    }

    let Some(pod) = newest(pods) else {
        let created = job.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(created) = created
            && elapsed(&created, now) > limits.unschedulable
        {
            return Observation::Stuck {
                reason: "PodNotCreated",
                message: format!(
                    "the Job created no Pod in {} s (a quota or an admission policy may refuse it); see `kubectl describe job/{name}`",
                    limits.unschedulable.as_secs()
                ),
            };
        }
        return Observation::Waiting {
            reason: "JobPending",
            message: "waiting for the Job to create the runner Pod".into(),
        };
    };
    observe_pod(pod, now, limits)
}

fn observe_pod(pod: &Pod, now: Timestamp, limits: &Limits) -> Observation {
    let status = pod.status.clone().unwrap_or_default();
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let scheduled = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled");
    if let Some(c) = scheduled
        && c.status == "False"
    {
        let message = c.message.clone().unwrap_or_default();
        if elapsed(&created, now) > limits.unschedulable {
            return Observation::Stuck {
                reason: "Unschedulable",
                message: format!(
                    "the runner Pod could not be scheduled for {} s: {message}; lower runner.resources.requests, or fix runner.nodeSelector, tolerations and affinity",
                    limits.unschedulable.as_secs()
                ),
            };
        }
        return Observation::Waiting {
            reason: "Unschedulable",
            message: format!("the runner Pod is not scheduled yet: {message}"),
        };
    }
    let since = scheduled
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
        .unwrap_or(created);
    let container = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == RUNNER_CONTAINER);
    let Some(container) = container else {
        if let Some(stuck) = startup_timed_out(pod, since, now, limits) {
            return stuck;
        }
        return Observation::Waiting {
            reason: "PodPending",
            message: "the runner Pod is starting".into(),
        };
    };
    let state = container.state.clone().unwrap_or_default();
    if let Some(running) = state.running {
        return Observation::Running {
            started: running.started_at,
        };
    }
    if state.terminated.is_some() {
        // The Job has not recorded the end yet; it will.
        return Observation::Running { started: None };
    }
    let waiting = state.waiting.unwrap_or_default();
    let reason = waiting.reason.unwrap_or_default();
    let detail = waiting.message.unwrap_or_default();
    let image = &container.image;
    match reason.as_str() {
        "InvalidImageName" | "ErrImageNeverPull" => Observation::Stuck {
            reason: "ImagePullFailed",
            message: format!(
                "the runner image {image:?} cannot be used ({reason}: {detail}); fix runner.image or runner.imagePullPolicy"
            ),
        },
        "ErrImagePull" | "ImagePullBackOff" => {
            if elapsed(&since, now) > limits.image_pull {
                Observation::Stuck {
                    reason: "ImagePullFailed",
                    message: format!(
                        "the runner image {image:?} could not be pulled for {} s ({reason}: {detail}); check runner.image and runner.imagePullSecrets",
                        limits.image_pull.as_secs()
                    ),
                }
            } else {
                Observation::Waiting {
                    reason: "ImagePullBackOff",
                    message: format!(
                        "pulling the runner image {image:?} failed, retrying: {detail}"
                    ),
                }
            }
        }
        "CreateContainerConfigError" | "CreateContainerError" => {
            let (reason, fix) = container_config_problem(&detail);
            if elapsed(&since, now) > limits.container_config {
                Observation::Stuck {
                    reason,
                    message: format!(
                        "the runner container could not be created for {} s: {detail}; {fix}",
                        limits.container_config.as_secs()
                    ),
                }
            } else {
                Observation::Waiting {
                    reason,
                    message: format!("the runner container cannot be created yet: {detail}; {fix}"),
                }
            }
        }
        _ => startup_timed_out(pod, since, now, limits).unwrap_or(Observation::Waiting {
            reason: "ContainerCreating",
            message: "the runner container is being created".into(),
        }),
    }
}

/// The reason and the fix of a container the kubelet cannot create, from its message: the
/// kubelet names a missing Secret (`secret "sn-key" not found`) or key (`couldn't find key
/// apiKey in Secret team-a/sn-key`), so the operator needs no read access to Secrets to say so.
fn container_config_problem(detail: &str) -> (&'static str, String) {
    if let Some(name) = detail
        .strip_prefix("secret \"")
        .and_then(|rest| rest.strip_suffix("\" not found"))
    {
        return (
            "SecretNotFound",
            format!(
                "create it: `kubectl create secret generic {name} --from-literal=<key>=<api key>` in the run's namespace (endpoint.apiKeySecretRef, or runner.env)"
            ),
        );
    }
    if let Some((key, secret)) = detail
        .strip_prefix("couldn't find key ")
        .and_then(|rest| rest.split_once(" in Secret "))
    {
        return (
            "SecretKeyNotFound",
            format!(
                "add key {key:?} to Secret {secret}, or fix endpoint.apiKeySecretRef.key (or runner.env)"
            ),
        );
    }
    (
        "ContainerConfigError",
        "check the Secret named by endpoint.apiKeySecretRef and runner.env".into(),
    )
}

/// A Pod scheduled at `since` whose container is still being created past the start-up limit:
/// the Pod's status does not say why, its Events do (`FailedMount`, `FailedAttachVolume`
/// "Multi-Attach error" for a ReadWriteOnce claim attached to another node). A Pod that mounts
/// its CA certificate from a Secret names it: the operator cannot read it to check it first.
fn startup_timed_out(
    pod: &Pod,
    since: Timestamp,
    now: Timestamp,
    limits: &Limits,
) -> Option<Observation> {
    if elapsed(&since, now) <= limits.startup {
        return None;
    }
    let ca_secret = mounted_ca_secret(pod)
        .map(|(name, key)| {
            format!(
                "; or the Secret {name} or its key {key:?} of endpoint.caCertificate.secretKeyRef is missing (the operator reads no Secrets; the kubelet's FailedMount event names it): create it in the run's namespace"
            )
        })
        .unwrap_or_default();
    Some(Observation::Stuck {
        reason: "StartupTimeout",
        message: format!(
            "the runner container was still being created {} s after its Pod was scheduled; usually a volume that cannot be mounted or attached: `kubectl describe pod/{}` shows FailedMount or Multi-Attach (a ReadWriteOnce results claim in use on another node){ca_secret}",
            limits.startup.as_secs(),
            pod.metadata.name.as_deref().unwrap_or_default()
        ),
    })
}

fn finished(job: &str, t: &ContainerStateTerminated, at: Option<Time>) -> Observation {
    let report = t.message.as_deref().and_then(parse_report);
    Observation::Finished {
        outcome: outcome(t.exit_code, t.reason.as_deref(), report.as_ref(), job),
        report,
        exit_code: Some(t.exit_code),
        finished_at: t.finished_at.clone().or(at),
    }
}

/// The terminated state of the runner container of the newest Pod that has one.
fn terminated_runner(pods: &[Pod]) -> Option<ContainerStateTerminated> {
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.clone()));
    pods.into_iter().find_map(|pod| {
        pod.status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find(|c| c.name == RUNNER_CONTAINER)?
            .state
            .as_ref()?
            .terminated
            .clone()
    })
}

fn newest(pods: &[Pod]) -> Option<&Pod> {
    pods.iter()
        .max_by_key(|p| p.metadata.creation_timestamp.clone())
}

fn elapsed(since: &Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(*since)).unwrap_or_default()
}

#[cfg(test)]
mod tests;
