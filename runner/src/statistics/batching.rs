//! Batch sizes the server ran a row's requests in, inferred as the kit does (kit-reference 5.6)
//! with its defects fixed.
//!
//! Requests the server batched together finish prefill together and report the same server
//! TTFT, so runs of equal `server_ttft_s` in completion order are taken as batches. Unlike the
//! kit, this sorts successful requests by the instant their response ended (not a time-of-day
//! string that breaks across midnight), drops errored requests, and counts each request once
//! when choosing the representative batch size (kit defects 2 and 3). When the server reports
//! `batch_size_used` for every request, the frequencies come from it instead. This module only
//! reads records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::statistics::record_digest::RecordDigest;

/// Where `request_batching_frequencies` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchSource {
    /// The server's `batch_size_used`, reported by every successful request.
    BatchSizeUsed,
    /// Runs of equal server TTFT (`requests_batching`).
    TtftGrouping,
}

/// The batch-size inference of a row.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BatchingInference {
    /// Sizes of the runs of exactly equal `server_ttft_s`, successful requests in the order
    /// their responses ended. Empty without server TTFTs.
    pub requests_grouping: Vec<u32>,
    /// Each run's inferred batch: the next power of two of its size (1, 2, 4, 8, ...).
    pub requests_batching: Vec<u32>,
    /// Number of requests run in each batch size.
    pub request_batching_frequencies: BTreeMap<u32, u32>,
    /// The batch size holding more than half of the requests, if one does.
    pub representative_batch_size: Option<u32>,
    /// Where the frequencies came from; `None` when there is nothing to infer from.
    pub source: Option<BatchSource>,
}

/// Infers the batch sizes of a row's requests.
pub fn infer(records: &[RecordDigest]) -> BatchingInference {
    let mut successes: Vec<&RecordDigest> = records.iter().filter(|r| r.is_success()).collect();
    successes.sort_by(|a, b| {
        a.end_s
            .total_cmp(&b.end_s)
            .then(a.request_idx.cmp(&b.request_idx))
    });

    let mut grouping: Vec<u32> = Vec::new();
    let mut previous: Option<f64> = None;
    for ttft in successes.iter().filter_map(|r| r.server_ttft_s) {
        match grouping.last_mut() {
            // Exact equality on purpose: batched requests report the very same value.
            Some(size) if previous == Some(ttft) => *size += 1,
            _ => grouping.push(1),
        }
        previous = Some(ttft);
    }
    let batching: Vec<u32> = grouping.iter().map(|&n| next_power_of_two(n)).collect();

    let mut frequencies: BTreeMap<u32, u32> = BTreeMap::new();
    let reported: Option<Vec<u32>> = successes.iter().map(|r| r.batch_size_used).collect();
    let source = match reported {
        Some(sizes) if !sizes.is_empty() => {
            for size in sizes {
                *frequencies.entry(size).or_default() += 1;
            }
            Some(BatchSource::BatchSizeUsed)
        }
        _ if !grouping.is_empty() => {
            for (&size, &batch) in grouping.iter().zip(&batching) {
                *frequencies.entry(batch).or_default() += size;
            }
            Some(BatchSource::TtftGrouping)
        }
        _ => None,
    };
    let total: u64 = frequencies.values().map(|&n| u64::from(n)).sum();
    let representative_batch_size = frequencies
        .iter()
        .find(|&(_, &n)| u64::from(n) * 2 > total)
        .map(|(&batch, _)| batch);

    BatchingInference {
        requests_grouping: grouping,
        requests_batching: batching,
        request_batching_frequencies: frequencies,
        representative_batch_size,
        source,
    }
}

/// The smallest power of two `>= n` (the kit's `1 << (n - 1).bit_length()`): 1→1, 3→4, 5→8.
pub fn next_power_of_two(n: u32) -> u32 {
    n.checked_next_power_of_two().unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A successful request that ended at `end` with server TTFT `ttft`.
    fn req(idx: u32, end: f64, ttft: Option<f64>, batch: Option<u32>) -> RecordDigest {
        RecordDigest {
            request_idx: idx,
            end_s: end,
            server_ttft_s: ttft,
            batch_size_used: batch,
            ..RecordDigest::default()
        }
    }

    #[test]
    fn runs_of_equal_ttft_in_end_order_are_batches() {
        // Listed out of end order on purpose.
        let records = vec![
            req(0, 2.0, Some(0.5), None),
            req(1, 1.0, Some(0.3), None),
            req(2, 1.1, Some(0.3), None),
            req(3, 1.2, Some(0.3), None),
            req(4, 2.1, Some(0.5), None),
            req(5, 3.0, Some(0.7), None),
        ];
        let b = infer(&records);
        assert_eq!(b.requests_grouping, vec![3, 2, 1]);
        assert_eq!(b.requests_batching, vec![4, 2, 1]);
        assert_eq!(
            b.request_batching_frequencies,
            BTreeMap::from([(1, 1), (2, 2), (4, 3)])
        );
        assert_eq!(
            b.representative_batch_size, None,
            "4 holds 3 of 6: not > 50 %"
        );
        assert_eq!(b.source, Some(BatchSource::TtftGrouping));
    }

    #[test]
    fn representative_batch_counts_each_request_once() {
        // Batches of 4, 4 and 1: 8 of 9 requests ran in batch 4. The kit's HEAD weighting
        // (4 * 8 / 33) also picks 4 here, but would pick 4 for [4, 1, 1, 1, 1, 1] too, where
        // only 4 of 9 requests ran batched.
        let mut records: Vec<RecordDigest> = (0..8)
            .map(|i| req(i, f64::from(i), Some(if i < 4 { 0.1 } else { 0.2 }), None))
            .collect();
        records.push(req(8, 9.0, Some(0.3), None));
        assert_eq!(infer(&records).representative_batch_size, Some(4));
        let mut mostly_single: Vec<RecordDigest> = (0..4)
            .map(|i| req(i, f64::from(i), Some(0.1), None))
            .collect();
        for i in 4..9 {
            mostly_single.push(req(i, f64::from(i), Some(f64::from(i)), None));
        }
        assert_eq!(infer(&mostly_single).representative_batch_size, Some(1));
    }

    #[test]
    fn server_batch_sizes_win_when_every_success_has_one() {
        let records = vec![
            req(0, 1.0, Some(0.3), Some(8)),
            req(1, 1.1, Some(0.3), Some(8)),
            req(2, 1.2, Some(0.4), Some(1)),
        ];
        let b = infer(&records);
        assert_eq!(b.requests_grouping, vec![2, 1]);
        assert_eq!(
            b.request_batching_frequencies,
            BTreeMap::from([(1, 1), (8, 2)])
        );
        assert_eq!(b.representative_batch_size, Some(8));
        assert_eq!(b.source, Some(BatchSource::BatchSizeUsed));
    }

    #[test]
    fn errors_are_dropped() {
        let mut records = vec![
            req(0, 1.0, Some(0.3), None),
            req(1, 1.1, Some(0.9), None),
            req(2, 1.2, Some(0.3), None),
        ];
        records[1].error_code = Some("500".into());
        assert_eq!(infer(&records).requests_grouping, vec![2]);
    }

    #[test]
    fn nothing_to_infer_from() {
        let b = infer(&[req(0, 1.0, None, None), req(1, 2.0, None, None)]);
        assert_eq!(b, BatchingInference::default());
        assert_eq!(infer(&[]), BatchingInference::default());
        let one = infer(&[req(0, 1.0, Some(0.2), None)]);
        assert_eq!(one.requests_grouping, vec![1]);
        assert_eq!(one.representative_batch_size, Some(1));
    }

    #[test]
    fn powers_of_two() {
        let got: Vec<u32> = [1, 2, 3, 4, 5, 9, 16, 17].map(next_power_of_two).to_vec();
        assert_eq!(got, vec![1, 2, 4, 4, 8, 16, 16, 32]);
        assert_eq!(next_power_of_two(u32::MAX), u32::MAX);
    }
}
