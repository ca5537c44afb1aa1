//! Golden fixtures: `tests/fixtures/graphite/<case>.in` (plaintext, settings
//! in an optional `<case>.toml`) and `tests/fixtures/pickle/<case>.pickle`
//! (made by `make.py` there with CPython's own pickler), parsed and dumped,
//! must equal `<case>.expected`. Regenerate with `UPDATE_GOLDEN=1 cargo test
//! -p conflux-graphite --test golden` and review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use conflux_core::Batch;

#[test]
fn plaintext_fixtures_match_their_expected_dumps() {
    let cases = common::fixtures("graphite", "in");
    assert!(cases.len() >= 20, "only {} fixtures found", cases.len());
    let mut failures = Vec::new();
    for (name, input) in &cases {
        let (mut parser, opts) = common::fixture_parser("graphite", name);
        let mut batch = Batch::new();
        let mut errors = Vec::new();
        let n = parser.parse(input, &opts, &mut batch, &mut errors);
        assert_eq!(n, batch.len(), "{name}");
        let got = common::dump(&batch, &errors);
        failures.extend(common::check_golden("graphite", name, &got));
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn pickle_fixtures_match_their_expected_dumps() {
    let cases = common::fixtures("pickle", "pickle");
    assert!(cases.len() >= 8, "only {} fixtures found", cases.len());
    let mut failures = Vec::new();
    for (name, frame) in &cases {
        let (mut parser, opts) = common::fixture_parser("pickle", name);
        let mut batch = Batch::new();
        let mut errors = Vec::new();
        let got = match parser.parse_pickle(frame, &opts, &mut batch, &mut errors) {
            Ok(n) => {
                assert_eq!(n, batch.len(), "{name}");
                common::dump(&batch, &errors)
            }
            Err(e) => format!("refused {}: {:?}\n", e.kind.reason(), e.to_string()),
        };
        failures.extend(common::check_golden("pickle", name, &got));
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
