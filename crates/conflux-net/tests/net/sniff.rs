//! One port, two protocols: the first byte decides (OpenTSDB's rule: an
//! uppercase ASCII letter means HTTP), the byte is pushed back with
//! `Prefixed`, and the stream goes to the HTTP service or the line loop.

use std::time::Duration;

use conflux_net::CancellationToken;
use conflux_net::conn::{Acceptor, Prefixed};
use conflux_net::http::{HttpConfig, HttpService, Router, handler_fn, text};
use conflux_net::tcp::{Flow, LineConn, TcpConfig, serve_lines};
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{labels, localhost, within};

struct Echo;

impl LineConn for Echo {
    async fn lines(&mut self, lines: &[u8], reply: &mut Vec<u8>) -> Flow {
        reply.extend_from_slice(b"got ");
        reply.extend_from_slice(lines);
        Flow::Continue
    }
}

#[tokio::test]
async fn first_byte_chooses_http_or_lines() {
    let labels = labels("sniff");
    let acceptor = Acceptor::bind(localhost(), 16, labels.clone())
        .await
        .unwrap();
    let addr = acceptor.local_addr();
    let mut router = Router::new();
    router
        .route(
            "/api/version",
            &[Method::GET],
            "sniff",
            handler_fn(|_req| async { text(StatusCode::OK, "2.4.0") }),
        )
        .unwrap();
    let http = HttpService::new(router, HttpConfig::default(), labels.clone());
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let run = tokio::spawn(acceptor.run(shutdown.clone(), move |mut stream, _peer| {
        let http = http.clone();
        let labels = labels.clone();
        let shutdown = token.clone();
        async move {
            let mut first = [0u8; 1];
            let Ok(Ok(1)) =
                tokio::time::timeout(Duration::from_secs(10), stream.read(&mut first)).await
            else {
                return;
            };
            let stream = Prefixed::new(first.to_vec(), stream);
            if first[0].is_ascii_uppercase() {
                http.serve_connection(stream, shutdown).await;
            } else {
                let _ = serve_lines(stream, Echo, &TcpConfig::default(), &labels, shutdown).await;
            }
        }
    }));

    let mut telnet = TcpStream::connect(addr).await.unwrap();
    telnet.write_all(b"put sys.cpu 1 2 host=a\n").await.unwrap();
    telnet.shutdown().await.unwrap();
    let mut back = Vec::new();
    within(telnet.read_to_end(&mut back)).await.unwrap();
    assert_eq!(back, b"got put sys.cpu 1 2 host=a\n");

    let mut web = TcpStream::connect(addr).await.unwrap();
    web.write_all(b"GET /api/version HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut back = Vec::new();
    within(web.read_to_end(&mut back)).await.unwrap();
    let back = String::from_utf8(back).unwrap();
    assert!(back.starts_with("HTTP/1.1 200 OK\r\n"), "{back}");
    assert!(back.ends_with("\r\n\r\n2.4.0"), "{back}");

    shutdown.cancel();
    within(run).await.unwrap();
}
