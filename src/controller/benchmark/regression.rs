//! The benchmark's regression step (with `spec.regression`): each succeeded run not compared
//! yet is compared with its baseline ([`crate::regression`]) and gets a `Regressed` condition,
//! an Event (a Warning on the run and the benchmark when it regressed) and, when it regressed,
//! one count in `coebench_benchmark_regressions_total`. The benchmark's own `Regressed`
//! condition repeats the verdict of its newest compared run, which the
//! `coebench_benchmark_regressed` gauge reads.
//!
//! The baseline is the previous successful run, whose rows are the benchmark's
//! `status.lastResult` until this step has run (so a run deleted by the history limits is still
//! a baseline), or the run named by `baselineRun`, whose rows are kept in
//! `status.regression.baseline` once read. A run's verdict is final: a run that carries a
//! `Regressed` condition is never compared again, so each verdict is published once.

use coebench_plan::regression::Thresholds;
use kube::{Api, ResourceExt};

use super::history::{newest_first, phase};
use super::{CONTROLLER, ConditionWriter};
use crate::conditions::{NewCondition, Status, find, set_condition, types};
use crate::controller::{Context, publish, write_status};
use crate::crd::{
    CoeBenchmark, CoeBenchmarkRun, CoeBenchmarkStatus, RegressionSpec, RegressionStatus,
    ResultSummary, RunPhase,
};
use crate::error::{Error, Result};
use crate::regression::{
    BASELINE_NOT_FOUND, BASELINE_NOT_SUCCEEDED, Baseline, INVALID_THRESHOLD, NO_BASELINE, Verdict,
    compare,
};

/// How a baseline was chosen, in messages.
const PREVIOUS: &str = "the previous successful run";
const NAMED: &str = "spec.regression.baselineRun";

/// Compares the succeeded runs not compared yet (oldest first), writes each verdict to its run
/// and publishes it, then sets the benchmark's `Regressed` condition. `runs` are the
/// benchmark's runs as listed by this reconcile; `status` still holds the `lastResult` of
/// before them.
pub(super) async fn step(
    bench: &CoeBenchmark,
    runs: &[CoeBenchmarkRun],
    status: &mut CoeBenchmarkStatus,
    ctx: &Context,
    conditions: &ConditionWriter,
) -> Result<()> {
    let Some(spec) = &bench.spec.regression else {
        crate::conditions::remove_condition(&mut status.conditions, types::REGRESSED);
        status.regression = None;
        return Ok(());
    };
    let mut regression = status.regression.take().unwrap_or_default();
    if spec.baseline_run.is_none() {
        regression.baseline = None;
    }
    let sorted = newest_first(runs);
    let succeeded: Vec<&CoeBenchmarkRun> = sorted
        .iter()
        .copied()
        .filter(|r| phase(r) == RunPhase::Succeeded)
        .collect();
    let judged = |r: &CoeBenchmarkRun| {
        r.status
            .as_ref()
            .is_some_and(|s| find(&s.conditions, types::REGRESSED).is_some())
    };
    let namespace = bench.namespace().unwrap_or_default();
    let mut verdicts: Vec<(&CoeBenchmarkRun, Verdict)> = Vec::new();
    match &spec.baseline_run {
        None => {
            // Runs newer than the last result, oldest first; each is the next one's baseline.
            let last = status.last_result.as_ref();
            let newer: Vec<&CoeBenchmarkRun> = succeeded
                .iter()
                .copied()
                .take_while(|r| last.is_none_or(|l| l.run != r.name_any()))
                .collect();
            let mut previous: Option<(String, Vec<_>)> =
                last.map(|l| (l.run.clone(), l.rows.clone()));
            for run in newer.into_iter().rev() {
                let rows = run_rows(run);
                if !judged(run) {
                    let verdict = match &previous {
                        None => Verdict::unknown(
                            NO_BASELINE,
                            "not compared: no earlier successful run of this benchmark to compare with; the next run is compared with this one".into(),
                        ),
                        Some((name, rows)) => judge(spec, name, PREVIOUS, rows, run),
                    };
                    verdicts.push((run, verdict));
                }
                previous = Some((run.name_any(), rows));
            }
        }
        Some(name) => {
            // Keep the baseline's numbers as soon as it has succeeded: the history limits may
            // delete it before any run is compared with it.
            if let Some(run) = succeeded.iter().find(|r| r.name_any() == *name)
                && regression.baseline.as_ref().is_none_or(|b| b.run != *name)
            {
                regression.baseline = Some(summary(run));
            }
            let candidates: Vec<&CoeBenchmarkRun> = succeeded
                .iter()
                .rev()
                .copied()
                .filter(|r| !judged(r) && r.name_any() != *name)
                .collect();
            if !candidates.is_empty() {
                let baseline = named_baseline(name, runs, &mut regression, &namespace, ctx).await?;
                for run in candidates {
                    let verdict = match &baseline {
                        Ok(b) => judge(spec, name, NAMED, &b.rows, run),
                        Err(v) => v.clone(),
                    };
                    verdicts.push((run, verdict));
                }
            }
        }
    }
    for (run, verdict) in &verdicts {
        if let Err(e) = record(bench, run, verdict, ctx).await {
            status.regression = Some(regression);
            return Err(e);
        }
    }
    // The benchmark repeats the verdict of its newest compared run (kept when that run is gone).
    let newest = sorted.iter().find_map(|r| {
        verdicts
            .iter()
            .find(|(v, _)| v.name_any() == r.name_any())
            .map(|(_, v)| {
                (
                    r.name_any(),
                    v.status,
                    v.reason.to_string(),
                    v.message.clone(),
                )
            })
            .or_else(|| {
                let c = find(&r.status.as_ref()?.conditions, types::REGRESSED)?;
                let s = match c.status.as_str() {
                    "True" => Status::True,
                    "False" => Status::False,
                    _ => Status::Unknown,
                };
                Some((r.name_any(), s, c.reason.clone(), c.message.clone()))
            })
    });
    if let Some((run, s, reason, message)) = newest {
        let message = format!("run {run}: {message}");
        conditions.set(status, types::REGRESSED, s, &reason, &message);
        regression.last_compared_run = Some(run);
    }
    status.regression = Some(regression);
    Ok(())
}

/// A run's rows as its status carries them.
fn run_rows(run: &CoeBenchmarkRun) -> Vec<crate::crd::RowStatus> {
    run.status
        .as_ref()
        .map(|s| s.rows.clone())
        .unwrap_or_default()
}

/// The verdict on `run` against baseline run `name`'s `rows`.
fn judge(
    spec: &RegressionSpec,
    name: &str,
    chosen: &'static str,
    rows: &[crate::crd::RowStatus],
    run: &CoeBenchmarkRun,
) -> Verdict {
    let thresholds = match Thresholds::from_limits(spec.max_regression.limits()) {
        Ok(t) => t,
        Err(e) => {
            return Verdict::unknown(
                INVALID_THRESHOLD,
                format!("not compared: spec.regression.maxRegression {e}"),
            );
        }
    };
    let baseline = Baseline {
        run: name,
        chosen,
        rows,
    };
    compare(&baseline, &run.name_any(), &run_rows(run), &thresholds)
}

/// The named baseline's numbers: kept in the status once read, else read from the run (any run
/// of the namespace) and kept; or the verdict that says why there is none.
async fn named_baseline(
    name: &str,
    runs: &[CoeBenchmarkRun],
    regression: &mut RegressionStatus,
    namespace: &str,
    ctx: &Context,
) -> Result<std::result::Result<ResultSummary, Verdict>> {
    if let Some(kept) = regression.baseline.as_ref().filter(|b| b.run == name) {
        return Ok(Ok(kept.clone()));
    }
    let run = match runs.iter().find(|r| r.name_any() == name) {
        Some(run) => Some(run.clone()),
        None => {
            let api: Api<CoeBenchmarkRun> = Api::namespaced(ctx.client.clone(), namespace);
            api.get_opt(name)
                .await
                .map_err(Error::kube(format!("read baseline run {namespace}/{name}")))?
        }
    };
    let Some(run) = run else {
        return Ok(Err(Verdict::unknown(
            BASELINE_NOT_FOUND,
            format!(
                "not compared: baseline run {name} (spec.regression.baselineRun) does not exist in namespace {namespace} and its numbers were never read (deleted before a run was compared with it?); name an existing succeeded run, or remove baselineRun to compare with the previous successful run"
            ),
        )));
    };
    let run_phase = phase(&run);
    if run_phase != RunPhase::Succeeded {
        return Ok(Err(Verdict::unknown(
            BASELINE_NOT_SUCCEEDED,
            format!(
                "not compared: baseline run {name} (spec.regression.baselineRun) is {}, and only a succeeded run can be a baseline",
                run_phase.as_str()
            ),
        )));
    }
    let kept = summary(&run);
    regression.baseline = Some(kept.clone());
    Ok(Ok(kept))
}

/// A succeeded run's numbers, as the benchmark keeps them.
fn summary(run: &CoeBenchmarkRun) -> ResultSummary {
    let s = run.status.clone().unwrap_or_default();
    ResultSummary {
        run: run.name_any(),
        ttft_p50: s.ttft_p50,
        results_path: s.results_path,
        rows: s.rows,
        rows_omitted: s.rows_omitted,
    }
}

/// Writes `verdict` as `run`'s `Regressed` condition, then publishes it and counts a
/// regression.
async fn record(
    bench: &CoeBenchmark,
    run: &CoeBenchmarkRun,
    verdict: &Verdict,
    ctx: &Context,
) -> Result<()> {
    let namespace = run.namespace().unwrap_or_default();
    let before = run.status.clone().unwrap_or_default();
    let mut after = before.clone();
    set_condition(
        &mut after.conditions,
        NewCondition {
            type_: types::REGRESSED,
            status: verdict.status,
            reason: verdict.reason,
            message: &verdict.message,
        },
        run.metadata.generation,
        ctx.now(),
    );
    let api: Api<CoeBenchmarkRun> = Api::namespaced(ctx.client.clone(), &namespace);
    match write_status(&api, run, Some(&before), &after).await {
        Ok(_) => {}
        // Deleted meanwhile (by hand): nothing to record it on.
        Err(Error::Kube {
            source: kube::Error::Api(s),
            ..
        }) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e),
    }
    let regressed = verdict.status == Status::True;
    tracing::info!(run = %run.name_any(), reason = verdict.reason, "compared with the baseline");
    publish(
        ctx,
        run,
        regressed,
        verdict.reason,
        "CompareWithBaseline",
        format!(
            "Regressed is {}: {}",
            verdict.status.as_str(),
            verdict.message
        ),
        CONTROLLER,
    )
    .await;
    if regressed {
        publish(
            ctx,
            bench,
            true,
            verdict.reason,
            "CompareWithBaseline",
            format!("run {} regressed: {}", run.name_any(), verdict.message),
            CONTROLLER,
        )
        .await;
        ctx.metrics.regression_found(&namespace, &bench.name_any());
    }
    Ok(())
}
