//! KairosDB's REST API for Conflux: applications and agents that post to
//! KairosDB's `POST /api/v1/datapoints` can point at Conflux unchanged, and the
//! `kairosdb` sink writes the same JSON to a KairosDB.
//!
//! Layout:
//! - [`codec`]: the pure codec: a streaming parser with KairosDB's validation
//!   and error strings, and the encoder grouped by series; fuzzed (`fuzz/`)
//!   and benchmarked (`benches/`) on its own.
//! - [`listener`]: the HTTP listener (`/api/v1/datapoints`, `/api/v1/version`,
//!   `/api/v1/health/check`, `/api/v1/health/status`) on `conflux-net`; it can
//!   share a port with the influx listener.
//!
//! `shared/reference/ANCHORS.md` section 2.8 holds KairosDB's behaviour with
//! sources; `docs/protocols.md` lists where Conflux differs.

pub mod codec;
pub mod listener;
