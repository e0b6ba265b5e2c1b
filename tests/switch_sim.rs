//! The B2BUA core ([`Switch`]) driven in virtual time with no sockets (quinn-proto
//! `tests/util.rs` style): a trunk caller and agent seats built by hand on a simulated
//! network that serialises every message with `to_bytes` and re-parses it with
//! `parse_datagram`, with optional loss; relay ports are answered by a fake media relay.
//! Every message each party sees, and every call event, is asserted in order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use vigie::acd::callback::CallbackOutcome;
use vigie::acd::{CallId, SeatState};
use vigie::config::Config;
use vigie::dialplan::{self, CompiledPlan};
use vigie::sip::auth::{Credential, answer_challenge};
use vigie::sip::message::{HeaderName, Headers, Message, Method, Request, Response, SipHeaders};
use vigie::sip::parse::parse_datagram;
use vigie::sip::registrar::{Registrar, RegistrarConfig};
use vigie::sip::transaction::{build_ack, build_cancel, new_branch};
use vigie::sip::transport::{Peer, TransportKind};
use vigie::sip::uri::Uri;
use vigie::switch::dialog::LocalAddr;
use vigie::switch::event::{CallEvent, CallEventKind, EndCause};
use vigie::switch::originate::TaskResult;
use vigie::switch::{MediaCommand, MediaPorts, Output, PROMPT_GUARD_S, Switch};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const REALM: &str = "vigie";
const PASSWORD: &str = "demo";

fn vigie_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5060))
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

fn to_tag<M: SipHeaders>(m: &M) -> Option<String> {
    m.header_to().ok().and_then(|t| t.tag().map(str::to_owned))
}

fn from_tag<M: SipHeaders>(m: &M) -> Option<String> {
    m.header_from()
        .ok()
        .and_then(|t| t.tag().map(str::to_owned))
}

fn first_contact<M: SipHeaders>(m: &M) -> Option<Uri> {
    m.contacts()
        .ok()
        .and_then(|c| c.into_iter().next())
        .map(|c| c.uri)
}

fn sdp(ip: &str, port: u16) -> Bytes {
    Bytes::from(format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    ))
}

// ---------------------------------------------------------------------------------------
// Simulated user agents
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A trunk UAC placing one call to 19.
    Caller,
    /// An agent seat: registers, then answers vigie's INVITEs as a UAS.
    Seat,
}

#[derive(Debug, Clone)]
enum UaTimer {
    /// Seat: send the 200 for this Call-ID.
    Answer(String),
    /// Seat: retransmit the 200 for this Call-ID until its ACK (RFC 3261 §13.3.1.4),
    /// with the current interval.
    Retransmit2xx(String, Duration),
    /// Hang up this Call-ID.
    Bye(String),
}

/// A request this UA retransmits until answered (RFC 3261 §17.1.1.2 timer A for INVITE
/// until any response, §17.1.2.2 timer E for the others until a final response).
#[derive(Debug)]
struct PendingRequest {
    branch: String,
    request: Request,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

#[derive(Debug)]
struct UaDialog {
    call_id: String,
    /// The INVITE sent (caller) or received (seat).
    invite: Request,
    local_tag: String,
    remote_tag: Option<String>,
    /// The peer's Contact, Request-URI of in-dialog requests.
    remote_target: Option<Uri>,
    /// Seat: the 200 sent, for retransmission.
    ok: Option<Response>,
    /// Seat: the last response to the INVITE, sent again for a retransmitted INVITE.
    last: Option<Response>,
    /// Final status received (caller) or sent (seat).
    final_status: Option<u16>,
    /// Seat: the ACK for our 200 came.
    acked: bool,
    /// The call is up (200 sent or received, no BYE yet).
    up: bool,
    local_cseq: u32,
}

struct Ua {
    /// The current virtual time (set by the simulation before every input).
    now: Instant,
    /// Requests sent and not yet answered.
    pending: Vec<PendingRequest>,
    name: String,
    role: Role,
    addr: SocketAddr,
    /// SIP user: the seat id, or the caller's number.
    user: String,
    /// Every message received: (ms since start, message).
    inbox: Vec<(u64, Message)>,
    /// Messages to put on the wire (all go to vigie).
    out: Vec<Message>,
    timers: Vec<(Instant, UaTimer)>,
    /// Seat: send 200 this long after the INVITE; `None` rings until CANCELled.
    answer_after: Option<Duration>,
    /// Send BYE this long after the call is up (caller: on the 200; seat: on the ACK).
    hangup_after: Option<Duration>,
    dialogs: Vec<UaDialog>,
    /// Most dialogs up at once.
    max_up: usize,
    /// Seat: INVITEs received while another INVITE was pending or a call was up.
    overlaps: usize,
    /// Seat: refuse every INVITE with this status (486 Busy Here, 603 Decline).
    refuse: Option<u16>,
    /// Seat: the Contact it registers, when not its address.
    register_contact: Option<String>,
    /// Seat: the registrar said 200.
    registered: bool,
    reg_cseq: u32,
    media_port: u16,
}

impl Ua {
    fn new(name: String, role: Role, addr: SocketAddr, user: String, media_port: u16) -> Ua {
        Ua {
            now: Instant::now(),
            pending: Vec::new(),
            name,
            role,
            addr,
            user,
            inbox: Vec::new(),
            out: Vec::new(),
            timers: Vec::new(),
            answer_after: None,
            hangup_after: None,
            dialogs: Vec::new(),
            max_up: 0,
            overlaps: 0,
            refuse: None,
            register_contact: None,
            registered: false,
            reg_cseq: 0,
            media_port,
        }
    }

    /// Puts a request on the wire and retransmits it until answered.
    fn send_request(&mut self, request: Request) {
        let branch = request
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap();
        self.pending.push(PendingRequest {
            branch,
            request: request.clone(),
            next: self.now + T1,
            interval: T1,
            give_up: self.now + T1 * 64,
        });
        self.out.push(Message::Request(request));
    }

    fn via(&self) -> String {
        format!("SIP/2.0/UDP {};branch={};rport", self.addr, new_branch())
    }

    fn contact(&self) -> String {
        format!("<sip:{}@{}>", self.user, self.addr)
    }

    fn dialog(&mut self, call_id: &str) -> Option<&mut UaDialog> {
        self.dialogs.iter_mut().find(|d| d.call_id == call_id)
    }

    /// What this UA received, as (ms, summary).
    fn seen(&self) -> Vec<(u64, String)> {
        self.inbox.iter().map(|(ms, m)| (*ms, summary(m))).collect()
    }

    fn seen_names(&self) -> Vec<String> {
        self.inbox.iter().map(|(_, m)| summary(m)).collect()
    }

    /// The received requests with this method.
    fn requests(&self, method: Method) -> Vec<Request> {
        self.inbox
            .iter()
            .filter_map(|(_, m)| match m {
                Message::Request(r) if r.method == method => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// The received responses with this status and CSeq method.
    fn responses(&self, status: u16, method: Method) -> Vec<Response> {
        self.inbox
            .iter()
            .filter_map(|(_, m)| match m {
                Message::Response(r)
                    if r.status == status && r.cseq().is_ok_and(|c| c.method == method) =>
                {
                    Some(r.clone())
                }
                _ => None,
            })
            .collect()
    }

    fn up_count(&self) -> usize {
        self.dialogs.iter().filter(|d| d.up).count()
    }

    fn set_up(&mut self, call_id: &str) {
        if let Some(d) = self.dialog(call_id) {
            d.up = true;
        }
        self.max_up = self.max_up.max(self.up_count());
    }

    // ---- caller ---------------------------------------------------------------------

    /// Sends the trunk INVITE for 19 with an SDP offer.
    fn invite(&mut self) -> String {
        let body = sdp(&self.addr.ip().to_string(), self.media_port);
        self.invite_with(body)
    }

    /// Sends the trunk INVITE for 19 with this body (SDP, or empty for no offer).
    fn invite_with(&mut self, body: Bytes) -> String {
        let call_id = format!("{}@{}", self.name, self.addr.ip());
        let tag = format!("{}-tag", self.name);
        let mut h = Headers::new();
        h.push(HeaderName::Via, self.via());
        h.push(HeaderName::MaxForwards, "70");
        h.push(
            HeaderName::From,
            format!(
                "\"{}\" <sip:{}@{}>;tag={tag}",
                self.name,
                self.user,
                self.addr.ip()
            ),
        );
        h.push(HeaderName::To, "<sip:19@127.0.0.1>");
        h.push(HeaderName::CallId, call_id.clone());
        h.push(HeaderName::CSeq, "1 INVITE");
        h.push(HeaderName::Contact, self.contact());
        if !body.is_empty() {
            h.push(HeaderName::ContentType, "application/sdp");
        }
        let invite = Request {
            method: Method::Invite,
            uri: Uri::parse("sip:19@127.0.0.1").unwrap(),
            headers: h,
            body,
        };
        self.send_request(invite.clone());
        self.dialogs.push(UaDialog {
            call_id: call_id.clone(),
            invite,
            local_tag: tag,
            remote_tag: None,
            remote_target: None,
            ok: None,
            last: None,
            final_status: None,
            acked: false,
            up: false,
            local_cseq: 1,
        });
        call_id
    }

    /// CANCELs the (only) pending INVITE (RFC 3261 §9.1).
    fn cancel(&mut self) {
        let invite = self.dialogs.first().map(|d| d.invite.clone()).unwrap();
        self.send_request(build_cancel(&invite));
    }

    // ---- both -----------------------------------------------------------------------

    /// Sends BYE in the dialog (RFC 3261 §15.1.1); a caller may also send it in the early
    /// dialog, before any final response (§15).
    fn hang_up(&mut self, call_id: &str) {
        let via = self.via();
        let role = self.role;
        let d = self.dialog(call_id).unwrap();
        let early = role == Role::Caller && d.final_status.is_none() && d.remote_tag.is_some();
        if !d.up && !early {
            return;
        }
        d.up = false;
        d.local_cseq += 1;
        let (from, to) = match role {
            Role::Caller => (
                d.invite.headers.get(&HeaderName::From).unwrap().to_owned(),
                format!(
                    "{};tag={}",
                    d.invite.headers.get(&HeaderName::To).unwrap(),
                    d.remote_tag.clone().unwrap()
                ),
            ),
            Role::Seat => (
                format!(
                    "{};tag={}",
                    d.invite.headers.get(&HeaderName::To).unwrap(),
                    d.local_tag
                ),
                d.invite.headers.get(&HeaderName::From).unwrap().to_owned(),
            ),
        };
        let mut h = Headers::new();
        h.push(HeaderName::Via, via);
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, from);
        h.push(HeaderName::To, to);
        h.push(HeaderName::CallId, d.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} BYE", d.local_cseq));
        let bye = Request {
            method: Method::Bye,
            uri: d.remote_target.clone().unwrap(),
            headers: h,
            body: Bytes::new(),
        };
        self.timers
            .retain(|(_, t)| !matches!(t, UaTimer::Bye(c) if c == call_id));
        self.send_request(bye);
    }

    /// Caller: a re-INVITE in the confirmed dialog with the same SDP (a session refresh,
    /// RFC 4028), next CSeq.
    fn reinvite(&mut self, call_id: &str) {
        let via = self.via();
        let contact = self.contact();
        let body = sdp(&self.addr.ip().to_string(), self.media_port);
        let d = self.dialog(call_id).unwrap();
        d.local_cseq += 1;
        let mut h = Headers::new();
        h.push(HeaderName::Via, via);
        h.push(HeaderName::MaxForwards, "70");
        h.push(
            HeaderName::From,
            d.invite.headers.get(&HeaderName::From).unwrap(),
        );
        h.push(
            HeaderName::To,
            format!(
                "{};tag={}",
                d.invite.headers.get(&HeaderName::To).unwrap(),
                d.remote_tag.clone().unwrap()
            ),
        );
        h.push(HeaderName::CallId, d.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} INVITE", d.local_cseq));
        h.push(HeaderName::Contact, contact);
        h.push(HeaderName::ContentType, "application/sdp");
        let req = Request {
            method: Method::Invite,
            uri: d.remote_target.clone().unwrap(),
            headers: h,
            body,
        };
        self.send_request(req);
    }

    // ---- seat -----------------------------------------------------------------------

    /// REGISTER (RFC 3261 §10.2), with `authorization` after a 401.
    fn register(&mut self, authorization: Option<String>) {
        self.reg_cseq += 1;
        let mut h = Headers::new();
        h.push(HeaderName::Via, self.via());
        h.push(HeaderName::MaxForwards, "70");
        h.push(
            HeaderName::From,
            format!("<sip:{}@127.0.0.1>;tag=reg-{}", self.user, self.name),
        );
        h.push(HeaderName::To, format!("<sip:{}@127.0.0.1>", self.user));
        h.push(
            HeaderName::CallId,
            format!("reg-{}@{}", self.name, self.addr),
        );
        h.push(HeaderName::CSeq, format!("{} REGISTER", self.reg_cseq));
        let contact = self
            .register_contact
            .clone()
            .unwrap_or_else(|| self.contact());
        h.push(HeaderName::Contact, contact);
        h.push(HeaderName::Expires, "3600");
        if let Some(a) = authorization {
            h.push(HeaderName::Authorization, a);
        }
        self.send_request(Request {
            method: Method::Register,
            uri: Uri::parse("sip:127.0.0.1").unwrap(),
            headers: h,
            body: Bytes::new(),
        });
    }

    /// Seat: answers the INVITE of `call_id` with 200 and SDP, and retransmits it until
    /// the ACK (RFC 3261 §13.3.1.4).
    fn answer(&mut self, now: Instant, call_id: &str) {
        let contact = self.contact();
        let body = sdp(&self.addr.ip().to_string(), self.media_port);
        let d = self.dialog(call_id).unwrap();
        if d.final_status.is_some() {
            return;
        }
        let mut ok = d.invite.response(200, "OK", Some(&d.local_tag));
        ok.headers.push(HeaderName::Contact, contact);
        ok.headers.push(HeaderName::ContentType, "application/sdp");
        ok.body = body;
        d.final_status = Some(200);
        d.ok = Some(ok.clone());
        d.last = Some(ok.clone());
        self.out.push(Message::Response(ok));
        self.set_up(call_id);
        self.timers
            .retain(|(_, t)| !matches!(t, UaTimer::Answer(c) if c == call_id));
        self.timers
            .push((now + T1, UaTimer::Retransmit2xx(call_id.to_owned(), T1)));
    }

    // ---- input ----------------------------------------------------------------------

    fn receive(&mut self, now: Instant, ms: u64, msg: Message) {
        self.inbox.push((ms, msg.clone()));
        match msg {
            Message::Request(r) => self.on_request(now, r),
            Message::Response(r) => self.on_response(now, r),
        }
    }

    fn on_request(&mut self, now: Instant, req: Request) {
        let call_id = req.call_id().unwrap().to_owned();
        match req.method {
            Method::Invite if self.role == Role::Seat && self.dialog(&call_id).is_none() => {
                if self
                    .dialogs
                    .iter()
                    .any(|d| d.up || d.final_status.is_none())
                {
                    self.overlaps += 1;
                }
                let tag = format!("{}-{}", self.name, self.dialogs.len() + 1);
                if let Some(status) = self.refuse {
                    let r = req.response(status, "Refused", Some(&tag));
                    self.out.push(Message::Response(r.clone()));
                    self.dialogs.push(UaDialog {
                        call_id: call_id.clone(),
                        remote_tag: from_tag(&req),
                        remote_target: first_contact(&req),
                        invite: req,
                        local_tag: tag,
                        ok: None,
                        last: Some(r),
                        final_status: Some(status),
                        acked: false,
                        up: false,
                        local_cseq: 0,
                    });
                    return;
                }
                let mut ringing = req.response(180, "Ringing", Some(&tag));
                ringing.headers.push(HeaderName::Contact, self.contact());
                self.out.push(Message::Response(ringing.clone()));
                self.dialogs.push(UaDialog {
                    call_id: call_id.clone(),
                    remote_tag: from_tag(&req),
                    remote_target: first_contact(&req),
                    invite: req,
                    local_tag: tag,
                    ok: None,
                    last: Some(ringing),
                    final_status: None,
                    acked: false,
                    up: false,
                    local_cseq: 0,
                });
                if let Some(after) = self.answer_after {
                    self.timers.push((now + after, UaTimer::Answer(call_id)));
                }
            }
            Method::Invite if self.role == Role::Seat => {
                // A retransmission: the last response again (RFC 3261 §17.2.1).
                if let Some(r) = self.dialog(&call_id).and_then(|d| d.last.clone()) {
                    self.out.push(Message::Response(r));
                }
            }
            Method::Cancel => {
                let Some(d) = self.dialog(&call_id) else {
                    return;
                };
                let ok = req.response(200, "OK", Some(&d.local_tag));
                let terminated = if d.final_status.is_none() {
                    d.final_status = Some(487);
                    let r = d
                        .invite
                        .response(487, "Request Terminated", Some(&d.local_tag));
                    d.last = Some(r.clone());
                    Some(r)
                } else {
                    None
                };
                self.out.push(Message::Response(ok));
                if let Some(r) = terminated {
                    self.out.push(Message::Response(r));
                    self.timers
                        .retain(|(_, t)| !matches!(t, UaTimer::Answer(c) if *c == call_id));
                }
            }
            Method::Ack => {
                let hangup = self.hangup_after;
                let Some(d) = self.dialog(&call_id) else {
                    return;
                };
                if d.final_status != Some(200) || d.acked {
                    return;
                }
                d.acked = true;
                self.timers
                    .retain(|(_, t)| !matches!(t, UaTimer::Retransmit2xx(c, _) if *c == call_id));
                if let Some(after) = hangup {
                    self.timers.push((now + after, UaTimer::Bye(call_id)));
                }
            }
            // Qualify keep-alive (RFC 3261 §11): a seat answers with its capabilities.
            Method::Options if self.role == Role::Seat => {
                let mut ok = req.response(200, "OK", Some(&format!("{}-q", self.name)));
                ok.headers
                    .push(HeaderName::Allow, "INVITE, ACK, CANCEL, BYE, OPTIONS");
                self.out.push(Message::Response(ok));
            }
            Method::Bye => {
                let ok = req.response(200, "OK", None);
                self.out.push(Message::Response(ok));
                if let Some(d) = self.dialog(&call_id) {
                    d.up = false;
                }
                self.timers
                    .retain(|(_, t)| !matches!(t, UaTimer::Bye(c) if *c == call_id));
            }
            _ => {}
        }
    }

    fn on_response(&mut self, now: Instant, resp: Response) {
        let cseq = resp.cseq().unwrap();
        let branch = resp
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_owned));
        let was_pending = self.pending.len();
        self.pending.retain(|p| {
            !(Some(&p.branch) == branch.as_ref()
                && p.request.method == cseq.method
                && (cseq.method == Method::Invite || resp.status >= 200))
        });
        if cseq.method == Method::Register && was_pending == self.pending.len() {
            return; // a retransmitted final response
        }
        if cseq.method == Method::Register {
            match resp.status {
                401 => {
                    let challenge = resp
                        .headers
                        .get(&HeaderName::WwwAuthenticate)
                        .unwrap()
                        .to_owned();
                    let auth = answer_challenge(
                        &challenge,
                        "REGISTER",
                        "sip:127.0.0.1",
                        &self.user,
                        PASSWORD,
                        "0a4f113b",
                        1,
                    )
                    .unwrap();
                    self.register(Some(auth));
                }
                200 => self.registered = true,
                s => panic!("{} REGISTER got {s}", self.name),
            }
            return;
        }
        if cseq.method != Method::Invite || self.role != Role::Caller {
            return;
        }
        let call_id = resp.call_id().unwrap().to_owned();
        let hangup = self.hangup_after;
        let via = self.via();
        let Some(d) = self.dialog(&call_id) else {
            return;
        };
        match resp.status {
            100 => {}
            101..=199 => {
                d.remote_tag = to_tag(&resp).or(d.remote_tag.take());
                d.remote_target = first_contact(&resp).or(d.remote_target.take());
            }
            200..=299 => {
                // Every 2xx, retransmissions included, gets an ACK (RFC 3261 §13.2.2.4).
                d.remote_tag = to_tag(&resp);
                d.remote_target = first_contact(&resp);
                let mut h = Headers::new();
                h.push(HeaderName::Via, via);
                h.push(HeaderName::MaxForwards, "70");
                h.push(
                    HeaderName::From,
                    d.invite.headers.get(&HeaderName::From).unwrap(),
                );
                h.push(HeaderName::To, resp.headers.get(&HeaderName::To).unwrap());
                h.push(HeaderName::CallId, call_id.clone());
                h.push(HeaderName::CSeq, format!("{} ACK", cseq.seq));
                let ack = Request {
                    method: Method::Ack,
                    uri: d.remote_target.clone().unwrap(),
                    headers: h,
                    body: Bytes::new(),
                };
                let first = d.final_status.is_none();
                d.final_status = Some(resp.status);
                self.out.push(Message::Request(ack));
                if first {
                    self.set_up(&call_id);
                    if let Some(after) = hangup {
                        self.timers.push((now + after, UaTimer::Bye(call_id)));
                    }
                }
            }
            _ => {
                // ACK for a non-2xx final: same branch as the INVITE (§17.1.1.3).
                d.final_status = Some(resp.status);
                let ack = build_ack(&d.invite, &resp);
                self.out.push(Message::Request(ack));
            }
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        self.timers
            .iter()
            .map(|(at, _)| *at)
            .chain(self.pending.iter().map(|p| p.next))
            .min()
    }

    fn on_timers(&mut self, now: Instant) {
        let mut resend = Vec::new();
        self.pending.retain_mut(|p| {
            if p.next > now {
                return true;
            }
            if now >= p.give_up {
                return false;
            }
            resend.push(p.request.clone());
            p.interval = if p.request.method == Method::Invite {
                p.interval * 2
            } else {
                (p.interval * 2).min(T2)
            };
            p.next += p.interval;
            true
        });
        self.out.extend(resend.into_iter().map(Message::Request));
        let (due, later): (Vec<_>, Vec<_>) = self.timers.drain(..).partition(|(at, _)| *at <= now);
        self.timers = later;
        for (at, t) in due {
            match t {
                UaTimer::Answer(c) => self.answer(now, &c),
                UaTimer::Bye(c) => self.hang_up(&c),
                UaTimer::Retransmit2xx(c, interval) => {
                    let Some(ok) = self.dialog(&c).and_then(|d| d.ok.clone()) else {
                        continue;
                    };
                    self.out.push(Message::Response(ok));
                    let next = (interval * 2).min(T2);
                    self.timers
                        .push((at + next, UaTimer::Retransmit2xx(c, next)));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The simulation
// ---------------------------------------------------------------------------------------

/// One message put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wire {
    ms: u64,
    from: String,
    to: String,
    what: String,
    dropped: bool,
}

type DropFilter = Box<dyn FnMut(&Wire) -> bool>;

struct Packet {
    at: Instant,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

struct Sim {
    start: Instant,
    now: Instant,
    /// One-way latency of every hop.
    latency: Duration,
    switch: Switch,
    uas: Vec<Ua>,
    in_flight: Vec<Packet>,
    /// Returns true to drop a message.
    drop: DropFilter,
    wire: Vec<Wire>,
    events: Vec<(u64, CallEvent)>,
    media: Vec<(u64, MediaCommand)>,
    seat_changes: Vec<(String, bool)>,
    next_port: u16,
    /// `Output::Callback`: (ms, task, result).
    callback_results: Vec<(u64, u64, TaskResult)>,
}

type UaId = usize;

/// The plan of most scenarios: the line-19 numbers ring and wait in `line19` for ever.
const PLAN: &str = r#"
[[routes]]
name = "line19"
match = { called = '19|019|0019|\+21219' }
steps = [{ ring = 180 }, { queue = { name = "line19", priority = 5, max_wait_s = 0 } }]
"#;

/// The plan with the backup centre: no seat or 120 s of waiting overflows to it; when it
/// fails the call goes back to its place in the queue.
const PLAN_WITH_BACKUP: &str = r#"
[[routes]]
name = "line19"
match = { called = '19|019|0019|\+21219' }
steps = [
  { ring = 180 },
  { queue = { name = "line19", priority = 5, max_wait_s = 120 } },
  { overflow = { targets = [{ uri = "sip:19@127.0.0.4:5080", timeout_s = 20 }], then = "back-to-queue" } },
]
"#;

/// Compiles a plan written in a test against the configuration's queues.
fn compile_plan(config: &Config, text: &str) -> Arc<CompiledPlan> {
    let queues: Vec<String> = config.queues.iter().map(|q| q.name.clone()).collect();
    let plan = dialplan::compile(
        std::path::Path::new("test.toml"),
        &mut |_| Ok(text.to_owned()),
        &queues,
    )
    .unwrap_or_else(|r| panic!("test plan refused:\n{}", r.render(false)));
    Arc::new(plan)
}

impl Sim {
    fn new(config: Config) -> Sim {
        Sim::with_plan(config, PLAN)
    }

    /// A simulation whose switch routes with the plan `plan` (TOML text). The switch's
    /// wall clock starts at Tuesday 2026-11-03T10:00:00Z.
    fn with_plan(config: Config, plan: &str) -> Sim {
        let plan = compile_plan(&config, plan);
        let start = Instant::now();
        let creds = config
            .seats
            .iter()
            .map(|s| Credential::from_password(&s.id, REALM, PASSWORD))
            .collect();
        let registrar = Registrar::new(RegistrarConfig::new(REALM), creds, start, [7u8; 32]);
        let local = LocalAddr {
            host: "127.0.0.1".into(),
            udp_port: 5060,
            tcp_port: 5060,
        };
        let mut switch = Switch::new(&config, local, registrar, plan);
        switch.set_wall_clock(start, wall("2026-11-03T10:00:00Z"));
        Sim {
            start,
            now: start,
            latency: Duration::from_millis(10),
            switch,
            uas: Vec::new(),
            in_flight: Vec::new(),
            drop: Box::new(|_| false),
            wire: Vec::new(),
            events: Vec::new(),
            media: Vec::new(),
            seat_changes: Vec::new(),
            next_port: 20_000,
            callback_results: Vec::new(),
        }
    }

    fn ms(&self) -> u64 {
        u64::try_from((self.now - self.start).as_millis()).unwrap()
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    fn add_caller(&mut self, n: u16) -> UaId {
        let addr = SocketAddr::from(([127, 0, 0, 2], 6000 + n));
        let ua = Ua::new(
            format!("caller{n}"),
            Role::Caller,
            addr,
            format!("06000000{n:02}"),
            40_000 + 2 * n,
        );
        self.uas.push(ua);
        self.uas.len() - 1
    }

    /// A seat `agentNN` that registers at once (401 challenge, digest answer, 200).
    fn add_seat(&mut self, n: u16, answer_after: Option<Duration>) -> UaId {
        self.add_seat_with_contact(n, answer_after, None)
    }

    /// A seat that registers `contact` instead of its address.
    fn add_seat_with_contact(
        &mut self,
        n: u16,
        answer_after: Option<Duration>,
        contact: Option<String>,
    ) -> UaId {
        let addr = SocketAddr::from(([127, 0, 0, 3], 7000 + n));
        let mut ua = Ua::new(
            format!("agent{n:02}"),
            Role::Seat,
            addr,
            format!("agent{n:02}"),
            50_000 + 2 * n,
        );
        ua.answer_after = answer_after;
        ua.register_contact = contact;
        ua.now = self.now;
        ua.register(None);
        self.uas.push(ua);
        self.flush();
        self.uas.len() - 1
    }

    /// Another phone (`device` 1–9) of seat `agentNN`, e.g. the headset app beside the
    /// desk phone: its own address 127.0.0.3:(7000 + 100 × device + n) and Contact,
    /// registered as a further binding of the same seat (RFC 3261 §10.2.1.2).
    fn add_seat_device(&mut self, n: u16, device: u16, answer_after: Option<Duration>) -> UaId {
        let addr = SocketAddr::from(([127, 0, 0, 3], 7000 + 100 * device + n));
        let mut ua = Ua::new(
            format!("agent{n:02}-{device}"),
            Role::Seat,
            addr,
            format!("agent{n:02}"),
            52_000 + 100 * device + 2 * n,
        );
        ua.answer_after = answer_after;
        ua.now = self.now;
        ua.register(None);
        self.uas.push(ua);
        self.flush();
        self.uas.len() - 1
    }

    /// The backup centre at `sip:19@127.0.0.4:5080`, a UAS that needs no registration.
    fn add_backup(&mut self, answer_after: Option<Duration>) -> UaId {
        let addr = SocketAddr::from(([127, 0, 0, 4], 5080));
        let mut ua = Ua::new("backup".into(), Role::Seat, addr, "19".into(), 60_000);
        ua.answer_after = answer_after;
        self.uas.push(ua);
        self.uas.len() - 1
    }

    fn ua(&mut self, id: UaId) -> &mut Ua {
        let now = self.now;
        let ua = &mut self.uas[id];
        ua.now = now;
        ua
    }

    fn name_of(&self, addr: SocketAddr) -> String {
        if addr == vigie_addr() {
            return "vigie".into();
        }
        self.uas
            .iter()
            .find(|u| u.addr == addr)
            .map(|u| u.name.clone())
            .unwrap_or_else(|| panic!("message for unknown address {addr}"))
    }

    fn put_on_wire(&mut self, from: SocketAddr, to: SocketAddr, msg: &Message) {
        let wire = Wire {
            ms: self.ms(),
            from: self.name_of(from),
            to: self.name_of(to),
            what: summary(msg),
            dropped: false,
        };
        let dropped = (self.drop)(&wire);
        self.wire.push(Wire { dropped, ..wire });
        if !dropped {
            self.in_flight.push(Packet {
                at: self.now + self.latency,
                from,
                to,
                bytes: msg.to_bytes(),
            });
        }
    }

    /// Moves every output of the switch and the UAs onto the wire; the fake relay answers
    /// `Allocate` at once with two fresh even ports.
    fn flush(&mut self) {
        loop {
            let mut progress = false;
            while let Some(o) = self.switch.poll_output() {
                progress = true;
                let ms = self.ms();
                match o {
                    Output::Transmit(t) => {
                        assert_eq!(t.to.kind, TransportKind::Udp);
                        self.put_on_wire(vigie_addr(), t.to.addr, &t.message);
                    }
                    Output::Event(e) => self.events.push((ms, e)),
                    Output::Seat { seat, online } => self.seat_changes.push((seat, online)),
                    Output::Media(m) => {
                        if let MediaCommand::Allocate { call } = &m {
                            let ports = MediaPorts {
                                a: self.next_port,
                                b: self.next_port + 2,
                            };
                            self.next_port += 4;
                            let now = self.now;
                            self.switch.handle_media_ready(now, *call, Some(ports));
                        }
                        self.media.push((ms, m));
                    }
                    // Seat status/state changes (journal, live view): checked in seat_props.
                    Output::Agent(_) => {}
                    Output::Callback { task, result } => {
                        self.callback_results.push((ms, task, result))
                    }
                    other => panic!("unexpected output {other:?}"),
                }
            }
            for i in 0..self.uas.len() {
                let out = std::mem::take(&mut self.uas[i].out);
                let from = self.uas[i].addr;
                for m in out {
                    progress = true;
                    self.put_on_wire(from, vigie_addr(), &m);
                }
            }
            if !progress {
                break;
            }
        }
    }

    /// Runs the network, the switch's and the UAs' timers up to `ms` (inclusive).
    fn run(&mut self, ms: u64) {
        let until = self.at(ms);
        self.flush();
        // A core whose poll_timeout stays at or before `now` would spin its driver.
        let mut stuck = 0u32;
        loop {
            let next = [
                self.switch.poll_timeout(),
                self.in_flight.iter().map(|p| p.at).min(),
                self.uas.iter().filter_map(Ua::next_timer).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|n| *n <= until) else {
                break;
            };
            if next <= self.now && self.in_flight.iter().all(|p| p.at > self.now) {
                stuck += 1;
                assert!(
                    stuck < 1_000,
                    "poll_timeout stuck at {} ms (switch {:?}, UAs {:?})",
                    self.ms(),
                    self.switch
                        .poll_timeout()
                        .map(|t| t.saturating_duration_since(self.start)),
                    self.uas
                        .iter()
                        .map(|u| u
                            .next_timer()
                            .map(|t| t.saturating_duration_since(self.start)))
                        .collect::<Vec<_>>()
                );
            } else {
                stuck = 0;
            }
            self.now = self.now.max(next);
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Delivers every packet due now (all of them before the switch's outputs are read),
    /// then runs due timers.
    fn step(&mut self) {
        let now = self.now;
        let ms = self.ms();
        for ua in &mut self.uas {
            ua.now = now;
        }
        let (due, later): (Vec<_>, Vec<_>) = self.in_flight.drain(..).partition(|p| p.at <= now);
        self.in_flight = later;
        for p in due {
            // Through the wire format and the real parser, as on a socket.
            let msg = parse_datagram(&p.bytes).unwrap_or_else(|e| {
                panic!("unparsable {e}: {}", String::from_utf8_lossy(&p.bytes))
            });
            if p.to == vigie_addr() {
                let from = Peer {
                    kind: TransportKind::Udp,
                    addr: p.from,
                };
                self.switch.handle_message(now, from, msg);
            } else if let Some(ua) = self.uas.iter_mut().find(|u| u.addr == p.to) {
                ua.receive(now, ms, msg);
            }
        }
        if self.switch.poll_timeout().is_some_and(|t| t <= now) {
            self.switch.handle_timeout(now);
        }
        for ua in &mut self.uas {
            ua.on_timers(now);
        }
        self.flush();
    }

    /// What `name` sent on the wire, as (ms, summary, dropped).
    fn sent_by(&self, name: &str) -> Vec<(u64, String, bool)> {
        self.wire
            .iter()
            .filter(|w| w.from == name)
            .map(|w| (w.ms, w.what.clone(), w.dropped))
            .collect()
    }

    /// What vigie sent to `name`, as (ms, summary, dropped).
    fn vigie_to(&self, name: &str) -> Vec<(u64, String, bool)> {
        self.wire
            .iter()
            .filter(|w| w.from == "vigie" && w.to == name)
            .map(|w| (w.ms, w.what.clone(), w.dropped))
            .collect()
    }

    /// The calls in the order the switch received them.
    fn calls(&self) -> Vec<CallId> {
        self.events
            .iter()
            .filter(|(_, e)| matches!(e.kind, CallEventKind::Received { .. }))
            .map(|(_, e)| e.call)
            .collect()
    }

    /// The events of one call, as short strings (`offered agent01`, `ended caller_hangup`);
    /// the `Routed` event is left out (see [`Sim::routed`]).
    fn events_of(&self, call: CallId) -> Vec<String> {
        self.events
            .iter()
            .filter(|(_, e)| e.call == call && !matches!(e.kind, CallEventKind::Routed { .. }))
            .map(|(_, e)| event_text(&e.kind))
            .collect()
    }

    /// The route, variables and tags of the call's `Routed` event.
    fn routed(&self, call: CallId) -> (Option<String>, Vec<(String, String)>, Vec<String>) {
        self.events
            .iter()
            .find_map(|(_, e)| match &e.kind {
                CallEventKind::Routed {
                    route, vars, tags, ..
                } if e.call == call => Some((route.clone(), vars.clone(), tags.clone())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Routed event for {call}"))
    }

    /// The media commands other than Allocate/PeerHint/Release, as (ms, text).
    fn media_plan(&self, call: CallId) -> Vec<(u64, String)> {
        self.media
            .iter()
            .filter_map(|(ms, m)| match m {
                MediaCommand::Play {
                    call: c,
                    prompt,
                    repeat,
                    ..
                } if *c == call => Some((*ms, format!("play {prompt} repeat={repeat}"))),
                MediaCommand::StopPlay { call: c, .. } if *c == call => {
                    Some((*ms, "stop_play".to_owned()))
                }
                MediaCommand::Record { call: c, on } if *c == call => {
                    Some((*ms, format!("record {on}")))
                }
                _ => None,
            })
            .collect()
    }

    fn releases(&self, call: CallId) -> usize {
        self.media
            .iter()
            .filter(|(_, m)| matches!(m, MediaCommand::Release { call: c } if *c == call))
            .count()
    }

    fn ports_of(&self, call: CallId) -> (u16, u16) {
        let i = self
            .media
            .iter()
            .filter(|(_, m)| matches!(m, MediaCommand::Allocate { .. }))
            .position(|(_, m)| matches!(m, MediaCommand::Allocate { call: c } if *c == call))
            .unwrap();
        let base = 20_000 + 4 * u16::try_from(i).unwrap();
        (base, base + 2)
    }

    fn seat_state(&self, seat: &str) -> String {
        self.switch
            .acd()
            .seat_state(seat)
            .map(|s| s.label().to_owned())
            .unwrap_or_default()
    }
}

fn event_text(kind: &CallEventKind) -> String {
    match kind {
        CallEventKind::Received { called, .. } => format!("received {called}"),
        CallEventKind::Queued { queue } => format!("queued {queue}"),
        CallEventKind::Offered { seat } => format!("offered {seat}"),
        CallEventKind::Ringing { seat } => format!("ringing {seat}"),
        CallEventKind::Answered { seat } => format!("answered {seat}"),
        CallEventKind::SeatFailed {
            seat,
            status,
            reason,
        } => format!("seat_failed {seat} {status:?} {reason}"),
        CallEventKind::Abandoned { phase } => format!("abandoned {}", phase.as_str()),
        CallEventKind::Overflowed { target, reason } => {
            format!("overflowed {target} {}", reason.as_str())
        }
        CallEventKind::OverflowFailed { status } => format!("overflow_failed {status:?}"),
        CallEventKind::OverflowAnswered { target } => format!("overflow_answered {target}"),
        CallEventKind::Ended {
            cause: EndCause::Dialplan { status },
        } => format!("ended dialplan {status}"),
        CallEventKind::Ended { cause } => format!("ended {}", cause.as_str()),
        other => other.name().to_owned(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn timed(items: &[(u64, &str)]) -> Vec<(u64, String)> {
    items.iter().map(|(ms, s)| (*ms, (*s).to_owned())).collect()
}

fn wire(items: &[(u64, &str, bool)]) -> Vec<(u64, String, bool)> {
    items
        .iter()
        .map(|(ms, s, d)| (*ms, (*s).to_owned(), *d))
        .collect()
}

/// An RFC 3339 UTC instant.
fn wall(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// The demo configuration with `seats` seats.
fn config(seats: usize) -> Config {
    let mut c = Config::default();
    c.seats.truncate(seats);
    // Simulated seats expect only INVITEs; the qualify scenario turns OPTIONS on.
    c.registrar.qualify_s = 0;
    c
}

fn body_text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

/// Seat registration with digest, a trunk call answered by the seat, caller hangs up.
#[test]
fn happy_path_register_call_answer_caller_hangs_up() {
    let mut sim = Sim::new(config(1));
    let seat = sim.add_seat(1, Some(Duration::from_secs(2)));
    sim.run(100);
    assert_eq!(
        sim.ua(seat).seen(),
        timed(&[(20, "401 REGISTER"), (40, "200 REGISTER")])
    );
    assert!(sim.ua(seat).registered);
    assert_eq!(sim.seat_changes, vec![("agent01".to_owned(), true)]);
    assert_eq!(sim.seat_state("agent01"), "idle");

    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).hangup_after = Some(Duration::from_secs(30));
    let sip_call_id = sim.ua(caller).invite();
    sim.run(60_000);

    let calls = sim.calls();
    assert_eq!(calls.len(), 1);
    let call = calls[0];
    let (port_a, port_b) = sim.ports_of(call);

    // Caller: 100 and 180 at once, 200 when the seat answers, 200 for its BYE.
    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[
            (1_020, "100 INVITE"),
            (1_020, "180 INVITE"),
            (3_040, "200 INVITE"),
            (33_060, "200 BYE"),
        ])
    );
    // Seat: vigie's INVITE, the ACK for its 200, the BYE after the caller's.
    assert_eq!(
        sim.ua(seat).seen(),
        timed(&[
            (20, "401 REGISTER"),
            (40, "200 REGISTER"),
            (1_020, "INVITE"),
            (3_040, "ACK"),
            (33_060, "BYE"),
        ])
    );
    assert_eq!(
        sim.sent_by("agent01"),
        wire(&[
            (0, "REGISTER", false),
            (20, "REGISTER", false),
            (1_020, "180 INVITE", false),
            (3_020, "200 INVITE", false),
            (33_060, "200 BYE", false),
        ])
    );
    assert_eq!(
        sim.sent_by("caller1"),
        wire(&[
            (1_000, "INVITE", false),
            (3_040, "ACK", false),
            (33_040, "BYE", false),
        ])
    );

    // The seat's INVITE offers vigie's relay port B, never the caller's address.
    let invite = sim.ua(seat).requests(Method::Invite).remove(0);
    let offer = body_text(&invite.body);
    assert!(offer.contains("c=IN IP4 127.0.0.1\r\n"), "{offer}");
    assert!(
        offer.contains(&format!("m=audio {port_b} RTP/AVP 0 8 101\r\n")),
        "{offer}"
    );
    assert!(!offer.contains("127.0.0.2"), "{offer}");
    assert_eq!(invite.uri.to_string(), "sip:agent01@127.0.0.3:7001");
    assert_eq!(
        invite
            .headers
            .get(&HeaderName::Other("X-Vigie-Call-ID".into())),
        Some(call.to_string().as_str())
    );
    // The caller's 200 answers with vigie's relay port A.
    let ok = sim.ua(caller).responses(200, Method::Invite).remove(0);
    let answer = body_text(&ok.body);
    assert!(answer.contains("c=IN IP4 127.0.0.1\r\n"), "{answer}");
    assert!(
        answer.contains(&format!("m=audio {port_a} RTP/AVP 0 8 101\r\n")),
        "{answer}"
    );
    assert!(!answer.contains("127.0.0.3"), "{answer}");
    // The 180 and the 200 carry the same To tag: one dialog with the caller.
    let ringing = sim.ua(caller).responses(180, Method::Invite).remove(0);
    assert!(to_tag(&ringing).is_some());
    assert_eq!(to_tag(&ringing), to_tag(&ok));
    // The ACK to the seat matches its 200 (tags, CSeq, Request-URI = seat Contact).
    let ack = sim.ua(seat).requests(Method::Ack).remove(0);
    let seat_ok = sim.ua(seat).dialogs[0].ok.clone().unwrap();
    assert_eq!(to_tag(&ack), to_tag(&seat_ok));
    assert_eq!(from_tag(&ack), from_tag(&invite));
    assert_eq!(ack.cseq().unwrap().seq, invite.cseq().unwrap().seq);
    assert_eq!(ack.uri.to_string(), "sip:agent01@127.0.0.3:7001");

    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "answered agent01",
            "ended caller_hangup",
        ])
    );
    match &sim.events[0].1.kind {
        CallEventKind::Received {
            sip_call_id: id,
            caller,
            source,
            ..
        } => {
            assert_eq!(id, &sip_call_id);
            assert_eq!(caller, "0600000001");
            assert_eq!(source.to_string(), "127.0.0.2:6001");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.releases(call), 1);
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.seat_state("agent01"), "idle");
    assert_eq!(sim.switch.retransmissions(), 0);
}

/// A connected call set up by [`happy_path_register_call_answer_caller_hangs_up`]'s
/// steps, without hang-up: returns (sim, caller, seat, call).
fn connected_call(seat_answer: Duration) -> (Sim, UaId, UaId, CallId) {
    let mut sim = Sim::new(config(1));
    let seat = sim.add_seat(1, Some(seat_answer));
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(1_000 + seat_answer.as_millis() as u64 + 100);
    let call = sim.calls()[0];
    (sim, caller, seat, call)
}

/// The seat hangs up first: vigie BYEs the caller in the caller's dialog.
#[test]
fn agent_hangs_up_first() {
    let (mut sim, caller, seat, call) = connected_call(Duration::from_secs(2));
    let seat_call_id = sim.ua(seat).dialogs[0].call_id.clone();
    sim.ua(seat).hang_up(&seat_call_id);
    sim.run(10_000);

    assert_eq!(
        sim.ua(caller).seen_names(),
        strings(&["100 INVITE", "180 INVITE", "200 INVITE", "BYE"])
    );
    assert_eq!(
        sim.sent_by("caller1"),
        wire(&[
            (1_000, "INVITE", false),
            (3_040, "ACK", false),
            (3_120, "200 BYE", false),
        ])
    );
    assert_eq!(
        sim.ua(seat).seen_names(),
        strings(&["401 REGISTER", "200 REGISTER", "INVITE", "ACK", "200 BYE"])
    );
    let invite = sim.ua(caller).dialogs[0].invite.clone();
    let ok = sim.ua(caller).responses(200, Method::Invite).remove(0);
    let bye = sim.ua(caller).requests(Method::Bye).remove(0);
    // From = vigie's side (the INVITE's To with vigie's tag), To = the caller with its tag.
    assert_eq!(
        bye.header_from().unwrap().uri.to_string(),
        "sip:19@127.0.0.1"
    );
    assert_eq!(from_tag(&bye), to_tag(&ok));
    assert_eq!(
        bye.header_to().unwrap().uri.to_string(),
        "sip:0600000001@127.0.0.2"
    );
    assert_eq!(to_tag(&bye).as_deref(), Some("caller1-tag"));
    assert_eq!(bye.call_id().unwrap(), invite.call_id().unwrap());
    // vigie's first request in this dialog: its own CSeq space.
    assert_eq!(bye.cseq().unwrap().seq, 1);
    assert_eq!(bye.cseq().unwrap().method, Method::Bye);
    // Request-URI = the caller's Contact (RFC 3261 §12.2.1.1).
    assert_eq!(bye.uri.to_string(), "sip:0600000001@127.0.0.2:6001");
    assert!(
        bye.top_via()
            .unwrap()
            .branch()
            .unwrap()
            .starts_with("z9hG4bK")
    );

    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "answered agent01",
            "ended agent_hangup",
        ])
    );
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.releases(call), 1);
    assert_eq!(sim.seat_state("agent01"), "idle");
}

/// CANCEL while queued with no seat registered: 200 for the CANCEL, 487 for the INVITE,
/// the caller's ACK absorbed, the call gone and its relay ports freed.
#[test]
fn cancel_while_queued() {
    let mut sim = Sim::new(config(1));
    let caller = sim.add_caller(1);
    sim.ua(caller).invite();
    sim.run(2_000);
    assert_eq!(sim.switch.active_calls(), 1);
    sim.ua(caller).cancel();
    sim.run(60_000);

    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[
            (20, "100 INVITE"),
            (20, "180 INVITE"),
            (2_020, "200 CANCEL"),
            (2_020, "487 INVITE"),
        ])
    );
    assert_eq!(
        sim.sent_by("caller1"),
        wire(&[
            (0, "INVITE", false),
            (2_000, "CANCEL", false),
            (2_020, "ACK", false),
        ])
    );
    // The ACK stops the 487's retransmission: nothing more from vigie.
    assert_eq!(sim.sent_by("vigie").len(), 4);
    let r487 = sim.ua(caller).responses(487, Method::Invite).remove(0);
    let r180 = sim.ua(caller).responses(180, Method::Invite).remove(0);
    assert_eq!(to_tag(&r487), to_tag(&r180));
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&["received 19", "queued line19", "abandoned queued"])
    );
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.releases(call), 1);
    assert_eq!(sim.switch.retransmissions(), 0);
}

/// CANCEL while the seat rings: vigie CANCELs the seat, ACKs its 487, the seat is idle.
#[test]
fn cancel_while_seat_rings() {
    let mut sim = Sim::new(config(1));
    let seat = sim.add_seat(1, None);
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(5_000);
    assert_eq!(sim.seat_state("agent01"), "ringing");
    sim.ua(caller).cancel();
    sim.run(60_000);

    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[
            (1_020, "100 INVITE"),
            (1_020, "180 INVITE"),
            (5_020, "200 CANCEL"),
            (5_020, "487 INVITE"),
        ])
    );
    assert_eq!(
        sim.ua(seat).seen(),
        timed(&[
            (20, "401 REGISTER"),
            (40, "200 REGISTER"),
            (1_020, "INVITE"),
            (5_020, "CANCEL"),
            (5_040, "ACK"),
        ])
    );
    assert_eq!(
        sim.sent_by("agent01"),
        wire(&[
            (0, "REGISTER", false),
            (20, "REGISTER", false),
            (1_020, "180 INVITE", false),
            (5_020, "200 CANCEL", false),
            (5_020, "487 INVITE", false),
        ])
    );
    // The CANCEL and the ACK for the 487 match the INVITE (RFC 3261 §9.1, §17.1.1.3).
    let invite = sim.ua(seat).requests(Method::Invite).remove(0);
    let cancel = sim.ua(seat).requests(Method::Cancel).remove(0);
    let ack = sim.ua(seat).requests(Method::Ack).remove(0);
    let branch = invite.top_via().unwrap().branch().unwrap().to_owned();
    assert_eq!(cancel.top_via().unwrap().branch(), Some(branch.as_str()));
    assert_eq!(ack.top_via().unwrap().branch(), Some(branch.as_str()));
    assert_eq!(cancel.uri, invite.uri);
    assert_eq!(to_tag(&cancel), None);
    assert_eq!(to_tag(&ack).as_deref(), Some("agent01-1"));
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "abandoned ringing",
        ])
    );
    assert_eq!(sim.seat_state("agent01"), "idle");
    // The caller left: not an unanswered offer of the seat (no streak towards the
    // no-answer break).
    let streak = sim
        .switch
        .acd()
        .seat("agent01")
        .map(|s| s.no_answer_streak());
    assert_eq!(streak, Some(0));
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.releases(call), 1);
}

/// The caller's CANCEL and the seat's 200 reach vigie at the same instant, in `order`.
fn cancel_200_race(cancel_first: bool) -> (Sim, UaId, UaId, CallId) {
    let mut sim = Sim::new(config(1));
    let seat = sim.add_seat(1, None);
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(3_000);
    let seat_call_id = sim.ua(seat).dialogs[0].call_id.clone();
    let now = sim.now;
    // Both are put on the wire in this order at 3000 ms and delivered together at 3010,
    // before the switch emits anything.
    if cancel_first {
        sim.ua(caller).cancel();
        sim.flush();
        sim.ua(seat).answer(now, &seat_call_id);
    } else {
        sim.ua(seat).answer(now, &seat_call_id);
        sim.flush();
        sim.ua(caller).cancel();
    }
    sim.run(60_000);
    let call = sim.calls()[0];
    (sim, caller, seat, call)
}

/// 200 first: the call is answered; the CANCEL gets 200 and no 487 follows.
#[test]
fn cancel_200_race_answer_wins() {
    let (mut sim, caller, seat, call) = cancel_200_race(false);
    let caller_saw = sim.ua(caller).seen_names();
    assert_eq!(
        caller_saw,
        strings(&["100 INVITE", "180 INVITE", "200 INVITE", "200 CANCEL"])
    );
    assert_eq!(
        sim.ua(seat).seen_names(),
        strings(&["401 REGISTER", "200 REGISTER", "INVITE", "ACK"])
    );
    assert_eq!(sim.ua(caller).up_count(), 1);
    assert_eq!(sim.ua(seat).up_count(), 1);
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "answered agent01",
        ])
    );
    assert_eq!(sim.switch.active_calls(), 1);
    assert_eq!(sim.seat_state("agent01"), "on_call");
    // And it hangs up cleanly.
    let cid = sim.ua(caller).dialogs[0].call_id.clone();
    sim.ua(caller).hang_up(&cid);
    sim.run(70_000);
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.seat_state("agent01"), "idle");
    assert_eq!(sim.ua(seat).up_count(), 0);
}

/// CANCEL first: the caller gets 487; the seat's crossed 200 is ACKed and hung up.
#[test]
fn cancel_200_race_cancel_wins() {
    let (mut sim, caller, seat, call) = cancel_200_race(true);
    assert_eq!(
        sim.ua(caller).seen_names(),
        strings(&["100 INVITE", "180 INVITE", "200 CANCEL", "487 INVITE"])
    );
    // vigie's CANCEL crossed the seat's 200: the seat answers it 200 and gets ACK, BYE.
    assert_eq!(
        sim.ua(seat).seen(),
        timed(&[
            (20, "401 REGISTER"),
            (40, "200 REGISTER"),
            (1_020, "INVITE"),
            (3_020, "CANCEL"),
            (3_020, "ACK"),
            (3_020, "BYE"),
        ])
    );
    assert_eq!(
        sim.sent_by("agent01"),
        wire(&[
            (0, "REGISTER", false),
            (20, "REGISTER", false),
            (1_020, "180 INVITE", false),
            (3_000, "200 INVITE", false),
            (3_020, "200 CANCEL", false),
            (3_020, "200 BYE", false),
        ])
    );
    let invite = sim.ua(seat).requests(Method::Invite).remove(0);
    let bye = sim.ua(seat).requests(Method::Bye).remove(0);
    assert_eq!(to_tag(&bye).as_deref(), Some("agent01-1"));
    assert_eq!(from_tag(&bye), from_tag(&invite));
    assert_eq!(bye.uri.to_string(), "sip:agent01@127.0.0.3:7001");
    assert_eq!(sim.ua(seat).up_count(), 0);
    assert_eq!(sim.ua(seat).overlaps, 0);
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "abandoned ringing",
        ])
    );
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.seat_state("agent01"), "idle");
    assert_eq!(sim.releases(call), 1);
}

/// A seat that never answers is CANCELled after ring_timeout_s; on its 487 the next seat
/// is offered the call.
#[test]
fn ring_timeout_moves_to_next_seat() {
    let mut sim = Sim::new(config(2));
    let slow = sim.add_seat(1, None);
    sim.run(50);
    let fast = sim.add_seat(2, Some(Duration::from_secs(1)));
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(40_000);

    // Offered at 1010; the ring timeout is 15 s: CANCEL at 16010.
    assert_eq!(
        sim.ua(slow).seen(),
        timed(&[
            (20, "401 REGISTER"),
            (40, "200 REGISTER"),
            (1_020, "INVITE"),
            (16_020, "CANCEL"),
            (16_040, "ACK"),
        ])
    );
    assert_eq!(
        sim.ua(fast).seen(),
        timed(&[
            (70, "401 REGISTER"),
            (90, "200 REGISTER"),
            (16_040, "INVITE"),
            (17_060, "ACK"),
        ])
    );
    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[
            (1_020, "100 INVITE"),
            (1_020, "180 INVITE"),
            (17_060, "200 INVITE"),
        ])
    );
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "seat_failed agent01 Some(487) no_answer",
            "offered agent02",
            "ringing agent02",
            "answered agent02",
        ])
    );
    assert_eq!(sim.seat_state("agent01"), "idle");
    assert_eq!(sim.seat_state("agent02"), "on_call");
}

/// The seat's first 200 is lost: the seat retransmits it and the call completes.
#[test]
fn lost_200_from_seat_is_retransmitted_by_the_seat() {
    let mut sim = Sim::new(config(1));
    let mut dropped = false;
    sim.drop = Box::new(move |w| {
        if !dropped && w.from == "agent01" && w.what == "200 INVITE" {
            dropped = true;
            return true;
        }
        false
    });
    let seat = sim.add_seat(1, Some(Duration::from_secs(2)));
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(10_000);

    // 200 at 3020 lost, retransmitted at T1 (3520), ACKed at 3540: no more copies.
    assert_eq!(
        sim.sent_by("agent01"),
        wire(&[
            (0, "REGISTER", false),
            (20, "REGISTER", false),
            (1_020, "180 INVITE", false),
            (3_020, "200 INVITE", true),
            (3_520, "200 INVITE", false),
        ])
    );
    assert_eq!(
        sim.vigie_to("agent01"),
        wire(&[
            (10, "401 REGISTER", false),
            (30, "200 REGISTER", false),
            (1_010, "INVITE", false),
            (3_530, "ACK", false),
        ])
    );
    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[
            (1_020, "100 INVITE"),
            (1_020, "180 INVITE"),
            (3_540, "200 INVITE"),
        ])
    );
    let call = sim.calls()[0];
    assert_eq!(sim.events_of(call).last().unwrap(), "answered agent01");
    assert!(sim.ua(seat).dialogs[0].acked);
    assert_eq!(sim.ua(caller).up_count(), 1);
}

/// vigie's first 180 and first 200 to the caller are lost: the 200 is retransmitted by
/// vigie (RFC 6026 Accepted state) at T1 until the caller's ACK.
#[test]
fn lost_180_and_200_to_caller_200_retransmitted_until_ack() {
    let mut sim = Sim::new(config(1));
    let mut dropped: Vec<&'static str> = Vec::new();
    sim.drop = Box::new(move |w| {
        for what in ["180 INVITE", "200 INVITE"] {
            if w.from == "vigie" && w.to == "caller1" && w.what == what && !dropped.contains(&what)
            {
                dropped.push(what);
                return true;
            }
        }
        false
    });
    let seat = sim.add_seat(1, Some(Duration::from_secs(2)));
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(40_000);

    assert_eq!(
        sim.vigie_to("caller1"),
        wire(&[
            (1_010, "100 INVITE", false),
            (1_010, "180 INVITE", true),
            (3_030, "200 INVITE", true),
            (3_530, "200 INVITE", false),
        ])
    );
    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[(1_020, "100 INVITE"), (3_540, "200 INVITE")])
    );
    assert_eq!(
        sim.sent_by("caller1"),
        wire(&[(1_000, "INVITE", false), (3_540, "ACK", false)])
    );
    assert_eq!(sim.switch.retransmissions(), 1);
    let call = sim.calls()[0];
    assert_eq!(sim.events_of(call).last().unwrap(), "answered agent01");
    // The ACK arrived: no "no_ack" hang-up after 64*T1.
    assert_eq!(sim.switch.active_calls(), 1);
    assert_eq!(sim.ua(seat).up_count(), 1);
}

/// Sixty callers, twenty seats, in virtual time: every call answered, at most twenty
/// talking at once, one call per seat at a time, answered in arrival order.
#[test]
fn sixty_callers_twenty_seats() {
    let mut sim = Sim::new(config(20));
    let seats: Vec<UaId> = (1..=20)
        .map(|n| sim.add_seat(n, Some(Duration::from_secs(1))))
        .collect();
    sim.run(1_000);
    assert!(seats.iter().all(|s| sim.uas[*s].registered));
    let callers: Vec<UaId> = (1..=60).map(|n| sim.add_caller(n)).collect();
    for (i, c) in callers.iter().enumerate() {
        sim.run(1_000 + 100 * i as u64);
        sim.ua(*c).hangup_after = Some(Duration::from_secs(20));
        sim.ua(*c).invite();
    }
    sim.run(200_000);

    let calls = sim.calls();
    assert_eq!(calls.len(), 60);
    // Every call: answered once and ended by its caller.
    for c in &calls {
        let ev = sim.events_of(*c);
        assert_eq!(ev.first().unwrap(), "received 19");
        assert_eq!(ev.iter().filter(|e| e.starts_with("answered")).count(), 1);
        assert_eq!(ev.last().unwrap(), "ended caller_hangup", "{ev:?}");
        assert_eq!(sim.releases(*c), 1);
    }
    // Replay the journal: talking count and per-seat exclusivity.
    let mut talking: HashMap<CallId, String> = HashMap::new();
    let mut max_talking = 0;
    let mut answered_order = Vec::new();
    for (_, e) in &sim.events {
        match &e.kind {
            CallEventKind::Offered { seat } => {
                assert!(
                    !talking.values().any(|s| s == seat),
                    "{seat} offered a call while talking"
                );
            }
            CallEventKind::Answered { seat } => {
                assert!(
                    !talking.values().any(|s| s == seat),
                    "{seat} answered twice"
                );
                talking.insert(e.call, seat.clone());
                answered_order.push(e.call);
            }
            CallEventKind::Ended { cause } => {
                assert_eq!(*cause, EndCause::CallerHangup);
                talking.remove(&e.call);
            }
            CallEventKind::Abandoned { phase } => panic!("abandoned {phase:?}"),
            CallEventKind::SeatFailed { .. } => panic!("seat failed: {e:?}"),
            _ => {}
        }
        max_talking = max_talking.max(talking.len());
    }
    assert_eq!(max_talking, 20);
    assert_eq!(answered_order, calls, "answers follow arrival order");
    for s in &seats {
        let ua = &sim.uas[*s];
        assert_eq!(ua.max_up, 1, "{} had two calls at once", ua.name);
        assert_eq!(ua.overlaps, 0, "{} got an INVITE while busy", ua.name);
        assert_eq!(
            ua.dialogs.len(),
            3,
            "{} took {} calls",
            ua.name,
            ua.dialogs.len()
        );
        assert_eq!(ua.up_count(), 0);
    }
    for c in &callers {
        let ua = &sim.uas[*c];
        assert_eq!(ua.dialogs[0].final_status, Some(200));
        assert_eq!(ua.responses(200, Method::Bye).len(), 1);
    }
    assert_eq!(sim.switch.active_calls(), 0);
    assert!(
        sim.switch
            .acd()
            .seats()
            .all(|(_, s)| matches!(s, SeatState::Idle { .. }))
    );
    assert_eq!(sim.switch.retransmissions(), 0);
}

/// A caller may BYE its early dialog (RFC 3261 §15) instead of CANCELling: the BYE gets
/// 200, the INVITE still gets its final response (487, §15.1.2), the ringing seat is
/// CANCELled and the call is abandoned while ringing.
#[test]
fn caller_bye_in_early_dialog_while_seat_rings() {
    let mut sim = Sim::new(config(1));
    let seat = sim.add_seat(1, None);
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    let cid = sim.ua(caller).invite();
    sim.run(5_000);
    sim.ua(caller).hang_up(&cid);
    sim.run(60_000);

    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[
            (1_020, "100 INVITE"),
            (1_020, "180 INVITE"),
            (5_020, "200 BYE"),
            (5_020, "487 INVITE"),
        ])
    );
    assert_eq!(
        sim.ua(seat).seen(),
        timed(&[
            (20, "401 REGISTER"),
            (40, "200 REGISTER"),
            (1_020, "INVITE"),
            (5_020, "CANCEL"),
            (5_040, "ACK"),
        ])
    );
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "abandoned ringing",
        ])
    );
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.seat_state("agent01"), "idle");
    assert_eq!(sim.releases(call), 1);
}

/// vigie's ring-timeout CANCEL crosses the seat's 200: the seat's answer is ACKed and
/// hung up, the caller never sees it, and once the seat has answered the BYE the call is
/// back in the queue; the only seat having failed it, it is offered again `retry_s` (5 s)
/// later.
#[test]
fn ring_timeout_cancel_crosses_seat_200() {
    let mut sim = Sim::new(config(1));
    // Offered at 1010, ring timeout at 16010: the seat answers at that very instant.
    let seat = sim.add_seat(1, Some(Duration::from_millis(14_990)));
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(16_000);
    // From now on the seat answers its next offers after 1 s.
    sim.ua(seat).answer_after = Some(Duration::from_secs(1));
    sim.run(60_000);

    assert_eq!(
        sim.ua(seat).seen(),
        timed(&[
            (20, "401 REGISTER"),
            (40, "200 REGISTER"),
            (1_020, "INVITE"),
            (16_020, "CANCEL"),
            (16_030, "ACK"),
            (16_030, "BYE"),
            (21_050, "INVITE"),
            (22_070, "ACK"),
        ])
    );
    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[
            (1_020, "100 INVITE"),
            (1_020, "180 INVITE"),
            (22_070, "200 INVITE"),
        ])
    );
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "seat_failed agent01 Some(487) no_answer",
            "offered agent01",
            "ringing agent01",
            "answered agent01",
        ])
    );
    assert_eq!(sim.ua(seat).up_count(), 1);
    assert_eq!(sim.seat_state("agent01"), "on_call");
    assert_eq!(sim.switch.active_calls(), 1);
}

/// The caller never ACKs vigie's 200: vigie retransmits it for 64*T1 (RFC 6026), then
/// ends the session with BYE on both legs (RFC 3261 §13.3.1.4).
#[test]
fn no_ack_from_caller_ends_the_call_on_both_legs() {
    let mut sim = Sim::new(config(1));
    sim.drop = Box::new(|w| w.from == "caller1" && w.what == "ACK");
    let seat = sim.add_seat(1, Some(Duration::from_secs(2)));
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(60_000);

    // 200 at 3030, then T1, 2T1, 4T1, then every T2 until Timer L at 3030 + 32 s.
    let mut expect = vec![(1_010, "100 INVITE", false), (1_010, "180 INVITE", false)];
    for ms in [
        3_030, 3_530, 4_530, 6_530, 10_530, 14_530, 18_530, 22_530, 26_530, 30_530, 34_530,
    ] {
        expect.push((ms, "200 INVITE", false));
    }
    expect.push((35_030, "BYE", false));
    assert_eq!(sim.vigie_to("caller1"), wire(&expect));
    assert_eq!(
        sim.vigie_to("agent01")
            .into_iter()
            .map(|(ms, w, _)| (ms, w))
            .collect::<Vec<_>>(),
        timed(&[
            (10, "401 REGISTER"),
            (30, "200 REGISTER"),
            (1_010, "INVITE"),
            (3_030, "ACK"),
            (35_030, "BYE"),
        ])
    );
    let call = sim.calls()[0];
    assert_eq!(sim.events_of(call).last().unwrap(), "ended no_ack");
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.seat_state("agent01"), "idle");
    assert_eq!(sim.ua(seat).up_count(), 0);
    assert_eq!(sim.ua(caller).up_count(), 0);
}

/// The caller abandons while the only seat rings and a second caller waits: the seat
/// stays reserved until its 487, and only then gets the second call's INVITE.
#[test]
fn abandon_while_ringing_with_a_second_caller_waiting() {
    let mut sim = Sim::new(config(1));
    let seat = sim.add_seat(1, None);
    sim.run(100);
    let first = sim.add_caller(1);
    let second = sim.add_caller(2);
    sim.run(1_000);
    sim.ua(first).invite();
    sim.run(1_500);
    sim.ua(second).invite();
    sim.run(5_000);
    sim.ua(first).cancel();
    sim.run(5_025);
    // CANCEL received, 487 on its way back: still reserved.
    assert_eq!(sim.seat_state("agent01"), "ringing");
    // Before the second call's ring timeout.
    sim.run(15_000);

    assert_eq!(
        sim.ua(seat).seen(),
        timed(&[
            (20, "401 REGISTER"),
            (40, "200 REGISTER"),
            (1_020, "INVITE"),
            (5_020, "CANCEL"),
            (5_040, "ACK"),
            (5_040, "INVITE"),
        ])
    );
    assert_eq!(sim.ua(seat).overlaps, 0);
    let calls = sim.calls();
    assert_eq!(
        sim.events_of(calls[0]),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "abandoned ringing",
        ])
    );
    assert_eq!(
        sim.events_of(calls[1]),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
        ])
    );
    assert_eq!(
        sim.ua(second).seen_names(),
        strings(&["100 INVITE", "180 INVITE"])
    );
}

/// The CANCEL/200 race while a second caller waits: the seat's crossed 200 is ACKed and
/// hung up, and the second call's INVITE goes out once the seat has answered that BYE.
#[test]
fn cancel_200_race_with_a_second_caller_waiting() {
    let mut sim = Sim::new(config(1));
    let seat = sim.add_seat(1, None);
    sim.run(100);
    let first = sim.add_caller(1);
    let second = sim.add_caller(2);
    sim.run(1_000);
    sim.ua(first).invite();
    sim.run(1_500);
    sim.ua(second).invite();
    sim.run(3_000);
    let seat_call_id = sim.ua(seat).dialogs[0].call_id.clone();
    let now = sim.now;
    sim.ua(first).cancel();
    sim.flush();
    sim.ua(seat).answer(now, &seat_call_id);
    sim.ua(seat).answer_after = Some(Duration::from_secs(1));
    sim.run(10_000);

    assert_eq!(
        sim.ua(seat).seen(),
        timed(&[
            (20, "401 REGISTER"),
            (40, "200 REGISTER"),
            (1_020, "INVITE"),
            (3_020, "CANCEL"),
            (3_020, "ACK"),
            (3_020, "BYE"),
            (3_040, "INVITE"),
            (4_060, "ACK"),
        ])
    );
    assert_eq!(sim.ua(seat).overlaps, 0);
    assert_eq!(
        sim.ua(first).seen_names(),
        strings(&["100 INVITE", "180 INVITE", "200 CANCEL", "487 INVITE"])
    );
    assert_eq!(
        sim.ua(second).seen(),
        timed(&[
            (1_520, "100 INVITE"),
            (1_520, "180 INVITE"),
            (4_060, "200 INVITE"),
        ])
    );
    let calls = sim.calls();
    assert_eq!(sim.events_of(calls[1]).last().unwrap(), "answered agent01");
    assert_eq!(sim.seat_state("agent01"), "on_call");
    assert_eq!(sim.switch.active_calls(), 1);
}

/// The only seat refuses every offer (486, e.g. do-not-disturb on the phone): the waiting
/// call is offered again every `retry_s` (5 s), not at network speed.
#[test]
fn refusing_seat_is_reoffered_after_retry_s() {
    let mut sim = Sim::new(config(1));
    let seat = sim.add_seat(1, None);
    sim.ua(seat).refuse = Some(486);
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(12_000);

    let mut expect = vec![(10, "401 REGISTER"), (30, "200 REGISTER")];
    for ms in [1_010, 6_030, 11_050] {
        expect.push((ms, "INVITE"));
        expect.push((ms + 20, "ACK"));
    }
    assert_eq!(
        sim.vigie_to("agent01")
            .into_iter()
            .map(|(ms, w, _)| (ms, w))
            .collect::<Vec<_>>(),
        timed(&expect)
    );
    let call = sim.calls()[0];
    let mut events = strings(&["received 19", "queued line19"]);
    for _ in 0..3 {
        events.push("offered agent01".into());
        events.push("seat_failed agent01 Some(486) busy".into());
    }
    assert_eq!(sim.events_of(call), events);
    assert_eq!(
        sim.ua(caller).seen_names(),
        strings(&["100 INVITE", "180 INVITE"])
    );
    assert_eq!(sim.switch.active_calls(), 1);
    // The agent turns do-not-disturb off: the next round reaches them.
    sim.ua(seat).refuse = None;
    sim.ua(seat).answer_after = Some(Duration::from_secs(1));
    sim.run(30_000);
    assert_eq!(sim.events_of(call).last().unwrap(), "answered agent01");
    assert_eq!(sim.ua(caller).up_count(), 1);
}

/// A trunk INVITE whose SDP offers no codec vigie relays (G.729 only) is refused with
/// 488 at once (RFC 3264 §6, RFC 3261 §21.4.26) and journalled `ended media_refused`: it
/// is never queued, so it cannot be offered to seats it could never reach. (An INVITE
/// without SDP is a late offer, carried since main's 4597cb7.)
#[test]
fn offer_without_a_usable_codec_gets_488() {
    let g729 = Bytes::from_static(
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
          m=audio 40002 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",
    );
    let mut sim = Sim::new(config(1));
    let seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite_with(g729);
    sim.run(10_000);

    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[(1_020, "100 INVITE"), (1_020, "488 INVITE")])
    );
    assert_eq!(
        sim.sent_by("caller1"),
        wire(&[(1_000, "INVITE", false), (1_020, "ACK", false)])
    );
    let r488 = sim.ua(caller).responses(488, Method::Invite).remove(0);
    assert!(to_tag(&r488).is_some());
    assert_eq!(
        sim.ua(seat).seen_names(),
        strings(&["401 REGISTER", "200 REGISTER"])
    );
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&["received 19", "ended media_refused"])
    );
    assert!(sim.media.is_empty());
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.seat_state("agent01"), "idle");
}

/// A simulation with `seats` seats and the backup centre as overflow target.
fn sim_with_overflow(seats: usize) -> Sim {
    Sim::with_plan(config(seats), PLAN_WITH_BACKUP)
}

const BACKUP: &str = "sip:19@127.0.0.4:5080";

/// No seat registered: the call overflows at once to the backup centre, which answers;
/// the caller's BYE reaches the backup centre.
#[test]
fn overflow_to_backup_centre_when_no_seat_is_registered() {
    let mut sim = sim_with_overflow(1);
    let backup = sim.add_backup(Some(Duration::from_secs(1)));
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).hangup_after = Some(Duration::from_secs(10));
    sim.ua(caller).invite();
    sim.run(30_000);

    assert_eq!(
        sim.ua(backup).seen(),
        timed(&[(1_020, "INVITE"), (2_040, "ACK"), (12_060, "BYE")])
    );
    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[
            (1_020, "100 INVITE"),
            (1_020, "180 INVITE"),
            (2_040, "200 INVITE"),
            (12_060, "200 BYE"),
        ])
    );
    let invite = sim.ua(backup).requests(Method::Invite).remove(0);
    assert_eq!(invite.uri.to_string(), BACKUP);
    let call = sim.calls()[0];
    let (_, port_b) = sim.ports_of(call);
    assert!(body_text(&invite.body).contains(&format!("m=audio {port_b} ")));
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            &format!("overflowed {BACKUP} no_seats"),
            &format!("overflow_answered {BACKUP}"),
            "ended caller_hangup",
        ])
    );
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.releases(call), 1);
}

/// The backup centre refuses (503): the call returns to the queue and is offered to the
/// first seat that registers, before the overflow retry.
#[test]
fn failed_overflow_returns_the_call_to_the_queue() {
    let mut sim = sim_with_overflow(1);
    let backup = sim.add_backup(None);
    sim.ua(backup).refuse = Some(503);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(5_000);
    let seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    sim.run(60_000);

    assert_eq!(
        sim.ua(backup).seen(),
        timed(&[(1_020, "INVITE"), (1_040, "ACK")])
    );
    assert_eq!(
        sim.ua(seat).seen(),
        timed(&[
            (5_020, "401 REGISTER"),
            (5_040, "200 REGISTER"),
            (5_040, "INVITE"),
            (6_060, "ACK"),
        ])
    );
    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[
            (1_020, "100 INVITE"),
            (1_020, "180 INVITE"),
            (6_060, "200 INVITE"),
        ])
    );
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            &format!("overflowed {BACKUP} no_seats"),
            "overflow_failed Some(503)",
            "offered agent01",
            "ringing agent01",
            "answered agent01",
        ])
    );
    assert_eq!(sim.seat_state("agent01"), "on_call");
}

/// The caller CANCELs while the backup centre rings: the backup centre is CANCELled and
/// the call is abandoned while overflowing.
#[test]
fn cancel_while_overflowing() {
    let mut sim = sim_with_overflow(1);
    let backup = sim.add_backup(None);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(3_000);
    sim.ua(caller).cancel();
    sim.run(60_000);

    assert_eq!(
        sim.ua(backup).seen(),
        timed(&[(1_020, "INVITE"), (3_020, "CANCEL"), (3_040, "ACK")])
    );
    assert_eq!(
        sim.ua(caller).seen_names(),
        strings(&["100 INVITE", "180 INVITE", "200 CANCEL", "487 INVITE"])
    );
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            &format!("overflowed {BACKUP} no_seats"),
            "abandoned overflowing",
        ])
    );
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.releases(call), 1);
}

/// vigie's ACK to the seat is lost: the seat retransmits its 200 and vigie ACKs it again
/// (RFC 3261 §13.2.2.4); the caller sees one 200.
#[test]
fn lost_ack_to_seat_is_sent_again_on_the_retransmitted_200() {
    let mut sim = Sim::new(config(1));
    let mut dropped = false;
    sim.drop = Box::new(move |w| {
        if !dropped && w.from == "vigie" && w.to == "agent01" && w.what == "ACK" {
            dropped = true;
            return true;
        }
        false
    });
    let seat = sim.add_seat(1, Some(Duration::from_secs(2)));
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(10_000);

    assert_eq!(
        sim.vigie_to("agent01"),
        wire(&[
            (10, "401 REGISTER", false),
            (30, "200 REGISTER", false),
            (1_010, "INVITE", false),
            (3_030, "ACK", true),
            (3_530, "ACK", false),
        ])
    );
    assert_eq!(
        sim.sent_by("agent01")
            .into_iter()
            .filter(|(_, w, _)| w == "200 INVITE")
            .map(|(ms, _, _)| ms)
            .collect::<Vec<_>>(),
        vec![3_020, 3_520]
    );
    assert!(sim.ua(seat).dialogs[0].acked);
    assert_eq!(sim.ua(caller).responses(200, Method::Invite).len(), 1);
}

/// The caller's CANCEL reaches vigie and the 487 is lost: vigie retransmits the 487
/// (Timer G) until the caller's ACK.
#[test]
fn lost_487_to_caller_is_retransmitted_until_ack() {
    let mut sim = Sim::new(config(1));
    sim.drop = Box::new(|w| w.to == "caller1" && w.what == "487 INVITE" && w.ms < 2_500);
    let caller = sim.add_caller(1);
    sim.ua(caller).invite();
    sim.run(2_000);
    sim.ua(caller).cancel();
    sim.run(60_000);
    assert_eq!(
        sim.vigie_to("caller1"),
        wire(&[
            (10, "100 INVITE", false),
            (10, "180 INVITE", false),
            (2_010, "200 CANCEL", false),
            (2_010, "487 INVITE", true),
            (2_510, "487 INVITE", false),
        ])
    );
    assert_eq!(
        sim.sent_by("caller1"),
        wire(&[
            (0, "INVITE", false),
            (2_000, "CANCEL", false),
            (2_520, "ACK", false),
        ])
    );
    assert_eq!(sim.switch.retransmissions(), 1);
}

/// Sixty callers and twenty seats again, with 5 % of all messages lost (a fixed seed):
/// retransmissions on every side recover, every call is answered and ended by its caller,
/// no seat takes two calls at once, offers follow arrival order, nothing is left behind.
#[test]
fn sixty_callers_twenty_seats_with_loss() {
    let mut sim = Sim::new(config(20));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    sim.drop = Box::new(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % 100 < 5
    });
    let seats: Vec<UaId> = (1..=20)
        .map(|n| sim.add_seat(n, Some(Duration::from_secs(1))))
        .collect();
    sim.run(10_000);
    assert!(seats.iter().all(|s| sim.uas[*s].registered));
    let callers: Vec<UaId> = (1..=60).map(|n| sim.add_caller(n)).collect();
    for (i, c) in callers.iter().enumerate() {
        sim.run(10_000 + 100 * i as u64);
        sim.ua(*c).hangup_after = Some(Duration::from_secs(20));
        sim.ua(*c).invite();
    }
    sim.run(400_000);

    let dropped = sim.wire.iter().filter(|w| w.dropped).count();
    assert!(dropped > 30, "{dropped} of {} dropped", sim.wire.len());
    let calls = sim.calls();
    assert_eq!(calls.len(), 60);
    for c in &calls {
        let ev = sim.events_of(*c);
        assert_eq!(
            ev.iter().filter(|e| e.starts_with("answered")).count(),
            1,
            "{ev:?}"
        );
        assert_eq!(ev.last().unwrap(), "ended caller_hangup", "{ev:?}");
        assert_eq!(sim.releases(*c), 1);
    }
    let first_offers: Vec<CallId> = {
        let mut seen = Vec::new();
        for (_, e) in &sim.events {
            if matches!(e.kind, CallEventKind::Offered { .. }) && !seen.contains(&e.call) {
                seen.push(e.call);
            }
        }
        seen
    };
    assert_eq!(first_offers, calls, "offers follow arrival order");
    for s in &seats {
        let ua = &sim.uas[*s];
        assert_eq!(ua.max_up, 1, "{} had two calls at once", ua.name);
        assert_eq!(ua.overlaps, 0, "{} got an INVITE while busy", ua.name);
        assert_eq!(ua.up_count(), 0, "{} left in a call", ua.name);
    }
    for c in &callers {
        assert_eq!(sim.uas[*c].up_count(), 0);
    }
    assert_eq!(sim.switch.active_calls(), 0);
    assert!(
        sim.switch
            .acd()
            .seats()
            .all(|(_, s)| matches!(s, SeatState::Idle { .. }))
    );
    assert!(sim.switch.retransmissions() > 0);
}

/// The caller hangs up and vigie's BYE to the seat is lost while a second caller waits:
/// the seat stays on the call until the retransmitted BYE is answered, and only then
/// gets the second call's INVITE.
#[test]
fn next_offer_waits_for_the_seat_to_answer_bye() {
    let mut sim = Sim::new(config(1));
    let mut dropped = false;
    sim.drop = Box::new(move |w| {
        if !dropped && w.from == "vigie" && w.to == "agent01" && w.what == "BYE" {
            dropped = true;
            return true;
        }
        false
    });
    let seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    sim.run(100);
    let first = sim.add_caller(1);
    let second = sim.add_caller(2);
    sim.run(1_000);
    sim.ua(first).hangup_after = Some(Duration::from_secs(5));
    sim.ua(first).invite();
    sim.run(1_500);
    sim.ua(second).invite();
    sim.run(7_300);
    assert_eq!(sim.seat_state("agent01"), "on_call");
    sim.run(20_000);

    assert_eq!(
        sim.ua(seat).seen(),
        timed(&[
            (20, "401 REGISTER"),
            (40, "200 REGISTER"),
            (1_020, "INVITE"),
            (2_040, "ACK"),
            (7_560, "BYE"),
            (7_580, "INVITE"),
            (8_600, "ACK"),
        ])
    );
    assert_eq!(sim.ua(seat).overlaps, 0);
    let calls = sim.calls();
    assert_eq!(
        sim.events_of(calls[0]).last().unwrap(),
        "ended caller_hangup"
    );
    assert_eq!(sim.events_of(calls[1]).last().unwrap(), "answered agent01");
    assert_eq!(sim.seat_state("agent01"), "on_call");
}

/// xorshift64: a seeded, reproducible source of choices and losses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One random run (see [`random_calls_cancels_hangups_and_loss_stay_consistent`]) with
/// `pct` % of all messages lost.
fn chaos_run(seed: u64, pct: u64) {
    let mut sim = Sim::new(config(10));
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut loss = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    sim.drop = Box::new(move |_| loss.below(100) < pct);
    let seats: Vec<UaId> = (1..=10)
        .map(|n| {
            let a = Duration::from_millis(1_000 + rng.below(19_000));
            sim.add_seat(n, Some(a))
        })
        .collect();
    for s in &seats {
        if rng.below(4) == 0 {
            sim.uas[*s].hangup_after = Some(Duration::from_millis(2_000 + rng.below(20_000)));
        }
    }
    sim.run(40_000);
    assert!(seats.iter().all(|s| sim.uas[*s].registered));
    let callers: Vec<UaId> = (1..=30).map(|n| sim.add_caller(n)).collect();
    let mut plan: Vec<(u64, usize, bool)> = Vec::new(); // (ms, caller index, is_cancel)
    for (i, _) in callers.iter().enumerate() {
        let at = 40_000 + rng.below(30_000);
        plan.push((at, i, false));
        if rng.below(3) == 0 {
            plan.push((at + 10 + rng.below(25_000), i, true));
        }
    }
    plan.sort();
    for (at, i, cancel) in plan {
        sim.run(at);
        let c = callers[i];
        if cancel {
            sim.ua(c).cancel();
        } else {
            sim.ua(c).hangup_after = Some(Duration::from_millis(3_000 + 1_000 * (i as u64 % 20)));
            sim.ua(c).invite();
        }
    }
    sim.run(900_000);
    let calls = sim.calls();
    assert_eq!(calls.len(), 30);
    for c in &calls {
        let ev = sim.events_of(*c);
        let terminal = ev
            .iter()
            .filter(|e| e.starts_with("ended") || e.starts_with("abandoned"))
            .count();
        assert_eq!(terminal, 1, "{ev:?}");
        assert!(
            ev.last().unwrap().starts_with("ended") || ev.last().unwrap().starts_with("abandoned"),
            "{ev:?}"
        );
        assert_eq!(sim.releases(*c), 1, "{ev:?}");
    }
    for s in &seats {
        let ua = &sim.uas[*s];
        assert_eq!(ua.up_count(), 0, "{} left in a call", ua.name);
        assert!(ua.max_up <= 1, "{} had two calls at once", ua.name);
    }
    for c in &callers {
        assert_eq!(sim.uas[*c].up_count(), 0, "{} left up", sim.uas[*c].name);
    }
    assert_eq!(sim.switch.active_calls(), 0);
    for (id, st) in sim.switch.acd().seats() {
        assert!(matches!(st, SeatState::Idle { .. }), "{id} {st:?}");
    }
    let overlaps: usize = seats.iter().map(|s| sim.uas[*s].overlaps).sum();
    assert_eq!(overlaps, 0, "INVITEs to a busy seat");
}

/// Thirty callers and ten seats with random arrivals, ring times (some beyond the ring
/// timeout), talk times, agent hang-ups, caller CANCELs at random moments (queued, ringing,
/// or crossing the answer) and 0, 5 or 15 % loss, over ten seeds: every call ends exactly
/// once (ended or abandoned) with its relay released, no seat or caller is left in a call,
/// every seat is idle in the ACD, and no seat gets an INVITE while busy.
#[test]
fn random_calls_cancels_hangups_and_loss_stay_consistent() {
    let mut failed = Vec::new();
    for seed in 1..=10u64 {
        for pct in [0u64, 5, 15] {
            let r = std::panic::catch_unwind(|| chaos_run(seed, pct));
            if let Err(e) = r {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push((
                    seed,
                    pct,
                    msg.lines().take(3).collect::<Vec<_>>().join(" | "),
                ));
            }
        }
    }
    for f in &failed {
        eprintln!("FAIL {f:?}");
    }
    assert!(failed.is_empty(), "{} failures", failed.len());
}

/// A session refresh: the caller re-INVITEs in the confirmed dialog; vigie answers 200
/// with the SDP it already gave (same `o=` version, RFC 3264 §8), the ACK is absorbed and
/// the seat is not involved.
#[test]
fn caller_reinvite_gets_the_same_answer() {
    let (mut sim, caller, seat, call) = connected_call(Duration::from_secs(2));
    let cid = sim.ua(caller).dialogs[0].call_id.clone();
    sim.ua(caller).reinvite(&cid);
    sim.run(40_000);
    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[
            (1_020, "100 INVITE"),
            (1_020, "180 INVITE"),
            (3_040, "200 INVITE"),
            (3_120, "100 INVITE"),
            (3_120, "200 INVITE"),
        ])
    );
    assert_eq!(
        sim.sent_by("caller1"),
        wire(&[
            (1_000, "INVITE", false),
            (3_040, "ACK", false),
            (3_100, "INVITE", false),
            (3_120, "ACK", false),
        ])
    );
    let oks = sim.ua(caller).responses(200, Method::Invite);
    assert_eq!(oks[1].cseq().unwrap().seq, 2);
    assert_eq!(oks[1].body, oks[0].body);
    assert_eq!(to_tag(&oks[1]), to_tag(&oks[0]));
    assert_eq!(
        sim.ua(seat).seen_names(),
        strings(&["401 REGISTER", "200 REGISTER", "INVITE", "ACK"])
    );
    assert_eq!(sim.switch.retransmissions(), 0);
    assert_eq!(sim.events_of(call).last().unwrap(), "answered agent01");
    assert_eq!(sim.switch.active_calls(), 1);
}

/// Both sides hang up at the same instant (BYE glare): one `ended` event, each BYE
/// answered, the seat idle.
#[test]
fn both_hang_up_at_once() {
    let (mut sim, caller, seat, call) = connected_call(Duration::from_secs(2));
    let caller_cid = sim.ua(caller).dialogs[0].call_id.clone();
    let seat_cid = sim.ua(seat).dialogs[0].call_id.clone();
    sim.ua(caller).hang_up(&caller_cid);
    sim.ua(seat).hang_up(&seat_cid);
    sim.run(40_000);
    let ended: Vec<String> = sim
        .events_of(call)
        .into_iter()
        .filter(|e| e.starts_with("ended"))
        .collect();
    // The seat's BYE reached vigie first (same instant, sent first): it got 200 and
    // vigie BYEd the caller; the caller's own BYE crossed it and got 481.
    assert_eq!(ended, strings(&["ended agent_hangup"]));
    assert_eq!(sim.ua(seat).responses(200, Method::Bye).len(), 1);
    assert_eq!(sim.ua(caller).requests(Method::Bye).len(), 1);
    assert_eq!(sim.ua(caller).responses(481, Method::Bye).len(), 1);
    assert_eq!(sim.ua(seat).requests(Method::Bye).len(), 0);
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.seat_state("agent01"), "idle");
    assert_eq!(sim.releases(call), 1);
}

/// A seat that registers `contact` (not its own address) from 127.0.0.3:7001 with `rport`
/// in its Via gets the offer at that source, with `contact` as Request-URI, and answers.
fn seat_registered_as_is_offered_at_its_source(contact: &str) {
    let mut sim = Sim::new(config(1));
    let seat = sim.add_seat_with_contact(
        1,
        Some(Duration::from_secs(1)),
        Some(format!("<{contact}>")),
    );
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(10_000);
    assert_eq!(
        sim.ua(seat).seen(),
        timed(&[
            (20, "401 REGISTER"),
            (40, "200 REGISTER"),
            (1_020, "INVITE"),
            (2_040, "ACK"),
        ])
    );
    let invite = sim.ua(seat).requests(Method::Invite).remove(0);
    assert_eq!(invite.uri.to_string(), contact);
    let call = sim.calls()[0];
    assert_eq!(sim.events_of(call).last().unwrap(), "answered agent01");
}

/// A softphone that registers a Contact with a host name (vigie does no DNS) is reached
/// where its REGISTER came from.
#[test]
fn seat_with_a_host_name_contact_is_reached_at_its_source() {
    seat_registered_as_is_offered_at_its_source("sip:agent01@softphone-01.example.net:7001");
}

/// A seat behind NAT (RFC 3581): its REGISTER's Via asks for `rport` and its Contact holds
/// an address it cannot be reached at (192.0.2.10, standing for a private address).
#[test]
fn seat_behind_nat_is_reached_at_its_register_source() {
    seat_registered_as_is_offered_at_its_source("sip:agent01@192.0.2.10:5060");
}

// ---------------------------------------------------------------------------------------
// Dialplan steps
// ---------------------------------------------------------------------------------------

/// A UAS at `ip:5080` (an overflow target) that needs no registration.
fn add_target(sim: &mut Sim, name: &str, ip: [u8; 4], answer_after: Option<Duration>) -> UaId {
    let addr = SocketAddr::from((ip, 5080));
    let port = 60_100 + 2 * u16::try_from(sim.uas.len()).unwrap();
    let mut ua = Ua::new(name.into(), Role::Seat, addr, "19".into(), port);
    ua.answer_after = answer_after;
    sim.uas.push(ua);
    sim.uas.len() - 1
}

/// The call of caller `n` (its Received event's caller number `06000000NN`).
fn call_of(sim: &Sim, n: u16) -> CallId {
    let number = format!("06000000{n:02}");
    sim.events
        .iter()
        .find_map(|(_, e)| match &e.kind {
            CallEventKind::Received { caller, .. } if *caller == number => Some(e.call),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no call from {number}"))
}

/// Seats in the order they were offered calls: (call, seat).
fn offers(sim: &Sim) -> Vec<(CallId, String)> {
    sim.events
        .iter()
        .filter_map(|(_, e)| match &e.kind {
            CallEventKind::Offered { seat } => Some((e.call, seat.clone())),
            _ => None,
        })
        .collect()
}

/// Per-call priority: a priority-10 caller who arrives last is offered the first free seat;
/// within one priority the order is arrival order.
#[test]
fn plan_priority_serves_higher_first_then_fifo() {
    let plan = r#"
[[routes]]
name = "urgent"
match = { caller = '0600000003' }
steps = [{ ring = 180 }, { queue = { name = "line19", priority = 10, max_wait_s = 0 } }]

[[routes]]
name = "normal"
steps = [{ ring = 180 }, { queue = { name = "line19", priority = 1, max_wait_s = 0 } }]
"#;
    let mut sim = Sim::with_plan(config(1), plan);
    let callers: Vec<UaId> = (1..=3).map(|n| sim.add_caller(n)).collect();
    for (i, c) in callers.iter().enumerate() {
        sim.run(1_000 + 100 * i as u64);
        sim.ua(*c).hangup_after = Some(Duration::from_secs(2));
        sim.ua(*c).invite();
    }
    sim.run(2_000);
    assert!(offers(&sim).is_empty(), "no seat yet");
    let _seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    sim.run(30_000);

    let (c1, c2, c3) = (call_of(&sim, 1), call_of(&sim, 2), call_of(&sim, 3));
    assert_eq!(
        offers(&sim),
        vec![
            (c3, "agent01".to_owned()),
            (c1, "agent01".to_owned()),
            (c2, "agent01".to_owned()),
        ]
    );
    assert_eq!(sim.routed(c3).0.as_deref(), Some("urgent"));
    assert_eq!(sim.routed(c1).0.as_deref(), Some("normal"));
    for c in [c1, c2, c3] {
        assert_eq!(
            sim.events_of(c).last().map(String::as_str),
            Some("ended caller_hangup")
        );
    }
    assert_eq!(sim.switch.active_calls(), 0);
}

/// An overflow chain: the first target refuses (503), the second rings past its own
/// 5 s timeout (CANCEL, 487); `fall-through` then runs the next step, a second queue,
/// where the first seat to register answers. The caller only ever hears 180 then 200.
#[test]
fn overflow_chain_targets_in_turn_then_fall_through() {
    let plan = r#"
[[routes]]
name = "chain"
steps = [
  { ring = 180 },
  { queue = { name = "line19", priority = 5, max_wait_s = 30 } },
  { overflow = { targets = [
      { uri = "sip:19@127.0.0.4:5080", timeout_s = 10 },
      { uri = "sip:19@127.0.0.5:5080", timeout_s = 5 },
    ], then = "fall-through" } },
  { tag = "after-overflow" },
  { queue = { name = "line19", priority = 5, max_wait_s = 0 } },
]
"#;
    let mut sim = Sim::with_plan(config(1), plan);
    let first = add_target(&mut sim, "backup1", [127, 0, 0, 4], None);
    sim.ua(first).refuse = Some(503);
    let second = add_target(&mut sim, "backup2", [127, 0, 0, 5], None);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(10_000);
    let seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    sim.run(40_000);

    assert_eq!(
        sim.ua(first).seen(),
        timed(&[(1_020, "INVITE"), (1_040, "ACK")])
    );
    assert_eq!(
        sim.ua(second).seen(),
        timed(&[(1_040, "INVITE"), (6_040, "CANCEL"), (6_060, "ACK")])
    );
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "overflowed sip:19@127.0.0.4:5080 no_seats",
            "overflow_failed Some(503)",
            "overflowed sip:19@127.0.0.5:5080 no_seats",
            "overflow_failed Some(487)",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "answered agent01",
        ])
    );
    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[
            (1_020, "100 INVITE"),
            (1_020, "180 INVITE"),
            (11_060, "200 INVITE"),
        ])
    );
    assert_eq!(sim.ua(seat).requests(Method::Invite).len(), 1);
    assert_eq!(sim.routed(call).2, strings(&["after-overflow"]));
}

/// Every overflow target fails and the chain goes back to the queue: the calls keep their
/// places (the first caller is served first), the chain is tried again only after the
/// queue step's max wait, and no caller ever gets a final failure.
#[test]
fn overflow_chain_back_to_queue_keeps_the_place() {
    let plan = r#"
[[routes]]
name = "line19"
steps = [
  { ring = 180 },
  { queue = { name = "line19", priority = 5, max_wait_s = 20 } },
  { overflow = { targets = [
      { uri = "sip:19@127.0.0.4:5080", timeout_s = 10 },
      { uri = "sip:19@127.0.0.5:5080", timeout_s = 10 },
    ], then = "back-to-queue" } },
]
"#;
    let mut sim = Sim::with_plan(config(1), plan);
    for (name, ip) in [("backup1", [127, 0, 0, 4]), ("backup2", [127, 0, 0, 5])] {
        let t = add_target(&mut sim, name, ip, None);
        sim.ua(t).refuse = Some(503);
    }
    let c1 = sim.add_caller(1);
    let c2 = sim.add_caller(2);
    sim.run(1_000);
    sim.ua(c1).hangup_after = Some(Duration::from_secs(2));
    sim.ua(c1).invite();
    sim.run(1_500);
    sim.ua(c2).hangup_after = Some(Duration::from_secs(2));
    sim.ua(c2).invite();
    sim.run(15_000);
    // Both went through the whole chain once and are waiting again; not before 20 s.
    for n in [1, 2] {
        let call = call_of(&sim, n);
        assert_eq!(
            sim.events_of(call)
                .iter()
                .filter(|e| e.starts_with("overflow_failed"))
                .count(),
            2
        );
    }
    sim.run(22_000);
    let tries = |sim: &Sim, n| {
        sim.events_of(call_of(sim, n))
            .iter()
            .filter(|e| e.starts_with("overflowed"))
            .count()
    };
    assert_eq!(
        (tries(&sim, 1), tries(&sim, 2)),
        (4, 4),
        "second round after 20 s"
    );
    let _seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    sim.run(60_000);
    let (k1, k2) = (call_of(&sim, 1), call_of(&sim, 2));
    let order: Vec<CallId> = offers(&sim).into_iter().map(|(c, _)| c).collect();
    assert_eq!(order, vec![k1, k2]);
    for (ua, n) in [(c1, 1), (c2, 2)] {
        let finals: Vec<String> = sim
            .ua(ua)
            .seen_names()
            .into_iter()
            .filter(|s| s.ends_with("INVITE") && !s.starts_with('1'))
            .collect();
        assert_eq!(finals, strings(&["200 INVITE"]), "caller {n}");
    }
    assert_eq!(sim.switch.active_calls(), 0);
}

/// A non-emergency route that announces and hangs up: 183 with vigie's SDP (early media),
/// the prompt played to the caller, and once the media layer reports it done, 480.
#[test]
fn hangup_route_plays_then_releases_with_its_cause() {
    let plan = r#"
[[routes]]
name = "admin-closed"
emergency = false
match = { caller = '0600000001' }
steps = [{ ring = 183 }, { play = "prompts/admin-closed.wav" }, { hangup = { cause = 480 } }]

[[routes]]
name = "line19"
steps = [{ ring = 180 }, { queue = { name = "line19", priority = 5, max_wait_s = 0 } }]
"#;
    let mut sim = Sim::with_plan(config(1), plan);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(5_000);
    let call = sim.calls()[0];
    assert_eq!(
        sim.media_plan(call),
        vec![(
            1_010,
            "play prompts/admin-closed.wav repeat=false".to_owned()
        )]
    );
    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[(1_020, "100 INVITE"), (1_020, "183 INVITE")])
    );
    let early = sim.ua(caller).responses(183, Method::Invite).remove(0);
    let (port_a, _) = sim.ports_of(call);
    assert!(body_text(&early.body).contains(&format!("m=audio {port_a} ")));
    let now = sim.now;
    sim.switch.handle_prompt_done(now, call);
    sim.run(10_000);
    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[
            (1_020, "100 INVITE"),
            (1_020, "183 INVITE"),
            (5_010, "480 INVITE"),
        ])
    );
    assert_eq!(
        sim.events_of(call),
        strings(&["received 19", "ended dialplan 480"])
    );
    assert_eq!(
        sim.media_plan(call),
        vec![
            (
                1_010,
                "play prompts/admin-closed.wav repeat=false".to_owned()
            ),
            (5_000, "stop_play".to_owned()),
        ]
    );
    assert_eq!(sim.routed(call).0.as_deref(), Some("admin-closed"));
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.releases(call), 1);
}

/// A media layer that never reports a prompt done does not hold the caller: the play step
/// moves on after its guard.
#[test]
fn play_step_moves_on_after_its_guard() {
    let plan = r#"
[[routes]]
name = "closed"
emergency = false
steps = [{ play = "prompts/closed.wav" }, { hangup = { cause = 480 } }]
"#;
    let mut sim = Sim::with_plan(config(1), plan);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    let guard = PROMPT_GUARD_S * 1_000;
    sim.run(1_000 + guard - 100);
    assert_eq!(
        sim.ua(caller).seen_names(),
        strings(&["100 INVITE", "183 INVITE"])
    );
    sim.run(2_000 + guard);
    let names = sim.ua(caller).seen_names();
    assert_eq!(names, strings(&["100 INVITE", "183 INVITE", "480 INVITE"]));
    let at_480 = sim.ua(caller).seen().last().map(|(ms, _)| *ms).unwrap();
    assert_eq!(at_480, 1_010 + guard + 10);
}

/// Queue announcements: the first when the call is queued (after a 183 with SDP), then
/// every `announce_every_s`; a seat that registers takes the call at once, the prompt is
/// stopped, and the 200 repeats the 183's SDP.
#[test]
fn queue_announcements_repeat_and_never_delay_the_bridge() {
    let plan = r#"
[[routes]]
name = "line19"
steps = [
  { ring = 180 },
  { queue = { name = "line19", priority = 5, max_wait_s = 0, announce = "prompts/wait.wav", announce_every_s = 10 } },
]
"#;
    let mut sim = Sim::with_plan(config(1), plan);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(25_000);
    let seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    sim.run(40_000);
    let call = sim.calls()[0];
    let seat_invite_at = sim.ua(seat).seen()[2].0;
    assert_eq!(
        seat_invite_at, 25_040,
        "offered as soon as the seat registered"
    );
    assert_eq!(
        sim.media_plan(call),
        vec![
            (1_010, "play prompts/wait.wav repeat=false".to_owned()),
            (11_010, "play prompts/wait.wav repeat=false".to_owned()),
            (21_010, "play prompts/wait.wav repeat=false".to_owned()),
            (26_050, "stop_play".to_owned()),
        ]
    );
    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[
            (1_020, "100 INVITE"),
            (1_020, "180 INVITE"),
            (1_020, "183 INVITE"),
            (26_060, "200 INVITE"),
        ])
    );
    let early = sim.ua(caller).responses(183, Method::Invite).remove(0);
    let ok = sim.ua(caller).responses(200, Method::Invite).remove(0);
    assert_eq!(body_text(&ok.body), body_text(&early.body));
}

/// An `answer` step: 200 OK with vigie's SDP before any seat, a welcome prompt, then the
/// queue; the seat's answer bridges without a second 200, and the caller's BYE reaches the
/// seat. Set, tag and record steps show in the Routed event and the media commands.
#[test]
fn answer_step_then_seat_bridges_without_second_200() {
    let plan = r#"
[[routes]]
name = "line19"
steps = [
  { set = { service = "police-19" } },
  { tag = "emergency" },
  { record = true },
  { answer = true },
  { play = "prompts/welcome.wav" },
  { queue = { name = "line19", priority = 5, max_wait_s = 0 } },
]
"#;
    let mut sim = Sim::with_plan(config(1), plan);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).hangup_after = Some(Duration::from_secs(20));
    sim.ua(caller).invite();
    sim.run(3_000);
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&["received 19"]),
        "not queued before the prompt ends"
    );
    let now = sim.now;
    sim.switch.handle_prompt_done(now, call);
    let seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    sim.run(40_000);

    assert_eq!(
        sim.ua(caller).seen_names(),
        strings(&["100 INVITE", "200 INVITE", "200 BYE"])
    );
    let ok = sim.ua(caller).responses(200, Method::Invite).remove(0);
    let (port_a, port_b) = sim.ports_of(call);
    assert!(body_text(&ok.body).contains(&format!("m=audio {port_a} ")));
    let invite = sim.ua(seat).requests(Method::Invite).remove(0);
    assert!(body_text(&invite.body).contains(&format!("m=audio {port_b} ")));
    assert_eq!(sim.ua(seat).requests(Method::Bye).len(), 1);
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "answered agent01",
            "ended caller_hangup",
        ])
    );
    let plays: Vec<String> = sim.media_plan(call).into_iter().map(|(_, m)| m).collect();
    assert_eq!(
        plays,
        strings(&[
            "record true",
            "play prompts/welcome.wav repeat=false",
            "stop_play"
        ])
    );
    let (route, vars, tags) = sim.routed(call);
    assert_eq!(route.as_deref(), Some("line19"));
    assert_eq!(vars, vec![("service".to_owned(), "police-19".to_owned())]);
    assert_eq!(tags, strings(&["emergency"]));
}

/// Time windows use the wall clock the edge gives: the same call is queued at 10:00 UTC on
/// a Tuesday (11:00 in Casablanca) and announced then released at 17:00 UTC.
#[test]
fn office_hours_follow_the_wall_clock() {
    let plan = r#"
[[routes]]
name = "open"
emergency = false
[routes.match.time]
zone = "Africa/Casablanca"
days = ["mon", "tue", "wed", "thu", "fri"]
from = "08:30"
to = "16:30"
[[routes.steps]]
ring = 180
[[routes.steps]]
queue = { name = "line19", priority = 1, max_wait_s = 0 }

[[routes]]
name = "closed"
emergency = false
steps = [{ ring = 183 }, { play = "prompts/closed.wav" }, { hangup = { cause = 480 } }]
"#;
    let mut sim = Sim::with_plan(config(1), plan);
    let c1 = sim.add_caller(1);
    let c2 = sim.add_caller(2);
    sim.run(1_000);
    sim.ua(c1).invite();
    sim.run(2_000);
    let now = sim.now;
    sim.switch.set_wall_clock(now, wall("2026-11-03T17:00:00Z"));
    sim.ua(c2).invite();
    sim.run(3_000);
    let (k1, k2) = (call_of(&sim, 1), call_of(&sim, 2));
    assert_eq!(sim.routed(k1).0.as_deref(), Some("open"));
    assert_eq!(sim.routed(k2).0.as_deref(), Some("closed"));
    let now = sim.now;
    sim.switch.handle_prompt_done(now, k2);
    sim.run(4_000);
    assert_eq!(
        sim.ua(c1).seen_names(),
        strings(&["100 INVITE", "180 INVITE"])
    );
    assert_eq!(
        sim.ua(c2).seen_names(),
        strings(&["100 INVITE", "183 INVITE", "480 INVITE"])
    );
}

/// A reload changes the route of new calls only: a queued call keeps the steps it started
/// with (its max wait and overflow), a new call takes the new plan.
#[test]
fn reload_keeps_the_decision_of_calls_in_progress() {
    let mut sim = sim_with_overflow(1);
    let backup = sim.add_backup(Some(Duration::from_secs(1)));
    let c1 = sim.add_caller(1);
    let c2 = sim.add_caller(2);
    sim.run(1_000);
    // No seat: the first call overflows at once under the first plan.
    sim.ua(c1).invite();
    sim.run(1_500);
    let new_plan = compile_plan(&config(1), PLAN);
    sim.switch.set_plan(new_plan);
    sim.ua(c2).invite();
    sim.run(10_000);
    let (k1, k2) = (call_of(&sim, 1), call_of(&sim, 2));
    assert!(
        sim.events_of(k1)
            .contains(&"overflow_answered sip:19@127.0.0.4:5080".to_owned())
    );
    assert_eq!(
        sim.events_of(k2),
        strings(&["received 19", "queued line19"])
    );
    assert_eq!(sim.ua(backup).requests(Method::Invite).len(), 1);
}

/// A caller answered by an `answer` step who hangs up while queued: its BYE is answered
/// 200 (no 487 for an INVITE already answered), the call ends as abandoned in the queue.
#[test]
fn caller_bye_after_an_answer_step_is_an_abandon_in_the_queue() {
    let plan = r#"
[[routes]]
name = "line19"
steps = [{ answer = true }, { queue = { name = "line19", priority = 5, max_wait_s = 0 } }]
"#;
    let mut sim = Sim::with_plan(config(1), plan);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).hangup_after = Some(Duration::from_secs(5));
    sim.ua(caller).invite();
    sim.run(40_000);
    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[
            (1_020, "100 INVITE"),
            (1_020, "200 INVITE"),
            (6_040, "200 BYE"),
        ])
    );
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&["received 19", "queued line19", "abandoned queued"])
    );
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.releases(call), 1);
    assert_eq!(sim.switch.acd().snapshot(sim.now)[0].waiting, 0);
}

// ---------------------------------------------------------------------------------------
// Forks: several Contacts of one seat ring in parallel (issue 3)
// ---------------------------------------------------------------------------------------

/// The `Reason` header of a request, if any.
fn reason_of(r: &Request) -> Option<String> {
    r.headers.get(&HeaderName::Reason).map(str::to_owned)
}

const ELSEWHERE: &str = "SIP;cause=200;text=\"Call completed elsewhere\"";

/// A seat registered from a desk phone and a headset app: one offer rings both (one
/// INVITE per Contact, each its own Call-ID); the desk answers, the headset is CANCELled
/// with `Reason: SIP;cause=200;text="Call completed elsewhere"` (RFC 3326) and is never
/// bridged; the seat rang once, answered once, and is idle after the call.
#[test]
fn fork_two_contacts_first_answer_wins_other_cancelled() {
    let mut sim = Sim::new(config(1));
    let desk = sim.add_seat(1, Some(Duration::from_secs(2)));
    let headset = sim.add_seat_device(1, 1, None);
    sim.run(100);
    assert!(sim.uas[desk].registered && sim.uas[headset].registered);
    assert_eq!(sim.seat_changes, vec![("agent01".to_owned(), true)]);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).hangup_after = Some(Duration::from_secs(10));
    sim.ua(caller).invite();
    sim.run(2_000);
    assert_eq!(sim.seat_state("agent01"), "ringing");
    sim.run(40_000);

    assert_eq!(
        sim.ua(desk).seen(),
        timed(&[
            (20, "401 REGISTER"),
            (40, "200 REGISTER"),
            (1_020, "INVITE"),
            (3_040, "ACK"),
            (13_060, "BYE"),
        ])
    );
    assert_eq!(
        sim.ua(headset).seen(),
        timed(&[
            (20, "401 REGISTER"),
            (40, "200 REGISTER"),
            (1_020, "INVITE"),
            (3_040, "CANCEL"),
            (3_060, "ACK"),
        ])
    );
    assert_eq!(
        sim.sent_by("agent01-1"),
        wire(&[
            (0, "REGISTER", false),
            (20, "REGISTER", false),
            (1_020, "180 INVITE", false),
            (3_040, "200 CANCEL", false),
            (3_040, "487 INVITE", false),
        ])
    );
    let desk_invite = sim.ua(desk).requests(Method::Invite).remove(0);
    let head_invite = sim.ua(headset).requests(Method::Invite).remove(0);
    assert_eq!(desk_invite.uri.to_string(), "sip:agent01@127.0.0.3:7001");
    assert_eq!(head_invite.uri.to_string(), "sip:agent01@127.0.0.3:7101");
    assert_ne!(
        desk_invite.call_id().unwrap(),
        head_invite.call_id().unwrap()
    );
    // Both offer the same relay port B.
    for inv in [&desk_invite, &head_invite] {
        assert!(body_text(&inv.body).contains("m=audio 20002 RTP/AVP 0 8 101\r\n"));
    }
    let cancel = sim.ua(headset).requests(Method::Cancel).remove(0);
    assert_eq!(reason_of(&cancel).as_deref(), Some(ELSEWHERE));
    assert_eq!(
        cancel.top_via().unwrap().branch(),
        head_invite.top_via().unwrap().branch()
    );
    assert_eq!(sim.ua(headset).max_up, 0);
    assert_eq!(sim.ua(desk).max_up, 1);
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "answered agent01",
            "ended caller_hangup",
        ])
    );
    // The relay's leg B points at the desk phone only.
    let b_hints: Vec<SocketAddr> = sim
        .media
        .iter()
        .filter_map(|(_, m)| match m {
            MediaCommand::PeerHint {
                side: vigie::switch::Side::B,
                addr,
                ..
            } => Some(*addr),
            _ => None,
        })
        .collect();
    assert_eq!(b_hints, vec!["127.0.0.3:50002".parse().unwrap()]);
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.seat_state("agent01"), "idle");
    assert_eq!(sim.releases(call), 1);
}

/// Both Contacts of the seat answer at the same instant: exactly one is bridged; the
/// other gets the CANCEL sent when the first 200 arrived (its own 200 already on the
/// wire), then ACK and BYE for that 200; the caller gets one 200.
#[test]
fn fork_both_contacts_answer_at_once_one_bridged() {
    let mut sim = Sim::new(config(1));
    let desk = sim.add_seat(1, Some(Duration::from_secs(2)));
    let headset = sim.add_seat_device(1, 1, Some(Duration::from_secs(2)));
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(10_000);
    let ups = sim.uas[desk].up_count() + sim.uas[headset].up_count();
    assert_eq!(ups, 1, "exactly one phone still in the call");
    assert_eq!(sim.ua(caller).up_count(), 1);
    assert_eq!(sim.ua(caller).responses(200, Method::Invite).len(), 1);
    let (winner, loser) = if sim.uas[desk].up_count() == 1 {
        (desk, headset)
    } else {
        (headset, desk)
    };
    assert_eq!(
        sim.ua(loser).seen_names(),
        strings(&[
            "401 REGISTER",
            "200 REGISTER",
            "INVITE",
            "CANCEL",
            "ACK",
            "BYE"
        ])
    );
    let cancel = sim.ua(loser).requests(Method::Cancel).remove(0);
    assert_eq!(reason_of(&cancel).as_deref(), Some(ELSEWHERE));
    assert_eq!(
        sim.ua(winner).seen_names(),
        strings(&["401 REGISTER", "200 REGISTER", "INVITE", "ACK"])
    );
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "answered agent01",
        ])
    );
    assert_eq!(sim.seat_state("agent01"), "on_call");
    let cid = sim.ua(caller).dialogs[0].call_id.clone();
    sim.ua(caller).hang_up(&cid);
    sim.run(20_000);
    assert_eq!(sim.ua(winner).up_count(), 0);
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.seat_state("agent01"), "idle");
}

/// The headset's 200 crosses vigie's CANCEL (sent when the desk answered 5 ms earlier):
/// the headset answers the CANCEL 200, gets ACK then BYE (RFC 3261 §9.1, §15); the call
/// stays bridged to the desk and the seat on the call.
#[test]
fn fork_200_crossing_cancel_gets_ack_and_bye() {
    let mut sim = Sim::new(config(1));
    let desk = sim.add_seat(1, Some(Duration::from_secs(2)));
    let headset = sim.add_seat_device(1, 1, Some(Duration::from_millis(2_005)));
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(10_000);
    assert_eq!(
        sim.ua(headset).seen(),
        timed(&[
            (20, "401 REGISTER"),
            (40, "200 REGISTER"),
            (1_020, "INVITE"),
            (3_040, "CANCEL"),
            (3_045, "ACK"),
            (3_045, "BYE"),
        ])
    );
    assert_eq!(
        sim.sent_by("agent01-1"),
        wire(&[
            (0, "REGISTER", false),
            (20, "REGISTER", false),
            (1_020, "180 INVITE", false),
            (3_025, "200 INVITE", false),
            (3_040, "200 CANCEL", false),
            (3_045, "200 BYE", false),
        ])
    );
    assert_eq!(sim.ua(headset).up_count(), 0);
    assert_eq!(sim.ua(desk).up_count(), 1);
    assert_eq!(sim.ua(caller).up_count(), 1);
    assert_eq!(sim.seat_state("agent01"), "on_call");
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call)
            .iter()
            .filter(|e| e.starts_with("answered"))
            .count(),
        1
    );
    assert!(
        sim.events_of(call)
            .iter()
            .all(|e| !e.starts_with("seat_failed"))
    );
}

/// The caller CANCELs while three Contacts of the seat ring: each gets a CANCEL (no
/// `Reason`: nobody answered), answers 487 and gets its ACK; the seat is idle, no leg is
/// left behind.
#[test]
fn fork_caller_cancels_while_three_contacts_ring() {
    let mut sim = Sim::new(config(1));
    let phones = [
        sim.add_seat(1, None),
        sim.add_seat_device(1, 1, None),
        sim.add_seat_device(1, 2, None),
    ];
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(5_000);
    assert_eq!(sim.seat_state("agent01"), "ringing");
    sim.ua(caller).cancel();
    sim.run(60_000);
    for p in phones {
        assert_eq!(
            sim.ua(p).seen(),
            timed(&[
                (20, "401 REGISTER"),
                (40, "200 REGISTER"),
                (1_020, "INVITE"),
                (5_020, "CANCEL"),
                (5_040, "ACK"),
            ]),
            "{}",
            sim.uas[p].name
        );
        let cancel = sim.ua(p).requests(Method::Cancel).remove(0);
        assert_eq!(reason_of(&cancel), None);
        assert_eq!(sim.ua(p).max_up, 0);
    }
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "abandoned ringing",
        ])
    );
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.seat_state("agent01"), "idle");
    assert_eq!(sim.releases(call), 1);
}

/// One Contact refuses (486) at once, the other answers 3 s later: a failing fork ends
/// only itself; the seat answers, with no `seat_failed`.
#[test]
fn fork_one_contact_refuses_the_other_answers() {
    let mut sim = Sim::new(config(1));
    let desk = sim.add_seat(1, Some(Duration::from_secs(3)));
    let busy = sim.add_seat_device(1, 1, None);
    sim.uas[busy].refuse = Some(486);
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(10_000);
    assert_eq!(
        sim.ua(busy).seen_names(),
        strings(&["401 REGISTER", "200 REGISTER", "INVITE", "ACK"])
    );
    assert_eq!(sim.ua(desk).up_count(), 1);
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "answered agent01",
        ])
    );
    assert_eq!(sim.seat_state("agent01"), "on_call");
}

/// Every Contact fails: one refuses (486), the other is unreachable (every message to it
/// lost, its INVITE times out after 64×T1 = 32 s, RFC 3261 §17.1.1.2). The offer fails
/// once, when the last fork ends, with the best outcome: `busy` 486 (Declined) beats the
/// timeout (Unreachable).
#[test]
fn fork_all_contacts_fail_best_reason_reported_once() {
    let mut config = config(1);
    config.queues[0].ring_timeout_s = 60;
    let mut sim = Sim::new(config);
    let busy = sim.add_seat(1, None);
    sim.uas[busy].refuse = Some(486);
    let gone = sim.add_seat_device(1, 1, None);
    sim.run(100);
    assert!(sim.uas[gone].registered);
    sim.drop = Box::new(|w| w.to == "agent01-1");
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(20_000);
    // The 486 alone does not fail the offer while the other fork may still answer.
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&["received 19", "queued line19", "offered agent01"])
    );
    assert_eq!(sim.seat_state("agent01"), "reserved");
    sim.run(34_000);
    let ev = sim.events_of(call);
    assert_eq!(
        ev.iter()
            .filter(|e| e.starts_with("seat_failed"))
            .collect::<Vec<_>>(),
        vec!["seat_failed agent01 Some(486) busy"],
        "{ev:?}"
    );
    assert_eq!(sim.switch.active_calls(), 1);
    assert!(sim.switch.acd().has_call(call));
}

/// The ring timeout with two Contacts ringing: both are CANCELled; the seat's offer fails
/// once (`no_answer`) and the call is offered to the next seat.
#[test]
fn fork_ring_timeout_cancels_every_contact_of_the_seat() {
    let mut sim = Sim::new(config(2));
    let desk = sim.add_seat(1, None);
    let headset = sim.add_seat_device(1, 1, None);
    sim.run(50);
    let other = sim.add_seat(2, Some(Duration::from_secs(1)));
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(30_000);
    for p in [desk, headset] {
        let cancels = sim.ua(p).requests(Method::Cancel);
        assert_eq!(cancels.len(), 1, "{}", sim.uas[p].name);
        assert_eq!(reason_of(&cancels[0]), None);
        assert_eq!(sim.ua(p).max_up, 0);
    }
    let call = sim.calls()[0];
    let ev = sim.events_of(call);
    assert_eq!(
        ev,
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "seat_failed agent01 Some(487) no_answer",
            "offered agent02",
            "ringing agent02",
            "answered agent02",
        ])
    );
    assert_eq!(sim.ua(other).up_count(), 1);
    assert_eq!(sim.seat_state("agent01"), "idle");
}

/// Sixty callers, ten seats each registered from two phones that answer after random
/// delays (often both at once), 5 % of all messages lost: every call is answered exactly
/// once, no seat has two phones up at once, every seat ends idle and no leg is left.
#[test]
fn fork_sixty_callers_ten_seats_two_phones_each_with_loss() {
    let mut sim = Sim::new(config(10));
    let mut loss = Rng(0x5eed_f0f0_1234_5679);
    sim.drop = Box::new(move |_| loss.below(100) < 5);
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    let mut phones: Vec<(UaId, UaId)> = Vec::new();
    for n in 1..=10 {
        let a = Duration::from_millis(1_000 + rng.below(3) * 1_000);
        let b = Duration::from_millis(1_000 + rng.below(3) * 1_000);
        let desk = sim.add_seat(n, Some(a));
        let headset = sim.add_seat_device(n, 1, Some(b));
        phones.push((desk, headset));
    }
    sim.run(20_000);
    assert!(
        phones
            .iter()
            .all(|(a, b)| sim.uas[*a].registered && sim.uas[*b].registered)
    );
    let callers: Vec<UaId> = (1..=60).map(|n| sim.add_caller(n)).collect();
    for (i, c) in callers.iter().enumerate() {
        sim.run(20_000 + 200 * i as u64);
        sim.ua(*c).hangup_after = Some(Duration::from_secs(15));
        sim.ua(*c).invite();
    }
    sim.run(600_000);
    let calls = sim.calls();
    assert_eq!(calls.len(), 60);
    for c in &calls {
        let ev = sim.events_of(*c);
        assert_eq!(
            ev.iter().filter(|e| e.starts_with("answered")).count(),
            1,
            "{ev:?}"
        );
        assert_eq!(ev.last().unwrap(), "ended caller_hangup", "{ev:?}");
        assert_eq!(sim.releases(*c), 1);
    }
    for (desk, headset) in &phones {
        let (a, b) = (&sim.uas[*desk], &sim.uas[*headset]);
        assert!(
            a.max_up <= 1 && b.max_up <= 1,
            "{} had two calls at once",
            a.name
        );
        assert_eq!(
            a.overlaps + b.overlaps,
            0,
            "{} got an INVITE while busy",
            a.name
        );
        assert_eq!(a.up_count() + b.up_count(), 0, "{} left in a call", a.name);
    }
    for c in &callers {
        assert_eq!(sim.uas[*c].up_count(), 0);
        assert_eq!(sim.uas[*c].max_up, 1);
    }
    assert_eq!(sim.switch.active_calls(), 0);
    assert!(
        sim.switch
            .acd()
            .seats()
            .all(|(_, s)| matches!(s, SeatState::Idle { .. }))
    );
}

// ---------------------------------------------------------------------------------------
// Ring-all: every idle seat of the queue rings, the first answer wins (issue 5)
// ---------------------------------------------------------------------------------------

/// The demo configuration with `seats` seats and a ring-all `line19` queue.
fn ring_all_config(seats: usize) -> Config {
    let mut c = config(seats);
    c.queues[0].strategy = vigie::acd::Strategy::RingAll;
    c
}

/// Ring-all with three seats: agent02 answers first; agent01 and agent03 are CANCELled
/// with `Reason: SIP;cause=200` and their offers withdrawn (`seat_failed … withdrawn`);
/// they are idle at once, agent02 on the call.
#[test]
fn ring_all_first_answer_wins_the_others_cancelled() {
    let mut sim = Sim::new(ring_all_config(3));
    let s1 = sim.add_seat(1, None);
    let s2 = sim.add_seat(2, Some(Duration::from_secs(2)));
    let s3 = sim.add_seat(3, Some(Duration::from_secs(5)));
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(1_500);
    for seat in ["agent01", "agent02", "agent03"] {
        assert_eq!(sim.seat_state(seat), "ringing", "{seat}");
    }
    sim.run(10_000);
    for s in [s1, s3] {
        assert_eq!(
            sim.ua(s).seen(),
            timed(&[
                (20, "401 REGISTER"),
                (40, "200 REGISTER"),
                (1_020, "INVITE"),
                (3_040, "CANCEL"),
                (3_060, "ACK"),
            ]),
            "{}",
            sim.uas[s].name
        );
        let cancel = sim.ua(s).requests(Method::Cancel).remove(0);
        assert_eq!(reason_of(&cancel).as_deref(), Some(ELSEWHERE));
        assert_eq!(sim.ua(s).max_up, 0);
    }
    assert_eq!(sim.ua(s2).up_count(), 1);
    let call = sim.calls()[0];
    let mut ev = sim.events_of(call);
    // Offers and withdrawals of the three seats come in seat order.
    assert_eq!(
        ev.drain(..2).collect::<Vec<_>>(),
        strings(&["received 19", "queued line19"])
    );
    assert_eq!(
        ev,
        strings(&[
            "offered agent01",
            "offered agent02",
            "offered agent03",
            "ringing agent01",
            "ringing agent02",
            "ringing agent03",
            "answered agent02",
            "seat_failed agent01 Some(487) withdrawn",
            "seat_failed agent03 Some(487) withdrawn",
        ])
    );
    assert_eq!(sim.seat_state("agent01"), "idle");
    assert_eq!(sim.seat_state("agent02"), "on_call");
    assert_eq!(sim.seat_state("agent03"), "idle");
}

/// Ring-all, three seats answering at the same instant, for ten calls one after the other,
/// with 5 % of all messages lost: every call is bridged to exactly one seat, no seat is
/// ever in two calls, the losing answers are ACKed and hung up, every seat ends idle and
/// no call or leg is left behind.
#[test]
fn ring_all_three_seats_answer_at_once_with_loss_never_two_bridged() {
    let mut sim = Sim::new(ring_all_config(3));
    let mut loss = Rng(0x0123_4567_89ab_cdef);
    sim.drop = Box::new(move |_| loss.below(100) < 5);
    let seats: Vec<UaId> = (1..=3)
        .map(|n| sim.add_seat(n, Some(Duration::from_millis(500))))
        .collect();
    sim.run(20_000);
    assert!(seats.iter().all(|s| sim.uas[*s].registered));
    let callers: Vec<UaId> = (1..=10).map(|n| sim.add_caller(n)).collect();
    for (i, c) in callers.iter().enumerate() {
        sim.run(20_000 + 40_000 * i as u64);
        sim.ua(*c).hangup_after = Some(Duration::from_secs(5));
        sim.ua(*c).invite();
    }
    sim.run(20_000 + 40_000 * 10 + 60_000);
    let calls = sim.calls();
    assert_eq!(calls.len(), 10);
    let mut bridged_by_seat = [0usize; 3];
    for c in &calls {
        let ev = sim.events_of(*c);
        let answered: Vec<&String> = ev.iter().filter(|e| e.starts_with("answered")).collect();
        assert_eq!(answered.len(), 1, "{ev:?}");
        let n: usize = answered[0]["answered agent0".len()..].parse().unwrap();
        bridged_by_seat[n - 1] += 1;
        assert_eq!(ev.last().unwrap(), "ended caller_hangup", "{ev:?}");
        assert_eq!(sim.releases(*c), 1);
    }
    assert_eq!(bridged_by_seat.iter().sum::<usize>(), 10);
    for s in &seats {
        let ua = &sim.uas[*s];
        assert_eq!(ua.max_up, 1, "{} had two calls at once", ua.name);
        assert_eq!(ua.up_count(), 0, "{} left in a call", ua.name);
        // Ten INVITEs (one per call; retransmissions are not new dialogs), and every
        // answer that lost got a BYE.
        assert_eq!(ua.dialogs.len(), 10, "{}", ua.name);
    }
    // Of 30 answers (3 per call) 10 were bridged: the 20 others were hung up by vigie.
    let byes_to_seats: usize = seats
        .iter()
        .map(|s| {
            let name = sim.uas[*s].name.clone();
            sim.vigie_to(&name)
                .iter()
                .filter(|(_, w, dropped)| w == "BYE" && !dropped)
                .count()
        })
        .sum();
    assert!(
        byes_to_seats >= 20,
        "{byes_to_seats} BYEs reached the seats"
    );
    for c in &callers {
        assert_eq!(sim.uas[*c].up_count(), 0);
        assert_eq!(sim.uas[*c].max_up, 1);
    }
    assert_eq!(sim.switch.active_calls(), 0);
    assert!(
        sim.switch
            .acd()
            .seats()
            .all(|(_, s)| matches!(s, SeatState::Idle { .. })),
        "{:?}",
        sim.switch.acd().seats().collect::<Vec<_>>()
    );
}

/// Ring-all with two seats of two phones each: the caller CANCELs while the four phones
/// ring: four CANCELs, four 487s, both seats idle, nothing left.
#[test]
fn ring_all_caller_cancels_while_four_phones_ring() {
    let mut sim = Sim::new(ring_all_config(2));
    let phones = [
        sim.add_seat(1, None),
        sim.add_seat_device(1, 1, None),
        sim.add_seat(2, None),
        sim.add_seat_device(2, 1, None),
    ];
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(4_000);
    sim.ua(caller).cancel();
    sim.run(40_000);
    for p in phones {
        assert_eq!(
            sim.ua(p).seen_names(),
            strings(&["401 REGISTER", "200 REGISTER", "INVITE", "CANCEL", "ACK"]),
            "{}",
            sim.uas[p].name
        );
    }
    let call = sim.calls()[0];
    assert_eq!(sim.events_of(call).last().unwrap(), "abandoned ringing");
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.seat_state("agent01"), "idle");
    assert_eq!(sim.seat_state("agent02"), "idle");
}

/// One Contact of the seat is unreachable (everything to it lost): its INVITE times out
/// after 64×T1 = 32 s and only that fork ends; the desk phone answers at 40 s and the
/// call is bridged with no `seat_failed`.
#[test]
fn fork_transaction_timeout_ends_only_that_fork() {
    let mut config = config(1);
    config.queues[0].ring_timeout_s = 60;
    let mut sim = Sim::new(config);
    let desk = sim.add_seat(1, Some(Duration::from_secs(40)));
    let gone = sim.add_seat_device(1, 1, None);
    sim.run(100);
    assert!(sim.uas[gone].registered);
    sim.drop = Box::new(|w| w.to == "agent01-1");
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(36_000);
    // Timer B fired for the lost fork: vigie stopped retransmitting its INVITE.
    let invites_to_gone = sim
        .vigie_to("agent01-1")
        .iter()
        .filter(|(_, w, _)| w == "INVITE")
        .count();
    assert_eq!(
        invites_to_gone, 7,
        "INVITE and its 6 retransmissions (timer A)"
    );
    assert_eq!(sim.seat_state("agent01"), "ringing");
    sim.run(50_000);
    assert_eq!(sim.ua(desk).up_count(), 1);
    assert_eq!(sim.ua(caller).up_count(), 1);
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "answered agent01",
        ])
    );
    assert_eq!(sim.seat_state("agent01"), "on_call");
}

/// Ring-all, two seats that never answer: at the ring timeout (15 s) both are CANCELled
/// (no `Reason`: nobody answered) and both offers fail as `no_answer`; the caller then
/// gives up and both seats end idle.
#[test]
fn ring_all_ring_timeout_cancels_every_seat() {
    let mut sim = Sim::new(ring_all_config(2));
    let seats = [sim.add_seat(1, None), sim.add_seat(2, None)];
    sim.run(100);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(17_000);
    for s in seats {
        let cancels = sim.ua(s).requests(Method::Cancel);
        assert_eq!(cancels.len(), 1, "{}", sim.uas[s].name);
        assert_eq!(reason_of(&cancels[0]), None);
    }
    let call = sim.calls()[0];
    let failed: Vec<String> = sim
        .events_of(call)
        .into_iter()
        .filter(|e| e.starts_with("seat_failed"))
        .collect();
    assert_eq!(
        failed,
        strings(&[
            "seat_failed agent01 Some(487) no_answer",
            "seat_failed agent02 Some(487) no_answer",
        ])
    );
    sim.ua(caller).cancel();
    sim.run(60_000);
    assert_eq!(sim.switch.active_calls(), 0);
    assert_eq!(sim.ua(caller).responses(487, Method::Invite).len(), 1);
    assert_eq!(sim.seat_state("agent01"), "idle");
    assert_eq!(sim.seat_state("agent02"), "idle");
}

/// Qualify (OPTIONS keep-alive, `[registrar] qualify_s = 10`): both seats are probed
/// every 10 s from their REGISTER; agent01 stops answering (its OPTIONS are lost): Timer F
/// (64·T1 = 32 s) marks it unreachable, so the next call is offered to agent02 although
/// agent01 has been idle longer; once agent01 answers a probe again it is reachable and
/// offered the next call.
#[test]
fn qualify_marks_a_silent_seat_unreachable_and_it_comes_back() {
    let mut c = config(2);
    c.registrar.qualify_s = 10;
    let mut sim = Sim::new(c);
    let s1 = sim.add_seat(1, Some(Duration::from_secs(1)));
    sim.run(500);
    let s2 = sim.add_seat(2, Some(Duration::from_secs(1)));
    sim.run(1_000);
    assert!(sim.ua(s1).registered && sim.ua(s2).registered);
    let reachable = |sim: &Sim, seat: &str| sim.switch.acd().seat(seat).unwrap().reachable();

    // Probes: 10 s after each REGISTER reached vigie (agent01's at 30 ms), then every 10 s.
    sim.run(25_000);
    let options = |sim: &Sim, seat: &str| -> Vec<(u64, bool)> {
        sim.vigie_to(seat)
            .into_iter()
            .filter(|(_, what, _)| what == "OPTIONS")
            .map(|(ms, _, dropped)| (ms, dropped))
            .collect()
    };
    assert_eq!(
        options(&sim, "agent01"),
        vec![(10_030, false), (20_030, false)]
    );
    assert_eq!(
        options(&sim, "agent02"),
        vec![(10_530, false), (20_530, false)]
    );
    assert_eq!(
        sim.sent_by("agent01")
            .iter()
            .filter(|(_, what, _)| what == "200 OPTIONS")
            .count(),
        2
    );
    let probe = sim.ua(s1).requests(Method::Options);
    assert_eq!(probe.len(), 2);
    assert_eq!(probe[0].call_id().unwrap(), probe[1].call_id().unwrap());
    assert_eq!(
        (probe[0].cseq().unwrap().seq, probe[1].cseq().unwrap().seq),
        (1, 2)
    );
    assert_eq!(probe[0].uri.to_string(), "sip:agent01@127.0.0.3:7001");
    assert!(reachable(&sim, "agent01"));

    // agent01 goes silent: the 30 030 ms probe and its retransmissions are lost.
    sim.drop = Box::new(|w| w.to == "agent01" && w.what == "OPTIONS");
    sim.run(62_000);
    assert!(reachable(&sim, "agent01"), "unreachable before Timer F");
    sim.run(62_100);
    assert!(!reachable(&sim, "agent01"), "Timer F at 30 030 + 32 000 ms");
    assert!(reachable(&sim, "agent02"));
    let lost = options(&sim, "agent01");
    assert!(lost.iter().filter(|(ms, _)| *ms >= 30_000).all(|(_, d)| *d));
    // Retransmitted every T1, 2T1, … capped at T2 (RFC 3261 §17.1.2.2, timer E).
    assert_eq!(
        lost.iter()
            .filter(|(ms, _)| (30_000..62_030).contains(ms))
            .map(|(ms, _)| *ms)
            .take(5)
            .collect::<Vec<_>>(),
        vec![30_030, 30_530, 31_530, 33_530, 37_530]
    );
    assert_eq!(sim.seat_state("agent01"), "idle");

    // A call now goes to agent02 (agent01, idle longer, is not offered).
    let caller = sim.add_caller(1);
    sim.ua(caller).hangup_after = Some(Duration::from_secs(2));
    sim.ua(caller).invite();
    sim.run(70_000);
    let call = sim.calls()[0];
    let offered: Vec<String> = sim
        .events_of(call)
        .into_iter()
        .filter(|e| e.starts_with("offered"))
        .collect();
    assert_eq!(offered, vec!["offered agent02".to_owned()]);
    assert!(
        sim.vigie_to("agent01")
            .iter()
            .all(|(_, what, _)| what != "INVITE")
    );

    // agent01 answers again: the next probe brings it back.
    sim.drop = Box::new(|_| false);
    sim.run(130_000);
    assert!(reachable(&sim, "agent01"));
    let back = options(&sim, "agent01");
    assert!(back.iter().any(|(ms, d)| *ms > 62_100 && !*d));
    let caller2 = sim.add_caller(2);
    sim.ua(caller2).hangup_after = Some(Duration::from_secs(2));
    sim.ua(caller2).invite();
    sim.run(140_000);
    let call2 = sim.calls()[1];
    assert!(
        sim.events_of(call2).contains(&"offered agent01".to_owned()),
        "{:?}",
        sim.events_of(call2)
    );
}

/// Qualify: a seat found unreachable (its OPTIONS lost, Timer F) is reachable again as soon
/// as it registers afresh, before any probe is answered, and is offered the next call.
#[test]
fn qualify_a_fresh_register_makes_an_unreachable_seat_reachable() {
    let mut c = config(1);
    c.registrar.qualify_s = 10;
    let mut sim = Sim::new(c);
    let s1 = sim.add_seat(1, Some(Duration::from_secs(1)));
    sim.drop = Box::new(|w| w.to == "agent01" && w.what == "OPTIONS");
    sim.run(42_000);
    let reachable = |sim: &Sim| sim.switch.acd().seat("agent01").unwrap().reachable();
    assert!(reachable(&sim), "before Timer F (10 030 + 32 000 ms)");
    sim.run(42_100);
    assert!(!reachable(&sim));

    sim.run(45_000);
    sim.ua(s1).register(None);
    sim.run(45_100);
    assert!(
        reachable(&sim),
        "the 200 to the fresh REGISTER makes it reachable"
    );
    let caller = sim.add_caller(1);
    sim.ua(caller).hangup_after = Some(Duration::from_secs(2));
    sim.ua(caller).invite();
    sim.run(50_000);
    let call = sim.calls()[0];
    assert!(
        sim.events_of(call).contains(&"answered agent01".to_owned()),
        "{:?}",
        sim.events_of(call)
    );
}

// ---- queue announcements: position, expected wait, language (announce helper) ----------

impl Sim {
    /// The prompts announced to `call` (Play and PlaySequence), as (ms, language, names).
    fn announced(&self, call: CallId) -> Vec<(u64, String, Vec<String>)> {
        self.media
            .iter()
            .filter_map(|(ms, m)| match m {
                MediaCommand::Play {
                    call: c,
                    prompt,
                    language,
                    ..
                } if *c == call => Some((*ms, language.clone(), vec![prompt.clone()])),
                MediaCommand::PlaySequence {
                    call: c,
                    prompts,
                    language,
                    ..
                } if *c == call => Some((*ms, language.clone(), prompts.clone())),
                _ => None,
            })
            .collect()
    }

    /// When the first StopPlay for `call` went out.
    fn stop_play_at(&self, call: CallId) -> Option<u64> {
        self.media.iter().find_map(|(ms, m)| match m {
            MediaCommand::StopPlay { call: c, .. } if *c == call => Some(*ms),
            _ => None,
        })
    }
}

const PLAN_ANNOUNCED: &str = r#"
[[routes]]
name = "line19"
match = { called = '19' }
steps = [
  { ring = 180 },
  { queue = { name = "line19", priority = 5, max_wait_s = 0, announce_every_s = 20, announce_position = true, announce_wait = true } },
]
"#;

fn seq(names: &[&str]) -> Vec<String> {
    strings(names)
}

/// One seat: the first caller talks 39 s, which gives the queue its average handle time
/// (39.02 s as the switch sees it, wrap-up 0). Before that the second caller hears its
/// position only (no history); later the fifth caller, third in line behind two others with
/// one seat on duty, hears "position 3, 2 minutes" (3 × 39.02 s = 117 s, rounded up), and
/// the third "position 1, 1 minute".
#[test]
fn announcement_tells_position_and_expected_wait_from_recent_handle_times() {
    let mut sim = Sim::with_plan(config(1), PLAN_ANNOUNCED);
    let seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    sim.run(1_000);
    let callers: Vec<UaId> = (1..=5).map(|n| sim.add_caller(n)).collect();
    sim.ua(callers[0]).hangup_after = Some(Duration::from_secs(39));
    sim.ua(callers[0]).invite();
    sim.run(3_000);
    sim.ua(callers[1]).invite();
    sim.run(60_000);
    for &c in &callers[2..] {
        sim.ua(c).invite();
        sim.run(sim.ms() + 100);
    }
    sim.run(61_000);
    let calls = sim.calls();
    assert_eq!(calls.len(), 5);
    // Call 1 found the seat free: offered at once, never announced.
    assert!(sim.announced(calls[0]).is_empty());
    let position_only = seq(&["position.wav", "digits/1.wav"]);
    assert_eq!(
        sim.announced(calls[1]),
        vec![
            (3_010, "fr".to_owned(), position_only.clone()),
            (23_010, "fr".to_owned(), position_only),
        ],
        "no handle time yet: position only; none once a seat rings (call 1 ended at 41 s)"
    );
    assert_eq!(
        sim.events_of(calls[1])[2..4],
        strings(&["offered agent01", "ringing agent01"])
    );
    let announced: Vec<Vec<String>> = calls[2..]
        .iter()
        .map(|c| sim.announced(*c).remove(0).2)
        .collect();
    assert_eq!(
        announced,
        vec![
            seq(&[
                "position.wav",
                "digits/1.wav",
                "expected-wait.wav",
                "digits/1.wav",
                "minute.wav"
            ]),
            seq(&[
                "position.wav",
                "digits/2.wav",
                "expected-wait.wav",
                "digits/2.wav",
                "minutes.wav"
            ]),
            seq(&[
                "position.wav",
                "digits/3.wav",
                "expected-wait.wav",
                "digits/2.wav",
                "minutes.wav"
            ]),
        ]
    );
    // The seat is busy with call 2 the whole time: the others keep waiting.
    assert_eq!(sim.ua(seat).requests(Method::Invite).len(), 2);
    // Every 20 s the announcement comes again with the current figures.
    sim.run(81_000);
    let again = sim.announced(calls[4]);
    assert_eq!(again.len(), 2);
    assert_eq!(again[1].0 - again[0].0, 20_000);
    assert_eq!(again[1].2, announced[2]);
}

/// `{ set = { language = "ar" } }`: the welcome prompt and the announcements are asked
/// for in Arabic, with the Arabic dual for 2 minutes; the step's own prompt comes first.
#[test]
fn arabic_route_announces_in_arabic() {
    let mut sim = Sim::with_plan(config(1), PLAN_ARABIC);
    let _seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    sim.run(1_000);
    let first = sim.add_caller(1);
    let second = sim.add_caller(2);
    let third = sim.add_caller(3);
    // The first call talks 78 s (78.02 s at the switch): the queue's handle time.
    sim.ua(first).hangup_after = Some(Duration::from_secs(78));
    sim.ua(first).invite();
    sim.run(1_010);
    // The media layer reports the welcome prompt played (its length does not matter).
    let (now, c) = (sim.now, sim.calls()[0]);
    sim.switch.handle_prompt_done(now, c);
    sim.run(85_000);
    // The second keeps the one seat busy.
    sim.ua(second).invite();
    sim.run(85_010);
    let (now, c) = (sim.now, sim.calls()[1]);
    sim.switch.handle_prompt_done(now, c);
    sim.run(90_000);
    sim.ua(third).invite();
    sim.run(95_000);
    let call = sim.calls()[2];
    assert_eq!(
        sim.announced(call),
        vec![(90_010, "ar".to_owned(), seq(&["welcome.wav"]))],
        "the play step first, in Arabic; no announcement before it ends"
    );
    let now = sim.now;
    sim.switch.handle_prompt_done(now, call);
    sim.run(96_000);
    // 1st in line, one seat on duty: 78.02 s → 2 minutes, the Arabic dual alone.
    assert_eq!(
        sim.announced(call)[1..],
        [(
            95_000,
            "ar".to_owned(),
            seq(&[
                "please-hold.wav",
                "position.wav",
                "digits/1.wav",
                "expected-wait.wav",
                "minutes-two.wav"
            ])
        )]
    );
}

const PLAN_ARABIC: &str = r#"
[[routes]]
name = "line19-ar"
match = { called = '19' }
steps = [
  { ring = 180 },
  { set = { language = "ar" } },
  { play = "welcome.wav" },
  { queue = { name = "line19", priority = 5, max_wait_s = 0, announce = "please-hold.wav", announce_every_s = 20, announce_position = true, announce_wait = true } },
]
"#;

/// A seat free when the call arrives: the ACD's offer (the INVITE to the seat) goes out in
/// the same step as the enqueue and no announcement is played at all, though the first
/// one (with a prompt of its own) was due at once; the relay ports, allocated after the
/// enqueue, do not let it start before the offer.
#[test]
fn free_seat_is_offered_before_the_first_announcement() {
    let plan = r#"
[[routes]]
name = "line19"
steps = [
  { ring = 180 },
  { queue = { name = "line19", priority = 5, max_wait_s = 0, announce = "please-hold.wav", announce_every_s = 20, announce_position = true } },
]
"#;
    let mut sim = Sim::with_plan(config(1), plan);
    let seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    sim.run(1_000);
    let caller = sim.add_caller(1);
    sim.ua(caller).invite();
    sim.run(5_000);
    let call = sim.calls()[0];
    let queued_at = sim
        .events
        .iter()
        .find(|(_, e)| e.call == call && matches!(e.kind, CallEventKind::Queued { .. }))
        .map(|(ms, _)| *ms);
    let offered_at = sim
        .events
        .iter()
        .find(|(_, e)| e.call == call && matches!(e.kind, CallEventKind::Offered { .. }))
        .map(|(ms, _)| *ms);
    assert_eq!((queued_at, offered_at), (Some(1_010), Some(1_010)));
    assert_eq!(
        sim.vigie_to("agent01")[2].0,
        1_010,
        "INVITE to the seat at once"
    );
    assert!(sim.announced(call).is_empty(), "{:?}", sim.announced(call));
    assert_eq!(sim.ua(seat).requests(Method::Invite).len(), 1);
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "answered agent01"
        ])
    );
}

/// While a seat rings the announcements are skipped; its answer stops the one playing at
/// once (StopPlay in the same step as the 200 to the caller) and none follows.
#[test]
fn announcements_skip_while_ringing_and_stop_on_answer() {
    let mut sim = Sim::with_plan(config(1), PLAN_ANNOUNCED);
    let caller = sim.add_caller(1);
    sim.ua(caller).invite();
    sim.run(30_000);
    // A seat that answers after 12 s (ring timeout 15 s): rings across the 40 s
    // announcement.
    let seat = sim.add_seat(1, Some(Duration::from_secs(12)));
    sim.run(120_000);
    let call = sim.calls()[0];
    let at: Vec<u64> = sim.announced(call).iter().map(|a| a.0).collect();
    assert_eq!(at, [10, 20_010]);
    let ok_at = sim
        .vigie_to("caller1")
        .into_iter()
        .find(|w| w.1 == "200 INVITE")
        .map(|w| w.0);
    let seat_ok_at = sim
        .sent_by("agent01")
        .into_iter()
        .find(|w| w.1 == "200 INVITE")
        .map(|w| w.0);
    // The seat's 200 reaches vigie 10 ms after it is sent: StopPlay and the 200 to the
    // caller go out then, in the same step.
    let stop = sim.stop_play_at(call);
    assert_eq!(stop, seat_ok_at.map(|t| t + 10));
    assert_eq!(ok_at, stop);
    assert_eq!(sim.ua(seat).requests(Method::Invite).len(), 1);
}

/// A caller who hangs up while an announcement plays abandons in phase `announcement`;
/// once the media layer reported it done, in phase `queued`; during the `play` step
/// before the queue, in phase `announcement`.
#[test]
fn abandon_during_an_announcement_is_phase_announcement() {
    let mut sim = Sim::with_plan(config(1), PLAN_ARABIC);
    let callers: Vec<UaId> = (1..=3).map(|n| sim.add_caller(n)).collect();
    for &c in &callers {
        sim.ua(c).invite();
    }
    sim.run(1_000);
    let calls = sim.calls();
    // Calls 1 and 2 reach the queue (welcome prompt done); call 3 stays in its prompt.
    let now = sim.now;
    for c in &calls[..2] {
        sim.switch.handle_prompt_done(now, *c);
    }
    sim.run(2_000);
    for c in &calls[..2] {
        assert_eq!(sim.announced(*c).len(), 2, "welcome, then the announcement");
    }
    // Call 2's announcement is reported played.
    let now = sim.now;
    sim.switch.handle_prompt_done(now, calls[1]);
    for &c in &callers {
        sim.ua(c).cancel();
    }
    sim.run(5_000);
    let last = |c: CallId| sim.events_of(c).last().cloned().unwrap();
    assert_eq!(last(calls[0]), "abandoned announcement");
    assert_eq!(last(calls[1]), "abandoned queued");
    assert_eq!(last(calls[2]), "abandoned announcement");
    assert_eq!(sim.switch.active_calls(), 0);
}

// ---------------------------------------------------------------------------------------
// Callbacks offered to seats ([callbacks] offer_to_seats)
// ---------------------------------------------------------------------------------------

/// One seat, callbacks offered at priority 10, the caller reached at 127.0.0.5:5080.
fn callback_sim(retry_after_s: u64, max_attempts: u32) -> Sim {
    callback_sim_seats(1, retry_after_s, max_attempts)
}

/// [`callback_sim`] with `seats` seats.
fn callback_sim_seats(seats: usize, retry_after_s: u64, max_attempts: u32) -> Sim {
    let mut c = config(seats);
    c.callbacks.offer_to_seats = true;
    c.callbacks.dial_uri = "sip:{number}@127.0.0.5:5080".into();
    c.callbacks.retry_after_s = retry_after_s;
    c.callbacks.max_attempts = max_attempts;
    assert_eq!(c.callbacks.priority, 10);
    c.validate().unwrap();
    Sim::new(c)
}

/// The pseudo-calls of callbacks: calls with an `offered` event but no `received` one.
fn callback_calls(sim: &Sim) -> Vec<CallId> {
    let trunk = sim.calls();
    let mut out: Vec<CallId> = Vec::new();
    for (_, e) in &sim.events {
        if matches!(e.kind, CallEventKind::Offered { .. })
            && !trunk.contains(&e.call)
            && !out.contains(&e.call)
        {
            out.push(e.call);
        }
    }
    out
}

/// A caller abandons while the only seat is on another call; the edge opens callback task
/// 1 for that caller. When the seat frees it gets the callback ("Rappel <number>",
/// Call-Info naming the task) before a newer trunk call; on its 200 vigie ACKs and calls
/// the caller at dial_uri with vigie's relay offer (A port); on the caller's 200 both are
/// bridged and the task is reported reached; the caller's BYE ends the seat's leg; the
/// seat then takes the waiting trunk call.
#[test]
fn callback_offered_to_the_next_free_seat_before_a_newer_call_and_reached() {
    let mut sim = callback_sim(300, 3);
    let seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    let callee = add_target(
        &mut sim,
        "callee",
        [127, 0, 0, 5],
        Some(Duration::from_secs(2)),
    );
    sim.ua(callee).hangup_after = Some(Duration::from_secs(5));
    let (c0, c1, c2) = (sim.add_caller(0), sim.add_caller(1), sim.add_caller(2));
    sim.ua(c0).hangup_after = Some(Duration::from_secs(10));
    sim.ua(c0).invite();
    sim.run(1_000);
    sim.ua(c1).invite();
    sim.run(3_000);
    sim.ua(c1).cancel();
    sim.run(3_500);
    let call1 = call_of(&sim, 1);
    assert_eq!(
        sim.events_of(call1).last().map(String::as_str),
        Some("abandoned queued")
    );
    // The edge's CallbackDesk opened task 1 for this abandon.
    let now = sim.now;
    sim.switch.callback_open(now, 1, "0600000001", "line19", 0);
    assert_eq!(sim.switch.callbacks_pending(), 1);
    sim.run(4_000);
    sim.ua(c2).hangup_after = Some(Duration::from_secs(2));
    sim.ua(c2).invite();
    sim.run(60_000);

    let (call0, call2) = (call_of(&sim, 0), call_of(&sim, 2));
    let cbs = callback_calls(&sim);
    assert_eq!(cbs.len(), 1, "one callback pseudo-call");
    let cb = cbs[0];
    // The seat frees when caller 0 hangs up (~11 s): the callback first, the newer trunk
    // call after the callback ends.
    assert_eq!(
        offers(&sim),
        vec![
            (call0, "agent01".to_owned()),
            (cb, "agent01".to_owned()),
            (call2, "agent01".to_owned()),
        ]
    );
    assert_eq!(
        sim.events_of(cb),
        strings(&[
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "answered agent01",
            "ended caller_hangup"
        ])
    );
    // The seat's INVITE for the callback.
    let invites = sim.ua(seat).requests(Method::Invite);
    assert_eq!(invites.len(), 3);
    let inv = &invites[1];
    let from = inv.headers.get(&HeaderName::From).unwrap();
    assert!(
        from.starts_with("\"Rappel 0600000001\" <sip:0600000001@127.0.0.1>"),
        "{from}"
    );
    assert_eq!(
        inv.headers
            .get(&HeaderName::Other("Call-Info".into()))
            .map(str::to_owned),
        Some("<urn:x-vigie:callback:1>;purpose=info".to_owned())
    );
    let (a_port, b_port) = sim.ports_of(cb);
    assert!(
        body_text(&inv.body).contains(&format!("m=audio {b_port} RTP/AVP")),
        "{}",
        body_text(&inv.body)
    );
    // The caller's INVITE, sent once the seat answered, with the A port.
    let to_callee = sim.ua(callee).requests(Method::Invite);
    assert_eq!(to_callee.len(), 1);
    assert_eq!(
        to_callee[0].uri.to_string(),
        "sip:0600000001@127.0.0.5:5080"
    );
    assert!(body_text(&to_callee[0].body).contains(&format!("m=audio {a_port} RTP/AVP")));
    let seat_ok_ms = sim
        .vigie_to("agent01")
        .iter()
        .filter(|(_, w, _)| w == "ACK")
        .map(|(ms, _, _)| *ms)
        .nth(1)
        .unwrap();
    let callee_wire = sim.vigie_to("callee");
    assert_eq!(
        callee_wire
            .iter()
            .map(|(_, w, _)| w.as_str())
            .collect::<Vec<_>>(),
        ["INVITE", "ACK", "200 BYE"]
    );
    assert_eq!(
        callee_wire[0].0, seat_ok_ms,
        "caller called on the seat's 200"
    );
    // Reached on the bridge, 2 s after the caller's INVITE (+ latency).
    assert_eq!(sim.callback_results.len(), 1);
    let (ms, task, result) = sim.callback_results[0];
    assert_eq!(task, 1);
    assert_eq!(result, TaskResult::Close(CallbackOutcome::Reached));
    assert_eq!(ms, callee_wire[0].0 + 2_020);
    // The caller's BYE 5 s later: vigie BYEs the seat; relay ports released once.
    assert!(
        sim.vigie_to("agent01")
            .iter()
            .any(|(ms, w, _)| w == "BYE" && *ms == callee_wire[0].0 + 7_040),
        "{:?}",
        sim.vigie_to("agent01")
    );
    assert_eq!(sim.releases(cb), 1);
    assert_eq!(sim.switch.callbacks_pending(), 0);
    assert_eq!(
        sim.events_of(call2).last().map(String::as_str),
        Some("ended caller_hangup")
    );
    assert_eq!(sim.seat_state("agent01"), "idle");
    assert_eq!(sim.switch.active_calls(), 0);
}

/// The caller is busy (486): the seat's leg is hung up, an attempt is reported, and the
/// task is offered again after retry_after_s; busy again with max_attempts = 2: the
/// second failure is reported and the switch forgets the task.
#[test]
fn busy_callback_counts_an_attempt_and_retries_after_retry_after_s() {
    let mut sim = callback_sim(60, 2);
    let seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    let callee = add_target(&mut sim, "callee", [127, 0, 0, 5], None);
    sim.ua(callee).refuse = Some(486);
    sim.run(1_000);
    let now = sim.now;
    sim.switch
        .callback_open(now, 7, "+33199000012", "line19", 0);
    sim.run(200_000);

    let cbs = callback_calls(&sim);
    assert_eq!(cbs.len(), 2, "offered twice");
    assert_eq!(
        sim.callback_results
            .iter()
            .map(|(_, t, r)| (*t, *r))
            .collect::<Vec<_>>(),
        [
            (7, TaskResult::AttemptFailed),
            (7, TaskResult::AttemptFailed)
        ]
    );
    let first = sim.callback_results[0].0;
    let offered_again = sim
        .events
        .iter()
        .find(|(_, e)| e.call == cbs[1] && matches!(e.kind, CallEventKind::Offered { .. }))
        .map(|(ms, _)| *ms)
        .unwrap();
    assert_eq!(offered_again, first + 60_000, "retry after retry_after_s");
    for cb in &cbs {
        assert_eq!(
            sim.events_of(*cb),
            strings(&[
                "queued line19",
                "offered agent01",
                "ringing agent01",
                "answered agent01",
                "ended agent_hangup"
            ])
        );
        assert_eq!(sim.releases(*cb), 1);
    }
    // Each attempt: INVITE, 486 ACKed by the transaction layer; the seat gets BYE.
    assert_eq!(sim.ua(callee).requests(Method::Invite).len(), 2);
    assert_eq!(
        sim.ua(callee).requests(Method::Invite)[0].uri.to_string(),
        "sip:+33199000012@127.0.0.5:5080"
    );
    assert_eq!(sim.ua(seat).requests(Method::Bye).len(), 2);
    assert_eq!(sim.switch.callbacks_pending(), 0);
    assert_eq!(sim.seat_state("agent01"), "idle");
}

/// A task claimed over the API while it waits leaves the ACD: no seat is ever called.
#[test]
fn claimed_callback_is_withdrawn_from_the_acd() {
    let mut sim = callback_sim(60, 3);
    let now = sim.now;
    sim.switch.callback_open(now, 3, "0612345678", "line19", 0);
    assert!(
        sim.switch
            .acd()
            .snapshot(now)
            .iter()
            .any(|q| q.waiting == 1)
    );
    sim.switch.callback_withdraw(now, 3);
    assert_eq!(sim.switch.callbacks_pending(), 0);
    let _seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    sim.run(30_000);
    assert!(offers(&sim).is_empty());
    assert!(sim.callback_results.is_empty());
}

/// Qualify with two phones of one seat: the headset stops answering OPTIONS (its probes
/// lost), Timer F marks that contact unreachable while the desk still answers, so the
/// seat stays reachable and the next offer rings the desk only.
#[test]
fn fork_skips_a_contact_that_fails_qualify() {
    let mut c = config(1);
    c.registrar.qualify_s = 10;
    let mut sim = Sim::new(c);
    let desk = sim.add_seat(1, Some(Duration::from_secs(1)));
    let headset = sim.add_seat_device(1, 1, Some(Duration::from_secs(1)));
    sim.run(500);
    assert!(sim.uas[desk].registered && sim.uas[headset].registered);
    sim.drop = Box::new(|w| w.to == "agent01-1" && w.what == "OPTIONS");
    sim.run(50_000);
    assert!(sim.switch.acd().seat("agent01").unwrap().reachable());
    // Probes went to the headset and were all lost on the wire; the desk answered its own.
    let probes: Vec<bool> = sim
        .vigie_to("agent01-1")
        .into_iter()
        .filter(|(_, w, _)| w == "OPTIONS")
        .map(|(_, _, dropped)| dropped)
        .collect();
    assert!(probes.len() >= 2 && probes.iter().all(|d| *d), "{probes:?}");
    assert!(!sim.ua(desk).requests(Method::Options).is_empty());
    let caller = sim.add_caller(1);
    sim.ua(caller).invite();
    sim.run(60_000);
    assert_eq!(sim.ua(desk).requests(Method::Invite).len(), 1);
    assert_eq!(sim.ua(headset).requests(Method::Invite).len(), 0);
    assert_eq!(sim.ua(desk).up_count(), 1);
    let call = sim.calls()[0];
    assert!(sim.events_of(call).contains(&"answered agent01".to_owned()));
}

/// The first seat declines the callback (603): no attempt is counted, the ACD offers the
/// same pseudo-call to the next seat, which answers; the caller is reached.
#[test]
fn a_seat_declining_a_callback_passes_it_to_the_next_seat() {
    let mut sim = callback_sim_seats(2, 300, 3);
    let first = sim.add_seat(1, Some(Duration::from_secs(1)));
    sim.ua(first).refuse = Some(603);
    sim.run(100);
    let _second = sim.add_seat(2, Some(Duration::from_secs(1)));
    let callee = add_target(
        &mut sim,
        "callee",
        [127, 0, 0, 5],
        Some(Duration::from_secs(1)),
    );
    sim.ua(callee).hangup_after = Some(Duration::from_secs(2));
    sim.run(1_000);
    let now = sim.now;
    sim.switch
        .callback_open(now, 4, "+33199000012", "line19", 0);
    sim.run(30_000);

    let cbs = callback_calls(&sim);
    assert_eq!(cbs.len(), 1);
    assert_eq!(
        offers(&sim),
        vec![
            (cbs[0], "agent01".to_owned()),
            (cbs[0], "agent02".to_owned())
        ]
    );
    assert_eq!(
        sim.events_of(cbs[0]),
        strings(&[
            "queued line19",
            "offered agent01",
            "seat_failed agent01 Some(603) declined",
            "offered agent02",
            "ringing agent02",
            "answered agent02",
            "ended caller_hangup"
        ])
    );
    assert_eq!(
        sim.callback_results
            .iter()
            .map(|(_, t, r)| (*t, *r))
            .collect::<Vec<_>>(),
        [(4, TaskResult::Close(CallbackOutcome::Reached))]
    );
    assert_eq!(sim.ua(callee).requests(Method::Invite).len(), 1);
    assert_eq!(sim.switch.callbacks_pending(), 0);
}

/// A seat that rings past the queue's ring timeout (15 s) is CANCELled (its 487 ACKed);
/// the callback is offered again after the queue's retry_s (5 s), without counting an
/// attempt and without calling the caller.
#[test]
fn a_callback_ringing_out_at_the_seat_is_cancelled_and_offered_again() {
    let mut sim = callback_sim(300, 3);
    let seat = sim.add_seat(1, None);
    let callee = add_target(
        &mut sim,
        "callee",
        [127, 0, 0, 5],
        Some(Duration::from_secs(1)),
    );
    sim.run(1_000);
    let now = sim.now;
    sim.switch.callback_open(now, 5, "0612345678", "line19", 0);
    sim.run(25_000);

    let cbs = callback_calls(&sim);
    assert_eq!(cbs.len(), 1);
    assert_eq!(
        sim.events_of(cbs[0]),
        strings(&[
            "queued line19",
            "offered agent01",
            "ringing agent01",
            "seat_failed agent01 None no_answer",
            "offered agent01",
            "ringing agent01",
        ])
    );
    let to_seat: Vec<String> = sim
        .vigie_to("agent01")
        .into_iter()
        .map(|(_, w, _)| w)
        .filter(|w| !w.contains("REGISTER"))
        .collect();
    assert_eq!(to_seat, ["INVITE", "CANCEL", "ACK", "INVITE"]);
    assert_eq!(sim.ua(seat).requests(Method::Invite).len(), 2);
    assert!(sim.ua(callee).requests(Method::Invite).is_empty());
    assert!(sim.callback_results.is_empty());
    assert_eq!(sim.switch.callbacks_pending(), 1);
    assert_eq!(sim.releases(cbs[0]), 1, "the first offer's relay ports");
}

// ---- overflow reasons routed by the dialplan (issue 5) --------------------------------

/// Each overflow reason has its own destination: `queue_full` to 127.0.0.5, `no_seats` to
/// 127.0.0.6, `all_on_break` to 127.0.0.7; `max_wait` is not listed and runs the step after
/// the queue step (127.0.0.4). Every branch goes back to the queue if its target fails.
const PLAN_REASONS: &str = r#"
[[routes]]
name = "line19"
steps = [
  { ring = 180 },
  { queue = { name = "line19", priority = 5, max_wait_s = 20, on_overflow = { queue_full = "full", no_seats = "nobody", all_on_break = "break" } } },
  { overflow = { targets = [{ uri = "sip:19@127.0.0.4:5080", timeout_s = 20 }], then = "back-to-queue" } },
]

[[routes]]
name = "full"
steps = [{ tag = "queue-full" }, { overflow = { targets = [{ uri = "sip:19@127.0.0.5:5080", timeout_s = 20 }], then = "back-to-queue" } }]

[[routes]]
name = "nobody"
steps = [{ overflow = { targets = [{ uri = "sip:19@127.0.0.6:5080", timeout_s = 20 }], then = "back-to-queue" } }]

[[routes]]
name = "break"
steps = [{ overflow = { targets = [{ uri = "sip:19@127.0.0.7:5080", timeout_s = 20 }], then = "back-to-queue" } }]
"#;

/// The `Routed` events of `call` after the first: (route, tags) of each `on_overflow`
/// branch taken.
fn branches_taken(sim: &Sim, call: CallId) -> Vec<(Option<String>, Vec<String>)> {
    sim.events
        .iter()
        .filter_map(|(_, e)| match &e.kind {
            CallEventKind::Routed { route, tags, .. } if e.call == call => {
                Some((route.clone(), tags.clone()))
            }
            _ => None,
        })
        .skip(1)
        .collect()
}

/// The four reason targets of [`PLAN_REASONS`], answering after 1 s.
fn reason_targets(sim: &mut Sim) -> [UaId; 4] {
    [4, 5, 6, 7].map(|n| {
        add_target(
            sim,
            &format!("target{n}"),
            [127, 0, 0, n],
            Some(Duration::from_secs(1)),
        )
    })
}

/// No seat logged in: the call leaves the queue at once with `no_seats` and goes to the
/// `nobody` branch's target (127.0.0.6), not to the default next step.
#[test]
fn overflow_reason_no_seats_takes_its_branch() {
    let mut sim = Sim::with_plan(config(1), PLAN_REASONS);
    let targets = reason_targets(&mut sim);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).hangup_after = Some(Duration::from_secs(5));
    sim.ua(caller).invite();
    sim.run(20_000);
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "overflowed sip:19@127.0.0.6:5080 no_seats",
            "overflow_answered sip:19@127.0.0.6:5080",
            "ended caller_hangup",
        ])
    );
    let invites: Vec<usize> = targets
        .iter()
        .map(|&t| sim.ua(t).requests(Method::Invite).len())
        .collect();
    assert_eq!(invites, [0, 0, 1, 0]);
    // Branch steps are not part of the route's own tags.
    assert_eq!(sim.routed(call).2, Vec::<String>::new());
    assert_eq!(
        branches_taken(&sim, call),
        vec![(Some("nobody".to_owned()), strings(&["overflow:no_seats"]))]
    );
    assert_eq!(sim.switch.active_calls(), 0);
}

/// The only seat is logged in but on break: `all_on_break` to 127.0.0.7.
#[test]
fn overflow_reason_all_on_break_takes_its_branch() {
    let mut sim = Sim::with_plan(config(1), PLAN_REASONS);
    let targets = reason_targets(&mut sim);
    let _seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    let caller = sim.add_caller(1);
    sim.run(1_000);
    assert_eq!(sim.seat_state("agent01"), "idle");
    let now = sim.now;
    let paused = sim.switch.agent_command(
        now,
        "agent01",
        vigie::acd::Command::Pause {
            reason: "meal".into(),
        },
        vigie::acd::Cause::Api,
    );
    assert_eq!(paused, Ok(()));
    sim.run(1_500);
    sim.ua(caller).hangup_after = Some(Duration::from_secs(5));
    sim.ua(caller).invite();
    sim.run(20_000);
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&[
            "received 19",
            "queued line19",
            "overflowed sip:19@127.0.0.7:5080 all_on_break",
            "overflow_answered sip:19@127.0.0.7:5080",
            "ended caller_hangup",
        ])
    );
    let invites: Vec<usize> = targets
        .iter()
        .map(|&t| sim.ua(t).requests(Method::Invite).len())
        .collect();
    assert_eq!(invites, [0, 0, 0, 1]);
}

/// `max_len = 1`, the only seat busy: the first waiting call stays, the next one leaves at
/// once with `queue_full` for the `full` branch (127.0.0.5). The waiting call leaves after
/// its 20 s max wait by the default next step (127.0.0.4): `max_wait` is not listed.
#[test]
fn overflow_reason_queue_full_and_unlisted_max_wait() {
    let mut cfg = config(1);
    cfg.queues[0].max_len = 1;
    let mut sim = Sim::with_plan(cfg, PLAN_REASONS);
    let targets = reason_targets(&mut sim);
    let _seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    let callers: Vec<UaId> = (1..=3).map(|n| sim.add_caller(n)).collect();
    for (i, &c) in callers.iter().enumerate() {
        sim.run(1_000 + 2_000 * i as u64);
        sim.ua(c).hangup_after = Some(Duration::from_secs(60));
        sim.ua(c).invite();
    }
    sim.run(10_000);
    let (k1, k2, k3) = (call_of(&sim, 1), call_of(&sim, 2), call_of(&sim, 3));
    assert!(sim.events_of(k1).contains(&"answered agent01".to_owned()));
    assert_eq!(
        sim.events_of(k2),
        strings(&["received 19", "queued line19"])
    );
    assert_eq!(
        sim.events_of(k3),
        strings(&[
            "received 19",
            "queued line19",
            "overflowed sip:19@127.0.0.5:5080 queue_full",
            "overflow_answered sip:19@127.0.0.5:5080",
        ])
    );
    assert_eq!(
        branches_taken(&sim, k3),
        vec![(
            Some("full".to_owned()),
            strings(&["overflow:queue_full", "queue-full"])
        )]
    );
    // Caller 2 queued at 3 s: its 20 s max wait ends at 23 s.
    sim.run(22_900);
    assert_eq!(sim.events_of(k2).len(), 2);
    sim.run(26_000);
    assert_eq!(
        sim.events_of(k2),
        strings(&[
            "received 19",
            "queued line19",
            "overflowed sip:19@127.0.0.4:5080 max_wait",
            "overflow_answered sip:19@127.0.0.4:5080",
        ])
    );
    // max_wait is not listed: the next step, no branch taken.
    assert!(branches_taken(&sim, k2).is_empty());
    let invites: Vec<usize> = targets
        .iter()
        .map(|&t| sim.ua(t).requests(Method::Invite).len())
        .collect();
    assert_eq!(invites, [1, 1, 0, 0]);
}

/// An emergency queue step with no next step and a branch for `queue_full` only: with no
/// seat logged in (`no_seats`, not listed) the call keeps waiting (no overflow, no final
/// response, never a busy) and the first seat that registers answers it.
#[test]
fn emergency_call_with_no_route_for_its_reason_stays_queued() {
    let plan = r#"
[[routes]]
name = "line19"
steps = [
  { ring = 180 },
  { queue = { name = "line19", priority = 5, on_overflow = { queue_full = "full" } } },
]

[[routes]]
name = "full"
steps = [{ overflow = { targets = [{ uri = "sip:19@127.0.0.5:5080", timeout_s = 20 }], then = "back-to-queue" } }]
"#;
    let mut sim = Sim::with_plan(config(1), plan);
    let target = add_target(&mut sim, "target5", [127, 0, 0, 5], None);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).hangup_after = Some(Duration::from_secs(2));
    sim.ua(caller).invite();
    // Two overflow retries (30 s each) pass without any overflow.
    sim.run(70_000);
    let call = sim.calls()[0];
    assert_eq!(
        sim.events_of(call),
        strings(&["received 19", "queued line19"])
    );
    assert_eq!(
        sim.ua(caller).seen(),
        timed(&[(1_020, "100 INVITE"), (1_020, "180 INVITE")])
    );
    assert!(sim.ua(target).seen().is_empty());
    let _seat = sim.add_seat(1, Some(Duration::from_secs(1)));
    sim.run(80_000);
    assert!(
        sim.events_of(call).contains(&"answered agent01".to_owned()),
        "{:?}",
        sim.events_of(call)
    );
    assert_eq!(sim.switch.active_calls(), 0);
}

/// A queue step without a max wait (`max_wait_s = 0`) followed by an overflow: with no seat
/// it overflows at once (`no_seats`); the target refuses, the call goes back to its place,
/// and leaves again only after the 30 s overflow retry, never in a loop.
#[test]
fn failed_overflow_without_max_wait_retries_after_30_s() {
    let plan = r#"
[[routes]]
name = "line19"
steps = [
  { ring = 180 },
  { queue = { name = "line19", priority = 5 } },
  { overflow = { targets = [{ uri = "sip:19@127.0.0.4:5080", timeout_s = 10 }], then = "back-to-queue" } },
]
"#;
    let mut sim = Sim::with_plan(config(1), plan);
    let backup = add_target(&mut sim, "backup", [127, 0, 0, 4], None);
    sim.ua(backup).refuse = Some(503);
    let caller = sim.add_caller(1);
    sim.run(1_000);
    sim.ua(caller).invite();
    sim.run(30_000);
    let call = sim.calls()[0];
    let tries = |sim: &Sim| {
        sim.events_of(call)
            .iter()
            .filter(|e| e.starts_with("overflowed"))
            .count()
    };
    assert_eq!(tries(&sim), 1);
    assert_eq!(
        sim.ua(backup)
            .seen()
            .into_iter()
            .filter(|(_, m)| m == "INVITE")
            .map(|(t, _)| t)
            .collect::<Vec<_>>(),
        vec![1_020]
    );
    sim.run(33_000);
    assert_eq!(tries(&sim), 2, "{:?}", sim.events_of(call));
    let finals: Vec<String> = sim
        .ua(caller)
        .seen_names()
        .into_iter()
        .filter(|s| s.ends_with("INVITE") && !s.starts_with('1'))
        .collect();
    assert!(finals.is_empty(), "never a final failure: {finals:?}");
}
