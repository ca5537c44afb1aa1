//! Property tests: `parse(encode(m)) == m` over the representable set, the
//! encoder always writes valid line protocol, and arbitrary bytes never panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use conflux_core::time::Precision;
use conflux_core::{Batch, FieldValue, Metric};
use conflux_influx::codec::{
    ErrorKind, MAX_NANO_TIME, MIN_NANO_TIME, ParseOptions, encode, encode_with, parse,
};
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000_000_000_000;

/// Characters that exercise every escape rule, plus unicode of 2, 3 and 4 bytes.
fn key_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        1 => proptest::char::range('0', '9'),
        3 => prop::sample::select(vec![' ', ',', '=', '"', '\\', '#', '_', '\t', '\r', '\0', '.', '-']),
        1 => prop::sample::select(vec!['é', 'ß', '数', '✓', '😀', '\u{a0}', '\u{2028}']),
        1 => any::<char>(),
    ]
}

fn raw_key(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(key_char(), 1..max).prop_map(String::from_iter)
}

/// A key line protocol can carry: non-empty, no newline, no trailing backslash,
/// not `time`.
fn key() -> impl Strategy<Value = String> {
    raw_key(10).prop_map(|k| {
        let mut k = k.replace('\n', "n").trim_end_matches('\\').to_owned();
        if k.is_empty() || k == "time" {
            k.push('k');
        }
        k
    })
}

/// A measurement: a key that does not start with `#` or whitespace the reader skips.
fn measurement() -> impl Strategy<Value = String> {
    key().prop_map(|k| {
        if k.starts_with(['#', '\t', '\0']) {
            format!("m{k}")
        } else {
            k
        }
    })
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<f64>().prop_filter("finite", |x| x.is_finite()),
        1 => prop::sample::select(vec![0.0, -0.0, 1.0, 0.1, f64::MAX, f64::MIN, f64::MIN_POSITIVE, 5e-324, -5e-324, 1e21, 1e-7, 123_456_789.012_345_68]),
        2 => (-1_000_000i64..1_000_000).prop_map(|x| x as f64 / 100.0),
    ]
}

fn string_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::collection::vec(
            prop_oneof![key_char(), Just('\n'), Just('"'), Just('\\')], 0..16)
            .prop_map(String::from_iter),
        1 => any::<String>(),
        1 => Just(String::new()),
        1 => Just("\\".repeat(5)),
    ]
}

fn value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        float().prop_map(FieldValue::Float),
        prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), Just(0)]
            .prop_map(FieldValue::Int),
        prop_oneof![any::<u64>(), Just(u64::MAX), Just(0)].prop_map(FieldValue::UInt),
        any::<bool>().prop_map(FieldValue::Bool),
        string_value().prop_map(FieldValue::Str),
    ]
}

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => MIN_NANO_TIME..=MAX_NANO_TIME,
        1 => prop::sample::select(vec![MIN_NANO_TIME, MAX_NANO_TIME, 0, -1, NOW]),
    ]
}

/// A metric inside the representable set (see the encoder's module docs).
fn metric() -> impl Strategy<Value = Metric> {
    (
        measurement(),
        proptest::collection::btree_map(key(), key(), 0..5),
        proptest::collection::vec((key(), value()), 1..6),
        timestamp(),
    )
        .prop_map(|(name, tags, fields, ts)| {
            let mut m = Metric::new(name).at(ts);
            for (k, v) in tags {
                m = m.tag(k, v);
            }
            let mut seen = std::collections::BTreeSet::new();
            for (i, (mut k, v)) in fields.into_iter().enumerate() {
                // The reader skips whitespace before the first field key.
                if i == 0 && k.starts_with(['\t', '\0']) {
                    k.insert(0, 'f');
                }
                if seen.insert(k.clone()) {
                    m = m.field(k, v);
                }
            }
            m
        })
}

fn parse_all(input: &[u8], opts: &ParseOptions) -> (Batch, Vec<conflux_influx::codec::LineError>) {
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    let n = parse(input, opts, &mut batch, &mut errors);
    assert_eq!(n, batch.len());
    (batch, errors)
}

/// Bytes with many line protocol separators, for deeper paths than random bytes.
fn lp_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop::sample::select(b"mtfx=, \"\\\n\r\t#1.e-iuT0\xff\xc3\xa9".to_vec()),
        0..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parse_of_encode_is_identity(metrics in proptest::collection::vec(metric(), 1..5)) {
        let mut batch = Batch::new();
        for m in &metrics {
            batch.push(m).unwrap();
        }
        let mut body = Vec::new();
        for m in batch.iter() {
            let written = encode(&m, &mut body);
            prop_assert_eq!(written, m.fields().len());
        }
        let (back, errors) = parse_all(&body, &ParseOptions::new(Precision::Ns, NOW));
        prop_assert!(errors.is_empty(), "{:?} from {:?}", errors, String::from_utf8_lossy(&body));
        prop_assert_eq!(&back, &batch, "body {:?}", String::from_utf8_lossy(&body));
    }

    #[test]
    fn encode_with_precision_truncates_toward_zero(m in metric(), p in prop::sample::select(vec![Precision::Us, Precision::Ms, Precision::S, Precision::M, Precision::H])) {
        let mut batch = Batch::new();
        batch.push(&m).unwrap();
        let mut body = Vec::new();
        encode_with(&batch.get(0), p, &mut body);
        let (back, errors) = parse_all(&body, &ParseOptions::new(p, NOW));
        prop_assert!(errors.is_empty(), "{:?}", errors);
        prop_assert_eq!(back.get(0).timestamp(), m.timestamp / p.nanos() * p.nanos());
    }

    /// Whatever the metric (any name, keys with newlines, trailing backslashes,
    /// NaN), the encoder writes nothing or one line that parses without error.
    #[test]
    fn encoder_always_writes_valid_line_protocol(
        name in raw_key(8),
        tags in proptest::collection::btree_map(raw_key(6), raw_key(6), 0..4),
        fields in proptest::collection::btree_map(raw_key(6), prop_oneof![value(), any::<f64>().prop_map(FieldValue::Float)], 1..4),
        ts in timestamp(),
    ) {
        let mut m = Metric::new(name).at(ts);
        for (k, v) in tags.into_iter().filter(|(k, _)| k != "time") {
            m = m.tag(k, v);
        }
        for (k, v) in fields {
            m = m.field(k, v);
        }
        let mut batch = Batch::new();
        if batch.push(&m).is_ok() {
            let mut body = Vec::new();
            let written = encode(&batch.get(0), &mut body);
            let (back, errors) = parse_all(&body, &ParseOptions::new(Precision::Ns, NOW));
            if written == 0 {
                prop_assert!(body.is_empty());
            } else {
                // A field named `time` is dropped by the reader, and a line of only
                // `time` fields is rejected; nothing else may fail.
                let only_time = batch.get(0).fields().all(|(k, _)| k.trim_end_matches('\\').trim_start_matches(['\t', '\0']) == "time");
                if !only_time {
                    prop_assert!(errors.is_empty(), "{:?} from {:?}", errors, String::from_utf8_lossy(&body));
                    prop_assert_eq!(back.len(), 1);
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in prop_oneof![proptest::collection::vec(any::<u8>(), 0..300), lp_bytes()]) {
        check_invariants(&input)?;
    }
}

/// Invariants of any parse: counts agree, errors are well formed and in line
/// order, and whatever was accepted reads back identically once re-encoded.
fn check_invariants(input: &[u8]) -> Result<(), TestCaseError> {
    let opts = ParseOptions::new(Precision::Ns, NOW);
    let (batch, errors) = parse_all(input, &opts);
    let lines = input.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut last = 0;
    for e in &errors {
        prop_assert!(ErrorKind::ALL.contains(&e.kind));
        prop_assert!(e.message.starts_with("unable to parse '"), "{}", e.message);
        prop_assert!(e.message.len() < 420, "{}", e.message);
        prop_assert!(
            e.line > last && e.line <= lines,
            "line {} after {} of {}",
            e.line,
            last,
            lines
        );
        last = e.line;
    }
    let mut body = Vec::new();
    let mut exact = Batch::new();
    for m in batch.iter().filter(writable_exactly) {
        prop_assert!(encode(&m, &mut body) > 0);
        exact.push_ref(m);
    }
    let (again, errors) = parse_all(&body, &opts);
    prop_assert!(
        errors.is_empty(),
        "{:?} re-reading {:?}",
        errors,
        String::from_utf8_lossy(&body)
    );
    prop_assert_eq!(sorted_fields(&again), sorted_fields(&exact));
    Ok(())
}

/// Whether line protocol can carry this parsed metric exactly: not when every
/// field key starts with a tab or NUL (reachable when a `time` field was
/// dropped or a duplicate removed), since the reader skips them before the
/// first field; the encoder then removes them (see its docs).
fn writable_exactly(m: &conflux_core::MetricRef<'_>) -> bool {
    m.fields().any(|(k, _)| !k.starts_with(['\t', '\0']))
}

#[test]
fn a_parsed_metric_whose_keys_all_start_with_nul_is_written_without_them() {
    // Found by fuzzing: `time` is dropped and the only key left starts with NUL.
    let (batch, _) = parse_all(
        b"m time=1,\0\0v=2 2",
        &ParseOptions::new(Precision::Ns, NOW),
    );
    assert_eq!(
        batch.get(0).fields().map(|(k, _)| k).collect::<Vec<_>>(),
        ["\0\0v"]
    );
    assert!(!writable_exactly(&batch.get(0)));
    let mut body = Vec::new();
    assert_eq!(encode(&batch.get(0), &mut body), 1);
    assert_eq!(body, b"m v=2 2\n");
    check_invariants(b"m time=1,\0\0v=2 2").unwrap();
}

/// Metrics with their fields sorted by key: the encoder may write a field whose
/// key starts with a tab or NUL later than first (see its docs).
fn sorted_fields(batch: &Batch) -> Vec<Metric> {
    batch
        .iter()
        .map(|m| {
            let mut m = m.to_metric();
            m.fields.sort_by(|a, b| a.0.cmp(&b.0));
            m
        })
        .collect()
}

#[test]
fn reencoding_keeps_a_nul_key_that_dedup_moved_first() {
    // Found by fuzzing: last-wins dedup leaves `\0` as the first field.
    let input = b"m a=0,\0=2,a=2";
    let (batch, errors) = parse_all(input, &ParseOptions::new(Precision::Ns, NOW));
    assert!(errors.is_empty());
    assert_eq!(
        batch.get(0).fields().map(|(k, _)| k).collect::<Vec<_>>(),
        ["\0", "a"]
    );
    check_invariants(input).unwrap();
}

#[test]
fn fixtures_satisfy_the_parse_invariants() {
    for (name, input) in common::fixtures() {
        if let Err(e) = check_invariants(&input) {
            panic!("{name}: {e}");
        }
    }
}
