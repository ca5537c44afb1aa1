//! Start everything, wait for a signal, shut down within the deadline.
//!
//! Order at start: metrics recorder, sinks (outputs opened), pipeline, sink
//! runners, listeners (every socket bound before any serves), admin, ready.
//! Order at stop: not ready; listeners stop accepting and finish what they
//! read; sinks stop taking input and send what is queued; past the deadline
//! what is still unsent is dropped and counted; admin last.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use conflux_core::component::{CancellationToken, ListenerContext};
use conflux_core::{Pipeline, telemetry};
use conflux_net::Labels;
use conflux_net::allow::AllowList;
use conflux_net::http::{HttpConfig, HttpServer, Router};
use conflux_net::tls::{ServerTls, TlsConfig};
use conflux_sinks::Stop;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinSet;

use crate::config::{Config, SinkConfig};
use crate::{admin, logging, sinks};

/// Run the daemon with `cfg` until SIGTERM or SIGINT.
///
/// # Errors
/// What stopped it from starting (a port in use, a file that cannot be opened).
pub fn main(cfg: Config) -> anyhow::Result<()> {
    logging::init(&cfg.log);
    let handle = admin::install_recorder()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("conflux")
        .build()
        .context("start the runtime")?;
    let result = rt.block_on(run(cfg, handle));
    // A file write stuck in the kernel (a dead pipe, a hung NFS mount) must
    // not keep the process from exiting; its data was already counted as dropped.
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}

struct SharedHttp {
    names: Vec<String>,
    dialects: Vec<&'static str>,
    cfg: HttpConfig,
    router: Router,
    tls: Option<TlsConfig>,
    allow: AllowList,
}

async fn run(cfg: Config, handle: PrometheusHandle) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM that arrives once we look ready must not meet
    // the default action, which kills the process without flushing.
    let mut signals = Signals::new()?;
    metrics::gauge!(telemetry::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let ready_flag = Arc::new(AtomicBool::new(false));
    let ready_gauge = metrics::gauge!(telemetry::READY);
    ready_gauge.set(0.0);

    // Sinks first: a bad output path fails before any port is opened.
    let mut built = Vec::with_capacity(cfg.sinks.len());
    for s in &cfg.sinks {
        built.push(sinks::build(s).map_err(|e| anyhow!("sink `{}`: {e}", s.name))?);
    }
    let mut specs = Vec::with_capacity(cfg.sinks.len());
    for s in &cfg.sinks {
        specs.push(s.spec(open_spool(s, &cfg.daemon.data_dir)?));
    }
    let (pipeline, receivers) = Pipeline::new(specs);
    let stop = Stop::default();
    let mut sink_tasks = JoinSet::new();
    for (start, rx) in built.into_iter().zip(receivers) {
        let h = start(rx, stop.clone());
        sink_tasks.spawn(async move {
            let _ = h.await;
        });
    }

    // Listeners: TCP/UDP ones bind as they start; HTTP ones hand over routes,
    // merged per address so that several dialects can share a port.
    let shutdown = CancellationToken::new();
    let mut listener_tasks = JoinSet::new();
    // Every loaded certificate, by the component that serves it, for SIGHUP.
    let mut certificates: Vec<(String, ServerTls)> = Vec::new();
    let mut http: BTreeMap<SocketAddr, SharedHttp> = BTreeMap::new();
    let mut fresh_ports: Vec<(SocketAddr, SharedHttp)> = Vec::new();
    for l in &cfg.listeners {
        let dialect = l.config.dialect();
        let ctx = ListenerContext {
            name: l.name.as_str().into(),
            dialect,
            ingest: pipeline.ingest(&l.name),
            shutdown: shutdown.clone(),
        };
        let started = l
            .config
            .start(ctx)
            .await
            .with_context(|| format!("start listener `{}`", l.name))?;
        for server in started.servers {
            tracing::info!(listener = %l.name, dialect, address = %server.address, transport = server.transport, tls = server.tls.is_some(), "listening");
            if let Some(tls) = server.tls {
                certificates.push((l.name.clone(), tls));
            }
            listener_tasks.spawn(server.run);
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
            match http.get_mut(&part.address) {
                None => {
                    http.insert(part.address, entry);
                }
                Some(shared) => {
                    if shared.tls != entry.tls || shared.allow != entry.allow {
                        return Err(anyhow!(
                            "address {}: listeners sharing it differ in `tls` or `allowed_networks`",
                            part.address
                        ));
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
    }
    for (addr, shared) in http.into_iter().chain(fresh_ports) {
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
        let mut server = HttpServer::bind(addr, shared.cfg, labels)
            .await
            .with_context(|| format!("bind listener `{names}` on {addr}"))?;
        server.set_allow(shared.allow);
        server.set_tls(tls.clone());
        let bound = server.local_addr();
        for (name, dialect) in shared.names.iter().zip(&shared.dialects) {
            tracing::info!(listener = %name, dialect = *dialect, address = %bound, transport = if tls.is_some() { "https" } else { "http" }, "listening");
        }
        if let Some(tls) = tls {
            certificates.push((shared.names.join(","), tls));
        }
        listener_tasks.spawn(server.run(shared.router, shutdown.clone()));
    }

    let admin_stop = CancellationToken::new();
    let admin_task = if cfg.admin.enabled {
        let labels = Labels {
            listener: "admin".into(),
            dialect: "admin",
        };
        let tls = cfg
            .admin
            .tls
            .as_ref()
            .map(ServerTls::load)
            .transpose()
            .context("admin: TLS")?;
        let mut server = HttpServer::bind(cfg.admin.address, HttpConfig::default(), labels)
            .await
            .with_context(|| format!("bind admin on {}", cfg.admin.address))?;
        server.set_allow(cfg.admin.allowed_networks.clone());
        server.set_tls(tls.clone());
        if let Some(tls) = tls {
            certificates.push(("admin".to_owned(), tls));
        }
        tracing::info!(component = "admin", address = %server.local_addr(), "admin listening");
        Some(tokio::spawn(server.run(
            admin::router(handle.clone(), ready_flag.clone()),
            admin_stop.clone(),
        )))
    } else {
        None
    };
    // Histograms need periodic upkeep when the recorder is not installed by the exporter.
    let upkeep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });

    ready_flag.store(true, Ordering::Relaxed);
    ready_gauge.set(1.0);
    tracing::info!(
        listeners = cfg.listeners.len(),
        sinks = cfg.sinks.len(),
        version = env!("CARGO_PKG_VERSION"),
        "conflux ready"
    );

    let signal = loop {
        match signals.recv().await {
            "SIGHUP" => reload_certificates(&certificates),
            other => break other,
        }
    };
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(cfg.daemon.shutdown_timeout_ms);
    tracing::info!(
        signal,
        timeout_ms = cfg.daemon.shutdown_timeout_ms,
        "shutting down"
    );
    ready_flag.store(false, Ordering::Relaxed);
    ready_gauge.set(0.0);
    // A second signal skips the wait.
    let (abort, stop_now) = (stop.abort.clone(), shutdown.clone());
    tokio::spawn(async move {
        while signals.recv().await == "SIGHUP" {}
        tracing::warn!("second signal: stopping now");
        stop_now.cancel();
        abort.cancel();
    });

    shutdown.cancel();
    // Listeners get half the time to finish what they read. A connection
    // still blocked on a full sink past that is woken by closing the sinks'
    // intake (its submit fails, nothing it holds was acknowledged), so that
    // the sinks keep the rest of the time to flush.
    let half =
        tokio::time::Instant::now() + Duration::from_millis(cfg.daemon.shutdown_timeout_ms) / 2;
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
    if tokio::time::timeout_at(deadline, drain(&mut sink_tasks))
        .await
        .is_err()
    {
        tracing::error!("sinks did not flush in time; dropping what is unsent");
        stop.abort.cancel();
        if tokio::time::timeout(Duration::from_secs(2), drain(&mut sink_tasks))
            .await
            .is_err()
        {
            sink_tasks.abort_all();
        }
    }
    admin_stop.cancel();
    if let Some(t) = admin_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    upkeep.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Open a sink's spool, recovering what an earlier run left. A damaged
/// file costs the damaged records, never the start; a spool held by another
/// process or an unwritable directory stops the start.
fn open_spool(s: &SinkConfig, data_dir: &Path) -> anyhow::Result<Option<conflux_spool::Spool>> {
    let Some(sc) = s.spool_config(data_dir) else {
        return Ok(None);
    };
    let dir = sc.dir.clone();
    let (spool, found) = conflux_spool::Spool::open(sc)
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

/// SIGHUP: read every certificate again (a renewed one). A file that fails
/// leaves that component on its old certificate, logged at ERROR.
fn reload_certificates(certificates: &[(String, ServerTls)]) {
    tracing::info!(
        certificates = certificates.len(),
        "SIGHUP: reloading TLS certificates"
    );
    for (component, tls) in certificates {
        match tls.reload() {
            Ok(()) => {
                tracing::info!(component = %component, cert_file = %tls.cert_file().display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::error!(component = %component, error = %e, "TLS certificate reload failed; keeping the old one");
            }
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP, registered once.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("install SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("install SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("install SIGHUP handler")?,
        })
    }

    /// The name of the next signal.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}
