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
    Class, Fail, check_names, finite, invalid_tag, opentsdb_byte, read_time, read_value,
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
        region: None,
        region_allowed: false,
        stored: None,
        delims: Vec::new(),
        specials: specials(&opts.special_chars),
    };
    let mut summary = Summary::default();
    // One UTF-8 check of the whole payload costs far less than one per line;
    // a payload with a bad byte is checked line by line instead.
    let text = simdutf8::basic::from_utf8(input).ok();
    let mut pos = 0;
    let mut line_no = 0;
    while pos < input.len() {
        let nl = memchr::memchr(b'\n', &input[pos..]).map_or(input.len(), |i| pos + i);
        let mut end = nl;
        if end > pos && input[end - 1] == b'\r' {
            end -= 1;
        }
        let line = &input[pos..end];
        // `\n` and `\r` are ASCII: the line starts and ends on char boundaries.
        let line_text = text.and_then(|t| t.get(pos..end));
        pos = nl + 1;
        line_no += 1;
        match p.line(line, line_text, batch) {
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
    /// The tags of `region`, which the line before had too: agents send the
    /// fields of one measurement as lines that differ only in the metric,
    /// value and time (Telegraf, tcollector), so the tags of most lines are
    /// the ones just read, and need no second reading.
    tags: Vec<(&'a str, &'a str)>,
    /// The text after the value of the last line whose tags were read
    /// without fault; `tags` holds them.
    region: Option<&'a str>,
    /// Every byte of `region` is one the fast character check allows.
    region_allowed: bool,
    /// The length of the batch when the last line was stored with the tags
    /// of `region` as they are, none dropped: its metric is then the
    /// batch's last one, whose tags the next line with `region` can copy.
    stored: Option<usize>,
    /// The spaces and `=` of the region being read (see [`delimiters`]),
    /// reused from line to line.
    delims: Vec<usize>,
    /// The ASCII characters of `allow_special_chars`, which the fast
    /// character check lets through too.
    specials: Specials,
}

impl<'a> Parser<'_, 'a> {
    /// One line without its `\n` (and `\r`); `line_text` is the same line
    /// when the payload is known to be UTF-8.
    fn line(
        &mut self,
        line: &'a [u8],
        line_text: Option<&'a str>,
        batch: &mut Batch,
    ) -> Result<Outcome, Refusal> {
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
        // `end` is at a space or the end of the line: a char boundary.
        let text = match line_text.and_then(|t| t.get(end..)) {
            Some(text) => text,
            None => std::str::from_utf8(&line[end..]).map_err(|_| {
                Refusal::from_fail(
                    cmd,
                    Fail::illegal(ErrorKind::InvalidUtf8, "invalid UTF-8 in line"),
                )
            })?,
        };
        self.put(cmd, text, batch)
            .map(|()| Outcome::Stored)
            .map_err(|f| Refusal::from_fail(cmd, f))
    }

    /// The words after `put`: metric, timestamp, value, tags, checked in
    /// OpenTSDB's order.
    fn put(&mut self, cmd: Data, text: &'a str, batch: &mut Batch) -> Result<(), Fail> {
        let opts = self.opts;
        let need = if opts.require_tags { 4 } else { 3 };
        let b = text.as_bytes();
        let mut spans = [(0, 0); 3];
        let mut end = 0;
        for (n, span) in spans.iter_mut().enumerate() {
            let start = skip_spaces(b, end);
            if start == b.len() {
                return Err(not_enough(need, n));
            }
            end = word_end(b, start);
            *span = (start, end);
        }
        // Word ends sit next to an ASCII space or at an end of the text.
        let word = |(s, e): (usize, usize)| text.get(s..e).unwrap_or_default();
        let (metric, ts_word, value_word) = (word(spans[0]), word(spans[1]), word(spans[2]));
        let raw_time = read_time(ts_word)?;
        let region = text.get(end..).unwrap_or_default();
        if self.region != Some(region) {
            self.region = None;
            self.stored = None;
            self.region_allowed = self.read_tags(region)?;
            self.region = Some(region);
        }
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
        // Vectorized class checks clear the common case: every byte of the
        // metric and the tags in OpenTSDB's ASCII set (or a special one),
        // and no `=` in the metric (found by fuzzing: `put a=b 1 1` was
        // stored). Only a line with another byte gets the exact check.
        if opts.characters != Characters::AnyButSpace
            && !(self.region_allowed && name_allowed(metric.as_bytes(), &self.specials))
        {
            check_names(metric, self.tags.iter().copied(), opts)?;
        }
        // The tags of the metric stored last, copied whole when they are
        // these: the batch ends up the same as when adding them one by one.
        if self.stored == Some(batch.len()) {
            let mut b = batch.metric(metric);
            b.repeat_last_tags();
            b.field(VALUE_FIELD, value);
            b.finish(ts).map_err(metric_error)?;
        } else {
            let mut b = batch.metric(metric);
            for &(k, v) in &self.tags {
                b.tag(k, v);
            }
            b.field(VALUE_FIELD, value);
            match b.finish(ts) {
                Ok(()) => {}
                // Keys repeated: OpenTSDB's message, or the metric with each
                // key once (and no copy of it for the next line).
                Err(MetricError::DuplicateTag) => {
                    return store(batch, metric, &self.tags, value, ts, Repeats::SameValueOnly);
                }
                Err(e) => return Err(metric_error(e)),
            }
        }
        self.stored = Some(batch.len());
        Ok(())
    }

    /// Read the `k=v` words of `region` into `tags`, checking that each has
    /// exactly one `=` and two sides; return whether every byte is one the
    /// fast character check allows.
    ///
    /// Its own function: one pass ([`delimiters`]) finds every space and
    /// `=`, and the words are read off that list.
    #[inline(never)]
    fn read_tags(&mut self, region: &'a str) -> Result<bool, Fail> {
        self.tags.clear();
        let bytes = region.as_bytes();
        let mut allowed = true;
        let mut start = 0;
        let mut eq = 0;
        let mut equals = 0u32;
        // A window at a time, so that the list stays short for any line.
        let mut base = 0;
        loop {
            let end = (base + WINDOW).min(bytes.len());
            let last = end == bytes.len();
            let window = bytes.get(base..end).unwrap_or_default();
            // The last list ends with the length as a space: the end of the
            // last word.
            let (count, ok) = delimiters(
                window,
                base,
                last.then_some(end),
                &self.specials,
                &mut self.delims,
            );
            allowed &= ok;
            for &d in self.delims.get(..count).unwrap_or_default() {
                let p = d & !EQ;
                if d & EQ != 0 {
                    if equals == 0 {
                        eq = p;
                    }
                    equals += 1;
                    continue;
                }
                // A space or the end: the word `start..p`, unless empty.
                if p > start {
                    if equals != 1 || eq == start || eq + 1 == p {
                        return Err(bad_tag(region, start, p));
                    }
                    // Cuts next to a space or `=` (ASCII): on char boundaries.
                    // Past the `=` by `strip_prefix`, which needs no such check.
                    let word = region.get(start..p).unwrap_or_default();
                    let (k, v) = word.split_at_checked(eq - start).unwrap_or_default();
                    self.tags.push((k, v.strip_prefix('=').unwrap_or_default()));
                }
                start = p + 1;
                equals = 0;
            }
            if last {
                return Ok(allowed);
            }
            base = end;
        }
    }
}

/// Whether every byte of a metric name is in OpenTSDB's ASCII set or
/// `specials`: then it needs no exact check. Never for a `=` (unless
/// special), which [`delimiters`] lets through.
///
/// From eight bytes on, blocks overlap rather than being padded: checking a
/// byte twice changes nothing, and the blocks are then fixed-size loads,
/// not a copy of the tail (a `memcpy` call) per line.
#[inline]
fn name_allowed(b: &[u8], specials: &Specials) -> bool {
    let allowed = |block: [u8; 16]| {
        let (_, eqs, ok) = classify(block, specials);
        // `classify` allows `=` and spaces; a name has no space.
        ok && eqs == 0
    };
    if let Some(&last) = b.last_chunk::<16>() {
        let (blocks, _) = b.as_chunks::<16>();
        return blocks.iter().all(|&block| allowed(block)) && allowed(last);
    }
    if let (Some(head), Some(tail)) = (b.first_chunk::<8>(), b.last_chunk::<8>()) {
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(head);
        block[8..].copy_from_slice(tail);
        return allowed(block);
    }
    // An allowed byte that is no delimiter pads a short name.
    let mut block = [b'a'; 16];
    block[..b.len()].copy_from_slice(b);
    allowed(block)
}

/// `invalid tag: <word>` for the word `start..end` of `text`.
#[cold]
#[inline(never)]
fn bad_tag(text: &str, start: usize, end: usize) -> Fail {
    invalid_tag(text.get(start..end).unwrap_or_default())
}

/// Marks a `=` in the list [`delimiters`] makes: the top bit, never part of
/// an offset (a slice holds at most `isize::MAX` bytes).
const EQ: usize = 1 << (usize::BITS - 1);

/// Bytes [`delimiters`] reads at a time: its list holds at most that many
/// finds, whatever the length of the line.
const WINDOW: usize = 4096;

/// Write the offset (plus `base`) of every space and `=` of `b` to `out` in
/// order (`=` marked with [`EQ`]), then `end` as a space if given; return
/// how many, and whether every byte is one OpenTSDB surely allows in names
/// (its ASCII set or one of `specials`), a space or `=`. `out` only grows,
/// and holds stale offsets past the count.
///
/// Each word of a line holds a find or two a few bytes apart: too close for
/// a `memchr` call per find to pay off. A block of 16 bytes is classified by
/// loops the compiler turns into a few SIMD instructions (no `unsafe`, no
/// intrinsics); a find then costs a few instructions on a mask with the high
/// bit of each matching byte. Its own function with little state, so that
/// the loop keeps it in registers.
#[inline(never)]
fn delimiters(
    b: &[u8],
    mut base: usize,
    end: Option<usize>,
    specials: &Specials,
    out: &mut Vec<usize>,
) -> (usize, bool) {
    // Room for a find at every byte, the end, and the last block's window.
    if out.len() < b.len() + 1 + 16 {
        out.resize(b.len() + 1 + 16, 0);
    }
    let out = out.as_mut_slice();
    let (blocks, tail) = b.as_chunks::<16>();
    let mut n = 0;
    let mut allowed = true;
    // Blocks by value and the tail apart: so the compiler proves that
    // nothing aliases and keeps all in registers.
    for block in blocks {
        allowed &= delimiters_of(*block, base, specials, out, &mut n);
        base += 16;
    }
    // An allowed byte that is no delimiter pads the tail.
    let mut last = [b'a'; 16];
    last[..tail.len()].copy_from_slice(tail);
    allowed &= delimiters_of(last, base, specials, out, &mut n);
    if let Some(end) = end
        && let Some(slot) = out.get_mut(n)
    {
        *slot = end;
        n += 1;
    }
    (n, allowed)
}

/// The step of [`delimiters`] for the block at offset `base`: its finds go
/// to `out` from `*n` on.
#[inline(always)]
fn delimiters_of(
    block: [u8; 16],
    base: usize,
    specials: &Specials,
    out: &mut [usize],
    n: &mut usize,
) -> bool {
    let (hits, eqs, ok) = classify(block, specials);
    // At most 16 finds: one bounds check for the block's window, none per find.
    let Some(window) = out.get_mut(*n..*n + 16) else {
        return ok;
    };
    let mut k = 0;
    for (mut hits, eqs, base) in [
        (hits as u64, eqs as u64, base),
        ((hits >> 64) as u64, (eqs >> 64) as u64, base + 8),
    ] {
        while hits != 0 {
            let bit = hits & hits.wrapping_neg();
            hits ^= bit;
            let p = base + (bit.trailing_zeros() / 8) as usize;
            window[k & 15] = if eqs & bit != 0 { p | EQ } else { p };
            k += 1;
        }
    }
    *n += k;
    ok
}

/// The ASCII characters of `allow_special_chars` the fast character check
/// lets through, padded with a byte it allows anyway. A fixed number, so
/// that the check stays a few straight SIMD instructions.
type Specials = [u8; 4];

/// The first four ASCII characters of `chars`. The bytes of any other
/// character are all non-ASCII, and a fifth ASCII one is not in the list:
/// lines holding them only take the exact check.
fn specials(chars: &str) -> Specials {
    let mut out = [b'a'; 4];
    for (slot, c) in out.iter_mut().zip(chars.bytes().filter(u8::is_ascii)) {
        *slot = c;
    }
    out
}

/// Of 16 bytes: the high bit of each space or `=` and of each `=`, as
/// little-endian words, and whether all are allowed (see [`delimiters`]).
/// Plain loops over arrays, in the shape the compiler vectorizes.
#[inline(always)]
fn classify(block: [u8; 16], specials: &Specials) -> (u128, u128, bool) {
    let [s0, s1, s2, s3] = *specials;
    let mut hits = [0u8; 16];
    let mut eqs = [0u8; 16];
    let mut bad = [0u8; 16];
    for ((&c, (h, e)), b) in block
        .iter()
        .zip(hits.iter_mut().zip(eqs.iter_mut()))
        .zip(bad.iter_mut())
    {
        let is_eq = c == b'=';
        let is_space = c == b' ';
        *h = u8::from(is_eq | is_space) << 7;
        *e = u8::from(is_eq) << 7;
        let special = (c == s0) | (c == s1) | (c == s2) | (c == s3);
        *b = u8::from(!(opentsdb_byte(c) | is_eq | is_space | special));
    }
    (
        u128::from_le_bytes(hits),
        u128::from_le_bytes(eqs),
        u128::from_le_bytes(bad) == 0,
    )
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

#[inline]
fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    i
}

/// The first space at or after `i`, or `b.len()`. Eight bytes at a time
/// (SWAR): words are a dozen bytes or two, too short for a `memchr` call.
#[inline]
fn word_end(b: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    while let Some(chunk) = b.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let t = u64::from_le_bytes(*chunk) ^ (LO * u64::from(b' '));
        // The high bit of each zero byte of `t`; a borrow can also mark a
        // byte above a zero byte, never one below: the lowest mark is exact.
        let spaces = t.wrapping_sub(LO) & !t & (LO << 7);
        if spaces != 0 {
            return i + (spaces.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && b[i] != b' ' {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests;
