//! The per-sink cardinality limiter (`max_new_series_per_hour`): at most that
//! many series a sink has not seen recently get through per hour window;
//! beyond it, metrics of new series are dropped and counted, while series it
//! knows keep flowing.
//!
//! A series is a metric's name and its tag set (InfluxDB's series key; fields
//! are not part of it). It is identified by a 64-bit hash ([`SeriesHasher`]:
//! foldhash, about twice as fast here as std's SipHash, seeded from the
//! operating system's randomness so that input cannot be made to collide on
//! purpose); an accidental collision (odds about `known series / 2^64`) lets a
//! new series pass as known.
//!
//! Memory stays bounded by keeping two generations of hashes: the series seen
//! in the current window and those seen in the previous one. Both count as
//! known; a series found only in the previous generation moves to the current
//! one without using budget. At each window boundary the current generation
//! becomes the previous one and the budget starts again, so a series unseen
//! for a whole window is new again, and at most about twice the series active
//! in an hour (plus the budget) are held.
//!
//! Time comes from the caller (`now`), so tests roll windows without sleeping.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};

use crate::metric::{Batch, MetricRef};
use crate::telemetry;

/// Hashes a metric's series key: its name and its tags.
#[derive(Clone)]
pub struct SeriesHasher {
    seed: u64,
    shared: foldhash::SharedSeed,
}

/// Without the key.
impl std::fmt::Debug for SeriesHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesHasher").finish_non_exhaustive()
    }
}

impl Default for SeriesHasher {
    fn default() -> Self {
        SeriesHasher::new()
    }
}

impl SeriesHasher {
    /// A hasher with a fresh random key.
    pub fn new() -> SeriesHasher {
        // std's `RandomState` is keyed from the operating system: two
        // unpredictable words (foldhash's own seeding uses addresses and time).
        let os = RandomState::new();
        SeriesHasher {
            seed: os.hash_one(0u8),
            shared: foldhash::SharedSeed::from_u64(os.hash_one(1u8)),
        }
    }

    /// The series identity of `m`. Tags are sorted in a [`Batch`], so their
    /// order on the wire does not matter.
    pub fn hash(&self, m: MetricRef<'_>) -> u64 {
        let mut h = foldhash::fast::FoldHasher::with_seed(self.seed, &self.shared);
        // Each string ends in 0xff, which UTF-8 never contains: name `ab`
        // with tag `c=d` and name `a` with tag `bc=d` hash apart, and so do
        // all other re-splittings of the same bytes.
        let mut put = |s: &str| {
            h.write(s.as_bytes());
            h.write_u8(0xff);
        };
        put(m.name());
        for (k, v) in m.tags() {
            put(k);
            put(v);
        }
        h.finish()
    }
}

/// The set hasher for values that already are hashes: they pass as they are.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; this keeps the trait whole.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Set = HashSet<u64, BuildHasherDefault<Prehashed>>;

/// What the limiter decided for one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Seen in this window or the previous one: passes, uses no budget.
    Known,
    /// Not known, and the window's budget had room: passes, now known.
    New,
    /// Not known, and the window's budget is spent: dropped.
    Dropped,
}

/// The two-generation new-series limiter of one sink; see the module doc.
pub struct SeriesLimiter {
    max_new_per_hour: u64,
    window_start: Instant,
    current: Set,
    previous: Set,
    new_in_window: u64,
    dropped_in_window: u64,
}

/// Counts, not the sets, which may hold millions of hashes.
impl std::fmt::Debug for SeriesLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesLimiter")
            .field("max_new_per_hour", &self.max_new_per_hour)
            .field("window_start", &self.window_start)
            .field("current", &self.current.len())
            .field("previous", &self.previous.len())
            .field("new_in_window", &self.new_in_window)
            .field("dropped_in_window", &self.dropped_in_window)
            .finish()
    }
}

impl SeriesLimiter {
    /// The length of a window.
    pub const WINDOW: Duration = Duration::from_secs(3600);

    /// A limiter whose first window starts at `now`.
    pub fn new(max_new_per_hour: u64, now: Instant) -> SeriesLimiter {
        SeriesLimiter {
            max_new_per_hour,
            window_start: now,
            current: Set::default(),
            previous: Set::default(),
            new_in_window: 0,
            dropped_in_window: 0,
        }
    }

    /// Decide for `series` (a [`SeriesHasher::hash`]) at `now`, starting a
    /// new window first when the current one has ended.
    pub fn admit(&mut self, series: u64, now: Instant) -> Admission {
        self.roll(now);
        if self.current.contains(&series) {
            return Admission::Known;
        }
        if self.previous.remove(&series) {
            self.current.insert(series);
            return Admission::Known;
        }
        if self.new_in_window < self.max_new_per_hour {
            self.new_in_window += 1;
            self.current.insert(series);
            Admission::New
        } else {
            self.dropped_in_window += 1;
            Admission::Dropped
        }
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        let windows = elapsed.as_secs() / Self::WINDOW.as_secs();
        if windows == 0 {
            return;
        }
        // Windows stay aligned to the first one; after an idle window,
        // nothing was seen in the one before `now`.
        self.window_start += Duration::from_secs(windows * Self::WINDOW.as_secs());
        self.previous = if windows == 1 {
            std::mem::take(&mut self.current)
        } else {
            self.current = Set::default();
            Set::default()
        };
        self.new_in_window = 0;
        self.dropped_in_window = 0;
    }

    /// Series known now: seen in this window or the previous one.
    pub fn tracked(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Metrics dropped in the current window.
    pub fn dropped_in_window(&self) -> u64 {
        self.dropped_in_window
    }

    /// The budget of new series per window.
    pub fn max_new_per_hour(&self) -> u64 {
        self.max_new_per_hour
    }
}

/// A limited sink's limiter in the pipeline, with its self-metrics.
pub(crate) struct SinkLimit {
    sink: std::sync::Arc<str>,
    pub(crate) max_new_per_hour: u64,
    hasher: SeriesHasher,
    state: Mutex<SeriesLimiter>,
    dropped: Counter,
    new_series: Counter,
    tracked: Gauge,
}

impl SinkLimit {
    pub(crate) fn new(sink: std::sync::Arc<str>, max_new_per_hour: u64, now: Instant) -> SinkLimit {
        let labels = [("sink", sink.to_string())];
        SinkLimit {
            dropped: metrics::counter!(
                telemetry::SINK_DROPPED_METRICS,
                "sink" => sink.to_string(),
                "reason" => "series_limit"
            ),
            new_series: metrics::counter!(telemetry::SINK_NEW_SERIES, &labels),
            tracked: metrics::gauge!(telemetry::SINK_SERIES_TRACKED, &labels),
            sink,
            max_new_per_hour,
            hasher: SeriesHasher::new(),
            state: Mutex::new(SeriesLimiter::new(max_new_per_hour, now)),
        }
    }

    /// Narrow `pick` (indexes into `batch`; `None` = all of it) to the
    /// metrics the limiter lets through. An empty pick means none.
    pub(crate) fn apply(
        &self,
        batch: &Batch,
        pick: Option<Box<[u32]>>,
        now: Instant,
    ) -> Option<Box<[u32]>> {
        let index = |j: usize| pick.as_ref().map_or(j as u32, |p| p[j]);
        let len = pick.as_ref().map_or(batch.len(), |p| p.len());
        // Hashing is most of the work: outside the lock.
        let series: Vec<u64> = (0..len)
            .map(|j| self.hasher.hash(batch.get(index(j) as usize)))
            .collect();
        let mut dropped_at: Vec<usize> = Vec::new();
        let mut new = 0u64;
        let (tracked, first_hit) = {
            let mut lim = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            for (j, &s) in series.iter().enumerate() {
                match lim.admit(s, now) {
                    Admission::Known => {}
                    Admission::New => new += 1,
                    Admission::Dropped => dropped_at.push(j),
                }
            }
            let dropped = dropped_at.len() as u64;
            // One batch sees one window: `now` is the same for all of it.
            (
                lim.tracked(),
                dropped > 0 && lim.dropped_in_window() == dropped,
            )
        };
        if new > 0 {
            self.new_series.increment(new);
        }
        self.tracked.set(tracked as f64);
        if dropped_at.is_empty() {
            return pick;
        }
        self.dropped.increment(dropped_at.len() as u64);
        if first_hit {
            tracing::warn!(
                sink = %self.sink,
                max_new_series_per_hour = self.max_new_per_hour,
                "new-series limit reached; metrics of further new series are dropped until the hour window ends"
            );
        }
        let mut skip = dropped_at.into_iter().peekable();
        let kept: Box<[u32]> = (0..len)
            .filter(|&j| skip.next_if_eq(&j).is_none())
            .map(index)
            .collect();
        Some(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Metric;

    const HOUR: Duration = SeriesLimiter::WINDOW;

    /// A limiter of budget `max` and its start time.
    fn limiter(max: u64) -> (SeriesLimiter, Instant) {
        let t0 = Instant::now();
        (SeriesLimiter::new(max, t0), t0)
    }

    fn admit_all(l: &mut SeriesLimiter, series: &[u64], now: Instant) -> Vec<Admission> {
        series.iter().map(|&s| l.admit(s, now)).collect()
    }

    use Admission::{Dropped, Known, New};

    #[test]
    fn new_series_past_the_budget_are_dropped_and_known_ones_flow() {
        let (mut l, t0) = limiter(2);
        assert_eq!(
            admit_all(&mut l, &[1, 2, 3, 4], t0),
            [New, New, Dropped, Dropped]
        );
        let later = t0 + Duration::from_secs(1800);
        assert_eq!(
            admit_all(&mut l, &[1, 2, 3, 1], later),
            [Known, Known, Dropped, Known]
        );
        assert_eq!(l.tracked(), 2);
        assert_eq!(l.dropped_in_window(), 3);
    }

    #[test]
    fn a_new_window_resets_the_budget_and_keeps_recent_series_known() {
        let (mut l, t0) = limiter(2);
        admit_all(&mut l, &[1, 2, 3], t0);
        let t1 = t0 + HOUR;
        assert_eq!(l.admit(1, t1), Known);
        assert_eq!(l.dropped_in_window(), 0);
        assert_eq!(admit_all(&mut l, &[3, 4, 5], t1), [New, New, Dropped]);
        // 2 was seen in the previous window: still known, budget or not.
        assert_eq!(l.admit(2, t1 + Duration::from_secs(3599)), Known);
        assert_eq!(l.tracked(), 4);
    }

    #[test]
    fn series_of_the_previous_window_come_back_without_budget() {
        let (mut l, t0) = limiter(3);
        admit_all(&mut l, &[1, 2, 3], t0);
        let t1 = t0 + HOUR;
        // Known from the previous window, they do not use this window's budget…
        assert_eq!(admit_all(&mut l, &[1, 2, 3], t1), [Known, Known, Known]);
        assert_eq!(
            admit_all(&mut l, &[4, 5, 6, 7], t1),
            [New, New, New, Dropped]
        );
        // …and, moved to the current generation, they are still known in the next.
        let t2 = t1 + HOUR;
        assert_eq!(admit_all(&mut l, &[1, 2, 3], t2), [Known, Known, Known]);
    }

    #[test]
    fn series_unseen_for_a_whole_window_are_new_again() {
        let (mut l, t0) = limiter(1);
        assert_eq!(l.admit(1, t0), New);
        // Seen in window 0, not in window 1: new in window 2.
        assert_eq!(l.admit(2, t0 + HOUR), New);
        assert_eq!(l.admit(1, t0 + 2 * HOUR), New);
        assert_eq!(l.admit(2, t0 + 2 * HOUR), Known);
        // Two idle windows forget everything.
        assert_eq!(l.admit(2, t0 + 5 * HOUR), New);
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn windows_stay_aligned_to_the_first() {
        let (mut l, t0) = limiter(1);
        l.admit(1, t0);
        // Rolled at 1.5 h: the window is [1 h, 2 h), so 2 h starts another.
        assert_eq!(l.admit(2, t0 + HOUR + HOUR / 2), New);
        assert_eq!(l.admit(3, t0 + 2 * HOUR - Duration::from_secs(1)), Dropped);
        assert_eq!(l.admit(3, t0 + 2 * HOUR), New);
    }

    #[test]
    fn a_zero_budget_admits_no_new_series() {
        let (mut l, t0) = limiter(0);
        assert_eq!(l.admit(1, t0), Dropped);
        assert_eq!(l.tracked(), 0);
    }

    fn hash_of(h: &SeriesHasher, m: Metric) -> u64 {
        let b: Batch = std::iter::once(m).collect();
        h.hash(b.get(0))
    }

    #[test]
    fn a_series_is_the_name_and_tag_set_in_any_order() {
        let h = SeriesHasher::new();
        let m = |a, b| Metric::new("cpu").tag("host", a).tag("dc", b);
        let base = hash_of(&h, m("a", "x").field("usage", 1.0));
        // Tag order on the wire, fields, values and time do not matter.
        let reordered = Metric::new("cpu").tag("dc", "x").tag("host", "a");
        assert_eq!(hash_of(&h, reordered.field("idle", 2.0).at(5)), base);
        // Another tag value, name, or tag set is another series.
        assert_ne!(hash_of(&h, m("b", "x").field("usage", 1.0)), base);
        assert_ne!(hash_of(&h, m("a", "y").field("usage", 1.0)), base);
        let other = Metric::new("mem").tag("host", "a").tag("dc", "x");
        assert_ne!(hash_of(&h, other.field("usage", 1.0)), base);
        let fewer = Metric::new("cpu").tag("host", "a");
        assert_ne!(hash_of(&h, fewer.field("usage", 1.0)), base);
    }

    #[test]
    fn splitting_the_same_bytes_otherwise_is_another_series() {
        let h = SeriesHasher::new();
        let one = |m: Metric| hash_of(&h, m.field("v", 1.0));
        let all = [
            one(Metric::new("ab").tag("c", "d")),
            one(Metric::new("a").tag("bc", "d")),
            one(Metric::new("a").tag("b", "cd")),
            one(Metric::new("abc").tag("d", "")),
            one(Metric::new("a").tag("b", "c").tag("d", "")),
        ];
        let distinct: HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len(), "{all:x?}");
    }

    fn batch(series: &[&str]) -> Batch {
        series
            .iter()
            .map(|h| Metric::new("cpu").tag("host", *h).field("v", 1.0))
            .collect()
    }

    #[test]
    fn a_sink_limit_narrows_the_pick_and_keeps_it_whole_when_nothing_drops() {
        let t0 = Instant::now();
        let l = SinkLimit::new("s".into(), 2, t0);
        let b = batch(&["a", "b", "c", "a", "d"]);
        assert_eq!(l.apply(&b, None, t0).as_deref(), Some(&[0, 1, 3][..]));
        // A filter's pick is narrowed in its own terms.
        let pick: Box<[u32]> = [1, 2, 4].into();
        assert_eq!(l.apply(&b, Some(pick), t0).as_deref(), Some(&[1][..]));
        // All known: the batch stays whole.
        let known = batch(&["b", "a"]);
        assert_eq!(l.apply(&known, None, t0), None);
        // All new past the budget: nothing.
        assert_eq!(l.apply(&batch(&["x"]), None, t0).as_deref(), Some(&[][..]));
    }
}
