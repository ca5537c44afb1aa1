//! Real Graphite clients writing through Conflux into the file sink, checked
//! value by value: collectd's `write_graphite`, the Python `graphyte`
//! library over TCP and UDP, a carbon-style pickle client on Python's own
//! `pickle`, and carbon-c-relay forwarding into Conflux.
//!
//! Install what they need (scripts/test.sh does):
//! `apt-get install -y collectd-core carbon-c-relay` and
//! `.venv/bin/pip install -r tests/python/requirements.txt`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conflux_e2e::{Daemon, python_json, read, signal, stored, wait_until};

const CONFIG: &str = r#"
[listeners.graphite]
type = "graphite"
address = "127.0.0.1:0"
udp_address = "127.0.0.1:0"
pickle_address = "127.0.0.1:0"
[sinks.out]
type = "file"
path = "out.lp"
batch_max_age_ms = 5
"#;

/// The path of `program`, or a failure that says how to install it.
fn program(program: &str, package: &str) -> PathBuf {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
        "/sbin",
        "/bin",
    ] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "`{program}` is not installed: run `apt-get install -y {package}` (scripts/test.sh does)"
    );
}

fn client(mode: &str, addr: std::net::SocketAddr, extra: &[&str], d: &Daemon) -> serde_json::Value {
    let mut args = vec![
        mode.to_owned(),
        addr.ip().to_string(),
        addr.port().to_string(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    python_json("graphite_clients.py", &args, d)
}

fn received(d: &Daemon) -> f64 {
    d.metric(
        "conflux_listener_received_metrics_total",
        &[("listener", "graphite")],
    )
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), "TERM");
            let done = wait_until(Duration::from_secs(10), || {
                matches!(self.child.try_wait(), Ok(Some(_)))
            });
            if !done {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }

    fn assert_running(&mut self, log: &Path) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, read(log));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    // Bound and released at once; nothing else on this machine races for it.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn graphyte_over_tcp() {
    let d = Daemon::start(CONFIG);
    let out = client("graphyte-tcp", d.addr("graphite/tcp"), &[], &d);
    assert_eq!(out["sent"].as_array().unwrap().len(), 4, "{out}");
    assert!(
        wait_until(Duration::from_secs(20), || received(&d) >= 4.0),
        "{}",
        d.logs()
    );
    assert_eq!(
        stored(d),
        vec![
            "graphyte.tcp.cpu.load value=0.75 1700000000000000000",
            "graphyte.tcp.mem.free value=1024 1700000001000000000",
            "graphyte.tcp.negative value=-12.5 1700000002000000000",
            "graphyte.tcp.tagged,dc=eu-west,host=web01 value=3.25 1700000003000000000",
        ]
    );
}

#[test]
fn graphyte_over_udp() {
    let d = Daemon::start(CONFIG);
    let out = client("graphyte-udp", d.addr("graphite/udp"), &[], &d);
    assert_eq!(out["sent"].as_array().unwrap().len(), 4, "{out}");
    assert!(
        wait_until(Duration::from_secs(20), || received(&d) >= 4.0),
        "{}",
        d.logs()
    );
    assert_eq!(
        stored(d),
        vec![
            "graphyte.udp.cpu.load value=0.75 1700000000000000000",
            "graphyte.udp.mem.free value=1024 1700000001000000000",
            "graphyte.udp.negative value=-12.5 1700000002000000000",
            "graphyte.udp.tagged,dc=eu-west,host=web01 value=3.25 1700000003000000000",
        ]
    );
}

#[test]
fn python_pickle_protocol_2_client() {
    let d = Daemon::start(CONFIG);
    client("pickle", d.addr("graphite/pickle"), &[], &d);
    assert!(
        wait_until(Duration::from_secs(20), || received(&d) >= 4.0),
        "{}",
        d.logs()
    );
    assert_eq!(
        stored(d),
        vec![
            "pickle.batch1.a value=1.5 1700000000000000000",
            "pickle.batch1.b value=-2 1700000001000000000",
            "pickle.batch2.c,env=prod value=3 1700000002000000000",
            "pickle.batch2.d value=0.001 1700000003500000000",
        ]
    );
}

#[test]
fn a_hostile_python_pickle_is_never_executed() {
    let d = Daemon::start(CONFIG);
    let marker = d.dir().join("pwned");
    client(
        "pickle-hostile",
        d.addr("graphite/pickle"),
        &[marker.to_str().unwrap()],
        &d,
    );
    assert!(
        wait_until(Duration::from_secs(20), || received(&d) >= 1.0),
        "{}",
        d.logs()
    );
    assert_eq!(
        d.metric(
            "conflux_listener_rejected_total",
            &[("listener", "graphite"), ("reason", "forbidden_opcode")]
        ),
        1.0
    );
    assert!(!marker.exists(), "the pickle ran its payload");
    assert_eq!(
        stored(d),
        vec!["pickle.after.hostile value=42 1700000000000000000"]
    );
}

#[test]
fn collectd_write_graphite() {
    let collectd = program("collectd", "collectd-core");
    let d = Daemon::start(&format!("{CONFIG}\n",).replace(
        "pickle_address = \"127.0.0.1:0\"",
        "pickle_address = \"127.0.0.1:0\"\ntemplates = [\"collectd.* .host.measurement*\"]",
    ));
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.txt");
    std::fs::write(&values, "42 7.5\n").unwrap();
    let log = dir.path().join("collectd.log");
    let addr = d.addr("graphite/tcp");
    // The `table` plugin reads our file every interval: values we control.
    let conf = format!(
        r#"Hostname "testhost"
FQDNLookup false
Interval 1
BaseDir "{dir}"
PIDFile "{dir}/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "{log}"
  Timestamp true
</Plugin>
LoadPlugin table
<Plugin table>
  <Table "{values}">
    Instance "test"
    Separator " "
    <Result>
      Type gauge
      InstancePrefix "answer"
      ValuesFrom 0
    </Result>
    <Result>
      Type gauge
      InstancePrefix "ratio"
      ValuesFrom 1
    </Result>
  </Table>
</Plugin>
<LoadPlugin write_graphite>
  FlushInterval 1
</LoadPlugin>
<Plugin write_graphite>
  <Node "conflux">
    Host "{host}"
    Port "{port}"
    Protocol "tcp"
    Prefix "collectd."
    EscapeCharacter "_"
    StoreRates false
    AlwaysAppendDS false
  </Node>
</Plugin>
"#,
        dir = dir.path().display(),
        log = log.display(),
        values = values.display(),
        host = addr.ip(),
        port = addr.port(),
    );
    let conf_path = dir.path().join("collectd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let start = now_s();
    let mut proc = Proc {
        child: Command::new(&collectd)
            .arg("-f")
            .arg("-C")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        name: "collectd",
    };
    let out = d.dir().join("out.lp");
    let has = |needle: &str| read(&out).lines().any(|l| l.starts_with(needle));
    let first = wait_until(Duration::from_secs(60), || {
        proc.assert_running(&log);
        has("table-test.gauge-answer,host=testhost value=42 ")
            && has("table-test.gauge-ratio,host=testhost value=7.5 ")
    });
    assert!(
        first,
        "collectd's values did not arrive:\n{}\n{}",
        read(&log),
        d.logs()
    );
    // New values in the file reach Conflux too.
    std::fs::write(&values, "43 8.25\n").unwrap();
    let second = wait_until(Duration::from_secs(60), || {
        has("table-test.gauge-answer,host=testhost value=43 ")
            && has("table-test.gauge-ratio,host=testhost value=8.25 ")
    });
    assert!(
        second,
        "updated values did not arrive:\n{}\n{}",
        read(&log),
        d.logs()
    );
    proc.stop();
    let end = now_s();
    let lines = stored(d);
    assert!(!lines.is_empty());
    for line in &lines {
        // measurement,host=testhost value=V TIMESTAMP
        let (series, rest) = line.split_once(" value=").unwrap();
        let (value, ts) = rest.split_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        let ts: i64 = ts.parse().unwrap();
        match series {
            "table-test.gauge-answer,host=testhost" => {
                assert!(value == 42.0 || value == 43.0, "{line}")
            }
            "table-test.gauge-ratio,host=testhost" => {
                assert!(value == 7.5 || value == 8.25, "{line}")
            }
            other => panic!("unexpected series {other:?} in {line}"),
        }
        // collectd sends whole seconds of its own clock.
        assert_eq!(ts % 1_000_000_000, 0, "{line}");
        let s = ts / 1_000_000_000;
        assert!(
            s >= start - 2 && s <= end + 2,
            "{line} outside {start}..{end}"
        );
    }
}

#[test]
fn carbon_c_relay_forwards_into_conflux() {
    let relay = program("carbon-c-relay", "carbon-c-relay");
    let d = Daemon::start(CONFIG);
    let dir = tempfile::tempdir().unwrap();
    let target = d.addr("graphite/tcp");
    let port = free_port();
    // Loopback only (without `listen` the relay binds every address).
    let conf = format!(
        "listen\n    type linemode\n        127.0.0.1:{port} proto tcp\n        127.0.0.1:{port} proto udp\n    ;\n\
         cluster conflux\n    forward\n        {}:{}\n    ;\n\
         match *\n    send to conflux\n    stop\n    ;\n",
        target.ip(),
        target.port()
    );
    let conf_path = dir.path().join("relay.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = dir.path().join("relay.log");
    let mut proc = Proc {
        child: Command::new(&relay)
            .arg("-f")
            .arg(&conf_path)
            .arg("-l")
            .arg(&log)
            .arg("-w")
            .arg("1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        name: "carbon-c-relay",
    };
    // Not a connect probe: carbon-c-relay 3.7.3 can crash (SIGSEGV) on a
    // connection that arrives before its workers have started.
    let listening = wait_until(Duration::from_secs(30), || {
        proc.assert_running(&log);
        read(&log).contains("startup sequence complete")
    });
    assert!(listening, "carbon-c-relay did not listen:\n{}", read(&log));
    {
        use std::io::Write;
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(
            b"relay.tcp.one 1.5 1700000000\nrelay.tcp.two -3 1700000001\nrelay.tagged;dc=eu;host=web01 7 1700000002\n",
        )
        .unwrap();
    }
    // The relay listens on UDP on the same port.
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"relay.udp.three 0.25 1700000003\n", ("127.0.0.1", port))
        .unwrap();
    let arrived = wait_until(Duration::from_secs(60), || {
        proc.assert_running(&log);
        received(&d) >= 4.0
    });
    assert!(
        arrived,
        "relay did not forward:\n{}\n{}",
        read(&log),
        d.logs()
    );
    proc.stop();
    // The relay's own statistics (`carbon.relays.…`) may arrive too: ignore them.
    let lines: Vec<String> = stored(d)
        .into_iter()
        .filter(|l| l.starts_with("relay."))
        .collect();
    assert_eq!(
        lines,
        vec![
            "relay.tagged,dc=eu,host=web01 value=7 1700000002000000000",
            "relay.tcp.one value=1.5 1700000000000000000",
            "relay.tcp.two value=-3 1700000001000000000",
            "relay.udp.three value=0.25 1700000003000000000",
        ]
    );
}
