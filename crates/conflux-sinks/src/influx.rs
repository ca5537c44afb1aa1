//! The `influx` sink: InfluxDB line protocol over HTTP, to InfluxDB 1.x
//! `/write`, InfluxDB 2.x `/api/v2/write`, or anything that speaks either
//! (VictoriaMetrics, InfluxDB 1.8's v2 endpoint, Telegraf's listeners).
//!
//! The URL is the whole endpoint, as vmagent's `-remoteWrite.url`:
//! `http://host:8086/write?db=telegraf&rp=autogen&precision=ms` (v1) or
//! `http://host:8086/api/v2/write?org=o&bucket=b&precision=s` (v2). Its path
//! decides the API (a prefix is allowed, as in VictoriaMetrics cluster's
//! `/insert/0/influx/write`); its query goes out unchanged, and its
//! `precision` decides the unit timestamps are written in (nanoseconds when
//! absent).
//!
//! What an answer means:
//!
//! | answer | result |
//! | --- | --- |
//! | 2xx | delivered |
//! | 4xx whose body says `partial write` | the target kept the rest: its `dropped=N` (or, when it says `dropped=0`, one per `unable to parse`) is counted as rejected, nothing is retried |
//! | 413 | the request is split in half and each half resent, down to one line; a single line still refused is rejected and counted |
//! | 401, 403, 404 and other 4xx | rejected (the rest of the batch is not tried: the next request would get the same answer) |
//! | 400 and 422 without `partial write` | that request is rejected, the other requests of the batch still go |
//! | 5xx, 408, 429, timeout, connection refused or reset | the whole batch is retried (with the server's `Retry-After`) |
//!
//! A batch larger than `max_body_bytes` goes out as several requests. When a
//! later one fails with a retryable error, the retry resends the whole batch,
//! so InfluxDB receives the earlier requests' points again. That is harmless:
//! a point with the same measurement, tag set and timestamp overwrites the
//! stored one with the same values (InfluxDB's duplicate point rule), so a
//! resend stores nothing twice. The same holds after a partial write.
//!
//! Server quirks this sink works around (checked against InfluxDB 1.6.7 and
//! VictoriaMetrics 1.79.5):
//! - InfluxDB 1.x OSS refuses unsigned integers (`1u`: `invalid number`, the
//!   whole line dropped). By default they are written as integers, clipped to
//!   `i64::MAX`, as Telegraf does without `influx_uint_support`; `uint_support
//!   = true` writes `u` for targets that take it (2.x, VictoriaMetrics).
//! - InfluxDB 1.6 reads `precision=us` (and any unknown precision) as
//!   nanoseconds, so points land in 1970; later 1.x answer 400 (see
//!   `ANCHORS.md` 2.1). A v1 URL must use
//!   `u`; the config check says so.
//! - InfluxDB 1.6 does not take `Authorization: Token` (401 `unable to parse
//!   authentication credentials`); 1.8 does (`token = "user:password"`), and
//!   so does 2.x on its v1 `/write`, so a token is allowed with either API.
//! - InfluxDB 1.x reports lines it could not parse as `partial write: unable
//!   to parse '…': … dropped=0`: the count is not filled in, so the sink
//!   counts the `unable to parse` clauses.
//! - VictoriaMetrics splits a line at a raw newline inside a string value and
//!   drops both halves (answering 204); InfluxDB keeps such strings.

use std::collections::BTreeMap;

use bytes::Bytes;
use conflux_core::metric::{Batch, MetricRef, Value};
use conflux_core::time::Precision;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderName, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use serde::Deserialize;

use crate::endpoint::{Endpoint, Endpoints, NetConfig};
use crate::http_client::{self, HttpClient, HttpResponse};
use crate::runner::{Sent, SinkError, Skipped};

/// How `username` and `password` reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// `Authorization: Basic …`.
    #[default]
    Basic,
    /// `u` and `p` query parameters (InfluxDB 1.x `/write` only).
    Query,
}

/// `[sinks.NAME] type = "influx"`: its own keys (the URL, timeout and TLS
/// keys are [`NetConfig`]'s).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// User name (with `password`): HTTP Basic, or `u` and `p` with
    /// `auth = "query"`.
    pub username: Option<String>,
    /// Password (with `username`).
    pub password: Option<String>,
    /// How the user name and password are sent: `basic` or `query`.
    #[serde(default)]
    pub auth: Auth,
    /// `Authorization: Token <token>`: an InfluxDB 2.x API token, or
    /// `user:password` for InfluxDB 1.8 and later.
    pub token: Option<String>,
    /// Send `Content-Encoding: gzip` bodies.
    #[serde(default)]
    pub gzip: bool,
    /// The largest request body before compression; a larger batch goes out
    /// as several requests. InfluxDB's own limit (`max-body-size`) is 25 MB.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Write unsigned integers as `u` (InfluxDB 2.x, VictoriaMetrics); when
    /// off, as `i`, clipped to `i64::MAX` (InfluxDB 1.x refuses `u`).
    #[serde(default)]
    pub uint_support: bool,
    /// Extra headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_max_body_bytes() -> usize {
    10 * 1024 * 1024
}

impl Default for Config {
    fn default() -> Self {
        Config {
            username: None,
            password: None,
            auth: Auth::default(),
            token: None,
            gzip: false,
            max_body_bytes: default_max_body_bytes(),
            uint_support: false,
            headers: BTreeMap::new(),
        }
    }
}

/// Headers the sink sets itself.
const OWN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "content-encoding",
];

impl Config {
    /// Every problem with the settings (the URLs are [`check`]'s).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        p.extend(http_client::credentials_problem(
            &self.username,
            &self.password,
        ));
        if let Some(t) = &self.token {
            if t.is_empty() {
                p.push("`token` must not be empty".to_owned());
            }
            if self.username.is_some() || self.password.is_some() {
                p.push("give `token` or `username` and `password`, not both".to_owned());
            }
        }
        if self.auth == Auth::Query && self.username.is_none() {
            p.push("`auth = \"query\"` needs `username` and `password`".to_owned());
        }
        if self.max_body_bytes == 0 {
            p.push("`max_body_bytes` must be at least 1".to_owned());
        }
        let credentials = self.username.is_some() || self.token.is_some();
        for (name, value) in &self.headers {
            match HeaderName::from_bytes(name.as_bytes()) {
                Err(_) => p.push(format!("`headers`: {name:?} is not a header name")),
                Ok(h) if OWN_HEADERS.contains(&h.as_str()) => {
                    p.push(format!("`headers`: {name:?} is set by the sink"));
                }
                Ok(h) if h == AUTHORIZATION && credentials => p.push(format!(
                    "`headers`: {name:?} is also set by `username` or `token`; give one"
                )),
                Ok(_) => {}
            }
            if HeaderValue::from_str(value).is_err() {
                p.push(format!(
                    "`headers`: the value of {name:?} is not a header value"
                ));
            }
        }
        p
    }

    /// The request headers (the URL's credentials are added by [`target`]).
    fn request_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("conflux/", env!("CARGO_PKG_VERSION"))),
        );
        if self.gzip {
            h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        match (&self.username, &self.password, &self.token) {
            (Some(u), Some(p), _) if self.auth == Auth::Basic => {
                h.insert(AUTHORIZATION, http_client::basic_auth(u, p));
            }
            (_, _, Some(t)) => {
                if let Ok(mut v) = HeaderValue::from_str(&format!("Token {t}")) {
                    v.set_sensitive(true);
                    h.insert(AUTHORIZATION, v);
                }
            }
            _ => {}
        }
        for (name, value) in &self.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                h.insert(n, v);
            }
        }
        h
    }
}

/// Which write API a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// InfluxDB 1.x `/write?db=…`.
    V1,
    /// InfluxDB 2.x `/api/v2/write?bucket=…`.
    V2,
}

/// A checked URL: where to post and how to write timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// The URL to post to (with `u` and `p` when `auth = "query"`).
    uri: Uri,
    /// Which API it names.
    api: Api,
    /// The timestamp unit its `precision` asks for.
    precision: Precision,
}

/// Check one URL against the settings and make its [`Target`]; every
/// problem with it, each message naming the URL.
fn target(url: &str, cfg: &Config) -> Result<Target, Vec<String>> {
    let uri = http_client::parse_url(url).map_err(|e| vec![e])?;
    let mut p = Vec::new();
    let path = uri.path();
    let api = if path.ends_with("/api/v2/write") {
        Api::V2
    } else if path.ends_with("/write") {
        Api::V1
    } else {
        return Err(vec![format!(
            "`url` = {url:?} must name the write endpoint: \
             http://HOST:8086/write?db=DB (InfluxDB 1.x) or \
             http://HOST:8086/api/v2/write?org=ORG&bucket=BUCKET (InfluxDB 2.x)"
        )]);
    };
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        p.push(format!(
            "`url` = {url:?}: credentials in the URL are not sent; use `username` and `password`"
        ));
    }
    let query = uri.query().unwrap_or("");
    match api {
        Api::V1 => {
            if query_value(query, "db").is_none_or(|d| d.is_empty()) {
                p.push(format!(
                    "`url` = {url:?} needs `db=DATABASE` (InfluxDB 1.x `/write`)"
                ));
            }
        }
        Api::V2 => {
            if query_value(query, "bucket").is_none_or(|b| b.is_empty()) {
                p.push(format!(
                    "`url` = {url:?} needs `bucket=BUCKET` (InfluxDB 2.x `/api/v2/write`)"
                ));
            }
        }
    }
    let precision = match (api, query_value(query, "precision").as_deref()) {
        (_, None | Some("")) => Precision::Ns,
        (Api::V1, Some("us")) => {
            p.push(format!(
                "`url` = {url:?}: InfluxDB 1.x `/write` does not know `precision=us` \
                 (1.6 reads it as ns, 1.8 answers 400); use `precision=u`"
            ));
            Precision::Us
        }
        (Api::V1, Some(s @ ("n" | "ns" | "u" | "ms" | "s" | "m" | "h")))
        | (Api::V2, Some(s @ ("ns" | "us" | "ms" | "s"))) => {
            Precision::parse(s).unwrap_or(Precision::Ns)
        }
        (Api::V1, Some(s)) => {
            p.push(format!(
                "`url` = {url:?}: `precision={s}` is not one of n, ns, u, ms, s, m, h"
            ));
            Precision::Ns
        }
        (Api::V2, Some(s)) => {
            p.push(format!(
                "`url` = {url:?}: `precision={s}` is not one of ns, us, ms, s"
            ));
            Precision::Ns
        }
    };
    let mut uri = uri.clone();
    if cfg.auth == Auth::Query {
        if api == Api::V2 {
            p.push(format!(
                "`url` = {url:?}: `auth = \"query\"` is for InfluxDB 1.x `/write`; \
                 `/api/v2/write` takes `token`"
            ));
        }
        if query_value(query, "u").is_some() || query_value(query, "p").is_some() {
            p.push(format!(
                "`url` = {url:?} already has `u` or `p`; give the credentials once"
            ));
        }
        if let (Some(u), Some(pw)) = (&cfg.username, &cfg.password) {
            match with_credentials(&uri, u, pw) {
                Ok(with) => uri = with,
                Err(e) => p.push(format!("`url` = {url:?}: {e}")),
            }
        }
    }
    if p.is_empty() {
        Ok(Target {
            uri,
            api,
            precision,
        })
    } else {
        Err(p)
    }
}

/// The first value of `key` in a query string, percent-decoded (as Go's
/// `url.Query().Get`, which InfluxDB uses).
fn query_value(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == key).then(|| percent_decode(v))
        })
        .next()
}

/// `%XX` and `+` (space) decoded; a malformed escape is kept as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Everything but RFC 3986's unreserved characters as `%XX`.
fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// `uri` with `u=user&p=password` appended to its query.
fn with_credentials(uri: &Uri, user: &str, password: &str) -> Result<Uri, String> {
    let mut pq = uri.path().to_owned();
    pq.push('?');
    if let Some(q) = uri.query().filter(|q| !q.is_empty()) {
        pq.push_str(q);
        pq.push('&');
    }
    pq.push_str("u=");
    percent_encode(user, &mut pq);
    pq.push_str("&p=");
    percent_encode(password, &mut pq);
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().map_err(|e| format!("{e}"))?);
    Uri::from_parts(parts).map_err(|e| e.to_string())
}

/// The `influx` sink: one [`InfluxEndpoint`] per URL.
pub type InfluxSink = Endpoints<InfluxEndpoint>;

/// Every problem with the shared and own settings, URLs included.
pub fn check(net: &NetConfig, cfg: &Config) -> Vec<String> {
    let mut problems = net.problems();
    problems.extend(cfg.problems());
    for url in net.all_urls() {
        if let Err(e) = target(url, cfg) {
            problems.extend(e);
        }
    }
    problems
}

/// Build the sink: check the settings and URLs, open the client (no
/// connection yet).
///
/// # Errors
/// Every problem with the settings, joined.
pub fn build(net: &NetConfig, cfg: &Config) -> Result<InfluxSink, String> {
    let problems = check(net, cfg);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let client = net.http_client()?;
    let headers = cfg.request_headers();
    let mut endpoints = Vec::new();
    for url in net.all_urls() {
        let t = target(url, cfg).map_err(|e| e.join("; "))?;
        let endpoint = InfluxEndpoint {
            client: client.clone(),
            uri: t.uri,
            api: t.api,
            precision: t.precision,
            headers: headers.clone(),
            gzip: cfg.gzip,
            max_body_bytes: cfg.max_body_bytes,
            uint_support: cfg.uint_support,
            body: Vec::new(),
            lines: Vec::new(),
            work: Vec::new(),
            gz: Vec::new(),
            // A metric the listener accepted is rebuilt whatever its size.
            scratch: Batch::unlimited(),
        };
        endpoints.push((url.to_owned(), endpoint));
    }
    Ok(Endpoints::new(net.mode, endpoints))
}

/// One encoded line: where it ends in the body and how many fields it has.
#[derive(Debug, Clone, Copy)]
struct Line {
    end: usize,
    points: usize,
}

/// What one request's answer means for its lines.
enum Outcome {
    /// Taken (2xx).
    Ok,
    /// Taken except `dropped` lines (`partial write`).
    Partial { dropped: usize, message: String },
    /// 413: too large.
    TooLarge(String),
    /// This request refused (400 or 422 without `partial write`).
    Refused(String),
    /// Refused, and the rest of the batch would be too (401, 403, 404, …).
    RefusedAll(String),
}

/// Sends batches to one URL.
pub struct InfluxEndpoint {
    client: HttpClient,
    uri: Uri,
    api: Api,
    precision: Precision,
    headers: HeaderMap,
    gzip: bool,
    max_body_bytes: usize,
    uint_support: bool,
    /// The whole batch, encoded once per attempt; requests are slices of it.
    body: Vec<u8>,
    /// One entry per line in `body`.
    lines: Vec<Line>,
    /// Line ranges still to send.
    work: Vec<(usize, usize)>,
    gz: Vec<u8>,
    /// A metric with its uints turned into ints (when `uint_support` is off).
    scratch: Batch,
}

impl std::fmt::Debug for InfluxEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URI: with `auth = "query"` it carries the password.
        f.debug_struct("InfluxEndpoint")
            .field("api", &self.api)
            .field("precision", &self.precision)
            .field("gzip", &self.gzip)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl InfluxEndpoint {
    /// Which API the URL names.
    pub fn api(&self) -> Api {
        self.api
    }

    /// The timestamp unit written.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Encode every metric into `body` and `lines`; what was left out goes to `skipped`.
    fn encode(&mut self, metrics: &[MetricRef<'_>], skipped: &mut Skipped) {
        self.body.clear();
        self.lines.clear();
        for m in metrics {
            let has_uint =
                !self.uint_support && m.fields().any(|(_, v)| matches!(v, Value::UInt(_)));
            let written = if has_uint {
                encode_without_uint(m, self.precision, &mut self.scratch, &mut self.body)
            } else {
                conflux_influx::codec::encode_with(m, self.precision, &mut self.body)
            };
            let total = m.fields().len();
            if written < total {
                let non_finite = m
                    .fields()
                    .filter(|(_, v)| matches!(v, Value::Float(x) if !x.is_finite()))
                    .count()
                    .min(total - written);
                skipped.non_finite += non_finite;
                skipped.invalid_name += total - written - non_finite;
            }
            if written > 0 {
                self.lines.push(Line {
                    end: self.body.len(),
                    points: written,
                });
            }
        }
    }

    fn start_of(&self, line: usize) -> usize {
        if line == 0 {
            0
        } else {
            self.lines[line - 1].end
        }
    }

    /// Line ranges of at most `max_body_bytes` each (a longer line alone), in
    /// order, onto the work stack (last range on the bottom).
    fn plan(&mut self) {
        self.work.clear();
        let mut first = 0;
        let mut start = 0;
        for (i, l) in self.lines.iter().enumerate() {
            if i > first && l.end - start > self.max_body_bytes {
                self.work.push((first, i));
                first = i;
                start = self.lines[i - 1].end;
            }
        }
        if first < self.lines.len() {
            self.work.push((first, self.lines.len()));
        }
        self.work.reverse();
    }

    /// Post lines `a..b`; the body's size on the wire and what the answer means.
    async fn post(&mut self, a: usize, b: usize) -> Result<(usize, Outcome), SinkError> {
        let range = self.start_of(a)..self.lines[b - 1].end;
        let body = if self.gzip {
            http_client::gzip_into(&self.body[range], &mut self.gz);
            Bytes::copy_from_slice(&self.gz)
        } else {
            Bytes::copy_from_slice(&self.body[range])
        };
        let size = body.len();
        let result = self
            .client
            .send(Method::POST, &self.uri, &self.headers, body)
            .await;
        let outcome = match result {
            // 408 and 429 mean "later": classify makes them retryable.
            Ok(resp)
                if resp.status.is_client_error()
                    && resp.status != StatusCode::REQUEST_TIMEOUT
                    && resp.status != StatusCode::TOO_MANY_REQUESTS =>
            {
                client_error(&resp, b - a)
            }
            other => {
                http_client::classify(other)?;
                Outcome::Ok
            }
        };
        Ok((size, outcome))
    }
}

/// What a 4xx answer other than 408 and 429 means.
fn client_error(resp: &HttpResponse, lines: usize) -> Outcome {
    let status = resp.status;
    let message = http_client::describe(resp);
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return Outcome::TooLarge(message);
    }
    let text = String::from_utf8_lossy(&resp.body);
    if text.contains("partial write") {
        return Outcome::Partial {
            dropped: dropped(&text, lines),
            message,
        };
    }
    if status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY {
        Outcome::Refused(message)
    } else {
        Outcome::RefusedAll(message)
    }
}

/// How many of `lines` a `partial write` message says were dropped: its
/// `dropped=N`; when N is 0 (InfluxDB 1.x does not count lines it could not
/// parse), one per `unable to parse`; when absent, all of them.
fn dropped(text: &str, lines: usize) -> usize {
    let n = text.rfind("dropped=").map(|i| {
        let digits = &text[i + "dropped=".len()..];
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        digits[..end].parse::<usize>().unwrap_or(0)
    });
    let n = match n {
        Some(0) => text.matches("unable to parse").count(),
        Some(n) => n,
        None => lines,
    };
    n.min(lines)
}

/// Encode `m` with every unsigned integer written as a signed one, clipped to
/// `i64::MAX`; `scratch` holds the rewritten metric (reused, so no
/// allocation once it has grown).
fn encode_without_uint(
    m: &MetricRef<'_>,
    precision: Precision,
    scratch: &mut Batch,
    out: &mut Vec<u8>,
) -> usize {
    scratch.clear();
    let mut b = scratch.metric(m.name());
    for (k, v) in m.tags() {
        b.tag(k, v);
    }
    for (k, v) in m.fields() {
        let v = match v {
            Value::UInt(u) => Value::Int(i64::try_from(u).unwrap_or(i64::MAX)),
            other => other,
        };
        b.field(k, v);
    }
    if b.finish(m.timestamp()).is_err() {
        // Cannot happen for a metric that came out of a batch; write it as it is.
        return conflux_influx::codec::encode_with(m, precision, out);
    }
    conflux_influx::codec::encode_with(&scratch.get(0), precision, out)
}

impl Endpoint for InfluxEndpoint {
    async fn send(&mut self, metrics: &[MetricRef<'_>]) -> Result<Sent, SinkError> {
        // Encoded again on every attempt: cheap next to a round trip, and the
        // buffers stay owned by the endpoint.
        let mut sent = Sent::default();
        self.encode(metrics, &mut sent.skipped);
        if self.lines.is_empty() {
            return Ok(sent);
        }
        self.plan();
        // Set when every request so far was refused outright (401, 400 …).
        let mut refused: Option<String> = None;
        let mut other = false;
        while let Some((a, b)) = self.work.pop() {
            let (size, outcome) = self.post(a, b).await?;
            let points: usize = self.lines[a..b].iter().map(|l| l.points).sum();
            let n = b - a;
            match outcome {
                Outcome::Ok => {
                    other = true;
                    sent.metrics += n;
                    sent.points += points;
                    sent.bytes += size;
                }
                Outcome::Partial { dropped, message } => {
                    other = true;
                    sent.metrics += n - dropped;
                    // Which lines were dropped is not said: their points are
                    // estimated as the request's average.
                    sent.points += points - points * dropped / n;
                    sent.bytes += size;
                    sent.rejected += dropped;
                    sent.rejection.get_or_insert(message);
                }
                Outcome::TooLarge(message) if n == 1 => {
                    other = true;
                    sent.rejected += 1;
                    sent.rejection.get_or_insert(format!(
                        "{message} (one line of {} bytes)",
                        self.lines[a].end - self.start_of(a)
                    ));
                }
                Outcome::TooLarge(_) => {
                    // Both halves, first half on top.
                    let mid = a + n / 2;
                    self.work.push((mid, b));
                    self.work.push((a, mid));
                }
                Outcome::Refused(message) => {
                    sent.rejected += n;
                    sent.rejection.get_or_insert_with(|| message.clone());
                    refused.get_or_insert(message);
                }
                Outcome::RefusedAll(message) => {
                    let rest: usize = self.work.drain(..).map(|(a, b)| b - a).sum();
                    sent.rejected += n + rest;
                    sent.rejection.get_or_insert_with(|| message.clone());
                    refused.get_or_insert(message);
                }
            }
        }
        match refused {
            // Nothing taken, nothing partly: the whole batch was refused.
            Some(message) if !other => Err(SinkError::Rejected { message }),
            _ => Ok(sent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_past_the_default_listener_limits_is_still_rewritten() {
        // A listener configured above the defaults accepted 300 tags; the
        // rewrite of its unsigned field must not fall back to `u`.
        let mut src = Batch::unlimited();
        let mut b = src.metric("m");
        for i in 0..300 {
            b.tag(&format!("k{i:03}"), "v");
        }
        b.field("n", Value::UInt(7));
        b.finish(1).unwrap();
        let mut scratch = Batch::unlimited();
        let mut out = Vec::new();
        encode_without_uint(&src.get(0), Precision::Ns, &mut scratch, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(line.ends_with(" n=7i 1\n"), "{line}");
        assert_eq!(line.matches('=').count(), 301);
    }

    fn cfg(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    fn problems(url: &str, own: &str) -> Vec<String> {
        check(&NetConfig::single(url), &cfg(own))
    }

    fn ok(url: &str, api: Api, precision: Precision) {
        let t = target(url, &Config::default()).unwrap();
        assert_eq!((t.api, t.precision), (api, precision), "{url}");
        assert_eq!(t.uri.to_string(), url);
    }

    fn err(url: &str, own: &str, want: &str) {
        let p = problems(url, own);
        assert!(p.iter().any(|p| p.contains(want)), "{url}: {p:?}");
    }

    #[test]
    fn the_path_decides_the_api_and_the_query_the_precision() {
        ok("http://h:8086/write?db=telegraf", Api::V1, Precision::Ns);
        ok(
            "http://h:8086/write?db=telegraf&rp=autogen&precision=ms",
            Api::V1,
            Precision::Ms,
        );
        ok(
            "http://h:8086/write?db=a&precision=n",
            Api::V1,
            Precision::Ns,
        );
        ok(
            "http://h:8086/write?db=a&precision=u",
            Api::V1,
            Precision::Us,
        );
        ok(
            "http://h:8086/write?db=a&precision=m",
            Api::V1,
            Precision::M,
        );
        ok("https://h/write?precision=h&db=a", Api::V1, Precision::H);
        ok(
            "http://h:8086/api/v2/write?org=o&bucket=b&precision=s",
            Api::V2,
            Precision::S,
        );
        ok(
            "http://h:8086/api/v2/write?bucket=b&precision=us",
            Api::V2,
            Precision::Us,
        );
        ok(
            "http://h:8086/api/v2/write?bucket=b",
            Api::V2,
            Precision::Ns,
        );
        // VictoriaMetrics cluster.
        ok(
            "http://vminsert:8480/insert/0/influx/write?db=x",
            Api::V1,
            Precision::Ns,
        );
        ok(
            "http://vminsert:8480/insert/0/influx/api/v2/write?bucket=b",
            Api::V2,
            Precision::Ns,
        );
    }

    #[test]
    fn rejects_urls_that_name_no_write_endpoint() {
        for url in [
            "http://h:8086",
            "http://h:8086/",
            "http://h:8086/query?db=a",
            "http://h/writes?db=a",
        ] {
            let p = problems(url, "");
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(
                p[0].contains("/write?db=DB")
                    && p[0].contains("/api/v2/write?org=ORG&bucket=BUCKET"),
                "{p:?}"
            );
        }
        err("ftp://h/write?db=a", "", "http://");
    }

    #[test]
    fn v1_needs_db_and_v2_needs_bucket() {
        err("http://h/write", "", "needs `db=DATABASE`");
        err("http://h/write?db=", "", "needs `db=DATABASE`");
        err("http://h/write?bucket=b", "", "needs `db=DATABASE`");
        err("http://h/api/v2/write?org=o", "", "needs `bucket=BUCKET`");
        err("http://h/api/v2/write?db=x", "", "needs `bucket=BUCKET`");
        assert!(
            problems("http://h/write?d%62=x", "").is_empty(),
            "percent-decoded keys"
        );
    }

    #[test]
    fn precision_must_be_one_the_api_knows() {
        err("http://h/write?db=a&precision=us", "", "use `precision=u`");
        err(
            "http://h/write?db=a&precision=x",
            "",
            "not one of n, ns, u, ms, s, m, h",
        );
        err(
            "http://h/api/v2/write?bucket=b&precision=u",
            "",
            "not one of ns, us, ms, s",
        );
        err(
            "http://h/api/v2/write?bucket=b&precision=h",
            "",
            "not one of ns, us, ms, s",
        );
    }

    #[test]
    fn credential_problems_are_listed_together() {
        let p = problems(
            "http://u:p@h/api/v2/write?bucket=b",
            "username = \"u\"\ntoken = \"\"\nauth = \"query\"\nmax_body_bytes = 0",
        );
        let want = [
            "`username` and `password` go together",
            "`token` must not be empty",
            "give `token` or `username` and `password`, not both",
            "`max_body_bytes` must be at least 1",
            "credentials in the URL are not sent",
            "`auth = \"query\"` is for InfluxDB 1.x `/write`",
        ];
        for w in want {
            assert!(p.iter().any(|p| p.contains(w)), "{w}: {p:?}");
        }
        assert_eq!(p.len(), want.len(), "{p:?}");
        err(
            "http://h/write?db=a",
            "auth = \"query\"",
            "needs `username` and `password`",
        );
        err(
            "http://h/write?db=a&u=x",
            "auth = \"query\"\nusername = \"a\"\npassword = \"b\"",
            "already has `u` or `p`",
        );
        assert!(toml::from_str::<Config>("auth = \"digest\"").is_err());
        assert!(toml::from_str::<Config>("gzipp = true").is_err());
    }

    #[test]
    fn a_token_is_allowed_with_either_api() {
        // InfluxDB 1.8 and 2.x's v1 `/write` take `Token`; 1.6 answers 401.
        assert!(problems("http://h/write?db=a", "token = \"user:pw\"").is_empty());
        assert!(problems("http://h/api/v2/write?bucket=b", "token = \"t\"").is_empty());
        assert!(
            problems(
                "http://h/api/v2/write?bucket=b",
                "username = \"u\"\npassword = \"p\""
            )
            .is_empty()
        );
    }

    #[test]
    fn header_problems() {
        let p = problems(
            "http://h/write?db=a",
            "token = \"t\"\n[headers]\n\"X-Ok\" = \"1\"\n\"bad name\" = \"1\"\n\"X-Bad\" = \"a\\nb\"\n\"Content-Encoding\" = \"br\"\nAuthorization = \"x\"",
        );
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(
            problems(
                "http://h/write?db=a",
                "[headers]\nAuthorization = \"Bearer x\""
            )
            .is_empty()
        );
    }

    #[test]
    fn query_auth_appends_encoded_credentials() {
        let c = cfg("username = \"a b\"\npassword = \"p&=%\"\nauth = \"query\"");
        let t = target("http://h:1/write?db=x", &c).unwrap();
        assert_eq!(
            t.uri.to_string(),
            "http://h:1/write?db=x&u=a%20b&p=p%26%3D%25"
        );
        assert_eq!(
            query_value(t.uri.query().unwrap(), "p").as_deref(),
            Some("p&=%")
        );
        assert!(c.request_headers().get(AUTHORIZATION).is_none());
        let t = target("http://h:1/write?db=x", &cfg("")).unwrap();
        assert_eq!(t.uri.query(), Some("db=x"));
    }

    #[test]
    fn headers_carry_the_credentials() {
        let h = cfg("username = \"Aladdin\"\npassword = \"open sesame\"\ngzip = true")
            .request_headers();
        assert_eq!(h[AUTHORIZATION], "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(h[CONTENT_ENCODING], "gzip");
        let h = cfg("token = \"abc\"\n[headers]\nX-Scope-OrgID = \"7\"").request_headers();
        assert_eq!(h[AUTHORIZATION], "Token abc");
        assert!(h[AUTHORIZATION].is_sensitive());
        assert_eq!(h["x-scope-orgid"], "7");
        assert!(h.get(CONTENT_ENCODING).is_none());
    }

    #[test]
    fn dropped_counts() {
        let conflict = r#"{"error":"partial write: field type conflict: input field \"v\" on measurement \"c\" is type integer, already exists as type float dropped=2"}"#;
        assert_eq!(dropped(conflict, 5), 2);
        let parse = r#"{"error":"partial write: unable to parse 'bad v=oops': invalid boolean\nunable to parse 'bad2 v=1u': invalid number dropped=0"}"#;
        assert_eq!(dropped(parse, 5), 2);
        assert_eq!(
            dropped(
                "partial write: points beyond retention policy dropped=3 for database: t for retention policy: autogen",
                5
            ),
            3
        );
        assert_eq!(dropped("partial write: something", 5), 5, "no count: all");
        assert_eq!(
            dropped("partial write: x dropped=9", 5),
            5,
            "never more than sent"
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c%zz%4"), "a b c%zz%4");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%41"), "A");
    }

    #[test]
    fn defaults() {
        let c = cfg("");
        assert_eq!(c, Config::default());
        assert_eq!(c.max_body_bytes, 10 * 1024 * 1024);
        assert!(!c.gzip && !c.uint_support && c.auth == Auth::Basic);
        let sink = build(&NetConfig::single("http://h/write?db=a&precision=s"), &c).unwrap();
        let e = sink.endpoints().next().unwrap();
        assert_eq!((e.api(), e.precision()), (Api::V1, Precision::S));
        assert!(
            build(&NetConfig::single("http://h/"), &c)
                .unwrap_err()
                .contains("/write?db=DB")
        );
    }
}
