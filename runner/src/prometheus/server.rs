//! The runner's `/metrics` endpoint: a small hyper HTTP/1.1 server that lives as long as its
//! [`MetricsServer`] (dropping it stops the listener and every connection).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::MetricsError;
use super::exporter::RunMetrics;

/// A running `/metrics` server.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Listens on `addr` (port 0 picks a free port) and serves `metrics` until dropped.
    pub async fn start(
        addr: SocketAddr,
        metrics: Arc<RunMetrics>,
    ) -> Result<MetricsServer, MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| MetricsError::Bind { addr, source })?;
        let task = tokio::spawn(accept_loop(listener, metrics));
        tracing::info!(%addr, "serving Prometheus metrics at /metrics");
        Ok(MetricsServer { addr, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, metrics: Arc<RunMetrics>) {
    // Connections live in the set, so aborting this task ends them too.
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "accepting a metrics connection failed");
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let metrics = Arc::clone(&metrics);
        connections.spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let response = respond(&req, &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
        });
    }
}

fn respond<B>(req: &Request<B>, metrics: &RunMetrics) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, body: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    };
    if req.method() != Method::GET {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n");
    }
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "not found; try /metrics\n");
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    match metrics.encode(accept) {
        Ok(exposition) => {
            let mut response = Response::new(Full::new(Bytes::from(exposition.body)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(exposition.content_type),
            );
            response
        }
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics encoding failed\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::labels::RunLabels;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str, accept: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: x\r\naccept: {accept}\r\nconnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn metrics_are_served_in_the_format_asked_for_until_the_server_drops() {
        let metrics = Arc::new(RunMetrics::new(RunLabels::default()));
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), metrics)
            .await
            .unwrap();
        let addr = server.local_addr();
        let om = get(
            addr,
            "/metrics",
            "application/openmetrics-text;version=1.0.0",
        )
        .await;
        assert!(om.starts_with("HTTP/1.1 200"), "{om}");
        assert!(om.contains("application/openmetrics-text"), "{om}");
        assert!(om.contains("# TYPE coebench_runner info"), "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");
        let text = get(addr, "/metrics", "*/*").await;
        assert!(text.contains("version=0.0.4"), "{text}");
        assert!(text.contains("# TYPE coebench_runner_info gauge"), "{text}");
        assert!(get(addr, "/other", "*/*").await.starts_with("HTTP/1.1 404"));
        drop(server);
        let refused = async {
            for _ in 0..100 {
                if tokio::net::TcpStream::connect(addr).await.is_err() {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            false
        };
        assert!(refused.await, "the listener closes when the server drops");
    }
}
