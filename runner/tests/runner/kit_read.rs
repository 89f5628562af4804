//! The kit's own reading code paths over the files of a real run (the engine against the
//! simulator over loopback HTTP): `tests/kit/kit_read.py`, with the pandas and openpyxl
//! versions the kit pins, builds a one-row DataFrame from every summary as the kit's
//! analyze-results notebook does, reads every record in the kit's key order and types, runs
//! the bundle consolidator over the run folder (its own choice of columns must be the kit block
//! of coebench's workbook), and reads the workbook with `pd.read_excel` as the bundle notebook
//! does, expecting the kit's columns in order.
//!
//! The Python is `COEBENCH_PYTHON`, else `target/pyenv/bin/python` (`bash .ci/pyenv` makes it
//! from tests/chart/requirements.txt and tests/kit/requirements.txt). Without it the test says
//! so loudly and passes, except under `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use coebench_plan::{ConsolidatedFileNames, ImageSize};
use coebench_runner::statistics::summary::RowOutcome;
use coebench_test_support::engine_support::*;
use coebench_test_support::kit_contract::{
    KIT_CONSOLIDATED_COLUMNS, KIT_RECORD_KEYS, kit_column_is_optional,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python with pandas and openpyxl, or `None` (after saying why) outside CI.
fn python() -> Option<PathBuf> {
    let path = std::env::var_os("COEBENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/pyenv/bin/python"));
    if path.exists() {
        return Some(path);
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "CI=true but there is no Python at {}: .ci/run sets COEBENCH_PYTHON from .ci/pyenv",
        path.display()
    );
    eprintln!(
        "\n*** SKIPPED the kit-reading test: no Python at {}; run `bash .ci/pyenv` ***\n",
        path.display()
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kits_readers_take_a_real_runs_files_unchanged() {
    let Some(python) = python() else {
        return;
    };
    let sim = start_simulator(&bundle_yaml("")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut vision = concurrency_row("vision", 100, 12, 3, 1);
    vision.image_size = Some(ImageSize::Small);
    let mut open_loop = concurrency_row("expert-b", 150, 16, 6, 1);
    open_loop.concurrency = None;
    open_loop.qps = Some(20.0);
    let mut plan = plan_against(
        &sim,
        vec![
            concurrency_row("expert-a", 200, 20, 6, 2),
            open_loop,
            vision,
        ],
        dir.path(),
    );
    plan.options.save_response_texts = true;
    plan.options
        .metadata
        .insert("team".into(), "inference".into());
    plan.options
        .sampling_params
        .insert("temperature".into(), serde_json::json!(0.5));
    plan.rows[0]
        .sampling_params
        .insert("top_p".into(), serde_json::json!(0.9));
    plan.output.consolidated_file_names = Some(ConsolidatedFileNames::Both);
    let result = run(plan).await;
    assert!(result.rows.iter().all(|r| r.outcome == RowOutcome::Ok));
    let paths = result.consolidated.clone().unwrap();
    let kit_xlsx = paths.kit_xlsx.clone().expect("the kit's name too");
    assert_eq!(kit_xlsx.file_name().unwrap(), "test-run.xlsx");

    let always: Vec<&str> = KIT_CONSOLIDATED_COLUMNS
        .iter()
        .copied()
        .filter(|c| !kit_column_is_optional(c))
        .collect();
    let contract = serde_json::json!({
        "record_keys": KIT_RECORD_KEYS.to_vec(),
        "kit_columns": KIT_CONSOLIDATED_COLUMNS.to_vec(),
        "always_columns": always,
    });
    let contract_path = dir.path().join("contract.json");
    std::fs::write(&contract_path, contract.to_string()).unwrap();
    let output = Command::new(&python)
        .arg(repo().join("tests/kit/kit_read.py"))
        .arg(&contract_path)
        .arg(&result.run_dir)
        .arg(&kit_xlsx)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the kit's readers failed on coebench's files:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["rows"], 3);
    assert_eq!(report["records"], 15);
    assert_eq!(report["response_texts"], 15, "one saved text per request");
    assert_eq!(report["consolidated_rows"], 3);
    assert_eq!(report["workbook_rows"], 3);
    let columns: Vec<&str> = report["workbook_columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for present in ["qps", "multimodal_img_size", "num_concurrent_requests"] {
        assert!(columns.contains(&present), "{present} in {columns:?}");
    }
    assert_eq!(columns.last(), Some(&"metadata_team"));

    // Sampling parameters and metadata, as the kit merges them into a summary.
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(result.run_dir.join(result.rows[0].summary_file())).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["additional_sampling_params_temperature"], 0.5);
    assert_eq!(summary["additional_sampling_params_top_p"], 0.9);
    assert_eq!(summary["team"], "inference");
    let other: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(result.run_dir.join(result.rows[1].summary_file())).unwrap(),
    )
    .unwrap();
    assert!(
        other.get("additional_sampling_params_top_p").is_none(),
        "top_p is row 1's only"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(result.run_dir.join("run.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["metadata"]["team"], "inference");
    assert!(
        manifest["rows"][0]["response_texts_file"]
            .as_str()
            .unwrap()
            .ends_with("_response_texts.jsonl")
    );
    // Vision rows record the kit's prompt name.
    let vision_records = individual_responses(&result, 2);
    assert!(vision_records.iter().all(|r| r["prompt_name"] == "default"));
    sim.shutdown().await.unwrap();
}
