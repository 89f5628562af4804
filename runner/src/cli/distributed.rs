//! The command line's side of distributed runs: which role this process plays (one process,
//! coordinator, or worker), starting the coordinator (and, on one machine, its worker
//! processes), and `coebench worker`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use coebench_plan::MAX_WORKERS;
use coebench_plan::Plan;
use coebench_plan::report::{RunOutcome, RunReport};
use coebench_runner::client::ClientOptions;
use coebench_runner::client::source::SourceAddresses;
use coebench_runner::distributed::coordinator::{Coordinator, CoordinatorOptions};
use coebench_runner::distributed::expected_host;
use coebench_runner::distributed::local::LocalWorkers;
use coebench_runner::distributed::worker::{WorkerExit, WorkerOptions, serve};
use coebench_runner::engine::run::exit_code;

use crate::cli::args::{RunArgs, WorkerArgs};
use crate::cli::messages;

/// The part this process plays in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A run of one process.
    Single,
    /// Worker 0: listens on `listen` and coordinates; `local` when it starts the other workers
    /// itself (no `--coordinator`).
    Coordinator {
        /// Where workers connect.
        listen: SocketAddr,
        /// Whether this process starts the workers.
        local: bool,
    },
    /// A worker of index 1 or more, connecting to `coordinator`.
    Worker {
        /// The coordinator's address.
        coordinator: String,
        /// This worker's index.
        index: u32,
    },
}

/// The role `args` give this process in a run of `workers` workers; `Err` names a bad flag.
pub fn role(args: &RunArgs, workers: u32) -> Result<Role, String> {
    if !(1..=MAX_WORKERS).contains(&workers) {
        return Err(format!(
            "--workers / workers: {workers} is outside 1 to {MAX_WORKERS}"
        ));
    }
    if workers == 1 {
        return Ok(Role::Single);
    }
    let Some(coordinator) = &args.coordinator else {
        return Ok(Role::Coordinator {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            local: true,
        });
    };
    let index = args.worker_index.unwrap_or(0);
    if index >= workers {
        return Err(format!(
            "--worker-index / JOB_COMPLETION_INDEX: {index} is not below the {workers} workers"
        ));
    }
    if index > 0 {
        return Ok(Role::Worker {
            coordinator: coordinator.clone(),
            index,
        });
    }
    let port = coordinator
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .ok_or_else(|| {
            format!("--coordinator {coordinator:?}: give HOST:PORT, e.g. run-0.run-workers:7470")
        })?;
    Ok(Role::Coordinator {
        listen: SocketAddr::from(([0, 0, 0, 0], port)),
        local: false,
    })
}

/// A started coordinator and, on one machine, its worker processes.
pub struct Coordination {
    /// The coordinator, its workers connected.
    pub coordinator: Arc<Coordinator>,
    /// The worker processes it started, if it did.
    pub local: Option<LocalWorkers>,
}

/// Listens on `listen`, starts the local workers when `local`, and waits for every worker.
/// `Err` says why the run cannot start (a worker that never connected: `WorkerLost`).
pub async fn coordinate(
    plan: &Plan,
    listen: SocketAddr,
    local: bool,
    args: &RunArgs,
) -> Result<Coordination, (RunOutcome, String)> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        (
            RunOutcome::Failed,
            format!("cannot listen on {listen}: {e}"),
        )
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| (RunOutcome::Failed, e.to_string()))?;
    let rendezvous = Duration::from_secs(args.rendezvous_timeout);
    let workers = if local {
        let exe = std::env::current_exe().map_err(|e| {
            (
                RunOutcome::Failed,
                format!("cannot find coebench's binary: {e}"),
            )
        })?;
        let extra: Vec<String> = match &args.source_addresses {
            Some(sources) => vec!["--source-addresses".into(), sources.to_string()],
            None => Vec::new(),
        };
        let spawned = LocalWorkers::spawn(&exe, address, plan.workers, rendezvous, &extra)
            .map_err(|e| {
                (
                    RunOutcome::Failed,
                    format!("cannot start the worker processes: {e}"),
                )
            })?;
        Some(spawned)
    } else {
        None
    };
    let pids = workers.as_ref().map(LocalWorkers::pids).unwrap_or_default();
    let coordinator_address = args.coordinator.clone().unwrap_or_default();
    let expected: Box<dyn Fn(u32) -> String + Send + Sync> = if local {
        Box::new(move |i| match pids.iter().find(|(index, _)| *index == i) {
            Some((_, pid)) => format!("the local worker process {pid}"),
            None => format!("the local worker {i}"),
        })
    } else {
        Box::new(move |i| expected_host(&coordinator_address, i))
    };
    tracing::info!(%address, workers = plan.workers, "waiting for the workers");
    let advertised_host = (!local).then(|| {
        let coordinator = args.coordinator.as_deref().unwrap_or_default();
        coordinator
            .rsplit_once(':')
            .map_or(coordinator, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    });
    let coordinator = Coordinator::rendezvous(
        listener,
        CoordinatorOptions {
            workers: plan.workers,
            rendezvous,
            expected,
            advertised_host,
        },
    )
    .await
    .map_err(|message| (RunOutcome::WorkerLost, message))?;
    Ok(Coordination {
        coordinator: Arc::new(coordinator),
        local: workers,
    })
}

/// Runs `coebench worker`.
pub fn worker(args: &WorkerArgs) -> ExitCode {
    serve_worker(
        args.coordinator.clone(),
        args.index,
        Duration::from_secs(args.rendezvous_timeout),
        args.source_addresses.clone().unwrap_or_default(),
        None,
    )
}

/// Runs this process as worker `index` of the run `coordinator` coordinates, to its end, its
/// connections bound to its share of `sources`. Exit 0 when the run is done, 8 when the
/// coordinator was lost; `report_file` gets a report only then.
pub fn serve_worker(
    coordinator: String,
    index: u32,
    rendezvous: Duration,
    sources: SourceAddresses,
    report_file: Option<&std::path::Path>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            messages::error(&format!("cannot start the runtime: {e}"));
            return ExitCode::from(exit_code(RunOutcome::Failed));
        }
    };
    coebench_support::sys::raise_open_file_limit();
    let exit = runtime.block_on(serve(WorkerOptions {
        coordinator,
        index,
        rendezvous,
        env: Box::new(|name| std::env::var(name).ok()),
        client: ClientOptions::default(),
        source_addresses: sources,
    }));
    let (outcome, message) = match exit {
        WorkerExit::Done => return ExitCode::SUCCESS,
        WorkerExit::CoordinatorLost(why) => (
            RunOutcome::WorkerLost,
            format!("worker {index} lost the coordinator: {why}"),
        ),
        WorkerExit::Failed(why) => (
            RunOutcome::Failed,
            format!("worker {index} could not set up: {why}"),
        ),
    };
    messages::error(&message);
    if let Some(path) = report_file {
        let report = RunReport {
            version: 1,
            run_name: String::new(),
            outcome,
            results_path: None,
            rows: Vec::new(),
            rows_omitted: 0,
            message: Some(message),
        };
        if let Err(e) = std::fs::write(path, report.to_bounded_json()) {
            messages::error(&format!("cannot write {}: {e}", path.display()));
        }
    }
    ExitCode::from(exit_code(outcome))
}
