//! `coebench simulate`: serve the endpoint simulator until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use coebench_runner::simulator::{ServeOptions, SimulatorError, serve};

use crate::cli::args::SimulateArgs;

/// Exit code when the simulator config is invalid.
const EXIT_INVALID_CONFIG: u8 = 2;

/// Runs `coebench simulate`.
pub fn simulate(args: &SimulateArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    coebench_runner::sys::raise_open_file_limit();
    let options = ServeOptions {
        config: args.config.clone(),
        listen: args.listen,
        truth_log: args.truth_log.clone(),
        seed: args.seed,
    };
    match runtime.block_on(serve(options, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(
            e @ (SimulatorError::Invalid(_)
            | SimulatorError::Parse { .. }
            | SimulatorError::Read { .. }),
        ) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C or SIGTERM (how Kubernetes stops a pod).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
