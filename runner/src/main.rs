//! The `coebench` command line: parse arguments, load the plan, hand it to the engine, print.
//!
//! Exit codes: 0 every row ran; 1 an internal error; 2 invalid input or usage (nothing was
//! sent); 3 the endpoint rejected the credentials; 4 every request of every row failed;
//! 5 interrupted (rows that finished were written).

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::args::{Cli, Command, LogFormat};

/// Exit code for invalid input or usage.
const EXIT_INVALID_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Schema => {
            let schema = schemars::schema_for!(coebench_runner::plan::Plan);
            match serde_json::to_string_pretty(&schema) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Validate(input) => match cli::inputs::load_plan(&input).and_then(|loaded| {
            coebench_runner::input::validate::validate_plan(
                &loaded.plan,
                &loaded.source,
                &coebench_runner::input::validate::UnknownCatalog,
            )
            .map(|()| loaded)
        }) {
            Ok(loaded) => {
                for note in &loaded.notes {
                    eprintln!("note: {note}");
                }
                println!("{}: {} rows, valid", loaded.source, loaded.plan.rows.len());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprint!("{errors}");
                ExitCode::from(EXIT_INVALID_INPUT)
            }
        },
        Command::Run(_) | Command::Simulate(_) => {
            eprintln!("error: not available yet");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
