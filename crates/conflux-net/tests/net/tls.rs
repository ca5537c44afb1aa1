//! TLS, allow-lists and the line timeout on a real line server: a client
//! that trusts the CA gets through, one that does not (or lacks a client
//! certificate under mutual TLS) is refused and counted, a reload swaps the
//! certificate for new connections, an address outside the allow-list is
//! closed unread, and a trickling line is cut off.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use conflux_core::telemetry;
use conflux_net::CancellationToken;
use conflux_net::allow::AllowList;
use conflux_net::tcp::{Flow, LineConn, LineHandler, TcpConfig, TcpLineServer};
use conflux_net::tls::{ServerTls, TlsConfig};
use conflux_testkit::pki::Pki;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{counter, eventually, labels, localhost, within};

/// Answers every call with `ok <bytes>\n`.
#[derive(Clone)]
struct Ack;

impl LineConn for Ack {
    async fn lines(&mut self, lines: &[u8], reply: &mut Vec<u8>) -> Flow {
        reply.extend_from_slice(format!("ok {}\n", lines.len()).as_bytes());
        Flow::Continue
    }
}

impl LineHandler for Ack {
    type Conn = Ack;
    fn open(&self, _peer: SocketAddr) -> Ack {
        Ack
    }
}

fn tls_config(pki: &Pki, mutual: bool) -> TlsConfig {
    TlsConfig {
        cert_file: pki.server_cert.clone(),
        key_file: pki.server_key.clone(),
        client_ca_file: mutual.then(|| pki.ca_cert.clone()),
        handshake_timeout_ms: 10_000,
    }
}

async fn serve(
    name: &str,
    cfg: TcpConfig,
    tls: Option<ServerTls>,
    allow: AllowList,
) -> (SocketAddr, CancellationToken) {
    let mut server = TcpLineServer::bind(localhost(), cfg, labels(name))
        .await
        .unwrap();
    server.set_tls(tls);
    server.set_allow(allow);
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    tokio::spawn(server.run(Ack, shutdown.clone()));
    (addr, shutdown)
}

fn connector(ca: &Path, client: Option<(&Path, &Path)>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Send one line over TLS and read the answer; `Err` when the handshake or
/// the exchange fails.
async fn exchange(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
) -> std::io::Result<String> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(b"cpu 1\n").await?;
    let mut buf = [0u8; 64];
    let n = tls.read(&mut buf).await?;
    if n == 0 {
        return Err(std::io::Error::other("closed without an answer"));
    }
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test]
async fn tls_lines_reach_the_handler_and_a_wrong_ca_is_refused() {
    let pki = Pki::new();
    let tls = ServerTls::load(&tls_config(&pki, false)).unwrap();
    let (addr, stop) = serve(
        "tls-basic",
        TcpConfig::default(),
        Some(tls),
        AllowList::default(),
    )
    .await;
    let good = connector(&pki.ca_cert, None);
    assert_eq!(within(exchange(addr, &good)).await.unwrap(), "ok 6\n");
    let wrong = connector(&pki.other_ca_cert, None);
    let err = within(exchange(addr, &wrong)).await.unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    eventually(|| {
        counter(
            telemetry::LISTENER_DENIED,
            "tls-basic",
            &[("reason", "tls_handshake")],
        ) == 1
    })
    .await;
    // Plain text on a TLS port is not a handshake either.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"cpu 1\n").await.unwrap();
    let mut back = Vec::new();
    let _ = within(plain.read_to_end(&mut back)).await;
    assert!(!back.starts_with(b"ok"), "{back:?}");
    eventually(|| {
        counter(
            telemetry::LISTENER_DENIED,
            "tls-basic",
            &[("reason", "tls_handshake")],
        ) == 2
    })
    .await;
    stop.cancel();
}

#[tokio::test]
async fn mutual_tls_needs_a_client_certificate() {
    let pki = Pki::new();
    let tls = ServerTls::load(&tls_config(&pki, true)).unwrap();
    let (addr, stop) = serve(
        "tls-mutual",
        TcpConfig::default(),
        Some(tls),
        AllowList::default(),
    )
    .await;
    let with_cert = connector(&pki.ca_cert, Some((&pki.client_cert, &pki.client_key)));
    assert_eq!(within(exchange(addr, &with_cert)).await.unwrap(), "ok 6\n");
    // TLS 1.3 reports the missing certificate after the client's handshake
    // ends, so the refusal shows on the first read.
    let without = connector(&pki.ca_cert, None);
    assert!(within(exchange(addr, &without)).await.is_err());
    eventually(|| {
        counter(
            telemetry::LISTENER_DENIED,
            "tls-mutual",
            &[("reason", "tls_handshake")],
        ) == 1
    })
    .await;
    stop.cancel();
}

#[tokio::test]
async fn reload_serves_the_new_certificate_and_a_bad_file_keeps_the_old() {
    let first = Pki::new();
    let second = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    std::fs::copy(&first.server_cert, &cert).unwrap();
    std::fs::copy(&first.server_key, &key).unwrap();
    let cfg = TlsConfig {
        cert_file: cert.clone(),
        key_file: key.clone(),
        client_ca_file: None,
        handshake_timeout_ms: 10_000,
    };
    let tls = ServerTls::load(&cfg).unwrap();
    let (addr, stop) = serve(
        "tls-reload",
        TcpConfig::default(),
        Some(tls.clone()),
        AllowList::default(),
    )
    .await;
    let trusts_first = connector(&first.ca_cert, None);
    let trusts_second = connector(&second.ca_cert, None);
    assert!(within(exchange(addr, &trusts_first)).await.is_ok());
    assert!(within(exchange(addr, &trusts_second)).await.is_err());

    std::fs::copy(&second.server_cert, &cert).unwrap();
    std::fs::copy(&second.server_key, &key).unwrap();
    tls.reload().unwrap();
    assert!(within(exchange(addr, &trusts_second)).await.is_ok());
    assert!(within(exchange(addr, &trusts_first)).await.is_err());

    std::fs::write(&cert, "not a certificate").unwrap();
    let err = tls.reload().unwrap_err();
    assert!(err.to_string().contains("tls.cert_file"), "{err}");
    assert!(within(exchange(addr, &trusts_second)).await.is_ok());
    stop.cancel();
}

#[test]
fn config_problems_name_the_file() {
    let pki = Pki::new();
    let mut cfg = tls_config(&pki, false);
    assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
    cfg.key_file = pki.client_key.clone();
    let p = cfg.problems();
    assert!(
        p.len() == 1 && p[0].contains("certificate and key"),
        "{p:?}"
    );
    cfg.key_file = "/nonexistent/key.pem".into();
    let p = cfg.problems();
    assert!(p[0].contains("tls.key_file /nonexistent/key.pem"), "{p:?}");
}

#[tokio::test]
async fn an_address_outside_the_allow_list_is_closed_unread() {
    let only_tens: AllowList = "10.0.0.0/8".parse().unwrap();
    let (addr, stop) = serve("allow-deny", TcpConfig::default(), None, only_tens).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let _ = c.write_all(b"cpu 1\n").await;
    let mut back = Vec::new();
    let _ = within(c.read_to_end(&mut back)).await;
    assert!(back.is_empty(), "{back:?}");
    eventually(|| {
        counter(
            telemetry::LISTENER_DENIED,
            "allow-deny",
            &[("reason", "not_allowed")],
        ) == 1
    })
    .await;
    stop.cancel();

    let loopback: AllowList = "127.0.0.0/8".parse().unwrap();
    let (addr, stop) = serve("allow-ok", TcpConfig::default(), None, loopback).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"cpu 1\n").await.unwrap();
    let mut buf = [0u8; 16];
    let n = within(c.read(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"ok 6\n");
    stop.cancel();
}

#[tokio::test]
async fn a_trickling_line_is_cut_off_by_the_line_timeout() {
    let cfg = TcpConfig {
        line_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(60),
        ..TcpConfig::default()
    };
    let (addr, stop) = serve("line-timeout", cfg, None, AllowList::default()).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    // One byte every 50 ms never lets the idle timeout fire, and the line
    // never ends: only the line timeout can close it. Bounded: 400 bytes.
    let mut closed = false;
    for _ in 0..400 {
        if c.write_all(b"x").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 8];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(50), c.read(&mut buf)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "the server kept a never-ending line open");
    assert_eq!(
        counter(
            telemetry::LISTENER_TIMEOUTS,
            "line-timeout",
            &[("reason", "line")]
        ),
        1
    );
    // Complete lines, even slow ones, keep the connection.
    let mut c = TcpStream::connect(addr).await.unwrap();
    for _ in 0..5 {
        c.write_all(b"a 1\n").await.unwrap();
        let mut buf = [0u8; 8];
        let n = within(c.read(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"ok 4\n");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.cancel();
}
