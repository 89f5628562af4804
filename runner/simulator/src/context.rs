//! The state every part of a running simulator shares: the validated config, the clock origin,
//! the ground-truth store, the timer-error histogram, rate limiters, and the scheduler's queue.
//! It holds data only; behaviour lives in the modules that use it.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::config::{FaultsConfig, SimulatorConfig};
use super::faults::RateLimiters;
use super::message::QueuedRequest;
use super::truth::{LagHistogram, TruthStore};
use coebench_support::tokenizer::Tokenizer;

/// Shared state of one running simulator.
pub(crate) struct Ctx {
    pub config: SimulatorConfig,
    /// Each model's faults merged with the global ones.
    pub faults: Vec<FaultsConfig>,
    /// Monotonic origin of every `*_s` time.
    pub start: Instant,
    /// Wall-clock time at `start`, Unix microseconds.
    pub start_unix_us: i64,
    /// Next request ordinal.
    pub ordinal: AtomicU64,
    pub truth: TruthStore,
    pub lag: LagHistogram,
    pub limiters: RateLimiters,
    pub tokenizer: Tokenizer,
    pub scheduler: mpsc::UnboundedSender<QueuedRequest>,
    /// Keep every token frame's write time in the truth records.
    pub record_token_times: bool,
}

impl Ctx {
    /// Seconds from the simulator start to `t`.
    pub(crate) fn rel(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.start).as_secs_f64()
    }

    /// `t` as Unix microseconds.
    pub(crate) fn unix_us(&self, t: Instant) -> i64 {
        let since = t.saturating_duration_since(self.start).as_micros();
        self.start_unix_us
            .saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    }

    /// `t` as Unix seconds (what `start_time`/`end_time` report).
    pub(crate) fn unix_s(&self, t: Instant) -> f64 {
        self.start_unix_us as f64 / 1e6 + self.rel(t)
    }
}

/// `t + secs`, saturating: a config with absurd speeds yields "far in the future" (a year),
/// never a panic.
pub(crate) fn after(t: Instant, secs: f64) -> Instant {
    let far = Duration::from_secs(365 * 24 * 3600);
    let d = Duration::try_from_secs_f64(secs).unwrap_or(far).min(far);
    t.checked_add(d).unwrap_or(t)
}
