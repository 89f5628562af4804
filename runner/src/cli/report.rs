//! `coebench report RUN_DIR`: writes the run's HTML report (`report.html` in its folder, or
//! `--output`), with a comparison section when a baseline run is given.

use std::process::ExitCode;

use coebench_runner::analysis::compare::{CompareOptions, compare};
use coebench_runner::analysis::report::{REPORT_FILE, write_report};
use coebench_runner::analysis::run_folder::read_run_folder;

use crate::cli::args::ReportArgs;
use crate::cli::messages;

/// Runs `coebench report`.
pub fn report(args: &ReportArgs) -> ExitCode {
    let run = match read_run_folder(&args.run) {
        Ok(run) => run,
        Err(e) => {
            messages::error(&e.to_string());
            return ExitCode::from(2);
        }
    };
    let comparison = match &args.baseline {
        Some(path) => match read_run_folder(path) {
            Ok(baseline) => Some(compare(&baseline, &run, &CompareOptions::default())),
            Err(e) => {
                messages::error(&e.to_string());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| args.run.join(REPORT_FILE));
    match write_report(&run, comparison.as_ref(), &path) {
        Ok(()) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            messages::error(&format!("cannot write {}: {e}", path.display()));
            ExitCode::FAILURE
        }
    }
}
