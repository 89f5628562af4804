//! The simulator's model of time, checked on its ground truth: HBM switching, dynamic
//! batching, executor queueing, and the timing formulas. Wall-clock assertions are loose lower
//! bounds only; exact checks are on the truth records, which the model computes.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;
use coebench_simulator::{Simulator, StartOptions, TruthRecord};

const EPS: f64 = 1e-9;

fn assert_close(actual: Option<f64>, expected: f64, what: &str) {
    let a = actual.unwrap_or_else(|| panic!("{what} missing"));
    assert!((a - expected).abs() < EPS, "{what}: {a} != {expected}");
}

#[tokio::test]
async fn alternating_models_that_do_not_fit_hbm_pay_switching_on_every_switch_only() {
    let sim = start(BASE).await;
    let addr = sim.local_addr();
    // alpha (6 GB) and beta (5 GB) never share the 10 GB HBM; bandwidth 100 GB/s.
    let order = [
        "alpha", "beta", "alpha", "beta", "alpha", "alpha", "beta", "beta",
    ];
    let expected = [0.06, 0.05, 0.06, 0.05, 0.06, 0.0, 0.05, 0.0];
    for (i, model) in order.iter().enumerate() {
        let reply = stream_chat(addr, &format!("sw{i}"), model, 2).await;
        assert_eq!(reply.status, 200);
    }
    for (i, want) in expected.iter().enumerate() {
        let t = sim.truth_for(&format!("sw{i}")).unwrap();
        let switching = t.switching_s.unwrap();
        if *want == 0.0 {
            assert_eq!(switching, 0.0, "request {i} ({}) was resident", order[i]);
        } else {
            assert_close(Some(switching), *want, &format!("request {i} switching"));
        }
        // Server TTFT is switching + prefill, nothing else.
        assert_close(
            t.server_ttft_s,
            switching + t.prefill_s.unwrap(),
            &format!("request {i} server TTFT"),
        );
    }
}

#[tokio::test]
async fn small_configurations_stay_resident_together() {
    let sim = start(BASE).await;
    let addr = sim.local_addr();
    // beta (5 GB) and eye (1 GB) fit the 10 GB HBM together: only first loads cost.
    for (i, model) in ["beta", "eye", "beta", "eye"].iter().enumerate() {
        stream_chat(addr, &format!("r{i}"), model, 2).await;
    }
    let switching: Vec<f64> = (0..4)
        .map(|i| {
            sim.truth_for(&format!("r{i}"))
                .unwrap()
                .switching_s
                .unwrap()
        })
        .collect();
    assert!((switching[0] - 0.05).abs() < EPS && (switching[1] - 0.01).abs() < EPS);
    assert_eq!(&switching[2..], &[0.0, 0.0]);
}

#[tokio::test]
async fn concurrent_requests_share_a_batch_with_equal_server_ttft() {
    let mut config = config(BASE);
    config.batching_window_ms = 250.0;
    let sim = start_config(config).await;
    let addr = sim.local_addr();
    let replies = futures_join(addr, &["b0", "b1", "b2"], "alpha", 4).await;
    let usages: Vec<_> = replies.iter().map(|r| stream_usage(r).unwrap()).collect();
    for u in &usages {
        // Three requests run at the smallest supported batch size holding them.
        assert_eq!(u["batch_size_used"], 4);
        assert_eq!(u["time_to_first_token"], usages[0]["time_to_first_token"]);
    }
    let truths: Vec<TruthRecord> = ["b0", "b1", "b2"]
        .iter()
        .map(|id| sim.truth_for(id).unwrap())
        .collect();
    for t in &truths {
        assert_eq!(t.batch_id, truths[0].batch_id);
        assert_eq!(t.batch_requests, Some(3));
        assert_eq!(t.batch_size_used, Some(4));
        assert_eq!(t.first_token_s, truths[0].first_token_s);
        assert_eq!(t.server_ttft_s, truths[0].server_ttft_s);
    }
    // The batch's prefill covers all three prompts.
    let prompts: u32 = truths.iter().map(|t| t.prompt_tokens.unwrap()).sum();
    assert_close(
        truths[0].prefill_s,
        f64::from(prompts) / 100_000.0,
        "batch prefill",
    );
    // Lockstep decode at the batch-size-4 speed (600 tokens/s per request).
    assert_close(
        truths[0].server_e2e_s,
        truths[0].server_ttft_s.unwrap() + 3.0 / 600.0,
        "server e2e",
    );
}

/// Sends one streaming chat request per id, all at once.
async fn futures_join(
    addr: std::net::SocketAddr,
    ids: &[&str],
    model: &str,
    max_tokens: u32,
) -> Vec<Reply> {
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let id = id.to_string();
            let model = model.to_string();
            tokio::spawn(async move { stream_chat(addr, &id, &model, max_tokens).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_busy_executor_queues_batches_and_queue_wait_is_not_server_ttft() {
    // beta only runs batches of 1 on the single executor: the second request waits.
    let sim = start(BASE).await;
    let addr = sim.local_addr();
    futures_join(addr, &["q0", "q1"], "beta", 150).await;
    let mut t: Vec<TruthRecord> = ["q0", "q1"]
        .iter()
        .map(|id| sim.truth_for(id).unwrap())
        .collect();
    t.sort_by(|a, b| a.batch_start_s.partial_cmp(&b.batch_start_s).unwrap());
    let (first, second) = (&t[0], &t[1]);
    assert_ne!(first.batch_id, second.batch_id);
    // The second batch starts when the first one's last token is out.
    let first_end = first.batch_start_s.unwrap() + first.server_e2e_s.unwrap();
    assert!((second.batch_start_s.unwrap() - first_end).abs() < 1e-6);
    assert!(
        second.queue_wait_s.unwrap() > 0.02,
        "{:?}",
        second.queue_wait_s
    );
    // Resident by then: its server TTFT is its prefill alone, without the queue wait.
    assert_eq!(second.switching_s, Some(0.0));
    assert_close(
        second.server_ttft_s,
        second.prefill_s.unwrap(),
        "server TTFT",
    );
}

#[tokio::test]
async fn two_executors_serve_two_batches_at_once() {
    let mut config = config(BASE);
    config.executors = 2;
    let sim = start_config(config).await;
    futures_join(sim.local_addr(), &["x0", "x1"], "beta", 150).await;
    let a = sim.truth_for("x0").unwrap();
    let b = sim.truth_for("x1").unwrap();
    assert_ne!(a.executor, b.executor);
    // Each executor has its own HBM, so both loaded beta.
    assert_close(a.switching_s, 0.05, "x0 switching");
    assert_close(b.switching_s, 0.05, "x1 switching");
    assert!(a.queue_wait_s.unwrap() < 0.02 && b.queue_wait_s.unwrap() < 0.02);
}

#[tokio::test]
async fn a_simple_request_matches_the_formulas_and_the_truth_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("truth.jsonl");
    let options = StartOptions {
        truth_log: Some(log.clone()),
        ..StartOptions::default()
    };
    let sim = Simulator::start_with(config(BASE), "127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let reply = stream_chat(sim.local_addr(), "simple", "beta", 20).await;
    let t = sim.truth_for("simple").unwrap();
    let prompt = f64::from(t.prompt_tokens.unwrap());
    assert_close(t.switching_s, 5.0 / 100.0, "switching = 5 GB / 100 GB/s");
    assert_close(t.prefill_s, prompt / 100_000.0, "prefill = tokens / speed");
    assert_close(t.server_ttft_s, 0.05 + prompt / 100_000.0, "server TTFT");
    assert_close(
        t.server_e2e_s,
        t.server_ttft_s.unwrap() + 19.0 / 1000.0,
        "server e2e",
    );
    let first = t.first_token_s.unwrap() - t.batch_start_s.unwrap();
    assert!((first - t.server_ttft_s.unwrap()).abs() < 1e-6);
    let last = t.last_token_s.unwrap() - t.batch_start_s.unwrap();
    assert!((last - t.server_e2e_s.unwrap()).abs() < 1e-6);
    assert!((t.e2e_s.unwrap() - (t.last_token_s.unwrap() - t.arrival_s)).abs() < 1e-9);
    assert_eq!(t.chunks, 20);
    // Loose wall-clock check: the client cannot have had the stream sooner than the model says.
    let (last_at, _) = reply.frames.last().unwrap();
    assert!(*last_at - reply.sent_at >= Duration::from_secs_f64(t.server_e2e_s.unwrap() - 0.002));
    let lag = t.timer_lag_max_us.expect("timer error measured");
    assert!(lag < 200_000.0, "timer lag {lag} µs");
    assert!(sim.timer_lag().count >= 20);
    // Arrival in Unix microseconds agrees with the relative time.
    assert!(t.arrival_unix_us > 1_600_000_000_000_000);

    sim.shutdown().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    // One line, byte for byte the record (parsing floats back may differ in the last bit).
    assert_eq!(text, format!("{}\n", serde_json::to_string(&t).unwrap()));
}

#[tokio::test]
async fn shutdown_lets_an_open_stream_finish() {
    let sim = start(BASE).await;
    let addr = sim.local_addr();
    let (status, body) = open_stream(addr, "late", "beta", 200).await;
    assert_eq!(status, 200);
    let reader = tokio::spawn(read_body(body));
    sim.shutdown().await.unwrap();
    let text = reader.await.unwrap().expect("the stream ends cleanly");
    assert!(text.ends_with("data: [DONE]\n\n"));
    // New connections are refused once it has stopped.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn the_same_seed_and_arrival_order_replay_the_same_choices() {
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let sim = start(BASE).await;
        let mut lengths = Vec::new();
        for i in 0..6 {
            let mut body = chat("alpha", "Continue.", 50);
            body["ignore_eos"] = serde_json::json!(false);
            let r = post(
                sim.local_addr(),
                "/v1/chat/completions",
                &[("x-request-id", &format!("d{i}"))],
                &body,
            )
            .await;
            let first: serde_json::Value = serde_json::from_str(&r.sse_events()[1].1).unwrap();
            lengths.push((
                stream_usage(&r).unwrap()["completion_tokens"].clone(),
                first["choices"][0]["delta"]["content"].clone(),
            ));
        }
        outputs.push(lengths);
    }
    assert_eq!(outputs[0], outputs[1]);
}

#[tokio::test]
async fn serve_runs_the_builtin_bundle_until_told_to_stop() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("t.jsonl");
    // Find a free port first, since serve() does not report the one it bound.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let options = coebench_simulator::ServeOptions {
        config: None,
        listen: addr,
        truth_log: Some(log.clone()),
        seed: Some(3),
        tls: None,
        reuse_port: false,
    };
    let server = tokio::spawn(coebench_simulator::serve(options, async move {
        let _ = stop_rx.await;
    }));
    let mut reply = None;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            reply = Some(stream_chat(addr, "cli", "Meta-Llama-3.1-8B-Instruct", 3).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(reply.expect("the server came up").status, 200);
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let record: TruthRecord = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(record.request_id, "cli");
    // The built-in bundle's chat template is counted.
    assert!(record.prompt_tokens.unwrap() > 37);
}

#[tokio::test]
async fn simulators_share_a_port_with_reuse_port_and_each_logs_the_clients_address() {
    let reuse = || StartOptions {
        reuse_port: true,
        ..StartOptions::default()
    };
    let first = Simulator::start_with(config(BASE), "127.0.0.1:0".parse().unwrap(), reuse())
        .await
        .unwrap();
    let port = first.local_addr();
    // Without SO_REUSEPORT a second simulator cannot bind the port; with it, both listen.
    let refused = Simulator::start_with(config(BASE), port, StartOptions::default()).await;
    assert!(refused.is_err(), "a plain bind of a taken port must fail");
    let second = Simulator::start_with(config(BASE), port, reuse())
        .await
        .unwrap();
    assert_eq!(second.local_addr(), port);
    // The kernel spreads connections over both; between them they served every request, and
    // each truth record names the client's address.
    for i in 0..24 {
        stream_chat(port, &format!("r{i}"), "beta", 2).await;
    }
    let (a, b) = (first.truth(), second.truth());
    assert_eq!(a.len() + b.len(), 24);
    assert!(
        !a.is_empty() && !b.is_empty(),
        "{} and {}",
        a.len(),
        b.len()
    );
    for record in a.iter().chain(&b) {
        let client: SocketAddr = record.client_address.as_ref().unwrap().parse().unwrap();
        assert!(client.ip().is_loopback(), "{client}");
    }
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}
