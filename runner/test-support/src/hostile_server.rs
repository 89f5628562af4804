//! A hostile HTTP/1.1 server for tests of the `coebench` binary, on plain threads so a test
//! needs no runtime: every benchmark request (`POST`) gets the reply a handler computes from
//! it (an error echoing its headers, a stream that stalls), every `GET` an empty model list.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// A request as received.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request method.
    pub method: String,
    /// The request path with its query.
    pub path: String,
    /// Header names and values, in the order received.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server answers.
pub enum Reply {
    /// These bytes, then the connection stays usable.
    Bytes(Vec<u8>),
    /// These bytes, then nothing more until the client closes the connection.
    Stall(Vec<u8>),
    /// These bytes, then the server closes the connection.
    Close(Vec<u8>),
}

impl Reply {
    /// A complete response of `status` with a plain-text `body`.
    pub fn status(status: u16, body: &str) -> Reply {
        Reply::Bytes(
            format!(
                "HTTP/1.1 {status} Hostile\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }
}

/// Computes the reply to a benchmark request.
pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A hostile server on a loopback port; it stops accepting when dropped.
pub struct HostileServer {
    addr: SocketAddr,
    posts: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
}

impl HostileServer {
    /// Serves on a free loopback port until dropped.
    pub fn start(handler: Handler) -> std::io::Result<HostileServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let posts = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let (count, stop) = (Arc::clone(&posts), Arc::clone(&closed));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (handler, count) = (Arc::clone(&handler), Arc::clone(&count));
                std::thread::spawn(move || serve(stream, &handler, &count));
            }
        });
        Ok(HostileServer {
            addr,
            posts,
            closed,
        })
    }

    /// `http://<address><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Benchmark requests received so far.
    pub fn posts(&self) -> usize {
        self.posts.load(Ordering::SeqCst)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(stream: TcpStream, handler: &Handler, posts: &AtomicUsize) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut reader) else {
            return;
        };
        let reply = if request.method == "POST" {
            posts.fetch_add(1, Ordering::SeqCst);
            handler(&request)
        } else {
            let body = "{\"object\":\"list\",\"data\":[]}";
            Reply::Bytes(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
            )
        };
        match reply {
            Reply::Bytes(bytes) => {
                if writer.write_all(&bytes).is_err() {
                    return;
                }
            }
            Reply::Close(bytes) => {
                let _ = writer.write_all(&bytes);
                return;
            }
            Reply::Stall(bytes) => {
                let _ = writer.write_all(&bytes);
                // Hold the connection until the client closes it.
                let _ = reader
                    .get_ref()
                    .set_read_timeout(Some(Duration::from_secs(600)));
                let mut sink = [0u8; 256];
                while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
                return;
            }
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
    })
}
