//! Telegraf's JSON serializer (`data_format = "json"`), non-batch form: one
//! object per metric and line, byte for byte as Telegraf writes it:
//!
//! ```text
//! {"fields":{"usage_idle":91.5},"name":"cpu","tags":{"cpu":"cpu0"},"timestamp":1455320660}
//! ```
//!
//! Telegraf builds a Go map and hands it to `encoding/json`, so every object
//! has its keys sorted byte-wise, strings are escaped with HTML escaping on,
//! and floats take Go's shortest form (`encode.go`, `floatEncoder`). NaN and
//! infinities, which JSON cannot carry, are left out of `fields`.
//!
//! Reference: Telegraf `plugins/serializers/json/json.go`;
//! `shared/reference/ANCHORS.md` section 2.12.
//!
//! Not supported: the batch form (`{"metrics":[…]}`), `json_timestamp_format`,
//! `json_transformation` (JSONata) and `json_nested_fields_include`/`_exclude`.

use std::io::Write as _;

use conflux_core::{MetricRef, Value};

/// Telegraf's default `json_timestamp_units`: one second.
pub const DEFAULT_UNITS_NS: i64 = 1_000_000_000;

/// A field written into [`JsonEncoder::scratch`], for sorting by key.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The raw key, which is what Go sorts on.
    key_start: usize,
    /// Where the encoded `"key":value` starts (right after the raw key).
    member_start: usize,
    member_end: usize,
}

/// Telegraf's JSON serializer. Holds reusable buffers: keep one per sink task.
#[derive(Debug)]
pub struct JsonEncoder {
    units_ns: i64,
    /// Raw keys and encoded members of the current metric's fields, so that
    /// they can be written in key order without allocating per metric.
    scratch: Vec<u8>,
    entries: Vec<Entry>,
}

impl JsonEncoder {
    /// `units_ns`: `json_timestamp_units` already rounded to a power of ten
    /// (see `conflux_core::time::power_of_ten_units`). Zero or less means
    /// Telegraf's default of one second, as in Telegraf.
    pub fn new(units_ns: i64) -> JsonEncoder {
        JsonEncoder {
            units_ns: if units_ns > 0 {
                units_ns
            } else {
                DEFAULT_UNITS_NS
            },
            scratch: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// Append one `{"fields":{…},"name":…,"tags":{…},"timestamp":…}\n` line;
    /// returns (fields written, fields skipped (NaN/Inf)). A metric whose
    /// fields are all skipped still gets a line with `"fields":{}`, as in Telegraf.
    pub fn encode(&mut self, m: &MetricRef<'_>, out: &mut Vec<u8>) -> (usize, usize) {
        let mut skipped = 0;
        self.scratch.clear();
        self.entries.clear();
        for (key, value) in m.fields() {
            if let Value::Float(f) = value
                && !f.is_finite()
            {
                skipped += 1;
                continue;
            }
            let key_start = self.scratch.len();
            self.scratch.extend_from_slice(key.as_bytes());
            let member_start = self.scratch.len();
            write_str(&mut self.scratch, key);
            self.scratch.push(b':');
            write_value(&mut self.scratch, value);
            self.entries.push(Entry {
                key_start,
                member_start,
                member_end: self.scratch.len(),
            });
        }
        // Go sorts map keys byte-wise; keys are unique in a metric.
        let scratch = &self.scratch;
        self.entries.sort_unstable_by(|a, b| {
            scratch[a.key_start..a.member_start].cmp(&scratch[b.key_start..b.member_start])
        });

        out.extend_from_slice(b"{\"fields\":{");
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&scratch[e.member_start..e.member_end]);
        }
        out.extend_from_slice(b"},\"name\":");
        write_str(out, m.name());
        out.extend_from_slice(b",\"tags\":{");
        // Tags are already sorted by key, byte-wise, in a batch.
        for (i, (key, value)) in m.tags().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, key);
            out.push(b':');
            write_str(out, value);
        }
        // Go's int64 division truncates toward zero, as Rust's does.
        let _ = writeln!(out, "}},\"timestamp\":{}}}", m.timestamp() / self.units_ns);
        (self.entries.len(), skipped)
    }
}

fn write_value(out: &mut Vec<u8>, value: Value<'_>) {
    // Writing to a Vec cannot fail.
    let _ = match value {
        Value::Float(f) => {
            write_float(out, f);
            Ok(())
        }
        Value::Int(i) => write!(out, "{i}"),
        Value::UInt(u) => write!(out, "{u}"),
        Value::Bool(b) => write!(out, "{b}"),
        Value::Str(s) => {
            write_str(out, s);
            Ok(())
        }
    };
}

/// A finite float as Go's `encoding/json` writes it: shortest digits, plain
/// decimal unless the magnitude is below 1e-6 or at least 1e21, then
/// exponent form with a sign and no zero padding (`1e+21`, `1.5e-7`).
fn write_float(out: &mut Vec<u8>, f: f64) {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let start = out.len();
        // Rust's `{:e}` gives the same shortest digits as Go's 'e' format,
        // without the `+` Go puts on a positive exponent.
        let _ = write!(out, "{f:e}");
        if let Some(e) = out[start..].iter().position(|&b| b == b'e') {
            let sign = start + e + 1;
            if out.get(sign) != Some(&b'-') {
                out.insert(sign, b'+');
            }
        }
    } else {
        // `Display` never uses an exponent and gives `-0` for negative zero, as Go does.
        let _ = write!(out, "{f}");
    }
}

/// A JSON string as Go's `json.Marshal` writes it: `"` and `\` escaped,
/// `\b \f \n \r \t` short, other control characters and the HTML-sensitive
/// `<`, `>`, `&` as `\u00XX`, and U+2028/U+2029 as `\u2028`/`\u2029`
/// (they break JavaScript). DEL and every other character stay as they are.
fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            // U+2028 and U+2029 are E2 80 A8 and E2 80 A9 in UTF-8.
            0xE2 if bytes.get(i + 1) == Some(&0x80)
                && matches!(bytes.get(i + 2), Some(0xA8 | 0xA9)) =>
            {
                out.extend_from_slice(&bytes[copied..i]);
                out.extend_from_slice(b"\\u202");
                out.push(HEX[usize::from(bytes[i + 2] & 0x0F)]);
                i += 3;
                copied = i;
                continue;
            }
            b if b < 0x20 || matches!(b, b'<' | b'>' | b'&') => {
                out.extend_from_slice(&bytes[copied..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0x0F)]);
                i += 1;
                copied = i;
                continue;
            }
            _ => None,
        };
        if let Some(esc) = escape {
            out.extend_from_slice(&bytes[copied..i]);
            out.extend_from_slice(esc);
            copied = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use conflux_core::{Batch, FieldValue, Metric};
    use proptest::prelude::*;

    fn encode(units: i64, m: &Metric) -> String {
        let mut batch = Batch::new();
        batch.push(m).unwrap();
        let mut out = Vec::new();
        JsonEncoder::new(units).encode(&batch.get(0), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[track_caller]
    fn ok(m: Metric, expected: &str) {
        assert_eq!(encode(DEFAULT_UNITS_NS, &m), format!("{expected}\n"));
    }

    fn string(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    fn float(f: f64) -> String {
        let mut out = Vec::new();
        write_float(&mut out, f);
        String::from_utf8(out).unwrap()
    }

    const T: i64 = 1_455_320_660_004_257_758;

    #[test]
    fn writes_telegraf_float_int_and_string_cases() {
        let cpu = || Metric::new("cpu").tag("cpu", "cpu0").at(T);
        ok(
            cpu().field("usage_idle", 91.5),
            r#"{"fields":{"usage_idle":91.5},"name":"cpu","tags":{"cpu":"cpu0"},"timestamp":1455320660}"#,
        );
        ok(
            cpu().field("usage_idle", 90i64),
            r#"{"fields":{"usage_idle":90},"name":"cpu","tags":{"cpu":"cpu0"},"timestamp":1455320660}"#,
        );
        ok(
            cpu().field("usage_idle", "foobar"),
            r#"{"fields":{"usage_idle":"foobar"},"name":"cpu","tags":{"cpu":"cpu0"},"timestamp":1455320660}"#,
        );
        ok(
            cpu()
                .field("usage_total", 8559615i64)
                .field("usage_idle", 90i64),
            r#"{"fields":{"usage_idle":90,"usage_total":8559615},"name":"cpu","tags":{"cpu":"cpu0"},"timestamp":1455320660}"#,
        );
    }

    #[test]
    fn writes_telegraf_escapes_case() {
        let m = Metric::new("My CPU")
            .tag("cpu tag", "cpu0")
            .field("U,age=Idle", 90i64)
            .at(T);
        ok(
            m,
            r#"{"fields":{"U,age=Idle":90},"name":"My CPU","tags":{"cpu tag":"cpu0"},"timestamp":1455320660}"#,
        );
    }

    #[test]
    fn timestamp_units_follow_telegraf() {
        // TestSerialize_TimestampUnits: 42.0 at 1525478795.123456789.
        let m = Metric::new("cpu")
            .field("value", 42.0)
            .at(1_525_478_795_123_456_789);
        let case = |units: i64, ts: &str| {
            assert_eq!(
                encode(units, &m),
                format!(
                    "{{\"fields\":{{\"value\":42}},\"name\":\"cpu\",\"tags\":{{}},\"timestamp\":{ts}}}\n"
                )
            );
        };
        case(0, "1525478795");
        case(1, "1525478795123456789");
        case(1_000_000, "1525478795123");
        case(10_000_000, "152547879512");
    }

    #[test]
    fn skips_non_finite_fields() {
        let m = Metric::new("cpu")
            .field("inf", f64::INFINITY)
            .field("time_idle", 42i64);
        ok(
            m,
            r#"{"fields":{"time_idle":42},"name":"cpu","tags":{},"timestamp":0}"#,
        );
        let all = Metric::new("cpu")
            .field("inf", f64::INFINITY)
            .field("nan", f64::NAN);
        ok(
            all.clone(),
            r#"{"fields":{},"name":"cpu","tags":{},"timestamp":0}"#,
        );
        let mut batch = Batch::new();
        batch.push(&all).unwrap();
        assert_eq!(
            JsonEncoder::new(1).encode(&batch.get(0), &mut Vec::new()),
            (0, 2)
        );
    }

    #[test]
    fn sorts_field_and_tag_keys_bytewise() {
        let m = Metric::new("m")
            .tag("b", "1")
            .tag("B", "2")
            .tag("a", "3")
            .field("z", 1i64)
            .field("é", 2i64)
            .field("Z", 3i64)
            .field("a_b", 4i64)
            .field("a", 5i64);
        ok(
            m,
            r#"{"fields":{"Z":3,"a":5,"a_b":4,"z":1,"é":2},"name":"m","tags":{"B":"2","a":"3","b":"1"},"timestamp":0}"#,
        );
    }

    #[test]
    fn escapes_strings_as_go_does() {
        assert_eq!(string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            string("<a href=\"x\">&</a>"),
            r#""\u003ca href=\"x\"\u003e\u0026\u003c/a\u003e""#
        );
        assert_eq!(string("\u{8}\u{c}\n\r\t"), r#""\b\f\n\r\t""#);
        assert_eq!(
            string("\u{0}\u{1}\u{1f}\u{b}"),
            r#""\u0000\u0001\u001f\u000b""#
        );
        assert_eq!(string("x\u{2028}y\u{2029}z"), r#""x\u2028y\u2029z""#);
        // DEL, other separators and non-ASCII stay raw.
        assert_eq!(
            string("\u{7f}\u{2027}\u{202a}é☢😀/'"),
            "\"\u{7f}\u{2027}\u{202a}é☢😀/'\""
        );
        assert_eq!(string(""), r#""""#);
    }

    #[test]
    fn floats_as_go_encoding_json() {
        assert_eq!(float(42.0), "42");
        assert_eq!(float(-0.0), "-0");
        assert_eq!(float(0.0), "0");
        assert_eq!(float(91.5), "91.5");
        assert_eq!(float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(float(1e-6), "0.000001");
        assert_eq!(float(9.99e-7), "9.99e-7");
        assert_eq!(float(1e-7), "1e-7");
        assert_eq!(float(-1.5e-7), "-1.5e-7");
        assert_eq!(float(1e-10), "1e-10");
        assert_eq!(float(1e-100), "1e-100");
        assert_eq!(float(5e-324), "5e-324");
        assert_eq!(float(1e20), "100000000000000000000");
        assert_eq!(float(123456789012345680000.0), "123456789012345680000");
        assert_eq!(float(1e21), "1e+21");
        assert_eq!(float(-1.5e21), "-1.5e+21");
        assert_eq!(float(f64::MAX), "1.7976931348623157e+308");
        assert_eq!(float(f64::MIN_POSITIVE), "2.2250738585072014e-308");
    }

    #[test]
    fn every_value_type() {
        let m = Metric::new("all")
            .tag("host", "h")
            .field("f", 1.5)
            .field("i", i64::MIN)
            .field("u", u64::MAX)
            .field("t", true)
            .field("b", false)
            .field("s", "x")
            .at(-1_500_000_000);
        ok(
            m,
            r#"{"fields":{"b":false,"f":1.5,"i":-9223372036854775808,"s":"x","t":true,"u":18446744073709551615},"name":"all","tags":{"host":"h"},"timestamp":-1}"#,
        );
    }

    #[test]
    fn reuses_buffers_across_metrics() {
        let mut batch = Batch::new();
        batch
            .push(&Metric::new("a").field("y", 1i64).field("x", 2i64))
            .unwrap();
        batch.push(&Metric::new("b").field("k", "v")).unwrap();
        let mut enc = JsonEncoder::new(1);
        let mut out = Vec::new();
        for m in batch.iter() {
            enc.encode(&m, &mut out);
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"fields\":{\"x\":2,\"y\":1},\"name\":\"a\",\"tags\":{},\"timestamp\":0}\n\
             {\"fields\":{\"k\":\"v\"},\"name\":\"b\",\"tags\":{},\"timestamp\":0}\n"
        );
    }

    /// Compare with `tests/fixtures/json/<case>.expected`; `UPDATE_GOLDEN=1`
    /// rewrites the file instead (review the diff).
    #[track_caller]
    fn golden(case: &str, units: i64, metrics: &[Metric]) {
        let mut batch = Batch::new();
        for m in metrics {
            batch.push(m).unwrap();
        }
        let mut enc = JsonEncoder::new(units);
        let mut out = Vec::new();
        for m in batch.iter() {
            enc.encode(&m, &mut out);
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/json")
            .join(format!("{case}.expected"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &out).unwrap();
            return;
        }
        let expected = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
                path.display()
            )
        });
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expected),
            "{case}"
        );
    }

    /// Telegraf's documentation metric, timestamp with every digit set.
    fn doc_metric() -> Metric {
        Metric::new("cpu")
            .tag("cpu", "cpu-total")
            .tag("dc", "us-east-1")
            .tag("host", "tars")
            .field("usage_user", 0.89)
            .field("usage_idle", 98.09)
            .at(1_455_320_660_004_257_758)
    }

    #[test]
    fn golden_timestamp_units() {
        use conflux_core::time::{parse_go_duration, power_of_ten_units};
        for (case, units) in [
            ("units_1ns", "1ns"),
            ("units_1us", "1us"),
            ("units_1ms", "1ms"),
            ("units_10ms", "10ms"),
            ("units_15ms", "15ms"),
            ("units_1s", "1s"),
            ("units_1m", "1m"),
        ] {
            let units = power_of_ten_units(parse_go_duration(units).unwrap());
            golden(case, units, &[doc_metric()]);
        }
    }

    #[test]
    fn golden_escaping() {
        let m = Metric::new("web <a&b> \"q\" \\ é")
            .tag("path", "/a/b?c=1&d=<2>")
            .tag("ctl", "\u{0}\u{1}\u{8}\u{c}\n\r\t\u{1b}\u{1f}\u{7f}")
            .tag("js", "a\u{2028}b\u{2029}c")
            .tag("uni", "μ☢😀\u{fffd}")
            .field(
                "msg",
                "line1\nline2\t\"quoted\" <script>alert(1)</script> & more",
            )
            .field("k\"ey", 1i64)
            .field("<", 2i64)
            .at(1_700_000_000_000_000_000);
        golden("escaping", DEFAULT_UNITS_NS, &[m]);
    }

    #[test]
    fn golden_value_types() {
        let m = Metric::new("types")
            .tag("host", "h1")
            .field("float", 91.5)
            .field("float_int", 42.0)
            .field("float_neg_zero", -0.0)
            .field("float_tiny", 1.5e-7)
            .field("float_small", 0.000001)
            .field("float_big", 1e21)
            .field("float_below_big", 1e20)
            .field("float_max", f64::MAX)
            .field("float_nan", f64::NAN)
            .field("float_inf", f64::NEG_INFINITY)
            .field("int", -42i64)
            .field("int_min", i64::MIN)
            .field("uint", 42u64)
            .field("uint_max", u64::MAX)
            .field("bool_true", true)
            .field("bool_false", false)
            .field("string", "hello")
            .field("string_empty", "")
            .at(-1_500_000_000);
        let only_nan = Metric::new("empty").field("nan", f64::NAN).at(0);
        golden("value_types", DEFAULT_UNITS_NS, &[m, only_nan]);
    }

    fn value() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            any::<f64>().prop_map(FieldValue::Float),
            any::<i64>().prop_map(FieldValue::Int),
            any::<u64>().prop_map(FieldValue::UInt),
            any::<bool>().prop_map(FieldValue::Bool),
            any::<String>().prop_map(FieldValue::Str),
        ]
    }

    proptest! {
        /// Every line is valid JSON that reads back to the metric (NaN and
        /// infinities left out), and floats round-trip exactly.
        #[test]
        fn output_parses_back(
            name in any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
            tags in prop::collection::btree_map(".{1,6}", any::<String>(), 0..4),
            fields in prop::collection::btree_map(".{1,6}", value(), 1..6),
            ts in any::<i64>(),
            units_exp in 0u32..10,
        ) {
            let units = 10i64.pow(units_exp);
            let mut m = Metric::new(name.clone()).at(ts);
            m.tags = tags.clone().into_iter().collect();
            // Reverse so that the encoder has to sort.
            m.fields = fields.clone().into_iter().rev().collect();
            let line = encode(units, &m);
            prop_assert!(line.ends_with('\n'));
            prop_assert_eq!(line.matches('\n').count(), 1);
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            prop_assert_eq!(v["name"].as_str(), Some(name.as_str()));
            prop_assert_eq!(v["timestamp"].as_i64(), Some(ts / units));
            let got_tags = v["tags"].as_object().unwrap();
            prop_assert_eq!(got_tags.len(), tags.len());
            for (k, val) in &tags {
                prop_assert_eq!(got_tags[k].as_str(), Some(val.as_str()));
            }
            let got = v["fields"].as_object().unwrap();
            let kept = fields.iter().filter(|(_, f)| !matches!(f, FieldValue::Float(x) if !x.is_finite()));
            prop_assert_eq!(got.len(), kept.clone().count());
            for (k, f) in kept {
                let g = &got[k];
                match f {
                    FieldValue::Float(x) => prop_assert_eq!(g.as_f64(), Some(*x)),
                    FieldValue::Int(x) => prop_assert_eq!(g.as_i64(), Some(*x)),
                    FieldValue::UInt(x) => prop_assert_eq!(g.as_u64(), Some(*x)),
                    FieldValue::Bool(x) => prop_assert_eq!(g.as_bool(), Some(*x)),
                    FieldValue::Str(x) => prop_assert_eq!(g.as_str(), Some(x.as_str())),
                }
            }
            // Keys in byte order, as Go writes them.
            let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
            let mut pos = 0;
            for k in keys {
                if got.contains_key(k) {
                    let mut quoted = Vec::new();
                    write_str(&mut quoted, k);
                    let at = line[pos..].find(std::str::from_utf8(&quoted).unwrap()).map(|p| p + pos);
                    prop_assert!(at.is_some(), "{} out of order in {}", k, line);
                    pos = at.unwrap_or(pos);
                }
            }
        }

        /// Floats: shortest digits in the expected form, and parse back exactly.
        #[test]
        fn floats_round_trip(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let s = float(f);
            prop_assert_eq!(s.parse::<f64>().unwrap().to_bits(), f.to_bits());
            let abs = f.abs();
            let exp_form = abs != 0.0 && !(1e-6..1e21).contains(&abs);
            prop_assert_eq!(s.contains('e'), exp_form, "{}", s);
            if exp_form {
                prop_assert!(s.contains("e-") || s.contains("e+"), "{}", s);
                prop_assert!(!s.contains("e-0") && !s.contains("e+0"), "{}", s);
            }
        }
    }
}
