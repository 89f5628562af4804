//! The per-request record: one entry of a row's `*_individual_responses.json`.
//!
//! [`RequestRecord::from_measurement`] holds every per-request formula (documented in
//! `docs/metrics.md`); endpoint clients only observe ([`crate::client::measurement`]) and row statistics
//! only aggregate ([`crate::statistics::summary`]). The record carries every key the kit ever wrote
//! (kit-reference 5.3, HEAD and V-Oct25), in the kit's order, followed by coebench's own keys.
//! Every key is present in every record, success or failure; a value that cannot be computed is
//! `null`, never NaN or infinity.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::client::measurement::{ErrorKind, Measurement, ServerMetrics};
use crate::statistics::stats;
use crate::statistics::token_timeline;
use coebench_support::tokenizer::TokenCounter;

/// What the engine knows about a request besides what the client observed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestContext {
    /// Position of the request in the row, from 0.
    pub request_idx: u32,
    /// The `x-request-id` header the request carried.
    pub request_id: String,
    /// Model the request was sent to.
    pub model: String,
    /// Name of the prompt (`default`, `prompt1`, ... as the kit names them).
    pub prompt_name: String,
    /// Tokens in the prompt text by the client's tokenizer (without special tokens).
    pub prompt_tokens: u32,
    /// When an open-loop schedule meant to send the request; `None` for closed-loop rows.
    pub intended_send: Option<Instant>,
    /// Output tokens the request asked for (`max_tokens`): fewer is an early stop.
    pub max_tokens: u32,
}

/// One request's metrics, serialised with its keys in declaration order.
///
/// The first 25 keys are the kit's (kit-reference 5.3; `server_switching_time` from V-Oct25
/// sits right after `server_ttft_s`, as it did there). For a failed request `error_code` and
/// `error_msg` are set, every kit metric is `null`, and coebench's observation keys (send and
/// end offsets, time to headers, chunks) are still filled in.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RequestRecord {
    /// `null` on success; otherwise [`crate::client::measurement::ErrorKind::code`] (`"503"`, `"timeout"`).
    pub error_code: Option<String>,
    /// `""` on success; otherwise the error message.
    pub error_msg: String,
    /// Name of the prompt sent.
    pub prompt_name: String,
    /// Local wall-clock time the request was sent, `HH:MM:SS.ffffff` as the kit writes it (no
    /// date: see `start_timestamp`).
    pub start_time: Option<String>,
    /// Local wall-clock time the response ended, `HH:MM:SS.ffffff`.
    pub end_time: Option<String>,
    /// Prompt tokens reported by the server.
    pub server_number_input_tokens: Option<u64>,
    /// Generated tokens reported by the server.
    pub server_number_output_tokens: Option<u64>,
    /// Total tokens reported by the server.
    pub server_number_total_tokens: Option<u64>,
    /// Time to first token reported by the server, seconds.
    pub server_ttft_s: Option<f64>,
    /// Estimated model-switching time, seconds: set on the row's earliest-sent successful
    /// request only (see [`crate::statistics::switching`]), `null` elsewhere.
    pub server_switching_time: Option<f64>,
    /// End-to-end latency reported by the server, seconds.
    pub server_end_to_end_latency_s: Option<f64>,
    /// Output tokens per second after the first token, reported by the server.
    pub server_output_token_per_s_per_request: Option<f64>,
    /// Total tokens per second reported by the server, else server total tokens / server
    /// end-to-end latency.
    pub server_total_tokens_per_s_per_request: Option<f64>,
    /// Output tokens per second over the first ten tokens after the first, by the server.
    pub server_output_token_after_first_per_s_first_ten_per_request: Option<f64>,
    /// Batch size the server ran the request in.
    pub batch_size_used: Option<u32>,
    /// Speculative-decoding acceptance rate reported by the server.
    pub acceptance_rate: Option<f64>,
    /// Prompt tokens: the server's count, else the client's count of the prompt text.
    pub number_input_tokens: Option<u64>,
    /// Generated tokens: the server's count, else the client tokenizer's count of the text.
    pub number_output_tokens: Option<u64>,
    /// The server's total, else `number_input_tokens + number_output_tokens`.
    pub number_total_tokens: Option<u64>,
    /// Time from send to the first byte of the first event carrying generated text, seconds.
    pub client_ttft_s: Option<f64>,
    /// Time from send to the end of the response stream, seconds.
    pub client_end_to_end_latency_s: Option<f64>,
    /// `(number_output_tokens - 1) / (e2e - ttft)`: output tokens per second after the first.
    pub client_output_token_per_s_per_request: Option<f64>,
    /// `(number_input_tokens + number_output_tokens) / e2e`.
    pub client_total_tokens_per_s_per_request: Option<f64>,
    /// Gap before each token after the first, seconds (see [`token_timeline`]).
    pub client_inter_token_latencies_s: Option<Vec<f64>>,
    /// Mean of `client_inter_token_latencies_s`.
    pub client_mean_inter_token_latency_s: Option<f64>,
    /// Position of the request in its row, from 0.
    pub request_idx: u32,
    /// The `x-request-id` header the request carried, to join it with server-side logs.
    pub request_id: String,
    /// Model the request was sent to.
    pub model: String,
    /// UTC time the request was sent, RFC 3339 with microseconds (unambiguous across midnight).
    pub start_timestamp: Option<String>,
    /// Finish or stop reason reported by the server.
    pub stop_reason: Option<String>,
    /// Bounded failure class ([`crate::client::measurement::ErrorKind::class`]); `null` on success.
    pub error_class: Option<String>,
    /// When the schedule meant to send the request, seconds after the row started (open loop).
    pub intended_send_s: Option<f64>,
    /// When the request was sent, seconds after the row started.
    pub actual_send_s: f64,
    /// When the response ended (or failed), seconds after the row started.
    pub end_s: f64,
    /// `actual_send_s - intended_send_s`: how late the client sent it (open loop only).
    pub dispatch_delay_s: Option<f64>,
    /// Time from send to the response headers, seconds.
    pub client_ttfb_s: Option<f64>,
    /// Time from send to the first event of any kind, seconds.
    pub client_first_event_s: Option<f64>,
    /// Time per output token after the first: `(e2e - ttft) / (number_output_tokens - 1)`.
    pub client_tpot_s: Option<f64>,
    /// `client_ttft_s - server_ttft_s`: network plus queueing before the server's first token.
    pub client_server_ttft_gap_s: Option<f64>,
    /// Client tokenizer's count of the generated text.
    pub client_output_tokens: Option<u64>,
    /// Number of streamed events that carried generated text.
    pub num_chunks: u32,
    /// Prompt tokens the server reused from its prefix cache (`prompt_tokens_details.cached_tokens`
    /// or llama.cpp's `timings.cache_n`); `null` when the server does not say.
    pub server_cached_input_tokens: Option<u64>,
    /// The request was sent a second time on a fresh connection because the server had closed
    /// its kept-alive connection before any answer (the failed attempt is not timed).
    pub stale_connection_retry: bool,
    /// A successful request generated fewer than the `max_tokens` it asked for (the model
    /// stopped at an end-of-sequence token); `null` for a failure.
    pub stopped_early: Option<bool>,
    /// Values the server sent that cannot be true (negative times, rates or counts, `NaN`,
    /// infinities): left out of the `server_*` keys and every statistic, counted here.
    pub server_impossible_values: u32,
}

impl RequestRecord {
    /// Builds the record of one request from what its client observed. `row_start` is the
    /// instant the row started; offsets (`actual_send_s`, ...) are measured from it.
    pub fn from_measurement(
        ctx: &RequestContext,
        m: &Measurement,
        tokens: &dyn TokenCounter,
        row_start: Instant,
    ) -> RequestRecord {
        let since_start = |at: Instant| secs(m.start, at);
        let intended_send_s = ctx.intended_send.map(|at| secs(row_start, at));
        let actual_send_s = secs(row_start, m.start);
        let mut record = RequestRecord {
            prompt_name: ctx.prompt_name.clone(),
            start_time: Some(wall_clock_time(m.start_wall)),
            end_time: Some(wall_clock_time(m.end_wall)),
            request_idx: ctx.request_idx,
            request_id: ctx.request_id.clone(),
            model: ctx.model.clone(),
            start_timestamp: Some(utc_timestamp(m.start_wall)),
            stop_reason: m.stop_reason.clone(),
            intended_send_s,
            actual_send_s,
            end_s: secs(row_start, m.end),
            dispatch_delay_s: ctx
                .intended_send
                .map(|intended| signed_secs(intended, m.start)),
            client_ttfb_s: m.headers_at.map(since_start),
            client_first_event_s: m.first_event_at.map(since_start),
            num_chunks: u32::try_from(m.token_events.len()).unwrap_or(u32::MAX),
            stale_connection_retry: m.stale_connection_retry,
            ..RequestRecord::default()
        };
        if let Some(error) = &m.error {
            record.error_code = Some(error.kind.code());
            record.error_msg = error.message.clone();
            record.error_class = Some(error.kind.class().to_string());
            if error.kind == ErrorKind::Interrupted {
                // Cut off by a stop: keep what was measured of it so far.
                record.client_ttft_s = m.token_events.first().map(|e| secs(m.start, e.at));
                record.client_output_tokens = Some(tokens.count_tokens(&m.generated_text) as u64);
            }
            return record;
        }
        record.fill_metrics(ctx, m, tokens);
        record
    }

    /// Computes the kit's metrics of a successful request.
    fn fill_metrics(&mut self, ctx: &RequestContext, m: &Measurement, tokens: &dyn TokenCounter) {
        let server = m.server.clone().unwrap_or_default();
        self.fill_server(&server);

        let client_out = tokens.count_tokens(&m.generated_text) as u64;
        let input = server.input_tokens.unwrap_or(u64::from(ctx.prompt_tokens));
        let output = server.output_tokens.unwrap_or(client_out);
        self.client_output_tokens = Some(client_out);
        self.number_input_tokens = Some(input);
        self.number_output_tokens = Some(output);
        self.stopped_early = Some(output < u64::from(ctx.max_tokens));
        self.number_total_tokens = Some(
            server
                .total_tokens
                .unwrap_or_else(|| input.saturating_add(output)),
        );

        let e2e = secs(m.start, m.end);
        let ttft = m.token_events.first().map(|event| secs(m.start, event.at));
        self.client_end_to_end_latency_s = Some(e2e);
        self.client_ttft_s = ttft;
        // Rates after the first token need the tokens to have arrived over time: when the
        // whole stream came in one read, they are not measurable (null, not ~1e8 tokens/s).
        let spread = match (m.token_events.first(), m.token_events.last()) {
            (Some(first), Some(last)) => last.at > first.at,
            _ => false,
        };
        let after_first = ttft.filter(|_| spread).map(|t| e2e - t);
        let later_tokens = output.checked_sub(1).filter(|&n| n > 0).map(|n| n as f64);
        self.client_output_token_per_s_per_request = ratio(later_tokens, after_first);
        self.client_tpot_s = ratio(after_first, later_tokens);
        self.client_total_tokens_per_s_per_request =
            ratio(Some(input.saturating_add(output) as f64), Some(e2e));
        self.client_server_ttft_gap_s = match (ttft, server.ttft_s) {
            (Some(client), Some(server)) => finite(client - server),
            _ => None,
        };

        if !m.token_events.is_empty() {
            let gaps = token_timeline::inter_token_gaps(
                &m.token_events,
                &m.generated_text,
                output,
                tokens,
            );
            if !gaps.is_empty() {
                self.client_mean_inter_token_latency_s = finite(stats::mean(&gaps));
                self.client_inter_token_latencies_s = Some(gaps);
            }
        }
    }

    /// Copies the server's metrics (kit-reference 5.2), a reported 0 included.
    fn fill_server(&mut self, server: &ServerMetrics) {
        self.server_impossible_values = server.impossible_values;
        self.server_number_input_tokens = server.input_tokens;
        self.server_number_output_tokens = server.output_tokens;
        self.server_number_total_tokens = server.total_tokens;
        self.server_ttft_s = server.ttft_s.and_then(finite);
        self.server_end_to_end_latency_s = server.end_to_end_latency_s.and_then(finite);
        self.server_output_token_per_s_per_request = server.output_tokens_per_s.and_then(finite);
        self.server_total_tokens_per_s_per_request =
            server.total_tokens_per_s.and_then(finite).or_else(|| {
                ratio(
                    server.total_tokens.map(|t| t as f64),
                    server.end_to_end_latency_s,
                )
            });
        self.server_output_token_after_first_per_s_first_ten_per_request = server
            .output_tokens_after_first_per_s_first_ten
            .and_then(finite);
        self.batch_size_used = server.batch_size_used;
        self.acceptance_rate = server.acceptance_rate.and_then(finite);
        self.server_cached_input_tokens = server.cached_input_tokens;
    }

    /// Whether the request succeeded (`error_code` is `null`).
    pub fn is_success(&self) -> bool {
        self.error_code.is_none()
    }
}

/// Seconds from `from` to `to`, 0 if `to` is earlier.
fn secs(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

/// Seconds from `from` to `to`, negative if `to` is earlier.
fn signed_secs(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(after) => after.as_secs_f64(),
        None => -from.saturating_duration_since(to).as_secs_f64(),
    }
}

/// `Some(x)` when `x` is finite.
pub(crate) fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// `num / den` when both are present, the denominator is positive, and the result is finite.
pub(crate) fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => finite(n / d),
        _ => None,
    }
}

/// `HH:MM:SS.ffffff` in the machine's local time zone, as the kit's
/// `datetime.now().strftime('%H:%M:%S.%f')`.
pub fn wall_clock_time(at: jiff::Timestamp) -> String {
    at.to_zoned(jiff::tz::TimeZone::system())
        .strftime("%H:%M:%S.%6f")
        .to_string()
}

/// RFC 3339 UTC with microseconds, e.g. `2026-05-01T23:59:59.123456Z`.
pub fn utc_timestamp(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}
