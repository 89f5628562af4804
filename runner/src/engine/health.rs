//! Client self-accuracy: was the load generator itself the bottleneck?
//!
//! A monitor task on the client's runtime wakes on a fixed period and records how late each
//! wake-up was (event-loop lag: the delay any response's timestamp could have suffered), and
//! CPU use is sampled at the start and end of a row: the client's own threads (every thread of
//! the process except an in-process simulator's, read from `/proc/self/task`), and the whole
//! process. A row is flagged `saturated` when the lag's p99 exceeds [`LAG_P99_LIMIT`], or the
//! client's threads or the whole process used more than [`CPU_LIMIT`] of the cores the process
//! may use (a simulator sharing the process takes CPU the client then cannot have). The lag
//! must also have been over the limit at [`MIN_LATE_PROBES`] probes or more, so one scheduling
//! hiccup does not flag a short row. Nothing here is on a request's path.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::statistics::summary::ClientHealth;
use coebench_support::sys::process_cpu_time;

/// Period of the lag probe.
pub const PROBE_PERIOD: Duration = Duration::from_millis(10);

/// Event-loop lag p99 above which a row is flagged as client-saturated: 1 ms, the accuracy
/// coebench means to keep (docs/performance.md). The probe's lag is how late a task of the
/// client's runtime ran after its timer fired: how late open-loop requests leave and closed-loop
/// requests follow their predecessor. Timestamps come from the sockets (the write of a request,
/// the kernel's receipt of each frame), so they stay accurate under such lag; a frame's stamp
/// can still be late by up to the lag when the runtime falls behind a fast stream (the next
/// frame's bytes read before the previous frame is handed over), or without kernel timestamps.
pub const LAG_P99_LIMIT: Duration = Duration::from_millis(1);

/// Probes late by more than [`LAG_P99_LIMIT`] that a row needs, besides its p99, to be flagged
/// for lag. One scheduling hiccup (a virtual machine's vCPU stopped for a few milliseconds by
/// its host, docs/performance.md) makes one or two probes late, which in a row of a second or
/// two is already more than 1 % of them; five is 50 ms of a lagging runtime.
pub const MIN_LATE_PROBES: usize = 5;

/// Share of the available cores above which a row is flagged as client-saturated.
pub const CPU_LIMIT: f64 = 0.95;

/// Prefix of the names of an in-process simulator's threads (`engine/endpoint.rs` names its
/// runtime `coebench-simulator`; the kernel keeps 15 bytes of a thread name).
const SIMULATOR_THREADS: &str = "coebench-simula";

/// A running monitor; [`HealthMonitor::finish`] stops it and reports.
pub struct HealthMonitor {
    lags: Arc<Mutex<Vec<f32>>>,
    task: tokio::task::JoinHandle<()>,
    started: Instant,
    cpu_at_start: Option<CpuSample>,
}

/// CPU time used so far by the client's threads and by the whole process.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    client: Duration,
    process: Duration,
}

impl CpuSample {
    fn now() -> Option<CpuSample> {
        let process = process_cpu_time()?;
        // Without /proc (not Linux), every thread counts as the client's.
        let client =
            thread_cpu_time(|name| !name.starts_with(SIMULATOR_THREADS)).unwrap_or(process);
        Some(CpuSample { client, process })
    }
}

/// CPU time (user + system) of the live threads of this process whose name passes `keep`,
/// from `/proc/self/task/*/stat`; `None` where that cannot be read.
fn thread_cpu_time(keep: impl Fn(&str) -> bool) -> Option<Duration> {
    let ticks_per_s = clock_ticks_per_second()?;
    let mut ticks: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // The thread exited meanwhile.
        };
        // `pid (comm) state ...`: comm may hold spaces and parentheses, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !keep(&stat[open + 1..close]) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat: 12 and 13 after the comm.
        let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
        ticks += field(11).unwrap_or(0) + field(12).unwrap_or(0);
    }
    Some(Duration::from_secs_f64(ticks as f64 / ticks_per_s))
}

/// The kernel's clock ticks per second (`USER_HZ`), 100 on every Linux this runs on.
fn clock_ticks_per_second() -> Option<f64> {
    cfg!(target_os = "linux").then_some(100.0)
}

impl HealthMonitor {
    /// Starts probing on the current tokio runtime.
    pub fn start() -> Self {
        let lags = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lags);
        let task = tokio::spawn(async move {
            loop {
                let due = Instant::now() + PROBE_PERIOD;
                coebench_support::timer::sleep_until(due).await;
                let lag = Instant::now().saturating_duration_since(due);
                if let Ok(mut lags) = sink.lock() {
                    lags.push(lag.as_secs_f32());
                }
            }
        });
        HealthMonitor {
            lags,
            task,
            started: Instant::now(),
            cpu_at_start: CpuSample::now(),
        }
    }

    /// Stops the probe and summarises what it saw.
    pub fn finish(self) -> ClientHealth {
        self.task.abort();
        let wall = self.started.elapsed();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let share = |used: Duration| {
            (!wall.is_zero()).then(|| (used.as_secs_f64() / wall.as_secs_f64() / cores).min(1.0))
        };
        let (client, process) = match (self.cpu_at_start, CpuSample::now()) {
            (Some(start), Some(end)) => (
                share(end.client.saturating_sub(start.client)),
                share(end.process.saturating_sub(start.process)),
            ),
            _ => (None, None),
        };
        let lags = self.lags.lock().map(|l| l.clone()).unwrap_or_default();
        let (p99, lagging) = judge_lag(lags);
        let saturated = lagging
            || client.is_some_and(|c| c > CPU_LIMIT)
            || process.is_some_and(|c| c > CPU_LIMIT);
        ClientHealth {
            event_loop_lag_p99_s: p99,
            cpu_utilization: client,
            saturated,
        }
    }
}

/// The lag's p99 (seconds) over a row's probes, and whether it says the runtime lagged: p99
/// above [`LAG_P99_LIMIT`] at [`MIN_LATE_PROBES`] probes or more.
fn judge_lag(mut lags: Vec<f32>) -> (Option<f64>, bool) {
    lags.sort_by(f32::total_cmp);
    let p99 = (!lags.is_empty()).then(|| {
        let at = ((lags.len() as f64 * 0.99).ceil() as usize).clamp(1, lags.len()) - 1;
        f64::from(lags[at])
    });
    let limit = LAG_P99_LIMIT.as_secs_f64();
    let late = lags.iter().filter(|&&lag| f64::from(lag) > limit).count();
    (
        p99,
        p99.is_some_and(|p| p > limit) && late >= MIN_LATE_PROBES,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_counts_named_threads_only() {
        let all = thread_cpu_time(|_| true).expect("readable on Linux");
        let none = thread_cpu_time(|_| false).expect("readable on Linux");
        assert_eq!(none, Duration::ZERO);
        // A busy thread's time shows up under its name while it lives.
        let busy = std::thread::Builder::new()
            .name("coebench-simulator".into())
            .spawn(|| {
                let until = Instant::now() + Duration::from_millis(150);
                let mut x = 0u64;
                while Instant::now() < until {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                std::thread::sleep(Duration::from_millis(200));
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(250));
        let simulator = thread_cpu_time(|n| n.starts_with(SIMULATOR_THREADS)).unwrap();
        busy.join().unwrap();
        assert!(simulator >= Duration::from_millis(50), "{simulator:?}");
        assert!(all <= process_cpu_time().unwrap() + Duration::from_millis(20));
    }

    #[test]
    fn a_hiccup_in_a_short_row_is_reported_but_not_flagged() {
        // A 1.4 s row: 140 probes, 0.1 ms late but for a few.
        let row = |late: usize| {
            let mut lags = vec![0.0001f32; 140];
            lags[..late].fill(0.0015);
            judge_lag(lags)
        };
        let (p99, lagging) = row(2);
        assert_eq!(p99, Some(f64::from(0.0015f32)));
        assert!(!lagging);
        assert!(row(MIN_LATE_PROBES).1);
        // A long row needs more than 1 % of its probes late, however many that is.
        let mut lags = vec![0.0001f32; 10_000];
        lags[..100].fill(0.005);
        assert!(!judge_lag(lags.clone()).1);
        lags[..101].fill(0.005);
        assert!(judge_lag(lags).1);
        assert_eq!(judge_lag(Vec::new()), (None, false));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_idle_client_is_healthy_and_a_blocked_one_is_flagged() {
        let monitor = HealthMonitor::start();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let idle = monitor.finish();
        assert!(idle.event_loop_lag_p99_s.is_some());

        let monitor = HealthMonitor::start();
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Block the only runtime thread, as a client with too much work per event would: each
        // probe then runs about 40 - 10 = 30 ms late.
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(40));
            tokio::task::yield_now().await;
        }
        let starved = monitor.finish();
        assert!(starved.saturated, "{starved:?}");
        assert!(starved.cpu_utilization.is_some(), "{starved:?}");
        assert!(
            starved.event_loop_lag_p99_s.unwrap() >= 0.015,
            "{starved:?}"
        );
    }
}
