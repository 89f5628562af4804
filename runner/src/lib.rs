//! coebench's engine: benchmarks LLM endpoints that serve many models behind one API
//! (a composition of experts), and simulates such an endpoint.
//!
//! Layers, each in its own module:
//! - [`plan`]: the typed benchmark plan every input is translated into;
//! - [`credentials`]: API keys and URLs from the environment;
//! - [`measurement`]: what a client observed of one request;
//! - [`tokenizer`]: token counting and exact-length prompts;
//! - [`report`]: the compact run report handed to the operator;
//! - [`record`]: per-request metrics, with [`token_timeline`] for per-token gaps;
//! - [`stats`], [`switching`], [`batching`], [`summary`]: a row's statistics and summary;
//! - [`output`]: every file a run writes.

pub mod batching;
pub mod credentials;
pub mod measurement;
pub mod output;
pub mod plan;
pub mod record;
pub mod report;
pub mod stats;
pub mod summary;
pub mod switching;
pub mod token_timeline;
pub mod tokenizer;
