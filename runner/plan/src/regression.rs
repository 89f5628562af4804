//! Regression thresholds: how much worse a metric may get from a baseline run to a candidate
//! before the candidate counts as regressed. One concept with one name and one syntax, shared by
//! `coebench compare --max-regression METRIC=LIMIT` (which also tests significance on the
//! per-request samples) and the operator's `spec.regression.maxRegression` (which compares the
//! percentiles in the runs' status).
//!
//! A limit is `REL%`, `ABS` (in the metric's unit: seconds, or tokens per second) or both joined
//! by `,` (`10%`, `0.05`, `10%,0.05`); when both are set, both must be exceeded. Without a limit
//! for a metric, [`DEFAULT_RELATIVE`] applies.

use std::collections::BTreeMap;

use serde::Serialize;

/// A compared metric (client side, at p50, p90 and p99).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Client-side time to first token (lower is better).
    Ttft,
    /// Client-side end-to-end latency (lower is better).
    E2e,
    /// Client-side output tokens per second per request (higher is better).
    TokensPerS,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 3] = [Metric::Ttft, Metric::E2e, Metric::TokensPerS];

    /// The metric's name in flags, files and the operator's `maxRegression` keys.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Ttft => "ttft",
            Metric::E2e => "e2e",
            Metric::TokensPerS => "tokens_per_s",
        }
    }

    /// Whether a larger value is worse.
    pub fn higher_is_worse(self) -> bool {
        !matches!(self, Metric::TokensPerS)
    }

    /// The unit of an absolute limit, for messages.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Ttft | Metric::E2e => "s",
            Metric::TokensPerS => " tokens/s",
        }
    }

    /// Parses a metric name.
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// How much worse `candidate` is than `baseline` (positive when worse, in the metric's
    /// unit).
    pub fn worse_by(self, baseline: f64, candidate: f64) -> f64 {
        if self.higher_is_worse() {
            candidate - baseline
        } else {
            baseline - candidate
        }
    }
}

/// The compared quantiles, by name and level.
pub const QUANTILES: [(&str, f64); 3] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)];

/// The relative limit of a metric without one: 5 %.
pub const DEFAULT_RELATIVE: f64 = 0.05;

/// How large a regression may be: both bounds that are set must be exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Threshold {
    /// Largest allowed relative change for the worse (0.05 = 5 %).
    pub relative: Option<f64>,
    /// Largest allowed absolute change for the worse, in the metric's unit.
    pub absolute: Option<f64>,
}

impl Default for Threshold {
    fn default() -> Self {
        Threshold {
            relative: Some(DEFAULT_RELATIVE),
            absolute: None,
        }
    }
}

impl Threshold {
    /// Whether a change for the worse of `worse_by` from a value `baseline` exceeds it
    /// (`worse_by` positive when worse; an improvement never exceeds it).
    pub fn exceeded(&self, worse_by: f64, baseline: f64) -> bool {
        if worse_by.is_nan() || worse_by <= 0.0 {
            return false;
        }
        let relative = self
            .relative
            .is_none_or(|limit| baseline.abs() > 0.0 && worse_by / baseline.abs() > limit);
        let absolute = self.absolute.is_none_or(|limit| worse_by > limit);
        relative && absolute
    }

    /// Parses `REL%`, `ABS` (a number in the metric's unit) or both joined by `,`
    /// (`10%`, `0.05`, `10%,0.05`).
    pub fn parse(text: &str) -> Result<Threshold, String> {
        let mut threshold = Threshold {
            relative: None,
            absolute: None,
        };
        for part in text.split(',').map(str::trim) {
            if let Some(percent) = part.strip_suffix('%') {
                let value: f64 = percent
                    .trim()
                    .parse()
                    .map_err(|_| format!("{part:?} is not a percentage"))?;
                if !(value >= 0.0 && value.is_finite()) {
                    return Err(format!("{part:?} must be 0% or more"));
                }
                threshold.relative = Some(value / 100.0);
            } else {
                let value: f64 = part
                    .parse()
                    .map_err(|_| format!("{part:?} is neither a percentage (10%) nor a number"))?;
                if !(value >= 0.0 && value.is_finite()) {
                    return Err(format!("{part:?} must be 0 or more"));
                }
                threshold.absolute = Some(value);
            }
        }
        Ok(threshold)
    }

    /// The limit as written: `10%`, `0.05s`, `10% and 0.05s`.
    pub fn describe(&self, metric: Metric) -> String {
        let relative = self.relative.map(|r| format!("{}%", round(r * 100.0)));
        let absolute = self
            .absolute
            .map(|a| format!("{}{}", round(a), metric.unit()));
        match (relative, absolute) {
            (Some(r), Some(a)) => format!("{r} and {a}"),
            (Some(r), None) => r,
            (None, Some(a)) => a,
            (None, None) => "any change".into(),
        }
    }
}

fn round(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

/// Every metric's threshold: [`Threshold::default`] unless set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thresholds(pub BTreeMap<Metric, Threshold>);

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds(
            Metric::ALL
                .into_iter()
                .map(|m| (m, Threshold::default()))
                .collect(),
        )
    }
}

impl Thresholds {
    /// The threshold of `metric`.
    pub fn get(&self, metric: Metric) -> Threshold {
        self.0.get(&metric).copied().unwrap_or_default()
    }

    /// Sets one metric's threshold.
    pub fn set(&mut self, metric: Metric, threshold: Threshold) {
        self.0.insert(metric, threshold);
    }

    /// The defaults with `limits` (metric name → limit, as in `maxRegression`) on top; an
    /// error names the metric or the limit that is wrong and how to write it.
    pub fn from_limits<'a>(
        limits: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Thresholds, String> {
        let mut thresholds = Thresholds::default();
        for (name, limit) in limits {
            let metric = Metric::parse(name.trim()).ok_or_else(|| {
                format!("unknown metric {name:?}; use one of ttft, e2e, tokens_per_s")
            })?;
            let threshold = Threshold::parse(limit).map_err(|e| {
                format!("{name}: {e}; write REL%, ABS or both, e.g. 10% or 10%,0.05")
            })?;
            thresholds.set(metric, threshold);
        }
        Ok(thresholds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_with_clear_errors() {
        assert_eq!(
            Threshold::parse("10%,0.05").unwrap(),
            Threshold {
                relative: Some(0.1),
                absolute: Some(0.05)
            }
        );
        assert!(Threshold::parse("ten").unwrap_err().contains("\"ten\""));
        assert!(Threshold::parse("-5%").unwrap_err().contains("0% or more"));
        // Both bounds must be exceeded.
        let t = Threshold::parse("10%,0.05").unwrap();
        assert!(!t.exceeded(0.04, 0.1));
        assert!(!t.exceeded(0.06, 1.0));
        assert!(t.exceeded(0.2, 1.0));
        // An improvement never exceeds a threshold, even a zero one.
        assert!(!Threshold::parse("0%").unwrap().exceeded(-0.5, 1.0));
        assert_eq!(t.describe(Metric::E2e), "10% and 0.05s");
        assert_eq!(
            Threshold::parse("20").unwrap().describe(Metric::TokensPerS),
            "20 tokens/s"
        );
    }

    #[test]
    fn limits_override_the_defaults_by_metric_name() {
        let t = Thresholds::from_limits([("e2e", "10%,0.05")]).unwrap();
        assert_eq!(t.get(Metric::E2e).absolute, Some(0.05));
        assert_eq!(t.get(Metric::Ttft), Threshold::default());
        let e = Thresholds::from_limits([("latency", "5%")]).unwrap_err();
        assert!(
            e.contains("\"latency\"") && e.contains("tokens_per_s"),
            "{e}"
        );
        let e = Thresholds::from_limits([("ttft", "fast")]).unwrap_err();
        assert!(e.starts_with("ttft: ") && e.contains("10%,0.05"), "{e}");
        assert_eq!(Metric::TokensPerS.worse_by(100.0, 80.0), 20.0);
        assert!((Metric::Ttft.worse_by(0.1, 0.3) - 0.2).abs() < 1e-12);
    }
}
