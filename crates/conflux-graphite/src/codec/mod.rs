//! The pure Graphite codec: bytes in, metrics and per-line errors out, and
//! back. No I/O, no logging, no tokio; callers count and log what it returns.
//!
//! Layout:
//! - `parse`: [`Parser`], [`parse`] and [`ParseOptions`]: plaintext lines
//!   (plain, carbon-tagged and OpenMetrics-style paths) and the pickle items.
//! - `template`: [`Templates`], the Telegraf/InfluxDB template language.
//! - `pickle`: a data-only pickle decoder (opcodes that import or call are
//!   refused); [`parse_pickle`] and [`Parser::parse_pickle`] use it.
//! - `error`: [`LineError`], [`PickleError`] and the fixed set of [`ErrorKind`]s.
//! - [`encode`]: Telegraf's graphite serializer, for the `graphite` sink.

pub mod encode;
mod error;
mod parse;
mod pickle;
mod template;

pub use error::{ErrorKind, LineError, PickleError, QUOTE_BYTES};
pub use parse::{ParseOptions, Parser, parse, parse_pickle};
pub use pickle::{
    FORBIDDEN as FORBIDDEN_PICKLE_OPCODES, HIGHEST_PROTOCOL as HIGHEST_PICKLE_PROTOCOL,
};
pub use template::{Applied, DEFAULT_SEPARATOR, TemplateError, Templates};
