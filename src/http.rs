//! The operator's small HTTP server: `/healthz` (the process is up), `/readyz` (ready, see
//! below) and `/metrics` (Prometheus, OpenMetrics text).
//!
//! Readiness: without leader election, ready once both controllers' caches are synced; with
//! it, ready while standing by for the Lease and, once leading, again once the caches are
//! synced. Probes never call the Kubernetes API.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ready: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (stream, _) = match accepted {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "accepting an HTTP connection failed");
                continue;
            }
        };
        let metrics = metrics.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let accept = req
                    .headers()
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok());
                let response = respond(
                    req.method(),
                    req.uri().path(),
                    accept,
                    &metrics,
                    *ready.borrow(),
                );
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
        });
    }
}

/// The response to `method path`; `/metrics` answers in the format `accept` asks for
/// (OpenMetrics for Prometheus, else the Prometheus text format).
pub fn respond(
    method: &Method,
    path: &str,
    accept: Option<&str>,
    metrics: &Metrics,
    ready: bool,
) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .expect("a static response is valid")
    };
    if method != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is served\n".into(),
        );
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" if ready => text(StatusCode::OK, "ready\n".into()),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: controller caches are not synced yet\n".into(),
        ),
        "/metrics" => match metrics.exposition(accept) {
            Ok(exposition) => Response::builder()
                .status(StatusCode::OK)
                .header("content-type", exposition.content_type)
                .body(Full::new(Bytes::from(exposition.body)))
                .expect("a static response is valid"),
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics encoding failed\n".into(),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /readyz or /metrics\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn probes_and_metrics_answer() {
        let metrics = Metrics::new();
        assert_eq!(
            respond(&Method::GET, "/healthz", None, &metrics, false).status(),
            StatusCode::OK
        );
        assert_eq!(
            respond(&Method::GET, "/readyz", None, &metrics, false).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            respond(&Method::GET, "/readyz", None, &metrics, true).status(),
            StatusCode::OK
        );
        drop(metrics.reconcile("run"));
        let om = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        let text = body(respond(&Method::GET, "/metrics", Some(om), &metrics, true)).await;
        assert!(
            text.contains("coebench_operator_reconciles_total"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        let plain = body(respond(&Method::GET, "/metrics", None, &metrics, true)).await;
        assert!(
            plain.contains("# TYPE coebench_operator_reconciles_total counter"),
            "{plain}"
        );
        assert!(!plain.contains("# EOF"), "{plain}");
        assert_eq!(
            respond(&Method::GET, "/nope", None, &metrics, true).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            respond(&Method::POST, "/healthz", None, &metrics, true).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[tokio::test]
    async fn the_server_answers_over_loopback_and_stops_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (_ready_tx, ready_rx) = watch::channel(true);
        let server = tokio::spawn(serve(listener, Arc::new(Metrics::new()), ready_rx, stop_rx));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        stop_tx.send(true).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}
