//! Dynamic batching and executors: groups submitted requests into batches per (model,
//! sequence bucket), assigns ready batches to free executors, charges the HBM switching delay,
//! and computes each batch's schedule (start, first token, decode rate), then hands the batch to
//! the batch runner (`batch.rs`) which paces its tokens.
//!
//! Rules (all in model time, so the schedule is exact and independent of this task's own
//! wake-up latency):
//! - A request joins the oldest not-yet-started batch of its (model, bucket) that has room
//!   (fewer requests than the largest supported batch size), even one already waiting for an
//!   executor; otherwise it opens a new batch, ready `batching_window_ms` after it was submitted.
//! - A batch is ready at the end of its window, or as soon as it is full.
//! - Ready batches start in order of readiness (then creation) on a free executor, preferring
//!   one where the configuration is resident, else the lowest-numbered free one.
//! - `start = max(ready, executor free, last member submitted)`; `batch_size_used` is the
//!   smallest supported size >= the number of requests; `switching` = configuration GB / load
//!   bandwidth if not resident on that executor, else 0; `prefill` = the batch's prompt tokens
//!   / prefill speed; the first token of every request is at `start + switching + prefill`.
//! - The executor is busy until the batch's last token.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::batch::{self, StartedBatch};
use super::context::{Ctx, after};
use super::memory::{ConfigKey, Hbm};
use super::message::QueuedRequest;
use coebench_support::timer;

struct PendingBatch {
    seq: u64,
    model: usize,
    bucket: u32,
    jobs: Vec<QueuedRequest>,
    ready_at: Instant,
}

struct Executor {
    free_at: Instant,
    hbm: Hbm,
}

struct Scheduler {
    ctx: Arc<Ctx>,
    pending: Vec<PendingBatch>,
    executors: Vec<Executor>,
    next_seq: u64,
    next_batch_id: u64,
}

/// Runs the scheduler until every submitter is gone and no batch is pending (or the task is
/// aborted at shutdown).
pub(crate) async fn run(ctx: Arc<Ctx>, mut jobs: mpsc::UnboundedReceiver<QueuedRequest>) {
    let now = Instant::now();
    let executors = (0..ctx.config.executors.max(1))
        .map(|_| Executor {
            free_at: now,
            hbm: Hbm::new(ctx.config.memory.hbm_capacity_gb),
        })
        .collect();
    let mut s = Scheduler {
        ctx,
        pending: Vec::new(),
        executors,
        next_seq: 0,
        next_batch_id: 0,
    };
    let mut open = true;
    while open || !s.pending.is_empty() {
        let wake = s.next_wake();
        tokio::select! {
            job = jobs.recv(), if open => match job {
                Some(job) => s.add(job),
                None => open = false,
            },
            _ = async {
                match wake {
                    Some(at) => timer::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        s.dispatch(Instant::now());
    }
}

impl Scheduler {
    fn add(&mut self, job: QueuedRequest) {
        let model = &self.ctx.config.models[job.model];
        let max = model.max_batch_size() as usize;
        let existing = self
            .pending
            .iter_mut()
            .filter(|b| b.model == job.model && b.bucket == job.bucket && b.jobs.len() < max)
            .min_by_key(|b| b.seq);
        match existing {
            Some(batch) => {
                let submitted = job.submitted;
                batch.jobs.push(job);
                if batch.jobs.len() >= max {
                    batch.ready_at = batch.ready_at.min(submitted);
                }
            }
            None => {
                let ready_at = if max <= 1 {
                    job.submitted
                } else {
                    after(job.submitted, self.ctx.config.batching_window_ms / 1000.0)
                };
                self.pending.push(PendingBatch {
                    seq: self.next_seq,
                    model: job.model,
                    bucket: job.bucket,
                    jobs: vec![job],
                    ready_at,
                });
                self.next_seq += 1;
            }
        }
    }

    /// The earliest moment a batch is ready and an executor free at once.
    fn next_wake(&self) -> Option<Instant> {
        let ready = self.pending.iter().map(|b| b.ready_at).min()?;
        let free = self.executors.iter().map(|e| e.free_at).min()?;
        Some(ready.max(free))
    }

    fn dispatch(&mut self, now: Instant) {
        loop {
            let next = self
                .pending
                .iter()
                .enumerate()
                .filter(|(_, b)| b.ready_at <= now)
                .min_by_key(|(_, b)| (b.ready_at, b.seq))
                .map(|(i, _)| i);
            let Some(index) = next else { return };
            let batch = &self.pending[index];
            let model = &self.ctx.config.models[batch.model];
            let batch_size = model
                .batch_size_for(batch.jobs.len())
                .unwrap_or_else(|| model.max_batch_size());
            let key = ConfigKey {
                model: batch.model,
                bucket: batch.bucket,
                batch_size,
            };
            let free = |e: &&Executor| e.free_at <= now;
            let chosen = self
                .executors
                .iter()
                .position(|e| free(&e) && e.hbm.is_resident(key))
                .or_else(|| self.executors.iter().position(|e| free(&e)));
            let Some(executor) = chosen else { return };
            let batch = self.pending.swap_remove(index);
            self.start(batch, key, executor);
        }
    }

    fn start(&mut self, batch: PendingBatch, key: ConfigKey, executor: usize) {
        let ctx = self.ctx.clone();
        let model = &ctx.config.models[batch.model];
        let exec = &mut self.executors[executor];
        let last_submitted = batch.jobs.iter().map(|j| j.submitted).max();
        let start = last_submitted.map_or(batch.ready_at, |s| s.max(batch.ready_at));
        let start = start.max(exec.free_at);
        let size_gb = model.configuration_gb(key.bucket, key.batch_size);
        let load = exec.hbm.touch(key, size_gb);
        let hbm_used_gb = exec.hbm.used_gb();
        let switching_s = load.loaded_gb / ctx.config.memory.load_bandwidth_gb_per_s;
        let prompt_total: u64 = batch.jobs.iter().map(|j| u64::from(j.prompt_tokens)).sum();
        let prefill_s = prompt_total as f64 / model.prefill_tokens_per_sec;
        let decode_rate = model.decode_speed(key.batch_size).unwrap_or(1.0);
        let max_steps = batch
            .jobs
            .iter()
            .map(QueuedRequest::steps)
            .max()
            .unwrap_or(0);
        let ttft_s = switching_s + prefill_s;
        let first_token = after(start, ttft_s);
        exec.free_at = after(first_token, f64::from(max_steps) / decode_rate);
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        if !load.evicted.is_empty() || load.loaded_gb > 0.0 {
            tracing::debug!(
                batch = id,
                executor,
                model = %model.name,
                bucket = key.bucket,
                batch_size = key.batch_size,
                loaded_gb = load.loaded_gb,
                evicted = load.evicted.len(),
                hbm_used_gb,
                switching_s,
                "configuration loaded into HBM"
            );
        }
        let started = StartedBatch {
            id,
            executor: executor as u32,
            batch_size: key.batch_size,
            jobs: batch.jobs,
            start,
            switching_s,
            prefill_s,
            ttft_s,
            first_token,
            decode_rate,
        };
        tokio::spawn(batch::run(ctx, started));
    }
}
