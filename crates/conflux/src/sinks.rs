//! The sink types the daemon knows and how each starts.

use conflux_core::pipeline::SinkReceiver;
use conflux_sinks::blackhole::Blackhole;
use conflux_sinks::file::FileSink;
use conflux_sinks::kairosdb::KairosdbSink;
use conflux_sinks::{Runner, RunnerConfig, Sink, Stop};
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
        SinkKind::Kairosdb(c) => start(KairosdbSink::new(c)?, kind, runner, span),
    })
}

fn start<S: Sink>(sink: S, kind: &'static str, cfg: RunnerConfig, span: tracing::Span) -> Start {
    Box::new(move |rx, stop| {
        tokio::spawn(Runner::new(sink, kind, rx, cfg).run(stop).instrument(span))
    })
}
