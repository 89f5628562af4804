//! What the engine hands over when a row has finished, and finishing it: sorting the record
//! digests, estimating switching time and batch sizes, and computing the [`RowSummary`]. The full
//! records stay in the row's spool until its files are written.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::RowSummary;
use crate::statistics::batching;
use crate::statistics::record::RequestRecord;
use crate::statistics::record_digest::RecordDigest;
use crate::statistics::response_texts::ResponseTextSpool;
use crate::statistics::spool::{RecordSpool, SpoolError};
use crate::statistics::switching::{self, SwitchingEstimate};
use coebench_plan::{Objectives, Row, SamplingParams};

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

/// Who a row is on disk: its UUID and the names of its files, decided by the output layer
/// before the row starts (`output::naming::row_names`). The summary reports them (the kit's
/// `name`, `row_uuid` and file keys); no naming rule lives here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowNames {
    /// The row's UUID.
    pub uuid: uuid::Uuid,
    /// Base name of the row's files.
    pub base: String,
    /// File name of the row's per-request file.
    pub individual_responses_file: String,
    /// File name of the row's summary file.
    pub summary_file: String,
    /// File name of the row's generated texts (written when `saveResponseTexts` is on).
    pub response_texts_file: String,
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
    /// The row's UUID and file names.
    pub names: RowNames,
    /// One digest per request sent (successes and failures); the full records are in `spool`.
    pub digests: Vec<RecordDigest>,
    /// The spool holding the full records; `None` for a row that did not run.
    pub spool: Option<Arc<RecordSpool>>,
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
    /// Prompt tokens the server's chat template adds to a user message, measured by a probe
    /// after the row (see [`super::server_checks`]); `None` when not measured.
    pub template_overhead: Option<i64>,
    /// The sampling parameters the row's requests sent (the run's with the row's on top).
    pub sampling_params: SamplingParams,
    /// The run's metadata.
    pub metadata: BTreeMap<String, String>,
    /// The row's latency objectives (its own, else the run's), for goodput and the
    /// percentile objectives.
    pub objectives: Option<Objectives>,
    /// The row's generated texts, when the run saves them.
    pub response_texts: Option<Arc<ResponseTextSpool>>,
}

/// A finished row: its summary, its record digests in `request_idx` order, and the spool of its
/// full records.
#[derive(Debug, Clone)]
pub struct RowResult {
    /// The row's summary.
    pub summary: RowSummary,
    /// The row's record digests, in `request_idx` order.
    pub digests: Vec<RecordDigest>,
    /// The switching estimate, written into the first request's record.
    pub switching: SwitchingEstimate,
    /// The full records.
    pub spool: Option<Arc<RecordSpool>>,
    /// The generated texts, when the run saves them.
    pub response_texts: Option<Arc<ResponseTextSpool>>,
}

impl RowResult {
    /// Calls `each` with every full record in `request_idx` order, `server_switching_time` set
    /// on the first request's record. Reads one record at a time from the spool.
    pub fn for_each_record<E>(
        &self,
        mut each: impl FnMut(&RequestRecord) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<SpoolError>,
    {
        let Some(spool) = &self.spool else {
            return Ok(());
        };
        spool.flush()?;
        let mut reader = spool.reader()?;
        for digest in &self.digests {
            let Some(at) = digest.spooled else {
                return Err(SpoolError::NotSpooled {
                    path: spool.path().to_path_buf(),
                    request_idx: digest.request_idx,
                }
                .into());
            };
            let mut record = reader.read(at)?;
            record.server_switching_time = self.switching.value_for(record.request_idx);
            each(&record)?;
        }
        Ok(())
    }

    /// Every full record, in memory (for small rows and tests; files are written one record at
    /// a time with [`RowResult::for_each_record`]).
    pub fn read_records(&self) -> Result<Vec<RequestRecord>, SpoolError> {
        let mut records = Vec::with_capacity(self.digests.len());
        self.for_each_record(|r| {
            records.push(r.clone());
            Ok(())
        })?;
        Ok(records)
    }
}

impl RowExecution {
    /// A row named `names` that started at `started`, with no records yet, `ended = started`,
    /// nothing unsent and a healthy client; the engine fills in the rest.
    pub fn new(
        row_index: usize,
        row: Row,
        run_name: impl Into<String>,
        names: RowNames,
        started: Instant,
        started_wall: jiff::Timestamp,
    ) -> Self {
        RowExecution {
            row_index,
            row,
            run_name: run_name.into(),
            names,
            digests: Vec::new(),
            spool: None,
            started,
            started_wall,
            ended: started,
            not_sent: 0,
            client_health: ClientHealth::default(),
            template_overhead: None,
            sampling_params: SamplingParams::new(),
            metadata: BTreeMap::new(),
            objectives: None,
            response_texts: None,
        }
    }

    /// Spools `records` in `dir` and keeps their digests: how rows built outside the engine
    /// (tools, tests) hand over their records.
    pub fn spool_records(
        &mut self,
        dir: &Path,
        records: &[RequestRecord],
    ) -> Result<(), SpoolError> {
        let spool = Arc::new(RecordSpool::create(dir, &self.names.base)?);
        for record in records {
            let at = spool.append(record)?;
            self.digests.push(RecordDigest::of(record, Some(at)));
        }
        self.spool = Some(spool);
        Ok(())
    }

    /// Summarises the row: sorts the digests by `request_idx`, estimates switching time and
    /// batch sizes, and computes the summary.
    pub fn finish(mut self) -> RowResult {
        self.digests.sort_by_key(|r| r.request_idx);
        let switching = switching::estimate(&self.digests);
        let batching = batching::infer(&self.digests);
        let summary = RowSummary::compute(&self, switching.clone(), batching);
        RowResult {
            summary,
            digests: self.digests,
            switching,
            spool: self.spool,
            response_texts: self.response_texts,
        }
    }
}
