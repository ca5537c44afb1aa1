//! What every running component receives: its name, its handle into the
//! pipeline and the shutdown signal.

use std::sync::Arc;

pub use tokio_util::sync::CancellationToken;

use crate::pipeline::Ingest;

/// The context a listener runs with.
#[derive(Debug, Clone)]
pub struct ListenerContext {
    /// The listener's config name (`[listeners.NAME]`).
    pub name: Arc<str>,
    /// The dialect, as used in metric labels (`influx`, `graphite`, …).
    pub dialect: &'static str,
    /// Where parsed batches go.
    pub ingest: Ingest,
    /// Cancelled when the daemon stops: stop accepting, finish what is in flight.
    pub shutdown: CancellationToken,
}

impl ListenerContext {
    /// Labels identifying this listener in self-metrics.
    pub fn labels(&self) -> [(&'static str, String); 2] {
        [
            ("listener", self.name.to_string()),
            ("dialect", self.dialect.to_owned()),
        ]
    }
}
