//! The listener over real sockets: every telnet reply, every HTTP answer,
//! the first-byte sniffing, backpressure, and what reached the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use conflux_core::component::{CancellationToken, ListenerContext};
use conflux_core::filter::Filter;
use conflux_core::pipeline::{BatchView, QueueConfig};
use conflux_core::{Metric, Pipeline, SinkReceiver, SinkSpec, WhenFull};
use conflux_opentsdb::listener::{Config, router, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How long a test waits for something that must happen.
const PATIENCE: Duration = Duration::from_secs(20);

struct Running {
    addr: SocketAddr,
    rx: SinkReceiver,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
}

impl Running {
    /// Every metric queued so far (the views are dropped, freeing the queue).
    fn take(&mut self) -> Vec<Metric> {
        let mut out = Vec::new();
        while let Some(v) = self.rx.try_recv() {
            out.extend(v.iter().map(|m| m.to_metric()));
        }
        out
    }

    /// Wait until `n` metrics arrived in total, and return them.
    async fn wait_for(&mut self, n: usize) -> Vec<Metric> {
        let mut out = Vec::new();
        while out.len() < n {
            let v = tokio::time::timeout(PATIENCE, self.rx.recv())
                .await
                .expect("metrics in time")
                .expect("queue open");
            out.extend(v.iter().map(|m| m.to_metric()));
        }
        out
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.server)
            .await
            .expect("server stops")
            .unwrap();
    }
}

async fn run(cfg: Config, queue: usize) -> Running {
    let (pipeline, mut rxs) = Pipeline::new(vec![SinkSpec {
        name: "out".into(),
        filter: Filter::default(),
        queue: QueueConfig {
            max_metrics: queue,
            when_full: WhenFull::Block,
        },
        spool: None,
        max_new_series_per_hour: None,
    }]);
    let shutdown = CancellationToken::new();
    let ctx = ListenerContext {
        name: "tsdb".into(),
        dialect: "opentsdb",
        ingest: pipeline.ingest("tsdb"),
        shutdown: shutdown.clone(),
    };
    assert!(router(&cfg, ctx.clone()).is_none());
    let started = start(&cfg, ctx).await.unwrap();
    assert!(started.http.is_empty());
    let mut servers = started.servers;
    assert_eq!(servers.len(), 1);
    let server = servers.remove(0);
    assert_eq!(server.transport, "tcp");
    let addr = server.address;
    assert_ne!(addr.port(), 0);
    Running {
        addr,
        rx: rxs.remove(0),
        shutdown,
        server: tokio::spawn(server.run),
    }
}

fn cfg() -> Config {
    Config::new("127.0.0.1:0".parse().unwrap())
}

fn point(name: &str, ts_s: i64, value: impl Into<conflux_core::FieldValue>) -> Metric {
    Metric::new(name)
        .field("value", value)
        .at(ts_s * 1_000_000_000)
}

/// Read from `s` until `want` bytes arrived (or the peer closed).
async fn read_n(s: &mut TcpStream, want: usize) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < want {
        let n = tokio::time::timeout(PATIENCE, s.read(&mut chunk))
            .await
            .expect("reply in time")
            .unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(buf).unwrap()
}

/// Read until the peer closes.
async fn read_to_end(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut buf))
        .await
        .expect("close in time")
        .unwrap();
    String::from_utf8(buf).unwrap()
}

const VERSION: &str = "net.opentsdb 2.4.1 built at revision conflux-0.1.0 (MINT)\nBuilt by conflux 0.1.0, an OpenTSDB-compatible gateway\n";
const HELP: &str = "available commands: put putm puts version help exit \n";

// --- telnet ------------------------------------------------------------------

#[tokio::test]
async fn telnet_stores_points_and_answers_every_command_in_order() {
    let mut r = run(cfg(), 1000).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(
        b"put a 1700000000 1 host=x\nput bad\nversion\nhelp\nstats\nput b 1700000000.5 2.5\r\nput c 1700000000 x\nexit\nput after 1700000000 1\n",
    )
    .await
    .unwrap();
    let reply = read_to_end(&mut s).await;
    assert_eq!(
        reply,
        format!(
            "put: illegal argument: not enough arguments (need least 3, got 1)\n{VERSION}{HELP}\
             unknown command: stats.  Try `help'.\nput: invalid value: Invalid character 'x' in x\n"
        )
    );
    let got = r.wait_for(2).await;
    assert_eq!(
        got,
        vec![
            point("a", 1_700_000_000, 1i64).tag("host", "x"),
            Metric::new("b")
                .field("value", 2.5)
                .at(1_700_000_000_500_000_000),
        ]
    );
    assert!(r.take().is_empty(), "nothing after exit");
    r.stop().await;
}

#[tokio::test]
async fn telnet_errors_can_be_switched_off() {
    let mut c = cfg();
    c.telnet_errors = false;
    let mut r = run(c, 1000).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"put bad\nnope\nput m 0 1\nversion\nexit\n")
        .await
        .unwrap();
    assert_eq!(read_to_end(&mut s).await, VERSION);
    assert!(r.take().is_empty());
    r.stop().await;
}

#[tokio::test]
async fn bad_lines_never_close_the_connection() {
    let mut r = run(cfg(), 1000).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    for (line, reply) in [
        ("stats\n", "unknown command: stats.  Try `help'.\n"),
        (
            "put m 1700000000 NaN\n",
            "put: invalid value: Invalid character 'N' in NaN\n",
        ),
        (
            "put m 1700000000 1 a=b=c\n",
            "put: illegal argument: invalid tag: a=b=c\n",
        ),
        ("\u{1}\n", "unknown command: \u{1}.  Try `help'.\n"),
    ] {
        s.write_all(line.as_bytes()).await.unwrap();
        assert_eq!(read_n(&mut s, reply.len()).await, reply);
    }
    s.write_all(b"put ok 1700000000 7 t=v\n").await.unwrap();
    assert_eq!(
        r.wait_for(1).await,
        vec![point("ok", 1_700_000_000, 7i64).tag("t", "v")]
    );
    r.stop().await;
}

#[tokio::test]
async fn an_over_long_line_is_skipped_and_the_next_kept() {
    let mut c = cfg();
    c.max_line_bytes = 64;
    let mut r = run(c, 1000).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    let long = format!("put {} 1700000000 1\n", "x".repeat(500));
    s.write_all(long.as_bytes()).await.unwrap();
    s.write_all(b"put next 1700000000 2\nversion\n")
        .await
        .unwrap();
    assert_eq!(read_n(&mut s, VERSION.len()).await, VERSION);
    assert_eq!(
        r.wait_for(1).await,
        vec![point("next", 1_700_000_000, 2i64)]
    );
    r.stop().await;
}

#[tokio::test]
async fn a_final_line_without_newline_is_stored_at_close() {
    let mut r = run(cfg(), 1000).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"put m 1700000000 1").await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut s).await, "");
    assert_eq!(r.wait_for(1).await, vec![point("m", 1_700_000_000, 1i64)]);
    r.stop().await;
}

#[tokio::test]
async fn kairosdb_settings_change_the_rules() {
    let mut c = cfg();
    c.timestamp_rule = conflux_core::time::SecondsOrMillis::Kairosdb;
    c.characters = conflux_opentsdb::codec::Characters::AnyButSpace;
    let mut r = run(c, 1000).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"put a:b 2999999999 1 k$=v\nput c 3000000000 2\nputm d 1000 3\nputs e 1700000000 on\nexit\n")
        .await
        .unwrap();
    assert_eq!(read_to_end(&mut s).await, "");
    assert_eq!(
        r.wait_for(4).await,
        vec![
            point("a:b", 2_999_999_999, 1i64).tag("k$", "v"),
            Metric::new("c")
                .field("value", 2i64)
                .at(3_000_000_000_000_000),
            point("d", 1, 3i64),
            point("e", 1_700_000_000, "on"),
        ]
    );
    r.stop().await;
}

#[tokio::test]
async fn a_full_blocking_sink_stops_reading_the_socket() {
    let mut r = run(cfg(), 1).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"put a 1700000000 1\n").await.unwrap();
    // Hold the batch: the queue (one metric) stays full.
    let held: BatchView = tokio::time::timeout(PATIENCE, r.rx.recv())
        .await
        .unwrap()
        .unwrap();
    s.write_all(b"put b 1700000000 2\nversion\n").await.unwrap();
    // `b` waits for room, so `version` is not answered meanwhile.
    let mut one = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), s.read(&mut one)).await;
    assert!(early.is_err(), "answered while the sink was full");
    drop(held);
    assert_eq!(read_n(&mut s, VERSION.len()).await, VERSION);
    assert_eq!(r.wait_for(1).await, vec![point("b", 1_700_000_000, 2i64)]);
    r.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_telnet_connections() {
    let r = run(cfg(), 1000).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"version\n").await.unwrap();
    assert_eq!(read_n(&mut s, VERSION.len()).await, VERSION);
    r.shutdown.cancel();
    assert_eq!(read_to_end(&mut s).await, "");
    tokio::time::timeout(PATIENCE, r.server)
        .await
        .unwrap()
        .unwrap();
}

// --- HTTP on the same port ------------------------------------------------------

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).await.unwrap();
    let _ = s.write_all(body).await;
    // A server may answer (413) before reading everything and then reset the
    // connection: what was read before the reset is the answer.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => break,
            Err(_) => panic!("no answer in time"),
        }
    }
    let raw = String::from_utf8(buf).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response {raw:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn post(addr: SocketAddr, path: &str, body: &str) -> Reply {
    http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await
}

const GOOD: &str =
    r#"{"metric":"sys.cpu.nice","timestamp":1700000000,"value":18,"tags":{"host":"web01"}}"#;
const MIXED: &str = r#"[{"metric":"a","timestamp":1700000000,"value":1,"tags":{"h":"x"}},{"metric":"b","timestamp":1700000000,"value":"x","tags":{"h":"x"}}]"#;

#[tokio::test]
async fn api_put_answers_204_and_stores_the_point() {
    let mut r = run(cfg(), 1000).await;
    let reply = post(r.addr, "/api/put", GOOD).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(reply.body, "");
    assert_eq!(
        r.wait_for(1).await,
        vec![point("sys.cpu.nice", 1_700_000_000, 18i64).tag("host", "web01")]
    );
    // The versioned path and a trailing slash are the same endpoint.
    assert_eq!(post(r.addr, "/api/v1/put", GOOD).await.status, 204);
    assert_eq!(post(r.addr, "/api/put/", GOOD).await.status, 204);
    assert_eq!(r.wait_for(2).await.len(), 2);
    r.stop().await;
}

#[tokio::test]
async fn api_put_keeps_good_points_and_answers_as_opentsdb() {
    let mut r = run(cfg(), 1000).await;
    let plain = post(r.addr, "/api/put", MIXED).await;
    assert_eq!(plain.status, 400);
    assert_eq!(
        plain.body,
        r#"{"error":{"code":400,"message":"One or more data points had errors","details":"Please see the TSD logs or append \"details\" to the put request"}}"#
    );
    let summary = post(r.addr, "/api/put?summary", MIXED).await;
    assert_eq!(summary.status, 400);
    assert_eq!(summary.body, r#"{"success":1,"failed":1}"#);
    let details = post(r.addr, "/api/put?summary=false&details=0", MIXED).await;
    assert_eq!(details.status, 400);
    assert_eq!(
        details.body,
        r#"{"success":1,"failed":1,"errors":[{"datapoint":{"metric":"b","timestamp":1700000000,"value":"x","tags":{"h":"x"}},"error":"Unable to parse value to a number"}]}"#
    );
    let ok = post(r.addr, "/api/put?summary", GOOD).await;
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (200, r#"{"success":1,"failed":0}"#)
    );
    let ok = post(r.addr, "/api/put?details", GOOD).await;
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (200, r#"{"success":1,"failed":0,"errors":[]}"#)
    );
    // The good point of each mixed body was kept.
    let got = r.wait_for(5).await;
    let names: Vec<_> = got.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["a", "a", "a", "sys.cpu.nice", "sys.cpu.nice"]);
    r.stop().await;
}

#[tokio::test]
async fn api_put_refuses_unreadable_bodies_whole() {
    let mut r = run(cfg(), 1000).await;
    let cases = [
        (
            "",
            r#"{"error":{"code":400,"message":"Missing request content"}}"#,
        ),
        (
            "[]",
            r#"{"error":{"code":400,"message":"No datapoints found in content"}}"#,
        ),
        (
            "put m 1 1",
            r#"{"error":{"code":400,"message":"The JSON must start as an object or an array"}}"#,
        ),
    ];
    for (body, want) in cases {
        let reply = post(r.addr, "/api/put", body).await;
        assert_eq!((reply.status, reply.body.as_str()), (400, want), "{body:?}");
    }
    let reply = post(
        r.addr,
        "/api/put",
        r#"[{"metric":"a","timestamp":1,"value":1},"#,
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.body.starts_with(
            r#"{"error":{"code":400,"message":"Unable to parse the given JSON","details":""#
        ),
        "{}",
        reply.body
    );
    assert!(r.take().is_empty());
    r.stop().await;
}

#[tokio::test]
async fn api_put_reads_gzip_bodies() {
    let mut r = run(cfg(), 1000).await;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(GOOD.as_bytes()).unwrap();
    let gz = e.finish().unwrap();
    let reply = http(
        r.addr,
        "POST",
        "/api/put",
        &[
            ("Content-Encoding", "gzip"),
            ("Content-Type", "application/json"),
        ],
        &gz,
    )
    .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(r.wait_for(1).await.len(), 1);
    r.stop().await;
}

#[tokio::test]
async fn api_put_past_the_body_limit_is_413() {
    let mut c = cfg();
    c.max_body_bytes = 100;
    let mut r = run(c, 1000).await;
    let body = format!("[{}]", [GOOD; 5].join(","));
    let reply = post(r.addr, "/api/put", &body).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(
        reply.body,
        r#"{"error":{"code":413,"message":"Request Entity Too Large","details":"request body larger than 100 bytes"}}"#
    );
    assert!(r.take().is_empty());
    r.stop().await;
}

#[tokio::test]
async fn api_put_answers_503_with_retry_after_when_the_sink_stays_full() {
    let mut c = cfg();
    c.queue_wait_ms = 50;
    let mut r = run(c, 1).await;
    assert_eq!(post(r.addr, "/api/put", GOOD).await.status, 204);
    let reply = post(r.addr, "/api/put", GOOD).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.header("Retry-After"), Some("1"));
    assert_eq!(
        reply.body,
        r#"{"error":{"code":503,"message":"Please throttle writes","details":"sink `out` has no room in its queue; retry later"}}"#
    );
    // Only the first body was queued.
    assert_eq!(r.take().len(), 1);
    r.stop().await;
}

#[tokio::test]
async fn wrong_methods_unknown_paths_and_version() {
    let r = run(cfg(), 1000).await;
    let reply = http(r.addr, "GET", "/api/put", &[], b"").await;
    assert_eq!(reply.status, 405);
    assert_eq!(
        reply.body,
        r#"{"error":{"code":405,"message":"Method not allowed","details":"The HTTP method [GET] is not permitted for this endpoint"}}"#
    );
    let reply = http(r.addr, "POST", "/api/version", &[], b"").await;
    assert_eq!(reply.status, 405);
    let reply = http(r.addr, "GET", "/api/version", &[], b"").await;
    assert_eq!(reply.status, 200);
    let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(v["version"], "2.4.1");
    assert_eq!(v["full_revision"], "conflux-0.1.0");
    assert_eq!(
        http(r.addr, "GET", "/api/query", &[], b"").await.status,
        404
    );
    r.stop().await;
}

#[tokio::test]
async fn the_first_byte_picks_the_protocol_per_connection() {
    let mut r = run(cfg(), 1000).await;
    // Interleave an open telnet connection with HTTP requests on the same port.
    let mut telnet = TcpStream::connect(r.addr).await.unwrap();
    telnet.write_all(b"put t 1700000000 1\n").await.unwrap();
    assert_eq!(post(r.addr, "/api/put", GOOD).await.status, 204);
    telnet.write_all(b"version\n").await.unwrap();
    assert_eq!(read_n(&mut telnet, VERSION.len()).await, VERSION);
    let mut names: Vec<_> = r.wait_for(2).await.into_iter().map(|m| m.name).collect();
    names.sort();
    assert_eq!(names, ["sys.cpu.nice", "t"]);
    // A lowercase first byte is telnet even when it looks like HTTP.
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"get / HTTP/1.1\r\n\r\n").await.unwrap();
    assert_eq!(
        read_n(&mut s, "unknown command: get.  Try `help'.\n".len()).await,
        "unknown command: get.  Try `help'.\n"
    );
    r.stop().await;
}

#[test]
fn config_defaults_and_problems() {
    let c: Config = toml_like(r#"{"address":"127.0.0.1:4242"}"#);
    assert_eq!(c, Config::new("127.0.0.1:4242".parse().unwrap()));
    assert!(c.problems().is_empty());
    assert_eq!(c.max_tags, 64);
    assert_eq!(
        (c.max_tags_per_metric, c.max_series_key_bytes),
        (256, 65_535)
    );
    assert!(c.telnet_errors);
    assert_eq!(c.max_line_bytes, 65_536);
    let bad = Config {
        max_line_bytes: 0,
        require_tags: true,
        max_tags: 0,
        characters: conflux_opentsdb::codec::Characters::AnyButSpace,
        allow_special_chars: ": ".into(),
        opentsdb_version: String::new(),
        ..c
    };
    assert_eq!(
        bad.problems(),
        vec![
            "`max_line_bytes` must be at least 1",
            "`require_tags = true` needs `max_tags` of at least 1",
            "`allow_special_chars` applies to `characters = \"opentsdb\"` only",
            "`allow_special_chars` must not hold whitespace",
            "`opentsdb_version` must be a non-empty line of text",
        ]
    );
    let zero = Config {
        max_tags_per_metric: 0,
        max_series_key_bytes: 0,
        ..Config::new("127.0.0.1:4242".parse().unwrap())
    };
    assert_eq!(
        zero.problems(),
        vec![
            "`max_tags_per_metric` must be at least 1",
            "`max_series_key_bytes` must be at least 1",
        ]
    );
    let err = serde_json::from_str::<Config>(r#"{"address":"127.0.0.1:4242","max_tag":3}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_tag"), "{err}");
    let k: Config = toml_like(
        r#"{"address":"127.0.0.1:4242","timestamp_rule":"kairosdb","characters":"any_but_space"}"#,
    );
    assert_eq!(
        k.parse_options().timestamps,
        conflux_core::time::SecondsOrMillis::Kairosdb
    );
}

fn toml_like(json: &str) -> Config {
    serde_json::from_str(json).unwrap()
}

#[tokio::test]
async fn telnet_and_api_put_refuse_points_past_the_limits() {
    let mut c = cfg();
    c.max_tags_per_metric = 2;
    c.max_series_key_bytes = 12;
    let mut r = run(c, 1000).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    // `b,host=web012` is 13 bytes; `c` has three tags (OpenTSDB's 64 allow them).
    s.write_all(
        b"put a 1700000000 1 h=1\nput b 1700000000 2 host=web012\nput c 1700000000 3 x=1 y=2 z=3\nexit\n",
    )
    .await
    .unwrap();
    assert_eq!(
        read_to_end(&mut s).await,
        "put: illegal argument: series key too long (max 12 bytes)\n\
         put: illegal argument: too many tags (max 2)\n"
    );
    assert_eq!(
        r.wait_for(1).await,
        vec![point("a", 1_700_000_000, 1i64).tag("h", "1")]
    );
    let body = r#"[{"metric":"d","timestamp":1700000000,"value":4,"tags":{"h":"1"}},{"metric":"e","timestamp":1700000000,"value":5,"tags":{"x":"1","y":"2","z":"3"}}]"#;
    let reply = post(r.addr, "/api/put?details", body).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.body,
        r#"{"success":1,"failed":1,"errors":[{"datapoint":{"metric":"e","timestamp":1700000000,"value":"5","tags":{"x":"1","y":"2","z":"3"}},"error":"too many tags (max 2)"}]}"#
    );
    assert_eq!(
        r.wait_for(1).await,
        vec![point("d", 1_700_000_000, 4i64).tag("h", "1")]
    );
    r.stop().await;
}
