//! Types shared by both resources: the endpoint, the runner Pod settings, the results volume,
//! run phases and the per-row result summary.

use std::collections::BTreeMap;

use coebench_plan::{ApiKind, ImageSize};
use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
    TopologySpreadConstraint,
};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The endpoint to benchmark: which API it speaks, where it is, the Secret with its key, and
/// the CA that signed its certificate when no public one did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.api in ['sncloud', 'sambastudio'] ? has(self.apiKeySecretRef) : true").message("endpoint.apiKeySecretRef is required for api sncloud and sambastudio: name the Secret and key that hold the API key"))]
#[x_kube(validation = Rule::new("self.api in ['sambastudio', 'openai'] ? has(self.url) : true").message("endpoint.url is required for api sambastudio and openai"))]
#[x_kube(validation = Rule::new("self.api == 'simulator' ? !has(self.caCertificate) : true").message("endpoint.caCertificate is not allowed with api simulator (the simulator runs inside the runner and needs no certificate): remove caCertificate, or set api and url to your HTTPS endpoint"))]
pub struct Endpoint {
    /// The API flavour: `sncloud`, `sambastudio`, `openai`, or `simulator` (the runner's
    /// built-in simulated endpoint, which needs no URL or key: handy for demos).
    pub api: ApiKind,
    /// Base URL (`sncloud`: default `https://api.sambanova.ai/v1`; `openai`: the API base, e.g.
    /// `http://vllm:8000/v1`; `sambastudio`: the endpoint URL). Unused for `simulator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("endpoint.url must start with http:// or https://"))]
    pub url: Option<String>,
    /// The Secret key holding the API key; the runner Pod reads it as `COEBENCH_API_KEY`.
    /// Required for `sncloud` and `sambastudio`, optional for `openai`, unused for `simulator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// Certificates (PEM) to trust for an `https` endpoint besides the public (webpki) roots:
    /// a private CA's certificate, or the server's self-signed one. The key is mounted
    /// read-only into every runner Pod as `/etc/coebench-ca/ca.crt`, the plan's
    /// `endpoint.caCertificate`. Default: only the public roots (or `SSL_CERT_FILE` set in
    /// `runner.env`). Not allowed for `simulator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<CaCertificateRef>,
}

/// Where an endpoint's CA certificate is: a key of a ConfigMap (checked by the operator before
/// it creates the Job) or of a Secret (which the operator cannot read: a missing one keeps the
/// runner Pod from starting), in the resource's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMapKeyRef) != has(self.secretKeyRef)").message("endpoint.caCertificate sets exactly one of configMapKeyRef and secretKeyRef: name the ConfigMap (or the Secret) and the key that hold the PEM certificate"))]
pub struct CaCertificateRef {
    /// A ConfigMap key holding the PEM certificates (a certificate is public: a ConfigMap is
    /// the usual place, e.g. one trust-manager writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeyRef>,
    /// A Secret key holding the PEM certificates (e.g. `ca.crt` of a cert-manager Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// A key in a Secret of the resource's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A key in a ConfigMap of the resource's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// When the kubelet pulls the runner image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ImagePullPolicy {
    /// Pull on every start.
    Always,
    /// Pull only when the node lacks the image.
    IfNotPresent,
    /// Never pull; the image must be on the node.
    Never,
}

impl ImagePullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

/// Settings of the runner Pod. Every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerSpec {
    /// Runner image. Default: the operator's `--runner-image`. A run records the image it used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub image: Option<String>,
    /// Image pull policy. Default: Kubernetes' (`Always` for `:latest`, else `IfNotPresent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// Compute resources. Default: requests of 500m CPU and 512Mi memory, no limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node selector of the runner Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations of the runner Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Affinity of the runner Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Service account of the runner Pod. Default: the operator's `--runner-service-account`,
    /// else one created for the run (`<run>-runner`). Its token is mounted: the run binds it a
    /// Role that may get and patch the run's results ConfigMaps, nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
    /// Extra environment variables of the runner container (e.g. `RUST_LOG`, proxies).
    /// `COEBENCH_API_KEY` is set by the operator and cannot be overridden.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.all(e, e.name != 'COEBENCH_API_KEY')").message("runner.env must not set COEBENCH_API_KEY: use endpoint.apiKeySecretRef"))]
    pub env: Option<Vec<EnvVar>>,
    /// Secrets for pulling the runner image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// User and group the runner runs as. Default 65532 (the image's `nonroot`). Set it to the
    /// owner of an NFS-style results volume whose permissions Kubernetes cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub run_as_user: Option<i64>,
    /// The Pod's `fsGroup`: the group that owns the results volume's files. Default: the
    /// runner's user. Kubernetes changes the volume's ownership only when its root does not
    /// already match (`fsGroupChangePolicy: OnRootMismatch`), so a growing results volume is
    /// not re-chowned on every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub fs_group: Option<i64>,
    /// Files the plan reads (`tokenizer.json` files for `options.tokenizers`, jsonl datasets
    /// for rows' `dataset.path`), each from a ConfigMap or a claim, mounted read-only at
    /// `/files/<name>/`: refer to them by that absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(f, self.exists_one(g, g.name == f.name))").message("runner.files names must be unique"))]
    pub files: Option<Vec<RunnerFiles>>,
    /// The Hugging Face cache (`HF_HOME`) the runner downloads tokenizers into, so each
    /// repository is downloaded once and later runs (or `HF_HUB_OFFLINE=1` in `env`) reuse
    /// it. Default: the operator's `--runner-tokenizer-cache-claim`, else a folder of the Pod's
    /// `/tmp` (downloaded again by every run). `HF_TOKEN` for gated models and `HF_ENDPOINT`
    /// for a mirror go in `env` (the token from a Secret, with `valueFrom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_cache: Option<PersistentVolumeClaimRef>,
    /// How the Pods of a multi-worker run (`spec.workers` > 1) are spread. Default: across
    /// nodes (`kubernetes.io/hostname`, maxSkew 1, `ScheduleAnyway`, over the run's Pods); a
    /// list given here replaces it, an empty list turns spreading off. Unused with one worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
}

/// A volume of files for the runner, mounted read-only at `/files/<name>/`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMap) != has(self.persistentVolumeClaim)").message("each runner.files entry sets exactly one of configMap and persistentVolumeClaim"))]
pub struct RunnerFiles {
    /// The folder name under `/files/` (a DNS label of at most 40 characters).
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// A ConfigMap of the run's namespace: each key is a file (`binaryData` keys too, for
    /// files that are not UTF-8; a ConfigMap holds at most 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<LocalObjectReference>,
    /// A claim of the run's namespace (any size), mounted read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimRef>,
}

/// Where results are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultsSpec {
    /// The volume holding results; each run writes under
    /// `<subPath>/<namespace>/<benchmark>/<run>/`.
    pub persistent_volume_claim: PersistentVolumeClaimRef,
    /// Folder inside the volume. Default: the volume's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.contains('..')").message("results.subPath must be a relative path without '..'"))]
    pub sub_path: Option<String>,
}

/// A PersistentVolumeClaim in the resource's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaimRef {
    /// Name of the claim.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
}

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RunPhase {
    /// Waiting for its Job's Pod to start (or for a Secret, a volume, an image).
    Pending,
    /// The runner is running.
    Running,
    /// The runner finished every row.
    Succeeded,
    /// The run ended without results for every row; the `Failed` condition says why.
    Failed,
}

impl RunPhase {
    /// The Kubernetes-style spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunPhase::Pending => "Pending",
            RunPhase::Running => "Running",
            RunPhase::Succeeded => "Succeeded",
            RunPhase::Failed => "Failed",
        }
    }

    /// Whether the run is over.
    pub fn is_finished(self) -> bool {
        matches!(self, RunPhase::Succeeded | RunPhase::Failed)
    }
}

/// A row's headline numbers, from the runner's report. Latencies in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RowStatus {
    /// Model name.
    pub model: String,
    /// Input tokens per request.
    pub input_tokens: u32,
    /// Output tokens per request.
    pub output_tokens: u32,
    /// Concurrency of a closed-loop row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Requests per second of an open-loop row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qps: Option<f64>,
    /// Requests that completed.
    pub completed: u32,
    /// Requests that failed.
    pub errors: u32,
    /// Median client-side time to first token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ttft_p50_seconds: Option<f64>,
    /// Median server-reported time to first token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ttft_p50_seconds: Option<f64>,
    /// Median client-side end-to-end latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_p50_seconds: Option<f64>,
    /// Median per-request output tokens per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_second_p50: Option<f64>,
    /// Estimated model-switching time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switching_time_seconds: Option<f64>,
    /// Client-side 90th percentile time to first token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ttft_p90_seconds: Option<f64>,
    /// Client-side 99th percentile time to first token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ttft_p99_seconds: Option<f64>,
    /// Server-reported 90th percentile time to first token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ttft_p90_seconds: Option<f64>,
    /// Server-reported 99th percentile time to first token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ttft_p99_seconds: Option<f64>,
    /// Share of requests that met the run's latency objectives (`options.objectives`), failed
    /// requests counting as misses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput: Option<f64>,
    /// Image size of a multimodal row (part of what identifies a row when runs are compared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<ImageSize>,
    /// Client-side 90th percentile end-to-end latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_p90_seconds: Option<f64>,
    /// Client-side 99th percentile end-to-end latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_p99_seconds: Option<f64>,
    /// 90th percentile of the per-request output tokens per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_second_p90: Option<f64>,
    /// 99th percentile of the per-request output tokens per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_second_p99: Option<f64>,
    /// Whether the row met every percentile objective (e.g. p99 TTFT at most 0.5 s); absent
    /// without percentile objectives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives_met: Option<bool>,
}
