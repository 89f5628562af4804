//! A distributed run's coordinator (worker 0): waits for every worker (the rendezvous), measures
//! each one's clock offset, hands them the plan, and runs each row on all of them: every worker
//! prepares and warms up, the coordinator picks a common start a little in the future, each
//! worker sends its share from that instant on its own clock, and streams its records back. The
//! coordinator appends them to the row's spool as they come (keeping only digests, as for its
//! own requests) and finishes the row through the same path as one process
//! (`engine::row::finish_row`, `RowExecution::finish`), so every statistic is computed on the
//! union. A worker whose connection closes or falls silent is lost: the row stops on every
//! worker, what arrived is written, and the run ends with `WorkerLost`.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use super::clock::{ClockEstimate, ClockSample, instant_at, unix_now_ns};
use super::partition;
use super::wire::{
    FromWorker, PROTOCOL_VERSION, ShareReport, ToWorker, read_message, write_message,
};
use super::{HEARTBEAT_PERIOD, HEARTBEAT_TIMEOUT};
use crate::engine::row::{
    RowClock, RowSetupError, RunShared, begin_row, drive_row, finish_row, keep_record, prepare_row,
    request_id_prefix,
};
use crate::engine::run::{RowDistribution, RowFuture, WelcomeFuture};
use crate::output::manifest::{ManifestWorker, ManifestWorkerRow, ManifestWorkers};
use crate::output::naming;
use crate::statistics::record_digest::RecordDigest;
use crate::statistics::summary::{ClientHealth, RowResult};
use coebench_plan::{Plan, Row};

/// Clock round trips measured per worker.
const CLOCK_SAMPLES: u32 = 16;

/// How far in the future a row's common start is, besides twice the slowest round trip.
const START_MARGIN: Duration = Duration::from_millis(300);

/// How long workers still running after a stop have to report what they measured.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// How the coordinator waits for its workers.
pub struct CoordinatorOptions {
    /// Workers in the run, the coordinator included.
    pub workers: u32,
    /// How long every worker has to connect, and to prepare each row.
    pub rendezvous: Duration,
    /// Where worker `i` is expected from, for messages (a Pod's DNS name, a local process).
    pub expected: Box<dyn Fn(u32) -> String + Send + Sync>,
    /// The name workers reach the coordinator's host by, when they run on other hosts (Pods):
    /// an in-process simulator then listens on every interface and workers are given this
    /// name. `None`: the workers share this host and its loopback.
    pub advertised_host: Option<String>,
}

/// What happened to a worker, as its connection's reader saw it.
enum Event {
    Message(FromWorker),
    /// The answer to a clock ping, stamped (coordinator's clock) as it was read.
    Pong {
        seq: u32,
        remote_ns: i64,
        received_ns: i64,
    },
    Lost(String),
}

/// One connected worker.
struct Link {
    index: u32,
    host: String,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    /// The latest estimate (at the rendezvous, then before each row).
    clock: Mutex<ClockEstimate>,
}

impl Link {
    fn clock(&self) -> ClockEstimate {
        *self.clock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A coordinator whose workers are all connected; it runs the rows.
pub struct Coordinator {
    workers: u32,
    links: Vec<Arc<Link>>,
    events: tokio::sync::Mutex<mpsc::Receiver<(u32, Event)>>,
    prompt_nonce: u64,
    rendezvous: Duration,
    advertised_host: Option<String>,
    /// The next clock ping's number.
    next_ping: AtomicU32,
    lost: OnceLock<String>,
    rows: Mutex<Vec<ManifestWorkerRow>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

/// Connections accepted and introduced, before the plan is sent.
type Hellos = HashMap<u32, (OwnedReadHalf, OwnedWriteHalf, String)>;

impl Coordinator {
    /// Waits on `listener` for workers 1 to `workers - 1` and measures their clocks; the plan
    /// follows with [`RowDistribution::welcome`] once the endpoint is ready. `Err` names the
    /// workers that never came (the run then fails with `WorkerLost`).
    pub async fn rendezvous(
        listener: TcpListener,
        options: CoordinatorOptions,
    ) -> Result<Coordinator, String> {
        let deadline = Instant::now() + options.rendezvous;
        let mut hellos: Hellos = HashMap::new();
        while (hellos.len() as u32) < options.workers.saturating_sub(1) {
            let accepted = tokio::time::timeout_at(deadline.into(), listener.accept()).await;
            let (stream, peer) = match accepted {
                Err(_) => return Err(missing(&hellos, &options)),
                Ok(Err(e)) => {
                    tracing::warn!("cannot accept a worker's connection: {e}");
                    continue;
                }
                Ok(Ok(accepted)) => accepted,
            };
            let _ = stream.set_nodelay(true);
            let (mut reader, writer) = stream.into_split();
            let hello = tokio::time::timeout(HEARTBEAT_TIMEOUT, read_message(&mut reader)).await;
            match hello {
                Ok(Ok(Some(FromWorker::Hello {
                    index,
                    version,
                    host,
                }))) if version == PROTOCOL_VERSION
                    && (1..options.workers).contains(&index)
                    && !hellos.contains_key(&index) =>
                {
                    tracing::info!(worker = index, %host, %peer, "worker connected");
                    hellos.insert(index, (reader, writer, host));
                }
                other => tracing::warn!(
                    %peer,
                    "turned away a connection that is not an expected worker: {other:?}"
                ),
            }
        }
        let (events_tx, events) = mpsc::channel(4096);
        let mut links = Vec::new();
        let mut tasks = Vec::new();
        let mut indexed: Vec<_> = hellos.into_iter().collect();
        indexed.sort_by_key(|(index, _)| *index);
        for (index, (mut reader, mut writer, host)) in indexed {
            let clock = measure_clock(&mut reader, &mut writer)
                .await
                .map_err(|why| format!("worker {index} (from {host}) was lost: {why}"))?;
            tracing::info!(
                worker = index,
                offset_ms = clock.offset_ns as f64 / 1e6,
                rtt_ms = clock.rtt_ns as f64 / 1e6,
                "worker clock measured"
            );
            tasks.push(tokio::spawn(read_events(index, reader, events_tx.clone())));
            let link = Arc::new(Link {
                index,
                host,
                writer: tokio::sync::Mutex::new(writer),
                clock: Mutex::new(clock),
            });
            tasks.push(tokio::spawn(heartbeats(Arc::clone(&link))));
            links.push(link);
        }
        let coordinator = Coordinator {
            workers: options.workers,
            links,
            events: tokio::sync::Mutex::new(events),
            prompt_nonce: uuid::Uuid::new_v4().as_u64_pair().0,
            rendezvous: options.rendezvous,
            advertised_host: options.advertised_host,
            next_ping: AtomicU32::new(CLOCK_SAMPLES),
            lost: OnceLock::new(),
            rows: Mutex::new(Vec::new()),
            tasks,
        };
        Ok(coordinator)
    }

    /// Tells every worker the run is over.
    pub async fn finish(&self) {
        self.broadcast(&ToWorker::Done).await;
    }

    /// Sends `message` to every worker; a worker that cannot be written to is found lost by
    /// its reader.
    async fn broadcast(&self, message: &ToWorker) {
        for link in &self.links {
            let mut writer = link.writer.lock().await;
            if let Err(e) = write_message(&mut *writer, message).await {
                tracing::debug!(worker = link.index, "cannot write to the worker: {e}");
            }
        }
    }

    fn link(&self, index: u32) -> Option<&Link> {
        self.links.iter().map(|l| &**l).find(|l| l.index == index)
    }

    /// Marks worker `index` lost (the first loss names the run's), and stops the row on every
    /// worker.
    async fn lose(&self, shared: &RunShared, index: u32, why: &str) {
        let host = self.link(index).map_or("?", |l| l.host.as_str());
        let message = format!("worker {index} (from {host}) was lost: {why}");
        tracing::error!("{message}");
        let _ = self.lost.set(message);
        shared.stop.cut_off();
        self.broadcast(&ToWorker::CutRow).await;
    }

    /// Runs row `row_index` on every worker and merges it.
    async fn row(
        &self,
        shared: &Arc<RunShared>,
        row_index: usize,
        row: &Row,
    ) -> Result<RowResult, RowSetupError> {
        let workers = row.effective_workers(self.workers);
        let mut events = self.events.lock().await;
        self.broadcast(&ToWorker::PrepareRow { row_index }).await;
        let local_share = partition::share(row, workers, 0);
        let ready = prepare_row(shared, row_index, row, &local_share, workers).await?;
        self.wait_ready(shared, row_index, &mut events).await?;
        self.measure_clocks(shared, &mut events).await?;
        let slowest = self
            .links
            .iter()
            .map(|l| l.clock().rtt_ns)
            .max()
            .unwrap_or(0);
        let margin = i64::try_from(START_MARGIN.as_nanos()).unwrap_or(i64::MAX);
        let start_ns = unix_now_ns()
            .saturating_add(margin)
            .saturating_add(2 * slowest);
        let clock = RowClock {
            started: instant_at(start_ns),
            started_wall: jiff::Timestamp::from_nanosecond(i128::from(start_ns))
                .unwrap_or_else(|_| jiff::Timestamp::now()),
            wall_correction: jiff::SignedDuration::ZERO,
        };
        let names = naming::row_names(row_index, row);
        let prefix = request_id_prefix(&names);
        for link in &self.links {
            let start = ToWorker::StartRow {
                row_index,
                request_id_prefix: prefix.clone(),
                start_unix_ns: start_ns,
                clock_offset_ns: link.clock().offset_ns,
            };
            let mut writer = link.writer.lock().await;
            if let Err(e) = write_message(&mut *writer, &start).await {
                tracing::debug!(worker = link.index, "cannot start the worker's row: {e}");
            }
        }
        let (execution, sink) = begin_row(shared, row_index, row, clock, names)?;
        let Some(spool) = execution.spool.clone() else {
            return Err(RowSetupError::WorkerLost("the row has no spool".into()));
        };
        let (driven, gathered) = tokio::join!(
            drive_row(
                shared,
                row_index,
                row,
                &ready,
                &local_share,
                clock,
                &prefix,
                sink
            ),
            self.gather(shared, row_index, &spool, &mut events),
        );
        let outcome = driven.outcome;
        let mut shares = vec![ManifestWorkerRow {
            row_index,
            worker: 0,
            requests: len_u32(local_share.requests.len()),
            records: len_u32(outcome.finished.len()),
            dispatch_delay_max_s: dispatch_delay_max(&outcome.finished),
            event_loop_lag_p99_s: driven.health.event_loop_lag_p99_s,
            cpu_utilization: driven.health.cpu_utilization,
            client_saturated: driven.health.saturated,
            clock_offset_s: None,
            clock_rtt_s: None,
            lost: None,
        }];
        let mut digests = outcome.finished;
        let mut not_sent = outcome.not_sent;
        let mut ended = outcome.ended;
        let mut health = driven.health;
        for link in &self.links {
            let requests = len_u32(partition::share(row, workers, link.index).requests.len());
            let records = gathered.records.get(&link.index).copied().unwrap_or(0);
            let report = gathered.reports.get(&link.index);
            match report {
                Some(report) => {
                    not_sent += report.not_sent;
                    let end = Duration::try_from_secs_f64(report.ended_s).unwrap_or_default();
                    ended = ended.max(clock.started + end);
                    health = merge_health(health, report.health());
                }
                // A lost worker: what never reached the coordinator was not measured.
                None => not_sent += requests.saturating_sub(records),
            }
            shares.push(ManifestWorkerRow {
                row_index,
                worker: link.index,
                requests,
                records,
                dispatch_delay_max_s: report.and_then(|r| r.dispatch_delay_max_s),
                event_loop_lag_p99_s: report.and_then(|r| r.event_loop_lag_p99_s),
                cpu_utilization: report.and_then(|r| r.cpu_utilization),
                client_saturated: report.is_some_and(|r| r.saturated),
                clock_offset_s: Some(link.clock().offset_ns as f64 / 1e9),
                clock_rtt_s: Some(link.clock().rtt_ns as f64 / 1e9),
                lost: gathered.lost.get(&link.index).map(|why| {
                    format!("worker {} (from {}) was lost: {why}", link.index, link.host)
                }),
            });
        }
        for share in &shares {
            shared
                .observer
                .worker_row_health(row_index, share.worker, share.client_saturated);
        }
        let saturated: Vec<String> = shares
            .iter()
            .filter(|s| s.client_saturated)
            .map(|s| s.worker.to_string())
            .collect();
        if !saturated.is_empty() {
            tracing::warn!(
                row = row_index,
                "client saturated on worker(s) {}",
                saturated.join(", ")
            );
        }
        self.rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(shares);
        digests.extend(gathered.digests);
        Ok(finish_row(shared, execution, digests, ended, not_sent, health).await)
    }

    /// Waits until every worker has prepared row `row_index`.
    async fn wait_ready(
        &self,
        shared: &RunShared,
        row_index: usize,
        events: &mut mpsc::Receiver<(u32, Event)>,
    ) -> Result<(), RowSetupError> {
        let mut waiting: BTreeSet<u32> = self.links.iter().map(|l| l.index).collect();
        let deadline = Instant::now() + self.rendezvous;
        while let Some(&first) = waiting.first() {
            let event = tokio::time::timeout_at(deadline.into(), events.recv()).await;
            let (index, why) = match event {
                Err(_) => (
                    first,
                    format!(
                        "it did not prepare row {} within {} s",
                        row_index + 1,
                        self.rendezvous.as_secs()
                    ),
                ),
                Ok(None) => (first, "its connection closed".to_string()),
                Ok(Some((index, Event::Message(FromWorker::Ready { row_index: r }))))
                    if r == row_index =>
                {
                    waiting.remove(&index);
                    continue;
                }
                Ok(Some((index, Event::Message(FromWorker::Failed { message })))) => {
                    (index, message)
                }
                Ok(Some((index, Event::Lost(why)))) => (index, why),
                Ok(Some(_)) => continue,
            };
            self.lose(shared, index, &why).await;
            return Err(RowSetupError::WorkerLost(
                self.lost.get().cloned().unwrap_or(why),
            ));
        }
        Ok(())
    }

    /// Measures every worker's clock again just before a row starts ([`CLOCK_SAMPLES`] round
    /// trips each, all workers in step), so a clock that drifted or stepped since the last
    /// row is caught before the row's records are placed on the coordinator's time base.
    async fn measure_clocks(
        &self,
        shared: &RunShared,
        events: &mut mpsc::Receiver<(u32, Event)>,
    ) -> Result<(), RowSetupError> {
        let mut samples: HashMap<u32, Vec<ClockSample>> = HashMap::new();
        for _ in 0..CLOCK_SAMPLES {
            let seq = self.next_ping.fetch_add(1, Ordering::Relaxed);
            let mut sent = HashMap::new();
            for link in &self.links {
                let mut writer = link.writer.lock().await;
                sent.insert(link.index, unix_now_ns());
                if let Err(e) = write_message(&mut *writer, &ToWorker::Ping { seq }).await {
                    tracing::debug!(worker = link.index, "cannot ping the worker: {e}");
                }
            }
            let deadline = Instant::now() + HEARTBEAT_TIMEOUT;
            while !sent.is_empty() {
                let event = tokio::time::timeout_at(deadline.into(), events.recv()).await;
                let (index, why) = match event {
                    Ok(Some((
                        index,
                        Event::Pong {
                            seq: s,
                            remote_ns,
                            received_ns,
                        },
                    ))) if s == seq => {
                        if let Some(sent_ns) = sent.remove(&index) {
                            samples.entry(index).or_default().push(ClockSample {
                                sent_ns,
                                remote_ns,
                                received_ns,
                            });
                        }
                        continue;
                    }
                    Ok(Some((index, Event::Message(FromWorker::Failed { message })))) => {
                        (index, message)
                    }
                    Ok(Some((index, Event::Lost(why)))) => (index, why),
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => {
                        let first = sent.keys().min().copied().unwrap_or(0);
                        (first, "it did not answer a clock round trip".to_string())
                    }
                };
                self.lose(shared, index, &why).await;
                return Err(RowSetupError::WorkerLost(
                    self.lost.get().cloned().unwrap_or(why),
                ));
            }
        }
        for link in &self.links {
            let measured = samples
                .get(&link.index)
                .and_then(|s| ClockEstimate::from_samples(s));
            if let Some(measured) = measured {
                let before = link.clock();
                tracing::debug!(
                    worker = link.index,
                    offset_ms = measured.offset_ns as f64 / 1e6,
                    drift_ms = (measured.offset_ns - before.offset_ns) as f64 / 1e6,
                    rtt_ms = measured.rtt_ns as f64 / 1e6,
                    "worker clock measured again"
                );
                *link.clock.lock().unwrap_or_else(|e| e.into_inner()) = measured;
            }
        }
        Ok(())
    }

    /// Gathers every worker's records of row `row_index` into `spool` until each has reported
    /// its share done (or was lost).
    async fn gather(
        &self,
        shared: &RunShared,
        row_index: usize,
        spool: &crate::statistics::spool::RecordSpool,
        events: &mut mpsc::Receiver<(u32, Event)>,
    ) -> Gathered {
        let mut gathered = Gathered::default();
        let mut waiting: BTreeSet<u32> = self.links.iter().map(|l| l.index).collect();
        let mut stop_deadline: Option<Instant> = None;
        let (mut stop_forwarded, mut cut_forwarded) = (false, false);
        while !waiting.is_empty() {
            // An interrupt of the run (and, after its grace, the cut) reaches every worker.
            if shared.stop.is_stopped() && !stop_forwarded {
                stop_forwarded = true;
                self.broadcast(&ToWorker::StopRow).await;
            }
            if shared.stop.is_cut_off() && !cut_forwarded {
                cut_forwarded = true;
                self.broadcast(&ToWorker::CutRow).await;
                stop_deadline.get_or_insert(Instant::now() + STOP_WAIT);
            }
            let next = tokio::select! {
                next = events.recv() => next,
                () = shared.stop.stopped(), if !stop_forwarded => continue,
                () = shared.stop.cut(), if !cut_forwarded => continue,
                () = tokio::time::sleep_until(
                    stop_deadline.unwrap_or_else(|| Instant::now() + HEARTBEAT_TIMEOUT).into()
                ), if stop_deadline.is_some() => break,
            };
            let Some((index, event)) = next else {
                break;
            };
            match event {
                Event::Message(FromWorker::Record(record)) => {
                    shared.observer.request_started(row_index);
                    shared.observer.request_finished(row_index, &record);
                    shared.observer.worker_request_finished(row_index, index);
                    gathered
                        .digests
                        .push(keep_record(shared, row_index, spool, &record));
                    *gathered.records.entry(index).or_default() += 1;
                }
                Event::Message(FromWorker::RowDone {
                    row_index: r,
                    report,
                }) if r == row_index => {
                    waiting.remove(&index);
                    gathered.reports.insert(index, report);
                }
                Event::Message(FromWorker::Failed { message }) | Event::Lost(message) => {
                    waiting.remove(&index);
                    self.lose(shared, index, &message).await;
                    gathered.lost.insert(index, message);
                }
                Event::Message(_) | Event::Pong { .. } => {}
            }
        }
        for index in waiting {
            let why = "it did not report its share after the row was stopped";
            self.lose(shared, index, why).await;
            gathered.lost.insert(index, why.to_string());
        }
        gathered
    }
}

/// What the workers sent of one row.
#[derive(Default)]
struct Gathered {
    digests: Vec<RecordDigest>,
    records: HashMap<u32, u32>,
    reports: HashMap<u32, ShareReport>,
    /// Why each lost worker was lost.
    lost: HashMap<u32, String>,
}

impl RowDistribution for Coordinator {
    fn prompt_nonce(&self) -> u64 {
        self.prompt_nonce
    }

    fn simulator_listen(&self) -> IpAddr {
        match self.advertised_host {
            Some(_) => IpAddr::from([0, 0, 0, 0]),
            None => IpAddr::from([127, 0, 0, 1]),
        }
    }

    fn welcome<'a>(&'a self, plan: &'a Plan, simulator: Option<&'a str>) -> WelcomeFuture<'a> {
        Box::pin(async move {
            // On other hosts, workers reach the simulator by the coordinator's name.
            let simulator = simulator.map(|url| match &self.advertised_host {
                Some(host) => url_on_host(url, host),
                None => url.to_string(),
            });
            if let Some(url) = &simulator {
                tracing::info!(%url, "the workers send to this process's simulator");
            }
            self.broadcast(&ToWorker::Welcome {
                plan: Box::new(plan.clone()),
                prompt_nonce: self.prompt_nonce,
                simulator,
            })
            .await;
        })
    }

    fn run_row<'a>(
        &'a self,
        shared: &'a Arc<RunShared>,
        row_index: usize,
        row: &'a Row,
    ) -> RowFuture<'a> {
        Box::pin(self.row(shared, row_index, row))
    }

    fn worker_lost(&self) -> Option<String> {
        self.lost.get().cloned()
    }

    fn manifest(&self) -> ManifestWorkers {
        ManifestWorkers {
            count: self.workers,
            workers: self
                .links
                .iter()
                .map(|l| ManifestWorker {
                    index: l.index,
                    host: l.host.clone(),
                    clock_offset_s: l.clock().offset_ns as f64 / 1e9,
                    rtt_s: l.clock().rtt_ns as f64 / 1e9,
                    samples: l.clock().samples,
                })
                .collect(),
            rows: self.rows.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            lost: self.lost.get().cloned(),
        }
    }
}

/// `url` with its host replaced by `host` (scheme, port and path kept); `url` itself when it
/// is not a URL.
fn url_on_host(url: &str, host: &str) -> String {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return url.to_string();
    };
    let scheme = uri.scheme_str().unwrap_or("http");
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    let path = uri.path_and_query().map_or("", |p| p.as_str());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    format!("{scheme}://{host}{port}{path}")
}

/// The message for workers that never connected.
fn missing(hellos: &Hellos, options: &CoordinatorOptions) -> String {
    let absent: Vec<String> = (1..options.workers)
        .filter(|i| !hellos.contains_key(i))
        .map(|i| format!("worker {i} (expected from {})", (options.expected)(i)))
        .collect();
    format!(
        "{} never connected within the rendezvous time of {} s",
        absent.join(", "),
        options.rendezvous.as_secs()
    )
}

/// Measures a worker's clock with [`CLOCK_SAMPLES`] round trips, before its reader task runs.
async fn measure_clock(
    reader: &mut OwnedReadHalf,
    writer: &mut OwnedWriteHalf,
) -> Result<ClockEstimate, String> {
    let mut samples = Vec::new();
    for seq in 0..CLOCK_SAMPLES {
        let sent_ns = unix_now_ns();
        write_message(writer, &ToWorker::Ping { seq })
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let answer = tokio::time::timeout(HEARTBEAT_TIMEOUT, read_message(reader)).await;
            match answer {
                Ok(Ok(Some(FromWorker::Pong { seq: s, unix_ns }))) if s == seq => {
                    samples.push(ClockSample {
                        sent_ns,
                        remote_ns: unix_ns,
                        received_ns: unix_now_ns(),
                    });
                    break;
                }
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => return Err("its connection closed".into()),
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("it did not answer a clock round trip".into()),
            }
        }
    }
    ClockEstimate::from_samples(&samples).ok_or_else(|| "no clock round trip".to_string())
}

/// Forwards a worker's messages as events until its connection closes or falls silent.
async fn read_events(index: u32, mut reader: OwnedReadHalf, events: mpsc::Sender<(u32, Event)>) {
    loop {
        let event = match tokio::time::timeout(HEARTBEAT_TIMEOUT, read_message(&mut reader)).await {
            Ok(Ok(Some(FromWorker::Heartbeat))) => continue,
            Ok(Ok(Some(FromWorker::Pong { seq, unix_ns }))) => Event::Pong {
                seq,
                remote_ns: unix_ns,
                received_ns: unix_now_ns(),
            },
            Ok(Ok(Some(message))) => Event::Message(message),
            Ok(Ok(None)) => Event::Lost("its connection closed".into()),
            Ok(Err(e)) => Event::Lost(e.to_string()),
            Err(_) => Event::Lost(format!(
                "no heartbeat for {} s",
                HEARTBEAT_TIMEOUT.as_secs()
            )),
        };
        let lost = matches!(event, Event::Lost(_));
        if events.send((index, event)).await.is_err() || lost {
            return;
        }
    }
}

/// Tells a worker the coordinator is alive, every [`HEARTBEAT_PERIOD`].
async fn heartbeats(link: Arc<Link>) {
    loop {
        tokio::time::sleep(HEARTBEAT_PERIOD).await;
        let mut writer = link.writer.lock().await;
        if write_message(&mut *writer, &ToWorker::Heartbeat)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The health of several clients as one: the worst lag and CPU, saturated if any was.
fn merge_health(a: ClientHealth, b: ClientHealth) -> ClientHealth {
    let max = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    ClientHealth {
        event_loop_lag_p99_s: max(a.event_loop_lag_p99_s, b.event_loop_lag_p99_s),
        cpu_utilization: max(a.cpu_utilization, b.cpu_utilization),
        saturated: a.saturated || b.saturated,
    }
}

fn dispatch_delay_max(digests: &[RecordDigest]) -> Option<f64> {
    digests
        .iter()
        .filter_map(|d| d.dispatch_delay_s)
        .reduce(f64::max)
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_on_other_hosts_reach_the_simulator_by_the_coordinators_name() {
        assert_eq!(
            url_on_host(
                "http://0.0.0.0:41234/v1",
                "bench-3-0.bench-3-workers.ns.svc"
            ),
            "http://bench-3-0.bench-3-workers.ns.svc:41234/v1"
        );
        assert_eq!(
            url_on_host("http://0.0.0.0:80/v1", "fd00::7"),
            "http://[fd00::7]:80/v1"
        );
        assert_eq!(url_on_host("not a url", "h"), "not a url");
    }
}
