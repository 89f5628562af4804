//! `coebench run` and `coebench validate`: load the plan, run it on a tokio runtime, print, and
//! write the run report.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use coebench_plan::ApiKind;
use coebench_plan::input::ranges::METRICS_LINGER_SECONDS;
use coebench_plan::input::validate::{ModelCatalog, UnknownCatalog, validate_plan};
use coebench_plan::input::{InputError, InputErrors};
use coebench_plan::report::{RunOutcome, RunReport};
use coebench_runner::client::ClientOptions;
use coebench_runner::engine::endpoint::EndpointError;
use coebench_runner::engine::load::StopSignal;
use coebench_runner::engine::observer::{Observers, RunObserver};
use coebench_runner::engine::preflight::{check_credentials, check_output_folders, read_datasets};
use coebench_runner::engine::run::{
    PlanSource, RowDistribution, RunError, RunSettings, exit_code, run_plan,
};
use coebench_runner::prometheus::{ExportOptions, Exporter, RunLabels};
use coebench_runner::results_api::{ApiAccess, ResultsPublisher};
use coebench_simulator::{SimulatorConfig, SimulatorError};

use crate::cli::args::{InputArgs, RunArgs};
use crate::cli::distributed::{self, Role};
use crate::cli::inputs::{LoadedPlan, apply_overrides, load_plan};
use crate::cli::messages;
use crate::cli::signals::handle_stop_signals;
use crate::cli::terminal::Terminal;

/// Runs `coebench run`.
pub fn run(args: &RunArgs) -> ExitCode {
    let mut loaded = match load_plan(&args.input) {
        Ok(loaded) => loaded,
        Err(errors) => {
            return fail_before_start(args, RunOutcome::InvalidInput, &errors.to_string());
        }
    };
    apply_overrides(&mut loaded.plan, args);
    for note in &loaded.notes {
        messages::note(note);
    }
    let role = match distributed::role(args, loaded.plan.workers) {
        Ok(role) => role,
        Err(message) => return fail_before_start(args, RunOutcome::InvalidInput, &message),
    };
    let sources = args.source_addresses.clone().unwrap_or_default();
    if let Err(e) = sources.check_bindable() {
        return fail_before_start(args, RunOutcome::InvalidInput, &e.to_string());
    }
    if let Role::Worker { coordinator, index } = role.clone() {
        // A worker takes the plan from the coordinator, and writes no results.
        return distributed::serve_worker(
            coordinator,
            index,
            std::time::Duration::from_secs(args.rendezvous_timeout),
            sources,
            args.report_file.as_deref(),
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail_before_start(
                args,
                RunOutcome::Failed,
                &format!("cannot start the runtime: {e}"),
            );
        }
    };
    coebench_support::sys::raise_open_file_limit();
    let export = match export_options(args) {
        Ok(options) => options,
        Err(message) => return fail_before_start(args, RunOutcome::InvalidInput, &message),
    };
    let exporter = match export.map(|o| runtime.block_on(Exporter::start(o))) {
        None => None,
        Some(Ok(exporter)) => Some(exporter),
        Some(Err(e)) => return fail_before_start(args, RunOutcome::Failed, &e.to_string()),
    };
    let stop = Arc::new(StopSignal::default());
    let terminal = Arc::new(Terminal::new(!args.no_progress));
    let mut observers: Vec<Arc<dyn RunObserver>> = vec![terminal.clone()];
    if let Some(exporter) = &exporter {
        observers.push(exporter.metrics());
    }
    let publisher = match publisher(args, &runtime) {
        Ok(publisher) => publisher,
        Err(message) => return fail_before_start(args, RunOutcome::InvalidInput, &message),
    };
    if let Some(publisher) = &publisher {
        observers.push(publisher.clone());
    }
    let coordination = match role {
        Role::Coordinator { listen, local } => {
            match runtime.block_on(distributed::coordinate(&loaded.plan, listen, local, args)) {
                Ok(coordination) => Some(coordination),
                Err((outcome, message)) => return fail_before_start(args, outcome, &message),
            }
        }
        Role::Single | Role::Worker { .. } => None,
    };
    let coordinator = coordination.as_ref().map(|c| Arc::clone(&c.coordinator));
    let settings = RunSettings {
        source: plan_source(&args.input, &loaded),
        env: Box::new(|name| std::env::var(name).ok()),
        simulator_truth_log: args.simulator_truth_log.clone(),
        client: ClientOptions {
            source_addresses: sources.share(loaded.plan.workers, 0),
            ..ClientOptions::default()
        },
        distribution: coordinator.clone().map(|c| c as Arc<dyn RowDistribution>),
    };
    let grace = std::time::Duration::try_from_secs_f64(loaded.plan.options.stop_grace_seconds)
        .unwrap_or(std::time::Duration::from_secs_f64(
            coebench_plan::DEFAULT_STOP_GRACE_SECONDS,
        ));
    let result = runtime.block_on(async {
        handle_stop_signals(Arc::clone(&stop), grace);
        let result = run_plan(
            loaded.plan,
            settings,
            Arc::new(Observers(observers)),
            Arc::clone(&stop),
        )
        .await;
        if let Some(coordinator) = &coordinator {
            coordinator.finish().await;
        }
        if let Some(exporter) = exporter {
            exporter.finish(&stop).await;
        }
        if let Some(publisher) = publisher {
            let published = publisher.finish().await;
            tracing::info!(
                rows = published.rows,
                failed = published.failed,
                "published the rows' results to the API"
            );
        }
        result
    });
    if let Some(local) = coordination.and_then(|c| c.local) {
        local.wait(std::time::Duration::from_secs(15));
    }
    match result {
        Ok(result) => {
            terminal.print_result(&result);
            write_report(args.report_file.as_deref(), &result.report());
            ExitCode::from(result.exit_code())
        }
        Err(error) => {
            let outcome = match &error {
                RunError::Output(_) => RunOutcome::Failed,
                RunError::Endpoint(EndpointError::Simulator(
                    SimulatorError::Bind { .. } | SimulatorError::TruthLog { .. },
                )) => RunOutcome::Failed,
                _ => RunOutcome::InvalidInput,
            };
            fail_before_start(args, outcome, &error.to_string())
        }
    }
}

/// Runs `coebench validate`.
pub fn validate(input: &InputArgs) -> ExitCode {
    let checked = load_plan(input).and_then(|loaded| {
        // A simulator declares its models and their sequence lengths: check rows against them.
        let simulator = match (&loaded.plan.endpoint.api, &loaded.plan.endpoint.simulator) {
            (ApiKind::Simulator, Some(path)) => Some(
                SimulatorConfig::from_yaml_file(std::path::Path::new(path))
                    .map_err(|e| InputErrors::one(InputError::new(path, "", e.to_string(), "")))?,
            ),
            (ApiKind::Simulator, None) => Some(SimulatorConfig::builtin()),
            _ => None,
        };
        let catalog: &dyn ModelCatalog = match &simulator {
            Some(config) => config,
            None => &UnknownCatalog,
        };
        let mut errors = match validate_plan(&loaded.plan, &loaded.source, catalog) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.0,
        };
        // What `run` checks before sending, so that what validates also starts.
        errors.extend(check_credentials(&loaded.plan, &loaded.source, &|name| {
            std::env::var(name).ok()
        }));
        errors.extend(check_output_folders(&loaded.plan, &loaded.source));
        if let Err(bad) = read_datasets(&loaded.plan) {
            errors.extend(bad.0);
        }
        InputErrors::check(loaded, errors)
    });
    match checked {
        Ok(loaded) => {
            for note in &loaded.notes {
                messages::note(note);
            }
            println!(
                "{}: {} row(s), valid",
                loaded.source,
                loaded.plan.rows.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            if messages::is_json() {
                for line in errors.to_string().lines() {
                    messages::error(line);
                }
            } else {
                eprint!("{errors}");
            }
            ExitCode::from(exit_code(RunOutcome::InvalidInput))
        }
    }
}

/// The metrics to export, if any: `Err` quotes a bad flag.
fn export_options(args: &RunArgs) -> Result<Option<ExportOptions>, String> {
    if args.metrics_addr.is_none() && args.pushgateway.is_none() {
        return Ok(None);
    }
    let labels = RunLabels::resolve(&args.metrics_labels, &|name| std::env::var(name).ok())
        .map_err(|e| e.to_string())?;
    if let Some(problem) = METRICS_LINGER_SECONDS.problem(args.metrics_linger) {
        return Err(format!("--metrics-linger: {problem}"));
    }
    let linger = std::time::Duration::from_secs_f64(args.metrics_linger);
    Ok(Some(ExportOptions {
        addr: args.metrics_addr,
        pushgateway: args.pushgateway.clone(),
        linger,
        labels,
    }))
}

/// The results publisher, with `--publish-results`: `Err` says why it cannot start.
fn publisher(
    args: &RunArgs,
    runtime: &tokio::runtime::Runtime,
) -> Result<Option<Arc<ResultsPublisher>>, String> {
    let Some(run) = &args.publish_results else {
        return Ok(None);
    };
    let access = ApiAccess::resolve(
        &|name| std::env::var(name).ok(),
        args.kube_api.as_deref(),
        args.kube_namespace.as_deref(),
        args.kube_token_file.clone(),
    )
    .map_err(|e| e.to_string())?;
    let _inside = runtime.enter();
    ResultsPublisher::start(access, run)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn plan_source(input: &InputArgs, loaded: &LoadedPlan) -> PlanSource {
    PlanSource {
        description: loaded.source.clone(),
        plan_path: input.plan.as_ref().map(|p| p.display().to_string()),
        config_path: input.config.as_ref().map(|p| p.display().to_string()),
        model_configs_path: loaded
            .model_configs_path
            .as_ref()
            .map(|p| p.display().to_string()),
    }
}

/// Reports a run that never started, on standard error and in the report file.
fn fail_before_start(args: &RunArgs, outcome: RunOutcome, message: &str) -> ExitCode {
    messages::error(message.trim_end());
    let report = RunReport {
        version: 1,
        run_name: args.run_name.clone().unwrap_or_default(),
        outcome,
        results_path: None,
        rows: Vec::new(),
        rows_omitted: 0,
        message: Some(message.trim_end().to_string()),
    };
    write_report(args.report_file.as_deref(), &report);
    ExitCode::from(exit_code(outcome))
}

fn write_report(path: Option<&Path>, report: &RunReport) {
    if let Some(path) = path
        && let Err(e) = std::fs::write(path, report.to_bounded_json())
    {
        messages::error(&format!(
            "cannot write the run report to {}: {e}",
            path.display()
        ));
    }
}
