//! Every fault mode of the simulator over real HTTP: injected errors, rate limits, API keys,
//! slow first byte, stalls, disconnects and malformed events, each made certain (probability 1)
//! or impossible (probability 0) so the tests are deterministic.

use std::time::Duration;

use crate::support::*;
use coebench_simulator::{FaultKind, Simulator, SimulatorConfig};
use serde_json::Value;

fn with_faults(model_faults: &str) -> SimulatorConfig {
    let yaml = format!(
        "{BASE}\nfaults:\n{}",
        model_faults
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    config(&yaml)
}

#[tokio::test]
async fn injected_errors_answer_500_or_503_per_model() {
    let mut config = with_faults("error: {status: 503}");
    config.models[1].faults.error = Some(coebench_simulator::ErrorFault {
        probability: 1.0,
        status: 500,
    });
    config.models[2].faults.error = Some(coebench_simulator::ErrorFault {
        probability: 0.0,
        status: 500,
    });
    let sim = start_config(config).await;
    let addr = sim.local_addr();
    let global = stream_chat(addr, "e1", "alpha", 2).await;
    assert_eq!(global.status, 503);
    assert_eq!(global.json()["error"]["type"], "server_error");
    let per_model = stream_chat(addr, "e2", "beta", 2).await;
    assert_eq!(per_model.status, 500);
    let never = stream_chat(addr, "e3", "eye", 2).await;
    assert_eq!(never.status, 200);
    let t = sim.truth_for("e1").unwrap();
    assert_eq!(
        (t.http_status, t.faults.clone()),
        (503, vec![FaultKind::Error])
    );
    assert!(sim.truth_for("e3").unwrap().faults.is_empty());
}

#[tokio::test]
async fn the_token_bucket_answers_429_with_retry_after() {
    let sim = start_config(with_faults("rate_limit: {requests_per_sec: 0.5, burst: 2}")).await;
    let addr = sim.local_addr();
    assert_eq!(stream_chat(addr, "r1", "alpha", 2).await.status, 200);
    assert_eq!(stream_chat(addr, "r2", "beta", 2).await.status, 200);
    let limited = stream_chat(addr, "r3", "alpha", 2).await;
    assert_eq!(limited.status, 429);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(limited.json()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(
        sim.truth_for("r3").unwrap().faults,
        vec![FaultKind::RateLimit]
    );
}

#[tokio::test]
async fn a_required_key_is_checked_and_never_echoed() {
    let mut config = config(BASE);
    config.api_key = Some("s3cret-key".into());
    let sim = start_config(config).await;
    let addr = sim.local_addr();
    let body = chat("beta", "hi", 2);
    let none = post(addr, "/v1/chat/completions", &[], &body).await;
    let wrong = post(
        addr,
        "/v1/chat/completions",
        &[("authorization", "Bearer wrong-guess")],
        &body,
    )
    .await;
    for reply in [&none, &wrong] {
        assert_eq!(reply.status, 401);
        let text = reply.text();
        assert!(
            !text.contains("s3cret-key") && !text.contains("wrong-guess"),
            "{text}"
        );
        assert_eq!(reply.json()["error"]["type"], "authentication_error");
    }
    let bearer = post(
        addr,
        "/v1/chat/completions",
        &[("authorization", "Bearer s3cret-key")],
        &body,
    )
    .await;
    assert_eq!(bearer.status, 200);
    let key = post(
        addr,
        "/v1/chat/completions",
        &[("key", "s3cret-key")],
        &body,
    )
    .await;
    assert_eq!(key.status, 200);
    let models = send(addr, "GET", "/v1/models", &[], None).await;
    assert_eq!(models.status, 401);
    for record in sim.truth() {
        let json = serde_json::to_string(&record).unwrap();
        assert!(!json.contains("s3cret-key"));
    }
}

#[tokio::test]
async fn slow_first_byte_delays_the_headers() {
    let sim = start_config(with_faults("slow_first_byte: {delay_ms: 120}")).await;
    let reply = stream_chat(sim.local_addr(), "slow", "eye", 2).await;
    assert_eq!(reply.status, 200);
    assert!(reply.headers_at - reply.sent_at >= Duration::from_millis(120));
    let t = sim.truth_for("slow").unwrap();
    assert_eq!(t.faults, vec![FaultKind::SlowFirstByte]);
    assert!(t.submitted_s.unwrap() - t.arrival_s >= 0.12);
}

#[tokio::test]
async fn a_stall_pauses_the_stream_after_n_tokens() {
    let sim = start_config(with_faults("stall: {after_tokens: 2, duration_ms: 150}")).await;
    let reply = stream_chat(sim.local_addr(), "st", "eye", 4).await;
    assert_eq!(reply.status, 200);
    let tokens: Vec<_> = reply
        .sse_events()
        .into_iter()
        .filter(|(_, d)| d.contains("\"content\""))
        .collect();
    assert_eq!(tokens.len(), 4);
    // Token 3 cannot arrive before the pause is over (a gap between arrivals would be fragile:
    // token 2 itself may arrive late on a busy machine).
    assert!(
        tokens[2].0 - reply.sent_at >= Duration::from_millis(150),
        "no pause after token 2"
    );
    assert!(reply.text().ends_with("data: [DONE]\n\n"));
    let t = sim.truth_for("st").unwrap();
    assert_eq!(t.faults, vec![FaultKind::Stall]);
    assert!(t.last_token_s.unwrap() - t.first_token_s.unwrap() >= 0.15);
    // The server-side metrics do not include the network stall.
    assert!(t.server_e2e_s.unwrap() < 0.1);
}

#[tokio::test]
async fn a_disconnect_cuts_the_chunked_body_after_n_tokens() {
    let sim = start_config(with_faults("disconnect: {after_tokens: 2}")).await;
    let reply = stream_chat(sim.local_addr(), "cut", "eye", 6).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body_error.is_some(), "the body must not end cleanly");
    let text = reply.text();
    assert_eq!(text.matches("\"content\"").count(), 2);
    assert!(!text.contains("[DONE]") && !text.contains("usage"));
    let t = sim.truth_for("cut").unwrap();
    assert_eq!(t.faults, vec![FaultKind::Disconnect]);
    assert_eq!(t.completion_tokens, Some(2));
}

#[tokio::test]
async fn a_malformed_event_is_invalid_json_and_the_stream_goes_on() {
    let sim = start_config(with_faults("malformed_event: {after_tokens: 1}")).await;
    let reply = stream_chat(sim.local_addr(), "bad", "eye", 3).await;
    let events = reply.sse_events();
    let invalid: Vec<_> = events
        .iter()
        .filter(|(_, d)| d != "[DONE]" && serde_json::from_str::<Value>(d).is_err())
        .collect();
    assert_eq!(invalid.len(), 1, "{events:?}");
    let index = events
        .iter()
        .position(|(_, d)| serde_json::from_str::<Value>(d).is_err())
        .unwrap();
    // After the role chunk and one token.
    assert_eq!(index, 2);
    assert!(reply.text().ends_with("data: [DONE]\n\n"));
    assert_eq!(
        sim.truth_for("bad").unwrap().faults,
        vec![FaultKind::MalformedEvent]
    );
}

#[tokio::test]
async fn a_client_that_leaves_is_recorded() {
    let sim = start(BASE).await;
    let (status, body) = open_stream(sim.local_addr(), "gone", "beta", 400).await;
    assert_eq!(status, 200);
    drop(body);
    let t = sim
        .wait_for_truth("gone", Duration::from_secs(5))
        .await
        .expect("recorded although the client left");
    assert!(t.client_disconnected);
    assert!(t.completion_tokens.unwrap() < 400);
}

#[tokio::test]
async fn start_refuses_an_over_capacity_bundle() {
    let mut config = config(BASE);
    config.memory.ddr_capacity_gb = 8.0;
    let err = Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap_err();
    let text = err.to_string();
    for part in [
        "alpha 6 GB",
        "beta 5 GB",
        "eye 1 GB",
        "spec 1 GB",
        "13 GB",
        "8 GB",
    ] {
        assert!(text.contains(part), "{part} missing from: {text}");
    }
}
