//! Any bytes, as telnet lines under OpenTSDB's and KairosDB's options and as
//! an `/api/put` body: no panic, well-formed errors in line order, and what
//! was stored reads back identically once encoded.
#![no_main]

use conflux_core::time::SecondsOrMillis;
use conflux_core::{Batch, Value};
use conflux_opentsdb::codec::{
    Characters, Encoder, ErrorKind, Event, ParseOptions, parse, parse_put,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opentsdb = ParseOptions::default();
    let kairosdb = ParseOptions {
        timestamps: SecondsOrMillis::Kairosdb,
        characters: Characters::AnyButSpace,
        max_tags: 3,
        require_tags: true,
        ..ParseOptions::default()
    };
    for opts in [&opentsdb, &kairosdb] {
        let mut batch = Batch::new();
        let mut events = Vec::new();
        let summary = parse(data, opts, &mut batch, &mut events);
        assert_eq!(summary.metrics, batch.len());
        let mut last = 0;
        for e in &events {
            let line = match e {
                Event::Error(e) => {
                    assert_ne!(e.kind, ErrorKind::BatchTooLarge);
                    assert!(!e.message.contains('\n'), "{}", e.message);
                    assert!(e.message.len() < 200, "{}", e.message);
                    e.line
                }
                Event::Command { line, .. } => *line,
            };
            assert!(line > last, "events out of order");
            last = line;
        }
        if opts == &opentsdb {
            reencode(&batch);
        }
    }
    if let Ok(put) = parse_put(data, &opentsdb, true) {
        assert_eq!(put.batch.len() + put.errors.len(), put.total);
        reencode(&put.batch);
    }
});

/// Metrics the encoder writes exactly (numbers, and times it does not
/// truncate) read back the same.
fn reencode(batch: &Batch) {
    let mut exact = Batch::new();
    for m in batch.iter() {
        let ts = m.timestamp();
        let numeric = m.fields().all(|(_, v)| !matches!(v, Value::Str(_)));
        let whole_s = ts % 1_000_000_000 == 0 && ts / 1_000_000_000 <= 0xFFFF_FFFF;
        let ms = ts % 1_000_000 == 0 && ts / 1_000_000 > 0xFFFF_FFFF;
        if numeric && (whole_s || ms) {
            exact.push_ref(m);
        }
    }
    let mut enc = Encoder::default();
    let mut body = Vec::new();
    for m in exact.iter() {
        assert_eq!(enc.put_lines(&m, &mut body).written, 1, "{m:?}");
    }
    let mut again = Batch::new();
    let mut events = Vec::new();
    parse(&body, &ParseOptions::default(), &mut again, &mut events);
    assert!(
        events.is_empty(),
        "{events:?} re-reading {:?}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(again, exact, "re-read differs");
}
