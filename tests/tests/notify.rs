//! systemd's notification protocol (`Type=notify`, deploy/systemd), with the
//! test in systemd's place: a Unix datagram socket named by `NOTIFY_SOCKET`
//! (a path, or `@name` in the abstract namespace) that reads what the daemon
//! sends.
//!
//! The contract: `READY=1` once every listener is bound (after the
//! "conflux ready" log); `WATCHDOG=1` every `WATCHDOG_USEC`/2 when
//! `WATCHDOG_USEC` is set and `WATCHDOG_PID` is unset or the daemon's own
//! pid; `RELOADING=1` when a SIGHUP reload starts and `READY=1` when it ends;
//! `STOPPING=1` when shutdown starts. A datagram may carry several
//! newline-separated assignments (`READY=1\nSTATUS=…`). Without
//! `NOTIFY_SOCKET` nothing is sent (every other test runs that way).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use conflux_e2e::{Daemon, signal};

const CONFIG: &str = r#"
[listeners.influx]
type = "influx"
address = "127.0.0.1:0"

[sinks.void]
type = "blackhole"
"#;

/// How long any one expected notification may take to come.
const WAIT: Duration = Duration::from_secs(30);

/// The service manager's end of the protocol.
struct Manager {
    sock: UnixDatagram,
    /// The value for `NOTIFY_SOCKET`.
    address: String,
    /// Every assignment received, in order.
    seen: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Manager {
    /// A socket at a file path.
    fn at_path() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        Self::with(sock, path.to_str().unwrap().to_owned(), dir)
    }

    /// A socket in the abstract namespace (`@name`).
    fn abstract_name() -> Manager {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("conflux-e2e-notify-{}-{nanos}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        Self::with(sock, format!("@{name}"), tempfile::tempdir().unwrap())
    }

    fn with(sock: UnixDatagram, address: String, dir: tempfile::TempDir) -> Manager {
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        Manager {
            sock,
            address,
            seen: Vec::new(),
            _dir: dir,
        }
    }

    /// One datagram's assignments, or `None` if none came within the read timeout.
    fn recv(&mut self) -> Option<Vec<String>> {
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let items: Vec<String> = text
                    .split('\n')
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect();
                self.seen.extend(items.iter().cloned());
                Some(items)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("recv on the notify socket: {e}"),
        }
    }

    /// Read datagrams until one carries `want`; returns every assignment of
    /// the datagrams read before that one.
    fn until(&mut self, want: &str, d: &Daemon) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut before = Vec::new();
        loop {
            if let Some(items) = self.recv() {
                if items.iter().any(|i| i == want) {
                    return before;
                }
                before.extend(items);
            }
            assert!(
                Instant::now() < deadline,
                "no {want} on NOTIFY_SOCKET in {WAIT:?}; received {:?}; log:\n{}",
                self.seen,
                d.logs()
            );
        }
    }
}

fn count(items: &[String], want: &str) -> usize {
    items.iter().filter(|i| *i == want).count()
}

#[test]
fn notifies_ready_watchdog_reload_and_stopping() {
    let mut m = Manager::at_path();
    // WATCHDOG_PID stays unset: the pid is unknown before the spawn, and
    // unset means "this process".
    let mut d = Daemon::start_with_env(
        CONFIG,
        &[("NOTIFY_SOCKET", &m.address), ("WATCHDOG_USEC", "200000")],
    );

    let before = m.until("READY=1", &d);
    for early in ["STOPPING=1", "RELOADING=1"] {
        assert_eq!(
            count(&before, early),
            0,
            "{early} before READY=1: {before:?}"
        );
    }

    // Keep-alives every 100 ms: wait for three, however long they take.
    let mut watchdogs = 0;
    while watchdogs < 3 {
        m.until("WATCHDOG=1", &d);
        watchdogs += 1;
    }

    // A reload is bracketed by RELOADING=1 and READY=1.
    signal(d.pid(), "HUP");
    let before = m.until("RELOADING=1", &d);
    assert_eq!(
        count(&before, "READY=1"),
        0,
        "READY=1 before RELOADING=1: {before:?}"
    );
    let during = m.until("READY=1", &d);
    assert_eq!(count(&during, "STOPPING=1"), 0, "{during:?}");

    // Keep-alives go on after the reload.
    m.until("WATCHDOG=1", &d);

    let status = d.terminate();
    assert!(status.success(), "{status:?}; log:\n{}", d.logs());
    // The datagrams wait in the socket after the exit.
    m.until("STOPPING=1", &d);
}

#[test]
fn without_watchdog_usec_no_keepalives_are_sent() {
    let mut m = Manager::at_path();
    let mut d = Daemon::start_with_env(CONFIG, &[("NOTIFY_SOCKET", &m.address)]);
    m.until("READY=1", &d);
    // Time for a keep-alive that should not exist to be sent (not a timing
    // assertion: the check below holds however long this takes).
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.terminate().success(), "log:\n{}", d.logs());
    let before = m.until("STOPPING=1", &d);
    assert_eq!(count(&m.seen, "WATCHDOG=1"), 0, "{:?}", m.seen);
    assert_eq!(count(&before, "READY=1"), 0, "READY=1 twice: {:?}", m.seen);
}

#[test]
fn watchdog_pid_of_another_process_sends_no_keepalives() {
    let mut m = Manager::at_path();
    // systemd sets WATCHDOG_PID to the main process; a value naming another
    // process (pid 1 is never the daemon under test) means the keep-alives
    // are not this process's to send.
    let mut d = Daemon::start_with_env(
        CONFIG,
        &[
            ("NOTIFY_SOCKET", &m.address),
            ("WATCHDOG_USEC", "100000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    m.until("READY=1", &d);
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.terminate().success(), "log:\n{}", d.logs());
    m.until("STOPPING=1", &d);
    assert_eq!(count(&m.seen, "WATCHDOG=1"), 0, "{:?}", m.seen);
}

#[test]
fn abstract_notify_socket_is_reached() {
    let mut m = Manager::abstract_name();
    let mut d = Daemon::start_with_env(CONFIG, &[("NOTIFY_SOCKET", &m.address)]);
    m.until("READY=1", &d);
    assert!(d.terminate().success(), "log:\n{}", d.logs());
    m.until("STOPPING=1", &d);
}
