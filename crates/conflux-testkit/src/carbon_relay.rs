//! carbon-c-relay (`carbon-c-relay`, Debian package `carbon-c-relay`, 3.7 on
//! bookworm) writing every line it receives to a file.
//!
//! Started as `carbon-c-relay -f <tmp>/relay.conf -s -b 1 -w 1` with
//!
//! ```text
//! listen type linemode 127.0.0.1:<port> proto tcp;
//! cluster out file <tmp>/out.txt;
//! match * send to out stop;
//! ```
//!
//! `-s` (submission mode) keeps the relay's own statistics out of the stream,
//! `-b 1` sends each line on at once, `-w 1` is one worker.
//!
//! [`CarbonRelay::start_tls`] adds a TLS listener (Debian's build has
//! OpenSSL: `carbon-c-relay -v` says `enabled support for: ssl`):
//!
//! ```text
//! listen type linemode transport plain ssl <tmp>/server.pem 127.0.0.1:<port> proto tcp;
//! ```
//!
//! where `server.pem` holds the [`Pki`]'s server certificate and then its
//! key (the relay reads both from the one file). The relay (3.7) asks no
//! client for a certificate, and closes a connection without sending a
//! `close_notify`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use crate::pki::Pki;
use crate::{
    DATA_TIMEOUT, Process, free_addrs, launch, poll, read_or_empty, server_dir, write_file,
};

/// A running carbon-c-relay: graphite plaintext in, the same lines out.
///
/// Lines are written as the relay forwards them: metric, value and
/// timestamp re-joined with single spaces, timestamps and values untouched
/// (a 13-digit timestamp passes as is), tagged names (`a;k=v`) as sent.
#[derive(Debug)]
pub struct CarbonRelay {
    /// Graphite plaintext (TCP).
    pub line: SocketAddr,
    /// Graphite plaintext over TLS, when started with [`CarbonRelay::start_tls`].
    pub tls: Option<SocketAddr>,
    out: PathBuf,
    process: Process,
}

impl CarbonRelay {
    /// Starts one on a free loopback port and waits until it listens.
    ///
    /// # Panics
    /// When the binary is missing (with the package to install), when it does
    /// not listen within 30 s, or when it exits during startup three times.
    pub fn start() -> CarbonRelay {
        Self::start_with(None)
    }

    /// Starts one with a TLS listener besides the plain one ([`CarbonRelay::tls`]),
    /// serving `pki`'s server certificate (for `localhost` and `127.0.0.1`).
    ///
    /// # Panics
    /// As [`CarbonRelay::start`]; also when the certificate files cannot be read.
    pub fn start_tls(pki: &Pki) -> CarbonRelay {
        Self::start_with(Some(pki))
    }

    fn start_with(pki: Option<&Pki>) -> CarbonRelay {
        launch("carbon-c-relay", || {
            let [line, tls_addr] = free_addrs();
            let dir = server_dir("carbon-relay");
            let out = dir.path().join("out.txt");
            let mut config = format!("listen type linemode {line} proto tcp;\n");
            let tls = pki.map(|pki| {
                let read = |path: &std::path::Path| {
                    std::fs::read_to_string(path)
                        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
                };
                let pem = format!("{}{}", read(&pki.server_cert), read(&pki.server_key));
                write_file(dir.path(), "server.pem", &pem);
                config.push_str(&format!(
                    "listen type linemode transport plain ssl {} {tls_addr} proto tcp;\n",
                    dir.path().join("server.pem").display()
                ));
                tls_addr
            });
            config.push_str(&format!(
                "cluster out file {};\n\
                 match * send to out stop;\n",
                out.display()
            ));
            write_file(dir.path(), "relay.conf", &config);
            let mut command = Command::new("carbon-c-relay");
            command
                .arg("-f")
                .arg(dir.path().join("relay.conf"))
                .args(["-s", "-b", "1", "-w", "1"]);
            let mut process = Process::spawn("carbon-c-relay", "carbon-c-relay", dir, command);
            process.wait_ready(|p| p.listens_on(line) && tls.is_none_or(|a| p.listens_on(a)))?;
            Ok(CarbonRelay {
                line,
                tls,
                out,
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

    /// The lines written so far (complete lines only).
    pub fn lines(&self) -> Vec<String> {
        let text = read_or_empty(&self.out);
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete.lines().map(str::to_owned).collect()
    }

    /// [`CarbonRelay::lines`] until there are at least `min`.
    ///
    /// # Panics
    /// After 20 s with fewer (the message has the lines and the server log).
    pub fn wait_lines(&self, min: usize) -> Vec<String> {
        let mut last = Vec::new();
        let found = poll(DATA_TIMEOUT, || {
            last = self.lines();
            last.len() >= min
        });
        assert!(
            found,
            "carbon-c-relay: fewer than {min} lines after {DATA_TIMEOUT:?}: {last:?}\n{}",
            self.log()
        );
        last
    }
}
