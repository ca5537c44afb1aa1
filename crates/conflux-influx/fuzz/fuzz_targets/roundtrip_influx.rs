//! Any metric: the encoder writes nothing or valid line protocol, and within the
//! representable set (see the encoder's docs) `parse(encode(m)) == m`.
#![no_main]

use arbitrary::Arbitrary;
use conflux_core::time::Precision;
use conflux_core::{Batch, FieldValue, Metric};
use conflux_influx::codec::{MAX_NANO_TIME, MIN_NANO_TIME, ParseOptions, encode, parse};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum V {
    F(f64),
    I(i64),
    U(u64),
    B(bool),
    S(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    name: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, V)>,
    ts: i64,
}

/// Keys the encoder writes exactly: non-empty, no newline, no trailing backslash.
fn plain(k: &str) -> bool {
    !k.is_empty() && !k.contains('\n') && !k.ends_with('\\')
}

fuzz_target!(|input: Input| {
    let mut m = Metric::new(input.name).at(input.ts);
    for (k, v) in input.tags {
        m = m.tag(k, v);
    }
    for (k, v) in input.fields {
        m = m.field(
            k,
            match v {
                V::F(x) => FieldValue::Float(x),
                V::I(x) => FieldValue::Int(x),
                V::U(x) => FieldValue::UInt(x),
                V::B(x) => FieldValue::Bool(x),
                V::S(x) => FieldValue::Str(x),
            },
        );
    }
    let mut batch = Batch::new();
    if batch.push(&m).is_err() {
        return;
    }
    let metric = batch.get(0);
    let mut body = Vec::new();
    if encode(&metric, &mut body) == 0 {
        assert!(body.is_empty());
        return;
    }
    // Keys as written: trailing backslashes and (first field) leading tabs/NULs go.
    let written = |k: &str| k.trim_end_matches('\\').trim_start_matches(['\t', '\0']) == "time";
    let time_key =
        metric.tags().any(|(k, _)| written(k)) || metric.fields().any(|(k, _)| written(k));
    let mut back = Batch::new();
    let mut errors = Vec::new();
    parse(
        &body,
        &ParseOptions::new(Precision::Ns, 0),
        &mut back,
        &mut errors,
    );
    // A `time` key or a timestamp outside InfluxDB's range is written as is and
    // rejected by the reader, as InfluxDB would.
    let in_range = (MIN_NANO_TIME..=MAX_NANO_TIME).contains(&metric.timestamp());
    if !time_key && in_range {
        assert!(
            errors.is_empty(),
            "{errors:?} from {:?}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(back.len(), 1);
    }
    let representable = plain(metric.name())
        && !metric.name().starts_with(['#', '\t', '\0'])
        && metric
            .tags()
            .all(|(k, v)| plain(k) && plain(v) && k != "time")
        && metric.fields().all(|(k, v)| {
            plain(k) && k != "time" && !matches!(v, conflux_core::Value::Float(x) if !x.is_finite())
        })
        && metric
            .fields()
            .next()
            .is_some_and(|(k, _)| !k.starts_with(['\t', '\0']))
        && in_range
        && body.len() < 60_000;
    if representable {
        assert!(back == batch, "{:?} != {:?}", back, batch);
    }
});
