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

use std::sync::Arc;

use conflux_core::pipeline::BatchView;
use conflux_core::{Batch, Metric};
use conflux_sinks::graphite::{self, GraphiteSink};
use conflux_sinks::opentsdb;
use conflux_sinks::{Sink, SinkError};
use conflux_testkit::carbon_relay::CarbonRelay;
use conflux_testkit::pki::Pki;
use conflux_testkit::unix_now;
use tokio::runtime::Runtime;

const NS: i64 = 1_000_000_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn graphite_sink(url: &str, extra: &str) -> GraphiteSink {
    let (net, cfg) =
        conflux_sinks::endpoint::parse_toml(&format!("url = \"{url}\"\n{extra}")).unwrap();
    graphite::build(&net, &cfg).unwrap()
}

fn views(metrics: &[Metric]) -> Vec<BatchView> {
    let mut b = Batch::new();
    for m in metrics {
        b.push(m).unwrap();
    }
    vec![BatchView::whole(Arc::new(b))]
}

fn metric(host: &str, value: f64, t: i64) -> Metric {
    Metric::new("cpu")
        .tag("host", host)
        .field("usage_idle", value)
        .at(t * NS)
}

/// One batch and a close: the relay has read everything once it returns.
fn deliver(rt: &Runtime, sink: &mut impl Sink, metrics: &[Metric]) -> Result<(), SinkError> {
    rt.block_on(async {
        sink.new_batch();
        sink.send(&views(metrics)).await?;
        sink.close().await
    })
}

fn retry_message(r: Result<(), SinkError>) -> String {
    match r {
        Err(SinkError::Retryable { message, .. }) => message,
        other => panic!("expected a retryable error, got {other:?}"),
    }
}

#[test]
fn graphite_over_tls_reaches_carbon_c_relay() {
    let pki = Pki::new();
    let relay = CarbonRelay::start_tls(&pki);
    let port = relay.tls.unwrap().port();
    let rt = runtime();
    let t = unix_now();
    let mut s = graphite_sink(
        &format!("tls://localhost:{port}"),
        &format!("tls_ca_file = \"{}\"", pki.ca_cert.display()),
    );
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
    let pki = Pki::new();
    let relay = CarbonRelay::start_tls(&pki);
    let port = relay.tls.unwrap().port();
    let rt = runtime();
    let t = unix_now();
    let url = format!("tls://127.0.0.1:{port}");
    let ca = format!("tls_ca_file = \"{}\"", pki.ca_cert.display());

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
    let pki = Pki::new();
    let relay = CarbonRelay::start_tls(&pki);
    let port = relay.tls.unwrap().port();
    let rt = runtime();
    let t = unix_now();
    let mut s = graphite_sink(
        &format!("tls://localhost:{port}"),
        &format!("tls_ca_file = \"{}\"", pki.other_ca_cert.display()),
    );
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
    let pki = Pki::new();
    let relay = CarbonRelay::start_tls(&pki);
    let port = relay.tls.unwrap().port();
    let rt = runtime();
    let t = unix_now();
    let (net, cfg) = conflux_sinks::endpoint::parse_toml::<opentsdb::Config>(&format!(
        "url = \"tls://localhost:{port}\"\ntls_ca_file = \"{}\"",
        pki.ca_cert.display()
    ))
    .unwrap();
    let mut s = opentsdb::build(&net, &cfg).unwrap();
    let m = Metric::new("sys_load")
        .tag("host", "db-1")
        .field("value", 0.5)
        .at(t * NS);
    let sent = rt.block_on(async {
        s.new_batch();
        let sent = s.send(&views(&[m])).await.unwrap();
        s.close().await.unwrap();
        sent
    });
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
