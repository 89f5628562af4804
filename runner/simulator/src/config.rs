//! The simulator's configuration: the typed `sim.yaml` schema, its defaults, and loading it.
//!
//! Every field's default is stated on it. Parsing only checks shapes (unknown fields are
//! refused); [`SimulatorConfig::validate`] (in `validate.rs`) checks values and memory fit.
//! Nothing here runs a server or does timing.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use coebench_plan::input::validate::ModelCatalog;

use super::SimulatorError;

/// The documented example bundle, `examples/simulator/sim.yaml`, embedded at build time.
pub const BUILTIN_YAML: &str = include_str!("../../../examples/simulator/sim.yaml");

/// A simulated composition-of-experts endpoint: its models, memory, batching and faults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Seed of every random choice (natural lengths, speculative bursts, faults). Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Which chat-completions dialect to speak. Default `sncloud` (`sambanova` is accepted too).
    #[serde(default)]
    pub api: ApiMode,
    /// Never send a `usage` chunk on streams, even when `stream_options.include_usage` asks for
    /// one (some OpenAI-compatible servers do this). Default false.
    #[serde(default)]
    pub omit_usage: bool,
    /// API key every request must carry (`Authorization: Bearer <key>` or SambaStudio's
    /// `key: <key>`); without it the endpoint answers 401. Default: none, no key needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Model used by SambaStudio generic requests that carry no `select_expert`. Default: none
    /// (such requests get a 400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_expert: Option<String>,
    /// Requests for the same model configuration arriving within this many milliseconds of a
    /// batch's first request share that batch. Default 5.
    #[serde(default = "default_batching_window_ms")]
    pub batching_window_ms: f64,
    /// Number of executors; each runs one batch at a time and has its own HBM. Default 1.
    #[serde(default = "default_executors")]
    pub executors: u32,
    /// Prompt tokens a chat request costs beyond its text (the chat template). Generic
    /// requests, sent with `process_prompt: false`, pay none. Default 0.
    #[serde(default)]
    pub chat_template_tokens: u32,
    /// A Hugging Face `tokenizer.json` to count prompt tokens with, including the special tokens
    /// it adds to every text (Llama 3's BOS), as a server running the model's tokenizer counts
    /// them. A relative path starts at the working folder. Default: the embedded `cl100k_base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// Memory of each executor: DDR holding every model's weights, HBM holding configurations.
    pub memory: MemoryConfig,
    /// The models of the bundle; at least one.
    pub models: Vec<ModelConfig>,
    /// Faults injected into every model's requests; a model's own `faults` replace these kind
    /// by kind. Default: none.
    #[serde(default)]
    pub faults: FaultsConfig,
}

/// The chat-completions dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApiMode {
    /// SambaNova Cloud: `usage` always sent on streams with every SambaNova metric,
    /// `system_fingerprint: "fastcoe"`.
    #[default]
    #[serde(alias = "sambanova")]
    Sncloud,
    /// Plain OpenAI: `usage` has only token counts and is sent only when
    /// `stream_options.include_usage` is true.
    Openai,
}

/// The memory of one executor (an RDU node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// DDR capacity in GB (10^9 bytes); the sum of all models' `weights_gb` must fit.
    pub ddr_capacity_gb: f64,
    /// HBM capacity in GB; holds model configurations, least recently used evicted first.
    pub hbm_capacity_gb: f64,
    /// DDR-to-HBM bandwidth in GB/s; loading a configuration takes its size divided by this.
    pub load_bandwidth_gb_per_s: f64,
}

/// One model (expert) of the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name clients send as `model` (or `select_expert`, or `Bundle/<name>`).
    pub name: String,
    /// Size of the weights in GB.
    pub weights_gb: f64,
    /// KV cache and activations per token of a configuration's sequence bucket and batch, in MB
    /// (10^6 bytes); adds `kv_mb_per_token * bucket * batch_size / 1000` GB to a configuration.
    /// Default 0.
    #[serde(default)]
    pub kv_mb_per_token: f64,
    /// Prefill speed in prompt tokens per second (of the whole batch).
    pub prefill_tokens_per_sec: f64,
    /// Supported batch sizes, ascending. Default `[1]`.
    #[serde(default = "default_batch_sizes")]
    pub batch_sizes: Vec<u32>,
    /// Decode speed per request, in tokens per second (verification steps per second for a
    /// speculative model), one value per entry of `batch_sizes`.
    pub decode_tokens_per_sec: Vec<f64>,
    /// Maximum sequence length: prompt tokens + `max_tokens` must not exceed it.
    pub max_sequence_length: u32,
    /// Sequence-length buckets, ascending; a request runs in the smallest bucket that holds its
    /// prompt + `max_tokens`. `max_sequence_length` is always the last bucket. Default: none
    /// besides it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sequence_length_buckets: Vec<u32>,
    /// Without `ignore_eos`, a request stops at a seeded "natural length" drawn uniformly from
    /// this range, or at `max_tokens` if that is smaller. Default: none, always `max_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub natural_length: Option<NaturalLength>,
    /// Speculative decoding. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculative: Option<SpeculativeConfig>,
    /// Image support. Default: none, images are refused with a 400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vision: Option<VisionConfig>,
    /// Faults of this model; each kind set here replaces the global one. Default: none.
    #[serde(default)]
    pub faults: FaultsConfig,
}

/// The range a natural (end-of-sequence) output length is drawn from, uniformly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NaturalLength {
    /// Shortest natural length, in tokens (at least 1).
    pub min: u32,
    /// Longest natural length, in tokens (at least `min`).
    pub max: u32,
}

/// Speculative decoding: each decode step verifies a draft and emits a burst of tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpeculativeConfig {
    /// Tokens the draft model proposes per step (at least 1).
    pub draft_tokens: u32,
    /// Probability that each proposed token is accepted, in `[0, 1]`; a step emits the
    /// accepted prefix plus one token from the target model.
    pub acceptance_probability: f64,
}

/// How a vision model costs images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VisionConfig {
    /// Side of a square image patch in pixels; an image of `w x h` pixels costs
    /// `ceil(w / patch) * ceil(h / patch)` prompt tokens. Default 28.
    #[serde(default = "default_patch_pixels")]
    pub patch_pixels: u32,
    /// Cap on the tokens of one image. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_image: Option<u32>,
}

/// Injected faults. Each is off unless set; each has a `probability` (default 1) drawn per
/// request from the seed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultsConfig {
    /// Answer with an HTTP error instead of serving the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorFault>,
    /// A token bucket; requests finding it empty get 429 with `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitFault>,
    /// Wait before sending the response headers (and before scheduling the request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_first_byte: Option<SlowFirstByteFault>,
    /// Pause a stream after some tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<StallFault>,
    /// Close the connection mid-stream without ending the chunked body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect: Option<DisconnectFault>,
    /// Send one event whose payload is not valid JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed_event: Option<MalformedEventFault>,
}

/// An injected HTTP error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorFault {
    /// Probability a request fails. Default 1.
    #[serde(default = "default_probability")]
    pub probability: f64,
    /// Status to answer with: 500 or 503. Default 503.
    #[serde(default = "default_error_status")]
    pub status: u16,
}

/// A token-bucket rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFault {
    /// Bucket refill rate, requests per second.
    pub requests_per_sec: f64,
    /// Bucket size: requests allowed at once after an idle period. Default 1.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

/// A delay before the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlowFirstByteFault {
    /// Delay in milliseconds.
    pub delay_ms: f64,
    /// Probability a request is delayed. Default 1.
    #[serde(default = "default_probability")]
    pub probability: f64,
}

/// A pause in the middle of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StallFault {
    /// Tokens sent before the pause.
    pub after_tokens: u32,
    /// Length of the pause in milliseconds; every later event is sent this much later.
    pub duration_ms: f64,
    /// Probability a stream stalls. Default 1.
    #[serde(default = "default_probability")]
    pub probability: f64,
}

/// An abrupt disconnect in the middle of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DisconnectFault {
    /// Tokens sent before the connection is closed (0: right after the headers).
    pub after_tokens: u32,
    /// Probability a stream is cut. Default 1.
    #[serde(default = "default_probability")]
    pub probability: f64,
}

/// One malformed event in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MalformedEventFault {
    /// Tokens sent before the malformed event.
    pub after_tokens: u32,
    /// Probability a stream carries one. Default 1.
    #[serde(default = "default_probability")]
    pub probability: f64,
}

fn default_batching_window_ms() -> f64 {
    5.0
}

fn default_executors() -> u32 {
    1
}

fn default_batch_sizes() -> Vec<u32> {
    vec![1]
}

fn default_patch_pixels() -> u32 {
    28
}

fn default_probability() -> f64 {
    1.0
}

fn default_error_status() -> u16 {
    503
}

fn default_burst() -> u32 {
    1
}

/// How the simulator serves HTTPS (a serving option of `coebench simulate` and
/// [`crate::StartOptions::tls`], not part of `sim.yaml`: the same bundle can be served either
/// way). Without one it serves plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetting {
    /// A self-signed certificate generated at start (a fresh ECDSA P-256 key each time), valid
    /// for `localhost`, `127.0.0.1`, `::1` and `names`; clients trust it through its PEM, which
    /// [`crate::SimulatorHandle::certificate_pem`] returns and `cert_out` receives.
    Generated {
        /// Further DNS names or IP addresses the certificate is valid for (`--tls-name`).
        names: Vec<String>,
        /// Write the certificate (PEM) here at start, for clients to trust (`--tls-cert-out`).
        cert_out: Option<PathBuf>,
    },
    /// A given certificate chain and its private key, both PEM files (`--tls-cert`,
    /// `--tls-key`).
    Files {
        /// The certificate chain, the server's own certificate first.
        cert: PathBuf,
        /// The private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
}

impl SimulatorConfig {
    /// The documented example bundle (`examples/simulator/sim.yaml`, embedded in the binary).
    pub fn builtin() -> SimulatorConfig {
        // The embedded file is a build-time constant checked by a unit test, not user input.
        #[allow(clippy::expect_used)]
        Self::from_yaml_str(BUILTIN_YAML, "<builtin sim.yaml>")
            .expect("the embedded examples/simulator/sim.yaml parses and validates")
    }

    /// Parses and validates a YAML config. `origin` names the source in errors (a path).
    pub fn from_yaml_str(yaml: &str, origin: &str) -> Result<SimulatorConfig, SimulatorError> {
        let config: SimulatorConfig =
            serde_saphyr::from_str(yaml).map_err(|e| SimulatorError::Parse {
                origin: origin.to_string(),
                message: e.to_string(),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a YAML config file.
    pub fn from_yaml_file(path: &Path) -> Result<SimulatorConfig, SimulatorError> {
        let text = std::fs::read_to_string(path).map_err(|e| SimulatorError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_yaml_str(&text, &path.display().to_string())
    }

    /// The model a client name designates: an exact model name, or the last `/`-separated part
    /// of it (`Bundle/<expert>`).
    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.model_index(name).map(|i| &self.models[i])
    }

    /// Index in `models` of the model `name` designates (see [`SimulatorConfig::model`]).
    pub fn model_index(&self, name: &str) -> Option<usize> {
        let exact = self.models.iter().position(|m| m.name == name);
        exact.or_else(|| {
            let last = name.rsplit('/').next().unwrap_or(name);
            self.models.iter().position(|m| m.name == last)
        })
    }

    /// The maximum sequence length of the model `name` designates, so a runner can check a
    /// row's `input_tokens + output_tokens` before sending anything.
    pub fn model_max_sequence_length(&self, name: &str) -> Option<u32> {
        self.model(name).map(|m| m.max_sequence_length)
    }

    /// The names of the bundle's models, in config order.
    pub fn model_names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }
}

impl ModelConfig {
    /// The sequence buckets, ascending, ending with `max_sequence_length`.
    pub fn buckets(&self) -> Vec<u32> {
        let mut buckets: Vec<u32> = self
            .sequence_length_buckets
            .iter()
            .copied()
            .filter(|&b| b < self.max_sequence_length)
            .collect();
        buckets.push(self.max_sequence_length);
        buckets
    }

    /// The smallest bucket holding `tokens`, or `None` when it exceeds the maximum.
    pub fn bucket_for(&self, tokens: u64) -> Option<u32> {
        self.buckets().into_iter().find(|&b| u64::from(b) >= tokens)
    }

    /// The smallest supported batch size holding `requests`, or `None` above the largest.
    pub fn batch_size_for(&self, requests: usize) -> Option<u32> {
        self.batch_sizes
            .iter()
            .copied()
            .find(|&b| b as usize >= requests)
    }

    /// The largest supported batch size.
    pub fn max_batch_size(&self) -> u32 {
        self.batch_sizes.last().copied().unwrap_or(1)
    }

    /// Decode speed per request at supported batch size `batch_size`.
    pub fn decode_speed(&self, batch_size: u32) -> Option<f64> {
        let i = self.batch_sizes.iter().position(|&b| b == batch_size)?;
        self.decode_tokens_per_sec.get(i).copied()
    }

    /// Size in GB of the configuration (this model, `bucket`, `batch_size`) in HBM:
    /// `weights_gb + kv_mb_per_token * bucket * batch_size / 1000`.
    pub fn configuration_gb(&self, bucket: u32, batch_size: u32) -> f64 {
        self.weights_gb + self.kv_mb_per_token * f64::from(bucket) * f64::from(batch_size) / 1000.0
    }
}

impl FaultsConfig {
    /// These faults with every kind unset here taken from `global`.
    pub fn or(&self, global: &FaultsConfig) -> FaultsConfig {
        FaultsConfig {
            error: self.error.or(global.error),
            rate_limit: self.rate_limit.or(global.rate_limit),
            slow_first_byte: self.slow_first_byte.or(global.slow_first_byte),
            stall: self.stall.or(global.stall),
            disconnect: self.disconnect.or(global.disconnect),
            malformed_event: self.malformed_event.or(global.malformed_event),
        }
    }
}

/// The simulator declares its models and their maximum sequence lengths, so plans are checked
/// against it before anything is sent (`Bundle/<expert>` names the expert).
impl ModelCatalog for SimulatorConfig {
    fn max_sequence_length(&self, model: &str) -> Option<u32> {
        self.model_max_sequence_length(model)
    }

    fn serves(&self, model: &str) -> Option<bool> {
        let expert = model.strip_prefix("Bundle/").unwrap_or(model);
        Some(self.model(expert).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_bundle_parses_and_validates() {
        let config = SimulatorConfig::builtin();
        assert!(config.models.len() >= 4);
        assert!(config.models.iter().any(|m| m.speculative.is_some()));
        assert!(config.models.iter().any(|m| m.vision.is_some()));
    }

    #[test]
    fn bundle_prefixed_names_resolve_to_the_expert() {
        let config = SimulatorConfig::builtin();
        let name = config.models[0].name.clone();
        assert_eq!(config.model_index(&format!("Bundle/{name}")), Some(0));
        assert_eq!(
            config.model_max_sequence_length(&name),
            Some(config.models[0].max_sequence_length)
        );
        assert_eq!(config.model("no-such-model"), None);
    }

    #[test]
    fn buckets_and_batch_sizes_round_up() {
        let yaml = r#"
memory: {ddr_capacity_gb: 100, hbm_capacity_gb: 50, load_bandwidth_gb_per_s: 10}
models:
  - name: m
    weights_gb: 10
    kv_mb_per_token: 0.5
    prefill_tokens_per_sec: 1000
    batch_sizes: [1, 4, 8]
    decode_tokens_per_sec: [100, 80, 60]
    max_sequence_length: 8192
    sequence_length_buckets: [2048, 4096]
"#;
        let config = SimulatorConfig::from_yaml_str(yaml, "test").unwrap();
        let m = &config.models[0];
        assert_eq!(m.buckets(), vec![2048, 4096, 8192]);
        assert_eq!(m.bucket_for(2049), Some(4096));
        assert_eq!(m.bucket_for(8193), None);
        assert_eq!(m.batch_size_for(3), Some(4));
        assert_eq!(m.batch_size_for(9), None);
        assert_eq!(m.decode_speed(8), Some(60.0));
        assert!((m.configuration_gb(2048, 4) - (10.0 + 0.5 * 2048.0 * 4.0 / 1000.0)).abs() < 1e-9);
        assert_eq!(config.batching_window_ms, 5.0);
        assert_eq!(config.executors, 1);
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let yaml = "memory: {ddr_capacity_gb: 1, hbm_capacity_gb: 1, load_bandwidth_gb_per_s: 1}\nmodels: []\nexecutor: 2\n";
        let err = SimulatorConfig::from_yaml_str(yaml, "x.yaml").unwrap_err();
        assert!(err.to_string().contains("executor"), "{err}");
        assert!(err.to_string().contains("x.yaml"), "{err}");
    }
}
