//! Clock offsets between the coordinator and a worker, NTP-style: the coordinator stamps a ping
//! when it leaves (`sent`) and when the answer comes back (`received`), the worker stamps its
//! answer (`remote`), all in wall-clock Unix nanoseconds (monotonic clocks of different hosts
//! share no origin). For one round trip, `offset = remote - (sent + received) / 2` (the
//! worker's clock minus the coordinator's) is exact when both legs took equally long, and off by
//! at most `rtt / 2`; of many round trips the one with the smallest RTT is kept.

use std::time::{Duration, Instant};

/// Wall-clock Unix time now, nanoseconds.
pub fn unix_now_ns() -> i64 {
    i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}

/// One round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    /// When the coordinator sent the ping (its clock), ns.
    pub sent_ns: i64,
    /// When the worker answered (its clock), ns.
    pub remote_ns: i64,
    /// When the coordinator received the answer (its clock), ns.
    pub received_ns: i64,
}

/// A worker's measured clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockEstimate {
    /// The worker's clock minus the coordinator's, ns.
    pub offset_ns: i64,
    /// The round trip the offset came from, ns (the smallest measured).
    pub rtt_ns: i64,
    /// Round trips measured.
    pub samples: u32,
}

impl ClockEstimate {
    /// The estimate from the round trip with the smallest RTT; `None` without samples.
    pub fn from_samples(samples: &[ClockSample]) -> Option<ClockEstimate> {
        let best = samples
            .iter()
            .min_by_key(|s| s.received_ns.saturating_sub(s.sent_ns))?;
        let mid = ((i128::from(best.sent_ns) + i128::from(best.received_ns)) / 2) as i64;
        Some(ClockEstimate {
            offset_ns: best.remote_ns.saturating_sub(mid),
            rtt_ns: best.received_ns.saturating_sub(best.sent_ns).max(0),
            samples: u32::try_from(samples.len()).unwrap_or(u32::MAX),
        })
    }
}

/// The instant on this process's monotonic clock at which this process's wall clock reads
/// `unix_ns` (in the past or the future).
pub fn instant_at(unix_ns: i64) -> Instant {
    let (now, now_ns) = (Instant::now(), unix_now_ns());
    let delta = unix_ns.saturating_sub(now_ns);
    let by = Duration::from_nanos(delta.unsigned_abs());
    if delta >= 0 {
        now.checked_add(by).unwrap_or(now)
    } else {
        now.checked_sub(by).unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_round_trip_gives_the_offset() {
        // The worker's clock is 5 ms ahead; the first trip was slow one way.
        let samples = [
            ClockSample {
                sent_ns: 1_000_000,
                remote_ns: 1_000_000 + 5_000_000 + 9_000_000,
                received_ns: 1_000_000 + 10_000_000,
            },
            ClockSample {
                sent_ns: 20_000_000,
                remote_ns: 20_000_000 + 5_000_000 + 100_000,
                received_ns: 20_000_000 + 200_000,
            },
        ];
        let estimate = ClockEstimate::from_samples(&samples).unwrap();
        assert_eq!(estimate.offset_ns, 5_000_000);
        assert_eq!(estimate.rtt_ns, 200_000);
        assert_eq!(estimate.samples, 2);
        assert_eq!(ClockEstimate::from_samples(&[]), None);
    }

    #[test]
    fn a_wall_clock_time_maps_to_an_instant_either_side_of_now() {
        let now = Instant::now();
        let later = instant_at(unix_now_ns() + 2_000_000_000);
        assert!(later > now + Duration::from_secs(1));
        let earlier = instant_at(unix_now_ns() - 2_000_000_000);
        assert!(earlier < now);
    }
}
