//! The disk spool through the whole daemon, against real targets
//! (VictoriaMetrics, Prometheus): a `kill -9` under load loses nothing that
//! was acknowledged, a target outage loses nothing and keeps order, a damaged
//! spool file costs only its damaged records, and a full spool pushes back
//! (HTTP 503, TCP stops reading) or, with `drop_oldest`, drops and counts.
//!
//! Every point carries its sequence number as its value, so the target's
//! own store tells which points arrived and how often. Prometheus refuses a
//! sample older than the newest of its series, so a complete series there
//! also proves the order was kept.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conflux_e2e::{Daemon, wait_until};
use conflux_testkit::prometheus::Prometheus;
use conflux_testkit::victoria::Victoria;

const SERIES: u64 = 10;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Line protocol for sequence numbers `from..from + n`: series `s{seq %
/// SERIES}`, value the sequence number, one millisecond apart from `base_ms`,
/// so every series increases in time.
fn lines(from: u64, n: u64, base_ms: u64) -> String {
    let mut out = String::new();
    for seq in from..from + n {
        let ts_ns = (base_ms + seq) * 1_000_000;
        out.push_str(&format!("spool,s=s{} v={seq} {ts_ns}\n", seq % SERIES));
    }
    out
}

/// POST `/write`: the status and `Retry-After`, or `None` when the
/// connection failed (the daemon is gone).
fn post(addr: SocketAddr, body: &str) -> Option<(u16, Option<String>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let head = format!(
        "POST /write?db=x HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let retry_after = text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("retry-after")
            .then(|| v.trim().to_owned())
    });
    Some((status, retry_after))
}

/// Sequence numbers VictoriaMetrics holds for `spool_v`, with repeats.
fn vm_values(vm: &Victoria) -> Vec<u64> {
    vm.flush();
    vm.export("spool_v")
        .iter()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .map(|v| v.as_f64().unwrap() as u64)
        .collect()
}

/// Samples Prometheus holds for `name`, counted by Prometheus.
fn prom_count(p: &Prometheus, name: &str) -> u64 {
    let at = (now_ms() / 1000 + 3600) as f64;
    let answer = p.query(&format!("sum(count_over_time({name}[100y]))"), at);
    answer["data"]["result"][0]["value"][1]
        .as_str()
        .map_or(0, |v| v.parse().unwrap())
}

fn spool_segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs
}

#[test]
fn kill_9_under_load_loses_nothing_acknowledged() {
    let vm = Victoria::start();
    let config = format!(
        r#"
[daemon]
shutdown_timeout_ms = 2000

[listeners.in]
type = "influx"
address = "127.0.0.1:0"

[sinks.vm]
type = "influx"
url = "http://{}/write?db=spool"
when_full = "spool"
durable = true
batch_max_metrics = 500
batch_max_age_ms = 20
"#,
        vm.http
    );
    let mut d = Daemon::start(&config);
    let addr = d.addr("in");
    let per_request = 20;
    let base = now_ms() - 3_600_000;

    // Steady load from one client; it stops at the first failed connection.
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let load = std::thread::spawn({
        let acked = acked.clone();
        move || {
            for i in 0..20_000u64 {
                let from = i * per_request;
                match post(addr, &lines(from, per_request, base)) {
                    Some((204, _)) => acked.lock().unwrap().push(from),
                    Some((code, _)) => panic!("write {i} answered {code}"),
                    None => return i,
                }
            }
            20_000
        }
    });
    // A moment that depends on the clock, not chosen by the test: somewhere
    // in the second or third hundred acknowledged requests.
    let kill_after = 100 + (now_ms() % 200) as usize;
    assert!(
        wait_until(Duration::from_secs(120), || acked.lock().unwrap().len()
            >= kill_after),
        "the daemon did not acknowledge {kill_after} writes; log:\n{}",
        d.logs()
    );
    d.kill9();
    let sent = load.join().unwrap();
    let acked: Vec<u64> = acked.lock().unwrap().clone();

    let _d = Daemon::start_in(&config, d.take_dir());
    let expected: Vec<u64> = acked
        .iter()
        .flat_map(|&from| from..from + per_request)
        .collect();
    let mut values = Vec::new();
    let complete = wait_until(Duration::from_secs(60), || {
        values = vm_values(&vm);
        let have: std::collections::HashSet<u64> = values.iter().copied().collect();
        expected.iter().all(|s| have.contains(s))
    });
    let mut distinct = values.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let duplicates = values.len() - distinct.len();
    let unacked_delivered = distinct.len() - expected.len();
    println!(
        "kill -9 after {} acknowledged requests ({} points, {sent} sent): at VictoriaMetrics {} points, {} distinct, {duplicates} duplicates, {unacked_delivered} from the unacknowledged request",
        acked.len(),
        expected.len(),
        values.len(),
        distinct.len()
    );
    assert!(
        complete,
        "acknowledged points missing after the restart: {} of {}",
        expected.len() - values.len().min(expected.len()),
        expected.len()
    );
    // Duplicates: only the batch in flight at the kill, sent again.
    assert!(
        duplicates <= 500 + per_request as usize,
        "{duplicates} duplicates"
    );
    // Nothing but whole requests, and at most the one in flight beyond the acknowledged.
    assert!(unacked_delivered <= per_request as usize);
}

#[test]
fn a_target_outage_loses_nothing_keeps_order_and_bounds_memory() {
    let mut p = Prometheus::start();
    let config = format!(
        r#"
[listeners.in]
type = "influx"
address = "127.0.0.1:0"

[sinks.prom]
type = "prometheus"
url = "http://{}/api/v1/write"
timeout_ms = 2000
when_full = "spool"
queue_max_metrics = 1000
batch_max_metrics = 500
batch_max_age_ms = 20
retry_initial_ms = 50
retry_max_ms = 200
"#,
        p.http
    );
    let d = Daemon::start(&config);
    let addr = d.addr("in");
    let base = now_ms() - 1_200_000;
    let per_request = 100;
    let mut seq = 0;
    let write = |seq: &mut u64, n: u64| {
        for _ in 0..n {
            let r = post(addr, &lines(*seq, per_request, base));
            assert_eq!(r.map(|r| r.0), Some(204), "write at {seq}");
            *seq += per_request;
        }
    };
    write(&mut seq, 10);
    p.stop();
    let mut max_rss = 0;
    let mut max_queue = 0.0f64;
    for _ in 0..30 {
        write(&mut seq, 10);
        max_rss = max_rss.max(d.rss_kib());
        max_queue = max_queue.max(d.metric("conflux_sink_queue_metrics", &[("sink", "prom")]));
    }
    // The spool gauges are refreshed once a second.
    let (mut spooled, mut spool_bytes) = (0.0, 0.0);
    wait_until(Duration::from_secs(5), || {
        spooled = d.metric("conflux_sink_spool_records", &[("sink", "prom")]);
        spool_bytes = d.metric("conflux_sink_spool_bytes", &[("sink", "prom")]);
        spooled > 0.0 && spool_bytes > 0.0
    });
    println!(
        "outage: {} points written, spool {spooled} records / {spool_bytes} bytes, memory queue at most {max_queue} metrics, RSS at most {max_rss} KiB",
        seq
    );
    assert!(
        spooled > 0.0 && spool_bytes > 0.0,
        "nothing overflowed to the spool"
    );
    assert!(max_queue <= 1000.0, "memory queue grew to {max_queue}");
    // 30,000 points are waiting; memory holds at most the queue's 1,000.
    assert!(max_rss < 150 * 1024, "RSS {max_rss} KiB");

    p.restart();
    write(&mut seq, 10);
    let total = seq;
    let arrived = wait_until(Duration::from_secs(60), || {
        prom_count(&p, "spool_v") >= total
    });
    assert!(
        arrived,
        "prometheus holds {} of {total} samples; daemon log:\n{}\n{}",
        prom_count(&p, "spool_v"),
        d.logs(),
        p.log()
    );
    // Prometheus refuses out-of-order samples, and a refusal is counted as rejected.
    assert_eq!(prom_count(&p, "spool_v"), total);
    assert_eq!(
        d.metric("conflux_sink_dropped_metrics_total", &[("sink", "prom")]),
        0.0,
        "{}",
        d.metrics()
    );
    // Every series has every one of its values, in time order.
    let at = (now_ms() / 1000 + 3600) as f64;
    let answer = p.query("spool_v[100y]", at);
    let mut per_series: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for s in answer["data"]["result"].as_array().unwrap() {
        let name = s["metric"]["s"].as_str().unwrap().to_owned();
        let values = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v[1].as_str().unwrap().parse::<u64>().unwrap());
        per_series.entry(name).or_default().extend(values);
    }
    assert_eq!(per_series.len(), SERIES as usize);
    for (name, values) in per_series {
        let k: u64 = name[1..].parse().unwrap();
        let want: Vec<u64> = (0..total).filter(|s| s % SERIES == k).collect();
        assert_eq!(values, want, "series {name}");
    }
    assert!(wait_until(Duration::from_secs(20), || d
        .metric("conflux_sink_spool_records", &[("sink", "prom")])
        == 0.0));
}

/// A daemon with an influx listener and a spooling influx sink `vm` to `url`.
fn vm_config(url: &str, shutdown_timeout_ms: u64, durable: bool) -> String {
    format!(
        r#"
[daemon]
shutdown_timeout_ms = {shutdown_timeout_ms}

[listeners.in]
type = "influx"
address = "127.0.0.1:0"

[sinks.vm]
type = "influx"
url = "{url}"
when_full = "spool"
durable = {durable}
retry_initial_ms = 50
retry_max_ms = 100
"#
    )
}

/// An InfluxDB URL where nothing listens: a target that is down.
fn dead_url() -> String {
    let port = conflux_testkit::free_port();
    format!("http://127.0.0.1:{port}/write?db=spool")
}

/// Sequence numbers 0 to 99, ten per request, each acknowledged.
fn write_ten_requests(d: &Daemon) {
    let base = now_ms() - 3_600_000;
    for i in 0..10 {
        assert_eq!(
            post(d.addr("in"), &lines(i * 10, 10, base)).map(|r| r.0),
            Some(204)
        );
    }
}

/// Waits until VictoriaMetrics holds at least `n` points and the spool of
/// sink `vm` is empty; returns the sorted sequence numbers.
fn delivered(vm: &Victoria, d: &Daemon, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    let done = wait_until(Duration::from_secs(30), || {
        got = vm_values(vm);
        got.len() >= n && d.metric("conflux_sink_spool_records", &[("sink", "vm")]) == 0.0
    });
    got.sort_unstable();
    assert!(done, "delivered {got:?}; log:\n{}", d.logs());
    got
}

#[test]
fn a_damaged_spool_file_costs_only_the_damaged_records() {
    let config = |url: &str| vm_config(url, 500, true);
    let mut d = Daemon::start(&config(&dead_url()));
    write_ten_requests(&d);
    assert!(d.terminate().success());
    let dir = d.take_dir();

    // One record per acknowledged request, in order. Damage record 3 (one
    // flipped payload byte) and cut record 9 in half, as a crash mid-write would.
    let spool = dir.path().join("data/spool/vm");
    let segs = spool_segments(&spool);
    assert_eq!(segs.len(), 1, "{segs:?}");
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    assert_eq!(&bytes[..8], b"CFXSPL01");
    let mut records = Vec::new();
    let mut at = 8;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        records.push((at, len));
        at += 20 + len;
    }
    assert_eq!(records.len(), 10);
    let (start, len) = records[3];
    bytes[start + 20 + len / 2] ^= 0x40;
    let (start, len) = records[9];
    bytes.truncate(start + 20 + len / 2);
    std::fs::write(&segs[0], &bytes).unwrap();

    let vm = Victoria::start();
    let d = Daemon::start_in(&config(&format!("http://{}/write?db=spool", vm.http)), dir);
    let want: Vec<u64> = (0..100).filter(|s| s / 10 != 3 && s / 10 != 9).collect();
    assert_eq!(delivered(&vm, &d, want.len()), want);
    assert_eq!(
        d.metric(
            "conflux_sink_spool_corrupt_records_total",
            &[("sink", "vm")]
        ),
        2.0
    );
}

/// Writes OpenTSDB `put` lines (`t`, 100 series, 1 ms apart per series)
/// until the daemon stops reading (a write blocks for 2 s), then waits for
/// `resume` and writes the rest. Returns the lines written in all.
fn tcp_writer(
    addr: SocketAddr,
    base_ms: u64,
    held: Arc<AtomicBool>,
    resume: Arc<AtomicBool>,
) -> u64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = Vec::new();
    let mut written = 0u64;
    // Bounded: 4 million lines (about 110 MB) at most.
    for chunk in 0..4_000u64 {
        buf.clear();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            buf.extend_from_slice(
                format!("put t {} 1 s={}\n", base_ms + i / 100, i % 100).as_bytes(),
            );
        }
        let mut rest = &buf[..];
        while !rest.is_empty() {
            match s.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    held.store(true, Ordering::SeqCst);
                    while !resume.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                Err(e) => panic!("write: {e}"),
            }
        }
        written += 1000;
        if held.load(Ordering::SeqCst) {
            break;
        }
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let _ = std::io::copy(&mut s, &mut std::io::sink());
    written
}

fn capped_config(prom: SocketAddr, when_full: &str) -> String {
    format!(
        r#"
[listeners.in]
type = "influx"
address = "127.0.0.1:0"

[listeners.tsdb]
type = "opentsdb"
address = "127.0.0.1:0"

[sinks.prom]
type = "prometheus"
url = "http://{prom}/api/v1/write"
timeout_ms = 2000
when_full = "spool"
spool_max_bytes = 65536
spool_when_full = "{when_full}"
queue_max_metrics = 200
batch_max_metrics = 100
batch_max_age_ms = 20
retry_initial_ms = 50
retry_max_ms = 200
"#
    )
}

#[test]
fn a_full_spool_refuses_http_and_holds_tcp_back_and_drops_nothing() {
    let mut p = Prometheus::start();
    p.stop();
    let d = Daemon::start(&capped_config(p.http, "block"));
    let base = now_ms() - 1_800_000;
    let per_request = 50;
    let mut acked = 0u64;
    let mut refused = None;
    for i in 0..2_000u64 {
        match post(d.addr("in"), &lines(i * per_request, per_request, base)) {
            Some((204, _)) => acked += 1,
            Some((503, retry_after)) => {
                refused = Some(retry_after);
                break;
            }
            other => panic!("write {i}: {other:?}"),
        }
    }
    let retry_after = refused.expect("a full spool never answered 503");
    assert!(retry_after.is_some(), "503 without Retry-After");
    assert!(acked > 0);

    let held = Arc::new(AtomicBool::new(false));
    let resume = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let (addr, held, resume) = (d.addr("tsdb"), held.clone(), resume.clone());
        move || tcp_writer(addr, base + 1_000_000, held, resume)
    });
    let was_held = wait_until(Duration::from_secs(120), || {
        held.load(Ordering::SeqCst) || writer.is_finished()
    }) && held.load(Ordering::SeqCst);
    resume.store(true, Ordering::SeqCst);
    assert!(
        was_held,
        "the TCP client was never held back; log:\n{}",
        d.logs()
    );
    let dropped = d.metric("conflux_sink_dropped_metrics_total", &[("sink", "prom")]);
    assert_eq!(dropped, 0.0);

    p.restart();
    let lines_sent = writer.join().unwrap();
    let want_http = acked * per_request;
    let complete = wait_until(Duration::from_secs(90), || {
        prom_count(&p, "spool_v") >= want_http && prom_count(&p, "t") >= lines_sent
    });
    println!(
        "full spool: {acked} HTTP writes acknowledged before the 503 (Retry-After {retry_after:?}), TCP client held back, {lines_sent} TCP lines sent in all"
    );
    assert!(
        complete,
        "prometheus holds {} of {want_http} HTTP and {} of {lines_sent} TCP samples; log:\n{}",
        prom_count(&p, "spool_v"),
        prom_count(&p, "t"),
        d.logs()
    );
    assert_eq!(prom_count(&p, "spool_v"), want_http);
    assert_eq!(prom_count(&p, "t"), lines_sent);
    assert_eq!(
        d.metric("conflux_sink_dropped_metrics_total", &[("sink", "prom")]),
        0.0
    );
    assert_eq!(
        d.metric(
            "conflux_sink_spool_dropped_records_total",
            &[("sink", "prom")]
        ),
        0.0
    );
}

#[test]
fn drop_oldest_keeps_accepting_and_counts_what_it_drops() {
    let mut p = Prometheus::start();
    p.stop();
    let d = Daemon::start(&capped_config(p.http, "drop_oldest"));
    let base = now_ms() - 1_800_000;
    let per_request = 50;
    let requests = 300;
    for i in 0..requests {
        assert_eq!(
            post(d.addr("in"), &lines(i * per_request, per_request, base)).map(|r| r.0),
            Some(204),
            "write {i}"
        );
    }
    // The spool gauges are refreshed once a second.
    let dropped_now = || {
        d.metric(
            "conflux_sink_spool_dropped_records_total",
            &[("sink", "prom")],
        )
    };
    wait_until(Duration::from_secs(5), || dropped_now() > 0.0);
    let mut dropped = dropped_now();
    assert!(dropped > 0.0, "a 64 KiB spool held 15,000 points?");
    p.restart();
    // Each spooled record is one request of 50 points.
    let total = requests * per_request;
    let mut have = 0;
    let balanced = wait_until(Duration::from_secs(60), || {
        have = prom_count(&p, "spool_v");
        dropped = dropped_now();
        have + dropped as u64 * per_request == total
    });
    println!(
        "drop_oldest: {total} points acknowledged, {dropped} records ({} points) dropped and counted, {have} delivered",
        dropped as u64 * per_request
    );
    assert!(
        balanced,
        "delivered {have} + dropped {dropped} records ≠ {total}"
    );
    // The newest request survives: what goes is the oldest.
    let last = (requests - 1) * per_request;
    let at = (now_ms() / 1000 + 3600) as f64;
    let max = p.query("max_over_time(spool_v[100y])", at);
    let top = max["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"][1].as_str().unwrap().parse::<u64>().unwrap())
        .max()
        .unwrap();
    assert_eq!(top, last + per_request - 1);
}

#[test]
fn shutdown_keeps_what_only_memory_held_in_the_spool() {
    let config = |url: &str| vm_config(url, 1000, false);
    let mut d = Daemon::start(&config(&dead_url()));
    write_ten_requests(&d);
    // Everything fits in memory: nothing is on disk before the shutdown.
    assert_eq!(
        d.metric("conflux_sink_spool_records", &[("sink", "vm")]),
        0.0
    );
    assert!(d.terminate().success());
    assert!(
        d.logs().contains("unsent metrics kept in the spool"),
        "{}",
        d.logs()
    );
    assert!(!d.logs().contains("dropping unsent metrics"));

    let vm = Victoria::start();
    let d = Daemon::start_in(
        &config(&format!("http://{}/write?db=spool", vm.http)),
        d.take_dir(),
    );
    assert_eq!(delivered(&vm, &d, 100), (0..100).collect::<Vec<u64>>());
}
