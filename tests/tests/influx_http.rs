//! The influx listener over raw HTTP, TCP and UDP: every status code it
//! promises, the shape of every answer, and what reaches the sink.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use conflux_e2e::{Daemon, Response, gzip, http, http_chunked, read, wait_until};

fn daemon(extra: &str) -> Daemon {
    Daemon::start(&format!(
        r#"
[listeners.influx]
type = "influx"
address = "127.0.0.1:0"
max_body_bytes = 2000
databases = ["telegraf"]
{extra}
[sinks.out]
type = "file"
path = "out.lp"
batch_max_age_ms = 5
"#
    ))
}

fn post(d: &Daemon, path: &str, body: &str) -> Response {
    http(d.addr("influx"), "POST", path, &[], body.as_bytes())
}

fn get(d: &Daemon, path: &str) -> Response {
    http(d.addr("influx"), "GET", path, &[], b"")
}

/// What reached the file sink, after a clean stop.
fn stored(mut d: Daemon) -> String {
    assert_eq!(d.terminate().code(), Some(0), "{}", d.logs());
    read(d.dir().join("out.lp"))
}

fn json(r: &Response) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {r:?}"))
}

#[test]
fn v1_write_answers_204_with_influxdb_headers() {
    let d = daemon("");
    let r = post(
        &d,
        "/write?db=telegraf",
        "m,t=a f=1.5,i=-3i,u=7u,b=true,s=\"x y\" 1700000000000000000\n",
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.body, "");
    assert_eq!(r.header("X-Influxdb-Version"), Some("1.8.10"));
    assert_eq!(r.header("X-Influxdb-Build"), Some("OSS"));
    assert_eq!(
        stored(d),
        "m,t=a f=1.5,i=-3i,u=7u,b=true,s=\"x y\" 1700000000000000000\n"
    );
}

#[test]
fn partial_write_keeps_good_lines_and_counts_the_dropped_ones() {
    let d = daemon("");
    let r = post(
        &d,
        "/write?db=telegraf&rp=autogen",
        "good,n=1 v=1 1\nbad v=oops 2\ngood,n=3 v=3 3\nworse,t v=1 4\n",
    );
    assert_eq!(r.status, 400, "{r:?}");
    let msg = json(&r)["error"].as_str().unwrap().to_owned();
    assert_eq!(
        msg,
        "partial write: unable to parse 'bad v=oops 2': invalid boolean\n\
         unable to parse 'worse,t v=1 4': missing tag value dropped=2 \
         for database: telegraf for retention policy: autogen"
    );
    // The header carries the same message, control characters made spaces.
    assert_eq!(
        r.header("X-Influxdb-Error"),
        Some(msg.replace('\n', " ").as_str())
    );
    let m = d.metric("conflux_listener_rejected_total", &[("listener", "influx")]);
    assert_eq!(m, 2.0);
    assert_eq!(stored(d), "good,n=1 v=1 1\ngood,n=3 v=3 3\n");
}

#[test]
fn a_body_of_only_bad_lines_is_a_plain_400() {
    let d = daemon("");
    let r = post(&d, "/write?db=telegraf", "no_fields\n");
    assert_eq!(r.status, 400);
    assert_eq!(
        json(&r)["error"],
        "unable to parse 'no_fields': missing fields"
    );
    assert_eq!(stored(d), "");
}

#[test]
fn parameters_are_checked_the_way_influxdb_checks_them() {
    let d = daemon("");
    let r = post(&d, "/write", "m v=1");
    assert_eq!(
        (r.status, json(&r)["error"].as_str()),
        (400, Some("database is required"))
    );
    let r = post(&d, "/write?db=x&precision=sec", "m v=1");
    assert_eq!(r.status, 400);
    assert_eq!(
        json(&r)["error"],
        "invalid precision \"sec\" (use n, u, ms, s, m or h)"
    );
    for (p, ts) in [
        ("s", "7000000000"),
        ("ms", "7000000"),
        ("us", "7000"),
        ("u", "7000"),
        ("n", "7"),
        ("h", "25200000000000"),
    ] {
        let r = post(
            &d,
            &format!("/write?db=x&precision={p}"),
            &format!("p_{p} v=1 7"),
        );
        assert_eq!(r.status, 204, "{p}: {r:?}");
        let _ = ts;
    }
    let out = stored(d);
    for (p, ts) in [
        ("s", "7000000000"),
        ("ms", "7000000"),
        ("us", "7000"),
        ("u", "7000"),
        ("n", "7"),
        ("h", "25200000000000"),
    ] {
        assert!(out.contains(&format!("p_{p} v=1 {ts}\n")), "{p}: {out}");
    }
}

#[test]
fn a_point_without_timestamp_gets_the_receive_time_cut_to_the_precision() {
    let d = daemon("");
    assert_eq!(post(&d, "/write?db=x&precision=s", "m v=1").status, 204);
    let out = stored(d);
    let ts: i64 = out.trim().rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(ts % 1_000_000_000, 0, "{out}");
    assert!(ts > 1_700_000_000_000_000_000, "{out}");
}

#[test]
fn oversize_bodies_get_413_by_length_chunked_or_gzip() {
    let d = daemon("");
    let big = format!("m v=\"{}\"\n", "x".repeat(3000));
    let r = post(&d, "/write?db=x", &big);
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(json(&r)["error"], "Request Entity Too Large");
    let r = http_chunked(d.addr("influx"), "/write?db=x", &[], big.as_bytes(), 500);
    assert_eq!(r.status, 413, "{r:?}");
    // 3,000 bytes that gzip to a few dozen: the limit applies to what they decode to.
    let packed = gzip(big.as_bytes());
    assert!(packed.len() < 2000);
    let r = http(
        d.addr("influx"),
        "POST",
        "/write?db=x",
        &[("Content-Encoding", "gzip")],
        &packed,
    );
    assert_eq!(r.status, 413, "{r:?}");
    let r = http(
        d.addr("influx"),
        "POST",
        "/api/v2/write?bucket=b",
        &[],
        big.as_bytes(),
    );
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(json(&r)["code"], "request too large");
    assert_eq!(stored(d), "");
}

#[test]
fn gzip_and_chunked_bodies_are_read() {
    let d = daemon("");
    let body = "a v=1 1\nb v=2 2\n";
    let r = http(
        d.addr("influx"),
        "POST",
        "/write?db=x",
        &[("Content-Encoding", "gzip")],
        &gzip(body.as_bytes()),
    );
    assert_eq!(r.status, 204, "{r:?}");
    let r = http_chunked(
        d.addr("influx"),
        "/write?db=x",
        &[],
        b"c v=3 3\nd v=4 4\n",
        3,
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(stored(d), "a v=1 1\nb v=2 2\nc v=3 3\nd v=4 4\n");
}

#[test]
fn credentials_are_checked_on_writes_and_queries_only() {
    let d = daemon(r#"credentials = [{ username = "u1", password = "p1" }, { token = "tok" }]"#);
    let a = d.addr("influx");
    let r = post(&d, "/write?db=x", "m v=1 1");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Basic realm=\"InfluxDB\"")
    );
    assert_eq!(json(&r)["error"], "authorization failed");
    let r = http(
        a,
        "POST",
        "/write?db=x",
        &[("Authorization", "Basic dTE6d3Jvbmc=")],
        b"m v=1 1",
    );
    assert_eq!(r.status, 401, "wrong password");
    let r = http(
        a,
        "POST",
        "/api/v2/write?bucket=b",
        &[("Authorization", "Token nope")],
        b"m v=1 1",
    );
    assert_eq!(
        (r.status, json(&r)["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(get(&d, "/query?q=SHOW+DATABASES").status, 401);
    for (path, headers) in [
        ("/write?db=x&u=u1&p=p1", vec![]),
        ("/write?db=x", vec![("Authorization", "Basic dTE6cDE=")]),
        ("/write?db=x", vec![("Authorization", "Token u1:p1")]),
        ("/write?db=x", vec![("Authorization", "Bearer tok")]),
        (
            "/api/v2/write?bucket=b",
            vec![("Authorization", "Token tok")],
        ),
    ] {
        let r = http(a, "POST", path, &headers, b"ok v=1 1");
        assert_eq!(r.status, 204, "{path} {headers:?}: {r:?}");
    }
    for path in ["/ping", "/health", "/ready", "/api/v2/health"] {
        let r = get(&d, path);
        assert!(r.status == 200 || r.status == 204, "{path}: {r:?}");
    }
    assert_eq!(stored(d).lines().count(), 5);
}

/// Send `head` (request line and headers, without the length) and, a
/// moment later, a body; read the answer, which must start with `status`;
/// then ask `/ping` on the same connection. hyper closes a connection whose
/// request body was left unread, and a client that reuses it (the InfluxDB
/// client's health check after a refused write) then races the close: every
/// answer given without the body reads it first.
#[track_caller]
fn answer_leaves_the_connection_usable(d: &Daemon, head: &str, status: &str) {
    let mut c = TcpStream::connect(d.addr("influx")).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = "m v=1 1\n".repeat(2000);
    write!(c, "{head}Content-Length: {}\r\n\r\n", body.len()).unwrap();
    // The body after the head, as a client's write can arrive: the
    // answer is decided before it is there.
    std::thread::sleep(Duration::from_millis(200));
    let _ = c.write_all(body.as_bytes());
    let answer = read_response(&mut c);
    assert!(answer.starts_with(status), "{head:?}: {answer}");
    write!(c, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let ping = read_response(&mut c);
    assert!(
        ping.starts_with("HTTP/1.1 204"),
        "{head:?}, then /ping: {ping}"
    );
}

/// One HTTP/1.1 response with a `Content-Length`, whole; empty when the
/// connection closed first.
fn read_response(c: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        match std::io::Read::read(c, &mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return String::from_utf8_lossy(&got).into_owned(),
        }
    }
}

#[test]
fn early_answers_leave_the_connection_usable() {
    let d = daemon(r#"credentials = [{ token = "tok" }]"#);
    let auth = "Host: x\r\nAuthorization: Token tok\r\n";
    for (head, status) in [
        (
            "POST /api/v2/write?bucket=b HTTP/1.1\r\nHost: x\r\nAuthorization: Token nope\r\n"
                .to_owned(),
            "HTTP/1.1 401",
        ),
        (format!("POST /write HTTP/1.1\r\n{auth}"), "HTTP/1.1 400"),
        (
            format!("POST /write?db=x&precision=days HTTP/1.1\r\n{auth}"),
            "HTTP/1.1 400",
        ),
        (
            format!("POST /api/v2/write HTTP/1.1\r\n{auth}"),
            "HTTP/1.1 400",
        ),
        (format!("POST /nope HTTP/1.1\r\n{auth}"), "HTTP/1.1 404"),
        (format!("POST /ping HTTP/1.1\r\n{auth}"), "HTTP/1.1 405"),
        (
            format!("POST /query?q=SHOW%20DATABASES HTTP/1.1\r\n{auth}"),
            "HTTP/1.1 200",
        ),
    ] {
        answer_leaves_the_connection_usable(&d, &head, status);
    }
    assert_eq!(stored(d), "");
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405() {
    let d = daemon("");
    assert_eq!(get(&d, "/nope").status, 404);
    let r = get(&d, "/write?db=x");
    assert_eq!(r.status, 405);
    assert!(r.header("Allow").unwrap().contains("POST"), "{r:?}");
    assert_eq!(post(&d, "/ping", "").status, 405);
}

#[test]
fn ping_health_and_ready_answer_like_influxdb() {
    let d = daemon("");
    let a = d.addr("influx");
    let r = get(&d, "/ping");
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(r.header("X-Influxdb-Version"), Some("1.8.10"));
    assert_eq!(http(a, "HEAD", "/ping", &[], b"").status, 204);
    let r = get(&d, "/ping?verbose=true");
    assert_eq!(
        (r.status, json(&r)["version"].as_str()),
        (200, Some("1.8.10"))
    );
    assert_eq!(get(&d, "/ping?verbose=false").status, 204);
    let h = json(&get(&d, "/health"));
    assert_eq!(
        (h["status"].as_str(), h["name"].as_str()),
        (Some("pass"), Some("influxdb"))
    );
    assert_eq!(json(&get(&d, "/api/v2/health"))["status"], "pass");
    assert_eq!(json(&get(&d, "/ready"))["status"], "ready");
}

#[test]
fn query_answers_create_and_show_databases_and_refuses_the_rest() {
    let d = daemon("");
    let a = d.addr("influx");
    let r = http(
        a,
        "POST",
        "/query",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"q=CREATE+DATABASE+%22my+db%22",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        json(&r),
        serde_json::json!({"results": [{"statement_id": 0}]})
    );
    let r = get(
        &d,
        "/query?q=create%20database%20other%3B%20SHOW%20DATABASES",
    );
    let v = json(&r);
    assert_eq!(
        v["results"][1]["series"][0]["values"],
        serde_json::json!([["my db"], ["other"], ["telegraf"]]),
        "{v}"
    );
    let r = get(&d, "/query?q=SELECT+*+FROM+cpu");
    assert_eq!(r.status, 400);
    assert!(
        json(&r)["error"]
            .as_str()
            .unwrap()
            .contains("stores no data"),
        "{r:?}"
    );
    assert_eq!(get(&d, "/query").status, 400);
}

#[test]
fn v2_write_uses_bucket_precision_and_the_v2_error_shape() {
    let d = daemon(r#"bucket_tag = "bucket""#);
    let a = d.addr("influx");
    let r = http(
        a,
        "POST",
        "/api/v2/write?org=o&bucket=b1&precision=ms",
        &[],
        b"m v=1 5",
    );
    assert_eq!(r.status, 204, "{r:?}");
    let r = http(
        a,
        "POST",
        "/api/v2/write?org=o&bucket=b1&precision=h",
        &[],
        b"m v=1 5",
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        json(&r),
        serde_json::json!({"code": "invalid", "message": "invalid precision; valid precision units are ns, us, ms, and s"})
    );
    let r = http(a, "POST", "/api/v2/write?org=o", &[], b"m v=1 5");
    assert_eq!(
        (r.status, json(&r)["code"].as_str()),
        (400, Some("invalid"))
    );
    let r = http(
        a,
        "POST",
        "/api/v2/write?bucket=b2",
        &[],
        b"ok v=2 6\nm v=\n",
    );
    assert_eq!(r.status, 400);
    let v = json(&r);
    assert_eq!(v["code"], "invalid");
    assert_eq!(v["line"], 2);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("partial write: unable to parse 'm v='"),
        "{v}"
    );
    assert_eq!(stored(d), "m,bucket=b1 v=1 5000000\nok,bucket=b2 v=2 6\n");
}

#[test]
fn kwdb_telegraf_endpoint_answers_in_kwdb_shape() {
    let d = daemon(
        r#"credentials = [{ username = "root", password = "pw" }]
database_tag = "db""#,
    );
    let a = d.addr("influx");
    let basic = [("Authorization", "Basic cm9vdDpwdw==")];
    let r = http(
        a,
        "POST",
        "/restapi/telegraf?db=tsdb",
        &basic,
        b"m,host=a v=1 1\nm,host=b v=2 2\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let v = json(&r);
    assert_eq!(
        (v["code"].as_i64(), v["rows"].as_i64()),
        (Some(0), Some(2)),
        "{v}"
    );
    assert!(v["desc"].is_null());
    let r = http(
        a,
        "POST",
        "/restapi/telegraf?db=tsdb",
        &basic,
        b"x v=1 3\nbad\n",
    );
    assert_eq!(r.status, 400);
    let v = json(&r);
    assert_eq!(
        (v["code"].as_i64(), v["rows"].as_i64()),
        (Some(-1), Some(1)),
        "{v}"
    );
    assert_eq!(
        http(a, "POST", "/restapi/telegraf?db=tsdb", &[], b"m v=1").status,
        401
    );
    assert_eq!(
        stored(d),
        "m,db=tsdb,host=a v=1 1\nm,db=tsdb,host=b v=2 2\nx,db=tsdb v=1 3\n"
    );
}

#[test]
fn line_protocol_over_tcp_and_udp() {
    let d = daemon(
        r#"tcp_address = "127.0.0.1:0"
udp_address = "127.0.0.1:0"
max_line_bytes = 100"#,
    );
    let mut tcp = TcpStream::connect(d.addr("influx/tcp")).unwrap();
    let long = format!("long v=\"{}\" 9\n", "y".repeat(200));
    tcp.write_all(format!("t1 v=1 1\nbad line\n{long}t2 v=2 2\n").as_bytes())
        .unwrap();
    tcp.flush().unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"u1 v=1 1\nu2 v=2 2\n", d.addr("influx/udp"))
        .unwrap();
    let too_long = |d: &Daemon| {
        d.metric(
            "conflux_listener_rejected_total",
            &[("reason", "line_too_long")],
        )
    };
    assert!(wait_until(Duration::from_secs(10), || {
        d.metric(
            "conflux_listener_received_metrics_total",
            &[("listener", "influx")],
        ) >= 4.0
            && too_long(&d) >= 1.0
    }));
    assert_eq!(too_long(&d), 1.0);
    assert_eq!(
        d.metric(
            "conflux_listener_rejected_total",
            &[("reason", "invalid_field_format")]
        ),
        1.0
    );
    // The connection stayed usable after the bad and over-long lines.
    tcp.write_all(b"t3 v=3 3\n").unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        d.metric(
            "conflux_listener_received_metrics_total",
            &[("listener", "influx")],
        ) >= 5.0
    }));
    drop(tcp);
    let mut lines: Vec<String> = stored(d).lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(
        lines,
        ["t1 v=1 1", "t2 v=2 2", "t3 v=3 3", "u1 v=1 1", "u2 v=2 2"]
    );
}
