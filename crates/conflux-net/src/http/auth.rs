//! Credentials as clients send them: HTTP Basic, `Authorization: Token …`
//! (InfluxDB 2, or InfluxDB 1's `Token user:password`), `Bearer …`, and
//! InfluxDB 1's `u=` / `p=` query parameters; the [`Credential`] list a
//! listener is configured with and the [`Authenticator`] that checks a
//! request against it; plus query-string lookup and a constant-time
//! comparison for checking secrets.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use http::header;
use http::request::Parts;
use serde::Deserialize;

use super::RequestBody;

/// One accepted credential of a listener (`[[listeners.NAME.credentials]]`):
/// a user and password (Basic, `u`/`p`, `Token user:password`) or a token
/// (`Token …`, `Bearer …`). `Debug` never prints a secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// API token.
    pub token: Option<String>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Every problem with a listener's `credentials`.
pub fn credential_problems(creds: &[Credential]) -> Vec<String> {
    let mut p = Vec::new();
    for (i, c) in creds.iter().enumerate() {
        let user = c.username.is_some() || c.password.is_some();
        let pair = c.username.as_deref().is_some_and(|u| !u.is_empty()) && c.password.is_some();
        let token = c.token.as_deref().is_some_and(|t| !t.is_empty());
        if user == c.token.is_some() || (user && !pair) || (c.token.is_some() && !token) {
            p.push(format!(
                "`credentials[{i}]` needs either `username` and `password`, or a non-empty `token`"
            ));
        }
    }
    p
}

/// What [`Authenticator::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// No credentials are configured, or the request carries one of them.
    Allowed,
    /// The request carries no credentials (or a form that cannot be parsed).
    Missing,
    /// The request carries credentials that match none configured.
    Denied,
}

/// Checks requests against a listener's credentials. Secrets are kept as
/// SHA-256 digests and every configured entry is compared, so neither the
/// time taken nor the lengths compared tell an attacker how close a guess
/// came or which entry matched.
#[derive(Clone, Default)]
pub struct Authenticator {
    users: Vec<([u8; 32], [u8; 32])>,
    tokens: Vec<[u8; 32]>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("users", &self.users.len())
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

fn digest(s: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Authenticator {
    /// Accept these credentials; none means every request is allowed.
    /// Entries that [`credential_problems`] rejects are ignored.
    pub fn new(creds: &[Credential]) -> Authenticator {
        let mut a = Authenticator::default();
        for c in creds {
            if let (Some(u), Some(p)) = (&c.username, &c.password) {
                a.users.push((digest(u), digest(p)));
            }
            if let Some(t) = &c.token {
                a.tokens.push(digest(t));
            }
        }
        a
    }

    /// Whether no credentials are configured (authentication is off).
    pub fn is_open(&self) -> bool {
        self.users.is_empty() && self.tokens.is_empty()
    }

    /// `body` back when the request's credentials are accepted; else
    /// `None`, with the body dropped, which drains it
    /// ([`super::RequestBody`]) so that the connection stays usable for the
    /// client's next request.
    pub fn admit(&self, parts: &Parts, body: RequestBody) -> Option<RequestBody> {
        (self.check(parts) == AuthOutcome::Allowed).then_some(body)
    }

    /// Check the credentials of a request. Basic and `u`/`p` match a user;
    /// `Bearer` matches a token; `Token` matches a token, or a user in
    /// InfluxDB 1's `Token user:password` form.
    pub fn check(&self, parts: &Parts) -> AuthOutcome {
        if self.is_open() {
            return AuthOutcome::Allowed;
        }
        let ok = match credentials(parts) {
            None => return AuthOutcome::Missing,
            Some(Credentials::Basic { user, password } | Credentials::Query { user, password }) => {
                self.user_ok(&user, &password)
            }
            Some(Credentials::Token(t)) => {
                let as_user = t.split_once(':').is_some_and(|(u, p)| self.user_ok(u, p));
                self.token_ok(&t) | as_user
            }
            Some(Credentials::Bearer(t)) => self.token_ok(&t),
        };
        if ok {
            AuthOutcome::Allowed
        } else {
            AuthOutcome::Denied
        }
    }

    fn user_ok(&self, user: &str, password: &str) -> bool {
        let (u, p) = (digest(user), digest(password));
        // Every entry, and both halves of each, without an early exit.
        self.users
            .iter()
            .fold(false, |hit, (cu, cp)| hit | (ct_eq(cu, &u) & ct_eq(cp, &p)))
    }

    fn token_ok(&self, token: &str) -> bool {
        let t = digest(token);
        self.tokens
            .iter()
            .fold(false, |hit, ct| hit | ct_eq(ct, &t))
    }
}

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

    fn cred(user: Option<&str>, password: Option<&str>, token: Option<&str>) -> Credential {
        Credential {
            username: user.map(Into::into),
            password: password.map(Into::into),
            token: token.map(Into::into),
        }
    }

    #[test]
    fn authenticator_accepts_every_form_of_a_configured_credential() {
        let a = Authenticator::new(&[
            cred(Some("telegraf"), Some("s3cr:et"), None),
            cred(None, None, Some("tok-1")),
        ]);
        assert!(!a.is_open());
        let ok = |uri: &str, h: Option<&str>| a.check(&parts(uri, h));
        assert_eq!(
            ok("/write", Some("Basic dGVsZWdyYWY6czNjcjpldA==")),
            AuthOutcome::Allowed
        );
        assert_eq!(
            ok("/write?u=telegraf&p=s3cr%3Aet", None),
            AuthOutcome::Allowed
        );
        assert_eq!(
            ok("/write", Some("Token telegraf:s3cr:et")),
            AuthOutcome::Allowed
        );
        assert_eq!(
            ok("/api/v2/write", Some("Token tok-1")),
            AuthOutcome::Allowed
        );
        assert_eq!(ok("/write", Some("Bearer tok-1")), AuthOutcome::Allowed);
    }

    #[test]
    fn authenticator_refuses_wrong_and_missing_credentials() {
        let a = Authenticator::new(&[
            cred(Some("telegraf"), Some("pw"), None),
            cred(None, None, Some("tok-1")),
        ]);
        let check = |uri: &str, h: Option<&str>| a.check(&parts(uri, h));
        assert_eq!(check("/write", None), AuthOutcome::Missing);
        assert_eq!(check("/write", Some("Digest x")), AuthOutcome::Missing);
        assert_eq!(check("/write?u=telegraf&p=PW", None), AuthOutcome::Denied);
        assert_eq!(check("/write?u=other&p=pw", None), AuthOutcome::Denied);
        assert_eq!(check("/write", Some("Token tok-2")), AuthOutcome::Denied);
        // A password is not a token, and a token is not a password.
        assert_eq!(check("/write", Some("Bearer pw")), AuthOutcome::Denied);
        assert_eq!(
            check("/write?u=telegraf&p=tok-1", None),
            AuthOutcome::Denied
        );
    }

    #[test]
    fn no_credentials_means_open() {
        let a = Authenticator::new(&[]);
        assert!(a.is_open());
        assert_eq!(a.check(&parts("/write", None)), AuthOutcome::Allowed);
    }

    #[test]
    fn credential_problems_name_the_entry() {
        assert!(credential_problems(&[cred(Some("u"), Some(""), None)]).is_empty());
        for bad in [
            cred(Some("u"), None, None),
            cred(Some(""), Some("p"), None),
            cred(None, None, Some("")),
            cred(Some("u"), Some("p"), Some("t")),
            cred(None, None, None),
        ] {
            let p = credential_problems(&[cred(None, None, Some("t")), bad.clone()]);
            assert_eq!(p.len(), 1, "{bad:?}");
            assert!(p[0].starts_with("`credentials[1]`"), "{p:?}");
        }
        let shown = format!("{:?}", cred(Some("u"), Some("hunter2"), Some("tok")));
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok\""),
            "{shown}"
        );
    }

    #[test]
    fn ct_eq_cases() {
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"secret", b"secret!"));
        assert!(ct_eq(b"", b""));
    }
}
