//! The operator's command line: flags (each with its environment variable where a Deployment
//! sets it), parsed with no I/O, then turned into [`Settings`]. This is the one place the
//! operator reads its environment.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::controller::Settings;
use crate::resources::job::{
    DEFAULT_TTL_SECONDS_AFTER_FINISHED, JobDefaults, default_runner_image,
};

/// Kubernetes operator for CoeBenchmark and CoeBenchmarkRun resources.
#[derive(Debug, Parser)]
#[command(name = "coebench-operator", version, about)]
pub struct Cli {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "COEBENCH_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Run controllers only while holding the leader Lease (for more than one replica).
    #[arg(long)]
    pub leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "coebench-operator")]
    pub lease_name: String,
    /// Namespace of the leader Lease (default: the operator's own, from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease and in Events (default: from POD_NAME, else the
    /// host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Address of the HTTP server (/healthz, /readyz, /metrics).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Log format on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Runner image of benchmarks that do not name one.
    #[arg(long, default_value_t = default_runner_image())]
    pub runner_image: String,
    /// Seconds a runner image may fail to pull before its run fails.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub image_pull_timeout: u64,
    /// Seconds a missing Secret, Secret key or PersistentVolumeClaim may stay missing before the
    /// run fails.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub dependency_timeout: u64,
    /// Seconds a runner Pod may stay unschedulable before its run fails.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub unschedulable_timeout: u64,
    /// `ttlSecondsAfterFinished` of runner Jobs whose benchmark sets none.
    #[arg(long, default_value_t = DEFAULT_TTL_SECONDS_AFTER_FINISHED, value_name = "SECONDS")]
    pub job_ttl: i32,
    /// Objects of one kind reconciled at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u16,
}

/// Log formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Cli {
    /// The reconcilers' settings from the flags.
    pub fn settings(&self) -> Settings {
        Settings {
            job: JobDefaults {
                runner_image: self.runner_image.clone(),
                ttl_seconds_after_finished: self.job_ttl,
                ..JobDefaults::default()
            },
            image_pull_timeout: Duration::from_secs(self.image_pull_timeout),
            dependency_timeout: Duration::from_secs(self.dependency_timeout),
            unschedulable_timeout: Duration::from_secs(self.unschedulable_timeout),
            concurrency: self.concurrency.max(1),
            ..Settings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_flags() {
        let cli = Cli::try_parse_from(["coebench-operator"]).unwrap();
        assert_eq!(cli.namespace, None);
        assert!(!cli.leader_elect);
        assert_eq!(cli.http_addr.to_string(), "0.0.0.0:8080");
        let settings = cli.settings();
        assert_eq!(settings.image_pull_timeout, Duration::from_secs(300));
        assert_eq!(settings.job.ttl_seconds_after_finished, 86_400);
    }

    #[test]
    fn bad_flags_are_rejected() {
        let err = Cli::try_parse_from(["coebench-operator", "--log-format", "xml"]).unwrap_err();
        assert!(err.to_string().contains("xml"), "{err}");
        assert!(Cli::try_parse_from(["coebench-operator", "--http-addr", "nope"]).is_err());
        assert!(Cli::try_parse_from(["coebench-operator", "--bogus"]).is_err());
    }
}
