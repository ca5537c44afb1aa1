//! The listener types the daemon knows, and how each starts.

use conflux_core::Pipeline;
use conflux_core::component::{CancellationToken, ListenerContext};
use conflux_net::ListenerError;
use conflux_net::http::{RouteConflict, Router};
use conflux_net::listener::{Socket, Started};

use crate::config::{ListenerEntry, component};

/// A listener's type and its own settings.
#[derive(Debug, Clone)]
pub enum ListenerConfig {
    /// `type = "influx"`: line protocol over HTTP (and optionally raw TCP/UDP).
    Influx(conflux_influx::listener::Config),
    /// `type = "opentsdb"`: telnet `put` and HTTP `/api/put` on one port.
    Opentsdb(conflux_opentsdb::listener::Config),
    /// `type = "graphite"`: plaintext over TCP and UDP, pickle.
    Graphite(conflux_graphite::listener::Config),
    /// `type = "kairosdb"`: KairosDB's REST JSON over HTTP.
    Kairosdb(conflux_kairosdb::listener::Config),
}

impl ListenerConfig {
    /// Every `type` known.
    pub const TYPES: &'static [&'static str] = &["influx", "opentsdb", "graphite", "kairosdb"];

    /// Parse the settings of a listener of type `kind` (`type` already removed).
    ///
    /// # Errors
    /// Each problem found.
    pub fn parse(kind: &str, table: toml::Table) -> Result<ListenerConfig, Vec<String>> {
        match kind {
            "influx" => component(table)
                .map(ListenerConfig::Influx)
                .map_err(|e| vec![e]),
            "opentsdb" => component(table)
                .map(ListenerConfig::Opentsdb)
                .map_err(|e| vec![e]),
            "graphite" => component(table)
                .map(ListenerConfig::Graphite)
                .map_err(|e| vec![e]),
            "kairosdb" => component(table)
                .map(ListenerConfig::Kairosdb)
                .map_err(|e| vec![e]),
            other => Err(vec![format!(
                "unknown type `{other}`, expected one of {}",
                Self::TYPES
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )]),
        }
    }

    /// The dialect label.
    pub fn dialect(&self) -> &'static str {
        match self {
            ListenerConfig::Influx(_) => "influx",
            ListenerConfig::Opentsdb(_) => "opentsdb",
            ListenerConfig::Graphite(_) => "graphite",
            ListenerConfig::Kairosdb(_) => "kairosdb",
        }
    }

    /// Problems with the values.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ListenerConfig::Influx(c) => c.problems(),
            ListenerConfig::Opentsdb(c) => c.problems(),
            ListenerConfig::Graphite(c) => c.problems(),
            ListenerConfig::Kairosdb(c) => c.problems(),
        }
    }

    /// Its `tls` table.
    pub fn tls(&self) -> Option<&conflux_net::tls::TlsConfig> {
        match self {
            ListenerConfig::Influx(c) => c.tls.as_ref(),
            ListenerConfig::Opentsdb(c) => c.tls.as_ref(),
            ListenerConfig::Graphite(c) => c.tls.as_ref(),
            ListenerConfig::Kairosdb(c) => c.tls.as_ref(),
        }
    }

    /// Its `allowed_networks`.
    pub fn allowed_networks(&self) -> &conflux_net::allow::AllowList {
        match self {
            ListenerConfig::Influx(c) => &c.allowed_networks,
            ListenerConfig::Opentsdb(c) => &c.allowed_networks,
            ListenerConfig::Graphite(c) => &c.allowed_networks,
            ListenerConfig::Kairosdb(c) => &c.allowed_networks,
        }
    }

    /// The sockets it will open.
    pub fn sockets(&self) -> Vec<Socket> {
        match self {
            ListenerConfig::Influx(c) => c.sockets(),
            ListenerConfig::Opentsdb(c) => c.sockets(),
            ListenerConfig::Graphite(c) => c.sockets(),
            ListenerConfig::Kairosdb(c) => c.sockets(),
        }
    }

    /// Its HTTP routes (for checking that listeners sharing a port do not clash).
    pub fn router(&self, ctx: ListenerContext) -> Option<Router> {
        match self {
            ListenerConfig::Influx(c) => Some(conflux_influx::listener::router(c, ctx)),
            ListenerConfig::Opentsdb(c) => conflux_opentsdb::listener::router(c, ctx),
            ListenerConfig::Graphite(c) => conflux_graphite::listener::router(c, ctx),
            ListenerConfig::Kairosdb(c) => conflux_kairosdb::listener::router(c, ctx),
        }
    }

    /// Bind its TCP/UDP sockets and hand over its HTTP routes.
    ///
    /// # Errors
    /// A socket that cannot be bound.
    pub async fn start(&self, ctx: ListenerContext) -> Result<Started, ListenerError> {
        match self {
            ListenerConfig::Influx(c) => conflux_influx::listener::start(c, ctx).await,
            ListenerConfig::Opentsdb(c) => conflux_opentsdb::listener::start(c, ctx).await,
            ListenerConfig::Graphite(c) => conflux_graphite::listener::start(c, ctx).await,
            ListenerConfig::Kairosdb(c) => conflux_kairosdb::listener::start(c, ctx).await,
        }
    }
}

/// Whether the HTTP routes of `listeners` can share one port.
///
/// # Errors
/// Each route claimed twice.
pub fn check_shared_routes<'a>(
    listeners: impl Iterator<Item = &'a ListenerEntry>,
) -> Result<(), Vec<RouteConflict>> {
    let (pipeline, _rx) = Pipeline::new(Vec::new());
    let mut merged = Router::new();
    let mut conflicts = Vec::new();
    for l in listeners {
        let ctx = ListenerContext {
            name: l.name.as_str().into(),
            dialect: l.config.dialect(),
            ingest: pipeline.ingest(&l.name),
            shutdown: CancellationToken::new(),
        };
        if let Some(r) = l.config.router(ctx)
            && let Err(cs) = merged.merge(r)
        {
            conflicts.extend(cs);
        }
    }
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(conflicts)
    }
}
