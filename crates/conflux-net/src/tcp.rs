//! The TCP line server: newline-framed streams (Graphite plaintext, OpenTSDB
//! telnet, Influx line protocol over TCP) handed to a [`LineConn`] as many
//! complete lines at a time as the read buffer holds.
//!
//! Per connection one buffer is reused: lines are passed as a slice of it,
//! only the unfinished tail is moved to the front after each call, and the
//! newline search runs once over each byte read, backwards (`memrchr`), since
//! the handler splits the lines itself.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use conflux_core::telemetry;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::allow::AllowList;
use crate::conn::Acceptor;
use crate::tls::ServerTls;
use crate::{Labels, ListenerError};

/// Limits of a TCP line listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpConfig {
    /// Connections open at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A line must be complete this long after its first byte arrived, or
    /// the connection is closed: a client trickling bytes (slow-loris) is
    /// not kept alive by the idle timeout alone.
    pub line_timeout: Duration,
    /// Longest line in bytes, without its `\n`; longer lines are counted and
    /// skipped.
    pub max_line_bytes: usize,
    /// Initial read buffer per connection; it grows up to `max_line_bytes + 1`
    /// while one line does not fit.
    pub read_buffer_bytes: usize,
    /// A connection whose reads fill its buffer (a sender with more queued)
    /// has it doubled up to this (and `max_line_bytes + 1`): fewer reads and
    /// batches per point, while the many slow senders keep the initial size.
    pub busy_buffer_bytes: usize,
}

impl Default for TcpConfig {
    fn default() -> TcpConfig {
        TcpConfig {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
            line_timeout: Duration::from_secs(30),
            max_line_bytes: 256 * 1024,
            read_buffer_bytes: 64 * 1024,
            busy_buffer_bytes: 256 * 1024,
        }
    }
}

/// What the connection does after a call to [`LineConn::lines`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read on.
    Continue,
    /// Write the reply, then close the connection.
    Close,
}

/// One connection's handler: the dialect side of a TCP line stream.
pub trait LineConn: Send + 'static {
    /// Handle one or more complete lines. `lines` is non-empty and every line
    /// in it ends in `\n`, except that at end of stream a final unterminated
    /// line is passed as it is. Bytes appended to `reply` are written to the
    /// socket before anything more is read (telnet error replies).
    ///
    /// Nothing more is read from the socket while the returned future runs:
    /// awaiting the pipeline here pushes back on the client.
    fn lines(&mut self, lines: &[u8], reply: &mut Vec<u8>) -> impl Future<Output = Flow> + Send;

    /// A line longer than `max_line_bytes` was skipped (already counted as
    /// `conflux_listener_rejected_total{reason="line_too_long"}`).
    fn line_too_long(&mut self) {}
}

/// Creates a [`LineConn`] per accepted connection.
pub trait LineHandler: Send + Sync + 'static {
    /// The per-connection handler.
    type Conn: LineConn;

    /// A connection from `peer` was accepted. Runs on the accept loop, so
    /// keep it cheap.
    fn open(&self, peer: SocketAddr) -> Self::Conn;
}

/// Why [`serve_lines`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side; everything it sent was handled.
    Eof,
    /// Nothing arrived for `idle_timeout`, or the peer did not take a reply
    /// for that long.
    Idle,
    /// A line was still unfinished `line_timeout` after its first byte.
    LineTimeout,
    /// The handler returned [`Flow::Close`].
    Handler,
    /// Shutdown: the complete lines already received were handled.
    Shutdown,
}

/// A TCP listener whose connections carry newline-separated lines.
///
/// Self-metrics (labels `listener`, `dialect`): the connection series of
/// [`Acceptor`], `conflux_listener_received_bytes_total` and
/// `conflux_listener_rejected_total{reason="line_too_long"}`.
#[derive(Debug)]
pub struct TcpLineServer {
    acceptor: Acceptor,
    cfg: TcpConfig,
}

impl TcpLineServer {
    /// Bind `addr` now, so that a port conflict fails before anything runs.
    ///
    /// # Errors
    /// [`ListenerError::Bind`] when the address cannot be bound.
    pub async fn bind(
        addr: SocketAddr,
        cfg: TcpConfig,
        labels: Labels,
    ) -> Result<TcpLineServer, ListenerError> {
        let acceptor = Acceptor::bind(addr, cfg.max_connections, labels).await?;
        Ok(TcpLineServer { acceptor, cfg })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.acceptor.local_addr()
    }

    /// Accept connections only from these networks.
    pub fn set_allow(&mut self, allow: AllowList) {
        self.acceptor.set_allow(allow);
    }

    /// Serve TLS.
    pub fn set_tls(&mut self, tls: Option<ServerTls>) {
        self.acceptor.set_tls(tls);
    }

    /// Serve connections until `shutdown`; returns once every connection has
    /// handled the complete lines it had read and closed.
    pub async fn run<H: LineHandler>(self, handler: H, shutdown: CancellationToken) {
        let TcpLineServer { acceptor, cfg } = self;
        let labels = acceptor.labels().clone();
        let token = shutdown.clone();
        acceptor
            .run(shutdown, move |stream, peer| {
                let conn = handler.open(peer);
                let labels = labels.clone();
                let shutdown = token.clone();
                async move {
                    match serve_lines(stream, conn, &cfg, &labels, shutdown).await {
                        Ok(reason) => tracing::debug!(?reason, "line stream ended"),
                        Err(e) => tracing::debug!(error = %e, "line stream failed"),
                    }
                }
            })
            .await;
    }
}

/// Serve one already-accepted stream: read lines into a reused buffer and
/// hand them to `conn` until end of stream, idle timeout, [`Flow::Close`] or
/// `shutdown`. On shutdown, data already readable without waiting (up to one
/// buffer) is still taken, its complete lines are handled, and the stream is
/// closed; an unfinished last line is dropped then.
///
/// Counts `conflux_listener_received_bytes_total`,
/// `conflux_listener_rejected_total{reason="line_too_long"}` and
/// `conflux_listener_timeouts_total{reason="idle"|"line"}`; connection
/// counts are the accept loop's business.
///
/// # Errors
/// A read or write error of the stream.
pub async fn serve_lines<S, C>(
    mut stream: S,
    mut conn: C,
    cfg: &TcpConfig,
    labels: &Labels,
    shutdown: CancellationToken,
) -> io::Result<CloseReason>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    C: LineConn,
{
    let result = line_loop(&mut stream, &mut conn, cfg, labels, &shutdown).await;
    // Best effort: the peer may be gone already.
    let _ = tokio::time::timeout(cfg.idle_timeout, stream.shutdown()).await;
    result
}

async fn line_loop<S, C>(
    stream: &mut S,
    conn: &mut C,
    cfg: &TcpConfig,
    labels: &Labels,
    shutdown: &CancellationToken,
) -> io::Result<CloseReason>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    C: LineConn,
{
    let received = labels.counter(telemetry::LISTENER_RECEIVED_BYTES);
    let too_long = labels.reason_counter(telemetry::LISTENER_REJECTED, "line_too_long");
    let idle = labels.reason_counter(telemetry::LISTENER_TIMEOUTS, "idle");
    let slow_line = labels.reason_counter(telemetry::LISTENER_TIMEOUTS, "line");
    let max_line = cfg.max_line_bytes.max(1);
    // The buffer never exceeds one longest line plus its newline, so every
    // complete line in it is within the limit, and a full buffer without a
    // newline is exactly an over-long line: no per-line length check.
    let cap = max_line.saturating_add(1);
    let mut buf = vec![0u8; cfg.read_buffer_bytes.clamp(1, cap)];
    let busy = cfg.busy_buffer_bytes.clamp(buf.len(), cap);
    let mut filled = 0;
    let mut discarding = false;
    let mut reply = Vec::new();
    let mut closing = false;
    let mut drained = 0;
    // When the first byte of the line not yet finished arrived.
    let mut partial_since: Option<Instant> = None;

    loop {
        if filled == buf.len() {
            if buf.len() < cap {
                double(&mut buf, cap);
            } else {
                too_long.increment(1);
                conn.line_too_long();
                filled = 0;
                discarding = true;
            }
        }

        closing |= shutdown.is_cancelled();
        let space = buf.len() - filled;
        let n = if closing {
            // Take only what is already readable, and at most one buffer.
            if drained >= buf.len() {
                return Ok(CloseReason::Shutdown);
            }
            match tokio::time::timeout(Duration::ZERO, stream.read(&mut buf[filled..])).await {
                Ok(read) => read?,
                Err(_) => return Ok(CloseReason::Shutdown),
            }
        } else {
            let idle_at = Instant::now() + cfg.idle_timeout;
            let line_at = partial_since.map(|t| t + cfg.line_timeout);
            let deadline = line_at.map_or(idle_at, |l| l.min(idle_at));
            tokio::select! {
                read = tokio::time::timeout_at(deadline, stream.read(&mut buf[filled..])) => match read {
                    Ok(read) => read?,
                    Err(_) if line_at.is_some_and(|l| l <= idle_at) => {
                        slow_line.increment(1);
                        return Ok(CloseReason::LineTimeout);
                    }
                    Err(_) => {
                        idle.increment(1);
                        return Ok(CloseReason::Idle);
                    }
                },
                () = shutdown.cancelled() => continue,
            }
        };

        if n == 0 {
            if filled > 0 && !discarding {
                conn.lines(&buf[..filled], &mut reply).await;
                write_reply(stream, &mut reply, cfg.idle_timeout, shutdown).await?;
            }
            return Ok(CloseReason::Eof);
        }
        received.increment(n as u64);
        if n == space && buf.len() < busy {
            double(&mut buf, busy);
        }
        if closing {
            drained += n;
        }
        if partial_since.is_none() {
            partial_since = Some(Instant::now());
        }

        // Only the bytes just read can hold a newline.
        let mut fresh = filled;
        filled += n;
        if discarding {
            let Some(i) = memchr::memchr(b'\n', &buf[fresh..filled]) else {
                filled = fresh;
                continue;
            };
            let end = fresh + i + 1;
            buf.copy_within(end..filled, 0);
            filled -= end;
            fresh = 0;
            discarding = false;
        }
        let Some(i) = memchr::memrchr(b'\n', &buf[fresh..filled]) else {
            continue;
        };
        let end = fresh + i + 1;
        let flow = conn.lines(&buf[..end], &mut reply).await;
        if let Some(reason) = write_reply(stream, &mut reply, cfg.idle_timeout, shutdown).await? {
            return Ok(reason);
        }
        if flow == Flow::Close {
            return Ok(CloseReason::Handler);
        }
        buf.copy_within(end..filled, 0);
        filled -= end;
        // What follows the last newline is a line that began just now.
        partial_since = (filled > 0).then(Instant::now);
    }
}

/// Twice `buf`'s size, at most `limit`; what it holds is kept.
fn double(buf: &mut Vec<u8>, limit: usize) {
    let grown = buf.len().saturating_mul(2).min(limit);
    buf.resize(grown, 0);
}

/// Write and clear `reply`. `Some(reason)` when the connection must close
/// because the peer does not take the reply in time.
async fn write_reply<S: AsyncWrite + Unpin>(
    stream: &mut S,
    reply: &mut Vec<u8>,
    idle_timeout: Duration,
    shutdown: &CancellationToken,
) -> io::Result<Option<CloseReason>> {
    if reply.is_empty() {
        return Ok(None);
    }
    let outcome = tokio::select! {
        biased;
        written = tokio::time::timeout(idle_timeout, stream.write_all(reply)) => match written {
            Ok(result) => result.map(|()| None),
            Err(_) => Ok(Some(CloseReason::Idle)),
        },
        // At shutdown a peer that does not read its replies is not waited for.
        () = shutdown.cancelled() => Ok(Some(CloseReason::Shutdown)),
    };
    reply.clear();
    outcome
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use proptest::prelude::*;
    use tokio::io::ReadBuf;

    use super::*;

    /// A stream that returns the given chunks one read at a time.
    struct Chunks {
        chunks: VecDeque<Vec<u8>>,
        written: Vec<u8>,
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(chunk) = self.chunks.front_mut() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                chunk.drain(..n);
                if chunk.is_empty() {
                    self.chunks.pop_front();
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Chunks {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Default)]
    struct Record {
        calls: Vec<Vec<u8>>,
        too_long: usize,
    }

    impl LineConn for &'static std::sync::Mutex<Record> {
        async fn lines(&mut self, lines: &[u8], reply: &mut Vec<u8>) -> Flow {
            let mut r = self.lock().unwrap();
            r.calls.push(lines.to_vec());
            if lines.starts_with(b"quit") {
                return Flow::Close;
            }
            for line in lines.split_inclusive(|&b| b == b'\n') {
                if line.starts_with(b"bad") {
                    reply.extend_from_slice(b"error: bad\n");
                }
            }
            Flow::Continue
        }
        fn line_too_long(&mut self) {
            self.lock().unwrap().too_long += 1;
        }
    }

    fn run(chunks: Vec<Vec<u8>>, max_line: usize, buffer: usize) -> (Record, Vec<u8>, CloseReason) {
        let cfg = TcpConfig {
            max_line_bytes: max_line,
            read_buffer_bytes: buffer,
            ..TcpConfig::default()
        };
        run_with(chunks, &cfg)
    }

    fn run_with(chunks: Vec<Vec<u8>>, cfg: &TcpConfig) -> (Record, Vec<u8>, CloseReason) {
        let rec: &'static std::sync::Mutex<Record> = Box::leak(Box::default());
        let mut stream = Chunks {
            chunks: chunks.into(),
            written: Vec::new(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let reason = rt
            .block_on(serve_lines(
                &mut stream,
                rec,
                cfg,
                &Labels::new("unit", "test"),
                CancellationToken::new(),
            ))
            .unwrap();
        let rec = std::mem::take(&mut *rec.lock().unwrap());
        (rec, stream.written, reason)
    }

    /// The lines a correct server passes (in order) and the number skipped.
    fn model(input: &[u8], max_line: usize) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut skipped = 0;
        for line in input.split_inclusive(|&b| b == b'\n') {
            let content = line.strip_suffix(b"\n").unwrap_or(line);
            if content.len() > max_line {
                skipped += 1;
            } else {
                out.extend_from_slice(line);
            }
        }
        (out, skipped)
    }

    #[test]
    fn a_buffer_its_reads_fill_grows_up_to_the_busy_size() {
        let lengths = |busy: usize| {
            let cfg = TcpConfig {
                max_line_bytes: 100,
                read_buffer_bytes: 8,
                busy_buffer_bytes: busy,
                ..TcpConfig::default()
            };
            let (rec, _, _) = run_with(vec![b"a\n".repeat(40)], &cfg);
            rec.calls.iter().map(Vec::len).collect::<Vec<_>>()
        };
        // Doubled after each read that filled it, up to the busy size.
        assert_eq!(lengths(32), [8, 16, 32, 24]);
        // A busy size below the initial one leaves it as it is.
        assert_eq!(lengths(4), [8; 10]);
    }

    #[test]
    fn a_buffer_no_read_fills_keeps_its_size() {
        let cfg = TcpConfig {
            max_line_bytes: 100,
            read_buffer_bytes: 8,
            busy_buffer_bytes: 64,
            ..TcpConfig::default()
        };
        // Six bytes a read never fill it: the sixteen that follow still
        // take two reads.
        let mut chunks = vec![b"a\nb\nc\n".to_vec(); 3];
        chunks.push(b"d\n".repeat(8));
        let (rec, _, _) = run_with(chunks, &cfg);
        let lengths: Vec<usize> = rec.calls.iter().map(Vec::len).collect();
        assert_eq!(lengths, [6, 6, 6, 8, 8]);
    }

    #[test]
    fn passes_many_lines_per_call() {
        let (rec, _, reason) = run(vec![b"a 1\nb 2\nc 3\n".to_vec()], 100, 64);
        assert_eq!(rec.calls, vec![b"a 1\nb 2\nc 3\n".to_vec()]);
        assert_eq!(reason, CloseReason::Eof);
    }

    #[test]
    fn joins_lines_split_across_reads() {
        let (rec, _, _) = run(
            vec![b"a 1\nb ".to_vec(), b"2".to_vec(), b"\nc 3\n".to_vec()],
            100,
            64,
        );
        assert_eq!(rec.calls, vec![b"a 1\n".to_vec(), b"b 2\nc 3\n".to_vec()]);
    }

    #[test]
    fn passes_final_unterminated_line_at_eof() {
        let (rec, _, _) = run(vec![b"a 1\nb 2".to_vec()], 100, 64);
        assert_eq!(rec.calls, vec![b"a 1\n".to_vec(), b"b 2".to_vec()]);
    }

    #[test]
    fn grows_buffer_for_a_line_longer_than_it_within_the_limit() {
        let line = [b"x".repeat(50), b"\n".to_vec()].concat();
        let (rec, _, _) = run(vec![line.clone()], 50, 8);
        assert_eq!(rec.calls, vec![line]);
        assert_eq!(rec.too_long, 0);
    }

    #[test]
    fn skips_over_long_line_and_keeps_going() {
        let input = [b"ok 1\n".to_vec(), b"y".repeat(40), b"\nok 2\n".to_vec()].concat();
        let (rec, _, _) = run(input.chunks(7).map(<[u8]>::to_vec).collect(), 10, 4);
        assert_eq!(rec.calls.concat(), b"ok 1\nok 2\n");
        assert_eq!(rec.too_long, 1);
    }

    #[test]
    fn line_of_exactly_the_limit_passes() {
        let (rec, _, _) = run(vec![b"0123456789\n01234567890\n".to_vec()], 10, 4);
        assert_eq!(rec.calls.concat(), b"0123456789\n");
        assert_eq!(rec.too_long, 1);
    }

    #[test]
    fn writes_reply_and_closes_on_request() {
        let (rec, written, reason) = run(
            vec![b"bad\n".to_vec(), b"quit\n".to_vec(), b"never\n".to_vec()],
            100,
            64,
        );
        assert_eq!(written, b"error: bad\n");
        assert_eq!(reason, CloseReason::Handler);
        assert_eq!(rec.calls.concat(), b"bad\nquit\n");
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_model_lines(
            input in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), any::<u8>()], 0..300),
            cuts in proptest::collection::vec(1usize..40, 1..20),
            max_line in 1usize..24,
            buffer in 1usize..32,
        ) {
            let mut chunks = Vec::new();
            let mut rest = &input[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (head, tail) = rest.split_at((*cut).min(rest.len()));
                chunks.push(head.to_vec());
                rest = tail;
            }
            let (rec, _, _) = run(chunks, max_line, buffer);
            let (expected, skipped) = model(&input, max_line);
            prop_assert_eq!(rec.calls.concat(), expected);
            prop_assert_eq!(rec.too_long, skipped);
            if let Some((last, rest)) = rec.calls.split_last() {
                for call in rest {
                    prop_assert_eq!(call.last(), Some(&b'\n'));
                }
                prop_assert!(!last.is_empty());
            }
        }
    }
}
