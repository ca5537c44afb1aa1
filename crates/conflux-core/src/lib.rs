//! The core of Conflux: the normalized metric every dialect parses into, the
//! naming policy for single-value targets, timestamp units, routing filters and
//! the fan-out pipeline between listeners and sinks.
//!
//! Layout:
//! - [`metric`]: `Metric`, `Value`, and `Batch` (an arena of many metrics).
//! - [`naming`]: series names, sanitizers and value rules for single-value sinks.
//! - [`time`]: precisions, seconds-or-milliseconds rules, Go-style durations.
//! - [`digits`]: reading decimal digits eight at a time, exact powers of ten.
//! - [`filter`]: per-sink `inputs`, `namepass`/`namedrop`, `tagpass`/`tagdrop`.
//! - [`pipeline`]: `Ingest` (submit and acknowledge), per-sink queues, `BatchView`.
//! - [`component`]: the context handed to listeners.
//! - [`quote`]: how errors quote offending input (at most 64 bytes).
//! - [`telemetry`]: the names of every self-metric.

pub mod component;
pub mod digits;
pub mod filter;
pub mod metric;
pub mod naming;
pub mod pipeline;
pub mod quote;
pub mod telemetry;
pub mod time;

pub use metric::{Batch, FieldValue, Metric, MetricError, MetricRef, Value};
pub use pipeline::{
    Ack, BatchView, Ingest, Pipeline, SinkReceiver, SinkSpec, SubmitError, WhenFull,
};
