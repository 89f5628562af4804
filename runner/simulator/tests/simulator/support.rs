//! Helpers shared by the simulator's integration tests: start a simulator from YAML, and a
//! plain hyper HTTP/1.1 client that keeps each body frame with its arrival time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coebench_simulator::{Simulator, SimulatorConfig, SimulatorHandle};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// A small, fast bundle: two models that do not fit HBM together (6 + 5 > 10 GB), a vision
/// model and a speculative one. Switching: alpha 0.06 s, beta 0.05 s.
pub const BASE: &str = r#"
batching_window_ms: 1
memory: {ddr_capacity_gb: 100, hbm_capacity_gb: 10, load_bandwidth_gb_per_s: 100}
models:
  - name: alpha
    weights_gb: 6
    prefill_tokens_per_sec: 100000
    batch_sizes: [1, 2, 4, 8]
    decode_tokens_per_sec: [1000, 800, 600, 400]
    max_sequence_length: 512
    natural_length: {min: 2, max: 3}
  - name: beta
    weights_gb: 5
    prefill_tokens_per_sec: 100000
    decode_tokens_per_sec: [1000]
    max_sequence_length: 512
  - name: eye
    weights_gb: 1
    prefill_tokens_per_sec: 100000
    decode_tokens_per_sec: [1000]
    max_sequence_length: 4096
    vision: {patch_pixels: 16}
  - name: spec
    weights_gb: 1
    prefill_tokens_per_sec: 100000
    decode_tokens_per_sec: [500]
    max_sequence_length: 512
    speculative: {draft_tokens: 4, acceptance_probability: 0.8}
"#;

/// Parses `yaml` (panicking on a bad test config).
pub fn config(yaml: &str) -> SimulatorConfig {
    SimulatorConfig::from_yaml_str(yaml, "test").expect("test config is valid")
}

/// Starts a simulator for `yaml` on a free loopback port.
pub async fn start(yaml: &str) -> SimulatorHandle {
    start_config(config(yaml)).await
}

/// Starts a simulator for `config` on a free loopback port.
pub async fn start_config(config: SimulatorConfig) -> SimulatorHandle {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Simulator::start(config, addr)
        .await
        .expect("simulator starts")
}

/// A response: status, headers, each body frame with its arrival, and how the body ended.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub sent_at: Instant,
    pub headers_at: Instant,
    pub frames: Vec<(Instant, Bytes)>,
    /// The body failed (connection cut) instead of ending.
    pub body_error: Option<String>,
}

impl Reply {
    pub fn body(&self) -> Vec<u8> {
        self.frames.iter().flat_map(|(_, b)| b.to_vec()).collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body()).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body()).expect("JSON body")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// SSE `data:` payloads with the arrival time of the frame that carried each.
    pub fn sse_events(&self) -> Vec<(Instant, String)> {
        let mut out = Vec::new();
        let mut buf = String::new();
        for (at, frame) in &self.frames {
            buf.push_str(&String::from_utf8_lossy(frame));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                if let Some(data) = event.trim_end().strip_prefix("data: ") {
                    out.push((*at, data.to_string()));
                }
            }
        }
        out
    }

    /// JSON lines with the arrival time of the frame that carried each.
    pub fn json_lines(&self) -> Vec<(Instant, String)> {
        let mut out = Vec::new();
        let mut buf = String::new();
        for (at, frame) in &self.frames {
            buf.push_str(&String::from_utf8_lossy(frame));
            while let Some(end) = buf.find('\n') {
                let line: String = buf.drain(..end + 1).collect();
                out.push((*at, line.trim_end().to_string()));
            }
        }
        out
    }
}

/// Sends one request on a new connection and reads the whole response (10 s timeout).
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Reply {
    tokio::time::timeout(
        Duration::from_secs(10),
        send_inner(addr, method, path, headers, body),
    )
    .await
    .expect("the simulator answered within 10 s")
}

async fn send_inner(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Full::new(Bytes::from(bytes))).unwrap();
    let sent_at = Instant::now();
    let response = sender.send_request(req).await.unwrap();
    let headers_at = Instant::now();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let mut frames = Vec::new();
    let mut body_error = None;
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    frames.push((Instant::now(), data));
                }
            }
            Some(Err(e)) => {
                body_error = Some(e.to_string());
                break;
            }
            None => break,
        }
    }
    Reply {
        status,
        headers,
        sent_at,
        headers_at,
        frames,
        body_error,
    }
}

/// POSTs a JSON body.
pub async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    send(addr, "POST", path, headers, Some(body)).await
}

/// A chat-completions body for `model` with `max_tokens`, streaming with usage, ignore_eos.
pub fn chat(model: &str, prompt: &str, max_tokens: u32) -> Value {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "ignore_eos": true,
        "stream": true,
        "stream_options": {"include_usage": true},
    })
}

/// Streams a chat request for `model` tagged with `id` and returns the reply.
pub async fn stream_chat(addr: SocketAddr, id: &str, model: &str, max_tokens: u32) -> Reply {
    post(
        addr,
        "/v1/chat/completions",
        &[("x-request-id", id)],
        &chat(model, "Tell me about composition of experts.", max_tokens),
    )
    .await
}

/// The `usage` object of a chat stream (the last event with a non-null `usage`).
pub fn stream_usage(reply: &Reply) -> Option<Value> {
    reply
        .sse_events()
        .iter()
        .rev()
        .filter(|(_, d)| d != "[DONE]")
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .find_map(|v| v.get("usage").filter(|u| !u.is_null()).cloned())
}

/// Opens a streaming chat request and returns once its response headers have arrived: the
/// status and the body still to read.
pub async fn open_stream(
    addr: SocketAddr,
    id: &str,
    model: &str,
    max_tokens: u32,
) -> (u16, hyper::body::Incoming) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let body = chat(model, "Tell me about composition of experts.", max_tokens).to_string();
    let req = Request::post("/v1/chat/completions")
        .header("host", addr.to_string())
        .header("x-request-id", id)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("headers within 10 s")
        .unwrap();
    (response.status().as_u16(), response.into_body())
}

/// Reads the rest of a body: its text, or the error that cut it.
pub async fn read_body(mut body: hyper::body::Incoming) -> Result<String, String> {
    let mut out = Vec::new();
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => return Err(e.to_string()),
            None => return Ok(String::from_utf8_lossy(&out).into_owned()),
        }
    }
}
