//! What the engine hands over when a row has finished, and finishing it: sorting the records,
//! estimating switching time (written into the first record) and batch sizes, and computing the
//! [`RowSummary`].

use std::time::Instant;

use super::RowSummary;
use crate::batching;
use crate::output::naming;
use crate::plan::Row;
use crate::record::RequestRecord;
use crate::switching;

/// How healthy the client was while it ran the row, as the engine measured it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClientHealth {
    /// 99th percentile of the event loop's scheduling lag, seconds.
    pub event_loop_lag_p99_s: Option<f64>,
    /// CPU the client process used, as a fraction of the cores it may use (0..1).
    pub cpu_utilization: Option<f64>,
    /// Whether the engine judged the client to be the bottleneck (timings then overstate the
    /// server's latency).
    pub saturated: bool,
}

/// Everything the engine knows about a row that has finished.
#[derive(Debug, Clone)]
pub struct RowExecution {
    /// Position of the row in the plan, from 0 (the kit's `model_idx`).
    pub row_index: usize,
    /// The row as planned.
    pub row: Row,
    /// Name of the run (the folder of its files).
    pub run_name: String,
    /// The row's UUID, part of its file names. [`RowExecution::new`] draws a random one.
    pub row_uuid: uuid::Uuid,
    /// One record per request sent (successes and failures).
    pub records: Vec<RequestRecord>,
    /// When the row started (offsets in records are measured from it).
    pub started: Instant,
    /// Wall-clock time at `started`.
    pub started_wall: jiff::Timestamp,
    /// When the row ended: every request done or abandoned.
    pub ended: Instant,
    /// Requests never sent because the run's timeout passed (or the run was interrupted).
    pub not_sent: u32,
    /// The client's health during the row.
    pub client_health: ClientHealth,
}

/// A finished row: its summary and its records (in `request_idx` order, switching time set).
#[derive(Debug, Clone)]
pub struct RowResult {
    /// The row's summary.
    pub summary: RowSummary,
    /// The row's records.
    pub records: Vec<RequestRecord>,
}

impl RowExecution {
    /// A row that started at `started`, with a fresh UUID, no records yet, `ended = started`,
    /// nothing unsent and a healthy client; the engine fills in the rest.
    pub fn new(
        row_index: usize,
        row: Row,
        run_name: impl Into<String>,
        started: Instant,
        started_wall: jiff::Timestamp,
    ) -> Self {
        RowExecution {
            row_index,
            row,
            run_name: run_name.into(),
            row_uuid: uuid::Uuid::new_v4(),
            records: Vec::new(),
            started,
            started_wall,
            ended: started,
            not_sent: 0,
            client_health: ClientHealth::default(),
        }
    }

    /// Base name of the row's files.
    pub fn base_name(&self) -> String {
        naming::row_base_name(self.row_index, &self.row, &self.row_uuid)
    }

    /// Summarises the row: sorts records by `request_idx`, writes the switching time into the
    /// first record, and computes the summary.
    pub fn finish(mut self) -> RowResult {
        self.records.sort_by_key(|r| r.request_idx);
        let switching = switching::estimate(&self.records);
        switching::apply(&mut self.records, &switching);
        let batching = batching::infer(&self.records);
        let summary = RowSummary::compute(&self, switching, batching);
        RowResult {
            summary,
            records: self.records,
        }
    }
}
