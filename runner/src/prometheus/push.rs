//! Pushing a run's final metrics to a Prometheus Pushgateway, so a run shorter than a scrape
//! interval is still recorded: one HTTP `PUT` of the Prometheus text format to
//! `<gateway>/metrics/job/coebench/instance/<run>`, which replaces whatever that run pushed
//! before. Built on the runner's own hyper client (http and https).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};

use super::MetricsError;
use super::exporter::RunMetrics;
use crate::client::source::SourceAddresses;
use crate::client::transport;
use crate::credentials::redaction::redact_url_credentials;

/// How long a push may take.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// The push URL of run `run` on `gateway` (e.g. `http://pushgateway:9091`). A run name with a
/// `/`, or an empty one, is sent base64url-encoded, as the Pushgateway requires.
pub fn push_url(gateway: &str, run: &str) -> Result<Uri, MetricsError> {
    let bad = |reason: &str| MetricsError::PushUrl {
        url: redact_url_credentials(gateway),
        reason: reason.to_string(),
    };
    let base: Uri = gateway.parse().map_err(|_| bad("not a URL"))?;
    match base.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("use an http:// or https:// URL")),
    }
    if base.query().is_some() {
        return Err(bad("a query string is not allowed"));
    }
    let path = base.path().trim_end_matches('/');
    let instance = if run.is_empty() || run.contains('/') {
        format!("instance@base64/{}", base64url(run.as_bytes()))
    } else {
        format!("instance/{}", percent_encode(run))
    };
    let authority = base.authority().ok_or_else(|| bad("no host"))?;
    format!(
        "{}://{authority}{path}/metrics/job/coebench/{instance}",
        base.scheme_str().unwrap_or("http")
    )
    .parse()
    .map_err(|_| bad("the run name does not make a valid URL"))
}

/// Pushes `metrics` (Prometheus text format) for run `run` to `gateway`.
pub async fn push(gateway: &str, run: &str, metrics: &RunMetrics) -> Result<(), MetricsError> {
    let url = push_url(gateway, run)?;
    // The gateway URL may carry basic-auth credentials: messages and logs never show them.
    let shown = redact_url_credentials(&url.to_string());
    let body = metrics.encode(None).map_err(|_| MetricsError::Encode)?;
    let request = Request::builder()
        .method(Method::PUT)
        .uri(url.clone())
        .header(header::CONTENT_TYPE, body.content_type)
        .body(Full::new(Bytes::from(body.body)))
        .map_err(|e| MetricsError::Push {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
    let client =
        transport::build(None, &SourceAddresses::default()).map_err(|e| MetricsError::Push {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .result
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Ok::<(StatusCode, String), String>((status, text))
    };
    let (status, text) = tokio::time::timeout(PUSH_TIMEOUT, exchange)
        .await
        .map_err(|_| MetricsError::Push {
            url: shown.clone(),
            reason: format!("no answer within {} s", PUSH_TIMEOUT.as_secs()),
        })?
        .map_err(|reason| MetricsError::Push {
            url: shown.clone(),
            reason,
        })?;
    if status.is_success() {
        tracing::info!(url = %shown, "pushed the run's metrics to the Pushgateway");
        Ok(())
    } else {
        // Redacted whole, then cut: a cut first could split a credential the reply echoes.
        let mut text = redact_url_credentials(text.trim());
        let mut cut = text.len().min(200);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        Err(MetricsError::Push {
            url: shown.clone(),
            reason: format!("HTTP {status}: {text}"),
        })
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Base64url with padding (RFC 4648 section 5), as the Pushgateway's `@base64` suffix expects;
/// `=` for an empty value.
fn base64url(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "=".to_string();
    }
    coebench_support::base64::encode(bytes, coebench_support::base64::Alphabet::UrlSafe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::labels::RunLabels;
    use std::sync::{Arc, Mutex};
    use tokio::net::TcpListener;

    #[test]
    fn urls_name_the_job_and_the_run() {
        assert_eq!(
            push_url("http://pg:9091", "nightly-3").unwrap().to_string(),
            "http://pg:9091/metrics/job/coebench/instance/nightly-3"
        );
        assert_eq!(
            push_url("https://pg.example/prefix/", "a b")
                .unwrap()
                .to_string(),
            "https://pg.example/prefix/metrics/job/coebench/instance/a%20b"
        );
        assert_eq!(
            push_url("http://pg:9091", "a/b").unwrap().to_string(),
            "http://pg:9091/metrics/job/coebench/instance@base64/YS9i"
        );
        assert!(push_url("pg:9091", "r").is_err());
        assert!(push_url("ftp://pg", "r").is_err());
        assert_eq!(base64url(b""), "=");
        assert_eq!(base64url(b"ab"), "YWI=");
        assert_eq!(base64url(b"\xfb\xff"), "-_8=");
    }

    #[derive(Debug, Default, Clone)]
    struct Captured {
        method: String,
        path: String,
        content_type: String,
        body: String,
    }

    /// A one-route server that records each request and answers `status`.
    async fn capture_server(status: u16) -> (String, Arc<Mutex<Vec<Captured>>>) {
        use hyper::body::Incoming;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let log = Arc::clone(&log);
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            log.lock().unwrap().push(Captured {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_string(),
                                content_type: parts
                                    .headers
                                    .get(header::CONTENT_TYPE)
                                    .map(|v| v.to_str().unwrap().to_string())
                                    .unwrap_or_default(),
                                body: String::from_utf8(body.to_vec()).unwrap(),
                            });
                            let mut response = hyper::Response::new(Full::new(Bytes::from(
                                "push refused: inconsistent help",
                            )));
                            *response.status_mut() = StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (format!("http://{addr}"), seen)
    }

    #[tokio::test]
    async fn a_push_puts_the_text_format_under_the_run() {
        let (gateway, seen) = capture_server(200).await;
        let metrics = RunMetrics::new(RunLabels {
            namespace: "perf".into(),
            ..RunLabels::default()
        });
        push(&gateway, "nightly-3", &metrics).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, "PUT");
        assert_eq!(seen[0].path, "/metrics/job/coebench/instance/nightly-3");
        assert!(seen[0].content_type.contains("version=0.0.4"), "{seen:?}");
        assert!(
            seen[0].body.contains("# TYPE coebench_runner_info gauge"),
            "{}",
            seen[0].body
        );
        assert!(!seen[0].body.contains("# EOF"));
    }

    #[tokio::test]
    async fn a_refused_push_is_an_error_quoting_the_gateway() {
        let (gateway, _) = capture_server(400).await;
        let metrics = RunMetrics::new(RunLabels::default());
        let err = push(&gateway, "r", &metrics).await.unwrap_err().to_string();
        assert!(err.contains("HTTP 400"), "{err}");
        assert!(err.contains("inconsistent help"), "{err}");
    }
}
