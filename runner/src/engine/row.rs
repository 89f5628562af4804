//! Running one row: prepare its requests, drive the load loop, turn every finished request into
//! a record, and summarise the row. Writing files is the caller's job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::client::measurement::ErrorKind;
use crate::client::{EndpointClient, PreparedRequest, RequestSpec};
use crate::engine::arrival::{arrival_offsets, row_seed};
use crate::engine::health::HealthMonitor;
use crate::engine::load::{
    LoadContext, LoadOutcome, StopSignal, closed_loop, open_loop, saturating_deadline,
    saturating_duration,
};
use crate::engine::observer::RunObserver;
use crate::engine::template_probe::TemplateOverheads;
use crate::output::naming;
use crate::statistics::record::{RequestContext, RequestRecord};
use crate::statistics::record_digest::RecordDigest;
use crate::statistics::response_texts::ResponseTextSpool;
use crate::statistics::spool::{RecordSpool, SpoolError};
use crate::statistics::summary::{ClientHealth, RowExecution, RowNames, RowResult};
use crate::workload::image::ImageSet;
use crate::workload::prompt::dataset::{DATASET_PROMPT_NAME, DatasetPrompts};
use crate::workload::prompt::{BuiltPrompt, PromptError, PromptSelection, request_tag};
use crate::workload::tokenizers::ModelTokenizers;
use coebench_plan::{Dataset, Load, Row, RunOptions};
use coebench_support::tokenizer::TokenCounter;

/// What every row of a run shares.
pub struct RunShared {
    /// The endpoint client.
    pub client: EndpointClient,
    /// Each model's tokenizer (prompts are sized and tokens counted with it) and prompt cache.
    pub tokenizers: ModelTokenizers,
    /// The rows' datasets, read before the run, by `dataset.path`.
    pub datasets: HashMap<String, Arc<DatasetPrompts>>,
    /// Image cache.
    pub images: ImageSet,
    /// Run options.
    pub options: RunOptions,
    /// Name of the run.
    pub run_name: String,
    /// Folder of the run's files (rows spool their records here while they run).
    pub run_dir: std::path::PathBuf,
    /// Progress hooks.
    pub observer: Arc<dyn RunObserver>,
    /// Stops every loop (interrupt, or rejected credentials).
    pub stop: Arc<StopSignal>,
    /// Set once, by the first request the endpoint answers with 401 or 403.
    pub auth_failure: Arc<OnceLock<String>>,
    /// Chat-template overheads measured so far, for the tokenizer check.
    pub template_overheads: TemplateOverheads,
    /// Drawn at random for each run and mixed into the prompt tags, so a later run with the
    /// same seed does not send prompts the server's cache kept from an earlier one.
    pub prompt_nonce: u64,
    /// Set once, by the first record that could not be spooled (the run then stops).
    pub write_failure: Arc<OnceLock<String>>,
    /// When each row started, by row index, to place parallel rows on one clock.
    pub row_starts: Mutex<HashMap<usize, Instant>>,
    /// This process's worker index in a distributed run (0: the coordinator); `None` in a run
    /// of one process.
    pub worker_index: Option<u32>,
}

/// Why a row could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum RowSetupError {
    /// No prompt of the requested length could be built.
    #[error("cannot build a {tokens}-token prompt: {source}")]
    Prompt {
        /// The requested length.
        tokens: u32,
        /// Why.
        source: PromptError,
    },
    /// The image could not be generated.
    #[error("cannot generate the image: {0}")]
    Image(String),
    /// The request body could not be built.
    #[error("cannot build the request: {0}")]
    Request(String),
    /// The row's dataset was not loaded before the run (a plan that skipped the run's set-up).
    #[error("the dataset {0} was not loaded")]
    Dataset(String),
    /// The row's record spool could not be created.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// A worker of a distributed run was lost before the row started.
    #[error("{0}")]
    WorkerLost(String),
}

/// A row's requests (this process's share of them), built before it starts so nothing is
/// tokenised while it runs.
struct PreparedRow {
    /// Each distinct prepared request and its prompt.
    built: Vec<(PreparedRequest, Arc<BuiltPrompt>)>,
    /// Which of `built` each request sends, by request index ([`NOT_BUILT`] for the requests
    /// of other workers' shares).
    by_request: Vec<u32>,
}

/// A request of `by_request` this process does not send.
const NOT_BUILT: u32 = u32::MAX;

impl PreparedRow {
    /// One request per prompt template (`identicalPrompts`), or one per request, each prompt
    /// opening with its own seeded tag (the default).
    fn build(
        shared: &RunShared,
        row: &Row,
        seed: u64,
        requests: &[u32],
    ) -> Result<PreparedRow, RowSetupError> {
        if let Some(dataset) = &row.dataset {
            return PreparedRow::build_from_dataset(shared, row, dataset, seed, requests);
        }
        let options = &shared.options;
        let prompts = &shared.tokenizers.for_model(&row.model).prompts;
        let selection =
            PromptSelection::for_row(options.use_multiple_prompts, row.image_size.is_some(), seed);
        let image = match row.image_size {
            Some(size) => Some(
                shared
                    .images
                    .get(size)
                    .map_err(|e| RowSetupError::Image(e.to_string()))?,
            ),
            None => None,
        };
        let prompt_error = |source| RowSetupError::Prompt {
            tokens: row.input_tokens,
            source,
        };
        let sampling_params = row.effective_sampling_params(options);
        let mut built = Vec::new();
        let mut by_request = vec![NOT_BUILT; row.num_requests as usize];
        let mut by_template: HashMap<&'static str, u32> = HashMap::new();
        for &request in requests {
            let index = u64::from(request);
            let template = selection.template(index);
            if options.identical_prompts
                && let Some(&at) = by_template.get(template.name)
            {
                by_request[request as usize] = at;
                continue;
            }
            let prompt = if options.identical_prompts {
                prompts.build(template, row.input_tokens)
            } else {
                prompts.build_tagged(
                    template,
                    row.input_tokens,
                    request_tag(seed ^ shared.prompt_nonce, index),
                )
            }
            .map_err(prompt_error)?;
            let prepared = shared
                .client
                .prepare(&RequestSpec {
                    model: &row.model,
                    prompt: &prompt.text,
                    image: image.as_deref(),
                    max_tokens: row.output_tokens,
                    ignore_eos: row.ignore_eos.or(options.ignore_eos),
                    min_tokens: row.min_tokens.or(options.min_tokens),
                    sampling_params: Some(&sampling_params),
                })
                .map_err(|e| RowSetupError::Request(e.to_string()))?;
            let at = u32::try_from(built.len()).unwrap_or(u32::MAX);
            built.push((prepared, prompt));
            by_template.insert(template.name, at);
            by_request[request as usize] = at;
        }
        Ok(PreparedRow { built, by_request })
    }

    /// One request per dataset line the row sends, each line's prompt as it is, with the
    /// line's image, else the row's.
    fn build_from_dataset(
        shared: &RunShared,
        row: &Row,
        spec: &Dataset,
        seed: u64,
        requests: &[u32],
    ) -> Result<PreparedRow, RowSetupError> {
        let options = &shared.options;
        let dataset = shared
            .datasets
            .get(&spec.path)
            .ok_or_else(|| RowSetupError::Dataset(spec.path.clone()))?;
        let tokenizer = &shared.tokenizers.for_model(&row.model).tokenizer;
        let row_image = match row.image_size {
            Some(size) => Some(
                shared
                    .images
                    .get(size)
                    .map_err(|e| RowSetupError::Image(e.to_string()))?,
            ),
            None => None,
        };
        let sampling_params = row.effective_sampling_params(options);
        let mut built = Vec::new();
        let mut by_request = vec![NOT_BUILT; row.num_requests as usize];
        let mut by_position: HashMap<usize, u32> = HashMap::new();
        for &request in requests {
            let position = dataset.position(spec.order, seed, u64::from(request));
            if let Some(&at) = by_position.get(&position) {
                by_request[request as usize] = at;
                continue;
            }
            let line = dataset.line(position);
            let prompt = Arc::new(BuiltPrompt {
                name: DATASET_PROMPT_NAME,
                text: Arc::clone(&line.prompt),
                tokens: u32::try_from(tokenizer.count_tokens(&line.prompt)).unwrap_or(u32::MAX),
            });
            let image = line.image.as_ref().or(row_image.as_ref());
            let prepared = shared
                .client
                .prepare(&RequestSpec {
                    model: &row.model,
                    prompt: &prompt.text,
                    image: image.map(|i| &**i),
                    max_tokens: row.output_tokens,
                    ignore_eos: row.ignore_eos.or(options.ignore_eos),
                    min_tokens: row.min_tokens.or(options.min_tokens),
                    sampling_params: Some(&sampling_params),
                })
                .map_err(|e| RowSetupError::Request(e.to_string()))?;
            let at = u32::try_from(built.len()).unwrap_or(u32::MAX);
            built.push((prepared, prompt));
            by_position.insert(position, at);
            by_request[request as usize] = at;
        }
        Ok(PreparedRow { built, by_request })
    }

    /// Request `index`'s body and prompt; `index` is of the share the row was built for.
    fn request(&self, index: u32) -> &(PreparedRequest, Arc<BuiltPrompt>) {
        &self.built[self.by_request[index as usize] as usize]
    }
}

/// How long opening a row's connections may take before the row starts anyway.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// Most connections opened ahead of a row.
const MAX_WARM_CONNECTIONS: u32 = 10_000;

/// Connections a row will have open at once on one of `workers` processes: its share of the
/// concurrency, or of a second's worth of arrivals.
fn connections_needed(row: &Row, workers: u32) -> u32 {
    let wanted = match row.load() {
        Some(Load::Concurrency(c)) => c,
        Some(Load::Rate { qps, .. }) => qps.ceil().clamp(1.0, f64::from(u32::MAX)) as u32,
        None => 1,
    };
    wanted
        .div_ceil(workers.max(1))
        .min(row.num_requests)
        .min(MAX_WARM_CONNECTIONS)
}

/// A row's requests, built, with its connections warmed: ready to start.
pub struct ReadyRow {
    prepared: Arc<PreparedRow>,
    seed: u64,
}

/// Which of a row's requests this process sends, and how many at once (closed loop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowShare {
    /// The request indices, ascending.
    pub requests: Arc<[u32]>,
    /// Requests in flight at once (closed loop; open-loop rows follow their schedule).
    pub concurrency: u32,
}

impl RowShare {
    /// Every request of `row` at the row's own concurrency: a row run by one process.
    pub fn whole(row: &Row) -> RowShare {
        RowShare {
            requests: (0..row.num_requests).collect(),
            concurrency: row_concurrency(row),
        }
    }
}

/// A closed-loop row's concurrency (1 for a row validation would reject).
pub fn row_concurrency(row: &Row) -> u32 {
    match row.load() {
        Some(Load::Concurrency(concurrency)) => concurrency,
        _ => row.concurrency.unwrap_or(1),
    }
}

/// When a row starts, on this process's monotonic clock and on the run's wall clock.
#[derive(Debug, Clone, Copy)]
pub struct RowClock {
    /// The instant the row starts; records' offsets are measured from it.
    pub started: Instant,
    /// The run's wall-clock time at `started`.
    pub started_wall: jiff::Timestamp,
    /// Added to this process's wall-clock readings to put them on the run's clock: zero in one
    /// process, a worker's measured offset from the coordinator, negated, on a worker.
    pub wall_correction: jiff::SignedDuration,
}

impl RowClock {
    /// A row starting now, in one process.
    pub fn now() -> RowClock {
        RowClock {
            started: Instant::now(),
            started_wall: jiff::Timestamp::now(),
            wall_correction: jiff::SignedDuration::ZERO,
        }
    }
}

/// Where a row's finished records go.
#[derive(Clone)]
pub enum RecordSink {
    /// The row's spool (and generated texts), a digest of each kept: one process, or a
    /// coordinator's own share.
    Spool {
        /// The row's record spool.
        spool: Arc<RecordSpool>,
        /// The row's generated texts, when the run saves them.
        texts: Option<Arc<ResponseTextSpool>>,
    },
    /// On to a distributed row's coordinator (a worker's share).
    Forward(tokio::sync::mpsc::Sender<RequestRecord>),
}

/// What sending a row's share did.
pub struct DrivenShare {
    /// The loop's outcome: a digest per request sent (spooled only with a spool sink).
    pub outcome: LoadOutcome<RecordDigest>,
    /// The client's health while it sent the share.
    pub health: ClientHealth,
}

/// The prefix of a row's request ids (`<prefix>-<row>-<request>`): the start of its UUID.
pub fn request_id_prefix(names: &RowNames) -> String {
    names.uuid.simple().to_string()[..12].to_string()
}

/// Runs row `row_index` to the end (or until the run is stopped) and summarises it.
pub async fn run_row(
    shared: &Arc<RunShared>,
    row_index: usize,
    row: &Row,
) -> Result<RowResult, RowSetupError> {
    let share = RowShare::whole(row);
    let ready = prepare_row(shared, row_index, row, &share, 1).await?;
    let clock = RowClock::now();
    let (execution, sink) = begin_row(
        shared,
        row_index,
        row,
        clock,
        naming::row_names(row_index, row),
    )?;
    let prefix = request_id_prefix(&execution.names);
    let driven = drive_row(shared, row_index, row, &ready, &share, clock, &prefix, sink).await;
    let outcome = driven.outcome;
    Ok(finish_row(
        shared,
        execution,
        outcome.finished,
        outcome.ended,
        outcome.not_sent,
        driven.health,
    )
    .await)
}

/// Builds the requests of `share` (this process's share of row `row_index`, one of
/// `workers`) and warms the connections it will need. Building is CPU work (prompts for every
/// request): on a multi-thread runtime it runs in place of the runtime's thread, so the
/// process's other tasks (a distributed run's heartbeats) go on meanwhile.
pub async fn prepare_row(
    shared: &RunShared,
    row_index: usize,
    row: &Row,
    share: &RowShare,
    workers: u32,
) -> Result<ReadyRow, RowSetupError> {
    let seed = row_seed(shared.options.seed, row_index);
    let build = || PreparedRow::build(shared, row, seed, &share.requests);
    let built = match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(build),
        _ => build(),
    };
    let prepared = Arc::new(built?);
    if shared.options.warm_up_connections {
        let connections = connections_needed(row, workers);
        let opened = tokio::select! {
            opened = shared.client.warm_up(connections, WARM_UP_TIMEOUT) => opened,
            () = shared.stop.stopped() => 0,
        };
        tracing::debug!(
            row = row_index,
            connections,
            opened,
            "connections warmed up"
        );
    }
    Ok(ReadyRow { prepared, seed })
}

/// Begins row `row_index` at `clock` under `names`: creates its spool (and text spool), tells
/// the observers, and returns its execution and the sink of its records.
pub fn begin_row(
    shared: &RunShared,
    row_index: usize,
    row: &Row,
    clock: RowClock,
    names: RowNames,
) -> Result<(RowExecution, RecordSink), RowSetupError> {
    shared
        .row_starts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(row_index, clock.started);
    let spool = Arc::new(RecordSpool::create(&shared.run_dir, &names.base)?);
    let texts = if shared.options.save_response_texts {
        Some(Arc::new(ResponseTextSpool::create(
            &shared.run_dir,
            &names.base,
        )?))
    } else {
        None
    };
    shared.observer.row_started(row_index, row, &names.base);
    let mut execution = RowExecution::new(
        row_index,
        row.clone(),
        &shared.run_name,
        names,
        clock.started,
        clock.started_wall,
    );
    execution.spool = Some(Arc::clone(&spool));
    execution.response_texts = texts.clone();
    execution.sampling_params = row.effective_sampling_params(&shared.options);
    execution.metadata = shared.options.metadata.clone();
    execution.objectives = row.effective_objectives(&shared.options).cloned();
    Ok((execution, RecordSink::Spool { spool, texts }))
}

/// Sends `share` of the row's requests from `clock.started`, each finished request's record to
/// `sink`, under the client's health monitor.
#[allow(clippy::too_many_arguments)]
pub async fn drive_row(
    shared: &Arc<RunShared>,
    row_index: usize,
    row: &Row,
    ready: &ReadyRow,
    share: &RowShare,
    clock: RowClock,
    request_id_prefix: &str,
    sink: RecordSink,
) -> DrivenShare {
    let timeout = saturating_duration(shared.options.request_timeout_seconds);
    let tokenizer = Arc::clone(&shared.tokenizers.for_model(&row.model).tokenizer);
    let started = clock.started;
    let send = {
        let shared = Arc::clone(shared);
        let prepared = Arc::clone(&ready.prepared);
        let model = row.model.clone();
        let tokenizer = Arc::clone(&tokenizer);
        let max_tokens = row.output_tokens;
        let prefix = request_id_prefix.to_string();
        move |index: u32, intended: Option<Instant>| {
            let shared = Arc::clone(&shared);
            let prepared = Arc::clone(&prepared);
            let sink = sink.clone();
            let model = model.clone();
            let tokenizer = Arc::clone(&tokenizer);
            let request_id = format!("{prefix}-{row_index}-{index}");
            async move {
                let (request, prompt) = prepared.request(index);
                shared.observer.request_started(row_index);
                let mut measurement = shared
                    .client
                    .send_interruptible(request, &request_id, timeout, shared.stop.cut())
                    .await;
                measurement.start_wall += clock.wall_correction;
                measurement.end_wall += clock.wall_correction;
                if let Some(error) = &measurement.error
                    && matches!(error.kind, ErrorKind::Http(401 | 403))
                {
                    let _ = shared.auth_failure.set(format!(
                        "the endpoint rejected the credentials (HTTP {}): {}",
                        error.kind.code(),
                        error.message
                    ));
                    shared.stop.stop();
                }
                if let RecordSink::Spool {
                    texts: Some(texts), ..
                } = &sink
                    && let Err(e) = texts.append(
                        index,
                        prompt.name,
                        &prompt.text,
                        &measurement.generated_text,
                    )
                {
                    tracing::error!(
                        row = row_index,
                        request = index,
                        "cannot save the text: {e}"
                    );
                    let _ = shared.write_failure.set(e.to_string());
                    shared.stop.stop();
                }
                let context = RequestContext {
                    request_idx: index,
                    request_id,
                    model,
                    prompt_name: prompt.name.to_string(),
                    prompt_tokens: prompt.tokens,
                    intended_send: intended,
                    max_tokens,
                };
                let record =
                    RequestRecord::from_measurement(&context, &measurement, &*tokenizer, started);
                shared.observer.request_finished(row_index, &record);
                if let Some(worker) = shared.worker_index {
                    shared.observer.worker_request_finished(row_index, worker);
                }
                let digest = match &sink {
                    RecordSink::Spool { spool, .. } => {
                        keep_record(&shared, row_index, spool, &record)
                    }
                    RecordSink::Forward(to) => {
                        let digest = RecordDigest::of(&record, None);
                        // A closed channel means the coordinator is gone; the worker ends then.
                        let _ = to.send(record).await;
                        digest
                    }
                };
                (index, digest)
            }
        }
    };
    let context = LoadContext {
        send,
        requests: Arc::clone(&share.requests),
        start: started,
        deadline: saturating_deadline(started, saturating_duration(shared.options.timeout_seconds)),
        stop: Arc::clone(&shared.stop),
    };
    let monitor = HealthMonitor::start();
    let outcome: LoadOutcome<RecordDigest> = match row.load() {
        Some(Load::Rate { qps, distribution }) => {
            let offsets = arrival_offsets(row.num_requests, qps, distribution, ready.seed);
            open_loop(context, &offsets).await
        }
        // Validation rejects rows with neither; a plan that skipped it still runs them
        // closed-loop.
        _ => closed_loop(context, share.concurrency).await,
    };
    DrivenShare {
        outcome,
        health: monitor.finish(),
    }
}

/// Appends `record` to `spool` and returns its digest; a failed append (a full disk) stops the
/// run, since what cannot be stored is not measured.
pub fn keep_record(
    shared: &RunShared,
    row_index: usize,
    spool: &RecordSpool,
    record: &RequestRecord,
) -> RecordDigest {
    let spooled = match spool.append(record) {
        Ok(at) => Some(at),
        Err(e) => {
            tracing::error!(
                row = row_index,
                request = record.request_idx,
                "cannot spool the record: {e}"
            );
            let _ = shared.write_failure.set(e.to_string());
            shared.stop.stop();
            None
        }
    };
    RecordDigest::of(record, spooled)
}

/// Finishes a row that ran: the chat-template probe, then the summary over `digests` (every
/// process's records in a distributed row).
pub async fn finish_row(
    shared: &RunShared,
    mut execution: RowExecution,
    digests: Vec<RecordDigest>,
    ended: Instant,
    not_sent: u32,
    health: ClientHealth,
) -> RowResult {
    execution.client_health = health;
    let server_counted = digests
        .iter()
        .any(|r| r.is_success() && r.server_number_input_tokens.is_some());
    // Not under parallel rows: the probe would load this model in the middle of the other
    // rows' traffic and inject a switch into their measurements.
    if server_counted && !shared.stop.is_stopped() && shared.options.parallel_rows <= 1 {
        let tokenizer = Arc::clone(&shared.tokenizers.for_model(&execution.row.model).tokenizer);
        execution.template_overhead = shared
            .template_overheads
            .of(&shared.client, &tokenizer, &execution.row.model)
            .await;
    }
    execution.digests = digests;
    execution.ended = ended;
    execution.not_sent = not_sent;
    execution.finish()
}
