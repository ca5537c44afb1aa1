//! The InfluxDB listener: line protocol over HTTP as InfluxDB 1.x and 2.x and
//! KWDB's Telegraf endpoint serve it, plus optional raw TCP and UDP.
//!
//! Routes: `POST /write` (v1), `POST /api/v2/write` (v2), `POST
//! /restapi/telegraf` (KWDB), `GET|POST /query` (answers `CREATE DATABASE` and
//! `SHOW DATABASES`), `GET|HEAD /ping`, `GET /health`, `GET /ready`,
//! `GET /api/v2/health`. Every answer carries `X-Influxdb-Version` and
//! `X-Influxdb-Build`, which client libraries check.
//!
//! Status codes are a data-safety API (`shared/reference/ANCHORS.md` 2.3):
//! 204 once every matching sink queued the batch; bad lines keep the good ones
//! and answer 400 `partial write: … dropped=N`; 413 past the body limit; 503
//! with `Retry-After` when a blocking sink stays full past `queue_wait_ms`
//! (never 429, which Telegraf's v1 output drops); 401 with `WWW-Authenticate`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use conflux_core::Batch;
use conflux_core::component::ListenerContext;
use conflux_core::metric::{DuplicateTags, Limits};
use conflux_core::pipeline::SubmitError;
use conflux_core::time::{Precision, now_ns};
use conflux_net::allow::AllowList;
use conflux_net::counters::ListenerCounters;
use conflux_net::http::auth::{Authenticator, credential_problems, query_param};
use conflux_net::http::{
    BodyBudget, BodyError, BodyOptions, HttpConfig, Request, Response, Router, collect_body,
    handler_fn,
};
use conflux_net::listener::{
    HttpPart, Server, Socket, Started, Transport, body_budget, body_options, defaults,
    shared_problems,
};
use conflux_net::ratelimit::RateLimited;
use conflux_net::tcp::{Flow, LineConn, LineHandler, TcpConfig, TcpLineServer};
use conflux_net::tls::{ServerTls, TlsConfig};
use conflux_net::udp::{DatagramHandler, UdpConfig, UdpServer};
use conflux_net::{Labels, ListenerError};
use http::header::{HeaderName, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, StatusCode};
use serde::Deserialize;

use crate::codec::{self, LineError, ParseOptions};

/// How many parse errors a response lists before summarizing the rest.
const MAX_LISTED_ERRORS: usize = 10;
/// InfluxDB truncates `X-Influxdb-Error` to this many bytes.
const MAX_ERROR_HEADER: usize = 1024;
/// `Retry-After` (seconds) on 503.
const RETRY_AFTER_S: &str = "1";

/// `[listeners.NAME] type = "influx"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP address.
    pub address: SocketAddr,
    /// Largest body as received, compressed or not (413 past it).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long a write waits for room in a blocking sink before 503.
    #[serde(default = "default_queue_wait_ms")]
    pub queue_wait_ms: u64,
    /// Accepted credentials; empty means no authentication.
    #[serde(default)]
    pub credentials: Vec<Credential>,
    /// Copy `db` into a tag of this name (Telegraf's `database_tag`).
    pub database_tag: Option<String>,
    /// Copy `rp` into a tag of this name (Telegraf's `retention_policy_tag`).
    pub retention_policy_tag: Option<String>,
    /// Copy the v2 `bucket` into a tag of this name (Telegraf's `bucket_tag`).
    pub bucket_tag: Option<String>,
    /// Databases `SHOW DATABASES` lists, besides those created through `/query`.
    #[serde(default)]
    pub databases: Vec<String>,
    /// The `X-Influxdb-Version` sent; clients read it to pick the API version.
    #[serde(default = "default_influxdb_version")]
    pub influxdb_version: String,
    /// Also accept line protocol on this TCP address (one line per metric, no replies).
    pub tcp_address: Option<SocketAddr>,
    /// Also accept line protocol on this UDP address.
    pub udp_address: Option<SocketAddr>,
    /// TCP: longest line; a longer one is counted and skipped.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// HTTP and TCP: connections open at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// HTTP and TCP: a connection idle this long is closed.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Most tags one line may carry; a line with more is rejected
    /// (`too_many_tags`). Same key on every listener.
    #[serde(default = "default_max_tags_per_metric")]
    pub max_tags_per_metric: usize,
    /// Longest series key in bytes, counted as InfluxDB does unescaped (the
    /// measurement, then `,key=value` per tag); a longer line is rejected
    /// (`series_key_too_long`). Same key on every listener.
    #[serde(default = "default_max_series_key_bytes")]
    pub max_series_key_bytes: usize,
    /// Largest body after gzip or deflate (413 past it); a gzip bomb stops here.
    /// Unset: `max_body_bytes`.
    pub max_decompressed_body_bytes: Option<usize>,
    /// HTTP: the buffers of every body being read at once; a body that
    /// finds no room within 2 s is answered 503 with `Retry-After`.
    #[serde(default = "defaults::max_inflight_body_bytes")]
    pub max_inflight_body_bytes: usize,
    /// HTTP: time from a request's first byte to the end of its headers.
    #[serde(default = "defaults::header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// HTTP: largest request line and headers (431 past it).
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: usize,
    /// TCP: a line must be complete this long after its first byte.
    #[serde(default = "defaults::line_timeout_ms")]
    pub line_timeout_ms: u64,
    /// Serve HTTPS, and TLS on `tcp_address`, with this certificate.
    pub tls: Option<TlsConfig>,
    /// Accept connections and datagrams only from these networks; empty:
    /// from anywhere.
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
fn default_influxdb_version() -> String {
    "1.8.10".to_owned()
}
fn default_max_line_bytes() -> usize {
    256 * 1024
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
        if self.max_line_bytes == 0 {
            p.push("`max_line_bytes` must be at least 1".to_owned());
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
                ("line_timeout_ms", self.line_timeout_ms),
            ],
        ));
        for (key, tag) in [
            ("database_tag", &self.database_tag),
            ("retention_policy_tag", &self.retention_policy_tag),
            ("bucket_tag", &self.bucket_tag),
        ] {
            if tag.as_deref() == Some("") {
                p.push(format!("`{key}` must not be empty"));
            }
        }
        p
    }

    /// The sockets this listener opens.
    pub fn sockets(&self) -> Vec<Socket> {
        let mut s = vec![Socket {
            address: self.address,
            transport: Transport::Http,
        }];
        if let Some(a) = self.tcp_address {
            s.push(Socket {
                address: a,
                transport: Transport::Tcp,
            });
        }
        if let Some(a) = self.udp_address {
            s.push(Socket {
                address: a,
                transport: Transport::Udp,
            });
        }
        s
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

    /// The per-metric limits every batch this listener parses into checks.
    pub fn limits(&self) -> Limits {
        Limits {
            max_tags: self.max_tags_per_metric,
            max_series_key_bytes: self.max_series_key_bytes,
        }
    }
}

struct Shared {
    cfg: Config,
    budget: BodyBudget,
    auth: Authenticator,
    ctx: ListenerContext,
    counters: ListenerCounters,
    version: HeaderValue,
    created: Mutex<BTreeSet<String>>,
    started: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    V1,
    V2,
    Kwdb,
}

fn counters(labels: &Labels) -> ListenerCounters {
    ListenerCounters::new(labels, codec::ErrorKind::ALL.iter().map(|k| k.reason()))
}

/// The HTTP routes of this listener.
pub fn router(cfg: &Config, ctx: ListenerContext) -> Router {
    let labels = Labels::from(&ctx);
    let shared = Arc::new(Shared {
        version: HeaderValue::from_str(&cfg.influxdb_version)
            .unwrap_or(HeaderValue::from_static("1.8.10")),
        auth: Authenticator::new(&cfg.credentials),
        budget: body_budget(cfg.max_inflight_body_bytes, &labels),
        cfg: cfg.clone(),
        counters: counters(&labels),
        created: Mutex::new(BTreeSet::new()),
        started: Instant::now(),
        ctx,
    });
    let owner = shared.ctx.name.to_string();
    let mut r = Router::new();
    let mut add =
        |path: &str,
         methods: &[Method],
         f: fn(Arc<Shared>, Request) -> conflux_net::http::BoxFuture<'static, Response>| {
            let s = shared.clone();
            let h = handler_fn(move |req| {
                let s = s.clone();
                async move {
                    let version = s.version.clone();
                    let mut resp = f(s, req).await;
                    let h = resp.headers_mut();
                    h.insert(HeaderName::from_static("x-influxdb-version"), version);
                    h.insert(
                        HeaderName::from_static("x-influxdb-build"),
                        HeaderValue::from_static("OSS"),
                    );
                    resp
                }
            });
            // A fresh router with fixed, distinct paths cannot conflict.
            let _ = r.route(path, methods, &owner, h);
        };
    add("/write", &[Method::POST, Method::OPTIONS], |s, req| {
        Box::pin(write(s, Api::V1, req))
    });
    add("/api/v2/write", &[Method::POST], |s, req| {
        Box::pin(write(s, Api::V2, req))
    });
    add("/restapi/telegraf", &[Method::POST], |s, req| {
        Box::pin(write(s, Api::Kwdb, req))
    });
    add("/query", &[Method::GET, Method::POST], |s, req| {
        Box::pin(query(s, req))
    });
    add("/ping", &[Method::GET, Method::HEAD], |s, req| {
        Box::pin(async move { ping(&s, &req) })
    });
    add("/health", &[Method::GET, Method::HEAD], |s, _| {
        Box::pin(async move { health(&s, false) })
    });
    add("/api/v2/health", &[Method::GET, Method::HEAD], |s, _| {
        Box::pin(async move { health(&s, true) })
    });
    add("/ready", &[Method::GET, Method::HEAD], |s, _| {
        Box::pin(async move { ready(&s) })
    });
    r
}

/// Hand over the HTTP routes and bind the optional TCP and UDP sockets.
///
/// # Errors
/// A TCP or UDP address that cannot be bound.
pub async fn start(cfg: &Config, ctx: ListenerContext) -> Result<Started, ListenerError> {
    let mut started = Started::default();
    started.http.push(HttpPart {
        address: cfg.address,
        config: cfg.http_config(),
        router: router(cfg, ctx.clone()),
        tls: cfg.tls.clone(),
        allow: cfg.allowed_networks.clone(),
    });
    let labels = Labels::from(&ctx);
    let lines = Lines {
        ctx: ctx.clone(),
        counters: Arc::new(counters(&labels)),
        limits: cfg.limits(),
    };
    if let Some(addr) = cfg.tcp_address {
        let tcp_cfg = TcpConfig {
            max_connections: cfg.max_connections,
            idle_timeout: Duration::from_millis(cfg.idle_timeout_ms),
            line_timeout: Duration::from_millis(cfg.line_timeout_ms),
            max_line_bytes: cfg.max_line_bytes,
            ..TcpConfig::default()
        };
        let tls = cfg.tls.as_ref().map(ServerTls::load).transpose()?;
        let mut server = TcpLineServer::bind(addr, tcp_cfg, labels.clone()).await?;
        server.set_allow(cfg.allowed_networks.clone());
        server.set_tls(tls.clone());
        started.servers.push(Server {
            address: server.local_addr(),
            transport: "tcp",
            run: Box::pin(server.run(lines.clone(), ctx.shutdown.clone())),
            tls,
        });
    }
    if let Some(addr) = cfg.udp_address {
        let mut server = UdpServer::bind(addr, UdpConfig::default(), labels).await?;
        server.set_allow(cfg.allowed_networks.clone());
        started.servers.push(Server {
            address: server.local_addr(),
            transport: "udp",
            run: Box::pin(server.run(lines.conn(), ctx.shutdown.clone())),
            tls: None,
        });
    }
    Ok(started)
}

fn with_header(mut resp: Response, name: HeaderName, value: &str) -> Response {
    // Go replaces control characters in header values; do the same so that
    // a hostile line cannot break the response.
    let clean: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if let Ok(v) = HeaderValue::from_bytes(clean.as_bytes()) {
        resp.headers_mut().insert(name, v);
    }
    resp
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An error in the shape of each API.
fn error(api: Api, status: StatusCode, code: &str, message: &str, line: Option<usize>) -> Response {
    let body = match api {
        Api::V1 => format!("{{\"error\":{}}}", json_escape(message)),
        Api::V2 => match line {
            Some(l) => format!(
                "{{\"code\":{},\"message\":{},\"line\":{l}}}",
                json_escape(code),
                json_escape(message)
            ),
            None => format!(
                "{{\"code\":{},\"message\":{}}}",
                json_escape(code),
                json_escape(message)
            ),
        },
        Api::Kwdb => format!(
            "{{\"code\":-1,\"desc\":{},\"rows\":0,\"time\":0}}",
            json_escape(message)
        ),
    };
    let resp = conflux_net::http::json(status, body);
    let mut header = message;
    if header.len() > MAX_ERROR_HEADER {
        let mut end = MAX_ERROR_HEADER;
        while !header.is_char_boundary(end) {
            end -= 1;
        }
        header = &header[..end];
    }
    with_header(resp, HeaderName::from_static("x-influxdb-error"), header)
}

fn unauthorized(api: Api) -> Response {
    let resp = match api {
        Api::V2 => error(
            api,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unauthorized access",
            None,
        ),
        _ => error(
            api,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "authorization failed",
            None,
        ),
    };
    with_header(resp, WWW_AUTHENTICATE, "Basic realm=\"InfluxDB\"")
}

fn overloaded(api: Api, err: &SubmitError) -> Response {
    let message = match err {
        SubmitError::Overloaded { sink } => {
            format!("request throttled, queue full: sink `{sink}` has no room")
        }
        SubmitError::Closed => "shutting down".to_owned(),
    };
    let resp = error(
        api,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        &message,
        None,
    );
    with_header(resp, http::header::RETRY_AFTER, RETRY_AFTER_S)
}

fn body_error(api: Api, e: &BodyError) -> Response {
    match e {
        BodyError::TooLarge { .. } if api == Api::V2 => error(
            api,
            StatusCode::PAYLOAD_TOO_LARGE,
            "request too large",
            &e.to_string(),
            None,
        ),
        BodyError::TooLarge { .. } => error(
            api,
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
            "Request Entity Too Large",
            None,
        ),
        BodyError::Busy { .. } => {
            let mut resp = error(api, e.status(), "unavailable", &e.to_string(), None);
            if let Some(v) = e.retry_after() {
                resp.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
            resp
        }
        _ => error(api, e.status(), "invalid", &e.to_string(), None),
    }
}

/// The v1 precisions (plus `us`, which v1 itself refuses but clients send).
fn precision_v1(p: Option<&str>) -> Result<Precision, String> {
    match p {
        None | Some("") => Ok(Precision::Ns),
        Some(s) => match Precision::parse(s) {
            Some(p) => Ok(p),
            None => Err(format!("invalid precision {s:?} (use n, u, ms, s, m or h)")),
        },
    }
}

fn precision_v2(p: Option<&str>) -> Result<Precision, String> {
    match p {
        None | Some("") | Some("ns") => Ok(Precision::Ns),
        Some("us") => Ok(Precision::Us),
        Some("ms") => Ok(Precision::Ms),
        Some("s") => Ok(Precision::S),
        Some(_) => Err("invalid precision; valid precision units are ns, us, ms, and s".to_owned()),
    }
}

/// The joined messages of `errors`, at most [`MAX_LISTED_ERRORS`] of them.
fn joined(errors: &[LineError]) -> String {
    let mut s = String::new();
    for (i, e) in errors.iter().take(MAX_LISTED_ERRORS).enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str(&e.message);
    }
    if errors.len() > MAX_LISTED_ERRORS {
        let _ = write!(
            s,
            "\n(and {} more parse errors)",
            errors.len() - MAX_LISTED_ERRORS
        );
    }
    s
}

fn tag_name(t: &Option<String>) -> Option<&str> {
    t.as_deref().filter(|t| !t.is_empty())
}

/// Copy request parameters into tags (only when configured: it costs a copy of the batch).
fn add_tags(batch: Batch, tags: &[(&str, &str)]) -> Batch {
    if tags.is_empty() {
        return batch;
    }
    let mut out = Batch::with_capacity(batch.len(), batch.arena_bytes() + batch.len() * 16);
    // The lines were checked when parsed: a request tag must not make one
    // vanish here, where nothing reports it.
    out.set_limits(Limits::UNLIMITED);
    for m in batch.iter() {
        let mut b = out.metric(m.name());
        for (k, v) in m.tags() {
            b.tag(k, v);
        }
        for (k, v) in tags {
            b.tag(k, v);
        }
        for (k, v) in m.fields() {
            b.field(k, v);
        }
        // The request's value wins over a tag of the same name, as in Telegraf.
        let _ = b.finish_with(m.timestamp(), DuplicateTags::LastWins);
    }
    out
}

async fn write(s: Arc<Shared>, api: Api, req: Request) -> Response {
    if req.method() == Method::OPTIONS {
        return conflux_net::http::empty(StatusCode::NO_CONTENT);
    }
    let (parts, body) = req.into_parts();
    let Some(body) = s.auth.admit(&parts, body) else {
        return unauthorized(api);
    };
    let q = parts.uri.query().unwrap_or("");
    let param = |k: &str| query_param(q, k).filter(|v| !v.is_empty());
    let target = match api {
        Api::V1 | Api::Kwdb => match param("db") {
            None => Err("database is required".to_owned()),
            Some(db) => precision_v1(param("precision").as_deref()).map(|p| (db, param("rp"), p)),
        },
        Api::V2 => match param("bucket") {
            None => Err("bucket is required".to_owned()),
            Some(bucket) => precision_v2(param("precision").as_deref()).map(|p| (bucket, None, p)),
        },
    };
    let (db, rp, precision) = match target {
        Ok(target) => target,
        Err(e) => return error(api, StatusCode::BAD_REQUEST, "invalid", &e, None),
    };
    let body: Bytes = match collect_body(
        &parts.headers,
        body,
        body_options(
            s.cfg.max_body_bytes,
            s.cfg.max_decompressed_body_bytes,
            &s.budget,
        ),
    )
    .await
    {
        Ok(b) => b,
        Err(e) => return body_error(api, &e),
    };
    s.counters.bytes(body.len());

    let started = Instant::now();
    // A point without a timestamp gets the receive time (the codec cuts it to the precision).
    let opts = ParseOptions {
        precision,
        default_timestamp_ns: now_ns(),
        ..ParseOptions::default()
    };
    let mut batch = Batch::with_capacity(body.len() / 128 + 1, body.len());
    batch.set_limits(s.cfg.limits());
    let mut errors = Vec::new();
    codec::parse(&body, &opts, &mut batch, &mut errors);

    let mut tags: Vec<(&str, &str)> = Vec::new();
    match api {
        Api::V1 | Api::Kwdb => {
            if let Some(t) = tag_name(&s.cfg.database_tag) {
                tags.push((t, &db));
            }
            if let (Some(t), Some(rp)) = (tag_name(&s.cfg.retention_policy_tag), rp.as_deref()) {
                tags.push((t, rp));
            }
        }
        Api::V2 => {
            if let Some(t) = tag_name(&s.cfg.bucket_tag) {
                tags.push((t, &db));
            }
        }
    }
    let batch = add_tags(batch, &tags);
    let (metrics, points) = (batch.len(), batch.points());
    if !batch.is_empty() {
        let wait = Duration::from_millis(s.cfg.queue_wait_ms);
        if let Err(e) = s.ctx.ingest.submit_timeout(batch, wait).await {
            tracing::debug!(listener = %s.ctx.name, error = %e, "write refused");
            return overloaded(api, &e);
        }
        s.counters.received(metrics, points);
    }
    if errors.is_empty() {
        return match api {
            Api::Kwdb => conflux_net::http::json(
                StatusCode::OK,
                format!(
                    "{{\"code\":0,\"desc\":null,\"rows\":{metrics},\"time\":{:.6}}}",
                    started.elapsed().as_secs_f64()
                ),
            ),
            _ => conflux_net::http::empty(StatusCode::NO_CONTENT),
        };
    }
    s.counters.rejected(errors.iter().map(|e| e.kind.reason()));
    tracing::debug!(listener = %s.ctx.name, accepted = metrics, rejected = errors.len(), "bad lines in a write");
    let reasons = joined(&errors);
    let message = if metrics == 0 {
        reasons
    } else {
        let mut m = format!("partial write: {reasons} dropped={}", errors.len());
        if api != Api::V2 {
            let _ = write!(m, " for database: {db}");
            if let Some(rp) = &rp {
                let _ = write!(m, " for retention policy: {rp}");
            }
        }
        m
    };
    match api {
        Api::Kwdb => {
            let body = format!(
                "{{\"code\":-1,\"desc\":{},\"rows\":{metrics},\"time\":{:.6}}}",
                json_escape(&message),
                started.elapsed().as_secs_f64()
            );
            with_header(
                conflux_net::http::json(StatusCode::BAD_REQUEST, body),
                HeaderName::from_static("x-influxdb-error"),
                &message[..message.floor_char_boundary(MAX_ERROR_HEADER)],
            )
        }
        _ => error(
            api,
            StatusCode::BAD_REQUEST,
            "invalid",
            &message,
            errors.first().map(|e| e.line),
        ),
    }
}

/// The `q` of a `/query` request: the query string first, then a form body.
async fn query_text(
    parts: &http::request::Parts,
    body: conflux_net::http::RequestBody,
) -> Result<String, Response> {
    if let Some(q) = query_param(parts.uri.query().unwrap_or(""), "q") {
        return Ok(q.into_owned());
    }
    let form = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if parts.method == Method::POST {
        let body = collect_body(&parts.headers, body, BodyOptions::new(1024 * 1024))
            .await
            .map_err(|e| body_error(Api::V1, &e))?;
        let text = String::from_utf8_lossy(&body);
        if form && let Some(q) = query_param(&text, "q") {
            return Ok(q.into_owned());
        }
    }
    Err(error(
        Api::V1,
        StatusCode::BAD_REQUEST,
        "",
        "missing required parameter \"q\"",
        None,
    ))
}

/// What follows `keywords` (matched case-insensitively, separated by
/// whitespace) at the start of `stmt`, or `None` when they are not there.
fn strip_keywords<'a>(stmt: &'a str, keywords: &[&str]) -> Option<&'a str> {
    let mut rest = stmt.trim_start();
    for k in keywords {
        let head = rest.get(..k.len())?;
        if !head.eq_ignore_ascii_case(k) {
            return None;
        }
        rest = &rest[k.len()..];
        if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
            return None;
        }
        rest = rest.trim_start();
    }
    Some(rest)
}

/// The database name of `CREATE DATABASE <name> [WITH …]`.
fn database_name(rest: &str) -> Option<String> {
    let rest = rest.trim();
    let name = if let Some(quoted) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = quoted.chars();
        loop {
            match chars.next()? {
                '\\' => out.push(chars.next()?),
                '"' => break,
                c => out.push(c),
            }
        }
        out
    } else {
        rest.split_whitespace().next()?.to_owned()
    };
    (!name.is_empty()).then_some(name)
}

async fn query(s: Arc<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(body) = s.auth.admit(&parts, body) else {
        return unauthorized(Api::V1);
    };
    let q = match query_text(&parts, body).await {
        Ok(q) => q,
        Err(resp) => return resp,
    };
    let mut results = Vec::new();
    for (id, stmt) in q
        .split(';')
        .map(str::trim)
        .filter(|st| !st.is_empty())
        .enumerate()
    {
        if let Some(rest) = strip_keywords(stmt, &["CREATE", "DATABASE"]) {
            match database_name(rest) {
                Some(name) => {
                    if let Ok(mut set) = s.created.lock() {
                        set.insert(name);
                    }
                    results.push(format!("{{\"statement_id\":{id}}}"));
                }
                None => {
                    return error(
                        Api::V1,
                        StatusCode::BAD_REQUEST,
                        "",
                        "CREATE DATABASE needs a database name",
                        None,
                    );
                }
            }
        } else if strip_keywords(stmt, &["SHOW", "DATABASES"]).is_some_and(|r| r.trim().is_empty())
        {
            let mut names: BTreeSet<String> = s.cfg.databases.iter().cloned().collect();
            if let Ok(set) = s.created.lock() {
                names.extend(set.iter().cloned());
            }
            let values: Vec<String> = names
                .iter()
                .map(|n| format!("[{}]", json_escape(n)))
                .collect();
            results.push(format!(
                "{{\"statement_id\":{id},\"series\":[{{\"name\":\"databases\",\"columns\":[\"name\"],\"values\":[{}]}}]}}",
                values.join(",")
            ));
        } else {
            let quoted = &stmt[..stmt.floor_char_boundary(64)];
            return error(
                Api::V1,
                StatusCode::BAD_REQUEST,
                "",
                &format!(
                    "conflux is a gateway and stores no data: only CREATE DATABASE and SHOW DATABASES are answered, not '{quoted}'"
                ),
                None,
            );
        }
    }
    conflux_net::http::json(
        StatusCode::OK,
        format!("{{\"results\":[{}]}}", results.join(",")),
    )
}

fn ping(s: &Shared, req: &Request) -> Response {
    let verbose = query_param(req.uri().query().unwrap_or(""), "verbose")
        .is_some_and(|v| !matches!(v.as_ref(), "" | "0" | "false"));
    if verbose {
        let body = format!("{{\"version\":{}}}", json_escape(&s.cfg.influxdb_version));
        conflux_net::http::json(StatusCode::OK, body)
    } else {
        conflux_net::http::empty(StatusCode::NO_CONTENT)
    }
}

fn health(s: &Shared, v2: bool) -> Response {
    let version = json_escape(&s.cfg.influxdb_version);
    let commit = if v2 { ",\"commit\":\"conflux\"" } else { "" };
    conflux_net::http::json(
        StatusCode::OK,
        format!(
            "{{\"name\":\"influxdb\",\"message\":\"ready for queries and writes\",\"status\":\"pass\",\"checks\":[],\"version\":{version}{commit}}}"
        ),
    )
}

fn ready(s: &Shared) -> Response {
    let up = s.started.elapsed().as_secs();
    conflux_net::http::json(
        StatusCode::OK,
        format!("{{\"status\":\"ready\",\"up\":\"{up}s\"}}"),
    )
}

/// Raw TCP and UDP line protocol: parse what arrives, submit, count; bad
/// lines are counted and logged at most every 10 s.
#[derive(Clone)]
struct Lines {
    ctx: ListenerContext,
    counters: Arc<ListenerCounters>,
    limits: Limits,
}

impl Lines {
    fn conn(&self) -> LinesConn {
        LinesConn {
            lines: self.clone(),
            log: RateLimited::new(Duration::from_secs(10)),
            errors: Vec::new(),
        }
    }
}

impl LineHandler for Lines {
    type Conn = LinesConn;
    fn open(&self, _peer: SocketAddr) -> LinesConn {
        self.conn()
    }
}

struct LinesConn {
    lines: Lines,
    log: RateLimited,
    errors: Vec<LineError>,
}

impl LinesConn {
    async fn handle(&mut self, data: &[u8]) -> Flow {
        let opts = ParseOptions {
            default_timestamp_ns: now_ns(),
            ..ParseOptions::default()
        };
        let mut batch = Batch::with_capacity(data.len() / 128 + 1, data.len());
        batch.set_limits(self.lines.limits);
        self.errors.clear();
        codec::parse(data, &opts, &mut batch, &mut self.errors);
        let c = &self.lines.counters;
        if !self.errors.is_empty() {
            c.rejected(self.errors.iter().map(|e| e.kind.reason()));
            if let Some(suppressed) = self.log.allow() {
                tracing::warn!(
                    listener = %self.lines.ctx.name,
                    error = %self.errors[0],
                    rejected = self.errors.len(),
                    suppressed,
                    "bad line protocol"
                );
            }
        }
        let (metrics, points) = (batch.len(), batch.points());
        // Waiting here is the backpressure: nothing more is read meanwhile.
        match self.lines.ctx.ingest.submit(batch).await {
            Ok(_) => {
                c.received(metrics, points);
                Flow::Continue
            }
            Err(_) => Flow::Close,
        }
    }
}

impl LineConn for LinesConn {
    async fn lines(&mut self, lines: &[u8], _reply: &mut Vec<u8>) -> Flow {
        self.handle(lines).await
    }
}

impl DatagramHandler for LinesConn {
    async fn datagram(&mut self, data: &[u8], _peer: SocketAddr) {
        self.handle(data).await;
    }
}
