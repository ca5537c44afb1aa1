//! The `prometheus` sink: Prometheus remote write 1.0
//! (<https://prometheus.io/docs/concepts/remote_write_spec/>), a
//! Snappy-compressed protobuf `WriteRequest` POSTed to a receiver such as
//! Prometheus (`http://host:9090/api/v1/write`, with
//! `--web.enable-remote-write-receiver`), VictoriaMetrics or vmagent
//! (`http://host:8428/api/v1/write`), Mimir, Cortex or Thanos, through the
//! shared [`HttpClient`].
//!
//! Layout:
//! - [`encode`]: metrics into requests (naming, labels, grouping, protobuf,
//!   Snappy); pure, no I/O.
//! - this module: the config and the endpoint.
//!
//! A batch larger than `max_samples_per_request` samples goes out as several
//! requests, one after the other. A request answered 5xx, 408, 429 or not at
//! all fails the whole send, which the runner retries from the first request:
//! receivers take a sample they already hold (same series, timestamp and
//! value) without complaint, so a resend is harmless. A request answered
//! with another 4xx is dropped and counted as rejected while the others of
//! the batch are still sent: Prometheus answers `400` when one sample of the
//! request is out of order, out of bounds (older than its head block allows)
//! or a duplicate with another value, and refuses the whole request then;
//! retrying would get the same answer.

pub mod encode;

use std::collections::BTreeMap;

use bytes::Bytes;
use conflux_core::metric::MetricRef;
use conflux_core::naming::{Naming, NamingOptions, StringPolicy, Target};
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde::Deserialize;

use self::encode::Encoder;
use crate::endpoint::{Endpoint, Endpoints, NetConfig};
use crate::http_client::{self, HttpClient};
use crate::runner::{Sent, SinkError, Skipped};

/// The version header remote write 1.0 senders send.
pub const REMOTE_WRITE_VERSION: &str = "0.1.0";

/// Headers the sink sets itself, which `headers` may not override.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "host",
    "x-prometheus-remote-write-version",
];

/// `[sinks.NAME] type = "prometheus"`: its own keys (the URL, timeout and TLS
/// keys are [`NetConfig`]'s).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP Basic user (with `password`).
    pub username: Option<String>,
    /// HTTP Basic password (with `username`).
    pub password: Option<String>,
    /// Sent as `Authorization: Bearer <token>` (instead of Basic credentials).
    pub bearer_token: Option<String>,
    /// Extra headers sent with every request (`X-Scope-OrgID` for Mimir or
    /// Cortex tenants, for instance).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The most samples one request carries; a larger batch is split.
    /// vmagent's default block size (`maxRowsPerBlock`).
    #[serde(default = "default_max_samples_per_request")]
    pub max_samples_per_request: usize,
    /// Series naming overrides (`[sinks.NAME.naming]`).
    #[serde(default)]
    pub naming: NamingOptions,
}

fn default_max_samples_per_request() -> usize {
    10_000
}

impl Default for Config {
    fn default() -> Self {
        Config {
            username: None,
            password: None,
            bearer_token: None,
            headers: BTreeMap::new(),
            max_samples_per_request: default_max_samples_per_request(),
            naming: NamingOptions::default(),
        }
    }
}

impl Config {
    /// Every problem with the settings.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        p.extend(http_client::credentials_problem(
            &self.username,
            &self.password,
        ));
        if let Some(t) = &self.bearer_token {
            if t.is_empty() {
                p.push("`bearer_token` must not be empty".to_owned());
            }
            if self.username.is_some() || self.password.is_some() {
                p.push("give `username`/`password` or `bearer_token`, not both".to_owned());
            }
        }
        if self.max_samples_per_request == 0 {
            p.push("`max_samples_per_request` must be at least 1".to_owned());
        }
        if self.naming.strings == Some(StringPolicy::Keep) {
            p.push("`naming.strings` cannot be \"keep\": Prometheus holds no strings".to_owned());
        }
        let auth = self.username.is_some() || self.bearer_token.is_some();
        for (k, v) in &self.headers {
            match HeaderName::from_bytes(k.as_bytes()) {
                Err(_) => p.push(format!("`headers`: {k:?} is not a valid header name")),
                Ok(name) if RESERVED_HEADERS.contains(&name.as_str()) => {
                    p.push(format!("`headers`: {k:?} is set by the sink itself"));
                }
                Ok(name) if name == AUTHORIZATION && auth => p.push(format!(
                    "`headers`: {k:?} conflicts with `username`/`bearer_token`"
                )),
                Ok(_) => {}
            }
            if HeaderValue::from_str(v).is_err() {
                p.push(format!(
                    "`headers`: the value of {k:?} is not a valid header value"
                ));
            }
        }
        p
    }

    /// The headers of every request.
    fn header_map(&self) -> Result<HeaderMap, String> {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        h.insert(
            HeaderName::from_static("x-prometheus-remote-write-version"),
            HeaderValue::from_static(REMOTE_WRITE_VERSION),
        );
        h.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("conflux/", env!("CARGO_PKG_VERSION"))),
        );
        match (&self.username, &self.password, &self.bearer_token) {
            (Some(u), Some(p), _) => {
                h.insert(AUTHORIZATION, http_client::basic_auth(u, p));
            }
            (_, _, Some(t)) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| "`bearer_token` is not a valid header value".to_owned())?;
                v.set_sensitive(true);
                h.insert(AUTHORIZATION, v);
            }
            _ => {}
        }
        for (k, v) in &self.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("`headers`: {k:?} is not a valid header name"))?;
            let mut value = HeaderValue::from_str(v).map_err(|_| {
                format!("`headers`: the value of {k:?} is not a valid header value")
            })?;
            if name == AUTHORIZATION {
                value.set_sensitive(true);
            }
            h.insert(name, value);
        }
        Ok(h)
    }
}

/// The `prometheus` sink: one [`PrometheusEndpoint`] per URL.
pub type PrometheusSink = Endpoints<PrometheusEndpoint>;

/// Every problem with the shared and own settings, URLs included.
pub fn check(net: &NetConfig, cfg: &Config) -> Vec<String> {
    let mut problems = net.http_problems();
    problems.extend(cfg.problems());
    problems
}

/// Build the sink: check the settings, open the client (no connection yet).
///
/// # Errors
/// Every problem with the settings, joined.
pub fn build(net: &NetConfig, cfg: &Config) -> Result<PrometheusSink, String> {
    let problems = check(net, cfg);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let client = net.http_client()?;
    let headers = cfg.header_map()?;
    let mut endpoints = Vec::new();
    for url in net.all_urls() {
        let endpoint = PrometheusEndpoint {
            client: client.clone(),
            uri: http_client::parse_url(url)?,
            headers: headers.clone(),
            max_samples: cfg.max_samples_per_request,
            encoder: Encoder::new(Naming::with_options(Target::Prometheus, &cfg.naming)),
        };
        endpoints.push((url.to_owned(), endpoint));
    }
    Ok(Endpoints::new(net.mode, endpoints))
}

/// Sends batches to one remote-write URL.
pub struct PrometheusEndpoint {
    client: HttpClient,
    uri: Uri,
    headers: HeaderMap,
    max_samples: usize,
    encoder: Encoder,
}

impl std::fmt::Debug for PrometheusEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusEndpoint")
            .field("uri", &self.uri)
            .field("max_samples", &self.max_samples)
            .finish_non_exhaustive()
    }
}

impl Endpoint for PrometheusEndpoint {
    async fn send(&mut self, metrics: &[MetricRef<'_>]) -> Result<Sent, SinkError> {
        // Encoded again on every attempt: cheap next to a round trip, and the
        // buffers stay owned by the endpoint.
        let enc = self
            .encoder
            .encode(metrics, self.max_samples)
            .map_err(|e| SinkError::Rejected {
                message: e.to_string(),
            })?;
        let mut sent = Sent {
            metrics: enc.metrics,
            points: enc.points,
            skipped: Skipped {
                string: enc.skipped_string,
                bool: enc.skipped_bool,
                non_finite: 0,
                invalid_name: enc.skipped_invalid_name,
            },
            ..Sent::default()
        };
        let total = enc.requests;
        let mut refused = 0;
        for (i, req) in self.encoder.requests().enumerate() {
            let body = Bytes::copy_from_slice(req.body);
            sent.bytes += body.len();
            let result = self
                .client
                .send(Method::POST, &self.uri, &self.headers, body)
                .await;
            match http_client::classify(result) {
                Ok(_) => {}
                Err(SinkError::Rejected { message }) => {
                    refused += 1;
                    sent.rejected += req.metrics;
                    sent.metrics -= req.metrics;
                    sent.points -= req.samples;
                    if sent.rejection.is_none() {
                        sent.rejection = Some(if total > 1 {
                            format!("request {} of {total}: {message}", i + 1)
                        } else {
                            message
                        });
                    }
                }
                // The whole send is retried, from the first request.
                Err(e) => return Err(e),
            }
        }
        if total > 0 && refused == total {
            return Err(SinkError::Rejected {
                message: sent.rejection.unwrap_or_default(),
            });
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    fn net() -> NetConfig {
        NetConfig::single("http://127.0.0.1:9090/api/v1/write")
    }

    #[test]
    fn defaults() {
        let c = cfg("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.max_samples_per_request, 10_000);
        assert!(c.problems().is_empty());
        let h = c.header_map().unwrap();
        assert_eq!(h[CONTENT_TYPE], "application/x-protobuf");
        assert_eq!(h[CONTENT_ENCODING], "snappy");
        assert_eq!(h["x-prometheus-remote-write-version"], "0.1.0");
        assert!(h[USER_AGENT].to_str().unwrap().starts_with("conflux/"));
        assert!(h.get(AUTHORIZATION).is_none());
        assert!(build(&net(), &c).is_ok());
    }

    #[test]
    fn every_problem_is_listed() {
        let c = cfg(concat!(
            "username = \"\"\npassword = \"p\"\nbearer_token = \"\"\n",
            "max_samples_per_request = 0\n",
            "[naming]\nstrings = \"keep\"\n",
            "[headers]\n\"bad header\" = \"x\"\nContent-Type = \"text/plain\"\nAuthorization = \"x\"\nX-Ok = \"a\\nb\"\n",
        ))
        .unwrap();
        let p = c.problems();
        let want = [
            "`username` must not be empty",
            "`bearer_token` must not be empty",
            "give `username`/`password` or `bearer_token`, not both",
            "`max_samples_per_request` must be at least 1",
            "`naming.strings` cannot be \"keep\": Prometheus holds no strings",
            "`headers`: \"Authorization\" conflicts with `username`/`bearer_token`",
            "`headers`: \"Content-Type\" is set by the sink itself",
            "`headers`: the value of \"X-Ok\" is not a valid header value",
            "`headers`: \"bad header\" is not a valid header name",
        ];
        assert_eq!(p.len(), want.len(), "{p:#?}");
        for w in want {
            assert!(p.iter().any(|x| x == w), "{w} not in {p:#?}");
        }
        let err = build(&net(), &c).unwrap_err();
        assert!(err.contains("`max_samples_per_request`"), "{err}");
        assert!(cfg("user = \"x\"").is_err(), "unknown keys are refused");
        assert!(cfg("[naming]\nseparatr = \"_\"").is_err());
    }

    #[test]
    fn urls_are_checked() {
        let c = Config::default();
        let bad = NetConfig::single("ftp://x/api/v1/write");
        assert!(build(&bad, &c).unwrap_err().contains("http://"));
        assert_eq!(
            check(&NetConfig::default(), &c),
            vec!["missing `url` (or `urls`)"]
        );
    }

    #[test]
    fn auth_headers() {
        let basic = cfg("username = \"Aladdin\"\npassword = \"open sesame\"").unwrap();
        let h = basic.header_map().unwrap();
        assert_eq!(h[AUTHORIZATION], "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(h[AUTHORIZATION].is_sensitive());
        let bearer = cfg(
            "bearer_token = \"t0k\"\n[headers]\nX-Scope-OrgID = \"tenant-1\"\nUser-Agent = \"me\"",
        )
        .unwrap();
        assert!(bearer.problems().is_empty(), "{:?}", bearer.problems());
        let h = bearer.header_map().unwrap();
        assert_eq!(h[AUTHORIZATION], "Bearer t0k");
        assert!(h[AUTHORIZATION].is_sensitive());
        assert_eq!(h["x-scope-orgid"], "tenant-1");
        assert_eq!(h[USER_AGENT], "me", "extra headers come last");
        let custom = cfg("[headers]\nAuthorization = \"Token abc\"").unwrap();
        assert!(custom.problems().is_empty());
        assert_eq!(custom.header_map().unwrap()[AUTHORIZATION], "Token abc");
    }
}
