//! Golden fixtures: `tests/fixtures/opentsdb/<case>.in` (telnet) and
//! `tests/fixtures/opentsdb-json/<case>.json` (`/api/put`) parsed and dumped
//! must equal `<case>.expected`. Regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p conflux-opentsdb --test golden` and review
//! the diff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use conflux_core::Batch;
use conflux_opentsdb::codec::{parse, parse_put};

#[test]
fn telnet_fixtures_match_their_expected_dumps() {
    let cases = common::fixtures(&common::telnet_dir(), "in");
    assert!(cases.len() >= 15, "only {} fixtures found", cases.len());
    let mut failures = Vec::new();
    for (name, input) in &cases {
        let (opts, body) = common::fixture_options(input);
        let mut batch = Batch::new();
        let mut events = Vec::new();
        let summary = parse(&body, &opts, &mut batch, &mut events);
        assert_eq!(summary.metrics, batch.len(), "{name}");
        let mut got = common::dump(&batch, &events);
        if summary.exit {
            got.push_str("exit\n");
        }
        let path = common::telnet_dir().join(format!("{name}.expected"));
        common::check_golden(&path, &got, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn json_fixtures_match_their_expected_dumps() {
    let cases = common::fixtures(&common::json_dir(), "json");
    assert!(cases.len() >= 8, "only {} fixtures found", cases.len());
    let mut failures = Vec::new();
    for (name, input) in &cases {
        let got = match parse_put(input, &Default::default(), true) {
            Ok(put) => common::dump_put(&put.batch, put.total, &put.errors),
            Err(e) => format!(
                "# refused whole\nerror {:?} details {:?}\n",
                e.to_string(),
                e.details()
            ),
        };
        let path = common::json_dir().join(format!("{name}.expected"));
        common::check_golden(&path, &got, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
