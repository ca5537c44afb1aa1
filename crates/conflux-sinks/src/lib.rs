//! Sinks: where metrics leave Conflux.
//!
//! Every sink implements [`runner::Sink`]; a [`runner::Runner`] drives it
//! from its queue with re-batching, retries and counting.
//!
//! Layout:
//! - [`runner`]: the `Sink` trait, batching and retry settings, the runner.
//! - [`format`]: text encoders (line protocol, Telegraf JSON, Telegraf graphite).
//! - [`file`]: the `file` sink (a path or stdout, with rotation).
//! - [`blackhole`]: the `blackhole` sink (counts and discards).

pub mod blackhole;
pub mod file;
pub mod format;
pub mod runner;

pub use runner::{Runner, RunnerConfig, Sent, Sink, SinkError, Stop};
