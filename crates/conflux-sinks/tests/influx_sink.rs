//! The `influx` sink against the real servers it targets: InfluxDB 1.6
//! (`/write`, with and without auth) and VictoriaMetrics (`/write` and
//! `/api/v2/write`), read back and compared exactly; and against a small stub
//! server for what they will not do on demand (413, 401 and 503 answers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::pipeline_views as views;
use conflux_core::{Batch, Value};
use conflux_sinks::influx::InfluxSink;
use conflux_sinks::{Sent, Sink, SinkError};
use conflux_testkit::influxd::{Influxd, InfluxdOptions};
use conflux_testkit::victoria::Victoria;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

// ---- helpers ----

fn new_sink(url: &str, extra: &str) -> InfluxSink {
    let (net, cfg) = common::config(url, extra);
    conflux_sinks::influx::build(&net, &cfg).unwrap()
}

/// `new_batch` then `send`, as the runner does for a first attempt.
async fn send(sink: &mut InfluxSink, batch: Batch) -> Result<Sent, SinkError> {
    let v = views(batch).await;
    sink.new_batch();
    sink.send(&v).await
}

fn rt() -> Runtime {
    common::multi_thread_runtime(1)
}

/// One metric spec: name, tags, fields, timestamp (ns).
type Spec<'a> = (
    &'a str,
    Vec<(&'a str, &'a str)>,
    Vec<(&'a str, Value<'a>)>,
    i64,
);

fn batch_of(specs: &[Spec<'_>]) -> Batch {
    let mut b = Batch::new();
    for (name, tags, fields, ts) in specs {
        let mut m = b.metric(name);
        for (k, v) in tags {
            m.tag(k, v);
        }
        for (k, v) in fields {
            m.field(k, *v);
        }
        m.finish(*ts).unwrap();
    }
    b
}

/// Every row of a `/query` answer as (measurement, column → value), nulls
/// left out, sorted.
fn rows(answer: &Json) -> Vec<(String, BTreeMap<String, Json>)> {
    let mut out = Vec::new();
    let series = answer
        .pointer("/results/0/series")
        .and_then(Json::as_array)
        .unwrap_or_else(|| panic!("no series in {answer}"));
    for s in series {
        let name = s["name"].as_str().unwrap().to_owned();
        let cols: Vec<&str> = s["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        for row in s["values"].as_array().unwrap() {
            let map: BTreeMap<String, Json> = cols
                .iter()
                .zip(row.as_array().unwrap())
                .filter(|(_, v)| !v.is_null())
                .map(|(c, v)| ((*c).to_owned(), v.clone()))
                .collect();
            out.push((name.clone(), map));
        }
    }
    out.sort_by_key(|(n, m)| (n.clone(), m["time"].as_i64()));
    out
}

fn unix_ms_now() -> i64 {
    conflux_testkit::unix_now() * 1000
}

// ---- InfluxDB 1.x ----

const TS: i64 = 1_700_000_123_456_789_123;
const NEG_TS: i64 = -1_234_567_891_234;

/// Every value type, names that need escaping, strings with quotes,
/// backslashes and newlines.
fn typed_batch() -> (Batch, usize) {
    let tags = vec![
        ("host name", "web 1,a=b"),
        ("dc", "eu=1"),
        ("path", "C:\\dir"),
    ];
    let specs: Vec<Spec<'_>> = vec![
        (
            "cpu load,x=y",
            tags.clone(),
            vec![
                ("f", Value::Float(0.1)),
                ("f max", Value::Float(f64::MAX)),
                ("f,tiny", Value::Float(-2.5e-7)),
                ("i", Value::Int(i64::MIN)),
                ("u", Value::UInt(42)),
                ("u big", Value::UInt(u64::MAX)),
                ("b", Value::Bool(true)),
                ("s", Value::Str("say \"hi\" \\ two \\\\ end\\")),
                ("s=nl", Value::Str("line 1\nline 2\r\n")),
            ],
            TS,
        ),
        (
            "cpu load,x=y",
            tags.clone(),
            vec![("f", Value::Float(-1.5)), ("b", Value::Bool(false))],
            NEG_TS,
        ),
        ("plain", vec![], vec![("v", Value::Str(""))], TS),
    ];
    (batch_of(&specs), specs.len())
}

/// What InfluxDB should hold for [`typed_batch`] at `precision` (`nanos` per unit).
fn typed_expected(nanos: i64) -> Vec<(String, BTreeMap<String, Json>)> {
    let t = |ts: i64| json!(ts / nanos * nanos);
    let tags = [
        ("host name", "web 1,a=b"),
        ("dc", "eu=1"),
        ("path", "C:\\dir"),
    ];
    let mut first: BTreeMap<String, Json> = tags
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let mut second = first.clone();
    first.extend([
        ("time".to_owned(), t(TS)),
        ("f".to_owned(), json!(0.1)),
        ("f max".to_owned(), json!(f64::MAX)),
        ("f,tiny".to_owned(), json!(-2.5e-7)),
        ("i".to_owned(), json!(i64::MIN)),
        ("u".to_owned(), json!(42)),
        // No `u` in InfluxDB 1.x: written as an integer, clipped.
        ("u big".to_owned(), json!(i64::MAX)),
        ("b".to_owned(), json!(true)),
        ("s".to_owned(), json!("say \"hi\" \\ two \\\\ end\\")),
        ("s=nl".to_owned(), json!("line 1\nline 2\r\n")),
    ]);
    second.extend([
        ("time".to_owned(), t(NEG_TS)),
        ("f".to_owned(), json!(-1.5)),
        ("b".to_owned(), json!(false)),
    ]);
    let plain = BTreeMap::from([("time".to_owned(), t(TS)), ("v".to_owned(), json!(""))]);
    let name = "cpu load,x=y".to_owned();
    let mut rows = vec![
        (name.clone(), first),
        (name, second),
        ("plain".to_owned(), plain),
    ];
    rows.sort_by_key(|(n, m)| (n.clone(), m["time"].as_i64()));
    rows
}

#[test]
fn every_type_escape_and_precision_reads_back_exactly_from_influxdb() {
    let influxd = Influxd::start(InfluxdOptions::default());
    let rt = rt();
    // (URL precision, ns per unit, gzip)
    let cases = [
        ("", 1, false),
        ("ns", 1, true),
        ("n", 1, false),
        ("u", 1_000, true),
        ("ms", 1_000_000, false),
        ("s", 1_000_000_000, true),
        ("m", 60_000_000_000, false),
        ("h", 3_600_000_000_000, true),
    ];
    for (precision, nanos, gzip) in cases {
        let db = format!(
            "p_{}",
            if precision.is_empty() {
                "default"
            } else {
                precision
            }
        );
        influxd.create_db(&db);
        let query = if precision.is_empty() {
            String::new()
        } else {
            format!("&precision={precision}")
        };
        let url = format!("http://{}/write?db={db}&rp=autogen{query}", influxd.http);
        let mut sink = rt.block_on(async { new_sink(&url, &format!("gzip = {gzip}")) });
        let (batch, n) = typed_batch();
        let sent = rt.block_on(send(&mut sink, batch)).unwrap();
        assert_eq!(
            (sent.metrics, sent.points, sent.rejected),
            (n, 12, 0),
            "{db}"
        );
        assert!(sent.bytes > 0);
        let answer = influxd.query(&db, "SELECT * FROM /.*/");
        assert_eq!(rows(&answer), typed_expected(nanos), "{db}: {answer}");
    }
}

#[test]
fn a_field_type_conflict_is_a_partial_write_counted_with_the_servers_count() {
    let influxd = Influxd::start(InfluxdOptions::default());
    influxd.create_db("t");
    let rt = rt();
    let url = format!("http://{}/write?db=t", influxd.http);
    let mut sink = rt.block_on(async { new_sink(&url, "") });
    let first = batch_of(&[("c", vec![], vec![("v", Value::Float(1.5))], 1_000)]);
    rt.block_on(send(&mut sink, first)).unwrap();

    // `v` is a float in `c` now: the two integer points are dropped, the rest kept.
    let mixed = batch_of(&[
        ("c", vec![], vec![("v", Value::Int(1))], 2_000),
        ("d", vec![], vec![("v", Value::Float(2.5))], 2_000),
        ("c", vec![], vec![("v", Value::Int(2))], 3_000),
        ("c", vec![("k", "x")], vec![("w", Value::Float(3.5))], 4_000),
    ]);
    let sent = rt.block_on(send(&mut sink, mixed)).unwrap();
    assert_eq!((sent.metrics, sent.rejected), (2, 2), "{sent:?}");
    assert_eq!(
        sent.rejection.as_deref(),
        Some(
            r#"400 Bad Request: {"error":"partial write: field type conflict: input field \"v\" on measurement \"c\" is type integer, already exists as type float dropped=2"}"#
        )
    );
    let got = rows(&influxd.query("t", "SELECT * FROM /.*/"));
    let want: Vec<(String, BTreeMap<String, Json>)> = vec![
        (
            "c".into(),
            BTreeMap::from([("time".into(), json!(1_000)), ("v".into(), json!(1.5))]),
        ),
        (
            "c".into(),
            BTreeMap::from([
                ("time".into(), json!(4_000)),
                ("k".into(), json!("x")),
                ("w".into(), json!(3.5)),
            ]),
        ),
        (
            "d".into(),
            BTreeMap::from([("time".into(), json!(2_000)), ("v".into(), json!(2.5))]),
        ),
    ];
    assert_eq!(got, want);
}

#[test]
fn influxdb_1_6_refuses_unsigned_integers_and_the_refusal_is_counted() {
    let influxd = Influxd::start(InfluxdOptions::default());
    influxd.create_db("t");
    let rt = rt();
    let url = format!("http://{}/write?db=t", influxd.http);
    let mut sink = rt.block_on(async { new_sink(&url, "uint_support = true") });

    // With good lines beside it: a partial write saying `dropped=0`, the
    // unparsable line counted all the same.
    let mixed = batch_of(&[
        ("a", vec![], vec![("v", Value::UInt(7))], 1_000),
        ("b", vec![], vec![("v", Value::Float(0.5))], 1_000),
    ]);
    let sent = rt.block_on(send(&mut sink, mixed)).unwrap();
    assert_eq!((sent.metrics, sent.rejected), (1, 1), "{sent:?}");
    assert_eq!(
        sent.rejection.as_deref(),
        Some(
            r#"400 Bad Request: {"error":"partial write: unable to parse 'a v=7u 1000': invalid number dropped=0"}"#
        )
    );

    // Alone: the whole request refused.
    let only = batch_of(&[("a", vec![], vec![("v", Value::UInt(7))], 2_000)]);
    let err = rt.block_on(send(&mut sink, only)).unwrap_err();
    assert_eq!(
        err,
        SinkError::Rejected {
            message:
                r#"400 Bad Request: {"error":"unable to parse 'a v=7u 2000': invalid number"}"#
                    .into()
        }
    );

    // The default writes them as integers.
    let mut sink = rt.block_on(async { new_sink(&url, "") });
    let ok = batch_of(&[("a", vec![], vec![("v", Value::UInt(7))], 3_000)]);
    let sent = rt.block_on(send(&mut sink, ok)).unwrap();
    assert_eq!((sent.metrics, sent.rejected), (1, 0));
    let got = rows(&influxd.query("t", "SELECT * FROM /.*/"));
    let want: Vec<(String, BTreeMap<String, Json>)> = vec![
        (
            "a".into(),
            BTreeMap::from([("time".into(), json!(3_000)), ("v".into(), json!(7))]),
        ),
        (
            "b".into(),
            BTreeMap::from([("time".into(), json!(1_000)), ("v".into(), json!(0.5))]),
        ),
    ];
    assert_eq!(got, want);
}

#[test]
fn influxdb_auth_basic_and_query_work_and_bad_credentials_are_rejected() {
    let influxd = Influxd::start(InfluxdOptions {
        auth: true,
        ..InfluxdOptions::default()
    });
    influxd.create_db("a");
    let (user, password) = Influxd::ADMIN;
    let rt = rt();
    let url = format!("http://{}/write?db=a&precision=s", influxd.http);
    let one = |name: &str, t: i64| {
        batch_of(&[(
            name,
            vec![],
            vec![("v", Value::Float(0.25))],
            t * 1_000_000_000,
        )])
    };

    let creds = format!("username = \"{user}\"\npassword = \"{password}\"");
    let mut basic = rt.block_on(async { new_sink(&url, &creds) });
    assert_eq!(
        rt.block_on(send(&mut basic, one("basic", 1)))
            .unwrap()
            .metrics,
        1
    );

    let mut query =
        rt.block_on(async { new_sink(&url, &format!("{creds}\nauth = \"query\"\ngzip = true")) });
    assert_eq!(
        rt.block_on(send(&mut query, one("query", 2)))
            .unwrap()
            .metrics,
        1
    );

    let mut wrong = rt
        .block_on(async { new_sink(&url, &format!("username = \"{user}\"\npassword = \"nope\"")) });
    assert_eq!(
        rt.block_on(send(&mut wrong, one("wrong", 3))).unwrap_err(),
        SinkError::Rejected {
            message: r#"401 Unauthorized: {"error":"authorization failed"}"#.into()
        }
    );
    let mut wrong = rt.block_on(async {
        new_sink(
            &url,
            &format!("username = \"{user}\"\npassword = \"nope\"\nauth = \"query\""),
        )
    });
    assert!(matches!(
        rt.block_on(send(&mut wrong, one("wrong", 4))),
        Err(SinkError::Rejected { message }) if message.starts_with("401 ")
    ));
    let mut none = rt.block_on(async { new_sink(&url, "") });
    assert_eq!(
        rt.block_on(send(&mut none, one("none", 5))).unwrap_err(),
        SinkError::Rejected {
            message: r#"401 Unauthorized: {"error":"unable to parse authentication credentials"}"#
                .into()
        }
    );
    // `Authorization: Token user:password` is InfluxDB 1.8's; 1.6 does not read it.
    let mut token =
        rt.block_on(async { new_sink(&url, &format!("token = \"{user}:{password}\"")) });
    assert_eq!(
        rt.block_on(send(&mut token, one("token", 6))).unwrap_err(),
        SinkError::Rejected {
            message: r#"401 Unauthorized: {"error":"unable to parse authentication credentials"}"#
                .into()
        }
    );

    let got = rows(&influxd.query("a", "SELECT * FROM /.*/"));
    let names: Vec<(&str, i64)> = got
        .iter()
        .map(|(n, m)| (n.as_str(), m["time"].as_i64().unwrap()))
        .collect();
    assert_eq!(names, [("basic", 1_000_000_000), ("query", 2_000_000_000)]);
}

#[test]
fn many_requests_of_one_batch_all_arrive_in_influxdb() {
    let influxd = Influxd::start(InfluxdOptions::default());
    influxd.create_db("t");
    let rt = rt();
    let url = format!("http://{}/write?db=t", influxd.http);
    let mut sink = rt.block_on(async { new_sink(&url, "max_body_bytes = 4096\ngzip = true") });
    let mut batch = Batch::new();
    for i in 0..5_000i64 {
        let host = format!("host-{}", i % 7);
        let mut m = batch.metric("load");
        m.tag("host", &host).field("v", Value::Int(i));
        m.finish(i).unwrap();
    }
    let sent = rt.block_on(send(&mut sink, batch)).unwrap();
    assert_eq!(
        (sent.metrics, sent.points, sent.rejected),
        (5_000, 5_000, 0)
    );
    let answer = influxd.query("t", "SELECT count(v), sum(v) FROM load");
    assert_eq!(
        answer.pointer("/results/0/series/0/values/0/1"),
        Some(&json!(5_000)),
        "{answer}"
    );
    assert_eq!(
        answer.pointer("/results/0/series/0/values/0/2"),
        Some(&json!(4_999 * 5_000 / 2)),
        "{answer}"
    );
}

// ---- VictoriaMetrics ----

#[test]
fn victoriametrics_takes_v1_and_v2_writes() {
    let vm = Victoria::start();
    let rt = rt();
    let now_ms = unix_ms_now() - 60_000;
    // 123 µs and 456 ns past the millisecond: cut by the precision.
    let ts = now_ms * 1_000_000 + 123_456;
    let specs = |m: &'static str| -> Vec<Spec<'static>> {
        vec![
            (
                m,
                vec![("host", "web 1"), ("dc", "eu,west")],
                vec![
                    ("f", Value::Float(0.1)),
                    ("i", Value::Int(-42)),
                    ("u", Value::UInt(1 << 32)),
                    ("b", Value::Bool(true)),
                ],
                ts,
            ),
            (
                m,
                vec![("host", "web 1"), ("dc", "eu,west")],
                vec![("f", Value::Float(-2.5))],
                ts + 1_000_000_000,
            ),
        ]
    };
    let v1 = format!("http://{}/write?db=x&precision=ms", vm.http);
    let mut sink = rt.block_on(async { new_sink(&v1, "uint_support = true") });
    let sent = rt
        .block_on(send(&mut sink, batch_of(&specs("v1m"))))
        .unwrap();
    assert_eq!((sent.metrics, sent.points, sent.rejected), (2, 5, 0));

    let v2 = format!("http://{}/api/v2/write?org=o&bucket=b&precision=s", vm.http);
    let mut sink =
        rt.block_on(async { new_sink(&v2, "uint_support = true\ngzip = true\ntoken = \"t\"") });
    let sent = rt
        .block_on(send(&mut sink, batch_of(&specs("v2m"))))
        .unwrap();
    assert_eq!((sent.metrics, sent.points, sent.rejected), (2, 5, 0));

    let got = |selector: &str, series: usize| -> Vec<String> {
        let mut lines: Vec<String> = vm
            .wait_export(selector, series)
            .iter()
            .map(|s| format!("{} {} {}", s["metric"], s["values"], s["timestamps"]))
            .collect();
        lines.sort();
        lines
    };
    let ms = now_ms;
    let s = now_ms / 1000 * 1000;
    // `db` from the v1 query; 1.79 adds no label for a v2 bucket.
    assert_eq!(
        got(r#"{__name__=~"v1m_.*"}"#, 4),
        [
            format!(r#"{{"__name__":"v1m_b","db":"x","dc":"eu,west","host":"web 1"}} [1] [{ms}]"#),
            format!(
                r#"{{"__name__":"v1m_f","db":"x","dc":"eu,west","host":"web 1"}} [0.1,-2.5] [{ms},{}]"#,
                ms + 1000
            ),
            format!(
                r#"{{"__name__":"v1m_i","db":"x","dc":"eu,west","host":"web 1"}} [-42] [{ms}]"#
            ),
            format!(
                r#"{{"__name__":"v1m_u","db":"x","dc":"eu,west","host":"web 1"}} [{}] [{ms}]"#,
                1u64 << 32
            ),
        ]
    );
    assert_eq!(
        got(r#"{__name__=~"v2m_.*"}"#, 4),
        [
            format!(r#"{{"__name__":"v2m_b","dc":"eu,west","host":"web 1"}} [1] [{s}]"#),
            format!(
                r#"{{"__name__":"v2m_f","dc":"eu,west","host":"web 1"}} [0.1,-2.5] [{s},{}]"#,
                s + 1000
            ),
            format!(r#"{{"__name__":"v2m_i","dc":"eu,west","host":"web 1"}} [-42] [{s}]"#),
            format!(
                r#"{{"__name__":"v2m_u","dc":"eu,west","host":"web 1"}} [{}] [{s}]"#,
                1u64 << 32
            ),
        ]
    );
}

#[test]
fn victoriametrics_answers_204_while_dropping_a_line_split_by_a_newline_in_a_string() {
    let vm = Victoria::start();
    let rt = rt();
    let ts = (unix_ms_now() - 60_000) * 1_000_000;
    let url = format!("http://{}/write?db=x", vm.http);
    let mut sink = rt.block_on(async { new_sink(&url, "") });
    let batch = batch_of(&[
        (
            "nl",
            vec![],
            vec![("v", Value::Float(1.5)), ("s", Value::Str("a\nb"))],
            ts,
        ),
        ("ok", vec![], vec![("v", Value::Float(2.5))], ts),
    ]);
    let sent = rt.block_on(send(&mut sink, batch)).unwrap();
    // Nothing tells the sink: VictoriaMetrics logs the two halves and counts them.
    assert_eq!((sent.metrics, sent.rejected), (2, 0));
    assert_eq!(vm.wait_export("ok_v", 1).len(), 1);
    assert!(vm.export(r#"{__name__=~"nl_.*"}"#).is_empty());
    assert_eq!(
        vm.self_metric(r#"vm_rows_invalid_total{type="influx"}"#),
        2.0
    );
}

// ---- a stub server for faults ----

#[derive(Debug, Clone)]
struct Request {
    uri: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Request {
    /// The body, gunzipped when sent gzip'd.
    fn text(&self) -> String {
        let gzipped = self
            .headers
            .get("content-encoding")
            .is_some_and(|v| v == "gzip");
        common::body_text(&self.body, gzipped)
    }
}

type Answer = (u16, &'static str, Option<&'static str>);

#[derive(Clone)]
struct Stub {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
}

/// A hyper server that records every request and answers with `answer(request, index)`.
async fn stub(answer: impl Fn(&Request, usize) -> Answer + Send + Sync + 'static) -> Stub {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stub = Stub {
        addr: listener.local_addr().unwrap(),
        requests: Arc::default(),
    };
    let answer = Arc::new(answer);
    let requests = stub.requests.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let requests = requests.clone();
            let answer = answer.clone();
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let requests = requests.clone();
                let answer = answer.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.unwrap().to_bytes().to_vec();
                    let r = Request {
                        uri: parts.uri.to_string(),
                        headers: parts.headers,
                        body,
                    };
                    let (status, text, retry) = {
                        let mut all = requests.lock().unwrap();
                        let a = answer(&r, all.len());
                        all.push(r);
                        a
                    };
                    let mut resp =
                        hyper::Response::new(Full::new(Bytes::from_static(text.as_bytes())));
                    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    if let Some(r) = retry {
                        resp.headers_mut().insert("retry-after", r.parse().unwrap());
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(conn), svc),
            );
        }
    });
    stub
}

impl Stub {
    fn url(&self) -> String {
        format!("http://{}/write?db=t", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// `n` metrics whose lines are all `m,i=00000 v=1 1000000000\n` long ([`LINE`] bytes).
fn equal_lines(n: usize) -> (Batch, String) {
    let mut batch = Batch::new();
    let mut text = String::new();
    for i in 0..n {
        let tag = format!("{i:05}");
        let mut m = batch.metric("m");
        m.tag("i", &tag).field("v", Value::Float(1.0));
        m.finish(1_000_000_000).unwrap();
        text.push_str(&format!("m,i={tag} v=1 1000000000\n"));
    }
    (batch, text)
}

const LINE: usize = 25;

#[tokio::test]
async fn a_413_halves_the_request_until_each_part_fits() {
    // 8 lines fit, 9 do not.
    let s = stub(|r, _| {
        if r.body.len() > 8 * LINE {
            (413, "Request Entity Too Large", None)
        } else {
            (204, "", None)
        }
    })
    .await;
    let mut sink = new_sink(&s.url(), "");
    let (batch, text) = equal_lines(64);
    assert_eq!(text.len(), 64 * LINE);
    let sent = send(&mut sink, batch).await.unwrap();
    assert_eq!((sent.metrics, sent.points, sent.rejected), (64, 64, 0));
    assert_eq!(sent.bytes, 64 * LINE, "bytes of the accepted requests");
    let reqs = s.requests();
    // 64 → 2 × 32 → 4 × 16 → 8 × 8: 1 + 2 + 4 + 8 requests, the last 8 taken.
    let sizes: Vec<usize> = reqs.iter().map(|r| r.body.len() / LINE).collect();
    assert_eq!(sizes, [64, 32, 16, 8, 8, 16, 8, 8, 32, 16, 8, 8, 16, 8, 8]);
    let taken: String = reqs
        .iter()
        .filter(|r| r.body.len() <= 8 * LINE)
        .map(Request::text)
        .collect();
    assert_eq!(taken, text, "every line once, in order");
}

#[tokio::test]
async fn a_single_line_still_too_large_is_rejected_and_counted() {
    let s = stub(|r, _| {
        if r.body.len() > 100 {
            (413, "{\"error\":\"Request Entity Too Large\"}", None)
        } else {
            (204, "", None)
        }
    })
    .await;
    let mut sink = new_sink(&s.url(), "");
    let long = "x".repeat(200);
    let batch = batch_of(&[
        ("a", vec![], vec![("v", Value::Float(1.0))], 1),
        ("b", vec![], vec![("v", Value::Float(1.0))], 1),
        ("c", vec![], vec![("s", Value::Str(&long))], 1),
        ("d", vec![], vec![("v", Value::Float(1.0))], 1),
    ]);
    let sent = send(&mut sink, batch).await.unwrap();
    assert_eq!((sent.metrics, sent.rejected), (3, 1), "{sent:?}");
    assert_eq!(
        sent.rejection.as_deref(),
        Some(
            r#"413 Payload Too Large: {"error":"Request Entity Too Large"} (one line of 209 bytes)"#
        )
    );
    // 4 → [a b] taken, [c d] → [c] refused, [d] taken.
    let texts: Vec<String> = s.requests().iter().map(Request::text).collect();
    assert_eq!(texts.len(), 5);
    assert_eq!(texts[1], "a v=1 1\nb v=1 1\n");
    assert_eq!(texts[4], "d v=1 1\n");
}

#[tokio::test]
async fn max_body_bytes_splits_a_batch_before_sending() {
    let s = stub(|_, _| (204, "", None)).await;
    let mut sink = new_sink(
        &s.url(),
        &format!("max_body_bytes = {}\ngzip = true", 10 * LINE + 5),
    );
    let (batch, text) = equal_lines(95);
    let sent = send(&mut sink, batch).await.unwrap();
    assert_eq!((sent.metrics, sent.rejected), (95, 0));
    let reqs = s.requests();
    let lines: Vec<usize> = reqs.iter().map(|r| r.text().len() / LINE).collect();
    assert_eq!(lines, [10, 10, 10, 10, 10, 10, 10, 10, 10, 5]);
    assert_eq!(reqs.iter().map(Request::text).collect::<String>(), text);
    assert_eq!(
        sent.bytes,
        reqs.iter().map(|r| r.body.len()).sum::<usize>(),
        "gzip'd bytes"
    );
}

#[tokio::test]
async fn headers_and_the_url_go_out_as_configured() {
    let s = stub(|_, _| (204, "", None)).await;
    let url = format!("http://{}/api/v2/write?org=o&bucket=b&precision=ms", s.addr);
    let mut sink = new_sink(
        &url,
        "token = \"s3cr3t\"\ngzip = true\n[headers]\nX-Scope-OrgID = \"tenant-7\"",
    );
    let batch = batch_of(&[(
        "m",
        vec![("t", "a b")],
        vec![("v", Value::Int(3))],
        1_700_000_000_123_456_789,
    )]);
    send(&mut sink, batch).await.unwrap();
    let r = s.requests().remove(0);
    assert_eq!(r.uri, "/api/v2/write?org=o&bucket=b&precision=ms");
    assert_eq!(r.headers["authorization"], "Token s3cr3t");
    assert_eq!(r.headers["x-scope-orgid"], "tenant-7");
    assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.text(), "m,t=a\\ b v=3i 1700000000123\n");

    let s = stub(|_, _| (204, "", None)).await;
    let mut sink = new_sink(
        &s.url(),
        "username = \"u\"\npassword = \"p w&\"\nauth = \"query\"",
    );
    send(
        &mut sink,
        batch_of(&[("m", vec![], vec![("v", Value::Int(3))], 5)]),
    )
    .await
    .unwrap();
    let r = s.requests().remove(0);
    assert_eq!(r.uri, "/write?db=t&u=u&p=p%20w%26");
    assert!(r.headers.get("authorization").is_none());
    assert!(r.headers.get("content-encoding").is_none());
}

#[tokio::test]
async fn an_auth_failure_stops_the_batch_and_rejects_all_of_it() {
    let s = stub(|_, _| (401, "{\"error\":\"authorization failed\"}", None)).await;
    let mut sink = new_sink(&s.url(), &format!("max_body_bytes = {}", 10 * LINE));
    let (batch, _) = equal_lines(30);
    let err = send(&mut sink, batch).await.unwrap_err();
    assert_eq!(
        err,
        SinkError::Rejected {
            message: r#"401 Unauthorized: {"error":"authorization failed"}"#.into()
        }
    );
    assert_eq!(
        s.requests().len(),
        1,
        "the other two requests are not tried"
    );
}

#[tokio::test]
async fn a_bad_request_refuses_only_its_own_part() {
    let s = stub(|_, i| {
        if i == 1 {
            (400, "{\"error\":\"unable to parse 'x': bad\"}", None)
        } else {
            (204, "", None)
        }
    })
    .await;
    let mut sink = new_sink(&s.url(), &format!("max_body_bytes = {}", 10 * LINE));
    let (batch, _) = equal_lines(25);
    let sent = send(&mut sink, batch).await.unwrap();
    assert_eq!((sent.metrics, sent.rejected), (15, 10), "{sent:?}");
    assert_eq!(
        sent.rejection.as_deref(),
        Some(r#"400 Bad Request: {"error":"unable to parse 'x': bad"}"#)
    );
    assert_eq!(s.requests().len(), 3);
}

#[tokio::test]
async fn server_errors_and_throttling_are_retried_with_retry_after() {
    let s = stub(|_, i| match i {
        0 => (
            503,
            "{\"error\":\"request throttled, queue full\"}",
            Some("4"),
        ),
        1 => (429, "", None),
        _ => (204, "", None),
    })
    .await;
    let mut sink = new_sink(&s.url(), "");
    let batch = || batch_of(&[("m", vec![], vec![("v", Value::Int(3))], 5)]);
    assert_eq!(
        send(&mut sink, batch()).await.unwrap_err(),
        SinkError::Retryable {
            message: r#"503 Service Unavailable: {"error":"request throttled, queue full"}"#.into(),
            retry_after: Some(Duration::from_secs(4)),
        }
    );
    assert!(matches!(
        send(&mut sink, batch()).await,
        Err(SinkError::Retryable { .. })
    ));
    assert_eq!(send(&mut sink, batch()).await.unwrap().metrics, 1);
    let bodies: Vec<String> = s.requests().iter().map(Request::text).collect();
    assert_eq!(bodies, ["m v=3i 5\n"; 3], "the same body each time");
}

#[tokio::test]
async fn nothing_writable_sends_nothing_and_counts_the_skips() {
    let s = stub(|_, _| (204, "", None)).await;
    let mut sink = new_sink(&s.url(), "");
    let batch = batch_of(&[
        (
            "m",
            vec![],
            vec![
                ("v", Value::Float(f64::NAN)),
                ("w", Value::Float(f64::INFINITY)),
            ],
            1,
        ),
        ("#comment", vec![], vec![("v", Value::Float(1.0))], 1),
    ]);
    let sent = send(&mut sink, batch).await.unwrap();
    assert_eq!(
        (
            sent.metrics,
            sent.points,
            sent.skipped.non_finite,
            sent.skipped.invalid_name
        ),
        (0, 0, 2, 1)
    );
    assert!(s.requests().is_empty());
}
