//! InfluxDB 1.x (`influxd`, Debian package `influxdb`, 1.6.7 on bookworm).
//!
//! Started as `influxd -config <tmp>/influxdb.conf` with every `INFLUXDB_*`
//! variable removed from its environment (they override the file). The file
//! puts meta, data and WAL in the temporary directory, binds HTTP and the RPC
//! service to free loopback ports, turns off usage reporting and the
//! `_internal` monitor store, and, when asked, enables authentication and an
//! `[[opentsdb]]` listener writing to database `opentsdb`.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{
    Process, free_addrs, http_request, launch, poll, quoted, server_dir, url_encode, write_file,
};

/// What to enable besides the HTTP API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InfluxdOptions {
    /// An OpenTSDB listener (telnet `put` and HTTP `/api/put` on one port)
    /// writing into database [`Influxd::OPENTSDB_DB`].
    pub opentsdb: bool,
    /// `auth-enabled = true`, with one admin user, [`Influxd::ADMIN`].
    pub auth: bool,
}

/// A running InfluxDB 1.6.
///
/// Timestamps: over HTTP `/write`, anything InfluxDB can represent
/// (1677-09-21 to 2262-04-11, nanoseconds); the default retention policy
/// `autogen` keeps everything.
///
/// Its OpenTSDB listener (checked against 1.6.7) takes only 10-digit
/// (seconds) or 13-digit (milliseconds) timestamps and silently skips any
/// other length (so seconds before 2001-09-09 are lost). A 13-digit timestamp
/// is stored as `seconds + (ms % 1000)` **micro**seconds: `1700000000123`
/// reads back as `1700000000000123000` ns. That is InfluxDB's bug
/// (`time.Unix(ts/1000, (ts%1000)*1000)`), in telnet `put` and `/api/put`
/// alike; only whole seconds survive exactly. Points reach the database in
/// batches of at most 50 ms.
#[derive(Debug)]
pub struct Influxd {
    /// HTTP API: `/write`, `/query`, `/ping` (1.6 has no `/api/v2/write`).
    pub http: SocketAddr,
    /// The OpenTSDB listener, when enabled.
    pub opentsdb: Option<SocketAddr>,
    auth: bool,
    process: Process,
}

impl Influxd {
    /// User name and password of the admin user created when
    /// [`InfluxdOptions::auth`] is set.
    pub const ADMIN: (&'static str, &'static str) = ("admin", "secret");

    /// The database the OpenTSDB listener writes to (created at start).
    pub const OPENTSDB_DB: &'static str = "opentsdb";

    /// Starts one on free loopback ports with empty directories, waits until
    /// `/ping` answers `204` (and the OpenTSDB port listens), then creates the
    /// admin user (with auth) and the OpenTSDB database (with OpenTSDB).
    ///
    /// # Panics
    /// When the binary is missing (with the package to install), when it does
    /// not answer within 30 s, or when it exits during startup three times.
    pub fn start(options: InfluxdOptions) -> Influxd {
        launch("influxd", || {
            let [http, rpc, opentsdb] = free_addrs();
            let dir = server_dir("influxd");
            let path = |sub: &str| quoted(&dir.path().join(sub).to_string_lossy());
            let mut config = format!(
                "reporting-disabled = true\n\
                 bind-address = {rpc}\n\
                 \n[meta]\n  dir = {meta}\n\
                 \n[data]\n  dir = {data}\n  wal-dir = {wal}\n  query-log-enabled = false\n\
                 \n[http]\n  bind-address = {http}\n  auth-enabled = {auth}\n\
                 \n[monitor]\n  store-enabled = false\n\
                 \n[continuous_queries]\n  enabled = false\n",
                rpc = quoted(&rpc.to_string()),
                meta = path("meta"),
                data = path("data"),
                wal = path("wal"),
                http = quoted(&http.to_string()),
                auth = options.auth,
            );
            if options.opentsdb {
                config.push_str(&format!(
                    "\n[[opentsdb]]\n  enabled = true\n  bind-address = {}\n  database = {}\n  \
                     batch-size = 100\n  batch-timeout = \"50ms\"\n",
                    quoted(&opentsdb.to_string()),
                    quoted(Self::OPENTSDB_DB),
                ));
            }
            write_file(dir.path(), "influxdb.conf", &config);
            let mut command = Command::new("influxd");
            command.arg("-config").arg(dir.path().join("influxdb.conf"));
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("INFLUXDB_") {
                    command.env_remove(name);
                }
            }
            let mut process = Process::spawn("influxd", "influxdb", dir, command);
            process.wait_ready(|p| {
                p.listens_on(http)
                    && (!options.opentsdb || p.listens_on(opentsdb))
                    && http_request(http, "GET", "/ping", &[], b"").is_ok_and(|r| r.status == 204)
            })?;
            Ok(Influxd {
                http,
                opentsdb: options.opentsdb.then_some(opentsdb),
                auth: options.auth,
                process,
            })
        })
        .setup(options)
    }

    fn setup(self, options: InfluxdOptions) -> Influxd {
        if options.auth {
            // Allowed without credentials while no user exists.
            let (user, password) = Self::ADMIN;
            self.statement(&format!(
                "CREATE USER {user} WITH PASSWORD '{password}' WITH ALL PRIVILEGES"
            ));
        }
        if options.opentsdb {
            // The listener creates it with its first batch; a query before
            // that would fail with "database not found".
            self.create_db(Self::OPENTSDB_DB);
        }
        self
    }

    /// The server process (PID, directory).
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Captured stdout and stderr, for assertion messages.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Runs InfluxQL `q` against database `db` (`POST /query` with `db`, `q`
    /// and `epoch=ns` in a form body, so that times come back as integer
    /// nanoseconds and any statement is allowed; the admin's `u` and `p` in
    /// the URL when auth is on) and returns the whole JSON answer, errors
    /// included (`{"results":[{"statement_id":0,"series":[…]}]}` or
    /// `{"error":…}`).
    ///
    /// # Panics
    /// When the request fails or the answer is not JSON.
    pub fn query(&self, db: &str, q: &str) -> Value {
        let form = format!("db={}&epoch=ns&q={}", url_encode(db), url_encode(q));
        // InfluxDB reads `u` and `p` from the URL only, never from the form.
        let path = if self.auth {
            let (user, password) = Self::ADMIN;
            format!("/query?u={}&p={}", url_encode(user), url_encode(password))
        } else {
            "/query".to_owned()
        };
        let response = http_request(
            self.http,
            "POST",
            &path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("influxd /query {q}: {e}"));
        serde_json::from_slice(&response.body).unwrap_or_else(|e| {
            panic!(
                "influxd /query {q}: {e}: {} {}",
                response.status,
                response.text()
            )
        })
    }

    /// `CREATE DATABASE "name"`.
    ///
    /// # Panics
    /// When InfluxDB answers with an error.
    pub fn create_db(&self, name: &str) {
        self.statement(&format!(
            "CREATE DATABASE \"{}\"",
            name.replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }

    /// Runs a statement that answers nothing, and panics on any error.
    fn statement(&self, q: &str) {
        let answer = self.query("", q);
        let error = answer
            .get("error")
            .or_else(|| answer.pointer("/results/0/error"));
        assert!(error.is_none(), "influxd: {q}: {answer}\n{}", self.log());
    }

    /// Runs `q` on `db` until its first statement returns at least `min_rows`
    /// rows over all series; returns the `series` array.
    ///
    /// # Panics
    /// After `timeout` without enough rows (the message has the last answer
    /// and the server log).
    pub fn wait_rows(&self, db: &str, q: &str, min_rows: usize, timeout: Duration) -> Vec<Value> {
        let mut last = Value::Null;
        let found = poll(timeout, || {
            last = self.query(db, q);
            rows(&last) >= min_rows
        });
        assert!(
            found,
            "influxd: fewer than {min_rows} rows from {q} on {db} after {timeout:?}; last answer: {last}\n{}",
            self.log()
        );
        last.pointer("/results/0/series")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }
}

/// Rows over all series of the first statement of a `/query` answer.
fn rows(answer: &Value) -> usize {
    let series = answer
        .pointer("/results/0/series")
        .and_then(Value::as_array);
    series
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("values")?.as_array())
        .map(Vec::len)
        .sum()
}
