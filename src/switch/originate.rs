//! Callbacks offered to free seats (issue 5, "Abandoned calls"): the sans-IO state machine
//! of one originated callback.
//!
//! When an open callback task is offered to a free seat, vigie calls the seat first, then
//! the caller, then bridges them: third-party call control (RFC 3725). RFC 3725 §4.1
//! flow I sends the seat an INVITE without SDP and carries the seat's offer to the caller;
//! here vigie's media relay anchors both legs (DESIGN §2), so each leg gets vigie's own
//! offer on its side of the relay and no re-INVITE is needed:
//!
//! ```text
//!  seat                   vigie                    caller (trunk, dial_uri)
//!   |<-- INVITE (SDP side B) |                          |
//!   |    From "Rappel <n>", Call-Info: task id          |
//!   |--- 180 / 200 (SDP) --->|                          |
//!   |<-------- ACK ----------|--- INVITE (SDP side A) ->|
//!   |                        |<------ 180 / 200 --------|
//!   |                        |---------- ACK ---------->|
//!   |<====== RTP via the relay (Bridge) ===============>|
//! ```
//!
//! The machine is pure: the switch feeds it the legs' results ([`Originate::seat_answered`],
//! [`Originate::caller_failed`], …) with the time, sends what [`Originate::poll_action`]
//! says, and wakes it at [`Originate::poll_timeout`]. Its [`Originate::outcome`] says what
//! becomes of the task ([`OriginateOutcome::task_result`]).
//!
//! The switch runs it for each open task offered to a seat (`[callbacks]
//! offer_to_seats`): see `src/switch/callback_calls.rs` ([`crate::switch::Switch::callback_open`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::acd::SeatId;
use crate::acd::callback::{CallbackId, CallbackOutcome};

/// Errors building an originated callback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OriginateError {
    /// The dial template is not a `sip:`/`sips:` URI with one `{number}`.
    #[error("dial_uri {0:?} must be a sip: or sips: URI containing {{number}} once")]
    BadTemplate(String),
    /// The caller's number cannot be dialled (anonymous, letters, too short or long).
    #[error("number {0:?} cannot be dialled")]
    UnusableNumber(String),
}

/// `dial_uri`: how vigie reaches a caller through the trunk, e.g.
/// `sip:{number}@192.0.2.10` (RFC 3261 §19.1 SIP URI, `{number}` replaced by the caller's
/// number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialTemplate(String);

impl DialTemplate {
    /// Checks `template`.
    ///
    /// # Errors
    /// [`OriginateError::BadTemplate`].
    pub fn parse(template: &str) -> Result<DialTemplate, OriginateError> {
        let scheme_ok = template.starts_with("sip:") || template.starts_with("sips:");
        if !scheme_ok || template.matches("{number}").count() != 1 {
            return Err(OriginateError::BadTemplate(template.to_owned()));
        }
        Ok(DialTemplate(template.to_owned()))
    }

    /// The Request-URI for `number`: an optional `+` then 3 to 20 digits (E.164 numbers
    /// have at most 15; national forms with prefixes a few more).
    ///
    /// # Errors
    /// [`OriginateError::UnusableNumber`].
    pub fn uri(&self, number: &str) -> Result<String, OriginateError> {
        let digits = number.strip_prefix('+').unwrap_or(number);
        if !(3..=20).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OriginateError::UnusableNumber(number.to_owned()));
        }
        Ok(self.0.replace("{number}", number))
    }
}

/// Ring limits of an originated callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginateTimers {
    /// How long the seat may ring before vigie CANCELs (the queue's ring timeout).
    pub seat_ring: Duration,
    /// How long the caller may ring before vigie CANCELs and counts a no-answer.
    pub caller_ring: Duration,
}

impl Default for OriginateTimers {
    /// 15 s for the seat, 30 s for the caller.
    fn default() -> OriginateTimers {
        OriginateTimers {
            seat_ring: Duration::from_secs(15),
            caller_ring: Duration::from_secs(30),
        }
    }
}

/// What the switch must do next for an originated callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginateAction {
    /// Send the seat an INVITE with vigie's offer on the relay's seat side; From display
    /// name `display`, `Call-Info: call_info` (RFC 3261 §20.9) naming the task.
    InviteSeat {
        /// The seat.
        seat: SeatId,
        /// `Rappel <number>`.
        display: String,
        /// `<urn:x-vigie:callback:ID>;purpose=info`.
        call_info: String,
    },
    /// ACK the seat's 2xx (RFC 3261 §13.2.2.4).
    AckSeat,
    /// Send the caller an INVITE to `uri` with vigie's offer on the relay's caller side.
    InviteCaller {
        /// The Request-URI from [`DialTemplate::uri`].
        uri: String,
    },
    /// ACK the caller's 2xx.
    AckCaller,
    /// Connect the relay's two sides.
    Bridge,
    /// CANCEL the seat's INVITE (RFC 3261 §9.1).
    CancelSeat,
    /// CANCEL the caller's INVITE.
    CancelCaller,
    /// BYE the seat's dialog (RFC 3261 §15.1.1).
    ByeSeat,
    /// BYE the caller's dialog.
    ByeCaller,
}

/// Which leg hung up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// The seat.
    Seat,
    /// The caller.
    Caller,
}

/// How an originated callback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginateOutcome {
    /// The caller answered and was bridged to the seat.
    Reached,
    /// The caller's side answered busy (486, 600) .
    CallerBusy,
    /// The caller did not answer (ring limit, 408, 480, 487) or refused.
    CallerNoAnswer,
    /// The seat declined, did not answer, or hung up before the caller answered: the task
    /// goes back to the queue without counting an attempt.
    SeatUnavailable,
}

/// What becomes of the callback task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskResult {
    /// Close the task with this outcome.
    Close(CallbackOutcome),
    /// Count a failed attempt; the task stays open until the attempts run out.
    AttemptFailed,
    /// Offer the task again, no attempt counted.
    Requeue,
}

impl OriginateOutcome {
    /// What becomes of the task.
    pub fn task_result(self) -> TaskResult {
        match self {
            OriginateOutcome::Reached => TaskResult::Close(CallbackOutcome::Reached),
            OriginateOutcome::CallerBusy | OriginateOutcome::CallerNoAnswer => {
                TaskResult::AttemptFailed
            }
            OriginateOutcome::SeatUnavailable => TaskResult::Requeue,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SeatRinging { until: Instant },
    CallerRinging { until: Instant },
    Bridged,
    Ended,
}

/// One originated callback: a seat, then the caller, then a bridge.
#[derive(Debug)]
pub struct Originate {
    task: CallbackId,
    caller_uri: String,
    timers: OriginateTimers,
    state: State,
    outcome: Option<OriginateOutcome>,
    actions: VecDeque<OriginateAction>,
}

impl Originate {
    /// Starts calling `seat` at `now` for task `task` whose caller is `number`, reached
    /// through `dial`.
    ///
    /// # Errors
    /// [`OriginateError::UnusableNumber`] (close the task `unreachable`).
    pub fn start(
        now: Instant,
        task: CallbackId,
        seat: &str,
        number: &str,
        dial: &DialTemplate,
        timers: OriginateTimers,
    ) -> Result<Originate, OriginateError> {
        let caller_uri = dial.uri(number)?;
        let mut actions = VecDeque::new();
        actions.push_back(OriginateAction::InviteSeat {
            seat: seat.to_owned(),
            display: format!("Rappel {number}"),
            call_info: format!("<urn:x-vigie:callback:{task}>;purpose=info"),
        });
        Ok(Originate {
            task,
            caller_uri,
            timers,
            state: State::SeatRinging {
                until: now + timers.seat_ring,
            },
            outcome: None,
            actions,
        })
    }

    /// The task being called back.
    pub fn task(&self) -> CallbackId {
        self.task
    }

    /// The seat answered (2xx): ACK it and call the caller.
    pub fn seat_answered(&mut self, now: Instant) {
        if let State::SeatRinging { .. } = self.state {
            self.actions.push_back(OriginateAction::AckSeat);
            self.actions.push_back(OriginateAction::InviteCaller {
                uri: self.caller_uri.clone(),
            });
            self.state = State::CallerRinging {
                until: now + self.timers.caller_ring,
            };
        } else if self.state != State::Ended {
            // A retransmitted 2xx is ACKed again (RFC 3261 §13.2.2.4).
            self.actions.push_back(OriginateAction::AckSeat);
        }
    }

    /// The seat's INVITE failed (final non-2xx, no response): the task is offered again.
    pub fn seat_failed(&mut self) {
        if let State::SeatRinging { .. } = self.state {
            self.end(OriginateOutcome::SeatUnavailable);
        }
    }

    /// The caller answered (2xx): ACK, bridge; the task is reached.
    pub fn caller_answered(&mut self) {
        match self.state {
            State::CallerRinging { .. } => {
                self.actions.push_back(OriginateAction::AckCaller);
                self.actions.push_back(OriginateAction::Bridge);
                self.state = State::Bridged;
                self.outcome = Some(OriginateOutcome::Reached);
            }
            State::Bridged => self.actions.push_back(OriginateAction::AckCaller),
            _ => {}
        }
    }

    /// The caller's INVITE failed with `status` (`None`: no final response): BYE the seat.
    pub fn caller_failed(&mut self, status: Option<u16>) {
        if let State::CallerRinging { .. } = self.state {
            self.actions.push_back(OriginateAction::ByeSeat);
            let outcome = match status {
                Some(486 | 600) => OriginateOutcome::CallerBusy,
                _ => OriginateOutcome::CallerNoAnswer,
            };
            self.end(outcome);
        }
    }

    /// A leg sent BYE (or the seat CANCELled nothing: only answered legs hang up).
    pub fn hung_up(&mut self, leg: Leg) {
        match (self.state, leg) {
            (State::CallerRinging { .. }, Leg::Seat) => {
                self.actions.push_back(OriginateAction::CancelCaller);
                self.end(OriginateOutcome::SeatUnavailable);
            }
            (State::Bridged, Leg::Seat) => {
                self.actions.push_back(OriginateAction::ByeCaller);
                self.state = State::Ended;
            }
            (State::Bridged, Leg::Caller) => {
                self.actions.push_back(OriginateAction::ByeSeat);
                self.state = State::Ended;
            }
            _ => {}
        }
    }

    /// Wakes the machine at `now`: a leg that rang past its limit is CANCELled.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::SeatRinging { until } if now >= until => {
                self.actions.push_back(OriginateAction::CancelSeat);
                self.end(OriginateOutcome::SeatUnavailable);
            }
            State::CallerRinging { until } if now >= until => {
                self.actions.push_back(OriginateAction::CancelCaller);
                self.actions.push_back(OriginateAction::ByeSeat);
                self.end(OriginateOutcome::CallerNoAnswer);
            }
            _ => {}
        }
    }

    /// When to call [`Originate::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::SeatRinging { until } | State::CallerRinging { until } => Some(until),
            _ => None,
        }
    }

    /// The next thing to send, oldest first.
    pub fn poll_action(&mut self) -> Option<OriginateAction> {
        self.actions.pop_front()
    }

    /// How it ended (or, once bridged, [`OriginateOutcome::Reached`]); `None` while a leg
    /// still rings.
    pub fn outcome(&self) -> Option<OriginateOutcome> {
        self.outcome
    }

    /// True once both legs are gone (nothing more to do).
    pub fn is_over(&self) -> bool {
        self.state == State::Ended && self.actions.is_empty()
    }

    fn end(&mut self, outcome: OriginateOutcome) {
        self.outcome = Some(outcome);
        self.state = State::Ended;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dial() -> DialTemplate {
        DialTemplate::parse("sip:{number}@192.0.2.10;user=phone")
            .unwrap_or_else(|_| DialTemplate("sip:{number}@192.0.2.10;user=phone".to_owned()))
    }

    fn start(now: Instant) -> Originate {
        Originate::start(
            now,
            7,
            "agent01",
            "+33199000012",
            &dial(),
            OriginateTimers::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn drain(o: &mut Originate) -> Vec<OriginateAction> {
        std::iter::from_fn(|| o.poll_action()).collect()
    }

    #[test]
    fn templates_and_numbers() {
        assert_eq!(
            dial().uri("+33199000012"),
            Ok("sip:+33199000012@192.0.2.10;user=phone".to_owned())
        );
        assert_eq!(
            dial().uri("0612"),
            Ok("sip:0612@192.0.2.10;user=phone".to_owned())
        );
        for bad in [
            "anonymous",
            "",
            "+",
            "12",
            "06 12 34",
            "0612;x=1",
            "123456789012345678901",
        ] {
            assert_eq!(
                dial().uri(bad),
                Err(OriginateError::UnusableNumber(bad.to_owned())),
                "{bad}"
            );
        }
        for bad in ["tel:{number}", "sip:192.0.2.10", "sip:{number}{number}@h"] {
            assert_eq!(
                DialTemplate::parse(bad),
                Err(OriginateError::BadTemplate(bad.to_owned()))
            );
        }
    }

    #[test]
    fn seat_then_caller_then_bridge_reaches_the_caller() {
        let t0 = Instant::now();
        let mut o = start(t0);
        assert_eq!(o.task(), 7);
        assert_eq!(
            drain(&mut o),
            [OriginateAction::InviteSeat {
                seat: "agent01".into(),
                display: "Rappel +33199000012".into(),
                call_info: "<urn:x-vigie:callback:7>;purpose=info".into(),
            }]
        );
        assert_eq!(o.poll_timeout(), Some(t0 + Duration::from_secs(15)));
        let t1 = t0 + Duration::from_secs(3);
        o.seat_answered(t1);
        assert_eq!(
            drain(&mut o),
            [
                OriginateAction::AckSeat,
                OriginateAction::InviteCaller {
                    uri: "sip:+33199000012@192.0.2.10;user=phone".into()
                }
            ]
        );
        assert_eq!(o.poll_timeout(), Some(t1 + Duration::from_secs(30)));
        assert_eq!(o.outcome(), None);
        o.caller_answered();
        assert_eq!(
            drain(&mut o),
            [OriginateAction::AckCaller, OriginateAction::Bridge]
        );
        assert_eq!(o.outcome(), Some(OriginateOutcome::Reached));
        assert_eq!(
            o.outcome().map(OriginateOutcome::task_result),
            Some(TaskResult::Close(CallbackOutcome::Reached))
        );
        assert_eq!(o.poll_timeout(), None);
        // A retransmitted 2xx is ACKed again; the caller's BYE ends the seat's leg.
        o.caller_answered();
        assert_eq!(drain(&mut o), [OriginateAction::AckCaller]);
        o.hung_up(Leg::Caller);
        assert_eq!(drain(&mut o), [OriginateAction::ByeSeat]);
        assert!(o.is_over());
        assert_eq!(o.outcome(), Some(OriginateOutcome::Reached));
    }

    #[test]
    fn busy_or_silent_caller_counts_an_attempt_and_releases_the_seat() {
        let t0 = Instant::now();
        let mut o = start(t0);
        o.seat_answered(t0);
        drain(&mut o);
        o.caller_failed(Some(486));
        assert_eq!(drain(&mut o), [OriginateAction::ByeSeat]);
        assert_eq!(o.outcome(), Some(OriginateOutcome::CallerBusy));
        assert_eq!(
            o.outcome().map(OriginateOutcome::task_result),
            Some(TaskResult::AttemptFailed)
        );
        assert!(o.is_over());

        let mut o = start(t0);
        o.seat_answered(t0);
        drain(&mut o);
        o.handle_timeout(t0 + Duration::from_secs(29));
        assert_eq!(drain(&mut o), []);
        o.handle_timeout(t0 + Duration::from_secs(30));
        assert_eq!(
            drain(&mut o),
            [OriginateAction::CancelCaller, OriginateAction::ByeSeat]
        );
        assert_eq!(o.outcome(), Some(OriginateOutcome::CallerNoAnswer));
        // The 487 to the CANCELled INVITE changes nothing.
        o.caller_failed(Some(487));
        assert_eq!(drain(&mut o), []);
        assert_eq!(o.outcome(), Some(OriginateOutcome::CallerNoAnswer));
    }

    #[test]
    fn a_seat_that_declines_rings_out_or_hangs_up_early_requeues_the_task() {
        let t0 = Instant::now();
        let mut o = start(t0);
        drain(&mut o);
        o.seat_failed();
        assert_eq!(o.outcome(), Some(OriginateOutcome::SeatUnavailable));
        assert_eq!(
            o.outcome().map(OriginateOutcome::task_result),
            Some(TaskResult::Requeue)
        );

        let mut o = start(t0);
        drain(&mut o);
        o.handle_timeout(t0 + Duration::from_secs(15));
        assert_eq!(drain(&mut o), [OriginateAction::CancelSeat]);
        assert_eq!(o.outcome(), Some(OriginateOutcome::SeatUnavailable));

        let mut o = start(t0);
        o.seat_answered(t0);
        drain(&mut o);
        o.hung_up(Leg::Seat);
        assert_eq!(drain(&mut o), [OriginateAction::CancelCaller]);
        assert_eq!(o.outcome(), Some(OriginateOutcome::SeatUnavailable));
        // The caller answering after the CANCEL crossed it is not bridged.
        o.caller_answered();
        assert_eq!(drain(&mut o), []);
    }

    #[test]
    fn an_unusable_number_is_refused_before_any_leg() {
        let r = Originate::start(
            Instant::now(),
            3,
            "agent01",
            "anonymous",
            &dial(),
            OriginateTimers::default(),
        );
        assert_eq!(
            r.map(|o| o.task()),
            Err(OriginateError::UnusableNumber("anonymous".to_owned()))
        );
    }
}
