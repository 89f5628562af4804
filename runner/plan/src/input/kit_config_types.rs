//! Every wrongly-typed key of a kit config at once. The typed parse stops at the first bad
//! value; when it fails, this second pass reads the document as plain data and checks each
//! known key's type, so a file with six bad keys gets six messages.

use serde_json::Value;

use crate::input::InputError;

/// The type a kit key expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    Text,
    Number,
    WholeNumber,
    Boolean,
    Anything,
    Mapping,
}

impl Expected {
    fn accepts(self, value: &Value) -> bool {
        match self {
            Expected::Text => value.is_string(),
            Expected::Number => value.is_number(),
            Expected::WholeNumber => value.is_u64(),
            Expected::Boolean => value.is_boolean(),
            Expected::Anything => true,
            Expected::Mapping => value.is_object(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Expected::Text => "text",
            Expected::Number => "a number",
            Expected::WholeNumber => "a whole number 0 or more",
            Expected::Boolean => "true or false",
            Expected::Anything => "any value",
            Expected::Mapping => "a mapping of keys",
        }
    }
}

/// Every key a kit config may hold and its type (as `RawConfig` declares them).
const KEYS: &[(&str, Expected)] = &[
    ("model_configs_path", Expected::Text),
    ("llm_api", Expected::Text),
    ("output_files_dir", Expected::Text),
    ("consolidated_results_dir", Expected::Text),
    ("timeout", Expected::Number),
    ("time_delay", Expected::Number),
    ("use_multiple_prompts", Expected::Boolean),
    ("seed", Expected::WholeNumber),
    ("warm_up_connections", Expected::Boolean),
    ("request_timeout", Expected::Number),
    ("stop_grace", Expected::Number),
    ("tokenizer", Expected::Text),
    ("run_name", Expected::Text),
    ("consolidated_file_names", Expected::Text),
    ("save_llm_responses", Expected::Boolean),
    ("sampling_params", Expected::Anything),
    ("metadata", Expected::Anything),
    ("concurrency_enabled", Expected::Boolean),
    ("max_workers", Expected::WholeNumber),
    ("show_results_in_terminal", Expected::Anything),
    ("prod_mode", Expected::Anything),
    ("pages_to_show", Expected::Anything),
    ("synthetic", Expected::Mapping),
    ("ratio", Expected::Anything),
];

/// One error per wrongly-typed or unknown key of `text`; empty when the document cannot be
/// read as a mapping at all, or every key is fine (the caller then reports the parser's
/// error).
pub fn type_errors(text: &str, source: &str) -> Vec<InputError> {
    let Ok(Value::Object(document)) = serde_saphyr::from_str::<Value>(text) else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    check_mapping(&document, "", source, &mut errors);
    errors
}

fn check_mapping(
    mapping: &serde_json::Map<String, Value>,
    prefix: &str,
    source: &str,
    errors: &mut Vec<InputError>,
) {
    for (key, value) in mapping {
        let location = format!("{prefix}{key}");
        match KEYS.iter().find(|(name, _)| name == key) {
            None => errors.push(InputError::new(
                source,
                &location,
                format!("unknown key {key:?}"),
                "remove it, or check its spelling against the kit's config keys",
            )),
            // A YAML `~` or empty value means "not set".
            Some(_) if value.is_null() => {}
            Some((_, expected)) if !expected.accepts(value) => errors.push(InputError::new(
                source,
                &location,
                format!("{} is not {}", shown(value), expected.describe()),
                format!("write {key} as {}", expected.describe()),
            )),
            Some((_, Expected::Mapping)) => {
                if let Value::Object(nested) = value {
                    check_mapping(nested, &format!("{location}."), source, errors);
                }
            }
            Some(_) => {}
        }
    }
}

/// A value as it appears in the file, shortened.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 60 {
        let mut cut = 57;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &text[..cut])
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_wrongly_typed_keys_give_six_errors() {
        let errors = type_errors(
            "model_configs_path: 3\nllm_api: [a]\ntimeout: soon\ntime_delay: true\n\
             use_multiple_prompts: 7\nseed: -1\nrun_name: r\n",
            "config.yaml",
        );
        let mut located: Vec<&str> = errors.iter().map(|e| e.location.as_str()).collect();
        located.sort_unstable();
        assert_eq!(
            located,
            [
                "llm_api",
                "model_configs_path",
                "seed",
                "time_delay",
                "timeout",
                "use_multiple_prompts",
            ]
        );
        assert!(
            errors
                .iter()
                .any(|e| e.problem.contains("\"soon\" is not a number")),
            "{errors:?}"
        );
    }

    #[test]
    fn nested_keys_are_checked_and_well_typed_files_give_nothing() {
        let errors = type_errors("synthetic:\n  timeout: x\n", "c.yaml");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].location, "synthetic.timeout");
        assert!(type_errors("timeout: 3\nllm_api: openai\n", "c.yaml").is_empty());
        assert!(type_errors("- not a mapping\n", "c.yaml").is_empty());
    }
}
