//! carbon-cache (`carbon-cache`, Debian package `graphite-carbon`, 1.1.7 on
//! bookworm) writing whisper files.
//!
//! Started in the foreground as `carbon-cache --config=<tmp>/carbon.conf
//! --pidfile=<tmp>/carbon-cache.pid --nodaemon start` (so the child is the
//! server; carbon reads `storage-schemas.conf` beside `carbon.conf`). Points
//! are read back from the whisper files with the system Python's `whisper`
//! module (`/usr/bin/python3`, Debian package `python3-whisper`).

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::{DATA_TIMEOUT, Process, free_addrs, launch, poll, server_dir, write_file};

/// The Python that has Debian's `whisper` and `carbon` modules (a `python3`
/// earlier in `PATH`, pyenv's say, may not).
const PYTHON: &str = "/usr/bin/python3";

/// Prints `timestamp value` for every non-empty point of one series in
/// `[start, end]`. Tagged names are normalized (tags sorted) and hashed the
/// way carbon stores them (`_tagged/abc/def/<sha256>.wsp`).
const FETCH: &str = r"
import os, sys, time, whisper
from carbon.util import TaggedSeries
root, name, start, end = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if ';' in name:
    name = TaggedSeries.parse(name).path
path = os.path.join(root, TaggedSeries.encode(name, os.sep, hash_only=True) + '.wsp')
if os.path.exists(path):
    got = whisper.fetch(path, start - 1, end, now=max(end, int(time.time())))
    if got:
        (first, _, step), values = got
        for i, v in enumerate(values):
            t = first + i * step
            if v is not None and start <= t <= end:
                print(t, repr(v))
";

/// A running carbon-cache receiving graphite plaintext and pickle.
///
/// Storage: every series gets one whisper archive of `1s:7d` (one point per
/// second, newest value per second wins, timestamps cut to whole seconds).
/// Points older than 7 days at write time are dropped silently (the file is
/// still created); points ahead of now are kept. Files appear asynchronously,
/// some time after a point arrives: use [`CarbonCache::wait_fetch`].
///
/// Tagged series (`name;tag=value;…`) work without graphite-web: carbon sorts
/// the tags and stores the series under `_tagged/` by the SHA-256 of its
/// name; [`CarbonCache::fetch`] takes the name as sent. `ENABLE_TAGS` is off,
/// which only stops carbon from posting each new series to a graphite-web
/// TagDB (`GRAPHITE_URL/tags/tagMultiSeries`), which is not there.
#[derive(Debug)]
pub struct CarbonCache {
    /// Graphite plaintext (TCP; UDP is off).
    pub line: SocketAddr,
    /// Graphite pickle (TCP).
    pub pickle: SocketAddr,
    /// Root of the whisper files (`a.b.c` is `a/b/c.wsp` below it).
    pub whisper_dir: PathBuf,
    process: Process,
}

impl CarbonCache {
    /// Starts one on free loopback ports with an empty whisper directory and
    /// waits until it listens on its line, pickle and cache-query ports.
    ///
    /// # Panics
    /// When `carbon-cache` is missing (with the package to install), when it
    /// does not answer within 30 s, or when it exits during startup three
    /// times.
    pub fn start() -> CarbonCache {
        launch("carbon-cache", || {
            let [line, pickle, cache_query] = free_addrs();
            let dir = server_dir("carbon");
            let storage = dir.path().join("storage");
            let whisper_dir = storage.join("whisper");
            let config = format!(
                "[cache]\n\
                 STORAGE_DIR = {storage}\n\
                 LOCAL_DATA_DIR = {whisper}\n\
                 WHITELISTS_DIR = {storage}/lists\n\
                 LOG_DIR = {storage}/log\n\
                 PID_DIR = {storage}\n\
                 USER =\n\
                 ENABLE_LOGROTATION = False\n\
                 MAX_CACHE_SIZE = inf\n\
                 MAX_UPDATES_PER_SECOND = inf\n\
                 MAX_CREATES_PER_MINUTE = inf\n\
                 LINE_RECEIVER_INTERFACE = 127.0.0.1\n\
                 LINE_RECEIVER_PORT = {line}\n\
                 ENABLE_UDP_LISTENER = False\n\
                 PICKLE_RECEIVER_INTERFACE = 127.0.0.1\n\
                 PICKLE_RECEIVER_PORT = {pickle}\n\
                 CACHE_QUERY_INTERFACE = 127.0.0.1\n\
                 CACHE_QUERY_PORT = {cache_query}\n\
                 LOG_UPDATES = False\n\
                 LOG_CREATES = False\n\
                 LOG_CACHE_HITS = False\n\
                 LOG_CACHE_QUEUE_SORTS = False\n\
                 LOG_LISTENER_CONN_SUCCESS = False\n\
                 WHISPER_SPARSE_CREATE = True\n\
                 ENABLE_TAGS = False\n\
                 CARBON_METRIC_INTERVAL = 0\n",
                storage = storage.display(),
                whisper = whisper_dir.display(),
                line = line.port(),
                pickle = pickle.port(),
                cache_query = cache_query.port(),
            );
            write_file(dir.path(), "carbon.conf", &config);
            write_file(
                dir.path(),
                "storage-schemas.conf",
                "[all]\npattern = .*\nretentions = 1s:7d\n",
            );
            let mut command = Command::new("carbon-cache");
            command
                .arg(format!(
                    "--config={}",
                    dir.path().join("carbon.conf").display()
                ))
                .arg(format!(
                    "--pidfile={}",
                    dir.path().join("carbon-cache.pid").display()
                ))
                .arg("--nodaemon")
                .arg("start");
            for variable in ["GRAPHITE_ROOT", "GRAPHITE_CONF_DIR", "GRAPHITE_STORAGE_DIR"] {
                command.env_remove(variable);
            }
            let mut process = Process::spawn("carbon-cache", "graphite-carbon", dir, command);
            process.wait_ready(|p| {
                [line, pickle, cache_query]
                    .into_iter()
                    .all(|addr| p.listens_on(addr))
                    && TcpStream::connect_timeout(&line, Duration::from_secs(1)).is_ok()
            })?;
            Ok(CarbonCache {
                line,
                pickle,
                whisper_dir,
                process,
            })
        })
    }

    /// The server process (PID, directory).
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Captured stdout and stderr (carbon logs there in the foreground), for
    /// assertion messages.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The stored points of series `path` (`a.b.c`, or tagged `a;k=v`) with
    /// timestamps in `[from, until]` (seconds, both included), empty slots
    /// left out; empty when the file does not exist yet.
    ///
    /// # Panics
    /// When the whisper reader fails (a missing `python3-whisper` included).
    pub fn fetch(&self, path: &str, from: i64, until: i64) -> Vec<(i64, f64)> {
        let output = Command::new(PYTHON)
            .arg("-c")
            .arg(FETCH)
            .arg(&self.whisper_dir)
            .arg(path)
            .arg(from.to_string())
            .arg(until.to_string())
            .output()
            .unwrap_or_else(|e| panic!("run {PYTHON} to read whisper files: {e}"));
        assert!(
            output.status.success(),
            "reading {path} from whisper failed ({}); is python3-whisper installed? {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| {
                let (t, v) = line
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("whisper point {line:?}"));
                (
                    t.parse().expect("whisper timestamp"),
                    v.parse().expect("whisper value"),
                )
            })
            .collect()
    }

    /// [`CarbonCache::fetch`] until it returns at least `min_points` points.
    ///
    /// # Panics
    /// After 20 s without enough points (the message has the last fetch and
    /// the server log).
    pub fn wait_fetch(
        &self,
        path: &str,
        from: i64,
        until: i64,
        min_points: usize,
    ) -> Vec<(i64, f64)> {
        let mut last = Vec::new();
        let found = poll(DATA_TIMEOUT, || {
            last = self.fetch(path, from, until);
            last.len() >= min_points
        });
        assert!(
            found,
            "carbon-cache: fewer than {min_points} points of {path} in [{from}, {until}] after \
             {DATA_TIMEOUT:?}; last fetch: {last:?}\n{}",
            self.log()
        );
        last
    }
}
