//! `coebench simulate`: serve the endpoint simulator until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use coebench_simulator::{ServeOptions, SimulatorError, TlsSetting, serve};

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
    coebench_support::sys::raise_open_file_limit();
    let options = ServeOptions {
        config: args.config.clone(),
        listen: args.listen,
        truth_log: args.truth_log.clone(),
        seed: args.seed,
        tls: tls_setting(args),
        reuse_port: args.reuse_port,
    };
    // Register the signal handlers before the simulator starts listening, so a SIGTERM that
    // arrives as soon as it says where it listens still shuts it down gracefully.
    match runtime.block_on(async { serve(options, shutdown_signal()).await }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(
            e @ (SimulatorError::Invalid(_)
            | SimulatorError::Parse { .. }
            | SimulatorError::Read { .. }
            | SimulatorError::Tokenizer(_)
            | SimulatorError::Tls(_)),
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

/// What the HTTPS flags ask for (clap has checked how they combine).
fn tls_setting(args: &SimulateArgs) -> Option<TlsSetting> {
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsSetting::Files {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => args.tls.then(|| TlsSetting::Generated {
            names: args.tls_name.clone(),
            cert_out: args.tls_cert_out.clone(),
        }),
    }
}

/// Completes on Ctrl-C or SIGTERM (how Kubernetes stops a pod). The handlers are registered
/// when this is called, not when the future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    async move {
        let terminated = async {
            match terminate.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let interrupted = async {
            match interrupt.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = terminated => {}
            () = interrupted => {}
        }
        tracing::info!("shutting down");
    }
}
