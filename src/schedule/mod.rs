//! Recurring benchmarks: cron schedules in a time zone, and the CronJob-style decision of what
//! a scheduled benchmark does at a given instant.
//!
//! Everything here is pure: the current time is an argument, nothing talks to the API server,
//! and nothing sleeps. The benchmark reconciler turns a [`Decision`] into runs, deletions,
//! Events, metrics and status fields.
//!
//! - [`Schedule`]: a parsed, validated `spec.schedule` (five fields or a macro, evaluated by
//!   croner) in `spec.timeZone` (an IANA name, default UTC, resolved by jiff with its embedded
//!   database so it works in images without `/usr/share/zoneinfo`), and its slot arithmetic.
//! - [`decide`] (in `decide.rs`): missed slots, the 100-missed limit, the starting deadline and
//!   the concurrency policy, as in Kubernetes' CronJob controller.
//!
//! Daylight saving time follows cron (croner's fixed-time rules): a job whose wall-clock time is
//! skipped by a spring-forward runs once, at the first instant after the gap (a daily 02:30 in
//! `America/New_York` runs at 03:00 EDT that day); a fixed-time job in a repeated hour runs once,
//! at the first of the two instants; a job with a wildcard or step in its minute or hour field
//! (`*/15 * * * *`, `30 * * * *`) skips the missing hour and runs in both copies of a repeated one.

mod decide;

pub use decide::{
    Decision, MAX_MISSED_SLOTS, Outcome, ScheduleInput, SkipReason, decide, requeue_after,
    too_many_missed,
};

use std::str::FromStr;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use k8s_openapi::jiff::tz::{self, TimeZone};
use k8s_openapi::jiff::{Timestamp, Zoned};

/// Why a schedule or time zone cannot be used. Each message quotes the bad input and says the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// `spec.schedule` is not a five-field cron expression or a known macro.
    #[error(
        "spec.schedule {expression:?} is not a valid cron schedule: {detail}; use five fields (minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\" for 02:00 every day) or a macro (@hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually)"
    )]
    InvalidExpression {
        /// The expression as written.
        expression: String,
        /// What the parser objected to.
        detail: String,
    },
    /// `spec.schedule` carries its own `TZ=` or `CRON_TZ=` prefix.
    #[error(
        "spec.schedule {expression:?} sets a time zone inside the expression; remove the TZ= or CRON_TZ= prefix and set spec.timeZone instead (e.g. timeZone: {zone})"
    )]
    ZoneInExpression {
        /// The expression as written.
        expression: String,
        /// The zone it named, suggested for `spec.timeZone`.
        zone: String,
    },
    /// `spec.schedule` parses but names no date that exists (e.g. the 31st of a 30-day month).
    #[error(
        "spec.schedule {expression:?} never matches a date (e.g. day 31 of a 30-day month, or 30 February); fix its day-of-month and month fields"
    )]
    NeverMatches {
        /// The expression as written.
        expression: String,
    },
    /// `spec.timeZone` is not a time zone in the IANA database.
    #[error(
        "spec.timeZone {zone:?} is not an IANA time zone name{suggestion}; use a name such as UTC, Europe/Paris or America/New_York (see `timedatectl list-timezones`)"
    )]
    InvalidTimeZone {
        /// The name as written.
        zone: String,
        /// `" (did you mean \"...\"?)"`, or empty.
        suggestion: String,
    },
}

impl ScheduleError {
    /// The reason of the `Valid=False` condition: `InvalidSchedule` or `InvalidTimeZone`.
    pub fn reason(&self) -> &'static str {
        match self {
            ScheduleError::InvalidTimeZone { .. } => "InvalidTimeZone",
            _ => "InvalidSchedule",
        }
    }

    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ScheduleError::InvalidExpression { .. } => "invalid_schedule",
            ScheduleError::ZoneInExpression { .. } => "schedule_time_zone_prefix",
            ScheduleError::NeverMatches { .. } => "schedule_never_matches",
            ScheduleError::InvalidTimeZone { .. } => "invalid_time_zone",
        }
    }
}

/// The time zone of a benchmark without `spec.timeZone`.
pub const DEFAULT_TIME_ZONE: &str = "UTC";

/// A validated schedule: a cron expression evaluated in a time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    expression: String,
    zone_name: String,
    cron: Cron,
    zone: TimeZone,
}

impl Schedule {
    /// Parses `expression` (five fields, or a macro) in `time_zone` (an IANA name; `None` is
    /// UTC). Rejects seconds and year fields, `TZ=`/`CRON_TZ=` prefixes, unknown zones, and
    /// expressions that match no date at all.
    pub fn parse(expression: &str, time_zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let zone_name = time_zone.unwrap_or(DEFAULT_TIME_ZONE).trim().to_string();
        let trimmed = expression.trim();
        if let Some(zone) = zone_prefix(trimmed) {
            return Err(ScheduleError::ZoneInExpression {
                expression: expression.to_string(),
                zone,
            });
        }
        // Kubernetes accepts @midnight as a synonym of @daily; croner does not know it.
        let normalized = if trimmed.eq_ignore_ascii_case("@midnight") {
            "@daily"
        } else {
            trimmed
        };
        let invalid = |detail: String| ScheduleError::InvalidExpression {
            expression: expression.to_string(),
            detail,
        };
        if normalized.starts_with('@') && !is_macro(normalized) {
            return Err(invalid(format!("unknown macro {normalized:?}")));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(normalized)
            .map_err(|e| invalid(e.to_string().trim_end_matches('.').to_string()))?;
        let zone = tz::db()
            .get(&zone_name)
            .map_err(|_| ScheduleError::InvalidTimeZone {
                suggestion: suggest_zone(&zone_name)
                    .map(|s| format!(" (did you mean {s:?}?)"))
                    .unwrap_or_default(),
                zone: zone_name.clone(),
            })?;
        let schedule = Schedule {
            expression: trimmed.to_string(),
            zone_name,
            cron,
            zone,
        };
        // Without a year field, a pattern that matches any date matches one within the 400-year
        // Gregorian cycle; croner's search gives up long before looping forever.
        let reference = Timestamp::from_second(946_684_800).expect("2000-01-01 is in range");
        schedule
            .next_after(reference)
            .map_err(|_| ScheduleError::NeverMatches {
                expression: expression.to_string(),
            })?;
        Ok(schedule)
    }

    /// The expression, trimmed.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The IANA name of the time zone.
    pub fn time_zone(&self) -> &str {
        &self.zone_name
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Result<Timestamp, ScheduleError> {
        self.cron
            .find_next_occurrence(&self.zoned(t), false)
            .map(|z| z.timestamp())
            .map_err(|_| self.never())
    }

    /// The last slot at or before `t`, if any exists.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_previous_occurrence(&self.zoned(t), true)
            .ok()
            .map(|z| z.timestamp())
    }

    /// How many slots lie in `(after, until]`, counting at most `cap` of them.
    pub fn count_slots(&self, after: Timestamp, until: Timestamp, cap: u32) -> u32 {
        let mut count = 0;
        let mut cursor = after;
        while count < cap {
            match self.next_after(cursor) {
                Ok(slot) if slot <= until => {
                    count += 1;
                    cursor = slot;
                }
                _ => break,
            }
        }
        count
    }

    /// `t` in the schedule's time zone, as RFC 3339 with its offset
    /// (e.g. `2026-03-08T03:00:00-04:00`).
    pub fn format(&self, t: Timestamp) -> String {
        // jiff's default Zoned format appends the zone name in brackets; keep the offset only.
        let zoned = self.zoned(t);
        zoned
            .timestamp()
            .display_with_offset(zoned.offset())
            .to_string()
    }

    fn zoned(&self, t: Timestamp) -> Zoned {
        t.to_zoned(self.zone.clone())
    }

    fn never(&self) -> ScheduleError {
        ScheduleError::NeverMatches {
            expression: self.expression.clone(),
        }
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    /// Parses an expression in UTC.
    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        Schedule::parse(expression, None)
    }
}

fn is_macro(expression: &str) -> bool {
    [
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@hourly",
    ]
    .iter()
    .any(|m| expression.eq_ignore_ascii_case(m))
}

/// The zone of a `TZ=<zone> ...` or `CRON_TZ=<zone> ...` prefix.
fn zone_prefix(expression: &str) -> Option<String> {
    let upper = expression.to_ascii_uppercase();
    let start = ["CRON_TZ=", "TZ="]
        .iter()
        .find(|p| upper.starts_with(*p))
        .map(|p| p.len())?;
    let rest = &expression[start..];
    Some(
        rest.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
    )
}

/// A known zone name close to `name`: the same name in another case, or the only zone whose
/// last segment is `name` (`New_York` → `America/New_York`).
fn suggest_zone(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let wanted = name.replace(' ', "_");
    let available: Vec<String> = tz::db()
        .available()
        .map(|n| n.as_str().to_string())
        .collect();
    if let Some(same) = available.iter().find(|n| n.eq_ignore_ascii_case(&wanted)) {
        return Some(same.clone());
    }
    let suffix = format!("/{wanted}").to_ascii_lowercase();
    let mut matches = available
        .iter()
        .filter(|n| n.to_ascii_lowercase().ends_with(&suffix));
    match (matches.next(), matches.next()) {
        (Some(only), None) => Some(only.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
