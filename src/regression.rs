//! Whether a run regressed against a baseline run, from the percentiles both runs' status
//! carry: pure functions of the rows, the thresholds and the names, no API calls.
//!
//! Rows are matched as `coebench compare` matches them: by what they asked for (model, input
//! and output tokens, concurrency or QPS, image size), pairing equal rows in plan order. For each
//! pair, client-side TTFT, end-to-end latency and output tokens per second are compared at p50,
//! p90 and p99 (where both runs have the value), and a metric *moved* when it got worse beyond
//! its threshold ([`coebench_plan::regression`], the syntax of `--max-regression`). The operator
//! has percentiles, not per-request samples, so its verdict is by thresholds alone: no
//! significance is tested, and every message says so.

use std::collections::BTreeMap;

use coebench_plan::regression::{Metric, Thresholds};

use crate::conditions::Status;
use crate::crd::RowStatus;

/// Entries of moved metrics a condition message names before it says "and N more".
const MESSAGE_ENTRIES: usize = 10;

/// The run a candidate is compared with.
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline<'a> {
    /// The baseline run's name.
    pub run: &'a str,
    /// How it was chosen, for messages: `the previous successful run`, `the named baseline`.
    pub chosen: &'static str,
    /// Its rows.
    pub rows: &'a [RowStatus],
}

/// One metric of one row that got worse beyond its threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Moved {
    /// The row, as `coebench compare` names it: `model in/out c4`.
    pub row: String,
    /// The metric.
    pub metric: Metric,
    /// `p50`, `p90` or `p99`.
    pub stat: &'static str,
    /// The baseline's value.
    pub baseline: f64,
    /// The candidate's value.
    pub candidate: f64,
    /// The threshold, as written (`5%`, `10% and 0.05s`).
    pub threshold: String,
}

impl Moved {
    fn describe(&self) -> String {
        let value = |v: f64| match self.metric {
            Metric::TokensPerS => format!("{v:.1} tokens/s"),
            _ => format!("{v:.3}s"),
        };
        let change = if self.baseline != 0.0 {
            format!(
                "{:+.1}%",
                (self.candidate - self.baseline) / self.baseline.abs() * 100.0
            )
        } else {
            format!("{:+.3}", self.candidate - self.baseline)
        };
        format!(
            "{}: {} {} {} -> {} ({change}, threshold {})",
            self.row,
            self.metric.name(),
            self.stat,
            value(self.baseline),
            value(self.candidate),
            self.threshold
        )
    }
}

/// The verdict on one run: the `Regressed` condition's status, reason and message.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// True (regressed), False (compared, nothing moved) or Unknown (not compared).
    pub status: Status,
    /// `Regressed`, `WithinThresholds`, or why it was not compared.
    pub reason: &'static str,
    /// What moved (baseline -> candidate, by how much, the threshold), or what was compared
    /// with which baseline, or why nothing was.
    pub message: String,
    /// The metrics that moved.
    pub moved: Vec<Moved>,
}

impl Verdict {
    /// A run that could not be compared, for `reason`.
    pub fn unknown(reason: &'static str, message: String) -> Verdict {
        Verdict {
            status: Status::Unknown,
            reason,
            message,
            moved: Vec::new(),
        }
    }
}

/// Why a run was not compared: the first successful run has no baseline yet.
pub const NO_BASELINE: &str = "NoBaseline";
/// Why a run was not compared: the named baseline run does not exist (and was never read).
pub const BASELINE_NOT_FOUND: &str = "BaselineNotFound";
/// Why a run was not compared: the named baseline run has not succeeded.
pub const BASELINE_NOT_SUCCEEDED: &str = "BaselineNotSucceeded";
/// Why a run was not compared: none of its rows matches a baseline row.
pub const NO_MATCHING_ROWS: &str = "NoMatchingRows";
/// Why a run was not compared: `spec.regression.maxRegression` does not parse.
pub const INVALID_THRESHOLD: &str = "InvalidThreshold";

/// Said by every verdict that compared: the operator cannot test significance.
const BY_THRESHOLDS: &str = "by thresholds on the percentiles in the runs' status (significance not tested: use `coebench compare` on the runs' folders for a bootstrap test)";

/// A row's identity for matching, and its name in messages: what it asked for.
pub fn row_key(row: &RowStatus) -> String {
    let load = match (row.concurrency, row.qps) {
        (Some(c), _) => format!(" c{c}"),
        (None, Some(q)) => format!(" qps{q}"),
        (None, None) => String::new(),
    };
    let image = row
        .image_size
        .map(|s| format!(" image {}", s.as_str()))
        .unwrap_or_default();
    format!(
        "{} {}/{}{load}{image}",
        row.model, row.input_tokens, row.output_tokens
    )
}

/// A row's value of `metric` at `stat`.
fn value(row: &RowStatus, metric: Metric, stat: &str) -> Option<f64> {
    let v = match (metric, stat) {
        (Metric::Ttft, "p50") => row.client_ttft_p50_seconds,
        (Metric::Ttft, "p90") => row.client_ttft_p90_seconds,
        (Metric::Ttft, "p99") => row.client_ttft_p99_seconds,
        (Metric::E2e, "p50") => row.e2e_p50_seconds,
        (Metric::E2e, "p90") => row.e2e_p90_seconds,
        (Metric::E2e, "p99") => row.e2e_p99_seconds,
        (Metric::TokensPerS, "p50") => row.output_tokens_per_second_p50,
        (Metric::TokensPerS, "p90") => row.output_tokens_per_second_p90,
        (Metric::TokensPerS, "p99") => row.output_tokens_per_second_p99,
        _ => None,
    };
    v.filter(|v| v.is_finite())
}

/// Compares `candidate` (run `candidate_run`'s rows) with `baseline` under `thresholds`.
pub fn compare(
    baseline: &Baseline<'_>,
    candidate_run: &str,
    candidate: &[RowStatus],
    thresholds: &Thresholds,
) -> Verdict {
    let against = format!("baseline run {} ({})", baseline.run, baseline.chosen);
    // Rows with the same key pair up in plan order.
    let mut unmatched: BTreeMap<String, Vec<&RowStatus>> = BTreeMap::new();
    for row in baseline.rows {
        unmatched.entry(row_key(row)).or_default().push(row);
    }
    unmatched.values_mut().for_each(|rows| rows.reverse());
    let (mut rows, mut values, mut moved, mut only_in_candidate) = (0, 0, Vec::new(), 0);
    for cand in candidate {
        let key = row_key(cand);
        let Some(base) = unmatched.get_mut(&key).and_then(Vec::pop) else {
            only_in_candidate += 1;
            continue;
        };
        rows += 1;
        for metric in Metric::ALL {
            let threshold = thresholds.get(metric);
            for (stat, _) in coebench_plan::regression::QUANTILES {
                let (Some(b), Some(c)) = (value(base, metric, stat), value(cand, metric, stat))
                else {
                    continue;
                };
                values += 1;
                if threshold.exceeded(metric.worse_by(b, c), b) {
                    moved.push(Moved {
                        row: key.clone(),
                        metric,
                        stat,
                        baseline: b,
                        candidate: c,
                        threshold: threshold.describe(metric),
                    });
                }
            }
        }
    }
    let only_in_baseline: usize = unmatched.values().map(Vec::len).sum();
    if rows == 0 || values == 0 {
        return Verdict::unknown(
            NO_MATCHING_ROWS,
            format!(
                "not compared: none of the {} row(s) of run {candidate_run} has numbers to compare with a row of {against}; rows match by model, input/output tokens, concurrency or QPS and image size",
                candidate.len()
            ),
        );
    }
    let mut unmatched_note = String::new();
    if only_in_candidate + only_in_baseline > 0 {
        unmatched_note = format!(
            "; not matched: {only_in_candidate} row(s) only in this run, {only_in_baseline} only in the baseline"
        );
    }
    if moved.is_empty() {
        return Verdict {
            status: Status::False,
            reason: "WithinThresholds",
            message: format!(
                "compared with {against}: no metric got worse beyond its threshold ({rows} row(s), {values} values){unmatched_note}; {BY_THRESHOLDS}"
            ),
            moved,
        };
    }
    let regressed_rows = {
        let mut names: Vec<&str> = moved.iter().map(|m| m.row.as_str()).collect();
        names.dedup();
        names.len()
    };
    let mut entries: Vec<String> = moved
        .iter()
        .take(MESSAGE_ENTRIES)
        .map(Moved::describe)
        .collect();
    if moved.len() > MESSAGE_ENTRIES {
        entries.push(format!("and {} more", moved.len() - MESSAGE_ENTRIES));
    }
    Verdict {
        status: Status::True,
        reason: "Regressed",
        message: format!(
            "{regressed_rows} of {rows} row(s) regressed against {against}: {}{unmatched_note}; {BY_THRESHOLDS}",
            entries.join("; ")
        ),
        moved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, concurrency: u32, ttft: f64, e2e: f64, tps: f64) -> RowStatus {
        RowStatus {
            model: model.into(),
            input_tokens: 1000,
            output_tokens: 100,
            concurrency: Some(concurrency),
            qps: None,
            completed: 16,
            errors: 0,
            client_ttft_p50_seconds: Some(ttft),
            server_ttft_p50_seconds: None,
            e2e_p50_seconds: Some(e2e),
            output_tokens_per_second_p50: Some(tps),
            switching_time_seconds: None,
            client_ttft_p90_seconds: Some(ttft * 1.5),
            client_ttft_p99_seconds: Some(ttft * 2.0),
            server_ttft_p90_seconds: None,
            server_ttft_p99_seconds: None,
            goodput: None,
            image_size: None,
            e2e_p90_seconds: Some(e2e * 1.2),
            e2e_p99_seconds: Some(e2e * 1.4),
            output_tokens_per_second_p90: Some(tps * 1.1),
            output_tokens_per_second_p99: Some(tps * 1.2),
            objectives_met: None,
        }
    }

    fn baseline(rows: &[RowStatus]) -> Baseline<'_> {
        Baseline {
            run: "b-1",
            chosen: "the previous successful run",
            rows,
        }
    }

    #[test]
    fn the_same_numbers_are_within_thresholds() {
        let rows = [row("a", 4, 0.1, 1.5, 250.0), row("b", 8, 0.5, 2.0, 100.0)];
        let v = compare(&baseline(&rows), "b-2", &rows, &Thresholds::default());
        assert_eq!((v.status, v.reason), (Status::False, "WithinThresholds"));
        assert!(
            v.message
                .contains("baseline run b-1 (the previous successful run)")
        );
        assert!(v.message.contains("2 row(s), 18 values"), "{}", v.message);
        assert!(
            v.message.contains("significance not tested"),
            "{}",
            v.message
        );
    }

    #[test]
    fn a_slower_e2e_beyond_its_threshold_names_the_row_the_metric_and_the_numbers() {
        let base = [row("a", 4, 0.1, 1.5, 250.0), row("b", 8, 0.5, 2.0, 100.0)];
        // Row b: e2e 20 % slower at every percentile, tokens/s 3 % lower (within 5 %).
        let cand = [row("a", 4, 0.1, 1.5, 250.0), row("b", 8, 0.5, 2.4, 97.0)];
        let v = compare(&baseline(&base), "b-2", &cand, &Thresholds::default());
        assert_eq!((v.status, v.reason), (Status::True, "Regressed"));
        assert_eq!(v.moved.len(), 3, "{v:?}");
        assert!(
            v.moved
                .iter()
                .all(|m| m.metric == Metric::E2e && m.row == "b 1000/100 c8")
        );
        assert!(
            v.message.starts_with(
                "1 of 2 row(s) regressed against baseline run b-1 (the previous successful run): b 1000/100 c8: e2e p50 2.000s -> 2.400s (+20.0%, threshold 5%)"
            ),
            "{}",
            v.message
        );
        // A threshold of 25 % on e2e lets it pass; an absolute floor of 1 s too.
        for limit in ["25%", "10%,1"] {
            let lenient = Thresholds::from_limits([("e2e", limit)]).unwrap();
            let v = compare(&baseline(&base), "b-2", &cand, &lenient);
            assert_eq!(v.status, Status::False, "{limit}: {}", v.message);
        }
        // Tokens per second regress downwards.
        let slow = [row("a", 4, 0.1, 1.5, 200.0)];
        let v = compare(&baseline(&base[..1]), "b-2", &slow, &Thresholds::default());
        assert_eq!(v.moved.len(), 3);
        assert!(
            v.message.contains(
                "tokens_per_s p50 250.0 tokens/s -> 200.0 tokens/s (-20.0%, threshold 5%)"
            ),
            "{}",
            v.message
        );
    }

    #[test]
    fn rows_match_by_what_they_asked_for_and_unmatched_rows_are_named_or_counted() {
        let base = [row("a", 4, 0.1, 1.5, 250.0)];
        let other = [row("a", 8, 0.1, 1.5, 250.0)];
        let v = compare(&baseline(&base), "b-2", &other, &Thresholds::default());
        assert_eq!((v.status, v.reason), (Status::Unknown, NO_MATCHING_ROWS));
        assert!(
            v.message.contains("none of the 1 row(s) of run b-2"),
            "{}",
            v.message
        );
        let both = [row("a", 8, 0.1, 9.0, 250.0), row("a", 4, 0.1, 1.5, 250.0)];
        let v = compare(&baseline(&base), "b-2", &both, &Thresholds::default());
        assert_eq!(
            v.status,
            Status::False,
            "the c8 row has nothing to be compared with"
        );
        assert!(
            v.message
                .contains("1 row(s) only in this run, 0 only in the baseline"),
            "{}",
            v.message
        );
        // The image size is part of a row's identity.
        let mut image = row("a", 4, 0.1, 9.0, 250.0);
        image.image_size = Some(coebench_plan::ImageSize::Large);
        assert_eq!(row_key(&image), "a 1000/100 c4 image large");
        let v = compare(&baseline(&base), "b-2", &[image], &Thresholds::default());
        assert_eq!(v.reason, NO_MATCHING_ROWS);
    }

    #[test]
    fn values_missing_on_either_side_are_not_compared_and_long_lists_are_cut() {
        let mut old = row("a", 4, 0.1, 1.5, 250.0);
        (old.e2e_p90_seconds, old.e2e_p99_seconds) = (None, None);
        let v = compare(
            &baseline(&[old]),
            "b-2",
            &[row("a", 4, 0.1, 1.5, 250.0)],
            &Thresholds::default(),
        );
        assert!(v.message.contains("1 row(s), 7 values"), "{}", v.message);
        let base: Vec<RowStatus> = (0..5).map(|c| row("a", c + 1, 0.1, 1.5, 250.0)).collect();
        let cand: Vec<RowStatus> = (0..5).map(|c| row("a", c + 1, 0.2, 3.0, 100.0)).collect();
        let v = compare(&baseline(&base), "b-2", &cand, &Thresholds::default());
        assert_eq!(v.moved.len(), 45);
        assert!(
            v.message.contains("5 of 5 row(s) regressed"),
            "{}",
            v.message
        );
        assert!(v.message.contains("; and 35 more"), "{}", v.message);
    }
}
