//! Telnet lines: `put <metric> <timestamp> <value> [<tagk=tagv> …]` and the
//! commands around it, as OpenTSDB 2.4 (`PutDataPointRpc`, `RpcManager`) and
//! KairosDB (`PutCommand`, `PutMillisecondCommand`, `PutSCommand`) read them.
//!
//! How a line is read:
//! 1. Lines end in `\n`; a `\r` before it is dropped (collectd's `write_tsdb`
//!    ends lines in `\r\n`). Empty lines and lines of spaces are skipped.
//! 2. Words are separated by runs of spaces (collectd writes two spaces when
//!    it has no extra tags; OpenTSDB skips such empty words among the tags, but
//!    a second space before the metric would give it an empty metric name).
//! 3. The first word picks the command: `put`, `putm` (KairosDB: milliseconds
//!    always), `puts` (KairosDB: the value is a string), `version`, `help`,
//!    `exit` (parsing stops there). Anything else, including OpenTSDB's
//!    `stats`, `dropcaches`, `rollup`, … which Conflux does not serve, is an
//!    unknown command, answered ``unknown command: x.  Try `help'.``.
//! 4. A data line is checked in OpenTSDB's order (argument count, timestamp,
//!    tag syntax, value, NaN/Inf, timestamp range, tag count, characters), so
//!    the first error reported is OpenTSDB's; a duplicate tag key with another
//!    value is reported last. The reply names OpenTSDB's exception:
//!    `put: invalid value: …` or `put: illegal argument: …`.

use std::borrow::Cow;

use conflux_core::metric::DuplicateTags;
use conflux_core::time::SecondsOrMillis;
use conflux_core::{Batch, MetricError, Value};

use super::error::{ErrorKind, LineError, QUOTE_BYTES, clip, clip_bytes};
use super::rules::{
    Class, Fail, check_names, finite, invalid_tag, read_time, read_value, surely_allowed,
    too_many_tags,
};
use super::{Characters, ParseOptions, VALUE_FIELD};

/// A telnet command other than the data commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `version`: answer with a non-empty line (tcollector reconnects otherwise).
    Version,
    /// `help`: list the commands.
    Help,
    /// `exit`: close the connection; the parser stopped at this line.
    Exit,
}

/// Something a line asks of the connection besides storing a point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A refused line; its `message` is the reply line.
    Error(LineError),
    /// A command to answer.
    Command {
        /// 1-based line number.
        line: usize,
        /// Which.
        command: Command,
    },
}

/// What [`parse`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Lines stored as metrics.
    pub metrics: usize,
    /// An `exit` was read: the lines after it were not parsed.
    pub exit: bool,
}

/// The data commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Data {
    /// `put`: seconds or milliseconds by the configured rule, numeric value.
    Put,
    /// `putm`: milliseconds, numeric value.
    Putm,
    /// `puts`: string value.
    Puts,
}

impl Data {
    fn name(self) -> &'static str {
        match self {
            Data::Put => "put",
            Data::Putm => "putm",
            Data::Puts => "puts",
        }
    }
}

/// Parse telnet lines. Metrics go into `batch`; refused lines and commands
/// into `events`, in line order. A final line without `\n` is parsed too.
pub fn parse(
    input: &[u8],
    opts: &ParseOptions,
    batch: &mut Batch,
    events: &mut Vec<Event>,
) -> Summary {
    let mut p = Parser {
        opts,
        tags: Vec::with_capacity(16),
    };
    let mut summary = Summary::default();
    let mut pos = 0;
    let mut line_no = 0;
    while pos < input.len() {
        let nl = memchr::memchr(b'\n', &input[pos..]).map_or(input.len(), |i| pos + i);
        let mut line = &input[pos..nl];
        pos = nl + 1;
        line_no += 1;
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        match p.line(line, batch) {
            Ok(Outcome::Stored) => summary.metrics += 1,
            Ok(Outcome::Skipped) => {}
            Ok(Outcome::Command(command)) => {
                events.push(Event::Command {
                    line: line_no,
                    command,
                });
                if command == Command::Exit {
                    summary.exit = true;
                    break;
                }
            }
            Err(e) => events.push(Event::Error(LineError {
                line: line_no,
                message: e.message,
                kind: e.kind,
            })),
        }
    }
    summary
}

enum Outcome {
    Stored,
    Skipped,
    Command(Command),
}

/// A refused line: the reply and its kind.
struct Refusal {
    message: String,
    kind: ErrorKind,
}

impl Refusal {
    fn from_fail(cmd: Data, f: Fail) -> Refusal {
        let class = match f.class {
            Class::InvalidValue => "invalid value",
            Class::IllegalArgument => "illegal argument",
        };
        Refusal {
            message: format!("{}: {class}: {}", cmd.name(), f.text),
            kind: f.kind,
        }
    }
}

struct Parser<'o, 'a> {
    opts: &'o ParseOptions,
    /// The tags of the current line, reused from line to line.
    tags: Vec<(&'a str, &'a str)>,
}

impl<'a> Parser<'_, 'a> {
    fn line(&mut self, line: &'a [u8], batch: &mut Batch) -> Result<Outcome, Refusal> {
        let start = skip_spaces(line, 0);
        if start == line.len() {
            return Ok(Outcome::Skipped);
        }
        let end = word_end(line, start);
        let cmd = match &line[start..end] {
            b"put" => Data::Put,
            b"putm" => Data::Putm,
            b"puts" => Data::Puts,
            b"version" => return Ok(Outcome::Command(Command::Version)),
            b"help" => return Ok(Outcome::Command(Command::Help)),
            b"exit" => return Ok(Outcome::Command(Command::Exit)),
            other => {
                return Err(Refusal {
                    message: format!(
                        "unknown command: {}.  Try `help'.",
                        clip_bytes(other, QUOTE_BYTES)
                    ),
                    kind: ErrorKind::UnknownCommand,
                });
            }
        };
        let Ok(text) = std::str::from_utf8(&line[end..]) else {
            return Err(Refusal::from_fail(
                cmd,
                Fail::illegal(ErrorKind::InvalidUtf8, "invalid UTF-8 in line"),
            ));
        };
        self.put(cmd, text, batch)
            .map(|()| Outcome::Stored)
            .map_err(|f| Refusal::from_fail(cmd, f))
    }

    /// The words after `put`: metric, timestamp, value, tags.
    fn put(&mut self, cmd: Data, text: &'a str, batch: &mut Batch) -> Result<(), Fail> {
        let opts = self.opts;
        let mut words = Words { text, pos: 0 };
        let need = if opts.require_tags { 4 } else { 3 };
        let (Some(metric), Some(ts_word), Some(value_word)) =
            (words.next(), words.next(), words.next())
        else {
            return Err(not_enough(need, Words { text, pos: 0 }.count()));
        };

        let raw_time = read_time(ts_word)?;
        scan_tags(text, words.pos, &mut self.tags)?;
        if self.tags.is_empty() && opts.require_tags {
            return Err(not_enough(need, 3));
        }
        let value = match cmd {
            Data::Puts => Value::Str(value_word),
            Data::Put | Data::Putm => read_value(value_word)?,
        };
        finite(&value, metric, ts_word)?;
        let rule = match cmd {
            Data::Putm => SecondsOrMillis::Millis,
            Data::Put | Data::Puts => opts.timestamps,
        };
        let ts = raw_time.to_ns(rule)?;
        if self.tags.len() > opts.max_tags {
            return Err(too_many_tags(self.tags.len(), opts.max_tags));
        }
        // One branch-free pass over the line (vectorized) clears the common
        // case; only a line with another byte gets the exact check. The pass
        // lets `=` through for the tags, so the metric is checked for it
        // (found by fuzzing: `put a=b 1 1` was stored).
        let surely = surely_allowed(text.as_bytes()) && !metric.contains('=');
        if !(opts.characters == Characters::AnyButSpace || surely) {
            check_names(metric, self.tags.iter().copied(), opts)?;
        }
        store(batch, metric, &self.tags, value, ts, Repeats::SameValueOnly)
    }
}

/// Split the `k=v` words of `text` from `from` on into `tags`, checking
/// that each has exactly one `=` and two sides.
///
/// Its own function, not inlined: in the parser's frame the loop's state
/// went through the stack, which cost half the parse time. One SIMD scan
/// (`memchr2`) finds every space and `=`; a word is what lies between two
/// spaces, so the work per byte is that of the scan alone.
#[inline(never)]
fn scan_tags<'a>(
    text: &'a str,
    from: usize,
    tags: &mut Vec<(&'a str, &'a str)>,
) -> Result<(), Fail> {
    tags.clear();
    let b = text.as_bytes();
    let region = b.get(from..).unwrap_or_default();
    let mut start = from;
    let mut eq = usize::MAX;
    let mut equals = 0u32;
    let ends = memchr::memchr2_iter(b' ', b'=', region)
        .map(|p| from + p)
        .chain(std::iter::once(b.len()));
    for p in ends {
        if p < b.len() && b[p] == b'=' {
            if equals == 0 {
                eq = p;
            }
            equals += 1;
            continue;
        }
        // A space or the end: the word `start..p`, unless empty.
        if p > start {
            // Word ends sit next to an ASCII space or an end of the text, and
            // `=` is ASCII: every cut is on a character boundary.
            let word = text.get(start..p).unwrap_or_default();
            if equals != 1 || eq == start || eq + 1 == p {
                return Err(invalid_tag(word));
            }
            let (k, v) = word.split_at(eq - start);
            tags.push((k, v.get(1..).unwrap_or_default()));
        }
        start = p + 1;
        equals = 0;
    }
    Ok(())
}

/// What a repeated tag key means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeats {
    /// Telnet: fine with the same value (OpenTSDB's `Tags.parse` ignores it),
    /// refused with another one.
    SameValueOnly,
    /// JSON: the later key wins, as in any JSON object read into a map.
    LastWins,
}

/// Add the point under `repeats`.
pub(crate) fn store(
    batch: &mut Batch,
    metric: &str,
    tags: &[(&str, &str)],
    value: Value<'_>,
    ts: i64,
    repeats: Repeats,
) -> Result<(), Fail> {
    let build = |batch: &mut Batch, dups| {
        let mut b = batch.metric(metric);
        for &(k, v) in tags {
            b.tag(k, v);
        }
        b.field(VALUE_FIELD, value);
        b.finish_with(ts, dups)
    };
    if repeats == Repeats::LastWins {
        return build(batch, DuplicateTags::LastWins).map_err(metric_error);
    }
    match build(batch, DuplicateTags::Reject) {
        Ok(()) => Ok(()),
        Err(MetricError::DuplicateTag) => {
            if let Some((k, v, first)) = conflicting_tag(tags) {
                return Err(Fail::illegal(
                    ErrorKind::DuplicateTag,
                    format!(
                        "duplicate tag: {}={}, tags={{{}={}}}",
                        clip(k, QUOTE_BYTES / 4),
                        clip(v, QUOTE_BYTES / 4),
                        clip(k, QUOTE_BYTES / 4),
                        clip(first, QUOTE_BYTES / 4)
                    ),
                ));
            }
            build(batch, DuplicateTags::LastWins).map_err(metric_error)
        }
        Err(e) => Err(metric_error(e)),
    }
}

/// The first tag whose key was seen before with another value: its key, its
/// value and the earlier value.
fn conflicting_tag<'t>(tags: &[(&'t str, &'t str)]) -> Option<(&'t str, &'t str, &'t str)> {
    tags.iter().enumerate().find_map(|(i, &(k, v))| {
        tags[..i]
            .iter()
            .find(|&&(k0, v0)| k0 == k && v0 != v)
            .map(|&(_, v0)| (k, v, v0))
    })
}

/// The batch's own checks; the parser's checks rule out all but the size cap
/// and the batch's limits (the listener's `max_tags_per_metric` and
/// `max_series_key_bytes`, behind OpenTSDB's own `max_tags`).
fn metric_error(e: MetricError) -> Fail {
    let kind = match e {
        MetricError::DuplicateTag => ErrorKind::DuplicateTag,
        MetricError::EmptyName => ErrorKind::MissingMetric,
        MetricError::EmptyTagKey => ErrorKind::InvalidTag,
        MetricError::NoFields | MetricError::EmptyFieldKey => ErrorKind::InvalidValue,
        MetricError::BatchTooLarge => ErrorKind::BatchTooLarge,
        MetricError::TooManyTags { .. } => ErrorKind::TooManyTags,
        MetricError::SeriesKeyTooLong { .. } => ErrorKind::SeriesKeyTooLong,
    };
    Fail::illegal(kind, Cow::Owned(e.to_string()))
}

/// `not enough arguments (need least N, got M)`, OpenTSDB's wording.
fn not_enough(need: usize, got: usize) -> Fail {
    Fail::illegal(
        ErrorKind::NotEnoughArguments,
        format!("not enough arguments (need least {need}, got {got})"),
    )
}

/// Space-separated words, empty ones skipped.
#[derive(Clone)]
struct Words<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let b = self.text.as_bytes();
        let start = skip_spaces(b, self.pos);
        if start >= b.len() {
            self.pos = b.len();
            return None;
        }
        let end = word_end(b, start);
        self.pos = end;
        // Both ends sit next to an ASCII space or at an end of the text.
        self.text.get(start..end)
    }
}

#[inline]
fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    i
}

#[inline]
fn word_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b' ' {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests;
