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

/// One request of a row, as the report draws it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// When it was sent, seconds since the Unix epoch (`start_timestamp`).
    pub start_unix_s: Option<f64>,
    /// From send to its end, seconds.
    pub duration_s: Option<f64>,
    /// Server-reported time to first token.
    pub server_ttft_s: Option<f64>,
    /// Server-reported end-to-end latency.
    pub server_e2e_s: Option<f64>,
    /// The batch size the server reported.
    pub batch_size: Option<u32>,
    /// Whether the server reported switching models for it.
    pub switched: bool,
    /// How late the client sent it against its schedule (open loop).
    pub dispatch_delay_s: Option<f64>,
    /// Whether it failed.
    pub failed: bool,
}

/// The client's health and the row-level numbers of a row's summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowHealth {
    /// Estimated switching time of the row.
    pub switching_time_s: Option<f64>,
    /// 99th percentile of the client's event-loop lag.
    pub event_loop_lag_p99_s: Option<f64>,
    /// The client's CPU use (1 = one core).
    pub cpu_utilization: Option<f64>,
    /// Whether the client could not keep up (its numbers are then suspect).
    pub saturated: Option<bool>,
    /// Requests per second achieved (open loop).
    pub achieved_qps: Option<f64>,
    /// The row's duration.
    pub duration_s: Option<f64>,
    /// Share of requests that met the run's latency objectives.
    pub goodput: Option<f64>,
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
    /// Its requests, in file order.
    pub requests: Vec<Request>,
    /// Its summary's health and row-level numbers.
    pub health: RowHealth,
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
    /// The endpoint's description and the plan's options, as `run.json` holds them.
    pub inputs: serde_json::Value,
    /// How the run ended (`run.json`'s `exit`).
    pub exit: serde_json::Value,
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
    #[serde(default)]
    endpoint: serde_json::Value,
    inputs: ManifestInputs,
    #[serde(default)]
    rows: Vec<ManifestRow>,
    #[serde(default)]
    exit: serde_json::Value,
}

#[derive(Deserialize)]
struct ManifestInputs {
    plan: ManifestPlan,
}

#[derive(Deserialize)]
struct ManifestPlan {
    rows: Vec<Row>,
    #[serde(default)]
    options: serde_json::Value,
}

#[derive(Deserialize)]
struct ManifestRow {
    row_index: usize,
    #[serde(default)]
    individual_responses_file: Option<String>,
    #[serde(default)]
    summary_file: Option<String>,
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
    #[serde(default)]
    start_timestamp: Option<String>,
    #[serde(default)]
    actual_send_s: Option<f64>,
    #[serde(default)]
    end_s: Option<f64>,
    #[serde(default)]
    server_ttft_s: Option<f64>,
    #[serde(default)]
    server_end_to_end_latency_s: Option<f64>,
    #[serde(default)]
    server_switching_time: Option<f64>,
    #[serde(default)]
    batch_size_used: Option<f64>,
    #[serde(default)]
    dispatch_delay_s: Option<f64>,
}

#[derive(Deserialize, Default)]
struct Summary {
    #[serde(default)]
    results_switching_time_s: Option<f64>,
    #[serde(default)]
    results_client_event_loop_lag_p99_s: Option<f64>,
    #[serde(default)]
    results_client_cpu_utilization: Option<f64>,
    #[serde(default)]
    results_client_saturated: Option<bool>,
    #[serde(default)]
    results_achieved_qps: Option<f64>,
    #[serde(default)]
    results_row_duration_s: Option<f64>,
    #[serde(default)]
    results_goodput: Option<f64>,
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
            requests: Vec::new(),
            health: RowHealth::default(),
        })
        .collect();
    for entry in manifest.rows {
        let Some(file) = entry.individual_responses_file else {
            continue;
        };
        let rows_planned = rows.len();
        let Some(row) = rows.get_mut(entry.row_index) else {
            return Err(ReadError::Format {
                path: manifest_path.display().to_string(),
                what: "run manifest",
                message: format!(
                    "row_index {} is past the plan's {rows_planned} rows",
                    entry.row_index,
                ),
            });
        };
        (row.samples, row.requests) = read_requests(&folder.join(&file))?;
        if let Some(summary) = entry.summary_file {
            row.health = read_health(&folder.join(summary))?;
        }
    }
    let inputs = serde_json::json!({
        "endpoint": manifest.endpoint,
        "options": manifest.inputs.plan.options,
    });
    Ok(RunFolder {
        path: folder.to_path_buf(),
        run_name: manifest.run_name,
        rows,
        inputs,
        exit: manifest.exit,
    })
}

/// The row-level numbers of one `*_summary.json` (a missing file is no error: an old run).
fn read_health(path: &Path) -> Result<RowHealth, ReadError> {
    if !path.is_file() {
        return Ok(RowHealth::default());
    }
    let summary: Summary = serde_json::from_slice(&read(path)?).map_err(|e| ReadError::Format {
        path: path.display().to_string(),
        what: "row summary",
        message: e.to_string(),
    })?;
    Ok(RowHealth {
        switching_time_s: summary.results_switching_time_s,
        event_loop_lag_p99_s: summary.results_client_event_loop_lag_p99_s,
        cpu_utilization: summary.results_client_cpu_utilization,
        saturated: summary.results_client_saturated,
        achieved_qps: summary.results_achieved_qps,
        duration_s: summary.results_row_duration_s,
        goodput: summary.results_goodput,
    })
}

/// The numbers of one `*_individual_responses.json`.
fn read_requests(path: &Path) -> Result<(Samples, Vec<Request>), ReadError> {
    let records: Vec<Record> =
        serde_json::from_slice(&read(path)?).map_err(|e| ReadError::Format {
            path: path.display().to_string(),
            what: "individual responses file",
            message: e.to_string(),
        })?;
    let mut samples = Samples::default();
    let mut requests = Vec::with_capacity(records.len());
    for record in records {
        let errored = record.error_code.as_ref().is_some_and(|c| !c.is_null())
            || record.error_msg.as_deref().is_some_and(|m| !m.is_empty());
        let measured = (
            record.client_ttft_s,
            record.client_end_to_end_latency_s,
            record.client_output_token_per_s_per_request,
        );
        let ok = match measured {
            (Some(ttft), Some(e2e), tokens_per_s) if !errored => {
                samples.ttft_s.push(ttft);
                samples.e2e_s.push(e2e);
                if let Some(rate) = tokens_per_s.filter(|r| r.is_finite()) {
                    samples.output_tokens_per_s.push(rate);
                }
                true
            }
            _ => {
                samples.failed += 1;
                false
            }
        };
        let start_unix_s = record
            .start_timestamp
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_microsecond() as f64 / 1e6);
        requests.push(Request {
            start_unix_s,
            duration_s: record
                .end_s
                .zip(record.actual_send_s)
                .map(|(end, sent)| (end - sent).max(0.0)),
            server_ttft_s: record.server_ttft_s,
            server_e2e_s: record.server_end_to_end_latency_s,
            batch_size: record
                .batch_size_used
                .filter(|b| *b >= 1.0 && b.is_finite())
                .map(|b| b as u32),
            switched: record.server_switching_time.is_some_and(|t| t > 0.0),
            dispatch_delay_s: record.dispatch_delay_s,
            failed: !ok,
        });
    }
    Ok((samples, requests))
}
