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
//! - [`endpoint`]: one URL of a network sink ([`endpoint::Endpoint`]), and
//!   several as one sink (`replicate` or `shard`), with the shared keys.
//! - [`http_client`]: the pooled HTTP/1.1 client every HTTP sink shares, and
//!   how an answer maps to retry or drop.
//! - [`kairosdb`]: the `kairosdb` sink (REST JSON to `/api/v1/datapoints`).
//! - [`influx`]: the `influx` sink (line protocol to InfluxDB 1.x `/write` or
//!   2.x `/api/v2/write`).
//! - [`prometheus`]: the `prometheus` sink (remote write 1.0).
//! - [`graphite`]: the `graphite` sink (plaintext over TCP or TLS).
//! - [`opentsdb`]: the `opentsdb` sink (HTTP `/api/put` or telnet `put`).

pub mod blackhole;
pub mod endpoint;
pub mod file;
pub mod format;
pub mod graphite;
pub mod http_client;
pub mod influx;
pub mod kairosdb;
pub mod opentsdb;
pub mod prometheus;
pub mod runner;
/// The persistent TCP or TLS connection the `graphite` and `opentsdb` (telnet) sinks share.
pub mod tcp_client;

pub use runner::{Runner, RunnerConfig, Sent, Sink, SinkError, Stop};
