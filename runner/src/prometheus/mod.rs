//! Prometheus metrics of a run, live: histograms of client and server time to first token,
//! inter-token latency and end-to-end latency; counters of requests by outcome and of tokens; a
//! gauge of requests in flight; the run's progress. Names, labels and buckets are documented in
//! `docs/metrics.md` ("Prometheus metrics").
//!
//! - [`exporter`]: the registry, fed by the run's observer hooks;
//! - [`labels`]: the bounded label set and where `namespace` and `benchmark` come from;
//! - [`buckets`]: the fixed histogram boundaries every runner shares;
//! - [`server`]: `/metrics` over HTTP while the run lasts;
//! - [`push`]: the final state to a Pushgateway;
//! - [`session`]: all of the above from a run's start to its end.

pub mod buckets;
pub mod exporter;
pub mod labels;
pub mod push;
pub mod server;
pub mod session;

use std::net::SocketAddr;

pub use exporter::{OUTCOMES, RunMetrics};
pub use labels::{LabelError, RunLabels};
pub use session::{ExportOptions, Exporter};

/// A metrics failure.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The `/metrics` address cannot be listened on.
    #[error("cannot serve metrics on --metrics-addr {addr}: {source} (is the port in use?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The Pushgateway URL is unusable.
    #[error("--pushgateway {url:?}: {reason} (e.g. http://pushgateway:9091)")]
    PushUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The push failed.
    #[error("pushing to {url} failed: {reason}")]
    Push {
        /// The push URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The metrics could not be encoded.
    #[error("the metrics could not be encoded")]
    Encode,
}
