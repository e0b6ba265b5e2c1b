//! What happens to a call, as the switch reports it: the source of the journal
//! (`call_events`) and of the call metrics (DESIGN §1: "fed from the same events").

use std::net::SocketAddr;

use crate::acd::{CallId, OverflowReason, SeatId};
use crate::location::Location;

/// One step of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallEvent {
    pub call: CallId,
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
}

impl AbandonPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            AbandonPhase::Queued => "queued",
            AbandonPhase::Ringing => "ringing",
            AbandonPhase::Overflowing => "overflowing",
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
}

impl EndCause {
    pub fn as_str(self) -> &'static str {
        match self {
            EndCause::CallerHangup => "caller_hangup",
            EndCause::AgentHangup => "agent_hangup",
            EndCause::NoAck => "no_ack",
            EndCause::MediaRefused => "media_refused",
        }
    }
}

/// The kinds of call event, each with its detail.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallEventKind {
    /// The trunk's INVITE created the call.
    Received {
        sip_call_id: String,
        caller: String,
        caller_display: Option<String>,
        called: String,
        source: SocketAddr,
    },
    /// A location came with the call (PIDF-LO by value).
    Located(Location),
    /// A location body could not be read; the call goes on without it.
    LocationError(String),
    /// Queued in a queue.
    Queued { queue: String },
    /// INVITE sent to a seat.
    Offered { seat: SeatId },
    /// The seat is ringing (180/183).
    Ringing { seat: SeatId },
    /// The seat refused, timed out or could not be reached; the call goes back to the queue.
    SeatFailed {
        seat: SeatId,
        status: Option<u16>,
        reason: &'static str,
    },
    /// The seat answered; the caller got 200 OK.
    Answered { seat: SeatId },
    /// Sent to the overflow target.
    Overflowed {
        target: String,
        reason: OverflowReason,
    },
    /// The overflow target failed; the call is back in the queue.
    OverflowFailed { status: Option<u16> },
    /// The overflow target answered.
    OverflowAnswered { target: String },
    /// The caller hung up before an answer.
    Abandoned { phase: AbandonPhase },
    /// The call is over.
    Ended { cause: EndCause },
}

impl CallEventKind {
    /// The journal's `kind` column.
    pub fn name(&self) -> &'static str {
        match self {
            CallEventKind::Received { .. } => "received",
            CallEventKind::Located(_) => "location",
            CallEventKind::LocationError(_) => "location_error",
            CallEventKind::Queued { .. } => "queued",
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
