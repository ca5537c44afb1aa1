//! TLS for every TCP-based listener (HTTP, line streams, pickle), on rustls:
//! [`TlsConfig`] is the `tls` table of a listener, [`ServerTls`] the loaded
//! certificate with its handshake (re-read by [`ServerTls::reload`] on
//! SIGHUP), and [`Stream`] what a connection handler reads, plain or TLS.
//!
//! The handshake runs on the connection's own task, bounded by
//! `handshake_timeout_ms`, so a client that opens a socket and sends nothing
//! holds one connection slot for that long and never the accept loop.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// `[listeners.NAME.tls]`: serve TLS with this certificate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's own certificate first.
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates that sign client certificates: when set, every
    /// client must present one (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// Time a client has to complete the handshake.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

fn default_handshake_timeout_ms() -> u64 {
    10_000
}

impl TlsConfig {
    /// Every problem with the values and the files they name (each file is
    /// read and parsed, as [`ServerTls::load`] would).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.handshake_timeout_ms == 0 {
            p.push("`tls.handshake_timeout_ms` must be at least 1".to_owned());
        }
        if let Err(e) = server_config(self) {
            p.push(format!("`tls`: {e}"));
        }
        p
    }
}

/// Why a certificate, key or CA file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds nothing usable.
    #[error("{key} {path}: {reason}")]
    File {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the combination (a key that does not match the certificate).
    #[error("{0}")]
    Config(String),
}

/// A listener's loaded TLS configuration. Cheap to clone; every clone sees
/// a [`ServerTls::reload`].
#[derive(Clone)]
pub struct ServerTls {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: TlsConfig,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_file", &self.inner.cfg.cert_file)
            .field("client_ca_file", &self.inner.cfg.client_ca_file)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Read the certificate, key and client CA files.
    ///
    /// # Errors
    /// A file that cannot be read or parsed, or a key that does not fit.
    pub fn load(cfg: &TlsConfig) -> Result<ServerTls, TlsError> {
        let current = server_config(cfg)?;
        Ok(ServerTls {
            inner: Arc::new(Inner {
                cfg: cfg.clone(),
                current: RwLock::new(Arc::new(current)),
            }),
        })
    }

    /// Read the files again (a renewed certificate). New connections use the
    /// new one; open connections keep theirs. On error the old one stays.
    ///
    /// # Errors
    /// As [`ServerTls::load`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(server_config(&self.inner.cfg)?);
        match self.inner.current.write() {
            Ok(mut current) => *current = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    /// The certificate file, for logs.
    pub fn cert_file(&self) -> &Path {
        &self.inner.cfg.cert_file
    }

    /// The time a client has to complete the handshake.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.inner.cfg.handshake_timeout_ms)
    }

    fn current(&self) -> Arc<rustls::ServerConfig> {
        match self.inner.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Run the server side of the handshake on `tcp` (no timeout here; the
    /// accept loop bounds it).
    ///
    /// # Errors
    /// The handshake failed: not TLS, no or a wrong client certificate, a
    /// reset.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Stream> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.current());
        let tls = acceptor.accept(tcp).await?;
        Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls))))
    }
}

fn server_config(cfg: &TlsConfig) -> Result<rustls::ServerConfig, TlsError> {
    let chain = read_certs("tls.cert_file", &cfg.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file).map_err(|e| TlsError::File {
        key: "tls.key_file",
        path: cfg.key_file.clone(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &cfg.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs("tls.client_ca_file", path)? {
                roots.add(cert).map_err(|e| TlsError::File {
                    key: "tls.client_ca_file",
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("certificate and key: {e}")))?;
    // HTTP/1.1 only (the server speaks nothing else); line protocols ignore ALPN.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::File {
        key,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".to_owned()));
    }
    Ok(certs)
}

/// A TCP connection, plain or TLS (server side, as listeners accept it, or
/// client side, as the TCP sinks open it). The TLS side is boxed so that the
/// plain one stays small.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, handshake done.
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Read what already arrived, without waiting: `WouldBlock` when nothing
    /// did (a sender checking whether its peer closed or answered).
    ///
    /// # Errors
    /// The socket's error, or `WouldBlock`.
    pub fn try_read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.try_read(buf),
            Stream::Tls(s) => {
                // One poll with a waker that does nothing: the TLS stream
                // reads the socket until it would block and decrypts what
                // came; `Pending` means no plaintext (yet). The next real poll
                // (a write, close) registers its own waker.
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut read = ReadBuf::new(buf);
                match Pin::new(s.as_mut()).poll_read(&mut cx, &mut read) {
                    Poll::Ready(Ok(())) => Ok(read.filled().len()),
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}
