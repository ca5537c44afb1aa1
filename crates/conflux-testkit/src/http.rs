//! A tiny blocking HTTP/1.1 client on `std::net::TcpStream`.
//!
//! One request per connection (`Connection: close`); the whole answer is read
//! until the server closes, then split into status, headers and body. The body
//! is cut at `Content-Length`, or decoded when `Transfer-Encoding: chunked`
//! (InfluxDB answers `/query` chunked). Enough for talking to test servers;
//! not a general client (no TLS, no redirects, no `100 Continue`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Connect, read and write timeout of every request.
const TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, e.g. `204`.
    pub status: u16,
    /// Header names (as sent) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request and reads the whole answer.
///
/// `path_and_query` must already be URL-encoded (see [`url_encode`]).
/// `Host`, `Connection: close` and, when there is a body or the method is not
/// `GET`/`HEAD`, `Content-Length` are added.
///
/// # Errors
/// Connection and I/O errors, and an answer that is not HTTP/1.x.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut head =
        format!("{method} {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || !matches!(method, "GET" | "HEAD") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw, method == "HEAD")
}

/// `GET path_and_query`: status and body text.
///
/// # Panics
/// On connection or I/O errors (the message names the URL).
pub fn http_get(addr: SocketAddr, path_and_query: &str) -> (u16, String) {
    let response = http_request(addr, "GET", path_and_query, &[], b"")
        .unwrap_or_else(|e| panic!("GET http://{addr}{path_and_query}: {e}"));
    (response.status, response.text())
}

/// `POST path` with `body` of type `content_type`: status and body text.
///
/// # Panics
/// On connection or I/O errors (the message names the URL).
pub fn http_post(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let response = http_request(addr, "POST", path, &[("Content-Type", content_type)], body)
        .unwrap_or_else(|e| panic!("POST http://{addr}{path}: {e}"));
    (response.status, response.text())
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for query
/// values and form bodies.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Splits a whole answer into status, headers and body.
fn parse_response(raw: &[u8], head_only: bool) -> io::Result<Response> {
    let end =
        find(raw, b"\r\n\r\n").ok_or_else(|| invalid("answer without the end of its header"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| invalid("header is not UTF-8"))?;
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!(
            "not an HTTP/1.x status line: {status_line:?}"
        )));
    }
    let status = code
        .parse()
        .map_err(|_| invalid(format!("bad status line: {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(response);
    }
    let chunked = response.header("Transfer-Encoding").is_some_and(|v| {
        v.split(',')
            .any(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
    });
    response.body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = response.header("Content-Length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {length:?}")))?;
        if rest.len() < length {
            return Err(invalid(format!(
                "body has {} of {length} bytes",
                rest.len()
            )));
        }
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(response)
}

/// Decodes a chunked body (extensions and trailers ignored).
fn dechunk(mut raw: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(raw, b"\r\n").ok_or_else(|| invalid("chunk size line without CRLF"))?;
        let line = std::str::from_utf8(&raw[..line_end])
            .map_err(|_| invalid("chunk size is not UTF-8"))?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if raw.len() < size + 2 || &raw[size..size + 2] != b"\r\n" {
            return Err(invalid("truncated chunk"));
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Response {
        parse_response(raw.as_bytes(), false).unwrap()
    }

    #[test]
    fn cuts_body_at_content_length() {
        let r = parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello world");
        assert_eq!((r.status, r.text()), (200, "hello".to_owned()));
    }

    #[test]
    fn decodes_chunked_body() {
        let r = parse(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        );
        assert_eq!(r.text(), "hello world");
        assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    }

    #[test]
    fn no_content_has_empty_body() {
        let r = parse("HTTP/1.1 204 No Content\r\nX-Influxdb-Version: 1.8.0\r\n\r\n");
        assert_eq!((r.status, r.body.len()), (204, 0));
    }

    #[test]
    fn body_until_close_without_length() {
        let r = parse("HTTP/1.0 400 Bad Request\r\n\r\nout of bounds\n");
        assert_eq!((r.status, r.text()), (400, "out of bounds\n".to_owned()));
    }

    #[test]
    fn rejects_truncated_chunk() {
        let err = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            false,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "truncated chunk");
    }

    #[test]
    fn encodes_reserved_characters() {
        assert_eq!(
            url_encode(r#"{__name__=~"a.+"} x&y"#),
            "%7B__name__%3D~%22a.%2B%22%7D%20x%26y"
        );
    }
}
