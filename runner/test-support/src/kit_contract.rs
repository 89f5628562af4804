//! The kit's contract, written out once for the tests that check coebench keeps it: the keys
//! of a per-request record (kit-reference 5.3) and the columns of the consolidated table
//! (kit-reference 6.4), in the kit's order.

/// The kit's 25 record keys: HEAD's, with V-Oct25's `server_switching_time` after
/// `server_ttft_s`.
pub const KIT_RECORD_KEYS: [&str; 25] = [
    "error_code",
    "error_msg",
    "prompt_name",
    "start_time",
    "end_time",
    "server_number_input_tokens",
    "server_number_output_tokens",
    "server_number_total_tokens",
    "server_ttft_s",
    "server_switching_time",
    "server_end_to_end_latency_s",
    "server_output_token_per_s_per_request",
    "server_total_tokens_per_s_per_request",
    "server_output_token_after_first_per_s_first_ten_per_request",
    "batch_size_used",
    "acceptance_rate",
    "number_input_tokens",
    "number_output_tokens",
    "number_total_tokens",
    "client_ttft_s",
    "client_end_to_end_latency_s",
    "client_output_token_per_s_per_request",
    "client_total_tokens_per_s_per_request",
    "client_inter_token_latencies_s",
    "client_mean_inter_token_latency_s",
];

/// The kit's consolidated columns, in its latest (HEAD) order, after the unnamed index column.
/// The kit leaves out a column no row has a value for (the load columns a run does not use,
/// `multimodal_img_size` without images, statistics without data such as `acceptance_rate_*`).
pub const KIT_CONSOLIDATED_COLUMNS: [&str; 46] = [
    "name",
    "model",
    "num_input_tokens",
    "num_output_tokens",
    "num_concurrent_requests",
    "qps",
    "qps_distribution",
    "multimodal_img_size",
    "server_ttft_s_min",
    "server_ttft_s_mean",
    "server_ttft_s_p50",
    "server_ttft_s_max",
    "server_end_to_end_latency_s_min",
    "server_end_to_end_latency_s_mean",
    "server_end_to_end_latency_s_p50",
    "server_end_to_end_latency_s_max",
    "server_output_token_per_s_min",
    "server_output_token_per_s_mean",
    "server_output_token_per_s_p50",
    "server_output_token_per_s_max",
    "acceptance_rate_min",
    "acceptance_rate_p50",
    "acceptance_rate_max",
    "server_number_input_tokens_p50",
    "server_number_output_tokens_p50",
    "client_ttft_s_min",
    "client_ttft_s_mean",
    "client_ttft_s_p50",
    "client_ttft_s_max",
    "client_end_to_end_latency_s_min",
    "client_end_to_end_latency_s_mean",
    "client_end_to_end_latency_s_p50",
    "client_end_to_end_latency_s_max",
    "client_output_token_per_s_min",
    "client_output_token_per_s_mean",
    "client_output_token_per_s_p50",
    "client_output_token_per_s_max",
    "client_total_output_throughput",
    "num_requests_started",
    "num_completed_requests",
    "num_completed_requests_per_min",
    "number_errors",
    "error_code_frequency",
    "switching_time",
    "request_batching_frequencies",
    "representative_batch_size",
];

/// The kit's columns that the kit writes only when some row has a value for them.
pub fn kit_column_is_optional(column: &str) -> bool {
    let always = [
        "name",
        "model",
        "num_input_tokens",
        "num_output_tokens",
        "client_total_output_throughput",
        "num_requests_started",
        "num_completed_requests",
        "num_completed_requests_per_min",
        "number_errors",
        "error_code_frequency",
        "switching_time",
        "request_batching_frequencies",
        "representative_batch_size",
    ];
    !always.contains(&column)
}

/// The kit's integer metrics, whose summary minimum and maximum the kit writes as text.
pub const KIT_INTEGER_METRICS: [&str; 4] = [
    "number_input_tokens",
    "number_output_tokens",
    "server_number_input_tokens",
    "server_number_output_tokens",
];

/// Every way a `*_summary.json` object breaks the kit's readers: a value that is not a scalar
/// (`pd.DataFrame(summary, index=[0])` fails on lists and objects), or a kit key with another
/// type than the kit writes. Empty when the summary is fine.
pub fn kit_summary_problems(summary: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    let Some(object) = summary.as_object() else {
        return vec!["the summary is not a JSON object".into()];
    };
    let mut problems = Vec::new();
    for (key, value) in object {
        if value.is_array() || value.is_object() {
            problems.push(format!("{key} is not a scalar: {value}"));
        }
    }
    let mut expect = |key: &str, ok: bool, what: &str| {
        if let Some(value) = object.get(key)
            && !ok
        {
            problems.push(format!("{key} should be {what}, is {value}"));
        }
    };
    let is = |key: &str, f: fn(&Value) -> bool| object.get(key).is_none_or(f);
    for key in ["name", "model", "results_error_code_frequency"] {
        expect(key, is(key, Value::is_string), "text");
    }
    for key in [
        "num_concurrent_requests",
        "num_input_tokens",
        "num_output_tokens",
        "model_idx",
        "timestamp",
        "results_num_requests_started",
        "results_number_errors",
        "results_num_completed_requests",
    ] {
        expect(key, is(key, Value::is_u64), "a whole number");
    }
    expect(
        "results_error_code_frequency",
        is("results_error_code_frequency", |v| {
            v.as_str()
                .is_some_and(|t| t.starts_with('{') && t.ends_with('}'))
        }),
        "a Python dict as text",
    );
    for (key, value) in object {
        let Some(metric) = key.strip_prefix("results_") else {
            continue;
        };
        let integer = KIT_INTEGER_METRICS
            .iter()
            .any(|m| metric == format!("{m}_min") || metric == format!("{m}_max"));
        if integer {
            let digits = value
                .as_str()
                .is_some_and(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()));
            if !digits {
                problems.push(format!(
                    "{key} should be a whole number as text, is {value}"
                ));
            }
        } else if metric.contains("_quantiles_p") && !value.is_number() {
            problems.push(format!("{key} should be a number, is {value}"));
        }
    }
    problems
}
