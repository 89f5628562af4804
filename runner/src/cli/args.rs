//! Command-line arguments: parsed with no I/O; [`crate::cli::inputs`] turns them into a plan.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use coebench_plan::input::sampling;
use coebench_plan::{ApiKind, ConsolidatedFileNames, ImageSize, QpsDistribution, SamplingParams};
use coebench_runner::client::source::SourceAddresses;

/// Benchmark LLM endpoints that serve many models behind one API (a composition of experts).
#[derive(Debug, Parser)]
#[command(
    name = "coebench",
    version,
    about,
    max_term_width = 100,
    after_help = "Exit codes: 0 every row ran; 1 internal error or a failed write; 2 invalid input or \
usage (nothing was sent); 3 the endpoint rejected the credentials; 4 every request of every row \
failed; 5 interrupted by SIGTERM/Ctrl-C (rows that finished were written); 6 some rows had every \
request fail; 7 (compare) a significant regression beyond its threshold; 8 a worker of a \
distributed run (--workers) was lost or never connected."
)]
pub struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Environment file to load before reading credentials (default: the `.env` of the working
    /// folder or of the nearest folder above it that has one). Variables already set in the
    /// environment win over the file.
    #[arg(long, global = true, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a benchmark from a kit config, a plan file, or single-row flags.
    Run(Box<RunArgs>),
    /// Check a kit config or plan file and report every problem, without sending anything.
    Validate(InputArgs),
    /// Serve the endpoint simulator over HTTP.
    Simulate(SimulateArgs),
    /// Compare a candidate run with a baseline run: p50/p90/p99 differences with bootstrap
    /// confidence intervals, and a failing exit code (7) for a significant regression beyond
    /// its threshold.
    Compare(CompareArgs),
    /// Write a run's HTML report (also written at the end of every run as report.html).
    Report(ReportArgs),
    /// Print the JSON schema of plan files.
    Schema,
    /// A worker process of a distributed run on this machine (started by `coebench run
    /// --workers N`).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// Where the plan comes from.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// The kit's config.yaml (its model_configs_path CSV holds the rows).
    #[arg(long, value_name = "FILE", conflicts_with = "plan")]
    pub config: Option<PathBuf>,
    /// A native plan file (YAML or JSON; see `coebench schema`).
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Single-row flags, used when neither --config nor --plan is given.
    #[command(flatten)]
    pub row: QuickRowArgs,
}

/// A single row given on the command line.
#[derive(Debug, Args)]
#[command(next_help_heading = "Single-row benchmark (without --config or --plan)")]
pub struct QuickRowArgs {
    /// Model name.
    #[arg(long, conflicts_with_all = ["config", "plan"])]
    pub model: Option<String>,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 1000)]
    pub input_tokens: u32,
    /// Output length in tokens.
    #[arg(long, default_value_t = 1000)]
    pub output_tokens: u32,
    /// Number of requests.
    #[arg(long, default_value_t = 16)]
    pub num_requests: u32,
    /// Requests in flight at once (closed loop). Default 1 when --qps is not given.
    #[arg(long, conflicts_with = "qps")]
    pub concurrency: Option<u32>,
    /// Requests per second (open loop).
    #[arg(long)]
    pub qps: Option<f64>,
    /// Arrival process of --qps.
    #[arg(long, value_enum, requires = "qps")]
    pub qps_distribution: Option<QpsDistributionArg>,
    /// Send an image of this size with each request.
    #[arg(long, value_enum)]
    pub image_size: Option<ImageSizeArg>,
    /// Endpoint API.
    #[arg(long, value_enum, default_value_t = ApiArg::Sncloud)]
    pub api: ApiArg,
    /// Endpoint URL (default: from the API's environment variable).
    #[arg(long)]
    pub url: Option<String>,
    /// Environment variable holding the API key (default: the API's usual one).
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Simulator config for --api simulator (default: the built-in bundle).
    #[arg(long, value_name = "FILE")]
    pub simulator_config: Option<PathBuf>,
}

/// Everything `coebench run` takes.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plan.
    #[command(flatten)]
    pub input: InputArgs,
    /// Run name (default: the start time, as the kit names runs).
    #[arg(long, help_heading = "Overrides")]
    pub run_name: Option<String>,
    /// Folder of per-row files.
    #[arg(long, value_name = "DIR", help_heading = "Overrides")]
    pub output_files_dir: Option<PathBuf>,
    /// Folder of the consolidated table.
    #[arg(long, value_name = "DIR", help_heading = "Overrides")]
    pub consolidated_results_dir: Option<PathBuf>,
    /// Seed of prompts and arrival times.
    #[arg(long, help_heading = "Overrides")]
    pub seed: Option<u64>,
    /// Seconds after which a row sends no new request.
    #[arg(long, value_name = "SECONDS", help_heading = "Overrides")]
    pub timeout: Option<f64>,
    /// Seconds one request may take.
    #[arg(long, value_name = "SECONDS", help_heading = "Overrides")]
    pub request_timeout: Option<f64>,
    /// A PEM file of certificates to trust for an https endpoint besides the public roots (a
    /// private CA's, or a self-signed one such as `coebench simulate --tls --tls-cert-out`
    /// writes); replaces the plan's endpoint.caCertificate (default: SSL_CERT_FILE).
    #[arg(long, value_name = "FILE", help_heading = "Overrides")]
    pub ca_certificate: Option<PathBuf>,
    /// Seconds to wait between rows.
    #[arg(long, value_name = "SECONDS", help_heading = "Overrides")]
    pub time_delay: Option<f64>,
    /// Rows that run at once (options.parallelRows; default 1, one after another).
    #[arg(long, value_name = "N", help_heading = "Overrides")]
    pub parallel_rows: Option<u32>,
    /// Seconds requests in flight may take to finish after SIGTERM or Ctrl-C before they are
    /// cut off as `interrupted` (default 10; a second signal cuts them off at once).
    #[arg(long, value_name = "SECONDS", help_heading = "Overrides")]
    pub stop_grace: Option<f64>,
    /// Draw prompts from the varied prompt set.
    #[arg(long, help_heading = "Overrides")]
    pub use_multiple_prompts: bool,
    /// The tokenizer of every model options.tokenizers does not map: a tokenizer.json path, a
    /// Hugging Face repository name (downloaded once into the Hugging Face cache; HF_TOKEN,
    /// HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE apply), or `embedded`.
    #[arg(long, value_name = "FILE|REPO", help_heading = "Overrides")]
    pub tokenizer: Option<String>,
    /// Send every request of a row the same prompt (default: each its own seeded prefix, so
    /// prefix caches do not hit).
    #[arg(long, help_heading = "Overrides")]
    pub identical_prompts: bool,
    /// Send `ignore_eos` true or false (default: true on sncloud and openai, never on
    /// SambaStudio).
    #[arg(long, value_name = "BOOL", help_heading = "Overrides")]
    pub ignore_eos: Option<bool>,
    /// Send `min_tokens` (vLLM, SGLang) with every request.
    #[arg(long, value_name = "N", help_heading = "Overrides")]
    pub min_tokens: Option<u32>,
    /// Sampling parameters of every request as a JSON object (the kit's --sampling-params),
    /// e.g. '{"temperature": 0.7, "top_p": 0.9}'; replaces the plan's.
    #[arg(long, value_name = "JSON", value_parser = sampling::parse_sampling_params_text, help_heading = "Overrides")]
    pub sampling_params: Option<SamplingParams>,
    /// Labels of the run, k=v pairs separated by commas (the kit's --metadata; repeatable),
    /// added to the plan's.
    #[arg(long, value_name = "K=V,...", value_parser = sampling::parse_metadata_text, help_heading = "Overrides")]
    pub metadata: Vec<BTreeMap<String, String>>,
    /// Save every request's prompt and generated text in <base>_response_texts.jsonl (the
    /// kit's --save-llm-responses).
    #[arg(long, help_heading = "Overrides")]
    pub save_response_texts: bool,
    /// Names of the consolidated files: seed (consolidated_results_<run>.*, the default), kit
    /// (<run>.*) or both.
    #[arg(long, value_enum, value_name = "NAMES", help_heading = "Overrides")]
    pub consolidated_file_names: Option<ConsolidatedFileNamesArg>,
    /// Write the compact run report here (in a cluster: /dev/termination-log).
    #[arg(long, value_name = "FILE", help_heading = "Reporting")]
    pub report_file: Option<PathBuf>,
    /// Write each row's headline numbers, as the row finishes, to the results ConfigMaps of
    /// run RUN (`RUN-results-<n>`) through the Kubernetes API, with the Pod's ServiceAccount
    /// (the operator sets this; the ConfigMaps must exist).
    #[arg(long, value_name = "RUN", help_heading = "Reporting")]
    pub publish_results: Option<String>,
    /// With --publish-results: the API server's URL (default: the Pod's
    /// https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT with its ServiceAccount's CA).
    #[arg(
        long,
        value_name = "URL",
        requires = "publish_results",
        help_heading = "Reporting"
    )]
    pub kube_api: Option<String>,
    /// With --publish-results: the ConfigMaps' namespace (default: the Pod's).
    #[arg(
        long,
        value_name = "NAME",
        requires = "publish_results",
        help_heading = "Reporting"
    )]
    pub kube_namespace: Option<String>,
    /// With --publish-results: a file holding the bearer token (default: the Pod's
    /// ServiceAccount token; none with --kube-api).
    #[arg(
        long,
        value_name = "FILE",
        requires = "publish_results",
        help_heading = "Reporting"
    )]
    pub kube_token_file: Option<PathBuf>,
    /// Serve Prometheus metrics at /metrics on this address while the run lasts
    /// (e.g. 0.0.0.0:9090).
    #[arg(long, value_name = "ADDR", help_heading = "Reporting")]
    pub metrics_addr: Option<SocketAddr>,
    /// A label of every metric: namespace=NAME or benchmark=NAME (repeatable; default: the
    /// COEBENCH_NAMESPACE and COEBENCH_BENCHMARK environment variables, else empty).
    #[arg(
        long = "metrics-label",
        value_name = "KEY=VALUE",
        help_heading = "Reporting"
    )]
    pub metrics_labels: Vec<String>,
    /// Push the final metrics to this Prometheus Pushgateway when the run ends
    /// (PUT <URL>/metrics/job/coebench/instance/<run>).
    #[arg(long, value_name = "URL", help_heading = "Reporting")]
    pub pushgateway: Option<String>,
    /// Keep serving --metrics-addr this long after the run, so a scrape catches its end
    /// (in a cluster: one scrape interval).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0.0,
        help_heading = "Reporting"
    )]
    pub metrics_linger: f64,
    /// Write the simulator's ground-truth log here (with --api simulator / a simulator plan).
    #[arg(long, value_name = "FILE", help_heading = "Reporting")]
    pub simulator_truth_log: Option<PathBuf>,
    /// No progress bars (tables and paths are still printed).
    #[arg(long, help_heading = "Reporting")]
    pub no_progress: bool,
    /// Spread the run over N worker processes (overrides the plan's `workers`; default: the
    /// plan's, else 1). Without --coordinator, this process coordinates and starts the other
    /// N-1 on this machine.
    #[arg(long, value_name = "N", help_heading = "Distributed runs")]
    pub workers: Option<u32>,
    /// The coordinator's address HOST:PORT (on Kubernetes `<run>-0.<run>-workers:7470`):
    /// worker index 0 listens on 0.0.0.0:PORT and coordinates, the others connect to it.
    #[arg(long, value_name = "HOST:PORT", help_heading = "Distributed runs")]
    pub coordinator: Option<String>,
    /// This process's worker index with --coordinator (default: JOB_COMPLETION_INDEX, which
    /// Kubernetes sets in Indexed Jobs).
    #[arg(
        long,
        value_name = "I",
        env = "JOB_COMPLETION_INDEX",
        help_heading = "Distributed runs"
    )]
    pub worker_index: Option<u32>,
    /// Seconds every worker has to connect to the coordinator (and to prepare each row).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = coebench_runner::distributed::DEFAULT_RENDEZVOUS_SECONDS,
        help_heading = "Distributed runs"
    )]
    pub rendezvous_timeout: u64,
    /// Local addresses the client's connections bind to, in turn: a comma-separated list, or
    /// an IPv4 range such as 127.0.0.2-127.0.0.9 (every 127.x.y.z is the loopback on Linux).
    /// One source address reaches one endpoint address over at most the ephemeral port range
    /// (about 28,000 connections); the workers of a run split the list. Default: the kernel
    /// chooses.
    #[arg(long, value_name = "ADDRESSES", help_heading = "Distributed runs")]
    pub source_addresses: Option<SourceAddresses>,
}

/// `coebench worker` arguments (started by `coebench run --workers N` on one machine).
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The coordinator's address.
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: String,
    /// This worker's index, 1 to N-1.
    #[arg(long, value_name = "I")]
    pub index: u32,
    /// Seconds to keep trying to reach the coordinator.
    #[arg(long, value_name = "SECONDS", default_value_t = coebench_runner::distributed::DEFAULT_RENDEZVOUS_SECONDS)]
    pub rendezvous_timeout: u64,
    /// The run's source addresses, all of them (this worker binds to its share).
    #[arg(long, value_name = "ADDRESSES")]
    pub source_addresses: Option<SourceAddresses>,
}

/// `coebench report` arguments.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run's folder (`<output_files_dir>/<run name>/`, holding run.json).
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// A baseline run's folder: the report gains a comparison with it (as `coebench compare`).
    #[arg(long, value_name = "RUN_DIR")]
    pub baseline: Option<PathBuf>,
    /// Where to write the report (default: report.html in the run's folder).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `coebench compare` arguments.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline run's folder (`<output_files_dir>/<run name>/`, holding run.json).
    #[arg(value_name = "BASELINE")]
    pub baseline: PathBuf,
    /// The candidate run's folder.
    #[arg(value_name = "CANDIDATE")]
    pub candidate: PathBuf,
    /// Also write the comparison as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The largest regression allowed for a metric (ttft, e2e, tokens_per_s), relative, absolute
    /// (seconds or tokens/s) or both: `ttft=10%`, `e2e=0.05`, `ttft=10%,0.02`. Both bounds set
    /// must be exceeded. Repeatable; default 5% for every metric.
    #[arg(long = "max-regression", value_name = "METRIC=LIMIT")]
    pub max_regression: Vec<String>,
    /// Coverage of the confidence intervals.
    #[arg(long, default_value_t = 0.95, value_name = "LEVEL")]
    pub confidence: f64,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub resamples: usize,
    /// Seed of the bootstrap (the same seed gives the same intervals).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seed: u64,
}

/// `coebench simulate` arguments.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Simulator config (default: the built-in example bundle).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Append a ground-truth record per request to this JSON-lines file.
    #[arg(long, value_name = "FILE")]
    pub truth_log: Option<PathBuf>,
    /// Seed of the simulator's random choices (overrides the config's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Serve HTTPS with a self-signed certificate generated at start, valid for localhost,
    /// 127.0.0.1, ::1 and every --tls-name (clients trust it through --tls-cert-out).
    #[arg(long, help_heading = "HTTPS")]
    pub tls: bool,
    /// With --tls: a further DNS name or IP address of the generated certificate (repeatable).
    #[arg(long, value_name = "NAME", requires = "tls", help_heading = "HTTPS")]
    pub tls_name: Vec<String>,
    /// With --tls: write the generated certificate (PEM) here, for clients to trust (coebench
    /// run --ca-certificate FILE, plan endpoint.caCertificate, SSL_CERT_FILE, curl --cacert).
    #[arg(long, value_name = "FILE", requires = "tls", help_heading = "HTTPS")]
    pub tls_cert_out: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM) instead of a generated one.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls",
        help_heading = "HTTPS"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        help_heading = "HTTPS"
    )]
    pub tls_key: Option<PathBuf>,
    /// Bind with SO_REUSEPORT, so several `coebench simulate` processes can listen on one port
    /// and the kernel spreads connections between them: a load past one process's open-file
    /// limit or core. Give each its own --truth-log.
    #[arg(long)]
    pub reuse_port: bool,
}

/// `--api` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApiArg {
    /// SambaNova Cloud.
    Sncloud,
    /// SambaStudio.
    Sambastudio,
    /// An OpenAI-compatible server.
    Openai,
    /// The embedded simulator.
    Simulator,
}

impl From<ApiArg> for ApiKind {
    fn from(api: ApiArg) -> Self {
        match api {
            ApiArg::Sncloud => ApiKind::Sncloud,
            ApiArg::Sambastudio => ApiKind::Sambastudio,
            ApiArg::Openai => ApiKind::Openai,
            ApiArg::Simulator => ApiKind::Simulator,
        }
    }
}

/// `--qps-distribution` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QpsDistributionArg {
    /// Evenly spaced.
    Constant,
    /// Gaps uniform on [0, 2/qps].
    Uniform,
    /// Poisson arrivals.
    Exponential,
}

impl From<QpsDistributionArg> for QpsDistribution {
    fn from(d: QpsDistributionArg) -> Self {
        match d {
            QpsDistributionArg::Constant => QpsDistribution::Constant,
            QpsDistributionArg::Uniform => QpsDistribution::Uniform,
            QpsDistributionArg::Exponential => QpsDistribution::Exponential,
        }
    }
}

/// `--consolidated-file-names` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsolidatedFileNamesArg {
    /// consolidated_results_<run>.xlsx, .csv, .json.
    Seed,
    /// <run>.xlsx, .csv, .json, as the kit's latest consolidator names them.
    Kit,
    /// The seed's files, plus the workbook as <run>.xlsx.
    Both,
}

impl From<ConsolidatedFileNamesArg> for ConsolidatedFileNames {
    fn from(names: ConsolidatedFileNamesArg) -> Self {
        match names {
            ConsolidatedFileNamesArg::Seed => ConsolidatedFileNames::Seed,
            ConsolidatedFileNamesArg::Kit => ConsolidatedFileNames::Kit,
            ConsolidatedFileNamesArg::Both => ConsolidatedFileNames::Both,
        }
    }
}

/// `--image-size` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImageSizeArg {
    /// 500 x 500 px.
    Small,
    /// 1000 x 1000 px.
    Medium,
    /// 2000 x 2000 px.
    Large,
}

impl From<ImageSizeArg> for ImageSize {
    fn from(s: ImageSizeArg) -> Self {
        match s {
            ImageSizeArg::Small => ImageSize::Small,
            ImageSizeArg::Medium => ImageSize::Medium,
            ImageSizeArg::Large => ImageSize::Large,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_and_plan_and_row_flags_exclude_each_other() {
        assert!(
            Cli::try_parse_from(["coebench", "run", "--config", "c.yaml", "--plan", "p.yaml"])
                .is_err()
        );
        assert!(
            Cli::try_parse_from(["coebench", "run", "--plan", "p.yaml", "--model", "m"]).is_err()
        );
        assert!(
            Cli::try_parse_from([
                "coebench",
                "run",
                "--model",
                "m",
                "--concurrency",
                "2",
                "--qps",
                "1"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "coebench",
                "run",
                "--model",
                "m",
                "--qps-distribution",
                "uniform"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "coebench",
                "run",
                "--model",
                "m",
                "--qps",
                "2",
                "--qps-distribution",
                "uniform"
            ])
            .is_ok()
        );
    }
}
