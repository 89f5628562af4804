//! `coebench compare BASELINE CANDIDATE`: reads both run folders, compares them
//! ([`coebench_runner::analysis::compare`]), prints a table, optionally writes JSON, and exits 7
//! when a significant regression exceeds its threshold (0 otherwise, 2 on bad input).

use std::fmt::Write as _;
use std::process::ExitCode;

use coebench_runner::analysis::bootstrap::BootstrapSettings;
use coebench_runner::analysis::compare::{
    CompareOptions, Comparison, Metric, Threshold, Verdict, compare as compare_runs,
};
use coebench_runner::analysis::run_folder::read_run_folder;
use coebench_runner::output::atomic::write_json_atomic;

use crate::cli::args::CompareArgs;
use crate::cli::messages;

/// Exit code of a comparison that found a regression beyond its threshold.
pub const REGRESSION_EXIT: u8 = 7;

/// Runs `coebench compare`.
pub fn compare(args: &CompareArgs) -> ExitCode {
    let options = match options(args) {
        Ok(options) => options,
        Err(message) => {
            messages::error(&message);
            return ExitCode::from(2);
        }
    };
    let read = |path: &std::path::Path| {
        read_run_folder(path).map_err(|e| {
            messages::error(&e.to_string());
        })
    };
    let (Ok(baseline), Ok(candidate)) = (read(&args.baseline), read(&args.candidate)) else {
        return ExitCode::from(2);
    };
    let comparison = compare_runs(&baseline, &candidate, &options);
    print!("{}", table(&comparison));
    if let Some(path) = &args.json
        && let Err(e) = write_json_atomic(path, &comparison)
    {
        messages::error(&format!("cannot write {}: {e}", path.display()));
        return ExitCode::FAILURE;
    }
    let failures = comparison.failures().count();
    if failures > 0 {
        messages::error(&format!(
            "{failures} significant regression(s) beyond their threshold"
        ));
        ExitCode::from(REGRESSION_EXIT)
    } else {
        ExitCode::SUCCESS
    }
}

/// The options of `args`, or what is wrong with them.
fn options(args: &CompareArgs) -> Result<CompareOptions, String> {
    if !(args.confidence > 0.0 && args.confidence < 1.0) {
        return Err(format!(
            "--confidence {}: give a level between 0 and 1, e.g. 0.95",
            args.confidence
        ));
    }
    if args.resamples < 100 {
        return Err(format!(
            "--resamples {}: give at least 100 (default 2000)",
            args.resamples
        ));
    }
    let mut options = CompareOptions {
        bootstrap: BootstrapSettings {
            resamples: args.resamples,
            confidence: args.confidence,
            seed: args.seed,
        },
        ..CompareOptions::default()
    };
    for spec in &args.max_regression {
        let (name, limit) = spec.split_once('=').ok_or_else(|| {
            format!("--max-regression {spec:?}: write METRIC=LIMIT, e.g. ttft=10% or e2e=10%,0.05")
        })?;
        let metric = Metric::parse(name.trim()).ok_or_else(|| {
            format!(
                "--max-regression {spec:?}: unknown metric {name:?}; use one of ttft, e2e, tokens_per_s"
            )
        })?;
        let threshold =
            Threshold::parse(limit).map_err(|e| format!("--max-regression {spec:?}: {e}"))?;
        options.thresholds.insert(metric, threshold);
    }
    Ok(options)
}

fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

/// The comparison as a terminal table.
fn table(comparison: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "baseline {}  candidate {}  ({:.0}% intervals, {} resamples, seed {})",
        comparison.baseline,
        comparison.candidate,
        comparison.confidence * 100.0,
        comparison.resamples,
        comparison.seed
    );
    for row in &comparison.rows {
        let _ = writeln!(
            out,
            "\n{}  (requests {} vs {}, failed {} vs {})",
            row.row, row.samples[0], row.samples[1], row.failed[0], row.failed[1]
        );
        let _ = writeln!(
            out,
            "  {:<17} {:>10} {:>10} {:>9} {:>23}  verdict",
            "metric", "baseline", "candidate", "change", "interval of difference"
        );
        for m in &row.metrics {
            let change = m
                .relative
                .map_or_else(|| "-".into(), |r| format!("{:+.1}%", r * 100.0));
            let interval = m.difference.map_or_else(
                || "-".into(),
                |d| format!("[{:+.4}, {:+.4}]", d.low, d.high),
            );
            let marker = if m.verdict == Verdict::RegressedBeyondThreshold {
                " <-"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {:<17} {:>10} {:>10} {:>9} {:>23}  {}{marker}",
                format!("{} {}", m.metric.name(), m.stat),
                number(m.baseline),
                number(m.candidate),
                change,
                interval,
                m.verdict
            );
        }
    }
    for (side, rows) in [
        ("baseline", &comparison.only_in_baseline),
        ("candidate", &comparison.only_in_candidate),
    ] {
        for row in rows.iter() {
            let _ = writeln!(out, "\nonly in the {side}: {row}");
        }
    }
    out
}
