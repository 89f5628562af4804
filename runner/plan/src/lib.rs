//! What coebench's engine and its operator share: the native benchmark plan (which endpoint,
//! which model-config rows, which options), reading and validating its inputs ([`input`]), the
//! run report the runner hands to the operator ([`report`]), regression thresholds
//! ([`regression`]), and the Prometheus exposition both
//! serve ([`exposition`]). It depends on no client, engine or Kubernetes code, so the operator
//! compiles only this of the engine.
//!
//! The plan types below are the one typed schema of a benchmark. The kit's `config.yaml` + CSV are translated into
//! it, `coebench run --plan` reads it from YAML or JSON, and the operator's `CoeBenchmark`
//! resource embeds [`Row`] and [`RunOptions`] unchanged (it decides [`OutputOptions`] itself). This module only defines the types and
//! their defaults; reading files and validating values live in [`crate::input`].

pub mod exposition;
pub mod input;
pub mod regression;
pub mod report;
pub mod tokenizers;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Sampling parameters sent in every request body (`temperature`, `top_p`, `top_k`, ...), by
/// their API names. Values are JSON values, passed through as given; `input::validate` checks
/// the well-known ones and refuses the keys coebench sets itself.
pub type SamplingParams = BTreeMap<String, serde_json::Value>;

/// A whole benchmark: the endpoint to load, the rows to run in order, and run-wide options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Plan {
    /// The endpoint every row is sent to.
    pub endpoint: EndpointSpec,
    /// Model-config rows, run one after another in this order (order matters for switching).
    pub rows: Vec<Row>,
    /// Run-wide options; every field has a default.
    #[serde(default)]
    pub options: RunOptions,
    /// Where results go; every field has a default.
    #[serde(default)]
    pub output: OutputOptions,
    /// Worker processes (or, on Kubernetes, Pods) the run's load is spread over, worker 0
    /// coordinating and writing every file; a row may use fewer (`rows[].workers`). 1 to
    /// [`MAX_WORKERS`]; default 1: one process.
    #[serde(default = "default_workers", skip_serializing_if = "is_one_worker")]
    #[schemars(range(min = 1, max = 1000))]
    pub workers: u32,
}

/// Most workers a run may have.
pub const MAX_WORKERS: u32 = 1000;

fn default_workers() -> u32 {
    1
}

fn is_one_worker(workers: &u32) -> bool {
    *workers == 1
}

/// Which API an endpoint speaks, and where it is.
///
/// Credentials are never part of a plan: the key is read from the environment variable named by
/// `apiKeyEnv` (or the API's default variable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointSpec {
    /// The API flavour.
    pub api: ApiKind,
    /// Base URL. `sncloud`/`openai`: the API base (for example `https://api.sambanova.ai/v1`);
    /// `sambastudio`: the endpoint URL. Default: from the API's environment variable
    /// (`SAMBANOVA_API_BASE`, `SAMBASTUDIO_URL`, `OPENAI_BASE_URL`). Unused for `simulator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Name of the environment variable that holds the API key. Default: `SAMBANOVA_API_KEY`,
    /// `SAMBASTUDIO_API_KEY` or `OPENAI_API_KEY` by API; unused for `simulator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// For `api: simulator`: path of a simulator config (`sim.yaml`), relative to the plan file.
    /// Default: the built-in example bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulator: Option<String>,
    /// A PEM file of certificates to trust for an `https` endpoint besides the public (webpki)
    /// roots: a private CA's certificate, or a server's self-signed one (`coebench simulate
    /// --tls --tls-cert-out FILE` writes one), relative to the plan file. Default: the
    /// `SSL_CERT_FILE` environment variable when set, else only the public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
}

/// The API flavours coebench can benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApiKind {
    /// SambaNova Cloud: OpenAI-compatible chat completions with SambaNova's `usage` metrics.
    Sncloud,
    /// SambaStudio: generic v1/v2 stream endpoints or its OpenAI-compatible URLs.
    Sambastudio,
    /// Any OpenAI-compatible server (vLLM, TGI, SGLang, llama.cpp, Ollama, ...).
    Openai,
    /// The embedded endpoint simulator, run in-process.
    Simulator,
}

impl ApiKind {
    /// The name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKind::Sncloud => "sncloud",
            ApiKind::Sambastudio => "sambastudio",
            ApiKind::Openai => "openai",
            ApiKind::Simulator => "simulator",
        }
    }
}

/// The API route a request is posted to; it fixes how the request and its response are framed.
/// The client picks it from the endpoint's URL, the simulator from the request's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    /// `POST .../chat/completions`, OpenAI-compatible (SambaNova Cloud, OpenAI, SambaStudio's
    /// OpenAI-compatible URLs, vLLM, llama.cpp, ...); server-sent events when streamed.
    Chat,
    /// `POST /api/predict/generic/stream/<project>/<endpoint>` (SambaStudio generic v1): one JSON
    /// object per line.
    GenericV1,
    /// `POST /api/v2/predict/generic/stream/<project>/<endpoint>` (SambaStudio generic v2).
    GenericV2,
}

/// Latency objectives (service-level objectives), client-side, in seconds: per request (each
/// optional; a row's goodput is the share of its requests meeting all of them) and at a
/// percentile of the row (`percentiles`: whether the row met them).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Objectives {
    /// Largest time to first token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_seconds: Option<f64>,
    /// Largest end-to-end latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_seconds: Option<f64>,
    /// Largest mean inter-token latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inter_token_latency_seconds: Option<f64>,
    /// Objectives on a percentile of the row's requests, e.g. p99 TTFT at most 0.5 s. The row
    /// meets them when every one holds; failed requests count as slower than any bound (so a
    /// p99 objective fails when more than 1 % of requests failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percentiles: Vec<PercentileObjective>,
}

/// An objective on a percentile of a row's requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PercentileObjective {
    /// The latency: `ttft`, `e2e` or `interTokenLatency` (each request's mean).
    pub metric: ObjectiveMetric,
    /// The percentile, above 0 and at most 100 (e.g. `99`).
    pub percentile: f64,
    /// The largest acceptable value of that percentile, in seconds.
    pub max_seconds: f64,
}

/// The latency a percentile objective bounds (client side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ObjectiveMetric {
    /// Time to first token.
    Ttft,
    /// End-to-end latency.
    E2e,
    /// A request's mean inter-token latency.
    InterTokenLatency,
}

impl ObjectiveMetric {
    /// The name in plans and summaries.
    pub fn name(self) -> &'static str {
        match self {
            ObjectiveMetric::Ttft => "ttft",
            ObjectiveMetric::E2e => "e2e",
            ObjectiveMetric::InterTokenLatency => "interTokenLatency",
        }
    }
}

impl Objectives {
    /// The objectives as (plan field name, value), those set.
    pub fn set(&self) -> Vec<(&'static str, f64)> {
        [
            ("ttftSeconds", self.ttft_seconds),
            ("e2eSeconds", self.e2e_seconds),
            ("interTokenLatencySeconds", self.inter_token_latency_seconds),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
    }
}

/// One model configuration to benchmark: the kit CSV's row.
///
/// Exactly one of `concurrency` and `qps` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Row {
    /// Model name as the endpoint knows it (kit `model_name`), for example
    /// `Meta-Llama-3.3-70B-Instruct` or `Bundle/<expert>` on SambaStudio.
    #[schemars(length(min = 1))]
    pub model: String,
    /// Prompt length in tokens (kit `input_tokens`).
    #[schemars(range(min = 1))]
    pub input_tokens: u32,
    /// Output length in tokens, sent as `max_tokens` (kit `output_tokens`).
    #[schemars(range(min = 1))]
    pub output_tokens: u32,
    /// Number of requests to send (kit `num_requests`).
    #[schemars(range(min = 1))]
    pub num_requests: u32,
    /// Closed loop: this many requests in flight at once (kit `concurrent_requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// Open loop: requests per second (kit `qps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qps: Option<f64>,
    /// Arrival process of an open-loop row (kit `qps_distribution`). Default `constant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qps_distribution: Option<QpsDistribution>,
    /// Send an image of this size with every request (kit `multimodal_img_size`). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<ImageSize>,
    /// Sequence length the model is deployed with; `inputTokens + outputTokens` must fit in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2))]
    pub max_sequence_length: Option<u32>,
    /// Send `ignore_eos` so the model generates exactly `outputTokens`. Default: the run's
    /// `options.ignoreEos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    /// Send `min_tokens` (vLLM, SGLang): the model generates at least this many tokens.
    /// Default: the run's `options.minTokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_tokens: Option<u32>,
    /// Sampling parameters of this row's requests (for example `temperature: 0.7`, `top_p`,
    /// `top_k`), merged over the run's `options.samplingParams` key by key. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::any_values")]
    pub sampling_params: SamplingParams,
    /// Send the prompts of a jsonl dataset (the kit's custom-dataset format) instead of
    /// synthetic prompts of `inputTokens` tokens. Default: synthetic prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<Dataset>,
    /// Workers this row's load is spread over, at most the plan's `workers`. Default: the
    /// plan's `workers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub workers: Option<u32>,
    /// Latency objectives of this row, replacing the run's `options.objectives` for it.
    /// Default: the run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives: Option<Objectives>,
}

impl Row {
    /// The workers this row runs on: its own `workers`, else the plan's.
    pub fn effective_workers(&self, plan_workers: u32) -> u32 {
        self.workers.unwrap_or(plan_workers)
    }

    /// The objectives of this row: its own, else the run's.
    pub fn effective_objectives<'a>(&'a self, options: &'a RunOptions) -> Option<&'a Objectives> {
        self.objectives.as_ref().or(options.objectives.as_ref())
    }

    /// The sampling parameters the row's requests send: the run's, with the row's on top.
    pub fn effective_sampling_params(&self, options: &RunOptions) -> SamplingParams {
        let mut merged = options.sampling_params.clone();
        merged.extend(self.sampling_params.clone());
        merged
    }
}

/// A jsonl file of prompts, in the kit's custom-dataset format: one JSON object per line,
/// `{"prompt": "<text>"}` or `{"prompt": "<text>", "image_path": "<local jpg/png/webp>"}`.
///
/// Prompts are sent as they are (not cut to `inputTokens`; each request records its prompt's
/// own token count); `inputTokens` still names the row and bounds `maxSequenceLength`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dataset {
    /// Path of the jsonl file, relative to the plan file (in Kubernetes, a file of a volume
    /// listed in `runner.files`, mounted under `/files/<name>/`). Image paths inside it are
    /// relative to the file's folder.
    #[schemars(length(min = 1))]
    pub path: String,
    /// Which line each request sends. Default `cycle`.
    #[serde(default)]
    pub order: DatasetOrder,
}

/// Which dataset line request number `i` of a row sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatasetOrder {
    /// Line `i mod n`: every line in file order, then again from the top.
    #[default]
    Cycle,
    /// A line drawn at random (with replacement) from the run's seed and `i`.
    Sample,
}

/// How a row generates load, derived from [`Row`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Closed loop with this many requests in flight.
    Concurrency(u32),
    /// Open loop at this many requests per second, with these inter-arrival gaps.
    Rate {
        /// Requests per second.
        qps: f64,
        /// Inter-arrival distribution.
        distribution: QpsDistribution,
    },
}

impl Row {
    /// The row's load, or `None` when it sets both or neither of `concurrency` and `qps`
    /// (input validation rejects such rows before a run starts).
    pub fn load(&self) -> Option<Load> {
        match (self.concurrency, self.qps) {
            (Some(c), None) => Some(Load::Concurrency(c)),
            (None, Some(qps)) => Some(Load::Rate {
                qps,
                distribution: self.qps_distribution.unwrap_or_default(),
            }),
            _ => None,
        }
    }

    /// The load the row runs with: its concurrency when set (the kit's HEAD bundle runner lets
    /// concurrency win when both are set), else its rate, else concurrency 0 (such rows are
    /// rejected by input validation before a run).
    pub fn effective_load(&self) -> Load {
        match (self.concurrency, self.load()) {
            (Some(c), _) => Load::Concurrency(c),
            (None, Some(load)) => load,
            (None, None) => Load::Concurrency(0),
        }
    }
}

/// Inter-arrival time distribution of an open-loop row, with mean `1/qps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QpsDistribution {
    /// Every gap is exactly `1/qps`.
    #[default]
    Constant,
    /// Gaps uniform on `[0, 2/qps]`.
    Uniform,
    /// Gaps exponential with mean `1/qps` (a Poisson process).
    Exponential,
}

impl QpsDistribution {
    /// The name used in files and output names.
    pub fn as_str(self) -> &'static str {
        match self {
            QpsDistribution::Constant => "constant",
            QpsDistribution::Uniform => "uniform",
            QpsDistribution::Exponential => "exponential",
        }
    }
}

/// Image sizes of multimodal rows: square images of 500, 1000 or 2000 pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageSize {
    /// 500 x 500 pixels.
    Small,
    /// 1000 x 1000 pixels.
    Medium,
    /// 2000 x 2000 pixels.
    Large,
}

impl ImageSize {
    /// The name used in files and output names (`small`, `medium`, `large`).
    pub fn as_str(self) -> &'static str {
        match self {
            ImageSize::Small => "small",
            ImageSize::Medium => "medium",
            ImageSize::Large => "large",
        }
    }

    /// Side of the square image in pixels.
    pub fn pixels(self) -> u32 {
        match self {
            ImageSize::Small => 500,
            ImageSize::Medium => 1000,
            ImageSize::Large => 2000,
        }
    }
}

/// Run-wide options. Every field has a default, stated on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunOptions {
    /// Seconds after the start of a row after which it sends no new request (kit `timeout`).
    /// Requests never sent are counted. Default 3600.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: f64,
    /// Seconds to wait between rows (kit `time_delay`). Default 0.
    #[serde(default)]
    pub time_delay_seconds: f64,
    /// Rows that run at once (the kit's `max_workers` with `concurrency_enabled`): rows start
    /// in plan order as earlier ones finish, so up to this many models take traffic together,
    /// each row with its own load and its own files (a per-model breakdown); set it to the
    /// number of rows for mixed traffic of every model at once. Under mixed traffic switches
    /// recur inside a row: a row's `switching_time` still compares its first request with the
    /// others only, and `mixed_traffic_switching.json` in the run's folder attributes switches
    /// per request. The chat-template probe (and so the tokenizer check) is skipped, since it
    /// would inject a switch into the other rows' traffic. Default 1: one row after another.
    #[serde(default = "default_parallel_rows")]
    #[schemars(range(min = 1, max = 1000))]
    pub parallel_rows: u32,
    /// Seconds one request may take, headers to last byte, before it fails as `timeout`.
    /// Default 600.
    #[serde(default = "default_request_timeout_seconds")]
    pub request_timeout_seconds: f64,
    /// Draw each request's prompt from the set of varied prompts instead of the default prompt
    /// (kit `use_multiple_prompts`). Default false.
    #[serde(default)]
    pub use_multiple_prompts: bool,
    /// Seed of every random choice (prompts, arrival gaps). Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Open the connections a row will need before it starts (its concurrency, or one second
    /// of its arrivals), so handshakes are not timed as part of the first requests' TTFT.
    /// Default true.
    #[serde(default = "default_true")]
    pub warm_up_connections: bool,
    /// The tokenizer of every model that `tokenizers` does not map: a `tokenizer.json` path,
    /// a Hugging Face repository name, or `embedded` (the same values as
    /// `tokenizers[].tokenizer`). Default: the kit's tokenizer for the model's family (Llama
    /// 3.x and 4, Qwen, QwQ, DeepSeek, Mistral, gpt-oss, gemma, ALLaM, MiniMax, SOLAR, EEVE;
    /// downloaded from Hugging Face), else the embedded `cl100k_base` BPE with a warning; the
    /// embedded simulator's models always use `cl100k_base`, as the simulator counts with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// Tokenizers by model, checked before `tokenizer`: an entry naming the model exactly
    /// wins, else the first whose pattern matches. Hugging Face downloads use `HF_TOKEN`
    /// (gated models), `HF_ENDPOINT` (a mirror), the cache in `HF_HUB_CACHE` or
    /// `HF_HOME/hub` (default `~/.cache/huggingface/hub`), and only that cache under
    /// `HF_HUB_OFFLINE=1`. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokenizers: Vec<tokenizers::TokenizerRule>,
    /// Send every request of a row the same prompt text. Default false: each request's prompt
    /// starts with its own seeded tag (same total length), so a server's prefix cache
    /// (llama.cpp, vLLM prefix caching, SGLang's radix cache) cannot reuse one request's prompt
    /// for the next; set true to measure the cache.
    #[serde(default)]
    pub identical_prompts: bool,
    /// Send `"ignore_eos": true|false` on SambaNova Cloud and OpenAI-compatible requests.
    /// Default: true on `sncloud` and `openai` (the model generates exactly `outputTokens`;
    /// SambaNova Cloud, vLLM, SGLang and llama.cpp accept it), never sent on SambaStudio.
    /// Set false for a server that rejects unknown fields (HTTP 400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    /// Send `min_tokens` (vLLM, SGLang) on OpenAI-compatible requests. Default: not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_tokens: Option<u32>,
    /// Seconds requests in flight may take to finish after SIGTERM or Ctrl-C before they are
    /// cut off and recorded as `interrupted` (a second signal cuts them off at once).
    /// 0 to 300; default 10, well under Kubernetes' 30 s `terminationGracePeriodSeconds`.
    #[serde(default = "default_stop_grace_seconds")]
    pub stop_grace_seconds: f64,
    /// Sampling parameters of every request (`temperature`, `top_p`, `top_k`, `seed`, `stop`,
    /// ...; the kit's `--sampling-params`), sent in the request body under their own names. A
    /// row's `samplingParams` override them key by key. Default: none (the server's defaults).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::any_values")]
    pub sampling_params: SamplingParams,
    /// Free-form labels of the run (the kit's `--metadata`), written to `run.json`, every row's
    /// summary (as top-level text values, as the kit merges them) and the consolidated table
    /// (one column per key, after coebench's). Keys: letters, digits, `_`, `-`, `.`. Default:
    /// none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Latency objectives every request should meet; a row's goodput is the share of its
    /// requests that met all of them, failed and timed-out requests counting as misses.
    /// Default: none (no goodput).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives: Option<Objectives>,
    /// Save every request's prompt and generated text in `<base>_response_texts.jsonl` (the
    /// kit's `--save-llm-responses`), written with the row's other files. Default false.
    #[serde(default)]
    pub save_response_texts: bool,
}

/// Default of [`RunOptions::stop_grace_seconds`].
pub const DEFAULT_STOP_GRACE_SECONDS: f64 = 10.0;

fn default_stop_grace_seconds() -> f64 {
    DEFAULT_STOP_GRACE_SECONDS
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            timeout_seconds: default_timeout_seconds(),
            time_delay_seconds: 0.0,
            parallel_rows: 1,
            request_timeout_seconds: default_request_timeout_seconds(),
            use_multiple_prompts: false,
            seed: 0,
            warm_up_connections: true,
            tokenizer: None,
            tokenizers: Vec::new(),
            identical_prompts: false,
            ignore_eos: None,
            min_tokens: None,
            stop_grace_seconds: DEFAULT_STOP_GRACE_SECONDS,
            sampling_params: SamplingParams::new(),
            metadata: BTreeMap::new(),
            objectives: None,
            save_response_texts: false,
        }
    }
}

/// Where a run's results go. Relative paths resolve against the plan file's folder.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutputOptions {
    /// Name of the run: the folder of its per-row files and the consolidated file names.
    /// Default: the start time, `YYYYmmdd-HHMMSS.ffffff` as the kit names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_name: Option<String>,
    /// Folder of the per-row files (kit `output_files_dir`). Default `coebench-results/output_files`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_files_dir: Option<String>,
    /// Folder of the consolidated table (kit `consolidated_results_dir`).
    /// Default `coebench-results/consolidated_results`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consolidated_results_dir: Option<String>,
    /// How the consolidated files are named. Default `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consolidated_file_names: Option<ConsolidatedFileNames>,
}

/// Names of the consolidated table's files: both conventions of the kit exist in the wild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConsolidatedFileNames {
    /// `consolidated_results_<run_name>.xlsx` (and `.csv`, `.json`), as the seed README and the
    /// kit before October 2025 name it.
    #[default]
    Seed,
    /// `<run_name>.xlsx` (and `.csv`, `.json`), as the kit's latest consolidator and its bundle
    /// notebook name it.
    Kit,
    /// Both: the seed's three files, plus the workbook again as `<run_name>.xlsx`.
    Both,
}

/// JSON schemas that schemars cannot derive in a form Kubernetes accepts.
mod schema {
    use schemars::{Schema, SchemaGenerator, json_schema};

    /// An object whose values are any JSON value (sampling parameters). Kubernetes needs
    /// `x-kubernetes-preserve-unknown-fields` on it, as a structural schema types every field.
    pub fn any_values(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}

fn default_timeout_seconds() -> f64 {
    3600.0
}

fn default_parallel_rows() -> u32 {
    1
}

fn default_true() -> bool {
    true
}

fn default_request_timeout_seconds() -> f64 {
    600.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_plan_parses_with_defaults() {
        let plan: Plan = serde_json::from_str(
            r#"{"endpoint":{"api":"simulator"},
                "rows":[{"model":"m","inputTokens":10,"outputTokens":5,"numRequests":3,"qps":2.5}]}"#,
        )
        .unwrap();
        assert_eq!(plan.options, RunOptions::default());
        assert_eq!(plan.output, OutputOptions::default());
        assert_eq!(
            plan.rows[0].load(),
            Some(Load::Rate {
                qps: 2.5,
                distribution: QpsDistribution::Constant
            })
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<Row>(
            r#"{"model":"m","inputTokens":1,"outputTokens":1,"numRequests":1,"concurrncy":2}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("concurrncy"), "{err}");
    }

    #[test]
    fn a_row_with_both_or_neither_load_has_no_load() {
        let mut row: Row = serde_json::from_str(
            r#"{"model":"m","inputTokens":1,"outputTokens":1,"numRequests":1,"concurrency":2,"qps":1}"#,
        )
        .unwrap();
        assert_eq!(row.load(), None);
        row.concurrency = None;
        row.qps = None;
        assert_eq!(row.load(), None);
    }
}
