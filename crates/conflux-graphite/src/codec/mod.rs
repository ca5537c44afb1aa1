//! Pure Graphite encode (and later parse); no I/O.
pub mod encode;
