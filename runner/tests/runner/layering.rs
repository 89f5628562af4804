//! The engine's layering rule, checked on its source: a module of `coebench-runner` refers only
//! to itself and to the layers below it (`crate::<layer>` paths, comments and doc links
//! excluded). The crate boundaries (plan, support, simulator) are enforced by Cargo; this test
//! keeps the layers inside the engine crate from growing cycles again.

use std::fs;
use std::path::{Path, PathBuf};

/// The library's top-level modules, lowest first.
const LAYERS: [&str; 10] = [
    "credentials",
    "workload",
    "client",
    "statistics",
    "output",
    "analysis",
    "engine",
    "distributed",
    "prometheus",
    "results_api",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layer a source file belongs to (`src/<layer>.rs` or `src/<layer>/...`), or `None` for
/// the crate root and the binary (`lib.rs`, `main.rs`, `cli/`).
fn layer_of(src: &Path, file: &Path) -> Option<usize> {
    let first = file.strip_prefix(src).unwrap().components().next()?;
    let name = first.as_os_str().to_str()?.trim_end_matches(".rs");
    LAYERS.iter().position(|l| *l == name)
}

/// Every `crate::<name>` a line of code names, comments stripped.
fn referenced_layers(code: &str) -> Vec<&str> {
    let code = code.split("//").next().unwrap_or("");
    code.match_indices("crate::")
        .filter(|(at, _)| {
            // `coebench_runner::` or `$crate::` are not this crate's paths.
            !code[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$')
        })
        .map(|(at, m)| {
            let rest = &code[at + m.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[test]
fn every_module_uses_only_its_own_and_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let Some(own) = layer_of(&src, file) else {
            continue;
        };
        checked += 1;
        for (n, line) in fs::read_to_string(file).unwrap().lines().enumerate() {
            for name in referenced_layers(line) {
                if let Some(used) = LAYERS.iter().position(|l| *l == name)
                    && used > own
                {
                    violations.push(format!(
                        "{}:{}: layer `{}` uses `{}`, which is above it",
                        file.strip_prefix(&src).unwrap().display(),
                        n + 1,
                        LAYERS[own],
                        name
                    ));
                }
            }
        }
    }
    assert!(
        checked > 40,
        "only {checked} source files found under {}",
        src.display()
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_checker_sees_an_upward_reference() {
    assert_eq!(referenced_layers("use crate::output::naming;"), ["output"]);
    assert_eq!(
        referenced_layers("let x = crate::engine::run(); // crate::prometheus"),
        ["engine"]
    );
    assert!(referenced_layers("use coebench_runner::engine;").is_empty());
}
