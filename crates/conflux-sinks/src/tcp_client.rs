//! The TCP sender the line-protocol sinks share (`graphite` plaintext,
//! `opentsdb` telnet `put`): one persistent connection per URL
//! (`tcp://host:port`), opened lazily on the first send, with `TCP_NODELAY`.
//!
//! How it behaves:
//! - The connect and each whole-batch write are bounded by the sink's
//!   `timeout_ms`.
//! - Before writing on a reused connection it reads, without blocking, what
//!   the peer sent: an end of stream (the server closed an idle connection,
//!   or restarted) or an error means the connection is gone, and a new one is
//!   opened first. What the peer wrote (OpenTSDB's `put: …` error lines) is
//!   handed to the caller.
//! - Any I/O error drops the connection and returns
//!   [`SinkError::Retryable`]: the runner backs off and the next attempt
//!   connects again. That is the whole reconnect policy: reconnect with the
//!   runner's backoff.
//! - A batch is written whole with `write_all`; a retry resends the whole
//!   batch, so delivery is at least once. Neither protocol acknowledges
//!   anything: a batch written into the kernel's buffer just before the peer
//!   closes (after the check above) is lost without an error. The targets
//!   store a point again under the same series and timestamp by overwriting
//!   it, so a resent batch does not double anything.
//! - [`TcpSender::close`](crate::tcp_client::TcpSender::close) flushes, half-closes (FIN) and reads until the
//!   server closes its side (at most the timeout), so the server has read
//!   everything once it returns.

use std::time::Duration;

use http::Uri;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::runner::SinkError;

/// The most bytes read from the peer in one [`TcpSender::drain`]: a server
/// that floods us with answers cannot hold the sender in a loop.
const MAX_DRAIN_BYTES: usize = 1024 * 1024;

/// Check a `tcp://host:port` URL; returns `host:port` to connect to.
///
/// # Errors
/// Why the URL cannot be used, for the config check.
pub fn parse_url(url: &str) -> Result<String, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`url` = {url:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("tcp") {
        return Err(format!("`url` = {url:?} must start with tcp://"));
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("`url` = {url:?} has no host"));
    };
    if authority.host().is_empty() {
        return Err(format!("`url` = {url:?} has no host"));
    }
    if authority.as_str().contains('@') {
        return Err(format!("`url` = {url:?} must not hold credentials"));
    }
    if authority.port_u16().is_none_or(|p| p == 0) {
        return Err(format!("`url` = {url:?} needs a port (tcp://host:port)"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`url` = {url:?} must be tcp://host:port, without a path or query"
        ));
    }
    Ok(authority.as_str().to_owned())
}

/// One persistent TCP connection to `host:port` (see the module docs).
#[derive(Debug)]
pub struct TcpSender {
    addr: String,
    timeout: Duration,
    stream: Option<TcpStream>,
    /// Connections opened so far (the first included).
    connects: u64,
}

impl TcpSender {
    /// A sender to `addr` (`host:port`, as [`parse_url`] returns it); nothing
    /// is connected until the first send.
    pub fn new(addr: String, timeout: Duration) -> TcpSender {
        TcpSender {
            addr,
            timeout,
            stream: None,
            connects: 0,
        }
    }

    /// The `host:port` it connects to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// How many connections were opened so far.
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// Whether a connection is open.
    pub fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    /// Read, without blocking, what the peer wrote on the open connection and
    /// pass it to `answer` chunk by chunk. Drops the connection when the peer
    /// closed it or it failed. Nothing to do without a connection.
    pub fn drain(&mut self, answer: &mut impl FnMut(&[u8])) {
        let Some(stream) = &self.stream else {
            return;
        };
        let mut buf = [0u8; 8192];
        let mut total = 0;
        let alive = loop {
            match stream.try_read(&mut buf) {
                // End of stream: the peer closed (idle timeout, restart).
                Ok(0) => break false,
                Ok(n) => {
                    answer(&buf[..n]);
                    total += n;
                    if total >= MAX_DRAIN_BYTES {
                        break true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(addr = %self.addr, error = %e, "connection failed while idle");
                    break false;
                }
            }
        };
        if !alive {
            tracing::debug!(addr = %self.addr, "peer closed the connection; reconnecting");
            self.stream = None;
        }
    }

    /// Write `bytes` whole: drain first (see [`TcpSender::drain`]), connect
    /// when needed, then write and flush within the timeout.
    ///
    /// # Errors
    /// [`SinkError::Retryable`] on a connect or write error or timeout; the
    /// connection is dropped and the next call opens a new one.
    pub async fn send(
        &mut self,
        bytes: &[u8],
        answer: &mut impl FnMut(&[u8]),
    ) -> Result<(), SinkError> {
        self.drain(answer);
        if self.stream.is_none() {
            self.stream = Some(self.connect().await?);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(SinkError::retry("not connected"));
        };
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        let outcome = match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write to {}: {e}", self.addr)),
            Err(_) => Err(format!(
                "write to {}: not done within {} ms",
                self.addr,
                self.timeout.as_millis()
            )),
        };
        outcome.map_err(|message| {
            // Part of the batch may be written: the retry sends it whole again.
            self.stream = None;
            SinkError::retry(message)
        })
    }

    async fn connect(&mut self) -> Result<TcpStream, SinkError> {
        let stream = match tokio::time::timeout(self.timeout, TcpStream::connect(&self.addr)).await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(SinkError::retry(format!("connect to {}: {e}", self.addr))),
            Err(_) => {
                return Err(SinkError::retry(format!(
                    "connect to {}: no connection within {} ms",
                    self.addr,
                    self.timeout.as_millis()
                )));
            }
        };
        // Batches are written whole; Nagle would only delay the tail.
        stream
            .set_nodelay(true)
            .map_err(|e| SinkError::retry(format!("set TCP_NODELAY on {}: {e}", self.addr)))?;
        self.connects += 1;
        tracing::debug!(addr = %self.addr, "connected");
        Ok(stream)
    }

    /// Flush, half-close, and read what the peer still sends until it closes
    /// its side or the timeout passes (passed to `answer`); then drop the
    /// connection.
    ///
    /// # Errors
    /// [`SinkError::Retryable`] when the flush or the half-close failed: what
    /// was written last may not have arrived.
    pub async fn close(&mut self, answer: &mut impl FnMut(&[u8])) -> Result<(), SinkError> {
        let Some(mut stream) = self.stream.take() else {
            return Ok(());
        };
        let addr = &self.addr;
        let finish = async {
            stream.flush().await?;
            stream.shutdown().await?;
            let mut buf = [0u8; 8192];
            let mut total = 0;
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 || total >= MAX_DRAIN_BYTES {
                    return Ok::<(), std::io::Error>(());
                }
                total += n;
                answer(&buf[..n]);
            }
        };
        match tokio::time::timeout(self.timeout, finish).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SinkError::retry(format!("close connection to {addr}: {e}"))),
            Err(_) => {
                // Written and half-closed; the server just did not close its side.
                tracing::debug!(%addr, "peer kept the connection open after our close");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(parse_url("tcp://127.0.0.1:2003").unwrap(), "127.0.0.1:2003");
        assert_eq!(parse_url("tcp://carbon:2003/").unwrap(), "carbon:2003");
        assert_eq!(parse_url("tcp://[::1]:4242").unwrap(), "[::1]:4242");
        let err = |u: &str| parse_url(u).unwrap_err();
        assert!(err("http://carbon:2003").contains("must start with tcp://"));
        assert!(err("carbon:2003").contains("must start with tcp://"));
        assert!(err("tcp://carbon").contains("needs a port"));
        assert!(err("tcp://carbon:0").contains("needs a port"));
        assert!(err("tcp://carbon:2003/x").contains("without a path"));
        assert!(err("tcp://carbon:2003?a=b").contains("without a path"));
        assert!(err("tcp://u:p@carbon:2003").contains("credentials"));
        assert!(err("not a url").contains("not a URL"));
    }

    #[tokio::test]
    async fn reconnects_when_the_peer_closed_an_idle_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut s = TcpSender::new(addr, Duration::from_secs(5));
        let mut answers = Vec::new();
        let mut answer = |b: &[u8]| answers.extend_from_slice(b);
        s.send(b"one\n", &mut answer).await.unwrap();
        let (mut c1, _) = listener.accept().await.unwrap();
        let mut got = [0u8; 4];
        c1.read_exact(&mut got).await.unwrap();
        c1.write_all(b"put: bad\n").await.unwrap();
        drop(c1);
        // The check `send` runs first: it sees the answer, then the end of stream.
        for _ in 0..1000 {
            s.drain(&mut answer);
            if !s.is_connected() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!s.is_connected(), "the closed connection was noticed");
        s.send(b"two\n", &mut answer).await.unwrap();
        assert_eq!(s.connects(), 2);
        let second = tokio::spawn(async move {
            let (mut c2, _) = listener.accept().await.unwrap();
            let mut rest = String::new();
            c2.read_to_string(&mut rest).await.unwrap();
            rest
        });
        // Returns once the server read everything and closed its side.
        s.close(&mut answer).await.unwrap();
        assert_eq!(second.await.unwrap(), "two\n");
        assert_eq!(answers, b"put: bad\n");
        assert!(!s.is_connected());
    }

    #[tokio::test]
    async fn a_refused_connection_is_retryable() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().to_string()
        };
        let mut s = TcpSender::new(addr.clone(), Duration::from_secs(5));
        let err = s.send(b"x\n", &mut |_| {}).await.unwrap_err();
        assert!(matches!(err, SinkError::Retryable { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with(&format!("connect to {addr}: ")),
            "{err}"
        );
        assert!(!s.is_connected());
    }
}
