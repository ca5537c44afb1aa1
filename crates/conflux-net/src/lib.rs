//! The transport every Conflux listener shares: a TCP line server, a UDP
//! datagram server and the plumbing of an HTTP server on hyper. A dialect
//! plugs in a handler; the accept loops, connection caps, timeouts, limits,
//! graceful shutdown and connection self-metrics live here once.
//!
//! Layout:
//! - [`conn`]: [`Acceptor`] (bind, accept loop, connection cap, allow-list,
//!   TLS handshake, task tracking) and [`Prefixed`] (push back bytes read
//!   while sniffing).
//! - [`tls`]: [`TlsConfig`], [`ServerTls`] (certificates, reloadable) and
//!   [`Stream`], a plain or TLS connection.
//! - [`allow`]: [`AllowList`], the `allowed_networks` of a listener.
//! - [`tcp`]: [`TcpLineServer`] and [`serve_lines`]: newline-framed streams
//!   handed to a [`LineConn`] many complete lines at a time.
//! - [`udp`]: [`UdpServer`]: one [`DatagramHandler`] call per datagram.
//! - [`http`]: [`HttpServer`], the [`Router`] several listeners can share,
//!   streaming body decoding with limits, credentials, response helpers.
//! - [`listener`]: what a listener crate hands the daemon (sockets, routes, servers).
//! - [`ratelimit`]: a gate for log lines about bad input.
//! - [`counters`]: the received and rejected counters every listener reports.
//!
//! [`Acceptor`]: conn::Acceptor
//! [`Prefixed`]: conn::Prefixed
//! [`TcpLineServer`]: tcp::TcpLineServer
//! [`serve_lines`]: tcp::serve_lines
//! [`LineConn`]: tcp::LineConn
//! [`UdpServer`]: udp::UdpServer
//! [`DatagramHandler`]: udp::DatagramHandler
//! [`HttpServer`]: http::HttpServer
//! [`Router`]: http::Router
//! [`TlsConfig`]: tls::TlsConfig
//! [`ServerTls`]: tls::ServerTls
//! [`Stream`]: tls::Stream
//! [`AllowList`]: allow::AllowList

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

pub use conflux_core::component::CancellationToken;
use conflux_core::component::ListenerContext;

pub mod allow;
pub mod conn;
pub mod counters;
pub mod http;
pub mod listener;
pub mod ratelimit;
pub mod tcp;
pub mod tls;
pub mod udp;

/// The labels of a listener's self-metrics: `listener` (its config name) and
/// `dialect`. Never peer addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    /// The listener's config name.
    pub listener: Arc<str>,
    /// The dialect (`influx`, `opentsdb`, `graphite`, `kairosdb`).
    pub dialect: &'static str,
}

impl Labels {
    /// Labels for listener `listener` of dialect `dialect`.
    pub fn new(listener: impl Into<Arc<str>>, dialect: &'static str) -> Labels {
        Labels {
            listener: listener.into(),
            dialect,
        }
    }

    /// A counter named `name` carrying these labels.
    pub fn counter(&self, name: &'static str) -> metrics::Counter {
        metrics::counter!(name, "listener" => self.listener.to_string(), "dialect" => self.dialect)
    }

    /// A gauge named `name` carrying these labels.
    pub fn gauge(&self, name: &'static str) -> metrics::Gauge {
        metrics::gauge!(name, "listener" => self.listener.to_string(), "dialect" => self.dialect)
    }

    /// A counter named `name` carrying these labels plus `reason`.
    pub fn reason_counter(&self, name: &'static str, reason: &'static str) -> metrics::Counter {
        metrics::counter!(
            name,
            "listener" => self.listener.to_string(),
            "dialect" => self.dialect,
            "reason" => reason
        )
    }
}

impl From<&ListenerContext> for Labels {
    fn from(ctx: &ListenerContext) -> Labels {
        Labels {
            listener: ctx.name.clone(),
            dialect: ctx.dialect,
        }
    }
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// A TLS certificate, key or CA file could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// The address could not be bound (in use, not local, no permission).
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
}
