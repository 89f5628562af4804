//! Response bytes of every wire format: SambaNova/OpenAI chat-completion chunks (SSE) and full
//! bodies, SambaStudio generic v1/v2 JSON lines, the `usage` block, and OpenAI-style error
//! bodies. Pure rendering: the numbers come from the batch runner, the text from `text.rs`.

use bytes::Bytes;
use serde_json::{Value, json};

use super::config::ApiMode;
use super::text;

/// An error answer: status, OpenAI-style body `{"error":{"message","type","code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The `type` field (`invalid_request_error`, ...).
    pub kind: &'static str,
    /// The `code` field.
    pub code: &'static str,
    /// The `message` field; never contains an API key.
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            kind: "invalid_request_error",
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: 404,
            kind: "not_found_error",
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    pub(crate) fn unauthorized() -> Self {
        ApiError {
            status: 401,
            kind: "authentication_error",
            code: "invalid_api_key",
            message: "missing or invalid API key; send it as `Authorization: Bearer <key>` or as a `key: <key>` header".to_string(),
            retry_after_s: None,
        }
    }

    pub(crate) fn rate_limited(retry_after_s: u64) -> Self {
        ApiError {
            status: 429,
            kind: "rate_limit_error",
            code: "rate_limit_exceeded",
            message: format!("rate limit exceeded (simulated); retry after {retry_after_s} s"),
            retry_after_s: Some(retry_after_s),
        }
    }

    pub(crate) fn injected(status: u16) -> Self {
        ApiError {
            status,
            kind: "server_error",
            code: if status == 503 {
                "service_unavailable"
            } else {
                "internal_error"
            },
            message: format!("simulated server error {status} (fault injection)"),
            retry_after_s: None,
        }
    }

    pub(crate) fn shutting_down() -> Self {
        ApiError {
            status: 503,
            kind: "server_error",
            code: "service_unavailable",
            message: "the simulator is shutting down; retry against another instance".to_string(),
            retry_after_s: None,
        }
    }

    pub(crate) fn internal(message: String) -> Self {
        ApiError {
            status: 500,
            kind: "server_error",
            code: "internal_error",
            message,
            retry_after_s: None,
        }
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Bytes {
        let v = json!({"error": {"message": self.message, "type": self.kind, "code": self.code}});
        Bytes::from(v.to_string())
    }
}

/// Server metrics of one finished request, as every format reports them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Server TTFT: switching + prefill.
    pub ttft_s: f64,
    /// Last token minus batch start.
    pub total_latency_s: f64,
    /// Batch start, Unix seconds.
    pub start_unix_s: f64,
    /// Last token, Unix seconds.
    pub end_unix_s: f64,
    /// Tokens after the first per second after the first.
    pub after_first_per_s: f64,
    /// The same over the first ten tokens after the first.
    pub after_first_first_ten_per_s: f64,
    pub batch_size_used: u32,
    pub stop_reason: &'static str,
    pub acceptance_rate: Option<f64>,
}

impl Usage {
    fn total_tokens(&self) -> u32 {
        self.prompt_tokens + self.completion_tokens
    }

    fn per_latency(&self, tokens: u32) -> f64 {
        if self.total_latency_s > 0.0 {
            f64::from(tokens) / self.total_latency_s
        } else {
            0.0
        }
    }

    /// The `usage` object: SambaNova's full block, or OpenAI's three counts.
    fn chat_json(&self, mode: ApiMode) -> Value {
        match mode {
            ApiMode::Openai => json!({
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens(),
            }),
            ApiMode::Sncloud => {
                let mut u = json!({
                    "is_last_response": true,
                    "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens,
                    "total_tokens": self.total_tokens(),
                    "time_to_first_token": self.ttft_s,
                    "total_latency": self.total_latency_s,
                    "start_time": self.start_unix_s,
                    "end_time": self.end_unix_s,
                    "total_tokens_per_sec": self.per_latency(self.total_tokens()),
                    "completion_tokens_per_sec": self.per_latency(self.completion_tokens),
                    "completion_tokens_after_first_per_sec": self.after_first_per_s,
                    "completion_tokens_after_first_per_sec_first_ten": self.after_first_first_ten_per_s,
                    "batch_size_used": self.batch_size_used,
                    "stop_reason": self.stop_reason,
                });
                if let (Some(rate), Value::Object(map)) = (self.acceptance_rate, &mut u) {
                    map.insert("acceptance_rate".to_string(), json!(rate));
                }
                u
            }
        }
    }
}

/// How one request's response is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseFormat {
    /// SSE chat-completion chunks; `usage` chunk sent when `send_usage`.
    ChatStream { send_usage: bool },
    /// One chat-completion JSON body.
    ChatFull,
    /// SambaStudio generic stream lines.
    Generic { v2: bool },
}

/// What a [`ResponseRenderer`] is made from.
pub(crate) struct RenderParams<'a> {
    pub kind: ResponseFormat,
    pub mode: ApiMode,
    /// The completion id (`chatcmpl-...`).
    pub id: &'a str,
    /// The model's name.
    pub model: &'a str,
    /// Unix second of arrival.
    pub created: i64,
    /// Generic v2 item id to echo.
    pub item_id: &'a str,
    /// Generic: the prompt to echo in the final line.
    pub prompt: &'a str,
    /// Picks the generated words.
    pub text_key: u64,
}

/// Renders the bytes of one request's response.
#[derive(Debug, Clone)]
pub(crate) struct ResponseRenderer {
    kind: ResponseFormat,
    mode: ApiMode,
    /// Chat: `{"id":..,"object":..,"created":..,"model":..[,"system_fingerprint":..],` without
    /// `object`; generic: the v2 item id as JSON.
    id_json: String,
    model_json: String,
    created: i64,
    /// Chat stream: start of every choice chunk, up to `"delta":`. Generic: start of a token
    /// line, up to `"stream_token":"`.
    chunk_prefix: String,
    /// Generic: the prompt, echoed in the final line.
    prompt: String,
    text_key: u64,
}

const CHUNK_TAIL: &str = ",\"logprobs\":null,\"finish_reason\":null}]}\n\n";

fn json_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

impl ResponseRenderer {
    /// A renderer for one response.
    pub(crate) fn new(p: RenderParams<'_>) -> Self {
        let RenderParams {
            kind,
            mode,
            id,
            model,
            created,
            item_id,
            prompt,
            text_key,
        } = p;
        let id_json = match kind {
            ResponseFormat::Generic { .. } => json_str(item_id),
            _ => json_str(id),
        };
        let model_json = json_str(model);
        let fingerprint = match mode {
            ApiMode::Sncloud => "\"system_fingerprint\":\"fastcoe\",",
            ApiMode::Openai => "",
        };
        let chunk_prefix = match kind {
            ResponseFormat::Generic { v2: true } => format!(
                "{{\"result\":{{\"items\":[{{\"id\":{id_json},\"value\":{{\"stream_token\":\""
            ),
            ResponseFormat::Generic { v2: false } => {
                "{\"result\":{\"responses\":[{\"stream_token\":\"".to_string()
            }
            _ => format!(
                "data: {{\"id\":{id_json},\"object\":\"chat.completion.chunk\",\"created\":{created},\"model\":{model_json},{fingerprint}\"choices\":[{{\"index\":0,\"delta\":"
            ),
        };
        let prompt = match kind {
            ResponseFormat::Generic { .. } => prompt.to_string(),
            _ => String::new(),
        };
        ResponseRenderer {
            kind,
            mode,
            id_json,
            model_json,
            created,
            chunk_prefix,
            prompt,
            text_key,
        }
    }

    /// The response's `Content-Type`.
    pub(crate) fn content_type(&self) -> &'static str {
        match self.kind {
            ResponseFormat::ChatStream { .. } => "text/event-stream",
            ResponseFormat::ChatFull => "application/json",
            ResponseFormat::Generic { .. } => "application/x-ndjson",
        }
    }

    /// Events sent with the first token, before it: the role-only chunk of a chat stream.
    pub(crate) fn first_event(&self, out: &mut Vec<u8>) {
        if let ResponseFormat::ChatStream { .. } = self.kind {
            out.extend_from_slice(self.chunk_prefix.as_bytes());
            out.extend_from_slice(b"{\"role\":\"assistant\"}");
            out.extend_from_slice(CHUNK_TAIL.as_bytes());
        }
    }

    /// One event carrying tokens `from..to` of the completion.
    pub(crate) fn token_event(&self, from: u32, to: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(self.chunk_prefix.as_bytes());
        match self.kind {
            ResponseFormat::Generic { v2 } => {
                text::push_words(self.text_key, from, to, out);
                out.extend_from_slice(if v2 {
                    b"\",\"is_last_response\":false}}]}}\n"
                } else {
                    b"\",\"is_last_response\":false}]}}\n"
                });
            }
            _ => {
                out.extend_from_slice(b"{\"content\":\"");
                text::push_words(self.text_key, from, to, out);
                out.extend_from_slice(b"\"}");
                out.extend_from_slice(CHUNK_TAIL.as_bytes());
            }
        }
    }

    /// An event whose payload is not valid JSON (fault injection).
    pub(crate) fn malformed_event(&self, out: &mut Vec<u8>) {
        match self.kind {
            ResponseFormat::Generic { .. } => out.extend_from_slice(b"{\"result\":{\"items\":[{\n"),
            _ => {
                out.extend_from_slice(b"data: {\"id\":");
                out.extend_from_slice(self.id_json.as_bytes());
                out.extend_from_slice(b",\"choices\":[{\"delta\":{\"content\":\n\n");
            }
        }
    }

    /// The events that end a stream: the chunk with `finish_reason`, the usage chunk and
    /// `[DONE]` (chat), or the final line (generic).
    pub(crate) fn final_events(&self, usage: &Usage, out: &mut Vec<u8>) {
        match self.kind {
            ResponseFormat::ChatStream { send_usage } => {
                out.extend_from_slice(self.chunk_prefix.as_bytes());
                out.extend_from_slice(b"{}");
                out.extend_from_slice(
                    format!(
                        ",\"logprobs\":null,\"finish_reason\":\"{}\"}}]}}\n\n",
                        usage.stop_reason
                    )
                    .as_bytes(),
                );
                if send_usage {
                    let mut chunk = self.envelope("chat.completion.chunk");
                    if let Value::Object(map) = &mut chunk {
                        map.insert("choices".to_string(), json!([]));
                        map.insert("usage".to_string(), usage.chat_json(self.mode));
                    }
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(chunk.to_string().as_bytes());
                    out.extend_from_slice(b"\n\n");
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            ResponseFormat::Generic { v2 } => {
                let value = json!({
                    "stream_token": "",
                    "is_last_response": true,
                    "completion": text::words(self.text_key, 0, usage.completion_tokens),
                    "prompt": self.prompt,
                    "prompt_tokens_count": usage.prompt_tokens,
                    "completion_tokens_count": usage.completion_tokens,
                    "total_tokens_count": usage.total_tokens(),
                    "time_to_first_token": usage.ttft_s,
                    "model_execution_time": usage.total_latency_s,
                    "throughput_after_first_token": usage.after_first_per_s,
                    "batch_size_used": usage.batch_size_used,
                    "start_time": usage.start_unix_s,
                    "end_time": usage.end_unix_s,
                    "stop_reason": usage.stop_reason,
                });
                let line = if v2 {
                    json!({"result": {"items": [{"id": Value::String(self.item_id()), "value": value}]}})
                } else {
                    json!({"result": {"responses": [value]}})
                };
                out.extend_from_slice(line.to_string().as_bytes());
                out.push(b'\n');
            }
            ResponseFormat::ChatFull => {}
        }
    }

    /// The whole body of a non-streaming chat completion.
    pub(crate) fn full_body(&self, usage: &Usage) -> Bytes {
        let mut body = self.envelope("chat.completion");
        if let Value::Object(map) = &mut body {
            map.insert(
                "choices".to_string(),
                json!([{
                    "index": 0,
                    "message": {"role": "assistant", "content": text::words(self.text_key, 0, usage.completion_tokens)},
                    "logprobs": null,
                    "finish_reason": usage.stop_reason,
                }]),
            );
            map.insert("usage".to_string(), usage.chat_json(self.mode));
        }
        Bytes::from(body.to_string())
    }

    fn envelope(&self, object: &str) -> Value {
        let mut v = json!({
            "id": serde_json::from_str::<Value>(&self.id_json).unwrap_or(Value::Null),
            "object": object,
            "created": self.created,
            "model": serde_json::from_str::<Value>(&self.model_json).unwrap_or(Value::Null),
        });
        if let (ApiMode::Sncloud, Value::Object(map)) = (self.mode, &mut v) {
            map.insert("system_fingerprint".to_string(), json!("fastcoe"));
        }
        v
    }

    fn item_id(&self) -> String {
        serde_json::from_str::<String>(&self.id_json).unwrap_or_else(|_| "item1".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage() -> Usage {
        Usage {
            prompt_tokens: 10,
            completion_tokens: 3,
            ttft_s: 0.5,
            total_latency_s: 1.0,
            start_unix_s: 1.7e9,
            end_unix_s: 1.7e9 + 1.0,
            after_first_per_s: 4.0,
            after_first_first_ten_per_s: 4.0,
            batch_size_used: 4,
            stop_reason: "length",
            acceptance_rate: None,
        }
    }

    fn events(bytes: &[u8]) -> Vec<Value> {
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn chat_chunks_are_valid_json_with_the_kit_shape() {
        let w = ResponseRenderer::new(RenderParams {
            kind: ResponseFormat::ChatStream { send_usage: true },
            mode: ApiMode::Sncloud,
            id: "chatcmpl-1",
            model: "m\"x",
            created: 7,
            item_id: "",
            prompt: "",
            text_key: 1,
        });
        let mut out = Vec::new();
        w.first_event(&mut out);
        w.token_event(0, 2, &mut out);
        w.final_events(&usage(), &mut out);
        let ev = events(&out);
        assert_eq!(ev.len(), 4);
        assert_eq!(ev[0]["choices"][0]["delta"], json!({"role": "assistant"}));
        assert_eq!(ev[1]["choices"][0]["finish_reason"], Value::Null);
        assert_eq!(ev[1]["model"], "m\"x");
        assert_eq!(ev[2]["choices"][0]["finish_reason"], "length");
        assert_eq!(ev[3]["choices"], json!([]));
        assert_eq!(ev[3]["usage"]["batch_size_used"], 4);
        assert_eq!(ev[3]["system_fingerprint"], "fastcoe");
        assert!(
            String::from_utf8(out)
                .unwrap()
                .ends_with("data: [DONE]\n\n")
        );
    }

    #[test]
    fn openai_usage_has_only_counts() {
        let u = usage().chat_json(ApiMode::Openai);
        assert_eq!(
            u,
            json!({"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13})
        );
    }

    #[test]
    fn generic_lines_parse_and_the_last_carries_the_metrics() {
        for v2 in [false, true] {
            let w = ResponseRenderer::new(RenderParams {
                kind: ResponseFormat::Generic { v2 },
                mode: ApiMode::Sncloud,
                id: "r",
                model: "m",
                created: 0,
                item_id: "item9",
                prompt: "the prompt",
                text_key: 2,
            });
            let mut out = Vec::new();
            w.token_event(0, 1, &mut out);
            w.final_events(&usage(), &mut out);
            let lines: Vec<Value> = String::from_utf8(out)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let value = |l: &Value| {
                if v2 {
                    assert_eq!(l["result"]["items"][0]["id"], "item9");
                    l["result"]["items"][0]["value"].clone()
                } else {
                    l["result"]["responses"][0].clone()
                }
            };
            assert_eq!(value(&lines[0])["is_last_response"], false);
            let last = value(&lines[1]);
            assert_eq!(last["is_last_response"], true);
            assert_eq!(last["prompt"], "the prompt");
            assert_eq!(last["completion_tokens_count"], 3);
            assert_eq!(last["model_execution_time"], 1.0);
        }
    }

    #[test]
    fn error_bodies_are_openai_shaped() {
        let body: Value = serde_json::from_slice(&ApiError::rate_limited(2).body()).unwrap();
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    }
}
