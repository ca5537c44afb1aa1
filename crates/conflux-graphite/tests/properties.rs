//! Property tests: `parse(encode(m)) == m` in tag-support mode, pickles built
//! by a model pickler read back exactly, and arbitrary bytes never panic.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use conflux_core::{Batch, Metric};
use conflux_graphite::codec::encode::{Serializer, SerializerConfig};
use conflux_graphite::codec::{ErrorKind, LineError, ParseOptions, parse, parse_pickle};
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000_123_456_789;
const S: i64 = 1_000_000_000;

/// A path node the strict sanitizer keeps as it is.
fn node() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_:üé-][a-zA-Z0-9_:=üé-]{0,8}"
}

fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(node(), 1..4).prop_map(|nodes| nodes.join("."))
}

fn tag_key() -> impl Strategy<Value = String> {
    // Not `name` (renamed `_name` by the encoder, dropped by carbon's rules).
    "[a-z_][a-z0-9_:-]{0,6}".prop_filter("name is reserved", |k| k != "name")
}

fn tag_value() -> impl Strategy<Value = String> {
    // Not starting with `~` (carbon refuses it); no `=` (the strict
    // sanitizer keeps it, but then `k=a=b` sorts apart from the key order).
    "[a-zA-Z0-9_:.üé-]{1,8}".prop_filter("no double dots", |v| !v.contains(".."))
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
        (-1000.0f64..1000.0),
    ]
}

prop_compose! {
    /// A metric the tag-support serializer writes exactly: field `value`,
    /// whole seconds, names and tags the sanitizer leaves alone.
    fn metric()(
        name in name(),
        tags in proptest::collection::btree_map(tag_key(), tag_value(), 0..5),
        value in value(),
        // Whole seconds from 1970 to 2100; -1 would read back as "now".
        seconds in 0i64..4_102_444_800,
    ) -> Metric {
        let mut m = Metric::new(name);
        for (k, v) in tags {
            m = m.tag(k, v);
        }
        m.field("value", value).at(seconds * S)
    }
}

fn encode_tagged(batch: &Batch) -> Vec<u8> {
    let cfg = SerializerConfig {
        tag_support: true,
        ..SerializerConfig::default()
    };
    let mut s = Serializer::new(&cfg).unwrap();
    let mut out = Vec::new();
    for m in batch.iter() {
        let (written, skipped) = s.encode(&m, &mut out);
        assert_eq!((written, skipped), (1, 0));
    }
    out
}

/// A minimal protocol 2 pickler for `[(path, (ts, value))]`, as CPython writes it.
fn pickle_items(items: &[(String, PickleNum, PickleNum)]) -> Vec<u8> {
    fn num(out: &mut Vec<u8>, n: &PickleNum) {
        match n {
            PickleNum::Int(i) => {
                if let Ok(small) = i32::try_from(*i) {
                    out.push(b'J');
                    out.extend_from_slice(&small.to_le_bytes());
                } else {
                    out.push(0x8a);
                    out.push(8);
                    out.extend_from_slice(&i.to_le_bytes());
                }
            }
            PickleNum::Float(f) => {
                out.push(b'G');
                out.extend_from_slice(&f.to_be_bytes());
            }
        }
    }
    let mut out = vec![0x80, 2, b']', b'('];
    for (path, ts, v) in items {
        out.push(b'X');
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        num(&mut out, ts);
        num(&mut out, v);
        out.extend_from_slice(&[0x86, 0x86]);
    }
    out.extend_from_slice(b"e.");
    out
}

#[derive(Debug, Clone)]
enum PickleNum {
    Int(i64),
    Float(f64),
}

impl PickleNum {
    fn value(&self) -> f64 {
        match self {
            PickleNum::Int(i) => *i as f64,
            PickleNum::Float(f) => *f,
        }
    }
}

fn check_errors(errors: &[LineError]) -> Result<(), TestCaseError> {
    let mut last = 0;
    for e in errors {
        prop_assert!(e.line > last, "lines out of order: {errors:?}");
        last = e.line;
        prop_assert_ne!(e.kind, ErrorKind::BatchTooLarge);
        prop_assert!(
            e.message.starts_with("unable to parse '") || e.message.starts_with("item "),
            "{}",
            e.message
        );
        // At most 64 bytes of input are quoted (invalid bytes show as U+FFFD).
        let quoted = e
            .message
            .strip_prefix("unable to parse '")
            .and_then(|r| r.rsplit_once("': "))
            .map_or(0, |(q, _)| q.chars().count());
        prop_assert!(quoted <= 64, "{}", e.message);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_of_tag_support_encoding_gives_the_metrics_back(
        metrics in proptest::collection::vec(metric(), 1..20)
    ) {
        let mut batch = Batch::new();
        for m in &metrics {
            batch.push(m).unwrap();
        }
        let body = encode_tagged(&batch);
        let mut back = Batch::new();
        let mut errors = Vec::new();
        parse(&body, &ParseOptions::new(NOW), &mut back, &mut errors);
        prop_assert!(errors.is_empty(), "{errors:?} in {:?}", String::from_utf8_lossy(&body));
        prop_assert_eq!(back, batch, "{}", String::from_utf8_lossy(&body));
    }

    #[test]
    fn pickled_items_read_back_exactly(
        items in proptest::collection::vec(
            (
                name(),
                prop_oneof![
                    (0i64..4_102_444_800).prop_map(PickleNum::Int),
                    (0u32..4_000_000_000).prop_map(|s| PickleNum::Float(f64::from(s) + 0.5)),
                ],
                prop_oneof![
                    any::<i64>().prop_map(PickleNum::Int),
                    value().prop_map(PickleNum::Float),
                ],
            ),
            0..30,
        )
    ) {
        let frame = pickle_items(&items);
        let mut batch = Batch::new();
        let mut errors = Vec::new();
        let n = parse_pickle(&frame, &ParseOptions::new(NOW), &mut batch, &mut errors).unwrap();
        prop_assert!(errors.is_empty(), "{errors:?}");
        prop_assert_eq!(n, items.len());
        for (m, (path, ts, v)) in batch.iter().zip(&items) {
            let ts_ns = match ts {
                PickleNum::Int(s) => s * S,
                // Drawn as whole seconds plus one half.
                PickleNum::Float(f) => (f.trunc() as i64) * S + S / 2,
            };
            prop_assert_eq!(m.to_metric(), Metric::new(path.clone()).field("value", v.value()).at(ts_ns));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut batch = Batch::new();
        let mut errors = Vec::new();
        let n = parse(&input, &ParseOptions::new(NOW), &mut batch, &mut errors);
        prop_assert_eq!(n, batch.len());
        check_errors(&errors)?;
    }

    #[test]
    fn graphite_shaped_lines_never_panic(
        lines in proptest::collection::vec(
            "[a-z.;=~{}\"\\\\, \t!^]{0,24}( [-+0-9.eNnaif]{0,8}( [-+0-9.eN]{0,12})?)?",
            0..20,
        )
    ) {
        let input = lines.join("\n");
        let mut batch = Batch::new();
        let mut errors = Vec::new();
        let n = parse(input.as_bytes(), &ParseOptions::new(NOW), &mut batch, &mut errors);
        prop_assert_eq!(n, batch.len());
        check_errors(&errors)?;
        // Every line is either a metric, an error or blank.
        let blank = lines.iter().filter(|l| l.trim_matches([' ', '\t']).is_empty()).count();
        prop_assert_eq!(n + errors.len() + blank, lines.len());
    }

    #[test]
    fn arbitrary_pickles_never_panic(input in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut batch = Batch::new();
        let mut errors = Vec::new();
        let r = parse_pickle(&input, &ParseOptions::new(NOW), &mut batch, &mut errors);
        if let Ok(n) = r {
            prop_assert_eq!(n, batch.len());
        } else {
            prop_assert!(batch.is_empty());
        }
        check_errors(&errors)?;
    }

    #[test]
    fn pickle_shaped_bytes_never_panic(
        ops in proptest::collection::vec(
            prop_oneof![
                Just(b"(".to_vec()), Just(b"]".to_vec()), Just(b")".to_vec()),
                Just(b"e".to_vec()), Just(b"a".to_vec()), Just(b"t".to_vec()),
                Just(vec![0x86]), Just(vec![0x85]), Just(b"2".to_vec()), Just(b"0".to_vec()),
                Just(b"1".to_vec()), Just(b"N".to_vec()), Just(b"q\x00".to_vec()),
                Just(b"h\x00".to_vec()), Just(b"K\x05".to_vec()), Just(b"X\x01\x00\x00\x00a".to_vec()),
                Just(b"G?\xf0\x00\x00\x00\x00\x00\x00".to_vec()), Just(b"}".to_vec()),
                Just(b"s".to_vec()), Just(b"u".to_vec()), Just(vec![0x94]), Just(b"l".to_vec()),
            ],
            0..60,
        )
    ) {
        let mut frame = vec![0x80, 2];
        for op in ops {
            frame.extend_from_slice(&op);
        }
        frame.push(b'.');
        let mut batch = Batch::new();
        let mut errors = Vec::new();
        if let Ok(n) = parse_pickle(&frame, &ParseOptions::new(NOW), &mut batch, &mut errors) {
            prop_assert_eq!(n, batch.len());
        }
        check_errors(&errors)?;
    }
}
