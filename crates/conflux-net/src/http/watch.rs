//! Per-connection timing for the HTTP server: the stream wrapper notes when
//! bytes move, the service notes requests in flight, and the connection task
//! sleeps until the nearest deadline.
//!
//! - header timeout: from the first byte read while no request is in flight
//!   until hyper hands the parsed request to the service (its start moves the
//!   deadline earlier, so it wakes the connection task);
//! - idle timeout: no bytes read or written for that long, with or without a
//!   request in flight (a handler waits on its body, or a client never reads
//!   its response).
//!
//! Everything here runs on the connection's own task; the atomics only make
//! the state shareable, and `Relaxed` suffices.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::HttpConfig;

/// Why [`ConnState::deadline`] closes a connection reading a request head too slowly.
pub(super) const HEADER_TIMEOUT: &str = "request header timeout";

/// Timing state of one connection; times are nanoseconds since `base`.
pub(super) struct ConnState {
    base: Instant,
    last_io: AtomicU64,
    /// When the head of the next request began, plus one; 0 when none is
    /// being read.
    head_since: AtomicU64,
    in_flight: AtomicUsize,
    /// Woken when a deadline moves earlier (a request head begins).
    earlier: Notify,
}

impl ConnState {
    pub(super) fn new() -> ConnState {
        ConnState {
            base: Instant::now(),
            last_io: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            earlier: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn on_read(&self) {
        let now = self.now();
        self.last_io.store(now, Relaxed);
        if self.in_flight.load(Relaxed) == 0 && self.head_since.load(Relaxed) == 0 {
            self.head_since.store(now.saturating_add(1), Relaxed);
            self.earlier.notify_one();
        }
    }

    fn on_write(&self) {
        self.last_io.store(self.now(), Relaxed);
    }

    /// Resolves when the nearest deadline may have moved earlier.
    pub(super) async fn deadline_moved(&self) {
        self.earlier.notified().await;
    }

    /// The nearest deadline and what it is for.
    pub(super) fn deadline(&self, cfg: &HttpConfig) -> (Instant, &'static str) {
        let at = |nanos: u64, after: Duration| self.base + Duration::from_nanos(nanos) + after;
        let idle = (
            at(self.last_io.load(Relaxed), cfg.idle_timeout),
            "idle timeout",
        );
        match self.head_since.load(Relaxed) {
            0 => idle,
            since => {
                let head = (at(since - 1, cfg.header_read_timeout), HEADER_TIMEOUT);
                if head.0 < idle.0 { head } else { idle }
            }
        }
    }
}

/// A request in flight, from the service call until its response is ready
/// (or the request is dropped).
pub(super) struct InFlight(Arc<ConnState>);

impl InFlight {
    pub(super) fn start(state: Arc<ConnState>) -> InFlight {
        state.in_flight.fetch_add(1, Relaxed);
        state.head_since.store(0, Relaxed);
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
        self.0.on_write();
    }
}

/// The connection's stream, noting every read and write that moves bytes.
pub(super) struct Watched<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S, state: Arc<ConnState>) -> Watched<S> {
        Watched { inner, state }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.on_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.state.on_write();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.state.on_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn cfg() -> HttpConfig {
        HttpConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            ..HttpConfig::default()
        }
    }

    #[test]
    fn idle_deadline_until_a_request_begins() {
        let s = ConnState::new();
        let (d, why) = s.deadline(&cfg());
        assert_eq!(why, "idle timeout");
        assert_eq!(d, s.base + Duration::from_secs(300));
        s.on_read();
        assert_eq!(s.deadline(&cfg()).1, "request header timeout");
    }

    #[test]
    fn request_in_flight_clears_the_header_deadline() {
        let s = Arc::new(ConnState::new());
        s.on_read();
        let req = InFlight::start(s.clone());
        assert_eq!(s.deadline(&cfg()).1, "idle timeout");
        // Body bytes read while the request runs do not start a header clock.
        s.on_read();
        assert_eq!(s.deadline(&cfg()).1, "idle timeout");
        drop(req);
        assert_eq!(s.in_flight.load(Relaxed), 0);
        s.on_read();
        assert_eq!(s.deadline(&cfg()).1, "request header timeout");
    }
}
