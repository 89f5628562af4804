//! The run reconciler: a `CoeBenchmarkRun` becomes a plan ConfigMap and a runner Job, and the
//! Job's end becomes the run's status.
//!
//! Steps, each idempotent (a restarted operator repeats them without duplicating anything):
//! 1. validate the plan (`Valid`); an invalid plan fails the run, since its spec is immutable;
//! 2. before the Job exists, check the claims and ConfigMaps it mounts, the CA certificate's
//!    ConfigMap key included ([`dependencies`]); wait for them at most `dependencyTimeout`
//!    (`JobCreated=False` meanwhile), then fail (a missing Secret or key is reported by the
//!    kubelet on the Pod and read in step 4);
//! 3. create the ConfigMap and the Job under deterministic names (AlreadyExists is success);
//! 4. read the Job and its Pods ([`observe`](super::observe)) into phase, conditions and, at the
//!    end, the per-row summary of the runner's report; a stuck run fails and its Job is deleted.
//!
//! A finished run is never touched again.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use coebench_plan::input::validate::{UnknownCatalog, validate_plan};
use coebench_plan::report::{RowReport, row_index_of_key};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::observe::{Limits, Observation, observe};
use super::{
    Context, check_owner, controller_uid, is_conflict, is_not_found, publish_transitions,
    write_status,
};
use crate::conditions::{NewCondition, Status, is_true, set_condition, types};
use crate::crd::{CoeBenchmarkRun, CoeBenchmarkRunStatus, LABEL_RUN, RunPhase};
use crate::error::{Error, Result};
use crate::resources::configmap::build_config_map;
use crate::resources::job::build_job;
use crate::resources::results::{build_results_channel, results_config_map_names};
use crate::resources::workers::build_workers_service;
use crate::resources::{job_name, plan_config_map_name, results_relative_dir};
use crate::status::{Outcome, row_status, ttft_display};
use dependencies::missing_dependency;

mod dependencies;

const CONTROLLER: &str = "run";

/// Reconciles one run.
#[tracing::instrument(skip_all, fields(run = %run.name_any(), namespace = run.namespace().unwrap_or_default()))]
pub async fn reconcile(run: Arc<CoeBenchmarkRun>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let name = run.name_any();
    let namespace = run.namespace().ok_or_else(|| Error::MissingField {
        object: format!("CoeBenchmarkRun {name}"),
        field: "metadata.namespace",
    })?;
    let before = run.status.clone();
    if before
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(RunPhase::is_finished)
    {
        ctx.reconciled(CONTROLLER, &*run);
        return Ok(Action::await_change());
    }
    let mut step = Step {
        status: before.clone().unwrap_or_default(),
        generation: run.metadata.generation,
        now: ctx.now(),
        delete_stuck_job: false,
    };
    step.fill_static(&run, &namespace);
    let action = advance(&run, &namespace, &ctx, &mut step).await?;
    step.set_ready();

    let api: Api<CoeBenchmarkRun> = Api::namespaced(ctx.client.clone(), &namespace);
    let written = write_status(&api, &*run, before.as_ref(), &step.status).await?;
    if step.delete_stuck_job {
        // Only now that the run's failure and its reason are recorded: deleting first would let
        // a reconcile on a stale cache find the Job gone and call it JobDeleted.
        delete_job(&run, &namespace, &ctx).await?;
    }
    if written {
        let old = before.map(|s| s.conditions).unwrap_or_default();
        publish_transitions(&ctx, &*run, &old, &step.status.conditions, CONTROLLER).await;
        if let Some(phase) = step.status.phase.filter(|p| p.is_finished()) {
            let reason = step.final_reason().unwrap_or_default();
            ctx.metrics.run_finished(phase, &reason);
        }
    }
    ctx.reconciled(CONTROLLER, &*run);
    Ok(action)
}

/// Counts the failure and requeues with backoff (see `Context::retry_after`).
pub fn error_policy(run: Arc<CoeBenchmarkRun>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_error(CONTROLLER, error.metric_label());
    ctx.retry_after(CONTROLLER, &*run, error)
}

/// The status being built by one reconcile.
struct Step {
    status: CoeBenchmarkRunStatus,
    generation: Option<i64>,
    now: k8s_openapi::jiff::Timestamp,
    /// The run is stuck: delete its Job once the failure is written.
    delete_stuck_job: bool,
}

impl Step {
    fn set(&mut self, type_: &str, status: Status, reason: &str, message: &str) {
        set_condition(
            &mut self.status.conditions,
            NewCondition {
                type_,
                status,
                reason,
                message,
            },
            self.generation,
            self.now,
        );
    }

    /// Fields that follow from the spec alone.
    fn fill_static(&mut self, run: &CoeBenchmarkRun, namespace: &str) {
        let name = run.name_any();
        let s = &mut self.status;
        s.observed_generation = self.generation;
        s.phase.get_or_insert(RunPhase::Pending);
        s.row_count = Some(run.spec.rows.len() as u32);
        s.job_name = Some(job_name(&name));
        match &run.spec.results {
            Some(results) => {
                let rel = results_relative_dir(
                    Some(results),
                    namespace,
                    run.spec.benchmark.as_deref(),
                    &name,
                );
                s.results_path = Some(format!(
                    "{}:/{rel}/",
                    results.persistent_volume_claim.claim_name
                ));
                s.results_note = None;
            }
            None => {
                s.results_path = None;
                s.results_note = Some(
                    "results are not kept: spec.results is not set, so the runner writes to an emptyDir deleted with its Pod; status.rows keeps each row's headline numbers".into(),
                );
            }
        }
    }

    fn waiting(&mut self, reason: &str, message: &str) {
        self.status.phase = Some(RunPhase::Pending);
        self.set(types::RUNNING, Status::False, reason, message);
    }

    /// Ends the run.
    fn finish(&mut self, outcome: &Outcome, finished_at: Option<Time>) {
        let s = &mut self.status;
        s.phase = Some(if outcome.succeeded {
            RunPhase::Succeeded
        } else {
            RunPhase::Failed
        });
        s.completion_time = Some(finished_at.unwrap_or(Time(self.now)));
        let (type_, message) = if outcome.succeeded {
            (types::COMPLETE, outcome.message.as_str())
        } else {
            (types::FAILED, outcome.message.as_str())
        };
        self.set(type_, Status::True, outcome.reason, message);
        let ran = is_true(&self.status.conditions, types::JOB_CREATED);
        if ran {
            self.set(
                types::RUNNING,
                Status::False,
                "Finished",
                "the runner is no longer running",
            );
        }
    }

    /// `Ready` follows the phase: true once the run succeeded, false while it runs (reason
    /// `InProgress`) and when it failed (the failure's reason).
    fn set_ready(&mut self) {
        match self.status.phase {
            Some(RunPhase::Succeeded) => {
                self.set(types::READY, Status::True, "Succeeded", "the run succeeded")
            }
            Some(RunPhase::Failed) => {
                let reason = self.final_reason().unwrap_or_else(|| "Failed".into());
                self.set(
                    types::READY,
                    Status::False,
                    &reason,
                    "the run failed: see the Failed condition",
                );
            }
            _ => self.set(
                types::READY,
                Status::False,
                "InProgress",
                "the run has not finished",
            ),
        }
    }

    fn final_reason(&self) -> Option<String> {
        [types::COMPLETE, types::FAILED].iter().find_map(|t| {
            crate::conditions::find(&self.status.conditions, t)
                .filter(|c| c.status == "True")
                .map(|c| c.reason.clone())
        })
    }
}

/// Moves a run one step on: checks its plan, creates its Job (once its dependencies exist) or
/// finds it, and follows what the Job and its Pods say.
async fn advance(
    run: &CoeBenchmarkRun,
    namespace: &str,
    ctx: &Context,
    step: &mut Step,
) -> Result<Action> {
    if !check_plan(run, namespace, step) {
        return Ok(Action::await_change());
    }
    match ensure_job(run, namespace, ctx, step).await? {
        ControlFlow::Break(action) => Ok(action),
        ControlFlow::Continue(job) => follow_job(&job, run, namespace, ctx, step).await,
    }
}

/// Sets `Valid` from the run's plan; an invalid plan finishes the run (returns false).
fn check_plan(run: &CoeBenchmarkRun, namespace: &str, step: &mut Step) -> bool {
    let plan = crate::resources::configmap::build_plan(run, namespace);
    let source = format!("CoeBenchmarkRun {namespace}/{}", run.name_any());
    if let Err(errors) = validate_plan(&plan, &source, &UnknownCatalog) {
        let message = join_errors(&errors.0);
        step.set(types::VALID, Status::False, "InvalidPlan", &message);
        let outcome = Outcome {
            succeeded: false,
            reason: "InvalidPlan",
            message: format!("the plan is invalid: {message}"),
        };
        step.finish(&outcome, None);
        return false;
    }
    let rows = run.spec.rows.len();
    step.set(
        types::VALID,
        Status::True,
        "Validated",
        &format!(
            "the plan has {rows} row{}",
            if rows == 1 { "" } else { "s" }
        ),
    );
    true
}

/// The run's Job, or what to do instead: finish the run when its Job vanished or a dependency
/// stayed missing too long, wait for a dependency, or create the Job and its ConfigMap.
async fn ensure_job(
    run: &CoeBenchmarkRun,
    namespace: &str,
    ctx: &Context,
    step: &mut Step,
) -> Result<ControlFlow<Action, Job>> {
    let name = run.name_any();
    let poll = Action::requeue(ctx.settings.poll_interval);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let job_name = job_name(&name);
    let found = jobs
        .get_opt(&job_name)
        .await
        .map_err(Error::kube(format!("read Job {namespace}/{job_name}")))?;
    if let Some(job) = found {
        let run_uid = run.uid().unwrap_or_default();
        if controller_uid(&job) != Some(run_uid.as_str()) {
            // An earlier run of the same name left it; the garbage collector deletes it soon.
            let message = format!(
                "Job {job_name} belongs to an earlier run of the same name; waiting for it to be garbage-collected"
            );
            step.waiting("WaitingForOldJob", &message);
            return Ok(ControlFlow::Break(poll));
        }
        set_job_created(step, &name);
        if step.status.start_time.is_none() {
            step.status.start_time = job.status.as_ref().and_then(|s| s.start_time.clone());
        }
        return Ok(ControlFlow::Continue(job));
    }
    if is_true(&step.status.conditions, types::JOB_CREATED) {
        let outcome = Outcome {
            succeeded: false,
            reason: "JobDeleted",
            message: format!(
                "the Job {job_name} was deleted before the operator saw it finish (by hand, or by ttlSecondsAfterFinished while the operator was down); results on the volume may be incomplete"
            ),
        };
        step.finish(&outcome, None);
        return Ok(ControlFlow::Break(Action::await_change()));
    }
    if let Some((reason, message)) = missing_dependency(run, namespace, ctx).await? {
        let created = run.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let waited = created
            .map(|c| Duration::try_from(step.now.duration_since(c)).unwrap_or_default())
            .unwrap_or_default();
        step.set(types::JOB_CREATED, Status::False, reason, &message);
        if waited > ctx.settings.dependency_timeout {
            let outcome = Outcome {
                succeeded: false,
                reason,
                message: format!(
                    "{message} (waited {} s)",
                    ctx.settings.dependency_timeout.as_secs()
                ),
            };
            step.finish(&outcome, None);
            return Ok(ControlFlow::Break(Action::await_change()));
        }
        step.waiting("WaitingForDependencies", &message);
        return Ok(ControlFlow::Break(poll));
    }
    if let Err(error) = create_children(run, namespace, ctx).await {
        let Some(message) = error.rejection() else {
            return Err(error);
        };
        // Retrying a request the API server refuses on its merits (invalid, forbidden by
        // RBAC, quota or admission) cannot succeed: the run fails with the server's words.
        step.set(types::JOB_CREATED, Status::False, "JobRejected", message);
        let outcome = Outcome {
            succeeded: false,
            reason: "JobRejected",
            message: format!("the API server refused the runner's Job or ConfigMap: {message}"),
        };
        step.finish(&outcome, None);
        return Ok(ControlFlow::Break(Action::await_change()));
    }
    set_job_created(step, &name);
    step.waiting("JobPending", "waiting for the Job to create the runner Pod");
    Ok(ControlFlow::Break(poll))
}

/// `JobCreated` is true: the Job and the plan's ConfigMap exist.
fn set_job_created(step: &mut Step, run_name: &str) {
    step.set(
        types::JOB_CREATED,
        Status::True,
        "JobCreated",
        &format!(
            "created Job {} and ConfigMap {}",
            job_name(run_name),
            plan_config_map_name(run_name)
        ),
    );
}

/// Follows what the Job and its Pods say: waiting, running, stuck (the Job is deleted and the
/// run fails) or finished (the runner's report and exit code go into the status).
async fn follow_job(
    job: &Job,
    run: &CoeBenchmarkRun,
    namespace: &str,
    ctx: &Context,
    step: &mut Step,
) -> Result<Action> {
    let name = run.name_any();
    let poll = Action::requeue(ctx.settings.poll_interval);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    // Only this Job's Pods: an earlier run of the same name may have left Pods with its label.
    let job_uid = job.uid().unwrap_or_default();
    let pods: Vec<Pod> = pods
        .list(&ListParams::default().labels(&format!("{LABEL_RUN}={name}")))
        .await
        .map_err(Error::kube(format!(
            "list the Pods of run {namespace}/{name}"
        )))?
        .items
        .into_iter()
        .filter(|p| controller_uid(p) == Some(job_uid.as_str()))
        .collect();
    let limits = Limits {
        image_pull: ctx.settings.image_pull_timeout,
        container_config: ctx.settings.dependency_timeout,
        unschedulable: ctx.settings.unschedulable_timeout,
        startup: ctx.settings.startup_timeout,
        deadline_grace: ctx.settings.poll_interval * 6,
    };
    match observe(job, &pods, step.now, &limits) {
        Observation::Waiting { reason, message } => {
            step.waiting(reason, &message);
            Ok(poll)
        }
        Observation::Running { started } => {
            let published = published_rows(run, namespace, ctx).await?;
            show_published(step, &published, run.spec.rows.len());
            step.status.phase = Some(RunPhase::Running);
            if step.status.start_time.is_none() {
                step.status.start_time = started;
            }
            step.set(
                types::RUNNING,
                Status::True,
                "Started",
                "the runner is running",
            );
            Ok(poll)
        }
        Observation::Stuck { reason, message } => {
            tracing::info!(%reason, "run is stuck; its Job is deleted once the failure is written");
            step.delete_stuck_job = true;
            let outcome = Outcome {
                succeeded: false,
                reason,
                message,
            };
            step.finish(&outcome, None);
            Ok(Action::await_change())
        }
        Observation::Finished {
            outcome,
            report,
            exit_code,
            finished_at,
        } => {
            step.status.exit_code = exit_code;
            // Every row the runner published; the termination report (cut to 4 KiB) only when
            // it has more (a runner that could not reach the API).
            let published = published_rows(run, namespace, ctx).await?;
            let planned = run.spec.rows.len();
            match &report {
                Some(report) if report.rows.len() > published.len() => {
                    step.status.rows = report.rows.iter().map(row_status).collect();
                    step.status.rows_omitted =
                        (report.rows_omitted > 0).then_some(report.rows_omitted);
                    step.status.ttft_p50 = ttft_display(&step.status.rows);
                    let finished = report.rows.iter().filter(|r| r.completed + r.errors > 0);
                    let finished = finished.count() + report.rows_omitted as usize;
                    step.status.rows_finished = Some(finished as u32);
                    step.status.progress = Some(format!("{finished}/{planned}"));
                }
                _ => show_published(step, &published, planned),
            }
            step.finish(&outcome, finished_at);
            results_written(step, run, report.is_some());
            Ok(Action::await_change())
        }
    }
}

/// Deletes the run's Job (and, through it, its Pod).
async fn delete_job(run: &CoeBenchmarkRun, namespace: &str, ctx: &Context) -> Result<()> {
    let job_name = job_name(&run.name_any());
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    match jobs.delete(&job_name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::kube(format!("delete Job {namespace}/{job_name}"))(e)),
    }
}

/// Sets `ResultsWritten` once the run has ended.
fn results_written(step: &mut Step, run: &CoeBenchmarkRun, reported: bool) {
    let succeeded = step.status.phase == Some(RunPhase::Succeeded);
    let (status, reason, message) = match (&run.spec.results, reported, succeeded) {
        (None, _, _) => (
            Status::False,
            "ResultsNotKept",
            "spec.results is not set: the files were written to an emptyDir and deleted with the Pod".to_string(),
        ),
        (Some(_), true, _) | (Some(_), false, true) => (
            Status::True,
            "ResultsOnVolume",
            format!(
                "the run's files are in {}",
                step.status.results_path.clone().unwrap_or_default()
            ),
        ),
        (Some(_), false, false) => (
            Status::Unknown,
            "ReportMissing",
            "the runner left no report, so whether it wrote files is unknown; check the volume and `kubectl logs`".to_string(),
        ),
    };
    step.set(types::RESULTS_WRITTEN, status, reason, &message);
}

/// Creates the plan ConfigMap, the results channel (ConfigMaps, ServiceAccount, Role,
/// RoleBinding), a multi-worker run's headless Service, and then the Job; an existing object of the same deterministic name is kept
/// when it is this run's.
async fn create_children(run: &CoeBenchmarkRun, namespace: &str, ctx: &Context) -> Result<()> {
    let run_uid = run.uid().unwrap_or_default();
    let client = &ctx.client;
    create_owned(client, namespace, &build_config_map(run)?, &run_uid).await?;
    let channel = build_results_channel(run, &ctx.settings.job)?;
    for config_map in &channel.config_maps {
        create_owned(client, namespace, config_map, &run_uid).await?;
    }
    if let Some(account) = &channel.service_account {
        create_owned(client, namespace, account, &run_uid).await?;
    }
    create_owned(client, namespace, &channel.role, &run_uid).await?;
    create_owned(client, namespace, &channel.role_binding, &run_uid).await?;
    if let Some(service) = build_workers_service(run)? {
        create_owned(client, namespace, &service, &run_uid).await?;
    }
    let job = build_job(run, &ctx.settings.job)?;
    if create_owned(client, namespace, &job, &run_uid).await? {
        tracing::info!(job = %job.name_any(), "created the runner Job");
    }
    Ok(())
}

/// Creates `object`; true when it was created. On AlreadyExists the existing object must be
/// owned by the run (ours from an earlier attempt); an earlier run's of the same name is never
/// adopted ([`check_owner`]).
async fn create_owned<K>(
    client: &kube::Client,
    namespace: &str,
    object: &K,
    run_uid: &str,
) -> Result<bool>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.name_any();
    let what = || format!("{} {namespace}/{name}", K::kind(&()));
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(true),
        Err(e) if is_conflict(&e) => {
            if let Some(existing) = api
                .get_opt(&name)
                .await
                .map_err(Error::kube(format!("read {}", what())))?
            {
                check_owner(&existing, run_uid)?;
            }
            Ok(false)
        }
        Err(e) => Err(Error::kube(format!("create {}", what()))(e)),
    }
}

/// The rows the runner has published so far (row index and numbers), in plan order, from the
/// run's results ConfigMaps; ConfigMaps that are missing or not the run's are skipped, and so
/// are entries that do not parse (logged).
async fn published_rows(
    run: &CoeBenchmarkRun,
    namespace: &str,
    ctx: &Context,
) -> Result<Vec<(usize, RowReport)>> {
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let run_uid = run.uid().unwrap_or_default();
    let mut rows = Vec::new();
    for name in results_config_map_names(run) {
        let found = config_maps
            .get_opt(&name)
            .await
            .map_err(Error::kube(format!("read ConfigMap {namespace}/{name}")))?;
        let Some(found) = found.filter(|cm| controller_uid(cm) == Some(run_uid.as_str())) else {
            continue;
        };
        for (key, value) in found.data.unwrap_or_default() {
            let Some(index) = row_index_of_key(&key) else {
                continue;
            };
            match serde_json::from_str::<RowReport>(&value) {
                Ok(row) => rows.push((index, row)),
                Err(e) => {
                    tracing::warn!(config_map = %name, %key, "ignoring a results entry that is not a row report: {e}")
                }
            }
        }
    }
    rows.sort_by_key(|(index, _)| *index);
    rows.dedup_by_key(|(index, _)| *index);
    Ok(rows)
}

/// Puts the published rows into the status: rows, progress and the TTFT column.
fn show_published(step: &mut Step, rows: &[(usize, RowReport)], planned: usize) {
    step.status.rows = rows.iter().map(|(_, row)| row_status(row)).collect();
    step.status.rows_omitted = None;
    step.status.rows_finished = Some(rows.len() as u32);
    step.status.progress = Some(format!("{}/{planned}", rows.len()));
    step.status.ttft_p50 = ttft_display(&step.status.rows);
}

/// Every problem, joined; at most 10, then how many more.
pub(crate) fn join_errors(errors: &[coebench_plan::input::InputError]) -> String {
    let mut parts: Vec<String> = errors.iter().take(10).map(|e| e.to_string()).collect();
    if errors.len() > 10 {
        parts.push(format!("and {} more", errors.len() - 10));
    }
    parts.join("; ")
}
