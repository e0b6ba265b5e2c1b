//! Micro-benchmarks of the call path's hot spots (issue 8), with criterion:
//! SIP parse + serialize of a typical trunk INVITE (RFC 3261 §7), transaction lookup among
//! many live server transactions (§17.2.3), the ACD's offer decision with 60 calls waiting
//! and 20 seats, and the relay of one RTP packet (RFC 3550) through a `RelaySession` on
//! loopback. Run with `cargo bench --bench hot_paths`; criterion prints each figure.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ulid::Ulid;
use vigie::acd::{Acd, Decision, QueueSpec};
use vigie::media::{EngineConfig, MediaError, MediaRelay, RelayConfig, RelayMetrics, Side};
use vigie::sip::message::Message;
use vigie::sip::parse::{parse_datagram, parse_datagram_bytes};
use vigie::sip::transaction::{TimerConfig, TransactionLayer};
use vigie::sip::transport::{Peer, TransportKind};

/// A trunk's INVITE to line 19 with an SDP offer, as a carrier sends it (~900 octets).
fn invite(branch: &str) -> String {
    let sdp = "v=0\r\no=trunk 53655765 2353687637 IN IP4 192.0.2.10\r\ns=-\r\n\
               c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 0 101\r\n\
               a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
               a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";
    format!(
        "INVITE sip:19@198.51.100.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Caller\" <sip:+212600000001@192.0.2.10>;tag=a73kszlfl\r\n\
         To: <sip:19@198.51.100.1>\r\n\
         Call-ID: {branch}@192.0.2.10\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:trunk@192.0.2.10:5060;transport=udp>\r\n\
         P-Asserted-Identity: <sip:+212600000001@192.0.2.10>\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE\r\n\
         Supported: timer, 100rel\r\n\
         User-Agent: carrier-sbc/4.2\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

fn sip_parse_serialize(c: &mut Criterion) {
    let text = invite("z9hG4bK776asdhds");
    let raw = Bytes::from(text.clone().into_bytes());
    let mut g = c.benchmark_group("sip");
    g.bench_function("parse INVITE", |b| {
        b.iter(|| parse_datagram(black_box(text.as_bytes())))
    });
    g.bench_function("parse INVITE (Bytes body, no copy)", |b| {
        b.iter(|| parse_datagram_bytes(black_box(&raw)))
    });
    let Ok(msg) = parse_datagram(text.as_bytes()) else {
        panic!("the bench INVITE must parse");
    };
    g.bench_function("serialize INVITE", |b| {
        b.iter(|| black_box(&msg).to_bytes())
    });
    g.bench_function("parse + serialize INVITE", |b| {
        b.iter(|| parse_datagram(black_box(text.as_bytes())).map(|m| m.to_bytes()))
    });
    g.finish();
}

/// A retransmitted INVITE found among `live` server transactions (RFC 3261 §17.2.1:
/// the retransmission is absorbed and the last provisional response resent).
fn transaction_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("transaction");
    for live in [100usize, 10_000] {
        let mut layer = TransactionLayer::new(TimerConfig::default());
        let now = Instant::now();
        let peer = Peer {
            kind: TransportKind::Udp,
            addr: SocketAddr::from(([192, 0, 2, 10], 5060)),
        };
        for i in 0..live {
            let Ok(m) = parse_datagram(invite(&format!("z9hG4bK{i:08}")).as_bytes()) else {
                panic!("the bench INVITE must parse");
            };
            layer.handle_incoming(now, peer, m);
            while layer.poll_event().is_some() {}
            while layer.poll_transmit().is_some() {}
        }
        let Ok(Message::Request(probe)) =
            parse_datagram(invite(&format!("z9hG4bK{:08}", live / 2)).as_bytes())
        else {
            panic!("the bench INVITE must parse");
        };
        g.bench_function(format!("retransmitted INVITE among {live} live"), |b| {
            b.iter_batched(
                || Message::Request(probe.clone()),
                |m| {
                    layer.handle_incoming(now, peer, m);
                    let mut out = 0;
                    while layer.poll_event().is_some() {
                        out += 1;
                    }
                    while layer.poll_transmit().is_some() {
                        out += 1;
                    }
                    out
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// 20 seats on calls and 60 calls waiting; one call ends: the ACD must pick the next
/// waiting call for the freed seat.
fn acd_offer(c: &mut Criterion) {
    let spec = QueueSpec {
        name: "line19".into(),
        ring_timeout: Duration::from_secs(15),
        wrap_up: Duration::ZERO,
        max_wait: Some(Duration::from_secs(120)),
        has_overflow: false,
        overflow_timeout: Duration::from_secs(20),
        overflow_retry: Duration::from_secs(30),
        retry: Duration::from_secs(5),
        seats: vec![],
        ..QueueSpec::default()
    };
    let seats: Vec<String> = (1..=20).map(|i| format!("agent{i:02}")).collect();
    let t0 = Instant::now();
    let loaded = || {
        let mut acd = Acd::new(vec![spec.clone()], seats.clone());
        for s in &seats {
            acd.seat_online(t0, s);
        }
        for n in 0..80u64 {
            let _ = acd.enqueue(t0, Ulid::from_parts(n, 0), "line19");
        }
        while let Some(d) = acd.poll_decision() {
            if let Decision::Offer { call, seat } = d {
                acd.offer_answered(t0, call, &seat);
            }
        }
        acd
    };
    c.bench_function("acd: offer decision, 60 waiting, 20 seats", |b| {
        b.iter_batched(
            loaded,
            |mut acd| {
                acd.call_ended(t0 + Duration::from_secs(1), Ulid::from_parts(0, 0));
                acd.poll_decision()
            },
            BatchSize::SmallInput,
        )
    });
}

/// One 172-octet PCMA packet from the caller's phone through the relay to the seat's
/// phone (both phones are blocking sockets; the relay runs on its own epoll thread, one
/// thread here).
fn rtp_relay(c: &mut Criterion) {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut found = None;
    for k in 0..200u16 {
        let base = 40_000 + (k * 16) % 20_000;
        // No tick: a lone packet's round trip is timed, not the rest between busy loops.
        let relay = MediaRelay::with_engine(
            RelayConfig {
                bind: lo,
                port_min: base,
                port_max: base + 15,
            },
            RelayMetrics::default(),
            EngineConfig {
                threads: 1,
                tick: Duration::ZERO,
            },
        );
        match relay.allocate() {
            Ok(s) => {
                found = Some((relay, s));
                break;
            }
            Err(MediaError::PortsExhausted) => continue,
            Err(e) => panic!("relay allocate: {e}"),
        }
    }
    let Some((_relay, session)) = found else {
        panic!("no free relay ports");
    };
    let (Ok(caller), Ok(seat)) = (
        std::net::UdpSocket::bind((lo, 0)),
        std::net::UdpSocket::bind((lo, 0)),
    ) else {
        panic!("phones");
    };
    let (Ok(seat_addr), Ok(())) = (
        seat.local_addr(),
        seat.set_read_timeout(Some(Duration::from_secs(2))),
    ) else {
        panic!("seat socket");
    };
    session.set_peer_hint(Side::B, seat_addr);
    let to = session.local_addr(Side::A);
    let mut pkt = [0xD5u8; 172];
    pkt[0] = 0x80;
    pkt[1] = 8;
    let mut buf = [0u8; 2048];
    let mut seq: u16 = 0;
    c.bench_function("rtp: relay one packet A→B (loopback round)", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            pkt[2..4].copy_from_slice(&seq.to_be_bytes());
            let _ = caller.send_to(&pkt, to);
            seat.recv(&mut buf).unwrap_or(0)
        })
    });
    drop(session);
}

criterion_group!(
    benches,
    sip_parse_serialize,
    transaction_lookup,
    acd_offer,
    rtp_relay
);
criterion_main!(benches);
