//! Sleeping until an instant. Interim version on tokio's timer (1 ms granularity); the
//! high-resolution timer service replaces it.

use std::time::Instant;

/// Completes at `deadline` (or as soon after as the timer allows).
pub async fn sleep_until(deadline: Instant) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
}
