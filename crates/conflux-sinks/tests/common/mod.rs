//! Scaffolding the sink integration tests share, so that each test file keeps
//! only what is particular to its sink: building a sink from TOML, turning
//! metrics into the views a sink is sent, one delivery on a runtime of the
//! test's own, and reading requests on the raw HTTP/1.1 stub servers.
//!
//! Included with `mod common;`; Cargo builds no test of its own from a
//! folder's `mod.rs`.

// Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::io::Read as _;
use std::sync::Arc;

use conflux_core::filter::Filter;
use conflux_core::pipeline::{BatchView, QueueConfig, SinkSpec, WhenFull};
use conflux_core::{Batch, Metric, Pipeline};
use conflux_sinks::endpoint::NetConfig;
use conflux_sinks::graphite::{self, GraphiteSink};
use conflux_sinks::opentsdb::{self, OpentsdbSink};
use conflux_sinks::{Sent, Sink, SinkError};
use serde::de::DeserializeOwned;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

/// Nanoseconds in a second: metrics carry nanosecond timestamps, the
/// Graphite and OpenTSDB protocols whole seconds.
pub const NS: i64 = 1_000_000_000;

/// A current-thread runtime of the test's own: the testkit's blocking calls
/// (starting a server, reading points back) run outside it, between
/// `block_on`s.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A multi-thread runtime of `workers` threads: what is spawned on it (the
/// HTTP client's connections, stub servers) keeps running while the test's
/// own thread blocks outside `block_on`.
pub fn multi_thread_runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// A sink's settings from `url` and further TOML lines, parsed as the daemon
/// parses a sink's table (so tests cover the config names too).
pub fn config<C: DeserializeOwned>(url: &str, extra: &str) -> (NetConfig, C) {
    conflux_sinks::endpoint::parse_toml(&format!("url = \"{url}\"\n{extra}")).unwrap()
}

/// A graphite sink from `url` and further TOML lines (see [`config`]).
pub fn graphite_sink(url: &str, extra: &str) -> GraphiteSink {
    let (net, cfg) = config(url, extra);
    graphite::build(&net, &cfg).unwrap()
}

/// An opentsdb sink from `url` and further TOML lines (see [`config`]).
pub fn opentsdb_sink(url: &str, extra: &str) -> OpentsdbSink {
    let (net, cfg) = config(url, extra);
    opentsdb::build(&net, &cfg).unwrap()
}

/// `metrics` as one whole batch, the shortest way to the views a sink takes
/// (for sinks whose tests need no pipeline in between).
pub fn views(metrics: &[Metric]) -> Vec<BatchView> {
    let mut b = Batch::new();
    for m in metrics {
        b.push(m).unwrap();
    }
    vec![BatchView::whole(Arc::new(b))]
}

/// `batch` as the runner hands it to a sink: through the queue of a pipeline
/// with one sink that takes everything.
pub async fn pipeline_views(batch: Batch) -> Vec<BatchView> {
    let (p, mut rx) = Pipeline::new(vec![SinkSpec {
        name: "test".into(),
        filter: Filter::default(),
        queue: QueueConfig {
            max_metrics: 1_000_000,
            when_full: WhenFull::Block,
        },
        spool: None,
        max_new_series_per_hour: None,
    }]);
    p.ingest("test").submit(batch).await.unwrap();
    vec![rx[0].recv().await.unwrap()]
}

/// One batch and a close, as a first attempt and a shutdown do: a TCP sink's
/// close returns once the server has read everything, so it can be read back
/// at once.
pub fn deliver(rt: &Runtime, sink: &mut impl Sink, metrics: &[Metric]) -> Result<Sent, SinkError> {
    rt.block_on(async {
        sink.new_batch();
        let sent = sink.send(&views(metrics)).await?;
        sink.close().await?;
        Ok(sent)
    })
}

/// The message of a retryable error; anything else fails the test. The
/// message is what operators read, so tests check that it names the cause.
pub fn retry_message<T: std::fmt::Debug>(r: Result<T, SinkError>) -> String {
    match r {
        Err(SinkError::Retryable { message, .. }) => message,
        other => panic!("expected a retryable error, got {other:?}"),
    }
}

// ---- raw HTTP/1.1 stub servers ----

/// One request as a stub server read it: the head as sent, the body's bytes.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Request line and headers, up to and with the blank line.
    pub head: String,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

impl Captured {
    /// The value of header `name` (any case), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.head, name)
    }

    /// The body as text, gunzipped when it was sent gzip'd.
    pub fn text(&self) -> String {
        body_text(&self.body, self.header("content-encoding") == Some("gzip"))
    }
}

/// The value of header `name` (any case) in a request head, trimmed: sinks
/// need not send headers in one spelling.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A body as text, gunzipped first when `gzipped`: tests compare what the
/// sink meant to send, whichever way it went out.
pub fn body_text(body: &[u8], gzipped: bool) -> String {
    if gzipped {
        let mut s = String::new();
        flate2::read::GzDecoder::new(body)
            .read_to_string(&mut s)
            .unwrap();
        s
    } else {
        String::from_utf8(body.to_vec()).unwrap()
    }
}

/// Reads the next request from a keep-alive connection; `buf` keeps what
/// came after it. `None` once the peer has closed or the read failed, which
/// ends the stub's connection.
pub async fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Captured> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 65536];
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Some(Captured { head, body })
}
