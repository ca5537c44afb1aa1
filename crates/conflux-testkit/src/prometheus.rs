//! Prometheus (`prometheus`, Debian package `prometheus`, 2.42 on bookworm)
//! as a remote-write receiver.
//!
//! Started as `prometheus --config.file=<tmp>/prometheus.yml
//! --storage.tsdb.path=<tmp>/data --web.listen-address=…
//! --web.enable-remote-write-receiver --storage.tsdb.retention.time=100y`,
//! with a configuration of only `global.scrape_interval`: no scrape jobs, so
//! nothing but what a test writes ever lands in its TSDB.

use std::net::SocketAddr;
use std::process::Command;

use serde_json::Value;

use crate::{
    DATA_TIMEOUT, Process, free_addrs, http_get, http_request, launch, poll, server_dir, unix_now,
    url_encode, write_file,
};

/// A running Prometheus that accepts remote write on `/api/v1/write`.
///
/// Which timestamps remote write accepts into this fresh TSDB (checked
/// against 2.42.0; the head block appends only within one hour, half its
/// 2 h chunk range, of the newest sample it holds):
/// - the first sample written may have any timestamp (1970, 2001, next year);
/// - after that, only timestamps at or after *(newest timestamp so far −
///   1 h)*; older ones fail with `400 out of bounds`. There is no upper bound,
///   so one sample in the future shuts out everything older than an hour
///   before it;
/// - per series, timestamps must increase (out-of-order ingestion is off):
///   an older one fails with `400 out of order sample`, the same timestamp
///   with another value with `400 duplicate sample for timestamp`;
/// - one refused sample fails the whole request (`400`), and none of the
///   request's other samples is kept.
///
/// So tests should write timestamps from the last ~50 minutes, never ahead
/// of now, in increasing order per series.
///
/// Reading back: [`Prometheus::samples`] evaluates a range selector
/// (`selector[100y]`), which returns every raw sample with its exact
/// timestamp (seconds with millisecond decimals) and value (a string that
/// parses back to the same `f64`). Instant queries only see the last sample
/// within 5 minutes of the evaluation time.
#[derive(Debug)]
pub struct Prometheus {
    /// HTTP: `/api/v1/write` (remote write), `/api/v1/query`, `/api/v1/series`.
    pub http: SocketAddr,
    process: Process,
}

impl Prometheus {
    /// Starts one on a free loopback port with an empty TSDB and waits until
    /// `/-/ready` answers `200`.
    ///
    /// # Panics
    /// When the binary is missing (with the package to install), when it does
    /// not answer within 30 s, or when it exits during startup three times.
    pub fn start() -> Prometheus {
        Self::start_with(None)
    }

    /// As [`Prometheus::start`], serving HTTPS with the PKI's server
    /// certificate; with `require_client_cert`, only clients with a
    /// certificate signed by the PKI's CA get through (mutual TLS). Ready once
    /// it listens (the readiness probe speaks plain HTTP).
    pub fn start_tls(pki: &crate::pki::Pki, require_client_cert: bool) -> Prometheus {
        let mut web = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            pki.server_cert.display(),
            pki.server_key.display()
        );
        if require_client_cert {
            web.push_str(&format!(
                "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
                pki.ca_cert.display()
            ));
        }
        Self::start_with(Some(web))
    }

    fn start_with(web_config: Option<String>) -> Prometheus {
        launch("prometheus", || {
            let [http] = free_addrs();
            let dir = server_dir("prometheus");
            write_file(
                dir.path(),
                "prometheus.yml",
                "global:\n  scrape_interval: 15s\n",
            );
            if let Some(web) = &web_config {
                write_file(dir.path(), "web.yml", web);
            }
            let command = Self::command(dir.path(), http);
            let mut process = Process::spawn("prometheus", "prometheus", dir, command);
            process.wait_ready(|p| Self::ready(p, http))?;
            Ok(Prometheus { http, process })
        })
    }

    fn command(dir: &std::path::Path, http: SocketAddr) -> Command {
        let mut command = Command::new("prometheus");
        command
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={http}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--storage.tsdb.retention.time=100y");
        if dir.join("web.yml").exists() {
            command.arg(format!(
                "--web.config.file={}",
                dir.join("web.yml").display()
            ));
        }
        command
    }

    fn ready(p: &Process, http: SocketAddr) -> bool {
        let tls = p.dir().join("web.yml").exists();
        // With TLS the readiness probe (plain HTTP) cannot ask; listening is enough.
        p.listens_on(http)
            && (tls
                || http_request(http, "GET", "/-/ready", &[], b"").is_ok_and(|r| r.status == 200))
    }

    /// Kills the server (an outage); its data and port stay for [`Prometheus::restart`].
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Starts it again on the same port and data after [`Prometheus::stop`].
    ///
    /// # Panics
    /// When it exits during startup (the port was taken meanwhile) or does
    /// not become ready in 30 s.
    pub fn restart(&mut self) {
        let command = Self::command(self.process.dir(), self.http);
        self.process.respawn("prometheus", command);
        let http = self.http;
        if let Err(log) = self.process.wait_ready(|p| Self::ready(p, http)) {
            panic!("prometheus did not restart on {http}: {log}");
        }
    }

    /// The server process (PID, directory).
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Captured stdout and stderr (refused remote-write samples are logged
    /// there), for assertion messages.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// `/api/v1/query` of `promql` evaluated at `time_secs`: the whole JSON
    /// answer (`{"status":"success","data":{"resultType":…,"result":[…]}}`
    /// or `{"status":"error",…}`).
    ///
    /// # Panics
    /// When the answer is not JSON.
    pub fn query(&self, promql: &str, time_secs: f64) -> Value {
        self.get_json(&format!(
            "/api/v1/query?query={}&time={time_secs}",
            url_encode(promql)
        ))
    }

    /// `/api/v1/series?match[]=selector` over all time: the whole JSON answer,
    /// its `data` a list of label sets.
    ///
    /// # Panics
    /// When the answer is not JSON.
    pub fn series(&self, selector: &str) -> Value {
        self.get_json(&format!("/api/v1/series?match[]={}", url_encode(selector)))
    }

    /// Every raw sample of the series matching `selector` (a vector selector
    /// such as `cpu_usage{host="a"}`): `selector[100y]` evaluated ten years
    /// from now, so future samples count too. One element per series:
    /// `{"metric":{"__name__":…,labels…},"values":[[1700000000.123,"1.5"],…]}`.
    ///
    /// # Panics
    /// When the query fails.
    pub fn samples(&self, selector: &str) -> Vec<Value> {
        let at = unix_now() + 10 * 365 * 86_400;
        let answer = self.query(&format!("{selector}[100y]"), at as f64);
        assert_eq!(
            answer["status"],
            "success",
            "query {selector}[100y]: {answer}\n{}",
            self.log()
        );
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// [`Prometheus::samples`] until the matching series hold at least
    /// `min_samples` samples together; returns them.
    ///
    /// # Panics
    /// After 20 s without enough samples (the message has the last answer and
    /// the server log).
    pub fn wait_samples(&self, selector: &str, min_samples: usize) -> Vec<Value> {
        let mut last = Vec::new();
        let found = poll(DATA_TIMEOUT, || {
            last = self.samples(selector);
            let count: usize = last
                .iter()
                .filter_map(|s| s["values"].as_array())
                .map(Vec::len)
                .sum();
            count >= min_samples
        });
        assert!(
            found,
            "prometheus: fewer than {min_samples} samples matching {selector} after {DATA_TIMEOUT:?}; \
             last answer: {last:?}\n{}",
            self.log()
        );
        last
    }

    fn get_json(&self, path: &str) -> Value {
        let (status, body) = http_get(self.http, path);
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("prometheus {path}: {e}: {status} {body}"))
    }
}
