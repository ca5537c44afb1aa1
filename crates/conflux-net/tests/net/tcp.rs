use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use conflux_core::telemetry as t;
use conflux_net::CancellationToken;
use conflux_net::tcp::{Flow, LineConn, LineHandler, TcpConfig, TcpLineServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::common::{counter, eventually, gauge, labels, localhost, within};

#[derive(Debug, PartialEq)]
enum Event {
    Lines(Vec<u8>),
    TooLong,
    Entered,
}

/// Reports every call; replies to `bad` and `version`; waits on `gate`
/// (when set) inside each call.
#[derive(Clone)]
struct Collect {
    tx: mpsc::UnboundedSender<Event>,
    gate: Option<Arc<Semaphore>>,
}

impl LineConn for Collect {
    async fn lines(&mut self, lines: &[u8], reply: &mut Vec<u8>) -> Flow {
        if let Some(gate) = &self.gate {
            self.tx.send(Event::Entered).unwrap();
            gate.acquire().await.unwrap().forget();
        }
        for line in lines.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b"bad") {
                reply.extend_from_slice(b"error: bad\n");
            }
            if line == b"version\n" {
                reply.extend_from_slice(b"conflux\n");
            }
        }
        self.tx.send(Event::Lines(lines.to_vec())).unwrap();
        Flow::Continue
    }

    fn line_too_long(&mut self) {
        self.tx.send(Event::TooLong).unwrap();
    }
}

impl LineHandler for Collect {
    type Conn = Collect;
    fn open(&self, _peer: SocketAddr) -> Collect {
        self.clone()
    }
}

struct Server {
    addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<Event>,
    shutdown: CancellationToken,
    run: JoinHandle<()>,
}

async fn start(name: &str, cfg: TcpConfig, gate: Option<Arc<Semaphore>>) -> Server {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = TcpLineServer::bind(localhost(), cfg, labels(name))
        .await
        .unwrap();
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(server.run(Collect { tx, gate }, shutdown.clone()));
    Server {
        addr,
        rx,
        shutdown,
        run,
    }
}

impl Server {
    /// Every `Lines` event until all senders are gone (the server stopped).
    async fn stop_and_collect(mut self) -> (Vec<Vec<u8>>, usize) {
        self.shutdown.cancel();
        within(self.run).await.unwrap();
        let mut calls = Vec::new();
        let mut too_long = 0;
        while let Some(e) = within(self.rx.recv()).await {
            match e {
                Event::Lines(l) => calls.push(l),
                Event::TooLong => too_long += 1,
                Event::Entered => {}
            }
        }
        (calls, too_long)
    }
}

/// Write `data`, close the write side, and wait for the server to close.
async fn send_all(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(data).await.unwrap();
    c.shutdown().await.unwrap();
    let mut back = Vec::new();
    within(c.read_to_end(&mut back)).await.unwrap();
    back
}

#[tokio::test]
async fn lines_split_across_writes_arrive_complete() {
    let s = start("tcp_split", TcpConfig::default(), None).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let parts = [&b"cpu 1\ncp"[..], b"u 2\nme", b"m 3\n", b"disk 4"];
    for part in parts {
        c.write_all(part).await.unwrap();
        c.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
    c.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within(c.read_to_end(&mut rest)).await.unwrap();
    let (calls, _) = s.stop_and_collect().await;
    assert_eq!(calls.concat(), b"cpu 1\ncpu 2\nmem 3\ndisk 4");
    let (last, complete) = calls.split_last().unwrap();
    assert_eq!(
        last.as_slice(),
        b"disk 4",
        "the unterminated line comes last, alone"
    );
    for call in complete {
        assert_eq!(call.last(), Some(&b'\n'), "{call:?}");
        assert!(
            call.starts_with(b"cpu") || call.starts_with(b"mem"),
            "{call:?}"
        );
    }
    let sent: usize = parts.iter().map(|p| p.len()).sum();
    assert_eq!(
        counter(t::LISTENER_RECEIVED_BYTES, "tcp_split", &[]),
        sent as u64
    );
    assert_eq!(counter(t::LISTENER_CONNECTIONS, "tcp_split", &[]), 1);
}

#[tokio::test]
async fn passes_many_lines_per_call() {
    let s = start("tcp_many", TcpConfig::default(), None).await;
    let input: Vec<u8> = (0..1000)
        .flat_map(|i| format!("m{i} {i}\n").into_bytes())
        .collect();
    send_all(s.addr, &input).await;
    let (calls, _) = s.stop_and_collect().await;
    assert_eq!(calls.concat(), input);
    assert!(calls.len() < 100, "{} calls for 1000 lines", calls.len());
}

#[tokio::test]
async fn over_long_line_is_counted_skipped_and_the_next_line_processed() {
    let cfg = TcpConfig {
        max_line_bytes: 16,
        read_buffer_bytes: 8,
        ..TcpConfig::default()
    };
    let s = start("tcp_long", cfg, None).await;
    let input = [&b"ok 1\n"[..], &[b'x'; 100], b"\nok 2\n"].concat();
    send_all(s.addr, &input).await;
    let (calls, too_long) = s.stop_and_collect().await;
    assert_eq!(calls.concat(), b"ok 1\nok 2\n");
    assert_eq!(too_long, 1);
    assert_eq!(
        counter(
            t::LISTENER_REJECTED,
            "tcp_long",
            &[("reason", "line_too_long")]
        ),
        1
    );
}

#[tokio::test]
async fn reply_bytes_reach_the_client() {
    let s = start("tcp_reply", TcpConfig::default(), None).await;
    let back = send_all(s.addr, b"good 1\nbad 2\nversion\n").await;
    assert_eq!(back, b"error: bad\nconflux\n");
    s.stop_and_collect().await;
}

#[tokio::test]
async fn connection_cap_refuses_the_extra_connection() {
    let cfg = TcpConfig {
        max_connections: 1,
        ..TcpConfig::default()
    };
    let s = start("tcp_cap", cfg, None).await;
    let mut first = TcpStream::connect(s.addr).await.unwrap();
    first.write_all(b"version\n").await.unwrap();
    let mut reply = [0u8; 8];
    within(first.read_exact(&mut reply)).await.unwrap();
    assert_eq!(&reply, b"conflux\n");

    let mut second = TcpStream::connect(s.addr).await.unwrap();
    let mut buf = [0u8; 1];
    // Closed by the server: end of stream, or a reset if it raced our write.
    let read = within(second.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(counter(t::LISTENER_CONNECTIONS_REFUSED, "tcp_cap", &[]), 1);
    assert_eq!(gauge(t::LISTENER_CONNECTIONS_OPEN, "tcp_cap"), 1.0);

    // The slot frees when the first connection ends.
    drop(first);
    eventually(|| gauge(t::LISTENER_CONNECTIONS_OPEN, "tcp_cap") == 0.0).await;
    let mut third = TcpStream::connect(s.addr).await.unwrap();
    third.write_all(b"version\n").await.unwrap();
    within(third.read_exact(&mut reply)).await.unwrap();
    assert_eq!(&reply, b"conflux\n");
    assert_eq!(counter(t::LISTENER_CONNECTIONS, "tcp_cap", &[]), 2);
    drop(third);
    s.stop_and_collect().await;
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let cfg = TcpConfig {
        idle_timeout: Duration::from_millis(200),
        ..TcpConfig::default()
    };
    let s = start("tcp_idle", cfg, None).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"a 1\n").await.unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        within(c.read(&mut buf)).await.unwrap(),
        0,
        "expected end of stream"
    );
    let (calls, _) = s.stop_and_collect().await;
    assert_eq!(calls.concat(), b"a 1\n");
}

#[tokio::test]
async fn shutdown_lets_a_connection_finish_its_lines_and_run_returns() {
    let gate = Arc::new(Semaphore::new(0));
    let mut s = start("tcp_shutdown", TcpConfig::default(), Some(gate.clone())).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"a 1\nb 2\n").await.unwrap();
    assert_eq!(within(s.rx.recv()).await, Some(Event::Entered));

    s.shutdown.cancel();
    // The listening socket closes at once; the connection is still held.
    eventually(|| std::net::TcpStream::connect(s.addr).is_err()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !s.run.is_finished(),
        "run returned while a connection was busy"
    );

    gate.add_permits(100);
    let mut rest = Vec::new();
    within(c.read_to_end(&mut rest)).await.unwrap();
    let (calls, _) = s.stop_and_collect().await;
    assert_eq!(calls.concat(), b"a 1\nb 2\n");
}
