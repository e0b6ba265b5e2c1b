//! Caller priority changed while the call waits (issue 5, "Caller priority"): the API's
//! `PATCH /api/v1/calls/{id}` reaches the switch as [`Switch::set_priority`], which
//! re-orders the call in the ACD ([`crate::acd::Acd::set_priority`]: higher priority
//! first, arrival order kept within a priority) and journals the change
//! ([`CallEventKind::PriorityChanged`]).

use std::time::Instant;

use super::event::CallEventKind;
use super::{Phase, Switch};
use crate::acd::CallId;

/// Why a priority change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PriorityError {
    /// No call in progress has this id.
    #[error("no call {0} in progress")]
    UnknownCall(CallId),
    /// The call is not waiting for a seat (answered, overflowing, or in a plan step that
    /// is not a queue).
    #[error("call {0} is not waiting in a queue")]
    NotWaiting(CallId),
}

impl Switch {
    /// Sets the priority (0–255, higher served first) of `call` while it waits in a queue
    /// or rings a seat, at `now`; the ACD may offer it to a free seat at once. Emits
    /// [`CallEventKind::PriorityChanged`] for the journal.
    ///
    /// # Errors
    /// [`PriorityError::UnknownCall`], [`PriorityError::NotWaiting`].
    pub fn set_priority(
        &mut self,
        now: Instant,
        call: CallId,
        priority: u8,
    ) -> Result<(), PriorityError> {
        let c = self
            .calls
            .get(&call)
            .ok_or(PriorityError::UnknownCall(call))?;
        if !matches!(c.phase, Phase::Queued | Phase::Ringing) || !self.acd.has_call(call) {
            return Err(PriorityError::NotWaiting(call));
        }
        self.acd
            .set_priority(now, call, priority)
            .map_err(|_| PriorityError::NotWaiting(call))?;
        self.emit(call, CallEventKind::PriorityChanged { priority });
        self.pump(now);
        Ok(())
    }
}
