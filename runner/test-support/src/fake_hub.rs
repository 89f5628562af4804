//! A Hugging Face hub on loopback for tests of tokenizer downloads: plain threads serving
//! `GET /<repo>/resolve/<revision>/<file>` as the hub does for the `hf-hub` client (a
//! `Range: bytes=0-0` probe answered 206 with `x-repo-commit`, `etag` and `content-range`, then
//! the ranged download), 404 for unknown repositories or files, and 401 for a gated repository
//! asked without its token. Every request is recorded (path, and whether the right token came;
//! never the token itself).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One repository the hub serves.
#[derive(Debug, Clone)]
pub struct HubRepo {
    /// `owner/name`.
    pub name: String,
    /// Files by name.
    pub files: HashMap<String, Vec<u8>>,
    /// The token a gated repository requires; `None` for a public one.
    pub token: Option<String>,
}

/// A request the hub received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRequest {
    /// The request path.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// Whether an `Authorization` header came.
    pub authorized: bool,
    /// The status answered.
    pub status: u16,
}

/// A running hub on a free loopback port; its thread stops with the process.
pub struct FakeHub {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<HubRequest>>>,
}

impl FakeHub {
    /// Serves `repos` until the process ends.
    pub fn start(repos: Vec<HubRepo>) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let repos: Arc<HashMap<String, HubRepo>> =
            Arc::new(repos.into_iter().map(|r| (r.name.clone(), r)).collect());
        let log = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let repos = Arc::clone(&repos);
                let log = Arc::clone(&log);
                std::thread::spawn(move || serve(stream, &repos, &log));
            }
        });
        FakeHub { addr, requests }
    }

    /// The hub's base URL, for `HF_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<HubRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Answers the requests of one connection (the client may keep it alive).
fn serve(stream: TcpStream, repos: &HashMap<String, HubRepo>, log: &Mutex<Vec<HubRequest>>) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_lowercase(), value.trim().to_string());
            }
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        let range = headers.get("range").cloned();
        let authorization = headers.get("authorization").cloned();
        let (status, extra, body) = answer(repos, &path, range.as_deref(), authorization);
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(HubRequest {
                path,
                range,
                authorized: headers.contains_key("authorization"),
                status,
            });
        let reason = match status {
            200 => "OK",
            206 => "Partial Content",
            401 => "Unauthorized",
            _ => "Not Found",
        };
        let mut head = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&body).is_err() {
            return;
        }
    }
}

/// Status, extra headers and body of one request.
fn answer(
    repos: &HashMap<String, HubRepo>,
    path: &str,
    range: Option<&str>,
    authorization: Option<String>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let not_found = |code: &str| {
        (
            404,
            vec![("x-error-code".to_string(), code.to_string())],
            b"{\"error\":\"not found\"}".to_vec(),
        )
    };
    let Some((repo, rest)) = path.trim_start_matches('/').split_once("/resolve/") else {
        return not_found("EntryNotFound");
    };
    let Some(repo) = repos.get(repo) else {
        return not_found("RepoNotFound");
    };
    if let Some(token) = &repo.token
        && authorization.as_deref() != Some(&format!("Bearer {token}"))
    {
        return (
            401,
            vec![("x-error-code".to_string(), "GatedRepo".to_string())],
            b"{\"error\":\"Access to this model is restricted\"}".to_vec(),
        );
    }
    let Some((_revision, file)) = rest.split_once('/') else {
        return not_found("EntryNotFound");
    };
    let Some(content) = repo.files.get(file) else {
        return not_found("EntryNotFound");
    };
    let len = content.len();
    let mut headers = vec![
        (
            "x-repo-commit".to_string(),
            "0123456789abcdef0123456789abcdef01234567".to_string(),
        ),
        (
            "etag".to_string(),
            format!("\"{len:x}-{}\"", checksum(content)),
        ),
    ];
    let start = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse::<usize>().ok());
    match (start, range.is_some_and(|r| r.ends_with("-0"))) {
        (Some(0), true) => {
            headers.push(("content-range".into(), format!("bytes 0-0/{len}")));
            (206, headers, content[..len.min(1)].to_vec())
        }
        (Some(from), _) if from <= len => {
            headers.push((
                "content-range".into(),
                format!("bytes {from}-{}/{len}", len.saturating_sub(1)),
            ));
            (206, headers, content[from..].to_vec())
        }
        _ => (200, headers, content.clone()),
    }
}

/// A stable digest of `content`, for its etag (FNV-1a).
fn checksum(content: &[u8]) -> String {
    let hash = content.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}
