//! The B2BUA: calls, legs and dialogs; wires the transaction layer, the registrar, the ACD
//! and media anchoring. A sans-IO core (DESIGN §2): inputs carry the time, outputs are
//! polled, and [`Switch::poll_timeout`] says when to wake it.
//!
//! A trunk call (leg A, vigie as UAS) is answered `180 Ringing` at once (the caller hears
//! ringback while queued, never busy), queued in the ACD, and offered to seats with
//! vigie's own INVITEs (leg B, vigie as UAC). The seat's 200 becomes vigie's 200 to the
//! caller, with SDP rewritten to vigie's media relay on both legs.

pub mod dialog;
pub mod event;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ulid::Ulid;

use crate::acd::{Acd, CallId, Decision, OfferFailure, OverflowReason, QueueSpec, SeatId};
use crate::config::{Cidr, Config};
use crate::location;
use crate::sdp;
use crate::sip::message::{HeaderName, Message, Method, Request, Response, SipHeaders};
use crate::sip::registrar::{Registrar, SeatChange};
use crate::sip::transaction::{
    ClientTxKey, ServerTxKey, TimerConfig, TransactionLayer, Transmit, TxEvent,
};
use crate::sip::transport::{Peer, TransportKind};
use crate::sip::uri::{Host, Scheme, Uri};

use dialog::{Dialog, LocalAddr, new_tag, without_params};
use event::{AbandonPhase, CallEvent, CallEventKind, EndCause};

/// The methods vigie answers (the `Allow` header, RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO";

/// vigie's offer to the seat when the caller's INVITE carried no SDP: G.711 A-law and
/// µ-law and DTMF events (RFC 4733); the address is a placeholder that anchoring replaces.
const LATE_OFFER_SDP: &[u8] =
    b"v=0\r\no=- 0 0 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 9 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n";

/// Which side of the relay a media command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The caller (trunk) leg.
    A,
    /// The seat or overflow leg.
    B,
}

/// Relay ports of one call: RTP on these even ports, RTCP on the odd port above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPorts {
    pub a: u16,
    pub b: u16,
}

/// What the switch asks the media relay to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaCommand {
    /// Reserve relay ports for a call; answer with [`Switch::handle_media_ready`].
    Allocate { call: CallId },
    /// Until it latches, send RTP for `side` to this address (from that leg's SDP).
    PeerHint {
        call: CallId,
        side: Side,
        addr: SocketAddr,
    },
    /// The call is over: free its ports.
    Release { call: CallId },
}

/// What the switch asks of the IO edge.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Send a SIP message.
    Transmit(Transmit),
    /// A step of a call, for the journal and the metrics.
    Event(CallEvent),
    /// A seat came online or went offline (registrar).
    Seat {
        seat: SeatId,
        online: bool,
    },
    Media(MediaCommand),
}

/// Counters the edge exports as metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchStats {
    /// Responses sent by class (index 1–6).
    pub responses_by_class: [u64; 7],
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Seat(SeatId),
    Overflow(String),
}

#[derive(Debug)]
struct OutLeg {
    target: Target,
    tx: ClientTxKey,
    dialog: Dialog,
    invite_cseq: u32,
    answered: bool,
    ringing: bool,
    /// Set once vigie decided to withdraw the offer (CANCEL sent).
    cancelling: bool,
    /// SDP vigie sent on this leg.
    local_sdp: Bytes,
}

/// A leg B that left its call before a final response: the caller abandoned, or the
/// ring/overflow timeout passed while the far end had sent no provisional response. Its
/// INVITE client transaction lives on (a CANCEL waits for a provisional, RFC 3261 §9.1),
/// so a 2xx may still arrive: vigie ACKs it and hangs up with a BYE (RFC 3261 §15), so the
/// agent's phone is never left in a call with nobody.
#[derive(Debug)]
struct DetachedLeg {
    tx: ClientTxKey,
    dialog: Dialog,
    invite_cseq: u32,
    /// The BYE's client transaction, once a late 2xx was ACKed and hung up.
    bye: Option<ClientTxKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Queued,
    Ringing,
    Overflowing,
    Connected,
}

#[derive(Debug)]
struct Call {
    queue: String,
    /// The trunk's INVITE, to build responses from.
    invite: Request,
    invite_tx: ServerTxKey,
    a: Dialog,
    /// The caller's SDP offer (the SDP part of the INVITE body), or vigie's template
    /// when the INVITE had none.
    offer: Bytes,
    /// The INVITE had no SDP: the caller answers in its ACK.
    late_offer: bool,
    /// SDP vigie answered the caller with, once answered.
    a_sdp: Option<Bytes>,
    caller_user: String,
    caller_display: Option<String>,
    /// vigie's `o=` state towards the caller and towards leg B (RFC 3264 §8).
    origin_a: sdp::LocalOrigin,
    origin_b: sdp::LocalOrigin,
    b: Option<OutLeg>,
    media: Option<MediaPorts>,
    /// An offer decided while the relay ports were not ready yet.
    pending: Option<Decision>,
    phase: Phase,
}

/// The B2BUA core.
pub struct Switch {
    txn: TransactionLayer,
    registrar: Registrar,
    acd: Acd,
    local: LocalAddr,
    media_ip: IpAddr,
    user_agent: String,
    trunk_sources: Vec<Cidr>,
    routes: HashMap<String, String>,
    overflow_uri: HashMap<String, String>,
    calls: HashMap<CallId, Call>,
    by_invite_tx: HashMap<ServerTxKey, CallId>,
    by_sip_call_id: HashMap<String, (CallId, Side)>,
    /// Legs B withdrawn before their final response, by their SIP Call-ID.
    detached: HashMap<String, DetachedLeg>,
    outputs: VecDeque<Output>,
    stats: SwitchStats,
}

impl Switch {
    /// Builds the switch from a validated configuration. `local` is what vigie writes in
    /// Via and Contact (the listeners' real ports, known once bound).
    pub fn new(config: &Config, local: LocalAddr, registrar: Registrar) -> Switch {
        let queues: Vec<QueueSpec> = config
            .queues
            .iter()
            .map(|q| QueueSpec {
                name: q.name.clone(),
                ring_timeout: Duration::from_secs(q.ring_timeout_s),
                wrap_up: Duration::from_secs(q.wrap_up_s),
                max_wait: (q.max_wait_s > 0).then(|| Duration::from_secs(q.max_wait_s)),
                has_overflow: q.overflow_uri.is_some(),
                overflow_timeout: Duration::from_secs(q.overflow_timeout_s),
                overflow_retry: Duration::from_secs(q.overflow_retry_s),
                retry: Duration::from_secs(q.retry_s),
                seats: q.seats.clone(),
            })
            .collect();
        let routes = config
            .routes
            .iter()
            .flat_map(|r| r.numbers.iter().map(|n| (n.clone(), r.queue.clone())))
            .collect();
        let overflow_uri = config
            .queues
            .iter()
            .filter_map(|q| Some((q.name.clone(), q.overflow_uri.clone()?)))
            .collect();
        Switch {
            txn: TransactionLayer::new(TimerConfig {
                t1: Duration::from_millis(config.sip.t1_ms),
                t2: Duration::from_millis(config.sip.t2_ms),
                t4: Duration::from_millis(config.sip.t4_ms),
                d: Duration::from_secs(32),
            }),
            registrar,
            acd: Acd::new(queues, config.seats.iter().map(|s| s.id.clone())),
            local,
            media_ip: config.advertised_media_ip(),
            user_agent: config.sip.user_agent.clone(),
            trunk_sources: config.trunk_sources(),
            routes,
            overflow_uri,
            calls: HashMap::new(),
            by_invite_tx: HashMap::new(),
            by_sip_call_id: HashMap::new(),
            detached: HashMap::new(),
            outputs: VecDeque::new(),
            stats: SwitchStats::default(),
        }
    }

    /// The ACD, for snapshots (metrics, API).
    pub fn acd(&self) -> &Acd {
        &self.acd
    }

    /// True while the call is in progress.
    pub fn has_call(&self, call: CallId) -> bool {
        self.calls.contains_key(&call)
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &SwitchStats {
        &self.stats
    }

    /// Retransmissions the transaction layer has sent.
    pub fn retransmissions(&self) -> u64 {
        self.txn.stats().retransmissions
    }

    /// A parsed message from the network.
    pub fn handle_message(&mut self, now: Instant, from: Peer, msg: Message) {
        self.txn.handle_incoming(now, from, msg);
        self.pump(now);
    }

    /// Wakes the switch at (or after) the instant [`Switch::poll_timeout`] gave.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.txn.handle_timeout(now);
        for change in self.registrar.expire(now) {
            self.seat_change(now, change);
        }
        self.acd.handle_timeout(now);
        self.pump(now);
    }

    /// The relay answered an [`MediaCommand::Allocate`]: `None` when it had no ports
    /// (the call goes on; its media then cannot be anchored and flows nowhere).
    pub fn handle_media_ready(&mut self, now: Instant, call: CallId, ports: Option<MediaPorts>) {
        let pending = match self.calls.get_mut(&call) {
            Some(c) => {
                c.media = ports;
                c.pending.take()
            }
            None => {
                if ports.is_some() {
                    self.outputs
                        .push_back(Output::Media(MediaCommand::Release { call }));
                }
                return;
            }
        };
        if let Some(d) = pending {
            self.decide(now, d);
        }
        self.pump(now);
    }

    /// The next instant the switch needs [`Switch::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.txn.poll_timeout(),
            self.registrar.poll_timeout(),
            self.acd.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next output for the edge.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.outputs.pop_front() {
            return Some(o);
        }
        self.txn.poll_transmit().map(|t| {
            if let Message::Response(r) = &t.message {
                let class = usize::from(r.status / 100).min(6);
                if let Some(n) = self.stats.responses_by_class.get_mut(class) {
                    *n += 1;
                }
            }
            Output::Transmit(t)
        })
    }

    /// Runs transaction events and ACD decisions until both are quiet.
    fn pump(&mut self, now: Instant) {
        loop {
            if let Some(ev) = self.txn.poll_event() {
                self.on_tx_event(now, ev);
                continue;
            }
            if let Some(d) = self.acd.poll_decision() {
                self.decide(now, d);
                continue;
            }
            break;
        }
    }

    fn emit(&mut self, call: CallId, kind: CallEventKind) {
        self.outputs
            .push_back(Output::Event(CallEvent { call, kind }));
    }

    fn respond(&mut self, now: Instant, key: &ServerTxKey, resp: Response) {
        let status = resp.status;
        if let Err(e) = self.txn.send_response(now, key, resp) {
            tracing::debug!(status, error = %e, "response not sent");
        }
    }

    /// A response built from `req` with vigie's Server header.
    fn response_to(&self, req: &Request, status: u16, reason: &str, tag: Option<&str>) -> Response {
        let mut r = req.response(status, reason, tag);
        r.headers.push(HeaderName::Server, self.user_agent.clone());
        r
    }

    fn on_tx_event(&mut self, now: Instant, ev: TxEvent) {
        match ev {
            TxEvent::Request { key, from, request } => self.on_request(now, key, from, request),
            // The layer stops retransmitting our 2xx on the ACK (RFC 6026); an ACK only
            // matters when it carries the caller's answer to a late offer.
            TxEvent::Ack { request, .. } => self.on_ack(&request),
            TxEvent::Cancelled { invite, .. } => self.on_cancel(now, &invite),
            TxEvent::Response { key, response } => self.on_response(now, &key, response),
            TxEvent::Stray2xx { from, response } => self.on_stray_2xx(from, &response),
            TxEvent::Timeout { key } | TxEvent::TransportError { key } => {
                self.on_client_timeout(now, &key)
            }
            TxEvent::ServerAckTimeout { key } => self.on_no_ack(now, &key),
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    // ---- requests -------------------------------------------------------------------

    fn on_request(&mut self, now: Instant, key: ServerTxKey, from: Peer, req: Request) {
        if let Some(resp) = self.precheck(&req) {
            self.respond(now, &key, resp);
            return;
        }
        let to_tag = req
            .header_to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned));
        if let Some(tag) = to_tag {
            self.in_dialog(now, key, req, &tag);
            return;
        }
        match req.method {
            Method::Invite => self.new_call(now, key, from, req),
            Method::Register => {
                let outcome = self.registrar.handle_register(now, from, &req);
                let mut resp = outcome.response;
                resp.headers
                    .push(HeaderName::Server, self.user_agent.clone());
                self.respond(now, &key, resp);
                for change in outcome.changes {
                    self.seat_change(now, change);
                }
            }
            Method::Options => {
                let mut r = self.response_to(&req, 200, "OK", Some(&new_tag()));
                r.headers.push(HeaderName::Allow, ALLOW);
                r.headers.push(HeaderName::Accept, "application/sdp");
                self.respond(now, &key, r);
            }
            Method::Bye | Method::Cancel | Method::Update | Method::Info => {
                let r = self.response_to(&req, 481, "Call/Transaction Does Not Exist", None);
                self.respond(now, &key, r);
            }
            _ => {
                let mut r = self.response_to(&req, 405, "Method Not Allowed", None);
                r.headers.push(HeaderName::Allow, ALLOW);
                self.respond(now, &key, r);
            }
        }
    }

    /// RFC 3261 §8.2.1–§8.2.3 checks every request passes: method, URI scheme,
    /// extensions.
    fn precheck(&self, req: &Request) -> Option<Response> {
        if let Method::Other(_) = req.method {
            let mut r = self.response_to(req, 501, "Not Implemented", None);
            r.headers.push(HeaderName::Allow, ALLOW);
            return Some(r);
        }
        if !matches!(req.uri.scheme, Scheme::Sip | Scheme::Sips | Scheme::Tel) {
            return Some(self.response_to(req, 416, "Unsupported URI Scheme", None));
        }
        let required: Vec<String> = req
            .headers
            .get_all(&HeaderName::Require)
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        if !required.is_empty() && !matches!(req.method, Method::Ack | Method::Cancel) {
            let mut r = self.response_to(req, 420, "Bad Extension", None);
            r.headers.push(HeaderName::Unsupported, required.join(", "));
            return Some(r);
        }
        None
    }

    fn in_dialog(&mut self, now: Instant, key: ServerTxKey, req: Request, _tag: &str) {
        let found = req
            .call_id()
            .ok()
            .and_then(|cid| self.by_sip_call_id.get(cid).copied());
        let Some((call, side)) = found else {
            let r = self.response_to(&req, 481, "Call/Transaction Does Not Exist", None);
            self.respond(now, &key, r);
            return;
        };
        match req.method {
            Method::Bye => {
                let r = self.response_to(&req, 200, "OK", None);
                self.respond(now, &key, r);
                let cause = match side {
                    Side::A => EndCause::CallerHangup,
                    Side::B => EndCause::AgentHangup,
                };
                self.hang_up(now, call, side, cause);
            }
            Method::Invite | Method::Update => {
                // Session refresh or re-offer: vigie keeps the relay where it is and
                // answers with the SDP it already gave this leg (RFC 3264 §8).
                let sdp = self.calls.get(&call).and_then(|c| match side {
                    Side::A => c.a_sdp.clone(),
                    Side::B => c.b.as_ref().map(|b| b.local_sdp.clone()),
                });
                let mut r = self.response_to(&req, 200, "OK", None);
                if let Some(peer) = self.peer_of(call, side) {
                    r.headers
                        .push(HeaderName::Contact, self.local.contact(&peer));
                }
                if let Some(sdp) = sdp.filter(|_| !req.body.is_empty()) {
                    r.headers.push(HeaderName::ContentType, "application/sdp");
                    r.body = sdp;
                }
                self.respond(now, &key, r);
            }
            _ => {
                let r = self.response_to(&req, 200, "OK", None);
                self.respond(now, &key, r);
            }
        }
    }

    /// The transport peer of one leg of a call.
    fn peer_of(&self, call: CallId, side: Side) -> Option<Peer> {
        let c = self.calls.get(&call)?;
        match side {
            Side::A => Some(c.a.peer),
            Side::B => c.b.as_ref().map(|b| b.dialog.peer),
        }
    }

    fn new_call(&mut self, now: Instant, key: ServerTxKey, from: Peer, req: Request) {
        if !self
            .trunk_sources
            .iter()
            .any(|c| c.contains(from.addr.ip()))
        {
            let r = self.response_to(&req, 403, "Forbidden (not a trunk source)", None);
            self.respond(now, &key, r);
            return;
        }
        let called = req.uri.user_unescaped().unwrap_or_default();
        let Some(queue) = self.routes.get(&called).cloned() else {
            let r = self.response_to(&req, 404, "Not Found (no route for this number)", None);
            self.respond(now, &key, r);
            return;
        };
        let (Ok(from_hdr), Ok(to_hdr), Ok(call_id), Ok(_)) = (
            req.header_from(),
            req.header_to(),
            req.call_id(),
            req.cseq(),
        ) else {
            let r = self.response_to(&req, 400, "Bad Request (From, To, Call-ID or CSeq)", None);
            self.respond(now, &key, r);
            return;
        };
        let remote_target = req
            .contacts()
            .ok()
            .and_then(|c| c.into_iter().next())
            .map(|c| c.uri)
            .unwrap_or_else(|| from_hdr.uri.clone());
        let id = Ulid::generate();
        let (offer, locations) = split_body(&req);
        // Late offer (RFC 3261 §13.2.1: INVITE without SDP): vigie makes the offer to the
        // seat itself; the seat's answer becomes vigie's offer in the 200 to the caller,
        // and the caller's answer arrives in the ACK.
        let late_offer = offer.is_empty();
        let offer = if late_offer {
            Bytes::from_static(LATE_OFFER_SDP)
        } else {
            offer
        };
        let tag = new_tag();
        let a = Dialog {
            call_id: call_id.to_owned(),
            local_tag: tag.clone(),
            remote_tag: from_hdr.tag().map(str::to_owned),
            local_uri: without_params(&to_hdr),
            remote_uri: without_params(&from_hdr),
            remote_target,
            local_cseq: 0,
            peer: from,
        };
        let caller_user = from_hdr
            .uri
            .user_unescaped()
            .unwrap_or_else(|| "anonymous".to_owned());
        self.emit(
            id,
            CallEventKind::Received {
                sip_call_id: call_id.to_owned(),
                caller: caller_user.clone(),
                caller_display: from_hdr.display.clone(),
                called: called.clone(),
                source: from.addr,
            },
        );
        match locations {
            Ok(locs) => {
                for l in locs {
                    self.emit(id, CallEventKind::Located(l));
                }
            }
            Err(e) => self.emit(id, CallEventKind::LocationError(e)),
        }
        // vigie relays G.711 and needs the caller's offer in the INVITE (no late offer):
        // what no seat could be offered is refused at once (RFC 3261 §13.3.1.3), never
        // queued (every offer of it would fail).
        let mut probe = sdp::LocalOrigin::new(0);
        if let Err(e) = sdp::anchor(&offer, SocketAddr::new(self.media_ip, 0), &mut probe) {
            tracing::warn!(call = %id, error = %e, "caller's SDP offer refused (488)");
            let mut r = self.response_to(&req, 488, "Not Acceptable Here", Some(&tag));
            r.headers.push(
                HeaderName::Other("Warning".into()),
                format!(
                    "305 {} \"{}\"",
                    self.local.host,
                    e.to_string().replace(['"', '\\'], "'")
                ),
            );
            self.respond(now, &key, r);
            self.emit(
                id,
                CallEventKind::Ended {
                    cause: EndCause::MediaRefused,
                },
            );
            return;
        }
        // Ringback while queued (RFC 3261 §21.1.2): the caller never hears busy.
        let mut ringing = self.response_to(&req, 180, "Ringing", Some(&tag));
        ringing
            .headers
            .push(HeaderName::Contact, self.local.contact(&from));
        self.respond(now, &key, ringing);
        self.by_invite_tx.insert(key.clone(), id);
        self.by_sip_call_id
            .insert(call_id.to_owned(), (id, Side::A));
        self.calls.insert(
            id,
            Call {
                queue: queue.clone(),
                invite: req,
                invite_tx: key,
                a,
                offer,
                late_offer,
                a_sdp: None,
                caller_user,
                caller_display: from_hdr.display.clone(),
                origin_a: sdp::LocalOrigin::new(rand::random::<u32>().into()),
                origin_b: sdp::LocalOrigin::new(rand::random::<u32>().into()),
                b: None,
                media: None,
                pending: None,
                phase: Phase::Queued,
            },
        );
        self.outputs
            .push_back(Output::Media(MediaCommand::Allocate { call: id }));
        self.emit(
            id,
            CallEventKind::Queued {
                queue: queue.clone(),
            },
        );
        if let Err(e) = self.acd.enqueue(now, id, &queue) {
            tracing::error!(call = %id, error = %e, "ACD refused a call");
        }
    }

    fn on_ack(&mut self, ack: &Request) {
        if ack.body.is_empty() {
            return;
        }
        let Some((id, Side::A)) = ack
            .call_id()
            .ok()
            .and_then(|c| self.by_sip_call_id.get(c).copied())
        else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !call.late_offer {
            return;
        }
        let relay = SocketAddr::new(self.media_ip, call.media.map(|m| m.b).unwrap_or(0));
        let mut scratch = sdp::LocalOrigin::new(0);
        match sdp::anchor(&ack.body, relay, &mut scratch) {
            Ok(a) => {
                if let Some(addr) = a.peer {
                    self.outputs
                        .push_back(Output::Media(MediaCommand::PeerHint {
                            call: id,
                            side: Side::A,
                            addr,
                        }));
                }
            }
            Err(e) => {
                tracing::info!(call = %id, error = %e, "SDP answer in the caller's ACK unusable")
            }
        }
    }

    fn on_cancel(&mut self, now: Instant, invite: &ServerTxKey) {
        if let Some(id) = self.by_invite_tx.get(invite).copied() {
            self.abandon(now, id);
        }
    }

    /// The caller left before an answer: CANCEL, or BYE on the early dialog (RFC 3261
    /// §15). The INVITE gets its 487 (§9.2, §15.1.2), leg B is CANCELled and the abandon
    /// is journalled with where the call was.
    fn abandon(&mut self, now: Instant, id: CallId) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.phase == Phase::Connected {
            return;
        }
        let phase = match call.phase {
            Phase::Queued => AbandonPhase::Queued,
            Phase::Ringing => AbandonPhase::Ringing,
            _ => AbandonPhase::Overflowing,
        };
        let r = self.response_to(
            &call.invite,
            487,
            "Request Terminated",
            Some(&call.a.local_tag),
        );
        let key = call.invite_tx.clone();
        self.respond(now, &key, r);
        self.acd.abandon(now, id);
        self.cancel_out_leg(now, id);
        self.emit(id, CallEventKind::Abandoned { phase });
        self.finish(id);
    }

    // ---- ACD decisions --------------------------------------------------------------

    fn decide(&mut self, now: Instant, d: Decision) {
        match d {
            Decision::Offer { call, seat } => self.offer(now, call, seat),
            Decision::Overflow { call, reason } => self.overflow(now, call, reason),
            Decision::RingTimeout { call, .. } | Decision::OverflowTimeout { call } => {
                self.leg_timed_out(now, call);
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// The seat or overflow target rang past its timeout: CANCEL it; the call goes on
    /// when the 487 comes. A far end that sent no provisional response cannot be
    /// CANCELled yet (RFC 3261 §9.1: the CANCEL is held until one arrives) and may stay
    /// silent until Timer B (64*T1): the call must not wait for it, so the leg is detached
    /// and the call goes back to the queue at once.
    fn leg_timed_out(&mut self, now: Instant, id: CallId) {
        self.cancel_out_leg(now, id);
        let silent = self
            .calls
            .get(&id)
            .and_then(|c| c.b.as_ref())
            .filter(|b| !b.ringing && !b.answered);
        if silent.is_some() {
            self.detach_out_leg(now, id, None, "no_answer");
        }
    }

    /// Ends leg B for its call (like [`Switch::out_leg_failed`]) while its INVITE
    /// transaction goes on: a late 2xx will still get its ACK and BYE.
    fn detach_out_leg(
        &mut self,
        now: Instant,
        id: CallId,
        status: Option<u16>,
        reason: &'static str,
    ) {
        if let Some(b) = self.calls.get(&id).and_then(|c| c.b.as_ref())
            && !b.answered
        {
            let leg = DetachedLeg {
                tx: b.tx.clone(),
                dialog: b.dialog.clone(),
                invite_cseq: b.invite_cseq,
                bye: None,
            };
            self.detached.insert(b.dialog.call_id.clone(), leg);
        }
        self.out_leg_failed(now, id, status, reason);
    }

    fn offer(&mut self, now: Instant, id: CallId, seat: SeatId) {
        let Some(call) = self.calls.get_mut(&id) else {
            self.acd
                .offer_failed(now, id, &seat, OfferFailure::Unreachable);
            return;
        };
        if call.media.is_none() && call.pending.is_none() {
            call.pending = Some(Decision::Offer { call: id, seat });
            return;
        }
        let binding = self.registrar.lookup(&seat).into_iter().next();
        let Some(binding) = binding else {
            self.seat_unusable(now, id, &seat, "no registered contact");
            return;
        };
        let Some(peer) = contact_peer(&binding.contact, Some(binding.source)) else {
            self.seat_unusable(now, id, &seat, "Contact host is not an IP address");
            return;
        };
        let to = format!("<sip:{}@{}>", seat, self.local.host);
        if self.send_out_invite(
            now,
            id,
            Target::Seat(seat.clone()),
            binding.contact,
            peer,
            to,
        ) {
            if let Some(c) = self.calls.get_mut(&id) {
                c.phase = Phase::Ringing;
            }
            self.emit(id, CallEventKind::Offered { seat });
        } else {
            self.seat_unusable(now, id, &seat, "INVITE could not be sent");
        }
    }

    /// An offer failed before anything was sent to the seat. Offering it again would fail
    /// the same way at once, and the ACD starts a new round of seats at once when every
    /// seat failed the call, so the switch would spin on that seat and serve nothing else.
    /// The seat is taken out of rotation (ACD offline) until its registration lapses and
    /// it registers anew.
    fn seat_unusable(&mut self, now: Instant, id: CallId, seat: &str, why: &'static str) {
        tracing::error!(call = %id, %seat, why, "seat cannot be offered calls: out of rotation");
        self.acd.seat_offline(now, seat);
        self.acd
            .offer_failed(now, id, seat, OfferFailure::Unreachable);
    }

    fn overflow(&mut self, now: Instant, id: CallId, reason: OverflowReason) {
        let target = self
            .calls
            .get(&id)
            .and_then(|c| self.overflow_uri.get(&c.queue).cloned());
        let Some(target) = target else {
            self.acd.overflow_failed(now, id);
            return;
        };
        if let Some(c) = self.calls.get_mut(&id)
            && c.media.is_none()
        {
            if c.pending.is_none() {
                c.pending = Some(Decision::Overflow { call: id, reason });
            }
            return;
        }
        let uri = Uri::parse(&target).ok();
        let peer = uri.as_ref().and_then(|u| contact_peer(u, None));
        let sent = match (uri, peer) {
            (Some(uri), Some(peer)) => {
                let to = format!("<{uri}>");
                self.send_out_invite(now, id, Target::Overflow(target.clone()), uri, peer, to)
            }
            _ => false,
        };
        if sent {
            if let Some(c) = self.calls.get_mut(&id) {
                c.phase = Phase::Overflowing;
            }
            self.emit(id, CallEventKind::Overflowed { target, reason });
        } else {
            tracing::warn!(call = %id, %target, "overflow target unusable (needs an IP address)");
            self.emit(id, CallEventKind::OverflowFailed { status: None });
            self.acd.overflow_failed(now, id);
        }
    }

    /// Sends vigie's INVITE for leg B. Returns false when no SDP could be made.
    fn send_out_invite(
        &mut self,
        now: Instant,
        id: CallId,
        target: Target,
        ruri: Uri,
        peer: Peer,
        to: String,
    ) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let b_port = call.media.map(|m| m.b).unwrap_or(0);
        let relay = SocketAddr::new(self.media_ip, b_port);
        let mut origin = call.origin_b.clone();
        let (sdp, a_peer) = match sdp::anchor(&call.offer, relay, &mut origin) {
            Ok(a) => (a.sdp, a.peer),
            Err(e) => {
                tracing::warn!(call = %id, error = %e, "caller SDP cannot be anchored");
                return false;
            }
        };
        if let Some(addr) = a_peer.filter(|_| !call.late_offer) {
            self.outputs
                .push_back(Output::Media(MediaCommand::PeerHint {
                    call: id,
                    side: Side::A,
                    addr,
                }));
        }
        let display = call
            .caller_display
            .as_deref()
            .map(|d| format!("\"{}\" ", d.replace('"', "'")))
            .unwrap_or_default();
        let local_uri = format!("{display}<sip:{}@{}>", call.caller_user, self.local.host);
        let mut dialog = Dialog {
            call_id: format!("{}-{}@vigie", id, dialog::random_token(6)),
            local_tag: new_tag(),
            remote_tag: None,
            local_uri,
            remote_uri: to,
            remote_target: ruri,
            local_cseq: 0,
            peer,
        };
        let mut invite = dialog.request(Method::Invite, &self.local, &self.user_agent);
        invite
            .headers
            .push(HeaderName::Contact, self.local.contact(&peer));
        invite
            .headers
            .push(HeaderName::Other("X-Vigie-Call-ID".into()), id.to_string());
        invite.headers.push(HeaderName::Allow, ALLOW);
        invite
            .headers
            .push(HeaderName::ContentType, "application/sdp");
        invite.body = sdp.clone();
        let cseq = dialog.local_cseq;
        let tx = match self.txn.send_request(now, peer, invite) {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(call = %id, error = %e, "INVITE for leg B refused by the transaction layer");
                return false;
            }
        };
        self.by_sip_call_id
            .insert(dialog.call_id.clone(), (id, Side::B));
        if let Some(c) = self.calls.get_mut(&id) {
            if let Some(old) = c.b.take() {
                self.by_sip_call_id.remove(&old.dialog.call_id);
            }
            c.origin_b = origin;
            c.b = Some(OutLeg {
                target,
                tx,
                dialog,
                invite_cseq: cseq,
                answered: false,
                ringing: false,
                cancelling: false,
                local_sdp: sdp,
            });
        }
        true
    }

    // ---- responses on leg B -----------------------------------------------------------

    fn on_response(&mut self, now: Instant, key: &ClientTxKey, resp: Response) {
        let Ok(cid) = resp.call_id() else {
            return;
        };
        if self.detached.contains_key(cid) {
            let cid = cid.to_owned();
            self.on_detached_response(now, key, &cid, &resp);
            return;
        }
        let Some((id, Side::B)) = self.by_sip_call_id.get(cid).copied() else {
            return;
        };
        let Ok(cseq) = resp.cseq() else {
            return;
        };
        if cseq.method != Method::Invite {
            return; // BYE/CANCEL answers: nothing to do.
        }
        let same_tx = self
            .calls
            .get(&id)
            .and_then(|c| c.b.as_ref())
            .is_some_and(|b| &b.tx == key);
        if !same_tx {
            return;
        }
        match resp.status {
            100 => {}
            101..=199 => self.on_b_provisional(id, &resp),
            200..=299 => self.on_b_answer(now, id, &resp),
            _ => self.on_b_failure(now, id, Some(resp.status)),
        }
    }

    /// A response on a detached leg: a 2xx is ACKed and hung up (RFC 3261 §15); any other
    /// final response, or the BYE's, ends it.
    fn on_detached_response(
        &mut self,
        now: Instant,
        key: &ClientTxKey,
        cid: &str,
        resp: &Response,
    ) {
        let Ok(cseq) = resp.cseq() else {
            return;
        };
        let Some(d) = self.detached.get_mut(cid) else {
            return;
        };
        let done = match (cseq.method, resp.status) {
            (Method::Invite, 200..=299) if &d.tx == key && d.bye.is_none() => {
                d.dialog.remote_tag = resp
                    .header_to()
                    .ok()
                    .and_then(|t| t.tag().map(str::to_owned));
                if let Some(c) = resp.contacts().ok().and_then(|c| c.into_iter().next()) {
                    d.dialog.remote_target = c.uri;
                }
                let ack = d.dialog.ack(d.invite_cseq, &self.local, &self.user_agent);
                let bye = d.dialog.request(Method::Bye, &self.local, &self.user_agent);
                let peer = d.dialog.peer;
                self.txn.send_stateless(peer, Message::Request(ack));
                match self.txn.send_request(now, peer, bye) {
                    Ok(k) => {
                        d.bye = Some(k);
                        false
                    }
                    Err(e) => {
                        tracing::error!(sip_call_id = cid, error = %e, "BYE on a detached leg not sent");
                        true
                    }
                }
            }
            (Method::Invite, 300..) => &d.tx == key,
            (Method::Bye, 200..) => d.bye.as_ref() == Some(key),
            _ => false,
        };
        if done {
            self.detached.remove(cid);
        }
    }

    fn on_b_provisional(&mut self, id: CallId, resp: &Response) {
        let Some(b) = self.calls.get_mut(&id).and_then(|c| c.b.as_mut()) else {
            return;
        };
        if b.ringing {
            return;
        }
        b.ringing = true;
        if let Some(tag) = resp
            .header_to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned))
        {
            b.dialog.remote_tag = Some(tag);
        }
        if let Target::Seat(seat) = b.target.clone() {
            self.emit(id, CallEventKind::Ringing { seat });
        }
    }

    fn on_b_answer(&mut self, now: Instant, id: CallId, resp: &Response) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(b) = call.b.as_mut() else {
            return;
        };
        if b.answered {
            return;
        }
        b.answered = true;
        b.dialog.remote_tag = resp
            .header_to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned));
        if let Some(c) = resp.contacts().ok().and_then(|c| c.into_iter().next()) {
            b.dialog.remote_target = c.uri;
        }
        let ack = b.dialog.ack(b.invite_cseq, &self.local, &self.user_agent);
        let peer = b.dialog.peer;
        let target = b.target.clone();
        let cancelling = b.cancelling;
        self.txn.send_stateless(peer, Message::Request(ack));
        if cancelling {
            // Our CANCEL crossed the 200 (RFC 3261 §9.1): the seat answered a call we
            // withdrew. ACK it and hang up that leg; the call goes on as before.
            // Only a ring or overflow timeout CANCELs a leg of a call that goes on, so
            // for the journal the seat did not answer in time (it did not decline).
            self.bye_b(now, id);
            self.out_leg_failed(now, id, Some(487), "no_answer");
            return;
        }
        // The seat's SDP becomes vigie's answer to the caller on the A port.
        let a_port = call.media.map(|m| m.a).unwrap_or(0);
        let answer = sdp::anchor(
            &resp.body,
            SocketAddr::new(self.media_ip, a_port),
            &mut call.origin_a,
        );
        let (a_sdp, b_media) = match answer {
            Ok(a) => (a.sdp, a.peer),
            Err(e) => {
                tracing::warn!(call = %id, error = %e, "seat SDP cannot be anchored");
                (Bytes::new(), None)
            }
        };
        if let Some(addr) = b_media {
            self.outputs
                .push_back(Output::Media(MediaCommand::PeerHint {
                    call: id,
                    side: Side::B,
                    addr,
                }));
        }
        let mut ok = call.invite.response(200, "OK", Some(&call.a.local_tag));
        ok.headers
            .push(HeaderName::Contact, self.local.contact(&call.a.peer));
        ok.headers.push(HeaderName::Allow, ALLOW);
        ok.headers.push(HeaderName::Server, self.user_agent.clone());
        if !a_sdp.is_empty() {
            ok.headers.push(HeaderName::ContentType, "application/sdp");
            ok.body = a_sdp.clone();
        }
        call.a_sdp = Some(a_sdp);
        call.phase = Phase::Connected;
        let key = call.invite_tx.clone();
        self.respond(now, &key, ok);
        match target {
            Target::Seat(seat) => {
                self.acd.offer_answered(now, id, &seat);
                self.emit(id, CallEventKind::Answered { seat });
            }
            Target::Overflow(target) => {
                self.acd.overflow_answered(now, id);
                self.emit(id, CallEventKind::OverflowAnswered { target });
            }
        }
    }

    fn on_b_failure(&mut self, now: Instant, id: CallId, status: Option<u16>) {
        let reason = match status {
            Some(486) => "busy",
            Some(603) => "declined",
            Some(487) => "no_answer",
            Some(408) | None => "unreachable",
            Some(_) => "failed",
        };
        self.out_leg_failed(now, id, status, reason);
    }

    /// Leg B ended without an answer (or was torn down after a crossed CANCEL): the ACD
    /// learns it and the call goes back to its place in the queue.
    fn out_leg_failed(
        &mut self,
        now: Instant,
        id: CallId,
        status: Option<u16>,
        reason: &'static str,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(b) = call.b.take() else {
            return;
        };
        self.by_sip_call_id.remove(&b.dialog.call_id);
        call.phase = Phase::Queued;
        match b.target {
            Target::Seat(seat) => {
                let why = match status {
                    _ if reason == "no_answer" => OfferFailure::NoAnswer,
                    Some(487) => OfferFailure::NoAnswer,
                    Some(408) | None => OfferFailure::Unreachable,
                    _ => OfferFailure::Declined,
                };
                self.emit(
                    id,
                    CallEventKind::SeatFailed {
                        seat: seat.clone(),
                        status,
                        reason,
                    },
                );
                self.acd.offer_failed(now, id, &seat, why);
            }
            Target::Overflow(_) => {
                self.emit(id, CallEventKind::OverflowFailed { status });
                self.acd.overflow_failed(now, id);
            }
        }
    }

    fn on_stray_2xx(&mut self, from: Peer, resp: &Response) {
        // A retransmitted 2xx: our ACK was lost; send it again (RFC 3261 §13.2.2.4).
        if let Some(d) = resp
            .call_id()
            .ok()
            .and_then(|c| self.detached.get(c))
            .filter(|d| d.bye.is_some())
        {
            let ack = d.dialog.ack(d.invite_cseq, &self.local, &self.user_agent);
            self.txn.send_stateless(from, Message::Request(ack));
            return;
        }
        let Some((id, Side::B)) = resp
            .call_id()
            .ok()
            .and_then(|c| self.by_sip_call_id.get(c).copied())
        else {
            return;
        };
        if let Some(b) = self.calls.get(&id).and_then(|c| c.b.as_ref()) {
            let ack = b.dialog.ack(b.invite_cseq, &self.local, &self.user_agent);
            self.txn.send_stateless(from, Message::Request(ack));
        }
    }

    fn on_client_timeout(&mut self, now: Instant, key: &ClientTxKey) {
        self.detached
            .retain(|_, d| &d.tx != key && d.bye.as_ref() != Some(key));
        let found = self.calls.iter().find_map(|(id, c)| {
            c.b.as_ref()
                .filter(|b| &b.tx == key && !b.answered)
                .map(|_| *id)
        });
        if let Some(id) = found {
            self.on_b_failure(now, id, None);
        }
    }

    fn on_no_ack(&mut self, now: Instant, key: &ServerTxKey) {
        if let Some(id) = self.by_invite_tx.get(key).copied()
            && self
                .calls
                .get(&id)
                .is_some_and(|c| c.phase == Phase::Connected)
        {
            self.hang_up(now, id, Side::A, EndCause::NoAck);
        }
    }

    // ---- tearing down -----------------------------------------------------------------

    /// Withdraws leg B: CANCEL while it has not answered.
    fn cancel_out_leg(&mut self, now: Instant, id: CallId) {
        let Some(b) = self.calls.get_mut(&id).and_then(|c| c.b.as_mut()) else {
            return;
        };
        if b.answered || b.cancelling {
            return;
        }
        b.cancelling = true;
        let key = b.tx.clone();
        if let Err(e) = self.txn.cancel(now, &key) {
            tracing::debug!(call = %id, error = %e, "CANCEL not sent");
        }
    }

    fn bye_b(&mut self, now: Instant, id: CallId) {
        let Some(b) = self.calls.get_mut(&id).and_then(|c| c.b.as_mut()) else {
            return;
        };
        let bye = b.dialog.request(Method::Bye, &self.local, &self.user_agent);
        let peer = b.dialog.peer;
        if let Err(e) = self.txn.send_request(now, peer, bye) {
            tracing::error!(call = %id, error = %e, "BYE on leg B not sent");
        }
    }

    /// One side hung up an answered call: BYE the other, free the seat, end the call.
    fn hang_up(&mut self, now: Instant, id: CallId, from: Side, cause: EndCause) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.phase != Phase::Connected {
            match from {
                // The caller may BYE its early dialog (RFC 3261 §15): an abandon.
                Side::A => self.abandon(now, id),
                // The callee may not (§15); a seat that does has left the offer: the
                // call goes back to the queue.
                Side::B => {
                    self.cancel_out_leg(now, id);
                    self.detach_out_leg(now, id, None, "failed");
                }
            }
            return;
        }
        match from {
            Side::A => self.bye_b(now, id),
            Side::B => {
                let bye = call.a.request(Method::Bye, &self.local, &self.user_agent);
                let peer = call.a.peer;
                if let Err(e) = self.txn.send_request(now, peer, bye) {
                    tracing::error!(call = %id, error = %e, "BYE to the caller not sent");
                }
            }
        }
        self.acd.call_ended(now, id);
        self.emit(id, CallEventKind::Ended { cause });
        self.finish(id);
    }

    fn finish(&mut self, id: CallId) {
        if let Some(call) = self.calls.remove(&id) {
            self.by_invite_tx.remove(&call.invite_tx);
            self.by_sip_call_id.remove(&call.a.call_id);
            if let Some(b) = call.b {
                self.by_sip_call_id.remove(&b.dialog.call_id);
                if !b.answered {
                    // CANCELled (or its CANCEL held): a late 2xx still needs ACK and BYE.
                    self.detached.insert(
                        b.dialog.call_id.clone(),
                        DetachedLeg {
                            tx: b.tx,
                            dialog: b.dialog,
                            invite_cseq: b.invite_cseq,
                            bye: None,
                        },
                    );
                }
            }
        }
        self.outputs
            .push_back(Output::Media(MediaCommand::Release { call: id }));
    }

    fn seat_change(&mut self, now: Instant, change: SeatChange) {
        let (seat, online) = match change {
            SeatChange::Online { seat } => (seat, true),
            SeatChange::Offline { seat } => (seat, false),
            #[allow(unreachable_patterns)]
            _ => return,
        };
        if online {
            self.acd.seat_online(now, &seat);
        } else {
            self.acd.seat_offline(now, &seat);
        }
        self.outputs.push_back(Output::Seat { seat, online });
    }
}

/// Where to send requests for a Contact: its host and port when it is an IP literal
/// over UDP; the registration's own connection when the seat registered over TCP.
fn contact_peer(contact: &Uri, registered_over: Option<Peer>) -> Option<Peer> {
    if let Some(p) = registered_over
        && p.kind == TransportKind::Tcp
    {
        return Some(p);
    }
    let tcp = contact
        .param("transport")
        .flatten()
        .is_some_and(|t| t.eq_ignore_ascii_case("tcp"));
    let ip = match &contact.host {
        Host::V4(v4) => IpAddr::V4(*v4),
        Host::V6(v6) => IpAddr::V6(*v6),
        _ => return None,
    };
    let port = contact.port.unwrap_or(5060);
    Some(Peer {
        kind: if tcp {
            TransportKind::Tcp
        } else {
            TransportKind::Udp
        },
        addr: SocketAddr::new(ip, port),
    })
}

/// The SDP offer and the locations of an INVITE body (plain SDP or multipart/mixed).
fn split_body(req: &Request) -> (Bytes, Result<Vec<location::Location>, String>) {
    let ct = req.content_type().unwrap_or("").to_ascii_lowercase();
    if ct.starts_with("application/sdp") {
        return (req.body.clone(), Ok(Vec::new()));
    }
    if !ct.starts_with("multipart/") {
        return (req.body.clone(), Ok(Vec::new()));
    }
    // A body cut short keeps its whole parts (the SDP usually comes first): the call
    // goes on, the location error is journalled.
    let (parts, split_err) =
        location::split_multipart_partial(req.content_type().unwrap_or(""), &req.body);
    let sdp = parts
        .iter()
        .find(|p| {
            p.content_type
                .to_ascii_lowercase()
                .starts_with("application/sdp")
        })
        .map(|p| p.body.clone())
        .unwrap_or_default();
    let mut locs = Vec::new();
    let mut err = split_err.map(|e| e.to_string());
    for p in parts
        .iter()
        .filter(|p| p.content_type.to_ascii_lowercase().contains("pidf+xml"))
    {
        match location::parse_pidf(&p.body) {
            Ok(l) => locs.extend(l),
            Err(e) => err = Some(e.to_string()),
        }
    }
    match err {
        Some(e) if locs.is_empty() => (sdp, Err(e)),
        _ => (sdp, Ok(locs)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse::parse_datagram;
    use crate::sip::registrar::RegistrarConfig;

    const TRUNK: &str = "192.0.2.10:5060";
    const BACKUP: &str = "192.0.2.50:5060";

    fn udp(addr: &str) -> Peer {
        Peer {
            kind: TransportKind::Udp,
            addr: addr.parse().expect("test address"),
        }
    }

    /// A switch with no seat online whose queue overflows to [`BACKUP`] (`None`: no
    /// overflow). Seat agent01 may register with password `demo`.
    fn switch(now: Instant, overflow_timeout_s: Option<u64>) -> Switch {
        let mut config = Config::default();
        config.trunk.allowed_sources = vec!["192.0.2.10/32".to_owned()];
        if let (Some(q), Some(timeout)) = (config.queues.first_mut(), overflow_timeout_s) {
            q.overflow_uri = Some(format!("sip:19@{BACKUP}"));
            q.overflow_timeout_s = timeout;
        }
        let local = LocalAddr {
            host: "192.0.2.1".to_owned(),
            udp_port: 5060,
            tcp_port: 5060,
        };
        let seat = crate::sip::auth::Credential::from_password("agent01", "vigie", "demo");
        let registrar = Registrar::new(RegistrarConfig::new("vigie"), vec![seat], now, [7; 32]);
        Switch::new(&config, local, registrar)
    }

    /// Registers agent01 from 192.0.2.20:5070 with `contact`, answering the challenge.
    fn register_agent01(sw: &mut Switch, now: Instant, contact: &str) {
        let register = |n: u32, auth: &str| {
            request(&format!(
                "REGISTER sip:192.0.2.1 SIP/2.0\n\
                 Via: SIP/2.0/UDP 192.0.2.20:5070;branch=z9hG4bK-reg-{n}\n\
                 Max-Forwards: 70\n\
                 From: <sip:agent01@192.0.2.1>;tag=reg\n\
                 To: <sip:agent01@192.0.2.1>\n\
                 Call-ID: reg-agent01\n\
                 CSeq: {n} REGISTER\n\
                 Contact: <{contact}>\n\
                 Expires: 600\n\
                 {auth}Content-Length: 0\n\n"
            ))
        };
        sw.handle_message(now, udp("192.0.2.20:5070"), register(1, ""));
        let out = drain(sw, now);
        let challenge = out
            .iter()
            .find_map(|o| match o {
                Output::Transmit(Transmit {
                    message: Message::Response(r),
                    ..
                }) if r.status == 401 => r
                    .headers
                    .get_all(&HeaderName::WwwAuthenticate)
                    .next()
                    .map(str::to_owned),
                _ => None,
            })
            .expect("a 401 challenge");
        let auth = crate::sip::auth::answer_challenge(
            &challenge,
            "REGISTER",
            "sip:192.0.2.1",
            "agent01",
            "demo",
            "cn0nce",
            1,
        )
        .expect("answerable challenge");
        sw.handle_message(
            now,
            udp("192.0.2.20:5070"),
            register(2, &format!("Authorization: {auth}\n")),
        );
        let out = drain(sw, now);
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Seat { online: true, .. })),
            "{out:?}"
        );
    }

    fn request(text: &str) -> Message {
        let text = text.replace('\n', "\r\n");
        parse_datagram(text.as_bytes()).expect("test message parses")
    }

    fn trunk_invite() -> Message {
        trunk_invite_offering("m=audio 4000 RTP/AVP 8\na=rtpmap:8 PCMA/8000\n")
    }

    fn trunk_invite_offering(media: &str) -> Message {
        let sdp =
            format!("v=0\no=t 1 1 IN IP4 192.0.2.10\ns=-\nc=IN IP4 192.0.2.10\nt=0 0\n{media}");
        request(&format!(
            "INVITE sip:19@192.0.2.1 SIP/2.0\n\
             Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-trunk-1\n\
             Max-Forwards: 70\n\
             From: <sip:+212600000001@192.0.2.10>;tag=caller\n\
             To: <sip:19@192.0.2.1>\n\
             Call-ID: trunk-call-1\n\
             CSeq: 1 INVITE\n\
             Contact: <sip:trunk@{TRUNK}>\n\
             Content-Type: application/sdp\n\
             Content-Length: {}\n\n{}",
            sdp.replace('\n', "\r\n").len(),
            sdp
        ))
    }

    fn trunk_cancel() -> Message {
        request(&format!(
            "CANCEL sip:19@192.0.2.1 SIP/2.0\n\
             Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-trunk-1\n\
             Max-Forwards: 70\n\
             From: <sip:+212600000001@192.0.2.10>;tag=caller\n\
             To: <sip:19@192.0.2.1>\n\
             Call-ID: trunk-call-1\n\
             CSeq: 1 CANCEL\n\
             Content-Length: 0\n\n"
        ))
    }

    /// Drains the switch; answers every media allocation with ports.
    fn drain(sw: &mut Switch, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        while let Some(o) = sw.poll_output() {
            if let Output::Media(MediaCommand::Allocate { call }) = &o {
                let call = *call;
                out.push(o);
                sw.handle_media_ready(now, call, Some(MediaPorts { a: 20000, b: 20002 }));
                continue;
            }
            out.push(o);
        }
        out
    }

    /// Requests sent to `to`, by method.
    fn sent(out: &[Output], to: &str, method: Method) -> Vec<Request> {
        let to: SocketAddr = to.parse().expect("test address");
        out.iter()
            .filter_map(|o| match o {
                Output::Transmit(Transmit {
                    to: peer,
                    message: Message::Request(r),
                }) if peer.addr == to && r.method == method => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    fn statuses(out: &[Output], to: &str) -> Vec<u16> {
        let to: SocketAddr = to.parse().expect("test address");
        out.iter()
            .filter_map(|o| match o {
                Output::Transmit(Transmit {
                    to: peer,
                    message: Message::Response(r),
                }) if peer.addr == to => Some(r.status),
                _ => None,
            })
            .collect()
    }

    fn events(out: &[Output]) -> Vec<CallEventKind> {
        out.iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e.kind.clone()),
                _ => None,
            })
            .collect()
    }

    /// A trunk call overflowed to a backup that has sent nothing yet; returns vigie's
    /// INVITE to the backup and vigie's tag towards the caller (from the 180).
    fn overflowed_call(sw: &mut Switch, now: Instant) -> (Request, String) {
        sw.handle_message(now, udp(TRUNK), trunk_invite());
        let out = drain(sw, now);
        assert_eq!(statuses(&out, TRUNK), [100, 180]);
        let tag = out
            .iter()
            .find_map(|o| match o {
                Output::Transmit(Transmit {
                    message: Message::Response(r),
                    ..
                }) if r.status == 180 => {
                    r.header_to().ok().and_then(|t| t.tag().map(str::to_owned))
                }
                _ => None,
            })
            .expect("180 with a To tag");
        let invites = sent(&out, BACKUP, Method::Invite);
        assert_eq!(invites.len(), 1, "{out:?}");
        (invites.into_iter().next().expect("one INVITE"), tag)
    }

    #[test]
    fn late_2xx_after_the_caller_abandoned_is_acked_and_hung_up() {
        let t0 = Instant::now();
        let mut sw = switch(t0, Some(20));
        let (invite, _) = overflowed_call(&mut sw, t0);

        // The caller gives up before the backup sent any provisional response: no CANCEL
        // may go to the backup yet (RFC 3261 §9.1).
        let t1 = t0 + Duration::from_millis(300);
        sw.handle_message(t1, udp(TRUNK), trunk_cancel());
        let out = drain(&mut sw, t1);
        assert_eq!(statuses(&out, TRUNK), [200, 487]);
        assert!(sent(&out, BACKUP, Method::Cancel).is_empty());
        assert!(matches!(
            events(&out).as_slice(),
            [CallEventKind::Abandoned {
                phase: AbandonPhase::Overflowing
            }]
        ));
        assert_eq!(sw.active_calls(), 0);

        // The backup answers anyway: vigie ACKs the 2xx and hangs up (RFC 3261 §15).
        let t2 = t1 + Duration::from_millis(200);
        let ok = invite.response(200, "OK", Some("backup-tag"));
        sw.handle_message(t2, udp(BACKUP), Message::Response(ok.clone()));
        let out = drain(&mut sw, t2);
        let acks = sent(&out, BACKUP, Method::Ack);
        let byes = sent(&out, BACKUP, Method::Bye);
        assert_eq!((acks.len(), byes.len()), (1, 1), "{out:?}");
        for r in acks.iter().chain(&byes) {
            assert_eq!(
                r.header_to().ok().and_then(|t| t.tag().map(str::to_owned)),
                Some("backup-tag".to_owned())
            );
            assert_eq!(r.call_id().ok(), invite.call_id().ok());
        }
        assert!(events(&out).is_empty(), "the call's journal is closed");

        // A retransmitted 2xx is ACKed again; the BYE's 200 ends the leg.
        sw.handle_message(t2, udp(BACKUP), Message::Response(ok));
        let out = drain(&mut sw, t2);
        assert_eq!(sent(&out, BACKUP, Method::Ack).len(), 1, "{out:?}");
        let bye = byes.into_iter().next().expect("one BYE");
        sw.handle_message(
            t2,
            udp(BACKUP),
            Message::Response(bye.response(200, "OK", None)),
        );
        drain(&mut sw, t2);
        assert!(sw.detached.is_empty());
    }

    #[test]
    fn silent_leg_is_given_up_at_its_timeout_and_cancelled_when_it_rings() {
        let t0 = Instant::now();
        let mut sw = switch(t0, Some(2));
        let (invite, _) = overflowed_call(&mut sw, t0);

        // The backup stays silent past the overflow timeout: the call is back in the
        // queue at once (not after Timer B, 32 s), and the CANCEL is held.
        let mut now = t0;
        let mut failed_at = None;
        while now < t0 + Duration::from_secs(5) && failed_at.is_none() {
            now = sw.poll_timeout().expect("a timer is armed");
            sw.handle_timeout(now);
            let out = drain(&mut sw, now);
            assert!(sent(&out, BACKUP, Method::Cancel).is_empty());
            if events(&out)
                .iter()
                .any(|e| matches!(e, CallEventKind::OverflowFailed { status: None }))
            {
                failed_at = Some(now);
            }
        }
        assert_eq!(failed_at, Some(t0 + Duration::from_secs(2)));
        assert_eq!(sw.active_calls(), 1, "the caller is still waiting");
        assert_eq!(
            sw.acd().snapshot(now).first().map(|q| q.waiting),
            Some(1),
            "back in the queue"
        );

        // The backup rings late: the held CANCEL goes; its 487 ends the leg.
        let ringing = invite.response(180, "Ringing", Some("late"));
        sw.handle_message(now, udp(BACKUP), Message::Response(ringing));
        let out = drain(&mut sw, now);
        assert_eq!(sent(&out, BACKUP, Method::Cancel).len(), 1, "{out:?}");
        assert!(events(&out).is_empty(), "{out:?}");
        let terminated = invite.response(487, "Request Terminated", Some("late"));
        sw.handle_message(now, udp(BACKUP), Message::Response(terminated));
        let out = drain(&mut sw, now);
        assert_eq!(sent(&out, BACKUP, Method::Ack).len(), 1, "{out:?}");
        assert!(sw.detached.is_empty());
        assert_eq!(sw.active_calls(), 1);
    }

    #[test]
    fn offer_without_g711_is_refused_with_488_and_never_queued() {
        let t0 = Instant::now();
        let mut sw = switch(t0, None);
        register_agent01(&mut sw, t0, "sip:agent01@192.0.2.20:5070");
        sw.handle_message(
            t0,
            udp(TRUNK),
            trunk_invite_offering("m=audio 4000 RTP/AVP 18\na=rtpmap:18 G729/8000\n"),
        );
        let out = drain(&mut sw, t0);
        assert_eq!(statuses(&out, TRUNK), [100, 488]);
        assert!(matches!(
            events(&out).as_slice(),
            [
                CallEventKind::Received { .. },
                CallEventKind::Ended {
                    cause: EndCause::MediaRefused
                }
            ]
        ));
        assert!(sent(&out, "192.0.2.20:5070", Method::Invite).is_empty());
        assert_eq!(sw.active_calls(), 0);
        assert!(matches!(
            sw.acd().seat_state("agent01"),
            Some(crate::acd::SeatState::Idle { .. })
        ));
    }

    #[test]
    fn seat_whose_contact_cannot_be_reached_is_taken_out_of_rotation() {
        // Before the fix this test never returned: every offer to agent01 failed at once
        // and the ACD offered the call to it again, forever, inside handle_message.
        let t0 = Instant::now();
        let mut sw = switch(t0, None);
        register_agent01(&mut sw, t0, "sip:agent01@pc-12.example.invalid:5070");
        sw.handle_message(t0, udp(TRUNK), trunk_invite());
        let out = drain(&mut sw, t0);
        assert_eq!(statuses(&out, TRUNK), [100, 180]);
        assert_eq!(
            sw.acd().seat_state("agent01"),
            Some(&crate::acd::SeatState::LoggedOut)
        );
        assert_eq!(sw.active_calls(), 1, "the caller waits on ringback");
        assert_eq!(sw.acd().snapshot(t0).first().map(|q| q.waiting), Some(1));
    }

    #[test]
    fn caller_bye_on_the_early_dialog_is_an_abandon_and_the_invite_gets_487() {
        let t0 = Instant::now();
        let mut sw = switch(t0, Some(20));
        let (_, tag) = overflowed_call(&mut sw, t0);
        let bye = request(&format!(
            "BYE sip:vigie@192.0.2.1 SIP/2.0\n\
             Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-trunk-bye\n\
             Max-Forwards: 70\n\
             From: <sip:+212600000001@192.0.2.10>;tag=caller\n\
             To: <sip:19@192.0.2.1>;tag={tag}\n\
             Call-ID: trunk-call-1\n\
             CSeq: 2 BYE\n\
             Content-Length: 0\n\n"
        ));
        sw.handle_message(t0, udp(TRUNK), bye);
        let out = drain(&mut sw, t0);
        // 200 for the BYE, 487 for the pending INVITE (RFC 3261 §15.1.2).
        assert_eq!(statuses(&out, TRUNK), [200, 487]);
        assert!(matches!(
            events(&out).as_slice(),
            [CallEventKind::Abandoned {
                phase: AbandonPhase::Overflowing
            }]
        ));
        assert_eq!(sw.active_calls(), 0);
    }

    #[test]
    fn seat_answering_as_its_ring_timeout_cancels_it_did_not_decline() {
        let t0 = Instant::now();
        let mut sw = switch(t0, None);
        register_agent01(&mut sw, t0, "sip:agent01@192.0.2.20:5070");
        sw.handle_message(t0, udp(TRUNK), trunk_invite());
        let out = drain(&mut sw, t0);
        let invite = sent(&out, "192.0.2.20:5070", Method::Invite)
            .into_iter()
            .next()
            .expect("INVITE to agent01");
        let seat = udp("192.0.2.20:5070");
        let ringing = invite.response(180, "Ringing", Some("seat"));
        sw.handle_message(t0, seat, Message::Response(ringing));
        drain(&mut sw, t0);
        // Ring timeout (15 s): CANCEL; the seat's 200 crosses it.
        let t1 = t0 + Duration::from_secs(15);
        sw.handle_timeout(t1);
        let out = drain(&mut sw, t1);
        assert_eq!(sent(&out, "192.0.2.20:5070", Method::Cancel).len(), 1);
        let ok = invite.response(200, "OK", Some("seat"));
        sw.handle_message(t1, seat, Message::Response(ok));
        let out = drain(&mut sw, t1);
        assert_eq!(sent(&out, "192.0.2.20:5070", Method::Ack).len(), 1);
        assert_eq!(sent(&out, "192.0.2.20:5070", Method::Bye).len(), 1);
        let failed: Vec<_> = events(&out)
            .into_iter()
            .filter(|e| matches!(e, CallEventKind::SeatFailed { .. }))
            .collect();
        assert_eq!(
            failed,
            [CallEventKind::SeatFailed {
                seat: "agent01".to_owned(),
                status: Some(487),
                reason: "no_answer"
            }]
        );
        assert_eq!(sw.active_calls(), 1, "the caller still waits");
    }
}
