//! Network sinks with one or several URLs.
//!
//! A network sink type implements [`Endpoint`] for one URL; [`Endpoints`]
//! turns one or several of them into a [`Sink`]:
//!
//! - one URL: every batch goes to it;
//! - `mode = "replicate"`: every URL gets every batch; a retry goes only to
//!   the URLs that have not taken it yet, so a live URL does not receive the
//!   batch twice because another one is down;
//! - `mode = "shard"`: each series goes to one URL, chosen by rendezvous
//!   hashing of its series key (name and sorted tags). A series always lands
//!   on the same URL while the set is unchanged, and adding or removing one
//!   URL moves only the series that URL gains or loses.
//!
//! A URL that answers 4xx (rejected) does not stop the others: its share is
//! dropped and counted, the rest is delivered.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use conflux_core::metric::MetricRef;
use conflux_core::pipeline::BatchView;
use futures_util::future::join_all;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::http_client::{ClientConfig, HttpClient, TlsConfig};
use crate::runner::{Sent, Sink, SinkError};

/// One URL of a network sink.
pub trait Endpoint: Send + 'static {
    /// Encode and deliver `metrics` (never empty).
    ///
    /// # Errors
    /// As [`Sink::send`]: [`SinkError::Retryable`] or [`SinkError::Rejected`].
    fn send(
        &mut self,
        metrics: &[MetricRef<'_>],
    ) -> impl Future<Output = Result<Sent, SinkError>> + Send;

    /// Flush and release resources; called once after the last `send`.
    ///
    /// # Errors
    /// Whatever the final flush hit.
    fn close(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }
}

/// How a sink with several URLs spreads batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every URL gets every batch.
    #[default]
    Replicate,
    /// Each series goes to one URL (rendezvous hashing on the series key).
    Shard,
}

/// The keys every network sink shares (`url` or `urls`, `mode`, timeout, TLS).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// The full endpoint, e.g. `http://127.0.0.1:8086/write?db=telegraf`.
    pub url: Option<String>,
    /// Several endpoints; see `mode`.
    #[serde(default)]
    pub urls: Vec<String>,
    /// How batches are spread over several URLs.
    #[serde(default)]
    pub mode: Mode,
    /// Time for one request (connect, send, answer); past it the batch is retried.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// PEM file of the CA certificates that sign the server's certificate
    /// (`https://`); the system's roots when unset.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for servers that ask for one (mutual TLS).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// The name the server's certificate must carry, when it differs from the
    /// URL's host (e.g. connecting by IP address).
    pub tls_server_name: Option<String>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            url: None,
            urls: Vec::new(),
            mode: Mode::default(),
            timeout_ms: default_timeout_ms(),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_server_name: None,
        }
    }
}

impl NetConfig {
    /// The config keys this struct reads.
    pub const KEYS: &'static [&'static str] = &[
        "url",
        "urls",
        "mode",
        "timeout_ms",
        "tls_ca_file",
        "tls_cert_file",
        "tls_key_file",
        "tls_server_name",
    ];

    /// A config for one URL, with defaults for the rest.
    pub fn single(url: &str) -> NetConfig {
        NetConfig {
            url: Some(url.to_owned()),
            ..NetConfig::default()
        }
    }

    /// The URLs, `url` first.
    pub fn all_urls(&self) -> Vec<&str> {
        self.url
            .iter()
            .chain(self.urls.iter())
            .map(String::as_str)
            .collect()
    }

    /// Every problem with the shared settings (URL syntax is the sink type's).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let urls = self.all_urls();
        if urls.is_empty() {
            p.push("missing `url` (or `urls`)".to_owned());
        }
        if self.url.is_some() && !self.urls.is_empty() {
            p.push("give `url` or `urls`, not both".to_owned());
        }
        for (i, u) in urls.iter().enumerate() {
            // Once per URL, however many times it repeats.
            if urls[..i].iter().filter(|x| *x == u).count() == 1 {
                p.push(format!("URL {u:?} is listed twice"));
            }
        }
        if self.timeout_ms == 0 {
            p.push("`timeout_ms` must be at least 1".to_owned());
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            p.push("`tls_cert_file` and `tls_key_file` go together".to_owned());
        }
        p
    }

    /// [`NetConfig::problems`] plus every URL that is not `http(s)://`:
    /// the check of every HTTP-only sink.
    pub fn http_problems(&self) -> Vec<String> {
        let mut p = self.problems();
        for url in self.all_urls() {
            if let Err(e) = crate::http_client::parse_url(url) {
                p.push(e);
            }
        }
        p
    }

    /// The TLS part of the client settings.
    pub fn tls(&self) -> TlsConfig {
        TlsConfig {
            ca_file: self.tls_ca_file.clone(),
            cert_file: self.tls_cert_file.clone(),
            key_file: self.tls_key_file.clone(),
            server_name: self.tls_server_name.clone(),
        }
    }

    /// The sink's HTTP client: one per sink, shared by its URLs.
    ///
    /// # Errors
    /// A TLS file that cannot be read or parsed.
    pub fn http_client(&self) -> Result<HttpClient, String> {
        HttpClient::with_tls(
            ClientConfig {
                timeout: Duration::from_millis(self.timeout_ms),
                ..ClientConfig::default()
            },
            &self.tls(),
        )
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Split a sink table (without `type`) into the shared network keys and the
/// type's own keys, and deserialize both.
///
/// # Errors
/// The unknown keys and bad values of either part.
pub fn parse_table<C: DeserializeOwned>(mut table: toml::Table) -> Result<(NetConfig, C), String> {
    let mut net = toml::Table::new();
    for k in NetConfig::KEYS {
        if let Some(v) = table.remove(*k) {
            net.insert((*k).to_owned(), v);
        }
    }
    let tidy = |e: toml::de::Error| e.message().trim().replace('\n', " ");
    let net: Result<NetConfig, String> = toml::Value::Table(net).try_into().map_err(tidy);
    let own: Result<C, String> = toml::Value::Table(table).try_into().map_err(tidy);
    match (net, own) {
        (Ok(n), Ok(c)) => Ok((n, c)),
        (Err(a), Err(b)) => Err(format!("{a}; {b}")),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// [`parse_table`] from TOML text (tests and examples).
///
/// # Errors
/// Invalid TOML, unknown keys, bad values.
pub fn parse_toml<C: DeserializeOwned>(text: &str) -> Result<(NetConfig, C), String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    parse_table(table)
}

struct Slot<E> {
    url: String,
    key: u64,
    endpoint: E,
    /// Took (or finally refused) the current batch.
    done: bool,
}

/// One or several [`Endpoint`]s as one [`Sink`] (see the module docs).
pub struct Endpoints<E: Endpoint> {
    slots: Vec<Slot<E>>,
    mode: Mode,
}

impl<E: Endpoint> std::fmt::Debug for Endpoints<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("mode", &self.mode)
            .field(
                "urls",
                &self
                    .slots
                    .iter()
                    .map(|s| s.url.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<E: Endpoint> Endpoints<E> {
    /// `endpoints` as (URL, endpoint) pairs, spread by `mode`.
    pub fn new(mode: Mode, endpoints: Vec<(String, E)>) -> Endpoints<E> {
        Endpoints {
            slots: endpoints
                .into_iter()
                .map(|(url, endpoint)| Slot {
                    key: hash_bytes(FNV_OFFSET, url.as_bytes()),
                    url,
                    endpoint,
                    done: false,
                })
                .collect(),
            mode,
        }
    }

    /// The endpoint of each URL, in order.
    pub fn endpoints(&self) -> impl Iterator<Item = &E> {
        self.slots.iter().map(|s| &s.endpoint)
    }

    /// Which URL (index) a series goes to in `shard` mode.
    pub fn shard_of(&self, m: &MetricRef<'_>) -> usize {
        let series = series_hash(m);
        let mut best = 0;
        let mut best_score = 0;
        for (i, s) in self.slots.iter().enumerate() {
            let score = mix(series ^ s.key);
            if i == 0 || score > best_score {
                best = i;
                best_score = score;
            }
        }
        best
    }
}

impl<E: Endpoint> Sink for Endpoints<E> {
    fn new_batch(&mut self) {
        for s in &mut self.slots {
            s.done = false;
        }
    }

    async fn send(&mut self, batch: &[BatchView]) -> Result<Sent, SinkError> {
        // Sized first: a `flat_map` collects by doubling, a dozen moves of
        // the whole list for a flush of thousands.
        let mut metrics = Vec::with_capacity(batch.iter().map(BatchView::len).sum());
        metrics.extend(batch.iter().flat_map(BatchView::iter));
        if metrics.is_empty() {
            return Ok(Sent::default());
        }
        if let [slot] = self.slots.as_mut_slice() {
            return slot.endpoint.send(&metrics).await;
        }
        let parts: Vec<Vec<MetricRef<'_>>> = match self.mode {
            Mode::Replicate => Vec::new(),
            Mode::Shard => {
                let mut parts = vec![Vec::new(); self.slots.len()];
                for m in &metrics {
                    parts[self.shard_of(m)].push(*m);
                }
                parts
            }
        };
        let sends = self
            .slots
            .iter_mut()
            .enumerate()
            .filter(|(_, s)| !s.done)
            .filter_map(|(i, s)| {
                let part: &[MetricRef<'_>] = match self.mode {
                    Mode::Replicate => &metrics,
                    Mode::Shard => &parts[i],
                };
                if part.is_empty() {
                    s.done = true;
                    return None;
                }
                Some(async move {
                    let r = s.endpoint.send(part).await;
                    (s, part.len(), r)
                })
            });
        let outcomes = join_all(sends).await;
        let mut total = Sent::default();
        let mut retry: Option<SinkError> = None;
        for (slot, len, r) in outcomes {
            match r {
                Ok(sent) => {
                    slot.done = true;
                    merge_outcome(&mut total, sent, self.mode);
                }
                Err(SinkError::Rejected { message }) => {
                    slot.done = true;
                    total.rejected += len;
                    if total.rejection.is_none() {
                        total.rejection = Some(format!("{}: {message}", slot.url));
                    }
                }
                Err(SinkError::Retryable {
                    message,
                    retry_after,
                }) => {
                    let message = format!("{}: {message}", slot.url);
                    retry = Some(match retry {
                        None => SinkError::Retryable {
                            message,
                            retry_after,
                        },
                        // The longest hint wins: every failing URL must be ready.
                        Some(SinkError::Retryable {
                            message: m,
                            retry_after: r,
                        }) => SinkError::Retryable {
                            message: m,
                            retry_after: r.max(retry_after),
                        },
                        Some(other) => other,
                    });
                }
            }
        }
        match retry {
            // What the done URLs delivered is not counted again: the batch is
            // counted once, when the last URL took it.
            Some(e) => Err(e),
            None => Ok(total),
        }
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        let mut first = Ok(());
        for s in &mut self.slots {
            if let Err(e) = s.endpoint.close().await {
                tracing::error!(url = %s.url, error = %e, "closing endpoint failed");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

/// Replicated sends count the batch once (the largest delivery), sharded
/// sends add up; bytes always add up.
fn merge_outcome(total: &mut Sent, sent: Sent, mode: Mode) {
    match mode {
        Mode::Shard => total.merge(sent),
        Mode::Replicate => {
            total.bytes += sent.bytes;
            if sent.metrics >= total.metrics {
                total.metrics = sent.metrics;
                total.points = sent.points;
                total.skipped = sent.skipped;
            }
            total.rejected = total.rejected.max(sent.rejected);
            if total.rejection.is_none() {
                total.rejection = sent.rejection;
            }
        }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a: stable across builds and platforms, so a series keeps its URL
/// across restarts and upgrades.
fn hash_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The series key hash: name and tags (sorted by key), with separators that
/// cannot be confused with the bytes of a name.
fn series_hash(m: &MetricRef<'_>) -> u64 {
    let mut h = hash_bytes(FNV_OFFSET, m.name().as_bytes());
    for (k, v) in m.tags() {
        h = hash_bytes(h, &[0xff]);
        h = hash_bytes(h, k.as_bytes());
        h = hash_bytes(h, &[0xfe]);
        h = hash_bytes(h, v.as_bytes());
    }
    h
}

/// splitmix64's finalizer: spreads `series ^ url` so that each URL's score
/// is independent of the others'.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use conflux_core::filter::Filter;
    use conflux_core::pipeline::{QueueConfig, SinkSpec, WhenFull};
    use conflux_core::{Batch, Metric, Pipeline};

    use super::*;

    /// Records series names; fails by script.
    #[derive(Clone, Default)]
    struct Probe {
        got: Arc<Mutex<Vec<String>>>,
        script: Arc<Mutex<Vec<Result<(), SinkError>>>>,
    }

    impl Endpoint for Probe {
        async fn send(&mut self, metrics: &[MetricRef<'_>]) -> Result<Sent, SinkError> {
            let next = {
                let mut s = self.script.lock().unwrap();
                if s.is_empty() { Ok(()) } else { s.remove(0) }
            };
            next?;
            self.got.lock().unwrap().extend(
                metrics
                    .iter()
                    .map(|m| m.tag("host").unwrap_or("").to_owned()),
            );
            Ok(Sent {
                metrics: metrics.len(),
                points: metrics.len(),
                bytes: 10,
                ..Sent::default()
            })
        }
    }

    async fn views(hosts: impl IntoIterator<Item = String>) -> Vec<BatchView> {
        let (p, mut rx) = Pipeline::new(vec![SinkSpec {
            name: "s".into(),
            filter: Filter::default(),
            queue: QueueConfig {
                max_metrics: 100_000,
                when_full: WhenFull::Block,
            },
            spool: None,
            max_new_series_per_hour: None,
        }]);
        let b: Batch = hosts
            .into_iter()
            .map(|h| Metric::new("cpu").tag("host", h).field("v", 1.0))
            .collect();
        p.ingest("x").submit(b).await.unwrap();
        vec![rx[0].recv().await.unwrap()]
    }

    fn hosts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("host-{i}")).collect()
    }

    fn eps(n: usize, mode: Mode) -> (Endpoints<Probe>, Vec<Probe>) {
        let probes: Vec<Probe> = (0..n).map(|_| Probe::default()).collect();
        let e = Endpoints::new(
            mode,
            probes
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("http://10.0.0.{i}/w"), p.clone()))
                .collect(),
        );
        (e, probes)
    }

    #[tokio::test]
    async fn replicate_retries_only_the_failing_url() {
        let (mut e, probes) = eps(2, Mode::Replicate);
        probes[1]
            .script
            .lock()
            .unwrap()
            .push(Err(SinkError::retry("down")));
        let v = views(hosts(3)).await;
        e.new_batch();
        let err = e.send(&v).await.unwrap_err();
        assert!(err.to_string().contains("http://10.0.0.1/w: down"), "{err}");
        let sent = e.send(&v).await.unwrap();
        assert_eq!(
            probes[0].got.lock().unwrap().len(),
            3,
            "no duplicate on the live URL"
        );
        assert_eq!(probes[1].got.lock().unwrap().len(), 3);
        assert_eq!(
            (sent.metrics, sent.bytes),
            (3, 10),
            "counted once, bytes of the last request"
        );
        // A new batch goes to both again.
        e.new_batch();
        e.send(&v).await.unwrap();
        assert_eq!(probes[0].got.lock().unwrap().len(), 6);
    }

    #[tokio::test]
    async fn a_rejecting_url_does_not_stop_the_others() {
        let (mut e, probes) = eps(2, Mode::Replicate);
        probes[0]
            .script
            .lock()
            .unwrap()
            .push(Err(SinkError::Rejected {
                message: "400 bad".into(),
            }));
        let v = views(hosts(2)).await;
        e.new_batch();
        let sent = e.send(&v).await.unwrap();
        assert_eq!(sent.metrics, 2);
        assert_eq!(sent.rejected, 2);
        assert_eq!(
            sent.rejection.as_deref(),
            Some("http://10.0.0.0/w: 400 bad")
        );
        assert_eq!(probes[1].got.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn shard_splits_by_series_and_is_stable() {
        let (mut e, probes) = eps(3, Mode::Shard);
        let v = views(hosts(3000)).await;
        e.new_batch();
        let sent = e.send(&v).await.unwrap();
        assert_eq!(sent.metrics, 3000);
        let counts: Vec<usize> = probes.iter().map(|p| p.got.lock().unwrap().len()).collect();
        assert_eq!(counts.iter().sum::<usize>(), 3000);
        for c in &counts {
            assert!(*c > 800 && *c < 1200, "uneven shards {counts:?}");
        }
        // The same series go to the same URL again.
        let before: Vec<Vec<String>> = probes
            .iter()
            .map(|p| p.got.lock().unwrap().clone())
            .collect();
        e.new_batch();
        e.send(&v).await.unwrap();
        for (p, b) in probes.iter().zip(&before) {
            let got = p.got.lock().unwrap();
            assert_eq!(&got[b.len()..], &b[..]);
        }
    }

    #[tokio::test]
    async fn adding_a_url_moves_only_its_share() {
        let (three, _) = eps(3, Mode::Shard);
        let (four, _) = eps(4, Mode::Shard);
        let v = views(hosts(4000)).await;
        let mut moved = 0;
        let mut to_new = 0;
        for m in v[0].iter() {
            let a = three.shard_of(&m);
            let b = four.shard_of(&m);
            if a != b {
                moved += 1;
                if b == 3 {
                    to_new += 1;
                }
            }
        }
        assert_eq!(moved, to_new, "series only move to the new URL");
        assert!(
            moved > 700 && moved < 1300,
            "about a quarter moves: {moved}"
        );
    }

    #[tokio::test]
    async fn shard_retries_only_the_failing_share() {
        let (mut e, probes) = eps(2, Mode::Shard);
        probes[0]
            .script
            .lock()
            .unwrap()
            .push(Err(SinkError::retry("503")));
        let v = views(hosts(100)).await;
        e.new_batch();
        assert!(e.send(&v).await.is_err());
        let first = probes[1].got.lock().unwrap().len();
        assert!(first > 0);
        e.send(&v).await.unwrap();
        assert_eq!(
            probes[1].got.lock().unwrap().len(),
            first,
            "no resend to the URL that took its share"
        );
        assert_eq!(probes[0].got.lock().unwrap().len() + first, 100);
    }

    #[test]
    fn config_problems() {
        let c: NetConfig = toml::from_str("").unwrap();
        assert_eq!(c.problems(), vec!["missing `url` (or `urls`)"]);
        let c: NetConfig = toml::from_str(
            "url = \"http://a/\"\nurls = [\"http://a/\", \"http://a/\"]\ntimeout_ms = 0\ntls_cert_file = \"c.pem\"",
        )
        .unwrap();
        assert_eq!(c.problems().len(), 4, "{:?}", c.problems());
        let c: NetConfig =
            toml::from_str("urls = [\"http://a/\", \"http://b/\"]\nmode = \"shard\"").unwrap();
        assert!(c.problems().is_empty());
        assert_eq!(c.all_urls(), vec!["http://a/", "http://b/"]);
        assert!(toml::from_str::<NetConfig>("mode = \"random\"").is_err());
    }
}
