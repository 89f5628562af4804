//! The `coebench` command line: parse arguments, load the plan, hand it to the engine, print.
//!
//! Exit codes: 0 every row ran; 1 an internal error or a failed write; 2 invalid input or
//! usage (nothing was sent); 3 the endpoint rejected the credentials; 4 every request of every
//! row failed; 5 interrupted (rows that finished were written); 6 some rows had every request
//! fail; 7 (`compare`) a significant regression beyond its threshold; 8 a worker of a
//! distributed run was lost or never connected.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::args::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The simulator's log (its address, its shutdown) is its output; a run's is noise.
    let default_filter = match cli.command {
        Command::Simulate(_) => "warn,coebench=info,coebench_runner=info",
        _ => "warn,coebench=info,coebench_runner=info,coebench_simulator=warn",
    };
    init_logging(cli.log_format, default_filter);
    cli::messages::set_format(cli.log_format);
    load_env_file(cli.env_file.as_deref());
    match &cli.command {
        Command::Schema => print_schema(),
        Command::Validate(input) => cli::run::validate(input),
        Command::Run(args) => cli::run::run(args),
        Command::Worker(args) => cli::distributed::worker(args),
        Command::Simulate(args) => cli::simulate::simulate(args),
        Command::Compare(args) => cli::compare::compare(args),
        Command::Report(args) => cli::report::report(args),
    }
}

/// Loads `KEY=value` lines into the environment, never overriding variables already set (the
/// kit loads its `.env` with override; here a Secret or CI variable wins over a file left in a
/// folder). Without `--env-file`, the nearest `.env` from the working folder upwards.
fn load_env_file(path: Option<&std::path::Path>) {
    match path {
        Some(path) => {
            if let Err(e) = dotenvy::from_path(path) {
                cli::messages::warn(&format!("cannot load {}: {e}", path.display()));
            }
        }
        None => {
            let _ = dotenvy::dotenv();
        }
    }
}

fn print_schema() -> ExitCode {
    let schema = schemars::schema_for!(coebench_plan::Plan);
    match serde_json::to_string_pretty(&schema) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            cli::messages::error(&e.to_string());
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
