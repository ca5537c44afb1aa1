//! The sink types the daemon knows and how each starts.

use conflux_core::pipeline::SinkReceiver;
use conflux_sinks::blackhole::Blackhole;
use conflux_sinks::file::FileSink;
use conflux_sinks::{Runner, RunnerConfig, Sink, Stop};
use conflux_sinks::{graphite, influx, kairosdb, opentsdb, prometheus};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::{SinkConfig, SinkKind};

/// A built sink, waiting for its queue: spawns its runner when called.
pub type Start = Box<dyn FnOnce(SinkReceiver, Stop) -> JoinHandle<()> + Send>;

/// Build a sink (open files, clients) before anything runs, so that a bad
/// path fails at start.
///
/// # Errors
/// What stopped the sink from opening.
pub fn build(cfg: &SinkConfig) -> Result<Start, String> {
    let kind = cfg.kind.type_name();
    let span = tracing::info_span!("sink", sink = %cfg.name, r#type = kind);
    let runner = cfg.runner.clone();
    Ok(match &cfg.kind {
        SinkKind::File(c) => start(FileSink::new(c.clone())?, kind, runner, span),
        SinkKind::Blackhole(_) => start(Blackhole, kind, runner, span),
        SinkKind::Influx(n, c) => start(influx::build(n, c)?, kind, runner, span),
        SinkKind::Prometheus(n, c) => start(prometheus::build(n, c)?, kind, runner, span),
        SinkKind::Graphite(n, c) => start(graphite::build(n, c)?, kind, runner, span),
        SinkKind::Opentsdb(n, c) => start(opentsdb::build(n, c)?, kind, runner, span),
        SinkKind::Kairosdb(n, c) => start(kairosdb::build(n, c)?, kind, runner, span),
    })
}

fn start<S: Sink>(sink: S, kind: &'static str, cfg: RunnerConfig, span: tracing::Span) -> Start {
    Box::new(move |rx, stop| {
        tokio::spawn(Runner::new(sink, kind, rx, cfg).run(stop).instrument(span))
    })
}
