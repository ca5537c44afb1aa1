//! The daemon's TOML configuration: parsing, per-component dispatch on `type`,
//! and validation that reports every problem at once.
//!
//! A component's name is its table key (`[listeners.edge]`, `[sinks.main]`);
//! each component's own settings are a struct next to its code with unknown
//! keys rejected, and every message names the component it is about.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use conflux_core::filter::{Filter, FilterConfig};
use conflux_core::pipeline::{QueueConfig, SinkSpec, SpoolSpec, WhenFull};
use conflux_net::listener::{Socket, Transport};
use conflux_sinks::endpoint::NetConfig;
use conflux_sinks::runner::RunnerConfig;
use conflux_sinks::{blackhole, file, graphite, influx, kairosdb, opentsdb, prometheus};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::listeners::ListenerConfig;

/// The default configuration, compiled in.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/conflux.toml");

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `listeners.edge`, `sinks.main`, `admin`, or empty for the file.
    pub at: String,
    /// What.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.at, self.message)
        }
    }
}

/// Every problem of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the configuration:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter (`info`, `conflux=debug,warn`); `RUST_LOG` wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `text` or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

fn default_log_level() -> String {
    "info".to_owned()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_log_level(),
            format: LogFormat::default(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[admin]`: the daemon's own HTTP endpoint (`/metrics`, `/health`, `/ready`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where to listen.
    #[serde(default = "default_admin_address")]
    pub address: SocketAddr,
    /// Set to false to run without it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Serve the admin routes over HTTPS with this certificate.
    pub tls: Option<conflux_net::tls::TlsConfig>,
    /// Accept connections only from these networks; empty: from anywhere.
    #[serde(default)]
    pub allowed_networks: conflux_net::allow::AllowList,
}

fn default_admin_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9599))
}

fn default_true() -> bool {
    true
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            address: default_admin_address(),
            enabled: true,
            tls: None,
            allowed_networks: conflux_net::allow::AllowList::default(),
        }
    }
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// How long SIGTERM may take: listeners finish, sinks flush; past it,
    /// what is still unsent is dropped and counted.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// Where state lives: each spooling sink's queue goes to
    /// `{data_dir}/spool/{sink}` unless it sets `spool_dir`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

fn default_shutdown_timeout_ms() -> u64 {
    15_000
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            data_dir: default_data_dir(),
        }
    }
}

/// A sink's type and its own settings; network sinks also carry the shared
/// URL, timeout and TLS keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// `type = "file"`.
    File(file::Config),
    /// `type = "blackhole"`.
    Blackhole(blackhole::Config),
    /// `type = "influx"`.
    Influx(NetConfig, influx::Config),
    /// `type = "prometheus"`.
    Prometheus(NetConfig, prometheus::Config),
    /// `type = "graphite"`.
    Graphite(NetConfig, graphite::Config),
    /// `type = "opentsdb"`.
    Opentsdb(NetConfig, opentsdb::Config),
    /// `type = "kairosdb"`.
    Kairosdb(NetConfig, kairosdb::Config),
}

impl SinkKind {
    /// The `type` spelling.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::File(_) => "file",
            SinkKind::Blackhole(_) => "blackhole",
            SinkKind::Influx(..) => "influx",
            SinkKind::Prometheus(..) => "prometheus",
            SinkKind::Graphite(..) => "graphite",
            SinkKind::Opentsdb(..) => "opentsdb",
            SinkKind::Kairosdb(..) => "kairosdb",
        }
    }
}

/// A network sink's two halves, with every problem of both.
fn network<C: serde::de::DeserializeOwned>(
    table: toml::Table,
    check: impl Fn(&NetConfig, &C) -> Vec<String>,
    errors: &mut Vec<String>,
) -> Result<(NetConfig, C), String> {
    let (net, own) = conflux_sinks::endpoint::parse_table::<C>(table)?;
    errors.extend(check(&net, &own));
    Ok((net, own))
}

/// Queue settings shared by every sink.
// No `deny_unknown_fields`: serde cannot combine it with `flatten`, and
// only the keys in `QUEUE_KEYS` ever reach this struct.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct SinkQueueConfig {
    #[serde(default)]
    when_full: WhenFull,
    #[serde(default = "default_queue_max_metrics")]
    queue_max_metrics: usize,
    #[serde(default)]
    max_new_series_per_hour: Option<u64>,
    #[serde(flatten)]
    spool: SpoolSettings,
}

const QUEUE_KEYS: &[&str] = &[
    "when_full",
    "queue_max_metrics",
    "max_new_series_per_hour",
    "durable",
    "spool_dir",
    "spool_max_bytes",
    "spool_when_full",
    "spool_fsync",
    "spool_fsync_interval_ms",
];

fn default_queue_max_metrics() -> usize {
    10_000
}

/// A sink's disk spool settings (used with `when_full = "spool"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SpoolSettings {
    /// Write every batch to disk before acknowledging it.
    #[serde(default)]
    pub durable: bool,
    /// The spool's directory; default `{daemon.data_dir}/spool/{sink}`.
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
    /// Cap on the spool's files.
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// What a full spool does.
    #[serde(default)]
    pub spool_when_full: SpoolWhenFull,
    /// When written records reach the disk itself.
    #[serde(default)]
    pub spool_fsync: SpoolFsync,
    /// With `spool_fsync = "interval"`: how often.
    #[serde(default = "default_spool_fsync_interval_ms")]
    pub spool_fsync_interval_ms: u64,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            durable: false,
            spool_dir: None,
            spool_max_bytes: default_spool_max_bytes(),
            spool_when_full: SpoolWhenFull::default(),
            spool_fsync: SpoolFsync::default(),
            spool_fsync_interval_ms: default_spool_fsync_interval_ms(),
        }
    }
}

fn default_spool_max_bytes() -> u64 {
    1 << 30
}

fn default_spool_fsync_interval_ms() -> u64 {
    1_000
}

/// `spool_when_full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpoolWhenFull {
    /// Refuse input (HTTP 503, TCP stops reading) until the sink catches up.
    #[default]
    Block,
    /// Delete the oldest records and count them as dropped (`spool_full`).
    DropOldest,
}

/// `spool_fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpoolFsync {
    /// Every batch is on disk before it is acknowledged (concurrent
    /// requests share one sync).
    #[default]
    Batch,
    /// Synced every `spool_fsync_interval_ms`: survives a crash of the
    /// process, not of the machine.
    Interval,
}

/// The smallest `spool_max_bytes`: a few segments of the smallest size.
const MIN_SPOOL_BYTES: u64 = 64 << 10;

/// One `[sinks.NAME]`.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The table key.
    pub name: String,
    /// Type and own settings.
    pub kind: SinkKind,
    /// What a full queue does.
    pub when_full: WhenFull,
    /// Queue capacity in metrics.
    pub queue_max_metrics: usize,
    /// Cardinality limit: new series admitted per hour window; `None` for none.
    pub max_new_series_per_hour: Option<u64>,
    /// Disk spool settings.
    pub spool: SpoolSettings,
    /// Routing filter, as written.
    pub filter_config: FilterConfig,
    /// Routing filter, compiled.
    pub filter: Filter,
    /// Batching and retries.
    pub runner: RunnerConfig,
    /// The table as written (`${VAR}` expanded): a reload compares it.
    pub raw: toml::Table,
}

impl SinkConfig {
    /// The pipeline's view of this sink, with its spool once opened.
    pub fn spec(&self, spool: Option<conflux_spool::Spool>) -> SinkSpec {
        SinkSpec {
            name: self.name.clone(),
            filter: self.filter.clone(),
            queue: QueueConfig {
                max_metrics: self.queue_max_metrics,
                when_full: self.when_full,
            },
            spool: spool.map(|spool| SpoolSpec {
                spool,
                durable: self.spool.durable,
            }),
            max_new_series_per_hour: self.max_new_series_per_hour,
        }
    }

    /// The spool directory, when this sink spools.
    pub fn spool_dir(&self, data_dir: &Path) -> Option<PathBuf> {
        (self.when_full == WhenFull::Spool).then(|| {
            self.spool
                .spool_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("spool").join(&self.name))
        })
    }

    /// How to open this sink's spool, when it spools.
    pub fn spool_config(&self, data_dir: &Path) -> Option<conflux_spool::SpoolConfig> {
        let dir = self.spool_dir(data_dir)?;
        let s = &self.spool;
        Some(conflux_spool::SpoolConfig {
            dir,
            max_bytes: s.spool_max_bytes,
            // Space comes back a segment at a time: eight per cap keeps the
            // slack small without a file per batch.
            segment_bytes: (s.spool_max_bytes / 8).clamp(4 << 10, 64 << 20),
            when_full: match s.spool_when_full {
                SpoolWhenFull::Block => conflux_spool::WhenFull::Block,
                SpoolWhenFull::DropOldest => conflux_spool::WhenFull::DropOldest,
            },
            fsync: match s.spool_fsync {
                SpoolFsync::Batch => conflux_spool::Fsync::Batch,
                SpoolFsync::Interval => {
                    conflux_spool::Fsync::Interval(Duration::from_millis(s.spool_fsync_interval_ms))
                }
            },
        })
    }
}

/// One `[listeners.NAME]`.
#[derive(Debug, Clone)]
pub struct ListenerEntry {
    /// The table key.
    pub name: String,
    /// Type and own settings.
    pub config: ListenerConfig,
    /// The table as written (`${VAR}` expanded): a reload compares it.
    pub raw: toml::Table,
}

/// A whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[log]`.
    pub log: LogConfig,
    /// `[admin]`.
    pub admin: AdminConfig,
    /// `[daemon]`.
    pub daemon: DaemonConfig,
    /// `[listeners.*]`, by name.
    pub listeners: Vec<ListenerEntry>,
    /// `[sinks.*]`, by name.
    pub sinks: Vec<SinkConfig>,
    /// `[log]`, `[admin]` and `[daemon]` as written: a reload, which does
    /// not apply them, compares them to warn.
    pub process_raw: toml::Table,
}

const TOP_KEYS: &[&str] = &["log", "admin", "daemon", "listeners", "sinks"];

/// Deserialize `table` into `T`, recording a problem at `at` on failure.
fn section<T: DeserializeOwned + Default>(
    table: Option<toml::Value>,
    at: &str,
    problems: &mut Vec<Problem>,
) -> T {
    match table {
        None => T::default(),
        Some(v) => v.try_into().unwrap_or_else(|e: toml::de::Error| {
            problems.push(Problem {
                at: at.to_owned(),
                message: tidy(&e),
            });
            T::default()
        }),
    }
}

/// A toml error as one line, without the source excerpt of value errors.
fn tidy(e: &toml::de::Error) -> String {
    e.message().trim().replace('\n', " ")
}

/// Listeners sharing an HTTP port share its TLS and allow-list: a problem
/// when they configure different ones.
fn differing_security<'a>(
    mut listeners: impl Iterator<Item = &'a ListenerEntry>,
    addr: SocketAddr,
) -> Option<String> {
    let first = listeners.next()?;
    let other = listeners.find(|l| {
        l.config.tls() != first.config.tls()
            || l.config.allowed_networks() != first.config.allowed_networks()
    })?;
    Some(format!(
        "`{}` and `{}` share address {addr} but differ in `tls` or `allowed_networks`; one port has one certificate and one allow-list",
        first.name, other.name
    ))
}

/// Replace `${NAME}` in every string under `value` by the environment
/// variable `NAME`, so that secrets need not live in the file (`password =
/// "${INFLUX_PASSWORD}"`). `$${` stands for a literal `${`; any other `$` is
/// kept. An unset variable is a problem at `at` (the dotted key path), never
/// an empty string.
fn expand_env(
    value: &mut toml::Value,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match value {
        toml::Value::String(s) if s.contains('$') => match expand_str(s, env) {
            Ok(expanded) => *s = expanded,
            Err(message) => problems.push(Problem {
                at: at.to_owned(),
                message,
            }),
        },
        toml::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                expand_env(v, &format!("{at}[{i}]"), env, problems);
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                expand_env(v, &format!("{at}.{k}"), env, problems);
            }
        }
        _ => {}
    }
}

fn expand_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err("`${` without a closing `}`".to_owned());
            };
            let name = &after[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`${{{name}}}`: a variable name is letters, digits and `_`"
                ));
            }
            match env(name) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("environment variable `{name}` is not set")),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Deserialize a component table (with `type` removed) into its config struct.
pub fn component<T: DeserializeOwned>(table: toml::Table) -> Result<T, String> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| tidy(&e))
}

impl Config {
    /// Parse and validate `text`.
    ///
    /// # Errors
    /// Every problem found, each naming its component.
    pub fn parse(text: &str) -> Result<Config, Problems> {
        let root: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            Problems(vec![Problem {
                at: String::new(),
                message: format!("invalid TOML: {}", e.to_string().trim().replace('\n', " ")),
            }])
        })?;
        Config::parse_table(root, &|name| std::env::var(name).ok())
    }

    /// Validate an already parsed TOML document, expanding `${VAR}` in every
    /// string with `env` (the process environment in [`Config::parse`]).
    ///
    /// # Errors
    /// As [`Config::parse`].
    pub fn parse_table(
        root: toml::Table,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Problems> {
        let mut problems = Vec::new();
        let mut root = root;
        for (key, value) in root.iter_mut() {
            expand_env(value, key, env, &mut problems);
        }
        for key in root.keys() {
            if !TOP_KEYS.contains(&key.as_str()) {
                problems.push(Problem {
                    at: String::new(),
                    message: format!(
                        "unknown section `{key}`, expected one of {}",
                        backticked(TOP_KEYS)
                    ),
                });
            }
        }
        let process_raw: toml::Table = ["log", "admin", "daemon"]
            .iter()
            .filter_map(|k| Some(((*k).to_owned(), root.get(*k)?.clone())))
            .collect();
        let log: LogConfig = section(root.remove("log"), "log", &mut problems);
        if let Err(e) = crate::logging::check_level(&log.level) {
            problems.push(Problem {
                at: "log.level".to_owned(),
                message: format!("not a log filter: {e}"),
            });
        }
        let admin = section(root.remove("admin"), "admin", &mut problems);
        let daemon = section(root.remove("daemon"), "daemon", &mut problems);

        let mut listeners = Vec::new();
        for (name, table) in components(root.remove("listeners"), "listeners", &mut problems) {
            let at = format!("listeners.{name}");
            let raw = table.clone();
            match parse_listener(table) {
                Ok(config) => listeners.push(ListenerEntry { name, config, raw }),
                Err(msgs) => problems.extend(msgs.into_iter().map(|message| Problem {
                    at: at.clone(),
                    message,
                })),
            }
        }
        let mut sinks = Vec::new();
        for (name, table) in components(root.remove("sinks"), "sinks", &mut problems) {
            let at = format!("sinks.{name}");
            match parse_sink(&name, table) {
                Ok(s) => sinks.push(s),
                Err(msgs) => problems.extend(msgs.into_iter().map(|message| Problem {
                    at: at.clone(),
                    message,
                })),
            }
        }
        let cfg = Config {
            log,
            admin,
            daemon,
            listeners,
            sinks,
            process_raw,
        };
        // Which listener feeds which sink is only known when every component parsed.
        let all_parsed = problems.is_empty();
        cfg.cross_check(&mut problems, all_parsed);
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(Problems(problems))
        }
    }

    /// Checks that span components: addresses, routes, inputs.
    fn cross_check(&self, problems: &mut Vec<Problem>, check_routing: bool) {
        if let Some(tls) = &self.admin.tls {
            for message in tls.problems() {
                problems.push(Problem {
                    at: "admin".to_owned(),
                    message,
                });
            }
        }
        for l in &self.listeners {
            for message in l.config.problems() {
                problems.push(Problem {
                    at: format!("listeners.{}", l.name),
                    message,
                });
            }
        }
        // Two listeners on one address: only HTTP listeners may share (their
        // routes merge); port 0 always means a fresh port.
        let mut by_addr: BTreeMap<(SocketAddr, bool), Vec<(&str, Transport)>> = BTreeMap::new();
        for l in &self.listeners {
            for Socket { address, transport } in l.config.sockets() {
                if address.port() == 0 {
                    continue;
                }
                let is_udp = transport == Transport::Udp;
                by_addr
                    .entry((address, is_udp))
                    .or_default()
                    .push((&l.name, transport));
            }
        }
        if self.admin.enabled && self.admin.address.port() != 0 {
            by_addr
                .entry((self.admin.address, false))
                .or_default()
                .push(("admin", Transport::Tcp));
        }
        for ((addr, is_udp), users) in &by_addr {
            if users.len() < 2 {
                continue;
            }
            let all_http = users.iter().all(|(_, t)| *t == Transport::Http);
            let mut names: Vec<&str> = users.iter().map(|(n, _)| *n).collect();
            names.dedup();
            if !all_http || names.len() < users.len() {
                problems.push(Problem {
                    at: String::new(),
                    message: format!(
                        "{} share address {addr}/{}; only HTTP listeners with distinct routes may share one",
                        names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" and "),
                        if *is_udp { "udp" } else { "tcp" }
                    ),
                });
            } else if let Some(message) = differing_security(
                self.listeners
                    .iter()
                    .filter(|l| names.contains(&l.name.as_str())),
                *addr,
            ) {
                problems.push(Problem {
                    at: String::new(),
                    message,
                });
            } else if let Err(conflicts) = crate::listeners::check_shared_routes(
                self.listeners
                    .iter()
                    .filter(|l| names.contains(&l.name.as_str())),
            ) {
                // One line per pair of listeners, listing the paths both claim.
                let mut pairs: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
                for c in conflicts {
                    pairs
                        .entry((c.first, c.second))
                        .or_default()
                        .push(format!("`{}`", c.path));
                }
                for ((first, second), paths) in pairs {
                    problems.push(Problem {
                        at: String::new(),
                        message: format!(
                            "`{first}` and `{second}` share address {addr} and both serve {}; give one of them another address",
                            paths.join(", ")
                        ),
                    });
                }
            }
        }

        // Two sinks in one spool directory would read each other's records.
        let mut spool_dirs: BTreeMap<PathBuf, &str> = BTreeMap::new();
        for s in &self.sinks {
            if let Some(dir) = s.spool_dir(&self.daemon.data_dir)
                && let Some(other) = spool_dirs.insert(dir.clone(), &s.name)
            {
                problems.push(Problem {
                    at: format!("sinks.{}", s.name),
                    message: format!(
                        "spool directory {} is also used by sink `{other}`",
                        dir.display()
                    ),
                });
            }
        }

        if !check_routing {
            return;
        }
        for s in &self.sinks {
            let at = format!("sinks.{}", s.name);
            for pattern in &s.filter_config.inputs {
                let one = Filter::new(&FilterConfig {
                    inputs: vec![pattern.clone()],
                    ..FilterConfig::default()
                });
                if let Ok(f) = one
                    && !self.listeners.iter().any(|l| f.accepts_input(&l.name))
                {
                    problems.push(Problem {
                        at: at.clone(),
                        message: format!("`inputs` entry `{pattern}` matches no listener"),
                    });
                }
            }
        }
        for l in &self.listeners {
            if !self.sinks.iter().any(|s| s.filter.accepts_input(&l.name)) {
                problems.push(Problem {
                    at: format!("listeners.{}", l.name),
                    message:
                        "feeds no sink: add a sink, or list this listener in a sink's `inputs`"
                            .to_owned(),
                });
            }
        }
    }
}

fn backticked(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `[listeners]` or `[sinks]` table as (name, table) pairs.
fn components(
    v: Option<toml::Value>,
    kind: &str,
    problems: &mut Vec<Problem>,
) -> Vec<(String, toml::Table)> {
    let Some(v) = v else { return Vec::new() };
    let toml::Value::Table(t) = v else {
        problems.push(Problem {
            at: kind.to_owned(),
            message: format!("must be a table of named components, like [{kind}.NAME]"),
        });
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, v) in t {
        match v {
            toml::Value::Table(t) => out.push((name, t)),
            _ => problems.push(Problem {
                at: format!("{kind}.{name}"),
                message: format!("must be a table, like [{kind}.{name}]"),
            }),
        }
    }
    out
}

/// Take `type` out of a component table.
fn take_type(table: &mut toml::Table, known: &[&str]) -> Result<String, String> {
    match table.remove("type") {
        Some(toml::Value::String(t)) => Ok(t),
        Some(_) => Err("`type` must be a string".to_owned()),
        None => Err(format!(
            "missing `type`, expected one of {}",
            backticked(known)
        )),
    }
}

fn parse_listener(mut table: toml::Table) -> Result<ListenerConfig, Vec<String>> {
    let kind = take_type(&mut table, ListenerConfig::TYPES).map_err(|e| vec![e])?;
    ListenerConfig::parse(&kind, table)
}

const SINK_TYPES: &[&str] = &[
    "file",
    "blackhole",
    "influx",
    "prometheus",
    "graphite",
    "opentsdb",
    "kairosdb",
];

fn parse_sink(name: &str, mut table: toml::Table) -> Result<SinkConfig, Vec<String>> {
    let mut errors = Vec::new();
    let raw = table.clone();
    let kind_name = take_type(&mut table, SINK_TYPES).map_err(|e| vec![e])?;
    // Split the table: shared keys go to their structs, the rest to the type's own.
    let mut take = |keys: &[&str]| {
        let mut t = toml::Table::new();
        for k in keys {
            if let Some(v) = table.remove(*k) {
                t.insert((*k).to_owned(), v);
            }
        }
        t
    };
    let queue_t = take(QUEUE_KEYS);
    let filter_t = take(FilterConfig::KEYS);
    let runner_t = take(RunnerConfig::KEYS);
    let queue: SinkQueueConfig = component(queue_t).unwrap_or_else(|e| {
        errors.push(e);
        SinkQueueConfig {
            when_full: WhenFull::Block,
            queue_max_metrics: default_queue_max_metrics(),
            max_new_series_per_hour: None,
            spool: SpoolSettings::default(),
        }
    });
    let filter_config: FilterConfig = component(filter_t).unwrap_or_else(|e| {
        errors.push(e);
        FilterConfig::default()
    });
    let runner: RunnerConfig = component(runner_t).unwrap_or_else(|e| {
        errors.push(e);
        RunnerConfig::default()
    });
    errors.extend(runner.problems());
    if queue.queue_max_metrics == 0 {
        errors.push("`queue_max_metrics` must be at least 1".to_owned());
    }
    if queue.max_new_series_per_hour == Some(0) {
        errors.push(
            "`max_new_series_per_hour` must be at least 1 (leave it out for no limit)".to_owned(),
        );
    }
    if queue.spool.durable && queue.when_full != WhenFull::Spool {
        errors.push("`durable = true` needs `when_full = \"spool\"`".to_owned());
    }
    if queue.when_full == WhenFull::Spool {
        if queue.spool.spool_max_bytes < MIN_SPOOL_BYTES {
            errors.push(format!(
                "`spool_max_bytes` must be at least {MIN_SPOOL_BYTES}"
            ));
        }
        if queue.spool.spool_fsync_interval_ms == 0 {
            errors.push("`spool_fsync_interval_ms` must be at least 1".to_owned());
        }
    }
    if runner.batch_max_metrics > queue.queue_max_metrics {
        errors.push(format!(
            "`batch_max_metrics` ({}) must not exceed `queue_max_metrics` ({})",
            runner.batch_max_metrics, queue.queue_max_metrics
        ));
    }
    let filter = match Filter::new(&filter_config) {
        Ok(f) => f,
        Err(es) => {
            errors.extend(es.into_iter().map(|e| e.to_string()));
            Filter::default()
        }
    };
    let kind = match kind_name.as_str() {
        "file" => component::<file::Config>(table).map(|c| {
            errors.extend(c.problems());
            SinkKind::File(c)
        }),
        "blackhole" => component::<blackhole::Config>(table).map(SinkKind::Blackhole),
        "influx" => network(table, influx::check, &mut errors).map(|(n, c)| SinkKind::Influx(n, c)),
        "prometheus" => {
            network(table, prometheus::check, &mut errors).map(|(n, c)| SinkKind::Prometheus(n, c))
        }
        "graphite" => {
            network(table, graphite::check, &mut errors).map(|(n, c)| SinkKind::Graphite(n, c))
        }
        "opentsdb" => {
            network(table, opentsdb::check, &mut errors).map(|(n, c)| SinkKind::Opentsdb(n, c))
        }
        "kairosdb" => {
            network(table, kairosdb::check, &mut errors).map(|(n, c)| SinkKind::Kairosdb(n, c))
        }
        other => Err(format!(
            "unknown type `{other}`, expected one of {}",
            backticked(SINK_TYPES)
        )),
    };
    let kind = match kind {
        Ok(k) => k,
        Err(e) => {
            errors.push(e);
            return Err(errors);
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(SinkConfig {
        name: name.to_owned(),
        kind,
        when_full: queue.when_full,
        queue_max_metrics: queue.queue_max_metrics,
        max_new_series_per_hour: queue.max_new_series_per_hour,
        spool: queue.spool,
        filter_config,
        filter,
        runner,
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with_env(src: &str, vars: &[(&str, &str)]) -> Result<Config, Vec<String>> {
        let root: toml::Table = src.parse().unwrap();
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        Config::parse_table(root, &env).map_err(|p| p.0.iter().map(ToString::to_string).collect())
    }

    const WITH_SECRETS: &str = r#"
[listeners.edge]
type = "influx"
address = "127.0.0.1:0"
credentials = [{ username = "telegraf", password = "${EDGE_PW}" }, { token = "pre-${TOKEN}-$${NOT}-$5" }]
[sinks.out]
type = "file"
path = "${OUT_DIR}/metrics.lp"
"#;

    #[test]
    fn expands_environment_variables_in_every_string() {
        let cfg = parse_with_env(
            WITH_SECRETS,
            &[
                ("EDGE_PW", "s3cret"),
                ("TOKEN", "abc"),
                ("OUT_DIR", "/var/x"),
            ],
        )
        .unwrap();
        let crate::listeners::ListenerConfig::Influx(influx) = &cfg.listeners[0].config else {
            panic!("not influx");
        };
        assert_eq!(influx.credentials[0].password.as_deref(), Some("s3cret"));
        assert_eq!(
            influx.credentials[1].token.as_deref(),
            Some("pre-abc-${NOT}-$5")
        );
        assert!(format!("{:?}", cfg.sinks[0]).contains("/var/x/metrics.lp"));
    }

    #[test]
    fn an_unset_variable_is_a_problem_naming_the_key() {
        let p = parse_with_env(WITH_SECRETS, &[("TOKEN", "abc")]).unwrap_err();
        assert!(
            p.iter().any(|s| s
                == "listeners.edge.credentials[0].password: environment variable `EDGE_PW` is not set"),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|s| s.contains("sinks.out.path") && s.contains("`OUT_DIR`")),
            "{p:#?}"
        );
        assert_eq!(
            expand_str("a${", &|_| None).unwrap_err(),
            "`${` without a closing `}`"
        );
        assert!(expand_str("${1X}", &|_| Some(String::new())).is_err());
        assert_eq!(expand_str("$$x$", &|_| None).unwrap(), "$$x$");
    }

    fn problems(src: &str) -> Vec<String> {
        match Config::parse(src) {
            Ok(_) => Vec::new(),
            Err(p) => p.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_embedded_default_is_valid() {
        let cfg = Config::parse(DEFAULT_CONFIG).unwrap();
        assert!(!cfg.listeners.is_empty());
        assert!(!cfg.sinks.is_empty());
    }

    #[test]
    fn reports_unknown_keys_with_component_names() {
        let p = problems(
            r#"
[listeners.edge]
type = "influx"
adress = "127.0.0.1:0"
[sinks.out]
type = "file"
path = "x"
formt = "json"
[sinks.other]
type = "file"
path = "y"
when_ful = "block"
"#,
        );
        assert!(
            p.iter()
                .any(|s| s.starts_with("listeners.edge: ") && s.contains("adress")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|s| s.starts_with("sinks.out: ") && s.contains("formt")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|s| s.starts_with("sinks.other: ") && s.contains("when_ful")),
            "{p:#?}"
        );
    }

    #[test]
    fn reports_unknown_types_and_sections() {
        let p = problems(
            r#"
[metrics]
x = 1
[sinks.a]
type = "kafka"
[sinks.b]
path = "x"
"#,
        );
        assert!(
            p.iter().any(|s| s.contains("unknown section `metrics`")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|s| s.starts_with("sinks.a: unknown type `kafka`")),
            "{p:#?}"
        );
        assert!(
            p.iter().any(|s| s.starts_with("sinks.b: missing `type`")),
            "{p:#?}"
        );
    }

    #[test]
    fn rejects_inputs_that_match_nothing_and_orphan_listeners() {
        let p = problems(
            r#"
[listeners.edge]
type = "influx"
address = "127.0.0.1:0"
[sinks.out]
type = "blackhole"
inputs = ["egde"]
"#,
        );
        assert!(
            p.iter()
                .any(|s| s.contains("`inputs` entry `egde` matches no listener")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|s| s.starts_with("listeners.edge: feeds no sink")),
            "{p:#?}"
        );
    }

    #[test]
    fn bad_values_are_each_reported() {
        let p = problems(
            r#"
[listeners.edge]
type = "influx"
address = "127.0.0.1:0"
[sinks.out]
type = "blackhole"
queue_max_metrics = 10
batch_max_metrics = 20
namepass = ["[x"]
when_full = "explode"
"#,
        );
        assert!(p.iter().any(|s| s.contains("explode")), "{p:#?}");
        assert!(
            p.iter().any(|s| s.contains("invalid pattern `[x`")),
            "{p:#?}"
        );
    }

    #[test]
    fn spool_settings_reach_the_spool_and_bad_ones_are_reported() {
        let cfg = Config::parse(
            r#"
[daemon]
data_dir = "/var/lib/conflux"
[listeners.edge]
type = "influx"
address = "127.0.0.1:0"
[sinks.a]
type = "blackhole"
when_full = "spool"
durable = true
spool_max_bytes = 8388608
spool_when_full = "drop_oldest"
spool_fsync = "interval"
spool_fsync_interval_ms = 250
[sinks.b]
type = "blackhole"
"#,
        )
        .unwrap();
        let a = &cfg.sinks[0];
        let sc = a.spool_config(&cfg.daemon.data_dir).unwrap();
        assert_eq!(sc.dir, Path::new("/var/lib/conflux/spool/a"));
        assert_eq!(sc.max_bytes, 8 << 20);
        assert_eq!(sc.segment_bytes, 1 << 20);
        assert_eq!(sc.when_full, conflux_spool::WhenFull::DropOldest);
        assert_eq!(
            sc.fsync,
            conflux_spool::Fsync::Interval(Duration::from_millis(250))
        );
        assert!(cfg.sinks[1].spool_config(&cfg.daemon.data_dir).is_none());

        let p = problems(
            r#"
[listeners.edge]
type = "influx"
address = "127.0.0.1:0"
[sinks.a]
type = "blackhole"
durable = true
[sinks.b]
type = "blackhole"
when_full = "spool"
spool_max_bytes = 1000
spool_dir = "q"
[sinks.c]
type = "blackhole"
when_full = "spool"
spool_dir = "q"
spool_fsync = "never"
"#,
        );
        assert!(
            p.iter()
                .any(|s| s == "sinks.a: `durable = true` needs `when_full = \"spool\"`"),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|s| s.starts_with("sinks.b: `spool_max_bytes` must be at least")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|s| s.starts_with("sinks.c: ") && s.contains("never")),
            "{p:#?}"
        );
    }

    #[test]
    fn max_new_series_per_hour_reaches_the_spec_and_zero_is_refused() {
        let cfg = Config::parse(
            r#"
[listeners.edge]
type = "influx"
address = "127.0.0.1:0"
[sinks.a]
type = "file"
path = "a.lp"
max_new_series_per_hour = 5000
[sinks.b]
type = "blackhole"
"#,
        )
        .unwrap();
        assert_eq!(cfg.sinks[0].max_new_series_per_hour, Some(5000));
        assert_eq!(cfg.sinks[0].spec(None).max_new_series_per_hour, Some(5000));
        assert_eq!(cfg.sinks[1].spec(None).max_new_series_per_hour, None);

        let p = problems(
            r#"
[listeners.edge]
type = "influx"
address = "127.0.0.1:0"
[sinks.a]
type = "blackhole"
max_new_series_per_hour = 0
[sinks.b]
type = "blackhole"
max_new_series_per_hour = -1
[sinks.c]
type = "blackhole"
max_new_series_per_hour = "many"
"#,
        );
        assert!(
            p.iter().any(|s| s
                == "sinks.a: `max_new_series_per_hour` must be at least 1 (leave it out for no limit)"),
            "{p:#?}"
        );
        assert!(p.iter().any(|s| s.starts_with("sinks.b: ")), "{p:#?}");
        assert!(p.iter().any(|s| s.starts_with("sinks.c: ")), "{p:#?}");
    }

    #[test]
    fn two_sinks_cannot_share_a_spool_directory() {
        let p = problems(
            r#"
[listeners.edge]
type = "influx"
address = "127.0.0.1:0"
[sinks.b]
type = "blackhole"
when_full = "spool"
spool_dir = "q"
[sinks.c]
type = "blackhole"
when_full = "spool"
spool_dir = "q"
"#,
        );
        assert_eq!(
            p,
            ["sinks.c: spool directory q is also used by sink `b`"],
            "{p:#?}"
        );
    }

    #[test]
    fn syntax_errors_are_one_problem() {
        let p = problems("[listeners\n");
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("invalid TOML"), "{p:#?}");
    }
}
