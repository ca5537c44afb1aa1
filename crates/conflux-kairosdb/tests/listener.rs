//! The listener over raw HTTP on a port-0 socket: every status code it
//! promises, the shape of every answer, and what reaches the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use conflux_core::component::{CancellationToken, ListenerContext};
use conflux_core::filter::Filter;
use conflux_core::pipeline::{QueueConfig, SinkReceiver, SinkSpec, WhenFull};
use conflux_core::{Pipeline, Value};
use conflux_kairosdb::listener::{Config, router};
use conflux_net::Labels;
use conflux_net::http::{HttpConfig, HttpServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Harness {
    addr: SocketAddr,
    rx: SinkReceiver,
    shutdown: CancellationToken,
    // Kept alive so that the ingest handle's queue stays open.
    _pipeline: Pipeline,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A listener configured with `extra` (JSON object members) feeding one sink
/// queue of `queue` metrics.
async fn start(extra: &str, queue: usize) -> Harness {
    let cfg: Config = serde_json::from_str(&format!(
        r#"{{"address":"127.0.0.1:0"{}{extra}}}"#,
        if extra.is_empty() { "" } else { "," }
    ))
    .unwrap();
    let (pipeline, mut rxs) = Pipeline::new(vec![SinkSpec {
        name: "probe".into(),
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
        name: "kairos".into(),
        dialect: "kairosdb",
        ingest: pipeline.ingest("kairos"),
        shutdown: shutdown.clone(),
    };
    let routes = router(&cfg, ctx).expect("the listener serves HTTP routes");
    let http = HttpConfig {
        max_body_bytes: cfg.max_body_bytes,
        ..HttpConfig::default()
    };
    let server = HttpServer::bind(cfg.address, http, Labels::new("kairos", "kairosdb"))
        .await
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.run(routes, shutdown.clone()));
    Harness {
        addr,
        rx: rxs.remove(0),
        shutdown,
        _pipeline: pipeline,
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One request on a fresh connection, raw bytes in, raw bytes out.
async fn raw(addr: SocketAddr, request: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response {text:?}"));
    Resp {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    raw(addr, &bytes).await
}

async fn post(h: &Harness, headers: &[&str], body: &[u8]) -> Resp {
    request(h.addr, "POST", "/api/v1/datapoints", headers, body).await
}

/// Every metric the pipeline received so far, one line each.
fn received(h: &mut Harness) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(view) = h.rx.try_recv() {
        for m in view.iter() {
            let tags: Vec<String> = m.tags().map(|(k, v)| format!("{k}={v}")).collect();
            let (_, v) = m.fields().next().unwrap();
            let v = match v {
                Value::Str(s) => format!("{s:?}"),
                Value::Int(i) => i.to_string(),
                Value::Float(f) => format!("{f:?}"),
                other => format!("{other:?}"),
            };
            let ttl = m.ttl().map(|t| format!(" ttl={t}")).unwrap_or_default();
            out.push(format!(
                "{} {} {v} {}{ttl}",
                m.name(),
                tags.join(","),
                m.timestamp()
            ));
        }
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const ARRAY: &str = r#"[{"name":"archive_file_tracked","datapoints":[[1359788400000,123],[1359788300000,13.2]],"tags":{"host":"server1","data_center":"DC1"},"ttl":300},{"name":"archive_file_search","timestamp":1359786400000,"value":321,"tags":{"host":"server2"}}]"#;

#[tokio::test]
async fn both_shapes_answer_204_with_no_body() {
    let mut h = start("", 1000).await;
    let r = post(&h, &["Content-Type: application/json"], ARRAY.as_bytes()).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.body, "");
    let r = post(
        &h,
        &[],
        br#"{"name":"one","time":1,"value":"up","tags":{"a":"b"}}"#,
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        received(&mut h),
        [
            "archive_file_tracked data_center=DC1,host=server1 123 1359788400000000000 ttl=300",
            "archive_file_tracked data_center=DC1,host=server1 13.2 1359788300000000000 ttl=300",
            "archive_file_search host=server2 321 1359786400000000000",
            "one a=b \"up\" 1000000",
        ]
    );
}

#[tokio::test]
async fn bad_objects_are_listed_and_good_ones_kept() {
    let mut h = start("", 1000).await;
    let body = r#"[{"name":"good","timestamp":1,"value":1,"tags":{"a":"b"}},{"name":"","timestamp":1,"value":2,"tags":{"a":"b"}},{"name":"m","timestamp":1,"value":3},{"name":"c","type":"complex-number","timestamp":1,"value":4,"tags":{"a":"b"}}]"#;
    let r = post(&h, &[], body.as_bytes()).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=UTF-8")
    );
    assert_eq!(
        r.body,
        r#"{"errors":["metric[1].name may not be empty.","metric[2](name=m).tags count must be greater than or equal to 1.","Unregistered data point type 'complex-number'"]}"#
    );
    assert_eq!(received(&mut h), ["good a=b 1 1000000"]);
}

#[tokio::test]
async fn json_syntax_errors_are_400_with_the_data_before_them_kept() {
    let mut h = start("", 1000).await;
    let r = post(&h, &[], b"").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            400,
            r#"{"errors":["Invalid json. No content due to end of input."]}"#
        )
    );
    let r = post(&h, &[], b"42").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, r#"{"errors":["Invalid start of json."]}"#)
    );
    let r = post(
        &h,
        &[],
        br#"[{"name":"kept","timestamp":1,"value":1,"tags":{"a":"b"}},{"name":"x","value": }]"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        r#"{"errors":["expected value at line 1 column 80"]}"#
    );
    assert_eq!(received(&mut h), ["kept a=b 1 1000000"]);
}

#[tokio::test]
async fn gzip_by_content_encoding_and_by_the_deprecated_content_type() {
    let mut h = start("", 1000).await;
    let zipped = gzip(br#"{"name":"ce","timestamp":1,"value":1,"tags":{"a":"b"}}"#);
    let r = post(&h, &["Content-Encoding: gzip"], &zipped).await;
    assert_eq!(r.status, 204, "{r:?}");
    let zipped = gzip(br#"{"name":"ct","timestamp":2,"value":2,"tags":{"a":"b"}}"#);
    let r = post(&h, &["Content-Type: application/gzip"], &zipped).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(received(&mut h), ["ce a=b 1 1000000", "ct a=b 2 2000000"]);
    let r = post(&h, &["Content-Encoding: gzip"], b"not gzip").await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body
            .starts_with(r#"{"errors":["invalid request body encoding: gzip"#),
        "{r:?}"
    );
    let r = post(&h, &["Content-Encoding: br"], b"x").await;
    assert_eq!(r.status, 415, "{r:?}");
}

#[tokio::test]
async fn bodies_past_the_limit_get_413_while_reading() {
    let mut h = start(r#""max_body_bytes":100"#, 1000).await;
    let big = format!(
        r#"{{"name":"m","timestamp":1,"value":1,"tags":{{"a":"{}"}}}}"#,
        "x".repeat(200)
    );
    let r = post(&h, &[], big.as_bytes()).await;
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(
        r.body,
        r#"{"errors":["request body larger than 100 bytes"]}"#
    );
    // Chunked, so the size is only known while reading; and a gzip bomb.
    let mut req = b"POST /api/v1/datapoints HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for part in big.as_bytes().chunks(50) {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw(h.addr, &req).await.status, 413);
    let bomb = gzip(&vec![b' '; 10_000]);
    assert!(bomb.len() < 100);
    assert_eq!(
        post(&h, &["Content-Encoding: gzip"], &bomb).await.status,
        413
    );
    assert!(received(&mut h).is_empty());
}

#[tokio::test]
async fn a_full_blocking_sink_gets_503_with_retry_after() {
    let mut h = start(r#""queue_wait_ms":50"#, 1).await;
    let one = br#"{"name":"a","timestamp":1,"value":1,"tags":{"a":"b"}}"#;
    assert_eq!(post(&h, &[], one).await.status, 204);
    // The queue holds one metric and nobody takes it: the next write waits, then 503.
    let r = post(&h, &[], one).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        r.body,
        r#"{"errors":["request throttled, queue full: sink `probe` has no room"]}"#
    );
    assert_eq!(received(&mut h).len(), 1);
    assert_eq!(post(&h, &[], one).await.status, 204);
}

#[tokio::test]
async fn version_and_health_endpoints() {
    let h = start(r#""kairosdb_version":"1.2.2""#, 10).await;
    let r = request(h.addr, "GET", "/api/v1/version", &[], b"").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, r#"{"version":"KairosDB 1.2.2"}"#)
    );
    let r = request(h.addr, "GET", "/api/v1/health/check", &[], b"").await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    let r = request(h.addr, "GET", "/api/v1/health/status", &[], b"").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, r#"["JVM-Thread-Deadlock: OK","Datastore-Query: OK"]"#)
    );
    let r = request(h.addr, "GET", "/api/v1/datapoints", &[], b"").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    let r = request(h.addr, "POST", "/api/v1/datapoint", &[], b"[]").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn basic_credentials_when_configured() {
    let mut h = start(
        r#""credentials":[{"username":"kairos","password":"s3cret"}]"#,
        10,
    )
    .await;
    let body = br#"{"name":"a","timestamp":1,"value":1,"tags":{"a":"b"}}"#;
    let r = post(&h, &[], body).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"kairosdb\"")
    );
    // kairos:wrong
    let r = post(&h, &["Authorization: Basic a2Fpcm9zOndyb25n"], body).await;
    assert_eq!(r.status, 401);
    // kairos:s3cret
    let r = post(&h, &["Authorization: Basic a2Fpcm9zOnMzY3JldA=="], body).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(received(&mut h).len(), 1);
    // Health checks stay open for load balancers.
    let r = request(h.addr, "GET", "/api/v1/health/check", &[], b"").await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn require_tags_can_be_turned_off() {
    let mut h = start(r#""require_tags":false"#, 10).await;
    let r = post(&h, &[], br#"{"name":"bare","timestamp":1,"value":1}"#).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(received(&mut h), ["bare  1 1000000"]);
}

#[test]
fn config_defaults_and_problems() {
    let c: Config = serde_json::from_str(r#"{"address":"127.0.0.1:8080"}"#).unwrap();
    assert_eq!(c.max_body_bytes, 32 * 1024 * 1024);
    assert_eq!(c.queue_wait_ms, 2_000);
    assert!(c.require_tags);
    assert_eq!(c.kairosdb_version, "1.3.0");
    assert!(c.problems().is_empty());
    let bad: Config = serde_json::from_str(
        r#"{"address":"127.0.0.1:8080","max_body_bytes":0,"max_connections":0,"kairosdb_version":"","credentials":[{"username":"","password":"x"}]}"#,
    )
    .unwrap();
    assert_eq!(bad.problems().len(), 4, "{:?}", bad.problems());
    assert_eq!(
        (c.max_tags_per_metric, c.max_series_key_bytes),
        (256, 65_535)
    );
    let zero: Config = serde_json::from_str(
        r#"{"address":"127.0.0.1:8080","max_tags_per_metric":0,"max_series_key_bytes":0}"#,
    )
    .unwrap();
    assert_eq!(
        zero.problems(),
        [
            "`max_tags_per_metric` must be at least 1",
            "`max_series_key_bytes` must be at least 1"
        ]
    );
    assert!(serde_json::from_str::<Config>(r#"{"address":"127.0.0.1:8080","adress":1}"#).is_err());
}

#[tokio::test]
async fn objects_past_the_limits_are_listed_and_the_others_kept() {
    let mut h = start(r#""max_tags_per_metric":2,"max_series_key_bytes":12"#, 1000).await;
    let body = r#"[{"name":"good","timestamp":1,"value":1,"tags":{"a":"b"}},{"name":"wide","datapoints":[[1,2],[2,2]],"tags":{"a":"1","b":"2","c":"3"}},{"name":"m","timestamp":1,"value":3,"tags":{"host":"web012"}}]"#;
    let r = post(&h, &[], body.as_bytes()).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.body,
        r#"{"errors":["metric[1](name=wide).tags count must be less than or equal to 2.","metric[2](name=m).series key length must be less than or equal to 12 bytes."]}"#
    );
    assert_eq!(received(&mut h), ["good a=b 1 1000000"]);
}
