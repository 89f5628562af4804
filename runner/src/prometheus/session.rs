//! A run's metrics from start to end: create the registry, serve it while the run lasts, then
//! push the final state to a Pushgateway and keep serving for a last scrape. The command line
//! uses this; nothing here parses arguments or reads the environment.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::MetricsError;
use super::exporter::RunMetrics;
use super::labels::RunLabels;
use super::push::push;
use super::server::MetricsServer;
use crate::engine::load::StopSignal;

/// What to export, and how.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Serve `/metrics` here while the run lasts (`None`: no server).
    pub addr: Option<SocketAddr>,
    /// Push the final state to this Pushgateway (`None`: no push).
    pub pushgateway: Option<String>,
    /// How long to keep serving after the run, so a scrape catches its end (default 0).
    pub linger: Duration,
    /// `namespace` and `benchmark` of every series.
    pub labels: RunLabels,
}

/// A run's metrics: the registry, and its server while the run lasts.
#[derive(Debug)]
pub struct Exporter {
    metrics: Arc<RunMetrics>,
    server: Option<MetricsServer>,
    pushgateway: Option<String>,
    linger: Duration,
}

impl Exporter {
    /// Creates the registry and starts the server, if an address is given.
    pub async fn start(options: ExportOptions) -> Result<Exporter, MetricsError> {
        if let Some(gateway) = &options.pushgateway {
            // A bad URL is reported before the run, not after it.
            super::push::push_url(gateway, "check")?;
        }
        let metrics = Arc::new(RunMetrics::new(options.labels));
        let server = match options.addr {
            Some(addr) => Some(MetricsServer::start(addr, Arc::clone(&metrics)).await?),
            None => None,
        };
        Ok(Exporter {
            metrics,
            server,
            pushgateway: options.pushgateway,
            linger: options.linger,
        })
    }

    /// The registry, which is also the run's observer.
    pub fn metrics(&self) -> Arc<RunMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Where `/metrics` is served, if it is.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(MetricsServer::local_addr)
    }

    /// After the run: pushes (a failure is logged, never fatal), then keeps serving for the
    /// linger time or until `stop`, then stops the server.
    pub async fn finish(self, stop: &StopSignal) {
        let run = self.metrics.labels().run;
        if let Some(gateway) = &self.pushgateway
            && !run.is_empty()
            && let Err(error) = push(gateway, &run, &self.metrics).await
        {
            tracing::warn!(%error, "the run's metrics were not pushed");
        }
        if self.server.is_some() && !self.linger.is_zero() {
            tracing::info!(
                seconds = self.linger.as_secs_f64(),
                "serving the final metrics for one more scrape"
            );
            tokio::select! {
                () = tokio::time::sleep(self.linger) => {}
                () = stop.stopped() => {}
            }
        }
        drop(self.server);
    }
}
