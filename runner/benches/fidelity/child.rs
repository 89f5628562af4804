//! The two child processes of the fidelity bench: the simulator (`FIDELITY_ROLE=sim`) and the
//! coebench client running the real engine (`FIDELITY_ROLE=client`), each pinned to its own core
//! when asked, so the client's CPU time and memory are its own. The orchestrator in
//! `fidelity.rs` starts them and joins their outputs; nothing here computes statistics.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coebench_plan::{ApiKind, EndpointSpec, OutputOptions, Plan, QpsDistribution, Row, RunOptions};
use coebench_runner::client::ClientOptions;
use coebench_runner::engine::load::StopSignal;
use coebench_runner::engine::observer::RunObserver;
use coebench_runner::engine::run::{PlanSource, RunSettings, run_plan};
use coebench_runner::statistics::record::RequestRecord;
use coebench_simulator::{Simulator, SimulatorConfig, StartOptions, TlsSetting};
use serde::{Deserialize, Serialize};

/// What a client child runs: one warm-up row, then the measured row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientJob {
    /// API base of the simulator.
    pub url: String,
    /// The simulator's certificate (PEM file) to trust, over HTTPS.
    pub ca_certificate: Option<String>,
    /// Closed-loop concurrency (when `qps` is `None`).
    pub concurrency: u32,
    /// Open-loop rate, constant gaps.
    pub qps: Option<f64>,
    /// Requests of the measured row.
    pub num_requests: u32,
    /// Requests of the warm-up row (same shape, concurrency at most 50).
    pub warmup_requests: u32,
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Output tokens.
    pub output_tokens: u32,
    /// Pin the process to this CPU.
    pub cpu: Option<usize>,
    /// Tokio worker threads.
    pub workers: usize,
    /// Keep per-request samples (off for the 100,000-request memory run).
    pub keep_requests: bool,
    /// Where the engine writes its files.
    pub out_dir: String,
}

/// One measured request, as the client recorded it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientRequest {
    /// `x-request-id`.
    pub id: String,
    /// Send instant, Unix microseconds (from `start_timestamp`).
    pub start_us: i64,
    /// Client TTFT, seconds.
    pub ttft_s: Option<f64>,
    /// Client end-to-end latency, seconds.
    pub e2e_s: Option<f64>,
    /// Inter-token gaps, seconds.
    pub itl_s: Vec<f64>,
    /// Open-loop dispatch delay, seconds.
    pub dispatch_delay_s: Option<f64>,
    /// Output tokens.
    pub tokens: u64,
    /// Succeeded.
    pub ok: bool,
}

/// What a client child reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientReport {
    /// Measured requests (empty unless `keep_requests`).
    pub requests: Vec<ClientRequest>,
    /// Requests of the measured row that finished, successes and failures.
    pub finished: u64,
    /// Failed requests of the measured row.
    pub failed: u64,
    /// Output tokens received in the measured row.
    pub tokens: u64,
    /// Client CPU seconds from the measured row's start to its last response.
    pub cpu_s: f64,
    /// Wall seconds of the same span.
    pub wall_s: f64,
    /// VmRSS just before the measured row, KiB.
    pub rss_before_kib: u64,
    /// Largest VmRSS seen while every request of the row was in flight, KiB (closed loop).
    pub rss_full_kib: Option<u64>,
    /// VmHWM at the end, KiB.
    pub hwm_kib: u64,
    /// Achieved rate (open loop), from the row summary.
    pub achieved_qps: Option<f64>,
    /// Mean in flight (closed loop), from the row summary.
    pub mean_in_flight: Option<f64>,
    /// Most requests of the measured row in flight at once.
    pub peak_in_flight: u64,
    /// Client health from the row summary.
    pub lag_p99_s: Option<f64>,
    /// Client CPU utilisation from the row summary.
    pub cpu_utilization: Option<f64>,
    /// `client_saturated`.
    pub saturated: bool,
}

/// Pins the calling process (all threads created afterwards) to `cpu`.
#[allow(unsafe_code)]
pub fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("warning: cannot pin to CPU {cpu}");
        }
    }
}

/// A `/proc/self/status` field in KiB.
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs the simulator child: prints `ready <addr>`, serves until stdin closes, prints
/// `lag <json>` and exits. With `FIDELITY_TLS_CERT` it serves HTTPS with a certificate
/// generated at start, written to that file; with `FIDELITY_LISTEN` it listens there with
/// `SO_REUSEPORT` (beside other simulators on the same port).
pub fn run_sim() {
    if let Some(cpu) = std::env::var("FIDELITY_CPU")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        pin_to(cpu);
    }
    coebench_support::sys::raise_open_file_limit();
    let yaml = std::env::var("FIDELITY_SIM_CONFIG").expect("FIDELITY_SIM_CONFIG");
    let truth = std::env::var("FIDELITY_TRUTH").expect("FIDELITY_TRUTH");
    let config = SimulatorConfig::from_yaml_str(&yaml, "fidelity").expect("valid sim config");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fidelity-sim")
        .enable_all()
        .build()
        .expect("runtime");
    // The scale scenario starts several simulators on one port (SO_REUSEPORT).
    let listen = std::env::var("FIDELITY_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());
    let handle = runtime
        .block_on(Simulator::start_with(
            config,
            listen.parse().expect("FIDELITY_LISTEN is an address"),
            StartOptions {
                truth_log: Some(truth.into()),
                keep_truth_in_memory: false,
                shutdown_grace: Duration::from_secs(5),
                record_token_times: true,
                tls: std::env::var_os("FIDELITY_TLS_CERT").map(|cert| TlsSetting::Generated {
                    names: Vec::new(),
                    cert_out: Some(cert.into()),
                }),
                reuse_port: std::env::var_os("FIDELITY_LISTEN").is_some(),
            },
        ))
        .expect("simulator starts");
    println!("ready {}", handle.local_addr());
    std::io::stdout().flush().ok();
    let mut line = String::new();
    while std::io::stdin().lock().read_line(&mut line).unwrap_or(0) > 0 {
        if line.trim() == "stop" {
            break;
        }
        line.clear();
    }
    let lag = handle.timer_lag();
    runtime.block_on(handle.shutdown()).expect("clean shutdown");
    println!("lag {}", serde_json::to_string(&lag).expect("lag json"));
}

/// Collects the measured row's requests and resource samples.
struct Collector {
    measured_row: usize,
    keep: bool,
    target_in_flight: u64,
    requests: Mutex<Vec<ClientRequest>>,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
    tokens: AtomicU64,
    row_start: Mutex<Option<(Instant, f64)>>,
    last_end: Mutex<Option<(Instant, f64)>>,
    rss_before: AtomicU64,
    rss_full: AtomicU64,
    running: AtomicBool,
    done: AtomicBool,
}

impl RunObserver for Collector {
    fn row_started(&self, row_index: usize, _row: &Row, _base: &str) {
        if row_index == self.measured_row {
            self.rss_before
                .store(status_kib("VmRSS:"), Ordering::Relaxed);
            *self.row_start.lock().expect("lock") = Some((Instant::now(), cpu_seconds()));
            self.running.store(true, Ordering::Relaxed);
        }
    }

    fn request_started(&self, row_index: usize) {
        if row_index == self.measured_row {
            let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        }
    }

    fn request_finished(&self, row_index: usize, r: &RequestRecord) {
        if row_index != self.measured_row {
            return;
        }
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.finished.fetch_add(1, Ordering::Relaxed);
        let ok = r.is_success();
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let tokens = r.number_output_tokens.unwrap_or(0);
        self.tokens.fetch_add(tokens, Ordering::Relaxed);
        *self.last_end.lock().expect("lock") = Some((Instant::now(), cpu_seconds()));
        if self.keep {
            let start_us = r
                .start_timestamp
                .as_deref()
                .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                .map_or(0, |t| t.as_microsecond());
            self.requests.lock().expect("lock").push(ClientRequest {
                id: r.request_id.clone(),
                start_us,
                ttft_s: r.client_ttft_s,
                e2e_s: r.client_end_to_end_latency_s,
                itl_s: r.client_inter_token_latencies_s.clone().unwrap_or_default(),
                dispatch_delay_s: r.dispatch_delay_s,
                tokens,
                ok,
            });
        }
    }
}

/// CPU seconds (user + system) of this process.
fn cpu_seconds() -> f64 {
    coebench_support::sys::process_cpu_time().map_or(0.0, |d| d.as_secs_f64())
}

/// Runs the client child: the real engine against the simulator; writes the report as JSON to
/// `FIDELITY_RESULT`.
pub fn run_client() {
    let job: ClientJob =
        serde_json::from_str(&std::env::var("FIDELITY_JOB").expect("FIDELITY_JOB")).expect("job");
    let result_path = std::env::var("FIDELITY_RESULT").expect("FIDELITY_RESULT");
    if let Some(cpu) = job.cpu {
        pin_to(cpu);
    }
    coebench_support::sys::raise_open_file_limit();
    let row = |n: u32, concurrency: u32, qps: Option<f64>| Row {
        model: "fidelity".into(),
        input_tokens: job.input_tokens,
        output_tokens: job.output_tokens,
        num_requests: n,
        concurrency: qps.is_none().then_some(concurrency),
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
    };
    let rows = vec![
        row(job.warmup_requests, job.concurrency.clamp(1, 50), None),
        row(job.num_requests, job.concurrency, job.qps),
    ];
    let plan = Plan {
        endpoint: EndpointSpec {
            api: ApiKind::Openai,
            url: Some(job.url.clone()),
            api_key_env: None,
            simulator: None,
            ca_certificate: job.ca_certificate.clone(),
        },
        rows,
        options: RunOptions {
            seed: 1,
            timeout_seconds: 3600.0,
            request_timeout_seconds: 600.0,
            ..RunOptions::default()
        },
        workers: 1,
        output: OutputOptions {
            run_name: Some("fidelity".into()),
            output_files_dir: Some(format!("{}/out", job.out_dir)),
            consolidated_results_dir: Some(format!("{}/consolidated", job.out_dir)),
            consolidated_file_names: None,
        },
    };
    let collector = Arc::new(Collector {
        measured_row: 1,
        keep: job.keep_requests,
        target_in_flight: u64::from(job.concurrency),
        requests: Mutex::new(Vec::new()),
        in_flight: AtomicU64::new(0),
        peak_in_flight: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        tokens: AtomicU64::new(0),
        row_start: Mutex::new(None),
        last_end: Mutex::new(None),
        rss_before: AtomicU64::new(0),
        rss_full: AtomicU64::new(0),
        running: AtomicBool::new(false),
        done: AtomicBool::new(false),
    });
    let sampler = {
        let c = Arc::clone(&collector);
        std::thread::spawn(move || {
            while !c.done.load(Ordering::Relaxed)
                && (!c.running.load(Ordering::Relaxed) || c.finished.load(Ordering::Relaxed) == 0)
            {
                if c.running.load(Ordering::Relaxed)
                    && job.qps.is_none()
                    && c.in_flight.load(Ordering::Relaxed) >= c.target_in_flight
                {
                    c.rss_full
                        .fetch_max(status_kib("VmRSS:"), Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(job.workers)
        .enable_all()
        .build()
        .expect("runtime");
    let env: HashMap<String, String> = HashMap::new();
    let settings = RunSettings {
        source: PlanSource {
            description: "fidelity bench".into(),
            ..PlanSource::default()
        },
        env: Box::new(move |name| env.get(name).cloned()),
        simulator_truth_log: None,
        client: ClientOptions::default(),
        distribution: None,
    };
    let observer: Arc<dyn RunObserver> = collector.clone();
    let result = runtime
        .block_on(run_plan(
            plan,
            settings,
            observer,
            Arc::new(StopSignal::default()),
        ))
        .expect("the run starts");
    collector.done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let summary = &result.rows[1];
    let (t0, cpu0) = collector
        .row_start
        .lock()
        .expect("lock")
        .unwrap_or((Instant::now(), 0.0));
    let (t1, cpu1) = collector
        .last_end
        .lock()
        .expect("lock")
        .unwrap_or((t0, cpu0));
    let rss_full = collector.rss_full.load(Ordering::Relaxed);
    let report = ClientReport {
        requests: std::mem::take(&mut *collector.requests.lock().expect("lock")),
        finished: collector.finished.load(Ordering::Relaxed),
        failed: collector.failed.load(Ordering::Relaxed),
        tokens: collector.tokens.load(Ordering::Relaxed),
        cpu_s: cpu1 - cpu0,
        wall_s: t1.saturating_duration_since(t0).as_secs_f64(),
        rss_before_kib: collector.rss_before.load(Ordering::Relaxed),
        rss_full_kib: (rss_full > 0).then_some(rss_full),
        hwm_kib: status_kib("VmHWM:"),
        achieved_qps: summary.load_accuracy.achieved_qps,
        mean_in_flight: summary.load_accuracy.mean_in_flight,
        peak_in_flight: collector.peak_in_flight.load(Ordering::Relaxed),
        lag_p99_s: summary.client_health.event_loop_lag_p99_s,
        cpu_utilization: summary.client_health.cpu_utilization,
        saturated: summary.client_health.saturated,
    };
    std::fs::write(
        &result_path,
        serde_json::to_vec(&report).expect("report json"),
    )
    .expect("write the report");
}
