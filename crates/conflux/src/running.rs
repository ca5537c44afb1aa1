//! What runs: sinks with their runners, listeners with their sockets, the
//! HTTP servers listeners share, and how a new configuration is applied to
//! them without a restart (SIGHUP).
//!
//! A reload compares each component's table as written. Unchanged
//! components are not touched: their connections and queues carry on.
//! - A sink whose filter keys (`inputs`, `namepass`, ...) or
//!   `max_new_series_per_hour` alone changed keeps its queue and runner.
//! - A sink with any other change gets a new queue and runner; the old
//!   runner finishes the send in progress and hands its queue and unsent
//!   batches to the new one, which sends them first. Its spool, if any, is
//!   handed over open (spool settings themselves cannot change in a reload).
//! - A removed sink leaves the table; its runner sends what is queued and
//!   stops (bounded by `shutdown_timeout_ms`, as at shutdown).
//! - A changed listener is stopped (it finishes what it read) and started
//!   again; listeners sharing an HTTP port with a changed one restart with
//!   it. Added ones start, removed ones stop.
//!
//! Everything that can fail (parsing, building sinks, opening spools,
//! binding sockets) happens before the sink table changes; a listener that
//! cannot bind undoes the listener changes, and the old configuration keeps
//! running.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use conflux_core::Pipeline;
use conflux_core::component::{CancellationToken, ListenerContext};
use conflux_core::pipeline::SinkChange;
use conflux_net::Labels;
use conflux_net::allow::AllowList;
use conflux_net::http::{HttpConfig, HttpServer, Router};
use conflux_net::listener::Transport;
use conflux_net::tls::{ServerTls, TlsConfig};
use conflux_sinks::Stop;
use conflux_sinks::runner::Leftover;
use conflux_spool::Spool;
use tokio::task::{JoinHandle, JoinSet};

use crate::config::{Config, ListenerEntry, SinkConfig};
use crate::sinks;

/// The running daemon's components.
pub struct Running {
    /// The configuration in force (`[log]`, `[admin]`, `[daemon]` as started).
    pub cfg: Config,
    pipeline: Pipeline,
    /// The daemon's sink stop; each sink has a child of it.
    stop: Stop,
    /// The daemon's listener shutdown; each listener has a child of it.
    shutdown: CancellationToken,
    sinks: BTreeMap<String, RunningSink>,
    listeners: BTreeMap<String, RunningListener>,
    http: Vec<RunningHttp>,
    /// Stopped listeners finishing their connections: waited for at shutdown.
    retired_listeners: JoinSet<()>,
    /// Removed sinks sending what they hold: waited for at shutdown.
    retired_sinks: JoinSet<()>,
}

struct RunningSink {
    stop: Stop,
    task: JoinHandle<Option<Leftover>>,
    spool: Option<Spool>,
}

struct RunningListener {
    stop: CancellationToken,
    tasks: JoinSet<()>,
    certificates: Vec<ServerTls>,
}

struct RunningHttp {
    members: Vec<String>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    certificate: Option<ServerTls>,
}

type Run = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Listeners started and bound, not yet running.
struct Bound {
    listeners: Vec<BoundListener>,
    http: Vec<BoundHttp>,
}

struct BoundListener {
    name: String,
    stop: CancellationToken,
    runs: Vec<Run>,
    certificates: Vec<ServerTls>,
}

struct BoundHttp {
    members: Vec<String>,
    stop: CancellationToken,
    server: HttpServer,
    router: Router,
    certificate: Option<ServerTls>,
}

/// What a reload changed, for the log.
#[derive(Debug, Default)]
pub struct Applied {
    /// Listeners started (added or changed).
    pub listeners_started: Vec<String>,
    /// Listeners stopped and not started again.
    pub listeners_removed: Vec<String>,
    /// Sinks added.
    pub sinks_added: Vec<String>,
    /// Sinks replaced by a new runner that took over their queue.
    pub sinks_replaced: Vec<String>,
    /// Sinks whose filter or limit changed in place.
    pub sinks_refiltered: Vec<String>,
    /// Sinks removed.
    pub sinks_removed: Vec<String>,
    /// The new log level, when it changed.
    pub log_level: Option<String>,
}

/// The `[log]`, `[admin]` and `[daemon]` keys that only a restart applies:
/// all but `log.level`.
fn restart_keys(process_raw: &toml::Table) -> toml::Table {
    let mut t = process_raw.clone();
    if let Some(toml::Value::Table(log)) = t.get_mut("log") {
        log.remove("level");
        if log.is_empty() {
            t.remove("log");
        }
    }
    t
}

/// Keys a sink can change without a new queue or runner.
const ROUTING_KEYS: &[&str] = &[
    "inputs",
    "namepass",
    "namedrop",
    "tagpass",
    "tagdrop",
    "max_new_series_per_hour",
];

/// How long a reload waits for a stopped listener's port to be free.
const REBIND_WAIT: Duration = Duration::from_secs(5);

impl Running {
    /// Build every sink, start their runners, bind every listener.
    ///
    /// # Errors
    /// What stopped a component from starting.
    pub async fn start(cfg: Config) -> anyhow::Result<Running> {
        // Sinks first: a bad output path fails before any port is opened.
        let mut built = Vec::with_capacity(cfg.sinks.len());
        for s in &cfg.sinks {
            built.push(sinks::build(s).map_err(|e| anyhow!("sink `{}`: {e}", s.name))?);
        }
        let mut specs = Vec::with_capacity(cfg.sinks.len());
        let mut spools = Vec::with_capacity(cfg.sinks.len());
        for s in &cfg.sinks {
            let spool = open_spool(s, &cfg.daemon.data_dir)?;
            spools.push(spool.clone());
            specs.push(s.spec(spool));
        }
        let (pipeline, receivers) = Pipeline::new(specs);
        let mut running = Running {
            pipeline,
            stop: Stop::default(),
            shutdown: CancellationToken::new(),
            sinks: BTreeMap::new(),
            listeners: BTreeMap::new(),
            http: Vec::new(),
            retired_listeners: JoinSet::new(),
            retired_sinks: JoinSet::new(),
            cfg: cfg.clone(),
        };
        for (((s, start), rx), spool) in cfg.sinks.iter().zip(built).zip(receivers).zip(spools) {
            let stop = running.stop.child();
            let task = start(rx, None, stop.clone());
            running
                .sinks
                .insert(s.name.clone(), RunningSink { stop, task, spool });
        }
        let all: Vec<&ListenerEntry> = cfg.listeners.iter().collect();
        let bound = running.bind(&all, &BTreeSet::new()).await?;
        running.spawn(bound);
        Ok(running)
    }

    /// Apply `new`: see the module doc. On error nothing changed.
    ///
    /// # Errors
    /// Why `new` cannot be applied; the running configuration stays.
    pub async fn apply(&mut self, new: Config) -> anyhow::Result<Applied> {
        let mut applied = Applied::default();
        if restart_keys(&new.process_raw) != restart_keys(&self.cfg.process_raw) {
            tracing::warn!(
                "changes to [admin], [daemon] or the log format take effect at the next restart, not on reload"
            );
        }

        // Sinks: decide and build (fallible), change nothing yet.
        let data_dir = self.cfg.daemon.data_dir.clone();
        let mut changes = Vec::with_capacity(new.sinks.len());
        // A name already running is replaced (handover), a new one started.
        let mut starts: Vec<(String, sinks::Start, Option<Spool>)> = Vec::new();
        for s in &new.sinks {
            let old = self.cfg.sinks.iter().find(|o| o.name == s.name);
            match old {
                Some(o) if without(&o.raw, ROUTING_KEYS) == without(&s.raw, ROUTING_KEYS) => {
                    if o.raw != s.raw {
                        applied.sinks_refiltered.push(s.name.clone());
                    }
                    changes.push(SinkChange::Keep {
                        name: s.name.clone(),
                        filter: s.filter.clone(),
                        max_new_series_per_hour: s.max_new_series_per_hour,
                    });
                }
                Some(o) => {
                    let spooled = |c: &SinkConfig| c.spool_dir(&data_dir).is_some();
                    if (spooled(o) || spooled(s))
                        && (o.when_full != s.when_full
                            || o.spool != s.spool
                            || o.spool_dir(&data_dir) != s.spool_dir(&data_dir))
                    {
                        bail!(
                            "sink `{}`: `when_full` and the spool keys of a sink with a spool cannot change in a reload; restart to apply them",
                            s.name
                        );
                    }
                    let start = sinks::build(s).map_err(|e| anyhow!("sink `{}`: {e}", s.name))?;
                    let spool = self.sinks.get(&s.name).and_then(|r| r.spool.clone());
                    changes.push(SinkChange::New(s.spec(spool.clone())));
                    starts.push((s.name.clone(), start, spool));
                    applied.sinks_replaced.push(s.name.clone());
                }
                None => {
                    let start = sinks::build(s).map_err(|e| anyhow!("sink `{}`: {e}", s.name))?;
                    let spool = open_spool(s, &data_dir)?;
                    changes.push(SinkChange::New(s.spec(spool.clone())));
                    starts.push((s.name.clone(), start, spool));
                    applied.sinks_added.push(s.name.clone());
                }
            }
        }
        for o in &self.cfg.sinks {
            if !new.sinks.iter().any(|s| s.name == o.name) {
                applied.sinks_removed.push(o.name.clone());
            }
        }

        // Listeners: which restart, then stop and start them (undone on failure).
        let changed = restart_set(&self.cfg.listeners, &new.listeners);
        let stopped: Vec<ListenerEntry> = self
            .cfg
            .listeners
            .iter()
            .filter(|l| changed.contains(&l.name))
            .cloned()
            .collect();
        let to_start: Vec<&ListenerEntry> = new
            .listeners
            .iter()
            .filter(|l| changed.contains(&l.name))
            .collect();
        // Ports the stopped listeners free a moment after being told to stop.
        let freed: BTreeSet<SocketAddr> = stopped
            .iter()
            .flat_map(|l| l.config.sockets())
            .map(|s| s.address)
            .collect();
        let stopping = self.stop_listeners(&changed);
        match self.bind(&to_start, &freed).await {
            Ok(bound) => {
                self.retired_listeners.spawn(stopping);
                self.spawn(bound);
            }
            Err(e) => {
                // Put the old ones back once their sockets are closed.
                stopping.await;
                let old: Vec<&ListenerEntry> = stopped.iter().collect();
                match self.bind(&old, &freed).await {
                    Ok(bound) => self.spawn(bound),
                    Err(e2) => {
                        tracing::error!(
                            error = format!("{e2:#}"),
                            "the old listeners could not be started again; they stay down until a reload starts them"
                        );
                        // Not running: the next reload sees them as new.
                        self.cfg.listeners.retain(|l| !changed.contains(&l.name));
                    }
                }
                return Err(e);
            }
        }
        applied.listeners_started = to_start.iter().map(|l| l.name.clone()).collect();
        applied.listeners_removed = stopped
            .iter()
            .filter(|l| !new.listeners.iter().any(|n| n.name == l.name))
            .map(|l| l.name.clone())
            .collect();

        // Sinks: swap the table, then the runners. Nothing here fails.
        let receivers = self
            .pipeline
            .reconfigure(changes)
            .context("reconfigure the pipeline")?;
        for ((name, start, spool), rx) in starts.into_iter().zip(receivers) {
            let stop = self.stop.child();
            let task = match self.sinks.remove(&name) {
                Some(old) => {
                    old.stop.handover.cancel();
                    let new_stop = stop.clone();
                    let name = name.clone();
                    tokio::spawn(async move {
                        let leftover = old.task.await.ok().flatten();
                        match start(rx, leftover, new_stop).await {
                            Ok(left) => left,
                            Err(e) => {
                                tracing::error!(sink = %name, error = %e, "sink runner failed");
                                None
                            }
                        }
                    })
                }
                None => start(rx, None, stop.clone()),
            };
            self.sinks.insert(name, RunningSink { stop, task, spool });
        }
        for name in &applied.sinks_removed {
            if let Some(old) = self.sinks.remove(name) {
                let timeout = Duration::from_millis(self.cfg.daemon.shutdown_timeout_ms);
                self.retired_sinks
                    .spawn(retire_sink(name.clone(), old, timeout));
            }
        }
        self.cfg.listeners = new.listeners;
        self.cfg.sinks = new.sinks;
        // Last: it cannot fail (the level was checked with the file).
        if new.log.level != self.cfg.log.level {
            crate::logging::set_level(&new.log.level);
            applied.log_level = Some(new.log.level.clone());
            self.cfg.log.level = new.log.level;
        }
        Ok(applied)
    }

    /// Stop the named listeners and the HTTP servers they are on; the
    /// future ends when their sockets are closed and connections finished.
    fn stop_listeners(&mut self, names: &BTreeSet<String>) -> impl Future<Output = ()> + use<> {
        let mut tasks = JoinSet::new();
        for name in names {
            if let Some(l) = self.listeners.remove(name) {
                l.stop.cancel();
                let mut set = l.tasks;
                tasks.spawn(async move { while set.join_next().await.is_some() {} });
            }
        }
        let (stopping, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.http)
            .into_iter()
            .partition(|h| h.members.iter().any(|m| names.contains(m)));
        self.http = keep;
        for h in stopping {
            h.stop.cancel();
            tasks.spawn(async move {
                let _ = h.task.await;
            });
        }
        async move { while tasks.join_next().await.is_some() {} }
    }

    /// Start `entries` and bind their HTTP ports (merging routes of
    /// listeners sharing one). An address in `freed` may still be held by a
    /// listener being stopped: it is tried again for a few seconds.
    async fn bind(
        &self,
        entries: &[&ListenerEntry],
        freed: &BTreeSet<SocketAddr>,
    ) -> anyhow::Result<Bound> {
        let mut bound = Bound {
            listeners: Vec::new(),
            http: Vec::new(),
        };
        let mut groups: BTreeMap<SocketAddr, SharedHttp> = BTreeMap::new();
        let mut fresh_ports: Vec<(SocketAddr, SharedHttp)> = Vec::new();
        for l in entries {
            let dialect = l.config.dialect();
            let stop = self.shutdown.child_token();
            let ctx = ListenerContext {
                name: l.name.as_str().into(),
                dialect,
                ingest: self.pipeline.ingest(&l.name),
                shutdown: stop.clone(),
            };
            let retry = l
                .config
                .sockets()
                .iter()
                .any(|s| freed.contains(&s.address));
            let started = with_rebind(retry, || l.config.start(ctx.clone()))
                .await
                .with_context(|| format!("start listener `{}`", l.name))?;
            let mut runs = Vec::new();
            let mut certificates = Vec::new();
            for server in started.servers {
                tracing::info!(listener = %l.name, dialect, address = %server.address, transport = server.transport, tls = server.tls.is_some(), "listening");
                certificates.extend(server.tls);
                runs.push(server.run);
            }
            for part in started.http {
                let entry = SharedHttp {
                    names: vec![l.name.clone()],
                    dialects: vec![dialect],
                    cfg: part.config,
                    router: part.router,
                    tls: part.tls,
                    allow: part.allow,
                };
                if part.address.port() == 0 {
                    fresh_ports.push((part.address, entry));
                    continue;
                }
                match groups.get_mut(&part.address) {
                    None => {
                        groups.insert(part.address, entry);
                    }
                    Some(shared) => {
                        if shared.tls != entry.tls || shared.allow != entry.allow {
                            bail!(
                                "address {}: listeners sharing it differ in `tls` or `allowed_networks`",
                                part.address
                            );
                        }
                        shared
                            .router
                            .merge(entry.router)
                            .map_err(|cs| anyhow!("address {}: {}", part.address, join(&cs)))?;
                        shared.names.push(l.name.clone());
                        shared.dialects.push(dialect);
                    }
                }
            }
            bound.listeners.push(BoundListener {
                name: l.name.clone(),
                stop,
                runs,
                certificates,
            });
        }
        for (addr, shared) in groups.into_iter().chain(fresh_ports) {
            let labels = Labels {
                listener: shared.names.join(",").into(),
                dialect: if shared.dialects.len() == 1 {
                    shared.dialects[0]
                } else {
                    "shared"
                },
            };
            let names = shared.names.join("`, `");
            let tls = shared
                .tls
                .as_ref()
                .map(ServerTls::load)
                .transpose()
                .with_context(|| format!("listener `{names}`: TLS"))?;
            let cfg = shared.cfg;
            let retry = freed.contains(&addr);
            let mut server = with_rebind(retry, || HttpServer::bind(addr, cfg, labels.clone()))
                .await
                .with_context(|| format!("bind listener `{names}` on {addr}"))?;
            server.set_allow(shared.allow);
            server.set_tls(tls.clone());
            let local = server.local_addr();
            for (name, dialect) in shared.names.iter().zip(&shared.dialects) {
                tracing::info!(listener = %name, dialect = *dialect, address = %local, transport = if tls.is_some() { "https" } else { "http" }, "listening");
            }
            bound.http.push(BoundHttp {
                members: shared.names,
                stop: self.shutdown.child_token(),
                server,
                router: shared.router,
                certificate: tls,
            });
        }
        Ok(bound)
    }

    fn spawn(&mut self, bound: Bound) {
        for BoundListener {
            name,
            stop,
            runs,
            certificates,
        } in bound.listeners
        {
            let mut tasks = JoinSet::new();
            for run in runs {
                tasks.spawn(run);
            }
            self.listeners.insert(
                name,
                RunningListener {
                    stop,
                    tasks,
                    certificates,
                },
            );
        }
        for BoundHttp {
            members,
            stop,
            server,
            router,
            certificate,
        } in bound.http
        {
            let task = tokio::spawn(server.run(router, stop.clone()));
            self.http.push(RunningHttp {
                members,
                stop,
                task,
                certificate,
            });
        }
    }

    /// Every loaded listener certificate, by the component that serves it.
    pub fn certificates(&self) -> Vec<(String, ServerTls)> {
        let mut out: Vec<(String, ServerTls)> = Vec::new();
        for (name, l) in &self.listeners {
            out.extend(l.certificates.iter().map(|c| (name.clone(), c.clone())));
        }
        for h in &self.http {
            if let Some(c) = &h.certificate {
                out.push((h.members.join(","), c.clone()));
            }
        }
        out
    }

    /// Stop: listeners finish what they read (half the deadline; then the
    /// sinks' intake closes so that a connection blocked on a full sink
    /// wakes), sinks send what is queued until the deadline, then what is
    /// unsent is spooled or dropped and counted.
    pub async fn shutdown(self, deadline: tokio::time::Instant, half: tokio::time::Instant) {
        let Running {
            pipeline,
            stop,
            shutdown,
            sinks,
            listeners,
            http,
            retired_listeners,
            mut retired_sinks,
            ..
        } = self;
        // A second signal skips the wait (see run.rs): it cancels these.
        shutdown.cancel();
        let mut listener_tasks = JoinSet::new();
        for (_, l) in listeners {
            let mut set = l.tasks;
            listener_tasks.spawn(async move { while set.join_next().await.is_some() {} });
        }
        for h in http {
            listener_tasks.spawn(async move {
                let _ = h.task.await;
            });
        }
        let mut retired_listeners = retired_listeners;
        listener_tasks.spawn(async move { drain(&mut retired_listeners).await });
        if tokio::time::timeout_at(half, drain(&mut listener_tasks))
            .await
            .is_err()
        {
            tracing::warn!(
                "listeners still busy at half the shutdown timeout; closing the sinks' intake"
            );
            stop.drain.cancel();
            if tokio::time::timeout_at(deadline, drain(&mut listener_tasks))
                .await
                .is_err()
            {
                tracing::warn!("listeners did not finish in time");
                listener_tasks.abort_all();
            }
        }
        drop(pipeline);
        stop.drain.cancel();
        let mut sink_tasks = JoinSet::new();
        for (_, s) in sinks {
            sink_tasks.spawn(async move {
                let _ = s.task.await;
            });
        }
        let flushed = async {
            drain(&mut sink_tasks).await;
            drain(&mut retired_sinks).await;
        };
        if tokio::time::timeout_at(deadline, flushed).await.is_err() {
            tracing::error!("sinks did not flush in time; dropping what is unsent");
            stop.abort.cancel();
            let rest = async {
                drain(&mut sink_tasks).await;
                drain(&mut retired_sinks).await;
            };
            if tokio::time::timeout(Duration::from_secs(2), rest)
                .await
                .is_err()
            {
                sink_tasks.abort_all();
                retired_sinks.abort_all();
            }
        }
    }

    /// The tokens a second signal cancels to stop at once.
    pub fn stop_now(&self) -> (CancellationToken, CancellationToken) {
        (self.stop.abort.clone(), self.shutdown.clone())
    }
}

struct SharedHttp {
    names: Vec<String>,
    dialects: Vec<&'static str>,
    cfg: HttpConfig,
    router: Router,
    tls: Option<TlsConfig>,
    allow: AllowList,
}

/// A removed sink: its queue is out of the table, so its runner ends once
/// it has sent what the queue holds; past `timeout` it stops retrying.
async fn retire_sink(name: String, mut old: RunningSink, timeout: Duration) {
    if tokio::time::timeout(timeout, &mut old.task).await.is_ok() {
        tracing::info!(sink = %name, "removed sink sent what it held and stopped");
        return;
    }
    tracing::warn!(sink = %name, "removed sink could not send what it held in time; stopping it");
    old.stop.drain.cancel();
    old.stop.abort.cancel();
    let _ = old.task.await;
}

/// Listeners to stop or start going from `old` to `new`: those whose table
/// changed, were added or removed, with every listener sharing an HTTP port
/// with one of them (in either layout), since a port's routes are served by
/// one server.
fn restart_set(old: &[ListenerEntry], new: &[ListenerEntry]) -> BTreeSet<String> {
    let mut changed: BTreeSet<String> = BTreeSet::new();
    for l in new {
        match old.iter().find(|o| o.name == l.name) {
            Some(o) if o.raw == l.raw => {}
            _ => {
                changed.insert(l.name.clone());
            }
        }
    }
    for o in old {
        if !new.iter().any(|l| l.name == o.name) {
            changed.insert(o.name.clone());
        }
    }
    let groups: Vec<Vec<String>> = http_groups(old)
        .into_values()
        .chain(http_groups(new).into_values())
        .collect();
    loop {
        let before = changed.len();
        for g in &groups {
            if g.iter().any(|n| changed.contains(n)) {
                changed.extend(g.iter().cloned());
            }
        }
        if changed.len() == before {
            return changed;
        }
    }
}

/// The HTTP addresses listeners share (port 0 is never shared).
fn http_groups(listeners: &[ListenerEntry]) -> BTreeMap<SocketAddr, Vec<String>> {
    let mut groups: BTreeMap<SocketAddr, Vec<String>> = BTreeMap::new();
    for l in listeners {
        for s in l.config.sockets() {
            if s.transport == Transport::Http && s.address.port() != 0 {
                groups.entry(s.address).or_default().push(l.name.clone());
            }
        }
    }
    groups
}

/// `table` without `keys`.
fn without(table: &toml::Table, keys: &[&str]) -> toml::Table {
    let mut t = table.clone();
    for k in keys {
        t.remove(*k);
    }
    t
}

/// Call `start` until it does not fail for a port in use, for at most
/// [`REBIND_WAIT`] when `retry`: a listener being stopped closes its socket
/// a moment after it is told to.
async fn with_rebind<T, E, F, Fut>(retry: bool, mut start: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error + 'static,
{
    let until = tokio::time::Instant::now() + REBIND_WAIT;
    loop {
        match start().await {
            Err(e) if retry && in_use(&e) && tokio::time::Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

fn in_use(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::AddrInUse
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Open a sink's spool, recovering what an earlier run left. A damaged
/// file costs the damaged records, never the start; a spool held by another
/// process or an unwritable directory stops the start.
fn open_spool(s: &SinkConfig, data_dir: &Path) -> anyhow::Result<Option<Spool>> {
    let Some(sc) = s.spool_config(data_dir) else {
        return Ok(None);
    };
    let dir = sc.dir.clone();
    let (spool, found) = Spool::open(sc)
        .with_context(|| format!("open the spool of sink `{}` in {}", s.name, dir.display()))?;
    if found.records > 0 || found.torn_tails > 0 {
        tracing::info!(
            sink = %s.name,
            records = found.records,
            bytes = found.bytes,
            torn_tails = found.torn_tails,
            "spool holds undelivered records from an earlier run; sending them first"
        );
    }
    Ok(Some(spool))
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

async fn drain(set: &mut JoinSet<()>) {
    while set.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listeners(text: &str) -> Vec<ListenerEntry> {
        let text = format!("{text}\n[sinks.out]\ntype = \"blackhole\"\n");
        Config::parse(&text).unwrap().listeners
    }

    #[test]
    fn listeners_sharing_a_port_with_a_changed_one_restart_with_it() {
        let old = listeners(
            r#"
[listeners.influx]
type = "influx"
address = "127.0.0.1:18086"
[listeners.kairos]
type = "kairosdb"
address = "127.0.0.1:18086"
[listeners.tsdb]
type = "opentsdb"
address = "127.0.0.1:14242"
[listeners.graphite]
type = "graphite"
address = "127.0.0.1:12003"
"#,
        );
        assert!(restart_set(&old, &old).is_empty());

        // `kairos` changes: `influx` shares its port; `tsdb` and `graphite` stay.
        let mut new = old.clone();
        new[1] = listeners(
            r#"
[listeners.kairos]
type = "kairosdb"
address = "127.0.0.1:18086"
max_body_bytes = 1000
"#,
        )
        .remove(0);
        assert_eq!(
            restart_set(&old, &new),
            BTreeSet::from(["influx".to_owned(), "kairos".to_owned()])
        );

        // Removed and added, on ports of their own.
        let new: Vec<ListenerEntry> = old
            .iter()
            .filter(|l| l.name != "graphite")
            .cloned()
            .chain(listeners(
                r#"
[listeners.extra]
type = "graphite"
address = "127.0.0.1:12004"
"#,
            ))
            .collect();
        assert_eq!(
            restart_set(&old, &new),
            BTreeSet::from(["extra".to_owned(), "graphite".to_owned()])
        );

        // A listener that joins a shared port restarts the ones on it.
        let mut new = old.clone();
        new.extend(listeners(
            r#"
[listeners.tsdb_http]
type = "influx"
address = "127.0.0.1:18086"
database_tag = "db"
"#,
        ));
        let set = restart_set(&old, &new);
        assert!(set.contains("influx") && set.contains("kairos") && set.contains("tsdb_http"));
        assert!(!set.contains("tsdb") && !set.contains("graphite"));
    }
}
