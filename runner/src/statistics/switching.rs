//! Model-switching time of a row: how much longer the row's first request waited for its first
//! token than the requests after it, when the difference is significant.
//!
//! The rule is the one the user's spec (the seed README) states: the first request's TTFT is a
//! switch when it exceeds the mean of the other requests' TTFTs by more than three of their
//! standard deviations, and the switching time is then the difference between the first TTFT and
//! that mean. This fixes the kit's test, which compared `first - mean` against `mean + 3 std`
//! (kit-reference 5.7, defect 1). The estimate only reads records;
//! [`SwitchingEstimate::value_for`] says which record carries it: the earliest request's.

use serde::{Deserialize, Serialize};

use crate::statistics::record_digest::RecordDigest;
use crate::statistics::stats;

/// Which time to first token the estimate used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TtftSource {
    /// `server_ttft_s`: every successful request reported one.
    ServerTtft,
    /// `client_ttft_s`: some successful request had no server TTFT.
    ClientTtft,
}

/// The switching-time estimate of a row, with the numbers it was decided from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SwitchingEstimate {
    /// Switching time in seconds (rounded to 4 decimals): `first - mean` when significant, 0
    /// when not, `None` when not estimable (fewer than 3 successful requests with a TTFT).
    pub switching_time_s: Option<f64>,
    /// `request_idx` of the earliest-sent successful request with a TTFT.
    pub first_request_idx: Option<u32>,
    /// Which TTFT was compared.
    pub source: Option<TtftSource>,
    /// The first request's TTFT, seconds.
    pub first_ttft_s: Option<f64>,
    /// Mean TTFT of the requests it was compared with, seconds.
    pub others_mean_s: Option<f64>,
    /// Sample standard deviation of their TTFTs, seconds.
    pub others_stddev_s: Option<f64>,
    /// How many requests it was compared with.
    pub others_count: usize,
    /// Whether those were only the requests sent after the first request's first token arrived
    /// (`false`: all the other requests).
    pub others_sent_after_first_token: bool,
}

/// Minimum number of successful requests with a TTFT for an estimate: the first one plus two
/// others to have a standard deviation.
pub const MIN_REQUESTS: usize = 3;

/// One successful request as the estimate sees it.
struct Sample {
    idx: u32,
    sent: f64,
    first_token_at: f64,
    ttft: f64,
}

/// Estimates the switching time of a row from its records.
///
/// 1. Successful requests, in the order they were actually sent (ties by `request_idx`).
/// 2. TTFT = `server_ttft_s` when every success has one, else `client_ttft_s` (successes
///    without a first token are then left out).
/// 3. `first` = the earliest request's TTFT. The others are the requests sent at or after the
///    moment the first request's first token arrived (requests of the same initial wave may have
///    waited for the same switch); when fewer than 2 such requests exist, all the others.
/// 4. If `first > mean + 3 * stddev` of the others: `first - mean`; otherwise 0.
pub fn estimate(records: &[RecordDigest]) -> SwitchingEstimate {
    let successes: Vec<&RecordDigest> = records.iter().filter(|r| r.is_success()).collect();
    let source = if !successes.is_empty() && successes.iter().all(|r| r.server_ttft_s.is_some()) {
        TtftSource::ServerTtft
    } else {
        TtftSource::ClientTtft
    };
    let mut samples: Vec<Sample> = successes
        .iter()
        .filter_map(|r| {
            let ttft = match source {
                TtftSource::ServerTtft => r.server_ttft_s,
                TtftSource::ClientTtft => r.client_ttft_s,
            }?;
            let arrival = r.client_ttft_s.map_or(r.end_s, |t| r.actual_send_s + t);
            Some(Sample {
                idx: r.request_idx,
                sent: r.actual_send_s,
                first_token_at: arrival,
                ttft,
            })
        })
        .filter(|s| s.ttft.is_finite() && s.sent.is_finite())
        .collect();
    samples.sort_by(|a, b| a.sent.total_cmp(&b.sent).then(a.idx.cmp(&b.idx)));

    let mut result = SwitchingEstimate {
        source: (!samples.is_empty()).then_some(source),
        first_request_idx: samples.first().map(|s| s.idx),
        first_ttft_s: samples.first().map(|s| s.ttft),
        ..SwitchingEstimate::default()
    };
    let Some((first, rest)) = samples.split_first() else {
        return result;
    };
    if samples.len() < MIN_REQUESTS {
        return result;
    }
    let after: Vec<f64> = rest
        .iter()
        .filter(|s| s.sent >= first.first_token_at)
        .map(|s| s.ttft)
        .collect();
    let (others, only_after) = if after.len() >= 2 {
        (after, true)
    } else {
        (rest.iter().map(|s| s.ttft).collect(), false)
    };
    let mean = stats::mean(&others);
    let std = stats::sample_std(&others).unwrap_or(0.0);
    let switching = if first.ttft > mean + 3.0 * std {
        stats::round4(first.ttft - mean)
    } else {
        0.0
    };
    result.switching_time_s = Some(switching).filter(|v| v.is_finite());
    result.others_mean_s = Some(mean).filter(|v| v.is_finite());
    result.others_stddev_s = Some(std).filter(|v| v.is_finite());
    result.others_count = others.len();
    result.others_sent_after_first_token = only_after;
    result
}

impl SwitchingEstimate {
    /// The `server_switching_time` of request `request_idx`'s record: the estimate on the first
    /// request's record, `null` on every other.
    pub fn value_for(&self, request_idx: u32) -> Option<f64> {
        if Some(request_idx) == self.first_request_idx {
            self.switching_time_s
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A successful request sent at `sent` with client TTFT `ttft` and server TTFT `server`.
    fn req(idx: u32, sent: f64, ttft: f64, server: Option<f64>) -> RecordDigest {
        RecordDigest {
            request_idx: idx,
            actual_send_s: sent,
            client_ttft_s: Some(ttft),
            server_ttft_s: server,
            end_s: sent + ttft + 1.0,
            ..RecordDigest::default()
        }
    }

    fn sequential(ttfts: &[f64]) -> Vec<RecordDigest> {
        // One at a time: each request is sent when the previous one ended.
        let mut at = 0.0;
        ttfts
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let r = req(i as u32, at, t + 0.05, Some(t));
                at = r.end_s;
                r
            })
            .collect()
    }

    #[test]
    fn too_few_requests_are_not_estimable() {
        let one = estimate(&sequential(&[3.0]));
        assert_eq!(one.switching_time_s, None);
        assert_eq!(one.first_request_idx, Some(0));
        let two = estimate(&sequential(&[3.0, 0.1]));
        assert_eq!(two.switching_time_s, None);
        assert_eq!(estimate(&[]).switching_time_s, None);
        assert_eq!(estimate(&[]).source, None);
    }

    #[test]
    fn equal_ttfts_give_zero() {
        let e = estimate(&sequential(&[0.2; 6]));
        assert_eq!(e.switching_time_s, Some(0.0));
        assert_eq!(e.source, Some(TtftSource::ServerTtft));
        assert_eq!(e.others_count, 5);
    }

    #[test]
    fn a_clear_outlier_gives_first_minus_mean() {
        let e = estimate(&sequential(&[2.5, 0.10, 0.12, 0.11, 0.09, 0.13]));
        // mean of others 0.11, std 0.0158: 2.5 > 0.11 + 0.047.
        assert_eq!(e.switching_time_s, Some(2.39));
        assert_eq!(e.others_mean_s.map(stats::round4), Some(0.11));
    }

    #[test]
    fn the_kit_test_would_have_missed_a_small_switch() {
        // first = 0.5, others mean 0.3 (std 0.01): a switch of 0.2 s. The kit's test asked
        // whether 0.2 > 0.3 + 0.03 and said no.
        let e = estimate(&sequential(&[0.5, 0.29, 0.30, 0.31]));
        assert_eq!(e.switching_time_s, Some(0.2));
    }

    #[test]
    fn client_ttft_is_used_without_server_metrics() {
        let mut records = sequential(&[1.0, 0.1, 0.1, 0.1]);
        records[2].server_ttft_s = None;
        let e = estimate(&records);
        assert_eq!(e.source, Some(TtftSource::ClientTtft));
        // Client TTFTs are server + 0.05: 1.05 - 0.15.
        assert_eq!(e.switching_time_s, Some(0.9));
    }

    #[test]
    fn errors_are_ignored_and_send_order_decides_first() {
        let mut records = sequential(&[0.1, 0.1, 0.1, 0.1]);
        records[0].error_code = Some("503".into());
        records[3].actual_send_s = -1.0; // sent before everything else
        records[3].server_ttft_s = Some(2.0);
        let e = estimate(&records);
        assert_eq!(e.first_request_idx, Some(3));
        assert_eq!(e.switching_time_s, Some(1.9));
        let set: Vec<Option<f64>> = records.iter().map(|r| e.value_for(r.request_idx)).collect();
        assert_eq!(set, vec![None, None, None, Some(1.9)]);
    }

    #[test]
    fn a_concurrent_first_wave_is_not_compared_with_itself() {
        // Concurrency 4: the first wave of four all waited ~5 s for the switch; the later
        // requests were sent after the first token arrived and took ~0.1 s.
        let mut records = Vec::new();
        for (i, t) in [5.0, 5.01, 5.02, 4.99].into_iter().enumerate() {
            records.push(req(i as u32, 0.0, t, Some(t)));
        }
        for i in 4..12 {
            let t = 0.1 + 0.001 * f64::from(i % 3);
            records.push(req(i, 6.0 + f64::from(i), t, Some(t)));
        }
        let e = estimate(&records);
        assert!(e.others_sent_after_first_token);
        assert_eq!(e.others_count, 8);
        let switching = e.switching_time_s.unwrap();
        assert!((switching - 4.899).abs() < 0.001, "{switching}");
    }

    #[test]
    fn falls_back_to_all_others_when_few_are_sent_after_the_first_token() {
        // Everything sent at once: nobody was sent after the first token arrived.
        let records: Vec<RecordDigest> = [3.0, 0.1, 0.1, 0.1]
            .into_iter()
            .enumerate()
            .map(|(i, t)| req(i as u32, 0.0, t, Some(t)))
            .collect();
        let e = estimate(&records);
        assert!(!e.others_sent_after_first_token);
        assert_eq!(e.others_count, 3);
        assert_eq!(e.switching_time_s, Some(2.9));
    }
}
