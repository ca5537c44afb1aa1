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
//! - [`http_client`]: the pooled HTTP/1.1 client every HTTP sink shares, and
//!   how an answer maps to retry or drop.
//! - [`kairosdb`]: the `kairosdb` sink (REST JSON to `/api/v1/datapoints`).

pub mod blackhole;
pub mod file;
pub mod format;
pub mod http_client;
pub mod kairosdb;
pub mod runner;

pub use runner::{Runner, RunnerConfig, Sent, Sink, SinkError, Stop};
