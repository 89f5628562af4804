//! The run's one pooled HTTP client: HTTP/1.1 keep-alive, `TCP_NODELAY`, https through rustls
//! with the webpki roots, large read buffers, timestamped connections
//! ([`super::connector`]). It only builds the client; sending and timing
//! requests is [`super::exchange`]'s job.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::ClientError;
use super::connector::TimedConnector;

/// The pooled client type.
pub(crate) type HttpClient = Client<HttpsConnector<TimedConnector>, Full<Bytes>>;

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Largest read buffer per connection: long prompts echo back large errors, and a small buffer
/// throttles big bodies (peers-reference 9).
const MAX_READ_BUFFER: usize = 4 << 20;

/// Builds the client. The pool has no connection limit: every in-flight request gets its own
/// connection, idle ones are reused, so thousands of concurrent streams are fine.
pub(crate) fn build() -> Result<HttpClient, ClientError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(TimedConnector(http));
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(usize::MAX)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http1_max_buf_size(MAX_READ_BUFFER)
        .build(https))
}
