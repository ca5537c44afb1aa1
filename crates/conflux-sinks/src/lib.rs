//! Sinks: where metrics leave Conflux.
//!
//! Layout:
//! - [`format`]: encoders shared by sinks (Telegraf's JSON shape).
pub mod format;
