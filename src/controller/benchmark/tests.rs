//! Run triggers and history trimming, as pure functions.

use super::*;
use crate::crd::{CoeBenchmarkRunStatus, CoeBenchmarkSpec, RunPhase};
use serde_json::json;

fn bench(annotation: Option<&str>, schedule: Option<&str>) -> CoeBenchmark {
    let spec: CoeBenchmarkSpec = serde_json::from_value(json!({
        "endpoint": {"api": "simulator"},
        "rows": [{"model": "m", "inputTokens": 1, "outputTokens": 1, "numRequests": 1, "concurrency": 1}],
        "schedule": schedule,
    }))
    .unwrap();
    let mut b = CoeBenchmark::new("bench", spec);
    if let Some(v) = annotation {
        b.metadata.annotations = Some([(ANNOTATION_RUN_NOW.to_string(), v.to_string())].into());
    }
    b
}

fn status(run_count: u64, handled: Option<&str>) -> CoeBenchmarkStatus {
    CoeBenchmarkStatus {
        run_count: Some(run_count),
        handled_run_now: handled.map(str::to_string),
        ..Default::default()
    }
}

#[test]
fn a_new_benchmark_without_schedule_asks_for_its_initial_run() {
    let t = pending_trigger(&bench(None, None), &CoeBenchmarkStatus::default()).unwrap();
    assert_eq!(t.kind, TriggerKind::Initial);
    // With a schedule, slots and run-now start runs; there is no initial run.
    assert!(
        pending_trigger(
            &bench(None, Some("0 * * * *")),
            &CoeBenchmarkStatus::default()
        )
        .is_none()
    );
    let t = pending_trigger(
        &bench(Some("x"), Some("0 * * * *")),
        &CoeBenchmarkStatus::default(),
    )
    .unwrap();
    assert_eq!(t.kind, TriggerKind::RunNow);
}

#[test]
fn each_run_now_value_triggers_once() {
    assert!(pending_trigger(&bench(None, None), &status(1, None)).is_none());
    let t = pending_trigger(&bench(Some("a"), None), &status(1, None)).unwrap();
    assert_eq!(
        (t.kind, t.value.as_deref()),
        (TriggerKind::RunNow, Some("a"))
    );
    assert!(pending_trigger(&bench(Some("a"), None), &status(2, Some("a"))).is_none());
    assert!(pending_trigger(&bench(Some("  "), None), &status(2, Some("a"))).is_none());
    assert!(pending_trigger(&bench(Some("b"), None), &status(2, Some("a"))).is_some());
}

fn run(n: u64, phase: Option<RunPhase>) -> CoeBenchmarkRun {
    let mut r = crate::resources::job::tests::sample_run();
    r.metadata.name = Some(format!("bench-{n}"));
    r.spec.trigger.sequence = Some(n);
    r.status = phase.map(|p| CoeBenchmarkRunStatus {
        phase: Some(p),
        ..Default::default()
    });
    r
}

#[test]
fn history_keeps_the_newest_finished_runs_and_every_active_one() {
    use RunPhase::*;
    let runs = vec![
        run(1, Some(Succeeded)),
        run(2, Some(Failed)),
        run(3, Some(Succeeded)),
        run(4, Some(Failed)),
        run(5, Some(Succeeded)),
        run(6, Some(Running)),
        run(7, None),
    ];
    assert_eq!(trim_history(&runs, 3, 1), ["bench-2"]);
    assert_eq!(trim_history(&runs, 1, 1), ["bench-3", "bench-2", "bench-1"]);
    assert_eq!(
        trim_history(&runs, 0, 0),
        ["bench-5", "bench-4", "bench-3", "bench-2", "bench-1"]
    );
}
