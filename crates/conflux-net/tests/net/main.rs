//! Listener tests over real loopback sockets: TCP lines, UDP, HTTP, and a
//! port shared by both after sniffing the first byte.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
mod http;
mod sniff;
mod tcp;
mod tls;
mod udp;
