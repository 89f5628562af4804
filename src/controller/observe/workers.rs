//! Reading a multi-worker run's Indexed Job: the coordinator (index 0) decides the outcome and
//! carries the report, exactly as the single Pod does; the other indexes can only lose the run
//! (`WorkerLost`, naming the Pod and its index).
//!
//! A worker is lost when its Pod failed (its runner exited non-zero, or the Pod itself failed:
//! evicted, deleted), when the Job has no Pod for its index past the unschedulable bound, or
//! when its Pod never starts (unschedulable, image pull error, missing Secret, stuck in
//! creation: the single Pod's rules and bounds, [`super::observe_pod`]). A worker Pod's own
//! status or termination message is never read as the run's report.
//!
//! The coordinator notices a lost connection itself and ends with exit code 8 and its report,
//! so the operator waits for that, at most the dependency timeout (`Limits::container_config`)
//! after the worker ended; a worker that never started, or a coordinator that has not ended in
//! time, makes the run stuck: its Job is deleted, and the coordinator's SIGTERM handling writes
//! what was measured.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::{Limits, Observation, elapsed, finished, newest, observe_pod, terminated_runner};
use crate::resources::job::RUNNER_CONTAINER;
use crate::resources::workers::COMPLETION_INDEX;
use crate::status::Outcome;

/// The worker Pods of `job`: its completions when it is an Indexed Job, else 1.
pub fn worker_count(job: &Job) -> u32 {
    let Some(spec) = job.spec.as_ref() else {
        return 1;
    };
    if spec.completion_mode.as_deref() != Some("Indexed") {
        return 1;
    }
    spec.completions
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1)
        .max(1)
}

/// The completion index of a Pod of an Indexed Job (its label, else its annotation).
pub fn completion_index(pod: &Pod) -> Option<u32> {
    let meta = &pod.metadata;
    meta.labels
        .as_ref()
        .and_then(|l| l.get(COMPLETION_INDEX))
        .or_else(|| meta.annotations.as_ref()?.get(COMPLETION_INDEX))
        .and_then(|v| v.parse().ok())
}

/// A worker that is gone for good: which one, and what happened to it.
#[derive(Clone, Debug, PartialEq)]
struct Lost {
    index: u32,
    pod: Option<String>,
    what: String,
    /// When it ended, when known.
    at: Option<Timestamp>,
}

impl Lost {
    fn name(&self) -> String {
        match &self.pod {
            Some(pod) => format!("worker {} (Pod {pod})", self.index),
            None => format!("worker {}", self.index),
        }
    }
}

/// Reads an Indexed Job of `workers` Pods at `now`.
pub(super) fn observe_workers(
    job: &Job,
    pods: &[Pod],
    workers: u32,
    now: Timestamp,
    limits: &Limits,
) -> Observation {
    let coordinator: Vec<Pod> = pods
        .iter()
        .filter(|p| completion_index(p) == Some(0))
        .cloned()
        .collect();
    let lost = lost_worker(job, pods, workers);
    let base = super::observe_single(job, &coordinator, now, limits);
    match base {
        Observation::Finished { .. } => name_the_lost_in(base, lost.as_ref()),
        Observation::Stuck { .. } => base,
        Observation::Waiting { .. } | Observation::Running { .. } => {
            if let Some(t) = terminated_runner(&coordinator)
                && t.exit_code != 0
            {
                // The coordinator has ended the run (its report is final) while the Job still
                // waits for other indexes: the run is over.
                let job_name = job.metadata.name.clone().unwrap_or_default();
                return name_the_lost_in(finished(&job_name, &t, None), lost.as_ref());
            }
            if let Some(lost) = lost {
                let since = lost.at.unwrap_or(now);
                if elapsed(&since, now) > limits.container_config {
                    return Observation::Stuck {
                        reason: "WorkerLost",
                        message: format!(
                            "{} {}, and the coordinator had not ended {} s later; the Job was deleted, so the coordinator stopped and wrote what it had measured; see `kubectl logs {}`",
                            lost.name(),
                            lost.what,
                            limits.container_config.as_secs(),
                            lost.pod.as_deref().map_or_else(
                                || format!(
                                    "job/{}",
                                    job.metadata.name.as_deref().unwrap_or_default()
                                ),
                                |p| format!("pod/{p}")
                            ),
                        ),
                    };
                }
                return base;
            }
            if let Some(stuck) = worker_not_started(job, pods, workers, now, limits) {
                return stuck;
            }
            base
        }
    }
}

/// A failed run's outcome, as `WorkerLost` naming the worker when one was lost (the
/// coordinator's message, e.g. which worker it lost contact with, is kept). A success, or a
/// failure of the run's own (its deadline, an invalid plan, rejected credentials, memory), is
/// left as it is.
/// `observation` with [`name_the_lost`] applied to its outcome, when it is finished.
fn name_the_lost_in(observation: Observation, lost: Option<&Lost>) -> Observation {
    match observation {
        Observation::Finished {
            outcome,
            report,
            exit_code,
            finished_at,
        } => Observation::Finished {
            outcome: name_the_lost(outcome, lost),
            report,
            exit_code,
            finished_at,
        },
        other => other,
    }
}

fn name_the_lost(outcome: Outcome, lost: Option<&Lost>) -> Outcome {
    let Some(lost) = lost else {
        return outcome;
    };
    if outcome.succeeded
        || !matches!(
            outcome.reason,
            "WorkerLost" | "JobFailed" | "Interrupted" | "RunnerError"
        )
    {
        return outcome;
    }
    Outcome {
        succeeded: false,
        reason: "WorkerLost",
        message: format!("{} {}; {}", lost.name(), lost.what, outcome.message),
    }
}

/// The first worker (index 1 and up) whose Pod failed, or whose index the Job records as
/// failed with no Pod left (a deleted Pod).
fn lost_worker(job: &Job, pods: &[Pod], workers: u32) -> Option<Lost> {
    let failed_indexes = job
        .status
        .as_ref()
        .and_then(|s| s.failed_indexes.as_deref())
        .map(parse_indexes)
        .unwrap_or_default();
    (1..workers).find_map(|index| {
        let of_index: Vec<Pod> = pods
            .iter()
            .filter(|p| completion_index(p) == Some(index))
            .cloned()
            .collect();
        match newest(&of_index) {
            Some(pod) => pod_failure(pod).map(|(what, at)| Lost {
                index,
                pod: pod.metadata.name.clone(),
                what,
                at,
            }),
            None => failed_indexes.contains(&index).then(|| Lost {
                index,
                pod: None,
                what: "failed and its Pod is gone (deleted or evicted)".into(),
                at: None,
            }),
        }
    })
}

/// How a worker Pod failed, and when: its runner exited non-zero, or the Pod failed without
/// the runner ending (evicted, deleted while running).
fn pod_failure(pod: &Pod) -> Option<(String, Option<Timestamp>)> {
    let status = pod.status.as_ref()?;
    let terminated = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == RUNNER_CONTAINER)
        .and_then(|c| c.state.as_ref()?.terminated.clone());
    if let Some(t) = terminated {
        if t.exit_code == 0 {
            return None;
        }
        let reason = t.reason.map(|r| format!(" ({r})")).unwrap_or_default();
        return Some((
            format!(
                "failed: its runner exited with code {}{reason}",
                t.exit_code
            ),
            t.finished_at.map(|f| f.0),
        ));
    }
    let deleted = pod.metadata.deletion_timestamp.as_ref().map(|t| t.0);
    if status.phase.as_deref() == Some("Failed") {
        let reason = status.reason.clone().unwrap_or_else(|| "Failed".into());
        let message = status.message.clone().unwrap_or_default();
        return Some((
            format!("failed: {reason} {message}").trim_end().into(),
            deleted,
        ));
    }
    deleted.map(|at| ("was deleted while running".to_string(), Some(at)))
}

/// A worker (index 1 and up) that has not started and will not: its Pod is stuck by the single
/// Pod's rules, or the Job created none for it within the unschedulable bound.
fn worker_not_started(
    job: &Job,
    pods: &[Pod],
    workers: u32,
    now: Timestamp,
    limits: &Limits,
) -> Option<Observation> {
    (1..workers).find_map(|index| {
        let of_index: Vec<Pod> = pods
            .iter()
            .filter(|p| completion_index(p) == Some(index))
            .cloned()
            .collect();
        match newest(&of_index) {
            Some(pod) => match observe_pod(pod, now, limits) {
                Observation::Stuck { reason, message } => Some(Observation::Stuck {
                    reason: "WorkerLost",
                    message: format!(
                        "worker {index} (Pod {}) never started ({reason}): {message}; the Job was deleted",
                        pod.metadata.name.as_deref().unwrap_or_default()
                    ),
                }),
                _ => None,
            },
            None => {
                let created = job.metadata.creation_timestamp.as_ref()?.0;
                (elapsed(&created, now) > limits.unschedulable).then(|| Observation::Stuck {
                    reason: "WorkerLost",
                    message: format!(
                        "the Job created no Pod for worker {index} in {} s (a quota or an admission policy may refuse it); the Job was deleted; see `kubectl describe job/{}`",
                        limits.unschedulable.as_secs(),
                        job.metadata.name.as_deref().unwrap_or_default()
                    ),
                })
            }
        }
    })
}

/// The indexes of a Job's `failedIndexes` (`"1,3-5"`).
fn parse_indexes(text: &str) -> Vec<u32> {
    text.split(',')
        .filter_map(|part| {
            let part = part.trim();
            match part.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?..=b.parse().ok()?).collect::<Vec<u32>>()),
                None => part.parse().ok().map(|i| vec![i]),
            }
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::observe;
    use super::super::tests::{at, limits, time};
    use super::*;
    use coebench_plan::report::{RunOutcome, RunReport};
    use serde_json::json;

    fn job(status: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "b-1", "creationTimestamp": time(0)},
            "spec": {"activeDeadlineSeconds": 600, "completionMode": "Indexed",
                "completions": 3, "parallelism": 3, "template": {}},
            "status": status
        }))
        .unwrap()
    }

    fn pod(index: u32, phase: &str, state: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("b-1-{index}-abcde"), "creationTimestamp": time(0),
                "labels": {COMPLETION_INDEX: index.to_string()}},
            "status": {
                "phase": phase,
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": time(1)}],
                "containerStatuses": [{"name": "runner", "image": "img:1", "imageID": "",
                    "ready": false, "restartCount": 0, "state": state}]
            }
        }))
        .unwrap()
    }

    fn running(index: u32) -> Pod {
        pod(index, "Running", json!({"running": {"startedAt": time(2)}}))
    }

    fn ended(index: u32, code: i32, message: &str, at_s: i64) -> Pod {
        pod(
            index,
            if code == 0 { "Succeeded" } else { "Failed" },
            json!({"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                "message": message, "finishedAt": time(at_s)}}),
        )
    }

    fn report(outcome: RunOutcome, message: &str) -> String {
        RunReport {
            version: 1,
            run_name: "b-1".into(),
            outcome,
            results_path: None,
            rows: vec![],
            rows_omitted: 0,
            message: Some(message.into()),
        }
        .to_bounded_json()
    }

    #[test]
    fn indexes_are_read_from_the_job_and_its_pods() {
        assert_eq!(worker_count(&job(json!({}))), 3);
        let mut single = job(json!({}));
        single.spec.as_mut().unwrap().completion_mode = None;
        assert_eq!(worker_count(&single), 1);
        assert_eq!(completion_index(&running(2)), Some(2));
        assert_eq!(parse_indexes("1,3-5"), [1, 3, 4, 5]);
    }

    #[test]
    fn the_coordinators_report_decides_and_a_workers_message_is_never_the_report() {
        let j = job(json!({"startTime": time(0), "succeeded": 3,
            "conditions": [{"type": "Complete", "status": "True"}]}));
        // A worker's own termination message is not a report: only index 0's counts.
        let worker = ended(1, 0, &report(RunOutcome::WorkerLost, "not mine"), 50);
        let coordinator = ended(0, 0, &report(RunOutcome::Succeeded, "all rows"), 40);
        let Observation::Finished {
            outcome, report, ..
        } = observe(
            &j,
            &[worker, coordinator, ended(2, 0, "", 45)],
            at(60),
            &limits(),
        )
        else {
            panic!("finished")
        };
        assert!(outcome.succeeded);
        assert_eq!(report.unwrap().message.as_deref(), Some("all rows"));
    }

    #[test]
    fn a_failed_worker_fails_the_run_as_worker_lost_naming_it() {
        let j = job(
            json!({"startTime": time(0), "failed": 2, "failedIndexes": "0,2",
            "conditions": [{"type": "Failed", "status": "True", "reason": "FailedIndexes"}]}),
        );
        let coordinator = ended(
            0,
            8,
            &report(RunOutcome::WorkerLost, "lost worker 2 at 00:01:02"),
            50,
        );
        let pods = [coordinator, ended(1, 0, "", 51), ended(2, 137, "", 45)];
        let Observation::Finished {
            outcome,
            report,
            exit_code,
            ..
        } = observe(&j, &pods, at(60), &limits())
        else {
            panic!("finished")
        };
        assert_eq!(outcome.reason, "WorkerLost");
        assert!(
            outcome.message.contains("worker 2 (Pod b-1-2-abcde)")
                && outcome.message.contains("code 137")
                && outcome.message.contains("lost worker 2"),
            "{}",
            outcome.message
        );
        assert_eq!(exit_code, Some(8));
        assert!(report.is_some());
    }

    #[test]
    fn the_coordinator_gets_time_to_notice_then_the_run_is_stuck() {
        let j = job(json!({"startTime": time(0), "active": 2}));
        let pods = [running(0), running(1), ended(2, 1, "", 40)];
        assert!(matches!(
            observe(&j, &pods, at(60), &limits()),
            Observation::Running { .. }
        ));
        let Observation::Stuck { reason, message } = observe(&j, &pods, at(71), &limits()) else {
            panic!("stuck")
        };
        assert_eq!(reason, "WorkerLost");
        assert!(message.contains("worker 2 (Pod b-1-2-abcde)"), "{message}");
        // The coordinator ended in time: its outcome, naming the worker, without the Job.
        let pods = [
            ended(0, 8, &report(RunOutcome::WorkerLost, "lost 2"), 45),
            running(1),
            ended(2, 1, "", 40),
        ];
        let Observation::Finished { outcome, .. } = observe(&j, &pods, at(50), &limits()) else {
            panic!("finished")
        };
        assert_eq!(outcome.reason, "WorkerLost");
        assert!(outcome.message.contains("worker 2"), "{}", outcome.message);
    }

    #[test]
    fn a_worker_that_never_starts_is_lost_within_the_bound() {
        let j = job(json!({"startTime": time(0), "active": 3}));
        let unschedulable: Pod = serde_json::from_value(json!({
            "metadata": {"name": "b-1-1-xyz", "creationTimestamp": time(0),
                "labels": {COMPLETION_INDEX: "1"}},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled",
                "status": "False", "reason": "Unschedulable", "message": "0/3 nodes have enough cpu"}]}
        }))
        .unwrap();
        let pods = [running(0), unschedulable, running(2)];
        assert!(matches!(
            observe(&j, &pods, at(100), &limits()),
            Observation::Running { .. }
        ));
        let Observation::Stuck { reason, message } = observe(&j, &pods, at(121), &limits()) else {
            panic!("stuck")
        };
        assert_eq!(reason, "WorkerLost");
        assert!(
            message.contains("worker 1 (Pod b-1-1-xyz)") && message.contains("enough cpu"),
            "{message}"
        );
        // No Pod at all for an index.
        let pods = [running(0), running(1)];
        let Observation::Stuck { message, .. } = observe(&j, &pods, at(121), &limits()) else {
            panic!("stuck")
        };
        assert!(message.contains("no Pod for worker 2"), "{message}");
        // A bad image on a worker fails at once, as on a single Pod.
        let bad = pod(
            2,
            "Pending",
            json!({"waiting": {"reason": "InvalidImageName", "message": "bad"}}),
        );
        let Observation::Stuck { reason, message } =
            observe(&j, &[running(0), running(1), bad], at(10), &limits())
        else {
            panic!("stuck")
        };
        assert_eq!(reason, "WorkerLost");
        assert!(message.contains("ImagePullFailed"), "{message}");
    }

    #[test]
    fn the_run_fails_for_its_own_reasons_even_with_a_worker_lost() {
        let j = job(json!({"startTime": time(0),
            "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}));
        let pods = [running(0), ended(1, 1, "", 5)];
        let Observation::Finished { outcome, .. } = observe(&j, &pods, at(700), &limits()) else {
            panic!("finished")
        };
        assert_eq!(outcome.reason, "DeadlineExceeded");
    }
}
