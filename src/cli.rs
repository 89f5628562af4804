//! The operator's command line: flags (each with its environment variable where a Deployment
//! sets it), parsed with no I/O, then turned into [`Settings`]. This is the one place the
//! operator reads its environment.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::controller::Settings;
use k8s_openapi::api::core::v1::ResourceRequirements;

use crate::resources::job::{
    DEFAULT_TTL_SECONDS_AFTER_FINISHED, JobDefaults, default_runner_image, default_runner_resources,
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
    /// Compute resources of runner containers whose benchmark sets none, as the JSON of a
    /// Kubernetes ResourceRequirements (default: requests of 500m CPU and 512Mi memory).
    #[arg(long, value_name = "JSON", value_parser = parse_resources)]
    pub runner_resources: Option<ResourceRequirements>,
    /// Service account of runner Pods whose benchmark names none; it must exist in the
    /// benchmark's namespace (default: the namespace's `default`). Its token is never mounted.
    #[arg(long, value_name = "NAME")]
    pub runner_service_account: Option<String>,
    /// PersistentVolumeClaim runner Pods whose benchmark sets no `runner.tokenizerCache` use
    /// as their Hugging Face cache, so tokenizers are downloaded once; it must exist in the
    /// benchmark's namespace (default: none, a folder of the Pod's `/tmp`).
    #[arg(long, value_name = "NAME")]
    pub runner_tokenizer_cache_claim: Option<String>,
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
    /// Seconds the runner container may stay in creation after its Pod was scheduled (a volume
    /// that cannot be mounted or attached) before its run fails.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub startup_timeout: u64,
    /// `ttlSecondsAfterFinished` of runner Jobs whose benchmark sets none.
    #[arg(long, default_value_t = DEFAULT_TTL_SECONDS_AFTER_FINISHED, value_name = "SECONDS")]
    pub job_ttl: i32,
    /// Objects of one kind reconciled at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u16,
}

/// Parses `--runner-resources`: the JSON of a ResourceRequirements, unknown keys refused.
fn parse_resources(text: &str) -> Result<ResourceRequirements, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let known = ["requests", "limits", "claims"];
    if let Some(key) = value
        .as_object()
        .ok_or("expected a JSON object such as {\"requests\":{\"cpu\":\"500m\"}}")?
        .keys()
        .find(|k| !known.contains(&k.as_str()))
    {
        return Err(format!(
            "unknown key {key:?}; expected requests, limits or claims"
        ));
    }
    serde_json::from_value(value).map_err(|e| format!("not a ResourceRequirements: {e}"))
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
                runner_resources: self
                    .runner_resources
                    .clone()
                    .unwrap_or_else(default_runner_resources),
                runner_service_account: self.runner_service_account.clone(),
                runner_tokenizer_cache_claim: self.runner_tokenizer_cache_claim.clone(),
                ttl_seconds_after_finished: self.job_ttl,
                ..JobDefaults::default()
            },
            image_pull_timeout: Duration::from_secs(self.image_pull_timeout),
            dependency_timeout: Duration::from_secs(self.dependency_timeout),
            unschedulable_timeout: Duration::from_secs(self.unschedulable_timeout),
            startup_timeout: Duration::from_secs(self.startup_timeout),
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
    fn runner_defaults_come_from_flags() {
        let cli = Cli::try_parse_from([
            "coebench-operator",
            "--runner-resources",
            r#"{"requests":{"cpu":"1","memory":"1Gi"},"limits":{"memory":"2Gi"}}"#,
            "--runner-service-account",
            "coebench-runner",
        ])
        .unwrap();
        let job = cli.settings().job;
        assert_eq!(
            job.runner_service_account.as_deref(),
            Some("coebench-runner")
        );
        let limits = job.runner_resources.limits.unwrap();
        assert_eq!(limits["memory"].0, "2Gi");
        let defaults = Cli::try_parse_from(["coebench-operator"])
            .unwrap()
            .settings();
        assert_eq!(defaults.job.runner_resources, default_runner_resources());
        assert_eq!(defaults.job.runner_service_account, None);
        for bad in [r#"{"request":{}}"#, "cpu=1", r#"{"limits":"2Gi"}"#] {
            let err =
                Cli::try_parse_from(["coebench-operator", "--runner-resources", bad]).unwrap_err();
            assert!(err.to_string().contains("--runner-resources"), "{err}");
        }
    }

    #[test]
    fn bad_flags_are_rejected() {
        let err = Cli::try_parse_from(["coebench-operator", "--log-format", "xml"]).unwrap_err();
        assert!(err.to_string().contains("xml"), "{err}");
        assert!(Cli::try_parse_from(["coebench-operator", "--http-addr", "nope"]).is_err());
        assert!(Cli::try_parse_from(["coebench-operator", "--bogus"]).is_err());
    }
}
