//! The results channel of a run: its results ConfigMaps (created empty; the runner adds one key
//! per finished row, see `coebench_plan::report`), and the identity the runner writes them
//! with: a ServiceAccount of its own (unless the run or the operator names one), a Role that
//! may `get` and `patch` exactly those ConfigMaps, and the RoleBinding between them. All are
//! owned by the run, so they are garbage-collected with it.

use std::collections::BTreeMap;

use coebench_plan::report::{results_config_map_count, results_config_map_name};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::ResourceExt;
use kube::api::ObjectMeta;

use crate::crd::CoeBenchmarkRun;
use crate::error::Result;
use crate::resources::job::{JobDefaults, creates_service_account, pod_service_account};
use crate::resources::{namespace_and_owner, results_role_name, run_labels};

/// Label of a run's results ConfigMaps (value: the run's name), so they can be told from its
/// plan ConfigMap.
pub const LABEL_RESULTS: &str = "coebench.dev/results-of";

/// The names of `run`'s results ConfigMaps, in shard order.
pub fn results_config_map_names(run: &CoeBenchmarkRun) -> Vec<String> {
    let name = run.name_any();
    (0..results_config_map_count(run.spec.rows.len()))
        .map(|shard| results_config_map_name(&name, shard))
        .collect()
}

/// Everything of the results channel the operator creates for `run`, before its Job.
pub struct ResultsChannel {
    /// The empty results ConfigMaps.
    pub config_maps: Vec<ConfigMap>,
    /// The run's own ServiceAccount, when no other one is named.
    pub service_account: Option<ServiceAccount>,
    /// `get` and `patch` on the results ConfigMaps, by name.
    pub role: Role,
    /// The Role, bound to the Pod's ServiceAccount.
    pub role_binding: RoleBinding,
}

/// The results channel of `run` (see the module docs).
pub fn build_results_channel(
    run: &CoeBenchmarkRun,
    defaults: &JobDefaults,
) -> Result<ResultsChannel> {
    let name = run.name_any();
    let (namespace, owner) = namespace_and_owner(run)?;
    let meta = |object_name: String, extra: Option<(&str, &str)>| {
        let mut labels = run_labels(run);
        if let Some((key, value)) = extra {
            labels.insert(key.to_string(), value.to_string());
        }
        ObjectMeta {
            name: Some(object_name),
            namespace: Some(namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        }
    };
    let names = results_config_map_names(run);
    let config_maps = names
        .iter()
        .map(|cm| ConfigMap {
            metadata: meta(cm.clone(), Some((LABEL_RESULTS, &name))),
            data: Some(BTreeMap::new()),
            ..ConfigMap::default()
        })
        .collect();
    let account = pod_service_account(run, defaults);
    let service_account = creates_service_account(run, defaults).then(|| ServiceAccount {
        metadata: meta(account.clone(), None),
        // The Pod mounts the token itself; no other Pod should get it by default.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    });
    let role_name = results_role_name(&name);
    let role = Role {
        metadata: meta(role_name.clone(), None),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            resource_names: Some(names),
            verbs: vec!["get".into(), "patch".into()],
            ..PolicyRule::default()
        }]),
    };
    let role_binding = RoleBinding {
        metadata: meta(role_name.clone(), None),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: role_name,
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: account,
            namespace: Some(namespace.clone()),
            api_group: None,
        }]),
    };
    Ok(ResultsChannel {
        config_maps,
        service_account,
        role,
        role_binding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::job::tests::sample_run;

    #[test]
    fn the_runner_may_get_and_patch_only_its_own_results_config_maps() {
        let run = sample_run();
        let channel = build_results_channel(&run, &JobDefaults::default()).unwrap();
        let names: Vec<_> = channel.config_maps.iter().map(|c| c.name_any()).collect();
        assert_eq!(names, ["bench-1-results-0"]);
        assert!(channel.config_maps[0].data.as_ref().unwrap().is_empty());
        let rules = channel.role.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].api_groups.as_deref(), Some(&[String::new()][..]));
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["configmaps".into()][..])
        );
        assert_eq!(rules[0].resource_names.as_deref(), Some(&names[..]));
        assert_eq!(rules[0].verbs, ["get", "patch"]);
        let account = channel.service_account.unwrap();
        assert_eq!(account.name_any(), "bench-1-runner");
        let subjects = channel.role_binding.subjects.unwrap();
        assert_eq!(subjects[0].name, "bench-1-runner");
        assert_eq!(subjects[0].namespace.as_deref(), Some("team-a"));
        assert_eq!(channel.role_binding.role_ref.name, "bench-1-results");
        for owners in [
            &channel.config_maps[0].metadata.owner_references,
            &account.metadata.owner_references,
            &channel.role.metadata.owner_references,
            &channel.role_binding.metadata.owner_references,
        ] {
            assert_eq!(owners.as_ref().unwrap()[0].kind, "CoeBenchmarkRun");
        }
    }

    #[test]
    fn a_named_service_account_is_bound_and_not_created() {
        let mut run = sample_run();
        run.spec.runner.service_account_name = Some("mine".into());
        let channel = build_results_channel(&run, &JobDefaults::default()).unwrap();
        assert!(channel.service_account.is_none());
        assert_eq!(channel.role_binding.subjects.unwrap()[0].name, "mine");
        let mut run = sample_run();
        let defaults = JobDefaults {
            runner_service_account: Some("coebench-runner".into()),
            ..JobDefaults::default()
        };
        run.spec.runner.service_account_name = None;
        assert_eq!(pod_service_account(&run, &defaults), "coebench-runner");
        assert!(!creates_service_account(&run, &defaults));
    }

    #[test]
    fn large_plans_get_one_config_map_per_thousand_rows() {
        let mut run = sample_run();
        let row = run.spec.rows[0].clone();
        run.spec.rows = vec![row; 2500];
        assert_eq!(
            results_config_map_names(&run),
            [
                "bench-1-results-0",
                "bench-1-results-1",
                "bench-1-results-2"
            ]
        );
    }
}
