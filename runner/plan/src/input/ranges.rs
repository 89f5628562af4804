//! The documented range of every numeric input (docs/troubleshooting.md lists them). Values
//! outside are input errors, reported by `validate` and `run` alike before anything is sent,
//! so no number reaches a conversion that cannot hold it (a duration of 1e300 s panics).

/// The allowed values of one numeric input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// Smallest allowed value.
    pub min: f64,
    /// Largest allowed value.
    pub max: f64,
    /// What the number counts, for messages (`seconds`, `requests per second`, `tokens`).
    pub unit: &'static str,
}

impl Range {
    const fn new(min: f64, max: f64, unit: &'static str) -> Self {
        Range { min, max, unit }
    }

    /// Whether `value` is allowed (never NaN or infinite).
    pub fn contains(&self, value: f64) -> bool {
        value.is_finite() && value >= self.min && value <= self.max
    }

    /// `None` when `value` is allowed; otherwise what is wrong with it.
    pub fn problem(&self, value: f64) -> Option<String> {
        (!self.contains(value))
            .then(|| format!("{} is out of range: {}", shown(value), self.describe()))
    }

    /// The range in words, e.g. `0.001 to 86400 seconds`.
    pub fn describe(&self) -> String {
        format!("{} to {} {}", self.min, self.max, self.unit)
    }
}

/// `value` as written in a message: plainly, or in exponent form when it is huge or tiny
/// (`1e-300`, not three hundred zeros).
fn shown(value: f64) -> String {
    let magnitude = value.abs();
    if value != 0.0 && magnitude.is_finite() && !(1e-4..1e7).contains(&magnitude) {
        format!("{value:e}")
    } else {
        format!("{value}")
    }
}

/// `timeout` / `timeoutSeconds` / `--timeout`: 1 ms to about 11.5 days.
pub const TIMEOUT_SECONDS: Range = Range::new(0.001, 1e6, "seconds");
/// `request_timeout` / `requestTimeoutSeconds` / `--request-timeout`: 1 ms to a day.
pub const REQUEST_TIMEOUT_SECONDS: Range = Range::new(0.001, 86_400.0, "seconds");
/// `time_delay` / `timeDelaySeconds` / `--time-delay`: up to a day.
pub const TIME_DELAY_SECONDS: Range = Range::new(0.0, 86_400.0, "seconds");
/// `stopGraceSeconds` / `--stop-grace`: up to 5 minutes.
pub const STOP_GRACE_SECONDS: Range = Range::new(0.0, 300.0, "seconds");
/// A row's `qps`: one request per 1,000 s to 100,000 per second.
pub const QPS: Range = Range::new(0.001, 100_000.0, "requests per second");
/// A row's input and output tokens.
pub const TOKENS: Range = Range::new(1.0, 1_000_000.0, "tokens");
/// A row's number of requests.
pub const NUM_REQUESTS: Range = Range::new(1.0, 1_000_000.0, "requests");
/// A row's concurrency.
pub const CONCURRENCY: Range = Range::new(1.0, 100_000.0, "requests in flight");
/// A row's declared maximum sequence length.
pub const MAX_SEQUENCE_LENGTH: Range = Range::new(1.0, 100_000_000.0, "tokens");
/// `--metrics-linger`: up to an hour.
pub const METRICS_LINGER_SECONDS: Range = Range::new(0.0, 3_600.0, "seconds");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_reject_extremes_and_keep_ordinary_values() {
        for bad in [
            f64::NAN,
            f64::INFINITY,
            -1.0,
            0.0,
            1e300,
            1e20,
            f64::MIN_POSITIVE / 2.0,
        ] {
            assert!(!TIMEOUT_SECONDS.contains(bad), "{bad}");
            assert!(!QPS.contains(bad), "{bad}");
        }
        assert!(!QPS.contains(1e-300));
        assert!(TIMEOUT_SECONDS.contains(3600.0) && QPS.contains(2.5));
        assert!(TIME_DELAY_SECONDS.contains(0.0) && !TIME_DELAY_SECONDS.contains(1e300));
        let message = REQUEST_TIMEOUT_SECONDS.problem(1e20).unwrap();
        assert!(message.contains("0.001 to 86400 seconds"), "{message}");
    }
}
