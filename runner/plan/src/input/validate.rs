//! Whole-plan validation: every problem at once, before anything is sent.
//!
//! Parsers already reject what they cannot read; this checks what a plan from any source must
//! satisfy: at least one row, exactly one load per row, positive numbers, lengths that fit a
//! declared sequence length, and sane options.

use crate::input::{InputError, InputErrors, ranges, sampling};
use crate::tokenizers::TokenizerSource;
use crate::{ApiKind, MAX_WORKERS, Objectives, Plan, Row, RunOptions};

/// What the engine knows about the endpoint's models, for checks a plan alone cannot make.
pub trait ModelCatalog {
    /// The maximum sequence length the endpoint declares for `model`, if it declares one.
    fn max_sequence_length(&self, model: &str) -> Option<u32>;
    /// Whether the endpoint serves `model`; `None` when it cannot tell.
    fn serves(&self, model: &str) -> Option<bool>;
}

/// A catalog that knows nothing (real endpoints, before any request).
pub struct UnknownCatalog;

impl ModelCatalog for UnknownCatalog {
    fn max_sequence_length(&self, _model: &str) -> Option<u32> {
        None
    }
    fn serves(&self, _model: &str) -> Option<bool> {
        None
    }
}

/// Checks `plan` (read from `source`) against itself and `catalog`; returns every problem.
pub fn validate_plan(
    plan: &Plan,
    source: &str,
    catalog: &dyn ModelCatalog,
) -> Result<(), InputErrors> {
    let mut errors = Vec::new();
    let mut push = |location: String, problem: String, fix: &str| {
        errors.push(InputError::new(source, location, problem, fix));
    };
    if plan.rows.is_empty() {
        push(
            "rows".into(),
            "the plan has no rows".into(),
            "add at least one model configuration",
        );
    }
    for (i, row) in plan.rows.iter().enumerate() {
        for (field, problem, fix) in row_problems(row, catalog) {
            push(
                format!("row {} (model {:?}), field {field}", i + 1, row.model),
                problem,
                fix,
            );
        }
        for (key, problem, fix) in sampling::sampling_problems(&row.sampling_params) {
            push(
                format!(
                    "row {} (model {:?}), field samplingParams.{key}",
                    i + 1,
                    row.model
                ),
                problem,
                &fix,
            );
        }
    }
    let options = &plan.options;
    for (field, value, range) in [
        (
            "timeoutSeconds",
            options.timeout_seconds,
            ranges::TIMEOUT_SECONDS,
        ),
        (
            "requestTimeoutSeconds",
            options.request_timeout_seconds,
            ranges::REQUEST_TIMEOUT_SECONDS,
        ),
        (
            "timeDelaySeconds",
            options.time_delay_seconds,
            ranges::TIME_DELAY_SECONDS,
        ),
        (
            "stopGraceSeconds",
            options.stop_grace_seconds,
            ranges::STOP_GRACE_SECONDS,
        ),
    ] {
        if let Some(problem) = range.problem(value) {
            push(
                format!("options.{field}"),
                problem,
                "use a number of seconds in that range",
            );
        }
    }
    for (key, problem, fix) in sampling::sampling_problems(&options.sampling_params) {
        push(format!("options.samplingParams.{key}"), problem, &fix);
    }
    for (key, problem, fix) in sampling::metadata_problems(&options.metadata) {
        push(format!("options.metadata.{key}"), problem, &fix);
    }
    if let Some(objectives) = &options.objectives {
        for (field, problem, fix) in objectives_problems(objectives) {
            push(format!("options.objectives{field}"), problem, fix);
        }
    }
    for (i, row) in plan.rows.iter().enumerate() {
        if let Some(objectives) = &row.objectives {
            for (field, problem, fix) in objectives_problems(objectives) {
                push(
                    format!(
                        "row {} (model {:?}), field objectives{field}",
                        i + 1,
                        row.model
                    ),
                    problem,
                    fix,
                );
            }
        }
    }
    if !(1..=MAX_WORKERS).contains(&plan.workers) {
        push(
            "workers".into(),
            format!("{} workers is outside 1 to {MAX_WORKERS}", plan.workers),
            "set workers to the number of worker processes (or Pods) to spread the load over",
        );
    }
    if plan.workers > 1 && options.parallel_rows > 1 {
        push(
            "options.parallelRows".into(),
            format!(
                "parallel rows ({}) cannot be combined with {} workers",
                options.parallel_rows, plan.workers
            ),
            "run the rows one after another (parallelRows 1), or use one worker",
        );
    }
    if plan.workers > 1 && options.save_response_texts {
        push(
            "options.saveResponseTexts".into(),
            format!(
                "generated texts are not gathered from {} workers",
                plan.workers
            ),
            "turn saveResponseTexts off, or use one worker",
        );
    }
    for (i, row) in plan.rows.iter().enumerate() {
        if let Some(workers) = row.workers
            && !(1..=plan.workers).contains(&workers)
        {
            push(
                format!("row {} (model {:?}), field workers", i + 1, row.model),
                format!(
                    "{workers} workers is outside 1 to the plan's {} workers",
                    plan.workers
                ),
                "set the row's workers to at most the plan's workers, or raise the plan's",
            );
        }
    }
    if options.parallel_rows == 0 {
        push(
            "options.parallelRows".into(),
            "0 rows at once would run nothing".into(),
            "set parallelRows to 1 (one row after another) or more",
        );
    }
    for (location, value) in tokenizer_values(options) {
        if let Err(problem) = TokenizerSource::parse(value) {
            push(
                location,
                problem,
                "write a tokenizer.json path (ending in .json, or starting with ./ or /), a \
                 Hugging Face repository name such as unsloth/Llama-3.3-70B-Instruct, or \
                 `embedded`",
            );
        }
    }
    for (i, rule) in options.tokenizers.iter().enumerate() {
        if rule.model.trim().is_empty() {
            push(
                format!("options.tokenizers[{i}].model"),
                "the model name or pattern is empty".into(),
                "write a model name, or a pattern such as Meta-Llama-3.3-*",
            );
        }
    }
    let endpoint = &plan.endpoint;
    if let Some(url) = &endpoint.url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        push(
            "endpoint.url".into(),
            format!("{url:?} is not an http(s) URL"),
            "write it as https://host/path",
        );
    }
    if endpoint.simulator.is_some() && endpoint.api != ApiKind::Simulator {
        push(
            "endpoint.simulator".into(),
            format!(
                "a simulator config is set but endpoint.api is {}",
                endpoint.api.as_str()
            ),
            "set endpoint.api to simulator, or remove endpoint.simulator",
        );
    }
    InputErrors::check((), errors)
}

/// Every tokenizer value of `options`, with its location.
fn tokenizer_values(options: &RunOptions) -> Vec<(String, &str)> {
    let mut values: Vec<(String, &str)> = options
        .tokenizer
        .iter()
        .map(|t| ("options.tokenizer".to_string(), t.as_str()))
        .collect();
    for (i, rule) in options.tokenizers.iter().enumerate() {
        values.push((
            format!("options.tokenizers[{i}] (model {:?}).tokenizer", rule.model),
            rule.tokenizer.as_str(),
        ));
    }
    values
}

/// (field, problem, fix) for each problem of one row.
/// Problems of one set of objectives, as (field suffix, problem, fix).
fn objectives_problems(objectives: &Objectives) -> Vec<(String, String, &'static str)> {
    let mut problems = Vec::new();
    let set = objectives.set();
    if set.is_empty() && objectives.percentiles.is_empty() {
        problems.push((
            String::new(),
            "no objective is set".into(),
            "set ttftSeconds, e2eSeconds, interTokenLatencySeconds or percentiles, or remove objectives",
        ));
    }
    let seconds = |v: f64| v.is_finite() && v > 0.0;
    for (name, value) in set {
        if !seconds(value) {
            problems.push((
                format!(".{name}"),
                format!("{value} is not a positive number of seconds"),
                "give the largest acceptable latency in seconds, e.g. 0.5",
            ));
        }
    }
    for (i, p) in objectives.percentiles.iter().enumerate() {
        if !(p.percentile > 0.0 && p.percentile <= 100.0) {
            problems.push((
                format!(".percentiles[{i}].percentile"),
                format!(
                    "{} is not a percentile above 0 and at most 100",
                    p.percentile
                ),
                "give the percentile as a number, e.g. 99 for p99",
            ));
        }
        if !seconds(p.max_seconds) {
            problems.push((
                format!(".percentiles[{i}].maxSeconds"),
                format!("{} is not a positive number of seconds", p.max_seconds),
                "give the largest acceptable value in seconds, e.g. 0.5",
            ));
        }
    }
    problems
}

fn row_problems(
    row: &Row,
    catalog: &dyn ModelCatalog,
) -> Vec<(&'static str, String, &'static str)> {
    let mut problems = Vec::new();
    if row.model.trim().is_empty() {
        problems.push((
            "model",
            "the model name is empty".into(),
            "write the model's name as the endpoint knows it",
        ));
    } else if catalog.serves(&row.model) == Some(false) {
        problems.push((
            "model",
            format!("the endpoint does not serve {:?}", row.model),
            "use a model name the endpoint lists",
        ));
    }
    for (field, value, range) in [
        ("inputTokens", row.input_tokens, ranges::TOKENS),
        ("outputTokens", row.output_tokens, ranges::TOKENS),
        ("numRequests", row.num_requests, ranges::NUM_REQUESTS),
    ] {
        if let Some(problem) = range.problem(f64::from(value)) {
            problems.push((field, problem, "use a whole number in that range"));
        }
    }
    match (row.concurrency, row.qps) {
        (Some(_), Some(_)) => problems.push((
            "concurrency, qps",
            "both concurrency and qps are set".into(),
            "a row is either closed-loop (concurrency) or open-loop (qps): remove one",
        )),
        (None, None) => problems.push((
            "concurrency, qps",
            "neither concurrency nor qps is set".into(),
            "set concurrency (e.g. 1) for a closed loop, or qps (e.g. 2.5) for an open loop",
        )),
        _ => {}
    }
    if let Some(concurrency) = row.concurrency
        && let Some(problem) = ranges::CONCURRENCY.problem(f64::from(concurrency))
    {
        problems.push(("concurrency", problem, "use a whole number in that range"));
    }
    if let Some(qps) = row.qps
        && let Some(problem) = ranges::QPS.problem(qps)
    {
        problems.push((
            "qps",
            problem,
            "use requests per second in that range, e.g. 2.5",
        ));
    }
    if let Some(max) = row.max_sequence_length
        && let Some(problem) = ranges::MAX_SEQUENCE_LENGTH.problem(f64::from(max))
    {
        problems.push((
            "maxSequenceLength",
            problem,
            "use a whole number in that range",
        ));
    }
    if row
        .dataset
        .as_ref()
        .is_some_and(|d| d.path.trim().is_empty())
    {
        problems.push((
            "dataset.path",
            "the dataset path is empty".into(),
            "name a jsonl file of {\"prompt\": ...} lines",
        ));
    }
    if row.qps.is_none() && row.qps_distribution.is_some() {
        problems.push((
            "qpsDistribution",
            "a distribution is set on a row without qps".into(),
            "remove qpsDistribution, or set qps",
        ));
    }
    let declared = row
        .max_sequence_length
        .or_else(|| catalog.max_sequence_length(&row.model));
    if let Some(max) = declared {
        let total = u64::from(row.input_tokens) + u64::from(row.output_tokens);
        if total > u64::from(max) {
            problems.push((
                "inputTokens, outputTokens",
                format!(
                    "{} input + {} output = {total} tokens exceed the sequence length {max}",
                    row.input_tokens, row.output_tokens
                ),
                "lower inputTokens or outputTokens so that their sum fits",
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EndpointSpec, OutputOptions, QpsDistribution, RunOptions};

    struct Catalog;
    impl ModelCatalog for Catalog {
        fn max_sequence_length(&self, model: &str) -> Option<u32> {
            (model == "small").then_some(4096)
        }
        fn serves(&self, model: &str) -> Option<bool> {
            Some(model != "ghost")
        }
    }

    fn row(model: &str) -> Row {
        Row {
            model: model.into(),
            input_tokens: 100,
            output_tokens: 10,
            num_requests: 4,
            concurrency: Some(1),
            qps: None,
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
    }

    fn plan(rows: Vec<Row>) -> Plan {
        Plan {
            endpoint: EndpointSpec {
                api: ApiKind::Simulator,
                url: None,
                api_key_env: None,
                simulator: None,
                ca_certificate: None,
            },
            rows,
            options: RunOptions::default(),
            workers: 1,
            output: OutputOptions::default(),
        }
    }

    #[test]
    fn a_good_plan_passes() {
        validate_plan(&plan(vec![row("small")]), "p", &Catalog).unwrap();
    }

    #[test]
    fn every_problem_is_reported() {
        let mut too_long = row("small");
        too_long.input_tokens = 4000;
        too_long.output_tokens = 100;
        let mut both = row("m");
        both.qps = Some(1.0);
        let mut bad_rate = row("m");
        bad_rate.concurrency = None;
        bad_rate.qps = Some(f64::NAN);
        let mut stray = row("m");
        stray.qps_distribution = Some(QpsDistribution::Uniform);
        let mut declared = row("m");
        declared.max_sequence_length = Some(50);
        let mut p = plan(vec![
            too_long,
            both,
            bad_rate,
            stray,
            row("ghost"),
            declared,
        ]);
        p.options.timeout_seconds = 0.0;
        p.endpoint.url = Some("ftp://x".into());
        p.rows[1]
            .sampling_params
            .insert("top_p".into(), serde_json::json!(2));
        p.options.metadata.insert("timestamp".into(), "now".into());
        let err = validate_plan(&p, "plan.yaml", &Catalog)
            .unwrap_err()
            .to_string();
        for needle in [
            "row 1 (model \"small\"), field inputTokens, outputTokens: 4000 input + 100 output = 4100 tokens exceed the sequence length 4096",
            "row 2 (model \"m\"), field concurrency, qps: both",
            "row 3 (model \"m\"), field qps: NaN is out of range",
            "row 4 (model \"m\"), field qpsDistribution",
            "row 5 (model \"ghost\"), field model: the endpoint does not serve",
            "row 6 (model \"m\"), field inputTokens, outputTokens: 100 input + 10 output = 110 tokens exceed the sequence length 50",
            "options.timeoutSeconds",
            "endpoint.url",
            "row 2 (model \"m\"), field samplingParams.top_p: top_p is 2, not a number from 0 to 1",
            "options.metadata.timestamp: metadata key \"timestamp\" is a key coebench writes itself",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in\n{err}");
        }
        assert!(err.starts_with("10 problems"), "{err}");
    }

    #[test]
    fn objectives_of_the_run_and_of_rows_are_checked_with_their_field() {
        use crate::{ObjectiveMetric, PercentileObjective};
        let mut own = row("m");
        own.objectives = Some(Objectives {
            percentiles: vec![PercentileObjective {
                metric: ObjectiveMetric::Ttft,
                percentile: 99.0,
                max_seconds: 0.5,
            }],
            ..Objectives::default()
        });
        let mut bad = row("m");
        bad.objectives = Some(Objectives {
            percentiles: vec![PercentileObjective {
                metric: ObjectiveMetric::E2e,
                percentile: 120.0,
                max_seconds: -1.0,
            }],
            ..Objectives::default()
        });
        let mut p = plan(vec![own.clone(), bad]);
        p.options.objectives = Some(Objectives::default());
        let err = validate_plan(&p, "plan.yaml", &Catalog)
            .unwrap_err()
            .to_string();
        for needle in [
            "options.objectives: no objective is set",
            "row 2 (model \"m\"), field objectives.percentiles[0].percentile: 120 is not a percentile above 0 and at most 100",
            "row 2 (model \"m\"), field objectives.percentiles[0].maxSeconds: -1 is not a positive number of seconds",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in\n{err}");
        }
        assert!(err.starts_with("3 problems"), "{err}");
        // A row's objectives replace the run's; a plan file spells them as documented.
        let options = RunOptions {
            objectives: Some(Objectives {
                ttft_seconds: Some(1.0),
                ..Objectives::default()
            }),
            ..RunOptions::default()
        };
        assert_eq!(own.effective_objectives(&options), own.objectives.as_ref());
        assert_eq!(
            row("m").effective_objectives(&options),
            options.objectives.as_ref()
        );
        let parsed: Row = serde_json::from_value(serde_json::json!({
            "model": "m", "inputTokens": 10, "outputTokens": 10, "numRequests": 1, "concurrency": 1,
            "objectives": {"percentiles": [{"metric": "ttft", "percentile": 99, "maxSeconds": 0.5}]}
        }))
        .unwrap();
        assert_eq!(parsed.objectives, own.objectives);
        validate_plan(&plan(vec![own]), "p", &Catalog).unwrap();
    }

    #[test]
    fn an_empty_plan_is_an_error() {
        let err = validate_plan(&plan(vec![]), "p", &UnknownCatalog)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no rows"), "{err}");
    }
}
