//! Rows in parallel (`options.parallelRows`, the kit's `concurrency_enabled` + `max_workers`)
//! against the simulator over loopback HTTP: rows overlap in time, each with its own load and
//! its own files, and under mixed traffic the simulator's truth log shows the switches that
//! sequential rows never cause.

use std::collections::{BTreeMap, BTreeSet};

use coebench_plan::input::kit_config::read_kit_config;
use coebench_plan::report::RunOutcome;
use coebench_test_support::engine_support::{
    KEY, bundle_yaml, concurrency_row, individual_responses, plan_against, run_with_env,
    start_simulator,
};

/// The request id of the engine's chat-template probe (one per model, after its row).
const PROBE_ID: &str = "coebench-template-probe";

/// Switches per model in the simulator's truth log (requests whose `switching_s` is above 0).
fn switches_by_model(truth: &[coebench_simulator::TruthRecord]) -> BTreeMap<String, usize> {
    let mut by_model = BTreeMap::new();
    for record in truth.iter().filter(|t| t.request_id != PROBE_ID) {
        if record.switching_s.is_some_and(|s| s > 0.0) {
            *by_model
                .entry(record.model.clone().unwrap_or_default())
                .or_insert(0) += 1;
        }
    }
    by_model
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_rows_overlap_and_switch_under_mixed_traffic_where_sequential_rows_do_not() {
    let rows = || {
        vec![
            concurrency_row("expert-a", 60, 8, 8, 1),
            concurrency_row("expert-b", 60, 8, 8, 1),
        ]
    };

    // One after another: expert-a is loaded once, expert-b once.
    let sim = start_simulator(&bundle_yaml("")).await;
    let dir = tempfile::tempdir().unwrap();
    let sequential = run_with_env(
        plan_against(&sim, rows(), dir.path()),
        &[("SAMBANOVA_API_KEY", KEY)],
    )
    .await
    .unwrap();
    assert_eq!(
        sequential.outcome,
        RunOutcome::Succeeded,
        "{:?}",
        sequential.message
    );
    let sequential_switches: usize = switches_by_model(&sim.truth()).values().sum();
    assert!(sequential_switches <= 2, "{sequential_switches}");
    sim.shutdown().await.unwrap();

    // Both at once: the two 50 GB experts never fit the 60 GB HBM together, so the endpoint
    // switches back and forth under the mixed traffic.
    let sim = start_simulator(&bundle_yaml("")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan_against(&sim, rows(), dir.path());
    plan.options.parallel_rows = 2;
    let result = run_with_env(plan, &[("SAMBANOVA_API_KEY", KEY)])
        .await
        .unwrap();
    assert_eq!(
        result.outcome,
        RunOutcome::Succeeded,
        "{:?}",
        result.message
    );
    // Reports list rows in plan order, each with its own model and all its requests.
    let models: Vec<&str> = result.rows.iter().map(|r| r.model.as_str()).collect();
    assert_eq!(models, ["expert-a", "expert-b"]);
    for (i, row) in result.rows.iter().enumerate() {
        assert_eq!(row.num_completed_requests, 8, "row {i}");
        let records = individual_responses(&result, i);
        assert_eq!(records.len(), 8);
        assert!(records.iter().all(|r| r["model"] == row.model.as_str()));
    }
    let truth = sim.truth();
    // The rows overlapped: each model's requests were in flight while the other's were.
    let window = |model: &str| {
        let arrivals: Vec<f64> = truth
            .iter()
            .filter(|t| t.model.as_deref() == Some(model) && t.request_id != PROBE_ID)
            .map(|t| t.arrival_s)
            .collect();
        (
            arrivals.iter().copied().fold(f64::INFINITY, f64::min),
            arrivals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    };
    let (a, b) = (window("expert-a"), window("expert-b"));
    assert!(a.0 < b.1 && b.0 < a.1, "no overlap: {a:?} {b:?}");
    let switches = switches_by_model(&truth);
    assert!(
        switches.get("expert-a").copied().unwrap_or(0) >= 2
            && switches.get("expert-b").copied().unwrap_or(0) >= 2,
        "mixed traffic switches both experts repeatedly: {switches:?}"
    );

    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_mixed_traffic_switches_are_attributed_to_the_requests_the_truth_log_names() {
    // expert-a busy at concurrency 2; expert-b arriving now and then: each expert-b request
    // evicts expert-a, whose next requests wait for it to load again.
    let sim = start_simulator(&bundle_yaml("")).await;
    let dir = tempfile::tempdir().unwrap();
    let busy = concurrency_row("expert-a", 60, 64, 24, 2);
    let mut sparse = concurrency_row("expert-b", 60, 8, 4, 1);
    sparse.concurrency = None;
    sparse.qps = Some(4.0);
    let mut plan = plan_against(&sim, vec![busy, sparse], dir.path());
    plan.options.parallel_rows = 2;
    let result = run_with_env(plan, &[("SAMBANOVA_API_KEY", KEY)])
        .await
        .unwrap();
    assert_eq!(
        result.outcome,
        RunOutcome::Succeeded,
        "{:?}",
        result.message
    );
    let truth = sim.truth();
    let truth_switched = |row: usize| -> BTreeSet<u32> {
        truth
            .iter()
            .filter(|t| t.request_id != PROBE_ID && t.switching_s.is_some_and(|s| s > 0.0))
            .map(|t| row_and_index(&t.request_id))
            .filter(|(r, _)| *r == row)
            .map(|(_, i)| i)
            .collect()
    };
    let file = result.run_dir.join("mixed_traffic_switching.json");
    let attribution: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let reported = |row: usize| -> BTreeSet<u32> {
        attribution["switches"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["row_index"] == row)
            .map(|s| s["request_idx"].as_u64().unwrap() as u32)
            .collect()
    };
    // expert-a switched back several times, and exactly those requests are reported.
    assert!(truth_switched(0).len() >= 2, "{:?}", truth_switched(0));
    assert_eq!(reported(0), truth_switched(0));
    // Each reported switch is about the size the simulator injected (50 GB at 250 GB/s).
    for s in attribution["switches"].as_array().unwrap() {
        assert_eq!(s["row_index"], 0, "{s}");
        assert!(
            s["after_model"] == "expert-b" || s["after_model"].is_null(),
            "{s}"
        );
        let time = s["switching_time_s"].as_f64().unwrap();
        assert!(time > 0.1, "{s}");
    }
    // expert-b was never served twice in a row, so it has no warm baseline: its requests are
    // counted as served after expert-a, but no switching time is claimed for them.
    let b = attribution["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "expert-b")
        .unwrap();
    assert!(b["warm_ttft_median_s"].is_null(), "{b}");
    assert_eq!(b["after_other_model"], 4, "{b}");
    assert!(reported(1).is_empty());
    sim.shutdown().await.unwrap();
}

/// (row, request index) of a request id `<tag>-<row>-<index>`.
fn row_and_index(request_id: &str) -> (usize, u32) {
    let mut parts = request_id.rsplit('-');
    let index = parts.next().unwrap().parse().unwrap();
    let row = parts.next().unwrap().parse().unwrap();
    (row, index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kits_concurrency_enabled_runs_max_workers_rows_at_once() {
    let sim = start_simulator(&bundle_yaml("")).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("model_configs.csv"),
        "model_name,input_tokens,output_tokens,num_requests,concurrent_requests,qps,qps_distribution,multimodal_img_size\n\
         expert-a,60,8,6,1,,,\n\
         expert-b,60,8,6,1,,,\n\
         vision,60,8,6,1,,,\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "model_configs_path: model_configs.csv\nllm_api: sncloud\noutput_files_dir: out\n\
         consolidated_results_dir: consolidated\nconcurrency_enabled: true\nmax_workers: 2\n",
    )
    .unwrap();
    let config = read_kit_config(&dir.path().join("config.yaml")).unwrap();
    assert!(config.notes.is_empty(), "{:?}", config.notes);
    let mut plan = config.plan;
    assert_eq!(plan.options.parallel_rows, 2);
    plan.output.run_name = Some("kit-parallel".into());
    let result = run_with_env(
        plan,
        &[
            ("SAMBANOVA_API_KEY", KEY),
            ("SAMBANOVA_API_BASE", &sim.base_url()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        result.outcome,
        RunOutcome::Succeeded,
        "{:?}",
        result.message
    );
    let models: Vec<&str> = result.rows.iter().map(|r| r.model.as_str()).collect();
    assert_eq!(models, ["expert-a", "expert-b", "vision"]);
    // Two workers: the third row starts only when one of the first two has finished, so the
    // first two overlap and the third's first request comes after one of them ended.
    let truth = sim.truth();
    let arrivals = |model: &str| -> Vec<f64> {
        truth
            .iter()
            .filter(|t| t.model.as_deref() == Some(model) && t.request_id != PROBE_ID)
            .map(|t| t.arrival_s)
            .collect()
    };
    let first = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let last = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (a, b, v) = (
        arrivals("expert-a"),
        arrivals("expert-b"),
        arrivals("vision"),
    );
    assert!(
        first(&a) < last(&b) && first(&b) < last(&a),
        "the first two rows overlap"
    );
    assert!(
        first(&v) > last(&a).min(last(&b)),
        "the third row waited for a free worker"
    );
    sim.shutdown().await.unwrap();
}
