//! The endpoint simulator: a composition-of-experts LLM endpoint served over real HTTP, with
//! per-model speeds, dynamic batching, executors, an HBM/DDR memory model with switching
//! delays, injected faults, and a ground-truth record of every request.
//!
//! The crate root owns the public API ([`Simulator::start`], [`SimulatorHandle`], the errors);
//! each submodule owns one job: `config` (the `sim.yaml` schema), `validate` (value checks),
//! `server` (HTTP), `request` (body parsing), `wire` (response bytes), `text` (generated
//! words), `image` (image sizes), `tls` (HTTPS certificates), `faults` (seeded fault draws, rate limits), `scheduler`
//! (batching, executors, switching), `memory` (HBM LRU), `batch` (token pacing), `body`
//! (paced response bodies), `message` (what those tasks send each other), `truth` (ground truth and timer error). Each connection is a
//! [`coebench_support::socket_time::TimestampedStream`], so a request's arrival is the kernel's receive
//! time of its head. See `docs/simulator.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), coebench_simulator::SimulatorError> {
//! use coebench_simulator::{Simulator, SimulatorConfig};
//! let sim = Simulator::start(SimulatorConfig::builtin(), "127.0.0.1:0".parse().unwrap()).await?;
//! println!("serving on http://{}/v1", sim.local_addr());
//! let records = sim.truth();
//! sim.shutdown().await?;
//! # let _ = records; Ok(()) }
//! ```

mod batch;
mod body;
pub mod config;
mod context;
mod faults;
pub mod image;
mod memory;
mod message;
mod request;
mod scheduler;
mod server;
mod text;
mod tls;
pub mod truth;
pub mod validate;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use config::{
    ApiMode, DisconnectFault, ErrorFault, FaultsConfig, MalformedEventFault, MemoryConfig,
    ModelConfig, NaturalLength, RateLimitFault, SimulatorConfig, SlowFirstByteFault,
    SpeculativeConfig, StallFault, TlsSetting, VisionConfig,
};
pub use truth::{FaultKind, LagSummary, TruthRecord};
pub use validate::{ConfigProblem, ConfigProblems};

use context::Ctx;

/// Why the simulator could not load its config or start.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// The config file could not be read.
    #[error("cannot read simulator config {path}: {message}; check the path passed to --config")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The YAML does not match the schema.
    #[error(
        "simulator config {origin} is not valid YAML for the schema: {message}; see docs/simulator.md for every field"
    )]
    Parse {
        /// The file (or `<builtin sim.yaml>`).
        origin: String,
        /// The parser's message, with the location.
        message: String,
    },
    /// Values are wrong or the bundle does not fit memory; lists every problem.
    #[error("{0}")]
    Invalid(#[from] ConfigProblems),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}; pick a free port (or port 0) and a local address")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config's `tokenizer` could not be loaded.
    #[error("simulator config: {0}")]
    Tokenizer(#[from] coebench_support::tokenizer::TokenizerError),
    /// HTTPS could not be set up: a certificate or key file is missing or unusable, a name
    /// cannot go in a certificate, or the generated certificate cannot be written.
    #[error("{0}")]
    Tls(String),
    /// The truth log could not be created or written.
    #[error("truth log {path}: {source}; check the directory exists and is writable")]
    TruthLog {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Options of [`Simulator::start_with`]; every field has a default, stated on it.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Append every truth record to this file as JSON lines (truncated at start). Default: none.
    pub truth_log: Option<PathBuf>,
    /// Keep every truth record in memory for [`SimulatorHandle::truth`]. Turn off for long
    /// runs that only need the log. Default true.
    pub keep_truth_in_memory: bool,
    /// On shutdown, how long open responses may take to finish before their connections are
    /// dropped. Default 30 s.
    pub shutdown_grace: Duration,
    /// Record when every token frame was written
    /// ([`TruthRecord::token_written_offsets_us`]), to check a client's inter-token latencies
    /// against the truth. Costs 4 bytes per token event per record. Default false.
    pub record_token_times: bool,
    /// Serve HTTPS ([`TlsSetting`]) instead of plain HTTP. Default: none, plain HTTP.
    pub tls: Option<TlsSetting>,
    /// Bind with `SO_REUSEPORT`, so several simulator processes can listen on one port and the
    /// kernel spreads connections between them (past one process's open-file limit, or its
    /// core). Each process keeps its own truth log. Default false.
    pub reuse_port: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            truth_log: None,
            keep_truth_in_memory: true,
            shutdown_grace: Duration::from_secs(30),
            record_token_times: false,
            tls: None,
            reuse_port: false,
        }
    }
}

/// What `coebench simulate` takes; see [`serve`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `--config`: a `sim.yaml`; `None` serves the built-in bundle.
    pub config: Option<PathBuf>,
    /// `--listen`: the address to bind (port 0 picks a free port).
    pub listen: SocketAddr,
    /// `--truth-log`: append every truth record to this JSON-lines file.
    pub truth_log: Option<PathBuf>,
    /// `--seed`: replaces the config's `seed`.
    pub seed: Option<u64>,
    /// `--tls` (with `--tls-name`, `--tls-cert-out`) or `--tls-cert` and `--tls-key`: serve
    /// HTTPS.
    pub tls: Option<TlsSetting>,
    /// `--reuse-port`: bind with `SO_REUSEPORT` (several processes on one port).
    pub reuse_port: bool,
}

/// Runs a simulator for the command line: loads the config (or the built-in bundle), applies
/// the seed, serves until `shutdown` completes (for example Ctrl-C), then shuts down gracefully.
/// Truth records are not kept in memory (only in the log), so it can run indefinitely.
pub async fn serve(
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SimulatorError> {
    let mut config = match &options.config {
        Some(path) => SimulatorConfig::from_yaml_file(path)?,
        None => SimulatorConfig::builtin(),
    };
    if let Some(seed) = options.seed {
        config.seed = seed;
    }
    let start = StartOptions {
        truth_log: options.truth_log,
        keep_truth_in_memory: false,
        tls: options.tls,
        reuse_port: options.reuse_port,
        ..StartOptions::default()
    };
    let handle = Simulator::start_with(config, options.listen, start).await?;
    handle.run_until(shutdown).await
}

/// Starts simulators. See [`Simulator::start`].
#[derive(Debug)]
pub struct Simulator {
    _private: (),
}

impl Simulator {
    /// Validates `config`, binds `listen` (port 0 picks a free port) and serves until the
    /// returned handle is shut down or dropped. Must be called inside a tokio runtime.
    pub async fn start(
        config: SimulatorConfig,
        listen: SocketAddr,
    ) -> Result<SimulatorHandle, SimulatorError> {
        Self::start_with(config, listen, StartOptions::default()).await
    }

    /// [`Simulator::start`] with options (truth log, memory, shutdown grace).
    pub async fn start_with(
        config: SimulatorConfig,
        listen: SocketAddr,
        options: StartOptions,
    ) -> Result<SimulatorHandle, SimulatorError> {
        config.validate()?;
        let tls = options.tls.as_ref().map(tls::server_tls).transpose()?;
        let listener = bind(listen, options.reuse_port).map_err(|source| SimulatorError::Bind {
            addr: listen,
            source,
        })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| SimulatorError::Bind {
                addr: listen,
                source,
            })?;
        let (log_tx, log_task) = match &options.truth_log {
            Some(path) => {
                let (tx, task) = truth::start_log_writer(path).await.map_err(|source| {
                    SimulatorError::TruthLog {
                        path: path.display().to_string(),
                        source,
                    }
                })?;
                (Some(tx), Some(task))
            }
            None => (None, None),
        };
        let tokenizer = match &config.tokenizer {
            Some(path) => coebench_support::tokenizer::Tokenizer::from_file(path)?,
            None => coebench_support::tokenizer::Tokenizer::embedded(),
        };
        let start = Instant::now();
        let start_unix_us = jiff::Timestamp::now().as_microsecond();
        let (job_tx, job_rx) = mpsc::unbounded_channel();
        let faults = config
            .models
            .iter()
            .map(|m| m.faults.or(&config.faults))
            .collect();
        let limiters = faults::RateLimiters::new(&config, start);
        let ctx = Arc::new(Ctx {
            faults,
            start,
            start_unix_us,
            ordinal: AtomicU64::new(0),
            truth: truth::TruthStore::new(options.keep_truth_in_memory, log_tx),
            lag: truth::LagHistogram::new(),
            limiters,
            tokenizer,
            scheduler: job_tx,
            record_token_times: options.record_token_times,
            config,
        });
        // Start the timer thread now rather than on the first token.
        let _ = coebench_support::timer::default_service();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let scheduler = tokio::spawn(scheduler::run(ctx.clone(), job_rx));
        let (acceptor, certificate_pem) = match tls {
            Some(tls) => (Some(tls.acceptor), Some(tls.certificate_pem)),
            None => (None, None),
        };
        let serving = {
            let ctx = ctx.clone();
            let grace = options.shutdown_grace;
            tokio::spawn(async move {
                server::accept_loop(listener, acceptor, ctx.clone(), shutdown_rx, grace).await;
                // Every connection is gone: nothing more can be scheduled or recorded.
                scheduler.abort();
                ctx.truth.close_log();
            })
        };
        tracing::info!(
            addr = %local_addr,
            https = certificate_pem.is_some(),
            models = ctx.config.models.len(),
            executors = ctx.config.executors,
            seed = ctx.config.seed,
            "simulator listening"
        );
        Ok(SimulatorHandle {
            local_addr,
            ctx,
            shutdown_tx,
            serving: Some(serving),
            log_task,
            truth_log: options.truth_log,
            certificate_pem,
        })
    }
}

/// Pending connections the listener queues (capped by the kernel's `somaxconn`): thousands of
/// clients connect at once when a benchmark opens its streams, and a full queue drops their
/// SYNs, which costs each a one-second retransmission.
const LISTEN_BACKLOG: u32 = 16_384;

/// Binds `addr` with a deep accept queue ([`LISTEN_BACKLOG`]).
fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A running simulator. Dropping it starts the same graceful shutdown without waiting for it;
/// call [`SimulatorHandle::shutdown`] to wait for open responses and the truth log's flush.
pub struct SimulatorHandle {
    local_addr: SocketAddr,
    ctx: Arc<Ctx>,
    shutdown_tx: watch::Sender<bool>,
    /// Accepts and serves connections; after shutdown stops the scheduler and closes the log.
    serving: Option<JoinHandle<()>>,
    log_task: Option<JoinHandle<Result<(), std::io::Error>>>,
    truth_log: Option<PathBuf>,
    /// The served certificate chain (PEM) when serving HTTPS.
    certificate_pem: Option<String>,
}

impl std::fmt::Debug for SimulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatorHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl SimulatorHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://<addr>/v1` (`https://` when serving HTTPS): the API base for chat completions
    /// and the model list.
    pub fn base_url(&self) -> String {
        format!("{}://{}/v1", self.scheme(), self.local_addr)
    }

    /// `https` when serving HTTPS ([`StartOptions::tls`]), else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.certificate_pem.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The served certificate chain as PEM, for clients to trust, when serving HTTPS.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.certificate_pem.as_deref()
    }

    /// The SambaStudio generic endpoint URL (v1 or v2), as a `SAMBASTUDIO_URL` would be
    /// written; clients insert `/stream` after `generic` as the kit does.
    pub fn sambastudio_url(&self, v2: bool) -> String {
        let version = if v2 { "/v2" } else { "" };
        format!(
            "{}://{}/api{version}/predict/generic/coebench/simulator",
            self.scheme(),
            self.local_addr
        )
    }

    /// The config being served.
    pub fn config(&self) -> &SimulatorConfig {
        &self.ctx.config
    }

    /// Every truth record so far, in completion order (empty when
    /// [`StartOptions::keep_truth_in_memory`] is off).
    pub fn truth(&self) -> Vec<TruthRecord> {
        self.ctx.truth.all()
    }

    /// The latest record of request `request_id`, if it has finished.
    pub fn truth_for(&self, request_id: &str) -> Option<TruthRecord> {
        self.ctx.truth.get(request_id)
    }

    /// Waits up to `timeout` for request `request_id` to finish and returns its record. A
    /// record is filed when its response ends, or when its batch finishes if the client left.
    pub async fn wait_for_truth(&self, request_id: &str, timeout: Duration) -> Option<TruthRecord> {
        self.ctx.truth.wait_for(request_id, timeout).await
    }

    /// The timer error (lag of token events behind their schedule) of all requests so far.
    pub fn timer_lag(&self) -> LagSummary {
        self.ctx.lag.summary()
    }

    /// Waits for `signal` (for example Ctrl-C), then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<(), SimulatorError> {
        signal.await;
        self.shutdown().await
    }

    /// Stops accepting connections, lets open responses finish (up to the shutdown grace),
    /// stops the scheduler, and flushes the truth log.
    pub async fn shutdown(mut self) -> Result<(), SimulatorError> {
        let _ = self.shutdown_tx.send(true);
        if let Some(serving) = self.serving.take() {
            let _ = serving.await;
        }
        if let Some(task) = self.log_task.take() {
            let path = self
                .truth_log
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(source)) => return Err(SimulatorError::TruthLog { path, source }),
                Err(join) => {
                    return Err(SimulatorError::TruthLog {
                        path,
                        source: std::io::Error::other(join.to_string()),
                    });
                }
            }
        }
        tracing::info!(addr = %self.local_addr, "simulator stopped");
        Ok(())
    }
}

impl Drop for SimulatorHandle {
    fn drop(&mut self) {
        // The serving task drains connections (within the grace), then stops the scheduler and
        // closes the truth log, which flushes itself.
        let _ = self.shutdown_tx.send(true);
    }
}
