//! The `prometheus` sink against the real receivers it targets, started by
//! `conflux-testkit`: Prometheus (2.42, `--web.enable-remote-write-receiver`)
//! and VictoriaMetrics (1.79). Every sink is built from TOML with
//! `prometheus::build` and driven through the `Sink` trait with views made
//! by a `Pipeline`, as the daemon does. What is read back is compared
//! exactly: series names, labels, values (bit for bit) and millisecond
//! timestamps.
//!
//! The tests named `*_behaviour` post hand-made requests (encoded by prost,
//! not by the sink) and pin what each server does with input the encoder
//! is careful never to send: they are the reason for its rules. A small stub
//! server checks the request headers and the retry of a split batch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::pipeline_views as views;
use common::{Captured, read_request};
use conflux_core::{Batch, Metric, Value};
use conflux_sinks::prometheus::{self, PrometheusSink};
use conflux_sinks::{Sent, Sink, SinkError};
use conflux_testkit::prometheus::Prometheus;
use conflux_testkit::victoria::Victoria;
use prost::Message as _;
use serde_json::Value as Json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

// ---- remote write 1.0 messages (prost: an encoder independent of the sink's) ----

#[derive(Clone, PartialEq, prost::Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<Sample>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct Label {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}
#[derive(Clone, PartialEq, prost::Message)]
struct Sample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

fn ts(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|(v, t)| Sample {
                value: *v,
                timestamp: *t,
            })
            .collect(),
    }
}

/// POST a hand-made request the way a remote-write sender does.
fn post_raw(addr: SocketAddr, series: Vec<TimeSeries>) -> (u16, String) {
    let raw = WriteRequest { timeseries: series }.encode_to_vec();
    let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
    let r = conflux_testkit::http_request(
        addr,
        "POST",
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &body,
    )
    .unwrap();
    (r.status, r.text().trim().to_owned())
}

// ---- the sink ----

fn rt() -> Runtime {
    common::multi_thread_runtime(2)
}

fn sink(url: &str, extra: &str) -> PrometheusSink {
    let (net, cfg) = common::config(url, extra);
    prometheus::build(&net, &cfg).unwrap()
}

/// `new_batch` then `send`, as the runner does for a first attempt.
async fn send(sink: &mut PrometheusSink, batch: Batch) -> Result<Sent, SinkError> {
    let v = views(batch).await;
    sink.new_batch();
    sink.send(&v).await
}

/// Now, in whole milliseconds, minus `ago_ms`: receivers take recent samples.
fn ms_ago(ago_ms: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now - ago_ms
}

/// A series as compared: labels (`__name__` included) and samples as
/// (value bits, ms).
type Series = (BTreeMap<String, String>, Vec<(u64, i64)>);

fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> Series {
    (
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        samples.iter().map(|(v, t)| (v.to_bits(), *t)).collect(),
    )
}

/// One batch with every value type, tags that need sanitizing or are empty,
/// a `value` field, and a series repeated at out-of-order timestamps; and
/// what a receiver must hold afterwards (strings skipped).
fn mixed_batch(prefix: &str, base_ms: i64) -> (Batch, Vec<Series>) {
    // Sub-millisecond nanoseconds are cut.
    let at = |ms: i64| ms * 1_000_000 + 654_321;
    let n = |s: &str| format!("{prefix}_{s}");
    let mut batch = Batch::new();
    let mut b = batch.metric(&n("cpu"));
    b.tag("host", "web-1")
        .tag("data.center", "eu-west")
        .tag("9rack", "r1")
        .tag("empty", "")
        .field("usage_idle", Value::Float(97.5))
        .field("count", Value::Int(-42))
        // Past i64::MAX, and exact in VictoriaMetrics' decimal storage
        // (which returns u64::MAX as f64 two ulps off).
        .field("bytes", Value::UInt(10_000_000_000_000_000_000))
        .field("up", Value::Bool(true))
        .field("down", Value::Bool(false))
        .field("state", Value::Str("ok"))
        .field("value", Value::Float(1.25));
    b.finish(at(base_ms)).unwrap();
    let mut b = batch.metric(&n("disk"));
    b.tag("path", "/var/lib")
        .field("used percent", Value::Float(12.5));
    b.finish(at(base_ms)).unwrap();
    // One series three times, out of order.
    for (v, d) in [(3.0, 3000), (1.0, 1000), (2.0, 2000)] {
        let mut b = batch.metric(&n("seq"));
        b.tag("host", "a").field("value", Value::Float(v));
        b.finish(at(base_ms + d)).unwrap();
    }
    let cpu = |name: &str, v: f64| {
        series(
            &[
                ("__name__", &n(name)),
                ("data_center", "eu-west"),
                ("host", "web-1"),
                ("rack", "r1"),
            ],
            &[(v, base_ms)],
        )
    };
    let want = vec![
        cpu("cpu", 1.25),
        cpu("cpu_bytes", 1e19),
        cpu("cpu_count", -42.0),
        cpu("cpu_down", 0.0),
        cpu("cpu_up", 1.0),
        cpu("cpu_usage_idle", 97.5),
        series(
            &[("__name__", &n("disk_used_percent")), ("path", "/var/lib")],
            &[(12.5, base_ms)],
        ),
        series(
            &[("__name__", &n("seq")), ("host", "a")],
            &[
                (1.0, base_ms + 1000),
                (2.0, base_ms + 2000),
                (3.0, base_ms + 3000),
            ],
        ),
    ];
    (batch, want)
}

/// What the mixed batch's send must report: 5 metrics, 10 samples, 1 string.
fn assert_mixed_sent(sent: &Sent) {
    assert_eq!((sent.metrics, sent.points), (5, 10), "{sent:?}");
    assert_eq!(sent.skipped.string, 1);
    assert_eq!(sent.skipped.total(), 1);
    assert_eq!(sent.rejected, 0);
    assert!(sent.bytes > 0);
}

fn labels_of(metric: &Json) -> BTreeMap<String, String> {
    metric
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

/// Prometheus' range-query answer as sorted series.
fn from_prometheus(result: &[Json]) -> Vec<Series> {
    let mut out: Vec<Series> = result
        .iter()
        .map(|s| {
            let samples = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|pair| {
                    let secs = pair[0].as_f64().unwrap();
                    let value: f64 = pair[1].as_str().unwrap().parse().unwrap();
                    (value.to_bits(), (secs * 1000.0).round() as i64)
                })
                .collect();
            (labels_of(&s["metric"]), samples)
        })
        .collect();
    out.sort();
    out
}

/// VictoriaMetrics' `/api/v1/export` lines as sorted series.
fn from_victoria(lines: &[Json]) -> Vec<Series> {
    let mut out: Vec<Series> = lines
        .iter()
        .map(|s| {
            let values = s["values"].as_array().unwrap();
            let stamps = s["timestamps"].as_array().unwrap();
            let samples = values
                .iter()
                .zip(stamps)
                .map(|(v, t)| (v.as_f64().unwrap().to_bits(), t.as_i64().unwrap()))
                .collect();
            (labels_of(&s["metric"]), samples)
        })
        .collect();
    out.sort();
    out
}

// ---- Prometheus ----

#[test]
fn prometheus_stores_every_value_type_exactly() {
    let prom = Prometheus::start();
    let rt = rt();
    let url = format!("http://{}/api/v1/write", prom.http);
    let mut sink = sink(&url, "");
    let base = ms_ago(120_000);
    let (mut batch, mut want) = mixed_batch("pt", base);
    // NaN and ±Inf are written as Telegraf writes them; Prometheus keeps them.
    let mut b = batch.metric("pt_special");
    b.field("nan", Value::Float(f64::NAN))
        .field("pinf", Value::Float(f64::INFINITY))
        .field("ninf", Value::Float(f64::NEG_INFINITY));
    b.finish(base * 1_000_000).unwrap();
    for (name, v) in [
        ("pt_special_nan", f64::NAN),
        ("pt_special_pinf", f64::INFINITY),
        ("pt_special_ninf", f64::NEG_INFINITY),
    ] {
        want.push(series(&[("__name__", name)], &[(v, base)]));
    }
    want.sort();

    let sent = rt.block_on(send(&mut sink, batch)).unwrap();
    assert_eq!((sent.metrics, sent.points), (6, 13), "{sent:?}");
    assert_eq!(sent.skipped.string, 1);
    assert_eq!(sent.rejected, 0);

    let got = from_prometheus(&prom.wait_samples("{__name__=~\"pt_.*\"}", 13));
    assert_eq!(got, want, "{}", prom.log());
}

#[test]
fn prometheus_refusals_are_rejected_and_the_rest_of_a_split_batch_is_kept() {
    let prom = Prometheus::start();
    let rt = rt();
    let url = format!("http://{}/api/v1/write", prom.http);
    let mut sink = sink(&url, "max_samples_per_request = 1");
    let base = ms_ago(60_000);
    let one = |name: &str, v: f64, ms: i64| -> Batch {
        [Metric::new(name)
            .tag("k", "v")
            .field("value", v)
            .at(ms * 1_000_000)]
        .into_iter()
        .collect()
    };

    let sent = rt.block_on(send(&mut sink, one("ooo", 1.0, base))).unwrap();
    assert_eq!((sent.metrics, sent.rejected), (1, 0));

    // Older than what the series holds: 400, dropped, never retried.
    let err = rt
        .block_on(send(&mut sink, one("ooo", 2.0, base - 10_000)))
        .unwrap_err();
    assert_eq!(
        err,
        SinkError::Rejected {
            message: "400 Bad Request: out of order sample".into()
        }
    );

    // Same timestamp, another value: refused as well.
    let err = rt
        .block_on(send(&mut sink, one("ooo", 3.0, base)))
        .unwrap_err();
    assert!(
        err.to_string().contains("duplicate sample for timestamp"),
        "{err}"
    );

    // Two requests (one sample each): the refused one is counted, the other kept.
    let mut batch = one("fresh", 4.0, base);
    batch
        .push(
            &Metric::new("ooo")
                .tag("k", "v")
                .field("value", 5.0)
                .at((base - 20_000) * 1_000_000),
        )
        .unwrap();
    let sent = rt.block_on(send(&mut sink, batch)).unwrap();
    assert_eq!(
        (sent.metrics, sent.points, sent.rejected),
        (1, 1, 1),
        "{sent:?}"
    );
    assert_eq!(
        sent.rejection.as_deref(),
        Some("request 2 of 2: 400 Bad Request: out of order sample")
    );

    let got = from_prometheus(&prom.wait_samples("{k=\"v\"}", 2));
    assert_eq!(
        got,
        vec![
            series(&[("__name__", "fresh"), ("k", "v")], &[(4.0, base)]),
            series(&[("__name__", "ooo"), ("k", "v")], &[(1.0, base)]),
        ]
    );
}

/// Why the encoder groups, sorts and deduplicates: what Prometheus 2.42 does
/// with requests that do not.
#[test]
fn prometheus_behaviour() {
    let prom = Prometheus::start();
    let base = ms_ago(60_000);
    // Samples of one series out of order within a request: 204, and every
    // sample older than the newest is lost without a word.
    let unsorted = ts(
        &[("__name__", "b_unsorted")],
        &[(1.0, base + 2000), (2.0, base), (3.0, base + 1000)],
    );
    assert_eq!(post_raw(prom.http, vec![unsorted]), (204, String::new()));
    // The same series twice in one request, going back in time: the same.
    let twice = vec![
        ts(&[("__name__", "b_twice")], &[(1.0, base + 1000)]),
        ts(&[("__name__", "b_twice")], &[(2.0, base)]),
    ];
    assert_eq!(post_raw(prom.http, twice), (204, String::new()));
    // Two labels with one name: 500, which a sender retries for ever.
    let dup = ts(
        &[("__name__", "b_dup"), ("a", "1"), ("a", "2")],
        &[(1.0, base)],
    );
    assert_eq!(
        post_raw(prom.http, vec![dup]),
        (
            500,
            "label name \"a\" is not unique: invalid sample".to_owned()
        )
    );
    // Unsorted labels and an empty label value: accepted (sorted, dropped).
    let loose = ts(
        &[("zz", "1"), ("__name__", "b_loose"), ("aa", "2"), ("e", "")],
        &[(1.0, base)],
    );
    assert_eq!(post_raw(prom.http, vec![loose]), (204, String::new()));
    // One refused sample refuses the whole request.
    let mixed = vec![
        ts(&[("__name__", "b_good")], &[(1.0, base)]),
        ts(&[("__name__", "b_twice")], &[(9.0, base - 5000)]),
    ];
    assert_eq!(
        post_raw(prom.http, mixed),
        (400, "out of order sample".to_owned())
    );

    let got = from_prometheus(&prom.wait_samples("{__name__=~\"b_.*\"}", 3));
    assert_eq!(
        got,
        vec![
            series(
                &[("__name__", "b_loose"), ("aa", "2"), ("zz", "1")],
                &[(1.0, base)]
            ),
            series(&[("__name__", "b_twice")], &[(1.0, base + 1000)]),
            series(&[("__name__", "b_unsorted")], &[(1.0, base + 2000)]),
        ]
    );
}

// ---- VictoriaMetrics ----

#[test]
fn victoria_stores_every_value_type_exactly_over_split_requests() {
    let vm = Victoria::start();
    let rt = rt();
    let url = format!("http://{}/api/v1/write", vm.http);
    // 10 samples in requests of at most 3.
    let mut sink = sink(&url, "max_samples_per_request = 3");
    let (batch, mut want) = mixed_batch("vt", ms_ago(120_000));
    want.sort();

    let sent = rt.block_on(send(&mut sink, batch)).unwrap();
    assert_mixed_sent(&sent);

    let got = from_victoria(&vm.wait_export("{__name__=~\"vt_.*\"}", want.len()));
    assert_eq!(got, want, "{}", vm.log());
}

/// What VictoriaMetrics 1.79 does with what Prometheus refuses or loses.
#[test]
fn victoria_behaviour() {
    let vm = Victoria::start();
    let base = ms_ago(60_000);
    let requests = vec![
        vec![ts(
            &[("__name__", "c_unsorted")],
            &[(1.0, base + 2000), (2.0, base)],
        )],
        vec![ts(
            &[("__name__", "c_dup"), ("a", "1"), ("a", "2")],
            &[(1.0, base)],
        )],
        vec![ts(&[("__name__", "c_nan")], &[(f64::NAN, base)])],
        vec![ts(&[("__name__", "c_nan")], &[(1.0, base + 1000)])],
        vec![ts(&[("__name__", "c_unsorted")], &[(3.0, base - 1000)])],
    ];
    for r in requests {
        assert_eq!(post_raw(vm.http, r), (204, String::new()));
    }
    let got = from_victoria(&vm.wait_export("{__name__=~\"c_.*\"}", 3));
    assert_eq!(
        got,
        vec![
            // Duplicate label names: the last one wins.
            series(&[("__name__", "c_dup"), ("a", "2")], &[(1.0, base)]),
            // NaN is dropped at ingestion.
            series(&[("__name__", "c_nan")], &[(1.0, base + 1000)]),
            // Every sample kept, whatever the order.
            series(
                &[("__name__", "c_unsorted")],
                &[(3.0, base - 1000), (2.0, base), (1.0, base + 2000)]
            ),
        ]
    );
    // ±Inf is stored (and exported as the non-JSON `+Inf`).
    post_raw(
        vm.http,
        vec![ts(&[("__name__", "d_inf")], &[(f64::INFINITY, base)])],
    );
    vm.flush();
    let end = conflux_testkit::unix_now() + 86_400;
    let (status, body) = conflux_testkit::http_get(
        vm.http,
        &format!("/api/v1/export?match[]=d_inf&start=0&end={end}"),
    );
    assert_eq!(status, 200);
    assert_eq!(
        body.trim(),
        format!(
            "{{\"metric\":{{\"__name__\":\"d_inf\"}},\"values\":[+Inf],\"timestamps\":[{base}]}}"
        )
    );
}

// ---- headers and retries, against a stub ----

impl Captured {
    /// The remote-write message of the request, decoded by prost.
    fn request(&self) -> WriteRequest {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&self.body)
            .unwrap();
        WriteRequest::decode(&raw[..]).unwrap()
    }
}

/// Answers each request with the next status of `script` (then 204), keeping
/// connections alive; records every request.
async fn stub(script: Vec<u16>) -> (SocketAddr, Arc<Mutex<Vec<Captured>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Captured>>> = Arc::default();
    let script = Arc::new(Mutex::new(script));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (log, script) = (log.clone(), script.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(req) = read_request(&mut conn, &mut buf).await {
                    log.lock().unwrap().push(req);
                    let status = {
                        let mut s = script.lock().unwrap();
                        if s.is_empty() { 204 } else { s.remove(0) }
                    };
                    let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 4\r\n\r\nnope");
                    if conn.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[test]
fn sends_remote_write_headers_and_retries_a_split_batch_whole() {
    let rt = rt();
    rt.block_on(async {
        // First send: request 1 taken, request 2 answered 503.
        let (addr, seen) = stub(vec![204, 503]).await;
        let mut sink = sink(
            &format!("http://{addr}/api/v1/write"),
            "bearer_token = \"s3cret\"\nmax_samples_per_request = 2\n[headers]\nX-Scope-OrgID = \"tenant-1\"",
        );
        let batch: Batch = (0..3)
            .map(|i| Metric::new("h").tag("i", i.to_string()).field("value", 1.0).at(1_000_000))
            .collect();
        let v = views(batch).await;
        sink.new_batch();
        let err = sink.send(&v).await.unwrap_err();
        assert!(
            matches!(&err, SinkError::Retryable { message, .. } if message == "503 Service Unavailable: nope"),
            "{err:?}"
        );
        // The retry sends both requests again.
        let sent = sink.send(&v).await.unwrap();
        assert_eq!((sent.metrics, sent.points, sent.rejected), (3, 3, 0));

        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4);
        for c in &seen {
            assert!(c.head.starts_with("POST /api/v1/write HTTP/1.1\r\n"), "{}", c.head);
            assert_eq!(c.header("content-encoding"), Some("snappy"));
            assert_eq!(c.header("content-type"), Some("application/x-protobuf"));
            assert_eq!(c.header("x-prometheus-remote-write-version"), Some("0.1.0"));
            assert_eq!(c.header("authorization"), Some("Bearer s3cret"));
            assert_eq!(c.header("x-scope-orgid"), Some("tenant-1"));
            assert!(c.header("user-agent").unwrap().starts_with("conflux/"));
        }
        let sizes: Vec<usize> = seen
            .iter()
            .map(|c| c.request().timeseries.iter().map(|t| t.samples.len()).sum())
            .collect();
        assert_eq!(sizes, [2, 1, 2, 1]);
        assert_eq!(seen[0].body, seen[2].body, "the retry resends request 1 as it was");
        assert_eq!(seen[1].body, seen[3].body);
    });
}

#[test]
fn basic_credentials_and_an_all_refused_batch() {
    let rt = rt();
    rt.block_on(async {
        let (addr, seen) = stub(vec![400]).await;
        let mut sink = sink(
            &format!("http://{addr}/api/v1/write"),
            "username = \"Aladdin\"\npassword = \"open sesame\"",
        );
        let batch: Batch = [Metric::new("m").field("f", 1.0).field("s", "x").at(1)]
            .into_iter()
            .collect();
        let err = sink.send(&views(batch).await).await.unwrap_err();
        assert_eq!(
            err,
            SinkError::Rejected {
                message: "400 Bad Request: nope".into()
            }
        );
        assert_eq!(
            seen.lock().unwrap()[0].header("authorization"),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
        // A batch of strings only makes no request.
        let strings: Batch = [Metric::new("m").field("s", "x").at(1)]
            .into_iter()
            .collect();
        let sent = sink.send(&views(strings).await).await.unwrap();
        assert_eq!(
            (sent.metrics, sent.points, sent.skipped.string, sent.bytes),
            (0, 0, 1, 0)
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
    });
}
