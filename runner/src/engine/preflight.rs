//! Checks a run makes before it sends anything, shared by `coebench validate` so that what
//! validates also starts: the output folders can be written, the endpoint's credentials are
//! set (never shown), and the rows' datasets read without a bad line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::client::check_ca_certificate;
use crate::credentials::resolve_endpoint;
use crate::engine::run::{DEFAULT_CONSOLIDATED_RESULTS_DIR, DEFAULT_OUTPUT_FILES_DIR};
use crate::workload::prompt::dataset::DatasetPrompts;
use coebench_plan::input::{InputError, InputErrors};
use coebench_plan::{ApiKind, Plan};

/// The folders a run of `plan` writes into: per-row files, then the consolidated table.
pub fn output_folders(plan: &Plan) -> (PathBuf, PathBuf) {
    let output = &plan.output;
    (
        PathBuf::from(
            output
                .output_files_dir
                .as_deref()
                .unwrap_or(DEFAULT_OUTPUT_FILES_DIR),
        ),
        PathBuf::from(
            output
                .consolidated_results_dir
                .as_deref()
                .unwrap_or(DEFAULT_CONSOLIDATED_RESULTS_DIR),
        ),
    )
}

/// A problem for each output folder of `plan` that cannot be created or written. Creates
/// nothing: it probes the nearest folder that exists with a temporary file.
pub fn check_output_folders(plan: &Plan, source: &str) -> Vec<InputError> {
    let (files, consolidated) = output_folders(plan);
    [
        ("output.outputFilesDir", files),
        ("output.consolidatedResultsDir", consolidated),
    ]
    .into_iter()
    .filter_map(|(field, dir)| {
        folder_problem(&dir).map(|problem| {
            InputError::new(
                source,
                field,
                problem,
                "point it at a folder you can write (it is created if missing)",
            )
        })
    })
    .collect()
}

/// Why `dir` cannot be created and written, if it cannot.
fn folder_problem(dir: &Path) -> Option<String> {
    let mut existing = dir;
    while !existing.as_os_str().is_empty() && std::fs::symlink_metadata(existing).is_err() {
        existing = existing.parent().unwrap_or(Path::new(""));
    }
    let existing = if existing.as_os_str().is_empty() {
        Path::new(".")
    } else {
        existing
    };
    match std::fs::metadata(existing) {
        Ok(meta) if !meta.is_dir() => {
            return Some(format!(
                "cannot create folder {}: {} is a file, not a folder",
                dir.display(),
                existing.display()
            ));
        }
        Ok(_) => {}
        Err(e) => return Some(format!("cannot use folder {}: {e}", dir.display())),
    }
    let probe = existing.join(format!(".coebench-write-check-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) => Some(format!(
            "cannot write folder {} (in {}): {e}",
            dir.display(),
            existing.display()
        )),
    }
}

/// A problem when the endpoint's URL or key is missing from the environment read by `env`, or
/// its CA certificate file (`endpoint.caCertificate`, `SSL_CERT_FILE`) cannot be used. The
/// message names the variable or the file, never a value.
pub fn check_credentials(
    plan: &Plan,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<InputError> {
    if plan.endpoint.api == ApiKind::Simulator {
        return Vec::new();
    }
    match resolve_endpoint(&plan.endpoint, env) {
        Ok(resolved) => match resolved.ca_certificate.as_deref().map(check_ca_certificate) {
            Some(Err(e)) => vec![InputError::new(source, "endpoint", e.to_string(), "")],
            _ => Vec::new(),
        },
        Err(e) => vec![InputError::new(source, "endpoint", e.to_string(), "")],
    }
}

/// Every row's dataset, read once per path; every bad line of every dataset is reported.
pub fn read_datasets(plan: &Plan) -> Result<HashMap<String, Arc<DatasetPrompts>>, InputErrors> {
    let mut datasets = HashMap::new();
    let mut errors = Vec::new();
    let mut paths: Vec<&String> = plan
        .rows
        .iter()
        .filter_map(|r| r.dataset.as_ref().map(|d| &d.path))
        .collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        match DatasetPrompts::read(Path::new(path)) {
            Ok(dataset) => {
                datasets.insert(path.clone(), Arc::new(dataset));
            }
            Err(e) => errors.extend(e.0),
        }
    }
    InputErrors::check(datasets, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coebench_plan::{EndpointSpec, OutputOptions, RunOptions};

    fn plan(files: &Path, consolidated: &Path, api: ApiKind) -> Plan {
        Plan {
            endpoint: EndpointSpec {
                api,
                url: None,
                api_key_env: None,
                simulator: None,
                ca_certificate: None,
            },
            rows: Vec::new(),
            options: RunOptions::default(),
            workers: 1,
            output: OutputOptions {
                run_name: None,
                output_files_dir: Some(files.display().to_string()),
                consolidated_results_dir: Some(consolidated.display().to_string()),
                consolidated_file_names: None,
            },
        }
    }

    #[test]
    fn a_file_in_the_way_of_an_output_folder_is_a_problem_and_nothing_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-folder");
        std::fs::write(&file, "x").unwrap();
        let fine = dir.path().join("new/deeper");
        let problems = check_output_folders(
            &plan(&file.join("out"), &fine, ApiKind::Simulator),
            "p.yaml",
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].location, "output.outputFilesDir");
        assert!(problems[0].problem.contains("is a file"), "{problems:?}");
        assert!(!dir.path().join("new").exists());
    }

    #[test]
    fn missing_credentials_name_the_variable_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(dir.path(), dir.path(), ApiKind::Sncloud);
        let problems = check_credentials(&p, "p.yaml", &|_| None);
        assert!(
            problems[0].problem.contains("SAMBANOVA_API_KEY"),
            "{problems:?}"
        );
        let set = |name: &str| (name == "SAMBANOVA_API_KEY").then(|| "sk-secret-value".to_string());
        assert!(check_credentials(&p, "p.yaml", &set).is_empty());
    }
}
