//! VictoriaMetrics single-node (`victoria-metrics`, Debian package
//! `victoria-metrics`, 1.79 on bookworm).
//!
//! Started as
//! `victoria-metrics -storageDataPath=<tmp>/data -retentionPeriod=100y
//! -httpListenAddr=… -graphiteListenAddr=… -opentsdbListenAddr=…
//! -opentsdbHTTPListenAddr=… -search.latencyOffset=0s -search.disableCache`.

use std::net::SocketAddr;
use std::process::Command;

use serde_json::Value;

use crate::{
    DATA_TIMEOUT, Process, free_addrs, http_get, launch, poll, server_dir, unix_now, url_encode,
};

/// A running VictoriaMetrics with every ingestion protocol Conflux sinks speak.
///
/// Which timestamps it keeps (checked against 1.79.5):
/// - from 1970 up to now + 2 days. Older than the retention (100 years here)
///   or negative is dropped as `small_timestamp`, more than 2 days ahead as
///   `big_timestamp` (see [`Victoria::self_metric`]); the write itself still
///   succeeds (`204`), so a test only sees the sample missing.
/// - a timestamp of exactly `0` means "now" (influx line protocol included).
/// - OpenTSDB telnet `put` takes the timestamp as **seconds** whatever its
///   length (fractions cut): a 13-digit millisecond timestamp becomes a date
///   thousands of years ahead and is dropped as `big_timestamp`. `/api/put`
///   (on [`Victoria::opentsdb_http`] or the telnet port) does accept
///   milliseconds.
///
/// Everything is stored with millisecond precision. Prefer recent
/// timestamps (within the last days) in tests.
#[derive(Debug)]
pub struct Victoria {
    /// HTTP API: `/write` (influx line protocol), `/api/v1/write` (Prometheus
    /// remote write), `/api/v1/import`, `/api/v1/export`, `/api/v1/query`.
    pub http: SocketAddr,
    /// Graphite plaintext (TCP; UDP on the same port).
    pub graphite: SocketAddr,
    /// OpenTSDB telnet `put` (TCP; UDP on the same port); also serves
    /// `/api/put` on the same TCP port.
    pub opentsdb: SocketAddr,
    /// OpenTSDB HTTP: `/api/put`.
    pub opentsdb_http: SocketAddr,
    process: Process,
}

impl Victoria {
    /// Starts one on free loopback ports with an empty storage directory and
    /// waits until `/health` answers `200`.
    ///
    /// # Panics
    /// When the binary is missing (with the package to install), when it does
    /// not answer within 30 s, or when it exits during startup three times.
    pub fn start() -> Victoria {
        launch("victoria-metrics", || {
            let [http, graphite, opentsdb, opentsdb_http] = free_addrs();
            let dir = server_dir("victoria");
            let mut command = Command::new("victoria-metrics");
            command
                .arg(format!(
                    "-storageDataPath={}",
                    dir.path().join("data").display()
                ))
                .arg("-retentionPeriod=100y")
                .arg(format!("-httpListenAddr={http}"))
                .arg(format!("-graphiteListenAddr={graphite}"))
                .arg(format!("-opentsdbListenAddr={opentsdb}"))
                .arg(format!("-opentsdbHTTPListenAddr={opentsdb_http}"))
                // Just-written samples visible to /api/v1/query at once, and
                // no response cache hiding back-filled ones.
                .arg("-search.latencyOffset=0s")
                .arg("-search.disableCache");
            let mut process = Process::spawn("victoria-metrics", "victoria-metrics", dir, command);
            process.wait_ready(|p| {
                [http, graphite, opentsdb, opentsdb_http]
                    .into_iter()
                    .all(|addr| p.listens_on(addr))
                    && crate::http_request(http, "GET", "/health", &[], b"")
                        .is_ok_and(|r| r.status == 200)
            })?;
            Ok(Victoria {
                http,
                graphite,
                opentsdb,
                opentsdb_http,
                process,
            })
        })
    }

    /// The server process (PID, directory).
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Captured stdout and stderr, for assertion messages.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// `GET /internal/force_flush`: makes just-written samples searchable.
    ///
    /// # Panics
    /// When the answer is not `200`.
    pub fn flush(&self) {
        let (status, body) = http_get(self.http, "/internal/force_flush");
        assert_eq!(status, 200, "force_flush: {body}\n{}", self.log());
    }

    /// Every series matching `selector` (a series selector such as
    /// `{__name__=~"cpu.*",host="a"}` or a bare metric name), from
    /// `/api/v1/export` over all time up to a week ahead: one object per
    /// series, `{"metric":{"__name__":…,labels…},"values":[…],"timestamps":[…]}`
    /// with timestamps in milliseconds; the values VictoriaMetrics writes as
    /// bare `+Inf`, `-Inf` and `NaN` (not JSON) come as those strings. Call [`Victoria::flush`] first (or use
    /// [`Victoria::wait_export`]).
    ///
    /// # Panics
    /// When the answer is not `200` or a line is not JSON.
    pub fn export(&self, selector: &str) -> Vec<Value> {
        let end = unix_now() + 7 * 86_400;
        let path = format!(
            "/api/v1/export?match[]={}&start=0&end={end}",
            url_encode(selector)
        );
        let (status, body) = http_get(self.http, &path);
        assert_eq!(status, 200, "export {selector}: {body}\n{}", self.log());
        body.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(&quote_non_finite(line))
                    .unwrap_or_else(|e| panic!("export line {line:?}: {e}"))
            })
            .collect()
    }

    /// Flushes and exports until at least `min_series` series match
    /// `selector`; returns them.
    ///
    /// # Panics
    /// After 20 s without enough series (the message has the last export and
    /// the server log).
    pub fn wait_export(&self, selector: &str, min_series: usize) -> Vec<Value> {
        let mut last = Vec::new();
        let found = poll(DATA_TIMEOUT, || {
            self.flush();
            last = self.export(selector);
            last.len() >= min_series
        });
        assert!(
            found,
            "victoria-metrics: fewer than {min_series} series matching {selector} after {DATA_TIMEOUT:?}; \
             last export: {last:?}\n{}",
            self.log()
        );
        last
    }

    /// The value of one of the server's own metrics from `/metrics`, by its
    /// full series text (e.g. `vm_rows_ignored_total{reason="big_timestamp"}`);
    /// `0` when absent. Shows samples dropped for their timestamps.
    ///
    /// # Panics
    /// When `/metrics` does not answer `200`.
    pub fn self_metric(&self, series: &str) -> f64 {
        let (status, body) = http_get(self.http, "/metrics");
        assert_eq!(status, 200, "/metrics: {body}");
        body.lines()
            .filter_map(|line| line.rsplit_once(' '))
            .find(|(name, _)| *name == series)
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0.0)
    }
}

/// VictoriaMetrics exports infinities and NaN as bare words; quote those that
/// stand as array elements so the line parses as JSON.
fn quote_non_finite(line: &str) -> String {
    let mut out = line.to_owned();
    for word in ["+Inf", "-Inf", "NaN"] {
        for (open, close) in [('[', ','), ('[', ']'), (',', ','), (',', ']')] {
            let from = format!("{open}{word}{close}");
            let to = format!("{open}\"{word}\"{close}");
            // Twice: `[+Inf,+Inf]` shares the comma between two matches.
            out = out.replace(&from, &to).replace(&from, &to);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn non_finite_values_are_quoted() {
        let line =
            r#"{"metric":{"__name__":"a+Inf"},"values":[+Inf,-Inf,NaN,1],"timestamps":[1,2,3,4]}"#;
        let v: serde_json::Value = serde_json::from_str(&super::quote_non_finite(line)).unwrap();
        assert_eq!(v["values"], serde_json::json!(["+Inf", "-Inf", "NaN", 1]));
        assert_eq!(v["metric"]["__name__"], "a+Inf");
    }
}
