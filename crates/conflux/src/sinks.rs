//! The sink types the daemon knows and how each starts.

use conflux_core::pipeline::SinkReceiver;
use conflux_sinks::blackhole::Blackhole;
use conflux_sinks::file::FileSink;
use conflux_sinks::runner::Leftover;
use conflux_sinks::{Runner, RunnerConfig, Sink, Stop};
use conflux_sinks::{graphite, influx, kairosdb, opentsdb, prometheus};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::{SinkConfig, SinkKind};

/// A built sink, waiting for its queue (and, when it replaces a sink of the
/// same name in a reload, the old runner's [`Leftover`]): spawns its runner
/// when called. The runner's task ends with its queue, or when a handover
/// asks for it.
pub type Start =
    Box<dyn FnOnce(SinkReceiver, Option<Leftover>, Stop) -> JoinHandle<Option<Leftover>> + Send>;

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
    Box::new(move |rx, leftover, stop| {
        let mut runner = Runner::new(sink, kind, rx, cfg);
        if let Some(l) = leftover {
            runner = runner.succeeding(l);
        }
        tokio::spawn(runner.run(stop).instrument(span))
    })
}
