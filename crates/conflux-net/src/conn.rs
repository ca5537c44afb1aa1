//! Accepting TCP connections: the one accept loop every TCP-based listener
//! (line server, HTTP server, or a listener that sniffs the first byte and
//! picks one) runs, and [`Prefixed`], which puts sniffed bytes back in front
//! of a stream.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use conflux_core::telemetry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::{Labels, ListenerError};

/// Pause after an accept error that is not about one connection (out of file
/// descriptors, out of memory), so the loop does not spin while it lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A bound TCP socket plus the accept loop around it: a cap on open
/// connections, one task per connection, connection self-metrics and a
/// shutdown that waits for every connection task.
///
/// Self-metrics (labels `listener`, `dialect`):
/// `conflux_listener_connections_total`, `conflux_listener_connections_open`,
/// `conflux_listener_connections_refused_total`.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    local_addr: SocketAddr,
    max_connections: usize,
    nodelay: bool,
    labels: Labels,
}

impl Acceptor {
    /// Bind `addr` now, so that a port conflict fails before anything runs.
    ///
    /// # Errors
    /// [`ListenerError::Bind`] when the address cannot be bound.
    pub async fn bind(
        addr: SocketAddr,
        max_connections: usize,
        labels: Labels,
    ) -> Result<Acceptor, ListenerError> {
        let bind_err = |source| ListenerError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        Ok(Acceptor {
            listener,
            local_addr,
            max_connections,
            nodelay: false,
            labels,
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The labels of this listener's self-metrics.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// Set `TCP_NODELAY` on every accepted connection (request/response
    /// protocols such as HTTP want it; bulk line streams do not need it).
    pub fn set_nodelay(&mut self, nodelay: bool) {
        self.nodelay = nodelay;
    }

    /// Accept until `shutdown`, calling `serve` for every connection under
    /// the cap and running the future it returns as its own task. Above the
    /// cap a connection is accepted and closed at once, and counted.
    ///
    /// On shutdown the listening socket closes first; `run` then returns once
    /// every connection task has ended. Connection futures watch `shutdown`
    /// themselves to finish what they hold and close.
    pub async fn run<F, Fut>(self, shutdown: CancellationToken, mut serve: F)
    where
        F: FnMut(TcpStream, SocketAddr) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Acceptor {
            listener,
            local_addr,
            max_connections,
            nodelay,
            labels,
        } = self;
        let slots = Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS)));
        let tracker = TaskTracker::new();
        let accepted = labels.counter(telemetry::LISTENER_CONNECTIONS);
        let refused = labels.counter(telemetry::LISTENER_CONNECTIONS_REFUSED);
        let open = labels.gauge(telemetry::LISTENER_CONNECTIONS_OPEN);
        tracing::info!(listener = %labels.listener, dialect = labels.dialect, addr = %local_addr, max_connections, "accepting connections");

        loop {
            let accept = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                accept = listener.accept() => accept,
            };
            let (stream, peer) = match accept {
                Ok(accepted) => accepted,
                Err(e) if is_per_connection(&e) => {
                    tracing::debug!(error = %e, "accept failed for one connection");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(listener = %labels.listener, error = %e, "accept failed; pausing");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    }
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                refused.increment(1);
                tracing::debug!(%peer, max_connections, "connection refused: too many open connections");
                drop(stream);
                continue;
            };
            accepted.increment(1);
            if nodelay && let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "set TCP_NODELAY failed");
            }
            let held = OpenConnection::new(open.clone(), permit);
            let span = tracing::debug_span!("connection", %peer);
            let conn = serve(stream, peer);
            tracker.spawn(
                async move {
                    tracing::debug!("connection opened");
                    conn.await;
                    drop(held);
                    tracing::debug!("connection closed");
                }
                .instrument(span),
            );
        }

        // Stop accepting before waiting, so new clients are refused by the
        // kernel rather than left in the backlog.
        drop(listener);
        tracker.close();
        tracing::info!(listener = %labels.listener, open = tracker.len(), "stopped accepting; waiting for open connections");
        tracker.wait().await;
        tracing::info!(listener = %labels.listener, "all connections closed");
    }
}

/// Errors of `accept` that concern only the connection being accepted.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// Holds a connection's slot under the cap and its share of the open gauge;
/// released on drop, also when the connection task panics.
struct OpenConnection {
    open: metrics::Gauge,
    _slot: OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(open: metrics::Gauge, slot: OwnedSemaphorePermit) -> OpenConnection {
        open.increment(1.0);
        OpenConnection { open, _slot: slot }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open.decrement(1.0);
    }
}

/// Wait up to `timeout` for the first byte of `stream` without consuming it,
/// to choose a protocol (OpenTSDB: an uppercase ASCII letter means HTTP).
/// `Ok(None)` means the peer closed without sending anything.
///
/// # Errors
/// The socket's error, or [`io::ErrorKind::TimedOut`] when nothing arrived
/// in time.
pub async fn peek_byte(stream: &TcpStream, timeout: Duration) -> io::Result<Option<u8>> {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut byte)).await {
        Ok(Ok(0)) => Ok(None),
        Ok(Ok(_)) => Ok(Some(byte[0])),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no data before the timeout",
        )),
    }
}

/// A stream that yields `prefix` before reading from `inner`: the way to hand
/// a connection on after reading its first bytes to decide what it speaks.
/// Writes go straight to `inner`.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, with `prefix` read first.
    pub fn new(prefix: impl Into<Bytes>, inner: S) -> Prefixed<S> {
        Prefixed {
            prefix: prefix.into(),
            inner,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The unread rest of the prefix and the wrapped stream.
    pub fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn prefixed_yields_prefix_then_inner() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b"llo\n").await.unwrap();
        drop(a);
        let mut s = Prefixed::new(&b"he"[..], b);
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello\n");
    }

    #[tokio::test]
    async fn prefixed_respects_small_reads() {
        let (a, b) = tokio::io::duplex(64);
        drop(a);
        let mut s = Prefixed::new(&b"abc"[..], b);
        let mut one = [0u8; 1];
        assert_eq!(s.read(&mut one).await.unwrap(), 1);
        assert_eq!(&one, b"a");
        let (rest, _) = s.into_parts();
        assert_eq!(&rest[..], b"bc");
    }

    #[tokio::test]
    async fn bind_conflict_names_the_address() {
        let labels = Labels::new("t", "test");
        let first = Acceptor::bind("127.0.0.1:0".parse().unwrap(), 1, labels.clone())
            .await
            .unwrap();
        let err = Acceptor::bind(first.local_addr(), 1, labels)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("bind {}: ", first.local_addr())),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn peek_byte_does_not_consume() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        client.write_all(b"PUT").await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        assert_eq!(
            peek_byte(&server, Duration::from_secs(10)).await.unwrap(),
            Some(b'P')
        );
        let mut buf = [0u8; 3];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"PUT");
        drop(client);
        assert_eq!(
            peek_byte(&server, Duration::from_secs(10)).await.unwrap(),
            None
        );
    }
}
