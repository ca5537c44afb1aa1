//! The pure line protocol codec: bytes in, metrics and per-line errors out, and
//! back. No I/O, no logging, no tokio; callers count and log what it returns.
//!
//! Layout:
//! - `parse`: [`parse`] and [`ParseOptions`], InfluxDB 2.x rules.
//! - `encode`: [`encode`] and [`encode_with`], one metric per line.
//! - `error`: [`LineError`] and the fixed set of [`ErrorKind`]s.

mod encode;
mod error;
mod parse;

pub use encode::{encode, encode_with};
pub use error::{ErrorKind, LineError, QUOTE_BYTES};
pub use parse::{MAX_KEY_BYTES, MAX_NANO_TIME, MIN_NANO_TIME, ParseOptions, parse};
