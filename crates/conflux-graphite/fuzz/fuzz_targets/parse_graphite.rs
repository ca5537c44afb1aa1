//! Any bytes, with and without templates: no panic, errors well-formed and in
//! line order, and what was accepted reads back the same once written in
//! tag-support form (names and tags a tagged path can carry).
#![no_main]

use std::sync::Arc;

use conflux_core::{Batch, Value};
use conflux_graphite::codec::encode::{Serializer, SerializerConfig};
use conflux_graphite::codec::{ErrorKind, ParseOptions, Parser, Templates};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = ParseOptions::new(1_700_000_000_000_000_000);
    let templated = Templates::new(
        "_",
        &[
            "a.* host.measurement.field* env=x".to_owned(),
            "*.b measurement.measurement.tag".to_owned(),
            "measurement*".to_owned(),
        ],
    )
    .unwrap();
    for templates in [Templates::default(), templated] {
        let mut parser = Parser::new(Arc::new(templates));
        let mut batch = Batch::new();
        let mut errors = Vec::new();
        let n = parser.parse(data, &opts, &mut batch, &mut errors);
        assert_eq!(n, batch.len());
        let mut last = 0;
        for e in &errors {
            assert_ne!(e.kind, ErrorKind::BatchTooLarge);
            assert!(e.message.starts_with("unable to parse '"), "{}", e.message);
            assert!(e.line > last, "lines out of order");
            last = e.line;
        }
        for m in batch.iter() {
            assert!(!m.name().is_empty());
            assert_eq!(m.fields().len(), 1);
            assert!(matches!(m.fields().next(), Some((_, Value::Float(f))) if !f.is_nan()));
        }
    }

    // Re-encode what the plain parser accepted and read it again: every
    // metric whose name and tags survive the sanitizer must come back.
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    Parser::default().parse(data, &opts, &mut batch, &mut errors);
    let mut s = Serializer::new(&SerializerConfig {
        tag_support: true,
        ..SerializerConfig::default()
    })
    .unwrap();
    let mut body = Vec::new();
    let mut kept = Batch::new();
    for m in batch.iter() {
        let mut probe = String::new();
        conflux_core::naming::sanitize_graphite(m.name(), &mut probe);
        let clean = |s: &str| {
            let mut o = String::new();
            conflux_core::naming::sanitize_graphite(s, &mut o);
            o == s && !s.contains('=') && !s.contains(';')
        };
        let exact = probe == m.name()
            && !m.name().starts_with('~')
            && m.timestamp() % 1_000_000_000 == 0
            && m.timestamp() != -1_000_000_000
            && m.fields().all(|(_, v)| matches!(v, Value::Float(f) if f.is_finite()))
            && m.tags().all(|(k, v)| clean(k) && clean(v) && k != "name" && !v.starts_with('~'));
        if exact {
            s.encode(&m, &mut body);
            kept.push_ref(m);
        }
    }
    let mut again = Batch::new();
    let mut errs = Vec::new();
    Parser::default().parse(&body, &opts, &mut again, &mut errs);
    assert!(errs.is_empty(), "{errs:?} re-reading {:?}", String::from_utf8_lossy(&body));
    assert_eq!(again, kept, "re-read differs: {:?}", String::from_utf8_lossy(&body));
});
