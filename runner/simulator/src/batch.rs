//! Runs one started batch: paces its decode steps with one high-resolution timer per step
//! (shared by every request of the batch), renders each request's events for the step, applies
//! stream faults, and hands the finished truth record over with the last frame.
//!
//! Timing (model time): every request's first token is at `first_token`; decode step `j`
//! (from 1) is at `first_token + j / decode_rate` and emits one token, or a speculative burst.
//! A request that reaches its length stops; the others go on in lockstep. Frames are handed to
//! the response bodies at their scheduled instant; a stall shifts one stream's later frames.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::context::{Ctx, after};
use super::message::BodyFrame;
use super::message::QueuedRequest;
use super::truth::TruthRecord;
use super::wire::Usage;
use coebench_support::timer;

/// A batch with its schedule fixed by the scheduler.
pub(crate) struct StartedBatch {
    pub id: u64,
    pub executor: u32,
    pub batch_size: u32,
    pub jobs: Vec<QueuedRequest>,
    pub start: Instant,
    pub switching_s: f64,
    pub prefill_s: f64,
    pub ttft_s: f64,
    pub first_token: Instant,
    /// Decode steps per second of each request.
    pub decode_rate: f64,
}

/// Progress of one request of the batch.
struct Progress {
    job: QueuedRequest,
    /// Tokens sent so far.
    sent: u32,
    chunks: u32,
    malformed_sent: bool,
    /// Send times of the first and the latest token.
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    done: bool,
}

impl StartedBatch {
    fn step_at(&self, step: u32) -> Instant {
        after(self.first_token, f64::from(step) / self.decode_rate)
    }
}

/// Runs `batch` to its last step.
pub(crate) async fn run(ctx: Arc<Ctx>, batch: StartedBatch) {
    let requests = batch.jobs.len() as u32;
    let max_steps = batch
        .jobs
        .iter()
        .map(QueuedRequest::steps)
        .max()
        .unwrap_or(0);
    let mut progress: Vec<Progress> = Vec::with_capacity(batch.jobs.len());
    let mut batch = batch;
    for job in std::mem::take(&mut batch.jobs) {
        progress.push(Progress {
            job,
            sent: 0,
            chunks: 0,
            malformed_sent: false,
            first_at: None,
            last_at: None,
            done: false,
        });
    }
    for step in 0..=max_steps {
        let at = batch.step_at(step);
        timer::sleep_until(at).await;
        let mut active = 0;
        for p in progress.iter_mut().filter(|p| !p.done) {
            emit(&ctx, &batch, requests, p, step, at);
            active += usize::from(!p.done);
        }
        if active == 0 {
            break;
        }
    }
}

/// Tokens request `p` emits at `step`.
fn tokens_at(job: &QueuedRequest, step: u32) -> u32 {
    match (step, &job.bursts) {
        (0, _) => 1,
        (s, Some(bursts)) => bursts.get(s as usize - 1).copied().unwrap_or(0),
        (_, None) => 1,
    }
}

fn emit(ctx: &Ctx, batch: &StartedBatch, requests: u32, p: &mut Progress, step: u32, at: Instant) {
    let steps = p.job.steps();
    if step > steps {
        p.done = true;
        return;
    }
    let faults = p.job.faults;
    // A stall shifts every event sent once `after_tokens` tokens are out.
    let send_at = match faults.stall {
        Some((after, pause)) if p.job.stream && p.sent >= after => at + pause,
        _ => at,
    };
    let mut out = Vec::with_capacity(if p.job.stream { 256 } else { 0 });
    if p.job.stream {
        if step == 0 {
            p.job.wire.first_event(&mut out);
        }
        if faults.disconnect_after.is_some_and(|n| p.sent >= n) {
            finish(ctx, batch, requests, p, send_at, out, true);
            return;
        }
        if !p.malformed_sent && faults.malformed_after.is_some_and(|n| p.sent >= n) {
            p.job.wire.malformed_event(&mut out);
            p.malformed_sent = true;
        }
    }
    let n = tokens_at(&p.job, step).min(p.job.tokens - p.sent);
    if p.job.stream && n > 0 {
        p.job.wire.token_event(p.sent, p.sent + n, &mut out);
        p.chunks += 1;
    }
    p.sent += n;
    if n > 0 {
        p.first_at.get_or_insert(send_at);
        p.last_at = Some(send_at);
    }
    if step < steps {
        let frame = BodyFrame::Data {
            bytes: Bytes::from(out),
            at: send_at,
            tokens: n,
        };
        if p.job.stream && p.job.tx.send(frame).is_err() {
            client_gone(ctx, batch, requests, p);
        }
        return;
    }
    // Last step: the stream's trailer, unless a fault cuts or corrupts it first.
    let cut = p.job.stream && faults.disconnect_after.is_some_and(|n| p.sent >= n);
    if p.job.stream
        && !cut
        && !p.malformed_sent
        && faults.malformed_after.is_some_and(|n| p.sent >= n)
    {
        p.job.wire.malformed_event(&mut out);
        p.malformed_sent = true;
    }
    finish(ctx, batch, requests, p, send_at, out, cut);
}

/// Sends the last frame with the completed truth record (an abort when `cut`).
fn finish(
    ctx: &Ctx,
    batch: &StartedBatch,
    requests: u32,
    p: &mut Progress,
    send_at: Instant,
    mut out: Vec<u8>,
    cut: bool,
) {
    p.done = true;
    let usage = usage_of(ctx, batch, &p.job);
    let mut record = complete_record(ctx, batch, requests, p, &usage);
    let frame = if cut {
        // Whatever precedes the cut (tokens of this step) still goes out first.
        if !out.is_empty() {
            let data = BodyFrame::Data {
                bytes: Bytes::from(std::mem::take(&mut out)),
                at: send_at,
                tokens: 0,
            };
            let _ = p.job.tx.send(data);
        }
        BodyFrame::Abort {
            at: send_at,
            record: Box::new(record.clone()),
        }
    } else if p.job.stream {
        p.job.wire.final_events(&usage, &mut out);
        BodyFrame::End {
            bytes: Bytes::from(out),
            at: send_at,
            tokens: 1,
            record: Box::new(record.clone()),
        }
    } else {
        BodyFrame::End {
            bytes: p.job.wire.full_body(&usage),
            at: send_at,
            tokens: 1,
            record: Box::new(record.clone()),
        }
    };
    if p.job.tx.send(frame).is_err() {
        record.client_disconnected = true;
        ctx.truth.push(record);
    }
}

/// The client is gone before the end: record what was sent and stop.
fn client_gone(ctx: &Ctx, batch: &StartedBatch, requests: u32, p: &mut Progress) {
    p.done = true;
    let usage = usage_of(ctx, batch, &p.job);
    let mut record = complete_record(ctx, batch, requests, p, &usage);
    record.client_disconnected = true;
    ctx.truth.push(record);
}

fn complete_record(
    ctx: &Ctx,
    batch: &StartedBatch,
    requests: u32,
    p: &Progress,
    usage: &Usage,
) -> TruthRecord {
    let mut r = p.job.record.clone();
    r.batch_start_s = Some(ctx.rel(batch.start));
    r.queue_wait_s = Some(
        batch
            .start
            .saturating_duration_since(p.job.submitted)
            .as_secs_f64(),
    );
    r.switching_s = Some(batch.switching_s);
    r.prefill_s = Some(batch.prefill_s);
    r.server_ttft_s = Some(usage.ttft_s);
    r.server_e2e_s = Some(usage.total_latency_s);
    if let (Some(first), Some(last_at)) = (p.first_at, p.last_at) {
        r.first_token_s = Some(ctx.rel(first));
        r.first_token_unix_us = Some(ctx.unix_us(first));
        r.last_token_s = Some(ctx.rel(last_at));
        r.last_token_unix_us = Some(ctx.unix_us(last_at));
        r.e2e_s = Some(ctx.rel(last_at) - r.arrival_s);
    }
    r.completion_tokens = Some(p.sent);
    r.chunks = if p.job.stream { p.chunks } else { 1 };
    r.stop_reason = Some(usage.stop_reason.to_string());
    r.batch_id = Some(batch.id);
    r.batch_requests = Some(requests);
    r.batch_size_used = Some(batch.batch_size);
    r.executor = Some(batch.executor);
    r.acceptance_rate = usage.acceptance_rate;
    r
}

/// The server metrics of `job`, from the model schedule (never from measured times).
fn usage_of(ctx: &Ctx, batch: &StartedBatch, job: &QueuedRequest) -> Usage {
    let steps = job.steps();
    let decode_s = f64::from(steps) / batch.decode_rate;
    let after_first = job.tokens.saturating_sub(1);
    let after_first_per_s = if steps > 0 {
        f64::from(after_first) / decode_s
    } else {
        0.0
    };
    // Over the first ten tokens after the first: time of the step that completes them.
    let first_ten = after_first.min(10);
    let after_first_first_ten_per_s = if first_ten == 0 {
        0.0
    } else {
        let mut cumulative = 0;
        let mut step = 0;
        while cumulative < first_ten && step < steps {
            step += 1;
            cumulative += tokens_at(job, step);
        }
        f64::from(first_ten) / (f64::from(step) / batch.decode_rate)
    };
    let acceptance_rate = job.bursts.as_ref().map(|b| {
        if b.is_empty() {
            1.0
        } else {
            f64::from(after_first) / b.len() as f64
        }
    });
    let last = batch.step_at(steps);
    Usage {
        prompt_tokens: job.prompt_tokens,
        completion_tokens: job.tokens,
        ttft_s: batch.ttft_s,
        total_latency_s: batch.ttft_s + decode_s,
        start_unix_s: ctx.unix_s(batch.start),
        end_unix_s: ctx.unix_s(last),
        after_first_per_s,
        after_first_first_ten_per_s,
        batch_size_used: batch.batch_size,
        stop_reason: job.stop_reason,
        acceptance_rate,
    }
}
