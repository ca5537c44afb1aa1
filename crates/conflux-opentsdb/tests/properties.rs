//! Property tests: `parse(encode(m)) == m` for telnet lines and `/api/put`
//! JSON over the set OpenTSDB can carry, and arbitrary bytes never panic and
//! give well-formed errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use conflux_core::{Batch, FieldValue, Metric, MetricRef, Value};
use conflux_opentsdb::codec::{Encoder, ErrorKind, Event, ParseOptions, parse, parse_put};
use proptest::prelude::*;

/// Characters OpenTSDB allows, weighted towards the ASCII ones.
fn name_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => proptest::char::range('a', 'z'),
        2 => proptest::char::range('A', 'Z'),
        2 => proptest::char::range('0', '9'),
        3 => prop::sample::select(vec!['-', '_', '.', '/']),
        1 => prop::sample::select(vec!['é', 'ß', '数', 'Ж', 'ǅ', 'ʰ']),
    ]
}

fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(name_char(), 1..12).prop_map(String::from_iter)
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<f64>().prop_filter("finite", |x| x.is_finite()),
        1 => prop::sample::select(vec![0.0, -0.0, 1.0, 0.1, f64::MAX, f64::MIN, f64::MIN_POSITIVE, 5e-324, 1e21, 1e-7, 42.0]),
        2 => (-1_000_000i64..1_000_000).prop_map(|x| x as f64 / 100.0),
    ]
}

fn value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        float().prop_map(FieldValue::Float),
        prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), Just(0)]
            .prop_map(FieldValue::Int),
    ]
}

/// Timestamps the encoder writes exactly and the mask rule reads back:
/// whole seconds up to 2^32 - 1, or milliseconds from 2^32 to the end of
/// nanoseconds in an i64 (2262).
fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        (1i64..=0xFFFF_FFFF).prop_map(|s| s * 1_000_000_000),
        (0x1_0000_0000i64..=9_223_372_036_854).prop_map(|ms| ms * 1_000_000),
        Just(1_700_000_000_000_000_000),
    ]
}

fn metric() -> impl Strategy<Value = Metric> {
    (
        name(),
        proptest::collection::btree_map(name(), name(), 0..6),
        value(),
        timestamp(),
    )
        .prop_map(|(name, tags, v, ts)| {
            let mut m = Metric::new(name).field("value", v).at(ts);
            for (k, v) in tags {
                m = m.tag(k, v);
            }
            m
        })
}

fn batch_of(metrics: &[Metric]) -> Batch {
    let mut b = Batch::new();
    for m in metrics {
        b.push(m).unwrap();
    }
    b
}

/// Bytes with many telnet separators, for deeper paths than random bytes.
fn telnet_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop::sample::select(
            b"put m 1700000000 4294967296 .e-E+=\n\r\tx$0123456789 versionhelp\xff\xc3\xa9"
                .to_vec(),
        ),
        0..300,
    )
}

/// Bytes shaped like `/api/put` bodies.
fn json_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop::sample::select(
            br#"[]{}:,"metric""timestamp""value""tags"1700000000 -1.5e3 null true "m" "x=y" \u00e9"#
                .to_vec(),
        ),
        0..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn telnet_parse_of_encode_is_identity(metrics in proptest::collection::vec(metric(), 1..6)) {
        let batch = batch_of(&metrics);
        let mut enc = Encoder::default();
        let mut body = Vec::new();
        for m in batch.iter() {
            prop_assert_eq!(enc.put_lines(&m, &mut body).written, 1);
        }
        let mut back = Batch::new();
        let mut events = Vec::new();
        parse(&body, &ParseOptions::default(), &mut back, &mut events);
        prop_assert!(events.is_empty(), "{:?} from {:?}", events, String::from_utf8_lossy(&body));
        prop_assert_eq!(&back, &batch, "body {:?}", String::from_utf8_lossy(&body));
    }

    #[test]
    fn json_parse_of_encode_is_identity(metrics in proptest::collection::vec(metric(), 1..6)) {
        let batch = batch_of(&metrics);
        let mut enc = Encoder::default();
        let mut body = Vec::new();
        enc.json_begin(&mut body);
        for m in batch.iter() {
            prop_assert_eq!(enc.json_points(&m, &mut body).written, 1);
        }
        enc.json_end(&mut body);
        let put = parse_put(&body, &ParseOptions::default(), true).unwrap();
        prop_assert!(put.errors.is_empty(), "{:?} from {:?}", put.errors, String::from_utf8_lossy(&body));
        prop_assert_eq!(put.total, metrics.len());
        prop_assert_eq!(&put.batch, &batch, "body {:?}", String::from_utf8_lossy(&body));
    }

    #[test]
    fn arbitrary_telnet_bytes_never_panic(input in prop_oneof![proptest::collection::vec(any::<u8>(), 0..300), telnet_bytes()]) {
        check_telnet(&input)?;
    }

    #[test]
    fn arbitrary_json_bytes_never_panic(input in prop_oneof![proptest::collection::vec(any::<u8>(), 0..300), json_bytes()]) {
        if let Ok(put) = parse_put(&input, &ParseOptions::default(), true) {
            prop_assert_eq!(put.batch.len() + put.errors.len(), put.total);
            for e in &put.errors {
                prop_assert!(e.index < put.total);
                prop_assert!(!e.message.is_empty());
                let dp = e.datapoint.as_deref().unwrap_or_default();
                prop_assert!(serde_json::from_str::<serde_json::Value>(dp).is_ok(), "{}", dp);
            }
        }
    }
}

/// Invariants of any telnet parse: events in line order with well-formed
/// replies, and whatever was stored reads back the same once re-encoded
/// (where the encoder can write it exactly).
fn check_telnet(input: &[u8]) -> Result<(), TestCaseError> {
    let opts = ParseOptions::default();
    let mut batch = Batch::new();
    let mut events = Vec::new();
    let summary = parse(input, &opts, &mut batch, &mut events);
    prop_assert_eq!(summary.metrics, batch.len());
    let lines = input.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut last = 0;
    for e in &events {
        let (line, message) = match e {
            Event::Error(e) => {
                prop_assert!(ErrorKind::ALL.contains(&e.kind));
                prop_assert_ne!(e.kind, ErrorKind::BatchTooLarge);
                prop_assert!(
                    e.message.starts_with("put") || e.message.starts_with("unknown command: "),
                    "{}",
                    e.message
                );
                prop_assert!(e.message.len() < 200, "{}", e.message);
                prop_assert!(!e.message.contains('\n'), "{}", e.message);
                (e.line, e.message.as_str())
            }
            Event::Command { line, .. } => (*line, ""),
        };
        prop_assert!(
            line > last && line <= lines,
            "line {} after {} ({})",
            line,
            last,
            message
        );
        last = line;
    }
    let exact: Vec<MetricRef<'_>> = batch.iter().filter(writable_exactly).collect();
    let mut body = Vec::new();
    let mut enc = Encoder::default();
    for m in &exact {
        prop_assert_eq!(enc.put_lines(m, &mut body).written, 1);
    }
    let mut again = Batch::new();
    let mut events = Vec::new();
    parse(&body, &opts, &mut again, &mut events);
    prop_assert!(
        events.is_empty(),
        "{:?} re-reading {:?}",
        events,
        String::from_utf8_lossy(&body)
    );
    prop_assert_eq!(again.len(), exact.len());
    for (a, b) in again.iter().zip(exact) {
        prop_assert!(a == b, "{:?} != {:?}", a, b);
    }
    Ok(())
}

/// Whether the encoder writes this parsed metric exactly: a number (not a
/// `puts` string) and a timestamp it writes without truncating.
fn writable_exactly(m: &MetricRef<'_>) -> bool {
    let ts = m.timestamp();
    let numeric = m.fields().all(|(_, v)| !matches!(v, Value::Str(_)));
    let whole_s = ts % 1_000_000_000 == 0 && ts / 1_000_000_000 <= 0xFFFF_FFFF;
    let ms = ts % 1_000_000 == 0 && ts / 1_000_000 > 0xFFFF_FFFF;
    numeric && (whole_s || ms)
}

#[test]
fn fixtures_satisfy_the_parse_invariants() {
    for (name, input) in common::fixtures(&common::telnet_dir(), "in") {
        let (_, body) = common::fixture_options(&input);
        if let Err(e) = check_telnet(&body) {
            panic!("{name}: {e}");
        }
    }
}
