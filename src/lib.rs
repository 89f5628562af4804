//! `coebench-operator`: the Kubernetes controller for `CoeBenchmark` and `CoeBenchmarkRun`.
//!
//! A `CoeBenchmark` asks for runs; each `CoeBenchmarkRun` becomes a ConfigMap holding the plan
//! and a runner Job; the runner's compact report comes back through the Pod's termination
//! message into the run's and the benchmark's status. Modules:
//! - [`crd`]: the resource types and their schema rules;
//! - [`resources`]: pure builders of the Job and ConfigMap of a run;
//! - [`conditions`], [`status`]: condition bookkeeping and report-to-status translation;
//! - [`regression`]: whether a run regressed against a baseline run, by thresholds;
//! - [`schedule`], [`clock`]: cron schedules and their CronJob-style decisions, and the time
//!   they are decided at;
//! - [`controller`]: the two reconcilers and the code that runs them;
//! - [`http`], [`metrics`], [`lease`], [`cli`]: the operator process.

pub mod cli;
pub mod clock;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod error;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod regression;
pub mod resources;
pub mod schedule;
pub mod status;

pub use error::{Error, Result};
