//! Goodput: the share of a row's requests that met every latency objective of the run
//! (`options.objectives`). Every request sent counts: a failed or timed-out request is a miss,
//! where the kit and most peers leave failures out and so overstate it.

use coebench_plan::Objectives;
use serde::Serialize;

use crate::statistics::record_digest::RecordDigest;
use crate::statistics::stats::round4;

/// A row's goodput.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Goodput {
    /// Requests that succeeded and met every objective.
    pub met: u32,
    /// Requests counted: every request sent.
    pub counted: u32,
    /// `met / counted` (4 decimals); `None` when nothing was sent.
    pub share: Option<f64>,
}

/// Whether one request met `objectives` (a failure never does).
fn meets(digest: &RecordDigest, objectives: &Objectives) -> bool {
    let within = |value: Option<f64>, limit: Option<f64>| match limit {
        None => true,
        Some(limit) => value.is_some_and(|v| v <= limit),
    };
    digest.is_success()
        && within(digest.client_ttft_s, objectives.ttft_seconds)
        && within(digest.client_end_to_end_latency_s, objectives.e2e_seconds)
        && within(
            digest.client_mean_inter_token_latency_s,
            objectives.inter_token_latency_seconds,
        )
}

/// The goodput of `digests` under `objectives`.
pub fn goodput(digests: &[RecordDigest], objectives: &Objectives) -> Goodput {
    let met = digests.iter().filter(|d| meets(d, objectives)).count();
    let counted = digests.len();
    Goodput {
        met: u32::try_from(met).unwrap_or(u32::MAX),
        counted: u32::try_from(counted).unwrap_or(u32::MAX),
        share: (counted > 0).then(|| round4(met as f64 / counted as f64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ttft: f64, e2e: f64, itl: f64, failed: bool) -> RecordDigest {
        RecordDigest {
            error_code: failed.then(|| "500".to_string()),
            client_ttft_s: Some(ttft),
            client_end_to_end_latency_s: Some(e2e),
            client_mean_inter_token_latency_s: Some(itl),
            ..RecordDigest::default()
        }
    }

    #[test]
    fn every_objective_must_hold_and_failures_are_misses() {
        let digests = [
            request(0.1, 1.0, 0.01, false), // meets all
            request(0.6, 1.0, 0.01, false), // TTFT too slow
            request(0.1, 3.0, 0.01, false), // e2e too slow
            request(0.1, 1.0, 0.05, false), // inter-token too slow
            request(0.1, 1.0, 0.01, true),  // fast, but failed
        ];
        let all = Objectives {
            ttft_seconds: Some(0.5),
            e2e_seconds: Some(2.0),
            inter_token_latency_seconds: Some(0.02),
        };
        assert_eq!(
            goodput(&digests, &all),
            Goodput {
                met: 1,
                counted: 5,
                share: Some(0.2)
            }
        );
        let ttft_only = Objectives {
            ttft_seconds: Some(0.5),
            ..Objectives::default()
        };
        assert_eq!(goodput(&digests, &ttft_only).met, 3);
        let missing = RecordDigest {
            client_ttft_s: None,
            ..request(0.1, 1.0, 0.01, false)
        };
        assert_eq!(goodput(&[missing], &ttft_only).met, 0, "no TTFT is no pass");
        assert_eq!(goodput(&[], &all).share, None);
    }
}
