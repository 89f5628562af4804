//! The labels every runner series carries, and where they come from.
//!
//! A run's identity is `namespace`, `benchmark` and `run`; each row adds `model` and `row` (its
//! index in the plan, from 0). Nothing per request is ever a label, so a runner exports a
//! bounded number of series: rows x (histograms + outcomes + token counters + gauge).
//! `namespace` and `benchmark` come from `--metrics-label key=value` flags, else the
//! `COEBENCH_NAMESPACE` and `COEBENCH_BENCHMARK` environment variables (which the operator's
//! runner Job sets), else they are empty; `run` is the run's name. This module reads no
//! environment itself: the caller passes a reader.

use prometheus_client::encoding::EncodeLabelSet;

/// Environment variable holding the `namespace` label.
pub const NAMESPACE_ENV: &str = "COEBENCH_NAMESPACE";
/// Environment variable holding the `benchmark` label.
pub const BENCHMARK_ENV: &str = "COEBENCH_BENCHMARK";

/// Keys `--metrics-label` accepts.
pub const LABEL_KEYS: [&str; 2] = ["namespace", "benchmark"];

/// A `--metrics-label` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Not of the form `key=value`.
    #[error("--metrics-label {0:?} is not of the form key=value (e.g. namespace=perf)")]
    Malformed(String),
    /// A key other than [`LABEL_KEYS`].
    #[error(
        "--metrics-label key {0:?} is not one coebench sets; use namespace or benchmark \
         (the label set is fixed so that every runner's series aggregate)"
    )]
    UnknownKey(String),
}

/// The labels of a run's series, `run` included once the run has a name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RunLabels {
    /// Kubernetes namespace of the benchmark (empty on the command line).
    pub namespace: String,
    /// Name of the `CoeBenchmark` (empty on the command line).
    pub benchmark: String,
    /// Name of the run.
    pub run: String,
}

impl RunLabels {
    /// Resolves `namespace` and `benchmark` from `flags` (`key=value`, later flags win) and then
    /// from the environment through `env`; `run` is left empty until the run starts.
    pub fn resolve(
        flags: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<RunLabels, LabelError> {
        let mut labels = RunLabels {
            namespace: env(NAMESPACE_ENV).unwrap_or_default(),
            benchmark: env(BENCHMARK_ENV).unwrap_or_default(),
            run: String::new(),
        };
        for flag in flags {
            let (key, value) = flag
                .split_once('=')
                .ok_or_else(|| LabelError::Malformed(flag.clone()))?;
            match key.trim() {
                "namespace" => labels.namespace = value.trim().to_string(),
                "benchmark" => labels.benchmark = value.trim().to_string(),
                other => return Err(LabelError::UnknownKey(other.to_string())),
            }
        }
        Ok(labels)
    }

    /// The labels of row `row_index`, which sends to `model`.
    pub fn row(&self, row_index: usize, model: &str) -> RowLabels {
        RowLabels {
            run: self.clone(),
            model: model.to_string(),
            row: row_index.to_string(),
        }
    }
}

/// The labels of a row's series.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RowLabels {
    /// The run's labels.
    #[prometheus(flatten)]
    pub run: RunLabels,
    /// Model the row sends to.
    pub model: String,
    /// Index of the row in the plan, from 0.
    pub row: String,
}

/// The labels of a row's request counter: the row's, and how the request ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The row's labels.
    #[prometheus(flatten)]
    pub row: RowLabels,
    /// `ok`, or the failure class (see [`super::OUTCOMES`]).
    pub outcome: &'static str,
}

/// The labels of a worker's series in a distributed run: the row's, and the worker's index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct WorkerLabels {
    /// The row's labels.
    #[prometheus(flatten)]
    pub row: RowLabels,
    /// The worker's index (0 is the coordinator).
    pub worker: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flags_override_the_environment() {
        let from_env = RunLabels::resolve(
            &[],
            &env(&[(NAMESPACE_ENV, "perf"), (BENCHMARK_ENV, "nightly")]),
        )
        .unwrap();
        assert_eq!(
            (from_env.namespace.as_str(), from_env.benchmark.as_str()),
            ("perf", "nightly")
        );
        let flags = [
            "benchmark=adhoc".to_string(),
            "namespace = team-a".to_string(),
        ];
        let labels = RunLabels::resolve(&flags, &env(&[(BENCHMARK_ENV, "nightly")])).unwrap();
        assert_eq!(labels.namespace, "team-a");
        assert_eq!(labels.benchmark, "adhoc");
        assert_eq!(
            RunLabels::resolve(&[], &env(&[])).unwrap(),
            RunLabels::default()
        );
    }

    #[test]
    fn bad_flags_say_what_is_accepted() {
        let err = RunLabels::resolve(&["team".into()], &env(&[])).unwrap_err();
        assert!(err.to_string().contains("key=value"), "{err}");
        let err = RunLabels::resolve(&["pod=x".into()], &env(&[])).unwrap_err();
        assert!(err.to_string().contains("namespace or benchmark"), "{err}");
    }

    #[test]
    fn a_row_adds_its_model_and_index() {
        let run = RunLabels {
            run: "r".into(),
            ..RunLabels::default()
        };
        let row = run.row(3, "expert-a");
        assert_eq!((row.model.as_str(), row.row.as_str()), ("expert-a", "3"));
        assert_eq!(row.run.run, "r");
    }
}
