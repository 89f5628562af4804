//! Distributed runs: the exact merge (a record set split across workers through the real
//! protocol, out of order, gives the files one process writes), `coebench run --workers N`
//! against the simulator matching one process's request count and open-loop schedule, and a
//! worker killed mid-row (the coordinator writes what it has and exits 8, naming the worker).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use coebench_plan::Row;
use coebench_runner::client::measurement::ErrorKind;
use coebench_runner::distributed::wire::{FromWorker, read_message, write_message};
use coebench_runner::output::naming;
use coebench_runner::output::row_files::write_row_files;
use coebench_runner::statistics::record::RequestRecord;
use coebench_runner::statistics::record_digest::RecordDigest;
use coebench_runner::statistics::spool::RecordSpool;
use coebench_runner::statistics::summary::{RowExecution, RowResult};
use coebench_test_support::engine_support::{
    KEY, bundle_yaml, concurrency_row, plan_against, start_simulator,
};
use coebench_test_support::output_fixtures::{Req, base_wall, failed, ok, record};

/// A row's records: successes with varied timings and a failure, as one process measured them.
fn known_records(base: Instant) -> Vec<RequestRecord> {
    let reqs: Vec<Req> = (0..23u64)
        .map(|i| {
            if i == 7 {
                failed(i * 13, i * 13 + 40, ErrorKind::Http(503))
            } else {
                ok(
                    i * 13 + i % 3,
                    90 + (i * 37) % 50,
                    0.05 + (i as f64) / 1000.0,
                )
            }
        })
        .collect();
    reqs.iter()
        .enumerate()
        .map(|(i, r)| record(base, i as u32, r))
        .collect()
}

/// The row finished over `records` (appended in the order given), as the engine finishes it.
fn finish(row: &Row, base: Instant, dir: &Path, records: &[RequestRecord]) -> RowResult {
    let names = naming::row_names_with_uuid(0, row, uuid::Uuid::from_u128(7));
    let mut execution = RowExecution::new(0, row.clone(), "merge", names, base, base_wall());
    let spool = std::sync::Arc::new(RecordSpool::create(dir, &execution.names.base).unwrap());
    for record in records {
        let at = spool.append(record).unwrap();
        execution.digests.push(RecordDigest::of(record, Some(at)));
    }
    execution.spool = Some(spool);
    execution.ended = base + Duration::from_secs(3);
    execution.finish()
}

fn file_bytes(dir: &Path, result: &RowResult) -> (Vec<u8>, Vec<u8>) {
    let paths = write_row_files(dir, result).unwrap();
    (
        std::fs::read(paths.summary).unwrap(),
        std::fs::read(paths.individual_responses).unwrap(),
    )
}

#[tokio::test]
async fn records_split_across_workers_through_the_protocol_merge_into_the_single_process_files() {
    let base = Instant::now();
    let row = concurrency_row("expert-a", 20, 4, 23, 6);
    let records = known_records(base);
    let single_dir = tempfile::tempdir().unwrap();
    let single = finish(&row, base, single_dir.path(), &records);

    // Three workers, each sending its share (request i to worker i mod 3) over its own TCP
    // connection in reverse order; the coordinator reads them as they come.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    for worker in 0..3u32 {
        let share: Vec<RequestRecord> = records
            .iter()
            .filter(|r| r.request_idx % 3 == worker)
            .rev()
            .cloned()
            .collect();
        tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            for record in share {
                write_message(&mut stream, &FromWorker::Record(Box::new(record)))
                    .await
                    .unwrap();
            }
        });
    }
    let mut received = Vec::new();
    for _ in 0..3 {
        let (mut stream, _) = listener.accept().await.unwrap();
        while let Some(FromWorker::Record(record)) =
            read_message::<_, FromWorker>(&mut stream).await.unwrap()
        {
            received.push(*record);
        }
    }
    assert_eq!(received.len(), records.len());
    assert_ne!(
        received.iter().map(|r| r.request_idx).collect::<Vec<_>>(),
        (0..23).collect::<Vec<_>>(),
        "the records arrive out of order"
    );
    let merged_dir = tempfile::tempdir().unwrap();
    let merged = finish(&row, base, merged_dir.path(), &received);

    let (single_summary, single_records) = file_bytes(single_dir.path(), &single);
    let (merged_summary, merged_records) = file_bytes(merged_dir.path(), &merged);
    assert_eq!(
        String::from_utf8(merged_records).unwrap(),
        String::from_utf8(single_records).unwrap()
    );
    assert_eq!(
        String::from_utf8(merged_summary).unwrap(),
        String::from_utf8(single_summary).unwrap()
    );
}

fn coebench() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coebench"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SAMBANOVA_API_KEY", KEY)
        .env("RUST_LOG", "warn");
    command
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn open_row(n: u32, qps: f64) -> Row {
    Row {
        concurrency: None,
        qps: Some(qps),
        ..concurrency_row("expert-b", 20, 4, n, 1)
    }
}

/// Writes `rows` as a plan against `url`'s simulator under `dir`, and returns its path.
fn write_plan(sim: &coebench_simulator::SimulatorHandle, rows: Vec<Row>, dir: &Path) -> PathBuf {
    let plan = plan_against(sim, rows, dir);
    let path = dir.join("plan.json");
    std::fs::write(&path, serde_json::to_vec(&plan).unwrap()).unwrap();
    path
}

fn run_json(dir: &Path) -> serde_json::Value {
    let path = dir.join("out").join("test-run").join("run.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// The test bundle's simulator on a runtime of its own (the tests run `coebench` as child
/// processes), a folder, and a plan of `rows` against the simulator there.
struct Served {
    runtime: tokio::runtime::Runtime,
    sim: coebench_test_support::engine_support::TestSim,
    dir: tempfile::TempDir,
    plan: PathBuf,
}

fn served(rows: Vec<Row>) -> Served {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime.block_on(start_simulator(&bundle_yaml("")));
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(&sim, rows, dir.path());
    Served {
        runtime,
        sim,
        dir,
        plan,
    }
}

/// Each row's per-request records, from the run's files.
fn row_records(dir: &Path) -> Vec<Vec<serde_json::Value>> {
    let manifest = run_json(dir);
    manifest["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let file = row["individual_responses_file"].as_str().unwrap();
            let path = dir.join("out").join("test-run").join(file);
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
        })
        .collect()
}

#[test]
fn two_and_four_workers_send_what_one_process_sends_on_its_schedule() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime.block_on(start_simulator(&bundle_yaml("")));
    let rows = vec![
        concurrency_row("expert-a", 20, 4, 10, 4),
        open_row(12, 20.0),
    ];
    let mut runs = Vec::new();
    for workers in [1u32, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        let plan = write_plan(&sim, rows.clone(), dir.path());
        let output = coebench()
            .args(["run", "--no-progress", "--plan"])
            .arg(&plan)
            .args(["--workers", &workers.to_string()])
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{workers} workers: {}",
            describe(&output)
        );
        runs.push((workers, row_records(dir.path()), run_json(dir.path()), dir));
    }
    let one = &runs[0].1;
    for (workers, records, manifest, _) in &runs {
        for (row, row_records) in records.iter().enumerate() {
            assert_eq!(
                row_records.len(),
                one[row].len(),
                "{workers} workers, row {row}"
            );
            let indices: Vec<u64> = row_records
                .iter()
                .map(|r| r["request_idx"].as_u64().unwrap())
                .collect();
            assert_eq!(indices, (0..one[row].len() as u64).collect::<Vec<_>>());
            assert!(
                row_records.iter().all(|r| r["error_code"].is_null()),
                "{workers} workers, row {row}: {row_records:?}"
            );
        }
        // The open-loop row's intended send offsets are the single-process schedule, exactly.
        let intended = |records: &[serde_json::Value]| -> Vec<f64> {
            records
                .iter()
                .map(|r| r["intended_send_s"].as_f64().unwrap())
                .collect()
        };
        assert_eq!(
            intended(&records[1]),
            intended(&one[1]),
            "{workers} workers"
        );
        if *workers > 1 {
            let described = &manifest["workers"];
            assert_eq!(described["count"], *workers, "{manifest}");
            let others = described["workers"].as_array().unwrap();
            assert_eq!(others.len(), *workers as usize - 1);
            assert!(
                others.iter().all(|w| w["rtt_s"].as_f64().unwrap() > 0.0),
                "{described}"
            );
            // Each worker's share of each row is listed, and every record reached the coordinator.
            let shares = described["rows"].as_array().unwrap();
            assert_eq!(shares.len(), 2 * *workers as usize, "{described}");
            // Every worker's clock was measured again before each row, and the row says so.
            for share in shares.iter().filter(|s| s["worker"] != 0) {
                assert!(share["clock_rtt_s"].as_f64().unwrap() > 0.0, "{share}");
                assert!(share["clock_offset_s"].is_f64(), "{share}");
            }
            let records: u64 = shares.iter().map(|s| s["records"].as_u64().unwrap()).sum();
            assert_eq!(records, 22);
        } else {
            assert!(manifest.get("workers").is_none());
        }
    }
    runtime.block_on(sim.shutdown()).unwrap();
}

#[test]
fn workers_bind_their_connections_to_their_share_of_the_source_addresses() {
    // 8 streams: 4 per worker, so each worker opens connections from both of its addresses.
    let Served {
        runtime,
        sim,
        dir,
        plan,
    } = served(vec![concurrency_row("expert-a", 20, 4, 16, 8)]);
    let output = coebench()
        .args(["run", "--no-progress", "--plan"])
        .arg(&plan)
        .args([
            "--workers",
            "2",
            "--source-addresses",
            "127.0.0.2-127.0.0.5",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let records = &row_records(dir.path())[0];
    let truth = sim.truth();
    let source_of = |id: &str| -> String {
        let record = truth
            .iter()
            .find(|t| t.request_id == id)
            .expect("in the truth");
        let address: std::net::SocketAddr =
            record.client_address.as_ref().unwrap().parse().unwrap();
        address.ip().to_string()
    };
    let mut used = [Vec::new(), Vec::new()];
    for record in records {
        let index = record["request_idx"].as_u64().unwrap();
        // Closed loop: request i is worker (i mod 8) mod 2's.
        let worker = (index % 8 % 2) as usize;
        used[worker].push(source_of(record["request_id"].as_str().unwrap()));
    }
    for list in &mut used {
        list.sort();
        list.dedup();
    }
    assert_eq!(
        used[0],
        ["127.0.0.2", "127.0.0.4"],
        "worker 0 binds to every second address from the first"
    );
    assert_eq!(
        used[1],
        ["127.0.0.3", "127.0.0.5"],
        "worker 1 to the others"
    );

    // An address this host does not have fails the run before it starts, naming it.
    let output = coebench()
        .args(["run", "--no-progress", "--plan"])
        .arg(&plan)
        .args(["--source-addresses", "127.0.0.2,192.0.2.1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--source-addresses") && stderr.contains("cannot bind 192.0.2.1"),
        "{stderr}"
    );
    runtime.block_on(sim.shutdown()).unwrap();
}

#[test]
fn the_workers_of_a_simulator_plan_send_to_the_coordinators_one_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sim.yaml");
    std::fs::write(&config, bundle_yaml("")).unwrap();
    let mut plan = coebench_test_support::engine_support::plan_against_url(
        "http://unused.invalid",
        vec![concurrency_row("expert-a", 20, 4, 12, 6), open_row(9, 30.0)],
        dir.path(),
    );
    plan.endpoint.api = coebench_plan::ApiKind::Simulator;
    plan.endpoint.url = None;
    plan.endpoint.simulator = Some(config.display().to_string());
    let path = dir.path().join("plan.json");
    std::fs::write(&path, serde_json::to_vec(&plan).unwrap()).unwrap();
    let truth = dir.path().join("truth.jsonl");
    let output = coebench()
        .args(["run", "--no-progress", "--plan"])
        .arg(&path)
        .args(["--workers", "3", "--simulator-truth-log"])
        .arg(&truth)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let records: Vec<serde_json::Value> = row_records(dir.path()).into_iter().flatten().collect();
    assert_eq!(records.len(), 21);
    assert!(
        records.iter().all(|r| r["error_code"].is_null()),
        "{records:?}"
    );
    // One simulator served every worker: its truth log holds every request of the run (a
    // simulator per worker would have logged only the coordinator's third).
    let logged: std::collections::HashSet<String> = std::fs::read_to_string(&truth)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .map(|t| t["request_id"].as_str().unwrap().to_string())
        .collect();
    for record in &records {
        assert!(
            logged.contains(record["request_id"].as_str().unwrap()),
            "{record}"
        );
    }
}

/// The worker processes of the local run `child` (writing under `dir`), once its first row runs
/// (its spool exists), and half a second into it.
fn workers_once_spooling(child: &std::process::Child, dir: &Path) -> Vec<u32> {
    let run_dir = dir.join("out").join("test-run");
    let deadline = Instant::now() + Duration::from_secs(120);
    let workers = loop {
        let spooling = std::fs::read_dir(&run_dir).ok().is_some_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".records.jsonl"))
        });
        let workers = children_of(child.id());
        if spooling && !workers.is_empty() {
            break workers;
        }
        assert!(Instant::now() < deadline, "the row never started");
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(500));
    workers
}

/// The process ids of `pid`'s children.
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    children
}

#[test]
fn a_worker_killed_mid_row_fails_the_run_with_worker_lost_after_writing_what_was_measured() {
    // Each request streams 1,500 tokens at a few hundred per second: seconds per request.
    let Served {
        runtime,
        sim,
        dir,
        plan,
    } = served(vec![
        concurrency_row("expert-a", 20, 1500, 12, 4),
        concurrency_row("expert-a", 20, 4, 4, 2),
    ]);
    let report = dir.path().join("report.json");
    let child = coebench()
        .args(["run", "--no-progress", "--plan"])
        .arg(&plan)
        .args(["--workers", "2", "--report-file"])
        .arg(&report)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first row runs, kill the worker process.
    let worker = workers_once_spooling(&child, dir.path())[0];
    // SIGKILL by pid, as the OOM killer or a lost node would end it.
    let killed = Command::new("kill")
        .args(["-9", &worker.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(8), "{}", describe(&output));
    let manifest = run_json(dir.path());
    let exit = &manifest["exit"];
    assert_eq!(exit["outcome"], "workerLost", "{manifest}");
    let message = exit["message"].as_str().unwrap();
    assert!(message.contains("worker 1"), "{message}");
    assert!(
        manifest["workers"]["lost"]
            .as_str()
            .unwrap()
            .contains("worker 1")
    );
    // The row it was lost in says so in worker 1's share of it.
    let shares = manifest["workers"]["rows"].as_array().unwrap();
    let lost_share = shares
        .iter()
        .find(|s| s["row_index"] == 0 && s["worker"] == 1)
        .expect("worker 1's share of row 1");
    assert!(
        lost_share["lost"].as_str().unwrap().contains("worker 1"),
        "{lost_share}"
    );
    assert!(
        shares
            .iter()
            .all(|s| s["worker"] == 1 || s.get("lost").is_none()),
        "{shares:?}"
    );
    // The first row's files hold what the coordinator measured; the second row never ran.
    let rows = manifest["rows"].as_array().unwrap();
    assert!(
        rows[0]["individual_responses_file"].is_string(),
        "{manifest}"
    );
    assert_eq!(rows[1]["outcome"], "not_run", "{manifest}");
    let records = row_records_of(&dir.path().join("out").join("test-run"), &rows[0]);
    assert!(!records.is_empty());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["outcome"], "workerLost");
    runtime.block_on(sim.shutdown()).unwrap();
}

fn row_records_of(run_dir: &Path, row: &serde_json::Value) -> Vec<serde_json::Value> {
    let file = row["individual_responses_file"].as_str().unwrap();
    serde_json::from_slice(&std::fs::read(run_dir.join(file)).unwrap()).unwrap()
}

/// A loopback port free now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn pods_of_an_indexed_job_run_the_same_command_and_only_index_0_writes_results() {
    let Served {
        runtime,
        sim,
        dir,
        plan,
    } = served(vec![concurrency_row("expert-a", 20, 4, 9, 3)]);
    let coordinator = format!("127.0.0.1:{}", free_port());
    // The same command in every Pod; only JOB_COMPLETION_INDEX differs.
    let pod = |index: u32| {
        let reports = dir.path().join(format!("termination-{index}"));
        let child = coebench()
            .args(["run", "--no-progress", "--plan"])
            .arg(&plan)
            .args([
                "--workers",
                "3",
                "--coordinator",
                &coordinator,
                "--report-file",
            ])
            .arg(&reports)
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        (child, reports)
    };
    // Workers start first and wait for the coordinator, as Pods do while its name resolves.
    let workers: Vec<_> = [2, 1].into_iter().map(pod).collect();
    std::thread::sleep(Duration::from_millis(700));
    let (coordinator_pod, coordinator_report) = pod(0);
    let output = coordinator_pod.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    for (worker, report) in workers {
        let output = worker.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        assert!(!report.exists(), "a worker that finished writes no report");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&coordinator_report).unwrap()).unwrap();
    assert_eq!(report["outcome"], "succeeded", "{report}");
    let records = &row_records(dir.path())[0];
    assert_eq!(records.len(), 9);
    assert_eq!(run_json(dir.path())["workers"]["count"], 3);
    runtime.block_on(sim.shutdown()).unwrap();
}

#[test]
fn a_worker_that_never_connects_fails_the_run_naming_it_and_its_pod() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime.block_on(start_simulator(&bundle_yaml("")));
    let written = write_plan(
        &sim,
        vec![concurrency_row("expert-a", 20, 4, 2, 1)],
        dir.path(),
    );
    assert_eq!(written, plan);
    let report = dir.path().join("termination-log");
    let output = coebench()
        .args(["run", "--no-progress", "--plan"])
        .arg(&plan)
        .args([
            "--workers",
            "2",
            "--worker-index",
            "0",
            "--rendezvous-timeout",
            "1",
        ])
        .arg("--coordinator")
        .arg(format!("bench-7-0.bench-7-workers:{}", free_port()))
        .arg("--report-file")
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(8), "{}", describe(&output));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["outcome"], "workerLost");
    let message = report["message"].as_str().unwrap();
    assert!(
        message.contains("worker 1 (expected from bench-7-1.bench-7-workers)"),
        "{message}"
    );
    assert!(sim.truth().is_empty(), "nothing was sent");
    runtime.block_on(sim.shutdown()).unwrap();
}

#[test]
fn an_interrupt_stops_every_worker_through_the_coordinator_and_the_run_ends_interrupted() {
    let Served {
        runtime,
        sim,
        dir,
        plan,
    } = served(vec![concurrency_row("expert-a", 20, 1500, 40, 4)]);
    let child = coebench()
        .args(["run", "--no-progress", "--stop-grace", "1", "--plan"])
        .arg(&plan)
        .args(["--workers", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let workers = workers_once_spooling(&child, dir.path());
    let signalled = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(5), "{}", describe(&output));
    let manifest = run_json(dir.path());
    assert_eq!(manifest["exit"]["outcome"], "interrupted", "{manifest}");
    assert!(manifest["workers"]["lost"].is_null(), "{manifest}");
    // Both workers' requests in flight were cut off and recorded, none sent after the stop.
    let records = &row_records(dir.path())[0];
    assert!(records.len() < 40, "{}", records.len());
    let interrupted: Vec<u64> = records
        .iter()
        .filter(|r| r["error_code"] == "interrupted")
        .map(|r| r["request_idx"].as_u64().unwrap() % 2)
        .collect();
    assert!(
        interrupted.contains(&0) && interrupted.contains(&1),
        "{records:?}"
    );
    // The worker processes exited (told the run is over).
    for pid in workers {
        assert!(
            !Path::new(&format!("/proc/{pid}/stat")).exists() || {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                stat.contains(") Z ")
            }
        );
    }
    runtime.block_on(sim.shutdown()).unwrap();
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinators_live_metrics_hold_every_workers_requests_with_a_worker_label() {
    use coebench_runner::client::ClientOptions;
    use coebench_runner::distributed::coordinator::{Coordinator, CoordinatorOptions};
    use coebench_runner::distributed::worker::{WorkerExit, WorkerOptions, serve};
    use coebench_runner::engine::load::StopSignal;
    use coebench_runner::engine::observer::RunObserver;
    use coebench_runner::engine::run::{PlanSource, RowDistribution, RunSettings, run_plan};
    use coebench_runner::prometheus::{RunLabels, RunMetrics};
    use std::sync::Arc;

    let sim = start_simulator(&bundle_yaml("")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan_against(
        &sim,
        vec![concurrency_row("expert-a", 20, 4, 10, 4)],
        dir.path(),
    );
    plan.workers = 2;
    let env = |name: &str| (name == "SAMBANOVA_API_KEY").then(|| KEY.to_string());
    // Worker 1 runs in this process (beside the coordinator, in one task), over the same
    // loopback protocol as a worker process.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let worker = serve(WorkerOptions {
        coordinator: address,
        index: 1,
        rendezvous: Duration::from_secs(60),
        env: Box::new(env),
        client: ClientOptions::default(),
        source_addresses: Default::default(),
    });
    let metrics = Arc::new(RunMetrics::new(RunLabels::default()));
    let observer: Arc<dyn RunObserver> = metrics.clone();
    let coordinate = async {
        let coordinator = Arc::new(
            Coordinator::rendezvous(
                listener,
                CoordinatorOptions {
                    workers: 2,
                    rendezvous: Duration::from_secs(60),
                    expected: Box::new(|i| format!("test worker {i}")),
                    advertised_host: None,
                },
            )
            .await
            .unwrap(),
        );
        let settings = RunSettings {
            source: PlanSource::default(),
            env: Box::new(env),
            simulator_truth_log: None,
            client: ClientOptions::default(),
            distribution: Some(coordinator.clone() as Arc<dyn RowDistribution>),
        };
        let result = run_plan(
            plan.clone(),
            settings,
            observer,
            Arc::new(StopSignal::default()),
        )
        .await
        .unwrap();
        coordinator.finish().await;
        result
    };
    let (result, worker) = tokio::join!(coordinate, worker);
    assert_eq!(worker, WorkerExit::Done);
    assert_eq!(result.rows[0].num_completed_requests, 10);
    let text = metrics.encode(None).unwrap().body;
    let row = "namespace=\"\",benchmark=\"\",run=\"test-run\",model=\"expert-a\",row=\"0\"";
    // The merged series count every request; the worker label splits them 5 and 5.
    assert_eq!(
        sample(
            &text,
            "coebench_requests_total",
            &format!("{row},outcome=\"ok\"")
        ),
        Some(10.0),
        "{text}"
    );
    for worker in 0..2 {
        let labels = format!("{row},worker=\"{worker}\"");
        assert_eq!(
            sample(&text, "coebench_worker_requests_total", &labels),
            Some(5.0),
            "{text}"
        );
        assert!(sample(&text, "coebench_worker_client_saturated", &labels).is_some());
    }
    sim.shutdown().await.unwrap();
}
