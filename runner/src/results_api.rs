//! The results channel to the operator: each finished row's headline numbers written to the
//! run's results ConfigMaps through the Kubernetes API, as the row finishes.
//!
//! The operator creates the ConfigMaps empty (named by
//! [`results_config_map_name`](coebench_plan::report::results_config_map_name)) and gives the
//! runner's Pod a ServiceAccount that may `get` and `patch` those ConfigMaps and nothing else.
//! [`ResultsPublisher`] is a [`RunObserver`]: `row_finished` queues the row's
//! [`RowReport`]; a background task adds it under its key
//! ([`results_row_key`](coebench_plan::report::results_row_key)) with a JSON merge patch,
//! several queued rows in one patch, retrying what can succeed later (connection failures,
//! 429, 5xx) with backoff. A row that cannot be written is logged and counted, never fatal:
//! the row's files on the volume and the termination report still hold it. The
//! ServiceAccount's token is read from its file before every patch (the kubelet rotates it)
//! and never logged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::engine::observer::RunObserver;
use crate::output::row_files::RowFilePaths;
use crate::statistics::summary::RowSummary;
use coebench_plan::report::{
    RowReport, results_config_map_name, results_row_key, results_shard_of,
};

/// Where a Pod's ServiceAccount files are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Attempts per patch before its rows are given up.
const ATTEMPTS: u32 = 6;
/// Wait before the first retry; doubled after each, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// Time allowed for one patch request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How the runner reaches the Kubernetes API.
#[derive(Debug, Clone)]
pub struct ApiAccess {
    /// The API server's base URL (`https://host:port`, or `http://` for a local test server).
    pub base: Uri,
    /// The namespace of the run's ConfigMaps.
    pub namespace: String,
    /// A file holding the bearer token; `None` sends no `Authorization` header.
    pub token_file: Option<PathBuf>,
    /// The CA bundle (PEM) the server's certificate must chain to; `None` trusts the public
    /// web roots.
    pub ca_file: Option<PathBuf>,
}

/// Why the results channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Not inside a Pod and no API address given.
    #[error(
        "--publish-results needs the Kubernetes API: {0} is not set (outside a Pod, pass --kube-api URL and --kube-namespace NAME)"
    )]
    NotInCluster(&'static str),
    /// A file of the ServiceAccount could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The API URL is not one.
    #[error("--kube-api {url:?} is not an http(s) URL: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA bundle holds no usable certificate.
    #[error("{path} holds no usable CA certificate: {reason}")]
    Ca {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ApiAccess {
    /// The access of a Pod: `KUBERNETES_SERVICE_HOST`/`_PORT` and the ServiceAccount's token,
    /// CA and namespace files, each overridable (`api`, `namespace`, `token_file`).
    pub fn resolve(
        env: &dyn Fn(&str) -> Option<String>,
        api: Option<&str>,
        namespace: Option<&str>,
        token_file: Option<PathBuf>,
    ) -> Result<Self, PublishError> {
        let sa = PathBuf::from(SERVICE_ACCOUNT_DIR);
        let url = match api {
            Some(url) => url.to_string(),
            None => {
                let host = env("KUBERNETES_SERVICE_HOST")
                    .ok_or(PublishError::NotInCluster("KUBERNETES_SERVICE_HOST"))?;
                let port = env("KUBERNETES_SERVICE_PORT").unwrap_or_else(|| "443".into());
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                format!("https://{host}:{port}")
            }
        };
        let base: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| PublishError::Url {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if !matches!(base.scheme_str(), Some("http" | "https")) || base.host().is_none() {
            return Err(PublishError::Url {
                url,
                reason: "it needs a scheme (http or https) and a host".into(),
            });
        }
        let namespace = match namespace {
            Some(ns) => ns.to_string(),
            None if api.is_some() => return Err(PublishError::NotInCluster("--kube-namespace")),
            None => read_trimmed(&sa.join("namespace"))?,
        };
        let in_pod = api.is_none();
        Ok(ApiAccess {
            base,
            namespace,
            token_file: token_file.or_else(|| in_pod.then(|| sa.join("token"))),
            ca_file: in_pod.then(|| sa.join("ca.crt")),
        })
    }
}

fn read_trimmed(path: &std::path::Path) -> Result<String, PublishError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| PublishError::Read {
            path: path.display().to_string(),
            source,
        })
}

/// What the publisher wrote, once it finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Rows written to their ConfigMap.
    pub rows: usize,
    /// Rows given up (logged with the server's answer).
    pub failed: usize,
}

/// Writes each finished row to the run's results ConfigMaps (see the module docs).
pub struct ResultsPublisher {
    queue: Mutex<Option<mpsc::UnboundedSender<(usize, RowReport)>>>,
    task: Mutex<Option<JoinHandle<Published>>>,
}

impl ResultsPublisher {
    /// Starts the background writer for the ConfigMaps of `run`; call it inside the runtime.
    pub fn start(access: ApiAccess, run: &str) -> Result<Arc<Self>, PublishError> {
        let writer = Writer::new(access, run)?;
        let (queue, rows) = mpsc::unbounded_channel();
        let task = tokio::spawn(writer.drain(rows));
        Ok(Arc::new(ResultsPublisher {
            queue: Mutex::new(Some(queue)),
            task: Mutex::new(Some(task)),
        }))
    }

    /// Queues one row (what [`RunObserver::row_finished`] does).
    pub fn publish(&self, row_index: usize, row: RowReport) {
        if let Some(queue) = self.queue.lock().expect("publisher queue").as_ref() {
            // The writer ends only after the queue closes, so a send cannot fail before.
            let _ = queue.send((row_index, row));
        }
    }

    /// Waits until every queued row is written or given up; later rows are ignored.
    pub async fn finish(&self) -> Published {
        self.queue.lock().expect("publisher queue").take();
        let task = self.task.lock().expect("publisher task").take();
        match task {
            Some(task) => task.await.unwrap_or_default(),
            None => Published::default(),
        }
    }
}

impl RunObserver for ResultsPublisher {
    fn row_finished(&self, summary: &RowSummary, _files: Option<&RowFilePaths>) {
        self.publish(summary.row_index, summary.row_report());
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The background half: sends the patches.
struct Writer {
    client: HttpsClient,
    access: ApiAccess,
    run: String,
    published: Published,
}

/// How one patch ended.
enum Answer {
    Written,
    /// Worth another attempt: the reason.
    Retry(String),
    /// Will never succeed: the reason.
    GiveUp(String),
}

impl Writer {
    fn new(access: ApiAccess, run: &str) -> Result<Self, PublishError> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let provider = rustls::crypto::ring::default_provider();
        let tls_error = |reason: String| PublishError::Ca {
            path: "the TLS settings".into(),
            reason,
        };
        let builder = match &access.ca_file {
            Some(path) => {
                let ca_error = |reason: String| PublishError::Ca {
                    path: path.display().to_string(),
                    reason,
                };
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| ca_error(e.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ca_error(e.to_string()))?;
                let mut roots = rustls::RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(ca_error("no certificate in it parses".into()));
                }
                let tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| tls_error(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                builder.with_tls_config(tls)
            }
            None => builder
                .with_provider_and_webpki_roots(provider)
                .map_err(|e| tls_error(e.to_string()))?,
        };
        let https = builder.https_or_http().enable_http1().build();
        Ok(Writer {
            client: Client::builder(TokioExecutor::new()).build(https),
            access,
            run: run.to_string(),
            published: Published::default(),
        })
    }

    /// Writes rows as they come, all those waiting in one patch per ConfigMap.
    async fn drain(mut self, mut rows: mpsc::UnboundedReceiver<(usize, RowReport)>) -> Published {
        while let Some(first) = rows.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = rows.try_recv() {
                batch.push(more);
            }
            let mut by_shard: BTreeMap<usize, Vec<(usize, RowReport)>> = BTreeMap::new();
            for (index, row) in batch {
                by_shard
                    .entry(results_shard_of(index))
                    .or_default()
                    .push((index, row));
            }
            for (shard, rows) in by_shard {
                self.write(shard, &rows).await;
            }
        }
        self.published
    }

    /// One merge patch adding `rows` to ConfigMap `shard`, retried with backoff.
    async fn write(&mut self, shard: usize, rows: &[(usize, RowReport)]) {
        let name = results_config_map_name(&self.run, shard);
        let data: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(index, row)| {
                let json = serde_json::to_string(row).expect("a row report always serializes");
                (results_row_key(*index), serde_json::Value::String(json))
            })
            .collect();
        let body = serde_json::json!({ "data": data }).to_string();
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        let reason = loop {
            match self.patch(&name, &body).await {
                Answer::Written => {
                    self.published.rows += rows.len();
                    tracing::debug!(config_map = %name, rows = rows.len(), "published rows");
                    return;
                }
                Answer::GiveUp(reason) => break reason,
                Answer::Retry(reason) if attempt >= ATTEMPTS => break reason,
                Answer::Retry(reason) => {
                    tracing::debug!(config_map = %name, attempt, %reason, "retrying the results patch");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
            }
        };
        self.published.failed += rows.len();
        let first = rows.first().map(|(i, _)| *i).unwrap_or_default();
        tracing::warn!(
            config_map = %name,
            rows = rows.len(),
            first_row = first,
            "cannot publish rows to ConfigMap {}/{name}: {reason}; their numbers are in the row files and the run report",
            self.access.namespace
        );
    }

    async fn patch(&self, name: &str, body: &str) -> Answer {
        let base = self.access.base.to_string();
        let url = format!(
            "{}/api/v1/namespaces/{}/configmaps/{name}",
            base.trim_end_matches('/'),
            self.access.namespace
        );
        let mut request = Request::builder()
            .method(Method::PATCH)
            .uri(&url)
            .header(CONTENT_TYPE, "application/merge-patch+json");
        if let Some(path) = &self.access.token_file {
            match std::fs::read_to_string(path) {
                Ok(token) => {
                    let mut value =
                        match http::HeaderValue::from_str(&format!("Bearer {}", token.trim())) {
                            Ok(value) => value,
                            Err(_) => {
                                return Answer::GiveUp(format!(
                                    "the token in {} is not a valid header value",
                                    path.display()
                                ));
                            }
                        };
                    value.set_sensitive(true);
                    request = request.header(AUTHORIZATION, value);
                }
                Err(e) => return Answer::Retry(format!("cannot read {}: {e}", path.display())),
            }
        }
        let request = match request.body(Full::new(Bytes::from(body.to_string()))) {
            Ok(request) => request,
            Err(e) => return Answer::GiveUp(format!("cannot build the request: {e}")),
        };
        let sent = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request)).await;
        let response = match sent {
            Err(_) => return Answer::Retry(format!("no answer within {REQUEST_TIMEOUT:?}")),
            Ok(Err(e)) => return Answer::Retry(format!("cannot reach {base}: {e}")),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Answer::Written;
        }
        let text = match tokio::time::timeout(REQUEST_TIMEOUT, response.into_body().collect()).await
        {
            Ok(Ok(body)) => server_message(&body.to_bytes()),
            _ => String::new(),
        };
        let reason = format!("the API server answered {status}{text}");
        if status.as_u16() == 429 || status.is_server_error() {
            Answer::Retry(reason)
        } else {
            Answer::GiveUp(reason)
        }
    }
}

/// The `message` of a `metav1.Status` answer (at most 300 bytes), prefixed for a log line.
fn server_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let mut message = message.trim().to_string();
    if message.len() > 300 {
        let mut cut = 300;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn outside_a_pod_the_api_must_be_named() {
        let err = ApiAccess::resolve(&env(&[]), None, None, None).unwrap_err();
        assert!(err.to_string().contains("KUBERNETES_SERVICE_HOST"), "{err}");
        assert!(err.to_string().contains("--kube-api"), "{err}");
        let err =
            ApiAccess::resolve(&env(&[]), Some("http://127.0.0.1:1"), None, None).unwrap_err();
        assert!(err.to_string().contains("--kube-namespace"), "{err}");
        let err = ApiAccess::resolve(&env(&[]), Some("ftp://h"), Some("ns"), None).unwrap_err();
        assert!(err.to_string().contains("not an http(s) URL"), "{err}");
    }

    #[test]
    fn a_named_api_takes_no_pod_files() {
        let access =
            ApiAccess::resolve(&env(&[]), Some("http://127.0.0.1:8001"), Some("ns"), None).unwrap();
        assert_eq!(access.base, "http://127.0.0.1:8001/");
        assert_eq!(access.namespace, "ns");
        assert!(access.token_file.is_none() && access.ca_file.is_none());
    }

    #[test]
    fn in_a_pod_the_service_address_is_used_ipv6_in_brackets() {
        // The namespace file is absent here, which is the error, after the URL was accepted.
        let err = ApiAccess::resolve(
            &env(&[
                ("KUBERNETES_SERVICE_HOST", "fd00::1"),
                ("KUBERNETES_SERVICE_PORT", "443"),
            ]),
            None,
            None,
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("serviceaccount/namespace"),
            "{err}"
        );
    }

    #[test]
    fn server_messages_are_quoted_short() {
        let body = br#"{"kind":"Status","message":"configmaps \"x\" is forbidden"}"#;
        assert_eq!(server_message(body), r#": configmaps "x" is forbidden"#);
        assert_eq!(server_message(b""), "");
        assert!(server_message("é".repeat(400).as_bytes()).len() <= 2 + 300 + 3);
    }
}
