//! Any bytes: no panic, only the error kinds a parse can give, and whatever was
//! accepted reads back identically once encoded (up to field order).
#![no_main]

use conflux_core::Batch;
use conflux_influx::codec::{ErrorKind, ParseOptions, encode, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = ParseOptions::default();
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    let n = parse(data, &opts, &mut batch, &mut errors);
    assert_eq!(n, batch.len());
    let mut last_line = 0;
    for e in &errors {
        // BatchTooLarge needs a 4 GiB arena; nothing else is unexpected.
        assert_ne!(e.kind, ErrorKind::BatchTooLarge);
        assert!(e.message.starts_with("unable to parse '"), "{}", e.message);
        assert!(e.line > last_line, "lines out of order");
        last_line = e.line;
    }
    // Line protocol cannot carry a metric whose every field key starts with a
    // tab or NUL (reachable once `time` or a duplicate is dropped): the reader
    // skips them before the first field. Everything else must read back.
    let mut body = Vec::new();
    let mut exact = Batch::new();
    for m in batch.iter() {
        if m.fields().any(|(k, _)| !k.starts_with(['\t', '\0'])) {
            assert!(
                encode(&m, &mut body) > 0,
                "accepted but not encodable: {m:?}"
            );
            exact.push_ref(m);
        }
    }
    let mut again = Batch::new();
    let mut errs = Vec::new();
    parse(&body, &opts, &mut again, &mut errs);
    assert!(
        errs.is_empty(),
        "{errs:?} re-reading {:?}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(sorted(&again), sorted(&exact), "re-read differs");
});

/// Metrics with fields sorted by key: the encoder may move a field whose key
/// starts with a tab or NUL away from the first place.
fn sorted(batch: &Batch) -> Vec<conflux_core::Metric> {
    batch
        .iter()
        .map(|m| {
            let mut m = m.to_metric();
            m.fields.sort_by(|a, b| a.0.cmp(&b.0));
            m
        })
        .collect()
}
