//! Native plan files: a [`Plan`] in YAML or JSON.
//!
//! Relative paths inside the plan (`endpoint.simulator`, `endpoint.caCertificate`, the tokenizer paths of
//! `options.tokenizer` and `options.tokenizers`, rows' `dataset.path`, the `output` folders)
//! resolve against the plan file's folder, as the kit's config does.

use std::path::Path;

use crate::Plan;
use crate::input::{InputError, InputErrors, read_input_file};
use crate::tokenizers::resolve_tokenizer_path;

/// Reads a plan file; `.json` files are parsed as JSON, anything else as YAML.
pub fn read_plan_file(path: &Path) -> Result<Plan, InputErrors> {
    let source = path.display().to_string();
    let text = read_input_file(path, "--plan")?;
    let is_json = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
    let mut plan = parse_plan(&text, &source, is_json)?;
    resolve_relative_paths(&mut plan, path.parent().unwrap_or(Path::new(".")));
    Ok(plan)
}

/// Parses a plan from `text`; `source` names it in errors.
pub fn parse_plan(text: &str, source: &str, is_json: bool) -> Result<Plan, InputErrors> {
    let parsed = if is_json {
        serde_json::from_str::<Plan>(text).map_err(|e| e.to_string())
    } else {
        serde_saphyr::from_str::<Plan>(text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| {
        InputErrors::one(InputError::new(
            source,
            "",
            format!("not a valid plan: {e}"),
            "see `coebench schema` for every field, and examples/quickstart.yaml for a plan that works",
        ))
    })
}

/// Makes the plan's relative paths relative to `base` instead of the working folder.
pub fn resolve_relative_paths(plan: &mut Plan, base: &Path) {
    let resolve = |p: &mut Option<String>| {
        if let Some(path) = p.as_mut() {
            *path = base.join(&*path).display().to_string();
        }
    };
    resolve(&mut plan.endpoint.simulator);
    resolve(&mut plan.endpoint.ca_certificate);
    resolve(&mut plan.output.output_files_dir);
    resolve(&mut plan.output.consolidated_results_dir);
    // Tokenizer values are resolved only when they are paths, not repository names.
    if let Some(tokenizer) = plan.options.tokenizer.as_mut() {
        *tokenizer = resolve_tokenizer_path(tokenizer, base);
    }
    for rule in &mut plan.options.tokenizers {
        rule.tokenizer = resolve_tokenizer_path(&rule.tokenizer, base);
    }
    for dataset in plan.rows.iter_mut().filter_map(|r| r.dataset.as_mut()) {
        dataset.path = base.join(&dataset.path).display().to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiKind;

    #[test]
    fn yaml_and_json_plans_parse_to_the_same_plan() {
        let yaml = "endpoint:\n  api: simulator\nrows:\n  - model: m\n    inputTokens: 10\n    outputTokens: 5\n    numRequests: 2\n    concurrency: 1\n";
        let json = r#"{"endpoint":{"api":"simulator"},"rows":[{"model":"m","inputTokens":10,"outputTokens":5,"numRequests":2,"concurrency":1}]}"#;
        let a = parse_plan(yaml, "p.yaml", false).unwrap();
        let b = parse_plan(json, "p.json", true).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.endpoint.api, ApiKind::Simulator);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let err = parse_plan("endpoint:\n  api: bedrock\nrows: []\n", "p.yaml", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.yaml") && err.contains("bedrock"), "{err}");
    }

    #[test]
    fn relative_paths_follow_the_plan_file() {
        let mut plan = parse_plan(
            "endpoint: {api: simulator, simulator: sim.yaml}\nrows: []\noutput: {outputFilesDir: /abs}\n",
            "p.yaml",
            false,
        )
        .unwrap();
        resolve_relative_paths(&mut plan, Path::new("examples"));
        assert_eq!(
            plan.endpoint.simulator.as_deref(),
            Some("examples/sim.yaml")
        );
        assert_eq!(plan.output.output_files_dir.as_deref(), Some("/abs"));
    }

    #[test]
    fn tokenizer_paths_and_datasets_follow_the_plan_file_but_repositories_do_not() {
        let mut plan = parse_plan(
            "endpoint: {api: openai}\n\
             rows: [{model: m, inputTokens: 1, outputTokens: 1, numRequests: 1, concurrency: 1, \
                     dataset: {path: prompts.jsonl, order: sample}}]\n\
             options:\n  tokenizer: owner/repo\n  tokenizers:\n\
             \x20   - {model: 'a*', tokenizer: tok/tokenizer.json}\n\
             \x20   - {model: b, tokenizer: unsloth/Llama-3.2-1B-Instruct}\n",
            "p.yaml",
            false,
        )
        .unwrap();
        resolve_relative_paths(&mut plan, Path::new("examples"));
        assert_eq!(plan.options.tokenizer.as_deref(), Some("owner/repo"));
        assert_eq!(
            plan.options.tokenizers[0].tokenizer,
            "examples/tok/tokenizer.json"
        );
        assert_eq!(
            plan.options.tokenizers[1].tokenizer,
            "unsloth/Llama-3.2-1B-Instruct"
        );
        let dataset = plan.rows[0].dataset.as_ref().unwrap();
        assert_eq!(dataset.path, "examples/prompts.jsonl");
        assert_eq!(dataset.order, crate::DatasetOrder::Sample);
    }
}
