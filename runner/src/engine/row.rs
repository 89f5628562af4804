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
use crate::statistics::summary::{RowExecution, RowResult};
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
}

/// A row's requests, built before it starts so nothing is tokenised while it runs.
struct PreparedRow {
    /// Each distinct prepared request and its prompt.
    built: Vec<(PreparedRequest, Arc<BuiltPrompt>)>,
    /// Which of `built` each request sends, by request index.
    by_request: Vec<u32>,
}

impl PreparedRow {
    /// One request per prompt template (`identicalPrompts`), or one per request, each prompt
    /// opening with its own seeded tag (the default).
    fn build(shared: &RunShared, row: &Row, seed: u64) -> Result<PreparedRow, RowSetupError> {
        if let Some(dataset) = &row.dataset {
            return PreparedRow::build_from_dataset(shared, row, dataset, seed);
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
        let mut by_request = Vec::with_capacity(row.num_requests as usize);
        let mut by_template: HashMap<&'static str, u32> = HashMap::new();
        for index in 0..u64::from(row.num_requests) {
            let template = selection.template(index);
            if options.identical_prompts
                && let Some(&at) = by_template.get(template.name)
            {
                by_request.push(at);
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
            let request = shared
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
            built.push((request, prompt));
            by_template.insert(template.name, at);
            by_request.push(at);
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
        let mut by_request = Vec::with_capacity(row.num_requests as usize);
        let mut by_position: HashMap<usize, u32> = HashMap::new();
        for index in 0..u64::from(row.num_requests) {
            let position = dataset.position(spec.order, seed, index);
            if let Some(&at) = by_position.get(&position) {
                by_request.push(at);
                continue;
            }
            let line = dataset.line(position);
            let prompt = Arc::new(BuiltPrompt {
                name: DATASET_PROMPT_NAME,
                text: Arc::clone(&line.prompt),
                tokens: u32::try_from(tokenizer.count_tokens(&line.prompt)).unwrap_or(u32::MAX),
            });
            let image = line.image.as_ref().or(row_image.as_ref());
            let request = shared
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
            built.push((request, prompt));
            by_position.insert(position, at);
            by_request.push(at);
        }
        Ok(PreparedRow { built, by_request })
    }

    fn request(&self, index: u32) -> &(PreparedRequest, Arc<BuiltPrompt>) {
        &self.built[self.by_request[index as usize] as usize]
    }
}

/// How long opening a row's connections may take before the row starts anyway.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// Most connections opened ahead of a row.
const MAX_WARM_CONNECTIONS: u32 = 10_000;

/// Connections a row will have open at once: its concurrency, or a second's worth of arrivals.
fn connections_needed(row: &Row) -> u32 {
    let wanted = match row.load() {
        Some(Load::Concurrency(c)) => c,
        Some(Load::Rate { qps, .. }) => qps.ceil().clamp(1.0, f64::from(u32::MAX)) as u32,
        None => 1,
    };
    wanted.min(row.num_requests).min(MAX_WARM_CONNECTIONS)
}

/// Runs row `row_index` to the end (or until the run is stopped) and summarises it.
pub async fn run_row(
    shared: &Arc<RunShared>,
    row_index: usize,
    row: &Row,
) -> Result<RowResult, RowSetupError> {
    let seed = row_seed(shared.options.seed, row_index);
    let prepared = Arc::new(PreparedRow::build(shared, row, seed)?);
    if shared.options.warm_up_connections {
        let connections = connections_needed(row);
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
    let started_wall = jiff::Timestamp::now();
    let started = Instant::now();
    shared
        .row_starts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(row_index, started);
    let names = naming::row_names(row_index, row);
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
    let request_tag = names.uuid.simple().to_string()[..12].to_string();
    let mut execution = RowExecution::new(
        row_index,
        row.clone(),
        &shared.run_name,
        names,
        started,
        started_wall,
    );
    execution.spool = Some(Arc::clone(&spool));
    execution.response_texts = texts.clone();
    execution.sampling_params = row.effective_sampling_params(&shared.options);
    execution.metadata = shared.options.metadata.clone();
    execution.objectives = row.effective_objectives(&shared.options).cloned();
    let timeout = saturating_duration(shared.options.request_timeout_seconds);
    let tokenizer = Arc::clone(&shared.tokenizers.for_model(&row.model).tokenizer);
    let send = {
        let shared = Arc::clone(shared);
        let prepared = Arc::clone(&prepared);
        let model = row.model.clone();
        let tokenizer = Arc::clone(&tokenizer);
        let max_tokens = row.output_tokens;
        move |index: u32, intended: Option<Instant>| {
            let shared = Arc::clone(&shared);
            let prepared = Arc::clone(&prepared);
            let spool = Arc::clone(&spool);
            let texts = texts.clone();
            let model = model.clone();
            let tokenizer = Arc::clone(&tokenizer);
            let request_id = format!("{request_tag}-{row_index}-{index}");
            async move {
                let (request, prompt) = prepared.request(index);
                shared.observer.request_started(row_index);
                let measurement = shared
                    .client
                    .send_interruptible(request, &request_id, timeout, shared.stop.cut())
                    .await;
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
                if let Some(texts) = &texts
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
                let spooled = match spool.append(&record) {
                    Ok(at) => Some(at),
                    Err(e) => {
                        tracing::error!(
                            row = row_index,
                            request = index,
                            "cannot spool the record: {e}"
                        );
                        // A full disk: stop sending, what cannot be stored is not measured.
                        let _ = shared.write_failure.set(e.to_string());
                        shared.stop.stop();
                        None
                    }
                };
                (index, RecordDigest::of(&record, spooled))
            }
        }
    };
    let context = LoadContext {
        send,
        num_requests: row.num_requests,
        deadline: saturating_deadline(started, saturating_duration(shared.options.timeout_seconds)),
        stop: Arc::clone(&shared.stop),
    };
    let monitor = HealthMonitor::start();
    let outcome: LoadOutcome<RecordDigest> = match row.load() {
        Some(Load::Rate { qps, distribution }) => {
            let offsets = arrival_offsets(row.num_requests, qps, distribution, seed);
            open_loop(context, &offsets).await
        }
        Some(Load::Concurrency(concurrency)) => closed_loop(context, concurrency).await,
        // Validation rejects such rows; a plan that skipped it still runs them closed-loop at 1.
        None => closed_loop(context, row.concurrency.unwrap_or(1)).await,
    };
    execution.client_health = monitor.finish();
    let server_counted = outcome
        .finished
        .iter()
        .any(|r| r.is_success() && r.server_number_input_tokens.is_some());
    // Not under parallel rows: the probe would load this model in the middle of the other
    // rows' traffic and inject a switch into their measurements.
    if server_counted && !shared.stop.is_stopped() && shared.options.parallel_rows <= 1 {
        execution.template_overhead = shared
            .template_overheads
            .of(&shared.client, &tokenizer, &row.model)
            .await;
    }
    execution.digests = outcome.finished;
    execution.ended = outcome.ended;
    execution.not_sent = outcome.not_sent;
    Ok(execution.finish())
}
