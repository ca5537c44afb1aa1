//! The `opentsdb` sink against real servers that take OpenTSDB's protocols:
//! VictoriaMetrics (`/api/put` and telnet `put`) and InfluxDB 1.x's opentsdb
//! service (telnet and `/api/put` on one port); points are read back with
//! their names, tags, values and timestamps. No OpenTSDB server can run
//! here; its behaviour is in the module docs (from its docs and source).
//!
//! The millisecond findings of the module docs are pinned here: what each
//! server does with a 13-digit timestamp (the sink with `timestamp_unit =
//! "ms"`) and with `seconds.mmm` (written raw, the encoder never writes it).
//!
//! Stub servers only for faults: an `/api/put` that answers 400 with
//! OpenTSDB's `details` body, a plain 400 and a 503; a telnet server that
//! answers `put: …` error lines as OpenTSDB does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::opentsdb_sink as sink;
use common::{NS, read_request, runtime, views};
use conflux_core::Metric;
use conflux_sinks::opentsdb::OpentsdbSink;
use conflux_sinks::{Sent, Sink, SinkError};
use conflux_testkit::influxd::{Influxd, InfluxdOptions};
use conflux_testkit::victoria::Victoria;
use conflux_testkit::{http_post, tcp_send, unix_now, wait_until};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// Send one batch and close the sink (telnet: until the server has read it all).
fn deliver(rt: &Runtime, mut s: OpentsdbSink, metrics: &[Metric]) -> Sent {
    common::deliver(rt, &mut s, metrics).unwrap()
}

/// VictoriaMetrics' export of one series name: (labels, values, timestamps in ms).
fn vm_series(vm: &Victoria, name: &str) -> (Value, Vec<f64>, Vec<i64>) {
    let series = vm.wait_export(name, 1);
    assert_eq!(series.len(), 1, "{series:?}");
    let s = &series[0];
    let values = s["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let times = s["timestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    (s["metric"].clone(), values, times)
}

// ---- VictoriaMetrics ----

#[test]
fn victoria_api_put_stores_points_exactly_in_either_unit() {
    let vm = Victoria::start();
    let rt = runtime();
    let t = unix_now() - 60;
    let url = format!("http://{}/api/put", vm.opentsdb_http);
    // Milliseconds: kept by /api/put. Four points in requests of two.
    let sent = deliver(
        &rt,
        sink(&url, "timestamp_unit = \"ms\"\nhttp_batch_size = 2"),
        &[
            Metric::new("cpu")
                .tag("host", "web-1")
                .tag("dc", "eu-west")
                .field("usage_idle", 98.25)
                .field("count", 42i64)
                .field("up", true)
                .field("state", "degraded")
                .at(t * NS + 123_456_789),
            Metric::new("sys.load")
                .tag("host", "web-1")
                .field("value", -0.5)
                .at(t * NS),
        ],
    );
    assert_eq!((sent.metrics, sent.points, sent.skipped.string), (2, 4, 1));
    assert_eq!(sent.rejected, 0);
    let ms = t * 1000;
    for (name, value, at) in [
        ("cpu_usage_idle", 98.25, ms + 123),
        ("cpu_count", 42.0, ms + 123),
        ("cpu_up", 1.0, ms + 123),
    ] {
        let (labels, values, times) = vm_series(&vm, name);
        assert_eq!(
            labels,
            json!({"__name__": name, "host": "web-1", "dc": "eu-west"})
        );
        assert_eq!((values, times), (vec![value], vec![at]), "{name}");
    }
    let (labels, values, times) = vm_series(&vm, "sys.load");
    assert_eq!(labels, json!({"__name__": "sys.load", "host": "web-1"}));
    assert_eq!((values, times), (vec![-0.5], vec![ms]));
    assert!(vm.export("cpu_state").is_empty(), "the string is not sent");

    // Seconds (the default): the fraction is cut.
    deliver(
        &rt,
        sink(&url, ""),
        &[Metric::new("mem")
            .tag("host", "web-1")
            .field("used", 7i64)
            .at(t * NS + 456_000_000)],
    );
    let (_, values, times) = vm_series(&vm, "mem_used");
    assert_eq!((values, times), (vec![7.0], vec![ms]));

    // `seconds.mmm` in JSON: accepted, the fraction cut.
    let body =
        format!(r#"[{{"metric":"dotted_http","timestamp":{t}.456,"value":1,"tags":{{"h":"a"}}}}]"#);
    let (status, answer) = http_post(
        vm.opentsdb_http,
        "/api/put",
        "application/json",
        body.as_bytes(),
    );
    assert_eq!(status, 204, "{answer}");
    let (_, _, times) = vm_series(&vm, "dotted_http");
    assert_eq!(times, vec![ms]);
}

#[test]
fn victoria_telnet_takes_whole_seconds_only() {
    let vm = Victoria::start();
    let rt = runtime();
    let t = unix_now() - 60;
    let url = format!("tcp://{}", vm.opentsdb);
    let m = |name: &str| {
        Metric::new(name)
            .tag("host", "web-1")
            .field("value", 2.5)
            .at(t * NS + 123_000_000)
    };
    // The default cuts the fraction: stored, at the second.
    let sent = deliver(&rt, sink(&url, ""), &[m("tel_s")]);
    assert_eq!((sent.points, sent.rejected), (1, 0));
    let (labels, values, times) = vm_series(&vm, "tel_s");
    assert_eq!(labels, json!({"__name__": "tel_s", "host": "web-1"}));
    assert_eq!((values, times), (vec![2.5], vec![t * 1000]));

    // 13 digits over telnet are read as seconds, thousands of years ahead,
    // and dropped; the server answers nothing.
    let before = vm.self_metric(r#"vm_rows_ignored_total{reason="big_timestamp"}"#);
    let sent = deliver(&rt, sink(&url, "timestamp_unit = \"ms\""), &[m("tel_ms")]);
    assert_eq!(
        (sent.points, sent.rejected),
        (1, 0),
        "nothing says it was dropped"
    );
    wait_until(
        "the 13-digit point to be dropped",
        Duration::from_secs(20),
        || vm.self_metric(r#"vm_rows_ignored_total{reason="big_timestamp"}"#) > before,
    );
    vm.flush();
    assert!(vm.export("tel_ms").is_empty());

    // `seconds.mmm`: stored, the fraction cut.
    tcp_send(
        vm.opentsdb,
        format!("put tel_dotted {t}.456 1 host=web-1\n").as_bytes(),
    );
    let (_, _, times) = vm_series(&vm, "tel_dotted");
    assert_eq!(times, vec![t * 1000]);
}

// ---- InfluxDB 1.x opentsdb service ----

/// Rows of one measurement: time (ns) → (tag `host`, value), checking that
/// these are the only columns.
fn influx_rows(db: &Influxd, measurement: &str) -> BTreeMap<i64, (String, f64)> {
    let series = db.wait_rows(
        Influxd::OPENTSDB_DB,
        &format!("SELECT * FROM \"{measurement}\""),
        1,
        Duration::from_secs(20),
    );
    let mut out = BTreeMap::new();
    for s in series {
        assert_eq!(s["columns"], json!(["time", "host", "value"]), "{s}");
        for row in s["values"].as_array().unwrap() {
            let host = row[1].as_str().unwrap().to_owned();
            out.insert(row[0].as_i64().unwrap(), (host, row[2].as_f64().unwrap()));
        }
    }
    out
}

fn row(host: &str, value: f64) -> (String, f64) {
    (host.to_owned(), value)
}

#[test]
fn influxdb_stores_whole_seconds_over_telnet_and_http() {
    let db = Influxd::start(InfluxdOptions {
        opentsdb: true,
        auth: false,
    });
    let addr = db.opentsdb.unwrap();
    let rt = runtime();
    let t = unix_now() - 60;
    let frac = |name: &str, v: f64| {
        Metric::new(name)
            .tag("host", "web-1")
            .field("value", v)
            .at(t * NS + 123_456_789)
    };
    for (url, name) in [
        (format!("tcp://{addr}"), "tel_s"),
        (format!("http://{addr}/api/put"), "http_s"),
    ] {
        let sent = deliver(
            &rt,
            sink(&url, ""),
            &[
                frac(name, 1.5),
                Metric::new(name)
                    .tag("host", "web-2")
                    .field("value", 42i64)
                    .at((t + 1) * NS),
            ],
        );
        assert_eq!((sent.points, sent.rejected), (2, 0), "{url}");
        let rows = influx_rows(&db, name);
        assert_eq!(
            rows,
            BTreeMap::from([
                (t * NS, row("web-1", 1.5)),
                ((t + 1) * NS, row("web-2", 42.0))
            ]),
            "{url}"
        );
    }

    // 13 digits: InfluxDB stores the milliseconds as microseconds, over both.
    for (url, name) in [
        (format!("tcp://{addr}"), "tel_ms"),
        (format!("http://{addr}/api/put"), "http_ms"),
    ] {
        deliver(
            &rt,
            sink(&url, "timestamp_unit = \"ms\""),
            &[frac(name, 3.0)],
        );
        let rows = influx_rows(&db, name);
        assert_eq!(
            rows,
            BTreeMap::from([(t * NS + 123_000, row("web-1", 3.0))]),
            "{url}"
        );
    }

    // `seconds.mmm`: a telnet line is dropped (logged only; the sentinel after
    // it shows the line was read), an /api/put request refused whole.
    tcp_send(
        addr,
        format!("put tel_dotted {t}.456 1 host=web-1\nput tel_sentinel {t} 1 host=web-1\n")
            .as_bytes(),
    );
    influx_rows(&db, "tel_sentinel");
    let answer = db.query(Influxd::OPENTSDB_DB, "SELECT * FROM \"tel_dotted\"");
    assert!(answer.pointer("/results/0/series").is_none(), "{answer}");
    let body = format!(
        r#"[{{"metric":"http_dotted","timestamp":{t}.456,"value":1,"tags":{{"host":"web-1"}}}},{{"metric":"http_dotted","timestamp":{t},"value":2,"tags":{{"host":"web-1"}}}}]"#
    );
    let (status, text) = http_post(addr, "/api/put", "application/json", body.as_bytes());
    assert_eq!((status, text.trim()), (400, "json array decode error"));
}

// ---- /api/put faults (stub) ----

#[derive(Debug, Clone)]
struct Request {
    head: String,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        common::header(&self.head, name)
    }

    fn points(&self) -> usize {
        serde_json::from_str::<Vec<Value>>(&self.body)
            .unwrap()
            .len()
    }
}

/// An HTTP/1.1 server answering `script` in order (status, body), then 204.
async fn api_stub(script: Vec<(u16, &'static str)>) -> (SocketAddr, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
    let script = Arc::new(Mutex::new(script));
    let got = requests.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(conn, got.clone(), script.clone()));
        }
    });
    (addr, requests)
}

async fn serve(
    mut conn: TcpStream,
    requests: Arc<Mutex<Vec<Request>>>,
    script: Arc<Mutex<Vec<(u16, &'static str)>>>,
) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut conn, &mut buf).await {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        requests.lock().unwrap().push(Request {
            head: req.head,
            body,
        });
        let (status, body) = {
            let mut s = script.lock().unwrap();
            if s.is_empty() { (204, "") } else { s.remove(0) }
        };
        let resp = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// OpenTSDB's answer with `details` when one point of the request failed.
const DETAILS: &str = r#"{"errors":[{"datapoint":{"metric":"m_b","timestamp":1700000000,"value":2,"tags":{"h":"a"}},"error":"Unknown metric"}],"failed":1,"success":1}"#;

fn five_points() -> Vec<Metric> {
    vec![
        Metric::new("m")
            .tag("h", "a")
            .field("a", 1i64)
            .field("b", 2i64)
            .field("c", 3i64)
            .at(1_700_000_000 * NS),
        Metric::new("n")
            .tag("h", "a")
            .field("x", 4.5)
            .field("y", 5.5)
            .at(1_700_000_000 * NS),
    ]
}

#[test]
fn a_details_answer_counts_the_refused_points_and_keeps_the_rest() {
    let rt = runtime();
    rt.block_on(async {
        let (addr, requests) = api_stub(vec![(400, DETAILS)]).await;
        let mut s = sink(
            &format!("http://{addr}/api/put"),
            "http_batch_size = 2\nusername = \"u\"\npassword = \"p\"",
        );
        s.new_batch();
        let sent = s.send(&views(&five_points())).await.unwrap();
        assert_eq!((sent.metrics, sent.points), (2, 5));
        assert_eq!(sent.rejected, 1);
        assert_eq!(
            sent.rejection.as_deref(),
            Some("400 Bad Request: 1 of 2 points refused, first: Unknown metric (metric m_b)")
        );
        let reqs = requests.lock().unwrap().clone();
        // Every request once: the 400 was not retried, the rest still went.
        assert_eq!(reqs.iter().map(Request::points).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert!(reqs[0].head.starts_with("POST /api/put?details HTTP/1.1\r\n"), "{}", reqs[0].head);
        assert_eq!(reqs[0].header("authorization"), Some("Basic dTpw"));
        assert_eq!(reqs[0].header("content-type"), Some("application/json"));
        assert_eq!(
            reqs[0].body,
            r#"[{"metric":"m_a","timestamp":1700000000,"value":1,"tags":{"h":"a"}},{"metric":"m_b","timestamp":1700000000,"value":2,"tags":{"h":"a"}}]"#
        );
        assert_eq!(
            reqs[2].body,
            r#"[{"metric":"n_y","timestamp":1700000000,"value":5.5,"tags":{"h":"a"}}]"#
        );
    });
}

#[test]
fn a_plain_400_rejects_and_a_503_retries_the_batch() {
    let rt = runtime();
    rt.block_on(async {
        // One request, refused whole without details (VictoriaMetrics, InfluxDB).
        let (addr, requests) = api_stub(vec![(400, "json array decode error")]).await;
        let mut s = sink(&format!("http://{addr}/api/put"), "");
        s.new_batch();
        let err = s.send(&views(&five_points())).await.unwrap_err();
        assert_eq!(
            err,
            SinkError::Rejected {
                message: "400 Bad Request: json array decode error".into()
            }
        );
        assert_eq!(requests.lock().unwrap().len(), 1);

        // Several requests, one refused whole: the others count as sent.
        let (addr, requests) = api_stub(vec![(204, ""), (400, "bad")]).await;
        let mut s = sink(&format!("http://{addr}/api/put"), "http_batch_size = 2");
        s.new_batch();
        let sent = s.send(&views(&five_points())).await.unwrap();
        assert_eq!((sent.rejected, sent.rejection.as_deref()), (2, Some("400 Bad Request: bad")));
        assert_eq!(requests.lock().unwrap().len(), 3);

        // A 503 in the middle: the batch is retried, from the start.
        let (addr, requests) = api_stub(vec![(204, ""), (503, "busy")]).await;
        let mut s = sink(&format!("http://{addr}/api/put"), "http_batch_size = 2");
        s.new_batch();
        let err = s.send(&views(&five_points())).await.unwrap_err();
        assert!(matches!(&err, SinkError::Retryable { message, .. } if message == "503 Service Unavailable: busy"), "{err:?}");
        assert_eq!(requests.lock().unwrap().len(), 2, "stops at the failing request");
        let sent = s.send(&views(&five_points())).await.unwrap();
        assert_eq!((sent.points, sent.rejected), (5, 0));
        assert_eq!(requests.lock().unwrap().len(), 5);
    });
}

// ---- telnet answers (stub) ----

#[test]
fn telnet_error_lines_are_counted_as_rejected() {
    let rt = runtime();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (answered_tx, answered_rx) = tokio::sync::oneshot::channel();
        // Answers each line of the first batch that names `bad` as OpenTSDB
        // does, then reads to the end.
        let server = tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while got.iter().filter(|b| **b == b'\n').count() < 3 {
                let n = c.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            for line in String::from_utf8_lossy(&got)
                .lines()
                .filter(|l| l.contains("bad"))
            {
                let answer = format!(
                    "put: unknown metric: No such name for 'metrics': '{}'\n",
                    &line[4..9]
                );
                c.write_all(answer.as_bytes()).await.unwrap();
            }
            answered_tx.send(()).unwrap();
            c.read_to_end(&mut got).await.unwrap();
            String::from_utf8(got).unwrap()
        });
        let mut s = sink(&format!("tcp://{addr}"), "");
        let m = |name: &str| {
            Metric::new(name)
                .tag("h", "a")
                .field("value", 1i64)
                .at(1_700_000_000 * NS)
        };
        s.new_batch();
        let sent = s
            .send(&views(&[m("bad_1"), m("good"), m("bad_2")]))
            .await
            .unwrap();
        assert_eq!(
            (sent.points, sent.rejected),
            (3, 0),
            "the answers come later"
        );
        answered_rx.await.unwrap();
        s.new_batch();
        let sent = s.send(&views(&[m("next")])).await.unwrap();
        assert_eq!(sent.points, 1);
        assert_eq!(sent.rejected, 2, "counted with the next batch");
        assert_eq!(
            sent.rejection.as_deref(),
            Some(
                "2 lines refused (answers to this or an earlier batch), first: \
                 put: unknown metric: No such name for 'metrics': 'bad_1'"
            )
        );
        s.close().await.unwrap();
        assert_eq!(
            server.await.unwrap(),
            "put bad_1 1700000000 1 h=a\nput good 1700000000 1 h=a\n\
             put bad_2 1700000000 1 h=a\nput next 1700000000 1 h=a\n"
        );
    });
}
