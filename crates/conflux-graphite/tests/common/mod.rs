//! Helpers shared by the integration tests: fixture loading, options and a
//! readable dump of what a parse produced.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use conflux_core::{Batch, Value};
use conflux_graphite::codec::{LineError, ParseOptions, Parser, Templates};

/// Receive time given to fixtures (2023-11-14T22:13:20.123456789Z).
pub const FIXTURE_NOW: i64 = 1_700_000_000_123_456_789;

pub fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

/// Every `<case>.<ext>` under `tests/fixtures/<kind>`, sorted by name.
pub fn fixtures(kind: &str, ext: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fixture_dir(kind);
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == ext) {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}

/// Settings of a fixture, from `<case>.toml` beside it (all optional).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureConfig {
    #[serde(default)]
    pub separator: Option<String>,
    #[serde(default)]
    pub templates: Vec<String>,
    #[serde(default)]
    pub zero_timestamp_is_now: bool,
}

/// The parser and options for fixture `name` of `kind`.
pub fn fixture_parser(kind: &str, name: &str) -> (Parser, ParseOptions) {
    let path = fixture_dir(kind).join(format!("{name}.toml"));
    let cfg: FixtureConfig = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        Err(_) => FixtureConfig::default(),
    };
    let sep = cfg.separator.as_deref().unwrap_or(".");
    let templates =
        Templates::new(sep, &cfg.templates).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    let opts = ParseOptions {
        default_timestamp_ns: FIXTURE_NOW,
        zero_is_now: cfg.zero_timestamp_is_now,
    };
    (Parser::new(Arc::new(templates)), opts)
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
        let _ = writeln!(out, "error {} {}: {:?}", e.line, e.kind.reason(), e.message);
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

/// Compare `got` with `<dir>/<name>.expected`, or write it with `UPDATE_GOLDEN=1`.
/// Returns a failure description.
pub fn check_golden(kind: &str, name: &str, got: &str) -> Option<String> {
    let path = fixture_dir(kind).join(format!("{name}.expected"));
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, got).unwrap();
        return None;
    }
    match std::fs::read_to_string(&path) {
        Ok(want) if want == got => None,
        Ok(want) => Some(format!("{kind}/{name}: got\n{got}\nwant\n{want}")),
        Err(e) => Some(format!(
            "{}: {e} (run with UPDATE_GOLDEN=1)",
            path.display()
        )),
    }
}
