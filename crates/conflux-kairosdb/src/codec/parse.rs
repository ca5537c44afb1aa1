//! The streaming parser of `POST /api/v1/datapoints` bodies.
//!
//! The body is read once by `serde_json` through visitors that keep only the
//! metric object being read (its strings in one reused buffer, its data points
//! in one reused list), validate it as KairosDB's `DataPointsParser` does, and
//! write its points straight into the [`Batch`]: no `serde_json::Value` tree,
//! so a body of tens of megabytes costs the batch plus one object.
//!
//! Rules (KairosDB 1.3, `DataPointsParser.java`, `Validator.java`):
//! - the body is an array of metric objects or one object; anything else is
//!   `Invalid start of json.`, an empty or truncated body
//!   `Invalid json. No content due to end of input.`;
//! - `time` is an alias of `timestamp` and wins when both are present;
//!   timestamps are milliseconds;
//! - a value is typed by `type` (per object, or per data point as a third
//!   element), else inferred: a number, or a string that looks like one, is a
//!   `long` without a `.` and a `double` with one; any other string, or a
//!   bool, is a `string`; only `long`, `double` and `string` are registered;
//! - an object with an invalid name, tags, timestamp or value stores nothing;
//!   a bad data point skips that point only; every other object is kept;
//! - an object past the batch's limits (the listener's `max_tags_per_metric`
//!   and `max_series_key_bytes`, Conflux's rules) stores nothing either, and
//!   is reported once, not once per data point.
//!
//! Where KairosDB fails the whole request (a Gson type error, a 500 on an
//! unparsable number), Conflux rejects only the object or data point at fault;
//! `docs/protocols.md` lists these differences.

use conflux_core::Batch;
use conflux_core::metric::{MetricError, Value};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::{Context, ErrorKind, ParseError, TagRef, unregistered};

/// `Invalid json. No content due to end of input.`: an empty or truncated body.
pub const END_OF_INPUT: &str = "Invalid json. No content due to end of input.";
/// `Invalid start of json.`: a body that is neither an array nor an object.
pub const INVALID_START: &str = "Invalid start of json.";

/// Smallest and largest millisecond timestamps that fit i64 nanoseconds.
pub const MIN_MS: i64 = i64::MIN / 1_000_000;
/// See [`MIN_MS`].
pub const MAX_MS: i64 = i64::MAX / 1_000_000;

const RANGE_RULE: &str = " must be between -9223372036854 and 9223372036854.";

/// How [`parse`] reads a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Reject objects without tags, as KairosDB does (`tags count must be
    /// greater than or equal to 1.`). Off, they are kept without tags.
    pub require_tags: bool,
    /// Error messages kept at most; later errors are only counted (a hostile
    /// body of millions of bad objects must not turn into millions of strings).
    pub max_errors: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            require_tags: true,
            max_errors: 1_000,
        }
    }
}

/// What one [`parse`] call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Metric objects read (valid or not).
    pub objects: usize,
    /// Metrics (data points) added to the batch.
    pub metrics: usize,
    /// Errors found, including those past [`ParseOptions::max_errors`].
    pub errors: usize,
    /// Errors by kind, indexed by [`ErrorKind::index`].
    pub by_kind: [usize; ErrorKind::ALL.len()],
}

/// Parse a `/api/v1/datapoints` body, appending one metric per data point to
/// `batch` (name, tags, one field `value`, timestamp in ns, `ttl` as metadata)
/// and one [`ParseError`] per problem to `errors`, in body order.
pub fn parse(
    body: &[u8],
    opts: &ParseOptions,
    batch: &mut Batch,
    errors: &mut Vec<ParseError>,
) -> Summary {
    let mut st = State {
        batch,
        report: Report {
            errors,
            max: opts.max_errors,
            summary: Summary::default(),
        },
        require_tags: opts.require_tags,
        index: 0,
        in_array: false,
        obj: Obj::default(),
        num: String::new(),
        tags: Vec::new(),
    };
    match body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        None => {
            st.report
                .error(None, ErrorKind::InvalidJson, || END_OF_INPUT.to_owned());
            return st.report.summary;
        }
        Some(b'[' | b'{') => {}
        Some(_) => {
            st.report
                .error(None, ErrorKind::InvalidJson, || INVALID_START.to_owned());
            return st.report.summary;
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let (result, at) = match de.deserialize_any(Top { st: &mut st }) {
        // Something after the array or object: no object to blame.
        Ok(()) => (de.end(), None),
        Err(e) => (Err(e), st.in_array.then_some(st.index)),
    };
    if let Err(e) = result {
        let message = if e.classify() == serde_json::error::Category::Eof {
            END_OF_INPUT.to_owned()
        } else {
            e.to_string()
        };
        st.report.error(at, ErrorKind::InvalidJson, || message);
    }
    st.report.summary
}

/// A span of the current object's string buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Sp {
    start: usize,
    end: usize,
}

/// A JSON value as read, before the object's `type` is known.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
enum Pending {
    #[default]
    Absent,
    Null,
    Int(i64),
    /// Above `i64::MAX`.
    UInt(u64),
    Float(f64),
    Bool(bool),
    Str(Sp),
    EmptyArray,
    /// A non-empty array or an object.
    Complex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Container {
    #[default]
    Absent,
    Null,
    Present,
    Invalid,
}

#[derive(Debug, Clone, Copy)]
struct Tag {
    key: Sp,
    value: Pending,
}

#[derive(Debug, Clone, Copy, Default)]
struct Point {
    /// Elements seen, up to 3.
    len: u8,
    not_array: bool,
    ts: Pending,
    value: Pending,
    kind: Pending,
}

/// The metric object being read; its buffers are reused for the next one.
#[derive(Debug, Default)]
struct Obj {
    text: String,
    name: Pending,
    timestamp: Pending,
    time: Pending,
    value: Pending,
    kind: Pending,
    ttl: Pending,
    skip_validate: Pending,
    tags_state: Container,
    tags: Vec<Tag>,
    points_state: Container,
    points: Vec<Point>,
}

impl Obj {
    fn clear(&mut self) {
        self.text.clear();
        self.name = Pending::Absent;
        self.timestamp = Pending::Absent;
        self.time = Pending::Absent;
        self.value = Pending::Absent;
        self.kind = Pending::Absent;
        self.ttl = Pending::Absent;
        self.skip_validate = Pending::Absent;
        self.tags_state = Container::Absent;
        self.tags.clear();
        self.points_state = Container::Absent;
        self.points.clear();
    }

    fn s(&self, sp: Sp) -> &str {
        self.text.get(sp.start..sp.end).unwrap_or_default()
    }

    /// A scalar as text, the way Gson reads a JSON number or bool into a
    /// `String` field; `None` for null, absent, arrays and objects.
    fn text_of(&mut self, p: Pending) -> Option<Sp> {
        let start = self.text.len();
        match p {
            Pending::Str(sp) => return Some(sp),
            Pending::Int(i) => self.text.push_str(itoa::Buffer::new().format(i)),
            Pending::UInt(u) => self.text.push_str(itoa::Buffer::new().format(u)),
            Pending::Float(f) => push_float_text(&mut self.text, f),
            Pending::Bool(b) => self.text.push_str(if b { "true" } else { "false" }),
            _ => return None,
        }
        Some(Sp {
            start,
            end: self.text.len(),
        })
    }
}

fn push_float_text(out: &mut String, f: f64) {
    use std::fmt::Write as _;
    let _ = write!(out, "{f}");
}

/// Where errors go: kept up to the limit, always counted.
struct Report<'o> {
    errors: &'o mut Vec<ParseError>,
    max: usize,
    summary: Summary,
}

impl Report<'_> {
    fn error(&mut self, object: Option<usize>, kind: ErrorKind, message: impl FnOnce() -> String) {
        self.summary.errors += 1;
        self.summary.by_kind[kind.index()] += 1;
        if self.errors.len() < self.max {
            self.errors.push(ParseError {
                object,
                kind,
                message: message(),
            });
        }
    }
}

struct State<'o> {
    batch: &'o mut Batch,
    report: Report<'o>,
    require_tags: bool,
    /// Index of the object being read.
    index: usize,
    /// Whether the body is an array (syntax errors then name their object).
    in_array: bool,
    obj: Obj,
    /// Numbers written as text for `type: string`.
    num: String,
    /// The object's tags as spans of `obj.text`, once checked.
    tags: Vec<(Sp, Sp)>,
}

impl State<'_> {
    /// A metric object that is not an object at all (`[5]`, `[null]`).
    fn not_an_object(&mut self) {
        let index = self.index;
        self.report.error(Some(index), ErrorKind::InvalidType, || {
            format!("metric[{index}] is an invalid type")
        });
        self.report.summary.objects += 1;
        self.index += 1;
    }
}

/// What a timestamp turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ts {
    None,
    /// Nanoseconds.
    Ns(i64),
    OutOfRange,
    Invalid,
}

/// A timestamp in ms as KairosDB reads it (`JsonReader.nextLong`,
/// `JsonPrimitive.getAsLong`): an integer, a number string, a fraction
/// truncated toward zero.
fn timestamp(p: Pending, obj: &Obj) -> Ts {
    let ms = match p {
        Pending::Absent | Pending::Null => return Ts::None,
        Pending::Int(i) => i,
        Pending::UInt(_) => return Ts::OutOfRange,
        Pending::Float(f) => match truncate(f) {
            Some(i) => i,
            None if f.is_finite() => return Ts::OutOfRange,
            None => return Ts::Invalid,
        },
        Pending::Str(sp) => {
            let s = obj.s(sp);
            match s.parse::<i64>() {
                Ok(i) => i,
                Err(_) => match s.parse::<f64>().ok().filter(|f| f.is_finite()) {
                    Some(f) => match truncate(f) {
                        Some(i) => i,
                        None => return Ts::OutOfRange,
                    },
                    None => return Ts::Invalid,
                },
            }
        }
        Pending::Bool(_) | Pending::EmptyArray | Pending::Complex => return Ts::Invalid,
    };
    match ms.checked_mul(1_000_000) {
        Some(ns) => Ts::Ns(ns),
        None => Ts::OutOfRange,
    }
}

/// `f` truncated toward zero when it fits an i64.
fn truncate(f: f64) -> Option<i64> {
    // 2^63 is exactly representable; everything below it truncates into range.
    (f.is_finite() && f > -9_223_372_036_854_775_808.0 && f < 9_223_372_036_854_775_808.0)
        .then(|| f.trunc() as i64)
}

/// KairosDB's `Util.isNumber`, which decides whether a string value is a
/// number: an optional `+`, `-` or `.`, then only digits and dots (the dot
/// count check runs before each character, so a third dot is the limit).
fn is_number(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(&first) = b.first() else {
        return false;
    };
    let start = if matches!(first, b'+' | b'-' | b'.') {
        if b.len() == 1 {
            return false;
        }
        1
    } else {
        0
    };
    let mut points = 0;
    for &c in &b[start..] {
        if points > 1 {
            return false;
        }
        if c == b'.' {
            points += 1;
        }
        if !c.is_ascii_digit() && c != b'.' {
            return false;
        }
    }
    true
}

/// The registered data point types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Long,
    Double,
    String,
}

/// KairosDB's `findType` for a value without a `type`.
fn infer(p: Pending, obj: &Obj) -> Option<Kind> {
    match p {
        Pending::Int(_) => Some(Kind::Long),
        // Above i64::MAX: KairosDB's long would wrap; a double keeps the value.
        Pending::UInt(_) | Pending::Float(_) => Some(Kind::Double),
        Pending::Str(sp) => {
            let s = obj.s(sp);
            Some(if !is_number(s) {
                Kind::String
            } else if s.contains('.') {
                Kind::Double
            } else {
                Kind::Long
            })
        }
        Pending::Bool(_) => Some(Kind::String),
        Pending::Absent | Pending::Null | Pending::EmptyArray | Pending::Complex => None,
    }
}

fn registered(name: &str) -> Option<Kind> {
    match name {
        "long" => Some(Kind::Long),
        "double" => Some(Kind::Double),
        "string" => Some(Kind::String),
        _ => None,
    }
}

/// The value as `kind`, or `None` when it cannot be one (KairosDB answers
/// 500 there; Conflux rejects the point with `value is an invalid type`).
fn convert<'t>(kind: Kind, p: Pending, obj: &'t Obj, num: &'t mut String) -> Option<Value<'t>> {
    match kind {
        Kind::Long => Some(Value::Int(match p {
            Pending::Int(i) => i,
            Pending::Float(f) => truncate(f)?,
            Pending::Str(sp) => {
                let s = obj.s(sp);
                match s.parse::<i64>() {
                    Ok(i) => i,
                    Err(_) => truncate(s.parse::<f64>().ok()?)?,
                }
            }
            _ => return None,
        })),
        Kind::Double => Some(Value::Float(match p {
            Pending::Int(i) => i as f64,
            Pending::UInt(u) => u as f64,
            Pending::Float(f) => f,
            Pending::Str(sp) => obj.s(sp).parse::<f64>().ok()?,
            _ => return None,
        })),
        Kind::String => match p {
            Pending::Str(sp) => Some(Value::Str(obj.s(sp))),
            Pending::Bool(b) => Some(Value::Str(if b { "true" } else { "false" })),
            Pending::Int(i) => {
                num.clear();
                num.push_str(itoa::Buffer::new().format(i));
                Some(Value::Str(num))
            }
            Pending::UInt(u) => {
                num.clear();
                num.push_str(itoa::Buffer::new().format(u));
                Some(Value::Str(num))
            }
            Pending::Float(f) => {
                num.clear();
                push_float_text(num, f);
                Some(Value::Str(num))
            }
            _ => None,
        },
    }
}

/// Check the object just read and add its points to the batch.
fn finish_object(st: &mut State<'_>) {
    let index = st.index;
    st.index += 1;
    st.report.summary.objects += 1;
    let at = Some(index);
    let State {
        batch,
        report,
        require_tags,
        obj,
        num,
        tags,
        ..
    } = st;
    let mut failed = false;
    // Object-level problems: the object stores nothing. Messages are built
    // only when kept.
    macro_rules! fail {
        ($kind:expr, $msg:expr) => {{
            failed = true;
            report.error(at, $kind, || $msg);
        }};
    }

    // Scalars Gson would read into `String` fields become text first.
    let name = match obj.name {
        Pending::EmptyArray | Pending::Complex => Err(()),
        p => Ok(obj.text_of(p)),
    };
    let kind_text = match obj.kind {
        Pending::EmptyArray | Pending::Complex => Err(()),
        p => Ok(obj.text_of(p)),
    };
    // Tag values too, once for all the object's points.
    tags.clear();
    for i in 0..obj.tags.len() {
        let tag = obj.tags[i];
        if let Some(v) = obj.text_of(tag.value) {
            tags.push((tag.key, v));
        }
    }
    let obj = &*obj;

    let validate = match obj.skip_validate {
        Pending::Absent | Pending::Null => Some(true),
        Pending::Bool(b) => Some(!b),
        Pending::Str(sp) => Some(!obj.s(sp).eq_ignore_ascii_case("true")),
        _ => None,
    };
    let mut ctx = Context { index, name: None };
    let name_sp = match name {
        Ok(Some(sp)) if sp.end > sp.start => {
            ctx.name = Some(obj.s(sp));
            Some(sp)
        }
        Ok(Some(_)) => {
            fail!(
                ErrorKind::MissingName,
                ctx.attr("name", " may not be empty.")
            );
            None
        }
        Ok(None) => {
            fail!(
                ErrorKind::MissingName,
                ctx.attr("name", " may not be null.")
            );
            None
        }
        Err(()) => {
            fail!(
                ErrorKind::InvalidType,
                ctx.attr("name", " is an invalid type")
            );
            None
        }
    };
    let validate = validate.unwrap_or_else(|| {
        fail!(
            ErrorKind::InvalidType,
            ctx.attr("skip_validate", " is an invalid type")
        );
        true
    });
    let kind_sp = kind_text.unwrap_or_else(|()| {
        fail!(
            ErrorKind::InvalidType,
            ctx.attr("type", " is an invalid type")
        );
        None
    });
    let kind_is_string = kind_sp.is_some_and(|sp| obj.s(sp) == "string");

    // Timestamp and value of the single-point form.
    let (ts_attr, ts_raw) = match obj.time {
        Pending::Absent | Pending::Null => ("timestamp", obj.timestamp),
        t => ("time", t),
    };
    let ts = timestamp(ts_raw, obj);
    if ts == Ts::Invalid {
        fail!(
            ErrorKind::InvalidType,
            ctx.attr(ts_attr, " is an invalid type")
        );
    }
    if validate {
        if ts != Ts::None {
            if let Some(rule) = value_rule(kind_is_string, obj.value) {
                fail!(ErrorKind::MissingValue, ctx.attr("value", rule));
            }
        } else if !matches!(obj.value, Pending::Absent | Pending::Null) {
            fail!(
                ErrorKind::MissingTimestamp,
                ctx.attr("timestamp", " may not be null.")
            );
        }
    }

    // Tags: checked in body order, as KairosDB walks its (insertion-ordered) map.
    match obj.tags_state {
        Container::Invalid => {
            fail!(
                ErrorKind::InvalidType,
                ctx.attr("tags", " is an invalid type")
            );
        }
        _ if obj.tags.is_empty() => {
            if validate && *require_tags {
                fail!(
                    ErrorKind::MissingTags,
                    ctx.attr("tags count", " must be greater than or equal to 1.")
                );
            }
        }
        _ => {
            for (i, tag) in obj.tags.iter().enumerate() {
                let key = obj.s(tag.key);
                let tref = if key.is_empty() {
                    fail!(
                        ErrorKind::InvalidTag,
                        ctx.tag(TagRef::Index(i), "name", " may not be empty.")
                    );
                    TagRef::Index(i)
                } else {
                    TagRef::Name(key)
                };
                match tag.value {
                    Pending::Null | Pending::Absent => {
                        fail!(
                            ErrorKind::InvalidTag,
                            ctx.tag(tref, "value", " may not be null.")
                        );
                    }
                    Pending::Str(sp) if sp.start == sp.end && validate => {
                        fail!(
                            ErrorKind::InvalidTag,
                            ctx.tag(tref, "value", " may not be empty.")
                        );
                    }
                    Pending::EmptyArray | Pending::Complex => {
                        fail!(
                            ErrorKind::InvalidType,
                            ctx.tag(tref, "value", " is an invalid type")
                        );
                    }
                    _ => {}
                }
            }
            if let Some(dup) = duplicate_key(obj) {
                fail!(
                    ErrorKind::InvalidTag,
                    ctx.tag(TagRef::Name(obj.s(dup)), "", " is a duplicate.")
                );
            }
        }
    }

    let ttl = match obj.ttl {
        Pending::Absent | Pending::Null => Some(0),
        p => match integer(p, obj) {
            Some(t) if t < 0 => {
                fail!(
                    ErrorKind::InvalidTtl,
                    ctx.attr("ttl", " must be greater than or equal to 0.")
                );
                None
            }
            // KairosDB's `ttl` is a Java int.
            Some(t) if t <= i64::from(i32::MAX) => u32::try_from(t).ok(),
            _ => {
                fail!(
                    ErrorKind::InvalidType,
                    ctx.attr("ttl", " is an invalid type")
                );
                None
            }
        },
    };
    if obj.points_state == Container::Invalid {
        fail!(
            ErrorKind::InvalidType,
            ctx.attr("datapoints", " is an invalid type")
        );
    }
    let (Some(name_sp), Some(ttl), false) = (name_sp, ttl, failed) else {
        return;
    };
    let mut out = Out {
        batch,
        report,
        obj,
        num,
        tags: tags.as_slice(),
        ctx,
        name: name_sp,
        ttl,
        refused: false,
    };

    // The single point.
    if ts != Ts::None && obj.value != Pending::Absent {
        out.add(kind_sp, obj.value, ts, None);
    }
    // The `datapoints` array; a bad point skips only itself.
    for (i, p) in obj.points.iter().enumerate() {
        if out.refused {
            break;
        }
        if p.not_array {
            out.reject(ErrorKind::InvalidType, || {
                ctx.datapoint(i, "", " is an invalid type")
            });
            continue;
        }
        if p.len == 0 {
            out.reject(ErrorKind::MissingTimestamp, || {
                ctx.datapoint(i, "timestamp", " cannot be null or empty.")
            });
            continue;
        }
        if p.len == 1 {
            out.reject(ErrorKind::MissingValue, || {
                ctx.datapoint(i, "value", " cannot be null or empty.")
            });
            continue;
        }
        let ts = timestamp(p.ts, obj);
        match ts {
            Ts::None => {
                out.reject(ErrorKind::MissingTimestamp, || {
                    ctx.datapoint(i, "timestamp", " may not be null.")
                });
                continue;
            }
            Ts::Invalid => {
                out.reject(ErrorKind::InvalidType, || {
                    ctx.datapoint(i, "timestamp", " is an invalid type")
                });
                continue;
            }
            Ts::Ns(_) | Ts::OutOfRange => {}
        }
        let kind = match p.kind {
            // Two elements, or a null third one: the object's type.
            Pending::Absent | Pending::Null => kind_sp,
            Pending::Str(sp) => Some(sp),
            // A number or bool as a type name (Gson's `getAsString`) cannot
            // name a registered type.
            Pending::Int(_) | Pending::UInt(_) | Pending::Float(_) | Pending::Bool(_) => {
                out.reject(ErrorKind::UnregisteredType, || {
                    let mut t = String::new();
                    match p.kind {
                        Pending::Int(v) => t.push_str(itoa::Buffer::new().format(v)),
                        Pending::UInt(v) => t.push_str(itoa::Buffer::new().format(v)),
                        Pending::Float(v) => push_float_text(&mut t, v),
                        _ => t.push_str(if p.kind == Pending::Bool(true) {
                            "true"
                        } else {
                            "false"
                        }),
                    }
                    unregistered(&t)
                });
                continue;
            }
            Pending::EmptyArray | Pending::Complex => {
                out.reject(ErrorKind::InvalidType, || {
                    ctx.datapoint(i, "type", " is an invalid type")
                });
                continue;
            }
        };
        out.add(kind, p.value, ts, Some(i));
    }
}

/// The rule a value breaks before its type is looked at
/// (`Validator.isNotNull` for strings, `isNotNullOrEmpty` otherwise).
fn value_rule(string: bool, value: Pending) -> Option<&'static str> {
    match (string, value) {
        (_, Pending::Absent) | (true, Pending::Null) => Some(" may not be null."),
        (true, _) => None,
        (false, Pending::Null) => Some(" may not be empty."),
        (false, Pending::EmptyArray) => Some(" may not be an empty array."),
        (false, Pending::Str(sp)) if sp.start == sp.end => Some(" may not be empty."),
        (false, _) => None,
    }
}

/// Adds the points of one valid object.
struct Out<'a, 'o> {
    batch: &'a mut Batch,
    report: &'a mut Report<'o>,
    obj: &'a Obj,
    num: &'a mut String,
    tags: &'a [(Sp, Sp)],
    ctx: Context<'a>,
    name: Sp,
    ttl: u32,
    /// A point of this object passed the batch's limits: every point shares
    /// its name and tags, so the object is reported once and stores nothing.
    refused: bool,
}

impl Out<'_, '_> {
    fn reject(&mut self, kind: ErrorKind, message: impl FnOnce() -> String) {
        self.report.error(Some(self.ctx.index), kind, message);
    }

    /// Check, type, convert and add one point: the object's own, or data point `dp`.
    fn add(&mut self, kind_sp: Option<Sp>, value: Pending, ts: Ts, dp: Option<usize>) {
        let (obj, ctx) = (self.obj, self.ctx);
        let kind_text = kind_sp.map(|sp| obj.s(sp));
        if let Some(i) = dp
            && let Some(rule) = value_rule(kind_text == Some("string"), value)
        {
            self.reject(ErrorKind::MissingValue, || ctx.datapoint(i, "value", rule));
            return;
        }
        let kind = match kind_text {
            Some(k) => match registered(k) {
                Some(kind) => kind,
                None => {
                    self.reject(ErrorKind::UnregisteredType, || unregistered(k));
                    return;
                }
            },
            None => match infer(value, obj) {
                Some(k) => k,
                None => {
                    self.reject(ErrorKind::InvalidType, || ctx.value_invalid_type());
                    return;
                }
            },
        };
        let Some(v) = convert(kind, value, obj, self.num) else {
            self.reject(ErrorKind::InvalidType, || ctx.value_invalid_type());
            return;
        };
        let Ts::Ns(ns) = ts else {
            self.report.error(
                Some(ctx.index),
                ErrorKind::TimestampOutOfRange,
                || match dp {
                    Some(i) => ctx.datapoint(i, "timestamp", RANGE_RULE),
                    None => ctx.attr("timestamp", RANGE_RULE),
                },
            );
            return;
        };
        let mut b = self.batch.metric(obj.s(self.name));
        for &(k, tv) in self.tags {
            b.tag(obj.s(k), obj.s(tv));
        }
        b.field("value", v).ttl(self.ttl);
        match b.finish(ns) {
            Ok(()) => self.report.summary.metrics += 1,
            Err(MetricError::BatchTooLarge) => {
                self.reject(ErrorKind::BatchTooLarge, || "batch too large".to_owned());
            }
            Err(MetricError::TooManyTags { max }) => {
                self.refused = true;
                self.reject(ErrorKind::TooManyTags, || {
                    ctx.attr(
                        "tags count",
                        &format!(" must be less than or equal to {max}."),
                    )
                });
            }
            Err(MetricError::SeriesKeyTooLong { max }) => {
                self.refused = true;
                self.reject(ErrorKind::SeriesKeyTooLong, || {
                    ctx.attr(
                        "series key length",
                        &format!(" must be less than or equal to {max} bytes."),
                    )
                });
            }
            // Names and tags were checked above; count it all the same.
            Err(e) => self.reject(ErrorKind::InvalidTag, || e.to_string()),
        }
    }
}

/// An integer as Gson's `nextInt` reads it (numbers and number strings).
fn integer(p: Pending, obj: &Obj) -> Option<i64> {
    match p {
        Pending::Int(i) => Some(i),
        Pending::Float(f) if f.fract() == 0.0 => truncate(f),
        Pending::Str(sp) => obj.s(sp).parse().ok(),
        _ => None,
    }
}

/// A repeated tag name (Gson refuses `duplicate key`; the batch would too).
fn duplicate_key(obj: &Obj) -> Option<Sp> {
    let tags = &obj.tags;
    // Clients usually send sorted keys: one pass proves there is no repeat.
    if tags.windows(2).all(|w| obj.s(w[0].key) < obj.s(w[1].key)) {
        return None;
    }
    for (i, a) in tags.iter().enumerate() {
        if tags[i + 1..].iter().any(|b| obj.s(b.key) == obj.s(a.key)) {
            return Some(a.key);
        }
    }
    None
}

// ---- serde plumbing: visitors that write into `State` ----

struct Top<'s, 'o> {
    st: &'s mut State<'o>,
}

impl<'de> Visitor<'de> for Top<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of metric objects or one metric object")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.st.in_array = true;
        while seq.next_element_seed(ObjSeed { st: self.st })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.st.obj.clear();
        read_fields(&mut self.st.obj, &mut map)?;
        finish_object(self.st);
        Ok(())
    }
}

struct ObjSeed<'s, 'o> {
    st: &'s mut State<'o>,
}

impl<'de> DeserializeSeed<'de> for ObjSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ObjSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a metric object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.st.obj.clear();
        read_fields(&mut self.st.obj, &mut map)?;
        finish_object(self.st);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.st.not_an_object();
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.st.not_an_object();
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.st.not_an_object();
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.st.not_an_object();
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.st.not_an_object();
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.st.not_an_object();
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.st.not_an_object();
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Name,
    Timestamp,
    Time,
    Value,
    Type,
    Ttl,
    SkipValidate,
    Tags,
    Datapoints,
    Other,
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(match v {
            "name" => Key::Name,
            "timestamp" => Key::Timestamp,
            "time" => Key::Time,
            "value" => Key::Value,
            "type" => Key::Type,
            "ttl" => Key::Ttl,
            "skip_validate" => Key::SkipValidate,
            "tags" => Key::Tags,
            "datapoints" => Key::Datapoints,
            _ => Key::Other,
        })
    }
}

/// Read a metric object's fields into `obj` (later duplicates win, as in Gson).
fn read_fields<'de, A: MapAccess<'de>>(obj: &mut Obj, map: &mut A) -> Result<(), A::Error> {
    while let Some(key) = map.next_key_seed(KeySeed)? {
        let text = &mut obj.text;
        match key {
            Key::Name => obj.name = map.next_value_seed(AnySeed { text })?,
            Key::Timestamp => obj.timestamp = map.next_value_seed(AnySeed { text })?,
            Key::Time => obj.time = map.next_value_seed(AnySeed { text })?,
            Key::Value => obj.value = map.next_value_seed(AnySeed { text })?,
            Key::Type => obj.kind = map.next_value_seed(AnySeed { text })?,
            Key::Ttl => obj.ttl = map.next_value_seed(AnySeed { text })?,
            Key::SkipValidate => obj.skip_validate = map.next_value_seed(AnySeed { text })?,
            Key::Tags => {
                obj.tags.clear();
                obj.tags_state = map.next_value_seed(TagsSeed {
                    text,
                    tags: &mut obj.tags,
                })?;
            }
            Key::Datapoints => {
                obj.points.clear();
                obj.points_state = map.next_value_seed(PointsSeed {
                    text,
                    points: &mut obj.points,
                })?;
            }
            Key::Other => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

/// Any JSON value, kept as a [`Pending`] (strings copied into `text`,
/// arrays and objects skipped).
struct AnySeed<'a> {
    text: &'a mut String,
}

impl<'de> DeserializeSeed<'de> for AnySeed<'_> {
    type Value = Pending;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Pending, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnySeed<'_> {
    type Value = Pending;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Pending, E> {
        Ok(Pending::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Pending, E> {
        Ok(Pending::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Pending, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Pending::Int(i),
            Err(_) => Pending::UInt(v),
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Pending, E> {
        Ok(Pending::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Pending, E> {
        let start = self.text.len();
        self.text.push_str(v);
        Ok(Pending::Str(Sp {
            start,
            end: self.text.len(),
        }))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Pending, E> {
        Ok(Pending::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Pending, A::Error> {
        if seq.next_element::<IgnoredAny>()?.is_none() {
            return Ok(Pending::EmptyArray);
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Pending::Complex)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pending, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Pending::Complex)
    }
}

/// A JSON object key copied into `text`.
struct StrSeed<'a> {
    text: &'a mut String,
}

impl<'de> DeserializeSeed<'de> for StrSeed<'_> {
    type Value = Sp;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Sp, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for StrSeed<'_> {
    type Value = Sp;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Sp, E> {
        let start = self.text.len();
        self.text.push_str(v);
        Ok(Sp {
            start,
            end: self.text.len(),
        })
    }
}

/// `tags`: an object of names to values; null counts as no tags.
struct TagsSeed<'a> {
    text: &'a mut String,
    tags: &'a mut Vec<Tag>,
}

impl<'de> DeserializeSeed<'de> for TagsSeed<'_> {
    type Value = Container;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Container, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TagsSeed<'_> {
    type Value = Container;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object of tags")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Container, A::Error> {
        while let Some(key) = map.next_key_seed(StrSeed { text: self.text })? {
            let value = map.next_value_seed(AnySeed { text: self.text })?;
            self.tags.push(Tag { key, value });
        }
        Ok(Container::Present)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Container, E> {
        Ok(Container::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Container, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Container::Invalid)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Container, E> {
        Ok(Container::Invalid)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Container, E> {
        Ok(Container::Invalid)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Container, E> {
        Ok(Container::Invalid)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Container, E> {
        Ok(Container::Invalid)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Container, E> {
        Ok(Container::Invalid)
    }
}

/// `datapoints`: an array of `[timestamp, value]` or `[timestamp, value, type]`.
struct PointsSeed<'a> {
    text: &'a mut String,
    points: &'a mut Vec<Point>,
}

impl<'de> DeserializeSeed<'de> for PointsSeed<'_> {
    type Value = Container;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Container, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PointsSeed<'_> {
    type Value = Container;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of data points")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Container, A::Error> {
        while let Some(p) = seq.next_element_seed(PointSeed { text: self.text })? {
            self.points.push(p);
        }
        Ok(Container::Present)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Container, E> {
        Ok(Container::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Container, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Container::Invalid)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Container, E> {
        Ok(Container::Invalid)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Container, E> {
        Ok(Container::Invalid)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Container, E> {
        Ok(Container::Invalid)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Container, E> {
        Ok(Container::Invalid)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Container, E> {
        Ok(Container::Invalid)
    }
}

/// One data point.
struct PointSeed<'a> {
    text: &'a mut String,
}

impl<'de> DeserializeSeed<'de> for PointSeed<'_> {
    type Value = Point;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Point, D::Error> {
        d.deserialize_any(self)
    }
}

const NOT_ARRAY: Point = Point {
    len: 0,
    not_array: true,
    ts: Pending::Absent,
    value: Pending::Absent,
    kind: Pending::Absent,
};

impl<'de> Visitor<'de> for PointSeed<'_> {
    type Value = Point;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a data point array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Point, A::Error> {
        let mut p = Point::default();
        let slots = [&mut p.ts, &mut p.value, &mut p.kind];
        for slot in slots {
            match seq.next_element_seed(AnySeed { text: self.text })? {
                Some(v) => *slot = v,
                None => break,
            }
        }
        p.len = [p.ts, p.value, p.kind]
            .iter()
            .take_while(|v| **v != Pending::Absent)
            .count() as u8;
        // Elements past the third are ignored, as KairosDB ignores them.
        if p.len == 3 {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
        }
        Ok(p)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Point, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(NOT_ARRAY)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Point, E> {
        Ok(NOT_ARRAY)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Point, E> {
        Ok(NOT_ARRAY)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Point, E> {
        Ok(NOT_ARRAY)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Point, E> {
        Ok(NOT_ARRAY)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Point, E> {
        Ok(NOT_ARRAY)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Point, E> {
        Ok(NOT_ARRAY)
    }
}

#[cfg(test)]
mod tests;
