//! Value checks of a [`SimulatorConfig`]: every problem at once, each with its field path, the
//! bad value and the fix, including whether the bundle fits DDR and each configuration fits HBM.
//!
//! Parsing (shapes, unknown fields) is `config.rs`'s job; this only looks at values.

use std::collections::HashSet;
use std::fmt;

use super::config::{FaultsConfig, ModelConfig, SimulatorConfig};

/// One problem of a config: where, and what to do about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblem {
    /// Field path, such as `models[1].decode_tokens_per_sec`.
    pub path: String,
    /// What is wrong, quoting the value, and the fix.
    pub message: String,
}

/// Every problem found in a config.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblems {
    /// The problems, in field order.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "the simulator config has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {}: {}", p.path, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigProblems {}

struct Checker {
    problems: Vec<ConfigProblem>,
}

impl Checker {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn positive(&mut self, path: &str, value: f64, fix: &str) {
        if !(value.is_finite() && value > 0.0) {
            self.problem(
                path,
                format!("must be a positive number, got {value}; {fix}"),
            );
        }
    }

    fn non_negative(&mut self, path: &str, value: f64, fix: &str) {
        if !(value.is_finite() && value >= 0.0) {
            self.problem(path, format!("must be 0 or more, got {value}; {fix}"));
        }
    }

    fn probability(&mut self, path: &str, value: f64) {
        if !(value.is_finite() && (0.0..=1.0).contains(&value)) {
            self.problem(
                path,
                format!("must be a probability between 0 and 1, got {value}"),
            );
        }
    }
}

impl SimulatorConfig {
    /// Checks every value and the memory fit, reporting all problems at once.
    pub fn validate(&self) -> Result<(), ConfigProblems> {
        let mut c = Checker {
            problems: Vec::new(),
        };
        if !(self.batching_window_ms.is_finite() && self.batching_window_ms >= 0.0) {
            c.problem(
                "batching_window_ms",
                format!(
                    "must be 0 or more milliseconds, got {}; 5 is typical",
                    self.batching_window_ms
                ),
            );
        }
        if self.executors == 0 {
            c.problem("executors", "must be at least 1, got 0");
        }
        if self.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            c.problem(
                "api_key",
                "is empty; remove the field to need no key, or set a non-empty key",
            );
        }
        let mem = &self.memory;
        c.positive(
            "memory.ddr_capacity_gb",
            mem.ddr_capacity_gb,
            "give the DDR size in GB",
        );
        c.positive(
            "memory.hbm_capacity_gb",
            mem.hbm_capacity_gb,
            "give the HBM size in GB",
        );
        c.positive(
            "memory.load_bandwidth_gb_per_s",
            mem.load_bandwidth_gb_per_s,
            "give the DDR-to-HBM bandwidth in GB/s",
        );
        if self.models.is_empty() {
            c.problem("models", "is empty; list at least one model");
        }
        let mut seen = HashSet::new();
        for (i, model) in self.models.iter().enumerate() {
            let path = format!("models[{i}]");
            if !seen.insert(model.name.as_str()) {
                c.problem(
                    format!("{path}.name"),
                    format!(
                        "{:?} is used by an earlier model; give each model its own name",
                        model.name
                    ),
                );
            }
            check_model(&mut c, &path, model);
        }
        if let Some(expert) = &self.default_expert
            && self.model(expert).is_none()
        {
            c.problem(
                "default_expert",
                format!(
                    "{expert:?} is not a model of this bundle; use one of {:?}",
                    self.model_names()
                ),
            );
        }
        check_faults(&mut c, "faults", &self.faults);
        check_memory_fit(&mut c, self);
        if c.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigProblems {
                problems: c.problems,
            })
        }
    }
}

fn check_model(c: &mut Checker, path: &str, m: &ModelConfig) {
    if m.name.trim().is_empty() || m.name.chars().any(|ch| ch.is_control() || ch == '"') {
        c.problem(
            format!("{path}.name"),
            format!(
                "{:?} is not a usable model name; use printable characters without quotes",
                m.name
            ),
        );
    }
    c.positive(
        &format!("{path}.weights_gb"),
        m.weights_gb,
        "give the weights' size in GB",
    );
    c.non_negative(
        &format!("{path}.kv_mb_per_token"),
        m.kv_mb_per_token,
        "use 0 to count weights only",
    );
    c.positive(
        &format!("{path}.prefill_tokens_per_sec"),
        m.prefill_tokens_per_sec,
        "give prompt tokens per second",
    );
    if m.batch_sizes.is_empty() {
        c.problem(
            format!("{path}.batch_sizes"),
            "is empty; list the supported batch sizes, e.g. [1, 4, 8, 16]",
        );
    }
    let ascending = m.batch_sizes.windows(2).all(|w| w[0] < w[1]);
    if !ascending || m.batch_sizes.first() == Some(&0) {
        c.problem(
            format!("{path}.batch_sizes"),
            format!(
                "{:?} must be strictly ascending and at least 1, e.g. [1, 4, 8, 16]",
                m.batch_sizes
            ),
        );
    }
    if m.decode_tokens_per_sec.len() != m.batch_sizes.len() {
        c.problem(
            format!("{path}.decode_tokens_per_sec"),
            format!(
                "has {} values but batch_sizes has {}; give one decode speed per batch size",
                m.decode_tokens_per_sec.len(),
                m.batch_sizes.len()
            ),
        );
    }
    for (j, &v) in m.decode_tokens_per_sec.iter().enumerate() {
        c.positive(
            &format!("{path}.decode_tokens_per_sec[{j}]"),
            v,
            "give tokens per second per request",
        );
    }
    if m.max_sequence_length < 2 {
        c.problem(
            format!("{path}.max_sequence_length"),
            format!("must be at least 2, got {}", m.max_sequence_length),
        );
    }
    let b = &m.sequence_length_buckets;
    if b.windows(2).any(|w| w[0] >= w[1])
        || b.first() == Some(&0)
        || b.last().is_some_and(|&l| l > m.max_sequence_length)
    {
        c.problem(
            format!("{path}.sequence_length_buckets"),
            format!(
                "{b:?} must be strictly ascending, at least 1 and at most max_sequence_length ({})",
                m.max_sequence_length
            ),
        );
    }
    if let Some(n) = m.natural_length
        && (n.min == 0 || n.min > n.max)
    {
        c.problem(
            format!("{path}.natural_length"),
            format!(
                "min {} and max {} must satisfy 1 <= min <= max",
                n.min, n.max
            ),
        );
    }
    if let Some(s) = m.speculative {
        if s.draft_tokens == 0 {
            c.problem(
                format!("{path}.speculative.draft_tokens"),
                "must be at least 1, got 0",
            );
        }
        c.probability(
            &format!("{path}.speculative.acceptance_probability"),
            s.acceptance_probability,
        );
    }
    if let Some(v) = m.vision {
        if v.patch_pixels == 0 {
            c.problem(
                format!("{path}.vision.patch_pixels"),
                "must be at least 1, got 0",
            );
        }
        if v.max_tokens_per_image == Some(0) {
            c.problem(
                format!("{path}.vision.max_tokens_per_image"),
                "must be at least 1; remove it for no cap",
            );
        }
    }
    check_faults(c, &format!("{path}.faults"), &m.faults);
}

fn check_faults(c: &mut Checker, path: &str, f: &FaultsConfig) {
    if let Some(e) = f.error {
        c.probability(&format!("{path}.error.probability"), e.probability);
        if e.status != 500 && e.status != 503 {
            c.problem(
                format!("{path}.error.status"),
                format!("must be 500 or 503, got {}", e.status),
            );
        }
    }
    if let Some(r) = f.rate_limit {
        c.positive(
            &format!("{path}.rate_limit.requests_per_sec"),
            r.requests_per_sec,
            "give the refill rate in requests per second",
        );
        if r.burst == 0 {
            c.problem(
                format!("{path}.rate_limit.burst"),
                "must be at least 1, got 0",
            );
        }
    }
    if let Some(s) = f.slow_first_byte {
        c.non_negative(
            &format!("{path}.slow_first_byte.delay_ms"),
            s.delay_ms,
            "give the delay in milliseconds",
        );
        c.probability(
            &format!("{path}.slow_first_byte.probability"),
            s.probability,
        );
    }
    if let Some(s) = f.stall {
        c.non_negative(
            &format!("{path}.stall.duration_ms"),
            s.duration_ms,
            "give the pause in milliseconds",
        );
        c.probability(&format!("{path}.stall.probability"), s.probability);
    }
    if let Some(d) = f.disconnect {
        c.probability(&format!("{path}.disconnect.probability"), d.probability);
    }
    if let Some(m) = f.malformed_event {
        c.probability(
            &format!("{path}.malformed_event.probability"),
            m.probability,
        );
    }
}

/// DDR must hold every model's weights; HBM must hold each configuration on its own.
fn check_memory_fit(c: &mut Checker, config: &SimulatorConfig) {
    let mem = &config.memory;
    let total: f64 = config.models.iter().map(|m| m.weights_gb).sum();
    if mem.ddr_capacity_gb.is_finite() && total > mem.ddr_capacity_gb {
        let sizes: Vec<String> = config
            .models
            .iter()
            .map(|m| format!("{} {} GB", m.name, m.weights_gb))
            .collect();
        c.problem(
            "memory.ddr_capacity_gb",
            format!(
                "the bundle's weights need {total} GB ({}) but DDR holds {} GB; remove or shrink models, or raise ddr_capacity_gb",
                sizes.join(", "),
                mem.ddr_capacity_gb
            ),
        );
    }
    if !mem.hbm_capacity_gb.is_finite() || mem.hbm_capacity_gb <= 0.0 {
        return;
    }
    for (i, m) in config.models.iter().enumerate() {
        let (Some(&bucket), Some(&batch)) = (m.buckets().last(), m.batch_sizes.last()) else {
            continue;
        };
        let size = m.configuration_gb(bucket, batch);
        if size > mem.hbm_capacity_gb {
            c.problem(
                format!("models[{i}]"),
                format!(
                    "the configuration of {} at sequence length {bucket} and batch size {batch} needs {size} GB but HBM holds {} GB; lower kv_mb_per_token, batch_sizes or max_sequence_length, or raise memory.hbm_capacity_gb",
                    m.name, mem.hbm_capacity_gb
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimulatorError;

    fn parse(yaml: &str) -> SimulatorConfig {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn every_mistake_is_reported_at_once_with_its_path() {
        let config = parse(
            r#"
executors: 0
memory: {ddr_capacity_gb: 100, hbm_capacity_gb: 50, load_bandwidth_gb_per_s: 0}
models:
  - name: a
    weights_gb: 10
    prefill_tokens_per_sec: 1000
    batch_sizes: [4, 1]
    decode_tokens_per_sec: [100]
    max_sequence_length: 4096
    faults: {error: {status: 404}}
  - name: a
    weights_gb: 10
    prefill_tokens_per_sec: -1
    decode_tokens_per_sec: [100]
    max_sequence_length: 4096
    speculative: {draft_tokens: 4, acceptance_probability: 1.5}
"#,
        );
        let err = config.validate().unwrap_err();
        let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
        for expected in [
            "executors",
            "memory.load_bandwidth_gb_per_s",
            "models[0].batch_sizes",
            "models[0].decode_tokens_per_sec",
            "models[0].faults.error.status",
            "models[1].name",
            "models[1].prefill_tokens_per_sec",
            "models[1].speculative.acceptance_probability",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
        let text = err.to_string();
        assert!(text.contains("8 problems"), "{text}");
        assert!(text.contains("got 404"), "{text}");
    }

    #[test]
    fn an_over_capacity_bundle_names_its_models_and_sizes() {
        let yaml = r#"
memory: {ddr_capacity_gb: 100, hbm_capacity_gb: 80, load_bandwidth_gb_per_s: 10}
models:
  - {name: big-70b, weights_gb: 70, prefill_tokens_per_sec: 1000, decode_tokens_per_sec: [100], max_sequence_length: 4096}
  - {name: mid-34b, weights_gb: 34, prefill_tokens_per_sec: 1000, decode_tokens_per_sec: [100], max_sequence_length: 4096}
"#;
        let err = SimulatorConfig::from_yaml_str(yaml, "t").unwrap_err();
        assert!(matches!(err, SimulatorError::Invalid(_)));
        let text = err.to_string();
        for part in ["big-70b 70 GB", "mid-34b 34 GB", "104 GB", "100 GB"] {
            assert!(text.contains(part), "{part} missing: {text}");
        }
    }

    #[test]
    fn a_configuration_larger_than_hbm_is_refused() {
        let yaml = r#"
memory: {ddr_capacity_gb: 1000, hbm_capacity_gb: 20, load_bandwidth_gb_per_s: 10}
models:
  - {name: m, weights_gb: 10, kv_mb_per_token: 1, batch_sizes: [1, 8], prefill_tokens_per_sec: 1000, decode_tokens_per_sec: [100, 50], max_sequence_length: 4096}
"#;
        let err = SimulatorConfig::from_yaml_str(yaml, "t").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("batch size 8"), "{text}");
        assert!(text.contains("HBM holds 20 GB"), "{text}");
    }
}
