//! The `file` sink: writes metrics to a file or to stdout in line protocol,
//! Telegraf's JSON shape or Telegraf's graphite format, with optional
//! size-based rotation.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use conflux_core::pipeline::BatchView;
use conflux_core::time::{Precision, parse_go_duration, power_of_ten_units};
use conflux_graphite::codec::encode::{Serializer, SerializerConfig, TagSanitizeMode};
use serde::Deserialize;

use crate::format::{Encoder, Format, json::JsonEncoder};
use crate::runner::{Sent, Sink, SinkError, Skipped};

/// `[sinks.NAME] type = "file"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A file path, or `stdout`.
    pub path: String,
    /// `influx` (default), `json` or `graphite`.
    #[serde(default)]
    pub format: Format,
    /// JSON only: timestamp units as a Go duration (`1ns`, `1us`, `1ms`,
    /// `1s`), rounded down to a power of ten as Telegraf does. Default `1s`.
    pub json_timestamp_units: Option<String>,
    /// Influx only: timestamp precision written (`ns` default, `us`, `ms`, `s`).
    pub influx_precision: Option<Precision>,
    /// Graphite only: prefix of every series.
    pub prefix: Option<String>,
    /// Graphite only: default template (`host.tags.measurement.field`).
    pub template: Option<String>,
    /// Graphite only: `"filter template"` pairs, first match on the measurement wins.
    pub templates: Option<Vec<String>>,
    /// Graphite only: write tags as `;k=v` instead of into the path.
    pub graphite_tag_support: Option<bool>,
    /// Graphite only, tag support: separator between measurement and field.
    pub graphite_separator: Option<String>,
    /// Graphite only, tag support: `strict` (default) or `compatible`.
    pub graphite_tag_sanitize_mode: Option<String>,
    /// Rotate the file once it would pass this size; unset means never.
    pub rotate_max_bytes: Option<u64>,
    /// Rotated files kept (`path.1` newest … `path.N`); default 5.
    #[serde(default = "default_rotate_max_archives")]
    pub rotate_max_archives: usize,
}

fn default_rotate_max_archives() -> usize {
    5
}

impl Config {
    /// Every problem with the settings.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.path.is_empty() {
            p.push("`path` must not be empty".to_owned());
        }
        let only = |set: bool, key: &str, format: Format, p: &mut Vec<String>| {
            if set && self.format != format {
                p.push(format!(
                    "`{key}` applies to format `{}` only, not `{}`",
                    format.as_str(),
                    self.format.as_str()
                ));
            }
        };
        only(
            self.json_timestamp_units.is_some(),
            "json_timestamp_units",
            Format::Json,
            &mut p,
        );
        only(
            self.influx_precision.is_some(),
            "influx_precision",
            Format::Influx,
            &mut p,
        );
        for (set, key) in [
            (self.prefix.is_some(), "prefix"),
            (self.template.is_some(), "template"),
            (self.templates.is_some(), "templates"),
            (self.graphite_tag_support.is_some(), "graphite_tag_support"),
            (self.graphite_separator.is_some(), "graphite_separator"),
            (
                self.graphite_tag_sanitize_mode.is_some(),
                "graphite_tag_sanitize_mode",
            ),
        ] {
            only(set, key, Format::Graphite, &mut p);
        }
        if let Some(u) = &self.json_timestamp_units
            && parse_go_duration(u).is_none()
        {
            p.push(format!(
                "`json_timestamp_units` = {u:?} is not a duration such as \"1ms\" or \"1s\""
            ));
        }
        if self.rotate_max_bytes == Some(0) {
            p.push("`rotate_max_bytes` must be at least 1".to_owned());
        }
        if self.path == "stdout" && self.rotate_max_bytes.is_some() {
            p.push("`rotate_max_bytes` cannot apply to stdout".to_owned());
        }
        if self.format == Format::Graphite
            && let Err(e) = self
                .graphite_config()
                .and_then(|c| Serializer::new(&c).map_err(|e| e.to_string()))
        {
            p.push(e);
        }
        p
    }

    fn graphite_config(&self) -> Result<SerializerConfig, String> {
        let tag_sanitize_mode = match self.graphite_tag_sanitize_mode.as_deref() {
            None | Some("strict") => TagSanitizeMode::Strict,
            Some("compatible") => TagSanitizeMode::Compatible,
            Some(other) => {
                return Err(format!(
                    "`graphite_tag_sanitize_mode` = {other:?}: expected \"strict\" or \"compatible\""
                ));
            }
        };
        Ok(SerializerConfig {
            prefix: self.prefix.clone().unwrap_or_default(),
            template: self.template.clone(),
            templates: self.templates.clone().unwrap_or_default(),
            tag_support: self.graphite_tag_support.unwrap_or(false),
            separator: self.graphite_separator.clone(),
            tag_sanitize_mode,
        })
    }

    fn encoder(&self) -> Result<Encoder, String> {
        Ok(match self.format {
            Format::Influx => Encoder::Influx(self.influx_precision.unwrap_or(Precision::Ns)),
            Format::Json => {
                let units = self.json_timestamp_units.as_deref().unwrap_or("1s");
                let d = parse_go_duration(units)
                    .ok_or_else(|| format!("bad json_timestamp_units {units:?}"))?;
                // Telegraf reads a zero duration as its default, one second.
                let units_ns = if d.is_zero() {
                    1_000_000_000
                } else {
                    power_of_ten_units(d)
                };
                Encoder::Json(JsonEncoder::new(units_ns))
            }
            Format::Graphite => {
                let cfg = self.graphite_config()?;
                Encoder::Graphite(Box::new(Serializer::new(&cfg).map_err(|e| e.to_string())?))
            }
        })
    }
}

enum Out {
    Stdout,
    File(Rotating),
}

struct Rotating {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: Option<u64>,
    archives: usize,
}

impl Rotating {
    fn open(path: &Path, max_bytes: Option<u64>, archives: usize) -> io::Result<Rotating> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Rotating {
            path: path.to_owned(),
            file,
            size,
            max_bytes,
            archives,
        })
    }

    fn archive(&self, n: usize) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        s.into()
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        if let Some(max) = self.max_bytes
            && self.size > 0
            && self.size + buf.len() as u64 > max
        {
            self.rotate()?;
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.archives == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            // path.N falls off; path.N-1 → path.N … path → path.1.
            let _ = std::fs::remove_file(self.archive(self.archives));
            for n in (1..self.archives).rev() {
                let from = self.archive(n);
                if from.exists() {
                    std::fs::rename(&from, self.archive(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.archive(1))?;
        }
        *self = Rotating::open(&self.path, self.max_bytes, self.archives)?;
        Ok(())
    }
}

impl Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Out::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(buf)?;
                out.flush()
            }
            Out::File(f) => f.write(buf),
        }
    }
}

/// Writes encoded metrics to a file or stdout.
pub struct FileSink {
    encoder: Encoder,
    out: Option<Out>,
    cfg: Config,
    buf: Vec<u8>,
}

impl FileSink {
    /// Open the output (creating parent directories) and build the encoder.
    ///
    /// # Errors
    /// The first problem of the config, or the I/O error opening the file.
    pub fn new(cfg: Config) -> Result<FileSink, String> {
        if let Some(p) = cfg.problems().into_iter().next() {
            return Err(p);
        }
        let encoder = cfg.encoder()?;
        let out = open(&cfg).map_err(|e| format!("open {}: {e}", cfg.path))?;
        Ok(FileSink {
            encoder,
            out: Some(out),
            cfg,
            buf: Vec::with_capacity(1 << 20),
        })
    }
}

fn open(cfg: &Config) -> io::Result<Out> {
    if cfg.path == "stdout" {
        Ok(Out::Stdout)
    } else {
        Rotating::open(
            Path::new(&cfg.path),
            cfg.rotate_max_bytes,
            cfg.rotate_max_archives,
        )
        .map(Out::File)
    }
}

impl Sink for FileSink {
    async fn send(&mut self, batch: &[BatchView]) -> Result<Sent, SinkError> {
        self.buf.clear();
        let mut sent = Sent::default();
        let mut skipped = Skipped::default();
        for view in batch {
            for m in view.iter() {
                let points = self.encoder.encode(&m, &mut self.buf, &mut skipped);
                if points > 0 {
                    sent.metrics += 1;
                    sent.points += points;
                }
            }
        }
        sent.skipped = skipped;
        sent.bytes = self.buf.len();
        // A failed write leaves `out` empty; reopen on the next attempt.
        let mut out = match self.out.take() {
            Some(o) => o,
            None => open(&self.cfg)
                .map_err(|e| SinkError::retry(format!("open {}: {e}", self.cfg.path)))?,
        };
        let buf = std::mem::take(&mut self.buf);
        // File I/O blocks; keep it off the async workers.
        let (out, buf, res) = tokio::task::spawn_blocking(move || {
            let res = out.write(&buf);
            (out, buf, res)
        })
        .await
        .map_err(|e| SinkError::retry(format!("writer task failed: {e}")))?;
        self.buf = buf;
        match res {
            Ok(()) => {
                self.out = Some(out);
                Ok(sent)
            }
            Err(e) => Err(SinkError::retry(format!("write {}: {e}", self.cfg.path))),
        }
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        if let Some(Out::File(mut f)) = self.out.take() {
            // fsync fails on pipes and character devices; only files need it.
            tokio::task::spawn_blocking(move || {
                f.file.flush()?;
                match f.file.metadata() {
                    Ok(m) if m.is_file() => f.file.sync_all(),
                    _ => Ok(()),
                }
            })
            .await
            .map_err(|e| SinkError::retry(e.to_string()))?
            .map_err(|e| SinkError::retry(format!("sync {}: {e}", self.cfg.path)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use conflux_core::{Batch, Metric};

    use super::*;

    fn cfg(src: &str) -> Config {
        toml::from_str(src).unwrap()
    }

    fn view(metrics: Vec<Metric>) -> BatchView {
        BatchView::whole(Arc::new(metrics.into_iter().collect::<Batch>()))
    }

    #[test]
    fn lists_every_problem() {
        let c = cfg(r#"path = ""
format = "influx"
template = "x"
json_timestamp_units = "soon""#);
        let p = c.problems();
        assert_eq!(p.len(), 4, "{p:#?}");
        assert!(
            p.iter()
                .any(|s| s.contains("`template` applies to format `graphite` only"))
        );
    }

    #[test]
    fn rejects_unknown_keys() {
        let e = toml::from_str::<Config>("path = \"x\"\nformt = \"json\"").unwrap_err();
        assert!(e.to_string().contains("formt"), "{e}");
    }

    #[tokio::test]
    async fn writes_counts_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.lp");
        let mut sink =
            FileSink::new(cfg(&format!("path = {:?}\nformat = \"graphite\"", path))).unwrap();
        let v = view(vec![
            Metric::new("cpu")
                .tag("host", "a")
                .field("idle", 1.5)
                .field("s", "x")
                .at(2_000_000_000),
            Metric::new("only_string")
                .tag("host", "a")
                .field("s", "x")
                .at(0),
        ]);
        let sent = sink.send(&[v]).await.unwrap();
        sink.close().await.unwrap();
        assert_eq!(sent.metrics, 1);
        assert_eq!(sent.points, 1);
        assert_eq!(sent.skipped.string, 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "a.cpu.idle 1.5 2\n");
        assert_eq!(sent.bytes, text.len());
    }

    #[tokio::test]
    async fn rotates_by_size_and_keeps_n_archives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.out");
        let mut sink = FileSink::new(cfg(&format!(
            "path = {:?}\nrotate_max_bytes = 40\nrotate_max_archives = 2",
            path
        )))
        .unwrap();
        // Each line is 16 bytes: "m v=1 <9-digit timestamp>\n".
        for i in 0..7 {
            let v = view(vec![Metric::new("m").field("v", 1.0).at(100_000_000 + i)]);
            sink.send(&[v]).await.unwrap();
        }
        sink.close().await.unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let a1 = Path::new(&format!("{}.1", path.display())).to_owned();
        let a2 = Path::new(&format!("{}.2", path.display())).to_owned();
        let a3 = Path::new(&format!("{}.3", path.display())).to_owned();
        assert_eq!(read(&path).lines().count(), 1);
        assert_eq!(read(&a1).lines().count(), 2);
        assert_eq!(read(&a2).lines().count(), 2);
        assert!(!a3.exists());
        assert!(read(&path).contains("100000006"));
        assert!(read(&a2).contains("100000002"));
    }
}
