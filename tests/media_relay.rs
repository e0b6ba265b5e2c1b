//! RTP/RTCP relay over real UDP sockets on 127.0.0.1 (RFC 3550, symmetric RTP RFC 4961).
//!
//! Two "phones" send valid 172-octet PCMU packets (12-octet header + 160 octets = 20 ms)
//! through a relay session. The relay's port range is picked at random and retried if busy,
//! so tests run in parallel with each other and with other programs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout};
use vigie::media::{
    MediaError, MediaRelay, RelayConfig, RelayMetrics, RelaySession, RelayStats, Side,
};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(5);
const PCMU_PACKET: usize = 172;

/// A relay over `ports` ports at a random even base, and its first session.
async fn relay_with_session(ports: u16) -> (MediaRelay, RelayMetrics, RelaySession) {
    for _ in 0..200 {
        let base = rand::random_range(10_000u16..60_000) & !1;
        let metrics = RelayMetrics::default();
        let relay = MediaRelay::new(
            RelayConfig {
                bind: LOOPBACK,
                port_min: base,
                port_max: base + ports - 1,
            },
            metrics.clone(),
        );
        match relay.allocate().await {
            Ok(session) => return (relay, metrics, session),
            Err(MediaError::PortsExhausted) => continue, // ports busy elsewhere: another base
            Err(e) => panic!("allocate: {e}"),
        }
    }
    panic!("no free port range found in 200 tries");
}

async fn phone() -> UdpSocket {
    UdpSocket::bind((LOOPBACK, 0)).await.unwrap()
}

/// A PCMU packet: V=2, PT=0, the given sequence number, timestamp = 160 × seq, SSRC, and
/// 160 payload octets derived from seq and SSRC so that any corruption shows.
fn pcmu(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(PCMU_PACKET);
    p.extend_from_slice(&[0x80, 0x00]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160u32).map(|i| (i ^ u32::from(seq) ^ ssrc) as u8));
    assert_eq!(p.len(), PCMU_PACKET);
    p
}

/// An RTCP receiver report with no report block (8 octets, RFC 3550 §6.4.2).
fn rtcp_rr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0x00, 0x01];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

fn rtcp_addr(rtp: SocketAddr) -> SocketAddr {
    SocketAddr::new(rtp.ip(), rtp.port() + 1)
}

/// Receive one datagram within [`WAIT`]; returns the payload and its source.
async fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    let (n, from) = timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .expect("datagram within the timeout")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}

fn nothing_queued(socket: &UdpSocket) -> bool {
    let mut buf = [0u8; 2048];
    socket.try_recv_from(&mut buf).is_err()
}

/// Poll the session's counters until `done` holds (bounded by [`WAIT`]).
async fn stats_until(session: &RelaySession, done: impl Fn(&RelayStats) -> bool) -> RelayStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = session.stats();
        if done(&stats) || Instant::now() > deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_rtp_both_ways_with_hint_then_latching() {
    let (_relay, metrics, session) = relay_with_session(8).await;
    let relay_a = session.local_addr(Side::A);
    let relay_b = session.local_addr(Side::B);
    assert_eq!(relay_a.port() % 2, 0);
    assert_eq!(relay_b.port() % 2, 0);
    assert_ne!(relay_a, relay_b);

    // Phone A announces one address in its SDP but sends from another (NAT).
    let phone_a_sdp = phone().await;
    let phone_a = phone().await;
    let phone_a_rtcp = phone().await;
    let phone_b = phone().await;
    let phone_b_rtcp = phone().await;
    session.set_peer_hint(Side::A, phone_a_sdp.local_addr().unwrap());
    session.set_peer_hints(
        Side::B,
        phone_b.local_addr().unwrap(),
        phone_b_rtcp.local_addr().unwrap(),
    );
    const SSRC_A: u32 = 0x1111_1111;
    const SSRC_B: u32 = 0x2222_2222;

    // B speaks first: before A has sent anything, its packet goes to A's SDP address.
    let first = pcmu(1, SSRC_B);
    phone_b.send_to(&first, relay_b).await.unwrap();
    let (got, from) = recv(&phone_a_sdp).await;
    assert_eq!(got, first);
    assert_eq!(from, relay_a, "relayed out of side A's socket");

    // A sends 50 packets from its real address: B receives them unchanged, in order.
    for seq in 1..=50 {
        phone_a.send_to(&pcmu(seq, SSRC_A), relay_a).await.unwrap();
    }
    for seq in 1..=50 {
        let (got, from) = recv(&phone_b).await;
        assert_eq!(got, pcmu(seq, SSRC_A), "packet {seq} A→B");
        assert_eq!(from, relay_b);
    }

    // A is now latched to the source of its packets, not the SDP address.
    for seq in 2..=51 {
        phone_b.send_to(&pcmu(seq, SSRC_B), relay_b).await.unwrap();
    }
    for seq in 2..=51 {
        let (got, _) = recv(&phone_a).await;
        assert_eq!(got, pcmu(seq, SSRC_B), "packet {seq} B→A");
    }
    assert!(
        nothing_queued(&phone_a_sdp),
        "nothing more to the SDP address after latching"
    );

    // RTCP on port + 1: A's first RTCP latches A's RTCP address; B's goes there.
    let rr_a = rtcp_rr(SSRC_A);
    phone_a_rtcp
        .send_to(&rr_a, rtcp_addr(relay_a))
        .await
        .unwrap();
    let (got, from) = recv(&phone_b_rtcp).await;
    assert_eq!(got, rr_a);
    assert_eq!(from, rtcp_addr(relay_b));
    let rr_b = rtcp_rr(SSRC_B);
    phone_b_rtcp
        .send_to(&rr_b, rtcp_addr(relay_b))
        .await
        .unwrap();
    let (got, from) = recv(&phone_a_rtcp).await;
    assert_eq!(got, rr_b);
    assert_eq!(from, rtcp_addr(relay_a));

    // Malformed datagrams are dropped and counted: too short, and RTP version 1.
    phone_a.send_to(&[0x80, 0, 0, 1, 0], relay_a).await.unwrap();
    let mut v1 = pcmu(52, SSRC_A);
    v1[0] = 0x40;
    phone_a.send_to(&v1, relay_a).await.unwrap();

    let expected = RelayStats {
        rtp_packets_a_to_b: 50,
        rtp_bytes_a_to_b: 50 * PCMU_PACKET as u64,
        rtp_packets_b_to_a: 51,
        rtp_bytes_b_to_a: 51 * PCMU_PACKET as u64,
        rtcp_packets_a_to_b: 1,
        rtcp_packets_b_to_a: 1,
        dropped_no_peer: 0,
        dropped_malformed: 2,
        dropped_send_error: 0,
    };
    assert_eq!(stats_until(&session, |s| *s == expected).await, expected);
    assert!(
        nothing_queued(&phone_b),
        "malformed packets were not relayed"
    );
    assert_eq!(metrics.rtp_packets.get(), 101);
    assert_eq!(metrics.rtp_bytes.get(), 101 * PCMU_PACKET as u64);
    assert_eq!(metrics.rtcp_packets.get(), 2);
    assert_eq!(metrics.dropped_malformed(), 2);
    assert_eq!(metrics.dropped_no_peer(), 0);
}

#[tokio::test]
async fn packets_for_a_side_without_peer_are_dropped_until_it_sends() {
    let (_relay, metrics, session) = relay_with_session(4).await;
    let relay_a = session.local_addr(Side::A);
    let relay_b = session.local_addr(Side::B);
    let phone_a = phone().await;
    let phone_b = phone().await;

    // No hints at all: A's packets have nowhere to go.
    for seq in 1..=3 {
        phone_a.send_to(&pcmu(seq, 7), relay_a).await.unwrap();
    }
    let stats = stats_until(&session, |s| s.dropped_no_peer == 3).await;
    assert_eq!(stats.dropped_no_peer, 3);
    assert_eq!(stats.rtp_packets_a_to_b, 0);

    // A's first packet latched A's address, so B's packet reaches A.
    phone_b.send_to(&pcmu(1, 8), relay_b).await.unwrap();
    let (got, _) = recv(&phone_a).await;
    assert_eq!(got, pcmu(1, 8));
    // And now B is latched: A's next packet reaches B.
    phone_a.send_to(&pcmu(4, 7), relay_a).await.unwrap();
    let (got, _) = recv(&phone_b).await;
    assert_eq!(got, pcmu(4, 7));

    let stats = stats_until(&session, |s| s.rtp_packets_a_to_b == 1).await;
    assert_eq!(stats.rtp_packets_a_to_b, 1);
    assert_eq!(stats.rtp_packets_b_to_a, 1);
    assert_eq!(stats.dropped_no_peer, 3);
    assert_eq!(metrics.dropped_no_peer(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_are_exhausted_then_freed_on_drop_and_close() {
    // 4 ports = exactly one session (two RTP/RTCP pairs).
    let (relay, _metrics, session) = relay_with_session(4).await;
    assert_eq!(relay.capacity(), 1);
    let ports = [session.local_addr(Side::A), session.local_addr(Side::B)];
    assert!(matches!(
        relay.allocate().await,
        Err(MediaError::PortsExhausted)
    ));

    // Dropping the session frees its ports (the task closes its sockets asynchronously:
    // poll, bounded).
    drop(session);
    let deadline = Instant::now() + WAIT;
    let again = loop {
        match relay.allocate().await {
            Ok(s) => break s,
            Err(MediaError::PortsExhausted) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(e) => panic!("ports not freed after drop: {e}"),
        }
    };
    let mut again_ports = [again.local_addr(Side::A), again.local_addr(Side::B)];
    again_ports.sort();
    let mut sorted = ports;
    sorted.sort();
    assert_eq!(again_ports, sorted, "the same four ports are reused");
    assert!(matches!(
        relay.allocate().await,
        Err(MediaError::PortsExhausted)
    ));

    // close() returns once the sockets are closed: the next allocate succeeds at once.
    again.close().await;
    let third = relay
        .allocate()
        .await
        .expect("ports free right after close()");
    assert!(matches!(
        relay.allocate().await,
        Err(MediaError::PortsExhausted)
    ));
    drop(third);
}

#[tokio::test]
async fn empty_range_is_exhausted() {
    let relay = MediaRelay::new(
        RelayConfig {
            bind: LOOPBACK,
            port_min: 40_000,
            port_max: 40_000, // not even one RTP/RTCP pair
        },
        RelayMetrics::default(),
    );
    assert_eq!(relay.capacity(), 0);
    assert!(matches!(
        relay.allocate().await,
        Err(MediaError::PortsExhausted)
    ));
    let inverted = MediaRelay::new(
        RelayConfig {
            bind: LOOPBACK,
            port_min: 40_010,
            port_max: 40_000,
        },
        RelayMetrics::default(),
    );
    assert!(matches!(
        inverted.allocate().await,
        Err(MediaError::PortsExhausted)
    ));
}

#[tokio::test]
async fn a_new_hint_forgets_the_latched_address_and_a_repeated_one_does_not() {
    let (_relay, _metrics, session) = relay_with_session(4).await;
    let relay_a = session.local_addr(Side::A);
    let relay_b = session.local_addr(Side::B);
    let (sdp_1, sdp_2, phone_a1, phone_a2, phone_b) = (
        phone().await,
        phone().await,
        phone().await,
        phone().await,
        phone().await,
    );
    session.set_peer_hint(Side::A, sdp_1.local_addr().unwrap());
    session.set_peer_hint(Side::B, phone_b.local_addr().unwrap());

    // A latches to phone_a1.
    phone_a1.send_to(&pcmu(1, 1), relay_a).await.unwrap();
    assert_eq!(recv(&phone_b).await.0, pcmu(1, 1));
    phone_b.send_to(&pcmu(1, 2), relay_b).await.unwrap();
    assert_eq!(recv(&phone_a1).await.0, pcmu(1, 2));

    // A re-INVITE moves A's media: the new hint applies until A sends again.
    session.set_peer_hint(Side::A, sdp_2.local_addr().unwrap());
    phone_b.send_to(&pcmu(2, 2), relay_b).await.unwrap();
    assert_eq!(recv(&sdp_2).await.0, pcmu(2, 2));

    // A sends from its new real address and latches again; repeating the same hint
    // (e.g. a re-INVITE for hold) keeps the latch.
    phone_a2.send_to(&pcmu(2, 1), relay_a).await.unwrap();
    assert_eq!(recv(&phone_b).await.0, pcmu(2, 1));
    session.set_peer_hint(Side::A, sdp_2.local_addr().unwrap());
    phone_b.send_to(&pcmu(3, 2), relay_b).await.unwrap();
    assert_eq!(recv(&phone_a2).await.0, pcmu(3, 2));

    assert!(nothing_queued(&sdp_1));
    assert!(nothing_queued(&sdp_2));
    assert!(nothing_queued(&phone_a1));
}
