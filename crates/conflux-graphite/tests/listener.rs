//! Socket tests of the listener: real TCP and UDP sockets on port 0, a real
//! pipeline, and what reached the sink's queue; self-metrics read through a
//! local recorder.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conflux_core::component::{CancellationToken, ListenerContext};
use conflux_core::filter::Filter;
use conflux_core::pipeline::{QueueConfig, SinkSpec};
use conflux_core::{Metric, Pipeline, SinkReceiver, WhenFull};
use conflux_graphite::listener::{Config, start};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// Counters by `name{label=value,…}` (labels sorted).
#[derive(Default)]
struct TestRecorder {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
}

fn key_text(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut map = self.counters.lock().unwrap();
        Counter::from_arc(map.entry(key_text(key)).or_default().clone())
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

impl TestRecorder {
    /// `conflux_listener_rejected_total` of listener `g` for `reason`.
    fn rejected(&self, reason: &str) -> u64 {
        self.get(&format!(
            "conflux_listener_rejected_total{{dialect=graphite,listener=g,reason={reason}}}"
        ))
    }

    fn received(&self, what: &str) -> u64 {
        self.get(&format!(
            "conflux_listener_received_{what}_total{{dialect=graphite,listener=g}}"
        ))
    }

    fn get(&self, key: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(key)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

struct Running {
    rx: SinkReceiver,
    tcp: Option<std::net::SocketAddr>,
    udp: Option<std::net::SocketAddr>,
    pickle: Option<std::net::SocketAddr>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// The next batch's metrics, waiting up to 10 s.
    async fn next(&mut self) -> Vec<Metric> {
        let view = tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("a batch within 10 s")
            .expect("queue open");
        view.iter().map(|m| m.to_metric()).collect()
    }

    /// Metrics until `n` have arrived.
    async fn take(&mut self, n: usize) -> Vec<Metric> {
        let mut out = Vec::new();
        while out.len() < n {
            out.extend(self.next().await);
        }
        out
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            t.await.unwrap();
        }
    }
}

async fn run(mut cfg: Config, queue: usize, when_full: WhenFull) -> Running {
    let local: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    cfg.address = cfg.address.map(|_| local);
    cfg.udp_address = cfg.udp_address.map(|_| local);
    cfg.pickle_address = cfg.pickle_address.map(|_| local);
    let (pipeline, mut rxs) = Pipeline::new(vec![SinkSpec {
        name: "out".into(),
        filter: Filter::default(),
        queue: QueueConfig {
            max_metrics: queue,
            when_full,
        },
        spool: None,
        max_new_series_per_hour: None,
    }]);
    let shutdown = CancellationToken::new();
    let ctx = ListenerContext {
        name: "g".into(),
        dialect: "graphite",
        ingest: pipeline.ingest("g"),
        shutdown: shutdown.clone(),
    };
    assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
    let started = start(&cfg, ctx).await.unwrap();
    let mut r = Running {
        rx: rxs.remove(0),
        tcp: None,
        udp: None,
        pickle: None,
        shutdown,
        tasks: Vec::new(),
    };
    for s in started.servers {
        match s.transport {
            "tcp" => r.tcp = Some(s.address),
            "udp" => r.udp = Some(s.address),
            "pickle" => r.pickle = Some(s.address),
            other => panic!("unexpected transport {other}"),
        }
        r.tasks.push(tokio::spawn(s.run));
    }
    r
}

fn all(addr: &str) -> Config {
    let a = addr.parse().unwrap();
    let mut c = Config::tcp(a);
    c.udp_address = Some(a);
    c.pickle_address = Some(a);
    c
}

fn m(name: &str, value: f64, seconds: i64) -> Metric {
    Metric::new(name)
        .field("value", value)
        .at(seconds * 1_000_000_000)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// `[("a.b", (ts, value))]` as CPython's protocol 2 pickler writes it.
fn pickle(path: &str, ts: i32, value: f64) -> Vec<u8> {
    let mut p = vec![0x80, 2, b']', b'q', 0, b'X'];
    p.extend_from_slice(&(path.len() as u32).to_le_bytes());
    p.extend_from_slice(path.as_bytes());
    p.extend_from_slice(&[b'q', 1, b'J']);
    p.extend_from_slice(&ts.to_le_bytes());
    p.push(b'G');
    p.extend_from_slice(&value.to_be_bytes());
    p.extend_from_slice(&[0x86, b'q', 2, 0x86, b'q', 3, b'a', b'.']);
    p
}

#[tokio::test]
async fn tcp_keeps_good_lines_counts_bad_ones_and_stays_open() {
    let rec = Arc::new(TestRecorder::default());
    let _guard = metrics::set_default_local_recorder(&*rec);
    let mut r = run(all("127.0.0.1:0"), 10_000, WhenFull::Block).await;
    let mut c = TcpStream::connect(r.tcp.unwrap()).await.unwrap();
    c.write_all(b"a.b 1 1700000000\nbroken\nc;k=~v 1 1\nd nan 1\ne 2 1700000000\n")
        .await
        .unwrap();
    assert_eq!(
        r.take(2).await,
        vec![m("a.b", 1.0, 1_700_000_000), m("e", 2.0, 1_700_000_000)]
    );
    // The same connection still reads.
    c.write_all(b"f;z=1;a=2 3 1700000001\n").await.unwrap();
    assert_eq!(
        r.take(1).await,
        vec![
            Metric::new("f")
                .tag("a", "2")
                .tag("z", "1")
                .field("value", 3.0)
                .at(1_700_000_001_000_000_000)
        ]
    );
    assert_eq!(rec.rejected("missing_value"), 1);
    assert_eq!(rec.rejected("invalid_tag_value"), 1);
    assert_eq!(rec.rejected("nan_value"), 1);
    assert_eq!(rec.received("metrics"), 3);
    assert_eq!(rec.received("points"), 3);
    r.stop().await;
}

#[tokio::test]
async fn a_line_split_across_writes_is_joined() {
    let mut r = run(all("127.0.0.1:0"), 10_000, WhenFull::Block).await;
    let mut c = TcpStream::connect(r.tcp.unwrap()).await.unwrap();
    c.write_all(b"split.path 4").await.unwrap();
    c.flush().await.unwrap();
    tokio::task::yield_now().await;
    c.write_all(b"2 1700000000\nlast 1 1700000000")
        .await
        .unwrap();
    // The unterminated last line counts once the client closes.
    c.shutdown().await.unwrap();
    assert_eq!(
        r.take(2).await,
        vec![
            m("split.path", 42.0, 1_700_000_000),
            m("last", 1.0, 1_700_000_000)
        ]
    );
    r.stop().await;
}

#[tokio::test]
async fn udp_datagram_keeps_its_good_lines() {
    let rec = Arc::new(TestRecorder::default());
    let _guard = metrics::set_default_local_recorder(&*rec);
    let mut r = run(all("127.0.0.1:0"), 10_000, WhenFull::Block).await;
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(
        b"u.one 1 1700000000\nnot valid at all\nu.two 2 1700000000",
        r.udp.unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        r.next().await,
        vec![
            m("u.one", 1.0, 1_700_000_000),
            m("u.two", 2.0, 1_700_000_000)
        ]
    );
    assert_eq!(rec.rejected("too_many_fields"), 1);
    r.stop().await;
}

#[tokio::test]
async fn udp_counts_what_a_full_blocking_queue_makes_it_drop() {
    let rec = Arc::new(TestRecorder::default());
    let _guard = metrics::set_default_local_recorder(&*rec);
    let mut cfg = all("127.0.0.1:0");
    cfg.udp_queue_wait_ms = 0;
    // Room for one metric, and nobody takes from the queue yet.
    let mut r = run(cfg, 1, WhenFull::Block).await;
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(b"first 1 1700000000", r.udp.unwrap())
        .await
        .unwrap();
    s.send_to(
        b"dropped.a 2 1700000000\ndropped.b 3 1700000000",
        r.udp.unwrap(),
    )
    .await
    .unwrap();
    // The drop is counted, per metric, before anything leaves the queue.
    let counted = async {
        while rec.rejected("queue_full") < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), counted)
        .await
        .expect("queue_full counted");
    assert_eq!(r.next().await, vec![m("first", 1.0, 1_700_000_000)]);
    s.send_to(b"after 4 1700000000", r.udp.unwrap())
        .await
        .unwrap();
    assert_eq!(r.next().await, vec![m("after", 4.0, 1_700_000_000)]);
    assert_eq!(rec.received("metrics"), 2);
    r.stop().await;
}

#[tokio::test]
async fn tcp_stops_reading_while_a_blocking_sink_is_full() {
    // Room for one metric and nobody taking: the second read chunk waits in
    // `submit`, and nothing more is read from the socket.
    let mut r = run(all("127.0.0.1:0"), 1, WhenFull::Block).await;
    let mut c = TcpStream::connect(r.tcp.unwrap()).await.unwrap();
    let line = format!("{} 1 1700000000\n", "p".repeat(1000));
    // More than the kernel can buffer on both sides (tcp_rmem max 32 MiB
    // plus tcp_wmem max 4 MiB by default).
    let total = 48 * 1024 * 1024 / line.len();
    let payload = line.repeat(total).into_bytes();
    let mut pos = 0;
    let mut blocked = false;
    while pos < payload.len() {
        match c.try_write(&payload[pos..]) {
            Ok(n) => pos += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // A listener that read on would make room again; one that
                // waits in `submit` never does.
                if tokio::time::timeout(Duration::from_secs(2), c.writable())
                    .await
                    .is_err()
                {
                    blocked = true;
                    break;
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        blocked,
        "the kernel took all {} bytes: the listener kept reading",
        payload.len()
    );
    assert_eq!(r.rx.depth(), 1);
    // Nothing was lost: drain the queue while the rest goes out.
    let writer = tokio::spawn(async move {
        c.write_all(&payload[pos..]).await.unwrap();
        c.shutdown().await.unwrap();
    });
    let mut got = 0;
    while got < total {
        got += r.next().await.len();
    }
    assert_eq!(got, total);
    writer.await.unwrap();
    r.stop().await;
}

#[tokio::test]
async fn pickle_frames_are_read_and_bad_ones_skipped() {
    let rec = Arc::new(TestRecorder::default());
    let _guard = metrics::set_default_local_recorder(&*rec);
    let mut r = run(all("127.0.0.1:0"), 10_000, WhenFull::Block).await;
    let mut c = TcpStream::connect(r.pickle.unwrap()).await.unwrap();
    c.write_all(&frame(&pickle("p.one", 1_700_000_000, 1.5)))
        .await
        .unwrap();
    assert_eq!(r.next().await, vec![m("p.one", 1.5, 1_700_000_000)]);
    // `os.system("echo")`: refused, counted, and the connection goes on.
    c.write_all(&frame(b"cos\nsystem\n(S'echo'\ntR."))
        .await
        .unwrap();
    // Not a pickle at all.
    c.write_all(&frame(b"hello")).await.unwrap();
    c.write_all(&frame(&pickle("p.two", 1_700_000_001, 2.0)))
        .await
        .unwrap();
    assert_eq!(r.next().await, vec![m("p.two", 2.0, 1_700_000_001)]);
    assert_eq!(rec.rejected("forbidden_opcode"), 1);
    assert_eq!(rec.rejected("invalid_pickle"), 1);
    assert_eq!(rec.received("metrics"), 2);
    r.stop().await;
}

#[tokio::test]
async fn an_oversize_pickle_frame_closes_the_connection() {
    let rec = Arc::new(TestRecorder::default());
    let _guard = metrics::set_default_local_recorder(&*rec);
    let mut cfg = all("127.0.0.1:0");
    cfg.max_pickle_frame_bytes = 100;
    let mut r = run(cfg, 10_000, WhenFull::Block).await;
    let mut c = TcpStream::connect(r.pickle.unwrap()).await.unwrap();
    c.write_all(&frame(&pickle("small", 1, 1.0))).await.unwrap();
    assert_eq!(r.next().await, vec![m("small", 1.0, 1)]);
    c.write_all(&101u32.to_be_bytes()).await.unwrap();
    // The server closes: reading gives end of stream.
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncReadExt;
        c.read(&mut buf).await
    })
    .await
    .expect("closed within 10 s")
    .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(rec.rejected("frame_too_large"), 1);
    r.stop().await;
}

#[tokio::test]
async fn templates_apply_on_every_transport() {
    let mut cfg = all("127.0.0.1:0");
    cfg.templates = vec!["host.measurement.field".into()];
    let mut r = run(cfg, 10_000, WhenFull::Block).await;
    let want = |v: f64| {
        Metric::new("cpu")
            .tag("host", "web01")
            .field("idle", v)
            .at(1_700_000_000_000_000_000)
    };
    let mut c = TcpStream::connect(r.tcp.unwrap()).await.unwrap();
    c.write_all(b"web01.cpu.idle 1 1700000000\n").await.unwrap();
    assert_eq!(r.next().await, vec![want(1.0)]);
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(b"web01.cpu.idle 2 1700000000\n", r.udp.unwrap())
        .await
        .unwrap();
    assert_eq!(r.next().await, vec![want(2.0)]);
    let mut p = TcpStream::connect(r.pickle.unwrap()).await.unwrap();
    p.write_all(&frame(&pickle("web01.cpu.idle", 1_700_000_000, 3.0)))
        .await
        .unwrap();
    assert_eq!(r.next().await, vec![want(3.0)]);
    r.stop().await;
}

#[tokio::test]
async fn shutdown_ends_every_server() {
    let r = run(all("127.0.0.1:0"), 10_000, WhenFull::Block).await;
    let _open = TcpStream::connect(r.tcp.unwrap()).await.unwrap();
    let _open_pickle = TcpStream::connect(r.pickle.unwrap()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), r.stop())
        .await
        .expect("servers stop on shutdown");
}

#[tokio::test]
async fn bind_conflicts_fail_before_anything_runs() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = Config::tcp(taken.local_addr().unwrap());
    let (pipeline, _rx) = Pipeline::new(Vec::new());
    let ctx = ListenerContext {
        name: "g".into(),
        dialect: "graphite",
        ingest: pipeline.ingest("g"),
        shutdown: CancellationToken::new(),
    };
    let err = start(&cfg, ctx).await.err().expect("bind fails");
    assert!(
        err.to_string()
            .starts_with(&format!("bind {}: ", taken.local_addr().unwrap())),
        "{err}"
    );
}

#[tokio::test]
async fn every_transport_rejects_metrics_past_the_limits_and_keeps_the_rest() {
    let rec = Arc::new(TestRecorder::default());
    let _guard = metrics::set_default_local_recorder(&*rec);
    let mut cfg = all("127.0.0.1:0");
    cfg.max_tags_per_metric = 1;
    cfg.max_series_key_bytes = 12;
    let mut r = run(cfg, 10_000, WhenFull::Block).await;
    let tagged = |name: &str, k: &str, v: &str, value: f64| {
        Metric::new(name)
            .tag(k, v)
            .field("value", value)
            .at(1_700_000_000_000_000_000)
    };

    // TCP: `a;x=1` fits; two tags and a 13-byte key do not.
    let mut c = TcpStream::connect(r.tcp.unwrap()).await.unwrap();
    c.write_all(
        b"a;x=1 1 1700000000\nb;x=1;y=2 2 1700000000\nc;host=web012 3 1700000000\nd 4 1700000000\n",
    )
    .await
    .unwrap();
    assert_eq!(
        r.take(2).await,
        vec![tagged("a", "x", "1", 1.0), m("d", 4.0, 1_700_000_000)]
    );
    // UDP: the datagram's good line is kept.
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(b"e;x=1;y=2 5 1700000000\nf 6 1700000000", r.udp.unwrap())
        .await
        .unwrap();
    assert_eq!(r.next().await, vec![m("f", 6.0, 1_700_000_000)]);
    // Pickle: an item past a limit is skipped, the next frame read.
    let mut p = TcpStream::connect(r.pickle.unwrap()).await.unwrap();
    p.write_all(&frame(&pickle("g;host=web012", 1_700_000_000, 7.0)))
        .await
        .unwrap();
    p.write_all(&frame(&pickle("h;x=1", 1_700_000_000, 8.0)))
        .await
        .unwrap();
    assert_eq!(r.next().await, vec![tagged("h", "x", "1", 8.0)]);

    assert_eq!(rec.rejected("too_many_tags"), 2);
    assert_eq!(rec.rejected("series_key_too_long"), 2);
    assert_eq!(rec.received("metrics"), 4);
    r.stop().await;
}
