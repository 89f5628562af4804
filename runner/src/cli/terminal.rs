//! The terminal: a progress bar per row on standard error while it runs, then a compact table
//! line per row and the paths written on standard output.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use coebench_plan::{Load, Row};
use coebench_runner::engine::observer::{RunObserver, RunStarted};
use coebench_runner::engine::run::RunResult;
use coebench_runner::output::row_files::RowFilePaths;
use coebench_runner::statistics::record::RequestRecord;
use coebench_runner::statistics::summary::{RowSummary, ServerTimings};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::messages;

/// Shows a run's progress and results.
pub struct Terminal {
    progress: bool,
    rows: AtomicU32,
    bar: Mutex<Option<ProgressBar>>,
    errors: AtomicU32,
}

impl Terminal {
    /// Progress bars are drawn only when `progress` is on and standard error is a terminal.
    pub fn new(progress: bool) -> Self {
        Terminal {
            progress: progress && std::io::stderr().is_terminal(),
            rows: AtomicU32::new(0),
            bar: Mutex::new(None),
            errors: AtomicU32::new(0),
        }
    }

    /// Prints where the run's results are and how it ended.
    pub fn print_result(&self, result: &RunResult) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Per-row files and run.json: {}",
            result.run_dir.display()
        );
        let report = result
            .run_dir
            .join(coebench_runner::analysis::report::REPORT_FILE);
        if report.is_file() {
            let _ = writeln!(out, "Report (open in a browser): {}", report.display());
        }
        if let Some(paths) = &result.consolidated {
            let _ = writeln!(out, "Consolidated table:         {}", paths.xlsx.display());
            let _ = writeln!(out, "                            {}", paths.csv.display());
            let _ = writeln!(out, "                            {}", paths.json.display());
            if let Some(kit_xlsx) = &paths.kit_xlsx {
                let _ = writeln!(out, "                            {}", kit_xlsx.display());
            }
        }
        let saturated = result
            .rows
            .iter()
            .filter(|r| r.client_health.saturated)
            .count();
        if saturated > 0 {
            let _ = writeln!(
                out,
                "warning: the client was saturated during {saturated} row(s): its timings may overstate latency \
                 (see client_saturated in the table)"
            );
        }
        if let Some(message) = &result.message {
            if messages::is_json() {
                // Standard error is all log events: the message is one, not a stdout line.
                match result.exit_code() {
                    0 => messages::note(message),
                    _ => messages::error(message),
                }
            } else {
                let _ = writeln!(out, "{}: {message}", outcome_label(result));
            }
        }
    }
}

fn outcome_label(result: &RunResult) -> &'static str {
    match result.exit_code() {
        0 => "note",
        _ => "error",
    }
}

const HEADER: &str = "row  model                                 in/out      load        ok/err   TTFT p50 c/s (s)   e2e p50 (s)  tok/s p50  switch (s)";

impl RunObserver for Terminal {
    fn run_started(&self, run: &RunStarted) {
        self.rows.store(run.rows as u32, Ordering::SeqCst);
        messages::progress(&format!(
            "Run {} against {}: {} row(s); files go to {}",
            run.run_name,
            run.endpoint,
            run.rows,
            run.run_dir.display()
        ));
        println!("{HEADER}");
    }

    fn row_started(&self, row_index: usize, row: &Row, _base_name: &str) {
        self.errors.store(0, Ordering::SeqCst);
        if !self.progress {
            return;
        }
        let bar = ProgressBar::new(u64::from(row.num_requests));
        let style =
            ProgressStyle::with_template("{prefix} [{bar:28}] {pos}/{len} {msg} {elapsed_precise}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!(
            "row {}/{} {} {}",
            row_index + 1,
            self.rows.load(Ordering::SeqCst),
            short(&row.model, 28),
            load_label(row.load())
        ));
        bar.set_message("errors 0");
        bar.enable_steady_tick(Duration::from_millis(200));
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn request_finished(&self, _row_index: usize, record: &RequestRecord) {
        let errors = if record.is_success() {
            self.errors.load(Ordering::SeqCst)
        } else {
            self.errors.fetch_add(1, Ordering::SeqCst) + 1
        };
        if let Ok(slot) = self.bar.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(1);
            if !record.is_success() {
                bar.set_message(format!("errors {errors}"));
            }
        }
    }

    fn row_finished(&self, summary: &RowSummary, _files: Option<&RowFilePaths>) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
        }
        println!("{}", table_line(summary));
        for note in server_notes(summary) {
            println!("     {note}");
        }
    }
}

/// Lines under a row's table line for what the server did that the numbers alone hide.
fn server_notes(summary: &RowSummary) -> Vec<String> {
    let checks = &summary.server_checks;
    let mut notes = Vec::new();
    if checks.stale_connection_retries > 0 {
        notes.push(format!(
            "{} requests retried on a fresh connection: the server closed kept-alive connections",
            checks.stale_connection_retries
        ));
    }
    if checks.stopped_early > 0 {
        notes.push(format!(
            "{} requests ({:.0} %) stopped before {} output tokens (see ignoreEos, minTokens)",
            checks.stopped_early,
            checks.stopped_early_share.unwrap_or(0.0) * 100.0,
            summary.num_output_tokens
        ));
    }
    if summary.num_completed_requests > 0 && checks.server_timings == ServerTimings::None {
        notes.push("no server timings: server TTFT and rates are the client's only".to_string());
    }
    if let Some(message) = &checks.tokenizer.mismatch {
        notes.push(format!("tokenizer mismatch: {message}"));
    }
    notes
}

/// One table line: the row's headline numbers.
fn table_line(summary: &RowSummary) -> String {
    let report = summary.row_report();
    let secs = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    let load = load_label(Some(summary.load));
    format!(
        "{:<4} {:<37} {:<11} {:<11} {:<8} {:>8}/{:<9} {:>11}  {:>9}  {:>10}{}",
        summary.row_index + 1,
        short(&summary.model, 37),
        format!("{}/{}", summary.num_input_tokens, summary.num_output_tokens),
        load,
        format!("{}/{}", report.completed, report.errors),
        secs(report.client_ttft_p50_s),
        secs(report.server_ttft_p50_s),
        secs(report.e2e_p50_s),
        report
            .output_tokens_per_s_p50
            .map_or_else(|| "-".into(), |v| format!("{v:.1}")),
        secs(report.switching_time_s),
        match summary.outcome.as_str() {
            "ok" => String::new(),
            other => format!("  [{other}]"),
        }
    )
}

fn load_label(load: Option<Load>) -> String {
    match load {
        Some(Load::Concurrency(c)) => format!("conc={c}"),
        Some(Load::Rate { qps, distribution }) => {
            format!("qps={qps}/{}", &distribution.as_str()[..3])
        }
        None => "-".to_string(),
    }
}

fn short(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let head: String = text.chars().take(width - 1).collect();
        format!("{head}~")
    }
}
