//! TLS on network sinks, against a real Prometheus serving HTTPS (its
//! `--web.config.file`), with certificates made by `openssl` for the test:
//! the CA file is checked, a server name can be given, a client certificate
//! gets through mutual TLS, and each failure is a retryable error that names
//! the cause.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{pipeline_views, retry_message};
use conflux_core::pipeline::BatchView;
use conflux_core::{Batch, Metric};
use conflux_sinks::endpoint::parse_toml;
use conflux_sinks::prometheus::{self, PrometheusSink};
use conflux_sinks::{Sink, SinkError};
use conflux_testkit::pki::Pki;
use conflux_testkit::prometheus::Prometheus;

/// One fresh sample (Prometheus refuses old ones), through a pipeline.
async fn views() -> Vec<BatchView> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let b: Batch = [Metric::new("tls_probe")
        .tag("host", "a")
        .field("value", 1.0)
        .at(now * 1_000_000)]
    .into_iter()
    .collect();
    pipeline_views(b).await
}

fn sink(toml: &str) -> PrometheusSink {
    let (net, cfg) = parse_toml(toml).unwrap();
    prometheus::build(&net, &cfg).unwrap()
}

async fn send(s: &mut PrometheusSink) -> Result<(), SinkError> {
    s.new_batch();
    s.send(&views().await).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_ca_file_and_a_server_name() {
    let pki = Pki::new();
    let server = tokio::task::block_in_place(|| Prometheus::start_tls(&pki, false));
    let port = server.http.port();
    let ca = pki.ca_cert.display();

    // By name: the certificate names localhost.
    let mut s = sink(&format!(
        "url = \"https://localhost:{port}/api/v1/write\"\ntls_ca_file = \"{ca}\""
    ));
    send(&mut s).await.unwrap();

    // By IP with the name given.
    let mut s = sink(&format!(
        "url = \"https://127.0.0.1:{port}/api/v1/write\"\ntls_ca_file = \"{ca}\"\ntls_server_name = \"localhost\""
    ));
    send(&mut s).await.unwrap();

    // A name the certificate does not carry.
    let mut s = sink(&format!(
        "url = \"https://127.0.0.1:{port}/api/v1/write\"\ntls_ca_file = \"{ca}\"\ntls_server_name = \"example.org\""
    ));
    let m = retry_message(send(&mut s).await);
    assert!(m.contains("certificate"), "{m}");

    // A CA that did not sign the server's certificate.
    let mut s = sink(&format!(
        "url = \"https://localhost:{port}/api/v1/write\"\ntls_ca_file = \"{}\"",
        pki.other_ca_cert.display()
    ));
    let m = retry_message(send(&mut s).await);
    assert!(m.contains("certificate"), "{m}");

    // Plain HTTP to a TLS port gets no HTTP answer.
    let mut s = sink(&format!("url = \"http://127.0.0.1:{port}/api/v1/write\""));
    assert!(send(&mut s).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_the_client_certificate() {
    let pki = Pki::new();
    let server = tokio::task::block_in_place(|| Prometheus::start_tls(&pki, true));
    let url = format!("https://localhost:{}/api/v1/write", server.http.port());
    let ca = pki.ca_cert.display();

    let mut with_cert = sink(&format!(
        "url = \"{url}\"\ntls_ca_file = \"{ca}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        pki.client_cert.display(),
        pki.client_key.display()
    ));
    send(&mut with_cert).await.unwrap();

    let mut without = sink(&format!("url = \"{url}\"\ntls_ca_file = \"{ca}\""));
    let m = retry_message(send(&mut without).await);
    assert!(!m.is_empty());
}

#[test]
fn unreadable_tls_files_fail_at_build() {
    let (net, cfg) = parse_toml::<prometheus::Config>(
        "url = \"https://localhost:1/api/v1/write\"\ntls_ca_file = \"/nonexistent/ca.pem\"",
    )
    .unwrap();
    let e = prometheus::build(&net, &cfg).unwrap_err();
    assert!(e.contains("/nonexistent/ca.pem"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate").unwrap();
    let (net, cfg) = parse_toml::<prometheus::Config>(&format!(
        "url = \"https://localhost:1/api/v1/write\"\ntls_ca_file = \"{}\"",
        empty.display()
    ))
    .unwrap();
    let e = prometheus::build(&net, &cfg).unwrap_err();
    assert!(e.contains("no PEM certificate"), "{e}");
}
