//! Two transaction layers (UAC and UAS) on a simulated network in virtual time
//! (quinn-proto `tests/util.rs` style): every instant and count is asserted exactly.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use vigie::sip::message::{HeaderName, Headers, Message, Method, Request, Response, SipHeaders};
use vigie::sip::parse::parse_datagram;
use vigie::sip::transaction::{
    ClientTxKey, ServerTxKey, TimerConfig, TransactionLayer, Transmit, TxEvent, new_branch,
};
use vigie::sip::transport::{Peer, TransportKind};
use vigie::sip::uri::Uri;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Uac,
    Uas,
}

type DropFilter = Box<dyn FnMut(Side, &Message) -> bool>;

/// Two layers joined by a network with a fixed one-way latency and a drop filter.
struct Pair {
    start: Instant,
    now: Instant,
    latency: Duration,
    uac: TransactionLayer,
    uas: TransactionLayer,
    /// The UAC's address as the UAS sees it, and the reverse.
    uac_peer: Peer,
    uas_peer: Peer,
    in_flight: Vec<(Instant, Side, Transmit)>,
    /// Returns true to drop a message sent by `Side`.
    drop: DropFilter,
    /// Every message put on the wire: (ms since start, sender, summary, dropped).
    wire: Vec<(u64, Side, String, bool)>,
    uac_events: VecDeque<(u64, TxEvent)>,
    uas_events: VecDeque<(u64, TxEvent)>,
}

fn summary(m: &Message) -> String {
    match m {
        Message::Request(r) => r.method.to_string(),
        Message::Response(r) => format!(
            "{} {}",
            r.status,
            r.cseq().map(|c| c.method.to_string()).unwrap_or_default()
        ),
    }
}

impl Pair {
    fn new(kind: TransportKind, latency: Duration) -> Pair {
        let start = Instant::now();
        Pair {
            start,
            now: start,
            latency,
            uac: TransactionLayer::new(TimerConfig::default()),
            uas: TransactionLayer::new(TimerConfig::default()),
            uac_peer: Peer {
                kind,
                addr: "10.0.0.1:5060".parse().unwrap(),
            },
            uas_peer: Peer {
                kind,
                addr: "10.0.0.2:5060".parse().unwrap(),
            },
            in_flight: Vec::new(),
            drop: Box::new(|_, _| false),
            wire: Vec::new(),
            uac_events: VecDeque::new(),
            uas_events: VecDeque::new(),
        }
    }

    fn ms(&self) -> u64 {
        u64::try_from((self.now - self.start).as_millis()).unwrap()
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// Moves transmits onto the wire and events into the logs.
    fn flush(&mut self) {
        let ms = self.ms();
        for side in [Side::Uac, Side::Uas] {
            loop {
                let t = match side {
                    Side::Uac => self.uac.poll_transmit(),
                    Side::Uas => self.uas.poll_transmit(),
                };
                let Some(t) = t else { break };
                let expected = match side {
                    Side::Uac => self.uas_peer,
                    Side::Uas => self.uac_peer,
                };
                assert_eq!(
                    t.to,
                    expected,
                    "{side:?} sent {:?} to the wrong peer",
                    summary(&t.message)
                );
                let dropped = (self.drop)(side, &t.message);
                self.wire.push((ms, side, summary(&t.message), dropped));
                if !dropped {
                    // Through the wire format and the real parser, as on a socket.
                    let bytes = t.message.to_bytes();
                    let message = parse_datagram(&bytes)
                        .unwrap_or_else(|e| panic!("{side:?} sent unparsable {e}: {bytes:?}"));
                    self.in_flight
                        .push((self.now + self.latency, side, Transmit { message, ..t }));
                }
            }
        }
        while let Some(e) = self.uac.poll_event() {
            self.uac_events.push_back((ms, e));
        }
        while let Some(e) = self.uas.poll_event() {
            self.uas_events.push_back((ms, e));
        }
    }

    /// Runs the network and both layers' timers up to `until` (inclusive).
    fn drive(&mut self, until: Instant) {
        self.flush();
        loop {
            let next = [
                self.uac.poll_timeout(),
                self.uas.poll_timeout(),
                self.in_flight.iter().map(|(at, _, _)| *at).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|n| *n <= until) else {
                break;
            };
            self.now = self.now.max(next);
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) =
                self.in_flight.drain(..).partition(|(at, _, _)| *at <= now);
            self.in_flight = later;
            for (_, sender, t) in due {
                match sender {
                    Side::Uac => self.uas.handle_incoming(now, self.uac_peer, t.message),
                    Side::Uas => self.uac.handle_incoming(now, self.uas_peer, t.message),
                }
            }
            self.uac.handle_timeout(now);
            self.uas.handle_timeout(now);
            self.flush();
        }
        self.now = self.now.max(until);
    }

    fn drive_ms(&mut self, ms: u64) {
        let t = self.at(ms);
        self.drive(t);
    }

    /// The wire log of one sender, as (ms, summary), dropped ones included.
    fn sent_by(&self, side: Side) -> Vec<(u64, String)> {
        self.wire
            .iter()
            .filter(|(_, s, _, _)| *s == side)
            .map(|(ms, _, what, _)| (*ms, what.clone()))
            .collect()
    }

    fn send_request(&mut self, req: Request) -> ClientTxKey {
        let now = self.now;
        let key = self.uac.send_request(now, self.uas_peer, req).unwrap();
        self.flush();
        key
    }

    fn respond(&mut self, key: &ServerTxKey, resp: Response) {
        let now = self.now;
        self.uas.send_response(now, key, resp).unwrap();
        self.flush();
    }

    /// The UAS's next event, which must be a new request.
    fn uas_request(&mut self) -> (ServerTxKey, Request) {
        match self.uas_events.pop_front() {
            Some((_, TxEvent::Request { key, request, .. })) => (key, request),
            other => panic!("expected a request at the UAS, got {other:?}"),
        }
    }
}

fn request(method: Method, kind: TransportKind) -> Request {
    let mut h = Headers::new();
    h.push(
        HeaderName::Via,
        format!(
            "SIP/2.0/{} 10.0.0.1:5060;branch={};rport",
            kind.via_token(),
            new_branch()
        ),
    );
    h.push(HeaderName::MaxForwards, "70");
    h.push(HeaderName::From, "<sip:caller@10.0.0.1>;tag=uac1");
    h.push(HeaderName::To, "<sip:19@10.0.0.2>");
    h.push(HeaderName::CallId, "call-1@10.0.0.1");
    h.push(HeaderName::CSeq, format!("1 {method}"));
    h.push(HeaderName::Contact, "<sip:caller@10.0.0.1:5060>");
    Request {
        method,
        uri: Uri::parse("sip:19@10.0.0.2").unwrap(),
        headers: h,
        body: Bytes::new(),
    }
}

/// The ACK for a 2xx, sent by the UAC's TU in a new transaction (RFC 3261 §13.2.2.4).
fn ack_for_2xx(invite: &Request, ok: &Response) -> Request {
    let mut h = Headers::new();
    h.push(
        HeaderName::Via,
        format!("SIP/2.0/UDP 10.0.0.1:5060;branch={}", new_branch()),
    );
    h.push(
        HeaderName::From,
        invite.headers.get(&HeaderName::From).unwrap(),
    );
    h.push(HeaderName::To, ok.headers.get(&HeaderName::To).unwrap());
    h.push(HeaderName::CallId, invite.call_id().unwrap());
    h.push(HeaderName::CSeq, "1 ACK");
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        headers: h,
        body: Bytes::new(),
    }
}

fn statuses(events: &VecDeque<(u64, TxEvent)>) -> Vec<(u64, String)> {
    events
        .iter()
        .map(|(ms, e)| {
            let what = match e {
                TxEvent::Response { key, response } => {
                    format!("{} {}", response.status, key.method())
                }
                TxEvent::Request { request, .. } => format!("request {}", request.method),
                TxEvent::Ack { .. } => "ack".into(),
                TxEvent::Cancelled { .. } => "cancelled".into(),
                TxEvent::Stray2xx { response, .. } => format!("stray {}", response.status),
                TxEvent::Timeout { key } => format!("timeout {}", key.method()),
                TxEvent::ServerAckTimeout { key } => format!("ack timeout {}", key.method()),
                other => format!("{other:?}"),
            };
            (*ms, what)
        })
        .collect()
}

fn list(items: &[(u64, &str)]) -> Vec<(u64, String)> {
    items.iter().map(|(ms, s)| (*ms, (*s).to_owned())).collect()
}

#[test]
fn invite_retransmitted_at_timer_a_and_times_out_at_timer_b() {
    let mut p = Pair::new(TransportKind::Udp, Duration::ZERO);
    p.drop = Box::new(|side, _| side == Side::Uac);
    let key = p.send_request(request(Method::Invite, TransportKind::Udp));
    p.drive_ms(40_000);
    // T1, 2T1, 4T1 … doubling without cap (RFC 3261 §17.1.1.2).
    let sends: Vec<u64> = [0, 500, 1_500, 3_500, 7_500, 15_500, 31_500].to_vec();
    assert_eq!(
        p.sent_by(Side::Uac),
        sends
            .iter()
            .map(|ms| (*ms, "INVITE".to_owned()))
            .collect::<Vec<_>>()
    );
    assert_eq!(statuses(&p.uac_events), list(&[(32_000, "timeout INVITE")]));
    assert!(matches!(&p.uac_events[0].1, TxEvent::Timeout { key: k } if *k == key));
    assert_eq!(p.uac.stats().retransmissions, 6);
    assert_eq!(p.uac.stats().timeouts, 1);
    assert_eq!(p.uac.stats().client_transactions, 0);
    assert_eq!(p.uac.poll_timeout(), None);
}

#[test]
fn non_invite_timer_e_doubles_to_t2_and_timer_f_fires() {
    let mut p = Pair::new(TransportKind::Udp, Duration::ZERO);
    p.drop = Box::new(|side, _| side == Side::Uac);
    p.send_request(request(Method::Options, TransportKind::Udp));
    p.drive_ms(40_000);
    let expect: Vec<(u64, String)> = [
        0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
    ]
    .iter()
    .map(|ms| (*ms, "OPTIONS".to_owned()))
    .collect();
    assert_eq!(p.sent_by(Side::Uac), expect);
    assert_eq!(
        statuses(&p.uac_events),
        list(&[(32_000, "timeout OPTIONS")])
    );
    assert_eq!(p.uac.stats().retransmissions, 10);
}

#[test]
fn non_invite_in_proceeding_retransmits_every_t2() {
    let mut p = Pair::new(TransportKind::Udp, Duration::ZERO);
    // The provisional gets through; the request retransmissions are lost.
    let mut first = true;
    p.drop = Box::new(move |side, _| {
        if side == Side::Uac {
            let d = !first;
            first = false;
            d
        } else {
            false
        }
    });
    p.send_request(request(Method::Options, TransportKind::Udp));
    p.drive_ms(0);
    let (key, req) = p.uas_request();
    p.drive_ms(200);
    p.respond(&key, req.response(183, "Working", Some("t")));
    p.drive_ms(40_000);
    // Before the 183: T1 at 500 would have come, but the 183 at 200 ms moves E to T2.
    let times: Vec<u64> = p.sent_by(Side::Uac).iter().map(|(ms, _)| *ms).collect();
    assert_eq!(
        times,
        vec![0, 500, 4_500, 8_500, 12_500, 16_500, 20_500, 24_500, 28_500]
    );
    assert_eq!(
        statuses(&p.uac_events),
        list(&[(200, "183 OPTIONS"), (32_000, "timeout OPTIONS")])
    );
}

#[test]
fn timer_h_fires_when_the_ack_for_486_is_lost() {
    let mut p = Pair::new(TransportKind::Udp, Duration::ZERO);
    p.drop = Box::new(|side, m| {
        side == Side::Uac && matches!(m, Message::Request(r) if r.method == Method::Ack)
    });
    p.send_request(request(Method::Invite, TransportKind::Udp));
    p.drive_ms(0);
    let (key, req) = p.uas_request();
    p.respond(&key, req.response(486, "Busy Here", Some("uas1")));
    p.drive_ms(40_000);
    // G: T1, 2T1, 4T1, then capped at T2 (RFC 3261 §17.2.1).
    let finals: Vec<u64> = p
        .sent_by(Side::Uas)
        .iter()
        .filter(|(_, s)| s == "486 INVITE")
        .map(|(ms, _)| *ms)
        .collect();
    assert_eq!(
        finals,
        vec![
            0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert_eq!(p.uas.stats().retransmissions, 10);
    // The UAC ACKs the first 486 and every retransmission, reporting the 486 once.
    let acks = p
        .sent_by(Side::Uac)
        .iter()
        .filter(|(_, s)| s == "ACK")
        .count();
    assert_eq!(acks, 11);
    assert_eq!(
        statuses(&p.uac_events),
        list(&[(0, "100 INVITE"), (0, "486 INVITE")])
    );
    assert_eq!(
        statuses(&p.uas_events),
        list(&[(32_000, "ack timeout INVITE")])
    );
    assert_eq!(p.uas.stats().server_transactions, 0);
    // Timer D (32 s) ended the UAC's transaction.
    assert_eq!(p.uac.stats().client_transactions, 0);
}

#[test]
fn late_ack_for_486_is_absorbed_and_timer_i_ends_the_transaction() {
    let mut p = Pair::new(TransportKind::Udp, Duration::ZERO);
    let mut acks = 0;
    p.drop = Box::new(move |side, m| {
        if side == Side::Uac && matches!(m, Message::Request(r) if r.method == Method::Ack) {
            acks += 1;
            acks == 1
        } else {
            false
        }
    });
    let invite = request(Method::Invite, TransportKind::Udp);
    p.send_request(invite);
    p.drive_ms(0);
    let (key, req) = p.uas_request();
    p.respond(&key, req.response(486, "Busy Here", Some("uas1")));
    p.drive_ms(5_499);
    let finals: Vec<u64> = p
        .sent_by(Side::Uas)
        .iter()
        .filter(|(_, s)| s == "486 INVITE")
        .map(|(ms, _)| *ms)
        .collect();
    assert_eq!(finals, vec![0, 500]);
    // The ACK reached the UAS at 500 ms: absorbed, never shown to the TU.
    assert!(p.uas_events.is_empty(), "{:?}", p.uas_events);
    assert_eq!(p.uas.stats().server_transactions, 1);
    p.drive_ms(5_500); // Timer I = T4 after the ACK.
    assert_eq!(p.uas.stats().server_transactions, 0);
    p.drive_ms(40_000);
    assert!(p.uas_events.is_empty());
}

#[test]
fn lost_200_to_non_invite_is_resent_from_the_server_cache() {
    let mut p = Pair::new(TransportKind::Udp, Duration::ZERO);
    let mut oks = 0;
    p.drop = Box::new(move |side, m| {
        if side == Side::Uas && matches!(m, Message::Response(r) if r.status == 200) {
            oks += 1;
            oks == 1
        } else {
            false
        }
    });
    let key = p.send_request(request(Method::Options, TransportKind::Udp));
    p.drive_ms(0);
    let (skey, req) = p.uas_request();
    p.respond(&skey, req.response(200, "OK", Some("uas1")));
    p.drive_ms(40_000);
    assert_eq!(
        p.sent_by(Side::Uac),
        list(&[(0, "OPTIONS"), (500, "OPTIONS")])
    );
    assert_eq!(
        p.sent_by(Side::Uas),
        list(&[(0, "200 OPTIONS"), (500, "200 OPTIONS")])
    );
    // One request for the UAS's TU, one response for the UAC's.
    assert!(p.uas_events.is_empty());
    assert_eq!(statuses(&p.uac_events), list(&[(500, "200 OPTIONS")]));
    assert!(matches!(&p.uac_events[0].1, TxEvent::Response { key: k, .. } if *k == key));
    assert_eq!(p.uas.stats().retransmissions, 1);
    // Timer K (T4) on the UAC, timer J (64*T1 after the 200) on the UAS.
    assert_eq!(p.uac.stats().client_transactions, 0);
    assert_eq!(p.uas.stats().server_transactions, 0);
}

#[test]
fn cancel_crossing_the_200_gives_no_487() {
    let mut p = Pair::new(TransportKind::Udp, Duration::from_millis(10));
    let invite = request(Method::Invite, TransportKind::Udp);
    let key = p.send_request(invite.clone());
    p.drive_ms(1_000);
    let (skey, req) = p.uas_request();
    assert_eq!(statuses(&p.uac_events), list(&[(20, "100 INVITE")]));
    p.uac_events.clear();
    // Same instant: the UAS answers 200 while the UAC cancels; they cross on the wire.
    p.respond(&skey, req.response(200, "OK", Some("uas1")));
    let now = p.now;
    let ckey = p.uac.cancel(now, &key).unwrap();
    assert_eq!(ckey.method(), &Method::Cancel);
    assert_eq!(ckey.branch(), key.branch());
    p.drive_ms(1_010);
    // The UAC got the 2xx; its TU ACKs it.
    let ok = match p.uac_events.pop_front() {
        Some((1_010, TxEvent::Response { key: k, response })) if k == key => response,
        other => panic!("expected the 200 to the INVITE, got {other:?}"),
    };
    assert_eq!(ok.status, 200);
    p.uac
        .send_stateless(p.uas_peer, Message::Request(ack_for_2xx(&invite, &ok)));
    p.drive_ms(40_000);
    assert_eq!(statuses(&p.uac_events), list(&[(1_020, "200 CANCEL")]));
    // The UAS answered the CANCEL with 200 and told its TU nothing but the ACK.
    assert_eq!(
        p.sent_by(Side::Uas),
        list(&[
            (10, "100 INVITE"),
            (1_000, "200 INVITE"),
            (1_010, "200 CANCEL")
        ])
    );
    assert_eq!(statuses(&p.uas_events), list(&[(1_020, "ack")]));
    assert_eq!(
        p.sent_by(Side::Uac),
        list(&[(0, "INVITE"), (1_000, "CANCEL"), (1_010, "ACK")])
    );
    assert_eq!(p.uas.stats().retransmissions, 0);
    assert_eq!(p.uac.stats().client_transactions, 0);
    assert_eq!(p.uas.stats().server_transactions, 0);
}

#[test]
fn cancel_before_any_provisional_is_held_until_the_180() {
    let mut p = Pair::new(TransportKind::Udp, Duration::from_millis(10));
    // The 100 Trying is lost, so the 180 is the first provisional the UAC sees.
    p.drop = Box::new(|side, m| {
        side == Side::Uas && matches!(m, Message::Response(r) if r.status == 100)
    });
    let key = p.send_request(request(Method::Invite, TransportKind::Udp));
    let now = p.now;
    p.uac.cancel(now, &key).unwrap();
    p.drive_ms(1_000);
    let (skey, req) = p.uas_request();
    assert_eq!(
        p.sent_by(Side::Uac),
        list(&[(0, "INVITE"), (500, "INVITE")])
    );
    p.respond(&skey, req.response(180, "Ringing", Some("uas1")));
    p.drive_ms(1_020);
    // CANCEL left as soon as the 180 arrived (1 010 ms), reached the UAS at 1 020 ms.
    let cancelled = p.uas_events.pop_front();
    match cancelled {
        Some((1_020, TxEvent::Cancelled { invite, cancel })) => {
            assert_eq!(invite, skey);
            assert_eq!(cancel.method, Method::Cancel);
        }
        other => panic!("expected Cancelled, got {other:?}"),
    }
    p.respond(&skey, req.response(487, "Request Terminated", Some("uas1")));
    p.drive_ms(40_000);
    assert_eq!(
        p.sent_by(Side::Uac),
        list(&[
            (0, "INVITE"),
            (500, "INVITE"),
            (1_010, "CANCEL"),
            (1_030, "ACK")
        ])
    );
    assert_eq!(
        p.sent_by(Side::Uas),
        list(&[
            (10, "100 INVITE"),
            (510, "100 INVITE"),
            (1_000, "180 INVITE"),
            (1_020, "200 CANCEL"),
            (1_020, "487 INVITE"),
        ])
    );
    assert_eq!(
        statuses(&p.uac_events),
        list(&[
            (1_010, "180 INVITE"),
            (1_030, "200 CANCEL"),
            (1_030, "487 INVITE")
        ])
    );
    assert!(p.uas_events.is_empty());
}

#[test]
fn lost_ack_for_2xx_makes_the_uas_retransmit_the_2xx_until_timer_l() {
    let mut p = Pair::new(TransportKind::Udp, Duration::ZERO);
    p.drop = Box::new(|side, m| {
        side == Side::Uac && matches!(m, Message::Request(r) if r.method == Method::Ack)
    });
    let invite = request(Method::Invite, TransportKind::Udp);
    let key = p.send_request(invite.clone());
    p.drive_ms(0);
    let (skey, req) = p.uas_request();
    p.respond(&skey, req.response(200, "OK", Some("uas1")));
    p.drive_ms(0);
    // The UAC's TU answers every 2xx (the first and each stray copy) with an ACK.
    let mut strays = 0;
    let mut t = 0;
    while t <= 40_000 {
        p.drive_ms(t);
        while let Some((_, e)) = p.uac_events.pop_front() {
            let ok = match e {
                TxEvent::Response { key: k, response } if k == key && response.status == 200 => {
                    response
                }
                TxEvent::Stray2xx { response, .. } => {
                    strays += 1;
                    response
                }
                _ => continue,
            };
            let ack = ack_for_2xx(&invite, &ok);
            p.uac.send_stateless(p.uas_peer, Message::Request(ack));
            p.flush();
        }
        t += 100;
    }
    let oks: Vec<u64> = p
        .sent_by(Side::Uas)
        .iter()
        .filter(|(_, s)| s == "200 INVITE")
        .map(|(ms, _)| *ms)
        .collect();
    // RFC 6026 Accepted: T1, 2T1, 4T1, capped at T2, until 64*T1.
    assert_eq!(
        oks,
        vec![
            0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert_eq!(strays, 10);
    assert_eq!(
        statuses(&p.uas_events),
        list(&[(32_000, "ack timeout INVITE")])
    );
}

#[test]
fn tcp_has_no_retransmissions_and_zero_wait_timers() {
    let mut p = Pair::new(TransportKind::Tcp, Duration::ZERO);
    p.drop = Box::new(|side, _| side == Side::Uac);
    p.send_request(request(Method::Invite, TransportKind::Tcp));
    p.send_request(request(Method::Options, TransportKind::Tcp));
    p.drive_ms(40_000);
    assert_eq!(p.sent_by(Side::Uac), list(&[(0, "INVITE"), (0, "OPTIONS")]));
    assert_eq!(
        statuses(&p.uac_events),
        list(&[(32_000, "timeout INVITE"), (32_000, "timeout OPTIONS")])
    );
    assert_eq!(p.uac.stats().retransmissions, 0);

    // A 486 whose ACK is lost: no G retransmission, H still fires.
    let mut p = Pair::new(TransportKind::Tcp, Duration::ZERO);
    p.drop = Box::new(|side, m| {
        side == Side::Uac && matches!(m, Message::Request(r) if r.method == Method::Ack)
    });
    p.send_request(request(Method::Invite, TransportKind::Tcp));
    p.drive_ms(0);
    let (skey, req) = p.uas_request();
    p.respond(&skey, req.response(486, "Busy Here", Some("u")));
    // Timer D is zero over TCP: the UAC's transaction is gone at once.
    assert_eq!(p.uac.stats().client_transactions, 1);
    p.drive_ms(0);
    assert_eq!(p.uac.stats().client_transactions, 0);
    p.drive_ms(40_000);
    assert_eq!(
        p.sent_by(Side::Uas),
        list(&[(0, "100 INVITE"), (0, "486 INVITE")])
    );
    assert_eq!(
        statuses(&p.uas_events),
        list(&[(32_000, "ack timeout INVITE")])
    );
    assert_eq!(p.uas.stats().retransmissions, 0);

    // A non-INVITE answered over TCP: both transactions end at once (J and K zero).
    let mut p = Pair::new(TransportKind::Tcp, Duration::ZERO);
    p.send_request(request(Method::Options, TransportKind::Tcp));
    p.drive_ms(0);
    let (skey, req) = p.uas_request();
    p.respond(&skey, req.response(200, "OK", Some("u")));
    assert_eq!(p.uas.stats().server_transactions, 0);
    p.drive_ms(0);
    assert_eq!(p.uac.stats().client_transactions, 0);
    assert_eq!(p.uac.poll_timeout(), None);
    assert_eq!(p.uas.poll_timeout(), None);
}

#[test]
fn a_thousand_calls_in_virtual_time() {
    let mut p = Pair::new(TransportKind::Udp, Duration::from_millis(5));
    // Lose one message in seven, deterministically.
    let mut n = 0u32;
    p.drop = Box::new(move |_, _| {
        n += 1;
        n.is_multiple_of(7)
    });
    for i in 0..1_000 {
        let mut r = request(Method::Invite, TransportKind::Udp);
        r.headers.set(HeaderName::CallId, format!("call-{i}"));
        p.send_request(r);
    }
    // The UAS's TU answers each INVITE with 486 as it arrives.
    let mut answered = 0;
    let mut t = 0;
    while t <= 100_000 {
        p.drive_ms(t);
        while let Some((_, e)) = p.uas_events.pop_front() {
            if let TxEvent::Request { key, request, .. } = e {
                let now = p.now;
                p.uas
                    .send_response(now, &key, request.response(486, "Busy Here", Some("x")))
                    .unwrap();
                answered += 1;
            }
        }
        p.flush();
        t += 50;
    }
    let finals = p
        .uac_events
        .iter()
        .filter(|(_, e)| matches!(e, TxEvent::Response { response, .. } if response.status == 486))
        .count();
    assert_eq!(answered, 1_000);
    assert_eq!(finals, 1_000);
    assert_eq!(p.uac.stats().client_transactions, 0);
    assert_eq!(p.uas.stats().server_transactions, 0);
    assert!(
        p.uac_events
            .iter()
            .all(|(_, e)| !matches!(e, TxEvent::Timeout { .. }))
    );
    // Lost messages were recovered by retransmission on both sides.
    assert!(p.uac.stats().retransmissions > 0);
    assert!(p.uas.stats().retransmissions > 0);
}

#[test]
fn register_with_digest_through_both_layers() {
    use vigie::sip::auth::{Credential, answer_challenge};
    use vigie::sip::registrar::{Registrar, RegistrarConfig, SeatChange};

    let mut p = Pair::new(TransportKind::Udp, Duration::from_millis(10));
    let realm = "vigie.test";
    let mut registrar = Registrar::new(
        RegistrarConfig::new(realm),
        vec![Credential::from_password("2001", realm, "seat-pw")],
        p.start,
        [9u8; 32],
    );
    let register = |cseq: u32, auth: Option<&str>| {
        let mut r = request(Method::Register, TransportKind::Udp);
        r.uri = Uri::parse("sip:vigie.test").unwrap();
        r.headers.set(HeaderName::To, "<sip:2001@vigie.test>");
        r.headers
            .set(HeaderName::From, "<sip:2001@vigie.test>;tag=s1");
        r.headers.set(HeaderName::CSeq, format!("{cseq} REGISTER"));
        r.headers
            .set(HeaderName::Contact, "<sip:2001@10.0.0.1:5060>;expires=120");
        if let Some(a) = auth {
            r.headers.push(HeaderName::Authorization, a);
        }
        r
    };
    let mut changes = Vec::new();
    let mut serve = |p: &mut Pair, registrar: &mut Registrar| {
        while let Some((_, e)) = p.uas_events.pop_front() {
            if let TxEvent::Request { key, from, request } = e {
                let now = p.now;
                let out = registrar.handle_register(now, from, &request);
                changes.extend(out.changes);
                p.respond(&key, out.response);
            }
        }
    };
    let k1 = p.send_request(register(1, None));
    p.drive_ms(10);
    serve(&mut p, &mut registrar);
    p.drive_ms(20);
    let challenge = match p.uac_events.pop_front() {
        Some((20, TxEvent::Response { key, response })) if key == k1 => {
            assert_eq!(response.status, 401);
            response
                .headers
                .get(&HeaderName::WwwAuthenticate)
                .unwrap()
                .to_owned()
        }
        other => panic!("expected the 401, got {other:?}"),
    };
    let auth = answer_challenge(
        &challenge,
        "REGISTER",
        "sip:vigie.test",
        "2001",
        "seat-pw",
        "cn",
        1,
    )
    .unwrap();
    let k2 = p.send_request(register(2, Some(&auth)));
    p.drive_ms(30);
    serve(&mut p, &mut registrar);
    p.drive_ms(40);
    match p.uac_events.pop_front() {
        Some((40, TxEvent::Response { key, response })) if key == k2 => {
            assert_eq!(response.status, 200);
            assert_eq!(
                response.headers.get(&HeaderName::Contact),
                Some("<sip:2001@10.0.0.1:5060>;expires=120")
            );
        }
        other => panic!("expected the 200, got {other:?}"),
    }
    assert_eq!(
        changes,
        vec![SeatChange::Online {
            seat: "2001".into()
        }]
    );
    let b = registrar.lookup("2001");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].source, p.uac_peer);
    assert_eq!(
        registrar.poll_timeout(),
        Some(p.at(30) + Duration::from_secs(120))
    );
    assert_eq!(
        registrar.expire(p.at(30) + Duration::from_secs(120)),
        vec![SeatChange::Offline {
            seat: "2001".into()
        }]
    );
}
