//! The plan ConfigMap of a run: the runner's `Plan` as `plan.json`, owned by the run.

use std::collections::BTreeMap;

use coebench_plan::{EndpointSpec, OutputOptions, Plan};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::ObjectMeta;

use crate::crd::CoeBenchmarkRun;
use crate::error::{Error, Result};
use crate::resources::ca_certificate::plan_ca_certificate;
use crate::resources::{
    RESULTS_MOUNT, namespace_and_owner, plan_config_map_name, results_relative_dir, run_labels,
};

/// The key of the plan in the ConfigMap, and the file name in the runner container.
pub const PLAN_KEY: &str = "plan.json";
/// Where the ConfigMap is mounted in the runner container.
pub const PLAN_DIR: &str = "/etc/coebench";
/// The environment variable the runner reads the API key from.
pub const API_KEY_ENV: &str = "COEBENCH_API_KEY";

/// Folders the runner writes to, as seen inside its container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDirs {
    /// `--output-files-dir`: the benchmark's folder; the runner adds `<run>/` for per-row files.
    pub output_files_dir: String,
    /// `--consolidated-results-dir`: the run's own folder.
    pub consolidated_results_dir: String,
}

/// The folders of `run` under [`RESULTS_MOUNT`].
pub fn run_dirs(run: &CoeBenchmarkRun, namespace: &str) -> RunDirs {
    let name = run.name_any();
    let rel = results_relative_dir(
        run.spec.results.as_ref(),
        namespace,
        run.spec.benchmark.as_deref(),
        &name,
    );
    let run_dir = format!("{RESULTS_MOUNT}/{rel}");
    let parent = run_dir
        .rsplit_once('/')
        .map(|(parent, _)| parent.to_string())
        .unwrap_or_else(|| RESULTS_MOUNT.to_string());
    RunDirs {
        output_files_dir: parent,
        consolidated_results_dir: run_dir,
    }
}

/// The runner's plan for `run`: its endpoint (key from [`API_KEY_ENV`], CA certificate from its
/// mount), rows, options and output folders.
pub fn build_plan(run: &CoeBenchmarkRun, namespace: &str) -> Plan {
    let dirs = run_dirs(run, namespace);
    let endpoint = &run.spec.endpoint;
    Plan {
        endpoint: EndpointSpec {
            api: endpoint.api,
            url: endpoint.url.clone(),
            api_key_env: endpoint
                .api_key_secret_ref
                .as_ref()
                .map(|_| API_KEY_ENV.to_string()),
            simulator: None,
            ca_certificate: plan_ca_certificate(run),
        },
        rows: run.spec.rows.clone(),
        options: run.spec.options.clone(),
        workers: run.spec.worker_count(),
        output: OutputOptions {
            run_name: Some(run.name_any()),
            output_files_dir: Some(dirs.output_files_dir),
            consolidated_results_dir: Some(dirs.consolidated_results_dir),
            consolidated_file_names: None,
        },
    }
}

/// The plan ConfigMap of `run`, owned by it.
pub fn build_config_map(run: &CoeBenchmarkRun) -> Result<ConfigMap> {
    let (namespace, owner) = namespace_and_owner(run)?;
    let plan = build_plan(run, &namespace);
    let json = serde_json::to_string_pretty(&plan).map_err(|source| Error::Serialize {
        what: format!("the plan of run {namespace}/{}", run.name_any()),
        source,
    })?;
    Ok(ConfigMap {
        metadata: ObjectMeta {
            name: Some(plan_config_map_name(&run.name_any())),
            namespace: Some(namespace),
            labels: Some(run_labels(run)),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(PLAN_KEY.to_string(), json)])),
        immutable: Some(true),
        ..ConfigMap::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::job::tests::sample_run;
    use coebench_plan::ApiKind;

    #[test]
    fn the_plan_reads_the_key_from_the_env_and_writes_under_the_run_folder() {
        let run = sample_run();
        let cm = build_config_map(&run).unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("bench-1-plan"));
        assert_eq!(
            cm.metadata.owner_references.as_ref().unwrap()[0].kind,
            "CoeBenchmarkRun"
        );
        let plan: Plan = serde_json::from_str(&cm.data.unwrap()[PLAN_KEY]).unwrap();
        assert_eq!(plan.endpoint.api, ApiKind::Sncloud);
        assert_eq!(plan.endpoint.api_key_env.as_deref(), Some(API_KEY_ENV));
        assert_eq!(plan.rows, run.spec.rows);
        assert_eq!(plan.output.run_name.as_deref(), Some("bench-1"));
        assert_eq!(
            plan.output.output_files_dir.as_deref(),
            Some("/results/perf/team-a/bench")
        );
        assert_eq!(
            plan.output.consolidated_results_dir.as_deref(),
            Some("/results/perf/team-a/bench/bench-1")
        );
    }

    #[test]
    fn a_run_without_uid_cannot_own_its_config_map() {
        let mut run = sample_run();
        run.metadata.uid = None;
        let err = build_config_map(&run).unwrap_err();
        assert!(err.to_string().contains("metadata.uid"), "{err}");
    }
}
