//! The `scale` scenario: how many concurrent streams `coebench run --workers N` keeps within
//! 1 ms of the truth on one machine, and what each process costs.
//!
//! One process cannot hold 100,000 streams here: the open-file limit is per process (20,000 on
//! the machine measured, and it cannot be raised), and one source address reaches one endpoint
//! address over at most the ephemeral port range (about 28,000). So each point runs:
//!
//! - `simulators` simulator children of this binary on **one port** (`SO_REUSEPORT`, the
//!   kernel spreading connections between them), each writing its own truth log;
//! - the real `coebench` binary, `run --workers N --source-addresses 127.0.0.2-…`: the
//!   coordinator starts N-1 worker processes, each binding its connections to its own
//!   loopback address;
//! - a sampler reading every process's CPU time and peak RSS (`/proc/<pid>/stat`, `VmHWM`).
//!
//! The stream shape is the `streams` scenario's (open-loop arrivals evenly spaced at
//! `streams / stream duration` per second, so about `streams` are open at once after one
//! stream duration), at a slow token rate so that the two cores can pace every token: the
//! point measures the client's fidelity at that many open streams, not the simulator's
//! throughput. The errors are joined against the union of the simulators' truth logs exactly as
//! for one process ([`crate::join`]), from the run's own `*_individual_responses.json`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::child::ClientRequest;
use crate::join::{self, Errors, Quantiles};

/// One point of the ladder.
#[derive(Debug, Clone, Serialize)]
pub struct ScalePoint {
    /// Concurrent streams aimed at (steady state).
    pub streams: u32,
    /// Client processes (`--workers`).
    pub workers: u32,
    /// Simulator processes sharing the port.
    pub simulators: u32,
    /// Output tokens per stream.
    pub tokens: u32,
    /// Tokens per second per stream.
    pub rate: f64,
    /// Stream durations of arrivals (requests = `spans * streams`).
    pub spans: f64,
    /// Over HTTPS: each simulator serves a certificate generated at start, the client trusts
    /// them all (one PEM bundle as `endpoint.caCertificate`).
    pub tls: bool,
}

/// What one process used over the point.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessUsage {
    /// `coordinator`, `worker`, or `simulator`.
    pub role: &'static str,
    /// CPU seconds (user + system) until its last sample.
    pub cpu_s: f64,
    /// Peak resident memory, KiB.
    pub hwm_kib: u64,
}

/// Everything measured at one point.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleResult {
    /// The point.
    pub point: ScalePoint,
    /// `/proc/loadavg` at the start.
    pub load_average: String,
    /// The client's exit code.
    pub exit_code: Option<i32>,
    /// Requests in the measured row's file.
    pub requests: usize,
    /// Of them, failed.
    pub failed: usize,
    /// Most requests open at once (from the client's records: start to end).
    pub peak_in_flight: usize,
    /// Timestamp errors against the truth, µs.
    pub errors: Errors,
    /// The same errors over the requests sent after the first stream duration (the ramp,
    /// while every request still opens its connection: a TLS handshake each over HTTPS).
    pub steady_errors: Errors,
    /// Open-loop dispatch delay, µs.
    pub dispatch_us: Quantiles,
    /// Output tokens received.
    pub tokens: u64,
    /// Wall seconds of the whole `coebench run`.
    pub wall_s: f64,
    /// Every process's CPU and memory.
    pub processes: Vec<ProcessUsage>,
    /// The workers whose client was saturated in the measured row (`run.json`).
    pub saturated_workers: Vec<u64>,
    /// The largest event-loop lag p99 of any worker in the measured row, µs.
    pub worst_lag_p99_us: Option<f64>,
    /// The workers' clock offsets in the measured row, µs.
    pub clock_offsets_us: Vec<f64>,
}

impl ScalePoint {
    /// The point for `streams`: enough client and simulator processes that none holds more than
    /// `per_process` connections at the peak (about 1.3 times the steady state).
    pub fn new(
        streams: u32,
        per_process: u32,
        tokens: u32,
        rate: f64,
        spans: f64,
        tls: bool,
    ) -> ScalePoint {
        let peak = (f64::from(streams) * 1.3).ceil() as u32;
        let processes = peak.div_ceil(per_process.max(1)).max(2);
        ScalePoint {
            streams,
            workers: processes,
            simulators: processes,
            tokens,
            rate,
            spans,
            tls,
        }
    }

    /// A stream's length: its first token comes at once (no queue, a fast prefill), the
    /// others one every `1 / rate` seconds.
    fn duration_s(&self) -> f64 {
        f64::from(self.tokens.saturating_sub(1).max(1)) / self.rate
    }

    fn qps(&self) -> f64 {
        f64::from(self.streams) / self.duration_s()
    }

    fn requests(&self) -> u32 {
        (f64::from(self.streams) * self.spans) as u32
    }

    fn sim_yaml(&self) -> String {
        // Every stream its own executor slot: nothing queues, whatever the batches.
        crate::sim_yaml_for(self.streams / self.simulators * 3 / 2 + 64, self.rate)
    }

    /// The plan: a short warm-up row, then the measured open-loop row; over HTTPS trusting
    /// `ca_certificate`.
    fn plan(&self, url: &str, ca_certificate: Option<&Path>, out: &Path) -> serde_json::Value {
        let row = |n: u32, tokens: u32, load: serde_json::Value| {
            let mut row = serde_json::json!({
                "model": "fidelity",
                "inputTokens": 32,
                "outputTokens": tokens,
                "numRequests": n,
            });
            row.as_object_mut()
                .expect("object")
                .extend(load.as_object().expect("object").clone());
            row
        };
        serde_json::json!({
            "endpoint": {
                "api": "openai",
                "url": url,
                "caCertificate": ca_certificate.map(|p| p.display().to_string()),
            },
            "rows": [
                row(200, 1, serde_json::json!({"concurrency": 100})),
                row(self.requests(), self.tokens, serde_json::json!({
                    "qps": self.qps(),
                    "qpsDistribution": "constant",
                })),
            ],
            "options": {
                "seed": 1,
                "timeoutSeconds": 3600.0,
                "requestTimeoutSeconds": 600.0,
            },
            "output": {
                "runName": "scale",
                "outputFilesDir": out.join("out").display().to_string(),
                "consolidatedResultsDir": out.join("consolidated").display().to_string(),
            },
        })
    }
}

/// A started simulator child.
struct Sim {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

fn start_sim(
    exe: &Path,
    yaml: &str,
    truth: &Path,
    listen: &str,
    certificate: Option<&Path>,
) -> (Sim, String) {
    let mut command = Command::new(exe);
    if let Some(certificate) = certificate {
        command.env("FIDELITY_TLS_CERT", certificate);
    }
    let mut child = command
        .env("FIDELITY_ROLE", "sim")
        .env("FIDELITY_SIM_CONFIG", yaml)
        .env("FIDELITY_TRUTH", truth)
        .env("FIDELITY_LISTEN", listen)
        .env("FIDELITY_CPU", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a simulator child");
    let mut out = BufReader::new(child.stdout.take().expect("sim stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("sim ready line");
    let addr = line
        .trim()
        .strip_prefix("ready ")
        .expect("the simulator says ready")
        .to_string();
    (Sim { child, out }, addr)
}

fn stop_sim(mut sim: Sim) {
    if let Some(mut stdin) = sim.child.stdin.take() {
        let _ = writeln!(stdin, "stop");
    }
    let mut line = String::new();
    let _ = sim.out.read_line(&mut line);
    let _ = sim.child.wait();
}

/// CPU seconds and `VmHWM` of `pid`, if it still runs.
fn usage_of(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command's closing parenthesis: state is field 3; utime, stime 14, 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some((ticks / per_second, hwm))
}

/// The process ids of `pid`'s children.
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return children;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    children
}

/// Samples every watched process every 200 ms until `done`, keeping each one's last reading.
fn sample(
    coordinator: u32,
    sims: Vec<u32>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<ProcessUsage>> {
    std::thread::spawn(move || {
        let mut seen: HashMap<u32, ProcessUsage> = HashMap::new();
        let mut read = |pid: u32, role: &'static str| {
            if let Some((cpu_s, hwm_kib)) = usage_of(pid) {
                let entry = seen.entry(pid).or_insert(ProcessUsage {
                    role,
                    cpu_s: 0.0,
                    hwm_kib: 0,
                });
                entry.cpu_s = entry.cpu_s.max(cpu_s);
                entry.hwm_kib = entry.hwm_kib.max(hwm_kib);
            }
        };
        while !done.load(Ordering::Relaxed) {
            read(coordinator, "coordinator");
            for worker in children_of(coordinator) {
                read(worker, "worker");
            }
            for &sim in &sims {
                read(sim, "simulator");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut usage: Vec<(u32, ProcessUsage)> = seen.into_iter().collect();
        usage.sort_by_key(|(pid, u)| (u.role, *pid));
        usage.into_iter().map(|(_, u)| u).collect()
    })
}

/// The measured row's requests, from the run's files.
fn measured_requests(out: &Path) -> (Vec<ClientRequest>, serde_json::Value) {
    let run_dir = out.join("out").join("scale");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("run.json")).expect("run.json"))
            .expect("run.json is JSON");
    let file = manifest["rows"][1]["individual_responses_file"]
        .as_str()
        .expect("the measured row's file");
    let records: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(run_dir.join(file)).expect("responses file"))
            .expect("responses JSON");
    let requests = records
        .iter()
        .map(|r| ClientRequest {
            id: r["request_id"].as_str().unwrap_or_default().to_string(),
            start_us: r["start_timestamp"]
                .as_str()
                .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                .map_or(0, |t| t.as_microsecond()),
            ttft_s: r["client_ttft_s"].as_f64(),
            e2e_s: r["client_end_to_end_latency_s"].as_f64(),
            itl_s: r["client_inter_token_latencies_s"]
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
                .unwrap_or_default(),
            dispatch_delay_s: r["dispatch_delay_s"].as_f64(),
            tokens: r["number_output_tokens"].as_u64().unwrap_or(0),
            ok: r["error_code"].is_null(),
        })
        .collect();
    (requests, manifest)
}

/// Most requests open at once, from their starts and end-to-end latencies.
fn peak_in_flight(requests: &[ClientRequest]) -> usize {
    let mut events: Vec<(i64, i32)> = Vec::with_capacity(requests.len() * 2);
    for r in requests {
        events.push((r.start_us, 1));
        let e2e = r.e2e_s.unwrap_or(0.0);
        events.push((r.start_us + (e2e * 1e6) as i64, -1));
    }
    events.sort_unstable();
    let (mut open, mut peak) = (0i64, 0i64);
    for (_, delta) in events {
        open += i64::from(delta);
        peak = peak.max(open);
    }
    peak as usize
}

/// Runs one point: the simulators, the distributed client, the join.
pub fn run_point(p: &ScalePoint, exe: &Path, coebench: &Path, dir: &Path) -> ScaleResult {
    let run_dir = dir.join(format!(
        "scale-c{}{}",
        p.streams,
        if p.tls { "-tls" } else { "" }
    ));
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).expect("run dir");
    let load_average = crate::load_average();
    let yaml = p.sim_yaml();
    let certificate = |i: u32| p.tls.then(|| run_dir.join(format!("cert-{i}.pem")));
    let truth = |i: u32| run_dir.join(format!("truth-{i}.jsonl"));
    let (first, addr) = start_sim(
        exe,
        &yaml,
        &truth(0),
        "127.0.0.1:0",
        certificate(0).as_deref(),
    );
    let mut sims = vec![first];
    for i in 1..p.simulators {
        let (sim, _) = start_sim(exe, &yaml, &truth(i), &addr, certificate(i).as_deref());
        sims.push(sim);
    }
    // Every simulator generated its own certificate: the client trusts them all.
    let bundle = p.tls.then(|| {
        let bundle = run_dir.join("ca-bundle.pem");
        let pems: Vec<String> = (0..p.simulators)
            .filter_map(certificate)
            .map(|path| std::fs::read_to_string(path).expect("a simulator's certificate"))
            .collect();
        std::fs::write(&bundle, pems.concat()).expect("write the bundle");
        bundle
    });
    let scheme = if p.tls { "https" } else { "http" };
    let plan = p.plan(
        &format!("{scheme}://{addr}/v1"),
        bundle.as_deref(),
        &run_dir,
    );
    let plan_path = run_dir.join("plan.json");
    std::fs::write(&plan_path, serde_json::to_vec_pretty(&plan).expect("plan"))
        .expect("write the plan");
    let last = 1 + p.workers.min(254);
    let started = Instant::now();
    let mut client = Command::new(coebench)
        .args(["run", "--no-progress", "--plan"])
        .arg(&plan_path)
        .args(["--workers", &p.workers.to_string()])
        .args(["--source-addresses", &format!("127.0.0.2-127.0.0.{last}")])
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(run_dir.join("coebench.out")).expect("stdout file"))
        .stderr(std::fs::File::create(run_dir.join("coebench.err")).expect("stderr file"))
        .spawn()
        .expect("start coebench");
    let done = Arc::new(AtomicBool::new(false));
    let sim_pids = sims.iter().map(|s| s.child.id()).collect();
    let sampler = sample(client.id(), sim_pids, Arc::clone(&done));
    let status = client.wait().expect("wait for coebench");
    let wall_s = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let processes = sampler.join().expect("sampler");
    for sim in sims {
        stop_sim(sim);
    }
    let (requests, manifest) = measured_requests(&run_dir);
    let mut truth = HashMap::new();
    for i in 0..p.simulators {
        truth.extend(join::read_truth(&run_dir.join(format!("truth-{i}.jsonl"))));
    }
    let errors = join::errors(&requests, &truth);
    let first = requests.iter().map(|r| r.start_us).min().unwrap_or(0);
    let ramp_end = first + (p.duration_s() * 1e6) as i64;
    let steady: Vec<ClientRequest> = requests
        .iter()
        .filter(|r| r.start_us >= ramp_end)
        .cloned()
        .collect();
    let steady_errors = join::errors(&steady, &truth);
    let shares: Vec<&serde_json::Value> = manifest["workers"]["rows"]
        .as_array()
        .map(|rows| rows.iter().filter(|s| s["row_index"] == 1).collect())
        .unwrap_or_default();
    let result = ScaleResult {
        point: p.clone(),
        load_average,
        exit_code: status.code(),
        requests: requests.len(),
        failed: requests.iter().filter(|r| !r.ok).count(),
        peak_in_flight: peak_in_flight(&requests),
        dispatch_us: join::dispatch(&requests),
        tokens: requests.iter().map(|r| r.tokens).sum(),
        errors,
        steady_errors,
        wall_s,
        processes,
        saturated_workers: shares
            .iter()
            .filter(|s| s["client_saturated"] == true)
            .filter_map(|s| s["worker"].as_u64())
            .collect(),
        worst_lag_p99_us: shares
            .iter()
            .filter_map(|s| s["event_loop_lag_p99_s"].as_f64())
            .map(|s| s * 1e6)
            .reduce(f64::max),
        clock_offsets_us: shares
            .iter()
            .filter_map(|s| s["clock_offset_s"].as_f64())
            .map(|s| s * 1e6)
            .collect(),
    };
    // The point's files are large (every request twice); the results keep what matters.
    let _ = std::fs::remove_dir_all(run_dir.join("out"));
    result
}

/// Prints one point's line.
pub fn print(r: &ScaleResult) {
    let e = &r.errors;
    let cpu = |role: &str| -> (f64, u64, usize) {
        let of: Vec<&ProcessUsage> = r.processes.iter().filter(|u| u.role == role).collect();
        let cpu = of.iter().map(|u| u.cpu_s).fold(0.0, f64::max);
        let hwm = of.iter().map(|u| u.hwm_kib).max().unwrap_or(0);
        (cpu, hwm, of.len())
    };
    let (coord_cpu, coord_hwm, _) = cpu("coordinator");
    let (worker_cpu, worker_hwm, workers) = cpu("worker");
    let (sim_cpu, sim_hwm, sims) = cpu("simulator");
    println!(
        "scale c{}{} ({} workers, {} sims): exit {:?} | ok {}/{} peak in flight {} | ttft err p50 {:.0} p99 {:.0} max {:.0} (after the ramp: p99 {:.0} of {}) | send p99 {:.0} recv p99 {:.0} | itl p99 {:.0} abs p99 {:.0} | e2e p99 {:.0} µs | unjoined {} | dispatch p50 {:.0} p99 {:.0} µs | coordinator {:.1} s {} KiB, worker max {:.1} s {} KiB ({workers}), sim max {:.1} s {} KiB ({sims}) | saturated {:?} lag p99 max {:?} µs | offsets {:?} µs | {:.0} s | load {}",
        r.point.streams,
        if r.point.tls { " https" } else { "" },
        r.point.workers,
        r.point.simulators,
        r.exit_code,
        r.requests - r.failed,
        r.requests,
        r.peak_in_flight,
        e.ttft.p50,
        e.ttft.p99,
        e.ttft.max,
        r.steady_errors.ttft.p99,
        r.steady_errors.ttft.n,
        e.send_side.p99,
        e.receive_side.p99,
        e.itl.p99,
        e.itl_abs.p99,
        e.e2e.p99,
        e.unjoined,
        r.dispatch_us.p50,
        r.dispatch_us.p99,
        coord_cpu,
        coord_hwm,
        worker_cpu,
        worker_hwm,
        sim_cpu,
        sim_hwm,
        r.saturated_workers,
        r.worst_lag_p99_us.map(f64::round),
        r.clock_offsets_us
            .iter()
            .map(|o| o.round())
            .collect::<Vec<_>>(),
        r.wall_s,
        r.load_average,
    );
}
