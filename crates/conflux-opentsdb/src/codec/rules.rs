//! What telnet and `/api/put` share: reading timestamps and values, checking
//! tags and characters, and OpenTSDB's wording of each refusal
//! (`src/core/Tags.java`, `TSDB.java`, `IncomingDataPoints.java`,
//! `tsd/PutDataPointRpc.java` of OpenTSDB 2.4).

use std::borrow::Cow;

use conflux_core::Value;
use conflux_core::digits::{decimal, leading_digits};
use conflux_core::naming::is_letter;
use conflux_core::time::{Precision, SecondsOrMillis, TimestampError};

use super::error::{ErrorKind, QUOTE_BYTES, clip};
use super::{Characters, ParseOptions};

/// Which of OpenTSDB's exceptions a refusal is: the telnet reply names it
/// (`put: invalid value: …` for a `NumberFormatException`, `put: illegal
/// argument: …` for an `IllegalArgumentException`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    InvalidValue,
    IllegalArgument,
}

/// A refusal: its kind, its class and OpenTSDB's text (with clipped quotes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fail {
    pub kind: ErrorKind,
    pub class: Class,
    pub text: Cow<'static, str>,
}

impl Fail {
    pub fn illegal(kind: ErrorKind, text: impl Into<Cow<'static, str>>) -> Fail {
        Fail {
            kind,
            class: Class::IllegalArgument,
            text: text.into(),
        }
    }

    pub fn invalid(kind: ErrorKind, text: impl Into<Cow<'static, str>>) -> Fail {
        Fail {
            kind,
            class: Class::InvalidValue,
            text: text.into(),
        }
    }
}

/// A timestamp as written, before the seconds-or-milliseconds rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawTime {
    /// A positive integer, in seconds or milliseconds by the rule.
    Int(i64),
    /// `sec.frac`: positive whole seconds and a fraction in nanoseconds.
    Dotted { secs: i64, frac_ns: i64 },
}

impl RawTime {
    /// The timestamp in nanoseconds, under `rule`.
    ///
    /// A dotted time is seconds with a fraction (`1364410924.250`): its whole
    /// part must be seconds under the rule, so `putm` (always milliseconds)
    /// refuses it.
    pub fn to_ns(self, rule: SecondsOrMillis) -> Result<i64, Fail> {
        let bad = |shown: i64, e: TimestampError| {
            let extra = match e {
                TimestampError::BadLength => ": must have 10 or 13 digits",
                _ => "",
            };
            Fail::illegal(
                ErrorKind::InvalidTimestamp,
                format!("bad timestamp={shown}{extra}"),
            )
        };
        match self {
            RawTime::Int(ts) => rule.to_ns(ts).map_err(|e| bad(ts, e)),
            RawTime::Dotted { secs, frac_ns } => match rule.classify(secs) {
                Ok(Precision::S) => secs
                    .checked_mul(1_000_000_000)
                    .and_then(|ns| ns.checked_add(frac_ns))
                    .ok_or_else(|| bad(secs, TimestampError::OutOfRange)),
                Ok(_) => Err(bad(secs, TimestampError::OutOfRange)),
                Err(e) => Err(bad(secs, e)),
            },
        }
    }
}

/// Read a telnet timestamp word: an integer (Java's `Long.parseLong` rules,
/// sign allowed) or `sec.frac` with 1 to 9 fraction digits; zero and negative
/// values are refused.
pub(crate) fn read_time(word: &str) -> Result<RawTime, Fail> {
    // The usual word, in one pass: 1 to 18 digits (no overflow), not zero.
    let (ts, n) = leading_digits(word.as_bytes(), 0);
    if n == word.len() && (1..=18).contains(&n) && ts > 0 {
        return Ok(RawTime::Int(ts as i64));
    }
    // A byte loop, not `split_once('.')`: the word is a dozen bytes, shorter
    // than what the `memchr` behind a char pattern pays for its call.
    let dot = word.bytes().position(|b| b == b'.');
    let Some((secs, frac)) = dot.and_then(|d| Some((word.get(..d)?, word.get(d + 1..)?))) else {
        let ts = parse_long(word).map_err(|t| Fail::invalid(ErrorKind::InvalidTimestamp, t))?;
        return positive(ts).map(RawTime::Int);
    };
    // Not OpenTSDB's rule (it deletes the dot, so only exactly three fraction
    // digits give the right time): the fraction is read as a decimal.
    let secs_val = parse_long(secs).map_err(|t| Fail::invalid(ErrorKind::InvalidTimestamp, t))?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Fail::invalid(
            ErrorKind::InvalidTimestamp,
            format!(
                "Invalid fraction of a second in {}",
                clip(word, QUOTE_BYTES)
            ),
        ));
    }
    let mut frac_ns: i64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        frac_ns += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    if secs_val <= 0 {
        return Err(not_positive(secs_val));
    }
    Ok(RawTime::Dotted {
        secs: secs_val,
        frac_ns,
    })
}

fn positive(ts: i64) -> Result<i64, Fail> {
    if ts <= 0 {
        Err(not_positive(ts))
    } else {
        Ok(ts)
    }
}

/// `invalid timestamp: N` (`PutDataPointRpc.importDataPoint`).
pub(crate) fn not_positive(ts: i64) -> Fail {
    Fail::illegal(
        ErrorKind::InvalidTimestamp,
        format!("invalid timestamp: {ts}"),
    )
}

/// Java's `Tags.parseLong`, with its error messages (the input quoted at most
/// [`QUOTE_BYTES`] bytes).
pub(crate) fn parse_long(s: &str) -> Result<i64, String> {
    if let Some(v) = short_long(s.as_bytes()) {
        return Ok(v);
    }
    parse_long_checked(s)
}

/// Most words parse_long sees: an optional sign and 1 to 18 digits, which
/// cannot overflow, so no checked arithmetic per digit. `None` for anything
/// else, including every error, left to [`parse_long_checked`].
#[inline]
fn short_long(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, b),
    };
    let (v, n) = leading_digits(digits, 0);
    if n != digits.len() || !(1..=18).contains(&n) {
        return None;
    }
    // Below 10^18: fits an i64.
    let v = v as i64;
    Some(if neg { -v } else { v })
}

/// Java's `Tags.parseLong` in full, every error message included.
#[cold]
fn parse_long_checked(s: &str) -> Result<i64, String> {
    let b = s.as_bytes();
    let q = || clip(s, QUOTE_BYTES);
    let (neg, digits) = match b.first() {
        None => return Err("Empty string".to_owned()),
        Some(&c @ (b'+' | b'-')) => {
            if b.len() == 1 {
                return Err(format!("Just a sign, no value: {}", q()));
            }
            if b.len() > 20 {
                return Err(format!("Value too long: {}", q()));
            }
            (c == b'-', &b[1..])
        }
        Some(_) if b.len() > 19 => return Err(format!("Value too long: {}", q())),
        Some(_) => (false, b),
    };
    // Accumulate negatively so that i64::MIN parses, as Java does.
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            let ch = s[s.len() - digits.len()..]
                .chars()
                .find(|ch| !ch.is_ascii_digit())
                .unwrap_or('?');
            return Err(format!("Invalid character '{ch}' in {}", q()));
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(c - b'0')))
            .ok_or_else(|| format!("Overflow in {}", q()))?;
    }
    if neg {
        Ok(v)
    } else {
        v.checked_neg()
            .ok_or_else(|| format!("Overflow in {}", q()))
    }
}

/// A value word: an integer when it holds none of `.`, `e`, `E` (OpenTSDB's
/// `Tags.looksLikeInteger`), else a float; `NaN` and infinities are refused.
/// The `Fail` for a finite-check is left to the caller ([`finite`]), which
/// knows the metric and timestamp OpenTSDB's message names.
pub(crate) fn read_value(word: &str) -> Result<Value<'static>, Fail> {
    if let Some(v) = plain_number(word.as_bytes()) {
        return Ok(v);
    }
    let (mut integer, mut numeric) = (true, true);
    for &c in word.as_bytes() {
        match c {
            b'.' | b'e' | b'E' => integer = false,
            b'0'..=b'9' | b'+' | b'-' => {}
            _ => numeric = false,
        }
    }
    if integer {
        return parse_long(word)
            .map(Value::Int)
            .map_err(|t| Fail::invalid(ErrorKind::InvalidValue, t));
    }
    // Rust's float parser also reads `inf`, `nan` and `infinity`: only the
    // bytes of a decimal number may reach it.
    match word.parse::<f64>() {
        Ok(v) if numeric => Ok(Value::Float(v)),
        _ => Err(Fail::invalid(
            ErrorKind::InvalidValue,
            format!("For input string: \"{}\"", clip(word, QUOTE_BYTES)),
        )),
    }
}

/// The usual value words, read in one pass: `[+-]digits` of at most 18
/// digits (an int, as [`parse_long`] reads it) and `[+-]digits.digits`
/// of at most 19 digits (a float, read exactly by [`decimal`] to what
/// `str::parse::<f64>` gives). `None` for anything else, which
/// [`read_value`] reads the general way.
#[inline]
fn plain_number(b: &[u8]) -> Option<Value<'static>> {
    let (neg, digits) = match b {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, b),
    };
    // At most 19 digits and a dot: the mantissa cannot overflow a u64.
    if digits.len() > 20 {
        return None;
    }
    let (mantissa, n) = leading_digits(digits, 0);
    match digits.get(n) {
        // Below 10^18: fits an i64.
        None if (1..=18).contains(&n) => {
            let v = mantissa as i64;
            Some(Value::Int(if neg { -v } else { v }))
        }
        Some(b'.') => {
            let frac = digits.get(n + 1..)?;
            let (mantissa, frac_digits) = leading_digits(frac, mantissa);
            if frac_digits != frac.len() || n + frac_digits == 0 {
                return None;
            }
            let v = decimal(mantissa, frac_digits)?;
            Some(Value::Float(if neg { -v } else { v }))
        }
        _ => None,
    }
}

/// OpenTSDB's check on a float that overflowed (`1e999`).
pub(crate) fn finite(v: &Value<'_>, metric: &str, ts_shown: &str) -> Result<(), Fail> {
    match v {
        Value::Float(x) if !x.is_finite() => Err(Fail::illegal(
            ErrorKind::InvalidValue,
            format!(
                "value is NaN or Infinite: {} for metric={} timestamp={}",
                java_double(*x),
                clip(metric, QUOTE_BYTES / 2),
                clip(ts_shown, QUOTE_BYTES / 2)
            ),
        )),
        _ => Ok(()),
    }
}

fn java_double(x: f64) -> &'static str {
    if x.is_nan() {
        "NaN"
    } else if x > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// `invalid tag: <word>`: not exactly one `=`, or an empty side (`Tags.parse`).
pub(crate) fn invalid_tag(word: &str) -> Fail {
    Fail::illegal(
        ErrorKind::InvalidTag,
        format!("invalid tag: {}", clip(word, QUOTE_BYTES)),
    )
}

/// `Too many tags: N maximum allowed: M` (the tag dump OpenTSDB appends is
/// left out: it would quote the whole line).
pub(crate) fn too_many_tags(n: usize, max: usize) -> Fail {
    Fail::illegal(
        ErrorKind::TooManyTags,
        format!("Too many tags: {n} maximum allowed: {max}"),
    )
}

/// Bytes OpenTSDB surely allows in names and tags: its ASCII set. Anything
/// else (non-ASCII letters, special characters) needs [`bad_char`].
const OPENTSDB_ASCII: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 128 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/');
        c += 1;
    }
    t
};

/// Whether every byte of `b` is in OpenTSDB's ASCII set (letters, digits,
/// `-_./`). Arithmetic and no early exit, so the compiler vectorizes it.
#[inline]
pub(crate) fn opentsdb_ascii(b: &[u8]) -> bool {
    b.iter().fold(true, |ok, &c| ok & opentsdb_byte(c))
}

#[inline(always)]
pub(crate) fn opentsdb_byte(c: u8) -> bool {
    // `-`, `.`, `/` and the digits are 0x2D..=0x39.
    let punct_digit = c.wrapping_sub(b'-') <= b'9' - b'-';
    let letter = (c | 0x20).wrapping_sub(b'a') <= b'z' - b'a';
    punct_digit | letter | (c == b'_')
}

/// The first character of `s` the options do not allow, if any.
#[inline]
pub(crate) fn bad_char(s: &str, opts: &ParseOptions) -> Option<char> {
    if opts.characters == Characters::AnyButSpace {
        // Words never hold a space; only `/api/put` strings can.
        return s.contains(' ').then_some(' ');
    }
    let b = s.as_bytes();
    // ASCII fast path; the first byte it cannot decide starts the slow path.
    let i = b.iter().position(|&c| !OPENTSDB_ASCII[usize::from(c)])?;
    s.get(i..)?.chars().find(|&c| {
        let ok = if c.is_ascii() {
            OPENTSDB_ASCII[c as usize]
        } else {
            is_letter(c)
        };
        !ok && !opts.special_chars.contains(c)
    })
}

/// `Invalid <what> ("<s>"): illegal character: <c>` (`Tags.validateString`).
pub(crate) fn check_chars(what: Cow<'_, str>, s: &str, opts: &ParseOptions) -> Result<(), Fail> {
    match bad_char(s, opts) {
        None => Ok(()),
        Some(c) => Err(Fail::illegal(
            ErrorKind::InvalidCharacter,
            format!(
                "Invalid {what} (\"{}\"): illegal character: {c}",
                clip(s, QUOTE_BYTES / 2)
            ),
        )),
    }
}

fn empty_string(what: &str) -> Fail {
    Fail::illegal(
        ErrorKind::InvalidTag,
        format!("Invalid {what}: empty string"),
    )
}

/// Check a metric name and its tags (`IncomingDataPoints.checkMetricAndTags`,
/// after OpenTSDB's count checks).
pub(crate) fn check_names<'t>(
    metric: &str,
    tags: impl Iterator<Item = (&'t str, &'t str)>,
    opts: &ParseOptions,
) -> Result<(), Fail> {
    check_chars(Cow::Borrowed("metric name"), metric, opts)?;
    for (k, v) in tags {
        // `Tags.validateString`: an empty name or value is refused before
        // its characters are looked at (telnet never gets here with one:
        // `k=` is already an invalid tag there; `/api/put` can send `"k":""`).
        if k.is_empty() {
            let what = format!("tag name with value [{}]", clip(v, QUOTE_BYTES / 2));
            return Err(empty_string(&what));
        }
        if v.is_empty() {
            let what = format!("tag value with key [{}]", clip(k, QUOTE_BYTES / 2));
            return Err(empty_string(&what));
        }
        if bad_char(k, opts).is_some() {
            let what = format!("tag name with value [{}]", clip(v, QUOTE_BYTES / 2));
            check_chars(Cow::Owned(what), k, opts)?;
        }
        if bad_char(v, opts).is_some() {
            let what = format!("tag value with key [{}]", clip(k, QUOTE_BYTES / 2));
            check_chars(Cow::Owned(what), v, opts)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_long_matches_java() {
        assert_eq!(parse_long("42"), Ok(42));
        assert_eq!(parse_long("+42"), Ok(42));
        assert_eq!(parse_long("-0"), Ok(0));
        assert_eq!(parse_long("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_long("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(
            parse_long("9223372036854775808").unwrap_err(),
            "Overflow in 9223372036854775808"
        );
        assert_eq!(
            parse_long("12345678901234567890").unwrap_err(),
            "Value too long: 12345678901234567890"
        );
        assert_eq!(parse_long("").unwrap_err(), "Empty string");
        assert_eq!(parse_long("-").unwrap_err(), "Just a sign, no value: -");
        assert_eq!(
            parse_long("12x4").unwrap_err(),
            "Invalid character 'x' in 12x4"
        );
        assert_eq!(parse_long("1é").unwrap_err(), "Invalid character 'é' in 1é");
    }

    #[test]
    fn values_are_ints_without_dot_or_exponent() {
        assert_eq!(read_value("42"), Ok(Value::Int(42)));
        assert_eq!(read_value("-42"), Ok(Value::Int(-42)));
        assert_eq!(read_value("42.0"), Ok(Value::Float(42.0)));
        assert_eq!(read_value("1e3"), Ok(Value::Float(1000.0)));
        assert_eq!(read_value("1E-3"), Ok(Value::Float(0.001)));
        assert_eq!(read_value(".5"), Ok(Value::Float(0.5)));
        assert_eq!(read_value("5."), Ok(Value::Float(5.0)));
        assert_eq!(read_value("1e999"), Ok(Value::Float(f64::INFINITY)));
        for bad in ["NaN", "nan", "inf", "Infinity", "-inf", "1x", "0x10"] {
            assert_eq!(
                read_value(bad).map_err(|f| f.kind),
                Err(ErrorKind::InvalidValue),
                "{bad}"
            );
        }
        for bad in ["nan.0", "inf.", "1.2.3", "1e", "e5", "."] {
            assert_eq!(
                read_value(bad).map_err(|f| f.text.into_owned()),
                Err(format!("For input string: \"{bad}\"")),
                "{bad}"
            );
        }
    }

    #[test]
    fn opentsdb_characters() {
        let o = ParseOptions::default();
        assert_eq!(bad_char("sys.cpu-user_1/x", &o), None);
        assert_eq!(bad_char("héllo_数据", &o), None);
        assert_eq!(bad_char("a b", &o), Some(' '));
        assert_eq!(bad_char("a:b", &o), Some(':'));
        assert_eq!(bad_char("é:", &o), Some(':'));
        // U+2160 ROMAN NUMERAL ONE is a number (Nl), not a letter.
        assert_eq!(bad_char("\u{2160}", &o), Some('\u{2160}'));
        let special = ParseOptions {
            special_chars: ":@".into(),
            ..ParseOptions::default()
        };
        assert_eq!(bad_char("a:b@c", &special), None);
        let any = ParseOptions {
            characters: Characters::AnyButSpace,
            ..ParseOptions::default()
        };
        assert_eq!(bad_char("a:b$\u{2160}=", &any), None);
        assert_eq!(bad_char("a b", &any), Some(' '));
    }
}
