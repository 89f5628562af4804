//! Model-switching time per request under mixed traffic: rows that ran at once
//! (`options.parallelRows`), where the endpoint may switch models before any request, not just
//! before a row's first.
//!
//! The rule, over every successful request of the rows that overlapped:
//! 1. Each request's first token arrived at `sent + client TTFT` (one clock for all rows).
//! 2. A request is a *candidate* when the last first token the endpoint produced before its own
//!    (more than [`BATCH_WINDOW_S`] earlier, so requests batched with it do not count) was for
//!    another model: the endpoint served that model in between, and may have had to load this
//!    one again.
//! 3. Its model's *warm* requests are the others: their TTFT mean and sample standard
//!    deviation are the model's baseline (at least [`MIN_WARM`] of them, else no baseline).
//! 4. A candidate whose TTFT exceeds the baseline mean by more than three standard deviations
//!    (at least [`MIN_EXCESS_S`]) is attributed a switch of `TTFT − mean`. TTFT is the server's
//!    when every request reported one, else the client's, as in [`crate::statistics::switching`].
//!
//! The estimate reads records only; writing it is the output layer's job.

use serde::Serialize;

use crate::statistics::record_digest::RecordDigest;
use crate::statistics::stats;
use crate::statistics::switching::TtftSource;

/// Warm requests a model needs for a baseline.
pub const MIN_WARM: usize = 2;
/// The smallest excess over the baseline mean counted as a switch (seconds), so that a
/// near-constant baseline does not flag jitter.
pub const MIN_EXCESS_S: f64 = 0.005;

/// A row's records, placed on the run's clock.
#[derive(Debug, Clone, Copy)]
pub struct TimedRow<'a> {
    /// The row's index in the plan.
    pub row_index: usize,
    /// Its model.
    pub model: &'a str,
    /// When the row started, seconds on a clock shared by every row.
    pub started_s: f64,
    /// Its record digests.
    pub digests: &'a [RecordDigest],
}

/// One request attributed a switch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributedSwitch {
    /// The request's row.
    pub row_index: usize,
    /// Its model.
    pub model: String,
    /// Its `request_idx`.
    pub request_idx: u32,
    /// The other model the endpoint served around it; `None` for the run's first requests.
    pub after_model: Option<String>,
    /// Estimated switching time, seconds (rounded to 4 decimals).
    pub switching_time_s: f64,
}

/// The per-model numbers of the attribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSwitching {
    /// The model.
    pub model: String,
    /// Successful requests with a TTFT.
    pub requests: usize,
    /// Requests around which the endpoint served another model (candidates).
    pub after_other_model: usize,
    /// Requests attributed a switch.
    pub switches: usize,
    /// Baseline TTFT of the warm requests (their median), seconds; `None` without enough.
    pub warm_ttft_median_s: Option<f64>,
    /// Their robust spread (1.4826 × median absolute deviation), seconds.
    pub warm_ttft_spread_s: Option<f64>,
    /// Mean switching time of the attributed requests, seconds.
    pub switching_time_mean_s: Option<f64>,
}

/// The attribution over rows that ran at once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MixedSwitching {
    /// Which TTFT was compared.
    pub source: Option<TtftSource>,
    /// Per model, in order of first appearance.
    pub models: Vec<ModelSwitching>,
    /// Every request attributed a switch, in first-token order.
    pub switches: Vec<AttributedSwitch>,
}

struct Event<'a> {
    row_index: usize,
    model: &'a str,
    request_idx: u32,
    sent: f64,
    first_token: f64,
    ttft: f64,
}

/// Attributes switches to the requests of `rows` (see the module docs).
pub fn attribute(rows: &[TimedRow<'_>]) -> MixedSwitching {
    let successes = || {
        rows.iter()
            .flat_map(|r| r.digests.iter().map(move |d| (r, d)))
            .filter(|(_, d)| d.is_success() && d.client_ttft_s.is_some())
    };
    let any = successes().next().is_some();
    let source = if any && successes().all(|(_, d)| d.server_ttft_s.is_some()) {
        TtftSource::ServerTtft
    } else {
        TtftSource::ClientTtft
    };
    let mut events: Vec<Event> = successes()
        .filter_map(|(row, d)| {
            let client_ttft = d.client_ttft_s?;
            let ttft = match source {
                TtftSource::ServerTtft => d.server_ttft_s?,
                TtftSource::ClientTtft => client_ttft,
            };
            let sent = row.started_s + d.actual_send_s;
            let first_token = sent + client_ttft;
            (first_token.is_finite() && ttft.is_finite()).then_some(Event {
                row_index: row.row_index,
                model: row.model,
                request_idx: d.request_idx,
                sent,
                first_token,
                ttft,
            })
        })
        .collect();
    events.sort_by(|a, b| a.first_token.total_cmp(&b.first_token));

    // For each event, another model the endpoint served around it: one that produced a first
    // token while this request waited, else the model of the last first token before it was
    // sent (`Some(None)`: nothing came before it). `None`: its own model was the endpoint's.
    let served_other: Vec<Option<Option<&str>>> = events
        .iter()
        .map(|e| {
            let during = events.iter().find(|o| {
                o.model != e.model && o.first_token > e.sent && o.first_token < e.first_token
            });
            if let Some(other) = during {
                return Some(Some(other.model));
            }
            match events
                .iter()
                .filter(|o| o.first_token < e.sent)
                .max_by(|a, b| a.first_token.total_cmp(&b.first_token))
            {
                None => Some(None),
                Some(last) if last.model != e.model => Some(Some(last.model)),
                Some(_) => None,
            }
        })
        .collect();
    let candidate = |i: usize| served_other[i].is_some();

    let mut order: Vec<&str> = Vec::new();
    for e in &events {
        if !order.contains(&e.model) {
            order.push(e.model);
        }
    }
    let mut models = Vec::new();
    let mut switches = Vec::new();
    for model in order {
        let of_model: Vec<usize> = (0..events.len())
            .filter(|&i| events[i].model == model)
            .collect();
        let warm: Vec<f64> = of_model
            .iter()
            .filter(|&&i| !candidate(i))
            .map(|&i| events[i].ttft)
            .collect();
        let baseline = (warm.len() >= MIN_WARM).then(|| robust_baseline(&warm));
        let candidates: Vec<usize> = of_model.iter().copied().filter(|&i| candidate(i)).collect();
        let mut attributed = Vec::new();
        if let Some((mean, stddev)) = baseline {
            let threshold = mean + (3.0 * stddev).max(MIN_EXCESS_S);
            for &i in &candidates {
                if events[i].ttft > threshold {
                    let time = stats::round4(events[i].ttft - mean);
                    attributed.push(time);
                    switches.push((
                        i,
                        AttributedSwitch {
                            row_index: events[i].row_index,
                            model: model.to_string(),
                            request_idx: events[i].request_idx,
                            after_model: served_other[i].flatten().map(str::to_string),
                            switching_time_s: time,
                        },
                    ));
                }
            }
        }
        models.push(ModelSwitching {
            model: model.to_string(),
            requests: of_model.len(),
            after_other_model: candidates.len(),
            switches: attributed.len(),
            warm_ttft_median_s: baseline.map(|b| stats::round4(b.0)),
            warm_ttft_spread_s: baseline.map(|b| stats::round4(b.1)),
            switching_time_mean_s: (!attributed.is_empty())
                .then(|| stats::round4(stats::mean(&attributed))),
        });
    }
    switches.sort_by_key(|(i, _)| *i);
    MixedSwitching {
        source: any.then_some(source),
        models,
        switches: switches.into_iter().map(|(_, s)| s).collect(),
    }
}

/// The median of `values` and their spread as a standard deviation (1.4826 × the median
/// absolute deviation): warm requests may include a few that waited for another model's
/// switch, which must not widen the baseline.
fn robust_baseline(values: &[f64]) -> (f64, f64) {
    let median = median(values);
    let deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
    (median, 1.4826 * self::median(&deviations))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    stats::quantile_sorted(&sorted, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A successful request sent at `sent` with TTFT `ttft` (server and client alike).
    fn request(idx: u32, sent: f64, ttft: f64) -> RecordDigest {
        RecordDigest {
            request_idx: idx,
            actual_send_s: sent,
            client_ttft_s: Some(ttft),
            server_ttft_s: Some(ttft),
            ..RecordDigest::default()
        }
    }

    #[test]
    fn a_request_served_after_another_model_with_a_long_ttft_is_a_switch() {
        // Model a: warm requests of 10 ms, then b is served, then a's request 3 waits 210 ms.
        let a = [
            request(0, 0.0, 0.01),
            request(1, 0.1, 0.01),
            request(2, 0.2, 0.011),
            request(3, 0.5, 0.21),
            request(4, 0.8, 0.01),
        ];
        let b = [request(0, 0.3, 0.05)];
        let rows = [
            TimedRow {
                row_index: 0,
                model: "a",
                started_s: 0.0,
                digests: &a,
            },
            TimedRow {
                row_index: 1,
                model: "b",
                started_s: 0.0,
                digests: &b,
            },
        ];
        let result = attribute(&rows);
        assert_eq!(result.source, Some(TtftSource::ServerTtft));
        assert_eq!(
            result.switches,
            [AttributedSwitch {
                row_index: 0,
                model: "a".into(),
                request_idx: 3,
                after_model: Some("b".into()),
                switching_time_s: 0.2,
            }]
        );
        let a_numbers = &result.models[0];
        assert_eq!(a_numbers.model, "a");
        // Request 0 came first (nothing before it) and request 3 after b: two candidates, one
        // of them slow enough.
        assert_eq!((a_numbers.after_other_model, a_numbers.switches), (2, 1));
        assert_eq!(a_numbers.warm_ttft_median_s, Some(0.01));
        // b was served once, after a: no warm baseline, no claim.
        assert_eq!(result.models[1].warm_ttft_median_s, None);
        assert_eq!(result.models[1].switches, 0);
    }

    #[test]
    fn rows_started_later_are_placed_on_the_shared_clock_and_failures_are_ignored() {
        // b's row starts 1 s later; its request is sent at 1.05 s of the shared clock, after
        // a's request 2 was sent (1.0 s) and before its first token (1.3 s): b was served while
        // a's request waited.
        let a = [
            request(0, 0.0, 0.01),
            request(1, 0.5, 0.01),
            request(2, 1.0, 0.3),
            RecordDigest {
                error_code: Some("500".into()),
                ..request(3, 1.5, 9.0)
            },
            request(4, 2.0, 0.01),
        ];
        let b = [request(0, 0.05, 0.01)];
        let rows = [
            TimedRow {
                row_index: 0,
                model: "a",
                started_s: 0.0,
                digests: &a,
            },
            TimedRow {
                row_index: 1,
                model: "b",
                started_s: 1.0,
                digests: &b,
            },
        ];
        let result = attribute(&rows);
        let reported: Vec<(usize, u32)> = result
            .switches
            .iter()
            .map(|s| (s.row_index, s.request_idx))
            .collect();
        assert_eq!(reported, [(0, 2)]);
        assert_eq!(result.models[0].requests, 4);
        assert!(attribute(&[]).switches.is_empty());
    }
}
