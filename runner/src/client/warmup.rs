//! Opening a row's connections before it starts, so the first requests of a row do not pay
//! TCP and TLS handshakes inside their measured time to first token.
//!
//! Each warm-up is a small `GET` (the model list where the API has one, else the request URL)
//! whose answer is read to the end: whatever its status, the connection then returns to the
//! pool, idle and ready. Sending them all at once makes the pool open one connection each.

use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http_body_util::Full;
use tokio::task::JoinSet;

use super::{EndpointClient, read_all};

impl EndpointClient {
    /// Opens up to `connections` pooled connections to the endpoint, each within `timeout`,
    /// and returns how many answered. Failures are not errors: the row's requests will open
    /// their own connections, and report any real problem.
    pub async fn warm_up(&self, connections: u32, timeout: Duration) -> u32 {
        let inner = &*self.inner;
        let uri = inner
            .target
            .models_uri
            .clone()
            .unwrap_or_else(|| inner.target.uri.clone());
        let mut headers = inner.target.headers.clone();
        headers.remove(http::header::CONTENT_TYPE);
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let mut pending = JoinSet::new();
        for _ in 0..connections {
            let http = inner.http.clone();
            let mut request = http::Request::new(Full::new(Bytes::new()));
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = headers.clone();
            pending.spawn(async move {
                let deadline = tokio::time::Instant::now() + timeout;
                match tokio::time::timeout_at(deadline, http.request(request)).await {
                    Ok(sent) => match sent.result {
                        Ok(response) => read_all(response.into_body(), deadline).await.is_some(),
                        Err(_) => false,
                    },
                    Err(_) => false,
                }
            });
        }
        let mut answered = 0;
        while let Some(done) = pending.join_next().await {
            if matches!(done, Ok(true)) {
                answered += 1;
            }
        }
        answered
    }
}
