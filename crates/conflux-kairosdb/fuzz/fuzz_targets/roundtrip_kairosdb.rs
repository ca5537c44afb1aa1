//! Any metric: the encoder writes nothing or a body that parses without
//! errors, and inside the representable set back to the same metric.
#![no_main]

use arbitrary::Arbitrary;
use conflux_core::{Batch, FieldValue, Metric};
use conflux_kairosdb::codec::{EncodeOptions, Encoder, MIN_MS, ParseOptions, parse};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum V {
    F(f64),
    I(i64),
    S(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    name: String,
    tags: Vec<(String, String)>,
    value: V,
    ts: i64,
    ttl: u32,
}

fuzz_target!(|input: Input| {
    let mut m = Metric::new(input.name).at(input.ts);
    for (k, v) in input.tags {
        m = m.tag(k, v);
    }
    let finite = !matches!(input.value, V::F(f) if !f.is_finite());
    m = m.field(
        "value",
        match input.value {
            V::F(x) => FieldValue::Float(x),
            V::I(x) => FieldValue::Int(x),
            V::S(x) => FieldValue::Str(x),
        },
    );
    let mut batch = Batch::new();
    let Ok(()) = batch.push(&m) else { return };
    let mut b2 = Batch::new();
    {
        let src = batch.get(0);
        let mut mb = b2.metric(src.name());
        for (k, v) in src.tags() {
            mb.tag(k, v);
        }
        for (k, v) in src.fields() {
            mb.field(k, v);
        }
        mb.ttl(input.ttl);
        let _ = mb.finish(src.timestamp());
    }
    let metric = b2.get(0);
    let mut body = Vec::new();
    let enc = Encoder::new(EncodeOptions::default()).encode(&[metric], &mut body);
    if !finite {
        assert!(body.is_empty());
        assert_eq!(enc.skipped_non_finite, 1);
        return;
    }
    let mut back = Batch::new();
    let mut errors = Vec::new();
    parse(&body, &ParseOptions::default(), &mut back, &mut errors);
    let ttl_ok = input.ttl <= i32::MAX as u32;
    if ttl_ok {
        assert!(
            errors.is_empty(),
            "{errors:?} from {:?}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(back.len(), 1);
    }
    let representable =
        ttl_ok && metric.tags().len() > 0 && metric.tags().all(|(_, v)| !v.is_empty());
    if representable {
        let got = back.get(0);
        assert_eq!(got.name(), metric.name());
        assert!(got.tags().eq(metric.tags()));
        assert!(got.fields().eq(metric.fields()), "{got:?} != {metric:?}");
        assert_eq!(got.ttl(), metric.ttl());
        assert_eq!(
            got.timestamp(),
            metric.timestamp().div_euclid(1_000_000).max(MIN_MS) * 1_000_000
        );
    }
});
