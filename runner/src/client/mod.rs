//! Endpoint clients: send one benchmark request and measure its stream.
//!
//! An [`EndpointClient`] owns the run's pooled HTTP client and one endpoint's URL rules,
//! headers and wire format (SambaNova Cloud, OpenAI-compatible, SambaStudio generic v1/v2 or
//! its OpenAI-compatible URLs). A row serialises its body once ([`EndpointClient::prepare`]) and
//! every request reuses it; [`EndpointClient::send`] returns a [`Measurement`] and never fails:
//! failures are in [`Measurement::error`], classified and with the API key redacted. Turning
//! measurements into metrics is not this module's job.
//!
//! Submodules, one job each: [`sse`] parses event streams; `endpoint` builds URLs, headers and
//! bodies; `decode` turns events into token events and server metrics; `usage` maps usage
//! blocks; `connector` makes timestamped connections (from the [`source`] addresses given); `tls` says which certificates to trust;
//! `transport` builds the pooled client; `exchange` times one request.

mod connector;
mod decode;
mod endpoint;
mod exchange;
mod keep_alive;
pub mod measurement;
pub mod source;
pub mod sse;
mod tls;
pub(crate) mod transport;
mod usage;
mod warmup;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http::header::{HeaderName, HeaderValue};
use http_body_util::Full;
use serde_json::Value;

use self::decode::{Decoder, Recorder};
use self::endpoint::Target;
use self::source::SourceAddresses;
use crate::client::measurement::{ErrorKind, Measurement, RequestError, ServerMetrics};
use crate::credentials::ResolvedEndpoint;
use crate::credentials::redaction::{MIN_SECRET_LEN, Redactor};
use crate::workload::image::EncodedImage;
use coebench_plan::Route;

/// Client settings. Defaults are stated on each field.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// Send `"ignore_eos": true` on `sncloud` and `openai` requests so the model generates
    /// exactly `max_tokens` tokens. Default `true`: SambaNova Cloud, vLLM, SGLang and llama.cpp
    /// accept it. A row or the plan turns it off ([`RequestSpec::ignore_eos`], plan
    /// `ignoreEos: false`, `--ignore-eos false`) for a server that rejects unknown fields
    /// (HTTP 400). SambaStudio never receives it by default, as in the kit.
    pub ignore_eos: bool,
    /// Timeout of [`EndpointClient::list_models`]. Default 10 s.
    pub list_models_timeout: Duration,
    /// Local addresses new connections bind to, in turn (`--source-addresses`: this process's
    /// share). Default none: the kernel chooses.
    pub source_addresses: SourceAddresses,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            ignore_eos: true,
            list_models_timeout: Duration::from_secs(10),
            source_addresses: SourceAddresses::default(),
        }
    }
}

/// What one request asks for.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpec<'a> {
    /// Model name as the endpoint knows it (`Bundle/<expert>` selects an expert on SambaStudio).
    pub model: &'a str,
    /// The user message.
    pub prompt: &'a str,
    /// An image sent after the text, for multimodal rows.
    pub image: Option<&'a EncodedImage>,
    /// `max_tokens` (`max_tokens_to_generate` on SambaStudio generic endpoints).
    pub max_tokens: u32,
    /// Overrides [`ClientOptions::ignore_eos`] for chat requests: `Some(true)` sends
    /// `"ignore_eos": true`, `Some(false)` sends nothing. Generic endpoints never get it.
    pub ignore_eos: Option<bool>,
    /// `min_tokens` (vLLM, SGLang) for chat requests; not sent when `None`.
    pub min_tokens: Option<u32>,
    /// Sampling parameters (`temperature`, `top_p`, ...), sent under their own names: at the
    /// top of chat bodies, in `params` of SambaStudio generic bodies. Validated with the plan.
    pub sampling_params: Option<&'a coebench_plan::SamplingParams>,
}

/// A request body serialised once; cloning it is cheap, so a row reuses it for every request.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRequest {
    body: Bytes,
    max_tokens: u32,
}

impl PreparedRequest {
    /// The serialised body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// An endpoint that cannot be used, or a model list that cannot be read. Messages never
/// contain the API key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is the simulator, which the engine must resolve to the API it serves.
    #[error("the simulator endpoint must be resolved to the API it serves before a client is made")]
    Simulator,
    /// The URL is not a usable http(s) URL.
    #[error("invalid {api} URL `{url}`: {reason}")]
    InvalidUrl {
        /// The API flavour.
        api: &'static str,
        /// The URL, key redacted.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A SambaStudio URL that matches none of its URL rules.
    #[error(
        "unsupported SambaStudio URL `{url}`: it must contain `chat/completions` (OpenAI-compatible), \
         `stream` or `generic`, for example https://<host>/api/v2/predict/generic/<project>/<endpoint>"
    )]
    UnsupportedSambaStudioUrl {
        /// The URL, key redacted.
        url: String,
    },
    /// The API key cannot be sent in an HTTP header.
    #[error(
        "the API key contains characters not allowed in an HTTP header (such as a newline); \
         check the value of the key's environment variable"
    )]
    InvalidApiKey,
    /// An image was requested from an API that cannot take one.
    #[error(
        "SambaStudio generic endpoint `{url}` does not accept images; use the endpoint's \
         OpenAI-compatible chat/completions URL for multimodal rows"
    )]
    ImageNotSupported {
        /// The endpoint URL, key redacted.
        url: String,
    },
    /// The request body could not be serialised.
    #[error("cannot serialise the request body: {0}")]
    Body(String),
    /// The TLS configuration could not be built.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// The endpoint's CA certificate file cannot be used.
    #[error(
        "cannot use the CA certificate {path}: {reason}; point the plan's endpoint.caCertificate \
         (or coebench run --ca-certificate, or SSL_CERT_FILE) at a readable PEM file holding the \
         certificate of the endpoint's CA or its self-signed certificate"
    )]
    CaCertificate {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The endpoint's API has no model list (SambaStudio generic endpoints).
    #[error(
        "endpoint `{url}` has no model list (SambaStudio generic endpoints serve a fixed model)"
    )]
    NoModelList {
        /// The endpoint URL, key redacted.
        url: String,
    },
    /// Listing models failed.
    #[error("cannot list models at {url}: {message}")]
    ListModels {
        /// The models URL, key redacted.
        url: String,
        /// The failure's class.
        kind: ErrorKind,
        /// What went wrong.
        message: String,
    },
}

/// Checks that `path` is a PEM file of certificates the client can trust (what the plan's
/// `endpoint.caCertificate` or `SSL_CERT_FILE` names), without connecting anywhere.
pub fn check_ca_certificate(path: &std::path::Path) -> Result<(), ClientError> {
    tls::client_config(Some(path)).map(|_| ())
}

/// A client for one endpoint, cheap to clone and shared by all of a run's requests.
#[derive(Debug, Clone)]
pub struct EndpointClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    target: Target,
    redactor: Redactor,
    http: transport::HttpClient,
    options: ClientOptions,
}

impl EndpointClient {
    /// A client for `endpoint`. Checks the URL up front (scheme, host, SambaStudio's rules)
    /// and the key's header syntax; errors quote the URL with the key redacted.
    pub fn new(endpoint: ResolvedEndpoint, options: ClientOptions) -> Result<Self, ClientError> {
        let target = endpoint::resolve(&endpoint, &options)?;
        let http = transport::build(
            endpoint.ca_certificate.as_deref(),
            &options.source_addresses,
        )?;
        let redactor = match &endpoint.api_key {
            Some(key) => {
                if !key.is_secret() {
                    tracing::warn!(
                        "the API key is shorter than {MIN_SECRET_LEN} characters: it is not \
                         treated as a secret (not redacted from messages and files)"
                    );
                }
                key.redactor()
            }
            None => Redactor::without_key(),
        };
        Ok(EndpointClient {
            inner: Arc::new(Inner {
                target,
                redactor,
                http,
                options,
            }),
        })
    }

    /// The URL benchmark requests are posted to (after the API's URL rules), key redacted.
    pub fn request_url(&self) -> String {
        self.redact(&self.inner.target.uri.to_string())
    }

    /// Serialises the body of `spec` once, for every request of a row.
    pub fn prepare(&self, spec: &RequestSpec<'_>) -> Result<PreparedRequest, ClientError> {
        let body = endpoint::body(&self.inner.target, spec, &self.request_url())?;
        Ok(PreparedRequest {
            body: body.into(),
            max_tokens: spec.max_tokens,
        })
    }

    /// Sends one request and measures it, failing it as `timeout` when the whole exchange
    /// (connection, head and body) takes longer than `timeout`. Sends
    /// `x-request-id: <request_id>` (omitted if the id is not a valid header value). Never
    /// panics and never fails: errors are in [`Measurement::error`], key redacted.
    ///
    /// The measurement starts when the request's first byte is written to the connection (or,
    /// when that is unknown, just before the request is handed to the pool). Token events are
    /// stamped, before any parsing, with the kernel's receive time of the bytes last read from
    /// the connection when the body frame holding their first byte was delivered (the delivery
    /// instant where the platform has no receive timestamps).
    pub async fn send(
        &self,
        request: &PreparedRequest,
        request_id: &str,
        timeout: Duration,
    ) -> Measurement {
        self.send_interruptible(request, request_id, timeout, std::future::pending())
            .await
    }

    /// [`EndpointClient::send`], ended early when `interrupt` completes: the measurement then
    /// fails as [`ErrorKind::Interrupted`] and keeps what arrived before (its token events).
    pub async fn send_interruptible(
        &self,
        request: &PreparedRequest,
        request_id: &str,
        timeout: Duration,
        interrupt: impl Future<Output = ()>,
    ) -> Measurement {
        let inner = &*self.inner;
        let mut http_request = http::Request::new(Full::new(request.body.clone()));
        *http_request.method_mut() = Method::POST;
        *http_request.uri_mut() = inner.target.uri.clone();
        *http_request.headers_mut() = inner.target.headers.clone();
        if let Ok(id) = HeaderValue::from_str(request_id) {
            http_request
                .headers_mut()
                .insert(HeaderName::from_static("x-request-id"), id);
        }
        let (decoder, generic) = match inner.target.route {
            Route::Chat => (Decoder::chat(), false),
            Route::GenericV1 => (Decoder::generic(false), true),
            Route::GenericV2 => (Decoder::generic(true), true),
        };
        let mut rec = Recorder::with_capacity(request.max_tokens);
        let start_wall = jiff::Timestamp::now();
        let start = Instant::now();
        let deadline = tokio::time::Instant::from_std(start).checked_add(timeout);
        let outcome = exchange::exchange(
            &inner.http,
            http_request,
            decoder,
            generic,
            deadline,
            timeout,
            interrupt,
            &mut rec,
        )
        .await;
        let (end, error) = match outcome {
            Ok(end) => (end, None),
            Err(e) => (
                Instant::now(),
                Some(RequestError {
                    kind: e.kind,
                    message: shorten(&self.redact(&e.message), ERROR_MESSAGE_LIMIT),
                }),
            ),
        };
        // Time from the request's first byte on the wire when the connection saw it: the
        // runtime may have run other tasks between `start` and the write.
        let (start, start_wall) = match rec.sent_at {
            Some(sent) if sent > start && rec.headers_at.is_none_or(|h| sent <= h) => (
                sent,
                start_wall
                    .checked_add(sent.duration_since(start))
                    .unwrap_or(start_wall),
            ),
            _ => (start, start_wall),
        };
        let end_wall = start_wall
            .checked_add(end.saturating_duration_since(start))
            .unwrap_or_else(|_| jiff::Timestamp::now());
        let server = rec.server_metrics();
        Measurement {
            start,
            start_wall,
            headers_at: rec.headers_at,
            first_event_at: rec.first_event_at,
            token_events: rec.token_events,
            end,
            end_wall,
            generated_text: rec.text,
            server: match (server, rec.non_finite_values) {
                (Some(server), n) => Some(ServerMetrics {
                    impossible_values: server.impossible_values + n,
                    ..server
                }),
                (None, 0) => None,
                (None, n) => Some(ServerMetrics {
                    impossible_values: n,
                    ..ServerMetrics::default()
                }),
            },
            stop_reason: rec
                .stop_reason
                .map(|reason| shorten(&self.redact(&reason), STOP_REASON_LIMIT)),
            error,
            stale_connection_retry: rec.stale_retry,
        }
    }

    /// The model ids the endpoint lists at `GET <base>/models` (`data[].id`), sorted.
    pub async fn list_models(&self) -> Result<Vec<String>, ClientError> {
        let inner = &*self.inner;
        let uri = inner
            .target
            .models_uri
            .clone()
            .ok_or_else(|| ClientError::NoModelList {
                url: self.request_url(),
            })?;
        let url = self.redact(&uri.to_string());
        let failed = |kind, message: String| ClientError::ListModels {
            url: url.clone(),
            kind,
            message: shorten(&self.redact(&message), ERROR_MESSAGE_LIMIT),
        };
        let mut request = http::Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = inner.target.headers.clone();
        request.headers_mut().remove(http::header::CONTENT_TYPE);
        request.headers_mut().insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let timeout = inner.options.list_models_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let response = match tokio::time::timeout_at(deadline, inner.http.request(request)).await {
            Err(_) => {
                return Err(failed(
                    ErrorKind::Timeout,
                    format!("no answer within {}s", timeout.as_secs_f64()),
                ));
            }
            Ok(sent) => match sent.result {
                Err(e) => {
                    let kind = if e.is_connect() {
                        ErrorKind::Connect
                    } else {
                        ErrorKind::StreamBroken
                    };
                    return Err(failed(kind, e.to_string()));
                }
                Ok(response) => response,
            },
        };
        let status = response.status();
        let body = read_all(response.into_body(), deadline).await;
        let body = match body {
            Some(body) => body,
            None => {
                return Err(failed(
                    ErrorKind::Timeout,
                    "the model list did not arrive in time".into(),
                ));
            }
        };
        if !status.is_success() {
            let kind = match status.as_u16() {
                429 => ErrorKind::RateLimited,
                code => ErrorKind::Http(code),
            };
            // Redacted whole, then cut (by `failed`): a cut first could split the key.
            let excerpt = shorten(&String::from_utf8_lossy(&body), RAW_EXCERPT_LIMIT);
            return Err(failed(kind, format!("HTTP {status}: {excerpt}")));
        }
        let json: Value = serde_json::from_slice(&body).map_err(|e| {
            failed(
                ErrorKind::MalformedEvent,
                format!("the answer is not JSON: {e}"),
            )
        })?;
        let Some(data) = json.get("data").and_then(Value::as_array) else {
            return Err(failed(
                ErrorKind::MalformedEvent,
                "the answer has no `data` array".into(),
            ));
        };
        let mut ids: Vec<String> = data
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    fn redact(&self, text: &str) -> String {
        self.inner.redactor.redact(text)
    }
}

/// Longest error message a measurement or client error keeps, in bytes: the text is redacted
/// whole, then cut to this.
pub const ERROR_MESSAGE_LIMIT: usize = 400;

/// Longest stop reason kept, in bytes.
const STOP_REASON_LIMIT: usize = 64;

/// Longest excerpt of outside text (a body, a header, an event) put into a message before it is
/// redacted. Larger than [`ERROR_MESSAGE_LIMIT`], so wherever such a cut splits a key, the
/// final cut after redaction drops the piece.
pub(crate) const RAW_EXCERPT_LIMIT: usize = 4 * ERROR_MESSAGE_LIMIT;

/// The whole body, or `None` when it did not arrive before `deadline` or broke.
async fn read_all(
    mut body: transport::PooledBody,
    deadline: tokio::time::Instant,
) -> Option<Vec<u8>> {
    use http_body_util::BodyExt;
    const LIMIT: usize = 16 << 20;
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if out.len() + data.len() > LIMIT {
                        return None;
                    }
                    out.extend_from_slice(&data);
                }
            }
            Ok(None) => return Some(out),
            Ok(Some(Err(_))) | Err(_) => return None,
        }
    }
}

/// `text` on one line, at most `max` bytes (cut at a character boundary, marked with `…`).
pub(crate) fn shorten(text: &str, max: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.len() <= max {
        return one_line;
    }
    let mut cut = max;
    while !one_line.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &one_line[..cut])
}
