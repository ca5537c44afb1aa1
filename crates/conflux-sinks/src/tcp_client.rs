//! The TCP sender the line-protocol sinks share (`graphite` plaintext,
//! `opentsdb` telnet `put`): one persistent connection per URL
//! (`tcp://host:port`, or `tls://host:port` for TLS over it), opened lazily
//! on the first send, with `TCP_NODELAY`.
//!
//! How it behaves:
//! - The connect (with the TLS handshake) and each whole-batch write are
//!   bounded by the sink's `timeout_ms`.
//! - Before writing on a reused connection it reads, without blocking, what
//!   the peer sent: an end of stream (the server closed an idle connection,
//!   or restarted) or an error means the connection is gone, and a new one is
//!   opened first. What the peer wrote (OpenTSDB's `put: …` error lines) is
//!   handed to the caller. Over TLS the same check polls the TLS stream once
//!   (decrypting what arrived) instead of reading the socket.
//! - Any I/O error drops the connection and returns
//!   [`SinkError::Retryable`]: the runner backs off and the next attempt
//!   connects again. That is the whole reconnect policy: reconnect with the
//!   runner's backoff. A failed TLS handshake (unknown CA, a certificate for
//!   another name, a client certificate refused) is retried the same way,
//!   with rustls' reason in the message.
//! - A batch is written whole with `write_all`; a retry resends the whole
//!   batch, so delivery is at least once. Neither protocol acknowledges
//!   anything: a batch written into the kernel's buffer just before the peer
//!   closes (after the check above) is lost without an error. The targets
//!   store a point again under the same series and timestamp by overwriting
//!   it, so a resent batch does not double anything.
//! - [`TcpSender::close`](crate::tcp_client::TcpSender::close) flushes,
//!   half-closes (FIN; over TLS a `close_notify` first) and reads until the
//!   server closes its side (at most the timeout), so the server has read
//!   everything once it returns.
//!
//! # TLS
//!
//! `tls://` uses the sink's `tls_*` keys through the rustls client
//! configuration the HTTP sinks use
//! ([`TlsConfig::client_config`](crate::http_client::TlsConfig::client_config)); the
//! server's certificate must name `tls_server_name`, or else the URL's host.
//!
//! In TLS 1.3 the client finishes its handshake before the server has checked
//! the client's certificate: a server that refuses it (or wanted one and got
//! none) says so with an alert after the handshake, and a batch written at
//! once would be lost in between. So when the server asked for a client
//! certificate, the connect waits (within the timeout) for the server's next
//! message: a session ticket, which servers send once they accepted the
//! client (rustls, OpenSSL and Go do by default), or data, confirm it; an
//! alert fails the connect. A server that sends neither is taken as accepting
//! once the timeout has passed. A server that asks for no certificate
//! (carbon-c-relay) costs no wait.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use http::Uri;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;
use rustls::{ProtocolVersion, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use conflux_net::tls::Stream;

use crate::http_client::TlsConfig;
use crate::runner::SinkError;

/// The most bytes read from the peer in one [`TcpSender::drain`]: a server
/// that floods us with answers cannot hold the sender in a loop.
const MAX_DRAIN_BYTES: usize = 1024 * 1024;

/// A checked `tcp://` or `tls://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` to connect to.
    pub addr: String,
    /// The host alone (an IPv6 address without brackets): the name the
    /// server's certificate must carry when `tls_server_name` is unset.
    pub host: String,
    /// `tls://`: TLS over the TCP connection.
    pub tls: bool,
}

/// Check a `tcp://host:port` or `tls://host:port` URL.
///
/// # Errors
/// Why the URL cannot be used, for the config check.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`url` = {url:?} is not a URL: {e}"))?;
    let (scheme, tls) = match uri.scheme_str() {
        Some("tcp") => ("tcp", false),
        Some("tls") => ("tls", true),
        _ => return Err(format!("`url` = {url:?} must start with tcp:// or tls://")),
    };
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
        return Err(format!(
            "`url` = {url:?} needs a port ({scheme}://host:port)"
        ));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`url` = {url:?} must be {scheme}://host:port, without a path or query"
        ));
    }
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Ok(Target {
        addr: authority.as_str().to_owned(),
        host: host.to_owned(),
        tls,
    })
}

/// Wraps a resolver to note that the server asked for a client certificate
/// (with or without one to give): see the module docs, TLS.
#[derive(Debug)]
struct NoteRequest {
    inner: Arc<dyn ResolvesClientCert>,
    asked: Arc<AtomicBool>,
}

impl ResolvesClientCert for NoteRequest {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.inner.resolve(root_hint_subjects, sigschemes)
    }

    fn only_raw_public_keys(&self) -> bool {
        self.inner.only_raw_public_keys()
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

/// The TLS side of a `tls://` sender.
struct TlsClient {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    /// Whether the server asked for a client certificate in the last
    /// handshake (reset before each).
    asked: Arc<AtomicBool>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    fn new(tls: &TlsConfig, host: &str) -> Result<TlsClient, String> {
        let server_name = match tls.server_name()? {
            Some(name) => name,
            None => ServerName::try_from(host.to_owned()).map_err(|e| {
                format!("host {host:?} is no TLS server name ({e}): set `tls_server_name`")
            })?,
        };
        let mut config = tls.client_config()?;
        let asked = Arc::new(AtomicBool::new(false));
        config.client_auth_cert_resolver = Arc::new(NoteRequest {
            inner: config.client_auth_cert_resolver.clone(),
            asked: asked.clone(),
        });
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            asked,
        })
    }

    /// The handshake over `tcp`, and the server's verdict on our client
    /// certificate when it asked for one (module docs, TLS); done by
    /// `deadline`. What the server wrote meanwhile goes to `answer`.
    async fn handshake(
        &self,
        tcp: TcpStream,
        addr: &str,
        deadline: Instant,
        answer: &mut impl FnMut(&[u8]),
    ) -> Result<TlsStream<TcpStream>, String> {
        let fail = |e: &dyn fmt::Display| {
            format!(
                "TLS handshake with {addr} (server name {}): {e}",
                self.server_name.to_str()
            )
        };
        self.asked.store(false, Ordering::Relaxed);
        let connect = self.connector.connect(self.server_name.clone(), tcp);
        let mut stream = match tokio::time::timeout_at(deadline, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(fail(&e)),
            Err(_) => return Err(fail(&"not done within `timeout_ms`")),
        };
        let tls13 = stream.get_ref().1.protocol_version() == Some(ProtocolVersion::TLSv1_3);
        if tls13 && self.asked.load(Ordering::Relaxed) {
            match tokio::time::timeout_at(deadline, verdict(&mut stream, answer)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(fail(&e)),
                Err(_) => tracing::debug!(
                    %addr,
                    "the server asked for a client certificate and sent nothing after the \
                     handshake; taking it as accepted"
                ),
            }
        }
        Ok(stream)
    }
}

/// Wait for the server's first message after a TLS 1.3 handshake: a session
/// ticket or data means it accepted us, an alert (an error here) or the end
/// of the stream that it did not.
async fn verdict(
    stream: &mut TlsStream<TcpStream>,
    answer: &mut impl FnMut(&[u8]),
) -> io::Result<()> {
    let mut buf = [0u8; 8192];
    std::future::poll_fn(|cx| {
        let mut read = ReadBuf::new(&mut buf);
        let poll = Pin::new(&mut *stream).poll_read(cx, &mut read);
        match poll {
            Poll::Ready(Ok(())) if read.filled().is_empty() => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection after the handshake",
            ))),
            Poll::Ready(Ok(())) => {
                answer(read.filled());
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // Tickets carry no data: the read consumed them and waits on.
            Poll::Pending if stream.get_ref().1.tls13_tickets_received() > 0 => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// One persistent connection to `host:port`, plain or TLS (see the module
/// docs).
#[derive(Debug)]
pub struct TcpSender {
    addr: String,
    timeout: Duration,
    tls: Option<TlsClient>,
    stream: Option<Stream>,
    /// Connections opened so far (the first included).
    connects: u64,
}

impl TcpSender {
    /// A plain TCP sender to `addr` (`host:port`); nothing is connected until
    /// the first send.
    pub fn new(addr: String, timeout: Duration) -> TcpSender {
        TcpSender {
            addr,
            timeout,
            tls: None,
            stream: None,
            connects: 0,
        }
    }

    /// A sender to a URL [`parse_url`] checked: plain for `tcp://`, TLS with
    /// the sink's `tls` settings for `tls://` (their files are read now).
    ///
    /// # Errors
    /// A TLS file that cannot be read or parsed, a host or `tls_server_name`
    /// that is no TLS server name.
    pub fn build(target: &Target, timeout: Duration, tls: &TlsConfig) -> Result<TcpSender, String> {
        let mut sender = TcpSender::new(target.addr.clone(), timeout);
        if target.tls {
            sender.tls = Some(TlsClient::new(tls, &target.host)?);
        }
        Ok(sender)
    }

    /// The `host:port` it connects to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether it speaks TLS (`tls://`).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
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
        let Some(stream) = &mut self.stream else {
            return;
        };
        let mut buf = [0u8; 8192];
        let mut total = 0;
        let alive = loop {
            match stream.try_read_now(&mut buf) {
                // End of stream: the peer closed (idle timeout, restart).
                Ok(0) => break false,
                Ok(n) => {
                    answer(&buf[..n]);
                    total += n;
                    if total >= MAX_DRAIN_BYTES {
                        break true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Over TLS also a TCP close without `close_notify`.
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
    /// [`SinkError::Retryable`] on a connect, handshake or write error or
    /// timeout; the connection is dropped and the next call opens a new one.
    pub async fn send(
        &mut self,
        bytes: &[u8],
        answer: &mut impl FnMut(&[u8]),
    ) -> Result<(), SinkError> {
        self.drain(answer);
        if self.stream.is_none() {
            self.stream = Some(self.connect(answer).await?);
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

    async fn connect(&mut self, answer: &mut impl FnMut(&[u8])) -> Result<Stream, SinkError> {
        let deadline = Instant::now() + self.timeout;
        let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(&self.addr)).await {
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
        let conn = match &self.tls {
            None => Stream::Plain(stream),
            Some(tls) => Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(
                tls.handshake(stream, &self.addr, deadline, answer)
                    .await
                    .map_err(SinkError::retry)?,
            ))),
        };
        self.connects += 1;
        tracing::debug!(addr = %self.addr, tls = self.tls.is_some(), "connected");
        Ok(conn)
    }

    /// Flush, half-close (over TLS after a `close_notify`), and read what the
    /// peer still sends until it closes its side or the timeout passes
    /// (passed to `answer`); then drop the connection.
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
                let n = match stream.read(&mut buf).await {
                    Ok(n) => n,
                    // A TLS peer that closes without `close_notify`
                    // (carbon-c-relay does): it has read all we sent, and
                    // only its answers could be cut short.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                    Err(e) => return Err(e),
                };
                if n == 0 || total >= MAX_DRAIN_BYTES {
                    return Ok::<(), io::Error>(());
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

    /// Drain until the sender notices the server closed (bounded: 5 s).
    async fn wait_disconnected(s: &mut TcpSender, answer: &mut impl FnMut(&[u8])) {
        for _ in 0..1000 {
            s.drain(answer);
            if !s.is_connected() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!s.is_connected(), "the closed connection was noticed");
    }

    fn target(addr: &str, host: &str, tls: bool) -> Target {
        Target {
            addr: addr.to_owned(),
            host: host.to_owned(),
            tls,
        }
    }

    #[test]
    fn urls_are_checked() {
        let ok = |u: &str| parse_url(u).unwrap();
        assert_eq!(
            ok("tcp://127.0.0.1:2003"),
            target("127.0.0.1:2003", "127.0.0.1", false)
        );
        assert_eq!(
            ok("tcp://carbon:2003/"),
            target("carbon:2003", "carbon", false)
        );
        assert_eq!(ok("tcp://[::1]:4242"), target("[::1]:4242", "::1", false));
        assert_eq!(
            ok("tls://carbon:2004"),
            target("carbon:2004", "carbon", true)
        );
        assert_eq!(ok("tls://[::1]:2004/"), target("[::1]:2004", "::1", true));
        let err = |u: &str| parse_url(u).unwrap_err();
        assert!(err("http://carbon:2003").contains("must start with tcp:// or tls://"));
        assert!(err("carbon:2003").contains("must start with tcp:// or tls://"));
        assert!(err("tls://carbon").contains("needs a port (tls://host:port)"));
        assert!(err("tls://carbon:2004/x").contains("must be tls://host:port, without a path"));
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
        wait_disconnected(&mut s, &mut answer).await;
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

    // ---- TLS, against a rustls server with the test PKI ----

    use conflux_testkit::pki::Pki;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::TlsAcceptor;

    /// A TLS listener on a free port with the PKI's server certificate;
    /// `client_auth`: clients must show a certificate the PKI's CA signed.
    async fn tls_listener(pki: &Pki, client_auth: bool) -> (TcpListener, TlsAcceptor) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.server_cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_file(&pki.ca_cert).unwrap())
                .unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder.with_single_cert(chain, key).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        (listener, TlsAcceptor::from(Arc::new(config)))
    }

    fn tls_sender(listener: &TcpListener, tls: TlsConfig) -> TcpSender {
        let port = listener.local_addr().unwrap().port();
        let target = parse_url(&format!("tls://localhost:{port}")).unwrap();
        // `localhost` may resolve to ::1 first: connect by the listener's address.
        let target = Target {
            addr: format!("127.0.0.1:{port}"),
            ..target
        };
        TcpSender::build(&target, Duration::from_secs(5), &tls).unwrap()
    }

    fn trusting(pki: &Pki) -> TlsConfig {
        TlsConfig {
            ca_file: Some(pki.ca_cert.clone()),
            ..TlsConfig::default()
        }
    }

    #[tokio::test]
    async fn over_tls_notices_a_closed_connection_and_closes_with_close_notify() {
        let pki = Pki::new();
        let (listener, acceptor) = tls_listener(&pki, false).await;
        let mut s = tls_sender(&listener, trusting(&pki));
        assert!(s.is_tls());
        let (got_tx, mut got_rx) = tokio::sync::mpsc::channel(1);
        let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut c1 = acceptor.accept(tcp).await.unwrap();
            let mut got = [0u8; 4];
            c1.read_exact(&mut got).await.unwrap();
            got_tx.send(got).await.unwrap();
            close_rx.await.unwrap();
            c1.write_all(b"put: bad\n").await.unwrap();
            c1.shutdown().await.unwrap();
            drop(c1);
            let (tcp, _) = listener.accept().await.unwrap();
            let mut c2 = acceptor.accept(tcp).await.unwrap();
            let mut rest = String::new();
            // Ends at our close_notify (a TCP end without it is an error).
            c2.read_to_string(&mut rest).await.unwrap();
            // Then closes without a close_notify of its own, as carbon-c-relay does.
            rest
        });
        let mut answers = Vec::new();
        let mut answer = |b: &[u8]| answers.extend_from_slice(b);
        s.send(b"one\n", &mut answer).await.unwrap();
        assert_eq!(&got_rx.recv().await.unwrap(), b"one\n");
        // Nothing to read: the check returns at once and keeps the connection.
        s.drain(&mut answer);
        assert!(s.is_connected());
        close_tx.send(()).unwrap();
        wait_disconnected(&mut s, &mut answer).await;
        s.send(b"two\n", &mut answer).await.unwrap();
        assert_eq!(s.connects(), 2);
        // Returns once the server read everything and closed its side.
        s.close(&mut answer).await.unwrap();
        assert_eq!(server.await.unwrap(), "two\n");
        assert_eq!(answers, b"put: bad\n");
        assert!(!s.is_connected());
    }

    fn retry_message(r: Result<(), SinkError>) -> String {
        match r {
            Err(SinkError::Retryable { message, .. }) => message,
            other => panic!("expected a retryable error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn handshake_failures_are_retryable_and_name_the_cause() {
        let pki = Pki::new();
        let (listener, acceptor) = tls_listener(&pki, false).await;
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            // Each handshake fails on the client's side.
            for _ in 0..2 {
                let (tcp, _) = listener.accept().await.unwrap();
                assert!(acceptor.accept(tcp).await.is_err());
            }
        });
        let other_ca = TlsConfig {
            ca_file: Some(pki.other_ca_cert.clone()),
            ..TlsConfig::default()
        };
        let mut s = TcpSender::build(
            &parse_url(&format!("tls://127.0.0.1:{port}")).unwrap(),
            Duration::from_secs(5),
            &other_ca,
        )
        .unwrap();
        let m = retry_message(s.send(b"x\n", &mut |_| {}).await);
        assert!(
            m.starts_with(&format!(
                "TLS handshake with 127.0.0.1:{port} (server name 127.0.0.1): "
            )),
            "{m}"
        );
        assert!(m.contains("UnknownIssuer"), "{m}");
        assert!(!s.is_connected());
        let wrong_name = TlsConfig {
            server_name: Some("example.org".into()),
            ..trusting(&pki)
        };
        let mut s = TcpSender::build(
            &parse_url(&format!("tls://127.0.0.1:{port}")).unwrap(),
            Duration::from_secs(5),
            &wrong_name,
        )
        .unwrap();
        let m = retry_message(s.send(b"x\n", &mut |_| {}).await);
        assert!(m.contains("certificate not valid for name"), "{m}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn mutual_tls_waits_for_the_servers_verdict_on_the_client_certificate() {
        let pki = Pki::new();
        let (listener, acceptor) = tls_listener(&pki, true).await;
        let with_cert = TlsConfig {
            cert_file: Some(pki.client_cert.clone()),
            key_file: Some(pki.client_key.clone()),
            ..trusting(&pki)
        };
        let mut good = tls_sender(&listener, with_cert);
        let mut bad = tls_sender(&listener, trusting(&pki));
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut c = acceptor.accept(tcp).await.unwrap();
            let mut all = String::new();
            c.read_to_string(&mut all).await.unwrap();
            drop(c);
            // The second client shows no certificate: refused.
            let (tcp, _) = listener.accept().await.unwrap();
            let refused = acceptor.accept(tcp).await.unwrap_err();
            (all, refused.to_string())
        });
        good.send(b"a 1 1\n", &mut |_| {}).await.unwrap();
        good.close(&mut |_| {}).await.unwrap();
        // TLS 1.3: the client's handshake ends before the server has looked
        // at the certificate; the connect waits for the verdict, so the
        // refusal fails this send instead of losing its batch.
        let m = retry_message(bad.send(b"b 1 1\n", &mut |_| {}).await);
        assert!(m.contains("CertificateRequired"), "{m}");
        assert!(!bad.is_connected());
        let (all, refused) = server.await.unwrap();
        assert_eq!(all, "a 1 1\n");
        assert!(refused.contains("certificate"), "{refused}");
    }
}
