//! HTTPS end to end: the engine against the simulator serving TLS with a certificate it
//! generated at start. A run that trusts the certificate (plan `endpoint.caCertificate`)
//! succeeds; one that does not fails every request saying how to trust it; a missing file stops
//! the run before anything is sent. Under TLS the client's stamps stay those of the encrypted
//! bytes at its socket: on a client runtime kept busy by a task that blocks it for
//! [`HOG`] at a time, TTFT and inter-token gaps still agree with the simulator's socket-level
//! truth far more closely than the hand-over of decrypted frames could (that lags by up to
//! [`HOG`], half of it on average).

use std::time::{Duration, Instant};

use coebench_plan::ApiKind;
use coebench_plan::report::RunOutcome;
use coebench_runner::client::{ClientOptions, EndpointClient, RequestSpec};
use coebench_runner::credentials::ResolvedEndpoint;
use coebench_simulator::{StartOptions, TlsSetting};
use coebench_test_support::engine_support::*;

/// How long the busy task blocks the client's only thread each time it runs.
const HOG: Duration = Duration::from_millis(20);

/// The largest median error accepted, against a median of about `HOG / 2` (TTFT) or `HOG / 3`
/// (inter-token gaps) if frames were stamped when handed over after decryption.
const MEDIAN_LIMIT_S: f64 = 0.004;

/// Start options serving HTTPS with a generated certificate written to `cert`.
fn tls_options(cert: &std::path::Path) -> StartOptions {
    StartOptions {
        tls: Some(TlsSetting::Generated {
            names: Vec::new(),
            cert_out: Some(cert.to_path_buf()),
        }),
        record_token_times: true,
        ..StartOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_https_trusts_the_given_certificate_and_fails_clearly_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("sim-cert.pem");
    let sim = start_simulator_with(&bundle_yaml(""), tls_options(&cert)).await;
    assert!(sim.base_url().starts_with("https://127.0.0.1:"));
    assert_eq!(
        std::fs::read_to_string(&cert).unwrap(),
        sim.certificate_pem().unwrap()
    );

    let mut plan = plan_against(
        &sim,
        vec![concurrency_row("expert-a", 50, 8, 6, 3)],
        dir.path(),
    );
    plan.endpoint.ca_certificate = Some(cert.display().to_string());
    let trusted = run(plan.clone()).await;
    assert_eq!(
        trusted.outcome,
        RunOutcome::Succeeded,
        "{:?}",
        trusted.message
    );
    assert_eq!(trusted.rows[0].num_completed_requests, 6);
    for r in individual_responses(&trusted, 0) {
        let id = r["request_id"].as_str().unwrap();
        assert!(sim.truth_for(id).is_some(), "the simulator served {id}");
    }

    // Without the certificate: every request fails at the handshake, and says how to fix it.
    plan.endpoint.ca_certificate = None;
    plan.output.run_name = Some("untrusted".into());
    let untrusted = run(plan.clone()).await;
    assert_ne!(untrusted.outcome, RunOutcome::Succeeded);
    let records = individual_responses(&untrusted, 0);
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r["error_code"], "connect", "{r}");
        let message = r["error_msg"].as_str().unwrap();
        assert!(
            message.contains("not trusted") && message.contains("caCertificate"),
            "{message}"
        );
    }

    // A certificate file that is not there: the run does not start, and names the file.
    plan.endpoint.ca_certificate = Some(dir.path().join("nowhere.pem").display().to_string());
    plan.output.run_name = Some("missing".into());
    let err = run_with_env(plan, &[("SAMBANOVA_API_KEY", KEY)])
        .await
        .expect_err("a missing CA certificate stops the run")
        .to_string();
    assert!(
        err.contains("nowhere.pem") && err.contains("caCertificate"),
        "{err}"
    );
    sim.shutdown().await.unwrap();
}

/// A slow, steady stream: one token frame every 50 ms (longer than [`HOG`], so two frames
/// never wait in one read and each keeps its own kernel time).
const PACED: &str = r#"
api: openai
seed: 2
batching_window_ms: 2
executors: 4
memory: {ddr_capacity_gb: 100, hbm_capacity_gb: 100, load_bandwidth_gb_per_s: 1000}
models:
  - name: paced
    weights_gb: 1
    prefill_tokens_per_sec: 100000
    batch_sizes: [1, 8]
    decode_tokens_per_sec: [20, 20]
    max_sequence_length: 4096
"#;

/// Errors of one request against its truth: (TTFT error, inter-token gap errors), seconds.
fn errors_of(
    m: &coebench_runner::client::measurement::Measurement,
    truth: &coebench_simulator::TruthRecord,
) -> (f64, Vec<f64>) {
    let arrival = truth.received_unix_us.unwrap_or(truth.arrival_unix_us);
    let true_ttft = (truth.first_token_written_unix_us.unwrap() - arrival) as f64 / 1e6;
    let ttft = m.token_events[0].at.duration_since(m.start).as_secs_f64();
    let offsets = truth.token_written_offsets_us.as_ref().unwrap();
    let gaps = m
        .token_events
        .windows(2)
        .zip(offsets.windows(2))
        .map(|(client, written)| {
            client[1].at.duration_since(client[0].at).as_secs_f64()
                - f64::from(written[1].saturating_sub(written[0])) / 1e6
        })
        .collect();
    (ttft - true_ttft, gaps)
}

#[tokio::test(flavor = "current_thread")]
async fn tls_stamps_are_the_encrypted_bytes_at_the_socket_even_on_a_busy_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("sim-cert.pem");
    let sim = start_simulator_with(PACED, tls_options(&cert)).await;
    let client = EndpointClient::new(
        ResolvedEndpoint {
            api: ApiKind::Openai,
            url: sim.base_url(),
            api_key: None,
            ca_certificate: Some(cert),
        },
        ClientOptions::default(),
    )
    .unwrap();
    let prepared = client
        .prepare(&RequestSpec {
            model: "paced",
            prompt: "Count slowly.",
            image: None,
            max_tokens: 12,
            ignore_eos: Some(true),
            min_tokens: None,
            sampling_params: None,
        })
        .unwrap();
    // The busy task: blocks the client's only thread for HOG, lets the rest run, again.
    let busy = tokio::spawn(async {
        loop {
            std::thread::sleep(HOG);
            tokio::task::yield_now().await;
        }
    });
    let started = Instant::now();
    let mut requests = Vec::new();
    for round in 0..2 {
        // Six streams at once, on this (the busy) thread.
        let sends: Vec<_> = (0..6)
            .map(|i| {
                let id = format!("tls-{round}-{i}");
                let (client, prepared) = (client.clone(), prepared.clone());
                tokio::spawn(async move {
                    let m = client.send(&prepared, &id, Duration::from_secs(60)).await;
                    (id, m)
                })
            })
            .collect();
        for send in sends {
            requests.push(send.await.unwrap());
        }
    }
    busy.abort();
    let (mut ttft_errors, mut gap_errors) = (Vec::new(), Vec::new());
    for (id, m) in &requests {
        assert!(m.error.is_none(), "{id}: {:?}", m.error);
        assert_eq!(m.token_events.len(), 12, "{id}");
        let truth = sim
            .wait_for_truth(id, Duration::from_secs(5))
            .await
            .unwrap();
        let (ttft, gaps) = errors_of(m, &truth);
        ttft_errors.push(ttft);
        gap_errors.extend(gaps.into_iter().map(f64::abs));
    }
    let ttft_p50 = median(ttft_errors.clone());
    let gap_p50 = median(gap_errors.clone());
    eprintln!(
        "over HTTPS on a busy runtime ({:.1} s): TTFT error p50 {:.6} s (all {:?}), |inter-token \
         error| p50 {:.6} s over {} gaps",
        started.elapsed().as_secs_f64(),
        ttft_p50,
        ttft_errors,
        gap_p50,
        gap_errors.len()
    );
    assert!(
        ttft_p50.abs() < MEDIAN_LIMIT_S,
        "TTFT error p50 {ttft_p50} s: the stamps are not the socket's"
    );
    assert!(
        gap_p50 < MEDIAN_LIMIT_S,
        "inter-token error p50 {gap_p50} s: the stamps are not the socket's"
    );
    sim.shutdown().await.unwrap();
}
