//! Checks of what a cluster user installs and applies: the Helm chart rendered for every CI
//! values file (`rendered.rs`, `rbac.rs`), the Dockerfile, the examples, and the generated and
//! hand-written documentation (`files.rs`), and the alerts of the opt-in PrometheusRule
//! (`alerts.rs`, with `promtool test rules`).
//!
//! Rendering needs the Helm SDK, which only Python's `helm-python-sdk` offers without a `helm`
//! binary: the tests run `tests/chart/chart_check.py render` with the Python of
//! `COEBENCH_PYTHON`, else `target/pyenv/bin/python` (`bash .ci/run` creates it from
//! `tests/chart/requirements.txt`). Linting and Kubernetes schema validation are done by
//! `chart_check.py check`, which `.ci/run` runs before the tests.

mod alerts;
mod files;
mod rbac;
mod rendered;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the repository as text.
pub fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// Everything `chart_check.py render` prints.
#[derive(Debug, Deserialize)]
pub struct Rendered {
    /// The release name the chart was rendered as.
    pub release: String,
    /// The release namespace.
    pub namespace: String,
    /// Each case: `default`, then one per `charts/coebench/ci/<case>-values.yaml`.
    pub cases: std::collections::BTreeMap<String, Case>,
}

/// The chart rendered with one set of values.
#[derive(Debug, Deserialize)]
pub struct Case {
    /// The values given (on top of the chart's defaults).
    pub values: Value,
    /// The rendered objects, in template order.
    pub objects: Vec<Value>,
    /// The rendered NOTES.txt.
    pub notes: String,
}

impl Case {
    /// The objects of `kind`.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |o| o["kind"] == kind)
    }

    /// The one object of `kind` named `name`.
    pub fn get(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", self.names()))
    }

    /// kind/name of every object, for messages.
    pub fn names(&self) -> Vec<String> {
        self.objects
            .iter()
            .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
            .collect()
    }
}

/// The Python interpreter with the chart tools.
fn python() -> PathBuf {
    let path = std::env::var_os("COEBENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/pyenv/bin/python"));
    assert!(
        path.exists(),
        "the chart tests need Python with the Helm SDK at {} (none there): run `bash .ci/run`, \
         which creates target/pyenv from tests/chart/requirements.txt, or set COEBENCH_PYTHON \
         to a Python that has those packages",
        path.display()
    );
    path
}

/// The chart rendered for every case.
pub fn render() -> Rendered {
    let output = Command::new(python())
        .arg(repo().join("tests/chart/chart_check.py"))
        .arg("render")
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "chart_check.py render failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("chart_check.py render prints JSON")
}
