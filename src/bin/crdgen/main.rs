//! `crdgen`: writes every file generated from the resource types.
//!
//! - `crds/coebenchmarks.yaml`, `crds/coebenchmarkruns.yaml`: the CRDs;
//! - `charts/coebench/templates/crds/*.yaml`: the same CRDs as Helm templates (behind
//!   `installCRDs`, annotated `helm.sh/resource-policy: keep`);
//! - `docs/crd-reference.md`: the field reference, from the CRDs' OpenAPI schemas.
//!
//! `cargo run --bin crdgen` writes them into the repository; `cargo run --bin crdgen -- ROOT`
//! writes them under ROOT instead; `--check` writes nothing and exits 1, naming each stale
//! file, when a committed file differs (a test runs it). Run it after changing a resource type.

mod chart;
mod reference;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use coebench_operator::crd::{CoeBenchmark, CoeBenchmarkRun, crd_files};
use kube::CustomResourceExt;

/// Each generated file: its path relative to the repository root, and its content.
fn generated() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for (file, yaml) in crd_files() {
        files.push((format!("crds/{file}"), yaml.clone()));
        files.push((
            format!("{}/{file}", chart::TEMPLATES_DIR),
            chart::crd_template(&yaml),
        ));
    }
    files.push((
        reference::PATH.to_string(),
        reference::markdown(&[CoeBenchmark::crd(), CoeBenchmarkRun::crd()]),
    ));
    files
}

fn main() -> ExitCode {
    let mut check = false;
    let mut root = None;
    for arg in std::env::args_os().skip(1) {
        if arg == "--check" {
            check = true;
        } else if arg.to_string_lossy().starts_with('-') {
            eprintln!("crdgen: unknown flag {arg:?}; usage: crdgen [--check] [ROOT]");
            return ExitCode::from(2);
        } else {
            root = Some(PathBuf::from(arg));
        }
    }
    let root = root.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let files = generated();
    if check {
        return check_files(&root, &files);
    }
    for (relative, content) in &files {
        if let Err(e) = write(&root.join(relative), content) {
            eprintln!("crdgen: {e}");
            return ExitCode::FAILURE;
        }
        println!("wrote {relative}");
    }
    ExitCode::SUCCESS
}

fn write(path: &Path, content: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, content).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn check_files(root: &Path, files: &[(String, String)]) -> ExitCode {
    let stale: Vec<&str> = files
        .iter()
        .filter(|(relative, content)| {
            std::fs::read_to_string(root.join(relative)).ok().as_ref() != Some(content)
        })
        .map(|(relative, _)| relative.as_str())
        .collect();
    if stale.is_empty() {
        println!("{} generated files are current", files.len());
        return ExitCode::SUCCESS;
    }
    for relative in stale {
        eprintln!("{relative} is stale: run `cargo run --bin crdgen` and commit the result");
    }
    ExitCode::FAILURE
}
