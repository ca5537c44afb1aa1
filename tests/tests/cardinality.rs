//! The per-sink cardinality limiter end to end: `max_new_series_per_hour`
//! drops new series past its budget and counts them, known series keep
//! flowing, and a sink without a limit gets everything.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use conflux_e2e::{Daemon, http, read};

/// Names from `conflux_core::telemetry`, repeated so that the test breaks if
/// a name changes without the docs and dashboards following.
const DROPPED: &str = "conflux_sink_dropped_metrics_total";
const NEW_SERIES: &str = "conflux_sink_new_series_total";
const TRACKED: &str = "conflux_sink_series_tracked";

fn write(d: &Daemon, body: &str) {
    let r = http(
        d.addr("edge"),
        "POST",
        "/write?db=test",
        &[],
        body.as_bytes(),
    );
    assert_eq!(r.status, 204, "{r:?}");
}

fn lines(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = read(path).lines().map(str::to_owned).collect();
    v.sort();
    v
}

/// `cpu,host=hN usage=V T` for each host index, as written and as the
/// influx file sink writes it back.
fn points(hosts: std::ops::Range<usize>, value: u32, ts: u64) -> Vec<String> {
    hosts
        .map(|h| format!("cpu,host=h{h} usage={value} {ts}"))
        .collect()
}

#[test]
fn new_series_past_the_budget_are_dropped_and_counted_while_known_ones_flow() {
    let mut d = Daemon::start(
        r#"
[listeners.edge]
type = "influx"
address = "127.0.0.1:0"

[sinks.limited]
type = "file"
path = "limited.lp"
format = "influx"
max_new_series_per_hour = 5

[sinks.all]
type = "file"
path = "all.lp"
format = "influx"
"#,
    );
    // Eight series in one request: the first five are the budget.
    let first = points(0..8, 1, 1_000_000_000);
    write(&d, &(first.join("\n") + "\n"));
    // The first three again, now known: they pass.
    let later = points(0..3, 2, 2_000_000_000);
    write(&d, &(later.join("\n") + "\n"));

    let limited = [("sink", "limited")];
    let m = d.metrics();
    let value = |name, labels: &[(&str, &str)]| conflux_e2e::metric_value(&m, name, labels);
    assert_eq!(
        value(DROPPED, &[("sink", "limited"), ("reason", "series_limit")]),
        3.0,
        "{m}"
    );
    assert_eq!(value(NEW_SERIES, &limited), 5.0, "{m}");
    assert_eq!(value(TRACKED, &limited), 5.0, "{m}");
    // The unlimited sink has no limiter and drops nothing.
    assert_eq!(value(DROPPED, &[("sink", "all")]), 0.0, "{m}");
    assert!(!m.contains(&format!("{NEW_SERIES}{{sink=\"all\"")), "{m}");

    assert_eq!(d.terminate().code(), Some(0), "{}", d.logs());
    // One WARN per window, naming the sink and its limit.
    let logs = d.logs();
    let warns: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("new-series limit reached"))
        })
        .collect();
    assert_eq!(warns.len(), 1, "{logs}");
    assert_eq!(warns[0]["level"], "WARN", "{}", warns[0]);
    assert_eq!(warns[0]["sink"], "limited", "{}", warns[0]);
    assert_eq!(warns[0]["max_new_series_per_hour"], 5, "{}", warns[0]);

    let mut expected: Vec<String> = first[..5].iter().chain(&later).cloned().collect();
    expected.sort();
    assert_eq!(lines(&d.dir().join("limited.lp")), expected);
    let mut everything: Vec<String> = first.iter().chain(&later).cloned().collect();
    everything.sort();
    assert_eq!(lines(&d.dir().join("all.lp")), everything);
}
