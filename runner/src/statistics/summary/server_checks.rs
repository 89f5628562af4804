//! What a row's records say about the server rather than the model's speed: kept-alive
//! connections it closed (requests retried on a fresh one), requests that stopped before their
//! `max_tokens`, whether it reported its own timings, how much of the prompts it served from its
//! prefix cache, and whether its prompt token counts match the client's tokenizer.
//!
//! The tokenizer check compares each successful request's server prompt count with the row's
//! `inputTokens` plus the chat template's overhead, which the engine measures with one probe
//! request of a known length ([`RowExecution::template_overhead`]). A row is flagged when the
//! median difference exceeds [`TOKENIZER_TOLERANCE_TOKENS`] or [`TOKENIZER_TOLERANCE_SHARE`] of
//! `inputTokens`, whichever is larger: the prompts were sized with another tokenizer than the
//! model's, and `options.tokenizer` (`--tokenizer`) set to the model's `tokenizer.json` fixes it.

use super::RowExecution;
use crate::statistics::record_digest::RecordDigest;
use crate::statistics::stats;

/// Differences of up to this many prompt tokens are tolerated by the tokenizer check.
pub const TOKENIZER_TOLERANCE_TOKENS: f64 = 2.0;

/// Differences of up to this share of `inputTokens` are tolerated by the tokenizer check.
pub const TOKENIZER_TOLERANCE_SHARE: f64 = 0.01;

/// Whether, and how, the server reported its own timings for a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTimings {
    /// Every successful request carried server times.
    Reported,
    /// Some successful requests carried server times, others did not.
    Partial,
    /// No request carried server times (OpenAI, vLLM, SGLang and TGI send token counts only).
    None,
}

impl ServerTimings {
    /// The value written to files: `reported`, `partial`, `no server timings`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerTimings::Reported => "reported",
            ServerTimings::Partial => "partial",
            ServerTimings::None => "no server timings",
        }
    }
}

/// The tokenizer check of a row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TokenizerCheck {
    /// Prompt tokens the server adds around a user message (its chat template), measured by
    /// the probe; `None` when not measured (the server reports no prompt counts, or the probe
    /// failed).
    pub template_overhead: Option<i64>,
    /// Median of `server prompt tokens - (inputTokens + template_overhead)` over successes.
    pub median_difference: Option<f64>,
    /// Why the row is flagged, naming the option that fixes it; `None` when it is not.
    pub mismatch: Option<String>,
}

/// The server-side signals of a row.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerChecks {
    /// Requests sent again on a fresh connection because the server had closed the
    /// kept-alive one they first went out on.
    pub stale_connection_retries: u32,
    /// Successful requests that generated fewer tokens than `outputTokens`.
    pub stopped_early: u32,
    /// `stopped_early` / successful requests (`None` without successes).
    pub stopped_early_share: Option<f64>,
    /// Whether the server reported its own timings.
    pub server_timings: ServerTimings,
    /// Prompt tokens served from the server's prefix cache / all prompt tokens, over the
    /// successes that reported both; `None` when the server does not report cached tokens.
    pub cached_input_share: Option<f64>,
    /// The tokenizer check.
    pub tokenizer: TokenizerCheck,
}

impl ServerChecks {
    /// The checks of a finished row.
    pub(crate) fn of(exec: &RowExecution) -> ServerChecks {
        let records = &exec.digests;
        let successes: Vec<&RecordDigest> = records.iter().filter(|r| r.is_success()).collect();
        let stopped_early = count(successes.iter().filter(|r| r.stopped_early == Some(true)));
        let timed = successes.iter().filter(|r| r.has_server_timings).count();
        let server_timings = if timed == 0 {
            ServerTimings::None
        } else if timed == successes.len() {
            ServerTimings::Reported
        } else {
            ServerTimings::Partial
        };
        let (cached, input) = successes
            .iter()
            .filter_map(|r| Some((r.server_cached_input_tokens?, r.server_number_input_tokens?)))
            .fold((None, 0u64), |(c, i), (cached, input)| {
                (Some(c.unwrap_or(0) + cached), i + input)
            });
        ServerChecks {
            stale_connection_retries: count(records.iter().filter(|r| r.stale_connection_retry)),
            stopped_early,
            stopped_early_share: (!successes.is_empty())
                .then(|| stats::round4(f64::from(stopped_early) / successes.len() as f64)),
            server_timings,
            cached_input_share: cached
                .filter(|_| input > 0)
                .map(|c| stats::round4(c as f64 / input as f64)),
            tokenizer: tokenizer_check(exec, &successes),
        }
    }
}

fn tokenizer_check(exec: &RowExecution, successes: &[&RecordDigest]) -> TokenizerCheck {
    let Some(overhead) = exec.template_overhead else {
        return TokenizerCheck::default();
    };
    if exec.row.image_size.is_some() || exec.row.dataset.is_some() {
        // The server's prompt count includes the image's tokens, which only the server knows:
        // a difference says nothing about the text tokenizer. A dataset's prompts have their
        // own lengths, not inputTokens.
        return TokenizerCheck {
            template_overhead: Some(overhead),
            ..TokenizerCheck::default()
        };
    }
    let expected = i64::from(exec.row.input_tokens) + overhead;
    let mut differences: Vec<f64> = successes
        .iter()
        .filter_map(|r| r.server_number_input_tokens)
        .map(|n| (n as i64 - expected) as f64)
        .collect();
    if differences.is_empty() {
        return TokenizerCheck {
            template_overhead: Some(overhead),
            ..TokenizerCheck::default()
        };
    }
    differences.sort_by(f64::total_cmp);
    let median = differences[differences.len() / 2];
    let tolerance = TOKENIZER_TOLERANCE_TOKENS
        .max(TOKENIZER_TOLERANCE_SHARE * f64::from(exec.row.input_tokens));
    let mismatch = (median.abs() > tolerance).then(|| {
        format!(
            "the server counted {} prompt tokens where {} were intended ({} + {overhead} of chat \
             template): prompts were sized with another tokenizer than the model's; set \
             options.tokenizer (--tokenizer) to the model's tokenizer.json",
            expected as f64 + median,
            expected,
            exec.row.input_tokens,
        )
    });
    TokenizerCheck {
        template_overhead: Some(overhead),
        median_difference: Some(median),
        mismatch,
    }
}

fn count<T>(items: impl Iterator<Item = T>) -> u32 {
    u32::try_from(items.count()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statistics::summary::RowNames;
    use coebench_plan::Row;
    use std::time::Instant;

    fn exec(records: Vec<RecordDigest>, overhead: Option<i64>) -> RowExecution {
        let row = Row {
            model: "m".into(),
            input_tokens: 128,
            output_tokens: 32,
            num_requests: 4,
            concurrency: Some(1),
            qps: None,
            qps_distribution: None,
            image_size: None,
            max_sequence_length: None,
            ignore_eos: None,
            min_tokens: None,
            sampling_params: Default::default(),
            dataset: None,
            workers: None,
            objectives: None,
        };
        let names = RowNames {
            uuid: uuid::Uuid::nil(),
            base: "row".into(),
            individual_responses_file: "row_individual_responses.json".into(),
            summary_file: "row_summary.json".into(),
            response_texts_file: "row_response_texts.jsonl".into(),
        };
        let mut exec =
            RowExecution::new(0, row, "run", names, Instant::now(), jiff::Timestamp::now());
        exec.digests = records;
        exec.template_overhead = overhead;
        exec
    }

    fn ok(input: u64, cached: Option<u64>, early: bool, timed: bool) -> RecordDigest {
        RecordDigest {
            server_number_input_tokens: Some(input),
            server_cached_input_tokens: cached,
            stopped_early: Some(early),
            has_server_timings: timed,
            ..RecordDigest::default()
        }
    }

    #[test]
    fn retries_early_stops_timings_and_cache_share_are_counted() {
        let failed = RecordDigest {
            error_code: Some("timeout".into()),
            stale_connection_retry: true,
            ..RecordDigest::default()
        };
        let retried = RecordDigest {
            stale_connection_retry: true,
            ..ok(150, Some(20), false, true)
        };
        let checks = ServerChecks::of(&exec(
            vec![
                retried,
                ok(150, Some(20), true, true),
                ok(150, Some(0), false, false),
                failed,
            ],
            None,
        ));
        assert_eq!(checks.stale_connection_retries, 2);
        assert_eq!(checks.stopped_early, 1);
        assert_eq!(checks.stopped_early_share, Some(0.3333));
        assert_eq!(checks.server_timings, ServerTimings::Partial);
        assert_eq!(checks.cached_input_share, Some(0.0889));
        assert_eq!(checks.tokenizer, TokenizerCheck::default());

        let none = ServerChecks::of(&exec(vec![ok(150, None, false, false)], None));
        assert_eq!(none.server_timings.as_str(), "no server timings");
        assert_eq!(none.cached_input_share, None);
    }

    #[test]
    fn a_tokenizer_mismatch_beyond_the_tolerance_is_flagged_with_its_fix() {
        // 128 intended + 30 of template: 158 matches, 161 (3 more, over 2 and 1.28) does not.
        let matching = ServerChecks::of(&exec(vec![ok(158, None, false, true); 3], Some(30)));
        assert_eq!(matching.tokenizer.median_difference, Some(0.0));
        assert!(matching.tokenizer.mismatch.is_none());
        let within = ServerChecks::of(&exec(vec![ok(160, None, false, true); 3], Some(30)));
        assert!(within.tokenizer.mismatch.is_none());
        let off = ServerChecks::of(&exec(vec![ok(161, None, false, true); 3], Some(30)));
        let message = off.tokenizer.mismatch.unwrap();
        assert!(
            message.contains("161") && message.contains("--tokenizer"),
            "{message}"
        );
    }

    #[test]
    fn a_multimodal_row_is_not_flagged_for_its_image_tokens() {
        // 128 intended + 30 of template, and 324 image tokens the client cannot count.
        let mut vision = exec(vec![ok(482, None, false, true); 3], Some(30));
        vision.row.image_size = Some(coebench_plan::ImageSize::Small);
        let checks = ServerChecks::of(&vision);
        assert_eq!(checks.tokenizer.template_overhead, Some(30));
        assert_eq!(checks.tokenizer.median_difference, None);
        assert!(checks.tokenizer.mismatch.is_none());
    }
}
