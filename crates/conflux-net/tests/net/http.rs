use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use conflux_core::telemetry as t;
use conflux_net::CancellationToken;
use conflux_net::http::{HttpConfig, HttpServer, Router, empty, handler_fn, read_body, text};
use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use http::{Method, StatusCode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::common::{counter, eventually, labels, localhost, within};

const LIMIT: usize = 64 * 1024;

/// `/ping` (GET, HEAD) → 204; `/write` (POST) → 200 echoing the decoded body;
/// `/early` (POST) → 202 without reading the body; `/slow` (POST) → reports entry, waits on `gate`, then 200.
fn router(owner: &str, gate: Arc<Semaphore>, entered: mpsc::UnboundedSender<()>) -> Router {
    let mut r = Router::new();
    r.route(
        "/ping",
        &[Method::GET, Method::HEAD],
        owner,
        handler_fn(|_req| async { empty(StatusCode::NO_CONTENT) }),
    )
    .unwrap();
    r.route(
        "/write",
        &[Method::POST],
        owner,
        handler_fn(|req| async move {
            match read_body(req, LIMIT).await {
                Ok((_, body)) => text(StatusCode::OK, body),
                Err(e) => e.to_response(),
            }
        }),
    )
    .unwrap();
    // Answers before, and without, reading the body.
    r.route(
        "/early",
        &[Method::POST],
        owner,
        handler_fn(|_req| async { empty(StatusCode::ACCEPTED) }),
    )
    .unwrap();
    r.route(
        "/slow",
        &[Method::POST],
        owner,
        handler_fn(move |_req| {
            let gate = gate.clone();
            let entered = entered.clone();
            async move {
                entered.send(()).unwrap();
                gate.acquire().await.unwrap().forget();
                text(StatusCode::OK, "done")
            }
        }),
    )
    .unwrap();
    r
}

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    run: JoinHandle<()>,
    gate: Arc<Semaphore>,
    entered: mpsc::UnboundedReceiver<()>,
}

async fn start(name: &str, cfg: HttpConfig) -> Server {
    let gate = Arc::new(Semaphore::new(0));
    let (tx, entered) = mpsc::unbounded_channel();
    let server = HttpServer::bind(localhost(), cfg, labels(name))
        .await
        .unwrap();
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(server.run(router(name, gate.clone(), tx), shutdown.clone()));
    Server {
        addr,
        shutdown,
        run,
        gate,
        entered,
    }
}

impl Server {
    async fn stop(self) {
        self.shutdown.cancel();
        within(self.run).await.unwrap();
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Conn = BufStream<TcpStream>;

async fn connect(addr: SocketAddr) -> Conn {
    BufStream::new(TcpStream::connect(addr).await.unwrap())
}

/// Send raw request bytes and read one response (bodies have a length).
async fn roundtrip(c: &mut Conn, request: &[u8]) -> Resp {
    c.write_all(request).await.unwrap();
    c.flush().await.unwrap();
    within(read_response(c, request.starts_with(b"HEAD "))).await
}

async fn read_response(c: &mut Conn, head: bool) -> Resp {
    let mut line = String::new();
    c.read_line(&mut line).await.unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .unwrap_or_else(|| panic!("status line {line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        c.read_line(&mut line).await.unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = resp
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    if !head {
        resp.body.resize(len, 0);
        c.read_exact(&mut resp.body).await.unwrap();
    }
    resp
}

fn post(path: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    );
    [head.as_bytes(), body].concat()
}

async fn assert_closed(c: &mut Conn) {
    let mut buf = [0u8; 1];
    let read = within(c.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected the server to close: {read:?}"
    );
}

#[tokio::test]
async fn routes_answer_404_and_405() {
    let s = start("http_routes", HttpConfig::default()).await;
    let mut c = connect(s.addr).await;
    let r = roundtrip(&mut c, b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(r.status, 204);
    let r = roundtrip(&mut c, b"HEAD /ping HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(r.status, 204);
    let r = roundtrip(&mut c, b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body, b"404 page not found\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let r = roundtrip(&mut c, b"DELETE /ping HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = roundtrip(&mut c, b"GET /write?db=x HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    drop(c);
    s.stop().await;
    let status = |code| counter(t::LISTENER_REQUESTS, "http_routes", &[("status", code)]);
    assert_eq!((status("204"), status("404"), status("405")), (2, 1, 2));
}

#[tokio::test]
async fn merged_routers_share_one_port_and_conflicts_are_reported() {
    let noop = || handler_fn(|_req| async { empty(StatusCode::NO_CONTENT) });
    let mut influx = Router::new();
    influx
        .route("/write", &[Method::POST], "influx", noop())
        .unwrap();
    let mut tsdb = Router::new();
    tsdb.route("/api/put", &[Method::POST], "opentsdb", noop())
        .unwrap();
    influx.merge(tsdb).unwrap();

    let mut other = Router::new();
    other
        .route("/api/put", &[Method::POST], "kairosdb", noop())
        .unwrap();
    let conflicts = influx.merge(other).unwrap_err();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(
        conflicts[0].to_string(),
        "route `/api/put` of `kairosdb` conflicts with the route of `opentsdb`"
    );

    let server = HttpServer::bind(localhost(), HttpConfig::default(), labels("http_merge"))
        .await
        .unwrap();
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(server.run(influx, shutdown.clone()));
    let mut c = connect(addr).await;
    assert_eq!(
        roundtrip(&mut c, &post("/write", "", b"a b=1\n"))
            .await
            .status,
        204
    );
    assert_eq!(
        roundtrip(&mut c, &post("/api/put", "", b"[]")).await.status,
        204
    );
    drop(c);
    shutdown.cancel();
    within(run).await.unwrap();
}

#[tokio::test]
async fn body_over_limit_by_content_length_is_413_without_sending_it() {
    let s = start("http_413_len", HttpConfig::default()).await;
    let mut c = connect(s.addr).await;
    let head = format!(
        "POST /write HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        LIMIT + 1
    );
    let r = roundtrip(&mut c, head.as_bytes()).await;
    assert_eq!(r.status, 413);
    assert_eq!(
        r.body,
        format!("request body larger than {LIMIT} bytes\n").as_bytes()
    );
    drop(c);
    s.stop().await;
}

#[tokio::test]
async fn chunked_body_over_limit_is_413() {
    let s = start("http_413_chunked", HttpConfig::default()).await;
    let mut c = connect(s.addr).await;
    let mut req = b"POST /write HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let chunk = vec![b'x'; 16 * 1024];
    for _ in 0..5 {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = roundtrip(&mut c, &req).await;
    assert_eq!(r.status, 413);
    drop(c);

    // Under the limit, a chunked body is read whole.
    let mut c = connect(s.addr).await;
    let req = b"POST /write HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\na 1\n\r\n4\r\nb 2\n\r\n0\r\n\r\n";
    let r = roundtrip(&mut c, req).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"a 1\nb 2\n"[..]));
    drop(c);
    s.stop().await;
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn gzip_and_deflate_bodies_decode_and_a_bomb_is_413() {
    let s = start("http_gzip", HttpConfig::default()).await;
    let data: Vec<u8> = (0..500)
        .flat_map(|i| format!("cpu,host=h{i} v={i}\n").into_bytes())
        .collect();
    let mut c = connect(s.addr).await;
    let r = roundtrip(
        &mut c,
        &post("/write", "Content-Encoding: gzip\r\n", &gzip(&data)),
    )
    .await;
    assert_eq!((r.status, &r.body), (200, &data));
    let r = roundtrip(
        &mut c,
        &post("/write", "Content-Encoding: deflate\r\n", &zlib(&data)),
    )
    .await;
    assert_eq!((r.status, &r.body), (200, &data));
    let r = roundtrip(&mut c, &post("/write", "Content-Encoding: br\r\n", b"x")).await;
    assert_eq!(r.status, 415);

    let bomb = gzip(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < 16 * 1024, "bomb is {} bytes", bomb.len());
    let r = roundtrip(&mut c, &post("/write", "Content-Encoding: gzip\r\n", &bomb)).await;
    assert_eq!(r.status, 413);
    drop(c);
    s.stop().await;
}

#[tokio::test]
async fn keep_alive_serves_two_requests_on_one_connection() {
    let s = start("http_keepalive", HttpConfig::default()).await;
    let mut c = connect(s.addr).await;
    let r1 = roundtrip(&mut c, &post("/write", "", b"one\n")).await;
    let r2 = roundtrip(&mut c, &post("/write", "", b"two\n")).await;
    assert_eq!((r1.status, r1.body.as_slice()), (200, &b"one\n"[..]));
    assert_eq!((r2.status, r2.body.as_slice()), (200, &b"two\n"[..]));
    assert_eq!(counter(t::LISTENER_CONNECTIONS, "http_keepalive", &[]), 1);
    drop(c);
    s.stop().await;
}

/// Send a request head, read its answer, and only then its body: the
/// answer was given before the body arrived.
async fn answer_before_body(c: &mut Conn, head: &str, body: &[u8]) -> Resp {
    c.write_all(head.as_bytes()).await.unwrap();
    c.flush().await.unwrap();
    let r = within(read_response(c, false)).await;
    c.write_all(body).await.unwrap();
    c.flush().await.unwrap();
    r
}

#[tokio::test]
async fn a_body_left_unread_is_drained_and_the_connection_reused() {
    let s = start("http_drain", HttpConfig::default()).await;
    let ping = b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n";
    let body = vec![b'x'; 64 * 1024];
    let sized = format!(
        "POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut chunked = format!("{:x}\r\n", body.len()).into_bytes();
    chunked.extend_from_slice(&body);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut c = connect(s.addr).await;
    for (head, body) in [
        // A handler's own early answer, the router's 404 and 405.
        (sized.clone(), &body[..]),
        (sized.replace("/early", "/nope"), &body[..]),
        (sized.replace("/early", "/ping"), &body[..]),
        (
            "POST /early HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
            &chunked[..],
        ),
    ] {
        let r = answer_before_body(&mut c, &head, body).await;
        assert!(matches!(r.status, 202 | 404 | 405), "{head:?}: {r:?}");
        let r = roundtrip(&mut c, ping).await;
        assert_eq!(r.status, 204, "{head:?}, then /ping");
    }
    drop(c);
    assert_eq!(counter(t::LISTENER_CONNECTIONS, "http_drain", &[]), 1);

    // A body announced larger than what is drained is not waited for.
    let mut c = connect(s.addr).await;
    let head = "POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n";
    c.write_all(head.as_bytes()).await.unwrap();
    c.flush().await.unwrap();
    assert_eq!(within(read_response(&mut c, false)).await.status, 202);
    assert_closed(&mut c).await;
    s.stop().await;
}

#[tokio::test]
async fn oversize_request_head_is_431() {
    let cfg = HttpConfig {
        max_header_bytes: 1024,
        ..HttpConfig::default()
    };
    let s = start("http_431", cfg).await;
    let mut c = connect(s.addr).await;
    let req = format!(
        "GET /ping HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "x".repeat(2000)
    );
    assert_eq!(roundtrip(&mut c, req.as_bytes()).await.status, 431);
    drop(c);
    let mut c = connect(s.addr).await;
    let req = format!(
        "GET /ping HTTP/1.1\r\nHost: t\r\nX-Small: {}\r\n\r\n",
        "x".repeat(500)
    );
    assert_eq!(roundtrip(&mut c, req.as_bytes()).await.status, 204);
    drop(c);
    s.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let cfg = HttpConfig {
        idle_timeout: Duration::from_millis(200),
        ..HttpConfig::default()
    };
    let s = start("http_idle", cfg).await;
    let mut c = connect(s.addr).await;
    assert_eq!(
        roundtrip(&mut c, b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .status,
        204
    );
    assert_closed(&mut c).await;
    s.stop().await;
}

#[tokio::test]
async fn incomplete_request_head_times_out() {
    let cfg = HttpConfig {
        header_read_timeout: Duration::from_millis(200),
        ..HttpConfig::default()
    };
    let s = start("http_header_timeout", cfg).await;
    let mut c = connect(s.addr).await;
    c.write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    c.flush().await.unwrap();
    assert_closed(&mut c).await;
    s.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_and_closes_idle_ones() {
    let mut s = start("http_graceful", HttpConfig::default()).await;
    let mut idle = connect(s.addr).await;
    assert_eq!(
        roundtrip(&mut idle, b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .status,
        204
    );
    let mut busy = connect(s.addr).await;
    busy.write_all(&post("/slow", "", b"")).await.unwrap();
    busy.flush().await.unwrap();
    within(s.entered.recv()).await.unwrap();

    s.shutdown.cancel();
    assert_closed(&mut idle).await;
    eventually(|| std::net::TcpStream::connect(s.addr).is_err()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !s.run.is_finished(),
        "run returned with a request in flight"
    );

    s.gate.add_permits(1);
    let r = within(read_response(&mut busy, false)).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"done"[..]));
    assert_closed(&mut busy).await;
    within(s.run).await.unwrap();
}
