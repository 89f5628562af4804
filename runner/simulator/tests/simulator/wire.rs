//! Wire formats of the simulator over real HTTP: SambaNova Cloud streaming and non-streaming,
//! plain OpenAI, SambaStudio generic v1/v2, the model list, and error answers.

use crate::support::*;
use coebench_plan::Route;
use coebench_simulator::SimulatorConfig;
use coebench_support::tokenizer::{TokenCounter, Tokenizer};
use serde_json::{Value, json};

/// Every field of SambaNova's usage block (kit-reference 4.1) except `acceptance_rate`.
const SAMBANOVA_USAGE_FIELDS: &[&str] = &[
    "is_last_response",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "time_to_first_token",
    "total_latency",
    "start_time",
    "end_time",
    "total_tokens_per_sec",
    "completion_tokens_per_sec",
    "completion_tokens_after_first_per_sec",
    "completion_tokens_after_first_per_sec_first_ten",
    "batch_size_used",
    "stop_reason",
];

/// Parses a stream the way the kit does: JSON-parse every event but `[DONE]`; an event without
/// (or with null) `usage` is a token event when `choices[0].finish_reason` is null and
/// `choices[0].delta.content` is not; an event with `usage` gives the response dict.
fn parse_like_the_kit(reply: &Reply) -> (Vec<String>, Option<Value>) {
    let mut tokens = Vec::new();
    let mut usage = None;
    for (_, data) in reply.sse_events() {
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&data).expect("every event is JSON");
        match v.get("usage") {
            Some(u) if !u.is_null() => usage = Some(u.clone()),
            _ => {
                let choice = &v["choices"][0];
                let finish = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
                if let (true, Some(content)) = (
                    finish.is_null(),
                    choice["delta"].get("content").and_then(Value::as_str),
                ) {
                    tokens.push(content.to_string());
                }
            }
        }
    }
    (tokens, usage)
}

#[tokio::test]
async fn sambanova_stream_parses_like_the_kit_with_every_usage_field() {
    let sim = start(BASE).await;
    let reply = stream_chat(sim.local_addr(), "req-1", "alpha", 6).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(reply.header("x-request-id").as_deref(), Some("req-1"));
    let (tokens, usage) = parse_like_the_kit(&reply);
    assert_eq!(tokens.len(), 6, "one token per content chunk");
    let text = tokens.concat();
    assert_eq!(Tokenizer::embedded().count_tokens(&text), 6);
    let usage = usage.expect("a usage chunk");
    for field in SAMBANOVA_USAGE_FIELDS {
        assert!(usage.get(*field).is_some(), "usage lacks {field}: {usage}");
    }
    assert!(
        usage.get("acceptance_rate").is_none(),
        "not a speculative model"
    );
    assert_eq!(usage["completion_tokens"], 6);
    assert_eq!(usage["stop_reason"], "length");
    assert_eq!(usage["is_last_response"], true);

    let events = reply.sse_events();
    let first: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(first["choices"][0]["delta"], json!({"role": "assistant"}));
    assert_eq!(first["system_fingerprint"], "fastcoe");
    let last_json: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
    assert_eq!(last_json["choices"], json!([]));
    assert_eq!(events.last().unwrap().1, "[DONE]");

    // Usage agrees with the ground truth, exactly.
    let truth = sim.truth_for("req-1").expect("a truth record");
    assert_eq!(truth.route, Some(Route::Chat));
    assert!(truth.stream);
    assert_eq!(usage["time_to_first_token"].as_f64(), truth.server_ttft_s);
    assert_eq!(usage["total_latency"].as_f64(), truth.server_e2e_s);
    assert_eq!(
        usage["prompt_tokens"].as_u64(),
        truth.prompt_tokens.map(u64::from)
    );
    assert_eq!(truth.completion_tokens, Some(6));
    assert_eq!(truth.chunks, 6);
    assert_eq!(truth.http_status, 200);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn sambanova_non_streaming_answers_one_body_with_usage() {
    let sim = start(BASE).await;
    let mut body = chat("beta", "hello there", 4);
    body["stream"] = json!(false);
    let reply = post(sim.local_addr(), "/v1/chat/completions", &[], &body).await;
    assert_eq!(reply.status, 200);
    let v = reply.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(Tokenizer::embedded().count_tokens(content), 4);
    for field in SAMBANOVA_USAGE_FIELDS {
        assert!(v["usage"].get(*field).is_some(), "usage lacks {field}");
    }
    let id = reply
        .header("x-request-id")
        .expect("a generated request id");
    let truth = sim.truth_for(&id).expect("recorded under the generated id");
    assert!(!truth.stream);
    assert_eq!(v["usage"]["total_latency"].as_f64(), truth.server_e2e_s);
}

#[tokio::test]
async fn sambastudio_openai_compatible_paths_are_served() {
    let sim = start(BASE).await;
    let reply = post(
        sim.local_addr(),
        "/openai/v1/some-project/some-endpoint/chat/completions",
        &[],
        &chat("Bundle/beta", "hi", 2),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(stream_usage(&reply).unwrap()["completion_tokens"], 2);
}

#[tokio::test]
async fn openai_mode_sends_plain_usage_only_when_asked() {
    let mut config = config(BASE);
    config.api = coebench_simulator::ApiMode::Openai;
    let sim = start_config(config.clone()).await;
    let with = stream_chat(sim.local_addr(), "a", "beta", 3).await;
    let usage = stream_usage(&with).expect("usage when include_usage is true");
    assert_eq!(
        usage,
        json!({"prompt_tokens": usage["prompt_tokens"], "completion_tokens": 3, "total_tokens": usage["total_tokens"]})
    );
    assert!(!with.text().contains("fastcoe"));
    let mut body = chat("beta", "hi", 3);
    body["stream_options"] = json!({"include_usage": false});
    let without = post(sim.local_addr(), "/v1/chat/completions", &[], &body).await;
    assert_eq!(stream_usage(&without), None);
    assert!(without.text().ends_with("data: [DONE]\n\n"));
    sim.shutdown().await.unwrap();

    config.omit_usage = true;
    let sim = start_config(config).await;
    let reply = stream_chat(sim.local_addr(), "b", "beta", 3).await;
    assert_eq!(
        stream_usage(&reply),
        None,
        "omit_usage wins over include_usage"
    );
    let (tokens, _) = parse_like_the_kit(&reply);
    assert_eq!(tokens.len(), 3);
}

fn generic_final(line: &str, v2: bool) -> Value {
    let v: Value = serde_json::from_str(line).unwrap();
    if v2 {
        v["result"]["items"][0]["value"].clone()
    } else {
        v["result"]["responses"][0].clone()
    }
}

#[tokio::test]
async fn sambastudio_generic_v1_and_v2_with_key_header_and_bundle_experts() {
    let mut config = config(BASE);
    config.api_key = Some("studio-key".into());
    config.default_expert = Some("beta".into());
    let sim = start_config(config).await;
    let addr = sim.local_addr();
    let v1 = json!({"instance": "Say something.", "params": {
        "max_tokens_to_generate": {"type": "int", "value": "4"},
        "select_expert": {"type": "str", "value": "Bundle/alpha"},
        "process_prompt": {"type": "bool", "value": "False"},
        "ignore_eos": {"type": "bool", "value": "True"},
    }});
    let v2 = json!({"items": [{"id": "item1", "value": "Say something."}], "params": {
        "max_tokens_to_generate": 4, "select_expert": "Bundle/alpha", "process_prompt": false,
        "ignore_eos": true,
    }});
    for (path, body, is_v2) in [
        ("/api/predict/generic/stream/p/e", &v1, false),
        ("/api/v2/predict/generic/stream/p/e", &v2, true),
    ] {
        let reply = post(addr, path, &[("key", "studio-key")], body).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let lines = reply.json_lines();
        assert_eq!(lines.len(), 5, "4 token lines and the final one");
        let mut text = String::new();
        for (_, line) in &lines[..4] {
            let v = generic_final(line, is_v2);
            assert_eq!(v["is_last_response"], false);
            text.push_str(v["stream_token"].as_str().unwrap());
        }
        let last = generic_final(&lines[4].1, is_v2);
        assert_eq!(last["is_last_response"], true);
        assert_eq!(last["completion"], text.as_str());
        assert_eq!(last["prompt"], "Say something.");
        for field in [
            "prompt_tokens_count",
            "completion_tokens_count",
            "total_tokens_count",
            "time_to_first_token",
            "model_execution_time",
            "throughput_after_first_token",
            "batch_size_used",
            "start_time",
            "end_time",
            "stop_reason",
        ] {
            assert!(
                last.get(field).is_some(),
                "{path}: final line lacks {field}"
            );
        }
        assert_eq!(last["completion_tokens_count"], 4);
        let id = reply.header("x-request-id").unwrap();
        let truth = sim.truth_for(&id).unwrap();
        assert_eq!(truth.model.as_deref(), Some("alpha"));
        assert_eq!(
            truth.route,
            Some(if is_v2 {
                Route::GenericV2
            } else {
                Route::GenericV1
            })
        );
        assert_eq!(last["time_to_first_token"].as_f64(), truth.server_ttft_s);
        assert_eq!(last["model_execution_time"].as_f64(), truth.server_e2e_s);
        // Generic prompts carry no chat template.
        assert_eq!(
            truth.prompt_tokens,
            Some(Tokenizer::embedded().count_tokens("Say something.") as u32)
        );
    }
    // Without select_expert, the default expert answers.
    let body =
        json!({"items": [{"id": "item1", "value": "x"}], "params": {"max_tokens_to_generate": 2}});
    let reply = post(
        addr,
        "/api/v2/predict/generic/stream/p/e",
        &[("key", "studio-key")],
        &body,
    )
    .await;
    assert_eq!(reply.status, 200);
    let truth = sim
        .truth_for(&reply.header("x-request-id").unwrap())
        .unwrap();
    assert_eq!(truth.model.as_deref(), Some("beta"));
}

#[tokio::test]
async fn the_model_list_names_every_model() {
    let sim = start(BASE).await;
    let reply = send(sim.local_addr(), "GET", "/v1/models", &[], None).await;
    assert_eq!(reply.status, 200);
    let ids: Vec<String> = reply.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["alpha", "beta", "eye", "spec"]);
}

#[tokio::test]
async fn bad_requests_get_openai_style_errors() {
    let sim = start(BASE).await;
    let addr = sim.local_addr();
    let bad_json = send(addr, "POST", "/v1/chat/completions", &[], None).await;
    assert_eq!(bad_json.status, 400);
    assert_eq!(bad_json.json()["error"]["code"], "invalid_json");
    assert_eq!(bad_json.json()["error"]["type"], "invalid_request_error");

    let unknown = stream_chat(addr, "u", "gamma", 3).await;
    assert_eq!(unknown.status, 404);
    let message = unknown.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("gamma") && message.contains("alpha"),
        "{message}"
    );

    let too_long = stream_chat(addr, "t", "alpha", 600).await;
    assert_eq!(too_long.status, 400);
    let message = too_long.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("600") && message.contains("512"),
        "{message}"
    );
    assert_eq!(too_long.json()["error"]["code"], "context_length_exceeded");
    let truth = sim.truth_for("t").unwrap();
    assert_eq!(truth.http_status, 400);

    let route = send(addr, "GET", "/nowhere", &[], None).await;
    assert_eq!(route.status, 404);
}

fn image_body(model: &str, w: u16, h: u16) -> Value {
    let mut jpeg = Vec::new();
    let pixels = vec![90u8; usize::from(w) * usize::from(h) * 3];
    jpeg_encoder::Encoder::new(&mut jpeg, 80)
        .encode(&pixels, w, h, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    let url = format!("data:image/png;base64,{}", base64(&jpeg));
    json!({
        "model": model, "max_tokens": 2, "ignore_eos": true, "stream": true,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in the picture?"},
            {"type": "image_url", "image_url": {"url": url}},
        ]}],
    })
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            out.push(if k <= chunk.len() {
                T[((n >> (18 - 6 * k)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

#[tokio::test]
async fn images_cost_patches_on_vision_models_and_are_refused_elsewhere() {
    let mut config: SimulatorConfig = config(BASE);
    config.chat_template_tokens = 7;
    let sim = start_config(config).await;
    let addr = sim.local_addr();
    let reply = post(
        addr,
        "/v1/chat/completions",
        &[("x-request-id", "img")],
        &image_body("eye", 100, 40),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let truth = sim.truth_for("img").unwrap();
    let image_tokens = 100u32.div_ceil(16) * 40u32.div_ceil(16);
    assert_eq!(truth.image_tokens, image_tokens);
    let text = Tokenizer::embedded().count_tokens("What is in the picture?") as u32;
    assert_eq!(truth.prompt_tokens, Some(text + 7 + image_tokens));

    let refused = post(
        addr,
        "/v1/chat/completions",
        &[],
        &image_body("alpha", 10, 10),
    )
    .await;
    assert_eq!(refused.status, 400);
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("alpha") && message.contains("images"),
        "{message}"
    );
}

#[tokio::test]
async fn without_ignore_eos_a_seeded_natural_length_may_stop_early() {
    let sim = start(BASE).await;
    let addr = sim.local_addr();
    let mut body = chat("alpha", "Go on.", 10);
    body["ignore_eos"] = json!(false);
    let natural = post(
        addr,
        "/v1/chat/completions",
        &[("x-request-id", "n")],
        &body,
    )
    .await;
    let usage = stream_usage(&natural).unwrap();
    let n = usage["completion_tokens"].as_u64().unwrap();
    assert!((2..=3).contains(&n), "natural length {n} outside [2, 3]");
    assert_eq!(usage["stop_reason"], "stop");
    let exact = stream_chat(addr, "e", "alpha", 10).await;
    let usage = stream_usage(&exact).unwrap();
    assert_eq!(usage["completion_tokens"], 10);
    assert_eq!(usage["stop_reason"], "length");
}

#[tokio::test]
async fn speculative_models_emit_bursts_and_report_acceptance() {
    let sim = start(BASE).await;
    let reply = stream_chat(sim.local_addr(), "s", "spec", 40).await;
    let (tokens, usage) = parse_like_the_kit(&reply);
    let usage = usage.unwrap();
    assert_eq!(usage["completion_tokens"], 40);
    assert_eq!(Tokenizer::embedded().count_tokens(&tokens.concat()), 40);
    assert!(tokens.len() < 40, "{} chunks for 40 tokens", tokens.len());
    let rate = usage["acceptance_rate"].as_f64().expect("acceptance_rate");
    // Tokens after the first per decode step: between 1 and draft + 1.
    assert!((1.0..=5.0).contains(&rate), "{rate}");
    assert_eq!(rate, 39.0 / (tokens.len() - 1) as f64);
    assert_eq!(sim.truth_for("s").unwrap().acceptance_rate, Some(rate));
}
