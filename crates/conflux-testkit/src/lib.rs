//! Test support: real metric servers on free loopback ports.
//!
//! Sink tests run against the server the sink targets (see `STYLE.md`, Tests).
//! Each launcher here starts one real server, installed from its Debian
//! package, on free `127.0.0.1` ports with its own temporary data directory,
//! waits until it answers, and kills it (by the PID of the child it started,
//! nothing else) when dropped. Everything is blocking `std` code: call it
//! from plain tests or inside `tokio::task::spawn_blocking`.
//!
//! A launcher retries the whole start with fresh ports up to three times when
//! the server exits during startup (another process may take a port between
//! [`free_port`] and the server's bind), and only reports a server ready once
//! the child itself listens on its ports, so a test never talks to a
//! neighbour's server. A missing binary fails with the package to install.
//!
//! Layout:
//! - [`http`]: a tiny HTTP/1.1 client (`Connection: close`, `Content-Length`
//!   and chunked answers) and URL encoding.
//! - [`victoria`]: VictoriaMetrics (`victoria-metrics`): influx, graphite,
//!   OpenTSDB telnet and `/api/put` in, `/api/v1/export` out.
//! - [`influxd`]: InfluxDB 1.x (`influxd`), optionally with auth and an
//!   OpenTSDB listener.
//! - [`prometheus`]: Prometheus with the remote-write receiver.
//! - [`carbon`]: carbon-cache (graphite plaintext in, whisper files out).
//! - [`carbon_relay`]: carbon-c-relay writing what it receives to a file.
//! - [`pki`]: throw-away CA, server and client certificates for TLS tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod carbon;
pub mod carbon_relay;
pub mod http;
pub mod influxd;
pub mod pki;
pub mod prometheus;
pub mod victoria;

pub use http::{http_get, http_post, http_request, url_encode};

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// How long a server may take to answer after it was spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the `wait_*` helpers of the launchers poll for data.
const DATA_TIMEOUT: Duration = Duration::from_secs(20);
/// Poll interval of every wait.
const POLL: Duration = Duration::from_millis(50);
/// How many times a launcher starts its server (with fresh ports each time).
const ATTEMPTS: usize = 3;
/// How much of each captured stream [`Process::log`] returns (the tail).
const LOG_TAIL_BYTES: usize = 64 * 1024;

/// A free TCP port on 127.0.0.1: binds port 0, reads the port, closes.
///
/// Another process may take the port before the caller binds it; the
/// launchers of this crate retry with new ports when that happens.
///
/// # Panics
/// When no port can be bound on loopback.
pub fn free_port() -> u16 {
    free_addrs::<1>()[0].port()
}

/// `N` distinct free loopback addresses: all listeners stay open until every
/// port is chosen, so the ports differ from each other.
pub(crate) fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    let listeners: [TcpListener; N] = std::array::from_fn(|_| {
        TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port")
    });
    std::array::from_fn(|i| {
        listeners[i]
            .local_addr()
            .expect("local address of a bound listener")
    })
}

/// Calls `f` every 50 ms until it returns `true`.
///
/// # Panics
/// When `f` has not returned `true` within `timeout`; the message names `what`.
pub fn wait_until(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    if !poll(timeout, f) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// Calls `f` every 50 ms until it returns `true` (then `true`) or `timeout`
/// has passed (then `false`).
pub(crate) fn poll(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        sleep(POLL);
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_secs()).expect("seconds fit in i64")
}

/// Sends `bytes` over a new TCP connection to `addr`, half-closes it, and
/// waits (at most 10 s) for the server to close its side, so that the server
/// has read everything when this returns. For the line protocols (graphite
/// plaintext, OpenTSDB telnet `put`).
///
/// # Panics
/// When the connection or the write fails.
pub fn tcp_send(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("set write timeout");
    stream
        .write_all(bytes)
        .unwrap_or_else(|e| panic!("write to {addr}: {e}"));
    stream
        .shutdown(Shutdown::Write)
        .unwrap_or_else(|e| panic!("half-close {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set read timeout");
    // The answer (an OpenTSDB error line, say) is not needed; EOF is.
    let _ = io::copy(&mut stream, &mut io::sink());
}

/// A server process this crate started, with its temporary directory.
///
/// Its stdout and stderr go to `stdout.log` and `stderr.log` in that
/// directory ([`Process::log`] reads them back). Dropping it kills the child
/// by its PID (`SIGKILL`), reaps it, then removes the directory.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    // Declared after `child`; `Drop` kills the child before the fields drop.
    dir: TempDir,
}

impl Process {
    /// Spawns `command` (its working directory set to `dir`) with stdout and
    /// stderr captured in `dir`; `name` labels messages, `package` is the
    /// Debian package to suggest when the program is missing.
    ///
    /// # Panics
    /// When the program cannot be started; when it is missing, the message
    /// says which Debian package to install.
    pub fn spawn(name: &str, package: &str, dir: TempDir, command: Command) -> Process {
        let child = spawn_in(name, package, dir.path(), command);
        Process {
            name: name.to_owned(),
            child,
            dir,
        }
    }

    /// Kills the child by its PID (`SIGKILL`) and reaps it, keeping its
    /// directory, so that [`Process::respawn`] can start it again on the same
    /// data (a target outage in a test).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts `command` in the same directory after [`Process::stop`]; its
    /// output is appended to the same logs.
    ///
    /// # Panics
    /// As [`Process::spawn`].
    pub fn respawn(&mut self, package: &str, command: Command) {
        self.stop();
        self.child = spawn_in(&self.name, package, self.dir.path(), command);
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temporary directory (data, configuration and captured output).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The exit status, if the child has exited.
    ///
    /// # Panics
    /// When the status cannot be read.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait on a spawned child")
    }

    /// Whether the child itself (not another process) has a TCP socket
    /// listening on `addr`'s port. Reads `/proc/net/tcp{,6}` and the child's
    /// `/proc/<pid>/fd`; where `/proc` is not readable it answers `true`.
    pub fn listens_on(&self, addr: SocketAddr) -> bool {
        let mut inodes = Vec::new();
        let mut readable = false;
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(text) = fs::read_to_string(table) else {
                continue;
            };
            readable = true;
            inodes.extend(
                text.lines()
                    .skip(1)
                    .filter_map(|line| listening_inode(line, addr.port())),
            );
        }
        if !readable {
            return true;
        }
        let Ok(fds) = fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return false;
        };
        fds.filter_map(Result::ok)
            .filter_map(|fd| fs::read_link(fd.path()).ok())
            .any(|link| {
                let link = link.to_string_lossy();
                inodes
                    .iter()
                    .any(|inode| link == format!("socket:[{inode}]"))
            })
    }

    /// What the child wrote to stdout and stderr so far (the last 64 KiB of
    /// each), for assertion messages.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for stream in ["stdout", "stderr"] {
            let text = fs::read(self.dir().join(format!("{stream}.log"))).unwrap_or_default();
            let skip = text.len().saturating_sub(LOG_TAIL_BYTES);
            out.push_str(&format!("--- {} {stream}", self.name));
            if skip > 0 {
                out.push_str(&format!(" (first {skip} bytes left out)"));
            }
            out.push_str(" ---\n");
            out.push_str(&String::from_utf8_lossy(&text[skip..]));
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// Polls until `ready` answers `true`. `Err` (with the log) when the child
    /// exits first, so that the launcher retries with new ports.
    ///
    /// # Panics
    /// When the child neither exits nor becomes ready within the startup
    /// timeout (30 s).
    pub(crate) fn wait_ready(
        &mut self,
        mut ready: impl FnMut(&Process) -> bool,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(format!(
                    "{} exited during startup ({status})\n{}",
                    self.name,
                    self.log()
                ));
            }
            if ready(self) {
                return Ok(());
            }
            if start.elapsed() >= STARTUP_TIMEOUT {
                panic!(
                    "{} did not become ready within {STARTUP_TIMEOUT:?}\n{}",
                    self.name,
                    self.log()
                );
            }
            sleep(POLL);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // `Child::kill` signals this child's PID only, and `wait` reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `command` in `dir` with stdout and stderr appended to its logs.
fn spawn_in(name: &str, package: &str, dir: &Path, mut command: Command) -> Child {
    let open = |file: &str| {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(file))
            .unwrap_or_else(|e| panic!("open {file}: {e}"))
    };
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(open("stdout.log"))
        .stderr(open("stderr.log"));
    match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
            "cannot start {name}: {:?} not found ({e}); install the Debian package \
             `{package}` (`apt-get install {package}`, or run scripts/test.sh, which does)",
            command.get_program()
        ),
        Err(e) => panic!("cannot start {name} ({:?}): {e}", command.get_program()),
    }
}

/// The socket inode of a `/proc/net/tcp` row in state LISTEN on `port`.
fn listening_inode(line: &str, port: u16) -> Option<String> {
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (_, local_port) = fields.get(1)?.rsplit_once(':')?;
    let listening = *fields.get(3)? == "0A";
    (listening && u16::from_str_radix(local_port, 16).ok()? == port)
        .then(|| fields.get(9).map(|s| (*s).to_owned()))?
}

/// Runs `attempt` until it succeeds, at most [`ATTEMPTS`] times; `attempt`
/// picks fresh ports each time and answers `Err(log)` when the server exited
/// during startup.
pub(crate) fn launch<T>(name: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let mut failures = String::new();
    for n in 1..=ATTEMPTS {
        match attempt() {
            Ok(server) => return server,
            Err(log) => failures.push_str(&format!("=== attempt {n} ===\n{log}\n")),
        }
    }
    panic!("{name} exited during startup {ATTEMPTS} times (fresh ports each time)\n{failures}")
}

/// A new temporary directory for one server.
pub(crate) fn server_dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("conflux-testkit-{name}-"))
        .tempdir()
        .expect("create a temporary directory")
}

/// Writes `contents` to `dir/file`.
pub(crate) fn write_file(dir: &Path, file: &str, contents: &str) {
    fs::write(dir.join(file), contents).unwrap_or_else(|e| panic!("write {file}: {e}"));
}

/// Reads a whole file, empty when it does not exist (yet).
pub(crate) fn read_or_empty(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// A TOML basic string (for influxdb.conf).
pub(crate) fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inode_of_listening_row_on_port() {
        let row = "   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4059 1 0000000088d45146 100 0 0 10 0";
        assert_eq!(listening_inode(row, 0x18EB), Some("4059".to_owned()));
        assert_eq!(listening_inode(row, 0x18EC), None);
        let established = row.replace(" 0A ", " 01 ");
        assert_eq!(listening_inode(&established, 0x18EB), None);
    }

    #[test]
    fn free_addrs_are_distinct_loopback_ports() {
        let [a, b, c] = free_addrs();
        assert!(a.ip().is_loopback() && a.port() != 0);
        assert!(a != b && b != c && a != c);
    }

    #[test]
    fn launch_retries_until_an_attempt_succeeds() {
        let mut attempts = 0;
        let server = launch("server", || {
            attempts += 1;
            if attempts < ATTEMPTS {
                Err(format!("exited {attempts}"))
            } else {
                Ok(attempts)
            }
        });
        assert_eq!(server, ATTEMPTS);
    }

    #[test]
    #[should_panic(expected = "server exited during startup 3 times (fresh ports each time)")]
    fn launch_gives_up_after_three_exits() {
        launch::<()>("server", || Err("exited".to_owned()));
    }

    #[test]
    fn a_child_listens_on_its_port_and_not_on_others() {
        let dir = server_dir("listener");
        let [addr, other] = free_addrs();
        let script = format!(
            "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',{}))\ns.listen()\ntime.sleep(30)\n",
            addr.port()
        );
        let mut command = Command::new("/usr/bin/python3");
        command.arg("-c").arg(script);
        let mut process = Process::spawn("listener", "python3", dir, command);
        process.wait_ready(|p| p.listens_on(addr)).unwrap();
        let probe = TcpListener::bind(other).unwrap();
        assert!(
            !process.listens_on(probe.local_addr().unwrap()),
            "a socket of this test process is not the child's"
        );
    }
}
