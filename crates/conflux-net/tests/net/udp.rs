use std::net::SocketAddr;

use conflux_core::telemetry as t;
use conflux_net::CancellationToken;
use conflux_net::udp::{DatagramHandler, UdpConfig, UdpServer};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::common::{counter, labels, localhost, within};

struct Collect(mpsc::UnboundedSender<(Vec<u8>, SocketAddr)>);

impl DatagramHandler for Collect {
    async fn datagram(&mut self, data: &[u8], peer: SocketAddr) {
        self.0.send((data.to_vec(), peer)).unwrap();
    }
}

#[tokio::test]
async fn datagram_with_three_lines_reaches_the_handler() {
    let cfg = UdpConfig {
        recv_buffer_bytes: Some(1 << 20),
        ..UdpConfig::default()
    };
    let server = UdpServer::bind(localhost(), cfg, labels("udp_lines"))
        .await
        .unwrap();
    let addr = server.local_addr();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(server.run(Collect(tx), shutdown.clone()));

    let client = UdpSocket::bind(localhost()).await.unwrap();
    let payload = b"a.b 1 1700000000\nc.d 2 1700000000\ne.f 3 1700000000\n";
    client.send_to(payload, addr).await.unwrap();
    let (data, peer) = within(rx.recv()).await.unwrap();
    assert_eq!(data, payload);
    assert_eq!(
        data.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        3
    );
    assert_eq!(peer, client.local_addr().unwrap());
    assert_eq!(
        counter(t::LISTENER_RECEIVED_BYTES, "udp_lines", &[]),
        payload.len() as u64
    );

    shutdown.cancel();
    within(run).await.unwrap();
}

#[tokio::test]
async fn oversize_datagram_is_dropped_and_counted() {
    let cfg = UdpConfig {
        max_datagram_bytes: 16,
        ..UdpConfig::default()
    };
    let server = UdpServer::bind(localhost(), cfg, labels("udp_big"))
        .await
        .unwrap();
    let addr = server.local_addr();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(server.run(Collect(tx), shutdown.clone()));

    let client = UdpSocket::bind(localhost()).await.unwrap();
    client.send_to(&[b'x'; 17], addr).await.unwrap();
    client.send_to(b"exactly 16 bytes", addr).await.unwrap();
    let (data, _) = within(rx.recv()).await.unwrap();
    assert_eq!(data, b"exactly 16 bytes");
    assert_eq!(
        counter(
            t::LISTENER_REJECTED,
            "udp_big",
            &[("reason", "datagram_too_large")]
        ),
        1
    );

    shutdown.cancel();
    within(run).await.unwrap();
    assert!(rx.recv().await.is_none());
}
