//! How a multi-field metric becomes single-value series for targets that hold
//! one value per series (Graphite, OpenTSDB, Prometheus, KairosDB).
//!
//! The series name is `prefix + name + separator + field`; a field called
//! `value` (what every single-value dialect produces) gives `prefix + name`
//! alone, so Graphite, OpenTSDB or KairosDB data keeps its series names on the
//! way out. Separator, prefix, sanitizer and the treatment of strings and
//! bools are per-sink settings whose defaults follow what Telegraf writes
//! (`docs/protocols.md` has the table of examples).

use serde::Deserialize;
use unicode_general_category::{GeneralCategory, get_general_category};

use crate::metric::Value;

/// A target family, which picks the default naming settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Graphite: `.` separator, Telegraf's strict graphite sanitizer.
    Graphite,
    /// OpenTSDB: `_` separator, Telegraf's opentsdb sanitizer.
    Opentsdb,
    /// Prometheus: `_` separator, Prometheus metric-name rules.
    Prometheus,
    /// KairosDB: `.` separator, names kept as they are, strings kept.
    Kairosdb,
}

/// Which characters a series name may hold, and what replaces the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sanitizer {
    /// Keep the name as it is.
    None,
    /// Telegraf's graphite `strict` mode: `/`, `@`, `*` become `-`, `\` is
    /// removed, `..` becomes `.`, then anything outside
    /// `[a-zA-Z0-9-:._=\p{L}]` becomes `_`.
    Graphite,
    /// Telegraf's opentsdb output: `@*%#$` become `-`, then anything outside
    /// `[a-zA-Z0-9-_./\p{L}]` becomes `_`.
    Opentsdb,
    /// Prometheus names `[a-zA-Z_:][a-zA-Z0-9_:]*`; an invalid name has its
    /// invalid first character dropped, others replaced by `_`, and `_`
    /// trimmed from both ends (Telegraf's rule).
    Prometheus,
}

/// What a single-value target does with a string field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StringPolicy {
    /// Skip it (and count it).
    Skip,
    /// Keep it, for targets that store strings.
    Keep,
}

/// What a single-value target does with a bool field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoolPolicy {
    /// `true` is 1, `false` is 0 (Telegraf's rule).
    Number,
    /// Skip it (and count it).
    Skip,
}

/// Whether a field called `value` is appended to the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueField {
    /// `name` alone (the default: single-value dialects keep their names).
    Bare,
    /// `name<sep>value`, as Telegraf's opentsdb and prometheus outputs write.
    Append,
}

/// The naming settings of one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// Put between name and field.
    pub separator: String,
    /// Put before the name, as it is (include a trailing separator if wanted).
    pub prefix: String,
    /// Applied to the whole series name.
    pub sanitizer: Sanitizer,
    /// String fields.
    pub strings: StringPolicy,
    /// Bool fields.
    pub bools: BoolPolicy,
    /// The `value` field.
    pub value_field: ValueField,
}

/// Reusable buffers for [`Naming::series_name`], one per sink task.
#[derive(Debug, Default)]
pub struct NameBuf {
    raw: String,
    out: String,
}

/// Per-sink overrides of [`Naming`], as read from a sink's `[sinks.NAME.naming]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamingOptions {
    /// Overrides [`Naming::separator`].
    pub separator: Option<String>,
    /// Overrides [`Naming::prefix`].
    pub prefix: Option<String>,
    /// Overrides [`Naming::sanitizer`].
    pub sanitizer: Option<Sanitizer>,
    /// Overrides [`Naming::strings`].
    pub strings: Option<StringPolicy>,
    /// Overrides [`Naming::bools`].
    pub bools: Option<BoolPolicy>,
    /// Overrides [`Naming::value_field`].
    pub value_field: Option<ValueField>,
}

/// A field value as a single-value target sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SingleValue<'a> {
    /// A float.
    Float(f64),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A string, only with [`StringPolicy::Keep`].
    Str(&'a str),
}

/// Why a field was not turned into a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A string field under [`StringPolicy::Skip`].
    String,
    /// A bool field under [`BoolPolicy::Skip`].
    Bool,
    /// NaN or an infinity, which none of the targets can carry.
    NonFinite,
}

impl Skip {
    /// A fixed reason label for counters.
    pub fn reason(self) -> &'static str {
        match self {
            Skip::String => "string_value",
            Skip::Bool => "bool_value",
            Skip::NonFinite => "non_finite_value",
        }
    }
}

impl Naming {
    /// The defaults for a target.
    pub fn for_target(target: Target) -> Naming {
        let (separator, sanitizer, strings) = match target {
            Target::Graphite => (".", Sanitizer::Graphite, StringPolicy::Skip),
            Target::Opentsdb => ("_", Sanitizer::Opentsdb, StringPolicy::Skip),
            Target::Prometheus => ("_", Sanitizer::Prometheus, StringPolicy::Skip),
            Target::Kairosdb => (".", Sanitizer::None, StringPolicy::Keep),
        };
        Naming {
            separator: separator.to_owned(),
            prefix: String::new(),
            sanitizer,
            strings,
            bools: BoolPolicy::Number,
            value_field: ValueField::Bare,
        }
    }

    /// The defaults for a target with a sink's overrides applied.
    pub fn with_options(target: Target, opts: &NamingOptions) -> Naming {
        let mut n = Naming::for_target(target);
        if let Some(s) = &opts.separator {
            n.separator.clone_from(s);
        }
        if let Some(p) = &opts.prefix {
            n.prefix.clone_from(p);
        }
        if let Some(s) = opts.sanitizer {
            n.sanitizer = s;
        }
        if let Some(s) = opts.strings {
            n.strings = s;
        }
        if let Some(b) = opts.bools {
            n.bools = b;
        }
        if let Some(v) = opts.value_field {
            n.value_field = v;
        }
        n
    }

    /// The series name of field `field` of metric `name`, built in `buf`.
    /// `None` when sanitizing left nothing, in which case the series cannot be written.
    pub fn series_name<'b>(
        &self,
        name: &str,
        field: &str,
        buf: &'b mut NameBuf,
    ) -> Option<&'b str> {
        let raw = self.joined(name, field, &mut buf.raw);
        let out: &str = if self.sanitizer == Sanitizer::None {
            raw
        } else {
            buf.out.clear();
            sanitize(self.sanitizer, raw, &mut buf.out);
            &buf.out
        };
        (!out.is_empty()).then_some(out)
    }

    /// [`Naming::series_name`] appended to `out` as bytes; `false` (and
    /// `out` as it was) when it comes out empty. For encoders that keep names
    /// as bytes: a name with nothing to join is read where it is, and ASCII
    /// just mapped is not checked for UTF-8 again.
    pub fn append_series_name(
        &self,
        name: &str,
        field: &str,
        buf: &mut NameBuf,
        out: &mut Vec<u8>,
    ) -> bool {
        let start = out.len();
        let NameBuf { raw, out: scratch } = buf;
        let whole = if self.prefix.is_empty() && self.is_bare(field) {
            name
        } else {
            self.joined(name, field, raw)
        };
        match self.sanitizer {
            Sanitizer::None => out.extend_from_slice(whole.as_bytes()),
            // ASCII (nearly every name) straight into `out`; the rest by
            // characters, below.
            Sanitizer::Prometheus
                if prometheus_sanitize_ascii(whole, out, is_name_start, &NAME_MAP) => {}
            other => {
                scratch.clear();
                sanitize(other, whole, scratch);
                out.extend_from_slice(scratch.as_bytes());
            }
        }
        out.len() > start
    }

    fn is_bare(&self, field: &str) -> bool {
        field == "value" && self.value_field == ValueField::Bare
    }

    /// `prefix + name [+ separator + field]` in `raw`, which is reused.
    fn joined<'b>(&self, name: &str, field: &str, raw: &'b mut String) -> &'b str {
        // Sanitizers look at the joined name (Telegraf sanitizes the whole
        // string), so join first.
        raw.clear();
        raw.push_str(&self.prefix);
        raw.push_str(name);
        if !self.is_bare(field) {
            raw.push_str(&self.separator);
            raw.push_str(field);
        }
        raw
    }

    /// The value a single-value target writes for `v`, or why it is skipped.
    ///
    /// # Errors
    /// [`Skip`] when the policy or the value rules it out.
    pub fn value<'a>(&self, v: Value<'a>) -> Result<SingleValue<'a>, Skip> {
        match v {
            Value::Float(f) if !f.is_finite() => Err(Skip::NonFinite),
            Value::Float(f) => Ok(SingleValue::Float(f)),
            Value::Int(i) => Ok(SingleValue::Int(i)),
            Value::UInt(u) => Ok(SingleValue::UInt(u)),
            Value::Bool(b) => match self.bools {
                BoolPolicy::Number => Ok(SingleValue::Int(i64::from(b))),
                BoolPolicy::Skip => Err(Skip::Bool),
            },
            Value::Str(s) => match self.strings {
                StringPolicy::Keep => Ok(SingleValue::Str(s)),
                StringPolicy::Skip => Err(Skip::String),
            },
        }
    }
}

/// Apply `sanitizer` to `s`, appending the result to `out`.
pub fn sanitize(sanitizer: Sanitizer, s: &str, out: &mut String) {
    match sanitizer {
        Sanitizer::None => out.push_str(s),
        Sanitizer::Graphite => sanitize_graphite(s, out),
        Sanitizer::Opentsdb => sanitize_opentsdb(s, out),
        Sanitizer::Prometheus => sanitize_prometheus_name(s, out),
    }
}

/// Unicode general category L (any letter), as Go's `\p{L}`.
pub fn is_letter(c: char) -> bool {
    c.is_ascii_alphabetic()
        || (!c.is_ascii()
            && matches!(
                get_general_category(c),
                GeneralCategory::UppercaseLetter
                    | GeneralCategory::LowercaseLetter
                    | GeneralCategory::TitlecaseLetter
                    | GeneralCategory::ModifierLetter
                    | GeneralCategory::OtherLetter
            ))
}

/// Telegraf's graphite strict sanitizer (see [`Sanitizer::Graphite`]).
pub fn sanitize_graphite(s: &str, out: &mut String) {
    let bytes = s.as_bytes();
    let mut i = 0;
    // One left-to-right pass reproduces Go's strings.Replacer for `\` and `..`
    // (no rescan of what a replacement produced).
    for (pos, c) in s.char_indices() {
        if pos < i {
            continue;
        }
        i = pos + c.len_utf8();
        let c = match c {
            '\\' => continue,
            '.' if bytes.get(pos + 1) == Some(&b'.') => {
                i = pos + 2;
                '.'
            }
            '/' | '@' | '*' => '-',
            c => c,
        };
        let ok =
            c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.' | '_' | '=') || is_letter(c);
        out.push(if ok { c } else { '_' });
    }
}

/// Telegraf's opentsdb sanitizer (see [`Sanitizer::Opentsdb`]).
pub fn sanitize_opentsdb(s: &str, out: &mut String) {
    for c in s.chars() {
        let c = match c {
            '@' | '*' | '%' | '#' | '$' => '-',
            c => c,
        };
        let ok = c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/') || is_letter(c);
        out.push(if ok { c } else { '_' });
    }
}

/// `first_ok` accepts ASCII only and `rest_map` keeps only ASCII bytes,
/// so the common case (a name already valid) is checked on bytes, without
/// decoding UTF-8; generic, not a `fn` pointer, so that the check inlines
/// (this runs for every label of every metric a prometheus sink sends).
fn prometheus_sanitize(
    s: &str,
    out: &mut String,
    first_ok: impl Fn(char) -> bool,
    rest_map: &[u8; 256],
) {
    // A valid name (the common case) as it is, without a round trip
    // through bytes.
    if s.as_bytes().first().is_some_and(|&b| first_ok(b as char)) && is_kept(s, rest_map) {
        out.push_str(s);
        return;
    }
    let mut bytes = std::mem::take(out).into_bytes();
    let done = prometheus_sanitize_ascii(s, &mut bytes, &first_ok, rest_map);
    // What was there was a `String`, and what was added ASCII.
    *out = String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    if !done {
        prometheus_sanitize_chars(s, out, first_ok, |c| keeps_char(c, rest_map));
    }
}

/// Whether every byte after the first is one `rest_map` keeps.
fn is_kept(s: &str, rest_map: &[u8; 256]) -> bool {
    s.as_bytes()
        .iter()
        .skip(1)
        .all(|&b| rest_map[usize::from(b)] == b)
}

fn keeps_char(c: char, rest_map: &[u8; 256]) -> bool {
    c.is_ascii() && rest_map[c as usize] == c as u8
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

/// An ASCII `s` sanitized onto the end of `out`; `false`, with `out` as it
/// was, when `s` is not all ASCII (the caller then goes by characters).
///
/// A byte of a multi-byte character is not ASCII, and `as char` maps it
/// to a non-ASCII character `first_ok` refuses; `rest_map` maps every
/// non-ASCII byte to `_`, so it keeps only the ASCII bytes it allows.
fn prometheus_sanitize_ascii(
    s: &str,
    out: &mut Vec<u8>,
    first_ok: impl Fn(char) -> bool,
    rest_map: &[u8; 256],
) -> bool {
    let Some((&first, rest)) = s.as_bytes().split_first() else {
        return true;
    };
    if !first.is_ascii() {
        return false;
    }
    let start = out.len();
    if first_ok(first as char) && is_kept(s, rest_map) {
        out.extend_from_slice(s.as_bytes());
        return true;
    }
    // Mapped sixteen bytes at a time, in plain loops over arrays that
    // become a few SIMD instructions, with the high bits of the input
    // gathered on the way: std's `is_ascii` ends in a byte loop that cost
    // as much as the mapping. Written with `extend`, not into zeroed room.
    if first_ok(first as char) {
        out.push(first);
    }
    // Room for a whole block past the end: the tail is written as one.
    out.reserve(rest.len() + 16);
    let colon = rest_map[usize::from(b':')] == b':';
    let (blocks, tail) = rest.as_chunks::<16>();
    let mut high = [0u8; 16];
    for b in blocks {
        or_into(&mut high, b);
        out.extend_from_slice(&map_block(*b, colon));
    }
    if !tail.is_empty() {
        // The last sixteen bytes mapped over the end of what is written
        // (the same bytes again, then the tail); or the tail alone,
        // zero-padded, when the name is shorter, cut after. Whole blocks
        // are a store each; a copy of the tail's length was a `memcpy`.
        let end = out.len() + tail.len();
        let last = match rest.last_chunk::<16>() {
            Some(c) => {
                out.truncate(end - 16);
                *c
            }
            None => {
                let mut c = [0u8; 16];
                c[..tail.len()].copy_from_slice(tail);
                c
            }
        };
        or_into(&mut high, &last);
        out.extend_from_slice(&map_block(last, colon));
        out.truncate(end);
    }
    if high.iter().fold(0, |a, &b| a | b) >= 0x80 {
        out.truncate(start);
        return false;
    }
    let kept = out[start..]
        .iter()
        .rposition(|&b| b != b'_')
        .map_or(0, |i| i + 1);
    out.truncate(start + kept);
    let lead = out[start..].iter().take_while(|&&b| b == b'_').count();
    if lead > 0 {
        out.drain(start..start + lead);
    }
    true
}

/// `acc |= block`, bytewise: one SIMD OR.
#[inline(always)]
fn or_into(acc: &mut [u8; 16], block: &[u8; 16]) {
    for (a, &b) in acc.iter_mut().zip(block) {
        *a |= b;
    }
}

/// Sixteen ASCII bytes through [`prometheus_map`] at once. A plain loop
/// over an array, the shape the compiler turns into a few SIMD
/// instructions (no `unsafe`): Graphite paths make names of 90 bytes, and
/// a table load and a store per byte were a sixth of the work per point.
#[inline(always)]
fn map_block(block: [u8; 16], colon: bool) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, &c) in out.iter_mut().zip(&block) {
        *o = if prometheus_keeps(c, colon) { c } else { b'_' };
    }
    out
}

/// Whether a byte is an ASCII letter, digit, `_` or (with `colon`) `:`:
/// the rule of [`prometheus_map`] and [`map_block`]. Range checks, not
/// calls, so that `map_block`'s loop vectorizes.
#[inline(always)]
const fn prometheus_keeps(c: u8, colon: bool) -> bool {
    let digits = if colon { 10 } else { 9 };
    let digit = c.wrapping_sub(b'0') <= digits;
    // `| 0x20` folds upper into lower case; `_` (0x5f) goes to 0x7f.
    let letter = (c | 0x20).wrapping_sub(b'a') <= b'z' - b'a';
    digit | letter | (c == b'_')
}

/// A byte to itself where it is an ASCII letter, digit, `_` or (with
/// `colon`) `:`, else to `_`: the byte form of the `rest_ok` checks.
const fn prometheus_map(colon: bool) -> [u8; 256] {
    let mut t = [b'_'; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if prometheus_keeps(b, colon) {
            t[i] = b;
        }
        i += 1;
    }
    t
}

/// [`prometheus_map`] for metric names, which may hold `:`.
static NAME_MAP: [u8; 256] = prometheus_map(true);
/// [`prometheus_map`] for label names.
static LABEL_MAP: [u8; 256] = prometheus_map(false);

/// The general case of [`prometheus_sanitize`]: any length, any characters.
fn prometheus_sanitize_chars(
    s: &str,
    out: &mut String,
    first_ok: impl Fn(char) -> bool,
    rest_ok: impl Fn(char) -> bool,
) {
    let start = out.len();
    for (i, c) in s.chars().enumerate() {
        if i == 0 {
            if first_ok(c) {
                out.push(c);
            }
        } else if rest_ok(c) {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    // Trim `_` from both ends of what was written, in place.
    let end = out.trim_end_matches('_').len().max(start);
    out.truncate(end);
    let lead = out[start..].len() - out[start..].trim_start_matches('_').len();
    out.drain(start..start + lead);
}

/// A Prometheus metric name, sanitized as Telegraf does.
pub fn sanitize_prometheus_name(s: &str, out: &mut String) {
    prometheus_sanitize(s, out, is_name_start, &NAME_MAP);
}

/// A Prometheus label name, sanitized as Telegraf does.
pub fn sanitize_prometheus_label(s: &str, out: &mut String) {
    prometheus_sanitize(s, out, |c| c.is_ascii_alphabetic() || c == '_', &LABEL_MAP);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(target: Target, m: &str, f: &str) -> String {
        let mut buf = NameBuf::default();
        Naming::for_target(target)
            .series_name(m, f, &mut buf)
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn value_field_gives_the_bare_name() {
        assert_eq!(name(Target::Graphite, "cpu", "value"), "cpu");
        assert_eq!(name(Target::Prometheus, "cpu", "value"), "cpu");
        assert_eq!(
            name(Target::Graphite, "cpu", "usage_idle"),
            "cpu.usage_idle"
        );
        assert_eq!(
            name(Target::Prometheus, "cpu", "usage_idle"),
            "cpu_usage_idle"
        );
        assert_eq!(
            name(Target::Opentsdb, "cpu", "usage_idle"),
            "cpu_usage_idle"
        );
        assert_eq!(
            name(Target::Kairosdb, "cpu", "usage idle"),
            "cpu.usage idle"
        );
    }

    #[test]
    fn append_and_prefix_options() {
        let opts = NamingOptions {
            prefix: Some("dc1.".into()),
            value_field: Some(ValueField::Append),
            ..Default::default()
        };
        let n = Naming::with_options(Target::Opentsdb, &opts);
        let mut buf = NameBuf::default();
        assert_eq!(
            n.series_name("sys.load", "value", &mut buf),
            Some("dc1.sys.load_value")
        );
    }

    #[test]
    fn graphite_sanitizer_matches_telegraf() {
        let g = |s: &str| {
            let mut o = String::new();
            sanitize_graphite(s, &mut o);
            o
        };
        // Telegraf's "Special conversions to hyphen" case.
        assert_eq!(g("cpu/@*"), "cpu---");
        assert_eq!(g(r"a\b"), "ab");
        assert_eq!(g("a..b"), "a.b");
        assert_eq!(g("a...b"), "a..b");
        assert_eq!(g(r"a.\.b"), "a..b");
        assert_eq!(g("a b(c)"), "a_b_c_");
        assert_eq!(g("héllo=ω:x-y"), "héllo=ω:x-y");
        assert_eq!(g("a#b"), "a_b");
        // U+2160 ROMAN NUMERAL ONE is a number (Nl), not a letter.
        assert_eq!(g("\u{2160}"), "_");
    }

    #[test]
    fn opentsdb_sanitizer_matches_telegraf() {
        let o = |s: &str| {
            let mut out = String::new();
            sanitize_opentsdb(s, &mut out);
            out
        };
        assert_eq!(o("a@b*c%d#e$f"), "a-b-c-d-e-f");
        assert_eq!(o("a b:c=d/e.f"), "a_b_c_d/e.f");
    }

    #[test]
    fn prometheus_sanitizer_matches_telegraf() {
        let p = |s: &str| {
            let mut out = String::new();
            sanitize_prometheus_name(s, &mut out);
            out
        };
        assert_eq!(p("cpu_usage"), "cpu_usage");
        assert_eq!(p("_x_"), "_x_");
        assert_eq!(p("9cpu.usage"), "cpu_usage");
        assert_eq!(p("cpu-usage-"), "cpu_usage");
        assert_eq!(p("héllo"), "h_llo");
        assert_eq!(p("..."), "");
        let l = |s: &str| {
            let mut out = String::new();
            sanitize_prometheus_label(s, &mut out);
            out
        };
        assert_eq!(l("a:b"), "a_b");
    }

    proptest::proptest! {
        /// The short-ASCII path gives what the general one gives.
        #[test]
        fn prometheus_fast_path_matches_the_general_one(
            // Paths, every ASCII byte (the block path's edges:
            // `/`, `:`, `;`, `@`, `[`, `` ` ``, `{`, DEL), any character,
            // and a path with one character anywhere in its blocks or tail.
            s in "[a-zA-Z0-9_:.\\-@\\[`{/]{0,270}|[\\x00-\\x7f]{0,40}|\\PC{0,20}|[a-z.]{0,40}\\PC[a-z.]{0,40}",
            prefix in "[a-z]{0,3}",
        ) {
            let name = (
                (|c: char| c.is_ascii_alphabetic() || c == '_' || c == ':') as fn(char) -> bool,
                (|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':') as fn(char) -> bool,
                &NAME_MAP,
            );
            let label = (
                (|c: char| c.is_ascii_alphabetic() || c == '_') as fn(char) -> bool,
                (|c: char| c.is_ascii_alphanumeric() || c == '_') as fn(char) -> bool,
                &LABEL_MAP,
            );
            for (first, rest, map) in [name, label] {
                let mut fast = prefix.clone();
                prometheus_sanitize(&s, &mut fast, first, map);
                // The function as it was before the byte paths: a valid name
                // as it is, else the character loop.
                let mut general = prefix.clone();
                let mut chars = s.chars();
                if chars.next().is_some_and(first) && chars.all(rest) {
                    general.push_str(&s);
                } else {
                    prometheus_sanitize_chars(&s, &mut general, first, rest);
                }
                proptest::prop_assert_eq!(fast, general);
            }
        }

        /// `append_series_name` adds to what `out` held the bytes
        /// `series_name` gives, whatever the naming.
        #[test]
        fn appended_names_are_the_series_names(
            name in "[a-zA-Z0-9_:.\\-@/]{0,40}|[\\x00-\\x7f]{0,20}|\\PC{0,12}|[a-z.]{0,40}\\PC[a-z.]{0,40}",
            field in "value|[a-z_.@]{0,8}",
            prefix in proptest::option::of("[a-z._]{0,3}"),
            sanitizer in proptest::sample::select(vec![
                Sanitizer::None,
                Sanitizer::Graphite,
                Sanitizer::Opentsdb,
                Sanitizer::Prometheus,
            ]),
            append in proptest::bool::ANY,
        ) {
            let opts = NamingOptions {
                prefix,
                sanitizer: Some(sanitizer),
                value_field: append.then_some(ValueField::Append),
                ..Default::default()
            };
            let n = Naming::with_options(Target::Prometheus, &opts);
            let mut buf = NameBuf::default();
            let want = n.series_name(&name, &field, &mut buf).map(str::to_owned);
            let mut out = b"kept".to_vec();
            let wrote = n.append_series_name(&name, &field, &mut buf, &mut out);
            proptest::prop_assert_eq!(wrote, want.is_some());
            let mut expect = b"kept".to_vec();
            expect.extend_from_slice(want.unwrap_or_default().as_bytes());
            proptest::prop_assert_eq!(out, expect);
        }
    }

    /// Every row of the example table in docs/protocols.md ("Naming policy").
    #[test]
    fn docs_table_examples() {
        let rows: &[(&str, &str, [&str; 4])] = &[
            (
                "cpu",
                "usage_idle",
                [
                    "cpu.usage_idle",
                    "cpu_usage_idle",
                    "cpu_usage_idle",
                    "cpu.usage_idle",
                ],
            ),
            (
                "sys.load",
                "value",
                ["sys.load", "sys.load", "sys_load", "sys.load"],
            ),
            (
                "net/if",
                "bytes@in",
                [
                    "net-if.bytes-in",
                    "net/if_bytes-in",
                    "net_if_bytes_in",
                    "net/if.bytes@in",
                ],
            ),
            ("9p", "x", ["9p.x", "9p_x", "p_x", "9p.x"]),
            (
                "disk",
                "used percent",
                [
                    "disk.used_percent",
                    "disk_used_percent",
                    "disk_used_percent",
                    "disk.used percent",
                ],
            ),
            (
                "héllo",
                "wörld",
                ["héllo.wörld", "héllo_wörld", "h_llo_w_rld", "héllo.wörld"],
            ),
            ("a..b", "c", ["a.b.c", "a..b_c", "a__b_c", "a..b.c"]),
        ];
        let targets = [
            Target::Graphite,
            Target::Opentsdb,
            Target::Prometheus,
            Target::Kairosdb,
        ];
        for (m, f, expected) in rows {
            for (t, want) in targets.iter().zip(expected) {
                assert_eq!(name(*t, m, f), *want, "{t:?} {m} {f}");
            }
        }
    }

    #[test]
    fn empty_after_sanitizing_is_reported() {
        let n = Naming::for_target(Target::Prometheus);
        let mut buf = NameBuf::default();
        assert_eq!(n.series_name("...", "value", &mut buf), None);
    }

    #[test]
    fn values_follow_the_policy() {
        let g = Naming::for_target(Target::Graphite);
        assert_eq!(g.value(Value::Bool(true)), Ok(SingleValue::Int(1)));
        assert_eq!(g.value(Value::Str("x")), Err(Skip::String));
        assert_eq!(g.value(Value::Float(f64::NAN)), Err(Skip::NonFinite));
        assert_eq!(g.value(Value::UInt(7)), Ok(SingleValue::UInt(7)));
        let k = Naming::for_target(Target::Kairosdb);
        assert_eq!(k.value(Value::Str("x")), Ok(SingleValue::Str("x")));
        let opts = NamingOptions {
            bools: Some(BoolPolicy::Skip),
            ..Default::default()
        };
        assert_eq!(
            Naming::with_options(Target::Graphite, &opts).value(Value::Bool(false)),
            Err(Skip::Bool)
        );
    }

    #[test]
    fn options_reject_unknown_keys() {
        let err = toml::from_str::<NamingOptions>("separatr = \"_\"").unwrap_err();
        assert!(err.to_string().contains("separatr"), "{err}");
    }
}
