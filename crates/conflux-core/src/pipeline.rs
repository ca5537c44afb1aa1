//! Fan-out: every listener submits batches through an [`Ingest`] handle; each
//! sink has its own bounded queue, drained by its own task through a
//! [`SinkReceiver`].
//!
//! `submit` first reserves room in the queue of every sink whose filter
//! matches, then hands the batch to all of them at once, so a batch is either
//! in every matching queue or (on overload or shutdown) in none: the moment
//! `submit` returns `Ok` is the acknowledgement a listener passes on to its
//! client. Queues are bounded in metrics, not batches, so one 5,000-line HTTP
//! body and one TCP line weigh what they hold.
//!
//! A queue is an unbounded channel behind a semaphore of `max_metrics`
//! permits; each queued [`BatchView`] holds its permits until the sink has
//! finished with it. A disk spool (issue 8) slots in behind the same
//! reservation step without any change to listeners.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};
use tokio::time::Instant;

use crate::filter::Filter;
use crate::metric::{Batch, MetricRef};
use crate::telemetry;

/// What a sink's queue does when a batch does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: TCP listeners stop reading, HTTP listeners wait up to
    /// their bound and then answer 503.
    #[default]
    Block,
    /// Drop the batch for this sink and count it.
    DropNewest,
}

impl WhenFull {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WhenFull::Block => "block",
            WhenFull::DropNewest => "drop_newest",
        }
    }
}

/// Queue settings of one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Metrics the queue holds, counting those the sink is still sending.
    pub max_metrics: usize,
    /// What happens when a batch does not fit.
    pub when_full: WhenFull,
}

/// One sink as the pipeline sees it.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// The sink's config name.
    pub name: String,
    /// Its routing filter.
    pub filter: Filter,
    /// Its queue.
    pub queue: QueueConfig,
}

/// Why a batch was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// A blocking sink had no room within the wait bound.
    #[error("sink `{sink}` is overloaded")]
    Overloaded {
        /// The sink that had no room.
        sink: Arc<str>,
    },
    /// The pipeline is shutting down.
    #[error("shutting down")]
    Closed,
}

/// The outcome of an accepted submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ack {
    /// Sinks that queued the batch (or part of it, after filtering).
    pub queued: usize,
    /// Sinks that dropped it under `drop_newest`.
    pub dropped: usize,
}

struct SinkQueue {
    name: Arc<str>,
    filter: Filter,
    max_metrics: usize,
    when_full: WhenFull,
    permits: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<BatchView>,
    depth: Gauge,
    dropped_full: Counter,
    dropped_closed: Counter,
}

impl SinkQueue {
    fn permits_for(&self, metrics: usize) -> u32 {
        // A batch larger than the whole queue still passes when the queue is empty.
        metrics.min(self.max_metrics).min(u32::MAX as usize) as u32
    }
}

/// The fan-out table: build it once from the sink specs, then hand out an
/// [`Ingest`] per listener.
pub struct Pipeline {
    sinks: Vec<Arc<SinkQueue>>,
}

impl Pipeline {
    /// Build the queues. Returns the pipeline and, in the order of `specs`,
    /// the receiving end of each sink's queue.
    pub fn new(specs: Vec<SinkSpec>) -> (Pipeline, Vec<SinkReceiver>) {
        let mut sinks = Vec::with_capacity(specs.len());
        let mut receivers = Vec::with_capacity(specs.len());
        for spec in specs {
            let name: Arc<str> = spec.name.into();
            let max_metrics = spec.queue.max_metrics.max(1);
            let permits = Arc::new(Semaphore::new(max_metrics.min(Semaphore::MAX_PERMITS)));
            let (tx, rx) = mpsc::unbounded_channel();
            let labels = [("sink", name.to_string())];
            metrics::gauge!(telemetry::SINK_QUEUE_CAPACITY_METRICS, &labels)
                .set(max_metrics as f64);
            let q = Arc::new(SinkQueue {
                name: name.clone(),
                filter: spec.filter,
                max_metrics,
                when_full: spec.queue.when_full,
                permits: permits.clone(),
                tx,
                depth: metrics::gauge!(telemetry::SINK_QUEUE_METRICS, &labels),
                dropped_full: metrics::counter!(
                    telemetry::SINK_DROPPED_METRICS,
                    "sink" => name.to_string(),
                    "reason" => "queue_full"
                ),
                dropped_closed: metrics::counter!(
                    telemetry::SINK_DROPPED_METRICS,
                    "sink" => name.to_string(),
                    "reason" => "closed"
                ),
            });
            receivers.push(SinkReceiver {
                name,
                rx,
                permits,
                max_metrics,
            });
            sinks.push(q);
        }
        (Pipeline { sinks }, receivers)
    }

    /// The handle for listener `input`: it feeds every sink whose `inputs`
    /// accept that name.
    pub fn ingest(&self, input: &str) -> Ingest {
        let targets: Vec<_> = self
            .sinks
            .iter()
            .filter(|s| s.filter.accepts_input(input))
            .cloned()
            .collect();
        Ingest {
            input: input.into(),
            targets: targets.into(),
        }
    }
}

/// The cheap, cloneable handle a listener submits batches through.
#[derive(Clone)]
pub struct Ingest {
    input: Arc<str>,
    targets: Arc<[Arc<SinkQueue>]>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("input", &self.input)
            .field(
                "sinks",
                &self.targets.iter().map(|s| &*s.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

enum Reserved {
    Permit(OwnedSemaphorePermit),
    Dropped,
}

/// One sink's share of a submit: what it gets and the room reserved for it.
struct Planned<'a> {
    queue: &'a SinkQueue,
    pick: Option<Box<[u32]>>,
    metrics: usize,
    reserved: Reserved,
}

impl Ingest {
    /// The listener name this handle submits for.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Number of sinks this listener can reach.
    pub fn sink_count(&self) -> usize {
        self.targets.len()
    }

    /// Offer a batch to every matching sink, waiting as long as blocking sinks
    /// need (TCP listeners: the kernel pushes back on the client meanwhile).
    ///
    /// # Errors
    /// [`SubmitError::Closed`] during shutdown.
    pub async fn submit(&self, batch: Batch) -> Result<Ack, SubmitError> {
        self.submit_until(Arc::new(batch), None).await
    }

    /// As [`Ingest::submit`], but give up after `wait` if a blocking sink has
    /// no room (HTTP listeners then answer 503 with `Retry-After`).
    ///
    /// # Errors
    /// [`SubmitError::Overloaded`] past the wait, [`SubmitError::Closed`] during shutdown.
    pub async fn submit_timeout(&self, batch: Batch, wait: Duration) -> Result<Ack, SubmitError> {
        self.submit_until(Arc::new(batch), Some(Instant::now() + wait))
            .await
    }

    /// The general form: an already shared batch and an optional deadline.
    ///
    /// # Errors
    /// As [`Ingest::submit_timeout`].
    pub async fn submit_until(
        &self,
        batch: Arc<Batch>,
        deadline: Option<Instant>,
    ) -> Result<Ack, SubmitError> {
        if batch.is_empty() {
            return Ok(Ack::default());
        }
        // Step 1: choose what each sink gets and reserve room for it.
        let mut plan: Vec<Planned<'_>> = Vec::with_capacity(self.targets.len());
        for q in self.targets.iter() {
            let pick = if q.filter.has_metric_rules() {
                let mut matcher = q.filter.matcher();
                let idx: Box<[u32]> = batch
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| matcher.matches(m))
                    .map(|(i, _)| i as u32)
                    .collect();
                if idx.is_empty() {
                    continue;
                }
                (idx.len() < batch.len()).then_some(idx)
            } else {
                None
            };
            let metrics = pick.as_ref().map_or(batch.len(), |p| p.len());
            let n = q.permits_for(metrics);
            let reserved = match q.when_full {
                WhenFull::DropNewest => match q.permits.clone().try_acquire_many_owned(n) {
                    Ok(p) => Reserved::Permit(p),
                    Err(TryAcquireError::NoPermits) => Reserved::Dropped,
                    Err(TryAcquireError::Closed) => return Err(SubmitError::Closed),
                },
                WhenFull::Block => {
                    let acquire = q.permits.clone().acquire_many_owned(n);
                    let permit = match deadline {
                        None => acquire.await,
                        Some(d) => match tokio::time::timeout_at(d, acquire).await {
                            Ok(p) => p,
                            // Dropping `plan` releases what was reserved so far.
                            Err(_) => {
                                return Err(SubmitError::Overloaded {
                                    sink: q.name.clone(),
                                });
                            }
                        },
                    };
                    Reserved::Permit(permit.map_err(|_| SubmitError::Closed)?)
                }
            };
            plan.push(Planned {
                queue: q,
                pick,
                metrics,
                reserved,
            });
        }

        // Step 2: every reservation holds; queue everywhere.
        let mut ack = Ack::default();
        let mut closed = false;
        for Planned {
            queue: q,
            pick,
            metrics,
            reserved,
        } in plan
        {
            match reserved {
                Reserved::Dropped => {
                    q.dropped_full.increment(metrics as u64);
                    ack.dropped += 1;
                }
                Reserved::Permit(permit) => {
                    q.depth.increment(metrics as f64);
                    let view = BatchView {
                        batch: batch.clone(),
                        pick,
                        metrics,
                        _hold: Some(Hold {
                            _permit: permit,
                            depth: q.depth.clone(),
                            metrics,
                        }),
                    };
                    if q.tx.send(view).is_err() {
                        q.dropped_closed.increment(metrics as u64);
                        closed = true;
                    } else {
                        ack.queued += 1;
                    }
                }
            }
        }
        if closed {
            Err(SubmitError::Closed)
        } else {
            Ok(ack)
        }
    }
}

struct Hold {
    _permit: OwnedSemaphorePermit,
    depth: Gauge,
    metrics: usize,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.depth.decrement(self.metrics as f64);
    }
}

/// What a sink receives: a shared batch, possibly narrowed to the metrics its
/// filter selected. Holds its room in the queue until dropped.
pub struct BatchView {
    batch: Arc<Batch>,
    pick: Option<Box<[u32]>>,
    metrics: usize,
    /// Releases the view's room in the queue when dropped.
    _hold: Option<Hold>,
}

impl std::fmt::Debug for BatchView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl BatchView {
    /// A view of a whole batch outside any queue (tests, benchmarks, encoders).
    pub fn whole(batch: Arc<Batch>) -> BatchView {
        BatchView {
            metrics: batch.len(),
            batch,
            pick: None,
            _hold: None,
        }
    }

    /// Number of metrics in the view.
    pub fn len(&self) -> usize {
        self.metrics
    }

    /// True when the view holds no metric.
    pub fn is_empty(&self) -> bool {
        self.metrics == 0
    }

    /// Number of points (field values) in the view.
    pub fn points(&self) -> usize {
        match &self.pick {
            None => self.batch.points(),
            Some(_) => self.iter().map(|m| m.fields().len()).sum(),
        }
    }

    /// The metrics of the view, in batch order.
    pub fn iter(&self) -> impl Iterator<Item = MetricRef<'_>> + '_ {
        let (all, pick) = match &self.pick {
            None => (Some(self.batch.iter()), None),
            Some(p) => (None, Some(p.iter().map(|&i| self.batch.get(i as usize)))),
        };
        all.into_iter().flatten().chain(pick.into_iter().flatten())
    }

    /// The shared batch behind the view.
    pub fn batch(&self) -> &Arc<Batch> {
        &self.batch
    }
}

/// The receiving end of one sink's queue.
pub struct SinkReceiver {
    name: Arc<str>,
    rx: mpsc::UnboundedReceiver<BatchView>,
    permits: Arc<Semaphore>,
    max_metrics: usize,
}

impl SinkReceiver {
    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next batch; `None` once the queue is closed and drained.
    pub async fn recv(&mut self) -> Option<BatchView> {
        self.rx.recv().await
    }

    /// The next batch if one is waiting.
    pub fn try_recv(&mut self) -> Option<BatchView> {
        self.rx.try_recv().ok()
    }

    /// Stop taking new batches: later submits fail with `Closed` and blocked
    /// submitters wake up; what is queued can still be received.
    pub fn close(&mut self) {
        self.permits.close();
        self.rx.close();
    }

    /// Metrics queued or still held by the sink.
    pub fn depth(&self) -> usize {
        self.max_metrics
            .saturating_sub(self.permits.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::FilterConfig;
    use crate::metric::Metric;

    fn spec(name: &str, filter: &str, max: usize, when_full: WhenFull) -> SinkSpec {
        let cfg: FilterConfig = toml::from_str(filter).unwrap();
        SinkSpec {
            name: name.into(),
            filter: Filter::new(&cfg).unwrap(),
            queue: QueueConfig {
                max_metrics: max,
                when_full,
            },
        }
    }

    fn batch(names: &[&str]) -> Batch {
        names
            .iter()
            .map(|n| Metric::new(*n).tag("host", "a").field("v", 1.0))
            .collect()
    }

    fn names(v: &BatchView) -> Vec<String> {
        v.iter().map(|m| m.name().to_owned()).collect()
    }

    #[tokio::test]
    async fn routes_by_input_and_name() {
        let (p, mut rx) = Pipeline::new(vec![
            spec("all", "", 100, WhenFull::Block),
            spec("cpu_only", r#"namepass = ["cpu"]"#, 100, WhenFull::Block),
            spec("from_b", r#"inputs = ["b"]"#, 100, WhenFull::Block),
        ]);
        let a = p.ingest("a");
        assert_eq!(a.sink_count(), 2);
        let ack = a.submit(batch(&["cpu", "mem"])).await.unwrap();
        assert_eq!(
            ack,
            Ack {
                queued: 2,
                dropped: 0
            }
        );
        assert_eq!(names(&rx[0].try_recv().unwrap()), ["cpu", "mem"]);
        let v = rx[1].try_recv().unwrap();
        assert_eq!(names(&v), ["cpu"]);
        assert_eq!(v.points(), 1);
        assert!(rx[2].try_recv().is_none());

        // A batch with no metric for a sink's filter does not reach it at all.
        p.ingest("a").submit(batch(&["mem"])).await.unwrap();
        assert!(rx[1].try_recv().is_none());
    }

    #[tokio::test]
    async fn drop_newest_drops_whole_batches_when_full() {
        let (p, mut rx) = Pipeline::new(vec![spec("d", "", 3, WhenFull::DropNewest)]);
        let i = p.ingest("x");
        assert_eq!(i.submit(batch(&["a", "b"])).await.unwrap().queued, 1);
        assert_eq!(
            i.submit(batch(&["c", "d"])).await.unwrap(),
            Ack {
                queued: 0,
                dropped: 1
            }
        );
        assert_eq!(rx[0].depth(), 2);
        drop(rx[0].try_recv());
        assert_eq!(rx[0].depth(), 0);
        assert_eq!(i.submit(batch(&["e", "f"])).await.unwrap().queued, 1);
    }

    #[tokio::test]
    async fn block_waits_for_room_then_times_out_without_partial_delivery() {
        let (p, mut rx) = Pipeline::new(vec![
            spec("roomy", "", 100, WhenFull::Block),
            spec("tight", "", 2, WhenFull::Block),
        ]);
        let i = p.ingest("x");
        i.submit(batch(&["a", "b"])).await.unwrap();
        let err = i
            .submit_timeout(batch(&["c"]), Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            SubmitError::Overloaded {
                sink: "tight".into()
            }
        );
        // All or nothing: the roomy sink did not get the refused batch either.
        assert_eq!(rx[0].try_recv().map(|v| v.len()), Some(2));
        assert!(rx[0].try_recv().is_none());

        // Once the tight sink frees room, a waiting submit completes.
        let waiter = tokio::spawn({
            let i = i.clone();
            async move { i.submit(batch(&["c"])).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(rx[1].try_recv());
        assert_eq!(waiter.await.unwrap().unwrap().queued, 2);
    }

    #[tokio::test]
    async fn an_oversized_batch_passes_an_empty_queue() {
        let (p, mut rx) = Pipeline::new(vec![spec("s", "", 2, WhenFull::Block)]);
        p.ingest("x")
            .submit(batch(&["a", "b", "c", "d"]))
            .await
            .unwrap();
        assert_eq!(rx[0].try_recv().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn close_wakes_blocked_submitters_and_keeps_queued_data() {
        let (p, mut rx) = Pipeline::new(vec![spec("s", "", 1, WhenFull::Block)]);
        let i = p.ingest("x");
        i.submit(batch(&["a"])).await.unwrap();
        let waiter = tokio::spawn({
            let i = i.clone();
            async move { i.submit(batch(&["b"])).await }
        });
        tokio::task::yield_now().await;
        rx[0].close();
        assert_eq!(waiter.await.unwrap(), Err(SubmitError::Closed));
        assert_eq!(names(&rx[0].recv().await.unwrap()), ["a"]);
        drop(p);
        drop(i);
        assert!(rx[0].recv().await.is_none());
    }

    #[tokio::test]
    async fn empty_batches_are_acked_without_queueing() {
        let (p, mut rx) = Pipeline::new(vec![spec("s", "", 1, WhenFull::Block)]);
        assert_eq!(
            p.ingest("x").submit(Batch::new()).await.unwrap(),
            Ack::default()
        );
        assert!(rx[0].try_recv().is_none());
    }
}
