//! The `graphite` sink against real servers: carbon-cache (lines read back
//! from its whisper files) and carbon-c-relay (the exact lines it forwards);
//! a small stub server only for faults (a server that closes the connection
//! after one batch, a server that stops reading, a refused connection).
//!
//! Servers come from `conflux-testkit` (Debian packages `graphite-carbon`,
//! `python3-whisper`, `carbon-c-relay`). Sinks run on a runtime of each
//! test's own; the testkit's blocking calls run outside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use common::graphite_sink as sink;
use common::{NS, runtime, views};
use conflux_core::Metric;
use conflux_sinks::graphite::GraphiteSink;
use conflux_sinks::{Sent, Sink, SinkError};
use conflux_testkit::carbon::CarbonCache;
use conflux_testkit::carbon_relay::CarbonRelay;
use conflux_testkit::unix_now;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// `new_batch` then `send`, as the runner does for a first attempt; the
/// connection stays open for the next batch.
async fn send(sink: &mut GraphiteSink, metrics: &[Metric]) -> Result<Sent, SinkError> {
    sink.new_batch();
    sink.send(&views(metrics)).await
}

fn connects(sink: &GraphiteSink) -> u64 {
    sink.endpoints().next().unwrap().tcp().connects()
}

/// Every `.wsp` file below `root`, as a dotted path.
fn whisper_paths(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if let Some(rel) = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .and_then(|p| p.strip_suffix(".wsp"))
            {
                out.insert(rel.replace('/', "."));
            }
        }
    }
    let mut out = BTreeSet::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

// ---- carbon-cache ----

#[test]
fn carbon_cache_stores_every_value_type_at_whole_seconds() {
    let carbon = CarbonCache::start();
    // Recent (the whisper archive keeps 7 days), with a fraction of a second
    // that Graphite's whole seconds must cut.
    let t = unix_now() - 120;
    let rt = runtime();
    let mut s = sink(&format!("tcp://{}", carbon.line), "");
    let first = Metric::new("cpu")
        .tag("host", "web-1")
        .tag("dc", "eu.west")
        .field("usage_idle", 98.25)
        .field("count", 42i64)
        .field("big", 18_000_000_000u64)
        .field("up", true)
        .field("down", false)
        .field("state", "degraded")
        .at(t * NS + 750_000_000);
    let second = Metric::new("load")
        .tag("host", "web-1")
        .field("value", -1.5)
        .at((t + 1) * NS);
    let sent = rt.block_on(send(&mut s, &[first])).unwrap();
    assert_eq!((sent.metrics, sent.points), (1, 5), "{sent:?}");
    assert_eq!(sent.skipped.string, 1, "the string is skipped and counted");
    assert_eq!(sent.skipped.total(), 1);
    // A second batch goes over the same connection.
    let sent = rt.block_on(send(&mut s, &[second])).unwrap();
    assert_eq!((sent.metrics, sent.points), (1, 1));
    assert_eq!(connects(&s), 1);
    rt.block_on(s.close()).unwrap();

    // Template `host.tags.measurement.field`: dots in tag values become `_`;
    // a `value` field leaves the field part out.
    let expected = [
        ("web-1.eu_west.cpu.usage_idle", 98.25),
        ("web-1.eu_west.cpu.count", 42.0),
        ("web-1.eu_west.cpu.big", 18_000_000_000.0),
        ("web-1.eu_west.cpu.up", 1.0),
        ("web-1.eu_west.cpu.down", 0.0),
    ];
    for (path, value) in expected {
        let points = carbon.wait_fetch(path, t - 5, t + 5, 1);
        assert_eq!(points, vec![(t, value)], "{path}");
    }
    assert_eq!(
        carbon.wait_fetch("web-1.load", t - 5, t + 5, 1),
        vec![(t + 1, -1.5)]
    );
    let mut names: BTreeSet<String> = expected.iter().map(|(p, _)| (*p).to_owned()).collect();
    names.insert("web-1.load".to_owned());
    assert_eq!(
        whisper_paths(&carbon.whisper_dir),
        names,
        "one file per written point, none for the string\n{}",
        carbon.log()
    );
}

#[test]
fn carbon_cache_stores_tagged_series() {
    let carbon = CarbonCache::start();
    let t = unix_now() - 60;
    let rt = runtime();
    let mut s = sink(
        &format!("tcp://{}", carbon.line),
        "graphite_tag_support = true\nprefix = \"conflux\"",
    );
    let m = Metric::new("disk")
        .tag("path", "/var")
        .tag("host", "db-1")
        .field("free", 1024i64)
        .at(t * NS);
    let sent = rt.block_on(send(&mut s, &[m])).unwrap();
    assert_eq!(sent.points, 1);
    rt.block_on(s.close()).unwrap();
    // Carbon looks tagged series up by their name with tags sorted.
    let points = carbon.wait_fetch("conflux.disk.free;host=db-1;path=-var", t - 5, t + 5, 1);
    assert_eq!(points, vec![(t, 1024.0)]);
}

// ---- carbon-c-relay ----

#[test]
fn carbon_c_relay_forwards_the_lines_of_both_modes() {
    let relay = CarbonRelay::start();
    let t = unix_now();
    let rt = runtime();
    let url = format!("tcp://{}", relay.line);
    let metrics = [
        Metric::new("cpu")
            .tag("host", "web-1")
            .tag("cpu", "cpu0")
            .field("usage_idle", 99.5)
            .field("n", 7i64)
            .field("s", "text")
            .at(t * NS + 999_000_000),
        // `=` and non-ASCII letters pass Telegraf's strict sanitizer; the
        // relay's own cleansing makes each byte of them `_` in a path, and
        // leaves tags alone.
        Metric::new("temp")
            .tag("host", "web-1")
            .tag("room", "a=b")
            .tag("city", "zürich")
            .field("value", 21.5)
            .at(t * NS),
    ];

    let mut plain = sink(&url, "");
    let sent = rt.block_on(send(&mut plain, &metrics)).unwrap();
    assert_eq!((sent.points, sent.skipped.string), (3, 1));
    rt.block_on(plain.close()).unwrap();
    let lines = relay.wait_lines(3);
    assert_eq!(
        lines,
        vec![
            format!("web-1.cpu0.cpu.usage_idle 99.5 {t}"),
            format!("web-1.cpu0.cpu.n 7 {t}"),
            format!("web-1.z__rich.a_b.temp 21.5 {t}"),
        ],
        "{}",
        relay.log()
    );

    let mut tagged = sink(
        &url,
        "graphite_tag_support = true\ngraphite_separator = \"_\"",
    );
    let sent = rt.block_on(send(&mut tagged, &metrics)).unwrap();
    assert_eq!(sent.points, 3);
    rt.block_on(tagged.close()).unwrap();
    let lines = relay.wait_lines(6);
    assert_eq!(
        lines[3..],
        [
            format!("cpu_usage_idle;cpu=cpu0;host=web-1 99.5 {t}"),
            format!("cpu_n;cpu=cpu0;host=web-1 7 {t}"),
            format!("temp;city=zürich;host=web-1;room=a=b 21.5 {t}"),
        ],
        "{}",
        relay.log()
    );
}

// ---- faults (stub server) ----

/// Reads lines until `n` have arrived (or the end of stream); returns them.
async fn read_lines(conn: &mut tokio::net::TcpStream, n: usize) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.iter().filter(|b| **b == b'\n').count() < n {
        match conn.read(&mut buf).await.unwrap() {
            0 => break,
            k => got.extend_from_slice(&buf[..k]),
        }
    }
    String::from_utf8(got).unwrap()
}

#[test]
fn reconnects_when_the_server_closed_the_connection_and_loses_nothing() {
    let rt = runtime();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        // Accepts, reads one batch, closes; then takes a second connection to its end.
        let server = tokio::spawn(async move {
            let (mut c1, _) = listener.accept().await.unwrap();
            let first = read_lines(&mut c1, 2).await;
            c1.shutdown().await.unwrap();
            drop(c1);
            closed_tx.send(()).unwrap();
            let (mut c2, _) = listener.accept().await.unwrap();
            let second = read_lines(&mut c2, usize::MAX).await;
            (first, second)
        });
        let mut s = sink(&format!("tcp://{addr}"), "template = \"measurement.field\"");
        let m = |name: &str, v: i64| Metric::new(name).field("v", v).at(1_700_000_000 * NS);
        send(&mut s, &[m("a", 1), m("b", 2)]).await.unwrap();
        closed_rx.await.unwrap();
        let sent = send(&mut s, &[m("c", 3), m("d", 4)]).await.unwrap();
        assert_eq!(sent.points, 2);
        assert_eq!(
            connects(&s),
            2,
            "the second batch went over a new connection"
        );
        s.close().await.unwrap();
        let (first, second) = server.await.unwrap();
        assert_eq!(first, "a.v 1 1700000000\nb.v 2 1700000000\n");
        assert_eq!(second, "c.v 3 1700000000\nd.v 4 1700000000\n");
    });
}

#[test]
fn a_refused_connection_is_retryable_and_the_retry_connects() {
    let rt = runtime();
    rt.block_on(async {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let mut s = sink(&format!("tcp://{addr}"), "template = \"measurement.field\"");
        let batch = [Metric::new("a").field("v", 1i64).at(1_700_000_000 * NS)];
        let err = send(&mut s, &batch).await.unwrap_err();
        let SinkError::Retryable { message, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(
            message.starts_with(&format!("connect to {addr}: ")),
            "{message}"
        );
        assert_eq!(connects(&s), 0);
        // The server comes up (on the same port, when it is still free):
        // the runner's retry connects and delivers.
        let Ok(listener) = TcpListener::bind(addr).await else {
            return;
        };
        let server = tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.unwrap();
            read_lines(&mut c, usize::MAX).await
        });
        s.send(&views(&batch)).await.unwrap();
        s.close().await.unwrap();
        assert_eq!(server.await.unwrap(), "a.v 1 1700000000\n");
    });
}

#[test]
fn a_server_that_stops_reading_times_out_as_retryable() {
    let rt = runtime();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and never reads.
        let server = tokio::spawn(async move {
            let (c, _) = listener.accept().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            drop(c);
        });
        let mut s = sink(
            &format!("tcp://{addr}"),
            "timeout_ms = 300\ntemplate = \"measurement.field\"",
        );
        // Far more than the socket buffers of both ends hold.
        let metrics: Vec<Metric> = (0..400_000)
            .map(|i| {
                Metric::new("a_rather_long_measurement_name_to_fill_buffers")
                    .field("v", i64::from(i))
                    .at(1_700_000_000 * NS)
            })
            .collect();
        let err = send(&mut s, &metrics).await.unwrap_err();
        let SinkError::Retryable { message, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(message.contains("not done within 300 ms"), "{message}");
        assert!(!s.endpoints().next().unwrap().tcp().is_connected());
        server.abort();
    });
}

#[test]
fn an_all_string_batch_sends_nothing_and_needs_no_server() {
    let rt = runtime();
    let mut s = sink("tcp://127.0.0.1:9", "");
    let sent = rt
        .block_on(send(
            &mut s,
            &[Metric::new("m").field("s", "x").field("t", "y").at(NS)],
        ))
        .unwrap();
    assert_eq!((sent.points, sent.skipped.string, sent.bytes), (0, 2, 0));
    assert_eq!(connects(&s), 0);
}
