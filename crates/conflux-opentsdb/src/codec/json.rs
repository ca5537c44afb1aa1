//! `/api/put` bodies: one JSON object `{metric, timestamp, value, tags}` or
//! an array of them, read as OpenTSDB 2.4 reads them
//! (`HttpJsonSerializer.parsePutV1`, `IncomingDataPoint.validate`,
//! `PutDataPointRpc.processDataPoint`).
//!
//! The body is read in one streaming pass straight into the batch (no
//! intermediate list of points). A body that is not JSON of that shape is
//! refused whole ([`JsonError`]); otherwise each point stands alone: good
//! points are kept, bad ones get OpenTSDB's per-point error text.
//!
//! Per field:
//! - `metric`: a string; missing, `null` or `""` gives `Metric name was empty`.
//! - `timestamp`: an integer in seconds or milliseconds by the rule, or a
//!   string holding one (Jackson's coercion); a number with a fraction is
//!   seconds, rounded to the millisecond (OpenTSDB truncates it to the
//!   second). Missing or not positive: `Invalid timestamp`.
//! - `value`: a number, or a string read by the telnet rules; missing, `null`
//!   or `""` gives `Empty value`; anything else `Unable to parse value to a
//!   number`.
//! - `tags`: an object of strings (numbers and booleans are taken as their
//!   text, as Jackson does); a repeated key keeps its last value.
//! - Other keys are ignored.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use conflux_core::metric::Limits;
use conflux_core::{Batch, Value};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::ParseOptions;
use super::error::{ErrorKind, PointError, QUOTE_BYTES, clip};
use super::rules::{Fail, check_names, finite, not_positive, read_time, read_value, too_many_tags};
use super::telnet::{Repeats, store};

/// The outcome of a body that was JSON of the right shape.
#[derive(Debug, Default)]
pub struct Put {
    /// The good points.
    pub batch: Batch,
    /// Points in the body (good and bad).
    pub total: usize,
    /// The bad points, in body order.
    pub errors: Vec<PointError>,
}

/// A body refused whole, with OpenTSDB's message (and details).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Empty, or only whitespace.
    #[error("Missing request content")]
    Empty,
    /// Neither an object nor an array.
    #[error("The JSON must start as an object or an array")]
    NotObjectOrArray,
    /// An empty array.
    #[error("No datapoints found in content")]
    NoDatapoints,
    /// Not JSON, or JSON of another shape; the parser's reason.
    #[error("Unable to parse the given JSON")]
    Syntax(String),
}

impl JsonError {
    /// OpenTSDB's `details` for the error answer, when it has one.
    pub fn details(&self) -> Option<&str> {
        match self {
            JsonError::Syntax(d) => Some(d),
            _ => None,
        }
    }
}

/// Read an `/api/put` body into a batch with the default [`Limits`]. `echo`
/// fills [`PointError::datapoint`] (the `details` answer needs it; building
/// it costs an allocation per bad point).
///
/// # Errors
/// [`JsonError`] when the body is not one object or an array of objects
/// (`null` elements are per-point errors); nothing is kept then.
pub fn parse_put(body: &[u8], opts: &ParseOptions, echo: bool) -> Result<Put, JsonError> {
    parse_put_with_limits(body, opts, Limits::default(), echo)
}

/// [`parse_put`] into a batch with `limits`: a point past them is a
/// per-point error (`too_many_tags`, `series_key_too_long`).
///
/// # Errors
/// As [`parse_put`].
pub fn parse_put_with_limits(
    body: &[u8],
    opts: &ParseOptions,
    limits: Limits,
    echo: bool,
) -> Result<Put, JsonError> {
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    let array = match first.map(|i| body[i]) {
        None => return Err(JsonError::Empty),
        Some(b'{') => false,
        Some(b'[') => true,
        Some(_) => return Err(JsonError::NotObjectOrArray),
    };
    let mut ctx = Ctx {
        opts,
        echo,
        out: Put {
            // Points are about 150 bytes of JSON, of which names and tags
            // are most: size the arena by the body.
            batch: Batch::with_capacity(body.len() / 150 + 1, body.len() / 2),
            ..Put::default()
        },
        tags: Vec::with_capacity(16),
    };
    ctx.out.batch.set_limits(limits);
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = if array {
        de.deserialize_seq(Body { ctx: &mut ctx })
    } else {
        de.deserialize_map(Body { ctx: &mut ctx })
    };
    result
        .and_then(|()| de.end())
        .map_err(|e| JsonError::Syntax(clip(&e.to_string(), 2 * QUOTE_BYTES).to_owned()))?;
    if ctx.out.total == 0 {
        return Err(JsonError::NoDatapoints);
    }
    Ok(ctx.out)
}

struct Ctx<'o, 'de> {
    opts: &'o ParseOptions,
    echo: bool,
    out: Put,
    /// The tags of the current point, reused from point to point.
    tags: Vec<(Str<'de>, Str<'de>)>,
}

/// A string borrowed from the body unless it held an escape.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Str<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Str<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
        Ok(Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
        Ok(Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'de>, E> {
        Ok(Str(Cow::Owned(v)))
    }
}

/// A JSON scalar as a field may hold it.
#[derive(Debug, Clone, PartialEq)]
enum Scalar<'de> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Cow<'de, str>),
}

impl Scalar<'_> {
    /// The text Jackson would coerce this scalar to, for tags and echoes.
    fn text(&self) -> Option<Cow<'_, str>> {
        Some(match self {
            Scalar::Null => return None,
            Scalar::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Scalar::I64(i) => Cow::Owned(i.to_string()),
            Scalar::U64(u) => Cow::Owned(u.to_string()),
            Scalar::F64(f) => Cow::Owned(format!("{f:?}")),
            Scalar::Str(s) => Cow::Borrowed(s),
        })
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, a number, a boolean or null")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::I64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::F64(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
}

/// The top level: one object or an array of them.
struct Body<'c, 'o, 'de> {
    ctx: &'c mut Ctx<'o, 'de>,
}

impl<'de> Visitor<'de> for Body<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a data point object or an array of them")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.ctx.point(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Element {
                ctx: &mut *self.ctx,
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// One element of the array: an object, or `null`.
struct Element<'c, 'o, 'de> {
    ctx: &'c mut Ctx<'o, 'de>,
}

impl<'de> DeserializeSeed<'de> for Element<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Element<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a data point object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.ctx.point(map)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        let ctx = self.ctx;
        let index = ctx.out.total;
        ctx.out.total += 1;
        ctx.out.errors.push(PointError {
            index,
            message: "Unexpected null datapoint encountered in set.".to_owned(),
            kind: ErrorKind::NullDatapoint,
            datapoint: ctx.echo.then(|| "null".to_owned()),
        });
        Ok(())
    }
}

/// The `tags` object, read into the context's reused list.
struct TagsSeed<'c, 'de> {
    tags: &'c mut Vec<(Str<'de>, Str<'de>)>,
    /// A tag whose value was `null` (OpenTSDB refuses the point).
    null_value: &'c mut Option<Str<'de>>,
}

impl<'de> DeserializeSeed<'de> for TagsSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TagsSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of tags")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(k) = map.next_key::<Str<'de>>()? {
            let v = match map.next_value::<Scalar<'de>>()? {
                Scalar::Str(s) => Str(s),
                Scalar::Null => {
                    *self.null_value = Some(k);
                    continue;
                }
                other => Str(Cow::Owned(other.text().unwrap_or_default().into_owned())),
            };
            self.tags.push((k, v));
        }
        Ok(())
    }
}

/// The fields of one point, as read.
#[derive(Default)]
struct Raw<'de> {
    metric: Option<Str<'de>>,
    timestamp: Option<Scalar<'de>>,
    value: Option<Scalar<'de>>,
    tags_given: bool,
    null_tag: Option<Str<'de>>,
}

impl<'de> Ctx<'_, 'de> {
    fn point<A: MapAccess<'de>>(&mut self, mut map: A) -> Result<(), A::Error> {
        self.tags.clear();
        let mut raw = Raw::default();
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match &*key.0 {
                "metric" => raw.metric = map.next_value::<Option<Str<'de>>>()?,
                "timestamp" => raw.timestamp = Some(map.next_value()?),
                "value" => raw.value = Some(map.next_value()?),
                "tags" => {
                    // A repeated `tags` key replaces the earlier object.
                    self.tags.clear();
                    raw.null_tag = None;
                    raw.tags_given = true;
                    map.next_value_seed(TagsSeed {
                        tags: &mut self.tags,
                        null_value: &mut raw.null_tag,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let index = self.out.total;
        self.out.total += 1;
        if let Err(f) = self.check_and_store(&raw) {
            let message = match f.kind {
                // OpenTSDB catches NumberFormatException with its own words.
                ErrorKind::InvalidValue if f.class == super::rules::Class::InvalidValue => {
                    "Unable to parse value to a number".to_owned()
                }
                _ => f.text.into_owned(),
            };
            let datapoint = self.echo.then(|| echo(&raw, &self.tags));
            self.out.errors.push(PointError {
                index,
                message,
                kind: f.kind,
                datapoint,
            });
        }
        Ok(())
    }

    /// OpenTSDB's checks in its order: `validate`, then `addPoint`.
    fn check_and_store(&mut self, raw: &Raw<'de>) -> Result<(), Fail> {
        let opts = self.opts;
        let metric = raw.metric.as_ref().map_or("", |m| m.0.as_ref());
        if metric.is_empty() {
            return Err(Fail::illegal(
                ErrorKind::MissingMetric,
                "Metric name was empty",
            ));
        }
        let invalid_ts = || Fail::illegal(ErrorKind::InvalidTimestamp, "Invalid timestamp");
        let time = match &raw.timestamp {
            None | Some(Scalar::Null) => return Err(invalid_ts()),
            Some(Scalar::I64(t)) if *t > 0 => Time::Int(*t),
            Some(Scalar::U64(t)) if *t > 0 => Time::Int(i64::try_from(*t).unwrap_or(i64::MAX)),
            Some(Scalar::F64(t)) if *t > 0.0 => Time::Float(*t),
            Some(Scalar::Str(s)) => Time::Raw(read_time(s).map_err(|_| invalid_ts())?),
            Some(_) => return Err(invalid_ts()),
        };
        let value = match &raw.value {
            None | Some(Scalar::Null) => None,
            Some(Scalar::Str(s)) if s.is_empty() => None,
            Some(v) => Some(v),
        };
        let Some(value) = value else {
            return Err(Fail::illegal(ErrorKind::MissingValue, "Empty value"));
        };
        if opts.require_tags && self.tags.is_empty() && raw.null_tag.is_none() {
            return Err(Fail::illegal(ErrorKind::MissingTags, "Missing tags"));
        }
        let not_a_number = || Fail::invalid(ErrorKind::InvalidValue, "");
        let value = match value {
            Scalar::I64(i) => Value::Int(*i),
            Scalar::U64(u) => Value::Int(i64::try_from(*u).map_err(|_| not_a_number())?),
            Scalar::F64(f) => Value::Float(*f),
            Scalar::Str(s) => read_value(s)?,
            Scalar::Bool(_) | Scalar::Null => return Err(not_a_number()),
        };
        let shown = time.shown();
        finite(&value, metric, &shown)?;
        let ts = time.to_ns(opts)?;
        let n = self.tags.len() + usize::from(raw.null_tag.is_some());
        if n > opts.max_tags {
            return Err(too_many_tags(n, opts.max_tags));
        }
        if let Some(k) = &raw.null_tag {
            return Err(Fail::illegal(
                ErrorKind::InvalidCharacter,
                format!(
                    "Invalid tag value with key [{}]: null",
                    clip(&k.0, QUOTE_BYTES)
                ),
            ));
        }
        let tags = &self.tags;
        check_names(metric, tags.iter().map(|(k, v)| (&*k.0, &*v.0)), opts)?;
        TagPairs(tags).store(&mut self.out.batch, metric, value, ts)
    }
}

/// Hands the tag list to the shared `store` without copying it.
struct TagPairs<'t, 'de>(&'t [(Str<'de>, Str<'de>)]);

impl TagPairs<'_, '_> {
    fn store(
        &self,
        batch: &mut Batch,
        metric: &str,
        value: Value<'_>,
        ts: i64,
    ) -> Result<(), Fail> {
        // Up to 16 tags are passed on the stack; more are rare enough to allocate.
        let mut small: [(&str, &str); 16] = [("", ""); 16];
        let n = self.0.len();
        if n <= small.len() {
            for (slot, (k, v)) in small.iter_mut().zip(self.0) {
                *slot = (&k.0, &v.0);
            }
            store(batch, metric, &small[..n], value, ts, Repeats::LastWins)
        } else {
            let all: Vec<(&str, &str)> = self.0.iter().map(|(k, v)| (&*k.0, &*v.0)).collect();
            store(batch, metric, &all, value, ts, Repeats::LastWins)
        }
    }
}

/// A timestamp as the JSON gave it.
enum Time {
    Int(i64),
    Float(f64),
    Raw(super::rules::RawTime),
}

impl Time {
    /// The timestamp as OpenTSDB's messages show it (its `long`).
    fn shown(&self) -> String {
        match self {
            Time::Int(t) => t.to_string(),
            Time::Float(f) => format!("{}", f.trunc()),
            Time::Raw(super::rules::RawTime::Int(t)) => t.to_string(),
            Time::Raw(super::rules::RawTime::Dotted { secs, .. }) => secs.to_string(),
        }
    }

    fn to_ns(&self, opts: &ParseOptions) -> Result<i64, Fail> {
        use super::rules::RawTime;
        match *self {
            Time::Int(t) if t <= 0 => Err(not_positive(t)),
            Time::Int(t) => RawTime::Int(t).to_ns(opts.timestamps),
            Time::Raw(r) => r.to_ns(opts.timestamps),
            Time::Float(f) if f.fract() == 0.0 && f < 9.2e18 => {
                RawTime::Int(f as i64).to_ns(opts.timestamps)
            }
            Time::Float(f) => {
                // Seconds with a fraction, to the millisecond.
                let ms = (f * 1000.0).round();
                let secs = (ms / 1000.0).floor();
                if !(1.0..9.2e15).contains(&secs) {
                    return Err(not_positive(secs as i64));
                }
                RawTime::Dotted {
                    secs: secs as i64,
                    frac_ns: (ms - secs * 1000.0) as i64 * 1_000_000,
                }
                .to_ns(opts.timestamps)
            }
        }
    }
}

/// The point as OpenTSDB's `details` answer shows it: Jackson's view of an
/// `IncomingDataPoint` (`metric`, `timestamp`, `value` as a string, `tags`;
/// nulls left out).
fn echo(raw: &Raw<'_>, tags: &[(Str<'_>, Str<'_>)]) -> String {
    let mut out = String::with_capacity(96);
    out.push('{');
    if let Some(m) = &raw.metric {
        out.push_str("\"metric\":");
        json_string(&m.0, &mut out);
        out.push(',');
    }
    let ts = match &raw.timestamp {
        Some(Scalar::I64(t)) => *t,
        Some(Scalar::U64(t)) => i64::try_from(*t).unwrap_or(i64::MAX),
        Some(Scalar::F64(f)) => *f as i64,
        Some(Scalar::Str(s)) => super::rules::parse_long(s).unwrap_or(0),
        _ => 0,
    };
    let _ = write!(out, "\"timestamp\":{ts}");
    if let Some(v) = raw.value.as_ref().and_then(Scalar::text) {
        out.push_str(",\"value\":");
        json_string(&v, &mut out);
    }
    if raw.tags_given {
        out.push_str(",\"tags\":{");
        for (i, (k, v)) in tags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_string(&k.0, &mut out);
            out.push(':');
            json_string(&v.0, &mut out);
        }
        if let Some(k) = &raw.null_tag {
            if !tags.is_empty() {
                out.push(',');
            }
            json_string(&k.0, &mut out);
            out.push_str(":null");
        }
        out.push('}');
    }
    out.push('}');
    out
}

/// `s` as a JSON string literal, appended to `out`.
pub(crate) fn json_string(s: &str, out: &mut String) {
    out.push('"');
    let mut last = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&s[last..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        last = i + c.len_utf8();
    }
    out.push_str(&s[last..]);
    out.push('"');
}

#[cfg(test)]
mod tests;
