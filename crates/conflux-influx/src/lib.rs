//! InfluxDB line protocol for Conflux: the dialect of Telegraf's `outputs.influxdb`
//! and `outputs.influxdb_v2` and of every InfluxDB client library.
//!
//! Layout:
//! - [`codec`]: pure parse and encode (InfluxDB 2.x rules, per-line errors in
//!   InfluxDB's wording), fuzzed (`fuzz/`) and benchmarked (`benches/`) on its own.
//! - [`listener`]: the HTTP listener (`/write`, `/api/v2/write`, `/query`,
//!   `/ping`, …) and optional raw TCP/UDP, on `conflux-net`.
//!
//! `docs/protocols.md` lists every choice where InfluxDB 1.x, 2.x and Telegraf
//! disagree; `docs/performance.md` has the parser benchmark.

pub mod codec;
pub mod listener;
