//! `mixed_traffic_switching.json`: the per-request switching attribution of rows that ran at
//! once ([`crate::statistics::mixed_switching`]), written beside `run.json` once every
//! parallel row has finished (each row's own files are written as it finishes, before the
//! other rows' requests are all known).

use std::path::{Path, PathBuf};

use crate::output::OutputError;
use crate::output::atomic::write_json_atomic;
use crate::statistics::mixed_switching::MixedSwitching;

/// The file's name in the run's folder.
pub const MIXED_SWITCHING_FILE: &str = "mixed_traffic_switching.json";

/// Writes `attribution` into `run_dir`, atomically; returns the file's path.
pub fn write_mixed_switching(
    run_dir: &Path,
    attribution: &MixedSwitching,
) -> Result<PathBuf, OutputError> {
    let path = run_dir.join(MIXED_SWITCHING_FILE);
    write_json_atomic(&path, attribution)?;
    Ok(path)
}
