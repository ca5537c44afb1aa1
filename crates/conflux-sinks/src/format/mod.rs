//! Output formats shared by the sinks that write text: line protocol, Telegraf's
//! JSON shape and Telegraf's graphite serializer.

pub mod json;

use conflux_core::metric::{MetricRef, Value};
use conflux_core::time::Precision;
use conflux_graphite::codec::encode::Serializer as GraphiteSerializer;
use serde::Deserialize;

use crate::runner::Skipped;

/// A text output format, as named in config (`format = "…"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// InfluxDB line protocol.
    #[default]
    Influx,
    /// Telegraf's JSON serializer shape, one object per line.
    Json,
    /// Telegraf's graphite serializer (template or tag-support mode).
    Graphite,
}

impl Format {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Influx => "influx",
            Format::Json => "json",
            Format::Graphite => "graphite",
        }
    }
}

/// A ready encoder for one format.
pub enum Encoder {
    /// Line protocol with the given timestamp precision.
    Influx(Precision),
    /// Telegraf JSON.
    Json(json::JsonEncoder),
    /// Telegraf graphite.
    Graphite(Box<GraphiteSerializer>),
}

impl Encoder {
    /// Append metric `m` to `out`; returns the points written and adds what
    /// was skipped, by reason, to `skipped`.
    pub fn encode(&mut self, m: &MetricRef<'_>, out: &mut Vec<u8>, skipped: &mut Skipped) -> usize {
        let written = match self {
            Encoder::Influx(p) => conflux_influx::codec::encode_with(m, *p, out),
            Encoder::Json(j) => j.encode(m, out).0,
            Encoder::Graphite(g) => g.encode(m, out).0,
        };
        let total = m.fields().len();
        if written < total {
            // Attribute skips by value: strings (graphite only: the other
            // formats carry them), non-finite floats; anything else skipped is
            // a series the graphite template could not name.
            let (mut strings, mut non_finite) = (0, 0);
            for (_, v) in m.fields() {
                match v {
                    Value::Str(_) if matches!(self, Encoder::Graphite(_)) => strings += 1,
                    Value::Float(f) if !f.is_finite() => non_finite += 1,
                    _ => {}
                }
            }
            let mut left = total - written;
            for (slot, n) in [
                (&mut skipped.string, strings),
                (&mut skipped.non_finite, non_finite),
            ] {
                let n = n.min(left);
                *slot += n;
                left -= n;
            }
            skipped.invalid_name += left;
        }
        written
    }
}
