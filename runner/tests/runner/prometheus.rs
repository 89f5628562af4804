//! The Prometheus exporter on a real run: the engine against the simulator over loopback, with
//! [`RunMetrics`] as an observer, and the exported counters and histograms checked against the
//! run's own summaries and per-request files (errors by class included).

use std::collections::HashMap;
use std::sync::Arc;

use coebench_runner::client::ClientOptions;
use coebench_runner::engine::load::StopSignal;
use coebench_runner::engine::observer::RunObserver;
use coebench_runner::engine::run::{PlanSource, RunSettings, run_plan};
use coebench_runner::prometheus::{OUTCOMES, RunLabels, RunMetrics};
use coebench_test_support::engine_support::*;

/// The value of the sample `name{labels}` in Prometheus text `text`.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_against_the_simulator_counts_requests_tokens_and_error_classes() {
    let sim = start_simulator(&bundle_yaml(RATE_LIMITED_AND_BROKEN_MODELS)).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_against(
        &sim,
        vec![
            concurrency_row("expert-a", 60, 12, 6, 2),
            concurrency_row("limited", 40, 8, 5, 5),
            concurrency_row("broken", 40, 8, 3, 1),
        ],
        dir.path(),
    );
    let metrics = Arc::new(RunMetrics::new(RunLabels {
        namespace: "perf".into(),
        benchmark: "nightly".into(),
        run: String::new(),
    }));
    let env: HashMap<String, String> = [("SAMBANOVA_API_KEY".to_string(), KEY.to_string())].into();
    let settings = RunSettings {
        source: PlanSource::default(),
        env: Box::new(move |name| env.get(name).cloned()),
        simulator_truth_log: None,
        client: ClientOptions::default(),
        distribution: None,
    };
    let observer: Arc<dyn RunObserver> = metrics.clone();
    let result = run_plan(plan, settings, observer, Arc::new(StopSignal::default()))
        .await
        .expect("the run starts");
    let text = metrics.encode(None).unwrap().body;

    let run = "namespace=\"perf\",benchmark=\"nightly\",run=\"test-run\"";
    assert_eq!(sample(&text, "coebench_run_rows", run), Some(3.0), "{text}");
    assert_eq!(
        sample(&text, "coebench_run_rows_finished_total", run),
        Some(3.0)
    );
    assert_eq!(sample(&text, "coebench_run_current_row", run), Some(2.0));

    let mut classes_seen = Vec::new();
    for (index, summary) in result.rows.iter().enumerate() {
        let row = format!("{run},model=\"{}\",row=\"{index}\"", summary.model);
        let get = |name: &str, extra: &str| {
            sample(&text, name, &format!("{row}{extra}"))
                .unwrap_or_else(|| panic!("no {name}{{{row}{extra}}} in\n{text}"))
        };
        assert_eq!(
            get("coebench_requests_total", ",outcome=\"ok\""),
            f64::from(summary.num_completed_requests),
            "row {index}"
        );
        let mut sent = 0.0;
        for outcome in OUTCOMES {
            let n = get(
                "coebench_requests_total",
                &format!(",outcome=\"{outcome}\""),
            );
            sent += n;
            if outcome != "ok" {
                let expected = summary
                    .error_class_frequency
                    .get(outcome)
                    .copied()
                    .unwrap_or(0);
                assert_eq!(n, f64::from(expected), "row {index} outcome {outcome}");
                if n > 0.0 {
                    classes_seen.push(outcome);
                }
            }
        }
        assert_eq!(sent, f64::from(summary.num_requests_started), "row {index}");
        assert_eq!(get("coebench_requests_in_flight", ""), 0.0);

        let records = individual_responses(&result, index);
        let total = |key: &str| -> f64 {
            records
                .iter()
                .filter(|r| r["error_code"].is_null())
                .filter_map(|r| r[key].as_f64())
                .sum()
        };
        assert_eq!(
            get("coebench_input_tokens_total", ""),
            total("number_input_tokens")
        );
        assert_eq!(
            get("coebench_output_tokens_total", ""),
            total("number_output_tokens")
        );
        let completed = f64::from(summary.num_completed_requests);
        assert_eq!(get("coebench_client_ttft_seconds_count", ""), completed);
        assert_eq!(
            get("coebench_client_end_to_end_latency_seconds_count", ""),
            completed
        );
        assert_eq!(
            get("coebench_client_ttft_seconds_bucket", ",le=\"+Inf\""),
            completed
        );
        let gaps: usize = records
            .iter()
            .filter_map(|r| r["client_inter_token_latencies_s"].as_array())
            .map(Vec::len)
            .sum();
        assert_eq!(
            get("coebench_client_inter_token_latency_seconds_count", ""),
            gaps as f64
        );
        let ttft_sum = get("coebench_client_ttft_seconds_sum", "");
        assert!(
            (ttft_sum - total("client_ttft_s")).abs() < 1e-6,
            "{ttft_sum} vs {}",
            total("client_ttft_s")
        );
    }
    classes_seen.sort();
    assert_eq!(classes_seen, ["http-5xx", "rate-limited"], "{text}");
    sim.shutdown().await.unwrap();
}

/// A child process killed when dropped, so a failing test leaves nothing running.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A stand-in Pushgateway on loopback: records the path and body of each request, answers 200.
async fn capture_gateway() -> (String, Arc<std::sync::Mutex<Vec<(String, String)>>>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let log = Arc::clone(&log);
                        async move {
                            let path = format!("{} {}", req.method(), req.uri().path());
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            log.lock()
                                .unwrap()
                                .push((path, String::from_utf8_lossy(&body).into_owned()));
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::new()),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

/// `GET /metrics` on `addr`, or `None` when nothing answers.
async fn scrape(addr: std::net::SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    Some(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_serves_pushes_and_lingers_until_interrupted() {
    let (gateway, pushed) = capture_gateway().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_coebench"))
            .args([
                "run",
                "--api",
                "simulator",
                "--model",
                "Meta-Llama-3.1-8B-Instruct",
            ])
            .args(["--input-tokens", "50", "--output-tokens", "10"])
            .args(["--num-requests", "4", "--concurrency", "2"])
            .args(["--run-name", "cli-run", "--no-progress"])
            .arg("--output-files-dir")
            .arg(dir.path().join("out"))
            .arg("--consolidated-results-dir")
            .arg(dir.path().join("consolidated"))
            .args(["--metrics-addr", &addr.to_string()])
            .args(["--metrics-label", "benchmark=adhoc"])
            .args(["--pushgateway", &gateway, "--metrics-linger", "120"])
            .env("COEBENCH_NAMESPACE", "perf")
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("coebench starts"),
    );

    // The run ends and is pushed; the process keeps serving the final state.
    let ok = "coebench_requests_total{namespace=\"perf\",benchmark=\"adhoc\",run=\"cli-run\",\
              model=\"Meta-Llama-3.1-8B-Instruct\",row=\"0\",outcome=\"ok\"} 4";
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let body = loop {
        let found = pushed.lock().unwrap().first().cloned();
        if let Some((path, body)) = found {
            assert_eq!(path, "PUT /metrics/job/coebench/instance/cli-run");
            break body;
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "coebench exited before pushing"
        );
        assert!(tokio::time::Instant::now() < deadline, "no push in 60 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(body.contains(ok), "pushed:\n{body}");
    let served = scrape(addr).await.expect("still serving after the run");
    assert!(served.contains(ok), "served:\n{served}");
    assert!(child.0.try_wait().unwrap().is_none(), "lingering");

    // An interrupt ends the linger at once; the run's own outcome is the exit code.
    let pid = i32::try_from(child.0.id()).unwrap();
    // SAFETY: sending a signal to our own child process.
    #[allow(unsafe_code)]
    let sent = unsafe { libc::kill(pid, libc::SIGINT) };
    assert_eq!(sent, 0);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still lingering after SIGINT"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
    assert!(scrape(addr).await.is_none(), "the server is gone");
}
