//! Graphite dialect.
pub mod codec;
