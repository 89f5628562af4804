//! The `coebench` binary as users run it: the README's quick start, input errors, credentials,
//! exit codes, the report file, and `coebench simulate` serving until SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn coebench() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coebench"));
    command
        .current_dir(repo_root())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn,coebench_simulator=info");
    command
}

/// `coebench run` of one row of `num_requests` requests of the simulator's `tiny` model over
/// the OpenAI API (20 tokens in, 4 out), writing under `dir/out`; credentials and URL are the
/// caller's.
fn tiny_openai_run(dir: &Path, num_requests: u32) -> Command {
    let mut command = coebench();
    command
        .args(["run", "--api", "openai", "--model", "tiny"])
        .args([
            "--input-tokens",
            "20",
            "--output-tokens",
            "4",
            "--no-progress",
        ])
        .arg("--num-requests")
        .arg(num_requests.to_string())
        .arg("--output-files-dir")
        .arg(dir.join("out"))
        .arg("--consolidated-results-dir")
        .arg(dir.join("out"));
    command
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Output bytes as text, lossily.
pub(super) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A finished command's exit status and both streams, for assertion messages.
pub(super) fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

#[test]
fn the_readme_quick_start_plan_runs_and_writes_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let output = coebench()
        .args([
            "run",
            "--plan",
            "examples/quickstart.yaml",
            "--run-name",
            "quick",
            "--no-progress",
        ])
        .arg("--output-files-dir")
        .arg(dir.path().join("out"))
        .arg("--consolidated-results-dir")
        .arg(dir.path().join("consolidated"))
        .arg("--report-file")
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    let table_lines = stdout
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .count();
    assert_eq!(table_lines, 5, "{stdout}");
    assert!(
        stdout.contains("consolidated_results_quick.xlsx"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Report (open in a browser):") && stdout.contains("report.html"),
        "{stdout}"
    );
    let run_dir = dir.path().join("out").join("quick");
    let files: Vec<String> = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files
            .iter()
            .filter(|f| f.ends_with("_individual_responses.json"))
            .count(),
        5
    );
    assert_eq!(
        files
            .iter()
            .filter(|f| f.ends_with("_summary.json"))
            .count(),
        5
    );
    assert!(files.contains(&"run.json".to_string()));
    assert!(files.contains(&"report.html".to_string()));
    for ext in ["xlsx", "csv", "json"] {
        assert!(
            dir.path()
                .join("consolidated")
                .join(format!("consolidated_results_quick.{ext}"))
                .exists()
        );
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    assert_eq!(report["outcome"], "succeeded");
    assert_eq!(report["rows"].as_array().unwrap().len(), 5);
}

#[test]
fn validate_reports_every_problem_with_its_line_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("configs.csv"),
        "model_name,input_tokens,output_tokens,num_requests,concurrent_requests,qps,qps_distribution,multimodal_img_size\n\
         m,100,10,4,2,1.5,,\nm,0,10,4,1,,,\nm,100,10,4,,2,gamma,\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "model_configs_path: configs.csv\nllm_api: sncloud\n",
    )
    .unwrap();
    let output = coebench()
        .arg("validate")
        .arg("--config")
        .arg(dir.path().join("config.yaml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("3 problems"), "{stderr}");
    for needle in [
        "line 2, column concurrent_requests, qps",
        "line 3, column input_tokens",
        "line 4, column qps_distribution: unknown distribution \"gamma\"",
    ] {
        assert!(stderr.contains(needle), "{needle} not in {stderr}");
    }
}

#[test]
fn parallel_rows_from_the_command_line_are_checked_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    let zero = coebench()
        .args(["run", "--no-progress", "--plan", "examples/quickstart.yaml"])
        .args(["--parallel-rows", "0", "--output-files-dir"])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(zero.status.code(), Some(2), "{}", describe(&zero));
    assert!(
        text(&zero.stderr).contains("options.parallelRows"),
        "{}",
        describe(&zero)
    );
    assert!(!dir.path().join("out").exists(), "nothing was written");
}

#[test]
fn validate_reads_each_rows_dataset_and_names_its_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prompts.jsonl"),
        "{\"prompt\": \"fine\"}\n{\"prompt\": \"\"}\n",
    )
    .unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        "endpoint: {api: simulator}\n\
         rows:\n  - {model: tiny, inputTokens: 10, outputTokens: 2, numRequests: 2, \
         concurrency: 1, dataset: {path: prompts.jsonl}}\n",
    )
    .unwrap();
    let output = coebench()
        .args(["validate", "--plan"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("prompts.jsonl, line 2: the prompt is empty"),
        "{stderr}"
    );
}

#[test]
fn missing_credentials_stop_before_sending_name_the_variable_and_fill_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let output = coebench()
        .args([
            "run",
            "--api",
            "sncloud",
            "--model",
            "m",
            "--num-requests",
            "1",
            "--no-progress",
        ])
        .arg("--env-file")
        .arg(dir.path().join("no-such.env"))
        .arg("--report-file")
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        text(&output.stderr).contains("SAMBANOVA_API_KEY"),
        "{}",
        describe(&output)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    assert_eq!(report["outcome"], "invalidInput");
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .contains("SAMBANOVA_API_KEY")
    );
}

#[test]
fn an_env_file_supplies_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulate::start(&dir.path().join("sim.yaml"), Some("sk-from-env-file"));
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "OPENAI_BASE_URL=http://{}/v1\nOPENAI_API_KEY=sk-from-env-file\n",
            sim.addr
        ),
    )
    .unwrap();
    let output = tiny_openai_run(dir.path(), 2)
        .args(["--run-name", "envfile"])
        .arg("--env-file")
        .arg(dir.path().join(".env"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    // `tiny` is of no family the kit knows a tokenizer for: the embedded one, with a warning
    // that names the model and the option that fixes it.
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("model \"tiny\": no tokenizer is mapped")
            && stderr.contains("options.tokenizers"),
        "{stderr}"
    );
}

#[test]
fn the_nearest_env_file_is_found_upwards_and_the_environment_wins_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulate::start(&dir.path().join("sim.yaml"), Some("sk-from-environment"));
    // A stale key in the repository's `.env`, a fresh one in the environment: unlike the kit,
    // which loads its `.env` with override, the environment wins.
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "OPENAI_BASE_URL=http://{}/v1\nOPENAI_API_KEY=sk-stale-in-file\n",
            sim.addr
        ),
    )
    .unwrap();
    let work = dir.path().join("benchmarking");
    std::fs::create_dir(&work).unwrap();
    let output = tiny_openai_run(dir.path(), 2)
        .args(["--run-name", "upwards"])
        .current_dir(&work)
        .env("OPENAI_API_KEY", "sk-from-environment")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

#[test]
fn a_rejected_key_exits_3_and_never_prints_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulate::start(&dir.path().join("sim.yaml"), Some("sk-right"));
    let output = tiny_openai_run(dir.path(), 4)
        .args(["--api-key-env", "MY_KEY"])
        .arg("--url")
        .arg(format!("http://{}/v1", sim.addr))
        .env("MY_KEY", "sk-wrong-secret")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(all.contains("rejected the credentials"), "{all}");
    assert!(!all.contains("sk-wrong-secret"), "{all}");
}

#[test]
fn help_and_schema_need_no_network() {
    let help = coebench().args(["run", "--help"]).output().unwrap();
    assert!(help.status.success());
    assert!(text(&help.stdout).contains("--qps-distribution"));
    let schema = coebench().arg("schema").output().unwrap();
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
    assert!(schema["properties"]["rows"].is_object(), "{schema}");
    let bad = coebench()
        .args(["run", "--concurrency", "x"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// A `coebench simulate` process serving a one-model bundle on a free port.
struct Simulate {
    child: Child,
    addr: String,
}

impl Simulate {
    fn start(config: &Path, api_key: Option<&str>) -> Simulate {
        Self::start_with(config, api_key, &[])
    }

    /// [`Simulate::start`] with further `coebench simulate` arguments.
    fn start_with(config: &Path, api_key: Option<&str>, args: &[&std::ffi::OsStr]) -> Simulate {
        let key = api_key
            .map(|k| format!("api_key: {k}\n"))
            .unwrap_or_default();
        std::fs::write(
            config,
            format!(
                "{key}memory: {{ddr_capacity_gb: 10, hbm_capacity_gb: 10, load_bandwidth_gb_per_s: 100}}\n\
                 models:\n  - name: tiny\n    weights_gb: 1\n    prefill_tokens_per_sec: 100000\n\
                 \x20   decode_tokens_per_sec: [2000]\n    max_sequence_length: 1024\n"
            ),
        )
        .unwrap();
        let mut child = coebench()
            .args(["simulate", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            assert!(
                Instant::now() < deadline,
                "the simulator did not say where it listens"
            );
            let line = lines.next().expect("a log line").unwrap();
            if let Some(rest) = line.split("addr=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Simulate { child, addr }
    }
}

impl Drop for Simulate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn simulate_serves_until_sigterm_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Simulate::start(&dir.path().join("sim.yaml"), None);
    let mut stream = TcpStream::connect(&sim.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"tiny\""), "{answer}");
    let killed = Command::new("kill")
        .args(["-TERM", &sim.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = sim.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn validate_checks_rows_against_the_simulators_models() {
    let ok = coebench()
        .args(["validate", "--plan", "examples/quickstart.yaml"])
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));
    let bad = coebench()
        .args([
            "validate",
            "--api",
            "simulator",
            "--model",
            "nope",
            "--input-tokens",
            "10",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
    assert!(
        text(&bad.stderr).contains("does not serve \"nope\""),
        "{}",
        describe(&bad)
    );
}

#[test]
fn simulate_tls_serves_https_that_run_trusts_with_ca_certificate_only() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("sim-cert.pem");
    let sim = Simulate::start_with(
        &dir.path().join("sim.yaml"),
        None,
        &[
            "--tls".as_ref(),
            "--tls-cert-out".as_ref(),
            cert.as_os_str(),
        ],
    );
    let url = format!("https://{}/v1", sim.addr);
    let trusted = tiny_openai_run(&dir.path().join("trusted"), 3)
        .arg("--url")
        .arg(&url)
        .arg("--ca-certificate")
        .arg(&cert)
        .output()
        .unwrap();
    assert_eq!(trusted.status.code(), Some(0), "{}", describe(&trusted));
    let untrusted = tiny_openai_run(&dir.path().join("untrusted"), 2)
        .arg("--url")
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(untrusted.status.code(), Some(4), "{}", describe(&untrusted));

    // A given certificate whose key file is missing stops the simulator, naming the file.
    let bad = coebench()
        .args(["simulate", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(dir.path().join("no-key.pem"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
    let stderr = text(&bad.stderr);
    assert!(
        stderr.contains("no-key.pem") && stderr.contains("--tls-key"),
        "{}",
        describe(&bad)
    );
}
