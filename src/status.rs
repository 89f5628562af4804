//! From what the runner reported to what the status says: exit codes to reasons, the report's
//! rows to per-row summaries, and the merge patch that turns one status into another.
//!
//! Pure functions only; reconcilers decide when to call them and write the result.

use coebench_plan::report::{RowReport, RunOutcome, RunReport};
use serde_json::{Map, Value};

use crate::crd::RowStatus;

/// Runner exit codes (the runner's contract).
pub mod exit_codes {
    /// Every row ran.
    pub const SUCCEEDED: i32 = 0;
    /// An unexpected internal failure.
    pub const INTERNAL: i32 = 1;
    /// The plan was invalid; nothing was sent.
    pub const INVALID_INPUT: i32 = 2;
    /// The endpoint rejected the API key.
    pub const AUTHENTICATION_FAILED: i32 = 3;
    /// Every request failed.
    pub const ALL_REQUESTS_FAILED: i32 = 4;
    /// The run was interrupted (e.g. SIGTERM at the deadline).
    pub const INTERRUPTED: i32 = 5;
    /// The run finished but some rows had every request fail.
    pub const ROWS_FAILED: i32 = 6;
    /// A worker of a multi-worker run was lost.
    pub const WORKER_LOST: i32 = 8;
}

/// How a finished runner container ended, as the operator reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the run succeeded.
    pub succeeded: bool,
    /// A PascalCase reason for conditions and Events.
    pub reason: &'static str,
    /// What happened and what to do about it.
    pub message: String,
}

/// Interprets a terminated runner container: its exit code, the kubelet's reason
/// (`OOMKilled`, `Error`, ...), and the runner's report when it wrote one.
pub fn outcome(
    exit_code: i32,
    kubelet_reason: Option<&str>,
    report: Option<&RunReport>,
    job: &str,
) -> Outcome {
    let detail = report
        .and_then(|r| r.message.as_deref())
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    let logs = format!("see `kubectl logs job/{job}`");
    let by_report = report.map(|r| r.outcome);
    let fail = |reason: &'static str, message: String| Outcome {
        succeeded: false,
        reason,
        message,
    };
    if kubelet_reason == Some("OOMKilled") {
        return fail(
            "OOMKilled",
            format!(
                "the runner ran out of memory (exit code {exit_code}); raise runner.resources.limits.memory"
            ),
        );
    }
    match (exit_code, by_report) {
        (exit_codes::SUCCEEDED, _) | (_, Some(RunOutcome::Succeeded)) => Outcome {
            succeeded: true,
            reason: "Succeeded",
            message: "the runner finished every row".to_string(),
        },
        (exit_codes::INVALID_INPUT, _) | (_, Some(RunOutcome::InvalidInput)) => fail(
            "InvalidInput",
            format!(
                "the runner rejected the plan (exit code {exit_code}){detail}; fix the benchmark's rows or options"
            ),
        ),
        (exit_codes::AUTHENTICATION_FAILED, _) | (_, Some(RunOutcome::AuthenticationFailed)) => {
            fail(
                "AuthenticationFailed",
                format!(
                    "the endpoint rejected the API key (exit code {exit_code}){detail}; check the key in the Secret named by endpoint.apiKeySecretRef"
                ),
            )
        }
        (exit_codes::ALL_REQUESTS_FAILED, _) | (_, Some(RunOutcome::AllRequestsFailed)) => fail(
            "AllRequestsFailed",
            format!(
                "every request failed (exit code {exit_code}){detail}; check endpoint.url, the model names and that the endpoint is up; {logs}"
            ),
        ),
        (exit_codes::INTERRUPTED, _) | (_, Some(RunOutcome::Interrupted)) => fail(
            "Interrupted",
            format!(
                "the runner was interrupted (exit code {exit_code}){detail}; rows that finished were written"
            ),
        ),
        (exit_codes::ROWS_FAILED, _) | (_, Some(RunOutcome::RowsFailed)) => fail(
            "RowsFailed",
            format!(
                "the runner finished, but some rows had every request fail (exit code {exit_code}){detail}; check those rows' model names and the endpoint; {logs}"
            ),
        ),
        (exit_codes::WORKER_LOST, _) | (_, Some(RunOutcome::WorkerLost)) => fail(
            "WorkerLost",
            format!(
                "a worker of the run was lost (exit code {exit_code}){detail}; what the other workers measured was written; {logs}"
            ),
        ),
        (exit_codes::INTERNAL, _) => fail(
            "RunnerError",
            format!("the runner failed with an internal error (exit code 1){detail}; {logs}"),
        ),
        (code, _) => fail(
            "RunnerError",
            format!(
                "the runner exited with code {code}{}{detail}; {logs}",
                kubelet_reason
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        ),
    }
}

/// Parses a termination message as a runner report; `None` when it is not one (an empty
/// message, or text the kubelet copied from a crash).
pub fn parse_report(message: &str) -> Option<RunReport> {
    let text = message.trim();
    if !text.starts_with('{') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// The status summary of one reported row.
pub fn row_status(row: &RowReport) -> RowStatus {
    RowStatus {
        model: row.model.clone(),
        input_tokens: row.input_tokens,
        output_tokens: row.output_tokens,
        concurrency: row.concurrency,
        qps: row.qps,
        completed: row.completed,
        errors: row.errors,
        client_ttft_p50_seconds: row.client_ttft_p50_s,
        server_ttft_p50_seconds: row.server_ttft_p50_s,
        e2e_p50_seconds: row.e2e_p50_s,
        output_tokens_per_second_p50: row.output_tokens_per_s_p50,
        switching_time_seconds: row.switching_time_s,
        client_ttft_p90_seconds: row.client_ttft_p90_s(),
        client_ttft_p99_seconds: row.client_ttft_p99_s(),
        server_ttft_p90_seconds: row.server_ttft_p90_s(),
        server_ttft_p99_seconds: row.server_ttft_p99_s(),
        goodput: row.goodput,
        image_size: row.image_size,
        e2e_p90_seconds: row.e2e_p90_s(),
        e2e_p99_seconds: row.e2e_p99_s(),
        output_tokens_per_second_p90: row.output_tokens_per_s_p90(),
        output_tokens_per_second_p99: row.output_tokens_per_s_p99(),
        objectives_met: row.objectives_met,
    }
}

/// The printer-column value of the client-side p50 TTFT: `0.123s` for one value, or the range
/// `0.105s-0.480s` over rows; `None` when no row measured it.
pub fn ttft_display(rows: &[RowStatus]) -> Option<String> {
    let values: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.client_ttft_p50_seconds)
        .filter(|v| v.is_finite())
        .collect();
    let min = values.iter().copied().reduce(f64::min)?;
    let max = values.iter().copied().reduce(f64::max)?;
    let (lo, hi) = (format!("{min:.3}s"), format!("{max:.3}s"));
    Some(if lo == hi { lo } else { format!("{lo}-{hi}") })
}

/// A JSON merge patch (RFC 7386) that turns `old` into `new`: changed keys carry their new
/// value, removed keys are `null`. Returns `None` when the two are equal.
pub fn merge_patch(old: &Value, new: &Value) -> Option<Value> {
    if old == new {
        return None;
    }
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = Map::new();
            for (key, old_value) in old {
                match new.get(key) {
                    None => {
                        patch.insert(key.clone(), Value::Null);
                    }
                    Some(new_value) => {
                        if let Some(p) = merge_patch(old_value, new_value) {
                            patch.insert(key.clone(), p);
                        }
                    }
                }
            }
            for (key, new_value) in new {
                if !old.contains_key(key) {
                    patch.insert(key.clone(), new_value.clone());
                }
            }
            Some(Value::Object(patch))
        }
        _ => Some(new.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(outcome: RunOutcome, message: Option<&str>) -> RunReport {
        RunReport {
            version: 1,
            run_name: "b-1".into(),
            outcome,
            results_path: None,
            rows: vec![],
            rows_omitted: 0,
            message: message.map(str::to_string),
        }
    }

    #[test]
    fn exit_codes_map_to_reasons_a_user_can_act_on() {
        let cases = [
            (0, "Succeeded"),
            (1, "RunnerError"),
            (2, "InvalidInput"),
            (3, "AuthenticationFailed"),
            (4, "AllRequestsFailed"),
            (5, "Interrupted"),
            (6, "RowsFailed"),
            (139, "RunnerError"),
        ];
        for (code, reason) in cases {
            let o = outcome(code, None, None, "b-1");
            assert_eq!(o.reason, reason, "exit code {code}");
            assert_eq!(o.succeeded, code == 0);
        }
        let oom = outcome(137, Some("OOMKilled"), None, "b-1");
        assert_eq!(oom.reason, "OOMKilled");
        assert!(oom.message.contains("limits.memory"), "{}", oom.message);
    }

    #[test]
    fn the_report_message_is_quoted() {
        let r = report(RunOutcome::AuthenticationFailed, Some("401 Unauthorized"));
        let o = outcome(3, Some("Error"), Some(&r), "b-1");
        assert!(o.message.contains("401 Unauthorized"), "{}", o.message);
        assert!(o.message.contains("apiKeySecretRef"), "{}", o.message);
    }

    #[test]
    fn only_json_messages_are_reports() {
        assert!(parse_report("").is_none());
        assert!(parse_report("panicked at main.rs").is_none());
        let r = report(RunOutcome::Succeeded, None);
        assert_eq!(parse_report(&r.to_bounded_json()), Some(r));
    }

    #[test]
    fn ttft_shows_one_value_or_the_range() {
        let row = |ttft: Option<f64>| RowStatus {
            model: "m".into(),
            input_tokens: 1,
            output_tokens: 1,
            concurrency: Some(1),
            qps: None,
            completed: 1,
            errors: 0,
            client_ttft_p50_seconds: ttft,
            server_ttft_p50_seconds: None,
            e2e_p50_seconds: None,
            output_tokens_per_second_p50: None,
            switching_time_seconds: None,
            client_ttft_p90_seconds: None,
            client_ttft_p99_seconds: None,
            server_ttft_p90_seconds: None,
            server_ttft_p99_seconds: None,
            goodput: None,
            image_size: None,
            e2e_p90_seconds: None,
            e2e_p99_seconds: None,
            output_tokens_per_second_p90: None,
            output_tokens_per_second_p99: None,
            objectives_met: None,
        };
        assert_eq!(ttft_display(&[]), None);
        assert_eq!(ttft_display(&[row(None)]), None);
        assert_eq!(ttft_display(&[row(Some(0.1234))]).unwrap(), "0.123s");
        assert_eq!(
            ttft_display(&[row(Some(0.48)), row(None), row(Some(0.105))]).unwrap(),
            "0.105s-0.480s"
        );
    }

    #[test]
    fn merge_patch_sets_changes_and_nulls_removals() {
        let old = json!({"phase": "Running", "jobName": "j", "rows": [1], "x": {"a": 1, "b": 2}});
        let new = json!({"phase": "Succeeded", "rows": [1, 2], "x": {"a": 1}});
        assert_eq!(
            merge_patch(&old, &new).unwrap(),
            json!({"phase": "Succeeded", "jobName": null, "rows": [1, 2], "x": {"b": null}})
        );
        assert_eq!(merge_patch(&old, &old), None);
    }
}
