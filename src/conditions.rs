//! Status conditions, kept the way apimachinery's `meta.SetStatusCondition` keeps them.
//!
//! One entry per type; `lastTransitionTime` moves only when `status` changes, so a reconcile
//! that observes nothing new writes nothing new (a status that changed on every reconcile would
//! trigger the controller again, forever). This module only edits lists; it sends nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Condition types of a `CoeBenchmarkRun` and a `CoeBenchmark`.
pub mod types {
    /// The plan (or the benchmark's spec and rows) is usable.
    pub const VALID: &str = "Valid";
    /// The run's Job exists.
    pub const JOB_CREATED: &str = "JobCreated";
    /// The runner is running (run), or a run is active (benchmark).
    pub const RUNNING: &str = "Running";
    /// The run finished every row.
    pub const COMPLETE: &str = "Complete";
    /// The run failed; the reason says why.
    pub const FAILED: &str = "Failed";
    /// The run's files are on the results volume.
    pub const RESULTS_WRITTEN: &str = "ResultsWritten";
    /// The benchmark's most recent finished run succeeded.
    pub const LAST_RUN_SUCCEEDED: &str = "LastRunSucceeded";
    /// The benchmark's schedule is active: a next slot is known and not suspended.
    pub const SCHEDULED: &str = "Scheduled";
    /// The summary condition that generic tools read (kstatus, Argo CD, `kubectl wait
    /// --for=condition=Ready`): a run is Ready once it succeeded; a benchmark while it is valid
    /// and its last finished run did not fail.
    pub const READY: &str = "Ready";
    /// A succeeded run got worse than its benchmark's baseline beyond the thresholds (run);
    /// the last run compared did (benchmark).
    pub const REGRESSED: &str = "Regressed";
}

/// A condition's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `True`.
    True,
    /// `False`.
    False,
    /// `Unknown`.
    Unknown,
}

impl Status {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }

    /// `True` when `value` holds, else `False`.
    pub fn from_bool(value: bool) -> Self {
        if value { Status::True } else { Status::False }
    }
}

/// A condition to set: everything but the bookkeeping fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCondition<'a> {
    /// The type, one of [`types`].
    pub type_: &'a str,
    /// True, False or Unknown.
    pub status: Status,
    /// A PascalCase reason.
    pub reason: &'a str,
    /// A message for humans, saying what to do when something is wrong.
    pub message: &'a str,
}

/// Sets a condition in `conditions`. Returns whether anything but nothing changed.
///
/// `lastTransitionTime` becomes `now` only when the type is new or its status changed;
/// `observedGeneration` is always `generation`; reason and message are updated in place.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    new: NewCondition<'_>,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let status = new.status.as_str();
    // The API server rejects an empty reason or message for conditions of some kinds; keep both.
    let message = truncate(new.message, MAX_MESSAGE);
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            let before = existing.clone();
            if existing.status != status {
                existing.status = status.to_string();
                existing.last_transition_time = Time(now);
            }
            existing.reason = new.reason.to_string();
            existing.message = message;
            existing.observed_generation = generation;
            *existing != before
        }
        None => {
            conditions.push(Condition {
                type_: new.type_.to_string(),
                status: status.to_string(),
                reason: new.reason.to_string(),
                message,
                observed_generation: generation,
                last_transition_time: Time(now),
            });
            true
        }
    }
}

/// Removes the condition of type `type_`; returns whether there was one.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

/// The condition of type `type_`, if set.
pub fn find<'c>(conditions: &'c [Condition], type_: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of type `type_` is set and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Conditions that are new or whose status or reason differ from `before`: the transitions to
/// report as Events.
pub fn transitions<'c>(before: &[Condition], after: &'c [Condition]) -> Vec<&'c Condition> {
    after
        .iter()
        .filter(|c| {
            find(before, &c.type_)
                .is_none_or(|old| old.status != c.status || old.reason != c.reason)
        })
        .collect()
}

/// Longest condition message kept, in bytes (the API allows 32 KiB; status stays readable).
const MAX_MESSAGE: usize = 2048;

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max - 3;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn cond(status: Status, reason: &'static str) -> NewCondition<'static> {
        NewCondition {
            type_: types::RUNNING,
            status,
            reason,
            message: "m",
        }
    }

    #[test]
    fn a_new_condition_is_added_with_the_current_time() {
        let mut conds = Vec::new();
        assert!(set_condition(
            &mut conds,
            cond(Status::True, "Started"),
            Some(2),
            at(10)
        ));
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].status, "True");
        assert_eq!(conds[0].observed_generation, Some(2));
        assert_eq!(conds[0].last_transition_time, Time(at(10)));
    }

    #[test]
    fn the_same_condition_again_changes_nothing() {
        let mut conds = Vec::new();
        set_condition(&mut conds, cond(Status::True, "Started"), Some(1), at(10));
        assert!(!set_condition(
            &mut conds,
            cond(Status::True, "Started"),
            Some(1),
            at(20)
        ));
        assert_eq!(conds[0].last_transition_time, Time(at(10)));
    }

    #[test]
    fn a_new_reason_keeps_the_transition_time_and_a_new_status_moves_it() {
        let mut conds = Vec::new();
        set_condition(&mut conds, cond(Status::False, "Pending"), Some(1), at(10));
        assert!(set_condition(
            &mut conds,
            cond(Status::False, "ImagePullBackOff"),
            Some(1),
            at(20)
        ));
        assert_eq!(conds[0].last_transition_time, Time(at(10)));
        assert_eq!(conds[0].reason, "ImagePullBackOff");
        assert!(set_condition(
            &mut conds,
            cond(Status::True, "Started"),
            Some(1),
            at(30)
        ));
        assert_eq!(conds[0].last_transition_time, Time(at(30)));
    }

    #[test]
    fn transitions_list_new_and_changed_conditions_only() {
        let mut before = Vec::new();
        set_condition(&mut before, cond(Status::False, "Pending"), None, at(1));
        let mut after = before.clone();
        assert!(transitions(&before, &after).is_empty());
        set_condition(&mut after, cond(Status::True, "Started"), None, at(2));
        let mut valid = cond(Status::True, "Validated");
        valid.type_ = types::VALID;
        set_condition(&mut after, valid, None, at(2));
        let changed: Vec<_> = transitions(&before, &after)
            .iter()
            .map(|c| c.reason.clone())
            .collect();
        assert_eq!(changed, ["Started", "Validated"]);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let mut conds = Vec::new();
        let long = "é".repeat(5000);
        let mut c = cond(Status::True, "Started");
        c.message = &long;
        set_condition(&mut conds, c, None, at(1));
        assert!(conds[0].message.len() <= MAX_MESSAGE);
        assert!(conds[0].message.ends_with("..."));
    }
}
