//! Golden fixtures: `tests/fixtures/influx/<case>.in` parsed and dumped must equal
//! `<case>.expected`. Regenerate with `UPDATE_GOLDEN=1 cargo test -p conflux-influx
//! --test golden` and review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use conflux_core::Batch;
use conflux_influx::codec::parse;

#[test]
fn fixtures_match_their_expected_dumps() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let cases = common::fixtures();
    assert!(cases.len() >= 25, "only {} fixtures found", cases.len());
    let mut failures = Vec::new();
    for (name, input) in &cases {
        let opts = common::fixture_options(input);
        let mut batch = Batch::new();
        let mut errors = Vec::new();
        let n = parse(input, &opts, &mut batch, &mut errors);
        assert_eq!(n, batch.len(), "{name}");
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
