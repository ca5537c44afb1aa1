//! Credentials as clients send them: HTTP Basic, `Authorization: Token …`
//! (InfluxDB 2, or InfluxDB 1's `Token user:password`), `Bearer …`, and
//! InfluxDB 1's `u=` / `p=` query parameters; plus query-string lookup and a
//! constant-time comparison for checking secrets.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use http::header;
use http::request::Parts;

/// Credentials found in a request. `Debug` never prints a secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// `Authorization: Token …`: an InfluxDB 2 API token, or InfluxDB 1's
    /// `user:password` form; the listener decides which.
    Token(String),
    /// `Authorization: Bearer …`.
    Bearer(String),
    /// `?u=…&p=…` (InfluxDB 1), percent-decoded.
    Query {
        /// The user name (`u`).
        user: String,
        /// The password (`p`).
        password: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { user, .. } => {
                write!(f, "Basic {{ user: {user:?}, password: <redacted> }}")
            }
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credentials::Query { user, .. } => {
                write!(f, "Query {{ user: {user:?}, password: <redacted> }}")
            }
        }
    }
}

/// The credentials of a request: the `Authorization` header if present (an
/// unknown scheme or a malformed value gives `None`, not a fallback), else
/// `u` and `p` from the query string when both are non-empty.
///
/// InfluxDB 1 itself looks at `u`/`p` first; clients send one form only, so
/// the order matters only to requests that carry both.
pub fn credentials(parts: &Parts) -> Option<Credentials> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        return parse_authorization(value.as_bytes());
    }
    let query = parts.uri.query()?;
    let user = query_param(query, "u").filter(|u| !u.is_empty())?;
    let password = query_param(query, "p").filter(|p| !p.is_empty())?;
    Some(Credentials::Query {
        user: user.into_owned(),
        password: password.into_owned(),
    })
}

fn parse_authorization(value: &[u8]) -> Option<Credentials> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if rest.is_empty() {
        return None;
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some(Credentials::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    } else if scheme.eq_ignore_ascii_case("token") {
        Some(Credentials::Token(rest.to_owned()))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Credentials::Bearer(rest.to_owned()))
    } else {
        None
    }
}

/// The value of the first `key` in a query string (`a=1&b=2`), with `+` and
/// `%XX` decoded (invalid escapes are kept as written, invalid UTF-8 is
/// replaced). Borrowed when nothing needed decoding. A key without `=` has
/// the empty value.
pub fn query_param<'a>(query: &'a str, key: &str) -> Option<Cow<'a, str>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Compare two secrets in time that depends only on their lengths, not on
/// where they first differ: every byte pair is XOR-folded, without an early
/// exit. Unequal lengths return `false` at once, so the length of the
/// expected secret is not hidden; compare fixed-length digests if it must be.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parts(uri: &str, auth: Option<&str>) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn basic(user: &str, password: &str) -> Option<Credentials> {
        Some(Credentials::Basic {
            user: user.into(),
            password: password.into(),
        })
    }

    #[test]
    fn parses_basic() {
        // "telegraf:s3cr:et" — the password may hold colons.
        let p = parts("/write", Some("Basic dGVsZWdyYWY6czNjcjpldA=="));
        assert_eq!(credentials(&p), basic("telegraf", "s3cr:et"));
        let p = parts("/write", Some("basic dGVsZWdyYWY6czNjcjpldA=="));
        assert_eq!(credentials(&p), basic("telegraf", "s3cr:et"));
    }

    #[test]
    fn rejects_malformed_basic() {
        assert_eq!(credentials(&parts("/write", Some("Basic !!!"))), None);
        // "nocolon"
        assert_eq!(
            credentials(&parts("/write", Some("Basic bm9jb2xvbg=="))),
            None
        );
        assert_eq!(credentials(&parts("/write", Some("Basic"))), None);
    }

    #[test]
    fn parses_token_and_bearer() {
        let p = parts("/api/v2/write", Some("Token abc=="));
        assert_eq!(credentials(&p), Some(Credentials::Token("abc==".into())));
        let p = parts("/write", Some("Token user:pass"));
        assert_eq!(
            credentials(&p),
            Some(Credentials::Token("user:pass".into()))
        );
        let p = parts("/write", Some("Bearer eyJh.x.y"));
        assert_eq!(
            credentials(&p),
            Some(Credentials::Bearer("eyJh.x.y".into()))
        );
    }

    #[test]
    fn unknown_scheme_is_none() {
        assert_eq!(
            credentials(&parts("/write?u=a&p=b", Some("Digest x"))),
            None
        );
    }

    #[test]
    fn parses_query_credentials_decoded() {
        let p = parts("/write?db=x&u=al%20ice&p=p%26ss+word", None);
        assert_eq!(
            credentials(&p),
            Some(Credentials::Query {
                user: "al ice".into(),
                password: "p&ss word".into()
            })
        );
        assert_eq!(credentials(&parts("/write?u=alice", None)), None);
        assert_eq!(credentials(&parts("/write?u=&p=x", None)), None);
        assert_eq!(credentials(&parts("/write", None)), None);
    }

    #[test]
    fn header_wins_over_query() {
        let p = parts("/write?u=q&p=q", Some("Bearer t"));
        assert_eq!(credentials(&p), Some(Credentials::Bearer("t".into())));
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!("{:?}", basic("u", "hunter2").unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!format!("{:?}", Credentials::Token("hunter2".into())).contains("hunter2"));
    }

    #[test]
    fn query_param_cases() {
        assert_eq!(
            query_param("db=a&precision=s", "precision").as_deref(),
            Some("s")
        );
        assert_eq!(query_param("db=a&db=b", "db").as_deref(), Some("a"));
        assert_eq!(query_param("flag&x=1", "flag").as_deref(), Some(""));
        assert_eq!(query_param("x=1", "y"), None);
        assert_eq!(
            query_param("rp=a%2Fb%zz%4", "rp").as_deref(),
            Some("a/b%zz%4")
        );
        assert_eq!(query_param("%64b=x", "db").as_deref(), Some("x"));
        assert_eq!(query_param("v=%ff", "v").as_deref(), Some("\u{fffd}"));
        assert!(matches!(
            query_param("db=plain", "db"),
            Some(Cow::Borrowed("plain"))
        ));
    }

    #[test]
    fn ct_eq_cases() {
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"secret", b"secret!"));
        assert!(ct_eq(b"", b""));
    }
}
