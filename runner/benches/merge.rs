//! What a distributed run's coordinator pays to gather and merge one large row: records
//! arriving as the wire's JSON messages are parsed, appended to the row's spool and digested
//! (the gather), the row's statistics are computed from the digests (the merge), and the kit's
//! summary and individual-responses files are written from the spool (the files). Never part of
//! the test run.
//!
//!     cargo bench -p coebench-runner --bench merge
//!
//! Knobs: `MERGE_RECORDS` (default 1,000,000), `MERGE_TOKENS` (output tokens per request,
//! default 100), `MERGE_DIR` (where the spool and files go, default `target/merge`; they are
//! deleted at the end). The records are synthetic but made by the engine's own
//! `RequestRecord::from_measurement`: every one has its inter-token latencies, as a real
//! streamed request's does. Results are recorded in docs/performance.md.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coebench_runner::distributed::wire::FromWorker;
use coebench_runner::output::naming;
use coebench_runner::output::row_files::write_row_files;
use coebench_runner::statistics::record::RequestRecord;
use coebench_runner::statistics::record_digest::RecordDigest;
use coebench_runner::statistics::spool::RecordSpool;
use coebench_runner::statistics::summary::RowExecution;
use coebench_test_support::output_fixtures::{Req, base_wall, concurrency_row, record, usage};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// VmHWM of this process, MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A few hundred distinct streamed requests of `tokens` tokens each, to be cycled through.
fn templates(base: Instant, tokens: u64) -> Vec<RequestRecord> {
    (0..512u64)
        .map(|i| {
            let start = i * 7;
            let ttft = 40 + (i * 37) % 200;
            let gap = 8 + i % 20;
            let events = (0..tokens)
                .map(|t| (start + ttft + t * gap, "tok "))
                .collect::<Vec<_>>();
            let end = start + ttft + tokens * gap;
            let req = Req {
                start_ms: start,
                events,
                end_ms: end,
                server: Some(usage(ttft as f64 / 1000.0, tokens)),
                error: None,
            };
            record(base, i as u32, &req)
        })
        .collect()
}

fn main() {
    let n: u32 = env_or("MERGE_RECORDS", 1_000_000);
    let tokens: u64 = env_or("MERGE_TOKENS", 100);
    let dir = std::env::var("MERGE_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/merge"),
        PathBuf::from,
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the bench folder");
    let base = Instant::now();
    let row = concurrency_row("Meta-Llama-3.3-70B-Instruct", 1000, n);
    let templates = templates(base, tokens);
    let rss_before = peak_rss_mib();
    let names = naming::row_names_with_uuid(0, &row, uuid::Uuid::from_u128(7));
    let mut execution = RowExecution::new(0, row.clone(), "merge", names, base, base_wall());
    let spool = Arc::new(RecordSpool::create(&dir, &execution.names.base).expect("spool"));
    let (mut gather, mut wire_bytes) = (Duration::ZERO, 0usize);
    for i in 0..n {
        // What a worker sends: one `Record` message per request (made here, not timed: the
        // workers' cost).
        let mut record = templates[i as usize % templates.len()].clone();
        record.request_idx = i;
        record.request_id = format!("row-0-{i:08}");
        let message = serde_json::to_vec(&FromWorker::Record(Box::new(record))).expect("message");
        wire_bytes += message.len() + 4;
        // What the coordinator does with it (timed).
        let started = Instant::now();
        let Ok(FromWorker::Record(record)) = serde_json::from_slice::<FromWorker>(&message) else {
            panic!("a record message");
        };
        let at = spool.append(&record).expect("append to the spool");
        execution.digests.push(RecordDigest::of(&record, Some(at)));
        gather += started.elapsed();
    }
    let spool_bytes = std::fs::metadata(spool.path()).map_or(0, |m| m.len());
    let rss_gathered = peak_rss_mib();
    execution.spool = Some(spool);
    execution.ended = base + Duration::from_secs(3600);

    let started = Instant::now();
    let result = execution.finish();
    let merge = started.elapsed();
    let started = Instant::now();
    let paths = write_row_files(&dir, &result).expect("write the row's files");
    let files = started.elapsed();
    let file_bytes = std::fs::metadata(&paths.individual_responses).map_or(0, |m| m.len());
    let rss_end = peak_rss_mib();
    println!(
        "gather {:.1} s ({:.0} MB of messages, {:.0} MB/s; spool {:.0} MB) | merge {:.2} s | files {:.1} s (individual responses {:.0} MB, {:.0} MB/s) | total {:.1} s | peak RSS {:.0} MiB before, {:.0} after the gather ({:.0} bytes a record), {:.0} at the end",
        gather.as_secs_f64(),
        wire_bytes as f64 / 1e6,
        wire_bytes as f64 / 1e6 / gather.as_secs_f64(),
        spool_bytes as f64 / 1e6,
        merge.as_secs_f64(),
        files.as_secs_f64(),
        file_bytes as f64 / 1e6,
        file_bytes as f64 / 1e6 / files.as_secs_f64(),
        (gather + merge + files).as_secs_f64(),
        rss_before,
        rss_gathered,
        (rss_gathered - rss_before) * 1024.0 * 1024.0 / f64::from(n),
        rss_end,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
