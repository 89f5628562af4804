//! `coebench-operator`: the Kubernetes controller for `CoeBenchmark` and `CoeBenchmarkRun`.
//!
//! Thin: parse flags, set up logging, check the CRDs are installed, start the HTTP server, then
//! run the controllers (as the leader, with `--leader-elect`) until SIGTERM or SIGINT.
//! Exit codes: 0 after a clean shutdown, 1 on a startup failure or a lost leader Lease,
//! 2 on a bad flag.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Parser;
use coebench_operator::cli::{Cli, LogFormat};
use coebench_operator::controller::{Context, run_controllers};
use coebench_operator::crd::{CoeBenchmark, CoeBenchmarkRun};
use coebench_operator::metrics::Metrics;
use coebench_operator::{http, lease};
use kube::api::ListParams;
use kube::{Api, Client};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::try_default().await.context(
        "cannot configure a Kubernetes client: run in a cluster or set KUBECONFIG to a kubeconfig file",
    )?;
    check_crds(&client, cli.namespace.as_deref()).await?;

    let metrics = Arc::new(Metrics::new());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(cli.http_addr)
        .await
        .with_context(|| format!("cannot listen on --http-addr {}", cli.http_addr))?;
    tracing::info!(addr = %cli.http_addr, "serving /healthz, /readyz and /metrics");
    let server = tokio::spawn(http::serve(
        listener,
        metrics.clone(),
        ready_rx,
        shutdown_rx.clone(),
    ));
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
    });

    let identity = cli.identity.clone().unwrap_or_else(hostname);
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics,
        cli.settings(),
        Some(identity.clone()),
    ));
    let on_ready = {
        let ready_tx = ready_tx.clone();
        move || {
            let _ = ready_tx.send(true);
        }
    };

    let result = if cli.leader_elect {
        let lease_ns = cli
            .lease_namespace
            .clone()
            .or_else(|| cli.namespace.clone())
            .unwrap_or_else(|| "default".into());
        let mut leadership = lease::join(client, &lease_ns, &cli.lease_name, &identity).await?;
        // A standby replica is healthy and ready to take over.
        let _ = ready_tx.send(true);
        tracing::info!(lease = leadership.lease(), %identity, "standing by for the leader Lease");
        let mut stop = shutdown_rx.clone();
        let leading = tokio::select! {
            acquired = leadership.acquired() => acquired,
            _ = stop.wait_for(|s| *s) => false,
        };
        if !leading {
            leadership.release().await;
            Ok(())
        } else {
            tracing::info!(
                lease = leadership.lease(),
                "leading; starting the controllers"
            );
            let _ = ready_tx.send(false);
            let (ctrl_stop_tx, ctrl_stop_rx) = watch::channel(false);
            let controllers = run_controllers(ctx, cli.namespace.clone(), ctrl_stop_rx, on_ready);
            tokio::pin!(controllers);
            let lost = tokio::select! {
                _ = &mut controllers => false,
                _ = leadership.lost() => true,
                _ = stop.wait_for(|s| *s) => false,
            };
            let _ = ctrl_stop_tx.send(true);
            controllers.await;
            leadership.release().await;
            if lost {
                Err(anyhow::anyhow!(
                    "lost the leader Lease; exiting so that this replica restarts as a standby"
                ))
            } else {
                Ok(())
            }
        }
    } else {
        run_controllers(ctx, cli.namespace.clone(), shutdown_rx.clone(), on_ready).await;
        Ok(())
    };
    server.abort();
    result
}

/// Fails fast, with the fix, when the CRDs are not installed or not readable.
async fn check_crds(client: &Client, namespace: Option<&str>) -> anyhow::Result<()> {
    async fn probe<K>(api: Api<K>, plural: &str) -> anyhow::Result<()>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => bail!(
                "the {plural}.coebench.dev CRD is not installed: run `kubectl apply -f crds/` (or `cargo run --bin crdgen` then apply), then restart the operator"
            ),
            Err(kube::Error::Api(s)) if s.code == 403 => bail!(
                "the operator may not list {plural}.coebench.dev ({}): apply deploy/rbac.yaml and bind it to the operator's service account",
                s.message
            ),
            Err(e) => Err(e).with_context(|| format!("cannot list {plural}.coebench.dev")),
        }
    }
    match namespace {
        Some(ns) => {
            probe(
                Api::<CoeBenchmark>::namespaced(client.clone(), ns),
                "coebenchmarks",
            )
            .await?;
            probe(
                Api::<CoeBenchmarkRun>::namespaced(client.clone(), ns),
                "coebenchmarkruns",
            )
            .await
        }
        None => {
            probe(Api::<CoeBenchmark>::all(client.clone()), "coebenchmarks").await?;
            probe(
                Api::<CoeBenchmarkRun>::all(client.clone()),
                "coebenchmarkruns",
            )
            .await
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the operator");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "coebench-operator".into())
}
