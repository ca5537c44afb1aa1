//! Property tests: whatever the encoder writes parses back to the same
//! metrics (values, TTL and all); any bytes parse without panicking and with
//! consistent counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conflux_core::{Batch, Value};
use conflux_kairosdb::codec::{EncodeOptions, Encoder, MAX_MS, MIN_MS, ParseOptions, parse};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum V {
    F(f64),
    I(i64),
    S(String),
}

#[derive(Debug, Clone)]
struct M {
    name: String,
    tags: Vec<(String, String)>,
    value: V,
    ts_ms: i64,
    ttl: u32,
}

fn text() -> impl Strategy<Value = String> {
    // Mostly plain, sometimes anything (quotes, escapes, controls, non-ASCII).
    prop_oneof![
        3 => "[a-z][a-z0-9._-]{0,12}",
        1 => "\\PC{1,8}",
        1 => "[\"\\\\\n\t\u{1}é/ ]{1,6}",
    ]
}

fn metric() -> impl Strategy<Value = M> {
    (
        text(),
        prop::collection::btree_map(text(), text(), 1..4),
        prop_oneof![
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(V::F),
            any::<i64>().prop_map(V::I),
            "\\PC{0,10}".prop_map(V::S),
        ],
        MIN_MS..=MAX_MS,
        prop_oneof![Just(0u32), 1..=i32::MAX as u32],
    )
        .prop_map(|(name, tags, value, ts_ms, ttl)| M {
            name,
            tags: tags.into_iter().collect(),
            value,
            ts_ms,
            ttl,
        })
}

fn batch_of(ms: &[M]) -> Batch {
    let mut b = Batch::new();
    for m in ms {
        let mut mb = b.metric(&m.name);
        for (k, v) in &m.tags {
            mb.tag(k, v);
        }
        let v = match &m.value {
            V::F(f) => Value::Float(*f),
            V::I(i) => Value::Int(*i),
            V::S(s) => Value::Str(s),
        };
        mb.field("value", v).ttl(m.ttl);
        mb.finish(m.ts_ms * 1_000_000).unwrap();
    }
    b
}

/// Metrics as comparable text, in a stable order (the encoder groups by series).
fn sorted(b: &Batch) -> Vec<String> {
    let mut v: Vec<String> = b
        .iter()
        .map(|m| {
            let (_, value) = m.fields().next().unwrap();
            let value = match value {
                Value::Float(f) => format!("F{:016x}", f.to_bits()),
                other => format!("{other:?}"),
            };
            format!(
                "{:?} {:?} {value} {} {:?}",
                m.name(),
                m.tags().collect::<Vec<_>>(),
                m.timestamp(),
                m.ttl()
            )
        })
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encoded_bodies_parse_back_exactly(ms in prop::collection::vec(metric(), 1..20)) {
        let batch = batch_of(&ms);
        let refs: Vec<_> = batch.iter().collect();
        let mut body = Vec::new();
        let enc = Encoder::new(EncodeOptions::default()).encode(&refs, &mut body);
        prop_assert_eq!(enc.points, ms.len());
        let mut back = Batch::new();
        let mut errors = Vec::new();
        let summary = parse(&body, &ParseOptions::default(), &mut back, &mut errors);
        prop_assert!(errors.is_empty(), "{:?} in {}", errors, String::from_utf8_lossy(&body));
        prop_assert_eq!(summary.objects, enc.objects);
        prop_assert_eq!(sorted(&back), sorted(&batch));
    }

    #[test]
    fn any_bytes_parse_without_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut batch = Batch::new();
        let mut errors = Vec::new();
        let s = parse(&data, &ParseOptions::default(), &mut batch, &mut errors);
        prop_assert_eq!(s.metrics, batch.len());
        prop_assert_eq!(s.errors, errors.len());
        prop_assert_eq!(s.errors, s.by_kind.iter().sum::<usize>());
    }

    #[test]
    fn json_like_text_parses_without_panic(
        data in "[\\[\\]{}\",:0-9a-z.eE+-]{0,200}",
        prefix in prop_oneof![Just("["), Just("{"), Just("[{\"name\":\"m\",\"tags\":{\"a\":\"b\"},")],
    ) {
        let body = format!("{prefix}{data}");
        let mut batch = Batch::new();
        let mut errors = Vec::new();
        let s = parse(body.as_bytes(), &ParseOptions::default(), &mut batch, &mut errors);
        prop_assert_eq!(s.metrics, batch.len());
    }
}
