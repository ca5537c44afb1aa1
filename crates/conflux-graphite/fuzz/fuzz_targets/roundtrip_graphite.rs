//! Any metric: the tag-support serializer writes lines the parser accepts,
//! and within the representable set (see `tests/properties.rs`) the parser
//! gives the metric back.
#![no_main]

use conflux_core::{Batch, Metric};
use conflux_graphite::codec::encode::{Serializer, SerializerConfig};
use conflux_graphite::codec::{ParseOptions, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (String, Vec<(String, String)>, f64, u32)| {
    let (name, tags, value, seconds) = input;
    let mut m = Metric::new(name).at(i64::from(seconds) * 1_000_000_000);
    for (k, v) in tags {
        m = m.tag(k, v);
    }
    let m = m.field("value", value);
    let mut batch = Batch::new();
    if batch.push(&m).is_err() {
        return;
    }
    let mut s = Serializer::new(&SerializerConfig {
        tag_support: true,
        ..SerializerConfig::default()
    })
    .unwrap();
    let mut body = Vec::new();
    s.encode(&batch.get(0), &mut body);
    let mut back = Batch::new();
    let mut errors = Vec::new();
    let n = parse(&body, &ParseOptions::new(0), &mut back, &mut errors);
    // One line per point written, each either read or refused.
    let lines = body.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(n + errors.len(), lines);
    let clean = |s: &str| {
        let mut o = String::new();
        conflux_core::naming::sanitize_graphite(s, &mut o);
        o == s && !s.is_empty()
    };
    let metric = batch.get(0);
    let representable = value.is_finite()
        && clean(metric.name())
        && !metric.name().starts_with('~')
        && metric.tags().all(|(k, v)| {
            clean(k) && clean(v) && !k.contains('=') && !v.contains('=') && k != "name" && !v.starts_with('~')
        });
    if representable {
        assert!(errors.is_empty(), "{errors:?} from {:?}", String::from_utf8_lossy(&body));
        assert!(back == batch, "{back:?} != {batch:?}");
    }
});
