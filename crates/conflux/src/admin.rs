//! The daemon's own endpoint: `/metrics` (Prometheus text from the `metrics`
//! recorder), `/health` (alive) and `/ready` (every component runs; 503 while
//! starting or shutting down).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use conflux_core::telemetry;
use conflux_net::http::{Router, empty, handler_fn, response};
use http::{Method, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds buckets for request durations: 1 ms to 30 s.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Install the global `metrics` recorder. Must run before any component
/// registers a counter, or that counter goes nowhere.
///
/// # Errors
/// When a recorder is already installed.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(telemetry::SINK_REQUEST_DURATION.to_owned()),
            DURATION_BUCKETS,
        )
        .context("histogram buckets")?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("install the metrics recorder")?;
    Ok(handle)
}

/// The admin routes.
pub fn router(handle: PrometheusHandle, ready: Arc<AtomicBool>) -> Router {
    let mut r = Router::new();
    let routes: [(&str, &[Method], Arc<dyn conflux_net::http::Handler>); 3] = [
        (
            "/metrics",
            &[Method::GET],
            handler_fn(move |_req| {
                let body = handle.render();
                async move { response(StatusCode::OK, "text/plain; version=0.0.4", body) }
            }),
        ),
        (
            "/health",
            &[Method::GET, Method::HEAD],
            handler_fn(|_req| async { response(StatusCode::OK, "text/plain", "OK\n") }),
        ),
        (
            "/ready",
            &[Method::GET, Method::HEAD],
            handler_fn(move |_req| {
                let is_ready = ready.load(Ordering::Relaxed);
                async move {
                    if is_ready {
                        response(StatusCode::OK, "text/plain", "ready\n")
                    } else {
                        empty(StatusCode::SERVICE_UNAVAILABLE)
                    }
                }
            }),
        ),
    ];
    for (path, methods, h) in routes {
        // Fresh router, fixed distinct paths: a conflict here is a bug.
        if let Err(e) = r.route(path, methods, "admin", h) {
            tracing::error!(error = %e, "admin route");
        }
    }
    r
}
