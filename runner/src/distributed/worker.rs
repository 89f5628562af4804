//! A worker of a distributed run (index 1 and up): connects to the coordinator (retrying until
//! the rendezvous time is up, since on Kubernetes the coordinator's name resolves only once its
//! Pod runs), takes the plan from it, and for each row it is told to run sends its share
//! (`partition`) from the common start, streaming every finished request's record back as it
//! finishes, on the coordinator's clock. It writes no files. It ends when the coordinator says
//! the run is done, and reports the coordinator lost when the connection closes or falls silent.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

use super::clock::{instant_at, unix_now_ns};
use super::partition;
use super::wire::{
    FromWorker, PROTOCOL_VERSION, ShareReport, ToWorker, read_message, write_message,
};
use super::{HEARTBEAT_PERIOD, HEARTBEAT_TIMEOUT, host_name};
use crate::client::source::SourceAddresses;
use crate::client::{ClientOptions, EndpointClient};
use crate::engine::endpoint::{ReadyEndpoint, prepare_endpoint, use_served_simulator};
use crate::engine::load::StopSignal;
use crate::engine::observer::Observers;
use crate::engine::preflight::read_datasets;
use crate::engine::row::{ReadyRow, RecordSink, RowClock, RunShared, drive_row, prepare_row};
use crate::engine::run::EnvReader;
use crate::engine::template_probe::TemplateOverheads;
use crate::workload::image::ImageSet;
use crate::workload::tokenizers::ModelTokenizers;
use crate::workload::tokenizers::hub::HubSettings;
use coebench_plan::{ApiKind, Plan};

/// Records waiting to be sent to the coordinator before a request task waits for room.
const RECORD_QUEUE: usize = 4096;

/// How a worker is started.
pub struct WorkerOptions {
    /// The coordinator's address, `host:port` (resolved again at each attempt).
    pub coordinator: String,
    /// This worker's index, 1 to workers - 1.
    pub index: u32,
    /// How long to keep trying to reach the coordinator, and to wait for its plan.
    pub rendezvous: Duration,
    /// Reads an environment variable (the endpoint's credentials).
    pub env: EnvReader,
    /// Client options (their source addresses are replaced by this worker's share of
    /// `source_addresses`).
    pub client: ClientOptions,
    /// The run's source addresses, all of them.
    pub source_addresses: SourceAddresses,
}

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerExit {
    /// The coordinator said the run is done.
    Done,
    /// The coordinator could not be reached, or was lost: the message says how.
    CoordinatorLost(String),
    /// The worker could not set up (endpoint, tokenizers, datasets): the message says why.
    Failed(String),
}

/// Runs a worker to the end of the run.
pub async fn serve(options: WorkerOptions) -> WorkerExit {
    let deadline = Instant::now() + options.rendezvous;
    let stream = match connect(&options.coordinator, deadline).await {
        Ok(stream) => stream,
        Err(why) => return WorkerExit::CoordinatorLost(why),
    };
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let (out, out_rx) = mpsc::channel::<FromWorker>(RECORD_QUEUE);
    let writing = tokio::spawn(write_all(writer, out_rx));
    let heartbeat = {
        let out = out.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_PERIOD).await;
                if out.send(FromWorker::Heartbeat).await.is_err() {
                    return;
                }
            }
        })
    };
    let hello = FromWorker::Hello {
        index: options.index,
        version: PROTOCOL_VERSION,
        host: host_name(),
    };
    let exit = if out.send(hello).await.is_err() {
        WorkerExit::CoordinatorLost("the connection to the coordinator closed".into())
    } else {
        run(&options, &mut reader, &out, deadline).await
    };
    heartbeat.abort();
    drop(out);
    // Whatever was queued (the last records, a failure) goes out before the worker exits.
    let _ = tokio::time::timeout(Duration::from_secs(10), writing).await;
    exit
}

/// Connects to `address`, retrying every half second until `deadline`.
async fn connect(address: &str, deadline: Instant) -> Result<TcpStream, String> {
    loop {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "cannot reach the coordinator at {address} within the rendezvous time: {e}"
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Sends every queued message, in order, until the queue closes or the connection fails.
async fn write_all(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut queue: mpsc::Receiver<FromWorker>,
) {
    while let Some(message) = queue.recv().await {
        if let Err(e) = write_message(&mut writer, &message).await {
            tracing::warn!("cannot write to the coordinator: {e}");
            return;
        }
    }
}

/// Reads the next message from the coordinator: `Err` when it closed, failed or fell silent.
async fn next_message(reader: &mut OwnedReadHalf, silence: Duration) -> Result<ToWorker, String> {
    match tokio::time::timeout(silence, read_message(reader)).await {
        Ok(Ok(Some(message))) => Ok(message),
        Ok(Ok(None)) => Err("the coordinator closed the connection".into()),
        Ok(Err(e)) => Err(format!("the connection to the coordinator failed: {e}")),
        Err(_) => Err(format!(
            "no word from the coordinator for {} s",
            silence.as_secs()
        )),
    }
}

/// The worker's part of the run, from the coordinator's welcome to its `Done`.
async fn run(
    options: &WorkerOptions,
    reader: &mut OwnedReadHalf,
    out: &mpsc::Sender<FromWorker>,
    deadline: Instant,
) -> WorkerExit {
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .max(HEARTBEAT_TIMEOUT);
    let (plan, prompt_nonce, simulator) = loop {
        match next_message(reader, wait).await {
            Ok(ToWorker::Welcome {
                plan,
                prompt_nonce,
                simulator,
            }) => break (*plan, prompt_nonce, simulator),
            Ok(ToWorker::Ping { seq }) => {
                let _ = out.send(pong(seq)).await;
            }
            Ok(ToWorker::Done) => return WorkerExit::Done,
            Ok(_) => {}
            Err(why) => return WorkerExit::CoordinatorLost(why),
        }
    };
    let (shared, endpoint) = match set_up(&plan, prompt_nonce, simulator, options).await {
        Ok(set) => set,
        Err(message) => {
            let _ = out
                .send(FromWorker::Failed {
                    message: message.clone(),
                })
                .await;
            return WorkerExit::Failed(message);
        }
    };
    let plan = Arc::new(plan);
    let prepared: Arc<Mutex<HashMap<usize, Arc<ReadyRow>>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let exit = loop {
        while tasks.try_join_next().is_some() {}
        let message = match next_message(reader, HEARTBEAT_TIMEOUT).await {
            Ok(message) => message,
            Err(why) => break WorkerExit::CoordinatorLost(why),
        };
        match message {
            ToWorker::Ping { seq } => {
                let _ = out.send(pong(seq)).await;
            }
            ToWorker::PrepareRow { row_index } => {
                let (shared, plan, prepared, out) = (
                    Arc::clone(&shared),
                    Arc::clone(&plan),
                    Arc::clone(&prepared),
                    out.clone(),
                );
                let index = options.index;
                tasks.spawn(async move {
                    prepare(&shared, &plan, index, row_index, &prepared, &out).await;
                });
            }
            ToWorker::StartRow {
                row_index,
                request_id_prefix,
                start_unix_ns,
                clock_offset_ns,
            } => {
                let ready = prepared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&row_index);
                let (shared, plan, out) = (Arc::clone(&shared), Arc::clone(&plan), out.clone());
                let index = options.index;
                tasks.spawn(async move {
                    let start = RowStart {
                        row_index,
                        request_id_prefix,
                        start_unix_ns,
                        clock_offset_ns,
                    };
                    run_share(&shared, &plan, index, start, ready, &out).await;
                });
            }
            ToWorker::StopRow => shared.stop.stop(),
            ToWorker::CutRow => shared.stop.cut_off(),
            ToWorker::Done => break WorkerExit::Done,
            ToWorker::Welcome { .. } | ToWorker::Heartbeat => {}
        }
    };
    if exit != WorkerExit::Done {
        shared.stop.cut_off();
    }
    tasks.shutdown().await;
    endpoint.shutdown().await;
    exit
}

fn pong(seq: u32) -> FromWorker {
    FromWorker::Pong {
        seq,
        unix_ns: unix_now_ns(),
    }
}

/// What the worker needs to send requests: the endpoint (for a simulator plan, the
/// coordinator's `simulator`), client, tokenizers and datasets, as the coordinator has them.
async fn set_up(
    plan: &Plan,
    prompt_nonce: u64,
    simulator: Option<String>,
    options: &WorkerOptions,
) -> Result<(Arc<RunShared>, ReadyEndpoint), String> {
    let ready = match simulator {
        Some(url) if plan.endpoint.api == ApiKind::Simulator => {
            use_served_simulator(&plan.endpoint, url)
        }
        _ => {
            prepare_endpoint(
                &plan.endpoint,
                &*options.env,
                None,
                IpAddr::from([127, 0, 0, 1]),
            )
            .await
        }
    }
    .map_err(|e| e.to_string())?;
    let models: Vec<String> = plan.rows.iter().map(|r| r.model.clone()).collect();
    let tokenizers = ModelTokenizers::resolve(
        &models,
        &plan.options,
        plan.endpoint.api == ApiKind::Simulator,
        &HubSettings::from_env(&*options.env),
    )
    .await
    .map_err(|e| e.to_string())?;
    let datasets = read_datasets(plan).map_err(|e| e.to_string())?;
    let client_options = ClientOptions {
        source_addresses: options.source_addresses.share(plan.workers, options.index),
        ..options.client.clone()
    };
    let client =
        EndpointClient::new(ready.resolved().clone(), client_options).map_err(|e| e.to_string())?;
    let shared = Arc::new(RunShared {
        client,
        tokenizers,
        datasets,
        images: ImageSet::new(),
        options: plan.options.clone(),
        run_name: plan.output.run_name.clone().unwrap_or_default(),
        // A worker's records go to the coordinator; it never creates a spool.
        run_dir: std::env::temp_dir(),
        observer: Arc::new(Observers::default()),
        stop: Arc::new(StopSignal::default()),
        auth_failure: Arc::new(OnceLock::new()),
        template_overheads: TemplateOverheads::default(),
        prompt_nonce,
        write_failure: Arc::new(OnceLock::new()),
        row_starts: Mutex::new(HashMap::new()),
        worker_index: Some(options.index),
    });
    Ok((shared, ready))
}

/// Prepares this worker's share of a row and says it is ready.
async fn prepare(
    shared: &RunShared,
    plan: &Plan,
    index: u32,
    row_index: usize,
    prepared: &Mutex<HashMap<usize, Arc<ReadyRow>>>,
    out: &mpsc::Sender<FromWorker>,
) {
    let Some(row) = plan.rows.get(row_index) else {
        return;
    };
    let workers = row.effective_workers(plan.workers);
    let share = partition::share(row, workers, index);
    if !share.requests.is_empty() {
        match prepare_row(shared, row_index, row, &share, workers).await {
            Ok(ready) => {
                prepared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(row_index, Arc::new(ready));
            }
            Err(e) => {
                let _ = out
                    .send(FromWorker::Failed {
                        message: format!("row {}: {e}", row_index + 1),
                    })
                    .await;
                return;
            }
        }
    }
    let _ = out.send(FromWorker::Ready { row_index }).await;
}

/// The coordinator's start of a row.
struct RowStart {
    row_index: usize,
    request_id_prefix: String,
    start_unix_ns: i64,
    clock_offset_ns: i64,
}

/// Sends this worker's share of a row from the common start, streaming each record to the
/// coordinator, then reports the share done.
async fn run_share(
    shared: &Arc<RunShared>,
    plan: &Plan,
    index: u32,
    start: RowStart,
    ready: Option<Arc<ReadyRow>>,
    out: &mpsc::Sender<FromWorker>,
) {
    let Some(row) = plan.rows.get(start.row_index) else {
        return;
    };
    let workers = row.effective_workers(plan.workers);
    let share = partition::share(row, workers, index);
    let mut report = ShareReport::default();
    if let Some(ready) = ready {
        let clock = RowClock {
            // The coordinator's start, read on this worker's clock.
            started: instant_at(start.start_unix_ns.saturating_add(start.clock_offset_ns)),
            started_wall: jiff::Timestamp::from_nanosecond(i128::from(start.start_unix_ns))
                .unwrap_or_else(|_| jiff::Timestamp::now()),
            wall_correction: jiff::SignedDuration::from_nanos(-start.clock_offset_ns),
        };
        let (records, mut queued) = mpsc::channel(RECORD_QUEUE);
        let forward = {
            let out = out.clone();
            tokio::spawn(async move {
                while let Some(record) = queued.recv().await {
                    if out
                        .send(FromWorker::Record(Box::new(record)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            })
        };
        let driven = drive_row(
            shared,
            start.row_index,
            row,
            &ready,
            &share,
            clock,
            &start.request_id_prefix,
            RecordSink::Forward(records),
        )
        .await;
        // Every record is queued before the share is reported done.
        let _ = forward.await;
        let outcome = &driven.outcome;
        report = ShareReport {
            not_sent: outcome.not_sent,
            ended_s: outcome
                .ended
                .saturating_duration_since(clock.started)
                .as_secs_f64(),
            dispatch_delay_max_s: outcome
                .finished
                .iter()
                .filter_map(|d| d.dispatch_delay_s)
                .reduce(f64::max),
            event_loop_lag_p99_s: driven.health.event_loop_lag_p99_s,
            cpu_utilization: driven.health.cpu_utilization,
            saturated: driven.health.saturated,
        };
    } else if !share.requests.is_empty() {
        // The share was never prepared (its preparation failed): none of it was sent.
        report.not_sent = u32::try_from(share.requests.len()).unwrap_or(u32::MAX);
    }
    let _ = out
        .send(FromWorker::RowDone {
            row_index: start.row_index,
            report,
        })
        .await;
}
