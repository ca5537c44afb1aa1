//! The KairosDB listener: the REST API's ingest side as KairosDB 1.3 serves it.
//!
//! Routes: `POST /api/v1/datapoints` (a JSON array of metric objects or one
//! object; gzip through `Content-Encoding: gzip` or the deprecated
//! `Content-Type: application/gzip`), `GET /api/v1/version`,
//! `GET /api/v1/health/check` (204) and `GET /api/v1/health/status`. None
//! clashes with the influx listener's, so both can share one address.
//!
//! Status codes (`shared/reference/ANCHORS.md` 2.3 and 2.8): 204 once every
//! matching sink queued the batch; 400 `{"errors":[…]}` listing every
//! validation and JSON syntax error, after keeping every valid object (as
//! KairosDB does); 413 past the body limit while reading; 503 with
//! `Retry-After` when a blocking sink stays full past `queue_wait_ms`;
//! 401 with `WWW-Authenticate` when credentials are configured and missing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use conflux_core::Batch;
use conflux_core::component::ListenerContext;
use conflux_core::metric::Limits;
use conflux_core::pipeline::SubmitError;
use conflux_net::allow::AllowList;
use conflux_net::counters::ListenerCounters;
use conflux_net::http::auth::{Authenticator, credential_problems};
use conflux_net::http::{
    BodyBudget, BodyError, BodyOptions, BoxFuture, HttpConfig, Request, Response, Router,
    collect_body, handler_fn, response,
};
use conflux_net::listener::{
    HttpPart, Socket, Started, Transport, body_budget, body_options, defaults, shared_problems,
};
use conflux_net::tls::TlsConfig;
use conflux_net::{Labels, ListenerError};
use http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Method, StatusCode};
use serde::Deserialize;

use crate::codec::{self, ErrorKind, ParseError, ParseOptions, Summary, write_str};

/// KairosDB's JSON content type.
const JSON: &str = "application/json; charset=UTF-8";
/// `Retry-After` (seconds) on 503.
const RETRY_AFTER_S: &str = "1";
/// Error messages a 400 lists at most; past it, one line gives the count of the rest.
pub const MAX_LISTED_ERRORS: usize = 1_000;

/// `[listeners.NAME] type = "kairosdb"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP address (KairosDB's default port is 8080).
    pub address: SocketAddr,
    /// Largest body as received, compressed or not (413 past it).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long a write waits for room in a blocking sink before 503.
    #[serde(default = "default_queue_wait_ms")]
    pub queue_wait_ms: u64,
    /// Reject metric objects without tags, as KairosDB does.
    #[serde(default = "default_true")]
    pub require_tags: bool,
    /// Accepted credentials; empty means no authentication. KairosDB's own
    /// `kairosdb.jetty.basic_auth.*` is a user and password (HTTP Basic); a
    /// `token` entry also accepts `Authorization: Bearer` or `Token`.
    #[serde(default)]
    pub credentials: Vec<Credential>,
    /// The version `/api/v1/version` reports (`KairosDB <version>`).
    #[serde(default = "default_kairosdb_version")]
    pub kairosdb_version: String,
    /// Connections open at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection idle this long is closed.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Most tags one metric object may carry; an object with more stores
    /// nothing (`too_many_tags`). Same key on every listener.
    #[serde(default = "default_max_tags_per_metric")]
    pub max_tags_per_metric: usize,
    /// Longest series key in bytes (`name,key=value,…`); an object with a
    /// longer one stores nothing (`series_key_too_long`). Same key on every
    /// listener.
    #[serde(default = "default_max_series_key_bytes")]
    pub max_series_key_bytes: usize,
    /// Largest body after gzip (413 past it); a gzip bomb stops here.
    /// Unset: `max_body_bytes`.
    pub max_decompressed_body_bytes: Option<usize>,
    /// The buffers of every body being read at once; a body that finds no
    /// room within 2 s is answered 503 with `Retry-After`.
    #[serde(default = "defaults::max_inflight_body_bytes")]
    pub max_inflight_body_bytes: usize,
    /// Time from a request's first byte to the end of its headers.
    #[serde(default = "defaults::header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// Largest request line and headers (431 past it).
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: usize,
    /// Serve HTTPS with this certificate.
    pub tls: Option<TlsConfig>,
    /// Accept connections only from these networks; empty: from anywhere.
    #[serde(default)]
    pub allowed_networks: AllowList,
}

pub use conflux_net::http::auth::Credential;

fn default_max_body_bytes() -> usize {
    32 * 1024 * 1024
}
fn default_queue_wait_ms() -> u64 {
    2_000
}
fn default_true() -> bool {
    true
}
fn default_kairosdb_version() -> String {
    "1.3.0".to_owned()
}
fn default_max_connections() -> usize {
    1024
}
fn default_idle_timeout_ms() -> u64 {
    300_000
}
fn default_max_tags_per_metric() -> usize {
    Limits::DEFAULT_MAX_TAGS
}
fn default_max_series_key_bytes() -> usize {
    Limits::DEFAULT_MAX_SERIES_KEY_BYTES
}

impl Config {
    /// Every problem with the values.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.max_body_bytes == 0 {
            p.push("`max_body_bytes` must be at least 1".to_owned());
        }
        if self.max_connections == 0 {
            p.push("`max_connections` must be at least 1".to_owned());
        }
        if self.max_tags_per_metric == 0 {
            p.push("`max_tags_per_metric` must be at least 1".to_owned());
        }
        if self.max_series_key_bytes == 0 {
            p.push("`max_series_key_bytes` must be at least 1".to_owned());
        }
        p.extend(credential_problems(&self.credentials));
        p.extend(shared_problems(
            self.tls.as_ref(),
            &[
                (
                    "max_decompressed_body_bytes",
                    self.max_decompressed_body_bytes.map_or(1, |v| v as u64),
                ),
                (
                    "max_inflight_body_bytes",
                    self.max_inflight_body_bytes as u64,
                ),
                ("header_read_timeout_ms", self.header_read_timeout_ms),
                ("max_header_bytes", self.max_header_bytes as u64),
            ],
        ));
        if self.kairosdb_version.is_empty() {
            p.push("`kairosdb_version` must not be empty".to_owned());
        }
        p
    }

    /// The sockets this listener opens.
    pub fn sockets(&self) -> Vec<Socket> {
        vec![Socket {
            address: self.address,
            transport: Transport::Http,
        }]
    }

    /// The per-metric limits every batch this listener parses into checks.
    pub fn limits(&self) -> Limits {
        Limits {
            max_tags: self.max_tags_per_metric,
            max_series_key_bytes: self.max_series_key_bytes,
        }
    }

    fn http_config(&self) -> HttpConfig {
        HttpConfig {
            max_body_bytes: self.max_body_bytes,
            max_connections: self.max_connections,
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            max_header_bytes: self.max_header_bytes,
        }
    }
}

struct Shared {
    cfg: Config,
    budget: BodyBudget,
    auth: Authenticator,
    ctx: ListenerContext,
    counters: ListenerCounters,
    version_body: String,
}

/// The HTTP routes of this listener. Always `Some`: the daemon merges them
/// with the routes of other HTTP listeners on the same address.
pub fn router(cfg: &Config, ctx: ListenerContext) -> Option<Router> {
    let labels = Labels::from(&ctx);
    let mut version_body = Vec::new();
    version_body.extend_from_slice(b"{\"version\":");
    write_str(
        &mut version_body,
        &format!("KairosDB {}", cfg.kairosdb_version),
    );
    version_body.push(b'}');
    let shared = Arc::new(Shared {
        auth: Authenticator::new(&cfg.credentials),
        budget: body_budget(cfg.max_inflight_body_bytes, &labels),
        cfg: cfg.clone(),
        counters: ListenerCounters::new(&labels, ErrorKind::ALL.iter().map(|k| k.reason())),
        version_body: String::from_utf8_lossy(&version_body).into_owned(),
        ctx,
    });
    let owner = shared.ctx.name.to_string();
    let mut r = Router::new();
    let mut add = |path: &str,
                   methods: &[Method],
                   f: fn(Arc<Shared>, Request) -> BoxFuture<'static, Response>| {
        let s = shared.clone();
        let h = handler_fn(move |req| f(s.clone(), req));
        // A fresh router with fixed, distinct paths cannot conflict.
        let _ = r.route(path, methods, &owner, h);
    };
    add("/api/v1/datapoints", &[Method::POST], |s, req| {
        Box::pin(datapoints(s, req))
    });
    add("/api/v1/version", &[Method::GET], |s, _| {
        Box::pin(async move { response(StatusCode::OK, JSON, s.version_body.clone()) })
    });
    add("/api/v1/health/check", &[Method::GET], |_, _| {
        Box::pin(async { conflux_net::http::empty(StatusCode::NO_CONTENT) })
    });
    add("/api/v1/health/status", &[Method::GET], |_, _| {
        // KairosDB's two checks, always 200: Conflux holds no datastore, and
        // while it answers, nothing is deadlocked.
        Box::pin(async {
            response(
                StatusCode::OK,
                JSON,
                r#"["JVM-Thread-Deadlock: OK","Datastore-Query: OK"]"#,
            )
        })
    });
    Some(r)
}

/// Hand over the HTTP routes (the daemon binds the address, shared or not).
///
/// # Errors
/// None today; the signature matches the other listeners.
pub async fn start(cfg: &Config, ctx: ListenerContext) -> Result<Started, ListenerError> {
    let mut started = Started::default();
    if let Some(router) = router(cfg, ctx) {
        started.http.push(HttpPart {
            address: cfg.address,
            config: cfg.http_config(),
            router,
            tls: cfg.tls.clone(),
            allow: cfg.allowed_networks.clone(),
        });
    }
    Ok(started)
}

/// `{"errors":[…]}` with `status`.
fn errors_response<'a>(
    status: StatusCode,
    messages: impl IntoIterator<Item = &'a str>,
) -> Response {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(b"{\"errors\":[");
    for (i, m) in messages.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        write_str(&mut body, m);
    }
    body.extend_from_slice(b"]}");
    response(status, JSON, body)
}

fn body_error(e: &BodyError) -> Response {
    let mut resp = errors_response(e.status(), [e.to_string().as_str()]);
    if let Some(v) = e.retry_after() {
        resp.headers_mut().insert(RETRY_AFTER, v);
    }
    resp
}

fn overloaded(err: &SubmitError) -> Response {
    let message = match err {
        SubmitError::Overloaded { sink } => {
            format!("request throttled, queue full: sink `{sink}` has no room")
        }
        SubmitError::Closed => "shutting down".to_owned(),
    };
    let mut resp = errors_response(StatusCode::SERVICE_UNAVAILABLE, [message.as_str()]);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
    resp
}

fn unauthorized() -> Response {
    let mut resp = errors_response(StatusCode::UNAUTHORIZED, ["authorization failed"]);
    resp.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"kairosdb\""),
    );
    resp
}

/// The 400 for parse errors: every kept message, then a count of the rest.
fn bad_request(errors: &[ParseError], summary: &Summary) -> Response {
    let more = summary.errors.saturating_sub(errors.len());
    let tail = (more > 0).then(|| format!("({more} more errors not listed)"));
    errors_response(
        StatusCode::BAD_REQUEST,
        errors
            .iter()
            .map(|e| e.message.as_str())
            .chain(tail.as_deref()),
    )
}

async fn datapoints(s: Arc<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(body) = s.auth.admit(&parts, body) else {
        return unauthorized();
    };
    let opts = BodyOptions {
        // KairosDB before 1.3 took gzip only as `Content-Type: application/gzip`.
        gzip_content_type: true,
        ..body_options(
            s.cfg.max_body_bytes,
            s.cfg.max_decompressed_body_bytes,
            &s.budget,
        )
    };
    let body = match collect_body(&parts.headers, body, opts).await {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(listener = %s.ctx.name, error = %e, "body refused");
            return body_error(&e);
        }
    };
    s.counters.bytes(body.len());

    // About one point per 250 bytes in typical bodies (one object per point).
    let mut batch = Batch::with_capacity(body.len() / 256 + 1, body.len() / 2);
    batch.set_limits(s.cfg.limits());
    let mut errors = Vec::new();
    let opts = ParseOptions {
        require_tags: s.cfg.require_tags,
        max_errors: MAX_LISTED_ERRORS,
    };
    let summary = codec::parse(&body, &opts, &mut batch, &mut errors);
    drop(body);

    let (metrics, points) = (batch.len(), batch.points());
    if !batch.is_empty() {
        let wait = Duration::from_millis(s.cfg.queue_wait_ms);
        if let Err(e) = s.ctx.ingest.submit_timeout(batch, wait).await {
            tracing::debug!(listener = %s.ctx.name, error = %e, "write refused");
            return overloaded(&e);
        }
        s.counters.received(metrics, points);
    }
    if summary.errors == 0 {
        return conflux_net::http::empty(StatusCode::NO_CONTENT);
    }
    s.counters.rejected_counts(&summary.by_kind);
    tracing::debug!(
        listener = %s.ctx.name,
        accepted = metrics,
        rejected = summary.errors,
        first = %errors.first().map_or("", |e| e.message.as_str()),
        "bad metric objects in a write"
    );
    bad_request(&errors, &summary)
}
