//! Generator capacity and measurement fidelity: how far coebench's client timestamps are from
//! the simulator's ground truth, how accurately the open loop keeps its schedule, and what the
//! client costs in CPU and memory. Never part of the test run.
//!
//!     cargo bench -p coebench-runner --bench fidelity -- [streams] [max] [open-loop] [https] [memory] [scale]
//!
//! With no scenario named, the first five run; `scale` runs only when named (`scale.rs`: the
//! largest stream count `coebench run --workers N` keeps within 1 ms, several simulators on one
//! port; knobs `FIDELITY_SCALE_STREAMS` (default `20000,50000,100000`),
//! `FIDELITY_SCALE_PER_PROCESS` (connections per process, default 15000),
//! `FIDELITY_SCALE_TOKENS` / `FIDELITY_SCALE_RATE` (default 5 tokens at 0.1 tokens/s: 40 s streams) and
//! `FIDELITY_SCALE_SPANS` (stream durations of arrivals, default 2), `FIDELITY_SCALE_TLS=1`
//! (over HTTPS, each simulator with a certificate generated at start)). `https` runs the `streams` shape over plain HTTP and
//! over HTTPS (the simulator serving a certificate generated at start, the client trusting it
//! through `endpoint.caCertificate`) at `FIDELITY_HTTPS_STREAMS` (default `1000,10000`). Each measured point starts two fresh child processes
//! of this binary: the simulator (release build, truth log with per-token write times) pinned
//! to CPU 1, and the coebench client (the real engine: `run_plan`, one warm-up row, then the
//! measured row) pinned to CPU 0 with a one-worker runtime, so CPU time and peak RSS are the
//! client's own. Prefix with `chrt -f 10` to run both at real-time priority (children inherit
//! it). Knobs: `FIDELITY_REPEATS` (default 3), `FIDELITY_PIN` (default 1), `FIDELITY_STREAMS`
//! (default `1,100,1000,5000`), `FIDELITY_TOKENS` / `FIDELITY_RATE` (stream shape, default 12
//! tokens at 4 tokens/s: 20,000 token events/s at 5,000 streams, within what the simulator
//! paces on one core), `FIDELITY_MAX_STREAMS`, `FIDELITY_MAX_RATES`, `FIDELITY_RATES`
//! (open loop, default `100,1000,2000`), `FIDELITY_OPEN_S` (default 10), `FIDELITY_MEM_STREAMS`
//! (default 2000), `FIDELITY_MEM_RECORDS` (default 100000), `FIDELITY_JSON` (raw results,
//! default `target/fidelity/latest.json`). Results are recorded in docs/performance.md.

#![allow(unsafe_code)]

#[path = "fidelity/child.rs"]
mod child;
#[path = "fidelity/join.rs"]
mod join;
#[path = "fidelity/scale.rs"]
mod scale;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use child::{ClientJob, ClientReport};
use join::{Errors, Quantiles};
use serde::Serialize;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

/// One measured point: a simulator shape and a client job.
#[derive(Debug, Clone, Serialize)]
struct Point {
    scenario: &'static str,
    label: String,
    concurrency: u32,
    qps: Option<f64>,
    num_requests: u32,
    output_tokens: u32,
    decode_rate: f64,
    keep_requests: bool,
    /// Over HTTPS: the simulator serves a certificate generated at start, the client trusts it.
    tls: bool,
}

/// Everything measured in one run of a point.
#[derive(Debug, Clone, Serialize)]
struct RunResult {
    point: Point,
    repeat: usize,
    load_average: String,
    errors: Errors,
    dispatch_us: Quantiles,
    client: ClientReport,
    sim_timer_lag: serde_json::Value,
    cpu_ms_per_1000_tokens: Option<f64>,
    kib_per_in_flight: Option<f64>,
    bytes_per_record: Option<f64>,
}

fn sim_yaml(p: &Point) -> String {
    let executors = (p.concurrency.max(p.qps.map_or(1, |q| q as u32)) / 8).max(8) + 8;
    sim_yaml_for(executors, p.decode_rate)
}

/// The bench's simulator bundle: one model decoding at `r` tokens/s per stream whatever the
/// batch, on `executors` executors, everything resident in HBM.
fn sim_yaml_for(executors: u32, r: f64) -> String {
    format!(
        r#"
api: openai
batching_window_ms: 2
executors: {executors}
memory: {{ddr_capacity_gb: 100, hbm_capacity_gb: 100, load_bandwidth_gb_per_s: 1000}}
models:
  - name: fidelity
    weights_gb: 1
    prefill_tokens_per_sec: 1000000
    batch_sizes: [1, 8, 32]
    decode_tokens_per_sec: [{r}, {r}, {r}]
    max_sequence_length: 4096
"#
    )
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn run_point(p: &Point, repeat: usize, dir: &Path) -> RunResult {
    let pin = env_or("FIDELITY_PIN", 1u8) == 1;
    let run_dir = dir.join(format!("{}-{}-{repeat}", p.scenario, p.label));
    std::fs::create_dir_all(&run_dir).expect("run dir");
    let truth_path = run_dir.join("truth.jsonl");
    let cert_path = run_dir.join("sim-cert.pem");
    let exe = std::env::current_exe().expect("current exe");
    let load = load_average();
    let mut sim = Command::new(&exe);
    if p.tls {
        sim.env("FIDELITY_TLS_CERT", &cert_path);
    }
    let mut sim = sim
        .env("FIDELITY_ROLE", "sim")
        .env("FIDELITY_SIM_CONFIG", sim_yaml(p))
        .env("FIDELITY_TRUTH", &truth_path)
        .env("FIDELITY_CPU", if pin { "1" } else { "" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the simulator child");
    let mut sim_out = BufReader::new(sim.stdout.take().expect("sim stdout"));
    let mut line = String::new();
    sim_out.read_line(&mut line).expect("sim ready line");
    let addr = line
        .trim()
        .strip_prefix("ready ")
        .expect("the simulator says ready")
        .to_string();
    let job = ClientJob {
        url: format!("{}://{addr}/v1", if p.tls { "https" } else { "http" }),
        ca_certificate: p.tls.then(|| cert_path.display().to_string()),
        concurrency: p.concurrency,
        qps: p.qps,
        num_requests: p.num_requests,
        warmup_requests: 50.min(p.num_requests),
        input_tokens: 32,
        output_tokens: p.output_tokens,
        cpu: pin.then_some(0),
        workers: if pin { 1 } else { 2 },
        keep_requests: p.keep_requests,
        out_dir: run_dir.display().to_string(),
    };
    let result_path = run_dir.join("client.json");
    let status = Command::new(&exe)
        .env("FIDELITY_ROLE", "client")
        .env(
            "FIDELITY_JOB",
            serde_json::to_string(&job).expect("job json"),
        )
        .env("FIDELITY_RESULT", &result_path)
        .env("RUST_LOG", "warn")
        .status()
        .expect("run the client child");
    let mut stdin = sim.stdin.take().expect("sim stdin");
    let _ = writeln!(stdin, "stop");
    drop(stdin);
    line.clear();
    let _ = sim_out.read_line(&mut line);
    let sim_timer_lag = line
        .trim()
        .strip_prefix("lag ")
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(serde_json::Value::Null);
    let _ = sim.wait();
    assert!(status.success(), "client child failed: {status}");
    let client: ClientReport =
        serde_json::from_slice(&std::fs::read(&result_path).expect("client report"))
            .expect("client report json");
    let truth = join::read_truth(&truth_path);
    let errors = join::errors(&client.requests, &truth);
    let dispatch_us = join::dispatch(&client.requests);
    let mut client = client;
    let requests = std::mem::take(&mut client.requests);
    let cpu_ms_per_1000_tokens =
        (client.tokens > 0).then(|| client.cpu_s * 1e3 / client.tokens as f64 * 1000.0);
    let kib_per_in_flight = client
        .rss_full_kib
        .map(|full| (full as f64 - client.rss_before_kib as f64) / f64::from(p.concurrency));
    let bytes_per_record = (p.scenario == "memory-records").then(|| {
        (client.hwm_kib as f64 - client.rss_before_kib as f64) * 1024.0 / client.finished as f64
    });
    let _ = std::fs::remove_dir_all(run_dir.join("out"));
    drop(requests);
    RunResult {
        point: p.clone(),
        repeat,
        load_average: load,
        errors,
        dispatch_us,
        client,
        sim_timer_lag,
        cpu_ms_per_1000_tokens,
        kib_per_in_flight,
        bytes_per_record,
    }
}

fn print_run(r: &RunResult) {
    let e = &r.errors;
    let c = &r.client;
    println!(
        "{:>14} {:>8} #{}: ttft err p50 {:>7.0} p99 {:>7.0} | send p50 {:>6.0} p99 {:>6.0} | recv p50 {:>6.0} p99 {:>6.0} | itl p50 {:>5.0} p99 {:>6.0} |abs p99 {:>6.0} | e2e p50 {:>6.0} p99 {:>7.0} µs | dispatch p50 {:>5.0} p99 {:>6.0} µs | sim read p99 {:>5.0} | ok {}/{} unjoined {} | achieved {:?} in-flight {:?} peak {} | cpu {:.2}s {:.1} ms/1k tok | rss {}→{:?}/{} KiB | health lag {:?} cpu {:?} sat {} | load {}",
        r.point.scenario,
        r.point.label,
        r.repeat,
        e.ttft.p50,
        e.ttft.p99,
        e.send_side.p50,
        e.send_side.p99,
        e.receive_side.p50,
        e.receive_side.p99,
        e.itl.p50,
        e.itl.p99,
        e.itl_abs.p99,
        e.e2e.p50,
        e.e2e.p99,
        r.dispatch_us.p50,
        r.dispatch_us.p99,
        e.server_read_delay.p99,
        c.finished - c.failed,
        c.finished,
        e.unjoined,
        c.achieved_qps,
        c.mean_in_flight,
        c.peak_in_flight,
        c.cpu_s,
        r.cpu_ms_per_1000_tokens.unwrap_or(f64::NAN),
        c.rss_before_kib,
        c.rss_full_kib,
        c.hwm_kib,
        c.lag_p99_s.map(|s| (s * 1e6).round()),
        c.cpu_utilization.map(|u| (u * 1000.0).round() / 1000.0),
        c.saturated,
        r.load_average,
    );
}

/// Runs `point` `repeats` times; returns the runs' median p99 TTFT error (µs) and whether any
/// request failed.
fn measure(point: &Point, repeats: usize, dir: &Path, all: &mut Vec<RunResult>) -> (f64, bool) {
    let mut p99s = Vec::new();
    let mut failed = false;
    for repeat in 0..repeats {
        let r = run_point(point, repeat, dir);
        print_run(&r);
        p99s.push(r.errors.ttft.p99);
        failed |= r.client.failed > 0 || r.client.finished < u64::from(point.num_requests);
        all.push(r);
    }
    (Quantiles::of(&mut p99s).p50, failed)
}

/// `n` concurrent streams in steady state: open-loop arrivals, evenly spaced at
/// `n / stream duration` requests per second, so streams start out of phase (as on a shared
/// service) and about `n` are open at once after the first stream's duration; three stream
/// durations of arrivals in all. `FIDELITY_ALIGNED=1` instead starts all `n` at once (closed
/// loop, `2n` requests), the worst case: every stream's tokens then arrive in the same instant.
fn stream_point(scenario: &'static str, n: u32) -> Point {
    let tokens = env_or("FIDELITY_TOKENS", 12u32);
    let rate = env_or("FIDELITY_RATE", 4.0);
    let duration = f64::from(tokens) / rate;
    let aligned = env_or("FIDELITY_ALIGNED", 0u8) == 1;
    let qps = f64::from(n) / duration;
    Point {
        scenario,
        label: format!("c{n}"),
        concurrency: n,
        qps: (!aligned).then_some(qps),
        num_requests: if aligned {
            (2 * n).max(10)
        } else {
            ((qps * duration * 3.0) as u32).max(10)
        },
        output_tokens: tokens,
        decode_rate: rate,
        keep_requests: true,
        tls: false,
    }
}

fn rate_point(scenario: &'static str, qps: f64, requests: u32) -> Point {
    Point {
        scenario,
        label: format!("r{qps}"),
        concurrency: 1,
        qps: Some(qps),
        num_requests: requests,
        output_tokens: 4,
        decode_rate: 200.0,
        keep_requests: true,
        tls: false,
    }
}

fn main() {
    if let Ok(role) = std::env::var("FIDELITY_ROLE") {
        match role.as_str() {
            "sim" => child::run_sim(),
            "client" => child::run_client(),
            other => panic!("unknown FIDELITY_ROLE {other}"),
        }
        return;
    }
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |s: &str| wanted.is_empty() || wanted.iter().any(|w| w == s);
    let named = |s: &str| wanted.iter().any(|w| w == s);
    let repeats: usize = env_or("FIDELITY_REPEATS", 3);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fidelity/runs");
    std::fs::create_dir_all(&dir).expect("output dir");
    let mut all = Vec::new();
    println!(
        "fidelity: {} CPUs, load average {}, repeats {repeats}, pinned {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
        env_or("FIDELITY_PIN", 1u8) == 1
    );
    if wants("streams") {
        for n in env_list::<u32>("FIDELITY_STREAMS", "1,100,1000,5000") {
            measure(&stream_point("streams", n), repeats, &dir, &mut all);
        }
    }
    if wants("max") {
        for n in env_list::<u32>("FIDELITY_MAX_STREAMS", "7500,10000,15000") {
            let (p99, failed) = measure(&stream_point("max-streams", n), repeats, &dir, &mut all);
            if p99 > 1000.0 || failed {
                println!(
                    "max-streams: p99 TTFT error {p99:.0} µs, failures {failed} at {n} streams; stop"
                );
                break;
            }
        }
        for qps in env_list::<f64>("FIDELITY_MAX_RATES", "2000,3000,4000,6000") {
            let p = rate_point("max-rate", qps, (qps * 5.0) as u32);
            let (p99, failed) = measure(&p, repeats, &dir, &mut all);
            if p99 > 1000.0 || failed {
                println!(
                    "max-rate: p99 TTFT error {p99:.0} µs, failures {failed} at {qps} requests/s; stop"
                );
                break;
            }
        }
    }
    if wants("open-loop") {
        let seconds: f64 = env_or("FIDELITY_OPEN_S", 10.0);
        for qps in env_list::<f64>("FIDELITY_RATES", "100,1000,2000") {
            let p = rate_point("open-loop", qps, (qps * seconds) as u32);
            measure(&p, repeats, &dir, &mut all);
        }
    }
    if wants("https") {
        // The same steady-state streams over plain HTTP and over HTTPS, side by side.
        for n in env_list::<u32>("FIDELITY_HTTPS_STREAMS", "1000,10000") {
            measure(&stream_point("http", n), repeats, &dir, &mut all);
            let https = Point {
                tls: true,
                ..stream_point("https", n)
            };
            measure(&https, repeats, &dir, &mut all);
        }
    }
    if wants("memory") {
        let n = env_or("FIDELITY_MEM_STREAMS", 2000u32);
        let inflight = Point {
            scenario: "memory-in-flight",
            label: format!("c{n}"),
            concurrency: n,
            qps: None,
            num_requests: n,
            output_tokens: 40,
            decode_rate: 4.0,
            keep_requests: false,
            tls: false,
        };
        measure(&inflight, repeats, &dir, &mut all);
        let records = env_or("FIDELITY_MEM_RECORDS", 100_000u32);
        let p = Point {
            scenario: "memory-records",
            label: format!("n{records}"),
            concurrency: 100,
            qps: None,
            num_requests: records,
            output_tokens: 8,
            decode_rate: 1000.0,
            keep_requests: false,
            tls: false,
        };
        measure(&p, repeats, &dir, &mut all);
    }
    let mut scaled = Vec::new();
    if named("scale") {
        let per_process = env_or("FIDELITY_SCALE_PER_PROCESS", 15_000u32);
        let tokens = env_or("FIDELITY_SCALE_TOKENS", 5u32);
        let rate = env_or("FIDELITY_SCALE_RATE", 0.1);
        let spans = env_or("FIDELITY_SCALE_SPANS", 2.0);
        let tls = env_or("FIDELITY_SCALE_TLS", 0u8) == 1;
        let exe = std::env::current_exe().expect("current exe");
        let coebench = Path::new(env!("CARGO_BIN_EXE_coebench"));
        for n in env_list::<u32>("FIDELITY_SCALE_STREAMS", "20000,50000,100000") {
            let point = scale::ScalePoint::new(n, per_process, tokens, rate, spans, tls);
            let r = scale::run_point(&point, &exe, coebench, &dir);
            scale::print(&r);
            let within = r.errors.ttft.p99 <= 1000.0 && r.failed == 0 && r.exit_code == Some(0);
            scaled.push(r);
            if !within {
                println!("scale: past 1 ms, a failure, or a failed run at {n} streams; stop");
                break;
            }
        }
    }
    let json_path = std::env::var("FIDELITY_JSON").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fidelity/latest.json"),
        PathBuf::from,
    );
    let doc = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "machine": {
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "cpu_model": cpu_model(),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        },
        "env": std::env::vars().filter(|(k, _)| k.starts_with("FIDELITY_")).collect::<Vec<_>>(),
        "runs": all,
        "scale": scaled,
    });
    std::fs::write(
        &json_path,
        serde_json::to_vec_pretty(&doc).expect("results json"),
    )
    .expect("write results");
    println!("raw results: {}", json_path.display());
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default()
}
