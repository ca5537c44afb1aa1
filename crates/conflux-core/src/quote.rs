//! Quoting input in error messages: at most a few dozen bytes, cut on a
//! character boundary, so that a hostile line never reaches a log or a
//! response whole. Every dialect's errors quote through here.

use std::borrow::Cow;

/// How many bytes of offending input a message quotes at most.
pub const QUOTE_BYTES: usize = 64;

/// At most `max` bytes of `s`, cut on a character boundary.
pub fn clip(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

/// As [`clip`], for bytes that may not be UTF-8: invalid bytes show as
/// U+FFFD, and the result is still at most `max` bytes (a replacement
/// character takes three: 64 invalid bytes must not become 192, found by
/// fuzzing).
pub fn clip_bytes(bytes: &[u8], max: usize) -> Cow<'_, str> {
    let cut = &bytes[..bytes.len().min(max)];
    match std::str::from_utf8(cut) {
        Ok(s) => Cow::Borrowed(s),
        // The cut fell inside a character: drop the partial character.
        Err(e) if e.error_len().is_none() => {
            Cow::Borrowed(std::str::from_utf8(&cut[..e.valid_up_to()]).unwrap_or_default())
        }
        Err(_) => {
            let mut s = String::from_utf8_lossy(cut).into_owned();
            s.truncate(s.floor_char_boundary(max));
            Cow::Owned(s)
        }
    }
}

/// InfluxDB's wording for a bad line, which Telegraf matches on:
/// `unable to parse '<at most QUOTE_BYTES of the line>': <reason>`.
pub fn unable_to_parse(line: &[u8], reason: &str) -> String {
    let quoted = clip_bytes(line, QUOTE_BYTES);
    let mut out = String::with_capacity(quoted.len() + reason.len() + 22);
    out.push_str("unable to parse '");
    out.push_str(&quoted);
    out.push_str("': ");
    out.push_str(reason);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_on_a_char_boundary() {
        let s = "aé".repeat(40);
        let c = clip(&s, 64);
        assert!(c.len() <= 64 && c.len() >= 62);
        assert!(s.starts_with(c));
        assert_eq!(clip("short", 64), "short");
        let c = clip_bytes(s.as_bytes(), 64);
        assert!(c.len() <= 64 && s.starts_with(&*c));
        assert_eq!(clip_bytes(b"ab\xffcd", 64), "ab\u{fffd}cd");
        assert_eq!(clip_bytes("é".as_bytes(), 1), "");
        assert_eq!(clip_bytes(b"short", 64), "short");
    }

    #[test]
    fn invalid_bytes_never_pass_the_limit() {
        let bad = clip_bytes(&[0xb8; 100], 64);
        assert!(bad.len() <= 64 && bad.len() >= 61, "{}", bad.len());
    }

    #[test]
    fn unable_to_parse_has_influxdb_shape() {
        assert_eq!(
            unable_to_parse(b"m v=", "missing field value"),
            "unable to parse 'm v=': missing field value"
        );
        let long = unable_to_parse(&[b'x'; 100], "why");
        assert_eq!(long, format!("unable to parse '{}': why", "x".repeat(64)));
    }
}
