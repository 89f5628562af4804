//! Shared by the engine tests: a small, fast simulated bundle over real loopback HTTP, plans
//! against it, and runs of the real engine with an injected environment.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use coebench_plan::{ApiKind, EndpointSpec, OutputOptions, Plan, Row, RunOptions};
use coebench_runner::client::ClientOptions;
use coebench_runner::engine::load::StopSignal;
use coebench_runner::engine::observer::{Observers, RunObserver};
use coebench_runner::engine::run::{PlanSource, RunError, RunResult, RunSettings, run_plan};
use coebench_simulator::{Simulator, SimulatorConfig, SimulatorHandle, StartOptions};

/// The API key the test simulator demands.
pub const KEY: &str = "sk-test-0123456789";

/// Two extra models for [`bundle_yaml`] whose answers are outcomes the metrics count: `limited`
/// is rate limited (429 after a burst of 2), `broken` answers every request with a 500.
pub const RATE_LIMITED_AND_BROKEN_MODELS: &str = r#"
  - name: limited
    weights_gb: 1
    prefill_tokens_per_sec: 50000
    decode_tokens_per_sec: [800]
    max_sequence_length: 4096
    faults:
      rate_limit: {requests_per_sec: 0.5, burst: 2}
  - name: broken
    weights_gb: 1
    prefill_tokens_per_sec: 50000
    decode_tokens_per_sec: [800]
    max_sequence_length: 4096
    faults:
      error: {status: 500}
"#;

/// A bundle whose two text experts (50 GB each) never fit the 60 GB HBM together: switching
/// between them costs 50 GB / 250 GB/s = 0.2 s. A vision expert fits beside either.
pub fn bundle_yaml(extra_model_yaml: &str) -> String {
    format!(
        r#"
seed: 3
api_key: {KEY}
batching_window_ms: 2
executors: 1
chat_template_tokens: 10
memory: {{ddr_capacity_gb: 400, hbm_capacity_gb: 60, load_bandwidth_gb_per_s: 250}}
models:
  - name: expert-a
    weights_gb: 50
    prefill_tokens_per_sec: 20000
    batch_sizes: [1, 2, 4, 8]
    decode_tokens_per_sec: [400, 350, 300, 250]
    max_sequence_length: 4096
  - name: expert-b
    weights_gb: 50
    prefill_tokens_per_sec: 25000
    batch_sizes: [1, 2, 4, 8]
    decode_tokens_per_sec: [500, 450, 400, 350]
    max_sequence_length: 4096
  - name: vision
    weights_gb: 5
    prefill_tokens_per_sec: 30000
    batch_sizes: [1, 4]
    decode_tokens_per_sec: [600, 500]
    max_sequence_length: 8192
    vision: {{patch_pixels: 50}}
{extra_model_yaml}
"#
    )
}

/// A simulator on its own runtime (as the engine hosts one), so its work never delays the
/// client's tasks in the test's runtime.
pub struct TestSim {
    handle: Option<SimulatorHandle>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::ops::Deref for TestSim {
    type Target = SimulatorHandle;
    fn deref(&self) -> &SimulatorHandle {
        self.handle.as_ref().unwrap()
    }
}

impl TestSim {
    /// Stops the simulator and its runtime.
    pub async fn shutdown(mut self) -> Result<(), coebench_simulator::SimulatorError> {
        self.handle.take().unwrap().shutdown().await
    }
}

impl Drop for TestSim {
    fn drop(&mut self) {
        drop(self.handle.take());
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Starts a simulator from `yaml` on a free loopback port, on its own one-thread runtime.
pub async fn start_simulator(yaml: &str) -> TestSim {
    start_simulator_with(yaml, StartOptions::default()).await
}

/// [`start_simulator`] with start options (HTTPS, per-token truth times, ...).
pub async fn start_simulator_with(yaml: &str, options: StartOptions) -> TestSim {
    let config = SimulatorConfig::from_yaml_str(yaml, "test bundle").expect("valid test bundle");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let handle = runtime
        .spawn(Simulator::start_with(config, listen, options))
        .await
        .unwrap()
        .expect("simulator starts");
    TestSim {
        handle: Some(handle),
        runtime: Some(runtime),
    }
}

/// A closed-loop row.
pub fn concurrency_row(model: &str, input: u32, output: u32, n: u32, c: u32) -> Row {
    Row {
        model: model.into(),
        input_tokens: input,
        output_tokens: output,
        num_requests: n,
        concurrency: Some(c),
        qps: None,
        qps_distribution: None,
        image_size: None,
        max_sequence_length: None,
        ignore_eos: None,
        min_tokens: None,
        sampling_params: Default::default(),
        dataset: None,
        workers: None,
        objectives: None,
    }
}

/// A plan of `rows` against `sim` as a SambaNova Cloud endpoint, writing under `dir`.
pub fn plan_against(sim: &SimulatorHandle, rows: Vec<Row>, dir: &Path) -> Plan {
    plan_against_url(&sim.base_url(), rows, dir)
}

/// A plan of `rows` against the SambaNova Cloud endpoint at `url`, writing under `dir`.
pub fn plan_against_url(url: &str, rows: Vec<Row>, dir: &Path) -> Plan {
    Plan {
        endpoint: EndpointSpec {
            api: ApiKind::Sncloud,
            url: Some(url.to_string()),
            api_key_env: None,
            simulator: None,
            ca_certificate: None,
        },
        rows,
        options: RunOptions {
            seed: 11,
            ..RunOptions::default()
        },
        workers: 1,
        output: OutputOptions {
            run_name: Some("test-run".into()),
            output_files_dir: Some(dir.join("out").display().to_string()),
            consolidated_results_dir: Some(dir.join("consolidated").display().to_string()),
            consolidated_file_names: None,
        },
    }
}

/// Runs `plan` with the engine, its environment holding only `env`.
pub async fn run_with_env(plan: Plan, env: &[(&str, &str)]) -> Result<RunResult, RunError> {
    run_observed(plan, env, Arc::new(Observers::default())).await
}

/// Runs `plan` with the engine, its environment holding only `env`, reporting to `observer`.
pub async fn run_observed(
    plan: Plan,
    env: &[(&str, &str)],
    observer: Arc<dyn RunObserver>,
) -> Result<RunResult, RunError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let settings = RunSettings {
        source: PlanSource {
            description: "test plan".into(),
            ..PlanSource::default()
        },
        env: Box::new(move |name| env.get(name).cloned()),
        simulator_truth_log: None,
        client: ClientOptions::default(),
        distribution: None,
    };
    run_plan(plan, settings, observer, Arc::new(StopSignal::default())).await
}

/// Runs `plan` with the test key in `SAMBANOVA_API_KEY`.
pub async fn run(plan: Plan) -> RunResult {
    run_with_env(plan, &[("SAMBANOVA_API_KEY", KEY)])
        .await
        .expect("the run starts")
}

/// The per-request records of row `row_index` of a finished run, as JSON objects in file order.
pub fn individual_responses(result: &RunResult, row_index: usize) -> Vec<serde_json::Value> {
    let summary = &result.rows[row_index];
    let path = result.run_dir.join(summary.individual_responses_file());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("individual responses are JSON")
}

/// The p50 of `values` (by sorting; `values` must not be empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
