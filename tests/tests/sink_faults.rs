//! Fault injection for every HTTP sink type, through the whole daemon: a
//! small stub server (the only hand-written server in these tests; it stands
//! in for a failing target) answers by script — 500 then 204, 400, a stall
//! past the sink's timeout, a connection reset — and the test checks what
//! reached it, and the daemon's own counters.
//!
//! "Nothing lost" is checked byte for byte: the request that finally
//! succeeds carries the same body as the one that failed.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conflux_e2e::{Daemon, http, wait_until};

/// What the stub does with one request.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// Answer with this status (and a short body).
    Status(u16),
    /// Read the request, answer nothing for this long, then close.
    Stall(Duration),
    /// Read the request, then reset the connection (RST, no answer).
    Reset,
}

struct Stub {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Stub {
    /// Acts out `script` one request at a time; past its end, answers 204.
    fn start(script: Vec<Act>) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        let script = Arc::new(Mutex::new(script.into_iter()));
        std::thread::spawn(move || {
            // Ends with the test process; it only ever serves this test. A
            // thread per connection, so that a stalled one holds up no other.
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (seen, script) = (seen.clone(), script.clone());
                std::thread::spawn(move || {
                    // One request per connection: the answer says `Connection: close`.
                    let Some(body) = read_request(&mut conn) else {
                        return;
                    };
                    seen.lock().unwrap().push(body);
                    let act = script.lock().unwrap().next().unwrap_or(Act::Status(204));
                    match act {
                        Act::Status(code) => {
                            let text = if code == 204 { "" } else { "stub says no" };
                            let _ = write!(
                                conn,
                                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                                text.len()
                            );
                        }
                        Act::Stall(d) => std::thread::sleep(d),
                        Act::Reset => {
                            socket2::SockRef::from(&conn)
                                .set_linger(Some(Duration::ZERO))
                                .unwrap();
                        }
                    }
                });
            }
        });
        Stub { addr, bodies }
    }

    fn bodies(&self) -> Vec<Vec<u8>> {
        self.bodies.lock().unwrap().clone()
    }
}

/// Read one request's body (Content-Length only: every sink sends it).
fn read_request(conn: &mut TcpStream) -> Option<Vec<u8>> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + len].to_vec())
}

/// Every HTTP sink type, with the path its target serves.
const SINKS: &[(&str, &str)] = &[
    ("influx", "/write?db=faults"),
    ("prometheus", "/api/v1/write"),
    ("opentsdb", "/api/put"),
    ("kairosdb", "/api/v1/datapoints"),
];

fn daemon(kind: &str, path: &str, stub: &Stub) -> Daemon {
    Daemon::start(&format!(
        r#"
[listeners.in]
type = "influx"
address = "127.0.0.1:0"
[sinks.out]
type = "{kind}"
url = "http://{addr}{path}"
timeout_ms = 300
batch_max_age_ms = 5
retry_initial_ms = 20
retry_max_ms = 100
"#,
        addr = stub.addr
    ))
}

/// Write one metric through the influx listener.
fn write_one(d: &Daemon) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let line = format!("cpu,host=a usage=1.5 {now}\n");
    let r = http(d.addr("in"), "POST", "/write?db=x", &[], line.as_bytes());
    assert_eq!(r.status, 204, "{}", r.body);
}

/// Waits until the stub saw `n` requests and the daemon counted the outcome.
fn settle(d: &Daemon, stub: &Stub, n: usize, counter: &str, labels: &[(&str, &str)]) {
    let ok = wait_until(Duration::from_secs(20), || {
        stub.bodies().len() >= n && d.metric(counter, labels) >= 1.0
    });
    assert!(
        ok,
        "stub saw {} requests, {counter} = {}\n{}",
        stub.bodies().len(),
        d.metric(counter, labels),
        d.logs()
    );
}

/// A failure then success: the same body again, counted as a retry and as sent.
fn retried_then_delivered(first: Act) {
    for (kind, path) in SINKS {
        let stub = Stub::start(vec![first]);
        let mut d = daemon(kind, path, &stub);
        write_one(&d);
        settle(
            &d,
            &stub,
            2,
            "conflux_sink_sent_metrics_total",
            &[("sink", "out")],
        );
        let bodies = stub.bodies();
        assert_eq!(bodies.len(), 2, "{kind}: one failure, one success");
        assert!(!bodies[0].is_empty(), "{kind}");
        assert_eq!(
            bodies[0], bodies[1],
            "{kind}: the retry carries the same batch"
        );
        assert!(
            d.metric("conflux_sink_retries_total", &[("sink", "out")]) >= 1.0,
            "{kind}"
        );
        assert_eq!(
            d.metric("conflux_sink_sent_metrics_total", &[("sink", "out")]),
            1.0,
            "{kind}"
        );
        assert_eq!(
            d.metric("conflux_sink_dropped_metrics_total", &[("sink", "out")]),
            0.0,
            "{kind}"
        );
        assert_eq!(d.terminate().code(), Some(0), "{kind}: {}", d.logs());
    }
}

#[test]
fn a_500_is_retried_and_nothing_is_lost() {
    retried_then_delivered(Act::Status(500));
}

#[test]
fn a_stall_past_the_timeout_is_retried() {
    retried_then_delivered(Act::Stall(Duration::from_millis(1500)));
}

#[test]
fn a_reset_connection_is_retried() {
    retried_then_delivered(Act::Reset);
}

#[test]
fn a_400_is_dropped_counted_and_not_retried() {
    for (kind, path) in SINKS {
        let stub = Stub::start(vec![Act::Status(400)]);
        let mut d = daemon(kind, path, &stub);
        write_one(&d);
        settle(
            &d,
            &stub,
            1,
            "conflux_sink_dropped_metrics_total",
            &[("sink", "out"), ("reason", "rejected")],
        );
        // A second metric goes through: the sink did not stop on the 400,
        // and the stub saw no retry of the first in between.
        write_one(&d);
        settle(
            &d,
            &stub,
            2,
            "conflux_sink_sent_metrics_total",
            &[("sink", "out")],
        );
        assert_eq!(
            stub.bodies().len(),
            2,
            "{kind}: the rejected batch was not retried"
        );
        assert_eq!(
            d.metric("conflux_sink_retries_total", &[("sink", "out")]),
            0.0,
            "{kind}"
        );
        assert!(
            d.logs().contains("stub says no"),
            "{kind}: the WARN quotes the server: {}",
            d.logs()
        );
        assert_eq!(d.terminate().code(), Some(0), "{kind}: {}", d.logs());
    }
}
