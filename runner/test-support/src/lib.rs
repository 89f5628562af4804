//! Fixtures shared by coebench's integration tests, one module each:
//! - [`hostile_server`]: a plain-threads HTTP/1.1 server for tests of the `coebench` binary,
//!   answering benchmark requests with errors that echo them, stalls or cut streams;
//! - [`fake_hub`]: a Hugging Face hub on loopback serving `tokenizer.json` files, public or
//!   gated;
//! - [`engine_support`]: a small, fast simulated bundle over real loopback HTTP, plans against
//!   it, and runs of the real engine with an injected environment;
//! - [`gguf_tokenizer`]: the tokenizer a GGUF model embeds, exported as a `tokenizer.json`;
//! - [`kit_contract`]: the kit's record keys, consolidated columns and summary types;
//! - [`llama3_tokenizer`]: where the tests find a real Llama 3 `tokenizer.json`;
//! - [`output_fixtures`]: synthetic measurements, a predictable token counter, a reader of JSON
//!   key order;
//! - [`scripted_server`]: an HTTP/1.1 server answering with scripted bytes, delays, stalls and
//!   disconnects.

pub mod engine_support;
pub mod fake_hub;
pub mod gguf_tokenizer;
pub mod hostile_server;
pub mod kit_contract;
pub mod llama3_tokenizer;
pub mod output_fixtures;
pub mod scripted_server;
