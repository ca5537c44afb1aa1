//! Line protocol parser: a body in, metrics into a [`Batch`] and one [`LineError`] per bad line.
//!
//! The rules are InfluxDB 2.x's (`models/points.go`, the Go parser that 1.x shares),
//! with a few deliberate differences listed in `docs/protocols.md` (CRLF accepted,
//! a comment ends at its newline, a backslash never joins two lines, garbage after
//! a closing quote rejected). Every case of `shared/reference/ANCHORS.md` §2.4 has
//! a golden fixture under `tests/fixtures/influx/`.
//!
//! How a line is read:
//! 1. Leading spaces, tabs and NULs are skipped; an empty line or one whose first
//!    character is `#` is skipped whole.
//! 2. A scan over bytes finds every token and parses numbers (no allocation). A
//!    newline ends the line except inside a quoted string field value, where it is
//!    part of the value.
//! 3. The line is checked as UTF-8 once, then every token is handed to the batch's
//!    builder, borrowed from the input or, only when it holds a backslash escape,
//!    unescaped into a scratch string that is reused for the whole body.

use std::borrow::Cow;

use conflux_core::time::Precision;
use conflux_core::{Batch, MetricError, Value};

use conflux_core::quote::{clip_bytes, unable_to_parse};

use super::error::{ErrorKind, Fail, LineError};

/// InfluxDB's `MaxKeyLength`: measurement, tags and one field key, escaped, plus 4.
pub const MAX_KEY_BYTES: usize = 65_535;

/// The earliest timestamp InfluxDB accepts (`models.MinNanoTime`, 1677-09-21).
/// The two lowest i64 values are sentinels inside InfluxDB.
pub const MIN_NANO_TIME: i64 = i64::MIN + 2;

/// The latest timestamp InfluxDB accepts (`models.MaxNanoTime`, 2262-04-11).
pub const MAX_NANO_TIME: i64 = i64::MAX - 1;

/// How [`parse`] reads a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Unit of the timestamps in the body (the `precision` query parameter).
    pub precision: Precision,
    /// Time given to lines without a timestamp, in nanoseconds; truncated to
    /// `precision` as InfluxDB does. Read the clock once per request.
    pub default_timestamp_ns: i64,
    /// Limit on measurement + tags + 4 + field key, in escaped bytes
    /// (InfluxDB: 65535, `max key length exceeded`).
    pub max_key_bytes: usize,
}

impl ParseOptions {
    /// Options with the given precision and default time, and InfluxDB's key limit.
    pub fn new(precision: Precision, default_timestamp_ns: i64) -> Self {
        ParseOptions {
            precision,
            default_timestamp_ns,
            max_key_bytes: MAX_KEY_BYTES,
        }
    }
}

impl Default for ParseOptions {
    /// Nanoseconds, default time 0 (set it to the receive time), InfluxDB's key limit.
    fn default() -> Self {
        ParseOptions::new(Precision::Ns, 0)
    }
}

/// Parse a whole body. Good lines go into `batch`, each bad line into `errors`
/// (one bad line never hides the others). Returns the number of lines parsed
/// into metrics.
pub fn parse(
    input: &[u8],
    opts: &ParseOptions,
    batch: &mut Batch,
    errors: &mut Vec<LineError>,
) -> usize {
    let nanos = opts.precision.nanos();
    let default_ts = opts
        .default_timestamp_ns
        .saturating_sub(opts.default_timestamp_ns.rem_euclid(nanos));
    let mut p = Parser::new(input, opts.precision, opts.max_key_bytes, default_ts);
    let n = input.len();
    let mut pos = 0;
    let mut line_no = 1;
    let mut parsed = 0;
    while pos < n {
        let s = skip_ws(input, pos, n);
        if s >= n {
            break;
        }
        match input[s] {
            b'\n' => {
                pos = s + 1;
                line_no += 1;
                continue;
            }
            b'\r' if s + 1 >= n || input[s + 1] == b'\n' => {
                pos = s + 2;
                line_no += 1;
                continue;
            }
            // A comment runs to the end of its physical line (not Go's scanLine rule,
            // under which a quote in a comment could swallow the lines after it).
            b'#' => {
                pos = find_nl(input, s) + 1;
                line_no += 1;
                continue;
            }
            _ => {}
        }
        p.start_line(s);
        let outcome = p.scan(s).and_then(|(name, ts)| p.emit(s, name, ts, batch));
        let (line_end, next) = match outcome {
            Ok(()) => {
                parsed += 1;
                (p.eol, p.nl)
            }
            Err(fail) => {
                // An unclosed quote runs to the end of the body, as in InfluxDB.
                let (line_end, next) = if fail.kind == ErrorKind::UnbalancedQuotes {
                    p.multiline = true;
                    (trim_eol(input, n), n)
                } else {
                    (p.eol, p.nl)
                };
                let text = input.get(s..line_end).unwrap_or_default();
                errors.push(LineError {
                    line: line_no,
                    message: unable_to_parse(text, &fail.reason),
                    kind: fail.kind,
                });
                (line_end, next)
            }
        };
        if p.multiline {
            line_no +=
                memchr::memchr_iter(b'\n', input.get(s..line_end).unwrap_or_default()).count();
        }
        line_no += 1;
        pos = next + 1;
    }
    parsed
}

/// A token: byte range in the input, and whether it holds a backslash.
#[derive(Debug, Clone, Copy)]
struct Tok {
    start: usize,
    end: usize,
    escaped: bool,
}

/// A field value as scanned: numbers are parsed, strings stay a token.
#[derive(Debug, Clone, Copy)]
enum Val {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(Tok),
}

struct Parser<'a> {
    input: &'a [u8],
    precision: Precision,
    max_key_bytes: usize,
    default_ts: i64,
    /// The `\n` ending the current physical line, or the input length.
    nl: usize,
    /// `nl`, or `nl - 1` when a `\r` precedes it (CRLF).
    eol: usize,
    /// A string value of this line crossed a newline.
    multiline: bool,
    tags: Vec<(Tok, Tok)>,
    fields: Vec<(Tok, Val)>,
    scratch_key: String,
    scratch_value: String,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8], precision: Precision, max_key_bytes: usize, default_ts: i64) -> Self {
        Parser {
            input,
            precision,
            max_key_bytes,
            default_ts,
            nl: 0,
            eol: 0,
            multiline: false,
            tags: Vec::with_capacity(16),
            fields: Vec::with_capacity(16),
            scratch_key: String::new(),
            scratch_value: String::new(),
        }
    }

    fn start_line(&mut self, s: usize) {
        self.multiline = false;
        self.set_line_end(s);
    }

    /// Find the end of the physical line that contains position `from`.
    fn set_line_end(&mut self, from: usize) {
        self.nl = find_nl(self.input, from);
        self.eol = trim_eol(self.input, self.nl);
    }

    /// Scan one line starting at `s` (not whitespace, not a comment). Returns the
    /// measurement token and the timestamp in nanoseconds; tags and fields are left
    /// in `self.tags` and `self.fields`.
    fn scan(&mut self, s: usize) -> Result<(Tok, i64), Fail> {
        self.tags.clear();
        self.fields.clear();
        let b = self.input;
        let eol = self.eol;

        // Measurement: up to the first `,` or space not preceded by a backslash
        // (Go's scanMeasurement). Its first byte is never a separator.
        if b[s] == b',' {
            return Err(ErrorKind::MissingMeasurement.into());
        }
        // Go takes the first byte as is; a `,` there was handled above.
        let (i, escaped) = scan_until(b, s, eol, &MEASUREMENT_STOP);
        if i >= eol {
            return Err(ErrorKind::MissingFields.into());
        }
        let name = Tok {
            start: s,
            end: i,
            escaped,
        };

        let mut i = i;
        if b[i] == b',' {
            i = self.scan_tags(i + 1)?;
        }
        // `i` is on the space that ends the series key.
        let key_len = i - s;
        if key_len > self.max_key_bytes {
            return Err(key_too_long(key_len, self.max_key_bytes));
        }

        let (i, longest_field_key) = self.scan_fields(i)?;
        let series_len = key_len + 4 + longest_field_key;
        if series_len > self.max_key_bytes {
            return Err(key_too_long(series_len, self.max_key_bytes));
        }
        let ts = self.scan_timestamp(i)?;
        Ok((name, ts))
    }

    /// Tags after the measurement's comma, up to the space before the fields.
    fn scan_tags(&mut self, mut i: usize) -> Result<usize, Fail> {
        let b = self.input;
        let eol = self.eol;
        loop {
            // Key (Go's scanTagsKey).
            let ks = i;
            if i >= eol || matches!(b[i], b' ' | b',' | b'=') {
                return Err(ErrorKind::MissingTagKey.into());
            }
            let (end, kesc) = scan_until(b, ks, eol, &KEY_STOP);
            if end >= eol || b[end] != b'=' {
                return Err(ErrorKind::MissingTagValue.into());
            }
            i = end;
            let key = Tok {
                start: ks,
                end: i,
                escaped: kesc,
            };
            i += 1;

            // Value (Go's scanTagsValue): its first byte is taken as is, even `=`.
            let vs = i;
            if i >= eol || b[i] == b',' || b[i] == b' ' {
                return Err(ErrorKind::MissingTagValue.into());
            }
            // Go takes the first byte of a value as is, even `=`.
            let from = if b[vs] == b'\\' { vs } else { vs + 1 };
            let (end, vesc) = scan_until(b, from, eol, &KEY_STOP);
            if end >= eol {
                return Err(ErrorKind::MissingFields.into());
            }
            if b[end] == b'=' {
                return Err(ErrorKind::InvalidTagFormat.into());
            }
            i = end;
            let value = Tok {
                start: vs,
                end: i,
                escaped: vesc || b[vs] == b'\\',
            };
            self.tags.push((key, value));
            if b[i] == b' ' {
                return Ok(i);
            }
            i += 1;
        }
    }

    /// The field set, starting on the space after the series key. Returns the
    /// position after the last value and the length of the longest raw field key.
    fn scan_fields(&mut self, i: usize) -> Result<(usize, usize), Fail> {
        let b = self.input;
        let mut i = skip_ws(b, i, self.eol);
        if i >= self.eol {
            return Err(ErrorKind::MissingFields.into());
        }
        let mut longest = 0;
        loop {
            // Key: up to an `=` not preceded by a backslash.
            let ks = i;
            let (end, kesc) = scan_until(b, ks, self.eol, &KEY_STOP);
            if end >= self.eol || b[end] != b'=' {
                return Err(ErrorKind::InvalidFieldFormat.into());
            }
            i = end;
            if i == ks {
                return Err(ErrorKind::MissingFieldKey.into());
            }
            let key = Tok {
                start: ks,
                end: i,
                escaped: kesc,
            };
            longest = longest.max(i - ks);
            i += 1;

            if i >= self.eol || b[i] == b',' || b[i] == b' ' {
                return Err(ErrorKind::MissingFieldValue.into());
            }
            let value = match b[i] {
                b'"' => {
                    let (v, end) = self.scan_string(i + 1)?;
                    i = end;
                    v
                }
                b'0'..=b'9' | b'.' | b'-' | b'n' | b'N' => {
                    let (v, end) = scan_number(b, i, self.eol)?;
                    i = end;
                    v
                }
                _ => {
                    let (v, end) = scan_bool(b, i, self.eol)?;
                    i = end;
                    v
                }
            };
            self.fields.push((key, value));
            if i >= self.eol || b[i] == b' ' {
                return Ok((i, longest));
            }
            // b[i] == b','
            i += 1;
        }
    }

    /// A quoted string whose opening quote is just before `i`. Only `\"` and `\\`
    /// are escapes; a backslash before anything else is kept. A newline inside the
    /// quotes belongs to the value, so the line then ends at a later newline.
    fn scan_string(&mut self, mut i: usize) -> Result<(Val, usize), Fail> {
        let b = self.input;
        let vs = i;
        let mut escaped = false;
        loop {
            match memchr::memchr2(b'"', b'\\', b.get(i..).unwrap_or_default()) {
                None => return Err(ErrorKind::UnbalancedQuotes.into()),
                Some(off) => {
                    i += off;
                    if b[i] == b'"' {
                        break;
                    }
                    escaped = true;
                    i += 2;
                }
            }
        }
        let tok = Tok {
            start: vs,
            end: i,
            escaped,
        };
        if i > self.eol {
            self.multiline = true;
            self.set_line_end(i);
        }
        i += 1;
        // Go lets anything follow the closing quote and then stores a mangled
        // value; reject it instead (as InfluxDB 3 and Telegraf do).
        if i < self.eol && b[i] != b',' && b[i] != b' ' {
            return Err(ErrorKind::InvalidFieldFormat.into());
        }
        Ok((Val::Str(tok), i))
    }

    /// The optional timestamp after the field set (`i` is on the space or at the end).
    fn scan_timestamp(&self, i: usize) -> Result<i64, Fail> {
        let b = self.input;
        let eol = self.eol;
        let mut i = skip_ws(b, i, eol);
        if i >= eol {
            return Ok(self.default_ts);
        }
        let ts = i;
        while i < eol && b[i] != b' ' {
            if !(b[i].is_ascii_digit() || (i == ts && b[i] == b'-')) {
                return Err(ErrorKind::BadTimestamp.into());
            }
            i += 1;
        }
        let digits = &b[ts..i];
        let value = parse_i64(digits).map_err(|e| {
            let verb = if e {
                "value out of range"
            } else {
                "invalid syntax"
            };
            Fail {
                kind: ErrorKind::BadTimestamp,
                reason: Cow::Owned(format!(
                    "strconv.ParseInt: parsing \"{}\": {verb}",
                    clip_bytes(digits, 32)
                )),
            }
        })?;
        let ns = self
            .precision
            .to_ns(value)
            .filter(|ns| (MIN_NANO_TIME..=MAX_NANO_TIME).contains(ns))
            .ok_or(ErrorKind::TimestampOutOfRange)?;
        // Only spaces may follow the timestamp.
        if b[i..eol].iter().any(|&c| c != b' ') {
            return Err(ErrorKind::InvalidPoint.into());
        }
        Ok(ns)
    }

    /// Hand a scanned line to the batch: check UTF-8 once, unescape where needed.
    fn emit(&mut self, s: usize, name: Tok, ts: i64, batch: &mut Batch) -> Result<(), Fail> {
        let raw = self.input.get(s..self.eol).unwrap_or_default();
        let text = std::str::from_utf8(raw).map_err(|_| Fail::from(ErrorKind::InvalidUtf8))?;
        let Parser {
            tags,
            fields,
            scratch_key,
            scratch_value,
            ..
        } = self;
        // Token bounds sit next to ASCII separators, so they are char boundaries.
        let sub = |t: Tok| {
            text.get(t.start - s..t.end - s)
                .ok_or_else(|| Fail::from(ErrorKind::InvalidUtf8))
        };

        let name = unescape_key::<false>(sub(name)?, name.escaped, scratch_key);
        let mut m = batch.metric(name);
        for &(k, v) in tags.iter() {
            let key = unescape_key::<true>(sub(k)?, k.escaped, scratch_key);
            if key == "time" {
                return Err(ErrorKind::InvalidTagKey.into());
            }
            let value = unescape_key::<true>(sub(v)?, v.escaped, scratch_value);
            m.tag(key, value);
        }
        let mut dropped_time = false;
        for &(k, v) in fields.iter() {
            let key = unescape_key::<true>(sub(k)?, k.escaped, scratch_key);
            // InfluxDB drops a field named `time` and keeps the rest of the point.
            if key == "time" {
                dropped_time = true;
                continue;
            }
            let value = match v {
                Val::Float(x) => Value::Float(x),
                Val::Int(x) => Value::Int(x),
                Val::UInt(x) => Value::UInt(x),
                Val::Bool(x) => Value::Bool(x),
                Val::Str(t) => Value::Str(unescape_string(sub(t)?, t.escaped, scratch_value)),
            };
            m.field(key, value);
        }
        m.finish(ts).map_err(|e| {
            let kind = match e {
                MetricError::DuplicateTag => ErrorKind::DuplicateTags,
                MetricError::NoFields if dropped_time => ErrorKind::InvalidFieldName,
                MetricError::NoFields => ErrorKind::MissingFields,
                MetricError::EmptyName => ErrorKind::MissingMeasurement,
                MetricError::EmptyTagKey => ErrorKind::MissingTagKey,
                MetricError::EmptyFieldKey => ErrorKind::MissingFieldKey,
                MetricError::BatchTooLarge => ErrorKind::BatchTooLarge,
                // The batch's limits: the message names the limit.
                MetricError::TooManyTags { .. } => {
                    return Fail {
                        kind: ErrorKind::TooManyTags,
                        reason: Cow::Owned(e.to_string()),
                    };
                }
                MetricError::SeriesKeyTooLong { .. } => {
                    return Fail {
                        kind: ErrorKind::SeriesKeyTooLong,
                        reason: Cow::Owned(e.to_string()),
                    };
                }
            };
            Fail::from(kind)
        })
    }
}

fn key_too_long(len: usize, max: usize) -> Fail {
    Fail {
        kind: ErrorKind::MaxKeyLength,
        reason: Cow::Owned(format!("max key length exceeded: {len} > {max}")),
    }
}

/// Go's scanNumber, then the value itself. `i` is on the first byte of the value.
fn scan_number(b: &[u8], start: usize, eol: usize) -> Result<(Val, usize), Fail> {
    let mut i = start;
    if b[i] == b'-' {
        i += 1;
        if i >= eol {
            return Err(ErrorKind::InvalidNumber.into());
        }
    }
    let (mut is_int, mut is_uint, mut decimal, mut scientific) = (false, false, false, false);
    while i < eol {
        let c = b[i];
        if c.is_ascii_digit() {
            i += 1;
            continue;
        }
        if c == b',' || c == b' ' {
            break;
        }
        if (c == b'i' || c == b'u') && i > start && !(is_int || is_uint) {
            is_int = c == b'i';
            is_uint = c == b'u';
            i += 1;
            continue;
        }
        if c == b'.' {
            if decimal {
                return Err(ErrorKind::InvalidNumber.into());
            }
            decimal = true;
        }
        if i > start && (c == b'e' || c == b'E') {
            scientific = true;
            i += 1;
            continue;
        }
        if (c == b'+' || c == b'-') && (b[i - 1] == b'e' || b[i - 1] == b'E') {
            i += 1;
            continue;
        }
        if !(c.is_ascii_digit() || c == b'.') {
            return Err(ErrorKind::InvalidNumber.into());
        }
        i += 1;
    }
    if (is_int || is_uint) && (decimal || scientific) {
        return Err(ErrorKind::InvalidNumber.into());
    }
    let minus = b[start] == b'-';
    let digits = (i - start) - usize::from(is_int) - usize::from(decimal) - usize::from(minus);
    if digits == 0 {
        return Err(ErrorKind::InvalidNumber.into());
    }
    let text = &b[start..i];
    let value = if is_int || is_uint {
        let (body, suffix) = text.split_at(text.len() - 1);
        if suffix[0] != if is_int { b'i' } else { b'u' } {
            return Err(ErrorKind::InvalidNumber.into());
        }
        if is_int {
            match parse_i64(body) {
                Ok(v) => Val::Int(v),
                Err(_) => return Err(out_of_range(ErrorKind::IntegerOutOfRange, body)),
            }
        } else {
            if minus {
                return Err(ErrorKind::InvalidNumber.into());
            }
            match parse_u64(body) {
                Some(v) => Val::UInt(v),
                None => return Err(out_of_range(ErrorKind::UnsignedOutOfRange, body)),
            }
        }
    } else {
        // The scan admitted only ASCII, so this cannot fail; std rejects what Go's
        // ParseFloat rejects here (`1e`, `.e3`, `1e5e5`); overflow gives infinity.
        let s = std::str::from_utf8(text).unwrap_or("x");
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Val::Float(v),
            _ => return Err(ErrorKind::InvalidFloat.into()),
        }
    };
    Ok((value, i))
}

/// InfluxDB's wording for an `i`/`u` value out of range, quoting at most 32 digits.
fn out_of_range(kind: ErrorKind, digits: &[u8]) -> Fail {
    let d = clip_bytes(digits, 32);
    let reason = if kind == ErrorKind::IntegerOutOfRange {
        format!(
            "unable to parse integer {d}: strconv.ParseInt: parsing \"{d}\": value out of range"
        )
    } else {
        format!(
            "unable to parse unsigned {d}: strconv.ParseUint: parsing \"{d}\": value out of range"
        )
    };
    Fail {
        kind,
        reason: Cow::Owned(reason),
    }
}

/// Go's scanBoolean: t, T, true, True, TRUE, f, F, false, False, FALSE.
fn scan_bool(b: &[u8], start: usize, eol: usize) -> Result<(Val, usize), Fail> {
    let mut i = start + 1;
    while i < eol && b[i] != b',' && b[i] != b' ' {
        i += 1;
    }
    let v = match &b[start..i] {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => true,
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => false,
        _ => return Err(ErrorKind::InvalidBoolean.into()),
    };
    Ok((Val::Bool(v), i))
}

/// `[-]digits` as i64. `Err(true)` on overflow, `Err(false)` on bad syntax.
fn parse_i64(s: &[u8]) -> Result<i64, bool> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(false);
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut v: i64 = 0;
    for &d in digits {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(d - b'0')))
            .ok_or(true)?;
    }
    if neg {
        Ok(v)
    } else {
        v.checked_neg().ok_or(true)
    }
}

/// Digits as u64; `None` on overflow or bad syntax.
fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &d in s {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(v)
}

/// Bytes that end a measurement (or start an escape in it).
const MEASUREMENT_STOP: [bool; 256] = byte_set(b", \\");
/// Bytes that end a tag key, tag value or field key (or start an escape).
const KEY_STOP: [bool; 256] = byte_set(b", =\\");

const fn byte_set(bytes: &[u8]) -> [bool; 256] {
    let mut set = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        set[bytes[i] as usize] = true;
        i += 1;
    }
    set
}

/// The first byte from `i` on that is in `stop` and not preceded by a backslash
/// (Go's rule: a byte right after a backslash is never a separator, so `\\,`
/// does not end a key), or `end`. Also tells whether a backslash was seen.
#[inline(always)]
fn scan_until(b: &[u8], mut i: usize, end: usize, stop: &[bool; 256]) -> (usize, bool) {
    let mut escaped = false;
    while i < end {
        let c = b[i];
        if !stop[usize::from(c)] {
            i += 1;
            continue;
        }
        if c != b'\\' {
            return (i, escaped);
        }
        escaped = true;
        i += 1;
        while i < end && b[i] == b'\\' {
            i += 1;
        }
        // The byte after a run of backslashes is escaped.
        i += 1;
    }
    (end, escaped)
}

/// Go's skipWhitespace: spaces, tabs and NULs.
fn skip_ws(b: &[u8], mut i: usize, end: usize) -> usize {
    while i < end && matches!(b[i], b' ' | b'\t' | 0) {
        i += 1;
    }
    i
}

/// Position of the next `\n` at or after `from`, or the input length.
fn find_nl(b: &[u8], from: usize) -> usize {
    match b.get(from..).and_then(|rest| memchr::memchr(b'\n', rest)) {
        Some(off) => from + off,
        None => b.len(),
    }
}

/// `nl` without a `\r` just before it (so `\r\n` ends a line like `\n`).
fn trim_eol(b: &[u8], nl: usize) -> usize {
    let mut end = nl;
    if end > 0 && end == b.len() && b[end - 1] == b'\n' {
        end -= 1;
    }
    if end > 0 && b[end - 1] == b'\r' {
        end -= 1;
    }
    end
}

/// Unescape a measurement (`KEY = false`: `\,` and `\ `) or a tag key, tag value
/// or field key (`KEY = true`: also `\=`). Any other backslash is kept, so `\\`
/// stays two backslashes, as in InfluxDB 2.x.
#[inline]
fn unescape_key<'t, const KEY: bool>(
    raw: &'t str,
    escaped: bool,
    scratch: &'t mut String,
) -> &'t str {
    if !escaped {
        return raw;
    }
    let b = raw.as_bytes();
    scratch.clear();
    let (mut last, mut i) = (0, 0);
    while i + 1 < b.len() {
        if b[i] == b'\\' && (b[i + 1] == b',' || b[i + 1] == b' ' || (KEY && b[i + 1] == b'=')) {
            scratch.push_str(raw.get(last..i).unwrap_or_default());
            last = i + 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    scratch.push_str(raw.get(last..).unwrap_or_default());
    scratch
}

/// Unescape a string field value: `\"` and `\\`; any other backslash is kept.
#[inline]
fn unescape_string<'t>(raw: &'t str, escaped: bool, scratch: &'t mut String) -> &'t str {
    if !escaped {
        return raw;
    }
    let b = raw.as_bytes();
    scratch.clear();
    let (mut last, mut i) = (0, 0);
    while i + 1 < b.len() {
        if b[i] == b'\\' && (b[i + 1] == b'"' || b[i + 1] == b'\\') {
            scratch.push_str(raw.get(last..i).unwrap_or_default());
            last = i + 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    scratch.push_str(raw.get(last..).unwrap_or_default());
    scratch
}

#[cfg(test)]
mod tests;
