//! The `kairosdb` sink and the shared HTTP client. No KairosDB server can run
//! here, so the sink is proven against golden bodies built from KairosDB's
//! documentation, against Conflux's own KairosDB listener (which implements
//! KairosDB's parser and validation), and against a small stub server for
//! faults: 500 then success, 400, a stall past the timeout, a reset, a
//! refused connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Captured, config, read_request};
use conflux_core::component::{CancellationToken, ListenerContext};
use conflux_core::filter::Filter;
use conflux_core::pipeline::{BatchView, QueueConfig, SinkSpec, WhenFull};
use conflux_core::{Batch, Pipeline, Value};
use conflux_sinks::endpoint::NetConfig;
use conflux_sinks::kairosdb::{Config, KairosdbSink};
use conflux_sinks::{Sink, SinkError};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kairosdb")
        .join(name)
}

fn new_sink(cfg: &(NetConfig, Config)) -> KairosdbSink {
    conflux_sinks::kairosdb::build(&cfg.0, &cfg.1).unwrap()
}

/// A KairosDB body parsed with Conflux's codec (the listener's parser).
fn kairos_batch(body: &[u8]) -> Batch {
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    conflux_kairosdb::codec::parse(
        body,
        &conflux_kairosdb::codec::ParseOptions::default(),
        &mut batch,
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors:?}");
    batch
}

fn influx_batch(body: &[u8]) -> Batch {
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    conflux_influx::codec::parse(
        body,
        &conflux_influx::codec::ParseOptions::default(),
        &mut batch,
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors:?}");
    batch
}

fn views(batch: Batch) -> Vec<BatchView> {
    vec![BatchView::whole(Arc::new(batch))]
}

// ---- a stub server: raw HTTP/1.1, keep-alive, scripted answers ----

#[derive(Debug, Clone)]
enum Reply {
    Status(u16, &'static str, Option<&'static str>),
    Stall,
    Reset,
}

impl Captured {
    /// The JSON body as sent, gunzipped when it went out gzip'd.
    fn json(&self) -> String {
        self.text()
    }
}

#[derive(Clone)]
struct Stub {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Captured>>>,
    connections: Arc<AtomicUsize>,
}

/// Answers with `script` in order, then 204 for ever.
async fn stub(script: Vec<Reply>) -> Stub {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stub = Stub {
        addr: listener.local_addr().unwrap(),
        requests: Arc::default(),
        connections: Arc::default(),
    };
    let script = Arc::new(Mutex::new(script));
    let s = stub.clone();
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                return;
            };
            s.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(conn, s.clone(), script.clone()));
        }
    });
    stub
}

async fn serve(mut conn: TcpStream, s: Stub, script: Arc<Mutex<Vec<Reply>>>) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut conn, &mut buf).await {
        s.requests.lock().unwrap().push(req);
        let reply = {
            let mut sc = script.lock().unwrap();
            if sc.is_empty() {
                Reply::Status(204, "", None)
            } else {
                sc.remove(0)
            }
        };
        match reply {
            Reply::Status(code, body, retry) => {
                let mut resp = format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\n", body.len());
                if let Some(r) = retry {
                    resp.push_str(&format!("Retry-After: {r}\r\n"));
                }
                resp.push_str("\r\n");
                resp.push_str(body);
                if conn.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
            Reply::Stall => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Reply::Reset => return,
        }
    }
}

fn url(stub: &Stub) -> String {
    format!("http://{}/api/v1/datapoints", stub.addr)
}

// ---- golden bodies ----

#[tokio::test]
async fn the_documented_example_goes_out_as_documented() {
    let s = stub(vec![]).await;
    let mut sink = new_sink(&config(&url(&s), ""));
    let input = std::fs::read(fixture("docs_example.in.json")).unwrap();
    let sent = sink.send(&views(kairos_batch(&input))).await.unwrap();
    assert_eq!((sent.metrics, sent.points), (4, 4));
    let reqs = s.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert!(
        r.head.starts_with("POST /api/v1/datapoints HTTP/1.1\r\n"),
        "{}",
        r.head
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("authorization"), None);
    assert_eq!(sent.bytes, r.body.len());
    let want = std::fs::read_to_string(fixture("docs_example.body.json")).unwrap();
    assert_eq!(r.json(), want.trim_end());
}

#[tokio::test]
async fn telegraf_metrics_follow_the_naming_policy_with_gzip_and_basic_auth() {
    let s = stub(vec![]).await;
    let cfg = config(
        &url(&s),
        "gzip = true\nusername = \"Aladdin\"\npassword = \"open sesame\"",
    );
    let mut sink = new_sink(&cfg);
    let input = std::fs::read(fixture("telegraf_cpu.in.lp")).unwrap();
    let sent = sink.send(&views(influx_batch(&input))).await.unwrap();
    assert_eq!((sent.metrics, sent.points), (3, 6));
    let r = s.requests.lock().unwrap()[0].clone();
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(
        r.header("authorization"),
        Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    );
    let want = std::fs::read_to_string(fixture("telegraf_cpu.body.json")).unwrap();
    assert_eq!(r.json(), want.trim_end());
}

#[tokio::test]
async fn a_batch_of_nothing_sendable_sends_nothing_and_counts_the_skips() {
    let s = stub(vec![]).await;
    let mut sink = new_sink(&config(&url(&s), ""));
    let batch: Batch = [conflux_core::Metric::new("m").field("v", f64::NAN)]
        .into_iter()
        .collect();
    let sent = sink.send(&views(batch)).await.unwrap();
    assert_eq!(sent.points, 0);
    assert_eq!(sent.skipped.non_finite, 1);
    assert!(s.requests.lock().unwrap().is_empty());
}

// ---- against Conflux's own KairosDB listener ----

#[tokio::test]
async fn values_and_ttl_arrive_exactly_at_a_kairosdb_listener() {
    let (pipeline, mut rxs) = Pipeline::new(vec![SinkSpec {
        name: "probe".into(),
        filter: Filter::default(),
        queue: QueueConfig {
            max_metrics: 10_000,
            when_full: WhenFull::Block,
        },
        spool: None,
        max_new_series_per_hour: None,
    }]);
    let shutdown = CancellationToken::new();
    let ctx = ListenerContext {
        name: "kairos".into(),
        dialect: "kairosdb",
        ingest: pipeline.ingest("kairos"),
        shutdown: shutdown.clone(),
    };
    let lcfg: conflux_kairosdb::listener::Config =
        serde_json::from_str(r#"{"address":"127.0.0.1:0"}"#).unwrap();
    let routes = conflux_kairosdb::listener::router(&lcfg, ctx).unwrap();
    let server = conflux_net::http::HttpServer::bind(
        lcfg.address,
        conflux_net::http::HttpConfig::default(),
        conflux_net::Labels::new("kairos", "kairosdb"),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.run(routes, shutdown.clone()));

    // Every value type, a TTL, odd characters, a sub-millisecond timestamp.
    let mut batch = Batch::new();
    let mut add = |name: &str, v: Value<'_>, ts: i64, ttl: u32| {
        let mut b = batch.metric(name);
        b.tag("host", "h \"1\"")
            .tag("dc", "é")
            .field("value", v)
            .ttl(ttl);
        b.finish(ts).unwrap();
    };
    add("f", Value::Float(0.1), 1_700_000_000_123_456_789, 300);
    add("f", Value::Float(-1e300), 1_700_000_000_124_000_000, 300);
    add("i", Value::Int(i64::MIN), -1_000_000, 0);
    add("u", Value::UInt(u64::MAX), 0, 0);
    add("s", Value::Str("123"), 5_000_000, 60);
    add("s", Value::Str("line\nbreak"), 6_000_000, 60);
    add("b", Value::Bool(false), 7_000_000, 0);

    let cfg = config(&format!("http://{addr}/api/v1/datapoints"), "gzip = true");
    let mut sink = new_sink(&cfg);
    let sent = sink.send(&views(batch)).await.unwrap();
    assert_eq!(sent.points, 7);
    let view = rxs[0].try_recv().expect("the listener queued the batch");
    let mut got: Vec<String> = view
        .iter()
        .map(|m| {
            format!(
                "{} {:?} {:?} {} {:?}",
                m.name(),
                m.tags().collect::<Vec<_>>(),
                m.fields().next().unwrap().1,
                m.timestamp(),
                m.ttl()
            )
        })
        .collect();
    got.sort();
    let tags = r#"[("dc", "é"), ("host", "h \"1\"")]"#;
    assert_eq!(
        got,
        [
            format!("b {tags} Int(0) 7000000 None"),
            format!("f {tags} Float(-1e300) 1700000000124000000 Some(300)"),
            // Milliseconds: the sub-millisecond part is dropped.
            format!("f {tags} Float(0.1) 1700000000123000000 Some(300)"),
            format!("i {tags} Int(-9223372036854775808) -1000000 None"),
            format!("s {tags} Str(\"123\") 5000000 Some(60)"),
            format!("s {tags} Str(\"line\\nbreak\") 6000000 Some(60)"),
            // Past a Java long: sent as a double.
            format!("u {tags} Float(1.8446744073709552e19) 0 None"),
        ]
    );
    shutdown.cancel();
}

// ---- faults ----

fn batch() -> Vec<BatchView> {
    views(kairos_batch(
        br#"{"name":"m","timestamp":1,"value":1,"tags":{"a":"b"}}"#,
    ))
}

#[tokio::test]
async fn server_errors_are_retryable_with_retry_after_and_connections_are_reused() {
    let s = stub(vec![Reply::Status(500, "boom", Some("3"))]).await;
    let mut sink = new_sink(&config(&url(&s), ""));
    let err = sink.send(&batch()).await.unwrap_err();
    assert_eq!(
        err,
        SinkError::Retryable {
            message: "500 Internal Server Error: boom".into(),
            retry_after: Some(Duration::from_secs(3)),
        }
    );
    // The retry succeeds, on the same keep-alive connection, with the same body.
    sink.send(&batch()).await.unwrap();
    sink.send(&batch()).await.unwrap();
    let reqs = s.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].body, reqs[1].body);
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn client_errors_are_rejected_with_the_servers_message() {
    let body = r#"{"errors":["metric[0](name=m).tags count must be greater than or equal to 1."]}"#;
    let s = stub(vec![Reply::Status(400, body, None)]).await;
    let mut sink = new_sink(&config(&url(&s), ""));
    let err = sink.send(&batch()).await.unwrap_err();
    assert_eq!(
        err,
        SinkError::Rejected {
            message: format!("400 Bad Request: {body}")
        }
    );
    // 429 means "later".
    let s = stub(vec![Reply::Status(429, "", None)]).await;
    let mut sink = new_sink(&config(&url(&s), ""));
    assert!(matches!(
        sink.send(&batch()).await,
        Err(SinkError::Retryable { .. })
    ));
}

#[tokio::test]
async fn a_stall_past_the_timeout_is_retryable() {
    let s = stub(vec![Reply::Stall]).await;
    let mut sink = new_sink(&config(&url(&s), "timeout_ms = 200"));
    let err = sink.send(&batch()).await.unwrap_err();
    assert_eq!(err, SinkError::retry("no answer within 200 ms"));
    // The stalled connection is not reused: the next request gets through.
    sink.send(&batch()).await.unwrap();
    assert_eq!(s.requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_reset_connection_is_retryable() {
    let s = stub(vec![Reply::Reset]).await;
    let mut sink = new_sink(&config(&url(&s), ""));
    let err = sink.send(&batch()).await.unwrap_err();
    assert!(
        matches!(&err, SinkError::Retryable { message, .. } if message.starts_with("request failed")),
        "{err:?}"
    );
    sink.send(&batch()).await.unwrap();
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    // Bind and drop: nothing listens there now.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut sink = new_sink(&config(&format!("http://{addr}/api/v1/datapoints"), ""));
    let err = sink.send(&batch()).await.unwrap_err();
    assert!(
        matches!(&err, SinkError::Retryable { message, .. } if message.starts_with("connect: ")),
        "{err:?}"
    );
}
