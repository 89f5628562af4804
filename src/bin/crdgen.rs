//! `crdgen`: writes the operator's CRDs, generated from the Rust types, as YAML.
//!
//! `cargo run --bin crdgen` writes `crds/coebenchmarks.yaml` and `crds/coebenchmarkruns.yaml`;
//! `cargo run --bin crdgen -- DIR` writes them to DIR instead. A test fails when the committed
//! files differ from the types, so run this after changing a resource type.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds"));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("crdgen: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for (file, yaml) in coebench_operator::crd::crd_files() {
        let path = dir.join(file);
        if let Err(e) = std::fs::write(&path, yaml) {
            eprintln!("crdgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
