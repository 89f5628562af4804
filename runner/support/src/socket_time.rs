//! Socket-level timestamps: a [`TimestampedStream`] is a TCP stream whose reads carry the
//! kernel's receive time of the bytes (`SO_TIMESTAMPNS`) and which notes the first write after
//! each read (on an HTTP/1.1 connection, the first byte of a request). Its [`SocketTimes`] are
//! shared with whoever needs them: the simulator's handler (a request's true arrival), and the
//! client's exchange, through the response's extensions (when a request really left, and when
//! the bytes of each body frame really arrived, whatever the runtime was busy with meanwhile).
//!
//! It only notes times; deciding what they mean for a metric is the caller's job. Where receive
//! timestamps are unavailable, reads are plain and only write times are noted. Unix only (the
//! runner's platforms).

use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Instants are stored as nanoseconds after this origin, plus one (0 means none yet).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// What one connection noted; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct SocketTimes(Arc<Times>);

#[derive(Debug, Default)]
struct Times {
    /// The first write after the latest read: nanoseconds after [`origin`] + 1.
    first_write: AtomicU64,
    /// The kernel's receive time of the latest bytes read, Unix nanoseconds (0: none).
    received_ns: AtomicI64,
    /// Bytes were read since the first write after the previous read (a request's answer began).
    read_since_write: AtomicBool,
    /// The next write starts a new message although nothing was read since the last write.
    new_message: AtomicBool,
}

impl SocketTimes {
    /// When the first byte written since the connection last read was handed to the socket.
    pub fn first_write(&self) -> Option<Instant> {
        match self.0.first_write.load(Ordering::Acquire) {
            0 => None,
            n => origin().checked_add(Duration::from_nanos(n - 1)),
        }
    }

    /// Whether any byte arrived since the latest message began to be written (on an HTTP/1.1
    /// connection: whether the current request got any byte of an answer).
    pub fn read_since_write(&self) -> bool {
        self.0.read_since_write.load(Ordering::Acquire)
    }

    /// When the kernel received the latest bytes read, Unix microseconds.
    pub fn received_unix_us(&self) -> Option<i64> {
        match self.0.received_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(ns / 1_000),
        }
    }

    /// When the kernel received the latest bytes read, as an [`Instant`] no later than `now`
    /// (read together with the wall clock, which the kernel's timestamp is in); `now` when
    /// there is no timestamp or it is implausible (more than a second old).
    pub fn received_before(&self, now: Instant) -> Instant {
        let ns = self.0.received_ns.load(Ordering::Acquire);
        let wall_ns = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        match u64::try_from(wall_ns.saturating_sub(ns)) {
            Ok(age) if ns > 0 && age < 1_000_000_000 => {
                now.checked_sub(Duration::from_nanos(age)).unwrap_or(now)
            }
            _ => now,
        }
    }

    /// Makes the next write start a new message (noted as [`SocketTimes::first_write`]) even
    /// though nothing was read since the last one: a TLS client's handshake ends with its own
    /// write (TLS 1.3's Finished), so its first request follows a write, not a read. Call it
    /// once the handshake is done.
    pub fn expect_new_message(&self) {
        self.0.new_message.store(true, Ordering::Release);
    }

    fn note_write(&self, at: Instant) {
        self.0.new_message.store(false, Ordering::Release);
        let nanos = u64::try_from(at.saturating_duration_since(origin()).as_nanos())
            .unwrap_or(u64::MAX - 1);
        self.0.first_write.store(nanos + 1, Ordering::Release);
        self.0.read_since_write.store(false, Ordering::Release);
    }
}

/// A TCP stream noting [`SocketTimes`]. It drives the socket itself (tokio's `AsyncFd`) so a
/// read that leaves the socket drained clears its readiness without a second, empty read.
#[derive(Debug)]
pub struct TimestampedStream {
    fd: AsyncFd<std::net::TcpStream>,
    times: SocketTimes,
    /// Nothing written since the last read: the next write starts a new message.
    fresh: bool,
}

impl TimestampedStream {
    /// Wraps `stream`, turning receive timestamps on where the platform allows.
    pub fn new(stream: TcpStream) -> std::io::Result<Self> {
        let stream = stream.into_std()?;
        // Without timestamps reads still work; only the kernel's receive times are missing.
        let _ = crate::sys::enable_receive_timestamps(stream.as_raw_fd());
        let _ = origin();
        Ok(TimestampedStream {
            fd: crate::sys::register_stream(stream)?,
            times: SocketTimes::default(),
            fresh: true,
        })
    }

    /// The times this stream notes.
    pub fn times(&self) -> SocketTimes {
        self.times.clone()
    }

    fn noted_write(&mut self, at: Option<Instant>, result: &std::io::Result<usize>) {
        if let (Some(at), Ok(n)) = (at, result)
            && *n > 0
        {
            self.times.note_write(at);
            self.fresh = false;
        }
    }

    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        write: impl Fn(&std::net::TcpStream) -> std::io::Result<usize>,
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            let fresh = self.fresh || self.times.0.new_message.load(Ordering::Acquire);
            let at = fresh.then(Instant::now);
            match guard.try_io(|fd| write(fd.get_ref())) {
                Ok(result) => {
                    self.noted_write(at, &result);
                    return Poll::Ready(result);
                }
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncRead for TimestampedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.fd.poll_read_ready(cx))?;
            let wanted = buf.remaining();
            match crate::sys::recv_into(guard.get_inner().as_raw_fd(), buf) {
                Ok((n, at)) => {
                    if let Some(ns) = at.filter(|&ns| ns > 0) {
                        this.times.0.received_ns.store(ns, Ordering::Release);
                    }
                    if n > 0 {
                        this.times.0.read_since_write.store(true, Ordering::Release);
                    }
                    // A short read drained the socket (as tokio's own streams assume).
                    if n > 0 && n < wanted {
                        guard.clear_ready();
                    }
                    this.fresh = true;
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TimestampedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |mut fd| std::io::Write::write(&mut fd, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |mut fd| std::io::Write::write_vectored(&mut fd, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.fd.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connected pair of timestamped loopback streams (client, server).
    async fn pair() -> (TimestampedStream, TimestampedStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connect = tokio::spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let (server, _) = listener.accept().await.unwrap();
        let client = TimestampedStream::new(connect.await.unwrap()).unwrap();
        (client, TimestampedStream::new(server).unwrap())
    }

    #[tokio::test]
    async fn reads_carry_kernel_times_and_the_first_write_after_a_read_is_noted() {
        // The kernel turns receive timestamps on for the first socket that asks from a work
        // queue, a moment later: bytes that arrive before then carry none. When no other
        // process holds them on, wait (on another pair, kept open) until they are on.
        let (mut warm_client, mut warm_server) = pair().await;
        for _ in 0..200 {
            warm_client.write_all(b"x").await.unwrap();
            let mut byte = [0u8; 1];
            warm_server.read_exact(&mut byte).await.unwrap();
            if warm_server.times().received_unix_us().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        let (mut client, server) = pair().await;
        let times = client.times();
        let mut server = server;
        let server_times = server.times();
        assert!(times.first_write().is_none() && times.received_unix_us().is_none());

        let before = Instant::now();
        client.write_all(b"request").await.unwrap();
        client.write_all(b" more").await.unwrap();
        let first = times.first_write().unwrap();
        assert!(first >= before && first <= Instant::now());
        assert!(!times.read_since_write());

        let mut buf = [0u8; 12];
        server.read_exact(&mut buf).await.unwrap();
        let received = server_times.received_unix_us().expect("a kernel timestamp");
        let now_us = jiff::Timestamp::now().as_microsecond();
        assert!(received <= now_us && now_us - received < 1_000_000);

        server.write_all(b"answer").await.unwrap();
        let mut answer = [0u8; 6];
        client.read_exact(&mut answer).await.unwrap();
        assert!(times.read_since_write());
        let now = Instant::now();
        let arrived = times.received_before(now);
        assert!(arrived <= now && now.duration_since(arrived) < Duration::from_secs(1));
        // A write after that read is a new message.
        client.write_all(b"next").await.unwrap();
        assert!(times.first_write().unwrap() >= now);
        assert!(!times.read_since_write());
    }

    #[tokio::test]
    async fn a_write_after_a_write_starts_a_new_message_only_when_told() {
        let (mut client, _server) = pair().await;
        let times = client.times();
        client.write_all(b"handshake").await.unwrap();
        let handshake = times.first_write().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        client.write_all(b"more handshake").await.unwrap();
        assert_eq!(times.first_write(), Some(handshake));
        times.expect_new_message();
        let before = Instant::now();
        client.write_all(b"request").await.unwrap();
        let request = times.first_write().unwrap();
        assert!(request >= before, "the request's write was noted");
        client.write_all(b" body").await.unwrap();
        assert_eq!(times.first_write(), Some(request), "once");
    }
}
