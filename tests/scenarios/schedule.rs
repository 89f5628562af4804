//! Recurring benchmarks: the real controllers against the fake API server, with one manual clock
//! shared by the server (creation and kubelet times) and the operator.
//!
//! Each step sets the clock and touches the benchmark ([`Scene::tick`]) so the controller
//! reconciles at the new time at once, then waits until that reconcile has written its status.
//! In production nothing touches the benchmark: the reconciler requeues itself exactly at the
//! next slot, which [`a_reconcile_requeues_exactly_at_the_next_slot`] checks on `reconcile`.

use std::sync::Arc;
use std::time::Duration;

use coebench_operator::clock::ManualClock;
use coebench_operator::controller::{Context, Settings, benchmark};
use coebench_operator::metrics::Metrics;
use coebench_operator::resources::scheduled_run_name;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;

use super::*;

fn t(rfc3339: &str) -> Timestamp {
    rfc3339.parse().unwrap()
}

/// Timeouts long enough that an unfinished run stays active however far the clock moves.
fn patient_settings() -> Settings {
    let week = Duration::from_secs(7 * 86_400);
    Settings {
        image_pull_timeout: week,
        dependency_timeout: week,
        unschedulable_timeout: week,
        ..fast_settings()
    }
}

struct Scene {
    fake: FakeApiServer,
    clock: Arc<ManualClock>,
}

impl Scene {
    /// A fake API server and a clock at `start`, with the Secret and claim of
    /// [`put_benchmark`], and an operator on that clock.
    async fn new(start: &str) -> (Scene, Operator) {
        let clock = Arc::new(ManualClock::new(t(start)));
        let fake = FakeApiServer::with_clock(clock.clone());
        put_secret(&fake, "sn-key", "apiKey");
        put_claim(&fake, "results");
        let scene = Scene { fake, clock };
        let operator = scene.operator().await;
        (scene, operator)
    }

    async fn operator(&self) -> Operator {
        Operator::start_with_clock(&self.fake, patient_settings(), self.clock.clone()).await
    }

    /// Sets the clock to `to`, changes benchmark `name` with `change`, and waits until a
    /// reconcile that saw both has written its status. The change bumps `metadata.generation`
    /// (as a spec edit does), so that reconcile is the one recording the new
    /// `observedGeneration`.
    async fn tick_with(&self, name: &str, to: &str, change: impl FnOnce(&mut serde_json::Value)) {
        self.clock.set(t(to));
        let mut generation = 0;
        self.fake.modify::<CoeBenchmark>(NS, name, |b| {
            change(b);
            generation = b["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            b["metadata"]["generation"] = json!(generation);
        });
        benchmark_where(&self.fake, name, &format!("a reconcile at {to}"), |b| {
            b.status.as_ref().and_then(|s| s.observed_generation) == Some(generation)
        })
        .await;
    }

    /// [`Scene::tick_with`] without a change.
    async fn tick(&self, name: &str, to: &str) {
        self.tick_with(name, to, |_| {}).await;
    }

    fn status(&self, name: &str) -> coebench_operator::crd::CoeBenchmarkStatus {
        self.fake
            .get::<CoeBenchmark>(NS, name)
            .and_then(|b| b.status)
            .unwrap_or_default()
    }

    fn run_names(&self) -> Vec<String> {
        self.fake
            .list::<CoeBenchmarkRun>(NS)
            .into_iter()
            .filter_map(|r| r.metadata.name)
            .collect()
    }

    /// Runs created through the API (an operator creating a name twice would show here).
    fn runs_created(&self) -> usize {
        self.fake
            .requests()
            .iter()
            .filter(|r| {
                r.method == "POST" && r.status == 201 && r.path.ends_with("/coebenchmarkruns")
            })
            .count()
    }

    /// Plays the Job controller and the kubelet until run `run` has succeeded.
    async fn finish(&self, run: &str) {
        eventually(WAIT, "the run's Job", || self.fake.get::<Job>(NS, run)).await;
        let pod = self.fake.start_job_pod(NS, run);
        self.fake
            .terminate_pod(NS, &pod, 0, &report(run, RunOutcome::Succeeded, None));
        self.fake.mark_job(NS, run, None);
        run_where(&self.fake, run, "the run Succeeded", |r| {
            run_phase(r) == Some(RunPhase::Succeeded)
        })
        .await;
    }

    /// Every request so far is allowed by `deploy/rbac.yaml`.
    fn assert_rbac_allows_every_call(&self) {
        let allowed = super::rbac::allowed();
        let denied: Vec<_> = self
            .fake
            .requests()
            .iter()
            .map(|r| super::rbac::permission(&r.method, &r.path, &r.query))
            .filter(|p| !allowed.contains(p))
            .collect();
        assert!(
            denied.is_empty(),
            "deploy/rbac.yaml does not allow {denied:?}"
        );
    }

    fn event_notes(&self, reason: &str) -> Vec<String> {
        self.fake
            .list::<Event>(NS)
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter_map(|e| e.note)
            .collect()
    }
}

fn time(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

fn scheduled_condition(
    status: &coebench_operator::crd::CoeBenchmarkStatus,
) -> (String, String, String) {
    let c = condition(&status.conditions, "Scheduled").expect("a Scheduled condition");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn metric_line(operator: &Operator, prefix: &str) -> Option<String> {
    let text = operator.metrics.encode().unwrap();
    text.lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_string)
}

#[tokio::test]
async fn a_schedule_starts_exactly_one_run_per_slot_across_a_restart() {
    let (scene, operator) = Scene::new("2026-03-01T06:58:00Z").await;
    put_benchmark(
        &scene.fake,
        "nightly",
        json!({"schedule": "0 2 * * *", "timeZone": "America/New_York"}),
    );
    let first = t("2026-03-01T07:00:00Z"); // 02:00 EST
    benchmark_where(&scene.fake, "nightly", "the first slot scheduled", |b| {
        b.status
            .as_ref()
            .is_some_and(|s| time(&s.next_schedule_time) == Some(first))
    })
    .await;
    let (status, reason, message) = scheduled_condition(&scene.status("nightly"));
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Scheduled"));
    assert!(
        message.contains("2026-03-01T02:00:00-05:00") && message.contains("America/New_York"),
        "{message}"
    );
    // A scheduled benchmark gets no initial run, and nothing starts before its slot.
    scene.tick("nightly", "2026-03-01T06:59:59Z").await;
    assert!(scene.run_names().is_empty());

    scene.tick("nightly", "2026-03-01T07:00:00Z").await;
    let run1 = scheduled_run_name("nightly", first);
    let run = scene
        .fake
        .get::<CoeBenchmarkRun>(NS, &run1)
        .expect("slot 1's run");
    assert_eq!(run.spec.trigger.kind, TriggerKind::Schedule);
    assert_eq!(
        run.metadata.annotations.as_ref().unwrap()["coebench.dev/scheduled-timestamp"],
        "2026-03-01T02:00:00-05:00"
    );
    let status = scene.status("nightly");
    assert_eq!(time(&status.last_schedule_time), Some(first));
    let second = t("2026-03-02T07:00:00Z");
    assert_eq!(time(&status.next_schedule_time), Some(second));
    assert_eq!(
        metric_line(&operator, "coebench_benchmark_next_run_timestamp_seconds{").as_deref(),
        Some(
            format!(
                "coebench_benchmark_next_run_timestamp_seconds{{namespace=\"{NS}\",benchmark=\"nightly\"}} {}",
                second.as_second()
            )
            .as_str()
        )
    );
    scene.finish(&run1).await;

    // A restart between two slots: the new operator neither repeats slot 1 nor runs early.
    operator.stop().await;
    let operator = scene.operator().await;
    scene.tick("nightly", "2026-03-01T12:00:00Z").await;
    assert_eq!(scene.run_names(), std::slice::from_ref(&run1));

    // Slot 2, reached 30 s late, and slot 3.
    scene.tick("nightly", "2026-03-02T07:00:30Z").await;
    let run2 = scheduled_run_name("nightly", second);
    assert!(scene.fake.get::<CoeBenchmarkRun>(NS, &run2).is_some());
    scene.finish(&run2).await;
    let third = t("2026-03-03T07:00:00Z");
    scene.tick("nightly", "2026-03-03T07:00:00Z").await;
    let run3 = scheduled_run_name("nightly", third);

    let mut expected = vec![run1.clone(), run2, run3];
    expected.sort();
    assert_eq!(scene.run_names(), expected);
    assert_eq!(scene.runs_created(), 3);
    let status = scene.status("nightly");
    assert_eq!(time(&status.last_schedule_time), Some(third));
    assert_eq!(status.run_count, Some(3));
    // Repeats within minutes are one Event with a series count (kube's Recorder).
    let notes = scene.event_notes("RunCreated");
    assert!(
        notes[0].contains("for the slot at 2026-03-01T02:00:00-05:00"),
        "{notes:?}"
    );
    operator.stop().await;
}

#[tokio::test]
async fn forbid_skips_a_slot_while_a_run_is_active_with_an_event_and_a_metric() {
    let (scene, operator) = Scene::new("2026-03-01T01:58:00Z").await;
    put_benchmark(&scene.fake, "hourly", json!({"schedule": "@hourly"}));
    scene.tick("hourly", "2026-03-01T02:00:00Z").await;
    let run_a = scheduled_run_name("hourly", t("2026-03-01T02:00:00Z"));
    assert_eq!(scene.run_names(), std::slice::from_ref(&run_a));

    // Run A is still pending at 03:00: the slot is skipped, recorded, reported once.
    scene.tick("hourly", "2026-03-01T03:00:05Z").await;
    assert_eq!(scene.run_names(), std::slice::from_ref(&run_a));
    let status = scene.status("hourly");
    assert_eq!(
        time(&status.last_missed_schedule_time),
        Some(t("2026-03-01T03:00:00Z"))
    );
    assert_eq!(
        time(&status.last_schedule_time),
        Some(t("2026-03-01T02:00:00Z"))
    );
    let notes = scene.event_notes("RunSkipped");
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&run_a) && n.contains("Forbid")),
        "{notes:?}"
    );
    let missed = format!(
        "coebench_benchmark_missed_schedules_total{{namespace=\"{NS}\",benchmark=\"hourly\",reason=\"concurrency_forbid\"}}"
    );
    assert_eq!(metric_line(&operator, &missed), Some(format!("{missed} 1")));
    scene.tick("hourly", "2026-03-01T03:30:00Z").await;
    assert_eq!(metric_line(&operator, &missed), Some(format!("{missed} 1")));

    // Once run A is over, the next slot runs.
    scene.finish(&run_a).await;
    scene.tick("hourly", "2026-03-01T04:00:00Z").await;
    let run_b = scheduled_run_name("hourly", t("2026-03-01T04:00:00Z"));
    assert_eq!(scene.run_names(), [run_a, run_b]);
    operator.stop().await;
    scene.assert_rbac_allows_every_call();
}

#[tokio::test]
async fn replace_deletes_the_active_run_before_starting_the_new_one() {
    let (scene, operator) = Scene::new("2026-03-01T01:58:00Z").await;
    put_benchmark(
        &scene.fake,
        "hourly",
        json!({"schedule": "0 * * * *", "concurrencyPolicy": "Replace"}),
    );
    scene.tick("hourly", "2026-03-01T02:00:00Z").await;
    let run_a = scheduled_run_name("hourly", t("2026-03-01T02:00:00Z"));
    eventually(WAIT, "run A's Job", || scene.fake.get::<Job>(NS, &run_a)).await;

    scene.tick("hourly", "2026-03-01T03:00:00Z").await;
    let run_b = scheduled_run_name("hourly", t("2026-03-01T03:00:00Z"));
    assert_eq!(scene.run_names(), std::slice::from_ref(&run_b));
    assert!(
        scene.fake.get::<Job>(NS, &run_a).is_none(),
        "run A's Job goes with it"
    );
    let notes = scene.event_notes("RunReplaced");
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&run_a) && n.contains("Replace")),
        "{notes:?}"
    );
    eventually(WAIT, "run B's Job", || scene.fake.get::<Job>(NS, &run_b)).await;
    operator.stop().await;
    scene.assert_rbac_allows_every_call();
}

#[tokio::test]
async fn suspend_stops_scheduling_and_a_resume_past_the_deadline_misses_the_slot() {
    let (scene, operator) = Scene::new("2026-03-01T01:58:00Z").await;
    put_benchmark(
        &scene.fake,
        "paused",
        json!({"schedule": "@hourly", "suspend": true, "startingDeadlineSeconds": 300}),
    );
    scene.tick("paused", "2026-03-01T02:10:00Z").await;
    assert!(scene.run_names().is_empty());
    let status = scene.status("paused");
    assert_eq!(status.next_schedule_time, None);
    let (s, reason, _) = scheduled_condition(&status);
    assert_eq!((s.as_str(), reason.as_str()), ("False", "Suspended"));
    assert_eq!(
        metric_line(&operator, "coebench_benchmark_next_run_timestamp_seconds{"),
        None
    );

    // Resumed ten minutes after the 02:00 slot, with a five-minute deadline: missed, not run.
    scene
        .tick_with("paused", "2026-03-01T02:10:00Z", |b| {
            b["spec"]["suspend"] = json!(false)
        })
        .await;
    assert!(scene.run_names().is_empty());
    let status = scene.status("paused");
    assert_eq!(
        time(&status.last_missed_schedule_time),
        Some(t("2026-03-01T02:00:00Z"))
    );
    assert_eq!(
        time(&status.next_schedule_time),
        Some(t("2026-03-01T03:00:00Z"))
    );
    let notes = scene.event_notes("MissedSchedule");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("startingDeadlineSeconds (300 s)")),
        "{notes:?}"
    );
    let missed = format!(
        "coebench_benchmark_missed_schedules_total{{namespace=\"{NS}\",benchmark=\"paused\",reason=\"starting_deadline\"}} 1"
    );
    assert!(metric_line(&operator, &missed).is_some());

    // The next slot runs, 20 s late (within the deadline).
    scene.tick("paused", "2026-03-01T03:00:20Z").await;
    assert_eq!(
        scene.run_names(),
        [scheduled_run_name("paused", t("2026-03-01T03:00:00Z"))]
    );
    operator.stop().await;
}

#[tokio::test]
async fn after_more_than_100_missed_slots_the_latest_still_starts_with_a_warning() {
    let (scene, operator) = Scene::new("2026-03-01T00:00:30Z").await;
    put_benchmark(&scene.fake, "minutely", json!({"schedule": "* * * * *"}));
    // The operator saw nothing for three hours: 180 slots are due, only the latest runs.
    scene.tick("minutely", "2026-03-01T03:00:10Z").await;
    assert_eq!(
        scene.run_names(),
        [scheduled_run_name("minutely", t("2026-03-01T03:00:00Z"))]
    );
    let notes = scene.event_notes("TooManyMissedTimes");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("more than 100") && n.contains("startingDeadlineSeconds")),
        "{notes:?}"
    );
    let warned = format!(
        "coebench_benchmark_missed_schedules_total{{namespace=\"{NS}\",benchmark=\"minutely\",reason=\"too_many_missed\"}} 1"
    );
    assert!(metric_line(&operator, &warned).is_some());
    // Once that run ends, the next minute is an ordinary slot again: no warning.
    scene
        .finish(&scheduled_run_name("minutely", t("2026-03-01T03:00:00Z")))
        .await;
    scene.tick("minutely", "2026-03-01T03:01:05Z").await;
    assert_eq!(scene.run_names().len(), 2);
    assert_eq!(scene.event_notes("TooManyMissedTimes").len(), 1);
    operator.stop().await;
}

#[tokio::test]
async fn run_now_on_a_scheduled_benchmark_adds_one_run_and_keeps_the_schedule() {
    let (scene, operator) = Scene::new("2026-03-01T01:00:00Z").await;
    put_benchmark(&scene.fake, "nightly", json!({"schedule": "0 2 * * *"}));
    let slot = t("2026-03-01T02:00:00Z");
    scene
        .tick_with("nightly", "2026-03-01T01:10:00Z", |b| {
            b["metadata"]["annotations"]["coebench.dev/run-now"] = json!("adhoc")
        })
        .await;
    assert_eq!(scene.run_names(), ["nightly-1"]);
    let run = scene.fake.get::<CoeBenchmarkRun>(NS, "nightly-1").unwrap();
    assert_eq!(run.spec.trigger.kind, TriggerKind::RunNow);
    let status = scene.status("nightly");
    assert_eq!(time(&status.next_schedule_time), Some(slot));
    assert_eq!(status.last_schedule_time, None);

    // The slot still runs at its time.
    scene.finish("nightly-1").await;
    scene.tick("nightly", "2026-03-01T02:00:00Z").await;
    assert_eq!(
        scene.run_names(),
        ["nightly-1".to_string(), scheduled_run_name("nightly", slot)]
    );
    operator.stop().await;
}

#[tokio::test]
async fn an_invalid_schedule_or_time_zone_sets_valid_false_and_runs_nothing() {
    let (scene, operator) = Scene::new("2026-03-01T01:00:00Z").await;
    put_benchmark(&scene.fake, "bad", json!({"schedule": "0 25 * * *"}));
    put_benchmark(
        &scene.fake,
        "badzone",
        json!({"schedule": "0 2 * * *", "timeZone": "Mars/Olympus_Mons"}),
    );
    for (name, reason, quoted) in [
        ("bad", "InvalidSchedule", "\"0 25 * * *\""),
        ("badzone", "InvalidTimeZone", "\"Mars/Olympus_Mons\""),
    ] {
        let b = benchmark_where(&scene.fake, name, "Valid=False", |b| {
            b.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "Valid"))
                .is_some_and(|c| c.status == "False")
        })
        .await;
        let status = b.status.unwrap();
        let valid = condition(&status.conditions, "Valid").unwrap();
        assert_eq!(valid.reason, reason);
        assert!(valid.message.contains(quoted), "{}", valid.message);
        assert_eq!(scheduled_condition(&status).0, "False");
        assert_eq!(status.next_schedule_time, None);
        assert!(!scene.event_notes(reason).is_empty());
    }
    // Past 02:00, which a valid zone would have run.
    scene.tick("bad", "2026-03-01T03:00:00Z").await;
    scene.tick("badzone", "2026-03-01T03:00:00Z").await;
    assert!(scene.run_names().is_empty());

    // Fixed, it schedules.
    scene
        .tick_with("bad", "2026-03-01T03:00:00Z", |b| {
            b["spec"]["schedule"] = json!("0 4 * * *")
        })
        .await;
    let status = scene.status("bad");
    assert_eq!(
        condition(&status.conditions, "Valid").unwrap().status,
        "True"
    );
    assert_eq!(scheduled_condition(&status).0, "True");
    assert_eq!(
        time(&status.next_schedule_time),
        Some(t("2026-03-01T04:00:00Z"))
    );
    assert!(scene.run_names().is_empty());
    operator.stop().await;
}

#[tokio::test]
async fn a_reconcile_requeues_exactly_at_the_next_slot() {
    let clock = Arc::new(ManualClock::new(t("2026-03-01T01:59:00Z")));
    let fake = FakeApiServer::with_clock(clock.clone());
    put_benchmark(&fake, "every5", json!({"schedule": "*/5 * * * *"}));
    let ctx = Arc::new(
        Context::new(
            fake.client(),
            Arc::new(Metrics::new()),
            fast_settings(),
            None,
        )
        .with_clock(clock.clone()),
    );
    let reconcile = |ctx: Arc<Context>| {
        let bench = fake.get::<CoeBenchmark>(NS, "every5").unwrap();
        benchmark::reconcile(Arc::new(bench), ctx)
    };
    assert_eq!(
        reconcile(ctx.clone()).await.unwrap(),
        Action::requeue(Duration::from_secs(60))
    );
    clock.set(t("2026-03-01T02:00:00.250Z"));
    assert_eq!(
        reconcile(ctx.clone()).await.unwrap(),
        Action::requeue(Duration::from_millis(299_750))
    );
    assert_eq!(fake.list::<CoeBenchmarkRun>(NS).len(), 1);
    // Nothing to do and nothing changed: no status write, the same requeue.
    let writes = fake.requests().len();
    assert_eq!(
        reconcile(ctx.clone()).await.unwrap(),
        Action::requeue(Duration::from_millis(299_750))
    );
    let new_writes: Vec<_> = fake.requests()[writes..]
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(new_writes.is_empty(), "{new_writes:?}");
}
