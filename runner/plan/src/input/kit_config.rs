//! The kit's bundle-benchmark `config.yaml`, read into a [`Plan`].
//!
//! Keys (all versions of the kit): `model_configs_path`, `llm_api` (`sncloud`, `sambastudio`;
//! coebench adds `openai` and `simulator`), `output_files_dir`, `consolidated_results_dir`,
//! `timeout`, `time_delay`, `use_multiple_prompts`. The oldest kit nested them under
//! `synthetic:`. Later kits' `concurrency_enabled` and `max_workers` run rows in parallel
//! (`options.parallelRows`); their Streamlit keys are accepted and reported as ignored.
//! coebench's own optional keys: `seed`, `request_timeout`, `tokenizer`, `run_name`,
//! `warm_up_connections`, `consolidated_file_names` (`seed`, `kit`, `both`), and the kit
//! evaluator's command-line options as keys: `save_llm_responses`, `sampling_params` (a
//! mapping, or the kit's JSON text) and `metadata` (a mapping, or the kit's `k=v,k2=v2` text).
//! Relative paths resolve
//! against the config file's folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::input::kit_config_types::type_errors;
use crate::input::model_configs::parse_model_configs_csv;
use crate::input::ranges::{self, Range};
use crate::input::sampling;
use crate::input::{InputError, InputErrors, read_input_file, read_utf8};
use crate::tokenizers::resolve_tokenizer_path;
use crate::{
    ApiKind, ConsolidatedFileNames, EndpointSpec, OutputOptions, Plan, Row, RunOptions,
    SamplingParams,
};

/// Kit keys that coebench accepts and ignores, with the reason shown to the user.
const IGNORED_KEYS: [(&str, &str); 4] = [
    (
        "show_results_in_terminal",
        "coebench always prints a table per row",
    ),
    ("prod_mode", "it only applies to the kit's Streamlit app"),
    (
        "pages_to_show",
        "it only applies to the kit's Streamlit app",
    ),
    ("ratio", "no version of the kit used it"),
];

/// The raw YAML document, before validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    model_configs_path: Option<String>,
    llm_api: Option<String>,
    output_files_dir: Option<String>,
    consolidated_results_dir: Option<String>,
    timeout: Option<f64>,
    time_delay: Option<f64>,
    use_multiple_prompts: Option<bool>,
    seed: Option<u64>,
    warm_up_connections: Option<bool>,
    request_timeout: Option<f64>,
    stop_grace: Option<f64>,
    tokenizer: Option<String>,
    run_name: Option<String>,
    consolidated_file_names: Option<String>,
    save_llm_responses: Option<bool>,
    sampling_params: Option<serde_json::Value>,
    metadata: Option<serde_json::Value>,
    concurrency_enabled: Option<bool>,
    max_workers: Option<u32>,
    show_results_in_terminal: Option<serde_json::Value>,
    prod_mode: Option<serde_json::Value>,
    pages_to_show: Option<serde_json::Value>,
    /// The oldest kit nested every key under `synthetic:`.
    synthetic: Option<Box<RawConfig>>,
    /// The oldest kit's `ratio` key (unused by every later version).
    ratio: Option<serde_json::Value>,
}

/// A kit config read into a plan, with notes about keys that were accepted but ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct KitConfig {
    /// The plan the config describes.
    pub plan: Plan,
    /// The model-configs CSV the rows came from.
    pub model_configs_path: PathBuf,
    /// Human-readable notes, one per ignored key.
    pub notes: Vec<String>,
}

/// Reads a kit `config.yaml` and the CSV it points to.
pub fn read_kit_config(path: &Path) -> Result<KitConfig, InputErrors> {
    let source = path.display().to_string();
    let text = read_input_file(path, "--config")?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_kit_config(&text, &source, base, &|csv_path| read_utf8(csv_path))
}

/// Parses a kit config's `text`; `base` is the folder relative paths resolve against and
/// `read` reads the CSV it names. Every problem is reported, not just the first.
pub fn parse_kit_config(
    text: &str,
    source: &str,
    base: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<KitConfig, InputErrors> {
    let raw = read_raw(text, source)?;
    let mut errors = Vec::new();
    let notes = ignored_key_notes(&raw, source);
    let api = api_of(raw.llm_api.as_deref(), source, &mut errors);
    let seconds = Seconds::of(&raw, source, &mut errors);
    let resolve = |p: &str| -> String { base.join(p).display().to_string() };
    let (model_configs_path, rows) = read_rows(
        raw.model_configs_path.as_deref(),
        source,
        base,
        read,
        &mut errors,
    );
    let plan = Plan {
        endpoint: EndpointSpec {
            api: api.unwrap_or(ApiKind::Sncloud),
            url: None,
            api_key_env: None,
            simulator: None,
            ca_certificate: None,
        },
        rows,
        options: RunOptions {
            timeout_seconds: seconds.timeout,
            time_delay_seconds: seconds.time_delay,
            request_timeout_seconds: seconds.request_timeout,
            use_multiple_prompts: raw.use_multiple_prompts.unwrap_or(false),
            parallel_rows: parallel_rows(&raw, source, &mut errors),
            seed: raw.seed.unwrap_or(0),
            warm_up_connections: raw.warm_up_connections.unwrap_or(true),
            tokenizer: raw
                .tokenizer
                .as_deref()
                .map(|t| resolve_tokenizer_path(t, base)),
            stop_grace_seconds: seconds.stop_grace,
            save_response_texts: raw.save_llm_responses.unwrap_or(false),
            sampling_params: sampling_params_of(raw.sampling_params.as_ref(), source, &mut errors),
            metadata: metadata_of(raw.metadata.as_ref(), source, &mut errors),
            ..RunOptions::default()
        },
        workers: 1,
        output: OutputOptions {
            run_name: raw.run_name,
            output_files_dir: raw.output_files_dir.as_deref().map(resolve),
            consolidated_results_dir: raw.consolidated_results_dir.as_deref().map(resolve),
            consolidated_file_names: file_names_of(
                raw.consolidated_file_names.as_deref(),
                source,
                &mut errors,
            ),
        },
    };
    InputErrors::check(
        KitConfig {
            plan,
            model_configs_path,
            notes,
        },
        errors,
    )
}

/// The YAML, with the V-Apr25 nested `synthetic:` block taken as the config; every wrongly
/// typed key named, not just the first the parser met.
fn read_raw(text: &str, source: &str) -> Result<RawConfig, InputErrors> {
    let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| {
        let all = type_errors(text, source);
        if !all.is_empty() {
            return InputErrors(all);
        }
        InputErrors::one(InputError::new(
            source,
            "",
            format!("not a valid kit config: {e}"),
            "keys are model_configs_path, llm_api, output_files_dir, consolidated_results_dir, \
             timeout, time_delay, use_multiple_prompts (and coebench's seed, request_timeout, \
             stop_grace, tokenizer, run_name, consolidated_file_names, save_llm_responses, \
             sampling_params, metadata)",
        ))
    })?;
    Ok(match raw.synthetic {
        Some(nested) => *nested,
        None => raw,
    })
}

/// Rows at once: `max_workers` (the kit's default 4) with `concurrency_enabled`, else 1.
fn parallel_rows(raw: &RawConfig, source: &str, errors: &mut Vec<InputError>) -> u32 {
    if !raw.concurrency_enabled.unwrap_or(false) {
        return 1;
    }
    match raw.max_workers.unwrap_or(KIT_MAX_WORKERS) {
        0 => {
            errors.push(InputError::new(
                source,
                "max_workers",
                "0 workers would run no row",
                "set max_workers to 1 or more (rows run at once), or concurrency_enabled: false",
            ));
            1
        }
        n => n,
    }
}

/// The kit's default `max_workers`.
const KIT_MAX_WORKERS: u32 = 4;

/// A note for each kit key that coebench reads but does not act on, saying why.
fn ignored_key_notes(raw: &RawConfig, source: &str) -> Vec<String> {
    let present = [
        raw.show_results_in_terminal.is_some(),
        raw.prod_mode.is_some(),
        raw.pages_to_show.is_some(),
        raw.ratio.is_some(),
    ];
    IGNORED_KEYS
        .iter()
        .zip(present)
        .filter(|(_, present)| *present)
        .map(|((key, why), _)| format!("{source}: key {key} is ignored: {why}"))
        .collect()
}

/// `llm_api`, case-insensitively; a missing or unknown name is an error.
fn api_of(name: Option<&str>, source: &str, errors: &mut Vec<InputError>) -> Option<ApiKind> {
    let fix = "set llm_api to sncloud, sambastudio, openai or simulator";
    match name.map(str::trim) {
        None | Some("") => {
            errors.push(InputError::new(
                source,
                "llm_api",
                "the key is missing",
                fix,
            ));
            None
        }
        Some(name) => match name.to_ascii_lowercase().as_str() {
            "sncloud" => Some(ApiKind::Sncloud),
            "sambastudio" => Some(ApiKind::Sambastudio),
            "openai" => Some(ApiKind::Openai),
            "simulator" => Some(ApiKind::Simulator),
            _ => {
                errors.push(InputError::new(
                    source,
                    "llm_api",
                    format!("unknown API {name:?}"),
                    fix,
                ));
                None
            }
        },
    }
}

/// `consolidated_file_names`: `seed`, `kit` or `both`.
fn file_names_of(
    name: Option<&str>,
    source: &str,
    errors: &mut Vec<InputError>,
) -> Option<ConsolidatedFileNames> {
    match name?.trim().to_ascii_lowercase().as_str() {
        "seed" => Some(ConsolidatedFileNames::Seed),
        "kit" => Some(ConsolidatedFileNames::Kit),
        "both" => Some(ConsolidatedFileNames::Both),
        other => {
            errors.push(InputError::new(
                source,
                "consolidated_file_names",
                format!("unknown naming {other:?}"),
                "set consolidated_file_names to seed (consolidated_results_<run_name>.xlsx), \
                 kit (<run_name>.xlsx) or both",
            ));
            None
        }
    }
}

/// `sampling_params`: a mapping, or the kit's `--sampling-params` JSON text.
fn sampling_params_of(
    value: Option<&serde_json::Value>,
    source: &str,
    errors: &mut Vec<InputError>,
) -> SamplingParams {
    let parsed = match value {
        None | Some(serde_json::Value::Null) => return SamplingParams::new(),
        Some(serde_json::Value::String(text)) => sampling::parse_sampling_params_text(text),
        Some(other) => serde_json::from_value::<SamplingParams>(other.clone())
            .map_err(|_| format!("{other} is not a mapping")),
    };
    parsed.unwrap_or_else(|problem| {
        errors.push(InputError::new(
            source,
            "sampling_params",
            problem,
            "write sampling_params as a mapping, e.g. {temperature: 0.7, top_p: 0.9}",
        ));
        SamplingParams::new()
    })
}

/// `metadata`: a mapping of plain values, or the kit's `--metadata` text `k=v,k2=v2`.
fn metadata_of(
    value: Option<&serde_json::Value>,
    source: &str,
    errors: &mut Vec<InputError>,
) -> BTreeMap<String, String> {
    let fix = "write metadata as a mapping of names to plain values, e.g. {team: inference}, \
               or as k=v,k2=v2";
    let mut metadata = BTreeMap::new();
    match value {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(text)) => match sampling::parse_metadata_text(text) {
            Ok(parsed) => metadata = parsed,
            Err(problem) => errors.push(InputError::new(source, "metadata", problem, fix)),
        },
        Some(serde_json::Value::Object(map)) => {
            for (k, v) in map {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    other => {
                        errors.push(InputError::new(
                            source,
                            format!("metadata.{k}"),
                            format!("{other} is not a plain value"),
                            fix,
                        ));
                        continue;
                    }
                };
                metadata.insert(k.clone(), text);
            }
        }
        Some(other) => errors.push(InputError::new(
            source,
            "metadata",
            format!("{other} is not a mapping"),
            fix,
        )),
    }
    metadata
}

/// The config's durations, each defaulted and checked against its documented range.
struct Seconds {
    timeout: f64,
    request_timeout: f64,
    time_delay: f64,
    stop_grace: f64,
}

impl Seconds {
    fn of(raw: &RawConfig, source: &str, errors: &mut Vec<InputError>) -> Seconds {
        let mut in_range = |key: &str, value: Option<f64>, default: f64, range: Range| {
            let v = value.unwrap_or(default);
            if let Some(problem) = range.problem(v) {
                errors.push(InputError::new(
                    source,
                    key,
                    problem,
                    format!("set {key} to seconds in that range, e.g. {default}"),
                ));
            }
            v
        };
        let defaults = RunOptions::default();
        Seconds {
            timeout: in_range(
                "timeout",
                raw.timeout,
                defaults.timeout_seconds,
                ranges::TIMEOUT_SECONDS,
            ),
            request_timeout: in_range(
                "request_timeout",
                raw.request_timeout,
                defaults.request_timeout_seconds,
                ranges::REQUEST_TIMEOUT_SECONDS,
            ),
            time_delay: in_range(
                "time_delay",
                raw.time_delay,
                0.0,
                ranges::TIME_DELAY_SECONDS,
            ),
            stop_grace: in_range(
                "stop_grace",
                raw.stop_grace,
                defaults.stop_grace_seconds,
                ranges::STOP_GRACE_SECONDS,
            ),
        }
    }
}

/// The model-configs CSV `model_configs_path` names (relative to `base`) and its rows.
fn read_rows(
    path: Option<&str>,
    source: &str,
    base: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
    errors: &mut Vec<InputError>,
) -> (PathBuf, Vec<Row>) {
    let Some(csv) = path.map(str::trim).filter(|p| !p.is_empty()) else {
        errors.push(InputError::new(
            source,
            "model_configs_path",
            "the key is missing",
            "set model_configs_path to the model-configs CSV (relative to this file)",
        ));
        return (PathBuf::new(), Vec::new());
    };
    let model_configs_path = base.join(csv);
    let rows = match read(&model_configs_path) {
        Ok(text) => match parse_model_configs_csv(&text, &model_configs_path.display().to_string())
        {
            Ok(parsed) => parsed,
            Err(e) => {
                errors.extend(e.0);
                Vec::new()
            }
        },
        Err(e) => {
            errors.push(InputError::new(
                source,
                "model_configs_path",
                format!("cannot read {}: {e}", model_configs_path.display()),
                "point model_configs_path at the CSV (relative paths start at this file's folder)",
            ));
            Vec::new()
        }
    };
    (model_configs_path, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "model_name,input_tokens,output_tokens,num_requests,concurrent_requests,qps,qps_distribution,multimodal_img_size\nm,100,10,4,1,,,\n";

    fn parse(yaml: &str) -> Result<KitConfig, InputErrors> {
        parse_kit_config(yaml, "config.yaml", Path::new("/kit/scripts"), &|p| {
            if p == Path::new("/kit/scripts/configs.csv") {
                Ok(CSV.to_string())
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "No such file",
                ))
            }
        })
    }

    #[test]
    fn reads_the_kit_keys_and_resolves_paths_against_the_config_folder() {
        let config = parse(
            "model_configs_path: 'configs.csv'\nllm_api: 'sambastudio'\n\
             output_files_dir: 'out'\nconsolidated_results_dir: '/abs/cons'\n\
             timeout: 3600\ntime_delay: 2\nuse_multiple_prompts: true\n\
             concurrency_enabled: false\nmax_workers: 4\n",
        )
        .unwrap();
        let plan = &config.plan;
        assert_eq!(plan.endpoint.api, ApiKind::Sambastudio);
        assert_eq!(plan.rows.len(), 1);
        assert_eq!(
            plan.output.output_files_dir.as_deref(),
            Some("/kit/scripts/out")
        );
        assert_eq!(
            plan.output.consolidated_results_dir.as_deref(),
            Some("/abs/cons")
        );
        assert_eq!(plan.options.time_delay_seconds, 2.0);
        assert!(plan.options.use_multiple_prompts);
        assert_eq!(plan.options.parallel_rows, 1);
        assert!(config.notes.is_empty(), "{:?}", config.notes);
    }

    #[test]
    fn concurrency_enabled_runs_max_workers_rows_at_once() {
        let rows = |extra: &str| {
            parse(&format!(
                "model_configs_path: configs.csv\nllm_api: sncloud\n{extra}"
            ))
            .map(|c| c.plan.options.parallel_rows)
        };
        assert_eq!(rows("concurrency_enabled: true\nmax_workers: 3\n"), Ok(3));
        assert_eq!(rows("concurrency_enabled: true\n"), Ok(4));
        assert_eq!(rows("concurrency_enabled: false\nmax_workers: 3\n"), Ok(1));
        let err = rows("concurrency_enabled: true\nmax_workers: 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_workers") && err.contains("1 or more"),
            "{err}"
        );
        let err = rows("concurrency_enabled: yes please\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("concurrency_enabled"), "{err}");
    }

    #[test]
    fn the_kit_evaluators_options_are_keys() {
        let config = parse(
            "model_configs_path: configs.csv\nllm_api: sncloud\nsave_llm_responses: true\n\
             sampling_params: '{\"temperature\": 0.5}'\nmetadata: team=infra,build=7\n\
             consolidated_file_names: kit\n",
        )
        .unwrap();
        let options = &config.plan.options;
        assert!(options.save_response_texts);
        assert_eq!(options.sampling_params["temperature"], 0.5);
        assert_eq!(options.metadata["team"], "infra");
        assert_eq!(options.metadata["build"], "7");
        assert_eq!(
            config.plan.output.consolidated_file_names,
            Some(ConsolidatedFileNames::Kit)
        );
        let mapping = parse(
            "model_configs_path: configs.csv\nllm_api: sncloud\n\
             sampling_params: {top_k: 5}\nmetadata: {build: 7, nightly: true}\n",
        )
        .unwrap();
        assert_eq!(mapping.plan.options.sampling_params["top_k"], 5);
        assert_eq!(mapping.plan.options.metadata["nightly"], "true");
        let err = parse(
            "model_configs_path: configs.csv\nllm_api: sncloud\nsampling_params: '{oops'\n\
             metadata: justtext\nconsolidated_file_names: excel\n",
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "sampling_params",
            "\"justtext\" is not k=v",
            "unknown naming \"excel\"",
        ] {
            assert!(err.contains(needle), "{needle} not in {err}");
        }
    }

    #[test]
    fn the_oldest_nested_layout_is_accepted() {
        let config = parse(
            "synthetic:\n  model_configs_path: configs.csv\n  llm_api: sncloud\n  ratio: 1\n",
        )
        .unwrap();
        assert_eq!(config.plan.endpoint.api, ApiKind::Sncloud);
    }

    #[test]
    fn every_problem_is_reported() {
        let err = parse(
            "model_configs_path: missing.csv\nllm_api: bedrock\ntimeout: -1\ntime_delay: -2\n",
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "unknown API \"bedrock\"",
            "timeout: -1",
            "time_delay: -2",
            "cannot read /kit/scripts/missing.csv",
        ] {
            assert!(err.contains(needle), "{needle} not in {err}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("model_configs_path: configs.csv\nllm_api: sncloud\ntimeuot: 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("timeuot"), "{err}");
    }
}
