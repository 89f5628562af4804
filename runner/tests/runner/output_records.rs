//! Per-request records and row summaries computed from synthetic measurements.

use std::time::{Duration, Instant};

use coebench_plan::{ImageSize, QpsDistribution};
use coebench_runner::client::measurement::{ErrorKind, ServerMetrics};
use coebench_runner::statistics::record::{RequestContext, RequestRecord};
use coebench_runner::statistics::summary::RowOutcome;
use coebench_test_support::kit_contract::{KIT_RECORD_KEYS, kit_summary_problems};
use coebench_test_support::output_fixtures::*;

fn close(actual: Option<f64>, expected: f64) {
    let a = actual.unwrap_or_else(|| panic!("expected {expected}, got null"));
    assert!((a - expected).abs() < 1e-9, "expected {expected}, got {a}");
}

/// coebench's record keys, after the kit's.
const OUR_RECORD_KEYS: [&str; 20] = [
    "request_idx",
    "request_id",
    "model",
    "start_timestamp",
    "stop_reason",
    "error_class",
    "intended_send_s",
    "actual_send_s",
    "end_s",
    "dispatch_delay_s",
    "client_ttfb_s",
    "client_first_event_s",
    "client_tpot_s",
    "client_server_ttft_gap_s",
    "client_output_tokens",
    "num_chunks",
    "server_cached_input_tokens",
    "stale_connection_retry",
    "stopped_early",
    "server_impossible_values",
];

#[test]
fn a_successful_request_with_server_usage() {
    let base = Instant::now();
    let req = Req {
        start_ms: 1000,
        events: vec![(1100, "Hello "), (1150, "world "), (1200, "again ")],
        end_ms: 1300,
        server: Some(ServerMetrics {
            input_tokens: Some(20),
            output_tokens: Some(3),
            total_tokens: Some(23),
            ttft_s: Some(0.08),
            end_to_end_latency_s: Some(0.29),
            output_tokens_per_s: Some(40.0),
            total_tokens_per_s: None,
            output_tokens_after_first_per_s_first_ten: None,
            batch_size_used: Some(4),
            acceptance_rate: None,
            cached_input_tokens: None,
            impossible_values: 0,
        }),
        error: None,
    };
    let r = record(base, 7, &req);
    assert!(r.is_success());
    assert_eq!((r.error_code.as_deref(), r.error_msg.as_str()), (None, ""));
    assert_eq!((r.request_idx, r.prompt_name.as_str()), (7, "default"));
    close(r.client_ttft_s, 0.1);
    close(r.client_end_to_end_latency_s, 0.3);
    assert_eq!(r.number_input_tokens, Some(20));
    assert_eq!(r.number_output_tokens, Some(3));
    assert_eq!(r.number_total_tokens, Some(23));
    // (3 - 1) tokens over e2e - ttft = 0.2 s.
    close(r.client_output_token_per_s_per_request, 10.0);
    close(r.client_tpot_s, 0.1);
    close(r.client_total_tokens_per_s_per_request, 23.0 / 0.3);
    let itl = r.client_inter_token_latencies_s.clone().unwrap();
    assert_eq!(itl.len(), 2);
    close(Some(itl[0]), 0.05);
    close(r.client_mean_inter_token_latency_s, 0.05);
    close(r.client_server_ttft_gap_s, 0.02);
    close(r.server_total_tokens_per_s_per_request, 23.0 / 0.29);
    assert_eq!(r.batch_size_used, Some(4));
    assert_eq!(r.client_output_tokens, Some(3));
    assert_eq!(r.num_chunks, 3);
    close(Some(r.actual_send_s), 1.0);
    close(Some(r.end_s), 1.3);
    close(r.client_ttfb_s, 0.005);
    close(r.client_first_event_s, 0.008);
    assert_eq!(r.intended_send_s, None);
    assert_eq!(r.dispatch_delay_s, None);
    assert_eq!(r.stop_reason.as_deref(), Some("length"));
    assert_eq!(
        r.start_timestamp.as_deref(),
        Some("2023-11-14T22:13:21.000000Z")
    );
    let start_time = r.start_time.clone().unwrap();
    assert_eq!(start_time.len(), "HH:MM:SS.ffffff".len(), "{start_time}");
    assert!(start_time.ends_with(":21.000000"), "{start_time}");
}

#[test]
fn record_keys_are_the_kits_then_ours_in_order() {
    let base = Instant::now();
    for r in [
        record(base, 0, &ok(0, 100, 0.1)),
        record(base, 1, &failed(0, 50, ErrorKind::Http(503))),
    ] {
        let json = serde_json::to_string(&r).unwrap();
        let expected: Vec<&str> = KIT_RECORD_KEYS
            .iter()
            .chain(&OUR_RECORD_KEYS)
            .copied()
            .collect();
        assert_eq!(ordered_keys(&json), expected);
        assert_strict_json(&json);
        let back: RequestRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}

#[test]
fn without_usage_tokens_come_from_the_tokenizer() {
    let base = Instant::now();
    let req = Req {
        server: None,
        ..ok(0, 100, 0.0)
    };
    let r = record(base, 0, &req);
    assert_eq!(r.server_number_output_tokens, None);
    assert_eq!(r.server_ttft_s, None);
    assert_eq!(r.server_total_tokens_per_s_per_request, None);
    // Three words generated, no BOS added; the prompt's own count for input.
    assert_eq!(r.number_output_tokens, Some(3));
    assert_eq!(r.number_input_tokens, Some(18));
    assert_eq!(r.number_total_tokens, Some(21));
    assert_eq!(r.client_server_ttft_gap_s, None);
    close(r.client_ttft_s, 0.1);
}

#[test]
fn zero_server_values_are_values() {
    let base = Instant::now();
    let req = Req {
        server: Some(ServerMetrics {
            output_tokens: Some(0),
            ttft_s: Some(0.0),
            input_tokens: Some(0),
            ..ServerMetrics::default()
        }),
        ..ok(0, 100, 0.0)
    };
    let r = record(base, 0, &req);
    assert_eq!(r.server_number_output_tokens, Some(0));
    assert_eq!(r.number_output_tokens, Some(0), "not the tokenizer's 3");
    assert_eq!(r.number_input_tokens, Some(0));
    assert_eq!(r.server_ttft_s, Some(0.0));
    close(r.client_server_ttft_gap_s, 0.1);
    // Fewer than two output tokens: no after-first-token rate, no TPOT.
    assert_eq!(r.client_output_token_per_s_per_request, None);
    assert_eq!(r.client_tpot_s, None);
    // ITL falls back to one token per chunk.
    assert_eq!(r.client_inter_token_latencies_s.map(|v| v.len()), Some(2));
}

#[test]
fn multi_token_chunks_spread_gaps_per_token() {
    let base = Instant::now();
    let req = Req {
        start_ms: 0,
        events: vec![(100, "a b c "), (200, "d e ")],
        end_ms: 250,
        server: Some(ServerMetrics {
            output_tokens: Some(5),
            ..ServerMetrics::default()
        }),
        error: None,
    };
    let r = record(base, 0, &req);
    // TTFT is the first chunk's arrival, not back-estimated.
    close(r.client_ttft_s, 0.1);
    let itl = r.client_inter_token_latencies_s.clone().unwrap();
    let expected = [0.0, 0.0, 0.05, 0.05];
    assert_eq!(itl.len(), expected.len());
    for (got, want) in itl.iter().zip(expected) {
        assert!((got - want).abs() < 1e-9, "{itl:?}");
    }
    close(r.client_mean_inter_token_latency_s, 0.025);
    // (e2e - ttft) / (n - 1) = 0.15 / 4.
    close(r.client_tpot_s, 0.0375);
    close(r.client_output_token_per_s_per_request, 4.0 / 0.15);
}

#[test]
fn no_token_events_means_no_ttft() {
    let base = Instant::now();
    let req = Req {
        start_ms: 0,
        events: vec![],
        end_ms: 400,
        server: None,
        error: None,
    };
    let r = record(base, 0, &req);
    assert!(r.is_success());
    assert_eq!(r.client_ttft_s, None, "not e2e, as the kit wrote");
    close(r.client_end_to_end_latency_s, 0.4);
    assert_eq!(r.client_output_token_per_s_per_request, None);
    assert_eq!(r.client_inter_token_latencies_s, None);
    assert_eq!(r.client_mean_inter_token_latency_s, None);
    assert_eq!(r.number_output_tokens, Some(0));
    assert_eq!(r.num_chunks, 0);
}

#[test]
fn a_failed_request_keeps_the_schema_with_nulls() {
    let base = Instant::now();
    let r = record(base, 3, &failed(200, 450, ErrorKind::RateLimited));
    assert_eq!(r.error_code.as_deref(), Some("429"));
    assert_eq!(r.error_msg, "failed with 429");
    assert_eq!(r.error_class.as_deref(), Some("rate-limited"));
    assert!(r.start_time.is_some() && r.end_time.is_some());
    assert_eq!(r.client_end_to_end_latency_s, None);
    assert_eq!(r.number_output_tokens, None);
    assert_eq!(r.client_ttft_s, None);
    close(Some(r.actual_send_s), 0.2);
    close(Some(r.end_s), 0.45);
    close(r.client_ttfb_s, 0.005);
}

#[test]
fn open_loop_records_carry_the_dispatch_delay() {
    let base = Instant::now();
    let ctx = RequestContext {
        request_idx: 0,
        request_id: "req-0".into(),
        model: "m".into(),
        prompt_name: "default".into(),
        prompt_tokens: 10,
        intended_send: Some(base + Duration::from_millis(500)),
        max_tokens: 3,
    };
    let m = measurement(base, &ok(503, 100, 0.1));
    let r = RequestRecord::from_measurement(&ctx, &m, &Words, base);
    close(r.intended_send_s, 0.5);
    close(r.dispatch_delay_s, 0.003);
    // Sent early (a scheduler may wake a little before): negative delay.
    let early = measurement(base, &ok(499, 100, 0.1));
    let r = RequestRecord::from_measurement(&ctx, &early, &Words, base);
    close(r.dispatch_delay_s, -0.001);
}

/// The kit's summary keys (kit-reference 6.2, HEAD) for a closed-loop row where every metric
/// has data.
fn kit_summary_keys() -> Vec<String> {
    let mut keys: Vec<String> = ["name", "model", "num_concurrent_requests"]
        .map(String::from)
        .to_vec();
    for metric in [
        "client_ttft_s",
        "client_end_to_end_latency_s",
        "client_output_token_per_s_per_request",
        "number_input_tokens",
        "number_output_tokens",
        "client_mean_inter_token_latency_s",
        "server_ttft_s",
        "server_end_to_end_latency_s",
        "server_output_token_per_s_per_request",
        "server_output_token_after_first_per_s_first_ten_per_request",
        "server_number_input_tokens",
        "server_number_output_tokens",
        "acceptance_rate",
    ] {
        for q in ["p5", "p25", "p50", "p75", "p90", "p95", "p99"] {
            keys.push(format!("results_{metric}_quantiles_{q}"));
        }
        for s in ["mean", "min", "max", "stddev"] {
            keys.push(format!("results_{metric}_{s}"));
        }
    }
    for k in [
        "results_num_requests_started",
        "results_error_rate",
        "results_number_errors",
        "results_error_code_frequency",
        "results_client_total_output_throughput",
        "results_mean_output_throughput_token_per_s",
        "results_num_completed_requests",
        "results_num_completed_requests_per_min",
        "num_input_tokens",
        "num_output_tokens",
        "model_idx",
        "timestamp",
    ] {
        keys.push(k.to_string());
    }
    keys
}

#[test]
fn summary_keys_follow_the_kit_then_ours() {
    let result = finish_row(
        0,
        concurrency_row("Meta-Llama-3.3-70B-Instruct", 1, 4),
        &[
            ok(0, 900, 0.85),
            ok(1000, 100, 0.05),
            ok(1200, 110, 0.06),
            ok(1400, 100, 0.05),
        ],
        0,
    );
    let json = serde_json::to_string_pretty(&result.summary).unwrap();
    assert_strict_json(&json);
    let keys = ordered_keys(&json);
    let kit = kit_summary_keys();
    assert_eq!(keys[..kit.len()], kit[..]);
    let ours = &keys[kit.len()..];
    for expected in [
        "results_switching_time_s",
        "results_requests_grouping",
        "results_request_batching_frequencies",
        "results_representative_batch_size",
        "results_num_requests_not_sent",
        "results_client_server_ttft_gap_s_quantiles_p50",
        "results_client_tpot_s_quantiles_p99",
        "results_target_concurrency",
        "results_mean_in_flight",
        "results_client_saturated",
    ] {
        assert!(ours.iter().any(|k| k == expected), "missing {expected}");
    }
    // The kit's reader strips `results_`, `_quantiles` and `_per_request` from summary keys,
    // then its HEAD consolidator merges its own `switching_time` column on `uuid`: renamed keys
    // must stay unique and must not produce those columns, or pandas suffixes them `_x`/`_y`.
    let renamed: Vec<String> = keys
        .iter()
        .map(|k| {
            k.replace("results_", "")
                .replace("_quantiles", "")
                .replace("_per_request", "")
        })
        .collect();
    let unique: std::collections::BTreeSet<&String> = renamed.iter().collect();
    assert_eq!(unique.len(), renamed.len());
    assert!(!renamed.iter().any(|k| k == "switching_time" || k == "uuid"));
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    // Scalars only, typed as the kit types them: maps and lists as Python text, integer
    // metrics' min and max as text.
    assert_eq!(kit_summary_problems(&value), Vec::<String>::new());
    assert_eq!(value["results_error_code_frequency"], "{}");
    assert_eq!(value["results_requests_grouping"], "[1, 1, 1, 1]");
    assert_eq!(value["results_number_input_tokens_min"], "20");
    assert!(value["results_number_input_tokens_quantiles_p50"].is_f64());
    assert_eq!(value["num_concurrent_requests"], 1);
    assert_eq!(value["model_idx"], 0);
}

#[test]
fn summary_values_switching_and_batching() {
    let result = finish_row(
        2,
        concurrency_row("m", 1, 6),
        &[
            ok(0, 900, 0.85),
            ok(1000, 100, 0.05),
            ok(1200, 110, 0.06),
            failed(1400, 1450, ErrorKind::Http(503)),
            failed(1500, 1550, ErrorKind::Http(503)),
            ok(1600, 100, 0.05),
        ],
        0,
    );
    let s = &result.summary;
    assert_eq!(s.outcome, RowOutcome::Partial);
    assert_eq!((s.num_requests_started, s.num_completed_requests), (6, 4));
    assert_eq!(s.number_errors, 2);
    assert!((s.error_rate - 2.0 / 6.0).abs() < 1e-12);
    assert_eq!(s.error_code_frequency.get("503"), Some(&2));
    assert_eq!(s.error_class_frequency.get("http-5xx"), Some(&2));
    // Server TTFTs 0.85 then 0.05, 0.06, 0.05: mean 0.0533, std 0.0058 -> 0.7967.
    assert_eq!(s.switching.switching_time_s, Some(0.7967));
    let records = result.read_records().unwrap();
    assert_eq!(records[0].server_switching_time, Some(0.7967));
    assert!(
        records[1..]
            .iter()
            .all(|r| r.server_switching_time.is_none())
    );
    // Batches: every TTFT differs except none adjacent; server says batch 1 for all.
    assert_eq!(s.batching.representative_batch_size, Some(1));
    // Throughput: 4 successes x 3 tokens over the row up to the last response (1.76 s),
    // not the idle 5 s the engine added after it.
    assert!((s.row_duration_s - 1.76).abs() < 1e-9);
    assert_eq!(s.client_total_output_throughput, Some(6.8182));
    let ttft = s.stats("server_ttft_s").unwrap();
    assert_eq!((ttft.count, ttft.min, ttft.max), (4, 0.05, 0.85));
    let report = s.row_report();
    assert_eq!((report.completed, report.errors), (4, 2));
    assert_eq!(report.concurrency, Some(1));
    assert_eq!(report.switching_time_s, Some(0.7967));
    assert_eq!(report.server_ttft_p50_s, Some(0.055));
}

#[test]
fn an_all_failed_row_has_counts_and_no_statistics() {
    let result = finish_row(
        0,
        concurrency_row("m", 2, 3),
        &[
            failed(0, 10, ErrorKind::Http(503)),
            failed(0, 20, ErrorKind::Timeout),
        ],
        1,
    );
    let s = &result.summary;
    assert_eq!(s.outcome, RowOutcome::AllFailed);
    assert!(s.kit_stats.is_empty());
    assert_eq!(s.num_requests_not_sent, 1);
    assert_eq!(s.switching.switching_time_s, None);
    assert_eq!(s.client_total_output_throughput, Some(0.0));
    let json = serde_json::to_string_pretty(s).unwrap();
    assert_strict_json(&json);
    let keys = ordered_keys(&json);
    assert!(!keys.iter().any(|k| k.starts_with("results_client_ttft_s")));
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        value["results_error_code_frequency"],
        "{'503': 1, 'timeout': 1}"
    );
    assert_eq!(
        value["results_error_class_frequency"],
        "{'http-5xx': 1, 'timeout': 1}"
    );
    assert_eq!(kit_summary_problems(&value), Vec::<String>::new());
    assert_eq!(value["results_num_requests_not_sent"], 1);
    assert_eq!(value["results_switching_time_s"], serde_json::Value::Null);
}

#[test]
fn open_loop_summary_reports_rate_and_accuracy() {
    let reqs = [ok(0, 100, 0.1), ok(510, 100, 0.1), ok(1000, 100, 0.1)];
    let result = finish_row(1, rate_row("m", 2.0, Some(ImageSize::Small)), &reqs, 1);
    let s = &result.summary;
    let json = serde_json::to_string(s).unwrap();
    let keys = ordered_keys(&json);
    assert_eq!(keys[..4], ["name", "model", "qps", "qps_distribution"]);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        value["qps_distribution"],
        QpsDistribution::Exponential.as_str()
    );
    assert_eq!(value["multimodal_img_size"], "small");
    // Three sends over 1 s: 2 requests per second.
    assert_eq!(s.load_accuracy.target_qps, Some(2.0));
    assert_eq!(s.load_accuracy.achieved_qps, Some(2.0));
    assert!(
        s.name
            .starts_with("realworkload_1_m_multimodal_small_500_50_2-0_exponential_stream_")
    );
    assert!(s.name.ends_with("_summary"));
}

#[test]
fn closed_loop_mean_in_flight() {
    // Two requests fully overlapping from 0 to 1.0 s: two in flight on average.
    let reqs = [
        Req {
            end_ms: 1000,
            ..ok(0, 100, 0.1)
        },
        Req {
            end_ms: 1000,
            ..ok(0, 100, 0.1)
        },
    ];
    let result = finish_row(0, concurrency_row("m", 2, 2), &reqs, 0);
    assert_eq!(result.summary.load_accuracy.mean_in_flight, Some(2.0));
    assert_eq!(result.summary.outcome, RowOutcome::Ok);
}

#[test]
fn sampling_parameters_and_metadata_sit_where_the_kit_merges_them_as_scalars() {
    let mut result = finish_row(
        0,
        concurrency_row("m", 1, 2),
        &[ok(0, 100, 0.1), ok(200, 100, 0.1)],
        0,
    );
    result.summary.sampling_params = serde_json::from_value(serde_json::json!({
        "temperature": 0.5,
        "stop": ["END", "STOP"],
        "chat_template_kwargs": {"enable_thinking": false}
    }))
    .unwrap();
    result.summary.metadata = [("team", "infra"), ("build", "7")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    let json = serde_json::to_string_pretty(&result.summary).unwrap();
    let keys = ordered_keys(&json);
    let at = keys.iter().position(|k| k == "num_output_tokens").unwrap();
    assert_eq!(
        keys[at + 1..at + 8],
        [
            "additional_sampling_params_chat_template_kwargs_enable_thinking",
            "additional_sampling_params_stop",
            "additional_sampling_params_temperature",
            "build",
            "team",
            "model_idx",
            "timestamp",
        ]
    );
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        value["additional_sampling_params_stop"],
        r#"["END","STOP"]"#
    );
    assert_eq!(
        value["additional_sampling_params_chat_template_kwargs_enable_thinking"],
        false
    );
    assert_eq!(value["team"], "infra");
    assert_eq!(kit_summary_problems(&value), Vec::<String>::new());
}
