//! Joins the client's requests with the simulator's truth records by `x-request-id` and turns
//! each pair into timestamp errors. The definitions (also in docs/performance.md):
//!
//! - true TTFT = `first_token_written - arrival` (server hand-over of the first token's frame
//!   minus the request's arrival at the server's host: the kernel's receive time of its head,
//!   `received_unix_us`, or where that is missing the instant the simulator read it);
//! - TTFT error = client TTFT - true TTFT = send side + receive side, where
//!   send side = `arrival - client start` and receive side = `client stamp of the first token -
//!   first_token_written` (same host, one realtime clock);
//! - end-to-end error = client e2e - (`last_token_written - arrival`);
//! - inter-token error = each client gap - the gap between the same two token frames' write
//!   instants (`token_written_offsets_us`).

use std::collections::HashMap;

use coebench_simulator::TruthRecord;
use serde::{Deserialize, Serialize};

use crate::child::ClientRequest;

/// Percentiles of one error, microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Quantiles {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Quantiles {
    /// Nearest-rank quantiles of `values` (sorted in place).
    pub fn of(values: &mut [f64]) -> Quantiles {
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if values.is_empty() {
                return 0.0;
            }
            let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len());
            values[rank - 1]
        };
        Quantiles {
            n: values.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: values.last().copied().unwrap_or(0.0),
        }
    }
}

/// The errors of one run, microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Errors {
    /// Client TTFT - true TTFT.
    pub ttft: Quantiles,
    /// Client start -> server arrival.
    pub send_side: Quantiles,
    /// Server write of the first token -> client stamp.
    pub receive_side: Quantiles,
    /// Client inter-token gap - true gap.
    pub itl: Quantiles,
    /// |client inter-token gap - true gap|.
    pub itl_abs: Quantiles,
    /// Client e2e - true e2e.
    pub e2e: Quantiles,
    /// Requests without a truth record or a needed field.
    pub unjoined: usize,
    /// True TTFT, for scale.
    pub true_ttft: Quantiles,
    /// Kernel receipt -> the simulator's handler: the server's own input delay, excluded from
    /// the truth's arrival.
    pub server_read_delay: Quantiles,
}

/// Reads a truth log (JSON lines) into a map by request id.
pub fn read_truth(path: &std::path::Path) -> HashMap<String, TruthRecord> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<TruthRecord>(l).ok())
        .map(|r| (r.request_id.clone(), r))
        .collect()
}

/// Joins `requests` with `truth` and computes every error.
pub fn errors(requests: &[ClientRequest], truth: &HashMap<String, TruthRecord>) -> Errors {
    let (mut ttft, mut send, mut recv, mut itl, mut itl_abs, mut e2e, mut true_ttft) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut read_delay = Vec::new();
    let mut unjoined = 0;
    for r in requests.iter().filter(|r| r.ok) {
        let Some(t) = truth.get(&r.id) else {
            unjoined += 1;
            continue;
        };
        let (Some(first), Some(last), Some(client_ttft), Some(client_e2e)) = (
            t.first_token_written_unix_us,
            t.last_token_written_unix_us,
            r.ttft_s,
            r.e2e_s,
        ) else {
            unjoined += 1;
            continue;
        };
        let arrival = t.received_unix_us.unwrap_or(t.arrival_unix_us) as f64;
        read_delay.push(t.arrival_unix_us as f64 - arrival);
        let start = r.start_us as f64;
        let truth_ttft = first as f64 - arrival;
        true_ttft.push(truth_ttft);
        ttft.push(client_ttft * 1e6 - truth_ttft);
        send.push(arrival - start);
        recv.push(start + client_ttft * 1e6 - first as f64);
        e2e.push(client_e2e * 1e6 - (last as f64 - arrival));
        if let Some(offsets) = &t.token_written_offsets_us {
            for (gap, w) in r.itl_s.iter().zip(offsets.windows(2)) {
                let err = gap * 1e6 - f64::from(w[1].saturating_sub(w[0]));
                itl.push(err);
                itl_abs.push(err.abs());
            }
        }
    }
    Errors {
        ttft: Quantiles::of(&mut ttft),
        send_side: Quantiles::of(&mut send),
        receive_side: Quantiles::of(&mut recv),
        itl: Quantiles::of(&mut itl),
        itl_abs: Quantiles::of(&mut itl_abs),
        e2e: Quantiles::of(&mut e2e),
        unjoined,
        true_ttft: Quantiles::of(&mut true_ttft),
        server_read_delay: Quantiles::of(&mut read_delay),
    }
}

/// Dispatch delay of open-loop requests, microseconds.
pub fn dispatch(requests: &[ClientRequest]) -> Quantiles {
    let mut d: Vec<f64> = requests
        .iter()
        .filter_map(|r| r.dispatch_delay_s)
        .map(|s| s * 1e6)
        .collect();
    Quantiles::of(&mut d)
}
