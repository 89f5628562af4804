//! The consolidated table's columns: a flat declarative list, the kit's columns first in the
//! kit's order, then coebench's.
//!
//! The kit's block is its latest (HEAD) consolidator's column list, in its order
//! (kit-reference 6.4). Like the kit, a run's table leaves out the kit's optional columns
//! ([`Column::optional`]: the load columns, `multimodal_img_size` and the statistics) when no
//! row has a value for them, so a run without speculative decoding has no `acceptance_rate_*`
//! columns. coebench's columns, always present, follow: `uuid` (V-Oct25's index) and V-Oct25's
//! `requests_grouping` and `requests_batching` among them. This module maps a [`RowSummary`]
//! to cells; choosing the columns of a run and writing them is [`super::consolidated`]'s job.

use std::collections::BTreeMap;

use crate::statistics::python_text;
use crate::statistics::stats::Stats;
use crate::statistics::summary::{RowOutcome, RowSummary};
use coebench_plan::Load;

/// One cell of the table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No value.
    Empty,
    /// A number.
    Number(f64),
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// A boolean.
    Bool(bool),
    /// A list of integers, written `[1, 2]` in xlsx and csv.
    IntList(Vec<u32>),
    /// Integer keys to counts, written `{4: 8}` in xlsx and csv.
    IntMap(BTreeMap<u32, u32>),
    /// Text keys to counts, written `{'503': 2}` in xlsx and csv.
    CountMap(BTreeMap<String, u32>),
}

impl Cell {
    /// The text of the cell as the kit's pandas wrote it into a spreadsheet: lists and dicts as
    /// Python's `str()`; `None` for cells that are not text.
    pub fn python_text(&self) -> Option<String> {
        match self {
            Cell::IntList(items) => Some(python_text::int_list(items)),
            Cell::IntMap(map) => Some(python_text::int_map(map)),
            Cell::CountMap(map) => Some(python_text::count_map(map)),
            _ => None,
        }
    }
}

/// A column: its header and how to compute its cell from a row's summary.
#[derive(Clone, Copy)]
pub struct Column {
    /// Header.
    pub name: &'static str,
    /// The cell of a row.
    pub value: fn(&RowSummary) -> Cell,
    /// Left out of a run's table when every row's cell is empty (as the kit leaves out a
    /// column no summary has).
    pub optional: bool,
}

fn num(v: Option<f64>) -> Cell {
    match v {
        Some(x) if x.is_finite() => Cell::Number(x),
        _ => Cell::Empty,
    }
}

fn int(v: Option<u64>) -> Cell {
    v.and_then(|n| i64::try_from(n).ok())
        .map_or(Cell::Empty, Cell::Int)
}

fn stat(s: &RowSummary, metric: &str, field: fn(&Stats) -> f64) -> Cell {
    num(s.stats(metric).map(field))
}

fn files_written(s: &RowSummary) -> bool {
    s.outcome != RowOutcome::NotRun
}

/// `column!("header", |s| cell)`: a column every table has.
macro_rules! column {
    ($name:literal, $value:expr) => {
        Column {
            name: $name,
            value: $value,
            optional: false,
        }
    };
}

/// `optional_column!("header", |s| cell)`: a kit column a table has when a row has a value.
macro_rules! optional_column {
    ($name:literal, $value:expr) => {
        Column {
            name: $name,
            value: $value,
            optional: true,
        }
    };
}

/// `stat_column!("header", "metric", field)`: a statistic of a metric. The kit's are optional
/// (`kit`), coebench's always present (`own`).
macro_rules! stat_column {
    (own $name:literal, $metric:literal, $field:ident) => {
        Column {
            name: $name,
            value: |s| stat(s, $metric, |st| st.$field),
            optional: false,
        }
    };
    ($name:literal, $metric:literal, $field:ident) => {
        Column {
            name: $name,
            value: |s| stat(s, $metric, |st| st.$field),
            optional: true,
        }
    };
}

/// The kit's columns (HEAD's consolidator), in order.
pub const KIT_COLUMNS: &[Column] = &[
    column!("name", |s| Cell::Text(s.name.clone())),
    column!("model", |s| Cell::Text(s.model.clone())),
    column!("num_input_tokens", |s| int(Some(s.num_input_tokens.into()))),
    column!("num_output_tokens", |s| int(Some(
        s.num_output_tokens.into()
    ))),
    optional_column!("num_concurrent_requests", |s| match s.load {
        Load::Concurrency(c) => int(Some(c.into())),
        Load::Rate { .. } => Cell::Empty,
    }),
    optional_column!("qps", |s| match s.load {
        Load::Rate { qps, .. } => num(Some(qps)),
        Load::Concurrency(_) => Cell::Empty,
    }),
    optional_column!("qps_distribution", |s| match s.load {
        Load::Rate { distribution, .. } => Cell::Text(distribution.as_str().into()),
        Load::Concurrency(_) => Cell::Empty,
    }),
    optional_column!("multimodal_img_size", |s| s
        .image_size
        .map_or(Cell::Empty, |size| Cell::Text(size.as_str().into()))),
    stat_column!("server_ttft_s_min", "server_ttft_s", min),
    stat_column!("server_ttft_s_mean", "server_ttft_s", mean),
    stat_column!("server_ttft_s_p50", "server_ttft_s", p50),
    stat_column!("server_ttft_s_max", "server_ttft_s", max),
    stat_column!(
        "server_end_to_end_latency_s_min",
        "server_end_to_end_latency_s",
        min
    ),
    stat_column!(
        "server_end_to_end_latency_s_mean",
        "server_end_to_end_latency_s",
        mean
    ),
    stat_column!(
        "server_end_to_end_latency_s_p50",
        "server_end_to_end_latency_s",
        p50
    ),
    stat_column!(
        "server_end_to_end_latency_s_max",
        "server_end_to_end_latency_s",
        max
    ),
    stat_column!(
        "server_output_token_per_s_min",
        "server_output_token_per_s_per_request",
        min
    ),
    stat_column!(
        "server_output_token_per_s_mean",
        "server_output_token_per_s_per_request",
        mean
    ),
    stat_column!(
        "server_output_token_per_s_p50",
        "server_output_token_per_s_per_request",
        p50
    ),
    stat_column!(
        "server_output_token_per_s_max",
        "server_output_token_per_s_per_request",
        max
    ),
    stat_column!("acceptance_rate_min", "acceptance_rate", min),
    stat_column!("acceptance_rate_p50", "acceptance_rate", p50),
    stat_column!("acceptance_rate_max", "acceptance_rate", max),
    stat_column!(
        "server_number_input_tokens_p50",
        "server_number_input_tokens",
        p50
    ),
    stat_column!(
        "server_number_output_tokens_p50",
        "server_number_output_tokens",
        p50
    ),
    stat_column!("client_ttft_s_min", "client_ttft_s", min),
    stat_column!("client_ttft_s_mean", "client_ttft_s", mean),
    stat_column!("client_ttft_s_p50", "client_ttft_s", p50),
    stat_column!("client_ttft_s_max", "client_ttft_s", max),
    stat_column!(
        "client_end_to_end_latency_s_min",
        "client_end_to_end_latency_s",
        min
    ),
    stat_column!(
        "client_end_to_end_latency_s_mean",
        "client_end_to_end_latency_s",
        mean
    ),
    stat_column!(
        "client_end_to_end_latency_s_p50",
        "client_end_to_end_latency_s",
        p50
    ),
    stat_column!(
        "client_end_to_end_latency_s_max",
        "client_end_to_end_latency_s",
        max
    ),
    stat_column!(
        "client_output_token_per_s_min",
        "client_output_token_per_s_per_request",
        min
    ),
    stat_column!(
        "client_output_token_per_s_mean",
        "client_output_token_per_s_per_request",
        mean
    ),
    stat_column!(
        "client_output_token_per_s_p50",
        "client_output_token_per_s_per_request",
        p50
    ),
    stat_column!(
        "client_output_token_per_s_max",
        "client_output_token_per_s_per_request",
        max
    ),
    column!("client_total_output_throughput", |s| num(
        s.client_total_output_throughput
    )),
    column!("num_requests_started", |s| int(Some(
        s.num_requests_started.into()
    ))),
    column!("num_completed_requests", |s| int(Some(
        s.num_completed_requests.into()
    ))),
    column!("num_completed_requests_per_min", |s| num(
        s.num_completed_requests_per_min
    )),
    column!("number_errors", |s| int(Some(s.number_errors.into()))),
    column!("error_code_frequency", |s| Cell::CountMap(
        s.error_code_frequency.clone()
    )),
    column!("switching_time", |s| num(s.switching.switching_time_s)),
    column!("request_batching_frequencies", |s| Cell::IntMap(
        s.batching.request_batching_frequencies.clone()
    )),
    column!("representative_batch_size", |s| int(s
        .batching
        .representative_batch_size
        .map(u64::from))),
];

/// coebench's columns, after the kit's.
pub const OWN_COLUMNS: &[Column] = &[
    column!("row_index", |s| int(u64::try_from(s.row_index).ok())),
    column!("uuid", |s| Cell::Text(s.row_uuid.to_string())),
    column!("outcome", |s| Cell::Text(s.outcome.as_str().into())),
    column!("num_requests_planned", |s| int(Some(s.num_requests.into()))),
    column!("num_requests_not_sent", |s| int(Some(
        s.num_requests_not_sent.into()
    ))),
    column!("error_rate", |s| num(Some(s.error_rate))),
    column!("error_class_frequency", |s| Cell::CountMap(
        s.error_class_frequency.clone()
    )),
    column!("row_duration_s", |s| num(Some(
        crate::statistics::stats::round4(s.row_duration_s)
    ))),
    column!("switching_time_source", |s| s.switching.source.map_or(
        Cell::Empty,
        |src| {
            Cell::Text(
                match src {
                    crate::statistics::switching::TtftSource::ServerTtft => "server_ttft",
                    crate::statistics::switching::TtftSource::ClientTtft => "client_ttft",
                }
                .into(),
            )
        }
    )),
    column!("requests_grouping", |s| Cell::IntList(
        s.batching.requests_grouping.clone()
    )),
    column!("requests_batching", |s| Cell::IntList(
        s.batching.requests_batching.clone()
    )),
    stat_column!(own "server_ttft_s_p90", "server_ttft_s", p90),
    stat_column!(own "server_ttft_s_p99", "server_ttft_s", p99),
    stat_column!(own "client_ttft_s_p90", "client_ttft_s", p90),
    stat_column!(own "client_ttft_s_p99", "client_ttft_s", p99),
    stat_column!(
        own "client_end_to_end_latency_s_p90",
        "client_end_to_end_latency_s",
        p90
    ),
    stat_column!(
        own "client_end_to_end_latency_s_p99",
        "client_end_to_end_latency_s",
        p99
    ),
    stat_column!(
        own "client_server_ttft_gap_s_p50",
        "client_server_ttft_gap_s",
        p50
    ),
    stat_column!(
        own "client_server_ttft_gap_s_p90",
        "client_server_ttft_gap_s",
        p90
    ),
    stat_column!(
        own "client_server_ttft_gap_s_p99",
        "client_server_ttft_gap_s",
        p99
    ),
    stat_column!(own "client_tpot_s_p50", "client_tpot_s", p50),
    stat_column!(own "client_tpot_s_p90", "client_tpot_s", p90),
    stat_column!(own "client_tpot_s_p99", "client_tpot_s", p99),
    stat_column!(
        own "client_mean_inter_token_latency_s_p50",
        "client_mean_inter_token_latency_s",
        p50
    ),
    stat_column!(
        own "client_mean_inter_token_latency_s_p90",
        "client_mean_inter_token_latency_s",
        p90
    ),
    stat_column!(
        own "client_mean_inter_token_latency_s_p99",
        "client_mean_inter_token_latency_s",
        p99
    ),
    stat_column!(own "dispatch_delay_s_p50", "dispatch_delay_s", p50),
    stat_column!(own "dispatch_delay_s_p99", "dispatch_delay_s", p99),
    stat_column!(own "dispatch_delay_s_max", "dispatch_delay_s", max),
    column!("target_qps", |s| num(s.load_accuracy.target_qps)),
    column!("achieved_qps", |s| num(s.load_accuracy.achieved_qps)),
    column!("target_concurrency", |s| int(s
        .load_accuracy
        .target_concurrency
        .map(u64::from))),
    column!("mean_in_flight", |s| num(s.load_accuracy.mean_in_flight)),
    column!("client_event_loop_lag_p99_s", |s| num(s
        .client_health
        .event_loop_lag_p99_s)),
    column!("client_cpu_utilization", |s| num(s
        .client_health
        .cpu_utilization)),
    column!("client_saturated", |s| Cell::Bool(
        s.client_health.saturated
    )),
    column!("stale_connection_retries", |s| int(Some(u64::from(
        s.server_checks.stale_connection_retries
    )))),
    column!("stopped_early", |s| int(Some(u64::from(
        s.server_checks.stopped_early
    )))),
    column!("stopped_early_share", |s| num(s
        .server_checks
        .stopped_early_share)),
    column!("goodput", |s| num(s.goodput.and_then(|g| g.share))),
    column!("server_timings", |s| Cell::Text(
        s.server_checks.server_timings.as_str().to_string()
    )),
    column!("cached_input_share", |s| num(s
        .server_checks
        .cached_input_share)),
    column!(
        "tokenizer_mismatch",
        |s| match &s.server_checks.tokenizer.mismatch {
            Some(message) => Cell::Text(message.clone()),
            None => Cell::Empty,
        }
    ),
    column!("started_at", |s| Cell::Text(s.started_at.clone())),
    column!("summary_file", |s| if files_written(s) {
        Cell::Text(s.summary_file())
    } else {
        Cell::Empty
    }),
    column!("individual_responses_file", |s| if files_written(s) {
        Cell::Text(s.individual_responses_file())
    } else {
        Cell::Empty
    }),
    column!("response_texts_file", |s| match &s.response_texts_file {
        Some(name) if files_written(s) => Cell::Text(name.clone()),
        _ => Cell::Empty,
    }),
];

/// Prefix of the columns of the run's metadata, after coebench's: `metadata_<key>`.
pub const METADATA_COLUMN_PREFIX: &str = "metadata_";

/// Every column, the kit's then coebench's.
pub fn all_columns() -> impl Iterator<Item = &'static Column> {
    KIT_COLUMNS.iter().chain(OWN_COLUMNS)
}

/// The header row.
pub fn header() -> Vec<&'static str> {
    all_columns().map(|c| c.name).collect()
}

/// A row's cells, in header order.
pub fn cells(summary: &RowSummary) -> Vec<Cell> {
    all_columns().map(|c| (c.value)(summary)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_strings() {
        assert_eq!(Cell::IntList(vec![1, 2]).python_text().unwrap(), "[1, 2]");
        let codes = BTreeMap::from([("503".to_string(), 2)]);
        assert_eq!(Cell::CountMap(codes).python_text().unwrap(), "{'503': 2}");
        assert_eq!(Cell::Int(3).python_text(), None);
    }

    #[test]
    fn column_names_are_unique() {
        let names = header();
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }
}
