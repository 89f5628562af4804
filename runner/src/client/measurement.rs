//! What one request looked like from the client: raw timestamps, streamed text, server usage.
//!
//! Endpoint clients ([`crate::client`]) produce a [`Measurement`] per request and nothing else;
//! turning it into the kit's per-request metrics is [`crate::statistics::record`]'s job. Keeping the raw
//! facts here, and every formula there, means one definition of each metric.

use std::time::Instant;

/// Everything observed about one request, from just before its bytes were written until its
/// stream ended or failed.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Monotonic instant taken just before the request was written.
    pub start: Instant,
    /// Wall-clock time at `start`.
    pub start_wall: jiff::Timestamp,
    /// When the response status line and headers arrived.
    pub headers_at: Option<Instant>,
    /// When the first byte of the first event of any kind arrived (role-only, usage and
    /// keep-alive events included).
    pub first_event_at: Option<Instant>,
    /// Events that carried generated text (content or reasoning), in arrival order.
    pub token_events: Vec<TokenEvent>,
    /// Monotonic instant when the stream ended (or the request failed).
    pub end: Instant,
    /// Wall-clock time at `end`.
    pub end_wall: jiff::Timestamp,
    /// All generated text, concatenated; [`TokenEvent::text_end`] indexes into it.
    pub generated_text: String,
    /// Server-side metrics from the final usage block or generic final response, if any.
    pub server: Option<ServerMetrics>,
    /// Finish or stop reason reported by the server, if any.
    pub stop_reason: Option<String>,
    /// Why the request failed; `None` for a success.
    pub error: Option<RequestError>,
    /// The request was sent a second time, on a fresh connection, because the server had
    /// closed the kept-alive connection it first went out on before any answer (the failed
    /// attempt is not in the timings).
    pub stale_connection_retry: bool,
}

/// One event that carried generated text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenEvent {
    /// Arrival time of the first byte of the event.
    pub at: Instant,
    /// Byte offset in [`Measurement::generated_text`] where this event's text ends.
    pub text_end: u32,
}

/// Server-reported metrics, mapped from SambaNova's `usage` block or SambaStudio's final generic
/// response (kit-reference 5.2). A field is `None` only when the server did not send it: a `0`
/// is kept as `Some(0)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerMetrics {
    /// `prompt_tokens_count` or `prompt_tokens`.
    pub input_tokens: Option<u64>,
    /// `completion_tokens_count` or `completion_tokens`.
    pub output_tokens: Option<u64>,
    /// `total_tokens_count` or `total_tokens`.
    pub total_tokens: Option<u64>,
    /// `time_to_first_token` or `time_to_first_response`, seconds.
    pub ttft_s: Option<f64>,
    /// `total_latency` or `model_execution_time`, seconds.
    pub end_to_end_latency_s: Option<f64>,
    /// `completion_tokens_after_first_per_sec`, `completion_tokens_per_sec_after_first_response`
    /// or `throughput_after_first_token`.
    pub output_tokens_per_s: Option<f64>,
    /// `total_tokens_per_sec`.
    pub total_tokens_per_s: Option<f64>,
    /// `completion_tokens_after_first_per_sec_first_ten`.
    pub output_tokens_after_first_per_s_first_ten: Option<f64>,
    /// `batch_size_used`.
    pub batch_size_used: Option<u32>,
    /// `acceptance_rate` (speculative decoding).
    pub acceptance_rate: Option<f64>,
    /// Prompt tokens the server took from its prefix cache: `prompt_tokens_details.cached_tokens`
    /// (OpenAI, vLLM, SGLang) or llama.cpp's `timings.cache_n`.
    pub cached_input_tokens: Option<u64>,
    /// Values the server sent that cannot be true (a negative time, rate or count, `NaN`,
    /// an infinity): dropped from the fields above, counted here.
    pub impossible_values: u32,
}

impl ServerMetrics {
    /// `self`, each absent field taken from `other` (impossible values of both counted).
    pub fn or(self, other: &ServerMetrics) -> ServerMetrics {
        ServerMetrics {
            input_tokens: self.input_tokens.or(other.input_tokens),
            output_tokens: self.output_tokens.or(other.output_tokens),
            total_tokens: self.total_tokens.or(other.total_tokens),
            ttft_s: self.ttft_s.or(other.ttft_s),
            end_to_end_latency_s: self.end_to_end_latency_s.or(other.end_to_end_latency_s),
            output_tokens_per_s: self.output_tokens_per_s.or(other.output_tokens_per_s),
            total_tokens_per_s: self.total_tokens_per_s.or(other.total_tokens_per_s),
            output_tokens_after_first_per_s_first_ten: self
                .output_tokens_after_first_per_s_first_ten
                .or(other.output_tokens_after_first_per_s_first_ten),
            batch_size_used: self.batch_size_used.or(other.batch_size_used),
            acceptance_rate: self.acceptance_rate.or(other.acceptance_rate),
            cached_input_tokens: self.cached_input_tokens.or(other.cached_input_tokens),
            impossible_values: self.impossible_values + other.impossible_values,
        }
    }

    /// Whether the server reported any of its own times (TTFT, end-to-end latency or a rate),
    /// not only token counts.
    pub fn has_timings(&self) -> bool {
        self.ttft_s.is_some()
            || self.end_to_end_latency_s.is_some()
            || self.output_tokens_per_s.is_some()
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestError {
    /// The failure's class.
    pub kind: ErrorKind,
    /// A short human-readable message with any API key redacted.
    pub message: String,
}

/// Classes of request failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The server answered with this non-success HTTP status (other than 429).
    Http(u16),
    /// HTTP 429: the server asked the client to slow down.
    RateLimited,
    /// The request exceeded its timeout.
    Timeout,
    /// No connection could be made.
    Connect,
    /// The connection or stream broke before the response ended.
    StreamBroken,
    /// An event could not be parsed.
    MalformedEvent,
    /// The run was stopped (SIGTERM, Ctrl-C) while the request was in flight; what arrived
    /// before is kept.
    Interrupted,
}

impl ErrorKind {
    /// The value written to `error_code`: the HTTP status for HTTP errors (`"429"` for rate
    /// limits), otherwise the class name.
    pub fn code(self) -> String {
        match self {
            ErrorKind::Http(status) => status.to_string(),
            ErrorKind::RateLimited => "429".to_string(),
            ErrorKind::Timeout => "timeout".to_string(),
            ErrorKind::Connect => "connect".to_string(),
            ErrorKind::StreamBroken => "stream-broken".to_string(),
            ErrorKind::MalformedEvent => "malformed-event".to_string(),
            ErrorKind::Interrupted => "interrupted".to_string(),
        }
    }

    /// A bounded label for metrics and summaries: `http-4xx`, `http-5xx`, `rate-limited`,
    /// `timeout`, `connect`, `stream-broken`, `malformed-event`, `interrupted`.
    pub fn class(self) -> &'static str {
        match self {
            ErrorKind::Http(status) if status < 500 => "http-4xx",
            ErrorKind::Http(_) => "http-5xx",
            ErrorKind::RateLimited => "rate-limited",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::StreamBroken => "stream-broken",
            ErrorKind::MalformedEvent => "malformed-event",
            ErrorKind::Interrupted => "interrupted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_and_classes() {
        assert_eq!(ErrorKind::Http(503).code(), "503");
        assert_eq!(ErrorKind::Http(404).class(), "http-4xx");
        assert_eq!(ErrorKind::Http(500).class(), "http-5xx");
        assert_eq!(ErrorKind::RateLimited.code(), "429");
        assert_eq!(ErrorKind::RateLimited.class(), "rate-limited");
        assert_eq!(ErrorKind::StreamBroken.code(), "stream-broken");
    }
}
