//! The `kairosdb` sink: KairosDB's REST API (`POST /api/v1/datapoints`),
//! one JSON array per batch, one object per series (the encoder of
//! `conflux_kairosdb::codec`), optionally gzip'd, optionally with Basic
//! credentials, through the shared [`HttpClient`].
//!
//! KairosDB answers 204 once it took the batch, or 400 `{"errors":[…]}` when
//! some object was invalid; it then stores the valid objects all the same, so
//! a 400 is dropped and counted as rejected (retrying would store the valid
//! part twice) and its message is logged.

use bytes::Bytes;
use conflux_core::metric::MetricRef;
use conflux_core::naming::{Naming, NamingOptions, Target};
use conflux_kairosdb::codec::{EncodeOptions, Encoder};
use http::{HeaderMap, Method, Uri};
use serde::Deserialize;

use crate::endpoint::{Endpoint, Endpoints, NetConfig};
use crate::http_client::{self, HttpClient};
use crate::runner::{Sent, SinkError, Skipped};

/// `[sinks.NAME] type = "kairosdb"`: its own keys (the URL, timeout and TLS
/// keys are [`NetConfig`]'s).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Send `Content-Encoding: gzip` bodies (KairosDB 1.3 and later).
    #[serde(default)]
    pub gzip: bool,
    /// HTTP Basic user (with `password`).
    pub username: Option<String>,
    /// HTTP Basic password (with `username`).
    pub password: Option<String>,
    /// `name=value` of the tag a metric without tags gets (KairosDB refuses
    /// untagged objects; its telnet listener adds `add=tag`); `""` for none.
    #[serde(default = "default_untagged_tag")]
    pub untagged_tag: String,
    /// Series naming overrides (`[sinks.NAME.naming]`).
    #[serde(default)]
    pub naming: NamingOptions,
}

fn default_untagged_tag() -> String {
    "add=tag".to_owned()
}

impl Config {
    /// Every problem with the settings.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        p.extend(http_client::credentials_problem(
            &self.username,
            &self.password,
        ));
        if let Err(e) = self.untagged() {
            p.push(e);
        }
        p
    }

    fn untagged(&self) -> Result<Option<(String, String)>, String> {
        if self.untagged_tag.is_empty() {
            return Ok(None);
        }
        match self.untagged_tag.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                Ok(Some((k.to_owned(), v.to_owned())))
            }
            _ => Err(format!(
                "`untagged_tag` = {:?} must be `name=value` or empty",
                self.untagged_tag
            )),
        }
    }
}

/// The `kairosdb` sink: one [`KairosdbEndpoint`] per URL.
pub type KairosdbSink = Endpoints<KairosdbEndpoint>;

/// Every problem with the shared and own settings, URLs included.
pub fn check(net: &NetConfig, cfg: &Config) -> Vec<String> {
    let mut problems = net.http_problems();
    problems.extend(cfg.problems());
    problems
}

/// Build the sink: check the URLs, open the client (no connection yet).
///
/// # Errors
/// Every problem with the settings, joined.
pub fn build(net: &NetConfig, cfg: &Config) -> Result<KairosdbSink, String> {
    let problems = check(net, cfg);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let client = net.http_client()?;
    let auth = match (&cfg.username, &cfg.password) {
        (Some(u), Some(p)) => Some(http_client::basic_auth(u, p)),
        _ => None,
    };
    let mut endpoints = Vec::new();
    for url in net.all_urls() {
        let endpoint = KairosdbEndpoint {
            client: client.clone(),
            uri: http_client::parse_url(url)?,
            headers: http_client::json_headers(cfg.gzip, auth.clone()),
            gzip: cfg.gzip,
            encoder: Encoder::new(EncodeOptions {
                naming: Naming::with_options(Target::Kairosdb, &cfg.naming),
                untagged_tag: cfg.untagged()?,
            }),
            body: Vec::new(),
            gz: Vec::new(),
        };
        endpoints.push((url.to_owned(), endpoint));
    }
    Ok(Endpoints::new(net.mode, endpoints))
}

/// Sends batches to one KairosDB URL.
pub struct KairosdbEndpoint {
    client: HttpClient,
    uri: Uri,
    headers: HeaderMap,
    gzip: bool,
    encoder: Encoder,
    body: Vec<u8>,
    gz: Vec<u8>,
}

impl std::fmt::Debug for KairosdbEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KairosdbEndpoint")
            .field("uri", &self.uri)
            .field("gzip", &self.gzip)
            .finish_non_exhaustive()
    }
}

impl KairosdbEndpoint {
    /// Encode `metrics` into the request body; what it holds and left out.
    fn encode(&mut self, metrics: &[MetricRef<'_>]) -> Sent {
        self.body.clear();
        let enc = self.encoder.encode(metrics, &mut self.body);
        Sent {
            metrics: enc.metrics,
            points: enc.points,
            skipped: Skipped {
                string: enc.skipped_string,
                bool: enc.skipped_bool,
                non_finite: enc.skipped_non_finite,
                invalid_name: enc.skipped_invalid_name,
            },
            ..Sent::default()
        }
    }
}

impl Endpoint for KairosdbEndpoint {
    async fn send(&mut self, metrics: &[MetricRef<'_>]) -> Result<Sent, SinkError> {
        // Encoded again on every attempt: cheap next to a round trip, and the
        // buffers stay owned by the endpoint.
        let mut sent = self.encode(metrics);
        if self.body.is_empty() {
            return Ok(sent);
        }
        let body = if self.gzip {
            http_client::gzip_into(&self.body, &mut self.gz);
            Bytes::copy_from_slice(&self.gz)
        } else {
            Bytes::copy_from_slice(&self.body)
        };
        sent.bytes = body.len();
        let result = self
            .client
            .send(Method::POST, &self.uri, &self.headers, body)
            .await;
        http_client::classify(result)?;
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(extra)
    }

    fn net() -> NetConfig {
        NetConfig::single("http://127.0.0.1:8080/api/v1/datapoints")
    }

    #[test]
    fn defaults_and_problems() {
        let c = cfg("").unwrap();
        assert!(!c.gzip);
        assert_eq!(c.untagged().unwrap(), Some(("add".into(), "tag".into())));
        assert!(c.problems().is_empty());
        let c = cfg("username = \"u\"\nuntagged_tag = \"x\"").unwrap();
        assert_eq!(c.problems().len(), 2, "{:?}", c.problems());
        assert!(cfg("gzipp = true").is_err());
        let c = cfg("untagged_tag = \"\"\n[naming]\nseparator = \"_\"").unwrap();
        assert_eq!(c.untagged().unwrap(), None);
        assert!(build(&net(), &c).is_ok());
        let bad = NetConfig::single("ftp://x/api/v1/datapoints");
        assert!(build(&bad, &c).unwrap_err().contains("http://"));
    }
}
