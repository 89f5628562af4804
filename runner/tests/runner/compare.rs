//! `coebench compare` on real runs against the simulator: a rerun of the same configuration is
//! not flagged, a slower model configuration is (exit code 7), and the JSON says which metric
//! moved.

use std::path::Path;
use std::process::Command;

use coebench_test_support::engine_support::{
    bundle_yaml, concurrency_row, plan_against, run, start_simulator,
};

/// Runs one 40-request row of `expert-a`, one request at a time, against a simulator from
/// `yaml`; returns the run's folder. One at a time: at concurrency 2 the two streams fall into
/// the simulator's batch steps in one of two phases, so a rerun's TTFT median could jump between
/// two modes (24 ms and 78 ms) and be flagged as a regression.
async fn one_run(yaml: &str, dir: &Path, name: &str) -> std::path::PathBuf {
    let sim = start_simulator(yaml).await;
    let mut plan = plan_against(&sim, vec![concurrency_row("expert-a", 200, 24, 40, 1)], dir);
    plan.output.run_name = Some(name.into());
    let result = run(plan).await;
    sim.shutdown().await.unwrap();
    result.run_dir
}

fn compare(baseline: &Path, candidate: &Path, json: &Path) -> (i32, String, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_coebench"))
        .arg("compare")
        .arg(baseline)
        .arg(candidate)
        .arg("--json")
        .arg(json)
        // Wider than the default 5%: this machine's own load moves a rerun's timings (a busy
        // simulator thread paces tokens late; a full CI suite beside a release build flagged a
        // rerun at 15%); the slower expert takes 67% longer end to end, at 40% of the rate.
        .args([
            "--max-regression",
            "ttft=30%,0.01",
            "--max-regression",
            "e2e=30%,0.01",
            "--max-regression",
            "tokens_per_s=30%",
        ])
        .output()
        .expect("coebench runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let report = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    (output.status.code().unwrap_or(-1), stdout, report)
}

fn verdicts(report: &serde_json::Value, metric: &str) -> Vec<String> {
    report["rows"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["metric"] == metric)
        .map(|m| m["verdict"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slower_configuration_is_flagged_and_a_rerun_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let normal = bundle_yaml("");
    // The same bundle with expert-a's prefill and decode at 60 % of their speed.
    let slower = normal
        .replace(
            "prefill_tokens_per_sec: 20000",
            "prefill_tokens_per_sec: 12000",
        )
        .replace(
            "decode_tokens_per_sec: [400, 350, 300, 250]",
            "decode_tokens_per_sec: [240, 210, 180, 150]",
        );
    assert_ne!(normal, slower);
    let baseline = one_run(&normal, dir.path(), "baseline").await;
    let rerun = one_run(&normal, dir.path(), "rerun").await;
    let regressed = one_run(&slower, dir.path(), "slower").await;

    let (code, table, report) = compare(&baseline, &rerun, &dir.path().join("rerun.json"));
    assert_eq!(code, 0, "a rerun was flagged:\n{table}");
    assert!(
        !verdicts(&report, "e2e")
            .iter()
            .any(|v| v == "regressed_beyond_threshold"),
        "{table}"
    );

    let (code, table, report) = compare(&baseline, &regressed, &dir.path().join("slower.json"));
    assert_eq!(code, 7, "the slower configuration passed:\n{table}");
    assert!(table.contains("REGRESSED"), "{table}");
    let e2e = verdicts(&report, "e2e");
    assert_eq!(e2e[0], "regressed_beyond_threshold", "{table}");
    let rate = verdicts(&report, "tokens_per_s");
    assert_eq!(rate[0], "regressed_beyond_threshold", "{table}");
    assert_eq!(report["rows"][0]["samples"], serde_json::json!([40, 40]));
}

#[test]
fn a_folder_that_is_not_a_run_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_coebench"))
        .arg("compare")
        .arg(dir.path())
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("has no run.json"), "{stderr}");
    let output = Command::new(env!("CARGO_BIN_EXE_coebench"))
        .args(["compare", "a", "b", "--max-regression", "speed=5%"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown metric \"speed\""), "{stderr}");
}
