//! The benchmark reconciler: resolves a `CoeBenchmark`'s rows, creates the runs it asks for,
//! trims finished runs to the history limits, and summarizes its runs in its status.
//!
//! A run is asked for once when a benchmark without a schedule is created (`Initial`), and once
//! per new value of the `coebench.dev/run-now` annotation (`RunNow`). The `n`-th run is named
//! `<benchmark>-<n>`, with `n` counted in `status.runCount`: a run that already exists under
//! the next name (an operator restarted between creating it and recording it) is adopted, never
//! duplicated. Runs, and through them their Jobs and ConfigMaps, are owned by the benchmark, so
//! deleting it deletes them; files on the results volume are never touched.

use std::sync::Arc;
use std::time::Duration;

use coebench_runner::input::model_configs::parse_model_configs_csv;
use coebench_runner::input::validate::{UnknownCatalog, validate_plan};
use coebench_runner::plan::{EndpointSpec, OutputOptions, Plan, Row};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use super::run::join_errors;
use super::{Context, is_conflict, is_not_found, publish, publish_transitions, write_status};
use crate::conditions::{NewCondition, Status, remove_condition, set_condition, types};
use crate::crd::{
    ANNOTATION_RUN_NOW, CoeBenchmark, CoeBenchmarkRun, CoeBenchmarkRunSpec, CoeBenchmarkStatus,
    LABEL_BENCHMARK, LABEL_MANAGED_BY, MANAGED_BY, MAX_ROWS, ResultSummary, RunPhase, RunTrigger,
    TriggerKind,
};
use crate::error::{Error, Result};
use crate::resources::run_name;

const CONTROLLER: &str = "benchmark";

/// Why a benchmark cannot run now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// PascalCase reason of `Valid=False`.
    pub reason: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Reconciles one benchmark.
#[tracing::instrument(skip_all, fields(benchmark = %bench.name_any(), namespace = bench.namespace().unwrap_or_default()))]
pub async fn reconcile(bench: Arc<CoeBenchmark>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let name = bench.name_any();
    let namespace = bench.namespace().ok_or_else(|| Error::MissingField {
        object: format!("CoeBenchmark {name}"),
        field: "metadata.namespace",
    })?;
    let uid = bench.uid().ok_or_else(|| Error::MissingField {
        object: format!("CoeBenchmark {namespace}/{name}"),
        field: "metadata.uid",
    })?;
    let before = bench.status.clone();
    let mut status = before.clone().unwrap_or_default();
    let generation = bench.metadata.generation;
    let now = ctx.now();
    status.observed_generation = generation;
    let mut set = |status: &mut CoeBenchmarkStatus,
                   type_: &'static str,
                   s: Status,
                   reason: &str,
                   message: &str| {
        set_condition(
            &mut status.conditions,
            NewCondition {
                type_,
                status: s,
                reason,
                message,
            },
            generation,
            now,
        );
    };

    let runs_api: Api<CoeBenchmarkRun> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut runs: Vec<CoeBenchmarkRun> = runs_api
        .list(&ListParams::default().labels(&format!("{LABEL_BENCHMARK}={name}")))
        .await
        .map_err(Error::kube(format!(
            "list the runs of benchmark {namespace}/{name}"
        )))?
        .items
        .into_iter()
        .filter(|r| r.owner_references().iter().any(|o| o.uid == uid))
        .collect();

    // Rows.
    let resolved = resolve_rows(&bench, &namespace, &ctx).await?;
    match &resolved {
        Ok(rows) => {
            status.row_count = Some(rows.len() as u32);
            let message = format!(
                "{} row{} to run",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            );
            set(
                &mut status,
                types::VALID,
                Status::True,
                "Validated",
                &message,
            );
        }
        Err(invalid) => {
            status.row_count = None;
            set(
                &mut status,
                types::VALID,
                Status::False,
                invalid.reason,
                &invalid.message,
            );
        }
    }

    // Reserved scheduling fields.
    if bench.spec.schedule.is_some() {
        set(
            &mut status,
            types::SCHEDULED,
            Status::False,
            "SchedulingNotActive",
            "spec.schedule is reserved for recurring benchmarks, which are not active yet: set the coebench.dev/run-now annotation to run",
        );
    } else {
        remove_condition(&mut status.conditions, types::SCHEDULED);
    }

    // A new run, when one is asked for.
    if let (Some(trigger), Ok(rows)) = (pending_trigger(&bench, &status), &resolved) {
        let n = status.run_count.unwrap_or(0) + 1;
        let run_name = run_name(&name, n);
        if !runs.iter().any(|r| r.name_any() == run_name) {
            let run = build_run(&bench, rows.clone(), trigger.clone(), n, &ctx)?;
            let created = match runs_api.create(&PostParams::default(), &run).await {
                Ok(created) => Some(created),
                Err(e) if is_conflict(&e) => runs_api
                    .get_opt(&run_name)
                    .await
                    .map_err(Error::kube(format!("read run {namespace}/{run_name}")))?,
                Err(e) => return Err(Error::kube(format!("create run {namespace}/{run_name}"))(e)),
            };
            if let Some(created) = created {
                tracing::info!(run = %run_name, trigger = ?trigger.kind, "created a run");
                publish(
                    &ctx,
                    &*bench,
                    false,
                    "RunCreated",
                    "CreateRun",
                    format!("created run {run_name} ({})", describe(&trigger)),
                    CONTROLLER,
                )
                .await;
                runs.push(created);
            }
        }
        status.run_count = Some(n);
        if let Some(value) = run_now_annotation(&bench) {
            status.handled_run_now = Some(value);
        }
    }

    // History.
    let trimmed = trim_history(
        &runs,
        bench.spec.successful_runs_history_limit,
        bench.spec.failed_runs_history_limit,
    );
    for run_name in &trimmed {
        match runs_api.delete(run_name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(Error::kube(format!("delete run {namespace}/{run_name}"))(e)),
        }
    }
    if !trimmed.is_empty() {
        runs.retain(|r| !trimmed.contains(&r.name_any()));
        publish(
            &ctx,
            &*bench,
            false,
            "RunsDeleted",
            "TrimHistory",
            format!(
                "deleted finished runs beyond the history limits: {}",
                trimmed.join(", ")
            ),
            CONTROLLER,
        )
        .await;
    }

    summarize(&mut status, &runs, &mut set);

    let api: Api<CoeBenchmark> = Api::namespaced(ctx.client.clone(), &namespace);
    if write_status(&api, &name, before.as_ref(), &status).await? {
        let old = before.map(|s| s.conditions).unwrap_or_default();
        publish_transitions(&ctx, &*bench, &old, &status.conditions, CONTROLLER).await;
    }
    Ok(match resolved {
        Err(_) if bench.spec.rows_from.is_some() => Action::requeue(ctx.settings.invalid_retry),
        _ => Action::requeue(Duration::from_secs(600)),
    })
}

/// Requeues a failed reconcile after a short delay, and counts the failure.
pub fn error_policy(_bench: Arc<CoeBenchmark>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_error(CONTROLLER, error.metric_label());
    Action::requeue(Duration::from_secs(5))
}

fn run_now_annotation(bench: &CoeBenchmark) -> Option<String> {
    bench
        .annotations()
        .get(ANNOTATION_RUN_NOW)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The run the benchmark asks for now, if any: the initial run of a benchmark without a
/// schedule, or a run-now value not handled yet.
pub fn pending_trigger(bench: &CoeBenchmark, status: &CoeBenchmarkStatus) -> Option<RunTrigger> {
    let annotation = run_now_annotation(bench);
    if status.run_count.unwrap_or(0) == 0 && bench.spec.schedule.is_none() {
        return Some(RunTrigger {
            kind: TriggerKind::Initial,
            value: None,
            sequence: None,
        });
    }
    match annotation {
        Some(value) if status.handled_run_now.as_ref() != Some(&value) => Some(RunTrigger {
            kind: TriggerKind::RunNow,
            value: Some(value),
            sequence: None,
        }),
        _ => None,
    }
}

fn describe(trigger: &RunTrigger) -> String {
    match (&trigger.kind, &trigger.value) {
        (TriggerKind::RunNow, Some(v)) => format!("{ANNOTATION_RUN_NOW}={v}"),
        (kind, _) => format!("{kind:?}").to_lowercase(),
    }
}

/// The rows of a benchmark: inline, or parsed from its ConfigMap's CSV; then the whole plan is
/// validated. `Ok(Err(..))` is an invalid benchmark; `Err` is an API failure.
async fn resolve_rows(
    bench: &CoeBenchmark,
    namespace: &str,
    ctx: &Context,
) -> Result<std::result::Result<Vec<Row>, Invalid>> {
    let name = bench.name_any();
    let (rows, source) = match (&bench.spec.rows, &bench.spec.rows_from) {
        (Some(rows), None) => (
            rows.clone(),
            format!("CoeBenchmark {namespace}/{name}, spec.rows"),
        ),
        (None, Some(from)) => {
            let r = &from.config_map_key_ref;
            let source = format!("ConfigMap {namespace}/{} key {}", r.name, r.key);
            let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
            let found = config_maps
                .get_opt(&r.name)
                .await
                .map_err(Error::kube(format!(
                    "read ConfigMap {namespace}/{}",
                    r.name
                )))?;
            let Some(cm) = found else {
                return Ok(Err(Invalid {
                    reason: "ConfigMapNotFound",
                    message: format!(
                        "ConfigMap {namespace}/{} (spec.rowsFrom.configMapKeyRef) does not exist; create it with `kubectl create configmap {} -n {namespace} --from-file={}=model_configs.csv`",
                        r.name, r.name, r.key
                    ),
                }));
            };
            let Some(text) = cm.data.as_ref().and_then(|d| d.get(&r.key)) else {
                return Ok(Err(Invalid {
                    reason: "ConfigMapKeyNotFound",
                    message: format!(
                        "ConfigMap {namespace}/{} has no key {:?} (spec.rowsFrom.configMapKeyRef.key); keys present: {}",
                        r.name,
                        r.key,
                        cm.data
                            .as_ref()
                            .map(|d| d.keys().cloned().collect::<Vec<_>>().join(", "))
                            .unwrap_or_default()
                    ),
                }));
            };
            match parse_model_configs_csv(text, &source) {
                Ok(rows) => (rows, source),
                Err(errors) => {
                    return Ok(Err(Invalid {
                        reason: "InvalidRows",
                        message: join_errors(&errors.0),
                    }));
                }
            }
        }
        _ => {
            return Ok(Err(Invalid {
                reason: "InvalidSpec",
                message: "set exactly one of spec.rows and spec.rowsFrom".into(),
            }));
        }
    };
    if rows.len() > MAX_ROWS {
        return Ok(Err(Invalid {
            reason: "TooManyRows",
            message: format!(
                "{source} has {} rows, more than the {MAX_ROWS} a run may hold; split it into several benchmarks",
                rows.len()
            ),
        }));
    }
    let plan = Plan {
        endpoint: EndpointSpec {
            api: bench.spec.endpoint.api,
            url: bench.spec.endpoint.url.clone(),
            api_key_env: None,
            simulator: None,
        },
        rows,
        options: bench.spec.options.clone(),
        output: OutputOptions::default(),
    };
    match validate_plan(&plan, &source, &UnknownCatalog) {
        Ok(()) => Ok(Ok(plan.rows)),
        Err(errors) => Ok(Err(Invalid {
            reason: "InvalidRows",
            message: join_errors(&errors.0),
        })),
    }
}

/// The `n`-th run of `bench`, owned by it, with the operator's defaults filled in.
fn build_run(
    bench: &CoeBenchmark,
    rows: Vec<Row>,
    mut trigger: RunTrigger,
    n: u64,
    ctx: &Context,
) -> Result<CoeBenchmarkRun> {
    let name = bench.name_any();
    let owner = bench
        .controller_owner_ref(&())
        .ok_or_else(|| Error::MissingField {
            object: format!("CoeBenchmark {name}"),
            field: "metadata.uid",
        })?;
    trigger.sequence = Some(n);
    let mut runner = bench.spec.runner.clone();
    runner
        .image
        .get_or_insert_with(|| ctx.settings.job.runner_image.clone());
    Ok(CoeBenchmarkRun {
        metadata: ObjectMeta {
            name: Some(run_name(&name, n)),
            namespace: bench.namespace(),
            labels: Some(
                [
                    (LABEL_BENCHMARK.to_string(), name.clone()),
                    (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
                ]
                .into(),
            ),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: CoeBenchmarkRunSpec {
            benchmark: Some(name),
            trigger,
            endpoint: bench.spec.endpoint.clone(),
            rows,
            options: bench.spec.options.clone(),
            runner,
            results: bench.spec.results.clone(),
            ttl_seconds_after_finished: bench.spec.ttl_seconds_after_finished,
        },
        status: None,
    })
}

/// Newest first: by run number, then creation time, then name.
fn newest_first(runs: &[CoeBenchmarkRun]) -> Vec<&CoeBenchmarkRun> {
    let mut sorted: Vec<&CoeBenchmarkRun> = runs.iter().collect();
    sorted.sort_by(|a, b| {
        let key = |r: &CoeBenchmarkRun| {
            (
                r.spec.trigger.sequence.unwrap_or(0),
                r.metadata.creation_timestamp.clone(),
                r.name_any(),
            )
        };
        key(b).cmp(&key(a))
    });
    sorted
}

fn phase(run: &CoeBenchmarkRun) -> RunPhase {
    run.status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or(RunPhase::Pending)
}

/// Names of finished runs beyond the history limits, oldest last.
pub fn trim_history(
    runs: &[CoeBenchmarkRun],
    succeeded_limit: i32,
    failed_limit: i32,
) -> Vec<String> {
    let mut kept = (0usize, 0usize);
    let mut delete = Vec::new();
    for run in newest_first(runs) {
        let (count, limit) = match phase(run) {
            RunPhase::Succeeded => (&mut kept.0, succeeded_limit),
            RunPhase::Failed => (&mut kept.1, failed_limit),
            _ => continue,
        };
        if *count < limit.max(0) as usize {
            *count += 1;
        } else {
            delete.push(run.name_any());
        }
    }
    delete
}

/// Fills the run summary fields and the `Running` and `LastRunSucceeded` conditions.
fn summarize(
    status: &mut CoeBenchmarkStatus,
    runs: &[CoeBenchmarkRun],
    set: &mut impl FnMut(&mut CoeBenchmarkStatus, &'static str, Status, &str, &str),
) {
    let sorted = newest_first(runs);
    if let Some(last) = sorted.first() {
        status.last_run = Some(last.name_any());
        status.phase = Some(phase(last));
    }
    let mut active: Vec<String> = sorted
        .iter()
        .filter(|r| !phase(r).is_finished())
        .map(|r| r.name_any())
        .collect();
    active.sort();
    if active.is_empty() {
        set(
            status,
            types::RUNNING,
            Status::False,
            "NoActiveRun",
            "no run is active",
        );
    } else {
        let message = format!("active: {}", active.join(", "));
        set(status, types::RUNNING, Status::True, "RunActive", &message);
    }
    status.active_runs = active;

    if let Some(ok) = sorted.iter().find(|r| phase(r) == RunPhase::Succeeded) {
        let run_status = ok.status.clone().unwrap_or_default();
        status.last_successful_run = Some(ok.name_any());
        status.last_successful_time = run_status.completion_time.clone();
        status.last_result = Some(ResultSummary {
            run: ok.name_any(),
            ttft_p50: run_status.ttft_p50.clone(),
            results_path: run_status.results_path.clone(),
            rows: run_status.rows.clone(),
            rows_omitted: run_status.rows_omitted,
        });
    }
    if let Some(finished) = sorted.iter().find(|r| phase(r).is_finished()) {
        let name = finished.name_any();
        if phase(finished) == RunPhase::Succeeded {
            let message = format!("run {name} succeeded");
            set(
                status,
                types::LAST_RUN_SUCCEEDED,
                Status::True,
                "Succeeded",
                &message,
            );
        } else {
            let failed = finished
                .status
                .as_ref()
                .and_then(|s| crate::conditions::find(&s.conditions, types::FAILED).cloned());
            let reason = failed
                .as_ref()
                .map(|c| c.reason.clone())
                .unwrap_or_else(|| "Failed".into());
            let message = format!(
                "run {name} failed: {}",
                failed.map(|c| c.message).unwrap_or_default()
            );
            set(
                status,
                types::LAST_RUN_SUCCEEDED,
                Status::False,
                &reason,
                &message,
            );
        }
    }
}

#[cfg(test)]
mod tests;
