//! The file sink's three formats, end to end: line protocol in (the influx
//! codec), the file sink out, compared with `tests/fixtures/file/*.expected`.
//! `UPDATE_GOLDEN=1` rewrites the expected files (review the diff).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use conflux_core::{Batch, BatchView};
use conflux_influx::codec::{ParseOptions, parse};
use conflux_sinks::Sink;
use conflux_sinks::file::{Config, FileSink};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/file")
}

fn input() -> BatchView {
    let text = std::fs::read(fixtures().join("input.lp")).unwrap();
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    parse(&text, &ParseOptions::default(), &mut batch, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(batch.len(), 5);
    BatchView::whole(Arc::new(batch))
}

async fn golden(case: &str, settings: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    let cfg: Config =
        toml::from_str(&format!("path = {:?}\n{settings}", path.to_str().unwrap())).unwrap();
    let mut sink = FileSink::new(cfg).unwrap();
    sink.send(&[input()]).await.unwrap();
    sink.close().await.unwrap();
    let got = std::fs::read_to_string(&path).unwrap();
    let expected_path = fixtures().join(format!("{case}.expected"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&expected_path, &got).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", expected_path.display()));
    assert_eq!(got, expected, "{case}");
}

#[tokio::test]
async fn influx() {
    golden("influx", "format = \"influx\"").await;
}

#[tokio::test]
async fn influx_in_seconds() {
    golden("influx_s", "format = \"influx\"\ninflux_precision = \"s\"").await;
}

#[tokio::test]
async fn graphite_default_template() {
    golden("graphite", "format = \"graphite\"").await;
}

#[tokio::test]
async fn graphite_prefix_and_templates() {
    golden(
        "graphite_templates",
        "format = \"graphite\"\nprefix = \"dc1\"\ntemplates = [\"cpu tags.measurement.field\", \"disk* host.path.field\"]",
    )
    .await;
}

#[tokio::test]
async fn graphite_tag_support() {
    golden(
        "graphite_tags",
        "format = \"graphite\"\ngraphite_tag_support = true\ngraphite_separator = \"_\"",
    )
    .await;
}

#[tokio::test]
async fn json_for_every_timestamp_unit() {
    for (case, units) in [
        ("json_1ns", "1ns"),
        ("json_1us", "1us"),
        ("json_1ms", "1ms"),
        ("json_1s", "1s"),
    ] {
        golden(
            case,
            &format!("format = \"json\"\njson_timestamp_units = \"{units}\""),
        )
        .await;
    }
}

#[test]
fn telegraf_graphite_example_is_exact() {
    // Telegraf's documentation, word for word.
    let expected = std::fs::read_to_string(fixtures().join("graphite.expected")).unwrap();
    let mut lines = expected.lines();
    assert_eq!(
        lines.next(),
        Some("tars.cpu-total.us-east-1.cpu.usage_idle 98.09 1455320660")
    );
    assert_eq!(
        lines.next(),
        Some("tars.cpu-total.us-east-1.cpu.usage_user 0.89 1455320660")
    );
}
