//! A finished row's files in the run folder: `<base>_individual_responses.json` (the
//! records, in request order) and `<base>_summary.json`, both indented by 4 spaces like the
//! kit's and written atomically, and `<base>_response_texts.jsonl` when the run saves the
//! generated texts (its spool renamed into place).
//!
//! Unlike the kit, a row whose every request failed still gets both files (kit-reference 3.4).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::OutputError;
use super::atomic::{write_atomic_with, write_json_atomic};
use crate::statistics::summary::RowResult;

/// Where a row's files were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFilePaths {
    /// `<base>_individual_responses.json`.
    pub individual_responses: PathBuf,
    /// `<base>_summary.json`.
    pub summary: PathBuf,
    /// `<base>_response_texts.jsonl`, when the run saves generated texts.
    pub response_texts: Option<PathBuf>,
}

/// The folder of a run's per-row files: `<output_files_dir>/<run_name>`.
pub fn run_dir(output_files_dir: &Path, run_name: &str) -> PathBuf {
    output_files_dir.join(run_name)
}

/// Writes a row's records and summary into `run_dir` (created if missing); on failure
/// neither file is left.
pub fn write_row_files(run_dir: &Path, result: &RowResult) -> Result<RowFilePaths, OutputError> {
    let paths = RowFilePaths {
        individual_responses: run_dir.join(result.summary.individual_responses_file()),
        summary: run_dir.join(result.summary.summary_file()),
        response_texts: result
            .summary
            .response_texts_file
            .as_ref()
            .map(|name| run_dir.join(name)),
    };
    write_records(&paths.individual_responses, result)?;
    if let Err(e) = write_json_atomic(&paths.summary, &result.summary) {
        // A row's two files exist together or not at all: no responses without a summary.
        let _ = std::fs::remove_file(&paths.individual_responses);
        return Err(e);
    }
    if let (Some(spool), Some(target)) = (&result.response_texts, &paths.response_texts)
        && let Err(e) = spool.persist(target)
    {
        let _ = std::fs::remove_file(&paths.individual_responses);
        let _ = std::fs::remove_file(&paths.summary);
        return Err(e.into());
    }
    Ok(paths)
}

/// Writes the row's records as a JSON array indented by 4 spaces, streaming them from the spool
/// one at a time. Each element is its own 4-space pretty JSON with every line indented once
/// more, which is exactly what pretty-printing the whole array gives (JSON strings hold no raw
/// newlines).
fn write_records(path: &Path, result: &RowResult) -> Result<(), OutputError> {
    write_atomic_with(path, |out| {
        if result.digests.is_empty() {
            return out.write_all(b"[]").map_err(OutputError::from_io(path));
        }
        out.write_all(b"[\n").map_err(OutputError::from_io(path))?;
        let mut first = true;
        let mut element = Vec::new();
        result.for_each_record(|record| -> Result<(), OutputError> {
            element.clear();
            super::atomic::pretty_into(&mut element, record).map_err(|source| {
                OutputError::Json {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            let separator: &[u8] = if first { b"" } else { b",\n" };
            first = false;
            out.write_all(separator)
                .map_err(OutputError::from_io(path))?;
            for (i, line) in element.split(|b| *b == b'\n').enumerate() {
                if i > 0 {
                    out.write_all(b"\n").map_err(OutputError::from_io(path))?;
                }
                out.write_all(b"    ").map_err(OutputError::from_io(path))?;
                out.write_all(line).map_err(OutputError::from_io(path))?;
            }
            Ok(())
        })?;
        out.write_all(b"\n]").map_err(OutputError::from_io(path))
    })
}
