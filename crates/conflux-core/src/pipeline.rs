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
//! finished with it.
//!
//! A sink with a disk spool (`when_full = "spool"`) keeps the same memory
//! queue and adds a [`Spool`] behind it: a batch that finds no room in memory
//! (or every batch, when `durable`) is written to disk in the [`wire`] form
//! before `submit` returns, so the acknowledgement means "on disk". Order per
//! sink is kept by one rule: while the spool holds unread records, new
//! batches go to the spool too, and the receiver empties memory before it
//! reads the spool; so for one connection (whose submits follow each other)
//! everything in memory is older than everything unread on disk.
//!
//! A sink with `max_new_series_per_hour` narrows its share of each batch once
//! more, right after its filter: metrics of series it has not seen recently
//! pass while the hour's budget lasts, then are dropped and counted; known
//! series always pass (see [`cardinality`]). The limiter decides before room
//! is reserved, so a batch refused for want of room has still used budget,
//! and its retry finds those series known.
//!
//! The table is live: [`Pipeline::reconfigure`] (a config reload) swaps in
//! new filters and queues while listeners run. Each [`Ingest`] reads its
//! current targets once per submit; a queue taken out of the table is
//! dropped when the submits that still hold it finish, which closes its
//! channel, so its receiver hands out everything queued and then ends:
//! nothing accepted is lost to a reload.
//!
//! [`wire`]: crate::metric::wire

pub mod cardinality;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
pub use conflux_spool::Spool;
use conflux_spool::{Pos, SpoolError};
use metrics::{Counter, Gauge};
use serde::Deserialize;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::filter::Filter;
use crate::metric::{Batch, MetricRef, wire};
use crate::telemetry;
use cardinality::SinkLimit;

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
    /// Write the batch to the sink's disk spool (see [`SpoolSpec`]).
    Spool,
}

impl WhenFull {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WhenFull::Block => "block",
            WhenFull::DropNewest => "drop_newest",
            WhenFull::Spool => "spool",
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
    /// Its disk spool; used when `queue.when_full` is [`WhenFull::Spool`].
    pub spool: Option<SpoolSpec>,
    /// Its cardinality limit: at most this many new series per hour window
    /// (see [`cardinality`]); `None` for no limit.
    pub max_new_series_per_hour: Option<u64>,
}

/// A sink's open disk spool and how it is used.
#[derive(Clone)]
pub struct SpoolSpec {
    /// The open spool.
    pub spool: Spool,
    /// Write every batch to disk before acknowledging it, not only what
    /// overflows memory.
    pub durable: bool,
}

impl std::fmt::Debug for SpoolSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolSpec")
            .field("dir", &self.spool.dir())
            .field("durable", &self.durable)
            .finish()
    }
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
    /// Sinks that queued the batch (or part of it, after filtering), in
    /// memory or in their spool.
    pub queued: usize,
    /// Sinks that dropped it under `drop_newest`.
    pub dropped: usize,
}

struct SinkQueue {
    name: Arc<str>,
    max_metrics: usize,
    policy: Policy,
    permits: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<BatchView>,
    /// Cancelled when the receiver closes, so that a submit waiting for
    /// spool room wakes up as one waiting for memory does.
    closed: CancellationToken,
    depth: Gauge,
    dropped_full: Counter,
    dropped_closed: Counter,
    last_spool_error_log: AtomicU64,
}

/// A queue with what decides which metrics reach it: a reload that changes
/// only these keeps the queue.
struct Target {
    queue: Arc<SinkQueue>,
    filter: Filter,
    limit: Option<Arc<SinkLimit>>,
}

/// The targets one listener feeds, swapped whole on a reload.
struct Route {
    input: Arc<str>,
    targets: ArcSwap<Vec<Arc<Target>>>,
}

/// [`WhenFull`] with what it needs: `spool` always has its spool.
enum Policy {
    Block,
    DropNewest,
    Spool(SpoolSpec),
}

impl SinkQueue {
    fn permits_for(&self, metrics: usize) -> u32 {
        // A batch larger than the whole queue still passes when the queue is empty.
        metrics.min(self.max_metrics).min(u32::MAX as usize) as u32
    }
}

/// The fan-out table: build it from the sink specs, hand out an [`Ingest`]
/// per listener, [`reconfigure`](Pipeline::reconfigure) it on a reload.
pub struct Pipeline {
    sinks: Vec<Arc<Target>>,
    routes: Mutex<HashMap<Arc<str>, Arc<Route>>>,
}

/// One sink of a [`Pipeline::reconfigure`].
#[derive(Debug)]
pub enum SinkChange {
    /// Keep the sink's queue (and what it holds) with this filter and limit.
    Keep {
        /// The sink's name, as in the running table.
        name: String,
        /// Its routing filter from now on.
        filter: Filter,
        /// Its cardinality limit from now on; an unchanged value keeps the
        /// limiter's memory of known series.
        max_new_series_per_hour: Option<u64>,
    },
    /// A new queue: a new sink, or a changed one whose old queue its new
    /// runner empties first.
    New(SinkSpec),
}

/// A [`Pipeline::reconfigure`] named a sink to keep that is not running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sink `{0}` is not in the running pipeline")]
pub struct UnknownSink(pub String);

impl Pipeline {
    /// Build the queues. Returns the pipeline and, in the order of `specs`,
    /// the receiving end of each sink's queue.
    pub fn new(specs: Vec<SinkSpec>) -> (Pipeline, Vec<SinkReceiver>) {
        let mut sinks = Vec::with_capacity(specs.len());
        let mut receivers = Vec::with_capacity(specs.len());
        for spec in specs {
            let (target, rx) = new_queue(spec);
            receivers.push(rx);
            sinks.push(target);
        }
        let pipeline = Pipeline {
            sinks,
            routes: Mutex::new(HashMap::new()),
        };
        (pipeline, receivers)
    }

    /// Replace the table with `sinks`, in this order: kept sinks keep their
    /// queue, new ones get a queue whose receiver is returned (in the order
    /// of the `New` entries), sinks not named are taken out; every
    /// listener's targets are recomputed at once.
    ///
    /// # Errors
    /// A `Keep` of a sink that is not running; the table is then unchanged.
    pub fn reconfigure(
        &mut self,
        sinks: Vec<SinkChange>,
    ) -> Result<Vec<SinkReceiver>, UnknownSink> {
        for c in &sinks {
            if let SinkChange::Keep { name, .. } = c
                && !self.sinks.iter().any(|t| &*t.queue.name == name.as_str())
            {
                return Err(UnknownSink(name.clone()));
            }
        }
        let mut table = Vec::with_capacity(sinks.len());
        let mut receivers = Vec::new();
        for c in sinks {
            match c {
                SinkChange::Keep {
                    name,
                    filter,
                    max_new_series_per_hour,
                } => {
                    let Some(old) = self.sinks.iter().find(|t| *t.queue.name == *name) else {
                        unreachable!("checked above");
                    };
                    let limit = match (&old.limit, max_new_series_per_hour) {
                        (Some(l), Some(max)) if l.max_new_per_hour == max => Some(l.clone()),
                        (_, Some(max)) => Some(Arc::new(SinkLimit::new(
                            old.queue.name.clone(),
                            max,
                            Instant::now().into_std(),
                        ))),
                        (_, None) => None,
                    };
                    table.push(Arc::new(Target {
                        queue: old.queue.clone(),
                        filter,
                        limit,
                    }));
                }
                SinkChange::New(spec) => {
                    let (target, rx) = new_queue(spec);
                    receivers.push(rx);
                    table.push(target);
                }
            }
        }
        self.sinks = table;
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        for route in routes.values() {
            route.targets.store(Arc::new(self.targets_of(&route.input)));
        }
        Ok(receivers)
    }

    /// The handle for listener `input`: it feeds every sink whose `inputs`
    /// accept that name, as the table says at each submit.
    pub fn ingest(&self, input: &str) -> Ingest {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(route) = routes.get(input) {
            return Ingest {
                route: route.clone(),
            };
        }
        let input: Arc<str> = input.into();
        let route = Arc::new(Route {
            targets: ArcSwap::from_pointee(self.targets_of(&input)),
            input: input.clone(),
        });
        routes.insert(input, route.clone());
        Ingest { route }
    }

    fn targets_of(&self, input: &str) -> Vec<Arc<Target>> {
        self.sinks
            .iter()
            .filter(|t| t.filter.accepts_input(input))
            .cloned()
            .collect()
    }
}

/// A sink's queue and the receiving end of it.
fn new_queue(spec: SinkSpec) -> (Arc<Target>, SinkReceiver) {
    let name: Arc<str> = spec.name.into();
    let max_metrics = spec.queue.max_metrics.max(1);
    let permits = Arc::new(Semaphore::new(max_metrics.min(Semaphore::MAX_PERMITS)));
    let (tx, rx) = mpsc::unbounded_channel();
    let labels = [("sink", name.to_string())];
    metrics::gauge!(telemetry::SINK_QUEUE_CAPACITY_METRICS, &labels).set(max_metrics as f64);
    let spool = spec
        .spool
        .filter(|_| spec.queue.when_full == WhenFull::Spool);
    // `spool` without a spool behaves as `block`, which is what it
    // does anyway once the spool is full.
    let policy = match (spec.queue.when_full, &spool) {
        (WhenFull::DropNewest, _) => Policy::DropNewest,
        (_, Some(s)) => Policy::Spool(s.clone()),
        _ => Policy::Block,
    };
    let spool_gauges = spool.as_ref().map(|_| SpoolGauges::new(&name));
    let closed = CancellationToken::new();
    let limit = spec
        .max_new_series_per_hour
        .map(|max| Arc::new(SinkLimit::new(name.clone(), max, Instant::now().into_std())));
    let q = Arc::new(SinkQueue {
        name: name.clone(),
        max_metrics,
        policy,
        permits: permits.clone(),
        tx,
        closed: closed.clone(),
        last_spool_error_log: AtomicU64::new(0),
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
    if let (Some(s), Some(g)) = (&spool, &spool_gauges) {
        g.refresh(&s.spool);
    }
    let rx = SinkReceiver {
        name,
        rx,
        permits,
        max_metrics,
        spool,
        spool_gauges,
        closed,
        receiving: true,
        encode_buf: Vec::new(),
    };
    let target = Arc::new(Target {
        queue: q,
        filter: spec.filter,
        limit,
    });
    (target, rx)
}

/// The cheap, cloneable handle a listener submits batches through.
#[derive(Clone)]
pub struct Ingest {
    route: Arc<Route>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("input", &self.route.input)
            .field(
                "sinks",
                &self
                    .route
                    .targets
                    .load()
                    .iter()
                    .map(|t| t.queue.name.to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

enum Reserved {
    Permit(OwnedSemaphorePermit),
    Dropped,
    /// Goes to the sink's spool.
    Disk,
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
        &self.route.input
    }

    /// Number of sinks this listener can reach now.
    pub fn sink_count(&self) -> usize {
        self.route.targets.load().len()
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
        // The table as it is now; a reload meanwhile leaves this submit on
        // the queues it started with, which their receivers still empty.
        let targets = self.route.targets.load_full();
        // Step 1: choose what each sink gets and reserve room for it.
        let mut plan: Vec<Planned<'_>> = Vec::with_capacity(targets.len());
        for t in targets.iter() {
            let q = &*t.queue;
            let pick = if t.filter.has_metric_rules() {
                let mut matcher = t.filter.matcher();
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
            let pick = match &t.limit {
                Some(limit) => limit.apply(&batch, pick, Instant::now().into_std()),
                None => pick,
            };
            if pick.as_deref().is_some_and(<[u32]>::is_empty) {
                continue;
            }
            let metrics = pick.as_ref().map_or(batch.len(), |p| p.len());
            let n = q.permits_for(metrics);
            let reserved = match &q.policy {
                Policy::Spool(s) if s.durable => Reserved::Disk,
                Policy::Spool(s) => match q.permits.clone().try_acquire_many_owned(n) {
                    // Memory only while nothing waits on disk: order.
                    Ok(p) if s.spool.unread() == 0 => Reserved::Permit(p),
                    Ok(_) | Err(TryAcquireError::NoPermits) => Reserved::Disk,
                    Err(TryAcquireError::Closed) => return Err(SubmitError::Closed),
                },
                Policy::DropNewest => match q.permits.clone().try_acquire_many_owned(n) {
                    Ok(p) => Reserved::Permit(p),
                    Err(TryAcquireError::NoPermits) => Reserved::Dropped,
                    Err(TryAcquireError::Closed) => return Err(SubmitError::Closed),
                },
                Policy::Block => {
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

        // Step 2: write what goes to disk. Memory reservations are held
        // meanwhile, so a spool that stays full (503) leaves no memory queue
        // with a copy; a spool written before another one refused may see the
        // client's retry again (at least once).
        let mut whole: Option<Vec<u8>> = None;
        let mut own = Vec::new();
        for p in plan.iter().filter(|p| matches!(p.reserved, Reserved::Disk)) {
            let q = p.queue;
            let Policy::Spool(spec) = &q.policy else {
                continue;
            };
            let record = match &p.pick {
                None => whole.get_or_insert_with(|| {
                    let mut buf = Vec::with_capacity(batch.arena_bytes() + batch.len() * 32);
                    encode_record(&batch, None, &mut buf);
                    buf
                }),
                Some(pick) => {
                    own.clear();
                    encode_record(&batch, Some(pick), &mut own);
                    &own
                }
            };
            if q.closed.is_cancelled() {
                return Err(SubmitError::Closed);
            }
            let appended = tokio::select! {
                r = spec.spool.append(record, deadline) => r,
                () = q.closed.cancelled() => return Err(SubmitError::Closed),
            };
            match appended {
                Ok(_) => {}
                Err(SpoolError::Full) => {
                    return Err(SubmitError::Overloaded {
                        sink: q.name.clone(),
                    });
                }
                Err(e) => {
                    q.log_spool_error(&e);
                    return Err(SubmitError::Overloaded {
                        sink: q.name.clone(),
                    });
                }
            }
        }

        // Step 3: every reservation holds; queue everywhere.
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
                Reserved::Disk => ack.queued += 1,
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
                        spooled: None,
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

impl SinkQueue {
    /// An ERROR at most every 10 s per sink: a failing disk must not flood the log.
    fn log_spool_error(&self, e: &SpoolError) {
        let now = unix_ms() / 1000;
        let last = self.last_spool_error_log.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .last_spool_error_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(sink = %self.name, error = %e, "cannot write to the spool; refusing input");
        }
    }
}

/// The wire form of `batch`, or of the metrics `pick` selects from it.
fn encode_record(batch: &Batch, pick: Option<&[u32]>, out: &mut Vec<u8>) {
    match pick {
        None => wire::encode(batch.len(), batch.iter(), out),
        Some(p) => wire::encode(p.len(), p.iter().map(|&i| batch.get(i as usize)), out),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A sink's spool self-metrics.
#[derive(Clone)]
struct SpoolGauges {
    bytes: Gauge,
    records: Gauge,
    oldest_age: Gauge,
    corrupt: Counter,
    dropped_records: Counter,
    /// Spool records that passed their checksum but did not decode.
    decode_errors: Arc<AtomicU64>,
}

impl SpoolGauges {
    fn new(sink: &str) -> SpoolGauges {
        let labels = [("sink", sink.to_owned())];
        SpoolGauges {
            bytes: metrics::gauge!(telemetry::SINK_SPOOL_BYTES, &labels),
            records: metrics::gauge!(telemetry::SINK_SPOOL_RECORDS, &labels),
            oldest_age: metrics::gauge!(telemetry::SINK_SPOOL_OLDEST_AGE, &labels),
            corrupt: metrics::counter!(telemetry::SINK_SPOOL_CORRUPT_RECORDS, &labels),
            dropped_records: metrics::counter!(telemetry::SINK_SPOOL_DROPPED_RECORDS, &labels),
            decode_errors: Arc::default(),
        }
    }

    fn refresh(&self, spool: &Spool) {
        let decode_errors = self.decode_errors.load(Ordering::Relaxed);
        let s = spool.stats();
        self.bytes.set(s.bytes as f64);
        self.records.set(s.records as f64);
        let age = s
            .oldest_unix_ms
            .map_or(0.0, |t| unix_ms().saturating_sub(t) as f64 / 1000.0);
        self.oldest_age.set(age);
        self.corrupt.absolute(s.corrupt_records + decode_errors);
        self.dropped_records.absolute(s.dropped_records);
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
    /// Where the batch sits in the spool, when it was read from there.
    spooled: Option<Pos>,
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
            spooled: None,
        }
    }

    /// True when the view was read back from the sink's disk spool.
    pub fn is_spooled(&self) -> bool {
        self.spooled.is_some()
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
    spool: Option<SpoolSpec>,
    spool_gauges: Option<SpoolGauges>,
    closed: CancellationToken,
    /// False once closed: the spool is then left for the next start.
    receiving: bool,
    encode_buf: Vec<u8>,
}

impl std::fmt::Debug for SinkReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkReceiver")
            .field("name", &self.name)
            .field("depth", &self.depth())
            .field("spool", &self.spool)
            .finish()
    }
}

impl SinkReceiver {
    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next batch; `None` once the queue is closed and drained. With a
    /// spool: memory first, then the spool (see the module doc for why);
    /// once closed, only memory.
    pub async fn recv(&mut self) -> Option<BatchView> {
        let Some(spool) = self.spool.as_ref().map(|s| s.spool.clone()) else {
            return self.rx.recv().await;
        };
        loop {
            match self.rx.try_recv() {
                Ok(v) => return Some(v),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            let mut retry = None;
            if self.receiving {
                match self.read_spool(&spool) {
                    Ok(Some(v)) => return Some(v),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(sink = %self.name, error = %e, "cannot read the spool; retrying in 1 s");
                        retry = Some(Duration::from_secs(1));
                    }
                }
            }
            tokio::select! {
                v = self.rx.recv() => return v,
                () = spool.appended(), if self.receiving && retry.is_none() => {}
                () = sleep_opt(retry) => {}
            }
        }
    }

    fn read_spool(&mut self, spool: &Spool) -> Result<Option<BatchView>, SpoolError> {
        let Some(rec) = spool.read_next()? else {
            return Ok(None);
        };
        let batch = match wire::decode(&rec.data) {
            Ok(b) => b,
            Err(e) => {
                // Checksummed yet unreadable: written by another version.
                // An empty view keeps its place so that committing stays in order.
                if let Some(g) = &self.spool_gauges {
                    g.decode_errors.fetch_add(1, Ordering::Relaxed);
                }
                tracing::warn!(sink = %self.name, error = %e, "spool record does not decode; skipped");
                Batch::new()
            }
        };
        Ok(Some(BatchView {
            metrics: batch.len(),
            batch: Arc::new(batch),
            pick: None,
            _hold: None,
            spooled: Some(rec.pos),
        }))
    }

    /// The sink is done with `views` (delivered, or rejected and counted):
    /// their spool records need not be sent again.
    pub fn delivered(&mut self, views: &[BatchView]) {
        let Some(spec) = &self.spool else { return };
        if let Some(pos) = views.iter().filter_map(|v| v.spooled).max()
            && let Err(e) = spec.spool.commit(pos)
        {
            tracing::error!(sink = %self.name, error = %e, "cannot record delivery in the spool; records may be sent again after a restart");
        }
        self.refresh_gauges();
    }

    /// True when the sink has a spool to save unsent batches in.
    pub fn has_spool(&self) -> bool {
        self.spool.is_some()
    }

    /// Save what only memory holds of `views` in the spool (shutdown with a
    /// sink that cannot take it in time); views read from the spool are
    /// still there. Returns the metrics that could not be saved.
    pub fn spill(&mut self, views: &[BatchView]) -> usize {
        let Some(spec) = &self.spool else {
            return views.iter().map(BatchView::len).sum();
        };
        let mut lost = 0;
        for v in views
            .iter()
            .filter(|v| v.spooled.is_none() && !v.is_empty())
        {
            self.encode_buf.clear();
            encode_record(&v.batch, v.pick.as_deref(), &mut self.encode_buf);
            if let Err(e) = spec.spool.append_now(&self.encode_buf) {
                tracing::error!(sink = %self.name, error = %e, metrics = v.len(), "cannot save unsent metrics to the spool");
                lost += v.len();
            }
        }
        self.refresh_gauges();
        lost
    }

    /// Update the spool gauges now.
    pub fn refresh_gauges(&self) {
        if let (Some(s), Some(g)) = (&self.spool, &self.spool_gauges) {
            g.refresh(&s.spool);
        }
    }

    /// With a spool: a future that refreshes its gauges every second, for
    /// the sink to run beside itself. Apart from the sink's own loop, so that
    /// the gauges move while a send is retried for minutes (an outage is
    /// when the spool grows), and off the submit path, which it would slow.
    pub fn gauge_refresher(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let spool = self.spool.as_ref()?.spool.clone();
        let gauges = self.spool_gauges.clone()?;
        Some(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                gauges.refresh(&spool);
            }
        })
    }

    /// The next batch if one is waiting in memory.
    pub fn try_recv(&mut self) -> Option<BatchView> {
        self.rx.try_recv().ok()
    }

    /// Stop taking new batches: later submits fail with `Closed` and blocked
    /// submitters wake up; what is queued in memory can still be received,
    /// what is in the spool stays there for the next start.
    pub fn close(&mut self) {
        self.permits.close();
        self.closed.cancel();
        self.receiving = false;
        self.rx.close();
    }

    /// Metrics queued or still held by the sink.
    pub fn depth(&self) -> usize {
        self.max_metrics
            .saturating_sub(self.permits.available_permits())
    }
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
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
            spool: None,
            max_new_series_per_hour: None,
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

    fn keep(name: &str, filter: &str, max_new: Option<u64>) -> SinkChange {
        let cfg: FilterConfig = toml::from_str(filter).unwrap();
        SinkChange::Keep {
            name: name.into(),
            filter: Filter::new(&cfg).unwrap(),
            max_new_series_per_hour: max_new,
        }
    }

    #[tokio::test]
    async fn reconfigure_keeps_queued_batches_and_routes_by_the_new_filter() {
        let (mut p, mut rx) = Pipeline::new(vec![
            spec("s", r#"namepass = ["cpu"]"#, 100, WhenFull::Block),
            spec("gone", "", 100, WhenFull::Block),
        ]);
        // A handle taken before the reload follows it.
        let a = p.ingest("a");
        a.submit(batch(&["cpu", "mem"])).await.unwrap();
        let added = p
            .reconfigure(vec![
                keep("s", r#"namepass = ["mem"]"#, None),
                SinkChange::New(spec("new", r#"inputs = ["b"]"#, 100, WhenFull::Block)),
            ])
            .unwrap();
        assert_eq!(added.len(), 1);
        assert_eq!(a.sink_count(), 1);
        a.submit(batch(&["cpu", "mem"])).await.unwrap();
        p.ingest("b").submit(batch(&["disk"])).await.unwrap();

        // The kept queue: what it held, then what the new filter lets in.
        assert_eq!(names(&rx[0].try_recv().unwrap()), ["cpu"]);
        assert_eq!(names(&rx[0].try_recv().unwrap()), ["mem"]);
        // A sink taken out hands out what it held, then ends.
        assert_eq!(names(&rx[1].recv().await.unwrap()), ["cpu", "mem"]);
        assert!(rx[1].recv().await.is_none());
        let mut added = added;
        assert_eq!(names(&added[0].try_recv().unwrap()), ["disk"]);
    }

    #[tokio::test]
    async fn a_changed_sink_gets_a_new_queue_and_the_old_one_drains() {
        let (mut p, mut rx) = Pipeline::new(vec![spec("s", "", 2, WhenFull::Block)]);
        let i = p.ingest("x");
        i.submit(batch(&["a", "b"])).await.unwrap();
        // The old queue is full: a submit waits on it across the reload.
        let waiter = tokio::spawn({
            let i = i.clone();
            async move { i.submit(batch(&["c"])).await }
        });
        tokio::task::yield_now().await;
        let mut new = p
            .reconfigure(vec![SinkChange::New(spec("s", "", 10, WhenFull::Block))])
            .unwrap();
        i.submit(batch(&["d"])).await.unwrap();
        assert_eq!(names(&new[0].try_recv().unwrap()), ["d"]);
        // The waiting submit lands in the old queue once there is room, and
        // the old receiver ends after handing it out: nothing is lost.
        assert_eq!(names(&rx[0].recv().await.unwrap()), ["a", "b"]);
        assert_eq!(waiter.await.unwrap().unwrap().queued, 1);
        assert_eq!(names(&rx[0].recv().await.unwrap()), ["c"]);
        assert!(rx[0].recv().await.is_none());
    }

    #[tokio::test]
    async fn reconfigure_refuses_to_keep_an_unknown_sink_and_changes_nothing() {
        let (mut p, mut rx) = Pipeline::new(vec![spec("s", "", 10, WhenFull::Block)]);
        let err = p
            .reconfigure(vec![
                keep("nope", "", None),
                keep("s", r#"namepass = ["x"]"#, None),
            ])
            .unwrap_err();
        assert_eq!(err, UnknownSink("nope".into()));
        p.ingest("i").submit(batch(&["a"])).await.unwrap();
        assert_eq!(names(&rx[0].try_recv().unwrap()), ["a"]);
    }

    #[tokio::test]
    async fn an_unchanged_limit_keeps_its_known_series() {
        let limited = |max| SinkSpec {
            max_new_series_per_hour: Some(max),
            ..spec("s", "", 100, WhenFull::Block)
        };
        let (mut p, mut rx) = Pipeline::new(vec![limited(1)]);
        let i = p.ingest("x");
        i.submit(batch(&["a"])).await.unwrap();
        p.reconfigure(vec![keep("s", "", Some(1))]).unwrap();
        // The budget of one was spent on `a`: `b` is dropped, `a` still known.
        i.submit(batch(&["a", "b"])).await.unwrap();
        assert_eq!(names(&rx[0].try_recv().unwrap()), ["a"]);
        assert_eq!(names(&rx[0].try_recv().unwrap()), ["a"]);
        // A new limit starts a new limiter.
        p.reconfigure(vec![keep("s", "", Some(2))]).unwrap();
        i.submit(batch(&["b"])).await.unwrap();
        assert_eq!(names(&rx[0].try_recv().unwrap()), ["b"]);
        assert!(rx[0].try_recv().is_none());
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

    fn spooling(
        dir: &std::path::Path,
        max_metrics: usize,
        durable: bool,
        max_bytes: u64,
    ) -> SinkSpec {
        let (spool, _) = Spool::open(conflux_spool::SpoolConfig {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: 4096,
            when_full: conflux_spool::WhenFull::Block,
            fsync: conflux_spool::Fsync::Batch,
        })
        .unwrap();
        SinkSpec {
            spool: Some(SpoolSpec { spool, durable }),
            ..spec("s", "", max_metrics, WhenFull::Spool)
        }
    }

    #[tokio::test]
    async fn overflow_goes_to_the_spool_and_order_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (p, mut rx) = Pipeline::new(vec![spooling(dir.path(), 2, false, 1 << 20)]);
        let i = p.ingest("x");
        i.submit(batch(&["a", "b"])).await.unwrap();
        // Memory is full: to disk.
        i.submit(batch(&["c"])).await.unwrap();
        let ab = rx[0].recv().await.unwrap();
        assert!(!ab.is_spooled());
        assert_eq!(names(&ab), ["a", "b"]);
        drop(ab);
        // Memory has room again, but `c` waits on disk: `d` goes behind it.
        i.submit(batch(&["d"])).await.unwrap();
        let c = rx[0].recv().await.unwrap();
        let d = rx[0].recv().await.unwrap();
        assert_eq!((names(&c), names(&d)), (vec!["c".into()], vec!["d".into()]));
        assert!(c.is_spooled() && d.is_spooled());
        let Some(SpoolSpec { spool, .. }) = rx[0].spool.clone() else {
            panic!("no spool")
        };
        assert_eq!(spool.stats().records, 2);
        rx[0].delivered(&[c, d]);
        assert_eq!(spool.stats().records, 0);
        // Once the spool is empty, memory again.
        i.submit(batch(&["e"])).await.unwrap();
        assert!(!rx[0].recv().await.unwrap().is_spooled());
    }

    #[tokio::test]
    async fn durable_sinks_hold_every_batch_on_disk_before_the_ack() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (p, mut rx) = Pipeline::new(vec![spooling(dir.path(), 100, true, 1 << 20)]);
            let mut b = Batch::new();
            let mut m = b.metric("ttl");
            m.tag("k", "v")
                .field("value", crate::Value::Int(-3))
                .ttl(60);
            m.finish(42).unwrap();
            p.ingest("x").submit(b).await.unwrap();
            p.ingest("x").submit(batch(&["b"])).await.unwrap();
            let v = rx[0].recv().await.unwrap();
            assert!(v.is_spooled());
            // Delivered: not sent again after a restart.
            rx[0].delivered(&[v]);
        }
        // A restart: the second batch, and only it, is still there.
        let (_p, mut rx) = Pipeline::new(vec![spooling(dir.path(), 100, true, 1 << 20)]);
        let v = rx[0].recv().await.unwrap();
        assert_eq!(names(&v), ["b"]);
        assert!(rx[0].try_recv().is_none());
    }

    #[tokio::test]
    async fn close_wakes_a_submit_waiting_for_spool_room() {
        let dir = tempfile::tempdir().unwrap();
        // Room for one record: an oversized record passes an empty spool only.
        let (p, mut rx) = Pipeline::new(vec![spooling(dir.path(), 100, true, 1)]);
        let i = p.ingest("x");
        i.submit(batch(&["a"])).await.unwrap();
        let err = i
            .submit_timeout(batch(&["b"]), Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(err, SubmitError::Overloaded { sink: "s".into() });
        let waiter = tokio::spawn({
            let i = i.clone();
            async move { i.submit(batch(&["c"])).await }
        });
        tokio::task::yield_now().await;
        rx[0].close();
        assert_eq!(waiter.await.unwrap(), Err(SubmitError::Closed));
    }

    #[tokio::test]
    async fn spill_saves_what_only_memory_held() {
        let dir = tempfile::tempdir().unwrap();
        let (p, mut rx) = Pipeline::new(vec![spooling(dir.path(), 100, false, 1 << 20)]);
        p.ingest("x").submit(batch(&["a", "b"])).await.unwrap();
        let v = rx[0].recv().await.unwrap();
        assert!(!v.is_spooled());
        assert_eq!(rx[0].spill(&[v]), 0);
        drop(rx);
        drop(p);
        let (_p, mut rx) = Pipeline::new(vec![spooling(dir.path(), 100, false, 1 << 20)]);
        assert_eq!(names(&rx[0].recv().await.unwrap()), ["a", "b"]);
    }

    fn hosts(hosts: &[&str]) -> Batch {
        hosts
            .iter()
            .map(|h| Metric::new("cpu").tag("host", *h).field("v", 1.0))
            .collect()
    }

    fn host_tags(v: &BatchView) -> Vec<String> {
        v.iter()
            .map(|m| m.tag("host").unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn a_series_limit_narrows_only_its_own_sink() {
        let (p, mut rx) = Pipeline::new(vec![
            SinkSpec {
                max_new_series_per_hour: Some(2),
                ..spec("limited", "", 100, WhenFull::Block)
            },
            spec("free", "", 100, WhenFull::Block),
        ]);
        let i = p.ingest("x");
        i.submit(hosts(&["a", "b", "c", "d"])).await.unwrap();
        assert_eq!(host_tags(&rx[0].try_recv().unwrap()), ["a", "b"]);
        assert_eq!(host_tags(&rx[1].try_recv().unwrap()), ["a", "b", "c", "d"]);
        // Known series keep flowing; a batch of only new ones does not reach
        // the limited sink at all.
        let ack = i.submit(hosts(&["c", "b", "a"])).await.unwrap();
        assert_eq!(ack.queued, 2);
        assert_eq!(host_tags(&rx[0].try_recv().unwrap()), ["b", "a"]);
        let ack = i.submit(hosts(&["e"])).await.unwrap();
        assert_eq!(ack.queued, 1);
        assert!(rx[0].try_recv().is_none());
        assert_eq!(rx[1].try_recv().unwrap().len(), 3);
        assert_eq!(host_tags(&rx[1].try_recv().unwrap()), ["e"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_series_limit_applies_after_the_filter_and_renews_hourly() {
        let (p, mut rx) = Pipeline::new(vec![SinkSpec {
            max_new_series_per_hour: Some(1),
            ..spec("s", "[tagdrop]\nhost = [\"b\"]", 100, WhenFull::Block)
        }]);
        let i = p.ingest("x");
        // `b` is filtered out before the limiter, so it uses no budget.
        i.submit(hosts(&["b", "a", "c"])).await.unwrap();
        assert_eq!(host_tags(&rx[0].try_recv().unwrap()), ["a"]);
        tokio::time::advance(cardinality::SeriesLimiter::WINDOW).await;
        i.submit(hosts(&["c", "a", "d"])).await.unwrap();
        assert_eq!(host_tags(&rx[0].try_recv().unwrap()), ["c", "a"]);
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
