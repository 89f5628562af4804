//! When a request really left: a connector wrapper whose connections note the instant the first
//! byte of each request is handed to the socket, and hand that note to every response through
//! its extensions ([`WriteStamp`]).
//!
//! Under load a request task can take its start stamp long before the connection task gets to
//! write the request (the runtime runs other ready tasks first); timing from that stamp would
//! add the client's own queueing to TTFT and end-to-end latency. HTTP/1.1 connections carry
//! one request at a time, so "the first write since the connection last read" is the current
//! request's first byte. It only stamps; [`super::exchange`] decides what to do with it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};

/// Where one connection keeps the instant its current request's first byte was written.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteStamp(Arc<AtomicU64>);

/// Instants are stored as nanoseconds after this origin, plus one (0 means none yet).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl WriteStamp {
    /// When the current request's first byte was written, if it has been.
    pub(crate) fn written_at(&self) -> Option<Instant> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            n => origin().checked_add(Duration::from_nanos(n - 1)),
        }
    }

    fn set(&self, at: Instant) {
        let nanos = u64::try_from(at.saturating_duration_since(origin()).as_nanos())
            .unwrap_or(u64::MAX - 1);
        self.0.store(nanos + 1, Ordering::Release);
    }
}

/// A connection that stamps the first write after each read.
#[derive(Debug)]
pub(crate) struct StampedIo<T> {
    inner: T,
    stamp: WriteStamp,
    /// Nothing written since the last read: the next write starts a request.
    fresh: bool,
}

impl<T: Read + Unpin> Read for StampedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) {
            self.fresh = true;
        }
        result
    }
}

impl<T: Write + Unpin> Write for StampedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let at = self.fresh.then(Instant::now);
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(at, &result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let at = self.fresh.then(Instant::now);
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(at, &result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T> StampedIo<T> {
    /// Keeps `at` (taken just before the write) when the write put bytes on the socket.
    fn note(&mut self, at: Option<Instant>, result: &Poll<std::io::Result<usize>>) {
        if let (Some(at), Poll::Ready(Ok(n))) = (at, result)
            && *n > 0
        {
            self.stamp.set(at);
            self.fresh = false;
        }
    }
}

impl<T: Connection> Connection for StampedIo<T> {
    fn connected(&self) -> Connected {
        self.inner.connected().extra(self.stamp.clone())
    }
}

/// Wraps a connector so its connections are [`StampedIo`].
#[derive(Debug, Clone)]
pub(crate) struct Stamped<C>(pub C);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> tower_service::Service<Uri> for Stamped<C>
where
    C: tower_service::Service<Uri> + Send,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
    C::Response: Send,
{
    type Response = StampedIo<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let inner = connecting.await.map_err(Into::into)?;
            // Fix the origin before the first write is stamped, so no stamp predates it.
            let _ = origin();
            Ok(StampedIo {
                inner,
                stamp: WriteStamp::default(),
                fresh: true,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_start_empty() {
        let stamp = WriteStamp::default();
        assert_eq!(stamp.written_at(), None);
        let _ = origin();
        let now = Instant::now();
        stamp.set(now);
        let back = stamp.written_at().unwrap();
        assert!(back <= now && now.duration_since(back) < Duration::from_micros(1));
    }
}
