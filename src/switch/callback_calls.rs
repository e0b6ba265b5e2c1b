//! Callbacks offered to free seats (issue 5, "Abandoned calls"; `[callbacks]
//! offer_to_seats`): the switch's side of [`super::originate`].
//!
//! Each open, unclaimed task ([`Switch::callback_open`]) enters its queue's ACD as a
//! pseudo-call with its own [`CallId`], at `[callbacks] priority` (ahead of new calls by
//! default). When the ACD offers it to a seat, the switch asks the relay for ports
//! ([`MediaCommand::Allocate`]) and runs an [`Originate`]: INVITE the seat with vigie's
//! offer on the relay's B side, then on its 2xx INVITE the caller at `dial_uri` with
//! vigie's offer on the A side, then bridge (RFC 3725 §4.1 flow I, relay-anchored). The ACD
//! sees the pseudo-call like a trunk call: `offer_ringing`, `offer_answered` on the seat's
//! 2xx, `offer_failed` when the seat does not answer (the task is offered again),
//! `call_ended` when the call is over (the seat goes to wrap-up).
//!
//! What becomes of the task goes to the edge as [`Output::Callback`]: closed `reached` on
//! the bridge; a busy or unanswered caller counts an attempt, and the task is offered
//! again after `retry_after_s` until `max_attempts` (the edge's
//! [`crate::acd::callback::CallbackBook::attempt_failed`] then closes it `no-answer`).
//!
//! Responses and in-dialog requests of these legs are routed here by SIP Call-ID, before
//! the trunk calls' own maps: the two never share state.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ulid::Ulid;

use super::dialog::Dialog;
use super::event::{CallEventKind, EndCause};
use super::originate::{
    DialTemplate, Leg, Originate, OriginateAction, OriginateOutcome, OriginateTimers, TaskResult,
};
use super::{ALLOW, LATE_OFFER_SDP, MediaCommand, MediaPorts, Output, Side, Switch};
use crate::acd::callback::{CallbackId, CallbackOutcome};
use crate::acd::{CallId, CallSpec, OfferFailure, SeatId};
use crate::config::CallbacksConfig;
use crate::sdp;
use crate::sip::message::{HeaderName, Method, Request, Response, SipHeaders};
use crate::sip::transaction::{ClientTxKey, ServerTxKey};
use crate::sip::uri::Uri;

/// `[callbacks]` as the switch uses it (only when `offer_to_seats`).
#[derive(Debug, Clone)]
pub(super) struct Settings {
    dial: DialTemplate,
    priority: u8,
    max_attempts: u32,
    retry_after: Duration,
    caller_ring: Duration,
}

impl Settings {
    /// `None` when callbacks are not offered to seats (or the template is invalid, which
    /// [`crate::config::Config::validate`] refuses first).
    pub(super) fn from_config(c: &CallbacksConfig) -> Option<Settings> {
        if !c.offer_to_seats {
            return None;
        }
        Some(Settings {
            dial: DialTemplate::parse(&c.dial_uri).ok()?,
            priority: c.priority,
            max_attempts: c.max_attempts.max(1),
            retry_after: Duration::from_secs(c.retry_after_s),
            caller_ring: Duration::from_secs(c.caller_ring_s.max(1)),
        })
    }
}

/// An open task the switch offers.
#[derive(Debug)]
struct Task {
    number: String,
    queue: String,
    attempts: u32,
    /// Its pseudo-call while in the ACD.
    call: Option<CallId>,
    /// When it enters the ACD again after a failed attempt.
    retry_at: Option<Instant>,
    /// Claimed or closed over the API while a run was going on.
    withdrawn: bool,
}

/// One leg vigie originated.
#[derive(Debug)]
struct OutLeg {
    dialog: Dialog,
    tx: ClientTxKey,
    invite_cseq: u32,
    answered: bool,
    ringing: bool,
    local_sdp: Bytes,
}

/// One originated callback in progress.
#[derive(Debug)]
struct Run {
    task: CallbackId,
    seat: SeatId,
    orig: Originate,
    media: Option<MediaPorts>,
    media_known: bool,
    seat_leg: Option<OutLeg>,
    caller_leg: Option<OutLeg>,
    /// The ACD counts the seat as on this call (its 2xx came).
    seat_on_call: bool,
    /// The task's result went to the edge.
    reported: bool,
}

/// The switch's state of callbacks offered to seats.
#[derive(Debug, Default)]
pub(super) struct CallbackCalls {
    settings: Option<Settings>,
    tasks: HashMap<CallbackId, Task>,
    by_call: HashMap<CallId, CallbackId>,
    runs: HashMap<CallId, Run>,
    by_sip: HashMap<String, (CallId, Leg)>,
    /// INVITEs withdrawn (CANCEL) after their run ended, by SIP Call-ID, until their final
    /// response: a 2xx that crossed the CANCEL gets ACK and BYE (RFC 3261 §9.1, §15).
    orphans: HashMap<String, OutLeg>,
}

impl CallbackCalls {
    pub(super) fn new(settings: Option<Settings>) -> CallbackCalls {
        CallbackCalls {
            settings,
            ..CallbackCalls::default()
        }
    }

    /// Whether `call` is a callback pseudo-call.
    pub(super) fn owns(&self, call: CallId) -> bool {
        self.by_call.contains_key(&call)
    }

    /// Whether `call` is a callback being originated (its relay ports are in use).
    pub(super) fn has_run(&self, call: CallId) -> bool {
        self.runs.contains_key(&call)
    }

    /// The next instant a callback needs the switch: a retry or a ring limit.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let retries = self.tasks.values().filter_map(|t| t.retry_at);
        let runs = self.runs.values().filter_map(|r| r.orig.poll_timeout());
        retries.chain(runs).min()
    }
}

impl Switch {
    /// An open, unclaimed callback task `task` (caller `number`, queue `queue`, `attempts`
    /// already failed) is offered to the next free seat of `queue` at `[callbacks]
    /// priority`. Does nothing unless `[callbacks] offer_to_seats`, when the task is
    /// already known, or when its attempts are used up.
    pub fn callback_open(
        &mut self,
        now: Instant,
        task: CallbackId,
        number: &str,
        queue: &str,
        attempts: u32,
    ) {
        let Some(max) = self.callbacks.settings.as_ref().map(|s| s.max_attempts) else {
            return;
        };
        if self.callbacks.tasks.contains_key(&task) || attempts >= max {
            return;
        }
        self.callbacks.tasks.insert(
            task,
            Task {
                number: number.to_owned(),
                queue: queue.to_owned(),
                attempts,
                call: None,
                retry_at: None,
                withdrawn: false,
            },
        );
        self.callback_enter(now, task);
        self.pump(now);
    }

    /// Task `task` was claimed or closed over the API: it leaves the ACD. A callback
    /// already ringing a seat or the caller goes on; its result is still reported.
    pub fn callback_withdraw(&mut self, now: Instant, task: CallbackId) {
        let Some(t) = self.callbacks.tasks.get_mut(&task) else {
            return;
        };
        t.withdrawn = true;
        let call = t.call;
        match call {
            Some(call) if self.callbacks.runs.contains_key(&call) => {}
            Some(call) => {
                self.callbacks.by_call.remove(&call);
                self.callbacks.tasks.remove(&task);
                self.acd.dequeue(now, call);
            }
            None => {
                self.callbacks.tasks.remove(&task);
            }
        }
        self.pump(now);
    }

    /// Whether open callback tasks are offered to seats (`[callbacks] offer_to_seats`).
    pub fn offers_callbacks(&self) -> bool {
        self.callbacks.settings.is_some()
    }

    /// Number of callback tasks the switch holds (waiting, ringing or waiting to retry).
    pub fn callbacks_pending(&self) -> usize {
        self.callbacks.tasks.len()
    }

    /// Puts task `task` in its queue as a new pseudo-call.
    fn callback_enter(&mut self, now: Instant, task: CallbackId) {
        let Some(priority) = self.callbacks.settings.as_ref().map(|s| s.priority) else {
            return;
        };
        let Some(t) = self.callbacks.tasks.get_mut(&task) else {
            return;
        };
        let call = Ulid::generate();
        t.call = Some(call);
        t.retry_at = None;
        let queue = t.queue.clone();
        let spec = CallSpec {
            priority,
            max_wait: None,
            overflows: false,
            overflow_retry: Duration::ZERO,
        };
        self.callbacks.by_call.insert(call, task);
        if let Err(e) = self.acd.enqueue_with(now, call, &queue, spec) {
            tracing::error!(callback = task, %queue, error = %e, "callback not queued");
            self.callbacks.by_call.remove(&call);
            self.callbacks.tasks.remove(&task);
            return;
        }
        tracing::info!(callback = task, %call, %queue, priority, "callback queued for a seat");
        // The journal and the metrics file the pseudo-call under its queue.
        self.emit(call, CallEventKind::Queued { queue });
    }

    /// The ACD offers pseudo-call `call` to `seat`: relay ports first, then the seat.
    pub(super) fn callback_offer(&mut self, now: Instant, call: CallId, seat: SeatId) {
        let Some(task) = self.callbacks.by_call.get(&call).copied() else {
            return;
        };
        if self.callbacks.runs.contains_key(&call) {
            // A ring-all queue offers one call to several seats: a callback rings one.
            self.acd
                .offer_failed(now, call, &seat, OfferFailure::Withdrawn);
            return;
        }
        let (Some(t), Some(s)) = (
            self.callbacks.tasks.get(&task),
            self.callbacks.settings.as_ref(),
        ) else {
            self.acd
                .offer_failed(now, call, &seat, OfferFailure::Withdrawn);
            return;
        };
        let seat_ring = self
            .acd
            .queue(&t.queue)
            .map(|q| q.ring_timeout)
            .unwrap_or(Duration::from_secs(15))
            // The ACD's ring timeout ([`Decision::RingTimeout`]) comes first.
            + Duration::from_secs(1);
        let timers = OriginateTimers {
            seat_ring,
            caller_ring: s.caller_ring,
        };
        match Originate::start(now, task, &seat, &t.number, &s.dial, timers) {
            Ok(orig) => {
                self.callbacks.runs.insert(
                    call,
                    Run {
                        task,
                        seat,
                        orig,
                        media: None,
                        media_known: false,
                        seat_leg: None,
                        caller_leg: None,
                        seat_on_call: false,
                        reported: false,
                    },
                );
                self.outputs
                    .push_back(Output::Media(MediaCommand::Allocate { call }));
            }
            Err(e) => {
                tracing::warn!(callback = task, error = %e, "callback number cannot be dialled");
                self.callbacks.by_call.remove(&call);
                self.acd.dequeue(now, call);
                self.acd
                    .offer_failed(now, call, &seat, OfferFailure::Withdrawn);
                self.callbacks.tasks.remove(&task);
                self.outputs.push_back(Output::Callback {
                    task,
                    result: TaskResult::Close(CallbackOutcome::Unreachable),
                });
            }
        }
    }

    /// The relay answered the Allocate of a callback; `false` when `call` is not one.
    pub(super) fn callback_media_ready(
        &mut self,
        now: Instant,
        call: CallId,
        ports: Option<MediaPorts>,
    ) -> bool {
        let Some(run) = self.callbacks.runs.get_mut(&call) else {
            return false;
        };
        run.media = ports;
        run.media_known = true;
        self.callback_drive(now, call);
        self.pump(now);
        true
    }

    /// The ACD's ring timeout for a callback's seat; `false` when `call` is not one.
    pub(super) fn callback_ring_timeout(&mut self, now: Instant, call: CallId) -> bool {
        if !self.callbacks.owns(call) {
            return false;
        }
        self.callback_seat_failed(now, call, OfferFailure::NoAnswer, None, true);
        true
    }

    /// Wakes callback retries and ring limits due at `now`.
    pub(super) fn callback_timers(&mut self, now: Instant) {
        let due: Vec<CallbackId> = self
            .callbacks
            .tasks
            .iter()
            .filter(|(_, t)| t.retry_at.is_some_and(|r| r <= now))
            .map(|(id, _)| *id)
            .collect();
        for task in due {
            self.callback_enter(now, task);
        }
        let runs: Vec<CallId> = self
            .callbacks
            .runs
            .iter()
            .filter(|(_, r)| r.orig.poll_timeout().is_some_and(|t| t <= now))
            .map(|(c, _)| *c)
            .collect();
        for call in runs {
            if let Some(r) = self.callbacks.runs.get_mut(&call) {
                r.orig.handle_timeout(now);
            }
            self.callback_drive(now, call);
        }
        self.pump(now);
    }

    /// A response on a callback leg; `false` when it is not one.
    pub(super) fn callback_response(
        &mut self,
        now: Instant,
        key: &ClientTxKey,
        resp: &Response,
    ) -> bool {
        let Some((call, leg)) = resp
            .call_id()
            .ok()
            .and_then(|cid| self.callbacks.by_sip.get(cid).copied())
        else {
            return self.callback_orphan_response(now, key, resp);
        };
        let is_invite = resp.cseq().is_ok_and(|c| c.method == Method::Invite);
        let Some(mut run) = self.callbacks.runs.remove(&call) else {
            return true;
        };
        let same_tx = match leg {
            Leg::Seat => run.seat_leg.as_ref(),
            Leg::Caller => run.caller_leg.as_ref(),
        }
        .is_some_and(|l| &l.tx == key);
        if !is_invite || !same_tx {
            self.callbacks.runs.insert(call, run);
            return true;
        }
        match resp.status {
            100 => {
                self.callbacks.runs.insert(call, run);
            }
            101..=199 => {
                let out = match leg {
                    Leg::Seat => run.seat_leg.as_mut(),
                    Leg::Caller => run.caller_leg.as_mut(),
                };
                let first = out.is_some_and(|l| !std::mem::replace(&mut l.ringing, true));
                if first && leg == Leg::Seat {
                    let seat = run.seat.clone();
                    self.acd.offer_ringing(now, call, &seat);
                    self.emit(call, CallEventKind::Ringing { seat });
                }
                self.callbacks.runs.insert(call, run);
            }
            200..=299 => {
                let out = match leg {
                    Leg::Seat => run.seat_leg.as_mut(),
                    Leg::Caller => run.caller_leg.as_mut(),
                };
                let mut first = false;
                if let Some(out) = out {
                    out.dialog.remote_tag = resp
                        .header_to()
                        .ok()
                        .and_then(|t| t.tag().map(str::to_owned));
                    if let Some(c) = resp.contacts().ok().and_then(|c| c.into_iter().next()) {
                        out.dialog.remote_target = c.uri;
                    }
                    first = !std::mem::replace(&mut out.answered, true);
                }
                let side = match leg {
                    Leg::Seat => Side::B,
                    Leg::Caller => Side::A,
                };
                let hint = sdp::anchor(
                    &resp.body,
                    SocketAddr::new(self.media_ip, 0),
                    &mut sdp::LocalOrigin::new(0),
                )
                .ok()
                .and_then(|a| a.peer);
                if first && let Some(addr) = hint {
                    self.outputs
                        .push_back(Output::Media(MediaCommand::PeerHint { call, side, addr }));
                }
                match leg {
                    Leg::Seat => {
                        if first {
                            let seat = run.seat.clone();
                            run.seat_on_call = true;
                            if !self.acd.offer_answered(now, call, &seat) {
                                tracing::warn!(%call, %seat, "callback seat answer refused by the ACD");
                            }
                            self.emit(call, CallEventKind::Answered { seat });
                        }
                        run.orig.seat_answered(now);
                    }
                    Leg::Caller => run.orig.caller_answered(),
                }
                self.callbacks.runs.insert(call, run);
                self.callback_drive(now, call);
            }
            status => {
                self.callbacks.runs.insert(call, run);
                match leg {
                    Leg::Seat => {
                        let why = match status {
                            487 => OfferFailure::NoAnswer,
                            408 => OfferFailure::Unreachable,
                            _ => OfferFailure::Declined,
                        };
                        self.callback_seat_failed(now, call, why, Some(status), false);
                    }
                    Leg::Caller => {
                        if let Some(r) = self.callbacks.runs.get_mut(&call) {
                            r.orig.caller_failed(Some(status));
                        }
                        self.callback_drive(now, call);
                    }
                }
            }
        }
        self.pump(now);
        true
    }

    /// A final response to a withdrawn callback INVITE; `false` when it is not one.
    fn callback_orphan_response(
        &mut self,
        now: Instant,
        key: &ClientTxKey,
        resp: &Response,
    ) -> bool {
        let Some(cid) = resp.call_id().ok() else {
            return false;
        };
        let same = self
            .callbacks
            .orphans
            .get(cid)
            .is_some_and(|l| &l.tx == key);
        if !same || resp.status < 200 {
            return same;
        }
        let Some(mut l) = self.callbacks.orphans.remove(cid) else {
            return true;
        };
        if resp.class() == 2 {
            l.dialog.remote_tag = resp
                .header_to()
                .ok()
                .and_then(|t| t.tag().map(str::to_owned));
            if let Some(c) = resp.contacts().ok().and_then(|c| c.into_iter().next()) {
                l.dialog.remote_target = c.uri;
            }
            self.callback_ack(Some(&l));
            self.callback_bye(now, Some(&mut l));
        }
        true
    }

    /// A retransmitted 2xx on an answered callback leg: ACK it again (RFC 3261
    /// §13.2.2.4); `false` when it is not one.
    pub(super) fn callback_stray_2xx(&mut self, resp: &Response) -> bool {
        let Some(cid) = resp.call_id().ok() else {
            return false;
        };
        let Some((call, leg)) = self.callbacks.by_sip.get(cid).copied() else {
            return false;
        };
        let ack = self
            .callbacks
            .runs
            .get(&call)
            .and_then(|r| match leg {
                Leg::Seat => r.seat_leg.as_ref(),
                Leg::Caller => r.caller_leg.as_ref(),
            })
            .filter(|l| l.answered)
            .map(|l| {
                (
                    l.dialog.peer,
                    l.dialog.ack(l.invite_cseq, &self.local, &self.user_agent),
                )
            });
        if let Some((peer, ack)) = ack {
            self.txn
                .send_stateless(peer, crate::sip::message::Message::Request(ack));
        }
        true
    }

    /// A client transaction of a callback leg timed out (Timer B/F, RFC 3261 §17.1).
    pub(super) fn callback_client_timeout(&mut self, now: Instant, key: &ClientTxKey) {
        self.callbacks.orphans.retain(|_, l| &l.tx != key);
        let found = self.callbacks.runs.iter().find_map(|(call, r)| {
            if r.seat_leg
                .as_ref()
                .is_some_and(|l| &l.tx == key && !l.answered)
            {
                Some((*call, Leg::Seat))
            } else if r
                .caller_leg
                .as_ref()
                .is_some_and(|l| &l.tx == key && !l.answered)
            {
                Some((*call, Leg::Caller))
            } else {
                None
            }
        });
        match found {
            Some((call, Leg::Seat)) => {
                self.callback_seat_failed(now, call, OfferFailure::Unreachable, None, false)
            }
            Some((call, Leg::Caller)) => {
                if let Some(r) = self.callbacks.runs.get_mut(&call) {
                    r.orig.caller_failed(None);
                }
                self.callback_drive(now, call);
            }
            None => {}
        }
    }

    /// An in-dialog request on a callback leg; `false` when it is not one.
    pub(super) fn callback_in_dialog(
        &mut self,
        now: Instant,
        key: &ServerTxKey,
        req: &Request,
    ) -> bool {
        let Some((call, leg)) = req
            .call_id()
            .ok()
            .and_then(|cid| self.callbacks.by_sip.get(cid).copied())
        else {
            return false;
        };
        let mut r = self.response_to(req, 200, "OK", None);
        if req.method == Method::Invite || req.method == Method::Update {
            let sdp = self.callbacks.runs.get(&call).and_then(|run| match leg {
                Leg::Seat => run.seat_leg.as_ref().map(|l| l.local_sdp.clone()),
                Leg::Caller => run.caller_leg.as_ref().map(|l| l.local_sdp.clone()),
            });
            if let Some(peer) = self.callbacks.runs.get(&call).and_then(|run| match leg {
                Leg::Seat => run.seat_leg.as_ref().map(|l| l.dialog.peer),
                Leg::Caller => run.caller_leg.as_ref().map(|l| l.dialog.peer),
            }) {
                r.headers
                    .push(HeaderName::Contact, self.local.contact(&peer));
            }
            if let Some(sdp) = sdp.filter(|_| super::has_sdp_offer(req)) {
                r.headers.push(HeaderName::ContentType, "application/sdp");
                r.body = sdp;
            }
        }
        self.respond(now, key, r);
        if req.method == Method::Bye {
            if let Some(run) = self.callbacks.runs.get_mut(&call) {
                match leg {
                    Leg::Seat => run.seat_leg = None,
                    Leg::Caller => run.caller_leg = None,
                }
                run.orig.hung_up(leg);
            }
            let cause = match leg {
                Leg::Seat => EndCause::AgentHangup,
                Leg::Caller => EndCause::CallerHangup,
            };
            self.callback_drive_with(now, call, Some(cause));
            self.pump(now);
        }
        true
    }

    /// The seat did not take the callback (declined, rang out, unreachable): the ACD
    /// offers the pseudo-call again (no attempt counted). `cancel`: CANCEL the seat's
    /// INVITE first (ring timeout).
    fn callback_seat_failed(
        &mut self,
        now: Instant,
        call: CallId,
        why: OfferFailure,
        status: Option<u16>,
        cancel: bool,
    ) {
        let Some(mut run) = self.callbacks.runs.remove(&call) else {
            return;
        };
        if let Some(l) = run.seat_leg.take() {
            self.callbacks.by_sip.remove(&l.dialog.call_id);
            if cancel {
                if let Err(e) = self.txn.cancel(now, &l.tx) {
                    tracing::debug!(%call, error = %e, "callback CANCEL not sent");
                }
                self.callbacks.orphans.insert(l.dialog.call_id.clone(), l);
            }
        }
        run.orig.seat_failed();
        if run.media.is_some() {
            self.outputs
                .push_back(Output::Media(MediaCommand::Release { call }));
        }
        self.emit(
            call,
            CallEventKind::SeatFailed {
                seat: run.seat.clone(),
                status,
                reason: match why {
                    OfferFailure::NoAnswer => "no_answer",
                    OfferFailure::Unreachable => "unreachable",
                    _ => "declined",
                },
            },
        );
        let withdrawn = self
            .callbacks
            .tasks
            .get(&run.task)
            .is_none_or(|t| t.withdrawn);
        if withdrawn {
            self.callbacks.by_call.remove(&call);
            self.callbacks.tasks.remove(&run.task);
            self.acd.dequeue(now, call);
        }
        self.acd.offer_failed(now, call, &run.seat, why);
        self.pump(now);
    }

    fn callback_drive(&mut self, now: Instant, call: CallId) {
        self.callback_drive_with(now, call, None);
    }

    /// Sends what the run's machine asks, then settles its outcome.
    fn callback_drive_with(&mut self, now: Instant, call: CallId, cause: Option<EndCause>) {
        let Some(mut run) = self.callbacks.runs.remove(&call) else {
            return;
        };
        if !run.media_known {
            self.callbacks.runs.insert(call, run);
            return;
        }
        while let Some(action) = run.orig.poll_action() {
            match action {
                OriginateAction::InviteSeat {
                    seat,
                    display,
                    call_info,
                } => {
                    let sent =
                        self.callback_invite_seat(now, call, &mut run, &seat, &display, &call_info);
                    if sent {
                        self.emit(call, CallEventKind::Offered { seat });
                    } else {
                        self.callbacks.runs.insert(call, run);
                        self.callback_seat_failed(
                            now,
                            call,
                            OfferFailure::Unreachable,
                            None,
                            false,
                        );
                        return;
                    }
                }
                OriginateAction::AckSeat => self.callback_ack(run.seat_leg.as_ref()),
                OriginateAction::AckCaller => self.callback_ack(run.caller_leg.as_ref()),
                OriginateAction::InviteCaller { uri } => {
                    if !self.callback_invite_caller(now, call, &mut run, &uri) {
                        run.orig.caller_failed(None);
                    }
                }
                OriginateAction::Bridge => {
                    tracing::info!(%call, callback = run.task, "callback bridged");
                }
                OriginateAction::CancelSeat => {
                    if let Some(l) = &run.seat_leg {
                        let _ = self.txn.cancel(now, &l.tx);
                    }
                }
                OriginateAction::CancelCaller => {
                    if let Some(l) = &run.caller_leg {
                        let _ = self.txn.cancel(now, &l.tx);
                    }
                }
                OriginateAction::ByeSeat => self.callback_bye(now, run.seat_leg.as_mut()),
                OriginateAction::ByeCaller => self.callback_bye(now, run.caller_leg.as_mut()),
            }
        }
        if !run.reported
            && let Some(outcome) = run.orig.outcome()
        {
            run.reported = true;
            self.callback_settle(now, call, &run, outcome);
        }
        let over = run.orig.is_over()
            || run
                .orig
                .outcome()
                .is_some_and(|o| o != OriginateOutcome::Reached);
        if over {
            if run.seat_on_call {
                self.acd.call_ended(now, call);
            }
            if run.media.is_some() {
                self.outputs
                    .push_back(Output::Media(MediaCommand::Release { call }));
            }
            for l in [run.seat_leg.take(), run.caller_leg.take()]
                .into_iter()
                .flatten()
            {
                self.callbacks.by_sip.remove(&l.dialog.call_id);
                if !l.answered {
                    // CANCELled: its final response may still be a crossing 2xx.
                    self.callbacks.orphans.insert(l.dialog.call_id.clone(), l);
                }
            }
            if run.seat_on_call || run.orig.outcome() == Some(OriginateOutcome::Reached) {
                self.emit(
                    call,
                    CallEventKind::Ended {
                        cause: cause.unwrap_or(EndCause::AgentHangup),
                    },
                );
            }
            self.callbacks.by_call.remove(&call);
            if run.orig.outcome() == Some(OriginateOutcome::SeatUnavailable) {
                // The seat answered then hung up before the caller did: offer the task again.
                let task = run.task;
                if self
                    .callbacks
                    .tasks
                    .get(&task)
                    .is_some_and(|t| !t.withdrawn)
                {
                    self.callback_enter(now, task);
                } else {
                    self.callbacks.tasks.remove(&task);
                }
            }
        } else {
            self.callbacks.runs.insert(call, run);
        }
    }

    /// What becomes of the task once the run has an outcome.
    fn callback_settle(
        &mut self,
        now: Instant,
        call: CallId,
        run: &Run,
        outcome: OriginateOutcome,
    ) {
        let task = run.task;
        let result = outcome.task_result();
        match result {
            TaskResult::Close(_) => {
                self.callbacks.tasks.remove(&task);
            }
            TaskResult::AttemptFailed => {
                let (retry_after, max) = self
                    .callbacks
                    .settings
                    .as_ref()
                    .map(|s| (s.retry_after, s.max_attempts))
                    .unwrap_or((Duration::ZERO, 1));
                let keep = match self.callbacks.tasks.get_mut(&task) {
                    Some(t) if !t.withdrawn => {
                        t.attempts = t.attempts.saturating_add(1);
                        t.call = None;
                        t.retry_at = Some(now + retry_after);
                        t.attempts < max
                    }
                    _ => false,
                };
                if !keep {
                    let withdrawn = self
                        .callbacks
                        .tasks
                        .remove(&task)
                        .is_none_or(|t| t.withdrawn);
                    if withdrawn {
                        // Claimed or closed over the API meanwhile: the seat that claimed
                        // it keeps it; no attempt is counted on its behalf.
                        return;
                    }
                }
            }
            TaskResult::Requeue => return,
        }
        tracing::info!(%call, callback = task, ?outcome, "callback outcome");
        self.outputs.push_back(Output::Callback { task, result });
    }

    fn callback_invite_seat(
        &mut self,
        now: Instant,
        call: CallId,
        run: &mut Run,
        seat: &str,
        display: &str,
        call_info: &str,
    ) -> bool {
        let Some(binding) = self.registrar.lookup(seat).into_iter().next() else {
            return false;
        };
        let Some(peer) = super::seat_peer(&binding) else {
            return false;
        };
        let number = self
            .callbacks
            .tasks
            .get(&run.task)
            .map(|t| t.number.clone())
            .unwrap_or_default();
        let local_uri = format!(
            "\"{}\" <sip:{}@{}>",
            display.replace('"', "'"),
            number,
            self.local.host
        );
        let to = format!("<sip:{}@{}>", seat, self.local.host);
        let port = run.media.map(|m| m.b).unwrap_or(0);
        match self.callback_invite(
            now,
            call,
            peer,
            binding.contact,
            local_uri,
            to,
            port,
            Some(call_info),
        ) {
            Some(leg) => {
                self.callbacks
                    .by_sip
                    .insert(leg.dialog.call_id.clone(), (call, Leg::Seat));
                run.seat_leg = Some(leg);
                true
            }
            None => false,
        }
    }

    fn callback_invite_caller(
        &mut self,
        now: Instant,
        call: CallId,
        run: &mut Run,
        uri: &str,
    ) -> bool {
        let Some(ruri) = Uri::parse(uri).ok() else {
            return false;
        };
        let Some(peer) = super::contact_peer(&ruri, None) else {
            return false;
        };
        let local_uri = format!("<sip:{}>", self.local.host);
        let to = format!("<{uri}>");
        let port = run.media.map(|m| m.a).unwrap_or(0);
        match self.callback_invite(now, call, peer, ruri, local_uri, to, port, None) {
            Some(leg) => {
                self.callbacks
                    .by_sip
                    .insert(leg.dialog.call_id.clone(), (call, Leg::Caller));
                run.caller_leg = Some(leg);
                true
            }
            None => false,
        }
    }

    /// Sends an INVITE carrying vigie's own SDP offer on relay port `port`.
    #[allow(clippy::too_many_arguments)]
    fn callback_invite(
        &mut self,
        now: Instant,
        call: CallId,
        peer: crate::sip::transport::Peer,
        ruri: Uri,
        local_uri: String,
        to: String,
        port: u16,
        call_info: Option<&str>,
    ) -> Option<OutLeg> {
        let relay = SocketAddr::new(self.media_ip, port);
        let sdp = sdp::anchor(LATE_OFFER_SDP, relay, &mut sdp::LocalOrigin::new(0))
            .ok()?
            .sdp;
        let (dialog, mut invite) = self.out_invite(call, local_uri, to, ruri, peer);
        if let Some(info) = call_info {
            invite
                .headers
                .push(HeaderName::Other("Call-Info".into()), info.to_owned());
        }
        invite.headers.push(
            HeaderName::Other("X-Vigie-Call-ID".into()),
            call.to_string(),
        );
        invite.headers.push(HeaderName::Allow, ALLOW);
        invite
            .headers
            .push(HeaderName::ContentType, "application/sdp");
        invite.body = sdp.clone();
        let cseq = dialog.local_cseq;
        match self.txn.send_request(now, peer, invite) {
            Ok(tx) => Some(OutLeg {
                dialog,
                tx,
                invite_cseq: cseq,
                answered: false,
                ringing: false,
                local_sdp: sdp,
            }),
            Err(e) => {
                tracing::error!(%call, error = %e, "callback INVITE refused by the transaction layer");
                None
            }
        }
    }

    fn callback_ack(&mut self, leg: Option<&OutLeg>) {
        if let Some(l) = leg {
            let ack = l.dialog.ack(l.invite_cseq, &self.local, &self.user_agent);
            self.txn
                .send_stateless(l.dialog.peer, crate::sip::message::Message::Request(ack));
        }
    }

    fn callback_bye(&mut self, now: Instant, leg: Option<&mut OutLeg>) {
        if let Some(l) = leg {
            let bye = l.dialog.request(Method::Bye, &self.local, &self.user_agent);
            if let Err(e) = self.txn.send_request(now, l.dialog.peer, bye) {
                tracing::error!(error = %e, "callback BYE not sent");
            }
        }
    }
}
