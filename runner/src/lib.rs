//! coebench's engine: benchmarks LLM endpoints that serve many models behind one API
//! (a composition of experts), and simulates such an endpoint.
//!
//! Layers, each in its own module:
//! - [`plan`]: the typed benchmark plan every input is translated into;
//! - [`credentials`]: API keys and URLs from the environment;
//! - [`measurement`]: what a client observed of one request;
//! - [`tokenizer`]: token counting;
//! - [`prompt`]: prompts of an exact token length and which one each request sends;
//! - [`image`]: the generated images of multimodal rows;
//! - [`client`]: endpoint clients that send requests and measure their streams;
//! - [`report`]: the compact run report handed to the operator.

pub mod client;
pub mod credentials;
pub mod image;
pub mod measurement;
pub mod plan;
pub mod prompt;
pub mod report;
pub mod tokenizer;
