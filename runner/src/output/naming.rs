//! The kit's file names (kit-reference 6.1), so tools that parse them keep working.
//!
//! A row's base name is `synthetic_<idx>_<model>[_multimodal_<size>]_<in>_<out>_<concurrency>
//! _stream_<uuid>` for closed-loop rows and `realworkload_<idx>_<model>[_multimodal_<size>]
//! _<in>_<out>_<qps>_<distribution>_stream_<uuid>` for open-loop rows, where `_` in the model
//! becomes `-` and the whole name is then sanitised the kit's way. A closed-loop row whose
//! prompts come from a jsonl dataset is named as the kit's custom mode names it,
//! `custom_<idx>_<model>_<file>_<concurrency>_stream_<uuid>` (`<file>` the dataset's file name,
//! so `prompts.jsonl` becomes `prompts-jsonl`), with the row index the other names carry and
//! without the stray spaces of the kit's f-string. Only names are built here.

use crate::statistics::summary::RowNames;
use coebench_plan::{Load, Row};

/// Suffix of a row's per-request file.
pub const INDIVIDUAL_RESPONSES_SUFFIX: &str = "_individual_responses.json";
/// Suffix of a row's summary file.
pub const SUMMARY_SUFFIX: &str = "_summary.json";
/// Suffix of a row's generated texts (option `saveResponseTexts`).
pub const RESPONSE_TEXTS_SUFFIX: &str = "_response_texts.jsonl";
/// File name of the run manifest in the run folder.
pub const MANIFEST_FILE: &str = "run.json";

/// The kit's sanitising: runs of characters other than word characters and `-` become one `-`
/// (`re.sub(r'[^\w\d-]+', '-', s)`), then runs of `-` collapse (`re.sub(r'-{2,}', '-', s)`).
pub fn sanitize(name: &str) -> String {
    let mut replaced = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if c.is_alphanumeric() || c == '_' || c == '-' {
            replaced.push(c);
            in_run = false;
        } else if !in_run {
            replaced.push('-');
            in_run = true;
        }
    }
    let mut collapsed = String::with_capacity(replaced.len());
    for c in replaced.chars() {
        if !(c == '-' && collapsed.ends_with('-')) {
            collapsed.push(c);
        }
    }
    collapsed
}

/// Python's `str(x)` of a float: shortest round-trip digits, at least one decimal in fixed
/// notation (`1.0`, `0.5`), scientific below 1e-4 and from 1e16 (`1e-05`, `1e+16`).
pub fn python_float_str(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. `1.2345e3`, `5e-1`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if x < 0.0 { "-" } else { "" };
    if !(-4..16).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{fraction}e{exp_sign}{:02}", exponent.abs());
    }
    if exponent < 0 {
        let zeros = "0".repeat((-exponent - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = exponent as usize + 1;
    if digits.len() <= int_len {
        let zeros = "0".repeat(int_len - digits.len());
        format!("{sign}{digits}{zeros}.0")
    } else {
        let (int_part, fraction) = digits.split_at(int_len);
        format!("{sign}{int_part}.{fraction}")
    }
}

/// The base name of a row's files (see the module documentation).
pub fn row_base_name(row_index: usize, row: &Row, uuid: &uuid::Uuid) -> String {
    let model = row.model.replace('_', "-");
    let multimodal = row
        .image_size
        .map(|size| format!("_multimodal_{}", size.as_str()))
        .unwrap_or_default();
    let (input, output) = (row.input_tokens, row.output_tokens);
    let raw = match row.effective_load() {
        Load::Concurrency(c) => match &row.dataset {
            Some(dataset) => {
                let file = std::path::Path::new(&dataset.path)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| dataset.path.clone());
                format!("custom_{row_index}_{model}_{file}_{c}_stream_{uuid}")
            }
            None => format!(
                "synthetic_{row_index}_{model}{multimodal}_{input}_{output}_{c}_stream_{uuid}"
            ),
        },
        Load::Rate { qps, distribution } => format!(
            "realworkload_{row_index}_{model}{multimodal}_{input}_{output}_{}_{}_stream_{uuid}",
            python_float_str(qps),
            distribution.as_str()
        ),
    };
    sanitize(&raw)
}

/// The names of row `row_index`'s files under a fresh random UUID.
pub fn row_names(row_index: usize, row: &Row) -> RowNames {
    row_names_with_uuid(row_index, row, uuid::Uuid::new_v4())
}

/// The names of row `row_index`'s files under `uuid`.
pub fn row_names_with_uuid(row_index: usize, row: &Row, uuid: uuid::Uuid) -> RowNames {
    let base = row_base_name(row_index, row, &uuid);
    RowNames {
        uuid,
        individual_responses_file: individual_responses_file(&base),
        summary_file: summary_file(&base),
        response_texts_file: format!("{base}{RESPONSE_TEXTS_SUFFIX}"),
        base,
    }
}

/// `<base>_individual_responses.json`.
pub fn individual_responses_file(base: &str) -> String {
    format!("{base}{INDIVIDUAL_RESPONSES_SUFFIX}")
}

/// `<base>_summary.json`.
pub fn summary_file(base: &str) -> String {
    format!("{base}{SUMMARY_SUFFIX}")
}

/// `consolidated_results_<run_name>`: the consolidated table's file name without extension.
pub fn consolidated_stem(run_name: &str) -> String {
    format!("consolidated_results_{run_name}")
}

/// The kit's default run name: the local start time as `YYYYmmdd-HHMMSS.ffffff`.
pub fn default_run_name(started: jiff::Timestamp) -> String {
    started
        .to_zoned(jiff::tz::TimeZone::system())
        .strftime("%Y%m%d-%H%M%S.%6f")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_strings() {
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (2.5, "2.5"),
            (10.0, "10.0"),
            (0.1, "0.1"),
            (123.456, "123.456"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (-0.25, "-0.25"),
            (0.0, "0.0"),
        ];
        for (x, expected) in cases {
            assert_eq!(python_float_str(x), expected, "{x}");
        }
    }

    #[test]
    fn default_run_names_look_like_the_kits() {
        let name = default_run_name(jiff::Timestamp::from_second(1_700_000_000).unwrap());
        assert_eq!(name.len(), "YYYYmmdd-HHMMSS.ffffff".len(), "{name}");
        assert_eq!((&name[8..9], &name[15..]), ("-", ".000000"), "{name}");
        assert_eq!(
            Row {
                model: "m".into(),
                input_tokens: 1,
                output_tokens: 1,
                num_requests: 1,
                concurrency: Some(4),
                qps: Some(2.0),
                qps_distribution: None,
                image_size: None,
                max_sequence_length: None,
                ignore_eos: None,
                min_tokens: None,
                sampling_params: Default::default(),
                dataset: None,
                workers: None,
                objectives: None,
            }
            .effective_load(),
            Load::Concurrency(4),
            "concurrency wins, as in the kit's HEAD runner"
        );
    }

    #[test]
    fn dataset_rows_are_named_as_the_kits_custom_mode() {
        let uuid = uuid::Uuid::nil();
        let mut row: Row = serde_json::from_value(serde_json::json!({
            "model": "Meta-Llama-3.3-70B-Instruct", "inputTokens": 100, "outputTokens": 20,
            "numRequests": 4, "concurrency": 2,
            "dataset": {"path": "data/my_prompts.jsonl"}
        }))
        .unwrap();
        assert_eq!(
            row_base_name(3, &row, &uuid),
            format!("custom_3_Meta-Llama-3-3-70B-Instruct_my_prompts-jsonl_2_stream_{uuid}")
        );
        // Open loop keeps the real-workload name: the kit's custom mode has no rate.
        row.concurrency = None;
        row.qps = Some(2.0);
        assert!(row_base_name(3, &row, &uuid).starts_with("realworkload_3_"));
    }

    #[test]
    fn sanitising_is_the_kits() {
        assert_eq!(sanitize("Meta-Llama-3.3-70B"), "Meta-Llama-3-3-70B");
        assert_eq!(sanitize("a/b..c - d"), "a-b-c-d");
        assert_eq!(sanitize("x__y"), "x__y");
        assert_eq!(sanitize("é.ü"), "é-ü");
    }
}
