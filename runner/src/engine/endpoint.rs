//! Getting an endpoint ready: resolve a real endpoint's URL and key from the environment, or start
//! the simulator in-process on a free loopback port; and say what the endpoint declares about
//! its models so the plan can be validated against it.
//!
//! An in-process simulator runs on its own single-thread tokio runtime, so its work never
//! delays the client's tasks on the client's runtime (only the CPU is shared).

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
        resolved: simulator_endpoint(&handle),
        simulator: Some(HostedSimulator {
            handle: Some(handle),
            runtime: Some(runtime),
        }),
    })
}

/// The endpoint a client uses for an in-process simulator: `sncloud` (or `openai` in OpenAI
/// mode) at [`SimulatorHandle::base_url`], with the simulator's configured API key.
fn simulator_endpoint(handle: &SimulatorHandle) -> ResolvedEndpoint {
    let config = handle.config();
    let api = match config.api {
        ApiMode::Sncloud => ApiKind::Sncloud,
        ApiMode::Openai => ApiKind::Openai,
    };
    ResolvedEndpoint {
        api,
        url: handle.base_url(),
        api_key: config.api_key.clone().map(ApiKey::new),
        ca_certificate: None,
    }
}
