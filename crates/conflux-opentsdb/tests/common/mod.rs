//! Helpers shared by the integration tests: fixtures, their options and a
//! readable dump of what the codec returned.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use conflux_core::time::SecondsOrMillis;
use conflux_core::{Batch, Value};
use conflux_opentsdb::codec::{Characters, Event, ParseOptions, PointError};

/// The telnet fixtures.
pub fn telnet_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/opentsdb")
}

/// The `/api/put` fixtures.
pub fn json_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/opentsdb-json")
}

/// Every `<case>.<ext>` in `dir`, sorted by name.
pub fn fixtures(dir: &Path, ext: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
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

/// Options from leading `#! key=value …` lines, and the input with those
/// lines blanked (so line numbers stay those of the file; the parser skips
/// empty lines). Keys: `timestamp_rule`, `characters`, `special_chars`,
/// `max_tags`, `require_tags`.
pub fn fixture_options(input: &[u8]) -> (ParseOptions, Vec<u8>) {
    let mut opts = ParseOptions::default();
    let mut body = input.to_vec();
    let mut pos = 0;
    while body[pos..].starts_with(b"#! ") {
        let end = body[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| pos + i);
        let line = std::str::from_utf8(&body[pos + 3..end]).expect("options are UTF-8");
        for kv in line.split_whitespace() {
            let (k, v) = kv.split_once('=').expect("key=value");
            match k {
                "timestamp_rule" => {
                    opts.timestamps = toml_enum::<SecondsOrMillis>(v);
                }
                "characters" => opts.characters = toml_enum::<Characters>(v),
                "special_chars" => opts.special_chars = v.to_owned(),
                "max_tags" => opts.max_tags = v.parse().expect("max_tags"),
                "require_tags" => opts.require_tags = v.parse().expect("require_tags"),
                other => panic!("unknown fixture option {other}"),
            }
        }
        body.drain(pos..end);
        pos += usize::from(pos < body.len());
    }
    (opts, body)
}

fn toml_enum<T: serde::de::DeserializeOwned>(v: &str) -> T {
    #[derive(serde::Deserialize)]
    struct W<T> {
        v: T,
    }
    let w: W<T> = serde_json::from_str(&format!("{{\"v\":\"{v}\"}}")).expect("option value");
    w.v
}

/// A readable, line-oriented dump of parsed metrics and events. Strings are
/// written with Rust's debug escapes so that tabs and odd bytes show.
pub fn dump(batch: &Batch, events: &[Event]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {} metrics, {} events", batch.len(), events.len());
    dump_metrics(batch, &mut out);
    for e in events {
        match e {
            Event::Error(e) => {
                let _ = writeln!(
                    out,
                    "error line {} {}: {:?}",
                    e.line,
                    e.kind.reason(),
                    e.message
                );
            }
            Event::Command { line, command } => {
                let _ = writeln!(out, "command line {line} {command:?}");
            }
        }
    }
    out
}

/// Dump of an `/api/put` outcome.
pub fn dump_put(batch: &Batch, total: usize, errors: &[PointError]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {} points, {} kept, {} refused",
        total,
        batch.len(),
        errors.len()
    );
    dump_metrics(batch, &mut out);
    for e in errors {
        let _ = writeln!(
            out,
            "error point {} {}: {:?}\n  datapoint {}",
            e.index,
            e.kind.reason(),
            e.message,
            e.datapoint.as_deref().unwrap_or("-")
        );
    }
    out
}

fn dump_metrics(batch: &Batch, out: &mut String) {
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

/// Compare `got` with `path`, or write it there with `UPDATE_GOLDEN=1`.
pub fn check_golden(path: &Path, got: &str, failures: &mut Vec<String>) {
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(path, got).unwrap();
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(want) if want == got => {}
        Ok(want) => failures.push(format!("{}: got\n{got}\nwant\n{want}", path.display())),
        Err(e) => failures.push(format!(
            "{}: {e} (run with UPDATE_GOLDEN=1)",
            path.display()
        )),
    }
}
