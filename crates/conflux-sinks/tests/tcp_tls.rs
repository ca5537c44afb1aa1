//! TLS on the TCP sinks (`tls://host:port`), against carbon-c-relay 3.7
//! listening with its `ssl` transport (Debian's build has OpenSSL), with
//! certificates made by `openssl` for the test: the graphite sink's lines
//! arrive, the CA file and a server name are checked, a wrong CA fails with a
//! retryable error that names the certificate problem, and the opentsdb
//! telnet sink's `put` lines cross the same TLS port (the relay forwards a
//! line it cannot read as graphite as it came, so they can be read back).
//!
//! carbon-c-relay asks no client for a certificate, so mutual TLS is checked
//! against a rustls server in `tcp_client`'s unit tests; here a configured
//! client certificate only must not get in the way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{NS, deliver, graphite_sink, opentsdb_sink, retry_message, runtime, views};
use conflux_core::Metric;
use conflux_sinks::Sink;
use conflux_testkit::carbon_relay::CarbonRelay;
use conflux_testkit::pki::Pki;
use conflux_testkit::unix_now;
use tokio::runtime::Runtime;

/// What every test here starts from: certificates of its own, a relay
/// serving them on its TLS port (returned too), a runtime, and the time the
/// points carry.
fn tls_relay() -> (Pki, CarbonRelay, u16, Runtime, i64) {
    let pki = Pki::new();
    let relay = CarbonRelay::start_tls(&pki);
    let port = relay.tls.unwrap().port();
    (pki, relay, port, runtime(), unix_now())
}

/// The relay's TLS port by the name its certificate carries.
fn localhost(port: u16) -> String {
    format!("tls://localhost:{port}")
}

/// The `tls_ca_file` line trusting `ca`: each test picks the CA it trusts.
fn ca_file(ca: &Path) -> String {
    format!("tls_ca_file = \"{}\"", ca.display())
}

fn metric(host: &str, value: f64, t: i64) -> Metric {
    Metric::new("cpu")
        .tag("host", host)
        .field("usage_idle", value)
        .at(t * NS)
}

#[test]
fn graphite_over_tls_reaches_carbon_c_relay() {
    let (pki, relay, port, rt, t) = tls_relay();
    let mut s = graphite_sink(&localhost(port), &ca_file(&pki.ca_cert));
    // Two batches over one connection, then the close (close_notify, FIN).
    rt.block_on(async {
        s.new_batch();
        s.send(&views(&[metric("web-1", 99.5, t)])).await.unwrap();
        s.new_batch();
        s.send(&views(&[metric("web-2", 12.0, t), metric("web-3", 7.0, t)]))
            .await
            .unwrap();
        assert_eq!(s.endpoints().next().unwrap().tcp().connects(), 1);
        s.close().await.unwrap();
    });
    let lines = relay.wait_lines(3);
    assert_eq!(
        lines,
        vec![
            format!("web-1.cpu.usage_idle 99.5 {t}"),
            format!("web-2.cpu.usage_idle 12 {t}"),
            format!("web-3.cpu.usage_idle 7 {t}"),
        ],
        "{}",
        relay.log()
    );
}

#[test]
fn tls_server_name_replaces_the_address_in_the_certificate_check() {
    let (pki, relay, port, rt, t) = tls_relay();
    let url = format!("tls://127.0.0.1:{port}");
    let ca = ca_file(&pki.ca_cert);

    // By IP address, checked against the name given (the certificate names
    // localhost); a client certificate the relay never asks for is no obstacle.
    let mut s = graphite_sink(
        &url,
        &format!(
            "{ca}\ntls_server_name = \"localhost\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
            pki.client_cert.display(),
            pki.client_key.display()
        ),
    );
    deliver(&rt, &mut s, &[metric("by-name", 1.0, t)]).unwrap();
    assert_eq!(
        relay.wait_lines(1),
        vec![format!("by-name.cpu.usage_idle 1 {t}")]
    );

    // A name the certificate does not carry: the address no longer counts.
    let mut s = graphite_sink(&url, &format!("{ca}\ntls_server_name = \"example.org\""));
    let m = retry_message(deliver(&rt, &mut s, &[metric("wrong-name", 1.0, t)]));
    assert!(
        m.contains(&format!("TLS handshake with 127.0.0.1:{port}"))
            && m.contains("certificate not valid for name \"example.org\""),
        "{m}"
    );
    assert_eq!(relay.lines().len(), 1, "{}", relay.log());
}

#[test]
fn a_wrong_ca_is_a_retryable_certificate_error() {
    let (pki, relay, port, rt, t) = tls_relay();
    let mut s = graphite_sink(&localhost(port), &ca_file(&pki.other_ca_cert));
    let m = retry_message(deliver(&rt, &mut s, &[metric("untrusted", 1.0, t)]));
    assert!(m.contains("invalid peer certificate: UnknownIssuer"), "{m}");
    assert!(!s.endpoints().next().unwrap().tcp().is_connected());
    // The next attempt connects again, and fails the same way.
    let m = retry_message(deliver(&rt, &mut s, &[metric("untrusted", 1.0, t)]));
    assert!(m.contains("UnknownIssuer"), "{m}");
    assert_eq!(s.endpoints().next().unwrap().tcp().connects(), 0);

    // Plain TCP on the plain port of the same relay still works.
    let mut plain = graphite_sink(&format!("tcp://{}", relay.line), "");
    deliver(&rt, &mut plain, &[metric("plain", 1.0, t)]).unwrap();
    assert_eq!(
        relay.wait_lines(1),
        vec![format!("plain.cpu.usage_idle 1 {t}")]
    );
}

#[test]
fn opentsdb_telnet_over_tls_crosses_the_relays_tls_port() {
    let (pki, relay, port, rt, t) = tls_relay();
    let mut s = opentsdb_sink(&localhost(port), &ca_file(&pki.ca_cert));
    let m = Metric::new("sys_load")
        .tag("host", "db-1")
        .field("value", 0.5)
        .at(t * NS);
    let sent = deliver(&rt, &mut s, &[m]).unwrap();
    assert_eq!((sent.points, sent.rejected), (1, 0));
    assert!(sent.bytes > 0);
    // The relay reads no `put`: it forwards the line as it came.
    assert_eq!(
        relay.wait_lines(1),
        vec![format!("put sys_load {t} 0.5 host=db-1")],
        "{}",
        relay.log()
    );
}
