//! The HTTP client every HTTP sink shares: one [`HttpClient`] per sink,
//! hyper-util's pooled client over HTTP/1.1 with keep-alive (connections are
//! reused between batches), a timeout per request covering connect, send and
//! the whole response, and [`classify`], which turns an outcome into what the
//! runner does with it:
//!
//! | outcome | result |
//! | --- | --- |
//! | 2xx | `Ok` |
//! | 5xx, 408, 429, timeout, connection refused or reset | [`SinkError::Retryable`], with the server's `Retry-After` |
//! | other 4xx | [`SinkError::Rejected`] with the server's message |
//!
//! 408 and 429 are the two 4xx a server sends to mean "later": retrying them
//! is what Telegraf's influxdb_v2 output and vmagent do.
//!
//! `https://` URLs go over rustls: the system's root certificates, or a CA
//! file; optionally a client certificate (mutual TLS) and a fixed server name.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderName, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{DefaultServerNameResolver, FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::runner::SinkError;

/// How many bytes of a server's answer an error message quotes.
pub const QUOTE_BYTES: usize = 256;
/// The largest response body read; an error body is only quoted, a success
/// body is rarely used, and a hostile server must not fill memory.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Client settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Time for one request: connect, send, and read the whole answer.
    pub timeout: Duration,
    /// Pooled connections idle longer than this are closed.
    pub idle_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// TLS settings for `https://` URLs (and the `tls://` URLs of the TCP sinks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain (mutual TLS).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry, instead of the URL's host.
    pub server_name: Option<String>,
}

impl TlsConfig {
    /// The rustls client configuration: what every TLS client of the sinks
    /// uses (the HTTP client and the `tls://` sender of `tcp_client`).
    ///
    /// # Errors
    /// A file that cannot be read or holds no usable certificate or key.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                for cert in read_certs(path)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("`tls_ca_file` {}: {e}", path.display()))?;
                }
            }
            None => {
                // Unreadable system certificates are skipped: only https URLs
                // need them, and a CA file is the fix when none load.
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("`tls_key_file` {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate: {e}"))
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }

    /// `server_name` checked, if set.
    ///
    /// # Errors
    /// A name that is neither a DNS name nor an IP address.
    pub fn server_name(&self) -> Result<Option<ServerName<'static>>, String> {
        self.server_name
            .as_ref()
            .map(|name| {
                ServerName::try_from(name.clone())
                    .map_err(|e| format!("`tls_server_name` {name:?}: {e}"))
            })
            .transpose()
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// An answer: status, headers and the body (at most [`MAX_RESPONSE_BYTES`]).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Nothing complete came back within the timeout.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The connection could not be opened (refused, unreachable, DNS).
    #[error("connect: {0}")]
    Connect(String),
    /// The connection failed while sending or reading (reset, closed early).
    #[error("request failed: {0}")]
    Io(String),
    /// The response body was larger than [`MAX_RESPONSE_BYTES`].
    #[error("response body larger than {MAX_RESPONSE_BYTES} bytes")]
    BodyTooLarge,
}

/// A pooled HTTP/1.1 client, plain or over TLS by the URL's scheme; cheap
/// to clone (clones share the pool).
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client with its own connection pool and default TLS settings.
    /// Needs a tokio runtime when used.
    pub fn new(cfg: ClientConfig) -> HttpClient {
        // Default TLS settings read no file: only a broken provider can fail.
        Self::with_tls(cfg, &TlsConfig::default()).unwrap_or_else(|e| panic!("TLS defaults: {e}"))
    }

    /// A client with its own connection pool and the given TLS settings.
    ///
    /// # Errors
    /// A TLS file that cannot be read or parsed, a bad server name.
    pub fn with_tls(cfg: ClientConfig, tls: &TlsConfig) -> Result<HttpClient, String> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.timeout));
        // The TLS connector hands `http://` to the plain connector.
        http.enforce_http(false);
        let resolver: Arc<dyn hyper_rustls::ResolveServerName + Send + Sync> =
            match tls.server_name()? {
                Some(name) => Arc::new(FixedServerNameResolver::new(name)),
                None => Arc::new(DefaultServerNameResolver::default()),
            };
        let connector = HttpsConnector::new(http, tls.client_config()?, false, resolver);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(cfg.idle_timeout)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(HttpClient {
            client,
            timeout: cfg.timeout,
        })
    }

    /// Send one request and read the whole answer, within the timeout.
    ///
    /// # Errors
    /// [`HttpError`] when no complete answer came back.
    pub async fn send(
        &self,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<HttpResponse, HttpError> {
        let mut req = http::Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = headers.clone();
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                if e.is_connect() {
                    HttpError::Connect(chain(&e))
                } else {
                    HttpError::Io(chain(&e))
                }
            })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        HttpError::BodyTooLarge
                    } else {
                        HttpError::Io(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(HttpResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(self.timeout)),
        }
    }
}

/// An error and its causes on one line (hyper's own message is only "client error (Connect)").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// What the runner does with an outcome (see the module table).
///
/// # Errors
/// [`SinkError::Retryable`] or [`SinkError::Rejected`], with the status and
/// at most [`QUOTE_BYTES`] of the server's answer.
pub fn classify(result: Result<HttpResponse, HttpError>) -> Result<HttpResponse, SinkError> {
    let resp = match result {
        Ok(r) => r,
        Err(e) => return Err(SinkError::retry(e.to_string())),
    };
    let status = resp.status;
    if status.is_success() {
        return Ok(resp);
    }
    let message = describe(&resp);
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Err(SinkError::Retryable {
            message,
            retry_after: retry_after(&resp.headers),
        })
    } else {
        // 4xx, and 1xx/3xx, which no write endpoint answers and a retry will not change.
        Err(SinkError::Rejected { message })
    }
}

/// `400 Bad Request: <at most QUOTE_BYTES of the body>`.
pub fn describe(resp: &HttpResponse) -> String {
    let text = String::from_utf8_lossy(&resp.body);
    let text = text.trim();
    let quoted = &text[..text.floor_char_boundary(QUOTE_BYTES)];
    let mut s = resp.status.to_string();
    if !quoted.is_empty() {
        s.push_str(": ");
        // One line: a multi-line answer must not break a log line.
        s.extend(quoted.chars().map(|c| if c.is_control() { ' ' } else { c }));
    }
    s
}

/// `Retry-After` in seconds; an HTTP date is ignored (the runner's backoff applies).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

/// Check a sink URL: `http[s]://host[:port]/path[?query]`.
///
/// # Errors
/// Why it cannot be used, for the config check.
pub fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`url` = {url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "`url` = {url:?} must start with http:// or https://"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`url` = {url:?} has no host"));
    }
    Ok(uri)
}

/// What is wrong with an optional `username`/`password` pair, if anything.
pub fn credentials_problem(username: &Option<String>, password: &Option<String>) -> Option<String> {
    match (username, password) {
        (Some(u), Some(_)) if u.is_empty() => Some("`username` must not be empty".to_owned()),
        (Some(_), None) | (None, Some(_)) => {
            Some("`username` and `password` go together".to_owned())
        }
        _ => None,
    }
}

/// `Authorization: Basic …` for a user and password.
pub fn basic_auth(user: &str, password: &str) -> HeaderValue {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut v = HeaderValue::from_str(&format!("Basic {token}"))
        .unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// Headers of a JSON body, optionally gzip'd, with optional Basic credentials.
pub fn json_headers(gzip: bool, auth: Option<HeaderValue>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if gzip {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Some(a) = auth {
        h.insert(AUTHORIZATION, a);
    }
    h.insert(
        HeaderName::from_static("user-agent"),
        HeaderValue::from_static(concat!("conflux/", env!("CARGO_PKG_VERSION"))),
    );
    h
}

/// gzip `data` into `out` (cleared first), at the fast level: sinks compress
/// every batch, and the fast level costs a fraction of the default for most
/// of the size gain on metric JSON.
pub fn gzip_into(data: &[u8], out: &mut Vec<u8>) {
    use std::io::Write as _;
    out.clear();
    let mut enc = flate2::write::GzEncoder::new(std::mem::take(out), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    *out = enc.finish().unwrap_or_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str, retry: Option<&str>) -> HttpResponse {
        let mut headers = HeaderMap::new();
        if let Some(r) = retry {
            headers.insert(RETRY_AFTER, HeaderValue::from_str(r).unwrap());
        }
        HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn classifies_statuses() {
        assert!(classify(Ok(resp(204, "", None))).is_ok());
        assert!(classify(Ok(resp(200, "ok", None))).is_ok());
        assert_eq!(
            classify(Ok(resp(503, "busy\n", Some("7")))).unwrap_err(),
            SinkError::Retryable {
                message: "503 Service Unavailable: busy".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        assert_eq!(
            classify(Ok(resp(429, "", Some("Wed, 21 Oct 2015 07:28:00 GMT")))).unwrap_err(),
            SinkError::Retryable {
                message: "429 Too Many Requests".into(),
                retry_after: None,
            }
        );
        assert!(matches!(
            classify(Ok(resp(408, "", None))),
            Err(SinkError::Retryable { .. })
        ));
        assert_eq!(
            classify(Ok(resp(
                400,
                r#"{"errors":["metric[0].name may not be empty."]}"#,
                None
            )))
            .unwrap_err(),
            SinkError::Rejected {
                message: r#"400 Bad Request: {"errors":["metric[0].name may not be empty."]}"#
                    .into()
            }
        );
        assert!(matches!(
            classify(Err(HttpError::Timeout(Duration::from_millis(5)))),
            Err(SinkError::Retryable { message, .. }) if message == "no answer within 5 ms"
        ));
        assert!(matches!(
            classify(Err(HttpError::Connect("refused".into()))),
            Err(SinkError::Retryable { .. })
        ));
    }

    #[test]
    fn quotes_at_most_256_bytes_on_one_line() {
        let long = format!("line1\n{}", "é".repeat(300));
        let m = describe(&resp(400, &long, None));
        let quoted = m.strip_prefix("400 Bad Request: ").unwrap();
        assert!(
            quoted.len() <= QUOTE_BYTES && quoted.len() >= QUOTE_BYTES - 1,
            "{}",
            quoted.len()
        );
        assert!(quoted.starts_with("line1 é"));
        assert!(!m.contains('\n'));
    }

    #[test]
    fn urls_are_checked() {
        assert!(parse_url("http://127.0.0.1:8080/api/v1/datapoints").is_ok());
        assert!(parse_url("https://kairos/api").is_ok());
        assert!(parse_url("ftp://x/").unwrap_err().contains("http://"));
        assert!(parse_url("not a url").is_err());
        assert!(parse_url("/api/v1/datapoints").is_err());
    }

    #[test]
    fn basic_auth_is_standard_base64() {
        let v = basic_auth("Aladdin", "open sesame");
        assert_eq!(v.to_str().unwrap(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(v.is_sensitive());
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let mut out = vec![1, 2, 3];
        gzip_into(b"hello hello hello", &mut out);
        let mut back = String::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, "hello hello hello");
    }
}
