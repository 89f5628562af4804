//! The client's TCP connector: hyper's, with every connection a
//! [`TimestampedStream`](coebench_support::socket_time::TimestampedStream) whose
//! [`SocketTimes`](coebench_support::socket_time::SocketTimes) reach each response through its extensions,
//! so [`super::exchange`] can time a request from the write of its first byte and each body
//! frame from the kernel's receipt of its bytes. Given several source addresses, it binds each
//! new connection to the next one in turn. It only connects; TLS is layered on top by
//! [`super::transport`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tower_service::Service;

use coebench_support::socket_time::TimestampedStream;

/// [`HttpConnector`]s yielding timestamped connections, one per source address, used in turn.
#[derive(Debug, Clone)]
pub(crate) struct TimedConnector {
    connectors: Arc<[HttpConnector]>,
    next: Arc<AtomicUsize>,
}

impl TimedConnector {
    /// Connects through `connectors` in turn (at least one).
    pub(crate) fn new(connectors: Vec<HttpConnector>) -> Self {
        assert!(!connectors.is_empty(), "at least one connector");
        TimedConnector {
            connectors: connectors.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// A connection with its socket times; `Connection` hands them to every response.
#[derive(Debug)]
pub(crate) struct TimedConnection(TimestampedStream);

impl Connection for TimedConnection {
    fn connected(&self) -> Connected {
        Connected::new().extra(self.0.times())
    }
}

impl tokio::io::AsyncRead for TimedConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TimedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Uri> for TimedConnector {
    type Response = TokioIo<TimedConnection>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // `HttpConnector` is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.connectors.len();
        let connecting = self.connectors[turn].clone().call(uri);
        Box::pin(async move {
            let tcp = connecting.await.map_err(BoxError::from)?.into_inner();
            Ok(TokioIo::new(TimedConnection(TimestampedStream::new(tcp)?)))
        })
    }
}
