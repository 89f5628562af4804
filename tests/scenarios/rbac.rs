//! The RBAC of `deploy/rbac.yaml` is enough: a lifecycle touching every code path that calls
//! the API (create, succeed, get stuck, trim, read a CSV, publish Events) is replayed against
//! the rules, request by request. The chart's tests (`tests/chart/rbac.rs`) reuse the
//! lifecycle's permission list and the rule reader.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::*;

/// (apiGroup, resource[/subresource], verb): one permission.
pub(crate) type Permission = (String, String, String);

/// The permission a request (method, path without query, query) needs.
pub(crate) use crate::support::fake_apiserver::permission;

pub(crate) fn allowed() -> BTreeSet<Permission> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(include_str!("../../deploy/rbac.yaml")).unwrap();
    granted(&docs)
}

/// Every permission the ClusterRoles and Roles among `docs` grant.
pub(crate) fn granted(docs: &[Value]) -> BTreeSet<Permission> {
    let mut allowed = BTreeSet::new();
    for doc in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in doc["rules"].as_array().unwrap() {
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        allowed.insert((
                            group.as_str().unwrap().to_string(),
                            resource.as_str().unwrap().to_string(),
                            verb.as_str().unwrap().to_string(),
                        ));
                    }
                }
            }
        }
    }
    allowed
}

/// The permissions of every request of a full lifecycle: create, succeed, get stuck, trim,
/// read a CSV, run on several workers, publish Events.
pub(crate) async fn lifecycle_permissions() -> BTreeSet<Permission> {
    let fake = FakeApiServer::new();
    let (operator, _) = started(&fake, "bench", json!({"successfulRunsHistoryLimit": 0})).await;
    // Run 1 gets stuck pulling its image: its Job is deleted.
    let pod = fake.start_job_pod(NS, "bench-1");
    fake.set_pod_waiting(NS, &pod, "ErrImagePull", "not found");
    run_where(&fake, "bench-1", "run 1 Failed", |r| {
        run_phase(r) == Some(RunPhase::Failed)
    })
    .await;
    // Run 2 succeeds and is trimmed at once (limit 0).
    fake.modify::<CoeBenchmark>(NS, "bench", |b| {
        b["metadata"]["annotations"]["coebench.dev/run-now"] = json!("2")
    });
    eventually(WAIT, "Job 2", || fake.get::<Job>(NS, "bench-2")).await;
    let pod = fake.start_job_pod(NS, "bench-2");
    fake.terminate_pod(NS, &pod, 0, &report("bench-2", RunOutcome::Succeeded, None));
    fake.mark_job(NS, "bench-2", None);
    eventually(WAIT, "run 2 trimmed", || {
        fake.get::<CoeBenchmarkRun>(NS, "bench-2")
            .is_none()
            .then_some(())
    })
    .await;
    // A benchmark reading its rows from a ConfigMap.
    put_config_map(
        &fake,
        "configs",
        "csv",
        "model_name,input_tokens,output_tokens,num_requests,concurrent_requests\nm,1,1,1,1\n",
    );
    put_benchmark(
        &fake,
        "csv",
        json!({"rows": null, "rowsFrom": {"configMapKeyRef": {"name": "configs", "key": "csv"}}}),
    );
    eventually(WAIT, "the CSV benchmark's Job", || {
        fake.get::<Job>(NS, "csv-1")
    })
    .await;
    // A multi-worker benchmark: its run's headless Service.
    put_benchmark(&fake, "multi", json!({"workers": 2}));
    eventually(WAIT, "the multi-worker benchmark's Job", || {
        fake.get::<Job>(NS, "multi-1")
    })
    .await;
    operator.stop().await;
    fake.requests()
        .iter()
        .map(|r| permission(&r.method, &r.path, &r.query))
        .collect()
}

#[tokio::test]
async fn every_call_of_a_full_lifecycle_is_allowed_by_deploy_rbac_yaml() {
    let allowed = allowed();
    let used = lifecycle_permissions().await;
    let denied: Vec<_> = used.difference(&allowed).collect();
    assert!(
        denied.is_empty(),
        "deploy/rbac.yaml does not allow {denied:?}"
    );
    // The operator reads no Secret (the kubelet reports a missing one on the Pod).
    assert!(
        !allowed.iter().any(|(_, resource, _)| resource == "secrets"),
        "deploy/rbac.yaml grants access to Secrets"
    );
    for needed in [
        ("batch", "jobs", "delete"),
        ("coebench.dev", "coebenchmarkruns", "delete"),
        ("coebench.dev", "coebenchmarkruns/status", "patch"),
        ("", "configmaps", "get"),
        ("", "configmaps", "create"),
        ("", "serviceaccounts", "create"),
        ("", "services", "create"),
        ("rbac.authorization.k8s.io", "roles", "create"),
        ("rbac.authorization.k8s.io", "rolebindings", "create"),
        ("events.k8s.io", "events", "create"),
    ] {
        let needed = (
            needed.0.to_string(),
            needed.1.to_string(),
            needed.2.to_string(),
        );
        assert!(
            used.contains(&needed),
            "the lifecycle never used {needed:?}; is the scenario still complete?"
        );
    }
}
