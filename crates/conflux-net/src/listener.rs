//! What a listener crate hands the daemon: the sockets it will open (known
//! from its config alone, so the daemon can check for clashes before binding)
//! and, once started, its HTTP routes and its running TCP/UDP servers.

use std::fmt;
use std::net::SocketAddr;

use crate::allow::AllowList;
use crate::http::{BoxFuture, HttpConfig, Router};
use crate::tls::{ServerTls, TlsConfig};

/// How a socket is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    /// HTTP routes, served by the daemon; listeners may share one port.
    Http,
    /// A TCP server of its own.
    Tcp,
    /// A UDP socket.
    Udp,
}

impl Transport {
    /// Short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A socket a listener will open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socket {
    /// The configured address.
    pub address: SocketAddr,
    /// How it is used.
    pub transport: Transport,
}

/// HTTP routes to serve on an address (the daemon binds it, merging the
/// routes of every listener configured on the same address).
pub struct HttpPart {
    /// The configured address.
    pub address: SocketAddr,
    /// Server limits and timeouts.
    pub config: HttpConfig,
    /// The routes.
    pub router: Router,
    /// Serve HTTPS with this certificate. Listeners sharing a port must agree.
    pub tls: Option<TlsConfig>,
    /// Accept connections only from these networks. Listeners sharing a
    /// port must agree.
    pub allow: AllowList,
}

/// A bound TCP or UDP server, ready to run.
pub struct Server {
    /// The bound address (the real port when port 0 was configured).
    pub address: SocketAddr,
    /// `tcp`, `udp`, or a dialect's own name for a second TCP port (`pickle`), for logs.
    pub transport: &'static str,
    /// Runs until the listener's shutdown token is cancelled and in-flight work is done.
    pub run: BoxFuture<'static, ()>,
    /// Its TLS certificate, for the daemon to re-read on SIGHUP.
    pub tls: Option<ServerTls>,
}

/// What a started listener hands over.
#[derive(Default)]
pub struct Started {
    /// Routes for the daemon to serve.
    pub http: Vec<HttpPart>,
    /// Servers already bound.
    pub servers: Vec<Server>,
}

/// Defaults of the keys every listener has under the same name, so that an
/// operator learns one spelling and one default.
pub mod defaults {
    /// `header_read_timeout_ms`: from a request's first byte to the end of
    /// its headers (slow-loris).
    pub fn header_read_timeout_ms() -> u64 {
        10_000
    }

    /// `max_header_bytes`: request line and headers (431 past it).
    pub fn max_header_bytes() -> usize {
        64 * 1024
    }

    /// `line_timeout_ms`: a TCP line must be complete this long after its
    /// first byte.
    pub fn line_timeout_ms() -> u64 {
        30_000
    }

    /// `max_inflight_body_bytes`: the buffers of every request body an HTTP
    /// listener is reading at once (eight bodies at the default body limit).
    pub fn max_inflight_body_bytes() -> usize {
        256 * 1024 * 1024
    }
}

/// How long a request body waits for room in its listener's budget before
/// it is answered 503.
pub const BODY_BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How an HTTP listener reads bodies: its `max_body_bytes`, its
/// `max_decompressed_body_bytes` (unset: the same) and its budget.
pub fn body_options(
    max_body_bytes: usize,
    max_decompressed_body_bytes: Option<usize>,
    budget: &crate::http::BodyBudget,
) -> crate::http::BodyOptions {
    crate::http::BodyOptions::with_decompressed(
        max_body_bytes,
        max_decompressed_body_bytes.unwrap_or(max_body_bytes),
    )
    .with_budget(budget)
}

/// The budget of `max_inflight_body_bytes`, reported as
/// `conflux_listener_body_bytes_in_flight`.
pub fn body_budget(
    max_inflight_body_bytes: usize,
    labels: &crate::Labels,
) -> crate::http::BodyBudget {
    crate::http::BodyBudget::new(max_inflight_body_bytes, BODY_BUDGET_WAIT)
        .with_gauge(labels.gauge(conflux_core::telemetry::LISTENER_BODY_BYTES_IN_FLIGHT))
}

/// Problems with the keys every listener shares: each named value must be
/// at least 1, and the TLS files must load.
pub fn shared_problems(tls: Option<&TlsConfig>, at_least_one: &[(&str, u64)]) -> Vec<String> {
    let mut p: Vec<String> = at_least_one
        .iter()
        .filter(|(_, v)| *v == 0)
        .map(|(k, _)| format!("`{k}` must be at least 1"))
        .collect();
    if let Some(tls) = tls {
        p.extend(tls.problems());
    }
    p
}
