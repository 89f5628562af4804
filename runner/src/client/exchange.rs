//! One timed request: send, stamp the head and each body frame, decode, and classify failures.
//!
//! `sent_at` is when the connection wrote the request's first byte (the measurement's start;
//! connection set-up and the client's own queueing before the write are not in it). The head,
//! every body frame and the end are stamped with the kernel's receive time of the bytes last
//! read from the connection when they are delivered (never later than the delivery, never
//! earlier than the bytes' arrival), so the runtime's own delays are not timed either; every
//! body frame is stamped the moment it is received, before any parsing; events inherit the
//! stamp of the frame holding their first byte. One deadline covers the whole exchange. After
//! the end marker, the rest of the body is awaited briefly so the connection can be reused.

use std::time::{Duration, Instant};

use super::transport::PooledBody;
use bytes::Bytes;
use http::header::RETRY_AFTER;
use http_body_util::{BodyExt, Full};

use super::decode::{Decoder, Recorder};
use super::transport::{HttpClient, SendError};
use super::{RAW_EXCERPT_LIMIT, shorten};
use crate::client::measurement::{ErrorKind, RequestError};
use coebench_support::socket_time::SocketTimes;

/// How long the body's end is awaited after the stream's end marker.
const AFTER_DONE_GRACE: Duration = Duration::from_secs(1);

/// Longest error body read, in bytes.
const ERROR_BODY_LIMIT: usize = 4096;

/// How long an error body is awaited.
const ERROR_BODY_WAIT: Duration = Duration::from_secs(2);

/// Sends `request` and decodes its response into `rec`. Returns when the stream ended, with
/// the instant it ended, or with the failure; fails as [`ErrorKind::Interrupted`] when
/// `interrupt` completes first (what arrived until then stays in `rec`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn exchange(
    http: &HttpClient,
    request: http::Request<Full<Bytes>>,
    mut decoder: Decoder,
    generic: bool,
    deadline: Option<tokio::time::Instant>,
    timeout: Duration,
    interrupt: impl Future<Output = ()>,
    rec: &mut Recorder,
) -> Result<Instant, RequestError> {
    let mut interrupt = std::pin::pin!(interrupt);
    let interrupted = |rec: &Recorder| match rec.done_at {
        Some(done) => Ok(done),
        None => Err(RequestError {
            kind: ErrorKind::Interrupted,
            message: format!(
                "the run was stopped while the request was in flight ({} token events received)",
                rec.token_events.len()
            ),
        }),
    };
    let timed_out = |what: &str, rec: &Recorder| RequestError {
        kind: ErrorKind::Timeout,
        message: format!(
            "{what} within the request timeout of {}s ({} token events received)",
            timeout.as_secs_f64(),
            rec.token_events.len()
        ),
    };
    let head = tokio::select! {
        biased;
        head = within(deadline, http.request(request)) => head,
        () = &mut interrupt => return interrupted(rec),
    };
    let response = match head {
        None => return Err(timed_out("no response head", rec)),
        Some(sent) => {
            rec.stale_retry = sent.stale_retry;
            match sent.result {
                Err(e) => return Err(request_failure(&e, sent.stale_retry)),
                Ok(response) => response,
            }
        }
    };
    // The connection's socket times, when it is one of ours (always, but for a plain default).
    let times = response
        .extensions()
        .get::<SocketTimes>()
        .cloned()
        .unwrap_or_default();
    let arrived = |times: &SocketTimes| times.received_before(Instant::now());
    rec.headers_at = Some(arrived(&times));
    rec.sent_at = times.first_write();
    let status = response.status();
    if !status.is_success() {
        return Err(http_failure(response, deadline).await);
    }
    let headers = response.headers();
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| shorten(v, RAW_EXCERPT_LIMIT));
    if let Some(encoding) = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().eq_ignore_ascii_case("identity"))
    {
        return Err(RequestError {
            kind: ErrorKind::MalformedEvent,
            message: format!(
                "the response is compressed (content-encoding: {}), which coebench does not \
                 decode (it asks for none); have the endpoint or its proxy send the stream \
                 uncompressed",
                shorten(encoding, RAW_EXCERPT_LIMIT)
            ),
        });
    }
    // A body with neither a length nor chunks ends when the connection closes: a last event
    // cut short there is a broken stream, not a malformed event.
    let close_delimited = !headers.contains_key(http::header::CONTENT_LENGTH)
        && !headers.contains_key(http::header::TRANSFER_ENCODING);
    let mut body = response.into_body();
    let mut last_at = rec.headers_at.unwrap_or_else(Instant::now);
    // One timer for the whole body (re-armed once, for the grace after the end marker), not
    // one registered and cancelled per frame.
    let mut timer = deadline.map(|d| Box::pin(tokio::time::sleep_until(d)));
    let mut grace_armed = false;
    loop {
        if let Some(done) = rec.done_at
            && !grace_armed
        {
            grace_armed = true;
            let grace = tokio::time::Instant::from_std(done) + AFTER_DONE_GRACE;
            let until = deadline.map_or(grace, |d| d.min(grace));
            match &mut timer {
                Some(t) => t.as_mut().reset(until),
                None => timer = Some(Box::pin(tokio::time::sleep_until(until))),
            }
        }
        let next = match &mut timer {
            Some(t) => tokio::select! {
                biased;
                frame = body.frame() => Some(frame),
                () = t.as_mut() => None,
                () = &mut interrupt => return interrupted(rec),
            },
            None => tokio::select! {
                biased;
                frame = body.frame() => Some(frame),
                () = &mut interrupt => return interrupted(rec),
            },
        };
        let frame = match next {
            None if rec.done_at.is_some() => return Ok(rec.done_at.unwrap_or_else(Instant::now)),
            None => return Err(timed_out("the stream did not finish", rec)),
            Some(None) => break,
            Some(Some(Err(e))) => {
                return Err(RequestError {
                    kind: ErrorKind::StreamBroken,
                    message: format!(
                        "the stream broke after {} token events: {}",
                        rec.token_events.len(),
                        chain(&e)
                    ),
                });
            }
            Some(Some(Ok(frame))) => frame,
        };
        // Monotonic within the response (two conversions of one kernel time may differ by ns).
        let at = arrived(&times).max(last_at);
        last_at = at;
        if let Ok(data) = frame.into_data() {
            decoder.feed(&data, at, rec)?;
        }
    }
    let end = arrived(&times).max(last_at);
    decoder.finish(rec).map_err(|e| match e.kind {
        ErrorKind::MalformedEvent if close_delimited => RequestError {
            kind: ErrorKind::StreamBroken,
            message: format!(
                "the connection closed in the middle of an event after {} token events \
                 (the body had no length): {}",
                rec.token_events.len(),
                e.message
            ),
        },
        _ => e,
    })?;
    if rec.complete(generic) {
        Ok(end)
    } else {
        let marker = if generic {
            "a last response"
        } else {
            "[DONE] or a finish_reason"
        };
        let message = if rec.first_event_at.is_none() {
            format!(
                "the response ended without any streamed event (content-type: {}); \
                 does the endpoint stream this request?",
                content_type.as_deref().unwrap_or("none")
            )
        } else {
            format!(
                "the response ended before the stream's end marker ({marker}) after {} token events",
                rec.token_events.len()
            )
        };
        Err(RequestError {
            kind: ErrorKind::StreamBroken,
            message,
        })
    }
}

/// `fut`'s output, or `None` when `deadline` passes first.
async fn within<F: Future>(deadline: Option<tokio::time::Instant>, fut: F) -> Option<F::Output> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, fut).await.ok(),
        None => Some(fut.await),
    }
}

/// A request that got no response head: no connection, or the connection failed.
fn request_failure(e: &SendError, stale_retry: bool) -> RequestError {
    let retried = if stale_retry {
        " (on a fresh connection, after the kept-alive one had been closed by the server)"
    } else {
        ""
    };
    if e.is_connect() {
        let hint = if e.is_untrusted_certificate() {
            "; the endpoint's TLS certificate is not trusted: if it comes from a private CA or is \
             self-signed, trust it with the plan's endpoint.caCertificate (or coebench run \
             --ca-certificate FILE, or SSL_CERT_FILE)"
        } else {
            ""
        };
        RequestError {
            kind: ErrorKind::Connect,
            message: format!("cannot connect{retried}: {e}{hint}"),
        }
    } else {
        RequestError {
            kind: ErrorKind::StreamBroken,
            message: format!("the connection failed before the response head{retried}: {e}"),
        }
    }
}

/// A non-success status, with `Retry-After` and an excerpt of the error body.
async fn http_failure(
    response: http::Response<PooledBody>,
    deadline: Option<tokio::time::Instant>,
) -> RequestError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(" (Retry-After: {})", shorten(v, RAW_EXCERPT_LIMIT)))
        .unwrap_or_default();
    let wait = tokio::time::Instant::now() + ERROR_BODY_WAIT;
    let body = read_prefix(
        response.into_body(),
        Some(deadline.map_or(wait, |d| d.min(wait))),
    )
    .await;
    let body = shorten(&String::from_utf8_lossy(&body), RAW_EXCERPT_LIMIT);
    let mut message = format!("HTTP {status}{retry_after}");
    if !body.is_empty() {
        message.push_str(": ");
        message.push_str(&body);
    }
    let kind = match status.as_u16() {
        429 => ErrorKind::RateLimited,
        code => ErrorKind::Http(code),
    };
    RequestError { kind, message }
}

/// Up to [`ERROR_BODY_LIMIT`] bytes of `body`, whatever arrived before `deadline`.
async fn read_prefix(mut body: PooledBody, deadline: Option<tokio::time::Instant>) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < ERROR_BODY_LIMIT {
        match within(deadline, body.frame()).await {
            Some(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    let room = ERROR_BODY_LIMIT - out.len();
                    out.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            _ => break,
        }
    }
    out
}

/// An error and its causes, `: `-separated.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
