//! RTP/RTCP relay over real UDP sockets on 127.0.0.1 (RFC 3550, symmetric RTP RFC 4961).
//!
//! Two "phones" send valid 172-octet PCMU packets (12-octet header + 160 octets = 20 ms)
//! through a relay session. The relay's port range is picked at random and retried if busy,
//! so tests run in parallel with each other and with other programs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout};

use vigie::media::{
    Codec, EngineConfig, MediaError, MediaRelay, PlayState, Prompt, RecordError, RelayConfig,
    RelayMetrics, RelaySession, RelayStats, Side, alaw_to_linear, ulaw_to_linear,
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
        match relay.allocate() {
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

/// Poll until `done` holds (bounded by [`WAIT`]): the relay threads add to the shared
/// metrics once per loop iteration, just after the packets of that iteration have left.
async fn until(done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
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
        ..RelayStats::default()
    };
    assert_eq!(stats_until(&session, |s| *s == expected).await, expected);
    assert!(
        nothing_queued(&phone_b),
        "malformed packets were not relayed"
    );
    until(|| metrics.rtp_packets.get() == 101 && metrics.rtcp_packets.get() == 2).await;
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
    until(|| metrics.dropped_no_peer() == 3).await;
    assert_eq!(metrics.dropped_no_peer(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_are_exhausted_then_freed_on_drop_and_close() {
    // 4 ports = exactly one session (two RTP/RTCP pairs).
    let (relay, _metrics, session) = relay_with_session(4).await;
    assert_eq!(relay.capacity(), 1);
    let ports = [session.local_addr(Side::A), session.local_addr(Side::B)];
    assert!(matches!(relay.allocate(), Err(MediaError::PortsExhausted)));

    // Dropping the session frees its ports (the task closes its sockets asynchronously:
    // poll, bounded).
    drop(session);
    let deadline = Instant::now() + WAIT;
    let again = loop {
        match relay.allocate() {
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
    assert!(matches!(relay.allocate(), Err(MediaError::PortsExhausted)));

    // close() returns once the sockets are closed: the next allocate succeeds at once.
    again.close().await;
    let third = relay.allocate().expect("ports free right after close()");
    assert!(matches!(relay.allocate(), Err(MediaError::PortsExhausted)));
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
    assert!(matches!(relay.allocate(), Err(MediaError::PortsExhausted)));
    let inverted = MediaRelay::new(
        RelayConfig {
            bind: LOOPBACK,
            port_min: 40_010,
            port_max: 40_000,
        },
        RelayMetrics::default(),
    );
    assert!(matches!(
        inverted.allocate(),
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

/// Two forks of a call answered at once: a losing phone's packet reaches port B first and
/// latches it, then the bridged phone (the one the hint names) sends from its SDP address:
/// it takes the latch back and the caller's media goes to it, not to the loser.
#[tokio::test]
async fn a_packet_from_the_hinted_address_takes_the_latch_from_a_stray_source() {
    let (_relay, _metrics, session) = relay_with_session(4).await;
    let relay_a = session.local_addr(Side::A);
    let relay_b = session.local_addr(Side::B);
    let (phone_a, winner, loser) = (phone().await, phone().await, phone().await);
    session.set_peer_hint(Side::A, phone_a.local_addr().unwrap());
    session.set_peer_hint(Side::B, winner.local_addr().unwrap());

    loser.send_to(&pcmu(1, 9), relay_b).await.unwrap();
    assert_eq!(recv(&phone_a).await.0, pcmu(1, 9));
    phone_a.send_to(&pcmu(1, 1), relay_a).await.unwrap();
    assert_eq!(recv(&loser).await.0, pcmu(1, 1));

    winner.send_to(&pcmu(1, 2), relay_b).await.unwrap();
    assert_eq!(recv(&phone_a).await.0, pcmu(1, 2));
    phone_a.send_to(&pcmu(2, 1), relay_a).await.unwrap();
    assert_eq!(recv(&winner).await.0, pcmu(2, 1));
    // The loser's later packets do not take it back.
    loser.send_to(&pcmu(2, 9), relay_b).await.unwrap();
    assert_eq!(recv(&phone_a).await.0, pcmu(2, 9));
    phone_a.send_to(&pcmu(3, 1), relay_a).await.unwrap();
    assert_eq!(recv(&winner).await.0, pcmu(3, 1));
    assert!(nothing_queued(&loser));
}

/// An RTP packet with the given payload type and payload (timestamp = 160 × seq).
fn rtp(pt: u8, seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An RTCP RR from `reporter` with one report block about `source` (RFC 3550 §6.4.2).
fn rtcp_rr_block(
    reporter: u32,
    source: u32,
    fraction: u8,
    cumulative: u32,
    jitter: u32,
) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0x00, 0x07];
    p.extend_from_slice(&reporter.to_be_bytes());
    p.extend_from_slice(&source.to_be_bytes());
    p.extend_from_slice(&((u32::from(fraction) << 24) | (cumulative & 0xFF_FFFF)).to_be_bytes());
    p.extend_from_slice(&0x0001_0064u32.to_be_bytes()); // highest seq
    p.extend_from_slice(&jitter.to_be_bytes());
    p.extend_from_slice(&[0u8; 8]); // LSR, DLSR
    p
}

struct RtpFields {
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
}

fn fields(p: &[u8]) -> RtpFields {
    RtpFields {
        marker: p[1] & 0x80 != 0,
        pt: p[1] & 0x7F,
        seq: u16::from_be_bytes([p[2], p[3]]),
        ts: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_arrives_as_rtp_in_the_sides_codec_packet_count_for_its_length() {
    let (_relay, metrics, session) = relay_with_session(8).await;
    let phone_a = phone().await;
    session.set_peer_hint(Side::A, phone_a.local_addr().unwrap());
    session.set_codec(Side::A, Codec::Pcma, 8).unwrap();
    // 1000 samples = 125 ms → 7 packets of 20 ms, the last padded with silence.
    let samples: Vec<i16> = (0..1000)
        .map(|i| ((i % 50) * 400 - 10_000) as i16)
        .collect();
    let prompt = Arc::new(Prompt::from_samples("test", &samples));
    assert_eq!(prompt.packets(), 7);
    let started = Instant::now();
    let mut handle = session.play(Side::A, Arc::clone(&prompt), false).unwrap();

    let mut first: Option<RtpFields> = None;
    for i in 0..7u16 {
        let (packet, from) = recv(&phone_a).await;
        assert_eq!(
            from,
            session.local_addr(Side::A),
            "sent from side A's relay socket"
        );
        assert_eq!(packet.len(), 172, "12-octet header + 160 octets");
        assert_eq!(packet[0], 0x80, "RTP version 2, no padding/extension/CSRC");
        let f = fields(&packet);
        assert_eq!(f.pt, 8, "PCMA payload type");
        assert_eq!(f.marker, i == 0, "marker only on the first packet");
        let expected_payload = prompt.packet(Codec::Pcma, usize::from(i)).unwrap();
        assert_eq!(&packet[12..], expected_payload, "packet {i} payload");
        if let Some(first) = &first {
            assert_eq!(f.seq, first.seq.wrapping_add(i));
            assert_eq!(f.ts, first.ts.wrapping_add(160 * u32::from(i)));
            assert_eq!(f.ssrc, first.ssrc);
        } else {
            first = Some(f);
        }
    }
    let state = timeout(WAIT, handle.finished()).await.expect("play ends");
    assert_eq!(state, PlayState::Finished);
    // Paced at 20 ms: 7 packets take at least 6 intervals to send.
    assert!(
        started.elapsed() >= Duration::from_millis(120),
        "{:?}",
        started.elapsed()
    );
    assert!(nothing_queued(&phone_a), "exactly 7 packets");
    assert_eq!(session.stats().prompt_packets_to_a, 7);
    assert_eq!(session.stats().prompt_packets_to_b, 0);
    until(|| metrics.prompt_packets.get() == 7).await;
    assert_eq!(metrics.prompt_packets.get(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_media_preempts_a_prompt_and_they_never_interleave() {
    let (_relay, _metrics, session) = relay_with_session(8).await;
    let phone_a = phone().await;
    let phone_b = phone().await;
    session.set_peer_hint(Side::A, phone_a.local_addr().unwrap());
    session.set_peer_hint(Side::B, phone_b.local_addr().unwrap());
    let prompt = Arc::new(Prompt::from_samples("hold", &[500; 1600]));
    let mut handle = session.play(Side::A, prompt, true).unwrap();
    let (packet, _) = recv(&phone_a).await;
    let prompt_ssrc = fields(&packet).ssrc;
    assert_eq!(handle.state(), PlayState::Playing);

    // The seat answers: its RTP reaches A and the prompt stops.
    const SSRC_B: u32 = 0x0B0B_0B0B;
    phone_b
        .send_to(&pcmu(1, SSRC_B), session.local_addr(Side::B))
        .await
        .unwrap();
    let state = timeout(WAIT, handle.finished()).await.expect("play ends");
    assert_eq!(state, PlayState::Preempted);
    phone_b
        .send_to(&pcmu(2, SSRC_B), session.local_addr(Side::B))
        .await
        .unwrap();
    // Prompt packets sent before the first relayed one may still be queued; after it,
    // only relayed media.
    let mut relayed = 0;
    while relayed < 2 {
        let (packet, _) = recv(&phone_a).await;
        let ssrc = fields(&packet).ssrc;
        if relayed > 0 {
            assert_eq!(ssrc, SSRC_B, "no prompt packet after relayed media");
        }
        if ssrc == SSRC_B {
            relayed += 1;
        } else {
            assert_eq!(ssrc, prompt_ssrc);
        }
    }
    assert!(nothing_queued(&phone_a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_caller_left_and_seat_right_decoded_from_g711() {
    let (_relay, _metrics, session) = relay_with_session(8).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("call.wav");
    let phone_a = phone().await;
    let phone_b = phone().await;
    session.set_peer_hint(Side::A, phone_a.local_addr().unwrap());
    session.set_peer_hint(Side::B, phone_b.local_addr().unwrap());
    session.set_codec(Side::B, Codec::Pcma, 8).unwrap();
    let recording = session.record_start(path.clone()).unwrap();

    // 10 packets each way; every packet's 160 octets are one non-silent code.
    let code = |i: u16| 0x90 + i as u8;
    for seq in 0..10u16 {
        let a = rtp(0, seq, 0xA, &[code(seq); 160]);
        phone_a
            .send_to(&a, session.local_addr(Side::A))
            .await
            .unwrap();
        let b = rtp(8, seq, 0xB, &[code(seq); 160]);
        phone_b
            .send_to(&b, session.local_addr(Side::B))
            .await
            .unwrap();
    }
    let stats = stats_until(&session, |s| {
        s.rtp_packets_a_to_b == 10 && s.rtp_packets_b_to_a == 10
    })
    .await;
    assert_eq!(
        (stats.rtp_packets_a_to_b, stats.rtp_packets_b_to_a),
        (10, 10)
    );
    session.record_stop().unwrap();
    let summary = timeout(WAIT, recording.finished())
        .await
        .expect("recording completes")
        .unwrap();
    assert_eq!(summary.path, path);
    assert_eq!(summary.late_chunks, 0);

    let mut reader = hound::WavReader::open(&path).unwrap();
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    assert_eq!(samples.len() as u64, summary.frames * 2);
    let left: Vec<i16> = samples
        .iter()
        .step_by(2)
        .copied()
        .filter(|s| *s != 0)
        .collect();
    let right: Vec<i16> = samples
        .iter()
        .skip(1)
        .step_by(2)
        .copied()
        .filter(|s| *s != 0)
        .collect();
    let expected_left: Vec<i16> = (0..10)
        .flat_map(|i| [ulaw_to_linear(code(i)); 160])
        .collect();
    let expected_right: Vec<i16> = (0..10)
        .flat_map(|i| [alaw_to_linear(code(i)); 160])
        .collect();
    assert_eq!(
        left, expected_left,
        "caller on the left, µ-law decoded, in order"
    );
    assert_eq!(
        right, expected_right,
        "seat on the right, A-law decoded, in order"
    );
    // Each side's 1600 samples are contiguous (timestamps without gaps).
    let first_left = samples.iter().step_by(2).position(|s| *s != 0).unwrap();
    let run = &samples[first_left * 2..];
    assert!(run.iter().step_by(2).take(1600).all(|s| *s != 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtcp_receiver_reports_show_in_quality_and_metrics() {
    let (_relay, metrics, session) = relay_with_session(8).await;
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let phone_a = phone().await;
    let phone_a_rtcp = phone().await;
    let phone_b_rtcp = phone().await;
    session.set_peer_hints(
        Side::B,
        phone_b_rtcp.local_addr().unwrap(),
        phone_b_rtcp.local_addr().unwrap(),
    );
    let relay_a_rtcp = rtcp_addr(session.local_addr(Side::A));
    // 12 lost, fraction 64/256, jitter 240 units = 30 ms; then 20 lost, 10 ms.
    let first = rtcp_rr_block(0xA, 0xB, 64, 12, 240);
    phone_a_rtcp.send_to(&first, relay_a_rtcp).await.unwrap();
    let second = rtcp_rr_block(0xA, 0xB, 32, 20, 80);
    phone_a_rtcp.send_to(&second, relay_a_rtcp).await.unwrap();
    // Relayed unchanged to B.
    assert_eq!(recv(&phone_b_rtcp).await.0, first);
    assert_eq!(recv(&phone_b_rtcp).await.0, second);
    let deadline = Instant::now() + WAIT;
    while session.quality(Side::A).report_blocks < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let q = session.quality(Side::A);
    assert_eq!(q.report_blocks, 2);
    assert_eq!(q.fraction_lost, 0.125);
    assert_eq!(q.cumulative_lost, 20);
    assert_eq!(q.jitter_seconds, 0.01);
    assert_eq!(session.quality(Side::B).report_blocks, 0);
    assert_eq!(metrics.packets_lost(Side::A), 20, "12, then 8 more");
    assert_eq!(metrics.packets_lost(Side::B), 0);

    // vigie's own jitter estimate: a burst of packets stamped 20 ms apart arrives in far
    // less than 20 ms, so the transit time varies by about 20 ms per packet.
    for seq in 0..20 {
        phone_a
            .send_to(&pcmu(seq, 0xA), session.local_addr(Side::A))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + WAIT;
    while session.quality(Side::A).observed_jitter_seconds < 0.005 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let observed = session.quality(Side::A).observed_jitter_seconds;
    assert!(
        (0.005..1.0).contains(&observed),
        "observed jitter {observed}"
    );

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "vigie_rtp_packets_lost_total{side=\"caller\"} 20",
        "vigie_rtp_packets_lost_total{side=\"seat\"} 0",
        "vigie_rtp_jitter_seconds_count{side=\"caller\",source=\"rtcp\"} 2",
        "vigie_rtp_jitter_seconds_sum{side=\"caller\",source=\"rtcp\"} 0.04",
        "vigie_rtp_jitter_seconds_bucket{le=\"0.01\",side=\"caller\",source=\"rtcp\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_recordings_are_counted_and_the_relay_keeps_forwarding() {
    let (_relay, metrics, session) = relay_with_session(8).await;
    let phone_a = phone().await;
    let phone_b = phone().await;
    session.set_peer_hint(Side::B, phone_b.local_addr().unwrap());
    let relay_a = session.local_addr(Side::A);

    // An unwritable place: the directory does not exist.
    let missing = tempfile::tempdir().unwrap().path().join("gone/call.wav");
    let recording = session.record_start(missing).unwrap();
    let result = timeout(WAIT, recording.finished())
        .await
        .expect("writer ends");
    assert!(
        matches!(result, Err(RecordError::Create { .. })),
        "{result:?}"
    );
    assert_eq!(metrics.recording_failures.get(), 1);

    // A full disk: /dev/full accepts the open and fails the writes (ENOSPC). 150 packets
    // are 3 s of audio, more than the writer's buffer and mixing delay.
    let recording = session.record_start("/dev/full".into()).unwrap();
    for seq in 0..150u16 {
        phone_a.send_to(&pcmu(seq, 0xA), relay_a).await.unwrap();
        let (got, _) = recv(&phone_b).await;
        assert_eq!(got, pcmu(seq, 0xA));
    }
    let result = timeout(WAIT, recording.finished())
        .await
        .expect("writer ends");
    assert!(
        matches!(result, Err(RecordError::Write { .. })),
        "{result:?}"
    );
    assert_eq!(metrics.recording_failures.get(), 2);

    // The call goes on.
    for seq in 150..160u16 {
        phone_a.send_to(&pcmu(seq, 0xA), relay_a).await.unwrap();
        assert_eq!(recv(&phone_b).await.0, pcmu(seq, 0xA));
    }
    assert_eq!(session.stats().rtp_packets_a_to_b, 160);
    assert_eq!(session.stats().dropped_send_error, 0);
}

/// Many sessions on two relay threads: each packet leaves by its own session's other side,
/// to that session's peer, unchanged; closing some sessions (while the others carry on)
/// frees their ports and leaves the others relaying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_share_the_relay_threads() {
    const CALLS: usize = 24;
    let mut found = None;
    for _ in 0..200 {
        let base = rand::random_range(10_000u16..60_000) & !1;
        let metrics = RelayMetrics::default();
        let relay = MediaRelay::with_engine(
            RelayConfig {
                bind: LOOPBACK,
                port_min: base,
                port_max: base + 4 * CALLS as u16 - 1,
            },
            metrics.clone(),
            EngineConfig {
                threads: 2,
                tick: Duration::from_micros(200),
            },
        );
        let sessions: Result<Vec<_>, _> = (0..CALLS).map(|_| relay.allocate()).collect();
        match sessions {
            Ok(sessions) => {
                found = Some((relay, metrics, sessions));
                break;
            }
            Err(MediaError::PortsExhausted) => continue,
            Err(e) => panic!("allocate: {e}"),
        }
    }
    let (relay, metrics, mut sessions) = found.expect("a free port range in 200 tries");
    assert!(matches!(relay.allocate(), Err(MediaError::PortsExhausted)));
    let mut phones = Vec::new();
    for session in &sessions {
        let (a, b) = (phone().await, phone().await);
        session.set_peer_hint(Side::A, a.local_addr().unwrap());
        session.set_peer_hint(Side::B, b.local_addr().unwrap());
        phones.push((a, b));
    }
    for round in 0..3u16 {
        for (k, (session, (a, b))) in sessions.iter().zip(&phones).enumerate() {
            let ssrc = k as u32 + 1;
            a.send_to(&pcmu(round, ssrc), session.local_addr(Side::A))
                .await
                .unwrap();
            b.send_to(&pcmu(round, ssrc + 1000), session.local_addr(Side::B))
                .await
                .unwrap();
        }
        for (k, (session, (a, b))) in sessions.iter().zip(&phones).enumerate() {
            let ssrc = k as u32 + 1;
            assert_eq!(
                recv(b).await,
                (pcmu(round, ssrc), session.local_addr(Side::B)),
                "call {k} A→B"
            );
            assert_eq!(
                recv(a).await,
                (pcmu(round, ssrc + 1000), session.local_addr(Side::A)),
                "call {k} B→A"
            );
        }
    }
    // Close half of the calls; the rest still relay, and the freed ports can be taken.
    let kept = sessions.split_off(CALLS / 2);
    for s in sessions {
        s.close().await;
    }
    for _ in 0..CALLS / 2 {
        relay.allocate().expect("ports of closed sessions are free");
    }
    for (k, (session, (a, b))) in kept.iter().zip(phones.iter().skip(CALLS / 2)).enumerate() {
        a.send_to(&pcmu(9, 7), session.local_addr(Side::A))
            .await
            .unwrap();
        assert_eq!(recv(b).await.0, pcmu(9, 7), "kept call {k}");
        assert_eq!(session.stats().rtp_packets_a_to_b, 4);
        assert_eq!(session.stats().rtp_packets_b_to_a, 3);
    }
    until(|| metrics.rtp_packets.get() == (CALLS * 6 + CALLS / 2) as u64).await;
    assert_eq!(metrics.rtp_packets.get(), (CALLS * 6 + CALLS / 2) as u64);
}

/// Not a benchmark (nothing is timed against a target): pushes 20,000 packets through one
/// session in windows of 100 and prints the rate, for the module docs' hot-path note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_loop_throughput() {
    let (_relay, metrics, session) = relay_with_session(8).await;
    let phone_a = phone().await;
    let phone_b = phone().await;
    session.set_peer_hint(Side::B, phone_b.local_addr().unwrap());
    let relay_a = session.local_addr(Side::A);
    let packet = pcmu(1, 0xA);
    let started = Instant::now();
    let mut buf = [0u8; 2048];
    for _ in 0..200 {
        for _ in 0..100 {
            phone_a.send_to(&packet, relay_a).await.unwrap();
        }
        for _ in 0..100 {
            let (n, _) = timeout(WAIT, phone_b.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(n, PCMU_PACKET);
        }
    }
    let elapsed = started.elapsed();
    until(|| metrics.rtp_packets.get() == 20_000).await;
    assert_eq!(metrics.rtp_packets.get(), 20_000);
    eprintln!(
        "relay_loop_throughput: 20000 packets in {elapsed:?}: {:.0} packets/s",
        20_000.0 / elapsed.as_secs_f64()
    );
}

/// `tools/make-prompts` (espeak-ng + sox, installed by tools/test) writes prompts that
/// [`Prompt::load`] accepts, French and Arabic.
#[test]
fn make_prompts_generates_loadable_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/make-prompts");
    let mut child = std::process::Command::new(script)
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run tools/make-prompts");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tools/make-prompts took over 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "tools/make-prompts failed: {status}");
    for name in [
        "welcome",
        "please-hold",
        "admin-closed",
        "position",
        "recorded",
    ] {
        for lang in ["fr", "ar"] {
            let path = dir.path().join(lang).join(format!("{name}.wav"));
            let prompt = Prompt::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                prompt.duration() > Duration::from_millis(500),
                "{lang}/{name}: {:?}",
                prompt.duration()
            );
        }
    }
    for n in [0, 7, 19, 20] {
        let path = dir.path().join("fr/digits").join(format!("{n}.wav"));
        assert!(Prompt::load(&path).unwrap().packets() > 5, "fr digit {n}");
    }
}
