//! The part of a request's record a row keeps in memory while it runs: the numbers its
//! statistics, switching-time estimate and batch inference need, and where the full record was
//! spooled. About 400 bytes whatever the request's length, so a row's memory grows with its
//! in-flight requests, not with the tokens it has recorded.
//!
//! Field names and meanings are those of [`RequestRecord`]; this module only copies them.

use crate::statistics::record::RequestRecord;
use crate::statistics::spool::SpoolRef;

/// The in-memory summary of one [`RequestRecord`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordDigest {
    /// Position of the request in its row, from 0.
    pub request_idx: u32,
    /// `null` on success; otherwise the error code.
    pub error_code: Option<String>,
    /// The bounded failure class; `None` on success.
    pub error_class: Option<String>,
    /// When the request was sent, seconds after the row started.
    pub actual_send_s: f64,
    /// When the response ended (or failed), seconds after the row started.
    pub end_s: f64,
    /// How late the client sent it (open loop only).
    pub dispatch_delay_s: Option<f64>,
    /// Client time to first token.
    pub client_ttft_s: Option<f64>,
    /// Client end-to-end latency.
    pub client_end_to_end_latency_s: Option<f64>,
    /// Client output tokens per second after the first.
    pub client_output_token_per_s_per_request: Option<f64>,
    /// Prompt tokens (server's, else client's).
    pub number_input_tokens: Option<u64>,
    /// Generated tokens (server's, else client's).
    pub number_output_tokens: Option<u64>,
    /// Mean inter-token latency.
    pub client_mean_inter_token_latency_s: Option<f64>,
    /// Server time to first token.
    pub server_ttft_s: Option<f64>,
    /// Server end-to-end latency.
    pub server_end_to_end_latency_s: Option<f64>,
    /// Server output tokens per second after the first.
    pub server_output_token_per_s_per_request: Option<f64>,
    /// Server output tokens per second over the first ten after the first.
    pub server_output_token_after_first_per_s_first_ten_per_request: Option<f64>,
    /// Prompt tokens reported by the server.
    pub server_number_input_tokens: Option<u64>,
    /// Generated tokens reported by the server.
    pub server_number_output_tokens: Option<u64>,
    /// Speculative-decoding acceptance rate.
    pub acceptance_rate: Option<f64>,
    /// Client TTFT minus server TTFT.
    pub client_server_ttft_gap_s: Option<f64>,
    /// Time per output token after the first.
    pub client_tpot_s: Option<f64>,
    /// Time to the response headers.
    pub client_ttfb_s: Option<f64>,
    /// Batch size the server ran the request in.
    pub batch_size_used: Option<u32>,
    /// Prompt tokens the server reused from its prefix cache.
    pub server_cached_input_tokens: Option<u64>,
    /// Sent again on a fresh connection after its kept-alive one was found closed.
    pub stale_connection_retry: bool,
    /// Generated fewer tokens than asked for.
    pub stopped_early: Option<bool>,
    /// The server reported its own times (TTFT, end-to-end latency or a rate).
    pub has_server_timings: bool,
    /// Impossible server values dropped from the record.
    pub server_impossible_values: u32,
    /// Where the full record is in the row's spool; `None` when it could not be spooled.
    pub spooled: Option<SpoolRef>,
}

impl RecordDigest {
    /// The digest of `record`, spooled at `spooled`.
    pub fn of(record: &RequestRecord, spooled: Option<SpoolRef>) -> Self {
        RecordDigest {
            request_idx: record.request_idx,
            server_impossible_values: record.server_impossible_values,
            error_code: record.error_code.clone(),
            error_class: record.error_class.clone(),
            actual_send_s: record.actual_send_s,
            end_s: record.end_s,
            dispatch_delay_s: record.dispatch_delay_s,
            client_ttft_s: record.client_ttft_s,
            client_end_to_end_latency_s: record.client_end_to_end_latency_s,
            client_output_token_per_s_per_request: record.client_output_token_per_s_per_request,
            number_input_tokens: record.number_input_tokens,
            number_output_tokens: record.number_output_tokens,
            client_mean_inter_token_latency_s: record.client_mean_inter_token_latency_s,
            server_ttft_s: record.server_ttft_s,
            server_end_to_end_latency_s: record.server_end_to_end_latency_s,
            server_output_token_per_s_per_request: record.server_output_token_per_s_per_request,
            server_output_token_after_first_per_s_first_ten_per_request: record
                .server_output_token_after_first_per_s_first_ten_per_request,
            server_number_input_tokens: record.server_number_input_tokens,
            server_number_output_tokens: record.server_number_output_tokens,
            acceptance_rate: record.acceptance_rate,
            client_server_ttft_gap_s: record.client_server_ttft_gap_s,
            client_tpot_s: record.client_tpot_s,
            client_ttfb_s: record.client_ttfb_s,
            batch_size_used: record.batch_size_used,
            server_cached_input_tokens: record.server_cached_input_tokens,
            stale_connection_retry: record.stale_connection_retry,
            stopped_early: record.stopped_early,
            has_server_timings: record.server_ttft_s.is_some()
                || record.server_end_to_end_latency_s.is_some()
                || record.server_output_token_per_s_per_request.is_some(),
            spooled,
        }
    }

    /// Whether the request succeeded.
    pub fn is_success(&self) -> bool {
        self.error_code.is_none()
    }
}

impl From<&RequestRecord> for RecordDigest {
    fn from(record: &RequestRecord) -> Self {
        RecordDigest::of(record, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_stays_small_whatever_the_record_holds() {
        assert!(
            std::mem::size_of::<RecordDigest>() <= 448,
            "{}",
            std::mem::size_of::<RecordDigest>()
        );
        let record = RequestRecord {
            request_idx: 7,
            client_ttft_s: Some(0.25),
            client_inter_token_latencies_s: Some(vec![0.01; 10_000]),
            ..RequestRecord::default()
        };
        let digest = RecordDigest::from(&record);
        assert_eq!((digest.request_idx, digest.client_ttft_s), (7, Some(0.25)));
        assert!(digest.is_success());
    }
}
