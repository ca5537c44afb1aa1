//! Harness for end-to-end tests: starts the real `conflux` binary from a TOML
//! string (every port 0), learns the bound addresses from its JSON log, talks
//! to it over real sockets and stops it by PID.
//!
//! The binary is `$CONFLUX_BIN`, or `conflux` next to the test executable's
//! profile directory (`cargo build -p conflux` puts it there; the test script
//! builds it first).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the daemon binary under test.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("CONFLUX_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-exe> → target/<profile>/conflux
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("conflux");
    assert!(
        bin.exists(),
        "{} is missing: build the daemon first with `cargo build -p conflux` (scripts/test.sh does), or set CONFLUX_BIN",
        bin.display()
    );
    bin
}

/// A running daemon.
pub struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    log: Arc<Mutex<Vec<String>>>,
    addrs: HashMap<String, SocketAddr>,
    admin: Option<SocketAddr>,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// Start the daemon with `config` (JSON logs are forced unless the config
    /// has a `[log]` section) in a fresh temporary directory, and wait until it
    /// logs that it is ready.
    pub fn start(config: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(config, dir)
    }

    /// As [`Daemon::start`], with extra environment variables (for `${VAR}`
    /// in the config; `std::env::set_var` is unsafe in a threaded test).
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Daemon {
        Self::start_in_env(config, tempfile::tempdir().unwrap(), env)
    }

    /// As [`Daemon::start`], in a given directory.
    pub fn start_in(config: &str, dir: tempfile::TempDir) -> Daemon {
        Self::start_in_env(config, dir, &[])
    }

    fn start_in_env(config: &str, dir: tempfile::TempDir, env: &[(&str, &str)]) -> Daemon {
        let mut text = config.to_owned();
        if !text.contains("[log]") {
            text.push_str("\n[log]\nformat = \"json\"\nlevel = \"info\"\n");
        }
        if !text.contains("[admin]") {
            text.push_str("\n[admin]\naddress = \"127.0.0.1:0\"\n");
        }
        let path = dir.path().join("conflux.toml");
        std::fs::write(&path, &text).unwrap();
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(&path)
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        // stdout is drained so that a stdout sink never blocks the daemon.
        let stdout = child.stdout.take().unwrap();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(format!("stdout: {line}"));
                }
            });
        }
        let mut d = Daemon {
            child,
            dir,
            log,
            addrs: HashMap::new(),
            admin: None,
            status: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let status = d.child.try_wait().unwrap();
                    panic!(
                        "daemon not ready (exit status {status:?}); log:\n{}",
                        d.logs()
                    );
                }
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let msg = v["message"].as_str().unwrap_or_default();
            let addr = v["address"].as_str().and_then(|a| a.parse().ok());
            match (msg, addr) {
                ("listening", Some(a)) => {
                    let name = v["listener"].as_str().unwrap().to_owned();
                    let transport = v["transport"].as_str().unwrap_or("tcp");
                    d.addrs.insert(format!("{name}/{transport}"), a);
                    d.addrs.entry(name).or_insert(a);
                }
                ("admin listening", Some(a)) => d.admin = Some(a),
                ("conflux ready", _) => break,
                _ => {}
            }
        }
        d
    }

    /// The working directory (files sinks write relative to it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The first bound address of listener `name` (or `name/transport`).
    pub fn addr(&self, name: &str) -> SocketAddr {
        *self
            .addrs
            .get(name)
            .unwrap_or_else(|| panic!("no listener `{name}` in {:?}", self.addrs))
    }

    /// The admin address.
    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("admin enabled")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the daemon logged so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// `GET /metrics` from the admin endpoint.
    pub fn metrics(&self) -> String {
        let r = http(self.admin(), "GET", "/metrics", &[], b"");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// Sum of every sample of `name` whose labels contain all of `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics(), name, labels)
    }

    /// Send SIGTERM and wait for the exit (at most 60 s).
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.child.id(), "TERM");
        self.wait(Duration::from_secs(60))
    }

    /// Kill with SIGKILL: no flush, no shutdown, as a crash or the OOM killer would.
    pub fn kill9(&mut self) -> ExitStatus {
        signal(self.child.id(), "KILL");
        self.wait(Duration::from_secs(30))
    }

    /// Once the process has exited: its directory, for a restart on the same
    /// state with [`Daemon::start_in`].
    pub fn take_dir(&mut self) -> tempfile::TempDir {
        assert!(self.status.is_some(), "the daemon still runs");
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// Resident memory of the process in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = read(format!("/proc/{}/status", self.child.id()));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in /proc status: {status}"))
    }

    /// Wait for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                self.status = Some(s);
                // Let the reader threads pick up the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("daemon did not exit in {timeout:?}; log:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Send a signal to a process we started.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid} failed");
}

/// Run the binary with arguments to completion: (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// A header value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    send_and_read(s, req.as_bytes(), body)
}

/// One HTTP/1.1 request with a chunked body (no `Content-Length`), as
/// Telegraf's `outputs.influxdb` sends it.
pub fn http_chunked(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    chunk: usize,
) -> Response {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut framed = Vec::new();
    for part in body.chunks(chunk.max(1)) {
        framed.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        framed.extend_from_slice(part);
        framed.extend_from_slice(b"\r\n");
    }
    framed.extend_from_slice(b"0\r\n\r\n");
    send_and_read(s, req.as_bytes(), &framed)
}

fn send_and_read(mut s: TcpStream, head: &[u8], body: &[u8]) -> Response {
    s.write_all(head).unwrap();
    // A server may answer (413) before reading everything; the answer is what counts.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Sum of the samples of `name` in Prometheus text `text` whose labels contain `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, lbls) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| lbls.contains(&format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Poll `f` every 20 ms until it returns true or `timeout` passes; returns its last answer.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Read a file, or "" if it does not exist.
pub fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// gzip `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The Python that has the real client libraries (`influxdb`,
/// `influxdb-client`, `requests`, `graphyte`) and PyYAML: `$CONFLUX_PYTHON`
/// (scripts/test.sh sets it), else the project's `.venv`.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("CONFLUX_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with the client libraries: run scripts/test.sh (it creates .venv), or set CONFLUX_PYTHON"
    );
    venv
}

/// Run `tests/python/SCRIPT ARGS…` with [`python()`] and read the JSON it
/// prints. The scripts report client errors inside that JSON, so a run that
/// fails is a broken script: the test fails with its output and the daemon's
/// log.
pub fn python_json(script: &str, args: &[String], d: &Daemon) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let out = Command::new(python())
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}\n{stdout}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.logs()
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// One carbon pickle payload `[(path, (ts, value))]`, protocol 2, as
/// CPython writes it (without the 4-byte length prefix).
pub fn pickle_payload(path: &str, ts: i32, value: f64) -> Vec<u8> {
    let mut p = vec![0x80, 2, b']', b'q', 0, b'X'];
    p.extend_from_slice(&(path.len() as u32).to_le_bytes());
    p.extend_from_slice(path.as_bytes());
    p.extend_from_slice(&[b'q', 1, b'J']);
    p.extend_from_slice(&ts.to_le_bytes());
    p.push(b'G');
    p.extend_from_slice(&value.to_be_bytes());
    p.extend_from_slice(&[0x86, b'q', 2, 0x86, b'q', 3, b'a', b'.']);
    p
}

/// The lines a file sink wrote to `out.lp`, sorted, after a clean stop
/// (which flushes it).
pub fn stored(mut d: Daemon) -> Vec<String> {
    assert_eq!(d.terminate().code(), Some(0), "{}", d.logs());
    let mut lines: Vec<String> = read(d.dir().join("out.lp"))
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}
