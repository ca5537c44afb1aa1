//! Graphite for Conflux: the dialect of carbon and of everything that writes
//! to it (collectd's `write_graphite`, statsd backends, Telegraf's
//! `outputs.graphite`, graphyte, carbon-c-relay, scripts with `nc`).
//!
//! Layout:
//! - [`codec`]: pure parse and encode: plaintext `path value [timestamp]`
//!   with carbon-tagged (`name;k=v`) and OpenMetrics-style (`name{k="v"}`)
//!   paths, the Telegraf template language, a data-only pickle decoder, and
//!   Telegraf's graphite serializer for the `graphite` sink. Fuzzed (`fuzz/`)
//!   and benchmarked (`benches/`) on its own.
//! - [`listener`]: plaintext over TCP and UDP (port 2003) and pickle over TCP
//!   (port 2004), on `conflux-net`.
//!
//! `docs/protocols.md` lists every choice where carbon, Telegraf, vmagent and
//! carbon-c-relay disagree; `docs/performance.md` has the parser benchmark.

pub mod codec;
pub mod listener;
