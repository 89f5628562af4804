//! The benchmark's view of its runs: which are newest, which finished runs go beyond the
//! history limits, and the run summary in the benchmark's status. Pure functions of the runs.

use kube::ResourceExt;

use crate::conditions::{Status, types};
use crate::crd::{CoeBenchmarkRun, CoeBenchmarkStatus, ResultSummary, RunPhase};

/// Newest first: by run number, then creation time, then name.
pub(super) fn newest_first(runs: &[CoeBenchmarkRun]) -> Vec<&CoeBenchmarkRun> {
    let mut sorted: Vec<&CoeBenchmarkRun> = runs.iter().collect();
    sorted.sort_by(|a, b| {
        let key = |r: &CoeBenchmarkRun| {
            (
                r.spec.trigger.sequence.unwrap_or(0),
                r.metadata.creation_timestamp.clone(),
                r.name_any(),
            )
        };
        key(b).cmp(&key(a))
    });
    sorted
}

pub(super) fn phase(run: &CoeBenchmarkRun) -> RunPhase {
    run.status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or(RunPhase::Pending)
}

/// Names of finished runs beyond the history limits, oldest last.
pub fn trim_history(
    runs: &[CoeBenchmarkRun],
    succeeded_limit: i32,
    failed_limit: i32,
) -> Vec<String> {
    let mut kept = (0usize, 0usize);
    let mut delete = Vec::new();
    for run in newest_first(runs) {
        let (count, limit) = match phase(run) {
            RunPhase::Succeeded => (&mut kept.0, succeeded_limit),
            RunPhase::Failed => (&mut kept.1, failed_limit),
            _ => continue,
        };
        if *count < limit.max(0) as usize {
            *count += 1;
        } else {
            delete.push(run.name_any());
        }
    }
    delete
}

/// Fills the run summary fields and the `Running` and `LastRunSucceeded` conditions.
pub(super) fn summarize(
    status: &mut CoeBenchmarkStatus,
    runs: &[CoeBenchmarkRun],
    set: &mut impl FnMut(&mut CoeBenchmarkStatus, &'static str, Status, &str, &str),
) {
    let sorted = newest_first(runs);
    if let Some(last) = sorted.first() {
        status.last_run = Some(last.name_any());
        status.phase = Some(phase(last));
    }
    let mut active: Vec<String> = sorted
        .iter()
        .filter(|r| !phase(r).is_finished())
        .map(|r| r.name_any())
        .collect();
    active.sort();
    if active.is_empty() {
        set(
            status,
            types::RUNNING,
            Status::False,
            "NoActiveRun",
            "no run is active",
        );
    } else {
        let message = format!("active: {}", active.join(", "));
        set(status, types::RUNNING, Status::True, "RunActive", &message);
    }
    status.active_runs = active;

    if let Some(ok) = sorted.iter().find(|r| phase(r) == RunPhase::Succeeded) {
        let run_status = ok.status.clone().unwrap_or_default();
        status.last_successful_run = Some(ok.name_any());
        status.last_successful_time = run_status.completion_time.clone();
        status.last_result = Some(ResultSummary {
            run: ok.name_any(),
            ttft_p50: run_status.ttft_p50.clone(),
            results_path: run_status.results_path.clone(),
            rows: run_status.rows.clone(),
            rows_omitted: run_status.rows_omitted,
        });
    }
    if let Some(finished) = sorted.iter().find(|r| phase(r).is_finished()) {
        let name = finished.name_any();
        if phase(finished) == RunPhase::Succeeded {
            let message = format!("run {name} succeeded");
            set(
                status,
                types::LAST_RUN_SUCCEEDED,
                Status::True,
                "Succeeded",
                &message,
            );
        } else {
            let failed = finished
                .status
                .as_ref()
                .and_then(|s| crate::conditions::find(&s.conditions, types::FAILED).cloned());
            let reason = failed
                .as_ref()
                .map(|c| c.reason.clone())
                .unwrap_or_else(|| "Failed".into());
            let message = format!(
                "run {name} failed: {}",
                failed.map(|c| c.message).unwrap_or_default()
            );
            set(
                status,
                types::LAST_RUN_SUCCEEDED,
                Status::False,
                &reason,
                &message,
            );
        }
    }
}
