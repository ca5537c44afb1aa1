//! Plaintext parser: `path value [timestamp]` lines into a [`Batch`], one
//! [`LineError`] per bad line; and the path rules shared with pickle.
//!
//! Sources: carbon `lib/carbon/protocols.py` and `lib/carbon/util.py`
//! (`TaggedSeries`), Telegraf `plugins/parsers/graphite`, vmagent
//! `lib/protoparser/graphite`; `shared/reference/ANCHORS.md` sections 2.9–2.11.
//!
//! A line:
//! 1. Blanks (spaces, tabs, a `\r` before the `\n`) around and between the
//!    tokens are skipped; a blank line is skipped whole.
//! 2. Two or three tokens: `path value` (Telegraf, vmagent) or `path value
//!    timestamp` (carbon). Inside an OpenMetrics path, quoted blanks do not
//!    split (carbon splits them and rejects the line).
//! 3. The value is a float (`1`, `-1.5e3`, `inf`); NaN is dropped and
//!    counted (`nan_value`), as carbon filters it.
//! 4. The timestamp is float seconds, kept to the nanosecond for plain
//!    decimals. `-1` (carbon: any value whose integer part is -1), `N` and a
//!    missing timestamp mean the receive time; so does `0` when
//!    [`ParseOptions::zero_is_now`] is set (vmagent's rule).
//! 5. The path: `name;k=v;…` (carbon tags: split at the first `=`, keys
//!    without `;!^=`, values not starting with `~`, non-empty, a later key wins),
//!    `name{k="v",…}` (OpenMetrics, `\"` and `\\` escapes), or a plain
//!    dotted path. Leading `~` are stripped from a tagged name, as carbon
//!    does for its `name` tag; a tag called `name` is dropped, because carbon
//!    replaces it with the series name.
//! 6. The name (without tags) goes through the [`Templates`]; tags from the
//!    path are merged over the template's, and the value lands in field
//!    `value` unless a template `field` part names it.

use std::borrow::Cow;
use std::sync::Arc;

use conflux_core::metric::DuplicateTags;
use conflux_core::{Batch, MetricError, Value};

use conflux_core::digits::{POW10_U64, decimal, leading_digits};
use conflux_core::quote::unable_to_parse;

use super::error::{ErrorKind, LineError};
use super::pickle;
use super::template::{Applied, Templates};

#[cfg(test)]
mod tests;

/// How [`Parser::parse`] reads a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParseOptions {
    /// Time given to lines without a timestamp (or `-1`, `N`), in
    /// nanoseconds. Read the clock once per read chunk.
    pub default_timestamp_ns: i64,
    /// A timestamp of `0` also means the receive time (vmagent's rule;
    /// carbon stores it as 1970-01-01).
    pub zero_is_now: bool,
}

impl ParseOptions {
    /// Options with receive time `now_ns`; `0` is a real timestamp.
    pub fn new(now_ns: i64) -> ParseOptions {
        ParseOptions {
            default_timestamp_ns: now_ns,
            zero_is_now: false,
        }
    }
}

/// An error found while reading a line: its kind and the reason text.
#[derive(Debug)]
pub(crate) struct Fail {
    pub kind: ErrorKind,
    /// Fixed, but for the limits, whose text names the limit.
    pub reason: Cow<'static, str>,
}

impl From<ErrorKind> for Fail {
    fn from(kind: ErrorKind) -> Self {
        Fail {
            kind,
            reason: Cow::Borrowed(kind.text()),
        }
    }
}

/// Where a tag's key or value lives: in the path, or in the parser's scratch
/// string (OpenMetrics values with escapes).
#[derive(Debug, Clone, Copy)]
struct Src {
    start: usize,
    end: usize,
    scratch: bool,
}

impl Src {
    fn path(start: usize, end: usize) -> Src {
        Src {
            start,
            end,
            scratch: false,
        }
    }

    fn get<'a>(&self, path: &'a str, scratch: &'a str) -> &'a str {
        let s = if self.scratch { scratch } else { path };
        s.get(self.start..self.end).unwrap_or_default()
    }
}

/// What the last lines read, for the lines after them: agents send the
/// fields of one measurement as lines that differ only in the name, value
/// and time (Telegraf), and one collection's lines share a timestamp, so
/// the tags and timestamp of most lines are the ones just read, and need no
/// second reading. Lives for one payload.
#[derive(Debug, Default)]
struct Repeat<'a> {
    /// The tags part (from the first `;`) of the last path whose tags were
    /// read without fault, and those tags in order (`name` left out).
    region: Option<&'a str>,
    tags: Vec<(&'a str, &'a str)>,
    /// The length of the batch when a line was last stored with all those
    /// tags: its metric is then the batch's last one, whose tags the next
    /// line with the same ones can copy.
    stored: Option<usize>,
    /// The last timestamp token read, and what it read as: the lines of
    /// one collection share their timestamp.
    ts: Option<(&'a [u8], i64)>,
}

/// A reusable Graphite parser: compiled templates plus scratch buffers, so
/// that parsing allocates nothing per line once warm. Keep one per
/// connection.
#[derive(Debug)]
pub struct Parser {
    templates: Arc<Templates>,
    applied: Applied,
    tags: Vec<(Src, Src)>,
    scratch: String,
    pickle: pickle::Decoder,
    /// The delimiters of the carbon tags being read ([`tag_delimiters`]).
    delims: Vec<usize>,
    /// Whether [`Parser::plain_line`] is tried first (off only in tests,
    /// which compare the two ways of reading).
    plain_lines: bool,
}

impl Default for Parser {
    /// No templates: the whole path is the name.
    fn default() -> Self {
        Parser::new(Arc::new(Templates::default()))
    }
}

impl Parser {
    /// A parser applying `templates`.
    pub fn new(templates: Arc<Templates>) -> Parser {
        Parser {
            templates,
            applied: Applied::default(),
            tags: Vec::with_capacity(16),
            scratch: String::new(),
            pickle: pickle::Decoder::default(),
            delims: Vec::new(),
            plain_lines: true,
        }
    }

    /// Parse a plaintext payload. Good lines go into `batch`, each bad line
    /// into `errors` (one bad line never hides the others). Returns the
    /// number of lines parsed into metrics.
    pub fn parse(
        &mut self,
        input: &[u8],
        opts: &ParseOptions,
        batch: &mut Batch,
        errors: &mut Vec<LineError>,
    ) -> usize {
        // One UTF-8 check of the whole payload costs far less than one per
        // path; a payload with a bad byte is checked line by line instead.
        let text = simdutf8::basic::from_utf8(input).ok();
        let mut repeat = Repeat::default();
        let mut parsed = 0;
        let mut line_no = 0;
        let mut pos = 0;
        let n = input.len();
        while pos < n {
            line_no += 1;
            if let Some(t) = text.filter(|_| self.plain_lines)
                && let Some((nl, result)) = self.plain_line(input, t, pos, opts, batch, &mut repeat)
            {
                match result {
                    Ok(()) => parsed += 1,
                    Err(fail) => errors.push(LineError {
                        line: line_no,
                        message: unable_to_parse(&input[pos..nl], &fail.reason),
                        kind: fail.kind,
                    }),
                }
                pos = nl + 1;
                continue;
            }
            let nl = memchr::memchr(b'\n', &input[pos..]).map_or(n, |i| pos + i);
            let (s, e) = trim(input, pos, nl);
            pos = nl + 1;
            if s == e {
                continue;
            }
            let line = &input[s..e];
            // Blanks are ASCII, so a trimmed line starts and ends on char boundaries.
            let line_text = text.and_then(|t| t.get(s..e));
            match self.line(line, line_text, opts, batch, &mut repeat) {
                Ok(()) => parsed += 1,
                Err(fail) => errors.push(LineError {
                    line: line_no,
                    message: unable_to_parse(line, &fail.reason),
                    kind: fail.kind,
                }),
            }
        }
        parsed
    }

    /// Decode one pickle frame (the bytes after the 4-byte length) holding
    /// `[(path, (timestamp, value)), …]`. Items that do not unpack, or whose
    /// path or numbers are bad, go into `errors` (numbered from 1) and are
    /// skipped, as carbon skips them; returns the number of items parsed into
    /// metrics.
    ///
    /// # Errors
    /// [`PickleError`](super::PickleError) when the frame does not load as a
    /// list: nothing from it is used.
    pub fn parse_pickle(
        &mut self,
        frame: &[u8],
        opts: &ParseOptions,
        batch: &mut Batch,
        errors: &mut Vec<LineError>,
    ) -> Result<usize, super::PickleError> {
        // The decoder is taken out so that items can be handed to `self`.
        let mut dec = std::mem::take(&mut self.pickle);
        let result = dec.load(frame).map(|top| {
            let mut parsed = 0;
            let mut repeat = Repeat::default();
            let count = dec.items(top).len();
            for index in 0..count {
                let item = dec.item(top, index);
                let outcome = match dec.datapoint(frame, item) {
                    Some((path, ts, value)) => {
                        self.datapoint(path, ts, value, opts, batch, &mut repeat)
                    }
                    None => Err(ErrorKind::InvalidItem.into()),
                };
                match outcome {
                    Ok(()) => parsed += 1,
                    Err(fail) => errors.push(LineError {
                        line: index + 1,
                        message: format!("item {}: {}", index + 1, fail.reason),
                        kind: fail.kind,
                    }),
                }
            }
            parsed
        });
        self.pickle = dec;
        result
    }

    /// One pickled datapoint.
    fn datapoint<'a>(
        &mut self,
        path: &'a [u8],
        ts: pickle::Number<'_>,
        value: pickle::Number<'_>,
        opts: &ParseOptions,
        batch: &mut Batch,
        repeat: &mut Repeat<'a>,
    ) -> Result<(), Fail> {
        let path = std::str::from_utf8(path).map_err(|_| Fail::from(ErrorKind::InvalidUtf8))?;
        let value = match value {
            pickle::Number::Int(i) => i as f64,
            pickle::Number::Float(f) => f,
            pickle::Number::Text(t) => parse_value(t)?,
        };
        if value.is_nan() {
            return Err(ErrorKind::NanValue.into());
        }
        let ts = match ts {
            pickle::Number::Int(i) => int_seconds(i, opts)?,
            pickle::Number::Float(f) => float_seconds(f, opts)?,
            pickle::Number::Text(t) => parse_timestamp(t, opts)?,
        };
        self.metric(path, Semi::Unknown, value, ts, batch, repeat)
    }

    /// The line at `pos` when it has the common shape, read in one pass
    /// with no search for its newline first: `path value [timestamp]\n`,
    /// the path plain (no `;`, `{` or blank), the value a plain decimal, the
    /// timestamp the one read last, nothing around them but single runs of
    /// blanks between. Returns where the line's newline is (or the end of
    /// the payload) and what [`Parser::line`] would have made of it; `None`,
    /// with nothing done, for any other line, which `line` then reads.
    /// `text` is the whole payload, known to be UTF-8.
    fn plain_line<'a>(
        &mut self,
        input: &'a [u8],
        text: &'a str,
        pos: usize,
        opts: &ParseOptions,
        batch: &mut Batch,
        repeat: &mut Repeat<'a>,
    ) -> Option<(usize, Result<(), Fail>)> {
        // A blank first (`\r` too) is trimmed by `line`.
        if input.get(pos).is_none_or(|&b| is_blank(b)) {
            return None;
        }
        let path_end = path_stop(input, pos);
        // An empty line stops at once on its `\n`; `;` and `{` start tags.
        if !matches!(input.get(path_end), Some(b' ' | b'\t')) {
            return None;
        }
        let at = path_end + blanks(&input[path_end..]);
        let (value, len) = decimal_prefix(&input[at..])?;
        let after = at + len;
        let (ts, end) = match input.get(after) {
            None | Some(b'\n') => (opts.default_timestamp_ns, after),
            Some(b' ' | b'\t') => {
                let at = after + blanks(&input[after..]);
                let (tok, ts) = repeat.ts?;
                let end = at + tok.len();
                if !input.get(at..end).is_some_and(|t| short_eq(t, tok))
                    || !matches!(input.get(end), None | Some(b'\n'))
                {
                    return None;
                }
                (ts, end)
            }
            Some(_) => return None,
        };
        // `pos` starts a line and `path_end` is at an ASCII blank: char boundaries.
        let path = text.get(pos..path_end)?;
        let result = if self.templates.is_identity() {
            plain_metric(path, value, ts, batch)
        } else {
            self.metric(path, Semi::None, value, ts, batch, repeat)
        };
        Some((end, result))
    }

    /// One non-blank, trimmed line; `text` is the same line when the payload
    /// is known to be UTF-8.
    fn line<'a>(
        &mut self,
        line: &'a [u8],
        text: Option<&'a str>,
        opts: &ParseOptions,
        batch: &mut Batch,
        repeat: &mut Repeat<'a>,
    ) -> Result<(), Fail> {
        let (path_end, semi) = path_end(line);
        let path = &line[..path_end];
        let rest = skip_blanks(&line[path_end..]);
        if rest.is_empty() {
            return Err(ErrorKind::MissingValue.into());
        }
        // A plain decimal is read where it starts, its end found on the way
        // (no separate scan for the blank after it); anything else is cut
        // at the blank and read below, after the shape checks, as before.
        let (fast, value_end) = match decimal_prefix(rest) {
            Some((v, n)) if rest.get(n).is_none_or(|&b| is_blank(b)) => (Some(v), n),
            _ => (None, token_end(rest)),
        };
        let value_tok = &rest[..value_end];
        let rest = skip_blanks(&rest[value_end..]);
        // The line is trimmed: a token equal to the last one read is the
        // line's whole rest, with no field after it.
        let known = repeat.ts.filter(|&(tok, _)| short_eq(tok, rest));
        let ts_tok = if rest.is_empty() || known.is_some() {
            None
        } else {
            let ts_end = token_end(rest);
            if ts_end < rest.len() {
                return Err(ErrorKind::TooManyFields.into());
            }
            Some(rest)
        };
        let value = match fast {
            Some(v) => v,
            None => parse_value(value_tok)?,
        };
        if value.is_nan() {
            return Err(ErrorKind::NanValue.into());
        }
        let ts = if let Some((_, ts)) = known {
            ts
        } else if let Some(t) = ts_tok {
            let ts = parse_timestamp(t, opts)?;
            repeat.ts = Some((t, ts));
            ts
        } else {
            opts.default_timestamp_ns
        };
        let path = match text.and_then(|t| t.get(..path_end)) {
            Some(p) => p,
            None => std::str::from_utf8(path).map_err(|_| Fail::from(ErrorKind::InvalidUtf8))?,
        };
        self.metric(path, semi, value, ts, batch, repeat)
    }

    /// Add the metric for `path` (any of the three forms) to `batch`;
    /// `semi` is what is known of its first `;`.
    fn metric<'a>(
        &mut self,
        path: &'a str,
        semi: Semi,
        value: f64,
        ts: i64,
        batch: &mut Batch,
        repeat: &mut Repeat<'a>,
    ) -> Result<(), Fail> {
        let bytes = path.as_bytes();
        let open = if bytes.ends_with(b"\"}") {
            memchr::memchr(b'{', bytes)
        } else {
            None
        };
        let semi = match (open, semi) {
            (Some(_), _) | (None, Semi::None) => None,
            (None, Semi::At(i)) => Some(i),
            (None, Semi::Unknown) => memchr::memchr(b';', bytes),
        };
        // The common forms without templates have their own paths.
        if self.templates.is_identity() {
            match (open, semi) {
                (None, Some(semi)) => {
                    return self.carbon_metric(path, semi, value, ts, batch, repeat);
                }
                (None, None) => return plain_metric(path, value, ts, batch),
                _ => {}
            }
        }
        self.tags.clear();
        let tagged;
        let name = if let Some(open) = open {
            self.openmetrics_tags(path, open)?;
            tagged = true;
            &path[..open]
        } else if let Some(semi) = semi {
            self.carbon_tags(path, semi)?;
            tagged = true;
            &path[..semi]
        } else {
            tagged = false;
            path
        };
        // Carbon derives its `name` tag with leading `~` stripped and refuses an empty one.
        let name = if tagged {
            name.trim_start_matches('~')
        } else {
            name
        };
        if name.is_empty() {
            return Err(ErrorKind::MissingName.into());
        }

        let templates = &*self.templates;
        let scratch = self.scratch.as_str();
        let result = if templates.is_identity() {
            let mut b = batch.metric(name);
            for (k, v) in &self.tags {
                b.tag(k.get(path, scratch), v.get(path, scratch));
            }
            b.field("value", Value::Float(value));
            if self.tags.is_empty() {
                b.finish(ts)
            } else {
                b.finish_with(ts, DuplicateTags::LastWins)
            }
        } else {
            templates.apply(name, &mut self.applied);
            let applied = &self.applied;
            let measurement = if applied.has_measurement() {
                applied.measurement.as_str()
            } else {
                name
            };
            let field = if applied.field.is_empty() {
                "value"
            } else {
                applied.field.as_str()
            };
            let mut b = batch.metric(measurement);
            // Added first, so that a path tag with the same key wins (LastWins).
            for (k, v) in templates.tags(applied) {
                b.tag(k, v);
            }
            for (k, v) in &self.tags {
                b.tag(k.get(path, scratch), v.get(path, scratch));
            }
            b.field(field, Value::Float(value));
            b.finish_with(ts, DuplicateTags::LastWins)
        };
        result.map_err(builder_error)
    }

    /// [`Parser::metric`] for `name;k=v;…` without templates: the tags of
    /// the line before are reused when the same, and copied whole in the
    /// batch when its metric is the last one there. Refuses what
    /// `metric` refuses, in the same order.
    fn carbon_metric<'a>(
        &mut self,
        path: &'a str,
        semi: usize,
        value: f64,
        ts: i64,
        batch: &mut Batch,
        repeat: &mut Repeat<'a>,
    ) -> Result<(), Fail> {
        // `;` is ASCII: a char boundary.
        let (name, region) = path.split_at_checked(semi).unwrap_or_default();
        if repeat.region != Some(region) {
            repeat.region = None;
            repeat.stored = None;
            carbon_region_tags(region, &mut repeat.tags, &mut self.delims)?;
            repeat.region = Some(region);
        }
        // Carbon derives its `name` tag with leading `~` stripped and refuses an empty one.
        let name = name.trim_start_matches('~');
        if name.is_empty() {
            return Err(ErrorKind::MissingName.into());
        }
        let copy = repeat.stored == Some(batch.len());
        let mut b = batch.metric(name);
        if copy {
            b.repeat_last_tags();
        } else {
            for &(k, v) in &repeat.tags {
                b.tag(k, v);
            }
        }
        b.field("value", Value::Float(value));
        let result = if repeat.tags.is_empty() {
            b.finish(ts)
        } else {
            b.finish_with(ts, DuplicateTags::LastWins)
        };
        result.map_err(builder_error)?;
        // Copyable by the next line unless a repeated key was dropped.
        let kept = batch
            .len()
            .checked_sub(1)
            .map_or(0, |i| batch.get(i).tags().len());
        repeat.stored = (kept == repeat.tags.len()).then_some(batch.len());
        Ok(())
    }

    /// `name;k=v;k2=v2`: carbon's `TaggedSeries.parse_carbon`. One pass over
    /// the bytes: segments are short, so a plain loop beats a `memchr` call
    /// per delimiter.
    fn carbon_tags(&mut self, path: &str, semi: usize) -> Result<(), Fail> {
        let bytes = path.as_bytes();
        let mut start = semi + 1;
        let mut eq: Option<usize> = None;
        let mut bad_key = false;
        let mut i = start;
        loop {
            i = next_tag_special(bytes, i);
            let b = bytes.get(i).copied();
            match b {
                Some(b'=') if eq.is_none() => eq = Some(i),
                Some(b'!' | b'^') if eq.is_none() => bad_key = true,
                Some(b';') | None => {
                    let e = carbon_tag(bytes, start, eq, i, bad_key)?;
                    if &bytes[start..e] != b"name" {
                        self.tags.push((Src::path(start, e), Src::path(e + 1, i)));
                    }
                    if b.is_none() {
                        return Ok(());
                    }
                    start = i + 1;
                    eq = None;
                    bad_key = false;
                }
                Some(_) => {}
            }
            i += 1;
        }
    }

    /// `name{k="v",k2="v2"}`: carbon's `TaggedSeries.parse_openmetrics`, whose
    /// segment regex is `([^=]+)="((?:[\\]["\\]|[^"\\])+)"(:?,|$)`.
    fn openmetrics_tags(&mut self, path: &str, open: usize) -> Result<(), Fail> {
        let bytes = path.as_bytes();
        // The path ends in `"}`; carbon's `split('{', 2)` refuses a second `{`.
        let end = bytes.len() - 1;
        if memchr::memchr(b'{', &bytes[open + 1..end]).is_some() {
            return Err(ErrorKind::InvalidOpenMetrics.into());
        }
        self.scratch.clear();
        let mut i = open + 1;
        while i < end {
            // Key: one or more bytes other than `=`, then `="`.
            let ks = i;
            let eq = memchr::memchr(b'=', &bytes[i..end]).map(|o| i + o);
            let Some(eq) = eq.filter(|&e| e > ks && bytes.get(e + 1) == Some(&b'"')) else {
                return Err(ErrorKind::InvalidOpenMetrics.into());
            };
            let key = Src::path(ks, eq);
            // Value: `\"`, `\\` or any byte but `"` and `\`, at least one.
            let vs = eq + 2;
            let mut j = vs;
            let mut escaped = false;
            loop {
                match bytes.get(j) {
                    Some(b'"') => break,
                    Some(b'\\') if matches!(bytes.get(j + 1), Some(b'"' | b'\\')) => {
                        escaped = true;
                        j += 2;
                    }
                    Some(b'\\') | None => return Err(ErrorKind::InvalidOpenMetrics.into()),
                    Some(_) => j += 1,
                }
            }
            if j == vs || j >= end {
                return Err(ErrorKind::InvalidOpenMetrics.into());
            }
            let value = if escaped {
                let s = self.scratch.len();
                let mut k = vs;
                while k < j {
                    if bytes[k] == b'\\' {
                        k += 1;
                    }
                    // Escapes only ever stand before ASCII, so char boundaries hold.
                    let c_end = next_char_end(path, k);
                    self.scratch.push_str(&path[k..c_end]);
                    k = c_end;
                }
                Src {
                    start: s,
                    end: self.scratch.len(),
                    scratch: true,
                }
            } else {
                Src::path(vs, j)
            };
            // After the closing quote: an optional `:`, then `,` or the end.
            i = j + 1;
            if bytes.get(i) == Some(&b':') {
                i += 1;
            }
            match bytes.get(i) {
                Some(b',') => i += 1,
                _ if i == end => {}
                _ => return Err(ErrorKind::InvalidOpenMetrics.into()),
            }
            let scratch = self.scratch.as_str();
            check_tag(
                key.get(path, scratch).as_bytes(),
                value.get(path, scratch).as_bytes(),
            )?;
            if key.get(path, scratch) != "name" {
                self.tags.push((key, value));
            }
        }
        Ok(())
    }
}

/// [`Parser::metric`] for a plain path without templates: the whole path
/// is the name.
/// Carbon's `validateTagAndValue`, in its order, on the tag `bytes[start..end]`
/// whose first `=` is at `eq` (`bad_key`: its key holds `!` or `^`);
/// returns where the `=` is.
#[inline]
fn carbon_tag(
    bytes: &[u8],
    start: usize,
    eq: Option<usize>,
    end: usize,
    bad_key: bool,
) -> Result<usize, Fail> {
    let Some(e) = eq else {
        return Err(ErrorKind::InvalidTag.into());
    };
    if e == start || e + 1 == end {
        return Err(ErrorKind::InvalidTag.into());
    }
    if bad_key {
        return Err(ErrorKind::InvalidTagKey.into());
    }
    if bytes.get(e + 1) == Some(&b'~') {
        return Err(ErrorKind::InvalidTagValue.into());
    }
    Ok(e)
}

fn plain_metric(path: &str, value: f64, ts: i64, batch: &mut Batch) -> Result<(), Fail> {
    if path.is_empty() {
        return Err(ErrorKind::MissingName.into());
    }
    batch
        .push_float(path, "value", value, ts)
        .map_err(builder_error)
}

/// A refusal of the batch's builder as the line's error.
fn builder_error(e: MetricError) -> Fail {
    match e {
        MetricError::BatchTooLarge => ErrorKind::BatchTooLarge.into(),
        // The batch's limits, counted on the merged tags.
        MetricError::TooManyTags { .. } => Fail {
            kind: ErrorKind::TooManyTags,
            reason: Cow::Owned(e.to_string()),
        },
        MetricError::SeriesKeyTooLong { .. } => Fail {
            kind: ErrorKind::SeriesKeyTooLong,
            reason: Cow::Owned(e.to_string()),
        },
        // Names, keys and fields are checked non-empty above; a template
        // can still leave a tag key empty only if the spec had one, which
        // the compiler refuses.
        _ => ErrorKind::InvalidTag.into(),
    }
}

/// [`Parser::carbon_tags`] for the tags part of a path (`region`, from its
/// first `;`), into a list of slices; the same checks in the same order.
/// One pass ([`tag_delimiters`]) finds every `;=!^`; the segments are read
/// off that list. Its own function, so that the parser's loop keeps its
/// state in registers.
#[inline(never)]
fn carbon_region_tags<'a>(
    region: &'a str,
    tags: &mut Vec<(&'a str, &'a str)>,
    delims: &mut Vec<usize>,
) -> Result<(), Fail> {
    tags.clear();
    let bytes = region.as_bytes();
    let mut start = 1;
    let mut eq: Option<usize> = None;
    let mut bad_key = false;
    // A window at a time, so that the list stays short for any path.
    let mut base = 0;
    loop {
        let end = (base + WINDOW).min(bytes.len());
        let last = end == bytes.len();
        let window = bytes.get(base..end).unwrap_or_default();
        // The last list ends with the length: the end of the last segment.
        let count = tag_delimiters(window, base, last.then_some(end), delims);
        for &i in delims.get(..count).unwrap_or_default() {
            match bytes.get(i) {
                Some(b'=') if eq.is_none() => eq = Some(i),
                Some(b'!' | b'^') if eq.is_none() => bad_key = true,
                // The `;` the region starts with.
                Some(b';') if i == 0 => {}
                Some(b';') | None => {
                    let e = carbon_tag(bytes, start, eq, i, bad_key)?;
                    // Cuts next to `;` or `=` (ASCII), or at the end: on char
                    // boundaries; past the `=` by `strip_prefix`, which needs
                    // no check.
                    let segment = region.get(start..i).unwrap_or_default();
                    let (k, v) = segment.split_at_checked(e - start).unwrap_or_default();
                    if k != "name" {
                        tags.push((k, v.strip_prefix('=').unwrap_or_default()));
                    }
                    start = i + 1;
                    eq = None;
                    bad_key = false;
                }
                Some(_) => {}
            }
        }
        if last {
            return Ok(());
        }
        base = end;
    }
}

/// Bytes [`tag_delimiters`] reads at a time: its list holds at most that
/// many finds, whatever the length of the path.
const WINDOW: usize = 4096;

/// Write the offset (plus `base`) of every `;`, `=`, `!` and `^` of `b` to
/// `out` in order, then `end` if given; return how many. A few other
/// offsets may be in the list too (see below): readers look at the byte.
/// `out` only grows, and holds stale offsets past the count.
///
/// Tag segments are a few bytes to a few dozen, too short for a `memchr`
/// call per find. Eight bytes at a time (SWAR), each find then costs a few
/// instructions on a mask with the high bit of each matching byte.
#[inline(never)]
fn tag_delimiters(b: &[u8], mut base: usize, end: Option<usize>, out: &mut Vec<usize>) -> usize {
    // Room for a find at every byte, the end, and the last chunk's window.
    if out.len() < b.len() + 1 + 8 {
        out.resize(b.len() + 1 + 8, 0);
    }
    let out = out.as_mut_slice();
    let (chunks, tail) = b.as_chunks::<8>();
    let mut n = 0;
    for chunk in chunks {
        tag_delimiters_of(*chunk, base, out, &mut n);
        base += 8;
    }
    // A byte that is no delimiter pads the tail.
    let mut last = [b'a'; 8];
    last[..tail.len()].copy_from_slice(tail);
    tag_delimiters_of(last, base, out, &mut n);
    if let Some(end) = end
        && let Some(slot) = out.get_mut(n)
    {
        *slot = end;
        n += 1;
    }
    n
}

/// The step of [`tag_delimiters`] for the 8 bytes at offset `base`: their
/// finds go to `out` from `*n` on.
#[inline(always)]
fn tag_delimiters_of(chunk: [u8; 8], base: usize, out: &mut [usize], n: &mut usize) {
    const LO: u64 = 0x0101_0101_0101_0101;
    let x = u64::from_le_bytes(chunk);
    // The high bit of each zero byte of `x ^ c`; a borrow can also mark the
    // byte above a zero byte (one holding `c ^ 1`): readers skip those.
    let zero = |c: u8| {
        let t = x ^ (LO * u64::from(c));
        t.wrapping_sub(LO) & !t
    };
    let mut hits = (zero(b';') | zero(b'=') | zero(b'!') | zero(b'^')) & (LO << 7);
    // At most 8 finds: one bounds check for the chunk's window, none per find.
    let Some(window) = out.get_mut(*n..*n + 8) else {
        return;
    };
    let mut k = 0;
    while hits != 0 {
        window[k & 7] = base + (hits.trailing_zeros() / 8) as usize;
        hits &= hits - 1;
        k += 1;
    }
    *n += k;
}

/// The first position from `i` holding one of `=!^;`, or `bytes.len()`.
/// Eight bytes at a time (SWAR): tag segments are a few bytes to a few
/// dozen, too short for `memchr` to pay off, and this is the hot loop of
/// tagged lines.
fn next_tag_special(bytes: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // High bit set in each byte of `v` that is zero; a borrow can also mark
    // a byte above a zero byte, but never one below it, so the lowest mark
    // is exact.
    let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let hits = zero(x ^ (LO * u64::from(b'=')))
            | zero(x ^ (LO * u64::from(b';')))
            | zero(x ^ (LO * u64::from(b'!')))
            | zero(x ^ (LO * u64::from(b'^')));
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && !TAG_SPECIAL[usize::from(bytes[i])] {
        i += 1;
    }
    i
}

/// The bytes [`Parser::carbon_tags`] must look at.
const TAG_SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'=' as usize] = true;
    t[b'!' as usize] = true;
    t[b'^' as usize] = true;
    t[b';' as usize] = true;
    t
};

/// Carbon's `validateTagAndValue`, with the reason it failed.
fn check_tag(key: &[u8], value: &[u8]) -> Result<(), Fail> {
    if key.is_empty() || value.is_empty() {
        return Err(ErrorKind::InvalidTag.into());
    }
    if key.iter().any(|b| matches!(b, b';' | b'!' | b'^' | b'=')) {
        return Err(ErrorKind::InvalidTagKey.into());
    }
    if value[0] == b'~' {
        return Err(ErrorKind::InvalidTagValue.into());
    }
    if memchr::memchr(b';', value).is_some() {
        return Err(Fail {
            kind: ErrorKind::InvalidTagValue,
            reason: Cow::Borrowed("invalid tag value: must not contain `;`"),
        });
    }
    Ok(())
}

fn next_char_end(s: &str, i: usize) -> usize {
    let mut e = i + 1;
    while e < s.len() && !s.is_char_boundary(e) {
        e += 1;
    }
    e.min(s.len())
}

/// Parse a whole plaintext payload with no templates. See [`Parser::parse`];
/// keep a [`Parser`] to reuse its buffers.
pub fn parse(
    input: &[u8],
    opts: &ParseOptions,
    batch: &mut Batch,
    errors: &mut Vec<LineError>,
) -> usize {
    Parser::default().parse(input, opts, batch, errors)
}

/// Decode one pickle frame with no templates. See [`Parser::parse_pickle`].
///
/// # Errors
/// As [`Parser::parse_pickle`].
pub fn parse_pickle(
    frame: &[u8],
    opts: &ParseOptions,
    batch: &mut Batch,
    errors: &mut Vec<LineError>,
) -> Result<usize, super::PickleError> {
    Parser::default().parse_pickle(frame, opts, batch, errors)
}

/// `a == b`, for the short tokens compared on every line: 8 to 16 bytes
/// (a timestamp in seconds) as two words, without a call to `memcmp`.
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    match (a.first_chunk::<8>(), b.first_chunk::<8>()) {
        (Some(af), Some(bf)) if a.len() <= 16 => {
            af == bf && a.last_chunk::<8>() == b.last_chunk::<8>()
        }
        _ => a == b,
    }
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r')
}

/// The range `start..end` of `input` without leading and trailing blanks.
fn trim(input: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    while start < end && is_blank(input[start]) {
        start += 1;
    }
    while end > start && is_blank(input[end - 1]) {
        end -= 1;
    }
    (start, end)
}

/// Where a plain path that starts at `from` stops: at its first blank,
/// newline, `;` or `{`, or at the end of `input`. Sixteen bytes at a time
/// first, in a loop the compiler turns into a few SIMD compares per block
/// (a path is ~90 bytes; three `memchr` calls over it cost twice as much).
fn path_stop(input: &[u8], from: usize) -> usize {
    let rest = input.get(from..).unwrap_or_default();
    let (blocks, tail) = rest.as_chunks::<16>();
    let mut at = from;
    for block in blocks {
        // Three tests a byte, not five: a control byte is no stop, but
        // rare in a path, and the words below find the exact one.
        let mut any = 0u8;
        for &c in block {
            any |= u8::from((c <= b' ') | (c == b';') | (c == b'{'));
        }
        if any != 0 {
            let [lo, hi] = [&block[..8], &block[8..]]
                .map(|w| first_stop(u64::from_le_bytes(w.try_into().unwrap_or_default())));
            let stop = if lo < 8 { lo } else { 8 + hi };
            if stop < 16 {
                return at + stop;
            }
        }
        at += 16;
    }
    at + tail
        .iter()
        .position(|&c| is_path_stop(c))
        .unwrap_or(tail.len())
}

/// The place of the first path stop among the eight bytes of `w` (little
/// endian), 8 when there is none: a word at a time, where a byte loop over
/// the block that holds the stop was most of a path's scan.
fn first_stop(w: u64) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    // The high bit of each byte equal to `c`; a borrow can only mark
    // bytes above a true match, so the lowest mark is exact.
    let marks = |c: u8| {
        let x = w ^ (LO * u64::from(c));
        x.wrapping_sub(LO) & !x & (LO << 7)
    };
    let m = marks(b' ') | marks(b'\t') | marks(b'\n') | marks(b';') | marks(b'{');
    (m.trailing_zeros() / 8) as usize
}

#[inline(always)]
fn is_path_stop(c: u8) -> bool {
    // `|`, not `||`: no branches, so that the block loop vectorizes.
    (c == b' ') | (c == b'\t') | (c == b'\n') | (c == b';') | (c == b'{')
}

/// The number of blanks `s` starts with.
fn blanks(s: &[u8]) -> usize {
    s.iter().position(|&b| !is_blank(b)).unwrap_or(s.len())
}

fn skip_blanks(s: &[u8]) -> &[u8] {
    &s[blanks(s)..]
}

/// Length of the token at the start of `s` (up to a blank).
fn token_end(s: &[u8]) -> usize {
    s.iter().position(|&b| is_blank(b)).unwrap_or(s.len())
}

/// What [`path_end`] learned of the path's first `;`, which [`Parser::metric`]
/// would otherwise search for again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Semi {
    At(usize),
    None,
    Unknown,
}

/// End of the path token: the first blank, except inside the quotes of an
/// OpenMetrics path (`name{k="a b"}`). The search for its `{` looks for `;`
/// too: the answer is the path's first `;` (or that it has none), one pass
/// fewer over a plain path.
fn path_end(line: &[u8]) -> (usize, Semi) {
    let end = memchr::memchr2(b' ', b'\t', line).unwrap_or(line.len());
    let token = &line[..end];
    if end == line.len() || token.ends_with(b"}") {
        return (end, Semi::Unknown);
    }
    let (open, semi) = match memchr::memchr2(b'{', b';', token) {
        None => return (end, Semi::None),
        Some(i) if token[i] == b';' => (
            memchr::memchr(b'{', &token[i..]).map(|j| i + j),
            Semi::At(i),
        ),
        Some(i) => (Some(i), Semi::Unknown),
    };
    let Some(open) = open else {
        return (end, semi);
    };
    // Quote-aware scan; only paths with quoted blanks pay for it.
    let mut in_quotes = false;
    let mut i = open + 1;
    while i < line.len() {
        match line[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b' ' | b'\t' if !in_quotes => return (i, semi),
            _ => {}
        }
        i += 1;
    }
    (line.len(), semi)
}

/// A float as Rust reads it (`1`, `-1.5`, `1e3`, `.5`, `inf`, `NaN`).
fn parse_value(tok: &[u8]) -> Result<f64, Fail> {
    if let Some(v) = fast_float(tok) {
        return Ok(v);
    }
    std::str::from_utf8(tok)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .ok_or_else(|| ErrorKind::InvalidValue.into())
}

/// A whole token that is `[-]digits[.digits]`, read by [`decimal_prefix`]:
/// most values collectd, Telegraf and statsd send.
fn fast_float(tok: &[u8]) -> Option<f64> {
    decimal_prefix(tok).and_then(|(v, n)| (n == tok.len()).then_some(v))
}

/// The longest `[-]digits[.digits]` at the start of `b` (a digit at least),
/// read, and its length; what follows it is the caller's to check. Up to
/// 19 digits are read exactly by [`decimal`] (Telegraf's and Python's
/// shortest round-trip floats have up to 17); longer ones go to std's
/// parser, which takes any such decimal.
fn decimal_prefix(b: &[u8]) -> Option<(f64, usize)> {
    let (negative, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    let (mantissa, n) = leading_digits(digits, 0);
    let (mantissa, frac_digits, len) = match digits.get(n) {
        Some(b'.') => {
            let (mantissa, f) = leading_digits(&digits[n + 1..], mantissa);
            (mantissa, f, n + 1 + f)
        }
        _ => (mantissa, 0, n),
    };
    let len = usize::from(negative) + len;
    if n + frac_digits == 0 {
        return None;
    }
    let v = if n + frac_digits <= 19 {
        let v = decimal(mantissa, frac_digits)?;
        if negative { -v } else { v }
    } else {
        // `leading_digits` wraps past 19 digits: std's parser, sign and all.
        std::str::from_utf8(&b[..len]).ok()?.parse().ok()?
    };
    Some((v, len))
}

const NANOS: i64 = 1_000_000_000;

/// A timestamp token: float seconds, `N`, `-1`.
pub(crate) fn parse_timestamp(tok: &[u8], opts: &ParseOptions) -> Result<i64, Fail> {
    if tok == b"N" {
        return Ok(opts.default_timestamp_ns);
    }
    if let Some(ts) = decimal_seconds(tok, opts)? {
        return Ok(ts);
    }
    let f = std::str::from_utf8(tok)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .ok_or(Fail::from(ErrorKind::InvalidTimestamp))?;
    float_seconds(f, opts)
}

/// `[-+]digits[.digits]` read exactly (a float would lose the nanoseconds of a
/// 2023 timestamp), in one pass. `Ok(None)` when the token has another shape.
fn decimal_seconds(tok: &[u8], opts: &ParseOptions) -> Result<Option<i64>, Fail> {
    let (negative, digits) = match tok.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, tok),
    };
    // Up to 18 digits cannot overflow; only longer runs need checking.
    let (short, mut i) = leading_digits(digits.get(..18).unwrap_or(digits), 0);
    let mut int_part = short as i64;
    if i == 18 {
        while let Some(&b) = digits.get(i) {
            if !b.is_ascii_digit() {
                break;
            }
            int_part = int_part
                .checked_mul(10)
                .and_then(|n| n.checked_add(i64::from(b - b'0')))
                .ok_or(Fail::from(ErrorKind::TimestampOutOfRange))?;
            i += 1;
        }
    }
    let int_digits = i;
    let mut frac_ns: i64 = 0;
    let mut frac_digits = 0;
    if digits.get(i) == Some(&b'.') {
        i += 1;
        while let Some(&b) = digits.get(i) {
            if !b.is_ascii_digit() {
                break;
            }
            // Nanoseconds: digits past the ninth are dropped (toward zero).
            if frac_digits < 9 {
                frac_ns = frac_ns * 10 + i64::from(b - b'0');
                frac_digits += 1;
            }
            i += 1;
        }
    }
    if i != digits.len() || (int_digits == 0 && frac_digits == 0) {
        return Ok(None);
    }
    // Scale to nanoseconds: at most 9 digits were kept.
    frac_ns *= POW10_U64.get(9 - frac_digits).map_or(1, |&p| p as i64);
    // Carbon: `int(ts) == -1` means now, so -1.5 does too.
    if negative && int_part == 1 {
        return Ok(Some(opts.default_timestamp_ns));
    }
    if opts.zero_is_now && int_part == 0 && frac_ns == 0 {
        return Ok(Some(opts.default_timestamp_ns));
    }
    let ns = int_part
        .checked_mul(NANOS)
        .and_then(|n| n.checked_add(frac_ns))
        .ok_or(Fail::from(ErrorKind::TimestampOutOfRange))?;
    Ok(Some(if negative { -ns } else { ns }))
}

/// Float seconds (exponent forms, pickled floats) to nanoseconds.
pub(crate) fn float_seconds(f: f64, opts: &ParseOptions) -> Result<i64, Fail> {
    if f.is_nan() {
        return Err(ErrorKind::InvalidTimestamp.into());
    }
    if f.trunc() == -1.0 || (opts.zero_is_now && f == 0.0) {
        return Ok(opts.default_timestamp_ns);
    }
    // Whole seconds and the fraction apart: `f * 1e9` would round
    // 1700000000.25 to ...249999872 ns.
    let secs = f.trunc();
    if secs.is_nan() || secs.abs() >= 1e10 {
        return Err(ErrorKind::TimestampOutOfRange.into());
    }
    let frac_ns = ((f - secs) * 1e9).round() as i64;
    (secs as i64)
        .checked_mul(NANOS)
        .and_then(|n| n.checked_add(frac_ns))
        .ok_or(ErrorKind::TimestampOutOfRange.into())
}

/// Whole seconds (pickled ints) to nanoseconds.
pub(crate) fn int_seconds(s: i64, opts: &ParseOptions) -> Result<i64, Fail> {
    if s == -1 || (opts.zero_is_now && s == 0) {
        return Ok(opts.default_timestamp_ns);
    }
    s.checked_mul(NANOS)
        .ok_or(ErrorKind::TimestampOutOfRange.into())
}
