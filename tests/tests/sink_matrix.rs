//! The cross-dialect matrix: one metric goes into each of the four
//! listeners, and each comes out of every sink into a real server, which is
//! read back. The expected names are the table in docs/protocols.md
//! ("Naming policy for single-value targets"): the influx sink keeps
//! measurement and field, the single-value sinks write one series per field,
//! a field called `value` keeps the bare name.
//!
//! Servers: InfluxDB 1.x for the influx sink; VictoriaMetrics for the
//! prometheus and graphite sinks (one instance: their names differ) and
//! another for the opentsdb sink (its names would collide with Prometheus');
//! a second Conflux's KairosDB listener for the kairosdb sink (no KairosDB
//! server can run here), read back from its file sink.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conflux_e2e::{Daemon, http, read, wait_until};
use conflux_testkit::influxd::{Influxd, InfluxdOptions};
use conflux_testkit::victoria::Victoria;
use serde_json::Value;

/// (series name, sorted labels) → (value, timestamp in seconds)
type Seen = BTreeMap<(String, Vec<(String, String)>), (f64, i64)>;

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

/// (series name, labels, value)
type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

fn expect(rows: &[Row<'_>], ts: i64) -> Seen {
    rows.iter()
        .map(|(n, l, v)| (((*n).to_owned(), labels(l)), (*v, ts)))
        .collect()
}

/// VictoriaMetrics' export lines as `Seen` (labels other than `__name__`).
fn from_victoria(lines: &[Value]) -> Seen {
    lines
        .iter()
        .map(|l| {
            let m = l["metric"].as_object().unwrap();
            let name = m["__name__"].as_str().unwrap().to_owned();
            let mut lbls: Vec<(String, String)> = m
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            lbls.sort();
            let values = l["values"].as_array().unwrap();
            let ts = l["timestamps"].as_array().unwrap();
            assert_eq!(values.len(), 1, "one sample per series: {l}");
            (
                (name, lbls),
                (values[0].as_f64().unwrap(), ts[0].as_i64().unwrap() / 1000),
            )
        })
        .collect()
}

#[test]
fn every_listener_into_every_sink() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ts = now - 60;

    let influxd = Influxd::start(InfluxdOptions::default());
    influxd.create_db("matrix");
    let vm = Victoria::start();
    let vm_tsdb = Victoria::start();
    let kairos_end = Daemon::start(
        r#"
[listeners.kairos]
type = "kairosdb"
address = "127.0.0.1:0"
[sinks.json]
type = "file"
path = "out.json"
format = "json"
batch_max_age_ms = 5
"#,
    );

    let d = Daemon::start(&format!(
        r#"
[listeners.influx]
type = "influx"
address = "127.0.0.1:0"
[listeners.opentsdb]
type = "opentsdb"
address = "127.0.0.1:0"
[listeners.graphite]
type = "graphite"
address = "127.0.0.1:0"
[listeners.kairosdb]
type = "kairosdb"
address = "127.0.0.1:0"

[sinks.influx]
type = "influx"
url = "http://{influx}/write?db=matrix&precision=s"
batch_max_age_ms = 5
[sinks.prometheus]
type = "prometheus"
url = "http://{vm}/api/v1/write"
batch_max_age_ms = 5
[sinks.graphite]
type = "graphite"
url = "tcp://{vm_graphite}"
batch_max_age_ms = 5
[sinks.opentsdb]
type = "opentsdb"
url = "http://{tsdb}/api/put"
batch_max_age_ms = 5
[sinks.kairosdb]
type = "kairosdb"
url = "http://{kairos}/api/v1/datapoints"
batch_max_age_ms = 5
"#,
        influx = influxd.http,
        vm = vm.http,
        vm_graphite = vm.graphite,
        tsdb = vm_tsdb.opentsdb_http,
        kairos = kairos_end.addr("kairos"),
    ));

    // One metric into each listener.
    let r = http(
        d.addr("influx"),
        "POST",
        "/write?db=x&precision=s",
        &[],
        format!("cpu,host=a usage_idle=5.5 {ts}\n").as_bytes(),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let mut tsdb = TcpStream::connect(d.addr("opentsdb")).unwrap();
    writeln!(tsdb, "put sys.load {ts} 1.5 host=a").unwrap();
    let mut graphite = TcpStream::connect(d.addr("graphite")).unwrap();
    writeln!(graphite, "servers.a.cpu 3 {ts}").unwrap();
    let r = http(
        d.addr("kairosdb"),
        "POST",
        "/api/v1/datapoints",
        &[("Content-Type", "application/json")],
        format!(
            r#"[{{"name":"disk.used","datapoints":[[{}, 7]],"tags":{{"host":"a"}}}}]"#,
            ts * 1000
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    drop((tsdb, graphite));

    let ok = wait_until(Duration::from_secs(20), || {
        d.metric("conflux_sink_sent_points_total", &[]) >= 20.0
    });
    assert!(
        ok,
        "every sink sent four points:\n{}\n{}",
        d.metrics(),
        d.logs()
    );

    // influx: measurement and field as they came in.
    let mut seen = Seen::new();
    for m in ["cpu", "sys.load", "servers.a.cpu", "disk.used"] {
        let rows = influxd.wait_rows(
            "matrix",
            &format!("SELECT * FROM \"{m}\""),
            1,
            Duration::from_secs(20),
        );
        for s in rows {
            let cols: Vec<&str> = s["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            let row = s["values"][0].as_array().unwrap();
            let mut lbls = Vec::new();
            for (c, v) in cols.iter().zip(row) {
                match (*c, v) {
                    ("time", _) => {}
                    (_, Value::String(s)) => lbls.push(((*c).to_owned(), s.clone())),
                    _ => {}
                }
            }
            for (c, v) in cols.iter().zip(row) {
                if let Value::Number(n) = v
                    && *c != "time"
                {
                    let t = row[0].as_i64().unwrap() / 1_000_000_000;
                    lbls.sort();
                    seen.insert((format!("{m}/{c}"), lbls.clone()), (n.as_f64().unwrap(), t));
                }
            }
        }
    }
    assert_eq!(
        seen,
        expect(
            &[
                ("cpu/usage_idle", &[("host", "a")], 5.5),
                ("sys.load/value", &[("host", "a")], 1.5),
                ("servers.a.cpu/value", &[], 3.0),
                ("disk.used/value", &[("host", "a")], 7.0),
            ],
            ts
        ),
        "influx sink"
    );

    // prometheus: `_` separator, Prometheus sanitizing, bare `value`.
    let prom = from_victoria(&vm.wait_export(r#"{__name__=~"[a-z_]+"}"#, 4));
    assert_eq!(
        prom,
        expect(
            &[
                ("cpu_usage_idle", &[("host", "a")], 5.5),
                ("sys_load", &[("host", "a")], 1.5),
                ("servers_a_cpu", &[], 3.0),
                ("disk_used", &[("host", "a")], 7.0),
            ],
            ts
        ),
        "prometheus sink"
    );

    // graphite: Telegraf's template `host.tags.measurement.field`. A metric
    // without tags keeps the empty `tags` part, hence the leading dot:
    // Telegraf's serializer does the same (its TestSerializeValueUnsigned
    // expects `.mem`), and Conflux keeps its names byte for byte.
    let graphite = from_victoria(&vm.wait_export(r#"{__name__=~".*[.].*"}"#, 4));
    assert_eq!(
        graphite,
        expect(
            &[
                ("a.cpu.usage_idle", &[], 5.5),
                ("a.sys.load", &[], 1.5),
                (".servers.a.cpu", &[], 3.0),
                ("a.disk.used", &[], 7.0),
            ],
            ts
        ),
        "graphite sink"
    );

    // opentsdb: `_` separator, OpenTSDB sanitizing, dots kept.
    let tsdb = from_victoria(&vm_tsdb.wait_export(r#"{__name__!=""}"#, 4));
    assert_eq!(
        tsdb,
        expect(
            &[
                ("cpu_usage_idle", &[("host", "a")], 5.5),
                ("sys.load", &[("host", "a")], 1.5),
                ("servers.a.cpu", &[], 3.0),
                ("disk.used", &[("host", "a")], 7.0),
            ],
            ts
        ),
        "opentsdb sink"
    );

    // kairosdb: `.` separator, names kept; an untagged series gets `add=tag`.
    let path = kairos_end.dir().join("out.json");
    assert!(
        wait_until(Duration::from_secs(20), || read(&path).lines().count() >= 4),
        "{}",
        kairos_end.logs()
    );
    let mut kairos = Seen::new();
    for line in read(&path).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let mut lbls: Vec<(String, String)> = v["tags"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        lbls.sort();
        let fields = v["fields"].as_object().unwrap();
        assert_eq!(fields.len(), 1, "{line}");
        kairos.insert(
            (v["name"].as_str().unwrap().to_owned(), lbls),
            (
                fields["value"].as_f64().unwrap(),
                v["timestamp"].as_i64().unwrap(),
            ),
        );
    }
    assert_eq!(
        kairos,
        expect(
            &[
                ("cpu.usage_idle", &[("host", "a")], 5.5),
                ("sys.load", &[("host", "a")], 1.5),
                ("servers.a.cpu", &[("add", "tag")], 3.0),
                ("disk.used", &[("host", "a")], 7.0),
            ],
            ts
        ),
        "kairosdb sink"
    );
}
