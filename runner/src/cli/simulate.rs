//! `coebench simulate`: serve the endpoint simulator until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use coebench_runner::simulator::{Simulator, SimulatorConfig, SimulatorError, StartOptions};

use crate::cli::args::SimulateArgs;

/// Exit code when the simulator config is invalid.
const EXIT_INVALID_CONFIG: u8 = 2;

/// Runs `coebench simulate`.
pub fn simulate(args: &SimulateArgs) -> ExitCode {
    let config = match &args.config {
        Some(path) => SimulatorConfig::from_yaml_file(path),
        None => Ok(SimulatorConfig::builtin()),
    };
    let mut config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
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
    let options = StartOptions {
        truth_log: args.truth_log.clone(),
        keep_truth_in_memory: false,
        ..StartOptions::default()
    };
    let served = runtime.block_on(async {
        let sim = Simulator::start_with(config, args.listen, options).await?;
        println!(
            "simulator serving {} model(s) on {}",
            sim.config().models.len(),
            sim.base_url()
        );
        for model in sim.config().model_names() {
            println!("  {model}");
        }
        sim.run_until(shutdown_signal()).await
    });
    match served {
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
    eprintln!("shutting down");
}
