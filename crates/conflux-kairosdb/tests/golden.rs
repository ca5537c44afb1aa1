//! Golden fixtures: `tests/fixtures/kairosdb/<case>.json` parsed and dumped
//! must equal `<case>.expected`. Regenerate with `UPDATE_GOLDEN=1 cargo test
//! -p conflux-kairosdb --test golden` and review the diff. Between them the
//! fixtures hold every error message the parser can give.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use conflux_core::Batch;
use conflux_kairosdb::codec::{ParseOptions, parse};

#[test]
fn fixtures_match_their_expected_dumps() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let cases = common::fixtures();
    assert!(cases.len() >= 15, "only {} fixtures found", cases.len());
    let mut failures = Vec::new();
    for (name, input) in &cases {
        let mut batch = Batch::new();
        let mut errors = Vec::new();
        let summary = parse(input, &ParseOptions::default(), &mut batch, &mut errors);
        assert_eq!(summary.metrics, batch.len(), "{name}");
        let got = common::dump(&batch, &errors);
        let path = common::fixture_dir().join(format!("{name}.expected"));
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!("{name}: got\n{got}\nwant\n{want}")),
            Err(e) => failures.push(format!(
                "{name}: {}: {e} (run with UPDATE_GOLDEN=1)",
                path.display()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every rule's wording appears in at least one expected dump, and every
/// error kind but `batch_too_large` (which needs a 4 GiB arena) and
/// `series_key_too_long` (64 KiB of key at the default limit; the parser's
/// unit tests cover it) is exercised.
#[test]
fn fixtures_cover_every_error_message() {
    let all: String = common::fixtures()
        .iter()
        .map(|(name, _)| {
            std::fs::read_to_string(common::fixture_dir().join(format!("{name}.expected")))
                .unwrap_or_default()
        })
        .collect();
    let wordings = [
        // KairosDB's own.
        "Invalid json. No content due to end of input.",
        "Invalid start of json.",
        ".name may not be null.",
        ".name may not be empty.",
        ".value may not be null.",
        ".value may not be empty.",
        ".value may not be an empty array.",
        ".timestamp may not be null.",
        ".tags count must be greater than or equal to 1.",
        "].name may not be empty.",
        "].value may not be empty.",
        "].value may not be null.",
        "].timestamp cannot be null or empty.",
        "].value cannot be null or empty.",
        ") value is an invalid type",
        "Unregistered data point type '",
        // Conflux's, where KairosDB fails the whole request.
        ".timestamp is an invalid type",
        ".time is an invalid type",
        ".tags is an invalid type",
        ".value is an invalid type",
        ".datapoints is an invalid type",
        "] is an invalid type",
        ".type is an invalid type",
        ".ttl is an invalid type",
        ".name is an invalid type",
        ".skip_validate is an invalid type",
        "] is a duplicate.",
        ".ttl must be greater than or equal to 0.",
        ".timestamp must be between -9223372036854 and 9223372036854.",
        // Conflux's limits.
        ".tags count must be less than or equal to 256.",
        "trailing characters at line",
        "expected value at line",
    ];
    let missing: Vec<_> = wordings.iter().filter(|w| !all.contains(*w)).collect();
    assert!(missing.is_empty(), "no fixture shows {missing:?}");
    for kind in conflux_kairosdb::codec::ErrorKind::ALL {
        if !matches!(kind.reason(), "batch_too_large" | "series_key_too_long") {
            assert!(
                all.contains(&format!(" {}: ", kind.reason())),
                "no fixture gives {kind}"
            );
        }
    }
}
