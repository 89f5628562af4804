//! Response bodies: a full body, or a stream fed by the batch runner. A stream yields each frame
//! to hyper no earlier than its scheduled instant, measures how late it was (the simulator's own
//! timer error), and files the request's truth record when the stream ends, is cut, or is
//! dropped because the client left.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame as HttpFrame, SizeHint};
use tokio::sync::mpsc;

use super::context::Ctx;
use super::message::BodyFrame;
use super::truth::{LagAccumulator, TruthRecord};
use coebench_support::timer::{self, Sleep};

/// The error that makes hyper drop a connection mid-body.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamCut {
    /// A `disconnect` fault.
    #[error("stream cut by an injected disconnect fault")]
    Injected,
    /// The simulator is shutting down.
    #[error("stream cut: the simulator is shutting down")]
    Shutdown,
}

/// A response body of the simulator.
pub(crate) enum SimBody {
    /// A complete body.
    Full(Option<Bytes>),
    /// A paced stream.
    Stream(Box<StreamBody>),
}

/// A stream of frames paced by the batch runner.
pub(crate) struct StreamBody {
    ctx: Arc<Ctx>,
    rx: mpsc::UnboundedReceiver<BodyFrame>,
    held: Option<BodyFrame>,
    sleep: Option<Pin<Box<Sleep>>>,
    lag: LagAccumulator,
    /// Record to file once the last bytes have been handed over.
    ending: Option<Box<TruthRecord>>,
    /// Data was handed to hyper since the body last returned `Pending`: hyper may still hold it
    /// unflushed, and drops its buffer when a body fails.
    unflushed: bool,
    done: bool,
}

impl StreamBody {
    pub(crate) fn new(ctx: Arc<Ctx>, rx: mpsc::UnboundedReceiver<BodyFrame>) -> Self {
        let lag = LagAccumulator::new(ctx.record_token_times);
        StreamBody {
            ctx,
            rx,
            held: None,
            sleep: None,
            lag,
            ending: None,
            unflushed: false,
            done: false,
        }
    }

    fn file(&mut self, mut record: Box<TruthRecord>) {
        let ctx = &self.ctx;
        self.lag.write_to(&mut record, |t| ctx.unix_us(t));
        self.ctx.truth.push(*record);
    }

    /// Records the hand-over of a frame scheduled at `at`: its lag, and when it was written.
    fn measure(&mut self, at: Instant, tokens: u32) {
        let now = Instant::now();
        if tokens > 0 {
            let lag = now.saturating_duration_since(at);
            self.lag.add(lag, now);
            self.ctx.lag.record(lag);
        } else {
            self.lag.ended(now);
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = StreamCut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<HttpFrame<Bytes>, StreamCut>>> {
        match self.get_mut() {
            SimBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(HttpFrame::data(b)))),
            SimBody::Stream(stream) => stream.poll_stream(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, SimBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            SimBody::Full(None) => SizeHint::with_exact(0),
            SimBody::Stream(_) => SizeHint::default(),
        }
    }
}

impl StreamBody {
    fn poll_stream(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<HttpFrame<Bytes>, StreamCut>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(record) = self.ending.take() {
            self.done = true;
            self.file(record);
            return Poll::Ready(None);
        }
        let frame = match self.held.take() {
            Some(frame) => frame,
            None => match self.rx.poll_recv(cx) {
                Poll::Ready(Some(frame)) => frame,
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(StreamCut::Shutdown)));
                }
                Poll::Pending => {
                    self.unflushed = false;
                    return Poll::Pending;
                }
            },
        };
        let at = frame.at();
        if Instant::now() < at {
            let sleep = match &mut self.sleep {
                Some(s) if s.deadline() == at => s,
                slot => slot.insert(Box::pin(timer::sleep_until(at))),
            };
            if sleep.as_mut().poll(cx).is_pending() {
                self.held = Some(frame);
                self.unflushed = false;
                return Poll::Pending;
            }
        }
        self.sleep = None;
        match frame {
            BodyFrame::Data { bytes, at, tokens } => {
                self.measure(at, tokens);
                self.unflushed = true;
                Poll::Ready(Some(Ok(HttpFrame::data(bytes))))
            }
            BodyFrame::End {
                bytes,
                at,
                tokens,
                record,
            } => {
                self.measure(at, tokens);
                self.ending = Some(record);
                Poll::Ready(Some(Ok(HttpFrame::data(bytes))))
            }
            BodyFrame::Abort { at, record } if self.unflushed => {
                // Let hyper flush what it holds (it flushes when the body is pending), then cut.
                self.held = Some(BodyFrame::Abort { at, record });
                self.unflushed = false;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            BodyFrame::Abort { record, .. } => {
                self.done = true;
                self.file(record);
                Poll::Ready(Some(Err(StreamCut::Injected)))
            }
        }
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // The client left (or hyper gave up) before the end. A record already handed to us is
        // filed here; otherwise the runner's next send fails and it files the record itself.
        if let Some(record) = self.ending.take() {
            self.file(record);
            return;
        }
        self.rx.close();
        let mut pending = self.held.take();
        loop {
            let frame = match pending.take() {
                Some(f) => f,
                None => match self.rx.try_recv() {
                    Ok(f) => f,
                    Err(_) => break,
                },
            };
            match frame {
                BodyFrame::End { mut record, .. } => {
                    record.client_disconnected = true;
                    self.file(record);
                }
                BodyFrame::Abort { record, .. } => self.file(record),
                BodyFrame::Data { .. } => {}
            }
        }
    }
}
