//! OpenTSDB for Conflux: the telnet `put` protocol of OpenTSDB and KairosDB
//! (tcollector, collectd's `write_tsdb`, scollector, Telegraf's
//! `outputs.opentsdb`, `nc` scripts) and OpenTSDB's HTTP `/api/put`, both on
//! one port (4242), as OpenTSDB serves them.
//!
//! Layout:
//! - [`codec`]: pure parse and encode, no I/O. Telnet lines (`put`, `putm`,
//!   `puts`, `version`, `help`, `exit`) with OpenTSDB's error wording,
//!   `/api/put` JSON with its per-point errors, and the encoder of the
//!   `opentsdb` sink (telnet lines and `/api/put` JSON). Fuzzed (`fuzz/`) and
//!   benchmarked (`benches/`) on its own.
//! - [`listener`]: the TCP listener on `conflux-net`: the first byte of a
//!   connection picks HTTP (an uppercase letter) or telnet.
//!
//! `docs/protocols.md` lists every choice where OpenTSDB, KairosDB, vmagent
//! and InfluxDB's opentsdb service disagree; `docs/configuration.md` has the
//! settings and the table of replies.

pub mod codec;
pub mod listener;
