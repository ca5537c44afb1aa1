//! Line protocol encoder: one metric, one line.
//!
//! Escapes exactly what the spec asks for: `,` and space in the measurement;
//! `,`, `=` and space in tag keys, tag values and field keys; `"` and `\` inside
//! string values. Floats are the shortest decimal that reads back to the same
//! value, without exponent (Go's `'f', -1`), ints end in `i`, uints in `u`.
//!
//! What line protocol cannot carry, and what happens to it (Telegraf's
//! serializer does the same unless noted):
//! - NaN and ±Inf floats: the field is skipped.
//! - A key or measurement ending in backslashes: they are removed (the last
//!   backslash would escape the separator after it). A tag whose key or value is
//!   then empty is skipped, as is a field whose key is then empty.
//! - A newline in a measurement or key: written as the two characters `\n`
//!   (a raw newline would end the line). Newlines in string values are fine.
//! - A measurement starting with `#` (it would read as a comment) or empty after
//!   the rule above: nothing is written and 0 is returned, so the caller can count
//!   it. Telegraf writes it and the receiver silently drops it.
//! - Tabs and NULs at the start of the measurement: removed (the reader skips
//!   whitespace there). A field whose key starts with them is not written first
//!   (field order carries no meaning); if every field's key does, they are
//!   removed from the first one written, which is skipped if nothing is left.
//! - Two tags whose keys become equal under these rules (`a` and `a\\`): the
//!   first in key order is kept, so the line never repeats a tag key. Fields
//!   may repeat (the reader keeps the last).
//! - Tag or field keys named `time`: written as is; InfluxDB drops the point
//!   (tag) or the field.
//! - A timestamp outside InfluxDB's range (1677-09-21..2262-04-11): written as
//!   is; InfluxDB, like our reader, rejects the line.

use std::collections::BTreeSet;
use std::io::Write as _;

use conflux_core::MetricRef;
use conflux_core::Value;
use conflux_core::time::Precision;

/// Append one line (with its trailing `\n`) for `m`, timestamp in nanoseconds.
/// Returns the number of fields written; when none is left (every float was
/// NaN or infinite, or the measurement cannot be written), nothing is written
/// and 0 is returned.
pub fn encode(m: &MetricRef<'_>, out: &mut Vec<u8>) -> usize {
    encode_with(m, Precision::Ns, out)
}

/// As [`encode`], with the timestamp in `precision` units (divided, truncated
/// toward zero, as InfluxDB's `PrecisionString` does), for writers that send
/// `precision=s` and the like.
pub fn encode_with(m: &MetricRef<'_>, precision: Precision, out: &mut Vec<u8>) -> usize {
    let name = m
        .name()
        .trim_start_matches(LEADING_WS)
        .trim_end_matches('\\');
    if name.is_empty() || name.starts_with('#') {
        return 0;
    }
    let mark = out.len();
    escape_key::<false>(name, out);
    // Tag keys are unique, but the lossy rules can make two of them equal. That
    // is rare, so the tags are written in one pass and only rewritten, skipping
    // repeats, when a key was changed.
    let tags_mark = out.len();
    if !write_tags(m, None, out) {
        out.truncate(tags_mark);
        write_tags(m, Some(&mut BTreeSet::new()), out);
    }
    // The reader skips tabs and NULs before the field set, so the first field
    // written is one whose key does not start with them (field order carries no
    // meaning in line protocol); only when there is none are they removed.
    let lead = m
        .fields()
        .position(|(k, v)| writable(k, v) && !k.starts_with(LEADING_WS));
    let mut written = 0;
    if let Some((k, v)) = lead.and_then(|i| m.fields().nth(i)) {
        write_field(k, v, &mut written, out);
    }
    for (j, (k, v)) in m.fields().enumerate() {
        if Some(j) != lead {
            write_field(k, v, &mut written, out);
        }
    }
    if written == 0 {
        out.truncate(mark);
        return 0;
    }
    out.push(b' ');
    out.extend_from_slice(
        itoa::Buffer::new()
            .format(precision.from_ns(m.timestamp()))
            .as_bytes(),
    );
    out.push(b'\n');
    written
}

/// Write `,key=value` for every tag that can be written. Without `seen`, stops
/// and returns false at the first key the lossy rules change; with it, skips a
/// key already written.
fn write_tags(
    m: &MetricRef<'_>,
    mut seen: Option<&mut BTreeSet<String>>,
    out: &mut Vec<u8>,
) -> bool {
    for (k, v) in m.tags() {
        let changed = k.ends_with('\\');
        let (k, v) = (k.trim_end_matches('\\'), v.trim_end_matches('\\'));
        if k.is_empty() || v.is_empty() {
            continue;
        }
        let repeat = match seen.as_deref_mut() {
            Some(seen) => !seen.insert(k.replace('\n', "\\n")),
            None if changed => return false,
            None => false,
        };
        if repeat {
            continue;
        }
        out.push(b',');
        if escape_key::<true>(k, out) && seen.is_none() {
            return false;
        }
        out.push(b'=');
        escape_key::<true>(v, out);
    }
    true
}

/// Write `,key=value` (or ` key=value` for the first field), unless the value
/// is NaN or infinite or the key is empty once trailing backslashes are removed.
/// The first field's key also loses leading tabs and NULs.
#[inline]
fn write_field(key: &str, value: Value<'_>, written: &mut usize, out: &mut Vec<u8>) {
    if matches!(value, Value::Float(x) if !x.is_finite()) {
        return;
    }
    let mut key = key.trim_end_matches('\\');
    if *written == 0 {
        key = key.trim_start_matches(LEADING_WS);
    }
    if key.is_empty() {
        return;
    }
    out.push(if *written == 0 { b' ' } else { b',' });
    escape_key::<true>(key, out);
    out.push(b'=');
    write_value(value, out);
    *written += 1;
}

/// A field the encoder can write: a finite value and a key that is not empty
/// once trailing backslashes are removed.
fn writable(key: &str, value: Value<'_>) -> bool {
    !matches!(value, Value::Float(x) if !x.is_finite()) && !key.trim_end_matches('\\').is_empty()
}

/// What the reader skips before a measurement and before the field set.
const LEADING_WS: [char; 2] = ['\t', '\0'];

fn write_value(v: Value<'_>, out: &mut Vec<u8>) {
    let mut buf = itoa::Buffer::new();
    match v {
        // Display for f64 is the shortest round-trip decimal, never an exponent.
        Value::Float(x) => {
            let _ = write!(out, "{x}");
        }
        Value::Int(x) => {
            out.extend_from_slice(buf.format(x).as_bytes());
            out.push(b'i');
        }
        Value::UInt(x) => {
            out.extend_from_slice(buf.format(x).as_bytes());
            out.push(b'u');
        }
        Value::Bool(x) => out.extend_from_slice(if x { b"true" } else { b"false" }),
        Value::Str(s) => {
            out.push(b'"');
            let mut last = 0;
            for (i, &c) in s.as_bytes().iter().enumerate() {
                if c == b'"' || c == b'\\' {
                    out.extend_from_slice(&s.as_bytes()[last..i]);
                    out.push(b'\\');
                    last = i;
                }
            }
            out.extend_from_slice(&s.as_bytes()[last..]);
            out.push(b'"');
        }
    }
}

/// Escape a measurement (`KEY = false`: `,` and space) or a tag key, tag value or
/// field key (`KEY = true`: also `=`). A newline becomes the two characters `\n`;
/// returns whether that happened.
fn escape_key<const KEY: bool>(s: &str, out: &mut Vec<u8>) -> bool {
    let b = s.as_bytes();
    let special = |c: u8| c == b',' || c == b' ' || c == b'\n' || (KEY && c == b'=');
    if !b.iter().any(|&c| special(c)) {
        out.extend_from_slice(b);
        return false;
    }
    let mut newline = false;
    for &c in b {
        if c == b'\n' {
            out.extend_from_slice(b"\\n");
            newline = true;
        } else {
            if special(c) {
                out.push(b'\\');
            }
            out.push(c);
        }
    }
    newline
}

#[cfg(test)]
mod tests {
    use super::*;
    use conflux_core::{Batch, Metric};

    fn enc(m: Metric) -> String {
        let mut b = Batch::new();
        b.push(&m).unwrap();
        let mut out = Vec::new();
        encode(&b.get(0), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_each_element_as_the_spec_says() {
        let m = Metric::new("a b,c=d")
            .tag("k ,=", "v ,=")
            .field("f ,=", "q\"\\,= ")
            .at(1);
        assert_eq!(
            enc(m),
            "a\\ b\\,c=d,k\\ \\,\\==v\\ \\,\\= f\\ \\,\\==\"q\\\"\\\\,= \" 1\n"
        );
    }

    #[test]
    fn writes_every_value_type() {
        let m = Metric::new("m")
            .field("f", 1.0)
            .field("g", -0.000_001_5)
            .field("i", i64::MIN)
            .field("u", u64::MAX)
            .field("t", true)
            .field("s", "")
            .at(-5);
        assert_eq!(
            enc(m),
            "m f=1,g=-0.0000015,i=-9223372036854775808i,u=18446744073709551615u,t=true,s=\"\" -5\n"
        );
    }

    #[test]
    fn skips_non_finite_floats_and_empty_results() {
        assert_eq!(
            enc(Metric::new("m").field("a", f64::NAN).field("b", 2i64)),
            "m b=2i 0\n"
        );
        assert_eq!(enc(Metric::new("m").field("a", f64::INFINITY)), "");
        assert_eq!(enc(Metric::new("#m").field("a", 1.0)), "");
        assert_eq!(enc(Metric::new("\\\\").field("a", 1.0)), "");
    }

    #[test]
    fn strips_trailing_backslashes_and_drops_empty_tags() {
        let m = Metric::new("m\\")
            .tag("a\\", "b\\\\")
            .tag("c", "\\")
            .field("f\\", 1i64)
            .field("\\", 2i64);
        assert_eq!(enc(m), "m,a=b f=1i 0\n");
    }

    #[test]
    fn strips_what_the_reader_would_skip() {
        assert_eq!(
            enc(Metric::new("\t\0m")
                .field("\t", 1i64)
                .field("\tb", 2i64)
                .field("\tc", 3i64)),
            "m b=2i,\tc=3i 0\n"
        );
        assert_eq!(enc(Metric::new("\t#m").field("a", 1i64)), "");
        // Found by fuzzing: trimming made two tag keys equal.
        assert_eq!(
            enc(Metric::new("m")
                .tag("a", "1")
                .tag("a\\", "2")
                .field("f", 1i64)),
            "m,a=1 f=1i 0\n"
        );
        assert_eq!(
            enc(Metric::new("m")
                .tag("a\n", "1")
                .tag("a\\n", "2")
                .field("f", 1i64)),
            "m,a\\n=1 f=1i 0\n"
        );
        // Found by fuzzing (`m a=0,\0=2,a=2`): last-wins moved a NUL key first.
        assert_eq!(
            enc(Metric::new("m").field("\0", 2.0).field("a", 2.0)),
            "m a=2,\0=2 0\n"
        );
    }

    #[test]
    fn writes_newlines_in_keys_as_backslash_n() {
        assert_eq!(
            enc(Metric::new("a\nb").tag("t", "x\ny").field("s", "1\n2")),
            "a\\nb,t=x\\ny s=\"1\n2\" 0\n"
        );
    }

    #[test]
    fn scales_the_timestamp_toward_zero() {
        let mut b = Batch::new();
        b.push(&Metric::new("m").field("v", 1i64).at(-1_500_000_000))
            .unwrap();
        let mut out = Vec::new();
        assert_eq!(encode_with(&b.get(0), Precision::S, &mut out), 1);
        assert_eq!(out, b"m v=1i -1\n");
    }
}
