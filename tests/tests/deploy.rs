//! The deployment files in `deploy/`, checked without the systems they are
//! for (no systemd as PID 1, no Docker engine, no cluster, no Telegraf here):
//!
//! - the systemd unit passes `systemd-analyze verify` and carries the
//!   settings docs/operations.md promises; its config passes `conflux check`;
//! - the Dockerfile has the stages, user, ports, volume, health check and
//!   entry point the docs promise, every file it copies exists, and its
//!   health-check script answers right against a real daemon;
//! - each Telegraf output config is TOML naming the right output plugin and
//!   the port of the listener it is for;
//! - the Kubernetes sidecar's manifests (parsed with PyYAML) hold both
//!   containers, probes on the admin port, a spool volume, a non-root
//!   read-only sandbox, and configs that fit each other and pass `check`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use conflux_e2e::{Daemon, binary, python, run_cli};
use serde_json::Value as Json;
use toml::{Table, Value};

/// The ports of the embedded default, as the Dockerfile must expose them.
const DEFAULT_PORTS: [&str; 7] = ["8086", "4242", "2003", "2003/udp", "2004", "8080", "9599"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse_toml(name: &str, text: &str) -> Table {
    text.parse::<Table>()
        .unwrap_or_else(|e| panic!("{name} is not TOML: {e}"))
}

fn get<'a>(t: &'a Table, path: &str) -> &'a Value {
    let mut v: Option<&Value> = None;
    let mut table = t;
    for part in path.split('.') {
        let next = table
            .get(part)
            .unwrap_or_else(|| panic!("no `{path}` in {t:#?}"));
        v = Some(next);
        if let Some(inner) = next.as_table() {
            table = inner;
        }
    }
    v.unwrap()
}

fn get_str<'a>(t: &'a Table, path: &str) -> &'a str {
    get(t, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{path}` is not a string"))
}

/// `conflux check --config FILE` in a fresh directory, with extra environment.
fn check(path: &Path, env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(path)
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "conflux check {}: {:?}\n{}{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The port of an `ip:port` address.
fn port(addr: &str) -> &str {
    addr.rsplit_once(':')
        .unwrap_or_else(|| panic!("no port in `{addr}`"))
        .1
}

/// Every `(key, address)` of every listener: `address`, `tcp_address`,
/// `udp_address`, `pickle_address`.
fn listener_addresses(config: &Table) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(listeners) = config.get("listeners").and_then(Value::as_table) else {
        return out;
    };
    for (name, l) in listeners {
        for key in ["address", "tcp_address", "udp_address", "pickle_address"] {
            if let Some(a) = l.get(key).and_then(Value::as_str) {
                out.push((format!("{name}.{key}"), a.to_owned()));
            }
        }
    }
    out
}

/// The ports a config binds, in Docker's `EXPOSE` spelling (`2003/udp`).
fn exposed_ports(config: &Table) -> BTreeSet<String> {
    let mut ports: BTreeSet<String> = listener_addresses(config)
        .iter()
        .map(|(key, a)| {
            if key.ends_with(".udp_address") {
                format!("{}/udp", port(a))
            } else {
                port(a).to_owned()
            }
        })
        .collect();
    ports.insert(port(get_str(config, "admin.address")).to_owned());
    ports
}

// ---------------------------------------------------------------- systemd

/// `(section, key, value)` of every assignment in a unit file.
fn unit_settings(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not an assignment: {line}"));
        out.push((section.clone(), k.trim().to_owned(), v.trim().to_owned()));
    }
    out
}

/// Every value of `key` in `[Service]`.
fn service<'a>(settings: &'a [(String, String, String)], key: &str) -> Vec<&'a str> {
    settings
        .iter()
        .filter(|(s, k, _)| s == "Service" && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

/// The one value of `key` in `[Service]`.
fn service1<'a>(settings: &'a [(String, String, String)], key: &str) -> &'a str {
    match service(settings, key).as_slice() {
        [v] => v,
        other => panic!("[Service] {key}= set {} times: {other:?}", other.len()),
    }
}

/// Seconds of a systemd time span like `30s`, `2min`, `1min 30s`, `45`.
fn timespan_secs(v: &str) -> u64 {
    v.split_whitespace()
        .map(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            let n: u64 = digits.parse().unwrap();
            match &part[digits.len()..] {
                "" | "s" | "sec" => n,
                "min" | "m" => n * 60,
                "h" => n * 3600,
                unit => panic!("unknown time unit `{unit}` in `{v}`"),
            }
        })
        .sum()
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        analyze.is_ok_and(|o| o.status.success()),
        "systemd-analyze is missing: install it with `apt-get install systemd` (scripts/test.sh does)"
    );
    let unit = read("deploy/systemd/conflux.service");
    // verify checks that ExecStart's program exists: point it at the daemon
    // under test.
    let exec = "ExecStart=/usr/bin/conflux ";
    assert!(unit.contains(exec), "the unit runs /usr/bin/conflux");
    let unit = unit.replace(exec, &format!("ExecStart={} ", binary().display()));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conflux.service");
    std::fs::write(&path, unit).unwrap();

    // --recursive-errors=no: only this unit's problems fail the run, not
    // those of units it pulls in (network-online.target, multi-user.target)
    // on whatever machine runs the test; --man=no: there is no man page.
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--recursive-errors=no"])
        .arg(&path)
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify: {:?}\n{text}",
        out.status
    );
    // Warnings (an unknown key, a bad value) leave the exit code at 0: none
    // may name this unit. Lines about the machine's other units are theirs.
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("conflux.service") || l.contains(&*dir.path().to_string_lossy()))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify warns:\n{text}");
}

#[test]
fn systemd_unit_has_the_documented_settings() {
    let unit = read("deploy/systemd/conflux.service");
    let s = unit_settings(&unit);
    let config = parse_toml(
        "deploy/systemd/conflux.toml",
        &read("deploy/systemd/conflux.toml"),
    );

    for (key, want) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        (
            "ExecStart",
            "/usr/bin/conflux --config /etc/conflux/conflux.toml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("StateDirectory", "conflux"),
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(service1(&s, key), want, "[Service] {key}=");
    }
    assert!(timespan_secs(service1(&s, "WatchdogSec")) > 0);

    // The config the unit runs keeps its state in the unit's state
    // directory, which is also the working directory for relative paths.
    assert_eq!(get_str(&config, "daemon.data_dir"), "/var/lib/conflux");
    assert_eq!(service1(&s, "WorkingDirectory"), "/var/lib/conflux");

    // systemd must give the shutdown flush its whole deadline.
    let shutdown_ms = get(&config, "daemon.shutdown_timeout_ms")
        .as_integer()
        .unwrap();
    let stop_secs = timespan_secs(service1(&s, "TimeoutStopSec"));
    assert!(
        stop_secs * 1000 > u64::try_from(shutdown_ms).unwrap(),
        "TimeoutStopSec={stop_secs}s must exceed shutdown_timeout_ms={shutdown_ms}"
    );

    // Every TCP port of every listener may hold max_connections sockets
    // (1024 by default); the open-files limit must exceed their sum, with
    // room for the admin endpoint, sinks and spool files.
    let nofile: u64 = service1(&s, "LimitNOFILE").parse().unwrap();
    let listeners = config["listeners"].as_table().unwrap();
    let sockets: u64 = listeners
        .values()
        .map(|l| {
            let tcp_ports = ["address", "tcp_address", "pickle_address"]
                .iter()
                .filter(|k| l.get(**k).is_some())
                .count() as u64;
            let max = l
                .get("max_connections")
                .and_then(Value::as_integer)
                .unwrap_or(1024);
            tcp_ports * u64::try_from(max).unwrap()
        })
        .sum();
    assert!(
        nofile > sockets + 1024,
        "LimitNOFILE={nofile} does not exceed {sockets} listener connections plus headroom"
    );
}

#[test]
fn systemd_and_docker_configs_pass_check_and_differ_from_the_default_only_where_they_must() {
    let default = parse_toml("config/conflux.toml", &read("config/conflux.toml"));
    let dir = tempfile::tempdir().unwrap();
    for rel in ["deploy/systemd/conflux.toml", "deploy/docker/conflux.toml"] {
        let path = repo().join(rel);
        let (code, stdout, stderr) =
            run_cli(&["check", "--config", path.to_str().unwrap()], dir.path());
        assert_eq!(code, 0, "conflux check {rel}:\n{stdout}{stderr}");

        let text = read(rel);
        let mut config = parse_toml(rel, &text);
        assert_eq!(
            get_str(&config, "daemon.data_dir"),
            "/var/lib/conflux",
            "{rel}"
        );
        if rel.contains("docker") {
            // Inside a container every socket binds every interface.
            assert_eq!(get_str(&config, "admin.address"), "0.0.0.0:9599");
            for (key, a) in listener_addresses(&config) {
                assert!(a.starts_with("0.0.0.0:"), "{rel}: {key} = {a}");
            }
            config = parse_toml(rel, &text.replace("\"0.0.0.0:", "\"127.0.0.1:"));
        }
        config["daemon"].as_table_mut().unwrap().remove("data_dir");
        assert_eq!(config, default, "{rel}: the default plus data_dir");
    }
}

// ---------------------------------------------------------------- Docker

/// One Dockerfile instruction: its keyword (upper case), its arguments with
/// continuation lines joined, and the line it starts on.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
    line: usize,
}

/// Instructions in order. A `\` at the end of a line continues it; comment
/// lines (also inside a continuation, as Docker drops them) and blank lines
/// are skipped.
fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || (line.is_empty() && pending.is_none()) {
            continue;
        }
        let (body, continues) = match line.strip_suffix('\\') {
            Some(b) => (b.trim_end(), true),
            None => (line, false),
        };
        let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
        if !joined.is_empty() && !body.is_empty() {
            joined.push(' ');
        }
        joined.push_str(body);
        if continues {
            pending = Some((start, joined));
            continue;
        }
        let (keyword, args) = joined
            .split_once(char::is_whitespace)
            .unwrap_or((&joined, ""));
        out.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_owned(),
            line: start,
        });
    }
    assert!(
        pending.is_none(),
        "the Dockerfile ends inside a continuation"
    );
    out
}

/// `--flag=value` options first, then the words (exec-form JSON arrays are
/// parsed as such).
fn split_args(args: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut flags = Vec::new();
    let mut rest = args.trim();
    while let Some(f) = rest.strip_prefix("--") {
        let (flag, tail) = f.split_once(char::is_whitespace).unwrap_or((f, ""));
        let (k, v) = flag.split_once('=').unwrap_or((flag, ""));
        flags.push((k.to_owned(), v.to_owned()));
        rest = tail.trim_start();
    }
    let words = if rest.starts_with('[') {
        serde_json::from_str::<Vec<String>>(rest)
            .unwrap_or_else(|e| panic!("bad exec form `{rest}`: {e}"))
    } else {
        rest.split_whitespace().map(str::to_owned).collect()
    };
    (flags, words)
}

fn flag<'a>(flags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    flags
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn dockerfile_has_the_documented_shape() {
    let text = read("deploy/docker/Dockerfile");
    let all = parse_dockerfile(&text);

    // Stages: (name, instructions).
    let mut stages: Vec<(Option<String>, Vec<&Instruction>)> = Vec::new();
    for ins in &all {
        if ins.keyword == "FROM" {
            let (_, words) = split_args(&ins.args);
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.clone()),
                [_] => None,
                other => panic!("line {}: FROM {other:?}", ins.line),
            };
            stages.push((name, Vec::new()));
        } else {
            let (_, list) = stages
                .last_mut()
                .unwrap_or_else(|| panic!("line {}: {} before FROM", ins.line, ins.keyword));
            list.push(ins);
        }
    }
    assert!(
        stages.len() >= 2,
        "a build stage and a runtime stage: {stages:#?}"
    );
    let builders: Vec<&str> = stages[..stages.len() - 1]
        .iter()
        .filter_map(|(n, _)| n.as_deref())
        .collect();
    let (_, last) = stages.last().unwrap();
    let all_of = |kw: &str| -> Vec<&Instruction> {
        last.iter().copied().filter(|i| i.keyword == kw).collect()
    };
    let one_of = |kw: &str| -> &Instruction {
        match all_of(kw).as_slice() {
            [i] => i,
            other => panic!("the runtime stage has {} {kw}: {other:#?}", other.len()),
        }
    };

    // The build stage builds the release daemon from the lock file.
    assert!(
        stages[..stages.len() - 1]
            .iter()
            .flat_map(|(_, l)| l)
            .any(|i| i.keyword == "RUN"
                && i.args.contains("cargo build --release --locked -p conflux")),
        "no `cargo build --release --locked -p conflux` in a build stage"
    );

    // Runs as a non-root user (the last USER wins).
    let user = all_of("USER")
        .last()
        .map(|i| i.args.clone())
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(!matches!(uid, "0" | "root" | ""), "USER {user} is root");

    // Every port of the default, and of the image's own config.
    let exposed: BTreeSet<String> = all_of("EXPOSE")
        .iter()
        .flat_map(|i| split_args(&i.args).1)
        .collect();
    for p in DEFAULT_PORTS {
        assert!(exposed.contains(p), "EXPOSE lacks {p}: {exposed:?}");
    }
    let image_config = parse_toml(
        "deploy/docker/conflux.toml",
        &read("deploy/docker/conflux.toml"),
    );
    let bound = exposed_ports(&image_config);
    assert!(
        bound.is_subset(&exposed),
        "the image's config binds {bound:?}, EXPOSE has {exposed:?}"
    );

    let volumes: Vec<String> = all_of("VOLUME")
        .iter()
        .flat_map(|i| split_args(&i.args).1)
        .collect();
    assert!(
        volumes.iter().any(|v| v == "/var/lib/conflux"),
        "VOLUME {volumes:?}"
    );
    assert_eq!(
        get_str(&image_config, "daemon.data_dir"),
        "/var/lib/conflux"
    );

    let health = one_of("HEALTHCHECK");
    assert!(
        health.args.contains("/health") && health.args.contains("9599"),
        "HEALTHCHECK {}",
        health.args
    );

    // COPY: the binary from a build stage; everything else from the context,
    // where it must exist.
    let mut copied: Vec<(String, String)> = Vec::new(); // (source, destination)
    for (_, list) in &stages {
        for ins in list
            .iter()
            .filter(|i| matches!(i.keyword.as_str(), "COPY" | "ADD"))
        {
            let (flags, words) = split_args(&ins.args);
            let (dest, sources) = words.split_last().expect("COPY needs a destination");
            match flag(&flags, "from") {
                Some(stage) => {
                    assert!(
                        builders.contains(&stage),
                        "line {}: COPY --from={stage} names no earlier stage ({builders:?})",
                        ins.line
                    );
                    for s in sources {
                        copied.push((format!("{stage}:{s}"), dest.clone()));
                    }
                }
                None => {
                    for s in sources {
                        assert!(
                            repo().join(s).exists(),
                            "line {}: COPY {s}: no such file in the repository",
                            ins.line
                        );
                        copied.push((s.clone(), dest.clone()));
                    }
                }
            }
        }
    }

    let (_, entry) = split_args(&one_of("ENTRYPOINT").args);
    let binary_path = entry.first().expect("ENTRYPOINT names the binary").clone();
    assert!(
        copied.iter().any(|(src, dest)| src.contains(':')
            && src.ends_with("/conflux")
            && (dest == &binary_path)),
        "the runtime stage gets {binary_path} with COPY --from=<builder>: {copied:?}"
    );
    // The config path comes from CONFLUX_CONFIG, so that `-e CONFLUX_CONFIG=…`
    // or a command with `--config` both choose another file.
    let (_, cmd) = split_args(&one_of("CMD").args);
    assert_eq!(cmd, ["run"]);
    assert!(
        all_of("ENV")
            .iter()
            .any(|i| i.args.trim() == "CONFLUX_CONFIG=/etc/conflux/conflux.toml"),
        "ENV CONFLUX_CONFIG=/etc/conflux/conflux.toml in the runtime stage"
    );
    assert!(
        copied
            .iter()
            .any(|(src, dest)| src == "deploy/docker/conflux.toml"
                && dest == "/etc/conflux/conflux.toml"),
        "deploy/docker/conflux.toml is copied to /etc/conflux/conflux.toml: {copied:?}"
    );

    // The health check's program is in the image.
    let (_, hc) = split_args(health.args.split_once("CMD").expect("HEALTHCHECK CMD").1);
    let program = hc.first().unwrap();
    assert!(
        copied.iter().any(|(_, dest)| dest == program),
        "HEALTHCHECK runs {program}, which no COPY puts there: {copied:?}"
    );

    // The build context leaves out what is large or private.
    let ignore = read(".dockerignore");
    for entry in ["target/", ".git/", ".venv/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
}

#[test]
fn dockerfile_parser_joins_continuations_and_skips_comments() {
    let ins = parse_dockerfile(
        "# syntax=docker/dockerfile:1\nFROM a AS b\nRUN one \\\n    # a comment\n    two \\\n    three\n\nUSER 10001:10001\n",
    );
    let got: Vec<(&str, &str, usize)> = ins
        .iter()
        .map(|i| (i.keyword.as_str(), i.args.as_str(), i.line))
        .collect();
    assert_eq!(
        got,
        [
            ("FROM", "a AS b", 2),
            ("RUN", "one two three", 3),
            ("USER", "10001:10001", 8)
        ]
    );
    let (flags, words) = split_args("--from=builder --chmod=0755 a b /c");
    assert_eq!(flag(&flags, "from"), Some("builder"));
    assert_eq!(words, ["a", "b", "/c"]);
    assert_eq!(split_args(r#"["x", "--y"]"#).1, ["x", "--y"]);
}

fn bash_healthcheck(admin: std::net::SocketAddr, path: &str) -> std::process::Output {
    Command::new("bash")
        .arg(repo().join("deploy/docker/healthcheck.sh"))
        .arg(admin.ip().to_string())
        .arg(admin.port().to_string())
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn docker_healthcheck_script_passes_only_while_health_answers_200() {
    let mut d = Daemon::start(
        r#"
[listeners.influx]
type = "influx"
address = "127.0.0.1:0"

[sinks.void]
type = "blackhole"
"#,
    );
    let ok = bash_healthcheck(d.admin(), "/health");
    assert!(
        ok.status.success(),
        "{:?} {}",
        ok.status,
        String::from_utf8_lossy(&ok.stderr)
    );
    let missing = bash_healthcheck(d.admin(), "/no-such-route");
    assert!(!missing.status.success(), "a 404 is not healthy");
    let admin = d.admin();
    d.terminate();
    let down = bash_healthcheck(admin, "/health");
    assert!(
        !down.status.success(),
        "a refused connection is not healthy"
    );
}

// ---------------------------------------------------------------- Telegraf

/// The one `[[outputs.KIND]]` table of a Telegraf output config.
fn telegraf_output(rel: &str, kind: &str) -> Table {
    let t = parse_toml(rel, &read(rel));
    let outputs = t["outputs"].as_table().expect("[[outputs.…]]");
    assert_eq!(
        outputs.keys().collect::<Vec<_>>(),
        [kind],
        "{rel}: one output, {kind}"
    );
    let list = outputs[kind]
        .as_array()
        .expect("[[outputs.KIND]] is an array");
    assert_eq!(list.len(), 1, "{rel}: one [[outputs.{kind}]]");
    list[0].as_table().unwrap().clone()
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

/// The port of listener `name` in the embedded default.
fn default_port(key: &str) -> String {
    let default = parse_toml("config/conflux.toml", &read("config/conflux.toml"));
    port(get_str(&default, key)).to_owned()
}

#[test]
fn telegraf_output_configs_point_at_the_right_listener() {
    let influx = default_port("listeners.influx.address");
    let opentsdb = default_port("listeners.opentsdb.address");
    let graphite = default_port("listeners.graphite.address");
    assert_eq!(
        (influx.as_str(), opentsdb.as_str(), graphite.as_str()),
        ("8086", "4242", "2003")
    );

    let o = telegraf_output("deploy/telegraf/influxdb.conf", "influxdb");
    assert_eq!(strs(&o["urls"]), [format!("http://127.0.0.1:{influx}")]);
    assert!(!o["database"].as_str().unwrap().is_empty());

    let o = telegraf_output("deploy/telegraf/influxdb_v2.conf", "influxdb_v2");
    assert_eq!(strs(&o["urls"]), [format!("http://127.0.0.1:{influx}")]);
    // Telegraf's own environment syntax, replaced by Telegraf, not TOML.
    assert_eq!(o["token"].as_str(), Some("${CONFLUX_TOKEN}"));
    assert!(!o["organization"].as_str().unwrap().is_empty());
    assert!(!o["bucket"].as_str().unwrap().is_empty());

    let o = telegraf_output("deploy/telegraf/http_kwdb.conf", "http");
    assert_eq!(
        o["url"].as_str(),
        Some(format!("http://127.0.0.1:{influx}/restapi/telegraf?db=telegraf").as_str())
    );
    assert_eq!(o["method"].as_str(), Some("POST"));
    assert_eq!(o["data_format"].as_str(), Some("influx"));

    let o = telegraf_output("deploy/telegraf/opentsdb.conf", "opentsdb");
    assert_eq!(o["host"].as_str(), Some("tcp://127.0.0.1"));
    assert_eq!(
        o["port"].as_integer().map(|p| p.to_string()),
        Some(opentsdb)
    );

    let o = telegraf_output("deploy/telegraf/graphite.conf", "graphite");
    assert_eq!(strs(&o["servers"]), [format!("127.0.0.1:{graphite}")]);
}

// ---------------------------------------------------------------- Kubernetes

/// Every document of the YAML files, as JSON, read by PyYAML.
fn yaml_documents(files: &[&str]) -> Vec<Json> {
    let script = "import json, sys, yaml\n\
                  docs = []\n\
                  for path in sys.argv[1:]:\n\
                  \x20   with open(path) as f:\n\
                  \x20       docs.extend(d for d in yaml.safe_load_all(f) if d is not None)\n\
                  print(json.dumps(docs))\n";
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(files.iter().map(|f| repo().join(f)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "PyYAML could not read {files:?} (is PyYAML in the venv? scripts/test.sh installs tests/python/requirements.txt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn find<'a>(docs: &'a [Json], kind: &str, name: &str) -> &'a Json {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} `{name}`"))
}

fn container<'a>(pod: &'a Json, name: &str) -> &'a Json {
    pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container `{name}`"))
}

/// The volume mounted at `path` in container `c`, from the pod's volumes.
fn volume_at<'a>(pod: &'a Json, c: &Json, path: &str) -> &'a Json {
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == path)
        .unwrap_or_else(|| panic!("container {} mounts nothing at {path}", c["name"]));
    pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("no volume {}", mount["name"]))
}

/// The text of file `file` in the ConfigMap that volume `v` projects.
fn configmap_file<'a>(docs: &'a [Json], v: &Json, file: &str) -> &'a str {
    let name = v["configMap"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("volume {} is not a ConfigMap", v["name"]));
    find(docs, "ConfigMap", name)["data"][file]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap {name} has no {file}"))
}

#[test]
fn kubernetes_sidecar_runs_telegraf_into_conflux() {
    let docs = yaml_documents(&["deploy/kubernetes/conflux-sidecar.yaml"]);
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let conflux = container(pod, "conflux");
    let telegraf = container(pod, "telegraf");

    // Conflux's config: from a ConfigMap at the path it is started with.
    let args: Vec<&str> = conflux["args"]
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap()).collect())
        .unwrap_or_default();
    assert!(
        args.is_empty() || args == ["--config", "/etc/conflux/conflux.toml"],
        "{args:?}"
    );
    let conflux_toml = configmap_file(
        &docs,
        volume_at(pod, conflux, "/etc/conflux"),
        "conflux.toml",
    );
    let config = parse_toml("the ConfigMap's conflux.toml", conflux_toml);

    // Probes on the admin port, which binds every interface.
    let admin = get_str(&config, "admin.address");
    assert_eq!(admin, "0.0.0.0:9599");
    for (probe, path) in [("livenessProbe", "/health"), ("readinessProbe", "/ready")] {
        let get = &conflux[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], 9599, "{probe}");
    }

    // The listeners only Telegraf talks to stay on the pod's loopback.
    let addresses = listener_addresses(&config);
    assert!(!addresses.is_empty());
    for (key, a) in &addresses {
        assert!(a.starts_with("127.0.0.1:"), "{key} = {a}");
    }

    // The spool lives on a volume, where data_dir says.
    let data_dir = get_str(&config, "daemon.data_dir");
    let spool = volume_at(pod, conflux, data_dir);
    assert!(
        spool.get("emptyDir").is_some() || spool.get("persistentVolumeClaim").is_some(),
        "{spool}"
    );

    // The pod lets the shutdown flush finish.
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
    let shutdown_ms = config
        .get("daemon")
        .and_then(|d| d.get("shutdown_timeout_ms"))
        .and_then(Value::as_integer)
        .unwrap_or(15_000);
    assert!(
        grace * 1000 > shutdown_ms,
        "grace {grace}s, shutdown {shutdown_ms} ms"
    );

    // Sandbox: non-root, read-only root file system, for both containers.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    for c in [conflux, telegraf] {
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", c["name"]);
        assert_ne!(sc["runAsUser"], 0, "{}", c["name"]);
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", c["name"]);
    }

    // Secrets reach `${VAR}` through the environment, from a Secret in the file.
    let mut env = Vec::new();
    for e in conflux["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let r = &e["valueFrom"]["secretKeyRef"];
        if r.is_null() {
            continue;
        }
        let secret = find(&docs, "Secret", r["name"].as_str().unwrap());
        let value = secret["stringData"][r["key"].as_str().unwrap()]
            .as_str()
            .unwrap_or_else(|| panic!("Secret {} has no {}", r["name"], r["key"]));
        assert!(
            conflux_toml.contains(&format!("${{{name}}}")),
            "the config does not use ${{{name}}}"
        );
        env.push((name, value));
    }
    assert!(!env.is_empty(), "no Secret reaches the config");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conflux.toml");
    std::fs::write(&path, conflux_toml).unwrap();
    check(&path, &env);

    // Telegraf writes to Conflux's influx listener over localhost.
    let telegraf_args: Vec<&str> = telegraf["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(telegraf_args, ["--config", "/etc/telegraf/telegraf.conf"]);
    let telegraf_conf = configmap_file(
        &docs,
        volume_at(pod, telegraf, "/etc/telegraf"),
        "telegraf.conf",
    );
    let t = parse_toml("the ConfigMap's telegraf.conf", telegraf_conf);
    let out = t["outputs"]["influxdb"].as_array().unwrap();
    assert_eq!(out.len(), 1);
    let influx_port = port(get_str(&config, "listeners.influx.address"));
    assert_eq!(
        strs(&out[0]["urls"]),
        [format!("http://localhost:{influx_port}")]
    );
    assert!(!t["inputs"].as_table().unwrap().is_empty());
}

#[test]
fn kustomization_lists_files_that_exist() {
    let docs = yaml_documents(&["deploy/kubernetes/kustomization.yaml"]);
    let resources = docs[0]["resources"].as_array().expect("resources");
    assert!(!resources.is_empty());
    for r in resources {
        let file = r.as_str().unwrap();
        assert!(
            repo().join("deploy/kubernetes").join(file).exists(),
            "kustomization.yaml lists {file}, which does not exist"
        );
    }
}
