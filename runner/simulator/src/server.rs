//! The HTTP side: the accept loop (HTTP/1.1, keep-alive, graceful shutdown, HTTPS when given a
//! TLS acceptor: its handshake runs on the connection's task, above the timestamped socket, so
//! a request's arrival stays the kernel's receipt of its encrypted head), routing, API-key
//! checks, and turning one request into a scheduled [`QueuedRequest`]: parse, resolve the model, count
//! prompt tokens, check the sequence length, draw faults and the output length. Timing is the
//! scheduler's and the batch runner's job; bytes are `wire.rs`'s.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::body::{SimBody, StreamBody};
use super::config::{ApiMode, ModelConfig, SimulatorConfig};
use super::context::Ctx;
use super::faults::{self, Purpose, mix, request_rng};
use super::image;
use super::message::{BodyFrame, QueuedRequest};
use super::request::{self, ParsedRequest};
use super::truth::{FaultKind, TruthRecord};
use super::wire::{ApiError, RenderParams, ResponseFormat, ResponseRenderer};
use coebench_plan::Route;
use coebench_support::socket_time::TimestampedStream;
use coebench_support::timer;
use coebench_support::tokenizer::TokenCounter;

/// Largest request body accepted (images make bodies large).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Bodies above this size are parsed and tokenized off the async threads.
const BLOCKING_PARSE_BYTES: usize = 64 * 1024;
/// A TLS handshake that takes longer than this is abandoned (a client that connected and
/// never spoke TLS must not hold a connection for ever).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections until `shutdown` turns true, then lets open connections finish their
/// current response for up to `grace` before dropping them. With `tls`, every connection is
/// HTTPS.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    ctx: Arc<Ctx>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut conns = JoinSet::new();
    let for_connections = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve_connection(
                        stream,
                        peer,
                        tls.clone(),
                        ctx.clone(),
                        for_connections.clone(),
                    ));
                }
                Err(err) => {
                    // Typically EMFILE under extreme load: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    let open = conns.len();
    if open > 0 {
        tracing::info!(connections = open, "waiting for open connections to finish");
    }
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            connections = conns.len(),
            "grace period over; dropping connections"
        );
        conns.abort_all();
    }
}

/// Completes once `shutdown` is true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves one accepted connection: the timestamped socket, TLS above it when asked, HTTP/1.1
/// above that.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    ctx: Arc<Ctx>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stream = match TimestampedStream::new(stream) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::debug!(error = %err, "cannot serve an accepted connection");
            return;
        }
    };
    let times = stream.times();
    let Some(acceptor) = tls else {
        return serve_http(stream, times, peer, ctx, shutdown).await;
    };
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return;
            }
        },
        () = stopped(&mut shutdown) => return,
    };
    serve_http(stream, times, peer, ctx, shutdown).await;
}

/// Serves HTTP/1.1 on `io` until the client closes it or `shutdown` turns true; `times` are
/// the underlying socket's, `peer` the client's address.
async fn serve_http<I>(
    io: I,
    times: coebench_support::socket_time::SocketTimes,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        let received = times.received_unix_us();
        async move { Ok::<_, Infallible>(handle(req, ctx, received, peer).await) }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let stopping = tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            false
        }
        () = stopped(&mut shutdown) => true,
    };
    if stopping {
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}

/// What a request's method and path ask for.
enum Dispatch {
    /// The model list.
    Models,
    /// A completion on one of the API routes.
    Api(Route),
    /// Nothing the simulator serves; the message says what it does serve.
    NotFound(String),
}

fn dispatch(method: &Method, path: &str) -> Dispatch {
    let segments = |prefix: &str| {
        path.strip_prefix(prefix)
            .map(|rest| rest.split('/').filter(|s| !s.is_empty()).count())
    };
    if path.ends_with("/chat/completions") && method == Method::POST {
        Dispatch::Api(Route::Chat)
    } else if path.ends_with("/models") && method == Method::GET {
        Dispatch::Models
    } else if segments("/api/v2/predict/generic/stream/") == Some(2) && method == Method::POST {
        Dispatch::Api(Route::GenericV2)
    } else if segments("/api/predict/generic/stream/") == Some(2) && method == Method::POST {
        Dispatch::Api(Route::GenericV1)
    } else if path.contains("/predict/generic/") {
        Dispatch::NotFound(format!(
            "{method} {path} is not served; the simulator serves SambaStudio's stream endpoints: POST /api/predict/generic/stream/<project>/<endpoint> (v1) and POST /api/v2/predict/generic/stream/<project>/<endpoint> (v2)"
        ))
    } else {
        Dispatch::NotFound(format!(
            "{method} {path} is not served; use POST .../chat/completions, GET .../models, or POST /api[/v2]/predict/generic/stream/<project>/<endpoint>"
        ))
    }
}

/// Serves one request from `peer`; `received_unix_us` is when the kernel received its head, if
/// known.
async fn handle(
    req: Request<Incoming>,
    ctx: Arc<Ctx>,
    received_unix_us: Option<i64>,
    peer: SocketAddr,
) -> Response<SimBody> {
    let arrival = Instant::now();
    let dispatch = dispatch(req.method(), req.uri().path());
    let route = match dispatch {
        Dispatch::Models => {
            return match authorize(&ctx, &req) {
                Ok(()) => models_response(&ctx),
                Err(e) => error_response(&e, None),
            };
        }
        Dispatch::Api(route) => Ok(route),
        Dispatch::NotFound(message) => Err(message),
    };
    let ordinal = ctx.ordinal.fetch_add(1, Ordering::Relaxed);
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 256)
        .map(str::to_string)
        .unwrap_or_else(|| generated_id(ctx.config.seed, ordinal));
    let mut record = TruthRecord::arrived(
        ordinal,
        request_id.clone(),
        route.as_ref().ok().copied(),
        ctx.unix_us(arrival),
        ctx.rel(arrival),
    );
    // A timestamp from before this request's head (an older read) is not its arrival.
    record.received_unix_us = received_unix_us.filter(|&us| us <= record.arrival_unix_us);
    record.client_address = Some(peer.to_string());
    let result = match route {
        Ok(route) => serve(req, &ctx, route, &mut record, arrival).await,
        Err(message) => Err(ApiError::not_found("unknown_route", message)),
    };
    match result {
        Ok(response) => with_request_id(response, &request_id),
        Err(err) => {
            tracing::debug!(request_id = %request_id, status = err.status, message = %err.message, "request refused");
            record.http_status = err.status;
            record.error = Some(err.message.clone());
            ctx.truth.push(record);
            error_response(&err, Some(&request_id))
        }
    }
}

fn generated_id(seed: u64, ordinal: u64) -> String {
    uuid::Uuid::from_u64_pair(mix(seed ^ 0x5151), mix(ordinal ^ mix(seed))).to_string()
}

fn authorize<B>(ctx: &Ctx, req: &Request<B>) -> Result<(), ApiError> {
    let Some(key) = &ctx.config.api_key else {
        return Ok(());
    };
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let plain = headers
        .get("key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if bearer == Some(key.as_str()) || plain == Some(key.as_str()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

/// A request made ready for the scheduler, before its response is chosen.
struct Prepared {
    parsed: ParsedRequest,
    text_tokens: u32,
}

fn prepare(body: &[u8], route: Route, ctx: &Ctx) -> Result<Prepared, ApiError> {
    let parsed = match route {
        Route::GenericV1 => request::parse_generic(body, false)?,
        Route::GenericV2 => request::parse_generic(body, true)?,
        Route::Chat => request::parse_chat(body)?,
    };
    // A server's tokenizer adds its special tokens (a BOS) to the prompt it encodes.
    let counted = ctx.tokenizer.count_tokens(&parsed.prompt) + ctx.tokenizer.special_tokens_added();
    let text_tokens = u32::try_from(counted).unwrap_or(u32::MAX);
    Ok(Prepared {
        parsed,
        text_tokens,
    })
}

/// Serves one completion request, in phases: read and parse it, resolve its model, size it
/// against the model's limits, admit it (rate limits, injected errors), plan its output, queue
/// it for a batch, and answer with a stream or, for a non-streaming request, the whole body at
/// the last token's instant.
async fn serve(
    req: Request<Incoming>,
    ctx: &Arc<Ctx>,
    route: Route,
    record: &mut TruthRecord,
    arrival: Instant,
) -> Result<Response<SimBody>, ApiError> {
    let Prepared {
        parsed,
        text_tokens,
    } = read_request(req, ctx, route).await?;
    record.stream = parsed.stream;
    let config = &ctx.config;
    let model_index = resolve_model(&parsed, config)?;
    let model = &config.models[model_index];
    record.model = Some(model.name.clone());
    let sizing = size_request(&parsed, model, text_tokens, route, config)?;

    let now = Instant::now();
    if let Err(retry_after_s) = ctx.limiters.admit(model_index, now) {
        record.faults.push(FaultKind::RateLimit);
        return Err(ApiError::rate_limited(retry_after_s));
    }
    let (seed, ordinal) = (config.seed, record.ordinal);
    let plan = faults::decide(&ctx.faults[model_index], seed, ordinal);
    if let Some(status) = plan.error_status {
        record.faults.push(FaultKind::Error);
        return Err(ApiError::injected(status));
    }
    let output = plan_output(parsed.ignore_eos, model, seed, ordinal, sizing.max_tokens);

    if let Some(delay) = plan.slow_first_byte {
        record.faults.push(FaultKind::SlowFirstByte);
        timer::sleep(delay).await;
    }
    let stream_faults = if parsed.stream {
        record_stream_faults(plan.stream, record)
    } else {
        faults::StreamFaults::default()
    };
    let submitted = Instant::now();
    record.submitted_s = Some(ctx.rel(submitted));
    record.prompt_tokens = Some(sizing.prompt_tokens);
    record.image_tokens = sizing.image_tokens;
    record.sequence_bucket = Some(sizing.bucket);

    let wire = renderer(&parsed, model, route, ctx, ordinal, arrival);
    let content_type = wire.content_type();
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = QueuedRequest {
        model: model_index,
        bucket: sizing.bucket,
        prompt_tokens: sizing.prompt_tokens,
        submitted,
        tokens: output.tokens,
        stop_reason: output.stop_reason,
        bursts: output.bursts,
        stream: parsed.stream,
        faults: stream_faults,
        wire,
        tx,
        record: record.clone(),
    };
    if ctx.scheduler.send(queued).is_err() {
        return Err(ApiError::shutting_down());
    }
    if parsed.stream {
        let body = SimBody::Stream(Box::new(StreamBody::new(ctx.clone(), rx)));
        return Ok(response(StatusCode::OK, content_type, body));
    }
    respond_full(ctx, rx, content_type).await
}

/// Checks the key, reads the body (at most [`MAX_BODY_BYTES`]) and parses it; large bodies
/// (images) are parsed off the runtime's threads.
async fn read_request(
    req: Request<Incoming>,
    ctx: &Arc<Ctx>,
    route: Route,
) -> Result<Prepared, ApiError> {
    authorize(ctx, &req)?;
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| {
            ApiError::bad_request(
                "body_unreadable",
                format!("could not read the request body (limit {MAX_BODY_BYTES} bytes): {e}"),
            )
        })?
        .to_bytes();
    if body.len() > BLOCKING_PARSE_BYTES {
        let ctx2 = ctx.clone();
        tokio::task::spawn_blocking(move || prepare(&body, route, &ctx2))
            .await
            .map_err(|e| ApiError::internal(format!("request parsing failed: {e}")))?
    } else {
        prepare(&body, route, ctx)
    }
}

/// The index of the model a request names (or the default expert's).
fn resolve_model(parsed: &ParsedRequest, config: &SimulatorConfig) -> Result<usize, ApiError> {
    let name = match (&parsed.model, &config.default_expert) {
        (Some(name), _) => name.clone(),
        (None, Some(default)) => default.clone(),
        (None, None) => {
            return Err(ApiError::bad_request(
                "missing_select_expert",
                "params.select_expert is missing and the simulator has no default_expert; send select_expert (e.g. \"Bundle/<expert>\") or set default_expert in the config",
            ));
        }
    };
    config.model_index(&name).ok_or_else(|| {
        ApiError::not_found(
            "model_not_found",
            format!(
                "model {name:?} is not served here; available models: {}",
                config.model_names().join(", ")
            ),
        )
    })
}

/// A request's token counts, checked against its model.
struct Sizing {
    /// Text, chat template and image tokens.
    prompt_tokens: u32,
    /// Image tokens alone.
    image_tokens: u32,
    /// Tokens to generate at most.
    max_tokens: u32,
    /// The sequence-length bucket it runs in.
    bucket: u32,
}

/// Counts a request's prompt tokens and checks prompt + output against the model's maximum
/// sequence length; refuses images for a text-only model.
fn size_request(
    parsed: &ParsedRequest,
    model: &ModelConfig,
    text_tokens: u32,
    route: Route,
    config: &SimulatorConfig,
) -> Result<Sizing, ApiError> {
    let image_tokens: u32 = match (&model.vision, parsed.images.is_empty()) {
        (_, true) => 0,
        (None, false) => {
            return Err(ApiError::bad_request(
                "model_not_multimodal",
                format!(
                    "model {} does not accept images; send text only, or use a vision model",
                    model.name
                ),
            ));
        }
        (Some(v), false) => parsed
            .images
            .iter()
            .map(|&(w, h)| image::image_tokens(w, h, v.patch_pixels, v.max_tokens_per_image))
            .fold(0u32, u32::saturating_add),
    };
    let template = if route == Route::Chat {
        config.chat_template_tokens
    } else {
        0
    };
    let prompt_tokens = text_tokens
        .saturating_add(template)
        .saturating_add(image_tokens);
    let max_len = model.max_sequence_length;
    let max_tokens = match parsed.max_tokens {
        Some(m) => m,
        None if prompt_tokens < max_len => max_len - prompt_tokens,
        None => 0,
    };
    let needed = u64::from(prompt_tokens) + u64::from(max_tokens);
    if max_tokens == 0 || needed > u64::from(max_len) {
        return Err(ApiError::bad_request(
            "context_length_exceeded",
            format!(
                "input ({prompt_tokens} prompt tokens) + output ({max_tokens} max_tokens) = {needed} tokens exceeds the maximum sequence length {max_len} of model {}; lower max_tokens or shorten the prompt",
                model.name
            ),
        ));
    }
    Ok(Sizing {
        prompt_tokens,
        image_tokens,
        max_tokens,
        bucket: model.bucket_for(needed).unwrap_or(max_len),
    })
}

/// What a request will generate.
struct OutputPlan {
    /// Tokens to generate (at most `max_tokens`).
    tokens: u32,
    /// `stop` for a natural stop before `max_tokens`, else `length`.
    stop_reason: &'static str,
    /// Speculative models: tokens emitted by each decode step after the first token.
    bursts: Option<Vec<u32>>,
}

/// Output length: exactly `max_tokens` with `ignore_eos`, else possibly a seeded natural stop;
/// for a speculative model, the seeded accepted-draft bursts.
fn plan_output(
    ignore_eos: bool,
    model: &ModelConfig,
    seed: u64,
    ordinal: u64,
    max_tokens: u32,
) -> OutputPlan {
    let tokens = match (ignore_eos, model.natural_length) {
        (false, Some(n)) => {
            let natural =
                request_rng(seed, ordinal, Purpose::NaturalLength).random_range(n.min..=n.max);
            natural.min(max_tokens)
        }
        _ => max_tokens,
    };
    let stop_reason = if tokens < max_tokens {
        "stop"
    } else {
        "length"
    };
    let bursts = model.speculative.map(|s| {
        let mut rng = request_rng(seed, ordinal, Purpose::Speculative);
        let mut left = tokens - 1;
        let mut bursts = Vec::new();
        while left > 0 {
            let mut accepted = 0;
            while accepted < s.draft_tokens && rng.random::<f64>() < s.acceptance_probability {
                accepted += 1;
            }
            let burst = (accepted + 1).min(left);
            bursts.push(burst);
            left -= burst;
        }
        bursts
    });
    OutputPlan {
        tokens,
        stop_reason,
        bursts,
    }
}

/// Notes a stream's injected faults in its truth record.
fn record_stream_faults(
    faults: faults::StreamFaults,
    record: &mut TruthRecord,
) -> faults::StreamFaults {
    if faults.stall.is_some() {
        record.faults.push(FaultKind::Stall);
    }
    if faults.disconnect_after.is_some() {
        record.faults.push(FaultKind::Disconnect);
    }
    if faults.malformed_after.is_some() {
        record.faults.push(FaultKind::MalformedEvent);
    }
    faults
}

/// The renderer of a request's response bytes, in its route's format.
fn renderer(
    parsed: &ParsedRequest,
    model: &ModelConfig,
    route: Route,
    ctx: &Ctx,
    ordinal: u64,
    arrival: Instant,
) -> ResponseRenderer {
    let config = &ctx.config;
    let kind = match route {
        Route::GenericV1 => ResponseFormat::Generic { v2: false },
        Route::GenericV2 => ResponseFormat::Generic { v2: true },
        Route::Chat if parsed.stream => ResponseFormat::ChatStream {
            send_usage: !config.omit_usage
                && (config.api == ApiMode::Sncloud || parsed.include_usage),
        },
        Route::Chat => ResponseFormat::ChatFull,
    };
    let identity = mix(mix(config.seed) ^ ordinal.wrapping_add(0xC0FFEE));
    let created = ctx.unix_us(arrival) / 1_000_000;
    ResponseRenderer::new(RenderParams {
        kind,
        mode: config.api,
        id: &format!("chatcmpl-{identity:016x}"),
        model: &model.name,
        created,
        item_id: &parsed.item_id,
        prompt: &parsed.prompt,
        text_key: identity,
    })
}

/// A non-streaming answer: the whole body at the last token's instant, its truth filed then.
async fn respond_full(
    ctx: &Arc<Ctx>,
    mut rx: mpsc::UnboundedReceiver<BodyFrame>,
    content_type: &'static str,
) -> Result<Response<SimBody>, ApiError> {
    match rx.recv().await {
        Some(BodyFrame::End {
            bytes, at, record, ..
        }) => {
            timer::sleep_until(at).await;
            let mut record = *record;
            let written = Instant::now();
            let lag = written.saturating_duration_since(at);
            ctx.lag.record(lag);
            let us = lag.as_secs_f64() * 1e6;
            record.timer_lag_max_us = Some(us);
            record.timer_lag_mean_us = Some(us);
            record.first_token_written_unix_us = Some(ctx.unix_us(written));
            record.last_token_written_unix_us = Some(ctx.unix_us(written));
            ctx.truth.push(record);
            Ok(response(
                StatusCode::OK,
                content_type,
                SimBody::Full(Some(bytes)),
            ))
        }
        _ => Err(ApiError::shutting_down()),
    }
}

fn response(status: StatusCode, content_type: &'static str, body: SimBody) -> Response<SimBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type == "text/event-stream" {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    r
}

fn with_request_id(mut r: Response<SimBody>, request_id: &str) -> Response<SimBody> {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-request-id", v);
    }
    r
}

fn error_response(err: &ApiError, request_id: Option<&str>) -> Response<SimBody> {
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = response(status, "application/json", SimBody::Full(Some(err.body())));
    if let Some(secs) = err.retry_after_s {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    match request_id {
        Some(id) => with_request_id(r, id),
        None => r,
    }
}

fn models_response(ctx: &Ctx) -> Response<SimBody> {
    let data: Vec<serde_json::Value> = ctx
        .config
        .models
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.name,
                "object": "model",
                "created": 0,
                "owned_by": "coebench-simulator",
                "context_length": m.max_sequence_length,
            })
        })
        .collect();
    let body = serde_json::json!({"object": "list", "data": data}).to_string();
    response(
        StatusCode::OK,
        "application/json",
        SimBody::Full(Some(Bytes::from(body))),
    )
}
