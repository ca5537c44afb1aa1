//! Any metric OpenTSDB can carry: `parse(encode(m)) == m` for telnet lines
//! and `/api/put` JSON.
#![no_main]

use arbitrary::Arbitrary;
use conflux_core::{Batch, Metric};
use conflux_opentsdb::codec::{Encoder, ParseOptions, parse, parse_put};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    name: String,
    tags: Vec<(String, String)>,
    value: Num,
    time: u64,
}

#[derive(Debug, Arbitrary)]
enum Num {
    Int(i64),
    Float(f64),
}

/// Keep what OpenTSDB allows: ASCII letters, digits, `-_./`, Unicode letters.
fn clean(s: &str) -> String {
    s.chars()
        .filter(|&c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '/')
                || (!c.is_ascii() && conflux_core::naming::is_letter(c))
        })
        .collect()
}

fuzz_target!(|input: Input| {
    let name = clean(&input.name);
    if name.is_empty() {
        return;
    }
    // Whole seconds up to 2^32 - 1, or milliseconds up to 2262 (i64 nanoseconds).
    let ts = if input.time % 2 == 0 {
        (input.time / 2 % 0xFFFF_FFFF + 1) as i64 * 1_000_000_000
    } else {
        (0x1_0000_0000 + input.time / 2 % (9_223_372_036_854 - 0x1_0000_0000)) as i64 * 1_000_000
    };
    let mut m = Metric::new(name).at(ts);
    m = match input.value {
        Num::Int(i) => m.field("value", i),
        Num::Float(f) if f.is_finite() => m.field("value", f),
        Num::Float(_) => return,
    };
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in input.tags.iter().take(8) {
        let (k, v) = (clean(k), clean(v));
        if !k.is_empty() && !v.is_empty() && seen.insert(k.clone()) {
            m = m.tag(k, v);
        }
    }
    let mut batch = Batch::new();
    batch.push(&m).unwrap();
    let mut enc = Encoder::default();

    let mut body = Vec::new();
    assert_eq!(enc.put_lines(&batch.get(0), &mut body).written, 1);
    let mut back = Batch::new();
    let mut events = Vec::new();
    parse(&body, &ParseOptions::default(), &mut back, &mut events);
    assert!(events.is_empty(), "{events:?} from {:?}", String::from_utf8_lossy(&body));
    assert_eq!(back, batch);

    body.clear();
    enc.json_begin(&mut body);
    enc.json_points(&batch.get(0), &mut body);
    enc.json_end(&mut body);
    let put = parse_put(&body, &ParseOptions::default(), true).unwrap();
    assert!(put.errors.is_empty(), "{:?}", put.errors);
    assert_eq!(put.batch, batch);
});
