//! Output encoders owned by the sinks crate.
pub mod json;
