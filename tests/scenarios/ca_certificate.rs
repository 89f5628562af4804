//! An endpoint whose certificate a private CA signed (`endpoint.caCertificate`): the key is
//! mounted into every runner Pod and named by the plan; a missing ConfigMap or key stops the
//! run before its Job, as a missing claim does; a missing Secret, which the operator cannot
//! read, is named when the Pod never starts.

use coebench_operator::resources::ca_certificate::{
    CA_CERTIFICATE_DIR, CA_CERTIFICATE_FILE, CA_CERTIFICATE_PATH,
};
use k8s_openapi::api::core::v1::{PodSpec, Volume};
use serde_json::Value;

use super::*;

/// A certificate-shaped value: what the operator must never copy into a status or an Event.
const PEM: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUc29tZQ==\n-----END CERTIFICATE-----\n";

/// An OpenAI-compatible HTTPS endpoint (key in `sn-key`) whose CA is named by `ca`.
fn private_endpoint(ca: Value) -> Value {
    json!({"endpoint": {
        "api": "openai", "url": "https://vllm.internal/v1", "caCertificate": ca
    }})
}

fn from_config_map(name: &str, key: &str) -> Value {
    private_endpoint(json!({"configMapKeyRef": {"name": name, "key": key}}))
}

fn ca_volume(pod: &PodSpec) -> &Volume {
    pod.volumes
        .iter()
        .flatten()
        .find(|v| v.name == "ca-certificate")
        .expect("the CA certificate's volume")
}

/// The plan the run's ConfigMap gives the runner.
fn plan_of(fake: &FakeApiServer, run: &str) -> Plan {
    let cm = fake
        .get::<ConfigMap>(NS, &format!("{run}-plan"))
        .expect("the plan ConfigMap");
    serde_json::from_str(&cm.data.unwrap()["plan.json"]).unwrap()
}

/// The reasons of the Events published so far.
fn event_reasons(fake: &FakeApiServer) -> Vec<String> {
    fake.list::<Event>(NS)
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

/// No status or Event of the namespace holds the certificate.
fn assert_no_certificate_copied(fake: &FakeApiServer) {
    for run in fake.list::<CoeBenchmarkRun>(NS) {
        let status = serde_json::to_string(&run.status).unwrap();
        assert!(!status.contains("BEGIN CERTIFICATE"), "{status}");
    }
    for event in fake.list::<Event>(NS) {
        let note = event.note.unwrap_or_default();
        assert!(!note.contains("BEGIN CERTIFICATE"), "{note}");
    }
}

#[tokio::test]
async fn a_ca_in_a_config_map_is_mounted_read_only_where_the_plan_names_it() {
    let fake = FakeApiServer::new();
    put_config_map(&fake, "corp-ca", "root.pem", PEM);
    let (operator, job) = started(&fake, "bench", from_config_map("corp-ca", "root.pem")).await;

    let run = fake.get::<CoeBenchmarkRun>(NS, "bench-1").expect("the run");
    let ca = run.spec.endpoint.ca_certificate.as_ref().expect("copied");
    assert_eq!(ca.config_map_key_ref.as_ref().unwrap().key, "root.pem");
    assert_eq!(
        plan_of(&fake, "bench-1").endpoint.ca_certificate.as_deref(),
        Some(CA_CERTIFICATE_PATH)
    );

    // The Pod the Job controller makes from the template mounts only that key, as the file.
    let pod_name = fake.start_job_pod(NS, &job.name_any());
    let pod = fake.get::<Pod>(NS, &pod_name).unwrap().spec.unwrap();
    let source = ca_volume(&pod).config_map.as_ref().expect("a ConfigMap");
    assert_eq!(source.name, "corp-ca");
    let items = source.items.as_ref().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("root.pem", CA_CERTIFICATE_FILE)
    );
    let mount = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "ca-certificate")
        .expect("the CA certificate's mount");
    assert_eq!(mount.read_only, Some(true));
    assert_eq!(
        format!("{}/{}", mount.mount_path, items[0].path),
        CA_CERTIFICATE_PATH
    );
    assert_eq!(mount.mount_path, CA_CERTIFICATE_DIR);
    fake.set_pod_running(NS, &pod_name);
    run_where(&fake, "bench-1", "phase Running", |r| {
        run_phase(r) == Some(RunPhase::Running)
    })
    .await;
    assert_no_certificate_copied(&fake);
    operator.stop().await;
}

#[tokio::test]
async fn every_worker_pod_of_an_indexed_job_mounts_the_ca_secret() {
    let fake = FakeApiServer::new();
    let mut extra =
        private_endpoint(json!({"secretKeyRef": {"name": "vllm-tls", "key": "ca.crt"}}));
    extra["workers"] = json!(2);
    let (operator, job) = started(&fake, "bench", extra).await;
    assert_eq!(
        job.spec.as_ref().unwrap().completion_mode.as_deref(),
        Some("Indexed")
    );
    assert_eq!(
        plan_of(&fake, "bench-1").endpoint.ca_certificate.as_deref(),
        Some(CA_CERTIFICATE_PATH)
    );
    for pod_name in fake.start_indexed_job_pods(NS, &job.name_any()) {
        let pod = fake.get::<Pod>(NS, &pod_name).unwrap().spec.unwrap();
        let secret = ca_volume(&pod).secret.as_ref().expect("a Secret");
        assert_eq!(secret.secret_name.as_deref(), Some("vllm-tls"));
        assert_eq!(secret.optional, Some(false));
        assert_eq!(secret.items.as_ref().unwrap()[0].key, "ca.crt");
    }
    operator.stop().await;
}

#[tokio::test]
async fn a_missing_ca_config_map_waits_then_fails_the_run_naming_it_without_a_job() {
    let fake = FakeApiServer::new();
    put_secret(&fake, "sn-key", "apiKey");
    put_claim(&fake, "results");
    let operator = Operator::start(&fake, fast_settings()).await;
    put_benchmark(&fake, "bench", from_config_map("corp-ca", "ca.crt"));
    let run = run_where(&fake, "bench-1", "waiting for the ConfigMap", |r| {
        has_condition(r, "JobCreated", "False", "ConfigMapNotFound")
    })
    .await;
    let (_, _, message) = run_condition(&run, "JobCreated").unwrap();
    assert!(
        message.contains(&format!("ConfigMap {NS}/corp-ca"))
            && message.contains("endpoint.caCertificate.configMapKeyRef")
            && message.contains("kubectl create configmap corp-ca"),
        "{message}"
    );
    let run = run_where(&fake, "bench-1", "phase Failed", |r| {
        run_phase(r) == Some(RunPhase::Failed)
    })
    .await;
    let (_, reason, message) = run_condition(&run, "Failed").unwrap();
    assert_eq!(reason, "ConfigMapNotFound");
    assert!(message.contains("corp-ca"), "{message}");
    assert!(
        fake.get::<Job>(NS, "bench-1").is_none(),
        "a Job was created"
    );
    assert!(
        event_reasons(&fake).contains(&"ConfigMapNotFound".to_string()),
        "{:?}",
        event_reasons(&fake)
    );
    operator.stop().await;
}

#[tokio::test]
async fn a_missing_ca_key_is_named_and_adding_it_in_time_creates_the_job() {
    let fake = FakeApiServer::new();
    put_secret(&fake, "sn-key", "apiKey");
    put_claim(&fake, "results");
    put_config_map(&fake, "corp-ca", "bundle.pem", PEM);
    let mut settings = fast_settings();
    settings.dependency_timeout = std::time::Duration::from_secs(30);
    let operator = Operator::start(&fake, settings).await;
    put_benchmark(&fake, "bench", from_config_map("corp-ca", "ca.crt"));
    let run = run_where(&fake, "bench-1", "waiting for the key", |r| {
        has_condition(r, "JobCreated", "False", "ConfigMapKeyNotFound")
            && has_condition(r, "Running", "False", "WaitingForDependencies")
    })
    .await;
    let (_, _, message) = run_condition(&run, "JobCreated").unwrap();
    assert!(
        message.contains("no key \"ca.crt\"") && message.contains("it has keys bundle.pem"),
        "{message}"
    );
    assert_eq!(run_phase(&run), Some(RunPhase::Pending));
    assert!(
        fake.get::<Job>(NS, "bench-1").is_none(),
        "a Job was created"
    );
    assert!(
        event_reasons(&fake).contains(&"ConfigMapKeyNotFound".to_string()),
        "{:?}",
        event_reasons(&fake)
    );
    assert_no_certificate_copied(&fake);

    put_config_map(&fake, "corp-ca", "ca.crt", PEM);
    eventually(WAIT, "the Job once the key exists", || {
        fake.get::<Job>(NS, "bench-1")
    })
    .await;
    run_where(&fake, "bench-1", "JobCreated=True", |r| {
        has_condition(r, "JobCreated", "True", "JobCreated")
    })
    .await;
    operator.stop().await;
}

#[tokio::test]
async fn a_ca_secret_the_pod_cannot_mount_fails_the_run_naming_it_without_reading_it() {
    let fake = FakeApiServer::new();
    let extra = private_endpoint(json!({"secretKeyRef": {"name": "vllm-tls", "key": "ca.crt"}}));
    let (operator, job) = started(&fake, "bench", extra).await;
    // The kubelet cannot mount the Secret: the container stays in ContainerCreating, and only
    // the Pod's Events (FailedMount) say why.
    let pod = fake.start_job_pod(NS, &job.name_any());
    fake.set_pod_waiting(NS, &pod, "ContainerCreating", "");
    let run = run_where(&fake, "bench-1", "phase Failed", |r| {
        run_phase(r) == Some(RunPhase::Failed)
    })
    .await;
    let (_, reason, message) = run_condition(&run, "Failed").unwrap();
    assert_eq!(reason, "StartupTimeout");
    assert!(
        message.contains("Secret vllm-tls or its key \"ca.crt\"")
            && message.contains("endpoint.caCertificate.secretKeyRef"),
        "{message}"
    );
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
