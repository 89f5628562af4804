//! Client self-accuracy end to end: a client whose only runtime thread is repeatedly blocked is
//! flagged `client_saturated` in the row's summary and in the consolidated table, and an idle
//! client reports a small event-loop lag and CPU share. Bounds are loose: these tests run on a
//! shared, possibly busy machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use coebench_runner::engine::run::RunResult;
use coebench_test_support::engine_support::*;

/// One fast model: 30 tokens at 300 tokens/s, so a request takes about 0.1 s.
const QUICK: &str = r#"
seed: 2
batching_window_ms: 1
executors: 4
memory: {ddr_capacity_gb: 100, hbm_capacity_gb: 100, load_bandwidth_gb_per_s: 1000}
models:
  - name: quick
    weights_gb: 1
    prefill_tokens_per_sec: 100000
    batch_sizes: [1, 4]
    decode_tokens_per_sec: [300, 300]
    max_sequence_length: 4096
"#;

/// The consolidated table's `column` cell of its first row, from the CSV.
fn consolidated_cell(result: &RunResult, column: &str) -> String {
    let path = &result
        .consolidated
        .as_ref()
        .expect("a consolidated table")
        .csv;
    let mut reader = csv::Reader::from_path(path).expect("readable CSV");
    let headers = reader.headers().expect("a header").clone();
    let at = headers
        .iter()
        .position(|h| h == column)
        .unwrap_or_else(|| panic!("no column {column} in {headers:?}"));
    let row = reader.records().next().expect("a row").expect("a record");
    row[at].to_string()
}

/// Runs 30 requests at concurrency 3 on a one-worker client runtime; with `starve`, a task on
/// that worker blocks its thread for 25 ms at a time while the row runs.
fn run_client(starve: bool) -> (RunResult, tempfile::TempDir) {
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    client.block_on(async {
        let sim = start_simulator(QUICK).await;
        let dir = tempfile::tempdir().unwrap();
        let mut plan = plan_against(
            &sim,
            vec![concurrency_row("quick", 50, 30, 30, 3)],
            dir.path(),
        );
        plan.options.request_timeout_seconds = 60.0;
        let stop = Arc::new(AtomicBool::new(false));
        let hog = starve.then(|| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    // Blocks the runtime's only worker, as a client with far too much work per
                    // event would.
                    std::thread::sleep(Duration::from_millis(25));
                    tokio::task::yield_now().await;
                }
            })
        });
        let result = run(plan).await;
        stop.store(true, Ordering::Relaxed);
        if let Some(hog) = hog {
            hog.await.unwrap();
        }
        sim.shutdown().await.unwrap();
        (result, dir)
    })
}

#[test]
fn a_starved_client_is_flagged_in_the_summary_and_the_consolidated_table() {
    let (result, _dir) = run_client(true);
    let row = &result.rows[0];
    assert_eq!(
        row.num_completed_requests, 30,
        "{:?}",
        row.error_code_frequency
    );
    let health = row.client_health;
    assert!(health.saturated, "{health:?}");
    // Each probe waits behind a 25 ms block: far above the 1 ms limit.
    assert!(
        health.event_loop_lag_p99_s.is_some_and(|lag| lag >= 0.005),
        "{health:?}"
    );
    assert_eq!(consolidated_cell(&result, "client_saturated"), "True");
    let lag: f64 = consolidated_cell(&result, "client_event_loop_lag_p99_s")
        .parse()
        .expect("a number");
    assert!(lag >= 0.005, "{lag}");
}

#[test]
fn an_idle_client_reports_a_small_lag_and_cpu_share() {
    let (result, _dir) = run_client(false);
    let row = &result.rows[0];
    assert_eq!(
        row.num_completed_requests, 30,
        "{:?}",
        row.error_code_frequency
    );
    let health = row.client_health;
    // Loose: a busy CI machine delays timers by milliseconds, never by a blocked thread's 25 ms
    // at p99 across a whole row.
    assert!(
        health.event_loop_lag_p99_s.is_some_and(|lag| lag < 0.02),
        "{health:?}"
    );
    assert!(
        health.cpu_utilization.is_some_and(|cpu| cpu < 0.9),
        "{health:?}"
    );
    assert!(["True", "False"].contains(&consolidated_cell(&result, "client_saturated").as_str()));
}
