//! Ground truth: what the simulator did with each request ([`TruthRecord`]), kept in memory
//! and/or appended to a JSON-lines log, plus a histogram of the simulator's own timer error.
//!
//! Records are written by the server and the batch runner; this module only stores, indexes,
//! writes and summarises them. It never decides any timing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coebench_plan::Route;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, mpsc};

/// A fault injected into a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Answered 500 or 503 instead of being served.
    Error,
    /// Refused with 429 by the token bucket.
    RateLimit,
    /// Headers delayed.
    SlowFirstByte,
    /// Stream paused after some tokens.
    Stall,
    /// Connection closed mid-stream.
    Disconnect,
    /// One event with invalid JSON.
    MalformedEvent,
}

/// Everything the simulator knows about one request. Times named `*_s` without `unix` are
/// seconds since the simulator started; `*_unix_us` are microseconds since the Unix epoch.
/// Fields are `None` when the request never got that far (refused, failed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthRecord {
    /// Arrival order, from 0; seeds the request's random choices.
    pub ordinal: u64,
    /// The client's `x-request-id`, or a generated UUID when it sent none.
    pub request_id: String,
    /// The client's address and port as the simulator accepted the connection (which worker,
    /// which source address of a distributed run sent the request).
    #[serde(default)]
    pub client_address: Option<String>,
    /// The model that served it (resolved name).
    pub model: Option<String>,
    /// The route it was posted to; `None` for a path or method the simulator does not serve.
    /// Logged as `"flavour"`: `"chat"`, `"generic-v1"`, `"generic-v2"` or `"unknown"`.
    #[serde(rename = "flavour", with = "logged_route")]
    pub route: Option<Route>,
    /// Whether the response was streamed.
    pub stream: bool,
    /// HTTP status answered.
    pub http_status: u16,
    /// Error message sent, for non-2xx answers.
    pub error: Option<String>,
    /// Faults injected, in the order they acted.
    pub faults: Vec<FaultKind>,
    /// Arrival (request head parsed), Unix epoch microseconds.
    pub arrival_unix_us: i64,
    /// Arrival, seconds since the simulator started.
    pub arrival_s: f64,
    /// When the kernel received the request head's last bytes (`SO_TIMESTAMPNS` on the
    /// connection), Unix epoch microseconds: the true arrival at the server's host, before any
    /// wait for the simulator's thread. `None` where the platform gives no timestamp.
    #[serde(default)]
    pub received_unix_us: Option<i64>,
    /// When the request joined the batching queue (after any slow-first-byte delay).
    pub submitted_s: Option<f64>,
    /// When its batch started on an executor.
    pub batch_start_s: Option<f64>,
    /// `batch_start - submitted`: waiting for a batch to form and an executor (not part of
    /// server TTFT).
    pub queue_wait_s: Option<f64>,
    /// HBM load before prefill: configuration GB / load bandwidth, or exactly 0 when resident.
    pub switching_s: Option<f64>,
    /// Batch prefill: the batch's prompt tokens / prefill speed.
    pub prefill_s: Option<f64>,
    /// `switching + prefill`: the `time_to_first_token` the server reports.
    pub server_ttft_s: Option<f64>,
    /// Last token minus batch start: the `total_latency` the server reports.
    pub server_e2e_s: Option<f64>,
    /// Scheduled send time of the first token.
    pub first_token_s: Option<f64>,
    /// Scheduled send time of the first token, Unix epoch microseconds.
    pub first_token_unix_us: Option<i64>,
    /// Scheduled send time of the last token (including any stall).
    pub last_token_s: Option<f64>,
    /// Scheduled send time of the last token, Unix epoch microseconds.
    pub last_token_unix_us: Option<i64>,
    /// `last_token - arrival`: what a client would see as end-to-end latency.
    pub e2e_s: Option<f64>,
    /// Prompt tokens reported (text + chat template + images).
    pub prompt_tokens: Option<u32>,
    /// Of `prompt_tokens`, those costed for images.
    pub image_tokens: u32,
    /// Completion tokens sent.
    pub completion_tokens: Option<u32>,
    /// Events that carried generated text.
    pub chunks: u32,
    /// `stop` (natural end) or `length` (hit `max_tokens`).
    pub stop_reason: Option<String>,
    /// The batch, numbered from 0 in start order.
    pub batch_id: Option<u64>,
    /// Requests in the batch.
    pub batch_requests: Option<u32>,
    /// The supported batch size the batch ran at (`batch_size_used`).
    pub batch_size_used: Option<u32>,
    /// The sequence-length bucket of the configuration.
    pub sequence_bucket: Option<u32>,
    /// The executor that ran the batch, from 0.
    pub executor: Option<u32>,
    /// Reported `acceptance_rate` (speculative models).
    pub acceptance_rate: Option<f64>,
    /// Largest lag of this request's token events behind their schedule, microseconds.
    pub timer_lag_max_us: Option<f64>,
    /// Mean lag of this request's token events behind their schedule, microseconds.
    pub timer_lag_mean_us: Option<f64>,
    /// When the frame holding the first token was actually handed to the connection for
    /// writing (scheduled time plus timer lag), Unix epoch microseconds: the true instant the
    /// first token left the server, to compare a client's timestamps with.
    #[serde(default)]
    pub first_token_written_unix_us: Option<i64>,
    /// When the last frame (last token, finish and usage events, `[DONE]`) was handed to the
    /// connection for writing, Unix epoch microseconds.
    #[serde(default)]
    pub last_token_written_unix_us: Option<i64>,
    /// When each frame carrying tokens was handed to the connection, microseconds after
    /// `first_token_written_unix_us` (the first entry is 0). Only recorded when
    /// [`crate::StartOptions::record_token_times`] is on; `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_written_offsets_us: Option<Vec<u32>>,
    /// The client went away before the response ended.
    pub client_disconnected: bool,
}

impl TruthRecord {
    /// A record of a request that has only arrived.
    pub(crate) fn arrived(
        ordinal: u64,
        request_id: String,
        route: Option<Route>,
        arrival_unix_us: i64,
        arrival_s: f64,
    ) -> Self {
        TruthRecord {
            ordinal,
            request_id,
            client_address: None,
            model: None,
            route,
            stream: false,
            http_status: 200,
            error: None,
            faults: Vec::new(),
            arrival_unix_us,
            arrival_s,
            received_unix_us: None,
            submitted_s: None,
            batch_start_s: None,
            queue_wait_s: None,
            switching_s: None,
            prefill_s: None,
            server_ttft_s: None,
            server_e2e_s: None,
            first_token_s: None,
            first_token_unix_us: None,
            last_token_s: None,
            last_token_unix_us: None,
            e2e_s: None,
            prompt_tokens: None,
            image_tokens: 0,
            completion_tokens: None,
            chunks: 0,
            stop_reason: None,
            batch_id: None,
            batch_requests: None,
            batch_size_used: None,
            sequence_bucket: None,
            executor: None,
            acceptance_rate: None,
            timer_lag_max_us: None,
            timer_lag_mean_us: None,
            first_token_written_unix_us: None,
            last_token_written_unix_us: None,
            token_written_offsets_us: None,
            client_disconnected: false,
        }
    }
}

/// Lag of one request's token events behind schedule, and when they were written.
#[derive(Debug, Clone, Default)]
pub(crate) struct LagAccumulator {
    count: u32,
    sum_us: f64,
    max_us: f64,
    first_written: Option<Instant>,
    last_written: Option<Instant>,
    /// Offsets of every token frame from the first, when per-token times are recorded.
    offsets_us: Option<Vec<u32>>,
}

impl LagAccumulator {
    /// An accumulator that also keeps every token frame's write time when `token_times`.
    pub(crate) fn new(token_times: bool) -> Self {
        LagAccumulator {
            offsets_us: token_times.then(Vec::new),
            ..LagAccumulator::default()
        }
    }

    /// A token frame scheduled `lag` before `written` was handed over at `written`.
    pub(crate) fn add(&mut self, lag: Duration, written: Instant) {
        let us = lag.as_secs_f64() * 1e6;
        self.count += 1;
        self.sum_us += us;
        self.max_us = self.max_us.max(us);
        let first = *self.first_written.get_or_insert(written);
        self.last_written = Some(written);
        if let Some(offsets) = &mut self.offsets_us {
            let offset = written.saturating_duration_since(first).as_micros();
            offsets.push(u32::try_from(offset).unwrap_or(u32::MAX));
        }
    }

    /// The final frame (no token of its own, or a trailer) was handed over at `written`.
    pub(crate) fn ended(&mut self, written: Instant) {
        self.last_written = Some(written);
    }

    pub(crate) fn write_to(&mut self, record: &mut TruthRecord, unix_us: impl Fn(Instant) -> i64) {
        if self.count > 0 {
            record.timer_lag_max_us = Some(self.max_us);
            record.timer_lag_mean_us = Some(self.sum_us / f64::from(self.count));
        }
        record.first_token_written_unix_us = self.first_written.map(&unix_us);
        record.last_token_written_unix_us = self.last_written.map(&unix_us);
        record.token_written_offsets_us = self.offsets_us.take();
    }
}

/// Summary of the timer error of every token event sent so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LagSummary {
    /// Token events measured.
    pub count: u64,
    /// Mean lag, microseconds.
    pub mean_us: f64,
    /// Median lag, microseconds (upper edge of its histogram bin).
    pub p50_us: f64,
    /// 99th-percentile lag, microseconds (upper edge of its histogram bin).
    pub p99_us: f64,
    /// 99.9th-percentile lag, microseconds (upper edge of its histogram bin).
    pub p999_us: f64,
    /// Largest lag, microseconds.
    pub max_us: f64,
}

/// Histogram bins: 10 µs wide to 1 ms, 100 µs wide to 10 ms, 1 ms wide to 100 ms, then one.
const BINS: usize = 100 + 90 + 90 + 1;

/// A lock-free histogram of token-event lags.
pub(crate) struct LagHistogram {
    bins: Vec<AtomicU64>,
    count: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl LagHistogram {
    pub(crate) fn new() -> Self {
        LagHistogram {
            bins: (0..BINS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }

    fn bin_of(us: u64) -> usize {
        match us {
            0..1_000 => (us / 10) as usize,
            1_000..10_000 => 100 + ((us - 1_000) / 100) as usize,
            10_000..100_000 => 190 + ((us - 10_000) / 1_000) as usize,
            _ => BINS - 1,
        }
    }

    fn upper_us(bin: usize) -> f64 {
        match bin {
            0..100 => (bin as f64 + 1.0) * 10.0,
            100..190 => 1_000.0 + (bin as f64 - 99.0) * 100.0,
            190..280 => 10_000.0 + (bin as f64 - 189.0) * 1_000.0,
            _ => f64::INFINITY,
        }
    }

    pub(crate) fn record(&self, lag: Duration) {
        let ns = u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX);
        self.bins[Self::bin_of(ns / 1_000)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    pub(crate) fn summary(&self) -> LagSummary {
        let counts: Vec<u64> = self
            .bins
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let max_us = self.max_ns.load(Ordering::Relaxed) as f64 / 1e3;
        let quantile = |q: f64| -> f64 {
            if total == 0 {
                return 0.0;
            }
            let rank = ((q * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Self::upper_us(i).min(max_us);
                }
            }
            max_us
        };
        let count = self.count.load(Ordering::Relaxed);
        LagSummary {
            count,
            mean_us: if count == 0 {
                0.0
            } else {
                self.sum_ns.load(Ordering::Relaxed) as f64 / 1e3 / count as f64
            },
            p50_us: quantile(0.5),
            p99_us: quantile(0.99),
            p999_us: quantile(0.999),
            max_us,
        }
    }
}

/// The ground-truth store: records in memory (optional), the log writer's queue, waiters.
pub(crate) struct TruthStore {
    inner: Mutex<StoreInner>,
    keep_in_memory: bool,
    notify: Notify,
    /// The log writer's queue; taken (closing the log) at shutdown.
    log: Mutex<Option<mpsc::UnboundedSender<TruthRecord>>>,
}

#[derive(Default)]
struct StoreInner {
    records: Vec<TruthRecord>,
    by_id: HashMap<String, usize>,
}

impl TruthStore {
    pub(crate) fn new(
        keep_in_memory: bool,
        log: Option<mpsc::UnboundedSender<TruthRecord>>,
    ) -> Self {
        TruthStore {
            inner: Mutex::new(StoreInner::default()),
            keep_in_memory,
            notify: Notify::new(),
            log: Mutex::new(log),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreInner> {
        // Pushes are single Vec/HashMap inserts; a poisoned lock holds consistent data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, record: TruthRecord) {
        if let Some(log) = self.log.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = log.send(record.clone());
        }
        if self.keep_in_memory {
            let mut inner = self.lock();
            let index = inner.records.len();
            inner.by_id.insert(record.request_id.clone(), index);
            inner.records.push(record);
        }
        self.notify.notify_waiters();
    }

    /// Closes the log: the writer flushes and ends; later records are kept in memory only.
    pub(crate) fn close_log(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    pub(crate) fn all(&self) -> Vec<TruthRecord> {
        self.lock().records.clone()
    }

    pub(crate) fn get(&self, request_id: &str) -> Option<TruthRecord> {
        let inner = self.lock();
        inner
            .by_id
            .get(request_id)
            .and_then(|&i| inner.records.get(i).cloned())
    }

    pub(crate) async fn wait_for(
        &self,
        request_id: &str,
        timeout: Duration,
    ) -> Option<TruthRecord> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.get(request_id) {
                return Some(r);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.get(request_id);
            }
        }
    }
}

/// Starts the task that appends records to `path` as JSON lines (one object per line),
/// truncating the file first. It ends, flushing, when every sender is dropped.
pub(crate) async fn start_log_writer(
    path: &Path,
) -> Result<
    (
        mpsc::UnboundedSender<TruthRecord>,
        tokio::task::JoinHandle<Result<(), std::io::Error>>,
    ),
    std::io::Error,
> {
    let file = tokio::fs::File::create(path).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<TruthRecord>();
    let path: PathBuf = path.to_path_buf();
    let task = tokio::spawn(async move {
        let mut out = tokio::io::BufWriter::new(file);
        let mut batch = Vec::with_capacity(256);
        while rx.recv_many(&mut batch, 256).await > 0 {
            for record in batch.drain(..) {
                let mut line = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
                line.push(b'\n');
                out.write_all(&line).await?;
            }
            out.flush().await?;
        }
        out.flush().await?;
        tracing::debug!(path = %path.display(), "truth log closed");
        Ok(())
    });
    Ok((tx, task))
}

/// The truth log's `"flavour"` field: a route's name, or `"unknown"` for an unserved request.
mod logged_route {
    use coebench_plan::Route;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Logged {
        Chat,
        GenericV1,
        GenericV2,
        Unknown,
    }

    pub(super) fn serialize<S: Serializer>(route: &Option<Route>, s: S) -> Result<S::Ok, S::Error> {
        match route {
            Some(Route::Chat) => Logged::Chat,
            Some(Route::GenericV1) => Logged::GenericV1,
            Some(Route::GenericV2) => Logged::GenericV2,
            None => Logged::Unknown,
        }
        .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Route>, D::Error> {
        Ok(match Logged::deserialize(d)? {
            Logged::Chat => Some(Route::Chat),
            Logged::GenericV1 => Some(Route::GenericV1),
            Logged::GenericV2 => Some(Route::GenericV2),
            Logged::Unknown => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_names_routes_as_flavours_and_unserved_requests_unknown() {
        for (route, logged) in [
            (Some(Route::Chat), "chat"),
            (Some(Route::GenericV1), "generic-v1"),
            (Some(Route::GenericV2), "generic-v2"),
            (None, "unknown"),
        ] {
            let record = TruthRecord::arrived(0, "a".into(), route, 0, 0.0);
            let line = serde_json::to_value(&record).unwrap();
            assert_eq!(line["flavour"], logged);
            let back: TruthRecord = serde_json::from_value(line).unwrap();
            assert_eq!(back.route, route);
        }
    }

    #[test]
    fn histogram_quantiles_land_in_the_right_bins() {
        let h = LagHistogram::new();
        for _ in 0..98 {
            h.record(Duration::from_micros(55));
        }
        h.record(Duration::from_micros(2_050));
        h.record(Duration::from_millis(150));
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_us, 60.0);
        assert_eq!(s.p99_us, 2_100.0);
        assert_eq!(s.max_us, 150_000.0);
        assert_eq!(LagHistogram::new().summary().p99_us, 0.0);
    }

    #[tokio::test]
    async fn records_are_indexed_by_request_id_and_waitable() {
        let store = std::sync::Arc::new(TruthStore::new(true, None));
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { store.wait_for("b", Duration::from_secs(5)).await })
        };
        store.push(TruthRecord::arrived(
            0,
            "a".into(),
            Some(Route::Chat),
            0,
            0.0,
        ));
        store.push(TruthRecord::arrived(
            1,
            "b".into(),
            Some(Route::Chat),
            0,
            0.0,
        ));
        assert_eq!(waiter.await.unwrap().map(|r| r.ordinal), Some(1));
        assert_eq!(store.get("a").map(|r| r.ordinal), Some(0));
        assert_eq!(store.all().len(), 2);
        assert!(
            store
                .wait_for("zz", Duration::from_millis(10))
                .await
                .is_none()
        );
    }
}
