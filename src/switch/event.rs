//! What happens to a call, as the switch reports it: the source of the journal
//! (`call_events`) and of the call metrics (DESIGN §1: "fed from the same events").

use std::net::SocketAddr;

use crate::acd::{CallId, OverflowReason, SeatId};
use crate::location::Location;

/// One step of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallEvent {
    /// The call this step belongs to (vigie's call id, a ULID).
    pub call: CallId,
    /// What happened, with its detail.
    pub kind: CallEventKind,
}

/// Where a caller was when they hung up before an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AbandonPhase {
    /// Waiting in the queue.
    Queued,
    /// A seat was ringing.
    Ringing,
    /// The call was ringing the overflow target.
    Overflowing,
    /// A prompt was playing to the caller: a queue announcement while waiting, or a
    /// dialplan `play` step (e.g. the welcome prompt before the queue).
    Announcement,
}

impl AbandonPhase {
    /// Label for the journal and the metrics: `queued`, `ringing`, `announcement` or
    /// `overflowing`.
    pub fn as_str(self) -> &'static str {
        match self {
            AbandonPhase::Queued => "queued",
            AbandonPhase::Ringing => "ringing",
            AbandonPhase::Overflowing => "overflowing",
            AbandonPhase::Announcement => "announcement",
        }
    }
}

/// How an answered or overflowed call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndCause {
    /// BYE from the caller.
    CallerHangup,
    /// BYE from the seat or the backup centre.
    AgentHangup,
    /// The caller never ACKed our 200 (RFC 3261 §13.3.1.4).
    NoAck,
    /// No supported codec in the caller's offer (answered 488).
    MediaRefused,
    /// A dialplan `hangup` step released the call (non-emergency routes only).
    Dialplan {
        /// The SIP final status sent to the caller (RFC 3261 §21), 400..=699; a BYE
        /// went instead when the call was already answered.
        status: u16,
    },
    /// No dialplan route matched the call (answered 404).
    NoRoute,
}

impl EndCause {
    /// Label for the journal and the metrics: `caller_hangup`, `agent_hangup`, `no_ack`,
    /// `media_refused`, `dialplan` or `no_route`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndCause::CallerHangup => "caller_hangup",
            EndCause::AgentHangup => "agent_hangup",
            EndCause::NoAck => "no_ack",
            EndCause::MediaRefused => "media_refused",
            EndCause::Dialplan { .. } => "dialplan",
            EndCause::NoRoute => "no_route",
        }
    }
}

/// The kinds of call event, each with its detail.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallEventKind {
    /// The trunk's INVITE created the call.
    Received {
        /// The Call-ID of the trunk's INVITE (leg A).
        sip_call_id: String,
        /// The From URI's user part with escapes undone (the caller's number); `anonymous` when
        /// the URI has no user part.
        caller: String,
        /// The From display name, unquoted; `None` when absent.
        caller_display: Option<String>,
        /// The Request-URI's user part with escapes undone (the dialled number, e.g. `19`); empty
        /// when the URI has none.
        called: String,
        /// The IP address and port the INVITE came from (the trunk).
        source: SocketAddr,
        /// The queue the call's route leads to (its metrics and journal label, even when
        /// the call is refused before it is queued).
        queue: String,
    },
    /// The dialplan decided the call's route (DESIGN §5); emitted right after
    /// [`CallEventKind::Received`].
    Routed {
        /// Name of the route that took the call; `None` when none matched.
        route: Option<String>,
        /// Call variables from the route's `set` steps, in step order (a later `set` of
        /// the same name wins).
        vars: Vec<(String, String)>,
        /// Tags from the route's `tag` steps, in step order, without duplicates.
        tags: Vec<String>,
        /// Each decision the evaluator took, in order (`vigie dialplan trace` lines).
        trace: Vec<String>,
    },
    /// A location came with the call (PIDF-LO by value).
    Located(Location),
    /// A location body could not be read; the call goes on without it.
    LocationError(String),
    /// A location by reference (`Geolocation: <https://…>`, RFC 6442 §4.1) came with the
    /// INVITE or a mid-call re-INVITE/UPDATE; the IO edge dereferences `http:`/`https:`
    /// URIs off the call path.
    LocationReference {
        /// The location URI as sent.
        uri: String,
        /// `Geolocation-Routing` (RFC 6442 §4.2): `Some(true)` for `yes`, `Some(false)` for
        /// `no`, `None` when absent or unknown.
        routing: Option<bool>,
    },
    /// Queued in a queue.
    Queued {
        /// The ACD queue's name ([`crate::acd::QueueSpec::name`]).
        queue: String,
    },
    /// The call's priority was changed while it waited (API, [`crate::switch::Switch::set_priority`]).
    PriorityChanged {
        /// The new priority (higher served first).
        priority: u8,
    },
    /// INVITE sent to a seat.
    Offered {
        /// The seat the INVITE went to.
        seat: SeatId,
    },
    /// The seat is ringing (180/183).
    Ringing {
        /// The seat that is ringing.
        seat: SeatId,
    },
    /// The seat refused, timed out or could not be reached; the call goes back to the queue.
    SeatFailed {
        /// The seat that was offered the call.
        seat: SeatId,
        /// The seat's final status (e.g. 486, 603, 487 after vigie's CANCEL); `None` when no final
        /// response came (transaction timeout, transport error, or the offer withdrawn at ring
        /// timeout).
        status: Option<u16>,
        /// Journal label: `busy` (486), `declined` (603), `no_answer` (487 or ring timeout),
        /// `unreachable` (408 or no response), `failed` (any other final status) or
        /// `withdrawn` (another seat or phone answered first: ring-all, several Contacts)
        /// or `caller_left` (the caller hung up while the seat rang; not held against the
        /// seat: no no-answer streak).
        /// With several Contacts the best outcome of the seat's forks is reported, once.
        reason: &'static str,
    },
    /// The seat answered; the caller got 200 OK.
    Answered {
        /// The seat that answered.
        seat: SeatId,
    },
    /// Sent to the overflow target.
    Overflowed {
        /// The overflow target's SIP URI, as configured for the queue.
        target: String,
        /// Why the call overflowed (wait time or no seat online).
        reason: OverflowReason,
    },
    /// The overflow target failed; the call is back in the queue.
    OverflowFailed {
        /// The target's final status; `None` when no final response came, the offer
        /// was withdrawn at the overflow timeout, or the target URI was unusable (no IP
        /// address).
        status: Option<u16>,
    },
    /// The overflow target answered.
    OverflowAnswered {
        /// The overflow target's SIP URI.
        target: String,
    },
    /// The caller hung up before an answer.
    Abandoned {
        /// Where the call was when the caller hung up.
        phase: AbandonPhase,
    },
    /// The call is over.
    Ended {
        /// Who or what ended it.
        cause: EndCause,
    },
}

impl CallEventKind {
    /// The journal's `kind` column.
    pub fn name(&self) -> &'static str {
        match self {
            CallEventKind::Received { .. } => "received",
            CallEventKind::Routed { .. } => "routed",
            CallEventKind::Located(_) => "location",
            CallEventKind::LocationError(_) => "location_error",
            CallEventKind::LocationReference { .. } => "location_reference",
            CallEventKind::Queued { .. } => "queued",
            CallEventKind::PriorityChanged { .. } => "priority_changed",
            CallEventKind::Offered { .. } => "offered",
            CallEventKind::Ringing { .. } => "ringing",
            CallEventKind::SeatFailed { .. } => "seat_failed",
            CallEventKind::Answered { .. } => "answered",
            CallEventKind::Overflowed { .. } => "overflowed",
            CallEventKind::OverflowFailed { .. } => "overflow_failed",
            CallEventKind::OverflowAnswered { .. } => "overflow_answered",
            CallEventKind::Abandoned { .. } => "abandoned",
            CallEventKind::Ended { .. } => "ended",
        }
    }
}
