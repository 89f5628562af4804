//! Turns command-line arguments into a [`Plan`]: reads the kit config or plan file, or builds a
//! single row from flags, then applies the overrides.

use std::path::{Path, PathBuf};

use coebench_plan::input::kit_config::read_kit_config;
use coebench_plan::input::plan_file::read_plan_file;
use coebench_plan::input::{InputError, InputErrors};
use coebench_plan::{EndpointSpec, OutputOptions, Plan, Row, RunOptions};

use crate::cli::args::{InputArgs, QuickRowArgs, RunArgs};

/// A plan and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedPlan {
    /// The plan, overrides applied.
    pub plan: Plan,
    /// The file (or `command line`) it came from, for messages and the manifest.
    pub source: String,
    /// The kit CSV the rows came from, for kit configs.
    pub model_configs_path: Option<PathBuf>,
    /// Notes to show the user (ignored kit keys).
    pub notes: Vec<String>,
}

/// Reads the plan named by `input`.
pub fn load_plan(input: &InputArgs) -> Result<LoadedPlan, InputErrors> {
    if let Some(config) = &input.config {
        let kit = read_kit_config(config)?;
        return Ok(LoadedPlan {
            plan: kit.plan,
            source: config.display().to_string(),
            model_configs_path: Some(kit.model_configs_path),
            notes: kit.notes,
        });
    }
    if let Some(plan) = &input.plan {
        return Ok(LoadedPlan {
            plan: read_plan_file(plan)?,
            source: plan.display().to_string(),
            model_configs_path: None,
            notes: Vec::new(),
        });
    }
    quick_plan(&input.row)
}

fn quick_plan(row: &QuickRowArgs) -> Result<LoadedPlan, InputErrors> {
    let Some(model) = row.model.clone() else {
        return Err(InputErrors::one(InputError::new(
            "command line",
            "",
            "nothing to run",
            "give --config config.yaml, --plan plan.yaml, or --model NAME (see coebench run --help)",
        )));
    };
    let concurrency = match (row.concurrency, row.qps) {
        (None, None) => Some(1),
        (c, _) => c,
    };
    let plan = Plan {
        endpoint: EndpointSpec {
            api: row.api.into(),
            url: row.url.clone(),
            api_key_env: row.api_key_env.clone(),
            simulator: row
                .simulator_config
                .as_ref()
                .map(|p| p.display().to_string()),
            ca_certificate: None,
        },
        rows: vec![Row {
            model,
            input_tokens: row.input_tokens,
            output_tokens: row.output_tokens,
            num_requests: row.num_requests,
            concurrency,
            qps: row.qps,
            qps_distribution: row.qps_distribution.map(Into::into),
            image_size: row.image_size.map(Into::into),
            max_sequence_length: None,
            ignore_eos: None,
            min_tokens: None,
            sampling_params: Default::default(),
            dataset: None,
            workers: None,
            objectives: None,
        }],
        options: RunOptions::default(),
        workers: 1,
        output: OutputOptions::default(),
    };
    Ok(LoadedPlan {
        plan,
        source: "command line".to_string(),
        model_configs_path: None,
        notes: Vec::new(),
    })
}

/// Applies `coebench run`'s override flags to the plan.
pub fn apply_overrides(plan: &mut Plan, args: &RunArgs) {
    let path = |p: &Path| p.display().to_string();
    if let Some(workers) = args.workers {
        plan.workers = workers;
    }
    let options = &mut plan.options;
    if let Some(seed) = args.seed {
        options.seed = seed;
    }
    if let Some(t) = args.timeout {
        options.timeout_seconds = t;
    }
    if let Some(t) = args.request_timeout {
        options.request_timeout_seconds = t;
    }
    if let Some(t) = args.time_delay {
        options.time_delay_seconds = t;
    }
    if let Some(n) = args.parallel_rows {
        options.parallel_rows = n;
    }
    if let Some(t) = args.stop_grace {
        options.stop_grace_seconds = t;
    }
    if args.use_multiple_prompts {
        options.use_multiple_prompts = true;
    }
    if let Some(t) = &args.tokenizer {
        options.tokenizer = Some(t.clone());
    }
    if args.identical_prompts {
        options.identical_prompts = true;
    }
    if let Some(ignore) = args.ignore_eos {
        options.ignore_eos = Some(ignore);
    }
    if let Some(n) = args.min_tokens {
        options.min_tokens = Some(n);
    }
    if let Some(params) = &args.sampling_params {
        options.sampling_params = params.clone();
    }
    for metadata in &args.metadata {
        options.metadata.extend(metadata.clone());
    }
    if args.save_response_texts {
        options.save_response_texts = true;
    }
    if let Some(ca) = &args.ca_certificate {
        plan.endpoint.ca_certificate = Some(path(ca));
    }
    let output = &mut plan.output;
    if let Some(names) = args.consolidated_file_names {
        output.consolidated_file_names = Some(names.into());
    }
    if let Some(name) = &args.run_name {
        output.run_name = Some(name.clone());
    }
    if let Some(dir) = &args.output_files_dir {
        output.output_files_dir = Some(path(dir));
    }
    if let Some(dir) = &args.consolidated_results_dir {
        output.consolidated_results_dir = Some(path(dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::{Cli, Command};
    use clap::Parser;

    fn run_args(argv: &[&str]) -> RunArgs {
        match Cli::parse_from(argv).command {
            Command::Run(args) => *args,
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn single_row_flags_build_a_one_row_plan_defaulting_to_concurrency_one() {
        let args = run_args(&[
            "coebench",
            "run",
            "--api",
            "simulator",
            "--model",
            "m",
            "--num-requests",
            "3",
        ]);
        let loaded = load_plan(&args.input).unwrap();
        assert_eq!(loaded.plan.rows.len(), 1);
        assert_eq!(loaded.plan.rows[0].concurrency, Some(1));
        assert_eq!(loaded.plan.rows[0].num_requests, 3);
    }

    #[test]
    fn a_bad_sampling_params_or_metadata_flag_is_a_usage_error_naming_it() {
        let err = Cli::try_parse_from(["coebench", "run", "--sampling-params", "{oops"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--sampling-params") && err.contains("not a JSON object"),
            "{err}"
        );
        let err = Cli::try_parse_from(["coebench", "run", "--metadata", "nokey"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"nokey\" is not k=v"), "{err}");
    }

    #[test]
    fn no_input_says_what_to_give() {
        let args = run_args(&["coebench", "run"]);
        let err = load_plan(&args.input).unwrap_err().to_string();
        assert!(err.contains("--config") && err.contains("--model"), "{err}");
    }

    #[test]
    fn overrides_replace_plan_values() {
        let args = run_args(&[
            "coebench",
            "run",
            "--model",
            "m",
            "--seed",
            "9",
            "--timeout",
            "5",
            "--run-name",
            "r1",
            "--output-files-dir",
            "/tmp/o",
            "--sampling-params",
            r#"{"temperature": 0.3}"#,
            "--metadata",
            "team=infra,build=7",
            "--metadata",
            "stage=ci",
            "--save-response-texts",
            "--consolidated-file-names",
            "kit",
        ]);
        let mut plan = load_plan(&args.input).unwrap().plan;
        apply_overrides(&mut plan, &args);
        assert_eq!(plan.options.sampling_params["temperature"], 0.3);
        assert_eq!(plan.options.metadata.len(), 3);
        assert!(plan.options.save_response_texts);
        assert_eq!(
            plan.output.consolidated_file_names,
            Some(coebench_plan::ConsolidatedFileNames::Kit)
        );
        assert_eq!(plan.options.seed, 9);
        assert_eq!(plan.options.timeout_seconds, 5.0);
        assert_eq!(plan.output.run_name.as_deref(), Some("r1"));
        assert_eq!(plan.output.output_files_dir.as_deref(), Some("/tmp/o"));
    }
}
