//! Running a whole plan: set up the endpoint, client, tokenizers and output folders, run the rows
//! in order, write each row's files as it finishes, keep the consolidated table and manifest
//! current, and decide how the run ended.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::analysis::report::{REPORT_FILE, write_report};
use crate::analysis::run_folder::read_run_folder;
use crate::client::{ClientError, ClientOptions, EndpointClient};
use crate::engine::endpoint::{EndpointError, ReadyEndpoint, prepare_endpoint};
use crate::engine::load::{StopSignal, saturating_duration};
use crate::engine::observer::{RunObserver, RunStarted};
use crate::engine::preflight::{check_output_folders, output_folders, read_datasets};
use crate::engine::row::{RowSetupError, RunShared, run_row};
use crate::engine::template_probe::TemplateOverheads;
use crate::output::OutputError;
use crate::output::consolidated::{ConsolidatedPaths, ConsolidatedTable};
use crate::output::manifest::{ManifestExit, ManifestWorkers, RunManifest, write_manifest};
use crate::output::mixed_switching::write_mixed_switching;
use crate::output::naming::{self, default_run_name};
use crate::output::row_files::{run_dir, write_row_files};
use crate::statistics::mixed_switching::{TimedRow, attribute};
use crate::statistics::record_digest::RecordDigest;
use crate::statistics::summary::{RowOutcome, RowResult, RowSummary};
use crate::workload::image::ImageSet;
use crate::workload::tokenizers::hub::HubSettings;
use crate::workload::tokenizers::{ModelTokenizers, TokenizerSetupError};
use coebench_plan::input::InputErrors;
use coebench_plan::input::validate::validate_plan;
use coebench_plan::report::{RowReport, RunOutcome, RunReport};
use coebench_plan::{ApiKind, Plan, Row};

/// Default folder of per-row files when the plan names none.
pub const DEFAULT_OUTPUT_FILES_DIR: &str = "coebench-results/output_files";
/// Default folder of consolidated tables when the plan names none.
pub const DEFAULT_CONSOLIDATED_RESULTS_DIR: &str = "coebench-results/consolidated_results";

/// Where the plan came from, for messages and the manifest.
#[derive(Debug, Clone, Default)]
pub struct PlanSource {
    /// The file (or `command line`) the plan was read from.
    pub description: String,
    /// A native plan file.
    pub plan_path: Option<String>,
    /// A kit `config.yaml`.
    pub config_path: Option<String>,
    /// The kit's model-configs CSV.
    pub model_configs_path: Option<String>,
}

/// Reads an environment variable: `None` when it is unset.
pub type EnvReader = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Settings of a run that are not part of the plan.
pub struct RunSettings {
    /// Where the plan came from.
    pub source: PlanSource,
    /// Reads an environment variable (credentials are read through it only).
    pub env: EnvReader,
    /// Ground-truth log of an in-process simulator.
    pub simulator_truth_log: Option<PathBuf>,
    /// Client options.
    pub client: ClientOptions,
    /// Runs each row over several worker processes instead of this one alone (a distributed
    /// run's coordinator); `None`: one process.
    pub distribution: Option<Arc<dyn RowDistribution>>,
}

/// The future of [`RowDistribution::welcome`].
pub type WelcomeFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// The future of a row run by a [`RowDistribution`].
pub type RowFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<RowResult, RowSetupError>> + Send + 'a>,
>;

/// A row spread over several worker processes: what a distributed run's coordinator does in
/// place of [`run_row`]. It finishes each row through the same [`RowExecution::finish`] and the
/// run writes its files as for any row.
///
/// [`RowExecution::finish`]: crate::statistics::summary::RowExecution::finish
pub trait RowDistribution: Send + Sync {
    /// The prompt nonce every worker was given (prompts and request ids must be the ones one
    /// process would send).
    fn prompt_nonce(&self) -> u64;
    /// Runs row `row_index` on every worker, this process's share included, and merges it.
    fn run_row<'a>(
        &'a self,
        shared: &'a Arc<RunShared>,
        row_index: usize,
        row: &'a Row,
    ) -> RowFuture<'a>;
    /// Where an in-process simulator listens so every worker reaches it: the loopback when
    /// the workers share this host, every interface when they are Pods of their own.
    fn simulator_listen(&self) -> IpAddr;
    /// Hands every worker the run once the endpoint is ready and the plan valid:
    /// `simulator` is the in-process simulator's URL (as this process reaches it), for the
    /// workers to send to in place of a simulator of their own.
    fn welcome<'a>(&'a self, plan: &'a Plan, simulator: Option<&'a str>) -> WelcomeFuture<'a>;
    /// Why a worker was lost, once one was: the run then ends with [`RunOutcome::WorkerLost`].
    fn worker_lost(&self) -> Option<String>;
    /// The workers' clock offsets, round trips and per-row health, for `run.json`.
    fn manifest(&self) -> ManifestWorkers;
}

/// A run that could not start. Nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The plan is invalid.
    #[error("{0}")]
    InvalidInput(#[from] InputErrors),
    /// The endpoint could not be set up.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A tokenizer the plan names could not be loaded.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerSetupError),
    /// An output folder could not be created or written.
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// How a run went.
#[derive(Debug)]
pub struct RunResult {
    /// Name of the run.
    pub run_name: String,
    /// How it ended.
    pub outcome: RunOutcome,
    /// A message for runs that did not succeed.
    pub message: Option<String>,
    /// Folder of the per-row files and `run.json`.
    pub run_dir: PathBuf,
    /// The consolidated table's files, once at least one row finished.
    pub consolidated: Option<ConsolidatedPaths>,
    /// One summary per plan row, in plan order (rows that did not run included).
    pub rows: Vec<RowSummary>,
}

impl RunResult {
    /// The process exit code for this outcome (documented in `coebench --help`).
    pub fn exit_code(&self) -> u8 {
        exit_code(self.outcome)
    }

    /// The compact report for the operator.
    pub fn report(&self) -> RunReport {
        RunReport {
            version: 1,
            run_name: self.run_name.clone(),
            outcome: self.outcome,
            results_path: Some(self.run_dir.display().to_string()),
            rows: self
                .rows
                .iter()
                .map(RowSummary::row_report)
                .collect::<Vec<RowReport>>(),
            rows_omitted: 0,
            message: self.message.clone(),
        }
    }
}

/// The exit code of each outcome: 0 succeeded, 1 failed, 2 invalid input, 3 authentication
/// failed, 4 every request failed, 5 interrupted, 6 some rows had every request fail, 8 a worker
/// of a multi-worker run was lost (7 is `coebench compare`'s regression).
pub fn exit_code(outcome: RunOutcome) -> u8 {
    match outcome {
        RunOutcome::Succeeded => 0,
        RunOutcome::Failed => 1,
        RunOutcome::InvalidInput => 2,
        RunOutcome::AuthenticationFailed => 3,
        RunOutcome::AllRequestsFailed => 4,
        RunOutcome::Interrupted => 5,
        RunOutcome::RowsFailed => 6,
        RunOutcome::WorkerLost => 8,
    }
}

/// Runs `plan` to the end, or until `stop` is signalled: makes the endpoint, the client and
/// the folders ready, runs the rows in order with their files written as each finishes, and
/// writes the outcome.
pub async fn run_plan(
    plan: Plan,
    settings: RunSettings,
    observer: Arc<dyn RunObserver>,
    stop: Arc<StopSignal>,
) -> Result<RunResult, RunError> {
    let simulator_listen = settings
        .distribution
        .as_ref()
        .map_or(IpAddr::from([127, 0, 0, 1]), |d| d.simulator_listen());
    let ready: ReadyEndpoint = prepare_endpoint(
        &plan.endpoint,
        &*settings.env,
        settings.simulator_truth_log.as_deref(),
        simulator_listen,
    )
    .await?;
    validate_plan(&plan, &settings.source.description, ready.catalog())?;
    let models: Vec<String> = plan.rows.iter().map(|r| r.model.clone()).collect();
    let tokenizers = ModelTokenizers::resolve(
        &models,
        &plan.options,
        plan.endpoint.api == ApiKind::Simulator,
        &HubSettings::from_env(&*settings.env),
    )
    .await?;
    let datasets = read_datasets(&plan)?;
    let client = EndpointClient::new(ready.resolved().clone(), settings.client.clone())?;
    let started_wall = jiff::Timestamp::now();
    let run_name = plan
        .output
        .run_name
        .clone()
        .unwrap_or_else(|| default_run_name(started_wall));
    let folder_problems = check_output_folders(&plan, &settings.source.description);
    if !folder_problems.is_empty() {
        return Err(RunError::InvalidInput(InputErrors(folder_problems)));
    }
    let (output_files_dir, consolidated_dir) = output_folders(&plan);
    let run_dir = run_dir(&output_files_dir, &run_name);
    create_dir(&run_dir)?;
    create_dir(&consolidated_dir)?;
    let mut manifest = RunManifest::new(&run_name, started_wall, &plan.endpoint);
    manifest.set_plan(&plan);
    manifest.inputs.plan_path = settings.source.plan_path.clone();
    manifest.inputs.config_path = settings.source.config_path.clone();
    manifest.inputs.model_configs_path = settings.source.model_configs_path.clone();
    write_manifest(&run_dir, &manifest)?;

    observer.run_started(&RunStarted {
        run_name: run_name.clone(),
        rows: plan.rows.len(),
        endpoint: ready.describe(),
        run_dir: run_dir.clone(),
    });
    let shared = Arc::new(RunShared {
        client,
        tokenizers,
        datasets,
        images: ImageSet::new(),
        options: plan.options.clone(),
        run_name: run_name.clone(),
        run_dir: run_dir.clone(),
        observer: Arc::clone(&observer),
        stop: Arc::clone(&stop),
        auth_failure: Arc::new(OnceLock::new()),
        template_overheads: TemplateOverheads::default(),
        prompt_nonce: settings.distribution.as_ref().map_or_else(
            || uuid::Uuid::new_v4().as_u64_pair().0,
            |d| d.prompt_nonce(),
        ),
        write_failure: Arc::new(OnceLock::new()),
        row_starts: std::sync::Mutex::new(std::collections::HashMap::new()),
        worker_index: settings.distribution.as_ref().map(|_| 0),
    });
    let mut files = RunFiles {
        table: ConsolidatedTable::new(&run_name)
            .named(plan.output.consolidated_file_names.unwrap_or_default())
            .with_metadata(plan.options.metadata.clone()),
        manifest,
        consolidated: None,
        summaries: Vec::with_capacity(plan.rows.len()),
        write_failure: None,
        run_dir: run_dir.clone(),
        consolidated_dir,
    };
    if let Some(distribution) = &settings.distribution {
        distribution
            .welcome(&plan, ready.hosted_simulator_url())
            .await;
    }
    let width = plan.options.parallel_rows.max(1) as usize;
    if width > 1 {
        run_rows_in_parallel(&plan, &shared, &mut files, width).await;
    } else {
        for (row_index, row) in plan.rows.iter().enumerate() {
            let delay = plan.options.time_delay_seconds;
            if row_index > 0 && delay > 0.0 && !stop.is_stopped() {
                tokio::select! {
                    () = tokio::time::sleep(saturating_duration(delay)) => {}
                    () = stop.stopped() => {}
                }
            }
            if stop.is_stopped() || files.write_failure.is_some() {
                // Interrupted, the credentials were rejected, or a write failed: the row keeps
                // its line in the table and the manifest, as not run.
                files.add(not_run(row_index, row, &run_name));
                continue;
            }
            let result = match &settings.distribution {
                Some(distribution) => distribution.run_row(&shared, row_index, row).await,
                None => run_row(&shared, row_index, row).await,
            };
            files.finish_row(row_index, row, result, &shared);
            if let Some(distribution) = &settings.distribution {
                files.manifest.workers = Some(distribution.manifest());
            }
            files.write_table_and_manifest();
        }
    }
    if stop.is_stopped() || files.write_failure.is_some() {
        // Rows skipped after the stop are in the table as not run: write it once more. After
        // a failed write this may fail too; the last table written stays whole.
        match files.table.write(&files.consolidated_dir) {
            Ok(paths) => files.consolidated = Some(paths),
            Err(e) => {
                files.write_failure.get_or_insert(e.to_string());
            }
        }
    }
    let worker_lost = settings.distribution.as_ref().and_then(|d| d.worker_lost());
    if let Some(distribution) = &settings.distribution {
        files.manifest.workers = Some(distribution.manifest());
    }
    let (outcome, message) = match worker_lost {
        Some(lost) if shared.auth_failure.get().is_none() => (
            RunOutcome::WorkerLost,
            Some(format!(
                "{lost}; what the workers measured before was written"
            )),
        ),
        _ => decide_outcome(
            &files.summaries,
            shared.auth_failure.get(),
            stop.is_stopped(),
            files.write_failure.as_deref(),
        ),
    };
    files.manifest.finish(
        jiff::Timestamp::now(),
        ManifestExit {
            outcome,
            code: i32::from(exit_code(outcome)),
            message: message.clone(),
            failed_rows: all_failed_rows(&files.summaries),
        },
    );
    if let Err(e) = write_manifest(&run_dir, &files.manifest) {
        // The last run.json written stays whole (writes are atomic).
        tracing::error!("cannot write run.json: {e}");
    }
    write_html_report(&run_dir);
    ready.shutdown().await;
    Ok(RunResult {
        run_name,
        outcome,
        message,
        run_dir,
        consolidated: files.consolidated,
        rows: files.summaries,
    })
}

/// The summary of a row that did not run.
fn not_run(row_index: usize, row: &Row, run_name: &str) -> RowSummary {
    let names = naming::row_names(row_index, row);
    RowSummary::not_run(row_index, row, run_name, names, jiff::Timestamp::now())
}

/// Runs the rows `width` at a time (`options.parallelRows`, the kit's `concurrency_enabled` and
/// `max_workers`): rows start in plan order as slots free up, so up to `width` models take
/// traffic at once, each with its own load; a slot waits `timeDelaySeconds` before its next
/// row, as the kit's workers do. Each row's files are written as it finishes.
async fn run_rows_in_parallel(
    plan: &Plan,
    shared: &Arc<RunShared>,
    files: &mut RunFiles,
    width: usize,
) {
    let mut running = tokio::task::JoinSet::new();
    let mut by_task = std::collections::HashMap::new();
    let mut ran: Vec<(usize, String, Vec<RecordDigest>)> = Vec::new();
    let mut next = 0usize;
    loop {
        while running.len() < width && next < plan.rows.len() {
            let row_index = next;
            next += 1;
            let row = plan.rows[row_index].clone();
            if shared.stop.is_stopped() || files.write_failure.is_some() {
                files.add(not_run(row_index, &row, &shared.run_name));
                continue;
            }
            let delay = if row_index >= width {
                plan.options.time_delay_seconds
            } else {
                0.0
            };
            let task_shared = Arc::clone(shared);
            let task_row = row.clone();
            let handle = running.spawn(async move {
                if delay > 0.0 {
                    tokio::select! {
                        () = tokio::time::sleep(saturating_duration(delay)) => {}
                        () = task_shared.stop.stopped() => {}
                    }
                }
                if task_shared.stop.is_stopped() {
                    return None;
                }
                Some(run_row(&task_shared, row_index, &task_row).await)
            });
            by_task.insert(handle.id(), (row_index, row));
        }
        let Some(joined) = running.join_next_with_id().await else {
            break;
        };
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let Some((row_index, row)) = by_task.remove(&id) else {
            continue;
        };
        match joined {
            Ok((_, Some(result))) => {
                if let Ok(ran_row) = &result {
                    ran.push((row_index, row.model.clone(), ran_row.digests.clone()));
                }
                files.finish_row(row_index, &row, result, shared);
            }
            Ok((_, None)) => files.add(not_run(row_index, &row, &shared.run_name)),
            Err(e) => {
                tracing::error!(row = row_index, model = %row.model, "row stopped: {e}");
                let summary = not_run(row_index, &row, &shared.run_name);
                shared.observer.row_finished(&summary, None);
                files.add(summary);
            }
        }
        files.write_table_and_manifest();
    }
    // Finished in any order; reports list rows in plan order.
    files.summaries.sort_by_key(|s| s.row_index);
    write_mixed_switching_file(shared, files, &ran);
}

/// Attributes switches per request over the rows that ran at once, and writes the attribution
/// beside `run.json` (a failure is logged: every row's own files are already written).
fn write_mixed_switching_file(
    shared: &RunShared,
    files: &RunFiles,
    ran: &[(usize, String, Vec<RecordDigest>)],
) {
    let starts = shared
        .row_starts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let Some(origin) = starts.values().min().copied() else {
        return;
    };
    let rows: Vec<TimedRow> = ran
        .iter()
        .filter_map(|(row_index, model, digests)| {
            Some(TimedRow {
                row_index: *row_index,
                model,
                started_s: starts.get(row_index)?.duration_since(origin).as_secs_f64(),
                digests,
            })
        })
        .collect();
    let attribution = attribute(&rows);
    match write_mixed_switching(&files.run_dir, &attribution) {
        Ok(path) => tracing::info!(
            switches = attribution.switches.len(),
            "per-request switching under mixed traffic: {}",
            path.display()
        ),
        Err(e) => tracing::error!("cannot write the mixed-traffic switching: {e}"),
    }
}

/// Writes the run's HTML report beside its files, read back from them; a failure is logged,
/// never fatal (every result is already written).
fn write_html_report(run_dir: &Path) {
    let path = run_dir.join(REPORT_FILE);
    let written = read_run_folder(run_dir)
        .map_err(|e| e.to_string())
        .and_then(|run| write_report(&run, None, &path).map_err(|e| e.to_string()));
    if let Err(e) = written {
        tracing::warn!("cannot write the HTML report {}: {e}", path.display());
    }
}

/// What a run has written so far: its consolidated table, its manifest and the rows'
/// summaries, and the first write that failed (the run stops there, keeping what was written
/// before).
struct RunFiles {
    table: ConsolidatedTable,
    manifest: RunManifest,
    consolidated: Option<ConsolidatedPaths>,
    summaries: Vec<RowSummary>,
    write_failure: Option<String>,
    run_dir: PathBuf,
    consolidated_dir: PathBuf,
}

impl RunFiles {
    /// A row that ran, or could not be prepared: its files and line, or its line as not run.
    fn finish_row(
        &mut self,
        row_index: usize,
        row: &Row,
        result: Result<RowResult, RowSetupError>,
        shared: &RunShared,
    ) {
        match result {
            Ok(result) => self.add_ran(result, &*shared.observer, &shared.write_failure),
            Err(e) => {
                tracing::error!(row = row_index, model = %row.model, "row not run: {e}");
                let summary = not_run(row_index, row, &shared.run_name);
                shared.observer.row_finished(&summary, None);
                if let RowSetupError::Spool(e) = &e {
                    self.write_failure = Some(e.to_string());
                }
                self.add(summary);
            }
        }
    }

    /// A row with no files of its own (not run): its line in the table and the manifest.
    fn add(&mut self, summary: RowSummary) {
        self.table.insert(&summary);
        self.manifest.set_row(&summary);
        self.summaries.push(summary);
    }

    /// A row that ran: its two files, then its line; a row whose files could not be written is
    /// listed in neither the table nor `run.json` and stops the run.
    fn add_ran(
        &mut self,
        result: RowResult,
        observer: &dyn RunObserver,
        spool_failure: &OnceLock<String>,
    ) {
        match write_row_files(&self.run_dir, &result) {
            Ok(files) => {
                observer.row_finished(&result.summary, Some(&files));
                self.table.insert(&result.summary);
                self.manifest.set_row(&result.summary);
            }
            Err(e) => {
                tracing::error!(
                    row = result.summary.row_index,
                    "cannot write the row's files: {e}"
                );
                observer.row_finished(&result.summary, None);
                self.manifest
                    .set_row_unwritten(&result.summary, &e.to_string());
                self.write_failure = Some(e.to_string());
            }
        }
        if self.write_failure.is_none() {
            self.write_failure = spool_failure.get().cloned();
        }
        self.summaries.push(result.summary);
    }

    /// Rewrites the consolidated table and `run.json` after a row, unless a write already
    /// failed; a failure here stops the run too.
    fn write_table_and_manifest(&mut self) {
        if self.write_failure.is_none() {
            match self.table.write(&self.consolidated_dir) {
                Ok(paths) => self.consolidated = Some(paths),
                Err(e) => {
                    tracing::error!("cannot write the consolidated table: {e}");
                    self.write_failure = Some(e.to_string());
                }
            }
        }
        if self.write_failure.is_none()
            && let Err(e) = write_manifest(&self.run_dir, &self.manifest)
        {
            tracing::error!("cannot write run.json: {e}");
            self.write_failure = Some(e.to_string());
        }
        if let Some(failure) = &self.write_failure {
            tracing::error!("stopping the run: {failure}");
        }
    }
}

fn create_dir(dir: &Path) -> Result<(), OutputError> {
    std::fs::create_dir_all(dir).map_err(|source| OutputError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Rows that sent requests and had every one fail.
fn all_failed_rows(rows: &[RowSummary]) -> Vec<usize> {
    rows.iter()
        .filter(|r| r.outcome == RowOutcome::AllFailed)
        .map(|r| r.row_index)
        .collect()
}

/// Error codes of `rows`, sorted, once each.
fn error_codes<'a>(rows: impl Iterator<Item = &'a RowSummary>) -> String {
    let mut codes: Vec<String> = rows
        .flat_map(|r| r.error_code_frequency.keys().cloned())
        .collect();
    codes.sort();
    codes.dedup();
    codes.join(", ")
}

fn decide_outcome(
    rows: &[RowSummary],
    auth_failure: Option<&String>,
    stopped: bool,
    write_failure: Option<&str>,
) -> (RunOutcome, Option<String>) {
    if let Some(message) = auth_failure {
        return (RunOutcome::AuthenticationFailed, Some(message.clone()));
    }
    if let Some(failure) = write_failure {
        return (
            RunOutcome::Failed,
            Some(format!(
                "results could not be written, so the run stopped: {failure}; the files of the \
                 rows before were written"
            )),
        );
    }
    if stopped {
        return (
            RunOutcome::Interrupted,
            Some("the run was interrupted; rows that finished were written".into()),
        );
    }
    let sent: u32 = rows.iter().map(|r| r.num_requests_started).sum();
    let completed: u32 = rows.iter().map(|r| r.num_completed_requests).sum();
    if completed == 0 {
        let why = if sent == 0 {
            "no request was sent".to_string()
        } else {
            format!(
                "every request failed (error codes: {})",
                error_codes(rows.iter())
            )
        };
        return (RunOutcome::AllRequestsFailed, Some(why));
    }
    let failed = all_failed_rows(rows);
    if !failed.is_empty() {
        let numbers: Vec<String> = failed.iter().map(|i| (i + 1).to_string()).collect();
        let codes = error_codes(rows.iter().filter(|r| failed.contains(&r.row_index)));
        return (
            RunOutcome::RowsFailed,
            Some(format!(
                "{} of {} row(s) had every request fail: row(s) {} (error codes: {codes}); \
                 their files were written",
                failed.len(),
                rows.len(),
                numbers.join(", ")
            )),
        );
    }
    let not_run = rows
        .iter()
        .filter(|r| r.outcome == RowOutcome::NotRun)
        .count();
    let message =
        (not_run > 0).then(|| format!("{not_run} row(s) could not be prepared; see the log"));
    (RunOutcome::Succeeded, message)
}
