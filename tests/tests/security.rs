//! Issue 9's listener security, through the real daemon with real clients:
//! HTTPS with the CA checked (Python `influxdb-client` and `influxdb`),
//! mutual TLS, Graphite and OpenTSDB over TLS sockets, 401 on every write
//! route, IP allow-lists, a thousand idle or slow connections per listener,
//! gzip bombs, and certificates re-read on SIGHUP.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use conflux_e2e::{
    Daemon, http, http_chunked, metric_value, pickle_payload, python_json, signal, stored,
    wait_until,
};
use conflux_testkit::pki::Pki;
use serde_json::{Value, json};

/// Run `python/tls_clients.py MODE ARGS`.
fn client(mode: &str, args: &Value, d: &Daemon) -> Value {
    python_json("tls_clients.py", &[mode.to_owned(), args.to_string()], d)
}

/// A path as a TOML string.
fn toml_path(p: &Path) -> String {
    serde_json::to_string(p.to_str().unwrap()).unwrap()
}

/// `tls = { … }` with the server certificate of `pki`, and mutual TLS when
/// `client_ca` is given.
fn tls(pki: &Pki, client_ca: Option<&Path>) -> String {
    let mut t = format!(
        "{{ cert_file = {}, key_file = {}",
        toml_path(&pki.server_cert),
        toml_path(&pki.server_key)
    );
    if let Some(ca) = client_ca {
        t.push_str(&format!(", client_ca_file = {}", toml_path(ca)));
    }
    t.push_str(" }");
    t
}

const FILE_SINK: &str = r#"
[sinks.out]
type = "file"
path = "out.lp"
batch_max_age_ms = 10
"#;

/// The measurements of `lines` (up to the first `,` or space: the names
/// these tests write need no escaping).
fn measurements(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .map(|l| {
            let end = l.find([',', ' ']).unwrap_or(l.len());
            l[..end].to_owned()
        })
        .collect()
}

fn denied(d: &Daemon, listener: &str, reason: &str) -> f64 {
    d.metric(
        "conflux_listener_denied_total",
        &[("listener", listener), ("reason", reason)],
    )
}

#[test]
fn influxdb_clients_write_over_https_with_the_ca_checked() {
    let pki = Pki::new();
    let d = Daemon::start(&format!(
        r#"
[listeners.influx]
type = "influx"
address = "127.0.0.1:0"
credentials = [{{ token = "my-token" }}, {{ username = "telegraf", password = "s3cret" }}]
tls = {}
{FILE_SINK}"#,
        tls(&pki, None)
    ));
    let port = d.addr("influx/https").port();

    let v2 = client(
        "v2",
        &json!({"port": port, "ca": pki.ca_cert, "token": "my-token", "measurement": "https_v2"}),
        &d,
    );
    assert_eq!(v2["write"], "ok", "{v2}\n{}", d.logs());

    // The same client trusting another CA refuses the server; nothing arrives.
    let wrong_ca = client(
        "v2",
        &json!({"port": port, "ca": pki.other_ca_cert, "token": "my-token", "measurement": "wrong_ca"}),
        &d,
    );
    assert_eq!(wrong_ca["write"], "error", "{wrong_ca}");
    let e = wrong_ca["error"].as_str().unwrap();
    println!("influxdb-client trusting another CA: {e}");
    assert!(e.contains("CERTIFICATE_VERIFY_FAILED"), "{e}");
    // The handshake the client broke off is counted on the server.
    assert!(
        wait_until(Duration::from_secs(10), || denied(
            &d,
            "influx",
            "tls_handshake"
        ) >= 1.0),
        "{}",
        d.metrics()
    );

    let v1 = client(
        "v1",
        &json!({"port": port, "ca": pki.ca_cert, "username": "telegraf", "password": "s3cret", "measurement": "https_v1"}),
        &d,
    );
    assert_eq!(v1["write"], true, "{v1}");
    let v1_bad = client(
        "v1",
        &json!({"port": port, "ca": pki.other_ca_cert, "username": "telegraf", "password": "s3cret", "measurement": "wrong_ca_v1"}),
        &d,
    );
    assert_eq!(v1_bad["write"], "error", "{v1_bad}");
    let e = v1_bad["error"].as_str().unwrap();
    println!("influxdb (v1) trusting another CA: {e}");
    assert!(e.contains("CERTIFICATE_VERIFY_FAILED"), "{e}");

    assert_eq!(
        stored(d),
        vec![
            "https_v1,host=h3 value=3i 1700000002000000000",
            "https_v2,host=h1 value=1.5 1700000000000000000",
            "https_v2,host=h2 value=2i 1700000001000000000",
        ]
    );
}

#[test]
fn mutual_tls_refuses_clients_without_a_trusted_certificate() {
    let pki = Pki::new();
    let stranger = Pki::new();
    let d = Daemon::start(&format!(
        r#"
[listeners.influx]
type = "influx"
address = "127.0.0.1:0"
tls = {}
{FILE_SINK}"#,
        tls(&pki, Some(pki.ca_cert.as_path()))
    ));
    let port = d.addr("influx/https").port();
    let post = |measurement: &str, cert: Option<&Pki>| {
        let mut args = json!({
            "port": port,
            "path": "/write?db=x",
            "ca": pki.ca_cert,
            "body": format!("{measurement},host=a value=1 1700000000000000000\n"),
        });
        if let Some(c) = cert {
            args["cert"] = json!(c.client_cert);
            args["key"] = json!(c.client_key);
        }
        client("post", &args, &d)
    };

    let with_cert = post("mtls_ok", Some(&pki));
    assert_eq!(with_cert["status"], 204, "{with_cert}\n{}", d.logs());

    let without = post("mtls_none", None);
    assert!(without["status"].is_null(), "{without}");
    let e = without["error"].as_str().unwrap();
    println!("mutual TLS, no client certificate: {e}");
    assert!(e.contains("SSL") || e.contains("Connection"), "{e}");

    // A certificate signed by a CA the listener does not trust.
    let foreign = post("mtls_foreign", Some(&stranger));
    assert!(foreign["status"].is_null(), "{foreign}");
    println!(
        "mutual TLS, foreign client certificate: {}",
        foreign["error"]
    );

    assert!(
        wait_until(Duration::from_secs(10), || denied(
            &d,
            "influx",
            "tls_handshake"
        ) == 2.0),
        "{}",
        d.metrics()
    );
    println!(
        "mutual TLS: denied tls_handshake = {}",
        denied(&d, "influx", "tls_handshake")
    );
    assert_eq!(
        stored(d),
        vec!["mtls_ok,host=a value=1 1700000000000000000"]
    );
}

#[test]
fn graphite_and_opentsdb_over_tls_with_python_ssl_sockets() {
    let pki = Pki::new();
    let d = Daemon::start(&format!(
        r#"
[listeners.graphite]
type = "graphite"
address = "127.0.0.1:0"
tls = {graphite_tls}
[listeners.opentsdb]
type = "opentsdb"
address = "127.0.0.1:0"
tls = {tls}
{FILE_SINK}"#,
        tls = tls(&pki, None),
        graphite_tls = tls(&pki, None).replace(" }", ", handshake_timeout_ms = 1500 }"),
    ));
    let graphite = d.addr("graphite/tcp").port();
    let opentsdb = d.addr("opentsdb/tcp").port();

    let g = client(
        "lines",
        &json!({"port": graphite, "ca": pki.ca_cert,
                "data": "tls.graphite.one 1.5 1700000000\ntls.graphite.two;dc=eu 2 1700000001\n"}),
        &d,
    );
    assert_eq!(g["sent"], true, "{g}\n{}", d.logs());
    assert!(g["version"].as_str().unwrap().starts_with("TLS"), "{g}");

    // Telnet over TLS, with a reply coming back through it.
    let t = client(
        "lines",
        &json!({"port": opentsdb, "ca": pki.ca_cert,
                "data": "put tls.telnet 1700000002 3 host=a\nversion\n",
                "expect": "OpenTSDB-compatible gateway\n"}),
        &d,
    );
    assert_eq!(t["sent"], true, "{t}\n{}", d.logs());
    assert!(
        t["reply"].as_str().unwrap().starts_with("net.opentsdb "),
        "{t}"
    );

    // HTTPS on the same port: the first decrypted byte picks HTTP.
    let h = client(
        "post",
        &json!({"port": opentsdb, "path": "/api/put", "ca": pki.ca_cert,
                "body": r#"{"metric":"tls.http","timestamp":1700000003,"value":4,"tags":{"host":"b"}}"#}),
        &d,
    );
    assert_eq!(h["status"], 204, "{h}\n{}", d.logs());

    // Plaintext on a TLS port is a failed handshake: counted, nothing
    // stored. Clients that never start a handshake are cut off by
    // `handshake_timeout_ms` (the idle timeout is the default 5 minutes).
    let mut plain = TcpStream::connect(d.addr("graphite/tcp")).unwrap();
    let _ = plain.write_all(b"plain.on.tls 1 1700000004\n");
    let silent: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(d.addr("graphite/tcp")).unwrap())
        .collect();
    for mut s in std::iter::once(plain).chain(silent) {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 256];
        // The server answers with an alert (or nothing) and closes.
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert!(
                        !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                        "not closed by the server: {e}"
                    );
                    break;
                }
            }
        }
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            let m = d.metrics();
            let denied = metric_value(
                &m,
                "conflux_listener_denied_total",
                &[("listener", "graphite"), ("reason", "tls_handshake")],
            );
            let timed_out = metric_value(
                &m,
                "conflux_listener_timeouts_total",
                &[("listener", "graphite"), ("reason", "handshake")],
            );
            denied == 1.0 && timed_out == 10.0
        }),
        "{}",
        d.metrics()
    );

    assert_eq!(
        stored(d),
        vec![
            "tls.graphite.one value=1.5 1700000000000000000",
            "tls.graphite.two,dc=eu value=2 1700000001000000000",
            "tls.http,host=b value=4i 1700000003000000000",
            "tls.telnet,host=a value=3i 1700000002000000000",
        ]
    );
}

/// A request with `Authorization: Basic user:password`.
fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    // base64 by hand: the test crate has no base64 dependency.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in raw.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

/// How a request authenticates: a header, or `u`/`p` in the query string.
#[derive(Clone)]
enum Auth {
    None,
    Header(String),
    Query(&'static str, &'static str),
}

/// One write route: where, and a body for a measurement name.
struct Route {
    listener: &'static str,
    path: &'static str,
    body: fn(&str) -> String,
    /// Ways in that must work.
    right: Vec<Auth>,
    /// `/query` stores nothing.
    stores: bool,
}

/// The HTTP address of a listener (OpenTSDB serves HTTP on its one TCP port).
fn http_addr(d: &Daemon, listener: &str) -> SocketAddr {
    match listener {
        "opentsdb" => d.addr("opentsdb/tcp"),
        l => d.addr(&format!("{l}/http")),
    }
}

fn send(d: &Daemon, r: &Route, auth: &Auth, name: &str) -> conflux_e2e::Response {
    let addr = http_addr(d, r.listener);
    let mut path = r.path.to_owned();
    let mut headers: Vec<(&str, &str)> = Vec::new();
    let header;
    match auth {
        Auth::None => {}
        Auth::Header(h) => {
            header = h.clone();
            headers.push(("Authorization", &header));
        }
        Auth::Query(u, p) => {
            let sep = if path.contains('?') { '&' } else { '?' };
            path.push_str(&format!("{sep}u={u}&p={p}"));
        }
    }
    http(addr, "POST", &path, &headers, (r.body)(name).as_bytes())
}

#[test]
fn every_write_route_answers_401_without_the_right_credentials() {
    let d = Daemon::start_with_env(
        &format!(
            r#"
[listeners.influx]
type = "influx"
address = "127.0.0.1:0"
credentials = [{{ username = "telegraf", password = "${{SEC_PW}}" }}, {{ token = "tok-influx" }}]
[listeners.kairosdb]
type = "kairosdb"
address = "127.0.0.1:0"
credentials = [{{ username = "kuser", password = "kpass" }}, {{ token = "tok-kairos" }}]
[listeners.opentsdb]
type = "opentsdb"
address = "127.0.0.1:0"
credentials = [{{ username = "ouser", password = "opass" }}, {{ token = "tok-tsdb" }}]
{FILE_SINK}"#
        ),
        &[("SEC_PW", "pw-from-env")],
    );
    // The password came from the environment: the literal text is wrong.
    let influx_users = vec![
        Auth::Header(basic("telegraf", "pw-from-env")),
        Auth::Query("telegraf", "pw-from-env"),
        Auth::Header("Token telegraf:pw-from-env".to_owned()),
        Auth::Header("Token tok-influx".to_owned()),
        Auth::Header("Bearer tok-influx".to_owned()),
    ];
    let lp: fn(&str) -> String = |m| format!("{m},host=a value=1 1700000000000000000\n");
    let routes = [
        Route {
            listener: "influx",
            path: "/write?db=x",
            body: lp,
            right: influx_users.clone(),
            stores: true,
        },
        Route {
            listener: "influx",
            path: "/api/v2/write?bucket=b&org=o",
            body: lp,
            right: influx_users.clone(),
            stores: true,
        },
        Route {
            listener: "influx",
            path: "/restapi/telegraf?db=x",
            body: lp,
            right: influx_users.clone(),
            stores: true,
        },
        Route {
            listener: "influx",
            path: "/query?q=CREATE%20DATABASE%20x",
            body: |_| String::new(),
            right: influx_users.clone(),
            stores: false,
        },
        Route {
            listener: "kairosdb",
            path: "/api/v1/datapoints",
            body: |m| {
                format!(
                    r#"[{{"name":"{m}","datapoints":[[1700000000000,1]],"tags":{{"host":"a"}}}}]"#
                )
            },
            right: vec![
                Auth::Header(basic("kuser", "kpass")),
                Auth::Header("Token tok-kairos".to_owned()),
                Auth::Header("Bearer tok-kairos".to_owned()),
            ],
            stores: true,
        },
        Route {
            listener: "opentsdb",
            path: "/api/put",
            body: |m| {
                format!(
                    r#"{{"metric":"{m}","timestamp":1700000000,"value":1,"tags":{{"host":"a"}}}}"#
                )
            },
            right: vec![
                Auth::Header(basic("ouser", "opass")),
                Auth::Query("ouser", "opass"),
                Auth::Header("Token tok-tsdb".to_owned()),
                Auth::Header("Bearer tok-tsdb".to_owned()),
            ],
            stores: true,
        },
    ];
    let wrong = [
        Auth::None,
        Auth::Header(basic("telegraf", "${SEC_PW}")),
        Auth::Header(basic("kuser", "wrong")),
        Auth::Header(basic("ouser", "opassx")),
        Auth::Query("telegraf", "wrong"),
        Auth::Header("Token wrong".to_owned()),
        Auth::Header("Token telegraf:wrong".to_owned()),
        Auth::Header("Bearer wrong".to_owned()),
        Auth::Header("Bearer kpass".to_owned()),
        // A scheme nobody speaks is no credential at all.
        Auth::Header("Digest username=\"telegraf\"".to_owned()),
        Auth::Header("Basic !!!not-base64".to_owned()),
    ];

    let mut expected = BTreeSet::new();
    let mut sent_401 = std::collections::BTreeMap::<&str, f64>::new();
    for (i, r) in routes.iter().enumerate() {
        for (j, auth) in wrong.iter().enumerate() {
            let resp = send(&d, r, auth, &format!("denied_{i}_{j}"));
            assert_eq!(
                resp.status, 401,
                "{} {} with wrong credential #{j}: {resp:?}",
                r.listener, r.path
            );
            *sent_401.entry(r.listener).or_default() += 1.0;
        }
        for (j, auth) in r.right.iter().enumerate() {
            let name = format!("allowed_{i}_{j}");
            let resp = send(&d, r, auth, &name);
            assert!(
                (200..300).contains(&resp.status),
                "{} {} with right credential #{j}: {resp:?}\n{}",
                r.listener,
                r.path,
                d.logs()
            );
            if r.stores {
                expected.insert(name);
            }
        }
    }

    // Health and version routes stay open for load balancers.
    for (listener, path) in [
        ("influx", "/ping"),
        ("influx", "/health"),
        ("influx", "/api/v2/health"),
        ("influx", "/ready"),
        ("kairosdb", "/api/v1/health/check"),
        ("kairosdb", "/api/v1/health/status"),
        ("kairosdb", "/api/v1/version"),
        ("opentsdb", "/api/version"),
    ] {
        let r = http(http_addr(&d, listener), "GET", path, &[], b"");
        assert!((200..300).contains(&r.status), "{listener} {path}: {r:?}");
    }

    let m = d.metrics();
    for (listener, n) in &sent_401 {
        let counted = metric_value(
            &m,
            "conflux_listener_requests_total",
            &[("listener", listener), ("status", "401")],
        );
        println!("{listener}: {n} requests refused, requests_total{{status=\"401\"}} = {counted}");
        assert_eq!(counted, *n, "{listener}\n{m}");
    }
    assert_eq!(measurements(&stored(d)), expected);
}

#[test]
fn allow_lists_drop_tcp_and_udp_from_other_networks() {
    let d = Daemon::start(&format!(
        r#"
[listeners.deny]
type = "graphite"
address = "127.0.0.1:0"
udp_address = "127.0.0.1:0"
allowed_networks = ["10.0.0.0/8", "192.0.2.7"]
[listeners.allow]
type = "graphite"
address = "127.0.0.1:0"
udp_address = "127.0.0.1:0"
allowed_networks = ["10.0.0.0/8", "127.0.0.0/8"]
[listeners.influx_deny]
type = "influx"
address = "127.0.0.1:0"
allowed_networks = ["10.0.0.0/8"]
[listeners.influx_allow]
type = "influx"
address = "127.0.0.1:0"
allowed_networks = ["127.0.0.1"]
{FILE_SINK}"#
    ));
    // HTTP: a refused client gets no answer at all, an allowed one writes.
    let mut s = TcpStream::connect(d.addr("influx_deny/http")).unwrap();
    let _ = s.write_all(
        b"POST /write?db=x HTTP/1.1\r\nHost: a\r\nContent-Length: 39\r\n\r\ndeny_http,host=a value=1 1700000000000\n",
    );
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut answer = Vec::new();
    match s.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) => assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "not closed: {e}"
        ),
    }
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let r = http(
        d.addr("influx_allow/http"),
        "POST",
        "/write?db=x",
        &[],
        b"allow_http,host=a value=1 1700000000000000000\n",
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert!(
        wait_until(Duration::from_secs(10), || denied(
            &d,
            "influx_deny",
            "not_allowed"
        ) == 1.0),
        "{}",
        d.metrics()
    );
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for listener in ["deny", "allow"] {
        for i in 0..3 {
            let mut s = TcpStream::connect(d.addr(&format!("{listener}/tcp"))).unwrap();
            let _ = s.write_all(format!("{listener}.tcp.{i} {i} 1700000000\n").as_bytes());
            let _ = s.shutdown(std::net::Shutdown::Write);
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            // Refused connections are closed at once; allowed ones after our
            // end of stream. Either way the server closes: EOF or a reset,
            // never a timeout.
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                Ok(0) => {}
                Err(e) => assert!(
                    !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                    "{listener}: not closed: {e}"
                ),
                Ok(n) => panic!("{listener}: unexpected reply {:?}", &buf[..n]),
            }
            udp.send_to(
                format!("{listener}.udp.{i} {i} 1700000000\n").as_bytes(),
                d.addr(&format!("{listener}/udp")),
            )
            .unwrap();
        }
    }
    assert!(
        wait_until(Duration::from_secs(20), || {
            denied(&d, "deny", "not_allowed") >= 6.0
                && d.metric(
                    "conflux_listener_received_metrics_total",
                    &[("listener", "allow")],
                ) >= 6.0
        }),
        "{}",
        d.metrics()
    );
    let m = d.metrics();
    let deny_count = metric_value(
        &m,
        "conflux_listener_denied_total",
        &[("listener", "deny"), ("reason", "not_allowed")],
    );
    println!("allow-list: denied not_allowed = {deny_count} (3 connections, 3 datagrams)");
    assert_eq!(deny_count, 6.0, "{m}");
    assert_eq!(
        metric_value(
            &m,
            "conflux_listener_denied_total",
            &[("listener", "allow")]
        ),
        0.0,
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "conflux_listener_received_metrics_total",
            &[("listener", "deny")]
        ),
        0.0,
        "{m}"
    );
    assert_eq!(
        stored(d),
        vec![
            "allow.tcp.0 value=0 1700000000000000000",
            "allow.tcp.1 value=1 1700000000000000000",
            "allow.tcp.2 value=2 1700000000000000000",
            "allow.udp.0 value=0 1700000000000000000",
            "allow.udp.1 value=1 1700000000000000000",
            "allow.udp.2 value=2 1700000000000000000",
            "allow_http,host=a value=1 1700000000000000000",
        ]
    );
}

// ---------------------------------------------------------------------------
// Slow and idle clients

/// Connections to open to one listener: (how many, what each trickles).
type Groups = Vec<(usize, &'static [u8])>;

/// One client connection of the slow-client test.
struct Slow {
    s: TcpStream,
    listener: &'static str,
    /// What it trickles, one byte per tick; empty for an idle connection.
    payload: &'static [u8],
    sent: usize,
    closed: bool,
}

const SLOW_HTTP: &[u8] = b"POST /write?db=slow HTTP/1.1\r\nHost: localhost\r\nUser-Agent: a client that sends one byte at a time and never finishes its request head\r\nContent-Length: 30\r\n\r\n";
const SLOW_KAIROSDB: &[u8] = b"POST /api/v1/datapoints HTTP/1.1\r\nHost: localhost\r\nUser-Agent: a client that sends one byte at a time and never finishes its request head\r\n\r\n";
const SLOW_OPENTSDB_HTTP: &[u8] = b"POST /api/put HTTP/1.1\r\nHost: localhost\r\nUser-Agent: a client that sends one byte at a time and never finishes its request head\r\n\r\n";
const SLOW_GRAPHITE: &[u8] = b"slow.graphite.metric.from.a.client.that.sends.one.byte.at.a.time.and.never.finishes 1 1700000000\n";
const SLOW_TELNET: &[u8] =
    b"put slow.telnet.metric.from.a.client.that.sends.one.byte.at.a.time 1700000000 1 host=a\n";
const SLOW_LINE_PROTOCOL: &[u8] =
    b"slow_influx,host=a,note=one_byte_at_a_time_and_never_finished value=1 1700000000000000000\n";
/// A pickle frame announcing 200 bytes, of which a slow client sends a few.
const SLOW_PICKLE: &[u8] = &{
    let mut f = [b'x'; 204];
    f[0] = 0;
    f[1] = 0;
    f[2] = 0;
    f[3] = 200;
    f
};

/// A length-prefixed pickle frame of one point.
fn pickle_frame(path: &str, ts: i32, value: f64) -> Vec<u8> {
    let p = pickle_payload(path, ts, value);
    let mut f = (p.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&p);
    f
}

/// Write `data` on a fresh connection, half-close, and wait for the server
/// to close (so that what was sent has been read).
fn send_and_close(addr: SocketAddr, data: &[u8]) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(data).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
}

/// Whether the server closed `c`: a read that returns EOF or an error other
/// than "would block". Bytes the server sends are read and ignored.
fn server_closed(c: &mut Slow) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match c.s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// Trickle one byte per open slow connection every 200 ms and watch every
/// connection until the server has closed them all, or `limit` passes.
/// Returns the connections still open then, by listener.
fn drive(mut conns: Vec<Slow>, limit: Duration) -> Vec<(&'static str, usize)> {
    let deadline = Instant::now() + limit;
    loop {
        for c in conns.iter_mut().filter(|c| !c.closed) {
            if server_closed(c) {
                c.closed = true;
                continue;
            }
            if c.sent < c.payload.len() {
                match c.s.write(&c.payload[c.sent..=c.sent]) {
                    Ok(n) => c.sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => c.closed = true,
                }
            }
        }
        let open = conns.iter().filter(|c| !c.closed).count();
        if open == 0 || Instant::now() > deadline {
            let mut left: Vec<(&'static str, usize)> = Vec::new();
            for c in conns.iter().filter(|c| !c.closed) {
                match left.iter_mut().find(|(l, _)| *l == c.listener) {
                    Some((_, n)) => *n += 1,
                    None => left.push((c.listener, 1)),
                }
            }
            return left;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_thousand_idle_or_slow_connections_per_listener_are_cut_off_by_the_timeouts() {
    // Short timeouts, and room for the slow clients plus a normal one.
    let limits = "max_connections = 1100\nidle_timeout_ms = 10000";
    let d = Daemon::start(&format!(
        r#"
[listeners.ih]
type = "influx"
address = "127.0.0.1:0"
header_read_timeout_ms = 8000
{limits}
[listeners.it]
type = "influx"
address = "127.0.0.1:0"
tcp_address = "127.0.0.1:0"
line_timeout_ms = 8000
{limits}
[listeners.kh]
type = "kairosdb"
address = "127.0.0.1:0"
header_read_timeout_ms = 8000
{limits}
[listeners.gt]
type = "graphite"
address = "127.0.0.1:0"
line_timeout_ms = 8000
{limits}
[listeners.gp]
type = "graphite"
pickle_address = "127.0.0.1:0"
line_timeout_ms = 8000
{limits}
[listeners.ot]
type = "opentsdb"
address = "127.0.0.1:0"
header_read_timeout_ms = 8000
line_timeout_ms = 8000
{limits}
{FILE_SINK}"#
    ));
    // (listener, address, [(how many, payload)]).
    let plan: Vec<(&str, SocketAddr, Groups)> = vec![
        ("ih", d.addr("ih/http"), vec![(500, b""), (500, SLOW_HTTP)]),
        (
            "kh",
            d.addr("kh/http"),
            vec![(500, b""), (500, SLOW_KAIROSDB)],
        ),
        (
            "it",
            d.addr("it/tcp"),
            vec![(500, b""), (500, SLOW_LINE_PROTOCOL)],
        ),
        (
            "gt",
            d.addr("gt/tcp"),
            vec![(500, b""), (500, SLOW_GRAPHITE)],
        ),
        (
            "gp",
            d.addr("gp/pickle"),
            vec![(500, b""), (500, SLOW_PICKLE)],
        ),
        (
            "ot",
            d.addr("ot/tcp"),
            vec![(400, b""), (300, SLOW_TELNET), (300, SLOW_OPENTSDB_HTTP)],
        ),
    ];
    // One thread per listener opens its connections, as many clients would,
    // and then trickles their bytes and watches them until the server closes
    // them all.
    let started = Instant::now();
    let (opened_tx, opened) = std::sync::mpsc::channel::<usize>();
    let drivers: Vec<_> = plan
        .iter()
        .map(|(listener, addr, groups)| {
            let (listener, addr, groups) = (*listener, *addr, groups.clone());
            let opened_tx = opened_tx.clone();
            std::thread::spawn(move || {
                let mut conns = Vec::new();
                for (n, payload) in groups {
                    for _ in 0..n {
                        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                            .unwrap_or_else(|e| panic!("connect to {listener}: {e}"));
                        s.set_nonblocking(true).unwrap();
                        conns.push(Slow {
                            s,
                            listener,
                            payload,
                            sent: 0,
                            closed: false,
                        });
                    }
                }
                opened_tx.send(conns.len()).unwrap();
                drive(conns, Duration::from_secs(40))
            })
        })
        .collect();
    let mut total = 0;
    for _ in &plan {
        total += opened
            .recv_timeout(Duration::from_secs(60))
            .expect("a client thread failed to open its connections");
    }
    println!(
        "slow clients: {total} connections open after {:?}",
        started.elapsed()
    );

    // While they are open, normal clients write.
    let lp = b"normal_ih,host=a value=1 1700000000000000000\n";
    let r = http(d.addr("ih/http"), "POST", "/write?db=x", &[], lp);
    assert_eq!(r.status, 204, "{r:?}");
    let r = http(
        d.addr("kh/http"),
        "POST",
        "/api/v1/datapoints",
        &[],
        br#"[{"name":"normal_kh","datapoints":[[1700000000000,1]],"tags":{"host":"a"}}]"#,
    );
    assert_eq!(r.status, 204, "{r:?}");
    let r = http(
        d.addr("ot/tcp"),
        "POST",
        "/api/put",
        &[],
        br#"{"metric":"normal_ot_http","timestamp":1700000000,"value":1,"tags":{"host":"a"}}"#,
    );
    assert_eq!(r.status, 204, "{r:?}");
    send_and_close(
        d.addr("ot/tcp"),
        b"put normal_ot_telnet 1700000000 1 host=a\n",
    );
    send_and_close(d.addr("gt/tcp"), b"normal_gt 1 1700000000\n");
    send_and_close(
        d.addr("gp/pickle"),
        &pickle_frame("normal_gp", 1_700_000_000, 1.0),
    );
    send_and_close(
        d.addr("it/tcp"),
        b"normal_it,host=a value=1 1700000000000000000\n",
    );
    // The premise: the slow and idle connections were still open meanwhile.
    let m = d.metrics();
    for (listener, _, _) in &plan {
        let open = metric_value(
            &m,
            "conflux_listener_connections_open",
            &[("listener", listener)],
        );
        println!("{listener}: {open} connections open after the normal writes");
        assert!(
            open >= 1000.0,
            "{listener}: only {open} connections open when the normal client wrote: \
             the machine opened the clients too slowly for the 8 s timeouts"
        );
    }

    let left: Vec<(&str, usize)> = drivers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    println!(
        "slow clients: every connection closed by the server after {:?} (still open: {left:?})",
        started.elapsed()
    );
    assert!(left.is_empty(), "not closed by the server: {left:?}");

    let gauges_down = wait_until(Duration::from_secs(20), || {
        let m = d.metrics();
        plan.iter().all(|(l, _, _)| {
            metric_value(&m, "conflux_listener_connections_open", &[("listener", l)]) <= 1.0
        })
    });
    let m = d.metrics();
    let count = |l: &str, reason: &str| {
        metric_value(
            &m,
            "conflux_listener_timeouts_total",
            &[("listener", l), ("reason", reason)],
        )
    };
    for (listener, _, _) in &plan {
        println!(
            "{listener}: connections_open = {}, timeouts idle = {}, header = {}, line = {}, first_byte = {}",
            metric_value(
                &m,
                "conflux_listener_connections_open",
                &[("listener", listener)]
            ),
            count(listener, "idle"),
            count(listener, "header"),
            count(listener, "line"),
            count(listener, "first_byte"),
        );
    }
    assert!(gauges_down, "connections_open did not come back down:\n{m}");
    let expected = [
        ("ih", "idle", 500.0),
        ("ih", "header", 500.0),
        ("kh", "idle", 500.0),
        ("kh", "header", 500.0),
        ("it", "idle", 500.0),
        ("it", "line", 500.0),
        ("gt", "idle", 500.0),
        ("gt", "line", 500.0),
        // Pickle: idle before a length prefix, or a frame that does not
        // complete in `line_timeout_ms`.
        ("gp", "idle", 500.0),
        ("gp", "line", 500.0),
        ("ot", "first_byte", 400.0),
        ("ot", "line", 300.0),
        ("ot", "header", 300.0),
    ];
    for (listener, reason, n) in expected {
        assert_eq!(count(listener, reason), n, "{listener} {reason}\n{m}");
    }

    let lines = stored(d);
    assert_eq!(
        measurements(&lines),
        [
            "normal_gp",
            "normal_gt",
            "normal_ih",
            "normal_it",
            "normal_kh",
            "normal_ot_http",
            "normal_ot_telnet"
        ]
        .into_iter()
        .map(str::to_owned)
        .collect(),
        "{lines:?}"
    );
}

// ---------------------------------------------------------------------------
// Gzip bombs

/// A valid gzip stream of `mib` MiB of spaces, built without holding them:
/// one MiB deflated and sync-flushed (byte-aligned, back-references only to
/// spaces) repeated, an empty final block, and the trailer with the CRC of
/// the whole combined from the CRC of one MiB.
fn gzip_bomb(mib: u32) -> Vec<u8> {
    let block = vec![b' '; 1 << 20];
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut deflated = Vec::with_capacity(64 * 1024);
    while c.total_in() < block.len() as u64 {
        let at = c.total_in() as usize;
        deflated.reserve(64 * 1024);
        c.compress_vec(&block[at..], &mut deflated, flate2::FlushCompress::Sync)
            .unwrap();
    }
    let mut one = flate2::Crc::new();
    one.update(&block);
    let mut crc = flate2::Crc::new();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for _ in 0..mib {
        out.extend_from_slice(&deflated);
        crc.combine(&one);
    }
    // Final fixed-Huffman block holding only its end-of-block code.
    out.extend_from_slice(&[0x03, 0x00]);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(mib << 20).to_le_bytes());
    out
}

/// One request, sent when called.
type Shot<'a> = Box<dyn Fn() -> conflux_e2e::Response + 'a>;

#[test]
fn gzip_bombs_get_413_without_the_daemon_growing() {
    // The construction is a valid gzip stream (checked small).
    let small = gzip_bomb(3);
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&small[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert!(plain.len() == 3 << 20 && plain.iter().all(|&b| b == b' '));

    let bomb = gzip_bomb(1000);
    println!(
        "gzip bomb: {} bytes compressed, {} bytes decompressed",
        bomb.len(),
        1000u64 << 20
    );
    assert!(
        bomb.len() < 1 << 20,
        "the bomb must pass max_body_bytes so that the decompressed limit is what stops it"
    );
    let limits = "max_body_bytes = 1048576\nmax_decompressed_body_bytes = 8388608";
    let d = Daemon::start(&format!(
        r#"
[listeners.influx]
type = "influx"
address = "127.0.0.1:0"
{limits}
[listeners.kairosdb]
type = "kairosdb"
address = "127.0.0.1:0"
{limits}
[listeners.opentsdb]
type = "opentsdb"
address = "127.0.0.1:0"
{limits}
{FILE_SINK}"#
    ));
    let influx = d.addr("influx/http");
    let kairosdb = d.addr("kairosdb/http");
    let opentsdb = d.addr("opentsdb/tcp");
    let gz = [("Content-Encoding", "gzip")];

    // More than the raw limit once decompressed passes: the decompressed
    // limit is the one that applies to it.
    let many: String = (0..40_000)
        .map(|i| format!("gz_ok,host=a value={i} 1700000000000000000\n"))
        .collect();
    assert!(many.len() > 1 << 20);
    let r = http(
        influx,
        "POST",
        "/write?db=x",
        &gz,
        &conflux_e2e::gzip(many.as_bytes()),
    );
    assert_eq!(r.status, 204, "{r:?}");

    let before = d.rss_kib();
    let shots: Vec<(&str, Shot)> = vec![
        (
            "influx v2",
            Box::new(|| http(influx, "POST", "/api/v2/write?bucket=b", &gz, &bomb)),
        ),
        (
            "influx v1",
            Box::new(|| http(influx, "POST", "/write?db=x", &gz, &bomb)),
        ),
        (
            "influx v1 chunked",
            Box::new(|| http_chunked(influx, "/write?db=x", &gz, &bomb, 64 * 1024)),
        ),
        (
            "kairosdb",
            Box::new(|| http(kairosdb, "POST", "/api/v1/datapoints", &gz, &bomb)),
        ),
        (
            "kairosdb chunked",
            Box::new(|| http_chunked(kairosdb, "/api/v1/datapoints", &gz, &bomb, 64 * 1024)),
        ),
        (
            "opentsdb",
            Box::new(|| http(opentsdb, "POST", "/api/put", &gz, &bomb)),
        ),
        (
            "opentsdb chunked",
            Box::new(|| http_chunked(opentsdb, "/api/put", &gz, &bomb, 64 * 1024)),
        ),
    ];
    let mut peak = before;
    let mut bombs = Vec::new();
    for (what, shoot) in &shots {
        let r = shoot();
        peak = peak.max(d.rss_kib());
        assert_eq!(r.status, 413, "{what}: {r:?}");
        bombs.push((*what, r));
    }
    // The answers that name the limit name the decompressed one.
    for (what, r) in bombs.iter().filter(|(w, _)| !w.starts_with("influx v1")) {
        assert!(r.body.contains("8388608"), "{what}: {}", r.body);
    }
    let after = d.rss_kib();
    println!("gzip bomb: daemon RSS {before} KiB before, {after} KiB after, peak seen {peak} KiB");
    assert!(
        after.max(peak) < before + 64 * 1024,
        "RSS grew from {before} KiB to {} KiB",
        after.max(peak)
    );

    // Still serving.
    let r = http(
        influx,
        "POST",
        "/write?db=x",
        &[],
        b"after_bomb,host=a value=1 1700000000000000000\n",
    );
    assert_eq!(r.status, 204, "{r:?}");
    let r = http(
        kairosdb,
        "POST",
        "/api/v1/datapoints",
        &[],
        br#"[{"name":"after_bomb_kairosdb","datapoints":[[1700000000000,1]],"tags":{"host":"a"}}]"#,
    );
    assert_eq!(r.status, 204, "{r:?}");
    let r = http(
        opentsdb,
        "POST",
        "/api/put",
        &[],
        br#"{"metric":"after_bomb_opentsdb","timestamp":1700000000,"value":1,"tags":{"host":"a"}}"#,
    );
    assert_eq!(r.status, 204, "{r:?}");
    let lines = stored(d);
    assert_eq!(lines.len(), 40_003);
    assert_eq!(
        measurements(&lines),
        [
            "after_bomb",
            "after_bomb_kairosdb",
            "after_bomb_opentsdb",
            "gz_ok"
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    );
}

// ---------------------------------------------------------------------------
// Certificate reload

fn log_count(d: &Daemon, needle: &str) -> usize {
    d.logs().lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn sighup_reloads_certificates_and_keeps_the_old_one_when_the_new_is_broken() {
    let old = Pki::new();
    let new = Pki::new();
    let files = tempfile::tempdir().unwrap();
    let cert = files.path().join("server.pem");
    let key = files.path().join("server.key");
    std::fs::copy(&old.server_cert, &cert).unwrap();
    std::fs::copy(&old.server_key, &key).unwrap();
    let tls = format!(
        "{{ cert_file = {}, key_file = {} }}",
        toml_path(&cert),
        toml_path(&key)
    );
    let d = Daemon::start(&format!(
        r#"
[listeners.influx]
type = "influx"
address = "127.0.0.1:0"
tls = {tls}
[listeners.graphite]
type = "graphite"
address = "127.0.0.1:0"
tls = {tls}
[admin]
address = "127.0.0.1:0"
tls = {tls}
{FILE_SINK}"#
    ));
    let ports = [
        ("influx", d.addr("influx/https").port()),
        ("graphite", d.addr("graphite/tcp").port()),
        ("admin", d.admin().port()),
    ];
    // Handshakes with each port trusting `ca`: whether each succeeded.
    let trusted = |ca: &Path| -> Vec<(&str, bool)> {
        let hs: Vec<Value> = ports
            .iter()
            .map(|(_, p)| json!({"port": p, "ca": ca}))
            .collect();
        let out = client("connect", &json!({ "handshakes": hs }), &d);
        ports
            .iter()
            .zip(out["results"].as_array().unwrap())
            .map(|((name, _), r)| (*name, r["ok"] == true))
            .collect()
    };
    let all = |ok: bool| -> Vec<(&str, bool)> { ports.iter().map(|(n, _)| (*n, ok)).collect() };
    let post = |ca: &Path, m: &str| {
        client(
            "post",
            &json!({"port": ports[0].1, "path": "/write?db=x", "ca": ca,
                    "body": format!("{m},host=a value=1 1700000000000000000\n")}),
            &d,
        )
    };

    assert_eq!(trusted(&old.ca_cert), all(true), "{}", d.logs());
    assert_eq!(trusted(&new.ca_cert), all(false));

    // A renewed certificate (another CA): SIGHUP, and new connections see it.
    std::fs::copy(&new.server_cert, &cert).unwrap();
    std::fs::copy(&new.server_key, &key).unwrap();
    signal(d.pid(), "HUP");
    assert!(
        wait_until(Duration::from_secs(20), || {
            log_count(&d, "TLS certificate reloaded") >= ports.len()
        }),
        "{}",
        d.logs()
    );
    assert_eq!(trusted(&new.ca_cert), all(true), "{}", d.logs());
    assert_eq!(trusted(&old.ca_cert), all(false));
    assert_eq!(post(&new.ca_cert, "after_reload")["status"], 204);

    // A broken file: the reload fails, the certificate in use stays.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    signal(d.pid(), "HUP");
    assert!(
        wait_until(Duration::from_secs(20), || {
            log_count(&d, "TLS certificate reload failed") >= ports.len()
        }),
        "{}",
        d.logs()
    );
    assert_eq!(trusted(&new.ca_cert), all(true), "{}", d.logs());
    assert_eq!(post(&new.ca_cert, "after_failed_reload")["status"], 204);

    assert_eq!(
        measurements(&stored(d)),
        ["after_failed_reload", "after_reload"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
}

/// Send the head of a POST with `Content-Length: total` and `first` bytes
/// of its body, leaving the rest unsent.
fn open_post(addr: SocketAddr, path: &str, total: usize, first: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body_bytes(first)).unwrap();
    s
}

/// `n` bytes of line protocol, whole lines (`m v=1i`), padded with one
/// last line of the right length.
fn body_bytes(n: usize) -> Vec<u8> {
    let mut b = b"m v=1i\n".repeat(n / 7);
    b.resize(n, b'\n');
    b
}

fn status_of(s: &mut TcpStream) -> (u16, String) {
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn bodies_in_flight_share_a_budget_and_the_overflow_gets_503() {
    let d = Daemon::start(
        r#"
[listeners.in]
type = "influx"
address = "127.0.0.1:0"
max_body_bytes = 4000000
max_inflight_body_bytes = 1000000
[sinks.out]
type = "file"
path = "out.lp"
batch_max_age_ms = 5
"#,
    );
    let addr = d.addr("in");
    // A slow client announces 2 MB and sends 700 kB: its buffer takes the
    // whole 1 MB budget.
    let mut slow = open_post(addr, "/write?db=x", 2_000_000, 700_000);
    // Loopback: the daemon has read those bytes long before this.
    std::thread::sleep(Duration::from_secs(1));
    // Another one finds no room within 2 s: 503 with Retry-After, and the
    // daemon holds no second 2 MB buffer.
    let in_flight = |d: &Daemon| {
        metric_value(
            &d.metrics(),
            "conflux_listener_body_bytes_in_flight",
            &[("listener", "in")],
        )
    };
    assert_eq!(in_flight(&d), 1_000_000.0);
    let mut second = open_post(addr, "/write?db=x", 2_000_000, 700_000);
    let (status, text) = status_of(&mut second);
    assert_eq!(status, 503, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );
    assert!(text.contains("in flight"), "{text}");
    // The slow one finishes and is stored whole.
    slow.write_all(&body_bytes(1_300_000)).unwrap();
    let (status, text) = status_of(&mut slow);
    assert_eq!(status, 204, "{text}");
    // The room came back: the same body now passes.
    let r = http(addr, "POST", "/write?db=x", &[], &body_bytes(2_000_000));
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        metric_value(
            &d.metrics(),
            "conflux_listener_requests_total",
            &[("listener", "in"), ("status", "503")]
        ),
        1.0
    );
    assert_eq!(in_flight(&d), 0.0);
    let lines = stored(d);
    assert_eq!(lines.len(), 2 * (2_000_000 / 7));
}
