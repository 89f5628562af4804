//! The messages between the simulator's tasks: the server hands the scheduler a
//! [`QueuedRequest`]; the batch runner hands the request's response body its [`BodyFrame`]s.
//! They live here, below the tasks that exchange them, so server, scheduler, batch runner and
//! body depend on this module and not on each other.

use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::faults::StreamFaults;
use super::truth::TruthRecord;
use super::wire::ResponseRenderer;

/// A validated request waiting for a batch.
pub(crate) struct QueuedRequest {
    pub model: usize,
    pub bucket: u32,
    pub prompt_tokens: u32,
    /// When it joined the batching queue.
    pub submitted: Instant,
    /// Tokens to generate (at least 1).
    pub tokens: u32,
    /// `stop` or `length`.
    pub stop_reason: &'static str,
    /// Speculative models: tokens emitted by each decode step after the first token.
    pub bursts: Option<Vec<u32>>,
    pub stream: bool,
    pub faults: StreamFaults,
    pub wire: ResponseRenderer,
    pub tx: mpsc::UnboundedSender<BodyFrame>,
    pub record: TruthRecord,
}

impl QueuedRequest {
    /// Decode steps after the first token.
    pub(crate) fn steps(&self) -> u32 {
        match &self.bursts {
            Some(b) => b.len() as u32,
            None => self.tokens.saturating_sub(1),
        }
    }
}

/// What the batch runner sends a response body.
pub(crate) enum BodyFrame {
    /// Bytes to send at `at`, carrying `tokens` generated tokens.
    Data {
        bytes: Bytes,
        at: Instant,
        tokens: u32,
    },
    /// The last bytes (or the whole non-streaming body), then the end, and the truth record.
    End {
        bytes: Bytes,
        at: Instant,
        tokens: u32,
        record: Box<TruthRecord>,
    },
    /// Close the connection at `at` without ending the body (fault injection).
    Abort {
        at: Instant,
        record: Box<TruthRecord>,
    },
}

impl BodyFrame {
    pub(crate) fn at(&self) -> Instant {
        match self {
            BodyFrame::Data { at, .. }
            | BodyFrame::End { at, .. }
            | BodyFrame::Abort { at, .. } => *at,
        }
    }
}
