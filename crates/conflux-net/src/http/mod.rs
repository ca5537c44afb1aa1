//! HTTP server plumbing on hyper 1 (HTTP/1.1 with keep-alive): a [`Router`]
//! several listeners can share one port through, an [`HttpServer`] with a
//! connection cap, timeouts and graceful shutdown, [`read_body`] with limits
//! and decompression while reading, credentials in [`auth`], and small
//! response builders.
//!
//! Timeouts are this module's own rather than hyper's `header_read_timeout`,
//! which also runs while a keep-alive connection waits for its next request
//! and would close idle clients after the header timeout (10 s) instead of
//! `idle_timeout`; a Telegraf flushing every 10 s would race that close.
//!
//! Self-metrics (labels `listener`, `dialect`): the connection series of
//! [`Acceptor`] and `conflux_listener_requests_total{status}`. Received bytes
//! are the handler's to count, after [`read_body`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use conflux_core::telemetry;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::allow::AllowList;
use crate::conn::Acceptor;
use crate::tls::ServerTls;
use crate::{Labels, ListenerError};

pub mod auth;
mod body;
mod router;
mod watch;

pub use body::{
    BodyBudget, BodyError, BodyOptions, RequestBody, collect_body, read_body, read_body_with,
};
pub use router::{RouteConflict, Router};

/// A request as handlers receive it; what a handler leaves of its body is
/// drained ([`RequestBody`]).
pub type Request = http::Request<RequestBody>;

/// A response: the whole body in one buffer.
pub type Response = http::Response<Full<Bytes>>;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Answers the requests of the routes it is registered for.
pub trait Handler: Send + Sync + 'static {
    /// Answer one request.
    fn call(&self, req: Request) -> BoxFuture<'static, Response>;
}

struct HandlerFn<F>(F);

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    fn call(&self, req: Request) -> BoxFuture<'static, Response> {
        Box::pin((self.0)(req))
    }
}

/// A [`Handler`] from an async closure: `handler_fn(|req| async move { … })`.
pub fn handler_fn<F, Fut>(f: F) -> Arc<dyn Handler>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    Arc::new(HandlerFn(f))
}

/// A response with `status`, a `Content-Type` and `body`.
pub fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response {
    let mut resp = http::Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A `text/plain; charset=utf-8` response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response {
    response(status, "text/plain; charset=utf-8", body)
}

/// An `application/json` response; `body` is already encoded JSON.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response {
    response(status, "application/json", body)
}

/// A response without a body (204, or a bare status).
pub fn empty(status: StatusCode) -> Response {
    let mut resp = http::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// Limits and timeouts of an HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest request body, raw and after decompression, for handlers that
    /// pass it to [`read_body`].
    pub max_body_bytes: usize,
    /// Connections open at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Time from the first byte of a request to the end of its headers.
    pub header_read_timeout: Duration,
    /// A connection that moves no bytes for this long is closed: an idle
    /// keep-alive connection, or a request whose body stalls.
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers); a larger one gets
    /// hyper's 431 and the connection closes.
    pub max_header_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            max_body_bytes: 32 * 1024 * 1024,
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_header_bytes: 64 * 1024,
        }
    }
}

/// A bound HTTP listener.
#[derive(Debug)]
pub struct HttpServer {
    acceptor: Acceptor,
    cfg: HttpConfig,
}

impl HttpServer {
    /// Bind `addr` now, so that a port conflict fails before anything runs.
    ///
    /// # Errors
    /// [`ListenerError::Bind`] when the address cannot be bound.
    pub async fn bind(
        addr: SocketAddr,
        cfg: HttpConfig,
        labels: Labels,
    ) -> Result<HttpServer, ListenerError> {
        let mut acceptor = Acceptor::bind(addr, cfg.max_connections, labels).await?;
        acceptor.set_nodelay(true);
        Ok(HttpServer { acceptor, cfg })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.acceptor.local_addr()
    }

    /// Accept connections only from these networks.
    pub fn set_allow(&mut self, allow: AllowList) {
        self.acceptor.set_allow(allow);
    }

    /// Serve HTTPS.
    pub fn set_tls(&mut self, tls: Option<ServerTls>) {
        self.acceptor.set_tls(tls);
    }

    /// Serve `router` until `shutdown`: then stop accepting, let requests in
    /// flight finish, close idle keep-alive connections, and return once
    /// every connection has closed.
    pub async fn run(self, router: Router, shutdown: CancellationToken) {
        let HttpServer { acceptor, cfg } = self;
        let service = HttpService::new(router, cfg, acceptor.labels().clone());
        let token = shutdown.clone();
        acceptor
            .run(shutdown, move |stream, _peer| {
                let service = service.clone();
                let shutdown = token.clone();
                async move { service.serve_connection(stream, shutdown).await }
            })
            .await;
    }
}

/// A router with its limits and request counters, ready to serve
/// connections accepted elsewhere (a listener that sniffs the first byte and
/// hands HTTP connections here). Cheap to clone.
#[derive(Clone)]
pub struct HttpService {
    inner: Arc<ServiceInner>,
}

struct ServiceInner {
    router: Router,
    cfg: HttpConfig,
    statuses: StatusCounters,
    idle_timeouts: metrics::Counter,
    header_timeouts: metrics::Counter,
}

impl std::fmt::Debug for HttpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpService")
            .field("router", &self.inner.router)
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl HttpService {
    /// Serve `router` with the limits of `cfg`, counting requests under `labels`.
    pub fn new(router: Router, cfg: HttpConfig, labels: Labels) -> HttpService {
        HttpService {
            inner: Arc::new(ServiceInner {
                router,
                cfg,
                idle_timeouts: labels.reason_counter(telemetry::LISTENER_TIMEOUTS, "idle"),
                header_timeouts: labels.reason_counter(telemetry::LISTENER_TIMEOUTS, "header"),
                statuses: StatusCounters::new(labels),
            }),
        }
    }

    /// Serve HTTP/1.1 on one accepted connection until the peer closes, a
    /// timeout fires, or `shutdown` (then requests in flight finish and the
    /// connection closes). Errors end the connection and are logged at DEBUG.
    pub async fn serve_connection<S>(&self, io: S, shutdown: CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let cfg = self.inner.cfg;
        let state = Arc::new(watch::ConnState::new());
        let io = TokioIo::new(watch::Watched::new(io, state.clone()));
        let inner = self.inner.clone();
        let timeouts = (inner.idle_timeouts.clone(), inner.header_timeouts.clone());
        let conn_state = state.clone();
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let req = req.map(RequestBody::new);
            let in_flight = watch::InFlight::start(conn_state.clone());
            let fut = inner.router.dispatch(req);
            let inner = inner.clone();
            async move {
                let resp = fut.await;
                drop(in_flight);
                inner.statuses.count(resp.status());
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .keep_alive(true)
            .max_header_size(cfg.max_header_bytes)
            // Without a timer; `watch` times headers and idleness instead.
            .header_read_timeout(None);
        let conn = builder.serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        let mut draining = false;
        loop {
            let (deadline, _) = state.deadline(&cfg);
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(error = %e, "http connection failed");
                    }
                    return;
                }
                () = shutdown.cancelled(), if !draining => {
                    // Idle connections close now; requests in flight finish first.
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
                () = state.deadline_moved() => {}
                () = tokio::time::sleep_until(deadline) => {
                    // Activity may have moved the deadline while we slept.
                    let (deadline, why) = state.deadline(&cfg);
                    if tokio::time::Instant::now() >= deadline {
                        tracing::debug!(reason = why, "closing http connection");
                        match why {
                            watch::HEADER_TIMEOUT => timeouts.1.increment(1),
                            _ => timeouts.0.increment(1),
                        }
                        return;
                    }
                }
            }
        }
    }
}

/// `conflux_listener_requests_total` by status, each handle registered once.
struct StatusCounters {
    labels: Labels,
    table: Box<[OnceLock<metrics::Counter>]>,
}

impl StatusCounters {
    fn new(labels: Labels) -> StatusCounters {
        StatusCounters {
            labels,
            table: (100..600).map(|_| OnceLock::new()).collect(),
        }
    }

    fn register(&self, status: StatusCode) -> metrics::Counter {
        metrics::counter!(
            telemetry::LISTENER_REQUESTS,
            "listener" => self.labels.listener.to_string(),
            "dialect" => self.labels.dialect,
            "status" => status.as_str().to_owned()
        )
    }

    fn count(&self, status: StatusCode) {
        let slot = usize::from(status.as_u16())
            .checked_sub(100)
            .and_then(|i| self.table.get(i));
        match slot {
            Some(slot) => slot.get_or_init(|| self.register(status)).increment(1),
            None => self.register(status).increment(1),
        }
    }
}
