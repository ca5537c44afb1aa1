//! Any bytes: no panic, counts that agree, bounded messages, and whatever was
//! accepted reads back identically once encoded.
#![no_main]

use conflux_core::{Batch, Value};
use conflux_kairosdb::codec::{EncodeOptions, Encoder, ErrorKind, ParseOptions, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = ParseOptions::default();
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    let s = parse(data, &opts, &mut batch, &mut errors);
    assert_eq!(s.metrics, batch.len());
    assert_eq!(s.errors, s.by_kind.iter().sum::<usize>());
    assert_eq!(errors.len(), s.errors.min(opts.max_errors));
    for e in &errors {
        // BatchTooLarge needs a 4 GiB arena; nothing else is unexpected.
        assert_ne!(e.kind, ErrorKind::BatchTooLarge);
        // Context (index, name and tag quoted at most 64 bytes each) plus a rule.
        assert!(e.message.len() <= 400, "{}", e.message);
    }

    // Re-encode what the encoder can carry: finite values, no empty tag
    // values (KairosDB refuses them, so the encoder leaves them out).
    let keep: Vec<_> = batch
        .iter()
        .filter(|m| {
            m.tags().all(|(_, v)| !v.is_empty())
                && m.fields()
                    .all(|(_, v)| !matches!(v, Value::Float(f) if !f.is_finite()))
        })
        .collect();
    let mut body = Vec::new();
    let enc = Encoder::new(EncodeOptions {
        untagged_tag: None,
        ..EncodeOptions::default()
    })
    .encode(&keep, &mut body);
    assert_eq!(enc.points, keep.len());
    // Nothing to write gives an empty body, not `[]`: the sink sends nothing.
    if keep.is_empty() {
        assert!(body.is_empty());
        return;
    }
    let mut back = Batch::new();
    let mut errs = Vec::new();
    // `skip_validate` lets untagged metrics in; read them back the same way.
    let lenient = ParseOptions {
        require_tags: false,
        ..ParseOptions::default()
    };
    parse(&body, &lenient, &mut back, &mut errs);
    assert!(
        errs.is_empty(),
        "{errs:?} re-reading {:?}",
        String::from_utf8_lossy(&body)
    );
    let mut want: Vec<String> = keep.iter().map(|m| format!("{m:?}")).collect();
    let mut got: Vec<String> = back.iter().map(|m| format!("{m:?}")).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "re-read differs");
});
