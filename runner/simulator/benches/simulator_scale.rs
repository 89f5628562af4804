//! Scale of the endpoint simulator: N concurrent streaming requests over loopback, and the
//! simulator's own timing error (lag of token events behind their schedule).
//!
//!     cargo bench -p coebench-simulator --bench simulator_scale
//!
//! Knobs (environment variables): `SIM_STREAMS` (default 5000), `SIM_TOKENS` per stream
//! (default 60), `SIM_RATE` decode tokens/s per stream (default 5), `SIM_RAMP_S` seconds over
//! which the streams are opened (default 3), `SIM_RUNS` (default 2; the first is a warm-up
//! reported separately). The client runs in the same process and runtime, so the figures
//! include its CPU. Results are recorded in docs/performance.md.

#![allow(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use coebench_simulator::{Simulator, SimulatorConfig, StartOptions};
use coebench_support::timer;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Raises the open-file limit to its hard maximum (each stream needs two sockets here).
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}

/// The 1-minute load average: other work competing for the same cores.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

/// Milliseconds the hypervisor ran something else while this VM's vCPUs wanted to run (the
/// `steal` column of `/proc/stat`, in 10 ms ticks), summed over all CPUs: pauses no priority
/// inside the VM can prevent.
fn steal_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .next()
        .and_then(|cpu| cpu.split_whitespace().nth(8))
        .and_then(|ticks| ticks.parse::<u64>().ok())
        .map_or(0, |ticks| ticks * 10)
}

/// A thread that sleeps 1 ms at a time, above the bench's own real-time priority when it may,
/// and notes how late it wakes. Under `chrt -f 10` nothing in this process can delay it, so its
/// late wake-ups are pauses of the whole VM (the hypervisor, the kernel), not of the simulator.
struct PauseProbe {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<f64>>,
}

impl PauseProbe {
    fn start() -> PauseProbe {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            // SAFETY: plain syscalls on the calling thread with a valid, initialised argument.
            unsafe {
                let param = libc::sched_param { sched_priority: 20 };
                libc::sched_setscheduler(0, libc::SCHED_FIFO, &param);
            }
            let mut late_us = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                std::thread::sleep(Duration::from_millis(1));
                late_us.push((t.elapsed().as_secs_f64() - 0.001) * 1e6);
            }
            late_us.sort_by(f64::total_cmp);
            late_us
        });
        PauseProbe { stop, thread }
    }

    /// Stops the probe: "p99, max, and wake-ups more than 2 ms late".
    fn finish(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let late = self.thread.join().unwrap_or_default();
        format!(
            "p99 {:.0} µs, max {:.0} µs, {} of {} more than 2 ms late",
            quantile(&late, 0.99),
            late.last().copied().unwrap_or(0.0),
            late.iter().filter(|&&l| l > 2000.0).count(),
            late.len()
        )
    }
}

/// CPU seconds (user + system) used by this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn config(streams: usize, rate: f64) -> SimulatorConfig {
    let executors = streams.div_ceil(4).max(1);
    let yaml = format!(
        r#"
batching_window_ms: 5
executors: {executors}
memory: {{ddr_capacity_gb: 100, hbm_capacity_gb: 50, load_bandwidth_gb_per_s: 1000}}
models:
  - name: scale-model
    weights_gb: 8
    prefill_tokens_per_sec: 1000000
    batch_sizes: [1, 4, 8, 16]
    decode_tokens_per_sec: [{rate}, {rate}, {rate}, {rate}]
    max_sequence_length: 4096
"#
    );
    SimulatorConfig::from_yaml_str(&yaml, "bench").expect("bench config is valid")
}

struct Outcome {
    ok: usize,
    failed: usize,
    tokens: u64,
    peak_open: usize,
}

async fn one_stream(
    addr: SocketAddr,
    body: Bytes,
    open: &AtomicUsize,
    peak: &AtomicUsize,
) -> Result<u64, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::post("/v1/chat/completions")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if response.status() != 200 {
        return Err(format!("status {}", response.status()));
    }
    let now_open = open.fetch_add(1, Ordering::Relaxed) + 1;
    peak.fetch_max(now_open, Ordering::Relaxed);
    let mut body = response.into_body();
    let mut events = 0;
    let result = loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    events += data.windows(11).filter(|w| w == b"\"content\":\"").count() as u64;
                }
            }
            Some(Err(e)) => break Err(e.to_string()),
            None => break Ok(events),
        }
    };
    open.fetch_sub(1, Ordering::Relaxed);
    result
}

async fn run_once(streams: usize, tokens: u32, rate: f64, ramp: Duration) -> Outcome {
    let sim = Simulator::start_with(
        config(streams, rate),
        "127.0.0.1:0".parse().expect("address"),
        StartOptions::default(),
    )
    .await
    .expect("simulator starts");
    let addr = sim.local_addr();
    let body = Bytes::from(
        serde_json::json!({
            "model": "scale-model",
            "messages": [{"role": "user", "content": "Benchmark the simulator at scale."}],
            "max_tokens": tokens, "ignore_eos": true, "stream": true,
            "stream_options": {"include_usage": true},
        })
        .to_string(),
    );
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let total_tokens = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(streams);
    for i in 0..streams {
        let at = start + ramp.mul_f64(i as f64 / streams as f64);
        let (body, open, peak, total_tokens) = (
            body.clone(),
            open.clone(),
            peak.clone(),
            total_tokens.clone(),
        );
        tasks.push(tokio::spawn(async move {
            timer::sleep_until(at).await;
            let r = one_stream(addr, body, &open, &peak).await;
            if let Ok(n) = &r {
                total_tokens.fetch_add(*n, Ordering::Relaxed);
            }
            r
        }));
    }
    let mut ok = 0;
    let mut failed = 0;
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!("first failure: {e}");
    }
    let lag = sim.timer_lag();
    let mut per_request: Vec<f64> = sim
        .truth()
        .iter()
        .filter_map(|t| t.timer_lag_max_us)
        .collect();
    per_request.sort_by(f64::total_cmp);
    let p99_of_max = quantile(&per_request, 0.99);
    let batches: std::collections::HashSet<u64> =
        sim.truth().iter().filter_map(|t| t.batch_id).collect();
    let sizes: Vec<u32> = sim
        .truth()
        .iter()
        .filter_map(|t| t.batch_size_used)
        .collect();
    let mean_batch = sizes.iter().map(|&s| f64::from(s)).sum::<f64>() / sizes.len().max(1) as f64;
    println!(
        "  token events {}: lag mean {:.0} µs, p50 <= {:.0} µs, p99 <= {:.0} µs, p99.9 <= {:.0} µs, max {:.0} µs",
        lag.count, lag.mean_us, lag.p50_us, lag.p99_us, lag.p999_us, lag.max_us
    );
    println!(
        "  per-request max lag: p99 {:.0} µs, max {:.0} µs; {} batches, mean batch_size_used {:.1}",
        p99_of_max,
        per_request.last().copied().unwrap_or(0.0),
        batches.len(),
        mean_batch
    );
    sim.shutdown().await.expect("clean shutdown");
    Outcome {
        ok,
        failed,
        tokens: total_tokens.load(Ordering::Relaxed),
        peak_open: peak.load(Ordering::Relaxed),
    }
}

/// Lateness of `timer::sleep_until` alone: `tasks` tasks each sleeping to 1 ms-spaced deadlines.
async fn timer_precision(tasks: usize, sleeps: usize) -> Vec<f64> {
    let mut handles = Vec::new();
    for k in 0..tasks {
        handles.push(tokio::spawn(async move {
            let mut late = Vec::with_capacity(sleeps);
            let base = Instant::now() + Duration::from_micros(1000 + 37 * k as u64);
            for i in 0..sleeps {
                let at = base + Duration::from_millis(i as u64);
                timer::sleep_until(at).await;
                late.push(at.elapsed().as_secs_f64() * 1e6);
            }
            late
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("timer task"));
    }
    all.sort_by(f64::total_cmp);
    all
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0)
}

fn main() {
    let nofile = raise_nofile();
    let streams: usize = env_or("SIM_STREAMS", 5000);
    let tokens: u32 = env_or("SIM_TOKENS", 60);
    let rate: f64 = env_or("SIM_RATE", 5.0);
    let ramp = Duration::from_secs_f64(env_or("SIM_RAMP_S", 3.0));
    let runs: usize = env_or("SIM_RUNS", 2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    for tasks in [1, 100] {
        let steal0 = steal_ms();
        let late = runtime.block_on(timer_precision(tasks, 1000));
        println!(
            "timer alone, {tasks} task(s) x 1000 sleeps: lateness p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs; host steal {} ms",
            quantile(&late, 0.5),
            quantile(&late, 0.99),
            late.last().copied().unwrap_or(0.0),
            steal_ms() - steal0
        );
    }
    println!(
        "simulator_scale: {streams} streams x {tokens} tokens at {rate} tokens/s, opened over {:?}; open-file limit {nofile}; {} CPUs",
        ramp,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for run in 0..runs {
        let label = if run == 0 && runs > 1 {
            "warm-up"
        } else {
            "measured"
        };
        println!(
            "run {} ({label}), load average {}:",
            run + 1,
            load_average()
        );
        let cpu0 = cpu_seconds();
        let steal0 = steal_ms();
        let probe = PauseProbe::start();
        let t0 = Instant::now();
        let outcome = runtime.block_on(run_once(streams, tokens, rate, ramp));
        let wall = t0.elapsed().as_secs_f64();
        let pauses = probe.finish();
        let cpu = cpu_seconds() - cpu0;
        println!(
            "  {} ok, {} failed, peak {} open streams, {} tokens in {:.2} s ({:.0} token events/s); CPU {:.2} s ({:.0}% of one core); host steal {} ms",
            outcome.ok,
            outcome.failed,
            outcome.peak_open,
            outcome.tokens,
            wall,
            outcome.tokens as f64 / wall,
            cpu,
            cpu / wall * 100.0,
            steal_ms() - steal0
        );
        println!("  pause probe (1 ms sleeps above the bench's priority): {pauses}");
    }
}
