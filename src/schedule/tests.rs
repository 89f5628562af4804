//! Schedule parsing, slot arithmetic and decisions at fixed instants, including daylight saving
//! transitions in `America/New_York` (2026: spring forward on 8 March, fall back on 1 November).

use std::time::Duration;

use k8s_openapi::jiff::SignedDuration;

use super::*;
use crate::crd::ConcurrencyPolicy;

fn t(rfc3339: &str) -> Timestamp {
    rfc3339.parse().unwrap()
}

fn utc(expression: &str) -> Schedule {
    Schedule::parse(expression, None).unwrap()
}

fn new_york(expression: &str) -> Schedule {
    Schedule::parse(expression, Some("America/New_York")).unwrap()
}

/// The first `n` slots after `from`.
fn slots(schedule: &Schedule, from: &str, n: usize) -> Vec<Timestamp> {
    let mut out = Vec::new();
    let mut cursor = t(from);
    for _ in 0..n {
        cursor = schedule.next_after(cursor).unwrap();
        out.push(cursor);
    }
    out
}

fn input(created: &str) -> ScheduleInput<'static> {
    ScheduleInput {
        created: t(created),
        last_schedule: None,
        last_missed: None,
        suspend: false,
        starting_deadline_seconds: None,
        policy: ConcurrencyPolicy::Forbid,
        active: &[],
        started: &[],
    }
}

fn start(slot: &str, superseded: u32) -> Decision {
    Decision::Start {
        slot: t(slot),
        replace: Vec::new(),
        superseded,
    }
}

#[test]
fn the_next_slot_is_strictly_after_now() {
    let s = utc("0 2 * * *");
    assert_eq!(
        s.next_after(t("2026-03-01T01:59:00Z")).unwrap(),
        t("2026-03-01T02:00:00Z")
    );
    assert_eq!(
        s.next_after(t("2026-03-01T02:00:00Z")).unwrap(),
        t("2026-03-02T02:00:00Z")
    );
    assert_eq!(
        s.latest_at_or_before(t("2026-03-01T02:00:00Z")),
        Some(t("2026-03-01T02:00:00Z"))
    );
    assert_eq!(s.expression(), "0 2 * * *");
    assert_eq!(s.time_zone(), "UTC");
}

#[test]
fn the_time_zone_moves_the_slots() {
    let paris = Schedule::parse("0 2 * * *", Some("Europe/Paris")).unwrap();
    assert_eq!(
        paris.next_after(t("2026-01-10T00:00:00Z")).unwrap(),
        t("2026-01-10T01:00:00Z")
    );
    assert_eq!(
        paris.format(t("2026-01-10T01:00:00Z")),
        "2026-01-10T02:00:00+01:00"
    );
    assert_eq!(
        utc("0 2 * * *").format(t("2026-01-11T02:00:00Z")),
        "2026-01-11T02:00:00+00:00"
    );
}

#[test]
fn macros_mean_what_cron_means() {
    let from = "2026-03-04T10:20:00Z"; // a Wednesday
    for (m, expected) in [
        ("@hourly", "2026-03-04T11:00:00Z"),
        ("@daily", "2026-03-05T00:00:00Z"),
        ("@midnight", "2026-03-05T00:00:00Z"),
        ("@weekly", "2026-03-08T00:00:00Z"),
        ("@monthly", "2026-04-01T00:00:00Z"),
        ("@yearly", "2027-01-01T00:00:00Z"),
        ("@annually", "2027-01-01T00:00:00Z"),
        ("@Daily", "2026-03-05T00:00:00Z"),
    ] {
        assert_eq!(slots(&utc(m), from, 1), [t(expected)], "{m}");
    }
    // Day of month and day of week are OR-ed, as in Vixie cron: the 1st, and every Monday.
    assert_eq!(
        slots(&utc("0 0 1 * MON"), "2026-03-25T00:00:00Z", 3),
        [
            t("2026-03-30T00:00:00Z"),
            t("2026-04-01T00:00:00Z"),
            t("2026-04-06T00:00:00Z")
        ]
    );
}

fn rejected(expression: &str, zone: Option<&str>) -> ScheduleError {
    Schedule::parse(expression, zone).expect_err(expression)
}

#[test]
fn invalid_expressions_are_quoted_with_the_fix() {
    for bad in [
        "61 * * * *",
        "0 2 * *",
        "0 0 2 * * *",
        "every night",
        "",
        "@every 1h",
    ] {
        let e = rejected(bad, None);
        assert_eq!(e.reason(), "InvalidSchedule", "{bad}");
        assert_eq!(e.metric_label(), "invalid_schedule", "{bad}");
        let message = e.to_string();
        assert!(
            message.contains(&format!("spec.schedule {bad:?}")) && message.contains("0 2 * * *"),
            "{message}"
        );
    }
    let e = rejected("@every 1h", None);
    assert!(e.to_string().contains("unknown macro"), "{e}");

    let e = rejected("CRON_TZ=Europe/Paris 0 2 * * *", None);
    assert_eq!(e.reason(), "InvalidSchedule");
    assert!(
        e.to_string().contains("set spec.timeZone instead")
            && e.to_string().contains("timeZone: Europe/Paris"),
        "{e}"
    );
    assert!(matches!(
        rejected("TZ=UTC 0 2 * * *", None),
        ScheduleError::ZoneInExpression { .. }
    ));

    let e = rejected("0 0 31 4 *", None);
    assert_eq!(e.metric_label(), "schedule_never_matches");
    assert!(e.to_string().contains("never matches"), "{e}");
    // The 29th of February is rare but real.
    utc("0 0 29 2 *");
}

#[test]
fn invalid_time_zones_are_quoted_with_a_suggestion() {
    let e = rejected("0 2 * * *", Some("Mars/Olympus_Mons"));
    assert_eq!(e.reason(), "InvalidTimeZone");
    assert_eq!(e.metric_label(), "invalid_time_zone");
    let message = e.to_string();
    assert!(
        message.contains("spec.timeZone \"Mars/Olympus_Mons\"")
            && message.contains("America/New_York"),
        "{message}"
    );
    let e = rejected("0 2 * * *", Some("New_York"));
    assert!(
        e.to_string().contains("did you mean \"America/New_York\"?"),
        "{e}"
    );
    // The schedule is checked before the zone, so one message at a time.
    assert_eq!(rejected("bad", Some("Nowhere")).reason(), "InvalidSchedule");
}

#[test]
fn a_new_benchmark_waits_for_its_first_slot() {
    let s = utc("0 2 * * *");
    let o = decide(
        &s,
        &input("2026-03-01T01:00:00Z"),
        t("2026-03-01T01:30:00Z"),
    )
    .unwrap();
    assert_eq!(o.decision, Decision::Wait);
    assert_eq!(o.next, Some(t("2026-03-01T02:00:00Z")));
    assert_eq!(o.since, t("2026-03-01T01:00:00Z"));
    let o = decide(
        &s,
        &input("2026-03-01T01:00:00Z"),
        t("2026-03-01T02:00:00Z"),
    )
    .unwrap();
    assert_eq!(o.decision, start("2026-03-01T02:00:00Z", 0));
    assert_eq!(o.next, Some(t("2026-03-02T02:00:00Z")));
    // A slot before the creation time is not due.
    let o = decide(
        &s,
        &input("2026-03-01T02:00:30Z"),
        t("2026-03-01T02:01:00Z"),
    )
    .unwrap();
    assert_eq!(o.decision, Decision::Wait);
}

#[test]
fn only_the_latest_missed_slot_runs() {
    let s = utc("0 * * * *");
    let o = decide(
        &s,
        &input("2026-03-01T00:00:00Z"),
        t("2026-03-01T05:30:00Z"),
    )
    .unwrap();
    assert_eq!(o.decision, start("2026-03-01T05:00:00Z", 4));
    assert_eq!(o.next, Some(t("2026-03-01T06:00:00Z")));
    // Counting starts after the last handled slot, whichever of run and skip is later.
    let mut i = input("2026-03-01T00:00:00Z");
    i.last_schedule = Some(t("2026-03-01T03:00:00Z"));
    i.last_missed = Some(t("2026-03-01T04:00:00Z"));
    let o = decide(&s, &i, t("2026-03-01T05:30:00Z")).unwrap();
    assert_eq!(o.decision, start("2026-03-01T05:00:00Z", 0));
    assert_eq!(o.since, t("2026-03-01T04:00:00Z"));
    // And a handled slot is never due again.
    i.last_schedule = Some(t("2026-03-01T05:00:00Z"));
    let o = decide(&s, &i, t("2026-03-01T05:30:00Z")).unwrap();
    assert_eq!(o.decision, Decision::Wait);
}

#[test]
fn a_slot_that_already_has_a_run_is_recorded_not_started_again() {
    let s = utc("0 * * * *");
    let started = [t("2026-03-01T05:00:00Z")];
    let active = ["bench-29540460".to_string()];
    let mut i = input("2026-03-01T00:00:00Z");
    i.started = &started;
    // The run is active, but it is this slot's own run: no Forbid skip.
    i.active = &active;
    let o = decide(&s, &i, t("2026-03-01T05:00:10Z")).unwrap();
    assert_eq!(
        o.decision,
        Decision::AlreadyStarted {
            slot: t("2026-03-01T05:00:00Z")
        }
    );
}

#[test]
fn the_starting_deadline_lets_a_late_slot_start_or_misses_it() {
    let s = utc("0 * * * *");
    let mut i = input("2026-03-01T04:30:00Z");
    i.starting_deadline_seconds = Some(60);
    let o = decide(&s, &i, t("2026-03-01T05:00:45Z")).unwrap();
    assert_eq!(o.decision, start("2026-03-01T05:00:00Z", 0));
    let o = decide(&s, &i, t("2026-03-01T05:01:00Z")).unwrap();
    assert_eq!(o.decision, start("2026-03-01T05:00:00Z", 0));
    let o = decide(&s, &i, t("2026-03-01T05:01:01Z")).unwrap();
    let Decision::Skip { slot, reason } = o.decision else {
        panic!("{o:?}")
    };
    assert_eq!(slot, t("2026-03-01T05:00:00Z"));
    assert_eq!(
        reason,
        SkipReason::StartingDeadline {
            deadline_seconds: 60,
            missed: 1
        }
    );
    assert_eq!(reason.event_reason(), "MissedSchedule");
    assert_eq!(reason.metric_label(), "starting_deadline");
    assert_eq!(o.next, Some(t("2026-03-01T06:00:00Z")));
}

#[test]
fn more_than_100_missed_slots_start_the_latest_with_a_warning() {
    let s = utc("* * * * *");
    let i = input("2026-03-01T00:00:00Z");
    let o = decide(&s, &i, t("2026-03-01T01:40:00Z")).unwrap();
    assert_eq!(o.decision, start("2026-03-01T01:40:00Z", 99));
    assert!(!too_many_missed(99));
    // 101 missed: the latest still starts (the current CronJob controller), with the warning.
    let o = decide(&s, &i, t("2026-03-01T01:41:00Z")).unwrap();
    assert_eq!(o.decision, start("2026-03-01T01:41:00Z", 100));
    assert!(too_many_missed(100));
    // A year of missed minutes is decided as fast as 101 of them.
    let o = decide(&s, &i, t("2027-03-01T00:00:00Z")).unwrap();
    assert_eq!(o.decision, start("2027-03-01T00:00:00Z", 100));
    // A starting deadline only counts the slots within it, as in CronJob.
    let mut i = input("2026-03-01T00:00:00Z");
    i.starting_deadline_seconds = Some(600);
    let o = decide(&s, &i, t("2026-03-01T05:00:00Z")).unwrap();
    assert_eq!(o.decision, start("2026-03-01T05:00:00Z", 9));
}

#[test]
fn each_concurrency_policy_decides_for_an_active_run() {
    let s = utc("0 * * * *");
    let active = ["bench-1".to_string()];
    let now = t("2026-03-01T05:00:00Z");
    let with = |policy| {
        let mut i = input("2026-03-01T04:30:00Z");
        i.policy = policy;
        i.active = &active;
        decide(&s, &i, now).unwrap().decision
    };
    assert_eq!(
        with(ConcurrencyPolicy::Allow),
        start("2026-03-01T05:00:00Z", 0)
    );
    let forbid = with(ConcurrencyPolicy::Forbid);
    assert_eq!(
        forbid,
        Decision::Skip {
            slot: now,
            reason: SkipReason::ConcurrencyForbid {
                active: vec!["bench-1".into()]
            }
        }
    );
    assert_eq!(
        with(ConcurrencyPolicy::Replace),
        Decision::Start {
            slot: now,
            replace: vec!["bench-1".into()],
            superseded: 0
        }
    );
    // Without an active run every policy starts.
    for policy in [
        ConcurrencyPolicy::Allow,
        ConcurrencyPolicy::Forbid,
        ConcurrencyPolicy::Replace,
    ] {
        let mut i = input("2026-03-01T04:30:00Z");
        i.policy = policy;
        assert_eq!(
            decide(&s, &i, now).unwrap().decision,
            start("2026-03-01T05:00:00Z", 0)
        );
    }
}

#[test]
fn suspend_stops_scheduling_and_resume_catches_up_like_cronjob() {
    let s = utc("0 2 * * *");
    let mut i = input("2026-03-01T00:00:00Z");
    i.last_schedule = Some(t("2026-03-01T02:00:00Z"));
    i.suspend = true;
    let o = decide(&s, &i, t("2026-03-04T12:00:00Z")).unwrap();
    assert_eq!(o.decision, Decision::Suspended);
    assert_eq!(o.next, None);
    // Resumed: the slots missed while suspended are missed slots; the latest starts at once...
    i.suspend = false;
    let o = decide(&s, &i, t("2026-03-04T12:00:00Z")).unwrap();
    assert_eq!(o.decision, start("2026-03-04T02:00:00Z", 2));
    assert_eq!(o.next, Some(t("2026-03-05T02:00:00Z")));
    // ...unless a starting deadline says it is too late.
    i.starting_deadline_seconds = Some(3600);
    let o = decide(&s, &i, t("2026-03-04T12:00:00Z")).unwrap();
    assert!(matches!(
        o.decision,
        Decision::Skip {
            reason: SkipReason::StartingDeadline { missed: 3, .. },
            ..
        }
    ));
}

#[test]
fn spring_forward_runs_a_skipped_fixed_time_once_after_the_gap() {
    // 02:30 does not exist in New York on 8 March 2026 (02:00 EST becomes 03:00 EDT).
    let s = new_york("30 2 * * *");
    assert_eq!(
        slots(&s, "2026-03-07T00:00:00Z", 3),
        [
            t("2026-03-07T07:30:00Z"), // 02:30 EST
            t("2026-03-08T07:00:00Z"), // 03:00 EDT, the first instant after the gap
            t("2026-03-09T06:30:00Z"), // 02:30 EDT
        ]
    );
    assert_eq!(
        s.format(t("2026-03-08T07:00:00Z")),
        "2026-03-08T03:00:00-04:00"
    );
    let mut i = input("2026-03-01T00:00:00Z");
    i.last_schedule = Some(t("2026-03-07T07:30:00Z"));
    let o = decide(&s, &i, t("2026-03-08T07:00:02Z")).unwrap();
    assert_eq!(o.decision, start("2026-03-08T07:00:00Z", 0));
    assert_eq!(o.next, Some(t("2026-03-09T06:30:00Z")));
    // The nightly example's 02:00 is the first instant of the gap: 03:00 EDT too.
    assert_eq!(
        slots(&new_york("0 2 * * *"), "2026-03-07T12:00:00Z", 2),
        [t("2026-03-08T07:00:00Z"), t("2026-03-09T06:00:00Z")]
    );
    // A job with a wildcard hour skips the missing hour.
    assert_eq!(
        slots(&new_york("30 * * * *"), "2026-03-08T06:00:00Z", 2),
        [t("2026-03-08T06:30:00Z"), t("2026-03-08T07:30:00Z")] // 01:30 EST, 03:30 EDT
    );
}

#[test]
fn fall_back_runs_a_fixed_time_once_and_an_hourly_job_twice() {
    // 01:00-01:59 happens twice in New York on 1 November 2026 (EDT, then EST).
    let s = new_york("30 1 * * *");
    assert_eq!(
        slots(&s, "2026-10-31T12:00:00Z", 2),
        [t("2026-11-01T05:30:00Z"), t("2026-11-02T06:30:00Z")] // 01:30 EDT, then the next day
    );
    // 02:00 and 02:30 happen once, in EST.
    assert_eq!(
        slots(&new_york("30 2 * * *"), "2026-10-31T12:00:00Z", 2),
        [t("2026-11-01T07:30:00Z"), t("2026-11-02T07:30:00Z")]
    );
    assert_eq!(
        slots(&new_york("0 2 * * *"), "2026-10-31T12:00:00Z", 2),
        [t("2026-11-01T07:00:00Z"), t("2026-11-02T07:00:00Z")]
    );
    assert_eq!(
        slots(&new_york("30 * * * *"), "2026-11-01T05:00:00Z", 3),
        [
            t("2026-11-01T05:30:00Z"), // 01:30 EDT
            t("2026-11-01T06:30:00Z"), // 01:30 EST
            t("2026-11-01T07:30:00Z"), // 02:30 EST
        ]
    );
    // The decision at the second 01:30 of an hourly job starts it (a distinct slot).
    let mut i = input("2026-10-01T00:00:00Z");
    i.last_schedule = Some(t("2026-11-01T05:30:00Z"));
    let o = decide(&new_york("30 * * * *"), &i, t("2026-11-01T06:30:01Z")).unwrap();
    assert_eq!(o.decision, start("2026-11-01T06:30:00Z", 0));
    // The fixed-time job's second 01:30 is not a slot.
    let mut i = input("2026-10-01T00:00:00Z");
    i.last_schedule = Some(t("2026-11-01T05:30:00Z"));
    let o = decide(&s, &i, t("2026-11-01T06:30:01Z")).unwrap();
    assert_eq!(o.decision, Decision::Wait);
}

#[test]
fn looking_back_agrees_with_looking_forward_across_transitions() {
    for (expression, from) in [
        ("30 2 * * *", "2026-03-06T00:00:00Z"),
        ("30 * * * *", "2026-03-08T04:00:00Z"),
        ("30 1 * * *", "2026-10-30T00:00:00Z"),
        ("*/20 * * * *", "2026-11-01T04:00:00Z"),
    ] {
        let s = new_york(expression);
        let all = slots(&s, from, 6);
        for pair in all.windows(2) {
            assert_eq!(
                s.latest_at_or_before(pair[1]),
                Some(pair[1]),
                "{expression}"
            );
            let just_before = pair[1] - SignedDuration::from_secs(1);
            assert_eq!(
                s.latest_at_or_before(just_before),
                Some(pair[0]),
                "{expression} before {}",
                pair[1]
            );
        }
        assert_eq!(
            s.count_slots(t(from), *all.last().unwrap(), 100),
            6,
            "{expression}"
        );
    }
}

#[test]
fn slot_counts_stop_at_the_cap() {
    let s = utc("* * * * *");
    assert_eq!(
        s.count_slots(t("2026-03-01T00:00:00Z"), t("2026-03-01T00:10:00Z"), 100),
        10
    );
    assert_eq!(
        s.count_slots(t("2026-03-01T00:00:00Z"), t("2026-03-02T00:00:00Z"), 101),
        101
    );
}

#[test]
fn requeues_land_on_the_next_slot_within_bounds() {
    let now = t("2026-03-01T01:59:00Z");
    assert_eq!(
        requeue_after(Some(t("2026-03-01T02:00:00Z")), now),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        requeue_after(Some(t("2026-03-01T01:59:00.300Z")), now),
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        requeue_after(Some(t("2026-03-09T00:00:00Z")), now),
        Some(Duration::from_secs(3600))
    );
    assert_eq!(requeue_after(None, now), None);
}
