//! The pure OpenTSDB codec: bytes in, metrics and per-line (or per-point)
//! errors out, and back. No I/O, no logging, no tokio; callers count and log
//! what it returns.
//!
//! Layout:
//! - `telnet`: [`parse`]: telnet lines (`put`, `putm`, `puts` and the
//!   commands) into a [`Batch`](conflux_core::Batch) and [`Event`]s.
//! - `json`: [`parse_put`] and [`parse_put_with_limits`]: an `/api/put` body
//!   (one object or an array).
//! - `rules`: what both share: timestamps, values, tags, allowed characters,
//!   and OpenTSDB's wording of each refusal.
//! - `encode`: [`Encoder`]: metrics to telnet `put` lines or `/api/put` JSON
//!   for the `opentsdb` sink, named by the core naming policy.
//! - `error`: [`LineError`], [`PointError`] and the fixed set of [`ErrorKind`]s.
//!
//! Every metric has one field, `value`, as every single-value dialect in
//! Conflux (`docs/protocols.md`, "Naming policy").

mod encode;
mod error;
mod json;
mod rules;
mod telnet;

use conflux_core::time::SecondsOrMillis;
use serde::Deserialize;

pub use encode::{Encoded, Encoder};
pub use error::{ErrorKind, LineError, PointError, QUOTE_BYTES};
pub(crate) use json::json_string;
pub use json::{JsonError, Put, parse_put, parse_put_with_limits};
pub use telnet::{Command, Event, Summary, parse};

/// The field every parsed metric carries its number (or `puts` string) in.
pub const VALUE_FIELD: &str = "value";

/// The default limit on tags per point: generous, since OpenTSDB's own
/// default of 8 (`tsd.storage.max_tags`) rejects what vmagent and KairosDB
/// accept; set 8 to behave as OpenTSDB.
pub const DEFAULT_MAX_TAGS: usize = 64;

/// Which characters metric names, tag keys and tag values may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Characters {
    /// OpenTSDB's rule (`Tags.validateString`): ASCII letters and digits,
    /// `-`, `_`, `.`, `/`, any Unicode letter, plus the listener's
    /// `allow_special_chars` (`tsd.core.tag.allow_specialchars`).
    #[default]
    Opentsdb,
    /// KairosDB's rule: anything but a space (and, in tags, `=`).
    AnyButSpace,
}

/// How [`parse`] and [`parse_put`] read their input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseOptions {
    /// How `put` (and `/api/put`) tells seconds from milliseconds; `putm` is
    /// always milliseconds.
    pub timestamps: SecondsOrMillis,
    /// Which characters names and tags may hold.
    pub characters: Characters,
    /// Characters allowed besides OpenTSDB's set (OpenTSDB's
    /// `tsd.core.tag.allow_specialchars`); unused with
    /// [`Characters::AnyButSpace`].
    pub special_chars: String,
    /// Most tags one point may carry (`Too many tags` past it).
    pub max_tags: usize,
    /// Refuse a point without tags, as OpenTSDB does; vmagent and KairosDB
    /// accept them.
    pub require_tags: bool,
}

impl Default for ParseOptions {
    /// OpenTSDB's timestamp rule and characters, [`DEFAULT_MAX_TAGS`], tags optional.
    fn default() -> Self {
        ParseOptions {
            timestamps: SecondsOrMillis::OpentsdbMask,
            characters: Characters::Opentsdb,
            special_chars: String::new(),
            max_tags: DEFAULT_MAX_TAGS,
            require_tags: false,
        }
    }
}
