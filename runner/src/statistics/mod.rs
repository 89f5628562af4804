//! Every formula, once: from a request's [`Measurement`](crate::client::measurement::Measurement)
//! to its record ([`record`], with [`token_timeline`] for per-token gaps), the part of it a
//! running row keeps in memory ([`record_digest`]) and the on-disk spool of the full records
//! ([`spool`]); then a row's statistics ([`stats`]), switching time ([`switching`]; per request
//! under mixed traffic, [`mixed_switching`]), batch sizes ([`batching`]) and summary
//! ([`summary`]). No file names and no output formats: those are
//! [`crate::output`]'s.

pub mod batching;
pub mod mixed_switching;
pub mod record;
pub mod record_digest;
pub mod spool;
pub mod stats;
pub mod summary;
pub mod switching;
pub mod token_timeline;
