//! The normalized metric and the [`Batch`] that carries many of them.
//!
//! A batch keeps every string of its metrics in one arena and every tag and
//! field in flat arrays, so a parser fills a batch without allocating per
//! metric, per tag or per field, and fanning a batch out to N sinks shares one
//! `Arc<Batch>`. [`Metric`] is the owned form, for tests and for callers that
//! build metrics one at a time.

use std::cmp::Ordering;
use std::fmt;

pub mod wire;

/// A field value, borrowed from a [`Batch`] (or from the caller when building).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// 64-bit float (line protocol `1.5`).
    Float(f64),
    /// Signed integer (line protocol `1i`).
    Int(i64),
    /// Unsigned integer (line protocol `1u`).
    UInt(u64),
    /// Boolean.
    Bool(bool),
    /// String.
    Str(&'a str),
}

impl Value<'_> {
    /// The value as an owned [`FieldValue`].
    pub fn to_owned_value(self) -> FieldValue {
        match self {
            Value::Float(v) => FieldValue::Float(v),
            Value::Int(v) => FieldValue::Int(v),
            Value::UInt(v) => FieldValue::UInt(v),
            Value::Bool(v) => FieldValue::Bool(v),
            Value::Str(v) => FieldValue::Str(v.to_owned()),
        }
    }

    /// The value as a float where it is a number; bools give 1 or 0 and strings `None`.
    /// Large integers lose precision, as they do in every float-only target.
    pub fn as_f64(self) -> Option<f64> {
        match self {
            Value::Float(v) => Some(v),
            Value::Int(v) => Some(v as f64),
            Value::UInt(v) => Some(v as f64),
            Value::Bool(v) => Some(if v { 1.0 } else { 0.0 }),
            Value::Str(_) => None,
        }
    }

    /// Short name of the type, for error messages and counters.
    pub fn type_name(self) -> &'static str {
        match self {
            Value::Float(_) => "float",
            Value::Int(_) => "int",
            Value::UInt(_) => "uint",
            Value::Bool(_) => "bool",
            Value::Str(_) => "string",
        }
    }
}

/// An owned field value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// 64-bit float.
    Float(f64),
    /// Signed integer.
    Int(i64),
    /// Unsigned integer.
    UInt(u64),
    /// Boolean.
    Bool(bool),
    /// String.
    Str(String),
}

impl FieldValue {
    /// Borrow as a [`Value`].
    pub fn as_value(&self) -> Value<'_> {
        match self {
            FieldValue::Float(v) => Value::Float(*v),
            FieldValue::Int(v) => Value::Int(*v),
            FieldValue::UInt(v) => Value::UInt(*v),
            FieldValue::Bool(v) => Value::Bool(*v),
            FieldValue::Str(v) => Value::Str(v),
        }
    }
}

impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::Float(v)
    }
}
impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        FieldValue::Int(v)
    }
}
impl From<u64> for FieldValue {
    fn from(v: u64) -> Self {
        FieldValue::UInt(v)
    }
}
impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Bool(v)
    }
}
impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::Str(v.to_owned())
    }
}
impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::Str(v)
    }
}

/// One owned metric: name, tags sorted by key, one or more fields, timestamp in
/// nanoseconds since the Unix epoch (UTC).
///
/// Build with [`Metric::new`] and the chaining helpers; [`Batch::push`] checks
/// the invariants (sorts tags, rejects duplicate tag keys and empty field sets).
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Measurement (Influx) or series name (OpenTSDB, KairosDB, Graphite).
    pub name: String,
    /// Tags, sorted by key once the metric went through a [`Batch`].
    pub tags: Vec<(String, String)>,
    /// Fields in their original order; keys unique.
    pub fields: Vec<(String, FieldValue)>,
    /// Nanoseconds since the Unix epoch, UTC.
    pub timestamp: i64,
}

impl Metric {
    /// A metric with a name, no tags, no fields and timestamp 0.
    pub fn new(name: impl Into<String>) -> Self {
        Metric {
            name: name.into(),
            tags: Vec::new(),
            fields: Vec::new(),
            timestamp: 0,
        }
    }

    /// Add a tag.
    #[must_use]
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// Add a field.
    #[must_use]
    pub fn field(mut self, key: impl Into<String>, value: impl Into<FieldValue>) -> Self {
        self.fields.push((key.into(), value.into()));
        self
    }

    /// Set the timestamp (ns since the epoch).
    #[must_use]
    pub fn at(mut self, timestamp_ns: i64) -> Self {
        self.timestamp = timestamp_ns;
        self
    }
}

/// Why a metric could not be added to a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// The metric has an empty name.
    #[error("missing metric name")]
    EmptyName,
    /// The metric has no fields.
    #[error("missing fields")]
    NoFields,
    /// A tag key was empty.
    #[error("empty tag key")]
    EmptyTagKey,
    /// A field key was empty.
    #[error("empty field key")]
    EmptyFieldKey,
    /// Two tags had the same key.
    #[error("duplicate tags")]
    DuplicateTag,
    /// The batch arena would pass 4 GiB.
    #[error("batch too large")]
    BatchTooLarge,
    /// More tags than the batch's [`Limits::max_tags`], counted after
    /// duplicate keys collapsed.
    #[error("too many tags (max {max})")]
    TooManyTags {
        /// The limit that was passed.
        max: usize,
    },
    /// A series key longer than the batch's [`Limits::max_series_key_bytes`].
    #[error("series key too long (max {max} bytes)")]
    SeriesKeyTooLong {
        /// The limit that was passed, in bytes.
        max: usize,
    },
}

/// Per-metric limits a [`Batch`] enforces in [`MetricBuilder::finish`]: what
/// keeps one hostile or runaway client from filling the gateway and every
/// backend behind it with giant series. Listeners set them from their config
/// (`max_tags_per_metric`, `max_series_key_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most tags one metric may carry, counted after duplicate keys collapsed.
    pub max_tags: usize,
    /// Longest series key in bytes, measured as InfluxDB's unescaped key:
    /// the name, then `,key=value` for each tag, so `name.len()` plus
    /// `1 + key.len() + 1 + value.len()` per tag.
    pub max_series_key_bytes: usize,
}

impl Limits {
    /// Default of [`Limits::max_tags`]: generous (VictoriaMetrics allows far
    /// fewer labels by default), so that nothing which works without the
    /// limit breaks.
    pub const DEFAULT_MAX_TAGS: usize = 256;
    /// Default of [`Limits::max_series_key_bytes`]: InfluxDB's hard cap on a
    /// series key (`models.MaxKeyLength`).
    pub const DEFAULT_MAX_SERIES_KEY_BYTES: usize = 65_535;
    /// No limit, for batches that only copy metrics accepted before.
    pub const UNLIMITED: Limits = Limits {
        max_tags: usize::MAX,
        max_series_key_bytes: usize::MAX,
    };
}

impl Default for Limits {
    /// 256 tags and 65535 bytes of series key.
    fn default() -> Self {
        Limits {
            max_tags: Self::DEFAULT_MAX_TAGS,
            max_series_key_bytes: Self::DEFAULT_MAX_SERIES_KEY_BYTES,
        }
    }
}

/// How [`MetricBuilder::finish_with`] treats two tags with the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DuplicateTags {
    /// Reject the metric (InfluxDB's rule).
    #[default]
    Reject,
    /// Keep the tag added last.
    LastWins,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

#[derive(Debug, Clone, Copy)]
enum RawValue {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(Span),
}

#[derive(Debug, Clone, Copy)]
struct TagRec {
    key: Span,
    value: Span,
}

impl TagRec {
    /// Its part of a series key: `,key=value`.
    fn key_bytes(&self) -> usize {
        2 + self.key.len as usize + self.value.len as usize
    }
}

#[derive(Debug, Clone, Copy)]
struct FieldRec {
    key: Span,
    value: RawValue,
}

#[derive(Debug, Clone, Copy)]
struct Rec {
    name: Span,
    tags_start: u32,
    tags_end: u32,
    fields_start: u32,
    fields_end: u32,
    timestamp: i64,
    /// Time to live in seconds for targets that store it (KairosDB); 0 = none.
    ttl: u32,
    /// At least the series-key bytes of its tags (`,k=v` each), saturating:
    /// a metric that shares them checks its key length without reading them.
    tags_key: u32,
}

/// Many metrics in one arena. Shared between sinks as `Arc<Batch>`.
///
/// A batch carries the [`Limits`] its builder checks (the defaults unless
/// [`Batch::set_limits`] changed them); they are not part of equality.
#[derive(Clone, Default)]
pub struct Batch {
    arena: String,
    metrics: Vec<Rec>,
    tags: Vec<TagRec>,
    fields: Vec<FieldRec>,
    limits: Limits,
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Batch {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl Batch {
    /// An empty batch with the default [`Limits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `metrics` metrics and `bytes` bytes of strings.
    /// Tags and fields are sized for ten per metric, a typical Telegraf line.
    pub fn with_capacity(metrics: usize, bytes: usize) -> Self {
        Self::with_capacities(metrics, metrics * 10, metrics * 10, bytes)
    }

    /// An empty batch with room for `metrics` metrics, `tags` tags, `fields`
    /// fields and `bytes` bytes of strings: for a listener whose lines have
    /// a known shape (a Graphite line has one field).
    pub fn with_capacities(metrics: usize, tags: usize, fields: usize, bytes: usize) -> Self {
        Batch {
            arena: String::with_capacity(bytes),
            metrics: Vec::with_capacity(metrics),
            tags: Vec::with_capacity(tags),
            fields: Vec::with_capacity(fields),
            limits: Limits::default(),
        }
    }

    /// An empty batch without limits, for code that rebuilds metrics a
    /// listener accepted before (sinks), which must never lose one.
    pub fn unlimited() -> Self {
        let mut b = Batch::new();
        b.set_limits(Limits::UNLIMITED);
        b
    }

    /// Set the limits checked for every metric added from now on (metrics
    /// already in the batch are not checked again). [`Batch::clear`] keeps them.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The limits checked for metrics added to this batch.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Number of metrics.
    pub fn len(&self) -> usize {
        self.metrics.len()
    }

    /// True when the batch holds no metric.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    /// Number of points (field values) over all metrics.
    pub fn points(&self) -> usize {
        self.fields.len()
    }

    /// Bytes of string data held (a rough size for accounting).
    pub fn arena_bytes(&self) -> usize {
        self.arena.len()
    }

    /// Remove every metric, keeping the allocations and the limits for reuse.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.metrics.clear();
        self.tags.clear();
        self.fields.clear();
    }

    /// The metric at `index`.
    ///
    /// # Panics
    /// When `index >= self.len()`.
    pub fn get(&self, index: usize) -> MetricRef<'_> {
        MetricRef {
            batch: self,
            rec: &self.metrics[index],
        }
    }

    /// Iterate over the metrics in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = MetricRef<'_>> + Clone + '_ {
        self.metrics
            .iter()
            .map(move |rec| MetricRef { batch: self, rec })
    }

    /// Start a metric. Add tags and fields to the returned builder, then call
    /// [`MetricBuilder::finish`]; a builder dropped without finishing leaves the
    /// batch as it was.
    pub fn metric(&mut self, name: &str) -> MetricBuilder<'_> {
        let mark = Mark {
            arena: self.arena.len(),
            tags: self.tags.len(),
            fields: self.fields.len(),
        };
        let name = self.intern(name);
        let limits = self.limits;
        MetricBuilder {
            batch: self,
            mark,
            name,
            ttl: 0,
            limits,
            sorted_tags: 0,
            shared: None,
            finished: false,
        }
    }

    /// Add an owned metric, checking the same rules as the builder, the
    /// batch's [`Limits`] included.
    ///
    /// # Errors
    /// The rule the metric breaks; the batch is then unchanged.
    pub fn push(&mut self, metric: &Metric) -> Result<(), MetricError> {
        let mut b = self.metric(&metric.name);
        for (k, v) in &metric.tags {
            b.tag(k, v);
        }
        for (k, v) in &metric.fields {
            b.field(k, v.as_value());
        }
        b.finish(metric.timestamp)
    }

    /// Add a metric read from another batch (already valid). This batch's
    /// [`Limits`] are not checked: the metric was accepted under the source's.
    pub fn push_ref(&mut self, metric: MetricRef<'_>) {
        let mut b = self.metric(metric.name());
        for (k, v) in metric.tags() {
            b.tag(k, v);
        }
        for (k, v) in metric.fields() {
            b.field(k, v);
        }
        b.ttl(metric.ttl().unwrap_or(0));
        // A copy must never lose a metric to limits narrower than the source's.
        b.limits = Limits::UNLIMITED;
        // The source already holds the invariants; only the 4 GiB cap can fail.
        let _ = b.finish(metric.timestamp());
    }

    /// Add a metric with no tags and one float field, as
    /// `metric(name).field(key, Value::Float(value)).finish(timestamp_ns)`
    /// would, with the same checks in the same order, in one step: the
    /// plain Graphite line, where the builder's generality was a third of
    /// the parse. A key equal to the last metric's last field key shares
    /// its bytes (every plain line's field is `value`).
    ///
    /// # Errors
    /// As [`MetricBuilder::finish`]; the batch is then unchanged.
    pub fn push_float(
        &mut self,
        name: &str,
        key: &str,
        value: f64,
        timestamp_ns: i64,
    ) -> Result<(), MetricError> {
        // What `finish` checks after the builder interned both strings.
        let arena = self.arena.len() + name.len() + key.len();
        if arena > u32::MAX as usize || self.fields.len() >= u32::MAX as usize {
            return Err(MetricError::BatchTooLarge);
        }
        if name.is_empty() {
            return Err(MetricError::EmptyName);
        }
        // No tags: the series key is the name alone.
        let limits = self.limits;
        if name.len() > limits.max_series_key_bytes {
            return Err(MetricError::SeriesKeyTooLong {
                max: limits.max_series_key_bytes,
            });
        }
        if key.is_empty() {
            return Err(MetricError::EmptyFieldKey);
        }
        let name_span = self.intern(name);
        let key_span = match self.fields.last() {
            Some(f) if span_bytes(self.arena.as_bytes(), f.key) == key.as_bytes() => f.key,
            _ => self.intern(key),
        };
        let fields_start = self.fields.len() as u32;
        self.fields.push(FieldRec {
            key: key_span,
            value: RawValue::Float(value),
        });
        let tags = self.tags.len() as u32;
        self.metrics.push(Rec {
            name: name_span,
            tags_start: tags,
            tags_end: tags,
            fields_start,
            fields_end: fields_start + 1,
            timestamp: timestamp_ns,
            ttl: 0,
            tags_key: 0,
        });
        Ok(())
    }

    fn intern(&mut self, s: &str) -> Span {
        let start = self.arena.len();
        self.arena.push_str(s);
        // Lengths past u32 are caught in `finish` through the arena size check.
        Span {
            start: start as u32,
            len: s.len() as u32,
        }
    }

    fn str(&self, span: Span) -> &str {
        let start = span.start as usize;
        // Spans always come from `intern`, on char boundaries of valid UTF-8.
        self.arena
            .get(start..start + span.len as usize)
            .unwrap_or_default()
    }

    fn value(&self, v: RawValue) -> Value<'_> {
        match v {
            RawValue::Float(x) => Value::Float(x),
            RawValue::Int(x) => Value::Int(x),
            RawValue::UInt(x) => Value::UInt(x),
            RawValue::Bool(x) => Value::Bool(x),
            RawValue::Str(s) => Value::Str(self.str(s)),
        }
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = MetricRef<'a>;
    type IntoIter = Box<dyn Iterator<Item = MetricRef<'a>> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl FromIterator<Metric> for Batch {
    /// Collect owned metrics under the default [`Limits`]; invalid ones are
    /// skipped (use [`Batch::push`] to see why).
    fn from_iter<T: IntoIterator<Item = Metric>>(iter: T) -> Self {
        let mut batch = Batch::new();
        for m in iter {
            let _ = batch.push(&m);
        }
        batch
    }
}

#[derive(Clone, Copy)]
struct Mark {
    arena: usize,
    tags: usize,
    fields: usize,
}

/// The tag records a builder shares: those of a finished metric.
#[derive(Clone, Copy)]
struct Shared {
    start: u32,
    end: u32,
    /// That metric's [`Rec::tags_key`].
    key: u32,
}

/// Adds one metric to a [`Batch`]; see [`Batch::metric`].
pub struct MetricBuilder<'b> {
    batch: &'b mut Batch,
    mark: Mark,
    name: Span,
    ttl: u32,
    /// The batch's limits, copied when the builder started.
    limits: Limits,
    /// How many tags from the mark on are known sorted, with no key twice
    /// ([`MetricBuilder::repeat_last_tags`]): when they are all the tags,
    /// `finish` need not look.
    sorted_tags: usize,
    /// The tag records of the metric before, which this one takes as they
    /// are ([`MetricBuilder::repeat_last_tags`] and no other tag): nothing
    /// is copied, and metrics that share records have the same tags.
    shared: Option<Shared>,
    finished: bool,
}

impl MetricBuilder<'_> {
    /// Add a tag. Order does not matter: tags are sorted in `finish`.
    #[inline(always)]
    pub fn tag(&mut self, key: &str, value: &str) -> &mut Self {
        if self.shared.is_some() {
            self.unshare();
        }
        let b = &mut *self.batch;
        // One capacity check for both strings, so that the two copies below
        // never reallocate (the hot path of every tagged parser).
        b.arena.reserve(key.len() + value.len());
        let start = b.arena.len();
        b.arena.push_str(key);
        b.arena.push_str(value);
        // Lengths past u32 are caught in `finish` through the arena size check.
        let key_span = Span {
            start: start as u32,
            len: key.len() as u32,
        };
        let value_span = Span {
            start: (start + key.len()) as u32,
            len: value.len() as u32,
        };
        b.tags.push(TagRec {
            key: key_span,
            value: value_span,
        });
        self
    }

    /// Add the tags of the metric last added to the batch: for parsers whose
    /// lines repeat the tags of the line before, as agents send the fields
    /// of one measurement. Returns `false`, adding nothing, when the batch
    /// holds no metric.
    ///
    /// The metric then reads as if those tags had been added again with
    /// [`MetricBuilder::tag`]. When they are its only tags, it shares the
    /// tag records of the metric before instead of copying them (so the
    /// batch's [`Batch::arena_bytes`] stays smaller), and
    /// [`MetricRef::same_tags`] knows the two alike without reading them.
    pub fn repeat_last_tags(&mut self) -> bool {
        let Some(last) = self.batch.metrics.last() else {
            return false;
        };
        let shared = Shared {
            start: last.tags_start,
            end: last.tags_end,
            key: last.tags_key,
        };
        if self.shared.is_none() && self.batch.tags.len() == self.mark.tags {
            self.shared = Some(shared);
            return true;
        }
        self.unshare();
        self.copy_tags(shared);
        true
    }

    /// Copy the shared tag records into the metric's own: another tag follows.
    #[cold]
    #[inline(never)]
    fn unshare(&mut self) {
        if let Some(shared) = self.shared.take() {
            self.copy_tags(shared);
        }
    }

    /// Append copies of a finished metric's tag records and of their bytes.
    fn copy_tags(&mut self, Shared { start, end, .. }: Shared) {
        let b = &mut *self.batch;
        let recs = start as usize..end as usize;
        // The tags' bytes, in the order they were added: from the first
        // key to the end of the last value.
        let (lo, hi) = b.tags[recs.clone()]
            .iter()
            .fold((usize::MAX, 0), |(lo, hi), t| {
                let end = t.value.start as usize + t.value.len as usize;
                (lo.min(t.key.start as usize), hi.max(end))
            });
        if lo >= hi {
            return;
        }
        let first = b.tags.len();
        // Spans start on char boundaries, so the range does.
        let delta = b.arena.len() - lo;
        b.arena.extend_from_within(lo..hi);
        b.tags.extend_from_within(recs);
        // As `intern`: offsets past u32 are caught in `finish`.
        for t in &mut b.tags[first..] {
            t.key.start = (t.key.start as usize + delta) as u32;
            t.value.start = (t.value.start as usize + delta) as u32;
        }
        // A finished metric's tags are sorted and unique.
        if first == self.mark.tags {
            self.sorted_tags = b.tags.len() - first;
        }
    }

    /// Add a field. A later field with the same key replaces an earlier one.
    pub fn field(&mut self, key: &str, value: Value<'_>) -> &mut Self {
        let key = self.batch.intern(key);
        let value = match value {
            Value::Float(x) => RawValue::Float(x),
            Value::Int(x) => RawValue::Int(x),
            Value::UInt(x) => RawValue::UInt(x),
            Value::Bool(x) => RawValue::Bool(x),
            Value::Str(s) => RawValue::Str(self.batch.intern(s)),
        };
        self.batch.fields.push(FieldRec { key, value });
        self
    }

    /// Set the time to live in seconds, kept as metadata for targets that
    /// store one (KairosDB's `ttl`); 0, the default, means none. It is not a
    /// tag, so other sinks never see it.
    pub fn ttl(&mut self, seconds: u32) -> &mut Self {
        self.ttl = seconds;
        self
    }

    /// Number of fields added so far (duplicates included).
    pub fn field_count(&self) -> usize {
        self.batch.fields.len() - self.mark.fields
    }

    /// Number of tags added so far.
    pub fn tag_count(&self) -> usize {
        let shared = self.shared.map_or(0, |s| (s.end - s.start) as usize);
        self.batch.tags.len() - self.mark.tags + shared
    }

    /// Finish the metric, rejecting duplicate tag keys and a metric past the
    /// batch's [`Limits`].
    ///
    /// # Errors
    /// The rule the metric breaks; the batch is then as it was before
    /// [`Batch::metric`].
    pub fn finish(self, timestamp_ns: i64) -> Result<(), MetricError> {
        self.finish_with(timestamp_ns, DuplicateTags::Reject)
    }

    /// Finish the metric with a chosen rule for duplicate tag keys. With
    /// [`DuplicateTags::LastWins`] the tag limit counts the tags left once
    /// duplicates collapsed.
    ///
    /// # Errors
    /// As [`MetricBuilder::finish`].
    pub fn finish_with(
        mut self,
        timestamp_ns: i64,
        dups: DuplicateTags,
    ) -> Result<(), MetricError> {
        let tags_key = self.check_and_normalize(dups)?;
        let b = &mut *self.batch;
        let (tags_start, tags_end) = self
            .shared
            .map_or((self.mark.tags as u32, b.tags.len() as u32), |s| {
                (s.start, s.end)
            });
        b.metrics.push(Rec {
            name: self.name,
            tags_start,
            tags_end,
            fields_start: self.mark.fields as u32,
            fields_end: b.fields.len() as u32,
            timestamp: timestamp_ns,
            ttl: self.ttl,
            tags_key,
        });
        self.finished = true;
        Ok(())
    }

    /// The checks of `finish`; returns the metric's [`Rec::tags_key`].
    fn check_and_normalize(&mut self, dups: DuplicateTags) -> Result<u32, MetricError> {
        let b = &mut *self.batch;
        if b.arena.len() > u32::MAX as usize || b.fields.len() >= u32::MAX as usize {
            return Err(MetricError::BatchTooLarge);
        }
        if self.name.len == 0 {
            return Err(MetricError::EmptyName);
        }

        // Tags: sort by key (usually already sorted), then reject or collapse
        // duplicates. Parsers mostly hand over keys already in order: one pass
        // proving them non-empty and strictly increasing settles empty keys,
        // order and duplicates at once, mostly on the first bytes alone.
        // Shared tags are a finished metric's: sorted and unique already.
        let tags = &b.tags[self.mark.tags..];
        if self.shared.is_none()
            && self.sorted_tags != tags.len()
            && !strictly_sorted(b.arena.as_bytes(), tags)
        {
            sort_tags(b, self.mark.tags, dups)?;
        }

        // Limits, on what is left after duplicates collapsed.
        let tags = match self.shared {
            Some(s) => &b.tags[s.start as usize..s.end as usize],
            None => &b.tags[self.mark.tags..],
        };
        let limits = self.limits;
        if tags.len() > limits.max_tags {
            return Err(MetricError::TooManyTags {
                max: limits.max_tags,
            });
        }
        // The key is the name and its tags' part. Own tags' bytes were
        // interned since the mark, after the name, and each adds `,` and
        // `=`; shared ones come with their bound. When the bound fits, the
        // key does, and no tag is read.
        let name = self.name.len as usize;
        let mut tags_key = match self.shared {
            Some(s) => s.key as usize,
            None => (b.arena.len() - self.mark.arena - name).saturating_add(2 * tags.len()),
        };
        if name.saturating_add(tags_key) > limits.max_series_key_bytes {
            tags_key = tags
                .iter()
                .fold(0usize, |n, t| n.saturating_add(t.key_bytes()));
            if name.saturating_add(tags_key) > limits.max_series_key_bytes {
                return Err(MetricError::SeriesKeyTooLong {
                    max: limits.max_series_key_bytes,
                });
            }
        }
        let tags_key = u32::try_from(tags_key).unwrap_or(u32::MAX);

        // Fields: at least one, keys non-empty, a repeated key keeps the last value.
        let fields = &b.fields[self.mark.fields..];
        match fields {
            [] => return Err(MetricError::NoFields),
            // The single-value dialects: nothing to compare.
            [f] => {
                if f.key.len == 0 {
                    return Err(MetricError::EmptyFieldKey);
                }
            }
            _ => {
                if fields.iter().any(|f| f.key.len == 0) {
                    return Err(MetricError::EmptyFieldKey);
                }
                let arena = b.arena.as_bytes();
                let s = |span: Span| span_bytes(arena, span);
                if has_duplicate_keys(fields, &s) {
                    let mut keep = Vec::with_capacity(fields.len());
                    for (i, f) in fields.iter().enumerate() {
                        let later = fields[i + 1..].iter().any(|g| s(g.key) == s(f.key));
                        if !later {
                            keep.push(*f);
                        }
                    }
                    b.fields.truncate(self.mark.fields);
                    b.fields.extend_from_slice(&keep);
                }
            }
        }
        Ok(tags_key)
    }
}

/// The bytes of `span`. Byte slices, not `&str`: slicing a `str` checks both
/// ends for char boundaries, and comparing keys only needs bytes (`str`
/// order is byte order).
#[inline(always)]
fn span_bytes(arena: &[u8], span: Span) -> &[u8] {
    let start = span.start as usize;
    arena
        .get(start..start + span.len as usize)
        .unwrap_or_default()
}

/// Whether every key is non-empty and each is greater than the one before:
/// then the tags need no sort and hold no duplicate. The first bytes decide
/// most pairs; only keys sharing one are compared whole.
#[inline]
fn strictly_sorted(arena: &[u8], tags: &[TagRec]) -> bool {
    let mut prev: &[u8] = &[];
    for t in tags {
        let key = span_bytes(arena, t.key);
        let (Some(&first), Some(&prev_first)) = (key.first(), prev.first()) else {
            // An empty key (left to the full check), or the first tag.
            if key.is_empty() {
                return false;
            }
            prev = key;
            continue;
        };
        let greater = match first.cmp(&prev_first) {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal => key > prev,
        };
        if !greater {
            return false;
        }
        prev = key;
    }
    true
}

/// The general case of [`MetricBuilder::finish_with`]'s tag checks: empty
/// keys, then a stable sort, then duplicates rejected or collapsed under
/// `dups`.
#[cold]
fn sort_tags(b: &mut Batch, mark: usize, dups: DuplicateTags) -> Result<(), MetricError> {
    let arena = b.arena.as_bytes();
    let s = |span: Span| span_bytes(arena, span);
    let tags = &mut b.tags[mark..];
    if tags.iter().any(|t| t.key.len == 0) {
        return Err(MetricError::EmptyTagKey);
    }
    if !tags.is_sorted_by(|a, b| s(a.key) <= s(b.key)) {
        // Stable, so that with `LastWins` the later of two equal keys stays last.
        tags.sort_by(|a, b| s(a.key).cmp(s(b.key)));
    }
    if tags.windows(2).any(|w| s(w[0].key) == s(w[1].key)) {
        match dups {
            DuplicateTags::Reject => return Err(MetricError::DuplicateTag),
            DuplicateTags::LastWins => {
                let mut out = mark;
                for i in mark..b.tags.len() {
                    let next_same =
                        i + 1 < b.tags.len() && s(b.tags[i].key) == s(b.tags[i + 1].key);
                    if !next_same {
                        b.tags[out] = b.tags[i];
                        out += 1;
                    }
                }
                b.tags.truncate(out);
            }
        }
    }
    Ok(())
}

/// Quadratic for the common short lists, sort-based past that so that a
/// hostile line with thousands of fields stays cheap.
fn has_duplicate_keys<'s>(fields: &[FieldRec], s: &impl Fn(Span) -> &'s [u8]) -> bool {
    if fields.len() <= 16 {
        return fields
            .iter()
            .enumerate()
            .any(|(i, f)| fields[i + 1..].iter().any(|g| s(g.key) == s(f.key)));
    }
    let mut keys: Vec<&[u8]> = fields.iter().map(|f| s(f.key)).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

impl Drop for MetricBuilder<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.batch.arena.truncate(self.mark.arena);
            self.batch.tags.truncate(self.mark.tags);
            self.batch.fields.truncate(self.mark.fields);
        }
    }
}

/// A metric inside a [`Batch`].
#[derive(Clone, Copy)]
pub struct MetricRef<'a> {
    batch: &'a Batch,
    rec: &'a Rec,
}

impl<'a> MetricRef<'a> {
    /// The name (measurement).
    pub fn name(&self) -> &'a str {
        self.batch.str(self.rec.name)
    }

    /// Nanoseconds since the Unix epoch, UTC.
    pub fn timestamp(&self) -> i64 {
        self.rec.timestamp
    }

    /// The time to live in seconds, when the source set one (KairosDB's `ttl`).
    pub fn ttl(&self) -> Option<u32> {
        (self.rec.ttl != 0).then_some(self.rec.ttl)
    }

    /// Tags, sorted by key.
    pub fn tags(&self) -> Tags<'a> {
        Tags {
            batch: self.batch,
            recs: &self.batch.tags[self.rec.tags_start as usize..self.rec.tags_end as usize],
        }
    }

    /// Whether `other` has the same tags (keys and values, in order).
    ///
    /// Cheap when the tags of both were laid out alike (added in the same
    /// order with the same lengths, or copied by
    /// [`MetricBuilder::repeat_last_tags`]): their spans are compared as
    /// numbers and their bytes as one block, without slicing a string per tag.
    pub fn same_tags(&self, other: &MetricRef<'_>) -> bool {
        // The same tag records (shared by `repeat_last_tags`): known
        // without reading a tag.
        if std::ptr::eq(self.batch, other.batch)
            && self.rec.tags_start == other.rec.tags_start
            && self.rec.tags_end == other.rec.tags_end
        {
            return true;
        }
        let a = self.tags().recs;
        let b = other.tags().recs;
        if a.len() != b.len() {
            return false;
        }
        let (Some(fa), Some(fb)) = (a.first(), b.first()) else {
            return true;
        };
        // Offsets from each metric's first key, wrapping: only compared.
        let (base_a, base_b) = (fa.key.start, fb.key.start);
        let (mut lo, mut hi) = (u32::MAX, 0u32);
        let mut total = 0u64;
        let alike = a.iter().zip(b).all(|(x, y)| {
            for span in [x.key, x.value] {
                let at = span.start.wrapping_sub(base_a);
                lo = lo.min(at);
                hi = hi.max(at.wrapping_add(span.len));
                total += u64::from(span.len);
            }
            x.key.len == y.key.len
                && x.value.len == y.value.len
                && x.key.start.wrapping_sub(base_a) == y.key.start.wrapping_sub(base_b)
                && x.value.start.wrapping_sub(base_a) == y.value.start.wrapping_sub(base_b)
        });
        if alike && lo <= hi {
            fn block(batch: &Batch, base: u32, lo: u32, hi: u32) -> Option<&[u8]> {
                let start = base.wrapping_add(lo) as usize;
                batch
                    .arena
                    .as_bytes()
                    .get(start..start + (hi - lo) as usize)
            }
            // Equal blocks hold equal strings at equal offsets; a block that
            // also holds other bytes (a dropped repeated key) may differ
            // while the tags do not: then the tags are compared one by one.
            // A block of the tags' bytes alone settles it either way.
            if let (Some(x), Some(y)) = (
                block(self.batch, base_a, lo, hi),
                block(other.batch, base_b, lo, hi),
            ) {
                if x == y {
                    return true;
                }
                if u64::from(hi - lo) == total {
                    return false;
                }
            }
        }
        self.tags().eq(other.tags())
    }

    /// The value of tag `key`, if present.
    pub fn tag(&self, key: &str) -> Option<&'a str> {
        let recs = self.tags().recs;
        // Few tags: compare lengths first (from the span, no memory touched),
        // bytes only on a length match; that beats a binary search, whose every
        // step is a `memcmp` call. Many tags: binary search on the sorted keys.
        let i = if recs.len() <= 16 {
            recs.iter()
                .position(|t| t.key.len as usize == key.len() && self.batch.str(t.key) == key)
        } else {
            recs.binary_search_by(|t| self.batch.str(t.key).cmp(key))
                .ok()
        };
        i.map(|i| self.batch.str(recs[i].value))
    }

    /// Fields, in their original order.
    pub fn fields(&self) -> Fields<'a> {
        Fields {
            batch: self.batch,
            recs: &self.batch.fields[self.rec.fields_start as usize..self.rec.fields_end as usize],
        }
    }

    /// The value of field `key`, if present.
    pub fn field(&self, key: &str) -> Option<Value<'a>> {
        self.fields().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// An owned copy.
    pub fn to_metric(&self) -> Metric {
        Metric {
            name: self.name().to_owned(),
            tags: self
                .tags()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            fields: self
                .fields()
                .map(|(k, v)| (k.to_owned(), v.to_owned_value()))
                .collect(),
            timestamp: self.timestamp(),
        }
    }
}

impl PartialEq for MetricRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
            && self.timestamp() == other.timestamp()
            && self.ttl() == other.ttl()
            && self.tags().eq(other.tags())
            && self.fields().eq(other.fields())
    }
}

/// Compares what an owned [`Metric`] holds; it has no TTL, so the TTL is ignored.
impl PartialEq<Metric> for MetricRef<'_> {
    fn eq(&self, other: &Metric) -> bool {
        self.name() == other.name
            && self.timestamp() == other.timestamp
            && self
                .tags()
                .eq(other.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            && self
                .fields()
                .eq(other.fields.iter().map(|(k, v)| (k.as_str(), v.as_value())))
    }
}

impl fmt::Debug for MetricRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Metric");
        d.field("name", &self.name())
            .field("tags", &self.tags().collect::<Vec<_>>())
            .field("fields", &self.fields().collect::<Vec<_>>())
            .field("timestamp", &self.timestamp());
        // Shown only when set, so that the output of metrics without one is unchanged.
        if let Some(ttl) = self.ttl() {
            d.field("ttl", &ttl);
        }
        d.finish()
    }
}

/// Iterator over a metric's tags as `(key, value)`, sorted by key.
#[derive(Clone)]
pub struct Tags<'a> {
    batch: &'a Batch,
    recs: &'a [TagRec],
}

impl<'a> Iterator for Tags<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        let (first, rest) = self.recs.split_first()?;
        self.recs = rest;
        Some((self.batch.str(first.key), self.batch.str(first.value)))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.recs.len(), Some(self.recs.len()))
    }
}
impl ExactSizeIterator for Tags<'_> {}
impl DoubleEndedIterator for Tags<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let (last, rest) = self.recs.split_last()?;
        self.recs = rest;
        Some((self.batch.str(last.key), self.batch.str(last.value)))
    }
}

/// Iterator over a metric's fields as `(key, value)`.
#[derive(Clone)]
pub struct Fields<'a> {
    batch: &'a Batch,
    recs: &'a [FieldRec],
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, Value<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        let (first, rest) = self.recs.split_first()?;
        self.recs = rest;
        Some((self.batch.str(first.key), self.batch.value(first.value)))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.recs.len(), Some(self.recs.len()))
    }
}
impl ExactSizeIterator for Fields<'_> {}

/// Byte-wise order of two strings; exposed so that encoders sort keys the way
/// the batch does.
pub fn key_order(a: &str, b: &str) -> Ordering {
    a.as_bytes().cmp(b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str) -> Metric {
        Metric::new(name)
    }

    proptest::proptest! {
        /// `push_float` adds what the builder adds, refuses what it refuses
        /// with the same error, and leaves the batch as it was when it does.
        #[test]
        fn push_float_is_the_builder_in_one_step(
            metrics in proptest::collection::vec(
                ("[a-z.]{0,12}", proptest::sample::select(vec!["value", "v", ""]),
                 -1e300f64..1e300, proptest::num::i64::ANY),
                1..8,
            ),
            tagged_first in proptest::bool::ANY,
            max_series_key_bytes in 0usize..14,
        ) {
            let limits = Limits { max_tags: 4, max_series_key_bytes };
            let (mut ours, mut built) = (Batch::new(), Batch::new());
            for b in [&mut ours, &mut built] {
                if tagged_first {
                    // A metric before whose last field key is not `value`.
                    let mut m = b.metric("t");
                    m.tag("k", "v").field("value2", Value::Int(1));
                    m.finish(1).unwrap();
                }
                b.set_limits(limits);
            }
            for (name, key, value, ts) in &metrics {
                let before = ours.clone();
                let got = ours.push_float(name, key, *value, *ts);
                let mut b = built.metric(name);
                b.field(key, Value::Float(*value));
                let want = b.finish(*ts);
                proptest::prop_assert_eq!(&got, &want);
                if got.is_err() {
                    proptest::prop_assert!(ours == before);
                    proptest::prop_assert_eq!(ours.arena_bytes(), before.arena_bytes());
                }
                proptest::prop_assert!(ours == built);
                proptest::prop_assert_eq!(ours.points(), built.points());
            }
        }
    }

    #[test]
    fn push_float_shares_a_repeated_field_key() {
        let mut b = Batch::new();
        b.push_float("a.b", "value", 1.0, 1).unwrap();
        let one = b.arena_bytes();
        b.push_float("c.d", "value", 2.0, 2).unwrap();
        // Only the second name: `value` is read where the first line put it.
        assert_eq!(b.arena_bytes(), one + 3);
        b.push_float("e.f", "other", 3.0, 3).unwrap();
        assert_eq!(b.arena_bytes(), one + 3 + 3 + 5);
        let got: Vec<Metric> = b.iter().map(|m| m.to_metric()).collect();
        assert_eq!(
            got,
            vec![
                m("a.b").field("value", 1.0).at(1),
                m("c.d").field("value", 2.0).at(2),
                m("e.f").field("other", 3.0).at(3),
            ]
        );
    }

    #[test]
    fn sorts_tags_and_keeps_field_order() {
        let mut b = Batch::new();
        b.push(
            &m("cpu")
                .tag("z", "1")
                .tag("a", "2")
                .field("y", 1.0)
                .field("x", 2i64)
                .at(5),
        )
        .unwrap();
        let got = b.get(0).to_metric();
        assert_eq!(
            got.tags,
            vec![("a".into(), "2".into()), ("z".into(), "1".into())]
        );
        assert_eq!(got.fields[0].0, "y");
        assert_eq!(got.fields[1], ("x".into(), FieldValue::Int(2)));
        assert_eq!(b.get(0).tag("z"), Some("1"));
        assert_eq!(b.get(0).tag("q"), None);
        assert_eq!(b.points(), 2);
    }

    #[test]
    fn tag_lookup_past_sixteen_tags() {
        let mut b = Batch::new();
        let mut many = Metric::new("m").field("v", 1.0);
        for i in (0..40).rev() {
            many = many.tag(format!("k{i:02}"), format!("v{i}"));
        }
        b.push(&many).unwrap();
        assert_eq!(b.get(0).tag("k00"), Some("v0"));
        assert_eq!(b.get(0).tag("k39"), Some("v39"));
        assert_eq!(b.get(0).tag("k17"), Some("v17"));
        assert_eq!(b.get(0).tag("k40"), None);
    }

    #[test]
    fn rejects_duplicate_tags_and_rolls_back() {
        let mut b = Batch::new();
        b.push(&m("ok").field("v", 1.0)).unwrap();
        let before = b.arena_bytes();
        let err = b.push(&m("bad").tag("a", "1").tag("a", "2").field("v", 1.0));
        assert_eq!(err, Err(MetricError::DuplicateTag));
        assert_eq!(b.len(), 1);
        assert_eq!(b.arena_bytes(), before);
        assert_eq!(b.points(), 1);
    }

    #[test]
    fn last_wins_keeps_the_later_tag() {
        let mut b = Batch::new();
        let mut mb = b.metric("x");
        mb.tag("b", "1").tag("a", "1").tag("b", "2");
        mb.field("v", Value::Int(1));
        mb.finish_with(0, DuplicateTags::LastWins).unwrap();
        let tags: Vec<_> = b.get(0).tags().collect();
        assert_eq!(tags, vec![("a", "1"), ("b", "2")]);
    }

    #[test]
    fn duplicate_fields_last_wins() {
        let mut b = Batch::new();
        b.push(&m("x").field("a", 1.0).field("b", true).field("a", "s"))
            .unwrap();
        let f: Vec<_> = b.get(0).fields().collect();
        assert_eq!(f, vec![("b", Value::Bool(true)), ("a", Value::Str("s"))]);
    }

    #[test]
    fn many_duplicate_fields_use_the_sorted_path() {
        let mut b = Batch::new();
        let mut mb = b.metric("x");
        for i in 0..40 {
            mb.field(&format!("f{}", i % 20), Value::Int(i));
        }
        mb.finish(0).unwrap();
        assert_eq!(b.points(), 20);
        assert_eq!(b.get(0).field("f3"), Some(Value::Int(23)));
    }

    #[test]
    fn rejects_empty_parts() {
        let mut b = Batch::new();
        assert_eq!(b.push(&m("")), Err(MetricError::EmptyName));
        assert_eq!(b.push(&m("x")), Err(MetricError::NoFields));
        assert_eq!(
            b.push(&m("x").tag("", "v").field("f", 1.0)),
            Err(MetricError::EmptyTagKey)
        );
        assert_eq!(
            b.push(&m("x").field("", 1.0)),
            Err(MetricError::EmptyFieldKey)
        );
        assert!(b.is_empty());
        assert_eq!(b.arena_bytes(), 0);
    }

    #[test]
    fn dropped_builder_leaves_batch_unchanged() {
        let mut b = Batch::new();
        {
            let mut mb = b.metric("gone");
            mb.tag("k", "v").field("f", Value::Float(1.0));
        }
        assert!(b.is_empty());
        assert_eq!(b.arena_bytes(), 0);
        assert_eq!(b.points(), 0);
    }

    #[test]
    fn ttl_is_metadata_copied_and_compared() {
        let mut b = Batch::new();
        b.push(&m("plain").field("v", 1.0)).unwrap();
        let mut mb = b.metric("kept");
        mb.tag("host", "a").field("value", Value::Int(1)).ttl(300);
        mb.finish(7).unwrap();
        assert_eq!(b.get(0).ttl(), None);
        assert_eq!(b.get(1).ttl(), Some(300));
        // Not a tag: other sinks never see it.
        assert_eq!(b.get(1).tags().collect::<Vec<_>>(), vec![("host", "a")]);
        assert!(format!("{:?}", b.get(1)).contains("ttl: 300"));
        assert!(!format!("{:?}", b.get(0)).contains("ttl"));

        let mut c = Batch::new();
        c.push_ref(b.get(0));
        c.push_ref(b.get(1));
        assert_eq!(c.get(1).ttl(), Some(300));
        assert_eq!(b, c);

        // Same metric, other TTL: not equal.
        let mut d = Batch::new();
        d.push_ref(b.get(0));
        let mut mb = d.metric("kept");
        mb.tag("host", "a").field("value", Value::Int(1)).ttl(60);
        mb.finish(7).unwrap();
        assert_ne!(b, d);
        // The owned form has no TTL and compares the rest.
        assert!(b.get(1) == b.get(1).to_metric());
    }

    #[test]
    fn a_dropped_builder_does_not_leak_its_ttl() {
        let mut b = Batch::new();
        {
            let mut mb = b.metric("gone");
            mb.field("v", Value::Float(1.0)).ttl(9);
        }
        b.push(&m("next").field("v", 1.0)).unwrap();
        assert_eq!(b.get(0).ttl(), None);
    }

    /// A metric named `m` with `n` tags `k000=v` … and one field.
    fn tagged(n: usize) -> Metric {
        (0..n).fold(m("m").field("f", 1.0), |acc, i| {
            acc.tag(format!("k{i:03}"), "v")
        })
    }

    fn limited(max_tags: usize, max_series_key_bytes: usize) -> Batch {
        let mut b = Batch::new();
        b.set_limits(Limits {
            max_tags,
            max_series_key_bytes,
        });
        b
    }

    #[test]
    fn default_limits_are_256_tags_and_65535_key_bytes() {
        let l = Limits::default();
        assert_eq!((l.max_tags, l.max_series_key_bytes), (256, 65_535));
        assert_eq!(Batch::new().limits(), l);
        assert_eq!(Batch::default().limits(), l);
        assert_eq!(Batch::with_capacity(1, 1).limits(), l);
    }

    #[test]
    fn tag_limit_passes_at_the_limit_and_fails_one_over() {
        let mut b = Batch::new();
        b.push(&tagged(256)).unwrap();
        assert_eq!(
            b.push(&tagged(257)),
            Err(MetricError::TooManyTags { max: 256 })
        );
        let mut b = limited(3, usize::MAX);
        b.push(&tagged(3)).unwrap();
        let err = b.push(&tagged(4)).unwrap_err();
        assert_eq!(err, MetricError::TooManyTags { max: 3 });
        assert_eq!(err.to_string(), "too many tags (max 3)");
        // No tags at all is fine with a limit of 0.
        let mut b = limited(0, usize::MAX);
        b.push(&tagged(0)).unwrap();
        assert!(b.push(&tagged(1)).is_err());
    }

    #[test]
    fn series_key_limit_counts_name_commas_and_equals() {
        // `cpu,host=a,dc=eu` unescaped: 3 + (1+4+1+1) + (1+2+1+2) = 16 bytes.
        let cpu = m("cpu")
            .tag("host", "a")
            .tag("dc", "eu")
            .field("value", "a long string field");
        let mut b = limited(usize::MAX, 16);
        b.push(&cpu).unwrap();
        let mut b = limited(usize::MAX, 15);
        let err = b.push(&cpu).unwrap_err();
        assert_eq!(err, MetricError::SeriesKeyTooLong { max: 15 });
        assert_eq!(err.to_string(), "series key too long (max 15 bytes)");
        // Field keys and values are no part of the key.
        let mut b = limited(usize::MAX, 3);
        b.push(&m("cpu").field(&*"f".repeat(100), "v".repeat(100)))
            .unwrap();
        assert_eq!(
            b.push(&m("cpus").field("f", 1.0)),
            Err(MetricError::SeriesKeyTooLong { max: 3 })
        );
    }

    #[test]
    fn default_series_key_limit_is_65535_bytes() {
        // "m" + ",k=" + value: 4 bytes besides the value.
        let mut b = Batch::new();
        b.push(&m("m").tag("k", "x".repeat(65_531)).field("f", 1.0))
            .unwrap();
        assert_eq!(
            b.push(&m("m").tag("k", "x".repeat(65_532)).field("f", 1.0)),
            Err(MetricError::SeriesKeyTooLong { max: 65_535 })
        );
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn limits_count_tags_after_duplicates_collapse() {
        let mut b = limited(2, usize::MAX);
        let mut mb = b.metric("x");
        mb.tag("a", "1").tag("b", "1").tag("a", "2").tag("b", "2");
        mb.field("v", Value::Int(1));
        mb.finish_with(0, DuplicateTags::LastWins).unwrap();
        assert_eq!(
            b.get(0).tags().collect::<Vec<_>>(),
            vec![("a", "2"), ("b", "2")]
        );
        // Rejecting duplicates reports the duplicate, not the count.
        let mut mb = b.metric("x");
        mb.tag("a", "1").tag("b", "1").tag("a", "2");
        mb.field("v", Value::Int(1));
        assert_eq!(mb.finish(0), Err(MetricError::DuplicateTag));
        // The key of the collapsed tags: "x,a=2" is 5 bytes, not 9 with "a=1".
        let mut b = limited(usize::MAX, 5);
        let mut mb = b.metric("x");
        mb.tag("a", "1").tag("a", "2").field("v", Value::Int(1));
        mb.finish_with(0, DuplicateTags::LastWins).unwrap();
        // Three distinct tags after collapsing are still too many.
        let mut b = limited(2, usize::MAX);
        let mut mb = b.metric("x");
        mb.tag("a", "1").tag("b", "1").tag("c", "1").tag("a", "2");
        mb.field("v", Value::Int(1));
        assert_eq!(
            mb.finish_with(0, DuplicateTags::LastWins),
            Err(MetricError::TooManyTags { max: 2 })
        );
    }

    #[test]
    fn a_metric_past_a_limit_leaves_the_batch_unchanged() {
        let mut b = limited(2, 20);
        b.push(&m("ok").tag("a", "1").field("v", 1.0)).unwrap();
        let (bytes, points) = (b.arena_bytes(), b.points());
        assert!(b.push(&tagged(3)).is_err());
        assert!(
            b.push(&m("long").tag("k", "v".repeat(50)).field("v", 1.0))
                .is_err()
        );
        assert_eq!(b.len(), 1);
        assert_eq!(b.arena_bytes(), bytes);
        assert_eq!(b.points(), points);
        // The next metric lands where the rejected ones would have.
        b.push(&m("next").tag("b", "2").field("v", 2.0)).unwrap();
        assert_eq!(b.get(1).tags().collect::<Vec<_>>(), vec![("b", "2")]);
    }

    #[test]
    fn clone_and_clear_keep_the_limits() {
        let mut b = limited(4, 100);
        b.push(&tagged(2)).unwrap();
        let c = b.clone();
        assert_eq!(c.limits(), b.limits());
        b.clear();
        assert!(b.is_empty());
        assert_eq!(
            b.limits(),
            Limits {
                max_tags: 4,
                max_series_key_bytes: 100
            }
        );
        assert!(b.push(&tagged(5)).is_err());
    }

    #[test]
    fn push_ref_copies_past_the_target_limits() {
        let mut wide = limited(300, usize::MAX);
        wide.push(&tagged(300)).unwrap();
        let mut narrow = limited(2, 10);
        narrow.push_ref(wide.get(0));
        assert_eq!(narrow.len(), 1);
        assert_eq!(narrow.get(0).tags().len(), 300);
        // The builder of the target still checks what is added to it.
        assert!(narrow.push(&tagged(3)).is_err());
    }

    #[test]
    fn repeat_last_tags_equals_adding_them_again() {
        let mut one_by_one = Batch::new();
        let mut repeated = Batch::new();
        for b in [&mut one_by_one, &mut repeated] {
            let mut mb = b.metric("first");
            mb.tag("z", "1").tag("host", "web01").tag("a", "");
            mb.field("v", Value::Int(1));
            mb.finish(1).unwrap();
        }
        let mut mb = one_by_one.metric("second");
        mb.tag("z", "1").tag("host", "web01").tag("a", "");
        mb.field("v", Value::Int(2));
        mb.finish(2).unwrap();
        let mut mb = repeated.metric("second");
        assert!(mb.repeat_last_tags());
        assert_eq!(mb.tag_count(), 3);
        mb.field("v", Value::Int(2));
        mb.finish(2).unwrap();
        assert_eq!(one_by_one, repeated);
        // The records are shared: no tag byte copied.
        assert_eq!(
            one_by_one.arena_bytes() - repeated.arena_bytes(),
            "z1hostweb01a".len()
        );
        assert_eq!(
            repeated.get(1).tags().collect::<Vec<_>>(),
            vec![("a", ""), ("host", "web01"), ("z", "1")]
        );
        assert_eq!(repeated.get(1).tag("host"), Some("web01"));
    }

    #[test]
    fn same_tags_compares_keys_and_values_however_laid_out() {
        let mut b = Batch::new();
        b.push(&m("a").tag("host", "web01").tag("dc", "x").field("v", 1.0))
            .unwrap();
        let mut mb = b.metric("b");
        mb.repeat_last_tags();
        mb.field("v", Value::Int(1));
        mb.finish(0).unwrap();
        // Same tags added in another order: another layout, the same tags.
        b.push(&m("c").tag("dc", "x").tag("host", "web01").field("v", 1.0))
            .unwrap();
        b.push(&m("d").tag("dc", "x").tag("host", "web02").field("v", 1.0))
            .unwrap();
        // The same bytes split otherwise.
        b.push(&m("e").tag("dc", "xh").tag("ost", "web01").field("v", 1.0))
            .unwrap();
        b.push(&m("f").tag("dc", "x").field("v", 1.0)).unwrap();
        // A repeated key dropped: its bytes stay in the block.
        let mut mb = b.metric("g");
        mb.tag("dc", "y").tag("dc", "x").tag("host", "web01");
        mb.field("v", Value::Int(1));
        mb.finish_with(0, DuplicateTags::LastWins).unwrap();
        let mut other = Batch::new();
        other
            .push(&m("z").tag("dc", "x").tag("host", "web01").field("v", 1.0))
            .unwrap();
        let same = |i: usize, j: usize| b.get(i).same_tags(&b.get(j));
        assert!(same(0, 1) && same(1, 0) && same(0, 2) && same(2, 1) && same(0, 6));
        assert!(!same(0, 3) && !same(0, 4) && !same(0, 5) && !same(5, 0));
        assert!(b.get(0).same_tags(&other.get(0)) && other.get(0).same_tags(&b.get(1)));
        let untagged: Batch = [m("u").field("v", 1.0), m("w").field("v", 2.0)]
            .into_iter()
            .collect();
        assert!(untagged.get(0).same_tags(&untagged.get(1)));
        assert!(!untagged.get(0).same_tags(&b.get(0)));
        // Metric 1 took the tag records of metric 0, and only it.
        assert_eq!(shared(&b), [false, true, false, false, false, false, false]);
        assert!(!same(5, 1) && !same(1, 5) && !same(3, 1));
        // The spool's wire form gives each metric its own records; the tags
        // still compare.
        let mut bytes = Vec::new();
        wire::encode(b.len(), b.iter(), &mut bytes);
        let back = wire::decode(&bytes).unwrap();
        assert_eq!(back, b);
        assert_eq!(shared(&back), [false; 7]);
        assert!(back.get(0).same_tags(&back.get(1)));
    }

    /// Per metric: whether it holds the tag records of the metric before.
    fn shared(b: &Batch) -> Vec<bool> {
        let range = |i: usize| (b.metrics[i].tags_start, b.metrics[i].tags_end);
        (0..b.len())
            .map(|i| i > 0 && range(i) == range(i - 1))
            .collect()
    }

    #[test]
    fn only_copied_tags_and_nothing_else_are_shared() {
        let mut b = Batch::new();
        b.push(&m("a").tag("host", "x").field("v", 1.0)).unwrap();
        // Copied, then another tag: not the tags before.
        let mut mb = b.metric("b");
        mb.repeat_last_tags();
        mb.tag("dc", "y").field("v", Value::Int(1));
        mb.finish(0).unwrap();
        // A tag, then the copy (which then holds the copy and more).
        let mut mb = b.metric("c");
        mb.tag("zone", "z");
        mb.repeat_last_tags();
        mb.field("v", Value::Int(1));
        mb.finish(0).unwrap();
        // No tags and no copy after a tagged metric.
        b.push(&m("d").field("v", 1.0)).unwrap();
        // The copy alone.
        let mut mb = b.metric("e");
        mb.repeat_last_tags();
        mb.field("v", Value::Int(1));
        mb.finish(0).unwrap();
        assert_eq!(shared(&b), [false, false, false, false, true]);
        let same: Vec<bool> = (1..b.len())
            .map(|i| b.get(i - 1).same_tags(&b.get(i)))
            .collect();
        assert_eq!(same, [false, false, false, true]);
        assert_eq!(
            b.get(1).tags().collect::<Vec<_>>(),
            [("dc", "y"), ("host", "x")]
        );
        assert_eq!(
            b.get(2).tags().collect::<Vec<_>>(),
            [("dc", "y"), ("host", "x"), ("zone", "z")]
        );
    }

    #[test]
    fn repeat_last_tags_edge_cases() {
        // No metric yet: nothing added.
        let mut b = Batch::new();
        let mut mb = b.metric("m");
        assert!(!mb.repeat_last_tags());
        assert_eq!(mb.tag_count(), 0);
        drop(mb);
        // A last metric without tags: none added.
        b.push(&m("plain").field("v", 1.0)).unwrap();
        let mut mb = b.metric("m");
        assert!(mb.repeat_last_tags());
        assert_eq!(mb.tag_count(), 0);
        drop(mb);
        // More tags after the copy are sorted in, duplicates still refused.
        b.push(&m("t").tag("b", "1").tag("d", "2").field("v", 1.0))
            .unwrap();
        let mut mb = b.metric("m");
        mb.repeat_last_tags();
        mb.tag("c", "3").field("v", Value::Int(1));
        mb.finish(0).unwrap();
        assert_eq!(
            b.get(2).tags().collect::<Vec<_>>(),
            vec![("b", "1"), ("c", "3"), ("d", "2")]
        );
        let mut mb = b.metric("m");
        mb.repeat_last_tags();
        mb.tag("b", "9").field("v", Value::Int(1));
        assert_eq!(mb.finish(0), Err(MetricError::DuplicateTag));
        // A dropped builder leaves the batch as it was.
        let (bytes, len) = (b.arena_bytes(), b.len());
        {
            let mut mb = b.metric("gone");
            mb.repeat_last_tags();
        }
        assert_eq!((b.arena_bytes(), b.len()), (bytes, len));
        // The copy is checked against the limits like any tag.
        let mut l = limited(2, usize::MAX);
        l.push(&m("t").tag("a", "1").tag("b", "2").field("v", 1.0))
            .unwrap();
        let mut mb = l.metric("m");
        mb.repeat_last_tags();
        mb.tag("c", "3").field("v", Value::Int(1));
        assert_eq!(mb.finish(0), Err(MetricError::TooManyTags { max: 2 }));
        // A last metric whose repeated key collapsed: the same tags.
        let mut b = Batch::new();
        let mut mb = b.metric("x");
        mb.tag("a", "1").tag("a", "2").field("v", Value::Int(1));
        mb.finish_with(0, DuplicateTags::LastWins).unwrap();
        let mut mb = b.metric("y");
        mb.repeat_last_tags();
        mb.field("v", Value::Int(1));
        mb.finish(0).unwrap();
        assert_eq!(b.get(1).tags().collect::<Vec<_>>(), vec![("a", "2")]);
        // Shared tags count against the limits: the key of a longer name
        // over them is too long; so are more tags under narrower limits.
        let mut l = limited(usize::MAX, 6);
        l.push(&m("t").tag("a", "1").field("v", 1.0)).unwrap();
        let mut mb = l.metric("longer");
        mb.repeat_last_tags();
        mb.field("v", Value::Int(1));
        assert_eq!(mb.finish(0), Err(MetricError::SeriesKeyTooLong { max: 6 }));
        let mut mb = l.metric("u");
        assert!(mb.repeat_last_tags());
        assert_eq!(mb.tag_count(), 1);
        mb.field("v", Value::Int(1));
        mb.finish(0).unwrap();
        l.set_limits(Limits {
            max_tags: 0,
            ..l.limits()
        });
        let mut mb = l.metric("v");
        mb.repeat_last_tags();
        mb.field("v", Value::Int(1));
        assert_eq!(mb.finish(0), Err(MetricError::TooManyTags { max: 0 }));
        // Two copies: every key twice.
        let mut mb = l.metric("w");
        mb.repeat_last_tags();
        mb.repeat_last_tags();
        assert_eq!(mb.tag_count(), 2);
        mb.field("v", Value::Int(1));
        assert_eq!(mb.finish(0), Err(MetricError::DuplicateTag));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn roundtrips_owned_metrics() {
        let src = m("disk")
            .tag("host", "h1")
            .tag("path", "/")
            .field("free", 12u64)
            .field("used", -3i64)
            .field("pct", 0.5)
            .field("ok", false)
            .field("fs", "ext4")
            .at(1_700_000_000_000_000_000);
        let mut b = Batch::new();
        b.push(&src).unwrap();
        assert_eq!(b.get(0).to_metric(), src);
        assert!(b.get(0) == src);
        let mut c = Batch::new();
        c.push_ref(b.get(0));
        assert_eq!(b, c);
    }
}
