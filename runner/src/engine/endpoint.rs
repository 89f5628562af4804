//! Getting an endpoint ready: resolve a real endpoint's URL and key from the environment, or start
//! the simulator in-process on a free port; and say what the endpoint declares about its models
//! so the plan can be validated against it. The workers of a distributed run use their
//! coordinator's simulator ([`use_served_simulator`]), so one simulator serves, and one truth
//! log records, every request of the run.
//!
//! An in-process simulator runs on its own single-thread tokio runtime, so its work never
//! delays the client's tasks on the client's runtime (only the CPU is shared).

use std::net::IpAddr;
use std::path::Path;

use crate::credentials::{ApiKey, CredentialError, ResolvedEndpoint, resolve_endpoint};
use crate::output::manifest::redact_url;
use coebench_plan::input::validate::{ModelCatalog, UnknownCatalog};
use coebench_plan::{ApiKind, EndpointSpec};
use coebench_simulator::{
    ApiMode, Simulator, SimulatorConfig, SimulatorError, SimulatorHandle, StartOptions,
};

/// Why an endpoint could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// A credential is missing.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The in-process simulator could not load its config or start.
    #[error(transparent)]
    Simulator(#[from] SimulatorError),
    /// The simulator's runtime could not be started.
    #[error("cannot start the simulator's runtime: {0}")]
    SimulatorRuntime(String),
}

/// An in-process simulator and the runtime it runs on. Both are `Some` until shut down; a
/// runtime must not be dropped in an async context, so `Drop` stops it in the background.
struct HostedSimulator {
    handle: Option<SimulatorHandle>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl HostedSimulator {
    fn handle(&self) -> &SimulatorHandle {
        self.handle.as_ref().expect("present until shut down")
    }

    /// Shuts the simulator down gracefully (flushing its truth log), then its runtime.
    async fn shutdown(mut self) {
        if let Some(handle) = self.handle.take()
            && let Err(e) = handle.shutdown().await
        {
            tracing::error!("simulator shutdown: {e}");
        }
    }
}

impl Drop for HostedSimulator {
    fn drop(&mut self) {
        drop(self.handle.take());
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// An endpoint ready for a client.
pub struct ReadyEndpoint {
    resolved: ResolvedEndpoint,
    simulator: Option<HostedSimulator>,
    /// The endpoint is a simulator another process (the run's coordinator) serves.
    served_by_coordinator: bool,
}

impl ReadyEndpoint {
    /// The URL and key the client uses.
    pub fn resolved(&self) -> &ResolvedEndpoint {
        &self.resolved
    }

    /// The in-process simulator, when the endpoint is one.
    pub fn simulator(&self) -> Option<&SimulatorHandle> {
        self.simulator.as_ref().map(HostedSimulator::handle)
    }

    /// The in-process simulator's URL, when the endpoint is one (a distributed run's workers
    /// use it).
    pub fn hosted_simulator_url(&self) -> Option<&str> {
        self.simulator.as_ref().map(|_| self.resolved.url.as_str())
    }

    /// What the endpoint declares about its models.
    pub fn catalog(&self) -> &dyn ModelCatalog {
        match &self.simulator {
            Some(hosted) => hosted.handle().config(),
            None => &UnknownCatalog,
        }
    }

    /// The endpoint for humans: API and URL, never a key.
    pub fn describe(&self) -> String {
        let url = redact_url(&self.resolved.url);
        match &self.simulator {
            Some(_) => format!("in-process simulator at {url}"),
            None if self.served_by_coordinator => format!("the coordinator's simulator at {url}"),
            None => format!("{} at {url}", self.resolved.api.as_str()),
        }
    }

    /// Stops the in-process simulator, if any, flushing its truth log.
    pub async fn shutdown(self) {
        if let Some(hosted) = self.simulator {
            hosted.shutdown().await;
        }
    }
}

/// Makes `spec` ready: resolves credentials through `env`, or starts the simulator (its config
/// from `spec.simulator`, or the built-in bundle) on a free port of `simulator_listen` (the
/// loopback, unless other hosts' workers must reach it), with an optional ground-truth log.
pub async fn prepare_endpoint(
    spec: &EndpointSpec,
    env: &dyn Fn(&str) -> Option<String>,
    truth_log: Option<&Path>,
    simulator_listen: IpAddr,
) -> Result<ReadyEndpoint, EndpointError> {
    if spec.api != ApiKind::Simulator {
        return Ok(ReadyEndpoint {
            resolved: resolve_endpoint(spec, env)?,
            simulator: None,
            served_by_coordinator: false,
        });
    }
    let config = simulator_config(spec)?;
    let options = StartOptions {
        truth_log: truth_log.map(Path::to_path_buf),
        // The engine never reads the records back; the log (if any) keeps them.
        keep_truth_in_memory: false,
        ..StartOptions::default()
    };
    let listen = std::net::SocketAddr::new(simulator_listen, 0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("coebench-simulator")
        .enable_all()
        .build()
        .map_err(|e| EndpointError::SimulatorRuntime(e.to_string()))?;
    let handle = runtime
        .spawn(Simulator::start_with(config, listen, options))
        .await
        .map_err(|e| EndpointError::SimulatorRuntime(e.to_string()))??;
    let url = handle.base_url();
    Ok(ReadyEndpoint {
        resolved: simulator_endpoint(handle.config(), url),
        simulator: Some(HostedSimulator {
            handle: Some(handle),
            runtime: Some(runtime),
        }),
        served_by_coordinator: false,
    })
}

/// The endpoint a distributed run's worker uses for a simulator plan: the simulator its
/// coordinator serves at `url`, spoken to as `spec`'s simulator config says (API mode and key),
/// so the run has one simulator and one truth log, not one per worker.
pub fn use_served_simulator(
    spec: &EndpointSpec,
    url: String,
) -> Result<ReadyEndpoint, EndpointError> {
    let config = simulator_config(spec)?;
    Ok(ReadyEndpoint {
        resolved: simulator_endpoint(&config, url),
        simulator: None,
        served_by_coordinator: true,
    })
}

/// The simulator config of a simulator plan: `spec.simulator`'s file, or the built-in bundle.
fn simulator_config(spec: &EndpointSpec) -> Result<SimulatorConfig, SimulatorError> {
    match &spec.simulator {
        Some(path) => SimulatorConfig::from_yaml_file(Path::new(path)),
        None => Ok(SimulatorConfig::builtin()),
    }
}

/// The endpoint a client uses for a simulator of `config` at `url`: `sncloud` (or `openai` in
/// OpenAI mode), with the simulator's configured API key.
fn simulator_endpoint(config: &SimulatorConfig, url: String) -> ResolvedEndpoint {
    let api = match config.api {
        ApiMode::Sncloud => ApiKind::Sncloud,
        ApiMode::Openai => ApiKind::Openai,
    };
    ResolvedEndpoint {
        api,
        url,
        api_key: config.api_key.clone().map(ApiKey::new),
        ca_certificate: None,
    }
}
