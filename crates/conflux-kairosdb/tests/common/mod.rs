//! Helpers shared by the integration tests: fixtures and a readable dump.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use conflux_core::{Batch, Value};
use conflux_kairosdb::codec::ParseError;

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kairosdb")
}

/// Every `<case>.json` under the fixture folder, sorted by name.
pub fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let dir = fixture_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}

/// A readable, line-oriented dump of parsed metrics and errors. Strings are
/// written with Rust's debug escapes so that tabs, newlines and quotes show.
pub fn dump(batch: &Batch, errors: &[ParseError]) -> String {
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
        if let Some(ttl) = m.ttl() {
            let _ = writeln!(out, "  ttl {ttl}");
        }
    }
    for e in errors {
        let at = e.object.map_or_else(|| "-".to_owned(), |o| o.to_string());
        let _ = writeln!(
            out,
            "error object {at} {}: {:?}",
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
