//! The Conflux daemon: configuration, wiring of listeners, pipeline and sinks,
//! signals, self-observability.
//!
//! Layout:
//! - [`config`]: TOML parsing and validation (every problem at once).
//! - [`listeners`]: the listener types the daemon knows, and how they start.
//! - [`sinks`]: the sink types the daemon knows, and how they start.
//! - [`admin`]: `/metrics`, `/health`, `/ready` on their own address.
//! - [`logging`]: `tracing` setup.
//! - [`run`]: start, wait for a signal, shut down within the deadline.

pub mod admin;
pub mod config;
pub mod listeners;
pub mod logging;
pub mod run;
pub mod sinks;
