//! The kairosdb listener and sink through the whole daemon: Python `requests`
//! posting KairosDB bodies (both shapes, gzip both ways, good and bad objects
//! mixed) checked value by value at the file sink; one address shared with
//! the influx listener; and a round trip KairosDB in → kairosdb sink →
//! KairosDB listener of a second Conflux → file sink.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::TcpListener;
use std::time::Duration;

use conflux_e2e::{Daemon, gzip, http, python_json, read, run_cli, wait_until};

fn stop(mut d: Daemon) -> Daemon {
    assert_eq!(d.terminate().code(), Some(0), "{}", d.logs());
    d
}

#[test]
fn python_requests_post_kairosdb_bodies() {
    let d = Daemon::start(
        r#"
[listeners.kairos]
type = "kairosdb"
address = "127.0.0.1:0"
[sinks.out]
type = "file"
path = "out.lp"
batch_max_age_ms = 5
"#,
    );
    let addr = d.addr("kairos");
    let out = python_json(
        "kairosdb_client.py",
        &[addr.ip().to_string(), addr.port().to_string()],
        &d,
    );
    for key in ["array", "object", "gzip", "gzip_content_type"] {
        assert_eq!(out[key], serde_json::json!([204, ""]), "{key}: {out}");
    }
    assert_eq!(
        out["mixed"],
        serde_json::json!([400, {"errors": [
            "metric[1].name may not be empty.",
            "metric[2](name=no.tags).tags count must be greater than or equal to 1.",
            "metric[3](name=good.two).datapoints[1].value may not be empty.",
            "Unregistered data point type 'complex-number'"
        ]}]),
        "{out}"
    );
    assert_eq!(out["syntax"][0], 400, "{out}");
    let syntax = out["syntax"][1]["errors"][0].as_str().unwrap();
    assert!(
        syntax.starts_with("expected value at line 1 column"),
        "{out}"
    );
    assert_eq!(
        out["version"],
        serde_json::json!([200, {"version": "KairosDB 1.3.0"}])
    );
    assert_eq!(out["health_check"], 204);
    assert_eq!(
        out["health_status"],
        serde_json::json!([200, ["JVM-Thread-Deadlock: OK", "Datastore-Query: OK"]])
    );
    let rejected = d.metric("conflux_listener_rejected_total", &[("listener", "kairos")]);
    assert_eq!(rejected, 5.0);
    let unregistered = d.metric(
        "conflux_listener_rejected_total",
        &[("listener", "kairos"), ("reason", "unregistered_type")],
    );
    assert_eq!(unregistered, 1.0);
    let points = d.metric(
        "conflux_listener_received_points_total",
        &[("listener", "kairos")],
    );
    assert_eq!(points, 11.0);

    let d = stop(d);
    assert_eq!(
        read(d.dir().join("out.lp")),
        "archive_file_tracked,data_center=DC1,host=server1 value=123i 1359788400000000000\n\
         archive_file_tracked,data_center=DC1,host=server1 value=13.2 1359788300000000000\n\
         archive_file_tracked,data_center=DC1,host=server1 value=23.1 1359788410000000000\n\
         archive_file_search,host=server2 value=321i 1359786400000000000\n\
         state,host=server2 value=\"42\" 1359786400001000000\n\
         text,host=server2 value=\"The Value\" 1359786400002000000\n\
         single,host=server3 value=-7.5 1359786400003000000\n\
         zipped,how=content-encoding value=1i 1359786400004000000\n\
         zipped,how=content-type value=2i 1359786400005000000\n\
         good.one,host=a value=1i 1359786400006000000\n\
         good.two,host=b value=4i 1359786400007000000\n"
    );
}

/// A port free right now (the daemon binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn shares_one_address_with_the_influx_listener() {
    let port = free_port();
    let d = Daemon::start(&format!(
        r#"
[listeners.influx]
type = "influx"
address = "127.0.0.1:{port}"
[listeners.kairos]
type = "kairosdb"
address = "127.0.0.1:{port}"
[sinks.out]
type = "file"
path = "out.lp"
batch_max_age_ms = 5
"#
    ));
    let addr = d.addr("kairos");
    assert_eq!(addr, d.addr("influx"));
    assert_eq!(addr.port(), port);
    let r = http(
        addr,
        "POST",
        "/write?db=x",
        &[],
        b"cpu,host=a usage=1.5 1000000000\n",
    );
    assert_eq!(r.status, 204, "{r:?}");
    let r = http(
        addr,
        "POST",
        "/api/v1/datapoints",
        &[("Content-Type", "application/json")],
        br#"[{"name":"kairos.metric","timestamp":2000,"value":7,"tags":{"host":"b"}}]"#,
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(http(addr, "GET", "/ping", &[], b"").status, 204);
    let r = http(addr, "GET", "/api/v1/version", &[], b"");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, r#"{"version":"KairosDB 1.3.0"}"#)
    );
    let d = stop(d);
    assert_eq!(
        read(d.dir().join("out.lp")),
        "cpu,host=a usage=1.5 1000000000\nkairos.metric,host=b value=7i 2000000000\n"
    );
}

#[test]
fn round_trip_through_the_kairosdb_sink_into_a_second_conflux() {
    // B: a KairosDB listener writing to a file.
    let b = Daemon::start(
        r#"
[listeners.kairos]
type = "kairosdb"
address = "127.0.0.1:0"
[sinks.out]
type = "file"
path = "out.lp"
batch_max_age_ms = 5
"#,
    );
    // A: KairosDB and influx in, the kairosdb sink (gzip, Basic auth B ignores) out to B.
    let a = Daemon::start(&format!(
        r#"
[listeners.kairos]
type = "kairosdb"
address = "127.0.0.1:0"
[listeners.influx]
type = "influx"
address = "127.0.0.1:0"
[sinks.to_b]
type = "kairosdb"
url = "http://{}/api/v1/datapoints"
gzip = true
username = "u"
password = "p"
batch_max_age_ms = 20
"#,
        b.addr("kairos")
    ));
    let body = r#"[
      {"name":"archive_file_tracked","datapoints":[[1359788400000,123],[1359788300000,13.2],[1359788410000,23.1]],"tags":{"host":"server1","data_center":"DC1"},"ttl":300},
      {"name":"archive_file_search","timestamp":1359786400000,"value":321,"tags":{"host":"server2"}},
      {"name":"state","type":"string","timestamp":1359786400001,"value":"42","tags":{"host":"server2"}},
      {"name":"big","timestamp":1359786400002,"value":-9223372036854775808,"tags":{"host":"server2"}},
      {"name":"tiny","timestamp":1359786400003,"value":1e-300,"tags":{"host":"server2"}}
    ]"#;
    // Undeclared, a gzip body is not JSON; declared, it is read.
    let r = http(
        a.addr("kairos"),
        "POST",
        "/api/v1/datapoints",
        &[],
        &gzip(body.as_bytes()),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.body, r#"{"errors":["Invalid start of json."]}"#);
    let r = http(
        a.addr("kairos"),
        "POST",
        "/api/v1/datapoints",
        &[("Content-Encoding", "gzip")],
        &gzip(body.as_bytes()),
    );
    assert_eq!(r.status, 204, "{r:?}");
    // Influx metrics take the naming policy: `measurement.field`, `value` bare,
    // bools 1/0, strings kept.
    let r = http(
        a.addr("influx"),
        "POST",
        "/write?db=x&precision=ms",
        &[],
        b"cpu,host=h1 usage_idle=97.5,n=2i,up=true,state=\"ok\" 1359786400009\nload value=0.25 1359786400010\n",
    );
    assert_eq!(r.status, 204, "{r:?}");

    let sent = || a.metric("conflux_sink_sent_points_total", &[("sink", "to_b")]);
    assert!(
        wait_until(Duration::from_secs(30), || sent() == 12.0),
        "sent {} points; log:\n{}",
        sent(),
        a.logs()
    );
    let received = b.metric(
        "conflux_listener_received_points_total",
        &[("listener", "kairos")],
    );
    assert_eq!(received, 12.0);
    stop(a);
    let b = stop(b);
    let mut lines: Vec<String> = read(b.dir().join("out.lp"))
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    assert_eq!(
        lines.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "archive_file_search,host=server2 value=321i 1359786400000000000",
            "archive_file_tracked,data_center=DC1,host=server1 value=123i 1359788400000000000",
            "archive_file_tracked,data_center=DC1,host=server1 value=13.2 1359788300000000000",
            "archive_file_tracked,data_center=DC1,host=server1 value=23.1 1359788410000000000",
            "big,host=server2 value=-9223372036854775808i 1359786400002000000",
            "cpu.n,host=h1 value=2i 1359786400009000000",
            "cpu.state,host=h1 value=\"ok\" 1359786400009000000",
            "cpu.up,host=h1 value=1i 1359786400009000000",
            "cpu.usage_idle,host=h1 value=97.5 1359786400009000000",
            "load,add=tag value=0.25 1359786400010000000",
            "state,host=server2 value=\"42\" 1359786400001000000",
            // 1e-300 exactly, as line protocol writes it.
            &format!(
                "tiny,host=server2 value=0.{}1 1359786400003000000",
                "0".repeat(299)
            ),
        ]
    );
}

#[test]
fn check_names_every_problem_of_kairosdb_components() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[listeners.kairos]
type = "kairosdb"
address = "127.0.0.1:0"
max_body_bytes = 0
[sinks.k]
type = "kairosdb"
url = "ftp://kairos.example:8080/api/v1/datapoints"
username = "u"
untagged_tag = "nope"
[sinks.k2]
type = "kairosdb"
url = "http://127.0.0.1:8080/api/v1/datapoints"
gzipp = true
"#,
    )
    .unwrap();
    let (code, _out, err) = run_cli(&["check", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(code, 1, "{err}");
    for want in [
        "listeners.kairos: `max_body_bytes` must be at least 1",
        "sinks.k: `url` = \"ftp://kairos.example:8080/api/v1/datapoints\" must start with http:// or https://",
        "sinks.k: `username` and `password` go together",
        "sinks.k: `untagged_tag` = \"nope\" must be `name=value` or empty",
        "sinks.k2: unknown field `gzipp`",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
