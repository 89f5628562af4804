//! Files a cluster user relies on: the Dockerfile and `.dockerignore`, the generated files, the
//! troubleshooting page (every condition reason the operator sets), and the examples (typed,
//! CEL rules, and loaded by the engine).

use std::path::Path;

use coebench_operator::crd::{CoeBenchmark, CoeBenchmarkRun};
use coebench_operator::resources::job::RUNNER_UID;
use coebench_plan::input::kit_config::read_kit_config;
use coebench_plan::input::model_configs::parse_model_configs_csv;
use coebench_plan::input::validate::{ModelCatalog, UnknownCatalog, validate_plan};
use coebench_plan::{ApiKind, Plan};
use coebench_simulator::SimulatorConfig;
use serde_json::{Value, json};

use super::*;

#[test]
fn the_dockerfile_builds_both_binaries_into_a_nonroot_image() {
    let dockerfile = read("Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let stages: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        stages.len(),
        2,
        "a build stage and a runtime stage: {stages:?}"
    );
    assert!(stages[0].starts_with("FROM rust:1.95"), "{}", stages[0]);
    assert_eq!(stages[1], "FROM gcr.io/distroless/cc-debian12:nonroot");
    let text = lines.join("\n");
    for needle in [
        "--release --locked",
        "--bin coebench --bin coebench-operator",
        "COPY --from=build /out/coebench /usr/local/bin/coebench\n",
        "COPY --from=build /out/coebench-operator /usr/local/bin/coebench-operator\n",
        &format!("USER {RUNNER_UID}:{RUNNER_UID}"),
        "ENTRYPOINT [\"/usr/local/bin/coebench-operator\"]",
    ] {
        assert!(text.contains(needle), "the Dockerfile lacks {needle:?}");
    }
    // The runner Job runs `coebench` by name: it must be on the image's PATH.
    assert!(text.contains("/usr/local/bin/coebench\n"));
}

#[test]
fn the_dockerignore_keeps_build_output_out_and_the_sources_in() {
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    assert!(
        ignored.iter().any(|l| l == "target"),
        "target/ must be ignored: {ignored:?}"
    );
    // The build reads these (the simulator embeds examples/simulator/sim.yaml).
    for needed in [
        "src",
        "runner",
        "examples",
        "Cargo.toml",
        "Cargo.lock",
        "crds",
    ] {
        assert!(
            !ignored.iter().any(|l| l == needed),
            "{needed} is needed by the build"
        );
    }
}

#[test]
fn generated_files_are_current() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_crdgen"))
        .arg("--check")
        .arg(repo())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The string literals of Rust `source`, comments and test modules left out.
fn string_literals(source: &str) -> Vec<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or("");
    let chars: Vec<char> = code.chars().collect();
    let mut literals = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '\'' if chars.get(i + 2) == Some(&'\'') || chars.get(i + 1) == Some(&'\\') => {
                // A char literal such as '"'; lifetimes never hold a quote.
                i += if chars.get(i + 1) == Some(&'\\') {
                    4
                } else {
                    3
                };
                continue;
            }
            '"' => {
                let mut text = String::new();
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    text.push(chars[i]);
                    i += 1;
                }
                literals.push(text);
            }
            _ => {}
        }
        i += 1;
    }
    literals
}

/// A condition reason's shape: PascalCase, letters only.
fn looks_like_a_reason(text: &str) -> bool {
    text.len() > 2
        && text.starts_with(|c: char| c.is_ascii_uppercase())
        && text.chars().all(|c| c.is_ascii_alphabetic())
        && text.chars().any(|c| c.is_ascii_lowercase())
}

/// PascalCase literals of the operator that are not condition or Event reasons.
const NOT_REASONS: [(&str, &str); 13] = [
    ("True", "a condition status"),
    ("False", "a condition status"),
    ("Unknown", "a condition status"),
    ("CreateRun", "an Event action"),
    ("TrimHistory", "an Event action"),
    ("Schedule", "an Event action"),
    ("PodScheduled", "a Pod condition type the operator reads"),
    ("Indexed", "a Job's completionMode the operator reads"),
    ("RunPhases", "the name of a metrics collector"),
    ("NextRuns", "the name of a metrics collector"),
    ("ResultGauges", "the name of a metrics collector"),
    ("RegressedGauge", "the name of a metrics collector"),
    ("CompareWithBaseline", "an Event action"),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn troubleshooting_explains_every_condition_reason_the_operator_sets() {
    let page = read("docs/troubleshooting.md");
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let mut missing = Vec::new();
    let mut found = 0;
    for file in files {
        let relative = file
            .strip_prefix(repo())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // Resource types, object builders, generators and test files set no condition.
        if relative.starts_with("src/crd/")
            || relative.starts_with("src/resources/")
            || relative.starts_with("src/bin/")
            || relative.ends_with("tests.rs")
        {
            continue;
        }
        for literal in string_literals(&std::fs::read_to_string(&file).unwrap()) {
            if !looks_like_a_reason(&literal) || NOT_REASONS.iter().any(|(n, _)| *n == literal) {
                continue;
            }
            found += 1;
            if !page.contains(&format!("`{literal}`")) {
                missing.push(format!("{literal} ({relative})"));
            }
        }
    }
    assert!(
        found > 30,
        "only {found} reasons found: is the scan still right?"
    );
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "docs/troubleshooting.md does not explain (as `Reason`) {missing:?}; add what the user \
         should do, or list a literal that is not a reason in NOT_REASONS"
    );
}

#[test]
fn the_reason_scan_reads_literals_and_skips_comments_and_tests() {
    let source = r#"
        // "CommentReason"
        let c = '"'; let s = "Set\"Reason"; f("JobPending", 'x');
        #[cfg(test)]
        mod tests { "TestOnly" }
    "#;
    assert_eq!(string_literals(source), ["Set\"Reason", "JobPending"]);
    assert!(looks_like_a_reason("Started") && looks_like_a_reason("OOMKilled"));
    assert!(!looks_like_a_reason("ALL") && !looks_like_a_reason("plan.json"));
}

/// The documents of an example file.
fn documents(relative: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&read(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn example_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| format!("examples/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    files
}

/// Every field path of `value` (objects only), to find fields a type dropped.
fn paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = format!("{prefix}.{k}");
                out.push(path.clone());
                paths(v, &path, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                paths(v, &format!("{prefix}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Fails when `typed` (re-serialized) lost a field of `raw`: an unknown field.
fn assert_no_unknown_fields(what: &str, raw: &Value, typed: &Value) {
    let (mut before, mut after) = (Vec::new(), Vec::new());
    paths(&raw["spec"], "spec", &mut before);
    paths(&typed["spec"], "spec", &mut after);
    let unknown: Vec<_> = before.iter().filter(|p| !after.contains(p)).collect();
    assert!(unknown.is_empty(), "{what}: unknown fields {unknown:?}");
}

/// Checks `rows` as the runner would, against the simulator bundle when the endpoint is one.
fn assert_rows_valid(what: &str, endpoint: &Value, rows: Value, options: &Value) {
    let plan: Plan = serde_json::from_value(json!({
        "endpoint": {"api": endpoint["api"], "url": endpoint["url"]},
        "rows": rows,
        "options": options,
    }))
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let simulated = plan.endpoint.api == ApiKind::Simulator
        || plan
            .endpoint
            .url
            .as_deref()
            .is_some_and(|u| u.contains("simulator"));
    let builtin = SimulatorConfig::builtin();
    let catalog: &dyn ModelCatalog = if simulated { &builtin } else { &UnknownCatalog };
    validate_plan(&plan, what, catalog).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn example_benchmarks_are_typed_pass_the_cel_rules_and_hold_valid_rows() {
    let mut checked = 0;
    for file in example_files() {
        let docs = documents(&file);
        for doc in &docs {
            let name = doc["metadata"]["name"].as_str().unwrap_or("").to_string();
            let what = format!("{file}: {} {name}", doc["kind"]);
            match doc["kind"].as_str() {
                Some("CoeBenchmark") => {
                    let bench: CoeBenchmark = serde_json::from_value(doc.clone())
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_no_unknown_fields(&what, doc, &serde_json::to_value(&bench).unwrap());
                    bench
                        .validate_cel()
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    let spec = &doc["spec"];
                    let rows = match &spec["rowsFrom"]["configMapKeyRef"] {
                        Value::Null => spec["rows"].clone(),
                        reference => {
                            // The ConfigMap is in the same file.
                            let map = docs
                                .iter()
                                .find(|d| {
                                    d["kind"] == "ConfigMap"
                                        && d["metadata"]["name"] == reference["name"]
                                })
                                .unwrap_or_else(|| {
                                    panic!("{what}: its ConfigMap is not in the file")
                                });
                            let csv = map["data"][reference["key"].as_str().unwrap()]
                                .as_str()
                                .unwrap();
                            let rows = parse_model_configs_csv(csv, &what)
                                .unwrap_or_else(|e| panic!("{e}"));
                            serde_json::to_value(rows).unwrap()
                        }
                    };
                    assert_rows_valid(&what, &spec["endpoint"], rows, &spec["options"]);
                    // A referenced Secret is in the file or created as the comments say.
                    if let Some(secret) = spec["endpoint"]["apiKeySecretRef"]["name"].as_str() {
                        let in_file = docs
                            .iter()
                            .any(|d| d["kind"] == "Secret" && d["metadata"]["name"] == secret);
                        assert!(
                            in_file
                                || read(&file)
                                    .contains(&format!("kubectl create secret generic {secret}"))
                                || read(&file).contains(&format!("`{secret}` Secret")),
                            "{what}: say where Secret {secret} comes from"
                        );
                    }
                    // A referenced CA certificate is in the file or created as the comments say.
                    let ca = &spec["endpoint"]["caCertificate"];
                    for (reference, kind, command) in [
                        ("configMapKeyRef", "ConfigMap", "kubectl create configmap"),
                        ("secretKeyRef", "Secret", "kubectl create secret"),
                    ] {
                        if let Some(name) = ca[reference]["name"].as_str() {
                            let in_file = docs
                                .iter()
                                .any(|d| d["kind"] == kind && d["metadata"]["name"] == name);
                            let created = read(&file)
                                .lines()
                                .any(|l| l.contains(command) && l.contains(name));
                            assert!(
                                in_file || created,
                                "{what}: say where the CA certificate's {kind} {name} comes from"
                            );
                        }
                    }
                    checked += 1;
                }
                Some("CoeBenchmarkRun") => {
                    let run: CoeBenchmarkRun = serde_json::from_value(doc.clone())
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_no_unknown_fields(&what, doc, &serde_json::to_value(&run).unwrap());
                    run.validate_cel().unwrap_or_else(|e| panic!("{what}: {e}"));
                    checked += 1;
                }
                _ => {}
            }
        }
    }
    assert!(checked >= 3, "only {checked} example benchmarks found");
}

#[test]
fn the_kit_example_loads_in_the_engine_with_a_qps_and_a_multimodal_row() {
    let kit =
        read_kit_config(&repo().join("examples/kit/config.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kit.plan.endpoint.api, ApiKind::Sncloud);
    assert!(kit.notes.is_empty(), "{:?}", kit.notes);
    validate_plan(
        &kit.plan,
        "examples/kit/config.yaml",
        &SimulatorConfig::builtin(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(kit.plan.rows.iter().any(|r| r.qps.is_some()), "a QPS row");
    assert!(
        kit.plan.rows.iter().any(|r| r.image_size.is_some()),
        "a multimodal row"
    );
    // The ConfigMap example holds the same CSV.
    let docs = documents("examples/benchmark-rows-from-configmap.yaml");
    let map = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    assert_eq!(
        map["data"]["model_configs.csv"].as_str().unwrap(),
        read("examples/kit/model_configs.csv"),
        "examples/benchmark-rows-from-configmap.yaml must hold examples/kit/model_configs.csv"
    );
}

/// Leaf paths of a values tree: maps documented as a whole are leaves.
fn value_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    const WHOLE: [&str; 8] = [
        "resources",
        "config",
        "labels",
        "annotations",
        "podAnnotations",
        "podLabels",
        "nodeSelector",
        "affinity",
    ];
    match value.as_object() {
        Some(map) if !map.is_empty() && !WHOLE.iter().any(|w| prefix.ends_with(w)) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                value_paths(v, &path, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn install_md_documents_every_chart_value() {
    let values: Value = serde_saphyr::from_str(&read("charts/coebench/values.yaml")).unwrap();
    let page = read("docs/install.md");
    let mut paths = Vec::new();
    value_paths(&values, "", &mut paths);
    assert!(paths.len() > 40, "{paths:?}");
    let missing: Vec<_> = paths
        .iter()
        .filter(|p| !page.contains(&format!("`{p}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/install.md does not document {missing:?}"
    );
}
