//! The run's pooled HTTP client: HTTP/1.1 keep-alive, `TCP_NODELAY`, https through rustls
//! ([`super::tls`]: the webpki roots and the endpoint's CA certificate), large read buffers,
//! timestamped connections ([`super::connector`]) with TLS above them, so the socket times are
//! those of the encrypted records the TLS layer reads.
//!
//! It keeps its own pool of idle connections so it can honour what each server says about
//! reuse ([`super::keep_alive`]: `Connection: close`, `Keep-Alive: timeout, max`), and so it
//! knows whether a request went out on a reused connection. A request whose *reused*
//! connection fails before any byte of an answer arrived, within [`STALE_WINDOW`] of the
//! request's first byte, is sent once more on a fresh connection: the server had closed the
//! kept-alive connection (its close crossed the request on the wire) and never processed it;
//! curl and browsers retry this case the same way. [`Sent::stale_retry`] says so; the caller
//! counts it. A failure after an answer's first byte, later than the window, or on a fresh
//! connection is never retried. Sending and timing requests is [`super::exchange`]'s job.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use tower_service::Service;

use super::ClientError;
use super::connector::TimedConnector;
use super::keep_alive::ReusePolicy;
use super::source::SourceAddresses;
use coebench_support::socket_time::SocketTimes;

/// How long an idle pooled connection is kept when the server announced no timeout.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Largest read buffer per connection: long prompts echo back large errors, and a small buffer
/// throttles big bodies (peers-reference 9).
const MAX_READ_BUFFER: usize = 4 << 20;

/// A reused connection that fails without any byte of an answer sooner than this after the
/// request's first byte is taken to have been closed by the server before the request reached
/// it (the close was in flight: one network round trip), and the request is sent again.
pub(crate) const STALE_WINDOW: Duration = Duration::from_millis(500);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The pooled client: cheap to clone, all clones share one pool.
#[derive(Clone)]
pub(crate) struct HttpClient {
    inner: Arc<Pool>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

struct Pool {
    connector: HttpsConnector<TimedConnector>,
    /// Idle connections per `scheme://authority`, the most recently used last.
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

/// A connection that finished its last exchange and may carry another request.
struct Idle {
    sender: http1::SendRequest<Full<Bytes>>,
    times: SocketTimes,
    /// When the connection became idle.
    since: Instant,
    /// Until when the server keeps it open (its `Keep-Alive: timeout`, less a margin).
    deadline: Instant,
    /// Requests the server still accepts on it (its `Keep-Alive: max`, counted down).
    remaining: Option<u32>,
}
// A connection is pooled the moment its response body ends, possibly before its dispatcher
// has marked it ready: [`HttpClient::send`] awaits readiness, and a connection that closed
// meanwhile fails there, before the request is written (a stale connection, retried).

/// A connection in use.
struct Leased {
    sender: http1::SendRequest<Full<Bytes>>,
    times: SocketTimes,
    remaining: Option<u32>,
    reused: bool,
}

/// Why a request got no response head.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made.
    Connect(BoxError),
    /// The connection failed before the response head.
    Request(hyper::Error),
}

impl SendError {
    /// Whether no connection could be made.
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }

    /// Whether the connection failed because the server's certificate could not be verified
    /// (an unknown issuer, a name it does not cover, expired, ...).
    pub(crate) fn is_untrusted_certificate(&self) -> bool {
        let SendError::Connect(error) = self else {
            return false;
        };
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
        while let Some(e) = next {
            // An `io::Error` hides the error it wraps from `source()`.
            let inner = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|inner| inner as &(dyn std::error::Error + 'static));
            let certificate = |e: &(dyn std::error::Error + 'static)| {
                matches!(
                    e.downcast_ref::<rustls::Error>(),
                    Some(rustls::Error::InvalidCertificate(_))
                )
            };
            if certificate(e) || inner.is_some_and(certificate) {
                return true;
            }
            next = inner.or_else(|| e.source());
        }
        false
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "{}", super::exchange::chain(e.as_ref())),
            SendError::Request(e) => write!(f, "{}", super::exchange::chain(e)),
        }
    }
}

/// The outcome of [`HttpClient::request`].
#[derive(Debug)]
pub(crate) struct Sent {
    /// The response head (its extensions hold the connection's [`SocketTimes`]), or why there
    /// is none.
    pub result: Result<Response<PooledBody>, SendError>,
    /// The request was sent a second time, on a fresh connection, because its reused
    /// connection had been closed by the server.
    pub stale_retry: bool,
}

/// Builds the client, trusting the webpki roots and the certificates of `ca_certificate`, its
/// new connections bound to `sources` in turn (none: the kernel chooses). The pool has no
/// connection limit: every in-flight request gets its own connection, idle ones are reused, so
/// thousands of concurrent streams are fine.
pub(crate) fn build(
    ca_certificate: Option<&std::path::Path>,
    sources: &SourceAddresses,
) -> Result<HttpClient, ClientError> {
    let tcp = |source: Option<std::net::IpAddr>| {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        http.set_local_address(source);
        http
    };
    let connectors = if sources.is_empty() {
        vec![tcp(None)]
    } else {
        sources.addresses().iter().map(|a| tcp(Some(*a))).collect()
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(super::tls::client_config(ca_certificate)?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(TimedConnector::new(connectors));
    Ok(HttpClient {
        inner: Arc::new(Pool {
            connector: https,
            idle: Mutex::new(HashMap::new()),
        }),
    })
}

impl HttpClient {
    /// Sends `request` (an absolute URI) on an idle connection to its host or a new one, and
    /// returns the response head. The connection returns to the pool once the response body
    /// has been read to its end ([`PooledBody`]), unless the server said it will close it.
    pub(crate) async fn request(&self, request: Request<Full<Bytes>>) -> Sent {
        let key = pool_key(request.uri());
        let retry = copy(&request);
        let leased = match self.checkout(&key) {
            Some(idle) => idle,
            None => match self.connect(request.uri()).await {
                Ok(fresh) => fresh,
                Err(e) => return sent(Err(e), false),
            },
        };
        let reused = leased.reused;
        let times = leased.times.clone();
        let result = self.send(leased, key.clone(), request).await;
        match result {
            Err(SendError::Request(e)) if reused && stale(&e, &times) => {
                let fresh = match self.connect(retry.uri()).await {
                    Ok(fresh) => fresh,
                    Err(e) => return sent(Err(e), true),
                };
                sent(self.send(fresh, key, retry).await, true)
            }
            result => sent(result, false),
        }
    }

    /// The most recently used idle connection to `key` that is open, within the server's idle
    /// timeout and request limit; connections past them are dropped.
    fn checkout(&self, key: &str) -> Option<Leased> {
        let now = Instant::now();
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        while let Some(conn) = list.pop() {
            let open = !conn.sender.is_closed();
            let fresh_enough = now < conn.deadline && now.duration_since(conn.since) < POOL_IDLE;
            if open && fresh_enough {
                return Some(Leased {
                    sender: conn.sender,
                    times: conn.times,
                    remaining: conn.remaining,
                    reused: true,
                });
            }
        }
        None
    }

    /// A new connection to `uri`'s host.
    async fn connect(&self, uri: &Uri) -> Result<Leased, SendError> {
        let mut connector = self.inner.connector.clone();
        let io = connector
            .call(uri.clone())
            .await
            .map_err(SendError::Connect)?;
        let mut extras = http::Extensions::new();
        io.connected().get_extras(&mut extras);
        let times = extras.get::<SocketTimes>().cloned().unwrap_or_default();
        // A TLS handshake ends with the client's own write (TLS 1.3's Finished), not a read:
        // the request's first byte starts a new message all the same.
        times.expect_new_message();
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(MAX_READ_BUFFER)
            .handshake(io)
            .await
            .map_err(|e| SendError::Connect(e.into()))?;
        tokio::spawn(async move {
            // Ends when the connection closes; its errors reach the request that was using it.
            let _ = connection.await;
        });
        Ok(Leased {
            sender,
            times,
            remaining: None,
            reused: false,
        })
    }

    /// Sends `request` on `conn`; once the response body is done, `conn` goes back to the pool
    /// if the server allows.
    async fn send(
        &self,
        mut conn: Leased,
        key: String,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<PooledBody>, SendError> {
        to_origin_form(&mut request);
        conn.sender.ready().await.map_err(SendError::Request)?;
        let mut response = conn
            .sender
            .send_request(request)
            .await
            .map_err(SendError::Request)?;
        response.extensions_mut().insert(conn.times.clone());
        let policy = ReusePolicy::from_headers(response.headers());
        let remaining = policy
            .max_requests
            .or(conn.remaining)
            .map(|n| n.saturating_sub(1));
        let reuse = (policy.reusable() && remaining != Some(0)).then(|| {
            let pool = self.inner.clone();
            Box::new(move || {
                let since = Instant::now();
                let deadline = policy
                    .idle_deadline(since)
                    .map_or(since + POOL_IDLE, |d| d.min(since + POOL_IDLE));
                let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.entry(key).or_default().push(Idle {
                    sender: conn.sender,
                    times: conn.times,
                    since,
                    deadline,
                    remaining,
                });
            }) as Box<dyn FnOnce() + Send>
        });
        Ok(response.map(|body| PooledBody { body, reuse }))
    }
}

/// A response body that hands its connection back to the pool the moment it has been read
/// to its end (so the next request finds it); dropped before that, the connection closes.
pub(crate) struct PooledBody {
    body: Incoming,
    reuse: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("reusable", &self.reuse.is_some())
            .finish_non_exhaustive()
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        if frame.is_none()
            && let Some(reuse) = this.reuse.take()
        {
            reuse();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Whether a reused connection's failure means the server closed it before the request
/// reached it: the request was never sent (`canceled`, or the connection was already closed), or the connection ended or was reset
/// with no byte of an answer and within [`STALE_WINDOW`] of the request's first byte.
fn stale(error: &hyper::Error, times: &SocketTimes) -> bool {
    if error.is_canceled() || error.is_closed() {
        return true;
    }
    let closed = error.is_incomplete_message()
        || std::error::Error::source(error)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof
                )
            });
    let quick = times
        .first_write()
        .is_none_or(|sent| sent.elapsed() < STALE_WINDOW);
    closed && quick && !times.read_since_write()
}

fn sent(result: Result<Response<PooledBody>, SendError>, stale_retry: bool) -> Sent {
    Sent {
        result,
        stale_retry,
    }
}

/// `scheme://authority`, the pool's key.
fn pool_key(uri: &Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map_or("", |a| a.as_str())
    )
}

/// A copy of `request` for a second attempt (the body is shared, not copied).
fn copy(request: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// An HTTP/1.1 request line carries the path only; the host goes in `Host`.
fn to_origin_form(request: &mut Request<Full<Bytes>>) {
    let uri = request.uri().clone();
    if !request.headers().contains_key(HOST)
        && let Some(authority) = uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(HOST, host);
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if let Ok(origin) = path.parse() {
        *request.uri_mut() = origin;
    }
}
