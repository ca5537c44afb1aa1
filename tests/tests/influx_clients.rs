//! Real InfluxDB client libraries (Python `influxdb` for v1, `influxdb-client`
//! for v2) writing through Conflux into the file sink, checked value by value.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use conflux_e2e::{Daemon, python_json, read};

fn client(mode: &str, d: &Daemon) -> serde_json::Value {
    let addr = d.addr("influx");
    python_json(
        "influx_clients.py",
        &[
            mode.to_owned(),
            addr.ip().to_string(),
            addr.port().to_string(),
        ],
        d,
    )
}

const CONFIG: &str = r#"
[listeners.influx]
type = "influx"
address = "127.0.0.1:0"
credentials = [
    { username = "telegraf", password = "s3cret" },
    { token = "my-token" },
]
[sinks.out]
type = "file"
path = "out.lp"
batch_max_age_ms = 10
"#;

#[test]
fn python_influxdb_v1_client() {
    let mut d = Daemon::start(CONFIG);
    let out = client("v1", &d);
    assert_eq!(out["version"], "1.8.10", "{out}");
    assert_eq!(out["databases"], serde_json::json!(["telegraf"]), "{out}");
    assert_eq!(out["write_points"], true, "{out}");
    assert_eq!(out["write_lines"], true, "{out}");
    let select = out["select"].as_str().unwrap();
    assert!(select.contains("stores no data"), "{select}");
    assert_eq!(d.terminate().code(), Some(0));
    // The client sorts tags and fields; `ok=True` and `1e-07` are its spellings,
    // line protocol keeps the values, Conflux writes them canonically.
    assert_eq!(
        read(d.dir().join("out.lp")),
        "cpu,host=server01,region=us-west count=3i,note=\"say \\\"hi\\\"\",ok=true,usage=0.64 1700000000123000000\n\
         disk\\ space,path=/var/lib\\,x free=-12i,ratio=0.0000001 1700000000124000000\n\
         mem,host=server01 used=42i,avail=1.5 1700000000000000000\n"
    );
}

#[test]
fn python_influxdb_client_v2_with_gzip_and_token() {
    let mut d = Daemon::start(CONFIG);
    let out = client("v2", &d);
    assert_eq!(out["ping"], true, "{out}");
    assert_eq!(out["version"], "1.8.10", "{out}");
    assert_eq!(out["write"], "ok", "{out}\n{}", d.logs());
    assert_eq!(out["health"], "pass", "{out}");
    assert_eq!(d.terminate().code(), Some(0));
    let mut lines: Vec<String> = read(d.dir().join("out.lp"))
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "net,if=eth0 bytes=123456789u 1700000002000000000",
            "weather,location=Brno temperature=-4.5 1700000001000000000",
            "weather,location=Prague humidity=61i,raining=false,station=\"P1\",temperature=25.3 1700000000000000001",
        ]
    );
}

#[test]
fn a_wrong_token_is_refused_with_401() {
    let mut d = Daemon::start(CONFIG);
    let out = client("v2-bad-token", &d);
    // Ping and health answer without credentials (load balancers need them).
    assert_eq!(out["ping"], true, "{out}");
    assert_eq!(out["health"], "pass", "{out}");
    assert_eq!(out["write"], "401 ApiException", "{out}");
    assert_eq!(d.terminate().code(), Some(0));
    assert_eq!(read(d.dir().join("out.lp")), "");
}
