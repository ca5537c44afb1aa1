//! The Graphite listener: plaintext over TCP and UDP (carbon's port 2003) and
//! pickle over TCP (port 2004), on `conflux-net`.
//!
//! - Plaintext TCP: a [`TcpLineServer`]; each read chunk of complete lines is
//!   parsed into one batch and submitted. Bad lines are counted by reason and
//!   skipped; the connection stays open. Waiting in `submit` is the
//!   backpressure: nothing more is read, so the kernel pushes back on the
//!   client when a blocking sink is full.
//! - Plaintext UDP: one batch per datagram. A bad line drops only itself, the
//!   datagram's good lines are kept (Telegraf drops the whole datagram). UDP
//!   cannot push back: a batch that finds a blocking sink full for
//!   `udp_queue_wait_ms` is dropped and counted as
//!   `conflux_listener_rejected_total{reason="queue_full"}` (one per metric).
//! - Pickle: frames of a 4-byte big-endian length and a pickle of
//!   `[(path, (timestamp, value)), …]`. A frame over `max_pickle_frame_bytes`
//!   closes the connection, as carbon does; a frame that does not load is
//!   counted and skipped; opcodes that import or call are refused.
//!
//! Logs about bad input are rate-limited (one line per connection every 10 s,
//! with a count of what was held back); counters are per batch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use conflux_core::Batch;
use conflux_core::component::{CancellationToken, ListenerContext};
use conflux_core::metric::Limits;
use conflux_core::pipeline::SubmitError;
use conflux_core::telemetry;
use conflux_core::time::now_ns;
use conflux_net::allow::AllowList;
use conflux_net::conn::Acceptor;
use conflux_net::counters::ListenerCounters;
use conflux_net::http::Router;
use conflux_net::listener::{Server, Socket, Started, Transport, defaults, shared_problems};
use conflux_net::ratelimit::RateLimited;
use conflux_net::tcp::{Flow, LineConn, LineHandler, TcpConfig, TcpLineServer};
use conflux_net::tls::{ServerTls, Stream, TlsConfig};
use conflux_net::udp::{DatagramHandler, UdpConfig, UdpServer};
use conflux_net::{Labels, ListenerError};
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::codec::{ErrorKind, LineError, ParseOptions, Parser, PickleError, Templates};

/// How often a connection may log about bad input.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Largest pickle frame a config may allow.
const MAX_PICKLE_FRAME_LIMIT: usize = 64 * 1024 * 1024;
/// Rejection reason: a UDP batch dropped because a blocking sink stayed full.
const QUEUE_FULL: &str = "queue_full";
/// Rejection reason: a pickle frame over `max_pickle_frame_bytes`.
const FRAME_TOO_LARGE: &str = "frame_too_large";

/// `[listeners.NAME] type = "graphite"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Plaintext over TCP (carbon's port 2003).
    pub address: Option<SocketAddr>,
    /// Plaintext over UDP (carbon's port 2003, off by default in carbon).
    pub udp_address: Option<SocketAddr>,
    /// Pickle over TCP (carbon's port 2004).
    pub pickle_address: Option<SocketAddr>,
    /// Joins the parts a template puts together (Telegraf's `separator`).
    #[serde(default = "default_separator")]
    pub separator: String,
    /// Telegraf/InfluxDB templates: `[separator] [filter] template [k=v,…]`.
    #[serde(default)]
    pub templates: Vec<String>,
    /// Read a timestamp of `0` as the receive time, as vmagent does (carbon
    /// stores it as 1970-01-01).
    #[serde(default)]
    pub zero_timestamp_is_now: bool,
    /// TCP: longest line; a longer one is counted and skipped.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// TCP (plaintext and pickle): connections open at once, each.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// TCP: a connection idle this long is closed.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// UDP: largest datagram; a larger one is counted and dropped.
    #[serde(default = "default_max_datagram_bytes")]
    pub max_datagram_bytes: usize,
    /// UDP: `SO_RCVBUF` to ask for; the system default when unset.
    pub udp_recv_buffer_bytes: Option<usize>,
    /// UDP: how long a datagram's batch waits for room in a blocking sink
    /// before it is dropped and counted.
    #[serde(default = "default_udp_queue_wait_ms")]
    pub udp_queue_wait_ms: u64,
    /// Pickle: largest frame (carbon's `PICKLE_RECEIVER_MAX_LENGTH`); a
    /// larger one closes the connection.
    #[serde(default = "default_max_pickle_frame_bytes")]
    pub max_pickle_frame_bytes: usize,
    /// Most tags one metric may carry, path and template tags merged; a line
    /// or pickle item with more is rejected (`too_many_tags`). Same key on
    /// every listener.
    #[serde(default = "default_max_tags_per_metric")]
    pub max_tags_per_metric: usize,
    /// Longest series key in bytes (`name,key=value,…` after templates); a
    /// longer line or item is rejected (`series_key_too_long`). Same key on
    /// every listener.
    #[serde(default = "default_max_series_key_bytes")]
    pub max_series_key_bytes: usize,
    /// TCP: a line must be complete this long after its first byte; pickle:
    /// a frame this long after its length prefix.
    #[serde(default = "defaults::line_timeout_ms")]
    pub line_timeout_ms: u64,
    /// Serve TLS on `address` and `pickle_address` with this certificate.
    pub tls: Option<TlsConfig>,
    /// Accept connections and datagrams only from these networks; empty:
    /// from anywhere. Graphite carries no credentials, so this is its access
    /// control.
    #[serde(default)]
    pub allowed_networks: AllowList,
}

fn default_separator() -> String {
    crate::codec::DEFAULT_SEPARATOR.to_owned()
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
fn default_max_datagram_bytes() -> usize {
    65_535
}
fn default_udp_queue_wait_ms() -> u64 {
    100
}
fn default_max_pickle_frame_bytes() -> usize {
    1024 * 1024
}
fn default_max_tags_per_metric() -> usize {
    Limits::DEFAULT_MAX_TAGS
}
fn default_max_series_key_bytes() -> usize {
    Limits::DEFAULT_MAX_SERIES_KEY_BYTES
}

impl Config {
    /// A config with only the plaintext TCP address set and every default.
    pub fn tcp(address: SocketAddr) -> Config {
        Config {
            address: Some(address),
            udp_address: None,
            pickle_address: None,
            separator: default_separator(),
            templates: Vec::new(),
            zero_timestamp_is_now: false,
            max_line_bytes: default_max_line_bytes(),
            max_connections: default_max_connections(),
            idle_timeout_ms: default_idle_timeout_ms(),
            max_datagram_bytes: default_max_datagram_bytes(),
            udp_recv_buffer_bytes: None,
            udp_queue_wait_ms: default_udp_queue_wait_ms(),
            max_pickle_frame_bytes: default_max_pickle_frame_bytes(),
            max_tags_per_metric: default_max_tags_per_metric(),
            max_series_key_bytes: default_max_series_key_bytes(),
            line_timeout_ms: defaults::line_timeout_ms(),
            tls: None,
            allowed_networks: AllowList::default(),
        }
    }

    /// Every problem with the values.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.address.is_none() && self.udp_address.is_none() && self.pickle_address.is_none() {
            p.push("set at least one of `address`, `udp_address`, `pickle_address`".to_owned());
        }
        // Port 0 (tests) binds two different free ports.
        if self.address.is_some_and(|a| a.port() != 0) && self.address == self.pickle_address {
            p.push("`address` and `pickle_address` must differ".to_owned());
        }
        if let Err(errors) = Templates::new(&self.separator, &self.templates) {
            p.extend(errors.iter().map(|e| format!("`templates`: {e}")));
        }
        if self.max_line_bytes == 0 {
            p.push("`max_line_bytes` must be at least 1".to_owned());
        }
        if self.max_connections == 0 {
            p.push("`max_connections` must be at least 1".to_owned());
        }
        if self.idle_timeout_ms == 0 {
            p.push("`idle_timeout_ms` must be at least 1".to_owned());
        }
        if !(1..=65_535).contains(&self.max_datagram_bytes) {
            p.push("`max_datagram_bytes` must be between 1 and 65535".to_owned());
        }
        if self.udp_recv_buffer_bytes == Some(0) {
            p.push("`udp_recv_buffer_bytes` must be at least 1".to_owned());
        }
        if !(1..=MAX_PICKLE_FRAME_LIMIT).contains(&self.max_pickle_frame_bytes) {
            p.push(format!(
                "`max_pickle_frame_bytes` must be between 1 and {MAX_PICKLE_FRAME_LIMIT}"
            ));
        }
        if self.max_tags_per_metric == 0 {
            p.push("`max_tags_per_metric` must be at least 1".to_owned());
        }
        if self.max_series_key_bytes == 0 {
            p.push("`max_series_key_bytes` must be at least 1".to_owned());
        }
        p.extend(shared_problems(
            self.tls.as_ref(),
            &[("line_timeout_ms", self.line_timeout_ms)],
        ));
        p
    }

    /// The sockets this listener opens.
    pub fn sockets(&self) -> Vec<Socket> {
        let mut s = Vec::new();
        let mut add = |a: Option<SocketAddr>, transport| {
            if let Some(address) = a {
                s.push(Socket { address, transport });
            }
        };
        add(self.address, Transport::Tcp);
        add(self.udp_address, Transport::Udp);
        add(self.pickle_address, Transport::Tcp);
        s
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms.max(1))
    }

    /// The per-metric limits every batch this listener parses into checks.
    pub fn limits(&self) -> Limits {
        Limits {
            max_tags: self.max_tags_per_metric,
            max_series_key_bytes: self.max_series_key_bytes,
        }
    }
}

/// Graphite has no HTTP side.
pub fn router(_cfg: &Config, _ctx: ListenerContext) -> Option<Router> {
    None
}

/// Bind every configured socket and hand over the servers. Servers log
/// their transport as `tcp`, `udp` and `pickle`.
///
/// # Errors
/// A socket that cannot be bound. Templates are checked by
/// [`Config::problems`]; if they are bad anyway, none apply.
pub async fn start(cfg: &Config, ctx: ListenerContext) -> Result<Started, ListenerError> {
    let labels = Labels::from(&ctx);
    let templates = match Templates::new(&cfg.separator, &cfg.templates) {
        Ok(t) => t,
        Err(errors) => {
            tracing::error!(listener = %ctx.name, errors = errors.len(), "bad templates; using none");
            Templates::default()
        }
    };
    let shared = Arc::new(Shared {
        counters: ListenerCounters::new(
            &labels,
            ErrorKind::ALL
                .iter()
                .map(|k| k.reason())
                .chain([QUEUE_FULL, FRAME_TOO_LARGE]),
        ),
        templates: Arc::new(templates),
        zero_is_now: cfg.zero_timestamp_is_now,
        udp_wait: Duration::from_millis(cfg.udp_queue_wait_ms),
        max_frame: cfg.max_pickle_frame_bytes,
        idle_timeout: cfg.idle_timeout(),
        frame_timeout: Duration::from_millis(cfg.line_timeout_ms.max(1)),
        frame_timeouts: labels.reason_counter(telemetry::LISTENER_TIMEOUTS, "line"),
        idle_timeouts: labels.reason_counter(telemetry::LISTENER_TIMEOUTS, "idle"),
        limits: cfg.limits(),
        ctx,
    });
    let shutdown = shared.ctx.shutdown.clone();
    let tls = cfg.tls.as_ref().map(ServerTls::load).transpose()?;
    let mut started = Started::default();
    if let Some(addr) = cfg.address {
        let tcp_cfg = TcpConfig {
            max_connections: cfg.max_connections,
            idle_timeout: cfg.idle_timeout(),
            line_timeout: Duration::from_millis(cfg.line_timeout_ms.max(1)),
            max_line_bytes: cfg.max_line_bytes,
            ..TcpConfig::default()
        };
        let mut server = TcpLineServer::bind(addr, tcp_cfg, labels.clone()).await?;
        server.set_allow(cfg.allowed_networks.clone());
        server.set_tls(tls.clone());
        started.servers.push(Server {
            address: server.local_addr(),
            transport: "tcp",
            run: Box::pin(server.run(Lines(shared.clone()), shutdown.clone())),
            tls: tls.clone(),
        });
    }
    if let Some(addr) = cfg.udp_address {
        let udp_cfg = UdpConfig {
            max_datagram_bytes: cfg.max_datagram_bytes,
            recv_buffer_bytes: cfg.udp_recv_buffer_bytes,
        };
        let mut server = UdpServer::bind(addr, udp_cfg, labels.clone()).await?;
        server.set_allow(cfg.allowed_networks.clone());
        started.servers.push(Server {
            address: server.local_addr(),
            transport: "udp",
            run: Box::pin(server.run(Datagrams(Conn::new(shared.clone())), shutdown.clone())),
            tls: None,
        });
    }
    if let Some(addr) = cfg.pickle_address {
        let mut acceptor = Acceptor::bind(addr, cfg.max_connections, labels).await?;
        acceptor.set_allow(cfg.allowed_networks.clone());
        acceptor.set_tls(tls.clone());
        let address = acceptor.local_addr();
        let s = shared.clone();
        let token = shutdown.clone();
        let run = acceptor.run(shutdown, move |stream, _peer| {
            serve_pickle(stream, Conn::new(s.clone()), token.clone())
        });
        started.servers.push(Server {
            address,
            transport: "pickle",
            run: Box::pin(run),
            tls,
        });
    }
    Ok(started)
}

struct Shared {
    ctx: ListenerContext,
    counters: ListenerCounters,
    templates: Arc<Templates>,
    zero_is_now: bool,
    udp_wait: Duration,
    max_frame: usize,
    idle_timeout: Duration,
    frame_timeout: Duration,
    /// `conflux_listener_timeouts_total{reason="line"}`: a pickle frame too slow.
    frame_timeouts: metrics::Counter,
    /// `conflux_listener_timeouts_total{reason="idle"}`: no frame began in time.
    idle_timeouts: metrics::Counter,
    limits: Limits,
}

/// What one connection (or the UDP socket) keeps: a parser with its
/// buffers, the error list and its log gate.
struct Conn {
    shared: Arc<Shared>,
    parser: Parser,
    errors: Vec<LineError>,
    log: RateLimited,
}

impl Conn {
    fn new(shared: Arc<Shared>) -> Conn {
        Conn {
            parser: Parser::new(shared.templates.clone()),
            shared,
            errors: Vec::new(),
            log: RateLimited::new(LOG_INTERVAL),
        }
    }

    fn options(&self) -> ParseOptions {
        ParseOptions {
            default_timestamp_ns: now_ns(),
            zero_is_now: self.shared.zero_is_now,
        }
    }

    /// A batch sized for graphite lines, with the listener's limits: room
    /// for a metric per 64 bytes (plain lines are about 100, so a read's
    /// metrics are not moved by growing the vector), one field each, and a
    /// tag per 16 bytes (a tagged line of 170 bytes has about ten).
    fn batch_for(&self, bytes: usize) -> Batch {
        let metrics = bytes / 64 + 1;
        let mut batch = Batch::with_capacities(metrics, bytes / 16, metrics, bytes);
        batch.set_limits(self.shared.limits);
        batch
    }

    fn parse_lines(&mut self, data: &[u8]) -> Batch {
        let opts = self.options();
        let mut batch = self.batch_for(data.len());
        self.errors.clear();
        self.parser.parse(data, &opts, &mut batch, &mut self.errors);
        self.report_errors("bad graphite line");
        batch
    }

    fn report_errors(&mut self, what: &'static str) {
        if self.errors.is_empty() {
            return;
        }
        self.shared
            .counters
            .rejected(self.errors.iter().map(|e| e.kind.reason()));
        // NaN values are dropped by design, as carbon does: not worth a warning.
        let Some(first) = self.errors.iter().find(|e| e.kind != ErrorKind::NanValue) else {
            return;
        };
        if let Some(suppressed) = self.log.allow() {
            tracing::warn!(
                listener = %self.shared.ctx.name,
                error = %first,
                rejected = self.errors.len(),
                suppressed,
                "{what}"
            );
        }
    }

    /// Submit and count; waiting here is the backpressure.
    async fn submit(&self, batch: Batch) -> Result<(), SubmitError> {
        let (metrics, points) = (batch.len(), batch.points());
        if metrics == 0 {
            return Ok(());
        }
        self.shared.ctx.ingest.submit(batch).await?;
        self.shared.counters.received(metrics, points);
        Ok(())
    }

    async fn pickle_frame(&mut self, frame: &[u8]) -> Result<(), SubmitError> {
        let opts = self.options();
        let mut batch = self.batch_for(frame.len());
        self.errors.clear();
        if let Err(e) = self
            .parser
            .parse_pickle(frame, &opts, &mut batch, &mut self.errors)
        {
            self.bad_pickle(&e);
        }
        self.report_errors("bad pickle item");
        self.submit(batch).await
    }

    fn bad_pickle(&mut self, e: &PickleError) {
        self.shared.counters.reject(e.kind.reason(), 1);
        if let Some(suppressed) = self.log.allow() {
            tracing::warn!(listener = %self.shared.ctx.name, error = %e, suppressed, "pickle frame ignored");
        }
    }
}

/// Plaintext over TCP.
struct Lines(Arc<Shared>);

impl LineHandler for Lines {
    type Conn = Conn;
    fn open(&self, _peer: SocketAddr) -> Conn {
        Conn::new(self.0.clone())
    }
}

impl LineConn for Conn {
    async fn lines(&mut self, lines: &[u8], _reply: &mut Vec<u8>) -> Flow {
        let batch = self.parse_lines(lines);
        match self.submit(batch).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }
}

/// Plaintext over UDP.
struct Datagrams(Conn);

impl DatagramHandler for Datagrams {
    async fn datagram(&mut self, data: &[u8], _peer: SocketAddr) {
        let conn = &mut self.0;
        let batch = conn.parse_lines(data);
        let (metrics, points) = (batch.len(), batch.points());
        if metrics == 0 {
            return;
        }
        let s = &conn.shared;
        // UDP cannot push back: past the wait, drop and count.
        match s.ctx.ingest.submit_timeout(batch, s.udp_wait).await {
            Ok(_) => {
                s.counters.received(metrics, points);
            }
            Err(SubmitError::Overloaded { sink }) => {
                s.counters.reject(QUEUE_FULL, metrics as u64);
                if let Some(suppressed) = conn.log.allow() {
                    tracing::warn!(listener = %s.ctx.name, %sink, dropped = metrics, suppressed, "sink full; udp datagram dropped");
                }
            }
            Err(SubmitError::Closed) => {}
        }
    }
}

/// Serve one pickle connection: length-prefixed frames until end of stream,
/// idle timeout, an oversize frame or shutdown (a frame already received is
/// still handled).
async fn serve_pickle(mut stream: Stream, mut conn: Conn, shutdown: CancellationToken) {
    let idle = conn.shared.idle_timeout;
    let frame_timeout = conn.shared.frame_timeout;
    let max = conn.shared.max_frame;
    let mut frame = Vec::new();
    loop {
        let mut head = [0u8; 4];
        let read = tokio::select! {
            biased;
            r = tokio::time::timeout(idle, stream.read_exact(&mut head)) => r,
            () = shutdown.cancelled() => return,
        };
        match read {
            Ok(Ok(_)) => {}
            // End of stream or a reset: nothing half-read is usable.
            Ok(Err(_)) => return,
            Err(_) => {
                conn.shared.idle_timeouts.increment(1);
                return;
            }
        }
        let len = u32::from_be_bytes(head) as usize;
        if len > max {
            conn.shared.counters.reject(FRAME_TOO_LARGE, 1);
            conn.shared.counters.bytes(4);
            if let Some(suppressed) = conn.log.allow() {
                tracing::warn!(listener = %conn.shared.ctx.name, len, max, suppressed, "pickle frame too large; closing the connection");
            }
            return;
        }
        frame.clear();
        // The buffer grows as bytes arrive: a length prefix alone, never
        // followed by its frame, costs no memory. The frame must arrive
        // within the frame timeout (a trickling client is cut off).
        // Preferring the read takes a frame already in the socket buffer even
        // when shutdown has begun.
        let mut body = (&mut stream).take(len as u64);
        let read = tokio::select! {
            biased;
            r = tokio::time::timeout(frame_timeout, body.read_to_end(&mut frame)) => r,
            () = shutdown.cancelled() => return,
        };
        match read {
            Ok(Ok(n)) if n == len => {}
            Ok(_) => return,
            Err(_) => {
                conn.shared.frame_timeouts.increment(1);
                return;
            }
        }
        conn.shared.counters.bytes(4 + len);
        if conn.pickle_frame(&frame).await.is_err() {
            return;
        }
        // A huge frame should not pin its buffer for the life of the connection.
        if frame.capacity() > 256 * 1024 {
            frame = Vec::new();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Config, String> {
        toml::from_str(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_every_key_with_defaults() {
        let c = parse(r#"address = "127.0.0.1:2003""#).unwrap();
        assert_eq!(c, Config::tcp("127.0.0.1:2003".parse().unwrap()));
        assert_eq!(c.separator, ".");
        assert_eq!(c.max_pickle_frame_bytes, 1 << 20);
        assert_eq!(
            (c.max_tags_per_metric, c.max_series_key_bytes),
            (256, 65_535)
        );
        assert!(c.problems().is_empty());
        let c = parse(
            r#"
address = "127.0.0.1:2003"
udp_address = "127.0.0.1:2003"
pickle_address = "127.0.0.1:2004"
separator = "_"
templates = ["*.app env.service.resource.measurement", "measurement*"]
zero_timestamp_is_now = true
max_line_bytes = 1000
max_connections = 5
idle_timeout_ms = 1000
max_datagram_bytes = 1400
udp_recv_buffer_bytes = 4194304
udp_queue_wait_ms = 0
max_pickle_frame_bytes = 2048
max_tags_per_metric = 32
max_series_key_bytes = 1000
"#,
        )
        .unwrap();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert_eq!(
            c.limits(),
            Limits {
                max_tags: 32,
                max_series_key_bytes: 1000
            }
        );
        assert_eq!(c.sockets().len(), 3);
        assert_eq!(c.sockets()[1].transport, Transport::Udp);
    }

    #[test]
    fn rejects_unknown_keys() {
        let e = parse("address = \"127.0.0.1:2003\"\nport = 1").unwrap_err();
        assert!(e.contains("unknown field `port`"), "{e}");
    }

    #[test]
    fn reports_every_problem() {
        let mut c = Config::tcp("127.0.0.1:2003".parse().unwrap());
        c.address = None;
        c.templates = vec!["host.cpu".into(), "a b c d e".into()];
        c.separator = String::new();
        c.max_line_bytes = 0;
        c.max_connections = 0;
        c.max_datagram_bytes = 70_000;
        c.max_pickle_frame_bytes = 0;
        let p = c.problems();
        assert_eq!(p.len(), 8, "{p:#?}");
        assert!(p[0].starts_with("set at least one of"));
        assert!(
            p.iter()
                .any(|x| x.contains("no `measurement` in `host.cpu`")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|x| x.contains("`separator` must not be empty")),
            "{p:#?}"
        );
        let mut zero = Config::tcp("127.0.0.1:2003".parse().unwrap());
        zero.max_tags_per_metric = 0;
        zero.max_series_key_bytes = 0;
        assert_eq!(
            zero.problems(),
            vec![
                "`max_tags_per_metric` must be at least 1",
                "`max_series_key_bytes` must be at least 1"
            ]
        );
        let mut same = Config::tcp("127.0.0.1:2003".parse().unwrap());
        same.pickle_address = same.address;
        assert_eq!(
            same.problems(),
            vec!["`address` and `pickle_address` must differ"]
        );
    }
}
