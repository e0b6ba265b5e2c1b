//! One agent seat: the person's *status* and the switch's *state*, as two dimensions of
//! one sans-IO state machine owned by the [`Acd`](super::Acd) (DESIGN §2).
//!
//! - [`Status`] is chosen by the call-taker (or the supervisor): logged out, available,
//!   on break with a reason code (`meal`, `training`, `debrief`, `no-answer`, …).
//! - [`SeatState`] is set by the switch: idle, reserved (offer decided, INVITE sent),
//!   ringing (the phone alerts, RFC 3261 §21.1.2 `180`), on call, wrap-up.
//!
//! A seat is offered a call only when it is [`Status::Available`], [`SeatState::Idle`],
//! registered and reachable ([`Seat::offerable`]). A status change asked for while the seat
//! is busy (reserved, ringing, on call, wrap-up) is *pending* and takes effect when the seat
//! next becomes idle: a pause during a call puts the seat on break after its wrap-up.
//!
//! Every transition that changes something returns a [`SeatEvent`] for the journal
//! (`agent_events`), the live view and the metrics. Reservations carry a deadline and end
//! on their own ([`Seat::expire`]), so no race leaves a seat "reserved" for ever.

use std::time::{Duration, Instant};

use super::{CallId, SeatId};

/// How long a seat stays reserved after its ring timeout fired while the switch withdraws
/// the offer (CANCEL, RFC 3261 §9.1) and waits for the INVITE's final response: longer than
/// the INVITE client transaction's Timer B (64·T1 = 32 s, RFC 3261 §17.1.1.2), after which
/// the switch has reported the outcome in every case. Past it the ACD frees the seat itself.
pub const WITHDRAW_GRACE: Duration = Duration::from_secs(40);

/// Break reason given when the no-answer policy pauses a seat.
pub const NO_ANSWER: &str = "no-answer";

/// The status the call-taker chose (the "person" dimension of a seat).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// Not working: no call is offered; a call in progress finishes first.
    LoggedOut,
    /// Ready for calls.
    Available,
    /// Logged in but paused, with a reason code (`meal`, `training`, `debrief`,
    /// [`NO_ANSWER`], …; lower-case ASCII letters, digits and `-`, at most 32 octets).
    OnBreak {
        /// The reason code.
        reason: String,
    },
}

impl Status {
    /// Label for the API, metrics and the journal: `logged_out`, `available`, `on_break`.
    pub fn label(&self) -> &'static str {
        match self {
            Status::LoggedOut => "logged_out",
            Status::Available => "available",
            Status::OnBreak { .. } => "on_break",
        }
    }

    /// The break reason code, when on break.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Status::OnBreak { reason } => Some(reason),
            _ => None,
        }
    }
}

/// A break reason code is 1–32 octets of `a-z`, `0-9`, `-`.
pub fn valid_reason(reason: &str) -> bool {
    (1..=32).contains(&reason.len())
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The switch-side state of a seat (the "work" dimension).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SeatState {
    /// Not logged in (or unregistered) and no call in progress.
    LoggedOut,
    /// Free since the given instant.
    Idle {
        /// When the seat last became free (login or end of wrap-up).
        since: Instant,
    },
    /// Offered a call: INVITE sent, no provisional response yet.
    Reserved {
        /// The call offered.
        call: CallId,
        /// When the reservation ends: the ring timeout (offer instant + ring timeout),
        /// then, once it has fired, [`WITHDRAW_GRACE`] later.
        until: Instant,
    },
    /// The seat's phone alerts (`180`/`183` received).
    Ringing {
        /// The call offered.
        call: CallId,
        /// As for [`SeatState::Reserved`]: ring timeout, then [`WITHDRAW_GRACE`] later.
        deadline: Instant,
    },
    /// Talking.
    OnCall {
        /// The connected call.
        call: CallId,
    },
    /// Wrap-up after a call, until the instant.
    WrapUp {
        /// When wrap-up ends (call end + wrap-up of the seat or queue).
        until: Instant,
    },
}

impl SeatState {
    /// Label value for metrics and the API.
    pub fn label(&self) -> &'static str {
        match self {
            SeatState::LoggedOut => "logged_out",
            SeatState::Idle { .. } => "idle",
            SeatState::Reserved { .. } => "reserved",
            SeatState::Ringing { .. } => "ringing",
            SeatState::OnCall { .. } => "on_call",
            SeatState::WrapUp { .. } => "wrap_up",
        }
    }

    /// The call this state holds the seat for (reserved, ringing, on call).
    pub fn call(&self) -> Option<CallId> {
        match self {
            SeatState::Reserved { call, .. }
            | SeatState::Ringing { call, .. }
            | SeatState::OnCall { call } => Some(*call),
            _ => None,
        }
    }

    /// The reservation deadline, when reserved or ringing.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            SeatState::Reserved { until, .. } => Some(*until),
            SeatState::Ringing { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }
}

/// Why a seat changed; written with the change to the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// The call-taker or supervisor asked (HTTP API).
    Api,
    /// A SIP feature code dialled from the seat (`*21`…`*24`).
    FeatureCode,
    /// The seat gained its first registered contact (RFC 3261 §10.3).
    Registered,
    /// The seat's last registered contact expired or was removed.
    Unregistered,
    /// The ACD offered the seat a call.
    Offered,
    /// The seat's phone alerts.
    Alerting,
    /// The seat answered.
    Answered,
    /// The offer ended without an answer (declined, no answer, unreachable, withdrawn).
    OfferEnded,
    /// The reservation passed its deadline and the ACD freed the seat itself.
    ReservationExpired,
    /// The call ended.
    CallEnded,
    /// Wrap-up ended.
    WrapUpEnded,
    /// The no-answer policy paused the seat after consecutive unanswered offers.
    NoAnswerPolicy,
    /// A status change asked for while busy took effect.
    PendingApplied,
    /// OPTIONS keep-alive (qualify) found the seat unreachable, or reachable again.
    Qualify,
}

impl Cause {
    /// Label for the journal and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Api => "api",
            Cause::FeatureCode => "feature_code",
            Cause::Registered => "registered",
            Cause::Unregistered => "unregistered",
            Cause::Offered => "offered",
            Cause::Alerting => "alerting",
            Cause::Answered => "answered",
            Cause::OfferEnded => "offer_ended",
            Cause::ReservationExpired => "reservation_expired",
            Cause::CallEnded => "call_ended",
            Cause::WrapUpEnded => "wrap_up_ended",
            Cause::NoAnswerPolicy => "no_answer_policy",
            Cause::PendingApplied => "pending_applied",
            Cause::Qualify => "qualify",
        }
    }
}

/// One change of a seat, as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatEvent {
    /// The seat.
    pub seat: SeatId,
    /// When (the `now` of the transition).
    pub at: Instant,
    /// Status after the change.
    pub status: Status,
    /// State after the change.
    pub state: SeatState,
    /// A status change waiting for the seat to become idle, if any.
    pub pending: Option<Status>,
    /// Registered (at least one binding).
    pub registered: bool,
    /// Reachable (answers OPTIONS keep-alives).
    pub reachable: bool,
    /// Why.
    pub cause: Cause,
    /// The call concerned, if any.
    pub call: Option<CallId>,
}

/// What the person or the supervisor can ask of a seat.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Log in: status becomes available.
    Login,
    /// Log out: no new offer; a call in progress finishes first.
    Logout,
    /// Pause with a reason code ([`valid_reason`]).
    Pause {
        /// The break reason code.
        reason: String,
    },
    /// End a pause: available again.
    Unpause,
}

/// Why a [`Command`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No seat has this id.
    #[error("no seat {0:?}")]
    UnknownSeat(String),
    /// The break reason is not 1–32 octets of `a-z0-9-`.
    #[error("invalid break reason {0:?}")]
    InvalidReason(String),
    /// Unpause of a seat that is not on break (nor going on break).
    #[error("seat is not on break")]
    NotOnBreak,
    /// Pause or unpause of a logged-out seat.
    #[error("seat is logged out")]
    LoggedOut,
}

/// One seat: status, state and the facts that decide whether it is offered calls.
#[derive(Debug, Clone)]
pub struct Seat {
    id: SeatId,
    status: Status,
    state: SeatState,
    pending: Option<Status>,
    registered: bool,
    reachable: bool,
    /// Consecutive offers ended by the ring timeout.
    no_answer_streak: u32,
    /// Wrap-up of this seat, overriding its queue's.
    wrap_up: Option<Duration>,
    /// Set to the hard end of the reservation once the ring timeout fired.
    withdraw_marker: Option<Instant>,
    /// While reserved or ringing: when the seat had become idle before the offer, restored
    /// when the ACD withdraws the offer ([`Seat::offer_withdrawn`]).
    idle_before: Option<Instant>,
}

impl Seat {
    /// A seat logged out, unregistered, reachable, with an optional wrap-up override.
    pub fn new(id: SeatId, wrap_up: Option<Duration>) -> Seat {
        Seat {
            id,
            status: Status::LoggedOut,
            state: SeatState::LoggedOut,
            pending: None,
            registered: false,
            reachable: true,
            no_answer_streak: 0,
            wrap_up,
            withdraw_marker: None,
            idle_before: None,
        }
    }

    /// The seat id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The person's status.
    pub fn status(&self) -> &Status {
        &self.status
    }
    /// The switch's state.
    pub fn state(&self) -> &SeatState {
        &self.state
    }
    /// A status change that takes effect when the seat next becomes idle.
    pub fn pending(&self) -> Option<&Status> {
        self.pending.as_ref()
    }
    /// At least one registered contact.
    pub fn registered(&self) -> bool {
        self.registered
    }
    /// Answers OPTIONS keep-alives (or was never probed).
    pub fn reachable(&self) -> bool {
        self.reachable
    }
    /// Consecutive offers that rang out unanswered.
    pub fn no_answer_streak(&self) -> u32 {
        self.no_answer_streak
    }
    /// The seat's own wrap-up, overriding its queue's.
    pub fn wrap_up(&self) -> Option<Duration> {
        self.wrap_up
    }

    /// The seat may be offered a call now.
    pub fn offerable(&self) -> bool {
        self.registered
            && self.reachable
            && self.status == Status::Available
            && matches!(self.state, SeatState::Idle { .. })
    }

    fn event(&self, at: Instant, cause: Cause, call: Option<CallId>) -> SeatEvent {
        SeatEvent {
            seat: self.id.clone(),
            at,
            status: self.status.clone(),
            state: self.state.clone(),
            pending: self.pending.clone(),
            registered: self.registered,
            reachable: self.reachable,
            cause,
            call,
        }
    }

    fn busy(&self) -> bool {
        !matches!(self.state, SeatState::Idle { .. } | SeatState::LoggedOut)
    }

    /// Sets the status and the matching idle/logged-out state of a seat that is not busy.
    fn settle(&mut self, now: Instant, status: Status) {
        self.state = match (&status, self.registered) {
            (Status::LoggedOut, _) | (_, false) => SeatState::LoggedOut,
            _ => match self.state {
                SeatState::Idle { since } => SeatState::Idle { since },
                _ => SeatState::Idle { since: now },
            },
        };
        self.status = if self.registered {
            status
        } else {
            Status::LoggedOut
        };
    }

    /// Applies a person's [`Command`]; busy seats get it as pending.
    ///
    /// # Errors
    /// [`CommandError::InvalidReason`], [`CommandError::NotOnBreak`],
    /// [`CommandError::LoggedOut`].
    pub fn command(
        &mut self,
        now: Instant,
        cmd: Command,
        cause: Cause,
    ) -> Result<Option<SeatEvent>, CommandError> {
        let effective = self.pending.clone().unwrap_or_else(|| self.status.clone());
        let target = match cmd {
            Command::Login => Status::Available,
            Command::Logout => Status::LoggedOut,
            Command::Pause { reason } => {
                if !valid_reason(&reason) {
                    return Err(CommandError::InvalidReason(reason));
                }
                if effective == Status::LoggedOut {
                    return Err(CommandError::LoggedOut);
                }
                Status::OnBreak { reason }
            }
            Command::Unpause => match effective {
                Status::OnBreak { .. } => Status::Available,
                Status::LoggedOut => return Err(CommandError::LoggedOut),
                Status::Available => return Err(CommandError::NotOnBreak),
            },
        };
        if target == Status::Available {
            self.no_answer_streak = 0;
        }
        if self.busy() {
            let pending = (target != self.status).then_some(target);
            if pending == self.pending {
                return Ok(None);
            }
            self.pending = pending;
            return Ok(Some(self.event(now, cause, self.state.call())));
        }
        if target == self.status && self.pending.is_none() {
            return Ok(None);
        }
        self.pending = None;
        let before = (self.status.clone(), self.state.clone());
        self.settle(now, target);
        if before == (self.status.clone(), self.state.clone()) {
            return Ok(None);
        }
        Ok(Some(self.event(now, cause, None)))
    }

    /// The seat gained its first binding. With `login`, a logged-out seat logs in
    /// (status available); otherwise it stays as it was until a login.
    pub fn registered_now(&mut self, now: Instant, login: bool) -> Option<SeatEvent> {
        if self.registered {
            return None;
        }
        self.registered = true;
        self.reachable = true;
        if self.busy() {
            // Back before the call ended: the logout the unregistration left pending is void.
            if login && self.pending == Some(Status::LoggedOut) && self.status != Status::LoggedOut
            {
                self.pending = None;
            }
        } else {
            let status = if login && self.status == Status::LoggedOut {
                Status::Available
            } else {
                self.status.clone()
            };
            self.settle(now, status);
        }
        Some(self.event(now, Cause::Registered, None))
    }

    /// The seat's last binding went away: it is logged out; a call in progress goes on
    /// and the seat is logged out when it ends (no wrap-up).
    pub fn unregistered_now(&mut self, now: Instant) -> Option<SeatEvent> {
        if !self.registered {
            return None;
        }
        self.registered = false;
        if self.busy() {
            self.pending = Some(Status::LoggedOut);
            if let SeatState::WrapUp { .. } = self.state {
                self.pending = None;
                self.settle(now, Status::LoggedOut);
            }
        } else {
            self.pending = None;
            self.settle(now, Status::LoggedOut);
        }
        Some(self.event(now, Cause::Unregistered, self.state.call()))
    }

    /// Qualify result: `false` when the seat did not answer an OPTIONS keep-alive within
    /// the transaction timeout, `true` on the next answer.
    pub fn set_reachable(&mut self, now: Instant, reachable: bool) -> Option<SeatEvent> {
        if self.reachable == reachable {
            return None;
        }
        self.reachable = reachable;
        Some(self.event(now, Cause::Qualify, None))
    }

    /// The ACD offers `call`: reserved until `ring_deadline`. Only for an
    /// [`Seat::offerable`] seat; returns `None` (and changes nothing) otherwise.
    pub fn reserve(
        &mut self,
        now: Instant,
        call: CallId,
        ring_deadline: Instant,
    ) -> Option<SeatEvent> {
        if !self.offerable() {
            return None;
        }
        self.idle_before = match self.state {
            SeatState::Idle { since } => Some(since),
            _ => None,
        };
        self.state = SeatState::Reserved {
            call,
            until: ring_deadline,
        };
        Some(self.event(now, Cause::Offered, Some(call)))
    }

    /// The seat's phone alerts for `call` (a provisional response above 100).
    pub fn alerting(&mut self, now: Instant, call: CallId) -> Option<SeatEvent> {
        match self.state {
            SeatState::Reserved { call: c, until } if c == call => {
                self.state = SeatState::Ringing {
                    call,
                    deadline: until,
                };
                Some(self.event(now, Cause::Alerting, Some(call)))
            }
            _ => None,
        }
    }

    /// The seat answered `call`. Accepted when the seat was reserved or ringing for it,
    /// or idle (a late 2xx after the reservation expired: the phone *is* talking). Refused
    /// (`Err(())`, nothing changed) when the seat is on another call: a seat is never in
    /// two calls; the switch must hang that answer up.
    #[allow(clippy::result_unit_err)]
    pub fn answered(&mut self, now: Instant, call: CallId) -> Result<Option<SeatEvent>, ()> {
        match self.state {
            SeatState::OnCall { call: c } if c == call => Ok(None),
            SeatState::Reserved { call: c, .. } | SeatState::Ringing { call: c, .. }
                if c == call =>
            {
                self.no_answer_streak = 0;
                self.state = SeatState::OnCall { call };
                Ok(Some(self.event(now, Cause::Answered, Some(call))))
            }
            SeatState::Idle { .. } | SeatState::LoggedOut | SeatState::WrapUp { .. } => {
                self.no_answer_streak = 0;
                self.state = SeatState::OnCall { call };
                Ok(Some(self.event(now, Cause::Answered, Some(call))))
            }
            _ => Err(()),
        }
    }

    /// The offer of `call` ended without an answer: the seat is free (or takes its
    /// pending status). `no_answer` counts towards the no-answer policy: after
    /// `no_answer_limit` consecutive ones (0 = never) the seat goes on break
    /// [`NO_ANSWER`]. Returns the events (freeing, then the policy's pause).
    pub fn offer_ended(
        &mut self,
        now: Instant,
        call: CallId,
        no_answer: bool,
        no_answer_limit: u32,
        cause: Cause,
    ) -> Vec<SeatEvent> {
        let holds = matches!(self.state,
            SeatState::Reserved { call: c, .. } | SeatState::Ringing { call: c, .. } if c == call);
        if !holds {
            return Vec::new();
        }
        let mut out = vec![self.free(now, cause, Some(call))];
        if no_answer {
            self.no_answer_streak = self.no_answer_streak.saturating_add(1);
            if no_answer_limit > 0
                && self.no_answer_streak >= no_answer_limit
                && self.status == Status::Available
            {
                self.settle(
                    now,
                    Status::OnBreak {
                        reason: NO_ANSWER.to_owned(),
                    },
                );
                out.push(self.event(now, Cause::NoAnswerPolicy, Some(call)));
            }
        }
        out
    }

    /// The ACD withdrew the offer of `call` because another seat answered it first
    /// (ring-all): the seat stays reserved, but its ring timeout no longer fires; it is
    /// freed by [`Seat::offer_withdrawn`] or, failing that, [`WITHDRAW_GRACE`] after `now`.
    /// Returns whether the seat held the call.
    pub fn withdraw(&mut self, now: Instant, call: CallId) -> bool {
        let next = now + WITHDRAW_GRACE;
        match self.state {
            SeatState::Reserved { call: c, .. } if c == call => {
                self.state = SeatState::Reserved { call, until: next };
            }
            SeatState::Ringing { call: c, .. } if c == call => {
                self.state = SeatState::Ringing {
                    call,
                    deadline: next,
                };
            }
            _ => return false,
        }
        self.withdraw_marker = Some(next);
        true
    }

    /// The withdrawn offer of `call` ended (the seat's INVITE was CANCELled): the seat is
    /// free again *at its former idle position* (it did nothing wrong), not counted as an
    /// unanswered offer. `None` when the seat did not hold the call.
    pub fn offer_withdrawn(&mut self, now: Instant, call: CallId) -> Option<SeatEvent> {
        let holds = matches!(self.state,
            SeatState::Reserved { call: c, .. } | SeatState::Ringing { call: c, .. } if c == call);
        if !holds {
            return None;
        }
        let before = self.idle_before.take();
        let mut ev = self.free(now, Cause::OfferEnded, Some(call));
        if let (SeatState::Idle { since }, Some(b)) = (&mut self.state, before) {
            *since = b;
            ev.state = self.state.clone();
        }
        Some(ev)
    }

    /// The call the seat talked on ended: wrap-up for `wrap_up` (the seat's own wrap-up
    /// wins over the queue's), or straight to idle / pending status; an unregistered seat
    /// is logged out at once.
    pub fn call_ended(
        &mut self,
        now: Instant,
        call: CallId,
        queue_wrap_up: Duration,
    ) -> Option<SeatEvent> {
        if self.state != (SeatState::OnCall { call }) {
            return None;
        }
        let wrap_up = self.wrap_up.unwrap_or(queue_wrap_up);
        if self.registered && !wrap_up.is_zero() {
            self.state = SeatState::WrapUp {
                until: now + wrap_up,
            };
            return Some(self.event(now, Cause::CallEnded, Some(call)));
        }
        Some(self.free(now, Cause::CallEnded, Some(call)))
    }

    /// Runs the seat's deadlines at `now`: the end of wrap-up, the ring timeout (returns
    /// `RingTimeout(call)` once, the seat staying reserved [`WITHDRAW_GRACE`] more), and
    /// the reservation's hard end (the seat is freed: `Expired(call)`).
    pub fn expire(&mut self, now: Instant) -> (Option<Expiry>, Option<SeatEvent>) {
        match self.state {
            SeatState::WrapUp { until } if until <= now => {
                (None, Some(self.free(now, Cause::WrapUpEnded, None)))
            }
            SeatState::Reserved { call, until }
            | SeatState::Ringing {
                call,
                deadline: until,
            } if until <= now => {
                if self.withdrawing_since(until) {
                    let ev = self.free(now, Cause::ReservationExpired, Some(call));
                    (Some(Expiry::Expired(call)), Some(ev))
                } else {
                    let next = now + WITHDRAW_GRACE;
                    self.state = match self.state {
                        SeatState::Reserved { .. } => SeatState::Reserved { call, until: next },
                        _ => SeatState::Ringing {
                            call,
                            deadline: next,
                        },
                    };
                    self.withdraw_marker = Some(next);
                    (Some(Expiry::RingTimeout(call)), None)
                }
            }
            _ => (None, None),
        }
    }

    fn withdrawing_since(&self, until: Instant) -> bool {
        self.withdraw_marker == Some(until)
    }

    /// Frees a busy seat: idle, or its pending status.
    fn free(&mut self, now: Instant, cause: Cause, call: Option<CallId>) -> SeatEvent {
        self.withdraw_marker = None;
        self.idle_before = None;
        let status = self.pending.take().unwrap_or_else(|| self.status.clone());
        self.state = SeatState::Idle { since: now };
        self.settle(now, status);
        self.event(now, cause, call)
    }
}

/// What a seat's deadline produced ([`Seat::expire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The ring timeout: the switch withdraws the offer (CANCEL).
    RingTimeout(CallId),
    /// The reservation's hard end: the seat was freed; the offer counts as failed.
    Expired(CallId),
}

#[cfg(test)]
mod tests {
    use super::*;
    use ulid::Ulid;

    fn call(n: u64) -> CallId {
        Ulid::from_parts(n, 0)
    }

    fn ready(t0: Instant) -> Seat {
        let mut s = Seat::new("agent01".into(), None);
        assert!(s.registered_now(t0, true).is_some());
        assert!(s.offerable());
        s
    }

    #[test]
    fn pause_during_a_call_takes_effect_after_wrap_up() {
        let t0 = Instant::now();
        let mut s = ready(t0);
        s.reserve(t0, call(1), t0 + Duration::from_secs(15))
            .unwrap();
        s.answered(t0, call(1)).unwrap();
        let ev = s
            .command(
                t0,
                Command::Pause {
                    reason: "meal".into(),
                },
                Cause::Api,
            )
            .unwrap()
            .unwrap();
        assert_eq!(ev.status, Status::Available);
        assert_eq!(
            ev.pending,
            Some(Status::OnBreak {
                reason: "meal".into()
            })
        );
        let ev = s
            .call_ended(
                t0 + Duration::from_secs(60),
                call(1),
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(ev.state.label(), "wrap_up");
        assert_eq!(s.status(), &Status::Available);
        let (exp, ev) = s.expire(t0 + Duration::from_secs(70));
        assert_eq!(exp, None);
        let ev = ev.unwrap();
        assert_eq!(
            ev.status,
            Status::OnBreak {
                reason: "meal".into()
            }
        );
        assert_eq!(ev.cause, Cause::WrapUpEnded);
        assert!(!s.offerable());
        s.command(t0 + Duration::from_secs(80), Command::Unpause, Cause::Api)
            .unwrap();
        assert!(s.offerable());
    }

    #[test]
    fn reservation_expires_on_its_own() {
        let t0 = Instant::now();
        let mut s = ready(t0);
        let ring = t0 + Duration::from_secs(15);
        s.reserve(t0, call(1), ring).unwrap();
        assert_eq!(s.state().label(), "reserved");
        s.alerting(t0, call(1)).unwrap();
        assert_eq!(s.state().deadline(), Some(ring));
        let (exp, ev) = s.expire(ring);
        assert_eq!(exp, Some(Expiry::RingTimeout(call(1))));
        assert!(ev.is_none());
        assert_eq!(s.state().deadline(), Some(ring + WITHDRAW_GRACE));
        // Nothing before the hard end.
        assert_eq!(s.expire(ring + Duration::from_secs(1)), (None, None));
        let (exp, ev) = s.expire(ring + WITHDRAW_GRACE);
        assert_eq!(exp, Some(Expiry::Expired(call(1))));
        assert_eq!(ev.unwrap().cause, Cause::ReservationExpired);
        assert!(s.offerable());
    }

    #[test]
    fn no_answer_limit_puts_the_seat_on_break() {
        let t0 = Instant::now();
        let mut s = ready(t0);
        for n in 1..=3u64 {
            s.reserve(t0, call(n), t0).unwrap();
            let evs = s.offer_ended(t0, call(n), true, 3, Cause::OfferEnded);
            assert_eq!(evs.len(), if n == 3 { 2 } else { 1 }, "offer {n}");
        }
        assert_eq!(
            s.status(),
            &Status::OnBreak {
                reason: NO_ANSWER.into()
            }
        );
        assert!(!s.offerable());
        // Unpausing resets the streak.
        s.command(t0, Command::Unpause, Cause::FeatureCode).unwrap();
        assert_eq!(s.no_answer_streak(), 0);
        s.reserve(t0, call(9), t0).unwrap();
        assert_eq!(
            s.offer_ended(t0, call(9), true, 3, Cause::OfferEnded).len(),
            1
        );
    }

    #[test]
    fn an_answer_resets_the_no_answer_streak_and_declines_do_not_count() {
        let t0 = Instant::now();
        let mut s = ready(t0);
        for n in 1..=2u64 {
            s.reserve(t0, call(n), t0).unwrap();
            s.offer_ended(t0, call(n), true, 3, Cause::OfferEnded);
        }
        s.reserve(t0, call(3), t0).unwrap();
        s.offer_ended(t0, call(3), false, 3, Cause::OfferEnded);
        assert_eq!(s.no_answer_streak(), 2);
        s.reserve(t0, call(4), t0).unwrap();
        s.answered(t0, call(4)).unwrap();
        assert_eq!(s.no_answer_streak(), 0);
    }

    #[test]
    fn unregister_mid_call_keeps_the_call_then_logs_out() {
        let t0 = Instant::now();
        let mut s = ready(t0);
        s.reserve(t0, call(1), t0).unwrap();
        s.answered(t0, call(1)).unwrap();
        let ev = s.unregistered_now(t0).unwrap();
        assert_eq!(ev.state, SeatState::OnCall { call: call(1) });
        assert_eq!(ev.pending, Some(Status::LoggedOut));
        let ev = s.call_ended(t0, call(1), Duration::from_secs(30)).unwrap();
        assert_eq!(ev.state, SeatState::LoggedOut);
        assert_eq!(ev.status, Status::LoggedOut);
        // Registering again logs in.
        assert_eq!(
            s.registered_now(t0, true).unwrap().status,
            Status::Available
        );
    }

    #[test]
    fn a_second_answer_never_puts_a_seat_in_two_calls() {
        let t0 = Instant::now();
        let mut s = ready(t0);
        s.reserve(t0, call(1), t0).unwrap();
        s.answered(t0, call(1)).unwrap();
        assert_eq!(s.answered(t0, call(2)), Err(()));
        assert_eq!(s.state(), &SeatState::OnCall { call: call(1) });
        // The same answer twice (a 2xx retransmission) changes nothing.
        assert_eq!(s.answered(t0, call(1)), Ok(None));
    }

    #[test]
    fn commands_are_checked() {
        let t0 = Instant::now();
        let mut s = Seat::new("agent01".into(), None);
        assert_eq!(
            s.command(t0, Command::Unpause, Cause::Api),
            Err(CommandError::LoggedOut)
        );
        // Login while unregistered: the seat stays logged out (nowhere to ring).
        assert_eq!(s.command(t0, Command::Login, Cause::Api), Ok(None));
        let mut s = ready(t0);
        assert_eq!(
            s.command(
                t0,
                Command::Pause {
                    reason: "Meal!".into()
                },
                Cause::Api
            ),
            Err(CommandError::InvalidReason("Meal!".into()))
        );
        assert_eq!(
            s.command(t0, Command::Unpause, Cause::Api),
            Err(CommandError::NotOnBreak)
        );
        let ev = s.command(t0, Command::Logout, Cause::Api).unwrap().unwrap();
        assert_eq!(
            (ev.status, ev.state),
            (Status::LoggedOut, SeatState::LoggedOut)
        );
        let ev = s.command(t0, Command::Login, Cause::Api).unwrap().unwrap();
        assert_eq!(ev.status, Status::Available);
        assert!(matches!(ev.state, SeatState::Idle { .. }));
        assert!(valid_reason("no-answer") && valid_reason("training2"));
        assert!(!valid_reason("") && !valid_reason(&"a".repeat(33)));
    }

    #[test]
    fn unreachable_seat_is_not_offered() {
        let t0 = Instant::now();
        let mut s = ready(t0);
        assert!(s.set_reachable(t0, false).is_some());
        assert!(!s.offerable());
        assert!(s.reserve(t0, call(1), t0).is_none());
        assert!(s.set_reachable(t0, true).is_some());
        assert!(s.offerable());
    }
}
