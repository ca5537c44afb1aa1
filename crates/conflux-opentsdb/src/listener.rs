//! The OpenTSDB listener: one TCP port (4242 by default) for telnet and HTTP,
//! told apart by the first byte of a connection as OpenTSDB does
//! (`PipelineFactory`): an uppercase ASCII letter (`POST`, `GET`, …) means
//! HTTP, anything else telnet.
//!
//! Telnet: lines go through [`codec::parse`]; a bad line is skipped, counted,
//! and answered with OpenTSDB's `put: …` line unless `telnet_errors = false`;
//! it never closes the connection. `version` and `help` are answered, `exit`
//! closes. Over-long lines are skipped and counted by `conflux-net`. While a
//! blocking sink is full the connection is not read (the kernel pushes back
//! on the client).
//!
//! HTTP: `POST /api/put` (also `/api/v1/put`) with OpenTSDB's answers: 204
//! when every point was kept; good points are kept when others fail, and the
//! answer is then 400 with OpenTSDB's error object, or with `summary` /
//! `details` the counts (200 or 400) and each bad point. gzip and deflate
//! bodies, 413 past `max_body_bytes`, 503 with `Retry-After` when a blocking
//! sink stays full past `queue_wait_ms`. `GET /api/version` answers as
//! OpenTSDB 2.4 does.
//!
//! Self-metrics (labels `listener`, `dialect`): received bytes (telnet: as
//! read; HTTP: decompressed bodies), metrics and points, rejected lines and
//! points by `reason`, connections (`conflux-net`), HTTP requests by status.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use conflux_core::Batch;
use conflux_core::component::ListenerContext;
use conflux_core::metric::Limits;
use conflux_core::pipeline::SubmitError;
use conflux_core::telemetry;
use conflux_core::time::SecondsOrMillis;
use conflux_net::allow::AllowList;
use conflux_net::conn::{Acceptor, sniff_byte};
use conflux_net::counters::ListenerCounters;
use conflux_net::http::auth::{Authenticator, Credential, credential_problems, query_param};
use conflux_net::http::{
    BodyError, BodyOptions, HttpConfig, HttpService, Request, Response, Router, collect_body,
    handler_fn,
};
use conflux_net::listener::{
    Server, Socket, Started, Transport, body_budget, body_options, defaults, shared_problems,
};
use conflux_net::ratelimit::RateLimited;
use conflux_net::tcp::{Flow, LineConn, TcpConfig, serve_lines};
use conflux_net::tls::{ServerTls, Stream, TlsConfig};
use conflux_net::{CancellationToken, Labels, ListenerError};
use http::{HeaderValue, Method, StatusCode};
use serde::Deserialize;

use crate::codec::{self, Characters, Command, ErrorKind, Event, ParseOptions};

/// `Retry-After` (seconds) on 503.
const RETRY_AFTER_S: &str = "1";

/// The `help` answer, in OpenTSDB's shape (each command followed by a space).
const HELP: &[u8] = b"available commands: put putm puts version help exit \n";

/// `[listeners.NAME] type = "opentsdb"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The TCP address for telnet and HTTP.
    pub address: SocketAddr,
    /// How `put` tells seconds from milliseconds: `opentsdb_mask` (default),
    /// `kairosdb` (below 3e9 is seconds), `telegraf`, `digits`, `seconds`,
    /// `millis`. `putm` is always milliseconds.
    #[serde(default)]
    pub timestamp_rule: SecondsOrMillis,
    /// `opentsdb` (default: letters, digits, `-_./`, Unicode letters) or
    /// `any_but_space` (KairosDB).
    #[serde(default)]
    pub characters: Characters,
    /// Extra characters allowed with `characters = "opentsdb"` (OpenTSDB's
    /// `tsd.core.tag.allow_specialchars`).
    #[serde(default)]
    pub allow_special_chars: String,
    /// Most tags per point, OpenTSDB's own rule (`tsd.storage.max_tags`),
    /// answered in its words (`Too many tags: N maximum allowed: M`).
    /// Checked first; [`Config::max_tags_per_metric`] stays behind it.
    #[serde(default = "default_max_tags")]
    pub max_tags: usize,
    /// Refuse points without tags, as OpenTSDB does.
    #[serde(default)]
    pub require_tags: bool,
    /// Write `put: …` error lines back to telnet clients (OpenTSDB's
    /// `tsd.rpc.telnet.return_errors`).
    #[serde(default = "default_true")]
    pub telnet_errors: bool,
    /// Longest telnet line; a longer one is counted and skipped.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// Largest `/api/put` body as received, compressed or not (413 past it).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long an HTTP request waits for room in a blocking sink before 503.
    #[serde(default = "default_queue_wait_ms")]
    pub queue_wait_ms: u64,
    /// Connections open at once (telnet and HTTP together).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection idle this long is closed (OpenTSDB: about 5 minutes).
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// The OpenTSDB version `version` and `/api/version` report.
    #[serde(default = "default_opentsdb_version")]
    pub opentsdb_version: String,
    /// Most tags one point may carry, the limit every listener has under
    /// this key (`too_many_tags`, `too many tags (max N)`). It counts a
    /// repeated key once and is checked after [`Config::max_tags`], so the
    /// smaller of the two applies; the default (256) leaves `max_tags` the
    /// one OpenTSDB clients hit.
    #[serde(default = "default_max_tags_per_metric")]
    pub max_tags_per_metric: usize,
    /// Longest series key in bytes (`metric,tagk=tagv,…`); a longer point is
    /// refused (`series_key_too_long`). Same key on every listener.
    #[serde(default = "default_max_series_key_bytes")]
    pub max_series_key_bytes: usize,
    /// Credentials `/api/put` accepts (Basic, `Token`, `Bearer`, `u`/`p`);
    /// empty means no authentication. Telnet has none: use
    /// `allowed_networks` for it.
    #[serde(default)]
    pub credentials: Vec<Credential>,
    /// Largest `/api/put` body after gzip or deflate (413 past it).
    /// Unset: `max_body_bytes`.
    pub max_decompressed_body_bytes: Option<usize>,
    /// `/api/put`: the buffers of every body being read at once; a body
    /// that finds no room within 2 s is answered 503 with `Retry-After`.
    #[serde(default = "defaults::max_inflight_body_bytes")]
    pub max_inflight_body_bytes: usize,
    /// HTTP: time from a request's first byte to the end of its headers.
    #[serde(default = "defaults::header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// HTTP: largest request line and headers (431 past it).
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: usize,
    /// Telnet: a line must be complete this long after its first byte; also
    /// the time a new connection has to send its first byte.
    #[serde(default = "defaults::line_timeout_ms")]
    pub line_timeout_ms: u64,
    /// Serve TLS (telnet and HTTPS on the one port) with this certificate.
    pub tls: Option<TlsConfig>,
    /// Accept connections only from these networks; empty: from anywhere.
    #[serde(default)]
    pub allowed_networks: AllowList,
}

fn default_max_tags() -> usize {
    codec::DEFAULT_MAX_TAGS
}
fn default_true() -> bool {
    true
}
fn default_max_line_bytes() -> usize {
    64 * 1024
}
fn default_max_body_bytes() -> usize {
    32 * 1024 * 1024
}
fn default_queue_wait_ms() -> u64 {
    2_000
}
fn default_max_connections() -> usize {
    1024
}
fn default_idle_timeout_ms() -> u64 {
    300_000
}
fn default_opentsdb_version() -> String {
    "2.4.1".to_owned()
}
fn default_max_tags_per_metric() -> usize {
    Limits::DEFAULT_MAX_TAGS
}
fn default_max_series_key_bytes() -> usize {
    Limits::DEFAULT_MAX_SERIES_KEY_BYTES
}

impl Config {
    /// A config on `address` with every default.
    pub fn new(address: SocketAddr) -> Config {
        Config {
            address,
            timestamp_rule: SecondsOrMillis::default(),
            characters: Characters::default(),
            allow_special_chars: String::new(),
            max_tags: default_max_tags(),
            require_tags: false,
            telnet_errors: true,
            max_line_bytes: default_max_line_bytes(),
            max_body_bytes: default_max_body_bytes(),
            queue_wait_ms: default_queue_wait_ms(),
            max_connections: default_max_connections(),
            idle_timeout_ms: default_idle_timeout_ms(),
            opentsdb_version: default_opentsdb_version(),
            max_tags_per_metric: default_max_tags_per_metric(),
            max_series_key_bytes: default_max_series_key_bytes(),
            credentials: Vec::new(),
            max_decompressed_body_bytes: None,
            max_inflight_body_bytes: defaults::max_inflight_body_bytes(),
            header_read_timeout_ms: defaults::header_read_timeout_ms(),
            max_header_bytes: defaults::max_header_bytes(),
            line_timeout_ms: defaults::line_timeout_ms(),
            tls: None,
            allowed_networks: AllowList::default(),
        }
    }

    /// Every problem with the values.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (key, v) in [
            ("max_line_bytes", self.max_line_bytes),
            ("max_body_bytes", self.max_body_bytes),
            ("max_connections", self.max_connections),
            ("max_tags_per_metric", self.max_tags_per_metric),
            ("max_series_key_bytes", self.max_series_key_bytes),
        ] {
            if v == 0 {
                p.push(format!("`{key}` must be at least 1"));
            }
        }
        if self.idle_timeout_ms == 0 {
            p.push("`idle_timeout_ms` must be at least 1".to_owned());
        }
        if self.require_tags && self.max_tags == 0 {
            p.push("`require_tags = true` needs `max_tags` of at least 1".to_owned());
        }
        if !self.allow_special_chars.is_empty() {
            if self.characters == Characters::AnyButSpace {
                p.push(
                    "`allow_special_chars` applies to `characters = \"opentsdb\"` only".to_owned(),
                );
            }
            if self.allow_special_chars.contains(char::is_whitespace) {
                p.push("`allow_special_chars` must not hold whitespace".to_owned());
            }
        }
        if self.opentsdb_version.is_empty() || self.opentsdb_version.contains(char::is_control) {
            p.push("`opentsdb_version` must be a non-empty line of text".to_owned());
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
        p
    }

    /// The sockets this listener opens: one TCP port for telnet and HTTP.
    pub fn sockets(&self) -> Vec<Socket> {
        vec![Socket {
            address: self.address,
            transport: Transport::Tcp,
        }]
    }

    /// The codec options these settings give.
    pub fn parse_options(&self) -> ParseOptions {
        ParseOptions {
            timestamps: self.timestamp_rule,
            characters: self.characters,
            special_chars: self.allow_special_chars.clone(),
            max_tags: self.max_tags,
            require_tags: self.require_tags,
        }
    }

    /// The per-metric limits every batch this listener parses into checks.
    pub fn limits(&self) -> Limits {
        Limits {
            max_tags: self.max_tags_per_metric,
            max_series_key_bytes: self.max_series_key_bytes,
        }
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms.max(1))
    }

    fn http_config(&self) -> HttpConfig {
        HttpConfig {
            max_body_bytes: self.max_body_bytes,
            max_connections: self.max_connections,
            idle_timeout: self.idle_timeout(),
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
            max_header_bytes: self.max_header_bytes,
        }
    }

    fn tcp_config(&self) -> TcpConfig {
        TcpConfig {
            max_connections: self.max_connections,
            idle_timeout: self.idle_timeout(),
            line_timeout: Duration::from_millis(self.line_timeout_ms.max(1)),
            max_line_bytes: self.max_line_bytes,
            ..TcpConfig::default()
        }
    }
}

/// Shared HTTP routes: none. The HTTP side is sniffed on the listener's own
/// port (OpenTSDB's rule), so it never joins a port the daemon serves.
pub fn router(_cfg: &Config, _ctx: ListenerContext) -> Option<Router> {
    None
}

/// Bind the port and hand over the server that runs it.
///
/// # Errors
/// The address cannot be bound.
pub async fn start(cfg: &Config, ctx: ListenerContext) -> Result<Started, ListenerError> {
    let labels = Labels::from(&ctx);
    let tls = cfg.tls.as_ref().map(ServerTls::load).transpose()?;
    let mut acceptor = Acceptor::bind(cfg.address, cfg.max_connections, labels.clone()).await?;
    acceptor.set_allow(cfg.allowed_networks.clone());
    acceptor.set_tls(tls.clone());
    let address = acceptor.local_addr();
    let shared = Arc::new(Shared::new(cfg, ctx.clone(), labels.clone()));
    let http = HttpService::new(routes(&shared), cfg.http_config(), labels.clone());
    let tcp_cfg = cfg.tcp_config();
    let shutdown = ctx.shutdown.clone();
    let run = async move {
        let token = shutdown.clone();
        acceptor
            .run(shutdown, move |stream, _peer| {
                serve(
                    stream,
                    shared.clone(),
                    http.clone(),
                    tcp_cfg,
                    labels.clone(),
                    token.clone(),
                )
            })
            .await;
    };
    Ok(Started {
        http: Vec::new(),
        servers: vec![Server {
            address,
            transport: "tcp",
            run: Box::pin(run),
            tls,
        }],
    })
}

/// One connection: sniff the first byte, then serve HTTP or telnet.
async fn serve(
    stream: Stream,
    shared: Arc<Shared>,
    http: HttpService,
    tcp_cfg: TcpConfig,
    labels: Labels,
    shutdown: CancellationToken,
) {
    // Both sides answer small messages (HTTP responses, telnet replies such
    // as tcollector's `version` check) that must not wait for Nagle.
    if let Err(e) = stream.tcp().set_nodelay(true) {
        tracing::debug!(error = %e, "set TCP_NODELAY failed");
    }
    // A connection that never speaks holds a slot only this long.
    let first = tokio::select! {
        first = sniff_byte(stream, tcp_cfg.line_timeout.min(tcp_cfg.idle_timeout)) => first,
        () = shutdown.cancelled() => return,
    };
    match first {
        // OpenTSDB's rule: an uppercase letter starts an HTTP method.
        Ok(Some((b, stream))) if b.is_ascii_uppercase() => {
            http.serve_connection(stream, shutdown).await;
        }
        Ok(Some((_, stream))) => {
            let conn = Telnet {
                shared,
                events: Vec::new(),
                log: RateLimited::new(Duration::from_secs(10)),
            };
            match serve_lines(stream, conn, &tcp_cfg, &labels, shutdown).await {
                Ok(reason) => tracing::debug!(?reason, "telnet connection ended"),
                Err(e) => tracing::debug!(error = %e, "telnet connection failed"),
            }
        }
        Ok(None) => tracing::debug!("connection closed before sending anything"),
        Err(e) => {
            if e.kind() == std::io::ErrorKind::TimedOut {
                labels
                    .reason_counter(telemetry::LISTENER_TIMEOUTS, "first_byte")
                    .increment(1);
            }
            tracing::debug!(error = %e, "no first byte");
        }
    }
}

/// What every connection of one listener shares.
struct Shared {
    ctx: ListenerContext,
    opts: ParseOptions,
    limits: Limits,
    telnet_errors: bool,
    body: BodyOptions,
    auth: Authenticator,
    queue_wait: Duration,
    counters: ListenerCounters,
    /// The telnet `version` answer.
    version_lines: Vec<u8>,
    /// The `/api/version` body.
    version_json: String,
}

impl Shared {
    fn new(cfg: &Config, ctx: ListenerContext, labels: Labels) -> Shared {
        let ours = env!("CARGO_PKG_VERSION");
        let v = &cfg.opentsdb_version;
        // OpenTSDB answers `BuildData.revisionString()` and `buildString()`;
        // tcollector only needs the answer to be non-empty.
        let version_lines = format!(
            "net.opentsdb {v} built at revision conflux-{ours} (MINT)\nBuilt by conflux {ours}, an OpenTSDB-compatible gateway\n"
        )
        .into_bytes();
        // Java's HashMap order of OpenTSDB's `/api/version` keys.
        let mut version_json = String::from("{");
        for (i, (k, val)) in [
            ("short_revision", "conflux"),
            ("repo", "conflux"),
            ("host", "conflux"),
            ("version", v.as_str()),
            ("full_revision", &format!("conflux-{ours}")),
            ("repo_status", "MINT"),
            ("user", "conflux"),
            ("branch", "conflux"),
            ("timestamp", "0"),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                version_json.push(',');
            }
            let _ = write!(version_json, "\"{k}\":{}", json_str(val));
        }
        version_json.push('}');
        Shared {
            opts: cfg.parse_options(),
            limits: cfg.limits(),
            telnet_errors: cfg.telnet_errors,
            body: body_options(
                cfg.max_body_bytes,
                cfg.max_decompressed_body_bytes,
                &body_budget(cfg.max_inflight_body_bytes, &labels),
            ),
            auth: Authenticator::new(&cfg.credentials),
            queue_wait: Duration::from_millis(cfg.queue_wait_ms),
            counters: ListenerCounters::new(&labels, ErrorKind::ALL.iter().map(|k| k.reason())),
            version_lines,
            version_json,
            ctx,
        }
    }
}

/// One telnet connection.
struct Telnet {
    shared: Arc<Shared>,
    /// Refusals and commands of the current read, reused.
    events: Vec<Event>,
    log: RateLimited,
}

impl LineConn for Telnet {
    async fn lines(&mut self, lines: &[u8], reply: &mut Vec<u8>) -> Flow {
        let s = self.shared.clone();
        // Lines are about 100 to 200 bytes, and names and tags most of them.
        let mut batch = Batch::with_capacity(lines.len() / 100 + 1, lines.len());
        batch.set_limits(s.limits);
        self.events.clear();
        let summary = codec::parse(lines, &s.opts, &mut batch, &mut self.events);
        let mut refused = 0;
        for e in &self.events {
            match e {
                Event::Error(err) => {
                    refused += 1;
                    if s.telnet_errors {
                        reply.extend_from_slice(err.message.as_bytes());
                        reply.push(b'\n');
                    }
                }
                Event::Command {
                    command: Command::Version,
                    ..
                } => reply.extend_from_slice(&s.version_lines),
                Event::Command {
                    command: Command::Help,
                    ..
                } => reply.extend_from_slice(HELP),
                Event::Command {
                    command: Command::Exit,
                    ..
                } => {}
            }
        }
        if refused > 0 {
            s.counters
                .rejected(self.events.iter().filter_map(|e| match e {
                    Event::Error(err) => Some(err.kind.reason()),
                    Event::Command { .. } => None,
                }));
            if let Some(suppressed) = self.log.allow()
                && let Some(Event::Error(first)) =
                    self.events.iter().find(|e| matches!(e, Event::Error(_)))
            {
                tracing::warn!(
                    listener = %s.ctx.name,
                    error = %first.message,
                    reason = first.kind.reason(),
                    rejected = refused,
                    suppressed,
                    "bad telnet lines"
                );
            }
        }
        let (metrics, points) = (batch.len(), batch.points());
        if metrics > 0 {
            // Waiting here is the backpressure: nothing more is read meanwhile.
            if s.ctx.ingest.submit(batch).await.is_err() {
                return Flow::Close;
            }
            s.counters.received(metrics, points);
        }
        if summary.exit {
            Flow::Close
        } else {
            Flow::Continue
        }
    }
}

/// The HTTP routes served on the port after sniffing.
fn routes(shared: &Arc<Shared>) -> Router {
    type Handle = fn(Arc<Shared>, Request) -> conflux_net::http::BoxFuture<'static, Response>;
    let owner = shared.ctx.name.to_string();
    let mut r = Router::new();
    let mut add = |paths: &[&str], f: Handle| {
        for path in paths {
            let s = shared.clone();
            let h = handler_fn(move |req| f(s.clone(), req));
            // Every method: wrong ones get OpenTSDB's 405 object, not the router's text.
            // A fresh router with fixed, distinct paths cannot conflict.
            let _ = r.route(path, &[], &owner, h);
        }
    };
    add(&["/api/put", "/api/put/", "/api/v1/put"], |s, req| {
        Box::pin(put(s, req))
    });
    add(
        &["/api/version", "/api/version/", "/api/v1/version"],
        |s, req| Box::pin(async move { version(&s, &req) }),
    );
    r
}

/// `{"error":{"code":N,"message":"…"[,"details":"…"]}}`, OpenTSDB's error object.
fn error(status: StatusCode, message: &str, details: Option<&str>) -> Response {
    let mut body = format!(
        "{{\"error\":{{\"code\":{},\"message\":{}",
        status.as_u16(),
        json_str(message)
    );
    if let Some(d) = details.filter(|d| !d.is_empty()) {
        let _ = write!(body, ",\"details\":{}", json_str(d));
    }
    body.push_str("}}");
    conflux_net::http::json(status, body)
}

fn method_not_allowed(method: &Method) -> Response {
    let method = &method.as_str()[..method.as_str().floor_char_boundary(codec::QUOTE_BYTES)];
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        Some(&format!(
            "The HTTP method [{method}] is not permitted for this endpoint"
        )),
    )
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    codec::json_string(s, &mut out);
    out
}

fn version(s: &Shared, req: &Request) -> Response {
    if req.method() != Method::GET {
        return method_not_allowed(req.method());
    }
    conflux_net::http::json(StatusCode::OK, s.version_json.clone())
}

async fn put(s: Arc<Shared>, req: Request) -> Response {
    if req.method() != Method::POST {
        return method_not_allowed(req.method());
    }
    let (parts, body) = req.into_parts();
    let Some(body) = s.auth.admit(&parts, body) else {
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            Some("missing or invalid credentials"),
        );
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"OpenTSDB\""),
        );
        return resp;
    };
    let q = parts.uri.query().unwrap_or("");
    // OpenTSDB looks at whether the flags are present, not at their values.
    let details = query_param(q, "details").is_some();
    let summary = details || query_param(q, "summary").is_some();
    let body = match collect_body(&parts.headers, body, s.body.clone()).await {
        Ok(b) => b,
        Err(e) => return body_error(&e),
    };
    s.counters.bytes(body.len());

    let put = match codec::parse_put_with_limits(&body, &s.opts, s.limits, details) {
        Ok(p) => p,
        Err(e) => {
            s.counters.reject(ErrorKind::InvalidJson.reason(), 1);
            tracing::debug!(listener = %s.ctx.name, error = %e, "unreadable /api/put body");
            return error(StatusCode::BAD_REQUEST, &e.to_string(), e.details());
        }
    };
    let (metrics, points) = (put.batch.len(), put.batch.points());
    if metrics > 0 {
        if let Err(e) = s.ctx.ingest.submit_timeout(put.batch, s.queue_wait).await {
            tracing::debug!(listener = %s.ctx.name, error = %e, "/api/put refused");
            return overloaded(&e);
        }
        s.counters.received(metrics, points);
    }
    let failed = put.errors.len();
    if failed > 0 {
        s.counters
            .rejected(put.errors.iter().map(|e| e.kind.reason()));
        tracing::debug!(listener = %s.ctx.name, accepted = metrics, rejected = failed, "bad points in /api/put");
    }
    if !summary {
        return if failed == 0 {
            conflux_net::http::empty(StatusCode::NO_CONTENT)
        } else {
            error(
                StatusCode::BAD_REQUEST,
                "One or more data points had errors",
                Some("Please see the TSD logs or append \"details\" to the put request"),
            )
        };
    }
    // Java's HashMap order of OpenTSDB's summary keys: success, failed, errors.
    let mut body = format!("{{\"success\":{},\"failed\":{failed}", put.total - failed);
    if details {
        body.push_str(",\"errors\":[");
        for (i, e) in put.errors.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            let _ = write!(
                body,
                "{{\"datapoint\":{},\"error\":{}}}",
                e.datapoint.as_deref().unwrap_or("null"),
                json_str(&e.message)
            );
        }
        body.push(']');
    }
    body.push('}');
    let status = if failed > 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    conflux_net::http::json(status, body)
}

fn body_error(e: &BodyError) -> Response {
    let message = match e {
        BodyError::TooLarge { .. } => "Request Entity Too Large".to_owned(),
        other => other.to_string(),
    };
    let details = match e {
        BodyError::TooLarge { .. } => Some(e.to_string()),
        _ => None,
    };
    let mut resp = error(e.status(), &message, details.as_deref());
    if let Some(v) = e.retry_after() {
        resp.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
    resp
}

fn overloaded(err: &SubmitError) -> Response {
    let details = match err {
        SubmitError::Overloaded { sink } => {
            format!("sink `{sink}` has no room in its queue; retry later")
        }
        SubmitError::Closed => "shutting down".to_owned(),
    };
    let mut resp = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Please throttle writes",
        Some(&details),
    );
    resp.headers_mut().insert(
        http::header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_S),
    );
    resp
}
