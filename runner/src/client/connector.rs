//! The client's TCP connector: hyper's, with every connection a
//! [`TimestampedStream`](coebench_support::socket_time::TimestampedStream) whose
//! [`SocketTimes`](coebench_support::socket_time::SocketTimes) reach each response through its extensions,
//! so [`super::exchange`] can time a request from the write of its first byte and each body
//! frame from the kernel's receipt of its bytes. It only connects; TLS is layered on top by
//! [`super::transport`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tower_service::Service;

use coebench_support::socket_time::TimestampedStream;

/// [`HttpConnector`] yielding timestamped connections.
#[derive(Debug, Clone)]
pub(crate) struct TimedConnector(pub HttpConnector);

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

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let tcp = connecting.await.map_err(BoxError::from)?.into_inner();
            Ok(TokioIo::new(TimedConnection(TimestampedStream::new(tcp)?)))
        })
    }
}
