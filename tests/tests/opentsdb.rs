//! The opentsdb listener in the daemon: a raw telnet session (as `nc` would
//! send it) and `/api/put` on the same port, every reply checked, and the
//! data checked value by value at the file sink; `/metrics` carries the
//! listener's series.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use conflux_e2e::{Daemon, gzip, http, read};

fn daemon(extra: &str) -> Daemon {
    Daemon::start(&format!(
        r#"
[listeners.tsdb]
type = "opentsdb"
address = "127.0.0.1:0"
{extra}
[sinks.out]
type = "file"
path = "out.lp"
batch_max_age_ms = 5
"#
    ))
}

/// What reached the file sink, after a clean stop.
fn stored(mut d: Daemon) -> String {
    assert_eq!(d.terminate().code(), Some(0), "{}", d.logs());
    read(d.dir().join("out.lp"))
}

/// A whole telnet session: write everything, close the write side, read all
/// replies until the daemon closes.
fn session(d: &Daemon, input: &[u8]) -> String {
    let mut s = TcpStream::connect(d.addr("tsdb")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(input).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn a_telnet_session_stores_every_good_line_and_answers_the_rest() {
    let d = daemon("");
    let input: &[u8] = b"put sys.cpu.user 1700000000 42.5 host=web01 cpu=0\n\
          put sys.cpu.user 1700000000123 -7 host=web01 cpu=1\r\n\
          put bad 1700000000 NaN host=web01\n\
          put m 1700000000\n\
          version\n\
          stats\n\
          putm kairos.ms 1700000000456 3 host=k\n\
          puts kairos.str 1700000000 on host=k\n\
          put sys.load 1700000000.250 1e3 host=web01\n\
          put notag 1700000001 5\n";
    let reply = session(&d, input);
    let version = "net.opentsdb 2.4.1 built at revision conflux-0.1.0 (MINT)\n\
                   Built by conflux 0.1.0, an OpenTSDB-compatible gateway\n";
    assert_eq!(
        reply,
        format!(
            "put: invalid value: Invalid character 'N' in NaN\n\
             put: illegal argument: not enough arguments (need least 3, got 2)\n\
             {version}unknown command: stats.  Try `help'.\n"
        )
    );
    let m = d.metrics();
    let l = [("listener", "tsdb")];
    assert_eq!(
        conflux_e2e::metric_value(&m, "conflux_listener_received_metrics_total", &l),
        6.0,
        "{m}"
    );
    assert_eq!(
        conflux_e2e::metric_value(&m, "conflux_listener_received_points_total", &l),
        6.0
    );
    for (reason, n) in [
        ("invalid_value", 1.0),
        ("not_enough_arguments", 1.0),
        ("unknown_command", 1.0),
    ] {
        assert_eq!(
            conflux_e2e::metric_value(
                &m,
                "conflux_listener_rejected_total",
                &[("listener", "tsdb"), ("reason", reason)]
            ),
            n,
            "{reason}"
        );
    }
    assert!(conflux_e2e::metric_value(&m, "conflux_listener_connections_total", &l) >= 1.0);
    assert_eq!(
        conflux_e2e::metric_value(&m, "conflux_listener_received_bytes_total", &l),
        input.len() as f64
    );
    assert_eq!(
        stored(d),
        "sys.cpu.user,cpu=0,host=web01 value=42.5 1700000000000000000\n\
         sys.cpu.user,cpu=1,host=web01 value=-7i 1700000000123000000\n\
         kairos.ms,host=k value=3i 1700000000456000000\n\
         kairos.str,host=k value=\"on\" 1700000000000000000\n\
         sys.load,host=web01 value=1000 1700000000250000000\n\
         notag value=5i 1700000001000000000\n"
    );
}

#[test]
fn api_put_on_the_same_port() {
    let d = daemon("max_body_bytes = 4000");
    let addr = d.addr("tsdb");
    let body = br#"[{"metric":"http.a","timestamp":1700000000,"value":1.5,"tags":{"host":"h1"}},
                   {"metric":"http.b","timestamp":1700000000000,"value":"x","tags":{"host":"h1"}},
                   {"metric":"http.c","timestamp":1700000002,"value":"-3","tags":{"host":"h1","dc":"x"}}]"#;
    let r = http(
        addr,
        "POST",
        "/api/put?details",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &gzip(body),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.body,
        r#"{"success":2,"failed":1,"errors":[{"datapoint":{"metric":"http.b","timestamp":1700000000000,"value":"x","tags":{"host":"h1"}},"error":"Unable to parse value to a number"}]}"#
    );
    let r = http(
        addr,
        "POST",
        "/api/put",
        &[],
        br#"{"metric":"http.d","timestamp":1700000003,"value":7,"tags":{"host":"h2"}}"#,
    );
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    let r = http(addr, "POST", "/api/put", &[], &vec![b' '; 5000]);
    assert_eq!(r.status, 413, "{r:?}");
    let r = http(addr, "GET", "/api/version", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body.contains(r#""version":"2.4.1""#), "{}", r.body);
    let m = d.metric(
        "conflux_listener_requests_total",
        &[("listener", "tsdb"), ("status", "400")],
    );
    assert_eq!(m, 1.0);
    assert_eq!(
        stored(d),
        "http.a,host=h1 value=1.5 1700000000000000000\n\
         http.c,dc=x,host=h1 value=-3i 1700000002000000000\n\
         http.d,host=h2 value=7i 1700000003000000000\n"
    );
}

#[test]
fn kairosdb_flavour_by_configuration() {
    let d = daemon(
        "timestamp_rule = \"kairosdb\"\ncharacters = \"any_but_space\"\ntelnet_errors = false\nrequire_tags = true",
    );
    let reply = session(
        &d,
        b"put k:a 2999999999 1 t$=1\nput k.b 3000000000 2 t=2\nput k.c 1700000000 3\nversion\n",
    );
    // Errors are not written back; `version` still is.
    assert!(reply.starts_with("net.opentsdb 2.4.1"), "{reply:?}");
    assert_eq!(
        stored(d),
        "k:a,t$=1 value=1i 2999999999000000000\n\
         k.b,t=2 value=2i 3000000000000000\n"
    );
}
