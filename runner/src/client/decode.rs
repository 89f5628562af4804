//! Turns a response body into what [`crate::client::measurement::Measurement`] records: token events,
//! generated text, server metrics and stop reason, for both wire formats.
//!
//! Chat streams (OpenAI-compatible SSE): a token event is a chunk whose `choices[0].delta`
//! carries non-empty `content`, `reasoning` or `reasoning_content`, including the chunk that
//! also carries `finish_reason` (the kit dropped that text). Role-only, usage-only and empty
//! chunks, comments and `[DONE]` are not token events. `usage` on any chunk becomes the server
//! metrics; a missing usage block is not an error (the record builder then counts tokens).
//! SambaStudio generic streams: one JSON object per line; `stream_token` of non-final
//! responses are token events, and the final response holds the metrics.
//!
//! Only the small chunk JSON is parsed, after the event was stamped; no I/O here.

use std::borrow::Cow;
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::sse::{DEFAULT_MAX_EVENT_BYTES, LineSplitter, SseError, SseEvent, SseItem, SseParser};
use super::usage;
use crate::client::measurement::{ErrorKind, RequestError, ServerMetrics, TokenEvent};

/// Longest excerpt of a bad event quoted in an error message, in bytes (before the client
/// redacts the message and cuts it to its final length).
const EXCERPT: usize = super::RAW_EXCERPT_LIMIT;

/// What has been observed so far of one response.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    /// When the connection wrote the request's first byte.
    pub sent_at: Option<Instant>,
    pub headers_at: Option<Instant>,
    pub first_event_at: Option<Instant>,
    pub token_events: Vec<TokenEvent>,
    pub text: String,
    pub server: Option<ServerMetrics>,
    pub stop_reason: Option<String>,
    /// Arrival of the end marker: `[DONE]`, or the generic API's last response.
    pub done_at: Option<Instant>,
    /// A `finish_reason` arrived (the generation ended even if `[DONE]` never comes).
    pub finished: bool,
    /// llama.cpp's `timings` object, mapped ([`usage::llama_timings`]); merged into `server`
    /// when the stream ends, whichever chunk carried it.
    pub timings: Option<ServerMetrics>,
    /// The request was sent again on a fresh connection after its kept-alive one was found
    /// closed ([`super::transport`]).
    pub stale_retry: bool,
    /// Bare `NaN`/`Infinity` tokens read as `null` (impossible server values).
    pub non_finite_values: u32,
}

impl Recorder {
    /// A recorder with room for about `max_tokens` token events, so the stream rarely
    /// reallocates (servers usually send one token per event).
    pub fn with_capacity(max_tokens: u32) -> Self {
        let events = max_tokens.min(16_384) as usize;
        Recorder {
            token_events: Vec::with_capacity(events),
            text: String::with_capacity(events * 4),
            ..Recorder::default()
        }
    }

    fn push_text(&mut self, at: Instant, parts: &[Option<&str>]) {
        let before = self.text.len();
        for part in parts.iter().flatten() {
            self.text.push_str(part);
        }
        if self.text.len() > before {
            let text_end = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
            self.token_events.push(TokenEvent { at, text_end });
        }
    }

    /// The server metrics: the usage block's, with what it lacks taken from llama.cpp's
    /// `timings` (which carry the server's times that llama.cpp's usage block has not).
    pub fn server_metrics(&self) -> Option<ServerMetrics> {
        match (&self.server, &self.timings) {
            (Some(usage), Some(timings)) => Some(usage.clone().or(timings)),
            (Some(only), None) | (None, Some(only)) => Some(only.clone()),
            (None, None) => None,
        }
    }

    /// Whether the stream reached an end marker the protocol defines.
    pub fn complete(&self, generic: bool) -> bool {
        self.done_at.is_some() || (!generic && self.finished)
    }
}

/// Decodes one response body, frame by frame.
#[derive(Debug)]
pub(crate) enum Decoder {
    /// Server-sent events of chat completion chunks.
    Chat(SseParser),
    /// One JSON object per line (SambaStudio generic API, v1 or v2).
    Generic {
        /// The line splitter.
        lines: LineSplitter,
        /// v2 (`result.items[0].value`) rather than v1 (`result.responses[0]`).
        v2: bool,
    },
}

impl Decoder {
    /// A chat stream decoder.
    pub fn chat() -> Self {
        Decoder::Chat(SseParser::new())
    }

    /// A generic stream decoder.
    pub fn generic(v2: bool) -> Self {
        Decoder::Generic {
            lines: LineSplitter::new(DEFAULT_MAX_EVENT_BYTES),
            v2,
        }
    }

    /// Feeds one body frame that arrived at `at`.
    pub fn feed(
        &mut self,
        frame: &[u8],
        at: Instant,
        rec: &mut Recorder,
    ) -> Result<(), RequestError> {
        match self {
            Decoder::Chat(parser) => parser.feed(frame, at, |item| on_sse(item, rec)),
            Decoder::Generic { lines, v2 } => {
                let v2 = *v2;
                lines.feed(frame, at, |line| {
                    on_generic_line(line.bytes, line.at, v2, rec)
                })
            }
        }
    }

    /// Ends the body: handles a last event or line without its terminator.
    pub fn finish(&mut self, rec: &mut Recorder) -> Result<(), RequestError> {
        match self {
            Decoder::Chat(parser) => parser.finish(|item| on_sse(item, rec)),
            Decoder::Generic { lines, v2 } => {
                let v2 = *v2;
                lines.finish(|line| on_generic_line(line.bytes, line.at, v2, rec))
            }
        }
    }
}

impl From<SseError> for RequestError {
    fn from(e: SseError) -> Self {
        RequestError {
            kind: ErrorKind::MalformedEvent,
            message: e.to_string(),
        }
    }
}

fn on_sse(item: SseItem<'_>, rec: &mut Recorder) -> Result<(), RequestError> {
    match item {
        SseItem::Comment { at, .. } => {
            rec.first_event_at.get_or_insert(at);
            Ok(())
        }
        SseItem::Event(event) => {
            rec.first_event_at.get_or_insert(event.at);
            on_chat_event(&event, rec)
        }
    }
}

#[derive(Deserialize)]
struct ChatChunk<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    timings: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
}

fn on_chat_event(event: &SseEvent<'_>, rec: &mut Recorder) -> Result<(), RequestError> {
    if rec.done_at.is_some() {
        return Ok(());
    }
    if event.is_done() {
        rec.done_at = Some(event.at);
        return Ok(());
    }
    if event.data.trim_ascii().is_empty() {
        return Ok(());
    }
    if event.event == b"error" {
        return Err(in_stream_error(
            &serde_json::from_slice(event.data).unwrap_or(Value::Null),
            event.data,
        ));
    }
    let cleaned: Vec<u8>;
    let chunk: ChatChunk<'_> = match serde_json::from_slice(event.data) {
        Ok(chunk) => chunk,
        Err(e) => {
            // A bare NaN (Python's json.dumps) is an impossible value, not a broken stream.
            let (clean, n) =
                usage::non_finite_to_null(event.data).ok_or_else(|| malformed(&e, event.data))?;
            cleaned = clean;
            rec.non_finite_values += n;
            serde_json::from_slice(&cleaned).map_err(|e| malformed(&e, event.data))?
        }
    };
    if let Some(error) = &chunk.error
        && !error.is_null()
    {
        return Err(in_stream_error(error, event.data));
    }
    if let Some(choice) = chunk.choices.as_ref().and_then(|c| c.first()) {
        if let Some(delta) = &choice.delta {
            let reasoning = delta
                .reasoning
                .as_deref()
                .or(delta.reasoning_content.as_deref());
            rec.push_text(event.at, &[reasoning, delta.content.as_deref()]);
        }
        if let Some(reason) = &choice.finish_reason {
            rec.finished = true;
            rec.stop_reason = Some(reason.to_string());
        }
    }
    if let Some(Value::Object(block)) = &chunk.usage {
        rec.server = Some(usage::server_metrics(block));
        if rec.stop_reason.is_none() {
            rec.stop_reason = usage::stop_reason(block);
        }
    }
    if let Some(Value::Object(timings)) = &chunk.timings {
        rec.timings = Some(usage::llama_timings(timings));
    }
    Ok(())
}

fn on_generic_line(
    line: &[u8],
    at: Instant,
    v2: bool,
    rec: &mut Recorder,
) -> Result<(), RequestError> {
    let mut line = line.trim_ascii();
    // Tolerate an SSE-style prefix on what should be bare JSON lines.
    if let Some(rest) = line.strip_prefix(b"data:") {
        line = rest.trim_ascii();
    }
    if line.is_empty() || line == b"[DONE]" {
        return Ok(());
    }
    rec.first_event_at.get_or_insert(at);
    if rec.done_at.is_some() {
        return Ok(());
    }
    let json: Value = match serde_json::from_slice(line) {
        Ok(json) => json,
        Err(e) => {
            let (clean, n) = usage::non_finite_to_null(line).ok_or_else(|| malformed(&e, line))?;
            rec.non_finite_values += n;
            serde_json::from_slice(&clean).map_err(|e| malformed(&e, line))?
        }
    };
    let pointer = if v2 {
        "/result/items/0/value"
    } else {
        "/result/responses/0"
    };
    let Some(Value::Object(response)) = json.pointer(pointer) else {
        if let Some(error) = json.get("error").filter(|e| !e.is_null()) {
            return Err(in_stream_error(error, line));
        }
        return Err(RequestError {
            kind: ErrorKind::MalformedEvent,
            message: format!("line has no `{pointer}` object: {}", excerpt(line)),
        });
    };
    let is_last = response
        .get("is_last_response")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !is_last {
        let token = response.get("stream_token").and_then(Value::as_str);
        rec.push_text(at, &[token]);
        return Ok(());
    }
    final_generic_response(response, at, rec);
    Ok(())
}

fn final_generic_response(response: &Map<String, Value>, at: Instant, rec: &mut Recorder) {
    rec.server = Some(usage::server_metrics(response));
    rec.stop_reason = usage::stop_reason(response);
    if rec.text.is_empty()
        && let Some(completion) = response.get("completion").and_then(Value::as_str)
    {
        rec.text.push_str(completion);
    }
    rec.done_at = Some(at);
}

/// An error object the server sent inside a successful response.
fn in_stream_error(error: &Value, raw: &[u8]) -> RequestError {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| error.as_str().map(str::to_string))
        .unwrap_or_else(|| excerpt(raw));
    let code = error
        .get("code")
        .or_else(|| error.get("status"))
        .and_then(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c));
    let kind = match code {
        Some(429) => ErrorKind::RateLimited,
        Some(status) => ErrorKind::Http(status),
        None => ErrorKind::StreamBroken,
    };
    RequestError {
        kind,
        message: format!(
            "server error inside the stream: {}",
            super::shorten(&message, EXCERPT)
        ),
    }
}

fn malformed(e: &serde_json::Error, raw: &[u8]) -> RequestError {
    RequestError {
        kind: ErrorKind::MalformedEvent,
        message: format!("invalid JSON in streamed event ({e}): {}", excerpt(raw)),
    }
}

fn excerpt(raw: &[u8]) -> String {
    super::shorten(&String::from_utf8_lossy(raw), EXCERPT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(decoder: &mut Decoder, frames: &[&str]) -> (Recorder, Result<(), RequestError>) {
        let mut rec = Recorder::default();
        let t0 = Instant::now();
        for (i, frame) in frames.iter().enumerate() {
            let at = t0 + std::time::Duration::from_millis(i as u64);
            if let Err(e) = decoder.feed(frame.as_bytes(), at, &mut rec) {
                return (rec, Err(e));
            }
        }
        let result = decoder.finish(&mut rec);
        (rec, result)
    }

    #[test]
    fn chat_token_events_follow_the_rules() {
        let (rec, result) = run(
            &mut Decoder::chat(),
            &[
                ": keep-alive\n\n",
                "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
                "data: {\"choices\":[{\"delta\":{\"reasoning\":\"think \"}}]}\n\n",
                "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\\u006co\"}}]}\n\n",
                "data: {\"choices\":[{\"delta\":{\"content\":\"!\"},\"finish_reason\":\"length\"}]}\n\n",
                "data: {\"choices\":[],\"usage\":{\"completion_tokens\":0,\"prompt_tokens\":3}}\n\n",
                "data: [DONE]\n\n",
            ],
        );
        result.unwrap();
        assert_eq!(rec.text, "think Hello!");
        assert_eq!(
            rec.token_events
                .iter()
                .map(|e| e.text_end)
                .collect::<Vec<_>>(),
            vec![6, 11, 12]
        );
        assert_eq!(rec.stop_reason.as_deref(), Some("length"));
        let server = rec.server.unwrap();
        assert_eq!(
            (server.output_tokens, server.input_tokens),
            (Some(0), Some(3))
        );
        assert!(rec.done_at.is_some() && rec.first_event_at.is_some());
        assert!(rec.first_event_at < Some(rec.token_events[0].at));
    }

    #[test]
    fn missing_usage_is_not_an_error() {
        let (rec, result) = run(
            &mut Decoder::chat(),
            &["data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n"],
        );
        result.unwrap();
        assert!(rec.server.is_none());
        assert!(rec.complete(false));
    }

    #[test]
    fn malformed_and_in_stream_errors_are_classified() {
        let (_, result) = run(&mut Decoder::chat(), &["data: {\"choices\":[{\n\n"]);
        assert_eq!(result.unwrap_err().kind, ErrorKind::MalformedEvent);
        let (_, result) = run(
            &mut Decoder::chat(),
            &["data: {\"error\":{\"message\":\"overloaded\",\"code\":503}}\n\n"],
        );
        let err = result.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Http(503));
        assert!(err.message.contains("overloaded"), "{}", err.message);
    }

    #[test]
    fn generic_v1_and_v2_lines_are_decoded() {
        let (rec, result) = run(
            &mut Decoder::generic(true),
            &[
                "{\"result\":{\"items\":[{\"value\":{\"stream_token\":\"Hi\",\"is_last_response\":false}}]}}\n",
                "{\"result\":{\"items\":[{\"value\":{\"stream_token\":\" there\",\"is_last_response\":false}}]}}\n{\"result\":{\"items\":[{\"value\":{\"is_last_response\":true,\"completion\":\"Hi there\",\"prompt_tokens_count\":5,\"completion_tokens_count\":2,\"time_to_first_token\":0.1,\"model_execution_time\":0.4,\"throughput_after_first_token\":10.0,\"batch_size_used\":1,\"stop_reason\":\"end_of_text\"}}]}}",
            ],
        );
        result.unwrap();
        assert_eq!(rec.text, "Hi there");
        assert_eq!(rec.token_events.len(), 2);
        assert_eq!(rec.stop_reason.as_deref(), Some("end_of_text"));
        let server = rec.server.unwrap();
        assert_eq!(server.end_to_end_latency_s, Some(0.4));
        assert_eq!(server.batch_size_used, Some(1));
        let (rec, result) = run(
            &mut Decoder::generic(false),
            &[
                "{\"result\":{\"responses\":[{\"stream_token\":\"x\",\"is_last_response\":false}]}}\n",
            ],
        );
        result.unwrap();
        assert_eq!(rec.text, "x");
        assert!(!rec.complete(true));
    }
}
