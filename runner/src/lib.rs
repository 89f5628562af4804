//! coebench's engine: benchmarks LLM endpoints that serve many models behind one API
//! (a composition of experts), and simulates such an endpoint.
//!
//! Layers, each in its own module:
//! - [`plan`]: the typed benchmark plan every input is translated into;
//! - [`input`]: reading kit configs, model-configs CSVs and plan files, and validating them;
//! - [`credentials`]: API keys and URLs from the environment, with [`redaction`] removing
//!   them from text;
//! - [`tokenizer`]: token counting;
//! - [`prompt`]: prompts of an exact token length and which one each request sends;
//! - [`image`]: the generated images of multimodal rows;
//! - [`client`]: endpoint clients that send requests and measure their streams;
//! - [`measurement`]: what a client observed of one request;
//! - [`engine`]: the load loops that run rows;
//! - [`record`]: per-request metrics, with [`token_timeline`] for per-token gaps, and
//!   [`record_digest`], the part of a record a running row keeps in memory;
//! - [`stats`], [`switching`], [`batching`], [`summary`]: a row's statistics and summary;
//! - [`output`]: every file a run writes;
//! - [`report`]: the compact run report handed to the operator;
//! - [`metrics`]: live Prometheus metrics of a run (served, pushed);
//! - [`simulator`]: the composition-of-experts endpoint simulator;
//! - [`timer`], [`sys`], [`base64`]: precise sleeping, the few operating-system calls, and
//!   the one encoding the crate needs.

pub mod base64;
pub mod batching;
pub mod client;
pub mod credentials;
pub mod engine;
pub mod image;
pub mod input;
pub mod measurement;
pub mod metrics;
pub mod output;
pub mod plan;
pub mod prompt;
pub mod record;
pub mod record_digest;
pub mod redaction;
pub mod report;
pub mod simulator;
pub mod socket_time;
pub mod stats;
pub mod summary;
pub mod switching;
pub mod sys;
pub mod timer;
pub mod token_timeline;
pub mod tokenizer;
