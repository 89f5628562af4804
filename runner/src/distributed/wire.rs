//! The messages between a distributed run's coordinator and its workers, and their framing on a
//! TCP connection: each message is a 4-byte big-endian length followed by that many bytes of
//! JSON (the records' floats round-trip exactly: serde_json's `float_roundtrip`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::statistics::record::RequestRecord;
use crate::statistics::summary::ClientHealth;
use coebench_plan::Plan;

/// Version of this protocol; a worker of another version is turned away at its hello.
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest message accepted (a plan with its rows is the largest).
pub const MAX_FRAME_BYTES: u32 = 64 << 20;

/// What the coordinator sends a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// The run: the plan every worker runs its share of, and what makes prompts and request
    /// ids the ones one process would send.
    Welcome {
        /// The plan, as the coordinator runs it.
        plan: Box<Plan>,
        /// Mixed into the prompts' tags (drawn once per run by the coordinator).
        prompt_nonce: u64,
        /// For a simulator plan: the URL of the simulator the coordinator serves, which every
        /// worker sends to (one simulator, one truth log for the run).
        simulator: Option<String>,
    },
    /// A clock round trip: answer with [`FromWorker::Pong`] at once.
    Ping {
        /// Which ping.
        seq: u32,
    },
    /// Build the row's requests and warm connections, then answer [`FromWorker::Ready`].
    PrepareRow {
        /// Position of the row in the plan.
        row_index: usize,
    },
    /// Send the worker's share of the row from the common start.
    StartRow {
        /// Position of the row in the plan.
        row_index: usize,
        /// The prefix of the row's request ids (from the row's UUID).
        request_id_prefix: String,
        /// When the row starts, Unix nanoseconds on the coordinator's clock.
        start_unix_ns: i64,
        /// The worker's clock minus the coordinator's, nanoseconds, as measured.
        clock_offset_ns: i64,
    },
    /// Stop sending the row's requests; those in flight go on (the run was interrupted).
    StopRow,
    /// End the row's requests in flight now: they are recorded as interrupted (the stop's grace
    /// is over, or a worker was lost).
    CutRow,
    /// The coordinator is alive (sent every [`super::HEARTBEAT_PERIOD`]).
    Heartbeat,
    /// The run is over: exit 0.
    Done,
}

/// What a worker sends the coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The first message: who the worker is.
    Hello {
        /// The worker's index, 1 to workers - 1.
        index: u32,
        /// Its [`PROTOCOL_VERSION`].
        version: u32,
        /// Its host name.
        host: String,
    },
    /// The answer to a [`ToWorker::Ping`].
    Pong {
        /// The ping answered.
        seq: u32,
        /// When the worker answered, Unix nanoseconds on its clock.
        unix_ns: i64,
    },
    /// The row is prepared and its connections warmed.
    Ready {
        /// Position of the row in the plan.
        row_index: usize,
    },
    /// One finished request's record, on the coordinator's time base.
    Record(Box<RequestRecord>),
    /// The worker's share of the row is done: every record was sent before this.
    RowDone {
        /// Position of the row in the plan.
        row_index: usize,
        /// What the worker's share did.
        report: ShareReport,
    },
    /// The worker is alive (sent every [`super::HEARTBEAT_PERIOD`]).
    Heartbeat,
    /// The worker cannot go on (its set-up failed): the message says why.
    Failed {
        /// Why.
        message: String,
    },
}

/// What a worker's share of a row did.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ShareReport {
    /// Requests of the share never sent.
    pub not_sent: u32,
    /// When the share's last request ended, seconds after the row's start.
    pub ended_s: f64,
    /// The largest dispatch delay of its open-loop requests, seconds.
    pub dispatch_delay_max_s: Option<f64>,
    /// The p99 of the worker runtime's scheduling lag, seconds.
    pub event_loop_lag_p99_s: Option<f64>,
    /// The worker process's CPU, as a fraction of the cores it may use.
    pub cpu_utilization: Option<f64>,
    /// Whether the worker's client was the bottleneck.
    pub saturated: bool,
}

impl ShareReport {
    /// The client health part of the report.
    pub fn health(&self) -> ClientHealth {
        ClientHealth {
            event_loop_lag_p99_s: self.event_loop_lag_p99_s,
            cpu_utilization: self.cpu_utilization,
            saturated: self.saturated,
        }
    }
}

/// A message could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// A message was not valid.
    #[error("invalid message: {0}")]
    Json(#[from] serde_json::Error),
    /// A message announced more bytes than allowed.
    #[error("a message of {0} bytes is larger than the {MAX_FRAME_BYTES} allowed")]
    TooLarge(u32),
}

/// Writes one message.
pub async fn write_message<W, T>(to: &mut W, message: &T) -> Result<(), WireError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = serde_json::to_vec(message)?;
    let len = u32::try_from(body.len()).map_err(|_| WireError::TooLarge(u32::MAX))?;
    if len > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(len));
    }
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    to.write_all(&frame).await?;
    to.flush().await?;
    Ok(())
}

/// Reads one message; `None` when the peer closed the connection between messages.
pub async fn read_message<R, T>(from: &mut R) -> Result<Option<T>, WireError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    match from.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(len));
    }
    let mut body = vec![0u8; len as usize];
    from.read_exact(&mut body).await?;
    Ok(Some(serde_json::from_slice(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_round_trip_and_a_closed_peer_reads_as_none() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let record = RequestRecord {
            request_idx: 7,
            actual_send_s: 0.1 + 0.2,
            client_ttft_s: Some(1.0 / 3.0),
            ..RequestRecord::default()
        };
        write_message(&mut a, &FromWorker::Record(Box::new(record.clone())))
            .await
            .unwrap();
        write_message(&mut a, &FromWorker::Heartbeat).await.unwrap();
        drop(a);
        let got: Option<FromWorker> = read_message(&mut b).await.unwrap();
        assert_eq!(got, Some(FromWorker::Record(Box::new(record))));
        let got: Option<FromWorker> = read_message(&mut b).await.unwrap();
        assert_eq!(got, Some(FromWorker::Heartbeat));
        let got: Option<FromWorker> = read_message(&mut b).await.unwrap();
        assert_eq!(got, None);
    }

    #[tokio::test]
    async fn an_oversized_frame_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&(MAX_FRAME_BYTES + 1).to_be_bytes())
            .await
            .unwrap();
        let got: Result<Option<FromWorker>, _> = read_message(&mut b).await;
        assert!(matches!(got, Err(WireError::TooLarge(_))));
    }
}
