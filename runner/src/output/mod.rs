//! Every file a run writes: per-row individual responses and summaries, the consolidated table
//! (xlsx, csv, json), and the run manifest, with the kit's names and layouts.
//!
//! One job per submodule: [`naming`] builds the kit's file names, [`atomic`] writes a file so
//! readers never see half of it, [`row_files`] writes a row's two JSON files, [`columns`] and
//! [`consolidated`] define and write the consolidated table, [`manifest`] the run's `run.json`,
//! [`mixed_switching`] the per-request switching of rows that ran at once.
//! Nothing here computes a metric.

use std::path::PathBuf;

pub mod atomic;
pub mod columns;
pub mod consolidated;
pub mod manifest;
pub mod mixed_switching;
pub mod naming;
pub mod row_files;

pub use consolidated::{ConsolidatedPaths, ConsolidatedTable};
pub use manifest::{
    ManifestEndpoint, ManifestExit, ManifestInputs, ManifestRow, RunManifest, write_manifest,
};
pub use row_files::{RowFilePaths, write_row_files};

use crate::statistics::spool::SpoolError;

/// A file could not be written. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A folder could not be created.
    #[error("cannot create folder {path}: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file could not be written, synced or renamed into place.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A value could not be encoded as JSON.
    #[error("cannot encode {path} as JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// The spreadsheet could not be built.
    #[error("cannot build the spreadsheet {path}: {source}")]
    Xlsx {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: rust_xlsxwriter::XlsxError,
    },
    /// A running row's spool of records could not be read back.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The CSV table could not be encoded.
    #[error("cannot encode {path} as CSV: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: csv::Error,
    },
}

impl OutputError {
    /// Maps an I/O error on `path` to [`OutputError::Write`].
    pub fn from_io(path: &std::path::Path) -> impl Fn(std::io::Error) -> OutputError + '_ {
        move |source| OutputError::Write {
            path: path.to_path_buf(),
            source,
        }
    }
}
