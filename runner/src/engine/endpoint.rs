//! Getting an endpoint ready: resolve a real endpoint's URL and key from the environment, or start
//! the simulator in-process on a free loopback port; and say what the endpoint declares about
//! its models so the plan can be validated against it.
//!
//! An in-process simulator runs on its own single-thread tokio runtime, so its work never
//! delays the client's tasks on the client's runtime (only the CPU is shared).

use std::path::Path;

use crate::credentials::{CredentialError, ResolvedEndpoint, resolve_endpoint};
use crate::input::validate::{ModelCatalog, UnknownCatalog};
use crate::output::manifest::redact_url;
use crate::plan::{ApiKind, EndpointSpec};
use crate::simulator::{Simulator, SimulatorConfig, SimulatorError, SimulatorHandle, StartOptions};

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

/// An in-process simulator and the runtime it runs on.
struct HostedSimulator {
    handle: SimulatorHandle,
    runtime: tokio::runtime::Runtime,
}

/// An endpoint ready for a client.
pub struct ReadyEndpoint {
    resolved: ResolvedEndpoint,
    simulator: Option<HostedSimulator>,
}

impl ReadyEndpoint {
    /// The URL and key the client uses.
    pub fn resolved(&self) -> &ResolvedEndpoint {
        &self.resolved
    }

    /// The in-process simulator, when the endpoint is one.
    pub fn simulator(&self) -> Option<&SimulatorHandle> {
        self.simulator.as_ref().map(|hosted| &hosted.handle)
    }

    /// What the endpoint declares about its models.
    pub fn catalog(&self) -> &dyn ModelCatalog {
        match &self.simulator {
            Some(hosted) => hosted.handle.config(),
            None => &UnknownCatalog,
        }
    }

    /// The endpoint for humans: API and URL, never a key.
    pub fn describe(&self) -> String {
        let url = redact_url(&self.resolved.url);
        match &self.simulator {
            Some(_) => format!("in-process simulator at {url}"),
            None => format!("{} at {url}", self.resolved.api.as_str()),
        }
    }

    /// Stops the in-process simulator, if any, flushing its truth log.
    pub async fn shutdown(self) {
        if let Some(hosted) = self.simulator {
            if let Err(e) = hosted.handle.shutdown().await {
                tracing::error!("simulator shutdown: {e}");
            }
            hosted.runtime.shutdown_background();
        }
    }
}

impl ModelCatalog for SimulatorConfig {
    fn max_sequence_length(&self, model: &str) -> Option<u32> {
        self.model_max_sequence_length(model)
    }

    fn serves(&self, model: &str) -> Option<bool> {
        let expert = model.strip_prefix("Bundle/").unwrap_or(model);
        Some(self.model(expert).is_some())
    }
}

/// Makes `spec` ready: resolves credentials through `env`, or starts the simulator (its config
/// from `spec.simulator`, or the built-in bundle) with an optional ground-truth log.
pub async fn prepare_endpoint(
    spec: &EndpointSpec,
    env: &dyn Fn(&str) -> Option<String>,
    truth_log: Option<&Path>,
) -> Result<ReadyEndpoint, EndpointError> {
    if spec.api != ApiKind::Simulator {
        return Ok(ReadyEndpoint {
            resolved: resolve_endpoint(spec, env)?,
            simulator: None,
        });
    }
    let config = match &spec.simulator {
        Some(path) => SimulatorConfig::from_yaml_file(Path::new(path))?,
        None => SimulatorConfig::builtin(),
    };
    let options = StartOptions {
        truth_log: truth_log.map(Path::to_path_buf),
        // The engine never reads the records back; the log (if any) keeps them.
        keep_truth_in_memory: false,
        ..StartOptions::default()
    };
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("coebench-simulator")
        .enable_all()
        .build()
        .map_err(|e| EndpointError::SimulatorRuntime(e.to_string()))?;
    let handle = runtime
        .spawn(Simulator::start_with(config, loopback, options))
        .await
        .map_err(|e| EndpointError::SimulatorRuntime(e.to_string()))??;
    Ok(ReadyEndpoint {
        resolved: handle.resolved_endpoint(),
        simulator: Some(HostedSimulator { handle, runtime }),
    })
}
