//! Every formula, once: from a request's [`Measurement`](crate::client::measurement::Measurement)
//! to its record ([`record`], with [`token_timeline`] for per-token gaps), the part of it a
//! running row keeps in memory ([`record_digest`]) and the on-disk spool of the full records
//! ([`spool`]) and, when asked, of the generated texts ([`response_texts`]); then a row's
//! statistics ([`stats`]), switching time ([`switching`]; per request under mixed traffic,
//! [`mixed_switching`]), batch sizes ([`batching`]), goodput ([`goodput`]) and summary ([`summary`]), with
//! [`python_text`] for the kit's Python-printed lists and maps. No file names and no output
//! formats: those are [`crate::output`]'s.

pub mod batching;
pub mod goodput;
pub mod mixed_switching;
pub mod python_text;
pub mod record;
pub mod record_digest;
pub mod response_texts;
pub mod spool;
pub mod stats;
pub mod summary;
pub mod switching;
pub mod token_timeline;
