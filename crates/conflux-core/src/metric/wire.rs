//! A compact binary form of metrics, for the disk spool: what a sink could
//! not take yet is written in it and read back after a restart.
//!
//! Lossless for everything a [`Batch`] holds (ttl included), and cheap both
//! ways: strings are written once with a length prefix and read back into
//! the arena with one UTF-8 check each, tags come back already sorted so no
//! builder work is redone. The format carries a version byte so that a spool
//! written by one release is refused cleanly, not misread, by another.
//!
//! ```text
//! batch  = 'W' version:u8 count:varint metric*
//! metric = name:str timestamp:i64le ttl:varint ntags:varint (key:str value:str)*
//!          nfields:varint (key:str kind:u8 value)*
//! str    = len:varint bytes
//! value  = f64le (kind 0) | zigzag varint (1, int) | varint (2, uint)
//!        | nothing (3 false, 4 true) | str (5)
//! ```

use super::{Batch, FieldRec, Limits, MetricRef, RawValue, Rec, Span, TagRec, Value};

const MAGIC: u8 = b'W';
const VERSION: u8 = 1;

/// Why bytes did not decode into a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not this format, or another version of it.
    #[error("not a version {VERSION} metric record")]
    Version,
    /// The bytes end inside a value.
    #[error("record ends early")]
    Truncated,
    /// A string is not UTF-8.
    #[error("string is not valid UTF-8")]
    Utf8,
    /// A value kind byte that does not exist.
    #[error("unknown value kind {0}")]
    Kind(u8),
    /// A metric breaks the batch's rules (no name, no field, unsorted tags).
    #[error("invalid metric: {0}")]
    Invalid(&'static str),
    /// Bytes left over after the last metric.
    #[error("trailing bytes after the last metric")]
    Trailing,
}

/// Append the wire form of `metrics` (`count` of them) to `out`.
pub fn encode<'a>(
    count: usize,
    metrics: impl IntoIterator<Item = MetricRef<'a>>,
    out: &mut Vec<u8>,
) {
    out.push(MAGIC);
    out.push(VERSION);
    varint(out, count as u64);
    for m in metrics {
        string(out, m.name());
        out.extend_from_slice(&m.timestamp().to_le_bytes());
        varint(out, u64::from(m.ttl().unwrap_or(0)));
        let tags = m.tags();
        varint(out, tags.len() as u64);
        for (k, v) in tags {
            string(out, k);
            string(out, v);
        }
        let fields = m.fields();
        varint(out, fields.len() as u64);
        for (k, v) in fields {
            string(out, k);
            match v {
                Value::Float(x) => {
                    out.push(0);
                    out.extend_from_slice(&x.to_bits().to_le_bytes());
                }
                Value::Int(x) => {
                    out.push(1);
                    varint(out, ((x << 1) ^ (x >> 63)) as u64);
                }
                Value::UInt(x) => {
                    out.push(2);
                    varint(out, x);
                }
                Value::Bool(b) => out.push(if b { 4 } else { 3 }),
                Value::Str(s) => {
                    out.push(5);
                    string(out, s);
                }
            }
        }
    }
}

/// Read a batch back from its wire form.
///
/// The batch's [`Limits`] are not checked: its metrics were accepted (under
/// the limits of the listener that took them) before they were written, and
/// a spool must give back all it holds. The batch carries the default limits
/// for metrics added to it later.
///
/// # Errors
/// [`WireError`] when the bytes are not a whole, valid record of this version.
pub fn decode(bytes: &[u8]) -> Result<Batch, WireError> {
    let mut r = Reader { bytes, at: 0 };
    if r.byte()? != MAGIC || r.byte()? != VERSION {
        return Err(WireError::Version);
    }
    let count = r.varint()?;
    // Every metric takes at least 12 bytes: never trust a count for capacity
    // beyond what the bytes could hold.
    let cap = (count as usize).min(bytes.len() / 12);
    let mut b = Batch {
        arena: String::with_capacity(bytes.len()),
        metrics: Vec::with_capacity(cap),
        tags: Vec::with_capacity(cap * 4),
        fields: Vec::with_capacity(cap * 2),
        limits: Limits::default(),
    };
    for _ in 0..count {
        let name = r.string(&mut b.arena)?;
        if name.len == 0 {
            return Err(WireError::Invalid("empty name"));
        }
        let timestamp = i64::from_le_bytes(r.array()?);
        let ttl = u32::try_from(r.varint()?).map_err(|_| WireError::Invalid("ttl"))?;
        let tags_start = b.tags.len();
        let mut tags_key = 0usize;
        for _ in 0..r.varint()? {
            let key = r.string(&mut b.arena)?;
            let value = r.string(&mut b.arena)?;
            if key.len == 0 {
                return Err(WireError::Invalid("empty tag key"));
            }
            if let Some(prev) = b.tags[tags_start..].last()
                && b.str(prev.key) >= b.str(key)
            {
                return Err(WireError::Invalid("tags out of order"));
            }
            let tag = TagRec { key, value };
            tags_key = tags_key.saturating_add(tag.key_bytes());
            b.tags.push(tag);
        }
        let fields_start = b.fields.len();
        for _ in 0..r.varint()? {
            let key = r.string(&mut b.arena)?;
            if key.len == 0 {
                return Err(WireError::Invalid("empty field key"));
            }
            let value = match r.byte()? {
                0 => RawValue::Float(f64::from_bits(u64::from_le_bytes(r.array()?))),
                1 => {
                    let z = r.varint()?;
                    RawValue::Int(((z >> 1) as i64) ^ -((z & 1) as i64))
                }
                2 => RawValue::UInt(r.varint()?),
                3 => RawValue::Bool(false),
                4 => RawValue::Bool(true),
                5 => RawValue::Str(r.string(&mut b.arena)?),
                k => return Err(WireError::Kind(k)),
            };
            b.fields.push(FieldRec { key, value });
        }
        if b.fields.len() == fields_start {
            return Err(WireError::Invalid("no fields"));
        }
        if b.arena.len() > u32::MAX as usize || b.fields.len() >= u32::MAX as usize {
            return Err(WireError::Invalid("batch too large"));
        }
        b.metrics.push(Rec {
            name,
            tags_start: tags_start as u32,
            tags_end: b.tags.len() as u32,
            fields_start: fields_start as u32,
            fields_end: b.fields.len() as u32,
            timestamp,
            ttl,
            tags_key: u32::try_from(tags_key).unwrap_or(u32::MAX),
        });
    }
    if r.at != bytes.len() {
        return Err(WireError::Trailing);
    }
    Ok(b)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, WireError> {
        let b = *self.bytes.get(self.at).ok_or(WireError::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let s = self
            .bytes
            .get(self.at..self.at + N)
            .ok_or(WireError::Truncated)?;
        self.at += N;
        let mut a = [0; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(WireError::Invalid("varint too long"))
    }

    /// Read a string into the arena and return its span there.
    fn string(&mut self, arena: &mut String) -> Result<Span, WireError> {
        let len = usize::try_from(self.varint()?).map_err(|_| WireError::Truncated)?;
        let end = self.at.checked_add(len).ok_or(WireError::Truncated)?;
        let raw = self.bytes.get(self.at..end).ok_or(WireError::Truncated)?;
        let s = std::str::from_utf8(raw).map_err(|_| WireError::Utf8)?;
        self.at = end;
        let start = arena.len();
        arena.push_str(s);
        Ok(Span {
            start: start as u32,
            len: len as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Metric;

    fn sample() -> Batch {
        let mut b: Batch = [
            Metric::new("cpu")
                .tag("host", "a")
                .tag("dc", "eu-west")
                .field("usage", 1.5)
                .field("n", -42i64)
                .field("u", u64::MAX)
                .field("up", true)
                .field("down", false)
                .field("msg", "héllo \"x\"")
                .at(1_700_000_000_123_456_789),
            Metric::new("mem").field("value", f64::NAN).at(-5),
            Metric::new("ünï").tag("k", "").field("i", i64::MIN).at(0),
        ]
        .into_iter()
        .collect();
        let mut m = b.metric("ttl");
        m.field("value", Value::Float(2.0)).ttl(3600);
        m.finish(7).unwrap();
        b
    }

    fn roundtrip(b: &Batch) -> Batch {
        let mut out = Vec::new();
        encode(b.len(), b.iter(), &mut out);
        decode(&out).unwrap()
    }

    #[test]
    fn round_trips_every_value_kind_and_ttl() {
        let b = sample();
        let back = roundtrip(&b);
        assert_eq!(back.len(), 4);
        for (x, y) in b.iter().zip(back.iter()) {
            assert_eq!(x.name(), y.name());
            assert_eq!(x.timestamp(), y.timestamp());
            assert_eq!(x.ttl(), y.ttl());
            assert_eq!(x.tags().collect::<Vec<_>>(), y.tags().collect::<Vec<_>>());
            for ((k1, v1), (k2, v2)) in x.fields().zip(y.fields()) {
                assert_eq!(k1, k2);
                match (v1, v2) {
                    (Value::Float(a), Value::Float(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                    (a, b) => assert_eq!(a, b),
                }
            }
        }
        assert_eq!(back.get(3).ttl(), Some(3600));
        assert_eq!(back.get(0).tag("host"), Some("a"));
    }

    #[test]
    fn decodes_metrics_past_the_default_limits() {
        // Accepted by a listener with wider limits, then spooled: reading the
        // spool back must not drop them.
        let mut wide = Batch::new();
        wide.set_limits(Limits::UNLIMITED);
        let mut m = Metric::new("wide").field("value", 1.0);
        for i in 0..300 {
            m = m.tag(format!("k{i:03}"), "v");
        }
        wide.push(&m).unwrap();
        wide.push(
            &Metric::new("long")
                .tag("k", "x".repeat(70_000))
                .field("value", 2.0),
        )
        .unwrap();
        let back = roundtrip(&wide);
        assert_eq!(back, wide);
        assert_eq!(back.get(0).tags().len(), 300);
        assert_eq!(back.limits(), Limits::default());
    }

    #[test]
    fn encodes_a_subset_in_the_given_order() {
        let b = sample();
        let mut out = Vec::new();
        encode(2, [b.get(2), b.get(0)], &mut out);
        let back = decode(&out).unwrap();
        assert_eq!(back.get(0).name(), "ünï");
        assert_eq!(back.get(1).name(), "cpu");
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let b = sample();
        let mut out = Vec::new();
        encode(b.len(), b.iter(), &mut out);
        for n in 0..out.len() {
            assert!(decode(&out[..n]).is_err(), "prefix of {n} bytes decoded");
        }
        let mut long = out.clone();
        long.push(0);
        assert_eq!(decode(&long).unwrap_err(), WireError::Trailing);
    }

    #[test]
    fn rejects_other_versions_and_bad_content() {
        assert_eq!(decode(b"W\x02\x00").unwrap_err(), WireError::Version);
        assert_eq!(decode(b"X\x01\x00").unwrap_err(), WireError::Version);
        // One metric named "a", no tags, one field of kind 9.
        let mut bad = b"W\x01\x01\x01a".to_vec();
        bad.extend_from_slice(&[0; 8]);
        bad.extend_from_slice(&[0, 0, 1, 1, b'v', 9]);
        assert_eq!(decode(&bad).unwrap_err(), WireError::Kind(9));
        // Invalid UTF-8 in the name.
        assert_eq!(decode(b"W\x01\x01\x01\xff").unwrap_err(), WireError::Utf8);
        // A huge count with no bytes behind it fails without a huge allocation.
        assert_eq!(
            decode(b"W\x01\xff\xff\xff\xff\x0f").unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let b = sample();
        let mut good = Vec::new();
        encode(b.len(), b.iter(), &mut good);
        for _ in 0..2000 {
            let mut bytes = good.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed as usize) % bytes.len();
                bytes[i] = (seed >> 32) as u8;
            }
            let _ = decode(&bytes);
        }
    }
}
