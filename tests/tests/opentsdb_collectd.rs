//! collectd's `write_tsdb` plugin writing to the opentsdb listener, checked
//! value by value at the file sink.
//!
//! collectd runs as a child of the test (`collectd -f -C <config>`), with the
//! `unixsock` plugin as its only input: the test dispatches known values with
//! `PUTVAL` (explicit timestamps, so every value and time can be checked
//! exactly), asks for a `FLUSH` until Conflux has them all, then stops
//! collectd by PID.
//!
//! Needs `collectd` (Debian: `apt-get install -y collectd-core`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use conflux_e2e::{Daemon, read, signal, wait_until};

/// The collectd binary, or a failure that says how to install it.
fn collectd() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("CONFLUX_COLLECTD") {
        Some(p) => vec![PathBuf::from(p)],
        None => [
            "/usr/sbin/collectd",
            "/usr/bin/collectd",
            "/usr/local/sbin/collectd",
        ]
        .into_iter()
        .map(PathBuf::from)
        .collect(),
    };
    match candidates.into_iter().find(|p| p.exists()) {
        Some(p) => p,
        None => panic!(
            "collectd is missing: install it with `apt-get install -y collectd-core` \
             (scripts/test.sh does), or set CONFLUX_COLLECTD to its path"
        ),
    }
}

/// collectd's types.db, where Debian puts it.
fn types_db() -> &'static str {
    let p = "/usr/share/collectd/types.db";
    assert!(
        Path::new(p).exists(),
        "{p} is missing: install it with `apt-get install -y collectd-core`"
    );
    p
}

/// A collectd child process, killed if the test fails before stopping it.
struct Collectd {
    child: Child,
    dir: PathBuf,
}

impl Collectd {
    fn start(dir: &Path, tsdb_port: u16) -> Collectd {
        let socket = dir.join("collectd.sock");
        let config = format!(
            r#"Hostname "testhost"
FQDNLookup false
BaseDir "{dir}"
PIDFile "{dir}/collectd.pid"
TypesDB "{types}"
Interval 1
WriteThreads 1
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File STDERR
</Plugin>
LoadPlugin unixsock
<Plugin unixsock>
  SocketFile "{socket}"
  SocketPerms "0600"
</Plugin>
LoadPlugin write_tsdb
<Plugin write_tsdb>
  <Node "conflux">
    Host "127.0.0.1"
    Port "{tsdb_port}"
    HostTags "env=test dc=lab"
  </Node>
</Plugin>
"#,
            dir = dir.display(),
            types = types_db(),
            socket = socket.display(),
        );
        let path = dir.join("collectd.conf");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(collectd())
            .arg("-f")
            .arg("-C")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("collectd.log")).unwrap())
            .spawn()
            .expect("start collectd");
        let c = Collectd {
            child,
            dir: dir.to_owned(),
        };
        assert!(
            wait_until(Duration::from_secs(30), || socket.exists()),
            "collectd did not open its socket; log:\n{}",
            c.log()
        );
        c
    }

    fn log(&self) -> String {
        read(self.dir.join("collectd.log"))
    }

    /// Send one unixsock command and return its status line.
    fn command(&self, line: &str) -> String {
        let mut s = UnixStream::connect(self.dir.join("collectd.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(line.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply).unwrap();
        reply
    }

    /// Stop by PID (SIGTERM) and wait for the exit.
    fn stop(mut self) {
        signal(self.child.id(), "TERM");
        assert!(
            wait_until(Duration::from_secs(30), || matches!(
                self.child.try_wait(),
                Ok(Some(_))
            )),
            "collectd did not stop"
        );
    }
}

impl Drop for Collectd {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn collectd_write_tsdb_values_arrive_exactly() {
    let collectd_dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(
        r#"
[listeners.tsdb]
type = "opentsdb"
address = "127.0.0.1:0"
[sinks.out]
type = "file"
path = "out.lp"
batch_max_age_ms = 5
"#,
    );
    let c = Collectd::start(collectd_dir.path(), d.addr("tsdb").port());
    // Identifier, then `time:value[:value]`; each identifier once, so that
    // collectd's cache never calls a value too old.
    for putval in [
        "PUTVAL \"testhost/exec-conflux/gauge-temp\" 1700000000:42.5",
        "PUTVAL \"testhost/exec-conflux/gauge-neg\" 1700000001:-7.25",
        "PUTVAL \"testhost/exec-conflux/gauge-whole\" 1700000002:3",
        "PUTVAL \"testhost/exec-conflux/gauge-big\" 1700000003:1e20",
        "PUTVAL \"testhost/exec-conflux/derive-requests\" 1700000004:123456",
        "PUTVAL \"testhost/exec-conflux/if_octets-eth0\" 1700000005:1000:2000",
        "PUTVAL \"testhost/memory/memory-used\" 1700000006:2147483648",
    ] {
        let reply = c.command(putval);
        assert!(
            reply.starts_with("0 "),
            "{putval}: {reply}; log:\n{}",
            c.log()
        );
    }
    let out = d.dir().join("out.lp");
    let arrived = wait_until(Duration::from_secs(60), || {
        // write_tsdb buffers until its buffer fills or a flush.
        c.command("FLUSH");
        read(&out).lines().count() >= 8
    });
    assert!(
        arrived,
        "not everything arrived: {:?}\ncollectd log:\n{}\ndaemon log:\n{}",
        read(&out),
        c.log(),
        d.logs()
    );
    c.stop();
    assert_eq!(d.terminate().code(), Some(0), "{}", d.logs());
    let mut lines: Vec<String> = read(&out).lines().map(str::to_owned).collect();
    lines.sort();
    let tags = "dc=lab,env=test,fqdn=testhost";
    assert_eq!(
        lines,
        vec![
            format!("exec.conflux.derive.requests,{tags} value=123456i 1700000004000000000"),
            format!(
                "exec.conflux.gauge.big,{tags} value=100000000000000000000 1700000003000000000"
            ),
            format!("exec.conflux.gauge.neg,{tags} value=-7.25 1700000001000000000"),
            format!("exec.conflux.gauge.temp,{tags} value=42.5 1700000000000000000"),
            format!("exec.conflux.gauge.whole,{tags} value=3i 1700000002000000000"),
            format!("exec.conflux.if_octets.eth0.rx,{tags} value=1000i 1700000005000000000"),
            format!("exec.conflux.if_octets.eth0.tx,{tags} value=2000i 1700000005000000000"),
            // collectd names a value without plugin instance `plugin.type_instance.type`.
            format!("memory.used.memory,{tags} value=2147483648i 1700000006000000000"),
        ]
    );
}
