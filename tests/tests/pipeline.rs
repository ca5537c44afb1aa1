//! The pipeline end to end: routing filters, `block` and `drop_newest`,
//! flush on SIGTERM, `/metrics`, config validation.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use conflux_core_names::*;
use conflux_e2e::{Daemon, http, read, run_cli, wait_until};

/// Names from `conflux_core::telemetry`, repeated here so that the test
/// breaks if a name changes without the docs and dashboards following.
mod conflux_core_names {
    pub const LISTENER_SERIES: &[&str] = &[
        "conflux_listener_received_bytes_total",
        "conflux_listener_received_metrics_total",
        "conflux_listener_received_points_total",
        "conflux_listener_rejected_total",
        "conflux_listener_connections_total",
        "conflux_listener_requests_total",
    ];
    pub const SINK_SERIES: &[&str] = &[
        "conflux_sink_sent_metrics_total",
        "conflux_sink_sent_points_total",
        "conflux_sink_sent_bytes_total",
        "conflux_sink_dropped_metrics_total",
        "conflux_sink_retries_total",
        "conflux_sink_request_duration_seconds_bucket",
        "conflux_sink_queue_metrics",
        "conflux_sink_queue_capacity_metrics",
    ];
}

fn write(d: &Daemon, listener: &str, body: &str) -> conflux_e2e::Response {
    http(
        d.addr(listener),
        "POST",
        "/write?db=test",
        &[],
        body.as_bytes(),
    )
}

fn lines(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = read(path).lines().map(str::to_owned).collect();
    v.sort();
    v
}

#[test]
fn a_batch_reaches_every_matching_sink_and_no_other() {
    let mut d = Daemon::start(
        r#"
[listeners.edge]
type = "influx"
address = "127.0.0.1:0"
[listeners.other]
type = "influx"
address = "127.0.0.1:0"

[sinks.all]
type = "file"
path = "all.lp"
[sinks.cpu]
type = "file"
path = "cpu.lp"
namepass = ["cpu*"]
namedrop = ["cpu_guest"]
[sinks.web]
type = "file"
path = "web.lp"
[sinks.web.tagpass]
host = ["web-*"]
[sinks.not_dev]
type = "file"
path = "not_dev.lp"
[sinks.not_dev.tagdrop]
env = ["dev"]
[sinks.from_other]
type = "file"
path = "from_other.lp"
inputs = ["other"]
"#,
    );
    let body = "cpu,host=web-1,env=prod usage=1 1000000000\n\
                mem,host=db-1,env=dev used=2i 1000000000\n\
                cpu,host=db-2,env=prod usage=3 1000000000\n\
                cpu_guest,host=web-2,env=prod usage=4 1000000000\n";
    let r = write(&d, "edge", body);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(d.terminate().code(), Some(0), "{}", d.logs());

    let dir = d.dir();
    assert_eq!(lines(&dir.join("all.lp")).len(), 4);
    assert_eq!(
        lines(&dir.join("cpu.lp")),
        vec![
            "cpu,env=prod,host=db-2 usage=3 1000000000",
            "cpu,env=prod,host=web-1 usage=1 1000000000"
        ]
    );
    assert_eq!(
        lines(&dir.join("web.lp")),
        vec![
            "cpu,env=prod,host=web-1 usage=1 1000000000",
            "cpu_guest,env=prod,host=web-2 usage=4 1000000000"
        ]
    );
    assert_eq!(lines(&dir.join("not_dev.lp")).len(), 3);
    assert!(!read(dir.join("not_dev.lp")).contains("mem"));
    assert_eq!(read(dir.join("from_other.lp")), "");
}

/// A FIFO that the test holds open for reading but does not read: a file
/// sink writing to it stalls once the pipe buffer (64 KiB) is full.
struct StalledPipe {
    reader: std::fs::File,
}

impl StalledPipe {
    fn new(path: &Path) -> StalledPipe {
        let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
        assert!(ok, "mkfifo failed");
        // O_NONBLOCK: opening for reading must not wait for the writer.
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(0o4000)
            .open(path)
            .unwrap();
        StalledPipe { reader }
    }

    /// Read what is in the pipe so that the writer can go on; returns bytes read.
    fn drain(&mut self) -> usize {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return total,
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return total,
                Err(e) => panic!("read fifo: {e}"),
            }
        }
    }
}

fn big_body(lines: usize, tag: &str) -> String {
    (0..lines)
        .map(|i| {
            format!(
                "stall,run={tag} padding=\"{}\",i={i}i {}\n",
                "x".repeat(80),
                1_000_000_000 + i
            )
        })
        .collect()
}

#[test]
fn block_holds_the_submitter_back_and_drop_newest_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut block_pipe = StalledPipe::new(&dir.path().join("block.pipe"));
    let mut drop_pipe = StalledPipe::new(&dir.path().join("drop.pipe"));
    let mut d = Daemon::start_in(
        r#"
[listeners.blocking]
type = "influx"
address = "127.0.0.1:0"
queue_wait_ms = 300
[listeners.dropping]
type = "influx"
address = "127.0.0.1:0"
queue_wait_ms = 300

[sinks.block]
type = "file"
path = "block.pipe"
inputs = ["blocking"]
when_full = "block"
queue_max_metrics = 1000
batch_max_metrics = 1000
batch_max_age_ms = 10

[sinks.drop]
type = "file"
path = "drop.pipe"
inputs = ["dropping"]
when_full = "drop_newest"
queue_max_metrics = 1000
batch_max_metrics = 1000
batch_max_age_ms = 10
"#,
        dir,
    );

    // 1,000 lines of ~120 bytes: more than the pipe holds, so the sink's
    // write stalls while it still holds the whole queue's room.
    for (listener, tag) in [("blocking", "a"), ("dropping", "a")] {
        let r = write(&d, listener, &big_body(1000, tag));
        assert_eq!(r.status, 204, "{listener}: {r:?}");
    }
    let queued = |d: &Daemon, sink: &str| d.metric("conflux_sink_queue_metrics", &[("sink", sink)]);
    assert!(wait_until(Duration::from_secs(10), || queued(&d, "block")
        >= 1000.0
        && queued(&d, "drop") >= 1000.0));

    // block: the next write waits for room up to queue_wait_ms, then 503 + Retry-After.
    let r = write(&d, "blocking", &big_body(10, "b"));
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.header("Retry-After").is_some(), "{r:?}");
    assert_eq!(
        d.metric("conflux_sink_dropped_metrics_total", &[("sink", "block")]),
        0.0
    );

    // drop_newest: the write is accepted and the sink's copy dropped and counted.
    let r = write(&d, "dropping", &big_body(10, "b"));
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        d.metric(
            "conflux_sink_dropped_metrics_total",
            &[("sink", "drop"), ("reason", "queue_full")]
        ),
        10.0
    );

    // Unstall: the blocked sink catches up and writes are accepted again.
    let mut read_block = 0;
    let mut read_drop = 0;
    let mut accepted = false;
    wait_until(Duration::from_secs(20), || {
        read_block += block_pipe.drain();
        read_drop += drop_pipe.drain();
        if !accepted {
            accepted = write(&d, "blocking", &big_body(10, "c")).status == 204;
        }
        accepted && queued(&d, "block") == 0.0
    });
    assert!(accepted, "{}", d.logs());
    std::thread::sleep(Duration::from_millis(200));
    read_block += block_pipe.drain();
    read_drop += drop_pipe.drain();
    assert_eq!(d.terminate().code(), Some(0), "{}", d.logs());
    read_block += block_pipe.drain();
    read_drop += drop_pipe.drain();
    // 1,010 lines reached the blocking sink (the refused batch did not), 1,000 the dropping one.
    let line_a = big_body(1000, "a").len();
    let line_c = big_body(10, "c").len();
    assert_eq!(read_block, line_a + line_c);
    assert_eq!(read_drop, line_a);
}

#[test]
fn sigterm_flushes_queued_data_to_the_file_sink() {
    let mut d = Daemon::start(
        r#"
[listeners.edge]
type = "influx"
address = "127.0.0.1:0"
[sinks.out]
type = "file"
path = "out.lp"
batch_max_age_ms = 3600000
"#,
    );
    let body: String = (0..50)
        .map(|i| format!("m,k=v f={i}i {}\n", 1_000 + i))
        .collect();
    assert_eq!(write(&d, "edge", &body).status, 204);
    // Held by the runner for an hour: nothing is written yet.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read(d.dir().join("out.lp")), "");
    let pid = d.pid();
    assert_eq!(d.terminate().code(), Some(0), "{}", d.logs());
    assert_eq!(read(d.dir().join("out.lp")), body, "pid {pid}");
    assert!(d.logs().contains("shutting down"), "{}", d.logs());
}

#[test]
fn metrics_endpoint_carries_the_required_series() {
    let mut d = Daemon::start(
        r#"
[listeners.edge]
type = "influx"
address = "127.0.0.1:0"
[sinks.out]
type = "file"
path = "out.lp"
batch_max_age_ms = 10
"#,
    );
    let r = write(&d, "edge", "cpu,host=a u=1,s=2 1\ncpu,host=b u=oops 2\n");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(wait_until(Duration::from_secs(10), || {
        d.metric("conflux_sink_sent_metrics_total", &[("sink", "out")]) == 1.0
    }));
    let text = d.metrics();
    for name in LISTENER_SERIES.iter().chain(SINK_SERIES) {
        assert!(text.contains(name), "missing {name} in:\n{text}");
    }
    let m = |name: &str, labels: &[(&str, &str)]| conflux_e2e::metric_value(&text, name, labels);
    assert_eq!(
        m(
            "conflux_listener_received_metrics_total",
            &[("listener", "edge"), ("dialect", "influx")]
        ),
        1.0
    );
    assert_eq!(
        m(
            "conflux_listener_received_points_total",
            &[("listener", "edge")]
        ),
        2.0
    );
    assert_eq!(
        m("conflux_listener_rejected_total", &[("listener", "edge")]),
        1.0
    );
    assert_eq!(
        m(
            "conflux_sink_sent_points_total",
            &[("sink", "out"), ("type", "file")]
        ),
        2.0
    );
    assert_eq!(m("conflux_ready", &[]), 1.0);
    assert_eq!(http(d.admin(), "GET", "/health", &[], b"").status, 200);
    assert_eq!(http(d.admin(), "GET", "/ready", &[], b"").status, 200);
    d.terminate();
}

#[test]
fn a_bad_config_is_rejected_naming_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[listeners.one]
type = "influx"
address = "127.0.0.1:18999"
[listeners.two]
type = "influx"
address = "127.0.0.1:18999"
[sinks.out]
type = "file"
path = "out.lp"
fromat = "json"
"#,
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let (code, _out, err) = run_cli(&["check", "--config", p], dir.path());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("sinks.out: unknown field `fromat`"), "{err}");
    assert!(
        err.contains("`one` and `two` share address 127.0.0.1:18999 and both serve ")
            && err.contains("`/write`"),
        "{err}"
    );
    assert!(err.contains("2 problems in the configuration"), "{err}");
    // Running it fails the same way, before binding anything.
    let (code, _out, err2) = run_cli(&["--config", p], dir.path());
    assert_eq!(code, 1);
    assert!(err2.contains("fromat"), "{err2}");
}

#[test]
fn check_accepts_the_default_and_print_config_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run_cli(&["print-config"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[listeners.influx]"), "{out}");
    let path = dir.path().join("default.toml");
    std::fs::write(&path, &out).unwrap();
    let (code, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok (4 listeners, 1 sink)"), "{out}");
}
