//! The two load loops: closed loop (a fixed number of requests in flight) and open loop
//! (requests sent at precomputed instants, however many are in flight).
//!
//! Both spawn one tokio task per in-flight request, stop sending when the row's deadline passes
//! or the run is cancelled (requests never sent are counted, never silently dropped: kit defect
//! 10), and hand every finished request to a caller-supplied `finish` function, in the request's
//! own task, as soon as its stream ends, so heavy per-request data (generated text) is dropped
//! early. The loops know nothing of metrics or files.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

/// Why a row stopped sending before every request was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The row's timeout passed.
    Timeout,
    /// The run was cancelled (interrupt, or the endpoint rejected the credentials).
    Cancelled,
}

/// A stop signal shared by a run's loops, in two stages: [`StopSignal::stop`] stops sending
/// (requests in flight go on), [`StopSignal::cut_off`] also ends the requests in flight, which
/// are then recorded as interrupted with what was measured of them so far.
#[derive(Debug, Default)]
pub struct StopSignal {
    stopped: AtomicBool,
    cut: AtomicBool,
    notify: tokio::sync::Notify,
}

impl StopSignal {
    /// Asks every loop to stop sending.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Stops sending and ends every request in flight.
    pub fn cut_off(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.stop();
    }

    /// Whether [`StopSignal::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Whether [`StopSignal::cut_off`] was called.
    pub fn is_cut_off(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    /// Completes once the signal is stopped.
    pub async fn stopped(&self) {
        self.wait_for(Self::is_stopped).await;
    }

    /// Completes once requests in flight are cut off.
    pub async fn cut(&self) {
        self.wait_for(Self::is_cut_off).await;
    }

    async fn wait_for(&self, done: fn(&Self) -> bool) {
        loop {
            let notified = self.notify.notified();
            if done(self) {
                return;
            }
            notified.await;
        }
    }
}

/// `seconds` as a duration, saturating: NaN and negatives are 0, too many seconds the longest
/// duration. Validation keeps inputs in range; this only keeps a bad one from panicking.
pub fn saturating_duration(seconds: f64) -> Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
    }
}

/// `from + by`, or about a century later when that overflows the platform's clock.
pub fn saturating_deadline(from: Instant, by: Duration) -> Instant {
    from.checked_add(by)
        .or_else(|| from.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(from)
}

/// What a loop needs: how to send request `i`, which requests, from when, and when to stop.
pub struct LoadContext<S> {
    /// Sends request `index`; `intended` is its scheduled send instant (open loop only).
    pub send: S,
    /// The row's request indices this loop sends, ascending: every index of the row in one
    /// process, this worker's share in a distributed row (`distributed::partition`).
    pub requests: Arc<[u32]>,
    /// When the row starts: the loop sends nothing before it, and open-loop offsets are
    /// measured from it (now, in one process; the instant all workers agreed on, otherwise).
    pub start: Instant,
    /// No request is sent at or after this instant.
    pub deadline: Instant,
    /// Run-wide stop signal.
    pub stop: Arc<StopSignal>,
}

/// What a loop did.
#[derive(Debug)]
pub struct LoadOutcome<T> {
    /// One item per request sent, in request-index order.
    pub finished: Vec<T>,
    /// Requests never sent.
    pub not_sent: u32,
    /// Why sending stopped early, if it did.
    pub stopped_early: Option<StopReason>,
    /// When the first request was due.
    pub started: Instant,
    /// When the last request finished.
    pub ended: Instant,
}

/// Runs a closed loop: `concurrency` workers, each sending the next unsent request as soon as
/// its previous one finishes (one shared queue, not the kit's static slices: defect 11).
pub async fn closed_loop<S, F, T>(ctx: LoadContext<S>, concurrency: u32) -> LoadOutcome<T>
where
    S: Fn(u32, Option<Instant>) -> F + Send + Sync + 'static,
    F: Future<Output = (u32, T)> + Send + 'static,
    T: Send + 'static,
{
    wait_for_start(ctx.start, &ctx.stop).await;
    let started = ctx.start;
    let num_requests = requests_in(&ctx);
    let next = Arc::new(AtomicU32::new(0));
    let results = Arc::new(Mutex::new(Vec::with_capacity(num_requests as usize)));
    let timed_out = Arc::new(AtomicBool::new(false));
    let send = Arc::new(ctx.send);
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.min(num_requests) {
        let (next, results, timed_out, send, stop, requests) = (
            Arc::clone(&next),
            Arc::clone(&results),
            Arc::clone(&timed_out),
            Arc::clone(&send),
            Arc::clone(&ctx.stop),
            Arc::clone(&ctx.requests),
        );
        let (n, deadline) = (num_requests, ctx.deadline);
        workers.spawn(async move {
            loop {
                if stop.is_stopped() {
                    return;
                }
                if Instant::now() >= deadline {
                    timed_out.store(true, Ordering::SeqCst);
                    return;
                }
                let position = next.fetch_add(1, Ordering::SeqCst);
                if position >= n {
                    return;
                }
                let item = send(requests[position as usize], None).await;
                if let Ok(mut results) = results.lock() {
                    results.push(item);
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let ended = Instant::now();
    let finished = take_sorted(&results);
    let not_sent = num_requests - finished.len() as u32;
    let stopped_early = stop_reason(not_sent, &ctx.stop, timed_out.load(Ordering::SeqCst));
    LoadOutcome {
        finished,
        not_sent,
        stopped_early,
        started,
        ended,
    }
}

/// Runs an open loop: request `i` is sent at `start + offsets[i]` (`offsets` indexed by the row's
/// request index, so a worker's share keeps the single-process schedule), slept to as an
/// absolute deadline with the high-resolution timer, whatever else is in flight.
///
/// The dispatcher runs in the caller's task (on the command line, the `block_on` thread, which
/// the operating system schedules apart from the runtime's workers). Spawning it onto the
/// workers instead made no measurable difference to dispatch delay (docs/performance.md).
pub async fn open_loop<S, F, T>(ctx: LoadContext<S>, offsets: &[Duration]) -> LoadOutcome<T>
where
    S: Fn(u32, Option<Instant>) -> F + Send + Sync + 'static,
    F: Future<Output = (u32, T)> + Send + 'static,
    T: Send + 'static,
{
    let started = ctx.start;
    let num_requests = requests_in(&ctx);
    let (mut finished, stopped_early) = dispatch(ctx, offsets, started).await;
    finished.sort_by_key(|(index, _)| *index);
    let ended = Instant::now();
    let sent = finished.len() as u32;
    LoadOutcome {
        finished: finished.into_iter().map(|(_, item)| item).collect(),
        not_sent: num_requests - sent,
        stopped_early,
        started,
        ended,
    }
}

/// The open loop's dispatcher: sends every request on schedule (those already due without
/// touching the timer), then waits for them all.
async fn dispatch<S, F, T>(
    ctx: LoadContext<S>,
    offsets: &[Duration],
    started: Instant,
) -> (Vec<(u32, T)>, Option<StopReason>)
where
    S: Fn(u32, Option<Instant>) -> F + Send + Sync + 'static,
    F: Future<Output = (u32, T)> + Send + 'static,
    T: Send + 'static,
{
    let mut in_flight = JoinSet::new();
    let mut finished = Vec::with_capacity(ctx.requests.len());
    let mut stopped_early = None;
    for &index in ctx.requests.iter() {
        let Some(offset) = offsets.get(index as usize) else {
            break;
        };
        let due = started + *offset;
        if due >= ctx.deadline {
            stopped_early = Some(StopReason::Timeout);
            break;
        }
        if Instant::now() < due {
            tokio::select! {
                () = coebench_support::timer::sleep_until(due) => {}
                () = ctx.stop.stopped() => {}
            }
        }
        if ctx.stop.is_stopped() {
            stopped_early = Some(StopReason::Cancelled);
            break;
        }
        in_flight.spawn((ctx.send)(index, Some(due)));
        // Reap finished requests as we go so finished tasks do not pile up in the set.
        while let Some(done) = in_flight.try_join_next() {
            collect(done, &mut finished);
        }
    }
    while let Some(done) = in_flight.join_next().await {
        collect(done, &mut finished);
    }
    (finished, stopped_early)
}

/// Sleeps until `start` (a distributed row's common start), or until the run stops.
async fn wait_for_start(start: Instant, stop: &StopSignal) {
    if Instant::now() < start {
        tokio::select! {
            () = coebench_support::timer::sleep_until(start) => {}
            () = stop.stopped() => {}
        }
    }
}

/// The number of requests a loop sends.
fn requests_in<S>(ctx: &LoadContext<S>) -> u32 {
    u32::try_from(ctx.requests.len()).unwrap_or(u32::MAX)
}

fn collect<T>(done: Result<(u32, T), tokio::task::JoinError>, into: &mut Vec<(u32, T)>) {
    match done {
        Ok(item) => into.push(item),
        Err(e) => tracing::error!("a request task failed: {e}"),
    }
}

fn take_sorted<T>(results: &Mutex<Vec<(u32, T)>>) -> Vec<T> {
    let mut items = match results.lock() {
        Ok(mut guard) => std::mem::take(&mut *guard),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    items.sort_by_key(|(index, _)| *index);
    items.into_iter().map(|(_, item)| item).collect()
}

fn stop_reason(not_sent: u32, stop: &StopSignal, timed_out: bool) -> Option<StopReason> {
    if not_sent == 0 {
        None
    } else if stop.is_stopped() {
        Some(StopReason::Cancelled)
    } else if timed_out {
        Some(StopReason::Timeout)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// What a tracked send returns: (index, intended send, actual send).
    type Sent = (u32, Option<Instant>, Instant);
    type SendFuture = std::pin::Pin<Box<dyn Future<Output = (u32, Sent)> + Send>>;

    /// A send function that takes `work` per request and tracks the peak number in flight.
    fn tracked_send(
        work: Duration,
        in_flight: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
    ) -> impl Fn(u32, Option<Instant>) -> SendFuture + Send + Sync + 'static {
        move |index, intended| {
            let (in_flight, peak) = (Arc::clone(&in_flight), Arc::clone(&peak));
            Box::pin(async move {
                let sent = Instant::now();
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(work).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                (index, (index, intended, sent))
            })
        }
    }

    fn context<S>(send: S, n: u32, deadline_in: Duration) -> LoadContext<S> {
        LoadContext {
            send,
            requests: (0..n).collect(),
            start: Instant::now(),
            deadline: Instant::now() + deadline_in,
            stop: Arc::new(StopSignal::default()),
        }
    }

    #[tokio::test]
    async fn closed_loop_keeps_exactly_the_concurrency_and_sends_everything() {
        let (in_flight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let send = tracked_send(Duration::from_millis(5), in_flight, Arc::clone(&peak));
        let outcome = closed_loop(context(send, 40, Duration::from_secs(60)), 4).await;
        assert_eq!(outcome.finished.len(), 40);
        assert_eq!(outcome.not_sent, 0);
        assert_eq!(outcome.stopped_early, None);
        assert_eq!(peak.load(Ordering::SeqCst), 4);
        let indices: Vec<u32> = outcome.finished.iter().map(|(i, _, _)| *i).collect();
        assert_eq!(indices, (0..40).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn closed_loop_stops_at_the_deadline_and_counts_what_it_never_sent() {
        let (in_flight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let send = tracked_send(Duration::from_millis(40), in_flight, peak);
        let outcome = closed_loop(context(send, 100, Duration::from_millis(100)), 2).await;
        assert!(outcome.not_sent > 0);
        assert_eq!(outcome.finished.len() as u32 + outcome.not_sent, 100);
        assert_eq!(outcome.stopped_early, Some(StopReason::Timeout));
    }

    #[tokio::test]
    async fn a_stop_signal_ends_both_loops() {
        let (in_flight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let ctx = context(
            tracked_send(Duration::from_millis(20), in_flight, peak),
            1000,
            Duration::from_secs(60),
        );
        let stop = Arc::clone(&ctx.stop);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(60)).await;
            stop.stop();
        });
        let offsets: Vec<Duration> = (0..1000).map(|i| Duration::from_millis(i * 10)).collect();
        let outcome = open_loop(ctx, &offsets).await;
        assert_eq!(outcome.stopped_early, Some(StopReason::Cancelled));
        assert!(outcome.finished.len() < 20, "{}", outcome.finished.len());
        assert_eq!(outcome.finished.len() as u32 + outcome.not_sent, 1000);
    }

    #[tokio::test]
    async fn a_cut_off_wakes_waiters_of_both_stages() {
        let stop = Arc::new(StopSignal::default());
        let waiter = {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                stop.stopped().await;
                stop.cut().await;
            })
        };
        stop.stop();
        assert!(stop.is_stopped() && !stop.is_cut_off());
        stop.cut_off();
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .unwrap();
    }

    #[tokio::test]
    async fn open_loop_sends_on_schedule_whatever_is_in_flight() {
        let (in_flight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        // Each request takes 100 ms but one is due every 10 ms: about 10 are in flight at once.
        let send = tracked_send(Duration::from_millis(100), in_flight, Arc::clone(&peak));
        let offsets: Vec<Duration> = (0..30).map(|i| Duration::from_millis(i * 10)).collect();
        let outcome = open_loop(context(send, 30, Duration::from_secs(60)), &offsets).await;
        assert_eq!(outcome.finished.len(), 30);
        assert!(
            peak.load(Ordering::SeqCst) >= 5,
            "peak {}",
            peak.load(Ordering::SeqCst)
        );
        for (i, (index, intended, sent)) in outcome.finished.iter().enumerate() {
            assert_eq!(*index as usize, i);
            let intended = intended.expect("open-loop requests have an intended send time");
            assert_eq!(intended, outcome.started + offsets[i]);
            assert!(*sent >= intended);
        }
    }

    #[tokio::test]
    async fn open_loop_does_not_send_requests_due_after_the_deadline() {
        let (in_flight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let send = tracked_send(Duration::from_millis(1), in_flight, peak);
        let offsets: Vec<Duration> = (0..10).map(|i| Duration::from_millis(i * 30)).collect();
        let outcome = open_loop(context(send, 10, Duration::from_millis(100)), &offsets).await;
        assert_eq!(outcome.finished.len(), 4);
        assert_eq!(outcome.not_sent, 6);
        assert_eq!(outcome.stopped_early, Some(StopReason::Timeout));
    }
}
