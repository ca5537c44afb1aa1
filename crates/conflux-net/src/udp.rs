//! The UDP server: one [`DatagramHandler`] call per datagram, from one
//! reused receive buffer. A datagram may hold many lines; the handler splits
//! them.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use conflux_core::telemetry;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::allow::AllowList;
use crate::{Labels, ListenerError};

/// Pause after a receive error, so a persistent one does not spin the loop.
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Limits of a UDP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpConfig {
    /// Largest datagram accepted; larger ones are counted as
    /// `rejected{reason="datagram_too_large"}` and dropped whole.
    pub max_datagram_bytes: usize,
    /// Socket receive buffer (`SO_RCVBUF`) to ask the kernel for; `None`
    /// keeps the system default. Linux caps it at `net.core.rmem_max`.
    pub recv_buffer_bytes: Option<usize>,
}

impl Default for UdpConfig {
    fn default() -> UdpConfig {
        UdpConfig {
            max_datagram_bytes: 65535,
            recv_buffer_bytes: None,
        }
    }
}

/// The dialect side of a UDP listener.
pub trait DatagramHandler: Send + 'static {
    /// Handle one datagram from `peer`. Nothing more is received while the
    /// returned future runs (the kernel buffers, then drops).
    fn datagram(&mut self, data: &[u8], peer: SocketAddr) -> impl Future<Output = ()> + Send;
}

/// A bound UDP socket.
///
/// Self-metrics (labels `listener`, `dialect`):
/// `conflux_listener_received_bytes_total`,
/// `conflux_listener_rejected_total{reason="datagram_too_large"}` and
/// `conflux_listener_denied_total{reason="not_allowed"}`.
#[derive(Debug)]
pub struct UdpServer {
    socket: UdpSocket,
    local_addr: SocketAddr,
    cfg: UdpConfig,
    labels: Labels,
    allow: AllowList,
}

impl UdpServer {
    /// Bind `addr` now, so that a port conflict fails before anything runs,
    /// and request the receive buffer size (a smaller grant is logged, not an
    /// error).
    ///
    /// # Errors
    /// [`ListenerError::Bind`] when the address cannot be bound.
    pub async fn bind(
        addr: SocketAddr,
        cfg: UdpConfig,
        labels: Labels,
    ) -> Result<UdpServer, ListenerError> {
        let bind_err = |source| ListenerError::Bind { addr, source };
        let socket = UdpSocket::bind(addr).await.map_err(bind_err)?;
        let local_addr = socket.local_addr().map_err(bind_err)?;
        if let Some(wanted) = cfg.recv_buffer_bytes {
            let sock = socket2::SockRef::from(&socket);
            // Linux reports twice the granted size (bookkeeping overhead).
            match sock
                .set_recv_buffer_size(wanted)
                .and_then(|()| sock.recv_buffer_size())
            {
                Ok(granted) if granted < wanted => tracing::warn!(
                    listener = %labels.listener,
                    wanted,
                    granted,
                    "udp receive buffer smaller than configured; raise net.core.rmem_max"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(listener = %labels.listener, error = %e, "setting udp receive buffer failed")
                }
            }
        }
        Ok(UdpServer {
            socket,
            local_addr,
            cfg,
            labels,
            allow: AllowList::default(),
        })
    }

    /// Take datagrams only from these networks; others are dropped unread
    /// and counted.
    pub fn set_allow(&mut self, allow: AllowList) {
        self.allow = allow;
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Receive until `shutdown`. A handler call in progress finishes first.
    pub async fn run(self, mut handler: impl DatagramHandler, shutdown: CancellationToken) {
        let UdpServer {
            socket,
            local_addr,
            cfg,
            labels,
            allow,
        } = self;
        let not_allowed = labels.reason_counter(telemetry::LISTENER_DENIED, "not_allowed");
        let received = labels.counter(telemetry::LISTENER_RECEIVED_BYTES);
        let too_large = labels.reason_counter(telemetry::LISTENER_REJECTED, "datagram_too_large");
        let max = cfg.max_datagram_bytes.max(1);
        // One spare byte tells a datagram of exactly `max` from a truncated one.
        let mut buf = vec![0u8; max + 1];
        tracing::info!(listener = %labels.listener, dialect = labels.dialect, addr = %local_addr, "receiving datagrams");
        loop {
            let recv = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                recv = socket.recv_from(&mut buf) => recv,
            };
            match recv {
                Ok((_, peer)) if !allow.allows(peer.ip()) => {
                    not_allowed.increment(1);
                    tracing::debug!(%peer, "datagram dropped: address not in allowed_networks");
                }
                Ok((n, peer)) => {
                    received.increment(n as u64);
                    if n > max {
                        too_large.increment(1);
                        tracing::debug!(%peer, max, "datagram too large, dropped");
                        continue;
                    }
                    handler.datagram(&buf[..n], peer).await;
                }
                Err(e) => {
                    tracing::warn!(listener = %labels.listener, error = %e, "udp receive failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(RECV_ERROR_PAUSE) => {}
                    }
                }
            }
        }
        tracing::info!(listener = %labels.listener, "udp listener stopped");
    }
}
