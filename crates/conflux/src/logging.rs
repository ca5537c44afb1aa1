//! Log setup: `tracing` to stderr, text or JSON, level from config unless
//! `RUST_LOG` is set. The level can change while running ([`set_level`], on
//! a SIGHUP reload); the format cannot.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

use crate::config::{LogConfig, LogFormat};

/// The filter in force, when it came from the configuration (not `RUST_LOG`).
static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Install the global subscriber. A second call is a no-op.
pub fn init(cfg: &LogConfig) {
    let from_env = EnvFilter::try_from_default_env().ok();
    let configured = from_env.is_none();
    let filter = from_env
        .or_else(|| EnvFilter::try_new(&cfg.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match cfg.format {
        LogFormat::Text => registry.with(layer).try_init(),
        LogFormat::Json => registry.with(layer.json().flatten_event(true)).try_init(),
    };
    if installed.is_ok() && configured {
        let _ = LEVEL.set(handle);
    }
}

/// Whether `level` is a filter [`init`] and [`set_level`] take.
///
/// # Errors
/// Why it is not.
pub fn check_level(level: &str) -> Result<(), String> {
    EnvFilter::try_new(level)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Log from now on at `level` (a filter [`check_level`] accepts). Nothing
/// changes when `RUST_LOG` chose the filter at start, which wins as it did
/// then.
pub fn set_level(level: &str) {
    let Some(handle) = LEVEL.get() else {
        tracing::info!(level, "RUST_LOG is set: the log level stays as it says");
        return;
    };
    match EnvFilter::try_new(level) {
        Ok(filter) => {
            if let Err(e) = handle.reload(filter) {
                tracing::error!(error = %e, "the log level could not change");
            }
        }
        Err(e) => tracing::error!(level, error = %e, "bad log level; keeping the old one"),
    }
}
