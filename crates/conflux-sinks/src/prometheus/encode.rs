//! The encoder of the `prometheus` sink: metrics into Prometheus remote write
//! 1.0 requests, a protobuf `WriteRequest` compressed with Snappy's block
//! format (<https://prometheus.io/docs/concepts/remote_write_spec/>):
//!
//! ```text
//! WriteRequest { repeated TimeSeries timeseries = 1; }
//! TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
//! Label        { string name = 1; string value = 2; }
//! Sample       { double value = 1; int64 timestamp = 2; }   // milliseconds
//! ```
//!
//! What a metric becomes:
//!
//! - one series per numeric field, named by the naming policy
//!   (`conflux_core::naming`, `Target::Prometheus`: `measurement_field`, a
//!   `value` field keeps the bare name, Telegraf's Prometheus sanitizer);
//! - its tags become labels: names through Telegraf's label sanitizer, a tag
//!   whose name sanitizes to nothing or whose value is empty is left out
//!   (Prometheus treats an empty label as absent), and so is a tag called
//!   `__name__` (that label is the series name). Two tag names that sanitize
//!   to the same label name (`a.b` and `a-b` both give `a_b`) keep the first
//!   in the metric's tag order (tags are sorted by their original key),
//!   without counting anything: the data point is still written;
//! - labels are sorted by name, byte-wise, with `__name__` in its sorted
//!   place, as the spec requires;
//! - floats, ints and uints as `f64` (integers past 2^53 round, as in every
//!   float-only target), bools as 1 and 0; strings are skipped and counted.
//!   NaN and ±Inf are written as they are, as Telegraf's
//!   `prometheusremotewrite` serializer does (its `SampleValue` passes every
//!   float64 through): Prometheus stores them as ordinary values. A NaN is
//!   always written as the canonical quiet NaN (`f64::NAN`,
//!   `0x7ff8000000000000`), never with other payload bits, so that a NaN
//!   that came in (a Graphite pickle can carry any bits) cannot turn into
//!   Prometheus's staleness marker (`0x7ff0000000000002`), which would end
//!   the series. VictoriaMetrics drops NaN at ingestion (all but staleness
//!   markers) and keeps ±Inf;
//! - timestamps in milliseconds (nanoseconds floored).
//!
//! Prometheus (2.42) appends a request's samples in order and, within one
//! request, silently drops every sample of a series older than one it
//! appended before (`204`, nothing stored); across requests it refuses the
//! whole request (`400 out of order sample`). So the samples of a series
//! that appears more than once in a batch are grouped into one
//! `TimeSeries`, sorted by timestamp (stable: equal timestamps keep their
//! batch order). When no series repeats, which is the common case, the batch
//! is written in its own order without sorting. A batch is split into
//! requests of at most `max_samples` samples; a series split over two
//! requests has its older samples in the first.
//!
//! Labels are deduplicated because Prometheus answers `500` (`label name
//! "a" is not unique: invalid sample`) to two labels with one name, which a
//! sender would retry for ever; VictoriaMetrics keeps the last of them.
//!
//! The protobuf is written by hand into a reused buffer (the benchmark
//! `benches/prometheus.rs` compares it with `prost`); the tests decode it
//! with `prost` and compare it byte for byte with `prost`'s own encoding.
//! Unlike `prost` (and Go's generated code), a `-0.0` value is written
//! explicitly so that its sign survives; proto3 omits only the default, `+0`.
//! Each 64 KiB Snappy block of it is compressed as soon as it is written,
//! while it is in cache (the bytes are those of the whole compressed at
//! once): a request's protobuf is never held whole.
//!
//! Each metric's labels are encoded once, as the `Label` fields they will
//! be written as; grouping compares and hashes those bytes, and writing a
//! series copies them around its `__name__` label. The common metric, whose
//! tag keys all are label names already (and none is `__name__`, no value
//! empty), is encoded straight from its tags, in their order: nothing is
//! copied or sorted first.

use std::hash::{BuildHasher, Hasher, RandomState};

use conflux_core::metric::MetricRef;
use conflux_core::naming::{NameBuf, Naming, SingleValue, Skip, sanitize_prometheus_label};

/// The label that holds the series name.
pub const NAME_LABEL: &str = "__name__";

/// What one [`Encoder::encode`] (or [`Encoder::load`]) call holds and left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Metrics with at least one sample written.
    pub metrics: usize,
    /// Samples written.
    pub points: usize,
    /// `TimeSeries` written (a series split over two requests counts twice).
    pub series: usize,
    /// Requests made (0 when no sample could be written).
    pub requests: usize,
    /// Compressed bytes over all requests.
    pub bytes: usize,
    /// String values, which Prometheus cannot hold.
    pub skipped_string: usize,
    /// Bool values under `bools = "skip"`.
    pub skipped_bool: usize,
    /// Points whose series name came out empty.
    pub skipped_invalid_name: usize,
}

/// Why a batch could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Snappy's block format holds at most 4 GiB.
    #[error("request of {0} bytes too large to compress")]
    TooLarge(usize),
}

/// One request of an encoded batch.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The body: the Snappy-compressed `WriteRequest`.
    pub body: &'a [u8],
    /// Samples in it.
    pub samples: usize,
    /// Metrics whose first sample is in it (each metric counts in one request).
    pub metrics: usize,
}

/// One series of a loaded batch, as it will be written.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    enc: &'a Encoder,
    metric: &'a MetricRec,
    name: Span,
    points: &'a [u32],
}

impl<'a> Series<'a> {
    /// Labels in their written (sorted) order, `__name__` included.
    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let m = self.metric;
        let encoded = &self.enc.encoded[m.labels.0 as usize..m.labels.1 as usize];
        let (before, after) = encoded.split_at(m.split as usize);
        // Names are whole `str`s, copied or sanitized as such.
        let name = std::str::from_utf8(self.enc.name(self.name)).unwrap_or_default();
        decode_labels(before)
            .chain(std::iter::once((NAME_LABEL, name)))
            .chain(decode_labels(after))
    }

    /// Samples as (value, timestamp in ms), in their written order.
    pub fn samples(&self) -> impl Iterator<Item = (f64, i64)> + 'a {
        let points = &self.enc.points;
        self.points.iter().map(move |&i| {
            let p = &points[i as usize];
            (p.value, p.ts_ms)
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

#[derive(Debug, Clone, Copy)]
struct LabelRec {
    name: Span,
    value: Span,
    /// Position among the metric's tags: the first of two equal names wins.
    ord: u32,
}

#[derive(Debug, Clone, Copy)]
struct MetricRec {
    /// Its labels, sorted by name, without `__name__`: a range of
    /// `Encoder::encoded`.
    labels: (u32, u32),
    /// Where `__name__` goes among them, in bytes from their start.
    split: u32,
    /// A keyed hash of the encoded labels.
    hash: u64,
}

#[derive(Debug, Clone, Copy)]
struct Point {
    metric: u32,
    name: Span,
    value: f64,
    ts_ms: i64,
    hash: u64,
    group: u32,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    /// A point of the group, whose series key is the group's.
    rep: u32,
    count: u32,
}

#[derive(Debug, Clone, Copy)]
struct RequestRec {
    body: (usize, usize),
    samples: usize,
    metrics: usize,
}

/// The labels of `Label` fields as `put_label` wrote them.
fn decode_labels(mut rest: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    std::iter::from_fn(move || {
        let mut label = read_field(&mut rest)?;
        let name = read_field(&mut label)?;
        let value = read_field(&mut label)?;
        Some((
            std::str::from_utf8(name).unwrap_or_default(),
            std::str::from_utf8(value).unwrap_or_default(),
        ))
    })
}

/// The payload of the length-delimited field at the start of `rest`,
/// which moves past it.
fn read_field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (_tag, mut at) = rest.split_first()?;
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        let (&b, tail) = at.split_first()?;
        at = tail;
        len |= usize::from(b & 0x7f).checked_shl(shift)?;
        shift += 7;
        if b < 0x80 {
            break;
        }
    }
    let payload = at.get(..len)?;
    *rest = at.get(len..)?;
    Some(payload)
}

/// Whether `s` is a Prometheus label name as it is, so that Telegraf's
/// sanitizer leaves it unchanged.
fn is_label_name(s: &str) -> bool {
    match s.as_bytes() {
        [first, rest @ ..] => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
        }
        [] => false,
    }
}

/// Whether a label name sorts before `__name__`, without a `memcmp` call
/// for the usual name, which starts with a letter.
fn before_name_label(k: &str) -> bool {
    match k.as_bytes().first() {
        Some(&b) if b != b'_' => b < b'_',
        _ => k < NAME_LABEL,
    }
}

/// Slots of a [`Names`]: a power of two.
const NAME_SLOTS: usize = 4096;

/// Series names by metric name and field, kept between batches in a
/// direct-mapped table: a few hundred names usually serve millions of
/// points, and naming sanitizes byte by byte. A slot keeps its strings'
/// capacity, so a miss costs copies, not an allocation; while most
/// lookups miss (many distinct names, as Graphite paths), the table is left
/// aside and names are made directly.
///
/// A slot also keeps the hash of its series name and where the name was
/// put in the text of the batch being loaded, so that a name met again in
/// the batch is neither hashed nor copied again.
struct Names {
    slots: Vec<NameSlot>,
    hasher: foldhash::fast::RandomState,
    /// Keys of [`name_hash`].
    keys: [u64; 2],
    /// Lookups and hits in the current round of `NAME_ROUND` lookups.
    lookups: u32,
    hits: u32,
    /// Names still to make without the table.
    bypass: u32,
    /// Rounds in a row the table failed, which lengthen the next bypass:
    /// each round it is tried costs cache misses, for nothing with names
    /// that never repeat.
    failed: u32,
    /// The batch being loaded: a slot's `span` is of this batch's text
    /// when its `batch` is this.
    batch: u64,
}

/// Lookups over which the hit rate of a [`Names`] is judged.
const NAME_ROUND: u32 = 1024;

/// An empty slot has an empty `metric`, which no metric has.
#[derive(Default)]
struct NameSlot {
    metric: String,
    field: String,
    /// The series name; `None` when it came out empty.
    series: Option<Vec<u8>>,
    /// The hash of `series`.
    hash: u64,
    /// Where `series` is in the text of batch `batch`.
    span: Span,
    batch: u64,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            slots: std::iter::repeat_with(NameSlot::default)
                .take(NAME_SLOTS)
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
            keys: {
                let k = RandomState::new();
                [k.hash_one(0u8), k.hash_one(1u8)]
            },
            lookups: 0,
            hits: 0,
            bypass: 0,
            failed: 0,
            batch: 1,
        }
    }
}

impl Names {
    /// Start loading a batch, whose text starts empty.
    fn next_batch(&mut self) {
        self.batch += 1;
    }

    /// The series name of `field` of metric `name`, in `text` (appended
    /// there unless this batch has it already), and its hash; `None` when
    /// it comes out empty.
    fn get(
        &mut self,
        naming: &Naming,
        buf: &mut NameBuf,
        text: &mut Vec<u8>,
        name: &str,
        field: &str,
    ) -> Option<(Span, u64)> {
        if self.bypass > 0 {
            self.bypass -= 1;
            return self.make(naming, buf, text, name, field);
        }
        self.lookups += 1;
        if self.lookups == NAME_ROUND {
            // Under a quarter of hits: the next 15 rounds go without the
            // table (twice as many after each failure, up to 240), then it
            // is tried again.
            if self.hits < NAME_ROUND / 4 {
                self.bypass = (15 * NAME_ROUND) << self.failed;
                self.failed = (self.failed + 1).min(4);
            } else {
                self.failed = 0;
            }
            self.lookups = 0;
            self.hits = 0;
        }
        let mut h = self.hasher.build_hasher();
        h.write(name.as_bytes());
        h.write_u8(0xff);
        h.write(field.as_bytes());
        let i = h.finish() as usize & (NAME_SLOTS - 1);
        let slot = &mut self.slots[i];
        if slot.metric == name && slot.field == field {
            self.hits += 1;
        } else {
            slot.metric.clear();
            slot.metric.push_str(name);
            slot.field.clear();
            slot.field.push_str(field);
            // Made where this batch keeps it, then kept for later batches.
            let made = self.make(naming, buf, text, name, field);
            let slot = &mut self.slots[i];
            match made {
                Some((span, hash)) => {
                    let kept = slot.series.get_or_insert_default();
                    kept.clear();
                    kept.extend_from_slice(bytes_of(text, span));
                    (slot.hash, slot.span, slot.batch) = (hash, span, self.batch);
                }
                None => slot.series = None,
            }
        }
        let slot = &mut self.slots[i];
        let series = slot.series.as_deref()?;
        if slot.batch != self.batch {
            let start = text.len();
            text.extend_from_slice(series);
            slot.span = span(start, text.len());
            slot.batch = self.batch;
        }
        Some((slot.span, slot.hash))
    }

    /// The series name appended to `text`, and its hash.
    fn make(
        &self,
        naming: &Naming,
        buf: &mut NameBuf,
        text: &mut Vec<u8>,
        name: &str,
        field: &str,
    ) -> Option<(Span, u64)> {
        let at = text.len();
        naming
            .append_series_name(name, field, buf, text)
            .then(|| (span(at, text.len()), name_hash(self.keys, &text[at..])))
    }
}

/// A keyed hash of a series name, sixteen bytes a folded multiply (as
/// foldhash's), inline: a Graphite point brings a new 90-byte name, and a
/// call through a general `Hasher` cost twice as much. Blocks go to two
/// lanes in turn, so that the multiplies of one name run two at a time
/// instead of in one chain.
fn name_hash(keys: [u64; 2], b: &[u8]) -> u64 {
    let fold = |a: u64, b: u64| {
        let x = u128::from(a) * u128::from(b);
        (x as u64) ^ ((x >> 64) as u64)
    };
    let halves = |c: &[u8; 16]| {
        let x = u128::from_le_bytes(*c);
        (x as u64, (x >> 64) as u64)
    };
    let [mut h0, mut h1] = keys;
    let (blocks, tail) = b.as_chunks::<16>();
    let (pairs, odd) = blocks.as_chunks::<2>();
    for [c0, c1] in pairs {
        let ((lo0, hi0), (lo1, hi1)) = (halves(c0), halves(c1));
        h0 = fold(lo0 ^ h0, hi0 ^ keys[1]);
        h1 = fold(lo1 ^ h1, hi1 ^ keys[0]);
    }
    if let [c] = odd {
        let (lo, hi) = halves(c);
        h0 = fold(lo ^ h0, hi ^ keys[1]);
    }
    if !tail.is_empty() {
        // The last sixteen bytes, or the tail zero-padded (the length,
        // mixed in last, tells the padding from zero bytes).
        let last = b.last_chunk::<16>().copied().unwrap_or_else(|| {
            let mut c = [0u8; 16];
            c[..tail.len()].copy_from_slice(tail);
            c
        });
        let (lo, hi) = halves(&last);
        if odd.is_empty() {
            h0 = fold(lo ^ h0, hi ^ keys[1]);
        } else {
            h1 = fold(lo ^ h1, hi ^ keys[0]);
        }
    }
    fold(h0 ^ keys[1], h1 ^ b.len() as u64)
}

/// The hash of a series: its labels' and its name's hashes, mixed (a
/// folded multiply, as foldhash's).
fn series_hash(labels: u64, name: u64) -> u64 {
    let x = u128::from(labels ^ 0x243f_6a88_85a3_08d3) * u128::from(name ^ 0x1319_8a2e_0370_7344);
    (x as u64) ^ ((x >> 64) as u64)
}

/// A free slot of `Encoder::slots`.
const EMPTY: u32 = u32::MAX;

/// Reusable encoder, one per endpoint: its tables and buffers keep their
/// capacity between batches, so encoding allocates nothing per metric.
pub struct Encoder {
    naming: Naming,
    name_buf: NameBuf,
    names: Names,
    /// Keys the series hashes, so that input cannot be made to collide.
    seed: u64,
    shared: foldhash::SharedSeed,
    /// Series names of the loaded batch (ASCII or UTF-8: names are `str`s).
    text: Vec<u8>,
    /// Sanitized label names and values of the metric being loaded.
    label_text: String,
    labels: Vec<LabelRec>,
    /// The encoded labels of the loaded batch's metrics.
    encoded: Vec<u8>,
    metrics: Vec<MetricRec>,
    points: Vec<Point>,
    groups: Vec<Group>,
    /// Groups by series hash: an open-addressing table (linear probing,
    /// `EMPTY` free) of at least twice the batch's points, refilled per
    /// batch. Cheaper than a `HashMap` for keys that are hashes already.
    slots: Vec<u32>,
    /// Point indices in written order.
    order: Vec<u32>,
    starts: Vec<u32>,
    /// Whether a metric was counted in a request already.
    counted: Vec<bool>,
    repeats: bool,
    /// The protobuf not compressed yet: while encoding, less than one
    /// Snappy block (and the series that crossed its end).
    proto: Vec<u8>,
    compressed: Compressed,
    requests: Vec<RequestRec>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("naming", &self.naming)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// An encoder naming series with `naming` (its string policy is ignored:
    /// Prometheus holds no strings).
    pub fn new(naming: Naming) -> Encoder {
        let keys = RandomState::new();
        Encoder {
            naming,
            name_buf: NameBuf::default(),
            names: Names::default(),
            seed: keys.hash_one(0u8),
            shared: foldhash::SharedSeed::from_u64(keys.hash_one(1u8)),
            text: Vec::new(),
            label_text: String::new(),
            labels: Vec::new(),
            encoded: Vec::new(),
            metrics: Vec::new(),
            points: Vec::new(),
            groups: Vec::new(),
            slots: Vec::new(),
            order: Vec::new(),
            starts: Vec::new(),
            counted: Vec::new(),
            repeats: false,
            proto: Vec::new(),
            compressed: Compressed::default(),
            requests: Vec::new(),
        }
    }

    /// Encode `metrics` into requests of at most `max_samples` samples each
    /// (at least 1), read back with [`Encoder::requests`].
    ///
    /// # Errors
    /// [`EncodeError::TooLarge`] when one request passes Snappy's 4 GiB.
    pub fn encode(
        &mut self,
        metrics: &[MetricRef<'_>],
        max_samples: usize,
    ) -> Result<Encoded, EncodeError> {
        let mut enc = self.load(metrics);
        self.requests.clear();
        self.compressed.clear();
        self.counted.clear();
        self.counted.resize(metrics.len(), false);
        let max = max_samples.max(1);
        let mut start = 0;
        while start < self.order.len() {
            let end = (start + max).min(self.order.len());
            self.proto.clear();
            self.compressed.begin();
            let (series, counted) = self.write_range(start, end, true)?;
            enc.series += series;
            let body = self.compressed.finish(&mut self.proto)?;
            self.requests.push(RequestRec {
                body,
                samples: end - start,
                metrics: counted,
            });
            start = end;
        }
        enc.requests = self.requests.len();
        enc.bytes = self.requests.iter().map(|r| r.body.1 - r.body.0).sum();
        Ok(enc)
    }

    /// The requests of the last [`Encoder::encode`], in order.
    pub fn requests(&self) -> impl ExactSizeIterator<Item = Request<'_>> + '_ {
        self.requests.iter().map(|r| Request {
            body: &self.compressed.bodies[r.body.0..r.body.1],
            samples: r.samples,
            metrics: r.metrics,
        })
    }

    /// Read `metrics` into the encoder's tables: labels, series names,
    /// samples, grouped and ordered as they will be written. [`Encoder::encode`]
    /// calls it; [`Encoder::series`] and [`Encoder::write_protobuf`] read
    /// what it loaded (benchmarks and tests).
    pub fn load(&mut self, metrics: &[MetricRef<'_>]) -> Encoded {
        self.text.clear();
        self.names.next_batch();
        self.labels.clear();
        self.encoded.clear();
        self.metrics.clear();
        self.points.clear();
        let mut enc = Encoded::default();
        for (mi, m) in metrics.iter().enumerate() {
            match mi.checked_sub(1).map(|p| &metrics[p]) {
                // Agents send the fields of one measurement as lines in a
                // row with the same tags: its labels are encoded already.
                Some(prev) if prev.same_tags(m) => {
                    let last = self.metrics[mi - 1];
                    self.metrics.push(last);
                }
                _ => self.load_labels(m),
            }
            let mut wrote = false;
            for (field, v) in m.fields() {
                let value = match self.naming.value(v) {
                    Ok(SingleValue::Float(f)) => f,
                    Ok(SingleValue::Int(i)) => i as f64,
                    Ok(SingleValue::UInt(u)) => u as f64,
                    // `strings = "keep"` is refused by the config: there is no
                    // sample for a string either way.
                    Ok(SingleValue::Str(_)) | Err(Skip::String) => {
                        enc.skipped_string += 1;
                        continue;
                    }
                    Err(Skip::Bool) => {
                        enc.skipped_bool += 1;
                        continue;
                    }
                    // Written as they are (Telegraf's rule, see the module docs).
                    Err(Skip::NonFinite) => match v.as_f64() {
                        Some(f) if !f.is_nan() => f,
                        _ => f64::NAN,
                    },
                };
                let Some((name, name_hash)) = self.names.get(
                    &self.naming,
                    &mut self.name_buf,
                    &mut self.text,
                    m.name(),
                    field,
                ) else {
                    enc.skipped_invalid_name += 1;
                    continue;
                };
                self.points.push(Point {
                    metric: mi as u32,
                    name,
                    value,
                    ts_ms: m.timestamp().div_euclid(1_000_000),
                    hash: series_hash(self.metrics[mi].hash, name_hash),
                    group: 0,
                });
                wrote = true;
            }
            if wrote {
                enc.metrics += 1;
            }
        }
        enc.points = self.points.len();
        self.order_points();
        enc
    }

    /// The metric's labels, sorted and unique, encoded into `encoded`: from
    /// its tags as they are when they are label names already, else
    /// sanitized, sorted and deduplicated first.
    fn load_labels(&mut self, m: &MetricRef<'_>) {
        let start = self.encoded.len();
        let mut split = None;
        let mut direct = true;
        for (k, v) in m.tags() {
            if v.is_empty() || !is_label_name(k) || k == NAME_LABEL {
                direct = false;
                break;
            }
            if split.is_none() && !before_name_label(k) {
                split = Some(self.encoded.len());
            }
            put_label(&mut self.encoded, k, v.as_bytes());
        }
        if !direct {
            self.encoded.truncate(start);
            split = self.load_sanitized(m);
        }
        let end = self.encoded.len();
        // The bytes are self-delimiting: equal hashes of equal label lists.
        let mut hash = foldhash::fast::FoldHasher::with_seed(self.seed, &self.shared);
        hash.write(&self.encoded[start..end]);
        self.metrics.push(MetricRec {
            labels: (start as u32, end as u32),
            split: (split.unwrap_or(end) - start) as u32,
            hash: hash.finish(),
        });
    }

    /// The labels of a metric whose tags are not all label names, encoded:
    /// names sanitized, empty values and `__name__` left out, sorted, the
    /// first of two equal names kept. Returns where `__name__` goes.
    fn load_sanitized(&mut self, m: &MetricRef<'_>) -> Option<usize> {
        self.label_text.clear();
        self.labels.clear();
        for (ord, (k, v)) in m.tags().enumerate() {
            if v.is_empty() {
                continue;
            }
            let at = self.label_text.len();
            sanitize_prometheus_label(k, &mut self.label_text);
            let name = span(at, self.label_text.len());
            if name.len == 0 || &self.label_text[at..] == NAME_LABEL {
                self.label_text.truncate(at);
                continue;
            }
            let value = push(&mut self.label_text, v);
            self.labels.push(LabelRec {
                name,
                value,
                ord: ord as u32,
            });
        }
        // Tags come sorted by key with unique keys; only sanitizing can
        // reorder or merge them.
        let text = &self.label_text;
        let name = |l: &LabelRec| {
            &text.as_bytes()[l.name.start as usize..(l.name.start + l.name.len) as usize]
        };
        let ls = &mut self.labels;
        if !ls.windows(2).all(|w| name(&w[0]) < name(&w[1])) {
            ls.sort_unstable_by(|a, b| name(a).cmp(name(b)).then(a.ord.cmp(&b.ord)));
            // Keep the first of equal names (the lowest `ord`, sorted first).
            let mut keep = 0;
            for i in 0..ls.len() {
                if keep == 0 || name(&ls[keep - 1]) != name(&ls[i]) {
                    ls[keep] = ls[i];
                    keep += 1;
                }
            }
            ls.truncate(keep);
        }
        let mut split = None;
        for l in ls.iter() {
            if split.is_none() && name(l) > NAME_LABEL.as_bytes() {
                split = Some(self.encoded.len());
            }
            put_label(
                &mut self.encoded,
                str_of(text, l.name),
                str_of(text, l.value).as_bytes(),
            );
        }
        split
    }

    /// Group the points by series; fill `order` with the written order.
    fn order_points(&mut self) {
        self.groups.clear();
        self.slots.clear();
        self.slots
            .resize((2 * self.points.len()).next_power_of_two().max(16), EMPTY);
        for i in 0..self.points.len() {
            let group = self.group_of(i);
            self.points[i].group = group;
            self.groups[group as usize].count += 1;
        }
        self.order.clear();
        self.repeats = self.groups.len() < self.points.len();
        if !self.repeats {
            // Every series once: the batch order as it is.
            self.order.extend(0..self.points.len() as u32);
            return;
        }
        // Counting sort by group (groups in order of first appearance), then
        // each repeated group by timestamp, equal ones in batch order.
        self.starts.clear();
        let mut at = 0u32;
        for g in &self.groups {
            self.starts.push(at);
            at += g.count;
        }
        self.order.resize(self.points.len(), 0);
        for (i, p) in self.points.iter().enumerate() {
            let slot = &mut self.starts[p.group as usize];
            self.order[*slot as usize] = i as u32;
            *slot += 1;
        }
        let mut from = 0usize;
        for g in &self.groups {
            let to = from + g.count as usize;
            if g.count > 1 {
                let points = &self.points;
                self.order[from..to].sort_unstable_by_key(|&i| (points[i as usize].ts_ms, i));
            }
            from = to;
        }
    }

    /// The group of point `i`, made when its series is new.
    fn group_of(&mut self, i: usize) -> u32 {
        let mask = self.slots.len() - 1;
        // Series hashes are keyed and mixed: their low bits index well.
        let mut at = self.points[i].hash as usize & mask;
        loop {
            let g = self.slots[at];
            if g == EMPTY {
                let fresh = self.groups.len() as u32;
                self.slots[at] = fresh;
                self.groups.push(Group {
                    rep: i as u32,
                    count: 0,
                });
                return fresh;
            }
            if self.same_series(self.groups[g as usize].rep as usize, i) {
                return g;
            }
            // Another series here (its hash, or only these bits, collide).
            at = (at + 1) & mask;
        }
    }

    fn same_series(&self, a: usize, b: usize) -> bool {
        let (pa, pb) = (&self.points[a], &self.points[b]);
        // Names met again in a batch share one span of its text.
        if pa.hash != pb.hash || (pa.name != pb.name && self.name(pa.name) != self.name(pb.name)) {
            return false;
        }
        if pa.metric == pb.metric {
            return true;
        }
        let (ma, mb) = (
            &self.metrics[pa.metric as usize],
            &self.metrics[pb.metric as usize],
        );
        self.encoded[ma.labels.0 as usize..ma.labels.1 as usize]
            == self.encoded[mb.labels.0 as usize..mb.labels.1 as usize]
    }

    /// The loaded series in written order (one request's worth: no split).
    pub fn series(&self) -> impl Iterator<Item = Series<'_>> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            if at >= self.order.len() {
                return None;
            }
            let end = self.run_end(at, self.order.len());
            let p = &self.points[self.order[at] as usize];
            let s = Series {
                enc: self,
                metric: &self.metrics[p.metric as usize],
                name: p.name,
                points: &self.order[at..end],
            };
            at = end;
            Some(s)
        })
    }

    /// The whole loaded batch as one uncompressed `WriteRequest`, appended
    /// to `out` (benchmarks and tests).
    pub fn write_protobuf(&mut self, out: &mut Vec<u8>) {
        self.proto.clear();
        // Nothing is compressed: the one error is compression's.
        let _ = self.write_range(0, self.order.len(), false);
        out.extend_from_slice(&self.proto);
    }

    /// End of the run of points of one series starting at `order[at]`,
    /// at most `limit`.
    fn run_end(&self, at: usize, limit: usize) -> usize {
        if !self.repeats {
            return at + 1;
        }
        let group = self.points[self.order[at] as usize].group;
        let mut end = at + 1;
        while end < limit && self.points[self.order[end] as usize].group == group {
            end += 1;
        }
        end
    }

    /// `order[start..end]` as `TimeSeries` messages into `proto`, each
    /// whole Snappy block of it compressed as soon as it is written when
    /// `compress`; returns the series written and the metrics counted for
    /// the first time.
    fn write_range(
        &mut self,
        start: usize,
        end: usize,
        compress: bool,
    ) -> Result<(usize, usize), EncodeError> {
        let mut series = 0;
        let mut counted = 0;
        let mut ts = Timestamp::default();
        let mut at = start;
        while at < end {
            let run = self.run_end(at, end);
            let first = self.points[self.order[at] as usize];
            let m = self.metrics[first.metric as usize];
            let name = bytes_of(&self.text, first.name);
            // The first sample is framed once, for the length and the write:
            // most series have one (every series of a batch without repeats).
            let first_sample = sample_field(first.value, ts.of(first.ts_ms));
            let mut samples_len = first_sample.len();
            for (k, &i) in self.order[at..run].iter().enumerate() {
                let p = &self.points[i as usize];
                if k > 0 {
                    samples_len += sample_field(p.value, ts.of(p.ts_ms)).len();
                }
                if let Some(c) = self.counted.get_mut(p.metric as usize)
                    && !*c
                {
                    *c = true;
                    counted += 1;
                }
            }
            let labels = &self.encoded[m.labels.0 as usize..m.labels.1 as usize];
            let (before, after) = labels.split_at(m.split as usize);
            let ts_len = labels.len() + label_len(NAME_LABEL.len(), name.len()) + samples_len;
            let out = &mut self.proto;
            // One capacity check for the whole message instead of a grow
            // per part (tag, length varint of at most 10 bytes, payload).
            out.reserve(11 + ts_len + SAMPLE_ROOM);
            out.push(TAG_TIMESERIES);
            put_varint(out, ts_len as u64);
            // Graphite and most agents' series have few labels or none:
            // an empty copy still costs a call.
            if !before.is_empty() {
                out.extend_from_slice(before);
            }
            put_name_label(out, name);
            if !after.is_empty() {
                out.extend_from_slice(after);
            }
            first_sample.put(out);
            for &i in &self.order[at + 1..run] {
                let p = &self.points[i as usize];
                sample_field(p.value, ts.of(p.ts_ms)).put(out);
            }
            series += 1;
            at = run;
            if compress && self.proto.len() >= SNAPPY_BLOCK {
                self.compressed.blocks(&mut self.proto)?;
            }
        }
        Ok((series, counted))
    }

    fn name(&self, s: Span) -> &[u8] {
        bytes_of(&self.text, s)
    }
}

/// The size of Snappy's blocks: `snap` (as every Snappy) compresses its
/// input in blocks of 64 KiB, each on its own with a fresh table.
const SNAPPY_BLOCK: usize = 1 << 16;

/// Room for a request's header, the varint of its uncompressed length
/// (at most 4 GiB, Snappy's limit: five bytes).
const SNAPPY_HEAD: usize = 5;

/// Requests compressed a Snappy block at a time, as the protobuf is
/// written: the block is compressed while it is still in cache, and the
/// protobuf never needs more room than a block and a series. The bytes
/// are those `snap` makes of the whole protobuf at once, since it splits
/// it into the same independent blocks.
struct Compressed {
    snappy: snap::raw::Encoder,
    /// The requests of the batch, one after the other. Its length only
    /// grows, so that room is not zeroed again for every batch.
    bodies: Vec<u8>,
    /// Where the request being written starts (its header's room).
    head: usize,
    /// End of its compressed blocks so far.
    end: usize,
    /// Uncompressed bytes in them.
    raw: usize,
}

impl Default for Compressed {
    fn default() -> Self {
        Compressed {
            snappy: snap::raw::Encoder::new(),
            bodies: Vec::new(),
            head: 0,
            end: 0,
            raw: 0,
        }
    }
}

impl Compressed {
    fn clear(&mut self) {
        self.end = 0;
    }

    /// Start a request after the last one.
    fn begin(&mut self) {
        self.head = self.end;
        self.end = self.head + SNAPPY_HEAD;
        self.raw = 0;
    }

    /// Compress the whole blocks at the front of `proto`, keeping the rest.
    fn blocks(&mut self, proto: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut done = 0;
        while proto.len() - done >= SNAPPY_BLOCK {
            self.block(&proto[done..done + SNAPPY_BLOCK])?;
            done += SNAPPY_BLOCK;
        }
        proto.copy_within(done.., 0);
        proto.truncate(proto.len() - done);
        Ok(())
    }

    /// Compress what is left of `proto` and close the request: the span
    /// of its body in `bodies`.
    fn finish(&mut self, proto: &mut Vec<u8>) -> Result<(usize, usize), EncodeError> {
        self.blocks(proto)?;
        if !proto.is_empty() {
            self.block(proto)?;
            proto.clear();
        }
        // The header ends where the first block starts.
        let len = varint_len(self.raw as u64);
        let at = self.head + SNAPPY_HEAD - len;
        put_varint_slice(
            &mut self.bodies[at..self.head + SNAPPY_HEAD],
            self.raw as u64,
        );
        Ok((at, self.end))
    }

    /// One block (at most [`SNAPPY_BLOCK`] bytes), appended to the request.
    fn block(&mut self, block: &[u8]) -> Result<(), EncodeError> {
        let raw = self.raw + block.len();
        if raw > u32::MAX as usize {
            return Err(EncodeError::TooLarge(raw));
        }
        // `snap` writes a whole stream: the block's length as a header (three
        // bytes at most), then the block. It is written over the end of what
        // is there, which is put back, so that the block follows it.
        let len = varint_len(block.len() as u64);
        let at = self.end - len;
        let room = snap::raw::max_compress_len(block.len());
        if self.bodies.len() < at + room {
            self.bodies.resize(at + room, 0);
        }
        let mut kept = [0u8; 3];
        kept[..len].copy_from_slice(&self.bodies[at..self.end]);
        let n = self
            .snappy
            .compress(block, &mut self.bodies[at..at + room])
            .map_err(|_| EncodeError::TooLarge(raw))?;
        self.bodies[at..self.end].copy_from_slice(&kept[..len]);
        self.end = at + n;
        self.raw = raw;
        Ok(())
    }
}

fn str_of(text: &str, s: Span) -> &str {
    // Spans are made by `push`/`span` on char boundaries of `text`.
    text.get(s.start as usize..(s.start + s.len) as usize)
        .unwrap_or_default()
}

fn bytes_of(text: &[u8], s: Span) -> &[u8] {
    text.get(s.start as usize..(s.start + s.len) as usize)
        .unwrap_or_default()
}

fn span(start: usize, end: usize) -> Span {
    // Past 4 GiB of text, spans wrap: the batch arena has the same cap.
    Span {
        start: start as u32,
        len: (end - start) as u32,
    }
}

fn push(text: &mut String, s: &str) -> Span {
    let at = text.len();
    text.push_str(s);
    span(at, text.len())
}

// Field tags: (field number << 3) | wire type (2 = length-delimited,
// 1 = 64-bit, 0 = varint).
/// `WriteRequest.timeseries` (1, length-delimited).
const TAG_TIMESERIES: u8 = 0x0a;
/// `TimeSeries.labels` (1, length-delimited).
const TAG_LABEL: u8 = 0x0a;
/// `TimeSeries.samples` (2, length-delimited).
const TAG_SAMPLE: u8 = 0x12;
/// `Label.name` (1, length-delimited).
const TAG_NAME: u8 = 0x0a;
/// `Label.value` (2, length-delimited).
const TAG_LABEL_VALUE: u8 = 0x12;
/// `Sample.value` (1, 64-bit).
const TAG_VALUE: u8 = 0x09;
/// `Sample.timestamp` (2, varint).
const TAG_TIMESTAMP: u8 = 0x10;

fn varint_len(v: u64) -> usize {
    // 7 bits per byte; 0 takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The bytes of `v` as a varint, in order, to `emit`: the one varint loop
/// of the two writers below.
#[inline(always)]
fn varint_bytes(mut v: u64, mut emit: impl FnMut(u8)) {
    while v >= 0x80 {
        emit((v as u8) | 0x80);
        v >>= 7;
    }
    emit(v as u8);
}

/// `v` as a varint into `out`, which has room for it; returns its length.
fn put_varint_slice(out: &mut [u8], v: u64) -> usize {
    let mut i = 0;
    varint_bytes(v, |b| {
        out[i] = b;
        i += 1;
    });
    i
}

/// `v` as a varint onto `out`: a push per byte (one or two, nearly always,
/// after callers reserved room), where a copy of a short slice would be a
/// `memcpy` call.
fn put_varint(out: &mut Vec<u8>, v: u64) {
    varint_bytes(v, |b| out.push(b));
}

/// Bytes of a length-delimited field with `len` bytes of payload.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Bytes of a `Label` field inside a `TimeSeries` (names and values are never empty).
fn label_len(name: usize, value: usize) -> usize {
    if name + value < 124 {
        // One byte for each of the three lengths (see `put_label`).
        return 6 + name + value;
    }
    field_len(field_len(name) + field_len(value))
}

/// The `timestamp` field of a `Sample` (tag and varint), kept for the
/// next sample: the samples of a batch mostly share a few timestamps.
#[derive(Default)]
struct Timestamp {
    ms: i64,
    /// Empty for 0, which proto3 leaves out.
    field: ([u8; 11], u8),
}

impl Timestamp {
    /// The field for `ms`: all of the array (copied whole, a copy of a known
    /// size) and how much of it is the field.
    fn of(&mut self, ms: i64) -> (&[u8; 11], usize) {
        if ms != self.ms {
            self.ms = ms;
            let (bytes, len) = &mut self.field;
            *len = 0;
            if ms != 0 {
                bytes[0] = TAG_TIMESTAMP;
                *len = 1 + put_varint_slice(&mut bytes[1..], ms as u64) as u8;
            }
        }
        (&self.field.0, usize::from(self.field.1))
    }
}

/// A `Sample` field, framed (tag, length, value, timestamp): at most 22
/// bytes, written with one copy. proto3 leaves out `+0.0`.
struct SampleField([u8; 22], usize);

impl SampleField {
    fn len(&self) -> usize {
        self.1
    }

    /// Appended to `out`, which has room for [`SAMPLE_ROOM`] bytes more:
    /// the whole array, then cut to the field. Copies of a known size are
    /// a few moves; one of 13 to 22 bytes was a `memcpy` call.
    fn put(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&self.0);
        out.truncate(at + self.1);
    }
}

/// What [`SampleField::put`] needs beyond the field itself.
const SAMPLE_ROOM: usize = 22;

/// `timestamp` is [`Timestamp::of`]'s.
fn sample_field(value: f64, timestamp: (&[u8; 11], usize)) -> SampleField {
    let mut f = [0u8; 22];
    let mut n = 2;
    if value.to_bits() != 0 {
        f[2] = TAG_VALUE;
        f[3..11].copy_from_slice(&value.to_le_bytes());
        n = 11;
    }
    // All eleven bytes, of which the first `len` are the field.
    let (bytes, len) = timestamp;
    f[n..n + 11].copy_from_slice(bytes);
    n += len;
    // The payload is at most 20 bytes: its length is one varint byte.
    f[0] = TAG_SAMPLE;
    f[1] = (n - 2) as u8;
    SampleField(f, n)
}

/// `put_label(out, NAME_LABEL, name)`, with the framing and `__name__`
/// written as one 14-byte array when the lengths fit a byte each: this runs
/// for every series.
fn put_name_label(out: &mut Vec<u8>, name: &[u8]) {
    const N: usize = NAME_LABEL.len();
    let v = name.len();
    if N + v >= 124 {
        put_label(out, NAME_LABEL, name);
        return;
    }
    let mut head = [0u8; 6 + N];
    head[..4].copy_from_slice(&[TAG_LABEL, (4 + N + v) as u8, TAG_NAME, N as u8]);
    head[4..4 + N].copy_from_slice(NAME_LABEL.as_bytes());
    head[4 + N..].copy_from_slice(&[TAG_LABEL_VALUE, v as u8]);
    out.extend_from_slice(&head);
    out.extend_from_slice(name);
}

fn put_label(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    let (n, v) = (name.len(), value.len());
    if n + v < 124 {
        // Every length fits one varint byte: the framing in two stores.
        out.extend_from_slice(&[TAG_LABEL, (4 + n + v) as u8, TAG_NAME, n as u8]);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&[TAG_LABEL_VALUE, v as u8]);
        out.extend_from_slice(value);
        return;
    }
    out.push(TAG_LABEL);
    put_varint(out, (field_len(name.len()) + field_len(value.len())) as u64);
    out.push(TAG_NAME);
    put_varint(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
    out.push(TAG_LABEL_VALUE);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use conflux_core::naming::{BoolPolicy, NamingOptions, Target};
    use conflux_core::{Batch, Metric, Value};
    use proptest::prelude::*;
    use prost::Message as _;

    use super::*;

    // The remote write 1.0 messages, decoded by prost: an independent decoder.
    #[derive(Clone, PartialEq, prost::Message)]
    struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        timeseries: Vec<TimeSeries>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        samples: Vec<Sample>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Label {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(string, tag = "2")]
        value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Sample {
        #[prost(double, tag = "1")]
        value: f64,
        #[prost(int64, tag = "2")]
        timestamp: i64,
    }

    /// A series as decoded: labels in their order, samples as (value bits, ms).
    type Decoded = (Vec<(String, String)>, Vec<(u64, i64)>);

    fn prom() -> Encoder {
        Encoder::new(Naming::for_target(Target::Prometheus))
    }

    /// Encode, then decompress and decode every request with independent
    /// code; each request must also be byte for byte what prost writes for
    /// the decoded message (unless it holds a `-0.0`, which prost drops).
    fn run(enc: &mut Encoder, batch: &Batch, max: usize) -> (Encoded, Vec<Vec<Decoded>>) {
        let metrics: Vec<MetricRef<'_>> = batch.iter().collect();
        let e = enc.encode(&metrics, max).unwrap();
        let mut requests = Vec::new();
        for r in enc.requests() {
            let raw = snap::raw::Decoder::new().decompress_vec(r.body).unwrap();
            // Compressed a block at a time, it is what snap makes of it whole.
            let whole = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
            assert!(whole == r.body, "same bytes as snap");
            let wr = WriteRequest::decode(&raw[..]).unwrap();
            let neg_zero = wr
                .timeseries
                .iter()
                .flat_map(|t| &t.samples)
                .any(|s| s.value.to_bits() == (-0.0f64).to_bits());
            if !neg_zero {
                assert_eq!(wr.encode_to_vec(), raw, "same bytes as prost");
            }
            let samples: usize = wr.timeseries.iter().map(|t| t.samples.len()).sum();
            assert_eq!(samples, r.samples);
            requests.push(
                wr.timeseries
                    .into_iter()
                    .map(|t| {
                        (
                            t.labels.into_iter().map(|l| (l.name, l.value)).collect(),
                            t.samples
                                .into_iter()
                                .map(|s| (s.value.to_bits(), s.timestamp))
                                .collect(),
                        )
                    })
                    .collect(),
            );
        }
        assert_eq!(requests.len(), e.requests);
        assert_eq!(e.bytes, enc.requests().map(|r| r.body.len()).sum::<usize>());
        assert_eq!(e.metrics, enc.requests().map(|r| r.metrics).sum::<usize>());
        (e, requests)
    }

    fn one(batch: &Batch) -> (Encoded, Vec<Decoded>) {
        let (e, mut reqs) = run(&mut prom(), batch, usize::MAX);
        assert!(reqs.len() <= 1);
        (e, reqs.pop().unwrap_or_default())
    }

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> Decoded {
        (
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            samples.iter().map(|(v, t)| (v.to_bits(), *t)).collect(),
        )
    }

    const T: i64 = 1_700_000_000_123_456_789;
    const MS: i64 = 1_700_000_000_123;

    #[test]
    fn every_value_type_with_names_labels_and_ms() {
        let batch: Batch = [Metric::new("cpu")
            .tag("host", "web-1")
            .tag("data.center", "eu west")
            .tag("empty", "")
            .field("usage", 1.5)
            .field("count", -3i64)
            .field("big", (1u64 << 53) + 1)
            .field("up", true)
            .field("down", false)
            .field("note", "text")
            .field("value", 7.25)
            .at(T)]
        .into_iter()
        .collect();
        let (e, got) = one(&batch);
        let l = |name: &'static str| {
            [
                ("__name__", name),
                ("data_center", "eu west"),
                ("host", "web-1"),
            ]
        };
        assert_eq!(
            got,
            vec![
                series(&l("cpu_usage"), &[(1.5, MS)]),
                series(&l("cpu_count"), &[(-3.0, MS)]),
                series(&l("cpu_big"), &[(9_007_199_254_740_992.0, MS)]),
                series(&l("cpu_up"), &[(1.0, MS)]),
                series(&l("cpu_down"), &[(0.0, MS)]),
                series(&l("cpu"), &[(7.25, MS)]),
            ]
        );
        assert_eq!(
            e,
            Encoded {
                metrics: 1,
                points: 6,
                series: 6,
                requests: 1,
                bytes: e.bytes,
                skipped_string: 1,
                ..Encoded::default()
            }
        );
    }

    #[test]
    fn series_names_of_any_length_are_framed_right() {
        // 115 bytes of name is the last that `put_name_label` frames with
        // one-byte lengths; 116 and on go through `put_label`'s varints.
        for len in [1, 114, 115, 116, 117, 200, 300] {
            let name = "n".repeat(len);
            let batch: Batch = [Metric::new(&name)
                .tag("host", "a")
                .field("value", 1.5)
                .at(T)]
            .into_iter()
            .collect();
            let (_, got) = one(&batch);
            assert_eq!(
                got,
                [series(&[("__name__", &name), ("host", "a")], &[(1.5, MS)])],
                "{len}"
            );
        }
    }

    #[test]
    fn name_hashes_tell_apart_lengths_padding_and_every_block() {
        let keys = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
        let base = "host_00000_x86_64_us_east_1a_cpu0_prod_linux_r17_cpu_usage_user";
        let mut seen = std::collections::HashSet::new();
        for name in ["", "a", "a\0", "b", &base[..16], &base[..17], base] {
            assert!(seen.insert(name_hash(keys, name.as_bytes())), "{name:?}");
        }
        // A change in any byte, in a whole block or in the tail.
        for i in 0..base.len() {
            let mut b = base.as_bytes().to_vec();
            b[i] ^= 1;
            assert!(seen.insert(name_hash(keys, &b)), "byte {i}");
        }
        // Blocks in another order (of one lane, or of both).
        let swapped = |a: usize, b: usize| {
            let mut v = base.as_bytes().to_vec();
            for k in 0..16 {
                v.swap(16 * a + k, 16 * b + k);
            }
            name_hash(keys, &v)
        };
        for (a, b) in [(0, 1), (0, 2), (1, 2)] {
            assert!(seen.insert(swapped(a, b)), "blocks {a} and {b}");
        }
        // Equal names, equal hashes; other keys, another hash.
        assert_eq!(
            name_hash(keys, base.as_bytes()),
            name_hash(keys, base.as_bytes())
        );
        assert_ne!(
            name_hash(keys, base.as_bytes()),
            name_hash([keys[1], keys[0]], base.as_bytes())
        );
    }

    #[test]
    fn labels_sort_bytewise_with_name_in_place() {
        let batch: Batch = [Metric::new("m")
            .tag("a", "1")
            .tag("_a", "2")
            .tag("__a", "3")
            .tag("Zone", "4")
            .tag("__z", "5")
            .field("value", 1.0)
            .at(T)]
        .into_iter()
        .collect();
        let (_, got) = one(&batch);
        let names: Vec<&str> = got[0].0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["Zone", "__a", "__name__", "__z", "_a", "a"]);
    }

    #[test]
    fn sanitized_label_names_are_sorted_again_and_the_first_wins() {
        // Tag order (by original key): "-x" < "9x" < "a.z" < "a_b" < "a_z" < "x".
        let batch: Batch = [Metric::new("m")
            .tag("a_z", "third")
            .tag("a.z", "first")
            .tag("a_b", "b")
            .tag("x", "plain")
            .tag("9x", "digit")
            .tag("-x", "dash")
            .field("value", 1.0)
            .at(T)]
        .into_iter()
        .collect();
        let (e, got) = one(&batch);
        assert_eq!(
            got,
            vec![series(
                &[
                    ("__name__", "m"),
                    ("a_b", "b"),
                    ("a_z", "first"),
                    ("x", "dash")
                ],
                &[(1.0, MS)]
            )]
        );
        assert_eq!(e.points, 1, "merged labels count nothing");
    }

    #[test]
    fn empty_values_unnamable_tags_and_name_tags_are_left_out() {
        let batch: Batch = [Metric::new("m")
            .tag("__name__", "evil")
            .tag("empty", "")
            .tag("é", "no name left")
            .tag("ok", "v")
            .field("f", 2.0)
            .at(T)]
        .into_iter()
        .collect();
        let (_, got) = one(&batch);
        assert_eq!(
            got,
            vec![series(&[("__name__", "m_f"), ("ok", "v")], &[(2.0, MS)])]
        );
    }

    #[test]
    fn repeated_series_are_grouped_and_sorted_by_time() {
        let m = |host: &str, v: f64, ms: i64| {
            Metric::new("cpu")
                .tag("host", host)
                .field("v", v)
                .at(ms * 1_000_000)
        };
        let batch: Batch = [
            m("a", 1.0, 3000),
            m("b", 2.0, 1000),
            m("a", 3.0, 1000),
            m("a", 4.0, 2000),
            m("a", 5.0, 1000),
        ]
        .into_iter()
        .collect();
        let (e, got) = one(&batch);
        assert_eq!(
            got,
            vec![
                series(
                    &[("__name__", "cpu_v"), ("host", "a")],
                    &[(3.0, 1000), (5.0, 1000), (4.0, 2000), (1.0, 3000)]
                ),
                series(&[("__name__", "cpu_v"), ("host", "b")], &[(2.0, 1000)]),
            ]
        );
        assert_eq!((e.metrics, e.points, e.series), (5, 5, 2));
    }

    /// Series told apart by their bytes when their hashes collide, fully
    /// (all equal) or in the bits that pick a slot of the group table.
    #[test]
    fn series_whose_hashes_collide_are_still_told_apart() {
        let mut b = Batch::new();
        for i in 0..40 {
            let mut m = b.metric(&format!("m{}", i % 7));
            m.tag("host", &format!("h{}", i % 3))
                .field("v", Value::Float(f64::from(i)));
            m.finish(i64::from(40 - i) * 1_000_000).unwrap();
        }
        let metrics: Vec<MetricRef<'_>> = b.iter().collect();
        let mut enc = prom();
        enc.load(&metrics);
        type Written = Vec<(Vec<(String, String)>, Vec<(f64, i64)>)>;
        let written = |enc: &Encoder| -> Written {
            enc.series()
                .map(|s| {
                    let labels = s.labels().map(|(k, v)| (k.to_owned(), v.to_owned()));
                    (labels.collect(), s.samples().collect())
                })
                .collect()
        };
        let want = written(&enc);
        // 21 series (7 names by 3 hosts) holding the 40 samples.
        assert_eq!(want.len(), 21);
        assert_eq!(want.iter().map(|(_, s)| s.len()).sum::<usize>(), 40);
        let hashes: Vec<u64> = enc.points.iter().map(|p| p.hash).collect();
        // All equal; or equal in the low bits only.
        for collide in [|_: u64| 7, |h: u64| h << 32] {
            for (p, &h) in enc.points.iter_mut().zip(&hashes) {
                p.hash = collide(h);
            }
            enc.order_points();
            assert_eq!(written(&enc), want);
        }
    }

    #[test]
    fn fields_that_name_the_same_series_are_one_series() {
        // `a.b` and `a-b` both give `m_a_b`; tags `h.x` and `h_x` one label.
        let batch: Batch = [
            Metric::new("m")
                .tag("h.x", "1")
                .field("a.b", 1.0)
                .field("a-b", 2.0)
                .at(2_000_000),
            Metric::new("m")
                .tag("h_x", "1")
                .field("a_b", 3.0)
                .at(1_000_000),
        ]
        .into_iter()
        .collect();
        let (_, got) = one(&batch);
        assert_eq!(
            got,
            vec![series(
                &[("__name__", "m_a_b"), ("h_x", "1")],
                &[(3.0, 1), (1.0, 2), (2.0, 2)]
            )]
        );
    }

    #[test]
    fn distinct_series_keep_the_batch_order() {
        let batch: Batch = [
            Metric::new("z").field("value", 1.0).at(5_000_000),
            Metric::new("a").field("value", 2.0).at(1_000_000),
            Metric::new("z")
                .tag("k", "v")
                .field("value", 3.0)
                .at(3_000_000),
        ]
        .into_iter()
        .collect();
        let (_, got) = one(&batch);
        assert_eq!(
            got,
            vec![
                series(&[("__name__", "z")], &[(1.0, 5)]),
                series(&[("__name__", "a")], &[(2.0, 1)]),
                series(&[("__name__", "z"), ("k", "v")], &[(3.0, 3)]),
            ]
        );
    }

    #[test]
    fn splits_into_requests_with_older_samples_first() {
        let mut metrics = Vec::new();
        for i in (0..5).rev() {
            metrics.push(
                Metric::new("r")
                    .field("value", f64::from(i))
                    .at(i64::from(i) * 1_000_000),
            );
        }
        metrics.push(Metric::new("s").field("a", 1.0).field("b", 2.0).at(0));
        let batch: Batch = metrics.into_iter().collect();
        let mut enc = prom();
        let (e, reqs) = run(&mut enc, &batch, 2);
        assert_eq!((e.requests, e.points, e.metrics, e.series), (4, 7, 6, 5));
        let r = |v: f64| series(&[("__name__", "r")], &[(v, v as i64)]);
        let two = |a: f64| {
            let (l, mut s) = r(a);
            s.extend(r(a + 1.0).1);
            (l, s)
        };
        assert_eq!(reqs[0], vec![two(0.0)]);
        assert_eq!(reqs[1], vec![two(2.0)]);
        assert_eq!(
            reqs[2],
            vec![r(4.0), series(&[("__name__", "s_a")], &[(1.0, 0)])]
        );
        assert_eq!(reqs[3], vec![series(&[("__name__", "s_b")], &[(2.0, 0)])]);
        let per_request: Vec<(usize, usize)> =
            enc.requests().map(|r| (r.samples, r.metrics)).collect();
        // Each metric counts once, in the request of its first sample.
        assert_eq!(per_request, [(2, 2), (2, 2), (2, 2), (1, 0)]);
    }

    #[test]
    fn requests_of_many_snappy_blocks_are_compressed_as_snap_does_them_whole() {
        // About 330 kB of protobuf: distinct series with tags, then one
        // series of 12 000 samples (some 200 kB in one `TimeSeries`).
        let mut batch = Batch::new();
        for i in 0..1500 {
            let mut b = batch.metric("some_fairly_long_measurement_name");
            b.tag("host", &format!("host-{:05}.example.org", i / 7))
                .tag("instance", &format!("{i}"))
                .field(
                    &format!("field_{}", i % 7),
                    Value::Float(f64::from(i) / 3.0),
                );
            b.finish(T + i64::from(i)).unwrap();
        }
        for i in 0..12_000 {
            let mut b = batch.metric("long");
            b.field("value", Value::Float(f64::from(i).sqrt()));
            b.finish(T + i64::from(i) * 1_000_000).unwrap();
        }
        let mut enc = prom();
        let metrics: Vec<MetricRef<'_>> = batch.iter().collect();
        enc.load(&metrics);
        let mut whole = Vec::new();
        enc.write_protobuf(&mut whole);
        assert!(whole.len() > 5 * SNAPPY_BLOCK, "{}", whole.len());
        let (e, reqs) = run(&mut enc, &batch, usize::MAX);
        assert_eq!((e.requests, e.series, e.points), (1, 1501, 13_500));
        assert_eq!(reqs[0][1500].1.len(), 12_000);
        let body = enc.requests().next().unwrap().body;
        let snapped = snap::raw::Encoder::new().compress_vec(&whole).unwrap();
        assert!(body == snapped.as_slice(), "not snap's bytes");
        // Split: each request on its own, and a reused encoder again.
        for max in [1000, 7000, 13_499] {
            let (e, reqs) = run(&mut enc, &batch, max);
            assert_eq!(e.requests, 13_500usize.div_ceil(max));
            let points: usize = reqs.iter().flatten().map(|s| s.1.len()).sum();
            assert_eq!(points, 13_500);
        }
    }

    #[test]
    fn nan_and_infinities_are_written_and_nan_is_never_a_staleness_marker() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut batch = Batch::new();
        let mut b = batch.metric("x");
        b.field("nan", Value::Float(f64::NAN))
            .field("stale", Value::Float(stale))
            .field("inf", Value::Float(f64::INFINITY))
            .field("ninf", Value::Float(f64::NEG_INFINITY));
        b.finish(T).unwrap();
        let (e, got) = one(&batch);
        let values: Vec<u64> = got.iter().map(|s| s.1[0].0).collect();
        assert_eq!(
            values,
            [f64::NAN, f64::NAN, f64::INFINITY, f64::NEG_INFINITY].map(f64::to_bits)
        );
        assert_eq!(e.points, 4);
    }

    #[test]
    fn negative_zero_keeps_its_sign_and_zero_is_omitted_as_proto3_does() {
        let batch: Batch = [Metric::new("z").field("neg", -0.0).field("pos", 0.0).at(0)]
            .into_iter()
            .collect();
        let mut enc = prom();
        let metrics: Vec<MetricRef<'_>> = batch.iter().collect();
        enc.encode(&metrics, 10).unwrap();
        let body = enc.requests().next().unwrap().body;
        let raw = snap::raw::Decoder::new().decompress_vec(body).unwrap();
        let wr = WriteRequest::decode(&raw[..]).unwrap();
        let bits: Vec<u64> = wr
            .timeseries
            .iter()
            .map(|t| t.samples[0].value.to_bits())
            .collect();
        assert_eq!(bits, [(-0.0f64).to_bits(), 0]);
        // The `+0` sample is empty (both fields default); `-0` has its value.
        let empty_sample = [TAG_SAMPLE, 0];
        assert!(raw.windows(2).any(|w| w == empty_sample));
        assert_eq!(raw.len(), wr.encode_to_vec().len() + 9, "prost drops -0.0");
    }

    #[test]
    fn timestamps_are_floored_to_milliseconds() {
        let batch: Batch = [
            Metric::new("t").tag("k", "1").field("value", 1.0).at(-1),
            Metric::new("t")
                .tag("k", "2")
                .field("value", 1.0)
                .at(999_999),
            Metric::new("t")
                .tag("k", "3")
                .field("value", 1.0)
                .at(i64::MIN),
        ]
        .into_iter()
        .collect();
        let (_, got) = one(&batch);
        let ts: Vec<i64> = got.iter().map(|s| s.1[0].1).collect();
        assert_eq!(ts, [-1, 0, i64::MIN.div_euclid(1_000_000)]);
    }

    #[test]
    fn policy_skips_are_counted() {
        let batch: Batch = [
            Metric::new("...").field("value", 1.0).at(T),
            Metric::new("b").field("on", true).field("s", "str").at(T),
        ]
        .into_iter()
        .collect();
        let opts = NamingOptions {
            bools: Some(BoolPolicy::Skip),
            ..NamingOptions::default()
        };
        let mut enc = Encoder::new(Naming::with_options(Target::Prometheus, &opts));
        let (e, reqs) = run(&mut enc, &batch, 100);
        assert!(reqs.is_empty());
        assert_eq!(
            (
                e.metrics,
                e.points,
                e.requests,
                e.skipped_invalid_name,
                e.skipped_bool,
                e.skipped_string
            ),
            (0, 0, 0, 1, 1, 1)
        );
    }

    #[test]
    fn buffers_are_reused_without_leftovers() {
        let mut enc = prom();
        let big: Batch = (0..500)
            .map(|i| {
                Metric::new("big")
                    .tag("i", i.to_string())
                    .field("value", 1.0)
                    .at(T)
            })
            .collect();
        let (e, _) = run(&mut enc, &big, 100);
        assert_eq!(e.requests, 5);
        let small: Batch = [Metric::new("small").tag("k", "v").field("value", 2.0).at(T)]
            .into_iter()
            .collect();
        let (e, reqs) = run(&mut enc, &small, 100);
        assert_eq!(e.requests, 1);
        assert_eq!(
            reqs[0],
            vec![series(&[("__name__", "small"), ("k", "v")], &[(2.0, MS)])]
        );
    }

    #[test]
    fn tags_written_as_they_are_and_sanitized_tags_meet_in_one_series() {
        // `h_x` is a label name and is written from the batch; `h.x` is
        // sanitized into the label table; both name one series.
        let batch: Batch = [
            Metric::new("m")
                .tag("h_x", "a")
                .field("value", 1.0)
                .at(T + 2_000_000),
            Metric::new("m")
                .tag("h.x", "a")
                .field("value", 2.0)
                .at(T + 1_000_000),
            Metric::new("m")
                .tag("A", "b")
                .tag("h_x", "a")
                .field("value", 3.0)
                .at(T),
        ]
        .into_iter()
        .collect();
        let (e, reqs) = one(&batch);
        assert_eq!((e.points, e.series), (3, 2));
        assert_eq!(
            reqs,
            vec![
                series(
                    &[("__name__", "m"), ("h_x", "a")],
                    &[(2.0, MS + 1), (1.0, MS + 2)]
                ),
                series(&[("A", "b"), ("__name__", "m"), ("h_x", "a")], &[(3.0, MS)]),
            ]
        );
    }

    #[test]
    fn names_met_again_in_a_batch_make_one_series_whatever_the_table_did() {
        let mut enc = prom();
        // Twice as many names as slots, each twice, 1 ms apart: slots are
        // taken over before a name comes back, and the table is left aside
        // in the middle of the batch.
        let n = 2 * NAME_SLOTS;
        let batch: Batch = (0..2 * n)
            .map(|i| {
                Metric::new(format!("m.{}", i % n))
                    .tag("host", "a")
                    .field("value", i as f64)
                    .at(T + (i / n) as i64 * 1_000_000)
            })
            .collect();
        for _ in 0..2 {
            let (e, reqs) = run(&mut enc, &batch, usize::MAX);
            assert_eq!((e.points, e.series), (2 * n, n));
            for (i, s) in reqs[0].iter().enumerate() {
                let name = format!("m_{i}");
                assert_eq!(
                    *s,
                    series(
                        &[("__name__", &name), ("host", "a")],
                        &[(i as f64, MS), ((i + n) as f64, MS + 1)]
                    )
                );
            }
        }
    }

    #[test]
    fn series_names_are_kept_between_batches_and_replaced_when_their_slot_is_taken() {
        let mut enc = prom();
        // Three times as many names as slots: most slots are taken over.
        let many: Batch = (0..3 * NAME_SLOTS)
            .map(|i| Metric::new(format!("m.{i}")).field("value", 1.0).at(T))
            .collect();
        for _ in 0..2 {
            let (e, reqs) = run(&mut enc, &many, usize::MAX);
            assert_eq!(e.points, 3 * NAME_SLOTS);
            for (i, s) in reqs[0].iter().enumerate() {
                assert_eq!(s.0, vec![("__name__".to_owned(), format!("m_{i}"))]);
            }
            // Nothing but misses: the table is left aside for a while.
            assert!(enc.names.bypass > 0);
        }
        enc.names.bypass = 0;
        let small: Batch = [
            Metric::new("m.7").field("idle", 2.0).at(T),
            Metric::new("m.7").field("value", 3.0).at(T),
            Metric::new("...").field("value", 4.0).at(T),
        ]
        .into_iter()
        .collect();
        for _ in 0..2 {
            let (e, reqs) = run(&mut enc, &small, usize::MAX);
            assert_eq!(e.skipped_invalid_name, 1);
            assert_eq!(
                reqs[0],
                vec![
                    series(&[("__name__", "m_7_idle")], &[(2.0, MS)]),
                    series(&[("__name__", "m_7")], &[(3.0, MS)]),
                ]
            );
        }
    }

    #[test]
    fn the_table_is_left_aside_longer_after_each_round_it_fails() {
        let naming = Naming::for_target(Target::Prometheus);
        let mut names = Names::default();
        let (mut buf, mut text) = (NameBuf::default(), Vec::new());
        let mut get = |names: &mut Names, name: &str| {
            text.clear();
            names.get(&naming, &mut buf, &mut text, name, "value")
        };
        let mut bypasses = Vec::new();
        let mut fresh = 0..;
        for _ in 0..6 {
            // A round of names never met; the bypass it earns is skipped.
            for i in fresh.by_ref().take(NAME_ROUND as usize) {
                assert!(get(&mut names, &format!("m.{i}")).is_some());
            }
            bypasses.push(std::mem::take(&mut names.bypass));
        }
        let r = 15 * NAME_ROUND;
        assert_eq!(bypasses, [r, 2 * r, 4 * r, 8 * r, 16 * r, 16 * r]);
        // A round of names met again: the next failure starts over.
        for _ in 0..NAME_ROUND {
            assert!(get(&mut names, "m.0").is_some());
        }
        assert_eq!((names.bypass, names.failed), (0, 0));
    }

    /// One sample with its series' labels: (labels, value bits, ms).
    type Flat = (Vec<(String, String)>, u64, i64);

    /// The model: what remote write must carry for `batch`, as a sorted list
    /// of samples, built without the encoder's tables.
    fn model(batch: &Batch) -> Vec<Flat> {
        let naming = Naming::for_target(Target::Prometheus);
        let mut out = Vec::new();
        for m in batch.iter() {
            let mut labels = std::collections::BTreeMap::new();
            for (k, v) in m.tags() {
                let mut name = String::new();
                sanitize_prometheus_label(k, &mut name);
                if !v.is_empty() && !name.is_empty() && name != NAME_LABEL {
                    labels.entry(name).or_insert_with(|| v.to_owned());
                }
            }
            for (f, v) in m.fields() {
                let value = match v {
                    Value::Str(_) => continue,
                    Value::Float(x) if x.is_nan() => f64::NAN,
                    v => v.as_f64().unwrap_or_default(),
                };
                let mut buf = NameBuf::default();
                let Some(name) = naming.series_name(m.name(), f, &mut buf) else {
                    continue;
                };
                let mut l = labels.clone();
                l.insert(NAME_LABEL.to_owned(), name.to_owned());
                out.push((
                    l.into_iter().collect(),
                    value.to_bits(),
                    m.timestamp().div_euclid(1_000_000),
                ));
            }
        }
        out.sort();
        out
    }

    fn arb_metric() -> impl Strategy<Value = Metric> {
        let names = prop::sample::select(vec!["cpu", "mem", "9p", "a.b", "a_b", "..."]);
        let keys = prop::sample::select(vec![
            "host", "h.x", "h_x", "Zone", "__name__", "_a", "__a", "é", "dc",
        ]);
        let vals = prop::sample::select(vec!["", "a", "b"]);
        let fields = prop::sample::select(vec!["value", "v", "v.x", "v_x", "idle"]);
        let value = prop_oneof![
            any::<f64>().prop_map(conflux_core::FieldValue::Float),
            any::<i64>().prop_map(conflux_core::FieldValue::Int),
            any::<u64>().prop_map(conflux_core::FieldValue::UInt),
            any::<bool>().prop_map(conflux_core::FieldValue::Bool),
            Just(conflux_core::FieldValue::Str("s".into())),
        ];
        (
            names,
            prop::collection::btree_map(keys, vals, 0..5),
            prop::collection::btree_map(fields, value, 1..4),
            0i64..4,
        )
            .prop_map(|(name, tags, fields, t)| Metric {
                name: name.to_owned(),
                tags: tags
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                timestamp: T + t * 1_000_000,
            })
    }

    proptest! {
        #[test]
        fn carries_exactly_the_model_with_sorted_labels_and_samples(
            metrics in prop::collection::vec(arb_metric(), 0..40),
            max in 1usize..20,
        ) {
            let batch: Batch = metrics.into_iter().collect();
            let mut enc = prom();
            let (e, reqs) = run(&mut enc, &batch, max);
            let mut got = Vec::new();
            let mut seen_series: Vec<(Vec<(String, String)>, i64)> = Vec::new();
            for req in &reqs {
                for (labels, samples) in req {
                    prop_assert!(labels.windows(2).all(|w| w[0].0 < w[1].0), "{labels:?}");
                    prop_assert!(samples.windows(2).all(|w| w[0].1 <= w[1].1), "{samples:?}");
                    // Across requests, a series never goes back in time either.
                    if let Some(last) = seen_series.iter().rev().find(|(l, _)| l == labels) {
                        prop_assert!(last.1 <= samples[0].1);
                    }
                    seen_series.push((labels.clone(), samples[samples.len() - 1].1));
                    for &(v, t) in samples {
                        got.push((labels.clone(), v, t));
                    }
                }
                prop_assert!(req.iter().map(|s| s.1.len()).sum::<usize>() <= max);
            }
            got.sort();
            let want = model(&batch);
            prop_assert_eq!(e.points, want.len());
            prop_assert_eq!(got, want);
        }

        #[test]
        fn a_reused_encoder_writes_what_a_fresh_one_writes(
            batches in prop::collection::vec(prop::collection::vec(arb_metric(), 0..20), 1..5),
            max in 1usize..20,
        ) {
            let mut reused = prom();
            for metrics in batches {
                let batch: Batch = metrics.into_iter().collect();
                let (re, rreqs) = run(&mut reused, &batch, max);
                let (fe, freqs) = run(&mut prom(), &batch, max);
                prop_assert_eq!(re, fe);
                prop_assert_eq!(rreqs, freqs);
            }
        }
    }
}
