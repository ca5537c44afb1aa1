//! Start everything, wait for a signal, shut down within the deadline.
//!
//! Order at start: metrics recorder, sinks (outputs opened), pipeline, sink
//! runners, listeners (every socket bound before any serves), admin, ready.
//! Order at stop: not ready; listeners stop accepting and finish what they
//! read; sinks stop taking input and send what is queued; past the deadline
//! what is still unsent is dropped and counted; admin last.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use conflux_core::component::CancellationToken;
use conflux_core::telemetry;
use conflux_net::Labels;
use conflux_net::http::{HttpConfig, HttpServer};
use conflux_net::tls::ServerTls;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::{Config, DEFAULT_CONFIG};
use crate::running::Running;
use crate::{admin, logging, notify};

/// Run the daemon with `cfg` (read from `source`, read again on SIGHUP)
/// until SIGTERM or SIGINT.
///
/// # Errors
/// What stopped it from starting (a port in use, a file that cannot be opened).
pub fn main(cfg: Config, source: Source) -> anyhow::Result<()> {
    logging::init(&cfg.log);
    let handle = admin::install_recorder()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("conflux")
        .build()
        .context("start the runtime")?;
    let result = rt.block_on(run(cfg, source, handle));
    // A file write stuck in the kernel (a dead pipe, a hung NFS mount) must
    // not keep the process from exiting; its data was already counted as dropped.
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}

async fn run(cfg: Config, source: Source, handle: PrometheusHandle) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM that arrives once we look ready must not meet
    // the default action, which kills the process without flushing.
    let mut signals = Signals::new()?;
    metrics::gauge!(telemetry::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let ready_flag = Arc::new(AtomicBool::new(false));
    let ready_gauge = metrics::gauge!(telemetry::READY);
    ready_gauge.set(0.0);
    let reloads_ok = metrics::counter!(telemetry::RELOADS, "outcome" => "ok");
    let reloads_failed = metrics::counter!(telemetry::RELOADS, "outcome" => "failed");

    let mut running = Running::start(cfg).await?;

    let admin_stop = CancellationToken::new();
    let admin = &running.cfg.admin;
    let mut admin_certificate = None;
    let admin_task = if admin.enabled {
        let labels = Labels {
            listener: "admin".into(),
            dialect: "admin",
        };
        let tls = admin
            .tls
            .as_ref()
            .map(ServerTls::load)
            .transpose()
            .context("admin: TLS")?;
        let mut server = HttpServer::bind(admin.address, HttpConfig::default(), labels)
            .await
            .with_context(|| format!("bind admin on {}", admin.address))?;
        server.set_allow(admin.allowed_networks.clone());
        server.set_tls(tls.clone());
        admin_certificate = tls;
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
    let watchdog = notify::watchdog_interval().map(|every| {
        tracing::info!(
            interval_ms = every.as_millis() as u64,
            "systemd watchdog keep-alive on"
        );
        tokio::spawn(notify::watchdog(every))
    });

    ready_flag.store(true, Ordering::Relaxed);
    ready_gauge.set(1.0);
    tracing::info!(
        listeners = running.cfg.listeners.len(),
        sinks = running.cfg.sinks.len(),
        version = env!("CARGO_PKG_VERSION"),
        "conflux ready"
    );
    notify::ready("ready");

    let signal = loop {
        match signals.recv().await {
            "SIGHUP" => {
                notify::reloading();
                match reload(&mut running, &source).await {
                    Ok(()) => reloads_ok.increment(1),
                    Err(e) => {
                        reloads_failed.increment(1);
                        tracing::error!(
                            error = format!("{e:#}"),
                            "reload failed; the running configuration stays"
                        );
                    }
                }
                let mut certificates = running.certificates();
                certificates.extend(admin_certificate.clone().map(|c| ("admin".to_owned(), c)));
                reload_certificates(&certificates);
                notify::ready("ready (reloaded)");
            }
            other => break other,
        }
    };
    let timeout = Duration::from_millis(running.cfg.daemon.shutdown_timeout_ms);
    let deadline = tokio::time::Instant::now() + timeout;
    tracing::info!(
        signal,
        timeout_ms = running.cfg.daemon.shutdown_timeout_ms,
        "shutting down"
    );
    notify::stopping();
    ready_flag.store(false, Ordering::Relaxed);
    ready_gauge.set(0.0);
    // A second signal skips the wait.
    let (abort, stop_now) = running.stop_now();
    tokio::spawn(async move {
        while signals.recv().await == "SIGHUP" {}
        tracing::warn!("second signal: stopping now");
        stop_now.cancel();
        abort.cancel();
    });
    running
        .shutdown(deadline, tokio::time::Instant::now() + timeout / 2)
        .await;
    admin_stop.cancel();
    if let Some(t) = admin_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    upkeep.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Where the configuration came from, to read it again on SIGHUP.
#[derive(Debug, Clone)]
pub enum Source {
    /// The configuration built into the binary.
    Embedded,
    /// A file.
    File(PathBuf),
}

/// SIGHUP: read the configuration again, check it whole, apply it.
async fn reload(running: &mut Running, source: &Source) -> anyhow::Result<()> {
    let (name, text) = match source {
        Source::Embedded => ("embedded default".to_owned(), DEFAULT_CONFIG.to_owned()),
        Source::File(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?,
        ),
    };
    tracing::info!(config = %name, "SIGHUP: reloading the configuration");
    let cfg = Config::parse(&text).map_err(|problems| anyhow!("{name}: {problems}"))?;
    let applied = running.apply(cfg).await?;
    tracing::info!(
        listeners_started = ?applied.listeners_started,
        listeners_removed = ?applied.listeners_removed,
        sinks_added = ?applied.sinks_added,
        sinks_replaced = ?applied.sinks_replaced,
        sinks_refiltered = ?applied.sinks_refiltered,
        sinks_removed = ?applied.sinks_removed,
        log_level = ?applied.log_level,
        "configuration reloaded"
    );
    Ok(())
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
