//! coebench's engine: benchmarks LLM endpoints that serve many models behind one API
//! (a composition of experts).
//!
//! The shared plan types, inputs and run report are the `coebench-plan` crate; timers,
//! socket-level timestamps and token counting are `coebench-support`; the endpoint simulator is
//! `coebench-simulator`. This crate's layers, lowest first (a layer uses only the ones before
//! it; `tests/layering.rs` checks it):
//! - [`credentials`]: API keys and URLs from the environment, and
//!   [`credentials::redaction`] of keys and URL credentials from outside text;
//! - [`workload`]: what requests send: prompts of an exact token length, generated images;
//! - [`client`]: endpoint clients that send requests and measure their streams into a
//!   [`client::measurement::Measurement`];
//! - [`statistics`]: every formula once: per-request records, their digests and spool, a row's
//!   statistics, switching time, batch sizes and summary;
//! - [`output`]: every file a run writes;
//! - [`analysis`]: finished runs read back from their folders and compared (`coebench
//!   compare`);
//! - [`engine`]: the run, its rows and their load loops;
//! - [`distributed`]: a run spread over worker processes or Pods, merged exactly;
//! - [`prometheus`]: live Prometheus metrics of a run (served, pushed), fed by the engine's
//!   observer hooks;
//! - [`results_api`]: each finished row written to the run's results ConfigMaps through the
//!   Kubernetes API (the operator's results channel), fed by the same hooks.
//!
//! The `coebench` binary (`main.rs`, `cli/`) sits on top.

pub mod analysis;
pub mod client;
pub mod credentials;
pub mod distributed;
pub mod engine;
pub mod output;
pub mod prometheus;
pub mod results_api;
pub mod statistics;
pub mod workload;
