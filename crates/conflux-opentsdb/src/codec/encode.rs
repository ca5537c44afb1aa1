//! The encoder of the `opentsdb` sink: telnet `put` lines and `/api/put`
//! JSON, one point per field, named by the core naming policy
//! ([`Naming::for_target`]`(Target::Opentsdb)` by default, so a field
//! `value` keeps the bare name and `cpu` + `usage_idle` gives
//! `cpu_usage_idle`, as Telegraf's opentsdb output writes).
//!
//! What OpenTSDB cannot take, and what happens to it:
//! - Strings, and bools under `bools = "skip"`: skipped and counted
//!   (`string_value`, `bool_value`); bools are 1 and 0 by default.
//! - NaN and infinities: skipped (`non_finite_value`).
//! - A name the sanitizer empties: skipped (`invalid_name`).
//! - Tag keys and values go through the same sanitizer; a tag empty after it is
//!   left out. Whatever the sanitizer, a space, `=`, `\r` or `\n` becomes `_`
//!   (they would break the line or the `k=v` pair). Two keys made equal by
//!   this keep the first in key order.
//! - Timestamps: whole seconds are written as seconds; anything finer as
//!   milliseconds (truncated: OpenTSDB stores no finer), which OpenTSDB's mask
//!   rule reads back as milliseconds from 1970-02-19 on (and a Conflux
//!   timestamp, nanoseconds in an i64, ends in 2262, within OpenTSDB's 13
//!   digits). Times before 1970-01-01T00:00:01Z cannot be written
//!   (`invalid_timestamp`).
//! - Integers are written as integers; a `u64` above `i64::MAX` as a float.
//!   Floats always carry a `.` or an exponent (`1.0`, `1e21`), so that they
//!   read back as floats.
//! - A point without tags is written without tags; OpenTSDB refuses it
//!   (`Need at least one tag`), Conflux and vmagent accept it.

use std::fmt::Write as _;
use std::io::Write as _;

use conflux_core::MetricRef;
use conflux_core::naming::{NameBuf, Naming, Sanitizer, SingleValue, Skip, Target, sanitize};

use super::rules::opentsdb_ascii;

/// What [`Encoder`] wrote and skipped for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Encoded {
    /// Points written.
    pub written: usize,
    /// String fields skipped.
    pub string_value: usize,
    /// Bool fields skipped (`bools = "skip"`).
    pub bool_value: usize,
    /// NaN or infinite floats skipped.
    pub non_finite_value: usize,
    /// Fields whose series name sanitized to nothing.
    pub invalid_name: usize,
    /// Points whose timestamp OpenTSDB cannot hold.
    pub invalid_timestamp: usize,
}

impl Encoded {
    /// Every skipped count with its reason label
    /// (`conflux_sink_skipped_points_total{reason}`).
    pub fn skipped(&self) -> [(&'static str, usize); 5] {
        [
            ("string_value", self.string_value),
            ("bool_value", self.bool_value),
            ("non_finite_value", self.non_finite_value),
            ("invalid_name", self.invalid_name),
            ("invalid_timestamp", self.invalid_timestamp),
        ]
    }
}

/// Encodes metrics for OpenTSDB, reusing its buffers from metric to metric.
#[derive(Debug)]
pub struct Encoder {
    naming: Naming,
    name: NameBuf,
    /// Sanitized tags of the current metric, formatted for the shape.
    tags: String,
    scratch: String,
    /// Key ranges in `tags` already written, to drop keys made equal.
    keys: Vec<(usize, usize)>,
    /// No JSON object written yet since [`Encoder::json_begin`].
    json_first: bool,
}

impl Default for Encoder {
    /// The `opentsdb` target's naming defaults.
    fn default() -> Self {
        Encoder::new(Naming::for_target(Target::Opentsdb))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Telnet,
    Json,
}

impl Encoder {
    /// An encoder with `naming` (a sink's naming settings).
    pub fn new(naming: Naming) -> Encoder {
        Encoder {
            naming,
            name: NameBuf::default(),
            tags: String::new(),
            scratch: String::new(),
            keys: Vec::new(),
            json_first: true,
        }
    }

    /// Append one `put <name> <timestamp> <value> <k=v>…\n` line per field of `m`.
    pub fn put_lines(&mut self, m: &MetricRef<'_>, out: &mut Vec<u8>) -> Encoded {
        self.encode(m, Shape::Telnet, out)
    }

    /// Start an `/api/put` array (`[`).
    pub fn json_begin(&mut self, out: &mut Vec<u8>) {
        out.push(b'[');
        self.json_first = true;
    }

    /// Append one `{"metric":…,"timestamp":…,"value":…,"tags":{…}}` object
    /// per field of `m` to the array started by [`Encoder::json_begin`].
    pub fn json_points(&mut self, m: &MetricRef<'_>, out: &mut Vec<u8>) -> Encoded {
        self.encode(m, Shape::Json, out)
    }

    /// Close the array (`]`).
    pub fn json_end(&mut self, out: &mut Vec<u8>) {
        out.push(b']');
    }

    fn encode(&mut self, m: &MetricRef<'_>, shape: Shape, out: &mut Vec<u8>) -> Encoded {
        let mut done = Encoded::default();
        let Some(ts) = timestamp(m.timestamp()) else {
            done.invalid_timestamp = m.fields().len();
            return done;
        };
        // Tags are the same for every field: sanitize and format them once.
        self.write_tags(m, shape);
        let Encoder {
            naming,
            name: name_buf,
            tags,
            scratch,
            json_first,
            ..
        } = self;
        let json = shape == Shape::Json;
        for (field, value) in m.fields() {
            let v = match naming.value(value) {
                Ok(SingleValue::Str(_)) | Err(Skip::String) => {
                    done.string_value += 1;
                    continue;
                }
                Err(Skip::Bool) => {
                    done.bool_value += 1;
                    continue;
                }
                Err(Skip::NonFinite) => {
                    done.non_finite_value += 1;
                    continue;
                }
                Ok(v) => v,
            };
            let Some(name) = naming.series_name(m.name(), field, name_buf) else {
                done.invalid_name += 1;
                continue;
            };
            scratch.clear();
            push_guarded(name, false, json, scratch);
            if json {
                if !*json_first {
                    out.push(b',');
                }
                *json_first = false;
                out.extend_from_slice(b"{\"metric\":\"");
                out.extend_from_slice(scratch.as_bytes());
                out.extend_from_slice(b"\",\"timestamp\":");
                ts.write(out);
                out.extend_from_slice(b",\"value\":");
                write_value(v, out);
                out.extend_from_slice(b",\"tags\":{");
                out.extend_from_slice(tags.as_bytes());
                out.extend_from_slice(b"}}");
            } else {
                out.extend_from_slice(b"put ");
                out.extend_from_slice(scratch.as_bytes());
                out.push(b' ');
                ts.write(out);
                out.push(b' ');
                write_value(v, out);
                out.extend_from_slice(tags.as_bytes());
                out.push(b'\n');
            }
            done.written += 1;
        }
        done
    }

    /// Format the tags of `m` into `self.tags`: ` k=v` each (telnet) or
    /// `"k":"v"` joined by `,` (JSON).
    fn write_tags(&mut self, m: &MetricRef<'_>, shape: Shape) {
        let json = shape == Shape::Json;
        let Encoder {
            naming,
            tags,
            scratch,
            keys,
            ..
        } = self;
        tags.clear();
        keys.clear();
        for (k, v) in m.tags() {
            let start = tags.len();
            tags.push_str(match shape {
                Shape::Telnet => " ",
                Shape::Json if start == 0 => "\"",
                Shape::Json => ",\"",
            });
            let key_start = tags.len();
            push_tag_part(naming.sanitizer, k, json, scratch, tags);
            let key_end = tags.len();
            let repeat = keys
                .iter()
                .any(|&(s, e)| tags.get(s..e) == tags.get(key_start..key_end));
            if key_end == key_start || repeat {
                tags.truncate(start);
                continue;
            }
            tags.push_str(if json { "\":\"" } else { "=" });
            let value_start = tags.len();
            push_tag_part(naming.sanitizer, v, json, scratch, tags);
            if tags.len() == value_start {
                tags.truncate(start);
                continue;
            }
            if json {
                tags.push('"');
            }
            keys.push((key_start, key_end));
        }
    }
}

/// Append a tag key or value, sanitized and guarded, to `out`.
#[inline]
fn push_tag_part(
    sanitizer: Sanitizer,
    s: &str,
    json: bool,
    scratch: &mut String,
    out: &mut String,
) {
    // Most tags are plain ASCII that the opentsdb sanitizer (and none) keeps
    // as it is and that needs no guard or escape: copy them straight (the
    // character loops were half the encoding time).
    if matches!(sanitizer, Sanitizer::Opentsdb | Sanitizer::None) && opentsdb_ascii(s.as_bytes()) {
        out.push_str(s);
        return;
    }
    scratch.clear();
    sanitize(sanitizer, s, scratch);
    push_guarded(scratch, true, json, out);
}

/// Append `s` with what would break a telnet line (space, `\r`, `\n`) and,
/// in tags, a `k=v` pair (`=`) replaced by `_`; escaped for a JSON string
/// when `json`.
fn push_guarded(s: &str, tag: bool, json: bool, out: &mut String) {
    let bad = |c: char| matches!(c, ' ' | '\r' | '\n') || (tag && c == '=');
    let escape = |c: char| json && (c == '"' || c == '\\' || c < ' ');
    // Every character either closure names is ASCII: a byte pass finds them.
    let special = s.bytes().fold(false, |any, b| {
        any | (b < b' ') | (b == b' ') | (tag & (b == b'=')) | (json & ((b == b'"') | (b == b'\\')))
    });
    if !special {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if bad(c) {
            out.push('_');
        } else if escape(c) {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                c => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
            }
        } else {
            out.push(c);
        }
    }
}

/// A timestamp as written: seconds or milliseconds.
#[derive(Clone, Copy)]
struct Written(i64);

impl Written {
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(itoa::Buffer::new().format(self.0).as_bytes());
    }
}

/// Seconds when whole and read back as seconds under OpenTSDB's mask rule,
/// else milliseconds when they read back as milliseconds; `None` when neither.
fn timestamp(ns: i64) -> Option<Written> {
    const NS_PER_S: i64 = 1_000_000_000;
    const NS_PER_MS: i64 = 1_000_000;
    const MAX_32: i64 = 0xFFFF_FFFF;
    const MAX_MS: i64 = 9_999_999_999_999;
    if ns <= 0 {
        return None;
    }
    let (secs, ms) = (ns / NS_PER_S, ns / NS_PER_MS);
    if ns % NS_PER_S == 0 && secs <= MAX_32 {
        Some(Written(secs))
    } else if ms > MAX_32 && ms <= MAX_MS {
        Some(Written(ms))
    } else if (1..=MAX_32).contains(&secs) {
        // Early 1970 with a fraction: milliseconds would read as seconds.
        Some(Written(secs))
    } else {
        None
    }
}

fn write_value(v: SingleValue<'_>, out: &mut Vec<u8>) {
    match v {
        SingleValue::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        SingleValue::UInt(u) => match i64::try_from(u) {
            Ok(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
            // OpenTSDB's integers are Java longs: past them, a float.
            Err(_) => {
                let _ = write!(out, "{:?}", u as f64);
            }
        },
        // Debug always has a `.` or an exponent, and is the shortest
        // decimal that reads back to the same float.
        SingleValue::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        // Skipped by the caller; written as nothing would break the line.
        SingleValue::Str(_) => out.push(b'0'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conflux_core::naming::{NamingOptions, StringPolicy};
    use conflux_core::{Batch, Metric};

    fn enc(m: Metric) -> (String, Encoded) {
        let mut b = Batch::new();
        b.push(&m).unwrap();
        let mut out = Vec::new();
        let done = Encoder::default().put_lines(&b.get(0), &mut out);
        (String::from_utf8(out).unwrap(), done)
    }

    fn json(ms: &[Metric]) -> String {
        let mut b = Batch::new();
        for m in ms {
            b.push(m).unwrap();
        }
        let mut e = Encoder::default();
        let mut out = Vec::new();
        e.json_begin(&mut out);
        for m in b.iter() {
            e.json_points(&m, &mut out);
        }
        e.json_end(&mut out);
        String::from_utf8(out).unwrap()
    }

    const T: i64 = 1_700_000_000_000_000_000;

    #[test]
    fn writes_a_put_line_per_field_with_the_naming_policy() {
        let m = Metric::new("cpu")
            .tag("host", "a")
            .tag("cpu", "cpu0")
            .field("usage_idle", 99.5)
            .field("n", 3i64)
            .at(T);
        let (s, done) = enc(m);
        assert_eq!(
            s,
            "put cpu_usage_idle 1700000000 99.5 cpu=cpu0 host=a\n\
             put cpu_n 1700000000 3 cpu=cpu0 host=a\n"
        );
        assert_eq!(done.written, 2);
    }

    #[test]
    fn a_value_field_keeps_the_bare_name() {
        let (s, _) = enc(Metric::new("sys.load")
            .tag("h", "x")
            .field("value", 1.0)
            .at(T));
        assert_eq!(s, "put sys.load 1700000000 1.0 h=x\n");
    }

    #[test]
    fn floats_keep_a_dot_or_exponent_and_big_uints_become_floats() {
        let m = Metric::new("m")
            .field("a", 1e21)
            .field("b", -0.0)
            .field("c", u64::MAX)
            .field("d", 1e-7)
            .field("e", true)
            .at(T);
        let (s, _) = enc(m);
        assert_eq!(
            s,
            "put m_a 1700000000 1e21\nput m_b 1700000000 -0.0\n\
             put m_c 1700000000 1.8446744073709552e19\nput m_d 1700000000 1e-7\n\
             put m_e 1700000000 1\n"
        );
    }

    #[test]
    fn skips_what_opentsdb_cannot_hold() {
        let m = Metric::new("m")
            .field("s", "text")
            .field("n", f64::NAN)
            .field("i", f64::NEG_INFINITY)
            .field("ok", 1i64)
            .at(T);
        let (s, done) = enc(m);
        assert_eq!(s, "put m_ok 1700000000 1\n");
        assert_eq!(
            done,
            Encoded {
                written: 1,
                string_value: 1,
                non_finite_value: 2,
                ..Encoded::default()
            }
        );
        let (s, done) = enc(Metric::new("m").field("v", 1i64).at(0));
        assert_eq!((s.as_str(), done.invalid_timestamp), ("", 1));
        let (s, done) = enc(Metric::new("@@@").field("value", 1i64).at(T));
        assert_eq!(s, "put --- 1700000000 1\n");
        assert_eq!(done.written, 1);
    }

    #[test]
    fn sanitizes_tags_and_drops_empty_or_repeated_ones() {
        let m = Metric::new("m")
            .tag("a b", "x=y")
            .tag("a_b", "second")
            .tag("e", "")
            .tag("z", "ok")
            .field("value", 1i64)
            .at(T);
        let (s, _) = enc(m);
        assert_eq!(s, "put m 1700000000 1 a_b=x_y z=ok\n");
    }

    #[test]
    fn no_sanitizer_still_guards_the_line() {
        let opts = NamingOptions {
            sanitizer: Some(conflux_core::naming::Sanitizer::None),
            strings: Some(StringPolicy::Keep),
            ..NamingOptions::default()
        };
        let mut e = Encoder::new(Naming::with_options(Target::Opentsdb, &opts));
        let mut b = Batch::new();
        b.push(
            &Metric::new("a b")
                .tag("k=", "v w")
                .field("value", 1i64)
                .field("s", "x")
                .at(T),
        )
        .unwrap();
        let mut out = Vec::new();
        let done = e.put_lines(&b.get(0), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "put a_b 1700000000 1 k_=v_w\n"
        );
        assert_eq!(done.string_value, 1);
    }

    #[test]
    fn timestamps_are_seconds_when_whole_else_milliseconds() {
        const S: i64 = 1_000_000_000;
        let at = |ns| enc(Metric::new("m").field("value", 1i64).at(ns)).0;
        assert_eq!(at(T), "put m 1700000000 1\n");
        assert_eq!(at(T + 123_456_789), "put m 1700000000123 1\n");
        // The last second the mask rule reads as seconds, and the first after.
        assert_eq!(at(4_294_967_295_000_000_000), "put m 4294967295 1\n");
        assert_eq!(at(4_294_967_296_000_000_000), "put m 4294967296000 1\n");
        // The last nanosecond an i64 holds (2262) is still 13 digits of ms.
        assert_eq!(at(i64::MAX), "put m 9223372036854 1\n");
        assert_eq!(at(1), "");
        assert_eq!(at(999_999_999), "");
        assert_eq!(at(-S), "");
        assert_eq!(at(1_500_000_000), "put m 1 1\n");
    }

    #[test]
    fn writes_api_put_json() {
        let s = json(&[
            Metric::new("m").tag("h", "a\"b").field("value", 1.5).at(T),
            Metric::new("n")
                .field("x", -2i64)
                .field("y", 3i64)
                .at(T + 1_000_000),
        ]);
        assert_eq!(
            s,
            r#"[{"metric":"m","timestamp":1700000000,"value":1.5,"tags":{"h":"a_b"}},{"metric":"n_x","timestamp":1700000000001,"value":-2,"tags":{}},{"metric":"n_y","timestamp":1700000000001,"value":3,"tags":{}}]"#
        );
        assert_eq!(json(&[]), "[]");
    }
}
