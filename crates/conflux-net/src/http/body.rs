//! Reading a request body: frame by frame (chunked bodies too), decompressing
//! `gzip` / `x-gzip` / `deflate` as the frames arrive, with the byte limit
//! enforced on the raw bytes and on the decompressed bytes as they are
//! produced. A gzip bomb fails with [`BodyError::TooLarge`] after at most
//! `limit + 1` decompressed bytes were buffered.
//!
//! A [`BodyBudget`] bounds what all the bodies being read on one listener
//! hold together: a thousand clients each trickling a large body would
//! otherwise hold a thousand buffers (`max_connections` × the body limit).
//! Each read takes room from the budget as its buffer grows and gives it
//! back when it returns; a body that finds no room within the budget's wait
//! fails with [`BodyError::Busy`] (503, retry later).

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flate2::write::MultiGzDecoder;
use flate2::{Decompress, FlushDecompress, Status};
use http::{HeaderMap, StatusCode, header, request::Parts};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Response, text};

/// Why a request body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body, raw or decompressed, is larger than the limit (413).
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body does not decode as its `Content-Encoding` says (400).
    #[error("invalid request body encoding: {0}")]
    BadEncoding(String),
    /// A `Content-Encoding` other than gzip, x-gzip, deflate or identity,
    /// or more than one (415).
    #[error("unsupported content encoding `{0}`")]
    UnsupportedEncoding(String),
    /// The connection failed while the body was read (400).
    #[error("reading request body: {0}")]
    Read(String),
    /// The listener's bodies in flight hold its whole [`BodyBudget`] (503).
    #[error(
        "too many request bytes in flight on this listener (budget {budget} bytes); retry later"
    )]
    Busy {
        /// The budget in bytes.
        budget: usize,
    },
}

impl BodyError {
    /// The HTTP status that answers this error.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::BadEncoding(_) | BodyError::Read(_) => StatusCode::BAD_REQUEST,
            BodyError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A plain-text response with [`BodyError::status`] and the message, for
    /// dialects without an error shape of their own.
    pub fn to_response(&self) -> Response {
        let mut resp = text(self.status(), format!("{self}\n"));
        if let Some(v) = self.retry_after() {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }

    /// `Retry-After` for errors a client should retry ([`BodyError::Busy`]).
    pub fn retry_after(&self) -> Option<http::HeaderValue> {
        matches!(self, BodyError::Busy { .. }).then(|| http::HeaderValue::from_static("1"))
    }
}

/// Room for the bodies being read at once on one listener, in bytes of
/// buffer (raw or decompressed); see the module doc.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    room: Arc<Semaphore>,
    bytes: usize,
    wait: Duration,
    in_flight: Option<metrics::Gauge>,
}

/// Room a body holds; given back (and the gauge lowered) when dropped.
struct Held {
    permit: Option<OwnedSemaphorePermit>,
    gauge: Option<metrics::Gauge>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let (Some(p), Some(g)) = (&self.permit, &self.gauge) {
            g.decrement(p.num_permits() as f64);
        }
    }
}

impl BodyBudget {
    /// `bytes` in all; a body waits at most `wait` for room.
    pub fn new(bytes: usize, wait: Duration) -> BodyBudget {
        let bytes = bytes.clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            room: Arc::new(Semaphore::new(bytes)),
            bytes,
            wait,
            in_flight: None,
        }
    }

    /// Report the bytes held in `gauge`.
    #[must_use]
    pub fn with_gauge(self, gauge: metrics::Gauge) -> BodyBudget {
        BodyBudget {
            in_flight: Some(gauge),
            ..self
        }
    }

    /// The budget in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes not held by a body now.
    pub fn available(&self) -> usize {
        self.room.available_permits()
    }

    /// Grow `held` to `want` bytes (at most the whole budget, so one body
    /// larger than it still passes alone).
    async fn grow(&self, held: &mut Held, want: usize) -> Result<(), BodyError> {
        if held.gauge.is_none() {
            held.gauge.clone_from(&self.in_flight);
        }
        let held = &mut held.permit;
        let have = held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
        let want = want.min(self.bytes);
        if want <= have {
            return Ok(());
        }
        let more = u32::try_from(want - have).unwrap_or(u32::MAX);
        let acquire = self.room.clone().acquire_many_owned(more);
        match tokio::time::timeout(self.wait, acquire).await {
            Ok(Ok(p)) => {
                if let Some(g) = &self.in_flight {
                    g.increment(f64::from(more));
                }
                match held {
                    Some(h) => h.merge(p),
                    None => *held = Some(p),
                }
                Ok(())
            }
            // Closed never happens (the semaphore is never closed).
            Ok(Err(_)) | Err(_) => Err(BodyError::Busy { budget: self.bytes }),
        }
    }
}

/// How [`read_body_with`] reads a body.
#[derive(Debug, Clone)]
pub struct BodyOptions {
    /// Largest body in bytes as received (compressed, when it is).
    pub limit: usize,
    /// Largest body in bytes after decompression; a gzip bomb stops here.
    pub decompressed_limit: usize,
    /// Treat `Content-Type: application/gzip` without a `Content-Encoding` as
    /// gzip (KairosDB's deprecated way to post compressed data).
    pub gzip_content_type: bool,
    /// The listener's budget for bodies in flight; `None` for no bound.
    pub budget: Option<BodyBudget>,
}

impl BodyOptions {
    /// A limit of `limit` bytes, raw and decompressed, no content-type sniffing.
    pub fn new(limit: usize) -> BodyOptions {
        BodyOptions {
            limit,
            decompressed_limit: limit,
            gzip_content_type: false,
            budget: None,
        }
    }

    /// `limit` bytes as received, `decompressed_limit` after decompression.
    pub fn with_decompressed(limit: usize, decompressed_limit: usize) -> BodyOptions {
        BodyOptions {
            decompressed_limit,
            ..BodyOptions::new(limit)
        }
    }

    /// Read within `budget`.
    #[must_use]
    pub fn with_budget(self, budget: &BodyBudget) -> BodyOptions {
        BodyOptions {
            budget: Some(budget.clone()),
            ..self
        }
    }
}

/// The most of a body left unread that [`drain`] reads: Go's net/http
/// (InfluxDB's server) reads as much before it reuses a connection.
pub(crate) const DRAIN_BYTES: usize = 256 * 1024;

/// How long [`drain`] reads at most.
pub(crate) const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// Read and drop what is left of a body, up to [`DRAIN_BYTES`] within
/// [`DRAIN_WAIT`]. hyper closes a connection whose request body was left
/// unread, and a client that reuses the connection for its next request
/// (the InfluxDB client's health check after a refused write) races that
/// close and sees a reset. A larger or slower body still closes the
/// connection.
pub(crate) async fn drain<B>(mut body: B)
where
    B: Body + Unpin,
{
    let _ = tokio::time::timeout(DRAIN_WAIT, async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += bytes::Buf::remaining(data);
                if seen > DRAIN_BYTES {
                    break;
                }
            }
        }
    })
    .await;
}

/// The body of a request, as handlers receive it. Whatever a handler leaves
/// unread (an answer given before the body: 401, 404, 405, a 400 on the
/// query string) is read and dropped by a task of its own once the handler
/// drops the body ([`drain`]), so the client keeps its connection; no
/// handler has to remember to do it. A body announced larger than
/// [`DRAIN_BYTES`] is not waited for: its connection closes.
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    /// The body ended (or failed): nothing is left to drain.
    done: bool,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming) -> RequestBody {
        RequestBody {
            inner: Some(inner),
            done: false,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if self.is_end_stream() || self.size_hint().lower() > DRAIN_BYTES as u64 {
            return;
        }
        // Outside a runtime (no handler runs there) the body is dropped.
        if let (Some(inner), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(drain(inner));
        }
    }
}

/// Read and decode the whole body of `req`, at most `limit` bytes raw and
/// decompressed. Returns the request head and the decoded body (the
/// `Content-Encoding` header stays in the head as the client sent it).
///
/// # Errors
/// See [`BodyError`]; a `Content-Length` above `limit` fails before reading.
pub async fn read_body<B>(req: http::Request<B>, limit: usize) -> Result<(Parts, Bytes), BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    read_body_with(req, BodyOptions::new(limit)).await
}

/// As [`read_body`], with [`BodyOptions`].
///
/// # Errors
/// See [`BodyError`].
pub async fn read_body_with<B>(
    req: http::Request<B>,
    opts: BodyOptions,
) -> Result<(Parts, Bytes), BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let (parts, body) = req.into_parts();
    let bytes = collect_body(&parts.headers, body, opts).await?;
    Ok((parts, bytes))
}

/// The body-reading half of [`read_body_with`], for callers that split the
/// request themselves: `headers` choose the decoding.
///
/// # Errors
/// See [`BodyError`].
pub async fn collect_body<B>(
    headers: &HeaderMap,
    body: B,
    opts: BodyOptions,
) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let coding = coding(headers, &opts)?;
    // Uncompressed, the raw bytes are the decoded bytes: the smaller limit holds.
    let (limit, out_limit) = match coding {
        Coding::Identity => {
            let l = opts.limit.min(opts.decompressed_limit);
            (l, l)
        }
        Coding::Gzip | Coding::Deflate => (opts.limit, opts.decompressed_limit),
    };
    let hint = body.size_hint();
    if hint.lower() > limit as u64 {
        return Err(BodyError::TooLarge { limit });
    }
    let mut sink = Sink::new(coding, out_limit, hint.exact());
    let mut body = std::pin::pin!(body);
    let mut raw = 0usize;
    // Room taken from the budget; given back when this returns.
    let mut held = Held {
        permit: None,
        gauge: None,
    };
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        raw = raw.saturating_add(data.len());
        if raw > limit {
            return Err(BodyError::TooLarge { limit });
        }
        if let Some(budget) = &opts.budget {
            // The frame is held until the sink has taken it in.
            budget.grow(&mut held, sink.held() + data.len()).await?;
        }
        sink.push(data)?;
        if let Some(budget) = &opts.budget {
            budget.grow(&mut held, sink.held()).await?;
        }
    }
    sink.finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Identity,
    Gzip,
    Deflate,
}

fn coding(headers: &HeaderMap, opts: &BodyOptions) -> Result<Coding, BodyError> {
    let mut coding = Coding::Identity;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let Ok(value) = value.to_str() else {
            return Err(BodyError::UnsupportedEncoding(quote(
                &String::from_utf8_lossy(value.as_bytes()),
            )));
        };
        for token in value.split(',').map(str::trim) {
            let this = if token.is_empty() || token.eq_ignore_ascii_case("identity") {
                continue;
            } else if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
                Coding::Gzip
            } else if token.eq_ignore_ascii_case("deflate") {
                Coding::Deflate
            } else {
                return Err(BodyError::UnsupportedEncoding(quote(token)));
            };
            if coding != Coding::Identity {
                // Stacked encodings: no client of ours sends them.
                return Err(BodyError::UnsupportedEncoding(quote(value)));
            }
            coding = this;
        }
    }
    if coding == Coding::Identity && opts.gzip_content_type {
        let gzip_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/gzip"));
        if gzip_type {
            coding = Coding::Gzip;
        }
    }
    Ok(coding)
}

/// At most 64 bytes of client input, cut at a character boundary.
fn quote(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Decompressed output, never holding more than `limit + 1` bytes.
#[derive(Debug)]
struct Out {
    buf: Vec<u8>,
    limit: usize,
    over: bool,
}

impl Out {
    fn new(limit: usize) -> Out {
        Out {
            buf: Vec::new(),
            limit,
            over: false,
        }
    }

    /// Make room for at least one more byte without passing `limit + 1`
    /// bytes of capacity.
    fn make_room(&mut self, wanted: usize) {
        let cap = self.buf.capacity();
        let needed = self.buf.len().saturating_add(wanted.max(1));
        if needed <= cap {
            return;
        }
        let grown = cap.saturating_mul(2).max(needed).max(8 * 1024);
        let target = grown.min(self.limit.saturating_add(1));
        if target > cap {
            self.buf.reserve_exact(target - self.buf.len());
        }
    }

    fn check(&mut self) -> Result<(), BodyError> {
        if self.buf.len() > self.limit {
            self.over = true;
            return Err(BodyError::TooLarge { limit: self.limit });
        }
        Ok(())
    }
}

impl Write for Out {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.limit {
            self.over = true;
            return Err(io::Error::other("decompressed body over the limit"));
        }
        self.make_room(data.len());
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Raw deflate or zlib-wrapped deflate, told apart by the first two bytes.
enum Inflate {
    /// Fewer than two bytes seen so far.
    Sniff(Vec<u8>),
    Running {
        state: Decompress,
        ended: bool,
    },
}

/// Whether `b0 b1` is a zlib header (RFC 1950): method 8, window at most
/// 32 KiB, check bits. Raw deflate rarely starts like that, and HTTP's
/// `deflate` means zlib anyway; raw deflate is accepted for lenient clients.
fn is_zlib_header(b0: u8, b1: u8) -> bool {
    b0 & 0x0f == 8 && b0 >> 4 <= 7 && (u16::from(b0) << 8 | u16::from(b1)) % 31 == 0
}

enum Sink {
    Identity {
        first: Option<Bytes>,
        rest: BytesMut,
        expected: Option<u64>,
        limit: usize,
    },
    Gzip {
        decoder: Box<MultiGzDecoder<Out>>,
        empty: bool,
    },
    Deflate {
        inflate: Inflate,
        out: Out,
    },
}

fn bad(what: &str, e: impl std::fmt::Display) -> BodyError {
    BodyError::BadEncoding(format!("{what}: {e}"))
}

impl Sink {
    fn new(coding: Coding, limit: usize, expected: Option<u64>) -> Sink {
        match coding {
            Coding::Identity => Sink::Identity {
                first: None,
                rest: BytesMut::new(),
                expected,
                limit,
            },
            Coding::Gzip => Sink::Gzip {
                decoder: Box::new(MultiGzDecoder::new(Out::new(limit))),
                empty: true,
            },
            Coding::Deflate => Sink::Deflate {
                inflate: Inflate::Sniff(Vec::with_capacity(2)),
                out: Out::new(limit),
            },
        }
    }

    fn push(&mut self, data: Bytes) -> Result<(), BodyError> {
        match self {
            Sink::Identity {
                first,
                rest,
                expected,
                limit,
            } => {
                // A body in one frame is passed on without a copy.
                if first.is_none() && rest.is_empty() {
                    *first = Some(data);
                    return Ok(());
                }
                if let Some(f) = first.take() {
                    let total = expected.map_or(0, |e| usize::try_from(e).unwrap_or(usize::MAX));
                    rest.reserve(total.min(*limit).max(f.len() + data.len()));
                    rest.extend_from_slice(&f);
                }
                rest.extend_from_slice(&data);
                Ok(())
            }
            Sink::Gzip { decoder, empty } => {
                *empty &= data.is_empty();
                decoder.write_all(&data).map_err(|e| {
                    if decoder.get_ref().over {
                        BodyError::TooLarge {
                            limit: decoder.get_ref().limit,
                        }
                    } else {
                        bad("gzip", e)
                    }
                })
            }
            Sink::Deflate { inflate, out } => feed_deflate(inflate, out, &data),
        }
    }

    fn finish(self) -> Result<Bytes, BodyError> {
        match self {
            Sink::Identity { first, rest, .. } => Ok(first.unwrap_or_else(|| rest.freeze())),
            Sink::Gzip { empty: true, .. } => Ok(Bytes::new()),
            Sink::Gzip { mut decoder, .. } => {
                // Flushing the decoder can still produce output past the limit:
                // that is a 413, not a broken stream.
                if let Err(e) = decoder.try_finish() {
                    let out = decoder.get_ref();
                    return Err(if out.over {
                        BodyError::TooLarge { limit: out.limit }
                    } else {
                        bad("gzip", e)
                    });
                }
                let out = decoder.finish().map_err(|e| bad("gzip", e))?;
                Ok(Bytes::from(out.buf))
            }
            Sink::Deflate { inflate, out } => match inflate {
                Inflate::Sniff(head) if head.is_empty() => Ok(Bytes::new()),
                Inflate::Running { ended: true, .. } => Ok(Bytes::from(out.buf)),
                _ => Err(BodyError::BadEncoding(
                    "deflate: unexpected end of stream".into(),
                )),
            },
        }
    }

    /// Bytes of buffer the body holds now (capacity: what memory it took).
    fn held(&self) -> usize {
        match self {
            Sink::Identity { first, rest, .. } => {
                first.as_ref().map_or(0, Bytes::len) + rest.capacity()
            }
            Sink::Gzip { decoder, .. } => decoder.get_ref().buf.capacity(),
            Sink::Deflate { out, .. } => out.buf.capacity(),
        }
    }

    #[cfg(test)]
    fn out_capacity(&self) -> usize {
        match self {
            Sink::Identity { rest, .. } => rest.capacity(),
            Sink::Gzip { decoder, .. } => decoder.get_ref().buf.capacity(),
            Sink::Deflate { out, .. } => out.buf.capacity(),
        }
    }
}

fn feed_deflate(inflate: &mut Inflate, out: &mut Out, data: &[u8]) -> Result<(), BodyError> {
    if let Inflate::Sniff(head) = inflate {
        let take = (2 - head.len()).min(data.len());
        head.extend_from_slice(&data[..take]);
        if head.len() < 2 {
            return Ok(());
        }
        let head = std::mem::take(head);
        let zlib = is_zlib_header(head[0], head[1]);
        *inflate = Inflate::Running {
            state: Decompress::new(zlib),
            ended: false,
        };
        feed_deflate(inflate, out, &head)?;
        return feed_deflate(inflate, out, &data[take..]);
    }
    let Inflate::Running { state, ended } = inflate else {
        return Ok(());
    };
    let mut input = data;
    loop {
        if *ended {
            if input.is_empty() {
                return Ok(());
            }
            return Err(BodyError::BadEncoding(
                "deflate: data after the end of the stream".into(),
            ));
        }
        out.make_room(input.len());
        let (in_before, out_before) = (state.total_in(), state.total_out());
        let status = state
            .decompress_vec(input, &mut out.buf, FlushDecompress::None)
            .map_err(|e| bad("deflate", e))?;
        out.check()?;
        let consumed = usize::try_from(state.total_in() - in_before).unwrap_or(input.len());
        input = &input[consumed.min(input.len())..];
        let produced = state.total_out() - out_before;
        match status {
            Status::StreamEnd => *ended = true,
            Status::Ok | Status::BufError => {
                let full = out.buf.len() == out.buf.capacity();
                if input.is_empty() && !full {
                    return Ok(());
                }
                if consumed == 0 && produced == 0 && !full {
                    return Err(BodyError::BadEncoding(
                        "deflate: stream makes no progress".into(),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use http::HeaderValue;
    use http_body::{Frame, SizeHint};

    use super::*;

    /// A body arriving in the given frames, with or without a known length.
    struct Frames {
        frames: VecDeque<Bytes>,
        length: Option<u64>,
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.frames.pop_front().map(|b| Ok(Frame::data(b))))
        }

        fn size_hint(&self) -> SizeHint {
            self.length
                .map_or_else(SizeHint::default, SizeHint::with_exact)
        }
    }

    /// A body whose frames the test sends one by one: it stays open (and
    /// holds what it has) until the sender is dropped.
    struct Trickle(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

    impl Body for Trickle {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    /// Wait (bounded) until the slow body's task has taken its frames in.
    async fn held_at_most(budget: &BodyBudget, available: usize) {
        for _ in 0..500 {
            if budget.available() <= available {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("budget still has {} bytes free", budget.available());
    }

    #[tokio::test]
    async fn bodies_in_flight_share_the_budget_and_give_it_back() {
        let budget = BodyBudget::new(100_000, Duration::from_millis(500));
        let opts = BodyOptions::new(1 << 20).with_budget(&budget);
        // A slow client holds 80 kB of its body.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let slow = tokio::spawn({
            let opts = opts.clone();
            async move { collect_body(&HeaderMap::new(), Trickle(rx), opts).await }
        });
        tx.send(Bytes::from(vec![b'a'; 40_000])).unwrap();
        tx.send(Bytes::from(vec![b'b'; 40_000])).unwrap();
        held_at_most(&budget, 20_000).await;

        // Another body of 60 kB finds no room within the wait: 503.
        let err = collect_body(
            &HeaderMap::new(),
            chunked(&[b'c'; 60_000], 10_000),
            opts.clone(),
        )
        .await
        .unwrap_err();
        assert_eq!(err, BodyError::Busy { budget: 100_000 });
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.to_response().headers()[header::RETRY_AFTER], "1");

        // The slow body ends: its room comes back, and the other one passes.
        drop(tx);
        assert_eq!(slow.await.unwrap().unwrap().len(), 80_000);
        assert_eq!(budget.available(), 100_000);
        let ok = collect_body(
            &HeaderMap::new(),
            chunked(&[b'c'; 60_000], 10_000),
            opts.clone(),
        )
        .await
        .unwrap();
        assert_eq!(ok.len(), 60_000);
        // One body larger than the whole budget still passes alone.
        let big = collect_body(&HeaderMap::new(), chunked(&[b'd'; 300_000], 50_000), opts)
            .await
            .unwrap();
        assert_eq!(big.len(), 300_000);
        assert_eq!(budget.available(), 100_000);
    }

    #[tokio::test]
    async fn a_gzip_body_counts_its_decompressed_buffer() {
        let budget = BodyBudget::new(50_000, Duration::from_millis(100));
        let opts = BodyOptions::new(1 << 20).with_budget(&budget);
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&[b' '; 400_000]).unwrap();
        let small = gz.finish().unwrap();
        assert!(small.len() < 5_000);
        // A held body takes 40 kB; the gzip one grows past the 10 kB left.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let slow = tokio::spawn({
            let opts = opts.clone();
            async move { collect_body(&HeaderMap::new(), Trickle(rx), opts).await }
        });
        tx.send(Bytes::from(vec![b'a'; 40_000])).unwrap();
        held_at_most(&budget, 10_000).await;
        let err = collect_body(
            &headers(&[("content-encoding", "gzip")]),
            chunked(&small, 1_000),
            opts,
        )
        .await
        .unwrap_err();
        assert_eq!(err, BodyError::Busy { budget: 50_000 });
        drop(tx);
        slow.await.unwrap().unwrap();
        assert_eq!(budget.available(), 50_000);
    }

    fn chunked(data: &[u8], chunk: usize) -> Frames {
        Frames {
            frames: data
                .chunks(chunk.max(1))
                .map(Bytes::copy_from_slice)
                .collect(),
            length: None,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn read(h: &HeaderMap, body: Frames, opts: BodyOptions) -> Result<Bytes, BodyError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(collect_body(h, body, opts))
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn lines(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| format!("cpu,host=h{i} usage={i}\n").into_bytes())
            .collect()
    }

    const LIMIT: usize = 1 << 20;

    #[test]
    fn identity_in_one_frame_or_many() {
        let data = lines(100);
        let h = HeaderMap::new();
        assert_eq!(
            read(&h, chunked(&data, data.len()), BodyOptions::new(LIMIT)).unwrap(),
            data
        );
        assert_eq!(
            read(&h, chunked(&data, 7), BodyOptions::new(LIMIT)).unwrap(),
            data
        );
    }

    #[test]
    fn declared_length_over_limit_fails_before_reading() {
        let body = Frames {
            frames: VecDeque::new(),
            length: Some(101),
        };
        let err = read(&HeaderMap::new(), body, BodyOptions::new(100)).unwrap_err();
        assert_eq!(err, BodyError::TooLarge { limit: 100 });
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn chunked_body_over_limit_fails() {
        let err = read(
            &HeaderMap::new(),
            chunked(&[b'x'; 101], 10),
            BodyOptions::new(100),
        )
        .unwrap_err();
        assert_eq!(err, BodyError::TooLarge { limit: 100 });
    }

    #[test]
    fn body_of_exactly_the_limit_passes() {
        let data = [b'x'; 100];
        assert_eq!(
            read(&HeaderMap::new(), chunked(&data, 9), BodyOptions::new(100)).unwrap(),
            &data[..]
        );
        let h = headers(&[("content-encoding", "gzip")]);
        assert_eq!(
            read(&h, chunked(&gzip(&data), 5), BodyOptions::new(100)).unwrap(),
            &data[..]
        );
        let h = headers(&[("content-encoding", "deflate")]);
        assert_eq!(
            read(&h, chunked(&zlib(&data), 5), BodyOptions::new(100)).unwrap(),
            &data[..]
        );
    }

    #[test]
    fn gzip_and_x_gzip_decode_in_any_chunking() {
        let data = lines(2000);
        let z = gzip(&data);
        for enc in ["gzip", "x-gzip", "GZIP"] {
            let mut h = HeaderMap::new();
            h.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_str(enc).unwrap(),
            );
            for chunk in [1, 3, 1000, z.len()] {
                assert_eq!(
                    read(&h, chunked(&z, chunk), BodyOptions::new(LIMIT)).unwrap(),
                    data
                );
            }
        }
    }

    #[test]
    fn multi_member_gzip_decodes_every_member() {
        let z = [gzip(b"a 1\n"), gzip(b"b 2\n")].concat();
        let h = headers(&[("content-encoding", "gzip")]);
        assert_eq!(
            read(&h, chunked(&z, 3), BodyOptions::new(LIMIT)).unwrap(),
            &b"a 1\nb 2\n"[..]
        );
    }

    #[test]
    fn deflate_accepts_zlib_and_raw_streams() {
        let data = lines(2000);
        let h = headers(&[("content-encoding", "deflate")]);
        for z in [zlib(&data), raw_deflate(&data)] {
            for chunk in [1, 2, 1000, z.len()] {
                assert_eq!(
                    read(&h, chunked(&z, chunk), BodyOptions::new(LIMIT)).unwrap(),
                    data
                );
            }
        }
    }

    #[test]
    fn truncated_streams_are_bad_encoding() {
        let data = lines(100);
        let z = gzip(&data);
        let h = headers(&[("content-encoding", "gzip")]);
        let err = read(&h, chunked(&z[..z.len() - 4], 64), BodyOptions::new(LIMIT)).unwrap_err();
        assert!(matches!(err, BodyError::BadEncoding(_)), "{err:?}");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let z = zlib(&data);
        let h = headers(&[("content-encoding", "deflate")]);
        let err = read(&h, chunked(&z[..z.len() / 2], 64), BodyOptions::new(LIMIT)).unwrap_err();
        assert_eq!(
            err,
            BodyError::BadEncoding("deflate: unexpected end of stream".into())
        );
    }

    #[test]
    fn garbage_is_bad_encoding() {
        let h = headers(&[("content-encoding", "gzip")]);
        let err = read(&h, chunked(b"cpu value=1\n", 64), BodyOptions::new(LIMIT)).unwrap_err();
        assert!(
            matches!(err, BodyError::BadEncoding(ref m) if m.starts_with("gzip: ")),
            "{err:?}"
        );
        let mut z = zlib(b"a 1\n");
        z.extend_from_slice(b"junk");
        let h = headers(&[("content-encoding", "deflate")]);
        let err = read(&h, chunked(&z, 64), BodyOptions::new(LIMIT)).unwrap_err();
        assert_eq!(
            err,
            BodyError::BadEncoding("deflate: data after the end of the stream".into())
        );
    }

    #[test]
    fn empty_compressed_body_is_empty() {
        let h = headers(&[("content-encoding", "gzip")]);
        assert!(
            read(&h, chunked(b"", 1), BodyOptions::new(LIMIT))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn small_gzip_over_the_limit_is_too_large_not_bad_encoding() {
        // Few compressed bytes in one frame: the overflow shows only when the
        // decoder is flushed at the end.
        let h = headers(&[("content-encoding", "gzip")]);
        let packed = gzip(&vec![b'x'; 3000]);
        assert_eq!(
            read(&h, chunked(&packed, packed.len()), BodyOptions::new(2000)).unwrap_err(),
            BodyError::TooLarge { limit: 2000 }
        );
    }

    #[test]
    fn gzip_bomb_fails_without_buffering_past_the_limit() {
        let bomb = gzip(&vec![0u8; 16 << 20]);
        // A small request that inflates 16 MiB deep.
        assert!(bomb.len() < 128 * 1024, "bomb is {} bytes", bomb.len());
        let limit = 1 << 20;
        let mut sink = Sink::new(Coding::Gzip, limit, None);
        let err = bomb
            .chunks(4096)
            .map(|c| sink.push(Bytes::copy_from_slice(c)))
            .find_map(Result::err)
            .unwrap();
        assert_eq!(err, BodyError::TooLarge { limit });
        assert!(
            sink.out_capacity() <= limit + 1,
            "buffered {}",
            sink.out_capacity()
        );
        // And through the public entry point.
        let h = headers(&[("content-encoding", "gzip")]);
        assert_eq!(
            read(&h, chunked(&bomb, 16 * 1024), BodyOptions::new(limit)).unwrap_err(),
            BodyError::TooLarge { limit }
        );
    }

    #[test]
    fn deflate_bomb_fails_without_buffering_past_the_limit() {
        let bomb = zlib(&vec![0u8; 16 << 20]);
        let limit = 1 << 20;
        let mut sink = Sink::new(Coding::Deflate, limit, None);
        let err = bomb
            .chunks(4096)
            .map(|c| sink.push(Bytes::copy_from_slice(c)))
            .find_map(Result::err)
            .unwrap();
        assert_eq!(err, BodyError::TooLarge { limit });
        assert!(
            sink.out_capacity() <= limit + 1,
            "buffered {}",
            sink.out_capacity()
        );
    }

    #[test]
    fn unknown_and_stacked_encodings_are_unsupported() {
        let h = headers(&[("content-encoding", "br")]);
        let err = read(&h, chunked(b"x", 1), BodyOptions::new(LIMIT)).unwrap_err();
        assert_eq!(err, BodyError::UnsupportedEncoding("br".into()));
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let h = headers(&[("content-encoding", "gzip, deflate")]);
        let err = read(&h, chunked(b"x", 1), BodyOptions::new(LIMIT)).unwrap_err();
        assert_eq!(err, BodyError::UnsupportedEncoding("gzip, deflate".into()));
        let h = headers(&[("content-encoding", "identity")]);
        assert_eq!(
            read(&h, chunked(b"x", 1), BodyOptions::new(LIMIT)).unwrap(),
            &b"x"[..]
        );
    }

    #[test]
    fn gzip_content_type_only_when_asked() {
        let z = gzip(b"a 1\n");
        let h = headers(&[("content-type", "application/gzip")]);
        let opts = BodyOptions {
            gzip_content_type: true,
            ..BodyOptions::new(LIMIT)
        };
        assert_eq!(read(&h, chunked(&z, 5), opts).unwrap(), &b"a 1\n"[..]);
        assert_eq!(
            read(&h, chunked(&z, 5), BodyOptions::new(LIMIT)).unwrap(),
            z
        );
    }

    #[test]
    fn compressed_and_decompressed_limits_are_separate() {
        let plain = vec![b'a'; 10_000];
        let z = gzip(&plain);
        assert!(z.len() < 200);
        let h = headers(&[("content-encoding", "gzip")]);
        // The compressed size is under both limits; the decompressed one decides.
        let over = BodyOptions::with_decompressed(1_000, 9_999);
        assert_eq!(
            read(&h, chunked(&z, 7), over).unwrap_err(),
            BodyError::TooLarge { limit: 9_999 }
        );
        let fits = BodyOptions::with_decompressed(1_000, 10_000);
        assert_eq!(read(&h, chunked(&z, 7), fits).unwrap(), plain);
        // Raw bytes past the raw limit fail however small they decompress to.
        let tight = BodyOptions::with_decompressed(50, 1 << 20);
        assert_eq!(
            read(&h, chunked(&z, 7), tight).unwrap_err(),
            BodyError::TooLarge { limit: 50 }
        );
        // Without compression the smaller of the two applies.
        let identity = headers(&[]);
        assert_eq!(
            read(
                &identity,
                chunked(&plain, 100),
                BodyOptions::with_decompressed(20_000, 5_000)
            )
            .unwrap_err(),
            BodyError::TooLarge { limit: 5_000 }
        );
    }

    #[test]
    fn zlib_header_detection() {
        assert!(is_zlib_header(0x78, 0x9c));
        assert!(is_zlib_header(0x78, 0x01));
        assert!(is_zlib_header(0x78, 0xda));
        assert!(!is_zlib_header(0x1f, 0x8b));
        assert!(!is_zlib_header(0x78, 0x00));
    }

    #[test]
    fn error_response_carries_status_and_message() {
        let resp = BodyError::TooLarge { limit: 10 }.to_response();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
