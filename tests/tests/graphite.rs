//! The graphite listener inside the daemon, over raw TCP, UDP and pickle
//! sockets: what reaches the file sink, value by value, and the counters
//! `/metrics` carries.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use conflux_e2e::{Daemon, pickle_payload, run_cli, stored, wait_until};

fn daemon(extra: &str) -> Daemon {
    Daemon::start(&format!(
        r#"
[listeners.graphite]
type = "graphite"
address = "127.0.0.1:0"
udp_address = "127.0.0.1:0"
pickle_address = "127.0.0.1:0"
{extra}
[sinks.out]
type = "file"
path = "out.lp"
batch_max_age_ms = 5
"#
    ))
}

fn received(d: &Daemon) -> f64 {
    d.metric(
        "conflux_listener_received_metrics_total",
        &[("listener", "graphite")],
    )
}

fn rejected(d: &Daemon, reason: &str) -> f64 {
    d.metric(
        "conflux_listener_rejected_total",
        &[("listener", "graphite"), ("reason", reason)],
    )
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

#[test]
fn tcp_udp_and_pickle_reach_the_sink() {
    let d = daemon("");
    let mut tcp = TcpStream::connect(d.addr("graphite/tcp")).unwrap();
    tcp.write_all(
        b"plain.tcp 1.5 1700000000\ntagged.tcp;host=web01;dc=eu 2 1700000001.25\nopen.tcp{code=\"200\"} 3 1700000002\n",
    )
    .unwrap();
    drop(tcp);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"plain.udp -4 1700000003\n", d.addr("graphite/udp"))
        .unwrap();
    let mut p = TcpStream::connect(d.addr("graphite/pickle")).unwrap();
    p.write_all(&frame(&pickle_payload(
        "plain.pickle",
        1_700_000_004,
        0.001,
    )))
    .unwrap();
    drop(p);
    assert!(
        wait_until(Duration::from_secs(20), || received(&d) >= 5.0),
        "{}",
        d.logs()
    );
    assert_eq!(
        stored(d),
        vec![
            "open.tcp,code=200 value=3 1700000002000000000",
            "plain.pickle value=0.001 1700000004000000000",
            "plain.tcp value=1.5 1700000000000000000",
            "plain.udp value=-4 1700000003000000000",
            "tagged.tcp,dc=eu,host=web01 value=2 1700000001250000000",
        ]
    );
}

#[test]
fn bad_lines_are_counted_by_reason_and_the_connection_stays_open() {
    let d = daemon("");
    let mut tcp = TcpStream::connect(d.addr("graphite/tcp")).unwrap();
    tcp.write_all(
        b"only.path\nbad.value x 1\nbad.tag;k=~v 1 1\nnan.value nan 1\ngood.one 1 1700000000\n",
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(20), || received(&d) >= 1.0));
    tcp.write_all(b"good.two 2 1700000000\n").unwrap();
    assert!(wait_until(Duration::from_secs(20), || received(&d) >= 2.0));
    // A UDP datagram with a bad line keeps its good lines.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(
        b"udp.good 3 1700000000\nudp bad line here\nudp.good2 4 1700000000",
        d.addr("graphite/udp"),
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(20), || received(&d) >= 4.0));
    assert_eq!(rejected(&d, "missing_value"), 1.0);
    assert_eq!(rejected(&d, "invalid_value"), 1.0);
    assert_eq!(rejected(&d, "invalid_tag_value"), 1.0);
    assert_eq!(rejected(&d, "nan_value"), 1.0);
    assert_eq!(rejected(&d, "too_many_fields"), 1.0);
    let m = d.metrics();
    for series in conflux_e2e_series() {
        assert!(m.contains(series), "{series} missing from /metrics");
    }
    drop(tcp);
    assert_eq!(
        stored(d),
        vec![
            "good.one value=1 1700000000000000000",
            "good.two value=2 1700000000000000000",
            "udp.good value=3 1700000000000000000",
            "udp.good2 value=4 1700000000000000000",
        ]
    );
}

/// Every listener series the graphite listener must export.
fn conflux_e2e_series() -> [&'static str; 5] {
    [
        "conflux_listener_received_bytes_total",
        "conflux_listener_received_metrics_total",
        "conflux_listener_received_points_total",
        "conflux_listener_rejected_total",
        "conflux_listener_connections_total",
    ]
}

#[test]
fn a_pickle_that_would_call_is_refused_and_the_connection_goes_on() {
    let d = daemon("");
    let marker = d.dir().join("pwned");
    let evil = format!("cos\nsystem\n(S'touch {}'\ntR.", marker.display());
    let mut p = TcpStream::connect(d.addr("graphite/pickle")).unwrap();
    p.write_all(&frame(evil.as_bytes())).unwrap();
    p.write_all(&frame(&pickle_payload("after.evil", 1_700_000_000, 7.0)))
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || received(&d) >= 1.0));
    assert_eq!(rejected(&d, "forbidden_opcode"), 1.0);
    assert!(!marker.exists());
    drop(p);
    assert_eq!(stored(d), vec!["after.evil value=7 1700000000000000000"]);
}

#[test]
fn an_oversize_pickle_frame_closes_the_connection() {
    let d = daemon("max_pickle_frame_bytes = 64");
    let mut p = TcpStream::connect(d.addr("graphite/pickle")).unwrap();
    p.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    p.write_all(&65u32.to_be_bytes()).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(p.read(&mut buf).unwrap_or(0), 0, "connection not closed");
    assert!(wait_until(Duration::from_secs(20), || rejected(
        &d,
        "frame_too_large"
    ) >= 1.0));
    assert_eq!(stored(d), Vec::<String>::new());
}

#[test]
fn templates_from_the_config_apply() {
    let d = daemon(
        r#"separator = "_"
templates = [
    "servers.* .host.measurement.field* region=eu",
    "measurement*",
]"#,
    );
    let mut tcp = TcpStream::connect(d.addr("graphite/tcp")).unwrap();
    tcp.write_all(b"servers.web01.cpu.usage.idle 97.5 1700000000\nother.path.here 1 1700000000\n")
        .unwrap();
    drop(tcp);
    assert!(wait_until(Duration::from_secs(20), || received(&d) >= 2.0));
    assert_eq!(
        stored(d),
        vec![
            "cpu,host=web01,region=eu usage_idle=97.5 1700000000000000000",
            "other_path_here value=1 1700000000000000000",
        ]
    );
}

#[test]
fn config_check_names_every_bad_template() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        r#"
[listeners.graphite]
type = "graphite"
address = "127.0.0.1:0"
templates = ["host.cpu", "measurement*.field*", "a b c d e"]
max_pickle_frame_bytes = 0
[sinks.out]
type = "file"
path = "out.lp"
"#,
    )
    .unwrap();
    let (code, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()], dir.path());
    assert_ne!(code, 0, "{out}{err}");
    let text = format!("{out}{err}");
    for needle in [
        "template 0: no `measurement` in `host.cpu`",
        "template 1: either `field*` or `measurement*` can be used, not both",
        "template 2: `a b c d e` has more than four words",
        "`max_pickle_frame_bytes` must be between 1 and",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
}
