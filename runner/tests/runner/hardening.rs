//! The `coebench` binary against hostile servers, hostile inputs, signals and failing disks
//! (issue 13): no key fragment in any output, SIGTERM and SIGINT as a clean stop, no panic on
//! any number, a run that stops at the first failed write, and standard error that is all
//! JSON with `--log-format json`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coebench_test_support::hostile_server::{self, HostileServer, Reply};

use super::cli::{describe, text};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn coebench() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coebench"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    command
}

/// `coebench run` of one `tiny` row over the OpenAI API against `url`, key in `MY_KEY`,
/// writing under `dir/out`, with a report file at `dir/report.json`.
fn openai_run(dir: &Path, url: &str, num_requests: u32, concurrency: u32) -> Command {
    let mut command = coebench();
    command
        .args(["run", "--api", "openai", "--model", "tiny", "--no-progress"])
        .args(["--input-tokens", "20", "--output-tokens", "4"])
        .args(["--api-key-env", "MY_KEY", "--url", url])
        .arg("--num-requests")
        .arg(num_requests.to_string())
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .arg("--output-files-dir")
        .arg(dir.join("out"))
        .arg("--consolidated-results-dir")
        .arg(dir.join("out"))
        .arg("--report-file")
        .arg(dir.join("report.json"));
    command
}

/// Every file under `dir` (recursively) as text, with its path; binary spreadsheets skipped.
fn files_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if path.extension().is_none_or(|e| e != "xlsx") {
            out.push((path.clone(), text(&std::fs::read(&path).unwrap())));
        }
    }
    out
}

/// The single run folder under `dir/out` (the one holding run.json).
fn run_dir(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("out"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("run.json").exists())
        .expect("a run folder with run.json")
}

fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The records of the run's only row.
fn records(dir: &Path) -> Vec<serde_json::Value> {
    let run = run_dir(dir);
    let file = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("_individual_responses.json"))
        .expect("an individual responses file");
    json_file(&file).as_array().unwrap().clone()
}

/// Fails when any 6 consecutive characters of `key` (case-insensitively, also after undoing
/// JSON and URL escapes of `-`) appear in `haystack`.
fn assert_no_fragment(haystack: &str, key: &str, what: &str) {
    let plain = haystack.to_lowercase();
    let unescaped = plain
        .replace("\\\\u002d", "-")
        .replace("\\u002d", "-")
        .replace("%2d", "-");
    let key: Vec<char> = key.to_lowercase().chars().collect();
    for window in key.windows(6) {
        let fragment: String = window.iter().collect();
        assert!(
            !plain.contains(&fragment) && !unescaped.contains(&fragment),
            "{what}: fragment {fragment:?} of the key in:\n{haystack}"
        );
    }
}

fn random_key(rng: &mut StdRng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    let len = rng.random_range(12..40);
    let body: String = (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("sk-{body}")
}

/// Finding 1: a server that echoes the key (plainly, upper-cased, JSON-escaped or
/// URL-encoded) at random places around the point where error messages are cut, and an
/// echoed URL with credentials: no 6-character fragment of the key, and no URL credential,
/// in stdout, stderr, the report file or any file of the run.
#[test]
fn echoed_keys_leave_no_fragment_in_any_output() {
    let mut rng = StdRng::seed_from_u64(1313);
    for case in 0..8 {
        let key = random_key(&mut rng);
        let form = rng.random_range(0..4);
        // The error message is "HTTP 500 Internal Server Error: " + body, cut at 400 bytes:
        // echoes start from well before to just after the cut.
        let at = rng.random_range(330..400);
        let server = HostileServer::start(Arc::new(move |request: &hostile_server::Request| {
            let auth = request.header("authorization").unwrap_or_default();
            let echoed = match form {
                0 => auth.to_string(),
                1 => auth.to_uppercase(),
                2 => auth.replace('-', "\\u002d"),
                _ => auth.replace('-', "%2D"),
            };
            let filler = "x".repeat(at);
            let body = format!(
                "{filler} you sent Authorization: {echoed} to \
                 https://bob:hunter2-pw@h.example/v1?token=tok-0123456789&model=tiny, and more text"
            );
            Reply::status(500, &body)
        }))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let output = openai_run(dir.path(), &server.url("/v1"), 2, 1)
            .env("MY_KEY", &key)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
        let what = format!("case {case} (form {form}, at {at})");
        let mut outputs = vec![
            ("stdout".into(), text(&output.stdout)),
            ("stderr".into(), text(&output.stderr)),
        ];
        outputs.extend(
            files_under(dir.path())
                .into_iter()
                .map(|(p, t)| (p.display().to_string(), t)),
        );
        assert!(outputs.iter().any(|(p, _)| p.ends_with("run.json")));
        for (name, content) in &outputs {
            assert_no_fragment(content, &key, &format!("{what}, {name}"));
            assert!(!content.contains("hunter2"), "{what}, {name}: {content}");
            assert!(
                !content.contains("tok-0123456789"),
                "{what}, {name}: {content}"
            );
        }
        // The error is still there to read, redacted.
        let record = &records(dir.path())[0];
        assert!(
            record["error_msg"].as_str().unwrap().contains("HTTP 500"),
            "{record}"
        );
    }
}

/// Finding 12: a key too short to be a secret (`x`) is not substituted through the server's
/// messages, and the run says it is not treated as secret.
#[test]
fn a_short_key_leaves_messages_intact_and_the_run_says_it_is_not_secret() {
    let server = HostileServer::start(Arc::new(|_: &hostile_server::Request| {
        Reply::status(
            400,
            "the request exceeds the available context size (os error 111)",
        )
    }))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = openai_run(dir.path(), &server.url("/v1"), 1, 1)
        .env("MY_KEY", "x")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    assert!(
        text(&output.stderr).contains("not treated as a secret"),
        "{}",
        describe(&output)
    );
    let message = records(dir.path())[0]["error_msg"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("exceeds the available context size (os error 111)"),
        "{message}"
    );
}

/// A server that starts every stream with two tokens, then stalls until the client goes.
fn stalling_server() -> HostileServer {
    HostileServer::start(Arc::new(|_: &hostile_server::Request| {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                    transfer-encoding: chunked\r\n\r\n";
        let event = |text: &str| {
            let data =
                format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n");
            format!("{:x}\r\n{data}\r\n", data.len())
        };
        Reply::Stall(format!("{head}{}{}", event("one"), event(" two")).into_bytes())
    }))
    .unwrap()
}

/// Sends `signal` (`TERM`, `INT`) to process `pid`.
fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Waits for `child` to exit, at most `limit` (far more than the test needs).
fn wait_for(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `server` has received `n` benchmark requests and their first tokens went out.
fn wait_for_requests(server: &HostileServer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.posts() < n {
        assert!(Instant::now() < deadline, "the run never sent {n} requests");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
}

/// What every clean stop leaves: exit 5 in run.json and the report, the cut-off requests
/// recorded as `interrupted` with what they measured, the unsent ones counted, no spool.
fn assert_clean_stop(dir: &Path, code: Option<i32>, in_flight: usize, planned: u64) {
    assert_eq!(code, Some(5));
    let run = run_dir(dir);
    let manifest = json_file(&run.join("run.json"));
    assert_eq!(manifest["exit"]["code"], 5, "{manifest}");
    assert_eq!(manifest["exit"]["outcome"], "interrupted", "{manifest}");
    assert_eq!(
        json_file(&dir.join("report.json"))["outcome"],
        "interrupted"
    );
    let records = records(dir);
    assert_eq!(records.len(), in_flight, "{records:?}");
    for record in &records {
        assert_eq!(record["error_code"], "interrupted", "{record}");
        assert_eq!(record["num_chunks"], 2, "{record}");
        assert!(record["client_ttft_s"].as_f64().is_some(), "{record}");
    }
    let summary_file = manifest["rows"][0]["summary_file"].as_str().unwrap();
    let summary = json_file(&run.join(summary_file));
    assert_eq!(
        summary["results_num_requests_not_sent"].as_u64(),
        Some(planned - in_flight as u64),
        "{summary}"
    );
    let hidden: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "spool left behind: {hidden:?}");
}

/// Findings 2 and 3: SIGTERM while requests stall stops sending, gives them the grace (1 s
/// here, while the request timeout is 600 s), records them as interrupted and exits 5 with
/// every file written.
#[test]
fn sigterm_is_a_clean_stop_within_the_grace() {
    let server = stalling_server();
    let dir = tempfile::tempdir().unwrap();
    let mut child = openai_run(dir.path(), &server.url("/v1"), 6, 2)
        .env("MY_KEY", "sk-test-0123456789")
        .args(["--stop-grace", "1", "--request-timeout", "600"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_requests(&server, 2);
    send_signal(child.id(), "TERM");
    let code = wait_for(&mut child, Duration::from_secs(120));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("SIGTERM: stopping"), "{stderr}");
    assert_clean_stop(dir.path(), code, 2, 6);
}

/// Finding 3: a second Ctrl-C cuts the requests in flight off at once, though the grace is
/// 300 s, and still writes what finished.
#[test]
fn a_second_sigint_cuts_off_at_once_and_still_writes_the_files() {
    let server = stalling_server();
    let dir = tempfile::tempdir().unwrap();
    let mut child = openai_run(dir.path(), &server.url("/v1"), 6, 2)
        .env("MY_KEY", "sk-test-0123456789")
        .args(["--stop-grace", "300"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_requests(&server, 2);
    send_signal(child.id(), "INT");
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "the grace holds");
    send_signal(child.id(), "INT");
    let code = wait_for(&mut child, Duration::from_secs(120));
    assert_clean_stop(dir.path(), code, 2, 6);
}

/// Finding 2, as in a container: the binary is PID 1 of its own PID namespace, where a signal
/// without a handler is ignored. Skipped (with a note) where namespaces cannot be made.
#[test]
fn as_pid_1_sigterm_is_a_clean_stop() {
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("note: cannot create a PID namespace here; PID 1 case not run");
        return;
    }
    let server = stalling_server();
    let dir = tempfile::tempdir().unwrap();
    let run = openai_run(dir.path(), &server.url("/v1"), 6, 2);
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .arg(run.get_program())
        .args(run.get_args())
        .args(["--stop-grace", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MY_KEY", "sk-test-0123456789")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_requests(&server, 2);
    // The benchmark is unshare's only child, PID 1 inside the namespace.
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children", pid = child.id()))
            .unwrap();
    let init: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1")),
        "{status}"
    );
    send_signal(init, "TERM");
    let code = wait_for(&mut child, Duration::from_secs(120));
    assert_clean_stop(dir.path(), code, 2, 6);
}

/// The exit code of `coebench validate` and `coebench run` (against the in-process simulator)
/// of a kit config with `config_extra` keys and a CSV data line `csv_row`.
fn validate_and_run_kit(config_extra: &str, csv_row: &str) -> (Output, Output) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "model_configs_path: rows.csv\nllm_api: simulator\noutput_files_dir: out\n\
             consolidated_results_dir: out\n{config_extra}"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rows.csv"),
        format!(
            "model_name,input_tokens,output_tokens,num_requests,concurrent_requests,qps,\
             qps_distribution,multimodal_img_size\n{csv_row}\n"
        ),
    )
    .unwrap();
    let validate = coebench()
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let run = coebench()
        .args(["run", "--no-progress", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    (validate, run)
}

/// Finding 4: the values that panicked (exit 101) while `validate` passed them are input
/// errors, every one listed, by `validate` and `run` alike.
#[test]
fn extreme_numbers_are_input_errors_in_validate_and_run() {
    let (validate, run) = validate_and_run_kit(
        "request_timeout: 1e20\ntimeout: 1e300\ntime_delay: 1e300\n",
        "Meta-Llama-3.1-8B-Instruct,20,4,2,,1e-300,exponential,",
    );
    for output in [&validate, &run] {
        assert_eq!(output.status.code(), Some(2), "{}", describe(output));
        let stderr = text(&output.stderr);
        for field in ["request_timeout", "timeout", "time_delay"] {
            assert!(
                stderr.contains(&format!("config.yaml, {field}: ")),
                "{field}: {}",
                describe(output)
            );
        }
        assert!(!stderr.contains("panicked"), "{}", describe(output));
    }
    // The CSV's qps is checked once the config's keys are fixed.
    let (validate, run) =
        validate_and_run_kit("", "Meta-Llama-3.1-8B-Instruct,20,4,2,,1e-300,uniform,");
    for output in [&validate, &run] {
        assert_eq!(output.status.code(), Some(2), "{}", describe(output));
        assert!(
            text(&output.stderr).contains("field qps: 1e-300 is out of range"),
            "{}",
            describe(output)
        );
    }
}

/// Random numbers among the troublesome ones.
fn wild_number(rng: &mut StdRng) -> String {
    const SPECIAL: &[&str] = &[
        "0",
        "-0",
        "-1",
        "-20",
        "1e-300",
        "5e-324",
        "2.2250738585072014e-308",
        "1e308",
        "1.7976931348623157e308",
        "1e20",
        "4294967296",
        "18446744073709551616",
        "NaN",
        "nan",
        "inf",
        "-inf",
        ".inf",
        "0.5",
        "3",
    ];
    if rng.random_bool(0.8) {
        SPECIAL[rng.random_range(0..SPECIAL.len())].to_string()
    } else {
        format!(
            "{}",
            rng.random::<f64>() * 10f64.powi(rng.random_range(-10..12))
        )
    }
}

/// Finding 4's property: random numbers through every numeric field of the CSV, the kit
/// config and the plan file never panic `validate` or `run`: each exits 2 (input error) or
/// runs (0, or 4 when a tiny valid timeout fails every request), and both agree on what is an
/// input error.
#[test]
fn random_numbers_in_every_numeric_field_never_panic() {
    let mut rng = StdRng::seed_from_u64(4);
    let csv_fields = [
        "input_tokens",
        "output_tokens",
        "num_requests",
        "concurrency",
        "qps",
    ];
    let config_fields = [
        "timeout",
        "time_delay",
        "request_timeout",
        "stop_grace",
        "seed",
    ];
    for case in 0..14 {
        let mut csv = ["20", "4", "2", "1", ""].map(str::to_string);
        let mut config = String::new();
        if case % 2 == 0 {
            let field = rng.random_range(0..csv_fields.len());
            csv[field] = wild_number(&mut rng);
            if field == 4 {
                csv[3] = String::new();
            }
        } else {
            let field = config_fields[rng.random_range(0..config_fields.len())];
            config = format!("{field}: {}\n", wild_number(&mut rng));
        }
        let row = format!(
            "Meta-Llama-3.1-8B-Instruct,{},{},{},{},{},,",
            csv[0], csv[1], csv[2], csv[3], csv[4]
        );
        let (validate, run) = validate_and_run_kit(&config, &row);
        for output in [&validate, &run] {
            let code = output.status.code();
            assert!(
                matches!(code, Some(0 | 2 | 4)),
                "case {case}: {config}{row}\n{}",
                describe(output)
            );
        }
        assert_eq!(
            validate.status.code() == Some(2),
            run.status.code() == Some(2),
            "case {case}: validate and run disagree on {config}{row}\n{}\n{}",
            describe(&validate),
            describe(&run)
        );
    }
    let plan_fields = [
        "options: {timeoutSeconds: N}",
        "options: {requestTimeoutSeconds: N}",
        "options: {timeDelaySeconds: N}",
        "options: {stopGraceSeconds: N}",
        "rows: [{model: Meta-Llama-3.1-8B-Instruct, inputTokens: 20, outputTokens: 4, numRequests: 2, qps: N}]",
        "rows: [{model: Meta-Llama-3.1-8B-Instruct, inputTokens: N, outputTokens: 4, numRequests: 2, concurrency: 1}]",
        "rows: [{model: Meta-Llama-3.1-8B-Instruct, inputTokens: 20, outputTokens: 4, numRequests: 2, concurrency: N}]",
        "rows: [{model: Meta-Llama-3.1-8B-Instruct, inputTokens: 20, outputTokens: N, numRequests: 2, concurrency: 1}]",
        "rows: [{model: Meta-Llama-3.1-8B-Instruct, inputTokens: 20, outputTokens: 4, numRequests: N, concurrency: 1}]",
        "rows: [{model: Meta-Llama-3.1-8B-Instruct, inputTokens: 20, outputTokens: 4, numRequests: 2, concurrency: 1, maxSequenceLength: N}]",
        "options: {seed: N}",
    ];
    for (case, template) in plan_fields.iter().cycle().take(22).enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let rows = "rows: [{model: Meta-Llama-3.1-8B-Instruct, inputTokens: 20, outputTokens: 4, numRequests: 2, concurrency: 1}]";
        let field = template.replace('N', &wild_number(&mut rng));
        let body = if field.starts_with("rows") {
            field.clone()
        } else {
            format!("{rows}\n{field}")
        };
        let plan = dir.path().join("plan.yaml");
        std::fs::write(
            &plan,
            format!(
                "endpoint: {{api: simulator}}\n{body}\noutput: {{outputFilesDir: {0}, consolidatedResultsDir: {0}}}\n",
                dir.path().join("out").display()
            ),
        )
        .unwrap();
        for command in ["validate", "run"] {
            let output = coebench()
                .args([command, "--plan"])
                .arg(&plan)
                .arg_if(command == "run", "--no-progress")
                .output()
                .unwrap();
            assert!(
                matches!(output.status.code(), Some(0 | 2 | 4)),
                "plan case {case}: {body}\n{}",
                describe(&output)
            );
        }
    }
}

/// `Command::arg` only when `cond` holds.
trait ArgIf {
    fn arg_if(&mut self, cond: bool, arg: &str) -> &mut Self;
}

impl ArgIf for Command {
    fn arg_if(&mut self, cond: bool, arg: &str) -> &mut Self {
        if cond {
            self.arg(arg);
        }
        self
    }
}

/// A plan of three rows against the in-process simulator writing under `out`: a small row, a
/// row whose records fill a few hundred KiB, and another small row.
fn three_row_plan(dir: &Path, out: &Path) -> PathBuf {
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "endpoint: {{api: simulator}}\nrows:\n\
             - {{model: Meta-Llama-3.1-8B-Instruct, inputTokens: 20, outputTokens: 4, numRequests: 2, concurrency: 1}}\n\
             - {{model: Meta-Llama-3.1-8B-Instruct, inputTokens: 20, outputTokens: 4, numRequests: 400, concurrency: 50}}\n\
             - {{model: Meta-Llama-3.1-8B-Instruct, inputTokens: 20, outputTokens: 4, numRequests: 2, concurrency: 1}}\n\
             output: {{runName: full, outputFilesDir: {0}, consolidatedResultsDir: {0}}}\n",
            out.display()
        ),
    )
    .unwrap();
    plan
}

/// What a run that met a failed write in its second row leaves: exit 1 naming the folder and
/// `os_error`, the first row's files intact, no file listed for the failing row, the third row
/// not run, and no file in the run folder that run.json does not account for.
fn assert_stopped_at_the_failed_write(output: &Output, out: &Path, os_error: &str) {
    assert_eq!(output.status.code(), Some(1), "{}", describe(output));
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(all.contains(os_error), "{}", describe(output));
    assert!(
        all.contains(&out.display().to_string()),
        "{}",
        describe(output)
    );
    let run = out.join("full");
    let manifest = json_file(&run.join("run.json"));
    let rows = manifest["rows"].as_array().unwrap();
    for file in ["summary_file", "individual_responses_file"] {
        let name = rows[0][file].as_str().expect("row 1 lists its files");
        json_file(&run.join(name));
    }
    if manifest["exit"].is_null() {
        // The disk was too full for the last run.json: the one written after row 1 is whole.
        assert_eq!(rows.len(), 1, "{manifest}");
    } else {
        assert_eq!(manifest["exit"]["code"], 1, "{manifest}");
        assert_eq!(rows.len(), 3, "{manifest}");
        for file in ["summary_file", "individual_responses_file"] {
            assert!(rows[1][file].is_null(), "{manifest}");
            assert!(rows[2][file].is_null(), "{manifest}");
        }
        assert!(rows[1]["files_not_written"].is_string(), "{manifest}");
        assert_eq!(rows[2]["outcome"], "not_run", "{manifest}");
    }
    // Only row 1's pair of files: the failing row left no file without its pair.
    let names: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let row_files = names
        .iter()
        .filter(|n| n.ends_with(".json") && *n != "run.json");
    assert_eq!(row_files.count(), 2, "{names:?}");
}

/// Finding 5: writes fail once a file passes 160 KiB (`ulimit -f`: the same failed `write` a
/// full disk gives, for any user). The run stops at the first failed write and keeps what was
/// written before.
#[test]
fn the_first_failed_write_stops_the_run_and_keeps_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let plan = three_row_plan(dir.path(), &out);
    let output = Command::new("bash")
        .arg("-c")
        // Ignore SIGXFSZ so the write fails with EFBIG instead of killing the process.
        .arg("trap '' XFSZ; ulimit -f 160; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_coebench"))
        .args(["run", "--no-progress", "--plan"])
        .arg(&plan)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_stopped_at_the_failed_write(&output, &out, "File too large");
}

/// Unmounts a test's tmpfs when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Finding 5 on a real full disk: the output folder is a 200 KiB tmpfs. Needs the right to
/// mount (root in a sandbox, as here); skipped with a note elsewhere.
#[test]
fn a_full_disk_stops_the_run_and_keeps_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=200k", "tmpfs"])
        .arg(&out)
        .output();
    if !mounted.is_ok_and(|o| o.status.success()) {
        eprintln!("note: cannot mount a tmpfs here; the full-disk case was not run");
        return;
    }
    let _mounted = Mounted(out.clone());
    let plan = three_row_plan(dir.path(), &out);
    let output = coebench()
        .args(["run", "--no-progress", "--plan"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_stopped_at_the_failed_write(&output, &out, "No space left on device");
}

/// Finding 6: `validate` fails, as `run` would, on an output folder that cannot be made and
/// on a missing API key variable; it names the variable and never shows a key.
#[test]
fn validate_checks_folders_and_credentials_as_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "endpoint: {{api: sncloud, apiKeyEnv: MY_KEY}}\nrows: [{{model: m, inputTokens: 20, outputTokens: 4, numRequests: 1, concurrency: 1}}]\n\
             output: {{outputFilesDir: {}, consolidatedResultsDir: {}}}\n",
            blocker.join("out").display(),
            dir.path().join("ok").display()
        ),
    )
    .unwrap();
    let validate = coebench()
        .args(["validate", "--plan"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(validate.status.code(), Some(2), "{}", describe(&validate));
    let stderr = text(&validate.stderr);
    assert!(stderr.contains("MY_KEY"), "{stderr}");
    assert!(stderr.contains("output.outputFilesDir"), "{stderr}");
    assert!(stderr.contains("is a file"), "{stderr}");
    // With the key set, only the folder remains, and the key is not shown.
    let validate = coebench()
        .args(["validate", "--plan"])
        .arg(&plan)
        .env("MY_KEY", "sk-never-shown-123")
        .output()
        .unwrap();
    assert_eq!(validate.status.code(), Some(2), "{}", describe(&validate));
    let all = describe(&validate);
    assert!(
        !all.contains("MY_KEY is not set") && !all.contains("sk-never"),
        "{all}"
    );
    let run = coebench()
        .args(["run", "--no-progress", "--plan"])
        .arg(&plan)
        .env("MY_KEY", "sk-never-shown-123")
        .env("SAMBANOVA_API_BASE", "http://127.0.0.1:9/v1")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2), "{}", describe(&run));
    assert!(
        text(&run.stderr).contains("is a file"),
        "{}",
        describe(&run)
    );
}

/// Finding 11: with `--log-format json`, every line on standard error is a JSON object, for
/// a run that works and for one that fails; results stay on standard output.
#[test]
fn json_logs_make_standard_error_all_json() {
    let dir = tempfile::tempdir().unwrap();
    // The default log filter, which shows the run's progress lines.
    let ok = coebench()
        .env_remove("RUST_LOG")
        .args([
            "--log-format",
            "json",
            "run",
            "--no-progress",
            "--api",
            "simulator",
        ])
        .args([
            "--model",
            "Meta-Llama-3.1-8B-Instruct",
            "--num-requests",
            "2",
        ])
        .args(["--input-tokens", "20", "--output-tokens", "4"])
        .arg("--output-files-dir")
        .arg(dir.path().join("out"))
        .arg("--consolidated-results-dir")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));
    assert!(
        text(&ok.stdout).contains("Per-row files"),
        "{}",
        describe(&ok)
    );
    let failed = coebench()
        .args([
            "--log-format",
            "json",
            "run",
            "--no-progress",
            "--api",
            "sncloud",
        ])
        .args(["--model", "m"])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(2), "{}", describe(&failed));
    for output in [&ok, &failed] {
        let stderr = text(&output.stderr);
        assert!(!stderr.trim().is_empty(), "{}", describe(output));
        for line in stderr.lines() {
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
            assert!(
                parsed.is_ok_and(|v| v.is_object()),
                "not JSON: {line:?}\n{}",
                describe(output)
            );
        }
        assert!(
            !text(&output.stdout).contains("error:"),
            "{}",
            describe(output)
        );
    }
    assert!(text(&failed.stderr).contains("SAMBANOVA_API_KEY"));
}

/// One chat chunk event carrying `text`.
fn content_event(text: &str) -> String {
    format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n")
}

/// Finding 9: a server reporting a negative TTFT and a bare `NaN` latency, its whole stream
/// in one read. The request succeeds, the impossible values are dropped (null) and counted in
/// the record and the summary, and client rates after the first token are null (not
/// measurable), not ~1e8 tokens/s.
#[test]
fn impossible_server_metrics_are_dropped_and_counted_and_one_read_rates_are_null() {
    let server = HostileServer::start(Arc::new(|_: &hostile_server::Request| {
        let body = format!(
            "{}{}{}data: {{\"choices\":[{{\"delta\":{{}},\"finish_reason\":\"stop\"}}],\
             \"usage\":{{\"prompt_tokens\":20,\"completion_tokens\":3,\
             \"time_to_first_token\":-0.5,\"total_latency\":NaN}}}}\n\ndata: [DONE]\n\n",
            content_event("a"),
            content_event(" b"),
            content_event(" c")
        );
        Reply::Bytes(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = openai_run(dir.path(), &server.url("/v1"), 3, 1)
        .env("MY_KEY", "sk-test-0123456789")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    for record in records(dir.path()) {
        assert!(record["error_code"].is_null(), "{record}");
        assert!(record["server_ttft_s"].is_null(), "{record}");
        assert!(record["server_end_to_end_latency_s"].is_null(), "{record}");
        assert_eq!(record["server_impossible_values"], 2, "{record}");
        assert_eq!(record["number_output_tokens"], 3, "{record}");
        assert!(
            record["client_output_token_per_s_per_request"].is_null(),
            "{record}"
        );
        assert!(record["client_ttft_s"].as_f64().is_some(), "{record}");
    }
    let run = run_dir(dir.path());
    let manifest = json_file(&run.join("run.json"));
    let summary = json_file(&run.join(manifest["rows"][0]["summary_file"].as_str().unwrap()));
    assert_eq!(
        summary["results_num_requests_with_impossible_server_metrics"], 3,
        "{summary}"
    );
}

/// Finding 10 (replies): a gzip-compressed reply is named as such, and a body without a
/// length that the server cuts mid-event is a broken stream, not a malformed event.
#[test]
fn compressed_replies_and_streams_cut_mid_event_are_named_for_what_they_are() {
    let gzip = HostileServer::start(Arc::new(|_: &hostile_server::Request| {
        let body = [0x1f_u8, 0x8b, 8, 0, 0, 0, 0, 0];
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        reply.extend_from_slice(&body);
        Reply::Bytes(reply)
    }))
    .unwrap();
    let cut = HostileServer::start(Arc::new(|_: &hostile_server::Request| {
        Reply::Close(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
                 {}data: {{\"choices\":[{{\"delta\":{{\"cont",
                content_event("a")
            )
            .into_bytes(),
        )
    }))
    .unwrap();
    for (server, code, needle) in [
        (
            &gzip,
            "malformed-event",
            "compressed (content-encoding: gzip)",
        ),
        (&cut, "stream-broken", "closed in the middle of an event"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let output = openai_run(dir.path(), &server.url("/v1"), 1, 1)
            .env("MY_KEY", "sk-test-0123456789")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
        let record = &records(dir.path())[0];
        assert_eq!(record["error_code"], code, "{record}");
        assert!(
            record["error_msg"].as_str().unwrap().contains(needle),
            "{record}"
        );
    }
}
