//! A finished row's two files in the run folder: `<base>_individual_responses.json` (the
//! records, in request order) and `<base>_summary.json`, both indented by 4 spaces like the
//! kit's and written atomically.
//!
//! Unlike the kit, a row whose every request failed still gets both files (kit-reference 3.4).

use std::path::{Path, PathBuf};

use super::OutputError;
use super::atomic::write_json_atomic;
use crate::summary::RowResult;

/// Where a row's files were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFilePaths {
    /// `<base>_individual_responses.json`.
    pub individual_responses: PathBuf,
    /// `<base>_summary.json`.
    pub summary: PathBuf,
}

/// The folder of a run's per-row files: `<output_files_dir>/<run_name>`.
pub fn run_dir(output_files_dir: &Path, run_name: &str) -> PathBuf {
    output_files_dir.join(run_name)
}

/// Writes a row's records and summary into `run_dir` (created if missing).
pub fn write_row_files(run_dir: &Path, result: &RowResult) -> Result<RowFilePaths, OutputError> {
    let paths = RowFilePaths {
        individual_responses: run_dir.join(result.summary.individual_responses_file()),
        summary: run_dir.join(result.summary.summary_file()),
    };
    write_json_atomic(&paths.individual_responses, &result.records)?;
    write_json_atomic(&paths.summary, &result.summary)?;
    Ok(paths)
}
