//! The pure KairosDB REST JSON codec: a `/api/v1/datapoints` body in,
//! metrics and per-object errors out, and back. No I/O, no logging, no tokio;
//! callers count and log what it returns.
//!
//! Layout:
//! - `parse`: [`parse`] and [`ParseOptions`], a streaming reader that writes
//!   straight into a [`Batch`](conflux_core::Batch).
//! - `encode`: [`Encoder`], one object per series, for the `kairosdb` sink.
//! - `error`: [`ParseError`] and the fixed set of [`ErrorKind`]s.

mod encode;
mod error;
mod parse;

pub use encode::{EncodeOptions, Encoded, Encoder, write_float, write_str};
pub use error::{ErrorKind, ParseError, QUOTE_BYTES};
pub use parse::{END_OF_INPUT, INVALID_START, MAX_MS, MIN_MS, ParseOptions, Summary, parse};
