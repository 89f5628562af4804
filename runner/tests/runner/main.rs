//! The engine's integration tests, in one test binary: the `coebench` binary as users run it,
//! the client against scripted servers, the engine end to end against the simulator over real
//! loopback HTTP (ground truth, health, scale), output files, Prometheus metrics, the crate's
//! layering rule, jsonl datasets, rows in parallel, hostile servers, inputs, signals and disks
//! (`hardening`), HTTPS against the simulator serving TLS (`https`), fuzzing of every parser of outside input (`fuzz_parsers`), prompt sizing with
//! a real Llama 3 tokenizer (`kit_prompts`), the kit's own pandas readers over a real run's files
//! (`kit_read`), per-model tokenizers downloaded from a loopback Hugging Face hub
//! (`tokenizer_hub`), and the engine against a real llama.cpp server.

mod cli;
mod client_http;
mod compare;
mod datasets;
mod distributed;
mod engine_health;
mod engine_run;
mod engine_scale;
mod fuzz_parsers;
mod hardening;
mod https;
mod kit_prompts;
mod kit_read;
mod layering;
mod output_files;
mod output_records;
mod parallel_rows;
mod prometheus;
mod real_server;
mod report_html;
mod tokenizer_hub;
