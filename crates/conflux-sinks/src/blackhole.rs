//! The `blackhole` sink: accepts and counts, for benchmarks and dry runs.

use conflux_core::pipeline::BatchView;
use serde::Deserialize;

use crate::runner::{Sent, Sink, SinkError};

/// `[sinks.NAME] type = "blackhole"` takes no settings of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// Counts what it receives and keeps nothing.
#[derive(Debug, Default)]
pub struct Blackhole;

impl Sink for Blackhole {
    async fn send(&mut self, batch: &[BatchView]) -> Result<Sent, SinkError> {
        Ok(Sent {
            metrics: batch.iter().map(BatchView::len).sum(),
            points: batch.iter().map(BatchView::points).sum(),
            ..Sent::default()
        })
    }
}
