//! The rules of [`observe`]: each kind of waiting, its bound, and each way a Job ends.

use super::*;
use coebench_plan::report::RunOutcome;
use serde_json::json;

/// An instant `seconds` after a fixed origin (shared with the worker rules' tests).
pub(super) fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

/// [`at`], as the API server writes it.
pub(super) fn time(seconds: i64) -> String {
    at(seconds).to_string()
}

/// The bounds every rule test uses.
pub(super) fn limits() -> Limits {
    Limits {
        image_pull: Duration::from_secs(60),
        container_config: Duration::from_secs(30),
        unschedulable: Duration::from_secs(120),
        startup: Duration::from_secs(300),
        deadline_grace: Duration::from_secs(60),
    }
}

fn job(status: serde_json::Value) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": "b-1", "creationTimestamp": time(0)},
        "spec": {"activeDeadlineSeconds": 600, "template": {}},
        "status": status
    }))
    .unwrap()
}

fn pod(status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "b-1-abcde", "creationTimestamp": time(0)},
        "status": status
    }))
    .unwrap()
}

fn container(state: serde_json::Value) -> serde_json::Value {
    json!({
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": time(1)}],
        "containerStatuses": [{"name": "runner", "image": "img:1", "imageID": "", "ready": false,
            "restartCount": 0, "state": state}]
    })
}

#[test]
fn a_job_without_pods_waits_then_is_stuck() {
    let j = job(json!({}));
    assert!(matches!(
        observe(&j, &[], at(10), &limits()),
        Observation::Waiting {
            reason: "JobPending",
            ..
        }
    ));
    assert!(matches!(
        observe(&j, &[], at(121), &limits()),
        Observation::Stuck {
            reason: "PodNotCreated",
            ..
        }
    ));
}

#[test]
fn image_pull_failures_are_bounded_and_bad_names_fail_at_once() {
    let j = job(json!({"startTime": time(0), "active": 1}));
    let pulling = pod(container(
        json!({"waiting": {"reason": "ImagePullBackOff", "message": "back-off"}}),
    ));
    assert!(matches!(
        observe(&j, std::slice::from_ref(&pulling), at(30), &limits()),
        Observation::Waiting {
            reason: "ImagePullBackOff",
            ..
        }
    ));
    match observe(&j, &[pulling], at(62), &limits()) {
        Observation::Stuck { reason, message } => {
            assert_eq!(reason, "ImagePullFailed");
            assert!(
                message.contains("img:1") && message.contains("imagePullSecrets"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let invalid = pod(container(
        json!({"waiting": {"reason": "InvalidImageName"}}),
    ));
    assert!(matches!(
        observe(&j, &[invalid], at(2), &limits()),
        Observation::Stuck {
            reason: "ImagePullFailed",
            ..
        }
    ));
}

#[test]
fn container_config_errors_and_unschedulable_pods_are_bounded() {
    let j = job(json!({"startTime": time(0), "active": 1}));
    let config = pod(container(
        json!({"waiting": {"reason": "CreateContainerConfigError",
        "message": "secret \"sn-key\" not found"}}),
    ));
    // The kubelet names the missing Secret: so does the reason.
    assert!(matches!(
        observe(&j, std::slice::from_ref(&config), at(10), &limits()),
        Observation::Waiting {
            reason: "SecretNotFound",
            ..
        }
    ));
    match observe(&j, &[config], at(40), &limits()) {
        Observation::Stuck { reason, message } => {
            assert_eq!(reason, "SecretNotFound");
            assert!(
                message.contains("kubectl create secret generic sn-key"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let other = pod(container(
        json!({"waiting": {"reason": "CreateContainerConfigError",
        "message": "configmap \"proxy\" not found"}}),
    ));
    match observe(&j, &[other], at(40), &limits()) {
        Observation::Stuck { reason, message } => {
            assert_eq!(reason, "ContainerConfigError");
            assert!(message.contains("proxy"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let unschedulable = pod(
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
        "status": "False", "reason": "Unschedulable", "message": "0/3 nodes: insufficient cpu"}]}),
    );
    assert!(matches!(
        observe(&j, std::slice::from_ref(&unschedulable), at(60), &limits()),
        Observation::Waiting {
            reason: "Unschedulable",
            ..
        }
    ));
    match observe(&j, &[unschedulable], at(121), &limits()) {
        Observation::Stuck { reason, message } => {
            assert_eq!(reason, "Unschedulable");
            assert!(message.contains("insufficient cpu"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_running_container_is_running() {
    let j = job(json!({"startTime": time(0), "active": 1}));
    let running = pod(container(json!({"running": {"startedAt": time(5)}})));
    assert_eq!(
        observe(&j, &[running], at(10), &limits()),
        Observation::Running {
            started: Some(Time(at(5)))
        }
    );
}

#[test]
fn a_job_past_its_deadline_is_stuck_even_if_its_controller_lags() {
    let j = job(json!({"startTime": time(0), "active": 1}));
    let running = pod(container(json!({"running": {"startedAt": time(5)}})));
    assert!(matches!(
        observe(&j, std::slice::from_ref(&running), at(650), &limits()),
        Observation::Running { .. }
    ));
    assert!(matches!(
        observe(&j, &[running], at(661), &limits()),
        Observation::Stuck {
            reason: "DeadlineExceeded",
            ..
        }
    ));
}

fn report(outcome: RunOutcome) -> String {
    coebench_plan::report::RunReport {
        version: 1,
        run_name: "b-1".into(),
        outcome,
        results_path: None,
        rows: vec![],
        rows_omitted: 0,
        message: Some("details".into()),
    }
    .to_bounded_json()
}

#[test]
fn a_complete_job_reads_the_report_from_the_termination_message() {
    let j = job(json!({"completionTime": time(100),
        "conditions": [{"type": "Complete", "status": "True"}]}));
    let done = pod(container(
        json!({"terminated": {"exitCode": 0, "reason": "Completed",
        "message": report(RunOutcome::Succeeded), "finishedAt": time(99)}}),
    ));
    match observe(&j, &[done], at(101), &limits()) {
        Observation::Finished {
            outcome,
            report,
            exit_code,
            finished_at,
        } => {
            assert!(outcome.succeeded);
            assert_eq!(report.unwrap().outcome, RunOutcome::Succeeded);
            assert_eq!(exit_code, Some(0));
            assert_eq!(finished_at, Some(Time(at(99))));
        }
        other => panic!("{other:?}"),
    }
    // The Pod is gone (TTL): still a success, without numbers.
    match observe(&j, &[], at(101), &limits()) {
        Observation::Finished {
            outcome, report, ..
        } => {
            assert!(outcome.succeeded);
            assert!(report.is_none());
            assert!(
                outcome.message.contains("Pod is gone"),
                "{}",
                outcome.message
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_job_says_why() {
    let failed = |reason: &str| {
        job(
            json!({"conditions": [{"type": "Failed", "status": "True", "reason": reason,
            "message": "m", "lastTransitionTime": time(50)}]}),
        )
    };
    let exited = pod(container(
        json!({"terminated": {"exitCode": 4, "reason": "Error",
        "message": report(RunOutcome::AllRequestsFailed)}}),
    ));
    match observe(
        &failed("BackoffLimitExceeded"),
        std::slice::from_ref(&exited),
        at(60),
        &limits(),
    ) {
        Observation::Finished {
            outcome, exit_code, ..
        } => {
            assert_eq!(outcome.reason, "AllRequestsFailed");
            assert!(outcome.message.contains("details"), "{}", outcome.message);
            assert_eq!(exit_code, Some(4));
        }
        other => panic!("{other:?}"),
    }
    match observe(&failed("DeadlineExceeded"), &[exited], at(60), &limits()) {
        Observation::Finished { outcome, .. } => {
            assert_eq!(outcome.reason, "DeadlineExceeded");
            assert!(outcome.message.contains("600 s"), "{}", outcome.message);
        }
        other => panic!("{other:?}"),
    }
    match observe(&failed("PodFailurePolicy"), &[], at(60), &limits()) {
        Observation::Finished { outcome, .. } => assert_eq!(outcome.reason, "JobFailed"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_container_that_cannot_start_fails_after_the_startup_limit_from_its_scheduling() {
    let j = job(json!({"startTime": time(0), "active": 1}));
    // A volume that cannot be mounted: the container stays in ContainerCreating, with nothing
    // in the Pod's status to say why.
    let mounting = pod(container(
        json!({"waiting": {"reason": "ContainerCreating"}}),
    ));
    assert!(matches!(
        observe(&j, std::slice::from_ref(&mounting), at(301), &limits()),
        Observation::Waiting {
            reason: "ContainerCreating",
            ..
        }
    ));
    match observe(&j, std::slice::from_ref(&mounting), at(302), &limits()) {
        Observation::Stuck { reason, message } => {
            assert_eq!(reason, "StartupTimeout");
            assert!(
                message.contains("kubectl describe pod/b-1-abcde"),
                "{message}"
            );
            assert!(message.contains("Multi-Attach"), "{message}");
        }
        other => panic!("not stuck: {other:?}"),
    }
    // Scheduled, but no container status yet at all: the same bound.
    let no_status = pod(json!({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": time(1)}]}));
    assert!(matches!(
        observe(&j, std::slice::from_ref(&no_status), at(302), &limits()),
        Observation::Stuck {
            reason: "StartupTimeout",
            ..
        }
    ));
}

#[test]
fn a_pod_stuck_mounting_its_ca_secret_names_the_secret_and_key() {
    let j = job(json!({"startTime": time(0), "active": 1}));
    let mut mounting = pod(container(
        json!({"waiting": {"reason": "ContainerCreating"}}),
    ));
    mounting.spec = Some(
        serde_json::from_value(json!({"containers": [], "volumes": [{
            "name": "ca-certificate",
            "secret": {"secretName": "vllm-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
        }]}))
        .unwrap(),
    );
    match observe(&j, std::slice::from_ref(&mounting), at(302), &limits()) {
        Observation::Stuck { reason, message } => {
            assert_eq!(reason, "StartupTimeout");
            assert!(
                message.contains("Secret vllm-tls or its key \"ca.crt\""),
                "{message}"
            );
            assert!(message.contains("secretKeyRef"), "{message}");
        }
        other => panic!("not stuck: {other:?}"),
    }
}
