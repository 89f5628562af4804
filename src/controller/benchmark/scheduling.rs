//! The schedule step of the benchmark reconciler: asks [`decide`] what the benchmark's
//! schedule wants at this instant and carries it out (runs created or deleted, Events, the
//! missed-slot metric) into the status fields `lastScheduleTime`, `lastMissedScheduleTime` and
//! `nextScheduleTime`.
//!
//! Each slot is handled once: a started slot's run has a deterministic name, so creating it
//! again is AlreadyExists and the existing run is adopted; a skipped slot is reported (Event and
//! metric) only when a fresh read of the benchmark shows it unrecorded, so a reconcile working
//! from a stale cache does not count it twice. Run-now never moves the schedule.

use std::time::Duration;

use coebench_plan::Row;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};

use super::history::phase;
use super::{CONTROLLER, build_run, create_or_adopt};
use crate::conditions::Status;
use crate::controller::{Context, is_not_found, publish};
use crate::crd::{
    ANNOTATION_SCHEDULED_TIMESTAMP, CoeBenchmark, CoeBenchmarkRun, CoeBenchmarkStatus, RunTrigger,
    TriggerKind,
};
use crate::error::{Error, Result};
use crate::resources::scheduled_run_name;
use crate::schedule::{
    Decision, MAX_MISSED_SLOTS, Schedule, ScheduleInput, SkipReason, decide, requeue_after,
    too_many_missed,
};

/// What the step leaves for the rest of the reconcile.
pub(super) struct Scheduled {
    /// Status of the `Scheduled` condition.
    pub status: Status,
    /// Its reason.
    pub reason: &'static str,
    /// Its message.
    pub message: String,
    /// When to look again: at the next slot.
    pub requeue: Option<Duration>,
}

/// Decides and acts for the benchmark's schedule at `now`.
pub(super) async fn step(
    bench: &CoeBenchmark,
    schedule: &Schedule,
    rows: &[Row],
    runs: &mut Vec<CoeBenchmarkRun>,
    status: &mut CoeBenchmarkStatus,
    ctx: &Context,
    now: Timestamp,
) -> Result<Scheduled> {
    let name = bench.name_any();
    let namespace = bench.namespace().unwrap_or_default();
    let created = bench
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .ok_or_else(|| Error::MissingField {
            object: format!("CoeBenchmark {namespace}/{name}"),
            field: "metadata.creationTimestamp",
        })?;
    let mut active: Vec<String> = runs
        .iter()
        .filter(|r| !phase(r).is_finished())
        .map(|r| r.name_any())
        .collect();
    active.sort();
    let started: Vec<Timestamp> = runs.iter().filter_map(scheduled_slot).collect();
    let input = ScheduleInput {
        created,
        last_schedule: status.last_schedule_time.as_ref().map(|t| t.0),
        last_missed: status.last_missed_schedule_time.as_ref().map(|t| t.0),
        suspend: bench.spec.suspend == Some(true),
        starting_deadline_seconds: bench.spec.starting_deadline_seconds,
        policy: bench.spec.concurrency_policy,
        active: &active,
        started: &started,
    };
    let outcome = match decide(schedule, &input, now) {
        Ok(outcome) => outcome,
        Err(e) => {
            status.next_schedule_time = None;
            return Ok(Scheduled {
                status: Status::False,
                reason: e.reason(),
                message: e.to_string(),
                requeue: None,
            });
        }
    };
    let act = Act {
        bench,
        schedule,
        ctx,
        name: &name,
        namespace: &namespace,
        next: outcome.next,
    };
    match outcome.decision {
        Decision::Suspended | Decision::Wait => {}
        Decision::AlreadyStarted { slot } => record(&mut status.last_schedule_time, slot),
        Decision::Start {
            slot,
            replace,
            superseded,
        } => {
            act.replace(&replace, slot, runs).await?;
            act.start(rows, slot, superseded, outcome.since, runs, status)
                .await?;
        }
        Decision::Skip { slot, reason } => act.skip(slot, &reason, outcome.since, status).await?,
    }

    status.next_schedule_time = outcome.next.map(Time);
    let where_ = format!("{:?} in {}", schedule.expression(), schedule.time_zone());
    Ok(match outcome.next {
        Some(next) => Scheduled {
            status: Status::True,
            reason: "Scheduled",
            message: format!("next run at {} ({where_})", schedule.format(next)),
            requeue: requeue_after(Some(next), now),
        },
        None => Scheduled {
            status: Status::False,
            reason: "Suspended",
            message: format!(
                "spec.suspend is true: slots of {where_} start no run (run-now still works); set suspend: false to resume"
            ),
            requeue: None,
        },
    })
}

/// The slot of a scheduled run, from its annotation.
fn scheduled_slot(run: &CoeBenchmarkRun) -> Option<Timestamp> {
    run.annotations()
        .get(ANNOTATION_SCHEDULED_TIMESTAMP)?
        .parse()
        .ok()
}

/// Sets `field` to `slot` unless it is already later.
fn record(field: &mut Option<Time>, slot: Timestamp) {
    if field.as_ref().is_none_or(|t| t.0 < slot) {
        *field = Some(Time(slot));
    }
}

/// What acting on a decision needs.
struct Act<'a> {
    bench: &'a CoeBenchmark,
    schedule: &'a Schedule,
    ctx: &'a Context,
    name: &'a str,
    namespace: &'a str,
    next: Option<Timestamp>,
}

impl Act<'_> {
    fn at(&self, t: Timestamp) -> String {
        self.schedule.format(t)
    }

    fn next(&self) -> String {
        self.next
            .map(|t| format!("the next slot is {}", self.at(t)))
            .unwrap_or_else(|| "no slot follows".into())
    }

    /// `Replace`: deletes the active runs (their Jobs go with them).
    async fn replace(
        &self,
        replace: &[String],
        slot: Timestamp,
        runs: &mut Vec<CoeBenchmarkRun>,
    ) -> Result<()> {
        if replace.is_empty() {
            return Ok(());
        }
        let api: Api<CoeBenchmarkRun> = Api::namespaced(self.ctx.client.clone(), self.namespace);
        for run in replace {
            match api.delete(run, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(Error::kube(format!("delete run {}/{run}", self.namespace))(
                        e,
                    ));
                }
            }
        }
        runs.retain(|r| !replace.contains(&r.name_any()));
        tracing::info!(replaced = ?replace, "deleted active runs for a new slot");
        let note = format!(
            "deleted active run(s) {} to start the run of the slot at {} (concurrencyPolicy Replace)",
            replace.join(", "),
            self.at(slot)
        );
        publish(
            self.ctx,
            self.bench,
            false,
            "RunReplaced",
            "Schedule",
            note,
            CONTROLLER,
        )
        .await;
        Ok(())
    }

    /// Creates the run of `slot` (or adopts it when it exists) and records the slot.
    async fn start(
        &self,
        rows: &[Row],
        slot: Timestamp,
        superseded: u32,
        since: Timestamp,
        runs: &mut Vec<CoeBenchmarkRun>,
        status: &mut CoeBenchmarkStatus,
    ) -> Result<()> {
        let n = status.run_count.unwrap_or(0) + 1;
        let scheduled_at = self.at(slot);
        let trigger = RunTrigger {
            kind: TriggerKind::Schedule,
            value: Some(scheduled_at.clone()),
            sequence: None,
        };
        let mut run = build_run(self.bench, rows.to_vec(), trigger, n, self.ctx)?;
        let run_name = scheduled_run_name(self.name, slot);
        run.metadata.name = Some(run_name.clone());
        run.metadata.annotations = Some(
            [(
                ANNOTATION_SCHEDULED_TIMESTAMP.to_string(),
                scheduled_at.clone(),
            )]
            .into(),
        );
        let api: Api<CoeBenchmarkRun> = Api::namespaced(self.ctx.client.clone(), self.namespace);
        if let Some(created) = create_or_adopt(&api, &run).await? {
            tracing::info!(run = %run_name, slot = %scheduled_at, "created a scheduled run");
            if too_many_missed(superseded) {
                self.warn_too_many_missed(&scheduled_at, since).await;
            }
            let mut note = format!(
                "created run {run_name} for the slot at {scheduled_at} ({:?} in {})",
                self.schedule.expression(),
                self.schedule.time_zone()
            );
            if superseded > 0 {
                note.push_str(&format!(
                    "; {superseded} earlier slot(s) since {} were missed and only the latest runs",
                    self.at(since)
                ));
            }
            publish(
                self.ctx,
                self.bench,
                false,
                "RunCreated",
                "Schedule",
                note,
                CONTROLLER,
            )
            .await;
            if !runs.iter().any(|r| r.name_any() == run_name) {
                runs.push(created);
            }
        }
        status.run_count = Some(n);
        record(&mut status.last_schedule_time, slot);
        Ok(())
    }

    /// The `TooManyMissedTimes` warning (an Event and the metric) of a start after more than
    /// [`MAX_MISSED_SLOTS`] missed slots.
    async fn warn_too_many_missed(&self, scheduled_at: &str, since: Timestamp) {
        let note = format!(
            "too many missed start times (more than {MAX_MISSED_SLOTS}) since {}: only the latest, {scheduled_at}, was started; set or decrease spec.startingDeadlineSeconds, or check the operator's clock and why it was down",
            self.at(since)
        );
        tracing::warn!(slot = %scheduled_at, "more than {MAX_MISSED_SLOTS} slots were missed");
        self.warn_missed("TooManyMissedTimes", note, "too_many_missed")
            .await;
    }

    /// Records `slot` as missed and reports it (an Event and the metric), unless the
    /// benchmark's latest status already has it.
    async fn skip(
        &self,
        slot: Timestamp,
        reason: &SkipReason,
        since: Timestamp,
        status: &mut CoeBenchmarkStatus,
    ) -> Result<()> {
        // The cache may lag behind this operator's own last status write; a slot already
        // recorded there is not reported again.
        let api: Api<CoeBenchmark> = Api::namespaced(self.ctx.client.clone(), self.namespace);
        let fresh = api
            .get(self.name)
            .await
            .map_err(Error::kube(format!(
                "read benchmark {}/{}",
                self.namespace, self.name
            )))?
            .status
            .unwrap_or_default();
        if let Some(t) = &fresh.last_schedule_time {
            record(&mut status.last_schedule_time, t.0);
        }
        if let Some(t) = &fresh.last_missed_schedule_time {
            record(&mut status.last_missed_schedule_time, t.0);
        }
        let handled = [
            &status.last_schedule_time,
            &status.last_missed_schedule_time,
        ]
        .into_iter()
        .flatten()
        .any(|t| t.0 >= slot);
        if handled {
            return Ok(());
        }
        record(&mut status.last_missed_schedule_time, slot);

        let at = self.at(slot);
        let note = match reason {
            SkipReason::ConcurrencyForbid { active } => format!(
                "skipped the slot at {at}: run(s) {} still active and concurrencyPolicy is Forbid (set Replace or Allow to run anyway); {}",
                active.join(", "),
                self.next()
            ),
            SkipReason::StartingDeadline {
                deadline_seconds,
                missed,
            } => format!(
                "missed the slot at {at}: it is more than startingDeadlineSeconds ({deadline_seconds} s) old, with {} slot(s) missed since {}; {}",
                if *missed > MAX_MISSED_SLOTS {
                    format!("more than {MAX_MISSED_SLOTS}")
                } else {
                    missed.to_string()
                },
                self.at(since),
                self.next()
            ),
        };
        tracing::warn!(slot = %at, reason = reason.event_reason(), "a slot started no run");
        self.warn_missed(reason.event_reason(), note, reason.metric_label())
            .await;
        Ok(())
    }

    /// A Warning Event `reason` with `note`, and one more missed slot counted under `label`.
    async fn warn_missed(&self, reason: &str, note: String, label: &'static str) {
        publish(
            self.ctx, self.bench, true, reason, "Schedule", note, CONTROLLER,
        )
        .await;
        self.ctx
            .metrics
            .missed_schedule(self.namespace, self.name, label);
    }
}
