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

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

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
        launch("carbon-c-relay", || {
            let [line] = free_addrs();
            let dir = server_dir("carbon-relay");
            let out = dir.path().join("out.txt");
            let config = format!(
                "listen type linemode {line} proto tcp;\n\
                 cluster out file {};\n\
                 match * send to out stop;\n",
                out.display()
            );
            write_file(dir.path(), "relay.conf", &config);
            let mut command = Command::new("carbon-c-relay");
            command
                .arg("-f")
                .arg(dir.path().join("relay.conf"))
                .args(["-s", "-b", "1", "-w", "1"]);
            let mut process = Process::spawn("carbon-c-relay", "carbon-c-relay", dir, command);
            process.wait_ready(|p| p.listens_on(line))?;
            Ok(CarbonRelay { line, out, process })
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
