//! The sink runner: one task per sink that drains the sink's queue,
//! re-batches by size and age, sends, retries what is retryable with
//! exponential backoff and jitter, and drops and counts what the target
//! rejects.

use std::future::Future;
use std::time::Duration;

use conflux_core::pipeline::{BatchView, SinkReceiver};
use conflux_core::telemetry;
use metrics::{Counter, Histogram};
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A destination. The runner calls `send` with a re-batched slice of views and
/// keeps the views (and their room in the queue) until `send` succeeded or the
/// batch was given up.
pub trait Sink: Send + 'static {
    /// Encode and deliver `batch`.
    ///
    /// # Errors
    /// [`SinkError::Retryable`] for what may work later (5xx, timeouts,
    /// refused connections, I/O errors), [`SinkError::Rejected`] for what
    /// never will (4xx).
    fn send(&mut self, batch: &[BatchView])
    -> impl Future<Output = Result<Sent, SinkError>> + Send;

    /// Called before the first attempt at each new batch: what follows is not
    /// a retry. Sinks with several URLs forget which URLs already took the
    /// previous batch.
    fn new_batch(&mut self) {}

    /// Flush and release resources; called once after the last `send`.
    ///
    /// # Errors
    /// Whatever the final flush hit; the runner logs it.
    fn close(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }
}

/// What one successful `send` delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// Metrics delivered (with at least one point).
    pub metrics: usize,
    /// Points (field values) delivered.
    pub points: usize,
    /// Encoded bytes written.
    pub bytes: usize,
    /// Points the encoder could not represent, by reason.
    pub skipped: Skipped,
    /// Metrics the target refused while it kept the rest (InfluxDB's `partial
    /// write`, OpenTSDB's per-point `details`, one URL of several answering
    /// 4xx); counted as dropped (`rejected`) and logged with `rejection`.
    pub rejected: usize,
    /// The target's message about what it refused.
    pub rejection: Option<String>,
}

impl Sent {
    /// Add what another request of the same batch delivered.
    pub fn merge(&mut self, other: Sent) {
        self.metrics += other.metrics;
        self.points += other.points;
        self.bytes += other.bytes;
        self.skipped.string += other.skipped.string;
        self.skipped.bool += other.skipped.bool;
        self.skipped.non_finite += other.skipped.non_finite;
        self.skipped.invalid_name += other.skipped.invalid_name;
        self.rejected += other.rejected;
        if self.rejection.is_none() {
            self.rejection = other.rejection;
        }
    }
}

/// Points an encoder skipped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// String values the target cannot hold.
    pub string: usize,
    /// Bool values the target cannot hold.
    pub bool: usize,
    /// NaN and infinities.
    pub non_finite: usize,
    /// Series whose name sanitized to nothing.
    pub invalid_name: usize,
}

impl Skipped {
    /// Total points skipped.
    pub fn total(&self) -> usize {
        self.string + self.bool + self.non_finite + self.invalid_name
    }
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// May succeed later; the runner retries.
    #[error("{message}")]
    Retryable {
        /// What happened (server message, I/O error).
        message: String,
        /// The target's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Will never succeed; the runner drops the batch and counts it.
    #[error("{message}")]
    Rejected {
        /// What happened (server message).
        message: String,
    },
}

impl SinkError {
    /// A retryable error with a message.
    pub fn retry(message: impl Into<String>) -> SinkError {
        SinkError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// Batching and retry settings shared by every sink (keys of `[sinks.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerConfig {
    /// Send once this many metrics are waiting.
    #[serde(default = "default_batch_max_metrics")]
    pub batch_max_metrics: usize,
    /// Send once the oldest waiting metric is this old.
    #[serde(default = "default_batch_max_age_ms")]
    pub batch_max_age_ms: u64,
    /// First retry delay.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Retry delays double up to this.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
}

fn default_batch_max_metrics() -> usize {
    5_000
}
fn default_batch_max_age_ms() -> u64 {
    1_000
}
fn default_retry_initial_ms() -> u64 {
    100
}
fn default_retry_max_ms() -> u64 {
    30_000
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            batch_max_metrics: default_batch_max_metrics(),
            batch_max_age_ms: default_batch_max_age_ms(),
            retry_initial_ms: default_retry_initial_ms(),
            retry_max_ms: default_retry_max_ms(),
        }
    }
}

impl RunnerConfig {
    /// The config keys this struct reads.
    pub const KEYS: &'static [&'static str] = &[
        "batch_max_metrics",
        "batch_max_age_ms",
        "retry_initial_ms",
        "retry_max_ms",
    ];

    /// Every problem with the values.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.batch_max_metrics == 0 {
            p.push("`batch_max_metrics` must be at least 1".to_owned());
        }
        if self.retry_initial_ms == 0 {
            p.push("`retry_initial_ms` must be at least 1".to_owned());
        }
        if self.retry_max_ms < self.retry_initial_ms {
            p.push("`retry_max_ms` must not be below `retry_initial_ms`".to_owned());
        }
        p
    }
}

/// How the daemon stops a runner.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    /// Cancelled when no more input will come: close the queue, send what is
    /// queued, close the sink, return.
    pub drain: CancellationToken,
    /// Cancelled when the shutdown deadline passed: stop retrying; what is
    /// still unsent is saved in the sink's spool if it has one, else dropped
    /// and counted as `shutdown`.
    pub abort: CancellationToken,
    /// Cancelled when a reload replaces the sink: finish the send in
    /// progress (a retry wait is cut short), close the sink, and return the
    /// queue and what is unsent as a [`Leftover`] for the new runner.
    pub handover: CancellationToken,
}

impl Stop {
    /// A stop of one sink under `self` (the daemon's): the daemon's drain
    /// and abort reach it, its own handover reaches no other.
    pub fn child(&self) -> Stop {
        Stop {
            drain: self.drain.child_token(),
            abort: self.abort.child_token(),
            handover: CancellationToken::new(),
        }
    }
}

/// What a replaced runner hands to its successor: its queues (oldest first;
/// a runner that was itself a successor may still hold its predecessor's)
/// and the views it had taken but not delivered.
#[derive(Debug)]
pub struct Leftover {
    /// Queues to empty before the new runner's own, oldest first.
    pub queues: Vec<SinkReceiver>,
    /// Taken from a queue, not yet delivered: sent first.
    pub pending: Vec<BatchView>,
}

/// The longest `Retry-After` a sink honours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Exponential backoff with full jitter between half and the whole delay.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Start at `initial`, double up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The next delay; `hint` (a server's `Retry-After`) wins when longer.
    pub fn next_delay(&mut self, hint: Option<Duration>) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jittered = base / 2 + base.mul_f64(fastrand::f64() / 2.0);
        match hint {
            // A server's hint is honoured, up to a cap, so a hostile or broken
            // `Retry-After` cannot park the sink for hours.
            Some(h) if h > jittered => h.min(MAX_RETRY_AFTER),
            _ => jittered,
        }
    }

    /// Back to the initial delay after a success.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

struct Telemetry {
    sent_metrics: Counter,
    sent_points: Counter,
    sent_bytes: Counter,
    retries: Counter,
    dropped_rejected: Counter,
    dropped_shutdown: Counter,
    skipped_string: Counter,
    skipped_bool: Counter,
    skipped_non_finite: Counter,
    skipped_invalid_name: Counter,
    duration_ok: Histogram,
    duration_retry: Histogram,
    duration_rejected: Histogram,
}

impl Telemetry {
    fn new(sink: &str, kind: &'static str) -> Telemetry {
        let s = sink.to_owned();
        let sent =
            |name: &'static str| metrics::counter!(name, "sink" => s.clone(), "type" => kind);
        let dropped = |reason: &'static str| metrics::counter!(telemetry::SINK_DROPPED_METRICS, "sink" => s.clone(), "reason" => reason);
        let skipped = |reason: &'static str| metrics::counter!(telemetry::SINK_SKIPPED_POINTS, "sink" => s.clone(), "reason" => reason);
        let duration = |outcome: &'static str| metrics::histogram!(telemetry::SINK_REQUEST_DURATION, "sink" => s.clone(), "outcome" => outcome);
        Telemetry {
            sent_metrics: sent(telemetry::SINK_SENT_METRICS),
            sent_points: sent(telemetry::SINK_SENT_POINTS),
            sent_bytes: sent(telemetry::SINK_SENT_BYTES),
            retries: metrics::counter!(telemetry::SINK_RETRIES, "sink" => s.clone()),
            dropped_rejected: dropped("rejected"),
            dropped_shutdown: dropped("shutdown"),
            skipped_string: skipped("string_value"),
            skipped_bool: skipped("bool_value"),
            skipped_non_finite: skipped("non_finite_value"),
            skipped_invalid_name: skipped("invalid_name"),
            duration_ok: duration("ok"),
            duration_retry: duration("retry"),
            duration_rejected: duration("rejected"),
        }
    }

    fn sent(&self, s: &Sent) {
        self.sent_metrics.increment(s.metrics as u64);
        self.sent_points.increment(s.points as u64);
        self.sent_bytes.increment(s.bytes as u64);
        self.skipped_string.increment(s.skipped.string as u64);
        self.skipped_bool.increment(s.skipped.bool as u64);
        self.skipped_non_finite
            .increment(s.skipped.non_finite as u64);
        self.skipped_invalid_name
            .increment(s.skipped.invalid_name as u64);
    }
}

/// Runs one sink until its queue is closed and drained (see [`Stop`]).
pub struct Runner<S: Sink> {
    sink: S,
    rx: SinkReceiver,
    /// A predecessor's queues, emptied before `rx`, oldest first.
    earlier: std::collections::VecDeque<SinkReceiver>,
    inherited: Vec<BatchView>,
    cfg: RunnerConfig,
    telemetry: Telemetry,
    backoff: Backoff,
    failing: bool,
    last_rejection_log: Option<Instant>,
    suppressed_rejections: u64,
}

impl<S: Sink> Runner<S> {
    /// A runner for `sink` (of type `kind`, for labels) fed by `rx`.
    pub fn new(sink: S, kind: &'static str, rx: SinkReceiver, cfg: RunnerConfig) -> Runner<S> {
        let telemetry = Telemetry::new(rx.name(), kind);
        let backoff = Backoff::new(
            Duration::from_millis(cfg.retry_initial_ms),
            Duration::from_millis(cfg.retry_max_ms),
        );
        Runner {
            sink,
            rx,
            earlier: std::collections::VecDeque::new(),
            inherited: Vec::new(),
            cfg,
            telemetry,
            backoff,
            failing: false,
            last_rejection_log: None,
            suppressed_rejections: 0,
        }
    }

    /// Take over a replaced runner's queues and unsent views: they are sent
    /// before anything of this runner's own queue.
    #[must_use]
    pub fn succeeding(mut self, leftover: Leftover) -> Runner<S> {
        self.earlier.extend(leftover.queues);
        self.inherited = leftover.pending;
        self
    }

    /// Drain the queue until `stop.drain`, then send what is left and close.
    /// Returns the queue and what is unsent when `stop.handover` ended it.
    pub async fn run(mut self, stop: Stop) -> Option<Leftover> {
        let max_age = Duration::from_millis(self.cfg.batch_max_age_ms);
        let mut pending: Vec<BatchView> = std::mem::take(&mut self.inherited);
        let mut pending_metrics: usize = pending.iter().map(BatchView::len).sum();
        let mut oldest: Option<Instant> = (!pending.is_empty()).then(Instant::now);
        let mut draining = false;
        let mut handed_over = false;
        let gauges = self.rx.gauge_refresher().map(tokio::spawn);
        loop {
            let due = oldest.map(|t| t + max_age);
            let full = pending_metrics >= self.cfg.batch_max_metrics;
            tokio::select! {
                biased;
                () = stop.handover.cancelled() => {
                    handed_over = true;
                    break;
                }
                () = stop.drain.cancelled(), if !draining => {
                    // Refuse new input; what is queued is still received below.
                    draining = true;
                    self.rx.close();
                    self.earlier.iter_mut().for_each(SinkReceiver::close);
                }
                () = std::future::ready(()), if full => {
                    if self.flush(&mut pending, &stop).await == Flushed::HandedOver {
                        handed_over = true;
                        break;
                    }
                    pending_metrics = 0;
                    oldest = None;
                }
                view = next_view(&mut self.earlier, &mut self.rx) => match view {
                    Some(v) => {
                        pending_metrics += v.len();
                        pending.push(v);
                        oldest.get_or_insert_with(Instant::now);
                    }
                    None => break,
                },
                () = sleep_until_opt(due) => {
                    if self.flush(&mut pending, &stop).await == Flushed::HandedOver {
                        handed_over = true;
                        break;
                    }
                    pending_metrics = 0;
                    oldest = None;
                }
            }
        }
        if !handed_over {
            self.flush(&mut pending, &stop).await;
        }
        if let Err(e) = self.sink.close().await {
            tracing::error!(sink = self.rx.name(), error = %e, "closing sink failed");
        }
        if let Some(g) = gauges {
            g.abort();
            self.rx.refresh_gauges();
        }
        if handed_over {
            tracing::debug!(
                sink = self.rx.name(),
                unsent = pending.len(),
                "sink handed its queue over"
            );
            let mut queues: Vec<SinkReceiver> = self.earlier.into();
            queues.push(self.rx);
            return Some(Leftover { queues, pending });
        }
        tracing::debug!(sink = self.rx.name(), "sink stopped");
        None
    }

    /// Send `pending` (clearing it) unless a handover comes first between
    /// attempts: then it is left as it is, for the successor.
    async fn flush(&mut self, pending: &mut Vec<BatchView>, stop: &Stop) -> Flushed {
        if pending.is_empty() {
            return Flushed::Done;
        }
        if pending.iter().all(BatchView::is_empty) {
            // Only spool records that did not decode: nothing to send.
            self.rx.delivered(pending);
            pending.clear();
            return Flushed::Done;
        }
        if stop.abort.is_cancelled() && self.rx.has_spool() {
            self.drop_for_shutdown(pending);
            pending.clear();
            return Flushed::Done;
        }
        self.sink.new_batch();
        loop {
            if stop.handover.is_cancelled() && !stop.abort.is_cancelled() {
                return Flushed::HandedOver;
            }
            let started = Instant::now();
            // Past the deadline a send stuck on a stalled target must not
            // keep what only memory holds from reaching the spool.
            let outcome = if stop.abort.is_cancelled() {
                Some(self.sink.send(pending).await)
            } else {
                tokio::select! {
                    r = self.sink.send(pending) => Some(r),
                    () = stop.abort.cancelled() => None,
                }
            };
            let Some(outcome) = outcome else {
                self.drop_for_shutdown(pending);
                break;
            };
            match outcome {
                Ok(sent) => {
                    self.telemetry
                        .duration_ok
                        .record(started.elapsed().as_secs_f64());
                    self.telemetry.sent(&sent);
                    if sent.rejected > 0 {
                        self.telemetry
                            .dropped_rejected
                            .increment(sent.rejected as u64);
                        let message = sent.rejection.as_deref().unwrap_or("no reason given");
                        self.log_rejection(sent.rejected, message);
                    }
                    self.backoff.reset();
                    if self.failing {
                        self.failing = false;
                        tracing::info!(sink = self.rx.name(), "sink recovered");
                    }
                    self.rx.delivered(pending);
                    break;
                }
                Err(SinkError::Rejected { message }) => {
                    self.telemetry
                        .duration_rejected
                        .record(started.elapsed().as_secs_f64());
                    let metrics: usize = pending.iter().map(BatchView::len).sum();
                    self.telemetry.dropped_rejected.increment(metrics as u64);
                    self.log_rejection(metrics, &message);
                    self.rx.delivered(pending);
                    break;
                }
                Err(SinkError::Retryable {
                    message,
                    retry_after,
                }) => {
                    self.telemetry
                        .duration_retry
                        .record(started.elapsed().as_secs_f64());
                    if !self.failing {
                        self.failing = true;
                        tracing::warn!(sink = self.rx.name(), error = %message, "sink failing, retrying with backoff");
                    }
                    if stop.abort.is_cancelled() {
                        self.drop_for_shutdown(pending);
                        break;
                    }
                    let delay = self.backoff.next_delay(retry_after);
                    self.telemetry.retries.increment(1);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stop.handover.cancelled() => {}
                        () = stop.abort.cancelled() => {
                            self.drop_for_shutdown(pending);
                            break;
                        }
                    }
                }
            }
        }
        // Releases the views' room in the queue.
        pending.clear();
        Flushed::Done
    }

    fn drop_for_shutdown(&mut self, pending: &[BatchView]) {
        if self.rx.has_spool() {
            let unsaved = self.rx.spill(pending);
            let saved: usize = pending
                .iter()
                .filter(|v| !v.is_spooled())
                .map(BatchView::len)
                .sum::<usize>()
                - unsaved;
            self.telemetry.dropped_shutdown.increment(unsaved as u64);
            tracing::warn!(
                sink = self.rx.name(),
                saved,
                lost = unsaved,
                "shutdown deadline passed before the sink took everything; unsent metrics kept in the spool"
            );
            return;
        }
        let metrics: usize = pending.iter().map(BatchView::len).sum();
        self.telemetry.dropped_shutdown.increment(metrics as u64);
        tracing::error!(
            sink = self.rx.name(),
            metrics,
            "shutdown deadline passed while the sink was failing; dropping unsent metrics"
        );
    }

    fn log_rejection(&mut self, metrics: usize, message: &str) {
        // At most one WARN per 10 s per sink, with a count of what was not logged.
        let now = Instant::now();
        let due = self
            .last_rejection_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10));
        if due {
            tracing::warn!(
                sink = self.rx.name(),
                metrics,
                suppressed = self.suppressed_rejections,
                error = %message,
                "target rejected metrics; dropped"
            );
            self.last_rejection_log = Some(now);
            self.suppressed_rejections = 0;
        } else {
            self.suppressed_rejections += 1;
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Flushed {
    Done,
    HandedOver,
}

/// The next view: from a predecessor's queues first (each ends once the
/// submits that still held it are done), then from the runner's own.
async fn next_view(
    earlier: &mut std::collections::VecDeque<SinkReceiver>,
    rx: &mut SinkReceiver,
) -> Option<BatchView> {
    while let Some(first) = earlier.front_mut() {
        if let Some(v) = first.recv().await {
            return Some(v);
        }
        earlier.pop_front();
    }
    rx.recv().await
}

async fn sleep_until_opt(due: Option<Instant>) {
    match due {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use conflux_core::filter::Filter;
    use conflux_core::pipeline::{QueueConfig, SinkSpec, WhenFull};
    use conflux_core::{Batch, Metric, Pipeline};

    use super::*;

    /// Records what it is sent; fails according to a script.
    #[derive(Clone, Default)]
    struct Probe {
        log: Arc<Mutex<Vec<Vec<String>>>>,
        script: Arc<Mutex<Vec<Result<(), SinkError>>>>,
        calls: Arc<Mutex<usize>>,
        closed: Arc<Mutex<bool>>,
    }

    impl Sink for Probe {
        async fn send(&mut self, batch: &[BatchView]) -> Result<Sent, SinkError> {
            *self.calls.lock().unwrap() += 1;
            let next = {
                let mut s = self.script.lock().unwrap();
                if s.is_empty() { Ok(()) } else { s.remove(0) }
            };
            next?;
            let names: Vec<String> = batch
                .iter()
                .flat_map(|v| v.iter().map(|m| m.name().to_owned()))
                .collect();
            let n = names.len();
            self.log.lock().unwrap().push(names);
            Ok(Sent {
                metrics: n,
                points: n,
                ..Sent::default()
            })
        }
        async fn close(&mut self) -> Result<(), SinkError> {
            *self.closed.lock().unwrap() = true;
            Ok(())
        }
    }

    type Handle = tokio::task::JoinHandle<Option<Leftover>>;

    fn probe_spec() -> SinkSpec {
        SinkSpec {
            name: "probe".into(),
            filter: Filter::default(),
            queue: QueueConfig {
                max_metrics: 100,
                when_full: WhenFull::Block,
            },
            spool: None,
            max_new_series_per_hour: None,
        }
    }

    fn setup(cfg: RunnerConfig, probe: Probe) -> (Pipeline, Handle, Stop) {
        let (p, mut rx) = Pipeline::new(vec![probe_spec()]);
        let stop = Stop::default();
        let runner = Runner::new(probe, "probe", rx.remove(0), cfg);
        let h = tokio::spawn(runner.run(stop.clone()));
        (p, h, stop)
    }

    fn batch(names: &[&str]) -> Batch {
        names
            .iter()
            .map(|n| Metric::new(*n).field("v", 1.0))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_handover_passes_queues_and_unsent_views_to_the_successor() {
        let dead = Probe::default();
        *dead.script.lock().unwrap() = (0..100).map(|_| Err(SinkError::retry("down"))).collect();
        let cfg = RunnerConfig {
            batch_max_metrics: 2,
            ..RunnerConfig::default()
        };
        let (mut p, h, stop) = setup(cfg.clone(), dead.clone());
        let i = p.ingest("x");
        i.submit(batch(&["a", "b"])).await.unwrap();
        i.submit(batch(&["c"])).await.unwrap();
        // The first batch is being retried against the dead target.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(*dead.calls.lock().unwrap() >= 2);

        // A reload replaces the sink: a new queue, the old runner hands over.
        let mut new_rx = p
            .reconfigure(vec![conflux_core::pipeline::SinkChange::New(probe_spec())])
            .unwrap();
        i.submit(batch(&["d"])).await.unwrap();
        stop.handover.cancel();
        let leftover = h.await.unwrap().expect("a handover returns the queue");
        assert!(*dead.closed.lock().unwrap());
        assert_eq!(leftover.queues.len(), 1);
        assert_eq!(leftover.pending.len(), 1);

        let live = Probe::default();
        let stop = Stop::default();
        let h = tokio::spawn(
            Runner::new(live.clone(), "probe", new_rx.remove(0), cfg)
                .succeeding(leftover)
                .run(stop.clone()),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        stop.drain.cancel();
        assert!(h.await.unwrap().is_none());
        // The unsent batch first, then the old queue, then the new one.
        assert_eq!(
            *live.log.lock().unwrap(),
            vec![vec!["a", "b"], vec!["c", "d"]]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rebatches_by_size() {
        let probe = Probe::default();
        let cfg = RunnerConfig {
            batch_max_metrics: 3,
            batch_max_age_ms: 60_000,
            ..RunnerConfig::default()
        };
        let (p, h, stop) = setup(cfg, probe.clone());
        let i = p.ingest("x");
        i.submit(batch(&["a", "b"])).await.unwrap();
        i.submit(batch(&["c"])).await.unwrap();
        i.submit(batch(&["d"])).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(*probe.log.lock().unwrap(), vec![vec!["a", "b", "c"]]);
        stop.drain.cancel();
        h.await.unwrap();
        assert_eq!(probe.log.lock().unwrap()[1], vec!["d"]);
        assert!(*probe.closed.lock().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_by_age() {
        let probe = Probe::default();
        let cfg = RunnerConfig {
            batch_max_metrics: 1000,
            batch_max_age_ms: 500,
            ..RunnerConfig::default()
        };
        let (p, _h, _stop) = setup(cfg, probe.clone());
        p.ingest("x").submit(batch(&["a"])).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(probe.log.lock().unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(*probe.log.lock().unwrap(), vec![vec!["a"]]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_errors_and_loses_nothing() {
        let probe = Probe::default();
        *probe.script.lock().unwrap() = vec![
            Err(SinkError::retry("503")),
            Err(SinkError::retry("503")),
            Ok(()),
        ];
        let cfg = RunnerConfig {
            batch_max_metrics: 1,
            ..RunnerConfig::default()
        };
        let (p, h, stop) = setup(cfg, probe.clone());
        p.ingest("x").submit(batch(&["a"])).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(*probe.calls.lock().unwrap(), 3);
        assert_eq!(*probe.log.lock().unwrap(), vec![vec!["a"]]);
        stop.drain.cancel();
        h.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn rejected_batches_are_dropped_not_retried() {
        let probe = Probe::default();
        *probe.script.lock().unwrap() = vec![Err(SinkError::Rejected {
            message: "400 bad".into(),
        })];
        let cfg = RunnerConfig {
            batch_max_metrics: 1,
            ..RunnerConfig::default()
        };
        let (p, h, stop) = setup(cfg, probe.clone());
        let i = p.ingest("x");
        i.submit(batch(&["bad"])).await.unwrap();
        i.submit(batch(&["good"])).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(*probe.calls.lock().unwrap(), 2);
        assert_eq!(*probe.log.lock().unwrap(), vec![vec!["good"]]);
        stop.drain.cancel();
        h.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn abort_stops_retrying_a_dead_sink() {
        let probe = Probe::default();
        *probe.script.lock().unwrap() = (0..1000).map(|_| Err(SinkError::retry("down"))).collect();
        let (p, h, stop) = setup(RunnerConfig::default(), probe.clone());
        p.ingest("x").submit(batch(&["a"])).await.unwrap();
        stop.drain.cancel();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!h.is_finished());
        stop.abort.cancel();
        h.await.unwrap();
        assert!(probe.log.lock().unwrap().is_empty());
        assert!(*probe.closed.lock().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn drain_sends_everything_queued_and_refuses_more() {
        let probe = Probe::default();
        let cfg = RunnerConfig {
            batch_max_metrics: 1000,
            batch_max_age_ms: 60_000,
            ..RunnerConfig::default()
        };
        let (p, h, stop) = setup(cfg, probe.clone());
        let i = p.ingest("x");
        i.submit(batch(&["a"])).await.unwrap();
        i.submit(batch(&["b"])).await.unwrap();
        stop.drain.cancel();
        h.await.unwrap();
        assert_eq!(*probe.log.lock().unwrap(), vec![vec!["a", "b"]]);
        assert!(i.submit(batch(&["c"])).await.is_err());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_honours_hints() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let d1 = b.next_delay(None);
        assert!(
            d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
            "{d1:?}"
        );
        let d2 = b.next_delay(None);
        assert!(
            d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200),
            "{d2:?}"
        );
        b.next_delay(None);
        let d4 = b.next_delay(None);
        assert!(d4 <= Duration::from_millis(400), "{d4:?}");
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        b.reset();
        assert!(b.next_delay(None) <= Duration::from_millis(100));
    }

    #[test]
    fn config_problems_are_listed() {
        let cfg = RunnerConfig {
            batch_max_metrics: 0,
            retry_initial_ms: 10,
            retry_max_ms: 5,
            ..RunnerConfig::default()
        };
        assert_eq!(cfg.problems().len(), 2);
        assert!(RunnerConfig::default().problems().is_empty());
    }
}
