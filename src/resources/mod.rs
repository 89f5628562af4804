//! Pure builders of what a run creates: its plan ConfigMap, its results channel, its runner
//! Job (with the endpoint's CA certificate mounted) and, for a multi-worker run, its headless Service, plus the names, labels and paths they share. Nothing here talks to the API server, so
//! every object can be checked field by field in unit tests.

pub mod ca_certificate;
pub mod configmap;
pub mod job;
pub mod results;
pub mod workers;

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use crate::crd::{
    CoeBenchmarkRun, LABEL_BENCHMARK, LABEL_MANAGED_BY, LABEL_RUN, MANAGED_BY, ResultsSpec,
};

/// Name of the `n`-th run of `benchmark` (n = 1, 2, ...): `<benchmark>-<n>`.
pub fn run_name(benchmark: &str, n: u64) -> String {
    format!("{benchmark}-{n}")
}

/// Name of the run of `benchmark` for the schedule slot at `slot`:
/// `<benchmark>-<slot in unix minutes>`. Deterministic, so a restarted operator or a second
/// replica creating it again gets AlreadyExists instead of a second run.
pub fn scheduled_run_name(benchmark: &str, slot: Timestamp) -> String {
    format!("{benchmark}-{}", slot.as_second().div_euclid(60))
}

/// Name of a run's plan ConfigMap: `<run>-plan`.
pub fn plan_config_map_name(run: &str) -> String {
    format!("{run}-plan")
}

/// Name of the ServiceAccount the operator creates for a run's Pod: `<run>-runner`.
pub fn runner_service_account_name(run: &str) -> String {
    format!("{run}-runner")
}

/// Name of a run's results Role and RoleBinding: `<run>-results`.
pub fn results_role_name(run: &str) -> String {
    format!("{run}-results")
}

/// Name of a run's Job: the run's own name.
pub fn job_name(run: &str) -> String {
    run.to_string()
}

/// Folder segment of standalone runs (a run without a benchmark); not a valid object name, so it
/// cannot clash with a benchmark's.
pub const STANDALONE_FOLDER: &str = "_standalone";

/// Where the results volume is mounted in the runner container.
pub const RESULTS_MOUNT: &str = "/results";

/// The run's folder relative to the volume: `<subPath>/<namespace>/<benchmark>/<run>`.
pub fn results_relative_dir(
    results: Option<&ResultsSpec>,
    namespace: &str,
    benchmark: Option<&str>,
    run: &str,
) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if let Some(sub) = results.and_then(|r| r.sub_path.as_deref()) {
        let sub = sub.trim_matches('/');
        if !sub.is_empty() {
            parts.push(sub);
        }
    }
    parts.push(namespace);
    parts.push(benchmark.unwrap_or(STANDALONE_FOLDER));
    parts.push(run);
    parts.join("/")
}

/// The namespace of `run` and the owner reference that makes an object the run's (controller),
/// or which of the two fields the run lacks.
pub fn namespace_and_owner(
    run: &CoeBenchmarkRun,
) -> crate::error::Result<(
    String,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
)> {
    let name = run.name_any();
    let namespace = run
        .namespace()
        .ok_or_else(|| crate::error::Error::MissingField {
            object: format!("CoeBenchmarkRun {name}"),
            field: "metadata.namespace",
        })?;
    let owner = run
        .controller_owner_ref(&())
        .ok_or_else(|| crate::error::Error::MissingField {
            object: format!("CoeBenchmarkRun {namespace}/{name}"),
            field: "metadata.uid",
        })?;
    Ok((namespace, owner))
}

/// Labels of everything a run creates (Job, Pod, ConfigMap).
pub fn run_labels(run: &CoeBenchmarkRun) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (
            "app.kubernetes.io/name".to_string(),
            "coebench-runner".to_string(),
        ),
        (LABEL_RUN.to_string(), run.name_any()),
    ]);
    if let Some(benchmark) = &run.spec.benchmark {
        labels.insert(LABEL_BENCHMARK.to_string(), benchmark.clone());
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PersistentVolumeClaimRef;

    #[test]
    fn names_are_deterministic() {
        assert_eq!(run_name("llama", 3), "llama-3");
        assert_eq!(plan_config_map_name("llama-3"), "llama-3-plan");
        assert_eq!(job_name("llama-3"), "llama-3");
        let slot: Timestamp = "2026-03-01T02:00:00Z".parse().unwrap();
        assert_eq!(scheduled_run_name("llama", slot), "llama-29538840");
    }

    #[test]
    fn results_dirs_nest_namespace_benchmark_and_run() {
        let results = ResultsSpec {
            persistent_volume_claim: PersistentVolumeClaimRef {
                claim_name: "c".into(),
            },
            sub_path: Some("/bench/".into()),
        };
        assert_eq!(
            results_relative_dir(Some(&results), "ns", Some("b"), "b-1"),
            "bench/ns/b/b-1"
        );
        assert_eq!(
            results_relative_dir(None, "ns", None, "r"),
            "ns/_standalone/r"
        );
    }
}
