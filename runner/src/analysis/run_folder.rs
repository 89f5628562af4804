//! A finished run read back from its folder: `run.json` (the plan's rows and each row's files)
//! and each row's `*_individual_responses.json` (the per-request numbers). Rows that did not run
//! have no samples; files that cannot be read or parsed are errors naming the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use coebench_plan::Row;

/// The per-request numbers of one row, successful requests only (plus how many failed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    /// Client-side time to first token, seconds.
    pub ttft_s: Vec<f64>,
    /// Client-side end-to-end latency, seconds.
    pub e2e_s: Vec<f64>,
    /// Client-side output tokens per second of each request.
    pub output_tokens_per_s: Vec<f64>,
    /// Requests that failed (an error code or message).
    pub failed: usize,
}

/// One row of a run: as planned, and what was measured.
#[derive(Debug, Clone)]
pub struct RowData {
    /// Position in the plan, from 0.
    pub index: usize,
    /// The row as planned.
    pub row: Row,
    /// Its requests' numbers (empty when the row did not run).
    pub samples: Samples,
}

/// A run read back from its folder.
#[derive(Debug, Clone)]
pub struct RunFolder {
    /// The folder.
    pub path: PathBuf,
    /// The run's name.
    pub run_name: String,
    /// Every planned row, in plan order.
    pub rows: Vec<RowData>,
}

/// Why a run folder cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The folder has no `run.json`.
    #[error(
        "{path} has no run.json: give a run's folder (<output_files_dir>/<run name>/, printed at the end of `coebench run`)"
    )]
    NotARun {
        /// The folder given.
        path: String,
    },
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not what coebench writes.
    #[error("{path} is not a coebench {what}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What it should be.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
struct Manifest {
    run_name: String,
    inputs: ManifestInputs,
    #[serde(default)]
    rows: Vec<ManifestRow>,
}

#[derive(Deserialize)]
struct ManifestInputs {
    plan: ManifestPlan,
}

#[derive(Deserialize)]
struct ManifestPlan {
    rows: Vec<Row>,
}

#[derive(Deserialize)]
struct ManifestRow {
    row_index: usize,
    #[serde(default)]
    individual_responses_file: Option<String>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(default)]
    error_code: Option<serde_json::Value>,
    #[serde(default)]
    error_msg: Option<String>,
    #[serde(default)]
    client_ttft_s: Option<f64>,
    #[serde(default)]
    client_end_to_end_latency_s: Option<f64>,
    #[serde(default)]
    client_output_token_per_s_per_request: Option<f64>,
}

fn read(path: &Path) -> Result<Vec<u8>, ReadError> {
    std::fs::read(path).map_err(|source| ReadError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Reads the run in `folder`.
pub fn read_run_folder(folder: &Path) -> Result<RunFolder, ReadError> {
    let manifest_path = folder.join("run.json");
    if !manifest_path.is_file() {
        return Err(ReadError::NotARun {
            path: folder.display().to_string(),
        });
    }
    let manifest: Manifest =
        serde_json::from_slice(&read(&manifest_path)?).map_err(|e| ReadError::Format {
            path: manifest_path.display().to_string(),
            what: "run manifest",
            message: e.to_string(),
        })?;
    let mut rows: Vec<RowData> = manifest
        .inputs
        .plan
        .rows
        .into_iter()
        .enumerate()
        .map(|(index, row)| RowData {
            index,
            row,
            samples: Samples::default(),
        })
        .collect();
    for entry in manifest.rows {
        let Some(file) = entry.individual_responses_file else {
            continue;
        };
        let Some(row) = rows.get_mut(entry.row_index) else {
            return Err(ReadError::Format {
                path: manifest_path.display().to_string(),
                what: "run manifest",
                message: format!(
                    "row_index {} is past the plan's {} rows",
                    entry.row_index,
                    rows.len()
                ),
            });
        };
        row.samples = read_samples(&folder.join(&file))?;
    }
    Ok(RunFolder {
        path: folder.to_path_buf(),
        run_name: manifest.run_name,
        rows,
    })
}

/// The numbers of one `*_individual_responses.json`.
fn read_samples(path: &Path) -> Result<Samples, ReadError> {
    let records: Vec<Record> =
        serde_json::from_slice(&read(path)?).map_err(|e| ReadError::Format {
            path: path.display().to_string(),
            what: "individual responses file",
            message: e.to_string(),
        })?;
    let mut samples = Samples::default();
    for record in records {
        let errored = record.error_code.as_ref().is_some_and(|c| !c.is_null())
            || record.error_msg.as_deref().is_some_and(|m| !m.is_empty());
        let measured = (
            record.client_ttft_s,
            record.client_end_to_end_latency_s,
            record.client_output_token_per_s_per_request,
        );
        match measured {
            (Some(ttft), Some(e2e), tokens_per_s) if !errored => {
                samples.ttft_s.push(ttft);
                samples.e2e_s.push(e2e);
                if let Some(rate) = tokens_per_s.filter(|r| r.is_finite()) {
                    samples.output_tokens_per_s.push(rate);
                }
            }
            _ => samples.failed += 1,
        }
    }
    Ok(samples)
}
