//! Each launcher against its real server: start it, write one point with the
//! server's own protocol in plain std code, read it back exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

use conflux_testkit::carbon::CarbonCache;
use conflux_testkit::carbon_relay::CarbonRelay;
use conflux_testkit::influxd::{Influxd, InfluxdOptions};
use conflux_testkit::prometheus::Prometheus;
use conflux_testkit::victoria::Victoria;
use conflux_testkit::{Process, http_get, http_post, tcp_send, unix_now, url_encode};
use serde_json::{Value, json};

const TEXT: &str = "text/plain; charset=utf-8";

/// One exported series as (labels, values, millisecond timestamps).
fn series(exported: &Value) -> (Value, Vec<f64>, Vec<i64>) {
    let values = exported["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let timestamps = exported["timestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    (exported["metric"].clone(), values, timestamps)
}

#[test]
fn victoria_reads_back_influx_opentsdb_and_graphite() {
    let vm = Victoria::start();
    let now = unix_now() - 60;

    let (status, body) = http_post(
        vm.http,
        "/write",
        TEXT,
        format!("cpu,host=a usage=1.5 {now}123000000").as_bytes(),
    );
    assert_eq!(status, 204, "{body}");
    tcp_send(
        vm.opentsdb,
        format!("put sys.load {now} 0.25 host=b\n").as_bytes(),
    );
    tcp_send(
        vm.graphite,
        format!("web.disk.free 12345 {now}\n").as_bytes(),
    );
    let put = json!([{"metric": "temp", "timestamp": now * 1000 + 456, "value": 21.5, "tags": {"room": "x"}}]);
    let (status, body) = http_post(
        vm.opentsdb_http,
        "/api/put",
        "application/json",
        put.to_string().as_bytes(),
    );
    assert_eq!(status, 204, "{body}");

    let ms = now * 1000;
    let expect = [
        (
            "cpu_usage",
            json!({"__name__": "cpu_usage", "host": "a"}),
            1.5,
            ms + 123,
        ),
        (
            "sys.load",
            json!({"__name__": "sys.load", "host": "b"}),
            0.25,
            ms,
        ),
        (
            "web.disk.free",
            json!({"__name__": "web.disk.free"}),
            12345.0,
            ms,
        ),
        (
            "temp",
            json!({"__name__": "temp", "room": "x"}),
            21.5,
            ms + 456,
        ),
    ];
    for (name, labels, value, timestamp) in expect {
        let got = vm.wait_export(&format!("{{__name__={name:?}}}"), 1);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(series(&got[0]), (labels, vec![value], vec![timestamp]));
    }
}

/// VictoriaMetrics' telnet `put` reads every timestamp as seconds: a
/// 13-digit millisecond one lands thousands of years ahead and is dropped.
#[test]
fn victoria_opentsdb_telnet_drops_millisecond_timestamps() {
    let vm = Victoria::start();
    let now = unix_now() - 60;
    let big = r#"vm_rows_ignored_total{reason="big_timestamp"}"#;
    assert_eq!(vm.self_metric(big), 0.0);

    tcp_send(
        vm.opentsdb,
        format!("put in.ms {now}123 1 host=a\nput in.s {now} 2 host=a\n").as_bytes(),
    );

    let got = vm.wait_export(r#"{__name__=~"in\\..*"}"#, 1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        series(&got[0]),
        (
            json!({"__name__": "in.s", "host": "a"}),
            vec![2.0],
            vec![now * 1000]
        )
    );
    conflux_testkit::wait_until(
        "the millisecond put counted as big_timestamp",
        Duration::from_secs(20),
        || vm.self_metric(big) >= 1.0,
    );
}

#[test]
fn influxd_with_auth_reads_back_line_protocol() {
    let influxd = Influxd::start(InfluxdOptions {
        auth: true,
        ..InfluxdOptions::default()
    });
    influxd.create_db("metrics");
    let line = b"cpu,host=a usage_idle=98.5,count=3i 1700000000123456789";

    let (status, body) = http_post(influxd.http, "/write?db=metrics", TEXT, line);
    assert_eq!(status, 401, "unauthenticated write: {body}");
    let (user, password) = Influxd::ADMIN;
    let path = format!(
        "/write?db=metrics&u={}&p={}",
        url_encode(user),
        url_encode(password)
    );
    let (status, body) = http_post(influxd.http, &path, TEXT, line);
    assert_eq!(status, 204, "{body}");

    let series = influxd.wait_rows("metrics", "SELECT * FROM cpu", 1, Duration::from_secs(20));
    assert_eq!(
        series,
        [json!({
            "name": "cpu",
            "columns": ["time", "count", "host", "usage_idle"],
            "values": [[1_700_000_000_123_456_789_i64, 3, "a", 98.5]],
        })]
    );
}

/// InfluxDB's OpenTSDB listener keeps 10-digit seconds exactly and turns the
/// millisecond part of a 13-digit timestamp into microseconds.
#[test]
fn influxd_opentsdb_keeps_seconds_and_shrinks_milliseconds() {
    let influxd = Influxd::start(InfluxdOptions {
        opentsdb: true,
        ..InfluxdOptions::default()
    });
    let opentsdb = influxd.opentsdb.unwrap();
    let now = unix_now() - 60;

    tcp_send(
        opentsdb,
        format!("put sys.s {now} 0.5 host=a\nput sys.ms {now}123 0.75 host=a\n").as_bytes(),
    );
    let put = json!([{"metric": "sys.http", "timestamp": now * 1000 + 456, "value": 1.25, "tags": {"host": "a"}}]);
    let (status, body) = http_post(
        opentsdb,
        "/api/put",
        "application/json",
        put.to_string().as_bytes(),
    );
    assert_eq!(status, 204, "{body}");

    let db = Influxd::OPENTSDB_DB;
    let series = influxd.wait_rows(db, r#"SELECT * FROM /^sys\./"#, 3, Duration::from_secs(20));
    let ns = now * 1_000_000_000;
    let row = |name: &str, time: i64, value: f64| json!({"name": name, "columns": ["time", "host", "value"], "values": [[time, "a", value]]});
    assert_eq!(
        series,
        [
            row("sys.http", ns + 456_000, 1.25),
            row("sys.ms", ns + 123_000, 0.75),
            row("sys.s", ns, 0.5)
        ]
    );
}

#[test]
fn prometheus_answers_queries() {
    let prometheus = Prometheus::start();
    let (status, body) = http_get(prometheus.http, "/api/v1/status/buildinfo");
    assert_eq!(status, 200, "{body}");
    let buildinfo: Value = serde_json::from_str(&body).unwrap();
    assert!(
        buildinfo["data"]["version"]
            .as_str()
            .unwrap()
            .starts_with("2."),
        "{buildinfo}"
    );

    // No scrape jobs: nothing is stored but what tests write.
    let answer = prometheus.query("up", unix_now() as f64);
    assert_eq!(
        answer,
        json!({"status": "success", "data": {"resultType": "vector", "result": []}})
    );
}

#[test]
fn prometheus_remote_write_round_trip() {
    let prometheus = Prometheus::start();
    let ms = (unix_now() - 60) * 1000 + 123;

    let (status, body) = remote_write(&prometheus, "rw_test", &[("job", "t")], 0.1, ms);
    assert_eq!(status, 204, "{body}");
    let got = prometheus.wait_samples(r#"rw_test{job="t"}"#, 1);
    let seconds = ms as f64 / 1000.0;
    assert_eq!(
        got,
        [json!({"metric": {"__name__": "rw_test", "job": "t"}, "values": [[seconds, "0.1"]]})]
    );
    assert_eq!(
        prometheus.series("rw_test")["data"],
        json!([{"__name__": "rw_test", "job": "t"}])
    );

    // The documented window: more than an hour before the newest sample is
    // out of bounds, even for a new series.
    let (status, body) = remote_write(&prometheus, "rw_old", &[], 1.0, ms - 61 * 60 * 1000);
    assert_eq!((status, body.trim()), (400, "out of bounds"));
}

#[test]
fn carbon_cache_stores_plain_and_tagged_series() {
    let carbon = CarbonCache::start();
    let now = unix_now() - 60;

    tcp_send(
        carbon.line,
        format!(
            "web.disk.free 12345.5 {now}\nweb.disk.free 1e-3 {}\n",
            now + 1
        )
        .as_bytes(),
    );
    tcp_send(
        carbon.line,
        format!("cpu.usage;host=a;dc=x 0.25 {now}\n").as_bytes(),
    );

    assert_eq!(
        carbon.wait_fetch("web.disk.free", now - 10, now + 10, 2),
        [(now, 12345.5), (now + 1, 0.001)]
    );
    assert!(carbon.whisper_dir.join("web/disk/free.wsp").is_file());
    // Carbon sorts the tags; either order finds the series.
    assert_eq!(
        carbon.wait_fetch("cpu.usage;dc=x;host=a", now - 10, now + 10, 1),
        [(now, 0.25)]
    );
    assert_eq!(
        carbon.fetch("cpu.usage;host=a;dc=x", now, now),
        [(now, 0.25)]
    );
    assert_eq!(
        carbon.fetch("web.disk.free", now + 1, now + 1),
        [(now + 1, 0.001)]
    );
    assert!(carbon.fetch("not.there", now - 10, now + 10).is_empty());
}

#[test]
fn carbon_relay_writes_lines_through() {
    let relay = CarbonRelay::start();
    let now = unix_now();
    let sent = [
        format!("web.disk.free 12345 {now}"),
        format!("cpu.usage;host=a;dc=x 0.25 {now}"),
        format!("in.ms 1 {now}123"),
    ];
    tcp_send(relay.line, format!("{}\n", sent.join("\n")).as_bytes());
    assert_eq!(relay.wait_lines(3), sent);
}

#[test]
fn two_servers_of_each_kind_run_at_once() {
    fn pair<T: Send + 'static>(start: fn() -> T) -> (T, T) {
        let other = thread::spawn(start);
        let one = start();
        (one, other.join().unwrap())
    }
    let (vm1, vm2) = pair(Victoria::start);
    let (influx1, influx2) = pair(|| {
        Influxd::start(InfluxdOptions {
            opentsdb: true,
            auth: true,
        })
    });
    let (prom1, prom2) = pair(Prometheus::start);
    let (carbon1, carbon2) = pair(CarbonCache::start);
    let (relay1, relay2) = pair(CarbonRelay::start);
    assert_ne!(vm1.http, vm2.http);
    assert_ne!(influx1.http, influx2.http);
    assert_ne!(prom1.http, prom2.http);
    assert_ne!(carbon1.line, carbon2.line);
    assert_ne!(relay1.line, relay2.line);

    // Each has its own storage: what one receives, the other does not have.
    let now = unix_now() - 60;
    tcp_send(vm1.graphite, format!("only.one 1 {now}\n").as_bytes());
    tcp_send(vm2.graphite, format!("only.two 2 {now}\n").as_bytes());
    assert_eq!(vm1.wait_export(r#"{__name__=~"only.*"}"#, 1).len(), 1);
    assert_eq!(
        vm2.wait_export(r#"{__name__=~"only.*"}"#, 1)[0]["metric"]["__name__"],
        "only.two"
    );
    tcp_send(relay1.line, b"a 1 1700000000\n");
    tcp_send(relay2.line, b"b 2 1700000000\n");
    assert_eq!(relay1.wait_lines(1), ["a 1 1700000000"]);
    assert_eq!(relay2.wait_lines(1), ["b 2 1700000000"]);
}

#[test]
fn drop_kills_the_server_and_removes_its_directory() {
    let relay = CarbonRelay::start();
    let (pid, dir) = (relay.process().pid(), relay.process().dir().to_owned());
    assert!(PathBuf::from(format!("/proc/{pid}")).exists());
    drop(relay);
    assert!(
        !PathBuf::from(format!("/proc/{pid}")).exists(),
        "pid {pid} still there"
    );
    assert!(!dir.exists(), "{} still there", dir.display());
}

#[test]
#[should_panic(expected = "install the Debian package `no-such-package`")]
fn missing_binary_names_its_package() {
    let dir = tempfile::tempdir().unwrap();
    Process::spawn(
        "nothing",
        "no-such-package",
        dir,
        Command::new("conflux-testkit-no-such-binary"),
    );
}

/// Prometheus remote write 1.0 of one sample: a `WriteRequest` protobuf
/// encoded by hand, snappy-framed as literals only (valid snappy, no
/// compression), so that this test needs no codec crates.
fn remote_write(
    prometheus: &Prometheus,
    name: &str,
    labels: &[(&str, &str)],
    value: f64,
    ms: i64,
) -> (u16, String) {
    fn varint(out: &mut Vec<u8>, mut n: u64) {
        while n >= 0x80 {
            out.push(u8::try_from(n & 0x7f).unwrap() | 0x80);
            n >>= 7;
        }
        out.push(u8::try_from(n).unwrap());
    }
    fn bytes_field(out: &mut Vec<u8>, field: u64, payload: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, payload.len() as u64);
        out.extend_from_slice(payload);
    }
    let mut timeseries = Vec::new();
    for (label, label_value) in [("__name__", name)].iter().chain(labels) {
        let mut pair = Vec::new();
        bytes_field(&mut pair, 1, label.as_bytes());
        bytes_field(&mut pair, 2, label_value.as_bytes());
        bytes_field(&mut timeseries, 1, &pair);
    }
    let mut sample = vec![1 << 3 | 1];
    sample.extend_from_slice(&value.to_le_bytes());
    varint(&mut sample, 2 << 3);
    varint(&mut sample, u64::from_ne_bytes(ms.to_ne_bytes()));
    bytes_field(&mut timeseries, 2, &sample);
    let mut request = Vec::new();
    bytes_field(&mut request, 1, &timeseries);

    let mut body = Vec::new();
    varint(&mut body, request.len() as u64);
    for chunk in request.chunks(60) {
        body.push(u8::try_from(chunk.len() - 1).unwrap() << 2);
        body.extend_from_slice(chunk);
    }
    let response = conflux_testkit::http_request(
        prometheus.http,
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
    (response.status, response.text())
}
