//! Client self-accuracy: was the load generator itself the bottleneck?
//!
//! A monitor task on the client's runtime wakes on a fixed period and records how late each
//! wake-up was (event-loop lag: the delay any response's timestamp could have suffered), and the
//! process's CPU use is sampled at the start and end of a row. A row is flagged `saturated` when
//! the lag's p99 exceeds [`LAG_P99_LIMIT`] or the process used more than [`CPU_LIMIT`] of the
//! cores it may use. Nothing here is on a request's path.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::summary::ClientHealth;
use crate::sys::process_cpu_time;

/// Period of the lag probe.
pub const PROBE_PERIOD: Duration = Duration::from_millis(10);

/// Event-loop lag p99 above which a row is flagged as client-saturated.
pub const LAG_P99_LIMIT: Duration = Duration::from_millis(2);

/// Share of the available cores above which a row is flagged as client-saturated.
pub const CPU_LIMIT: f64 = 0.95;

/// A running monitor; [`HealthMonitor::finish`] stops it and reports.
pub struct HealthMonitor {
    lags: Arc<Mutex<Vec<f32>>>,
    task: tokio::task::JoinHandle<()>,
    started: Instant,
    cpu_at_start: Option<Duration>,
}

impl HealthMonitor {
    /// Starts probing on the current tokio runtime.
    pub fn start() -> Self {
        let lags = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lags);
        let task = tokio::spawn(async move {
            loop {
                let due = Instant::now() + PROBE_PERIOD;
                crate::timer::sleep_until(due).await;
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
            cpu_at_start: process_cpu_time(),
        }
    }

    /// Stops the probe and summarises what it saw.
    pub fn finish(self) -> ClientHealth {
        self.task.abort();
        let wall = self.started.elapsed();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let cpu_utilization = match (self.cpu_at_start, process_cpu_time()) {
            (Some(start), Some(end)) if !wall.is_zero() => Some(
                ((end.saturating_sub(start)).as_secs_f64() / wall.as_secs_f64() / cores).min(1.0),
            ),
            _ => None,
        };
        let mut lags = self.lags.lock().map(|l| l.clone()).unwrap_or_default();
        lags.sort_by(f32::total_cmp);
        let p99 = (!lags.is_empty()).then(|| {
            let at = ((lags.len() as f64 * 0.99).ceil() as usize).clamp(1, lags.len()) - 1;
            f64::from(lags[at])
        });
        let saturated = p99.is_some_and(|p| p > LAG_P99_LIMIT.as_secs_f64())
            || cpu_utilization.is_some_and(|c| c > CPU_LIMIT);
        ClientHealth {
            event_loop_lag_p99_s: p99,
            cpu_utilization,
            saturated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(
            starved.event_loop_lag_p99_s.unwrap() >= 0.015,
            "{starved:?}"
        );
    }
}
