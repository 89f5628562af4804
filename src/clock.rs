//! The operator's notion of "now": the [`Clock`] trait, the system clock, and a manual clock
//! that tests set and advance.
//!
//! Reconcilers read the time only through the clock in their
//! [`Context`](crate::controller::Context), so schedules, timeouts and condition times can be
//! tested at fixed instants. A clock only answers "what time is it"; it never sleeps or wakes
//! anything up (requeues are the controller runtime's job).

use std::sync::Mutex;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until it is set or advanced; for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Sets the time to `to` (which may be earlier, to simulate a clock going back).
    pub fn set(&self, to: Timestamp) {
        *self.lock() = to;
    }

    /// Moves the time forward by `by` (backward when negative), saturating at the ends of
    /// jiff's range.
    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.lock();
        *now = now.saturating_add(by).unwrap_or(*now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timestamp> {
        // A panic while holding this lock cannot leave a Timestamp half-written.
        self.now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = Timestamp::from_second(1_800_000_000).unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(SignedDuration::from_secs(90));
        assert_eq!(clock.now().as_second(), 1_800_000_090);
        clock.set(start);
        assert_eq!(clock.now(), start);
        clock.advance(SignedDuration::MAX);
        assert!(clock.now() > start);
    }
}
