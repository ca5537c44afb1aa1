//! Helpers shared by the integration tests: fixture options and a readable dump.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use conflux_core::Batch;
use conflux_core::Value;
use conflux_core::time::Precision;
use conflux_influx::codec::{LineError, ParseOptions};

/// Default time for fixtures without a `# default_time:` line.
pub const FIXTURE_NOW: i64 = 1_000_000_000_000_000_000;

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/influx")
}

/// Every `<case>.in` under the fixture folder, sorted by name.
pub fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let dir = fixture_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "in") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}

/// Options from leading `# key: value` comment lines (`precision`, `default_time`,
/// `max_key_bytes`); the parser skips them as comments.
pub fn fixture_options(input: &[u8]) -> ParseOptions {
    let mut opts = ParseOptions::new(Precision::Ns, FIXTURE_NOW);
    for line in input.split(|&b| b == b'\n') {
        let Some(rest) = line.strip_prefix(b"# ") else {
            break;
        };
        let Ok(rest) = std::str::from_utf8(rest) else {
            break;
        };
        let Some((key, value)) = rest.split_once(": ") else {
            break;
        };
        let value = value.trim();
        match key {
            "precision" => opts.precision = Precision::parse(value).expect("precision"),
            "default_time" => opts.default_timestamp_ns = value.parse().expect("default_time"),
            "max_key_bytes" => opts.max_key_bytes = value.parse().expect("max_key_bytes"),
            _ => break,
        }
    }
    opts
}

/// A readable, line-oriented dump of parsed metrics and errors. Strings are
/// written with Rust's debug escapes so that tabs, newlines and quotes show.
pub fn dump(batch: &Batch, errors: &[LineError]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {} metrics, {} errors", batch.len(), errors.len());
    for m in batch.iter() {
        let _ = writeln!(out, "metric {:?}", m.name());
        for (k, v) in m.tags() {
            let _ = writeln!(out, "  tag {k:?} = {v:?}");
        }
        for (k, v) in m.fields() {
            let _ = writeln!(out, "  field {k:?} = {}", show_value(v));
        }
        let _ = writeln!(out, "  time {}", m.timestamp());
    }
    for e in errors {
        let _ = writeln!(
            out,
            "error line {} {}: {:?}",
            e.line,
            e.kind.reason(),
            e.message
        );
    }
    out
}

pub fn show_value(v: Value<'_>) -> String {
    match v {
        Value::Float(x) => format!("float {x:?}"),
        Value::Int(x) => format!("int {x}"),
        Value::UInt(x) => format!("uint {x}"),
        Value::Bool(x) => format!("bool {x}"),
        Value::Str(s) => format!("str {s:?}"),
    }
}
