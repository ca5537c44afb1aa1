//! systemd's service notification protocol (`Type=notify`): readiness,
//! reload and stop states, and the watchdog keep-alive. Without
//! `NOTIFY_SOCKET` every call is a no-op.
//!
//! The protocol is one datagram of `KEY=value` lines to the Unix socket
//! `NOTIFY_SOCKET` names: a path, or `@name` in the abstract namespace (as
//! systemd hands it to services in containers). The `sd-notify` crate does
//! not reach abstract sockets, and the whole of it is these few lines.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Every listener is bound and the sinks run.
pub fn ready(status: &str) {
    send(&format!("READY=1\nSTATUS={status}\n"));
}

/// A SIGHUP reload started; [`ready`] ends it. (`Type=notify-reload`, which
/// also wants `MONOTONIC_USEC`, needs systemd 253; the unit uses `notify`.)
pub fn reloading() {
    send("RELOADING=1\n");
}

/// Shutdown started.
pub fn stopping() {
    send("STOPPING=1\n");
}

fn send(message: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    // Once: the watchdog would repeat it every few seconds.
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(e) = send_to(&target, message)
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(socket = ?target, error = %e, "cannot notify the service manager (logged once)");
    }
}

fn send_to(target: &std::ffi::OsStr, message: &str) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = target.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(std::path::Path::new(target))?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(message.as_bytes(), &addr)?;
    Ok(())
}

/// The keep-alive interval systemd asks for: half of `WATCHDOG_USEC`, when
/// it is set and `WATCHDOG_PID` is unset or this process (libsystemd's rule).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Send `WATCHDOG=1` every `interval` for as long as the runtime turns: a
/// wedged runtime stops the keep-alives and systemd restarts the service.
pub async fn watchdog(interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        send("WATCHDOG=1\n");
    }
}
