//! coebench's engine: benchmarks LLM endpoints that serve many models behind one API
//! (a composition of experts), and simulates such an endpoint.
//!
//! Layers, each in its own module:
//! - [`plan`]: the typed benchmark plan every input is translated into;
//! - [`credentials`]: API keys and URLs from the environment;
//! - [`measurement`]: what a client observed of one request;
//! - [`tokenizer`]: token counting and exact-length prompts;
//! - [`report`]: the compact run report handed to the operator.

pub mod credentials;
pub mod measurement;
pub mod plan;
pub mod report;
pub mod simulator;
pub mod timer;
pub mod tokenizer;
