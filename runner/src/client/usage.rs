//! Maps a server's usage block (SambaNova `usage`, OpenAI `usage`, SambaStudio's final generic
//! response) onto [`ServerMetrics`], with kit-reference 5.2's key precedence. Unlike the kit, a
//! key that is present wins even when its value is 0 (kit defect 8.9): only absent or `null`
//! falls through to the next key. Values sent as numeric strings are accepted.

use serde_json::{Map, Value};

use crate::client::measurement::ServerMetrics;

/// The server metrics found in `usage`. Values that cannot be true (negative, `NaN`,
/// infinite) are dropped and counted in [`ServerMetrics::impossible_values`].
pub(crate) fn server_metrics(usage: &Map<String, Value>) -> ServerMetrics {
    let impossible = std::cell::Cell::new(0u32);
    let first = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| usage.get(*k).filter(|v| !v.is_null()))
    };
    // A value that reads as a number but is not usable cannot be true; one that is no number
    // at all (`"n/a"`) is merely absent.
    let usable = |value: &Value, parsed: bool| {
        if !parsed && is_number(value) {
            impossible.set(impossible.get() + 1);
        }
    };
    let count = |keys: &[&str]| {
        let value = first(keys)?;
        let count = as_count(value);
        usable(value, count.is_some());
        count
    };
    let real = |keys: &[&str]| {
        let value = first(keys)?;
        let real = as_real(value);
        usable(value, real.is_some());
        real
    };
    let metrics = ServerMetrics {
        input_tokens: count(&["prompt_tokens_count", "prompt_tokens"]),
        output_tokens: count(&["completion_tokens_count", "completion_tokens"]),
        total_tokens: count(&["total_tokens_count", "total_tokens"]),
        ttft_s: real(&["time_to_first_token", "time_to_first_response"]),
        end_to_end_latency_s: real(&["total_latency", "model_execution_time"]),
        output_tokens_per_s: real(&[
            "completion_tokens_after_first_per_sec",
            "completion_tokens_per_sec_after_first_response",
            "throughput_after_first_token",
        ]),
        total_tokens_per_s: real(&["total_tokens_per_sec"]),
        output_tokens_after_first_per_s_first_ten: real(&[
            "completion_tokens_after_first_per_sec_first_ten",
        ]),
        batch_size_used: count(&["batch_size_used"]).and_then(|v| u32::try_from(v).ok()),
        acceptance_rate: real(&["acceptance_rate"]),
        cached_input_tokens: usage
            .get("prompt_tokens_details")
            .and_then(|d| d.get("cached_tokens"))
            .and_then(as_count),
        impossible_values: 0,
    };
    ServerMetrics {
        impossible_values: impossible.get(),
        ..metrics
    }
}

/// The server metrics in llama.cpp's `timings` object (its final chunk): `prompt_ms` is the
/// prompt's processing time, after which llama.cpp samples the first token (the server TTFT);
/// `prompt_ms + predicted_ms` the server's end-to-end time; `predicted_per_second` the decode
/// rate; `cache_n` the prompt tokens reused from its cache, `prompt_n` those it computed.
pub(crate) fn llama_timings(timings: &Map<String, Value>) -> ServerMetrics {
    let count = |key: &str| timings.get(key).and_then(as_count);
    let real = |key: &str| timings.get(key).and_then(as_real);
    let prompt_ms = real("prompt_ms");
    let predicted_ms = real("predicted_ms");
    let cached = count("cache_n");
    let computed = count("prompt_n");
    ServerMetrics {
        input_tokens: computed.map(|n| n + cached.unwrap_or(0)),
        output_tokens: count("predicted_n"),
        ttft_s: prompt_ms.map(|ms| ms / 1000.0),
        end_to_end_latency_s: prompt_ms.zip(predicted_ms).map(|(p, d)| (p + d) / 1000.0),
        output_tokens_per_s: real("predicted_per_second"),
        cached_input_tokens: cached,
        ..ServerMetrics::default()
    }
}

/// Whether `value` is a number, or a string that reads as one (including `NaN`, `inf`):
/// a value that is one but is not usable is impossible, not merely absent.
fn is_number(value: &Value) -> bool {
    match value {
        Value::Number(_) => true,
        Value::String(s) => s.trim().parse::<f64>().is_ok(),
        _ => false,
    }
}

/// `raw` JSON with the bare `NaN`, `Infinity` and `-Infinity` tokens some servers write
/// (Python's `json.dumps` does) replaced by `null`, and how many there were; `None` when there
/// were none. Text inside strings is left alone.
pub(crate) fn non_finite_to_null(raw: &[u8]) -> Option<(Vec<u8>, u32)> {
    const TOKENS: [&[u8]; 3] = [b"-Infinity", b"Infinity", b"NaN"];
    let mut out = Vec::with_capacity(raw.len());
    let (mut in_string, mut escaped, mut replaced) = (false, false, 0u32);
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if let Some(token) = TOKENS.iter().find(|t| raw[i..].starts_with(t)) {
            out.extend_from_slice(b"null");
            i += token.len();
            replaced += 1;
            continue;
        }
        out.push(b);
        i += 1;
    }
    (replaced > 0).then_some((out, replaced))
}

/// A stop reason sent inside a usage block or final response (`stop_reason`).
pub(crate) fn stop_reason(usage: &Map<String, Value>) -> Option<String> {
    match usage.get("stop_reason")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// A non-negative whole number, from an integer, an integral float or a numeric string.
fn as_count(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 2f64.powi(63))
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A finite number 0 or more, from a number or a numeric string.
fn as_real(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite() && *f >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn sambanova_usage_maps_every_field() {
        let m = server_metrics(&map(
            r#"{"is_last_response":true,"prompt_tokens":21,"completion_tokens":41,"total_tokens":62,
                "time_to_first_token":0.0915,"total_latency":0.168,"total_tokens_per_sec":369.0,
                "completion_tokens_per_sec":244.0,"completion_tokens_after_first_per_sec":522.9,
                "completion_tokens_after_first_per_sec_first_ten":1016.0,"acceptance_rate":9.5,
                "batch_size_used":4,"stop_reason":"stop"}"#,
        ));
        assert_eq!(
            m,
            ServerMetrics {
                input_tokens: Some(21),
                output_tokens: Some(41),
                total_tokens: Some(62),
                ttft_s: Some(0.0915),
                end_to_end_latency_s: Some(0.168),
                output_tokens_per_s: Some(522.9),
                total_tokens_per_s: Some(369.0),
                output_tokens_after_first_per_s_first_ten: Some(1016.0),
                batch_size_used: Some(4),
                acceptance_rate: Some(9.5),
                cached_input_tokens: None,
                impossible_values: 0,
            }
        );
    }

    #[test]
    fn llama_cpp_timings_and_cached_tokens_map_to_server_metrics() {
        let m = llama_timings(&map(
            r#"{"cache_n":12,"prompt_n":146,"prompt_ms":812.5,"prompt_per_token_ms":5.6,
                "prompt_per_second":179.7,"predicted_n":32,"predicted_ms":640.0,
                "predicted_per_token_ms":20.0,"predicted_per_second":50.0}"#,
        ));
        assert_eq!(m.input_tokens, Some(158));
        assert_eq!(m.output_tokens, Some(32));
        assert_eq!(m.ttft_s, Some(0.8125));
        assert_eq!(m.end_to_end_latency_s, Some(1.4525));
        assert_eq!(m.output_tokens_per_s, Some(50.0));
        assert_eq!(m.cached_input_tokens, Some(12));
        assert!(m.has_timings());
        let usage = server_metrics(&map(
            r#"{"prompt_tokens":158,"completion_tokens":32,"total_tokens":190,
                "prompt_tokens_details":{"cached_tokens":150}}"#,
        ));
        assert_eq!(usage.cached_input_tokens, Some(150));
        assert!(!usage.has_timings());
        let merged = usage.or(&m);
        assert_eq!(merged.cached_input_tokens, Some(150));
        assert_eq!(merged.ttft_s, Some(0.8125));
        assert_eq!(merged.total_tokens, Some(190));
    }

    #[test]
    fn impossible_values_are_dropped_and_counted() {
        let m = server_metrics(&map(
            r#"{"time_to_first_token":-0.5,"total_latency":"NaN","prompt_tokens":-3,
                "completion_tokens":4,"total_tokens_per_sec":"inf","acceptance_rate":"n/a"}"#,
        ));
        assert_eq!(m.ttft_s, None);
        assert_eq!(m.end_to_end_latency_s, None);
        assert_eq!(m.input_tokens, None);
        assert_eq!(m.output_tokens, Some(4));
        assert_eq!(m.total_tokens_per_s, None);
        // Not a number at all: absent, not impossible.
        assert_eq!(m.acceptance_rate, None);
        assert_eq!(m.impossible_values, 4, "{m:?}");
    }

    #[test]
    fn bare_non_finite_tokens_become_null_outside_strings() {
        let (clean, n) =
            non_finite_to_null(br#"{"a":NaN,"b":-Infinity,"c":"NaN \" Infinity","d":Infinity}"#)
                .unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            String::from_utf8(clean).unwrap(),
            r#"{"a":null,"b":null,"c":"NaN \" Infinity","d":null}"#
        );
        assert!(non_finite_to_null(br#"{"a":1}"#).is_none());
    }

    #[test]
    fn zero_is_a_value_and_precedence_holds() {
        let m = server_metrics(&map(
            r#"{"prompt_tokens_count":0,"prompt_tokens":9,"completion_tokens_count":null,
                "completion_tokens":"5","time_to_first_token":0,"time_to_first_response":2.0,
                "model_execution_time":1.5,"throughput_after_first_token":0.0}"#,
        ));
        assert_eq!(m.input_tokens, Some(0));
        assert_eq!(m.output_tokens, Some(5));
        assert_eq!(m.ttft_s, Some(0.0));
        assert_eq!(m.end_to_end_latency_s, Some(1.5));
        assert_eq!(m.output_tokens_per_s, Some(0.0));
        assert_eq!(m.total_tokens, None);
    }

    #[test]
    fn turbo_names_are_used_when_the_usual_ones_are_absent() {
        let m = server_metrics(&map(
            r#"{"time_to_first_response":0.2,"completion_tokens_per_sec_after_first_response":80.5,
                "batch_size_used":1.0,"completion_tokens_count":3.0}"#,
        ));
        assert_eq!(m.ttft_s, Some(0.2));
        assert_eq!(m.output_tokens_per_s, Some(80.5));
        assert_eq!(m.batch_size_used, Some(1));
        assert_eq!(m.output_tokens, Some(3));
    }
}
