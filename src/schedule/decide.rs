//! What a scheduled benchmark does at one instant, following Kubernetes' CronJob controller.
//!
//! Slots are counted after the latest of the benchmark's creation, `status.lastScheduleTime`
//! (the last slot that started a run) and `status.lastMissedScheduleTime` (the last slot that
//! was skipped or missed), so a handled slot is never reconsidered. Only the latest due slot may
//! run; it does not when it is older than `startingDeadlineSeconds` or when `Forbid` finds a run
//! active. When more than [`MAX_MISSED_SLOTS`] slots were missed the latest still starts, with a
//! `TooManyMissedTimes` warning, as the current CronJob controller does (the original one
//! started nothing). The decision is pure: the caller supplies the time, the active runs and the
//! slots that already have a run.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::{Schedule, ScheduleError};
use crate::crd::ConcurrencyPolicy;

/// More missed slots than this and the latest starts with a `TooManyMissedTimes` warning
/// (CronJob's limit): the operator was down, the benchmark suspended, or the clock jumped, for
/// long enough that someone should look. Counting stops here, so a year of missed minutes costs
/// no more than 101 of them.
pub const MAX_MISSED_SLOTS: u32 = 100;

/// Shortest requeue: a reconcile that wakes a moment before its slot (timers and wall clocks
/// drift apart) looks again after this, rather than in a tight loop.
const MIN_REQUEUE: Duration = Duration::from_secs(1);
/// Longest requeue: a later slot is approached in steps, so a wall clock that jumps (NTP, a
/// suspended VM) is noticed within this.
const MAX_REQUEUE: Duration = Duration::from_secs(3600);

/// What the decision looks at, besides the schedule and the time.
#[derive(Clone, Debug)]
pub struct ScheduleInput<'a> {
    /// The benchmark's creation time: slots are counted from here until one is handled.
    pub created: Timestamp,
    /// `status.lastScheduleTime`: the last slot that started a run.
    pub last_schedule: Option<Timestamp>,
    /// `status.lastMissedScheduleTime`: the last slot skipped or missed.
    pub last_missed: Option<Timestamp>,
    /// `spec.suspend`.
    pub suspend: bool,
    /// `spec.startingDeadlineSeconds`.
    pub starting_deadline_seconds: Option<i64>,
    /// `spec.concurrencyPolicy`.
    pub policy: ConcurrencyPolicy,
    /// The benchmark's runs that have not finished (any trigger).
    pub active: &'a [String],
    /// Slots that already have a run, e.g. created by a replica that stopped before recording it.
    pub started: &'a [Timestamp],
}

/// Why a due slot starts no run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// `concurrencyPolicy: Forbid` and these runs are active.
    ConcurrencyForbid {
        /// The active runs.
        active: Vec<String>,
    },
    /// The slot is older than `startingDeadlineSeconds`.
    StartingDeadline {
        /// The deadline, in seconds.
        deadline_seconds: i64,
        /// Slots missed since the last handled one (at most [`MAX_MISSED_SLOTS`] + 1).
        missed: u32,
    },
}

impl SkipReason {
    /// The reason of the Event: `RunSkipped` or `MissedSchedule`.
    pub fn event_reason(&self) -> &'static str {
        match self {
            SkipReason::ConcurrencyForbid { .. } => "RunSkipped",
            SkipReason::StartingDeadline { .. } => "MissedSchedule",
        }
    }

    /// The `reason` label of `coebench_benchmark_missed_schedules_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SkipReason::ConcurrencyForbid { .. } => "concurrency_forbid",
            SkipReason::StartingDeadline { .. } => "starting_deadline",
        }
    }
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// `spec.suspend` is set: no scheduled run (run-now still works).
    Suspended,
    /// No slot is due.
    Wait,
    /// Start a run for `slot`, first deleting the `replace`d runs (`Replace`).
    Start {
        /// The slot.
        slot: Timestamp,
        /// Active runs to delete first.
        replace: Vec<String>,
        /// Earlier slots since the last handled one that will never run (only the latest does),
        /// at most [`MAX_MISSED_SLOTS`]: that many means more than [`MAX_MISSED_SLOTS`] slots
        /// were missed ([`too_many_missed`]).
        superseded: u32,
    },
    /// `slot` already has a run; record it as scheduled.
    AlreadyStarted {
        /// The slot.
        slot: Timestamp,
    },
    /// `slot` starts no run; record it as missed.
    Skip {
        /// The slot.
        slot: Timestamp,
        /// Why.
        reason: SkipReason,
    },
}

/// A decision and the slot after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// What to do now.
    pub decision: Decision,
    /// The first slot after now (`status.nextScheduleTime`); `None` while suspended.
    pub next: Option<Timestamp>,
    /// Slots are counted after this instant.
    pub since: Timestamp,
}

/// Decides what the benchmark does at `now`.
///
/// Fails only when the schedule has no slot after `now` (which [`Schedule::parse`] rules out
/// for any realistic date).
pub fn decide(
    schedule: &Schedule,
    input: &ScheduleInput<'_>,
    now: Timestamp,
) -> Result<Outcome, ScheduleError> {
    let since = [input.last_schedule, input.last_missed]
        .into_iter()
        .flatten()
        .fold(input.created, Timestamp::max);
    if input.suspend {
        return Ok(Outcome {
            decision: Decision::Suspended,
            next: None,
            since,
        });
    }
    let next = Some(schedule.next_after(now)?);
    let outcome = |decision| Outcome {
        decision,
        next,
        since,
    };
    let Some(slot) = schedule
        .latest_at_or_before(now)
        .filter(|slot| *slot > since)
    else {
        return Ok(outcome(Decision::Wait));
    };
    if input.started.contains(&slot) {
        return Ok(outcome(Decision::AlreadyStarted { slot }));
    }
    let deadline = input
        .starting_deadline_seconds
        .map(|s| SignedDuration::from_secs(s.max(0)));
    if let Some(deadline) = deadline
        && slot.saturating_add(deadline).unwrap_or(slot) < now
    {
        let missed = schedule.count_slots(since, now, MAX_MISSED_SLOTS + 1);
        return Ok(outcome(Decision::Skip {
            slot,
            reason: SkipReason::StartingDeadline {
                deadline_seconds: deadline.as_secs(),
                missed,
            },
        }));
    }
    // As in CronJob, slots older than the deadline do not count towards the limit.
    let window = match deadline {
        Some(d) => since.max(now.saturating_sub(d).unwrap_or(since)),
        None => since,
    };
    let missed = schedule.count_slots(window, now, MAX_MISSED_SLOTS + 1);
    let decision = match (input.active.is_empty(), input.policy) {
        (false, ConcurrencyPolicy::Forbid) => Decision::Skip {
            slot,
            reason: SkipReason::ConcurrencyForbid {
                active: input.active.to_vec(),
            },
        },
        (false, ConcurrencyPolicy::Replace) => Decision::Start {
            slot,
            replace: input.active.to_vec(),
            superseded: missed.saturating_sub(1),
        },
        _ => Decision::Start {
            slot,
            replace: Vec::new(),
            superseded: missed.saturating_sub(1),
        },
    };
    Ok(outcome(decision))
}

/// Whether a start's `superseded` count says more than [`MAX_MISSED_SLOTS`] slots were missed:
/// the `TooManyMissedTimes` warning.
pub fn too_many_missed(superseded: u32) -> bool {
    superseded >= MAX_MISSED_SLOTS
}

/// How long to wait before looking again: until `next`, within one second and one hour.
/// `None` when there is no next slot.
pub fn requeue_after(next: Option<Timestamp>, now: Timestamp) -> Option<Duration> {
    let until = next?.duration_since(now);
    let until = Duration::try_from(until).unwrap_or(Duration::ZERO);
    Some(until.clamp(MIN_REQUEUE, MAX_REQUEUE))
}
