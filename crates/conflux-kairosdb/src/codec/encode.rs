//! The encoder of the `kairosdb` sink: metrics into one `/api/v1/datapoints`
//! body, one object per series (name, tags, TTL and, for strings,
//! `"type":"string"`), its points in the order they came:
//!
//! ```json
//! [{"name":"cpu.usage_idle","datapoints":[[1700000000000,97.5],[1700000010000,96.1]],"tags":{"host":"a"},"ttl":300}]
//! ```
//!
//! Names follow the naming policy for KairosDB (`conflux_core::naming`,
//! `Target::Kairosdb`: `measurement.field`, a `value` field keeps the bare
//! name, strings kept, bools as 1/0). Values are written so that KairosDB
//! infers the type it stored them as: integers without a dot (`long`),
//! floats always with one (`1.0`, `1.0e300`: `double`), strings under
//! `"type":"string"` (so `"123"` stays a string). Timestamps are milliseconds
//! (nanoseconds floored). Because KairosDB refuses an object without tags or
//! with an empty tag value, tags with empty values are left out and a metric
//! without tags gets [`EncodeOptions::untagged_tag`] (KairosDB's own telnet
//! listener adds `add=tag` in that case).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use conflux_core::metric::{MetricRef, Value};
use conflux_core::naming::{NameBuf, Naming, SingleValue, Skip, Target};

use super::parse::MIN_MS;

/// How [`Encoder`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Series names and value rules.
    pub naming: Naming,
    /// The tag given to a metric that has none; `None` writes such metrics
    /// without tags (KairosDB then rejects them).
    pub untagged_tag: Option<(String, String)>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            naming: Naming::for_target(Target::Kairosdb),
            untagged_tag: Some(("add".to_owned(), "tag".to_owned())),
        }
    }
}

/// What one [`Encoder::encode`] call wrote and left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Metrics with at least one point written.
    pub metrics: usize,
    /// Points (data points) written.
    pub points: usize,
    /// Metric objects (series) written.
    pub objects: usize,
    /// String values left out by the naming policy.
    pub skipped_string: usize,
    /// Bool values left out by the naming policy.
    pub skipped_bool: usize,
    /// NaN and infinities, which JSON cannot carry.
    pub skipped_non_finite: usize,
    /// Points whose series name came out empty.
    pub skipped_invalid_name: usize,
}

/// A point's value, without borrowing the batch (strings are looked up again).
#[derive(Debug, Clone, Copy)]
enum Val {
    Float(f64),
    Int(i64),
    UInt(u64),
    Str { field: u32 },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    group: u32,
    metric: u32,
    ts_ms: i64,
    value: Val,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    /// The series name, in `Encoder::names`.
    name: (usize, usize),
    /// A metric of the group, whose tags are the group's.
    rep: u32,
    ttl: Option<u32>,
    string: bool,
    /// Next group with the same hash (`u32::MAX`: none).
    next: u32,
    count: u32,
}

/// The map's keys are already hashes.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Reusable encoder, one per sink task: its tables keep their capacity
/// between calls, so encoding allocates nothing per metric.
pub struct Encoder {
    opts: EncodeOptions,
    groups: Vec<Group>,
    index: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    entries: Vec<Entry>,
    order: Vec<u32>,
    starts: Vec<u32>,
    names: String,
    buf: NameBuf,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// An encoder writing with `opts`.
    pub fn new(opts: EncodeOptions) -> Encoder {
        Encoder {
            opts,
            groups: Vec::new(),
            index: HashMap::default(),
            entries: Vec::new(),
            order: Vec::new(),
            starts: Vec::new(),
            names: String::new(),
            buf: NameBuf::default(),
        }
    }

    /// Append to `out` one JSON array holding every point of `metrics`,
    /// grouped by series; nothing at all when no point could be written.
    pub fn encode(&mut self, metrics: &[MetricRef<'_>], out: &mut Vec<u8>) -> Encoded {
        self.groups.clear();
        self.index.clear();
        self.entries.clear();
        self.names.clear();
        let mut enc = Encoded::default();
        for (mi, m) in metrics.iter().enumerate() {
            let mut wrote = false;
            for (fi, (field, v)) in m.fields().enumerate() {
                let value = match self.opts.naming.value(v) {
                    Ok(SingleValue::Float(f)) => Val::Float(f),
                    Ok(SingleValue::Int(i)) => Val::Int(i),
                    Ok(SingleValue::UInt(u)) => Val::UInt(u),
                    Ok(SingleValue::Str(_)) => Val::Str { field: fi as u32 },
                    Err(Skip::String) => {
                        enc.skipped_string += 1;
                        continue;
                    }
                    Err(Skip::Bool) => {
                        enc.skipped_bool += 1;
                        continue;
                    }
                    Err(Skip::NonFinite) => {
                        enc.skipped_non_finite += 1;
                        continue;
                    }
                };
                let Some(series) = self.opts.naming.series_name(m.name(), field, &mut self.buf)
                else {
                    enc.skipped_invalid_name += 1;
                    continue;
                };
                let string = matches!(value, Val::Str { .. });
                let untagged = self.opts.untagged_tag.as_ref();
                let hash = key_hash(m, series, string, untagged);
                let group = lookup(
                    &mut self.index,
                    &mut self.groups,
                    &mut self.names,
                    metrics,
                    mi as u32,
                    series,
                    string,
                    untagged,
                    hash,
                );
                self.groups[group as usize].count += 1;
                self.entries.push(Entry {
                    group,
                    metric: mi as u32,
                    ts_ms: to_ms(m.timestamp()),
                    value,
                });
                wrote = true;
            }
            if wrote {
                enc.metrics += 1;
            }
        }
        if self.entries.is_empty() {
            return enc;
        }
        enc.points = self.entries.len();
        enc.objects = self.groups.len();

        // Counting sort of the entries by group, stable: points keep their order.
        self.starts.clear();
        let mut at = 0u32;
        for g in &self.groups {
            self.starts.push(at);
            at += g.count;
        }
        self.order.clear();
        self.order.resize(self.entries.len(), 0);
        for (i, e) in self.entries.iter().enumerate() {
            let slot = &mut self.starts[e.group as usize];
            self.order[*slot as usize] = i as u32;
            *slot += 1;
        }

        out.push(b'[');
        let mut next = 0usize;
        for (gi, g) in self.groups.iter().enumerate() {
            if gi > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"name\":");
            write_str(out, &self.names[g.name.0..g.name.1]);
            if g.string {
                out.extend_from_slice(b",\"type\":\"string\"");
            }
            out.extend_from_slice(b",\"datapoints\":[");
            for k in 0..g.count as usize {
                let e = self.entries[self.order[next + k] as usize];
                if k > 0 {
                    out.push(b',');
                }
                out.push(b'[');
                out.extend_from_slice(itoa::Buffer::new().format(e.ts_ms).as_bytes());
                out.push(b',');
                match e.value {
                    Val::Float(f) => write_float(out, f),
                    Val::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
                    Val::UInt(u) if i64::try_from(u).is_ok() => {
                        out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
                    }
                    // Past a Java long: written as a double, which KairosDB can store.
                    Val::UInt(u) => write_float(out, u as f64),
                    Val::Str { field } => {
                        let m = &metrics[e.metric as usize];
                        let s = match m.fields().nth(field as usize) {
                            Some((_, Value::Str(s))) => s,
                            _ => "",
                        };
                        write_str(out, s);
                    }
                }
                out.push(b']');
            }
            next += g.count as usize;
            out.extend_from_slice(b"],\"tags\":{");
            let mut first = true;
            for (k, v) in effective_tags(&metrics[g.rep as usize], self.opts.untagged_tag.as_ref())
            {
                if !first {
                    out.push(b',');
                }
                first = false;
                write_str(out, k);
                out.push(b':');
                write_str(out, v);
            }
            out.push(b'}');
            if let Some(ttl) = g.ttl {
                out.extend_from_slice(b",\"ttl\":");
                out.extend_from_slice(itoa::Buffer::new().format(ttl).as_bytes());
            }
            out.push(b'}');
        }
        out.push(b']');
        enc
    }
}

/// Milliseconds of a nanosecond timestamp, floored; the few nanoseconds
/// before the first whole millisecond an i64 of nanoseconds can hold
/// (1677-09-21) are written as that millisecond, so that every body reads back.
fn to_ms(ns: i64) -> i64 {
    ns.div_euclid(1_000_000).max(MIN_MS)
}

/// The tags written for `m`: those with a value, or the untagged tag.
fn effective_tags<'a>(
    m: &MetricRef<'a>,
    untagged: Option<&'a (String, String)>,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    let any = m.tags().any(|(_, v)| !v.is_empty());
    let fallback = if any {
        None
    } else {
        untagged.map(|(k, v)| (k.as_str(), v.as_str()))
    };
    m.tags().filter(|(_, v)| !v.is_empty()).chain(fallback)
}

/// FxHash (rustc's): a multiply-rotate over 8-byte words. Keys here come
/// from our own batches and collisions are resolved by full comparison, so a
/// fast, unkeyed hash is enough.
#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// The hash of a series key: name, written tags, TTL, and whether it holds strings.
fn key_hash(
    m: &MetricRef<'_>,
    series: &str,
    string: bool,
    untagged: Option<&(String, String)>,
) -> u64 {
    // Deterministic: the same body for the same input, run after run.
    let mut h = FxHasher::default();
    series.hash(&mut h);
    for (k, v) in effective_tags(m, untagged) {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    m.ttl().hash(&mut h);
    string.hash(&mut h);
    h.finish()
}

/// The group of (`series`, tags of `metrics[mi]`, its TTL, `string`), made
/// if new. Groups are found by `hash`, then compared in full, so that a hash
/// collision never merges two series.
#[allow(clippy::too_many_arguments)]
fn lookup(
    index: &mut HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    groups: &mut Vec<Group>,
    names: &mut String,
    metrics: &[MetricRef<'_>],
    mi: u32,
    series: &str,
    string: bool,
    untagged: Option<&(String, String)>,
    hash: u64,
) -> u32 {
    let m = &metrics[mi as usize];
    let ttl = m.ttl();

    let mut last = None;
    let mut cur = index.get(&hash).copied();
    while let Some(g) = cur {
        let grp = &groups[g as usize];
        let same = grp.string == string
            && grp.ttl == ttl
            && &names[grp.name.0..grp.name.1] == series
            && effective_tags(&metrics[grp.rep as usize], untagged).eq(effective_tags(m, untagged));
        if same {
            return g;
        }
        last = Some(g);
        cur = (grp.next != u32::MAX).then_some(grp.next);
    }
    let id = groups.len() as u32;
    let start = names.len();
    names.push_str(series);
    groups.push(Group {
        name: (start, names.len()),
        rep: mi,
        ttl,
        string,
        next: u32::MAX,
        count: 0,
    });
    match last {
        Some(l) => groups[l as usize].next = id,
        None => {
            index.insert(hash, id);
        }
    }
    id
}

/// A JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Names and tags rarely need escaping: check first (a loop the compiler
    // vectorizes), then copy in one go.
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(esc);
        }
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
    out.push(b'"');
}

/// A finite float with a `.` always, so that KairosDB (which calls a number
/// without one a `long`) stores a double: `1.0`, `0.5`, `1.0e300`.
pub fn write_float(out: &mut Vec<u8>, f: f64) {
    use std::io::Write as _;
    let start = out.len();
    // Debug is the shortest text that reads back to the same f64.
    let _ = write!(out, "{f:?}");
    if out[start..].contains(&b'.') {
        return;
    }
    match out[start..].iter().position(|&c| c == b'e') {
        Some(e) => {
            out.insert(start + e, b'0');
            out.insert(start + e, b'.');
        }
        None => out.extend_from_slice(b".0"),
    }
}

#[cfg(test)]
mod tests {
    use conflux_core::{Batch, Metric};

    use super::*;

    fn encode_all(batch: &Batch, opts: EncodeOptions) -> (String, Encoded) {
        let refs: Vec<_> = batch.iter().collect();
        let mut out = Vec::new();
        let enc = Encoder::new(opts).encode(&refs, &mut out);
        (String::from_utf8(out).unwrap(), enc)
    }

    fn float(f: f64) -> String {
        let mut out = Vec::new();
        write_float(&mut out, f);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_always_carry_a_dot() {
        assert_eq!(float(1.0), "1.0");
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(-2.5), "-2.5");
        assert_eq!(float(1e300), "1.0e300");
        assert_eq!(float(1e-7), "1.0e-7");
        assert_eq!(float(1.5e300), "1.5e300");
        assert_eq!(float(-0.0), "-0.0");
        for f in [1e300, 1e-7, 0.1, 123456.789, f64::MAX, f64::MIN_POSITIVE] {
            assert_eq!(float(f).parse::<f64>().unwrap(), f);
        }
    }

    #[test]
    fn timestamps_are_floored_to_milliseconds_within_range() {
        assert_eq!(to_ms(1_999_999), 1);
        assert_eq!(to_ms(-1), -1);
        assert_eq!(to_ms(i64::MAX), 9_223_372_036_854);
        assert_eq!(to_ms(i64::MIN), MIN_MS);
        assert_eq!(MIN_MS, -9_223_372_036_854);
        // Found by `roundtrip_kairosdb`: the earliest timestamp reads back.
        let batch: Batch = [Metric::new("m")
            .tag("a", "b")
            .field("value", 1i64)
            .at(i64::MIN)]
        .into_iter()
        .collect();
        let (json, _) = encode_all(&batch, EncodeOptions::default());
        let mut back = Batch::new();
        let mut errors = Vec::new();
        crate::codec::parse(json.as_bytes(), &Default::default(), &mut back, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(back.get(0).timestamp(), MIN_MS * 1_000_000);
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn groups_points_by_series_in_arrival_order() {
        let batch: Batch = [
            Metric::new("cpu")
                .tag("host", "a")
                .field("usage_idle", 97.5)
                .field("n", 2i64)
                .at(1_700_000_000_000_000_000),
            Metric::new("cpu")
                .tag("host", "b")
                .field("usage_idle", 50.0)
                .at(1_700_000_000_000_000_000),
            Metric::new("cpu")
                .tag("host", "a")
                .field("usage_idle", 96.0)
                .at(1_700_000_010_000_999_999),
        ]
        .into_iter()
        .collect();
        let (json, enc) = encode_all(&batch, EncodeOptions::default());
        assert_eq!(
            json,
            r#"[{"name":"cpu.usage_idle","datapoints":[[1700000000000,97.5],[1700000010000,96.0]],"tags":{"host":"a"}},{"name":"cpu.n","datapoints":[[1700000000000,2]],"tags":{"host":"a"}},{"name":"cpu.usage_idle","datapoints":[[1700000000000,50.0]],"tags":{"host":"b"}}]"#
        );
        assert_eq!(
            enc,
            Encoded {
                metrics: 3,
                points: 4,
                objects: 3,
                ..Encoded::default()
            }
        );
    }

    #[test]
    fn strings_ttl_bools_and_untagged_metrics() {
        let mut batch = Batch::new();
        let mut b = batch.metric("disk");
        b.field("state", Value::Str("123"))
            .field("ok", Value::Bool(true))
            .ttl(300);
        b.finish(-1).unwrap();
        batch
            .push(
                &Metric::new("x")
                    .tag("empty", "")
                    .field("value", u64::MAX)
                    .at(0),
            )
            .unwrap();
        let (json, enc) = encode_all(&batch, EncodeOptions::default());
        assert_eq!(
            json,
            r#"[{"name":"disk.state","type":"string","datapoints":[[-1,"123"]],"tags":{"add":"tag"},"ttl":300},{"name":"disk.ok","datapoints":[[-1,1]],"tags":{"add":"tag"},"ttl":300},{"name":"x","datapoints":[[0,1.8446744073709552e19]],"tags":{"add":"tag"}}]"#
        );
        assert_eq!(enc.points, 3);
        let no_default = EncodeOptions {
            untagged_tag: None,
            ..EncodeOptions::default()
        };
        let (json, _) = encode_all(&batch, no_default);
        assert!(json.contains(r#""tags":{}"#), "{json}");
    }

    #[test]
    fn skipped_values_are_counted_and_an_empty_result_writes_nothing() {
        let batch: Batch = [Metric::new("m")
            .field("a", f64::NAN)
            .field("b", f64::INFINITY)]
        .into_iter()
        .collect();
        let (json, enc) = encode_all(&batch, EncodeOptions::default());
        assert_eq!(json, "");
        assert_eq!(enc.skipped_non_finite, 2);
        assert_eq!(enc.metrics, 0);
        let mut naming = Naming::for_target(Target::Kairosdb);
        naming.strings = conflux_core::naming::StringPolicy::Skip;
        naming.bools = conflux_core::naming::BoolPolicy::Skip;
        let batch: Batch = [Metric::new("m")
            .field("s", "x")
            .field("b", false)
            .field("v", 1i64)]
        .into_iter()
        .collect();
        let (json, enc) = encode_all(
            &batch,
            EncodeOptions {
                naming,
                ..EncodeOptions::default()
            },
        );
        assert_eq!(
            json,
            r#"[{"name":"m.v","datapoints":[[0,1]],"tags":{"add":"tag"}}]"#
        );
        assert_eq!((enc.skipped_string, enc.skipped_bool), (1, 1));
    }

    #[test]
    fn a_hash_collision_never_merges_series() {
        // Force every key into one hash bucket by looking up groups directly.
        let batch: Batch = [
            Metric::new("a").tag("t", "1").field("value", 1i64),
            Metric::new("b").tag("t", "1").field("value", 2i64),
        ]
        .into_iter()
        .collect();
        let refs: Vec<_> = batch.iter().collect();
        let mut index = HashMap::default();
        let mut groups = Vec::new();
        let mut names = String::new();
        let mut find = |mi: u32, series: &str| {
            // Every key gets hash 7: all series share one chain.
            lookup(
                &mut index,
                &mut groups,
                &mut names,
                &refs,
                mi,
                series,
                false,
                None,
                7,
            )
        };
        let a = find(0, "a");
        let b = find(1, "b");
        let b_str = find(1, "a");
        assert_eq!((a, b), (0, 1));
        // Metric 1 under the name "a" has the tags of group 0: it joins it.
        assert_eq!(b_str, 0);
        assert_eq!(find(0, "a"), a);
        assert_eq!(find(1, "b"), b);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].next, 1);
    }
}
