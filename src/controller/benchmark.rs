//! The benchmark reconciler: resolves a `CoeBenchmark`'s rows, checks its schedule, creates the
//! runs it asks for, trims finished runs to the history limits, and summarizes its runs in its
//! status.
//!
//! A run is asked for once when a benchmark without a schedule is created (`Initial`), once per
//! new value of the `coebench.dev/run-now` annotation (`RunNow`), and once per slot of its
//! schedule (`Schedule`, see `scheduling.rs`). The `n`-th run is named `<benchmark>-<n>`, with `n`
//! counted in `status.runCount`, and a scheduled run `<benchmark>-<slot in unix minutes>`: a run
//! that already exists under the name it would get (an operator restarted between creating it
//! and recording it) is adopted, never duplicated. Runs, and through them their Jobs and
//! ConfigMaps, are owned by the benchmark, so deleting it deletes them; files on the results
//! volume are never touched.

mod history;
mod regression;
mod rows;
mod scheduling;

use std::sync::Arc;
use std::time::Duration;

use coebench_plan::Row;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use super::{
    Context, check_owner, controller_uid, is_conflict, is_not_found, publish, publish_transitions,
    write_status,
};
use crate::conditions::{NewCondition, Status, remove_condition, set_condition, types};
use crate::crd::{
    ANNOTATION_RUN_NOW, CoeBenchmark, CoeBenchmarkRun, CoeBenchmarkRunSpec, CoeBenchmarkStatus,
    LABEL_BENCHMARK, LABEL_MANAGED_BY, MANAGED_BY, RunTrigger, TriggerKind,
};
use crate::error::{Error, Result};
use crate::resources::run_name;
use crate::schedule::{Schedule, ScheduleError};

pub use history::trim_history;
pub use rows::Invalid;

const CONTROLLER: &str = "benchmark";

/// How often a benchmark is looked at again besides watch events (and its schedule's slots).
const RESYNC: Duration = Duration::from_secs(600);

/// Reconciles one benchmark, in phases: list its runs, validate its rows and schedule, carry out
/// the schedule, start a run asked for by run-now (or the initial run), trim the history, and
/// write the status that summarizes it all.
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
    let now = ctx.now();
    let conditions = ConditionWriter {
        generation: bench.metadata.generation,
        now,
    };
    status.observed_generation = bench.metadata.generation;

    let runs_api: Api<CoeBenchmarkRun> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut runs = owned_runs(&runs_api, &namespace, &name, &uid).await?;
    // The counter never lags behind the runs that exist (a replica may have stopped between
    // creating one and recording it).
    let highest = runs.iter().filter_map(|r| r.spec.trigger.sequence).max();
    status.run_count = status.run_count.max(highest);

    let resolved = rows::resolve_rows(&bench, &namespace, &ctx).await?;
    let schedule = bench
        .spec
        .schedule
        .as_deref()
        .map(|expression| Schedule::parse(expression, bench.spec.time_zone.as_deref()));
    status.row_count = resolved.as_ref().ok().map(|rows| rows.len() as u32);
    let usable = validate(&resolved, schedule.as_ref(), &mut status, &conditions);

    let mut requeue = match &resolved {
        Err(_) if bench.spec.rows_from.is_some() => ctx.settings.invalid_retry,
        _ => RESYNC,
    };
    let scheduled = match (&schedule, usable) {
        (None, _) => {
            remove_condition(&mut status.conditions, types::SCHEDULED);
            status.next_schedule_time = None;
            None
        }
        (Some(Ok(schedule)), Some(rows)) => {
            let scheduled =
                scheduling::step(&bench, schedule, rows, &mut runs, &mut status, &ctx, now).await?;
            conditions.set(
                &mut status,
                types::SCHEDULED,
                scheduled.status,
                scheduled.reason,
                &scheduled.message,
            );
            scheduled.requeue
        }
        (Some(_), _) => {
            status.next_schedule_time = None;
            let reason = crate::conditions::find(&status.conditions, types::VALID)
                .map(|c| c.reason.clone())
                .unwrap_or_default();
            conditions.set(
                &mut status,
                types::SCHEDULED,
                Status::False,
                &reason,
                "no run is scheduled while the benchmark is not valid: see the Valid condition",
            );
            None
        }
    };
    if let Some(at) = scheduled {
        requeue = requeue.min(at);
    }

    if let Some(rows) = usable {
        start_pending_run(&bench, rows, &runs_api, &mut runs, &mut status, &ctx).await?;
    }
    // Runs deleted for the history limits are still summarized this once: with a limit of 0
    // a run is deleted as soon as it finishes, and its result must reach the status first.
    // Before `summarize` replaces `lastResult` (the baseline of the runs newer than it), and
    // before the history limits delete a run it writes a verdict to.
    regression::step(&bench, &runs, &mut status, &ctx, &conditions).await?;
    apply_history_limits(&bench, &runs_api, &runs, &ctx).await?;
    history::summarize(&mut status, &runs, &mut |st, ty, s, r, m| {
        conditions.set(st, ty, s, r, m)
    });
    set_ready(&mut status, &conditions);

    let api: Api<CoeBenchmark> = Api::namespaced(ctx.client.clone(), &namespace);
    if write_status(&api, &*bench, before.as_ref(), &status).await? {
        let old = before.map(|s| s.conditions).unwrap_or_default();
        publish_transitions(&ctx, &*bench, &old, &status.conditions, CONTROLLER).await;
    }
    ctx.reconciled(CONTROLLER, &*bench);
    Ok(Action::requeue(requeue))
}

/// `Ready`: true while the benchmark is valid and its last finished run did not fail; false
/// with the `Valid` reason when it is not valid, `LastRunFailed` when its last run failed.
fn set_ready(status: &mut CoeBenchmarkStatus, conditions: &ConditionWriter) {
    let find = |type_| crate::conditions::find(&status.conditions, type_).cloned();
    let (s, reason, message) = match (find(types::VALID), find(types::LAST_RUN_SUCCEEDED)) {
        (Some(valid), _) if valid.status != "True" => (
            Status::False,
            valid.reason,
            "the benchmark is not valid: see the Valid condition".to_string(),
        ),
        (_, Some(last)) if last.status == "False" => (
            Status::False,
            "LastRunFailed".to_string(),
            format!("the last run failed: {}", last.message),
        ),
        _ => (
            Status::True,
            "Ready".to_string(),
            "the benchmark is valid and its last finished run did not fail".to_string(),
        ),
    };
    conditions.set(status, types::READY, s, &reason, &message);
}

/// Sets the benchmark's conditions as of one reconcile (its generation, its instant).
struct ConditionWriter {
    generation: Option<i64>,
    now: Timestamp,
}

impl ConditionWriter {
    fn set(
        &self,
        status: &mut CoeBenchmarkStatus,
        type_: &'static str,
        s: Status,
        reason: &str,
        message: &str,
    ) {
        set_condition(
            &mut status.conditions,
            NewCondition {
                type_,
                status: s,
                reason,
                message,
            },
            self.generation,
            self.now,
        );
    }
}

/// The runs labelled with the benchmark's name that it owns (by UID: a run left by an earlier
/// benchmark of the same name is not this one's).
async fn owned_runs(
    runs_api: &Api<CoeBenchmarkRun>,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<Vec<CoeBenchmarkRun>> {
    Ok(runs_api
        .list(&ListParams::default().labels(&format!("{LABEL_BENCHMARK}={name}")))
        .await
        .map_err(Error::kube(format!(
            "list the runs of benchmark {namespace}/{name}"
        )))?
        .items
        .into_iter()
        .filter(|r| r.owner_references().iter().any(|o| o.uid == uid))
        .collect())
}

/// Sets the `Valid` condition from the resolved rows and the parsed schedule; returns the rows
/// when runs may be started from them.
fn validate<'a>(
    resolved: &'a std::result::Result<Vec<Row>, Invalid>,
    schedule: Option<&std::result::Result<Schedule, ScheduleError>>,
    status: &mut CoeBenchmarkStatus,
    conditions: &ConditionWriter,
) -> Option<&'a Vec<Row>> {
    match (resolved, schedule) {
        (Ok(rows), None | Some(Ok(_))) => {
            let message = format!(
                "{} row{} to run",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            );
            conditions.set(status, types::VALID, Status::True, "Validated", &message);
            Some(rows)
        }
        (rows, Some(Err(e))) => {
            let mut message = e.to_string();
            if let Err(invalid) = rows {
                message = format!("{message}; also: {}", invalid.message);
            }
            conditions.set(status, types::VALID, Status::False, e.reason(), &message);
            None
        }
        (Err(invalid), _) => {
            conditions.set(
                status,
                types::VALID,
                Status::False,
                invalid.reason,
                &invalid.message,
            );
            None
        }
    }
}

/// Creates (or adopts) the run asked for by a new run-now value, or the initial run, and
/// records it in the status.
async fn start_pending_run(
    bench: &Arc<CoeBenchmark>,
    rows: &[Row],
    runs_api: &Api<CoeBenchmarkRun>,
    runs: &mut Vec<CoeBenchmarkRun>,
    status: &mut CoeBenchmarkStatus,
    ctx: &Context,
) -> Result<()> {
    let Some(trigger) = pending_trigger(bench, status) else {
        return Ok(());
    };
    // The status comes from the cache and may predate the runs listed just now: a run already
    // created for this run-now value (a moment ago by this reconciler, or by another replica)
    // has handled it, whatever the cached status says.
    if trigger.kind == TriggerKind::RunNow
        && runs.iter().any(|r| {
            r.spec.trigger.kind == TriggerKind::RunNow && r.spec.trigger.value == trigger.value
        })
    {
        status.handled_run_now = trigger.value;
        return Ok(());
    }
    let n = status.run_count.unwrap_or(0) + 1;
    let run_name = run_name(&bench.name_any(), n);
    if !runs.iter().any(|r| r.name_any() == run_name) {
        let run = build_run(bench, rows.to_vec(), trigger.clone(), n, ctx)?;
        if let Some(created) = create_or_adopt(runs_api, &run).await? {
            tracing::info!(run = %run_name, trigger = ?trigger.kind, "created a run");
            publish(
                ctx,
                &**bench,
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
    if let Some(value) = run_now_annotation(bench) {
        status.handled_run_now = Some(value);
    }
    Ok(())
}

/// Deletes finished runs beyond the benchmark's history limits, with an Event naming them.
async fn apply_history_limits(
    bench: &Arc<CoeBenchmark>,
    runs_api: &Api<CoeBenchmarkRun>,
    runs: &[CoeBenchmarkRun],
    ctx: &Context,
) -> Result<()> {
    let trimmed = trim_history(
        runs,
        bench.spec.successful_runs_history_limit,
        bench.spec.failed_runs_history_limit,
    );
    for run_name in &trimmed {
        match runs_api.delete(run_name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                let namespace = bench.namespace().unwrap_or_default();
                return Err(Error::kube(format!("delete run {namespace}/{run_name}"))(e));
            }
        }
    }
    if !trimmed.is_empty() {
        publish(
            ctx,
            &**bench,
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
    Ok(())
}

/// Counts the failure and requeues with backoff (see `Context::retry_after`).
pub fn error_policy(bench: Arc<CoeBenchmark>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_error(CONTROLLER, error.metric_label());
    ctx.retry_after(CONTROLLER, &*bench, error)
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
            workers: bench.spec.workers,
        },
        status: None,
    })
}

/// Creates `run`; when its name exists already (created by a replica that stopped before
/// recording it), reads and returns that run instead.
async fn create_or_adopt(
    api: &Api<CoeBenchmarkRun>,
    run: &CoeBenchmarkRun,
) -> Result<Option<CoeBenchmarkRun>> {
    let name = run.name_any();
    let namespace = run.namespace().unwrap_or_default();
    match api.create(&PostParams::default(), run).await {
        Ok(created) => Ok(Some(created)),
        Err(e) if is_conflict(&e) => {
            let existing = api
                .get_opt(&name)
                .await
                .map_err(Error::kube(format!("read run {namespace}/{name}")))?;
            if let (Some(existing), Some(owner)) = (&existing, controller_uid(run)) {
                check_owner(existing, owner)?;
            }
            Ok(existing)
        }
        Err(e) => Err(Error::kube(format!("create run {namespace}/{name}"))(e)),
    }
}

#[cfg(test)]
mod tests;
