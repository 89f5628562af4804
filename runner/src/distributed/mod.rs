//! Distributed runs: one benchmark spread over many worker processes (on one machine, or the
//! Pods of a Kubernetes Indexed Job) and merged exactly.
//!
//! - [`partition`]: which requests of a row each worker sends (a pure, documented rule);
//! - [`wire`]: the messages and their framing on TCP;
//! - [`clock`]: clock offsets by round trips (minimum RTT, NTP-style);
//! - [`coordinator`]: worker 0: rendezvous, common row starts, gathering and merging records;
//! - [`worker`]: workers 1 and up: their share of each row, records streamed back;
//! - [`local`]: `coebench run --workers N` on one machine: worker processes of the same binary.

pub mod clock;
pub mod coordinator;
pub mod local;
pub mod partition;
pub mod wire;
pub mod worker;

use std::time::Duration;

/// How often each side tells the other it is alive.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(1);

/// Silence after which a peer is taken for lost.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default time every worker has to connect (and to prepare each row), seconds.
pub const DEFAULT_RENDEZVOUS_SECONDS: u64 = 300;

/// This host's name (`HOSTNAME`, else `/etc/hostname`, else `unknown`), for messages.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Where worker `index` is expected from when the coordinator is `coordinator`
/// (`<run>-0.<service>:<port>` on Kubernetes: worker `i` is `<run>-<i>.<service>`).
pub fn expected_host(coordinator: &str, index: u32) -> String {
    let host = coordinator
        .rsplit_once(':')
        .map_or(coordinator, |(host, _)| host);
    match host.split_once("-0.") {
        Some((run, service)) => format!("{run}-{index}.{service}"),
        None => format!("the worker with index {index}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_worker_is_expected_from_its_indexed_name() {
        assert_eq!(
            expected_host("bench-3-0.bench-3-workers:7470", 2),
            "bench-3-2.bench-3-workers"
        );
        assert_eq!(expected_host("10.0.0.1:7470", 4), "the worker with index 4");
    }
}
