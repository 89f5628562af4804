//! The chart grants exactly what the operator's code calls, no more: the permissions of a full
//! lifecycle against the fake API server (the scenario of `tests/scenarios/rbac.rs`) and of
//! winning and releasing the leader Lease are compared with the rendered roles, cluster-wide,
//! namespaced and with leader election; and `deploy/rbac.yaml` grants the same as the chart.

use std::collections::BTreeSet;

use coebench_operator::lease;
use serde_json::Value;

use super::*;
use crate::scenarios::rbac::{Permission, granted, lifecycle_permissions, permission};
use crate::support::{FakeApiServer, NS, WAIT};

/// The permissions of joining the leader election, leading, and leaving.
async fn lease_permissions() -> BTreeSet<Permission> {
    let fake = FakeApiServer::new();
    let mut leadership = lease::join_with(fake.client(), NS, "coebench-operator", "a", 2, 1)
        .await
        .unwrap();
    tokio::time::timeout(WAIT, leadership.acquired())
        .await
        .expect("the only replica leads");
    leadership.release().await;
    fake.requests()
        .iter()
        .map(|r| permission(&r.method, &r.path, &r.query))
        .collect()
}

/// Calls on code paths the lifecycle does not reach, with where the code makes them, and
/// permissions held only to be granted. Keep this list short: a path that can be reached in a
/// scenario belongs in the scenario.
const UNREACHED_CALLS: [(&str, &str, &str, &str); 7] = [
    (
        "",
        "serviceaccounts",
        "get",
        "src/controller/run.rs (create_owned) reads back a run's ServiceAccount whose creation \
         conflicted, to check its owner",
    ),
    (
        "",
        "services",
        "get",
        "src/controller/run.rs (create_owned) reads back a multi-worker run's Service whose \
         creation conflicted, to check its owner",
    ),
    (
        "rbac.authorization.k8s.io",
        "roles",
        "get",
        "src/controller/run.rs (create_owned) reads back a conflicting results Role",
    ),
    (
        "rbac.authorization.k8s.io",
        "rolebindings",
        "get",
        "src/controller/run.rs (create_owned) reads back a conflicting results RoleBinding",
    ),
    (
        "",
        "configmaps",
        "patch",
        "never called: held so the operator may create each run's results Role, which grants \
         it on the run's results ConfigMaps (RBAC forbids granting what one does not hold; \
         src/resources/results.rs)",
    ),
    (
        "coebench.dev",
        "coebenchmarkruns",
        "get",
        "src/controller/benchmark.rs reads back a run whose creation conflicted",
    ),
    (
        "coebench.dev",
        "coebenchmarks",
        "get",
        "src/controller/benchmark/scheduling.rs reads a benchmark afresh before recording a \
         skipped slot (tests/scenarios/schedule.rs checks that path against deploy/rbac.yaml)",
    ),
];

/// Everything the operator's code calls, outside leader election.
async fn operator_permissions() -> BTreeSet<Permission> {
    let mut used = lifecycle_permissions().await;
    used.extend(
        UNREACHED_CALLS
            .iter()
            .map(|(g, r, v, _)| (g.to_string(), r.to_string(), v.to_string())),
    );
    used
}

fn show(set: &BTreeSet<Permission>) -> String {
    set.iter()
        .map(|(g, r, v)| format!("{g}/{r}:{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Granted must equal used; the message lists what is missing and what is extra.
fn assert_exact(what: &str, granted: &BTreeSet<Permission>, used: &BTreeSet<Permission>) {
    let missing: BTreeSet<_> = used.difference(granted).cloned().collect();
    let extra: BTreeSet<_> = granted.difference(used).cloned().collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: the code needs but is not granted [{}]; granted but never used [{}]",
        show(&missing),
        show(&extra)
    );
}

/// The one role of `kind` named `name` and its binding to the operator's ServiceAccount.
fn role_and_binding<'a>(case: &'a Case, kind: &str, name: &str, namespace: &str) -> &'a Value {
    let role = case.get(kind, name);
    let binding = case.get(&format!("{kind}Binding"), name);
    assert_eq!(binding["roleRef"]["kind"], kind);
    assert_eq!(binding["roleRef"]["name"], name);
    let subject = &binding["subjects"][0];
    assert_eq!(subject["kind"], "ServiceAccount");
    assert_eq!(subject["name"], "coebench");
    assert_eq!(subject["namespace"], namespace);
    if kind == "Role" {
        assert_eq!(
            role["metadata"]["namespace"],
            binding["metadata"]["namespace"]
        );
    }
    role
}

#[tokio::test]
async fn the_charts_rbac_grants_exactly_what_the_code_calls() {
    let used = operator_permissions().await;
    let lease_used = lease_permissions().await;
    let rendered = render();
    let (release, namespace) = (rendered.release.as_str(), rendered.namespace.as_str());

    // Cluster-wide: one ClusterRole, no leader election with one replica.
    let case = &rendered.cases["default"];
    let role = role_and_binding(case, "ClusterRole", release, namespace);
    assert_exact(
        "ClusterRole (default values)",
        &granted(std::slice::from_ref(role)),
        &used,
    );
    assert_eq!(case.of_kind("Role").count(), 0, "{:?}", case.names());

    // Namespaced: the same rules in a Role of the watched namespace, nothing cluster-wide.
    let case = &rendered.cases["namespaced"];
    let role = role_and_binding(case, "Role", release, namespace);
    assert_eq!(role["metadata"]["namespace"], "team-a");
    assert_exact(
        "Role (ci/namespaced-values.yaml)",
        &granted(std::slice::from_ref(role)),
        &used,
    );
    for kind in ["ClusterRole", "ClusterRoleBinding"] {
        assert_eq!(
            case.of_kind(kind).count(),
            0,
            "a namespaced install has no {kind}"
        );
    }

    // Leader election: Lease rights in the release namespace only.
    let case = &rendered.cases["ha"];
    let lease_role = role_and_binding(
        case,
        "Role",
        &format!("{release}-leader-election"),
        namespace,
    );
    assert_eq!(lease_role["metadata"]["namespace"], namespace);
    assert_exact(
        "leader-election Role (ci/ha-values.yaml)",
        &granted(std::slice::from_ref(lease_role)),
        &lease_used,
    );
}

#[test]
fn deploy_rbac_yaml_grants_what_the_chart_grants() {
    let docs: Vec<Value> = serde_saphyr::from_multiple(&read("deploy/rbac.yaml")).unwrap();
    let of_kind =
        |kind: &str| -> Vec<Value> { docs.iter().filter(|d| d["kind"] == kind).cloned().collect() };
    let rendered = render();
    let chart = &rendered.cases["ha"];
    let chart_cluster = granted(&chart.of_kind("ClusterRole").cloned().collect::<Vec<_>>());
    let chart_lease = granted(&chart.of_kind("Role").cloned().collect::<Vec<_>>());
    assert_exact(
        "deploy/rbac.yaml ClusterRole vs the chart's",
        &granted(&of_kind("ClusterRole")),
        &chart_cluster,
    );
    assert_exact(
        "deploy/rbac.yaml leader-election Role vs the chart's",
        &granted(&of_kind("Role")),
        &chart_lease,
    );
}
