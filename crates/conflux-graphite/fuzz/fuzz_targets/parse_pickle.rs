//! Any bytes as a pickle frame: no panic, no unbounded work, errors
//! well-formed; a refused frame contributes nothing.
#![no_main]

use conflux_core::Batch;
use conflux_graphite::codec::{ErrorKind, ParseOptions, parse_pickle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = ParseOptions::new(1_700_000_000_000_000_000);
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    match parse_pickle(data, &opts, &mut batch, &mut errors) {
        Ok(n) => {
            assert_eq!(n, batch.len());
            let mut last = 0;
            for e in &errors {
                assert!(e.message.starts_with(&format!("item {}: ", e.line)), "{}", e.message);
                assert!(e.line > last);
                last = e.line;
            }
        }
        Err(e) => {
            assert!(batch.is_empty());
            assert!(errors.is_empty());
            assert!(matches!(
                e.kind,
                ErrorKind::InvalidPickle | ErrorKind::ForbiddenOpcode | ErrorKind::NotAList
            ));
            assert!(e.offset <= data.len());
        }
    }
});
