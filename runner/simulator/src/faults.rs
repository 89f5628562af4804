//! Seeded per-request randomness and fault decisions: which faults hit a request, and the
//! token buckets of rate limits. Acting on a decision (sleeping, cutting a stream) is the
//! server's and the batch runner's job.
//!
//! Every random choice of request `ordinal` comes from its own stream, seeded by
//! `(seed, ordinal, purpose)`, never from wall time, so a run replays identically for a seed
//! and an arrival order, and enabling one fault does not shift another's draws.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::{FaultsConfig, RateLimitFault, SimulatorConfig};

/// What a random stream is drawn for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    NaturalLength = 1,
    Speculative = 2,
    Error = 3,
    SlowFirstByte = 4,
    Stall = 5,
    Disconnect = 6,
    Malformed = 7,
}

/// SplitMix64 finaliser: a well-mixed 64-bit hash.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random stream of request `ordinal` for `purpose`.
pub(crate) fn request_rng(seed: u64, ordinal: u64, purpose: Purpose) -> StdRng {
    StdRng::seed_from_u64(mix(
        mix(seed) ^ mix(ordinal.wrapping_add(1) << 8 | purpose as u64)
    ))
}

fn hit(seed: u64, ordinal: u64, purpose: Purpose, probability: f64) -> bool {
    probability >= 1.0
        || (probability > 0.0 && request_rng(seed, ordinal, purpose).random::<f64>() < probability)
}

/// Faults that act on a stream once it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct StreamFaults {
    /// Pause for the duration after this many tokens.
    pub stall: Option<(u32, Duration)>,
    /// Close the connection after this many tokens.
    pub disconnect_after: Option<u32>,
    /// Send a malformed event after this many tokens.
    pub malformed_after: Option<u32>,
}

/// The faults drawn for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct FaultPlan {
    /// Answer with this status instead of serving.
    pub error_status: Option<u16>,
    /// Delay the headers this long.
    pub slow_first_byte: Option<Duration>,
    /// Faults of the stream.
    pub stream: StreamFaults,
}

fn millis(ms: f64) -> Duration {
    Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::ZERO)
}

/// Draws the faults of request `ordinal` from `faults` (a model's merged with the global ones).
pub(crate) fn decide(faults: &FaultsConfig, seed: u64, ordinal: u64) -> FaultPlan {
    let mut plan = FaultPlan::default();
    if let Some(e) = faults.error
        && hit(seed, ordinal, Purpose::Error, e.probability)
    {
        plan.error_status = Some(e.status);
    }
    if let Some(s) = faults.slow_first_byte
        && hit(seed, ordinal, Purpose::SlowFirstByte, s.probability)
    {
        plan.slow_first_byte = Some(millis(s.delay_ms));
    }
    if let Some(s) = faults.stall
        && hit(seed, ordinal, Purpose::Stall, s.probability)
    {
        plan.stream.stall = Some((s.after_tokens, millis(s.duration_ms)));
    }
    if let Some(d) = faults.disconnect
        && hit(seed, ordinal, Purpose::Disconnect, d.probability)
    {
        plan.stream.disconnect_after = Some(d.after_tokens);
    }
    if let Some(m) = faults.malformed_event
        && hit(seed, ordinal, Purpose::Malformed, m.probability)
    {
        plan.stream.malformed_after = Some(m.after_tokens);
    }
    plan
}

/// A token bucket: `burst` requests at once, refilled at `requests_per_sec`.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(limit: RateLimitFault, now: Instant) -> Self {
        TokenBucket {
            rate: limit.requests_per_sec,
            burst: f64::from(limit.burst),
            tokens: f64::from(limit.burst),
            last: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.rate;
            Err(Duration::try_from_secs_f64(wait)
                .unwrap_or(Duration::from_secs(u64::from(u32::MAX))))
        }
    }
}

/// The rate limits of an endpoint: a model's own bucket when it sets `rate_limit`, otherwise
/// the one global bucket shared by all models.
#[derive(Debug)]
pub(crate) struct RateLimiters {
    global: Option<Mutex<TokenBucket>>,
    per_model: Vec<Option<Mutex<TokenBucket>>>,
}

impl RateLimiters {
    pub(crate) fn new(config: &SimulatorConfig, now: Instant) -> Self {
        RateLimiters {
            global: config
                .faults
                .rate_limit
                .map(|l| Mutex::new(TokenBucket::new(l, now))),
            per_model: config
                .models
                .iter()
                .map(|m| {
                    m.faults
                        .rate_limit
                        .map(|l| Mutex::new(TokenBucket::new(l, now)))
                })
                .collect(),
        }
    }

    /// Takes a token for a request to `model`, or returns the whole seconds to wait (at least 1)
    /// for the `Retry-After` header.
    pub(crate) fn admit(&self, model: usize, now: Instant) -> Result<(), u64> {
        let bucket = match self.per_model.get(model) {
            Some(Some(b)) => b,
            _ => match &self.global {
                Some(b) => b,
                None => return Ok(()),
            },
        };
        // The bucket is four numbers; a poisoned lock holds consistent data.
        let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
        bucket
            .take(now)
            .map_err(|wait| (wait.as_secs_f64().ceil() as u64).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DisconnectFault, ErrorFault};

    #[test]
    fn draws_depend_only_on_seed_ordinal_and_purpose() {
        let a: f64 = request_rng(1, 5, Purpose::Error).random();
        let b: f64 = request_rng(1, 5, Purpose::Error).random();
        let c: f64 = request_rng(1, 6, Purpose::Error).random();
        let d: f64 = request_rng(1, 5, Purpose::Stall).random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn probabilities_hold_roughly_and_one_is_certain() {
        let faults = FaultsConfig {
            error: Some(ErrorFault {
                probability: 0.3,
                status: 500,
            }),
            disconnect: Some(DisconnectFault {
                after_tokens: 2,
                probability: 1.0,
            }),
            ..Default::default()
        };
        let plans: Vec<FaultPlan> = (0..2000).map(|i| decide(&faults, 9, i)).collect();
        let errors = plans.iter().filter(|p| p.error_status == Some(500)).count();
        assert!((450..750).contains(&errors), "{errors}");
        assert!(plans.iter().all(|p| p.stream.disconnect_after == Some(2)));
    }

    #[test]
    fn token_bucket_allows_a_burst_then_refills() {
        let now = Instant::now();
        let mut b = TokenBucket::new(
            RateLimitFault {
                requests_per_sec: 2.0,
                burst: 2,
            },
            now,
        );
        assert!(b.take(now).is_ok());
        assert!(b.take(now).is_ok());
        let wait = b.take(now).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9);
        assert!(b.take(now + Duration::from_millis(500)).is_ok());
    }
}
