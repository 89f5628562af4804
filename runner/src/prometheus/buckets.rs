//! The fixed bucket boundaries of the runner's latency histograms, in seconds.
//!
//! Every runner uses the same boundaries, so `sum by (le)` aggregates series across runner Pods,
//! runs and versions. The ranges are tuned to LLM inference: a first token takes milliseconds
//! (a warm small model) to minutes (a queued, cold, very long prompt), gaps between tokens a
//! fraction of a millisecond (speculative decoding) to seconds (a stall), and a whole response
//! up to the longest request timeout a plan may reasonably set (30 minutes). Changing a boundary
//! breaks aggregation with older runners: add new arrays instead. This module only holds data.

/// Time to first token (client and server side): 5 ms to 120 s.
pub const TTFT_SECONDS: [f64; 23] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5,
    10.0, 15.0, 20.0, 30.0, 60.0, 120.0,
];

/// Gap before each generated token after the first: 0.5 ms to 5 s.
pub const INTER_TOKEN_SECONDS: [f64; 19] = [
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15,
    0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Whole request, send to end of stream: 50 ms to 1800 s.
pub const END_TO_END_SECONDS: [f64; 22] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0,
    180.0, 300.0, 600.0, 1200.0, 1800.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn check(buckets: &[f64], first: f64, last: f64) {
        assert_eq!(buckets.first(), Some(&first));
        assert_eq!(buckets.last(), Some(&last));
        assert!(
            buckets.windows(2).all(|w| w[0] < w[1]),
            "strictly increasing: {buckets:?}"
        );
        assert!(buckets.iter().all(|b| b.is_finite() && *b > 0.0));
        // No gap wider than a factor of 2.5, so a quantile estimate is never off by more.
        assert!(
            buckets.windows(2).all(|w| w[1] / w[0] <= 2.5 + 1e-9),
            "a gap wider than 2.5x in {buckets:?}"
        );
    }

    #[test]
    fn boundaries_cover_llm_ranges_without_wide_gaps() {
        check(&TTFT_SECONDS, 0.005, 120.0);
        check(&INTER_TOKEN_SECONDS, 0.0005, 5.0);
        check(&END_TO_END_SECONDS, 0.05, 1800.0);
    }
}
