//! The `graphite` sink: Graphite's plaintext protocol (`path value seconds\n`)
//! over TCP to carbon (`carbon-cache`, `carbon-relay`), carbon-c-relay,
//! VictoriaMetrics or anything else that listens on port 2003.
//!
//! Lines are Telegraf's graphite serializer's
//! ([`conflux_graphite::codec::encode`]): template mode
//! (`host.tags.measurement.field` by default, `templates` chosen by a glob on
//! the measurement) or, with `graphite_tag_support`, Graphite 1.1 tagged
//! series (`measurement.field;k=v;…`). Its keys are Telegraf's
//! `outputs.graphite` keys: `prefix`, `template`, `templates`,
//! `graphite_tag_support`, `graphite_separator`, `graphite_tag_sanitize_mode`.
//! The serializer has its own naming rules (Telegraf's), so this sink takes
//! no `[naming]` table.
//!
//! What Graphite cannot hold: strings are skipped and counted
//! (`string_value`), NaN and infinities too (`non_finite_value`), as are the
//! fields of a metric whose template leaves its name empty (`invalid_name`);
//! bools are written as 1 and 0. Timestamps are whole seconds (the fraction is
//! cut, as Telegraf does).
//!
//! Transport: one persistent connection per URL (`tcp://host:port`, or
//! `tls://host:port` for TLS with the `tls_*` keys) through [`TcpSender`]:
//! reconnect with the runner's backoff, at-least-once delivery (a retry
//! resends the whole batch; carbon keeps the last value written for a path
//! and second, so a resend changes nothing).
//!
//! Checked against carbon-cache 1.1.7 (whisper files read back) and
//! carbon-c-relay 3.7 (the lines it forwards) in `tests/graphite_sink.rs`,
//! and over TLS against carbon-c-relay's `ssl` listener in `tests/tcp_tls.rs`.

use conflux_core::Value;
use conflux_core::metric::MetricRef;
use conflux_graphite::codec::encode::{Serializer, SerializerConfig, TagSanitizeMode};
use serde::Deserialize;

use crate::endpoint::{Endpoint, Endpoints, NetConfig};
use crate::http_client::TlsConfig;
use crate::runner::{Sent, SinkError};
use crate::tcp_client::{self, TcpSender};

/// `[sinks.NAME] type = "graphite"`: its own keys (the URL, timeout and TLS
/// keys are [`NetConfig`]'s), spelled as Telegraf's `outputs.graphite`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Put before every series name (Telegraf `prefix`).
    #[serde(default)]
    pub prefix: String,
    /// The template used when no entry of `templates` matches; default
    /// `host.tags.measurement.field` (Telegraf `template`).
    pub template: Option<String>,
    /// `"filter template"` entries matched on the measurement (first match
    /// wins), or one lone template replacing `template` (Telegraf `templates`).
    #[serde(default)]
    pub templates: Vec<String>,
    /// Write Graphite 1.1 tagged series instead of applying templates
    /// (Telegraf `graphite_tag_support`).
    #[serde(default)]
    pub graphite_tag_support: bool,
    /// Tag support: between prefix, measurement and field; default `.`
    /// (Telegraf `graphite_separator`).
    pub graphite_separator: Option<String>,
    /// Tag support: `strict` (default) or `compatible` (Telegraf
    /// `graphite_tag_sanitize_mode`).
    #[serde(default)]
    pub graphite_tag_sanitize_mode: TagSanitizeMode,
}

impl Config {
    /// Every problem with the settings.
    pub fn problems(&self) -> Vec<String> {
        match Serializer::new(&self.serializer()) {
            Ok(_) => Vec::new(),
            Err(e) => vec![e.to_string()],
        }
    }

    /// The serializer settings these keys stand for.
    pub fn serializer(&self) -> SerializerConfig {
        SerializerConfig {
            prefix: self.prefix.clone(),
            template: self.template.clone(),
            templates: self.templates.clone(),
            tag_support: self.graphite_tag_support,
            separator: self.graphite_separator.clone(),
            tag_sanitize_mode: self.graphite_tag_sanitize_mode,
        }
    }
}

/// The `graphite` sink: one [`GraphiteEndpoint`] per URL.
pub type GraphiteSink = Endpoints<GraphiteEndpoint>;

/// Every problem with the shared and own settings, URLs included.
pub fn check(net: &NetConfig, cfg: &Config) -> Vec<String> {
    let mut problems = net.problems();
    problems.extend(cfg.problems());
    let (mut tls, mut bad_url) = (false, false);
    for url in net.all_urls() {
        match tcp_client::parse_url(url) {
            Ok(target) => tls |= target.tls,
            Err(e) => {
                bad_url = true;
                problems.push(e);
            }
        }
    }
    // Judged only when every URL is known.
    let urls_known = !net.all_urls().is_empty() && !bad_url;
    if urls_known && !tls && net.tls() != TlsConfig::default() {
        problems.push(
            "the `tls_*` keys apply to tls:// URLs only: tcp:// is plain TCP \
             (write tls://host:port for TLS)"
                .to_owned(),
        );
    }
    problems
}

/// Build the sink: check the settings and read the TLS files (no connection
/// yet: each URL connects on its first batch).
///
/// # Errors
/// Every problem with the settings, joined.
pub fn build(net: &NetConfig, cfg: &Config) -> Result<GraphiteSink, String> {
    let problems = check(net, cfg);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let serializer_cfg = cfg.serializer();
    let tls = net.tls();
    let mut endpoints = Vec::new();
    for url in net.all_urls() {
        let target = tcp_client::parse_url(url)?;
        let endpoint = GraphiteEndpoint {
            tcp: TcpSender::build(&target, net.timeout(), &tls)?,
            serializer: Serializer::new(&serializer_cfg).map_err(|e| e.to_string())?,
            buf: Vec::new(),
        };
        endpoints.push((url.to_owned(), endpoint));
    }
    Ok(Endpoints::new(net.mode, endpoints))
}

/// Sends batches to one Graphite URL over one persistent connection.
#[derive(Debug)]
pub struct GraphiteEndpoint {
    tcp: TcpSender,
    serializer: Serializer,
    buf: Vec<u8>,
}

impl GraphiteEndpoint {
    /// The connection (for tests and diagnostics).
    pub fn tcp(&self) -> &TcpSender {
        &self.tcp
    }

    /// Encode `metrics` into `self.buf`; what it holds and left out.
    fn encode(&mut self, metrics: &[MetricRef<'_>]) -> Sent {
        self.buf.clear();
        let mut sent = Sent::default();
        for m in metrics {
            let (written, skipped) = self.serializer.encode(m, &mut self.buf);
            if written > 0 {
                sent.metrics += 1;
                sent.points += written;
            }
            if skipped > 0 {
                // The serializer only says how many; the reasons follow from
                // the values (what is left skipped a name made empty).
                let (mut strings, mut non_finite) = (0, 0);
                for (_, v) in m.fields() {
                    match v {
                        Value::Str(_) => strings += 1,
                        Value::Float(f) if !f.is_finite() => non_finite += 1,
                        _ => {}
                    }
                }
                sent.skipped.string += strings;
                sent.skipped.non_finite += non_finite;
                sent.skipped.invalid_name += skipped.saturating_sub(strings + non_finite);
            }
        }
        sent
    }
}

impl Endpoint for GraphiteEndpoint {
    async fn send(&mut self, metrics: &[MetricRef<'_>]) -> Result<Sent, SinkError> {
        let mut sent = self.encode(metrics);
        if self.buf.is_empty() {
            return Ok(sent);
        }
        // Graphite servers answer nothing: what they might write is dropped.
        self.tcp.send(&self.buf, &mut |_| {}).await?;
        sent.bytes = self.buf.len();
        Ok(sent)
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.tcp.close(&mut |_| {}).await
    }
}

#[cfg(test)]
mod tests {
    use conflux_core::{Batch, Metric};

    use super::*;
    use crate::endpoint::parse_toml;
    use crate::runner::Skipped;

    fn parse(text: &str) -> Result<(NetConfig, Config), String> {
        parse_toml(text)
    }

    #[test]
    fn reads_telegrafs_keys() {
        let (net, c) = parse(
            "url = \"tcp://127.0.0.1:2003\"\nprefix = \"p\"\ntemplate = \"measurement.field\"\n\
             templates = [\"cpu host.measurement.field\"]\ngraphite_tag_support = true\n\
             graphite_separator = \"_\"\ngraphite_tag_sanitize_mode = \"compatible\"",
        )
        .unwrap();
        assert!(check(&net, &c).is_empty(), "{:?}", check(&net, &c));
        let s = c.serializer();
        assert!(s.tag_support);
        assert_eq!(s.tag_sanitize_mode, TagSanitizeMode::Compatible);
        assert_eq!(s.separator.as_deref(), Some("_"));
        assert_eq!(s.templates, vec!["cpu host.measurement.field"]);
        let (_, d) = parse("url = \"tcp://h:2003\"").unwrap();
        assert_eq!(d, Config::default());
        assert!(!d.serializer().tag_support);
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let err = parse("url = \"tcp://h:2003\"\ntemplat = \"x\"").unwrap_err();
        assert!(err.contains("templat"), "{err}");
        let err =
            parse("url = \"tcp://h:2003\"\ngraphite_tag_sanitize_mode = \"loose\"").unwrap_err();
        assert!(err.contains("loose"), "{err}");
        // The daemon's own spelling of the naming policy is not taken here.
        assert!(parse("url = \"tcp://h:2003\"\n[naming]\nseparator = \"_\"").is_err());
    }

    #[test]
    fn lists_every_problem() {
        let (net, c) = parse(
            "urls = [\"http://carbon:2003\", \"tcp://carbon\", \"tcp://ok:2003\"]\ntimeout_ms = 0\n\
             tls_ca_file = \"ca.pem\"\ntemplates = [\"a b c\", \"cpu[ x\"]",
        )
        .unwrap();
        let p = check(&net, &c);
        // The `tls_*` keys are judged once every URL is known.
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(
            p.iter().any(|x| x == "`timeout_ms` must be at least 1"),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.contains("invalid template format `a b c`")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|x| x.contains("invalid filter `cpu[`")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.contains("\"http://carbon:2003\" must start with tcp://")),
            "{p:?}"
        );
        assert!(p.iter().any(|x| x.contains("needs a port")), "{p:?}");
        let err = build(&net, &c).unwrap_err();
        assert!(
            err.contains("needs a port") && err.contains("timeout_ms"),
            "{err}"
        );
        let (net, c) = parse("").unwrap();
        assert_eq!(check(&net, &c), vec!["missing `url` (or `urls`)"]);
    }

    #[test]
    fn tls_urls_take_the_tls_keys() {
        let problems = |text: &str| {
            let (net, c) = parse(text).unwrap();
            check(&net, &c)
        };
        let keys = "tls_ca_file = \"ca.pem\"\ntls_server_name = \"carbon\"";
        assert!(problems(&format!("url = \"tls://carbon:2004\"\n{keys}")).is_empty());
        assert!(
            problems(&format!(
                "urls = [\"tcp://a:2003\", \"tls://b:2004\"]\n{keys}"
            ))
            .is_empty()
        );
        assert_eq!(
            problems(&format!("url = \"tcp://carbon:2003\"\n{keys}")),
            vec![
                "the `tls_*` keys apply to tls:// URLs only: tcp:// is plain TCP \
                 (write tls://host:port for TLS)"
            ]
        );
        let (net, c) = parse("url = \"tls://127.0.0.1:2004\"").unwrap();
        let sink = build(&net, &c).unwrap();
        let tcp = sink.endpoints().next().unwrap().tcp();
        assert!(tcp.is_tls());
        assert_eq!(tcp.addr(), "127.0.0.1:2004");
        let (net, c) = parse(&format!("url = \"tls://carbon:2004\"\n{keys}")).unwrap();
        let err = build(&net, &c).unwrap_err();
        assert!(err.contains("ca.pem"), "{err}");
        let (net, c) = parse("url = \"tls://carbon:2004\"\ntls_server_name = \"a b\"").unwrap();
        let err = build(&net, &c).unwrap_err();
        assert!(err.contains("`tls_server_name` \"a b\""), "{err}");
    }

    #[test]
    fn counts_skipped_points_by_reason() {
        let (_, c) = parse("url = \"tcp://127.0.0.1:9\"\ntemplate = \"missing_tag\"").unwrap();
        let mut e = GraphiteEndpoint {
            tcp: TcpSender::new("127.0.0.1:9".into(), std::time::Duration::from_secs(1)),
            serializer: Serializer::new(&c.serializer()).unwrap(),
            buf: Vec::new(),
        };
        let mut b = Batch::new();
        b.push(
            &Metric::new("m")
                .tag("missing_tag", "h")
                .field("f", 1.5)
                .field("s", "text")
                .field("n", f64::NAN)
                .field("ok", true)
                .at(1_700_000_000_900_000_000),
        )
        .unwrap();
        b.push(&Metric::new("m").field("a", 1i64).field("s", "x").at(1))
            .unwrap();
        let metrics: Vec<MetricRef<'_>> = b.iter().collect();
        let sent = e.encode(&metrics);
        assert_eq!(
            String::from_utf8(e.buf.clone()).unwrap(),
            "h 1.5 1700000000\nh 1 1700000000\n"
        );
        assert_eq!((sent.metrics, sent.points), (1, 2));
        assert_eq!(
            sent.skipped,
            Skipped {
                string: 2,
                bool: 0,
                non_finite: 1,
                invalid_name: 1,
            }
        );
    }
}
