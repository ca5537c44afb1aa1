//! The Conflux daemon: configuration, wiring of listeners, pipeline and sinks,
//! signals, self-observability.
//!
//! Layout:
//! - [`config`]: TOML parsing and validation (every problem at once).
//! - [`listeners`]: the listener types the daemon knows, and how they start.
//! - [`sinks`]: the sink types the daemon knows, and how they start.
//! - [`admin`]: `/metrics`, `/health`, `/ready` on their own address.
//! - [`logging`]: `tracing` setup.
//! - [`running`]: what runs, and how a reload changes it.
//! - [`run`]: start, wait for a signal (SIGHUP reloads), shut down within
//!   the deadline.
//! - [`notify`]: systemd readiness and watchdog.

pub mod admin;
pub mod config;
pub mod listeners;
pub mod logging;
pub mod notify;
pub mod run;
pub mod running;
pub mod sinks;
