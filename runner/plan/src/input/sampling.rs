//! Checks of the free-form parts of a plan: sampling parameters (`samplingParams`, passed
//! into request bodies) and run metadata (`metadata`, written into the result files).
//!
//! Sampling parameters are sent under their own names, so a server's own parameters work
//! without coebench knowing them; the well-known ones are type- and range-checked here, and
//! the keys coebench sets itself (the model, the messages, `max_tokens`, streaming, ...) are
//! refused with the option that sets them. Metadata keys become summary keys and table
//! columns, so they must be plain names that no coebench key already uses.

use serde_json::Value;

use crate::SamplingParams;

/// Body keys coebench sets itself, with the fix to suggest.
const SET_BY_COEBENCH: &[(&str, &str)] = &[
    ("model", "the row's `model` sets it"),
    ("messages", "coebench sends the prompt as the user message"),
    ("prompt", "coebench sends the prompt as the user message"),
    ("stream", "coebench always streams"),
    (
        "stream_options",
        "coebench always asks for usage in the stream",
    ),
    ("max_tokens", "set the row's outputTokens instead"),
    (
        "max_completion_tokens",
        "set the row's outputTokens instead",
    ),
    (
        "max_tokens_to_generate",
        "set the row's outputTokens (the kit's sampling key for it) instead",
    ),
    ("ignore_eos", "set ignoreEos instead"),
    ("min_tokens", "set minTokens instead"),
    ("n", "coebench measures one choice per request; remove it"),
    (
        "best_of",
        "coebench measures one choice per request; remove it",
    ),
];

/// What a well-known sampling parameter must be.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A number in `[min, max]`.
    Number(f64, f64),
    /// A whole number in `[min, max]`.
    Whole(i64, i64),
    /// Text or a list of texts.
    Stop,
}

/// The well-known sampling parameters of OpenAI-compatible servers.
const KNOWN: &[(&str, Kind)] = &[
    ("temperature", Kind::Number(0.0, 100.0)),
    ("top_p", Kind::Number(0.0, 1.0)),
    ("min_p", Kind::Number(0.0, 1.0)),
    ("top_k", Kind::Whole(-1, 1_000_000)),
    ("frequency_penalty", Kind::Number(-2.0, 2.0)),
    ("presence_penalty", Kind::Number(-2.0, 2.0)),
    ("repetition_penalty", Kind::Number(f64::MIN_POSITIVE, 100.0)),
    ("seed", Kind::Whole(i64::MIN, i64::MAX)),
    ("stop", Kind::Stop),
];

/// (key, problem, fix) for each problem of `params`.
pub fn sampling_problems(params: &SamplingParams) -> Vec<(String, String, String)> {
    let mut problems = Vec::new();
    for (key, value) in params {
        let mut push = |problem: String, fix: &str| {
            problems.push((key.clone(), problem, fix.to_string()));
        };
        if key.trim().is_empty() {
            push("a sampling parameter has an empty name".into(), "name it");
            continue;
        }
        if let Some((_, fix)) = SET_BY_COEBENCH.iter().find(|(k, _)| k == key) {
            push(format!("{key} is set by coebench"), fix);
            continue;
        }
        if value.is_null() {
            push(
                format!("{key} has no value"),
                "give it a value, or remove it",
            );
            continue;
        }
        let Some((_, kind)) = KNOWN.iter().find(|(k, _)| k == key) else {
            continue;
        };
        match *kind {
            Kind::Number(min, max) => match value.as_f64() {
                Some(v) if (min..=max).contains(&v) => {}
                _ => push(
                    format!("{key} is {value}, not a number from {min} to {max}"),
                    "write a number in that range",
                ),
            },
            Kind::Whole(min, max) => match value.as_i64() {
                Some(v) if (min..=max).contains(&v) => {}
                _ => push(
                    format!("{key} is {value}, not a whole number from {min} to {max}"),
                    "write a whole number in that range",
                ),
            },
            Kind::Stop => {
                let ok = match value {
                    Value::String(_) => true,
                    Value::Array(items) => items.iter().all(Value::is_string),
                    _ => false,
                };
                if !ok {
                    push(
                        format!("{key} is {value}, not a text or a list of texts"),
                        "write stop as \"END\" or [\"END\", \"STOP\"]",
                    );
                }
            }
        }
    }
    problems
}

/// The kit's `--sampling-params` text: a JSON object.
pub fn parse_sampling_params_text(text: &str) -> Result<SamplingParams, String> {
    serde_json::from_str::<SamplingParams>(text)
        .map_err(|e| format!("{text:?} is not a JSON object: {e}"))
}

/// The kit's `--metadata` text: `k=v` pairs separated by commas (blank items ignored).
pub fn parse_metadata_text(
    text: &str,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut metadata = std::collections::BTreeMap::new();
    for item in text.split(',').filter(|item| !item.trim().is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not k=v"))?;
        metadata.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(metadata)
}

/// Summary keys and table columns coebench writes that are not `results_...`; metadata keys
/// may not take them.
const RESERVED_METADATA_KEYS: &[&str] = &[
    "name",
    "model",
    "num_concurrent_requests",
    "qps",
    "qps_distribution",
    "num_input_tokens",
    "num_output_tokens",
    "model_idx",
    "timestamp",
    "run_name",
    "row_uuid",
    "uuid",
    "outcome",
    "started_at",
    "multimodal_img_size",
    "individual_responses_file",
    "summary_file",
    "response_texts_file",
];

/// Longest metadata key.
const MAX_METADATA_KEY_CHARS: usize = 63;

/// (key, problem, fix) for each problem of the run's metadata.
pub fn metadata_problems(
    metadata: &std::collections::BTreeMap<String, String>,
) -> Vec<(String, String, String)> {
    let mut problems = Vec::new();
    for key in metadata.keys() {
        let plain = !key.is_empty()
            && key.chars().count() <= MAX_METADATA_KEY_CHARS
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !plain {
            problems.push((
                key.clone(),
                format!("metadata key {key:?} is not a plain name"),
                format!("use 1 to {MAX_METADATA_KEY_CHARS} letters, digits, `_`, `-` or `.`"),
            ));
        } else if RESERVED_METADATA_KEYS.contains(&key.as_str())
            || key.starts_with("results_")
            || key.starts_with("additional_sampling_params_")
        {
            problems.push((
                key.clone(),
                format!("metadata key {key:?} is a key coebench writes itself"),
                "rename it (for example with a prefix of your own)".to_string(),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(value: Value) -> SamplingParams {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn good_parameters_and_unknown_ones_pass() {
        let p = params(json!({
            "temperature": 0.7, "top_p": 0.9, "top_k": 40, "seed": 7, "stop": ["END"],
            "repetition_penalty": 1.1, "chat_template_kwargs": {"enable_thinking": false}
        }));
        assert!(sampling_problems(&p).is_empty());
    }

    #[test]
    fn bad_parameters_are_named_with_their_fix() {
        let p = params(json!({
            "temperature": "hot", "top_p": 1.5, "top_k": 2.5, "stop": 3,
            "max_tokens": 10, "max_tokens_to_generate": 10, "n": 2, "presence_penalty": null
        }));
        let problems = sampling_problems(&p);
        let keys: Vec<&str> = problems.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "max_tokens",
                "max_tokens_to_generate",
                "n",
                "presence_penalty",
                "stop",
                "temperature",
                "top_k",
                "top_p"
            ]
        );
        let text = format!("{problems:?}");
        assert!(text.contains("outputTokens"), "{text}");
        assert!(
            text.contains("\\\"hot\\\", not a number from 0 to 100"),
            "{text}"
        );
    }

    #[test]
    fn the_kits_texts_parse() {
        assert_eq!(
            parse_sampling_params_text(r#"{"temperature": 0.2}"#).unwrap()["temperature"],
            0.2
        );
        assert!(parse_sampling_params_text("[1]").is_err());
        let metadata = parse_metadata_text("team=infra, build=7,").unwrap();
        assert_eq!(metadata["team"], "infra");
        assert_eq!(metadata["build"], "7");
        assert!(
            parse_metadata_text("a=1,oops")
                .unwrap_err()
                .contains("\"oops\"")
        );
    }

    #[test]
    fn metadata_keys_must_be_plain_and_free() {
        let metadata = [
            ("team", "inference"),
            ("build.id", "42"),
            ("model", "x"),
            ("results_x", "y"),
            ("has space", "z"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let problems = metadata_problems(&metadata);
        let keys: Vec<&str> = problems.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(keys, ["has space", "model", "results_x"]);
    }
}
