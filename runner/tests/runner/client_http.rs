//! Endpoint clients against a scripted HTTP server: request bodies and headers per flavour,
//! stream parsing, TTFT stamping, and every failure class.

use std::time::{Duration, Instant};

use coebench_plan::{ApiKind, ImageSize};
use coebench_runner::client::measurement::{ErrorKind, Measurement};
use coebench_runner::client::{ClientError, ClientOptions, EndpointClient, RequestSpec};
use coebench_runner::credentials::{ApiKey, ResolvedEndpoint};
use coebench_runner::workload::image::EncodedImage;
use coebench_test_support::scripted_server::*;

const KEY: &str = "sk-test-SECRET-0123";
const LONG: Duration = Duration::from_secs(10);

fn client(api: ApiKind, url: &str) -> EndpointClient {
    client_with(api, url, ClientOptions::default())
}

fn client_with(api: ApiKind, url: &str, options: ClientOptions) -> EndpointClient {
    EndpointClient::new(
        ResolvedEndpoint {
            api,
            url: url.to_string(),
            api_key: Some(ApiKey::new(KEY)),
            ca_certificate: None,
        },
        options,
    )
    .unwrap()
}

fn spec<'a>(model: &'a str, prompt: &'a str) -> RequestSpec<'a> {
    RequestSpec {
        model,
        prompt,
        image: None,
        max_tokens: 64,
        ignore_eos: None,
        min_tokens: None,
        sampling_params: None,
    }
}

async fn send_one(client: &EndpointClient, model: &str, timeout: Duration) -> Measurement {
    let prepared = client.prepare(&spec(model, "Say hello.")).unwrap();
    let m = client.send(&prepared, "req-1", timeout).await;
    assert_no_key(&m);
    m
}

fn assert_no_key(m: &Measurement) {
    if let Some(e) = &m.error {
        assert!(!e.message.contains(KEY), "key leaked: {}", e.message);
    }
}

/// A kit-style SambaNova Cloud stream: role chunk, content, content with finish_reason, usage.
fn sambanova_stream() -> Vec<Step> {
    vec![
        sse_head(),
        chunk(event(
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        )),
        chunk(content("Hello")),
        chunk(content(", wor")),
        chunk(event(
            r#"{"choices":[{"index":0,"delta":{"content":"ld"},"finish_reason":"length"}]}"#,
        )),
        chunk(event(
            r#"{"choices":[],"usage":{"is_last_response":true,"prompt_tokens":21,"completion_tokens":3,
                "total_tokens":24,"time_to_first_token":0.0915,"total_latency":0.168,
                "total_tokens_per_sec":369.0,"completion_tokens_per_sec":244.0,
                "completion_tokens_after_first_per_sec":0,"completion_tokens_after_first_per_sec_first_ten":0.0,
                "acceptance_rate":9.5,"batch_size_used":0,"stop_reason":"length"}}"#
                .replace('\n', " ")
                .as_str(),
        )),
        chunk("data: [DONE]\n\n"),
        last_chunk(),
    ]
}

#[tokio::test]
async fn sncloud_body_headers_and_full_usage() {
    let server = ScriptedServer::start(vec![sambanova_stream()]).await;
    let client = client(ApiKind::Sncloud, &server.url("/v1/"));
    let m = send_one(&client, "Meta-Llama-3.3-70B-Instruct", LONG).await;
    assert!(m.error.is_none(), "{:?}", m.error);

    let req = &server.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-request-id"), Some("req-1"));
    assert_eq!(
        req.json(),
        serde_json::json!({
            "messages": [{"role": "user", "content": "Say hello."}],
            "model": "Meta-Llama-3.3-70B-Instruct", "max_tokens": 64, "ignore_eos": true,
            "stream": true, "stream_options": {"include_usage": true}
        })
    );

    assert_eq!(m.generated_text, "Hello, world");
    assert_eq!(
        m.token_events.len(),
        3,
        "role-only chunk is not a token event"
    );
    assert_eq!(m.token_events.last().unwrap().text_end, 12);
    assert_eq!(m.stop_reason.as_deref(), Some("length"));
    let s = m.server.as_ref().unwrap();
    assert_eq!(
        (s.input_tokens, s.output_tokens, s.total_tokens),
        (Some(21), Some(3), Some(24))
    );
    assert_eq!(
        (s.ttft_s, s.end_to_end_latency_s),
        (Some(0.0915), Some(0.168))
    );
    assert_eq!(s.output_tokens_per_s, Some(0.0), "0 is a value");
    assert_eq!(s.output_tokens_after_first_per_s_first_ten, Some(0.0));
    assert_eq!(
        (s.total_tokens_per_s, s.acceptance_rate),
        (Some(369.0), Some(9.5))
    );
    assert_eq!(s.batch_size_used, Some(0));
    let headers_at = m.headers_at.unwrap();
    let first = m.first_event_at.unwrap();
    assert!(m.start <= headers_at && headers_at <= first);
    assert!(first <= m.token_events[0].at && m.token_events[2].at <= m.end);
    assert!(m.end_wall >= m.start_wall);
}

#[tokio::test]
async fn first_token_is_the_delayed_content_chunk_stamped_on_arrival() {
    let server = ScriptedServer::start(vec![vec![
        sse_head(),
        chunk(event(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#)),
        sleep_ms(120),
        // The event's first byte arrives now; the rest of it 80 ms later.
        chunk("data: {\"choices\":[{\"delta\":"),
        sleep_ms(80),
        chunk("{\"content\":\"Hi\"}}]}\n\n"),
        chunk(content(" there")),
        chunk("data: [DONE]\n\n"),
        last_chunk(),
    ]])
    .await;
    let client = client(ApiKind::Openai, &server.url("/v1"));
    let m = send_one(&client, "m", LONG).await;
    assert!(m.error.is_none(), "{:?}", m.error);
    let role_at = m.first_event_at.unwrap();
    let first_token = m.token_events[0].at;
    let second_token = m.token_events[1].at;
    assert!(first_token.duration_since(role_at) >= Duration::from_millis(100));
    // Stamped with the frame holding the first byte, not when the event completed.
    assert!(second_token.duration_since(first_token) >= Duration::from_millis(60));
    assert!(first_token.duration_since(m.start) >= Duration::from_millis(100));
}

#[tokio::test]
async fn openai_without_usage_or_key_or_ignore_eos() {
    let server = ScriptedServer::start(vec![vec![
        sse_head(),
        chunk(format!("{}{}", content("a"), content("b"))),
        chunk(": keep-alive\n\n"),
        chunk(event(
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
        )),
        chunk("data: [DONE]\n\n"),
        last_chunk(),
    ]])
    .await;
    let client = EndpointClient::new(
        ResolvedEndpoint {
            api: ApiKind::Openai,
            url: server.url("/v1/chat/completions"),
            api_key: None,
            ca_certificate: None,
        },
        ClientOptions {
            ignore_eos: false,
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let m = send_one(&client, "m", LONG).await;
    assert!(m.error.is_none(), "{:?}", m.error);
    assert!(m.server.is_none(), "a missing usage chunk is not an error");
    assert_eq!(m.generated_text, "ab");
    assert_eq!(m.token_events.len(), 2);
    assert_eq!(m.stop_reason.as_deref(), Some("stop"));
    let req = &server.requests()[0];
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.header("authorization"), None);
    assert!(req.json().get("ignore_eos").is_none());
}

fn generic_stream(v2: bool) -> Vec<Step> {
    let wrap = |value: &str| {
        if v2 {
            format!("{{\"result\":{{\"items\":[{{\"id\":\"item1\",\"value\":{value}}}]}}}}\n")
        } else {
            format!("{{\"result\":{{\"responses\":[{value}]}}}}\n")
        }
    };
    vec![
        lines_head(),
        chunk(wrap(r#"{"stream_token":"Bon","is_last_response":false}"#)),
        chunk(wrap(r#"{"stream_token":"jour","is_last_response":false}"#)),
        chunk(wrap(
            r#"{"is_last_response":true,"completion":"Bonjour","prompt_tokens_count":7,
               "completion_tokens_count":2,"total_tokens_count":9,"time_to_first_response":0.05,
               "model_execution_time":0.3,"completion_tokens_per_sec_after_first_response":40.0,
               "batch_size_used":2,"stop_reason":"max_len_reached"}"#
                .replace('\n', " ")
                .as_str(),
        )),
        last_chunk(),
    ]
}

#[tokio::test]
async fn sambastudio_v2_generic_bundle_expert() {
    let server = ScriptedServer::start(vec![generic_stream(true)]).await;
    let client = client(
        ApiKind::Sambastudio,
        &server.url("/api/v2/predict/generic/proj-1/ep-2"),
    );
    assert!(
        client
            .request_url()
            .ends_with("/api/v2/predict/generic/stream/proj-1/ep-2")
    );
    let m = send_one(&client, "Bundle/Meta-Llama-3-8B-Instruct", LONG).await;
    assert!(m.error.is_none(), "{:?}", m.error);
    let req = &server.requests()[0];
    assert_eq!(req.path, "/api/v2/predict/generic/stream/proj-1/ep-2");
    assert_eq!(req.header("key"), Some(KEY));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(
        req.json(),
        serde_json::json!({
            "items": [{"id": "item1", "value": "Say hello."}],
            "params": {"max_tokens_to_generate": 64, "select_expert": "Meta-Llama-3-8B-Instruct",
                       "process_prompt": false, "top_k": 1}
        })
    );
    assert_eq!(m.generated_text, "Bonjour");
    assert_eq!(m.token_events.len(), 2);
    assert_eq!(m.stop_reason.as_deref(), Some("max_len_reached"));
    let s = m.server.unwrap();
    assert_eq!(
        (s.input_tokens, s.output_tokens, s.batch_size_used),
        (Some(7), Some(2), Some(2))
    );
    assert_eq!(
        (s.ttft_s, s.end_to_end_latency_s, s.output_tokens_per_s),
        (Some(0.05), Some(0.3), Some(40.0))
    );
}

#[tokio::test]
async fn sambastudio_v1_generic_typed_params() {
    let server = ScriptedServer::start(vec![generic_stream(false)]).await;
    let client = client(
        ApiKind::Sambastudio,
        &server.url("/api/predict/generic/p/e"),
    );
    let m = send_one(&client, "llama-expert", LONG).await;
    assert!(m.error.is_none(), "{:?}", m.error);
    let req = &server.requests()[0];
    assert_eq!(req.path, "/api/predict/generic/stream/p/e");
    assert_eq!(
        req.json(),
        serde_json::json!({
            "instance": "Say hello.",
            "params": {"max_tokens_to_generate": {"type": "int", "value": "64"}}
        })
    );
    assert_eq!(m.generated_text, "Bonjour");

    // A URL that already names the stream API is used as it is.
    let server = ScriptedServer::start(vec![generic_stream(false)]).await;
    let client = self::client(
        ApiKind::Sambastudio,
        &server.url("/api/predict/generic/stream/p/e"),
    );
    let prepared = client.prepare(&spec("Bundle/expert-a", "x")).unwrap();
    let m = client.send(&prepared, "r", LONG).await;
    assert!(m.error.is_none(), "{:?}", m.error);
    let req = &server.requests()[0];
    assert_eq!(req.path, "/api/predict/generic/stream/p/e");
    assert_eq!(
        req.json()["params"],
        serde_json::json!({
            "max_tokens_to_generate": {"type": "int", "value": "64"},
            "select_expert": {"type": "str", "value": "expert-a"},
            "process_prompt": {"type": "bool", "value": "False"},
            "top_k": {"type": "int", "value": "1"}
        })
    );
}

#[tokio::test]
async fn sambastudio_openai_url_is_used_as_is_without_ignore_eos() {
    let server = ScriptedServer::start(vec![sambanova_stream()]).await;
    let client = client(
        ApiKind::Sambastudio,
        &server.url("/openai/v1/proj/chat/completions"),
    );
    let m = send_one(&client, "Meta-Llama-3.1-8B-Instruct", LONG).await;
    assert!(m.error.is_none(), "{:?}", m.error);
    let req = &server.requests()[0];
    assert_eq!(req.path, "/openai/v1/proj/chat/completions");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert!(req.json().get("ignore_eos").is_none());
}

#[test]
fn bad_urls_are_rejected_up_front_with_the_key_redacted() {
    let make = |api, url: &str| {
        EndpointClient::new(
            ResolvedEndpoint {
                api,
                url: url.to_string(),
                api_key: Some(ApiKey::new(KEY)),
                ca_certificate: None,
            },
            ClientOptions::default(),
        )
        .unwrap_err()
    };
    let err = make(
        ApiKind::Sambastudio,
        &format!("https://host/api/other?k={KEY}"),
    );
    assert!(matches!(err, ClientError::UnsupportedSambaStudioUrl { .. }));
    let text = err.to_string();
    assert!(
        text.contains("https://host/api/other?k=***") && text.contains("generic"),
        "{text}"
    );
    assert!(!text.contains(KEY));
    for url in ["ftp://host/v1", "host/v1", "http:///v1", "not a url"] {
        let text = make(ApiKind::Sncloud, url).to_string();
        assert!(text.contains("invalid sncloud URL"), "{text}");
    }
    assert_eq!(
        make(ApiKind::Simulator, "http://h/v1"),
        ClientError::Simulator
    );
}

#[tokio::test]
async fn images_are_sent_as_jpeg_data_urls_or_refused_by_generic_endpoints() {
    let image = EncodedImage::generate(ImageSize::Small).unwrap();
    let with_image = RequestSpec {
        image: Some(&image),
        ..spec("Llama-4-Maverick-17B-128E-Instruct", "Describe it.")
    };
    let chat = client(ApiKind::Sncloud, "https://api.example.com/v1");
    let body: serde_json::Value =
        serde_json::from_slice(chat.prepare(&with_image).unwrap().body()).unwrap();
    let content = &body["messages"][0]["content"];
    assert_eq!(
        content[0],
        serde_json::json!({"type": "text", "text": "Describe it."})
    );
    assert_eq!(content[1]["type"], "image_url");
    let url = content[1]["image_url"]["url"].as_str().unwrap();
    assert!(
        url.starts_with("data:image/jpeg;base64,/9j/"),
        "{}",
        &url[..40]
    );

    let generic = client(ApiKind::Sambastudio, "https://h/api/v2/predict/generic/p/e");
    let err = generic.prepare(&with_image).unwrap_err();
    assert!(
        matches!(err, ClientError::ImageNotSupported { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn http_errors_keep_status_body_and_retry_after() {
    let server = ScriptedServer::start(vec![
        vec![response(
            "401 Unauthorized",
            "",
            &format!("{{\"error\":\"invalid key {KEY}\"}}"),
        )],
        vec![response(
            "429 Too Many Requests",
            "retry-after: 7\r\n",
            "{\"error\":\"slow down\"}",
        )],
        vec![response("500 Internal Server Error", "", "boom")],
    ])
    .await;
    let client = client(ApiKind::Sncloud, &server.url("/v1"));
    let m = send_one(&client, "m", LONG).await;
    let e = m.error.as_ref().unwrap();
    assert_eq!(e.kind, ErrorKind::Http(401));
    assert!(
        e.message.contains("401") && e.message.contains("invalid key ***"),
        "{}",
        e.message
    );
    assert_no_key(&m);
    let m = send_one(&client, "m", LONG).await;
    let e = m.error.as_ref().unwrap();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(
        e.message.contains("Retry-After: 7") && e.message.contains("slow down"),
        "{}",
        e.message
    );
    let m = send_one(&client, "m", LONG).await;
    let e = m.error.as_ref().unwrap();
    assert_eq!(e.kind, ErrorKind::Http(500));
    assert!(e.message.contains("boom"), "{}", e.message);
    assert!(m.headers_at.is_some());
}

#[tokio::test]
async fn connect_failure_is_classified() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = client(ApiKind::Sncloud, &format!("http://{addr}/v1"));
    let m = send_one(&client, "m", LONG).await;
    assert_eq!(
        m.error.as_ref().unwrap().kind,
        ErrorKind::Connect,
        "{:?}",
        m.error
    );
    assert!(m.headers_at.is_none());
    assert_no_key(&m);
}

#[tokio::test]
async fn broken_streams_are_classified_and_keep_what_arrived() {
    let server = ScriptedServer::start(vec![
        // Chunked body cut in the middle of a chunk.
        vec![
            sse_head(),
            chunk(content("partial")),
            write("40\r\ndata: {\"choices\""),
            Step::Close,
        ],
        // A close-delimited body that ends before [DONE].
        vec![
            write(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
            ),
            write(content("x")),
            Step::Close,
        ],
        // Invalid JSON in an event.
        vec![
            sse_head(),
            chunk(content("ok")),
            chunk("data: {\"choices\": [oops\n\n"),
            last_chunk(),
        ],
        // The connection closes before any response.
        vec![Step::Close],
    ])
    .await;
    let client = client(ApiKind::Sncloud, &server.url("/v1"));
    let m = send_one(&client, "m", LONG).await;
    assert_eq!(
        m.error.as_ref().unwrap().kind,
        ErrorKind::StreamBroken,
        "{:?}",
        m.error
    );
    assert_eq!(m.generated_text, "partial");
    assert_eq!(m.token_events.len(), 1);
    let m = send_one(&client, "m", LONG).await;
    let e = m.error.as_ref().unwrap();
    assert_eq!(e.kind, ErrorKind::StreamBroken, "{e:?}");
    assert!(e.message.contains("[DONE]"), "{}", e.message);
    let m = send_one(&client, "m", LONG).await;
    let e = m.error.as_ref().unwrap();
    assert_eq!(e.kind, ErrorKind::MalformedEvent, "{e:?}");
    assert!(e.message.contains("oops"), "{}", e.message);
    let m = send_one(&client, "m", LONG).await;
    assert_eq!(
        m.error.as_ref().unwrap().kind,
        ErrorKind::StreamBroken,
        "{:?}",
        m.error
    );
}

#[tokio::test]
async fn timeout_fires_on_a_stalled_stream_and_a_silent_server() {
    let server = ScriptedServer::start(vec![
        vec![sse_head(), chunk(content("slow")), sleep_ms(30_000)],
        vec![sleep_ms(30_000)],
    ])
    .await;
    let client = client(ApiKind::Sncloud, &server.url("/v1"));
    let begun = Instant::now();
    let m = send_one(&client, "m", Duration::from_millis(300)).await;
    let e = m.error.as_ref().unwrap();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e:?}");
    assert_eq!(m.token_events.len(), 1);
    let took = m.end.duration_since(m.start);
    assert!(
        took >= Duration::from_millis(290) && begun.elapsed() < Duration::from_secs(5),
        "{took:?}"
    );
    let m = send_one(&client, "m", Duration::from_millis(200)).await;
    assert_eq!(m.error.as_ref().unwrap().kind, ErrorKind::Timeout);
    assert!(m.headers_at.is_none());
}

#[tokio::test]
async fn connections_are_kept_alive_and_many_streams_run_at_once() {
    let server = ScriptedServer::start(vec![sambanova_stream()]).await;
    let client = client(ApiKind::Sncloud, &server.url("/v1"));
    for _ in 0..3 {
        let m = send_one(&client, "m", LONG).await;
        assert!(m.error.is_none(), "{:?}", m.error);
    }
    assert_eq!(
        server.connections(),
        1,
        "sequential requests reuse one connection"
    );

    let prepared = client.prepare(&spec("m", "hi")).unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (client, prepared) = (client.clone(), prepared.clone());
            tokio::spawn(async move { client.send(&prepared, &format!("r{i}"), LONG).await })
        })
        .collect();
    for task in tasks {
        let m = task.await.unwrap();
        assert!(m.error.is_none(), "{:?}", m.error);
        assert_eq!(m.generated_text, "Hello, world");
    }
    let ids: std::collections::HashSet<String> = server
        .requests()
        .iter()
        .filter_map(|r| r.header("x-request-id").map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 201);
}

#[tokio::test]
async fn list_models_reads_sorted_ids() {
    let server = ScriptedServer::start(vec![
        vec![response(
            "200 OK",
            "",
            r#"{"object":"list","data":[{"id":"b-model"},{"id":"a-model"},{"id":"b-model"}]}"#,
        )],
        vec![response(
            "403 Forbidden",
            "",
            &format!("no access for {KEY}"),
        )],
    ])
    .await;
    let client = client(ApiKind::Sncloud, &server.url("/v1/chat/completions"));
    assert_eq!(
        client.list_models().await.unwrap(),
        vec!["a-model", "b-model"]
    );
    let req = &server.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("GET", "/v1/models")
    );
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let err = client.list_models().await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            ClientError::ListModels {
                kind: ErrorKind::Http(403),
                ..
            }
        ),
        "{text}"
    );
    assert!(
        !text.contains(KEY) && text.contains("no access for ***"),
        "{text}"
    );

    let generic = self::client(ApiKind::Sambastudio, "https://h/api/predict/generic/p/e");
    assert!(matches!(
        generic.list_models().await,
        Err(ClientError::NoModelList { .. })
    ));
}

#[tokio::test]
async fn a_body_left_open_after_done_ends_the_request_without_error() {
    let server = ScriptedServer::start(vec![vec![
        sse_head(),
        chunk(content("x")),
        chunk("data: [DONE]\n\n"),
        sleep_ms(30_000),
    ]])
    .await;
    let client = client(ApiKind::Sncloud, &server.url("/v1"));
    let begun = Instant::now();
    let m = send_one(&client, "m", LONG).await;
    assert!(m.error.is_none(), "{:?}", m.error);
    assert!(begun.elapsed() < Duration::from_secs(5));
    // The end is the arrival of [DONE], not the end of the wait for the body.
    assert!(m.end.duration_since(m.token_events[0].at) < Duration::from_millis(500));
}

#[tokio::test]
async fn a_non_streaming_answer_is_reported_as_such() {
    let server = ScriptedServer::start(vec![vec![response(
        "200 OK",
        "",
        r#"{"choices":[{"message":{"content":"hi"}}]}"#,
    )]])
    .await;
    let client = client(ApiKind::Openai, &server.url("/v1"));
    let m = send_one(&client, "m", LONG).await;
    let e = m.error.as_ref().unwrap();
    assert_eq!(e.kind, ErrorKind::StreamBroken);
    assert!(e.message.contains("application/json"), "{}", e.message);
}

#[tokio::test]
async fn keep_alive_comments_count_as_the_first_event_only() {
    let server = ScriptedServer::start(vec![vec![
        sse_head(),
        chunk(": waiting\n\n"),
        sleep_ms(60),
        chunk(content("late")),
        chunk("data: [DONE]\n\n"),
        last_chunk(),
    ]])
    .await;
    let client = client(ApiKind::Sncloud, &server.url("/v1"));
    let m = send_one(&client, "m", LONG).await;
    assert!(m.error.is_none(), "{:?}", m.error);
    assert_eq!(m.token_events.len(), 1);
    assert!(
        m.token_events[0]
            .at
            .duration_since(m.first_event_at.unwrap())
            >= Duration::from_millis(40)
    );
}

/// [`sambanova_stream`] with extra response headers (`name: value\r\n` each).
fn stream_with_headers(headers: &str) -> Vec<Step> {
    let mut steps = sambanova_stream();
    steps[0] = write(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n{headers}\r\n"
    ));
    steps
}

#[tokio::test]
async fn a_kept_alive_connection_the_server_closed_is_retried_once_on_a_fresh_one() {
    // Each connection answers one request, then closes on the next without a byte of answer,
    // as llama-server does (it advertises `Keep-Alive: timeout=5, max=100` all the same).
    let advertised = "keep-alive: timeout=5, max=100\r\n";
    let server = ScriptedServer::start(vec![
        stream_with_headers(advertised),
        vec![Step::Close],
        stream_with_headers(advertised),
        vec![Step::Close],
        stream_with_headers(advertised),
    ])
    .await;
    let client = client(ApiKind::Sncloud, &server.url("/v1"));
    let mut retried = Vec::new();
    for _ in 0..3 {
        let before = Instant::now();
        let m = send_one(&client, "m", LONG).await;
        assert!(m.error.is_none(), "{:?}", m.error);
        assert_eq!(m.generated_text, "Hello, world");
        assert!(m.start >= before);
        retried.push(m.stale_connection_retry);
    }
    assert_eq!(retried, [false, true, true]);
    assert_eq!(
        server.connections(),
        3,
        "each retry opened a fresh connection"
    );
    assert_eq!(server.requests().len(), 5);
}

#[tokio::test]
async fn no_retry_after_an_answer_byte_or_on_a_fresh_connection() {
    // The reused connection sends part of a head, then closes: the server saw the request.
    let server = ScriptedServer::start(vec![
        sambanova_stream(),
        vec![write("HTTP/1.1 200 OK\r\n"), Step::Close],
    ])
    .await;
    let client = self::client(ApiKind::Sncloud, &server.url("/v1"));
    assert!(send_one(&client, "m", LONG).await.error.is_none());
    let m = send_one(&client, "m", LONG).await;
    assert_eq!(m.error.as_ref().unwrap().kind, ErrorKind::StreamBroken);
    assert!(!m.stale_connection_retry);
    assert_eq!(server.requests().len(), 2, "sent once, not retried");

    // A fresh connection that closes without an answer is a failure, not a stale connection.
    let server = ScriptedServer::start(vec![vec![Step::Close]]).await;
    let client = self::client(ApiKind::Sncloud, &server.url("/v1"));
    let m = send_one(&client, "m", LONG).await;
    let error = m.error.unwrap();
    assert_eq!(error.kind, ErrorKind::StreamBroken, "{}", error.message);
    assert!(!m.stale_connection_retry);
    assert_eq!(server.requests().len(), 1);

    // A reused connection that accepts the request and answers nothing for longer than the
    // stale window before closing may have had the request processed: no retry.
    let server =
        ScriptedServer::start(vec![sambanova_stream(), vec![sleep_ms(800), Step::Close]]).await;
    let client = self::client(ApiKind::Sncloud, &server.url("/v1"));
    assert!(send_one(&client, "m", LONG).await.error.is_none());
    let m = send_one(&client, "m", LONG).await;
    assert!(m.error.is_some());
    assert!(!m.stale_connection_retry);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn connection_close_and_keep_alive_limits_are_honoured() {
    // `Connection: close`: every request gets its own connection, and none is a retry.
    let server = ScriptedServer::start(vec![stream_with_headers("connection: close\r\n")]).await;
    let client = self::client(ApiKind::Sncloud, &server.url("/v1"));
    for _ in 0..3 {
        let m = send_one(&client, "m", LONG).await;
        assert!(
            m.error.is_none() && !m.stale_connection_retry,
            "{:?}",
            m.error
        );
    }
    assert_eq!(server.connections(), 3);

    // `Keep-Alive: max=<n>` counts down to the connection's last request.
    let server = ScriptedServer::start(vec![
        stream_with_headers("keep-alive: max=2\r\n"),
        stream_with_headers("keep-alive: max=1\r\n"),
        stream_with_headers("keep-alive: max=2\r\n"),
        stream_with_headers("keep-alive: max=1\r\n"),
    ])
    .await;
    let client = self::client(ApiKind::Sncloud, &server.url("/v1"));
    for _ in 0..4 {
        let m = send_one(&client, "m", LONG).await;
        assert!(
            m.error.is_none() && !m.stale_connection_retry,
            "{:?}",
            m.error
        );
    }
    assert_eq!(server.connections(), 2, "two requests per connection");

    // `Keep-Alive: timeout=1`: a connection idle for longer than half of it is not reused.
    let server =
        ScriptedServer::start(vec![stream_with_headers("keep-alive: timeout=1\r\n")]).await;
    let client = self::client(ApiKind::Sncloud, &server.url("/v1"));
    assert!(send_one(&client, "m", LONG).await.error.is_none());
    tokio::time::sleep(Duration::from_millis(700)).await;
    let m = send_one(&client, "m", LONG).await;
    assert!(
        m.error.is_none() && !m.stale_connection_retry,
        "{:?}",
        m.error
    );
    assert_eq!(server.connections(), 2);
}

#[test]
fn sampling_parameters_go_into_every_wire_format() {
    let params: coebench_plan::SamplingParams = serde_json::from_value(serde_json::json!({
        "temperature": 0.7, "top_k": 40, "stop": ["END"]
    }))
    .unwrap();
    let body = |api: ApiKind, url: &str| {
        let request = RequestSpec {
            sampling_params: Some(&params),
            ..spec("m", "hi")
        };
        let prepared = client(api, url).prepare(&request).unwrap();
        serde_json::from_slice::<serde_json::Value>(prepared.body()).unwrap()
    };
    // Chat: at the top of the body, beside what coebench sets, as the kit sends them.
    let chat = body(ApiKind::Openai, "http://127.0.0.1:1/v1");
    assert_eq!(chat["temperature"], 0.7);
    assert_eq!(chat["top_k"], 40);
    assert_eq!(chat["stop"], serde_json::json!(["END"]));
    assert_eq!(chat["max_tokens"], 64);
    assert_eq!(chat["stream"], true);
    // SambaStudio generic v2: plain values in `params`; v1: Python-typed values.
    let v2 = body(
        ApiKind::Sambastudio,
        "http://127.0.0.1:1/api/v2/predict/generic/stream/p/e",
    );
    assert_eq!(v2["params"]["temperature"], 0.7);
    assert_eq!(v2["params"]["max_tokens_to_generate"], 64);
    let v1 = body(
        ApiKind::Sambastudio,
        "http://127.0.0.1:1/api/predict/generic/stream/p/e",
    );
    assert_eq!(
        v1["params"]["temperature"],
        serde_json::json!({"type": "float", "value": "0.7"})
    );
    assert_eq!(
        v1["params"]["top_k"],
        serde_json::json!({"type": "int", "value": "40"})
    );
}

#[test]
fn ignore_eos_and_min_tokens_follow_the_row_over_the_api_default() {
    let body = |api: ApiKind, url: &str, ignore_eos: Option<bool>, min_tokens: Option<u32>| {
        let request = RequestSpec {
            ignore_eos,
            min_tokens,
            ..spec("m", "hi")
        };
        let prepared = client(api, url).prepare(&request).unwrap();
        serde_json::from_slice::<serde_json::Value>(prepared.body()).unwrap()
    };
    let openai = "http://127.0.0.1:1/v1";
    // Defaults: ignore_eos on OpenAI-compatible APIs, no min_tokens.
    let default = body(ApiKind::Openai, openai, None, None);
    assert_eq!(default["ignore_eos"], true);
    assert!(default.get("min_tokens").is_none());
    // Turned off: not sent at all (servers that reject unknown fields accept the request).
    let off = body(ApiKind::Openai, openai, Some(false), Some(16));
    assert!(off.get("ignore_eos").is_none());
    assert_eq!(off["min_tokens"], 16);
    // SambaStudio's OpenAI-compatible URL never gets it by default, but a row can ask.
    let studio = "https://h/v1/p/chat/completions";
    assert!(
        body(ApiKind::Sambastudio, studio, None, None)
            .get("ignore_eos")
            .is_none()
    );
    assert_eq!(
        body(ApiKind::Sambastudio, studio, Some(true), None)["ignore_eos"],
        true
    );
}
