//! Accepting TCP connections: the one accept loop every TCP-based listener
//! (line server, HTTP server, or a listener that sniffs the first byte and
//! picks one) runs, with its allow-list check and TLS handshake, and
//! [`Prefixed`], which puts sniffed bytes back in front of a stream.

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
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::allow::AllowList;
use crate::tls::{ServerTls, Stream};
use crate::{Labels, ListenerError};

/// Pause after an accept error that is not about one connection (out of file
/// descriptors, out of memory), so the loop does not spin while it lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Connections the kernel completes and queues while the accept loop is
/// busy (the kernel caps it at `net.core.somaxconn`). `TcpListener::bind`'s
/// 128 overflows when a thousand clients connect at once (a fleet
/// reconnecting after a restart) and the loop stalls for a few milliseconds:
/// every SYN dropped then costs its client a one-second retransmit.
const LISTEN_BACKLOG: u32 = 4096;

/// A bound TCP socket plus the accept loop around it: a cap on open
/// connections, an optional allow-list and TLS, one task per connection,
/// connection self-metrics and a shutdown that waits for every connection
/// task.
///
/// Self-metrics (labels `listener`, `dialect`):
/// `conflux_listener_connections_total`, `conflux_listener_connections_open`,
/// `conflux_listener_connections_refused_total`,
/// `conflux_listener_denied_total{reason}` (`not_allowed`, `tls_handshake`),
/// `conflux_listener_timeouts_total{reason="handshake"}`.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    local_addr: SocketAddr,
    max_connections: usize,
    nodelay: bool,
    labels: Labels,
    allow: AllowList,
    tls: Option<ServerTls>,
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
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(bind_err)?;
        // As `TcpListener::bind` does: a restart binds despite TIME_WAIT.
        socket.set_reuseaddr(true).map_err(bind_err)?;
        socket.bind(addr).map_err(bind_err)?;
        let listener = socket.listen(LISTEN_BACKLOG).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        Ok(Acceptor {
            listener,
            local_addr,
            max_connections,
            nodelay: false,
            labels,
            allow: AllowList::default(),
            tls: None,
        })
    }

    /// Accept connections only from these networks; others are closed at
    /// once, before anything is read, and counted.
    pub fn set_allow(&mut self, allow: AllowList) {
        self.allow = allow;
    }

    /// Serve TLS: every connection completes a handshake before its handler
    /// sees it.
    pub fn set_tls(&mut self, tls: Option<ServerTls>) {
        self.tls = tls;
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
    /// the cap (after its TLS handshake, when TLS is on) and running the
    /// future it returns as its own task. Above the cap a connection is
    /// accepted and closed at once, and counted; so is one from outside the
    /// allow-list.
    ///
    /// On shutdown the listening socket closes first; `run` then returns once
    /// every connection task has ended. Connection futures watch `shutdown`
    /// themselves to finish what they hold and close.
    pub async fn run<F, Fut>(self, shutdown: CancellationToken, serve: F)
    where
        F: Fn(Stream, SocketAddr) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Acceptor {
            listener,
            local_addr,
            max_connections,
            nodelay,
            labels,
            allow,
            tls,
        } = self;
        let serve = Arc::new(serve);
        let not_allowed = labels.reason_counter(telemetry::LISTENER_DENIED, "not_allowed");
        let handshake_failed = labels.reason_counter(telemetry::LISTENER_DENIED, "tls_handshake");
        let handshake_timeout = labels.reason_counter(telemetry::LISTENER_TIMEOUTS, "handshake");
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
            if !allow.allows(peer.ip()) {
                not_allowed.increment(1);
                tracing::debug!(%peer, "connection refused: address not in allowed_networks");
                drop(stream);
                continue;
            }
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
            let serve = serve.clone();
            let tls = tls.clone();
            let (failed, timed_out, stop) = (
                handshake_failed.clone(),
                handshake_timeout.clone(),
                shutdown.clone(),
            );
            tracker.spawn(
                async move {
                    tracing::debug!("connection opened");
                    let stream = match tls {
                        None => Some(Stream::Plain(stream)),
                        Some(tls) => handshake(&tls, stream, &failed, &timed_out, &stop).await,
                    };
                    if let Some(stream) = stream {
                        serve(stream, peer).await;
                    }
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

/// The server side of a TLS handshake, bounded by the handshake timeout and
/// abandoned at shutdown; `None` (counted) when it fails.
async fn handshake(
    tls: &ServerTls,
    tcp: TcpStream,
    failed: &metrics::Counter,
    timed_out: &metrics::Counter,
    shutdown: &CancellationToken,
) -> Option<Stream> {
    tokio::select! {
        done = tokio::time::timeout(tls.handshake_timeout(), tls.accept(tcp)) => match done {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                failed.increment(1);
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                timed_out.increment(1);
                tracing::debug!("TLS handshake timed out");
                None
            }
        },
        () = shutdown.cancelled() => None,
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

/// Wait up to `timeout` for the first byte of `stream`, to choose a
/// protocol (OpenTSDB: an uppercase ASCII letter means HTTP), and hand the
/// stream back with that byte still unread. Plain TCP is peeked; TLS has no
/// peek, so the byte is read and put back in front. `Ok(None)` means the
/// peer closed without sending anything.
///
/// # Errors
/// The socket's error, or [`io::ErrorKind::TimedOut`] when nothing arrived
/// in time.
pub async fn sniff_byte(
    mut stream: Stream,
    timeout: Duration,
) -> io::Result<Option<(u8, Prefixed<Stream>)>> {
    let mut byte = [0u8; 1];
    let read = match &mut stream {
        Stream::Plain(tcp) => tokio::time::timeout(timeout, tcp.peek(&mut byte)).await,
        Stream::Tls(tls) => {
            use tokio::io::AsyncReadExt as _;
            tokio::time::timeout(timeout, tls.read(&mut byte)).await
        }
    };
    let n = match read {
        Ok(n) => n?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no data before the timeout",
            ));
        }
    };
    if n == 0 {
        return Ok(None);
    }
    let prefix = if stream.is_tls() {
        Bytes::copy_from_slice(&byte)
    } else {
        Bytes::new()
    };
    Ok(Some((byte[0], Prefixed::new(prefix, stream))))
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
    async fn the_kernel_queues_a_burst_of_connections_the_loop_has_not_taken() {
        // The kernel caps the backlog at `somaxconn`: stay below it.
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(4096);
        let n = 1000.min(somaxconn.saturating_sub(1));
        let acceptor = Acceptor::bind("127.0.0.1:0".parse().unwrap(), 1, Labels::new("t", "test"))
            .await
            .unwrap();
        // Nothing accepts: each connection waits in the queue. With a short
        // backlog the SYNs past it are dropped and connect never completes.
        let mut held = Vec::with_capacity(n);
        for i in 0..n {
            let s = tokio::time::timeout(
                Duration::from_secs(5),
                TcpStream::connect(acceptor.local_addr()),
            )
            .await
            .unwrap_or_else(|_| {
                panic!("connection {i} of {n} not queued: listen backlog too short")
            })
            .unwrap();
            held.push(s);
        }
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
    async fn sniff_byte_leaves_the_byte_unread() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        client.write_all(b"PUT").await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (first, mut server) = sniff_byte(Stream::Plain(server), Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first, b'P');
        let mut buf = [0u8; 3];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"PUT");
        drop(client);
        let (_, server) = server.into_parts();
        assert!(
            sniff_byte(server, Duration::from_secs(10))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn sniff_byte_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let err = sniff_byte(Stream::Plain(server), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
