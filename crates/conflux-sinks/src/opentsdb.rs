//! The `opentsdb` sink: OpenTSDB's HTTP API (`POST /api/put`, JSON) or its
//! telnet protocol (`put <metric> <timestamp> <value> <k=v>…` lines over TCP),
//! chosen per URL:
//!
//! - `http://host:4242/api/put` (or `https://`): JSON arrays of at most
//!   `http_batch_size` points (default 50, as Telegraf's opentsdb output and
//!   OpenTSDB's docs suggest), several requests per batch when needed; every
//!   request must succeed or the whole batch is retried (resent points
//!   overwrite themselves: same series, same timestamp). The `details` query
//!   flag is always added, so that OpenTSDB says which points it refused:
//!   - 204 (or 200): stored;
//!   - 400 with `{"success":N,"failed":M,"errors":[…]}`: the N good points
//!     are stored, so the request is not retried; M is counted as rejected
//!     and the first error is logged (OpenTSDB's transient per-point errors,
//!     `Please throttle` or a storage exception, are counted the same way:
//!     only a resend of the whole request could retry them);
//!   - 400 without that body (VictoriaMetrics and InfluxDB answer a plain
//!     message, and refuse the whole request): the request's points are
//!     rejected (a [`SinkError::Rejected`] when no request of the batch got
//!     through);
//!   - anything else as every HTTP sink ([`http_client::classify`]): 5xx,
//!     408, 429 and timeouts are retried.
//! - `tcp://host:4242` (or `tls://` for TLS with the `tls_*` keys): telnet
//!   `put` lines over one persistent connection ([`TcpSender`]: reconnect
//!   with backoff, at-least-once). OpenTSDB answers
//!   a bad line with a `put: …` line and nothing for a good one; before each
//!   write the sink reads, without waiting, what the server wrote so far and
//!   counts each line as one rejected point, with the first as the message.
//!   This is asynchronous and approximate: the answers to a batch are usually
//!   counted with the next one (those after the last batch are only logged
//!   at close), and a server that drops bad lines silently
//!   (VictoriaMetrics, InfluxDB) gives no count at all.
//!
//! Points are named and cleaned by [`conflux_opentsdb::codec::Encoder`] with
//! the core naming policy (`[naming]` overrides it): one point per field,
//! `measurement_field` (a `value` field keeps the bare name); strings are
//! skipped, bools are 1 and 0. A point whose time OpenTSDB cannot hold
//! (before 1970-01-01T00:00:01Z) is dropped and counted as rejected.
//!
//! # Millisecond timestamps
//!
//! OpenTSDB 2.x reads a timestamp above 2^32 - 1 as milliseconds, over telnet
//! and HTTP alike, and telnet also takes `seconds.mmm`. Other servers that
//! speak the protocol do not. What each does with a point at second `T` plus
//! 123 ms (checked in `tests/opentsdb_sink.rs` against VictoriaMetrics 1.79.5
//! and InfluxDB 1.6.7; OpenTSDB from its docs and source,
//! `shared/reference/ANCHORS.md` 2.7 and 2.9):
//!
//! | server | protocol | `T123` (13 digits) | `T.123` |
//! | --- | --- | --- | --- |
//! | OpenTSDB 2.x (its docs and source) | telnet | `T.123` | `T.123` |
//! | OpenTSDB 2.x | HTTP | `T.123` | not allowed (its docs: an integer) |
//! | VictoriaMetrics 1.79 | telnet | **dropped** (read as seconds: far future, `big_timestamp`) | `T` (fraction cut) |
//! | VictoriaMetrics 1.79 | HTTP `/api/put` | `T.123` | `T` (fraction cut) |
//! | InfluxDB 1.6 opentsdb service | telnet | **`T` + 123 µs** | **dropped** (`Time must be 10 or 13 chars`) |
//! | InfluxDB 1.6 opentsdb service | HTTP `/api/put` | **`T` + 123 µs** | **whole request refused** (400) |
//!
//! The encoder never writes `T.123`. Since the servers differ,
//! `timestamp_unit` chooses:
//! - `"s"` (default): whole seconds, the fraction cut, as Telegraf's opentsdb
//!   output writes. Right on every server above (two points of one series in
//!   the same second overwrite each other).
//! - `"ms"`: milliseconds when the time has a fraction (whole seconds are
//!   still written as seconds). For OpenTSDB itself (both protocols) and
//!   VictoriaMetrics' `/api/put` only.

use bytes::Bytes;
use conflux_core::Batch;
use conflux_core::metric::MetricRef;
use conflux_core::naming::{Naming, NamingOptions, Target};
use conflux_opentsdb::codec::{Encoded, Encoder};
use http::{HeaderMap, Method, StatusCode, Uri};
use serde::Deserialize;

use crate::endpoint::{Endpoint, Endpoints, NetConfig};
use crate::http_client::{self, HttpClient, HttpResponse, QUOTE_BYTES, TlsConfig};
use crate::runner::{Sent, SinkError};
use crate::tcp_client::{self, TcpSender};

/// The path of OpenTSDB's write endpoint.
const API_PUT: &str = "/api/put";

/// How timestamps with a fraction of a second are written (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimestampUnit {
    /// Whole seconds, the fraction cut (every server reads them right).
    #[default]
    S,
    /// Milliseconds when there is a fraction (OpenTSDB itself, VictoriaMetrics' `/api/put`).
    Ms,
}

/// `[sinks.NAME] type = "opentsdb"`: its own keys (the URL, timeout and TLS
/// keys are [`NetConfig`]'s).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP Basic user (with `password`); HTTP URLs only.
    pub username: Option<String>,
    /// HTTP Basic password (with `username`).
    pub password: Option<String>,
    /// Most points per `/api/put` request; default 50 (Telegraf's
    /// `http_batch_size`).
    pub http_batch_size: Option<usize>,
    /// `s` (default) or `ms`: see the module docs.
    #[serde(default)]
    pub timestamp_unit: TimestampUnit,
    /// Series naming overrides (`[sinks.NAME.naming]`).
    #[serde(default)]
    pub naming: NamingOptions,
}

/// Telegraf's `http_batch_size` default, and OpenTSDB's advice.
const DEFAULT_HTTP_BATCH_SIZE: usize = 50;

impl Config {
    /// Every problem with the settings.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        p.extend(http_client::credentials_problem(
            &self.username,
            &self.password,
        ));
        if self.http_batch_size == Some(0) {
            p.push("`http_batch_size` must be at least 1".to_owned());
        }
        p
    }

    fn batch_size(&self) -> usize {
        self.http_batch_size
            .unwrap_or(DEFAULT_HTTP_BATCH_SIZE)
            .max(1)
    }
}

/// What a URL of this sink is.
enum Url {
    Http(Uri),
    Telnet(tcp_client::Target),
}

fn parse_url(url: &str) -> Result<Url, String> {
    match url.split_once("://").map(|(s, _)| s) {
        Some("tcp" | "tls") => tcp_client::parse_url(url).map(Url::Telnet),
        Some("http" | "https") => {
            let uri = http_client::parse_url(url)?;
            if uri.path() != API_PUT {
                return Err(format!("`url` = {url:?} must have the path {API_PUT}"));
            }
            Ok(Url::Http(with_details(&uri)?))
        }
        _ => Err(format!(
            "`url` = {url:?} must start with http://, https:// (…{API_PUT}), tcp:// or tls://"
        )),
    }
}

/// `uri` with the `details` query flag (OpenTSDB only checks that it is present).
fn with_details(uri: &Uri) -> Result<Uri, String> {
    let query = match uri.query() {
        None | Some("") => "details".to_owned(),
        Some(q)
            if q.split('&')
                .any(|kv| kv.split('=').next() == Some("details")) =>
        {
            q.to_owned()
        }
        Some(q) => format!("{q}&details"),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        format!("{}?{query}", uri.path())
            .parse()
            .map_err(|e| format!("`url` = {uri}: {e}"))?,
    );
    Uri::from_parts(parts).map_err(|e| format!("`url` = {uri}: {e}"))
}

/// The `opentsdb` sink: one [`OpentsdbEndpoint`] per URL.
pub type OpentsdbSink = Endpoints<OpentsdbEndpoint>;

/// Every problem with the shared and own settings, URLs included.
pub fn check(net: &NetConfig, cfg: &Config) -> Vec<String> {
    let mut problems = net.problems();
    problems.extend(cfg.problems());
    let (mut http, mut tls, mut bad_url) = (false, false, false);
    for url in net.all_urls() {
        match parse_url(url) {
            Ok(Url::Http(uri)) => {
                http = true;
                tls |= uri.scheme_str() == Some("https");
            }
            Ok(Url::Telnet(target)) => tls |= target.tls,
            Err(e) => {
                bad_url = true;
                problems.push(e);
            }
        }
    }
    // Which keys apply depends on the URLs: only judged when all are known.
    let urls_known = !net.all_urls().is_empty() && !bad_url;
    if urls_known && !http {
        for (set, key) in [
            (cfg.username.is_some(), "username"),
            (cfg.password.is_some(), "password"),
            (cfg.http_batch_size.is_some(), "http_batch_size"),
        ] {
            if set {
                problems.push(format!("`{key}` applies to http:// and https:// URLs only"));
            }
        }
    }
    if urls_known && !tls && net.tls() != TlsConfig::default() {
        problems.push(
            "the `tls_*` keys apply to https:// and tls:// URLs only: tcp:// is plain TCP \
             (write tls://host:port for telnet over TLS)"
                .to_owned(),
        );
    }
    problems
}

/// Build the sink: check the URLs, open the HTTP client when a URL needs it,
/// read the TLS files (no connection yet).
///
/// # Errors
/// Every problem with the settings, joined.
pub fn build(net: &NetConfig, cfg: &Config) -> Result<OpentsdbSink, String> {
    let problems = check(net, cfg);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let mut client: Option<HttpClient> = None;
    let auth = match (&cfg.username, &cfg.password) {
        (Some(u), Some(p)) => Some(http_client::basic_auth(u, p)),
        _ => None,
    };
    let naming = Naming::with_options(Target::Opentsdb, &cfg.naming);
    let mut endpoints = Vec::new();
    for url in net.all_urls() {
        let common = Common {
            encoder: Encoder::new(naming.clone()),
            unit: cfg.timestamp_unit,
            // A metric the listener accepted is rebuilt whatever its size.
            scratch: Batch::unlimited(),
            buf: Vec::new(),
        };
        let endpoint = match parse_url(url)? {
            Url::Http(uri) => {
                let client = match &client {
                    Some(c) => c.clone(),
                    None => client.insert(net.http_client()?).clone(),
                };
                OpentsdbEndpoint::Http(Box::new(HttpEndpoint {
                    client,
                    uri,
                    headers: http_client::json_headers(false, auth.clone()),
                    batch_size: cfg.batch_size(),
                    common,
                    spans: Vec::new(),
                }))
            }
            Url::Telnet(target) => OpentsdbEndpoint::Telnet(Box::new(TelnetEndpoint {
                tcp: TcpSender::build(&target, net.timeout(), &net.tls())?,
                common,
                replies: Replies::default(),
            })),
        };
        endpoints.push((url.to_owned(), endpoint));
    }
    Ok(Endpoints::new(net.mode, endpoints))
}

/// Sends batches to one OpenTSDB URL, over HTTP or telnet.
#[derive(Debug)]
pub enum OpentsdbEndpoint {
    /// `http(s)://…/api/put`.
    Http(Box<HttpEndpoint>),
    /// `tcp://host:port` or `tls://host:port`.
    Telnet(Box<TelnetEndpoint>),
}

impl Endpoint for OpentsdbEndpoint {
    async fn send(&mut self, metrics: &[MetricRef<'_>]) -> Result<Sent, SinkError> {
        match self {
            OpentsdbEndpoint::Http(e) => e.send(metrics).await,
            OpentsdbEndpoint::Telnet(e) => e.send(metrics).await,
        }
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        match self {
            OpentsdbEndpoint::Http(_) => Ok(()),
            OpentsdbEndpoint::Telnet(e) => e.close().await,
        }
    }
}

/// The encoding state both transports share.
#[derive(Debug)]
struct Common {
    encoder: Encoder,
    unit: TimestampUnit,
    /// Copies of the metrics whose timestamps are cut to whole seconds.
    scratch: Batch,
    buf: Vec<u8>,
}

const NS_PER_S: i64 = 1_000_000_000;

impl Common {
    /// Call `f` with each metric as it is to be written: under
    /// [`TimestampUnit::S`] a metric with a fraction of a second is a copy
    /// with the fraction cut.
    fn each(
        &mut self,
        metrics: &[MetricRef<'_>],
        mut f: impl FnMut(&mut Encoder, &mut Vec<u8>, &MetricRef<'_>),
    ) {
        let cut =
            |m: &MetricRef<'_>| self.unit == TimestampUnit::S && m.timestamp() % NS_PER_S != 0;
        self.scratch.clear();
        for m in metrics.iter().filter(|m| cut(m)) {
            let mut b = self.scratch.metric(m.name());
            for (k, v) in m.tags() {
                b.tag(k, v);
            }
            for (k, v) in m.fields() {
                b.field(k, v);
            }
            b.ttl(m.ttl().unwrap_or(0));
            if b.finish(m.timestamp() - m.timestamp().rem_euclid(NS_PER_S))
                .is_err()
            {
                // Cannot happen to a metric that came from a batch; keep the
                // copies aligned with the metrics all the same.
                self.scratch.push_ref(*m);
            }
        }
        let mut copies = self.scratch.iter();
        for m in metrics {
            if cut(m) {
                if let Some(copy) = copies.next() {
                    f(&mut self.encoder, &mut self.buf, &copy);
                }
            } else {
                f(&mut self.encoder, &mut self.buf, m);
            }
        }
    }
}

/// What the encoder did for a batch, as the runner counts it.
#[derive(Debug, Default)]
struct Tally {
    sent: Sent,
    invalid_timestamp: usize,
}

impl Tally {
    fn add(&mut self, e: &Encoded) {
        if e.written > 0 {
            self.sent.metrics += 1;
            self.sent.points += e.written;
        }
        self.sent.skipped.string += e.string_value;
        self.sent.skipped.bool += e.bool_value;
        self.sent.skipped.non_finite += e.non_finite_value;
        self.sent.skipped.invalid_name += e.invalid_name;
        self.invalid_timestamp += e.invalid_timestamp;
    }

    /// The runner has no `invalid_timestamp` skip reason: such points are
    /// dropped as rejected, with a message.
    fn finish(mut self) -> Sent {
        if self.invalid_timestamp > 0 {
            reject(
                &mut self.sent,
                self.invalid_timestamp,
                format!(
                    "{} points with a time OpenTSDB cannot hold (before 1970-01-01T00:00:01Z)",
                    self.invalid_timestamp
                ),
            );
        }
        self.sent
    }
}

fn reject(sent: &mut Sent, n: usize, message: String) {
    sent.rejected += n;
    if sent.rejection.is_none() {
        sent.rejection = Some(message);
    }
}

/// Sends `/api/put` requests to one URL.
pub struct HttpEndpoint {
    client: HttpClient,
    uri: Uri,
    headers: HeaderMap,
    batch_size: usize,
    common: Common,
    /// Byte ranges of the point objects in `common.buf`.
    spans: Vec<(usize, usize)>,
}

impl std::fmt::Debug for HttpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpEndpoint")
            .field("uri", &self.uri)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl HttpEndpoint {
    /// The URL requests go to (with the `details` flag).
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Encode `metrics` into one JSON array in `common.buf` and find its
    /// point objects.
    fn encode(&mut self, metrics: &[MetricRef<'_>]) -> Tally {
        let mut tally = Tally::default();
        let c = &mut self.common;
        c.buf.clear();
        c.encoder.json_begin(&mut c.buf);
        c.each(metrics, |enc, buf, m| tally.add(&enc.json_points(m, buf)));
        c.encoder.json_end(&mut c.buf);
        object_spans(&c.buf, &mut self.spans);
        tally
    }

    async fn send(&mut self, metrics: &[MetricRef<'_>]) -> Result<Sent, SinkError> {
        let mut sent = self.encode(metrics).finish();
        let (mut requests, mut refused_whole) = (0, 0);
        let mut first_refusal = None;
        for chunk in self.spans.chunks(self.batch_size) {
            let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
                continue;
            };
            // The objects of a chunk are contiguous, with their commas.
            let mut body = Vec::with_capacity(last.1 - first.0 + 2);
            body.push(b'[');
            body.extend_from_slice(&self.common.buf[first.0..last.1]);
            body.push(b']');
            sent.bytes += body.len();
            requests += 1;
            let result = self
                .client
                .send(Method::POST, &self.uri, &self.headers, Bytes::from(body))
                .await;
            match answer(result, chunk.len()) {
                Ok(None) => {}
                Ok(Some((failed, message))) => reject(&mut sent, failed, message),
                Err(SinkError::Rejected { message }) => {
                    refused_whole += 1;
                    reject(&mut sent, chunk.len(), message.clone());
                    first_refusal.get_or_insert(message);
                }
                Err(e) => return Err(e),
            }
        }
        if requests > 0 && refused_whole == requests {
            return Err(SinkError::Rejected {
                message: first_refusal.unwrap_or_default(),
            });
        }
        Ok(sent)
    }
}

/// OpenTSDB's `details` answer.
#[derive(Debug, Deserialize)]
struct Details {
    failed: usize,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

/// What an `/api/put` answer means for a request of `points` points:
/// `Ok(None)` stored, `Ok(Some((failed, message)))` stored but for `failed`
/// points, `Err` as [`http_client::classify`] (a 400 without a `details`
/// body is [`SinkError::Rejected`]).
fn answer(
    result: Result<HttpResponse, http_client::HttpError>,
    points: usize,
) -> Result<Option<(usize, String)>, SinkError> {
    let resp = match result {
        Ok(r) if r.status.is_success() || r.status == StatusCode::BAD_REQUEST => r,
        other => return http_client::classify(other).map(|_| None),
    };
    let details = serde_json::from_slice::<Details>(&resp.body).ok();
    match details {
        Some(d) if d.failed > 0 => {
            let failed = d.failed.min(points);
            let first = d.errors.first().map(describe_error).unwrap_or_default();
            let mut message = format!("{}: {failed} of {points} points refused", resp.status);
            if !first.is_empty() {
                message.push_str(", first: ");
                message.push_str(&first);
            }
            Ok(Some((failed, message)))
        }
        _ if resp.status.is_success() => Ok(None),
        // A 400 that names no failed point: the request as a whole was refused.
        _ => Err(SinkError::Rejected {
            message: http_client::describe(&resp),
        }),
    }
}

/// `<error> (metric <name>)` from one entry of `errors`, at most
/// [`QUOTE_BYTES`] bytes on one line.
fn describe_error(e: &serde_json::Value) -> String {
    let error = e.get("error").and_then(|v| v.as_str()).unwrap_or("");
    let metric = e
        .pointer("/datapoint/metric")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let text = if metric.is_empty() {
        error.to_owned()
    } else {
        format!("{error} (metric {metric})")
    };
    one_line(&text)
}

/// At most [`QUOTE_BYTES`] of `text`, control characters made spaces.
fn one_line(text: &str) -> String {
    let text = text.trim();
    text[..text.floor_char_boundary(QUOTE_BYTES)]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The byte ranges of the top-level objects of a JSON array the encoder
/// wrote (strings are escaped, so braces inside them are skipped by
/// tracking quotes).
fn object_spans(json: &[u8], out: &mut Vec<(usize, usize)>) {
    out.clear();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut start = 0;
    for (i, &b) in json.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => {
                if depth == 0 {
                    start = i;
                }
                depth += 1;
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    out.push((start, i + 1));
                }
            }
            _ => {}
        }
    }
}

/// Sends telnet `put` lines to one `tcp://` or `tls://` URL.
#[derive(Debug)]
pub struct TelnetEndpoint {
    tcp: TcpSender,
    common: Common,
    replies: Replies,
}

impl TelnetEndpoint {
    /// The connection (for tests and diagnostics).
    pub fn tcp(&self) -> &TcpSender {
        &self.tcp
    }

    async fn send(&mut self, metrics: &[MetricRef<'_>]) -> Result<Sent, SinkError> {
        let mut tally = Tally::default();
        let c = &mut self.common;
        c.buf.clear();
        c.each(metrics, |enc, buf, m| tally.add(&enc.put_lines(m, buf)));
        let mut sent = tally.finish();
        let replies = &mut self.replies;
        let mut feed = |b: &[u8]| replies.feed(b);
        if self.common.buf.is_empty() {
            self.tcp.drain(&mut feed);
        } else {
            self.tcp.send(&self.common.buf, &mut feed).await?;
            sent.bytes = self.common.buf.len();
        }
        let (lines, first) = self.replies.take();
        if lines > 0 {
            reject(
                &mut sent,
                lines,
                format!(
                    "{lines} lines refused (answers to this or an earlier batch), first: {first}"
                ),
            );
        }
        Ok(sent)
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        let replies = &mut self.replies;
        let result = self.tcp.close(&mut |b: &[u8]| replies.feed(b)).await;
        let (lines, first) = self.replies.take();
        if lines > 0 {
            tracing::warn!(
                addr = self.tcp.addr(),
                lines,
                first = %first,
                "the server refused lines of the last batches"
            );
        }
        result
    }
}

/// The lines a telnet server wrote back, counted as they arrive in pieces.
#[derive(Debug, Default)]
struct Replies {
    lines: usize,
    first: Option<String>,
    /// The start of the line being received (at most [`QUOTE_BYTES`]).
    partial: Vec<u8>,
    /// The line being received holds more than blanks.
    partial_text: bool,
}

impl Replies {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                if self.partial_text {
                    self.lines += 1;
                    if self.first.is_none() {
                        self.first = Some(one_line(&String::from_utf8_lossy(&self.partial)));
                    }
                }
                self.partial.clear();
                self.partial_text = false;
            } else {
                if self.partial.len() < QUOTE_BYTES {
                    self.partial.push(b);
                }
                self.partial_text |= !b.is_ascii_whitespace();
            }
        }
    }

    /// Complete lines so far and the first of them; counting starts again.
    fn take(&mut self) -> (usize, String) {
        let lines = std::mem::take(&mut self.lines);
        (lines, self.first.take().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use conflux_core::Metric;

    use super::*;
    use crate::endpoint::parse_toml;

    fn parse(text: &str) -> Result<(NetConfig, Config), String> {
        parse_toml(text)
    }

    fn problems(text: &str) -> Vec<String> {
        let (net, c) = parse(text).unwrap();
        check(&net, &c)
    }

    #[test]
    fn defaults() {
        let (net, c) = parse("url = \"http://127.0.0.1:4242/api/put\"").unwrap();
        assert!(check(&net, &c).is_empty());
        assert_eq!(c.batch_size(), 50);
        assert_eq!(c.timestamp_unit, TimestampUnit::S);
        let sink = build(&net, &c).unwrap();
        let Some(OpentsdbEndpoint::Http(e)) = sink.endpoints().next() else {
            panic!("not http")
        };
        assert_eq!(e.uri().to_string(), "http://127.0.0.1:4242/api/put?details");
        let (net, c) = parse(
            "urls = [\"tcp://127.0.0.1:4242\", \"https://tsdb/api/put?sync\"]\ntimestamp_unit = \"ms\"\n\
             http_batch_size = 7\nusername = \"u\"\npassword = \"p\"\n[naming]\nseparator = \".\"",
        )
        .unwrap();
        assert!(check(&net, &c).is_empty(), "{:?}", check(&net, &c));
        assert_eq!(c.timestamp_unit, TimestampUnit::Ms);
        let sink = build(&net, &c).unwrap();
        let kinds: Vec<String> = sink
            .endpoints()
            .map(|e| match e {
                OpentsdbEndpoint::Http(h) => h.uri().to_string(),
                OpentsdbEndpoint::Telnet(t) => t.tcp().addr().to_owned(),
            })
            .collect();
        assert_eq!(
            kinds,
            vec!["127.0.0.1:4242", "https://tsdb/api/put?sync&details"]
        );
    }

    #[test]
    fn details_flag_is_added_once() {
        let d = |u: &str| with_details(&u.parse().unwrap()).unwrap().to_string();
        assert_eq!(d("http://a/api/put"), "http://a/api/put?details");
        assert_eq!(d("http://a/api/put?details"), "http://a/api/put?details");
        assert_eq!(
            d("http://a/api/put?summary&details=true"),
            "http://a/api/put?summary&details=true"
        );
        assert_eq!(
            d("http://a/api/put?sync_timeout=100"),
            "http://a/api/put?sync_timeout=100&details"
        );
    }

    #[test]
    fn urls_are_checked_per_scheme() {
        let p = problems(
            "urls = [\"http://tsdb:4242/api/query\", \"udp://tsdb:4242\", \"tcp://tsdb\", \"https://tsdb/api/put\", \"tcp://tsdb:4242/x\"]",
        );
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].contains("must have the path /api/put"), "{p:?}");
        assert!(
            p[1].contains("must start with http://, https:// (…/api/put), tcp:// or tls://"),
            "{p:?}"
        );
        assert!(p[2].contains("needs a port"), "{p:?}");
        assert!(p[3].contains("without a path"), "{p:?}");
    }

    const TLS_KEYS: &str = "the `tls_*` keys apply to https:// and tls:// URLs only: tcp:// is \
                            plain TCP (write tls://host:port for telnet over TLS)";

    #[test]
    fn tls_urls_take_the_tls_keys() {
        let keys = "tls_server_name = \"localhost\"";
        assert!(problems(&format!("url = \"tls://tsdb:4242\"\n{keys}")).is_empty());
        // A TLS URL beside a plain one: the keys apply to it.
        assert!(
            problems(&format!(
                "urls = [\"tcp://a:4242\", \"tls://b:4242\"]\n{keys}"
            ))
            .is_empty()
        );
        assert_eq!(
            problems(&format!("url = \"tcp://tsdb:4242\"\n{keys}")),
            vec![TLS_KEYS]
        );
        let p = problems("url = \"tls://tsdb\"");
        assert_eq!(
            p,
            vec!["`url` = \"tls://tsdb\" needs a port (tls://host:port)"]
        );
        let (net, c) = parse("url = \"tls://127.0.0.1:4242\"").unwrap();
        let sink = build(&net, &c).unwrap();
        let Some(OpentsdbEndpoint::Telnet(t)) = sink.endpoints().next() else {
            panic!("not telnet")
        };
        assert!(t.tcp().is_tls());
        assert_eq!(t.tcp().addr(), "127.0.0.1:4242");
        // The TLS files are read when the sink is built.
        let (net, c) =
            parse("url = \"tls://tsdb:4242\"\ntls_ca_file = \"/nonexistent/ca.pem\"").unwrap();
        let err = build(&net, &c).unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn lists_every_problem_and_rejects_unknown_keys() {
        let p = problems(
            "url = \"tcp://tsdb:4242\"\nusername = \"u\"\nhttp_batch_size = 0\ntls_server_name = \"x\"\ntimeout_ms = 0",
        );
        assert!(
            p.contains(&"`timeout_ms` must be at least 1".to_owned()),
            "{p:?}"
        );
        assert!(
            p.contains(&"`username` and `password` go together".to_owned()),
            "{p:?}"
        );
        assert!(
            p.contains(&"`http_batch_size` must be at least 1".to_owned()),
            "{p:?}"
        );
        assert!(p.contains(&TLS_KEYS.to_owned()), "{p:?}");
        assert_eq!(p.len(), 6, "{p:?}");
        let p = problems(
            "url = \"tcp://tsdb:4242\"\nusername = \"u\"\npassword = \"p\"\nhttp_batch_size = 5\ntls_server_name = \"x\"",
        );
        assert_eq!(
            p,
            vec![
                "`username` applies to http:// and https:// URLs only",
                "`password` applies to http:// and https:// URLs only",
                "`http_batch_size` applies to http:// and https:// URLs only",
                TLS_KEYS,
            ]
        );
        let err = parse("url = \"tcp://tsdb:4242\"\nbatch_size = 5").unwrap_err();
        assert!(err.contains("batch_size"), "{err}");
        let err = parse("url = \"tcp://tsdb:4242\"\ntimestamp_unit = \"us\"").unwrap_err();
        assert!(err.contains("us"), "{err}");
        let (net, c) =
            parse("url = \"ftp://tsdb/api/put\"\nusername = \"\"\npassword = \"\"").unwrap();
        let err = build(&net, &c).unwrap_err();
        assert!(
            err.contains("ftp://") && err.contains("`username` must not be empty"),
            "{err}"
        );
    }

    #[test]
    fn finds_objects_whatever_their_strings_hold() {
        let json = br#"[{"metric":"a},{","tags":{"k":"\"}"}},{"metric":"b","tags":{}}]"#;
        let mut spans = Vec::new();
        object_spans(json, &mut spans);
        let texts: Vec<&str> = spans
            .iter()
            .map(|&(s, e)| std::str::from_utf8(&json[s..e]).unwrap())
            .collect();
        assert_eq!(
            texts,
            vec![
                r#"{"metric":"a},{","tags":{"k":"\"}"}}"#,
                r#"{"metric":"b","tags":{}}"#
            ]
        );
    }

    fn endpoint(unit: TimestampUnit) -> HttpEndpoint {
        HttpEndpoint {
            client: HttpClient::new(http_client::ClientConfig::default()),
            uri: "http://127.0.0.1:9/api/put?details".parse().unwrap(),
            headers: HeaderMap::new(),
            batch_size: 2,
            common: Common {
                encoder: Encoder::default(),
                unit,
                scratch: Batch::new(),
                buf: Vec::new(),
            },
            spans: Vec::new(),
        }
    }

    fn batch(ms: &[Metric]) -> Batch {
        let mut b = Batch::new();
        for m in ms {
            b.push(m).unwrap();
        }
        b
    }

    #[test]
    fn cuts_fractions_of_a_second_unless_asked_for_milliseconds() {
        const T: i64 = 1_700_000_000_000_000_000;
        let b = batch(&[
            Metric::new("a")
                .tag("h", "x")
                .field("value", 1i64)
                .at(T + 123_456_789),
            Metric::new("b").tag("h", "x").field("value", 2i64).at(T),
            Metric::new("c").field("value", 3i64).at(999_999_999),
        ]);
        let metrics: Vec<MetricRef<'_>> = b.iter().collect();
        let mut e = endpoint(TimestampUnit::S);
        let sent = e.encode(&metrics).finish();
        assert_eq!(
            String::from_utf8(e.common.buf.clone()).unwrap(),
            r#"[{"metric":"a","timestamp":1700000000,"value":1,"tags":{"h":"x"}},{"metric":"b","timestamp":1700000000,"value":2,"tags":{"h":"x"}}]"#
        );
        assert_eq!(e.spans.len(), 2);
        assert_eq!((sent.metrics, sent.points, sent.rejected), (2, 2, 1));
        assert!(
            sent.rejection
                .unwrap()
                .contains("before 1970-01-01T00:00:01Z")
        );
        let mut e = endpoint(TimestampUnit::Ms);
        e.encode(&metrics);
        assert!(
            String::from_utf8(e.common.buf.clone())
                .unwrap()
                .starts_with(r#"[{"metric":"a","timestamp":1700000000123,"#)
        );
    }

    fn resp(status: u16, body: &str) -> Result<HttpResponse, http_client::HttpError> {
        Ok(HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        })
    }

    #[test]
    fn reads_opentsdbs_answers() {
        assert_eq!(answer(resp(204, ""), 3), Ok(None));
        assert_eq!(
            answer(resp(200, r#"{"success":3,"failed":0,"errors":[]}"#), 3),
            Ok(None)
        );
        let body = r#"{"success":1,"failed":2,"errors":[{"datapoint":{"metric":"sys.cpu","timestamp":1,"value":"x","tags":{"h":"a"}},"error":"Unable to parse value to a number"},{"datapoint":{},"error":"Unknown metric"}]}"#;
        assert_eq!(
            answer(resp(400, body), 3),
            Ok(Some((
                2,
                "400 Bad Request: 2 of 3 points refused, first: Unable to parse value to a number (metric sys.cpu)".to_owned()
            )))
        );
        assert_eq!(
            answer(resp(400, "json array decode error\n"), 3),
            Err(SinkError::Rejected {
                message: "400 Bad Request: json array decode error".into()
            })
        );
        assert!(matches!(
            answer(resp(503, "busy"), 3),
            Err(SinkError::Retryable { .. })
        ));
        assert!(matches!(
            answer(resp(404, ""), 3),
            Err(SinkError::Rejected { .. })
        ));
    }

    #[test]
    fn counts_reply_lines_across_pieces() {
        let mut r = Replies::default();
        r.feed(b"put: illegal argument: ");
        assert_eq!(r.lines, 0);
        r.feed(b"invalid value\n\n  \nput: unknown");
        r.feed(b" metric\n");
        assert_eq!(
            r.take(),
            (2, "put: illegal argument: invalid value".to_owned())
        );
        assert_eq!(r.take(), (0, String::new()));
        let mut r = Replies::default();
        r.feed(format!("{}\n", "x\u{7}".repeat(300)).as_bytes());
        let (n, first) = r.take();
        assert_eq!(n, 1);
        assert!(first.len() <= QUOTE_BYTES && !first.contains('\u{7}'));
    }
}
