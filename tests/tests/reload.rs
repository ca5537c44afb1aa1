//! SIGHUP reloads the whole configuration while metrics flow: a sink's
//! filter changes, a sink's target changes (its queue, filled while the old
//! target was down, moves to the new one), a listener is added and another
//! removed; nothing acknowledged is lost. A reload that cannot be applied
//! leaves the running configuration as it was.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use conflux_e2e::{Daemon, http, read, signal, wait_until};
use conflux_testkit::free_port;
use conflux_testkit::victoria::Victoria;

const PROCESS: &str = r#"
[log]
format = "json"
level = "info"

[admin]
address = "127.0.0.1:0"
"#;

fn config(listeners: &str, picky: &str, remote: &str, file_sink: &str) -> String {
    format!(
        r#"{PROCESS}
{listeners}

[sinks.{file_sink}]
type = "file"
path = "{file_sink}.lp"
format = "influx"
batch_max_age_ms = 5

[sinks.all]
type = "file"
path = "all.lp"
format = "influx"
batch_max_age_ms = 5

[sinks.picky]
type = "file"
path = "picky.lp"
format = "influx"
batch_max_age_ms = 5
namepass = ["{picky}"]

[sinks.remote]
type = "influx"
url = "http://{remote}/write?db=reload"
batch_max_age_ms = 5
timeout_ms = 500
retry_initial_ms = 20
retry_max_ms = 100
queue_max_metrics = 1000000
"#
    )
}

/// Reload and wait until the daemon says how it went: true when applied.
fn reload(d: &Daemon, text: &str) -> bool {
    let before = d
        .logs()
        .matches("SIGHUP: reloading the configuration")
        .count();
    std::fs::write(d.dir().join("conflux.toml"), text).unwrap();
    signal(d.pid(), "HUP");
    let mut outcome = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            let logs = d.logs();
            if logs.matches("SIGHUP: reloading the configuration").count() <= before {
                return false;
            }
            let tail = &logs[logs.rfind("SIGHUP: reloading the configuration").unwrap()..];
            outcome = if tail.contains("configuration reloaded") {
                Some(true)
            } else if tail.contains("reload failed") {
                Some(false)
            } else {
                None
            };
            outcome.is_some() && tail.contains("TLS certificates")
        }),
        "no reload outcome logged:\n{}",
        d.logs()
    );
    outcome.unwrap()
}

/// Sequence numbers of `name,seq=N ...` lines in `text`.
fn seqs(text: &str, name: &str) -> Vec<u64> {
    let prefix = format!("{name},seq=");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| rest.split([' ', ',']).next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn reload_under_load_refilters_retargets_adds_and_removes_and_loses_nothing() {
    let vm = Victoria::start();
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (port_a, port_b, port_c) = (free_port(), free_port(), free_port());
    let a = format!(
        "[listeners.a]\ntype = \"influx\"\naddress = \"127.0.0.1:{port_a}\"\nqueue_wait_ms = 30000\n"
    );
    let b = format!("[listeners.b]\ntype = \"graphite\"\naddress = \"127.0.0.1:{port_b}\"\n");
    let c = format!("[listeners.c]\ntype = \"influx\"\naddress = \"127.0.0.1:{port_c}\"\n");
    // The reload also removes sink `early` and adds sink `late`.
    let v1 = config(&format!("{a}\n{b}"), "alpha", &dead.to_string(), "early");
    let v2 = config(&format!("{a}\n{c}"), "beta", &vm.http.to_string(), "late");
    let mut d = Daemon::start(&v1);
    let addr_a = d.addr("a");
    let addr_b = d.addr("b");

    // Load on `a`: each request carries alpha and beta of one sequence number.
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let http_load = {
        let (acked, stop) = (acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut ok = Vec::new();
            for seq in 0..3000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let body = format!("alpha,seq={seq} v={seq}i\nbeta,seq={seq} v={seq}i\n");
                let r = http(addr_a, "POST", "/write?db=x", &[], body.as_bytes());
                assert_eq!(r.status, 204, "{}", r.body);
                ok.push(seq);
                acked.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
            ok
        })
    };
    // Load on `b`, which the reload removes: one connection, lines until it closes.
    let tcp_load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr_b).unwrap();
            for n in 0..20_000u64 {
                if stop.load(Ordering::Relaxed)
                    || s.write_all(format!("gamma {n}\n").as_bytes()).is_err()
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };

    assert!(wait_until(Duration::from_secs(60), || acked
        .load(Ordering::Relaxed)
        >= 150));
    let before_reload = acked.load(Ordering::Relaxed);
    assert!(reload(&d, &v2), "reload failed:\n{}", d.logs());
    let after_reload = acked.load(Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(60), || {
        acked.load(Ordering::Relaxed) >= after_reload + 150
    }));
    stop.store(true, Ordering::Relaxed);
    let ok = http_load.join().unwrap();
    tcp_load.join().unwrap();
    println!(
        "acknowledged requests: {} ({before_reload} before the SIGHUP, {after_reload} when it was applied)",
        ok.len()
    );

    // `c` is up, `b` is gone.
    let addr_c: SocketAddr = format!("127.0.0.1:{port_c}").parse().unwrap();
    let r = http(addr_c, "POST", "/write?db=x", &[], b"delta,seq=0 v=1i\n");
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(addr_b)
            .is_err()),
        "listener b still accepts connections"
    );
    let gamma_received = d.metric(
        "conflux_listener_received_metrics_total",
        &[("listener", "b")],
    );
    assert_eq!(
        d.metric("conflux_config_reloads_total", &[("outcome", "ok")]),
        1.0
    );

    // The retargeted sink: everything queued while its old target was down
    // reaches the new one.
    let want: BTreeSet<u64> = ok.iter().copied().collect();
    let stored = |name: &str| -> BTreeSet<u64> {
        vm.export(&format!("{name}_v"))
            .iter()
            .map(|s| s["metric"]["seq"].as_str().unwrap().parse().unwrap())
            .collect()
    };
    let complete = wait_until(Duration::from_secs(60), || {
        vm.flush();
        stored("alpha") == want && stored("beta") == want
    });
    assert!(
        complete,
        "victoria has {} alpha and {} beta of {} acknowledged\n{}",
        stored("alpha").len(),
        stored("beta").len(),
        want.len(),
        d.logs()
    );

    assert!(d.terminate().success(), "{}", d.logs());
    let all = read(d.dir().join("all.lp"));
    let picky = read(d.dir().join("picky.lp"));

    // The unfiltered sink has every acknowledged line exactly once.
    for name in ["alpha", "beta"] {
        let mut got = seqs(&all, name);
        got.sort_unstable();
        assert_eq!(got, ok, "{name} in all.lp");
    }
    assert_eq!(seqs(&all, "delta"), [0]);
    // What `b` read before it stopped is all there.
    let gamma = all.lines().filter(|l| l.starts_with("gamma")).count();
    assert!(gamma > 0);
    assert_eq!(gamma as f64, gamma_received);
    let logs = d.logs();
    let applied = logs
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .unwrap();
    println!("{applied}\ngamma lines read by `b` before it stopped: {gamma}");
    assert!(
        applied.contains(r#""sinks_replaced":"[\"remote\"]""#),
        "{applied}"
    );

    // The removed sink sent everything it had taken before it stopped; the
    // added one got everything after it started.
    let early = seqs(&read(d.dir().join("early.lp")), "alpha");
    let late = seqs(&read(d.dir().join("late.lp")), "alpha");
    assert!(early.len() as u64 >= before_reload);
    assert_eq!(
        early,
        ok[..early.len()],
        "early.lp is a prefix of what was sent"
    );
    assert_eq!(late, ok[ok.len() - late.len()..], "late.lp is a suffix");
    assert!(late.len() >= 150);

    // The refiltered sink: each request went by the filter of its moment,
    // alpha before the reload and beta after, never both or neither.
    let (alpha, beta) = (seqs(&picky, "alpha"), seqs(&picky, "beta"));
    let mut either: Vec<u64> = alpha.iter().chain(&beta).copied().collect();
    either.sort_unstable();
    assert_eq!(
        either, ok,
        "picky.lp has each request once, as alpha or beta"
    );
    assert!(
        alpha.iter().all(|&s| s < after_reload),
        "alpha after the reload"
    );
    assert!(
        beta.iter().all(|&s| s >= before_reload),
        "beta before the SIGHUP"
    );
    assert!(alpha.len() as u64 >= before_reload && beta.len() >= 150);
}

#[test]
fn a_reload_that_cannot_be_applied_keeps_the_running_configuration() {
    let port_a = free_port();
    let listener = |extra: &str| {
        format!("[listeners.a]\ntype = \"influx\"\naddress = \"127.0.0.1:{port_a}\"\n{extra}\n")
    };
    let sinks = r#"
[sinks.all]
type = "file"
path = "all.lp"
batch_max_age_ms = 5

[sinks.spooled]
type = "file"
path = "spooled.lp"
batch_max_age_ms = 5
when_full = "spool"
"#;
    let v1 = format!("{PROCESS}\n{}\n{sinks}", listener(""));
    let mut d = Daemon::start(&v1);
    let a = d.addr("a");
    let write = |seq: u32| {
        let r = http(
            a,
            "POST",
            "/write?db=x",
            &[],
            format!("m,seq={seq} v=1i").as_bytes(),
        );
        assert_eq!(r.status, 204, "{}", r.body);
    };
    write(0);

    // Not TOML.
    assert!(!reload(&d, "[listeners.a\n"));
    write(1);
    // Valid TOML, a problem in a component.
    let unknown_type = format!("{v1}\n[sinks.x]\ntype = \"nope\"\n");
    assert!(!reload(&d, &unknown_type));
    write(2);
    // `a` changes and a new listener wants a port that is taken: `a` is
    // stopped, `taken` cannot bind, `a` comes back.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = format!(
        "{PROCESS}\n{}\n[listeners.taken]\ntype = \"influx\"\naddress = \"{}\"\n{sinks}",
        listener("max_body_bytes = 65536"),
        held.local_addr().unwrap()
    );
    assert!(!reload(&d, &taken));
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(a).is_ok()),
        "listener a did not come back:\n{}",
        d.logs()
    );
    write(3);
    // A spooled sink's spool settings need a restart.
    let spool_change = v1.replace(
        "when_full = \"spool\"",
        "when_full = \"spool\"\nspool_max_bytes = 2000000",
    );
    assert!(!reload(&d, &spool_change));
    write(4);
    let logs = d.logs();
    assert!(logs.contains("invalid TOML"), "{logs}");
    assert!(logs.contains("unknown type `nope`"), "{logs}");
    assert!(logs.contains("listener `taken` on"), "{logs}");
    assert!(
        logs.contains("spool keys of a sink with a spool cannot change"),
        "{logs}"
    );
    assert_eq!(
        d.metric("conflux_config_reloads_total", &[("outcome", "failed")]),
        4.0
    );

    assert!(d.terminate().success(), "{}", d.logs());
    let all = read(d.dir().join("all.lp"));
    assert_eq!(seqs(&all, "m"), [0, 1, 2, 3, 4]);
    let spooled = read(d.dir().join("spooled.lp"));
    assert_eq!(seqs(&spooled, "m"), [0, 1, 2, 3, 4]);
}

#[test]
fn a_spooling_sink_re_pointed_by_a_reload_delivers_its_spool_to_the_new_target() {
    let vm = Victoria::start();
    let dead = format!("127.0.0.1:{}", free_port());
    let config = |url: &str| {
        format!(
            r#"{PROCESS}
[listeners.a]
type = "influx"
address = "127.0.0.1:0"

[sinks.remote]
type = "influx"
url = "http://{url}/write?db=reload"
batch_max_metrics = 50
batch_max_age_ms = 5
timeout_ms = 500
retry_initial_ms = 20
retry_max_ms = 100
queue_max_metrics = 100
when_full = "spool"
"#
        )
    };
    let mut d = Daemon::start(&config(&dead));
    let a = d.addr("a");
    // 200 requests of 10 metrics while the target is down: 100 fit in
    // memory, the rest go to the spool.
    let mut sent = BTreeSet::new();
    for req in 0..200u64 {
        let body: String = (0..10)
            .map(|i| format!("spooled,seq={} v=1i\n", req * 10 + i))
            .collect();
        let r = http(a, "POST", "/write?db=x", &[], body.as_bytes());
        assert_eq!(r.status, 204, "{}", r.body);
        sent.extend((0..10).map(|i| req * 10 + i));
    }
    // The spool gauges are refreshed every second.
    let mut on_disk = 0.0;
    assert!(
        wait_until(Duration::from_secs(10), || {
            on_disk = d.metric("conflux_sink_spool_records", &[("sink", "remote")]);
            on_disk > 0.0
        }),
        "nothing went to the spool:\n{}",
        d.logs()
    );

    // Re-point the sink: the new runner sends the old one's memory queue
    // and the spool it hands over.
    assert!(reload(&d, &config(&vm.http.to_string())), "{}", d.logs());
    let stored = || -> BTreeSet<u64> {
        vm.export("spooled_v")
            .iter()
            .map(|s| s["metric"]["seq"].as_str().unwrap().parse().unwrap())
            .collect()
    };
    let complete = wait_until(Duration::from_secs(60), || {
        vm.flush();
        stored() == sent
    });
    assert!(
        complete,
        "victoria has {} of {}\n{}",
        stored().len(),
        sent.len(),
        d.logs()
    );
    assert!(wait_until(Duration::from_secs(10), || {
        d.metric("conflux_sink_spool_records", &[("sink", "remote")]) == 0.0
    }));
    println!(
        "{on_disk} spool records before the reload, all {} metrics delivered after it",
        sent.len()
    );
    assert!(d.terminate().success(), "{}", d.logs());
}

#[test]
fn a_reload_changes_the_log_level() {
    let port = free_port();
    let config = |level: &str| {
        format!(
            r#"
[log]
format = "json"
level = "{level}"

[admin]
address = "127.0.0.1:0"

[listeners.g]
type = "graphite"
address = "127.0.0.1:{port}"

[sinks.all]
type = "file"
path = "all.lp"
format = "influx"
batch_max_age_ms = 5
"#
        )
    };
    let mut d = Daemon::start(&config("info"));
    let opened = |d: &Daemon| d.logs().matches("connection opened").count();
    // One connection at each level: a line through it, read back from the
    // file, shows the connection was served before the log is looked at.
    let send = |d: &Daemon, n: u32| {
        let mut c = TcpStream::connect(d.addr("g")).unwrap();
        writeln!(c, "level.check {n} 1700000000").unwrap();
        drop(c);
        assert!(
            wait_until(Duration::from_secs(30), || read(d.dir().join("all.lp"))
                .contains(&format!("level.check value={n} "))),
            "line {n} not stored:\n{}",
            d.logs()
        );
    };
    send(&d, 1);
    assert_eq!(opened(&d), 0, "debug logged at info:\n{}", d.logs());

    assert!(reload(&d, &config("debug")));
    send(&d, 2);
    assert!(
        wait_until(Duration::from_secs(30), || opened(&d) == 1),
        "no debug line after the reload to debug:\n{}",
        d.logs()
    );

    assert!(reload(&d, &config("info")));
    send(&d, 3);
    assert_eq!(opened(&d), 1, "debug logged after the reload to info");
    assert!(
        !d.logs().contains("take effect at the next restart"),
        "a level change is applied, not deferred:\n{}",
        d.logs()
    );

    // A filter that does not parse fails the reload; the level stays.
    assert!(!reload(&d, &config("info,[")));
    assert!(d.logs().contains("log.level"), "{}", d.logs());
    d.terminate();
}
