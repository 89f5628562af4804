//! Hooks through which a run reports progress: the terminal's progress bars and the Prometheus
//! exporter both implement [`RunObserver`]. Request hooks are called from the request's own task
//! and must be cheap; none may block.

use std::sync::Arc;

use crate::output::row_files::RowFilePaths;
use crate::statistics::record::RequestRecord;
use crate::statistics::summary::RowSummary;
use coebench_plan::Row;

/// The start of a run.
#[derive(Debug, Clone)]
pub struct RunStarted {
    /// Name of the run.
    pub run_name: String,
    /// Number of rows in the plan.
    pub rows: usize,
    /// The endpoint, described for humans (API and URL, never a key).
    pub endpoint: String,
    /// Folder of the per-row files.
    pub run_dir: std::path::PathBuf,
}

/// Receives a run's progress. Every method has an empty default.
pub trait RunObserver: Send + Sync {
    /// The run is about to send its first row.
    fn run_started(&self, _run: &RunStarted) {}
    /// Row `row_index` starts; its files will be named from `base_name`.
    fn row_started(&self, _row_index: usize, _row: &Row, _base_name: &str) {}
    /// A request of row `row_index` is about to be sent.
    fn request_started(&self, _row_index: usize) {}
    /// A request of row `row_index` finished (successfully or not).
    fn request_finished(&self, _row_index: usize, _record: &RequestRecord) {}
    /// A row finished and its files were written (`files` is `None` if writing failed).
    fn row_finished(&self, _summary: &RowSummary, _files: Option<&RowFilePaths>) {}
    /// In a distributed run, a request of row `row_index` finished on worker `worker` (0 is
    /// the coordinator); [`RunObserver::request_finished`] was called for it too.
    fn worker_request_finished(&self, _row_index: usize, _worker: u32) {}
    /// In a distributed run, worker `worker`'s share of row `row_index` ended, its client
    /// `saturated` or not.
    fn worker_row_health(&self, _row_index: usize, _worker: u32, _saturated: bool) {}
}

/// Forwards every hook to each observer in turn.
#[derive(Default, Clone)]
pub struct Observers(pub Vec<Arc<dyn RunObserver>>);

impl RunObserver for Observers {
    fn run_started(&self, run: &RunStarted) {
        self.0.iter().for_each(|o| o.run_started(run));
    }
    fn row_started(&self, row_index: usize, row: &Row, base_name: &str) {
        self.0
            .iter()
            .for_each(|o| o.row_started(row_index, row, base_name));
    }
    fn request_started(&self, row_index: usize) {
        self.0.iter().for_each(|o| o.request_started(row_index));
    }
    fn request_finished(&self, row_index: usize, record: &RequestRecord) {
        self.0
            .iter()
            .for_each(|o| o.request_finished(row_index, record));
    }
    fn row_finished(&self, summary: &RowSummary, files: Option<&RowFilePaths>) {
        self.0.iter().for_each(|o| o.row_finished(summary, files));
    }
    fn worker_request_finished(&self, row_index: usize, worker: u32) {
        self.0
            .iter()
            .for_each(|o| o.worker_request_finished(row_index, worker));
    }
    fn worker_row_health(&self, row_index: usize, worker: u32, saturated: bool) {
        self.0
            .iter()
            .for_each(|o| o.worker_row_health(row_index, worker, saturated));
    }
}
